//! Task-local copies of keyed state (`execution.state-recovery.from-local`), Flink's local
//! recovery: each subtask keeps a second copy of every keyed-state file it writes for a periodic
//! checkpoint under `<local dir>/<job id>/`, with the job directory's layout
//! (`chk-<n>/taskowned/<file>` for a full snapshot, `shared/<file>` for a file of an incremental
//! chain), and recovery reads that copy before the checkpoint directory.
//!
//! Invariants: a local copy is only ever a cache. Writing one never fails a checkpoint (a failure
//! is reported on stderr and the copy is missing), and recovery uses one only after it verified
//! (the length recorded in `_metadata`, then the snapshot's checksum and decoding); otherwise it
//! reads the checkpoint directory. A subtask deletes only its own copies: those of checkpoints
//! older than the newest completed one, except the chain files a newer checkpoint still uses.
//! With `execution.checkpointing.local-backup.max-size` set, a copy that would take a subtask's
//! copies beyond it is not written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use streamsql_storage::file;

use super::subtask_state::SHARED_DIR;

/// The directory local copies go to when `execution.checkpointing.local-backup.dirs` is unset.
pub fn default_root() -> PathBuf {
    std::env::temp_dir().join("streamsql-local-state")
}

/// `<root>/<job id>`, where the job id is the name of the job's checkpoint directory.
pub fn job_dir(root: &Path, checkpoint_job_dir: &Path) -> PathBuf {
    match checkpoint_job_dir.file_name() {
        Some(id) => root.join(id),
        None => root.join("job"),
    }
}

/// The key under which [`LocalCopies::keep`] holds the copy of a compacted chain file until
/// [`LocalCopies::adopt`] says which checkpoint first uses it: above every checkpoint id, so no
/// completion removes it meanwhile (the final state, `u64::MAX`, has no local copies).
pub(crate) const PENDING: u64 = u64::MAX - 1;

/// One subtask's local copies.
#[derive(Debug)]
pub(crate) struct LocalCopies {
    /// `<local dir>/<job id>`.
    job_dir: PathBuf,
    /// The subtask's file names start with this (`<operator id>-<subtask>`).
    owner: String,
    /// Bytes of copies the subtask keeps at most.
    max_size: Option<u64>,
    held: Mutex<Held>,
}

/// What a subtask's copies are.
#[derive(Debug, Default)]
struct Held {
    /// Per checkpoint written, the local files (relative to the job directory) its state uses.
    uses: BTreeMap<u64, Vec<String>>,
    /// The copies this run wrote and has not removed, with their lengths.
    sizes: BTreeMap<String, u64>,
    /// Whether skipping a copy for `max_size` was reported (once per subtask, not per checkpoint).
    reported: bool,
}

impl LocalCopies {
    /// The copies of subtask `subtask` of operator `operator_id` in `job_dir` (`<root>/<job id>`).
    pub fn new(job_dir: PathBuf, operator_id: u64, subtask: usize, max_size: Option<u64>) -> Self {
        LocalCopies {
            job_dir,
            owner: format!("{operator_id:016x}-{subtask}"),
            max_size,
            held: Mutex::default(),
        }
    }

    /// Keeps a local copy of `bytes`, the file `rel` (relative to the job directory) that
    /// checkpoint `id` wrote; `uses` are every file (relative to the job directory) the
    /// checkpoint's state needs, `rel` included. A failure is reported, never returned.
    pub fn keep(&self, id: u64, rel: &str, bytes: &[u8], uses: Vec<String>) {
        let len = bytes.len() as u64;
        {
            let mut held = self.lock();
            held.uses.insert(id, uses);
            let total: u64 = held.sizes.values().sum();
            if let Some(max) = self.max_size.filter(|&max| total.saturating_add(len) > max) {
                if !held.reported {
                    held.reported = true;
                    eprintln!(
                        "streamsql: checkpoint {id}: local copies of {} would exceed \
                         execution.checkpointing.local-backup.max-size ({max} bytes): \
                         copies that do not fit are not written",
                        self.owner
                    );
                }
                return;
            }
        }
        // Written without the lock: completions of checkpoints need it meanwhile.
        let path = self.job_dir.join(rel);
        if let Err(e) = file::write_atomic(&path, bytes) {
            eprintln!(
                "streamsql: checkpoint {id}: cannot write the local copy '{}': {e}",
                path.display()
            );
            return;
        }
        self.lock().sizes.insert(rel.to_string(), len);
    }

