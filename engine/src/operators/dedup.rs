//! `Deduplicate`: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY rowtime [ASC|DESC]) ... = 1` on an
//! append-only input (Flink's `RowTimeDeduplicateKeepFirstRowFunction` and
//! `RowTimeDeduplicateFunction`).
//!
//! - Keep last row (DESC): the first row of a key emits `+I`; a later row whose rowtime is at or
//!   after the kept one's replaces it with `-U old` / `+U new`; an older row is ignored. Nothing
//!   waits for watermarks.
//! - Keep first row (ASC): append-only, emitted on watermarks. The row with the smallest rowtime
//!   seen for a key (the earliest arrival among equal rowtimes) waits until the watermark reaches
//!   its rowtime, then is emitted as `+I`; after that, rows of the key are ignored. A row whose
//!   rowtime is before the current watermark is late: dropped and counted in
//!   `numLateRecordsDropped`. Rows due at one watermark are emitted by rowtime, then key.
//!
//! State: keep last keeps the last row per key (`dedup-last`, with `table.exec.state.ttl`); keep
//! first keeps the waiting row per key (`dedup-waiting`, never expiring, since it is cleared when
//! its timer fires) and a marker per emitted key (`dedup-emitted`, with the TTL). The timers of
//! waiting rows live in memory and are rebuilt from the waiting rows on restore. The operator state
//! is the shape and the watermark (which decides lateness; restored at another parallelism, the
//! smallest of the old subtasks' watermarks).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::agg::column;
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_values_into, put_ivarint,
    put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec, StateNames};
use crate::value::{Change, Row, RowKind, Value};

/// What the planner specifies for a `Deduplicate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeduplicateSpec {
    /// The PARTITION BY columns (none: one global key).
    pub key_cols: Vec<usize>,
    /// The rowtime column ordered by.
    pub time_col: usize,
    /// Keep the last row (ORDER BY rowtime DESC) rather than the first.
    pub keep_last: bool,
}

/// The message Flink fails with on a NULL rowtime.
const NULL_ROWTIME: &str =
    "RowTime field should not be null, please convert it to a non-null long value.";
/// The byte after the version byte of a `Deduplicate` operator-state blob.
const STATE_MARKER: u8 = b'D';
const LAST_STATE: StateNames = StateNames {
    plain: "dedup-last",
    with_ttl: "dedup-last-ttl",
};
const WAITING_STATE: &str = "dedup-waiting";
const EMITTED_STATE: StateNames = StateNames {
    plain: "dedup-emitted",
    with_ttl: "dedup-emitted-ttl",
};

/// How keys and rows of the deduplication states become bytes.
struct RowCodec {
    key_len: usize,
}

impl StateCodec<Row, Row> for RowCodec {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, value: &Row, out: &mut Vec<u8>) {
        put_values(value, out);
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<Row> {
        let input = &mut bytes;
        let mut row = Row::new();
        get_values_into(input, &mut row)?;
        expect_end(input)?;
        Ok(row)
    }
}

impl StateCodec<Row, ()> for RowCodec {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, _value: &(), _out: &mut Vec<u8>) {}

    fn decode_value(&self, bytes: &[u8]) -> Result<()> {
        expect_end(bytes)
    }
}

/// The rowtime of `row` in milliseconds.
fn rowtime(row: &[Value], col: usize) -> Result<i64> {
    match column(row, col)? {
        Value::Timestamp(t) | Value::TimestampLtz(t) => Ok(*t),
        Value::Null => Err(EngineError::data(NULL_ROWTIME)),
        other => Err(EngineError::internal(format!(
            "the rowtime column {col} holds a non-timestamp value {other:?}"
        ))),
    }
}

/// The deduplication operator.
pub struct Deduplicate {
    spec: DeduplicateSpec,
    metrics: Arc<TaskMetrics>,
    watermark: i64,
    /// Keep last: the kept row per key.
    last: KeyedState<Row, Row>,
    /// Keep first: the row waiting for the watermark, per key.
    waiting: KeyedState<Row, Row>,
    /// Keep first: the keys already emitted.
    emitted: KeyedState<Row, ()>,
    /// Keep first: (rowtime, key) of every waiting row, the firing order.
    timers: BTreeSet<(i64, Row)>,
    key_buf: Row,
}

