//! Background compaction of a subtask's incremental chain: once the chain is due
//! ([`SubtaskStore::compaction_due`]), a rayon job reads the chain's files, merges them
//! ([`crate::state::compaction::merge_chain`]) into one full snapshot of the last merged
//! checkpoint, writes it to `<job dir>/shared/<op>-<subtask>-<id>.compact.state`, and from then
//! on the subtask's checkpoints reference `[compacted file, deltas after it]`.
//!
//! Invariants:
//! - Off the checkpoint path: the merge reads files the checkpoints already wrote, never the store,
//!   so neither the operator nor a checkpoint waits for it; checkpoints taken meanwhile extend the
//!   old chain, and the compacted file replaces only the prefix it merged.
//! - At most one compaction per subtask runs at a time ([`TaskChain::compacting`]).
//! - The compacted file is written atomically with a checksum (through `streamsql_storage::file`)
//!   before any handle names it, and only if the chain still starts with the merged base and
//!   holds the merged last file; otherwise (a full snapshot or a restore started another chain)
//!   the result is dropped. The coordinator sees the file when the first checkpoint referencing it
//!   completes, and deletes the merged files once no retained checkpoint references them. A file
//!   written but never referenced (dropped, or the job stopped first) is removed by the sweep of
//!   `shared/` when a job next starts on the directory.
//! - A failed compaction never fails a checkpoint or the job: it is reported on stderr, the chain
//!   goes on growing, and the next checkpoint that finds the chain due starts another one (the
//!   store's hard limits make a checkpoint full if compaction keeps failing).
//! - Lock order: the job never holds the chain's lock while it calls the store (a continuation
//!   holds the store's continuation lock and then takes the chain's).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use streamsql_storage::{snapshot, Compression, EncodedSnapshot};

use super::local_state::LocalCopies;
use super::subtask_state::{read_sized, ChainFile, SHARED_DIR};
use crate::error::{EngineError, Result};
use crate::state::compaction::merge_encoded;
use crate::state::SubtaskStore;

/// The subtask's current chain, extended by each chained snapshot's continuation (in checkpoint
/// order) and shortened by compactions.
#[derive(Debug, Default)]
pub(crate) struct TaskChain {
    /// A full snapshot (or a compacted file) and the deltas after it, relative to the job
    /// directory.
    pub files: Vec<ChainFile>,
    /// The checkpoint of the chain's last file.
    pub last_id: Option<u64>,
    /// The files the subtask's previous chained checkpoint used: a checkpoint's checkpointed
    /// size is that of the files it uses and the previous one did not (Flink's new state of an
    /// incremental checkpoint).
    pub previous: Vec<String>,
    /// A compaction is running.
    pub compacting: bool,
    /// A chained snapshot's file could not be written: the deltas taken before the store learnt
    /// it follow a file the chain lacks, so their checkpoints are declined until a full snapshot
    /// restarts the chain.
    pub broken: bool,
}

impl TaskChain {
    /// Appends the file checkpoint `id` wrote (after a full snapshot, the chain restarts) and
    /// returns the chain's files, their total size and the size of those the previous chained
    /// checkpoint did not use.
    pub fn push(&mut self, id: u64, file: ChainFile, full: bool) -> (Vec<ChainFile>, u64, u64) {
        if full {
            self.files.clear();
        }
        self.files.push(file);
        self.last_id = Some(id);
        let total = self.files.iter().map(|f| f.size).sum();
        let added = self
            .files
            .iter()
            .filter(|f| !self.previous.contains(&f.path))
            .map(|f| f.size)
            .sum();
        self.previous = self.files.iter().map(|f| f.path.clone()).collect();
        (self.files.clone(), total, added)
    }
}

/// Locks a chain; a panic while holding it fails the job anyway, the data stays usable.
pub(crate) fn lock(chain: &Mutex<TaskChain>) -> MutexGuard<'_, TaskChain> {
    chain
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a compaction needs.
pub(crate) struct Compaction {
    pub store: Arc<SubtaskStore>,
    pub chain: Arc<Mutex<TaskChain>>,
    /// `<checkpoint dir>/<job id>`: chain files are relative to it.
    pub job_dir: PathBuf,
    /// `<operator id>-<subtask>`, the start of the subtask's file names.
    pub owner: String,
    pub compression: Compression,
    pub write_buffer_size: usize,
    pub local: Option<Arc<LocalCopies>>,
}

