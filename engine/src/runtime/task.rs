//! The task loop of one subtask: receive, call the operator's hooks, route what it emits.
//!
//! Invariants: messages of one channel are handled in order; the operator sees the combined
//! watermark of its inputs only when it advances; on the end of every input it sees the final
//! watermark (+infinity), then `on_end_of_input`, and end-of-stream goes downstream last. No call
//! here blocks for longer than `POLL` without looking at the cancel flag.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select};

use super::channel_state::ChannelState;
use super::checkpointing::{TaskCommand, TaskEvent, FINAL_CHECKPOINT};
use super::exchange::OutputRouter;
use super::local_state::LocalCopies;
use super::subtask_state::{
    write_keyed, ChainFile, KeyedHandle, SubtaskState, WriteSettings, SHARED_DIR,
};
use super::watermark::{ValveOutput, WatermarkValve};
use super::{JobShared, RuntimeSettings};
use crate::checkpoint::in_flight::{Announced, InFlightTracker, UnalignedPolicy};
use crate::checkpoint::{
    Acknowledgement, AlignerAction, BarrierAligner, CheckpointFailureReason, CheckpointingMode,
    TaskKey,
};
use crate::connectors::SourceStatus;
use crate::error::{EngineError, Result};
use crate::graph::NodeKind;
use crate::message::{CheckpointBarrier, Message, PriorityBarrier, SavepointTarget};
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, Output, TaskContext};
use crate::state::KeyedDelta;

/// The longest a task waits before it checks for cancellation.
const POLL: Duration = Duration::from_millis(50);
/// Keys of keyed state a task encodes between two batches while a checkpoint's flush is in
/// flight: about a millisecond of work, so the flush never holds up records for long.
const FLUSH_CHUNK: usize = 4096;

/// A snapshot whose synchronous part is done and whose keyed-state flush is still being encoded.
pub(crate) struct InFlightSnapshot {
    id: u64,
    operator: Vec<u8>,
    savepoint: Option<SavepointTarget>,
    timing: SnapshotTiming,
    sync: Duration,
    async_start: Instant,
    delta: KeyedDelta,
    /// The keyed-state flush is complete.
    flushed: bool,
    /// The in-flight data the snapshot waits for.
    channels: ChannelWait,
}

/// The in-flight data a snapshot includes: none (aligned), still being recorded (unaligned: the
/// snapshot is written once every input reached the barrier), or complete.
pub(crate) enum ChannelWait {
    None,
    Recording,
    Done(ChannelState),
}

/// How long an idle source sleeps between polls.
const IDLE_SLEEP: Duration = Duration::from_millis(2);

/// A subtask's part in checkpointing.
pub(crate) struct TaskCheckpointing {
    pub key: TaskKey,
    pub commands: Receiver<TaskCommand>,
    pub events: crossbeam_channel::Sender<TaskEvent>,
    /// The subtask's state (an encoded [`SubtaskState`]) to start from.
    pub restore: Option<Vec<u8>>,
    /// The states of every old subtask when the checkpoint was taken at another parallelism
    /// (then `restore` is `None`).
    pub rescaled: Option<Arc<super::rescale::RescaledRestore>>,
    /// The directory of the checkpoint restored from: keyed-state files are named relative to it.
    pub restore_dir: PathBuf,
    pub mode: CheckpointingMode,
    /// When this task takes checkpoints unaligned (disabled: its inputs carry in-band barriers).
    pub unaligned: UnalignedPolicy,
    pub after_finish: bool,
    /// `<execution.checkpointing.dir>/<job-id>`: checkpoint n's files go to `chk-<n>/` below it.
    pub job_dir: PathBuf,
    pub compression: bool,
    pub inline_threshold: usize,
    pub write_buffer_size: usize,
    /// `execution.checkpointing.incremental`: checkpoints write deltas chained in `shared/`.
    pub incremental: bool,
    /// The subtask's current chain (a full snapshot or compacted file, and its deltas), extended
    /// by each chained snapshot's continuation, which run in checkpoint order, and shortened by
    /// background compactions.
    pub chain: Arc<std::sync::Mutex<super::compaction::TaskChain>>,
    /// `execution.state-recovery.from-local`: the subtask's task-local copies of keyed state.
    pub local: Option<Arc<LocalCopies>>,
    /// Where the local copies of the checkpoint restored from are (`<local dir>/<job id>`), when
    /// recovery reads them first.
    pub restore_local: Option<PathBuf>,
}

impl TaskCheckpointing {
    /// A source after the barrier of stop-with-savepoint `id`: emits nothing until the savepoint
    /// completed (true: the job stops) or failed (false: the job goes on).
    fn await_stop(&self, id: u64, shared: &JobShared) -> Result<bool> {
        loop {
            if shared.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            match self.commands.recv_timeout(POLL) {
                Ok(TaskCommand::Complete(done)) if done >= id => return Ok(true),
                Ok(TaskCommand::Abort(aborted)) if aborted == id => return Ok(false),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(EngineError::Cancelled),
            }
        }
    }

    /// The end of a task whose last snapshot is on its way to the coordinator (its final state,
    /// or a stop-with-savepoint): wait until checkpoint `id` (or a later one) completed, calling
    /// `notify` for every completion seen.
    fn await_completion(
        &self,
        id: u64,
        shared: &JobShared,
        notify: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        loop {
            if shared.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            match self.commands.recv_timeout(POLL) {
                Ok(TaskCommand::Complete(done)) => {
                    self.prune_local_copies(done);
                    notify(done)?;
                    if done >= id {
                        return Ok(());
                    }
                }
                Ok(TaskCommand::Trigger(_) | TaskCommand::Abort(_)) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(EngineError::Cancelled),
            }
        }
    }

    /// Checkpoint `id` completed: the local copies of the checkpoints it subsumes go.
    fn prune_local_copies(&self, id: u64) {
        if let Some(local) = self.local.as_ref().filter(|_| id != FINAL_CHECKPOINT) {
            local.on_checkpoint_complete(id);
        }
    }

