//! The sending side of a task: routes emitted changes to downstream subtasks and keeps control
//! messages in order with them.
//!
//! Each outgoing edge has one bounded channel per downstream subtask it reaches and one batch
//! buffer per channel. Rows are appended to buffers (hash: by key group; rebalance: round robin;
//! broadcast: all) and a buffer travels as one message when it is full, when the buffer timeout
//! expires, or before any control message (so a watermark never overtakes the rows before it).
//!
//! A channel into a task that takes unaligned checkpoints also has a priority path for barriers
//! ([`PriorityBarrier`]): the barrier leaves at once, ahead of the batches queued on the data
//! channel, stamped with the number of messages sent on the data channel before it (a batch
//! still buffered here counts as before it: it holds rows emitted before the snapshot). Every
//! message sent on a data channel is counted, which is what the stamp refers to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};

use super::JobShared;
use crate::error::{EngineError, Result};
use crate::graph::Partitioning;
use crate::keygroup;
use crate::message::{CheckpointBarrier, Message, PriorityBarrier};
use crate::operator::Output;
use crate::value::Change;

/// How long a blocked send waits before it looks at the cancel flag again.
const SEND_POLL: Duration = Duration::from_millis(50);

/// Sends `msg`, waiting while the channel is full (back pressure) but giving up when the job is
/// cancelled or the receiver is gone.
pub(crate) fn send<T>(tx: &Sender<T>, mut msg: T, shared: &JobShared) -> Result<()> {
    loop {
        match tx.send_timeout(msg, SEND_POLL) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(m)) => {
                if shared.is_cancelled() {
                    return Err(EngineError::Cancelled);
                }
                msg = m;
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(EngineError::Cancelled),
        }
    }
}

/// The writer of one outgoing edge.
pub(crate) struct EdgeWriter {
    pub partitioning: Partitioning,
    /// One sender per reachable downstream subtask (a forward edge has exactly one).
    pub targets: Vec<Sender<Message>>,
    /// The priority path of each target, when the downstream task takes unaligned checkpoints.
    priority: Vec<Option<Sender<PriorityBarrier>>>,
    /// Messages sent on each target's data channel.
    sent: Vec<u64>,
    buffers: Vec<Vec<Change>>,
    next: usize,
    max_parallelism: usize,
}

impl EdgeWriter {
    pub fn new(
        partitioning: Partitioning,
        targets: Vec<Sender<Message>>,
        max_parallelism: usize,
    ) -> Self {
        let buffers = targets.iter().map(|_| Vec::new()).collect();
        let priority = targets.iter().map(|_| None).collect();
        let sent = vec![0; targets.len()];
        EdgeWriter {
            partitioning,
            targets,
            priority,
            sent,
            buffers,
            next: 0,
            max_parallelism,
        }
    }

    /// Gives every target a priority path for barriers (one sender per target, in order).
    pub fn with_priority(mut self, priority: Vec<Sender<PriorityBarrier>>) -> Self {
        self.priority = priority.into_iter().map(Some).collect();
        self.priority.resize(self.targets.len(), None);
        self
    }

    /// The buffer index a change goes to, or `None` for broadcast.
    fn target_of(&mut self, change: &Change) -> Option<usize> {
        let n = self.targets.len();
        match &self.partitioning {
            Partitioning::Forward | Partitioning::Global => Some(0),
            Partitioning::Hash(cols) => {
                let hash = keygroup::key_hash(
                    cols.iter()
                        .map(|c| change.row.get(*c).unwrap_or(&crate::value::Value::Null)),
                );
                let group = keygroup::key_group(hash, self.max_parallelism);
                Some(keygroup::operator_index(group, n, self.max_parallelism))
            }
            Partitioning::Rebalance => {
                self.next = (self.next + 1) % n;
                Some(self.next)
            }
            Partitioning::Broadcast => None,
        }
    }
}

/// Routes a task's output over all its outgoing edges.
pub(crate) struct OutputRouter {
    edges: Vec<EdgeWriter>,
    shared: Arc<JobShared>,
    batch_size: usize,
    buffer_timeout: Option<Duration>,
    /// When the oldest row still buffered was added.
    oldest: Option<Instant>,
    /// Rows sent so far (for `numRecordsOut`).
    pub records_out: u64,
}

impl OutputRouter {
    pub fn new(
        edges: Vec<EdgeWriter>,
        shared: Arc<JobShared>,
        batch_size: usize,
        buffer_timeout: Option<Duration>,
    ) -> Self {
        OutputRouter {
            edges,
            shared,
            batch_size: batch_size.max(1),
            buffer_timeout,
            oldest: None,
            records_out: 0,
        }
    }

