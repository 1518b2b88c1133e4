//! The in-flight data of an unaligned checkpoint at one subtask (Flink's input channel state):
//! recorded while the task processes it, persisted in the subtask's checkpoint entry, replayed
//! before live input on restore.
//!
//! Messages are encoded as they are recorded (no copy of the batch is kept), per input channel and
//! in channel order: batches, watermarks and idleness changes. Latency markers are not recorded
//! (they measure, they carry no data) and nothing after a channel's barrier is. The encoding names
//! the input layout it was recorded with (the upstream input index of every channel) and the
//! subtask's parallelism: restoring it into another layout would hand records to the wrong
//! subtask, so that is refused (rescaling in-flight data is not supported).
//!
//! Layout (inside a [`crate::runtime::subtask_state::SubtaskState`]): codec version byte, marker
//! `C`, parallelism, number of channels, each channel's input index, number of non-empty
//! channels, then per channel: its index and its length-prefixed encoded messages.

use crate::codec::{self, corrupt};
use crate::error::{EngineError, Result};
use crate::graph::Partitioning;
use crate::message::Message;
use crate::value::{Batch, Change, RowKind};

const MARKER: u8 = b'C';
const BATCH: u8 = 1;
const WATERMARK: u8 = 2;
const IDLE: u8 = 3;

/// Whether the inputs of a task may take unaligned checkpoints: Flink keeps every input of a
/// task aligned when one of them is pointwise (forward) or broadcast, whatever
/// `execution.checkpointing.unaligned.forced` says (that key lifts Flink's refusal for custom
/// partitioners and iterations, which streamsql does not have).
pub fn supports_unaligned<'a>(inputs: impl IntoIterator<Item = &'a Partitioning>) -> bool {
    let mut any = false;
    for p in inputs {
        any = true;
        if matches!(p, Partitioning::Forward | Partitioning::Broadcast) {
            return false;
        }
    }
    any
}

/// The in-flight messages of one subtask's input channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// The subtask's parallelism when recorded.
    pub parallelism: usize,
    /// The operator input each channel feeds, in channel order.
    pub layout: Vec<usize>,
    /// Encoded messages per channel (empty: nothing in flight).
    pub channels: Vec<Vec<u8>>,
}

impl ChannelState {
    /// An empty recording for a subtask with these inputs.
    pub fn new(parallelism: usize, layout: Vec<usize>) -> Self {
        let channels = layout.iter().map(|_| Vec::new()).collect();
        ChannelState {
            parallelism,
            layout,
            channels,
        }
    }

    /// Whether nothing was in flight.
    pub fn is_empty(&self) -> bool {
        self.channels.iter().all(Vec::is_empty)
    }

    /// Bytes of recorded messages (Flink's persisted in-flight data).
    pub fn data_size(&self) -> u64 {
        self.channels.iter().map(|c| c.len() as u64).sum()
    }

    /// Records `msg`, received on `channel`, as in flight. Messages that carry no data (latency
    /// markers, barriers, ends) are skipped.
    pub fn record(&mut self, channel: usize, msg: &Message) {
        let Some(out) = self.channels.get_mut(channel) else {
            return;
        };
        match msg {
            Message::Batch(batch) => {
                out.push(BATCH);
                codec::put_uvarint(out, batch.len() as u64);
                for change in batch {
                    out.push(kind_byte(change.kind));
                    codec::encode_row(&change.row, out);
                }
            }
            Message::Watermark(wm) => {
                out.push(WATERMARK);
                codec::put_ivarint(out, *wm);
            }
            Message::Idle(idle) => {
                out.push(IDLE);
                codec::put_bool(out, *idle);
            }
            Message::Barrier(_)
            | Message::LatencyMarker(_)
            | Message::EndOfStream
            | Message::Stop => {}
        }
    }