    /// Takes a snapshot of `op` for checkpoint `id` (`FINAL_CHECKPOINT` for the final state).
    /// The synchronous part (operator state, and the O(1) beginning of the keyed-state flush)
    /// runs here, then `after_sync` (forward the barrier). The keyed-state flush then continues
    /// in chunks between batches ([`TaskCheckpointing::advance`]); once complete, the rest of the
    /// asynchronous part (keyed state applied, snapshotted, encoded and written on rayon's pool)
    /// runs and acknowledges. A snapshot still flushing in `in_flight` is finished first.
    #[allow(clippy::too_many_arguments)]
    fn snapshot_operator(
        &self,
        op: &mut dyn Operator,
        ctx: &TaskContext,
        in_flight: &mut Option<InFlightSnapshot>,
        id: u64,
        savepoint: Option<&SavepointTarget>,
        timing: SnapshotTiming,
        channels: ChannelWait,
        after_sync: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.advance(op, ctx, in_flight, usize::MAX)?;
        if let Some(f) = in_flight.as_mut() {
            // An older snapshot still recording in-flight data is superseded (its checkpoint was
            // declined when the newer barrier arrived): it is written without it.
            if matches!(f.channels, ChannelWait::Recording) {
                f.channels = ChannelWait::None;
            }
            self.advance(op, ctx, in_flight, usize::MAX)?;
        }
        let start = Instant::now();
        let operator = op.snapshot_state(id)?;
        op.begin_keyed_snapshot()?;
        let sync = start.elapsed();
        after_sync()?;
        *in_flight = Some(InFlightSnapshot {
            id,
            operator,
            savepoint: savepoint.cloned(),
            timing,
            sync,
            // Flink's asynchronous duration: from the end of the synchronous part until the
            // state is written, including the flush, the wait for earlier snapshots of the
            // subtask and applying the flush to the store.
            async_start: Instant::now(),
            delta: KeyedDelta::new(),
            flushed: false,
            channels,
        });
        let budget = if id == FINAL_CHECKPOINT {
            usize::MAX
        } else {
            FLUSH_CHUNK
        };
        self.advance(op, ctx, in_flight, budget)
    }

    /// Encodes up to `budget` more keys of the snapshot in flight; once its flush is complete,
    /// hands it to the asynchronous part.
    fn advance(
        &self,
        op: &mut dyn Operator,
        ctx: &TaskContext,
        in_flight: &mut Option<InFlightSnapshot>,
        budget: usize,
    ) -> Result<()> {
        let Some(f) = in_flight.as_mut() else {
            return Ok(());
        };
        if !f.flushed {
            f.flushed = op.continue_keyed_snapshot(budget, &mut f.delta)?;
        }
        if f.flushed && !matches!(f.channels, ChannelWait::Recording) {
            if let Some(f) = in_flight.take() {
                self.submit(ctx, f);
            }
        }
        Ok(())
    }

    /// The asynchronous part of a snapshot whose keyed-state flush is complete.
    fn submit(&self, ctx: &TaskContext, f: InFlightSnapshot) {
        let InFlightSnapshot {
            id,
            operator,
            savepoint,
            timing,
            sync,
            async_start,
            delta,
            flushed: _,
            channels,
        } = f;
        let mut timing = timing;
        let in_flight = match channels {
            ChannelWait::Done(state) => {
                timing.unaligned = true;
                timing.in_flight_bytes = state.data_size();
                if state.is_empty() {
                    Vec::new()
                } else {
                    state.encode()
                }
            }
            ChannelWait::None | ChannelWait::Recording => Vec::new(),
        };
        let savepoint = savepoint.as_ref();
        let store = match &ctx.state.store {
            Some(store) if !delta.is_empty() || store.holds_state() => store,
            _ => {
                let state = SubtaskState {
                    operator,
                    keyed: KeyedHandle::None,
                    in_flight,
                };
                self.send(id, state, 0, sync, async_start.elapsed(), timing);
                return;
            }
        };
        let name = format!("{:016x}-{}.state", self.key.operator_id, self.key.subtask);
        // Savepoints and final states are full snapshots outside the incremental chain.
        let chained = self.incremental && savepoint.is_none() && id != FINAL_CHECKPOINT;
        // A savepoint keeps every file in its own directory, so that it can be moved; a chained
        // snapshot goes to the job's `shared/` directory, where later checkpoints find it.
        let (checkpoint_dir, file_name) = match savepoint {
            Some(sp) => (Some(sp.dir.as_ref().clone()), name),
            None if chained => (
                Some(self.job_dir.clone()),
                format!(
                    "{SHARED_DIR}/{:016x}-{}-{id}.state",
                    self.key.operator_id, self.key.subtask
                ),
            ),
            None => (
                Some(if id == FINAL_CHECKPOINT {
                    self.job_dir.join(super::checkpointing::FINAL_STATE_DIR)
                } else {
                    self.job_dir.join(format!("chk-{id}"))
                }),
                format!("taskowned/{name}"),
            ),
        };
        let settings = WriteSettings {
            checkpoint_dir,
            file_name,
            // A chain's files are shared by later checkpoints: always files.
            inline_threshold: if chained { 0 } else { self.inline_threshold },
            write_buffer_size: self.write_buffer_size,
        };
        let events = self.events.clone();
        let key = self.key;
        let chain = Arc::clone(&self.chain);
        // Local copies are of periodic checkpoints only: never of savepoints or final states.
        let local = self
            .local
            .clone()
            .filter(|_| savepoint.is_none() && id != FINAL_CHECKPOINT);
        let compression = streamsql_storage::Compression::from_flag(self.compression);
        let chain_store = Arc::clone(store);
        let compaction = chained.then(|| super::compaction::Compaction {
            store: Arc::clone(store),
            chain: Arc::clone(&self.chain),
            job_dir: self.job_dir.clone(),
            owner: format!("{:016x}-{}", self.key.operator_id, self.key.subtask),
            compression,
            write_buffer_size: self.write_buffer_size,
            local: local.clone(),
        });
        store.submit_snapshot(
            id,
            delta,
            !chained,
            compression,
            Box::new(move |snapshot: crate::state::store::SnapshotResult| {
                let written = snapshot
                    .map_err(|e| EngineError::Task { message: e })
                    .and_then(|s| {
                        let full = s.kind == streamsql_storage::SnapshotKind::Full;
                        let w = write_keyed(&s, &settings);
                        if chained {
                            let mut guard = super::compaction::lock(&chain);
                            if w.is_err() {
                                // No later delta may follow the missing file.
                                guard.broken = true;
                                chain_store.restart_chain();
                            } else if full {
                                guard.broken = false;
                            } else if guard.broken {
                                return Err(EngineError::Task {
                                    message: "the incremental chain lacks the file of a failed \
                                              checkpoint; a later checkpoint restarts it"
                                        .into(),
                                });
                            }
                        }
                        w.map(|w| (w, full, s))
                    })
                    .and_then(|(w, full, s)| {
                        if !chained {
                            if let (Some(local), KeyedHandle::File { path, .. }) =
                                (&local, &w.keyed)
                            {
                                let rel = format!("chk-{id}/{path}");
                                local.keep(id, &rel, &s.bytes, vec![rel.clone()]);
                            }
                            return Ok((w.keyed, w.state_size, None));
                        }
                        let KeyedHandle::File { path, size } = w.keyed else {
                            return Err(EngineError::internal(
                                "a chained snapshot was not written to a file",
                            ));
                        };
                        let mut guard = super::compaction::lock(&chain);
                        if let Some(local) = &local {
                            let kept = if full { &[][..] } else { &guard.files[..] };
                            let uses = kept.iter().map(|f| f.path.clone()).chain([path.clone()]);
                            local.keep(id, &path, &s.bytes, uses.collect());
                        }
                        // Flink's full size of an incremental checkpoint: every file it uses;
                        // its checkpointed size: the files the previous one did not use (its
                        // delta, and a compacted file it is the first to use).
                        let (files, total, added) = guard.push(id, ChainFile { path, size }, full);
                        if let Some(c) = compaction {
                            c.start_if_due(&mut guard);
                        }
                        Ok((KeyedHandle::Chain(files), total, Some(added)))
                    });
                match written {
                    Ok((keyed, keyed_size, added)) => {
                        let state = SubtaskState {
                            operator,
                            keyed,
                            in_flight,
                        };
                        send_state(
                            &events,
                            key,
                            id,
                            state,
                            keyed_size,
                            added,
                            sync,
                            async_start.elapsed(),
                            timing,
                        );
                    }
                    Err(e) if id == FINAL_CHECKPOINT => {
                        let _ = events.send(TaskEvent::FinalStateFailed {
                            message: e.to_string(),
                        });
                    }
                    Err(e) => {
                        report_async_failure(&format!(
                            "checkpoint {id}: asynchronous part failed: {e}"
                        ));
                        let _ = events.send(TaskEvent::Decline {
                            checkpoint_id: id,
                            reason: CheckpointFailureReason::CheckpointAsyncException,
                        });
                    }
                }
            }),
        );
    }

