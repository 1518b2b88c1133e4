//! Checkpoint monitoring: Flink's `CheckpointStatsTracker` and the JSON of Flink's REST endpoints
//! `GET /jobs/:jobid/checkpoints`, `/checkpoints/details/:checkpointid`,
//! `/checkpoints/details/:checkpointid/subtasks/:vertexid` and `/checkpoints/config`.
//!
//! This module owns what monitoring shows, field for field as Flink names it: counts, the latest
//! completed / savepoint / failed / restored checkpoint, the bounded history
//! (`web.checkpoints.history`), the summaries (min / max / avg and percentiles, Flink's
//! `StatsSummary`), per-operator and per-subtask details, and the configuration. It performs no
//! I/O except [`CheckpointStatsTracker::save`] and [`CheckpointStatsTracker::load`], which write
//! and read `_checkpoint_stats.json` beside the checkpoints, framed and checksummed.
//!
//! Invariants: every id in the history is a key of the checkpoint map; the history holds at most
//! `web.checkpoints.history` ids, newest first; the map holds only checkpoints in the history or
//! still in progress; counts never go below zero (`in_progress` = triggered - completed - failed
//! over the checkpoints the tracker saw pending). Negative values never enter a summary (Flink's
//! `StatsSummary.add` ignores them). Timestamps are milliseconds since the epoch, passed in.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::checkpoint::coordinator::{Acknowledgement, CheckpointConfig};
use crate::checkpoint::failure::CheckpointFailureReason;
use crate::checkpoint::CheckpointingMode;
use crate::config::Configuration;
use crate::error::{EngineError, Result};

/// The JSON value the REST bodies are made of.
pub use serde_json::Value as JsonValue;

/// The name of the statistics file in a job's checkpoint directory.
pub const STATS_FILE_NAME: &str = "_checkpoint_stats.json";

/// `web.checkpoints.history`'s default.
pub const DEFAULT_HISTORY_SIZE: usize = 10;

/// How many recent values a summary keeps for its percentiles (Flink's histogram window).
pub const HISTOGRAM_WINDOW_SIZE: usize = 10_000;

const MAGIC: [u8; 4] = *b"SQCS";
const FORMAT_VERSION: u16 = 1;

/// Flink's `Long.MAX_VALUE` interval of a job without periodic checkpoints.
const DISABLED_INTERVAL: i64 = i64::MAX;

/// The kind of snapshot (Flink's `RestAPICheckpointType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointType {
    /// An aligned periodic checkpoint.
    Checkpoint,
    /// A periodic checkpoint whose barriers overtook in-flight records.
    UnalignedCheckpoint,
    /// A savepoint taken while the job keeps running.
    Savepoint,
    /// A savepoint that stops the job.
    SyncSavepoint,
}

impl CheckpointType {
    /// Flink's name, as `checkpoint_type` shows it.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointType::Checkpoint => "CHECKPOINT",
            CheckpointType::UnalignedCheckpoint => "UNALIGNED_CHECKPOINT",
            CheckpointType::Savepoint => "SAVEPOINT",
            CheckpointType::SyncSavepoint => "SYNC_SAVEPOINT",
        }
    }

    /// Whether this is a savepoint of either kind.
    pub fn is_savepoint(self) -> bool {
        matches!(
            self,
            CheckpointType::Savepoint | CheckpointType::SyncSavepoint
        )
    }
}

/// The state of a checkpoint (Flink's `CheckpointStatsStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointStatus {
    /// Triggered, not yet acknowledged by every subtask.
    InProgress,
    /// Acknowledged by every subtask and committed.
    Completed,
    /// Failed, expired or declined.
    Failed,
}

impl CheckpointStatus {
    /// Flink's name, as `status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointStatus::InProgress => "IN_PROGRESS",
            CheckpointStatus::Completed => "COMPLETED",
            CheckpointStatus::Failed => "FAILED",
        }
    }

    /// The `className` discriminator of Flink's `CheckpointStatistics` subtypes.
    fn class_name(self) -> &'static str {
        match self {
            CheckpointStatus::InProgress => "in_progress",
            CheckpointStatus::Completed => "completed",
            CheckpointStatus::Failed => "failed",
        }
    }
}

/// What one subtask reports with its acknowledgement (Flink's `SubtaskStateStats`). Sizes are
/// bytes, durations milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskStats {
    /// When the coordinator received the acknowledgement.
    pub ack_timestamp: i64,
    /// Full state size.
    pub state_size: u64,
    /// Bytes written by this checkpoint (less than the full size when incremental).
    pub checkpointed_size: u64,
    /// Duration of the synchronous part.
    pub sync_duration: i64,
    /// Duration of the asynchronous part.
    pub async_duration: i64,
    /// Barrier alignment duration.
    pub alignment_duration: i64,
    /// Time from the trigger to the first barrier at the subtask.
    pub start_delay: i64,
    /// Bytes processed during the alignment.
    pub processed_data: u64,
    /// Bytes of in-flight data persisted (unaligned checkpoints).
    pub persisted_data: u64,
    /// Whether the subtask's snapshot was unaligned.
    pub unaligned: bool,
}

impl SubtaskStats {
    /// The statistics of a coordinator [`Acknowledgement`] received at `ack_timestamp`.
    pub fn from_acknowledgement(ack: &Acknowledgement, ack_timestamp: i64) -> Self {
        SubtaskStats {
            ack_timestamp,
            state_size: ack.state_size,
            checkpointed_size: ack.checkpointed_size,
            sync_duration: ack.sync_duration_ms,
            async_duration: ack.async_duration_ms,
            alignment_duration: ack.alignment_duration_ms,
            start_delay: ack.start_delay_ms,
            processed_data: ack.processed_data,
            persisted_data: ack.persisted_data,
            unaligned: ack.unaligned,
        }
    }

    /// Flink's `SubtaskStateStats.getEndToEndDuration`.
    fn end_to_end_duration(&self, trigger_timestamp: i64) -> i64 {
        self.ack_timestamp.saturating_sub(trigger_timestamp).max(0)
    }
}

