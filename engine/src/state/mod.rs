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

pub mod compaction;
mod key_filter;
pub mod latency;
pub mod store;

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};
use std::path::PathBuf;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::error::{EngineError, Result};
use crate::keygroup;
use crate::metrics::TaskMetrics;
use crate::runtime::clock::Clock;
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
    /// `state.backend.sled.*` tuning.
    pub sled: SledTuning,
}

/// How the `sled` backend divides and frees its memory, and how sled runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SledTuning {
    /// `state.backend.sled.write-buffer-ratio`: the share of the memory budget for the operators'
    /// in-memory (typed) state; the rest is the store's byte cache and sled's page cache.
    pub write_buffer_ratio: f64,
    /// `state.backend.sled.evict-ratio`: the share of a full cache freed at each write-back.
    pub evict_ratio: f64,
    /// `state.backend.sled.mode` = `low-space`.
    pub low_space: bool,
}

impl Default for SledTuning {
    fn default() -> Self {
        SledTuning {
            write_buffer_ratio: 0.75,
            evict_ratio: 0.5,
            low_space: false,
        }
    }
}

impl SledTuning {
    /// `fraction` of `bytes` (a byte count scaled by a ratio: the rounding is irrelevant).
    fn share(bytes: usize, fraction: f64) -> usize {
        (bytes as f64 * fraction.clamp(0.0, 1.0)) as usize
    }

    /// Bytes of the memory budget for the operators' in-memory state.
    pub fn hot_bytes(&self, budget: usize) -> usize {
        Self::share(budget, self.write_buffer_ratio)
    }

    /// Bytes of the memory budget for the store's caches.
    pub fn store_bytes(&self, budget: usize) -> usize {
        budget.saturating_sub(self.hot_bytes(budget))
    }
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
            sled: SledTuning::default(),
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
    /// `table.exec.state.ttl`, when set: states created with [`KeyedState::with_ttl`] expire.
    pub ttl: Option<StateTtl>,
    /// `state.latency-track.*`, when `keyed-state-enabled` is on.
    pub latency: Option<latency::LatencyTracking>,
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

    /// Appends every entry of `other`, in order; an empty delta takes `other` over whole.
    pub fn append(&mut self, other: KeyedDelta) {
        if self.is_empty() {
            *self = other;
        } else {
            self.append_copy(&other);
        }
    }

    /// Appends a copy of every entry of `other`, in order.
    pub fn append_copy(&mut self, other: &KeyedDelta) {
        let states: Vec<u16> = other.names.iter().map(|n| self.state_index(n)).collect();
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.entries
            .extend(other.entries.iter().map(|e| DeltaEntry {
                state: states[usize::from(e.state)],
                start: e.start + offset,
                ..*e
            }));
    }

    /// Makes room for `entries` more entries of about `bytes` bytes in all.
    fn reserve(&mut self, entries: usize, bytes: usize) {
        self.entries.reserve(entries);
        self.bytes.reserve(bytes);
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
    /// Processing time (epoch milliseconds) of the last write, when the state has a TTL; 0
    /// otherwise.
    written: i64,
}

/// One entry of the hot map.
#[derive(Debug)]
struct Entry<K, V> {
    key: K,
    slot: Slot<V>,
}

/// `table.exec.state.ttl` as the runtime hands it to operators whose state expires (Flink's
/// non-windowed operators; windows clean up by time themselves).
#[derive(Clone)]
pub struct StateTtl {
    /// How long an entry lives after its last write.
    pub ttl: std::time::Duration,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StateTtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTtl").field("ttl", &self.ttl).finish()
    }
}

/// The names a keyed state with a TTL is stored under: entries of a state with a TTL carry their
/// write time, so the two layouts have different names and a restore knows which it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateNames {
    /// Values without a write time (no TTL configured).
    pub plain: &'static str,
    /// Values prefixed with their write time (a TTL configured).
    pub with_ttl: &'static str,
}

/// Hash-table slots the sweeper examines per call at least, and at most: a full pass over a large
/// map is spread over many calls so that no call pauses processing for long.
const SWEEP_MIN_SLOTS: usize = 16 * 1024;
const SWEEP_MAX_SLOTS: usize = 256 * 1024;

/// The expiry of a state with a TTL (Flink's `OnCreateAndWrite`, `NeverReturnExpired`,
/// processing time): an entry expires `ttl` after its last write, is never returned once expired,
/// and is removed on access or by the incremental sweeper, whichever comes first.
struct Expiry {
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    /// Processing time as of the last [`KeyedState::refresh_time`]: read once per batch, not per
    /// record.
    now: i64,
    /// The next hash-table slot the sweeper examines.
    cursor: usize,
    /// When the sweeper's current pass over the hot map began.
    pass_started: i64,
    /// The next key group whose stored (evicted) entries the sweeper examines, once a pass over
    /// the hot map found keys may be in the store only.
    cold_group: Option<u16>,
    metrics: Arc<TaskMetrics>,
}

impl Expiry {
    fn expired(&self, written: i64) -> bool {
        self.now.saturating_sub(written) >= self.ttl_ms
    }

    fn count(&self, bytes: usize) {
        TaskMetrics::add(&self.metrics.state_ttl_expired, 1);
        TaskMetrics::add(
            &self.metrics.state_ttl_bytes_reclaimed,
            u64::try_from(bytes).unwrap_or(u64::MAX),
        );
    }
}

/// Bytes charged per slot beyond its encoded size: the typed value is larger than its bytes, plus
/// the hash table's share. An estimate: the bound is approximate by design.
const SLOT_OVERHEAD: usize = 96;
/// The encoded size of an entry assumed before any was measured.
const INITIAL_ENTRY_BYTES: usize = 64;

/// After this many entries of a flush, the rest of its buffer is reserved from their average size.
const SIZE_SAMPLE: usize = 256;

