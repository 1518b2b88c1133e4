//! The sled-backed keyed-state backend (`state.backend.type = sled`, the default).
//!
//! A sled insert costs several microseconds, more than the whole per-record budget, so records
//! never touch sled directly: hot state lives in an in-memory cache per subtask, and sled is the
//! overflow. Writes mark cache slots dirty; dirty slots are written back to sled in one `Batch`
//! when the cache exceeds its memory bound (then clean slots are evicted down to half the bound,
//! so the next write-back is many records away) and at every snapshot. Reads that miss the cache
//! fall through to sled and are cached, misses included.
//!
//! Invariants:
//! - sled plus the dirty slots of the cache is the state; a clean slot equals sled; only clean
//!   slots are evicted; `put` and `delete` write sled only when the cache is over its bound.
//! - A key changed since the last snapshot sits in the `changed` list exactly once, so a snapshot
//!   visits O(keys changed) entries; it is either a cache slot with `changed` set or, if that slot
//!   was evicted (after its write-back), in `evicted_changed`, which only tells a reload to set the
//!   flag again instead of listing the key twice. Every cached key of the list has `changed` set.
//! - The sled tree is a working store, not a durable artifact: it is cleared on open and on
//!   restore, and durability comes only from snapshots. sled's types stay in this module.

use std::collections::{HashMap, HashSet};
use std::ops::{Bound, ControlFlow};
use std::path::Path;

use super::{
    composite_key, replay_restore, split_composite, KeyGroup, KeyGroupRange, KeyedStateBackend,
    Lineage, StateEntry, StateId, StateRegistry, StateStats,
};
use crate::file::StorageError;
use crate::snapshot::{Snapshot, SnapshotKind, SnapshotRecord};

/// Per-slot memory overhead counted against the bound: two vector headers, flags and the hash
/// table's share, roughly.
const SLOT_OVERHEAD: usize = 64;
/// Records per sled batch during restore, so a large restore does not build one giant batch.
const RESTORE_BATCH: usize = 16 * 1024;

#[derive(Debug)]
struct Slot {
    /// `None`: absent (deleted, or known missing from sled).
    value: Option<Vec<u8>>,
    /// Newer than sled: must be written back before eviction.
    dirty: bool,
    /// Written or deleted since the last snapshot.
    changed: bool,
}

fn slot_size(composite: &[u8], slot: &Slot) -> usize {
    composite.len() + slot.value.as_ref().map_or(0, Vec::len) + SLOT_OVERHEAD
}

fn store_err(e: sled::Error) -> StorageError {
    StorageError::Store {
        message: e.to_string(),
    }
}

/// How a sled store is tuned (`state.backend.sled.*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SledOptions {
    /// The fraction of the memory bound freed at each write-back: clean slots are evicted until
    /// the cache holds `1 - evict_ratio` of its bound. Larger: fewer, larger write-backs and more
    /// misses after each; smaller: more frequent, smaller write-backs.
    pub evict_ratio: f64,
    /// sled's `Mode::LowSpace` (compacts its files more eagerly, for less disk) instead of
    /// `Mode::HighThroughput`.
    pub low_space: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            evict_ratio: 0.5,
            low_space: false,
        }
    }
}

/// How long opening a store waits for the previous user of its directory to let go of sled's
/// file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens `config`'s database. A store of the same directory that was just dropped (the previous
/// attempt of a restarted job, which reuses its working directory) may still hold sled's file lock
/// for a moment while sled's background threads finish; opening waits for it instead of failing.
fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock as an `Other` I/O error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(store_err(e)),
        }
    }
}

/// Keyed state in sled with a bounded in-memory write-back cache.
pub struct SledBackend {
    // Kept so the tree's database lives as long as the backend.
    _db: sled::Db,
    tree: sled::Tree,
    cache: HashMap<Vec<u8>, Slot>,
    changed: Vec<Vec<u8>>,
    evicted_changed: HashSet<Vec<u8>>,
    registry: StateRegistry,
    lineage: Lineage,
    key_groups: KeyGroupRange,
    scratch: Vec<u8>,
    memory_bytes: usize,
    memory_bound: usize,
    options: SledOptions,
    stats: StateStats,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend")
            .field("cached", &self.cache.len())
            .field("memory_bytes", &self.memory_bytes)
            .field("memory_bound", &self.memory_bound)
            .field("key_groups", &self.key_groups)
            .finish_non_exhaustive()
    }
}

