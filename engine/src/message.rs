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
    /// Set for a savepoint rather than a checkpoint.
    pub savepoint: Option<SavepointTarget>,
}

impl CheckpointBarrier {
    /// A barrier of a periodic checkpoint.
    pub fn checkpoint(id: u64, timestamp: i64) -> CheckpointBarrier {
        CheckpointBarrier {
            id,
            timestamp,
            savepoint: None,
        }
    }

    /// Whether the barrier belongs to a savepoint.
    pub fn is_savepoint(&self) -> bool {
        self.savepoint.is_some()
    }

    /// Whether the barrier belongs to a savepoint that stops the job.
    pub fn stops(&self) -> bool {
        self.savepoint.as_ref().is_some_and(|s| s.stop)
    }
}

/// A barrier on the priority path of a channel (unaligned checkpoints): it overtakes the messages
/// queued on the channel, and `stamp` says where it belongs among them: the number of messages
/// its sender had sent on the channel before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityBarrier {
    pub barrier: CheckpointBarrier,
    pub stamp: u64,
}

/// Where a savepoint's files go, and whether the job stops after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavepointTarget {
    /// The savepoint's own directory (`<target>/savepoint-<jobid6>-<random>`): every file of the
    /// savepoint is inside it, so it can be moved.
    pub dir: std::sync::Arc<std::path::PathBuf>,
    /// Stop-with-savepoint: sources emit nothing after the barrier, and once the savepoint
    /// completes every task ends without end-of-input processing.
    pub stop: bool,
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
    /// The job stopped with a savepoint, which completed: nothing follows, but the input did not
    /// end, so operators do not flush (no final watermark, no end-of-input).
    Stop,
}
