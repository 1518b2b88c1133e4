//! The checkpoint coordinator thread and the on-disk checkpoint format.
//!
//! The coordinator triggers checkpoint n on the sources (which record their position and emit
//! `Barrier(n)`), collects one acknowledgement with a state blob from every subtask, and when all
//! have acknowledged writes `<job dir>/chk-<n>/_metadata` through the one durable-write path (tmp,
//! fsync, rename, fsync dir): that rename is the commit point. It then tells every task that n
//! completed (transactional sinks publish) and removes checkpoints beyond
//! `execution.checkpointing.num-retained`. The decisions (when to trigger, is n complete, which
//! failures count, which checkpoints to delete) are the pure structs of `crate::checkpoint`.
//!
//! `_metadata` layout (payload of a framed file, magic `SSCK`, version 1): codec version byte,
//! checkpoint id, trigger timestamp, number of entries, then per subtask: operator id, subtask
//! index, length-prefixed state bytes; then the job's topology: a tag byte, the max parallelism (the
//! number of key groups) and each operator's id and parallelism, which a restore at another
//! parallelism needs (checkpoints written before it was recorded end after the states). State is
//! inlined: every subtask's state travels in the one file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Clock, JobShared};
use crate::checkpoint::stats::{
    stats_file, vertex_id, CheckpointStatsTracker, CheckpointType, SubtaskStats,
};
use crate::checkpoint::{
    which_to_delete, Acknowledgement, CheckpointConfig, CheckpointFailureReason, CheckpointKind,
    FailureManager, FailureVerdict, PendingCheckpoint, TaskKey, TriggerDecision, TriggerFacts,
    TriggerPolicy,
};
use crate::codec;
use crate::config::Configuration;
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;
use crate::runtime::subtask_state::{KeyedHandle, SubtaskState};

const METADATA_MAGIC: [u8; 4] = *b"SSCK";
const METADATA_VERSION: u16 = 2;
/// The name of the commit file of a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";

/// How a job checkpoints: its settings, where, and what it resumes from.
#[derive(Clone, Debug)]
pub struct CheckpointSetup {
    pub config: CheckpointConfig,
    /// `<execution.checkpointing.dir>/<job-id>`.
    pub job_dir: PathBuf,
    /// The checkpoint to start from.
    pub restore: Option<Arc<RestoredCheckpoint>>,
    /// `--allow-non-restored-state`: state of operators the job no longer has is skipped.
    pub allow_non_restored_state: bool,
}

/// A completed checkpoint read back from disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredCheckpoint {
    pub checkpoint_id: u64,
    pub trigger_ms: i64,
    /// Every subtask's state (a source's position or an operator's state).
    pub states: BTreeMap<TaskKey, Vec<u8>>,
    /// Where it was read from.
    pub path: PathBuf,
    /// A savepoint rather than a checkpoint.
    pub is_savepoint: bool,
    /// The number of key groups (`pipeline.max-parallelism`) of the job that took it; `None` in
    /// checkpoints written before it was recorded.
    pub max_parallelism: Option<usize>,
    /// Each operator's parallelism when it was taken, by operator id; empty in checkpoints written
    /// before it was recorded (the subtasks present then tell it).
    pub parallelism: BTreeMap<u64, usize>,
}

/// The tag of the topology section of `_metadata`.
const TOPOLOGY_TAG: u8 = 1;

/// The acknowledgement a task's final state stands for in a checkpoint triggered after its input
/// ended: nothing was synchronously or asynchronously written for it.
fn final_state_ack(state: &[u8]) -> Acknowledgement {
    let size = state.len() as u64;
    Acknowledgement {
        state_size: size,
        checkpointed_size: size,
        sync_duration_ms: 0,
        async_duration_ms: 0,
        alignment_duration_ms: 0,
        start_delay_ms: 0,
        ..Acknowledgement::default()
    }
}

impl RestoredCheckpoint {
    /// The parallelism operator `operator_id` had when this was taken: as recorded, else the
    /// number of its subtasks with state (0 when it has none).
    pub fn parallelism_of(&self, operator_id: u64) -> usize {
        if let Some(&p) = self.parallelism.get(&operator_id) {
            return p;
        }
        self.states
            .keys()
            .filter(|k| k.operator_id == operator_id)
            .map(|k| k.subtask + 1)
            .max()
            .unwrap_or(0)
    }

    /// The `chk-<n>` (or savepoint) directory: files of the checkpoint are named relative to it.
    pub fn checkpoint_dir(&self) -> PathBuf {
        if self.path.is_dir() {
            self.path.clone()
        } else {
            self.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
    }
}

/// What a task sends the coordinator.
#[derive(Debug)]
pub(crate) enum TaskEvent {
    /// The subtask's snapshot for a checkpoint.
    Ack {
        task: TaskKey,
        checkpoint_id: u64,
        state: Vec<u8>,
        ack: Acknowledgement,
    },
    /// The subtask could not take part in a checkpoint.
    Decline {
        checkpoint_id: u64,
        reason: CheckpointFailureReason,
    },
    /// The subtask ended (its input is exhausted, or the job stops).
    Finished(TaskKey),
    /// The subtask's input is exhausted and this is its state at the end (the final checkpoint);
    /// it waits for `TaskCommand::Complete(FINAL_CHECKPOINT)` before it exits.
    FinalState { task: TaskKey, state: Vec<u8> },
    /// The subtask's input is exhausted but its final state could not be written.
    FinalStateFailed { message: String },
}

/// The checkpoint id tasks use for the final checkpoint of a finished job: every transactional
/// sink publishes everything up to it.
pub const FINAL_CHECKPOINT: u64 = u64::MAX;

/// What the coordinator sends a task.
#[derive(Clone, Debug)]
pub(crate) enum TaskCommand {
    /// Sources only: take checkpoint `barrier.id` now.
    Trigger(CheckpointBarrier),
    /// The checkpoint completed.
    Complete(u64),
    /// Sources only: the stop-with-savepoint of this id failed; go on with the job.
    Abort(u64),
}

/// Encodes a checkpoint's metadata.
pub fn encode_metadata(checkpoint: &RestoredCheckpoint) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_version(&mut out);
    codec::put_uvarint(&mut out, checkpoint.checkpoint_id);
    codec::put_ivarint(&mut out, checkpoint.trigger_ms);
    out.push(u8::from(checkpoint.is_savepoint));
    codec::put_uvarint(&mut out, checkpoint.states.len() as u64);
    for (task, state) in &checkpoint.states {
        codec::put_uvarint(&mut out, task.operator_id);
        codec::put_uvarint(&mut out, task.subtask as u64);
        codec::put_uvarint(&mut out, state.len() as u64);
        out.extend_from_slice(state);
    }
    if let Some(max) = checkpoint.max_parallelism {
        out.push(TOPOLOGY_TAG);
        codec::put_uvarint(&mut out, max as u64);
        codec::put_uvarint(&mut out, checkpoint.parallelism.len() as u64);
        for (operator_id, p) in &checkpoint.parallelism {
            codec::put_uvarint(&mut out, *operator_id);
            codec::put_uvarint(&mut out, *p as u64);
        }
    }
    out
}

