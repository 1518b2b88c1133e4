//! Restoring at another parallelism, end to end through the binary: a windowed aggregation into
//! the exactly-once filesystem sink and a keyed (non-windowed) aggregation into the print sink,
//! both reading the filesystem source, are stopped with a savepoint (or killed after a retained
//! checkpoint) at one parallelism and finished at another. The committed windows must equal an
//! uninterrupted run's (nothing lost, nothing twice), and the keyed aggregation's final value of
//! every key must too (its printed changelog, folded). A max parallelism that differs from the
//! snapshot's is refused with Flink's message.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows of input: enough that a job is still running when it is stopped after its first
/// checkpoint.
const ROWS: usize = 300_000;
/// A hang guard: a broken build fails instead of waiting forever.
const PATIENCE: Duration = Duration::from_secs(120);

fn pipeline(dir: &Path) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '50 ms';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'state.storage.fs.memory-threshold' = '0 b';
CREATE TABLE events (
  id BIGINT,
  k INT,
  v INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{dir}/input', 'format' = 'csv');
CREATE TABLE per_window (k INT, window_start TIMESTAMP(3), n BIGINT, total INT)
  WITH ('connector' = 'filesystem', 'path' = '{dir}/out_windows', 'format' = 'csv');
CREATE TABLE per_key (k INT, n BIGINT, total BIGINT) WITH ('connector' = 'print');
EXECUTE STATEMENT SET BEGIN
INSERT INTO per_window
  SELECT k, window_start, COUNT(*), SUM(v)
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end, k;
INSERT INTO per_key SELECT k, COUNT(*), SUM(CAST(v AS BIGINT)) FROM events GROUP BY k;
END;
",
        dir = dir.display()
    )
}

