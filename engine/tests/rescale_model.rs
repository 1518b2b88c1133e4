//! Keyed state restored at another parallelism against an in-memory model: a job of several
//! subtasks (each owning its key-group range, with incremental checkpoints, so chains grow and
//! compact) takes random writes, removals and checkpoints, and is restored from a random completed
//! checkpoint at a random other parallelism. Each new subtask restores the chains of every old
//! subtask whose key groups overlap its own (`checkpoint::rescale::overlapping_subtasks`), as the
//! runtime does; its state must equal the model at that checkpoint restricted to its key groups,
//! and the job goes on at the new parallelism (and may be rescaled again).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use streamsql_engine::checkpoint::rescale::overlapping_subtasks;
use streamsql_engine::keygroup;
use streamsql_engine::state::store::SubtaskStore;
use streamsql_engine::state::{BackendKind, KeyedState, StateCodec, StateContext};
use streamsql_storage::{KeyGroupRange, Snapshot, SnapshotKind};

mod common;

use common::{I64Codec, MAX_PARALLELISM};

#[derive(Clone, Debug)]
enum Op {
    Put(i64, i64),
    Remove(i64),
    Checkpoint,
    /// Restore the completed checkpoint picked by the number at the parallelism given (1 to 5).
    Restore(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0i64..300, any::<i64>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0i64..300).prop_map(Op::Remove),
        2 => Just(Op::Checkpoint),
        1 => (any::<usize>(), 1usize..=5).prop_map(|(i, p)| Op::Restore(i, p)),
    ]
}

fn range_of(index: usize, parallelism: usize) -> KeyGroupRange {
    let (start, end) = keygroup::key_group_range(index, parallelism, MAX_PARALLELISM);
    KeyGroupRange::new(
        u16::try_from(start).expect("fits"),
        u16::try_from(end).expect("fits"),
    )
}

fn group_of(key: i64) -> usize {
    keygroup::key_group(I64Codec.key_hash(&key), MAX_PARALLELISM)
}

/// One subtask: its store and its keyed state.
struct Subtask {
    ctx: StateContext,
    state: KeyedState<i64, i64>,
    /// The subtask's incremental chain as its checkpoints wrote it.
    chain: Vec<Snapshot>,
}

impl Subtask {
    fn new(backend: BackendKind, range: KeyGroupRange) -> Self {
        let config = common::config(backend);
        let ctx = StateContext {
            store: Some(Arc::new(SubtaskStore::new(
                config.clone(),
                range,
                "rescale",
            ))),
            config,
            checkpointing: true,
            ttl: None,
            latency: None,
        };
        let state = KeyedState::new("s", &ctx, MAX_PARALLELISM);
        Subtask {
            ctx,
            state,
            chain: Vec::new(),
        }
    }

    /// Takes checkpoint `id` as the task and the store do it; returns the subtask's chain.
    fn checkpoint(&mut self, id: u64) -> Vec<Snapshot> {
        let s = common::take_snapshot(&mut self.state, &self.ctx, id, false);
        if s.kind == SnapshotKind::Full {
            self.chain.clear();
        }
        self.chain.push(s);
        self.chain.clone()
    }

    /// Every stored entry, as a restore hands them to an operator.
    fn contents(&self) -> BTreeMap<i64, i64> {
        common::contents(&self.ctx)
    }
}

/// A job of `parallelism` subtasks restored from `chains` (one per old subtask), each new subtask
/// reading the chains of the old subtasks whose key groups overlap its own.
fn restore(backend: BackendKind, chains: &[Vec<Snapshot>], parallelism: usize) -> Vec<Subtask> {
    (0..parallelism)
        .map(|i| {
            let mut sub = Subtask::new(backend, range_of(i, parallelism));
            let mut snapshots = Vec::new();
            for j in overlapping_subtasks(i, parallelism, chains.len(), MAX_PARALLELISM) {
                snapshots.extend(chains[j].iter().cloned());
            }
            if !snapshots.is_empty() {
                sub.ctx
                    .store
                    .as_ref()
                    .expect("a store")
                    .restore(snapshots)
                    .expect("restores");
            }
            for (k, v) in sub.contents() {
                let (mut key, mut value) = (Vec::new(), Vec::new());
                I64Codec.encode_key(&k, &mut key);
                I64Codec.encode_value(&v, &mut value);
                sub.state
                    .restore_entry(&I64Codec, "s", &key, &value)
                    .expect("restores");
            }
            sub
        })
        .collect()
}

/// A completed checkpoint: each old subtask's chain, and the model at its barrier.
type Completed = (Vec<Vec<Snapshot>>, BTreeMap<i64, i64>);

fn run(ops: Vec<Op>, backend: BackendKind) -> std::result::Result<(), TestCaseError> {
    let mut parallelism = 2;
    let mut job: Vec<Subtask> = (0..parallelism)
        .map(|i| Subtask::new(backend, range_of(i, parallelism)))
        .collect();
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let mut completed: Vec<Completed> = Vec::new();
    let mut next_id = 1u64;
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let owner = keygroup::operator_index(group_of(k), parallelism, MAX_PARALLELISM);
                let state = &mut job[owner].state;
                match state.get_mut(&I64Codec, &k).expect("reads") {
                    Some(slot) => *slot = v,
                    None => state.insert(&I64Codec, k, v).expect("writes"),
                }
                model.insert(k, v);
            }
            Op::Remove(k) => {
                let owner = keygroup::operator_index(group_of(k), parallelism, MAX_PARALLELISM);
                let removed = job[owner].state.remove(&I64Codec, &k).expect("removes");
                prop_assert_eq!(removed, model.remove(&k));
            }
            Op::Checkpoint => {
                let chains = job.iter_mut().map(|s| s.checkpoint(next_id)).collect();
                next_id += 1;
                completed.push((chains, model.clone()));
            }
            Op::Restore(pick, new_parallelism) => {
                if completed.is_empty() {
                    continue;
                }
                let (chains, at) = completed[pick % completed.len()].clone();
                job = restore(backend, &chains, new_parallelism);
                for (i, sub) in job.iter().enumerate() {
                    let range = range_of(i, new_parallelism);
                    let expected: BTreeMap<i64, i64> = at
                        .iter()
                        .filter(|(k, _)| range.contains(group_of(**k) as u16))
                        .map(|(k, v)| (*k, *v))
                        .collect();
                    prop_assert_eq!(
                        sub.contents(),
                        expected,
                        "subtask {} of {} restored from {} old subtasks",
                        i,
                        new_parallelism,
                        chains.len()
                    );
                }
                parallelism = new_parallelism;
                model = at;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn state_restored_at_another_parallelism_equals_the_model(
        ops in proptest::collection::vec(op(), 1..300)
    ) {
        run(ops, BackendKind::HashMap)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn the_same_with_the_sled_backend(ops in proptest::collection::vec(op(), 1..150)) {
        run(ops, BackendKind::Sled)?;
    }
}
