//! Barrier alignment for one task with N input channels: Flink's `SingleCheckpointBarrierHandler`
//! with the aligned controller (EXACTLY_ONCE) and `CheckpointBarrierTracker` (AT_LEAST_ONCE).
//!
//! The runtime feeds every barrier, cancellation marker and end of stream of its inputs to a
//! [`BarrierAligner`] and carries out the returned [`AlignerAction`]s in order. Invariants:
//! - EXACTLY_ONCE aligns one checkpoint at a time. A channel is blocked from the moment its barrier
//!   for the checkpoint being aligned arrives until the snapshot is triggered or the checkpoint is
//!   aborted; [`BarrierAligner::is_blocked`] is the truth the runtime reads before polling a
//!   channel. AT_LEAST_ONCE never blocks and may track several checkpoints at once.
//! - A snapshot is triggered once per checkpoint id, when every channel that was open at its first
//!   barrier has delivered that barrier or finished; a finished channel counts as aligned when
//!   `execution.checkpointing.checkpoints-after-tasks-finish` is on, and aborts the checkpoint
//!   with `CHECKPOINT_DECLINED_INPUT_END_OF_STREAM` when it is off (Flink's rule).
//! - Checkpoint ids only grow: a barrier older than the newest seen is obsolete and ignored; a
//!   barrier of a newer checkpoint while an older one is being aligned aborts the older one with
//!   `CHECKPOINT_DECLINED_SUBSUMED` and starts aligning the newer one.
//! - Time is the caller's clock in milliseconds; alignment durations never go negative.
//!
//! - Unaligned checkpoints: [`BarrierAligner::switch_to_unaligned`] ends the alignment of a
//!   checkpoint that is taken unaligned (at its first barrier, or when its alignment timed out),
//!   so that its later barriers are obsolete; which records are in flight is decided by
//!   [`crate::checkpoint::in_flight`].

use std::collections::VecDeque;

use crate::checkpoint::failure::CheckpointFailureReason;
use crate::checkpoint::CheckpointingMode;
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;

/// Flink's `CancelCheckpointMarker`: sent downstream instead of a barrier by a task that declined
/// checkpoint `checkpoint_id`, so that the tasks below stop waiting for its barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelCheckpointMarker {
    /// The checkpoint that was cancelled.
    pub checkpoint_id: u64,
}

/// Everything the task needs to take its snapshot once the barriers are aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTrigger {
    /// The barrier to snapshot for and then forward to every output.
    pub barrier: CheckpointBarrier,
    /// Milliseconds from the first to the last barrier of this checkpoint at this task (0 with one
    /// open input), Flink's "alignment duration".
    pub alignment_duration_ms: i64,
    /// Milliseconds from the trigger at the coordinator to the first barrier at this task,
    /// Flink's "start delay".
    pub start_delay_ms: i64,
}

/// A checkpoint this task declines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedCheckpoint {
    /// The declined checkpoint.
    pub checkpoint_id: u64,
    /// Why, as reported to the coordinator.
    pub reason: CheckpointFailureReason,
}

/// What the runtime must do after an input event, in the order returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlignerAction {
    /// Stop reading this channel until the snapshot is triggered or the checkpoint aborted.
    Block(usize),
    /// Every input is aligned: unblock all channels, take the snapshot, forward the barrier.
    TriggerSnapshot(SnapshotTrigger),
    /// Decline the checkpoint to the coordinator and send a [`CancelCheckpointMarker`] downstream;
    /// channels blocked for it are unblocked.
    Abort(AbortedCheckpoint),
}

/// Flink's `CheckpointBarrierTracker` gives up on the oldest partly seen checkpoint beyond this
/// many, so that a channel that never delivers barriers cannot grow the tracker without bound.
const MAX_CHECKPOINTS_TO_TRACK: usize = 50;

/// The one checkpoint an EXACTLY_ONCE aligner is aligning.
#[derive(Debug)]
struct Alignment {
    barrier: CheckpointBarrier,
    /// Channels open when the first barrier arrived: the number that must align.
    target: usize,
    aligned_count: usize,
    started_at_ms: i64,
    start_delay_ms: i64,
}

/// One checkpoint an AT_LEAST_ONCE tracker has seen some barriers of.
#[derive(Debug)]
struct BarrierCount {
    id: u64,
    /// `None` for a checkpoint first seen as a cancellation marker.
    barrier: Option<CheckpointBarrier>,
    seen: Vec<bool>,
    seen_count: usize,
    target: usize,
    aborted: bool,
}

impl BarrierCount {
    /// Marks `channel` as seen; returns the number of distinct channels seen.
    fn mark_seen(&mut self, channel: usize) -> usize {
        if !self.seen[channel] {
            self.seen[channel] = true;
            self.seen_count += 1;
        }
        self.seen_count
    }

    /// Marks the checkpoint aborted; true the first time only.
    fn mark_aborted(&mut self) -> bool {
        let first = !self.aborted;
        self.aborted = true;
        first
    }
}