    fn send(
        &self,
        id: u64,
        state: SubtaskState,
        keyed_size: u64,
        sync: Duration,
        async_duration: Duration,
        timing: SnapshotTiming,
    ) {
        send_state(
            &self.events,
            self.key,
            id,
            state,
            keyed_size,
            None,
            sync,
            async_duration,
            timing,
        );
    }
}

/// When a snapshot started relative to its barrier: Flink's alignment duration and start delay.
#[derive(Clone, Copy, Debug, Default)]
struct SnapshotTiming {
    alignment_ms: i64,
    start_delay_ms: i64,
    /// The snapshot was unaligned.
    unaligned: bool,
    /// Bytes of in-flight data it persisted.
    in_flight_bytes: u64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Hands a subtask's state to the coordinator: an acknowledgement of checkpoint `id`, or the
/// final state.
#[allow(clippy::too_many_arguments)]
fn send_state(
    events: &crossbeam_channel::Sender<TaskEvent>,
    key: TaskKey,
    id: u64,
    state: SubtaskState,
    keyed_size: u64,
    keyed_added: Option<u64>,
    sync: Duration,
    async_duration: Duration,
    timing: SnapshotTiming,
) {
    // `keyed_added`: the keyed bytes a chained checkpoint added (its delta, and a compacted file
    // it is the first to use); otherwise its keyed bytes are all new.
    let checkpointed_size = match keyed_added {
        Some(added) => (state.operator.len() + state.in_flight.len()) as u64 + added,
        None => state.checkpointed_size(),
    };
    let encoded = state.encode();
    let event = if id == FINAL_CHECKPOINT {
        TaskEvent::FinalState {
            task: key,
            state: encoded,
        }
    } else {
        TaskEvent::Ack {
            task: key,
            checkpoint_id: id,
            state: encoded,
            ack: Acknowledgement {
                state_size: state.operator.len() as u64 + keyed_size,
                checkpointed_size,
                sync_duration_ms: millis(sync),
                async_duration_ms: millis(async_duration),
                alignment_duration_ms: timing.alignment_ms,
                start_delay_ms: timing.start_delay_ms,
                // Flink's processed data: what was processed between the first and the last
                // barrier; of an unaligned snapshot that is its in-flight data.
                processed_data: timing.in_flight_bytes,
                persisted_data: timing.in_flight_bytes,
                unaligned: timing.unaligned,
            },
        }
    };
    let _ = events.send(event);
}

/// Reports a failure of an asynchronous part, which has no caller to return it to.
fn report_async_failure(message: &str) {
    eprintln!("streamsql: {message}");
}

/// Restores a freshly created operator from its encoded [`SubtaskState`]: operator state first,
/// then every keyed entry (through the subtask's store, which keeps the byte form). Returns the
/// bytes of state the checkpoint held for it, and its in-flight data (of an unaligned
/// checkpoint), which the task replays before live input.
fn restore_operator(
    op: &mut dyn Operator,
    ctx: &TaskContext,
    restore: Option<&[u8]>,
    checkpoint_dir: &Path,
    local_job_dir: Option<&Path>,
) -> Result<(u64, Option<ChannelState>)> {
    let state = match restore {
        Some(bytes) => SubtaskState::decode(bytes).map_err(|e| {
            EngineError::data(format!(
                "cannot restore {} from '{}': {e}",
                ctx.thread_name(),
                checkpoint_dir.display()
            ))
        })?,
        None => SubtaskState::empty(),
    };
    let keyed = state.load_keyed_preferring(checkpoint_dir, local_job_dir)?;
    crate::state::restore_operator(op, ctx.state.store.as_ref(), &state.operator, keyed)?;
    let channels = if state.in_flight.is_empty() {
        None
    } else {
        Some(ChannelState::decode(&state.in_flight).map_err(|e| {
            EngineError::data(format!(
                "cannot restore the in-flight data of {}: {e}",
                ctx.thread_name()
            ))
        })?)
    };
    Ok((state.checkpointed_size(), channels))
}

/// Runs one subtask to its end and records how it ended in `shared`. A failure (error or panic)
/// is recorded *before* this task's channels close, so that the tasks around it see the job
/// cancelled rather than a channel that vanished.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    kind: NodeKind,
    ctx: &TaskContext,
    inputs: Vec<(Receiver<Message>, usize)>,
    priority: Vec<Option<Receiver<PriorityBarrier>>>,
    mut router: OutputRouter,
    shared: &JobShared,
    settings: &RuntimeSettings,
    ckpt: Option<TaskCheckpointing>,
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
        NodeKind::Source(factory) => {
            let mut source = factory.create(ctx)?;
            if let Some((c, r)) = ckpt.as_ref().and_then(|c| Some(c).zip(c.rescaled.as_ref())) {
                super::rescale::restore_source(source.as_mut(), ctx, r, &c.restore_dir)?;
            } else if let Some(bytes) = ckpt.as_ref().and_then(|c| c.restore.as_deref()) {
                let state = SubtaskState::decode(bytes).map_err(|e| {
                    EngineError::data(format!("cannot restore {}: {e}", ctx.thread_name()))
                })?;
                source.restore_position(&state.operator)?;
            }
            run_source(source, &mut router, shared, settings, ckpt.as_ref())
        }
        NodeKind::Operator(factory) => {
            let mut op = factory.create(ctx)?;
            let mut replay = None;
            if let Some((c, r)) = ckpt.as_ref().and_then(|c| Some(c).zip(c.rescaled.as_ref())) {
                let bytes = super::rescale::restore_operator(
                    op.as_mut(),
                    ctx,
                    r,
                    &c.restore_dir,
                    c.restore_local.as_deref(),
                )?;
                shared.restored(bytes);
            } else if let Some(c) = &ckpt {
                // Always called when the job checkpoints, with an empty blob when there is no
                // state: a transactional sink then holds its output for checkpoints from the
                // first row on.
                let (bytes, channels) = restore_operator(
                    op.as_mut(),
                    ctx,
                    c.restore.as_deref(),
                    &c.restore_dir,
                    c.restore_local.as_deref(),
                )?;
                shared.restored(bytes);
                replay = channels;
            }
            let result = run_operator(
                &mut op,
                ctx,
                &inputs,
                priority,
                replay,
                &mut router,
                shared,
                settings,
                ckpt.as_ref(),
            );
            if result.is_ok() && settings.process_ends_with_job {
                crate::state::drop_keeping_state_memory(|| drop(op));
            }
            result
        }
    }));
    if let Some(c) = &ckpt {
        let _ = c.events.send(TaskEvent::Finished(c.key));
    }
    TaskMetrics::add(&ctx.metrics.records_out, router.records_out);
    match result {
        Ok(Ok(())) => {}
        // Another task failed or the user cancelled: nothing to add.
        Ok(Err(EngineError::Cancelled)) => shared.cancel.store(true, Ordering::SeqCst),
        Ok(Err(e)) => shared.fail(e),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            shared.fail(EngineError::Task {
                message: format!("task {} failed: {msg}", ctx.thread_name()),
            });
        }
    }
    // Only now do this task's channels close.
    drop(router);
    drop(inputs);
}

