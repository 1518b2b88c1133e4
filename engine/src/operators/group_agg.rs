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
//! State: per key the accumulators and the live row count, in a [`KeyedState`] named `group`
//! (the previous aggregate row of a `-U` is recomputed from the accumulators, so nothing else is
//! kept). A checkpoint's synchronous part flushes only the keys changed since the previous one.
//!
//! With `table.exec.state.ttl` a key's state expires that long after its last update (stored as
//! `group-ttl`, with write times), as in Flink: a key whose state expired starts again with `+I`,
//! a retraction for it is ignored, and an update that leaves the aggregate row unchanged still
//! emits `-U`/`+U`, so that downstream operators with the same TTL do not expire the row early.
//! The sweeper runs on the operator's timer.
//! The operator state of a snapshot is the operator's shape (key columns and aggregate calls),
//! which a restore checks before it accepts any keyed entry.

use std::sync::Arc;

use crate::agg::{column, Accumulator, AggCall, AggregateCalls};
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_u8, put_ivarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec, StateNames};
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

/// The byte after the version byte of a `GroupAggregate` operator-state blob, so that a blob of
/// another operator is refused instead of misread.
const STATE_MARKER: u8 = b'G';
/// The names of the keyed state in snapshots, without and with a TTL.
const GROUP_STATE: StateNames = StateNames {
    plain: "group",
    with_ttl: "group-ttl",
};

/// How keys and values of the `group` state become bytes.
struct GroupCodec<'a> {
    aggs: &'a AggregateCalls,
    key_len: usize,
}

impl StateCodec<Row, KeyState> for GroupCodec<'_> {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, value: &KeyState, out: &mut Vec<u8>) {
        put_ivarint(out, value.row_count);
        self.aggs.encode_state(&value.accumulators, out);
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<KeyState> {
        let input = &mut bytes;
        let row_count = get_ivarint(input)?;
        if row_count <= 0 {
            return Err(corrupt(format!(
                "a group key has {row_count} live rows; a key without rows is not kept"
            )));
        }
        let accumulators = self.aggs.decode_state(input)?;
        expect_end(input)?;
        Ok(KeyState {
            row_count,
            accumulators,
        })
    }
}

/// The non-windowed group aggregation operator.
pub struct GroupAggregate {
    key_cols: Vec<usize>,
    aggs: AggregateCalls,
    groups: KeyedState<Row, KeyState>,
    /// Reused for the key of each record: lookups of existing keys borrow it as `&[Value]`.
    key_buf: Row,
    /// Reused for the aggregate values before the change.
    prev_buf: Row,
    /// Reused for the aggregate values after the change.
    next_buf: Row,
}

/// The codec of `op`'s state, borrowing only the fields it needs so the state stays mutable.
macro_rules! codec {
    ($op:expr) => {
        GroupCodec {
            aggs: &$op.aggs,
            key_len: $op.key_cols.len(),
        }
    };
}

impl GroupAggregate {
    /// Builds the operator; fails when an aggregate call cannot produce its declared type.
    pub fn new(spec: GroupAggregateSpec, ctx: &TaskContext) -> Result<Self> {
        let aggs = AggregateCalls::new(spec.aggs, spec.input_append_only)?;
        Ok(GroupAggregate {
            key_buf: Vec::with_capacity(spec.key_cols.len()),
            prev_buf: Vec::new(),
            next_buf: Vec::new(),
            key_cols: spec.key_cols,
            aggs,
            groups: KeyedState::with_ttl(
                GROUP_STATE,
                &ctx.state,
                ctx.max_parallelism,
                &ctx.metrics,
            ),
        })
    }

