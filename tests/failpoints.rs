//! Storage failure injection (`cargo test --features failpoints --test failpoints`): for every
//! failpoint of the storage layer, a checkpointed job fails at that point, and what is left must
//! be a job that either carried on or stopped with the storage error, checkpoints that are whole,
//! and a `--resume latest` that finishes with exactly the output of an uninterrupted run.
//!
//! The job (the `streamsql` binary, failpoints set through `STREAMSQL_FAILPOINTS`) reads a file
//! into a tumbling-window aggregation and a filtered copy, both into exactly-once filesystem
//! sinks, at parallelism 2, with a checkpoint every 20 ms, keyed state in files
//! (`state.storage.fs.memory-threshold` 0), failed checkpoints tolerated, one in-process restart,
//! and checkpoints retained when the job fails. Each point is failed in two settings:
//!
//! - a fresh run, at its first call, its third call, and every call;
//! - a run resuming a job that was killed after its first checkpoint (where the reads of
//!   `--resume latest` and of the restore happen), at its first call and every call.
//!
//! After each such run: no panic; success only with the exact output, failure only with a
//! diagnostic naming the injected failure; every `_metadata` left on disk reads back with all
//! its keyed state (never a torn checkpoint); and a resume without failpoints then succeeds with
//! the exact output: nothing lost, nothing twice. Every point must fire in at least one run, so a
//! point that the job never reaches fails the test instead of passing it vacuously.

#![cfg(feature = "failpoints")]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamsql::engine::runtime::checkpointing::{
    completed_checkpoints, discard_checkpoint, latest_checkpoint, read_checkpoint,
    write_checkpoint_metadata, RestoredCheckpoint,
};
use streamsql::engine::runtime::subtask_state::SubtaskState;
use streamsql_storage::failpoint;

const ROWS: usize = 30_000;
/// The longest one run may take before the test calls it hung.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The pipeline, with paths relative to the directory it runs in: the job id is derived from the
/// script, so a copied directory is the same job.
const PIPELINE: &str = "SET 'execution.checkpointing.interval' = '20 ms';
SET 'state.checkpoints.dir' = 'checkpoints';
SET 'parallelism.default' = '2';
SET 'state.storage.fs.memory-threshold' = '0 b';
SET 'execution.checkpointing.tolerable-failed-checkpoints' = '1000';
SET 'execution.checkpointing.num-retained' = '3';
SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';
SET 'restart-strategy.type' = 'fixed-delay';
SET 'restart-strategy.fixed-delay.attempts' = '1';
SET 'restart-strategy.fixed-delay.delay' = '10 ms';
CREATE TABLE events (
  id BIGINT,
  k INT,
  v INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'input', 'format' = 'csv');
CREATE TABLE per_window (k INT, window_start TIMESTAMP(3), n BIGINT, total INT)
  WITH ('connector' = 'filesystem', 'path' = 'out_windows', 'format' = 'csv');
CREATE TABLE sampled (id BIGINT, k INT, v INT)
  WITH ('connector' = 'filesystem', 'path' = 'out_sampled', 'format' = 'csv');
EXECUTE STATEMENT SET BEGIN
INSERT INTO per_window
  SELECT k, window_start, COUNT(*), SUM(v)
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end, k;
INSERT INTO sampled SELECT id, k, v FROM events WHERE id % 7 = 0;
END;
";

const OUTPUTS: [&str; 2] = ["out_windows", "out_sampled"];

fn write_input(dir: &Path) {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).expect("input dir");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
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

/// A new directory holding the input and the pipeline.
fn fresh(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scenario dir");
    write_input(&dir);
    std::fs::write(dir.join("p.sql"), PIPELINE).expect("pipeline");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy target");
    for entry in std::fs::read_dir(from).expect("copy source").flatten() {
        let target = to.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => copy_dir(&entry.path(), &target),
            // The control socket of a running job is no file to copy.
            Ok(t) if t.is_file() => {
                std::fs::copy(entry.path(), target).expect("copy");
            }
            _ => {}
        }
    }
}

/// How one run of the binary ended.
struct Run {
    success: bool,
    stderr: String,
}

/// Runs the pipeline in `dir` (resuming with `--resume latest` when `resume`) with the failpoints
/// of `spec` (none when empty), waiting at most [`RUN_LIMIT`].
fn run(dir: &Path, resume: bool, spec: &str) -> Run {
    let log = dir.join("stderr.txt");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.current_dir(dir).arg("run").arg("p.sql");
    if resume {
        cmd.args(["--resume", "latest"]);
    }
    if spec.is_empty() {
        cmd.env_remove(failpoint::ENV_VAR);
    } else {
        cmd.env(failpoint::ENV_VAR, spec);
    }
    let file = std::fs::File::create(&log).expect("stderr file");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("streamsql starts");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("streamsql hung in {} with {spec:?}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    Run {
        success: status.success(),
        stderr,
    }
}

