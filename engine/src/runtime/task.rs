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

use super::checkpointing::{TaskCommand, TaskEvent, FINAL_CHECKPOINT};
use super::exchange::OutputRouter;
use super::local_state::LocalCopies;
use super::subtask_state::{
    write_keyed, ChainFile, KeyedHandle, SubtaskState, WriteSettings, SHARED_DIR,
};
use super::watermark::{ValveOutput, WatermarkValve};
use super::{JobShared, RuntimeSettings};
use crate::checkpoint::{
    Acknowledgement, AlignerAction, BarrierAligner, CheckpointFailureReason, CheckpointingMode,
    TaskKey,
};
use crate::connectors::SourceStatus;
use crate::error::{EngineError, Result};
use crate::graph::NodeKind;
use crate::message::{Message, SavepointTarget};
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
    pub after_finish: bool,
    /// `<execution.checkpointing.dir>/<job-id>`: checkpoint n's files go to `chk-<n>/` below it.
    pub job_dir: PathBuf,
    pub compression: bool,
    pub inline_threshold: usize,
    pub write_buffer_size: usize,
    /// `execution.checkpointing.incremental`: checkpoints write deltas chained in `shared/`.
    pub incremental: bool,
    /// The subtask's current chain (a full snapshot and its deltas), extended by each chained
    /// snapshot's continuation, which run in checkpoint order.
    pub chain: Arc<std::sync::Mutex<Vec<ChainFile>>>,
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
        after_sync: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.advance(op, ctx, in_flight, usize::MAX)?;
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
        if op.continue_keyed_snapshot(budget, &mut f.delta)? {
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
        } = f;
        let savepoint = savepoint.as_ref();
        let store = match &ctx.state.store {
            Some(store) if !delta.is_empty() || store.is_open() => store,
            _ => {
                let state = SubtaskState {
                    operator,
                    keyed: KeyedHandle::None,
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
        store.submit_snapshot(
            id,
            delta,
            !chained,
            streamsql_storage::Compression::from_flag(self.compression),
            Box::new(move |snapshot: crate::state::store::SnapshotResult| {
                let written = snapshot
                    .map_err(|e| EngineError::Task { message: e })
                    .and_then(|s| {
                        let full = s.kind == streamsql_storage::SnapshotKind::Full;
                        write_keyed(&s, &settings).map(|w| (w, full, s))
                    })
                    .and_then(|(w, full, s)| {
                        if !chained {
                            if let (Some(local), KeyedHandle::File { path, .. }) =
                                (&local, &w.keyed)
                            {
                                let rel = format!("chk-{id}/{path}");
                                local.keep(id, &rel, &s.bytes, vec![rel.clone()]);
                            }
                            return Ok((w.keyed, w.state_size));
                        }
                        let KeyedHandle::File { path, size } = w.keyed else {
                            return Err(EngineError::internal(
                                "a chained snapshot was not written to a file",
                            ));
                        };
                        let mut files = chain.lock().unwrap_or_else(|p| p.into_inner());
                        if full {
                            files.clear();
                        }
                        if let Some(local) = &local {
                            let uses = files.iter().map(|f| f.path.clone()).chain([path.clone()]);
                            local.keep(id, &path, &s.bytes, uses.collect());
                        }
                        files.push(ChainFile { path, size });
                        // Flink's full size of an incremental checkpoint: every file it uses.
                        let total = files.iter().map(|f| f.size).sum();
                        Ok((KeyedHandle::Chain(files.clone()), total))
                    });
                match written {
                    Ok((keyed, keyed_size)) => {
                        let state = SubtaskState { operator, keyed };
                        send_state(
                            &events,
                            key,
                            id,
                            state,
                            keyed_size,
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
    sync: Duration,
    async_duration: Duration,
    timing: SnapshotTiming,
) {
    let checkpointed_size = state.checkpointed_size();
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
/// bytes of state the checkpoint held for it.
fn restore_operator(
    op: &mut dyn Operator,
    ctx: &TaskContext,
    restore: Option<&[u8]>,
    checkpoint_dir: &Path,
    local_job_dir: Option<&Path>,
) -> Result<u64> {
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
    Ok(state.checkpointed_size())
}

/// Runs one subtask to its end and records how it ended in `shared`. A failure (error or panic)
/// is recorded *before* this task's channels close, so that the tasks around it see the job
/// cancelled rather than a channel that vanished.
pub(crate) fn run(
    kind: NodeKind,
    ctx: &TaskContext,
    inputs: Vec<(Receiver<Message>, usize)>,
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
                let bytes = restore_operator(
                    op.as_mut(),
                    ctx,
                    c.restore.as_deref(),
                    &c.restore_dir,
                    c.restore_local.as_deref(),
                )?;
                shared.restored(bytes);
            }
            run_operator(
                op,
                ctx,
                &inputs,
                &mut router,
                shared,
                settings,
                ckpt.as_ref(),
            )
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
    loop {
        if shared.is_cancelled() {
            return Err(EngineError::Cancelled);
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
                    router.broadcast(|| Message::Barrier(barrier.clone()))?;
                    let state = SubtaskState {
                        operator: position,
                        keyed: KeyedHandle::None,
                    };
                    let timing = SnapshotTiming {
                        alignment_ms: 0,
                        start_delay_ms: start_delay.max(0),
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

fn run_operator(
    mut op: Box<dyn Operator>,
    ctx: &TaskContext,
    inputs: &[(Receiver<Message>, usize)],
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
    let mut out = Output::new();
    let timer_every = settings.timer_interval.max(Duration::from_millis(1));
    let mut next_timer = Instant::now() + timer_every;
    let mut records_in = 0u64;
    // The id of a stop-with-savepoint whose barrier arrived, and the newest completed checkpoint.
    let mut stop_savepoint: Option<u64> = None;
    // A checkpoint whose keyed-state flush is still being encoded between batches.
    let mut in_flight: Option<InFlightSnapshot> = None;
    let mut completed = 0u64;

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
        let readable: Vec<bool> = open.iter().zip(&blocked).map(|(o, b)| *o && !*b).collect();
        let received = receive(inputs, &readable, wait);
        match received {
            Received::Message(ch, msg) => {
                let input = inputs[ch].1;
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
                        if b.stops() {
                            stop_savepoint = Some(b.id);
                        }
                        let now = settings.clock.now_millis();
                        let actions = a.on_barrier(ch, &b, now)?;
                        apply_alignment(
                            actions,
                            op.as_mut(),
                            ctx,
                            router,
                            c,
                            &mut blocked,
                            &mut in_flight,
                        )?;
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
                            let actions = a.on_end_of_stream(ch, settings.clock.now_millis())?;
                            apply_alignment(
                                actions,
                                op.as_mut(),
                                ctx,
                                router,
                                c,
                                &mut blocked,
                                &mut in_flight,
                            )?;
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
            }
            Received::Timeout => {}
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

/// Carries out what the barrier aligner decided: block a channel, or snapshot the operator,
/// forward the barrier and acknowledge, or decline.
fn apply_alignment(
    actions: Vec<AlignerAction>,
    op: &mut dyn Operator,
    ctx: &TaskContext,
    router: &mut OutputRouter,
    ckpt: &TaskCheckpointing,
    blocked: &mut [bool],
    in_flight: &mut Option<InFlightSnapshot>,
) -> Result<()> {
    for action in actions {
        match action {
            AlignerAction::Block(ch) => {
                if let Some(b) = blocked.get_mut(ch) {
                    *b = true;
                }
            }
            AlignerAction::TriggerSnapshot(t) => {
                blocked.iter_mut().for_each(|b| *b = false);
                let timing = SnapshotTiming {
                    alignment_ms: t.alignment_duration_ms,
                    start_delay_ms: t.start_delay_ms,
                };
                let barrier = t.barrier.clone();
                let savepoint = t.barrier.savepoint.as_ref();
                ckpt.snapshot_operator(
                    op,
                    ctx,
                    in_flight,
                    t.barrier.id,
                    savepoint,
                    timing,
                    || router.broadcast(|| Message::Barrier(barrier.clone())),
                )?;
            }
            AlignerAction::Abort(a) => {
                blocked.iter_mut().for_each(|b| *b = false);
                let _ = ckpt.events.send(TaskEvent::Decline {
                    checkpoint_id: a.checkpoint_id,
                    reason: a.reason,
                });
            }
        }
    }
    Ok(())
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
    Timeout,
    Disconnected(usize),
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