impl SledBackend {
    /// Opens (creating, and clearing any stale content) a working store in directory `path`, with
    /// a cache of at most about `memory_bound` bytes, owning `key_groups`.
    pub fn open(
        path: &Path,
        memory_bound: usize,
        key_groups: KeyGroupRange,
    ) -> Result<Self, StorageError> {
        Self::open_with(path, memory_bound, key_groups, SledOptions::default())
    }

    /// [`SledBackend::open`] with `options`.
    pub fn open_with(
        path: &Path,
        memory_bound: usize,
        key_groups: KeyGroupRange,
        options: SledOptions,
    ) -> Result<Self, StorageError> {
        let config = sled::Config::new().path(path);
        Self::with_config(config, memory_bound, key_groups, options)
    }

    /// A store in a temporary directory removed when the backend is dropped.
    pub fn temporary(memory_bound: usize, key_groups: KeyGroupRange) -> Result<Self, StorageError> {
        Self::temporary_with(memory_bound, key_groups, SledOptions::default())
    }

    /// [`SledBackend::temporary`] with `options`.
    pub fn temporary_with(
        memory_bound: usize,
        key_groups: KeyGroupRange,
        options: SledOptions,
    ) -> Result<Self, StorageError> {
        Self::with_config(
            sled::Config::new().temporary(true),
            memory_bound,
            key_groups,
            options,
        )
    }

    fn with_config(
        config: sled::Config,
        memory_bound: usize,
        key_groups: KeyGroupRange,
        options: SledOptions,
    ) -> Result<Self, StorageError> {
        let mode = if options.low_space {
            sled::Mode::LowSpace
        } else {
            sled::Mode::HighThroughput
        };
        // No periodic fsync: sled's own durability is not relied on (snapshots are).
        let config = config
            .mode(mode)
            .flush_every_ms(None)
            // sled's own page cache (1 GB by default) counts against the same bound as ours; sled
            // refuses (panics on) a tiny one.
            .cache_capacity(u64::try_from(memory_bound.max(1 << 20)).unwrap_or(u64::MAX));
        let db = open_waiting_for_lock(&config)?;
        let tree = db.open_tree("keyed-state").map_err(store_err)?;
        tree.clear().map_err(store_err)?;
        Ok(SledBackend {
            _db: db,
            tree,
            cache: HashMap::new(),
            changed: Vec::new(),
            evicted_changed: HashSet::new(),
            registry: StateRegistry::default(),
            lineage: Lineage::Empty,
            key_groups,
            scratch: Vec::new(),
            memory_bytes: 0,
            memory_bound,
            options,
            stats: StateStats::default(),
        })
    }

    /// The memory bound of the cache, in bytes.
    pub fn memory_bound(&self) -> usize {
        self.memory_bound
    }

    fn check(&self, key_group: KeyGroup, state: StateId) -> Result<(), StorageError> {
        self.registry.check(state)?;
        if !self.key_groups.contains(key_group) {
            return Err(StorageError::InvalidStateAccess {
                reason: format!(
                    "key group {key_group} is outside the owned range {}..={}",
                    self.key_groups.start, self.key_groups.end
                ),
            });
        }
        Ok(())
    }

    /// Whether the key in `scratch` was changed and then evicted (and forgets it: the caller is
    /// about to cache it with `changed` set).
    fn take_evicted_changed(&mut self) -> bool {
        !self.evicted_changed.is_empty() && self.evicted_changed.remove(self.scratch.as_slice())
    }

