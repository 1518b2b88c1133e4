//! The byte-level store of one operator subtask's keyed state, shared between the operator
//! thread and the asynchronous parts of its checkpoints.
//!
//! A snapshot job carries the delta of its synchronous part (the operator's flushed hot state)
//! and is queued in order. Whoever takes the lock first applies every queued job in order: a
//! rayon job started for a snapshot, or the operator thread when it needs the store (a miss, or
//! a spill over the memory bound, which first applies what is queued and then writes its own
//! flush). A
//! snapshot is taken right after its own delta is applied, so it holds exactly the state at its
//! barrier, and its encoding and writing run after the lock is released.
//!
//! With incremental checkpoints the store also keeps the chain's bookkeeping: whether the next
//! chained snapshot may be a delta ([`ChainPolicy`]'s hard limits), whether a background
//! compaction is due, and, once one replaced a prefix of the chain ([`SubtaskStore::compacted`]),
//! the chain's new base.
//!
//! Invariants: jobs are applied in the order they were queued, each exactly once; a failed
//! apply leaves the store broken, and every later use fails (the subtask fails, and pending
//! snapshots are declined), because its content no longer matches the operator's state.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use streamsql_storage::snapshot::{encode_records, RecordRef, SnapshotHeader};
use streamsql_storage::{
    Compression, EncodedSnapshot, HashMapBackend, KeyGroupRange, KeyedStateBackend, SledBackend,
    SledOptions, Snapshot, SnapshotKind, SnapshotRecord, StateId,
};

use super::{storage_error, BackendKind, KeyedDelta, StateBackendConfig};
use crate::error::{EngineError, Result};

/// What a snapshot job hands its continuation: the snapshot at the barrier in its file form (full,
/// or a delta with incremental checkpoints), or why there is none.
pub type SnapshotResult = std::result::Result<EncodedSnapshot, String>;

/// The rest of a snapshot's asynchronous part (encode, write, acknowledge), run without the lock.
pub type SnapshotDone = Box<dyn FnOnce(SnapshotResult) + Send>;

/// What [`SubtaskStore::scan`] calls for each entry: (state name, key group, key, value).
pub type ScanVisitor<'a> = dyn FnMut(&str, u16, &[u8], &[u8]) -> Result<()> + 'a;

/// What [`SubtaskStore::scan_groups_while`] calls for each entry; false stops the scan.
pub type ScanWhile<'a> = dyn FnMut(&str, u16, &[u8], &[u8]) -> Result<bool> + 'a;

enum Job {
    Snapshot {
        checkpoint_id: u64,
        delta: KeyedDelta,
        /// A full snapshot outside the incremental chain (a savepoint, a final state).
        full: bool,
        compression: Compression,
        done: SnapshotDone,
    },
}

/// A keyed entry's address: key group, state, key bytes.
type EntryKey<'a> = (u16, StateId, &'a [u8]);

/// When an incremental chain is compacted in the background, and when a checkpoint gives up on
/// compaction and writes a full snapshot again.
///
/// A compaction merges the chain's files into one full snapshot off the checkpoint path (see
/// `crate::runtime::compaction`); the hard limits only matter when compaction does not keep up
/// or keeps failing, and bound the files a restore reads and the space of a checkpoint's files
/// as before compaction existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPolicy {
    /// Deltas after the chain's base at which a compaction is due; also due once the deltas
    /// hold more than a third of the base's bytes.
    pub compact_after: usize,
    /// Deltas after the base at which the next checkpoint is a full snapshot again; also once
    /// the deltas hold more than half the base's bytes.
    pub max_deltas: usize,
}

impl Default for ChainPolicy {
    fn default() -> Self {
        ChainPolicy {
            compact_after: 20,
            max_deltas: 60,
        }
    }
}

/// Where the incremental chain of the subtask's checkpoints stands.
#[derive(Debug, Default)]
struct Chain {
    /// The checkpoint of the chain's base: its full snapshot, or the compacted file that
    /// replaced the chain up to that checkpoint.
    base: Option<u64>,
    /// The checkpoint of the chain's newest snapshot, `None` before the first (or after a
    /// restore): the next one is full.
    last: Option<u64>,
    /// Data bytes of the base.
    base_bytes: usize,
    /// The deltas after the base: checkpoint and data bytes.
    deltas: Vec<(u64, usize)>,
}