#[derive(Debug)]
enum Strategy {
    Aligned {
        /// Newest checkpoint id seen (by barrier or cancellation marker).
        current_id: Option<u64>,
        /// Channels whose barrier for the aligned checkpoint arrived, or that finished during it.
        aligned: Vec<bool>,
        /// Channels whose barrier arrived: a subset of `aligned`.
        blocked: Vec<bool>,
        alignment: Option<Alignment>,
    },
    Tracking {
        latest_id: Option<u64>,
        pending: VecDeque<BarrierCount>,
        /// Start of the alignment of `latest_id` and its start delay.
        started: Option<(i64, i64)>,
    },
}

/// Barrier alignment of one task (see the module documentation).
#[derive(Debug)]
pub struct BarrierAligner {
    mode: CheckpointingMode,
    checkpoints_after_tasks_finish: bool,
    finished: Vec<bool>,
    open_channels: usize,
    last_alignment_duration_ms: i64,
    last_start_delay_ms: i64,
    strategy: Strategy,
}

/// Whether checkpoint `id` is newer than the newest seen (`None`: none seen yet).
fn is_newer(id: u64, newest_seen: Option<u64>) -> bool {
    match newest_seen {
        Some(seen) => id > seen,
        None => true,
    }
}

fn elapsed(from_ms: i64, to_ms: i64) -> i64 {
    to_ms.saturating_sub(from_ms).max(0)
}

impl BarrierAligner {
    /// An aligner for a task with `channels` inputs; `checkpoints_after_tasks_finish` is
    /// `execution.checkpointing.checkpoints-after-tasks-finish`.
    pub fn new(
        channels: usize,
        mode: CheckpointingMode,
        checkpoints_after_tasks_finish: bool,
    ) -> Self {
        let strategy = match mode {
            CheckpointingMode::ExactlyOnce => Strategy::Aligned {
                current_id: None,
                aligned: vec![false; channels],
                blocked: vec![false; channels],
                alignment: None,
            },
            CheckpointingMode::AtLeastOnce => Strategy::Tracking {
                latest_id: None,
                pending: VecDeque::new(),
                started: None,
            },
        };
        BarrierAligner {
            mode,
            checkpoints_after_tasks_finish,
            finished: vec![false; channels],
            open_channels: channels,
            last_alignment_duration_ms: 0,
            last_start_delay_ms: 0,
            strategy,
        }
    }

    /// The mode this aligner implements.
    pub fn mode(&self) -> CheckpointingMode {
        self.mode
    }

    /// Inputs that have not delivered their end of stream.
    pub fn open_channels(&self) -> usize {
        self.open_channels
    }

    /// Whether the runtime must not read `channel` now. Always false in AT_LEAST_ONCE and for a
    /// channel out of range.
    pub fn is_blocked(&self, channel: usize) -> bool {
        match &self.strategy {
            Strategy::Aligned { blocked, .. } => blocked.get(channel).copied().unwrap_or(false),
            Strategy::Tracking { .. } => false,
        }
    }

    /// Whether a checkpoint has seen some but not all of its barriers.
    pub fn is_aligning(&self) -> bool {
        match &self.strategy {
            Strategy::Aligned { alignment, .. } => alignment.is_some(),
            Strategy::Tracking { pending, .. } => !pending.is_empty(),
        }
    }

    /// The newest checkpoint being aligned, if any.
    pub fn aligning_checkpoint_id(&self) -> Option<u64> {
        match &self.strategy {
            Strategy::Aligned { alignment, .. } => alignment.as_ref().map(|a| a.barrier.id),
            Strategy::Tracking { pending, .. } => pending.back().map(|c| c.id),
        }
    }

    /// Flink's alignment-duration gauge: the running alignment's duration so far, else the last
    /// completed one's.
    pub fn alignment_duration_ms(&self, now_ms: i64) -> i64 {
        let running = match &self.strategy {
            Strategy::Aligned { alignment, .. } => alignment.as_ref().map(|a| a.started_at_ms),
            Strategy::Tracking { started, .. } => started.map(|(at, _)| at),
        };
        match running {
            Some(at) => elapsed(at, now_ms),
            None => self.last_alignment_duration_ms,
        }
    }

    /// Flink's checkpoint-start-delay gauge of the latest checkpoint that reached this task.
    pub fn start_delay_ms(&self) -> i64 {
        self.last_start_delay_ms
    }

    fn check_open(&self, channel: usize, what: &str) -> Result<()> {
        match self.finished.get(channel) {
            None => Err(EngineError::internal(format!(
                "{what} on input channel {channel} of a task with {} channels",
                self.finished.len()
            ))),
            Some(true) => Err(EngineError::internal(format!(
                "{what} on input channel {channel} after its end of stream"
            ))),
            Some(false) => Ok(()),
        }
    }