fn to_i64(v: u64) -> i64 {
    // JSON numbers and Flink's `long`: sizes beyond i64 (8 EiB) saturate.
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Min / max / average and percentiles of a series (Flink's `StatsSummary` with its
/// `DescriptiveStatisticsHistogram` window).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSummary {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
    window: VecDeque<i64>,
}

impl StatsSummary {
    /// Adds `value`; negative values (unknown) are ignored, as Flink does.
    pub fn add(&mut self, value: i64) {
        if value < 0 {
            return;
        }
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
        if self.window.len() == HISTOGRAM_WINDOW_SIZE {
            self.window.pop_front();
        }
        self.window.push_back(value);
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value, 0 when empty.
    pub fn min(&self) -> i64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// The largest value, 0 when empty.
    pub fn max(&self) -> i64 {
        if self.count == 0 {
            0
        } else {
            self.max
        }
    }

    /// The integer average (Java's `sum / count`), 0 when empty.
    pub fn avg(&self) -> i64 {
        match i64::try_from(self.count) {
            Ok(n) if n > 0 => self.sum / n,
            _ => 0,
        }
    }

    /// The `q` quantile (0 < q <= 1) of the window with Apache Commons Math's default
    /// (`LEGACY`) estimation, which Flink's histogram uses; NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut sorted: Vec<i64> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        quantile_of_sorted(&sorted, q)
    }

    fn to_json(&self) -> Value {
        let mut sorted: Vec<i64> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        let q = |p: f64| float_json(quantile_of_sorted(&sorted, p));
        json!({
            "min": self.min(),
            "max": self.max(),
            "avg": self.avg(),
            "p50": q(0.5),
            "p90": q(0.9),
            "p95": q(0.95),
            "p99": q(0.99),
            "p999": q(0.999),
        })
    }

    /// Flink's all-zero summary of a metric it no longer measures (`alignment_buffered`).
    fn zero_json() -> Value {
        json!({"min": 0, "max": 0, "avg": 0, "p50": 0.0, "p90": 0.0, "p95": 0.0, "p99": 0.0, "p999": 0.0})
    }
}

fn quantile_of_sorted(sorted: &[i64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n == 1 {
        return sorted[0] as f64;
    }
    let pos = q * (n as f64 + 1.0);
    let fpos = pos.floor();
    if pos < 1.0 {
        return sorted[0] as f64;
    }
    if pos >= n as f64 {
        return sorted[n - 1] as f64;
    }
    // 1 <= fpos < n, so both indices are in range.
    let int_pos = fpos as usize;
    let lower = sorted[int_pos - 1] as f64;
    let upper = sorted[int_pos] as f64;
    lower + (pos - fpos) * (upper - lower)
}

/// A double as Flink's Jackson writes it: NaN and infinities as strings.
fn float_json(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(if v.is_nan() { "NaN" } else { "Infinity" }.to_string()))
}

/// One operator's (Flink: job vertex's) part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TaskStats {
    name: String,
    /// One slot per subtask; `None` until the subtask acknowledged.
    subtasks: Vec<Option<SubtaskStats>>,
}

impl TaskStats {
    fn acked(&self) -> impl Iterator<Item = &SubtaskStats> {
        self.subtasks.iter().flatten()
    }

    fn latest_ack(&self) -> Option<i64> {
        self.acked().map(|s| s.ack_timestamp).max()
    }

    fn sum(&self, f: impl Fn(&SubtaskStats) -> u64) -> i64 {
        to_i64(self.acked().fold(0u64, |a, s| a.saturating_add(f(s))))
    }
}

/// One checkpoint as monitoring sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CheckpointStats {
    id: u64,
    status: CheckpointStatus,
    checkpoint_type: CheckpointType,
    trigger_timestamp: i64,
    num_subtasks: usize,
    /// Keyed by operator id.
    tasks: BTreeMap<u64, TaskStats>,
    external_path: Option<String>,
    discarded: bool,
    completion_timestamp: Option<i64>,
    failure_timestamp: Option<i64>,
    failure_reason: Option<String>,
    failure_message: Option<String>,
}

impl CheckpointStats {
    fn all_acked(&self) -> impl Iterator<Item = &SubtaskStats> {
        self.tasks.values().flat_map(TaskStats::acked)
    }

    fn num_acknowledged(&self) -> usize {
        self.all_acked().count()
    }

    /// Flink's `getLatestAckTimestamp`: -1 before the first acknowledgement.
    fn latest_ack_timestamp(&self) -> i64 {
        self.all_acked()
            .map(|s| s.ack_timestamp)
            .max()
            .unwrap_or(-1)
    }

    /// Flink's `getEndToEndDuration`: to the failure for a failed checkpoint, else to the latest
    /// acknowledgement; -1 before the first acknowledgement.
    fn end_to_end_duration(&self) -> i64 {
        if let Some(failed) = self.failure_timestamp {
            return failed.saturating_sub(self.trigger_timestamp).max(0);
        }
        match self.all_acked().map(|s| s.ack_timestamp).max() {
            Some(ack) => ack.saturating_sub(self.trigger_timestamp).max(0),
            None => -1,
        }
    }

    fn sum(&self, f: impl Fn(&SubtaskStats) -> u64 + Copy) -> i64 {
        to_i64(self.all_acked().fold(0u64, |a, s| a.saturating_add(f(s))))
    }

    fn task_json(&self, task: &TaskStats) -> Value {
        let latest = task.latest_ack();
        json!({
            "id": self.id,
            "status": self.status.name(),
            "latest_ack_timestamp": latest.unwrap_or(-1),
            "checkpointed_size": task.sum(|s| s.checkpointed_size),
            "state_size": task.sum(|s| s.state_size),
            "end_to_end_duration": latest
                .map(|a| a.saturating_sub(self.trigger_timestamp).max(0))
                .unwrap_or(-1),
            "alignment_buffered": 0,
            "processed_data": task.sum(|s| s.processed_data),
            "persisted_data": task.sum(|s| s.persisted_data),
            "num_subtasks": task.subtasks.len(),
            "num_acknowledged_subtasks": task.acked().count(),
        })
    }

    /// Flink's `CheckpointStatistics` (with its subtype's fields); `tasks` is filled only for the
    /// details endpoint, as Flink does.
    fn to_json(&self, with_tasks: bool) -> Value {
        let mut tasks = Map::new();
        if with_tasks {
            for (op, task) in &self.tasks {
                tasks.insert(vertex_id(*op), self.task_json(task));
            }
        }
        let mut v = json!({
            "className": self.status.class_name(),
            "id": self.id,
            "status": self.status.name(),
            "is_savepoint": self.checkpoint_type.is_savepoint(),
            "savepointFormat": if self.checkpoint_type.is_savepoint() { Value::from("CANONICAL") } else { Value::Null },
            "trigger_timestamp": self.trigger_timestamp,
            "latest_ack_timestamp": self.latest_ack_timestamp(),
            "checkpointed_size": self.sum(|s| s.checkpointed_size),
            "state_size": self.sum(|s| s.state_size),
            "end_to_end_duration": self.end_to_end_duration(),
            "alignment_buffered": 0,
            "processed_data": self.sum(|s| s.processed_data),
            "persisted_data": self.sum(|s| s.persisted_data),
            "num_subtasks": self.num_subtasks,
            "num_acknowledged_subtasks": self.num_acknowledged(),
            "checkpoint_type": self.checkpoint_type.name(),
            "tasks": Value::Object(tasks),
        });
        if let Value::Object(m) = &mut v {
            match self.status {
                CheckpointStatus::Completed => {
                    m.insert(
                        "external_path".into(),
                        self.external_path.clone().map_or(Value::Null, Value::from),
                    );
                    m.insert("discarded".into(), Value::from(self.discarded));
                }
                CheckpointStatus::Failed => {
                    m.insert(
                        "failure_timestamp".into(),
                        Value::from(self.failure_timestamp.unwrap_or(-1)),
                    );
                    m.insert(
                        "failure_message".into(),
                        self.failure_message
                            .clone()
                            .map_or(Value::Null, Value::from),
                    );
                }
                CheckpointStatus::InProgress => {}
            }
        }
        v
    }
}