impl Chain {
    fn delta_bytes(&self) -> usize {
        self.deltas.iter().map(|d| d.1).sum()
    }

    /// Whether the next chained snapshot may be a delta: the chain is within the hard limits
    /// (compaction normally keeps it far below them), so a restore reads at most
    /// `max_deltas + 1` files and the files of a retained checkpoint stay within 1.5 times one
    /// compact full snapshot (plus one delta).
    fn delta_allowed(&self, policy: &ChainPolicy) -> bool {
        self.last.is_some()
            && self.deltas.len() < policy.max_deltas
            && self.delta_bytes().saturating_mul(2) <= self.base_bytes
    }

    /// Whether the chain's files should be merged into one.
    fn compaction_due(&self, policy: &ChainPolicy) -> bool {
        !self.deltas.is_empty()
            && (self.deltas.len() >= policy.compact_after
                || self.delta_bytes().saturating_mul(3) > self.base_bytes)
    }
}

struct Inner {
    backend: Option<Box<dyn KeyedStateBackend + Send>>,
    ids: HashMap<&'static str, StateId>,
    queue: VecDeque<Job>,
    /// Why the store no longer matches the operator's state, once an apply failed.
    broken: Option<String>,
    /// Whether the backend's own change tracking is kept: deltas come from the operator's
    /// flushes, so it never is; it is discarded after each apply so it does not grow.
    track_changes: bool,
    chain: Chain,
    /// Writes spilled to the store since the chain's last snapshot (incremental checkpoints).
    carry: KeyedDelta,
}

/// The keyed-state store of one subtask (see the module documentation).
pub struct SubtaskStore {
    inner: Mutex<Inner>,
    /// Held while snapshot continuations run, taken before `inner` is released: continuations run
    /// in the order their jobs were applied, so a subtask's acknowledgements reach the coordinator
    /// in checkpoint order (its final state last).
    continuations: Mutex<()>,
    config: StateBackendConfig,
    policy: ChainPolicy,
    /// Whether the chain is due for compaction, kept beside `inner` so that snapshot
    /// continuations (which run holding `continuations`, taken after `inner`) read it without
    /// taking `inner`.
    compaction_due: AtomicBool,
    /// Set when a chained snapshot's file could not be written: the next chained snapshot is full,
    /// since no delta may follow a file that does not exist.
    restart_chain: AtomicBool,
    key_groups: KeyGroupRange,
    /// Working directory of a sled store opened under `state.backend.sled.localdir`, removed
    /// when the store goes away.
    work_dir: Option<PathBuf>,
}

impl std::fmt::Debug for SubtaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubtaskStore")
            .field("backend", &self.config.kind)
            .field("key_groups", &self.key_groups)
            .finish()
    }
}