    /// A barrier arrived on `channel` at `now_ms`. An error means the runtime broke the protocol
    /// (a channel out of range, a barrier after end of stream, a second barrier on a blocked
    /// channel).
    pub fn on_barrier(
        &mut self,
        channel: usize,
        barrier: &CheckpointBarrier,
        now_ms: i64,
    ) -> Result<Vec<AlignerAction>> {
        self.check_open(channel, "checkpoint barrier")?;
        let mut actions = Vec::new();
        let open = self.open_channels;
        let start_delay = elapsed(barrier.timestamp, now_ms);
        match &mut self.strategy {
            Strategy::Aligned {
                current_id,
                aligned,
                blocked,
                alignment,
            } => {
                let id = barrier.id;
                let obsolete = match *current_id {
                    Some(cur) => cur > id || (cur == id && alignment.is_none()),
                    None => false,
                };
                if obsolete {
                    return Ok(actions);
                }
                if is_newer(id, *current_id) {
                    if let Some(old) = alignment.take() {
                        actions.push(AlignerAction::Abort(AbortedCheckpoint {
                            checkpoint_id: old.barrier.id,
                            reason: CheckpointFailureReason::CheckpointDeclinedSubsumed,
                        }));
                        aligned.fill(false);
                        blocked.fill(false);
                    }
                    *current_id = Some(id);
                }
                if blocked[channel] {
                    return Err(EngineError::internal(format!(
                        "a second barrier of checkpoint {id} on blocked input channel {channel}"
                    )));
                }
                let a = alignment.get_or_insert_with(|| Alignment {
                    barrier: barrier.clone(),
                    target: open,
                    aligned_count: 0,
                    started_at_ms: now_ms,
                    start_delay_ms: start_delay,
                });
                if a.aligned_count == 0 {
                    self.last_start_delay_ms = a.start_delay_ms;
                }
                aligned[channel] = true;
                a.aligned_count += 1;
                if a.aligned_count >= a.target {
                    let done = alignment.take().expect("invariant: alignment was just set");
                    aligned.fill(false);
                    blocked.fill(false);
                    self.last_alignment_duration_ms = elapsed(done.started_at_ms, now_ms);
                    actions.push(AlignerAction::TriggerSnapshot(SnapshotTrigger {
                        barrier: done.barrier,
                        alignment_duration_ms: self.last_alignment_duration_ms,
                        start_delay_ms: done.start_delay_ms,
                    }));
                } else {
                    blocked[channel] = true;
                    actions.push(AlignerAction::Block(channel));
                }
            }
            Strategy::Tracking {
                latest_id,
                pending,
                started,
            } => {
                let id = barrier.id;
                let is_new = is_newer(id, *latest_id);
                if is_new && open == 1 {
                    // One open input: nothing to wait for.
                    *latest_id = Some(id);
                    *started = None;
                    self.last_alignment_duration_ms = 0;
                    self.last_start_delay_ms = start_delay;
                    actions.push(AlignerAction::TriggerSnapshot(SnapshotTrigger {
                        barrier: barrier.clone(),
                        alignment_duration_ms: 0,
                        start_delay_ms: start_delay,
                    }));
                    return Ok(actions);
                }
                if let Some(pos) = pending.iter().position(|c| c.id == id) {
                    let count = &mut pending[pos];
                    if count.mark_seen(channel) >= count.target {
                        let mut done = None;
                        for _ in 0..=pos {
                            done = pending.pop_front();
                        }
                        let done = done.expect("invariant: pending holds pos + 1 entries");
                        if !done.aborted {
                            let (duration, delay) = match (*latest_id, *started) {
                                (Some(l), Some((at, delay))) if l == id => {
                                    *started = None;
                                    (elapsed(at, now_ms), delay)
                                }
                                _ => (self.last_alignment_duration_ms, start_delay),
                            };
                            self.last_alignment_duration_ms = duration;
                            let barrier = done.barrier.unwrap_or_else(|| barrier.clone());
                            actions.push(AlignerAction::TriggerSnapshot(SnapshotTrigger {
                                barrier,
                                alignment_duration_ms: duration,
                                start_delay_ms: delay,
                            }));
                        }
                    }
                } else if is_new {
                    *latest_id = Some(id);
                    *started = Some((now_ms, start_delay));
                    self.last_start_delay_ms = start_delay;
                    let mut count = BarrierCount {
                        id,
                        barrier: Some(barrier.clone()),
                        seen: vec![false; self.finished.len()],
                        seen_count: 0,
                        target: open,
                        aborted: false,
                    };
                    count.mark_seen(channel);
                    pending.push_back(count);
                    if pending.len() > MAX_CHECKPOINTS_TO_TRACK {
                        pending.pop_front();
                    }
                }
            }
        }
        Ok(actions)
    }

