//! Incremental checkpoints against an in-memory model: random sequences of writes, removals,
//! checkpoints (whose chains grow, are compacted when the store finds them due, as the task's
//! background compaction does, and get a new full snapshot by the store's hard limits),
//! compactions of a prefix of the chain (as a compaction that started some checkpoints ago
//! finishes), savepoints
//! (full snapshots outside the chain) and restores of a random completed checkpoint, into a
//! subtask owning every key group or only part of them (as after a change of parallelism). With
//! sled the memory budget is tiny, so the hot map spills to the store between checkpoints. The
//! restored state always equals the model at that checkpoint, restricted to the key groups
//! restored.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use streamsql_engine::keygroup;
use streamsql_engine::state::compaction::merge_chain;
use streamsql_engine::state::store::{ChainPolicy, SubtaskStore};
use streamsql_engine::state::{BackendKind, KeyedState, StateCodec, StateContext};
use streamsql_storage::{snapshot, Compression, KeyGroupRange, Snapshot, SnapshotKind};

mod common;

use common::{contents, I64Codec, MAX_PARALLELISM};

#[derive(Clone, Debug)]
enum Op {
    Put(i64, i64),
    Remove(i64),
    Checkpoint,
    /// A savepoint: a full snapshot outside the chain.
    Savepoint,
    /// Restore the completed checkpoint picked by this number, into the key groups picked by the
    /// second (0: all of them).
    Restore(usize, u8),
    /// Compact the chain up to the file picked by this number (a compaction that started when
    /// that file was the chain's last, and finishes now).
    Compact(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0i64..300, any::<i64>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0i64..300).prop_map(Op::Remove),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::Savepoint),
        1 => (any::<usize>(), 0u8..4).prop_map(|(i, r)| Op::Restore(i, r)),
        1 => any::<usize>().prop_map(Op::Compact),
    ]
}

/// A context whose store is `backend`; with sled, a memory budget small enough that the hot map
/// spills to the store between checkpoints.
fn context(backend: BackendKind, range: KeyGroupRange) -> StateContext {
    let config = common::config(backend);
    // Short chains, so that compactions and the hard limits happen in short sequences.
    let policy = ChainPolicy {
        compact_after: 3,
        max_deltas: 6,
    };
    StateContext {
        store: Some(Arc::new(SubtaskStore::with_policy(
            config.clone(),
            range,
            "model",
            policy,
        ))),
        config,
        checkpointing: true,
        ttl: None,
        latency: None,
    }
}

fn group_of(key: i64) -> u16 {
    u16::try_from(keygroup::key_group(
        I64Codec.key_hash(&key),
        MAX_PARALLELISM,
    ))
    .unwrap()
}

/// Compacts `chain[..=upto]` as the background compaction does: merges the files and tells the
/// store, which must accept it (the chain is the store's current one).
fn compact(
    ctx: &StateContext,
    chain: &mut Vec<Snapshot>,
    upto: usize,
) -> std::result::Result<(), TestCaseError> {
    if upto == 0 || upto >= chain.len() {
        return Ok(());
    }
    let merged = merge_chain(chain[..=upto].to_vec()).unwrap();
    prop_assert_eq!(merged.kind, SnapshotKind::Full);
    prop_assert_eq!(merged.checkpoint_id, chain[upto].checkpoint_id);
    // Through its file form, as a restore reads it.
    let merged = snapshot::decode(&snapshot::encode(&merged, Compression::Snappy)).unwrap();
    let store = ctx.store.as_ref().unwrap();
    prop_assert!(store.compacted(
        chain[0].checkpoint_id,
        merged.checkpoint_id,
        merged.data_size()
    ));
    chain.splice(..=upto, [merged]);
    Ok(())
}

