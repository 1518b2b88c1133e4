//! The merge behind background compaction of incremental chains: a full snapshot and the deltas
//! after it become one full snapshot, as if the chain's last checkpoint had been taken in full.
//!
//! The merged snapshot carries the checkpoint id of the chain's last file and no base, so a delta
//! written later (based on that checkpoint) follows it exactly as it followed the delta it
//! replaces: a restore of `[merged, later deltas...]` equals the restore of the whole chain.
//!
//! Invariants: the input is checked as a restore checks it (a full snapshot first, each delta
//! based on the checkpoint before it), and anything else is refused, never merged; the latest
//! write of a key wins and tombstones disappear; a record survives only in the key groups every
//! later file of the chain owns (as [`streamsql_storage::KeyedStateBackend::restore`] keeps it);
//! state ids are matched by name, so files whose registries numbered states differently still
//! merge; the output's records are in file order ([`snapshot::record_order`]).

use std::cmp::Ordering;
use std::collections::HashMap;

use streamsql_storage::snapshot::{self, record_order};
use streamsql_storage::{Snapshot, SnapshotKind, SnapshotRecord, StateId};

/// Merges `chain` (a full snapshot, then its deltas in order) into one full snapshot of the
/// chain's last checkpoint.
pub fn merge_chain(chain: Vec<Snapshot>) -> Result<Snapshot, String> {
    check_chain(&chain)?;
    let last = chain
        .last()
        .ok_or_else(|| "an empty chain cannot be compacted".to_string())?;
    let checkpoint_id = last.checkpoint_id;
    let key_groups = last.key_groups;
    // The output registry: the last file's, then any name only an earlier file knew.
    let mut states: Vec<(StateId, String)> = last.states.clone();
    let mut by_name: HashMap<String, StateId> =
        states.iter().map(|(id, n)| (n.clone(), *id)).collect();
    let mut next = states.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
    for s in &chain {
        for (_, name) in &s.states {
            if !by_name.contains_key(name) {
                by_name.insert(name.clone(), next);
                states.push((next, name.clone()));
                next += 1;
            }
        }
    }
    // Which key groups each file's records survive in: those every later file owns.
    let mut keep = vec![key_groups; chain.len()];
    let mut owned_later = key_groups;
    for (i, s) in chain.iter().enumerate().rev() {
        owned_later = owned_later.intersect(&s.key_groups);
        keep[i] = owned_later;
    }
    let mut files = chain.into_iter().zip(keep);
    let (base, base_keep) = files
        .next()
        .ok_or_else(|| "an empty chain cannot be compacted".to_string())?;
    let mut base_records = translate(base, base_keep, &by_name)?;
    base_records.sort_by(record_order);
    // Every delta's records, in chain order; a stable sort keeps that order among equal keys, so
    // the last of each run of equal keys is the latest write.
    let mut changes: Vec<SnapshotRecord> = Vec::new();
    for (delta, k) in files {
        changes.extend(translate(delta, k, &by_name)?);
    }
    changes.sort_by(record_order);
    let mut latest: Vec<SnapshotRecord> = Vec::with_capacity(changes.len());
    for r in changes {
        match latest.last_mut() {
            Some(prev) if record_order(prev, &r) == Ordering::Equal => *prev = r,
            _ => latest.push(r),
        }
    }
    let mut records = Vec::with_capacity(base_records.len() + latest.len());
    let mut changes = latest.into_iter().peekable();
    for b in base_records {
        while let Some(c) = changes.next_if(|c| record_order(c, &b) == Ordering::Less) {
            if c.value.is_some() {
                records.push(c);
            }
        }
        match changes.next_if(|c| record_order(c, &b) == Ordering::Equal) {
            Some(c) if c.value.is_some() => records.push(c),
            Some(_) => {}
            None if b.value.is_some() => records.push(b),
            None => {}
        }
    }
    records.extend(changes.filter(|c| c.value.is_some()));
    Ok(Snapshot {
        checkpoint_id,
        kind: SnapshotKind::Full,
        base: None,
        key_groups,
        states,
        records,
    })
}

/// Refuses what is not one chain: a full snapshot first, each delta based on the file before.
fn check_chain(chain: &[Snapshot]) -> Result<(), String> {
    let Some((first, rest)) = chain.split_first() else {
        return Err("an empty chain cannot be compacted".to_string());
    };
    if first.kind != SnapshotKind::Full {
        return Err(format!(
            "the chain starts with the delta of checkpoint {}",
            first.checkpoint_id
        ));
    }
    let mut prev = first.checkpoint_id;
    for s in rest {
        if s.kind != SnapshotKind::Delta || s.base != Some(prev) {
            return Err(format!(
                "the snapshot of checkpoint {} does not follow checkpoint {prev}",
                s.checkpoint_id
            ));
        }
        prev = s.checkpoint_id;
    }
    Ok(())
}

/// The records of `s` in the key groups of `keep`, with state ids of the output registry.
fn translate(
    s: Snapshot,
    keep: streamsql_storage::KeyGroupRange,
    by_name: &HashMap<String, StateId>,
) -> Result<Vec<SnapshotRecord>, String> {
    let ids: HashMap<StateId, StateId> = s
        .states
        .iter()
        .filter_map(|(id, name)| by_name.get(name).map(|out| (*id, *out)))
        .collect();
    let checkpoint_id = s.checkpoint_id;
    s.records
        .into_iter()
        .filter(|r| keep.contains(r.key_group))
        .map(|mut r| match ids.get(&r.state) {
            Some(&out) => {
                r.state = out;
                Ok(r)
            }
            None => Err(format!(
                "the snapshot of checkpoint {checkpoint_id} has a record of unnamed state id {}",
                r.state
            )),
        })
        .collect()
}