fn run_source(
    mut source: Box<dyn crate::connectors::Source>,
    router: &mut OutputRouter,
    shared: &JobShared,
    settings: &RuntimeSettings,
    ckpt: Option<&TaskCheckpointing>,
) -> Result<()> {
    let mut out = Output::new();
    let timer_every = settings.timer_interval.max(Duration::from_millis(1));
    let mut next_timer = Instant::now() + timer_every;
    loop {
        if shared.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let now = Instant::now();
        if now >= next_timer {
            next_timer = now + timer_every;
            source.on_timer(settings.clock.now_millis(), &mut out)?;
            router.emit(&mut out)?;
        }
        if let Some(c) = ckpt {
            // Between two polls every emitted row has been routed: the position and the
            // barrier sit exactly between the rows before and after it.
            while let Ok(command) = c.commands.try_recv() {
                if let TaskCommand::Trigger(barrier) = command {
                    let start = Instant::now();
                    let position = source.snapshot_position()?;
                    let sync = start.elapsed();
                    let start_delay = settings
                        .clock
                        .now_millis()
                        .saturating_sub(barrier.timestamp);
                    router.broadcast_barrier(&barrier)?;
                    let state = SubtaskState {
                        operator: position,
                        keyed: KeyedHandle::None,
                        in_flight: Vec::new(),
                    };
                    let timing = SnapshotTiming {
                        alignment_ms: 0,
                        start_delay_ms: start_delay.max(0),
                        ..SnapshotTiming::default()
                    };
                    c.send(barrier.id, state, 0, sync, Duration::ZERO, timing);
                    if barrier.stops() && c.await_stop(barrier.id, shared)? {
                        // The savepoint completed: the job ends here, without end of input.
                        router.broadcast(|| Message::Stop)?;
                        return Ok(());
                    }
                }
            }
        }
        let status = source.poll(&mut out, settings.batch_size)?;
        router.emit(&mut out)?;
        match status {
            SourceStatus::More => router.flush_if_due(Instant::now())?,
            SourceStatus::Idle => {
                router.flush_if_due(Instant::now())?;
                std::thread::sleep(IDLE_SLEEP);
            }
            SourceStatus::Finished => {
                // Downstream counts a finished channel's watermark as +infinity, which is the
                // final watermark Flink's bounded sources emit.
                router.broadcast(|| Message::EndOfStream)?;
                if let Some(c) = ckpt {
                    let state = SubtaskState {
                        operator: source.snapshot_position()?,
                        keyed: KeyedHandle::None,
                        in_flight: Vec::new(),
                    };
                    c.send(
                        FINAL_CHECKPOINT,
                        state,
                        0,
                        Duration::ZERO,
                        Duration::ZERO,
                        SnapshotTiming::default(),
                    );
                    c.await_completion(FINAL_CHECKPOINT, shared, &mut |_| Ok(()))?;
                }
                return Ok(());
            }
        }
    }
}

/// The unaligned-checkpoint side of a task whose inputs have priority paths: the barriers
/// announced on them, the in-flight data being recorded, the alignment timer, and a message
/// taken from a channel whose barrier turned out to be before it (held until the channel
/// unblocks).
struct UnalignedInputs {
    policy: UnalignedPolicy,
    priority: Vec<Option<Receiver<PriorityBarrier>>>,
    tracker: InFlightTracker,
    /// Messages taken from a channel and not yet processed: copied ahead as in-flight data, or
    /// read just before the channel's barrier turned out to be before them.
    held: Vec<std::collections::VecDeque<Message>>,
    recording: Option<ChannelState>,
    /// The checkpoint that switches to unaligned at this time (ms), while aligned.
    deadline: Option<(CheckpointBarrier, i64)>,
    parallelism: usize,
    layout: Vec<usize>,
}