/// Decodes a checkpoint's metadata; never panics on bad bytes.
pub fn decode_metadata(mut input: &[u8], path: &Path) -> Result<RestoredCheckpoint> {
    let input = &mut input;
    codec::check_version(input)?;
    let checkpoint_id = codec::get_uvarint(input)?;
    let trigger_ms = codec::get_ivarint(input)?;
    let is_savepoint = match codec::get_bytes(input, 1)? {
        [0] => false,
        [1] => true,
        _ => return Err(codec::corrupt("invalid checkpoint kind")),
    };
    let n = codec::get_len(input)?;
    let mut states = BTreeMap::new();
    for _ in 0..n {
        let operator_id = codec::get_uvarint(input)?;
        let subtask = usize::try_from(codec::get_uvarint(input)?)
            .map_err(|_| codec::corrupt("subtask index out of range"))?;
        let len = codec::get_len(input)?;
        let bytes = codec::get_bytes(input, len)?;
        states.insert(
            TaskKey {
                operator_id,
                subtask,
            },
            bytes.to_vec(),
        );
    }
    let mut max_parallelism = None;
    let mut parallelism = BTreeMap::new();
    if !input.is_empty() {
        if codec::get_u8(input)? != TOPOLOGY_TAG {
            return Err(codec::corrupt("unknown section after the subtask states"));
        }
        let count = |v: u64| {
            usize::try_from(v)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| codec::corrupt("parallelism out of range"))
        };
        max_parallelism = Some(count(codec::get_uvarint(input)?)?);
        let n = codec::get_len(input)?;
        for _ in 0..n {
            let operator_id = codec::get_uvarint(input)?;
            let p = count(codec::get_uvarint(input)?)?;
            parallelism.insert(operator_id, p);
        }
    }
    codec::expect_end(input)?;
    Ok(RestoredCheckpoint {
        checkpoint_id,
        trigger_ms,
        states,
        path: path.to_path_buf(),
        is_savepoint,
        max_parallelism,
        parallelism,
    })
}

fn checkpoint_dir(job_dir: &Path, id: u64) -> PathBuf {
    job_dir.join(format!("chk-{id}"))
}

/// Reads a checkpoint from its directory or its `_metadata` file, verifying the checksum. A
/// damaged checkpoint is an [`EngineError::Data`]; a failure to read it at all is an
/// [`EngineError::Io`], which says nothing about the checkpoint.
pub fn read_checkpoint(path: &Path) -> Result<RestoredCheckpoint> {
    let file = if path.is_dir() {
        path.join(METADATA_FILE)
    } else {
        path.to_path_buf()
    };
    let context = || format!("cannot restore from '{}'", file.display());
    let payload = streamsql_storage::read_framed(&file, METADATA_MAGIC, METADATA_VERSION).map_err(
        |e| match e {
            streamsql_storage::StorageError::Io { source, .. } => {
                EngineError::io(context(), source)
            }
            other => EngineError::data(format!("{}: {other}", context())),
        },
    )?;
    decode_metadata(&payload, &file)
}

/// Where a subtask whose input ended writes the keyed-state file of its final state
/// (`<job dir>/chk-final/taskowned/...`): the id of the checkpoints that will include that state
/// (the final one, and with checkpoints-after-tasks-finish every periodic one until then) is not
/// known to it. Each such checkpoint gets a hard link (or a copy) of the file under its own
/// directory, so every `chk-<n>` stays self-contained.
pub const FINAL_STATE_DIR: &str = "chk-final";

/// Gives checkpoint `checkpoint` its own link to every keyed-state file it names that a task
/// wrote as its final state, then syncs the directories: `_metadata` may name them afterwards.
pub fn link_final_state_files(
    job_dir: &Path,
    checkpoint: &RestoredCheckpoint,
) -> std::result::Result<(), streamsql_storage::StorageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| streamsql_storage::StorageError::Io { path, source }
    };
    let dir = checkpoint_dir(job_dir, checkpoint.checkpoint_id);
    let staged = job_dir.join(FINAL_STATE_DIR);
    let mut synced: Vec<PathBuf> = Vec::new();
    for state in checkpoint.states.values() {
        let Ok(SubtaskState {
            keyed: KeyedHandle::File { path, .. },
            ..
        }) = SubtaskState::decode(state)
        else {
            continue;
        };
        let target = dir.join(&path);
        let source = staged.join(&path);
        if target.exists() || !source.exists() {
            // The task wrote this checkpoint's file itself (or the restore will report it).
            continue;
        }
        let parent = target.parent().unwrap_or(&dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).map_err(io(&target))?;
        }
        if !synced.contains(&parent) {
            synced.push(parent);
        }
    }
    for d in synced {
        streamsql_storage::file::sync_dir(&d)?;
    }
    Ok(())
}

/// Writes `<job dir>/chk-<n>/_metadata` through the durable write path: the commit point of
/// checkpoint n.
pub fn write_checkpoint_metadata(
    job_dir: &Path,
    checkpoint: &RestoredCheckpoint,
) -> std::result::Result<(), streamsql_storage::StorageError> {
    streamsql_storage::write_framed_atomic(
        &checkpoint_dir(job_dir, checkpoint.checkpoint_id).join(METADATA_FILE),
        METADATA_MAGIC,
        METADATA_VERSION,
        &encode_metadata(checkpoint),
    )
}