    /// Checkpoint `barrier` is taken unaligned now (`now_ms`): an older alignment is aborted as
    /// subsumed, the checkpoint's own alignment (if it started) ends, every channel unblocks, and
    /// its later barriers are obsolete. Returns the snapshot to take, or nothing when the
    /// checkpoint is obsolete here. Exactly-once only: AT_LEAST_ONCE never takes unaligned
    /// checkpoints (Flink turns them off in that mode).
    pub fn switch_to_unaligned(
        &mut self,
        barrier: &CheckpointBarrier,
        now_ms: i64,
    ) -> Vec<AlignerAction> {
        let mut actions = Vec::new();
        let start_delay = elapsed(barrier.timestamp, now_ms);
        let Strategy::Aligned {
            current_id,
            aligned,
            blocked,
            alignment,
        } = &mut self.strategy
        else {
            return actions;
        };
        let id = barrier.id;
        if current_id.is_some_and(|cur| cur > id || (cur == id && alignment.is_none())) {
            return actions;
        }
        let (started_at, delay) = match alignment.take() {
            Some(a) if a.barrier.id == id => (a.started_at_ms, a.start_delay_ms),
            Some(old) => {
                actions.push(AlignerAction::Abort(AbortedCheckpoint {
                    checkpoint_id: old.barrier.id,
                    reason: CheckpointFailureReason::CheckpointDeclinedSubsumed,
                }));
                (now_ms, start_delay)
            }
            None => (now_ms, start_delay),
        };
        *current_id = Some(id);
        aligned.fill(false);
        blocked.fill(false);
        self.last_alignment_duration_ms = elapsed(started_at, now_ms);
        self.last_start_delay_ms = delay;
        actions.push(AlignerAction::TriggerSnapshot(SnapshotTrigger {
            barrier: barrier.clone(),
            alignment_duration_ms: self.last_alignment_duration_ms,
            start_delay_ms: delay,
        }));
        actions
    }

    /// A cancellation marker arrived on `channel`: the upstream task declined the checkpoint.
    pub fn on_cancellation(
        &mut self,
        channel: usize,
        marker: CancelCheckpointMarker,
    ) -> Result<Vec<AlignerAction>> {
        self.check_open(channel, "cancellation marker")?;
        let mut actions = Vec::new();
        let open = self.open_channels;
        let cid = marker.checkpoint_id;
        let on_cancel = |id| {
            AlignerAction::Abort(AbortedCheckpoint {
                checkpoint_id: id,
                reason: CheckpointFailureReason::CheckpointDeclinedOnCancellationBarrier,
            })
        };
        match &mut self.strategy {
            Strategy::Aligned {
                current_id,
                aligned,
                blocked,
                alignment,
            } => {
                let aligning = alignment.as_ref().map(|a| a.barrier.id);
                let newer = is_newer(cid, *current_id);
                if newer || aligning == Some(cid) {
                    if let Some(old) = aligning.filter(|&old| old < cid) {
                        // The older alignment can never complete now; declining it at once
                        // spares the coordinator waiting for its expiry.
                        actions.push(AlignerAction::Abort(AbortedCheckpoint {
                            checkpoint_id: old,
                            reason: CheckpointFailureReason::CheckpointDeclinedSubsumed,
                        }));
                    }
                    *alignment = None;
                    aligned.fill(false);
                    blocked.fill(false);
                    *current_id = Some(current_id.map_or(cid, |cur| cur.max(cid)));
                    actions.push(on_cancel(cid));
                }
            }
            Strategy::Tracking {
                latest_id,
                pending,
                started,
            } => {
                if open == 1 && is_newer(cid, *latest_id) {
                    *latest_id = Some(cid);
                    *started = None;
                    actions.push(on_cancel(cid));
                    return Ok(actions);
                }
                while let Some(front) = pending.front_mut() {
                    if front.id >= cid {
                        break;
                    }
                    if front.mark_aborted() {
                        actions.push(on_cancel(front.id));
                    }
                    pending.pop_front();
                }
                match pending.front_mut() {
                    Some(front) if front.id == cid => {
                        if front.mark_aborted() {
                            actions.push(on_cancel(cid));
                        }
                        // Still counted, so that the entry goes once every barrier was seen.
                        if front.mark_seen(channel) >= front.target {
                            pending.pop_front();
                        }
                    }
                    _ if is_newer(cid, *latest_id) => {
                        actions.push(on_cancel(cid));
                        *latest_id = Some(cid);
                        *started = None;
                        let mut marker = BarrierCount {
                            id: cid,
                            barrier: None,
                            seen: vec![false; self.finished.len()],
                            seen_count: 0,
                            target: open,
                            aborted: true,
                        };
                        marker.mark_seen(channel);
                        pending.push_front(marker);
                    }
                    // A trailing marker of a checkpoint already cancelled or done.
                    _ => {}
                }
            }
        }
        Ok(actions)
    }

