//! Why a checkpoint failed: Flink's `CheckpointFailureReason`, name for name and message for
//! message, with Flink's two classifications.
//!
//! Invariants: [`CheckpointFailureReason::ALL`] lists every reason exactly once, in Flink's
//! declaration order; [`CheckpointFailureReason::name`] is the Java constant's name and
//! [`CheckpointFailureReason::message`] Flink's text, byte for byte, because monitoring shows both
//! and Flink users search for them. Which reasons count toward
//! `execution.checkpointing.tolerable-failed-checkpoints` is Flink's
//! `isCountedAgainstFailureThreshold`, not a choice of ours.

use std::fmt;

/// A reason why a checkpoint could not be triggered or did not complete (Flink's
/// `CheckpointFailureReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckpointFailureReason {
    /// The periodic trigger was stopped (the job is stopping).
    PeriodicSchedulerShutdown,
    /// Too many trigger requests are queued.
    TooManyCheckpointRequests,
    /// `execution.checkpointing.min-pause` has not elapsed since the last completed checkpoint.
    MinimumTimeBetweenCheckpoints,
    /// Some task that must take part in the checkpoint is not running.
    NotAllRequiredTasksRunning,
    /// Triggering failed with an I/O problem (for example, the checkpoint directory).
    IoException,
    /// A blocking output edge exists among the running tasks.
    BlockingOutputExist,
    /// The asynchronous part of a task's snapshot failed.
    CheckpointAsyncException,
    /// Another subtask sharing the in-flight data file failed.
    ChannelStateSharedStreamException,
    /// The checkpoint did not complete within `execution.checkpointing.timeout`.
    CheckpointExpired,
    /// A newer checkpoint completed first.
    CheckpointSubsumed,
    /// A task declined the checkpoint.
    CheckpointDeclined,
    /// A task was not ready to take a snapshot.
    CheckpointDeclinedTaskNotReady,
    /// A task was closing.
    CheckpointDeclinedTaskClosing,
    /// A task saw the barrier of a newer checkpoint before this one was aligned.
    CheckpointDeclinedSubsumed,
    /// A task received a cancellation marker for this checkpoint from an input.
    CheckpointDeclinedOnCancellationBarrier,
    /// An input of a task finished while the checkpoint was being aligned.
    CheckpointDeclinedInputEndOfStream,
    /// The coordinator was shut down.
    CheckpointCoordinatorShutdown,
    /// The coordinator was suspended (the job is restarting).
    CheckpointCoordinatorSuspend,
    /// The failover region is restarting.
    JobFailoverRegion,
    /// A task failed.
    TaskFailure,
    /// A task's local (synchronous) checkpoint step failed.
    TaskCheckpointFailure,
    /// Completion was notified to a task the coordinator does not know.
    UnknownTaskCheckpointNotificationFailure,
    /// Writing the checkpoint's metadata (the commit point) failed.
    FinalizeCheckpointFailure,
    /// Triggering the checkpoint on the sources failed.
    TriggerCheckpointFailure,
}

use CheckpointFailureReason as R;

impl CheckpointFailureReason {
    /// Every reason, in Flink's declaration order.
    pub const ALL: [CheckpointFailureReason; 24] = [
        R::PeriodicSchedulerShutdown,
        R::TooManyCheckpointRequests,
        R::MinimumTimeBetweenCheckpoints,
        R::NotAllRequiredTasksRunning,
        R::IoException,
        R::BlockingOutputExist,
        R::CheckpointAsyncException,
        R::ChannelStateSharedStreamException,
        R::CheckpointExpired,
        R::CheckpointSubsumed,
        R::CheckpointDeclined,
        R::CheckpointDeclinedTaskNotReady,
        R::CheckpointDeclinedTaskClosing,
        R::CheckpointDeclinedSubsumed,
        R::CheckpointDeclinedOnCancellationBarrier,
        R::CheckpointDeclinedInputEndOfStream,
        R::CheckpointCoordinatorShutdown,
        R::CheckpointCoordinatorSuspend,
        R::JobFailoverRegion,
        R::TaskFailure,
        R::TaskCheckpointFailure,
        R::UnknownTaskCheckpointNotificationFailure,
        R::FinalizeCheckpointFailure,
        R::TriggerCheckpointFailure,
    ];