impl UnalignedInputs {
    fn new(
        policy: UnalignedPolicy,
        priority: Vec<Option<Receiver<PriorityBarrier>>>,
        parallelism: usize,
        layout: Vec<usize>,
    ) -> Self {
        let n = layout.len();
        UnalignedInputs {
            policy,
            priority,
            tracker: InFlightTracker::new(n),
            held: (0..n).map(|_| std::collections::VecDeque::new()).collect(),
            recording: None,
            deadline: None,
            parallelism,
            layout,
        }
    }

    /// Copies the in-flight messages already queued on the data channels of the checkpoint
    /// being recorded (up to each channel's barrier), without waiting for any.
    fn pull_ahead(&mut self, inputs: &[(Receiver<Message>, usize)], open: &[bool]) {
        for (ch, (rx, _)) in inputs.iter().enumerate() {
            if !open[ch] {
                continue;
            }
            let mut left = self.tracker.to_pull(ch, self.held[ch].len());
            while left > 0 {
                let Ok(msg) = rx.try_recv() else {
                    break;
                };
                let seq = self.tracker_seq(ch);
                if self.tracker.on_pulled(ch, seq) {
                    if let Some(rec) = self.recording.as_mut() {
                        rec.record(ch, &msg);
                    }
                }
                self.held[ch].push_back(msg);
                left -= 1;
            }
        }
    }

    /// The sequence number the next message copied from `channel` has.
    fn tracker_seq(&self, channel: usize) -> u64 {
        self.tracker.processed(channel) + self.held[channel].len() as u64 + 1
    }

    /// Takes every barrier waiting on `channel`'s priority path.
    fn drain(&mut self, channel: usize) -> Vec<PriorityBarrier> {
        let mut out = Vec::new();
        let Some(slot) = self.priority.get_mut(channel) else {
            return out;
        };
        while let Some(rx) = slot.as_ref() {
            match rx.try_recv() {
                Ok(b) => out.push(b),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                // The upstream task ended: nothing more comes this way.
                Err(crossbeam_channel::TryRecvError::Disconnected) => *slot = None,
            }
        }
        out
    }
}

/// What the task loop works with while it runs an operator: the pieces the alignment and
/// unaligned-checkpoint steps change.
struct LoopState<'a> {
    op: &'a mut dyn Operator,
    ctx: &'a TaskContext,
    router: &'a mut OutputRouter,
    ckpt: &'a TaskCheckpointing,
    aligner: &'a mut BarrierAligner,
    blocked: &'a mut [bool],
    in_flight: &'a mut Option<InFlightSnapshot>,
    unaligned: Option<&'a mut UnalignedInputs>,
    stop_savepoint: &'a mut Option<u64>,
    now_ms: i64,
}

impl LoopState<'_> {
    /// A barrier announced on `channel`'s priority path.
    fn on_priority_barrier(&mut self, channel: usize, pb: PriorityBarrier) -> Result<()> {
        let Some(u) = self.unaligned.as_deref_mut() else {
            return Ok(());
        };
        let (aborted, announced) = u.tracker.announce(channel, &pb.barrier, pb.stamp)?;
        if let Some(old) = aborted {
            self.abandon(old, CheckpointFailureReason::CheckpointDeclinedSubsumed);
        }
        let Some(u) = self.unaligned.as_deref_mut() else {
            return Ok(());
        };
        let barrier = pb.barrier;
        match announced {
            Announced::Obsolete | Announced::Bounded => Ok(()),
            Announced::Pending | Announced::Reached(_)
                if u.policy.is_unaligned_at(&barrier, self.now_ms) =>
            {
                let actions = self.aligner.switch_to_unaligned(&barrier, self.now_ms);
                self.apply(actions, true)
            }
            announced => {
                if u.deadline.as_ref().is_none_or(|(b, _)| b.id < barrier.id) {
                    u.deadline = u.policy.deadline(&barrier).map(|d| (barrier.clone(), d));
                }
                if let Announced::Reached(b) = announced {
                    self.on_barrier(channel, &b)?;
                }
                Ok(())
            }
        }
    }

    /// A barrier arrived in the data order of `channel` (in band, or announced and reached).
    fn on_barrier(&mut self, channel: usize, b: &CheckpointBarrier) -> Result<()> {
        if b.stops() {
            *self.stop_savepoint = Some(b.id);
        }
        let actions = self.aligner.on_barrier(channel, b, self.now_ms)?;
        self.apply(actions, false)
    }

    /// The alignment timer: an aligned checkpoint whose timeout passed switches to unaligned.
    fn on_timer(&mut self) -> Result<()> {
        let Some(u) = self.unaligned.as_deref_mut() else {
            return Ok(());
        };
        let due = u
            .deadline
            .as_ref()
            .is_some_and(|(_, at)| self.now_ms >= *at);
        if !due {
            return Ok(());
        }
        let Some((barrier, _)) = u.deadline.take() else {
            return Ok(());
        };
        let actions = self.aligner.switch_to_unaligned(&barrier, self.now_ms);
        self.apply(actions, true)
    }

    /// Declines checkpoint `id` at this task and forgets what was recorded for it; its snapshot,
    /// if taken, is written without in-flight data (the coordinator discards it).
    fn abandon(&mut self, id: u64, reason: CheckpointFailureReason) {
        if let Some(u) = self.unaligned.as_deref_mut() {
            u.tracker.abort(id);
            if u.deadline.as_ref().is_some_and(|(b, _)| b.id <= id) {
                u.deadline = None;
            }
            if u.tracker.recording_id().is_none() {
                u.recording = None;
            }
        }
        if let Some(f) = self.in_flight.as_mut() {
            if f.id <= id && matches!(f.channels, ChannelWait::Recording) {
                f.channels = ChannelWait::None;
            }
        }
        let _ = self.ckpt.events.send(TaskEvent::Decline {
            checkpoint_id: id,
            reason,
        });
    }

    /// Once every input reached the barrier of the checkpoint being recorded, its in-flight data
    /// is complete and the snapshot can be written.
    fn check_recording_complete(&mut self) {
        let Some(u) = self.unaligned.as_deref_mut() else {
            return;
        };
        if !u.tracker.is_complete() {
            return;
        }
        let id = u.tracker.finish_recording();
        let Some(state) = u.recording.take() else {
            return;
        };
        if let Some(f) = self.in_flight.as_mut() {
            if Some(f.id) == id && matches!(f.channels, ChannelWait::Recording) {
                f.channels = ChannelWait::Done(state);
            }
        }
    }

    /// Carries out what the barrier aligner decided: block a channel, or snapshot the operator
    /// (unaligned: and start recording in-flight data), forward the barrier and acknowledge, or
    /// decline.
    fn apply(&mut self, actions: Vec<AlignerAction>, unaligned: bool) -> Result<()> {
        for action in actions {
            match action {
                AlignerAction::Block(ch) => {
                    if let Some(b) = self.blocked.get_mut(ch) {
                        *b = true;
                    }
                }
                AlignerAction::TriggerSnapshot(t) => {
                    self.blocked.iter_mut().for_each(|b| *b = false);
                    let id = t.barrier.id;
                    let mut channels = ChannelWait::None;
                    if let Some(u) = self.unaligned.as_deref_mut() {
                        if u.deadline.as_ref().is_some_and(|(b, _)| b.id <= id) {
                            u.deadline = None;
                        }
                        if unaligned {
                            u.tracker.start_recording(id);
                            u.recording = Some(ChannelState::new(u.parallelism, u.layout.clone()));
                            channels = ChannelWait::Recording;
                        }
                    }
                    let timing = SnapshotTiming {
                        alignment_ms: t.alignment_duration_ms,
                        start_delay_ms: t.start_delay_ms,
                        unaligned,
                        ..SnapshotTiming::default()
                    };
                    let barrier = t.barrier.clone();
                    let router = &mut *self.router;
                    self.ckpt.snapshot_operator(
                        self.op,
                        self.ctx,
                        self.in_flight,
                        id,
                        t.barrier.savepoint.as_ref(),
                        timing,
                        channels,
                        || router.broadcast_barrier(&barrier),
                    )?;
                    self.check_recording_complete();
                }
                AlignerAction::Abort(a) => {
                    self.blocked.iter_mut().for_each(|b| *b = false);
                    self.abandon(a.checkpoint_id, a.reason);
                }
            }
        }
        Ok(())
    }
}

