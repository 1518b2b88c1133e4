//! The runtime's contract seen from outside: failures stop the whole job, cancellation is clean,
//! buffers flush on the buffer timeout, and the command line keeps stdout for result rows.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use streamsql::engine::connectors::{Source, SourceFactory, SourceStatus};
use streamsql::engine::error::{EngineError, Result};
use streamsql::engine::graph::{DataflowGraph, NodeKind, Partitioning};
use streamsql::engine::operator::{Operator, OperatorFactory, Output, TaskContext};
use streamsql::engine::runtime::{self, JobOutcome, RuntimeSettings};
use streamsql::engine::types::{DataType, Field, Schema};
use streamsql::engine::value::{Change, Value};

/// A source that never ends: one row per poll.
struct Endless;

impl Source for Endless {
    fn poll(&mut self, out: &mut Output, _max: usize) -> Result<SourceStatus> {
        out.push(Change::insert(vec![Value::BigInt(1)]));
        std::thread::sleep(Duration::from_millis(1));
        Ok(SourceStatus::More)
    }
}

struct EndlessFactory;

impl SourceFactory for EndlessFactory {
    fn create(&self, _ctx: &TaskContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(Endless))
    }
}

/// An operator that panics on its first batch.
struct Panics;

impl Operator for Panics {
    fn on_batch(&mut self, _: usize, _: Vec<Change>, _: &mut Output) -> Result<()> {
        panic!("operator bug");
    }
}

fn schema() -> Schema {
    Schema::new(vec![Field::new("x", DataType::BigInt)])
}

fn graph_with(op: Arc<dyn OperatorFactory>, parallelism: usize) -> DataflowGraph {
    let mut g = DataflowGraph::new();
    let src = g.add_node(
        "Endless",
        "endless".into(),
        parallelism,
        schema(),
        NodeKind::Source(Arc::new(EndlessFactory)),
        &[],
    );
    g.add_node(
        "Op",
        "op".into(),
        parallelism,
        schema(),
        NodeKind::Operator(op),
        &[(src, Partitioning::Rebalance)],
    );
    g
}

#[test]
fn a_panicking_operator_fails_the_job_and_stops_every_thread() {
    let factory: Arc<dyn OperatorFactory> =
        Arc::new(|_: &TaskContext| Ok(Box::new(Panics) as Box<dyn Operator>));
    let g = graph_with(factory, 2);
    // The sources never end: the job only returns because the failure stopped them.
    let err = runtime::run(&g, &RuntimeSettings::default()).expect_err("the job must fail");
    assert!(
        err.to_string().contains("operator bug"),
        "the panic message is reported: {err}"
    );
}

#[test]
fn an_operator_error_fails_the_job() {
    struct Fails;
    impl Operator for Fails {
        fn on_batch(&mut self, _: usize, _: Vec<Change>, _: &mut Output) -> Result<()> {
            Err(EngineError::eval("bad value"))
        }
    }
    let factory: Arc<dyn OperatorFactory> =
        Arc::new(|_: &TaskContext| Ok(Box::new(Fails) as Box<dyn Operator>));
    let err = runtime::run(&graph_with(factory, 1), &RuntimeSettings::default())
        .expect_err("the job must fail");
    assert_eq!(err.to_string(), "bad value");
}

#[test]
fn cancel_stops_an_unbounded_job_cleanly() {
    struct Discard;
    impl Operator for Discard {
        fn on_batch(&mut self, _: usize, _: Vec<Change>, _: &mut Output) -> Result<()> {
            Ok(())
        }
    }
    let factory: Arc<dyn OperatorFactory> =
        Arc::new(|_: &TaskContext| Ok(Box::new(Discard) as Box<dyn Operator>));
    let job = runtime::start(&graph_with(factory, 2), &RuntimeSettings::default()).expect("starts");
    let cancel = job.cancel_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel();
    });
    assert_eq!(
        job.wait().expect("a cancelled job is no failure"),
        JobOutcome::Cancelled
    );
}

#[test]
fn a_runtime_cast_failure_fails_the_query() {
    let mut s = common::session(1);
    let err = common::run_script(
        &mut s,
        "SELECT CAST(x AS INT) FROM (VALUES ('1'), ('A-77')) AS t(x)",
    )
    .err()
    .expect("CAST of 'A-77' to INT fails the job, as in Flink");
    assert!(err.to_string().contains("A-77"), "{err}");
}

