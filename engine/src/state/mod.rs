//! Keyed state of operator subtasks: typed hot state in memory, a byte-level store behind it
//! (`state.backend.type`: `sled` or `hashmap`, from the `storage` crate), and the split of a
//! checkpoint into a synchronous and an asynchronous part.
//!
//! An operator keeps each of its keyed states in a [`KeyedState`]: a hash map of typed values,
//! so the per-record path is one hash lookup and never encodes, decodes or touches sled. Each
//! slot has a `dirty` flag; the first write of a slot after a flush appends its key to a dirty
//! list, so a flush visits only the keys written since the previous one.
//!
//! The subtask's [`store::SubtaskStore`] holds the byte form of the state as of the last flush:
//! the operator's flushes (encoded dirty slots) are queued there in order and applied by whoever
//! reaches them first (an asynchronous snapshot job, or the operator thread itself when it needs
//! the store).
//!
//! Invariants:
//! - The state is the store (after every queued flush is applied) overlaid with the dirty slots.
//!   A clean slot equals the store; only clean slots are evicted; a tombstone slot (a removed key)
//!   stays until the flush that carries its removal.
//! - Synchronous part of checkpoint n: O(1), the keys written since the previous flush become
//!   flush n ([`KeyedState::begin_flush`]). The task encodes it into a [`KeyedDelta`] between
//!   batches ([`KeyedState::continue_flush`]); a key of flush n written before its turn is encoded
//!   first, so the delta holds the values at barrier n. The complete delta is queued behind every
//!   earlier flush. Asynchronous part: apply it, take a full snapshot of the store (or, with
//!   incremental checkpoints, keep the delta), encode, compress, checksum and write it. Because
//!   flushes are applied in order and the snapshot is taken right after delta n, snapshot n holds
//!   exactly the state at barrier n. No write-back to the store happens while a flush is in
//!   progress, so the store never receives a later flush before an earlier one.
//! - Memory bound (`sled` only): when the hot map is over its share of
//!   `state.backend.sled.memory-budget`, the dirty slots are flushed to the store (one bulk write)
//!   and clean slots are evicted down to half the bound; a later miss reads the store. The
//!   `hashmap` backend keeps everything in memory and never misses.
//! - Keys are addressed by (key group, state name, key bytes): the key group comes from the
//!   operator's partitioning key, exactly as the hash exchange computes it, so a snapshot can be
//!   split by key group.

pub mod store;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::keygroup;
use crate::value::Value;

pub use store::SubtaskStore;

/// Which store holds keyed state (`state.backend.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// sled on local disk behind a bounded in-memory cache: state may exceed memory.
    #[default]
    Sled,
    /// Everything in memory.
    HashMap,
}

impl BackendKind {
    /// The name used in configuration and statistics.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Sled => "sled",
            BackendKind::HashMap => "hashmap",
        }
    }
}

/// How a subtask keeps its keyed state.
#[derive(Clone, Debug)]
pub struct StateBackendConfig {
    /// `state.backend.type`.
    pub kind: BackendKind,
    /// `state.backend.sled.memory-budget`: bytes of state a subtask keeps in memory (sled only).
    pub memory_budget: usize,
    /// `state.backend.sled.localdir`: where sled's working files go (a temporary directory when
    /// unset).
    pub local_dir: Option<PathBuf>,
    /// `execution.checkpointing.incremental` (`state.backend.incremental`): checkpoints write the
    /// changes since the previous one, chained to a full snapshot.
    pub incremental: bool,
    /// `execution.state-recovery.from-local`: task-local copies of keyed state, when on.
    pub local_recovery: Option<LocalRecoveryConfig>,
}

/// Where task-local copies of keyed state go and how much room they may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRecoveryConfig {
    /// `execution.checkpointing.local-backup.dirs`, else a temporary directory.
    pub root: PathBuf,
    /// `execution.checkpointing.local-backup.max-size`: bytes of local copies one subtask keeps
    /// at most; `None` for no limit.
    pub max_size: Option<u64>,
}

