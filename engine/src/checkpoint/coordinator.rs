//! The checkpoint coordinator's decisions, as pure functions and structs over facts: when to
//! trigger (Flink's `CheckpointRequestDecider` and periodic scheduler), when a checkpoint is
//! complete or expired (`PendingCheckpoint`), when failures must fail the job
//! (`CheckpointFailureManager`), which completed checkpoints retention deletes
//! (`CheckpointSubsumeHelper`) and which checkpoint recovery loads.
//!
//! Invariants: no I/O, no threads, no system time: `now_ms` is the caller's clock in milliseconds
//! since the epoch. Decisions are deterministic functions of their inputs (no hash-order
//! iteration: tasks are kept in ordered maps). Flink's defaults and Flink's messages are kept
//! exactly, because monitoring shows them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::checkpoint::failure::CheckpointFailureReason;
use crate::checkpoint::CheckpointingMode;
use crate::config::Configuration;
use crate::error::{EngineError, Result};

/// Flink's `MINIMAL_CHECKPOINT_TIME`: the smallest interval and timeout accepted.
pub const MINIMAL_CHECKPOINT_TIME_MS: i64 = 10;

/// Flink's cap on the pause between checkpoints (one year), which keeps time arithmetic from
/// overflowing.
const MAX_MIN_PAUSE_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// Flink's `UNLIMITED_TOLERABLE_FAILURE_NUMBER` (`Integer.MAX_VALUE`): failures are not counted.
pub const UNLIMITED_TOLERABLE_FAILURES: u32 = i32::MAX as u32;

/// Flink's `EXCEEDED_CHECKPOINT_TOLERABLE_FAILURE_MESSAGE`.
pub const EXCEEDED_TOLERABLE_FAILURE_MESSAGE: &str =
    "Exceeded checkpoint tolerable failure threshold.";

fn millis(d: Duration) -> i64 {
    // Durations beyond i64 milliseconds (292 million years) mean "never" in every use here.
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The checkpointing settings of a job, with Flink's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// `execution.checkpointing.interval`; `None` disables periodic checkpoints (the default).
    pub interval: Option<Duration>,
    /// `execution.checkpointing.mode` (EXACTLY_ONCE).
    pub mode: CheckpointingMode,
    /// `execution.checkpointing.timeout` (10 min).
    pub timeout: Duration,
    /// `execution.checkpointing.min-pause` (0 ms), measured from the end of the last completed
    /// checkpoint.
    pub min_pause: Duration,
    /// `execution.checkpointing.max-concurrent-checkpoints` (1).
    pub max_concurrent: u32,
    /// `execution.checkpointing.tolerable-failed-checkpoints` (0).
    pub tolerable_failed: u32,
    /// `execution.checkpointing.num-retained` (1).
    pub num_retained: usize,
    /// `execution.checkpointing.checkpoints-after-tasks-finish` (true).
    pub checkpoints_after_tasks_finish: bool,
    /// `execution.checkpointing.externalized-checkpoint-retention`
    /// (NO_EXTERNALIZED_CHECKPOINTS).
    pub retention: Retention,
    /// `execution.checkpointing.snapshot-compression` (false): snappy-compress state files.
    pub compression: bool,
    /// `execution.checkpointing.data-inline-threshold` (`state.storage.fs.memory-threshold`,
    /// 20 kb): a subtask's state file smaller than this is inlined in `_metadata`.
    pub inline_threshold: usize,
    /// `execution.checkpointing.write-buffer-size` (`state.storage.fs.write-buffer-size`, 4096):
    /// the write buffer of state files; Flink uses at least the inline threshold.
    pub write_buffer_size: usize,
    /// `web.checkpoints.history` (10): checkpoints kept in the statistics' history.
    pub history_size: usize,
    /// `state.backend.type` (`sled`), as the statistics' configuration shows it.
    pub state_backend: String,
    /// `execution.checkpointing.unaligned.enabled` (false), in effect only in EXACTLY_ONCE:
    /// like Flink, AT_LEAST_ONCE turns unaligned checkpoints off.
    pub unaligned: bool,
    /// `execution.checkpointing.unaligned.forced` (false). Flink's use of it (custom partitioners,
    /// iterations) has no counterpart here; forward and broadcast inputs stay aligned regardless.
    pub unaligned_forced: bool,
    /// `execution.checkpointing.aligned-checkpoint-timeout` (0 ms): with unaligned checkpoints, a
    /// checkpoint starts aligned and switches to unaligned at a task once this long has passed
    /// since it was triggered; 0 starts unaligned.
    pub aligned_checkpoint_timeout: Duration,
}

/// What happens to completed checkpoints when the job ends (Flink's
/// `ExternalizedCheckpointRetention` and the `CheckpointProperties` behind it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Deleted whenever the job ends.
    #[default]
    NoExternalizedCheckpoints,
    /// Kept when the job fails; deleted when it finishes or is cancelled.
    DeleteOnCancellation,
    /// Kept when the job fails or is cancelled; deleted when it finishes.
    RetainOnCancellation,
}

/// How a job ended, for [`Retention::keeps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEnd {
    Finished,
    Cancelled,
    Failed,
}

impl Retention {
    /// Whether completed checkpoints stay on disk when the job ends this way.
    pub fn keeps(self, end: JobEnd) -> bool {
        match (self, end) {
            (_, JobEnd::Finished) => false,
            (Retention::NoExternalizedCheckpoints, _) => false,
            (Retention::DeleteOnCancellation, JobEnd::Failed) => true,
            (Retention::DeleteOnCancellation, JobEnd::Cancelled) => false,
            (Retention::RetainOnCancellation, _) => true,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failed: 0,
            num_retained: 1,
            checkpoints_after_tasks_finish: true,
            retention: Retention::NoExternalizedCheckpoints,
            compression: false,
            inline_threshold: 20 * 1024,
            write_buffer_size: 4096,
            history_size: 10,
            state_backend: "sled".into(),
            unaligned: false,
            unaligned_forced: false,
            aligned_checkpoint_timeout: Duration::ZERO,
        }
    }
}