/// One keyed state of an operator subtask: typed values by key, with change tracking and (with
/// the `sled` backend) a memory bound. See the module documentation for the invariants.
///
/// Writes are grouped in intervals, one per flush. A flush begins in O(1) (the interval's dirty
/// list becomes the pending list and a new interval starts) and continues in chunks; a slot of the
/// pending interval that is written before its chunk came is encoded first (copy on write), so the
/// flush holds exactly the values at its beginning.
///
/// With a TTL ([`KeyedState::with_ttl`]) every slot carries its last write time: an expired value
/// reads as absent and is removed like any removal (a tombstone until the next flush, so the
/// removal reaches the store and the next incremental checkpoint), and
/// [`KeyedState::sweep_expired`] walks the hash table a bounded number of slots at a time to remove
/// the expired entries nobody reads.
pub struct KeyedState<K, V> {
    map: HashTable<Entry<K, V>>,
    hasher: RandomState,
    tracker: Tracker<K>,
    store: Option<Arc<SubtaskStore>>,
    /// Entries the hot map may hold before it spills; `usize::MAX` without a bound.
    max_entries: usize,
    memory_budget: usize,
    /// The share of the bound freed when the hot map spills (`state.backend.sled.evict-ratio`).
    evict_ratio: f64,
    /// Whether some key may be in the store and not in the map (evicted, or restored lazily):
    /// only then does a miss read the store.
    may_miss: bool,
    /// The keys that may be in the store and not in the map: a miss of a key it has never seen
    /// (a new key) reads nothing.
    in_store: key_filter::KeyFilter,
    /// Measured average encoded size of an entry.
    entry_bytes: usize,
    scratch: Vec<u8>,
    /// The names of a state that may have a TTL, `None` for a state that never has one.
    names: Option<StateNames>,
    ttl: Option<Expiry>,
    /// Access latency sampling, when tracked.
    latency: Option<latency::StateLatency>,
}

/// The change tracking of a [`KeyedState`], apart from its map so that a slot can be marked while
/// it is borrowed.
struct Tracker<K> {
    /// The name entries are written under.
    name: &'static str,
    /// Whether values are written with their write time (the state has a TTL).
    stamped: bool,
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
            self.encode(codec, &owned, slot);
        }
        slot.epoch = self.epoch;
        self.dirty.push(owned);
    }

    fn encode<V>(&mut self, codec: &impl StateCodec<K, V>, key: &K, slot: &Slot<V>) {
        let stamp = self.stamped.then_some(slot.written);
        encode_entry(
            &mut self.delta,
            self.name,
            self.max_parallelism,
            codec,
            key,
            slot.value.as_ref(),
            stamp,
        );
        self.encoded_keys += 1;
    }
}

thread_local! {
    /// Set by [`drop_keeping_state_memory`] for the drops it runs.
    static KEEP_MEMORY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (which drops operators) so that the keyed states it drops leave their in-memory
/// entries to the process instead of freeing them one by one: for a process that ends right
/// after its job, whose memory the exit returns at once. Stores and files are released as usual.
pub fn drop_keeping_state_memory(f: impl FnOnce()) {
    KEEP_MEMORY.with(|k| k.set(true));
    f();
    KEEP_MEMORY.with(|k| k.set(false));
}

impl<K, V> Drop for KeyedState<K, V> {
    fn drop(&mut self) {
        if KEEP_MEMORY.with(std::cell::Cell::get) {
            std::mem::forget(std::mem::take(&mut self.map));
        }
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
            .field("ttl_ms", &self.ttl.as_ref().map(|t| t.ttl_ms))
            .finish()
    }
}

/// Appends `key`'s entry (its value, prefixed with its write time when `stamp` is given, or its
/// removal) to `delta`.
fn encode_entry<K, V>(
    delta: &mut KeyedDelta,
    name: &'static str,
    max_parallelism: usize,
    codec: &impl StateCodec<K, V>,
    key: &K,
    value: Option<&V>,
    stamp: Option<i64>,
) {
    let group = u16::try_from(keygroup::key_group(codec.key_hash(key), max_parallelism))
        .expect("invariant: max parallelism is at most 32768");
    match value {
        Some(v) => delta.push_with(
            group,
            name,
            |out| codec.encode_key(key, out),
            Some(|out: &mut Vec<u8>| {
                if let Some(t) = stamp {
                    out.extend_from_slice(&t.to_le_bytes());
                }
                codec.encode_value(v, out);
            }),
        ),
        None => delta.push_with(
            group,
            name,
            |out| codec.encode_key(key, out),
            None::<fn(&mut Vec<u8>)>,
        ),
    }
}

/// Splits a stored value of a state with a TTL into its write time and the value's bytes.
fn split_stamp(bytes: &[u8]) -> Result<(i64, &[u8])> {
    let Some((stamp, value)) = bytes.split_first_chunk::<8>() else {
        return Err(crate::codec::corrupt(
            "a value of a state with a TTL is shorter than its write time",
        ));
    };
    Ok((i64::from_le_bytes(*stamp), value))
}

fn find_mut<'a, K, V, Q>(
    map: &'a mut HashTable<Entry<K, V>>,
    hasher: &RandomState,
    key: &Q,
) -> Option<&'a mut Entry<K, V>>
where
    K: Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    map.find_mut(hasher.hash_one(key), |e| e.key.borrow() == key)
}

/// Applies the TTL to the slot an access found: an expired value is removed as if by a removal
/// (a tombstone, flushed like any other) and counted. Returns whether it expired.
fn expire_on_access<K: Clone, V>(
    ttl: &Option<Expiry>,
    tracker: &mut Tracker<K>,
    scratch: &mut Vec<u8>,
    codec: &impl StateCodec<K, V>,
    entry: &mut Entry<K, V>,
) -> bool {
    let Some(t) = ttl else {
        return false;
    };
    let Some(value) = entry.slot.value.as_ref() else {
        return false;
    };
    if !t.expired(entry.slot.written) {
        return false;
    }
    scratch.clear();
    codec.encode_key(&entry.key, scratch);
    codec.encode_value(value, scratch);
    t.count(scratch.len() + 8);
    // Without tracking the tombstone has nothing to carry and the sweeper drops it.
    tracker.mark(&mut entry.slot, &entry.key, codec);
    entry.slot.value = None;
    true
}

