//! Unaligned checkpoints at one task: where each input's barrier sits in its channel, and which
//! received messages are in flight for the checkpoint being recorded (Flink's channel state).
//!
//! With unaligned checkpoints a sender puts a checkpoint barrier on a separate priority path of
//! every channel, stamped with the number of messages it had sent on that channel before it. The
//! stamp is the barrier's position in the data: message `s` (counted from 1) is before the
//! barrier exactly when `s <= stamp`. An [`InFlightTracker`] counts the messages the task
//! processes per channel and answers two questions:
//! - aligned phase (a checkpoint that starts aligned, or a savepoint): has the barrier announced on
//!   a channel been reached, i.e. were all messages before it processed? Only then does the
//!   [`crate::checkpoint::BarrierAligner`] see it, so alignment is exactly Flink's, whichever path
//!   the barrier travelled.
//! - unaligned phase: once the task snapshotted for checkpoint n, every message processed after
//!   the snapshot that is before n's barrier on its channel is in flight and must be persisted with
//!   the checkpoint. A channel whose barrier is not yet announced records everything until its
//!   announcement bounds it. The channel state is complete when every channel has reached its
//!   barrier (or had already reached it at the snapshot).
//!
//! [`UnalignedPolicy`] decides when a checkpoint is taken unaligned: at once
//! (`execution.checkpointing.aligned-checkpoint-timeout` 0), or when the time since the
//! checkpoint was triggered reaches the timeout while the task has not yet snapshotted (Flink's
//! alignment timer, measured from the barrier's trigger timestamp). Savepoints are always aligned.
//!
//! Invariants: counts only grow; a message is recorded at most once and only for the one
//! checkpoint being recorded; a newer checkpoint's announcement aborts an older recording (it is
//! reported, never silently dropped); nothing here does I/O or reads a clock.

use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;

/// When checkpoints are taken unaligned (exactly-once only; see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnalignedPolicy {
    /// `execution.checkpointing.unaligned.enabled` in EXACTLY_ONCE mode.
    pub enabled: bool,
    /// `execution.checkpointing.aligned-checkpoint-timeout` in milliseconds.
    pub aligned_timeout_ms: i64,
}

impl UnalignedPolicy {
    /// When checkpoint `barrier` must switch to unaligned at the latest (milliseconds on the
    /// coordinator's clock), or `None` when it is never taken unaligned.
    pub fn deadline(&self, barrier: &CheckpointBarrier) -> Option<i64> {
        (self.enabled && !barrier.is_savepoint()).then(|| {
            barrier
                .timestamp
                .saturating_add(self.aligned_timeout_ms.max(0))
        })
    }

    /// Whether checkpoint `barrier` is to be taken unaligned when the task sees it at `now_ms`.
    pub fn is_unaligned_at(&self, barrier: &CheckpointBarrier, now_ms: i64) -> bool {
        self.deadline(barrier).is_some_and(|d| now_ms >= d)
    }
}

/// What an announced barrier means for the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announced {
    /// The barrier is still behind messages the task has not processed.
    Pending,
    /// Every message before the barrier was processed: the barrier arrives now.
    Reached(CheckpointBarrier),
    /// It belongs to the checkpoint being recorded: its channel's recording is now bounded.
    Bounded,
    /// An older checkpoint's barrier: ignored.
    Obsolete,
}

/// What to do with a message about to be processed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFate {
    /// The message is in flight for the checkpoint being recorded: persist a copy.
    pub record: bool,
    /// After this message the channel's announced barrier is reached: hand it to the aligner.
    pub barrier_after: Option<CheckpointBarrier>,
}

#[derive(Debug)]
struct Recording {
    checkpoint_id: u64,
    /// Messages of each channel processed before the snapshot.
    from: Vec<u64>,
    /// The barrier's stamp of each channel, once known.
    until: Vec<Option<u64>>,
    /// The last message of each channel recorded: messages are recorded when the task copies
    /// them ahead of processing ([`InFlightTracker::on_pulled`]) or when it processes them.
    recorded: Vec<u64>,
}

/// Per-channel message counts and the in-flight window of the checkpoint being recorded.
#[derive(Debug)]
pub struct InFlightTracker {
    /// Messages processed per channel.
    processed: Vec<u64>,
    /// A barrier announced but not yet reached, with its stamp.
    announced: Vec<Option<(CheckpointBarrier, u64)>>,
    /// The newest checkpoint whose barrier each channel reached.
    reached: Vec<Option<u64>>,
    /// Channels that ended.
    finished: Vec<bool>,
    /// Newest checkpoint id announced on any channel.
    newest: Option<u64>,
    recording: Option<Recording>,
}