/// Three input files (so that splits can be spread over up to three source subtasks) of
/// consecutive time ranges: timestamps advance 10 ms per row with up to 300 ms of disorder,
/// within the watermark's bound. A subtask reads its splits in the order of the listing, so no row
/// is ever late, whichever files a subtask reads.
fn write_input(dir: &Path) {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).expect("input dir");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let per_file = ROWS / 3;
    for part in 0..3 {
        let mut text = String::new();
        for i in 0..per_file {
            let id = part * per_file + i;
            let k = rng.gen_range(0..40);
            let v = rng.gen_range(0..100);
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

fn prepare(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamsql-rescale-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    write_input(&dir);
    std::fs::write(dir.join("p.sql"), pipeline(&dir)).expect("pipeline");
    dir
}

fn streamsql(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.args(args).arg(dir.join("p.sql"));
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs to the end; returns its standard output.
fn run_to_end(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = streamsql(dir, &all).output().expect("streamsql runs");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts a run in the background, its standard output to `<dir>/<log>`.
fn spawn(dir: &Path, p: usize, log: &str) -> Child {
    let stdout = std::fs::File::create(dir.join(log)).expect("log");
    streamsql(dir, &["run", "-p", &p.to_string()])
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("starts")
}

/// Waits until the job completed a checkpoint.
fn await_checkpoint(dir: &Path, job: &mut Child) {
    let started = Instant::now();
    while !common::has_checkpoint(&dir.join("checkpoints")) {
        assert!(started.elapsed() < PATIENCE, "no checkpoint completed");
        assert!(
            job.try_wait().expect("status").is_none(),
            "the job ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops the job with a savepoint into `<dir>/savepoints`; returns the savepoint's directory.
fn stop_with_savepoint(dir: &Path, mut job: Child) -> PathBuf {
    await_checkpoint(dir, &mut job);
    let target = dir.join("savepoints");
    let out = streamsql(
        dir,
        &["stop", "--savepointPath", target.to_str().expect("utf-8")],
    )
    .output()
    .expect("stop runs");
    assert!(out.status.success(), "stop: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in {text:?}"));
    assert!(job.wait().expect("ends").success(), "a stopped job exits 0");
    PathBuf::from(path)
}

/// The final value of every key of the keyed aggregation: its printed changelog folded (`+I` and
/// `+U` set a key's row, `-U` and `-D` remove it), then each key's row.
fn fold_changelog(text: &str, into: &mut BTreeMap<String, String>) {
    for line in text.lines() {
        // The print sink prefixes `<subtask>> ` at a parallelism above 1.
        let line = line.split_once("> ").map_or(line, |(_, rest)| rest);
        let (Some(kind), Some(row)) = (line.get(..2), line.get(2..)) else {
            continue;
        };
        let Some(row) = row.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
            continue;
        };
        let key = row.split(", ").next().unwrap_or_default().to_string();
        match kind {
            "+I" | "+U" => {
                into.insert(key, row.to_string());
            }
            "-U" | "-D" if into.get(&key).is_some_and(|r| r == row) => {
                into.remove(&key);
            }
            _ => {}
        }
    }
}

/// The committed windows and each key's final aggregate.
type Results = (Vec<String>, BTreeMap<String, String>);

/// What an uninterrupted run at parallelism 2 gives (computed once for the tests of this file).
fn reference() -> &'static Results {
    static REFERENCE: std::sync::OnceLock<Results> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(uninterrupted)
}

fn uninterrupted() -> Results {
    let dir = prepare("reference");
    let stdout = run_to_end(&dir, &["-p", "2"]);
    let mut keyed = BTreeMap::new();
    fold_changelog(&stdout, &mut keyed);
    let windows = common::committed_rows(&dir.join("out_windows"));
    assert_eq!(keyed.len(), 40, "every key has a final aggregate");
    let total: u64 = keyed
        .values()
        .map(|r| {
            r.split(", ")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, ROWS as u64, "the counts cover every row");
    let _ = std::fs::remove_dir_all(&dir);
    (windows, keyed)
}

/// Copies a directory tree (hidden in-progress part files included).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("target dir");
    for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Restores `savepoint` at parallelism `p` into a state of the output equal to the stopped run's
/// (kept in `<dir>/stopped`) and checks the end result against `expected`.
fn restore_and_check(
    dir: &Path,
    savepoint: &Path,
    p: usize,
    stopped_stdout: &str,
    expected: &Results,
) {
    let out_windows = dir.join("out_windows");
    let _ = std::fs::remove_dir_all(&out_windows);
    copy_tree(&dir.join("stopped"), &out_windows);
    let stdout = run_to_end(
        dir,
        &[
            "-p",
            &p.to_string(),
            "-s",
            savepoint.to_str().expect("utf-8"),
        ],
    );
    let mut keyed = BTreeMap::new();
    fold_changelog(stopped_stdout, &mut keyed);
    fold_changelog(&stdout, &mut keyed);
    let windows = common::committed_rows(&out_windows);
    assert_eq!(
        windows.len(),
        expected.0.len(),
        "restored at parallelism {p}: window rows"
    );
    assert!(
        windows == expected.0,
        "restored at parallelism {p}: windows differ"
    );
    assert_eq!(
        keyed, expected.1,
        "restored at parallelism {p}: keyed aggregates"
    );
}

/// Stops a run at `p` with a savepoint; keeps its output in `<dir>/stopped`.
fn stopped_run(dir: &Path, p: usize, expected_windows: usize) -> (PathBuf, String) {
    let job = spawn(dir, p, "stopped.log");
    let savepoint = stop_with_savepoint(dir, job);
    let committed = common::committed_rows(&dir.join("out_windows")).len();
    assert!(
        committed < expected_windows,
        "the job stopped before its end ({committed} of {expected_windows} window rows)"
    );
    copy_tree(&dir.join("out_windows"), &dir.join("stopped"));
    let stdout = std::fs::read_to_string(dir.join("stopped.log")).expect("log");
    (savepoint, stdout)
}

#[test]
fn a_savepoint_at_parallelism_2_restores_at_1_and_at_3_exactly() {
    let expected = reference();
    let dir = prepare("2-to-1-and-3");
    let (savepoint, stopped) = stopped_run(&dir, 2, expected.0.len());
    for p in [1, 3] {
        restore_and_check(&dir, &savepoint, p, &stopped, expected);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_savepoint_at_parallelism_1_restores_at_4_exactly() {
    let expected = reference();
    let dir = prepare("1-to-4");
    let (savepoint, stopped) = stopped_run(&dir, 1, expected.0.len());
    restore_and_check(&dir, &savepoint, 4, &stopped, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_retained_checkpoint_resumes_at_another_parallelism() {
    let expected = reference();
    let dir = prepare("resume-latest");
    let mut job = spawn(&dir, 2, "killed.log");
    await_checkpoint(&dir, &mut job);
    // Let a few more checkpoints complete, then kill: the retained one is whatever was newest.
    std::thread::sleep(Duration::from_millis(150));
    let _ = job.kill();
    let _ = job.wait();
    let killed = std::fs::read_to_string(dir.join("killed.log")).expect("log");
    let stdout = run_to_end(&dir, &["-p", "3", "--resume", "latest"]);
    let mut keyed = BTreeMap::new();
    fold_changelog(&killed, &mut keyed);
    fold_changelog(&stdout, &mut keyed);
    let windows = common::committed_rows(&dir.join("out_windows"));
    assert_eq!(windows.len(), expected.0.len(), "window rows");
    assert!(windows == expected.0, "windows differ");
    assert_eq!(keyed, expected.1, "keyed aggregates");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_max_parallelism_other_than_the_snapshots_is_refused() {
    let dir = prepare("max-parallelism");
    let job = spawn(&dir, 2, "stopped.log");
    let savepoint = stop_with_savepoint(&dir, job);
    let out = streamsql(
        &dir,
        &[
            "run",
            "-p",
            "3",
            "-s",
            savepoint.to_str().expect("utf-8"),
            "-D",
            "pipeline.max-parallelism=256",
        ],
    )
    .output()
    .expect("runs");
    assert!(!out.status.success(), "the restore must fail");
    let text = flat(&stderr(&out));
    assert!(
        text.contains("The maximum parallelism (128) with which the latest checkpoint of the execution job vertex"),
        "{text}"
    );
    assert!(
        text.contains("has been taken and the current maximum parallelism (256) changed. This is currently not supported."),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
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