    /// Flink's constant name, as shown in the REST API and the web dashboard.
    pub fn name(self) -> &'static str {
        match self {
            R::PeriodicSchedulerShutdown => "PERIODIC_SCHEDULER_SHUTDOWN",
            R::TooManyCheckpointRequests => "TOO_MANY_CHECKPOINT_REQUESTS",
            R::MinimumTimeBetweenCheckpoints => "MINIMUM_TIME_BETWEEN_CHECKPOINTS",
            R::NotAllRequiredTasksRunning => "NOT_ALL_REQUIRED_TASKS_RUNNING",
            R::IoException => "IO_EXCEPTION",
            R::BlockingOutputExist => "BLOCKING_OUTPUT_EXIST",
            R::CheckpointAsyncException => "CHECKPOINT_ASYNC_EXCEPTION",
            R::ChannelStateSharedStreamException => "CHANNEL_STATE_SHARED_STREAM_EXCEPTION",
            R::CheckpointExpired => "CHECKPOINT_EXPIRED",
            R::CheckpointSubsumed => "CHECKPOINT_SUBSUMED",
            R::CheckpointDeclined => "CHECKPOINT_DECLINED",
            R::CheckpointDeclinedTaskNotReady => "CHECKPOINT_DECLINED_TASK_NOT_READY",
            R::CheckpointDeclinedTaskClosing => "CHECKPOINT_DECLINED_TASK_CLOSING",
            R::CheckpointDeclinedSubsumed => "CHECKPOINT_DECLINED_SUBSUMED",
            R::CheckpointDeclinedOnCancellationBarrier => {
                "CHECKPOINT_DECLINED_ON_CANCELLATION_BARRIER"
            }
            R::CheckpointDeclinedInputEndOfStream => "CHECKPOINT_DECLINED_INPUT_END_OF_STREAM",
            R::CheckpointCoordinatorShutdown => "CHECKPOINT_COORDINATOR_SHUTDOWN",
            R::CheckpointCoordinatorSuspend => "CHECKPOINT_COORDINATOR_SUSPEND",
            R::JobFailoverRegion => "JOB_FAILOVER_REGION",
            R::TaskFailure => "TASK_FAILURE",
            R::TaskCheckpointFailure => "TASK_CHECKPOINT_FAILURE",
            R::UnknownTaskCheckpointNotificationFailure => {
                "UNKNOWN_TASK_CHECKPOINT_NOTIFICATION_FAILURE"
            }
            R::FinalizeCheckpointFailure => "FINALIZE_CHECKPOINT_FAILURE",
            R::TriggerCheckpointFailure => "TRIGGER_CHECKPOINT_FAILURE",
        }
    }

    /// Flink's message for the reason, exactly.
    pub fn message(self) -> &'static str {
        match self {
            R::PeriodicSchedulerShutdown => "Periodic checkpoint scheduler is shut down.",
            R::TooManyCheckpointRequests => {
                "The maximum number of queued checkpoint requests exceeded"
            }
            R::MinimumTimeBetweenCheckpoints => {
                "The minimum time between checkpoints is still pending. \
                 Checkpoint will be triggered after the minimum time."
            }
            R::NotAllRequiredTasksRunning => "Not all required tasks are currently running.",
            R::IoException => {
                "An Exception occurred while triggering the checkpoint. IO-problem detected."
            }
            R::BlockingOutputExist => "Blocking output edge exists in running tasks.",
            R::CheckpointAsyncException => "Asynchronous task checkpoint failed.",
            R::ChannelStateSharedStreamException => {
                "The checkpoint was aborted due to exception of other subtasks sharing the \
                 ChannelState file."
            }
            R::CheckpointExpired => "Checkpoint expired before completing.",
            R::CheckpointSubsumed => "Checkpoint has been subsumed.",
            R::CheckpointDeclined => "Checkpoint was declined.",
            R::CheckpointDeclinedTaskNotReady => "Checkpoint was declined (tasks not ready)",
            R::CheckpointDeclinedTaskClosing => "Checkpoint was declined (task is closing)",
            R::CheckpointDeclinedSubsumed => {
                "Checkpoint was canceled because a barrier from newer checkpoint was received."
            }
            R::CheckpointDeclinedOnCancellationBarrier => {
                "Task received cancellation from one of its inputs"
            }
            R::CheckpointDeclinedInputEndOfStream => {
                "Checkpoint was declined because one input stream is finished"
            }
            R::CheckpointCoordinatorShutdown => "CheckpointCoordinator shutdown.",
            R::CheckpointCoordinatorSuspend => "Checkpoint Coordinator is suspending.",
            R::JobFailoverRegion => "FailoverRegion is restarting.",
            R::TaskFailure => "Task has failed.",
            R::TaskCheckpointFailure => "Task local checkpoint failure.",
            R::UnknownTaskCheckpointNotificationFailure => {
                "Unknown task for the checkpoint to notify."
            }
            R::FinalizeCheckpointFailure => "Failure to finalize checkpoint.",
            R::TriggerCheckpointFailure => "Trigger checkpoint failure.",
        }
    }

    /// Whether the failure happens before the checkpoint reaches any task (Flink's
    /// `isPreFlight`): such a failure is the coordinator's own, never a task's.
    pub fn is_pre_flight(self) -> bool {
        matches!(
            self,
            R::PeriodicSchedulerShutdown
                | R::TooManyCheckpointRequests
                | R::MinimumTimeBetweenCheckpoints
                | R::NotAllRequiredTasksRunning
                | R::IoException
                | R::BlockingOutputExist
        )
    }

    /// Whether a failure with this reason counts toward
    /// `execution.checkpointing.tolerable-failed-checkpoints` (Flink's
    /// `isCountedAgainstFailureThreshold`). Only failures a failover might cure count: expiry,
    /// declines by a task's own error, asynchronous and I/O errors, and a failed commit.
    /// Shutdowns, subsumption and declines caused by the job's own progress (an input finished,
    /// a newer barrier, a cancellation marker) do not.
    pub fn counts_toward_tolerable(self) -> bool {
        matches!(
            self,
            R::IoException
                | R::CheckpointAsyncException
                | R::CheckpointDeclined
                | R::CheckpointExpired
                | R::FinalizeCheckpointFailure
        )
    }

    /// The reason whose Flink name is `name` (exact, upper case), for reading monitoring data back.
    pub fn from_name(name: &str) -> Option<CheckpointFailureReason> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
}

