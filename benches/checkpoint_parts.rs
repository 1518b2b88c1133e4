//! The parts of a checkpoint of one `GroupAggregate` subtask (COUNT and SUM over BIGINT keys),
//! measured directly on the operator and its store (figures go to docs/performance.md).
//!
//! For each total state size, the state is built and checkpointed once; then, ten times, a
//! number of keys spread over the whole state is updated and a checkpoint is taken. Timed
//! separately: the synchronous part (`snapshot_state` and `begin_keyed_snapshot`), the flush of
//! the written keys that the task then encodes between batches (`continue_keyed_snapshot`), and
//! the asynchronous part (applying the flush to the store and producing the snapshot file's
//! bytes: full, or the delta with incremental checkpoints). Also reported: the size of what a
//! checkpoint writes, the whole checkpoint's duration, and the time to restore the last
//! checkpoint (its full snapshot, or its chain) into a new operator. Printed: p50 and max (of ten,
//! the max is the p99 and above) in milliseconds. With incremental checkpoints, when the store
//! finds the chain due for compaction, the chain is compacted as the task's background job does
//! it (decode the chain's files, merge, encode; without the file I/O), off the checkpoint path:
//! its duration and the compacted file's size are reported separately.
//!
//! `cargo bench --bench checkpoint_parts`. Environment: `SIZES=100000,1000000` (state sizes),
//! `CHANGED=10000` (keys updated per checkpoint), `ROUNDS=10` (checkpoints after the first; 25
//! includes a compaction), `MODES=full,incremental,sled` (which of the
//! hashmap backend with full snapshots, the hashmap backend with incremental checkpoints and the
//! sled backend with incremental checkpoints to run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamsql::engine::agg::{resolve_aggregate, AggCall};
use streamsql::engine::metrics::TaskMetrics;
use streamsql::engine::operator::{Operator, Output, TaskContext};
use streamsql::engine::operators::group_agg::{GroupAggregate, GroupAggregateSpec};
use streamsql::engine::state::store::SubtaskStore;
use streamsql::engine::state::{BackendKind, KeyedDelta, StateBackendConfig, StateContext};
use streamsql::engine::types::DataType;
use streamsql::engine::value::{Change, Value};
use streamsql_storage::KeyGroupRange;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Checkpoints after the first, unless `ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 10;

fn call(name: &str, arg: Option<usize>) -> AggCall {
    let types: Vec<DataType> = arg.iter().map(|_| DataType::BigInt).collect();
    let (kind, ret) = resolve_aggregate(name, &types, false).expect("a known aggregate");
    AggCall {
        kind,
        arg,
        distinct: false,
        ret,
        filter: None,
    }
}

fn context(kind: BackendKind, incremental: bool) -> TaskContext {
    let config = StateBackendConfig {
        kind,
        memory_budget: 1 << 34,
        local_dir: None,
        incremental,
        local_recovery: None,
        sled: Default::default(),
    };
    let store = SubtaskStore::new(config.clone(), KeyGroupRange::new(0, 127), "bench");
    TaskContext {
        operator_id: 1,
        operator_name: "GroupAggregate".into(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: 128,
        metrics: Arc::new(TaskMetrics::new()),
        state: StateContext {
            config,
            store: Some(Arc::new(store)),
            checkpointing: true,
            ttl: None,
            latency: None,
        },
    }
}

fn feed(op: &mut GroupAggregate, keys: impl Iterator<Item = i64>, out: &mut Output) {
    let mut batch = Vec::with_capacity(1024);
    for k in keys {
        batch.push(Change::insert(vec![Value::BigInt(k), Value::BigInt(k)]));
        if batch.len() == 1024 {
            op.on_batch(0, std::mem::take(&mut batch), out)
                .expect("batch");
            out.changes.clear();
        }
    }
    if !batch.is_empty() {
        op.on_batch(0, batch, out).expect("batch");
        out.changes.clear();
    }
}

/// One checkpoint: its parts' durations and the snapshot file's bytes.
struct Taken {
    sync: Duration,
    flush: Duration,
    asynchronous: Duration,
    snapshot: streamsql_storage::EncodedSnapshot,
}

fn checkpoint(op: &mut GroupAggregate, store: &Arc<SubtaskStore>, id: u64) -> Taken {
    let start = Instant::now();
    op.snapshot_state(id).expect("operator state");
    op.begin_keyed_snapshot().expect("flush begins");
    let sync = start.elapsed();
    let start = Instant::now();
    let mut delta = KeyedDelta::new();
    while !op
        .continue_keyed_snapshot(4096, &mut delta)
        .expect("flush continues")
    {}
    let flush = start.elapsed();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit_snapshot(
        id,
        delta,
        false,
        streamsql_storage::Compression::None,
        Box::new(move |r: streamsql::engine::state::store::SnapshotResult| {
            let _ = tx.send(r);
        }),
    );
    store.run_queued();
    let snapshot = rx.recv().expect("a result").expect("a snapshot");
    Taken {
        sync,
        flush,
        asynchronous: start.elapsed(),
        snapshot,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn spec() -> GroupAggregateSpec {
    GroupAggregateSpec {
        key_cols: vec![0],
        aggs: vec![call("COUNT", None), call("SUM", Some(1))],
        input_append_only: true,
    }
}

/// p50 and max of `values`, in milliseconds.
fn p50_max(values: &mut [Duration]) -> (f64, f64) {
    values.sort();
    (ms(values[values.len() / 2]), ms(values[values.len() - 1]))
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
}

fn main() {
    let sizes: Vec<i64> = env_list("SIZES")
        .map(|v| v.iter().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let changed: i64 = std::env::var("CHANGED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(DEFAULT_ROUNDS);
    let modes = env_list("MODES").unwrap_or_else(|| {
        vec![
            "full".to_string(),
            "incremental".to_string(),
            "sled".to_string(),
        ]
    });
    println!(
        "| state keys | backend | checkpoints | sync p50 / max (ms) | flush between batches p50 / max (ms) | async p50 / max (ms) | whole checkpoint p50 / max (ms) | written p50 / max (bytes) | restore of the last (ms) | compactions (off the checkpoint path): count, max (ms), file (bytes) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &size in &sizes {
        for mode in &modes {
            let (kind, incremental, name) = match mode.as_str() {
                "full" => (BackendKind::HashMap, false, "hashmap, full"),
                "incremental" => (BackendKind::HashMap, true, "hashmap, incremental"),
                _ => (BackendKind::Sled, true, "sled, incremental"),
            };
            let ctx = context(kind, incremental);
            let store = ctx.state.store.clone().expect("a store");
            let mut op = GroupAggregate::new(spec(), &ctx).expect("operator");
            let mut out = Output::new();
            feed(&mut op, 0..size, &mut out);
            let first = checkpoint(&mut op, &store, 1);
            // The snapshots a restore of the newest checkpoint reads: its chain.
            let mut chain = vec![first.snapshot];
            let (mut syncs, mut flushes, mut asyncs, mut wholes, mut sizes_written) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut compactions, mut compaction_max, mut compacted_size) =
                (0usize, Duration::ZERO, 0usize);
            for round in 0..rounds {
                // A different stretch of keys each round, spread over the whole state.
                let offset = (round as i64 * 7919) % size.max(1);
                feed(
                    &mut op,
                    (0..changed).map(|i| (offset + i * (size / changed).max(1)) % size),
                    &mut out,
                );
                let t = checkpoint(&mut op, &store, round as u64 + 2);
                syncs.push(t.sync);
                flushes.push(t.flush);
                asyncs.push(t.asynchronous);
                wholes.push(t.sync + t.flush + t.asynchronous);
                sizes_written.push(t.snapshot.bytes.len());
                if t.snapshot.kind == streamsql_storage::SnapshotKind::Full {
                    chain.clear();
                }
                chain.push(t.snapshot);
                if incremental && store.compaction_due() {
                    let start = Instant::now();
                    let snapshots: Vec<_> = chain
                        .iter()
                        .map(|s| streamsql_storage::snapshot::decode(&s.bytes).expect("decodes"))
                        .collect();
                    let (base, through) = (snapshots[0].checkpoint_id, round as u64 + 2);
                    let merged = streamsql::engine::state::compaction::merge_encoded(
                        snapshots,
                        streamsql_storage::Compression::None,
                    )
                    .expect("merges");
                    compaction_max = compaction_max.max(start.elapsed());
                    compactions += 1;
                    compacted_size = merged.bytes.len();
                    assert!(store.compacted(base, through, merged.data_size));
                    chain = vec![merged];
                }
            }
            drop(op);
            drop(ctx);
            let restore = restore(kind, incremental, &chain);
            sizes_written.sort_unstable();
            let (s50, smax) = p50_max(&mut syncs);
            let (f50, fmax) = p50_max(&mut flushes);
            let (a50, amax) = p50_max(&mut asyncs);
            let (w50, wmax) = p50_max(&mut wholes);
            println!(
                "| {size} | {name} | {rounds} x {changed} changed keys | {s50:.3} / {smax:.3} | {f50:.2} / {fmax:.2} | {a50:.1} / {amax:.1} | {w50:.1} / {wmax:.1} | {} / {} | {:.0} | {compactions}, {:.0}, {compacted_size} |",
                sizes_written[rounds / 2],
                sizes_written[rounds - 1],
                ms(restore),
                ms(compaction_max),
            );
        }
    }
}

/// Restores `chain` (a full snapshot and its deltas) into a new operator, timed from the file
/// bytes to the operator holding every key.
fn restore(
    kind: BackendKind,
    incremental: bool,
    chain: &[streamsql_storage::EncodedSnapshot],
) -> Duration {
    let ctx = context(kind, incremental);
    let mut op = GroupAggregate::new(spec(), &ctx).expect("operator");
    let operator = op.snapshot_state(0).expect("operator state");
    let start = Instant::now();
    let snapshots = chain
        .iter()
        .map(|s| streamsql_storage::snapshot::decode(&s.bytes).expect("decodes"))
        .collect();
    streamsql::engine::state::restore_operator(
        &mut op,
        ctx.state.store.as_ref(),
        &operator,
        snapshots,
    )
    .expect("restores");
    start.elapsed()
}