    /// Encodes for the subtask's checkpoint entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.data_size() as usize);
        codec::put_version(&mut out);
        out.push(MARKER);
        codec::put_uvarint(&mut out, self.parallelism as u64);
        codec::put_uvarint(&mut out, self.layout.len() as u64);
        for input in &self.layout {
            codec::put_uvarint(&mut out, *input as u64);
        }
        let non_empty = self.channels.iter().filter(|c| !c.is_empty()).count();
        codec::put_uvarint(&mut out, non_empty as u64);
        for (ch, bytes) in self.channels.iter().enumerate() {
            if !bytes.is_empty() {
                codec::put_uvarint(&mut out, ch as u64);
                codec::put_uvarint(&mut out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    /// Decodes bytes of [`ChannelState::encode`].
    pub fn decode(mut input: &[u8]) -> Result<Self> {
        let input = &mut input;
        codec::check_version(input)?;
        if codec::get_u8(input)? != MARKER {
            return Err(corrupt("not a channel state"));
        }
        let parallelism = codec::get_len(input)?;
        let n = codec::get_len(input)?;
        let mut layout = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            layout.push(codec::get_len(input)?);
        }
        let mut state = ChannelState::new(parallelism, layout);
        let non_empty = codec::get_len(input)?;
        for _ in 0..non_empty {
            let ch = codec::get_len(input)?;
            let len = codec::get_len(input)?;
            let bytes = codec::get_bytes(input, len)?;
            let slot = state
                .channels
                .get_mut(ch)
                .ok_or_else(|| corrupt(format!("channel state of channel {ch} out of {n}")))?;
            slot.extend_from_slice(bytes);
        }
        codec::expect_end(input)?;
        Ok(state)
    }

    /// Checks that this state can be replayed into a subtask with `parallelism` and these inputs.
    pub fn check_layout(&self, parallelism: usize, layout: &[usize], task: &str) -> Result<()> {
        if self.parallelism == parallelism && self.layout == layout {
            return Ok(());
        }
        Err(EngineError::data(format!(
            "cannot restore {task}: the checkpoint holds in-flight data of an unaligned checkpoint \
             recorded with parallelism {} and {} input channels, but the job now runs it with \
             parallelism {parallelism} and {} input channels; restoring in-flight data into a \
             changed parallelism is not supported by streamsql. Resume from a savepoint (always \
             aligned) or from an aligned checkpoint to change the parallelism",
            self.parallelism,
            self.layout.len(),
            layout.len()
        )))
    }

    /// The recorded messages of `channel`, decoded in order.
    pub fn messages(&self, channel: usize) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        let Some(bytes) = self.channels.get(channel) else {
            return Ok(out);
        };
        let mut input: &[u8] = bytes;
        let input = &mut input;
        while !input.is_empty() {
            let msg = match codec::get_u8(input)? {
                BATCH => {
                    let n = codec::get_len(input)?;
                    let mut batch: Batch = Vec::with_capacity(n.min(65_536));
                    for _ in 0..n {
                        let kind = kind_of(codec::get_u8(input)?)?;
                        let row = codec::decode_row(input)?;
                        batch.push(Change { kind, row });
                    }
                    Message::Batch(batch)
                }
                WATERMARK => Message::Watermark(codec::get_ivarint(input)?),
                IDLE => Message::Idle(codec::get_bool(input)?),
                t => return Err(corrupt(format!("unknown in-flight message {t}"))),
            };
            out.push(msg);
        }
        Ok(out)
    }
}

fn kind_byte(kind: RowKind) -> u8 {
    match kind {
        RowKind::Insert => 0,
        RowKind::UpdateBefore => 1,
        RowKind::UpdateAfter => 2,
        RowKind::Delete => 3,
    }
}

fn kind_of(b: u8) -> Result<RowKind> {
    Ok(match b {
        0 => RowKind::Insert,
        1 => RowKind::UpdateBefore,
        2 => RowKind::UpdateAfter,
        3 => RowKind::Delete,
        k => return Err(corrupt(format!("unknown row kind {k}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn batch(ids: &[i64]) -> Message {
        Message::Batch(
            ids.iter()
                .map(|i| Change {
                    kind: if i % 2 == 0 {
                        RowKind::Insert
                    } else {
                        RowKind::UpdateBefore
                    },
                    row: vec![Value::BigInt(*i), Value::Null],
                })
                .collect(),
        )
    }

    fn same(a: &Message, b: &Message) -> bool {
        match (a, b) {
            (Message::Batch(x), Message::Batch(y)) => x == y,
            (Message::Watermark(x), Message::Watermark(y)) => x == y,
            (Message::Idle(x), Message::Idle(y)) => x == y,
            _ => false,
        }
    }

    #[test]
    fn recorded_messages_round_trip_in_channel_order() {
        let mut s = ChannelState::new(2, vec![0, 0, 1]);
        assert!(s.is_empty());
        let ch2 = [
            batch(&[1, 2]),
            Message::Watermark(-5),
            Message::Idle(true),
            batch(&[3]),
        ];
        for m in &ch2 {
            s.record(2, m);
        }
        s.record(0, &Message::EndOfStream);
        s.record(0, &batch(&[9]));
        s.record(7, &batch(&[1]));
        assert!(!s.is_empty());
        let back = ChannelState::decode(&s.encode()).expect("decodes");
        assert_eq!(back, s);
        assert_eq!(back.data_size(), s.data_size());
        let msgs = back.messages(2).expect("decodes");
        assert_eq!(msgs.len(), 4);
        assert!(msgs.iter().zip(&ch2).all(|(a, b)| same(a, b)));
        assert_eq!(back.messages(0).expect("decodes").len(), 1);
        assert!(back.messages(1).expect("decodes").is_empty());
    }

    #[test]
    fn damage_and_changed_layouts_are_refused() {
        let mut s = ChannelState::new(2, vec![0, 1]);
        s.record(1, &batch(&[1, 2, 3]));
        let bytes = s.encode();
        for cut in 0..bytes.len() {
            assert!(ChannelState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(s.check_layout(2, &[0, 1], "t").is_ok());
        let e = s.check_layout(3, &[0, 1, 1], "t").expect_err("refused");
        assert!(e.to_string().contains("not supported"), "{e}");
        let mut bad = s.clone();
        bad.channels[1] = vec![9];
        assert!(ChannelState::decode(&bad.encode())
            .expect("frame decodes")
            .messages(1)
            .is_err());
    }

    #[test]
    fn forward_and_broadcast_inputs_keep_a_task_aligned() {
        use Partitioning::*;
        assert!(supports_unaligned(&[Hash(vec![0]), Rebalance]));
        assert!(supports_unaligned(&[Global]));
        assert!(!supports_unaligned(&[Hash(vec![0]), Forward]));
        assert!(!supports_unaligned(&[Broadcast]));
        assert!(
            !supports_unaligned(&[]),
            "a task without inputs has no channels"
        );
    }
}
