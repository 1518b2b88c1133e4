//! The two parts of a checkpoint of one `GroupAggregate` subtask (COUNT and SUM over BIGINT
//! keys), measured directly on the operator and its store (figures go to docs/performance.md).
//!
//! For each total state size, the state is built and checkpointed once; then, ten times, 10 000
//! keys are updated and a checkpoint is taken. Timed separately: the synchronous part
//! (`snapshot_state` and `begin_keyed_snapshot`), the flush of the written keys that the task
//! then encodes between batches (`continue_keyed_snapshot`), and the asynchronous part (applying
//! the flush to the store and producing the snapshot: full, or the delta with incremental
//! checkpoints). Printed: p50 and max in milliseconds.
//!
//! `cargo bench --bench checkpoint_parts` (set `SIZES=100000,1000000` to choose the state sizes).

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

const CHANGED: i64 = 10_000;
const ROUNDS: usize = 10;

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

/// One checkpoint: (synchronous part, deferred flush, asynchronous part).
fn checkpoint(
    op: &mut GroupAggregate,
    store: &Arc<SubtaskStore>,
    id: u64,
) -> (Duration, Duration, Duration) {
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
            let _ = tx.send(r.map(|s| s.bytes.len()));
        }),
    );
    store.run_queued();
    rx.recv().expect("a result").expect("a snapshot");
    (sync, flush, start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let sizes: Vec<i64> = std::env::var("SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    println!(
        "| state keys | backend | checkpoints | sync p50 / max (ms) | flush between batches p50 / max (ms) | async p50 / max (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for &size in &sizes {
        for (kind, incremental) in [
            (BackendKind::HashMap, false),
            (BackendKind::HashMap, true),
            (BackendKind::Sled, true),
        ] {
            let ctx = context(kind, incremental);
            let store = ctx.state.store.clone().expect("a store");
            let spec = GroupAggregateSpec {
                key_cols: vec![0],
                aggs: vec![call("COUNT", None), call("SUM", Some(1))],
                input_append_only: true,
            };
            let mut op = GroupAggregate::new(spec, &ctx).expect("operator");
            let mut out = Output::new();
            feed(&mut op, 0..size, &mut out);
            checkpoint(&mut op, &store, 1);
            let (mut syncs, mut flushes, mut asyncs) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                // A different stretch of keys each round, spread over the whole state.
                let offset = (round as i64 * 7919) % size.max(1);
                feed(
                    &mut op,
                    (0..CHANGED).map(|i| (offset + i * (size / CHANGED).max(1)) % size),
                    &mut out,
                );
                let (s, f, a) = checkpoint(&mut op, &store, round as u64 + 2);
                syncs.push(s);
                flushes.push(f);
                asyncs.push(a);
            }
            syncs.sort();
            flushes.sort();
            asyncs.sort();
            let name = match (kind, incremental) {
                (BackendKind::HashMap, false) => "hashmap, full",
                (BackendKind::HashMap, true) => "hashmap, incremental",
                _ => "sled, incremental",
            };
            println!(
                "| {size} | {name} | {ROUNDS} x {CHANGED} changed keys | {:.3} / {:.3} | {:.2} / {:.2} | {:.1} / {:.1} |",
                ms(syncs[ROUNDS / 2]),
                ms(syncs[ROUNDS - 1]),
                ms(flushes[ROUNDS / 2]),
                ms(flushes[ROUNDS - 1]),
                ms(asyncs[ROUNDS / 2]),
                ms(asyncs[ROUNDS - 1]),
            );
        }
    }
}