impl CheckpointConfig {
    /// Reads the checkpointing keys of `config` (any of their names) and checks them as Flink's
    /// `CheckpointConfig` setters do.
    pub fn from_configuration(config: &Configuration) -> Result<Self> {
        let d = CheckpointConfig::default();
        let mode = match config.get_str("execution.checkpointing.mode") {
            Some("AT_LEAST_ONCE") => CheckpointingMode::AtLeastOnce,
            _ => CheckpointingMode::ExactlyOnce,
        };
        let int = |key: &str| config.get_int(key).and_then(|v| u32::try_from(v).ok());
        let cfg = CheckpointConfig {
            interval: config.get_duration("execution.checkpointing.interval"),
            mode,
            timeout: config
                .get_duration("execution.checkpointing.timeout")
                .unwrap_or(d.timeout),
            min_pause: config
                .get_duration("execution.checkpointing.min-pause")
                .unwrap_or(d.min_pause),
            max_concurrent: int("execution.checkpointing.max-concurrent-checkpoints")
                .unwrap_or(d.max_concurrent),
            tolerable_failed: int("execution.checkpointing.tolerable-failed-checkpoints")
                .unwrap_or(d.tolerable_failed),
            num_retained: config
                .get_int("execution.checkpointing.num-retained")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(d.num_retained),
            checkpoints_after_tasks_finish: config
                .get_bool("execution.checkpointing.checkpoints-after-tasks-finish")
                .unwrap_or(d.checkpoints_after_tasks_finish),
            retention: match config
                .get_str("execution.checkpointing.externalized-checkpoint-retention")
            {
                Some("RETAIN_ON_CANCELLATION") => Retention::RetainOnCancellation,
                Some("DELETE_ON_CANCELLATION") => Retention::DeleteOnCancellation,
                _ => Retention::NoExternalizedCheckpoints,
            },
            compression: config
                .get_bool("execution.checkpointing.snapshot-compression")
                .unwrap_or(d.compression),
            inline_threshold: config
                .get_memory("execution.checkpointing.data-inline-threshold")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(d.inline_threshold),
            write_buffer_size: config
                .get_int("execution.checkpointing.write-buffer-size")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(d.write_buffer_size),
            history_size: config
                .get_int("web.checkpoints.history")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(d.history_size),
            state_backend: config
                .get_str("state.backend.type")
                .map_or(d.state_backend, str::to_string),
            // Flink logs "Unaligned checkpoints can only be used with checkpointing mode
            // EXACTLY_ONCE" and turns them off.
            unaligned: mode == CheckpointingMode::ExactlyOnce
                && config
                    .get_bool("execution.checkpointing.unaligned.enabled")
                    .unwrap_or(d.unaligned),
            unaligned_forced: config
                .get_bool("execution.checkpointing.unaligned.forced")
                .unwrap_or(d.unaligned_forced),
            aligned_checkpoint_timeout: config
                .get_duration("execution.checkpointing.aligned-checkpoint-timeout")
                .unwrap_or(d.aligned_checkpoint_timeout),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Flink's checks: interval and timeout at least 10 ms, at least one concurrent checkpoint,
    /// at least one retained checkpoint.
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = self.interval {
            if millis(i) < MINIMAL_CHECKPOINT_TIME_MS {
                return Err(EngineError::option(
                    format!("Checkpoint interval must be larger than or equal to {MINIMAL_CHECKPOINT_TIME_MS} ms"),
                    Some("set 'execution.checkpointing.interval' to 10 ms or more, or leave it unset to disable checkpointing".to_string()),
                ));
            }
        }
        if millis(self.timeout) < MINIMAL_CHECKPOINT_TIME_MS {
            return Err(EngineError::option(
                format!("Checkpoint timeout must be larger than or equal to {MINIMAL_CHECKPOINT_TIME_MS} ms"),
                Some("set 'execution.checkpointing.timeout' to 10 ms or more".to_string()),
            ));
        }
        if self.max_concurrent == 0 {
            return Err(EngineError::option(
                "The maximum number of concurrent attempts must be at least one.",
                None,
            ));
        }
        if self.num_retained == 0 {
            return Err(EngineError::option(
                "execution.checkpointing.num-retained must be at least 1",
                None,
            ));
        }
        Ok(())
    }

    /// Whether periodic checkpoints are on.
    pub fn is_enabled(&self) -> bool {
        self.interval.is_some()
    }
}

/// What the coordinator knows when it asks whether to trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerFacts {
    /// The current time.
    pub now_ms: i64,
    /// When the job (or the periodic scheduler) started.
    pub started_ms: i64,
    /// When the most recent checkpoint was triggered, whatever became of it.
    pub last_trigger_ms: Option<i64>,
    /// When the last successfully completed checkpoint completed.
    pub last_completed_end_ms: Option<i64>,
    /// Checkpoints triggered and neither completed nor failed.
    pub in_progress: usize,
    /// Whether every task that must take part is running.
    pub all_tasks_running: bool,
}

/// The answer of [`TriggerPolicy::next_trigger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerDecision {
    /// Periodic checkpoints are off.
    Disabled,
    /// Not due yet: ask again at `at_ms`.
    NotDue { at_ms: i64 },
    /// `max-concurrent-checkpoints` are in progress: ask again when one completes or fails
    /// (Flink keeps the request queued).
    WaitForInProgress,
    /// The due request is dropped with `reason` (a pre-flight failure, which never counts toward
    /// the tolerable failures); ask again at `retry_at_ms`, or at the next interval when `None`.
    Decline {
        reason: CheckpointFailureReason,
        retry_at_ms: Option<i64>,
    },
    /// Trigger a checkpoint now.
    Trigger,
}

