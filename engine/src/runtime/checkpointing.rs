//! The checkpoint coordinator thread and the on-disk checkpoint format.
//!
//! The coordinator triggers checkpoint n on the sources (which record their position and emit
//! `Barrier(n)`), collects one acknowledgement with a state blob from every subtask, and when all
//! have acknowledged writes `<job dir>/chk-<n>/_metadata` through the one durable-write path (tmp,
//! fsync, rename, fsync dir): that rename is the commit point. It then tells every task that n
//! completed (transactional sinks publish) and removes checkpoints beyond
//! `execution.checkpointing.num-retained`. The decisions (when to trigger, is n complete, which
//! failures count, which checkpoints to delete) are the pure structs of `crate::checkpoint`.
//!
//! `_metadata` layout (payload of a framed file, magic `SSCK`, version 1): codec version byte,
//! checkpoint id, trigger timestamp, number of entries, then per subtask: operator id, subtask
//! index, length-prefixed state bytes. State is inlined: every subtask's state travels in the one
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Clock, JobShared};
use crate::checkpoint::{
    which_to_delete, Acknowledgement, CheckpointConfig, CheckpointFailureReason, CheckpointKind,
    FailureManager, FailureVerdict, PendingCheckpoint, TaskKey, TriggerDecision, TriggerFacts,
    TriggerPolicy,
};
use crate::codec;
use crate::error::{EngineError, Result};
use crate::message::CheckpointBarrier;

const METADATA_MAGIC: [u8; 4] = *b"SSCK";
const METADATA_VERSION: u16 = 1;
/// The name of the commit file of a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";

/// How a job checkpoints: its settings, where, and what it resumes from.
#[derive(Clone, Debug)]
pub struct CheckpointSetup {
    pub config: CheckpointConfig,
    /// `<execution.checkpointing.dir>/<job-id>`.
    pub job_dir: PathBuf,
    /// The checkpoint to start from.
    pub restore: Option<Arc<RestoredCheckpoint>>,
    /// `--allow-non-restored-state`: state of operators the job no longer has is skipped.
    pub allow_non_restored_state: bool,
}

/// A completed checkpoint read back from disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredCheckpoint {
    pub checkpoint_id: u64,
    pub trigger_ms: i64,
    /// Every subtask's state (a source's position or an operator's state).
    pub states: BTreeMap<TaskKey, Vec<u8>>,
    /// Where it was read from.
    pub path: PathBuf,
}

/// What a task sends the coordinator.
#[derive(Debug)]
pub(crate) enum TaskEvent {
    /// The subtask's snapshot for a checkpoint.
    Ack {
        task: TaskKey,
        checkpoint_id: u64,
        state: Vec<u8>,
        ack: Acknowledgement,
    },
    /// The subtask could not take part in a checkpoint.
    Decline {
        checkpoint_id: u64,
        reason: CheckpointFailureReason,
    },
    /// The subtask ended (its input is exhausted, or the job stops).
    Finished(TaskKey),
    /// The subtask's input is exhausted and this is its state at the end (the final checkpoint);
    /// it waits for `TaskCommand::Complete(FINAL_CHECKPOINT)` before it exits.
    FinalState { task: TaskKey, state: Vec<u8> },
}

/// The checkpoint id tasks use for the final checkpoint of a finished job: every transactional
/// sink publishes everything up to it.
pub const FINAL_CHECKPOINT: u64 = u64::MAX;

/// What the coordinator sends a task.
#[derive(Clone, Debug)]
pub(crate) enum TaskCommand {
    /// Sources only: take checkpoint `barrier.id` now.
    Trigger(CheckpointBarrier),
    /// The checkpoint completed.
    Complete(u64),
}

/// Encodes a checkpoint's metadata.
pub fn encode_metadata(checkpoint: &RestoredCheckpoint) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_version(&mut out);
    codec::put_uvarint(&mut out, checkpoint.checkpoint_id);
    codec::put_ivarint(&mut out, checkpoint.trigger_ms);
    codec::put_uvarint(&mut out, checkpoint.states.len() as u64);
    for (task, state) in &checkpoint.states {
        codec::put_uvarint(&mut out, task.operator_id);
        codec::put_uvarint(&mut out, task.subtask as u64);
        codec::put_uvarint(&mut out, state.len() as u64);
        out.extend_from_slice(state);
    }
    out
}

