//! `execution.checkpointing.mode = AT_LEAST_ONCE` end to end: barriers are not aligned, so a
//! restored job may count a record twice, but it never loses one. A job is killed after a
//! checkpoint and resumed with `--resume latest`; every input row must still reach the output.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 40_000;

fn prepare(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamsql-alo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("input")).expect("input dir");
    // One file per source subtask, so both inputs of the aggregation carry barriers.
    let mut texts = [String::new(), String::new()];
    for id in 0..ROWS {
        let ms = 3_600_000 + id as i64 * 10;
        let (s, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
        let _ = writeln!(
            texts[id % 2],
            "{id},{},2024-01-01 {:02}:{:02}:{:02}.{milli:03}",
            id % 13,
            s / 3600,
            (s / 60) % 60,
            s % 60
        );
    }
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(dir.join(format!("input/part-{i}.csv")), t).expect("input");
    }
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '20 ms';
SET 'execution.checkpointing.mode' = 'AT_LEAST_ONCE';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'parallelism.default' = '2';
CREATE TABLE events (id BIGINT, k INT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/input', 'format' = 'csv');
CREATE TABLE per_window (k INT, window_start TIMESTAMP(3), n BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_windows', 'format' = 'csv');
CREATE TABLE copied (id BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_copied', 'format' = 'csv');
EXECUTE STATEMENT SET BEGIN
INSERT INTO per_window SELECT k, window_start, COUNT(*)
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end, k;
INSERT INTO copied SELECT id FROM events;
END;
",
        dir = dir.display()
    );
    std::fs::write(dir.join("p.sql"), sql).expect("pipeline");
    dir
}

fn streamsql(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.arg("run").arg(dir.join("p.sql"));
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// The (k, window_start) groups of the windowed output and their counts, summed per group.
fn windows(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for row in common::committed_rows(&dir.join("out_windows")) {
        let (group, n) = row.rsplit_once(',').expect("k,window_start,n");
        *out.entry(group.to_string()).or_insert(0) += n.parse::<u64>().expect("count");
    }
    out
}

#[test]
fn at_least_once_checkpoints_lose_nothing_across_a_kill_and_resume() {
    let reference = prepare("reference");
    assert!(streamsql(&reference).status().expect("runs").success());
    let expected_ids: BTreeSet<String> = common::committed_rows(&reference.join("out_copied"))
        .into_iter()
        .collect();
    assert_eq!(expected_ids.len(), ROWS);
    let expected_windows = windows(&reference);

    // Kill a run once it has a checkpoint (retrying if a fast machine finishes first).
    let mut resumed = false;
    for attempt in 0..10 {
        let dir = prepare(&format!("killed-{attempt}"));
        let mut child = streamsql(&dir).spawn().expect("starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut killed = false;
        while Instant::now() < deadline {
            if child.try_wait().expect("status").is_some() {
                break;
            }
            if common::has_checkpoint(&dir.join("checkpoints")) {
                let _ = child.kill();
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.wait();
        if !killed {
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        let status = streamsql(&dir)
            .args(["--resume", "latest"])
            .status()
            .expect("resumes");
        assert!(status.success());
        let ids: Vec<String> = common::committed_rows(&dir.join("out_copied"));
        let distinct: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(distinct, expected_ids, "no row lost");
        // Counts may include a row twice (unaligned barriers), never miss one.
        let got = windows(&dir);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected_windows.keys().collect::<Vec<_>>(),
            "every window group is there"
        );
        for (group, n) in &expected_windows {
            assert!(got[group] >= *n, "window {group}: {} < {n}", got[group]);
        }
        resumed = true;
        let _ = std::fs::remove_dir_all(&dir);
        break;
    }
    assert!(resumed, "no run was killed after a checkpoint");
    let _ = std::fs::remove_dir_all(&reference);
}