/// When periodic checkpoints are triggered: the interval, the min pause after the last completed
/// checkpoint, and the maximum number in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerPolicy {
    /// `None` when checkpointing is off; otherwise Flink's base interval, `max(interval,
    /// min_pause)`.
    interval_ms: Option<i64>,
    min_pause_ms: i64,
    max_concurrent: usize,
}

impl TriggerPolicy {
    /// The policy of `config`.
    pub fn new(config: &CheckpointConfig) -> Self {
        let min_pause_ms = millis(config.min_pause).min(MAX_MIN_PAUSE_MS);
        TriggerPolicy {
            interval_ms: config.interval.map(|i| millis(i).max(min_pause_ms)),
            min_pause_ms,
            max_concurrent: usize::try_from(config.max_concurrent)
                .unwrap_or(usize::MAX)
                .max(1),
        }
    }

    /// Decides whether to trigger now. The first checkpoint is due one interval after the start
    /// (Flink picks a random initial delay in the interval; a fixed one keeps runs
    /// reproducible), every next one an interval after the previous trigger. A due checkpoint
    /// waits while `max-concurrent-checkpoints` are in progress, is declined with
    /// MINIMUM_TIME_BETWEEN_CHECKPOINTS while the min pause since the last completed checkpoint
    /// runs (and is retried when it has run), and is declined with NOT_ALL_REQUIRED_TASKS_RUNNING
    /// while a task is not running.
    pub fn next_trigger(&self, facts: &TriggerFacts) -> TriggerDecision {
        let Some(interval) = self.interval_ms else {
            return TriggerDecision::Disabled;
        };
        let due = facts
            .last_trigger_ms
            .unwrap_or(facts.started_ms)
            .saturating_add(interval);
        if facts.now_ms < due {
            return TriggerDecision::NotDue { at_ms: due };
        }
        if facts.in_progress >= self.max_concurrent {
            return TriggerDecision::WaitForInProgress;
        }
        if let Some(end) = facts.last_completed_end_ms {
            let pause_over = end.saturating_add(self.min_pause_ms);
            if facts.now_ms < pause_over {
                return TriggerDecision::Decline {
                    reason: CheckpointFailureReason::MinimumTimeBetweenCheckpoints,
                    retry_at_ms: Some(pause_over),
                };
            }
        }
        if !facts.all_tasks_running {
            return TriggerDecision::Decline {
                reason: CheckpointFailureReason::NotAllRequiredTasksRunning,
                retry_at_ms: None,
            };
        }
        TriggerDecision::Trigger
    }
}

/// What kind of snapshot a checkpoint id stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointKind {
    /// A periodic checkpoint.
    Checkpoint,
    /// A savepoint taken while the job keeps running.
    Savepoint,
    /// A savepoint that stops the job (stop-with-savepoint): a failure must fail the job, or the
    /// stop would wait forever.
    SynchronousSavepoint,
}

impl CheckpointKind {
    /// Whether this is a savepoint of either kind.
    pub fn is_savepoint(self) -> bool {
        !matches!(self, CheckpointKind::Checkpoint)
    }
}

/// One subtask that must acknowledge a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey {
    /// The operator's id in the dataflow graph.
    pub operator_id: u64,
    /// The subtask index.
    pub subtask: usize,
}

/// What a subtask reports when its snapshot is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acknowledgement {
    /// Full state size in bytes.
    pub state_size: u64,
    /// Bytes written by this checkpoint (less than the full size when incremental).
    pub checkpointed_size: u64,
    /// Duration of the synchronous part.
    pub sync_duration_ms: i64,
    /// Duration of the asynchronous part.
    pub async_duration_ms: i64,
    /// Barrier alignment duration at the subtask.
    pub alignment_duration_ms: i64,
    /// Time from the trigger to the first barrier at the subtask.
    pub start_delay_ms: i64,
    /// Bytes processed between the snapshot and the last barrier (in-flight data of an unaligned
    /// snapshot, which the task processed as well as persisted).
    pub processed_data: u64,
    /// Bytes of in-flight data persisted with the snapshot.
    pub persisted_data: u64,
    /// Whether the subtask's snapshot was unaligned.
    pub unaligned: bool,
}

/// The answer to an acknowledgement (Flink's `TaskAcknowledgeResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded.
    Success,
    /// This subtask had already acknowledged.
    Duplicate,
    /// The subtask is not part of this checkpoint.
    Unknown,
    /// The checkpoint already failed or expired; the subtask's files are garbage.
    Discarded,
}

/// The statistics of a completed checkpoint, for monitoring and the `_metadata` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedCheckpointStats {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// Checkpoint or savepoint.
    pub kind: CheckpointKind,
    /// When the coordinator triggered it.
    pub trigger_ms: i64,
    /// When it completed.
    pub completed_ms: i64,
    /// The latest acknowledgement's time.
    pub latest_ack_ms: i64,
    /// Trigger to completion.
    pub end_to_end_duration_ms: i64,
    /// Sum of the subtasks' full state sizes.
    pub state_size: u64,
    /// Sum of the bytes the subtasks wrote.
    pub checkpointed_size: u64,
    /// Per subtask: the acknowledgement and its time, in task order.
    pub tasks: Vec<(TaskKey, Acknowledgement, i64)>,
}

/// A triggered checkpoint collecting acknowledgements.
#[derive(Clone, Debug)]
pub struct PendingCheckpoint {
    checkpoint_id: u64,
    kind: CheckpointKind,
    trigger_ms: i64,
    deadline_ms: i64,
    not_yet_acknowledged: BTreeSet<TaskKey>,
    acknowledged: BTreeMap<TaskKey, (Acknowledgement, i64)>,
    failure: Option<CheckpointFailureReason>,
}