    fn write(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        composite_key(&mut self.scratch, key_group, state, key);
        if let Some(slot) = self.cache.get_mut(self.scratch.as_slice()) {
            let old = slot.value.as_ref().map_or(0, Vec::len);
            match (&mut slot.value, value) {
                // Reuse the buffer: an update of a cached key does not allocate.
                (Some(buf), Some(v)) => {
                    buf.clear();
                    buf.extend_from_slice(v);
                }
                (slot_value, v) => *slot_value = v.map(<[u8]>::to_vec),
            }
            self.memory_bytes = self.memory_bytes - old + value.map_or(0, <[u8]>::len);
            slot.dirty = true;
            if !slot.changed {
                slot.changed = true;
                self.changed.push(self.scratch.clone());
            }
        } else {
            let was_changed = self.take_evicted_changed();
            let composite = self.scratch.clone();
            if !was_changed {
                self.changed.push(composite.clone());
            }
            let slot = Slot {
                value: value.map(<[u8]>::to_vec),
                dirty: true,
                changed: true,
            };
            self.memory_bytes += slot_size(&composite, &slot);
            self.cache.insert(composite, slot);
        }
        if self.memory_bytes > self.memory_bound {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes every dirty slot back to sled in one batch.
    fn write_back_all(&mut self) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for (k, slot) in self.cache.iter_mut().filter(|(_, s)| s.dirty) {
            match &slot.value {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
            slot.dirty = false;
            n += 1;
        }
        self.apply(batch, n)
    }

    fn apply(&mut self, batch: sled::Batch, keys: u64) -> Result<(), StorageError> {
        if keys == 0 {
            return Ok(());
        }
        self.tree.apply_batch(batch).map_err(store_err)?;
        self.stats.store_write_batches += 1;
        self.stats.store_keys_written += keys;
        Ok(())
    }

    /// Over the bound: write back, then evict clean slots until `evict_ratio` of the bound is free.
    fn spill(&mut self) -> Result<(), StorageError> {
        self.write_back_all()?;
        let keep = (1.0 - self.options.evict_ratio).clamp(0.0, 1.0);
        // A fraction of a byte count: the rounding is irrelevant.
        let target = (self.memory_bound as f64 * keep) as usize;
        let mut memory = self.memory_bytes;
        let evicted_changed = &mut self.evicted_changed;
        self.cache.retain(|k, slot| {
            if memory <= target {
                return true;
            }
            memory -= slot_size(k, slot);
            if slot.changed {
                evicted_changed.insert(k.clone());
            }
            false
        });
        self.memory_bytes = memory;
        Ok(())
    }

    /// Caches the sled value of the key in `scratch` (a miss is cached as absent).
    fn load(&mut self) -> Result<(), StorageError> {
        self.stats.store_reads += 1;
        let value = self
            .tree
            .get(self.scratch.as_slice())
            .map_err(store_err)?
            .map(|v| v.to_vec());
        let slot = Slot {
            value,
            dirty: false,
            changed: self.take_evicted_changed(),
        };
        let size = slot_size(&self.scratch, &slot);
        if self.memory_bytes + size > self.memory_bound {
            self.spill()?;
        }
        self.memory_bytes += size;
        self.cache.insert(self.scratch.clone(), slot);
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StorageError> {
        self.cache.clear();
        self.changed.clear();
        self.evicted_changed.clear();
        self.memory_bytes = 0;
        self.tree.clear().map_err(store_err)
    }

    fn emit(
        records: &mut Vec<SnapshotRecord>,
        kind: SnapshotKind,
        composite: &[u8],
        value: Option<Vec<u8>>,
    ) {
        if value.is_none() && kind == SnapshotKind::Full {
            return;
        }
        let (key_group, state, key) = split_composite(composite);
        records.push(SnapshotRecord {
            key_group,
            state,
            key: key.to_vec(),
            value,
        });
    }
}

impl KeyedStateBackend for SledBackend {
    fn register_state(&mut self, name: &str) -> StateId {
        self.registry.register(name)
    }

    fn registry(&self) -> &StateRegistry {
        &self.registry
    }

    fn get(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
    ) -> Result<Option<&[u8]>, StorageError> {
        self.check(key_group, state)?;
        composite_key(&mut self.scratch, key_group, state, key);
        if !self.cache.contains_key(self.scratch.as_slice()) {
            self.load()?;
        }
        Ok(self
            .cache
            .get(self.scratch.as_slice())
            .and_then(|s| s.value.as_deref()))
    }

    fn put(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        self.check(key_group, state)?;
        self.write(key_group, state, key, Some(value))
    }

    fn delete(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
    ) -> Result<(), StorageError> {
        self.check(key_group, state)?;
        self.write(key_group, state, key, None)
    }

    fn scan(
        &mut self,
        range: KeyGroupRange,
        visit: &mut dyn FnMut(StateEntry<'_>) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        if range.is_empty() {
            return Ok(());
        }
        // sled becomes the whole state, and is already ordered by composite key.
        self.write_back_all()?;
        let lo = Bound::Included(range.start.to_be_bytes().to_vec());
        let hi = match range.end.checked_add(1) {
            Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        for item in self.tree.range::<Vec<u8>, _>((lo, hi)) {
            let (k, v) = item.map_err(store_err)?;
            let (key_group, state, key) = split_composite(&k);
            let entry = StateEntry {
                key_group,
                state,
                key,
                value: &v,
            };
            if visit(entry).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64) -> Result<Snapshot, StorageError> {
        let (kind, base) = match self.lineage {
            Lineage::NeedsFull => return self.full_snapshot(checkpoint_id),
            Lineage::Empty => (SnapshotKind::Full, None),
            Lineage::After(b) => (SnapshotKind::Delta, Some(b)),
        };
        let changed = std::mem::take(&mut self.changed);
        let mut records = Vec::with_capacity(changed.len());
        let mut batch = sled::Batch::default();
        let mut dirty = 0u64;
        for composite in &changed {
            self.stats.snapshot_sync_visits += 1;
            let Some(slot) = self.cache.get_mut(composite.as_slice()) else {
                // Changed, written back and evicted since: sled has its value.
                self.stats.store_reads += 1;
                let value = self
                    .tree
                    .get(composite.as_slice())
                    .map_err(store_err)?
                    .map(|v| v.to_vec());
                Self::emit(&mut records, kind, composite, value);
                continue;
            };
            debug_assert!(
                slot.changed,
                "invariant: a cached key in the list is changed"
            );
            slot.changed = false;
            if slot.dirty {
                match &slot.value {
                    Some(v) => batch.insert(composite.as_slice(), v.as_slice()),
                    None => batch.remove(composite.as_slice()),
                }
                slot.dirty = false;
                dirty += 1;
            }
            Self::emit(&mut records, kind, composite, slot.value.clone());
        }
        self.evicted_changed.clear();
        self.apply(batch, dirty)?;
        self.changed = changed;
        self.changed.clear();
        self.lineage = Lineage::After(checkpoint_id);
        Ok(Snapshot {
            checkpoint_id,
            kind,
            base,
            key_groups: self.key_groups,
            states: self.registry.entries(),
            records,
        })
    }

    fn discard_changes(&mut self) {
        for composite in std::mem::take(&mut self.changed) {
            if let Some(slot) = self.cache.get_mut(composite.as_slice()) {
                slot.changed = false;
            }
        }
        self.evicted_changed.clear();
        self.lineage = Lineage::NeedsFull;
    }

    fn full_snapshot(&mut self, checkpoint_id: u64) -> Result<Snapshot, StorageError> {
        // The cache's dirty slots are newer than the tree: merged with it in key order rather
        // than written back first, so that a full snapshot writes nothing to sled.
        let mut dirty: Vec<(&[u8], Option<&[u8]>)> = self
            .cache
            .iter()
            .filter(|(_, slot)| slot.dirty)
            .map(|(k, slot)| (k.as_slice(), slot.value.as_deref()))
            .collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut dirty = dirty.into_iter().peekable();
        let mut records = Vec::new();
        let full = SnapshotKind::Full;
        for item in self.tree.iter() {
            let (k, v) = item.map_err(store_err)?;
            self.stats.snapshot_sync_visits += 1;
            while let Some((ck, cv)) = dirty.next_if(|(ck, _)| *ck < &k[..]) {
                Self::emit(&mut records, full, ck, cv.map(<[u8]>::to_vec));
            }
            match dirty.next_if(|(ck, _)| *ck == &k[..]) {
                Some((ck, cv)) => Self::emit(&mut records, full, ck, cv.map(<[u8]>::to_vec)),
                None => Self::emit(&mut records, full, &k, Some(v.to_vec())),
            }
        }
        for (ck, cv) in dirty {
            Self::emit(&mut records, full, ck, cv.map(<[u8]>::to_vec));
        }
        for slot in self.cache.values_mut() {
            slot.changed = false;
        }
        self.changed.clear();
        self.evicted_changed.clear();
        self.lineage = Lineage::After(checkpoint_id);
        Ok(Snapshot {
            checkpoint_id,
            kind: SnapshotKind::Full,
            base: None,
            key_groups: self.key_groups,
            states: self.registry.entries(),
            records,
        })
    }

    fn restore(
        &mut self,
        snapshots: &[Snapshot],
        range: KeyGroupRange,
    ) -> Result<(), StorageError> {
        // Validate before touching state, so a refused restore changes nothing.
        super::plan_restore(snapshots)?;
        self.clear()?;
        let mut registry = std::mem::take(&mut self.registry);
        let tree = &self.tree;
        let stats = &mut self.stats;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        let mut composite = Vec::new();
        let result = replay_restore(snapshots, range, &mut registry, &mut |r, state| {
            composite_key(&mut composite, r.key_group, state, &r.key);
            match &r.value {
                Some(v) => batch.insert(composite.as_slice(), v.as_slice()),
                None => batch.remove(composite.as_slice()),
            }
            pending += 1;
            if pending == RESTORE_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))
                    .map_err(store_err)?;
                stats.store_write_batches += 1;
                stats.store_keys_written += u64::try_from(pending).unwrap_or(u64::MAX);
                pending = 0;
            }
            Ok(())
        });
        self.registry = registry;
        self.key_groups = range;
        let result = result.and_then(|lineage| {
            self.apply(batch, u64::try_from(pending).unwrap_or(u64::MAX))?;
            Ok(lineage)
        });
        match result {
            Ok(lineage) => {
                self.lineage = lineage;
                Ok(())
            }
            Err(e) => {
                // Leave an empty, consistent store rather than half a restore.
                let _ = self.clear();
                self.lineage = Lineage::Empty;
                Err(e)
            }
        }
    }

    fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    fn stats(&self) -> StateStats {
        StateStats {
            memory_bytes: self.memory_bytes,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(b: &mut SledBackend, g: u16, s: u32, k: &[u8]) -> Option<Vec<u8>> {
        b.get(g, s, k).unwrap().map(<[u8]>::to_vec)
    }

    #[test]
    fn puts_under_the_bound_never_write_sled() {
        let mut b = SledBackend::temporary(1 << 20, KeyGroupRange::ALL).unwrap();
        let s = b.register_state("v");
        for i in 0..1000u32 {
            b.put(7, s, &i.to_be_bytes(), b"value").unwrap();
            b.put(7, s, &i.to_be_bytes(), b"value2").unwrap();
        }
        assert_eq!(b.stats().store_write_batches, 0);
        assert_eq!(b.stats().store_reads, 0);
        // The snapshot writes the dirty entries back in one batch.
        let snap = b.snapshot(1).unwrap();
        assert_eq!(snap.records.len(), 1000);
        assert_eq!(b.stats().store_write_batches, 1);
        assert_eq!(b.stats().store_keys_written, 1000);
    }

    #[test]
    fn a_full_snapshot_merges_the_cache_over_sled_without_writing_to_it() {
        // 300 puts through a small cache: most end up in sled; then updates and deletes that
        // stay in the cache, over keys in sled and over keys still cached.
        let mut b = SledBackend::temporary(2000, KeyGroupRange::ALL).unwrap();
        let s = b.register_state("v");
        let mut expected = std::collections::BTreeMap::new();
        for i in 0..300u32 {
            b.put(3, s, &i.to_be_bytes(), &[1; 8]).unwrap();
            expected.insert(i, vec![1u8; 8]);
        }
        for i in (0..300u32).step_by(7) {
            b.put(3, s, &i.to_be_bytes(), &[2; 4]).unwrap();
            expected.insert(i, vec![2u8; 4]);
        }
        for i in (1..300u32).step_by(11) {
            b.delete(3, s, &i.to_be_bytes()).unwrap();
            expected.remove(&i);
        }
        b.put(3, s, &1000u32.to_be_bytes(), &[3]).unwrap();
        expected.insert(1000, vec![3]);
        let written = b.stats().store_keys_written;
        let snap = b.full_snapshot(1).unwrap();
        assert_eq!(b.stats().store_keys_written, written);
        let got: Vec<(u32, Vec<u8>)> = snap
            .records
            .iter()
            .map(|r| {
                (
                    u32::from_be_bytes(r.key.as_slice().try_into().unwrap()),
                    r.value.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn tiny_bound_spills_evicts_and_reads_back() {
        let bound = 1000;
        let mut b = SledBackend::temporary(bound, KeyGroupRange::ALL).unwrap();
        let s = b.register_state("v");
        let mut batches = 0;
        for i in 0..500u32 {
            let before = b.stats().memory_bytes;
            b.put(u16::try_from(i % 4).unwrap(), s, &i.to_be_bytes(), &[1; 20])
                .unwrap();
            let st = b.stats();
            if st.store_write_batches > batches {
                // A write-back happens only once a put took the cache over its bound.
                assert!(before + 4 + 6 + 20 + SLOT_OVERHEAD > bound);
                batches = st.store_write_batches;
            }
            assert!(st.memory_bytes <= bound);
        }
        assert!(batches > 10);
        for i in 0..500u32 {
            assert_eq!(
                get(&mut b, u16::try_from(i % 4).unwrap(), s, &i.to_be_bytes()),
                Some(vec![1; 20])
            );
        }
        assert!(b.stats().store_reads > 0);
        let full = b.snapshot(1).unwrap();
        assert_eq!(full.kind, SnapshotKind::Full);
        assert_eq!(full.records.len(), 500);
    }

    #[test]
    fn the_evict_ratio_sets_how_much_a_write_back_frees() {
        // Write-backs over 2000 puts of 60-byte slots into a 6000-byte cache: freeing 90% of the
        // cache at each takes fewer write-backs than freeing 10%.
        let batches = |evict_ratio: f64, low_space: bool| {
            let options = SledOptions {
                evict_ratio,
                low_space,
            };
            let mut b = SledBackend::temporary_with(6000, KeyGroupRange::ALL, options).unwrap();
            let s = b.register_state("v");
            for i in 0..2000u32 {
                b.put(1, s, &i.to_be_bytes(), &[7; 10]).unwrap();
            }
            for i in 0..2000u32 {
                assert_eq!(get(&mut b, 1, s, &i.to_be_bytes()), Some(vec![7; 10]));
            }
            b.stats().store_write_batches
        };
        let (large, small) = (batches(0.9, false), batches(0.1, true));
        assert!(large * 3 < small, "{large} vs {small} write-backs");
    }

    #[test]
    fn deltas_survive_eviction() {
        let mut b = SledBackend::temporary(400, KeyGroupRange::ALL).unwrap();
        let s = b.register_state("v");
        b.put(0, s, b"keep", b"1").unwrap();
        b.put(0, s, b"gone", b"1").unwrap();
        let full = b.snapshot(1).unwrap();
        b.put(0, s, b"keep", b"2").unwrap();
        b.delete(0, s, b"gone").unwrap();
        // Push both changed keys out of the cache.
        for i in 0..50u32 {
            b.put(1, s, &i.to_be_bytes(), b"filler").unwrap();
        }
        let delta = b.snapshot(2).unwrap();
        assert_eq!(delta.records.len(), 52);
        let mut r = SledBackend::temporary(400, KeyGroupRange::ALL).unwrap();
        r.restore(&[full, delta], KeyGroupRange::new(0, 0)).unwrap();
        assert_eq!(get(&mut r, 0, s, b"keep"), Some(b"2".to_vec()));
        assert_eq!(get(&mut r, 0, s, b"gone"), None);
        let mut n = 0;
        r.scan(KeyGroupRange::ALL, &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn opening_waits_for_the_previous_holder_of_the_lock() {
        let dir = std::env::temp_dir().join(format!("streamsql-sled-lock-{}", std::process::id()));
        let first = SledBackend::open(&dir, 100, KeyGroupRange::ALL).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        // Opened once the first store let go, not refused.
        let second = SledBackend::open(&dir, 100, KeyGroupRange::ALL);
        holder.join().unwrap();
        assert!(second.is_ok(), "{:?}", second.err());
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn open_on_disk_clears_stale_content() {
        let dir = std::env::temp_dir().join(format!("streamsql-sled-{}", std::process::id()));
        {
            let mut b = SledBackend::open(&dir, 100, KeyGroupRange::ALL).unwrap();
            let s = b.register_state("v");
            for i in 0..20u32 {
                b.put(0, s, &i.to_be_bytes(), b"x").unwrap();
            }
        }
        let mut b = SledBackend::open(&dir, 100, KeyGroupRange::ALL).unwrap();
        let s = b.register_state("v");
        assert_eq!(get(&mut b, 0, s, &0u32.to_be_bytes()), None);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