    /// A factory building one `GroupAggregate` per subtask.
    pub fn factory(spec: GroupAggregateSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(GroupAggregate::new(spec.clone(), ctx)?))
        })
    }

    /// Keys held in memory (with the `hashmap` backend: every key).
    pub fn hot_keys(&self) -> usize {
        self.groups.hot_entries().count()
    }

    /// The operator-state blob: version, marker and the operator's shape.
    fn encode_shape(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        put_version(&mut out);
        out.push(STATE_MARKER);
        self.aggs.put_state_shape(self.key_cols.len(), &mut out);
        out
    }

    /// Checks a blob of [`GroupAggregate::encode_shape`] against this operator.
    fn check_shape(&self, mut input: &[u8]) -> Result<()> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a group aggregation"
            )));
        }
        self.aggs.check_state_shape(self.key_cols.len(), input)?;
        expect_end(input)
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
        let codec = codec!(self);
        let Some(ks) = self.groups.get_mut(&codec, self.key_buf.as_slice())? else {
            if !is_add {
                return Ok(());
            }
            let mut accumulators = self.aggs.create();
            self.aggs
                .accumulate(&mut accumulators, &change.row, false)?;
            self.next_buf.clear();
            self.aggs.values_into(&accumulators, &mut self.next_buf);
            out.emit(RowKind::Insert, self.output_row(&self.next_buf));
            let ks = KeyState {
                row_count: 1,
                accumulators,
            };
            self.groups
                .insert(&codec!(self), self.key_buf.clone(), ks)?;
            return Ok(());
        };
        self.prev_buf.clear();
        self.aggs.values_into(&ks.accumulators, &mut self.prev_buf);
        self.aggs
            .accumulate(&mut ks.accumulators, &change.row, !is_add)?;
        ks.row_count += if is_add { 1 } else { -1 };
        if ks.row_count == 0 {
            self.groups.remove(&codec!(self), self.key_buf.as_slice())?;
            out.emit(RowKind::Delete, self.output_row(&self.prev_buf));
            return Ok(());
        }
        self.next_buf.clear();
        self.aggs.values_into(&ks.accumulators, &mut self.next_buf);
        // With a TTL, unchanged results are emitted too (Flink's rule).
        if !self.groups.expires() && self.next_buf == self.prev_buf {
            return Ok(());
        }
        out.emit(RowKind::UpdateBefore, self.output_row(&self.prev_buf));
        out.emit(RowKind::UpdateAfter, self.output_row(&self.next_buf));
        Ok(())
    }
}