impl PendingCheckpoint {
    /// Checkpoint `checkpoint_id` triggered at `trigger_ms`, to be acknowledged by `tasks`, and
    /// expiring `timeout` after the trigger.
    pub fn new(
        checkpoint_id: u64,
        kind: CheckpointKind,
        trigger_ms: i64,
        timeout: Duration,
        tasks: impl IntoIterator<Item = TaskKey>,
    ) -> Self {
        PendingCheckpoint {
            checkpoint_id,
            kind,
            trigger_ms,
            deadline_ms: trigger_ms.saturating_add(millis(timeout)),
            not_yet_acknowledged: tasks.into_iter().collect(),
            acknowledged: BTreeMap::new(),
            failure: None,
        }
    }

    /// The checkpoint id.
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// Checkpoint or savepoint.
    pub fn kind(&self) -> CheckpointKind {
        self.kind
    }

    /// When the coordinator triggered it.
    pub fn trigger_ms(&self) -> i64 {
        self.trigger_ms
    }

    /// When it expires.
    pub fn deadline_ms(&self) -> i64 {
        self.deadline_ms
    }

    /// Subtasks that acknowledged so far.
    pub fn num_acknowledged(&self) -> usize {
        self.acknowledged.len()
    }

    /// Subtasks that must acknowledge in all.
    pub fn num_tasks(&self) -> usize {
        self.acknowledged.len() + self.not_yet_acknowledged.len()
    }

    /// Subtasks still to acknowledge, in order.
    pub fn not_yet_acknowledged(&self) -> impl Iterator<Item = &TaskKey> {
        self.not_yet_acknowledged.iter()
    }

    /// Why it failed, once it has.
    pub fn failure(&self) -> Option<CheckpointFailureReason> {
        self.failure
    }

    /// Every subtask acknowledged and nothing failed it: `_metadata` may be written.
    pub fn is_complete(&self) -> bool {
        self.failure.is_none() && self.not_yet_acknowledged.is_empty()
    }

    /// Records `task`'s acknowledgement received at `now_ms`.
    pub fn acknowledge(&mut self, task: TaskKey, ack: Acknowledgement, now_ms: i64) -> AckOutcome {
        if self.failure.is_some() {
            return AckOutcome::Discarded;
        }
        if self.not_yet_acknowledged.remove(&task) {
            self.acknowledged.insert(task, (ack, now_ms));
            AckOutcome::Success
        } else if self.acknowledged.contains_key(&task) {
            AckOutcome::Duplicate
        } else {
            AckOutcome::Unknown
        }
    }

    /// Fails the checkpoint with `reason` (a task's decline, or the coordinator's abort). Returns
    /// the reason the first time only; later failures of a failed checkpoint change nothing.
    pub fn abort(&mut self, reason: CheckpointFailureReason) -> Option<CheckpointFailureReason> {
        if self.failure.is_some() {
            return None;
        }
        self.failure = Some(reason);
        Some(reason)
    }

    /// Fails the checkpoint with CHECKPOINT_EXPIRED if `now_ms` reached its deadline and it is
    /// neither complete nor failed.
    pub fn check_expired(&mut self, now_ms: i64) -> Option<CheckpointFailureReason> {
        if now_ms >= self.deadline_ms && !self.is_complete() {
            self.abort(CheckpointFailureReason::CheckpointExpired)
        } else {
            None
        }
    }

    /// The statistics of the completed checkpoint, completed at `now_ms`; `None` while it is not
    /// complete.
    pub fn completed_stats(&self, now_ms: i64) -> Option<CompletedCheckpointStats> {
        if !self.is_complete() {
            return None;
        }
        let tasks: Vec<(TaskKey, Acknowledgement, i64)> = self
            .acknowledged
            .iter()
            .map(|(k, (a, at))| (*k, *a, *at))
            .collect();
        Some(CompletedCheckpointStats {
            checkpoint_id: self.checkpoint_id,
            kind: self.kind,
            trigger_ms: self.trigger_ms,
            completed_ms: now_ms,
            latest_ack_ms: tasks.iter().map(|t| t.2).max().unwrap_or(self.trigger_ms),
            end_to_end_duration_ms: now_ms.saturating_sub(self.trigger_ms).max(0),
            state_size: tasks
                .iter()
                .fold(0u64, |s, t| s.saturating_add(t.1.state_size)),
            checkpointed_size: tasks
                .iter()
                .fold(0u64, |s, t| s.saturating_add(t.1.checkpointed_size)),
            tasks,
        })
    }
}

/// The pending checkpoints that the completion of `completed_id` subsumes: every older one that
/// is not a savepoint (Flink aborts them with CHECKPOINT_SUBSUMED). Ascending.
pub fn subsumed_by(pending: &[(u64, CheckpointKind)], completed_id: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = pending
        .iter()
        .filter(|(id, kind)| *id < completed_id && !kind.is_savepoint())
        .map(|(id, _)| *id)
        .collect();
    ids.sort_unstable();
    ids
}

/// What the failure manager decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureVerdict {
    /// The job keeps running.
    Continue,
    /// The job must fail (then the restart strategy decides), with this message.
    FailJob { message: String },
}

/// Counts consecutive checkpoint failures as Flink's `CheckpointFailureManager` does and decides
/// when they must fail the job.
#[derive(Clone, Debug)]
pub struct FailureManager {
    tolerable: u32,
    consecutive: u32,
    /// Checkpoints already counted: a checkpoint declined by several tasks counts once.
    counted: BTreeSet<u64>,
    last_succeeded: Option<u64>,
}

impl FailureManager {
    /// A manager tolerating `tolerable` consecutive counted failures
    /// (`execution.checkpointing.tolerable-failed-checkpoints`).
    pub fn new(tolerable: u32) -> Self {
        FailureManager {
            tolerable,
            consecutive: 0,
            counted: BTreeSet::new(),
            last_succeeded: None,
        }
    }