fn run(ops: Vec<Op>, backend: BackendKind) -> std::result::Result<(), TestCaseError> {
    let all = KeyGroupRange::new(0, (MAX_PARALLELISM - 1) as u16);
    let mut ctx = context(backend, all);
    let mut state: KeyedState<i64, i64> = KeyedState::new("s", &ctx, MAX_PARALLELISM);
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let mut chain: Vec<Snapshot> = Vec::new();
    // Completed checkpoints: their chain and the model at their barrier.
    let mut completed: Vec<(Vec<Snapshot>, BTreeMap<i64, i64>)> = Vec::new();
    let mut next_id = 1u64;
    for op in ops {
        match op {
            Op::Put(k, v) => {
                // An update goes through `get_mut` when the key is there, as operators do.
                match state.get_mut(&I64Codec, &k).unwrap() {
                    Some(slot) => *slot = v,
                    None => state.insert(&I64Codec, k, v).unwrap(),
                }
                model.insert(k, v);
            }
            Op::Remove(k) => {
                prop_assert_eq!(state.remove(&I64Codec, &k).unwrap(), model.remove(&k));
            }
            Op::Savepoint => {
                let s = common::take_snapshot(&mut state, &ctx, next_id, true);
                next_id += 1;
                prop_assert_eq!(s.kind, SnapshotKind::Full);
                // Restorable on its own, like any savepoint.
                completed.push((vec![s], model.clone()));
                // The chain cannot go on after it: a compaction finishing now is dropped.
                chain.clear();
            }
            Op::Checkpoint => {
                let s = common::take_snapshot(&mut state, &ctx, next_id, false);
                next_id += 1;
                if s.kind == SnapshotKind::Full {
                    chain.clear();
                }
                chain.push(s);
                completed.push((chain.clone(), model.clone()));
                // One due compaction in three fails (the chain goes on, up to the hard limits).
                if ctx.store.as_ref().unwrap().compaction_due() && !next_id.is_multiple_of(3) {
                    let last = chain.len() - 1;
                    compact(&ctx, &mut chain, last)?;
                    prop_assert!(!ctx.store.as_ref().unwrap().compaction_due());
                }
            }
            Op::Compact(pick) => {
                if chain.len() > 1 {
                    let upto = 1 + pick % (chain.len() - 1);
                    compact(&ctx, &mut chain, upto)?;
                }
            }
            Op::Restore(pick, part) => {
                if completed.is_empty() {
                    continue;
                }
                let (restored_chain, at) = completed[pick % completed.len()].clone();
                // Another parallelism: a subtask owning a quarter, a half or all key groups.
                let range = match part {
                    1 => KeyGroupRange::new(0, 31),
                    2 => KeyGroupRange::new(64, 127),
                    _ => all,
                };
                let narrow = context(backend, range);
                narrow
                    .store
                    .as_ref()
                    .unwrap()
                    .restore(restored_chain.clone())
                    .unwrap();
                let expected: BTreeMap<i64, i64> = at
                    .iter()
                    .filter(|(k, _)| range.contains(group_of(**k)))
                    .map(|(k, v)| (*k, *v))
                    .collect();
                prop_assert_eq!(contents(&narrow), expected);
                // A failover: the job goes on from the restored checkpoint, owning every group.
                ctx = context(backend, all);
                ctx.store.as_ref().unwrap().restore(restored_chain).unwrap();
                state = KeyedState::new("s", &ctx, MAX_PARALLELISM);
                let restored = contents(&ctx);
                for (k, v) in &restored {
                    let mut key = Vec::new();
                    let mut value = Vec::new();
                    I64Codec.encode_key(k, &mut key);
                    I64Codec.encode_value(v, &mut value);
                    state.restore_entry(&I64Codec, "s", &key, &value).unwrap();
                }
                prop_assert_eq!(&restored, &at);
                model = at;
                chain.clear();
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn restored_state_equals_the_model_at_the_restored_checkpoint(
        ops in proptest::collection::vec(op(), 1..400)
    ) {
        run(ops, BackendKind::HashMap)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_same_with_the_sled_backend(ops in proptest::collection::vec(op(), 1..200)) {
        run(ops, BackendKind::Sled)?;
    }
}
