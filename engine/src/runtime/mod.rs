//! Runs a `DataflowGraph`: one named thread per operator subtask, bounded channels between them.
//!
//! Every (upstream subtask, downstream subtask) pair of an edge has its own bounded crossbeam
//! channel, so that a task can later block one input (barrier alignment) while reading the others.
//! The task loop is owned here (`task.rs`); operators only implement hooks. A failing or panicking
//! task records the job's first error and raises the cancel flag; every other task notices it
//! within one poll interval (blocking calls all have timeouts) and stops.

pub mod channel_state;
pub mod checkpointing;
pub mod clock;
mod compaction;
pub mod control;
mod exchange;
pub mod job_result;
pub mod local_state;
mod rescale;
pub mod subtask_state;
mod task;
pub mod watermark;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::bounded;

use crate::error::{EngineError, Result};
use crate::graph::{DataflowGraph, NodeKind, Partitioning};
use crate::metrics::TaskMetrics;
use crate::operator::TaskContext;
pub use clock::{Clock, ManualClock, SystemClock};
use exchange::{EdgeWriter, OutputRouter};

/// How the runtime runs a graph.
#[derive(Clone)]
pub struct RuntimeSettings {
    /// Rows per batch before a buffer is sent.
    pub batch_size: usize,
    /// Batches a channel holds before the sender blocks (back pressure).
    pub channel_capacity: usize,
    /// `execution.buffer-timeout`: `Some(0)` sends after every hook, `None` only when full.
    pub buffer_timeout: Option<Duration>,
    /// How often `on_timer` runs (`pipeline.auto-watermark-interval`, at least 1 ms).
    pub timer_interval: Duration,
    /// `pipeline.max-parallelism`: the number of key groups.
    pub max_parallelism: usize,
    /// Whether the user set `pipeline.max-parallelism`: a restore then requires the snapshot's to
    /// match it, while a derived one is replaced by the snapshot's, as in Flink.
    pub max_parallelism_explicit: bool,
    pub clock: Arc<dyn Clock>,
    /// Checkpointing, when `execution.checkpointing.interval` is set (or a job resumes).
    pub checkpointing: Option<checkpointing::CheckpointSetup>,
    /// How failed attempts are restarted; `None` fails the job at the first failure.
    pub restart: Option<crate::checkpoint::RestartStrategy>,
    /// Where keyed state lives (`state.backend.*`).
    pub state_backend: crate::state::StateBackendConfig,
    /// `table.exec.state.ttl`, when set (non-zero): how long idle state of non-windowed
    /// operators lives.
    pub state_ttl: Option<Duration>,
    /// `state.latency-track.*`, when `keyed-state-enabled` is on.
    pub state_latency: Option<StateLatencySettings>,
    /// The process ends with the job (the `streamsql run` command): an operator whose input
    /// ended normally leaves its keyed state's in-memory entries to the process exit instead of
    /// freeing them one by one ([`crate::state::drop_keeping_state_memory`]). Off for embedded
    /// jobs.
    pub process_ends_with_job: bool,
}

/// `state.latency-track.*` for every keyed state of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLatencySettings {
    /// `state.latency-track.sample-interval`.
    pub sample_interval: u32,
    /// `state.latency-track.history-size`.
    pub history_size: usize,
    /// `state.latency-track.state-name-as-variable`.
    pub state_name_as_variable: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            batch_size: 1024,
            channel_capacity: 8,
            buffer_timeout: Some(Duration::from_millis(100)),
            timer_interval: Duration::from_millis(200),
            max_parallelism: 128,
            max_parallelism_explicit: false,
            clock: Arc::new(SystemClock),
            checkpointing: None,
            restart: None,
            state_backend: crate::state::StateBackendConfig::default(),
            state_ttl: None,
            state_latency: None,
            process_ends_with_job: false,
        }
    }
}