/// The committed rows of every sink.
fn output(dir: &Path) -> Vec<Vec<String>> {
    OUTPUTS
        .iter()
        .map(|o| common::committed_rows(&dir.join(o)))
        .collect()
}

/// Why `dir`'s output differs from `expected`, if it does (without printing thousands of rows).
fn output_difference(dir: &Path, expected: &[Vec<String>]) -> Option<String> {
    let actual = output(dir);
    OUTPUTS
        .iter()
        .zip(actual.iter().zip(expected))
        .find(|(_, (a, e))| a != e)
        .map(|(name, (a, e))| {
            let first = a.iter().zip(e.iter()).position(|(x, y)| x != y);
            format!(
                "{name}: {} rows, expected {}; first difference at row {first:?}",
                a.len(),
                e.len()
            )
        })
}

/// A failed run's diagnostic (what follows miette's `×`), with its frame and line breaks gone.
fn diagnostic(stderr: &str) -> String {
    let report = stderr.find('×').map_or("", |i| &stderr[i..]);
    let unframed: String = report
        .chars()
        .map(|c| if matches!(c, '│' | '×') { ' ' } else { c })
        .collect();
    // miette wraps long paths at `/` and `-` without a space: join the pieces back.
    unframed
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .replace("/ ", "/")
        .replace("- ", "-")
}

/// The ids of the checkpoints a run reports failed, in order, each once.
fn failed_checkpoint_ids(stderr: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = stderr
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("streamsql: checkpoint ")
                .or_else(|| l.strip_prefix("streamsql: the job failed (the final checkpoint "))?;
            let (id, tail) = rest.split_once(' ')?;
            tail.starts_with("failed").then(|| id.parse().ok())?
        })
        .collect();
    // The coordinator names a checkpoint whose `_metadata` it could not write twice in a row:
    // the storage error, then the failure reason.
    ids.dedup();
    ids
}

/// The failpoints of this process, shared by its tests: whoever sets one, or reads storage
/// expecting none, holds the lock.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// The lock on this process's failpoints; a point set through it is turned off when it drops.
struct InProcess {
    _lock: std::sync::MutexGuard<'static, ()>,
    set: Vec<&'static str>,
}

fn in_process() -> InProcess {
    InProcess {
        // A test that failed while holding the lock left no point set (see `Drop`).
        _lock: IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner()),
        set: Vec::new(),
    }
}

impl InProcess {
    fn set(&mut self, point: &'static str, action: failpoint::Action) {
        failpoint::set(point, action).expect("a known failpoint");
        self.set.push(point);
    }

    fn clear_all(&self) {
        failpoint::clear();
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        for point in &self.set {
            let _ = failpoint::set(point, failpoint::Action::Off);
        }
    }
}

/// Every checkpoint left committed in `dir` reads back whole: its `_metadata`, and every keyed
/// state file it names, with length and checksum.
fn assert_checkpoints_whole(dir: &Path, what: &str) {
    let _quiet = in_process();
    let root = dir.join("checkpoints");
    for job in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let listed = completed_checkpoints(&job.path());
        let checkpoints = listed.unwrap_or_else(|e| panic!("{what}: cannot list: {e}"));
        for (id, chk) in checkpoints {
            let c = read_checkpoint(&chk)
                .unwrap_or_else(|e| panic!("{what}: checkpoint {id} is torn: {e}"));
            for (task, bytes) in &c.states {
                let state = SubtaskState::decode(bytes)
                    .unwrap_or_else(|e| panic!("{what}: checkpoint {id}, {task:?}: {e}"));
                if let Err(e) = state.load_keyed(&chk) {
                    panic!("{what}: checkpoint {id} names keyed state it lacks ({task:?}): {e}");
                }
            }
        }
    }
}

