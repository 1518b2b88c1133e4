//! Restoring at another parallelism: which old subtasks' state each new subtask takes.
//!
//! Flink's `StateAssignmentOperation`, as pure functions over facts already read. Keyed state
//! moves by key group: new subtask `i` of `n` owns the key groups of
//! [`crate::keygroup::key_group_range`]`(i, n, max)` and reads the keyed state of every old
//! subtask whose range overlaps it (the store keeps only its own groups). Operator (non-keyed)
//! state follows the operator's [`StateDistribution`].
//!
//! Invariants: with [`StateDistribution::RoundRobin`] every old subtask's state goes to exactly one
//! new subtask; with [`StateDistribution::KeyGroups`] every key group's old owner is among the
//! subtasks its new owner reads; [`StateDistribution::Union`] gives every new subtask every old
//! state. The number of key groups (max parallelism) never changes across a restore.

use crate::keygroup::key_group_range;

/// How an operator's non-keyed state is spread over the subtasks of a job restored at another
/// parallelism (Flink's redistribution modes of operator state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateDistribution {
    /// Each new subtask gets the states of the old subtasks whose key groups it takes over: for
    /// keyed operators, whose operator state describes their keyed state (shape, watermark).
    KeyGroups,
    /// Each old subtask's state goes to exactly one new subtask (old `j` to new `j % n`): state
    /// that must be acted on exactly once, such as a sink's pending files.
    RoundRobin,
    /// Every new subtask gets every old state and keeps its own share (Flink's union list
    /// state): sources, whose state is a list of independent splits or ranges.
    Union,
}

/// The old subtasks (of `old_parallelism`) whose key groups overlap those of new subtask `index`
/// of `new_parallelism`, in order.
pub fn overlapping_subtasks(
    index: usize,
    new_parallelism: usize,
    old_parallelism: usize,
    max_parallelism: usize,
) -> Vec<usize> {
    let (start, end) = key_group_range(index, new_parallelism, max_parallelism);
    if start > end {
        // More subtasks than key groups: this one owns none.
        return Vec::new();
    }
    (0..old_parallelism)
        .filter(|&j| {
            let (s, e) = key_group_range(j, old_parallelism, max_parallelism);
            // Ranges past the key groups (more subtasks than groups) are empty.
            s <= e && s <= end && start <= e
        })
        .collect()
}

/// The old subtasks whose operator state new subtask `index` of `new_parallelism` restores from.
pub fn assigned_subtasks(
    distribution: StateDistribution,
    index: usize,
    new_parallelism: usize,
    old_parallelism: usize,
    max_parallelism: usize,
) -> Vec<usize> {
    match distribution {
        StateDistribution::KeyGroups => {
            overlapping_subtasks(index, new_parallelism, old_parallelism, max_parallelism)
        }
        StateDistribution::RoundRobin => (0..old_parallelism)
            .filter(|j| j % new_parallelism.max(1) == index)
            .collect(),
        StateDistribution::Union => (0..old_parallelism).collect(),
    }
}

/// The share of subtask `index` of `parallelism` when `items` are dealt out in turn: item `k`
/// goes to subtask `k % parallelism`. Dealing the same list to every subtask splits it with
/// nothing lost and nothing twice.
pub fn share<T: Clone>(items: &[T], index: usize, parallelism: usize) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter(|(k, _)| k % parallelism.max(1) == index)
        .map(|(_, item)| item.clone())
        .collect()
}

/// What restoring a snapshot taken with `restored` key groups into a job configured with
/// `configured` (explicitly set by the user when `explicit`) gives: the number of key groups to
/// run with, or Flink's message. As Flink, a max parallelism the user did not set is taken from
/// the snapshot; one the user set must match it. `vertex` names the operator in the message.
pub fn max_parallelism_to_restore(
    restored: usize,
    configured: usize,
    explicit: bool,
    vertex: &str,
) -> Result<usize, String> {
    if restored == configured || !explicit {
        return Ok(restored);
    }
    Err(format!(
        "The maximum parallelism ({restored}) with which the latest checkpoint of the execution job vertex {vertex} has been taken and the current maximum parallelism ({configured}) changed. This is currently not supported."
    ))
}

/// Flink's check that an operator restored with `max_parallelism` key groups does not run at a
/// larger `parallelism`; `vertex` is the operator's id.
pub fn check_parallelism(
    max_parallelism: usize,
    parallelism: usize,
    vertex: &str,
) -> Result<(), String> {
    if max_parallelism < parallelism {
        return Err(format!(
            "The state for task {vertex} can not be restored. The maximum parallelism ({max_parallelism}) of the restored state is lower than the configured parallelism ({parallelism}). Please reduce the parallelism of the task to be lower or equal to the maximum parallelism."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup::operator_index;

    #[test]
    fn every_key_group_is_read_from_its_old_owner() {
        for max in [4, 128, 300] {
            for old in 1..=6 {
                for new in 1..=6 {
                    for i in 0..new {
                        let (s, e) = key_group_range(i, new, max);
                        let read = overlapping_subtasks(i, new, old, max);
                        for g in s..=e {
                            let owner = operator_index(g, old, max);
                            assert!(read.contains(&owner), "max {max} {old}->{new} group {g}");
                        }
                        // Nothing is read that holds none of the new subtask's groups.
                        for j in &read {
                            let (os, oe) = key_group_range(*j, old, max);
                            assert!((os..=oe).any(|g| (s..=e).contains(&g)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn round_robin_gives_every_old_state_to_exactly_one_new_subtask() {
        for old in 1..=7 {
            for new in 1..=7 {
                let mut seen = vec![0; old];
                for i in 0..new {
                    for j in assigned_subtasks(StateDistribution::RoundRobin, i, new, old, 128) {
                        seen[j] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{old}->{new}: {seen:?}");
            }
        }
        assert_eq!(
            assigned_subtasks(StateDistribution::Union, 2, 3, 4, 128),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn shares_partition_the_items() {
        let items: Vec<u32> = (0..11).collect();
        for n in 1..=5 {
            let mut all: Vec<u32> = (0..n).flat_map(|i| share(&items, i, n)).collect();
            all.sort_unstable();
            assert_eq!(all, items);
        }
    }

    #[test]
    fn max_parallelism_follows_flink() {
        assert_eq!(max_parallelism_to_restore(128, 256, false, "v"), Ok(128));
        assert_eq!(max_parallelism_to_restore(256, 256, true, "v"), Ok(256));
        let e = max_parallelism_to_restore(128, 256, true, "Agg (ab)").unwrap_err();
        assert!(e.starts_with("The maximum parallelism (128) with which the latest checkpoint of the execution job vertex Agg (ab) has been taken and the current maximum parallelism (256) changed."), "{e}");
        assert!(check_parallelism(4, 4, "v").is_ok());
        assert!(check_parallelism(4, 5, "v")
            .unwrap_err()
            .contains("The maximum parallelism (4) of the restored state is lower than the configured parallelism (5)"));
    }
}