    /// `channel` delivered its end of stream at `now_ms`; nothing more comes from it.
    pub fn on_end_of_stream(&mut self, channel: usize, now_ms: i64) -> Result<Vec<AlignerAction>> {
        self.check_open(channel, "end of stream")?;
        self.finished[channel] = true;
        self.open_channels -= 1;
        let mut actions = Vec::new();
        let after_finish = self.checkpoints_after_tasks_finish;
        match &mut self.strategy {
            Strategy::Aligned {
                aligned,
                blocked,
                alignment,
                ..
            } => {
                let Some(a) = alignment.as_mut() else {
                    return Ok(actions);
                };
                if blocked[channel] {
                    return Err(EngineError::internal(format!(
                        "end of stream read from blocked input channel {channel}"
                    )));
                }
                if !after_finish {
                    actions.push(AlignerAction::Abort(AbortedCheckpoint {
                        checkpoint_id: a.barrier.id,
                        reason: CheckpointFailureReason::CheckpointDeclinedInputEndOfStream,
                    }));
                    *alignment = None;
                    aligned.fill(false);
                    blocked.fill(false);
                    return Ok(actions);
                }
                aligned[channel] = true;
                a.aligned_count += 1;
                if a.aligned_count >= a.target {
                    let done = alignment
                        .take()
                        .expect("invariant: alignment is in progress");
                    aligned.fill(false);
                    blocked.fill(false);
                    self.last_alignment_duration_ms = elapsed(done.started_at_ms, now_ms);
                    actions.push(AlignerAction::TriggerSnapshot(SnapshotTrigger {
                        barrier: done.barrier,
                        alignment_duration_ms: self.last_alignment_duration_ms,
                        start_delay_ms: done.start_delay_ms,
                    }));
                }
            }
            Strategy::Tracking {
                latest_id,
                pending,
                started,
            } => {
                if !after_finish {
                    while let Some(mut count) = pending.pop_front() {
                        if count.mark_aborted() {
                            actions.push(AlignerAction::Abort(AbortedCheckpoint {
                                checkpoint_id: count.id,
                                reason: CheckpointFailureReason::CheckpointDeclinedInputEndOfStream,
                            }));
                        }
                    }
                    *started = None;
                    return Ok(actions);
                }
                // The newest checkpoint that waited only for this channel completes, and with it
                // every older one is subsumed.
                let mut completed = None;
                for pos in (0..pending.len()).rev() {
                    let count = &mut pending[pos];
                    if count.mark_seen(channel) >= count.target {
                        completed = Some(pos);
                        break;
                    }
                }
                if let Some(pos) = completed {
                    let mut done = None;
                    for _ in 0..=pos {
                        done = pending.pop_front();
                    }
                    let done = done.expect("invariant: pending holds pos + 1 entries");
                    if !done.aborted {
                        let (duration, delay) = match (*latest_id, *started) {
                            (Some(l), Some((at, delay))) if l == done.id => {
                                *started = None;
                                (elapsed(at, now_ms), delay)
                            }
                            _ => (self.last_alignment_duration_ms, self.last_start_delay_ms),
                        };
                        self.last_alignment_duration_ms = duration;
                        if let Some(barrier) = done.barrier {
                            actions.push(AlignerAction::TriggerSnapshot(SnapshotTrigger {
                                barrier,
                                alignment_duration_ms: duration,
                                start_delay_ms: delay,
                            }));
                        }
                    }
                }
            }
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckpointFailureReason as R;

    /// One input event: a barrier (channel, id, now), a cancellation marker (channel, id) or an
    /// end of stream (channel, now).
    #[derive(Clone, Copy, Debug)]
    enum Ev {
        B(usize, u64, i64),
        C(usize, u64),
        E(usize, i64),
    }
    use Ev::{B, C, E};

    /// A compact expected action: Block(ch), Trigger(id, alignment ms), Abort(id, reason).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Act {
        Block(usize),
        Trigger(u64, i64),
        Abort(u64, R),
    }

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier::checkpoint(id, 0)
    }

    fn compact(actions: Vec<AlignerAction>) -> Vec<Act> {
        actions
            .into_iter()
            .map(|a| match a {
                AlignerAction::Block(c) => Act::Block(c),
                AlignerAction::TriggerSnapshot(t) => {
                    Act::Trigger(t.barrier.id, t.alignment_duration_ms)
                }
                AlignerAction::Abort(a) => Act::Abort(a.checkpoint_id, a.reason),
            })
            .collect()
    }

    fn feed(aligner: &mut BarrierAligner, ev: Ev) -> Vec<Act> {
        let out = match ev {
            B(ch, id, now) => aligner.on_barrier(ch, &barrier(id), now),
            C(ch, id) => aligner.on_cancellation(ch, CancelCheckpointMarker { checkpoint_id: id }),
            E(ch, now) => aligner.on_end_of_stream(ch, now),
        };
        compact(out.expect("protocol respected"))
    }

    /// Runs a scenario: every step is an event and the actions it must produce.
    fn run(
        name: &str,
        mode: CheckpointingMode,
        channels: usize,
        after_finish: bool,
        steps: &[(Ev, &[Act])],
    ) -> BarrierAligner {
        let mut aligner = BarrierAligner::new(channels, mode, after_finish);
        for (i, (ev, expected)) in steps.iter().enumerate() {
            assert_eq!(
                feed(&mut aligner, *ev),
                expected.to_vec(),
                "{name}: step {i} {ev:?}"
            );
        }
        aligner
    }

    const EO: CheckpointingMode = CheckpointingMode::ExactlyOnce;
    const ALO: CheckpointingMode = CheckpointingMode::AtLeastOnce;