impl Default for StateBackendConfig {
    fn default() -> Self {
        StateBackendConfig {
            kind: BackendKind::Sled,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            local_dir: None,
            incremental: false,
            local_recovery: None,
        }
    }
}

/// The default of `state.backend.sled.memory-budget`.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;

/// What an operator subtask is given for its keyed state.
#[derive(Clone, Debug, Default)]
pub struct StateContext {
    /// The backend settings.
    pub config: StateBackendConfig,
    /// The subtask's byte-level store, when it needs one (checkpointing on, or the sled backend).
    pub store: Option<Arc<SubtaskStore>>,
    /// The job checkpoints: transactional sinks publish only what a completed checkpoint covers.
    pub checkpointing: bool,
}

/// How a state's keys and values become bytes. The operator implements it (values such as
/// accumulators need the operator's aggregate calls to encode).
pub trait StateCodec<K, V> {
    /// The hash the key group is computed from: the same as the hash exchange uses for the row's
    /// partitioning key.
    fn key_hash(&self, key: &K) -> i32;
    /// Appends the key's bytes.
    fn encode_key(&self, key: &K, out: &mut Vec<u8>);
    /// Reads a key written by [`StateCodec::encode_key`] (all of `bytes`).
    fn decode_key(&self, bytes: &[u8]) -> Result<K>;
    /// Appends the value's bytes.
    fn encode_value(&self, value: &V, out: &mut Vec<u8>);
    /// Reads a value written by [`StateCodec::encode_value`] (all of `bytes`).
    fn decode_value(&self, bytes: &[u8]) -> Result<V>;
}

/// The key hash of a row key: what the hash exchange computes for the same values.
pub fn row_key_hash(values: &[Value]) -> i32 {
    keygroup::key_hash(values)
}

/// Reads a row key written with `codec::put_values` (all of `bytes`), checking it has `key_len`
/// values: the key decoding of every operator whose state is keyed by its group key.
pub fn decode_row_key(mut bytes: &[u8], key_len: usize) -> Result<crate::value::Row> {
    let mut key = crate::value::Row::new();
    crate::codec::get_values_into(&mut bytes, &mut key)?;
    crate::codec::expect_end(bytes)?;
    if key.len() != key_len {
        return Err(crate::codec::corrupt(format!(
            "a group key has {} values, expected {key_len}",
            key.len()
        )));
    }
    Ok(key)
}

/// One flush of dirty slots: every written key's new value, or its removal. Entries live in one
/// buffer so that a flush of many keys costs no allocation per key.
#[derive(Debug, Default, Clone)]
pub struct KeyedDelta {
    bytes: Vec<u8>,
    entries: Vec<DeltaEntry>,
    names: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy)]
struct DeltaEntry {
    key_group: u16,
    state: u16,
    start: usize,
    key_len: usize,
    /// `None`: the key was removed.
    value_len: Option<usize>,
}

/// One entry of a [`KeyedDelta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaRecord<'a> {
    /// The key group of the key.
    pub key_group: u16,
    /// The state's name.
    pub state: &'static str,
    /// The key's bytes.
    pub key: &'a [u8],
    /// The new value's bytes, `None` when the key was removed.
    pub value: Option<&'a [u8]>,
}

impl KeyedDelta {
    /// An empty delta.
    pub fn new() -> Self {
        KeyedDelta::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the delta has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn data_size(&self) -> usize {
        self.bytes.len()
    }

    fn state_index(&mut self, name: &'static str) -> u16 {
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            return u16::try_from(i).expect("invariant: an operator has few keyed states");
        }
        self.names.push(name);
        u16::try_from(self.names.len() - 1).expect("invariant: an operator has few keyed states")
    }

    /// Appends an entry whose key and value are written by `write_key` and `write_value`
    /// (`None`: a removal).
    fn push_with(
        &mut self,
        key_group: u16,
        state: &'static str,
        write_key: impl FnOnce(&mut Vec<u8>),
        write_value: Option<impl FnOnce(&mut Vec<u8>)>,
    ) {
        let state = self.state_index(state);
        let start = self.bytes.len();
        write_key(&mut self.bytes);
        let key_len = self.bytes.len() - start;
        let value_len = write_value.map(|w| {
            w(&mut self.bytes);
            self.bytes.len() - start - key_len
        });
        self.entries.push(DeltaEntry {
            key_group,
            state,
            start,
            key_len,
            value_len,
        });
    }