/// The keyed-state context of one subtask: a store when the job checkpoints (the store keeps the
/// byte form snapshots are taken from) or the backend is sled (the store holds what does not fit
/// in memory).
fn state_context(
    settings: &RuntimeSettings,
    node: &crate::graph::Node,
    subtask: usize,
    metrics: &Arc<TaskMetrics>,
) -> crate::state::StateContext {
    let config = settings.state_backend.clone();
    let needs_store =
        settings.checkpointing.is_some() || config.kind == crate::state::BackendKind::Sled;
    let store = needs_store.then(|| {
        let (start, end) =
            crate::keygroup::key_group_range(subtask, node.parallelism, settings.max_parallelism);
        let range = streamsql_storage::KeyGroupRange::new(
            u16::try_from(start).unwrap_or(u16::MAX),
            u16::try_from(end).unwrap_or(u16::MAX),
        );
        Arc::new(crate::state::SubtaskStore::new(
            config.clone(),
            range,
            &format!("{:016x}-{subtask}", node.id),
        ))
    });
    crate::state::StateContext {
        config,
        store,
        checkpointing: settings.checkpointing.is_some(),
        ttl: settings.state_ttl.map(|ttl| crate::state::StateTtl {
            ttl,
            clock: settings.clock.clone(),
        }),
        latency: settings
            .state_latency
            .map(|l| crate::state::latency::LatencyTracking {
                sample_interval: l.sample_interval,
                history_size: l.history_size,
                state_name_as_variable: l.state_name_as_variable,
                metrics: metrics.clone(),
            }),
    }
}

/// One input channel of a subtask and the operator input it feeds.
type TaskInput = (crossbeam_channel::Receiver<crate::message::Message>, usize);

/// The priority path of an input channel, when its task takes unaligned checkpoints.
type PriorityInput = Option<crossbeam_channel::Receiver<crate::message::PriorityBarrier>>;

/// Barriers a priority path holds: a few checkpoints' worth, as a task drains it every loop.
const PRIORITY_CAPACITY: usize = 16;

/// State shared by all tasks of one attempt of a job.
pub(crate) struct JobShared {
    /// Raised when this attempt fails.
    pub cancel: Arc<AtomicBool>,
    /// Raised when the user cancels the job: every attempt, current and future, stops.
    user_cancel: Arc<AtomicBool>,
    error: Mutex<Option<EngineError>>,
    /// Progress of restoring a checkpoint, when this attempt restores one.
    restore: Option<RestoreProgress>,
}

/// How far the operator subtasks of an attempt are with restoring a checkpoint: the last one to
/// finish reports the restore's duration and size, as Flink logs a completed restore.
pub(crate) struct RestoreProgress {
    checkpoint_id: u64,
    started: std::time::Instant,
    remaining: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
}

impl JobShared {
    /// An operator subtask restored `bytes` of state.
    pub fn restored(&self, bytes: u64) {
        let Some(r) = &self.restore else {
            return;
        };
        r.bytes.fetch_add(bytes, Ordering::SeqCst);
        if r.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            let total = r.bytes.load(Ordering::SeqCst);
            eprintln!(
                "streamsql: restored checkpoint {} ({:.1} MB of state) in {} ms",
                r.checkpoint_id,
                total as f64 / 1e6,
                r.started.elapsed().as_millis()
            );
        }
    }
}

impl JobShared {
    /// Records the first failure and stops the attempt.
    pub fn fail(&self, e: EngineError) {
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.user_cancel.load(Ordering::Relaxed)
    }
}

/// The metrics of one subtask, with where it sits in the graph.
#[derive(Clone, Debug)]
pub struct SubtaskMetrics {
    pub node: usize,
    pub operator_id: u64,
    pub operator_name: String,
    pub subtask: usize,
    pub metrics: Arc<TaskMetrics>,
}

/// A running job: its first attempt's threads, and a supervisor that restarts failed attempts as
/// the restart strategy allows.
pub struct JobHandle {
    supervisor: JoinHandle<Result<JobOutcome>>,
    user_cancel: Arc<AtomicBool>,
    /// Savepoint requests to the job's coordinator (a job that checkpoints).
    savepoints: Option<crossbeam_channel::Sender<checkpointing::SavepointRequest>>,
    /// Per-subtask counters of the first attempt, readable while the job runs.
    pub metrics: Vec<SubtaskMetrics>,
}

