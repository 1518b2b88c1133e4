//! Checkpoint decisions: the pure logic of Flink's asynchronous barrier snapshots.
//!
//! This module owns what is decided, not what is done: which input a task blocks and when it
//! snapshots ([`alignment`]), when the coordinator triggers a checkpoint, when one is complete,
//! expired or must fail the job, which checkpoints retention deletes and which one recovery loads
//! ([`coordinator`]), which in-flight records an unaligned checkpoint persists ([`in_flight`]),
//! why a checkpoint failed ([`failure`]), whether and when a failed job is restarted
//! ([`restart`]), and which old subtasks' state each subtask of a job restored at another
//! parallelism takes ([`rescale`]). Nothing here performs I/O, reads the system clock or spawns
//! a thread: time is passed in as milliseconds, facts are passed in as values, so every rule is
//! tested as a table of scenarios. The runtime owns the loop and calls these structs;
//! `docs/checkpointing.md`
//! writes the protocol out step by step.

pub mod alignment;
pub mod coordinator;
pub mod failure;
pub mod in_flight;
pub mod rescale;
pub mod restart;
pub mod stats;

pub use alignment::{
    AbortedCheckpoint, AlignerAction, BarrierAligner, CancelCheckpointMarker, SnapshotTrigger,
};
pub use coordinator::{
    subsumed_by, which_checkpoint_to_restore, which_to_delete, AckOutcome, Acknowledgement,
    CheckpointConfig, CheckpointKind, CompletedCheckpointStats, CopyKind, FailureManager,
    FailureVerdict, Integrity, JobEnd, PendingCheckpoint, RestoreCandidate, RestoreChoice,
    Retention, TaskKey, TriggerDecision, TriggerFacts, TriggerPolicy,
};
pub use failure::CheckpointFailureReason;
pub use restart::{RestartDecision, RestartStrategy};

/// The processing guarantee of checkpoints (`execution.checkpointing.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckpointingMode {
    /// Barriers are aligned: an input that delivered the barrier of checkpoint n is blocked until
    /// every input has, so the snapshot contains exactly the records before the barriers.
    #[default]
    ExactlyOnce,
    /// Inputs are never blocked: the snapshot is taken when the last barrier arrives, so records
    /// that overtook a barrier may be replayed after a recovery.
    AtLeastOnce,
}

impl CheckpointingMode {
    /// Flink's name of the mode, as `execution.checkpointing.mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointingMode::ExactlyOnce => "EXACTLY_ONCE",
            CheckpointingMode::AtLeastOnce => "AT_LEAST_ONCE",
        }
    }
}