    /// Appends every entry of `other`, in order.
    pub fn append(&mut self, other: &KeyedDelta) {
        for r in other.records() {
            self.push_with(
                r.key_group,
                r.state,
                |out| out.extend_from_slice(r.key),
                r.value
                    .map(|v| move |out: &mut Vec<u8>| out.extend_from_slice(v)),
            );
        }
    }

    /// The entries, in the order they were added.
    pub fn records(&self) -> impl Iterator<Item = DeltaRecord<'_>> {
        self.entries.iter().map(|e| {
            let key_end = e.start + e.key_len;
            DeltaRecord {
                key_group: e.key_group,
                state: self.names[usize::from(e.state)],
                key: &self.bytes[e.start..key_end],
                value: e.value_len.map(|n| &self.bytes[key_end..key_end + n]),
            }
        })
    }
}

#[derive(Debug)]
struct Slot<V> {
    /// `None`: the key was removed and the removal is not flushed yet.
    value: Option<V>,
    /// The write interval in which the slot was last written (its key is then in that
    /// interval's dirty list), or 0 when the slot equals the store.
    epoch: u64,
}

/// Bytes charged per slot beyond its encoded size: the typed value is larger than its bytes, plus
/// the hash table's share. An estimate: the bound is approximate by design.
const SLOT_OVERHEAD: usize = 96;
/// The encoded size of an entry assumed before any was measured.
const INITIAL_ENTRY_BYTES: usize = 64;

/// One keyed state of an operator subtask: typed values by key, with change tracking and (with
/// the `sled` backend) a memory bound. See the module documentation for the invariants.
///
/// Writes are grouped in intervals, one per flush. A flush begins in O(1) (the interval's dirty
/// list becomes the pending list and a new interval starts) and continues in chunks; a slot of the
/// pending interval that is written before its chunk came is encoded first (copy on write), so the
/// flush holds exactly the values at its beginning.
pub struct KeyedState<K, V> {
    map: HashMap<K, Slot<V>>,
    tracker: Tracker<K>,
    store: Option<Arc<SubtaskStore>>,
    /// Entries the hot map may hold before it spills; `usize::MAX` without a bound.
    max_entries: usize,
    memory_budget: usize,
    /// Whether some key may be in the store and not in the map (evicted, or restored lazily):
    /// only then does a miss read the store.
    may_miss: bool,
    /// Measured average encoded size of an entry.
    entry_bytes: usize,
    scratch: Vec<u8>,
}

/// The change tracking of a [`KeyedState`], apart from its map so that a slot can be marked while
/// it is borrowed.
struct Tracker<K> {
    name: &'static str,
    max_parallelism: usize,
    /// Whether writes are tracked: only when there is a store to flush them to.
    track: bool,
    /// Keys first written in the current interval.
    dirty: Vec<K>,
    /// The current write interval (never 0).
    epoch: u64,
    /// The interval being flushed, its keys not encoded yet, and what is encoded so far.
    pending_epoch: Option<u64>,
    pending: Vec<K>,
    delta: KeyedDelta,
    /// Keys encoded by the flush in progress, for the entry-size estimate.
    encoded_keys: usize,
}

impl<K: Clone> Tracker<K> {
    /// `slot` of `key` is about to be written: on its first write of the interval the key joins
    /// the dirty list, and if the flush in progress has not encoded it yet, its current value is
    /// encoded now.
    fn mark<V, Q>(&mut self, slot: &mut Slot<V>, key: &Q, codec: &impl StateCodec<K, V>)
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + ?Sized,
    {
        if !self.track || slot.epoch == self.epoch {
            return;
        }
        let owned = key.to_owned();
        if Some(slot.epoch) == self.pending_epoch {
            self.encode(codec, &owned, slot.value.as_ref());
        }
        slot.epoch = self.epoch;
        self.dirty.push(owned);
    }