/// Replays the in-flight data of the checkpoint restored from, channel by channel, before any
/// live input: it is what the upstream tasks had sent before their snapshot and this task had
/// not processed before its own.
fn replay_channel_state(
    state: &ChannelState,
    op: &mut dyn Operator,
    ctx: &TaskContext,
    router: &mut OutputRouter,
    valve: &mut WatermarkValve,
    inputs: &[(Receiver<Message>, usize)],
    out: &mut Output,
) -> Result<u64> {
    let mut records = 0u64;
    for (ch, (_, input)) in inputs.iter().enumerate() {
        for msg in state.messages(ch)? {
            match msg {
                Message::Batch(batch) => {
                    records += batch.len() as u64;
                    let v = valve.on_record(ch);
                    apply_valve(v, op, ctx, router, out)?;
                    op.on_batch(*input, batch, out)?;
                    router.emit(out)?;
                }
                Message::Watermark(wm) => {
                    let v = valve.on_watermark(ch, wm);
                    apply_valve(v, op, ctx, router, out)?;
                }
                Message::Idle(idle) => {
                    let v = valve.on_idle(ch, idle);
                    apply_valve(v, op, ctx, router, out)?;
                }
                _ => {}
            }
        }
    }
    Ok(records)
}

#[allow(clippy::too_many_arguments)]
fn run_operator(
    op: &mut Box<dyn Operator>,
    ctx: &TaskContext,
    inputs: &[(Receiver<Message>, usize)],
    priority: Vec<Option<Receiver<PriorityBarrier>>>,
    replay: Option<ChannelState>,
    router: &mut OutputRouter,
    shared: &JobShared,
    settings: &RuntimeSettings,
    ckpt: Option<&TaskCheckpointing>,
) -> Result<()> {
    let mut valve = WatermarkValve::new(inputs.len());
    let mut open: Vec<bool> = vec![true; inputs.len()];
    // Channels blocked by barrier alignment are not read until the snapshot.
    let mut blocked: Vec<bool> = vec![false; inputs.len()];
    let mut aligner = ckpt.map(|c| BarrierAligner::new(inputs.len(), c.mode, c.after_finish));
    let layout: Vec<usize> = inputs.iter().map(|(_, input)| *input).collect();
    // Only a task whose inputs have priority paths records anything: without unaligned
    // checkpoints none of this exists and the loop below is the aligned one.
    let mut unaligned = ckpt
        .filter(|c| c.unaligned.enabled && priority.iter().any(Option::is_some))
        .map(|c| UnalignedInputs::new(c.unaligned, priority, ctx.parallelism, layout.clone()));
    let mut out = Output::new();
    let timer_every = settings.timer_interval.max(Duration::from_millis(1));
    let mut next_timer = Instant::now() + timer_every;
    let mut records_in = 0u64;
    // The id of a stop-with-savepoint whose barrier arrived, and the newest completed checkpoint.
    let mut stop_savepoint: Option<u64> = None;
    // A checkpoint whose keyed-state flush is still being encoded between batches.
    let mut in_flight: Option<InFlightSnapshot> = None;
    let mut completed = 0u64;
    // The checkpointing steps of the loop all borrow the same state.
    macro_rules! loop_state {
        ($c:expr, $a:expr, $u:expr, $now:expr) => {
            LoopState {
                op: op.as_mut(),
                ctx,
                router,
                ckpt: $c,
                aligner: $a,
                blocked: &mut blocked,
                in_flight: &mut in_flight,
                unaligned: $u,
                stop_savepoint: &mut stop_savepoint,
                now_ms: $now,
            }
        };
    }

    if let Some(state) = replay.filter(|s| !s.is_empty()) {
        state.check_layout(ctx.parallelism, &layout, &ctx.thread_name())?;
        records_in += replay_channel_state(
            &state,
            op.as_mut(),
            ctx,
            router,
            &mut valve,
            inputs,
            &mut out,
        )?;
    }

    if inputs.is_empty() {
        // An operator without inputs (a constant VALUES) only ever sees the end.
        finish(op.as_mut(), router, &mut out)?;
        return Ok(());
    }

    loop {
        if shared.is_cancelled() {
            TaskMetrics::add(&ctx.metrics.records_in, records_in);
            return Err(EngineError::Cancelled);
        }
        let now = Instant::now();
        let mut wait = POLL.min(next_timer.saturating_duration_since(now));
        if let Some(d) = router.deadline() {
            wait = wait.min(d.saturating_duration_since(now));
        }
        if let Some(c) = ckpt {
            while let Ok(command) = c.commands.try_recv() {
                if let TaskCommand::Complete(id) = command {
                    c.prune_local_copies(id);
                    op.notify_checkpoint_complete(id)?;
                    completed = completed.max(id);
                }
            }
        }
        // Barriers on priority paths first: they overtake whatever is queued. Then the
        // alignment timer.
        if let (Some(c), Some(a), Some(u)) = (ckpt, aligner.as_mut(), unaligned.as_mut()) {
            // Copies first, so that every barrier sent before a copied message is drained below
            // before that message is processed.
            u.pull_ahead(inputs, &open);
            let now_ms = settings.clock.now_millis();
            let announced: Vec<(usize, PriorityBarrier)> = (0..inputs.len())
                .flat_map(|ch| u.drain(ch).into_iter().map(move |b| (ch, b)))
                .collect();
            let mut state = loop_state!(c, a, Some(u), now_ms);
            for (ch, b) in announced {
                state.on_priority_barrier(ch, b)?;
            }
            state.on_timer()?;
            state.check_recording_complete();
            if let Some(u) = unaligned.as_ref() {
                if let Some((_, at)) = &u.deadline {
                    let left = u64::try_from(at.saturating_sub(now_ms).max(1)).unwrap_or(1);
                    wait = wait.min(Duration::from_millis(left));
                }
            }
        }
        let readable: Vec<bool> = open.iter().zip(&blocked).map(|(o, b)| *o && !*b).collect();
        let held = unaligned.as_mut().and_then(|u| {
            (0..inputs.len())
                .find(|ch| readable[*ch] && !u.held[*ch].is_empty())
                .and_then(|ch| u.held[ch].pop_front().map(|m| (ch, m)))
        });
        let (received, from_held) = match held {
            Some((ch, msg)) => (Received::Message(ch, msg), true),
            None => match unaligned.as_ref() {
                Some(u) => (
                    receive_or_priority(inputs, &u.priority, &readable, wait),
                    false,
                ),
                None => (receive(inputs, &readable, wait), false),
            },
        };
        let received = match received {
            Received::Message(ch, msg) if !from_held && unaligned.is_some() => {
                // The barrier of this channel may have been sent before this message: it is
                // on the priority path now, and decides whether the message is before it.
                let (Some(c), Some(a), Some(u)) = (ckpt, aligner.as_mut(), unaligned.as_mut())
                else {
                    return Err(EngineError::internal(
                        "unaligned inputs without checkpointing",
                    ));
                };
                let announced = u.drain(ch);
                let mut state = loop_state!(c, a, Some(u), settings.clock.now_millis());
                for b in announced {
                    state.on_priority_barrier(ch, b)?;
                }
                if blocked[ch] {
                    if let Some(u) = unaligned.as_mut() {
                        u.held[ch].push_back(msg);
                    }
                    Received::Timeout
                } else {
                    Received::Message(ch, msg)
                }
            }
            other => other,
        };
        match received {
            Received::Message(ch, msg) => {
                let input = inputs[ch].1;
                // With unaligned inputs: count the message, record it when it is in flight, and
                // learn whether its channel's barrier follows it.
                let mut barrier_after = None;
                if let Some(u) = unaligned.as_mut() {
                    let fate = u.tracker.on_message(ch)?;
                    if fate.record {
                        if let Some(rec) = u.recording.as_mut() {
                            rec.record(ch, &msg);
                        }
                    }
                    barrier_after = fate.barrier_after;
                }
                match msg {
                    Message::Batch(batch) => {
                        records_in += batch.len() as u64;
                        let v = valve.on_record(ch);
                        apply_valve(v, op.as_mut(), ctx, router, &mut out)?;
                        op.on_batch(input, batch, &mut out)?;
                        router.emit(&mut out)?;
                    }
                    Message::Watermark(wm) => {
                        let v = valve.on_watermark(ch, wm);
                        apply_valve(v, op.as_mut(), ctx, router, &mut out)?;
                    }
                    Message::Idle(idle) => {
                        let v = valve.on_idle(ch, idle);
                        apply_valve(v, op.as_mut(), ctx, router, &mut out)?;
                    }
                    Message::LatencyMarker(marker) => {
                        router.broadcast(|| Message::LatencyMarker(marker.clone()))?;
                    }
                    Message::Barrier(b) => {
                        let (Some(c), Some(a)) = (ckpt, aligner.as_mut()) else {
                            return Err(EngineError::internal(format!(
                                "checkpoint barrier {} reached a task, but this job runs without checkpointing",
                                b.id
                            )));
                        };
                        let mut state =
                            loop_state!(c, a, unaligned.as_mut(), settings.clock.now_millis());
                        state.on_barrier(ch, &b)?;
                    }
                    Message::Stop => {
                        open[ch] = false;
                        if open.iter().all(|o| !o) {
                            // Every input stopped after the stop-with-savepoint: once it is
                            // complete here too (a sink commits), the task ends, unflushed.
                            TaskMetrics::add(&ctx.metrics.records_in, records_in);
                            if let (Some(c), Some(id)) = (ckpt, stop_savepoint) {
                                // The savepoint's flush must reach the coordinator first.
                                c.advance(op.as_mut(), ctx, &mut in_flight, usize::MAX)?;
                                if completed < id {
                                    c.await_completion(id, shared, &mut |done| {
                                        op.notify_checkpoint_complete(done)
                                    })?;
                                }
                            }
                            router.broadcast(|| Message::Stop)?;
                            return Ok(());
                        }
                    }
                    Message::EndOfStream => {
                        open[ch] = false;
                        if let (Some(c), Some(a)) = (ckpt, aligner.as_mut()) {
                            let now_ms = settings.clock.now_millis();
                            let ended = match unaligned.as_mut() {
                                Some(u) => u.tracker.on_end_of_stream(ch)?,
                                None => None,
                            };
                            let actions = a.on_end_of_stream(ch, now_ms)?;
                            let mut state = loop_state!(c, a, unaligned.as_mut(), now_ms);
                            if let Some(id) = ended {
                                // The channel ended before its barrier: the in-flight data of
                                // this checkpoint can never be complete.
                                state.abandon(
                                    id,
                                    CheckpointFailureReason::CheckpointDeclinedInputEndOfStream,
                                );
                            }
                            state.apply(actions, false)?;
                            state.check_recording_complete();
                        }
                        let v = valve.on_end(ch);
                        apply_valve(v, op.as_mut(), ctx, router, &mut out)?;
                        if valve.all_finished() {
                            TaskMetrics::add(&ctx.metrics.records_in, records_in);
                            finish(op.as_mut(), router, &mut out)?;
                            if let Some(c) = ckpt {
                                c.snapshot_operator(
                                    op.as_mut(),
                                    ctx,
                                    &mut in_flight,
                                    FINAL_CHECKPOINT,
                                    None,
                                    SnapshotTiming::default(),
                                    ChannelWait::None,
                                    || Ok(()),
                                )?;
                                c.await_completion(FINAL_CHECKPOINT, shared, &mut |id| {
                                    op.notify_checkpoint_complete(id)
                                })?;
                            }
                            return Ok(());
                        }
                    }
                }
                if let (Some(b), Some(c), Some(a)) = (barrier_after, ckpt, aligner.as_mut()) {
                    let mut state =
                        loop_state!(c, a, unaligned.as_mut(), settings.clock.now_millis());
                    state.on_barrier(ch, &b)?;
                }
                if let (Some(c), Some(a)) = (ckpt, aligner.as_mut()) {
                    if unaligned.is_some() {
                        loop_state!(c, a, unaligned.as_mut(), 0).check_recording_complete();
                    }
                }
            }
            Received::Timeout => {}
            Received::Priority(ch, pb) => {
                if let (Some(c), Some(a)) = (ckpt, aligner.as_mut()) {
                    loop_state!(c, a, unaligned.as_mut(), settings.clock.now_millis())
                        .on_priority_barrier(ch, pb)?;
                }
            }
            Received::Disconnected(ch) => {
                // An upstream task went away without end-of-stream: it failed or was cancelled.
                open[ch] = false;
                if !shared.is_cancelled() {
                    return Err(EngineError::internal(format!(
                        "an input of {} closed without end of stream",
                        ctx.thread_name()
                    )));
                }
            }
        }
        if let Some(c) = ckpt {
            c.advance(op.as_mut(), ctx, &mut in_flight, FLUSH_CHUNK)?;
        }
        let now = Instant::now();
        if now >= next_timer {
            op.on_timer(settings.clock.now_millis(), &mut out)?;
            router.emit(&mut out)?;
            next_timer = now + timer_every;
        }
        router.flush_if_due(now)?;
    }
}

