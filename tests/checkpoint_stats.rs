//! Checkpoint monitoring end to end: a checkpointed pipeline run through the binary leaves
//! `_checkpoint_stats.json` in its job's checkpoint directory, `streamsql checkpoints` reads it
//! back (as text and as the body of Flink's `GET /jobs/:jobid/checkpoints`), and a resumed run
//! keeps the earlier counts and history and records the restore.

use std::path::{Path, PathBuf};
use std::process::Command;

use streamsql_engine::checkpoint::stats::JsonValue as Value;

/// About two seconds of input (100 rows at 50 rows per second), a checkpoint every 20 ms, with
/// the given `execution.checkpointing.externalized-checkpoint-retention`. The sink runs at
/// another parallelism than the source, so that the job has several tasks (at the same
/// parallelism it would run in the source's task).
fn pipeline(checkpoints: &Path, retention: &str) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '20 ms';
SET 'state.checkpoints.dir' = '{}';
SET 'execution.checkpointing.externalized-checkpoint-retention' = '{retention}';
CREATE TABLE src (x BIGINT) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '100',
  'rows-per-second' = '50',
  'fields.x.kind' = 'sequence', 'fields.x.start' = '1', 'fields.x.end' = '100'
);
CREATE TABLE sink (x BIGINT) WITH ('connector' = 'blackhole', 'sink.parallelism' = '2');
INSERT INTO sink SELECT x FROM src;
",
        checkpoints.display()
    )
}

fn streamsql() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamsql"))
}

fn run_pipeline(sql: &Path, resume: bool) {
    let mut cmd = streamsql();
    cmd.arg("run").arg(sql);
    if resume {
        cmd.args(["--resume", "latest"]);
    }
    let out = cmd.output().expect("streamsql starts");
    assert!(
        out.status.success(),
        "the pipeline runs (resume: {resume}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the pipeline, lets it take a few checkpoints, and cancels it with SIGINT.
fn run_and_cancel(sql: &Path) {
    let mut child = streamsql()
        .arg("run")
        .arg(sql)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("streamsql starts");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let status = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(
        child.wait().expect("exits").success(),
        "a cancelled job exits 0"
    );
}

/// The completed checkpoint directories of a job directory.
fn checkpoint_dirs(job: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(job)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").is_file())
        .collect()
}

/// The one job directory under the checkpoint directory.
fn job_dir(checkpoints: &Path) -> PathBuf {
    let jobs: Vec<PathBuf> = std::fs::read_dir(checkpoints)
        .expect("the checkpoint directory exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(jobs.len(), 1, "one job directory: {jobs:?}");
    jobs[0].clone()
}

fn checkpoints_cmd(job: &Path, json: bool) -> String {
    let mut cmd = streamsql();
    cmd.arg("checkpoints").arg(job);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("streamsql starts");
    assert!(
        out.status.success(),
        "streamsql checkpoints succeeds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn stats_json(job: &Path) -> Value {
    checkpoints_cmd(job, true)
        .parse::<Value>()
        .expect("JSON output")
}

fn count(v: &Value, name: &str) -> u64 {
    v["counts"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{name} is a number: {v:#}"))
}

#[test]
fn a_checkpointed_run_and_its_resume_are_monitored() {
    let dir = std::env::temp_dir().join(format!("streamsql-ckstats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let checkpoints = dir.join("checkpoints");
    let sql = dir.join("p.sql");
    std::fs::write(&sql, pipeline(&checkpoints, "RETAIN_ON_CANCELLATION")).expect("pipeline");

    run_and_cancel(&sql);
    let job = job_dir(&checkpoints);
    let v = stats_json(&job);
    let completed = count(&v, "completed");
    assert!(completed >= 1, "at least one completed checkpoint: {v:#}");
    assert_eq!(count(&v, "restored"), 0, "{v:#}");
    assert_eq!(count(&v, "in_progress"), 0, "{v:#}");
    assert_eq!(
        count(&v, "total"),
        completed + count(&v, "failed"),
        "every triggered checkpoint ended: {v:#}"
    );

    let latest = &v["latest"]["completed"];
    assert_eq!(latest["status"], "COMPLETED", "{v:#}");
    assert_eq!(latest["checkpoint_type"], "CHECKPOINT", "{v:#}");
    let id = latest["id"].as_u64().expect("latest completed id");
    let path = latest["external_path"]
        .as_str()
        .expect("the latest completed checkpoint has an external path");
    assert!(
        path.ends_with(&format!("chk-{id}")),
        "external path {path} is the directory of checkpoint {id}"
    );
    // RETAIN_ON_CANCELLATION kept the newest checkpoint of the cancelled job.
    assert!(
        Path::new(path).join("_metadata").is_file(),
        "{path} holds the checkpoint"
    );
    assert!(latest["num_subtasks"].as_u64().unwrap_or(0) >= 2, "{v:#}");
    assert_eq!(
        latest["num_acknowledged_subtasks"], latest["num_subtasks"],
        "{v:#}"
    );

    let history = v["history"].as_array().expect("history is an array");
    assert!(!history.is_empty(), "{v:#}");
    let ids: Vec<u64> = history.iter().filter_map(|h| h["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {v:#}");
    assert!(
        ids.contains(&id),
        "the latest completed is in the history: {v:#}"
    );
    for field in [
        "checkpointed_size",
        "state_size",
        "end_to_end_duration",
        "alignment_buffered",
        "processed_data",
        "persisted_data",
    ] {
        let s = &v["summary"][field];
        for stat in ["min", "max", "avg"] {
            assert!(s[stat].is_number(), "summary.{field}.{stat}: {v:#}");
        }
    }
    assert!(v["latest"]["restored"].is_null(), "{v:#}");

    let text = checkpoints_cmd(&job, false);
    assert!(
        text.contains(&format!("Completed: {completed}")),
        "the text shows the completed count {completed}:\n{text}"
    );

    // The resumed run starts from that checkpoint and finishes.
    run_pipeline(&sql, true);
    assert!(
        checkpoint_dirs(&job).is_empty(),
        "a finished job's checkpoints are deleted, whatever the retention"
    );
    let after = stats_json(&job);
    assert_eq!(count(&after, "restored"), 1, "{after:#}");
    assert!(
        count(&after, "completed") >= completed,
        "counts survive the restart: {after:#}"
    );
    let restored = &after["latest"]["restored"];
    assert_eq!(restored["id"].as_u64(), Some(id), "{after:#}");
    assert_eq!(restored["is_savepoint"], false, "{after:#}");
    assert!(
        restored["external_path"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("chk-{id}"))),
        "{after:#}"
    );
    assert_eq!(count(&after, "in_progress"), 0, "{after:#}");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_default_retention_deletes_the_checkpoints_of_a_cancelled_job() {
    let dir = std::env::temp_dir().join(format!("streamsql-ckdel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let checkpoints = dir.join("checkpoints");
    let sql = dir.join("p.sql");
    std::fs::write(&sql, pipeline(&checkpoints, "NO_EXTERNALIZED_CHECKPOINTS")).expect("pipeline");
    run_and_cancel(&sql);
    let job = job_dir(&checkpoints);
    assert!(
        count(&stats_json(&job), "completed") >= 1,
        "checkpoints were taken"
    );
    assert!(
        checkpoint_dirs(&job).is_empty(),
        "and deleted when the job was cancelled"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
