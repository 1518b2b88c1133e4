//! The record of a finished job, as Flink's job result store keeps it.
//!
//! A job that finishes discards its checkpoints (Flink discards the checkpoints of a FINISHED job
//! whatever the retention mode). Before it does, it writes `<job dir>/_job_result`, so that a
//! process killed between the end of the job and its exit is not taken for one killed mid-job:
//! `--resume latest` finds the record and reports that there is nothing to resume, instead of
//! starting the pipeline again from its beginning and writing its output a second time.
//!
//! The record is cleared, durably, when a new run of the job starts. A checkpoint newer than the
//! record's final checkpoint also outranks it, so a record that outlived its run by a crash at
//! the wrong moment never hides a later run's checkpoints.

use std::path::{Path, PathBuf};

use crate::codec;
use crate::error::{EngineError, Result};
use crate::runtime::checkpointing::{self, RestoredCheckpoint};

/// The record's file name inside the job directory.
pub const JOB_RESULT_FILE: &str = "_job_result";
const MAGIC: [u8; 4] = *b"SSJR";
const VERSION: u16 = 1;

/// What the record of a finished job holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobResult {
    /// The id of the job's last completed checkpoint (its final checkpoint), 0 when it had none.
    pub final_checkpoint: u64,
    /// When the job finished, in milliseconds since the epoch.
    pub finished_ms: i64,
}

/// Where `--resume latest` resumes a job.
#[derive(Debug)]
pub enum ResumePoint {
    /// From its newest intact checkpoint.
    Checkpoint(RestoredCheckpoint),
    /// Nowhere: the job's last run finished.
    Finished(JobResult),
    /// From the beginning: the job has no checkpoint and never finished.
    Fresh,
}

fn path(job_dir: &Path) -> PathBuf {
    job_dir.join(JOB_RESULT_FILE)
}

fn storage_error(e: streamsql_storage::StorageError) -> EngineError {
    EngineError::data(format!("job result: {e}"))
}

/// Records that the job finished, durably (the record is written before the checkpoints are
/// discarded).
pub fn write(job_dir: &Path, result: &JobResult) -> Result<()> {
    let mut payload = Vec::with_capacity(24);
    codec::put_version(&mut payload);
    codec::put_uvarint(&mut payload, result.final_checkpoint);
    codec::put_ivarint(&mut payload, result.finished_ms);
    // The durable write creates the job directory if need be.
    streamsql_storage::write_framed_atomic(&path(job_dir), MAGIC, VERSION, &payload)
        .map_err(storage_error)
}

/// The job's record, if it finished; a damaged record is an error.
pub fn read(job_dir: &Path) -> Result<Option<JobResult>> {
    let file = path(job_dir);
    let payload = match streamsql_storage::read_framed(&file, MAGIC, VERSION) {
        Ok(p) => p,
        Err(streamsql_storage::StorageError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        Err(e) => return Err(storage_error(e)),
    };
    let mut input = payload.as_slice();
    codec::check_version(&mut input)?;
    let final_checkpoint = codec::get_uvarint(&mut input)?;
    let finished_ms = codec::get_ivarint(&mut input)?;
    codec::expect_end(input)?;
    Ok(Some(JobResult {
        final_checkpoint,
        finished_ms,
    }))
}

/// Removes the record durably: a new run of the job starts.
pub fn clear(job_dir: &Path) -> Result<()> {
    use streamsql_storage::file;
    if file::remove_file(&path(job_dir)).map_err(storage_error)? {
        file::sync_dir(job_dir).map_err(storage_error)?;
    }
    Ok(())
}

/// Where `--resume latest` resumes the job of `job_dir`: its newest intact checkpoint (falling
/// back to older ones when the newest is damaged), unless the job finished after it.
pub fn resume_point(job_dir: &Path) -> Result<ResumePoint> {
    let finished = read(job_dir)?;
    let newest = checkpointing::completed_checkpoints(job_dir)?
        .first()
        .map(|(id, _)| *id);
    if let Some(result) = finished {
        // Checkpoints left beside the record are those the finished job was discarding when it
        // stopped; only a newer one belongs to a later run.
        if newest.is_none_or(|id| id <= result.final_checkpoint) {
            return Ok(ResumePoint::Finished(result));
        }
    }
    Ok(match checkpointing::latest_checkpoint(job_dir)? {
        Some(c) => ResumePoint::Checkpoint(c),
        None => ResumePoint::Fresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_job_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "streamsql-job-result-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_checkpoint(job_dir: &Path, id: u64) {
        let checkpoint = RestoredCheckpoint {
            checkpoint_id: id,
            trigger_ms: 1,
            states: Default::default(),
            path: PathBuf::new(),
            is_savepoint: false,
            ..RestoredCheckpoint::default()
        };
        checkpointing::write_checkpoint_metadata(job_dir, &checkpoint).unwrap();
    }

    #[test]
    fn round_trip_clear_and_damage() {
        let d = temp_job_dir("rt");
        assert_eq!(read(&d).unwrap(), None);
        let r = JobResult {
            final_checkpoint: 12,
            finished_ms: 1_700_000_000_123,
        };
        write(&d, &r).unwrap();
        assert_eq!(read(&d).unwrap(), Some(r));
        let mut bytes = std::fs::read(path(&d)).unwrap();
        bytes[7] ^= 1;
        std::fs::write(path(&d), &bytes).unwrap();
        assert!(read(&d).is_err(), "a damaged record is refused");
        clear(&d).unwrap();
        clear(&d).unwrap();
        assert_eq!(read(&d).unwrap(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_finished_job_has_nothing_to_resume_until_a_later_run_checkpoints() {
        let d = temp_job_dir("resume");
        assert!(matches!(resume_point(&d).unwrap(), ResumePoint::Fresh));
        write_checkpoint(&d, 3);
        assert!(matches!(
            resume_point(&d).unwrap(),
            ResumePoint::Checkpoint(c) if c.checkpoint_id == 3
        ));
        // The job finished with checkpoint 3 and was killed while discarding it.
        let r = JobResult {
            final_checkpoint: 3,
            finished_ms: 5,
        };
        write(&d, &r).unwrap();
        assert!(matches!(resume_point(&d).unwrap(), ResumePoint::Finished(f) if f == r));
        // A later run's checkpoint outranks the record even if it was never cleared.
        write_checkpoint(&d, 4);
        assert!(matches!(
            resume_point(&d).unwrap(),
            ResumePoint::Checkpoint(c) if c.checkpoint_id == 4
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