    #[test]
    fn exactly_once_scenarios() {
        type Scenario = (&'static str, usize, bool, &'static [(Ev, &'static [Act])]);
        let table: &[Scenario] = &[
            (
                "one input snapshots at once",
                1,
                true,
                &[(B(0, 1, 5), &[Act::Trigger(1, 0)])],
            ),
            (
                "three inputs align, duration from first to last barrier",
                3,
                true,
                &[
                    (B(1, 1, 100), &[Act::Block(1)]),
                    (B(0, 1, 130), &[Act::Block(0)]),
                    (B(2, 1, 175), &[Act::Trigger(1, 75)]),
                ],
            ),
            (
                "consecutive checkpoints",
                2,
                true,
                &[
                    (B(0, 1, 0), &[Act::Block(0)]),
                    (B(1, 1, 1), &[Act::Trigger(1, 1)]),
                    (B(1, 2, 10), &[Act::Block(1)]),
                    (B(0, 2, 14), &[Act::Trigger(2, 4)]),
                ],
            ),
            (
                "a newer barrier subsumes the alignment of an older checkpoint",
                3,
                true,
                &[
                    (B(0, 1, 0), &[Act::Block(0)]),
                    (
                        B(1, 2, 5),
                        &[Act::Abort(1, R::CheckpointDeclinedSubsumed), Act::Block(1)],
                    ),
                    (B(0, 2, 6), &[Act::Block(0)]),
                    (B(2, 1, 7), &[]),
                    (B(2, 2, 9), &[Act::Trigger(2, 4)]),
                ],
            ),
            (
                "barriers of a completed or older checkpoint are obsolete",
                2,
                true,
                &[
                    (B(0, 3, 0), &[Act::Block(0)]),
                    (B(1, 3, 0), &[Act::Trigger(3, 0)]),
                    (B(0, 3, 1), &[]),
                    (B(1, 2, 1), &[]),
                ],
            ),
            (
                "a cancellation marker aborts the alignment",
                2,
                true,
                &[
                    (B(0, 1, 0), &[Act::Block(0)]),
                    (
                        C(1, 1),
                        &[Act::Abort(1, R::CheckpointDeclinedOnCancellationBarrier)],
                    ),
                    (B(1, 1, 3), &[]),
                    (B(0, 2, 4), &[Act::Block(0)]),
                    (B(1, 2, 4), &[Act::Trigger(2, 0)]),
                ],
            ),
            (
                "a cancellation marker of a future checkpoint aborts it before its barriers",
                2,
                true,
                &[
                    (
                        C(0, 4),
                        &[Act::Abort(4, R::CheckpointDeclinedOnCancellationBarrier)],
                    ),
                    (B(1, 4, 1), &[]),
                    (C(1, 4), &[]),
                    (B(1, 5, 2), &[Act::Block(1)]),
                ],
            ),
            (
                "a cancellation marker of a newer checkpoint declines the older alignment",
                2,
                true,
                &[
                    (B(0, 1, 0), &[Act::Block(0)]),
                    (
                        C(1, 2),
                        &[
                            Act::Abort(1, R::CheckpointDeclinedSubsumed),
                            Act::Abort(2, R::CheckpointDeclinedOnCancellationBarrier),
                        ],
                    ),
                ],
            ),
            (
                "a trailing cancellation marker is ignored",
                2,
                true,
                &[
                    (B(0, 1, 0), &[Act::Block(0)]),
                    (B(1, 1, 0), &[Act::Trigger(1, 0)]),
                    (C(0, 1), &[]),
                ],
            ),
            (
                "a finished input counts as aligned",
                3,
                true,
                &[
                    (B(0, 1, 10), &[Act::Block(0)]),
                    (E(2, 12), &[]),
                    (B(1, 1, 20), &[Act::Trigger(1, 10)]),
                    (B(0, 2, 30), &[Act::Block(0)]),
                    (B(1, 2, 31), &[Act::Trigger(2, 1)]),
                ],
            ),
            (
                "the last open input finishing completes the alignment",
                2,
                true,
                &[
                    (B(0, 1, 10), &[Act::Block(0)]),
                    (E(1, 25), &[Act::Trigger(1, 15)]),
                ],
            ),
            (
                "without checkpoints after tasks finish, end of stream aborts",
                2,
                false,
                &[
                    (B(0, 1, 10), &[Act::Block(0)]),
                    (
                        E(1, 25),
                        &[Act::Abort(1, R::CheckpointDeclinedInputEndOfStream)],
                    ),
                    (B(0, 2, 30), &[Act::Trigger(2, 0)]),
                ],
            ),
            (
                "end of stream with nothing aligning changes nothing",
                2,
                false,
                &[(E(1, 0), &[]), (B(0, 1, 1), &[Act::Trigger(1, 0)])],
            ),
        ];
        for (name, channels, after_finish, steps) in table {
            run(name, EO, *channels, *after_finish, steps);
        }
    }

    #[test]
    fn exactly_once_blocks_exactly_the_channels_whose_barrier_arrived() {
        let mut a = BarrierAligner::new(3, EO, true);
        assert!(!a.is_aligning());
        feed(&mut a, B(2, 7, 100));
        assert!(a.is_blocked(2) && !a.is_blocked(0) && !a.is_blocked(1));
        assert_eq!(a.aligning_checkpoint_id(), Some(7));
        assert_eq!(a.alignment_duration_ms(140), 40);
        feed(&mut a, B(0, 7, 150));
        assert!(a.is_blocked(0) && a.is_blocked(2));
        feed(&mut a, B(1, 7, 160));
        assert!((0..3).all(|c| !a.is_blocked(c)));
        assert!(!a.is_aligning());
        assert_eq!(a.alignment_duration_ms(999), 60);
        assert!(!a.is_blocked(99));
    }

    #[test]
    fn abort_unblocks_every_channel() {
        let mut a = BarrierAligner::new(3, EO, true);
        feed(&mut a, B(0, 1, 0));
        feed(&mut a, B(1, 1, 0));
        feed(&mut a, C(2, 1));
        assert!((0..3).all(|c| !a.is_blocked(c)));
        let mut a = BarrierAligner::new(3, EO, true);
        feed(&mut a, B(0, 1, 0));
        feed(&mut a, B(1, 2, 0));
        assert!(!a.is_blocked(0) && a.is_blocked(1));
    }

    #[test]
    fn start_delay_and_trigger_carry_the_barrier() {
        let mut a = BarrierAligner::new(2, EO, true);
        let b = CheckpointBarrier {
            id: 9,
            timestamp: 1_000,
            savepoint: Some(crate::message::SavepointTarget {
                dir: std::sync::Arc::new("/sp/savepoint-abc".into()),
                stop: false,
            }),
        };
        a.on_barrier(0, &b, 1_250).expect("ok");
        let out = a.on_barrier(1, &b, 1_300).expect("ok");
        assert_eq!(
            out,
            vec![AlignerAction::TriggerSnapshot(SnapshotTrigger {
                barrier: b,
                alignment_duration_ms: 50,
                start_delay_ms: 250,
            })]
        );
        assert_eq!(a.start_delay_ms(), 250);
    }

    #[test]
    fn protocol_violations_are_errors_not_panics() {
        for mode in [EO, ALO] {
            let mut a = BarrierAligner::new(2, mode, true);
            assert!(a.on_barrier(2, &barrier(1), 0).is_err());
            assert!(a.on_end_of_stream(5, 0).is_err());
            assert!(a
                .on_cancellation(9, CancelCheckpointMarker { checkpoint_id: 1 })
                .is_err());
            a.on_end_of_stream(1, 0).expect("ok");
            assert!(a.on_end_of_stream(1, 0).is_err());
            assert!(a.on_barrier(1, &barrier(1), 0).is_err());
            assert_eq!(a.open_channels(), 1);
        }
        let mut a = BarrierAligner::new(2, EO, true);
        feed(&mut a, B(0, 1, 0));
        assert!(a.on_barrier(0, &barrier(1), 0).is_err());
        assert!(a.on_end_of_stream(0, 0).is_err());
        let mut none = BarrierAligner::new(0, EO, true);
        assert!(none.on_barrier(0, &barrier(1), 0).is_err());
    }

    #[test]
    fn clock_going_backwards_gives_zero_durations() {
        let mut a = BarrierAligner::new(2, EO, true);
        feed(&mut a, B(0, 1, 100));
        assert_eq!(feed(&mut a, B(1, 1, 50)), vec![Act::Trigger(1, 0)]);
    }

    #[test]
    fn switching_to_unaligned_ends_the_alignment_and_obsoletes_later_barriers() {
        let mut a = BarrierAligner::new(3, EO, true);
        assert_eq!(feed(&mut a, B(0, 4, 100)), vec![Act::Block(0)]);
        let b = CheckpointBarrier::checkpoint(4, 0);
        assert_eq!(
            compact(a.switch_to_unaligned(&b, 130)),
            vec![Act::Trigger(4, 30)]
        );
        assert!(!a.is_blocked(0), "every channel unblocks");
        assert!(!a.is_aligning());
        assert_eq!(
            feed(&mut a, B(1, 4, 140)),
            vec![],
            "later barriers are obsolete"
        );
        assert!(
            a.switch_to_unaligned(&b, 150).is_empty(),
            "once per checkpoint"
        );
        // Unaligned at the first barrier: no alignment, an older one is subsumed.
        assert_eq!(feed(&mut a, B(2, 5, 200)), vec![Act::Block(2)]);
        let b6 = CheckpointBarrier::checkpoint(6, 0);
        assert_eq!(
            compact(a.switch_to_unaligned(&b6, 210)),
            vec![
                Act::Abort(5, R::CheckpointDeclinedSubsumed),
                Act::Trigger(6, 0)
            ]
        );
        assert_eq!(a.start_delay_ms(), 210);
        let mut alo = BarrierAligner::new(2, ALO, true);
        assert!(
            alo.switch_to_unaligned(&b6, 1).is_empty(),
            "never in AT_LEAST_ONCE"
        );
    }

    #[test]
    fn at_least_once_scenarios() {
        type Scenario = (&'static str, usize, bool, &'static [(Ev, &'static [Act])]);
        let table: &[Scenario] = &[
            (
                "one input snapshots at once",
                1,
                true,
                &[(B(0, 1, 5), &[Act::Trigger(1, 0)])],
            ),
            (
                "never blocks; snapshot on the last barrier",
                3,
                true,
                &[
                    (B(0, 1, 100), &[]),
                    (B(1, 1, 110), &[]),
                    (B(2, 1, 150), &[Act::Trigger(1, 50)]),
                ],
            ),
            (
                "overlapping checkpoints complete in order",
                2,
                true,
                &[
                    (B(0, 1, 0), &[]),
                    (B(0, 2, 5), &[]),
                    (B(1, 1, 6), &[Act::Trigger(1, 0)]),
                    (B(1, 2, 9), &[Act::Trigger(2, 4)]),
                ],
            ),
            (
                "completing a newer checkpoint drops older partial ones silently",
                2,
                true,
                &[
                    (B(0, 1, 0), &[]),
                    (B(0, 2, 1), &[]),
                    (B(1, 2, 3), &[Act::Trigger(2, 2)]),
                    (B(1, 1, 4), &[]),
                ],
            ),
            (
                "a barrier older than the newest seen starts nothing",
                2,
                true,
                &[(B(0, 5, 0), &[]), (B(1, 4, 0), &[]), (B(0, 4, 0), &[])],
            ),
            (
                "a cancellation marker aborts that checkpoint and every older one",
                3,
                true,
                &[
                    (B(0, 1, 0), &[]),
                    (B(0, 2, 0), &[]),
                    (B(1, 3, 0), &[]),
                    (
                        C(2, 2),
                        &[
                            Act::Abort(1, R::CheckpointDeclinedOnCancellationBarrier),
                            Act::Abort(2, R::CheckpointDeclinedOnCancellationBarrier),
                        ],
                    ),
                    (B(1, 2, 1), &[]),
                    (B(2, 2, 1), &[]),
                    (B(0, 3, 2), &[]),
                    (B(2, 3, 3), &[Act::Trigger(3, 3)]),
                ],
            ),
            (
                "a cancellation marker of an unseen checkpoint aborts it once",
                2,
                true,
                &[
                    (
                        C(0, 7),
                        &[Act::Abort(7, R::CheckpointDeclinedOnCancellationBarrier)],
                    ),
                    (C(1, 7), &[]),
                    (B(0, 7, 0), &[]),
                    (B(0, 8, 1), &[]),
                    (B(1, 8, 2), &[Act::Trigger(8, 1)]),
                ],
            ),
            (
                "one input: a cancellation marker aborts at once",
                1,
                true,
                &[
                    (
                        C(0, 3),
                        &[Act::Abort(3, R::CheckpointDeclinedOnCancellationBarrier)],
                    ),
                    (B(0, 3, 0), &[]),
                    (B(0, 4, 0), &[Act::Trigger(4, 0)]),
                ],
            ),
            (
                "a finished input completes the newest checkpoint waiting only for it",
                3,
                true,
                &[
                    (B(0, 1, 0), &[]),
                    (B(1, 1, 0), &[]),
                    (B(0, 2, 10), &[]),
                    (E(2, 20), &[Act::Trigger(1, 0)]),
                    (B(1, 2, 30), &[Act::Trigger(2, 20)]),
                ],
            ),
            (
                "without checkpoints after tasks finish, end of stream aborts all pending",
                3,
                false,
                &[
                    (B(0, 1, 0), &[]),
                    (B(0, 2, 0), &[]),
                    (
                        E(2, 1),
                        &[
                            Act::Abort(1, R::CheckpointDeclinedInputEndOfStream),
                            Act::Abort(2, R::CheckpointDeclinedInputEndOfStream),
                        ],
                    ),
                    (B(1, 3, 2), &[]),
                    (B(0, 3, 2), &[Act::Trigger(3, 0)]),
                ],
            ),
        ];
        for (name, channels, after_finish, steps) in table {
            let a = run(name, ALO, *channels, *after_finish, steps);
            assert!((0..*channels).all(|c| !a.is_blocked(c)), "{name}");
        }
    }

    #[test]
    fn at_least_once_tracks_at_most_fifty_checkpoints() {
        let mut a = BarrierAligner::new(2, ALO, true);
        for id in 1..=60 {
            assert_eq!(feed(&mut a, B(0, id, 0)), vec![]);
        }
        // Checkpoint 5 was forgotten; 11 is still tracked.
        assert_eq!(feed(&mut a, B(1, 5, 0)), vec![]);
        assert_eq!(feed(&mut a, B(1, 11, 0)), vec![Act::Trigger(11, 0)]);
        assert_eq!(a.aligning_checkpoint_id(), Some(60));
        assert_eq!(feed(&mut a, B(1, 60, 7)), vec![Act::Trigger(60, 7)]);
        assert!(!a.is_aligning());
    }
}