    /// The copy `rel`, kept under [`PENDING`], is used from checkpoint `first_user` on (0: by no
    /// checkpoint, so the next completion removes it).
    pub fn adopt(&self, rel: &str, first_user: u64) {
        let mut held = self.lock();
        if let Some(files) = held.uses.get_mut(&PENDING) {
            files.retain(|f| f != rel);
            if files.is_empty() {
                held.uses.remove(&PENDING);
            }
        }
        if first_user > 0 {
            held.uses
                .entry(first_user)
                .or_default()
                .push(rel.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of the copies this run wrote and has not removed.
    #[cfg(test)]
    fn held_bytes(&self) -> u64 {
        self.lock().sizes.values().sum()
    }

    /// Checkpoint `completed` completed: deletes this subtask's copies of older checkpoints
    /// (also those a previous run of the job left), except files a checkpoint from `completed`
    /// on still uses.
    pub fn on_checkpoint_complete(&self, completed: u64) {
        let keep: BTreeSet<String> = {
            let mut held = self.lock();
            held.uses = held.uses.split_off(&completed);
            held.uses.values().flatten().cloned().collect()
        };
        let mut removed = Vec::new();
        if let Err(e) = self.remove_older_than(completed, &keep, &mut removed) {
            eprintln!(
                "streamsql: cannot remove subsumed local copies in '{}': {e}",
                self.job_dir.display()
            );
        }
        let mut held = self.lock();
        for rel in removed {
            held.sizes.remove(&rel);
        }
    }

    fn remove_older_than(
        &self,
        completed: u64,
        keep: &BTreeSet<String>,
        removed: &mut Vec<String>,
    ) -> Result<(), streamsql_storage::StorageError> {
        let own_full = format!("{}.state", self.owner);
        for entry in file::list_dir(&self.job_dir)? {
            let Some(name) = entry.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name == SHARED_DIR {
                for f in file::list_dir(&entry)? {
                    let Some(fname) = f.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    let older = self.chain_file_id(fname).is_some_and(|id| id < completed);
                    let rel = format!("{SHARED_DIR}/{fname}");
                    if older && !keep.contains(&rel) {
                        file::remove_file(&f)?;
                        removed.push(rel);
                    }
                }
                continue;
            }
            let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if id >= completed {
                continue;
            }
            let taskowned = entry.join("taskowned");
            file::remove_file(&taskowned.join(&own_full))?;
            removed.push(format!("{name}/taskowned/{own_full}"));
            // The last subtask to leave a checkpoint's directory removes it.
            if file::list_dir(&taskowned)?.is_empty() {
                file::remove_dir_all(&entry)?;
            }
        }
        Ok(())
    }

    /// The checkpoint id in the name of this subtask's chain file (`<owner>-<id>.state`, or
    /// `<owner>-<id>.compact.state` for a compacted chain up to checkpoint `id`).
    fn chain_file_id(&self, name: &str) -> Option<u64> {
        let id = name
            .strip_prefix(self.owner.as_str())?
            .strip_prefix('-')?
            .strip_suffix(".state")?;
        id.strip_suffix(".compact").unwrap_or(id).parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("streamsql-local-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_compacted_copy_is_held_until_its_first_checkpoint_is_subsumed() {
        let dir = temp_dir("compacted");
        let a = LocalCopies::new(dir.clone(), 7, 0, None);
        let owner = "0000000000000007-0";
        let compacted = format!("shared/{owner}-3.compact.state");
        a.keep(5, &format!("shared/{owner}-5.state"), b"d5", vec![]);
        a.keep(PENDING, &compacted, b"c3", vec![compacted.clone()]);
        // Completions before a checkpoint uses it keep it.
        a.on_checkpoint_complete(5);
        assert!(files(&dir).contains(&compacted));
        a.adopt(&compacted, 6);
        a.on_checkpoint_complete(6);
        assert!(files(&dir).contains(&compacted));
        // Checkpoint 7 no longer uses it (its chain restarted): it goes.
        a.keep(7, &format!("shared/{owner}-7.state"), b"f7", vec![]);
        a.on_checkpoint_complete(7);
        assert!(!files(&dir).contains(&compacted), "{:?}", files(&dir));
        // A dropped compaction's copy goes with the next completion.
        let dropped = format!("shared/{owner}-8.compact.state");
        a.keep(PENDING, &dropped, b"c8", vec![dropped.clone()]);
        a.adopt(&dropped, 0);
        a.on_checkpoint_complete(9);
        assert!(!files(&dir).contains(&dropped));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn subsumed_full_copies_are_removed_and_other_subtasks_are_left_alone() {
        let dir = temp_dir("full");
        let a = LocalCopies::new(dir.clone(), 7, 0, None);
        let b = LocalCopies::new(dir.clone(), 7, 1, None);
        for id in 1..=3 {
            for (c, s) in [(&a, 0), (&b, 1)] {
                let rel = format!("chk-{id}/taskowned/{:016x}-{s}.state", 7);
                c.keep(id, &rel, b"x", vec![rel.clone()]);
            }
        }
        // Left by a previous run of the job.
        let stale = format!("chk-0/taskowned/{:016x}-0.state", 7);
        file::write_atomic(&dir.join(&stale), b"old").unwrap();
        a.on_checkpoint_complete(3);
        assert_eq!(
            files(&dir),
            [
                "chk-1/taskowned/0000000000000007-1.state",
                "chk-2/taskowned/0000000000000007-1.state",
                "chk-3/taskowned/0000000000000007-0.state",
                "chk-3/taskowned/0000000000000007-1.state",
            ]
        );
        b.on_checkpoint_complete(3);
        assert_eq!(
            files(&dir),
            [
                "chk-3/taskowned/0000000000000007-0.state",
                "chk-3/taskowned/0000000000000007-1.state",
            ]
        );
        assert!(!dir.join("chk-1").exists(), "empty directories go too");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn chain_files_a_newer_checkpoint_uses_are_kept() {
        let dir = temp_dir("chain");
        let c = LocalCopies::new(dir.clone(), 9, 2, None);
        let f = |id: u64| format!("shared/{:016x}-2-{id}.state", 9);
        // Checkpoint 1 is a full snapshot, 2 and 3 deltas on it, 4 a new full one.
        c.keep(1, &f(1), b"1", vec![f(1)]);
        c.keep(2, &f(2), b"2", vec![f(1), f(2)]);
        c.keep(3, &f(3), b"3", vec![f(1), f(2), f(3)]);
        // Another subtask's file, whose name this subtask's starts.
        file::write_atomic(&dir.join(format!("shared/{:016x}-20-1.state", 9)), b"o").unwrap();
        c.on_checkpoint_complete(3);
        assert_eq!(
            files(&dir),
            [
                "shared/0000000000000009-2-1.state",
                "shared/0000000000000009-2-2.state",
                "shared/0000000000000009-2-3.state",
                "shared/0000000000000009-20-1.state",
            ]
        );
        c.keep(4, &f(4), b"4", vec![f(4)]);
        c.on_checkpoint_complete(4);
        assert_eq!(
            files(&dir),
            [
                "shared/0000000000000009-2-4.state",
                "shared/0000000000000009-20-1.state",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn copies_beyond_the_budget_are_not_written_and_room_comes_back_with_removals() {
        let dir = temp_dir("budget");
        let c = LocalCopies::new(dir.clone(), 1, 0, Some(10));
        let rel = |id: u64| format!("chk-{id}/taskowned/{:016x}-0.state", 1);
        c.keep(1, &rel(1), &[1; 6], vec![rel(1)]);
        c.keep(2, &rel(2), &[2; 6], vec![rel(2)]);
        assert!(dir.join(rel(1)).is_file());
        assert!(!dir.join(rel(2)).exists(), "6 + 6 bytes exceed 10");
        assert_eq!(c.held_bytes(), 6);
        c.on_checkpoint_complete(2);
        assert_eq!(c.held_bytes(), 0);
        c.keep(3, &rel(3), &[3; 10], vec![rel(3)]);
        assert!(dir.join(rel(3)).is_file(), "exactly the budget fits");
        assert_eq!(files(&dir), [rel(3)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