/// [`merge_chain`] of encoded files, encoded again with `compression`.
pub fn merge_encoded(
    chain: Vec<Snapshot>,
    compression: streamsql_storage::Compression,
) -> Result<streamsql_storage::EncodedSnapshot, String> {
    let merged = merge_chain(chain)?;
    // The records are already in file order: encoded without sorting them again.
    let header = snapshot::SnapshotHeader {
        checkpoint_id: merged.checkpoint_id,
        kind: merged.kind,
        base: merged.base,
        key_groups: merged.key_groups,
        states: &merged.states,
    };
    let data_size = merged.data_size();
    let records = merged.records.iter().map(|r| snapshot::RecordRef {
        key_group: r.key_group,
        state: r.state,
        key: &r.key,
        value: r.value.as_deref(),
    });
    Ok(streamsql_storage::EncodedSnapshot {
        bytes: snapshot::encode_records(&header, records, data_size, compression),
        kind: SnapshotKind::Full,
        data_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamsql_storage::{Compression, KeyGroupRange};

    fn rec(kg: u16, state: StateId, key: &str, value: Option<&str>) -> SnapshotRecord {
        SnapshotRecord {
            key_group: kg,
            state,
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn snap(id: u64, base: Option<u64>, records: Vec<SnapshotRecord>) -> Snapshot {
        Snapshot {
            checkpoint_id: id,
            kind: if base.is_some() {
                SnapshotKind::Delta
            } else {
                SnapshotKind::Full
            },
            base,
            key_groups: KeyGroupRange::new(0, 127),
            states: vec![(0, "a".into()), (1, "b".into())],
            records,
        }
    }

    #[test]
    fn later_writes_win_and_removals_disappear() {
        let chain = vec![
            snap(
                3,
                None,
                vec![
                    rec(1, 0, "x", Some("1")),
                    rec(1, 0, "y", Some("1")),
                    rec(2, 1, "x", Some("1")),
                ],
            ),
            snap(
                4,
                Some(3),
                vec![rec(1, 0, "y", None), rec(0, 0, "z", Some("4"))],
            ),
            snap(
                5,
                Some(4),
                vec![
                    rec(1, 0, "y", Some("5")),
                    rec(2, 1, "x", None),
                    rec(9, 1, "w", Some("5")),
                ],
            ),
            snap(6, Some(5), vec![rec(9, 1, "w", Some("6"))]),
        ];
        let merged = merge_chain(chain).unwrap();
        assert_eq!(merged.checkpoint_id, 6);
        assert_eq!(merged.kind, SnapshotKind::Full);
        assert_eq!(merged.base, None);
        assert_eq!(
            merged.records,
            vec![
                rec(0, 0, "z", Some("4")),
                rec(1, 0, "x", Some("1")),
                rec(1, 0, "y", Some("5")),
                rec(9, 1, "w", Some("6")),
            ]
        );
        // The encoded form decodes to the same snapshot.
        let expected = merged.clone();
        let chain = vec![snap(1, None, expected.records.clone())];
        let encoded = merge_encoded(chain, Compression::Snappy).unwrap();
        let back = snapshot::decode(&encoded.bytes).unwrap();
        assert_eq!(back.records, expected.records);
        assert_eq!(encoded.data_size, expected.data_size());
    }

    #[test]
    fn a_merged_chain_is_followed_by_the_next_delta() {
        let chain = vec![
            snap(3, None, vec![rec(1, 0, "x", Some("1"))]),
            snap(4, Some(3), vec![rec(1, 0, "x", Some("2"))]),
        ];
        let merged = merge_chain(chain).unwrap();
        let next = snap(7, Some(4), vec![rec(1, 0, "x", None)]);
        // Merging again (the compaction of a compacted chain) gives the empty state.
        let again = merge_chain(vec![merged, next]).unwrap();
        assert!(again.records.is_empty());
        assert_eq!(again.checkpoint_id, 7);
    }

    #[test]
    fn state_ids_are_matched_by_name_and_narrower_files_drop_records() {
        let mut base = snap(
            1,
            None,
            vec![rec(5, 0, "k", Some("a")), rec(100, 1, "k", Some("b"))],
        );
        base.states = vec![(0, "b".into()), (1, "a".into())];
        let mut delta = snap(2, Some(1), vec![rec(6, 0, "k", Some("c"))]);
        delta.key_groups = KeyGroupRange::new(0, 63);
        let merged = merge_chain(vec![base, delta]).unwrap();
        // The base's "b" (id 0 there) is id 1 in the output; group 100 is no longer owned.
        assert_eq!(
            merged.records,
            vec![rec(5, 1, "k", Some("a")), rec(6, 0, "k", Some("c"))]
        );
    }

    #[test]
    fn what_is_not_a_chain_is_refused() {
        assert!(merge_chain(Vec::new()).is_err());
        let d = snap(4, Some(3), Vec::new());
        assert!(merge_chain(vec![d.clone()]).is_err());
        assert!(merge_chain(vec![snap(2, None, Vec::new()), d]).is_err());
        let mut orphan = snap(1, None, vec![rec(1, 7, "k", Some("v"))]);
        orphan.states.clear();
        assert!(merge_chain(vec![orphan]).is_err());
    }
}
