//! Model-based tests of the keyed-state backends: random sequences of writes, deletes, snapshots
//! (full or delta, through the encoded format) and restores (to random key-group ranges), checked
//! against a `BTreeMap`, on both backends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;

use proptest::prelude::*;
use streamsql_storage::snapshot::{decode, encode};
use streamsql_storage::{
    Compression, HashMapBackend, KeyGroupRange, KeyedStateBackend, SledBackend, Snapshot,
    SnapshotKind, StorageError,
};

type Model = BTreeMap<(u16, u32, Vec<u8>), Vec<u8>>;

const GROUPS: u16 = 4;

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u32, u8, Vec<u8>),
    Delete(u16, u32, u8),
    Get(u16, u32, u8),
    Snapshot {
        full: bool,
        compress: bool,
    },
    /// Restore the lineage of the `pick`-th snapshot taken (modulo their number) to key groups
    /// `lo..=hi`.
    Restore {
        pick: usize,
        lo: u16,
        hi: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let g = 0..GROUPS;
    let s = 0..2u32;
    let k = 0..6u8;
    prop_oneof![
        6 => (g.clone(), s.clone(), k.clone(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(g, s, k, v)| Op::Put(g, s, k, v)),
        2 => (g.clone(), s.clone(), k.clone()).prop_map(|(g, s, k)| Op::Delete(g, s, k)),
        2 => (g, s, k).prop_map(|(g, s, k)| Op::Get(g, s, k)),
        2 => (any::<bool>(), any::<bool>())
            .prop_map(|(full, compress)| Op::Snapshot { full, compress }),
        1 => (any::<usize>(), 0..GROUPS, 0..GROUPS).prop_map(|(pick, a, b)| Op::Restore {
            pick,
            lo: a.min(b),
            hi: a.max(b),
        }),
    ]
}

fn contents(b: &mut dyn KeyedStateBackend) -> Model {
    let mut m = Model::new();
    let names: HashMap<u32, String> = b.registry().entries().into_iter().collect();
    b.scan(KeyGroupRange::ALL, &mut |e| {
        // Compare by name-independent id of the test: "s0" -> 0, "s1" -> 1.
        let id: u32 = names[&e.state][1..].parse().unwrap();
        m.insert((e.key_group, id, e.key.to_vec()), e.value.to_vec());
        ControlFlow::Continue(())
    })
    .unwrap();
    m
}

/// The snapshots from the full one that starts `id`'s chain up to `id`, following base links.
fn lineage(by_id: &BTreeMap<u64, Snapshot>, id: u64) -> Vec<Snapshot> {
    let mut chain = vec![by_id[&id].clone()];
    while let Some(base) = chain.last().and_then(|s| s.base) {
        chain.push(by_id[&base].clone());
    }
    chain.reverse();
    assert_eq!(chain[0].kind, SnapshotKind::Full);
    chain
}

fn run(backend: &mut dyn KeyedStateBackend, ops: &[Op], memory_bound: Option<usize>) {
    // Register in a backend-specific order so restores must map ids by name.
    let ids = [backend.register_state("s0"), backend.register_state("s1")];
    let mut model = Model::new();
    let mut owned = KeyGroupRange::ALL;
    let mut changed: BTreeSet<(u16, u32, Vec<u8>)> = BTreeSet::new();
    let mut by_id: BTreeMap<u64, Snapshot> = BTreeMap::new();
    let mut models: BTreeMap<u64, Model> = BTreeMap::new();
    let mut taken: Vec<u64> = Vec::new();
    let mut next_id = 1u64;
    let mut verifier = HashMapBackend::default();

    for op in ops {
        match op.clone() {
            Op::Put(g, s, k, v) => {
                let stats = backend.stats();
                let r = backend.put(g, ids[s as usize], &[k], &v);
                if !owned.contains(g) {
                    assert!(matches!(r, Err(StorageError::InvalidStateAccess { .. })));
                    continue;
                }
                r.unwrap();
                if let Some(bound) = memory_bound {
                    let after = backend.stats();
                    if after.store_write_batches > stats.store_write_batches {
                        // Composite key (6 + 1), value, per-slot overhead (64).
                        assert!(
                            stats.memory_bytes + 7 + v.len() + 64 > bound,
                            "put wrote sled while under its memory bound"
                        );
                    }
                    assert!(after.memory_bytes <= bound.max(7 + v.len() + 64));
                }
                model.insert((g, s, vec![k]), v);
                changed.insert((g, s, vec![k]));
            }
            Op::Delete(g, s, k) => {
                let r = backend.delete(g, ids[s as usize], &[k]);
                if !owned.contains(g) {
                    assert!(r.is_err());
                    continue;
                }
                r.unwrap();
                model.remove(&(g, s, vec![k]));
                changed.insert((g, s, vec![k]));
            }
            Op::Get(g, s, k) => {
                let r = backend.get(g, ids[s as usize], &[k]);
                if !owned.contains(g) {
                    assert!(r.is_err());
                    continue;
                }
                assert_eq!(
                    r.unwrap().map(<[u8]>::to_vec).as_ref(),
                    model.get(&(g, s, vec![k]))
                );
            }
            Op::Snapshot { full, compress } => {
                let id = next_id;
                next_id += 1;
                let visits = backend.stats().snapshot_sync_visits;
                let snap = if full {
                    backend.full_snapshot(id).unwrap()
                } else {
                    let snap = backend.snapshot(id).unwrap();
                    let work = backend.stats().snapshot_sync_visits - visits;
                    assert!(
                        work <= changed.len() as u64,
                        "snapshot visited {work} entries for {} changed keys",
                        changed.len()
                    );
                    snap
                };
                changed.clear();
                // Through the format: what the engine would write and read back.
                let bytes = encode(&snap, Compression::from_flag(compress));
                let snap = decode(&bytes).unwrap();
                // A flipped byte is always refused, never a panic.
                let mut bad = bytes.clone();
                let i = (id as usize * 7919) % bad.len();
                bad[i] ^= 0x5a;
                assert!(decode(&bad).is_err());

                by_id.insert(id, snap);
                models.insert(id, model.clone());
                taken.push(id);
                // Restored state equals the model at the snapshot.
                verifier
                    .restore(&lineage(&by_id, id), KeyGroupRange::ALL)
                    .unwrap();
                assert_eq!(contents(&mut verifier), model, "snapshot {id}");
            }
            Op::Restore { pick, lo, hi } => {
                if taken.is_empty() {
                    continue;
                }
                let id = taken[pick % taken.len()];
                let range = KeyGroupRange::new(lo, hi);
                backend.restore(&lineage(&by_id, id), range).unwrap();
                model = models[&id]
                    .iter()
                    .filter(|((g, _, _), _)| range.contains(*g))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                owned = range;
                changed.clear();
                assert_eq!(
                    contents(backend),
                    model,
                    "after restoring {id} to {lo}..={hi}"
                );
            }
        }
    }
    assert_eq!(contents(backend), model);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hashmap_backend_matches_model(ops in prop::collection::vec(op(), 0..120)) {
        let mut b = HashMapBackend::default();
        run(&mut b, &ops, None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sled_backend_matches_model(
        ops in prop::collection::vec(op(), 0..120),
        bound in prop_oneof![Just(150usize), Just(600), Just(1 << 20)],
    ) {
        let mut b = SledBackend::temporary(bound, KeyGroupRange::ALL).unwrap();
        // A throwaway registration shifts ids, so the two backends use different ids per name.
        b.register_state("unused");
        run(&mut b, &ops, Some(bound));
    }

    #[test]
    fn decode_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        // Garbage behind a valid frame reaches the parser itself.
        let framed = streamsql_storage::frame(streamsql_storage::snapshot::MAGIC,
            streamsql_storage::snapshot::VERSION, &bytes);
        let _ = decode(&framed);
    }
}

/// The synchronous snapshot part visits only changed keys, however large the state.
#[test]
fn snapshot_work_is_proportional_to_changed_keys() {
    let backends: Vec<Box<dyn KeyedStateBackend>> = vec![
        Box::new(HashMapBackend::default()),
        Box::new(SledBackend::temporary(64 * 1024, KeyGroupRange::ALL).unwrap()),
    ];
    for mut b in backends {
        let s = b.register_state("v");
        for i in 0..20_000u32 {
            b.put(
                u16::try_from(i % 128).unwrap(),
                s,
                &i.to_be_bytes(),
                b"value",
            )
            .unwrap();
        }
        b.snapshot(1).unwrap();
        for round in 0..3u64 {
            let before = b.stats().snapshot_sync_visits;
            for i in 0..10u32 {
                let key = (i * 1999).to_be_bytes();
                let group = u16::try_from((i * 1999) % 128).unwrap();
                b.put(group, s, &key, b"new").unwrap();
                b.put(group, s, &key, b"newer").unwrap();
            }
            b.delete(5, s, &5u32.to_be_bytes()).unwrap();
            let snap = b.snapshot(2 + round).unwrap();
            assert_eq!(snap.kind, SnapshotKind::Delta);
            assert_eq!(snap.records.len(), 11);
            assert_eq!(b.stats().snapshot_sync_visits - before, 11);
        }
    }
}
