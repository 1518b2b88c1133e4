//! Differential tests of the join operators against plain batch joins.
//!
//! - `StreamingJoin` (INNER, LEFT, RIGHT, FULL, with and without a residual condition) is fed a
//!   random valid changelog on both inputs (inserts as `+I`/`+U`, retractions of live rows as
//!   `-U`/`-D`, NULL keys, duplicate rows) in random batches; its changelog folded into a table
//!   must equal the batch join of the rows still live, and no row may ever be retracted more
//!   often than it was added.
//! - `IntervalJoin` is fed random out-of-order rows on both inputs with a watermark
//!   `max_ts - delay` after every row, the delay larger than the out-of-orderness so that no row
//!   is ever late; its output (append-only) must equal the batch interval join, outer rows
//!   padded, once the final watermark has expired every row.
//! - Both, checkpointed after a random prefix and restored as two subtasks (the keyed state split
//!   by key group, the rows routed by their key's group), go on to emit what one subtask does.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use streamsql_engine::expr::functions::CmpOp;
use streamsql_engine::expr::{Expr, ScalarFunction};
use streamsql_engine::metrics::TaskMetrics;
use streamsql_engine::operator::{Operator, Output, TaskContext};
use streamsql_engine::operators::interval_join::{IntervalJoin, IntervalJoinSpec};
use streamsql_engine::operators::join::{JoinSpec, JoinType, StreamingJoin};
use streamsql_engine::types::DataType;
use streamsql_engine::value::{Change, Row, RowKind, Value};

fn ctx() -> TaskContext {
    TaskContext {
        operator_id: 9,
        operator_name: "test".into(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: 128,
        metrics: Arc::new(TaskMetrics::new()),
        state: Default::default(),
    }
}

const TYPES: [JoinType; 4] = [
    JoinType::Inner,
    JoinType::LeftOuter,
    JoinType::RightOuter,
    JoinType::FullOuter,
];

/// `left.v <= right.v` over the joined row (k, v, k, v).
fn residual() -> Expr {
    Expr::Call {
        func: ScalarFunction::Cmp(CmpOp::LtEq),
        args: vec![Expr::Column(1), Expr::Column(3)],
        ret: DataType::Boolean,
    }
}

/// Folds a changelog into a multiset; None when a row is retracted more often than added.
fn fold(changes: &[Change]) -> Option<BTreeMap<String, i64>> {
    let mut table: BTreeMap<String, i64> = BTreeMap::new();
    for c in changes {
        let n = table.entry(format!("{:?}", c.row)).or_default();
        *n += if c.kind.is_addition() { 1 } else { -1 };
        if *n < 0 {
            return None;
        }
    }
    table.retain(|_, n| *n > 0);
    Some(table)
}

/// The batch join of `left` and `right` rows (k, v, ...) on k (NULL never matches).
fn batch_join(
    left: &[Row],
    right: &[Row],
    jt: JoinType,
    matches: impl Fn(&Row, &Row) -> bool,
    width: usize,
) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let joins = |l: &Row, r: &Row| !l[0].is_null() && l[0] == r[0] && matches(l, r);
    for l in left {
        let mut any = false;
        for r in right.iter().filter(|r| joins(l, r)) {
            any = true;
            *out.entry(format!("{:?}", [l.clone(), r.clone()].concat()))
                .or_default() += 1;
        }
        if !any && jt.left_is_outer() {
            let mut row = l.clone();
            row.resize(2 * width, Value::Null);
            *out.entry(format!("{row:?}")).or_default() += 1;
        }
    }
    if jt.right_is_outer() {
        for r in right {
            if !left.iter().any(|l| joins(l, r)) {
                let mut row = vec![Value::Null; width];
                row.extend_from_slice(r);
                *out.entry(format!("{row:?}")).or_default() += 1;
            }
        }
    }
    out
}

/// One random step of a two-sided changelog: (side, insert or retract, key, value, pick, kind).
type Step = (usize, bool, Option<i32>, i32, usize, bool);