/// A job killed once its first checkpoint completed: checkpoints, published output and in-progress
/// files as a crash leaves them.
fn killed_after_first_checkpoint(root: &Path) -> PathBuf {
    for attempt in 0..10 {
        let dir = fresh(root, &format!("killed-{attempt}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamsql"))
            .current_dir(&dir)
            .args(["run", "p.sql"])
            .env_remove(failpoint::ENV_VAR)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("streamsql starts");
        let deadline = Instant::now() + RUN_LIMIT;
        let mut killed = false;
        while child.try_wait().expect("status").is_none() && Instant::now() < deadline {
            let job = std::fs::read_dir(dir.join("checkpoints"))
                .into_iter()
                .flatten()
                .flatten()
                .next();
            let committed = job.is_some_and(|j| {
                let _quiet = in_process();
                completed_checkpoints(&j.path()).is_ok_and(|c| !c.is_empty())
            });
            if committed {
                let _ = child.kill();
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.wait();
        if killed {
            return dir;
        }
    }
    panic!("no run was caught between its first checkpoint and its end");
}

/// One way to run with a failpoint.
#[derive(Clone, Debug)]
struct Scenario {
    point: &'static str,
    action: &'static str,
    /// `None`: a fresh run; `Some(base)`: a resume of a copy of `base`.
    base: Option<PathBuf>,
}

/// What one scenario showed.
struct Outcome {
    fired: bool,
    line: String,
}

fn play(root: &Path, n: usize, s: &Scenario, expected: &[Vec<String>]) -> Outcome {
    let spec = format!("{}={}", s.point, s.action);
    let mode = if s.base.is_some() { "resume" } else { "fresh" };
    let what = format!("{mode} run with {spec}");
    let name = format!("scenario-{n}");
    let dir = match &s.base {
        Some(base) => {
            let dir = root.join(&name);
            let _ = std::fs::remove_dir_all(&dir);
            copy_dir(base, &dir);
            dir
        }
        None => fresh(root, &name),
    };

    let injected = run(&dir, s.base.is_some(), &spec);
    let fired = injected
        .stderr
        .contains(&format!("failpoint {} fired", s.point));
    assert!(
        !injected.stderr.contains("panicked"),
        "{what}: a panic\n{}",
        injected.stderr
    );
    let ids = failed_checkpoint_ids(&injected.stderr);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{what}: a checkpoint id was used twice: {ids:?}\n{}",
        injected.stderr
    );
    let verdict = if injected.success {
        if let Some(diff) = output_difference(&dir, expected) {
            panic!(
                "{what}: the run reported success with wrong output: {diff}\n{}",
                injected.stderr
            );
        }
        "succeeded"
    } else {
        let report = diagnostic(&injected.stderr);
        assert!(
            report.contains(&format!("injected failure at {}", s.point)),
            "{what}: the run failed without naming the injected failure: {report}\n{}",
            injected.stderr
        );
        "failed"
    };
    assert_checkpoints_whole(&dir, &what);

    let resumed = run(&dir, true, "");
    assert!(
        resumed.success,
        "{what}: the resume without failpoints failed\n{}",
        resumed.stderr
    );
    if let Some(diff) = output_difference(&dir, expected) {
        panic!(
            "{what}, then resumed: wrong output: {diff}\n--- injected run:\n{}\n--- resume:\n{}",
            injected.stderr, resumed.stderr
        );
    }
    assert_checkpoints_whole(&dir, &format!("{what}, then resumed"));
    let _ = std::fs::remove_dir_all(&dir);
    let fired_text = if fired { "fired" } else { "not reached" };
    Outcome {
        fired,
        line: format!("{what}: {fired_text}, {verdict}; resume exact"),
    }
}

/// Raises its flag when the thread holding it unwinds.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_storage_failure_at_any_point_never_loses_duplicates_or_tears() {
    // This process reads checkpoints itself; only the children fail.
    in_process().clear_all();
    let root = std::env::temp_dir().join(format!("streamsql-failpoints-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("root");

    let reference = fresh(&root, "reference");
    let clean = run(&reference, false, "");
    assert!(clean.success, "the uninterrupted run: {}", clean.stderr);
    let expected = output(&reference);
    assert_eq!(expected[1].len(), ROWS.div_ceil(7));
    assert!(!expected[0].is_empty());

    let killed = killed_after_first_checkpoint(&root);

    let mut scenarios = Vec::new();
    for point in failpoint::list() {
        for action in ["fail@1", "fail@3", "fail"] {
            scenarios.push(Scenario {
                point,
                action,
                base: None,
            });
        }
        for action in ["fail@1", "fail"] {
            scenarios.push(Scenario {
                point,
                action,
                base: Some(killed.clone()),
            });
        }
    }

    // Two runs at a time: each spends part of its time waiting (start-up, fsyncs, restart
    // delays). A failed scenario stops both workers; the scope then re-raises its panic.
    let queue = Mutex::new(scenarios.iter().enumerate());
    let outcomes = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let _guard = StopOnPanic(&stop);
                while !stop.load(Ordering::SeqCst) {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some((n, s)) = next else { break };
                    let outcome = play(&root, n, s, &expected);
                    if let Ok(mut o) = outcomes.lock() {
                        o.push((s.point, outcome));
                    }
                }
            });
        }
    });

    let outcomes = outcomes
        .into_inner()
        .expect("no worker panicked holding the lock");
    assert_eq!(outcomes.len(), scenarios.len(), "every scenario ran");
    for (_, o) in &outcomes {
        eprintln!("{}", o.line);
    }
    let never: Vec<&str> = failpoint::list()
        .into_iter()
        .filter(|p| !outcomes.iter().any(|(q, o)| q == p && o.fired))
        .collect();
    assert!(never.is_empty(), "failpoints no run reached: {never:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// A job directory of this process with committed checkpoints `ids` (no state).
fn job_dir_with_checkpoints(name: &str, ids: &[u64]) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!(
            "streamsql-failpoints-{name}-{}",
            std::process::id()
        ))
        .join("job");
    let _ = std::fs::remove_dir_all(&dir);
    for id in ids {
        let c = RestoredCheckpoint {
            checkpoint_id: *id,
            ..RestoredCheckpoint::default()
        };
        write_checkpoint_metadata(&dir, &c).expect("checkpoint written");
    }
    dir
}

