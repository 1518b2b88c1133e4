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