impl Compaction {
    /// Starts a compaction of `chain`'s current files if the store finds the chain due and none is
    /// running. Called by a continuation holding `chain`'s lock as `guard`.
    pub fn start_if_due(self, guard: &mut TaskChain) {
        if guard.compacting || guard.files.len() < 2 || !self.store.compaction_due() {
            return;
        }
        guard.compacting = true;
        let files = guard.files.clone();
        rayon::spawn(move || self.run(files));
    }

    fn run(self, files: Vec<ChainFile>) {
        if let Err(e) = self.compact(&files) {
            eprintln!(
                "streamsql: compaction of the incremental chain of {} failed (the chain goes on \
                 and a later checkpoint retries): {e}",
                self.owner
            );
        }
        lock(&self.chain).compacting = false;
    }

    fn compact(&self, files: &[ChainFile]) -> Result<()> {
        let mut snapshots = Vec::with_capacity(files.len());
        for f in files {
            let bytes = read_sized(&self.job_dir.join(&f.path), f.size)?;
            snapshots.push(snapshot::decode(&bytes).map_err(|e| {
                EngineError::data(format!("cannot read the chain file '{}': {e}", f.path))
            })?);
        }
        let (Some(base), Some(through)) = (
            snapshots.first().map(|s| s.checkpoint_id),
            snapshots.last().map(|s| s.checkpoint_id),
        ) else {
            return Ok(());
        };
        let merged: EncodedSnapshot = merge_encoded(snapshots, self.compression)
            .map_err(|e| EngineError::data(format!("cannot merge the chain: {e}")))?;
        let rel = compacted_name(&self.owner, through);
        let size = merged.bytes.len() as u64;
        streamsql_storage::file::write_atomic_buffered(
            &self.job_dir.join(&rel),
            &merged.bytes,
            self.write_buffer_size.max(4096),
        )
        .map_err(|e| EngineError::Task {
            message: format!("cannot write the compacted chain '{rel}': {e}"),
        })?;
        // The local copy is written before the chain uses the file and held until a checkpoint
        // uses it (see `LocalCopies::adopt`).
        if let Some(local) = &self.local {
            local.keep(
                super::local_state::PENDING,
                &rel,
                &merged.bytes,
                vec![rel.clone()],
            );
        }
        let installed = self.store.compacted(base, through, merged.data_size) && {
            let mut chain = lock(&self.chain);
            install(
                &mut chain,
                files,
                ChainFile {
                    path: rel.clone(),
                    size,
                },
            )
        };
        if let Some(local) = &self.local {
            // Needed from the checkpoint after the chain's current last one; if the compaction
            // was dropped, by none: the copy goes with the next completed checkpoint.
            let first_user = if installed {
                lock(&self.chain).last_id.map_or(0, |l| l.saturating_add(1))
            } else {
                0
            };
            local.adopt(&rel, first_user);
        }
        if !installed {
            // Nothing references it; a failed removal leaves it to the next start's sweep.
            let _ = streamsql_storage::file::remove_file(&self.job_dir.join(&rel));
        }
        Ok(())
    }
}

/// The compacted file of the chain of `owner` up to checkpoint `through`, relative to the job
/// directory.
pub(crate) fn compacted_name(owner: &str, through: u64) -> String {
    format!("{SHARED_DIR}/{owner}-{through}.compact.state")
}

