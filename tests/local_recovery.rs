//! Local recovery (`execution.state-recovery.from-local`): every keyed-state file of a periodic
//! checkpoint also has a task-local copy under `<local dir>/<job id>/`, and a resumed job reads
//! that copy first. With the checkpoint directory's keyed-state files deleted, a resume still
//! finishes with an uninterrupted run's output, so it read nothing of them; with the local copy
//! damaged, it says so on stderr and restores from the checkpoint directory, again exactly. Local
//! copies of subsumed checkpoints are removed as checkpoints complete, and none is written beyond
//! `execution.checkpointing.local-backup.max-size`. The same holds for the files of incremental
//! chains.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 300_000;

fn pipeline(dir: &Path, extra: &str) -> String {
    format!(
        "{extra}
SET 'execution.checkpointing.interval' = '30 ms';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'state.storage.fs.memory-threshold' = '0 b';
SET 'execution.state-recovery.from-local' = 'true';
SET 'execution.checkpointing.local-backup.dirs' = '{dir}/local';
SET 'parallelism.default' = '2';
CREATE TABLE events (
  id BIGINT,
  k INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{dir}/input', 'format' = 'csv');
CREATE TABLE per_window (k INT, window_start TIMESTAMP(3), n BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out', 'format' = 'csv');
INSERT INTO per_window
  SELECT k, window_start, COUNT(*)
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end, k;
",
        dir = dir.display()
    )
}

fn prepare(root: &Path, name: &str, extra: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    common::write_timed_input(&dir, ROWS);
    std::fs::write(dir.join("p.sql"), pipeline(&dir, extra)).expect("pipeline");
    dir
}

fn streamsql(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.arg("run").arg(dir.join("p.sql"));
    cmd
}

/// The visible files of `dir`, by name.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The files of `chk/taskowned/`, by name.
fn state_files(chk: &Path) -> Vec<String> {
    file_names(&chk.join("taskowned"))
}

fn has_taskowned_files(chk: &Path) -> bool {
    !state_files(chk).is_empty()
}

/// The chain files of the job's `shared/` directory, by name.
fn shared_files(job: &Path) -> Vec<String> {
    file_names(&job.join("shared"))
}

fn has_shared_files(chk: &Path) -> bool {
    chk.parent()
        .is_some_and(|job| !shared_files(job).is_empty())
}

fn checkpoint_id(chk: &Path) -> u64 {
    chk.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("chk-"))
        .and_then(|n| n.parse().ok())
        .expect("a chk-<n> directory")
}

/// The local copy of `chk` (`<dir>/local/<job id>/chk-<n>`).
fn local_copy(dir: &Path, chk: &Path) -> PathBuf {
    let job = chk.parent().and_then(Path::file_name).expect("a job dir");
    dir.join("local")
        .join(job)
        .join(chk.file_name().expect("a name"))
}

/// The ids of the `chk-<n>` directories among the local copies of the job.
fn local_checkpoints(dir: &Path, chk: &Path) -> Vec<u64> {
    let job = local_copy(dir, chk)
        .parent()
        .expect("a job dir")
        .to_path_buf();
    let mut ids: Vec<u64> = std::fs::read_dir(job)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Runs the pipeline in a fresh directory and kills it once checkpoint `min_id` or a later one
/// completed with keyed state in files (`has_files` of the checkpoint); retries a few times, as a
/// fast machine may finish first. Returns the directory and the newest checkpoint after the kill.
fn killed_run(
    root: &Path,
    name: &str,
    min_id: u64,
    extra: &str,
    has_files: fn(&Path) -> bool,
) -> (PathBuf, PathBuf) {
    for attempt in 0..5 {
        let dir = prepare(root, &format!("{name}-{attempt}"), extra);
        let mut child = streamsql(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut found = false;
        while Instant::now() < deadline {
            if child.try_wait().expect("status").is_some() {
                break;
            }
            if let Some(chk) = common::newest_checkpoint(&dir.join("checkpoints")) {
                if checkpoint_id(&chk) >= min_id && has_files(&chk) {
                    found = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        if found {
            let chk = common::newest_checkpoint(&dir.join("checkpoints")).expect("a checkpoint");
            if has_files(&chk) {
                return (dir, chk);
            }
        }
    }
    panic!("no run was killed after checkpoint {min_id} with keyed state in files");
}

fn resume(dir: &Path) -> std::process::Output {
    let out = streamsql(dir)
        .args(["--resume", "latest"])
        .output()
        .expect("resumes");
    assert!(
        out.status.success(),
        "the resumed run succeeds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn recovery_reads_the_local_copy_and_falls_back_when_it_is_damaged() {
    let root = std::env::temp_dir().join(format!("streamsql-local-{}", std::process::id()));
    let reference = prepare(&root, "reference", "");
    let status = streamsql(&reference)
        .stdout(Stdio::null())
        .status()
        .expect("runs");
    assert!(status.success());
    let expected = common::committed_rows(&reference.join("out"));
    assert!(!expected.is_empty());
    assert!(
        std::fs::read_dir(reference.join("local"))
            .map(|d| d.flatten().next().is_none())
            .unwrap_or(true),
        "a finished job's local copies are gone with its checkpoints"
    );

    // (a) Many checkpoints, then a kill: only the newest local copies are left, and they alone
    // restore the keyed state.
    let (dir, chk) = killed_run(&root, "local", 8, "", has_taskowned_files);
    let newest = checkpoint_id(&chk);
    let local = local_copy(&dir, &chk);
    let files = state_files(&chk);
    assert_eq!(
        state_files(&local),
        files,
        "every state file has a local copy"
    );
    let kept = local_checkpoints(&dir, &chk);
    assert!(
        // Completions reach the tasks a little after `_metadata` is written: allow some lag.
        kept.iter().all(|&id| id + 4 >= newest),
        "subsumed local copies are removed: {kept:?} left after checkpoint {newest}"
    );
    for f in &files {
        std::fs::remove_file(chk.join("taskowned").join(f)).expect("remove a state file");
    }
    assert!(chk.join("_metadata").is_file());
    let out = resume(&dir);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("local copy"),
        "the local copies verified: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::committed_rows(&dir.join("out")), expected);

    // (b) A damaged local copy is detected and the checkpoint directory's file is read.
    let (dir, chk) = killed_run(&root, "damaged", 1, "", has_taskowned_files);
    let local = local_copy(&dir, &chk);
    let files = state_files(&local);
    assert!(!files.is_empty(), "the state files have local copies");
    for f in &files {
        let path = local.join("taskowned").join(f);
        let mut bytes = std::fs::read(&path).expect("a local copy");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).expect("damage it");
    }
    let out = resume(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("local copy") && stderr.contains("restoring from the checkpoint directory"),
        "the damage is reported: {stderr}"
    );
    assert_eq!(common::committed_rows(&dir.join("out")), expected);

    // (c) With a budget smaller than any file, no copy is written and recovery reads the
    // checkpoint directory.
    let budget = "SET 'execution.checkpointing.local-backup.max-size' = '1 b';";
    let (dir, chk) = killed_run(&root, "budget", 1, budget, has_taskowned_files);
    let local_job = local_copy(&dir, &chk)
        .parent()
        .expect("a job dir")
        .to_path_buf();
    for id in local_checkpoints(&dir, &chk) {
        let copies = state_files(&local_job.join(format!("chk-{id}")));
        assert!(
            copies.is_empty(),
            "no local copy fits in the budget: {copies:?}"
        );
    }
    resume(&dir);
    assert_eq!(common::committed_rows(&dir.join("out")), expected);

    // (d) Incremental checkpoints: the chain's files have local copies in `shared/`, which alone
    // restore the keyed state.
    let incremental = "SET 'execution.checkpointing.incremental' = 'true';";
    let (dir, chk) = killed_run(&root, "incremental", 3, incremental, has_shared_files);
    let job = chk.parent().expect("a job dir");
    let local_job = local_copy(&dir, &chk)
        .parent()
        .expect("a job dir")
        .to_path_buf();
    let chain = shared_files(job);
    let copies = shared_files(&local_job);
    // Which files the newest chain uses is for `_metadata` to say; that the resume below reads
    // none of the checkpoint directory's is the proof that they all have verified copies.
    assert!(
        !copies.is_empty(),
        "chain files have local copies: {chain:?}"
    );
    for f in &chain {
        std::fs::remove_file(job.join("shared").join(f)).expect("remove a chain file");
    }
    let out = resume(&dir);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("local copy"),
        "the local copies verified: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::committed_rows(&dir.join("out")), expected);
    let _ = std::fs::remove_dir_all(&root);
}