    /// The number of consecutive counted failures.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// A checkpoint failed. `checkpoint_id` is `None` when the failure happened before an id was
    /// assigned; `reported_by_task` is true when a task declined or failed it (Flink's task-level
    /// failure), false for the coordinator's own (job-level) failures. Pre-flight reasons are
    /// always job-level.
    ///
    /// Flink's rules: a job-level failure of a savepoint changes nothing; a task-level failure
    /// of a stop-with-savepoint fails the job at once; otherwise a failure of a checkpoint newer
    /// than the last success counts (once per checkpoint) if its reason counts toward the
    /// tolerable failures, and the job fails when the count exceeds the tolerable number.
    pub fn on_failure(
        &mut self,
        checkpoint_id: Option<u64>,
        kind: CheckpointKind,
        reason: CheckpointFailureReason,
        reported_by_task: bool,
    ) -> FailureVerdict {
        let job_level = reason.is_pre_flight() || !reported_by_task;
        if job_level {
            if kind.is_savepoint() {
                return FailureVerdict::Continue;
            }
        } else if kind == CheckpointKind::SynchronousSavepoint {
            return FailureVerdict::FailJob {
                message: reason.message().to_string(),
            };
        }
        let newer = match (checkpoint_id, self.last_succeeded) {
            (Some(id), Some(last)) => id > last,
            _ => true,
        };
        if !newer {
            return FailureVerdict::Continue;
        }
        if self.tolerable != UNLIMITED_TOLERABLE_FAILURES
            && reason.counts_toward_tolerable()
            && match checkpoint_id {
                Some(id) => self.counted.insert(id),
                None => true,
            }
        {
            self.consecutive = self.consecutive.saturating_add(1);
        }
        if self.consecutive > self.tolerable {
            self.clear();
            return FailureVerdict::FailJob {
                message: format!(
                    "{EXCEEDED_TOLERABLE_FAILURE_MESSAGE} The latest checkpoint failed due to {}, \
                     view the Checkpoint History tab or the Job Manager log to find out why \
                     continuous checkpoints failed.",
                    reason.message()
                ),
            };
        }
        FailureVerdict::Continue
    }

    /// Checkpoint `checkpoint_id` completed: a success newer than every earlier one resets the
    /// count.
    pub fn on_success(&mut self, checkpoint_id: u64) {
        if !matches!(self.last_succeeded, Some(last) if checkpoint_id <= last) {
            self.last_succeeded = Some(checkpoint_id);
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.consecutive = 0;
        self.counted.clear();
    }
}

/// The completed checkpoints retention deletes so that the newest `num_retained` (at least one)
/// remain, oldest first. Duplicate ids are considered once.
pub fn which_to_delete(completed_ids: &[u64], num_retained: usize) -> Vec<u64> {
    let mut ids = completed_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let keep = num_retained.max(1);
    let excess = ids.len().saturating_sub(keep);
    ids.truncate(excess);
    ids
}

/// Where a copy of a checkpoint lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyKind {
    /// The task-local copy (`execution.state-recovery.from-local`): fastest to load.
    Local,
    /// The copy under the checkpoint directory.
    Primary,
}

/// What reading a copy's checksums found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// Every file present and its checksum correct.
    Verified,
    /// Not checked.
    Unverified,
    /// A file missing, truncated or with a wrong checksum.
    Damaged,
}

/// One copy of a completed checkpoint that recovery could load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreCandidate {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// Which copy.
    pub copy: CopyKind,
    /// What verification found.
    pub integrity: Integrity,
}

/// The checkpoint and copy recovery loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreChoice {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// Which copy.
    pub copy: CopyKind,
    /// Newer checkpoints passed over (none of their copies was usable), newest first: worth a
    /// warning, since their progress is lost.
    pub skipped: Vec<u64>,
}

