//! Unaligned checkpoints under back pressure, end to end through the runtime: a fast source feeds
//! a slow operator over a rebalance edge, so that a barrier sent in band waits behind a full
//! channel. With the same checkpoint timeout, aligned checkpoints expire ("Checkpoint expired
//! before completing.") while unaligned ones complete with their in-flight data persisted; an
//! aligned start with `execution.checkpointing.aligned-checkpoint-timeout` switches to unaligned.
//! Every run must still see every row exactly once (the operator's sum).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamsql::engine::checkpoint::stats::{stats_file, CheckpointStatsTracker, JsonValue};
use streamsql::engine::checkpoint::CheckpointConfig;
use streamsql::engine::connectors::{Source, SourceFactory, SourceStatus};
use streamsql::engine::error::{EngineError, Result};
use streamsql::engine::graph::{DataflowGraph, NodeKind, Partitioning};
use streamsql::engine::operator::{Operator, OperatorFactory, Output, TaskContext};
use streamsql::engine::runtime::checkpointing::CheckpointSetup;
use streamsql::engine::runtime::{self, RuntimeSettings};
use streamsql::engine::types::{DataType, Field, Schema};
use streamsql::engine::value::{Change, Value};

/// Rows per batch; the source emits one batch per poll.
const BATCH: usize = 10;
const ROWS: u64 = 240;
/// The slow operator's time per batch: a full channel of 8 batches takes 1.2 s to drain.
const SLOW: Duration = Duration::from_millis(150);

/// Emits 1..=ROWS, one batch per poll; its position is the next value.
struct Counting {
    next: u64,
}

impl Source for Counting {
    fn poll(&mut self, out: &mut Output, _max: usize) -> Result<SourceStatus> {
        if self.next > ROWS {
            return Ok(SourceStatus::Finished);
        }
        for _ in 0..BATCH {
            if self.next > ROWS {
                break;
            }
            out.push(Change::insert(vec![Value::BigInt(self.next as i64)]));
            self.next += 1;
        }
        Ok(SourceStatus::More)
    }

    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        Ok(self.next.to_le_bytes().to_vec())
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| EngineError::data("bad position"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

struct CountingFactory;

impl SourceFactory for CountingFactory {
    fn create(&self, _ctx: &TaskContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(Counting { next: 1 }))
    }
}

/// Sums what it sees, slowly; its state is the sum, and at the end it reports the sum.
struct SlowSum {
    sum: u64,
    result: Arc<AtomicU64>,
}

impl Operator for SlowSum {
    fn on_batch(&mut self, _: usize, batch: Vec<Change>, _: &mut Output) -> Result<()> {
        std::thread::sleep(SLOW);
        for c in batch {
            if let Some(Value::BigInt(v)) = c.row.first() {
                self.sum += *v as u64;
            }
        }
        Ok(())
    }

    fn on_end_of_input(&mut self, _: &mut Output) -> Result<()> {
        self.result.store(self.sum, Ordering::SeqCst);
        Ok(())
    }

