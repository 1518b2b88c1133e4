//! Differential tests of the aggregation operators against plain batch computations.
//!
//! - `WindowAggregate` (TUMBLE, HOP, CUMULATE, SESSION) is fed random out-of-order streams through
//!   its operator hooks, with a watermark `max_ts - delay` after every event. The oracle groups
//!   the accepted events by key and window. For fixed windows an event is accepted into exactly
//!   the windows whose `end - 1` is above the watermark when it arrives (Flink's rule), which the
//!   oracle simulates with its own window enumeration. For sessions the delay exceeds the
//!   out-of-orderness by 2 ms, so no event is late and no event can touch a fired session: the
//!   streaming result must then equal batch sessionisation exactly.
//! - `GroupAggregate` is fed inserts and retractions; its changelog, folded into a table, must
//!   equal the batch aggregation of the rows still live.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use streamsql_engine::agg::{resolve_aggregate, AggCall};
use streamsql_engine::metrics::TaskMetrics;
use streamsql_engine::operator::{Operator, Output, TaskContext};
use streamsql_engine::operators::group_agg::{GroupAggregate, GroupAggregateSpec};
use streamsql_engine::operators::window_agg::{WindowAggSpec, WindowAggregate};
use streamsql_engine::types::DataType;
use streamsql_engine::value::{Change, Row, RowKind, Value};
use streamsql_engine::window::WindowKind;