/// Picks the newest checkpoint with a verified copy, preferring the local copy when it verified;
/// when no copy at all is verified, falls back to the newest checkpoint with an unverified copy
/// that is not known to be damaged, preferring the primary copy. `None` when nothing is usable.
pub fn which_checkpoint_to_restore(candidates: &[RestoreCandidate]) -> Option<RestoreChoice> {
    let best = |integrity: Integrity, prefer: [CopyKind; 2]| {
        let mut ids: Vec<u64> = candidates
            .iter()
            .filter(|c| c.integrity == integrity)
            .map(|c| c.checkpoint_id)
            .collect();
        ids.sort_unstable();
        let id = *ids.last()?;
        let copy = prefer.into_iter().find(|&p| {
            candidates
                .iter()
                .any(|c| c.checkpoint_id == id && c.copy == p && c.integrity == integrity)
        })?;
        Some((id, copy))
    };
    let (checkpoint_id, copy) = best(Integrity::Verified, [CopyKind::Local, CopyKind::Primary])
        .or_else(|| best(Integrity::Unverified, [CopyKind::Primary, CopyKind::Local]))?;
    let mut skipped: Vec<u64> = candidates
        .iter()
        .map(|c| c.checkpoint_id)
        .filter(|&id| id > checkpoint_id)
        .collect();
    skipped.sort_unstable_by(|a, b| b.cmp(a));
    skipped.dedup();
    Some(RestoreChoice {
        checkpoint_id,
        copy,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckpointFailureReason as R;

    fn conf(pairs: &[(&str, &str)]) -> Configuration {
        let mut c = Configuration::new();
        for (k, v) in pairs {
            c.set(k, v).expect("valid key");
        }
        c
    }

    #[test]
    fn retention_follows_flinks_checkpoint_properties() {
        use JobEnd::*;
        for r in [
            Retention::NoExternalizedCheckpoints,
            Retention::DeleteOnCancellation,
            Retention::RetainOnCancellation,
        ] {
            assert!(!r.keeps(Finished), "{r:?}");
        }
        assert!(!Retention::NoExternalizedCheckpoints.keeps(Failed));
        assert!(!Retention::NoExternalizedCheckpoints.keeps(Cancelled));
        assert!(Retention::DeleteOnCancellation.keeps(Failed));
        assert!(!Retention::DeleteOnCancellation.keeps(Cancelled));
        assert!(Retention::RetainOnCancellation.keeps(Failed));
        assert!(Retention::RetainOnCancellation.keeps(Cancelled));
    }

    #[test]
    fn config_defaults_are_flinks() {
        let c = CheckpointConfig::from_configuration(&Configuration::new()).expect("valid");
        assert_eq!(c, CheckpointConfig::default());
        assert!(!c.is_enabled());
        assert_eq!(c.mode, CheckpointingMode::ExactlyOnce);
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(
            (c.max_concurrent, c.tolerable_failed, c.num_retained),
            (1, 0, 1)
        );
    }

    #[test]
    fn config_reads_every_name_of_every_key() {
        let c = CheckpointConfig::from_configuration(&conf(&[
            ("execution.checkpointing.interval", "10 s"),
            ("execution.checkpointing.mode", "at_least_once"),
            ("execution.checkpointing.timeout", "1 min"),
            ("execution.checkpointing.min-pause", "500ms"),
            ("execution.checkpointing.max-concurrent-checkpoints", "3"),
            ("execution.checkpointing.tolerable-failed-checkpoints", "2"),
            ("state.checkpoints.num-retained", "4"),
            (
                "execution.checkpointing.checkpoints-after-tasks-finish.enabled",
                "false",
            ),
        ]))
        .expect("valid");
        assert_eq!(c.interval, Some(Duration::from_secs(10)));
        assert_eq!(c.mode, CheckpointingMode::AtLeastOnce);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.min_pause, Duration::from_millis(500));
        assert_eq!(
            (c.max_concurrent, c.tolerable_failed, c.num_retained),
            (3, 2, 4)
        );
        assert!(!c.checkpoints_after_tasks_finish);
    }

    #[test]
    fn config_rejects_what_flink_rejects() {
        let cases = [
            (
                "execution.checkpointing.interval",
                "5 ms",
                "Checkpoint interval must be larger than or equal to 10 ms",
            ),
            (
                "execution.checkpointing.timeout",
                "9 ms",
                "Checkpoint timeout must be larger than or equal to 10 ms",
            ),
        ];
        for (key, value, message) in cases {
            let e = CheckpointConfig::from_configuration(&conf(&[(key, value)])).unwrap_err();
            assert_eq!(e.to_string(), message);
        }
        let ok = conf(&[("execution.checkpointing.interval", "10 ms")]);
        assert!(CheckpointConfig::from_configuration(&ok).is_ok());
    }

    fn policy(interval_ms: Option<u64>, min_pause_ms: u64, max_concurrent: u32) -> TriggerPolicy {
        TriggerPolicy::new(&CheckpointConfig {
            interval: interval_ms.map(Duration::from_millis),
            min_pause: Duration::from_millis(min_pause_ms),
            max_concurrent,
            ..CheckpointConfig::default()
        })
    }

    fn facts(
        now_ms: i64,
        last_trigger_ms: Option<i64>,
        last_completed_end_ms: Option<i64>,
        in_progress: usize,
    ) -> TriggerFacts {
        TriggerFacts {
            now_ms,
            started_ms: 0,
            last_trigger_ms,
            last_completed_end_ms,
            in_progress,
            all_tasks_running: true,
        }
    }

    #[test]
    fn trigger_decisions() {
        use TriggerDecision::*;
        let min_pause = |at| Decline {
            reason: R::MinimumTimeBetweenCheckpoints,
            retry_at_ms: Some(at),
        };
        let table: &[(&str, TriggerPolicy, TriggerFacts, TriggerDecision)] = &[
            (
                "off",
                policy(None, 0, 1),
                facts(10_000, None, None, 0),
                Disabled,
            ),
            (
                "first not due",
                policy(Some(1000), 0, 1),
                facts(999, None, None, 0),
                NotDue { at_ms: 1000 },
            ),
            (
                "first due",
                policy(Some(1000), 0, 1),
                facts(1000, None, None, 0),
                Trigger,
            ),
            (
                "next due from last trigger",
                policy(Some(1000), 0, 1),
                facts(2500, Some(1700), Some(1900), 0),
                NotDue { at_ms: 2700 },
            ),
            (
                "late trigger fires at once",
                policy(Some(1000), 0, 1),
                facts(9000, Some(1000), Some(1100), 0),
                Trigger,
            ),
            (
                "max concurrent reached",
                policy(Some(1000), 0, 1),
                facts(2000, Some(1000), None, 1),
                WaitForInProgress,
            ),
            (
                "below max concurrent",
                policy(Some(1000), 0, 2),
                facts(2000, Some(1000), None, 1),
                Trigger,
            ),
            (
                "min pause from end of last completed",
                policy(Some(1000), 600, 1),
                facts(2000, Some(1000), Some(1800), 0),
                min_pause(2400),
            ),
            (
                "min pause over",
                policy(Some(1000), 600, 1),
                facts(2400, Some(1000), Some(1800), 0),
                Trigger,
            ),
            (
                "min pause larger than interval widens it",
                policy(Some(100), 500, 1),
                facts(400, Some(0), None, 0),
                NotDue { at_ms: 500 },
            ),
            (
                "min pause with no completed checkpoint",
                policy(Some(1000), 5000, 1),
                facts(5000, None, None, 0),
                Trigger,
            ),
        ];
        for (name, p, f, expected) in table {
            assert_eq!(p.next_trigger(f), *expected, "{name}");
        }
        let mut f = facts(1000, None, None, 0);
        f.all_tasks_running = false;
        assert_eq!(
            policy(Some(1000), 0, 1).next_trigger(&f),
            Decline {
                reason: R::NotAllRequiredTasksRunning,
                retry_at_ms: None
            }
        );
    }

    fn task(operator_id: u64, subtask: usize) -> TaskKey {
        TaskKey {
            operator_id,
            subtask,
        }
    }

    fn ack(size: u64) -> Acknowledgement {
        Acknowledgement {
            state_size: size,
            checkpointed_size: size / 2,
            sync_duration_ms: 1,
            async_duration_ms: 2,
            ..Acknowledgement::default()
        }
    }

    #[test]
    fn pending_checkpoint_completes_when_every_task_acknowledged() {
        let tasks = [task(1, 0), task(1, 1), task(2, 0)];
        let mut p = PendingCheckpoint::new(
            7,
            CheckpointKind::Checkpoint,
            1000,
            Duration::from_secs(1),
            tasks,
        );
        assert_eq!((p.num_tasks(), p.num_acknowledged()), (3, 0));
        assert_eq!(
            p.acknowledge(task(1, 1), ack(100), 1100),
            AckOutcome::Success
        );
        assert_eq!(
            p.acknowledge(task(1, 1), ack(100), 1101),
            AckOutcome::Duplicate
        );
        assert_eq!(p.acknowledge(task(9, 0), ack(1), 1102), AckOutcome::Unknown);
        assert!(!p.is_complete());
        assert_eq!(p.completed_stats(1200), None);
        assert_eq!(
            p.not_yet_acknowledged().copied().collect::<Vec<_>>(),
            vec![task(1, 0), task(2, 0)]
        );
        assert_eq!(
            p.acknowledge(task(2, 0), ack(40), 1300),
            AckOutcome::Success
        );
        assert_eq!(
            p.acknowledge(task(1, 0), ack(60), 1250),
            AckOutcome::Success
        );
        assert!(p.is_complete());
        assert_eq!(p.check_expired(5000), None);
        let s = p.completed_stats(1400).expect("complete");
        assert_eq!(
            (s.checkpoint_id, s.trigger_ms, s.completed_ms),
            (7, 1000, 1400)
        );
        assert_eq!((s.latest_ack_ms, s.end_to_end_duration_ms), (1300, 400));
        assert_eq!((s.state_size, s.checkpointed_size), (200, 100));
        assert_eq!(
            s.tasks.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![task(1, 0), task(1, 1), task(2, 0)]
        );
    }

    #[test]
    fn pending_checkpoint_expires_at_its_deadline_and_discards_late_acks() {
        let mut p = PendingCheckpoint::new(
            3,
            CheckpointKind::Checkpoint,
            1000,
            Duration::from_millis(500),
            [task(1, 0)],
        );
        assert_eq!(p.deadline_ms(), 1500);
        assert_eq!(p.check_expired(1499), None);
        assert_eq!(p.check_expired(1500), Some(R::CheckpointExpired));
        assert_eq!(p.check_expired(1600), None);
        assert_eq!(
            p.failure().map(R::message),
            Some("Checkpoint expired before completing.")
        );
        assert_eq!(
            p.acknowledge(task(1, 0), ack(1), 1600),
            AckOutcome::Discarded
        );
        assert!(!p.is_complete());
    }

    #[test]
    fn a_decline_fails_the_checkpoint_once() {
        let mut p = PendingCheckpoint::new(
            3,
            CheckpointKind::Savepoint,
            0,
            Duration::from_secs(1),
            [task(1, 0), task(1, 1)],
        );
        assert_eq!(p.abort(R::CheckpointDeclined), Some(R::CheckpointDeclined));
        assert_eq!(p.abort(R::CheckpointExpired), None);
        assert_eq!(p.check_expired(10_000), None);
        assert_eq!(p.failure(), Some(R::CheckpointDeclined));
        // A checkpoint with no task is complete at once.
        let empty =
            PendingCheckpoint::new(1, CheckpointKind::Checkpoint, 0, Duration::from_secs(1), []);
        assert!(empty.is_complete());
    }

    #[test]
    fn completion_subsumes_older_checkpoints_but_not_savepoints() {
        let pending = [
            (4, CheckpointKind::Checkpoint),
            (2, CheckpointKind::Checkpoint),
            (3, CheckpointKind::Savepoint),
            (6, CheckpointKind::Checkpoint),
        ];
        assert_eq!(subsumed_by(&pending, 5), vec![2, 4]);
        assert_eq!(subsumed_by(&pending, 1), Vec::<u64>::new());
    }

    /// Feeds (checkpoint id, kind, reason, reported by a task) and expects the verdicts.
    fn failures(tolerable: u32, steps: &[(Option<u64>, CheckpointKind, R, bool, bool)]) {
        let mut m = FailureManager::new(tolerable);
        for (i, (id, kind, reason, by_task, fails)) in steps.iter().enumerate() {
            let v = m.on_failure(*id, *kind, *reason, *by_task);
            assert_eq!(
                matches!(v, FailureVerdict::FailJob { .. }),
                *fails,
                "step {i}: {v:?}"
            );
        }
    }

    #[test]
    fn failure_counting_is_flinks() {
        use CheckpointKind::*;
        // Default: the first counted failure fails the job.
        failures(
            0,
            &[(Some(1), Checkpoint, R::CheckpointExpired, false, true)],
        );
        // Reasons that do not count never fail the job.
        let not_counted: Vec<(Option<u64>, CheckpointKind, R, bool, bool)> = R::ALL
            .iter()
            .filter(|r| !r.counts_toward_tolerable())
            .enumerate()
            .map(|(i, r)| (Some(i as u64 + 1), Checkpoint, *r, true, false))
            .collect();
        failures(0, &not_counted);
        // Every counted reason fails the job at tolerable 0.
        for r in R::ALL.iter().filter(|r| r.counts_toward_tolerable()) {
            failures(0, &[(Some(1), Checkpoint, *r, !r.is_pre_flight(), true)]);
        }
        // tolerable 2: the third consecutive counted failure fails; subsumed ones are skipped.
        failures(
            2,
            &[
                (Some(1), Checkpoint, R::CheckpointDeclined, true, false),
                (Some(2), Checkpoint, R::CheckpointSubsumed, false, false),
                (Some(3), Checkpoint, R::CheckpointExpired, false, false),
                (Some(4), Checkpoint, R::CheckpointAsyncException, true, true),
                // The count starts again after the job failed.
                (Some(5), Checkpoint, R::CheckpointExpired, false, false),
            ],
        );
        // A checkpoint declined by several tasks counts once; unknown ids always count.
        failures(
            1,
            &[
                (Some(1), Checkpoint, R::CheckpointDeclined, true, false),
                (Some(1), Checkpoint, R::CheckpointDeclined, true, false),
                (None, Checkpoint, R::IoException, false, true),
            ],
        );
        // Savepoints: job-level failures are ignored, a task failure of a stop-with-savepoint
        // fails the job at once, other savepoint task failures count.
        failures(
            5,
            &[
                (Some(1), Savepoint, R::CheckpointExpired, false, false),
                (Some(1), SynchronousSavepoint, R::IoException, true, false),
                (
                    Some(2),
                    SynchronousSavepoint,
                    R::CheckpointDeclinedOnCancellationBarrier,
                    true,
                    true,
                ),
            ],
        );
        failures(
            0,
            &[(Some(1), Savepoint, R::CheckpointDeclined, true, true)],
        );
        // Unlimited tolerance never fails.
        failures(
            UNLIMITED_TOLERABLE_FAILURES,
            &[
                (Some(1), Checkpoint, R::CheckpointExpired, false, false),
                (Some(2), Checkpoint, R::CheckpointExpired, false, false),
            ],
        );
    }

    #[test]
    fn success_resets_the_count_and_older_failures_are_ignored() {
        let mut m = FailureManager::new(1);
        let k = CheckpointKind::Checkpoint;
        assert_eq!(
            m.on_failure(Some(1), k, R::CheckpointExpired, false),
            FailureVerdict::Continue
        );
        assert_eq!(m.consecutive_failures(), 1);
        m.on_success(2);
        assert_eq!(m.consecutive_failures(), 0);
        // Checkpoint 1 failing again (a late decline) is older than the success: ignored.
        assert_eq!(
            m.on_failure(Some(1), k, R::CheckpointDeclined, true),
            FailureVerdict::Continue
        );
        assert_eq!(m.consecutive_failures(), 0);
        // An older success does not reset.
        assert_eq!(
            m.on_failure(Some(3), k, R::CheckpointExpired, false),
            FailureVerdict::Continue
        );
        m.on_success(2);
        assert_eq!(m.consecutive_failures(), 1);
        assert_eq!(
            m.on_failure(Some(4), k, R::CheckpointExpired, false),
            FailureVerdict::FailJob {
                message: "Exceeded checkpoint tolerable failure threshold. The latest checkpoint \
                          failed due to Checkpoint expired before completing., view the Checkpoint \
                          History tab or the Job Manager log to find out why continuous \
                          checkpoints failed."
                    .to_string()
            }
        );
        assert_eq!(m.consecutive_failures(), 0);
    }

    #[test]
    fn retention_keeps_the_newest() {
        let table: &[(&[u64], usize, &[u64])] = &[
            (&[], 1, &[]),
            (&[1], 1, &[]),
            (&[1, 2, 3], 1, &[1, 2]),
            (&[3, 1, 2], 2, &[1]),
            (&[5, 5, 4], 1, &[4]),
            (&[1, 2], 0, &[1]),
            (&[1, 2], 10, &[]),
        ];
        for (ids, keep, expected) in table {
            assert_eq!(
                which_to_delete(ids, *keep),
                expected.to_vec(),
                "{ids:?} keep {keep}"
            );
        }
    }

    #[test]
    fn restore_picks_the_newest_verified_copy() {
        use CopyKind::*;
        use Integrity::*;
        let c = |checkpoint_id, copy, integrity| RestoreCandidate {
            checkpoint_id,
            copy,
            integrity,
        };
        let choice = |checkpoint_id, copy, skipped: &[u64]| {
            Some(RestoreChoice {
                checkpoint_id,
                copy,
                skipped: skipped.to_vec(),
            })
        };
        let table: Vec<(&str, Vec<RestoreCandidate>, Option<RestoreChoice>)> = vec![
            ("nothing", vec![], None),
            (
                "newest verified",
                vec![c(1, Primary, Verified), c(2, Primary, Verified)],
                choice(2, Primary, &[]),
            ),
            (
                "local preferred",
                vec![c(2, Primary, Verified), c(2, Local, Verified)],
                choice(2, Local, &[]),
            ),
            (
                "damaged local falls back to primary",
                vec![c(2, Local, Damaged), c(2, Primary, Verified)],
                choice(2, Primary, &[]),
            ),
            (
                "damaged newest falls back to older",
                vec![
                    c(3, Primary, Damaged),
                    c(3, Local, Damaged),
                    c(2, Primary, Verified),
                ],
                choice(2, Primary, &[3]),
            ),
            (
                "verified beats newer unverified",
                vec![c(4, Primary, Unverified), c(2, Local, Verified)],
                choice(2, Local, &[4]),
            ),
            (
                "unverified when nothing verified",
                vec![
                    c(4, Primary, Damaged),
                    c(3, Local, Unverified),
                    c(3, Primary, Unverified),
                ],
                choice(3, Primary, &[4]),
            ),
            (
                "all damaged",
                vec![c(1, Primary, Damaged), c(1, Local, Damaged)],
                None,
            ),
        ];
        for (name, candidates, expected) in table {
            assert_eq!(which_checkpoint_to_restore(&candidates), expected, "{name}");
        }
    }
}