    fn snapshot_state(&mut self, _: u64) -> Result<Vec<u8>> {
        Ok(self.sum.to_le_bytes().to_vec())
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if let Ok(bytes) = <[u8; 8]>::try_from(state) {
            self.sum = u64::from_le_bytes(bytes);
        }
        Ok(())
    }
}

fn graph(result: Arc<AtomicU64>) -> DataflowGraph {
    let schema = Schema::new(vec![Field::new("x", DataType::BigInt)]);
    let mut g = DataflowGraph::new();
    let src = g.add_node(
        "Counting",
        "counting".into(),
        1,
        schema.clone(),
        NodeKind::Source(Arc::new(CountingFactory)),
        &[],
    );
    let factory: Arc<dyn OperatorFactory> = Arc::new(move |_: &TaskContext| {
        Ok(Box::new(SlowSum {
            sum: 0,
            result: result.clone(),
        }) as Box<dyn Operator>)
    });
    g.add_node(
        "SlowSum",
        "slow-sum".into(),
        1,
        schema,
        NodeKind::Operator(factory),
        &[(src, Partitioning::Rebalance)],
    );
    g
}

/// Runs the pipeline to its end with `config`; returns the statistics' REST body.
fn run(name: &str, config: CheckpointConfig) -> JsonValue {
    let job_dir: PathBuf =
        std::env::temp_dir().join(format!("streamsql-unaligned-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let result = Arc::new(AtomicU64::new(0));
    let unaligned = config.unaligned;
    let settings = RuntimeSettings {
        batch_size: BATCH,
        channel_capacity: 8,
        buffer_timeout: Some(Duration::ZERO),
        checkpointing: Some(CheckpointSetup {
            config,
            job_dir: job_dir.clone(),
            restore: None,
            allow_non_restored_state: false,
        }),
        ..RuntimeSettings::default()
    };
    runtime::run(&graph(result.clone()), &settings).expect("the job finishes");
    assert_eq!(
        result.load(Ordering::SeqCst),
        ROWS * (ROWS + 1) / 2,
        "{name}: every row exactly once"
    );
    let stats = CheckpointStatsTracker::load(&stats_file(&job_dir)).expect("statistics");
    let _ = std::fs::remove_dir_all(&job_dir);
    assert_eq!(
        stats.config_json()["unaligned_checkpoints"],
        unaligned,
        "{name}: the configuration view"
    );
    stats.to_rest_json()
}

fn config(unaligned: bool, aligned_timeout: Duration) -> CheckpointConfig {
    CheckpointConfig {
        interval: Some(Duration::from_millis(200)),
        timeout: Duration::from_millis(600),
        tolerable_failed: 1000,
        unaligned,
        aligned_checkpoint_timeout: aligned_timeout,
        history_size: 100,
        ..CheckpointConfig::default()
    }
}

/// The periodic checkpoints of a run's history (not the final checkpoint of the finished job).
fn periodic(stats: &JsonValue) -> Vec<JsonValue> {
    stats["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["id"].as_u64().is_some_and(|id| id != u64::MAX))
        .collect()
}

fn completed_of_type(history: &[JsonValue], kind: &str) -> Vec<JsonValue> {
    history
        .iter()
        .filter(|c| c["status"] == "COMPLETED" && c["checkpoint_type"] == kind)
        .cloned()
        .collect()
}

#[test]
fn under_back_pressure_aligned_checkpoints_expire_and_unaligned_ones_complete() {
    let aligned = periodic(&run("aligned", config(false, Duration::ZERO)));
    let expired = aligned
        .iter()
        .filter(|c| {
            c["status"] == "FAILED"
                && c["failure_message"] == "Checkpoint expired before completing."
        })
        .count();
    assert!(expired > 0, "aligned checkpoints expire: {aligned:#?}");
    assert!(
        completed_of_type(&aligned, "UNALIGNED_CHECKPOINT").is_empty(),
        "nothing is unaligned when it is off"
    );

    let unaligned = periodic(&run("unaligned", config(true, Duration::ZERO)));
    let done = completed_of_type(&unaligned, "UNALIGNED_CHECKPOINT");
    assert!(
        !done.is_empty(),
        "unaligned checkpoints complete: {unaligned:#?}"
    );
    assert!(
        done.iter()
            .any(|c| c["persisted_data"].as_u64().is_some_and(|b| b > 0)),
        "the overtaken batches are persisted: {done:#?}"
    );
}

#[test]
fn an_aligned_start_switches_to_unaligned_at_the_aligned_checkpoint_timeout() {
    let mut cfg = config(true, Duration::from_millis(150));
    cfg.timeout = Duration::from_millis(900);
    let history = periodic(&run("switch", cfg));
    let done = completed_of_type(&history, "UNALIGNED_CHECKPOINT");
    assert!(
        !done.is_empty(),
        "checkpoints that could not align in time complete unaligned: {history:#?}"
    );
}

#[test]
fn a_restore_replays_the_in_flight_data_of_an_unaligned_checkpoint_exactly() {
    use streamsql::engine::checkpoint::coordinator::Retention;
    use streamsql::engine::runtime::checkpointing::read_checkpoint;

    let job_dir: PathBuf =
        std::env::temp_dir().join(format!("streamsql-unaligned-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    let settings = |restore| RuntimeSettings {
        batch_size: BATCH,
        channel_capacity: 8,
        buffer_timeout: Some(Duration::ZERO),
        checkpointing: Some(CheckpointSetup {
            config: CheckpointConfig {
                retention: Retention::RetainOnCancellation,
                // Every checkpoint stays, so the one seen with in-flight data can be restored.
                num_retained: 1000,
                ..config(true, Duration::ZERO)
            },
            job_dir: job_dir.clone(),
            restore,
            allow_non_restored_state: false,
        }),
        ..RuntimeSettings::default()
    };

    // Cancel the back-pressured job once a checkpoint holding in-flight data completed.
    let first = runtime::start(&graph(Arc::new(AtomicU64::new(0))), &settings(None))
        .expect("the job starts");
    let with_in_flight = |job_dir: &PathBuf| {
        let stats = CheckpointStatsTracker::load(&stats_file(job_dir)).ok()?;
        let latest = stats.to_rest_json()["latest"]["completed"].clone();
        let persisted = latest["persisted_data"].as_u64()?;
        (persisted > 0).then(|| latest["id"].as_u64().zip(Some(persisted)))?
    };
    let mut waited = Duration::ZERO;
    let (id, persisted) = loop {
        if let Some(found) = with_in_flight(&job_dir) {
            break found;
        }
        assert!(
            waited < Duration::from_secs(60),
            "a checkpoint with in-flight data completes"
        );
        std::thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    };
    first.cancel();
    first.wait().expect("the cancelled job ends");

    let restored =
        read_checkpoint(&job_dir.join(format!("chk-{id}"))).expect("the checkpoint reads");
    let result = Arc::new(AtomicU64::new(0));
    runtime::run(&graph(result.clone()), &settings(Some(Arc::new(restored))))
        .expect("the resumed job finishes");
    let _ = std::fs::remove_dir_all(&job_dir);
    assert_eq!(
        result.load(Ordering::SeqCst),
        ROWS * (ROWS + 1) / 2,
        "the restored sum, the {persisted} bytes of replayed in-flight rows and the rest of the \
         source: every row exactly once"
    );
}