/// The hot entry of `key` when it holds a live value: absent, removed, or expired (then removed
/// as [`expire_on_access`] does) gives `None`.
fn live_entry<'m, K, V, Q>(
    map: &'m mut HashTable<Entry<K, V>>,
    hasher: &RandomState,
    ttl: &Option<Expiry>,
    tracker: &mut Tracker<K>,
    scratch: &mut Vec<u8>,
    codec: &impl StateCodec<K, V>,
    key: &Q,
) -> Option<&'m mut Entry<K, V>>
where
    K: Clone + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    let entry = find_mut(map, hasher, key)?;
    if entry.slot.value.is_none() || expire_on_access(ttl, tracker, scratch, codec, entry) {
        return None;
    }
    Some(entry)
}

/// [`live_entry`] of `$key` in the state `$s`, borrowing its fields apart.
macro_rules! live_entry {
    ($s:expr, $codec:expr, $key:expr) => {
        live_entry(
            &mut $s.map,
            &$s.hasher,
            &$s.ttl,
            &mut $s.tracker,
            &mut $s.scratch,
            $codec,
            $key,
        )
    };
}

impl<K: Eq + Hash + Clone, V> KeyedState<K, V> {
    /// A keyed state named `name` (the name identifies it in snapshots; it must stay the same
    /// across versions of the operator). It never expires.
    pub fn new(name: &'static str, ctx: &StateContext, max_parallelism: usize) -> Self {
        let bounded = ctx.config.kind == BackendKind::Sled && ctx.store.is_some();
        // The hot map gets `write-buffer-ratio` of the budget; the store's own caches the rest.
        let memory_budget = if bounded {
            ctx.config.sled.hot_bytes(ctx.config.memory_budget)
        } else {
            usize::MAX
        };
        let mut s = KeyedState {
            map: HashTable::new(),
            hasher: RandomState::new(),
            tracker: Tracker {
                name,
                stamped: false,
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
            evict_ratio: ctx.config.sled.evict_ratio,
            may_miss: false,
            in_store: key_filter::KeyFilter::default(),
            entry_bytes: INITIAL_ENTRY_BYTES,
            scratch: Vec::new(),
            names: None,
            ttl: None,
            latency: ctx
                .latency
                .as_ref()
                .map(|config| latency::StateLatency::new(name, config)),
        };
        s.update_bound();
        s
    }

    /// A keyed state that expires after `ctx.ttl` when the job sets `table.exec.state.ttl`, stored
    /// under `names.with_ttl` then and under `names.plain` otherwise. A restore reads either
    /// layout: enabling or disabling the TTL keeps the state (Flink 2.2 and later do the same);
    /// entries restored without a write time count as written at the restore.
    pub fn with_ttl(
        names: StateNames,
        ctx: &StateContext,
        max_parallelism: usize,
        metrics: &Arc<TaskMetrics>,
    ) -> Self {
        let mut s = KeyedState::new(names.plain, ctx, max_parallelism);
        s.names = Some(names);
        if let Some(ttl) = &ctx.ttl {
            s.tracker.name = names.with_ttl;
            s.tracker.stamped = true;
            let now = ttl.clock.now_millis();
            s.ttl = Some(Expiry {
                ttl_ms: i64::try_from(ttl.ttl.as_millis()).unwrap_or(i64::MAX),
                clock: ttl.clock.clone(),
                now,
                cursor: 0,
                pass_started: now,
                cold_group: None,
                metrics: metrics.clone(),
            });
        }
        s
    }

    /// Whether entries expire (the state has a TTL).
    pub fn expires(&self) -> bool {
        self.ttl.is_some()
    }

    /// Reads processing time for the TTL: once per batch, so that a record's accesses cost no
    /// clock read.
    pub fn refresh_time(&mut self) {
        if let Some(t) = &mut self.ttl {
            t.now = t.clock.now_millis();
        }
    }

    /// The write time a write stamps now.
    fn stamp(&self) -> i64 {
        self.ttl.as_ref().map_or(0, |t| t.now)
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

    fn insert_entry(&mut self, key: K, slot: Slot<V>) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(&key);
        self.map
            .insert_unique(hash, Entry { key, slot }, |e| hasher.hash_one(&e.key));
    }

    fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map
            .find(self.hasher.hash_one(key), |e| e.key.borrow() == key)
            .is_some()
    }

    /// Decodes a stored value: its write time (the restore's time for a value stored without
    /// one by a state with a TTL) and the value.
    fn decode_stored(
        &self,
        codec: &impl StateCodec<K, V>,
        stamped: bool,
        bytes: &[u8],
    ) -> Result<(i64, V)> {
        if stamped {
            let (written, value) = split_stamp(bytes)?;
            Ok((written, codec.decode_value(value)?))
        } else {
            Ok((self.stamp(), codec.decode_value(bytes)?))
        }
    }

    /// Brings `key` into the hot map from the store if it may be there. Returns whether the map
    /// now has a slot for it.
    fn load<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.contains(key) {
            return Ok(true);
        }
        if !self.may_miss || !self.in_store.may_contain(self.hasher.hash_one(key)) {
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
        let (written, value) = self.decode_stored(codec, self.tracker.stamped, &bytes)?;
        self.make_room(codec)?;
        self.insert_entry(
            owned,
            Slot {
                value: Some(value),
                epoch: 0,
                written,
            },
        );
        Ok(true)
    }