impl InFlightTracker {
    /// A tracker for a task with `channels` inputs.
    pub fn new(channels: usize) -> Self {
        InFlightTracker {
            processed: vec![0; channels],
            announced: vec![None; channels],
            reached: vec![None; channels],
            finished: vec![false; channels],
            newest: None,
            recording: None,
        }
    }

    fn check(&self, channel: usize) -> Result<()> {
        if channel < self.processed.len() {
            Ok(())
        } else {
            Err(EngineError::internal(format!(
                "input channel {channel} of a task with {} channels",
                self.processed.len()
            )))
        }
    }

    /// Messages of `channel` processed so far.
    pub fn processed(&self, channel: usize) -> u64 {
        self.processed.get(channel).copied().unwrap_or(0)
    }

    /// The checkpoint being recorded, if any.
    pub fn recording_id(&self) -> Option<u64> {
        self.recording.as_ref().map(|r| r.checkpoint_id)
    }

    /// Barrier `barrier` was announced on `channel` with `stamp` (messages before it). Returns
    /// the older checkpoint whose recording this announcement aborts, if any, and what the
    /// barrier means now.
    pub fn announce(
        &mut self,
        channel: usize,
        barrier: &CheckpointBarrier,
        stamp: u64,
    ) -> Result<(Option<u64>, Announced)> {
        self.check(channel)?;
        let id = barrier.id;
        if stamp < self.processed[channel] {
            return Err(EngineError::internal(format!(
                "barrier {id} on input channel {channel} is stamped {stamp}, but {} messages were processed",
                self.processed[channel]
            )));
        }
        let mut aborted = None;
        if let Some(r) = &mut self.recording {
            if r.checkpoint_id == id {
                if r.until[channel].is_some() {
                    return Err(EngineError::internal(format!(
                        "a second barrier of checkpoint {id} on input channel {channel}"
                    )));
                }
                r.until[channel] = Some(stamp);
                return Ok((None, Announced::Bounded));
            }
            if r.checkpoint_id < id {
                aborted = Some(r.checkpoint_id);
                self.recording = None;
            } else {
                return Ok((None, Announced::Obsolete));
            }
        }
        if self.newest.is_some_and(|n| n > id) || self.reached[channel].is_some_and(|r| r >= id) {
            return Ok((aborted, Announced::Obsolete));
        }
        self.newest = Some(self.newest.map_or(id, |n| n.max(id)));
        if stamp == self.processed[channel] {
            self.announced[channel] = None;
            self.reached[channel] = Some(id);
            return Ok((aborted, Announced::Reached(barrier.clone())));
        }
        self.announced[channel] = Some((barrier.clone(), stamp));
        Ok((aborted, Announced::Pending))
    }

    /// A message of `channel` is about to be processed (the next one in its order).
    pub fn on_message(&mut self, channel: usize) -> Result<MessageFate> {
        self.check(channel)?;
        self.processed[channel] += 1;
        let seq = self.processed[channel];
        let record = self.record(channel, seq);
        let mut barrier_after = None;
        if let Some((_, stamp)) = &self.announced[channel] {
            if *stamp == seq {
                if let Some((b, _)) = self.announced[channel].take() {
                    self.reached[channel] = Some(b.id);
                    barrier_after = Some(b);
                }
            }
        }
        Ok(MessageFate {
            record,
            barrier_after,
        })
    }

    /// Whether message `seq` of `channel` is in flight and not yet recorded; marks it recorded.
    fn record(&mut self, channel: usize, seq: u64) -> bool {
        let Some(r) = self.recording.as_mut() else {
            return false;
        };
        let in_window = seq > r.from[channel] && r.until[channel].is_none_or(|until| seq <= until);
        if in_window && seq > r.recorded[channel] {
            r.recorded[channel] = seq;
            return true;
        }
        false
    }

    /// How many more messages of `channel` the task may copy ahead of processing, with `held`
    /// already copied and not yet processed: those up to the channel's barrier, once known. The
    /// checkpoint then completes without waiting for the task to process its in-flight data, as
    /// Flink persists its input buffers; the copies are bounded by the channel's capacity.
    pub fn to_pull(&self, channel: usize, held: usize) -> u64 {
        let Some(r) = &self.recording else {
            return 0;
        };
        match (r.until.get(channel), self.processed.get(channel)) {
            (Some(Some(until)), Some(p)) => until.saturating_sub(p + held as u64),
            _ => 0,
        }
    }

    /// The task copied message `seq` of `channel` ahead of processing it: whether to record it.
    /// [`InFlightTracker::on_message`] does not record it again.
    pub fn on_pulled(&mut self, channel: usize, seq: u64) -> bool {
        channel < self.processed.len() && self.record(channel, seq)
    }

