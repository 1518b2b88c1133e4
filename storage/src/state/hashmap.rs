//! The all-in-memory keyed-state backend (Flink's `HashMapStateBackend`, `state.backend.type =
//! hashmap`).
//!
//! Invariants: one hash map from composite key (key group, state, key) to a slot; a slot whose
//! `changed` flag is set has its composite key in `changed` exactly once, so a snapshot visits
//! only changed keys; a deleted key stays as a tombstone slot until the snapshot that carries the
//! deletion, then disappears.

use std::collections::HashMap;
use std::ops::ControlFlow;

use fxhash::FxBuildHasher;

use super::{
    composite_key, replay_restore, split_composite, KeyGroup, KeyGroupRange, KeyedStateBackend,
    Lineage, StateEntry, StateId, StateRegistry, StateStats,
};
use crate::file::StorageError;
use crate::snapshot::{
    encode_records, key_order, sort_prefix, Compression, EncodedSnapshot, RecordRef, Snapshot,
    SnapshotHeader, SnapshotKind, SnapshotRecord,
};

/// Per-slot memory overhead counted in [`StateStats::memory_bytes`]: two vector headers, the flag
/// and the hash table's share, roughly.
const SLOT_OVERHEAD: usize = 64;

#[derive(Debug)]
struct Slot {
    /// `None`: deleted since the last snapshot (a tombstone kept for the delta).
    value: Option<Vec<u8>>,
    /// Written or deleted since the last snapshot.
    changed: bool,
}

/// Keyed state held entirely in memory.
#[derive(Debug)]
pub struct HashMapBackend {
    /// Keys are composite byte strings written by this process, so a fast non-keyed hash serves.
    map: HashMap<Vec<u8>, Slot, FxBuildHasher>,
    changed: Vec<Vec<u8>>,
    /// Whether writes are recorded in `changed` (see `set_change_tracking`).
    tracking: bool,
    registry: StateRegistry,
    lineage: Lineage,
    key_groups: KeyGroupRange,
    /// Reused for composite lookups so the per-record path does not allocate.
    scratch: Vec<u8>,
    memory_bytes: usize,
    stats: StateStats,
}

impl Default for HashMapBackend {
    fn default() -> Self {
        Self::new(KeyGroupRange::ALL)
    }
}

