//! Restoring one subtask of a job from a checkpoint taken at another parallelism.
//!
//! The runtime gives every subtask of an operator whose parallelism changed the states of all its
//! old subtasks ([`RescaledRestore`]); this module picks what the subtask takes, as
//! `crate::checkpoint::rescale` decides: the keyed state of every old subtask whose key groups
//! overlap its own (the store keeps only its own key groups), the operator state its
//! [`crate::checkpoint::rescale::StateDistribution`] assigns it, and for a source its share of
//! every old position.
//!
//! Invariant: an old subtask's keyed-state files are read by every new subtask that owns one of
//! its key groups, and each key group is restored by exactly one new subtask, so no keyed entry
//! is lost or restored twice.

use std::path::Path;

use super::subtask_state::SubtaskState;
use crate::checkpoint::rescale::{assigned_subtasks, overlapping_subtasks};
use crate::connectors::Source;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, TaskContext};

/// The states of every old subtask of one operator restored at another parallelism.
#[derive(Debug)]
pub(crate) struct RescaledRestore {
    /// Encoded [`SubtaskState`]s by old subtask index; `None` for a subtask without state.
    pub old: Vec<Option<Vec<u8>>>,
    /// The number of key groups, the same before and after.
    pub max_parallelism: usize,
}

impl RescaledRestore {
    /// Decodes old subtask `j`'s state (empty when it has none).
    fn state(&self, j: usize, ctx: &TaskContext, checkpoint_dir: &Path) -> Result<SubtaskState> {
        match self.old.get(j).and_then(Option::as_deref) {
            Some(bytes) => SubtaskState::decode(bytes).map_err(|e| {
                EngineError::data(format!(
                    "cannot restore {} from '{}' (state of former subtask {j}): {e}",
                    ctx.thread_name(),
                    checkpoint_dir.display()
                ))
            }),
            None => Ok(SubtaskState::empty()),
        }
    }
}

/// Restores a freshly created source from the positions of every old subtask.
pub(crate) fn restore_source(
    source: &mut dyn Source,
    ctx: &TaskContext,
    restore: &RescaledRestore,
    checkpoint_dir: &Path,
) -> Result<()> {
    let positions = (0..restore.old.len())
        .map(|j| restore.state(j, ctx, checkpoint_dir).map(|s| s.operator))
        .collect::<Result<Vec<_>>>()?;
    source.restore_rescaled(&positions).map_err(|e| {
        EngineError::data(format!(
            "cannot restore {} at parallelism {} from '{}': {e}",
            ctx.thread_name(),
            ctx.parallelism,
            checkpoint_dir.display()
        ))
    })
}

/// Fails when an old subtask's state holds in-flight data of an unaligned checkpoint: replaying
/// it needs the old channel layout.
fn refuse_in_flight(state: &SubtaskState, ctx: &TaskContext, checkpoint_dir: &Path) -> Result<()> {
    if state.in_flight.is_empty() {
        return Ok(());
    }
    Err(EngineError::data(format!(
        "cannot restore {} at parallelism {} from '{}': the checkpoint is unaligned and holds in-flight data, which restores only at the parallelism it was taken with (take a savepoint, which is always aligned, to rescale)",
        ctx.thread_name(),
        ctx.parallelism,
        checkpoint_dir.display()
    )))
}

/// Restores a freshly created operator: its operator state from the old subtasks its
/// distribution assigns it, then the keyed state of its key groups from every old subtask that
/// held some of them. Returns the bytes of state read.
pub(crate) fn restore_operator(
    op: &mut dyn Operator,
    ctx: &TaskContext,
    restore: &RescaledRestore,
    checkpoint_dir: &Path,
    local_job_dir: Option<&Path>,
) -> Result<u64> {
    let old_parallelism = restore.old.len();
    let assigned = assigned_subtasks(
        op.state_distribution(),
        ctx.subtask_index,
        ctx.parallelism,
        old_parallelism,
        restore.max_parallelism,
    );
    let operator_states = assigned
        .iter()
        .map(|&j| {
            let state = restore.state(j, ctx, checkpoint_dir)?;
            refuse_in_flight(&state, ctx, checkpoint_dir)?;
            Ok(state.operator)
        })
        .collect::<Result<Vec<_>>>()?;
    let blobs: Vec<&[u8]> = operator_states.iter().map(Vec::as_slice).collect();
    op.restore_rescaled(&blobs).map_err(|e| {
        EngineError::data(format!(
            "cannot restore {} at parallelism {} from '{}': {e}",
            ctx.thread_name(),
            ctx.parallelism,
            checkpoint_dir.display()
        ))
    })?;
    let mut bytes: u64 = operator_states.iter().map(|s| s.len() as u64).sum();
    let mut keyed = Vec::new();
    for j in overlapping_subtasks(
        ctx.subtask_index,
        ctx.parallelism,
        old_parallelism,
        restore.max_parallelism,
    ) {
        let state = restore.state(j, ctx, checkpoint_dir)?;
        refuse_in_flight(&state, ctx, checkpoint_dir)?;
        bytes += state
            .checkpointed_size()
            .saturating_sub(state.operator.len() as u64);
        // Each old subtask's snapshot (or chain) keeps its own key-group range; the store
        // replays them one after the other and keeps the groups this subtask owns.
        keyed.extend(state.load_keyed_preferring(checkpoint_dir, local_job_dir)?);
    }
    if keyed.is_empty() {
        return Ok(bytes);
    }
    let Some(store) = ctx.state.store.as_ref() else {
        return Err(EngineError::internal(
            "a subtask with keyed state to restore has no state store",
        ));
    };
    store.restore(keyed)?;
    store.scan(&mut |name, _group, key, value| op.restore_keyed(name, key, value))?;
    op.keyed_restored()?;
    Ok(bytes)
}