    /// `channel` ended after the message last processed. Returns the checkpoint whose recording
    /// can no longer complete (the channel ended before its barrier), which the task declines.
    pub fn on_end_of_stream(&mut self, channel: usize) -> Result<Option<u64>> {
        self.check(channel)?;
        self.finished[channel] = true;
        self.announced[channel] = None;
        let open = self
            .recording
            .as_ref()
            .is_some_and(|r| r.until[channel].is_none());
        if open {
            return Ok(self.recording.take().map(|r| r.checkpoint_id));
        }
        Ok(None)
    }

    /// The task snapshotted checkpoint `id` unaligned: from now on, messages before `id`'s
    /// barriers are recorded. Channels that already reached the barrier (or ended) record nothing.
    pub fn start_recording(&mut self, id: u64) {
        let n = self.processed.len();
        let mut until = vec![None; n];
        for (ch, slot) in until.iter_mut().enumerate() {
            if self.finished[ch] || self.reached[ch] == Some(id) {
                *slot = Some(self.processed[ch]);
            } else if let Some((b, stamp)) = &self.announced[ch] {
                if b.id == id {
                    *slot = Some(*stamp);
                }
            }
        }
        // Announcements of this checkpoint now bound the recording; none stays pending.
        for a in &mut self.announced {
            if a.as_ref().is_some_and(|(b, _)| b.id <= id) {
                *a = None;
            }
        }
        self.newest = Some(self.newest.map_or(id, |x| x.max(id)));
        self.recording = Some(Recording {
            checkpoint_id: id,
            from: self.processed.clone(),
            until,
            recorded: self.processed.clone(),
        });
    }

    /// Every channel of the checkpoint being recorded has reached its barrier.
    pub fn is_complete(&self) -> bool {
        self.recording.as_ref().is_some_and(|r| {
            r.until
                .iter()
                .zip(self.processed.iter().zip(&r.recorded))
                .all(|(u, (p, rec))| u.is_some_and(|u| (*p).max(*rec) >= u))
        })
    }

    /// Ends the recording (complete or abandoned) and returns its checkpoint id.
    pub fn finish_recording(&mut self) -> Option<u64> {
        self.recording.take().map(|r| r.checkpoint_id)
    }