impl HashMapBackend {
    /// An empty backend owning `key_groups`.
    pub fn new(key_groups: KeyGroupRange) -> Self {
        HashMapBackend {
            map: HashMap::default(),
            changed: Vec::new(),
            tracking: true,
            registry: StateRegistry::default(),
            lineage: Lineage::Empty,
            key_groups,
            scratch: Vec::new(),
            memory_bytes: 0,
            stats: StateStats::default(),
        }
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

    /// Sets a slot's value (`None` deletes), marking it changed.
    fn write(&mut self, key_group: KeyGroup, state: StateId, key: &[u8], value: Option<&[u8]>) {
        composite_key(&mut self.scratch, key_group, state, key);
        if !self.tracking {
            self.write_untracked(value);
            return;
        }
        if let Some(slot) = self.map.get_mut(self.scratch.as_slice()) {
            let old = slot.value.as_ref().map_or(0, Vec::len);
            match (&mut slot.value, value) {
                // Reuse the value's buffer: updates of an existing key do not allocate.
                (Some(buf), Some(v)) => {
                    buf.clear();
                    buf.extend_from_slice(v);
                }
                (slot_value, v) => *slot_value = v.map(<[u8]>::to_vec),
            }
            let new = value.map_or(0, <[u8]>::len);
            self.memory_bytes = self.memory_bytes - old + new;
            if !slot.changed {
                slot.changed = true;
                self.changed.push(self.scratch.clone());
            }
            return;
        }
        if value.is_none() && self.lineage == Lineage::Empty {
            // Deleting an absent key of a state never snapshotted: nothing to carry.
            return;
        }
        let composite = self.scratch.clone();
        self.memory_bytes += composite.len() + value.map_or(0, <[u8]>::len) + SLOT_OVERHEAD;
        self.changed.push(composite.clone());
        self.map.insert(
            composite,
            Slot {
                value: value.map(<[u8]>::to_vec),
                changed: true,
            },
        );
    }

    /// `write` without change tracking: no tombstones, nothing recorded.
    fn write_untracked(&mut self, value: Option<&[u8]>) {
        let Some(v) = value else {
            let composite = std::mem::take(&mut self.scratch);
            self.remove_slot(&composite);
            self.scratch = composite;
            return;
        };
        if let Some(slot) = self.map.get_mut(self.scratch.as_slice()) {
            let old = slot.value.as_ref().map_or(0, Vec::len);
            match &mut slot.value {
                Some(buf) => {
                    buf.clear();
                    buf.extend_from_slice(v);
                }
                none => *none = Some(v.to_vec()),
            }
            self.memory_bytes = self.memory_bytes - old + v.len();
            return;
        }
        self.memory_bytes += self.scratch.len() + v.len() + SLOT_OVERHEAD;
        self.map.insert(
            self.scratch.clone(),
            Slot {
                value: Some(v.to_vec()),
                changed: false,
            },
        );
    }

    fn remove_slot(&mut self, composite: &[u8]) {
        if let Some(slot) = self.map.remove(composite) {
            self.memory_bytes -=
                composite.len() + slot.value.as_ref().map_or(0, Vec::len) + SLOT_OVERHEAD;
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.changed.clear();
        self.memory_bytes = 0;
    }
}

impl KeyedStateBackend for HashMapBackend {
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
        Ok(self
            .map
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
        self.write(key_group, state, key, Some(value));
        Ok(())
    }

    fn delete(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
    ) -> Result<(), StorageError> {
        self.check(key_group, state)?;
        self.write(key_group, state, key, None);
        Ok(())
    }

    fn scan(
        &mut self,
        range: KeyGroupRange,
        visit: &mut dyn FnMut(StateEntry<'_>) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let mut hits: Vec<(u128, &[u8], &[u8])> = self
            .map
            .iter()
            .filter_map(|(k, s)| {
                let (group, _, _) = split_composite(k);
                match &s.value {
                    Some(v) if range.contains(group) => {
                        Some((sort_prefix(k), k.as_slice(), v.as_slice()))
                    }
                    _ => None,
                }
            })
            .collect();
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key_order(a.1, b.1)));
        for (_, k, value) in hits {
            let (key_group, state, key) = split_composite(k);
            let entry = StateEntry {
                key_group,
                state,
                key,
                value,
            };
            if visit(entry).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64) -> Result<Snapshot, StorageError> {
        if !self.tracking {
            // Writes were not recorded: only a full snapshot is exact.
            return self.full_snapshot(checkpoint_id);
        }
        let (kind, base) = match self.lineage {
            Lineage::NeedsFull => return self.full_snapshot(checkpoint_id),
            Lineage::Empty => (SnapshotKind::Full, None),
            Lineage::After(b) => (SnapshotKind::Delta, Some(b)),
        };
        let changed = std::mem::take(&mut self.changed);
        let mut records = Vec::with_capacity(changed.len());
        for composite in &changed {
            self.stats.snapshot_sync_visits += 1;
            let Some(slot) = self.map.get_mut(composite.as_slice()) else {
                continue;
            };
            slot.changed = false;
            let (key_group, state, key) = split_composite(composite);
            let value = slot.value.clone();
            let tombstone = value.is_none();
            if !(tombstone && kind == SnapshotKind::Full) {
                records.push(SnapshotRecord {
                    key_group,
                    state,
                    key: key.to_vec(),
                    value,
                });
            }
            if tombstone {
                self.remove_slot(composite);
            }
        }
        // Keep the list's capacity for the next interval.
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
        let changed = std::mem::take(&mut self.changed);
        for composite in &changed {
            let Some(slot) = self.map.get_mut(composite.as_slice()) else {
                continue;
            };
            slot.changed = false;
            if slot.value.is_none() {
                self.remove_slot(composite);
            }
        }
        self.changed = changed;
        self.changed.clear();
        self.lineage = Lineage::NeedsFull;
    }

    fn set_change_tracking(&mut self, on: bool) {
        if !on {
            self.discard_changes();
        }
        self.tracking = on;
    }

    fn full_snapshot(&mut self, checkpoint_id: u64) -> Result<Snapshot, StorageError> {
        let mut records = Vec::with_capacity(self.map.len());
        for (composite, slot) in &mut self.map {
            slot.changed = false;
            if let Some(v) = &slot.value {
                let (key_group, state, key) = split_composite(composite);
                records.push(SnapshotRecord {
                    key_group,
                    state,
                    key: key.to_vec(),
                    value: Some(v.clone()),
                });
            }
        }
        self.stats.snapshot_sync_visits += u64::try_from(self.map.len()).unwrap_or(u64::MAX);
        self.map.retain(|_, s| s.value.is_some());
        self.memory_bytes = self
            .map
            .iter()
            .map(|(k, s)| k.len() + s.value.as_ref().map_or(0, Vec::len) + SLOT_OVERHEAD)
            .sum();
        self.changed.clear();
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

    fn encode_full(
        &mut self,
        checkpoint_id: u64,
        compression: Compression,
    ) -> Result<EncodedSnapshot, StorageError> {
        // The same bookkeeping as `full_snapshot` in one pass: tombstones go, nothing is changed
        // any more, the memory is recounted.
        self.stats.snapshot_sync_visits += u64::try_from(self.map.len()).unwrap_or(u64::MAX);
        let mut memory = 0;
        self.map.retain(|k, s| {
            s.changed = false;
            let Some(v) = &s.value else {
                return false;
            };
            memory += k.len() + v.len() + SLOT_OVERHEAD;
            true
        });
        self.memory_bytes = memory;
        self.changed.clear();
        // File order is (key group, state, key), the composite keys' byte order. The sort compares
        // their first sixteen bytes held in the array, so that it rarely follows a pointer into
        // the map (the map's keys are scattered over the heap: comparing them directly made the
        // sort most of a full snapshot's time).
        let mut entries: Vec<(u128, &[u8], &[u8])> = self
            .map
            .iter()
            .filter_map(|(k, s)| {
                s.value
                    .as_deref()
                    .map(|v| (sort_prefix(k), k.as_slice(), v))
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key_order(a.1, b.1)));
        let states = self.registry.entries();
        let header = SnapshotHeader {
            checkpoint_id,
            kind: SnapshotKind::Full,
            base: None,
            key_groups: self.key_groups,
            states: &states,
        };
        let mut data_size = 0;
        let records: Vec<RecordRef<'_>> = entries
            .iter()
            .map(|(_, composite, value)| {
                let (key_group, state, key) = split_composite(composite);
                data_size += key.len() + value.len();
                RecordRef {
                    key_group,
                    state,
                    key,
                    value: Some(value),
                }
            })
            .collect();
        let bytes = encode_records(&header, records.into_iter(), data_size, compression);
        self.lineage = Lineage::After(checkpoint_id);
        Ok(EncodedSnapshot {
            bytes,
            kind: SnapshotKind::Full,
            data_size,
        })
    }

    fn restore(
        &mut self,
        snapshots: &[Snapshot],
        range: KeyGroupRange,
    ) -> Result<(), StorageError> {
        // Validate the whole chain before touching state, so a refused restore changes nothing.
        super::plan_restore(snapshots)?;
        self.clear();
        let mut registry = std::mem::take(&mut self.registry);
        let map = &mut self.map;
        let memory = &mut self.memory_bytes;
        let mut composite = Vec::new();
        let result = replay_restore(snapshots, range, &mut registry, &mut |r, state| {
            composite_key(&mut composite, r.key_group, state, &r.key);
            match &r.value {
                Some(v) => {
                    let added = v.len();
                    if let Some(old) = map.insert(
                        composite.clone(),
                        Slot {
                            value: Some(v.clone()),
                            changed: false,
                        },
                    ) {
                        *memory -= old.value.as_ref().map_or(0, Vec::len);
                        *memory += added;
                    } else {
                        *memory += composite.len() + added + SLOT_OVERHEAD;
                    }
                }
                None => {
                    if let Some(old) = map.remove(composite.as_slice()) {
                        *memory -= composite.len()
                            + old.value.as_ref().map_or(0, Vec::len)
                            + SLOT_OVERHEAD;
                    }
                }
            }
            Ok(())
        });
        self.registry = registry;
        self.key_groups = range;
        match result {
            Ok(lineage) => {
                self.lineage = lineage;
                Ok(())
            }
            Err(e) => {
                self.clear();
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

    fn get(b: &mut HashMapBackend, g: u16, s: u32, k: &[u8]) -> Option<Vec<u8>> {
        b.get(g, s, k).unwrap().map(<[u8]>::to_vec)
    }

    #[test]
    fn encoding_straight_from_the_map_gives_the_bytes_of_the_full_snapshot() {
        let fill = |b: &mut HashMapBackend| {
            let a = b.register_state("a");
            let z = b.register_state("z");
            for i in 0u32..500 {
                let key = i.to_be_bytes();
                b.put(
                    (i % 7) as u16,
                    if i % 3 == 0 { z } else { a },
                    &key[..1 + (i % 4) as usize],
                    &i.to_le_bytes(),
                )
                .unwrap();
            }
            b.delete(3, a, &[0]).unwrap();
            b.put(1, a, b"a much longer key than the others", b"v")
                .unwrap();
        };
        let (mut one, mut two) = (HashMapBackend::default(), HashMapBackend::default());
        fill(&mut one);
        fill(&mut two);
        for compression in [Compression::None, Compression::Snappy] {
            let full = one.full_snapshot(9).unwrap();
            let expected = EncodedSnapshot::of(&full, compression);
            assert_eq!(two.encode_full(9, compression).unwrap(), expected);
        }
        // Both continue from the same lineage.
        one.put(2, 0, b"k", b"1").unwrap();
        two.put(2, 0, b"k", b"1").unwrap();
        assert_eq!(one.snapshot(10).unwrap(), two.snapshot(10).unwrap());
    }

    #[test]
    fn put_get_delete() {
        let mut b = HashMapBackend::default();
        let s = b.register_state("count");
        assert_eq!(b.register_state("count"), s);
        b.put(3, s, b"a", b"1").unwrap();
        b.put(3, s, b"a", b"22").unwrap();
        assert_eq!(get(&mut b, 3, s, b"a"), Some(b"22".to_vec()));
        assert_eq!(get(&mut b, 4, s, b"a"), None);
        b.delete(3, s, b"a").unwrap();
        assert_eq!(get(&mut b, 3, s, b"a"), None);
        assert!(b.put(3, 99, b"a", b"1").is_err());
    }

    #[test]
    fn first_snapshot_is_full_then_deltas_carry_only_changes() {
        let mut b = HashMapBackend::default();
        let s = b.register_state("v");
        for i in 0..100u32 {
            b.put(1, s, &i.to_be_bytes(), b"x").unwrap();
        }
        let full = b.snapshot(1).unwrap();
        assert_eq!(full.kind, SnapshotKind::Full);
        assert_eq!(full.records.len(), 100);
        b.put(1, s, &5u32.to_be_bytes(), b"y").unwrap();
        b.put(1, s, &5u32.to_be_bytes(), b"z").unwrap();
        b.delete(1, s, &6u32.to_be_bytes()).unwrap();
        let before = b.stats().snapshot_sync_visits;
        let delta = b.snapshot(2).unwrap();
        assert_eq!(b.stats().snapshot_sync_visits - before, 2);
        assert_eq!(delta.kind, SnapshotKind::Delta);
        assert_eq!(delta.base, Some(1));
        let mut recs = delta.records.clone();
        recs.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(recs[0].value.as_deref(), Some(&b"z"[..]));
        assert_eq!(recs[1].value, None);

        let mut r = HashMapBackend::default();
        r.restore(&[full, delta], KeyGroupRange::ALL).unwrap();
        assert_eq!(get(&mut r, 1, s, &5u32.to_be_bytes()), Some(b"z".to_vec()));
        assert_eq!(get(&mut r, 1, s, &6u32.to_be_bytes()), None);
        assert_eq!(get(&mut r, 1, s, &7u32.to_be_bytes()), Some(b"x".to_vec()));
    }

    #[test]
    fn scan_is_ordered_and_filtered() {
        let mut b = HashMapBackend::default();
        let s = b.register_state("v");
        for g in [9u16, 2, 5] {
            b.put(g, s, b"b", b"1").unwrap();
            b.put(g, s, b"a", b"1").unwrap();
        }
        let mut seen = Vec::new();
        b.scan(KeyGroupRange::new(2, 5), &mut |e| {
            seen.push((e.key_group, e.key.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (2, b"a".to_vec()),
                (2, b"b".to_vec()),
                (5, b"a".to_vec()),
                (5, b"b".to_vec())
            ]
        );
    }

    #[test]
    fn restore_refuses_a_broken_chain_and_keeps_state() {
        let mut b = HashMapBackend::default();
        let s = b.register_state("v");
        b.put(0, s, b"k", b"v").unwrap();
        let full = b.snapshot(1).unwrap();
        b.put(0, s, b"k", b"w").unwrap();
        let _lost = b.snapshot(2).unwrap();
        b.put(0, s, b"k", b"u").unwrap();
        let d3 = b.snapshot(3).unwrap();
        assert!(matches!(
            b.restore(&[full, d3.clone()], KeyGroupRange::ALL),
            Err(StorageError::InvalidRestore { .. })
        ));
        assert_eq!(get(&mut b, 0, s, b"k"), Some(b"u".to_vec()));
        assert!(b.restore(&[d3], KeyGroupRange::ALL).is_err());
    }

    #[test]
    fn rescale_merges_chains_and_filters_key_groups() {
        let mut a = HashMapBackend::new(KeyGroupRange::new(0, 1));
        let mut b = HashMapBackend::new(KeyGroupRange::new(2, 3));
        // Different registration orders: ids differ, names match.
        let (ax, ay) = (a.register_state("x"), a.register_state("y"));
        let (by, bx) = (b.register_state("y"), b.register_state("x"));
        a.put(0, ax, b"k", b"a0x").unwrap();
        a.put(1, ay, b"k", b"a1y").unwrap();
        b.put(2, bx, b"k", b"b2x").unwrap();
        b.put(3, by, b"k", b"b3y").unwrap();
        let sa = a.snapshot(1).unwrap();
        let sb = b.snapshot(1).unwrap();
        let mut n = HashMapBackend::default();
        n.restore(&[sa, sb], KeyGroupRange::new(1, 2)).unwrap();
        let (x, y) = (n.register_state("x"), n.register_state("y"));
        assert_eq!(get(&mut n, 1, y, b"k"), Some(b"a1y".to_vec()));
        assert_eq!(get(&mut n, 2, x, b"k"), Some(b"b2x".to_vec()));
        assert!(n.get(0, x, b"k").is_err(), "key group 0 is not owned");
        // Merged chains: the next snapshot must be full.
        assert_eq!(n.snapshot(2).unwrap().kind, SnapshotKind::Full);
    }
}