impl Deduplicate {
    /// Builds the operator.
    pub fn new(spec: DeduplicateSpec, ctx: &TaskContext) -> Result<Self> {
        Ok(Deduplicate {
            key_buf: Vec::with_capacity(spec.key_cols.len()),
            metrics: ctx.metrics.clone(),
            watermark: i64::MIN,
            last: KeyedState::with_ttl(LAST_STATE, &ctx.state, ctx.max_parallelism, &ctx.metrics),
            waiting: KeyedState::new(WAITING_STATE, &ctx.state, ctx.max_parallelism),
            emitted: KeyedState::with_ttl(
                EMITTED_STATE,
                &ctx.state,
                ctx.max_parallelism,
                &ctx.metrics,
            ),
            timers: BTreeSet::new(),
            spec,
        })
    }

    /// A factory building one `Deduplicate` per subtask.
    pub fn factory(spec: DeduplicateSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(Deduplicate::new(spec.clone(), ctx)?))
        })
    }

    fn codec(&self) -> RowCodec {
        RowCodec {
            key_len: self.spec.key_cols.len(),
        }
    }

    /// Rows waiting for the watermark (keep first).
    pub fn waiting_rows(&self) -> usize {
        self.timers.len()
    }

    fn encode_operator_state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        put_version(&mut out);
        out.push(STATE_MARKER);
        out.push(u8::from(self.spec.keep_last));
        put_uvarint(&mut out, self.spec.key_cols.len() as u64);
        put_ivarint(&mut out, self.watermark);
        out
    }

    /// Reads a blob of [`Deduplicate::encode_operator_state`]; returns the watermark.
    fn decode_operator_state(&self, mut input: &[u8]) -> Result<i64> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a deduplication"
            )));
        }
        let keep_last = get_u8(input)? != 0;
        let keys = get_len(input)?;
        let watermark = get_ivarint(input)?;
        expect_end(input)?;
        if keep_last != self.spec.keep_last || keys != self.spec.key_cols.len() {
            return Err(EngineError::data(format!(
                "the state was written for a deduplication keeping the {} row on {keys} key columns",
                if keep_last { "last" } else { "first" }
            )));
        }
        Ok(watermark)
    }

    /// Applies one row; takes it by value so that a kept row moves into the state.
    fn process(&mut self, change: Change, out: &mut Output) -> Result<()> {
        if change.kind != RowKind::Insert {
            return Err(EngineError::internal(format!(
                "deduplication on a rowtime takes an append-only input, got a {} row",
                change.kind.short()
            )));
        }
        let ts = rowtime(&change.row, self.spec.time_col)?;
        self.key_buf.clear();
        for &c in &self.spec.key_cols {
            self.key_buf.push(column(&change.row, c)?.clone());
        }
        let codec = self.codec();
        if self.spec.keep_last {
            // A read first: an older row changes nothing, not even the state's write time.
            let replace = match self.last.get(&codec, self.key_buf.as_slice())? {
                None => false,
                Some(prev) if rowtime(prev, self.spec.time_col)? > ts => return Ok(()),
                Some(_) => true,
            };
            if !replace {
                out.emit(RowKind::Insert, change.row.clone());
                return self.last.insert(&codec, self.key_buf.clone(), change.row);
            }
            let prev = self
                .last
                .get_mut(&codec, self.key_buf.as_slice())?
                .ok_or_else(|| EngineError::internal("a kept row vanished"))?;
            let old = std::mem::replace(prev, change.row.clone());
            out.emit(RowKind::UpdateBefore, old);
            out.emit(RowKind::UpdateAfter, change.row);
            return Ok(());
        }
        if ts < self.watermark {
            TaskMetrics::add(&self.metrics.late_records_dropped, 1);
            return Ok(());
        }
        if self.emitted.get(&codec, self.key_buf.as_slice())?.is_some() {
            return Ok(());
        }
        if let Some(prev) = self.waiting.get(&codec, self.key_buf.as_slice())? {
            let prev_ts = rowtime(prev, self.spec.time_col)?;
            if ts >= prev_ts {
                return Ok(());
            }
            self.timers.remove(&(prev_ts, self.key_buf.clone()));
        }
        self.timers.insert((ts, self.key_buf.clone()));
        self.waiting
            .insert(&codec, self.key_buf.clone(), change.row)
    }

    /// Emits every waiting row whose rowtime the watermark reached.
    fn fire(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        let codec = self.codec();
        while self.timers.first().is_some_and(|(ts, _)| *ts <= watermark) {
            let Some((_, key)) = self.timers.pop_first() else {
                break;
            };
            if let Some(row) = self.waiting.remove(&codec, &key)? {
                out.emit(RowKind::Insert, row);
                self.emitted.insert(&codec, key, ())?;
            }
        }
        Ok(())
    }
}

