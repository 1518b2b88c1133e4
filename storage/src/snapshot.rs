//! The snapshot file format of keyed state: one file per subtask and checkpoint.
//!
//! A snapshot is a header (kind, checkpoint id, base checkpoint of a delta, owned key groups, the
//! names of the state ids it uses) and a list of records (key group, state id, key, value or
//! tombstone). The payload is length-prefixed (LEB128 varints), optionally snappy-compressed
//! (Flink's `execution.checkpointing.snapshot-compression`), and framed with magic, version and
//! CRC-32 by [`crate::file`]. `docs/state.md` has the byte layout.
//!
//! Invariants: [`encode`] is deterministic (records sorted by key group, state, key, so equal
//! snapshots give equal bytes); [`decode`] never panics and never allocates more than the input
//! can justify, and refuses any byte string [`encode`] did not produce intact (checksum first).
//! snap's types stay inside this module.

use std::path::Path;

use crate::file::{frame, read_framed, unframe, write_framed_atomic, StorageError};
use crate::state::{KeyGroup, KeyGroupRange, StateId};

/// Magic number of keyed-state snapshot files ("SSKS": streamsql keyed state).
pub const MAGIC: [u8; 4] = *b"SSKS";
/// Format version of keyed-state snapshot files.
pub const VERSION: u16 = 1;

/// Whether a snapshot holds all state or the changes since its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// All state of the subtask; starts a chain.
    Full,
    /// The changes since the snapshot of checkpoint `base`.
    Delta,
}

/// One record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Key group of the key.
    pub key_group: KeyGroup,
    /// State id, named in the snapshot's header.
    pub state: StateId,
    /// Key bytes.
    pub key: Vec<u8>,
    /// The value, or `None` for a deletion (only in deltas).
    pub value: Option<Vec<u8>>,
}

/// The keyed state of one subtask at one checkpoint, full or delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The checkpoint this snapshot belongs to.
    pub checkpoint_id: u64,
    /// Full or delta.
    pub kind: SnapshotKind,
    /// For a delta, the checkpoint it is relative to; `None` for a full snapshot.
    pub base: Option<u64>,
    /// The key groups the subtask owned when it took the snapshot.
    pub key_groups: KeyGroupRange,
    /// Every state id the backend had registered, with its name.
    pub states: Vec<(StateId, String)>,
    /// The records, in no particular order (at most one per key).
    pub records: Vec<SnapshotRecord>,
}

impl Snapshot {
    /// Bytes of keys and values carried (Flink's "checkpointed data size", before encoding).
    pub fn data_size(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// Whether snapshot payloads are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as is (Flink's default: `snapshot-compression = false`).
    #[default]
    None,
    /// Snappy (raw format), Flink's codec for `snapshot-compression = true`.
    Snappy,
}

impl Compression {
    /// The compression for the value of `execution.checkpointing.snapshot-compression`.
    pub fn from_flag(enabled: bool) -> Self {
        if enabled {
            Compression::Snappy
        } else {
            Compression::None
        }
    }
}

const TAG_TOMBSTONE: u8 = 0;
const TAG_VALUE: u8 = 1;
/// Snappy never expands more than about 21 times (a 3-byte copy of 64 bytes); a claimed length
/// above this bound is corruption and must not become an allocation.
const MAX_SNAPPY_RATIO: usize = 32;

/// Encodes `snapshot` into complete framed bytes (magic, version, payload, CRC): what
/// [`write_snapshot`] writes.
pub fn encode(snapshot: &Snapshot, compression: Compression) -> Vec<u8> {
    frame(MAGIC, VERSION, &encode_payload(snapshot, compression))
}

/// Decodes bytes produced by [`encode`], refusing anything corrupt.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, StorageError> {
    let corrupt = |reason: String| StorageError::CorruptBytes {
        what: "keyed-state snapshot",
        reason,
    };
    let payload = unframe(bytes, MAGIC, VERSION).map_err(corrupt)?;
    decode_payload(payload).map_err(corrupt)
}

