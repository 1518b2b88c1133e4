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
//!
//! Checkpoints: the operator's whole state is the key -> (live row count, accumulators) map; the
//! previous aggregate row of a `-U` is recomputed from the accumulators, so nothing else is kept.
//! [`Operator::snapshot_state`] writes it as one deterministic blob (entries in the order of their
//! encoded keys), which [`Operator::restore_state`] reads back after checking it was written for
//! this operator's shape.

use std::collections::HashMap;
use std::sync::Arc;

use crate::agg::{column, Accumulator, AggCall, AggregateCalls};
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_values_into, put_ivarint,
    put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
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

/// The byte after the version byte of a `GroupAggregate` state blob, so that a blob of another
/// operator is refused instead of misread.
const STATE_MARKER: u8 = b'G';

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

    /// The state blob: version, marker, key column count, aggregate call count, entry count, then
    /// per key (in the order of the key's encoded bytes, never hash order) its values, live row
    /// count and accumulators.
    ///
    /// A full copy of the state on every checkpoint, O(state) in time and space; the keyed-state
    /// backend will replace it with incremental snapshots.
    fn encode_state(&self) -> Vec<u8> {
        let groups = &self.state.groups;
        // Entries are encoded into one scratch buffer and then copied out in key order: sorting
        // spans avoids a buffer per entry.
        let mut scratch = Vec::new();
        let mut spans = Vec::with_capacity(groups.len());
        for (key, ks) in groups {
            let start = scratch.len();
            put_values(key, &mut scratch);
            let key_end = scratch.len();
            put_ivarint(&mut scratch, ks.row_count);
            self.aggs.encode_state(&ks.accumulators, &mut scratch);
            spans.push((start, key_end, scratch.len()));
        }
        spans.sort_unstable_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
        let mut out = Vec::with_capacity(scratch.len() + 16);
        put_version(&mut out);
        out.push(STATE_MARKER);
        self.aggs.put_state_shape(self.key_cols.len(), &mut out);
        put_uvarint(&mut out, spans.len() as u64);
        for (start, _, end) in spans {
            out.extend_from_slice(&scratch[start..end]);
        }
        out
    }

    /// Reads a blob of [`GroupAggregate::encode_state`], checking it fits this operator.
    fn decode_state(&self, mut input: &[u8]) -> Result<GroupAggState> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a group aggregation"
            )));
        }
        self.aggs.check_state_shape(self.key_cols.len(), input)?;
        let key_len = self.key_cols.len();
        let n = get_len(input)?;
        // Every entry takes several bytes: a count beyond the input is corrupt, and checking it
        // first keeps a bad count from reserving a huge map.
        if n > input.len() {
            return Err(corrupt(format!(
                "{n} group keys announced but only {} bytes left",
                input.len()
            )));
        }
        let mut groups = HashMap::with_capacity(n);
        let mut key = Row::new();
        for _ in 0..n {
            get_values_into(input, &mut key)?;
            if key.len() != key_len {
                return Err(corrupt(format!(
                    "a group key has {} values, expected {key_len}",
                    key.len()
                )));
            }
            let row_count = get_ivarint(input)?;
            if row_count <= 0 {
                return Err(corrupt(format!(
                    "a group key has {row_count} live rows; a key without rows is not kept"
                )));
            }
            let accumulators = self.aggs.decode_state(input)?;
            let ks = KeyState {
                row_count,
                accumulators,
            };
            if groups.insert(std::mem::take(&mut key), ks).is_some() {
                return Err(corrupt("a group key appears twice"));
            }
        }
        expect_end(input)?;
        Ok(GroupAggState { groups })
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

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_state())
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            // No state was written for this operator: it starts fresh.
            self.state = GroupAggState::default();
            return Ok(());
        }
        // Decoded aside and swapped in only when whole, so a bad blob leaves the operator as it was.
        let restored = self.decode_state(state).map_err(|e| {
            EngineError::data(format!("cannot restore the GroupAggregate state: {e}"))
        })?;
        self.state = restored;
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

    /// Input rows: (k STRING, v INT, d DOUBLE); aggregates over an updating input, DISTINCT and
    /// retractable MIN/MAX included so every accumulator kind with extra state is covered.
    fn snapshot_spec(key_cols: Vec<usize>) -> GroupAggregateSpec {
        GroupAggregateSpec {
            key_cols,
            aggs: vec![
                call("COUNT", None, false),
                call("SUM", Some((1, DataType::Int)), false),
                call("MIN", Some((1, DataType::Int)), false),
                call("MAX", Some((2, DataType::Double)), false),
                call("COUNT", Some((1, DataType::Int)), true),
                call("AVG", Some((2, DataType::Double)), false),
            ],
            input_append_only: false,
        }
    }

    /// A random valid changelog, in batches: inserts, deletes and updates of live rows, and
    /// retractions of a key that never existed (which the operator ignores).
    fn random_batches(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<Vec<Change>> {
        use rand::Rng;
        let keys = [s("a"), s("b"), s("c"), s("d"), Value::Null];
        let fresh = |rng: &mut rand_chacha::ChaCha8Rng| -> Row {
            let v = if rng.gen_bool(0.1) {
                Value::Null
            } else {
                Value::Int(rng.gen_range(-5..=5))
            };
            let d = Value::Double(f64::from(rng.gen_range(-50i32..=50)) / 8.0);
            vec![keys[rng.gen_range(0..keys.len())].clone(), v, d]
        };
        let mut live: Vec<Row> = Vec::new();
        let mut batches = Vec::with_capacity(n);
        for _ in 0..n {
            let len = rng.gen_range(1..=8);
            let mut batch = Vec::with_capacity(len);
            for _ in 0..len {
                let pick = rng.gen_range(0..100);
                if pick < 15 && !live.is_empty() {
                    let i = rng.gen_range(0..live.len());
                    batch.push(Change::new(RowKind::Delete, live.swap_remove(i)));
                } else if pick < 35 && !live.is_empty() {
                    let i = rng.gen_range(0..live.len());
                    let old = live.swap_remove(i);
                    let new = fresh(rng);
                    batch.push(Change::new(RowKind::UpdateBefore, old));
                    batch.push(Change::new(RowKind::UpdateAfter, new.clone()));
                    live.push(new);
                } else if pick < 40 {
                    let ghost = vec![s("zz"), Value::Int(1), Value::Double(1.0)];
                    batch.push(Change::new(RowKind::Delete, ghost));
                } else {
                    let new = fresh(rng);
                    batch.push(Change::insert(new.clone()));
                    live.push(new);
                }
            }
            batches.push(batch);
        }
        batches
    }

    fn feed(op: &mut GroupAggregate, batches: &[Vec<Change>]) -> Vec<Change> {
        let mut out = Output::new();
        for batch in batches {
            op.on_batch(0, batch.clone(), &mut out).unwrap();
        }
        out.changes
    }

    #[test]
    fn restored_operator_continues_exactly_like_the_original() {
        use rand::{Rng, SeedableRng};
        let mut keys_at_cut = 0;
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let key_cols = if seed % 4 == 3 { vec![] } else { vec![0] };
            let spec = snapshot_spec(key_cols);
            let batches = random_batches(&mut rng, 40);
            let cut = rng.gen_range(0..=batches.len());
            let mut a = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
            feed(&mut a, &batches[..cut]);
            let blob = a.snapshot_state(1).unwrap();
            assert_eq!(
                a.snapshot_state(2).unwrap(),
                blob,
                "snapshots are repeatable"
            );
            keys_at_cut += a.state().groups.len();
            let mut b = GroupAggregate::new(spec, &ctx()).unwrap();
            b.restore_state(&blob).unwrap();
            // Hash maps of two instances iterate differently: equal bytes show key ordering.
            assert_eq!(b.snapshot_state(1).unwrap(), blob, "seed {seed}");
            let out_a = feed(&mut a, &batches[cut..]);
            let out_b = feed(&mut b, &batches[cut..]);
            assert_eq!(out_a, out_b, "seed {seed}, cut after batch {cut}");
            assert_eq!(a.snapshot_state(3).unwrap(), b.snapshot_state(3).unwrap());
        }
        // Most cuts leave several keys (of five) behind.
        assert!(keys_at_cut > 80, "{keys_at_cut}");
    }

    #[test]
    fn empty_state_restores_a_fresh_operator() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let batches = random_batches(&mut rng, 20);
        let spec = snapshot_spec(vec![0]);
        let mut fresh = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
        let mut restored = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
        restored.restore_state(&[]).unwrap();
        assert_eq!(feed(&mut fresh, &batches), feed(&mut restored, &batches));
        // A snapshot of an operator without keys round-trips too.
        let empty = GroupAggregate::new(spec.clone(), &ctx())
            .unwrap()
            .snapshot_state(1)
            .unwrap();
        let mut b = GroupAggregate::new(spec, &ctx()).unwrap();
        b.restore_state(&empty).unwrap();
        assert!(b.state().groups.is_empty());
    }

    #[test]
    fn corrupt_or_mismatched_state_is_refused_without_panicking() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let spec = snapshot_spec(vec![0]);
        let mut a = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
        feed(&mut a, &random_batches(&mut rng, 10));
        let blob = a.snapshot_state(1).unwrap();
        assert!(!a.state().groups.is_empty());

        let refused = |bytes: &[u8], spec: &GroupAggregateSpec| -> String {
            let mut b = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
            match b.restore_state(bytes) {
                Err(e @ EngineError::Data { .. }) => {
                    assert!(
                        b.state().groups.is_empty(),
                        "a refused blob restores nothing"
                    );
                    e.to_string()
                }
                other => panic!("expected a data error, got {other:?}"),
            }
        };
        for len in 1..blob.len() {
            let msg = refused(&blob[..len], &spec);
            assert!(msg.contains("GroupAggregate"), "{msg}");
        }
        let mut wrong_version = blob.clone();
        wrong_version[0] = 99;
        assert!(refused(&wrong_version, &spec).contains("format version 99"));
        let mut trailing = blob.clone();
        trailing.push(0);
        assert!(refused(&trailing, &spec).contains("trailing"));
        let mut fewer_calls = spec.clone();
        fewer_calls.aggs.pop();
        assert!(refused(&blob, &fewer_calls).contains("6 aggregate calls"));
        let mut other_calls = spec.clone();
        other_calls.aggs.swap(0, 1);
        refused(&blob, &other_calls);
        assert!(refused(&blob, &snapshot_spec(vec![])).contains("group key columns"));

        // Arbitrary damage may decode or not, but never panics.
        for _ in 0..2000 {
            let mut bytes = blob.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
            let mut b = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
            let _ = b.restore_state(&bytes);
        }

        // An operator that refused a blob keeps its own state.
        let before = a.snapshot_state(2).unwrap();
        assert!(a.restore_state(&blob[..blob.len() - 1]).is_err());
        assert_eq!(a.snapshot_state(3).unwrap(), before);
    }
}
