//! Savepoints of a running job, end to end through the binary: `streamsql savepoint` and
//! `streamsql stop` reach the job started by `streamsql run` through its control socket; a
//! stop-with-savepoint ends the job, and the savepoint, moved elsewhere, resumes it with exactly
//! the output of an uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use streamsql::engine::checkpoint::stats::{stats_file, CheckpointStatsTracker, JsonValue};

/// A hang guard: a broken build fails instead of waiting forever.
const PATIENCE: Duration = Duration::from_secs(60);

fn pipeline(dir: &Path, savepoint_dir: bool) -> String {
    let savepoints = if savepoint_dir {
        format!(
            "SET 'execution.checkpointing.savepoint-dir' = '{}/savepoints';\n",
            dir.display()
        )
    } else {
        String::new()
    };
    format!(
        "SET 'execution.checkpointing.interval' = '50 ms';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
{savepoints}SET 'parallelism.default' = '2';
SET 'state.storage.fs.memory-threshold' = '0 b';
CREATE TABLE gen (
  id BIGINT,
  ts AS TO_TIMESTAMP_LTZ(id * 10, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'datagen', 'rows-per-second' = '2500', 'number-of-rows' = '6000',
        'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '5999');
CREATE TABLE per_window (k BIGINT, window_start TIMESTAMP(3), n BIGINT, s BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_windows', 'format' = 'csv');
CREATE TABLE sampled (id BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_sampled', 'format' = 'csv');
EXECUTE STATEMENT SET BEGIN
INSERT INTO per_window
  SELECT id % 7, window_start, COUNT(*), SUM(id)
  FROM TABLE(TUMBLE(TABLE gen, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end, id % 7;
INSERT INTO sampled SELECT id FROM gen WHERE id % 3 = 0;
END;
",
        dir = dir.display()
    )
}

fn prepare(name: &str, savepoint_dir: bool) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("streamsql-savepoint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("p.sql"), pipeline(&dir, savepoint_dir)).expect("pipeline");
    dir
}

fn streamsql(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.args(args).arg(dir.join("p.sql"));
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("streamsql runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The savepoint directory `streamsql savepoint` / `stop` printed.
fn printed_path(out: &Output) -> PathBuf {
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in {text:?}; stderr: {}", stderr(out)));
    PathBuf::from(path)
}

/// The job directory under `checkpoints/`, once the job has one with a completed checkpoint.
fn job_dir_with_checkpoint(dir: &Path) -> Option<PathBuf> {
    let job = std::fs::read_dir(dir.join("checkpoints"))
        .ok()?
        .flatten()
        .next()?
        .path();
    let has = std::fs::read_dir(&job)
        .ok()?
        .flatten()
        .any(|e| e.path().join("_metadata").is_file());
    has.then_some(job)
}

fn committed(dir: &Path) -> (Vec<String>, Vec<String>) {
    (
        common::committed_rows(&dir.join("out_windows")),
        common::committed_rows(&dir.join("out_sampled")),
    )
}

#[test]
fn stop_with_savepoint_then_resume_from_the_moved_savepoint_is_exact() {
    let reference = prepare("reference", true);
    let out = output(streamsql(&["run"], &reference));
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = committed(&reference);
    assert_eq!(expected.1.len(), 2000);

    let dir = prepare("stopped", true);
    let mut job = streamsql(&["run"], &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let started = Instant::now();
    let job_dir = loop {
        if let Some(j) = job_dir_with_checkpoint(&dir) {
            break j;
        }
        assert!(started.elapsed() < PATIENCE, "no checkpoint completed");
        assert!(
            job.try_wait().expect("status").is_none(),
            "the job ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    };

    // An intermediate savepoint: the job goes on.
    let out = output(streamsql(&["savepoint"], &dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let intermediate = printed_path(&out);
    assert!(intermediate.starts_with(dir.join("savepoints")));
    let name = intermediate
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let job_id = job_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("savepoint-{}-", &job_id[..6])) && name.len() == 10 + 6 + 1 + 12,
        "Flink's savepoint-<jobid6>-<random> name: {name}"
    );
    assert!(intermediate.join("_metadata").is_file());
    assert!(
        job.try_wait().expect("status").is_none(),
        "the job still runs"
    );

    // Stop with a savepoint in an explicit directory: the job ends.
    let elsewhere = dir.join("explicit");
    let out = output(streamsql(
        &["stop", "--savepointPath", elsewhere.to_str().unwrap()],
        &dir,
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let stopped = printed_path(&out);
    assert!(stopped.starts_with(&elsewhere));
    let status = job.wait().expect("ends");
    assert!(status.success(), "a stopped job exits 0");
    let partial = committed(&dir);
    assert!(
        partial.1.len() < expected.1.len(),
        "the job stopped before its end ({} of {} rows)",
        partial.1.len(),
        expected.1.len()
    );

    // The statistics know both savepoints.
    let json: JsonValue = CheckpointStatsTracker::load(&stats_file(&job_dir))
        .expect("statistics")
        .to_rest_json();
    assert_eq!(
        json["latest"]["savepoint"]["external_path"],
        stopped.display().to_string()
    );
    let types: Vec<String> = json["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            h["checkpoint_type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(types.iter().any(|t| t == "SAVEPOINT"), "{types:?}");
    assert!(types.iter().any(|t| t == "SYNC_SAVEPOINT"), "{types:?}");

    // Self-contained: moved, with everything else about the job deleted, it still restores.
    let moved =
        std::env::temp_dir().join(format!("streamsql-savepoint-moved-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&stopped, &moved).expect("move the savepoint");
    std::fs::remove_dir_all(dir.join("checkpoints")).expect("delete the checkpoints");
    std::fs::remove_dir_all(&elsewhere).expect("delete the rest");
    std::fs::remove_dir_all(dir.join("savepoints")).expect("delete the other savepoint");
    // Canonical: taken with the sled backend, restored into the hashmap one.
    let out = output(streamsql(
        &[
            "run",
            "-s",
            moved.to_str().unwrap(),
            "-D",
            "state.backend.type=hashmap",
        ],
        &dir,
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(committed(&dir), expected, "nothing lost, nothing twice");
    let _ = std::fs::remove_dir_all(&moved);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&reference);
}

#[test]
fn a_savepoint_request_without_a_job_or_a_directory_is_refused_clearly() {
    // No directory configured and none given: Flink's message.
    let dir = prepare("nodir", false);
    let out = output(streamsql(&["savepoint"], &dir));
    assert!(!out.status.success());
    let text = flat(&stderr(&out));
    assert!(
        text.contains("Config key [execution.checkpointing.savepoint-dir] is not set"),
        "{text}"
    );
    // A directory, but no running job.
    let mut cmd = streamsql(&["savepoint"], &dir);
    cmd.arg(dir.join("sp"));
    let out = output(cmd);
    assert!(!out.status.success());
    let text = flat(&stderr(&out));
    assert!(text.contains("no running job"), "{text}");
    assert!(!stderr(&out).contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A diagnostic as one line: miette wraps long messages inside its frame.
fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
        .replace("- ", "-")
}