#[test]
fn an_unreadable_checkpoint_stops_the_resume_instead_of_restoring_an_older_one() {
    let mut fp = in_process();
    let dir = job_dir_with_checkpoints("unreadable", &[1, 2]);
    // Checkpoint 2 completed, so its sink output is published: restoring 1 would publish what
    // came between them a second time.
    fp.set("read_framed.read", failpoint::Action::FailNth(1));
    let read = latest_checkpoint(&dir);
    drop(fp);
    match read {
        Err(e) => assert!(
            e.to_string()
                .contains("injected failure at read_framed.read"),
            "{e}"
        ),
        Ok(c) => panic!(
            "restored {:?} past an unreadable checkpoint 2",
            c.map(|c| c.checkpoint_id)
        ),
    }
    // A damaged checkpoint, unlike an unreadable one, is passed over.
    std::fs::write(dir.join("chk-2/_metadata"), b"torn").expect("damaged");
    let _quiet = in_process();
    let latest = latest_checkpoint(&dir)
        .expect("readable")
        .map(|c| c.checkpoint_id);
    assert_eq!(latest, Some(1));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
}

#[test]
fn a_discard_cut_short_leaves_no_committed_checkpoint_behind() {
    let mut fp = in_process();
    let dir = job_dir_with_checkpoints("discard", &[1]);
    let chk = dir.join("chk-1");
    let state = chk.join("taskowned/op-0.state");
    streamsql_storage::write_atomic(&state, b"keyed state").expect("state written");
    fp.set("remove_dir_all", failpoint::Action::Fail);
    let discarded = discard_checkpoint(&chk);
    assert!(discarded.is_err(), "the injected failure is reported");
    // `_metadata` went first: what is left is not a checkpoint that names missing files.
    assert!(state.is_file(), "the state files are still there");
    assert_eq!(completed_checkpoints(&dir).map(|c| c.len()).ok(), Some(0));
    drop(fp);
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
}

/// A failing compaction (its reads of the chain's files fail: in a fresh run nothing else reads
/// keyed-state files) never fails a checkpoint or the job: the chain goes on, the hard limits
/// start new chains, and the job ends with its checkpoints restorable.
#[test]
fn a_failing_compaction_never_fails_the_job() {
    let dir = std::env::temp_dir().join(format!(
        "streamsql-failpoints-compaction-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("p.sql"),
        "SET 'execution.checkpointing.interval' = '20 ms';
SET 'execution.checkpointing.incremental' = 'true';
SET 'state.checkpoints.dir' = 'checkpoints';
SET 'execution.checkpointing.num-retained' = '3';
SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';
SET 'parallelism.default' = '1';
CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5000',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '14999');
CREATE TABLE snk (k BIGINT, n BIGINT, s BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO snk SELECT id % 2000, COUNT(*), SUM(id) FROM gen GROUP BY id % 2000;
",
    )
    .expect("pipeline");
    let injected = run(&dir, false, "read=fail");
    assert!(injected.success, "{}", injected.stderr);
    assert!(
        injected.stderr.contains("failpoint read fired"),
        "no compaction ran: {}",
        injected.stderr
    );
    assert!(
        injected
            .stderr
            .contains("compaction of the incremental chain of"),
        "{}",
        injected.stderr
    );
    assert!(
        !injected.stderr.contains("asynchronous part failed"),
        "a checkpoint failed: {}",
        injected.stderr
    );
    assert_checkpoints_whole(&dir, "a run whose compactions failed");
    let _ = std::fs::remove_dir_all(&dir);
}
