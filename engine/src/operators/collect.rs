//! `CollectSink`: hands every change of a query's result to the caller over a bounded channel
//! (the command line prints them; an embedding application consumes them).
//!
//! In a checkpointed job the sink counts the changes it has handed over and checkpoints that
//! count, so that a consumer can keep a result exact across restarts. Whenever the sink starts in
//! a checkpointed job (the runtime always calls `restore_state` then: with the sink's state when
//! the job resumes or an attempt restarts from a checkpoint, with nothing when it starts afresh),
//! it first sends [`Collected::Restored`] with the count it starts from. Everything it sends next
//! follows that many changes of the result; whatever a consumer received beyond them came from a
//! run that stopped after the checkpoint and is sent again. A consumer that keeps only the first
//! `delivered` changes it received and appends what follows sees every change exactly once; one
//! that ignores the message sees every change at least once.
//!
//! Invariant: `delivered` is the number of changes passed to the channel, in order. A snapshot is
//! taken after every batch before the checkpoint's barrier and before any after it, so the count
//! in checkpoint n is the length of the prefix of the result that n covers.
//!
//! Limit: the count is of changes handed to the channel, not of changes a consumer processed.
//! Within one process nothing in the channel is lost when a job is cancelled or an attempt
//! restarts, so the prefix is always there. When a process dies, changes still in the channel or
//! not yet persisted by the application are lost to it: unlike Flink's collect sink, this sink does
//! not keep unacknowledged results in its state.

use crossbeam_channel::{SendTimeoutError, Sender};
use std::time::Duration;

use crate::codec;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, Output};
use crate::value::Change;

/// What the collect sink sends: optionally a restore notice, batches of changes, then the end.
#[derive(Debug)]
pub enum Collected {
    Changes(Vec<Change>),
    /// Sent first by the sink of a checkpointed job, every time it starts (a fresh job, a resumed
    /// one, each restarted attempt): the changes sent next follow the first `delivered` changes of
    /// the result (0 when it starts afresh). A consumer keeps that many of the changes it has
    /// received for this result and drops the rest: they are sent again.
    Restored {
        delivered: u64,
    },
    End,
}

/// The sink at the end of a SELECT: one subtask, fed by every subtask of its input.
pub struct CollectSink {
    tx: Sender<Collected>,
    /// Changes passed to the channel, counting from the restored checkpoint's count.
    delivered: u64,
}

impl CollectSink {
    pub fn new(tx: Sender<Collected>) -> Self {
        CollectSink { tx, delivered: 0 }
    }

    fn send(&self, mut item: Collected) -> Result<()> {
        loop {
            match self.tx.send_timeout(item, Duration::from_millis(50)) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(i)) => item = i,
                // The consumer went away: the result is no longer wanted.
                Err(SendTimeoutError::Disconnected(_)) => return Err(EngineError::Cancelled),
            }
        }
    }
}

impl Operator for CollectSink {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        let n = batch.len() as u64;
        self.send(Collected::Changes(batch))?;
        self.delivered = self.delivered.saturating_add(n);
        Ok(())
    }

    fn on_end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        self.send(Collected::End)
    }

    /// The state is the codec version byte and the number of changes delivered (a varint).
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(11);
        codec::put_version(&mut out);
        codec::put_uvarint(&mut out, self.delivered);
        Ok(out)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        self.delivered = if state.is_empty() {
            0
        } else {
            let mut input = state;
            codec::check_version(&mut input)?;
            let delivered = codec::get_uvarint(&mut input)?;
            codec::expect_end(input)?;
            delivered
        };
        self.send(Collected::Restored {
            delivered: self.delivered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn batch(values: &[i64]) -> Vec<Change> {
        values
            .iter()
            .map(|v| Change::insert(vec![Value::BigInt(*v)]))
            .collect()
    }

    fn drain(rx: &crossbeam_channel::Receiver<Collected>) -> Vec<String> {
        rx.try_iter()
            .map(|c| match c {
                Collected::Changes(b) => format!("changes {}", b.len()),
                Collected::Restored { delivered } => format!("restored {delivered}"),
                Collected::End => "end".to_string(),
            })
            .collect()
    }

    #[test]
    fn a_sink_without_checkpointing_sends_changes_then_the_end() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let mut sink = CollectSink::new(tx);
        let mut out = Output::new();
        sink.on_batch(0, batch(&[1, 2]), &mut out).unwrap();
        sink.on_end_of_input(&mut out).unwrap();
        assert_eq!(drain(&rx), ["changes 2", "end"]);
        assert!(out.is_empty(), "a sink emits nothing downstream");
    }

    #[test]
    fn the_checkpointed_count_is_what_a_restored_sink_reports_and_continues_from() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let mut first = CollectSink::new(tx.clone());
        let mut out = Output::new();
        first.restore_state(&[]).unwrap();
        first.on_batch(0, batch(&[1, 2, 3]), &mut out).unwrap();
        let state = first.snapshot_state(1).unwrap();
        first.on_batch(0, batch(&[4]), &mut out).unwrap();
        assert_eq!(drain(&rx), ["restored 0", "changes 3", "changes 1"]);

        let mut second = CollectSink::new(tx);
        second.restore_state(&state).unwrap();
        second.on_batch(0, batch(&[4, 5]), &mut out).unwrap();
        assert_eq!(second.snapshot_state(2).unwrap(), [codec::CODEC_VERSION, 5]);
        second.on_end_of_input(&mut out).unwrap();
        assert_eq!(drain(&rx), ["restored 3", "changes 2", "end"]);
    }

    #[test]
    fn a_count_past_one_varint_byte_round_trips() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let mut sink = CollectSink::new(tx);
        sink.delivered = 300;
        let state = sink.snapshot_state(1).unwrap();
        sink.restore_state(&state).unwrap();
        assert_eq!(sink.delivered, 300);
        assert_eq!(drain(&rx), ["restored 300"]);
    }

    #[test]
    fn bad_state_is_an_error_not_a_panic() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let mut sink = CollectSink::new(tx);
        for bad in [
            &[codec::CODEC_VERSION][..],
            &[codec::CODEC_VERSION, 0x80],
            &[codec::CODEC_VERSION, 1, 2],
            &[99, 1],
        ] {
            assert!(sink.restore_state(bad).is_err(), "{bad:?}");
        }
        assert!(drain(&rx).is_empty(), "nothing is reported for bad state");
    }

    #[test]
    fn a_consumer_that_went_away_cancels_the_sink() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        drop(rx);
        let mut sink = CollectSink::new(tx);
        assert!(matches!(
            sink.restore_state(&[]),
            Err(EngineError::Cancelled)
        ));
    }
}