impl Drop for SubtaskStore {
    fn drop(&mut self) {
        if let Ok(inner) = self.inner.get_mut() {
            inner.backend = None;
        }
        if let Some(dir) = &self.work_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl SubtaskStore {
    /// A store for the subtask owning `key_groups`; the backend is opened on first use, so
    /// operators without keyed state cost nothing. `name` makes the sled working directory
    /// unique (operator id and subtask).
    pub fn new(config: StateBackendConfig, key_groups: KeyGroupRange, name: &str) -> Self {
        Self::with_policy(config, key_groups, name, ChainPolicy::default())
    }

    /// [`SubtaskStore::new`] with the compaction limits of `policy` (tests use short chains).
    pub fn with_policy(
        config: StateBackendConfig,
        key_groups: KeyGroupRange,
        name: &str,
        policy: ChainPolicy,
    ) -> Self {
        let work_dir = match (&config.kind, &config.local_dir) {
            (BackendKind::Sled, Some(dir)) => {
                Some(dir.join(format!("streamsql-{}-{name}", std::process::id())))
            }
            _ => None,
        };
        SubtaskStore {
            inner: Mutex::new(Inner {
                backend: None,
                ids: HashMap::new(),
                queue: VecDeque::new(),
                broken: None,
                track_changes: false,
                chain: Chain::default(),
                carry: KeyedDelta::new(),
            }),
            continuations: Mutex::new(()),
            config,
            policy,
            compaction_due: AtomicBool::new(false),
            restart_chain: AtomicBool::new(false),
            key_groups,
            work_dir,
        }
    }

    /// Whether the backend was opened: some keyed state was written or restored.
    /// True when the store holds keyed state or a queued snapshot will open it: a checkpoint
    /// whose flush is empty must then still snapshot it. A snapshot submitted just before (a
    /// savepoint right before a checkpoint) may not have opened the store yet.
    pub fn holds_state(&self) -> bool {
        let inner = self.lock();
        inner.backend.is_some() || !inner.queue.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock fails the job anyway; the data is still readable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open_backend(&self) -> Result<Box<dyn KeyedStateBackend + Send>> {
        // The store's own cache gets the share of the budget the hot map leaves it.
        let sled = &self.config.sled;
        let bound = sled.store_bytes(self.config.memory_budget).max(1024 * 1024);
        let options = SledOptions {
            evict_ratio: sled.evict_ratio,
            low_space: sled.low_space,
        };
        match self.config.kind {
            BackendKind::HashMap => Ok(Box::new(HashMapBackend::new(self.key_groups))),
            BackendKind::Sled => {
                let b = match &self.work_dir {
                    Some(dir) => SledBackend::open_with(dir, bound, self.key_groups, options),
                    None => SledBackend::temporary_with(bound, self.key_groups, options),
                }
                .map_err(|e| storage_error("cannot open the sled state store", e))?;
                Ok(Box::new(b))
            }
        }
    }

    /// Applies every queued job in order and returns the snapshot continuations to run once the
    /// lock is released.
    fn drain(&self, inner: &mut Inner) -> Vec<(SnapshotDone, SnapshotResult)> {
        let mut done = Vec::new();
        while let Some(job) = inner.queue.pop_front() {
            match job {
                Job::Snapshot {
                    checkpoint_id,
                    delta,
                    full,
                    compression,
                    done: d,
                } => {
                    let last = full
                        && checkpoint_id == crate::runtime::checkpointing::FINAL_CHECKPOINT
                        && self.config.kind == BackendKind::Sled;
                    let result = if last {
                        self.final_snapshot(inner, checkpoint_id, &delta, compression)
                    } else {
                        apply(self, inner, &delta).and_then(|()| {
                            self.snapshot(inner, checkpoint_id, &delta, full, compression)
                        })
                    };
                    self.compaction_due
                        .store(inner.chain.compaction_due(&self.policy), Ordering::Relaxed);
                    let result = match result {
                        Ok(s) => Ok(s),
                        Err(e) => {
                            let msg = e.to_string();
                            inner.broken.get_or_insert(msg.clone());
                            Err(msg)
                        }
                    };
                    done.push((d, result));
                }
            }
        }
        done
    }

    /// The final state of a task whose input ended: the store is neither read nor written after
    /// it, so its flush `delta` is laid over a full snapshot of the store, in key order, instead
    /// of being written into sled first (which costs more than the snapshot itself).
    fn final_snapshot(
        &self,
        inner: &mut Inner,
        checkpoint_id: u64,
        delta: &KeyedDelta,
        compression: Compression,
    ) -> Result<EncodedSnapshot> {
        // In key order, the latest write of a key winning: writes of one key stay in their order
        // (by their position, which an unstable sort, faster than a stable one, then needs).
        let mut latest: Vec<(EntryKey<'_>, usize, Option<&[u8]>)> = Vec::with_capacity(delta.len());
        for (i, r) in delta.records().enumerate() {
            latest.push((
                (r.key_group, state_id(self, inner, r.state)?, r.key),
                i,
                r.value,
            ));
        }
        latest.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut deduped: Vec<(EntryKey<'_>, Option<&[u8]>)> = Vec::with_capacity(latest.len());
        for (key, _, value) in latest {
            match deduped.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => deduped.push((key, value)),
            }
        }
        let latest = deduped;
        let base = opened(self, inner)?
            .full_snapshot(checkpoint_id)
            .map_err(|e| storage_error("cannot snapshot keyed state", e))?;
        // Merged as borrowed records, encoded without copying any.
        let mut records: Vec<RecordRef<'_>> = Vec::with_capacity(base.records.len() + latest.len());
        let mut overlay = latest.into_iter().peekable();
        fn laid<'a>(records: &mut Vec<RecordRef<'a>>, (k, v): (EntryKey<'a>, Option<&'a [u8]>)) {
            if v.is_some() {
                records.push(RecordRef {
                    key_group: k.0,
                    state: k.1,
                    key: k.2,
                    value: v,
                });
            }
        }
        for r in &base.records {
            let here = (r.key_group, r.state, r.key.as_slice());
            while let Some(o) = overlay.next_if(|(k, _)| *k < here) {
                laid(&mut records, o);
            }
            match overlay.next_if(|(k, _)| *k == here) {
                Some(o) => laid(&mut records, o),
                None => records.push(RecordRef {
                    key_group: r.key_group,
                    state: r.state,
                    key: &r.key,
                    value: r.value.as_deref(),
                }),
            }
        }
        for o in overlay {
            laid(&mut records, o);
        }
        // Nothing may follow this snapshot in a chain.
        inner.carry = KeyedDelta::new();
        inner.chain = Chain::default();
        let data_size = records
            .iter()
            .map(|r| r.key.len() + r.value.map_or(0, <[u8]>::len))
            .sum();
        let header = SnapshotHeader {
            checkpoint_id,
            kind: base.kind,
            base: base.base,
            key_groups: base.key_groups,
            // The delta's states were registered before the store's snapshot listed them.
            states: &base.states,
        };
        Ok(EncodedSnapshot {
            bytes: encode_records(&header, records.into_iter(), data_size, compression),
            kind: base.kind,
            data_size,
        })
    }

    /// The snapshot of checkpoint `checkpoint_id`, right after its `delta` was applied: with
    /// incremental checkpoints and a chain that allows it, the delta itself, relative to the
    /// chain's newest snapshot; otherwise a full snapshot of the store.
    fn snapshot(
        &self,
        inner: &mut Inner,
        checkpoint_id: u64,
        delta: &KeyedDelta,
        full: bool,
        compression: Compression,
    ) -> Result<EncodedSnapshot> {
        let chained = self.config.incremental && !full;
        let restart = chained && self.restart_chain.swap(false, Ordering::Relaxed);
        if chained && !restart && inner.chain.delta_allowed(&self.policy) {
            // The writes spilled to the store since the chain's last snapshot, then this flush:
            // one record per key, the latest write winning.
            let carry = std::mem::take(&mut inner.carry);
            let mut latest: std::collections::BTreeMap<EntryKey<'_>, Option<&[u8]>> =
                std::collections::BTreeMap::new();
            for r in carry.records().chain(delta.records()) {
                latest.insert(
                    (r.key_group, state_id(self, inner, r.state)?, r.key),
                    r.value,
                );
            }
            let records: Vec<SnapshotRecord> = latest
                .into_iter()
                .map(|((key_group, state, key), value)| SnapshotRecord {
                    key_group,
                    state,
                    key: key.to_vec(),
                    value: value.map(<[u8]>::to_vec),
                })
                .collect();
            let states = opened(self, inner)?.registry().entries();
            let snapshot = Snapshot {
                checkpoint_id,
                kind: SnapshotKind::Delta,
                base: inner.chain.last,
                key_groups: self.key_groups,
                states,
                records,
            };
            inner.chain.last = Some(checkpoint_id);
            inner
                .chain
                .deltas
                .push((checkpoint_id, snapshot.data_size()));
            return Ok(EncodedSnapshot::of(&snapshot, compression));
        }
        let backend = opened(self, inner)?;
        let snapshot = backend
            .encode_full(checkpoint_id, compression)
            .map_err(|e| storage_error("cannot snapshot keyed state", e))?;
        // A full snapshot holds every spilled write.
        inner.carry = KeyedDelta::new();
        inner.chain = if chained {
            Chain {
                base: Some(checkpoint_id),
                last: Some(checkpoint_id),
                base_bytes: snapshot.data_size,
                deltas: Vec::new(),
            }
        } else {
            // A savepoint or final state outside the chain took the flush since the chain's last
            // snapshot with it: no later delta can follow that snapshot, so the next is full.
            Chain::default()
        };
        Ok(snapshot)
    }

    fn check(inner: &Inner) -> Result<()> {
        match &inner.broken {
            None => Ok(()),
            Some(why) => Err(EngineError::Task {
                message: format!("the keyed-state store failed: {why}"),
            }),
        }
    }

    /// Runs `f` on the store after every queued job was applied, then the continuations of the
    /// snapshots that were taken.
    fn with_drained<T>(&self, f: impl FnOnce(&mut Inner, &Self) -> Result<T>) -> Result<T> {
        let mut inner = self.lock();
        let done = self.drain(&mut inner);
        let result = Self::check(&inner).and_then(|()| f(&mut inner, self));
        let order = self.order();
        drop(inner);
        for (d, r) in done {
            d(r);
        }
        drop(order);
        result
    }

    /// The stored value of `key` in state `state` of `key_group`, after every queued flush.
    pub fn get(&self, key_group: u16, state: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_drained(|inner, store| {
            let id = state_id(store, inner, state)?;
            let backend = opened(store, inner)?;
            backend
                .get(key_group, id, key)
                .map(|v| v.map(<[u8]>::to_vec))
                .map_err(|e| storage_error("cannot read keyed state", e))
        })
    }

    /// Writes a flush of the hot state now (the operator is over its memory bound).
    pub fn write_back(&self, delta: KeyedDelta) -> Result<()> {
        self.with_drained(|inner, store| {
            apply(store, inner, &delta)?;
            // These writes never reach a checkpoint's flush: the next delta of the incremental
            // chain carries them.
            if store.config.incremental && inner.chain.last.is_some() {
                inner.carry.append_copy(&delta);
            }
            Ok(())
        })
    }

    /// Queues the asynchronous part of checkpoint `checkpoint_id`: apply `delta`, take a full
    /// snapshot, then call `done` with it (on a rayon thread, or on the operator thread if it
    /// needs the store first).
    pub fn submit_snapshot(
        self: &Arc<Self>,
        checkpoint_id: u64,
        delta: KeyedDelta,
        full: bool,
        compression: Compression,
        done: SnapshotDone,
    ) {
        self.lock().queue.push_back(Job::Snapshot {
            checkpoint_id,
            delta,
            full,
            compression,
            done,
        });
        let store = Arc::clone(self);
        rayon::spawn(move || store.run_queued());
    }

    /// Applies whatever is queued (a job may find its work already done by the operator thread).
    pub fn run_queued(&self) {
        let mut inner = self.lock();
        let done = self.drain(&mut inner);
        let order = self.order();
        drop(inner);
        for (d, r) in done {
            d(r);
        }
        drop(order);
    }

    fn order(&self) -> MutexGuard<'_, ()> {
        self.continuations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the state by `snapshots` (a full snapshot, or a chain of a full one and its
    /// deltas), keeping the key groups this subtask owns. The next chained snapshot is full.
    pub fn restore(&self, snapshots: Vec<Snapshot>) -> Result<()> {
        self.with_drained(|inner, store| {
            let backend = opened(store, inner)?;
            backend
                .restore(&snapshots, store.key_groups)
                .map_err(|e| storage_error("cannot restore keyed state", e))?;
            backend.discard_changes();
            inner.chain = Chain::default();
            inner.carry = KeyedDelta::new();
            store.compaction_due.store(false, Ordering::Relaxed);
            Ok(())
        })
    }

    /// The file of a chained snapshot could not be written: the next chained snapshot is full.
    /// Safe to call from a snapshot continuation (it takes no lock).
    pub fn restart_chain(&self) {
        self.restart_chain.store(true, Ordering::Relaxed);
    }

    /// Whether the incremental chain is long enough (in files or bytes) that its files should be
    /// merged into one ([`ChainPolicy::compact_after`]).
    pub fn compaction_due(&self) -> bool {
        self.compaction_due.load(Ordering::Relaxed)
    }

    /// A compaction merged the chain that starts at checkpoint `base` up to checkpoint `through`
    /// into one full snapshot of `data_size` data bytes, and later checkpoints' handles use it:
    /// the chain now starts at `through`, and only the deltas after it count towards the limits.
    /// Returns false (and changes nothing) when the chain no longer starts at `base` or does not
    /// reach `through` (a full snapshot or a restore started another chain meanwhile).
    pub fn compacted(&self, base: u64, through: u64, data_size: usize) -> bool {
        let mut inner = self.lock();
        let chain = &mut inner.chain;
        let Some(pos) = chain.deltas.iter().position(|d| d.0 == through) else {
            return false;
        };
        if chain.base != Some(base) {
            return false;
        }
        chain.deltas.drain(..=pos);
        chain.base = Some(through);
        chain.base_bytes = data_size;
        let due = chain.compaction_due(&self.policy);
        self.compaction_due.store(due, Ordering::Relaxed);
        true
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// Visits every stored entry of the subtask's key groups as (state name, key group, key,
    /// value), in (key group, state, key) order.
    pub fn scan(&self, visit: &mut ScanVisitor<'_>) -> Result<()> {
        self.scan_groups(self.key_groups, visit)
    }

    /// [`SubtaskStore::scan`] over the key groups of `range` this subtask owns.
    pub fn scan_groups(&self, range: KeyGroupRange, visit: &mut ScanVisitor<'_>) -> Result<()> {
        self.scan_groups_while(range, &mut |state, group, key, value| {
            visit(state, group, key, value).map(|()| true)
        })
    }

    /// [`SubtaskStore::scan_groups`] that stops once `visit` returns false.
    pub fn scan_groups_while(&self, range: KeyGroupRange, visit: &mut ScanWhile<'_>) -> Result<()> {
        let range = range.intersect(&self.key_groups);
        if range.is_empty() {
            return Ok(());
        }
        self.with_drained(|inner, store| {
            let backend = opened(store, inner)?;
            let names: HashMap<StateId, String> =
                backend.registry().entries().into_iter().collect();
            let mut failure = None;
            backend
                .scan(range, &mut |e| {
                    let name = names.get(&e.state).map_or("", String::as_str);
                    match visit(name, e.key_group, e.key, e.value) {
                        Ok(true) => ControlFlow::Continue(()),
                        Ok(false) => ControlFlow::Break(()),
                        Err(err) => {
                            failure = Some(err);
                            ControlFlow::Break(())
                        }
                    }
                })
                .map_err(|e| storage_error("cannot read keyed state", e))?;
            failure.map_or(Ok(()), Err)
        })
    }
}

/// The subtask's backend, opened on first use.
fn opened<'a>(
    store: &SubtaskStore,
    inner: &'a mut Inner,
) -> Result<&'a mut (dyn KeyedStateBackend + Send + 'static)> {
    if inner.backend.is_none() {
        let mut backend = store.open_backend()?;
        backend.set_change_tracking(inner.track_changes);
        inner.backend = Some(backend);
    }
    inner
        .backend
        .as_deref_mut()
        .ok_or_else(|| EngineError::internal("keyed-state store used before it was opened"))
}

fn state_id(store: &SubtaskStore, inner: &mut Inner, name: &'static str) -> Result<StateId> {
    if let Some(&id) = inner.ids.get(name) {
        return Ok(id);
    }
    let backend = opened(store, inner)?;
    let id = backend.register_state(name);
    inner.ids.insert(name, id);
    Ok(id)
}

fn apply(store: &SubtaskStore, inner: &mut Inner, delta: &KeyedDelta) -> Result<()> {
    for r in delta.records() {
        let id = state_id(store, inner, r.state)?;
        let backend = opened(store, inner)?;
        match r.value {
            Some(v) => backend.put(r.key_group, id, r.key, v),
            None => backend.delete(r.key_group, id, r.key),
        }
        .map_err(|e| storage_error("cannot write keyed state", e))?;
    }
    if !inner.track_changes {
        if let Some(b) = inner.backend.as_mut() {
            b.discard_changes();
        }
    }
    Ok(())
}