/// Writes `snapshot` to `path` atomically (tmp, fsync, rename, fsync directory) and returns the
/// number of bytes in the file.
pub fn write_snapshot(
    path: &Path,
    snapshot: &Snapshot,
    compression: Compression,
) -> Result<u64, StorageError> {
    let payload = encode_payload(snapshot, compression);
    write_framed_atomic(path, MAGIC, VERSION, &payload)?;
    // Frame overhead: magic (4), version (2), CRC (4).
    Ok(u64::try_from(payload.len() + 10).unwrap_or(u64::MAX))
}

/// Reads a snapshot file written by [`write_snapshot`].
pub fn read_snapshot(path: &Path) -> Result<Snapshot, StorageError> {
    let payload = read_framed(path, MAGIC, VERSION)?;
    decode_payload(&payload).map_err(|reason| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })
}

/// The payload inside the frame: compression byte, then the (maybe compressed) body.
fn encode_payload(snapshot: &Snapshot, compression: Compression) -> Vec<u8> {
    compress_body(&encode_body(snapshot), compression)
}

/// The payload of an encoded body: compression byte, then the (maybe compressed) body.
fn compress_body(body: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => {
            let mut out = Vec::with_capacity(body.len() + 1);
            out.push(0);
            out.extend_from_slice(body);
            out
        }
        Compression::Snappy => {
            let mut out = vec![1u8];
            let mut compressed = vec![0u8; snap::raw::max_compress_len(body.len()) + 1];
            // The only failure is an input above 2^32 bytes; such a snapshot is stored as is.
            match snap::raw::Encoder::new().compress(body, &mut compressed) {
                Ok(n) => {
                    out.extend_from_slice(&compressed[..n]);
                    out
                }
                Err(_) => {
                    out[0] = 0;
                    out.extend_from_slice(body);
                    out
                }
            }
        }
    }
}

/// A snapshot in its file form, with what the statistics need to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSnapshot {
    /// The complete framed bytes ([`decode`] reads them).
    pub bytes: Vec<u8>,
    pub kind: SnapshotKind,
    /// Bytes of keys and values carried ([`Snapshot::data_size`]).
    pub data_size: usize,
}

impl EncodedSnapshot {
    /// Encodes an owned snapshot.
    pub fn of(snapshot: &Snapshot, compression: Compression) -> Self {
        EncodedSnapshot {
            bytes: encode(snapshot, compression),
            kind: snapshot.kind,
            data_size: snapshot.data_size(),
        }
    }
}

/// A snapshot's header, for [`encode_records`].
#[derive(Debug, Clone)]
pub struct SnapshotHeader<'a> {
    pub checkpoint_id: u64,
    pub kind: SnapshotKind,
    pub base: Option<u64>,
    pub key_groups: KeyGroupRange,
    pub states: &'a [(StateId, String)],
}

/// One record, borrowed, for [`encode_records`].
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub key_group: KeyGroup,
    pub state: StateId,
    pub key: &'a [u8],
    /// `None` for a deletion (deltas only).
    pub value: Option<&'a [u8]>,
}

/// Encodes a snapshot from borrowed records, already in file order ([`record_order`]), into
/// complete framed bytes: the same bytes [`encode`] gives for the owned snapshot, without copying
/// any record first.
pub fn encode_records<'a>(
    header: &SnapshotHeader<'_>,
    records: impl ExactSizeIterator<Item = RecordRef<'a>>,
    data_size: usize,
    compression: Compression,
) -> Vec<u8> {
    let body = encode_body_from(header, records, data_size);
    frame(MAGIC, VERSION, &compress_body(&body, compression))
}