fn step() -> impl Strategy<Value = Step> {
    (
        0..2usize,
        prop::bool::weighted(0.65),
        prop::option::weighted(0.9, 0..4i32),
        0..3i32,
        any::<usize>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn regular_join_folds_to_the_batch_join(
        steps in prop::collection::vec(step(), 1..120),
        jt in 0..4usize,
        with_residual in any::<bool>(),
        batch in 1..6usize,
    ) {
        let jt = TYPES[jt];
        let spec = JoinSpec {
            join_type: jt,
            left_keys: vec![0],
            right_keys: vec![0],
            left_width: 2,
            right_width: 2,
            residual: with_residual.then(residual),
        };
        let mut op = StreamingJoin::new(spec, &ctx()).expect("valid spec");
        let mut live: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
        let mut input: Vec<(usize, Change)> = Vec::new();
        for (side, insert, k, v, pick, kind) in steps {
            if insert || live[side].is_empty() {
                let row = vec![k.map_or(Value::Null, Value::Int), Value::Int(v)];
                live[side].push(row.clone());
                let kind = if kind { RowKind::Insert } else { RowKind::UpdateAfter };
                input.push((side, Change::new(kind, row)));
            } else {
                let row = live[side].swap_remove(pick % live[side].len());
                let kind = if kind { RowKind::Delete } else { RowKind::UpdateBefore };
                input.push((side, Change::new(kind, row)));
            }
        }
        let mut out = Output::new();
        // Consecutive changes of one side go in one batch of at most `batch` changes.
        let mut i = 0;
        while i < input.len() {
            let side = input[i].0;
            let mut b = Vec::new();
            while i < input.len() && input[i].0 == side && b.len() < batch {
                b.push(input[i].1.clone());
                i += 1;
            }
            op.on_batch(side, b, &mut out).expect("join");
        }
        let folded = fold(&out.changes);
        prop_assert!(folded.is_some(), "a row was retracted more often than added");
        let expected = batch_join(
            &live[0],
            &live[1],
            jt,
            |l, r| !with_residual || l[1].as_i64() <= r[1].as_i64(),
            2,
        );
        prop_assert_eq!(folded.unwrap_or_default(), expected);
        if jt == JoinType::Inner {
            let (l, r) = op.hot_keys();
            let keys = |rows: &[Row]| {
                let ks: std::collections::BTreeSet<i64> =
                    rows.iter().filter_map(|r| r[0].as_i64()).collect();
                ks.len()
            };
            prop_assert_eq!((l, r), (keys(&live[0]), keys(&live[1])), "no state beyond the live rows");
        }
    }

    #[test]
    fn interval_join_equals_the_batch_interval_join(
        rows in prop::collection::vec((0..2usize, prop::option::weighted(0.9, 0..3i32), 0..40i64), 1..100),
        jt in 0..4usize,
        lower in -8..=0i64,
        upper in 0..=8i64,
        with_residual in any::<bool>(),
    ) {
        let jt = TYPES[jt];
        // Out-of-orderness at most 10 ms: timestamps drift upwards with the arrival index.
        let delay = 11;
        let spec = IntervalJoinSpec {
            join: JoinSpec {
                join_type: jt,
                left_keys: vec![0],
                right_keys: vec![0],
                left_width: 3,
                right_width: 3,
                residual: with_residual.then(|| Expr::Call {
                    func: ScalarFunction::Cmp(CmpOp::LtEq),
                    args: vec![Expr::Column(1), Expr::Column(4)],
                    ret: DataType::Boolean,
                }),
            },
            left_time: 2,
            right_time: 2,
            lower,
            upper,
        };
        let mut op = IntervalJoin::new(spec, &ctx()).expect("valid spec");
        let mut out = Output::new();
        let mut sides: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
        let mut max_ts = i64::MIN;
        for (i, (side, k, jitter)) in rows.into_iter().enumerate() {
            let ts = 1000 + i64::try_from(i).unwrap_or(0) * 3 + jitter / 4;
            let v = Value::Int(i32::try_from(jitter % 3).unwrap_or(0));
            let row = vec![k.map_or(Value::Null, Value::Int), v, Value::Timestamp(ts)];
            sides[side].push(row.clone());
            op.on_batch(side, vec![Change::insert(row)], &mut out).expect("join");
            max_ts = max_ts.max(ts);
            op.on_watermark(max_ts - delay, &mut out).expect("watermark");
        }
        op.on_watermark(i64::MAX, &mut out).expect("final watermark");
        prop_assert!(out.changes.iter().all(|c| c.kind == RowKind::Insert));
        prop_assert_eq!(op.keys(), 0, "every row expired");
        let folded = fold(&out.changes).unwrap_or_default();
        let time = |r: &Row| r[2].as_timestamp_millis().unwrap_or(0);
        let expected = batch_join(
            &sides[0],
            &sides[1],
            jt,
            |l, r| {
                let d = time(l) - time(r);
                d >= lower && d <= upper && (!with_residual || l[1].as_i64() <= r[1].as_i64())
            },
            3,
        );
        prop_assert_eq!(folded, expected);
    }
}

/// One input of a rescaling run: a change on a side, or a watermark for every subtask.
#[derive(Clone, Debug)]
enum Input {
    Row(usize, Change),
    Watermark(i64),
}

/// Feeds `inputs` to one operator per key-group half (`ops.len()` 1 or 2), routing each row by
/// its key's group as the hash exchange does; returns every output change.
fn feed_routed(ops: &mut [Box<dyn Operator>], inputs: &[Input]) -> Vec<Change> {
    let mut out = Output::new();
    for i in inputs {
        match i {
            Input::Row(side, c) => {
                let hash = streamsql_engine::state::row_key_hash(&c.row[..1]);
                let group = streamsql_engine::keygroup::key_group(hash, 128);
                let target = if ops.len() == 1 {
                    0
                } else {
                    usize::from(group >= 64)
                };
                ops[target]
                    .on_batch(*side, vec![c.clone()], &mut out)
                    .expect("join");
            }
            Input::Watermark(w) => {
                for op in ops.iter_mut() {
                    op.on_watermark(*w, &mut out).expect("watermark");
                }
            }
        }
    }
    for op in ops.iter_mut() {
        op.on_watermark(i64::MAX, &mut out)
            .expect("final watermark");
    }
    out.changes
}

/// Runs `make`'s operator over a prefix of `inputs`, checkpoints it, restores the checkpoint
/// split by key group into two operators, and checks that they go on to emit what the original
/// does (folded with the prefix's output: the two subtasks' outputs interleave in no particular
/// order).
fn check_rescaled(
    make: &dyn Fn(&TaskContext) -> Box<dyn Operator>,
    inputs: &[Input],
    cut: usize,
) -> std::result::Result<(), TestCaseError> {
    use streamsql_engine::state::{
        restore_operator, snapshot_now, standalone_context, BackendKind,
    };
    let ctx_with = || TaskContext {
        state: standalone_context(BackendKind::HashMap, 1 << 20),
        ..ctx()
    };
    let ctx_a = ctx_with();
    let mut a = vec![make(&ctx_a)];
    let mut prefix = Output::new();
    for i in &inputs[..cut] {
        match i {
            Input::Row(side, c) => a[0]
                .on_batch(*side, vec![c.clone()], &mut prefix)
                .expect("join"),
            Input::Watermark(w) => a[0].on_watermark(*w, &mut prefix).expect("watermark"),
        }
    }
    let (blob, snap) =
        snapshot_now(a[0].as_mut(), ctx_a.state.store.as_ref(), 1).expect("snapshot");
    let mut halves: Vec<Box<dyn Operator>> = Vec::new();
    for half in 0..2u16 {
        let ctx_b = ctx_with();
        let mut b = make(&ctx_b);
        let part: Vec<_> = snap
            .iter()
            .cloned()
            .map(|mut s| {
                s.records.retain(|r| (r.key_group >= 64) == (half == 1));
                s
            })
            .collect();
        b.restore_rescaled(&[&blob]).expect("operator state");
        restore_operator(b.as_mut(), ctx_b.state.store.as_ref(), &[], part).expect("restore");
        halves.push(b);
    }
    // The continuation may retract what the prefix emitted: fold both together.
    let whole = fold(&[prefix.changes.clone(), feed_routed(&mut a, &inputs[cut..])].concat());
    let split = fold(&[prefix.changes, feed_routed(&mut halves, &inputs[cut..])].concat());
    prop_assert!(whole.is_some());
    prop_assert_eq!(whole, split);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    #[test]
    fn joins_restored_at_two_subtasks_go_on_like_one(
        rows in prop::collection::vec((0..2usize, prop::option::weighted(0.9, 0..6i32), 0..30i64, any::<bool>()), 1..80),
        jt in 0..4usize,
        cut_at in any::<prop::sample::Index>(),
    ) {
        let jt = TYPES[jt];
        // Regular join: inserts and retractions of earlier rows of the same side.
        let mut live: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
        let mut regular = Vec::new();
        let mut interval = Vec::new();
        let mut max_ts = 0;
        for (i, (side, k, jitter, retract)) in rows.iter().enumerate() {
            let key = k.map_or(Value::Null, Value::Int);
            if *retract && !live[*side].is_empty() {
                let row = live[*side].remove(0);
                regular.push(Input::Row(*side, Change::new(RowKind::Delete, row)));
            } else {
                let row = vec![key.clone(), Value::Int(i32::try_from(*jitter).unwrap_or(0))];
                live[*side].push(row.clone());
                regular.push(Input::Row(*side, Change::insert(row)));
            }
            let ts = 1000 + i64::try_from(i).unwrap_or(0) * 3 + jitter;
            interval.push(Input::Row(*side, Change::insert(vec![key, Value::Int(0), Value::Timestamp(ts)])));
            max_ts = std::cmp::max(max_ts, ts);
            if i % 4 == 3 {
                interval.push(Input::Watermark(max_ts - 40));
            }
        }
        let spec = JoinSpec {
            join_type: jt,
            left_keys: vec![0],
            right_keys: vec![0],
            left_width: 2,
            right_width: 2,
            residual: None,
        };
        let make_regular = |c: &TaskContext| -> Box<dyn Operator> {
            Box::new(StreamingJoin::new(spec.clone(), c).expect("valid spec"))
        };
        check_rescaled(&make_regular, &regular, cut_at.index(regular.len() + 1))?;
        let ispec = IntervalJoinSpec {
            join: JoinSpec { left_width: 3, right_width: 3, ..spec.clone() },
            left_time: 2,
            right_time: 2,
            lower: -5,
            upper: 7,
        };
        let make_interval = |c: &TaskContext| -> Box<dyn Operator> {
            Box::new(IntervalJoin::new(ispec.clone(), c).expect("valid spec"))
        };
        check_rescaled(&make_interval, &interval, cut_at.index(interval.len() + 1))?;
    }
}
