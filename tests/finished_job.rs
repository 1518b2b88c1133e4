//! A finished job discards its checkpoints (as Flink does) after recording that it finished, so
//! that `--resume latest` after its end, including after a process killed between the end of the
//! job and its exit, does not run the pipeline again and duplicate its committed output.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROWS: usize = 2_000;

fn prepare(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("streamsql-finished-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("input")).expect("input dir");
    let mut text = String::new();
    for id in 0..ROWS {
        let _ = writeln!(text, "{id},{}", id % 10);
    }
    std::fs::write(dir.join("input/part-0.csv"), text).expect("input");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '20 ms';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'parallelism.default' = '1';
CREATE TABLE src (id BIGINT, k INT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/input', 'format' = 'csv');
CREATE TABLE evens (id BIGINT, k INT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_evens', 'format' = 'csv');
CREATE TABLE copy (id BIGINT, k INT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_copy', 'format' = 'csv');
EXECUTE STATEMENT SET BEGIN
INSERT INTO copy SELECT id, k FROM src;
INSERT INTO evens SELECT id, k FROM src WHERE id % 2 = 0;
END;
",
        dir = dir.display()
    );
    std::fs::write(dir.join("p.sql"), sql).expect("pipeline");
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(dir.join("p.sql"))
        .args(args)
        .output()
        .expect("streamsql runs");
    assert!(
        out.status.success(),
        "streamsql run {args:?} succeeds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The job directory (`checkpoints/<job-id>`) and its entries, sorted.
fn job_dir_entries(dir: &Path) -> (PathBuf, Vec<String>) {
    let job = std::fs::read_dir(dir.join("checkpoints"))
        .expect("the checkpoint directory exists")
        .flatten()
        .next()
        .expect("one job directory")
        .path();
    let mut names: Vec<String> = std::fs::read_dir(&job)
        .expect("job dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (job, names)
}

#[test]
fn resume_latest_after_the_job_finished_runs_nothing_again() {
    let dir = prepare("resume");
    run(&dir, &[]);
    let copy = common::committed_rows(&dir.join("out_copy"));
    assert_eq!(copy.len(), ROWS);
    let (job, names) = job_dir_entries(&dir);
    assert_eq!(
        names,
        vec!["_checkpoint_stats.json", "_job_result"],
        "the finished job discarded its checkpoints and recorded its end"
    );

    // Resuming the finished job writes nothing and says why.
    let out = run(&dir, &["--resume", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the last run of this pipeline finished")
            && stderr.contains("nothing to resume"),
        "{stderr}"
    );
    assert_eq!(common::committed_rows(&dir.join("out_copy")), copy);

    // A process killed while discarding the checkpoints of its finished job: one is left beside
    // the record. It is older than the end of the job, so nothing is resumed from it either.
    let second = prepare("killed-while-discarding");
    let mut interrupted = None;
    for _ in 0..20 {
        // Keep the newest checkpoint while the job runs, as a kill during discarding would.
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamsql"))
            .arg("run")
            .arg(second.join("p.sql"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts");
        let mut saved = None;
        while child.try_wait().expect("status").is_none() {
            if let Some(chk) = common::newest_checkpoint(&second.join("checkpoints")) {
                let copy_to = second.join("saved-chk");
                let _ = std::fs::remove_dir_all(&copy_to);
                if copy_dir(&chk, &copy_to).is_ok() {
                    saved = Some((chk, copy_to));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if let Some(s) = saved {
            interrupted = Some(s);
            break;
        }
        let _ = std::fs::remove_dir_all(second.join("out_copy"));
        let _ = std::fs::remove_dir_all(second.join("out_evens"));
        let _ = std::fs::remove_dir_all(second.join("checkpoints"));
    }
    let (chk, saved) = interrupted.expect("a checkpoint was seen while the job ran");
    let committed = common::committed_rows(&second.join("out_copy"));
    assert_eq!(committed.len(), ROWS);
    std::fs::rename(&saved, &chk).expect("put the checkpoint back");
    let out = run(&second, &["--resume", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to resume"), "{stderr}");
    assert_eq!(common::committed_rows(&second.join("out_copy")), committed);

    // A new run without --resume starts the pipeline again and clears the record when it starts.
    run(&dir, &[]);
    assert_eq!(
        common::committed_rows(&dir.join("out_copy")).len(),
        2 * ROWS
    );
    assert!(
        job.join("_job_result").is_file(),
        "the new run finished too"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&second);
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