    fn encode<V>(&mut self, codec: &impl StateCodec<K, V>, key: &K, value: Option<&V>) {
        encode_entry(
            &mut self.delta,
            self.name,
            self.max_parallelism,
            codec,
            key,
            value,
        );
        self.encoded_keys += 1;
    }
}

impl<K, V> std::fmt::Debug for KeyedState<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("name", &self.tracker.name)
            .field("hot_entries", &self.map.len())
            .field("dirty", &self.tracker.dirty.len())
            .field("pending", &self.tracker.pending.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

/// Appends `key`'s entry (its value, or its removal) to `delta`.
fn encode_entry<K, V>(
    delta: &mut KeyedDelta,
    name: &'static str,
    max_parallelism: usize,
    codec: &impl StateCodec<K, V>,
    key: &K,
    value: Option<&V>,
) {
    let group = u16::try_from(keygroup::key_group(codec.key_hash(key), max_parallelism))
        .expect("invariant: max parallelism is at most 32768");
    match value {
        Some(v) => delta.push_with(
            group,
            name,
            |out| codec.encode_key(key, out),
            Some(|out: &mut Vec<u8>| codec.encode_value(v, out)),
        ),
        None => delta.push_with(
            group,
            name,
            |out| codec.encode_key(key, out),
            None::<fn(&mut Vec<u8>)>,
        ),
    }
}

impl<K: Eq + Hash + Clone, V> KeyedState<K, V> {
    /// A keyed state named `name` (the name identifies it in snapshots; it must stay the same
    /// across versions of the operator).
    pub fn new(name: &'static str, ctx: &StateContext, max_parallelism: usize) -> Self {
        let bounded = ctx.config.kind == BackendKind::Sled && ctx.store.is_some();
        // The hot map gets three quarters of the budget; the store's own cache the rest.
        let memory_budget = if bounded {
            ctx.config.memory_budget / 4 * 3
        } else {
            usize::MAX
        };
        let mut s = KeyedState {
            map: HashMap::new(),
            tracker: Tracker {
                name,
                max_parallelism,
                track: ctx.store.is_some(),
                dirty: Vec::new(),
                epoch: 1,
                pending_epoch: None,
                pending: Vec::new(),
                delta: KeyedDelta::new(),
                encoded_keys: 0,
            },
            store: ctx.store.clone(),
            max_entries: usize::MAX,
            memory_budget,
            may_miss: false,
            entry_bytes: INITIAL_ENTRY_BYTES,
            scratch: Vec::new(),
        };
        s.update_bound();
        s
    }

    fn update_bound(&mut self) {
        if self.memory_budget != usize::MAX {
            self.max_entries = (self.memory_budget / (self.entry_bytes + SLOT_OVERHEAD)).max(16);
        }
    }

    fn key_group(&self, codec: &impl StateCodec<K, V>, key: &K) -> u16 {
        let g = keygroup::key_group(codec.key_hash(key), self.tracker.max_parallelism);
        u16::try_from(g).expect("invariant: max parallelism is at most 32768")
    }

    /// Brings `key` into the hot map from the store if it may be there. Returns whether the map
    /// now has a slot for it.
    fn load<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.map.contains_key(key) {
            return Ok(true);
        }
        if !self.may_miss {
            return Ok(false);
        }
        let Some(store) = self.store.clone() else {
            return Ok(false);
        };
        let owned = key.to_owned();
        let group = self.key_group(codec, &owned);
        self.scratch.clear();
        codec.encode_key(&owned, &mut self.scratch);
        let Some(bytes) = store.get(group, self.tracker.name, &self.scratch)? else {
            return Ok(false);
        };
        let value = codec.decode_value(&bytes)?;
        self.make_room(codec)?;
        self.map.insert(
            owned,
            Slot {
                value: Some(value),
                epoch: 0,
            },
        );
        Ok(true)
    }

    /// The value of `key`.
    pub fn get<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<&V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.may_miss && !self.load(codec, key)? {
            return Ok(None);
        }
        Ok(self.map.get(key).and_then(|s| s.value.as_ref()))
    }

    /// The value of `key` for update: the key counts as written. One hash lookup when the key is
    /// in memory.
    pub fn get_mut<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<&mut V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.may_miss && !self.load(codec, key)? {
            return Ok(None);
        }
        let Some(slot) = self.map.get_mut(key) else {
            return Ok(None);
        };
        if slot.value.is_none() {
            return Ok(None);
        }
        self.tracker.mark(slot, key, codec);
        Ok(slot.value.as_mut())
    }

    /// Sets the value of `key`.
    pub fn insert(&mut self, codec: &impl StateCodec<K, V>, key: K, value: V) -> Result<()> {
        if let Some(slot) = self.map.get_mut(&key) {
            self.tracker.mark(slot, &key, codec);
            slot.value = Some(value);
            return Ok(());
        }
        self.make_room(codec)?;
        let epoch = if self.tracker.track {
            self.tracker.dirty.push(key.clone());
            self.tracker.epoch
        } else {
            0
        };
        self.map.insert(
            key,
            Slot {
                value: Some(value),
                epoch,
            },
        );
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.may_miss && !self.load(codec, key)? {
            return Ok(None);
        }
        if !self.tracker.track {
            return Ok(self.map.remove(key).and_then(|s| s.value));
        }
        let Some(slot) = self.map.get_mut(key) else {
            return Ok(None);
        };
        if slot.value.is_none() {
            return Ok(None);
        }
        self.tracker.mark(slot, key, codec);
        // The slot stays as a tombstone until the flush that carries the removal.
        Ok(slot.value.take())
    }

    /// The synchronous part of a flush, O(1): the keys written so far become the flush's, and
    /// later writes belong to the next one. A flush still in progress is finished first.
    pub fn begin_flush(&mut self, codec: &impl StateCodec<K, V>) {
        if self.tracker.pending_epoch.is_some() {
            self.continue_flush(codec, usize::MAX);
        }
        let t = &mut self.tracker;
        std::mem::swap(&mut t.pending, &mut t.dirty);
        t.pending_epoch = Some(t.epoch);
        t.epoch += 1;
    }

    /// Encodes up to `budget` keys of the flush in progress; true once it is complete (then
    /// [`KeyedState::take_flushed`] hands over its delta). Flushed removals leave the map.
    pub fn continue_flush(&mut self, codec: &impl StateCodec<K, V>, budget: usize) -> bool {
        let Some(epoch) = self.tracker.pending_epoch else {
            return true;
        };
        for _ in 0..budget {
            let Some(key) = self.tracker.pending.pop() else {
                break;
            };
            let Some(slot) = self.map.get_mut(&key) else {
                continue;
            };
            if slot.epoch != epoch {
                // Written again since the flush began: encoded then.
                continue;
            }
            self.tracker.encode(codec, &key, slot.value.as_ref());
            if slot.value.is_none() {
                self.map.remove(&key);
            } else {
                slot.epoch = 0;
            }
        }
        if !self.tracker.pending.is_empty() {
            return false;
        }
        self.tracker.pending_epoch = None;
        let t = &self.tracker;
        if let Some(average) = t.delta.data_size().checked_div(t.encoded_keys) {
            // A running estimate, weighted towards the newest measurement.
            self.entry_bytes = (self.entry_bytes + average) / 2;
            self.update_bound();
        }
        true
    }

    /// The delta of the last complete flush (empty when there was none since).
    pub fn take_flushed(&mut self) -> KeyedDelta {
        self.tracker.encoded_keys = 0;
        std::mem::take(&mut self.tracker.delta)
    }

    /// A whole flush now: every slot written since the last flush, encoded into `delta`.
    pub fn flush_into(&mut self, codec: &impl StateCodec<K, V>, delta: &mut KeyedDelta) {
        self.begin_flush(codec);
        self.continue_flush(codec, usize::MAX);
        delta.append(&self.take_flushed());
    }

    /// Before inserting a new slot: over the bound, flush every dirty slot to the store in one
    /// bulk write and evict clean slots down to half the bound. While a checkpoint's flush is in
    /// progress nothing is written back (the store must receive that flush first): only slots
    /// already clean are evicted, and the map may exceed its bound until the flush is handed over.
    fn make_room(&mut self, codec: &impl StateCodec<K, V>) -> Result<()> {
        if self.map.len() < self.max_entries {
            return Ok(());
        }
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        if self.tracker.pending_epoch.is_none() && self.tracker.delta.is_empty() {
            let mut delta = KeyedDelta::new();
            self.flush_into(codec, &mut delta);
            store.write_back(delta)?;
        }
        let target = self.max_entries / 2;
        let mut excess = self.map.len().saturating_sub(target);
        self.map.retain(|_, slot| {
            if excess == 0 || slot.epoch != 0 {
                return true;
            }
            excess -= 1;
            false
        });
        self.may_miss = true;
        Ok(())
    }

    /// Adds a restored entry (clean: the store already holds it).
    pub fn restore_entry(
        &mut self,
        codec: &impl StateCodec<K, V>,
        key: &[u8],
        value: &[u8],
    ) -> Result<K> {
        let key = codec.decode_key(key)?;
        if self.map.len() >= self.max_entries {
            // The rest stays in the store, read on a miss.
            self.may_miss = true;
            return Ok(key);
        }
        let value = codec.decode_value(value)?;
        self.map.insert(
            key.clone(),
            Slot {
                value: Some(value),
                epoch: 0,
            },
        );
        Ok(key)
    }

    /// Every key and value held in memory, in hash order. With the `hashmap` backend this is the
    /// whole state; with `sled` only its hot part.
    pub fn hot_entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map
            .iter()
            .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, v)))
    }
}