/// A job vertex id as Flink spells it: 32 lower-case hex digits.
pub fn vertex_id(operator_id: u64) -> String {
    format!("{operator_id:032x}")
}

/// What the job was last restored from (Flink's `RestoredCheckpointStats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RestoredStats {
    id: u64,
    restore_timestamp: i64,
    is_savepoint: bool,
    external_path: Option<String>,
}

/// The summaries over completed checkpoints (Flink's `CompletedCheckpointStatsSummary`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct CompletedSummary {
    checkpointed_size: StatsSummary,
    state_size: StatsSummary,
    end_to_end_duration: StatsSummary,
    processed_data: StatsSummary,
    persisted_data: StatsSummary,
}

/// Counts since the job started (Flink's `CheckpointStatsCounts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCounts {
    /// Restore operations (restarts, and the initial restore from a savepoint).
    pub restored: u64,
    /// Checkpoints triggered, including those in progress (Flink's `total`).
    pub total: u64,
    /// Checkpoints in progress.
    pub in_progress: u64,
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints failed.
    pub failed: u64,
}

/// The in-memory model of a job's checkpoint monitoring (Flink's `CheckpointStatsTracker`), and
/// the JSON of Flink's REST endpoints over it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointStatsTracker {
    history_size: usize,
    counts: CheckpointCounts,
    /// Checkpoints in the history or in progress, by id.
    checkpoints: BTreeMap<u64, CheckpointStats>,
    /// The history, newest first.
    history: VecDeque<u64>,
    summary: CompletedSummary,
    latest_completed: Option<CheckpointStats>,
    latest_savepoint: Option<CheckpointStats>,
    latest_failed: Option<CheckpointStats>,
    latest_restored: Option<RestoredStats>,
    /// The `/checkpoints/config` body, fixed when the job starts.
    config: Value,
}

impl CheckpointStatsTracker {
    /// A tracker for a job with `config`: its history size is `web.checkpoints.history`, its
    /// configuration body is read from the checkpointing keys.
    pub fn new(config: &Configuration) -> Result<Self> {
        let history_size = config
            .get_int("web.checkpoints.history")
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(DEFAULT_HISTORY_SIZE);
        Ok(CheckpointStatsTracker {
            history_size,
            counts: CheckpointCounts::default(),
            checkpoints: BTreeMap::new(),
            history: VecDeque::new(),
            summary: CompletedSummary::default(),
            latest_completed: None,
            latest_savepoint: None,
            latest_failed: None,
            latest_restored: None,
            config: config_json(config)?,
        })
    }

    /// The counts.
    pub fn counts(&self) -> CheckpointCounts {
        self.counts
    }

    /// The number of checkpoints the history keeps.
    pub fn history_size(&self) -> usize {
        self.history_size
    }

    /// The ids in the history, newest first.
    pub fn history_ids(&self) -> Vec<u64> {
        self.history.iter().copied().collect()
    }

    /// Records that checkpoint `id` was triggered at `trigger_timestamp`, to be acknowledged by
    /// `num_subtasks` subtasks. Whether it is a savepoint follows from `checkpoint_type`. A second
    /// report of the same id changes nothing.
    pub fn report_pending(
        &mut self,
        id: u64,
        trigger_timestamp: i64,
        checkpoint_type: CheckpointType,
        num_subtasks: usize,
    ) {
        if self.checkpoints.contains_key(&id) {
            return;
        }
        self.counts.total += 1;
        self.counts.in_progress += 1;
        self.checkpoints.insert(
            id,
            CheckpointStats {
                id,
                status: CheckpointStatus::InProgress,
                checkpoint_type,
                trigger_timestamp,
                num_subtasks,
                tasks: BTreeMap::new(),
                external_path: None,
                discarded: false,
                completion_timestamp: None,
                failure_timestamp: None,
                failure_reason: None,
                failure_message: None,
            },
        );
        if self.history_size == 0 {
            return;
        }
        self.history.push_front(id);
        self.trim_history();
    }

    /// Changes the number of checkpoints the history keeps (`web.checkpoints.history` of a
    /// resumed job), dropping the oldest beyond it.
    pub fn set_history_size(&mut self, size: usize) {
        self.history_size = size;
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_size {
            if let Some(old) = self.history.pop_back() {
                let finished = self
                    .checkpoints
                    .get(&old)
                    .is_some_and(|c| c.status != CheckpointStatus::InProgress);
                if finished {
                    self.checkpoints.remove(&old);
                }
            }
        }
    }

    /// Declares operator `operator_id` (named `name`) with `parallelism` subtasks as a part of
    /// checkpoint `id`, so that subtasks not yet acknowledged show as pending. Ignored for an
    /// unknown or finished checkpoint.
    pub fn report_task(&mut self, id: u64, operator_id: u64, name: &str, parallelism: usize) {
        let Some(c) = self.in_progress_mut(id) else {
            return;
        };
        let task = c.tasks.entry(operator_id).or_insert_with(|| TaskStats {
            name: name.to_string(),
            subtasks: Vec::new(),
        });
        if task.subtasks.len() < parallelism {
            task.subtasks.resize(parallelism, None);
        }
    }

    /// Records subtask `subtask` of operator `operator_id` acknowledging checkpoint `id`. Returns
    /// false (and records nothing) when the checkpoint is unknown or no longer in progress, or
    /// the subtask had already acknowledged.
    pub fn report_subtask_ack(
        &mut self,
        id: u64,
        operator_id: u64,
        name: &str,
        subtask: usize,
        stats: SubtaskStats,
    ) -> bool {
        let Some(c) = self.in_progress_mut(id) else {
            return false;
        };
        let task = c.tasks.entry(operator_id).or_insert_with(|| TaskStats {
            name: name.to_string(),
            subtasks: Vec::new(),
        });
        if task.subtasks.len() <= subtask {
            task.subtasks.resize(subtask + 1, None);
        }
        let slot = &mut task.subtasks[subtask];
        if slot.is_some() {
            return false;
        }
        *slot = Some(stats);
        // Flink's checkpoint is unaligned once any subtask's snapshot was (also after an aligned
        // start switched at the aligned-checkpoint timeout).
        if stats.unaligned && c.checkpoint_type == CheckpointType::Checkpoint {
            c.checkpoint_type = CheckpointType::UnalignedCheckpoint;
        }
        true
    }

    /// Records that checkpoint `id` completed at `completion_timestamp`, its metadata written to
    /// `external_path`. Returns false for an unknown or finished checkpoint.
    pub fn report_completed(
        &mut self,
        id: u64,
        external_path: Option<&str>,
        completion_timestamp: i64,
    ) -> bool {
        let Some(c) = self.in_progress_mut(id) else {
            return false;
        };
        c.status = CheckpointStatus::Completed;
        c.external_path = external_path.map(str::to_string);
        c.completion_timestamp = Some(completion_timestamp);
        let c = c.clone();
        self.counts.in_progress = self.counts.in_progress.saturating_sub(1);
        self.counts.completed += 1;
        let s = &mut self.summary;
        s.checkpointed_size.add(c.sum(|x| x.checkpointed_size));
        s.state_size.add(c.sum(|x| x.state_size));
        // Without acknowledgements the duration is unknown (-1) and the summary skips it.
        s.end_to_end_duration.add(c.end_to_end_duration());
        s.processed_data.add(c.sum(|x| x.processed_data));
        s.persisted_data.add(c.sum(|x| x.persisted_data));
        if c.checkpoint_type.is_savepoint() {
            self.latest_savepoint = Some(c);
        } else {
            self.latest_completed = Some(c);
        }
        self.forget_if_evicted(id);
        true
    }

