//! `GroupAggregate`: a non-windowed `GROUP BY` over an append-only or updating stream, emitting
//! Flink's retract changelog record by record (Flink's `GroupAggFunction` without mini-batch).
//!
//! Per key it keeps the accumulators and a count of live input rows. For each input record:
//! - a retraction (`-U`/`-D`) for a key without state is ignored (Flink does the same, since state
//!   may have been cleaned up);
//! - the first row of a key emits `+I key ++ aggs`;
//! - a later change emits `-U old` then `+U new`, or nothing when the aggregate row is unchanged;
//! - when the key's live row count drops to zero it emits `-D old` and forgets the key.
//!
//! Output rows are `key values ++ aggregate values`. With no key columns this is a global
//! aggregate over the single empty key.

use std::collections::HashMap;
use std::sync::Arc;

use crate::agg::{column, Accumulator, AggCall, AggregateCalls};
use crate::error::Result;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::value::{Change, Row, RowKind};

/// What the planner specifies for a `GroupAggregate`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupAggregateSpec {
    /// Input columns forming the group key, in output order.
    pub key_cols: Vec<usize>,
    /// The aggregate calls, in output order after the key.
    pub aggs: Vec<AggCall>,
    /// Whether the input carries only `+I` (MIN/MAX can then skip their multisets).
    pub input_append_only: bool,
}

/// The state of one group key.
#[derive(Clone, Debug)]
pub struct KeyState {
    /// Live input rows (additions minus retractions); the key goes away at zero.
    pub row_count: i64,
    /// One accumulator per aggregate call.
    pub accumulators: Vec<Accumulator>,
}

/// The keyed state of one subtask: group key -> accumulators.
#[derive(Clone, Debug, Default)]
pub struct GroupAggState {
    pub groups: HashMap<Row, KeyState>,
}

/// The non-windowed group aggregation operator.
pub struct GroupAggregate {
    key_cols: Vec<usize>,
    aggs: AggregateCalls,
    state: GroupAggState,
    /// Reused for the key of each record: lookups of existing keys borrow it as `&[Value]`.
    key_buf: Row,
    /// Reused for the aggregate values before the change.
    prev_buf: Row,
    /// Reused for the aggregate values after the change.
    next_buf: Row,
}

impl GroupAggregate {
    /// Builds the operator; fails when an aggregate call cannot produce its declared type.
    pub fn new(spec: GroupAggregateSpec, _ctx: &TaskContext) -> Result<Self> {
        let aggs = AggregateCalls::new(spec.aggs, spec.input_append_only)?;
        Ok(GroupAggregate {
            key_buf: Vec::with_capacity(spec.key_cols.len()),
            prev_buf: Vec::new(),
            next_buf: Vec::new(),
            key_cols: spec.key_cols,
            aggs,
            state: GroupAggState::default(),
        })
    }

    /// A factory building one `GroupAggregate` per subtask.
    pub fn factory(spec: GroupAggregateSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(GroupAggregate::new(spec.clone(), ctx)?))
        })
    }

    /// The keyed state, for inspection and snapshots.
    pub fn state(&self) -> &GroupAggState {
        &self.state
    }

    /// Replaces the keyed state, as when restoring.
    pub fn restore(&mut self, state: GroupAggState) {
        self.state = state;
    }

    fn output_row(&self, values: &[crate::value::Value]) -> Row {
        let mut row = Vec::with_capacity(self.key_buf.len() + values.len());
        row.extend_from_slice(&self.key_buf);
        row.extend_from_slice(values);
        row
    }

    fn process(&mut self, change: &Change, out: &mut Output) -> Result<()> {
        self.key_buf.clear();
        for &c in &self.key_cols {
            self.key_buf.push(column(&change.row, c)?.clone());
        }
        let is_add = change.kind.is_addition();
        let Some(ks) = self.state.groups.get_mut(self.key_buf.as_slice()) else {
            if !is_add {
                return Ok(());
            }
            let mut accumulators = self.aggs.create();
            self.aggs
                .accumulate(&mut accumulators, &change.row, false)?;
            self.next_buf.clear();
            self.aggs.values_into(&accumulators, &mut self.next_buf);
            out.emit(RowKind::Insert, self.output_row(&self.next_buf));
            self.state.groups.insert(
                self.key_buf.clone(),
                KeyState {
                    row_count: 1,
                    accumulators,
                },
            );
            return Ok(());
        };
        self.prev_buf.clear();
        self.aggs.values_into(&ks.accumulators, &mut self.prev_buf);
        self.aggs
            .accumulate(&mut ks.accumulators, &change.row, !is_add)?;
        ks.row_count += if is_add { 1 } else { -1 };
        if ks.row_count == 0 {
            self.state.groups.remove(self.key_buf.as_slice());
            out.emit(RowKind::Delete, self.output_row(&self.prev_buf));
            return Ok(());
        }
        self.next_buf.clear();
        self.aggs.values_into(&ks.accumulators, &mut self.next_buf);
        if self.next_buf == self.prev_buf {
            return Ok(());
        }
        out.emit(RowKind::UpdateBefore, self.output_row(&self.prev_buf));
        out.emit(RowKind::UpdateAfter, self.output_row(&self.next_buf));
        Ok(())
    }
}

impl Operator for GroupAggregate {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        for change in &batch {
            self.process(change, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::{resolve_aggregate, AggregateKind};
    use crate::metrics::TaskMetrics;
    use crate::types::DataType;
    use crate::value::Value;

    pub(crate) fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 1,
            operator_name: "GroupAggregate".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
        }
    }

    fn call(name: &str, arg: Option<(usize, DataType)>, distinct: bool) -> AggCall {
        let types: Vec<DataType> = arg.iter().map(|(_, t)| t.clone()).collect();
        let (kind, ret) = resolve_aggregate(name, &types, distinct).unwrap();
        AggCall {
            kind,
            arg: arg.map(|(i, _)| i),
            distinct,
            ret,
            filter: None,
        }
    }