/// The completed checkpoints of a job directory, newest first: `chk-<n>` directories with a
/// `_metadata` file (none when the directory does not exist). A directory that cannot be listed
/// is an error, never an empty list: taken for "no checkpoint", it would make `--resume latest`
/// run the job again from its beginning.
pub fn completed_checkpoints(job_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let storage = |e| crate::state::storage_error("cannot list the checkpoints", e);
    let mut found = Vec::new();
    for dir in streamsql_storage::file::list_dir(job_dir).map_err(storage)? {
        let Some(id) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("chk-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if streamsql_storage::file::is_file(&dir.join(METADATA_FILE)).map_err(storage)? {
            found.push((id, dir));
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(found)
}

/// Discards a checkpoint directory, `_metadata` first and durably: a discard cut short leaves a
/// directory without its commit file, which no restore considers, never a `_metadata` whose state
/// files are gone (Flink's `CompletedCheckpoint` discards its metadata first too).
pub fn discard_checkpoint(dir: &Path) -> std::result::Result<(), streamsql_storage::StorageError> {
    use streamsql_storage::file;
    if file::remove_file(&dir.join(METADATA_FILE))? {
        file::sync_dir(dir)?;
    }
    file::remove_dir_all(dir)
}

/// The newest checkpoint of a job directory that reads back intact, falling back to older ones
/// when the newest is damaged; `None` when there is none. A checkpoint that cannot be read (an
/// I/O error, not a failed check) is an error: falling back past it would restore an older
/// checkpoint than the newest completed one, whose sink output was already published, and
/// publish that output a second time.
pub fn latest_checkpoint(job_dir: &Path) -> Result<Option<RestoredCheckpoint>> {
    let mut damaged = Vec::new();
    for (_, dir) in completed_checkpoints(job_dir)? {
        match read_checkpoint(&dir) {
            Ok(c) => {
                for d in damaged {
                    eprintln!("streamsql: skipped damaged checkpoint: {d}");
                }
                return Ok(Some(c));
            }
            Err(e @ EngineError::Io { .. }) => return Err(e),
            Err(e) => damaged.push(e.to_string()),
        }
    }
    if damaged.is_empty() {
        Ok(None)
    } else {
        Err(EngineError::data(format!(
            "no intact checkpoint in '{}': {}",
            job_dir.display(),
            damaged.join("; ")
        )))
    }
}

/// Checkpoints triggered and not yet complete, with the states acknowledged so far and, for a
/// savepoint, where it goes and who waits for it.
type Pending = BTreeMap<
    u64,
    (
        PendingCheckpoint,
        BTreeMap<TaskKey, Vec<u8>>,
        Option<SavepointInFlight>,
    ),
>;

/// A request to take a savepoint of the running job (`streamsql savepoint`, `streamsql stop`).
#[derive(Debug)]
pub struct SavepointRequest {
    /// The directory to create the savepoint's own directory in.
    pub target: PathBuf,
    /// Stop-with-savepoint: the job ends once the savepoint completes.
    pub stop: bool,
    /// Receives the savepoint's directory, or why it failed (Flink's message).
    pub reply: Sender<std::result::Result<PathBuf, String>>,
}

/// A savepoint being taken.
#[derive(Debug)]
pub(crate) struct SavepointInFlight {
    dir: PathBuf,
    stop: bool,
    reply: Sender<std::result::Result<PathBuf, String>>,
}

/// A checkpoint or savepoint that failed, as the coordinator removed it from the pending ones.
struct FailedCheckpoint {
    id: u64,
    kind: CheckpointKind,
    savepoint: Option<SavepointInFlight>,
}

/// The first six characters of the job id, as Flink names savepoint directories.
fn job_id_prefix(job_dir: &Path) -> String {
    let name = job_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.chars().take(6).collect()
}

/// Twelve random hex digits for a savepoint directory's name (unique, not reproducible).
fn random_suffix() -> String {
    crate::unique::hex(&crate::unique::random_bytes::<6>("savepoint"))
}

/// Removes pending checkpoint `id` for failing it.
fn take_failed(pending: &mut Pending, id: u64) -> FailedCheckpoint {
    let (p, _, savepoint) = pending
        .remove(&id)
        .expect("invariant: only a pending checkpoint fails");
    FailedCheckpoint {
        id,
        kind: p.kind(),
        savepoint,
    }
}

/// The coordinator's side of the channels.
pub(crate) struct Coordinator {
    pub setup: CheckpointSetup,
    pub tasks: Vec<TaskKey>,
    /// The job's number of key groups, recorded in every checkpoint for a later restore.
    pub max_parallelism: usize,
    /// Command channels of the source subtasks.
    pub sources: Vec<Sender<TaskCommand>>,
    /// Command channels of every subtask (completion notices).
    pub all: Vec<Sender<TaskCommand>>,
    pub events: Receiver<TaskEvent>,
    pub clock: Arc<dyn Clock>,
    /// Operator names by id, as monitoring shows them.
    pub operator_names: BTreeMap<u64, String>,
    /// Savepoint requests of the running job.
    pub savepoints: Receiver<SavepointRequest>,
    /// The smallest checkpoint id no attempt of this job has used (Flink's
    /// `CheckpointIDCounter`), shared by the attempts: a restarted attempt never reuses an id of
    /// the attempt before it, whose asynchronous parts may still be writing into that id's
    /// directory and would mix their files into the new checkpoint.
    pub next_id: Arc<AtomicU64>,
    /// The files of `shared/` each retained completed checkpoint uses (incremental
    /// checkpoints), by checkpoint id: a file is deleted once no retained checkpoint uses it.
    pub shared_refs: std::cell::RefCell<BTreeMap<u64, Vec<String>>>,
}

impl Coordinator {
    /// Runs until every task finished or the job is cancelled.
    pub fn run(self, shared: &JobShared) {
        if let Err(e) = self.run_inner(shared) {
            shared.fail(e);
        }
    }

    fn run_inner(self, shared: &JobShared) -> Result<()> {
        let mut stats = StatsRecorder::open(&self.setup, &self.tasks, self.clock.now_millis());
        stats.names = self.operator_names.clone();
        let mut pending = Pending::new();
        let result = self.drive(shared, &mut stats, &mut pending);
        // Whatever is still pending when the coordinator stops can never complete.
        if !pending.is_empty() {
            let now = self.clock.now_millis();
            for id in pending.keys() {
                stats.tracker.report_failed(
                    *id,
                    now,
                    CheckpointFailureReason::CheckpointCoordinatorShutdown,
                );
            }
            stats.save();
        }
        result
    }

    /// The coordinator's loop; returns when every task finished, the job is cancelled or a
    /// checkpoint failure fails the job.
    fn drive(
        &self,
        shared: &JobShared,
        stats: &mut StatsRecorder,
        pending: &mut Pending,
    ) -> Result<()> {
        let config = &self.setup.config;
        let policy = TriggerPolicy::new(config);
        let mut failures = FailureManager::new(config.tolerable_failed);
        let started_ms = self.clock.now_millis();
        // Ids continue past every checkpoint the statistics know, so that a resumed job never
        // reuses the id of one that failed or was in progress before the restart.
        let mut next_id = self
            .setup
            .restore
            .as_ref()
            .map_or(1, |r| r.checkpoint_id.saturating_add(1))
            .max(stats.first_unused_id());
        let mut last_trigger_ms: Option<i64> = None;
        let mut last_completed_end_ms: Option<i64> = None;
        let mut finished: std::collections::BTreeSet<TaskKey> = std::collections::BTreeSet::new();
        let mut final_states: BTreeMap<TaskKey, Vec<u8>> = BTreeMap::new();
        let mut completed: Vec<u64> = completed_checkpoints(&self.setup.job_dir)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        completed.sort_unstable();
        self.sweep_shared(&completed);
        // A fresh run of the same pipeline shares its job directory with earlier runs: its ids
        // continue past theirs, so that retention keeps the newest checkpoints and
        // `--resume latest` finds this run's, never an older run's end state.
        if let Some(last) = completed.last() {
            next_id = next_id.max(last.saturating_add(1));
        }
        next_id = next_id.max(self.next_id.load(Ordering::SeqCst));
        loop {
            if shared.is_cancelled() || finished.len() >= self.tasks.len() {
                return Ok(());
            }
            let now = self.clock.now_millis();
            let facts = TriggerFacts {
                now_ms: now,
                started_ms,
                last_trigger_ms,
                last_completed_end_ms,
                in_progress: pending.len(),
                // With checkpoints-after-tasks-finish (Flink's default), a task whose input ended
                // takes part with its final state; otherwise any ended task declines.
                all_tasks_running: if config.checkpoints_after_tasks_finish {
                    finished.iter().all(|t| final_states.contains_key(t))
                } else {
                    finished.is_empty()
                },
            };
            let stopping = pending
                .values()
                .any(|(p, _, _)| p.kind() == CheckpointKind::SynchronousSavepoint);
            while let Ok(request) = self.savepoints.try_recv() {
                self.trigger_savepoint(request, &mut next_id, pending, stats, &finished);
            }
            // Sources emit nothing after the barrier of a stop-with-savepoint, so no checkpoint
            // could complete meanwhile.
            let decision = if stopping {
                TriggerDecision::WaitForInProgress
            } else {
                policy.next_trigger(&facts)
            };
            if let TriggerDecision::Trigger = decision {
                let id = next_id;
                next_id += 1;
                self.next_id.fetch_max(next_id, Ordering::SeqCst);
                last_trigger_ms = Some(now);
                let barrier = CheckpointBarrier::checkpoint(id, now);
                pending.insert(
                    id,
                    (
                        PendingCheckpoint::new(
                            id,
                            CheckpointKind::Checkpoint,
                            now,
                            config.timeout,
                            self.tasks.iter().copied(),
                        ),
                        BTreeMap::new(),
                        None,
                    ),
                );
                stats.pending(id, now, CheckpointKind::Checkpoint);
                // Tasks whose input ended already hold the state of every later checkpoint.
                let (p, states, _) = pending
                    .get_mut(&id)
                    .expect("invariant: the checkpoint was just registered");
                for (task, state) in &final_states {
                    let ack = final_state_ack(state);
                    p.acknowledge(*task, ack, now);
                    stats.ack(id, *task, SubtaskStats::from_acknowledgement(&ack, now));
                    states.insert(*task, state.clone());
                }
                for s in &self.sources {
                    // A source that already ended cannot take part: the checkpoint is declined
                    // below when that task's end is reported.
                    let _ = s.try_send(TaskCommand::Trigger(barrier.clone()));
                }
            }
            // Expired checkpoints.
            let expired: Vec<u64> = pending
                .iter_mut()
                .filter_map(|(id, (p, _, _))| p.check_expired(now).map(|_| *id))
                .collect();
            for id in expired {
                let failed = take_failed(pending, id);
                self.fail_checkpoint(
                    &mut failures,
                    stats,
                    failed,
                    CheckpointFailureReason::CheckpointExpired,
                    shared,
                )?;
            }
            match self.events.recv_timeout(Duration::from_millis(10)) {
                Ok(TaskEvent::Ack {
                    task,
                    checkpoint_id,
                    state,
                    ack,
                }) => {
                    let Some((p, states, _)) = pending.get_mut(&checkpoint_id) else {
                        continue;
                    };
                    let ack_ms = self.clock.now_millis();
                    p.acknowledge(task, ack, ack_ms);
                    stats.ack(
                        checkpoint_id,
                        task,
                        SubtaskStats::from_acknowledgement(&ack, ack_ms),
                    );
                    states.insert(task, state);
                    if p.is_complete() {
                        self.commit(
                            checkpoint_id,
                            pending,
                            &mut failures,
                            stats,
                            &mut completed,
                            &mut last_completed_end_ms,
                            shared,
                        )?;
                    }
                }
                Ok(TaskEvent::Decline {
                    checkpoint_id,
                    reason,
                }) => {
                    if pending.contains_key(&checkpoint_id) {
                        let failed = take_failed(pending, checkpoint_id);
                        self.fail_checkpoint(&mut failures, stats, failed, reason, shared)?;
                    }
                }
                Ok(TaskEvent::FinalStateFailed { message }) => {
                    // The job cannot end cleanly: it fails, and the restart strategy takes over
                    // (Flink fails the task).
                    return Err(EngineError::Task {
                        message: format!("a task could not write its final state: {message}"),
                    });
                }
                Ok(TaskEvent::FinalState { task, state }) => {
                    let now = self.clock.now_millis();
                    stats.final_state(task, state.len(), now);
                    final_states.insert(task, state);
                    if final_states.len() == self.tasks.len() {
                        // Every task reached the end of its input: the final checkpoint makes the
                        // end durable before any sink publishes its last files.
                        let id = next_id;
                        self.next_id
                            .fetch_max(id.saturating_add(1), Ordering::SeqCst);
                        let checkpoint = self.checkpoint(
                            id,
                            stats.final_trigger_ms.unwrap_or(now),
                            std::mem::take(&mut final_states),
                            false,
                        );
                        stats.final_pending(id);
                        let (dir, written) = self.write_metadata(&checkpoint);
                        if let Err(e) = written {
                            stats.failed(
                                id,
                                self.clock.now_millis(),
                                CheckpointFailureReason::IoException,
                            );
                            return Err(EngineError::data(format!(
                                "the final checkpoint {id} failed: {e}"
                            )));
                        }
                        completed.push(id);
                        self.reference_shared(&checkpoint);
                        // The final checkpoint subsumes the periodic ones still in progress.
                        let older: Vec<u64> = pending
                            .iter()
                            .filter(|(_, (p, _, _))| !p.kind().is_savepoint())
                            .map(|(id, _)| *id)
                            .collect();
                        for old in older {
                            pending.remove(&old);
                            stats.tracker.report_failed(
                                old,
                                now,
                                CheckpointFailureReason::CheckpointSubsumed,
                            );
                        }
                        for tx in &self.all {
                            let _ = tx.try_send(TaskCommand::Complete(FINAL_CHECKPOINT));
                        }
                        self.retain(&mut completed, stats);
                        stats.completed(id, &dir, self.clock.now_millis());
                    }
                    let state = final_states.get(&task).cloned();
                    if let (true, Some(state)) = (config.checkpoints_after_tasks_finish, state) {
                        // The task never snapshotted the pending checkpoints it did not
                        // acknowledge (its acknowledgements arrive in order, before its final
                        // state): all its input preceded their barriers, so its final state is
                        // its state at each of them.
                        {
                            let complete = self
                                .acknowledge_with_final_state(pending, task, &state, stats, now);
                            // The newest one subsumes the others.
                            if let Some(&id) = complete.last() {
                                self.commit(
                                    id,
                                    pending,
                                    &mut failures,
                                    stats,
                                    &mut completed,
                                    &mut last_completed_end_ms,
                                    shared,
                                )?;
                            }
                        }
                    }
                    // What still waits for the task can never complete: every checkpoint when
                    // it cannot take part with its final state, and savepoints in any case.
                    self.abort_waiting_for(pending, task, &mut failures, stats, shared)?;
                    finished.insert(task);
                }
                Ok(TaskEvent::Finished(task)) => {
                    finished.insert(task);
                    self.abort_waiting_for(pending, task, &mut failures, stats, shared)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// A completed checkpoint of this job: its states and the job's topology.
    fn checkpoint(
        &self,
        checkpoint_id: u64,
        trigger_ms: i64,
        states: BTreeMap<TaskKey, Vec<u8>>,
        is_savepoint: bool,
    ) -> RestoredCheckpoint {
        let mut parallelism = BTreeMap::new();
        for task in &self.tasks {
            let p = parallelism.entry(task.operator_id).or_insert(0);
            *p = (*p).max(task.subtask + 1);
        }
        RestoredCheckpoint {
            checkpoint_id,
            trigger_ms,
            states,
            path: PathBuf::new(),
            is_savepoint,
            max_parallelism: Some(self.max_parallelism),
            parallelism,
        }
    }

    /// Writes `chk-<n>/_metadata` through the durable write path: the commit point of checkpoint
    /// n. Returns the checkpoint's directory and the outcome.
    fn write_metadata(
        &self,
        checkpoint: &RestoredCheckpoint,
    ) -> (
        PathBuf,
        std::result::Result<(), streamsql_storage::StorageError>,
    ) {
        let dir = checkpoint_dir(&self.setup.job_dir, checkpoint.checkpoint_id);
        let written = link_final_state_files(&self.setup.job_dir, checkpoint)
            .and_then(|()| write_checkpoint_metadata(&self.setup.job_dir, checkpoint));
        (dir, written)
    }

    /// Deletes the completed checkpoints beyond `execution.checkpointing.num-retained`, and the
    /// shared files only they used.
    fn retain(&self, completed: &mut Vec<u64>, stats: &mut StatsRecorder) {
        for id in which_to_delete(completed, self.setup.config.num_retained.max(1)) {
            self.discard(id);
            completed.retain(|c| *c != id);
            stats.tracker.report_discarded(id);
            let mut refs = self.shared_refs.borrow_mut();
            let Some(files) = refs.remove(&id) else {
                continue;
            };
            for f in files {
                if !refs.values().any(|used| used.contains(&f)) {
                    if let Err(e) =
                        streamsql_storage::file::remove_file(&self.setup.job_dir.join(&f))
                    {
                        eprintln!("streamsql: cannot delete the shared state file '{f}': {e}");
                    }
                }
            }
        }
    }

    /// Records the shared files completed checkpoint `checkpoint` uses.
    fn reference_shared(&self, checkpoint: &RestoredCheckpoint) {
        let mut files: Vec<String> = Vec::new();
        for state in checkpoint.states.values() {
            if let Ok(s) = SubtaskState::decode(state) {
                files.extend(s.shared_files().iter().map(|f| f.path.clone()));
            }
        }
        if !files.is_empty() {
            self.shared_refs
                .borrow_mut()
                .insert(checkpoint.checkpoint_id, files);
        }
    }

    /// When the coordinator starts (no snapshot of this attempt is in flight): learns which
    /// shared files the retained checkpoints use and deletes the others, left by checkpoints that
    /// failed or were in progress when an earlier run stopped.
    fn sweep_shared(&self, completed: &[u64]) {
        let shared = self.setup.job_dir.join(super::subtask_state::SHARED_DIR);
        let Ok(present) = streamsql_storage::file::list_dir(&shared) else {
            return;
        };
        if present.is_empty() {
            return;
        }
        for id in completed {
            if let Ok(c) = read_checkpoint(&checkpoint_dir(&self.setup.job_dir, *id)) {
                self.reference_shared(&c);
            }
        }
        let refs = self.shared_refs.borrow();
        for path in present {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let rel = format!("{}/{name}", super::subtask_state::SHARED_DIR);
            if !refs.values().any(|used| used.contains(&rel)) {
                let _ = streamsql_storage::file::remove_file(&path);
            }
        }
    }

    /// Triggers a savepoint for `request`: a barrier like a checkpoint's, whose snapshots go to
    /// the savepoint's own directory. Savepoints are not held back by the periodic trigger's
    /// limits (Flink forces them), but need every task running.
    fn trigger_savepoint(
        &self,
        request: SavepointRequest,
        next_id: &mut u64,
        pending: &mut Pending,
        stats: &mut StatsRecorder,
        finished: &std::collections::BTreeSet<TaskKey>,
    ) {
        if !finished.is_empty() {
            let reason = CheckpointFailureReason::NotAllRequiredTasksRunning;
            let _ = request.reply.send(Err(reason.message().to_string()));
            return;
        }
        let dir = request.target.join(format!(
            "savepoint-{}-{}",
            job_id_prefix(&self.setup.job_dir),
            random_suffix()
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            let _ = request.reply.send(Err(format!(
                "cannot create the savepoint directory '{}': {e}",
                dir.display()
            )));
            return;
        }
        let now = self.clock.now_millis();
        let id = *next_id;
        *next_id += 1;
        self.next_id.fetch_max(*next_id, Ordering::SeqCst);
        let kind = if request.stop {
            CheckpointKind::SynchronousSavepoint
        } else {
            CheckpointKind::Savepoint
        };
        let barrier = CheckpointBarrier {
            id,
            timestamp: now,
            savepoint: Some(crate::message::SavepointTarget {
                dir: Arc::new(dir.clone()),
                stop: request.stop,
            }),
        };
        pending.insert(
            id,
            (
                PendingCheckpoint::new(
                    id,
                    kind,
                    now,
                    self.setup.config.timeout,
                    self.tasks.iter().copied(),
                ),
                BTreeMap::new(),
                Some(SavepointInFlight {
                    dir,
                    stop: request.stop,
                    reply: request.reply,
                }),
            ),
        );
        stats.pending(id, now, kind);
        for s in &self.sources {
            let _ = s.try_send(TaskCommand::Trigger(barrier.clone()));
        }
    }

    /// Writes a savepoint's `_metadata` in its own directory and answers its request. Only a
    /// stop-with-savepoint notifies the tasks: as in Flink, an intermediate savepoint commits no
    /// side effects (its sink files are published by the next checkpoint), because recovery
    /// after a failure uses checkpoints, never savepoints.
    fn complete_savepoint(
        &self,
        savepoint: &RestoredCheckpoint,
        kind: CheckpointKind,
        sp: SavepointInFlight,
        failures: &mut FailureManager,
        stats: &mut StatsRecorder,
        shared: &JobShared,
    ) -> Result<()> {
        let id = savepoint.checkpoint_id;
        let written = streamsql_storage::write_framed_atomic(
            &sp.dir.join(METADATA_FILE),
            METADATA_MAGIC,
            METADATA_VERSION,
            &encode_metadata(savepoint),
        );
        if let Err(e) = written {
            eprintln!("streamsql: savepoint {id} failed: {e}");
            return self.fail_checkpoint(
                failures,
                stats,
                FailedCheckpoint {
                    id,
                    kind,
                    savepoint: Some(sp),
                },
                CheckpointFailureReason::IoException,
                shared,
            );
        }
        if sp.stop {
            for tx in &self.all {
                let _ = tx.try_send(TaskCommand::Complete(id));
            }
        }
        stats.completed(id, &sp.dir, self.clock.now_millis());
        let _ = sp.reply.send(Ok(sp.dir));
        Ok(())
    }

    /// Commits checkpoint `checkpoint_id`, which every task acknowledged: writes `_metadata`,
    /// subsumes older pending checkpoints, notifies the tasks and applies retention.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        checkpoint_id: u64,
        pending: &mut Pending,
        failures: &mut FailureManager,
        stats: &mut StatsRecorder,
        completed: &mut Vec<u64>,
        last_completed_end_ms: &mut Option<i64>,
        shared: &JobShared,
    ) -> Result<()> {
        let (p, states, savepoint) = pending
            .remove(&checkpoint_id)
            .expect("invariant: the checkpoint was just found pending");
        if let Some(sp) = savepoint {
            let checkpoint = self.checkpoint(checkpoint_id, p.trigger_ms(), states, true);
            self.complete_savepoint(&checkpoint, p.kind(), sp, failures, stats, shared)?;
            return Ok(());
        }
        let checkpoint = self.checkpoint(checkpoint_id, p.trigger_ms(), states, false);
        let (dir, written) = self.write_metadata(&checkpoint);
        if let Err(e) = written {
            eprintln!("streamsql: checkpoint {checkpoint_id} failed: {e}");
            self.fail_checkpoint(
                failures,
                stats,
                FailedCheckpoint {
                    id: checkpoint_id,
                    kind: p.kind(),
                    savepoint: None,
                },
                CheckpointFailureReason::IoException,
                shared,
            )?;
            return Ok(());
        }
        failures.on_success(checkpoint_id);
        self.reference_shared(&checkpoint);
        let end_ms = self.clock.now_millis();
        *last_completed_end_ms = Some(end_ms);
        completed.push(checkpoint_id);
        // Older pending checkpoints are subsumed; savepoints never are.
        let older: Vec<u64> = pending
            .range(..checkpoint_id)
            .filter(|(_, (p, _, _))| !p.kind().is_savepoint())
            .map(|(id, _)| *id)
            .collect();
        for id in older {
            pending.remove(&id);
            stats
                .tracker
                .report_failed(id, end_ms, CheckpointFailureReason::CheckpointSubsumed);
        }
        for tx in &self.all {
            let _ = tx.try_send(TaskCommand::Complete(checkpoint_id));
        }
        self.retain(completed, stats);
        stats.completed(checkpoint_id, &dir, end_ms);
        Ok(())
    }

    /// Acknowledges every pending checkpoint still waiting for `task` with the task's final state;
    /// returns the checkpoints this completed, oldest first, for the caller to commit.
    fn acknowledge_with_final_state(
        &self,
        pending: &mut Pending,
        task: TaskKey,
        state: &[u8],
        stats: &mut StatsRecorder,
        now: i64,
    ) -> Vec<u64> {
        let mut complete = Vec::new();
        for (id, (p, states, savepoint)) in pending.iter_mut() {
            // A savepoint needs every task running: it fails instead (see `abort_waiting_for`).
            if savepoint.is_none() && p.not_yet_acknowledged().any(|k| *k == task) {
                let ack = final_state_ack(state);
                p.acknowledge(task, ack, now);
                stats.ack(*id, task, SubtaskStats::from_acknowledgement(&ack, now));
                states.insert(task, state.to_vec());
                if p.is_complete() {
                    complete.push(*id);
                }
            }
        }
        complete
    }

    /// Discards checkpoint `id`'s directory, best effort as Flink's discard: a failure is
    /// reported and leaves files behind, never a `_metadata` without its state.
    fn discard(&self, id: u64) {
        let dir = checkpoint_dir(&self.setup.job_dir, id);
        if let Err(e) = discard_checkpoint(&dir) {
            eprintln!("streamsql: cannot discard checkpoint {id}: {e}");
        }
    }

    /// Aborts the checkpoints still waiting for `task`, which ended: they can never complete.
    fn abort_waiting_for(
        &self,
        pending: &mut Pending,
        task: TaskKey,
        failures: &mut FailureManager,
        stats: &mut StatsRecorder,
        shared: &JobShared,
    ) -> Result<()> {
        let waiting: Vec<u64> = pending
            .iter()
            .filter(|(_, (p, _, _))| p.not_yet_acknowledged().any(|k| *k == task))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            let failed = take_failed(pending, id);
            self.fail_checkpoint(
                failures,
                stats,
                failed,
                CheckpointFailureReason::CheckpointDeclinedTaskClosing,
                shared,
            )?;
        }
        Ok(())
    }

    fn fail_checkpoint(
        &self,
        failures: &mut FailureManager,
        stats: &mut StatsRecorder,
        failed: FailedCheckpoint,
        reason: CheckpointFailureReason,
        shared: &JobShared,
    ) -> Result<()> {
        let id = failed.id;
        match failed.savepoint {
            Some(sp) => {
                eprintln!("streamsql: savepoint {id} failed: {}", reason.message());
                let _ = std::fs::remove_dir_all(&sp.dir);
                let _ = sp.reply.send(Err(reason.message().to_string()));
                if sp.stop {
                    // The sources wait after the barrier: they go on with the job.
                    for tx in &self.sources {
                        let _ = tx.try_send(TaskCommand::Abort(id));
                    }
                }
            }
            None => {
                eprintln!("streamsql: checkpoint {id} failed: {}", reason.message());
                self.discard(id);
            }
        }
        stats.failed(id, self.clock.now_millis(), reason);
        match failures.on_failure(Some(id), failed.kind, reason, false) {
            FailureVerdict::Continue => Ok(()),
            FailureVerdict::FailJob { message } => {
                shared.cancel.store(true, Ordering::SeqCst);
                Err(EngineError::Task { message })
            }
        }
    }
}

/// The coordinator's checkpoint statistics and the file they are kept in
/// (`<job dir>/_checkpoint_stats.json`), rewritten after every completion, failure and restore so
/// that `streamsql checkpoints` shows a running job and the history survives restarts. Writing it
/// is best effort: a failure is reported on stderr and never fails the job.
struct StatsRecorder {
    tracker: CheckpointStatsTracker,
    file: PathBuf,
    /// Every operator taking part in a checkpoint, with its number of subtasks.
    operators: BTreeMap<u64, usize>,
    num_subtasks: usize,
    /// When the first subtask reported its final state: the trigger time of the final checkpoint.
    final_trigger_ms: Option<i64>,
    /// Final states reported before the final checkpoint was registered, as (task, size, time).
    final_acks: Vec<(TaskKey, u64, i64)>,
    /// Operator names by id; an operator without one shows its vertex id.
    names: BTreeMap<u64, String>,
}

impl StatsRecorder {
    /// The statistics of a job starting at `now_ms`: those of the previous runs when it resumes
    /// (with the restore recorded), fresh ones otherwise.
    fn open(setup: &CheckpointSetup, tasks: &[TaskKey], now_ms: i64) -> Self {
        let file = stats_file(&setup.job_dir);
        let mut tracker = None;
        if setup.restore.is_some() {
            match streamsql_storage::file::is_file(&file) {
                Ok(false) => {}
                Ok(true) => match CheckpointStatsTracker::load(&file) {
                    Ok(t) => tracker = Some(t),
                    Err(e) => eprintln!("streamsql: checkpoint statistics start afresh: {e}"),
                },
                Err(e) => eprintln!("streamsql: checkpoint statistics start afresh: {e}"),
            }
        }
        let mut tracker = tracker.unwrap_or_else(|| fresh_tracker(setup));
        tracker.set_history_size(setup.config.history_size);
        // Checkpoints in progress when the previous run stopped were aborted by its end.
        if tracker.counts().in_progress > 0 {
            for id in tracker.history_ids() {
                let in_progress = tracker
                    .details_json(id)
                    .is_some_and(|d| d["status"] == "IN_PROGRESS");
                if in_progress {
                    tracker.report_failed(id, now_ms, CheckpointFailureReason::JobFailoverRegion);
                }
            }
        }
        let mut operators = BTreeMap::new();
        for t in tasks {
            *operators.entry(t.operator_id).or_insert(0) += 1;
        }
        let mut recorder = StatsRecorder {
            tracker,
            file,
            operators,
            num_subtasks: tasks.len(),
            final_trigger_ms: None,
            final_acks: Vec::new(),
            names: BTreeMap::new(),
        };
        if let Some(r) = &setup.restore {
            // Monitoring names a checkpoint by its directory, as for completed ones.
            let dir = match r.path.parent() {
                Some(parent) if r.path.file_name() == Some(METADATA_FILE.as_ref()) => parent,
                _ => r.path.as_path(),
            };
            let path = dir.display().to_string();
            recorder
                .tracker
                .report_restored(r.checkpoint_id, now_ms, Some(&path), r.is_savepoint);
            recorder.save();
        }
        recorder
    }

    /// The smallest checkpoint id the statistics have not seen.
    fn first_unused_id(&self) -> u64 {
        self.tracker
            .history_ids()
            .into_iter()
            .max()
            .map_or(1, |id| id.saturating_add(1))
    }

    /// Checkpoint (or savepoint) `id` was triggered at `trigger_ms`.
    fn pending(&mut self, id: u64, trigger_ms: i64, kind: CheckpointKind) {
        let checkpoint_type = match kind {
            CheckpointKind::Checkpoint => CheckpointType::Checkpoint,
            CheckpointKind::Savepoint => CheckpointType::Savepoint,
            CheckpointKind::SynchronousSavepoint => CheckpointType::SyncSavepoint,
        };
        self.tracker
            .report_pending(id, trigger_ms, checkpoint_type, self.num_subtasks);
        for (op, parallelism) in &self.operators {
            let name = self.name(*op);
            self.tracker.report_task(id, *op, &name, *parallelism);
        }
    }

    /// The name monitoring shows for an operator: its name, else its vertex id.
    fn name(&self, operator_id: u64) -> String {
        self.names
            .get(&operator_id)
            .cloned()
            .unwrap_or_else(|| vertex_id(operator_id))
    }

    fn ack(&mut self, id: u64, task: TaskKey, stats: SubtaskStats) {
        let name = self.name(task.operator_id);
        self.tracker
            .report_subtask_ack(id, task.operator_id, &name, task.subtask, stats);
    }

    /// A subtask's final state of `size` bytes arrived at `now_ms`; it is the subtask's
    /// acknowledgement of the final checkpoint.
    fn final_state(&mut self, task: TaskKey, size: usize, now_ms: i64) {
        self.final_trigger_ms.get_or_insert(now_ms);
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        self.final_acks.push((task, size, now_ms));
    }

    /// The final checkpoint is `id`: registers it with every final state as an acknowledgement.
    fn final_pending(&mut self, id: u64) {
        let trigger_ms = self.final_trigger_ms.unwrap_or_default();
        self.pending(id, trigger_ms, CheckpointKind::Checkpoint);
        for (task, size, at) in std::mem::take(&mut self.final_acks) {
            let stats = SubtaskStats {
                ack_timestamp: at,
                state_size: size,
                checkpointed_size: size,
                ..SubtaskStats::default()
            };
            self.ack(id, task, stats);
        }
    }

    fn completed(&mut self, id: u64, dir: &Path, now_ms: i64) {
        let path = dir.display().to_string();
        self.tracker.report_completed(id, Some(&path), now_ms);
        self.save();
    }

    fn failed(&mut self, id: u64, now_ms: i64, reason: CheckpointFailureReason) {
        self.tracker.report_failed(id, now_ms, reason);
        self.save();
    }

    fn save(&self) {
        if let Err(e) = self.tracker.save(&self.file) {
            eprintln!("streamsql: cannot save the checkpoint statistics: {e}");
        }
    }
}

/// A tracker for a job of `setup`: its configuration body shows the job's checkpointing
/// settings; the history keeps `web.checkpoints.history` checkpoints.
fn fresh_tracker(setup: &CheckpointSetup) -> CheckpointStatsTracker {
    let c = &setup.config;
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let mut entries: Vec<(&str, String)> = vec![
        ("execution.checkpointing.mode", c.mode.name().to_string()),
        ("execution.checkpointing.timeout", ms(c.timeout)),
        ("execution.checkpointing.min-pause", ms(c.min_pause)),
        (
            "execution.checkpointing.max-concurrent-checkpoints",
            c.max_concurrent.to_string(),
        ),
        (
            "execution.checkpointing.tolerable-failed-checkpoints",
            c.tolerable_failed.to_string(),
        ),
        (
            "execution.checkpointing.num-retained",
            c.num_retained.to_string(),
        ),
        (
            "execution.checkpointing.checkpoints-after-tasks-finish",
            c.checkpoints_after_tasks_finish.to_string(),
        ),
    ];
    if let Some(i) = c.interval {
        entries.push(("execution.checkpointing.interval", ms(i)));
    }
    // `unaligned` is already off in AT_LEAST_ONCE, so the view shows what is in effect.
    entries.push((
        "execution.checkpointing.unaligned.enabled",
        c.unaligned.to_string(),
    ));
    entries.push((
        "execution.checkpointing.aligned-checkpoint-timeout",
        ms(c.aligned_checkpoint_timeout),
    ));
    entries.push(("state.backend.type", c.state_backend.clone()));
    entries.push(("web.checkpoints.history", c.history_size.to_string()));
    // Checkpoints are always files on disk.
    if let Some(dir) = setup.job_dir.parent() {
        entries.push(("execution.checkpointing.dir", dir.display().to_string()));
    }
    let mut conf = Configuration::new();
    for (key, value) in entries {
        if let Err(e) = conf.set(key, &value) {
            eprintln!("streamsql: checkpoint statistics: {e}");
        }
    }
    CheckpointStatsTracker::new(&conf).unwrap_or_else(|e| {
        eprintln!("streamsql: checkpoint statistics: {e}");
        CheckpointStatsTracker::new(&Configuration::new())
            .expect("invariant: the default checkpointing configuration is valid")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_damage() {
        let mut states = BTreeMap::new();
        states.insert(
            TaskKey {
                operator_id: 7,
                subtask: 1,
            },
            vec![1, 2, 3],
        );
        states.insert(
            TaskKey {
                operator_id: 9,
                subtask: 0,
            },
            Vec::new(),
        );
        let c = RestoredCheckpoint {
            checkpoint_id: 42,
            trigger_ms: 1_700_000_000_000,
            states,
            path: PathBuf::from("x"),
            is_savepoint: false,
            max_parallelism: Some(256),
            parallelism: [(7, 3), (9, 1)].into_iter().collect(),
        };
        let bytes = encode_metadata(&c);
        assert_eq!(decode_metadata(&bytes, Path::new("x")).unwrap(), c);
        assert_eq!((c.parallelism_of(7), c.parallelism_of(8)), (3, 0));
        // A checkpoint written before the topology was recorded still reads.
        let old = RestoredCheckpoint {
            max_parallelism: None,
            parallelism: BTreeMap::new(),
            ..c.clone()
        };
        let back = decode_metadata(&encode_metadata(&old), Path::new("x")).unwrap();
        assert_eq!(back, old);
        let old_len = encode_metadata(&old).len();
        for cut in (0..bytes.len()).filter(|&cut| cut != old_len) {
            assert!(decode_metadata(&bytes[..cut], Path::new("x")).is_err());
        }
    }

    #[test]
    fn latest_checkpoint_falls_back_past_a_damaged_one() {
        let dir = std::env::temp_dir().join(format!("streamsql-chk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for id in [1u64, 2] {
            let c = RestoredCheckpoint {
                checkpoint_id: id,
                ..Default::default()
            };
            streamsql_storage::write_framed_atomic(
                &checkpoint_dir(&dir, id).join(METADATA_FILE),
                METADATA_MAGIC,
                METADATA_VERSION,
                &encode_metadata(&c),
            )
            .unwrap();
        }
        assert_eq!(latest_checkpoint(&dir).unwrap().unwrap().checkpoint_id, 2);
        std::fs::write(checkpoint_dir(&dir, 2).join(METADATA_FILE), b"torn").unwrap();
        assert_eq!(latest_checkpoint(&dir).unwrap().unwrap().checkpoint_id, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn key(operator_id: u64, subtask: usize) -> TaskKey {
        TaskKey {
            operator_id,
            subtask,
        }
    }

    #[test]
    fn a_final_state_file_gets_a_link_in_every_checkpoint_that_names_it() {
        let job = temp_job_dir("final-links");
        let staged = job.join(FINAL_STATE_DIR).join("taskowned");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("a-0.state"), b"final state of a").unwrap();
        let file = |path: &str| {
            SubtaskState {
                operator: vec![1],
                keyed: KeyedHandle::File {
                    path: path.into(),
                    size: 16,
                },
                in_flight: Vec::new(),
            }
            .encode()
        };
        let key = |op| TaskKey {
            operator_id: op,
            subtask: 0,
        };
        // Task 2 wrote its own file for checkpoint 7; task 1 had ended.
        let own = job.join("chk-7").join("taskowned");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("b-0.state"), b"own").unwrap();
        std::fs::write(staged.join("b-0.state"), b"stale final").unwrap();
        for id in [7, 8] {
            let checkpoint = RestoredCheckpoint {
                checkpoint_id: id,
                trigger_ms: 1,
                states: [
                    (key(1), file("taskowned/a-0.state")),
                    (key(2), file("taskowned/b-0.state")),
                ]
                .into_iter()
                .collect(),
                path: PathBuf::new(),
                is_savepoint: false,
                ..RestoredCheckpoint::default()
            };
            link_final_state_files(&job, &checkpoint).unwrap();
            let dir = job.join(format!("chk-{id}")).join("taskowned");
            assert_eq!(
                std::fs::read(dir.join("a-0.state")).unwrap(),
                b"final state of a"
            );
            let b = std::fs::read(dir.join("b-0.state")).ok();
            if id == 7 {
                assert_eq!(b.as_deref(), Some(&b"own"[..]), "a task's own file is kept");
            } else {
                assert_eq!(b.as_deref(), Some(&b"stale final"[..]));
            }
        }
        // The staging directory can go: each checkpoint has its own link.
        std::fs::remove_dir_all(job.join(FINAL_STATE_DIR)).unwrap();
        assert!(job.join("chk-8/taskowned/a-0.state").is_file());
        let _ = std::fs::remove_dir_all(job.parent().unwrap());
    }

    fn temp_job_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("streamsql-ckstats-{}-{name}", std::process::id()))
            .join("job");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn setup(job_dir: &Path, restore: Option<RestoredCheckpoint>) -> CheckpointSetup {
        CheckpointSetup {
            config: CheckpointConfig {
                interval: Some(Duration::from_millis(20)),
                ..CheckpointConfig::default()
            },
            job_dir: job_dir.to_path_buf(),
            restore: restore.map(Arc::new),
            allow_non_restored_state: false,
        }
    }

    /// Source 1 with one subtask, sink 2 with two.
    fn tasks() -> Vec<TaskKey> {
        vec![key(1, 0), key(2, 0), key(2, 1)]
    }

    fn ack(state: u64) -> SubtaskStats {
        SubtaskStats::from_acknowledgement(
            &Acknowledgement {
                state_size: state,
                checkpointed_size: state,
                ..Acknowledgement::default()
            },
            0,
        )
    }

    fn load(job_dir: &Path) -> CheckpointStatsTracker {
        CheckpointStatsTracker::load(&stats_file(job_dir)).unwrap()
    }

    #[test]
    fn statistics_follow_trigger_acks_completion_and_failure() {
        let dir = temp_job_dir("lifecycle");
        let mut stats = StatsRecorder::open(&setup(&dir, None), &tasks(), 1_000);
        assert_eq!(stats.first_unused_id(), 1);
        // Nothing is written before a checkpoint ends.
        assert!(!stats_file(&dir).exists());
        let config = stats.tracker.config_json();
        assert_eq!(config["interval"], 20);
        assert_eq!(config["mode"], "exactly_once");
        assert_eq!(config["checkpoint_storage"], "FileSystemCheckpointStorage");

        stats.pending(1, 1_000, CheckpointKind::Checkpoint);
        let pending = stats.tracker.details_json(1).unwrap();
        assert_eq!(pending["num_subtasks"], 3);
        assert_eq!(pending["tasks"][vertex_id(2)]["num_subtasks"], 2);
        for (t, size) in tasks().into_iter().zip([10, 20, 30]) {
            let mut a = ack(size);
            a.ack_timestamp = 1_005;
            stats.ack(1, t, a);
        }
        let chk = checkpoint_dir(&dir, 1);
        stats.completed(1, &chk, 1_006);
        stats.pending(2, 1_020, CheckpointKind::Checkpoint);
        stats.failed(2, 1_030, CheckpointFailureReason::CheckpointExpired);

        let t = load(&dir);
        let counts = t.counts();
        assert_eq!(
            (
                counts.total,
                counts.completed,
                counts.failed,
                counts.in_progress
            ),
            (2, 1, 1, 0)
        );
        let json = t.to_rest_json();
        let latest = &json["latest"]["completed"];
        assert_eq!(latest["id"], 1);
        assert_eq!(latest["state_size"], 60);
        assert_eq!(latest["end_to_end_duration"], 5);
        assert_eq!(latest["external_path"], chk.display().to_string());
        assert_eq!(t.failure_reason(2), Some("CHECKPOINT_EXPIRED"));
        assert_eq!(t.history_ids(), vec![2, 1]);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn a_resumed_job_keeps_the_history_and_records_the_restore() {
        let dir = temp_job_dir("resume");
        let mut first = StatsRecorder::open(&setup(&dir, None), &tasks(), 1_000);
        first.pending(1, 1_000, CheckpointKind::Checkpoint);
        for t in tasks() {
            first.ack(1, t, ack(1));
        }
        first.completed(1, &checkpoint_dir(&dir, 1), 1_010);
        // Checkpoint 2 was in progress (and saved so) when the run was killed; 3 had failed.
        first.pending(2, 1_020, CheckpointKind::Checkpoint);
        first.pending(3, 1_040, CheckpointKind::Checkpoint);
        first.failed(3, 1_050, CheckpointFailureReason::CheckpointDeclined);

        let restore = RestoredCheckpoint {
            checkpoint_id: 1,
            trigger_ms: 1_000,
            states: BTreeMap::new(),
            path: checkpoint_dir(&dir, 1).join(METADATA_FILE),
            is_savepoint: false,
            ..RestoredCheckpoint::default()
        };
        let second = StatsRecorder::open(&setup(&dir, Some(restore)), &tasks(), 5_000);
        // Ids continue past every checkpoint monitoring knows.
        assert_eq!(second.first_unused_id(), 4);
        let t = load(&dir);
        let counts = t.counts();
        assert_eq!(
            (
                counts.restored,
                counts.total,
                counts.completed,
                counts.failed,
                counts.in_progress
            ),
            (1, 3, 1, 2, 0)
        );
        assert_eq!(t.failure_reason(2), Some("JOB_FAILOVER_REGION"));
        let restored = &t.to_rest_json()["latest"]["restored"];
        assert_eq!(restored["id"], 1);
        assert_eq!(restored["restore_timestamp"], 5_000);
        assert_eq!(restored["is_savepoint"], false);
        assert_eq!(
            restored["external_path"],
            checkpoint_dir(&dir, 1).display().to_string()
        );
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn damaged_statistics_start_afresh_and_a_fresh_run_ignores_old_ones() {
        let dir = temp_job_dir("damaged");
        let mut first = StatsRecorder::open(&setup(&dir, None), &tasks(), 1_000);
        first.pending(1, 1_000, CheckpointKind::Checkpoint);
        first.failed(1, 1_010, CheckpointFailureReason::CheckpointExpired);
        // A run that does not resume starts with empty statistics.
        let fresh = StatsRecorder::open(&setup(&dir, None), &tasks(), 2_000);
        assert_eq!(fresh.tracker.counts().total, 0);

        std::fs::write(stats_file(&dir), b"torn").unwrap();
        let restore = RestoredCheckpoint {
            checkpoint_id: 7,
            path: checkpoint_dir(&dir, 7),
            is_savepoint: false,
            ..RestoredCheckpoint::default()
        };
        let resumed = StatsRecorder::open(&setup(&dir, Some(restore)), &tasks(), 3_000);
        let counts = resumed.tracker.counts();
        assert_eq!((counts.restored, counts.total), (1, 0));
        assert_eq!(load(&dir).counts().restored, 1);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn the_final_checkpoint_counts_as_completed_with_every_final_state() {
        let dir = temp_job_dir("final");
        let mut stats = StatsRecorder::open(&setup(&dir, None), &tasks(), 1_000);
        stats.final_state(key(1, 0), 4, 2_000);
        stats.final_state(key(2, 0), 0, 2_003);
        stats.final_state(key(2, 1), 6, 2_007);
        assert_eq!(stats.final_trigger_ms, Some(2_000));
        stats.final_pending(9);
        stats.completed(9, &checkpoint_dir(&dir, 9), 2_008);
        let json = load(&dir).to_rest_json();
        let latest = &json["latest"]["completed"];
        assert_eq!(latest["id"], 9);
        assert_eq!(latest["num_acknowledged_subtasks"], 3);
        assert_eq!(latest["state_size"], 10);
        assert_eq!(latest["trigger_timestamp"], 2_000);
        assert_eq!(latest["end_to_end_duration"], 7);
        assert_eq!(json["counts"]["completed"], 1);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn monitoring_shows_operator_names_and_falls_back_to_vertex_ids() {
        let dir = std::env::temp_dir().join(format!("streamsql-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut stats = StatsRecorder::open(&setup(&dir, None), &tasks(), 1_000);
        stats.names.insert(1, "TableSourceScan".into());
        stats.pending(1, 1_000, CheckpointKind::Checkpoint);
        let names: Vec<String> = stats
            .tracker
            .task_names(1)
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        assert!(names.contains(&"TableSourceScan".to_string()), "{names:?}");
        assert!(names.contains(&vertex_id(2)), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