    /// Records that checkpoint `id` failed at `failure_timestamp` for `reason`; the failure
    /// message is Flink's message of the reason. A failure of a checkpoint that was never
    /// reported pending (a trigger that failed before it started) counts as triggered and failed.
    pub fn report_failed(
        &mut self,
        id: u64,
        failure_timestamp: i64,
        reason: CheckpointFailureReason,
    ) {
        self.report_failed_with(id, failure_timestamp, Some(reason), reason.message());
    }

    /// Like [`report_failed`](Self::report_failed) with a message of the caller's (an exception's
    /// text) and an optional reason.
    pub fn report_failed_with(
        &mut self,
        id: u64,
        failure_timestamp: i64,
        reason: Option<CheckpointFailureReason>,
        message: &str,
    ) {
        let Some(c) = self.in_progress_mut(id) else {
            if !self.checkpoints.contains_key(&id) {
                // Flink's reportFailedCheckpointsWithoutInProgress.
                self.counts.total += 1;
                self.counts.failed += 1;
            }
            return;
        };
        c.status = CheckpointStatus::Failed;
        c.failure_timestamp = Some(failure_timestamp);
        c.failure_reason = reason.map(|r| r.name().to_string());
        c.failure_message = Some(message.to_string());
        let c = c.clone();
        self.counts.in_progress = self.counts.in_progress.saturating_sub(1);
        self.counts.failed += 1;
        self.latest_failed = Some(c);
        self.forget_if_evicted(id);
    }

    /// Records that the job was restored from checkpoint `id` at `restore_timestamp`.
    pub fn report_restored(
        &mut self,
        id: u64,
        restore_timestamp: i64,
        external_path: Option<&str>,
        is_savepoint: bool,
    ) {
        self.counts.restored += 1;
        self.latest_restored = Some(RestoredStats {
            id,
            restore_timestamp,
            is_savepoint,
            external_path: external_path.map(str::to_string),
        });
    }

    /// Marks completed checkpoint `id` as discarded (deleted by retention).
    pub fn report_discarded(&mut self, id: u64) {
        for c in [
            self.checkpoints.get_mut(&id),
            self.latest_completed.as_mut().filter(|c| c.id == id),
            self.latest_savepoint.as_mut().filter(|c| c.id == id),
        ]
        .into_iter()
        .flatten()
        {
            if c.status == CheckpointStatus::Completed {
                c.discarded = true;
            }
        }
    }

    fn in_progress_mut(&mut self, id: u64) -> Option<&mut CheckpointStats> {
        self.checkpoints
            .get_mut(&id)
            .filter(|c| c.status == CheckpointStatus::InProgress)
    }

    /// Drops a finished checkpoint the history no longer shows.
    fn forget_if_evicted(&mut self, id: u64) {
        if !self.history.contains(&id) {
            self.checkpoints.remove(&id);
        }
    }

    /// The body of Flink's `GET /jobs/:jobid/checkpoints`.
    pub fn to_rest_json(&self) -> Value {
        let s = &self.summary;
        let latest =
            |c: &Option<CheckpointStats>| c.as_ref().map_or(Value::Null, |c| c.to_json(false));
        let restored = self.latest_restored.as_ref().map_or(Value::Null, |r| {
            json!({
                "id": r.id,
                "restore_timestamp": r.restore_timestamp,
                "is_savepoint": r.is_savepoint,
                "external_path": r.external_path,
            })
        });
        let history: Vec<Value> = self
            .history
            .iter()
            .filter_map(|id| self.checkpoints.get(id))
            .map(|c| c.to_json(false))
            .collect();
        json!({
            "counts": {
                "restored": self.counts.restored,
                "total": self.counts.total,
                "in_progress": self.counts.in_progress,
                "completed": self.counts.completed,
                "failed": self.counts.failed,
            },
            "summary": {
                "checkpointed_size": s.checkpointed_size.to_json(),
                "state_size": s.state_size.to_json(),
                "end_to_end_duration": s.end_to_end_duration.to_json(),
                "alignment_buffered": StatsSummary::zero_json(),
                "processed_data": s.processed_data.to_json(),
                "persisted_data": s.persisted_data.to_json(),
            },
            "latest": {
                "completed": latest(&self.latest_completed),
                "savepoint": latest(&self.latest_savepoint),
                "failed": latest(&self.latest_failed),
                "restored": restored,
            },
            "history": history,
        })
    }

    fn find(&self, id: u64) -> Option<&CheckpointStats> {
        self.checkpoints.get(&id).or_else(|| {
            [
                &self.latest_completed,
                &self.latest_savepoint,
                &self.latest_failed,
            ]
            .into_iter()
            .flatten()
            .find(|c| c.id == id)
        })
    }

    /// The body of Flink's `GET /jobs/:jobid/checkpoints/details/:checkpointid`, with `tasks`
    /// keyed by vertex id ([`vertex_id`]); `None` for a checkpoint monitoring no longer knows.
    pub fn details_json(&self, id: u64) -> Option<Value> {
        self.find(id).map(|c| c.to_json(true))
    }

