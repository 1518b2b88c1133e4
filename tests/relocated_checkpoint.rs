//! A checkpoint directory is self-contained: keyed state written to `taskowned/` files is named
//! relative to it, so a `chk-<n>` directory moved elsewhere still restores, and the resumed job's
//! committed output equals an uninterrupted run's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 40_000;

fn pipeline(dir: &Path) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '30 ms';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'execution.checkpointing.num-retained' = '1000';
SET 'state.storage.fs.memory-threshold' = '0 b';
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

fn prepare(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    common::write_timed_input(&dir, ROWS);
    std::fs::write(dir.join("p.sql"), pipeline(&dir)).expect("pipeline");
    dir
}

fn committed(dir: &Path) -> Vec<String> {
    common::committed_rows(dir)
}

fn streamsql(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.arg("run").arg(dir.join("p.sql"));
    cmd
}

fn has_state_file(chk: &Path) -> bool {
    std::fs::read_dir(chk.join("taskowned"))
        .map(|d| d.flatten().next().is_some())
        .unwrap_or(false)
}

#[test]
fn a_moved_checkpoint_directory_restores_exactly() {
    let root = std::env::temp_dir().join(format!("streamsql-relocate-{}", std::process::id()));
    let reference = prepare(&root, "reference");
    let status = streamsql(&reference)
        .stdout(Stdio::null())
        .status()
        .expect("runs");
    assert!(status.success());
    let expected = committed(&reference.join("out"));
    assert!(!expected.is_empty());

    // Kill the job once a checkpoint with keyed state in a file exists; retry a few times, as a
    // fast machine may finish first.
    let mut moved = None;
    for attempt in 0..5 {
        let dir = prepare(&root, &format!("run-{attempt}"));
        let mut child = streamsql(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = None;
        while Instant::now() < deadline {
            if child.try_wait().expect("status").is_some() {
                break;
            }
            if let Some(chk) = common::newest_checkpoint(&dir.join("checkpoints")) {
                if has_state_file(&chk) {
                    found = Some(chk);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        let Some(_) = found else { continue };
        // The newest checkpoint after the kill: the one a resume must use for the sink.
        let chk = common::newest_checkpoint(&dir.join("checkpoints")).expect("a checkpoint");
        let target = root.join(format!("elsewhere-{attempt}"));
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).expect("target");
        let relocated = target.join("saved");
        std::fs::rename(&chk, &relocated).expect("move the checkpoint");
        // Nothing of the original location is left to read from.
        std::fs::remove_dir_all(dir.join("checkpoints")).expect("remove the originals");
        moved = Some((dir, relocated));
        break;
    }
    let (dir, relocated) = moved.expect("a run was killed after a file-backed checkpoint");
    assert!(
        has_state_file(&relocated),
        "keyed state sits in taskowned/ files"
    );
    let out = streamsql(&dir)
        .arg("-s")
        .arg(&relocated)
        .output()
        .expect("resumes");
    assert!(
        out.status.success(),
        "the resumed run succeeds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(committed(&dir.join("out")), expected);
    let _ = std::fs::remove_dir_all(&root);
}
