//! The operator contract: hooks the runtime calls, and the `Output` they write to.
//!
//! The runtime owns the task loop (receiving, watermark tracking, flushing, shutdown); an operator
//! only reacts. Every hook may emit records into `Output`; rows emitted before a watermark reach
//! the next operator before it.

use std::sync::Arc;

use crate::error::Result;
use crate::metrics::TaskMetrics;
use crate::value::{Change, Row, RowKind};

/// Where a hook puts what it emits.
///
/// Watermarks are recorded with their position among the changes, so an operator may interleave
/// them with rows (a watermark assigner that emits after every row) without a channel message per
/// row in the common case.
#[derive(Debug, Default)]
pub struct Output {
    /// Records emitted by the current hook, in order.
    pub changes: Vec<Change>,
    /// Watermarks, each to be sent after the first `position` changes: `(position, watermark)`.
    pub watermarks: Vec<(usize, i64)>,
    /// A change of idleness to announce after everything else (`true`: idle).
    pub idle: Option<bool>,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn emit(&mut self, kind: RowKind, row: Row) {
        self.changes.push(Change { kind, row });
    }

    pub fn push(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Forwards a watermark downstream once the records emitted so far have gone.
    pub fn emit_watermark(&mut self, watermark: i64) {
        self.watermarks.push((self.changes.len(), watermark));
    }

    /// Announces that this output went idle (`true`) or became active (`false`).
    pub fn emit_idle(&mut self, idle: bool) {
        self.idle = Some(idle);
    }

    /// True when nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.watermarks.is_empty() && self.idle.is_none()
    }
}

/// What a subtask knows about its place in the job.
#[derive(Clone, Debug)]
pub struct TaskContext {
    /// The operator's stable id (derived from the SQL, identical across runs).
    pub operator_id: u64,
    pub operator_name: String,
    pub subtask_index: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    /// Counters of this subtask, readable from outside while the job runs.
    pub metrics: Arc<TaskMetrics>,
    /// Where the subtask keeps keyed state.
    pub state: crate::state::StateContext,
}

impl TaskContext {
    /// The thread name Flink users know from stack dumps: `op-<id>-<name>-<subtask>`.
    pub fn thread_name(&self) -> String {
        format!(
            "op-{:x}-{}-{}",
            self.operator_id & 0xffff_ffff,
            self.operator_name,
            self.subtask_index
        )
    }
}

/// An operator subtask. One instance runs on one thread.
pub trait Operator: Send {
    /// A batch arrived on input `input` (0 for single-input operators).
    fn on_batch(&mut self, input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()>;

    /// The combined watermark of all inputs advanced to `watermark`. The default forwards it.
    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        out.emit_watermark(watermark);
        Ok(())
    }

    /// Called periodically (about every `pipeline.auto-watermark-interval`) with the wall-clock
    /// time in milliseconds, for operators that act on processing time.
    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Every input has ended; emit what is left. The runtime then sends end-of-stream.
    fn on_end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// The operator's non-keyed state for checkpoint `checkpoint_id`, taken after every record
    /// before the checkpoint's barrier and before any after it. The default is for operators
    /// without such state (an empty blob); every operator that keeps state across hook calls
    /// outside its [`crate::state::KeyedState`]s must override this and
    /// [`Operator::restore_state`], or a restored job would silently lose it.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// Restores a freshly created operator from a blob of [`Operator::snapshot_state`].
    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(crate::error::EngineError::internal(
                "a stateless operator was given state to restore",
            ))
        }
    }

    /// How this operator's non-keyed state is spread over the subtasks of a job restored at
    /// another parallelism. The default suits keyed operators: each subtask gets the states of
    /// the old subtasks whose key groups it takes over.
    fn state_distribution(&self) -> crate::checkpoint::rescale::StateDistribution {
        crate::checkpoint::rescale::StateDistribution::KeyGroups
    }

    /// Restores a freshly created operator of a job restored at another parallelism from the
    /// blobs of [`Operator::snapshot_state`] that [`Operator::state_distribution`] assigned it
    /// (possibly none), instead of [`Operator::restore_state`]. The default accepts only empty
    /// blobs: an operator whose state cannot be merged must override it, so that a rescaled job
    /// never silently drops state.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        if states.iter().all(|s| s.is_empty()) {
            self.restore_state(&[])
        } else {
            Err(crate::error::EngineError::data(
                "this operator's state cannot be restored at another parallelism",
            ))
        }
    }

    /// The synchronous part of a checkpoint for keyed state, O(1): begin a flush of every
    /// [`crate::state::KeyedState`] (`begin_flush`). Called right after
    /// [`Operator::snapshot_state`]; the flush then holds the state at this moment, whatever is
    /// written before it completes.
    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        Ok(())
    }

    /// Continues the flush begun by [`Operator::begin_keyed_snapshot`], encoding up to `budget`
    /// keys; once it is complete, appends it to `delta` and returns true. The task calls this
    /// between batches, so the encoding never holds up the barrier.
    fn continue_keyed_snapshot(
        &mut self,
        _budget: usize,
        _delta: &mut crate::state::KeyedDelta,
    ) -> Result<bool> {
        Ok(true)
    }

    /// A whole flush of keyed state now, into `delta` (begin and continue to the end): for tests
    /// and tools, and for snapshots that cannot wait.
    fn snapshot_keyed(&mut self, delta: &mut crate::state::KeyedDelta) -> Result<()> {
        self.begin_keyed_snapshot()?;
        while !self.continue_keyed_snapshot(usize::MAX, delta)? {}
        Ok(())
    }

    /// Restores one entry of keyed state `state` (its key and value bytes) into a freshly created
    /// operator, after [`Operator::restore_state`].
    fn restore_keyed(&mut self, state: &str, _key: &[u8], _value: &[u8]) -> Result<()> {
        Err(crate::error::EngineError::data(format!(
            "the checkpoint has keyed state '{state}' for an operator without keyed state"
        )))
    }

    /// Every keyed entry was restored: rebuild what is derived from keyed state (timers).
    fn keyed_restored(&mut self) -> Result<()> {
        Ok(())
    }

    /// Checkpoint `checkpoint_id` completed (its `_metadata` is durable): transactional sinks
    /// publish what they prepared for it.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
}

/// Builds one operator instance per subtask.
pub trait OperatorFactory: Send + Sync {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Operator>>;
}

impl<F> OperatorFactory for F
where
    F: Fn(&TaskContext) -> Result<Box<dyn Operator>> + Send + Sync,
{
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Operator>> {
        self(ctx)
    }
}