    /// The operators of checkpoint `id` as `(vertex id, name)`, in operator order.
    pub fn task_names(&self, id: u64) -> Vec<(String, String)> {
        self.find(id)
            .map(|c| {
                c.tasks
                    .iter()
                    .map(|(op, t)| (vertex_id(*op), t.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The body of Flink's `GET /jobs/:jobid/checkpoints/details/:checkpointid/subtasks/:vertexid`
    /// (`TaskCheckpointStatisticsWithSubtaskDetails`); `None` when the checkpoint or the vertex is
    /// unknown.
    pub fn subtask_details_json(&self, id: u64, vertex: &str) -> Option<Value> {
        let c = self.find(id)?;
        let task = c
            .tasks
            .iter()
            .find(|(op, _)| vertex_id(**op) == vertex)
            .map(|(_, t)| t)?;
        let trigger = c.trigger_timestamp;
        let sum = |f: &dyn Fn(&SubtaskStats) -> i64| {
            let mut s = StatsSummary::default();
            for st in task.acked() {
                s.add(f(st));
            }
            s.to_json()
        };
        let summary = json!({
            "checkpointed_size": sum(&|s| to_i64(s.checkpointed_size)),
            "state_size": sum(&|s| to_i64(s.state_size)),
            // Flink takes these percentiles over the raw acknowledgement timestamps (its min / max /
            // avg subtract the trigger time, its percentiles do not); durations are what the field
            // means, so all eight values here are durations.
            "end_to_end_duration": sum(&|s| s.end_to_end_duration(trigger)),
            "checkpoint_duration": {
                "sync": sum(&|s| s.sync_duration),
                "async": sum(&|s| s.async_duration),
            },
            "alignment": {
                "buffered": StatsSummary::zero_json(),
                "processed": sum(&|s| to_i64(s.processed_data)),
                "persisted": sum(&|s| to_i64(s.persisted_data)),
                "duration": sum(&|s| s.alignment_duration),
            },
            "start_delay": sum(&|s| s.start_delay),
        });
        let subtasks: Vec<Value> = task
            .subtasks
            .iter()
            .enumerate()
            .map(|(i, st)| match st {
                None => json!({"className": "pending", "index": i, "status": "pending_or_failed"}),
                Some(s) => json!({
                    "className": "completed",
                    "index": i,
                    "status": "completed",
                    "ack_timestamp": s.ack_timestamp,
                    "end_to_end_duration": s.end_to_end_duration(trigger),
                    "checkpointed_size": to_i64(s.checkpointed_size),
                    "state_size": to_i64(s.state_size),
                    "checkpoint": {"sync": s.sync_duration, "async": s.async_duration},
                    "alignment": {
                        "buffered": 0,
                        "processed": to_i64(s.processed_data),
                        "persisted": to_i64(s.persisted_data),
                        "duration": s.alignment_duration,
                    },
                    "start_delay": s.start_delay,
                    "unaligned_checkpoint": s.unaligned,
                    "aborted": c.status == CheckpointStatus::Failed,
                }),
            })
            .collect();
        let mut v = c.task_json(task);
        if let Value::Object(m) = &mut v {
            m.insert("summary".into(), summary);
            m.insert("subtasks".into(), Value::Array(subtasks));
        }
        Some(v)
    }

    /// The body of Flink's `GET /jobs/:jobid/checkpoints/config`.
    pub fn config_json(&self) -> Value {
        self.config.clone()
    }

    /// The failure reason's Flink name of failed checkpoint `id`, when one was given.
    pub fn failure_reason(&self, id: u64) -> Option<&str> {
        self.find(id).and_then(|c| c.failure_reason.as_deref())
    }

    /// Writes the tracker to `path` (normally [`stats_file`] of the job's checkpoint directory):
    /// JSON, framed with a magic number, a format version and a CRC-32, replaced atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let payload = serde_json::to_vec(self).map_err(|e| {
            EngineError::internal(format!("cannot encode checkpoint statistics: {e}"))
        })?;
        streamsql_storage::write_framed_atomic(path, MAGIC, FORMAT_VERSION, &payload)
            .map_err(|e| storage_error(path, e))
    }

    /// Reads a tracker written by [`save`](Self::save); a file that is not one, or whose checksum
    /// or contents do not hold, is refused.
    pub fn load(path: &Path) -> Result<Self> {
        let payload = streamsql_storage::read_framed(path, MAGIC, FORMAT_VERSION)
            .map_err(|e| storage_error(path, e))?;
        let tracker: CheckpointStatsTracker = serde_json::from_slice(&payload).map_err(|e| {
            EngineError::data(format!(
                "'{}' is corrupt: not checkpoint statistics ({e})",
                path.display()
            ))
        })?;
        tracker.check().map_err(|reason| {
            EngineError::data(format!("'{}' is corrupt: {reason}", path.display()))
        })?;
        Ok(tracker)
    }

    /// The module's invariants, for data read back from disk.
    fn check(&self) -> std::result::Result<(), String> {
        if self.history.len() > self.history_size {
            return Err("the history is longer than its size".into());
        }
        if let Some(id) = self
            .history
            .iter()
            .find(|id| !self.checkpoints.contains_key(id))
        {
            return Err(format!("checkpoint {id} of the history has no statistics"));
        }
        for (id, c) in &self.checkpoints {
            if c.id != *id {
                return Err(format!("checkpoint {id} is stored as {}", c.id));
            }
        }
        let in_progress = self
            .checkpoints
            .values()
            .filter(|c| c.status == CheckpointStatus::InProgress)
            .count();
        if u64::try_from(in_progress).ok() != Some(self.counts.in_progress) {
            return Err("the in-progress count does not match the checkpoints".into());
        }
        Ok(())
    }
}

/// The statistics file of a job's checkpoint directory.
pub fn stats_file(job_checkpoint_dir: &Path) -> PathBuf {
    job_checkpoint_dir.join(STATS_FILE_NAME)
}

fn storage_error(path: &Path, e: streamsql_storage::StorageError) -> EngineError {
    match e {
        streamsql_storage::StorageError::Io { source, .. } => EngineError::io(
            format!("checkpoint statistics '{}'", path.display()),
            source,
        ),
        other => EngineError::data(other.to_string()),
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Flink's `CheckpointConfigInfo` for `config`.
fn config_json(config: &Configuration) -> Result<Value> {
    let cc = CheckpointConfig::from_configuration(config)?;
    let retention = config
        .get_str("execution.checkpointing.externalized-checkpoint-retention")
        .unwrap_or("NO_EXTERNALIZED_CHECKPOINTS");
    let state_backend = match config.get_str("state.backend.type") {
        Some("hashmap") => "HashMapStateBackend",
        _ => "SledStateBackend",
    };
    let checkpoint_storage = if config.get_path("execution.checkpointing.dir").is_some() {
        "FileSystemCheckpointStorage"
    } else {
        "JobManagerCheckpointStorage"
    };
    Ok(json!({
        "mode": match cc.mode {
            CheckpointingMode::ExactlyOnce => "exactly_once",
            CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": cc.interval.map_or(DISABLED_INTERVAL, millis),
        "timeout": millis(cc.timeout),
        "min_pause": millis(cc.min_pause),
        "max_concurrent": cc.max_concurrent,
        "externalization": {
            "enabled": retention != "NO_EXTERNALIZED_CHECKPOINTS",
            "delete_on_cancellation": retention != "RETAIN_ON_CANCELLATION",
        },
        "state_backend": state_backend,
        "checkpoint_storage": checkpoint_storage,
        "unaligned_checkpoints": cc.unaligned,
        "tolerable_failed_checkpoints": cc.tolerable_failed,
        "aligned_checkpoint_timeout": config
            .get_duration("execution.checkpointing.aligned-checkpoint-timeout")
            .map_or(0, millis),
        "checkpoints_after_tasks_finish": cc.checkpoints_after_tasks_finish,
        "state_changelog_enabled": false,
        "changelog_storage": "memory",
        "changelog_periodic_materialization_interval": 600_000,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(history: usize) -> CheckpointStatsTracker {
        let mut c = Configuration::new();
        c.set("web.checkpoints.history", &history.to_string())
            .expect("valid key");
        CheckpointStatsTracker::new(&c).expect("valid configuration")
    }

    fn ack(at: i64, state: u64, written: u64) -> SubtaskStats {
        SubtaskStats {
            ack_timestamp: at,
            state_size: state,
            checkpointed_size: written,
            sync_duration: 2,
            async_duration: 5,
            alignment_duration: 1,
            start_delay: 3,
            processed_data: 10,
            persisted_data: 0,
            unaligned: false,
        }
    }

    /// Checkpoint `id` triggered at `t`, acknowledged by two subtasks of operator 7, completed.
    fn complete(t: &mut CheckpointStatsTracker, id: u64, at: i64, state: u64) {
        t.report_pending(id, at, CheckpointType::Checkpoint, 2);
        assert!(t.report_subtask_ack(id, 7, "Source", 0, ack(at + 10, state, state / 2)));
        assert!(t.report_subtask_ack(id, 7, "Source", 1, ack(at + 30, state, state / 2)));
        assert!(t.report_completed(id, Some("/chk/job/chk-1"), at + 31));
    }

    #[test]
    fn counts_follow_the_lifecycle() {
        let mut t = tracker(10);
        t.report_pending(1, 1000, CheckpointType::Checkpoint, 2);
        t.report_pending(2, 2000, CheckpointType::Checkpoint, 2);
        let c = t.counts();
        assert_eq!(
            (c.total, c.in_progress, c.completed, c.failed),
            (2, 2, 0, 0)
        );
        assert!(t.report_subtask_ack(1, 7, "Source", 0, ack(1010, 100, 50)));
        assert!(
            !t.report_subtask_ack(1, 7, "Source", 0, ack(1011, 100, 50)),
            "duplicate"
        );
        assert!(t.report_completed(1, None, 1020));
        assert!(!t.report_completed(1, None, 1020), "already completed");
        t.report_failed(2, 2500, CheckpointFailureReason::CheckpointExpired);
        assert!(
            !t.report_subtask_ack(2, 7, "Source", 1, ack(2600, 1, 1)),
            "late ack"
        );
        // A trigger that failed before it started: counted, no history entry.
        t.report_failed(
            3,
            3000,
            CheckpointFailureReason::MinimumTimeBetweenCheckpoints,
        );
        t.report_restored(1, 4000, Some("/chk/job/chk-1"), false);
        let c = t.counts();
        assert_eq!(
            (c.total, c.in_progress, c.completed, c.failed, c.restored),
            (3, 0, 1, 2, 1)
        );
        let j = t.to_rest_json();
        assert_eq!(j["counts"]["total"], 3);
        assert_eq!(j["counts"]["in_progress"], 0);
        assert_eq!(j["counts"]["completed"], 1);
        assert_eq!(j["counts"]["failed"], 2);
        assert_eq!(j["counts"]["restored"], 1);
        assert_eq!(t.history_ids(), vec![2, 1]);
    }

    #[test]
    fn history_is_bounded_newest_first_and_latest_survives_eviction() {
        let mut t = tracker(3);
        for id in 1..=5 {
            complete(&mut t, id, i64::try_from(id).unwrap_or(0) * 1000, 100);
        }
        assert_eq!(t.history_ids(), vec![5, 4, 3]);
        let j = t.to_rest_json();
        let ids: Vec<u64> = j["history"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|c| c["id"].as_u64())
            .collect();
        assert_eq!(ids, vec![5, 4, 3]);
        assert!(t.details_json(1).is_none(), "evicted");
        assert_eq!(j["latest"]["completed"]["id"], 5);

        // An in-progress checkpoint pushed out of the history still completes.
        let mut t = tracker(1);
        t.report_pending(1, 0, CheckpointType::Checkpoint, 1);
        t.report_pending(2, 10, CheckpointType::Checkpoint, 1);
        assert_eq!(t.history_ids(), vec![2]);
        assert!(t.report_subtask_ack(1, 1, "op", 0, ack(20, 5, 5)));
        assert!(t.report_completed(1, None, 21));
        assert_eq!(t.to_rest_json()["latest"]["completed"]["id"], 1);
        assert_eq!(t.counts().in_progress, 1);
        assert!(t.check().is_ok());

        // History size 0 keeps no history but still counts.
        let mut t = tracker(0);
        complete(&mut t, 1, 0, 10);
        assert!(t.history_ids().is_empty());
        assert_eq!(t.counts().completed, 1);
        assert_eq!(t.to_rest_json()["latest"]["completed"]["id"], 1);
    }

    #[test]
    fn history_entry_has_flinks_fields_and_values() {
        let mut t = tracker(10);
        complete(&mut t, 1, 1000, 100);
        let j = t.to_rest_json();
        let h = &j["history"][0];
        for key in [
            "className",
            "id",
            "status",
            "is_savepoint",
            "savepointFormat",
            "trigger_timestamp",
            "latest_ack_timestamp",
            "checkpointed_size",
            "state_size",
            "end_to_end_duration",
            "alignment_buffered",
            "processed_data",
            "persisted_data",
            "num_subtasks",
            "num_acknowledged_subtasks",
            "checkpoint_type",
            "tasks",
            "external_path",
            "discarded",
        ] {
            assert!(h.get(key).is_some(), "missing {key}");
        }
        assert_eq!(h["className"], "completed");
        assert_eq!(h["status"], "COMPLETED");
        assert_eq!(h["is_savepoint"], false);
        assert_eq!(h["savepointFormat"], Value::Null);
        assert_eq!(h["trigger_timestamp"], 1000);
        assert_eq!(h["latest_ack_timestamp"], 1030);
        assert_eq!(h["end_to_end_duration"], 30);
        assert_eq!(h["state_size"], 200);
        assert_eq!(h["checkpointed_size"], 100);
        assert_eq!(h["processed_data"], 20);
        assert_eq!(h["num_subtasks"], 2);
        assert_eq!(h["num_acknowledged_subtasks"], 2);
        assert_eq!(h["checkpoint_type"], "CHECKPOINT");
        assert_eq!(h["external_path"], "/chk/job/chk-1");
        assert_eq!(h["discarded"], false);
        assert_eq!(
            h["tasks"],
            json!({}),
            "the overview omits tasks, as Flink's"
        );
        for key in ["counts", "summary", "latest", "history"] {
            assert!(j.get(key).is_some(), "missing {key}");
        }
        for key in ["completed", "savepoint", "failed", "restored"] {
            assert!(j["latest"].get(key).is_some(), "missing latest.{key}");
        }
        for key in [
            "checkpointed_size",
            "state_size",
            "end_to_end_duration",
            "alignment_buffered",
            "processed_data",
            "persisted_data",
        ] {
            for stat in ["min", "max", "avg", "p50", "p90", "p95", "p99", "p999"] {
                assert!(
                    j["summary"][key].get(stat).is_some(),
                    "summary.{key}.{stat}"
                );
            }
        }
        t.report_discarded(1);
        assert_eq!(t.to_rest_json()["history"][0]["discarded"], true);
    }

    #[test]
    fn in_progress_entry_before_any_ack() {
        let mut t = tracker(10);
        t.report_pending(1, 1000, CheckpointType::UnalignedCheckpoint, 4);
        let h = &t.to_rest_json()["history"][0];
        assert_eq!(h["className"], "in_progress");
        assert_eq!(h["status"], "IN_PROGRESS");
        assert_eq!(h["latest_ack_timestamp"], -1);
        assert_eq!(h["end_to_end_duration"], -1);
        assert_eq!(h["checkpoint_type"], "UNALIGNED_CHECKPOINT");
        assert!(h.get("external_path").is_none());
        assert!(h.get("failure_message").is_none());
    }

    #[test]
    fn failed_checkpoint_carries_flinks_reason_message() {
        let mut t = tracker(10);
        t.report_pending(4, 1000, CheckpointType::Checkpoint, 2);
        assert!(t.report_subtask_ack(4, 1, "Source", 0, ack(1100, 1, 1)));
        t.report_failed(4, 1600, CheckpointFailureReason::CheckpointExpired);
        let j = t.to_rest_json();
        let f = &j["latest"]["failed"];
        assert_eq!(f["className"], "failed");
        assert_eq!(f["status"], "FAILED");
        assert_eq!(f["failure_timestamp"], 1600);
        assert_eq!(
            f["failure_message"],
            "Checkpoint expired before completing."
        );
        assert_eq!(f["end_to_end_duration"], 600);
        assert_eq!(f["num_acknowledged_subtasks"], 1);
        assert_eq!(t.failure_reason(4), Some("CHECKPOINT_EXPIRED"));
        t.report_pending(5, 2000, CheckpointType::Checkpoint, 1);
        t.report_failed_with(5, 2100, None, "disk full");
        assert_eq!(
            t.to_rest_json()["latest"]["failed"]["failure_message"],
            "disk full"
        );
        // Failed checkpoints do not enter the summary.
        assert_eq!(j["summary"]["state_size"]["max"], 0);
    }

    #[test]
    fn savepoints_and_restores_are_latest_separately() {
        let mut t = tracker(10);
        complete(&mut t, 1, 0, 10);
        t.report_pending(2, 100, CheckpointType::Savepoint, 1);
        assert!(t.report_subtask_ack(2, 7, "Source", 0, ack(150, 10, 10)));
        assert!(t.report_completed(2, Some("/sp/savepoint-abc"), 151));
        t.report_restored(2, 500, Some("/sp/savepoint-abc"), true);
        let j = t.to_rest_json();
        assert_eq!(
            j["latest"]["completed"]["id"], 1,
            "a savepoint is not the latest checkpoint"
        );
        assert_eq!(j["latest"]["savepoint"]["id"], 2);
        assert_eq!(j["latest"]["savepoint"]["is_savepoint"], true);
        assert_eq!(j["latest"]["savepoint"]["savepointFormat"], "CANONICAL");
        assert_eq!(j["latest"]["savepoint"]["checkpoint_type"], "SAVEPOINT");
        assert_eq!(
            j["latest"]["restored"],
            json!({"id": 2, "restore_timestamp": 500, "is_savepoint": true, "external_path": "/sp/savepoint-abc"})
        );
        assert_eq!(j["latest"]["failed"], Value::Null);
        assert_eq!(
            j["summary"]["state_size"]["max"], 20,
            "savepoints count in the summary"
        );
    }

    #[test]
    fn summary_min_max_avg_and_commons_math_percentiles() {
        let mut s = StatsSummary::default();
        assert_eq!((s.min(), s.max(), s.avg()), (0, 0, 0));
        assert!(s.quantile(0.5).is_nan());
        assert_eq!(s.to_json()["p50"], "NaN");
        s.add(-1);
        assert_eq!(s.count(), 0, "negative values are ignored");
        for v in [10, 20, 30, 40] {
            s.add(v);
        }
        assert_eq!((s.min(), s.max(), s.avg()), (10, 40, 25));
        // LEGACY estimation: pos = q * (n + 1).
        assert_eq!(s.quantile(0.5), 25.0);
        assert_eq!(s.quantile(0.9), 40.0);
        assert_eq!(s.quantile(0.1), 10.0);
        assert!((s.quantile(0.25) - 12.5).abs() < 1e-9);
        s.add(1);
        assert_eq!(s.avg(), 20, "integer division");
        let j = s.to_json();
        assert_eq!(j["min"], 1);
        assert_eq!(j["p50"], 20.0);
        assert_eq!(j["p999"], 40.0);

        let mut t = tracker(10);
        complete(&mut t, 1, 0, 100);
        complete(&mut t, 2, 1000, 300);
        let j = t.to_rest_json();
        assert_eq!(j["summary"]["state_size"]["min"], 200);
        assert_eq!(j["summary"]["state_size"]["max"], 600);
        assert_eq!(j["summary"]["state_size"]["avg"], 400);
        assert_eq!(j["summary"]["checkpointed_size"]["avg"], 200);
        assert_eq!(j["summary"]["end_to_end_duration"]["max"], 30);
        assert_eq!(j["summary"]["alignment_buffered"]["max"], 0);
    }

    #[test]
    fn window_keeps_the_newest_values() {
        let mut s = StatsSummary::default();
        for v in 0..i64::try_from(HISTOGRAM_WINDOW_SIZE + 5).unwrap_or(0) {
            s.add(v);
        }
        assert_eq!(s.min(), 0, "min covers everything");
        assert_eq!(s.quantile(0.00005), 5.0, "percentiles cover the window");
    }

    #[test]
    fn details_per_task_and_per_subtask() {
        let mut t = tracker(10);
        t.report_pending(1, 1000, CheckpointType::Checkpoint, 3);
        t.report_task(1, 7, "Source: orders", 2);
        t.report_task(1, 9, "Sink: print", 1);
        assert!(t.report_subtask_ack(1, 7, "Source: orders", 1, ack(1040, 64, 32)));
        let d = t.details_json(1).expect("known");
        let vid = vertex_id(7);
        assert_eq!(vid, "00000000000000000000000000000007");
        let task = &d["tasks"][vid.as_str()];
        assert_eq!(task["num_subtasks"], 2);
        assert_eq!(task["num_acknowledged_subtasks"], 1);
        assert_eq!(task["state_size"], 64);
        assert_eq!(task["end_to_end_duration"], 40);
        assert_eq!(task["status"], "IN_PROGRESS");
        assert_eq!(
            d["tasks"][vertex_id(9).as_str()]["latest_ack_timestamp"],
            -1
        );
        assert_eq!(
            t.task_names(1),
            vec![
                (vertex_id(7), "Source: orders".to_string()),
                (vertex_id(9), "Sink: print".to_string())
            ]
        );

        let s = t.subtask_details_json(1, &vid).expect("known vertex");
        let subtasks = s["subtasks"].as_array().expect("array");
        assert_eq!(subtasks.len(), 2);
        assert_eq!(
            subtasks[0],
            json!({"className": "pending", "index": 0, "status": "pending_or_failed"})
        );
        let done = &subtasks[1];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["ack_timestamp"], 1040);
        assert_eq!(done["end_to_end_duration"], 40);
        assert_eq!(done["checkpoint"], json!({"sync": 2, "async": 5}));
        assert_eq!(
            done["alignment"],
            json!({"buffered": 0, "processed": 10, "persisted": 0, "duration": 1})
        );
        assert_eq!(done["start_delay"], 3);
        assert_eq!(done["unaligned_checkpoint"], false);
        assert_eq!(done["aborted"], false);
        for key in [
            "checkpointed_size",
            "state_size",
            "end_to_end_duration",
            "checkpoint_duration",
            "alignment",
            "start_delay",
        ] {
            assert!(s["summary"].get(key).is_some(), "summary.{key}");
        }
        assert_eq!(s["summary"]["checkpoint_duration"]["async"]["max"], 5);
        assert_eq!(s["summary"]["alignment"]["duration"]["min"], 1);
        assert!(t.subtask_details_json(1, &vertex_id(8)).is_none());
        assert!(t.subtask_details_json(2, &vid).is_none());
    }

    #[test]
    fn config_body_follows_flinks_checkpoint_config_info() {
        let t = tracker(10);
        let c = t.config_json();
        assert_eq!(c["mode"], "exactly_once");
        assert_eq!(
            c["interval"],
            i64::MAX,
            "Flink's value for no periodic checkpoints"
        );
        assert_eq!(c["timeout"], 600_000);
        assert_eq!(c["min_pause"], 0);
        assert_eq!(c["max_concurrent"], 1);
        assert_eq!(
            c["externalization"],
            json!({"enabled": false, "delete_on_cancellation": true})
        );
        assert_eq!(c["state_backend"], "SledStateBackend");
        assert_eq!(c["checkpoint_storage"], "JobManagerCheckpointStorage");
        assert_eq!(c["unaligned_checkpoints"], false);
        assert_eq!(c["tolerable_failed_checkpoints"], 0);
        assert_eq!(c["aligned_checkpoint_timeout"], 0);
        assert_eq!(c["checkpoints_after_tasks_finish"], true);

        let mut conf = Configuration::new();
        for (k, v) in [
            ("execution.checkpointing.interval", "10 s"),
            ("execution.checkpointing.mode", "AT_LEAST_ONCE"),
            ("execution.checkpointing.min-pause", "500 ms"),
            (
                "execution.checkpointing.externalized-checkpoint-retention",
                "RETAIN_ON_CANCELLATION",
            ),
            ("state.backend", "hashmap"),
            ("state.checkpoints.dir", "/tmp/chk"),
            ("execution.checkpointing.unaligned", "true"),
            ("execution.checkpointing.tolerable-failed-checkpoints", "3"),
        ] {
            conf.set(k, v).expect("valid");
        }
        let c = CheckpointStatsTracker::new(&conf)
            .expect("valid")
            .config_json();
        assert_eq!(c["mode"], "at_least_once");
        assert_eq!(c["interval"], 10_000);
        assert_eq!(c["min_pause"], 500);
        assert_eq!(
            c["externalization"],
            json!({"enabled": true, "delete_on_cancellation": false})
        );
        assert_eq!(c["state_backend"], "HashMapStateBackend");
        assert_eq!(c["checkpoint_storage"], "FileSystemCheckpointStorage");
        // Flink turns unaligned checkpoints off in AT_LEAST_ONCE.
        assert_eq!(c["unaligned_checkpoints"], false);
        assert_eq!(c["tolerable_failed_checkpoints"], 3);
        conf.set("execution.checkpointing.mode", "EXACTLY_ONCE")
            .expect("valid");
        conf.set("execution.checkpointing.aligned-checkpoint-timeout", "3 s")
            .expect("valid");
        let c = CheckpointStatsTracker::new(&conf)
            .expect("valid")
            .config_json();
        assert_eq!(c["unaligned_checkpoints"], true);
        assert_eq!(c["aligned_checkpoint_timeout"], 3000);
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("streamsql-stats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_load_round_trip() {
        let mut t = tracker(4);
        complete(&mut t, 1, 0, 10);
        t.report_pending(2, 100, CheckpointType::Checkpoint, 2);
        t.report_failed(3, 200, CheckpointFailureReason::IoException);
        t.report_restored(1, 300, None, false);
        let d = tmp("roundtrip");
        let p = stats_file(&d);
        t.save(&p).expect("saved");
        let back = CheckpointStatsTracker::load(&p).expect("loaded");
        assert_eq!(back, t);
        assert_eq!(back.to_rest_json(), t.to_rest_json());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_or_missing_file_is_refused() {
        let mut t = tracker(4);
        complete(&mut t, 1, 0, 10);
        let d = tmp("corrupt");
        let p = stats_file(&d);
        assert!(matches!(
            CheckpointStatsTracker::load(&p),
            Err(EngineError::Io { .. })
        ));
        t.save(&p).expect("saved");
        let mut bytes = std::fs::read(&p).expect("written");
        bytes[10] ^= 0x01;
        std::fs::write(&p, &bytes).expect("rewritten");
        let err = CheckpointStatsTracker::load(&p).expect_err("corrupt");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // Framed correctly but not statistics.
        streamsql_storage::write_framed_atomic(&p, MAGIC, FORMAT_VERSION, b"{\"x\":1}")
            .expect("written");
        let err = CheckpointStatsTracker::load(&p).expect_err("not statistics");
        assert!(
            err.to_string().contains("not checkpoint statistics"),
            "{err}"
        );
        // Well-formed JSON breaking an invariant.
        let mut bad = serde_json::to_value(&t).expect("encodes");
        bad["history"] = json!([1, 99]);
        let payload = serde_json::to_vec(&bad).expect("encodes");
        streamsql_storage::write_framed_atomic(&p, MAGIC, FORMAT_VERSION, &payload)
            .expect("written");
        let err = CheckpointStatsTracker::load(&p).expect_err("inconsistent");
        assert!(err.to_string().contains("checkpoint 99"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unaligned_subtask_snapshot_makes_the_checkpoint_unaligned() {
        let mut t = CheckpointStatsTracker::new(&Configuration::new()).expect("valid");
        t.report_pending(1, 0, CheckpointType::Checkpoint, 2);
        let aligned = SubtaskStats::default();
        assert!(t.report_subtask_ack(1, 7, "op", 0, aligned));
        let details = |t: &CheckpointStatsTracker| t.details_json(1).expect("known");
        assert_eq!(details(&t)["checkpoint_type"], "CHECKPOINT");
        let unaligned = SubtaskStats {
            unaligned: true,
            persisted_data: 300,
            processed_data: 300,
            ..SubtaskStats::default()
        };
        assert!(t.report_subtask_ack(1, 7, "op", 1, unaligned));
        let h = details(&t);
        assert_eq!(h["checkpoint_type"], "UNALIGNED_CHECKPOINT");
        assert_eq!(h["persisted_data"], 300);
        assert_eq!(h["processed_data"], 300);
    }

    #[test]
    fn subtask_stats_from_a_coordinator_acknowledgement() {
        let a = Acknowledgement {
            state_size: 9,
            checkpointed_size: 4,
            sync_duration_ms: 1,
            async_duration_ms: 2,
            alignment_duration_ms: 3,
            start_delay_ms: 4,
            ..Acknowledgement::default()
        };
        let s = SubtaskStats::from_acknowledgement(&a, 77);
        assert_eq!(
            (s.ack_timestamp, s.state_size, s.checkpointed_size),
            (77, 9, 4)
        );
        assert_eq!(
            (
                s.sync_duration,
                s.async_duration,
                s.alignment_duration,
                s.start_delay
            ),
            (1, 2, 3, 4)
        );
    }
}