fn encode_body(s: &Snapshot) -> Vec<u8> {
    // Sorting references, not records: encoding runs in the asynchronous part, from a snapshot
    // that may still be shared.
    let mut order: Vec<&SnapshotRecord> = s.records.iter().collect();
    order.sort_unstable_by(|a, b| record_order(a, b));
    let header = SnapshotHeader {
        checkpoint_id: s.checkpoint_id,
        kind: s.kind,
        base: s.base,
        key_groups: s.key_groups,
        states: &s.states,
    };
    let records = order.into_iter().map(|r| RecordRef {
        key_group: r.key_group,
        state: r.state,
        key: &r.key,
        value: r.value.as_deref(),
    });
    encode_body_from(&header, records, s.data_size())
}

fn encode_body_from<'a>(
    h: &SnapshotHeader<'_>,
    records: impl ExactSizeIterator<Item = RecordRef<'a>>,
    data_size: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + data_size + records.len() * 8);
    out.push(match h.kind {
        SnapshotKind::Full => 0,
        SnapshotKind::Delta => 1,
    });
    out.extend_from_slice(&h.checkpoint_id.to_le_bytes());
    match h.base {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&b.to_le_bytes());
        }
    }
    out.extend_from_slice(&h.key_groups.start.to_le_bytes());
    out.extend_from_slice(&h.key_groups.end.to_le_bytes());
    put_varint(&mut out, len_u64(h.states.len()));
    for (id, name) in h.states {
        put_varint(&mut out, u64::from(*id));
        put_varint(&mut out, len_u64(name.len()));
        out.extend_from_slice(name.as_bytes());
    }
    put_varint(&mut out, len_u64(records.len()));
    for r in records {
        out.extend_from_slice(&r.key_group.to_le_bytes());
        put_varint(&mut out, u64::from(r.state));
        put_varint(&mut out, len_u64(r.key.len()));
        out.extend_from_slice(r.key);
        match r.value {
            None => out.push(TAG_TOMBSTONE),
            Some(v) => {
                out.push(TAG_VALUE);
                put_varint(&mut out, len_u64(v.len()));
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// The order of records in a file: (key group, state, key bytes).
pub fn record_order(a: &SnapshotRecord, b: &SnapshotRecord) -> std::cmp::Ordering {
    a.key_group
        .cmp(&b.key_group)
        .then(a.state.cmp(&b.state))
        .then_with(|| key_order(&a.key, &b.key))
}

/// Byte order of two keys, compared eight bytes at a time as big-endian integers: most keys
/// differ within their first words, which integer comparisons decide without a call to `memcmp`
/// (a million-entry snapshot sorts twenty million times).
pub fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (mut x, mut y) = (a, b);
    while let (Some((xa, xr)), Some((ya, yr))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        let (p, q) = (u64::from_be_bytes(*xa), u64::from_be_bytes(*ya));
        if p != q {
            return p.cmp(&q);
        }
        x = xr;
        y = yr;
    }
    x.cmp(y)
}

/// The first sixteen bytes of `key` as a big-endian integer, zero-padded: sorting by it, then by
/// [`key_order`] among equal prefixes, is byte order (a shorter key is padded with zeros, so it
/// ties with the longer key it prefixes and the full comparison decides). It lets a sort compare
/// integers held in the array instead of following a pointer to each key.
pub fn sort_prefix(key: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let n = key.len().min(16);
    buf[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(buf)
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).expect("invariant: usize fits in u64 on supported targets")
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80); // low 7 bits, truncation intended
        v >>= 7;
    }
    out.push(v as u8); // v < 0x80 here
}

fn decode_payload(payload: &[u8]) -> Result<Snapshot, String> {
    let (&flag, rest) = payload.split_first().ok_or("empty payload")?;
    match flag {
        0 => decode_body(rest),
        1 => {
            let claimed = snap::raw::decompress_len(rest).map_err(|e| e.to_string())?;
            if claimed > rest.len().saturating_mul(MAX_SNAPPY_RATIO) + 64 {
                return Err(format!(
                    "compressed body claims {claimed} bytes from {} bytes",
                    rest.len()
                ));
            }
            let body = snap::raw::Decoder::new()
                .decompress_vec(rest)
                .map_err(|e| format!("snappy: {e}"))?;
            decode_body(&body)
        }
        other => Err(format!("unknown compression {other}")),
    }
}

