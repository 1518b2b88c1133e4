//! The task loop of one subtask: receive, call the operator's hooks, route what it emits.
//!
//! Invariants: messages of one channel are handled in order; the operator sees the combined
//! watermark of its inputs only when it advances; on the end of every input it sees the final
//! watermark (+infinity), then `on_end_of_input`, and end-of-stream goes downstream last. No call
//! here blocks for longer than `POLL` without looking at the cancel flag.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select};

use super::exchange::OutputRouter;
use super::watermark::{ValveOutput, WatermarkValve};
use super::{JobShared, RuntimeSettings};
use crate::connectors::SourceStatus;
use crate::error::{EngineError, Result};
use crate::graph::NodeKind;
use crate::message::Message;
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, Output, TaskContext};

/// The longest a task waits before it checks for cancellation.
const POLL: Duration = Duration::from_millis(50);
/// How long an idle source sleeps between polls.
const IDLE_SLEEP: Duration = Duration::from_millis(2);

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
) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
        NodeKind::Source(factory) => {
            let source = factory.create(ctx)?;
            run_source(source, &mut router, shared, settings)
        }
        NodeKind::Operator(factory) => {
            let op = factory.create(ctx)?;
            run_operator(op, ctx, &inputs, &mut router, shared, settings)
        }
    }));
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
) -> Result<()> {
    let mut out = Output::new();
    loop {
        if shared.is_cancelled() {
            return Err(EngineError::Cancelled);
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
) -> Result<()> {
    let mut valve = WatermarkValve::new(inputs.len());
    let mut open: Vec<bool> = vec![true; inputs.len()];
    let mut out = Output::new();
    let timer_every = settings.timer_interval.max(Duration::from_millis(1));
    let mut next_timer = Instant::now() + timer_every;
    let mut records_in = 0u64;

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
        let received = receive(inputs, &open, wait);
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
                        return Err(EngineError::internal(format!(
                            "checkpoint barrier {} reached a task, but this job runs without checkpointing",
                            b.id
                        )));
                    }
                    Message::EndOfStream => {
                        open[ch] = false;
                        let v = valve.on_end(ch);
                        apply_valve(v, op.as_mut(), ctx, router, &mut out)?;
                        if valve.all_finished() {
                            TaskMetrics::add(&ctx.metrics.records_in, records_in);
                            return finish(op.as_mut(), router, &mut out);
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