fn finish(op: &mut dyn Operator, router: &mut OutputRouter, out: &mut Output) -> Result<()> {
    op.on_end_of_input(out)?;
    router.emit(out)?;
    router.broadcast(|| Message::EndOfStream)
}

fn apply_valve(
    v: ValveOutput,
    op: &mut dyn Operator,
    ctx: &TaskContext,
    router: &mut OutputRouter,
    out: &mut Output,
) -> Result<()> {
    if let Some(wm) = v.watermark {
        ctx.metrics
            .current_input_watermark
            .store(wm, std::sync::atomic::Ordering::Relaxed);
        op.on_watermark(wm, out)?;
        router.emit(out)?;
    }
    if let Some(idle) = v.idle {
        router.broadcast(|| Message::Idle(idle))?;
    }
    Ok(())
}

enum Received {
    Message(usize, Message),
    /// A barrier on the priority path of a channel.
    Priority(usize, PriorityBarrier),
    Timeout,
    Disconnected(usize),
}

/// [`receive`] for a task with priority paths: waits on the readable data channels and on every
/// live priority path, so that a barrier is seen as soon as it is sent.
fn receive_or_priority(
    inputs: &[(Receiver<Message>, usize)],
    priority: &[Option<Receiver<PriorityBarrier>>],
    open: &[bool],
    wait: Duration,
) -> Received {
    let mut sel = Select::new();
    let mut ops: Vec<(bool, usize)> = Vec::new();
    for (ch, rx) in priority.iter().enumerate() {
        if let Some(rx) = rx {
            sel.recv(rx);
            ops.push((true, ch));
        }
    }
    for (ch, (rx, _)) in inputs.iter().enumerate() {
        if open[ch] {
            sel.recv(rx);
            ops.push((false, ch));
        }
    }
    if ops.is_empty() {
        std::thread::sleep(wait);
        return Received::Timeout;
    }
    match sel.select_timeout(wait) {
        Ok(oper) => match ops.get(oper.index()) {
            Some((true, ch)) => match priority[*ch].as_ref().map(|rx| oper.recv(rx)) {
                Some(Ok(b)) => Received::Priority(*ch, b),
                // A closed priority path is noticed (and dropped) by the next drain.
                _ => Received::Timeout,
            },
            Some((false, ch)) => match oper.recv(&inputs[*ch].0) {
                Ok(m) => Received::Message(*ch, m),
                Err(_) => Received::Disconnected(*ch),
            },
            None => Received::Timeout,
        },
        Err(_) => Received::Timeout,
    }
}

fn receive(inputs: &[(Receiver<Message>, usize)], open: &[bool], wait: Duration) -> Received {
    let live: Vec<usize> = (0..inputs.len()).filter(|i| open[*i]).collect();
    match live.as_slice() {
        [] => {
            std::thread::sleep(wait);
            Received::Timeout
        }
        [only] => match inputs[*only].0.recv_timeout(wait) {
            Ok(m) => Received::Message(*only, m),
            Err(RecvTimeoutError::Timeout) => Received::Timeout,
            Err(RecvTimeoutError::Disconnected) => Received::Disconnected(*only),
        },
        many => {
            let mut sel = Select::new();
            for i in many {
                sel.recv(&inputs[*i].0);
            }
            match sel.select_timeout(wait) {
                Ok(oper) => {
                    let ch = many[oper.index()];
                    match oper.recv(&inputs[ch].0) {
                        Ok(m) => Received::Message(ch, m),
                        Err(_) => Received::Disconnected(ch),
                    }
                }
                Err(_) => Received::Timeout,
            }
        }
    }
}
