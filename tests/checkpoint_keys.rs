//! One test per checkpointing and restart key, end to end: a SQL job run through the library API
//! (or the `streamsql` binary where the exit status matters), observed through what a user sees:
//! the checkpoint statistics (`_checkpoint_stats.json`, the body of Flink's
//! `GET /jobs/:jobid/checkpoints`), the `chk-<n>` directories, the job's error and stderr.
//!
//! A checkpoint that cannot complete is made deterministically by not reading a SELECT's result:
//! the collect sink's channel fills, back pressure stops the whole dataflow, and no barrier
//! reaches the sink again. Tests never assert an upper bound on wall-clock time; waits for a
//! condition give up after [`PATIENCE`] only so that a broken build fails instead of hanging.
//!
//! Covered elsewhere, not repeated here: the retention of a cancelled job's checkpoints under
//! `RETAIN_ON_CANCELLATION` and `NO_EXTERNALIZED_CHECKPOINTS`, and the deletion of a finished
//! job's checkpoints whatever the retention (`tests/checkpoint_stats.rs`); `num-retained = 1`
//! across two cancelled runs (`tests/runtime.rs`); fixed-delay restarts through the runtime API
//! (`tests/runtime.rs`); every rule of the trigger policy, failure manager and restart strategies
//! as tables of scenarios (unit tests in `engine/src/checkpoint/`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use streamsql::engine::checkpoint::stats::{stats_file, CheckpointStatsTracker, JsonValue};
use streamsql::engine::config::Configuration;
use streamsql::engine::runtime::checkpointing::METADATA_FILE;
use streamsql::engine::runtime::JobOutcome;
use streamsql::{ResultEvent, RunningJob, Streamsql};

/// How long a wait for a condition may take before the test gives up (a hang guard).
const PATIENCE: Duration = Duration::from_secs(30);

/// Flink's message for a checkpoint that timed out.
const EXPIRED: &str = "Checkpoint expired before completing.";

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("streamsql-keys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir is writable");
    d
}

/// A session at parallelism 1 checkpointing into `dir` every `interval`, batches flushed every
/// millisecond, with `settings` on top.
fn session(dir: &Path, interval: &str, settings: &[(&str, &str)]) -> Streamsql {
    let dir = dir.display().to_string();
    let mut conf = Configuration::new();
    for (k, v) in [
        ("parallelism.default", "1"),
        ("execution.checkpointing.interval", interval),
        ("execution.checkpointing.dir", dir.as_str()),
        ("execution.buffer-timeout.interval", "1 ms"),
    ]
    .iter()
    .chain(settings)
    {
        conf.set(k, v)
            .unwrap_or_else(|e| panic!("{k} = {v} is valid: {e}"));
    }
    Streamsql::new(conf)
}

/// Starts `sql` in `session`; returns the job and its checkpoint directory.
fn start(session: &mut Streamsql, dir: &Path, sql: &str) -> (RunningJob, PathBuf) {
    let job = session
        .execute("test.sql", sql)
        .expect("the script plans")
        .job
        .expect("the script runs a job");
    (job, dir.join(streamsql::job_id(sql)))
}

/// An unbounded source of fast rows and a SELECT of them: while nobody reads the result, the
/// dataflow stops and no checkpoint can complete.
const UNREAD_SELECT: &str =
    "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '100000');
     SELECT id FROM gen;";

/// An unbounded paced source into a blackhole: checkpoints complete while it runs.
const PACED_INSERT: &str =
    "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');
     CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
     INSERT INTO sink SELECT id FROM gen;";

/// A paced sequence whose projection fails at row 150 (about 300 ms in) with a cast error.
const FAILS_AT_ROW_150: &str = "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
       'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '100000', \
       'rows-per-second' = '500');
     CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
     INSERT INTO sink SELECT CAST(CASE WHEN id = 150 THEN 'boom' ELSE CAST(id AS STRING) END \
       AS BIGINT) FROM gen;";

/// The job's statistics as Flink's REST body, once the coordinator has written them.
fn stats(job_dir: &Path) -> Option<JsonValue> {
    CheckpointStatsTracker::load(&stats_file(job_dir))
        .ok()
        .map(|t| t.to_rest_json())
}