impl Operator for Deduplicate {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        self.last.refresh_time();
        self.emitted.refresh_time();
        for change in batch {
            self.process(change, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.emitted.refresh_time();
            self.fire(watermark, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_end_of_input(&mut self, out: &mut Output) -> Result<()> {
        self.fire(i64::MAX, out)
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        let codec = self.codec();
        self.last.sweep_expired(&codec)?;
        self.emitted.sweep_expired(&codec)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_operator_state())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        let codec = self.codec();
        self.last.begin_flush(&codec);
        self.waiting.begin_flush(&codec);
        self.emitted.begin_flush(&codec);
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        let codec = self.codec();
        if !self.last.continue_flush(&codec, budget)
            || !self.waiting.continue_flush(&codec, budget)
            || !self.emitted.continue_flush(&codec, budget)
        {
            return Ok(false);
        }
        delta.append(self.last.take_flushed());
        delta.append(self.waiting.take_flushed());
        delta.append(self.emitted.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        // One old subtask's state: the rescaled restore of a single state.
        self.restore_rescaled(&[state])
    }

    /// The smallest watermark of the old subtasks whose key groups this one takes over, so that
    /// no row one of them would have accepted is dropped as late.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        if let Some(w) =
            super::restored_watermark("Deduplicate", states, |s| self.decode_operator_state(s))?
        {
            self.watermark = w;
        }
        Ok(())
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let fail = |e: EngineError| {
            EngineError::data(format!("cannot restore the Deduplicate state: {e}"))
        };
        let codec = self.codec();
        if state == WAITING_STATE {
            let row: Row = codec.decode_value(value).map_err(fail)?;
            let ts = rowtime(&row, self.spec.time_col).map_err(fail)?;
            let key = self
                .waiting
                .restore_entry(&codec, state, key, value)
                .map_err(fail)?;
            self.timers.insert((ts, key));
        } else if state == EMITTED_STATE.plain || state == EMITTED_STATE.with_ttl {
            self.emitted
                .restore_entry(&codec, state, key, value)
                .map_err(fail)?;
        } else {
            self.last
                .restore_entry(&codec, state, key, value)
                .map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 4,
            operator_name: "Deduplicate".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    /// Rows (id INT, player STRING, ts TIMESTAMP(3)).
    fn row(id: i32, player: &str, ts: i64) -> Change {
        Change::insert(vec![
            Value::Int(id),
            Value::string(player),
            Value::Timestamp(ts),
        ])
    }

    fn spec(keep_last: bool) -> DeduplicateSpec {
        DeduplicateSpec {
            key_cols: vec![1],
            time_col: 2,
            keep_last,
        }
    }

    fn show(out: &Output) -> Vec<String> {
        out.changes
            .iter()
            .map(|c| format!("{}{:?}", c.kind.short(), c.row[0]))
            .collect()
    }

    #[test]
    fn keep_last_replaces_on_equal_or_later_rowtime() {
        let mut op = Deduplicate::new(spec(true), &ctx()).unwrap();
        let mut out = Output::new();
        op.on_batch(
            0,
            vec![
                row(1, "a", 10),
                row(2, "a", 5),
                row(3, "a", 10),
                row(4, "b", 1),
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            show(&out),
            vec!["+IInt(1)", "-UInt(1)", "+UInt(3)", "+IInt(4)"]
        );
    }

    #[test]
    fn keep_first_waits_for_the_watermark_and_drops_late_rows() {
        let mut op = Deduplicate::new(spec(false), &ctx()).unwrap();
        let mut out = Output::new();
        op.on_batch(
            0,
            vec![
                row(1, "a", 10),
                row(2, "a", 5),
                row(3, "b", 7),
                row(4, "a", 5),
            ],
            &mut out,
        )
        .unwrap();
        assert!(out.changes.is_empty());
        op.on_watermark(6, &mut out).unwrap();
        assert_eq!(show(&out), vec!["+IInt(2)"]);
        let mut out = Output::new();
        // Late (before the watermark), and an emitted key: both ignored.
        op.on_batch(0, vec![row(5, "c", 5), row(6, "a", 8)], &mut out)
            .unwrap();
        assert_eq!(
            op.metrics
                .late_records_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        op.on_end_of_input(&mut out).unwrap();
        assert_eq!(show(&out), vec!["+IInt(3)"]);
        assert_eq!(op.waiting_rows(), 0);
    }

    #[test]
    fn restored_operator_continues_exactly_like_the_original() {
        for keep_last in [false, true] {
            for kind in [BackendKind::HashMap, BackendKind::Sled] {
                let input: Vec<Change> = (0..40)
                    .map(|i| {
                        row(
                            i,
                            ["a", "b", "c", "d"][(i % 4) as usize],
                            i64::from((i * 7) % 23),
                        )
                    })
                    .collect();
                let ctx_a = TaskContext {
                    state: standalone_context(kind, 1 << 20),
                    ..ctx()
                };
                let mut a = Deduplicate::new(spec(keep_last), &ctx_a).unwrap();
                let mut out = Output::new();
                a.on_batch(0, input[..20].to_vec(), &mut out).unwrap();
                a.on_watermark(3, &mut out).unwrap();
                let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
                let ctx_b = TaskContext {
                    state: standalone_context(kind, 1 << 20),
                    ..ctx()
                };
                let mut b = Deduplicate::new(spec(keep_last), &ctx_b).unwrap();
                restore_operator(
                    &mut b,
                    ctx_b.state.store.as_ref(),
                    &blob,
                    vec![snap.unwrap()],
                )
                .unwrap();
                let mut oa = Output::new();
                let mut ob = Output::new();
                for (op, o) in [(&mut a, &mut oa), (&mut b, &mut ob)] {
                    op.on_batch(0, input[20..].to_vec(), o).unwrap();
                    op.on_watermark(12, o).unwrap();
                    op.on_end_of_input(o).unwrap();
                }
                assert_eq!(oa.changes, ob.changes);
                assert_eq!(oa.watermarks, ob.watermarks);
            }
        }
    }

    #[test]
    fn corrupt_state_is_refused() {
        let ctx_a = TaskContext {
            state: standalone_context(BackendKind::HashMap, 1 << 20),
            ..ctx()
        };
        let mut a = Deduplicate::new(spec(false), &ctx_a).unwrap();
        a.on_batch(0, vec![row(1, "a", 3)], &mut Output::new())
            .unwrap();
        let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
        for len in 1..blob.len() {
            let mut b = Deduplicate::new(spec(false), &ctx()).unwrap();
            assert!(b.restore_state(&blob[..len]).is_err());
        }
        let mut other = Deduplicate::new(spec(true), &ctx()).unwrap();
        assert!(other.restore_state(&blob).is_err());
        let snap = snap.unwrap();
        let rec = &snap.records[0];
        let value = rec.value.clone().unwrap();
        let mut b = Deduplicate::new(spec(false), &ctx()).unwrap();
        for len in 0..value.len() {
            assert!(b
                .restore_keyed(WAITING_STATE, &rec.key, &value[..len])
                .is_err());
        }
    }
}