/// Runs both parts of a checkpoint of `op` now, on this thread: its operator state and, when it
/// has a store, the full keyed snapshot. For tests and tools; the runtime splits the two parts.
pub fn snapshot_now(
    op: &mut dyn crate::operator::Operator,
    store: Option<&Arc<SubtaskStore>>,
    checkpoint_id: u64,
) -> Result<(Vec<u8>, Option<streamsql_storage::Snapshot>)> {
    let operator = op.snapshot_state(checkpoint_id)?;
    let mut delta = KeyedDelta::new();
    op.snapshot_keyed(&mut delta)?;
    let Some(store) = store else {
        return Ok((operator, None));
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    store.submit_snapshot(
        checkpoint_id,
        delta,
        true,
        streamsql_storage::Compression::None,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    store.run_queued();
    let encoded = rx
        .recv()
        .map_err(|_| EngineError::internal("a snapshot job ended without a result"))?
        .map_err(|message| EngineError::Task { message })?;
    // Read back from its file form: records in file order, whatever the backend.
    let snapshot = streamsql_storage::snapshot::decode(&encoded.bytes)
        .map_err(|e| storage_error("cannot read a snapshot back", e))?;
    Ok((operator, Some(snapshot)))
}

/// Restores a freshly created operator: operator state first, then every keyed entry of
/// `keyed` (through the subtask's store, which keeps the byte form), then derived structures.
pub fn restore_operator(
    op: &mut dyn crate::operator::Operator,
    store: Option<&Arc<SubtaskStore>>,
    operator: &[u8],
    keyed: Vec<streamsql_storage::Snapshot>,
) -> Result<()> {
    op.restore_state(operator)?;
    if keyed.is_empty() {
        return Ok(());
    }
    let Some(store) = store else {
        return Err(EngineError::internal(
            "a subtask with keyed state to restore has no state store",
        ));
    };
    store.restore(keyed)?;
    store.scan(&mut |name, _group, key, value| op.restore_keyed(name, key, value))?;
    op.keyed_restored()
}

/// A state context with a store of `kind` owning every key group, for tests and tools.
pub fn standalone_context(kind: BackendKind, memory_budget: usize) -> StateContext {
    let config = StateBackendConfig {
        kind,
        memory_budget,
        local_dir: None,
        incremental: false,
        local_recovery: None,
    };
    let store = SubtaskStore::new(
        config.clone(),
        streamsql_storage::KeyGroupRange::new(0, u16::MAX),
        "standalone",
    );
    StateContext {
        config,
        store: Some(Arc::new(store)),
        checkpointing: false,
    }
}

/// Turns a storage error into the engine's.
pub(crate) fn storage_error(what: &str, e: streamsql_storage::StorageError) -> EngineError {
    match e {
        streamsql_storage::StorageError::Io { source, .. } => EngineError::io(what, source),
        other => EngineError::Task {
            message: format!("{what}: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys and values are i64s, eight bytes each.
    struct I64Codec;

    impl StateCodec<i64, i64> for I64Codec {
        fn key_hash(&self, key: &i64) -> i32 {
            *key as i32
        }
        fn encode_key(&self, key: &i64, out: &mut Vec<u8>) {
            out.extend_from_slice(&key.to_be_bytes());
        }
        fn decode_key(&self, bytes: &[u8]) -> Result<i64> {
            Ok(i64::from_be_bytes(
                bytes
                    .try_into()
                    .map_err(|_| crate::codec::corrupt("not eight bytes"))?,
            ))
        }
        fn encode_value(&self, value: &i64, out: &mut Vec<u8>) {
            out.extend_from_slice(&value.to_be_bytes());
        }
        fn decode_value(&self, bytes: &[u8]) -> Result<i64> {
            self.decode_key(bytes)
        }
    }

    /// The entries of a delta as (key, value), sorted by key.
    fn entries(delta: &KeyedDelta) -> Vec<(i64, Option<i64>)> {
        let c = I64Codec;
        let mut v: Vec<(i64, Option<i64>)> = delta
            .records()
            .map(|r| {
                (
                    c.decode_key(r.key).unwrap(),
                    r.value.map(|b| c.decode_value(b).unwrap()),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn state() -> KeyedState<i64, i64> {
        let ctx = standalone_context(BackendKind::HashMap, DEFAULT_MEMORY_BUDGET);
        KeyedState::new("s", &ctx, 128)
    }

    #[test]
    fn a_flush_in_progress_keeps_the_values_at_its_beginning() {
        let c = I64Codec;
        let mut s = state();
        for k in 0..10 {
            s.insert(&c, k, k * 10).unwrap();
        }
        s.begin_flush(&c);
        // Written while the flush is in progress: before and after their chunk came.
        assert!(!s.continue_flush(&c, 3));
        *s.get_mut(&c, &4).unwrap().unwrap() = 41;
        assert_eq!(s.remove(&c, &5).unwrap(), Some(50));
        s.insert(&c, 11, 110).unwrap();
        assert!(s.continue_flush(&c, usize::MAX));
        let first = entries(&s.take_flushed());
        assert_eq!(
            first,
            (0..10).map(|k| (k, Some(k * 10))).collect::<Vec<_>>()
        );
        // The next flush carries exactly the writes made meanwhile.
        let mut next = KeyedDelta::new();
        s.flush_into(&c, &mut next);
        assert_eq!(
            entries(&next),
            vec![(4, Some(41)), (5, None), (11, Some(110))]
        );
        assert_eq!(s.get(&c, &5).unwrap(), None);
        let mut empty = KeyedDelta::new();
        s.flush_into(&c, &mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn beginning_a_flush_finishes_the_one_in_progress() {
        let c = I64Codec;
        let mut s = state();
        s.insert(&c, 1, 10).unwrap();
        s.begin_flush(&c);
        s.insert(&c, 2, 20).unwrap();
        s.begin_flush(&c);
        let first = entries(&s.take_flushed());
        assert!(s.continue_flush(&c, usize::MAX));
        let second = entries(&s.take_flushed());
        assert_eq!(first, vec![(1, Some(10))]);
        assert_eq!(second, vec![(2, Some(20))]);
    }
}