    fn s(x: &str) -> Value {
        Value::string(x)
    }

    fn show(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{}{:?}", c.kind.short(), c.row))
            .collect()
    }

    fn run(op: &mut GroupAggregate, input: Vec<Change>) -> Vec<Change> {
        let mut out = Output::new();
        op.on_batch(0, input, &mut out).unwrap();
        out.changes
    }

    #[test]
    fn flink_changelog_for_sum() {
        let spec = GroupAggregateSpec {
            key_cols: vec![0],
            aggs: vec![call("SUM", Some((1, DataType::Int)), false)],
            input_append_only: true,
        };
        let mut op = GroupAggregate::new(spec, &ctx()).unwrap();
        let out = run(
            &mut op,
            vec![
                Change::insert(vec![s("a"), Value::Int(1)]),
                Change::insert(vec![s("a"), Value::Int(2)]),
                Change::insert(vec![s("a"), Value::Int(0)]),
                Change::insert(vec![s("b"), Value::Null]),
            ],
        );
        let expected = vec![
            (RowKind::Insert, vec![s("a"), Value::Int(1)]),
            (RowKind::UpdateBefore, vec![s("a"), Value::Int(1)]),
            (RowKind::UpdateAfter, vec![s("a"), Value::Int(3)]),
            // Adding 0 leaves the row unchanged: nothing is emitted.
            (RowKind::Insert, vec![s("b"), Value::Null]),
        ];
        let expected: Vec<Change> = expected
            .into_iter()
            .map(|(k, r)| Change::new(k, r))
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn retraction_to_zero_rows_deletes_the_key() {
        let spec = GroupAggregateSpec {
            key_cols: vec![0],
            aggs: vec![
                call("COUNT", None, false),
                call("MAX", Some((1, DataType::Int)), false),
            ],
            input_append_only: false,
        };
        let mut op = GroupAggregate::new(spec, &ctx()).unwrap();
        let out = run(
            &mut op,
            vec![
                // A retraction for an unknown key is ignored.
                Change::new(RowKind::Delete, vec![s("z"), Value::Int(1)]),
                Change::insert(vec![s("a"), Value::Int(5)]),
                Change::insert(vec![s("a"), Value::Int(7)]),
                Change::new(RowKind::UpdateBefore, vec![s("a"), Value::Int(7)]),
                Change::new(RowKind::UpdateAfter, vec![s("a"), Value::Int(6)]),
                Change::new(RowKind::Delete, vec![s("a"), Value::Int(5)]),
                Change::new(RowKind::Delete, vec![s("a"), Value::Int(6)]),
            ],
        );
        assert_eq!(
            show(&out),
            vec![
                "+I[String(\"a\"), BigInt(1), Int(5)]",
                "-U[String(\"a\"), BigInt(1), Int(5)]",
                "+U[String(\"a\"), BigInt(2), Int(7)]",
                "-U[String(\"a\"), BigInt(2), Int(7)]",
                "+U[String(\"a\"), BigInt(1), Int(5)]",
                "-U[String(\"a\"), BigInt(1), Int(5)]",
                "+U[String(\"a\"), BigInt(2), Int(6)]",
                "-U[String(\"a\"), BigInt(2), Int(6)]",
                "+U[String(\"a\"), BigInt(1), Int(6)]",
                "-D[String(\"a\"), BigInt(1), Int(6)]",
            ]
        );
        assert!(op.state().groups.is_empty());
    }

    #[test]
    fn global_aggregate_without_keys() {
        let spec = GroupAggregateSpec {
            key_cols: vec![],
            aggs: vec![call("COUNT", None, false)],
            input_append_only: true,
        };
        let mut op = GroupAggregate::new(spec, &ctx()).unwrap();
        let out = run(
            &mut op,
            vec![Change::insert(vec![s("x")]), Change::insert(vec![s("y")])],
        );
        assert_eq!(
            show(&out),
            vec!["+I[BigInt(1)]", "-U[BigInt(1)]", "+U[BigInt(2)]"]
        );
    }

    #[test]
    fn null_keys_group_together_and_filter_applies() {
        let mut count_paid = call("COUNT", None, false);
        count_paid.filter = Some(2);
        let spec = GroupAggregateSpec {
            key_cols: vec![0],
            aggs: vec![
                call("COUNT", None, false),
                call("COUNT", Some((1, DataType::Int)), false),
                count_paid,
            ],
            input_append_only: true,
        };
        let mut op = GroupAggregate::new(spec, &ctx()).unwrap();
        let t = Value::Boolean(true);
        let out = run(
            &mut op,
            vec![
                Change::insert(vec![Value::Null, Value::Int(1), t.clone()]),
                Change::insert(vec![Value::Null, Value::Null, Value::Boolean(false)]),
            ],
        );
        let last = out.last().unwrap();
        assert_eq!(last.kind, RowKind::UpdateAfter);
        assert_eq!(
            last.row,
            vec![
                Value::Null,
                Value::BigInt(2),
                Value::BigInt(1),
                Value::BigInt(1)
            ]
        );
    }

    #[test]
    fn bad_column_is_an_error_not_a_panic() {
        let spec = GroupAggregateSpec {
            key_cols: vec![5],
            aggs: vec![],
            input_append_only: true,
        };
        let mut op = GroupAggregate::new(spec, &ctx()).unwrap();
        let mut out = Output::new();
        assert!(op
            .on_batch(0, vec![Change::insert(vec![Value::Int(1)])], &mut out)
            .is_err());
        assert_eq!(AggregateKind::Sum.name(), "SUM");
    }
}
