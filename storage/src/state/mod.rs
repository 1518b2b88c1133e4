//! Keyed state: the stores an operator subtask keeps its per-key state in, and the change tracking
//! that makes a checkpoint's synchronous part cheap.
//!
//! State is addressed by (key group, state id, key) and holds opaque value bytes; the engine
//! encodes keys and rows. A state id is a small number handed out by [`StateRegistry`] for a state
//! name, so snapshots carry the names and a restore maps them back by name.
//!
//! Invariants every backend keeps:
//! - Change tracking: every key written or deleted since the last snapshot is remembered exactly
//!   once, so [`KeyedStateBackend::snapshot`] visits only those keys (its cost is O(keys changed),
//!   not O(state)), and a delete is remembered as a tombstone until the snapshot that carries it.
//! - Snapshot lineage: a delta snapshot names the checkpoint it is relative to (its base); a
//!   backend that has never snapshotted is relative to the empty state and emits a full snapshot of
//!   what it holds; after a restore from one chain the next delta continues that chain; after a
//!   restore from several chains (rescaling merged them) the next snapshot is a full one.
//! - Key groups: a snapshot records the key groups its backend owned; restore keeps a record only
//!   if its key group is in the requested range and owned by every later snapshot of its chain,
//!   so a delta chain that continued after a restore to fewer key groups never resurrects the key
//!   groups the subtask had given away.
//! - Iteration is ordered by (key group, state id, key bytes), never by hash order.

mod hashmap;
mod sled_store;

use std::collections::HashMap;
use std::ops::ControlFlow;

pub use hashmap::HashMapBackend;
pub use sled_store::{SledBackend, SledOptions};

use crate::file::StorageError;
use crate::snapshot::{Snapshot, SnapshotKind, SnapshotRecord};

/// A key group, Flink's unit of keyed-state distribution (`pipeline.max-parallelism` of them).
pub type KeyGroup = u16;

/// The number of a registered state within one backend (see [`StateRegistry`]).
pub type StateId = u32;

/// An inclusive range of key groups, like Flink's `KeyGroupRange`; `start > end` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: KeyGroup,
    /// Last key group of the range (inclusive).
    pub end: KeyGroup,
}

impl KeyGroupRange {
    /// Every key group.
    pub const ALL: KeyGroupRange = KeyGroupRange {
        start: 0,
        end: KeyGroup::MAX,
    };

    /// The key groups `start..=end`.
    pub fn new(start: KeyGroup, end: KeyGroup) -> Self {
        KeyGroupRange { start, end }
    }

    /// Whether `group` lies in the range.
    pub fn contains(&self, group: KeyGroup) -> bool {
        self.start <= group && group <= self.end
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.start > self.end
    }

    /// The key groups in both ranges (possibly empty).
    pub fn intersect(&self, other: &KeyGroupRange) -> KeyGroupRange {
        KeyGroupRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        }
    }
}

/// State names and the ids they were given, in registration order (id = position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateRegistry {
    names: Vec<String>,
    by_name: HashMap<String, StateId>,
}

impl StateRegistry {
    /// The id of `name`, registering it if it is new.
    pub fn register(&mut self, name: &str) -> StateId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = StateId::try_from(self.names.len())
            .expect("invariant: fewer than 2^32 state names are registered");
        self.names.push(name.to_string());
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// The id of `name`, if registered.
    pub fn id(&self, name: &str) -> Option<StateId> {
        self.by_name.get(name).copied()
    }

    /// The name of `id`, if registered.
    pub fn name(&self, id: StateId) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
    }

    /// Every (id, name), in id order.
    pub fn entries(&self) -> Vec<(StateId, String)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let id = StateId::try_from(i).expect("invariant: ids are u32 by construction");
                (id, n.clone())
            })
            .collect()
    }

    /// Fails unless `id` was registered: a per-record check that is one comparison.
    pub(crate) fn check(&self, id: StateId) -> Result<(), StorageError> {
        if usize::try_from(id).is_ok_and(|i| i < self.names.len()) {
            Ok(())
        } else {
            Err(StorageError::InvalidStateAccess {
                reason: format!("state id {id} was never registered"),
            })
        }
    }
}