/// Replaces the prefix `merged` of `chain` by `compacted`, if `chain` still starts with it.
fn install(chain: &mut TaskChain, merged: &[ChainFile], compacted: ChainFile) -> bool {
    if merged.is_empty() || !chain.files.starts_with(merged) {
        return false;
    }
    chain.files.splice(..merged.len(), [compacted]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{BackendKind, StateBackendConfig};
    use streamsql_storage::{KeyGroupRange, Snapshot, SnapshotKind, SnapshotRecord};

    fn compaction(job_dir: &std::path::Path, chain: Arc<Mutex<TaskChain>>) -> Compaction {
        let config = StateBackendConfig {
            kind: BackendKind::HashMap,
            incremental: true,
            ..StateBackendConfig::default()
        };
        Compaction {
            store: Arc::new(SubtaskStore::new(config, KeyGroupRange::new(0, 127), "t")),
            chain,
            job_dir: job_dir.to_path_buf(),
            owner: "00000000000000aa-0".into(),
            compression: Compression::None,
            write_buffer_size: 4096,
            local: None,
        }
    }

    /// Writes chain file `shared/<owner>-<id>.state` (a full snapshot, or a delta on `id - 1`).
    fn write(job_dir: &std::path::Path, id: u64, full: bool) -> ChainFile {
        let s = Snapshot {
            checkpoint_id: id,
            kind: if full {
                SnapshotKind::Full
            } else {
                SnapshotKind::Delta
            },
            base: (!full).then(|| id - 1),
            key_groups: KeyGroupRange::new(0, 127),
            states: vec![(0, "s".into())],
            records: vec![SnapshotRecord {
                key_group: 1,
                state: 0,
                key: id.to_be_bytes().to_vec(),
                value: Some(vec![1; 10]),
            }],
        };
        let path = format!("{SHARED_DIR}/00000000000000aa-0-{id}.state");
        let bytes = snapshot::encode(&s, Compression::None);
        streamsql_storage::file::write_atomic(&job_dir.join(&path), &bytes).unwrap();
        ChainFile {
            path,
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn a_failed_or_dropped_compaction_leaves_the_chain_as_it_was() {
        let dir = std::env::temp_dir().join(format!("streamsql-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let chain = Arc::new(Mutex::new(TaskChain::default()));
        let files = vec![write(&dir, 1, true), write(&dir, 2, false)];
        for (i, f) in files.iter().enumerate() {
            lock(&chain).push(i as u64 + 1, f.clone(), i == 0);
        }
        // A file of the chain cannot be read: the compaction fails, nothing changes.
        let mut missing = files.clone();
        missing[1].size += 1;
        lock(&chain).compacting = true;
        compaction(&dir, Arc::clone(&chain)).run(missing);
        assert!(!lock(&chain).compacting);
        assert_eq!(lock(&chain).files, files);
        // The store's chain does not start at checkpoint 1 (it never took one): the merged file
        // is written, dropped and removed.
        let c = compaction(&dir, Arc::clone(&chain));
        c.compact(&files).unwrap();
        assert_eq!(lock(&chain).files, files);
        assert!(!dir.join(compacted_name(&c.owner, 2)).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn file(p: &str) -> ChainFile {
        ChainFile {
            path: p.into(),
            size: 10,
        }
    }

    #[test]
    fn a_compaction_replaces_only_the_prefix_it_merged() {
        let mut chain = TaskChain::default();
        chain.push(1, file("shared/a-1.state"), true);
        chain.push(2, file("shared/a-2.state"), false);
        let merged = chain.files.clone();
        // A checkpoint taken while the merge ran.
        chain.push(3, file("shared/a-3.state"), false);
        assert!(install(
            &mut chain,
            &merged,
            file("shared/a-2.compact.state")
        ));
        assert_eq!(
            chain.files,
            vec![file("shared/a-2.compact.state"), file("shared/a-3.state")]
        );
        // The next checkpoint adds the compacted file and its own delta.
        let (files, total, added) = chain.push(4, file("shared/a-4.state"), false);
        assert_eq!(files.len(), 3);
        assert_eq!((total, added), (30, 20));
        let (_, _, added) = chain.push(5, file("shared/a-5.state"), false);
        assert_eq!(added, 10);
        // A chain restarted by a full snapshot is not touched by a stale compaction.
        let stale = chain.files.clone();
        chain.push(6, file("shared/a-6.state"), true);
        assert!(!install(
            &mut chain,
            &stale,
            file("shared/a-5.compact.state")
        ));
        assert_eq!(chain.files, vec![file("shared/a-6.state")]);
    }
}
