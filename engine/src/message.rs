//! What travels on a channel between two subtasks, in order.
//!
//! Records travel in batches; control events (watermarks, watermark status, checkpoint barriers,
//! latency markers, end of stream) are separate messages so that they keep their place relative to
//! the records around them.

use crate::value::Batch;

/// A checkpoint barrier: every record before it belongs to checkpoint `id` or earlier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointBarrier {
    pub id: u64,
    /// Milliseconds since the epoch when the coordinator triggered the checkpoint.
    pub timestamp: i64,
    /// A savepoint rather than a checkpoint.
    pub is_savepoint: bool,
}

/// Flink's latency marker: emitted by sources every `metrics.latency.interval`, forwarded without
/// waiting behind records' processing, and timed at each operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyMarker {
    /// Milliseconds since the epoch at the source.
    pub marked_time: i64,
    pub source_operator: u64,
    pub source_subtask: usize,
}

/// One message on a channel.
#[derive(Debug)]
pub enum Message {
    Batch(Batch),
    /// Event time has advanced to this many milliseconds: no later record of this input is older.
    Watermark(i64),
    /// The input went idle (`true`) or became active again (`false`); idle inputs do not hold the
    /// watermark back.
    Idle(bool),
    Barrier(CheckpointBarrier),
    LatencyMarker(LatencyMarker),
    /// The input is finished; nothing follows.
    EndOfStream,
}