fn ctx() -> TaskContext {
    TaskContext {
        operator_id: 7,
        operator_name: "test".into(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: 128,
        metrics: Arc::new(TaskMetrics::new()),
        state: Default::default(),
    }
}

fn call(name: &str, arg: Option<usize>, distinct: bool) -> AggCall {
    let types: Vec<DataType> = arg.iter().map(|_| DataType::Int).collect();
    let (kind, ret) = resolve_aggregate(name, &types, distinct).expect("valid call");
    AggCall {
        kind,
        arg,
        distinct,
        ret,
        filter: None,
    }
}

/// (count, sum, min, max) of a group.
type Aggs = (i64, i64, i64, i64);

/// (key, window start, window end) -> aggregates.
type WindowResult = BTreeMap<(i64, i64, i64), Aggs>;

fn fold_aggs(values: &[i64]) -> Aggs {
    (
        values.len() as i64,
        values.iter().sum(),
        *values.iter().min().expect("non-empty group"),
        *values.iter().max().expect("non-empty group"),
    )
}

#[derive(Clone, Debug)]
struct Event {
    key: i64,
    ts: i64,
    v: i64,
}

/// Events whose timestamps trail the running maximum by at most `disorder` ms.
fn events(disorder: i64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((0i64..3, 0i64..25, 0..=disorder, -50i64..50), 1..60).prop_map(|raw| {
        let mut t = -300;
        raw.into_iter()
            .map(|(key, gap, lag, v)| {
                t += gap;
                Event {
                    key,
                    ts: t - lag,
                    v,
                }
            })
            .collect()
    })
}

/// Runs the window aggregate; returns (key, start, end) -> aggs, checking each window fired at
/// the first watermark reaching `end - 1`, and the late-drop count.
fn run_window(window: WindowKind, events: &[Event], delay: i64) -> (WindowResult, u64) {
    let spec = WindowAggSpec {
        time_col: 1,
        window,
        key_cols: vec![0],
        aggs: vec![
            call("COUNT", None, false),
            call("SUM", Some(2), false),
            call("MIN", Some(2), false),
            call("MAX", Some(2), false),
        ],
        time_type: DataType::Timestamp(3),
    };
    let ctx = ctx();
    let mut op = WindowAggregate::new(spec, &ctx).expect("valid spec");
    let mut result = BTreeMap::new();
    let mut collect = |out: Output, prev_wm: i64, wm: i64| {
        for c in out.changes {
            assert_eq!(c.kind, RowKind::Insert);
            let r = c.row;
            let int = |v: &Value| v.as_i64().expect("integer");
            let ts = |v: &Value| v.as_timestamp_millis().expect("timestamp");
            let (start, end) = (ts(&r[1]), ts(&r[2]));
            assert_eq!(ts(&r[3]), end - 1);
            assert!(end - 1 <= wm, "window [{start}, {end}) fired early at {wm}");
            assert!(
                end - 1 > prev_wm,
                "window [{start}, {end}) fired late at {wm}"
            );
            let k = (int(&r[0]), start, end);
            let aggs = (int(&r[4]), int(&r[5]), int(&r[6]), int(&r[7]));
            assert!(
                result.insert(k, aggs).is_none(),
                "window {k:?} emitted twice"
            );
        }
    };
    let mut max_ts = i64::MIN;
    let mut wm = i64::MIN;
    for e in events {
        let mut out = Output::new();
        let row = vec![
            Value::BigInt(e.key),
            Value::Timestamp(e.ts),
            Value::Int(e.v as i32),
        ];
        op.on_batch(0, vec![Change::insert(row)], &mut out)
            .expect("insert accepted");
        assert!(out.changes.is_empty());
        max_ts = max_ts.max(e.ts);
        let next = max_ts - delay;
        if next > wm {
            let mut out = Output::new();
            op.on_watermark(next, &mut out).expect("watermark");
            assert_eq!(out.watermarks.last().map(|w| w.1), Some(next));
            collect(out, wm, next);
            wm = next;
        }
    }
    let mut out = Output::new();
    op.on_watermark(i64::MAX, &mut out)
        .expect("final watermark");
    op.on_end_of_input(&mut out).expect("end of input");
    collect(out, wm, i64::MAX);
    let late = TaskMetrics::get(&ctx.metrics.late_records_dropped);
    (result, late)
}

/// Every fixed window containing `ts`, by brute force over aligned starts.
fn oracle_windows(window: &WindowKind, ts: i64) -> Vec<(i64, i64)> {
    let (starts_every, lengths, offset): (i64, Vec<i64>, i64) = match *window {
        WindowKind::Tumble { size, offset } => (size, vec![size], offset),
        WindowKind::Hop {
            size,
            slide,
            offset,
        } => (slide, vec![size], offset),
        WindowKind::Cumulate {
            max_size,
            step,
            offset,
        } => (
            max_size,
            (1..=max_size / step).map(|k| k * step).collect(),
            offset,
        ),
        WindowKind::Session { .. } => unreachable!("sessions have their own oracle"),
    };
    let mut found = Vec::new();
    let mut start = offset - 2000 * starts_every;
    while start <= ts {
        for len in &lengths {
            if start <= ts && ts < start + len {
                found.push((start, start + len));
            }
        }
        start += starts_every;
    }
    found
}

fn oracle_fixed(window: &WindowKind, events: &[Event], delay: i64) -> (WindowResult, u64) {
    let mut groups: BTreeMap<(i64, i64, i64), Vec<i64>> = BTreeMap::new();
    let mut late = 0;
    let mut max_ts = i64::MIN;
    let mut wm = i64::MIN;
    for e in events {
        let open: Vec<_> = oracle_windows(window, e.ts)
            .into_iter()
            .filter(|(_, end)| end - 1 > wm)
            .collect();
        if open.is_empty() {
            late += 1;
        }
        for (start, end) in open {
            groups.entry((e.key, start, end)).or_default().push(e.v);
        }
        max_ts = max_ts.max(e.ts);
        wm = wm.max(max_ts - delay);
    }
    let result = groups
        .into_iter()
        .map(|(k, v)| (k, fold_aggs(&v)))
        .collect();
    (result, late)
}

fn oracle_sessions(events: &[Event], gap: i64) -> WindowResult {
    let mut by_key: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for e in events {
        by_key.entry(e.key).or_default().push((e.ts, e.v));
    }
    let mut result = BTreeMap::new();
    for (key, mut rows) in by_key {
        rows.sort();
        let mut i = 0;
        while i < rows.len() {
            let start = rows[i].0;
            let mut end = start + gap;
            let mut vals = vec![rows[i].1];
            i += 1;
            // Inclusive: an event exactly at the session end continues it.
            while i < rows.len() && rows[i].0 <= end {
                end = end.max(rows[i].0 + gap);
                vals.push(rows[i].1);
                i += 1;
            }
            result.insert((key, start, end), fold_aggs(&vals));
        }
    }
    result
}

fn fixed_window() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        (1i64..60, -30i64..30).prop_map(|(size, offset)| WindowKind::Tumble { size, offset }),
        (1i64..20, 1i64..4, -30i64..30).prop_map(|(slide, k, offset)| WindowKind::Hop {
            size: slide * k,
            slide,
            offset
        }),
        (1i64..20, 1i64..30, 0i64..10).prop_map(|(slide, size, offset)| WindowKind::Hop {
            size,
            slide,
            offset
        }),
        (1i64..15, 1i64..5, -20i64..20).prop_map(|(step, k, offset)| WindowKind::Cumulate {
            max_size: step * k,
            step,
            offset
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fixed_windows_match_batch_with_flinks_lateness(
        window in fixed_window(),
        evs in events(40),
        delay in 0i64..30,
    ) {
        let (got, got_late) = run_window(window.clone(), &evs, delay);
        let (want, want_late) = oracle_fixed(&window, &evs, delay);
        prop_assert_eq!(got, want);
        prop_assert_eq!(got_late, want_late);
    }

    #[test]
    fn sessions_match_batch_when_nothing_is_late(
        gap in 1i64..40,
        extra in 0i64..20,
        evs in events(30),
    ) {
        // `events(30)` trails the running maximum by at most 30 ms; the delay exceeds that by 2.
        let delay = 30 + 2 + extra;
        let (got, late) = run_window(WindowKind::Session { gap }, &evs, delay);
        prop_assert_eq!(late, 0);
        prop_assert_eq!(got, oracle_sessions(&evs, gap));
    }
}

/// One step of an updating input: insert a row, or retract the live row at an index.
#[derive(Clone, Debug)]
enum Step {
    Insert { key: i64, v: i64 },
    Delete(usize),
    Update(usize, i64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0i64..4, -5i64..5).prop_map(|(key, v)| Step::Insert { key, v }),
            1 => any::<prop::sample::Index>().prop_map(|i| Step::Delete(i.index(usize::MAX))),
            1 => (any::<prop::sample::Index>(), -5i64..5)
                .prop_map(|(i, v)| Step::Update(i.index(usize::MAX), v)),
        ],
        1..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn group_aggregate_changelog_folds_to_batch_result(steps in steps()) {
        let spec = GroupAggregateSpec {
            key_cols: vec![0],
            aggs: vec![
                call("COUNT", None, false),
                call("SUM", Some(1), false),
                call("MIN", Some(1), false),
                call("MAX", Some(1), false),
                call("COUNT", Some(1), true),
            ],
            input_append_only: false,
        };
        let mut op = GroupAggregate::new(spec, &ctx()).expect("valid spec");
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut input = Vec::new();
        let row = |k: i64, v: i64| vec![Value::BigInt(k), Value::Int(v as i32)];
        for s in steps {
            match s {
                Step::Insert { key, v } => {
                    live.push((key, v));
                    input.push(Change::insert(row(key, v)));
                }
                Step::Delete(i) if !live.is_empty() => {
                    let (k, v) = live.swap_remove(i % live.len());
                    input.push(Change::new(RowKind::Delete, row(k, v)));
                }
                Step::Update(i, nv) if !live.is_empty() => {
                    let j = i % live.len();
                    let (k, v) = live[j];
                    live[j] = (k, nv);
                    input.push(Change::new(RowKind::UpdateBefore, row(k, v)));
                    input.push(Change::new(RowKind::UpdateAfter, row(k, nv)));
                }
                _ => {}
            }
        }
        // Split into a few batches: per-record semantics must not depend on batching.
        let mut out = Output::new();
        for chunk in input.chunks(7) {
            op.on_batch(0, chunk.to_vec(), &mut out).expect("accepted");
        }
        let mut table: Vec<Row> = Vec::new();
        for c in out.changes {
            if c.kind.is_addition() {
                table.push(c.row);
            } else {
                let pos = table.iter().position(|r| *r == c.row);
                prop_assert!(pos.is_some(), "retraction of a row not in the table: {:?}", c.row);
                if let Some(p) = pos {
                    table.swap_remove(p);
                }
            }
        }
        table.sort();
        let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (k, v) in &live {
            groups.entry(*k).or_default().push(*v);
        }
        let want: Vec<Row> = groups
            .into_iter()
            .map(|(k, vals)| {
                let (n, sum, min, max) = fold_aggs(&vals);
                let mut distinct = vals.clone();
                distinct.sort();
                distinct.dedup();
                vec![
                    Value::BigInt(k),
                    Value::BigInt(n),
                    Value::Int(sum as i32),
                    Value::Int(min as i32),
                    Value::Int(max as i32),
                    Value::BigInt(distinct.len() as i64),
                ]
            })
            .collect();
        prop_assert_eq!(table, want);
        let live_keys: BTreeSet<i64> = live.iter().map(|(k, _)| *k).collect();
        prop_assert_eq!(op.hot_keys(), live_keys.len());
    }
}