#[test]
fn the_buffer_timeout_flushes_rows_of_an_unbounded_source() {
    let mut s = common::session(1);
    let sql = "CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5');
               SELECT x FROM t;";
    let exec = s.execute("t.sql", sql).expect("plans");
    let job = exec.job.expect("a SELECT runs a job");
    let cancel = job.cancel_handle();
    let mut seen = 0;
    let outcome = job
        .for_each_change(|_, _, _| {
            seen += 1;
            // Far fewer rows than a batch: they can only arrive because of the buffer timeout.
            if seen == 2 {
                cancel.cancel();
            }
        })
        .expect("cancelled, not failed");
    assert_eq!(outcome, JobOutcome::Cancelled);
    assert!(seen >= 2);
}

#[test]
fn the_command_line_prints_only_rows_on_stdout_and_fails_with_a_diagnostic() {
    let dir = std::env::temp_dir().join(format!("streamsql-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ok = dir.join("ok.sql");
    std::fs::write(&ok, "SELECT 1 AS a, 'x' AS b;").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(&ok)
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "+I[1, x]\n");

    let bad = dir.join("bad.sql");
    std::fs::write(&bad, "SELECT nope FROM (VALUES (1)) AS t(yes);").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Column 'nope' not found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_cancels_a_running_pipeline_cleanly() {
    let dir = std::env::temp_dir().join(format!("streamsql-sigint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sql = dir.join("endless.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '100');
         CREATE TABLE sink (x BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT x FROM t;",
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(&sql)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("status").is_none(),
        "an unbounded job keeps running"
    );
    let killed = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success(), "a cancelled job exits 0: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the recorder saw: (subtask, value) pairs.
type Seen = Arc<std::sync::Mutex<Vec<(usize, i64)>>>;

/// Records, per subtask, the values it received.
struct Recorder {
    seen: Arc<std::sync::Mutex<Vec<(usize, i64)>>>,
    subtask: usize,
}

impl Operator for Recorder {
    fn on_batch(&mut self, _: usize, batch: Vec<Change>, _: &mut Output) -> Result<()> {
        let mut seen = self.seen.lock().expect("not poisoned");
        for c in batch {
            if let Some(Value::BigInt(v)) = c.row.first() {
                seen.push((self.subtask, *v));
            }
        }
        Ok(())
    }
}

/// Adds a VALUES source of `rows` (parallelism 1) to `g`.
fn values_source(g: &mut DataflowGraph, rows: Vec<Vec<Value>>) -> usize {
    g.add_node(
        "Values",
        "values".into(),
        1,
        schema(),
        NodeKind::Source(Arc::new(
            streamsql::engine::connectors::values::ValuesSourceFactory::new(rows),
        )),
        &[],
    )
}

/// A factory of [`Recorder`]s writing into `seen`.
fn recorder(seen: Seen) -> Arc<dyn OperatorFactory> {
    Arc::new(move |ctx: &TaskContext| {
        Ok(Box::new(Recorder {
            seen: seen.clone(),
            subtask: ctx.subtask_index,
        }) as Box<dyn Operator>)
    })
}

fn exchange(partitioning: Partitioning) -> Vec<(usize, i64)> {
    let rows: Vec<Vec<Value>> = (0..100).map(|i| vec![Value::BigInt(i)]).collect();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut g = DataflowGraph::new();
    let src = values_source(&mut g, rows);
    let factory = recorder(seen.clone());
    g.add_node(
        "Recorder",
        "recorder".into(),
        3,
        schema(),
        NodeKind::Operator(factory),
        &[(src, partitioning)],
    );
    let settings = RuntimeSettings {
        batch_size: 7,
        ..RuntimeSettings::default()
    };
    runtime::run(&g, &settings).expect("job succeeds");
    let mut v = seen.lock().expect("not poisoned").clone();
    v.sort();
    v
}

#[test]
fn broadcast_sends_every_row_to_every_subtask() {
    let seen = exchange(Partitioning::Broadcast);
    assert_eq!(seen.len(), 300);
    for s in 0..3 {
        assert_eq!(seen.iter().filter(|(t, _)| *t == s).count(), 100);
    }
}

#[test]
fn rebalance_spreads_rows_round_robin() {
    let seen = exchange(Partitioning::Rebalance);
    assert_eq!(seen.len(), 100);
    for s in 0..3 {
        let n = seen.iter().filter(|(t, _)| *t == s).count();
        assert!((33..=34).contains(&n), "subtask {s} got {n}");
    }
}

#[test]
fn hash_sends_each_key_to_the_subtask_owning_its_key_group() {
    use streamsql::engine::keygroup;
    let seen = exchange(Partitioning::Hash(vec![0]));
    assert_eq!(seen.len(), 100);
    for (subtask, v) in seen {
        let value = Value::BigInt(v);
        let group = keygroup::key_group(keygroup::key_hash([&value]), 128);
        assert_eq!(keygroup::operator_index(group, 3, 128), subtask);
    }
}

#[test]
fn operator_ids_are_stable_across_runs_of_the_same_sql() {
    let sql =
        "CREATE TABLE t (k INT, v INT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
               CREATE TABLE s (k INT, n BIGINT) WITH ('connector' = 'blackhole');
               INSERT INTO s SELECT k, COUNT(*) FROM t GROUP BY k;";
    let ids = |sql: &str| -> Vec<u64> {
        let mut s = common::session(2);
        let exec = s.execute("ids.sql", sql).expect("plans");
        let job = exec.job.expect("a job");
        let mut ids: Vec<u64> = job.metrics().iter().map(|m| m.operator_id).collect();
        job.wait().expect("runs");
        ids.dedup();
        ids
    };
    let first = ids(sql);
    assert_eq!(first, ids(sql));
    let other = ids(&sql.replace("COUNT(*)", "COUNT(v)"));
    assert_ne!(first, other, "a different query gets different ids");
}

#[test]
fn sink_parallelism_runs_the_print_sink_in_parallel_with_subtask_prefixes() {
    let dir = std::env::temp_dir().join(format!("streamsql-sinkp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sql = dir.join("p.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '6',
           'fields.x.kind' = 'sequence', 'fields.x.start' = '1', 'fields.x.end' = '6');
         CREATE TABLE p (x BIGINT) WITH ('connector' = 'print', 'sink.parallelism' = '2');
         INSERT INTO p SELECT x FROM t;",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(&sql)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut values: Vec<i64> = Vec::new();
    for line in text.lines() {
        let (prefix, row) = line.split_once("> ").expect("a subtask prefix");
        assert!(prefix == "1" || prefix == "2", "{line}");
        let v = row.trim_start_matches("+I[").trim_end_matches(']');
        values.push(v.parse().expect("a number"));
    }
    values.sort();
    assert_eq!(values, vec![1, 2, 3, 4, 5, 6]);
    assert!(
        text.contains("1> ") && text.contains("2> "),
        "both subtasks print: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_first_error_is_reported_not_the_closed_channels_it_leaves_behind() {
    // Regression: a failing task used to close its channels before recording its error, so a
    // downstream task could report "closed without end of stream" first.
    for _ in 0..30 {
        let mut s = common::session(2);
        let err = common::run_script(
            &mut s,
            "SELECT x / (x - x) FROM (VALUES (1), (2), (3)) AS t(x)",
        )
        .err()
        .expect("division by zero fails the job");
        assert!(err.to_string().contains("by zero"), "{err}");
    }
}

/// Fails on its first batch as long as `fail` is set, then clears it (a transient failure).
struct FailsOnce {
    fail: Arc<std::sync::atomic::AtomicBool>,
    always: bool,
}

impl Operator for FailsOnce {
    fn on_batch(&mut self, _: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        if self.always || self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::eval("transient failure"));
        }
        out.changes.extend(batch);
        Ok(())
    }
}

fn restart_graph(always: bool) -> (DataflowGraph, Seen) {
    let rows: Vec<Vec<Value>> = (0..10).map(|i| vec![Value::BigInt(i)]).collect();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut g = DataflowGraph::new();
    let src = values_source(&mut g, rows);
    let f: Arc<dyn OperatorFactory> = Arc::new(move |_: &TaskContext| {
        Ok(Box::new(FailsOnce {
            fail: fail.clone(),
            always,
        }) as Box<dyn Operator>)
    });
    let mid = g.add_node(
        "FailsOnce",
        "fails".into(),
        1,
        schema(),
        NodeKind::Operator(f),
        &[(src, Partitioning::Forward)],
    );
    let rec = recorder(seen.clone());
    g.add_node(
        "Recorder",
        "recorder".into(),
        1,
        schema(),
        NodeKind::Operator(rec),
        &[(mid, Partitioning::Forward)],
    );
    (g, seen)
}

/// Runtime settings with Flink's fixed-delay restart strategy.
fn fixed_delay(attempts: u32, delay_ms: i64) -> RuntimeSettings {
    use streamsql::engine::checkpoint::restart::FixedDelay;
    use streamsql::engine::checkpoint::RestartStrategy;
    RuntimeSettings {
        restart: Some(RestartStrategy::FixedDelay(
            FixedDelay::new(attempts, delay_ms).expect("valid"),
        )),
        ..RuntimeSettings::default()
    }
}

#[test]
fn a_restart_strategy_restarts_a_failed_job() {
    let (g, seen) = restart_graph(false);
    let settings = fixed_delay(3, 10);
    assert_eq!(
        runtime::run(&g, &settings).expect("restarted"),
        JobOutcome::Finished
    );
    assert_eq!(seen.lock().expect("not poisoned").len(), 10);
}

#[test]
fn an_exhausted_restart_strategy_fails_the_job_with_flinks_message() {
    let (g, _) = restart_graph(true);
    let settings = fixed_delay(2, 1);
    let err = runtime::run(&g, &settings).expect_err("gives up");
    let msg = err.to_string();
    assert!(
        msg.contains("Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy"),
        "{msg}"
    );
    assert!(msg.contains("transient failure"), "{msg}");
}

#[test]
fn a_fresh_run_of_the_same_pipeline_continues_checkpoint_ids() {
    // Regression: a second, non-resumed run numbered its checkpoints from 1 again, and retention
    // (which keeps the highest ids) deleted each of them in favour of the first run's last one.
    let dir = std::env::temp_dir().join(format!("streamsql-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sql = dir.join("p.sql");
    std::fs::write(
        &sql,
        format!(
            "SET 'execution.checkpointing.interval' = '20 ms';
             SET 'state.checkpoints.dir' = '{}/chk';
             SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';
             CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '200',
               'rows-per-second' = '100');
             CREATE TABLE s (x BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO s SELECT x FROM t;",
            dir.display()
        ),
    )
    .expect("write");
    let ids = || -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(dir.join("chk"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|job| {
                std::fs::read_dir(job.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .filter_map(|c| {
                c.file_name()
                    .to_string_lossy()
                    .strip_prefix("chk-")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        ids
    };
    // Each run is cancelled after a few checkpoints; the retention keeps them.
    let run = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamsql"))
            .arg("run")
            .arg(&sql)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("runs");
        std::thread::sleep(Duration::from_millis(300));
        let killed = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(killed.success());
        assert!(child.wait().expect("exits").success());
    };
    run();
    let after_one = ids();
    assert_eq!(after_one.len(), 1, "num-retained = 1: {after_one:?}");
    run();
    let after_two = ids();
    assert_eq!(after_two.len(), 1, "num-retained = 1: {after_two:?}");
    assert!(
        after_two[0] > after_one[0],
        "the second run's checkpoints follow the first run's: {after_one:?} then {after_two:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keyed_state_latency_is_sampled_per_state_and_operation_when_enabled() {
    let sql = |tracking: &str| {
        format!(
            "SET 'state.latency-track.keyed-state-enabled' = '{tracking}';
SET 'state.latency-track.sample-interval' = '10';
SET 'state.latency-track.history-size' = '16';
CREATE TABLE t (k INT) WITH ('connector' = 'datagen', 'number-of-rows' = '1000',
  'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '1000');
CREATE TABLE s (k INT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO s SELECT k, COUNT(*) FROM t GROUP BY k;"
        )
    };
    let histograms = |tracking: &str| {
        let mut s = common::session(1);
        let exec = s.execute("latency.sql", &sql(tracking)).expect("plans");
        let job = exec.job.expect("a job");
        let metrics: Vec<_> = job
            .metrics()
            .iter()
            .filter(|m| m.operator_name == "GroupAggregate")
            .map(|m| m.metrics.clone())
            .collect();
        job.wait().expect("runs");
        assert_eq!(metrics.len(), 1);
        metrics[0].state_latencies()
    };
    assert!(
        histograms("false").is_empty(),
        "nothing is tracked by default"
    );
    let tracked = histograms("true");
    let find = |name: &str| {
        tracked
            .iter()
            .find(|h| h.metric_name() == name)
            .unwrap_or_else(|| panic!("{name} is tracked"))
            .stats()
    };
    // Every row reads its key once and, each key being new, writes it once: one in ten of each
    // is timed; nothing is removed.
    let get = find("valueStateGetLatency");
    let update = find("valueStateUpdateLatency");
    assert_eq!((get.count, update.count), (100, 100));
    assert_eq!(find("valueStateClearLatency").count, 0);
    assert!(get.max >= get.min && get.max > 0, "{get:?}");
    assert!(get.p99 >= get.p50, "{get:?}");
    assert!(tracked.iter().all(|h| h.state == "group"));
}