/// A handle that can cancel a job from another thread (a signal handler, a shell).
#[derive(Clone)]
pub struct CancelHandle {
    user_cancel: Arc<AtomicBool>,
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.user_cancel.store(true, Ordering::SeqCst);
    }
}

/// A handle that asks a job for savepoints from another thread.
#[derive(Clone)]
pub struct SavepointHandle {
    /// `None` when the job does not checkpoint.
    requests: Option<crossbeam_channel::Sender<checkpointing::SavepointRequest>>,
}

impl SavepointHandle {
    /// As [`JobHandle::trigger_savepoint`].
    pub fn trigger(
        &self,
        target: std::path::PathBuf,
        stop: bool,
    ) -> crossbeam_channel::Receiver<std::result::Result<std::path::PathBuf, String>> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let request = checkpointing::SavepointRequest {
            target,
            stop,
            reply,
        };
        match &self.requests {
            Some(tx) => {
                if let Err(e) = tx.send(request) {
                    let _ = e.0.reply.send(Err("the job has ended".into()));
                }
            }
            None => {
                let _ = request.reply.send(Err(
                    "savepoints need checkpointing: set 'execution.checkpointing.interval'".into(),
                ));
            }
        }
        answer
    }
}

/// How a job ended without failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every source was exhausted and every task finished.
    Finished,
    /// The job was cancelled.
    Cancelled,
}

impl JobHandle {
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            user_cancel: self.user_cancel.clone(),
        }
    }

    /// Cancels the job; `wait` then returns `Cancelled`.
    pub fn cancel(&self) {
        self.cancel_handle().cancel();
    }

    /// Asks the job for a savepoint in a new directory inside `target` (Flink's
    /// `savepoint-<jobid6>-<random>`), stopping the job once it completed when `stop`
    /// (stop-with-savepoint). The answer arrives on the returned channel: the savepoint's
    /// directory, or Flink's message for why it failed. Savepoints need a job that checkpoints.
    pub fn trigger_savepoint(
        &self,
        target: std::path::PathBuf,
        stop: bool,
    ) -> crossbeam_channel::Receiver<std::result::Result<std::path::PathBuf, String>> {
        self.savepoint_handle().trigger(target, stop)
    }

    /// A handle to ask for savepoints from another thread.
    pub fn savepoint_handle(&self) -> SavepointHandle {
        SavepointHandle {
            requests: self.savepoints.clone(),
        }
    }

    /// True once the job ended (after its last attempt).
    pub fn is_finished(&self) -> bool {
        self.supervisor.is_finished()
    }

    /// Waits for the job; its error if it failed for good.
    pub fn wait(self) -> Result<JobOutcome> {
        self.supervisor
            .join()
            .unwrap_or_else(|_| Err(EngineError::internal("the job supervisor panicked")))
    }
}

/// One attempt at running the graph.
struct Attempt {
    threads: Vec<JoinHandle<()>>,
    shared: Arc<JobShared>,
    metrics: Vec<SubtaskMetrics>,
}