/// Decodes a checkpoint's metadata; never panics on bad bytes.
pub fn decode_metadata(mut input: &[u8], path: &Path) -> Result<RestoredCheckpoint> {
    let input = &mut input;
    codec::check_version(input)?;
    let checkpoint_id = codec::get_uvarint(input)?;
    let trigger_ms = codec::get_ivarint(input)?;
    let n = codec::get_len(input)?;
    let mut states = BTreeMap::new();
    for _ in 0..n {
        let operator_id = codec::get_uvarint(input)?;
        let subtask = usize::try_from(codec::get_uvarint(input)?)
            .map_err(|_| codec::corrupt("subtask index out of range"))?;
        let len = codec::get_len(input)?;
        let bytes = codec::get_bytes(input, len)?;
        states.insert(
            TaskKey {
                operator_id,
                subtask,
            },
            bytes.to_vec(),
        );
    }
    codec::expect_end(input)?;
    Ok(RestoredCheckpoint {
        checkpoint_id,
        trigger_ms,
        states,
        path: path.to_path_buf(),
    })
}

fn checkpoint_dir(job_dir: &Path, id: u64) -> PathBuf {
    job_dir.join(format!("chk-{id}"))
}

/// Reads a checkpoint from its directory or its `_metadata` file, verifying the checksum.
pub fn read_checkpoint(path: &Path) -> Result<RestoredCheckpoint> {
    let file = if path.is_dir() {
        path.join(METADATA_FILE)
    } else {
        path.to_path_buf()
    };
    let payload = streamsql_storage::read_framed(&file, METADATA_MAGIC, METADATA_VERSION)
        .map_err(|e| EngineError::data(format!("cannot restore from '{}': {e}", file.display())))?;
    decode_metadata(&payload, &file)
}

/// The completed checkpoints of a job directory, newest first: `chk-<n>` directories with a
/// `_metadata` file.
pub fn completed_checkpoints(job_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(job_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id: u64 = name.strip_prefix("chk-")?.parse().ok()?;
            let dir = e.path();
            dir.join(METADATA_FILE).is_file().then_some((id, dir))
        })
        .collect();
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    found
}

/// The newest checkpoint of a job directory that reads back intact, falling back to older ones
/// when the newest is damaged; `None` when there is none.
pub fn latest_checkpoint(job_dir: &Path) -> Result<Option<RestoredCheckpoint>> {
    let mut damaged = Vec::new();
    for (_, dir) in completed_checkpoints(job_dir) {
        match read_checkpoint(&dir) {
            Ok(c) => {
                for d in damaged {
                    eprintln!("streamsql: skipped damaged checkpoint: {d}");
                }
                return Ok(Some(c));
            }
            Err(e) => damaged.push(e.to_string()),
        }
    }
    if damaged.is_empty() {
        Ok(None)
    } else {
        Err(EngineError::data(format!(
            "no intact checkpoint in '{}': {}",
            job_dir.display(),
            damaged.join("; ")
        )))
    }
}

/// The coordinator's side of the channels.
pub(crate) struct Coordinator {
    pub setup: CheckpointSetup,
    pub tasks: Vec<TaskKey>,
    /// Command channels of the source subtasks.
    pub sources: Vec<Sender<TaskCommand>>,
    /// Command channels of every subtask (completion notices).
    pub all: Vec<Sender<TaskCommand>>,
    pub events: Receiver<TaskEvent>,
    pub clock: Arc<dyn Clock>,
}

impl Coordinator {
    /// Runs until every task finished or the job is cancelled.
    pub fn run(self, shared: &JobShared) {
        if let Err(e) = self.run_inner(shared) {
            shared.fail(e);
        }
    }