/// One entry seen by [`KeyedStateBackend::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateEntry<'a> {
    /// Key group of the entry.
    pub key_group: KeyGroup,
    /// State the entry belongs to.
    pub state: StateId,
    /// Key bytes.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
}

/// Counters a backend keeps about its own work, for metrics and for tests that check cost by
/// counting rather than timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Bytes of keys and values the backend holds in memory (an estimate including overhead).
    pub memory_bytes: usize,
    /// Entries visited by the synchronous part of snapshots, summed over all snapshots.
    pub snapshot_sync_visits: u64,
    /// Bulk write batches applied to the backing store.
    pub store_write_batches: u64,
    /// Keys written or removed in the backing store, summed over all batches.
    pub store_keys_written: u64,
    /// Point reads that fell through to the backing store.
    pub store_reads: u64,
}

/// Where the next snapshot of a backend starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lineage {
    /// Nothing snapshotted yet: the changes since creation are the whole state.
    Empty,
    /// The next delta is relative to this checkpoint.
    After(u64),
    /// The backend's state is not the result of its own changes (a merge of several chains): the
    /// next snapshot must be a full one.
    NeedsFull,
}

/// A store of keyed state for one operator subtask.
///
/// Methods take `&mut self` because a subtask owns its state exclusively and reads may populate a
/// cache.
pub trait KeyedStateBackend {
    /// The id of state `name`, registering it if new. Ids are stable for the backend's life.
    fn register_state(&mut self, name: &str) -> StateId;

    /// The registered names and ids.
    fn registry(&self) -> &StateRegistry;

    /// The value of `key` in `state` of `key_group`, if any.
    fn get(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
    ) -> Result<Option<&[u8]>, StorageError>;