impl Attempt {
    /// Waits for every thread of the attempt; its first error, if any.
    fn wait(self) -> Option<EngineError> {
        for t in self.threads {
            // A task's panic was caught inside the thread; join only fails if that machinery did.
            let _ = t.join();
        }
        self.shared.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// Starts `graph` and supervises it: a failed attempt is restarted (from the latest completed
/// checkpoint when the job checkpoints) as `settings.restart` allows.
pub fn start(graph: &DataflowGraph, settings: &RuntimeSettings) -> Result<JobHandle> {
    let settings = &with_restored_max_parallelism(graph, settings)?;
    if let Some(setup) = &settings.checkpointing {
        // A new run of the job: the record of an earlier run's end no longer applies.
        job_result::clear(&setup.job_dir)?;
    }
    let user_cancel = Arc::new(AtomicBool::new(false));
    let (savepoint_tx, savepoint_rx) = crossbeam_channel::unbounded();
    let checkpoint_ids = Arc::new(AtomicU64::new(0));
    let first = start_attempt(
        graph,
        settings,
        &user_cancel,
        &savepoint_rx,
        &checkpoint_ids,
    )?;
    // Other processes reach the job through its control socket while it runs.
    let control = settings
        .checkpointing
        .as_ref()
        .and_then(|setup| control::serve(&setup.job_dir, savepoint_tx.clone()));
    let metrics = first.metrics.clone();
    let checkpoints = settings.checkpointing.is_some();
    let graph = graph.clone();
    let settings = settings.clone();
    let cancel = user_cancel.clone();
    let supervisor = std::thread::Builder::new()
        .name("job-supervisor".into())
        .spawn(move || {
            let result = supervise(
                first,
                &graph,
                settings.clone(),
                &cancel,
                &savepoint_rx,
                &checkpoint_ids,
            );
            drop(control);
            let end = match &result {
                Ok(JobOutcome::Finished) => crate::checkpoint::JobEnd::Finished,
                Ok(JobOutcome::Cancelled) => crate::checkpoint::JobEnd::Cancelled,
                Err(_) => crate::checkpoint::JobEnd::Failed,
            };
            retire_checkpoints(&settings, end);
            result
        })
        .map_err(|e| EngineError::io("cannot start the job supervisor", e))?;
    Ok(JobHandle {
        supervisor,
        user_cancel,
        savepoints: checkpoints.then_some(savepoint_tx),
        metrics,
    })
}

/// `settings` with the number of key groups of the checkpoint the job restores from, as Flink
/// assigns state: a max parallelism the user did not set is taken from the snapshot, one the user
/// set must match it, and no operator may then run at a higher parallelism.
fn with_restored_max_parallelism(
    graph: &DataflowGraph,
    settings: &RuntimeSettings,
) -> Result<RuntimeSettings> {
    let restore = settings
        .checkpointing
        .as_ref()
        .and_then(|c| c.restore.as_ref());
    let Some(restored) = restore.and_then(|r| r.max_parallelism) else {
        return Ok(settings.clone());
    };
    // Flink names the job vertex whose state it assigns: the first operator with state.
    let vertex = |node: &crate::graph::Node| format!("{} ({:032x})", node.name, node.id);
    let with_state: Vec<&crate::graph::Node> = graph
        .nodes
        .iter()
        .filter(|n| restore.is_some_and(|r| r.parallelism_of(n.id) > 0))
        .collect();
    let Some(first) = with_state.first() else {
        return Ok(settings.clone());
    };
    let max = crate::checkpoint::rescale::max_parallelism_to_restore(
        restored,
        settings.max_parallelism,
        settings.max_parallelism_explicit,
        &vertex(first),
    )
    .map_err(EngineError::data)?;
    for node in &with_state {
        crate::checkpoint::rescale::check_parallelism(
            max,
            node.parallelism,
            &format!("{:032x}", node.id),
        )
        .map_err(EngineError::data)?;
    }
    let mut adjusted = settings.clone();
    adjusted.max_parallelism = max;
    Ok(adjusted)
}

/// Deletes the job's completed checkpoints when its retention does not keep them for this end
/// (`execution.checkpointing.externalized-checkpoint-retention`). The statistics file stays.
fn retire_checkpoints(settings: &RuntimeSettings, end: crate::checkpoint::JobEnd) {
    let Some(setup) = &settings.checkpointing else {
        return;
    };
    // Every checkpoint that included a final state has its own link to its file.
    let _ = std::fs::remove_dir_all(setup.job_dir.join(checkpointing::FINAL_STATE_DIR));
    if setup.config.retention.keeps(end) {
        return;
    }
    if end == crate::checkpoint::JobEnd::Finished {
        // The record goes first: a process killed while the checkpoints are discarded must not
        // look like one killed mid-job, or `--resume latest` would run the job again.
        let written = checkpointing::completed_checkpoints(&setup.job_dir).and_then(|c| {
            let result = job_result::JobResult {
                final_checkpoint: c.first().map_or(0, |(id, _)| *id),
                finished_ms: settings.clock.now_millis(),
            };
            job_result::write(&setup.job_dir, &result)
        });
        if let Err(e) = written {
            eprintln!("streamsql: the job's checkpoints are kept: {e}");
            return;
        }
    }
    let completed = match checkpointing::completed_checkpoints(&setup.job_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("streamsql: the job's checkpoints are kept: {e}");
            return;
        }
    };
    let mut all_gone = true;
    for (_, dir) in completed {
        if let Err(e) = checkpointing::discard_checkpoint(&dir) {
            all_gone = false;
            eprintln!(
                "streamsql: cannot delete checkpoint '{}': {e}",
                dir.display()
            );
        }
    }
    if all_gone {
        // No checkpoint is left to use the files incremental checkpoints shared.
        let shared = setup.job_dir.join(subtask_state::SHARED_DIR);
        if let Err(e) = streamsql_storage::file::remove_dir_all(&shared) {
            eprintln!("streamsql: cannot delete '{}': {e}", shared.display());
        }
        // Nor any checkpoint for the task-local copies to stand for.
        if let Some(local) = &settings.state_backend.local_recovery {
            let local = local_state::job_dir(&local.root, &setup.job_dir);
            if let Err(e) = streamsql_storage::file::remove_dir_all(&local) {
                eprintln!("streamsql: cannot delete '{}': {e}", local.display());
            }
        }
    }
}

fn supervise(
    mut attempt: Attempt,
    graph: &DataflowGraph,
    settings: RuntimeSettings,
    user_cancel: &Arc<AtomicBool>,
    savepoints: &crossbeam_channel::Receiver<checkpointing::SavepointRequest>,
    checkpoint_ids: &Arc<AtomicU64>,
) -> Result<JobOutcome> {
    let mut strategy = settings.restart.clone();
    loop {
        let error = attempt.wait();
        if user_cancel.load(Ordering::SeqCst) {
            return Ok(JobOutcome::Cancelled);
        }
        let Some(error) = error else {
            return Ok(JobOutcome::Finished);
        };
        let Some(s) = strategy.as_mut() else {
            return Err(error);
        };
        let failed_at_ms = settings.clock.now_millis();
        match s.on_failure(failed_at_ms) {
            crate::checkpoint::RestartDecision::Fail { message } => {
                return Err(EngineError::Task {
                    message: format!("{message}\nCaused by: {error}"),
                });
            }
            crate::checkpoint::RestartDecision::Restart { delay_ms, .. } => {
                eprintln!("streamsql: the job failed ({error}); restarting in {delay_ms} ms");
                let until = std::time::Instant::now()
                    + Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0));
                while std::time::Instant::now() < until {
                    if user_cancel.load(Ordering::SeqCst) {
                        return Ok(JobOutcome::Cancelled);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // The strategy merges a failure at or before the due millisecond into the one
                // that scheduled the restart (Flink's `now <= nextRestartTimestamp`): start the
                // attempt only once that millisecond has passed, so its own failures count. The
                // wait is bounded in wall time for clocks that do not advance by themselves.
                let due_ms = failed_at_ms.saturating_add(delay_ms);
                let bound = std::time::Instant::now() + Duration::from_millis(5);
                while settings.clock.now_millis() <= due_ms && std::time::Instant::now() < bound {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut next = settings.clone();
                if let Some(setup) = next.checkpointing.as_mut() {
                    if let Some(latest) = checkpointing::latest_checkpoint(&setup.job_dir)? {
                        eprintln!(
                            "streamsql: restoring from checkpoint {} ({})",
                            latest.checkpoint_id,
                            latest.path.display()
                        );
                        setup.restore = Some(Arc::new(latest));
                    }
                }
                attempt = start_attempt(graph, &next, user_cancel, savepoints, checkpoint_ids)?;
            }
        }
    }
}

/// Starts every subtask of `graph` on its own thread; `checkpoint_ids` is the job's checkpoint
/// id counter, which every attempt continues.
fn start_attempt(
    graph: &DataflowGraph,
    settings: &RuntimeSettings,
    user_cancel: &Arc<AtomicBool>,
    savepoints: &crossbeam_channel::Receiver<checkpointing::SavepointRequest>,
    checkpoint_ids: &Arc<AtomicU64>,
) -> Result<Attempt> {
    let restoring = settings
        .checkpointing
        .as_ref()
        .and_then(|c| c.restore.as_ref())
        .map(|r| RestoreProgress {
            checkpoint_id: r.checkpoint_id,
            started: std::time::Instant::now(),
            remaining: std::sync::atomic::AtomicUsize::new(
                graph
                    .nodes
                    .iter()
                    .filter(|n| matches!(n.kind, crate::graph::NodeKind::Operator(_)))
                    .map(|n| n.parallelism)
                    .sum(),
            ),
            bytes: std::sync::atomic::AtomicU64::new(0),
        });
    let shared = Arc::new(JobShared {
        cancel: Arc::new(AtomicBool::new(false)),
        user_cancel: user_cancel.clone(),
        error: Mutex::new(None),
        restore: restoring,
    });
    if let Some(setup) = &settings.checkpointing {
        // Final states of an earlier attempt are in the checkpoints that included them.
        let _ = std::fs::remove_dir_all(setup.job_dir.join(checkpointing::FINAL_STATE_DIR));
    }
    let n = graph.nodes.len();
    // receivers[node][subtask] = (channel receiver, input index)
    let mut receivers: Vec<Vec<Vec<TaskInput>>> = graph
        .nodes
        .iter()
        .map(|node| (0..node.parallelism).map(|_| Vec::new()).collect())
        .collect();
    // priority[node][subtask] = the priority paths of its inputs, in the order of `receivers`
    let mut priority: Vec<Vec<Vec<PriorityInput>>> = graph
        .nodes
        .iter()
        .map(|node| (0..node.parallelism).map(|_| Vec::new()).collect())
        .collect();
    // Which tasks take unaligned checkpoints: all inputs of a task support them, or none does.
    let unaligned: Vec<bool> = (0..graph.nodes.len())
        .map(|i| {
            settings
                .checkpointing
                .as_ref()
                .is_some_and(|c| c.config.unaligned)
                && channel_state::supports_unaligned(
                    graph
                        .edges
                        .iter()
                        .filter(|e| e.to == i)
                        .map(|e| &e.partitioning),
                )
        })
        .collect();
    // writers[node][subtask] = edge writers
    let mut writers: Vec<Vec<Vec<EdgeWriter>>> = graph
        .nodes
        .iter()
        .map(|node| (0..node.parallelism).map(|_| Vec::new()).collect())
        .collect();
    for edge in &graph.edges {
        if edge.from >= n || edge.to >= n || edge.from >= edge.to {
            return Err(EngineError::internal(format!(
                "edge {} -> {} is not in topological order",
                edge.from, edge.to
            )));
        }
        let up = graph.nodes[edge.from].parallelism;
        let down = graph.nodes[edge.to].parallelism;
        if edge.partitioning == Partitioning::Forward && up != down {
            return Err(EngineError::internal(format!(
                "forward edge between parallelism {up} and {down}"
            )));
        }
        if edge.partitioning == Partitioning::Global && down != 1 {
            return Err(EngineError::internal(
                "global edge into a parallel operator",
            ));
        }
        for (u, subtask_writers) in writers[edge.from].iter_mut().enumerate().take(up) {
            let reach: Vec<usize> = match edge.partitioning {
                Partitioning::Forward => vec![u],
                _ => (0..down).collect(),
            };
            let mut targets = Vec::with_capacity(reach.len());
            let mut priority_targets = Vec::new();
            for d in reach {
                let (tx, rx) = bounded(settings.channel_capacity.max(1));
                targets.push(tx);
                receivers[edge.to][d].push((rx, edge.input));
                let path = unaligned[edge.to].then(|| bounded(PRIORITY_CAPACITY));
                priority[edge.to][d].push(path.map(|(ptx, prx)| {
                    priority_targets.push(ptx);
                    prx
                }));
            }
            let writer =
                EdgeWriter::new(edge.partitioning.clone(), targets, settings.max_parallelism);
            subtask_writers.push(if priority_targets.is_empty() {
                writer
            } else {
                writer.with_priority(priority_targets)
            });
        }
    }

    // Checkpointing: an event channel to the coordinator, a command channel to every subtask.
    let ckpt_setup = settings.checkpointing.clone();
    let (event_tx, event_rx) = crossbeam_channel::unbounded();
    let mut source_cmds = Vec::new();
    let mut all_cmds = Vec::new();
    let mut task_keys = Vec::new();
    if let Some(setup) = &ckpt_setup {
        if let Some(restore) = &setup.restore {
            for key in restore.states.keys() {
                // At another parallelism an operator's state is redistributed over its subtasks.
                let known = graph.nodes.iter().any(|n| n.id == key.operator_id);
                if !known && !setup.allow_non_restored_state {
                    return Err(EngineError::data(format!(
                        "Failed to rollback to checkpoint/savepoint {}. Cannot map checkpoint/savepoint state for operator {:032x} subtask {} to the new program, because the operator is not available in the new program. If you want to allow to skip this, you can set the --allowNonRestoredState option on the CLI.",
                        restore.path.display(),
                        key.operator_id,
                        key.subtask
                    )));
                }
            }
        }
    }

    let mut threads = Vec::new();
    let mut all_metrics = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let rescaled = ckpt_setup
            .as_ref()
            .and_then(|s| s.restore.as_ref())
            .and_then(|r| rescaled_restore(r, node, settings.max_parallelism));
        let node_writers = std::mem::take(&mut writers[i]);
        let node_receivers = std::mem::take(&mut receivers[i]);
        let mut node_priority = std::mem::take(&mut priority[i]).into_iter();
        for (subtask, (edge_writers, inputs)) in
            node_writers.into_iter().zip(node_receivers).enumerate()
        {
            let priority_inputs = node_priority.next().unwrap_or_default();
            let metrics = Arc::new(TaskMetrics::new());
            let ctx = TaskContext {
                operator_id: node.id,
                operator_name: node.name.clone(),
                subtask_index: subtask,
                parallelism: node.parallelism,
                max_parallelism: settings.max_parallelism,
                metrics: metrics.clone(),
                state: state_context(settings, node, subtask, &metrics),
            };
            all_metrics.push(SubtaskMetrics {
                node: i,
                operator_id: node.id,
                operator_name: node.name.clone(),
                subtask,
                metrics,
            });
            let router = OutputRouter::new(
                edge_writers,
                shared.clone(),
                settings.batch_size,
                settings.buffer_timeout,
            );
            let kind = node.kind.clone();
            let shared_t = shared.clone();
            let settings_t = settings.clone();
            let task_ckpt = ckpt_setup.as_ref().map(|setup| {
                let key = crate::checkpoint::TaskKey {
                    operator_id: node.id,
                    subtask,
                };
                let (tx, rx) = crossbeam_channel::bounded(64);
                if matches!(node.kind, NodeKind::Source(_)) {
                    source_cmds.push(tx.clone());
                }
                all_cmds.push(tx);
                task_keys.push(key);
                task::TaskCheckpointing {
                    key,
                    commands: rx,
                    events: event_tx.clone(),
                    restore: setup
                        .restore
                        .as_ref()
                        .filter(|_| rescaled.is_none())
                        .and_then(|r| r.states.get(&key).cloned()),
                    rescaled: rescaled.clone(),
                    restore_dir: setup
                        .restore
                        .as_ref()
                        .map(|r| r.checkpoint_dir())
                        .unwrap_or_default(),
                    mode: setup.config.mode,
                    unaligned: crate::checkpoint::in_flight::UnalignedPolicy {
                        enabled: unaligned[i],
                        aligned_timeout_ms: i64::try_from(
                            setup.config.aligned_checkpoint_timeout.as_millis(),
                        )
                        .unwrap_or(i64::MAX),
                    },
                    after_finish: setup.config.checkpoints_after_tasks_finish,
                    job_dir: setup.job_dir.clone(),
                    compression: setup.config.compression,
                    inline_threshold: setup.config.inline_threshold,
                    write_buffer_size: setup.config.write_buffer_size,
                    incremental: settings.state_backend.incremental,
                    chain: Arc::default(),
                    local: settings.state_backend.local_recovery.as_ref().map(|local| {
                        Arc::new(local_state::LocalCopies::new(
                            local_state::job_dir(&local.root, &setup.job_dir),
                            node.id,
                            subtask,
                            local.max_size,
                        ))
                    }),
                    restore_local: settings
                        .state_backend
                        .local_recovery
                        .as_ref()
                        .zip(setup.restore.as_ref())
                        .filter(|(_, r)| !r.is_savepoint)
                        .and_then(|(local, r)| {
                            let dir = r.checkpoint_dir();
                            dir.parent()
                                .map(|job| local_state::job_dir(&local.root, job))
                        }),
                }
            });
            let spawned = std::thread::Builder::new()
                .name(ctx.thread_name())
                .spawn(move || {
                    task::run(
                        kind,
                        &ctx,
                        inputs,
                        priority_inputs,
                        router,
                        &shared_t,
                        &settings_t,
                        task_ckpt,
                    )
                });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    shared.fail(EngineError::io("cannot start a task thread", e));
                    break;
                }
            }
        }
    }
    drop(event_tx);
    if let Some(setup) = ckpt_setup {
        let coordinator = checkpointing::Coordinator {
            setup,
            tasks: task_keys,
            max_parallelism: settings.max_parallelism,
            sources: source_cmds,
            all: all_cmds,
            events: event_rx,
            clock: settings.clock.clone(),
            operator_names: graph.nodes.iter().map(|n| (n.id, n.name.clone())).collect(),
            savepoints: savepoints.clone(),
            next_id: checkpoint_ids.clone(),
            shared_refs: Default::default(),
        };
        let shared_c = shared.clone();
        match std::thread::Builder::new()
            .name("checkpoint-coordinator".into())
            .spawn(move || coordinator.run(&shared_c))
        {
            Ok(h) => threads.push(h),
            Err(e) => shared.fail(EngineError::io(
                "cannot start the checkpoint coordinator",
                e,
            )),
        }
    }
    Ok(Attempt {
        threads,
        shared,
        metrics: all_metrics,
    })
}

/// The states of every old subtask of `node` when the checkpoint was taken at another parallelism
/// than `node` now runs at; `None` when the states map subtask to subtask (or there are none).
fn rescaled_restore(
    restore: &checkpointing::RestoredCheckpoint,
    node: &crate::graph::Node,
    max_parallelism: usize,
) -> Option<Arc<rescale::RescaledRestore>> {
    let old = restore.parallelism_of(node.id);
    if old == 0 || old == node.parallelism {
        return None;
    }
    let states = (0..old)
        .map(|subtask| {
            let key = crate::checkpoint::TaskKey {
                operator_id: node.id,
                subtask,
            };
            restore.states.get(&key).cloned()
        })
        .collect();
    Some(Arc::new(rescale::RescaledRestore {
        old: states,
        max_parallelism,
    }))
}

/// Runs `graph` to the end on the calling thread's behalf (blocking).
pub fn run(graph: &DataflowGraph, settings: &RuntimeSettings) -> Result<JobOutcome> {
    start(graph, settings)?.wait()
}