    /// Sends everything in `out` (changes, interleaved watermarks, idleness) and leaves it empty.
    pub fn emit(&mut self, out: &mut Output) -> Result<()> {
        if out.watermarks.is_empty() {
            self.route(out.changes.drain(..))?;
        } else {
            let mut changes = std::mem::take(&mut out.changes);
            let mut sent = 0;
            let watermarks = std::mem::take(&mut out.watermarks);
            let mut rest = changes.drain(..);
            for (pos, wm) in watermarks {
                let take = pos.saturating_sub(sent);
                self.route(rest.by_ref().take(take))?;
                sent += take;
                self.broadcast(|| Message::Watermark(wm))?;
            }
            self.route(rest)?;
            drop(changes);
        }
        if let Some(idle) = out.idle.take() {
            self.broadcast(|| Message::Idle(idle))?;
        }
        if self.buffer_timeout == Some(Duration::ZERO) {
            self.flush()?;
        }
        Ok(())
    }

    fn route(&mut self, changes: impl Iterator<Item = Change>) -> Result<()> {
        let Some(last) = self.edges.len().checked_sub(1) else {
            return Ok(());
        };
        let mut count = 0u64;
        for change in changes {
            count += 1;
            for e in 0..last {
                self.push(e, change.clone())?;
            }
            self.push(last, change)?;
        }
        if count > 0 {
            self.records_out += count;
            if self.oldest.is_none() {
                self.oldest = Some(Instant::now());
            }
        }
        Ok(())
    }

    fn push(&mut self, e: usize, change: Change) -> Result<()> {
        let edge = &mut self.edges[e];
        match edge.target_of(&change) {
            Some(t) => {
                edge.buffers[t].push(change);
                if edge.buffers[t].len() >= self.batch_size {
                    self.send_buffer(e, t)?;
                }
            }
            None => {
                let n = edge.buffers.len();
                for t in 1..n {
                    edge.buffers[t].push(change.clone());
                }
                if let Some(b) = edge.buffers.first_mut() {
                    b.push(change);
                }
                if edge
                    .buffers
                    .first()
                    .is_some_and(|b| b.len() >= self.batch_size)
                {
                    for t in 0..n {
                        self.send_buffer(e, t)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn send_buffer(&mut self, e: usize, t: usize) -> Result<()> {
        let edge = &mut self.edges[e];
        if edge.buffers[t].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut edge.buffers[t], Vec::with_capacity(self.batch_size));
        send(&edge.targets[t], Message::Batch(batch), &self.shared)?;
        edge.sent[t] += 1;
        Ok(())
    }

    /// Sends every non-empty buffer.
    pub fn flush(&mut self) -> Result<()> {
        for e in 0..self.edges.len() {
            for t in 0..self.edges[e].buffers.len() {
                self.send_buffer(e, t)?;
            }
        }
        self.oldest = None;
        Ok(())
    }

    /// Flushes, then sends a control message to every downstream channel.
    pub fn broadcast(&mut self, make: impl Fn() -> Message) -> Result<()> {
        self.flush()?;
        for edge in &mut self.edges {
            for (tx, sent) in edge.targets.iter().zip(&mut edge.sent) {
                send(tx, make(), &self.shared)?;
                *sent += 1;
            }
        }
        Ok(())
    }

    /// Forwards checkpoint barrier `barrier` after a snapshot: on the priority path of every
    /// channel that has one (first, so that it does not wait behind a blocked send), then in band
    /// on every other channel, after flushing.
    pub fn broadcast_barrier(&mut self, barrier: &CheckpointBarrier) -> Result<()> {
        for edge in &self.edges {
            for t in 0..edge.targets.len() {
                if let Some(Some(tx)) = edge.priority.get(t) {
                    let stamp = edge.sent[t] + u64::from(!edge.buffers[t].is_empty());
                    let msg = PriorityBarrier {
                        barrier: barrier.clone(),
                        stamp,
                    };
                    send(tx, msg, &self.shared)?;
                }
            }
        }
        self.flush()?;
        for edge in &mut self.edges {
            for t in 0..edge.targets.len() {
                if !matches!(edge.priority.get(t), Some(Some(_))) {
                    send(
                        &edge.targets[t],
                        Message::Barrier(barrier.clone()),
                        &self.shared,
                    )?;
                    edge.sent[t] += 1;
                }
            }
        }
        Ok(())
    }

    /// When buffered rows must leave at the latest (`None`: nothing buffered or no timeout).
    pub fn deadline(&self) -> Option<Instant> {
        match (self.oldest, self.buffer_timeout) {
            (Some(t), Some(d)) => Some(t + d),
            _ => None,
        }
    }

    /// Flushes when the buffer timeout has expired.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        if self.deadline().is_some_and(|d| now >= d) {
            self.flush()?;
        }
        Ok(())
    }
}