    fn get_untimed<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<&V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.may_miss && !self.load(codec, key)? {
            return Ok(None);
        }
        Ok(live_entry!(self, codec, key).and_then(|e| e.slot.value.as_ref()))
    }

    fn get_mut_untimed<Q>(
        &mut self,
        codec: &impl StateCodec<K, V>,
        key: &Q,
    ) -> Result<Option<&mut V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.may_miss && !self.load(codec, key)? {
            return Ok(None);
        }
        let stamp = self.stamp();
        let Some(entry) = live_entry!(self, codec, key) else {
            return Ok(None);
        };
        self.tracker.mark(&mut entry.slot, key, codec);
        entry.slot.written = stamp;
        Ok(entry.slot.value.as_mut())
    }

    fn insert_untimed(&mut self, codec: &impl StateCodec<K, V>, key: K, value: V) -> Result<()> {
        let written = self.stamp();
        if let Some(entry) = find_mut(&mut self.map, &self.hasher, &key) {
            self.tracker.mark(&mut entry.slot, &key, codec);
            entry.slot.value = Some(value);
            entry.slot.written = written;
            return Ok(());
        }
        self.make_room(codec)?;
        let epoch = if self.tracker.track {
            self.tracker.dirty.push(key.clone());
            self.tracker.epoch
        } else {
            0
        };
        self.insert_entry(
            key,
            Slot {
                value: Some(value),
                epoch,
                written,
            },
        );
        Ok(())
    }

    fn remove_untimed<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.may_miss && !self.load(codec, key)? {
            return Ok(None);
        }
        if !self.tracker.track {
            let hash = self.hasher.hash_one(key);
            let Ok(found) = self.map.find_entry(hash, |e| e.key.borrow() == key) else {
                return Ok(None);
            };
            let (mut entry, _) = found.remove();
            if expire_on_access(
                &self.ttl,
                &mut self.tracker,
                &mut self.scratch,
                codec,
                &mut entry,
            ) {
                return Ok(None);
            }
            return Ok(entry.slot.value);
        }
        let Some(entry) = live_entry!(self, codec, key) else {
            return Ok(None);
        };
        self.tracker.mark(&mut entry.slot, key, codec);
        // The slot stays as a tombstone until the flush that carries the removal.
        Ok(entry.slot.value.take())
    }

    /// Runs the access `f`, timing it when latency tracking samples this access of `op`.
    #[inline(always)]
    fn timed<'a, R>(&'a mut self, op: latency::StateOp, f: impl FnOnce(&'a mut Self) -> R) -> R {
        if self.latency.is_none() {
            return f(self);
        }
        let sample = self.latency.as_mut().and_then(|l| l.sample(op));
        let r = f(self);
        if let Some((histogram, start)) = sample {
            histogram.record(start.elapsed());
        }
        r
    }

    /// The value of `key`.
    pub fn get<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<&V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.timed(latency::StateOp::Get, |s| s.get_untimed(codec, key))
    }

    /// The value of `key` for update: the key counts as written (with a TTL, its time is
    /// refreshed). One hash lookup when the key is in memory.
    pub fn get_mut<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<&mut V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.timed(latency::StateOp::Get, |s| s.get_mut_untimed(codec, key))
    }

    /// Sets the value of `key`.
    pub fn insert(&mut self, codec: &impl StateCodec<K, V>, key: K, value: V) -> Result<()> {
        self.timed(latency::StateOp::Update, |s| {
            s.insert_untimed(codec, key, value)
        })
    }

    /// Removes `key`, returning its value (`None` when it had none, or it had expired).
    pub fn remove<Q>(&mut self, codec: &impl StateCodec<K, V>, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.timed(latency::StateOp::Clear, |s| s.remove_untimed(codec, key))
    }

    /// Removes expired entries, examining at most a bounded number of hash-table slots from
    /// where the previous call stopped (between `SWEEP_MIN_SLOTS` and `SWEEP_MAX_SLOTS`, an
    /// eighth of the table when that lies between), so that a pass over the whole map is spread
    /// over calls and no call pauses the operator for long. Runs on the operator thread, which
    /// owns the state, so it never races a record. Once a pass over the hot map is complete and
    /// keys may live only in the store (`sled` over its memory budget), each call also examines
    /// the store's next key groups (whole groups, about as many entries as a hot slice). Removals are tombstones like any other, so they reach the
    /// store and the next (incremental) checkpoint. Does nothing without a TTL.
    pub fn sweep_expired(&mut self, codec: &impl StateCodec<K, V>) -> Result<()> {
        let Some(t) = self.ttl.as_mut() else {
            return Ok(());
        };
        t.now = t.clock.now_millis();
        let buckets = self.map.num_buckets();
        let budget = (buckets / 8).clamp(SWEEP_MIN_SLOTS, SWEEP_MAX_SLOTS);
        let start = t.cursor.min(buckets);
        let end = start.saturating_add(budget).min(buckets);
        let track = self.tracker.track;
        for i in start..end {
            let Ok(mut found) = self.map.get_bucket_entry(i) else {
                continue;
            };
            let entry = found.get_mut();
            if entry.slot.value.is_none() {
                // A tombstone outlives its flush only when nothing tracks it.
                if !track {
                    found.remove();
                }
                continue;
            }
            if !expire_on_access(
                &self.ttl,
                &mut self.tracker,
                &mut self.scratch,
                codec,
                entry,
            ) {
                continue;
            }
            if !track {
                found.remove();
            }
        }
        let t = self
            .ttl
            .as_mut()
            .expect("invariant: the TTL was checked above");
        t.cursor = end;
        if end >= buckets {
            // A pass is complete: an entry expired before it began is gone now.
            let lag = t.now.saturating_sub(t.pass_started);
            t.metrics.state_ttl_sweep_lag_ms.store(
                u64::try_from(lag).unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            t.cursor = 0;
            t.pass_started = t.now;
            if self.may_miss && t.cold_group.is_none() {
                t.cold_group = self.store.as_ref().map(|s| s.key_groups().start);
            }
        }
        self.sweep_cold(codec)
    }

    /// Examines the store's next key groups (whole groups, until about `SWEEP_MIN_SLOTS`
    /// entries) for expired entries that are not in the hot map, and removes them (a tombstone
    /// each, carried by the next flush).
    fn sweep_cold(&mut self, codec: &impl StateCodec<K, V>) -> Result<()> {
        let (Some(t), Some(store)) = (self.ttl.as_mut(), self.store.clone()) else {
            return Ok(());
        };
        let Some(group) = t.cold_group else {
            return Ok(());
        };
        let range = store.key_groups();
        let now = t.now;
        let ttl_ms = t.ttl_ms;
        let name = self.tracker.name;
        let mut expired: Vec<(Vec<u8>, usize)> = Vec::new();
        // Whole key groups, until about as many entries as a hot slice were examined: the scan
        // stops at the first key group after the one where the budget ran out.
        let mut examined = 0;
        let mut last_group: Option<u16> = None;
        let mut stopped = false;
        store.scan_groups_while(
            streamsql_storage::KeyGroupRange::new(group, range.end),
            &mut |state, g, key, value| {
                if examined >= SWEEP_MIN_SLOTS && last_group != Some(g) {
                    stopped = true;
                    return Ok(false);
                }
                examined += 1;
                last_group = Some(g);
                if state == name {
                    let (written, _) = split_stamp(value)?;
                    if now.saturating_sub(written) >= ttl_ms {
                        expired.push((key.to_vec(), key.len() + value.len()));
                    }
                }
                Ok(true)
            },
        )?;
        // Stopped: go on after the last group examined; otherwise the pass is complete.
        let next = if stopped {
            last_group.and_then(|g| (g < range.end).then(|| g + 1))
        } else {
            None
        };
        t.cold_group = next;
        for (bytes, size) in expired {
            let key = codec.decode_key(&bytes)?;
            if self.contains(&key) {
                // The hot slot is newer than the store and the hot pass judges it.
                continue;
            }
            // No room is made here: a write-back would change the store under the list just
            // read (a key evicted after its newer value was written back would look expired).
            // The map may exceed its bound by this call's tombstones until the next insert.
            let t = self
                .ttl
                .as_ref()
                .expect("invariant: the TTL was checked above");
            t.count(size);
            self.tracker.dirty.push(key.clone());
            let epoch = self.tracker.epoch;
            self.insert_entry(
                key,
                Slot {
                    value: None,
                    epoch,
                    written: 0,
                },
            );
        }
        Ok(())
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
        // A large flush would otherwise grow its buffers by doubling, copying them each time.
        let bytes = t.pending.len().saturating_mul(self.entry_bytes);
        t.delta.reserve(t.pending.len(), bytes);
    }

    /// Encodes up to `budget` keys of the flush in progress; true once it is complete (then
    /// [`KeyedState::take_flushed`] hands over its delta). Flushed removals leave the map, except
    /// in a bounded state: there a removal must stay visible until the store has it (a miss would
    /// read the store's older value), so its tombstone stays, clean, until it is evicted.
    pub fn continue_flush(&mut self, codec: &impl StateCodec<K, V>, budget: usize) -> bool {
        let Some(epoch) = self.tracker.pending_epoch else {
            return true;
        };
        let bounded = self.memory_budget != usize::MAX;
        for _ in 0..budget {
            let Some(key) = self.tracker.pending.pop() else {
                break;
            };
            let hash = self.hasher.hash_one(&key);
            let Ok(mut found) = self.map.find_entry(hash, |e| e.key == key) else {
                continue;
            };
            let slot = &mut found.get_mut().slot;
            if slot.epoch != epoch {
                // Written again since the flush began: encoded then.
                continue;
            }
            self.tracker.encode(codec, &key, slot);
            if self.tracker.encoded_keys == SIZE_SAMPLE {
                // The entries measured so far tell the size of the rest better than the estimate.
                let t = &mut self.tracker;
                let average = t.delta.data_size() / SIZE_SAMPLE;
                t.delta.reserve(0, t.pending.len().saturating_mul(average));
            }
            slot.epoch = 0;
            if slot.value.is_none() && !bounded {
                found.remove();
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
        delta.append(self.take_flushed());
    }

    /// Before inserting a new slot: over the bound, flush every dirty slot to the store in one
    /// bulk write and evict clean slots down to half the bound. While a checkpoint's flush is in
    /// progress nothing is written back (the store must receive that flush first): only slots
    /// already clean are evicted, except tombstones whose removal the store has not received yet,
    /// and the map may exceed its bound until the flush is handed over.
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
        let flush_pending = self.tracker.pending_epoch.is_some() || !self.tracker.delta.is_empty();
        let keep = 1.0 - self.evict_ratio;
        let target = SledTuning::share(self.max_entries, keep);
        let mut excess = self.map.len().saturating_sub(target);
        let (hasher, in_store) = (&self.hasher, &mut self.in_store);
        self.map.retain(|e| {
            if excess == 0 || e.slot.epoch != 0 || (e.slot.value.is_none() && flush_pending) {
                return true;
            }
            excess -= 1;
            if e.slot.value.is_some() {
                in_store.insert(hasher.hash_one(&e.key));
            }
            false
        });
        self.may_miss = true;
        Ok(())
    }

    /// Adds a restored entry of state `state` (one of this state's names). An entry in this
    /// state's current layout is clean (the store already holds it). An entry in the other layout
    /// (the TTL was enabled or disabled since the snapshot) is converted: it is held in memory,
    /// dirty, so the next flush stores it under the current name, and its old entry is removed
    /// by the same flush; such a restore may exceed the memory bound until that flush. An entry
    /// that expired before the restore is removed by the next flush.
    pub fn restore_entry(
        &mut self,
        codec: &impl StateCodec<K, V>,
        state: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<K> {
        let current = state == self.tracker.name;
        let stamped = match self.names {
            Some(names) if state == names.with_ttl => true,
            Some(names) if state == names.plain => false,
            _ if current => false,
            _ => {
                return Err(EngineError::data(format!(
                    "unknown keyed state '{state}' (expected '{}')",
                    self.tracker.name
                )))
            }
        };
        let decoded = codec.decode_key(key)?;
        if current && self.map.len() >= self.max_entries {
            // The rest stays in the store, read on a miss.
            self.may_miss = true;
            self.in_store.insert(self.hasher.hash_one(&decoded));
            return Ok(decoded);
        }
        let (written, value) = self.decode_stored(codec, stamped, value)?;
        let expired = self.ttl.as_ref().is_some_and(|t| t.expired(written));
        let dirty = !current || expired;
        if !current {
            // The old layout's entry goes with the next flush.
            let old: &'static str = match self.names {
                Some(names) if stamped => names.with_ttl,
                Some(names) => names.plain,
                None => self.tracker.name,
            };
            let group = self.key_group(codec, &decoded);
            self.tracker.delta.push_with(
                group,
                old,
                |out| out.extend_from_slice(key),
                None::<fn(&mut Vec<u8>)>,
            );
        }
        let epoch = if dirty {
            self.tracker.dirty.push(decoded.clone());
            self.tracker.epoch
        } else {
            0
        };
        self.insert_entry(
            decoded.clone(),
            Slot {
                value: (!expired).then_some(value),
                epoch,
                written,
            },
        );
        Ok(decoded)
    }

    /// Every key and value held in memory, in hash order. With the `hashmap` backend this is the
    /// whole state; with `sled` only its hot part.
    pub fn hot_entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map
            .iter()
            .filter_map(|e| e.slot.value.as_ref().map(|v| (&e.key, v)))
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
    Ok((
        operator,
        Some(snapshot_delta_now(store, checkpoint_id, delta)?),
    ))
}

/// The full snapshot `store` takes for checkpoint `checkpoint_id` with the flush `delta`, taken
/// now on this thread and read back from its file form (records in file order, whatever the
/// backend).
pub fn snapshot_delta_now(
    store: &Arc<SubtaskStore>,
    checkpoint_id: u64,
    delta: KeyedDelta,
) -> Result<streamsql_storage::Snapshot> {
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
    streamsql_storage::snapshot::decode(&encoded.bytes)
        .map_err(|e| storage_error("cannot read a snapshot back", e))
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
        sled: SledTuning::default(),
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
        ttl: None,
        latency: None,
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

    const NAMES: StateNames = StateNames {
        plain: "s",
        with_ttl: "s-ttl",
    };

    /// A state with a 100 ms TTL on a clock at 1000, with a store (tracked) or without one.
    fn ttl_state(
        kind: Option<BackendKind>,
        budget: usize,
    ) -> (
        KeyedState<i64, i64>,
        crate::runtime::ManualClock,
        Arc<TaskMetrics>,
    ) {
        let clock = crate::runtime::ManualClock::new(1000);
        let mut ctx = match kind {
            Some(kind) => standalone_context(kind, budget),
            None => StateContext::default(),
        };
        ctx.ttl = Some(StateTtl {
            ttl: std::time::Duration::from_millis(100),
            clock: Arc::new(clock.clone()),
        });
        let metrics = Arc::new(TaskMetrics::new());
        let s = KeyedState::with_ttl(NAMES, &ctx, 128, &metrics);
        (s, clock, metrics)
    }

    /// An entry of a state with a TTL: (state name, key, (write time, value)).
    type Stamped = (&'static str, i64, Option<(i64, i64)>);

    /// The entries of a delta of a state with a TTL.
    fn stamped(delta: &KeyedDelta) -> Vec<Stamped> {
        let c = I64Codec;
        let mut v: Vec<_> = delta
            .records()
            .map(|r| {
                let value = r.value.map(|b| {
                    let (t, rest) = split_stamp(b).unwrap();
                    (t, c.decode_value(rest).unwrap())
                });
                (r.state, c.decode_key(r.key).unwrap(), value)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn expired_values_are_never_returned_and_writes_refresh_them() {
        let c = I64Codec;
        for kind in [None, Some(BackendKind::HashMap)] {
            let (mut s, clock, metrics) = ttl_state(kind, DEFAULT_MEMORY_BUDGET);
            s.insert(&c, 1, 10).unwrap();
            s.insert(&c, 2, 20).unwrap();
            clock.advance(60);
            s.refresh_time();
            // A read does not refresh (Flink's OnCreateAndWrite); a write does.
            assert_eq!(s.get(&c, &1).unwrap(), Some(&10));
            *s.get_mut(&c, &2).unwrap().unwrap() += 1;
            clock.advance(40);
            s.refresh_time();
            assert_eq!(s.get(&c, &1).unwrap(), None, "expired at exactly the TTL");
            assert_eq!(s.get_mut(&c, &1).unwrap(), None);
            assert_eq!(s.remove(&c, &1).unwrap(), None);
            assert_eq!(s.get(&c, &2).unwrap(), Some(&21));
            clock.advance(60);
            s.refresh_time();
            assert_eq!(s.remove(&c, &2).unwrap(), None);
            assert_eq!(TaskMetrics::get(&metrics.state_ttl_expired), 2);
            assert!(TaskMetrics::get(&metrics.state_ttl_bytes_reclaimed) >= 2 * 24);
            // An expired key starts again.
            s.insert(&c, 1, 5).unwrap();
            assert_eq!(s.get(&c, &1).unwrap(), Some(&5));
        }
    }

    #[test]
    fn the_sweeper_removes_expired_entries_nobody_reads() {
        let c = I64Codec;
        for kind in [None, Some(BackendKind::HashMap)] {
            let (mut s, clock, metrics) = ttl_state(kind, DEFAULT_MEMORY_BUDGET);
            for k in 0..50_000 {
                s.insert(&c, k, k).unwrap();
            }
            let mut first = KeyedDelta::new();
            s.flush_into(&c, &mut first);
            clock.advance(50);
            s.refresh_time();
            for k in 0..10 {
                s.insert(&c, k, -k).unwrap();
            }
            clock.advance(60);
            // Calls examine a bounded slice of the table; repeated calls complete a pass.
            for _ in 0..16 {
                s.sweep_expired(&c).unwrap();
            }
            assert_eq!(s.hot_entries().count(), 10);
            assert_eq!(TaskMetrics::get(&metrics.state_ttl_expired), 49_990);
            if kind.is_some() {
                // The removals go into the next flush, so into the store and the next
                // (incremental) checkpoint.
                let mut next = KeyedDelta::new();
                s.flush_into(&c, &mut next);
                let e = stamped(&next);
                assert_eq!(e.len(), 50_000);
                assert_eq!(e.iter().filter(|(_, _, v)| v.is_none()).count(), 49_990);
                assert!(e.contains(&("s-ttl", 3, Some((1050, -3)))));
            }
        }
    }

    #[test]
    fn ttl_survives_a_restore_with_the_original_write_times() {
        let c = I64Codec;
        let (mut s, clock, _) = ttl_state(Some(BackendKind::HashMap), DEFAULT_MEMORY_BUDGET);
        s.insert(&c, 1, 10).unwrap();
        clock.advance(50);
        s.refresh_time();
        s.insert(&c, 2, 20).unwrap();
        let mut delta = KeyedDelta::new();
        s.flush_into(&c, &mut delta);
        assert_eq!(
            stamped(&delta),
            vec![
                ("s-ttl", 1, Some((1000, 10))),
                ("s-ttl", 2, Some((1050, 20)))
            ]
        );
        clock.advance(60);
        let (mut r, _, _) = ttl_state(Some(BackendKind::HashMap), DEFAULT_MEMORY_BUDGET);
        // The restored state's clock is the same instant as the original's.
        r.ttl.as_mut().unwrap().clock = Arc::new(clock.clone());
        r.refresh_time();
        for rec in delta.records() {
            r.restore_entry(&c, rec.state, rec.key, rec.value.unwrap())
                .unwrap();
        }
        assert_eq!(r.get(&c, &1).unwrap(), None, "expired before the restore");
        assert_eq!(r.get(&c, &2).unwrap(), Some(&20));
        let mut next = KeyedDelta::new();
        r.flush_into(&c, &mut next);
        assert_eq!(stamped(&next), vec![("s-ttl", 1, None)]);
    }

    #[test]
    fn enabling_and_disabling_the_ttl_keeps_the_state() {
        let c = I64Codec;
        // Without a TTL the state is stored under its plain name, without write times.
        let ctx = standalone_context(BackendKind::HashMap, DEFAULT_MEMORY_BUDGET);
        let metrics = Arc::new(TaskMetrics::new());
        let mut plain = KeyedState::with_ttl(NAMES, &ctx, 128, &metrics);
        plain.insert(&c, 1, 10).unwrap();
        let mut delta = KeyedDelta::new();
        plain.flush_into(&c, &mut delta);
        assert_eq!(entries(&delta), vec![(1, Some(10))]);
        assert_eq!(delta.records().next().unwrap().state, "s");

        // Enabled: the entry counts as written at the restore, moves to the TTL layout.
        let (mut s, clock, _) = ttl_state(Some(BackendKind::HashMap), DEFAULT_MEMORY_BUDGET);
        for rec in delta.records() {
            s.restore_entry(&c, rec.state, rec.key, rec.value.unwrap())
                .unwrap();
        }
        assert_eq!(s.get(&c, &1).unwrap(), Some(&10));
        let mut moved = KeyedDelta::new();
        s.flush_into(&c, &mut moved);
        assert_eq!(
            stamped(&moved)
                .into_iter()
                .filter(|r| r.0 == "s-ttl")
                .collect::<Vec<_>>(),
            vec![("s-ttl", 1, Some((1000, 10)))]
        );
        assert!(moved.records().any(|r| r.state == "s" && r.value.is_none()));
        clock.advance(100);
        s.refresh_time();
        assert_eq!(s.get(&c, &1).unwrap(), None);

        // Disabled again: the write time is dropped and the entry never expires.
        let mut again = KeyedState::with_ttl(NAMES, &ctx, 128, &metrics);
        for rec in moved.records().filter(|r| r.value.is_some()) {
            again
                .restore_entry(&c, rec.state, rec.key, rec.value.unwrap())
                .unwrap();
        }
        assert_eq!(again.get(&c, &1).unwrap(), Some(&10));
        let mut back = KeyedDelta::new();
        again.flush_into(&c, &mut back);
        let names: Vec<(&str, bool)> = back
            .records()
            .map(|r| (r.state, r.value.is_some()))
            .collect();
        assert_eq!(names, vec![("s-ttl", false), ("s", true)]);
        assert!(again.restore_entry(&c, "other", &[0; 8], &[0; 8]).is_err());
    }

    #[test]
    fn the_sweeper_reaches_entries_evicted_to_the_store() {
        let c = I64Codec;
        // sled with a budget of a few hundred entries: most keys live only in the store.
        let (mut s, clock, metrics) = ttl_state(Some(BackendKind::Sled), 64 * 1024);
        for k in 0..5_000 {
            s.insert(&c, k, k).unwrap();
        }
        assert!(s.hot_entries().count() < 5_000);
        clock.advance(100);
        s.refresh_time();
        s.insert(&c, 7, 70).unwrap();
        // A pass over the hot map, then the store's key groups, a slice per call.
        for _ in 0..200 {
            s.sweep_expired(&c).unwrap();
        }
        assert_eq!(TaskMetrics::get(&metrics.state_ttl_expired), 4_999);
        let mut delta = KeyedDelta::new();
        s.flush_into(&c, &mut delta);
        s.store.clone().unwrap().write_back(delta).unwrap();
        let mut stored = 0;
        s.store
            .clone()
            .unwrap()
            .scan(&mut |_, _, _, _| {
                stored += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(stored, 1, "only the key written after the others expired");
        assert_eq!(s.get(&c, &7).unwrap(), Some(&70));
        assert_eq!(s.get(&c, &8).unwrap(), None);
    }

    #[test]
    fn a_removal_stays_visible_while_its_flush_is_in_progress_over_the_bound() {
        let c = I64Codec;
        let ctx = standalone_context(BackendKind::Sled, 16 * 1024);
        let mut s: KeyedState<i64, i64> = KeyedState::new("s", &ctx, 128);
        for k in 0..2_000 {
            s.insert(&c, k, k).unwrap();
        }
        let mut first = KeyedDelta::new();
        s.flush_into(&c, &mut first);
        ctx.store.clone().unwrap().write_back(first).unwrap();
        assert_eq!(s.remove(&c, &1_999).unwrap(), Some(1_999));
        s.begin_flush(&c);
        assert!(s.continue_flush(&c, usize::MAX));
        // The removal is encoded but not yet in the store: the key must not come back.
        for k in 10_000..12_000 {
            s.insert(&c, k, k).unwrap();
        }
        assert_eq!(s.get(&c, &1_999).unwrap(), None);
    }

    /// The final state of a task on the sled backend (its flush laid over the store's snapshot,
    /// never written into sled) holds what a regular full snapshot after applying the flush does.
    #[test]
    fn a_final_state_laid_over_the_store_equals_the_flush_applied_then_snapshotted() {
        let c = I64Codec;
        let snapshot = |id: u64| -> Vec<(i64, i64)> {
            let ctx = standalone_context(BackendKind::Sled, 16 * 1024);
            let store = ctx.store.clone().unwrap();
            let mut s: KeyedState<i64, i64> = KeyedState::new("s", &ctx, 128);
            // Most keys spill to the store; then updates, removals and new keys stay in the
            // flush.
            for k in 0..3_000 {
                s.insert(&c, k, k).unwrap();
            }
            for k in (0..3_000).step_by(3) {
                s.insert(&c, k, -k).unwrap();
            }
            for k in (1..3_000).step_by(5) {
                s.remove(&c, &k).unwrap();
            }
            for k in 5_000..5_100 {
                s.insert(&c, k, k).unwrap();
            }
            let mut delta = KeyedDelta::new();
            s.flush_into(&c, &mut delta);
            let snap = snapshot_delta_now(&store, id, delta).unwrap();
            snap.records
                .iter()
                .map(|r| {
                    (
                        c.decode_key(&r.key).unwrap(),
                        c.decode_value(r.value.as_deref().unwrap()).unwrap(),
                    )
                })
                .collect()
        };
        let final_state = snapshot(crate::runtime::checkpointing::FINAL_CHECKPOINT);
        let applied = snapshot(7);
        assert_eq!(final_state, applied);
        assert!(final_state.contains(&(3, -3)) && !final_state.iter().any(|(k, _)| *k == 1));
        assert_eq!(final_state.len(), 3_000 - 600 + 100);
    }

    #[test]
    fn appended_deltas_keep_their_entries_in_order_under_their_own_state_names() {
        let put = |d: &mut KeyedDelta, state: &'static str, key: &[u8], value: Option<&[u8]>| {
            d.push_with(
                7,
                state,
                |out| out.extend_from_slice(key),
                value.map(|v| move |out: &mut Vec<u8>| out.extend_from_slice(v)),
            );
        };
        let mut a = KeyedDelta::new();
        put(&mut a, "x", b"k1", Some(b"v1"));
        let mut b = KeyedDelta::new();
        put(&mut b, "y", b"k2", None);
        put(&mut b, "x", b"k3", Some(b"v3"));
        type Entry = (&'static str, Vec<u8>, Option<Vec<u8>>);
        let expected = |d: &KeyedDelta| -> Vec<Entry> {
            d.records()
                .map(|r| (r.state, r.key.to_vec(), r.value.map(<[u8]>::to_vec)))
                .collect()
        };
        let b_records = expected(&b);
        let mut empty = KeyedDelta::new();
        empty.append(b.clone());
        assert_eq!(
            expected(&empty),
            b_records,
            "an empty delta takes the other over"
        );
        a.append(b);
        assert_eq!(
            expected(&a),
            [
                ("x", b"k1".to_vec(), Some(b"v1".to_vec())),
                ("y", b"k2".to_vec(), None),
                ("x", b"k3".to_vec(), Some(b"v3".to_vec())),
            ]
        );
        assert_eq!(a.data_size(), 4 + 2 + 4);
    }

    /// A snapshot still queued (a savepoint submitted right before a checkpoint) counts as state
    /// the store holds: the checkpoint after it must snapshot the store although its own flush is
    /// empty, or it would record no keyed state at all.
    #[test]
    fn a_store_with_a_queued_snapshot_holds_state() {
        let c = I64Codec;
        let ctx = standalone_context(BackendKind::HashMap, 16 * 1024);
        let store = ctx.store.clone().unwrap();
        assert!(!store.holds_state());
        let mut s: KeyedState<i64, i64> = KeyedState::new("s", &ctx, 128);
        s.insert(&c, 1, 1).unwrap();
        let mut delta = KeyedDelta::new();
        s.flush_into(&c, &mut delta);
        // Every rayon thread waits, so the submitted snapshot stays queued.
        let threads = rayon::current_num_threads();
        let (release, wait) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started) = crossbeam_channel::unbounded();
        for _ in 0..threads {
            let (wait, started_tx) = (wait.clone(), started_tx.clone());
            rayon::spawn(move || {
                let _ = started_tx.send(());
                let _ = wait.recv();
            });
        }
        for _ in 0..threads {
            started.recv().unwrap();
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        store.submit_snapshot(
            7,
            delta,
            true,
            streamsql_storage::Compression::None,
            Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            }),
        );
        assert!(store.holds_state());
        drop(release);
        assert!(rx.recv().unwrap());
        assert!(store.holds_state());
    }

    #[test]
    fn a_state_dropped_for_a_process_exit_leaves_its_entries_unfreed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPPED: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPPED.fetch_add(1, Ordering::SeqCst);
            }
        }
        struct CountedCodec;
        impl StateCodec<i64, Counted> for CountedCodec {
            fn key_hash(&self, key: &i64) -> i32 {
                *key as i32
            }
            fn encode_key(&self, key: &i64, out: &mut Vec<u8>) {
                out.extend_from_slice(&key.to_be_bytes());
            }
            fn decode_key(&self, bytes: &[u8]) -> Result<i64> {
                I64Codec.decode_key(bytes)
            }
            fn encode_value(&self, _value: &Counted, _out: &mut Vec<u8>) {}
            fn decode_value(&self, _bytes: &[u8]) -> Result<Counted> {
                Ok(Counted)
            }
        }
        let ctx = standalone_context(BackendKind::HashMap, DEFAULT_MEMORY_BUDGET);
        let fill = || {
            let mut s: KeyedState<i64, Counted> = KeyedState::new("s", &ctx, 128);
            for k in 0..10 {
                s.insert(&CountedCodec, k, Counted).unwrap();
            }
            s
        };
        let kept = fill();
        drop_keeping_state_memory(|| drop(kept));
        assert_eq!(DROPPED.load(Ordering::SeqCst), 0);
        drop(fill());
        assert_eq!(DROPPED.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn the_sled_tuning_divides_the_budget_and_sets_what_a_spill_frees() {
        let t = SledTuning {
            write_buffer_ratio: 0.5,
            ..SledTuning::default()
        };
        assert_eq!((t.hot_bytes(1000), t.store_bytes(1000)), (500, 500));
        let d = SledTuning::default();
        assert_eq!((d.hot_bytes(1000), d.store_bytes(1000)), (750, 250));
        let c = I64Codec;
        // Entries left in memory after the first spill of a state bounded to a few hundred.
        let hot_after_spill = |evict_ratio: f64| {
            let mut ctx = standalone_context(BackendKind::Sled, 64 * 1024);
            ctx.config.sled.evict_ratio = evict_ratio;
            let mut s: KeyedState<i64, i64> = KeyedState::new("s", &ctx, 128);
            let mut k = 0;
            while !s.may_miss {
                s.insert(&c, k, k).unwrap();
                k += 1;
            }
            (s.hot_entries().count(), s.max_entries)
        };
        let (few, bound) = hot_after_spill(0.9);
        let (many, _) = hot_after_spill(0.1);
        assert!(few <= bound / 10 + 1, "{few} of {bound}");
        assert!(many >= bound * 8 / 10, "{many} of {bound}");
    }
}
