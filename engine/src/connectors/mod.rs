//! Connectors: sources that produce rows and sinks that consume them, by Flink's connector names
//! and options.

use crate::error::Result;
use crate::operator::{Output, TaskContext};

/// What a source's poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// Rows were emitted (or may be at once); poll again.
    More,
    /// Nothing is available now (an unbounded source waiting); poll again later.
    Idle,
    /// The source is exhausted: nothing will follow.
    Finished,
}

/// A source subtask. The runtime polls it in a loop and ships what it emits.
pub trait Source: Send {
    /// Emits up to about `max_rows` rows into `out` (as `+I`), and may emit a watermark.
    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus>;

    /// Called on the task's timer (about every `pipeline.auto-watermark-interval`) with the
    /// clock's time in milliseconds, between polls.
    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Where the source stands, for a checkpoint taken between two polls: restoring it with
    /// [`Source::restore_position`] resumes right after the last row emitted before this call.
    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        Err(crate::error::EngineError::internal(
            "this source cannot record its position for a checkpoint",
        ))
    }

    /// Moves a freshly created source to a position taken by [`Source::snapshot_position`].
    fn restore_position(&mut self, _position: &[u8]) -> Result<()> {
        Err(crate::error::EngineError::internal(
            "this source cannot be restored from a checkpoint",
        ))
    }

    /// Moves a freshly created source of a job restored at another parallelism to its share of
    /// the positions of every old subtask (`positions[j]` is old subtask `j`'s): the union of
    /// what they had left, split so that the new subtasks together read all of it once (Flink's
    /// union redistribution). The default refuses any position.
    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        if positions.iter().all(Vec::is_empty) {
            return Ok(());
        }
        Err(crate::error::EngineError::data(
            "this source cannot be restored at another parallelism",
        ))
    }
}

/// Builds one source instance per subtask.
pub trait SourceFactory: Send + Sync {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>>;

    /// The source and its chained operators, when this is a source task's chain.
    fn chain(&self) -> Option<&chain::ChainedSourceFactory> {
        None
    }

    /// The same source emitting only `columns`, in this order, as Flink's
    /// `SupportsProjectionPushDown` with nested fields: a physical column whole, or one field of
    /// a ROW column as a column of its own. `None` when the source cannot (the default); the
    /// planner then reads the fields out of the rows itself.
    fn project(&self, _columns: &[ProjectedColumn]) -> Option<std::sync::Arc<dyn SourceFactory>> {
        None
    }

    /// The same source emitting only the rows whose physical column `column` equals `value` (a
    /// filter it applies exactly, as Flink's `SupportsFilterPushDown` accepts one), or `None` when
    /// it cannot (the default). Rows it does not emit never reach the operators chained onto it,
    /// the watermark assigner included.
    fn filter_equal(
        &self,
        _column: usize,
        _value: &crate::value::Value,
    ) -> Option<std::sync::Arc<dyn SourceFactory>> {
        None
    }
}

/// One output column of a source after projection pushdown: physical column `column`, or its
/// field `field` when it is a ROW column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectedColumn {
    pub column: usize,
    pub field: Option<usize>,
}
pub mod values;

pub mod blackhole;
pub mod chain;
pub mod csv;
pub mod datagen;
pub mod filesystem;
pub mod fs_sink;
pub mod json;
pub mod nexmark;
pub mod options;
pub mod print;
pub mod registry;