/// Polls `check` every few milliseconds until it returns a value.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the statistics satisfy `check`.
fn wait_for_stats(job_dir: &Path, what: &str, check: impl Fn(&JsonValue) -> bool) -> JsonValue {
    wait_for(what, || stats(job_dir).filter(|v| check(v)))
}

fn count(v: &JsonValue, name: &str) -> u64 {
    v["counts"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{name} is a number: {v:#}"))
}

/// One checkpoint of the statistics' history.
#[derive(Debug)]
struct Entry {
    id: u64,
    status: String,
    trigger: i64,
    latest_ack: i64,
    /// When it failed (failed checkpoints only).
    failed_at: Option<i64>,
    failure_message: Option<String>,
}

/// The history, oldest first.
fn history(v: &JsonValue) -> Vec<Entry> {
    let mut entries: Vec<Entry> = v["history"]
        .as_array()
        .unwrap_or_else(|| panic!("history is an array: {v:#}"))
        .iter()
        .map(|h| Entry {
            id: h["id"].as_u64().expect("an id"),
            status: h["status"].as_str().expect("a status").to_string(),
            trigger: h["trigger_timestamp"].as_i64().expect("a trigger time"),
            latest_ack: h["latest_ack_timestamp"].as_i64().unwrap_or(-1),
            failed_at: h["failure_timestamp"].as_i64(),
            failure_message: h["failure_message"].as_str().map(str::to_string),
        })
        .collect();
    entries.sort_by_key(|e| e.id);
    entries
}

/// The completed checkpoints in a job's directory, oldest first.
fn checkpoint_ids(job_dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(job_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(METADATA_FILE).is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Cancels a job whose result may be unread and waits for it.
fn cancel(job: RunningJob) -> JobOutcome {
    job.cancel_handle().cancel();
    job.wait().expect("a cancelled job is no failure")
}

#[test]
fn min_pause_spaces_completed_checkpoints_from_the_end_of_one_to_the_next_trigger() {
    let dir = temp_dir("min-pause");
    let min_pause = 60;
    let mut s = session(
        &dir,
        "10 ms",
        &[("execution.checkpointing.min-pause", "60 ms")],
    );
    let (job, job_dir) = start(&mut s, &dir, PACED_INSERT);
    wait_for_stats(&job_dir, "four completed checkpoints", |v| {
        count(v, "completed") >= 4
    });
    assert_eq!(cancel(job), JobOutcome::Cancelled);
    let v = stats(&job_dir).expect("statistics");
    let completed: Vec<Entry> = history(&v)
        .into_iter()
        .filter(|e| e.status == "COMPLETED")
        .collect();
    assert!(completed.len() >= 4, "{v:#}");
    for pair in completed.windows(2) {
        let (before, next) = (&pair[0], &pair[1]);
        assert!(
            next.trigger - before.latest_ack >= min_pause,
            "checkpoint {} was triggered {} ms after checkpoint {} completed, min-pause is \
             {min_pause} ms: {v:#}",
            next.id,
            next.trigger - before.latest_ack,
            before.id
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn timeout_expires_a_checkpoint_that_cannot_complete() {
    let dir = temp_dir("timeout");
    let mut s = session(
        &dir,
        "10 ms",
        &[
            ("execution.checkpointing.timeout", "50 ms"),
            (
                "execution.checkpointing.tolerable-failed-checkpoints",
                "2147483647",
            ),
        ],
    );
    let (job, job_dir) = start(&mut s, &dir, UNREAD_SELECT);
    let v = wait_for_stats(&job_dir, "a failed checkpoint", |v| count(v, "failed") >= 1);
    assert_eq!(
        cancel(job),
        JobOutcome::Cancelled,
        "unlimited failures are tolerated"
    );
    let failed = &v["latest"]["failed"];
    assert_eq!(failed["status"], "FAILED", "{v:#}");
    assert_eq!(failed["failure_message"], EXPIRED, "{v:#}");
    let e2e = failed["end_to_end_duration"].as_i64().expect("a duration");
    assert!(
        e2e >= 50,
        "expired {e2e} ms after its trigger, before the timeout: {v:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs [`UNREAD_SELECT`] with checkpoints that expire after 20 ms and `tolerable` failures
/// allowed, until the job fails; returns its error and the statistics.
fn run_until_too_many_expire(name: &str, tolerable: &str) -> (String, JsonValue) {
    let dir = temp_dir(name);
    let mut s = session(
        &dir,
        "10 ms",
        &[
            ("execution.checkpointing.timeout", "20 ms"),
            (
                "execution.checkpointing.tolerable-failed-checkpoints",
                tolerable,
            ),
            ("restart-strategy.type", "none"),
        ],
    );
    let (job, job_dir) = start(&mut s, &dir, UNREAD_SELECT);
    let limit: u64 = tolerable.parse().expect("a number");
    // The failure that exceeds the limit is recorded before the job is failed, and nothing read
    // from the result before that: only then may the result be drained.
    wait_for_stats(&job_dir, "the failure past the limit", |v| {
        count(v, "failed") > limit
    });
    let err = job.wait().expect_err("the job fails").to_string();
    let v = stats(&job_dir).expect("statistics");
    let _ = std::fs::remove_dir_all(&dir);
    (err, v)
}

/// Flink's message when the tolerable failures are exceeded by an expired checkpoint.
const THRESHOLD_EXCEEDED: &str = "Exceeded checkpoint tolerable failure threshold. The latest \
     checkpoint failed due to Checkpoint expired before completing., view the Checkpoint History \
     tab or the Job Manager log to find out why continuous checkpoints failed.";

/// The expired checkpoints of the history, oldest first.
fn expired(v: &JsonValue) -> Vec<u64> {
    history(v)
        .into_iter()
        .filter(|e| e.failure_message.as_deref() == Some(EXPIRED))
        .map(|e| e.id)
        .collect()
}

#[test]
fn tolerable_failed_checkpoints_0_fails_the_job_at_the_first_expired_checkpoint() {
    let (err, v) = run_until_too_many_expire("tolerable-0", "0");
    assert!(err.contains(THRESHOLD_EXCEEDED), "{err}");
    assert_eq!(expired(&v).len(), 1, "{v:#}");
}

#[test]
fn tolerable_failed_checkpoints_2_survives_two_expired_checkpoints_and_fails_at_the_third() {
    let (err, v) = run_until_too_many_expire("tolerable-2", "2");
    assert!(err.contains(THRESHOLD_EXCEEDED), "{err}");
    let ids = expired(&v);
    assert_eq!(ids.len(), 3, "{v:#}");
    // Nothing completed between them to reset the count.
    let completed_between = history(&v)
        .iter()
        .any(|e| e.status == "COMPLETED" && e.id > ids[0] && e.id < ids[2]);
    assert!(!completed_between, "{v:#}");
}

/// The most checkpoints in progress at once, from the history's trigger and end times.
fn most_in_progress(entries: &[Entry]) -> usize {
    let end = |e: &Entry| e.failed_at.unwrap_or(e.latest_ack);
    entries
        .iter()
        .map(|c| {
            entries
                .iter()
                .filter(|p| p.trigger <= c.trigger && c.trigger < end(p))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Runs [`UNREAD_SELECT`] with checkpoints that expire after 100 ms and `max` allowed in
/// progress, until six have failed; returns the history.
fn history_of_slow_checkpoints(name: &str, max: &str) -> Vec<Entry> {
    let dir = temp_dir(name);
    let mut s = session(
        &dir,
        "10 ms",
        &[
            ("execution.checkpointing.timeout", "100 ms"),
            ("execution.checkpointing.max-concurrent-checkpoints", max),
            (
                "execution.checkpointing.tolerable-failed-checkpoints",
                "2147483647",
            ),
        ],
    );
    let (job, job_dir) = start(&mut s, &dir, UNREAD_SELECT);
    let v = wait_for_stats(&job_dir, "six failed checkpoints", |v| {
        count(v, "failed") >= 6
    });
    assert_eq!(cancel(job), JobOutcome::Cancelled);
    let _ = std::fs::remove_dir_all(&dir);
    // Only the failures are final: a checkpoint still in progress has no end yet.
    history(&v)
        .into_iter()
        .filter(|e| e.status != "IN_PROGRESS")
        .collect()
}

#[test]
fn max_concurrent_checkpoints_bounds_the_checkpoints_in_progress() {
    let three = history_of_slow_checkpoints("max-concurrent-3", "3");
    assert_eq!(most_in_progress(&three), 3, "{three:#?}");
    let one = history_of_slow_checkpoints("max-concurrent-1", "1");
    assert_eq!(most_in_progress(&one), 1, "{one:#?}");
}

#[test]
fn num_retained_keeps_exactly_the_newest_n_checkpoints_while_running_and_after_cancel() {
    let dir = temp_dir("num-retained");
    let mut s = session(
        &dir,
        "10 ms",
        &[
            ("execution.checkpointing.num-retained", "3"),
            ("execution.checkpointing.timeout", "50 ms"),
            (
                "execution.checkpointing.tolerable-failed-checkpoints",
                "2147483647",
            ),
            (
                "execution.checkpointing.externalized-checkpoint-retention",
                "RETAIN_ON_CANCELLATION",
            ),
        ],
    );
    let sql = "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
                 'rows-per-second' = '2000');
               SELECT id FROM gen;";
    let (job, job_dir) = start(&mut s, &dir, sql);
    let cancel_handle = job.cancel_handle();
    let mut while_running: Option<Vec<u64>> = None;
    let mut seen = 0u64;
    let outcome = job
        .for_each_result(|_, _, event| {
            if while_running.is_some() || !matches!(event, ResultEvent::Change(_)) {
                return;
            }
            seen += 1;
            if !seen.is_multiple_of(50) {
                return;
            }
            let enough = stats(&job_dir).is_some_and(|v| count(&v, "completed") >= 5);
            if !enough {
                return;
            }
            // Reading no further stops the dataflow: once a checkpoint expired and a timeout
            // later none has completed, the directory no longer changes.
            let blocked_at = history(&stats(&job_dir).expect("statistics"))
                .last()
                .map_or(0, |e| e.trigger);
            let listing = wait_for("the checkpoints to stop completing", || {
                wait_for_stats(&job_dir, "a checkpoint expired after the stop", |v| {
                    history(v).iter().any(|e| {
                        e.failure_message.as_deref() == Some(EXPIRED) && e.trigger > blocked_at
                    })
                });
                let before = count(&stats(&job_dir).expect("statistics"), "completed");
                let listing = checkpoint_ids(&job_dir);
                std::thread::sleep(Duration::from_millis(120));
                let after = count(&stats(&job_dir).expect("statistics"), "completed");
                (before == after).then_some(listing)
            });
            while_running = Some(listing);
            cancel_handle.cancel();
        })
        .expect("a cancelled job is no failure");
    assert_eq!(outcome, JobOutcome::Cancelled);
    let v = stats(&job_dir).expect("statistics");
    let kept = while_running.expect("the checkpoints were listed while the job ran");
    assert_eq!(kept.len(), 3, "while running: {kept:?} {v:#}");
    assert_eq!(
        kept.last().copied(),
        v["latest"]["completed"]["id"].as_u64(),
        "the newest is kept: {v:#}"
    );
    // The history holds the most recent checkpoints: every completed one newer than the oldest
    // kept is kept, and every kept one it knows completed.
    for e in history(&v).iter().filter(|e| e.id >= kept[0]) {
        assert_eq!(
            e.status == "COMPLETED",
            kept.contains(&e.id),
            "checkpoint {}: {kept:?} {v:#}",
            e.id
        );
    }
    assert_eq!(checkpoint_ids(&job_dir), kept, "after cancel: {v:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoints_after_tasks_finish_keeps_checkpointing_after_a_source_ended() {
    let dir = temp_dir("after-tasks-finish");
    let mut s = session(
        &dir,
        "20 ms",
        &[(
            "execution.checkpointing.checkpoints-after-tasks-finish",
            "true",
        )],
    );
    // About 300 ms of paced rows beside a source that ends at once.
    let sql = "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', \
                 'fields.id.end' = '300', 'rows-per-second' = '1000');
               CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
               INSERT INTO sink SELECT id FROM gen
                 UNION ALL SELECT x FROM (VALUES (CAST(0 AS BIGINT))) AS t(x);";
    let (job, job_dir) = start(&mut s, &dir, sql);
    assert_eq!(job.wait().expect("the job runs"), JobOutcome::Finished);
    let v = stats(&job_dir).expect("statistics");
    assert!(
        count(&v, "completed") >= 2,
        "periodic checkpoints besides the final one: {v:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a job with the given retention until it has completed three checkpoints, then ends it:
/// cancelled, or failed by [`FAILS_AT_ROW_150`]. Returns the checkpoints left and the number the
/// statistics count as completed.
fn checkpoints_left(name: &str, retention: &str, fail: bool) -> (Vec<u64>, u64) {
    let dir = temp_dir(name);
    let mut s = session(
        &dir,
        "20 ms",
        &[
            ("execution.checkpointing.num-retained", "2"),
            (
                "execution.checkpointing.externalized-checkpoint-retention",
                retention,
            ),
            ("restart-strategy.type", "none"),
        ],
    );
    let sql = if fail { FAILS_AT_ROW_150 } else { PACED_INSERT };
    let (job, job_dir) = start(&mut s, &dir, sql);
    if fail {
        let err = job.wait().expect_err("the cast fails the job").to_string();
        assert!(err.contains("'boom'"), "{err}");
    } else {
        wait_for_stats(&job_dir, "three completed checkpoints", |v| {
            count(v, "completed") >= 3
        });
        assert_eq!(cancel(job), JobOutcome::Cancelled);
    }
    let completed = count(&stats(&job_dir).expect("statistics"), "completed");
    let left = checkpoint_ids(&job_dir);
    let _ = std::fs::remove_dir_all(&dir);
    (left, completed)
}

#[test]
fn retention_delete_on_cancellation_deletes_the_checkpoints_of_a_cancelled_job() {
    let (left, completed) = checkpoints_left(
        "delete-on-cancel-cancelled",
        "DELETE_ON_CANCELLATION",
        false,
    );
    assert!(completed >= 3);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn retention_delete_on_cancellation_keeps_the_checkpoints_of_a_failed_job() {
    let (left, completed) =
        checkpoints_left("delete-on-cancel-failed", "DELETE_ON_CANCELLATION", true);
    assert!(
        completed >= 2,
        "the job failed after {completed} checkpoints"
    );
    assert_eq!(left.len(), 2, "num-retained of them: {left:?}");
}

#[test]
fn retention_retain_on_cancellation_keeps_the_checkpoints_of_a_failed_job() {
    let (left, completed) =
        checkpoints_left("retain-on-cancel-failed", "RETAIN_ON_CANCELLATION", true);
    assert!(
        completed >= 2,
        "the job failed after {completed} checkpoints"
    );
    assert_eq!(left.len(), 2, "num-retained of them: {left:?}");
}

#[test]
fn retention_no_externalized_checkpoints_deletes_the_checkpoints_of_a_failed_job() {
    let (left, completed) = checkpoints_left(
        "no-externalized-failed",
        "NO_EXTERNALIZED_CHECKPOINTS",
        true,
    );
    assert!(
        completed >= 2,
        "the job failed after {completed} checkpoints"
    );
    assert!(left.is_empty(), "{left:?}");
}

/// What the binary printed on stderr for a failed job.
struct Stderr(String);

impl Stderr {
    /// Whether the diagnostic holds `text`. The diagnostic is framed and wrapped to the terminal
    /// width, words cut where they are too long, so whitespace is ignored on both sides.
    fn says(&self, text: &str) -> bool {
        let squash = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace() && *c != '│')
                .collect()
        };
        squash(&self.0).contains(&squash(text))
    }
}

impl std::fmt::Display for Stderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job that fails with a cast error at its 30th row, about 30 ms after it starts, in every
/// attempt (no checkpoints: every attempt starts over).
const FAILS_SOON: &str = "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
       'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000', \
       'rows-per-second' = '1000');
     SELECT CAST(CASE WHEN id = 30 THEN 'boom' ELSE CAST(id AS STRING) END AS BIGINT) FROM gen;";

/// The error of [`FAILS_SOON`], the cause of every failure below.
const CAUSE: &str = "For input string: 'boom' (casting to BIGINT)";

/// Runs `job` through the binary under the given restart settings; returns the exit status's
/// success, the number of restarts stderr reports and stderr.
fn run_failing_job(name: &str, restart: &[(&str, &str)], job: &str) -> (bool, usize, Stderr) {
    let dir = temp_dir(name);
    let mut script = String::new();
    for (k, v) in restart {
        script.push_str(&format!("SET '{k}' = '{v}';\n"));
    }
    script.push_str(job);
    let file = dir.join("fails.sql");
    std::fs::write(&file, script).expect("script written");
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(&file)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let restarts = stderr
        .lines()
        .filter(|l| l.starts_with("streamsql: the job failed (") && l.contains("restarting in"))
        .count();
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.success(), restarts, Stderr(stderr.into_owned()))
}

#[test]
fn restart_strategy_none_fails_the_job_at_the_first_failure() {
    let (ok, restarts, stderr) = run_failing_job(
        "restart-none",
        &[("restart-strategy.type", "none")],
        FAILS_SOON,
    );
    assert!(!ok, "a failed job exits non-zero: {stderr}");
    assert_eq!(restarts, 0, "{stderr}");
    assert!(stderr.says(CAUSE), "{stderr}");
}

#[test]
fn restart_strategy_none_fails_with_recovery_suppressed_by_no_restart() {
    let (ok, _, stderr) = run_failing_job(
        "restart-none-msg",
        &[("restart-strategy.type", "none")],
        FAILS_SOON,
    );
    assert!(!ok);
    assert!(
        stderr.says("Recovery is suppressed by NoRestartBackoffTimeStrategy"),
        "{stderr}"
    );
    assert!(stderr.says(CAUSE), "{stderr}");
}

#[test]
fn restart_strategy_fixed_delay_restarts_attempts_times_then_fails() {
    let (ok, restarts, stderr) = run_failing_job(
        "restart-fixed",
        &[
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "2"),
            ("restart-strategy.fixed-delay.delay", "10 ms"),
        ],
        FAILS_SOON,
    );
    assert!(!ok, "{stderr}");
    assert_eq!(restarts, 2, "{stderr}");
    assert!(
        stderr.says(
            "Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy(\
             maxNumberRestartAttempts=2, backoffTimeMS=10) Caused by:"
        ),
        "{stderr}"
    );
    assert!(stderr.says(CAUSE), "{stderr}");
}

#[test]
fn restart_strategy_failure_rate_restarts_until_the_rate_is_exceeded_then_fails() {
    let (ok, restarts, stderr) = run_failing_job(
        "restart-failure-rate",
        &[
            ("restart-strategy.type", "failure-rate"),
            (
                "restart-strategy.failure-rate.max-failures-per-interval",
                "2",
            ),
            (
                "restart-strategy.failure-rate.failure-rate-interval",
                "1 min",
            ),
            ("restart-strategy.failure-rate.delay", "10 ms"),
        ],
        FAILS_SOON,
    );
    assert!(!ok, "{stderr}");
    assert_eq!(restarts, 2, "{stderr}");
    assert!(
        stderr.says(
            "Recovery is suppressed by FailureRateRestartBackoffTimeStrategy(\
             FailureRateRestartBackoffTimeStrategy(failuresIntervalMS=60000,backoffTimeMS=10,\
             maxFailuresPerInterval=2) Caused by:"
        ),
        "{stderr}"
    );
    assert!(stderr.says(CAUSE), "{stderr}");
}

#[test]
fn restart_strategy_exponential_delay_restarts_attempts_before_reset_backoff_times_then_fails() {
    let (ok, restarts, stderr) = run_failing_job(
        "restart-exponential",
        &[
            ("restart-strategy.type", "exponential-delay"),
            (
                "restart-strategy.exponential-delay.initial-backoff",
                "10 ms",
            ),
            ("restart-strategy.exponential-delay.max-backoff", "40 ms"),
            (
                "restart-strategy.exponential-delay.backoff-multiplier",
                "2.0",
            ),
            ("restart-strategy.exponential-delay.jitter-factor", "0"),
            (
                "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                "3",
            ),
        ],
        FAILS_SOON,
    );
    assert!(!ok, "{stderr}");
    assert_eq!(restarts, 3, "{stderr}");
    assert!(
        stderr.says(
            "Recovery is suppressed by ExponentialDelayRestartBackoffTimeStrategy(\
             initialBackoffMS=10, maxBackoffMS=40, backoffMultiplier=2.0, \
             resetBackoffThresholdMS=3600000, jitterFactor=0.0, attemptsBeforeResetBackoff=3, \
             currentRestartAttempt="
        ),
        "{stderr}"
    );
    assert!(stderr.says(CAUSE), "{stderr}");
}

#[test]
fn restart_strategy_exponential_delay_counts_the_failure_of_every_restarted_attempt() {
    for run in 0..10 {
        let (ok, restarts, stderr) = run_failing_job(
            &format!("restart-exponential-immediate-{run}"),
            &[
                ("restart-strategy.type", "exponential-delay"),
                (
                    "restart-strategy.exponential-delay.initial-backoff",
                    "10 ms",
                ),
                ("restart-strategy.exponential-delay.max-backoff", "10 ms"),
                ("restart-strategy.exponential-delay.jitter-factor", "0"),
                (
                    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                    "3",
                ),
            ],
            // Fails in well under a millisecond after each restart.
            "SELECT CAST(x AS INT) FROM (VALUES ('1'), ('A-77')) AS t(x);",
        );
        assert!(!ok, "{stderr}");
        assert_eq!(restarts, 3, "run {run}: {stderr}");
    }
}

/// With checkpoints, each restarted attempt resumes from the latest one, and the SELECT reports
/// where its result resumes: a consumer that cuts its changes there holds every row before the
/// failing one exactly once, however often the job restarted.
#[test]
fn restarted_attempts_resume_the_select_result_where_their_checkpoint_left_it() {
    let dir = temp_dir("restart-select");
    let mut s = session(
        &dir,
        "20 ms",
        &[
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "2"),
            ("restart-strategy.fixed-delay.delay", "10 ms"),
        ],
    );
    let sql = "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', \
                 'fields.id.end' = '100000', 'rows-per-second' = '500');
               SELECT CAST(CASE WHEN id = 150 THEN 'boom' ELSE CAST(id AS STRING) END \
                 AS BIGINT) FROM gen;";
    let (job, job_dir) = start(&mut s, &dir, sql);
    let mut selects: Vec<_> = job
        .select_schemas()
        .into_iter()
        .map(|s| (s, Vec::new()))
        .collect();
    let err = common::consume(job, &mut selects).expect_err("the third failure is final");
    assert!(
        err.to_string()
            .contains("Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy"),
        "{err}"
    );
    let v = stats(&job_dir).expect("statistics");
    assert_eq!(
        count(&v, "restored"),
        2,
        "each restart restored a checkpoint: {v:#}"
    );
    let ids: Vec<i64> = selects[0]
        .1
        .iter()
        .map(|c| match c.row.first() {
            Some(streamsql::engine::value::Value::BigInt(i)) => *i,
            other => panic!("a BIGINT, not {other:?}"),
        })
        .collect();
    // The rows before the failing one, each once and in order (those sharing the failing row's
    // batch never get out).
    assert!(!ids.is_empty() && ids.len() < 150, "{ids:?}");
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<i64>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn web_checkpoints_history_bounds_the_history_and_the_configuration_shows_the_backend() {
    let dir = temp_dir("history");
    let mut s = session(
        &dir,
        "10 ms",
        &[
            ("web.checkpoints.history", "3"),
            ("state.backend.type", "hashmap"),
        ],
    );
    let (job, job_dir) = start(&mut s, &dir, PACED_INSERT);
    let v = wait_for_stats(&job_dir, "six completed checkpoints", |v| {
        count(v, "completed") >= 6
    });
    cancel(job);
    let entries = history(&v);
    assert_eq!(entries.len(), 3, "{entries:?}");
    // The newest three, with no gap.
    let newest = v["latest"]["completed"]["id"].as_u64().expect("latest id");
    assert!(
        entries.last().is_some_and(|e| e.id >= newest),
        "{entries:?}"
    );
    assert_eq!(entries[2].id - entries[0].id, 2, "{entries:?}");
    let config = CheckpointStatsTracker::load(&stats_file(&job_dir))
        .expect("statistics")
        .config_json();
    assert_eq!(config["state_backend"], "HashMapStateBackend", "{config:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