    /// Forgets announced barriers of checkpoints up to `id` (it was aborted at this task).
    pub fn abort(&mut self, id: u64) {
        for a in &mut self.announced {
            if a.as_ref().is_some_and(|(b, _)| b.id <= id) {
                *a = None;
            }
        }
        if self.recording_id().is_some_and(|r| r <= id) {
            self.recording = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier::checkpoint(id, 1000)
    }

    /// Processes `n` messages of `channel`, returning how many were recorded.
    fn process(t: &mut InFlightTracker, channel: usize, n: usize) -> usize {
        (0..n)
            .filter(|_| t.on_message(channel).expect("in range").record)
            .count()
    }

    #[test]
    fn policy_switches_at_the_timeout_measured_from_the_trigger() {
        let p = UnalignedPolicy {
            enabled: true,
            aligned_timeout_ms: 0,
        };
        assert!(
            p.is_unaligned_at(&barrier(1), 1000),
            "0 ms: unaligned at once"
        );
        let p = UnalignedPolicy {
            enabled: true,
            aligned_timeout_ms: 500,
        };
        assert!(!p.is_unaligned_at(&barrier(1), 1499));
        assert!(p.is_unaligned_at(&barrier(1), 1500));
        assert_eq!(p.deadline(&barrier(1)), Some(1500));
        let mut sp = barrier(2);
        sp.savepoint = Some(crate::message::SavepointTarget {
            dir: std::sync::Arc::new(std::path::PathBuf::from("x")),
            stop: false,
        });
        assert_eq!(p.deadline(&sp), None, "savepoints are always aligned");
        assert_eq!(UnalignedPolicy::default().deadline(&barrier(1)), None);
    }

    #[test]
    fn unaligned_records_exactly_the_messages_before_each_barrier() {
        let mut t = InFlightTracker::new(2);
        // Channel 0: 3 processed, then its barrier overtakes 4 queued messages (stamp 7).
        assert_eq!(process(&mut t, 0, 3), 0);
        assert_eq!(process(&mut t, 1, 2), 0);
        let (aborted, a) = t.announce(0, &barrier(1), 7).expect("ok");
        assert_eq!((aborted, a), (None, Announced::Pending));
        t.start_recording(1);
        assert!(!t.is_complete());
        // Channel 0: messages 4..=7 are in flight, 8 is after the barrier.
        assert_eq!(process(&mut t, 0, 5), 4);
        // Channel 1: everything is recorded until its barrier is announced (stamp 6).
        assert_eq!(process(&mut t, 1, 3), 3);
        assert_eq!(
            t.announce(1, &barrier(1), 6).expect("ok"),
            (None, Announced::Bounded)
        );
        assert!(!t.is_complete());
        assert_eq!(process(&mut t, 1, 1), 1, "message 6 is before the barrier");
        assert!(t.is_complete());
        assert_eq!(process(&mut t, 1, 1), 0, "message 7 is after it");
        assert_eq!(t.finish_recording(), Some(1));
    }

    #[test]
    fn aligned_phase_reaches_the_barrier_after_the_messages_before_it() {
        let mut t = InFlightTracker::new(2);
        process(&mut t, 0, 2);
        assert_eq!(
            t.announce(0, &barrier(3), 4).expect("ok").1,
            Announced::Pending
        );
        assert_eq!(t.on_message(0).expect("ok").barrier_after, None);
        let fate = t.on_message(0).expect("ok");
        assert_eq!(fate.barrier_after, Some(barrier(3)));
        assert!(!fate.record);
        // A barrier whose position was already reached arrives at once.
        assert_eq!(
            t.announce(1, &barrier(3), 0).expect("ok").1,
            Announced::Reached(barrier(3))
        );
        // A second announcement of the same checkpoint on channel 0 is obsolete.
        assert_eq!(
            t.announce(0, &barrier(3), 9).expect("ok").1,
            Announced::Obsolete
        );
    }

    #[test]
    fn timeout_switch_records_only_channels_not_yet_aligned() {
        let mut t = InFlightTracker::new(3);
        // Channel 0 reached its barrier (blocked by the aligner); channel 1's is announced
        // behind 2 messages; channel 2's is not announced yet.
        assert_eq!(
            t.announce(0, &barrier(5), 0).expect("ok").1,
            Announced::Reached(barrier(5))
        );
        t.announce(1, &barrier(5), 2).expect("ok");
        t.start_recording(5);
        assert_eq!(process(&mut t, 1, 3), 2);
        assert_eq!(process(&mut t, 2, 4), 4);
        assert!(!t.is_complete());
        t.announce(2, &barrier(5), 4).expect("ok");
        assert!(t.is_complete());
        assert_eq!(
            process(&mut t, 0, 1),
            0,
            "channel 0 was aligned: nothing in flight"
        );
    }

    #[test]
    fn a_newer_checkpoint_aborts_the_recording_and_end_of_stream_declines_it() {
        let mut t = InFlightTracker::new(2);
        t.announce(0, &barrier(1), 0).expect("ok");
        t.start_recording(1);
        let (aborted, a) = t.announce(0, &barrier(2), 0).expect("ok");
        assert_eq!(aborted, Some(1));
        assert_eq!(a, Announced::Reached(barrier(2)));
        assert_eq!(t.recording_id(), None);
        assert_eq!(
            t.announce(1, &barrier(1), 0).expect("ok").1,
            Announced::Obsolete
        );

        let mut t = InFlightTracker::new(2);
        t.announce(0, &barrier(1), 0).expect("ok");
        t.start_recording(1);
        assert_eq!(t.on_end_of_stream(1).expect("ok"), Some(1));
        assert_eq!(t.recording_id(), None);
        // A channel that ended before the snapshot records nothing and does not hold it up.
        let mut t = InFlightTracker::new(2);
        t.on_end_of_stream(1).expect("ok");
        t.announce(0, &barrier(4), 0).expect("ok");
        t.start_recording(4);
        assert!(t.is_complete());
    }

    #[test]
    fn copies_ahead_of_processing_complete_the_recording_and_are_not_recorded_twice() {
        let mut t = InFlightTracker::new(1);
        process(&mut t, 0, 2);
        t.announce(0, &barrier(1), 5).expect("ok");
        t.start_recording(1);
        assert_eq!(t.to_pull(0, 0), 3, "messages 3..=5 are before the barrier");
        assert!(t.on_pulled(0, 3));
        assert!(t.on_pulled(0, 4));
        assert_eq!(t.to_pull(0, 2), 1);
        assert!(!t.is_complete());
        assert!(t.on_pulled(0, 5));
        assert!(t.is_complete(), "complete before any of them is processed");
        assert_eq!(t.to_pull(0, 3), 0);
        assert!(!t.on_pulled(0, 6), "after the barrier");
        assert_eq!(
            process(&mut t, 0, 4),
            0,
            "already recorded, or after the barrier"
        );
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut t = InFlightTracker::new(1);
        assert!(t.on_message(1).is_err());
        process(&mut t, 0, 3);
        assert!(
            t.announce(0, &barrier(1), 2).is_err(),
            "stamp behind processed"
        );
        t.announce(0, &barrier(1), 3).expect("ok");
        t.start_recording(1);
        assert!(t.announce(0, &barrier(1), 3).is_err(), "second barrier");
    }
}
