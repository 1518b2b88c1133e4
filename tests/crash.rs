//! Crash test: a pipeline with a windowed aggregation and a stateless projection reads a file into
//! exactly-once filesystem sinks, with a checkpoint every 50 ms. A child process is killed with
//! SIGKILL at random moments and resumed with `--resume latest` each time; the committed output
//! must equal that of an uninterrupted run: nothing lost, nothing twice. Keyed state is always
//! written to snappy-compressed files in `taskowned/` (inline threshold 0), so a kill can land
//! while those files are being written.
//!
//! A third variant turns on unaligned checkpoints (barriers overtake queued batches, which are
//! persisted as in-flight data and replayed on restore), incremental checkpoints and local
//! recovery together: the windowed aggregation reads a hash edge, so its task takes unaligned
//! checkpoints.
//!
//! The seed is printed; `CRASH_SEED=<n>` replays a run, `CRASH_KILLS=<n>` changes the number of
//! kills (default 50).

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROWS: usize = 60_000;

/// Which checkpointing features a crash loop runs with.
#[derive(Clone, Copy, Debug)]
struct Variant {
    name: &'static str,
    incremental: bool,
    /// Unaligned checkpoints and local recovery as well.
    unaligned_local: bool,
}

fn pipeline(dir: &Path, v: Variant) -> String {
    let incremental = v.incremental;
    let extra = if v.unaligned_local {
        format!(
            "SET 'execution.checkpointing.unaligned.enabled' = 'true';
SET 'execution.state-recovery.from-local' = 'true';
SET 'execution.checkpointing.local-backup.dirs' = '{}/local';
",
            dir.display()
        )
    } else {
        String::new()
    };
    format!(
        "{extra}SET 'execution.checkpointing.interval' = '50 ms';
SET 'execution.checkpointing.incremental' = '{incremental}';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'parallelism.default' = '2';
SET 'state.storage.fs.memory-threshold' = '0 b';
SET 'execution.checkpointing.snapshot-compression' = 'true';
CREATE TABLE events (
  id BIGINT,
  k INT,
  v INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{dir}/input', 'format' = 'csv');
CREATE TABLE per_window (k INT, window_start TIMESTAMP(3), n BIGINT, total INT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_windows', 'format' = 'csv');
CREATE TABLE sampled (id BIGINT, k INT, v INT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_sampled', 'format' = 'csv');
EXECUTE STATEMENT SET BEGIN
INSERT INTO per_window
  SELECT k, window_start, COUNT(*), SUM(v)
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end, k;
INSERT INTO sampled SELECT id, k, v FROM events WHERE id % 7 = 0;
END;
",
        dir = dir.display()
    )
}

fn write_input(dir: &Path) {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).expect("input dir");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for part in 0..2 {
        let mut text = String::new();
        for i in 0..ROWS / 2 {
            let id = part * ROWS / 2 + i;
            let k = rng.gen_range(0..8);
            let v = rng.gen_range(0..100);
            // Timestamps advance 10 ms per row, with up to 300 ms of disorder.
            let ms = 3_600_000 + id as i64 * 10 - rng.gen_range(0..300);
            let (s, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
            let _ = writeln!(
                text,
                "{id},{k},{v},2024-01-01 {:02}:{:02}:{:02}.{milli:03}",
                s / 3600,
                (s / 60) % 60,
                s % 60
            );
        }
        std::fs::write(input.join(format!("part-{part}.csv")), text).expect("input file");
    }
}

fn committed(dir: &Path) -> Vec<String> {
    common::committed_rows(dir)
}

fn run(dir: &Path, resume: bool) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.arg("run").arg(dir.join("p.sql"));
    if resume {
        cmd.args(["--resume", "latest"]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("streamsql starts")
}

fn fresh(root: &Path, name: &str, v: Variant) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    write_input(&dir);
    std::fs::write(dir.join("p.sql"), pipeline(&dir, v)).expect("pipeline");
    dir
}

#[test]
fn sigkill_and_resume_loses_nothing_and_duplicates_nothing() {
    let v = Variant {
        name: "aligned",
        incremental: false,
        unaligned_local: false,
    };
    crash_loop(v, 50);
}

/// The same with incremental checkpoints: chains of delta files in `shared/`, referenced by the
/// retained checkpoint, must restore exactly whatever moment the kill hits.
#[test]
fn sigkill_and_resume_with_incremental_checkpoints_loses_nothing_and_duplicates_nothing() {
    let v = Variant {
        name: "incremental",
        incremental: true,
        unaligned_local: false,
    };
    crash_loop(v, 30);
}

/// Unaligned checkpoints with incremental checkpoints and local recovery: restored state, the
/// replayed in-flight data and the rewound sources must together give every row exactly once.
#[test]
fn sigkill_and_resume_with_unaligned_incremental_and_local_recovery_is_exact() {
    let v = Variant {
        name: "unaligned",
        incremental: true,
        unaligned_local: true,
    };
    crash_loop(v, 30);
}

fn crash_loop(v: Variant, default_kills: usize) {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let kills_wanted: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_kills);
    eprintln!("crash test seed: {seed} (replay with CRASH_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root =
        std::env::temp_dir().join(format!("streamsql-crash-{}-{}", std::process::id(), v.name));

    // The reference: one uninterrupted run.
    let reference = fresh(&root, "reference", v);
    let started = std::time::Instant::now();
    let status = run(&reference, false).wait().expect("runs");
    assert!(status.success(), "the uninterrupted run succeeds");
    // Kills land anywhere from early in a run to past its end, scaled to how long a run takes on
    // this machine now (a loaded machine starts and runs processes slowly).
    let run_ms = started.elapsed().as_millis() as u64;
    let kill_after = (run_ms / 10).max(20)..(run_ms * 3 / 2).max(60);
    eprintln!("crash test: an uninterrupted run took {run_ms} ms; kills after {kill_after:?} ms");
    let expected_windows = committed(&reference.join("out_windows"));
    let expected_sampled = committed(&reference.join("out_sampled"));
    assert_eq!(expected_sampled.len(), ROWS.div_ceil(7));
    assert!(!expected_windows.is_empty());

    let mut kills = 0;
    let mut scenario = 0;
    // Runs that started from a checkpoint: the test is only meaningful if restores happen.
    let mut restored_runs = 0;
    while kills < kills_wanted {
        scenario += 1;
        let dir = fresh(&root, &format!("crashed-{scenario}"), v);
        let mut finished = false;
        while !finished && kills < kills_wanted {
            if common::has_checkpoint(&dir.join("checkpoints")) {
                restored_runs += 1;
            }
            let mut child = run(&dir, true);
            std::thread::sleep(Duration::from_millis(rng.gen_range(kill_after.clone())));
            if let Some(status) = child.try_wait().expect("status") {
                assert!(status.success(), "a resumed run succeeds (seed {seed})");
                finished = true;
            } else {
                let _ = child.kill();
                let _ = child.wait();
                kills += 1;
            }
        }
        if !finished {
            // Finish from the last checkpoint.
            let status = run(&dir, true).wait().expect("runs");
            assert!(status.success(), "the resumed run succeeds (seed {seed})");
        }
        assert_eq!(
            committed(&dir.join("out_sampled")),
            expected_sampled,
            "stateless output after {kills} kills (seed {seed})"
        );
        assert_eq!(
            committed(&dir.join("out_windows")),
            expected_windows,
            "windowed output after {kills} kills (seed {seed})"
        );
    }
    eprintln!(
        "crash test: {kills} kills over {scenario} scenarios, {restored_runs} runs restored from a checkpoint, output exact"
    );
    // A loaded machine starts processes slowly, so some kills land before the first checkpoint.
    assert!(
        restored_runs >= kills / 6,
        "too few runs resumed from a checkpoint ({restored_runs}) for the test to mean anything"
    );
    let _ = std::fs::remove_dir_all(&root);
}