/// A bounds-checked cursor: every read fails instead of panicking past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!(
                "truncated: need {n} bytes, {} left",
                self.bytes.len()
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("varint overflows 64 bits".to_string());
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".to_string())
    }

    fn u32_varint(&mut self) -> Result<u32, String> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| format!("state id {v} exceeds 32 bits"))
    }

    /// A length prefix, checked against the bytes that remain.
    fn len(&mut self) -> Result<usize, String> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(n) if n <= self.bytes.len() => Ok(n),
            _ => Err(format!(
                "length {v} exceeds the {} bytes left",
                self.bytes.len()
            )),
        }
    }

    /// A count of items each at least `min_size` bytes long, checked against the bytes that remain.
    fn count(&mut self, min_size: usize) -> Result<usize, String> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(n) if n.saturating_mul(min_size) <= self.bytes.len() => Ok(n),
            _ => Err(format!(
                "count {v} cannot fit in the {} bytes left",
                self.bytes.len()
            )),
        }
    }
}

fn decode_body(body: &[u8]) -> Result<Snapshot, String> {
    let mut r = Reader { bytes: body };
    let kind = match r.u8()? {
        0 => SnapshotKind::Full,
        1 => SnapshotKind::Delta,
        k => return Err(format!("unknown snapshot kind {k}")),
    };
    let checkpoint_id = r.u64()?;
    let base = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        b => return Err(format!("bad base flag {b}")),
    };
    if (kind == SnapshotKind::Delta) != base.is_some() {
        return Err("a delta must have a base and a full snapshot none".to_string());
    }
    let key_groups = KeyGroupRange::new(r.u16()?, r.u16()?);
    let n_states = r.count(2)?;
    let mut states = Vec::with_capacity(n_states);
    for _ in 0..n_states {
        let id = r.u32_varint()?;
        let n = r.len()?;
        let name = std::str::from_utf8(r.take(n)?)
            .map_err(|_| "state name is not UTF-8".to_string())?
            .to_string();
        if states.iter().any(|(i, s)| *i == id || *s == name) {
            return Err(format!("state id {id} or name '{name}' appears twice"));
        }
        states.push((id, name));
    }
    // Smallest record: key group (2), state (1), key length (1), tag (1).
    let n_records = r.count(5)?;
    let mut records = Vec::with_capacity(n_records);
    for _ in 0..n_records {
        let key_group = r.u16()?;
        let state = r.u32_varint()?;
        if !states.iter().any(|(i, _)| *i == state) {
            return Err(format!(
                "record of state id {state}, which the header does not name"
            ));
        }
        let n = r.len()?;
        let key = r.take(n)?.to_vec();
        let value = match r.u8()? {
            TAG_TOMBSTONE => None,
            TAG_VALUE => {
                let n = r.len()?;
                Some(r.take(n)?.to_vec())
            }
            t => return Err(format!("unknown record tag {t}")),
        };
        if value.is_none() && kind == SnapshotKind::Full {
            return Err("a full snapshot holds a deletion".to_string());
        }
        records.push(SnapshotRecord {
            key_group,
            state,
            key,
            value,
        });
    }
    if !r.bytes.is_empty() {
        return Err(format!("{} trailing bytes", r.bytes.len()));
    }
    Ok(Snapshot {
        checkpoint_id,
        kind,
        base,
        key_groups,
        states,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_byte_order() {
        use proptest::prelude::*;
        let keys = proptest::collection::vec(proptest::collection::vec(0u8..4, 0..20), 2);
        proptest!(|(pair in keys)| {
            prop_assert_eq!(key_order(&pair[0], &pair[1]), pair[0].cmp(&pair[1]));
        });
    }

    #[test]
    fn sorting_by_prefix_then_key_is_byte_order() {
        use proptest::prelude::*;
        let keys = proptest::collection::vec(proptest::collection::vec(0u8..4, 0..24), 0..64);
        proptest!(|(keys in keys)| {
            let mut by_prefix = keys.clone();
            by_prefix.sort_by(|a, b| {
                sort_prefix(a)
                    .cmp(&sort_prefix(b))
                    .then_with(|| key_order(a, b))
            });
            let mut by_bytes = keys;
            by_bytes.sort();
            prop_assert_eq!(by_prefix, by_bytes);
        });
    }

    fn sample(kind: SnapshotKind) -> Snapshot {
        Snapshot {
            checkpoint_id: 7,
            kind,
            base: (kind == SnapshotKind::Delta).then_some(6),
            key_groups: KeyGroupRange::new(0, 127),
            states: vec![(0, "count".into()), (1, "last-row".into())],
            records: vec![
                SnapshotRecord {
                    key_group: 5,
                    state: 1,
                    key: b"k2".to_vec(),
                    value: Some(vec![9; 300]),
                },
                SnapshotRecord {
                    key_group: 3,
                    state: 0,
                    key: b"k1".to_vec(),
                    value: (kind == SnapshotKind::Full).then(|| b"v".to_vec()),
                },
            ],
        }
    }

    fn sorted(mut s: Snapshot) -> Snapshot {
        s.records
            .sort_by(|a, b| (a.key_group, a.state, &a.key).cmp(&(b.key_group, b.state, &b.key)));
        s
    }

    #[test]
    fn round_trips_with_and_without_compression() {
        for kind in [SnapshotKind::Full, SnapshotKind::Delta] {
            for c in [Compression::None, Compression::Snappy] {
                let s = sample(kind);
                let bytes = encode(&s, c);
                assert_eq!(decode(&bytes).unwrap(), sorted(s));
            }
        }
    }

    #[test]
    fn compression_shrinks_repetitive_values() {
        let s = sample(SnapshotKind::Full);
        assert!(encode(&s, Compression::Snappy).len() < encode(&s, Compression::None).len());
    }

    #[test]
    fn encoding_is_deterministic_whatever_the_record_order() {
        let s = sample(SnapshotKind::Full);
        let mut r = s.clone();
        r.records.reverse();
        assert_eq!(encode(&s, Compression::None), encode(&r, Compression::None));
    }

    #[test]
    fn every_single_bit_flip_and_truncation_is_refused() {
        for c in [Compression::None, Compression::Snappy] {
            let bytes = encode(&sample(SnapshotKind::Delta), c);
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    assert!(matches!(decode(&b), Err(StorageError::CorruptBytes { .. })));
                }
                assert!(decode(&bytes[..i]).is_err());
            }
        }
    }

    #[test]
    fn malformed_payloads_behind_a_valid_checksum_are_refused() {
        // A valid frame around garbage: the checksum passes, the parser must still refuse.
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![7],
            vec![0, 9],
            vec![1, 0xff, 0xff, 0xff, 0xff, 0x0f],
            {
                let mut p = encode_payload(&sample(SnapshotKind::Full), Compression::None);
                p.push(0);
                p
            },
            {
                // A record count far larger than the bytes behind it.
                let mut p = vec![0u8, 0];
                p.extend_from_slice(&1u64.to_le_bytes());
                p.push(0);
                p.extend_from_slice(&[0, 0, 0, 0]);
                p.push(0);
                p.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
                p
            },
        ];
        for p in cases {
            assert!(decode(&frame(MAGIC, VERSION, &p)).is_err(), "{p:?}");
        }
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader { bytes: &out };
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.bytes.is_empty());
        }
    }

    #[test]
    fn file_round_trip() {
        let dir = std::env::temp_dir().join(format!("streamsql-snapshot-{}", std::process::id()));
        let path = dir.join("chk-7").join("op-1-0.state");
        let s = sample(SnapshotKind::Full);
        let n = write_snapshot(&path, &s, Compression::Snappy).unwrap();
        assert_eq!(n, std::fs::metadata(&path).unwrap().len());
        assert_eq!(read_snapshot(&path).unwrap(), sorted(s));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