impl fmt::Display for CheckpointFailureReason {
    /// Flink's message, as a `CheckpointException` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flink's table: name, pre-flight, counted toward the tolerable failures, message.
    const FLINK: [(&str, bool, bool, &str); 24] = [
        ("PERIODIC_SCHEDULER_SHUTDOWN", true, false, "Periodic checkpoint scheduler is shut down."),
        ("TOO_MANY_CHECKPOINT_REQUESTS", true, false, "The maximum number of queued checkpoint requests exceeded"),
        ("MINIMUM_TIME_BETWEEN_CHECKPOINTS", true, false, "The minimum time between checkpoints is still pending. Checkpoint will be triggered after the minimum time."),
        ("NOT_ALL_REQUIRED_TASKS_RUNNING", true, false, "Not all required tasks are currently running."),
        ("IO_EXCEPTION", true, true, "An Exception occurred while triggering the checkpoint. IO-problem detected."),
        ("BLOCKING_OUTPUT_EXIST", true, false, "Blocking output edge exists in running tasks."),
        ("CHECKPOINT_ASYNC_EXCEPTION", false, true, "Asynchronous task checkpoint failed."),
        ("CHANNEL_STATE_SHARED_STREAM_EXCEPTION", false, false, "The checkpoint was aborted due to exception of other subtasks sharing the ChannelState file."),
        ("CHECKPOINT_EXPIRED", false, true, "Checkpoint expired before completing."),
        ("CHECKPOINT_SUBSUMED", false, false, "Checkpoint has been subsumed."),
        ("CHECKPOINT_DECLINED", false, true, "Checkpoint was declined."),
        ("CHECKPOINT_DECLINED_TASK_NOT_READY", false, false, "Checkpoint was declined (tasks not ready)"),
        ("CHECKPOINT_DECLINED_TASK_CLOSING", false, false, "Checkpoint was declined (task is closing)"),
        ("CHECKPOINT_DECLINED_SUBSUMED", false, false, "Checkpoint was canceled because a barrier from newer checkpoint was received."),
        ("CHECKPOINT_DECLINED_ON_CANCELLATION_BARRIER", false, false, "Task received cancellation from one of its inputs"),
        ("CHECKPOINT_DECLINED_INPUT_END_OF_STREAM", false, false, "Checkpoint was declined because one input stream is finished"),
        ("CHECKPOINT_COORDINATOR_SHUTDOWN", false, false, "CheckpointCoordinator shutdown."),
        ("CHECKPOINT_COORDINATOR_SUSPEND", false, false, "Checkpoint Coordinator is suspending."),
        ("JOB_FAILOVER_REGION", false, false, "FailoverRegion is restarting."),
        ("TASK_FAILURE", false, false, "Task has failed."),
        ("TASK_CHECKPOINT_FAILURE", false, false, "Task local checkpoint failure."),
        ("UNKNOWN_TASK_CHECKPOINT_NOTIFICATION_FAILURE", false, false, "Unknown task for the checkpoint to notify."),
        ("FINALIZE_CHECKPOINT_FAILURE", false, true, "Failure to finalize checkpoint."),
        ("TRIGGER_CHECKPOINT_FAILURE", false, false, "Trigger checkpoint failure."),
    ];