    /// Sets the value of `key`.
    fn put(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError>;

    /// Removes `key` (a no-op if absent, but still recorded for the next snapshot).
    fn delete(
        &mut self,
        key_group: KeyGroup,
        state: StateId,
        key: &[u8],
    ) -> Result<(), StorageError>;

    /// Visits every entry whose key group is in `range`, ordered by (key group, state, key), until
    /// `visit` breaks. Not for the per-record path: it may cost O(state).
    fn scan(
        &mut self,
        range: KeyGroupRange,
        visit: &mut dyn FnMut(StateEntry<'_>) -> ControlFlow<()>,
    ) -> Result<(), StorageError>;

    /// The synchronous part of a checkpoint: the changes since the last snapshot as a delta, at a
    /// cost of O(keys changed). Exceptions, both documented in the module doc: the first snapshot
    /// of a fresh backend is a full one built from its changes (still O(changed)), and the first
    /// after a multi-chain restore is a full one (O(state)).
    fn snapshot(&mut self, checkpoint_id: u64) -> Result<Snapshot, StorageError>;

    /// Forgets which keys changed (O(keys changed)), for a backend whose changes are never
    /// snapshotted as deltas. The next `snapshot` is a full one.
    fn discard_changes(&mut self);

    /// Whether writes are recorded for the next delta snapshot (on when the backend is created).
    /// Off, a write costs no bookkeeping, deletions leave no tombstone, and the next `snapshot`
    /// is a full one. A backend may ignore this and keep recording.
    fn set_change_tracking(&mut self, on: bool) {
        let _ = on;
    }

    /// A full snapshot of all state (O(state)); later deltas are relative to it.
    fn full_snapshot(&mut self, checkpoint_id: u64) -> Result<Snapshot, StorageError>;

    /// [`KeyedStateBackend::full_snapshot`] in its file form. A backend may encode straight from
    /// its entries instead of copying them into a [`Snapshot`] first.
    fn encode_full(
        &mut self,
        checkpoint_id: u64,
        compression: crate::snapshot::Compression,
    ) -> Result<crate::snapshot::EncodedSnapshot, StorageError> {
        let snapshot = self.full_snapshot(checkpoint_id)?;
        Ok(crate::snapshot::EncodedSnapshot::of(&snapshot, compression))
    }

    /// Replaces all state by the result of `snapshots`, keeping only key groups in `range`, which
    /// becomes the range this backend owns. `snapshots` is one or more chains, each a full
    /// snapshot followed by its deltas in order (chains of different former subtasks, for a
    /// rescale, one after the other).
    fn restore(&mut self, snapshots: &[Snapshot], range: KeyGroupRange)
        -> Result<(), StorageError>;

    /// The key groups this backend owns.
    fn key_groups(&self) -> KeyGroupRange;

    /// Work counters.
    fn stats(&self) -> StateStats;
}

/// Length of the composite-key prefix: key group (2 bytes) and state id (4 bytes), big-endian so
/// byte order equals (key group, state) order.
pub(crate) const PREFIX_LEN: usize = 6;

/// Writes the composite key `key group | state | key` into `out` (cleared first).
pub(crate) fn composite_key(out: &mut Vec<u8>, key_group: KeyGroup, state: StateId, key: &[u8]) {
    out.clear();
    out.extend_from_slice(&key_group.to_be_bytes());
    out.extend_from_slice(&state.to_be_bytes());
    out.extend_from_slice(key);
}

/// Splits a composite key made by [`composite_key`].
pub(crate) fn split_composite(composite: &[u8]) -> (KeyGroup, StateId, &[u8]) {
    debug_assert!(composite.len() >= PREFIX_LEN);
    let key_group = u16::from_be_bytes([composite[0], composite[1]]);
    let state = u32::from_be_bytes([composite[2], composite[3], composite[4], composite[5]]);
    (key_group, state, &composite[PREFIX_LEN..])
}

/// Checks that `snapshots` is a sequence of chains and returns each chain's index range.
pub(crate) fn plan_restore(
    snapshots: &[Snapshot],
) -> Result<Vec<std::ops::Range<usize>>, StorageError> {
    let mut chains: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, s) in snapshots.iter().enumerate() {
        match s.kind {
            SnapshotKind::Full => chains.push(i..i + 1),
            SnapshotKind::Delta => {
                let Some(range) = chains.last_mut() else {
                    return Err(StorageError::InvalidRestore {
                        reason: format!(
                            "delta snapshot of checkpoint {} comes before any full snapshot",
                            s.checkpoint_id
                        ),
                    });
                };
                let prev = &snapshots[range.end - 1];
                if s.base != Some(prev.checkpoint_id) {
                    return Err(StorageError::InvalidRestore {
                        reason: format!(
                            "delta snapshot of checkpoint {} is based on {:?}, but follows checkpoint {}",
                            s.checkpoint_id, s.base, prev.checkpoint_id
                        ),
                    });
                }
                range.end = i + 1;
            }
        }
    }
    Ok(chains)
}

/// Visits the records of `snapshots` that survive a restore to `range`, in application order,
/// with each record's state id translated to the id `registry` gives its name. Returns the
/// lineage the restored backend continues from.
///
/// A record of snapshot i survives only in key groups owned by every later snapshot of its chain:
/// a backend restored to a narrower range dropped the rest, and its later deltas build on that.
pub(crate) fn replay_restore(
    snapshots: &[Snapshot],
    range: KeyGroupRange,
    registry: &mut StateRegistry,
    apply: &mut dyn FnMut(&SnapshotRecord, StateId) -> Result<(), StorageError>,
) -> Result<Lineage, StorageError> {
    let chains = plan_restore(snapshots)?;
    for indices in &chains {
        let chain = &snapshots[indices.clone()];
        let mut keep = vec![range; chain.len()];
        let mut owned_later = range;
        for (i, s) in chain.iter().enumerate().rev() {
            owned_later = owned_later.intersect(&s.key_groups);
            keep[i] = owned_later;
        }
        for (s, keep) in chain.iter().zip(keep) {
            let mut ids: HashMap<StateId, StateId> = HashMap::with_capacity(s.states.len());
            for (id, name) in &s.states {
                ids.insert(*id, registry.register(name));
            }
            for r in &s.records {
                if !keep.contains(r.key_group) {
                    continue;
                }
                let Some(&local) = ids.get(&r.state) else {
                    return Err(StorageError::InvalidRestore {
                        reason: format!(
                            "snapshot of checkpoint {} has a record of unnamed state id {}",
                            s.checkpoint_id, r.state
                        ),
                    });
                };
                apply(r, local)?;
            }
        }
    }
    Ok(match chains.as_slice() {
        [] => Lineage::Empty,
        [indices] => Lineage::After(snapshots[indices.end - 1].checkpoint_id),
        _ => Lineage::NeedsFull,
    })
}