impl Operator for GroupAggregate {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        self.groups.refresh_time();
        for change in &batch {
            self.process(change, out)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        self.groups.sweep_expired(&codec!(self))
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_shape())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.groups.begin_flush(&codec!(self));
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.groups.continue_flush(&codec!(self), budget) {
            return Ok(false);
        }
        delta.append(self.groups.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            // No state was written for this operator: it starts fresh.
            return Ok(());
        }
        self.check_shape(state)
            .map_err(|e| EngineError::data(format!("cannot restore the GroupAggregate state: {e}")))
    }

    /// The operator state is only the shape, the same in every old subtask: each must fit.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        states.iter().try_for_each(|s| self.restore_state(s))
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.groups
            .restore_entry(&codec!(self), state, key, value)
            .map_err(|e| {
                EngineError::data(format!("cannot restore the GroupAggregate state: {e}"))
            })?;
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
            state: Default::default(),
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
    fn expired_keys_start_again_and_their_retractions_are_ignored() {
        let clock = crate::runtime::ManualClock::new(0);
        let mut c = ctx();
        c.state.ttl = Some(crate::state::StateTtl {
            ttl: std::time::Duration::from_millis(1000),
            clock: Arc::new(clock.clone()),
        });
        let spec = GroupAggregateSpec {
            key_cols: vec![0],
            aggs: vec![call("SUM", Some((1, DataType::Int)), false)],
            input_append_only: false,
        };
        let mut op = GroupAggregate::new(spec, &c).unwrap();
        let out = run(
            &mut op,
            vec![
                Change::insert(vec![s("a"), Value::Int(1)]),
                Change::insert(vec![s("b"), Value::Int(2)]),
                Change::insert(vec![s("a"), Value::Int(0)]),
            ],
        );
        // With a TTL an unchanged result is emitted too.
        assert_eq!(
            show(&out),
            vec![
                "+I[String(\"a\"), Int(1)]",
                "+I[String(\"b\"), Int(2)]",
                "-U[String(\"a\"), Int(1)]",
                "+U[String(\"a\"), Int(1)]",
            ]
        );
        clock.advance(600);
        run(&mut op, vec![Change::insert(vec![s("a"), Value::Int(5)])]);
        clock.advance(600);
        // b expired (last written at 0); a was written at 600.
        let out = run(
            &mut op,
            vec![
                Change::new(RowKind::UpdateBefore, vec![s("b"), Value::Int(2)]),
                Change::insert(vec![s("b"), Value::Int(7)]),
                Change::insert(vec![s("a"), Value::Int(1)]),
            ],
        );
        assert_eq!(
            show(&out),
            vec![
                "+I[String(\"b\"), Int(7)]",
                "-U[String(\"a\"), Int(6)]",
                "+U[String(\"a\"), Int(7)]",
            ]
        );
        // The sweeper on the operator's timer removes what nobody reads again.
        clock.advance(1000);
        op.on_timer(2200, &mut Output::new()).unwrap();
        assert_eq!(op.hot_keys(), 0);
        assert_eq!(TaskMetrics::get(&c.metrics.state_ttl_expired), 3);
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
        assert_eq!(op.hot_keys(), 0);
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

    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};
    use streamsql_storage::{Snapshot, SnapshotRecord};

    fn ctx_with(kind: BackendKind, budget: usize) -> TaskContext {
        TaskContext {
            state: standalone_context(kind, budget),
            ..ctx()
        }
    }

    fn checkpoint(op: &mut GroupAggregate, ctx: &TaskContext, id: u64) -> (Vec<u8>, Snapshot) {
        let (blob, snap) = snapshot_now(op, ctx.state.store.as_ref(), id).unwrap();
        (blob, snap.expect("a store gives a keyed snapshot"))
    }

    fn records(s: &Snapshot) -> &[SnapshotRecord] {
        &s.records
    }

    #[test]
    fn restored_operator_continues_exactly_like_the_original() {
        use rand::{Rng, SeedableRng};
        let mut keys_at_cut = 0;
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let key_cols = if seed % 4 == 3 { vec![] } else { vec![0] };
            let kind = if seed.is_multiple_of(2) {
                BackendKind::HashMap
            } else {
                BackendKind::Sled
            };
            let spec = snapshot_spec(key_cols);
            let batches = random_batches(&mut rng, 40);
            let cut = rng.gen_range(0..=batches.len());
            let ctx_a = ctx_with(kind, 1 << 20);
            let mut a = GroupAggregate::new(spec.clone(), &ctx_a).unwrap();
            feed(&mut a, &batches[..cut]);
            let (blob, snap) = checkpoint(&mut a, &ctx_a, 1);
            let (blob2, snap2) = checkpoint(&mut a, &ctx_a, 2);
            assert_eq!(
                (&blob2, records(&snap2)),
                (&blob, records(&snap)),
                "repeatable"
            );
            keys_at_cut += snap.records.len();
            let ctx_b = ctx_with(kind, 1 << 20);
            let mut b = GroupAggregate::new(spec, &ctx_b).unwrap();
            restore_operator(
                &mut b,
                ctx_b.state.store.as_ref(),
                &blob,
                vec![snap.clone()],
            )
            .unwrap();
            let (_, snap_b) = checkpoint(&mut b, &ctx_b, 1);
            assert_eq!(records(&snap_b), records(&snap), "seed {seed}");
            let out_a = feed(&mut a, &batches[cut..]);
            let out_b = feed(&mut b, &batches[cut..]);
            assert_eq!(out_a, out_b, "seed {seed}, cut after batch {cut}");
            let (_, end_a) = checkpoint(&mut a, &ctx_a, 3);
            let (_, end_b) = checkpoint(&mut b, &ctx_b, 3);
            assert_eq!(records(&end_a), records(&end_b));
        }
        // Most cuts leave several keys (of five) behind.
        assert!(keys_at_cut > 80, "{keys_at_cut}");
    }

    #[test]
    fn a_checkpoint_flushes_only_the_keys_written_since_the_previous_one() {
        let ctx = ctx_with(BackendKind::HashMap, 1 << 20);
        let mut op = GroupAggregate::new(snapshot_spec(vec![0]), &ctx).unwrap();
        let row = |k: i32| Change {
            kind: RowKind::Insert,
            row: vec![Value::Int(k), Value::Int(1), Value::Double(1.0)],
        };
        feed(&mut op, &[(0..1000).map(row).collect()]);
        let mut delta = crate::state::KeyedDelta::new();
        op.snapshot_keyed(&mut delta).unwrap();
        assert_eq!(delta.len(), 1000);
        feed(&mut op, &[vec![row(5), row(7), row(5)]]);
        let mut delta = crate::state::KeyedDelta::new();
        op.snapshot_keyed(&mut delta).unwrap();
        assert_eq!(delta.len(), 2, "only keys 5 and 7 changed");
    }

    #[test]
    fn a_small_memory_budget_spills_to_sled_with_the_same_results() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let spec = snapshot_spec(vec![0]);
        let batches: Vec<Vec<Change>> = (0..40)
            .map(|_| {
                (0..100)
                    .map(|_| Change {
                        kind: RowKind::Insert,
                        row: vec![
                            Value::Int(rng.gen_range(0..3000)),
                            Value::Int(rng.gen_range(-5..5)),
                            Value::Double(1.5),
                        ],
                    })
                    .collect()
            })
            .collect();
        let ctx_mem = ctx_with(BackendKind::HashMap, 1 << 20);
        // A few hundred entries fit: most of the 3000 keys live in sled.
        let ctx_sled = ctx_with(BackendKind::Sled, 64 * 1024);
        let mut mem = GroupAggregate::new(spec.clone(), &ctx_mem).unwrap();
        let mut sled = GroupAggregate::new(spec.clone(), &ctx_sled).unwrap();
        for (i, batch) in batches.iter().enumerate() {
            assert_eq!(
                feed(&mut mem, std::slice::from_ref(batch)),
                feed(&mut sled, std::slice::from_ref(batch)),
                "batch {i}"
            );
            if i % 10 == 9 {
                let id = u64::try_from(i).unwrap();
                let (_, a) = checkpoint(&mut mem, &ctx_mem, id);
                let (_, b) = checkpoint(&mut sled, &ctx_sled, id);
                assert_eq!(records(&a), records(&b), "batch {i}");
            }
        }
        assert!(
            sled.hot_keys() < 1000,
            "the hot map stays bounded: {} keys",
            sled.hot_keys()
        );
        assert!(mem.hot_keys() > 2000, "{}", mem.hot_keys());
    }

    #[test]
    fn empty_state_restores_a_fresh_operator() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let batches = random_batches(&mut rng, 20);
        let spec = snapshot_spec(vec![0]);
        let mut fresh = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
        let ctx_r = ctx_with(BackendKind::Sled, 1 << 20);
        let mut restored = GroupAggregate::new(spec.clone(), &ctx_r).unwrap();
        restore_operator(&mut restored, ctx_r.state.store.as_ref(), &[], vec![]).unwrap();
        assert_eq!(feed(&mut fresh, &batches), feed(&mut restored, &batches));
        // A snapshot of an operator without keys round-trips too.
        let ctx_e = ctx_with(BackendKind::HashMap, 1 << 20);
        let (blob, snap) = checkpoint(
            &mut GroupAggregate::new(spec.clone(), &ctx_e).unwrap(),
            &ctx_e,
            1,
        );
        assert!(snap.records.is_empty());
        let ctx_b = ctx_with(BackendKind::HashMap, 1 << 20);
        let mut b = GroupAggregate::new(spec, &ctx_b).unwrap();
        restore_operator(&mut b, ctx_b.state.store.as_ref(), &blob, vec![snap]).unwrap();
        assert_eq!(b.hot_keys(), 0);
    }

    #[test]
    fn corrupt_or_mismatched_state_is_refused_without_panicking() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let spec = snapshot_spec(vec![0]);
        let ctx_a = ctx_with(BackendKind::HashMap, 1 << 20);
        let mut a = GroupAggregate::new(spec.clone(), &ctx_a).unwrap();
        feed(&mut a, &random_batches(&mut rng, 10));
        let (blob, snap) = checkpoint(&mut a, &ctx_a, 1);
        assert!(!snap.records.is_empty());

        let refused = |bytes: &[u8], spec: &GroupAggregateSpec| -> String {
            let mut b = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
            match b.restore_state(bytes) {
                Err(e @ EngineError::Data { .. }) => e.to_string(),
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
        assert!(refused(&blob, &snapshot_spec(vec![])).contains("group key columns"));

        // Keyed entries: damaged keys and values are refused, never a panic.
        let r = &snap.records[0];
        let value = r.value.clone().unwrap();
        let mut b = GroupAggregate::new(spec.clone(), &ctx()).unwrap();
        let e = b.restore_keyed("other", &r.key, &value).unwrap_err();
        assert!(e.to_string().contains("unknown keyed state 'other'"), "{e}");
        for len in 0..value.len() {
            assert!(b
                .restore_keyed(GROUP_STATE.plain, &r.key, &value[..len])
                .is_err());
        }
        for _ in 0..2000 {
            let mut v = value.clone();
            let mut k = r.key.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
                let j = rng.gen_range(0..k.len());
                k[j] = rng.gen();
            }
            let _ = b.restore_keyed(GROUP_STATE.plain, &k, &v);
        }
    }
}