    #[test]
    fn every_reason_matches_flinks_table() {
        for (reason, (name, pre_flight, counts, message)) in
            CheckpointFailureReason::ALL.iter().zip(FLINK.iter())
        {
            assert_eq!(reason.name(), *name);
            assert_eq!(reason.is_pre_flight(), *pre_flight, "{name}");
            assert_eq!(reason.counts_toward_tolerable(), *counts, "{name}");
            assert_eq!(reason.message(), *message, "{name}");
            assert_eq!(reason.to_string(), *message);
            assert_eq!(CheckpointFailureReason::from_name(name), Some(*reason));
        }
    }

    #[test]
    fn names_are_unique_and_unknown_names_are_none() {
        let mut names: Vec<&str> = CheckpointFailureReason::ALL
            .iter()
            .map(|r| r.name())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CheckpointFailureReason::ALL.len());
        assert_eq!(
            CheckpointFailureReason::from_name("checkpoint_expired"),
            None
        );
        assert_eq!(CheckpointFailureReason::from_name("EXCEPTION"), None);
    }

    #[test]
    fn seed_messages_are_prefixes_of_flinks() {
        // The list of failure messages users know from Flink's operations notes.
        let seed = [
            "The maximum number of queued checkpoint requests exceeded",
            "Periodic checkpoint scheduler is shut down",
            "The minimum time between checkpoints is still pending",
            "Not all required tasks are currently running",
            "An Exception occurred while triggering the checkpoint.",
            "Asynchronous task checkpoint failed.",
            "The checkpoint was aborted due to exception of other subtasks sharing the ChannelState file",
            "Checkpoint expired before completing",
            "Checkpoint has been subsumed",
            "Checkpoint was declined",
            "Checkpoint was declined (tasks not ready)",
            "Checkpoint was declined (task is closing)",
            "Checkpoint was canceled because a barrier from newer checkpoint was received",
            "Task received cancellation from one of its inputs",
            "Checkpoint was declined because one input stream is finished",
            "CheckpointCoordinator shutdown",
            "Checkpoint Coordinator is suspending",
            "FailoverRegion is restarting",
            "Task has failed",
            "Task local checkpoint failure",
            "Unknown task for the checkpoint to notify",
            "Failure to finalize checkpoint",
            "Trigger checkpoint failure",
        ];
        for text in seed {
            assert!(
                CheckpointFailureReason::ALL
                    .iter()
                    .any(|r| r.message().starts_with(text)),
                "{text}"
            );
        }
    }
}