    fn run_inner(self, shared: &JobShared) -> Result<()> {
        let config = self.setup.config.clone();
        let policy = TriggerPolicy::new(&config);
        let mut failures = FailureManager::new(config.tolerable_failed);
        let started_ms = self.clock.now_millis();
        let mut next_id = self
            .setup
            .restore
            .as_ref()
            .map_or(1, |r| r.checkpoint_id + 1);
        let mut last_trigger_ms: Option<i64> = None;
        let mut last_completed_end_ms: Option<i64> = None;
        let mut pending: BTreeMap<u64, (PendingCheckpoint, BTreeMap<TaskKey, Vec<u8>>)> =
            BTreeMap::new();
        let mut finished: std::collections::BTreeSet<TaskKey> = std::collections::BTreeSet::new();
        let mut final_states: BTreeMap<TaskKey, Vec<u8>> = BTreeMap::new();
        let mut completed: Vec<u64> = completed_checkpoints(&self.setup.job_dir)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        completed.sort_unstable();
        loop {
            if shared.is_cancelled() || finished.len() >= self.tasks.len() {
                return Ok(());
            }
            let now = self.clock.now_millis();
            let facts = TriggerFacts {
                now_ms: now,
                started_ms,
                last_trigger_ms,
                last_completed_end_ms,
                in_progress: pending.len(),
                all_tasks_running: finished.is_empty(),
            };
            if let TriggerDecision::Trigger = policy.next_trigger(&facts) {
                let id = next_id;
                next_id += 1;
                last_trigger_ms = Some(now);
                let barrier = CheckpointBarrier {
                    id,
                    timestamp: now,
                    is_savepoint: false,
                };
                pending.insert(
                    id,
                    (
                        PendingCheckpoint::new(
                            id,
                            CheckpointKind::Checkpoint,
                            now,
                            config.timeout,
                            self.tasks.iter().copied(),
                        ),
                        BTreeMap::new(),
                    ),
                );
                for s in &self.sources {
                    // A source that already ended cannot take part: the checkpoint is declined
                    // below when that task's end is reported.
                    let _ = s.try_send(TaskCommand::Trigger(barrier.clone()));
                }
            }
            // Expired checkpoints.
            let expired: Vec<u64> = pending
                .iter_mut()
                .filter_map(|(id, (p, _))| p.check_expired(now).map(|_| *id))
                .collect();
            for id in expired {
                pending.remove(&id);
                self.fail_checkpoint(
                    &mut failures,
                    id,
                    CheckpointFailureReason::CheckpointExpired,
                    shared,
                )?;
            }
            match self.events.recv_timeout(Duration::from_millis(10)) {
                Ok(TaskEvent::Ack {
                    task,
                    checkpoint_id,
                    state,
                    ack,
                }) => {
                    let Some((p, states)) = pending.get_mut(&checkpoint_id) else {
                        continue;
                    };
                    p.acknowledge(task, ack, self.clock.now_millis());
                    states.insert(task, state);
                    if p.is_complete() {
                        let (p, states) = pending
                            .remove(&checkpoint_id)
                            .expect("invariant: the checkpoint was just found pending");
                        let write_start = Instant::now();
                        let checkpoint = RestoredCheckpoint {
                            checkpoint_id,
                            trigger_ms: p.trigger_ms(),
                            states,
                            path: PathBuf::new(),
                        };
                        let dir = checkpoint_dir(&self.setup.job_dir, checkpoint_id);
                        let written = streamsql_storage::write_framed_atomic(
                            &dir.join(METADATA_FILE),
                            METADATA_MAGIC,
                            METADATA_VERSION,
                            &encode_metadata(&checkpoint),
                        );
                        if let Err(e) = written {
                            eprintln!("streamsql: checkpoint {checkpoint_id} failed: {e}");
                            self.fail_checkpoint(
                                &mut failures,
                                checkpoint_id,
                                CheckpointFailureReason::IoException,
                                shared,
                            )?;
                            continue;
                        }
                        let _ = write_start;
                        failures.on_success(checkpoint_id);
                        last_completed_end_ms = Some(self.clock.now_millis());
                        completed.push(checkpoint_id);
                        // Older pending checkpoints are subsumed.
                        let older: Vec<u64> =
                            pending.range(..checkpoint_id).map(|(id, _)| *id).collect();
                        for id in older {
                            pending.remove(&id);
                        }
                        for tx in &self.all {
                            let _ = tx.try_send(TaskCommand::Complete(checkpoint_id));
                        }
                        for id in which_to_delete(&completed, config.num_retained.max(1)) {
                            let _ =
                                std::fs::remove_dir_all(checkpoint_dir(&self.setup.job_dir, id));
                            completed.retain(|c| *c != id);
                        }
                    }
                }
                Ok(TaskEvent::Decline {
                    checkpoint_id,
                    reason,
                }) => {
                    if pending.remove(&checkpoint_id).is_some() {
                        self.fail_checkpoint(&mut failures, checkpoint_id, reason, shared)?;
                    }
                }
                Ok(TaskEvent::FinalState { task, state }) => {
                    final_states.insert(task, state);
                    if final_states.len() == self.tasks.len() {
                        // Every task reached the end of its input: the final checkpoint makes the
                        // end durable before any sink publishes its last files.
                        let id = next_id;
                        let checkpoint = RestoredCheckpoint {
                            checkpoint_id: id,
                            trigger_ms: self.clock.now_millis(),
                            states: std::mem::take(&mut final_states),
                            path: PathBuf::new(),
                        };
                        streamsql_storage::write_framed_atomic(
                            &checkpoint_dir(&self.setup.job_dir, id).join(METADATA_FILE),
                            METADATA_MAGIC,
                            METADATA_VERSION,
                            &encode_metadata(&checkpoint),
                        )
                        .map_err(|e| {
                            EngineError::data(format!("the final checkpoint {id} failed: {e}"))
                        })?;
                        completed.push(id);
                        for tx in &self.all {
                            let _ = tx.try_send(TaskCommand::Complete(FINAL_CHECKPOINT));
                        }
                        for old in which_to_delete(&completed, config.num_retained.max(1)) {
                            let _ =
                                std::fs::remove_dir_all(checkpoint_dir(&self.setup.job_dir, old));
                            completed.retain(|c| *c != old);
                        }
                    }
                    self.abort_waiting_for(&mut pending, task, &mut failures, shared)?;
                    finished.insert(task);
                }
                Ok(TaskEvent::Finished(task)) => {
                    finished.insert(task);
                    self.abort_waiting_for(&mut pending, task, &mut failures, shared)?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Aborts the checkpoints still waiting for `task`, which ended: they can never complete.
    fn abort_waiting_for(
        &self,
        pending: &mut BTreeMap<u64, (PendingCheckpoint, BTreeMap<TaskKey, Vec<u8>>)>,
        task: TaskKey,
        failures: &mut FailureManager,
        shared: &JobShared,
    ) -> Result<()> {
        let waiting: Vec<u64> = pending
            .iter()
            .filter(|(_, (p, _))| p.not_yet_acknowledged().any(|k| *k == task))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            pending.remove(&id);
            self.fail_checkpoint(
                failures,
                id,
                CheckpointFailureReason::CheckpointDeclinedTaskClosing,
                shared,
            )?;
        }
        Ok(())
    }

    fn fail_checkpoint(
        &self,
        failures: &mut FailureManager,
        id: u64,
        reason: CheckpointFailureReason,
        shared: &JobShared,
    ) -> Result<()> {
        eprintln!("streamsql: checkpoint {id} failed: {}", reason.message());
        let _ = std::fs::remove_dir_all(checkpoint_dir(&self.setup.job_dir, id));
        match failures.on_failure(Some(id), CheckpointKind::Checkpoint, reason, false) {
            FailureVerdict::Continue => Ok(()),
            FailureVerdict::FailJob { message } => {
                shared.cancel.store(true, Ordering::SeqCst);
                Err(EngineError::Task { message })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_damage() {
        let mut states = BTreeMap::new();
        states.insert(
            TaskKey {
                operator_id: 7,
                subtask: 1,
            },
            vec![1, 2, 3],
        );
        states.insert(
            TaskKey {
                operator_id: 9,
                subtask: 0,
            },
            Vec::new(),
        );
        let c = RestoredCheckpoint {
            checkpoint_id: 42,
            trigger_ms: 1_700_000_000_000,
            states,
            path: PathBuf::from("x"),
        };
        let bytes = encode_metadata(&c);
        assert_eq!(decode_metadata(&bytes, Path::new("x")).unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(decode_metadata(&bytes[..cut], Path::new("x")).is_err());
        }
    }

    #[test]
    fn latest_checkpoint_falls_back_past_a_damaged_one() {
        let dir = std::env::temp_dir().join(format!("streamsql-chk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for id in [1u64, 2] {
            let c = RestoredCheckpoint {
                checkpoint_id: id,
                ..Default::default()
            };
            streamsql_storage::write_framed_atomic(
                &checkpoint_dir(&dir, id).join(METADATA_FILE),
                METADATA_MAGIC,
                METADATA_VERSION,
                &encode_metadata(&c),
            )
            .unwrap();
        }
        assert_eq!(latest_checkpoint(&dir).unwrap().unwrap().checkpoint_id, 2);
        std::fs::write(checkpoint_dir(&dir, 2).join(METADATA_FILE), b"torn").unwrap();
        assert_eq!(latest_checkpoint(&dir).unwrap().unwrap().checkpoint_id, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
