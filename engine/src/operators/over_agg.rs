//! `OverAggregate`: event-time OVER aggregation (`agg(x) OVER (PARTITION BY .. ORDER BY rowtime
//! ROWS|RANGE ..)`) over an append-only input, with the semantics of Flink's
//! `RowTimeRowsBoundedPrecedingFunction`, `RowTimeRangeBoundedPrecedingFunction`,
//! `RowTimeRowsUnboundedPrecedingFunction` and `RowTimeRangeUnboundedPrecedingFunction`.
//!
//! Every input row is emitted once, extended with the aggregate values of its frame: output rows
//! are `input row ++ aggregate values`, append-only. Rows are buffered per partition key until the
//! watermark reaches their rowtime, then processed in rowtime order (arrival order among equal
//! rowtimes):
//! - `ROWS n PRECEDING`: each row sees itself and the `n` rows before it;
//! - `RANGE t PRECEDING`: each row sees the rows whose rowtime is within `t` before its own, all
//!   rows of the same rowtime included (they all get the same values);
//! - `ROWS UNBOUNDED PRECEDING` / `RANGE UNBOUNDED PRECEDING`: every earlier row (and, for RANGE,
//!   every row of the same rowtime).
//!
//! Late rows are dropped (counted in `numLateRecordsDropped`), by Flink's rules, which differ:
//! the unbounded frames drop a row whose rowtime is at or before the current watermark; the
//! bounded frames drop a row whose rowtime is at or before the last rowtime processed for its key
//! (0 before the first, as Flink's `lastTriggeringTs`), so a row behind the watermark but after
//! its key's last processed row is still taken and processed at the next watermark.
//!
//! Timers follow Flink's: a bounded frame has a timer per distinct pending rowtime of a key, and
//! RANGE bounded frames also a cleanup timer at `rowtime + 1.5 × preceding + 1` that drops the
//! key's whole state once every row has left the frame (a later cleanup timer does not cancel an
//! earlier one, which still fires and moves the key's last processed time, as in Flink); an
//! unbounded frame has one timer at `watermark + 1` (0 while the watermark is negative).
//!
//! State: per key the buffered rows (the rows still in the frame, then the pending ones, in
//! rowtime order), the accumulators, the last processed rowtime, the ROWS count and the timers,
//! in a [`KeyedState`] with a TTL (`table.exec.state.ttl`: a key untouched that long is
//! forgotten, as Flink's state retention clears it). Which keys have timers due is kept in memory
//! as one ordered set of (time, key) entries, rebuilt from the keyed state on restore: each key
//! records the times at which it has an entry, so a key is never scanned unless one is due, and a
//! key whose rows arrive in order keeps a single entry that moves from time to time without
//! allocating. Memory is freed as rows leave the frame. The operator state of a snapshot is the
//! operator's shape and the watermark (restored at another parallelism: the smallest of the old
//! subtasks'), which decides lateness for the unbounded frames.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::agg::{column, Accumulator, AggCall, AggregateCalls};
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_uvarint, get_values_into,
    put_ivarint, put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec, StateNames};
use crate::value::{Change, Row, RowKind, Value};

/// The frame of an OVER window; the frame always ends at the current row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverFrame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW` (`None`: `UNBOUNDED PRECEDING`).
    Rows { preceding: Option<u64> },
    /// `RANGE BETWEEN INTERVAL .. PRECEDING AND CURRENT ROW`, in milliseconds (`None`:
    /// `UNBOUNDED PRECEDING`).
    Range { preceding: Option<i64> },
}

impl OverFrame {
    fn is_bounded(self) -> bool {
        matches!(
            self,
            OverFrame::Rows { preceding: Some(_) } | OverFrame::Range { preceding: Some(_) }
        )
    }

    /// The frame as a byte for the operator-state blob.
    fn tag(self) -> u8 {
        match self {
            OverFrame::Rows { preceding: None } => 0,
            OverFrame::Rows { preceding: Some(_) } => 1,
            OverFrame::Range { preceding: None } => 2,
            OverFrame::Range { preceding: Some(_) } => 3,
        }
    }
}

/// What the planner specifies for an `OverAggregate`.
#[derive(Clone, Debug, PartialEq)]
pub struct OverAggSpec {
    /// The input column holding the rowtime (TIMESTAMP(3) or TIMESTAMP_LTZ(3)).
    pub time_col: usize,
    /// The PARTITION BY columns (empty: one global partition).
    pub partition_cols: Vec<usize>,
    pub frame: OverFrame,
    /// The aggregate calls, whose values follow the input columns in each output row.
    pub aggs: Vec<AggCall>,
}

/// The message Flink fails with on a NULL rowtime.
const NULL_ROWTIME: &str =
    "RowTime field should not be null, please convert it to a non-null long value.";

/// The byte after the version byte of an `OverAggregate` operator-state blob.
const STATE_MARKER: u8 = b'O';
/// How many key rows of fired timer-index entries are kept for reuse.
const SPARE_KEYS: usize = 1024;
/// The names of the keyed state in snapshots, without and with a TTL.
const OVER_STATE: StateNames = StateNames {
    plain: "over",
    with_ttl: "over-ttl",
};

/// The state of one partition key.
#[derive(Clone, Debug, Default)]
pub struct KeyOverState {
    /// Buffered rows with their rowtime, in rowtime order (arrival order among equal rowtimes):
    /// first the `processed` rows still in the frame (bounded frames only), then the pending ones.
    rows: VecDeque<(i64, Row)>,
    /// How many rows at the front have been processed.
    processed: usize,
    accumulators: Vec<Accumulator>,
    /// Bounded frames: the last timer time that fired (Flink's `lastTriggeringTs`).
    last_triggered: Option<i64>,
    /// RANGE bounded frames: the time of the latest cleanup timer (Flink's `cleanupTsState`).
    cleanup: Option<i64>,
    /// Timers other than the implicit one per pending rowtime of a bounded frame: cleanup timers
    /// (RANGE bounded) or the watermark timer (unbounded), ascending, without duplicates.
    timers: Vec<i64>,
    /// The times at which this key has an entry in the operator's timer index, ascending.
    indexed: Vec<i64>,
}

impl KeyOverState {
    /// The earliest time at which a timer of this key fires, if any.
    fn next_timer(&self, bounded: bool) -> Option<i64> {
        let data = if bounded {
            self.rows.get(self.processed).map(|(t, _)| *t)
        } else {
            None
        };
        match (data, self.timers.first()) {
            (Some(a), Some(b)) => Some(a.min(*b)),
            (a, b) => a.or(b.copied()),
        }
    }

    /// Whether a timer of this key is due at exactly `t`.
    fn has_timer_at(&self, t: i64, bounded: bool) -> bool {
        self.timers.binary_search(&t).is_ok()
            || (bounded
                && self
                    .rows
                    .get(self.processed)
                    .is_some_and(|(ts, _)| *ts == t))
    }
}

/// Inserts `t` into the ascending `list` unless it is there already.
fn insert_sorted(list: &mut Vec<i64>, t: i64) {
    if let Err(at) = list.binary_search(&t) {
        list.insert(at, t);
    }
}

/// Removes `t` from the ascending `list`; false when it was not there.
fn remove_sorted(list: &mut Vec<i64>, t: i64) -> bool {
    match list.binary_search(&t) {
        Ok(at) => {
            list.remove(at);
            true
        }
        Err(_) => false,
    }
}

fn put_times(out: &mut Vec<u8>, times: &[i64]) {
    put_uvarint(out, times.len() as u64);
    for t in times {
        put_ivarint(out, *t);
    }
}

fn get_times(input: &mut &[u8]) -> Result<Vec<i64>> {
    let n = get_count(input)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(get_ivarint(input)?);
    }
    if times.windows(2).any(|w| w[0] >= w[1]) {
        return Err(corrupt("timer times are not ascending"));
    }
    Ok(times)
}

fn put_opt(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_ivarint(out, t);
        }
    }
}

fn get_opt(input: &mut &[u8]) -> Result<Option<i64>> {
    match get_u8(input)? {
        0 => Ok(None),
        1 => Ok(Some(get_ivarint(input)?)),
        b => Err(corrupt(format!("option byte {b}"))),
    }
}

/// Reads a count, refusing one larger than the bytes left (every item takes at least one byte).
fn get_count(input: &mut &[u8]) -> Result<usize> {
    let n = get_len(input)?;
    if n > input.len() {
        return Err(corrupt(format!(
            "{n} items announced but only {} bytes left",
            input.len()
        )));
    }
    Ok(n)
}

/// The rowtime of a row in milliseconds.
fn rowtime(row: &[Value], time_col: usize) -> Result<i64> {
    match column(row, time_col)? {
        Value::Timestamp(t) | Value::TimestampLtz(t) => Ok(*t),
        Value::Null => Err(EngineError::data(NULL_ROWTIME)),
        other => Err(EngineError::internal(format!(
            "the rowtime column {time_col} holds a non-timestamp value {other:?}"
        ))),
    }
}

/// How keys and values of the `over` state become bytes.
struct OverCodec<'a> {
    aggs: &'a AggregateCalls,
    key_len: usize,
    time_col: usize,
}

impl StateCodec<Row, KeyOverState> for OverCodec<'_> {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, value: &KeyOverState, out: &mut Vec<u8>) {
        put_uvarint(out, value.rows.len() as u64);
        put_uvarint(out, value.processed as u64);
        for (_, row) in &value.rows {
            put_values(row, out);
        }
        self.aggs.encode_state(&value.accumulators, out);
        put_opt(out, value.last_triggered);
        put_opt(out, value.cleanup);
        put_times(out, &value.timers);
        put_times(out, &value.indexed);
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<KeyOverState> {
        let input = &mut bytes;
        let n = get_count(input)?;
        let processed = usize::try_from(get_uvarint(input)?)
            .map_err(|_| corrupt("processed row count out of range"))?;
        if processed > n {
            return Err(corrupt(format!(
                "{processed} processed rows of {n} buffered rows"
            )));
        }
        let mut rows = VecDeque::with_capacity(n);
        for _ in 0..n {
            let mut row = Row::new();
            get_values_into(input, &mut row)?;
            let ts = rowtime(&row, self.time_col).map_err(|e| corrupt(e.to_string()))?;
            if rows.back().is_some_and(|(last, _)| *last > ts) {
                return Err(corrupt("buffered rows are not in rowtime order"));
            }
            rows.push_back((ts, row));
        }
        let accumulators = self.aggs.decode_state(input)?;
        let last_triggered = get_opt(input)?;
        let cleanup = get_opt(input)?;
        let timers = get_times(input)?;
        let indexed = get_times(input)?;
        expect_end(input)?;
        Ok(KeyOverState {
            rows,
            processed,
            accumulators,
            last_triggered,
            cleanup,
            timers,
            indexed,
        })
    }
}

/// The codec of `op`'s state, borrowing only the fields it needs so the state stays mutable.
macro_rules! codec {
    ($op:expr) => {
        OverCodec {
            aggs: &$op.aggs,
            key_len: $op.partition_cols.len(),
            time_col: $op.time_col,
        }
    };
}

/// The OVER aggregation operator.
pub struct OverAggregate {
    time_col: usize,
    partition_cols: Vec<usize>,
    frame: OverFrame,
    aggs: AggregateCalls,
    metrics: Arc<TaskMetrics>,
    /// The watermark last seen (`i64::MIN` before the first).
    watermark: i64,
    keys: KeyedState<Row, KeyOverState>,
    /// (time, key) for every time at which a key has a timer that may be due: the keys to visit
    /// when the watermark reaches the time. An entry whose key no longer has a timer then is
    /// skipped.
    index: BTreeSet<(i64, Row)>,
    key_buf: Row,
    /// Key rows of index entries that fired and were not moved on, reused for new entries.
    spare_keys: Vec<Row>,
    /// Reused for the aggregate values of a RANGE group.
    values_buf: Row,
}

impl OverAggregate {
    /// Builds the operator; fails when an aggregate call cannot produce its declared type.
    pub fn new(spec: OverAggSpec, ctx: &TaskContext) -> Result<Self> {
        // Bounded frames take rows back out of the accumulators (MIN/MAX then keep multisets).
        let aggs = AggregateCalls::new(spec.aggs, !spec.frame.is_bounded())?;
        Ok(OverAggregate {
            time_col: spec.time_col,
            key_buf: Vec::with_capacity(spec.partition_cols.len()),
            partition_cols: spec.partition_cols,
            frame: spec.frame,
            aggs,
            metrics: ctx.metrics.clone(),
            watermark: i64::MIN,
            keys: KeyedState::with_ttl(OVER_STATE, &ctx.state, ctx.max_parallelism, &ctx.metrics),
            index: BTreeSet::new(),
            values_buf: Vec::new(),
            spare_keys: Vec::new(),
        })
    }

    /// A factory building one `OverAggregate` per subtask.
    pub fn factory(spec: OverAggSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(OverAggregate::new(spec.clone(), ctx)?))
        })
    }

    /// Rows buffered in memory over all keys (pending or still in a frame).
    pub fn buffered_rows(&self) -> usize {
        self.keys.hot_entries().map(|(_, s)| s.rows.len()).sum()
    }

    /// The watermark the operator last saw (`i64::MIN` before the first).
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The operator-state blob: version, marker, frame, shape, watermark.
    fn encode_operator_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_version(&mut out);
        out.push(STATE_MARKER);
        out.push(self.frame.tag());
        self.aggs
            .put_state_shape(self.partition_cols.len(), &mut out);
        put_ivarint(&mut out, self.watermark);
        out
    }

    /// Reads a blob of [`OverAggregate::encode_operator_state`]; returns the watermark.
    fn decode_operator_state(&self, mut input: &[u8]) -> Result<i64> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of an OVER aggregation"
            )));
        }
        let frame = get_u8(input)?;
        if frame != self.frame.tag() {
            return Err(EngineError::data(
                "the state was written for another kind of OVER frame (ROWS/RANGE, bounded or not)",
            ));
        }
        self.aggs
            .check_state_shape(self.partition_cols.len(), input)?;
        let watermark = get_ivarint(input)?;
        expect_end(input)?;
        Ok(watermark)
    }

    /// Buffers one input row, or drops it as late.
    fn process(&mut self, change: Change) -> Result<()> {
        if change.kind != RowKind::Insert {
            return Err(EngineError::internal(format!(
                "OVER aggregation takes an append-only input, got a {} row",
                change.kind.short()
            )));
        }
        let row = change.row;
        let ts = rowtime(&row, self.time_col)?;
        self.key_buf.clear();
        for &c in &self.partition_cols {
            self.key_buf.push(column(&row, c)?.clone());
        }
        let bounded = self.frame.is_bounded();
        let codec = codec!(self);
        let existing = self.keys.get_mut(&codec, self.key_buf.as_slice())?;
        // Decided before a new key gets state, so that a late row leaves nothing behind.
        let late = if bounded {
            ts <= existing
                .as_ref()
                .and_then(|s| s.last_triggered)
                .unwrap_or(0)
        } else {
            ts <= self.watermark
        };
        if late {
            TaskMetrics::add(&self.metrics.late_records_dropped, 1);
            return Ok(());
        }
        let state = match existing {
            Some(s) => s,
            None => {
                let fresh = KeyOverState {
                    accumulators: self.aggs.create(),
                    ..KeyOverState::default()
                };
                self.keys.insert(&codec, self.key_buf.clone(), fresh)?;
                self.keys
                    .get_mut(&codec, self.key_buf.as_slice())?
                    .ok_or_else(|| {
                        EngineError::internal("a key inserted into OVER state is missing")
                    })?
            }
        };
        // After every buffered row of the same rowtime: arrival order among ties.
        let at = state.rows.partition_point(|(t, _)| *t <= ts);
        state.rows.insert(at, (ts, row));
        match self.frame {
            OverFrame::Range {
                preceding: Some(preceding),
            } => {
                let min_cleanup = ts.saturating_add(preceding).saturating_add(1);
                if state.cleanup.is_none_or(|c| c < min_cleanup) {
                    // Java's `(long) (precedingOffset * 1.5)`.
                    let max_cleanup = ts
                        .saturating_add((preceding as f64 * 1.5) as i64)
                        .saturating_add(1);
                    insert_sorted(&mut state.timers, max_cleanup);
                    state.cleanup = Some(max_cleanup);
                }
            }
            OverFrame::Rows { preceding: None } | OverFrame::Range { preceding: None } => {
                let trigger = if self.watermark < 0 {
                    0
                } else {
                    self.watermark.saturating_add(1)
                };
                insert_sorted(&mut state.timers, trigger);
            }
            OverFrame::Rows { preceding: Some(_) } => {}
        }
        if let Some(next) = state.next_timer(bounded) {
            if state.indexed.first().is_none_or(|first| next < *first) {
                state.indexed.insert(0, next);
                let mut key = self.spare_keys.pop().unwrap_or_default();
                key.clone_from(&self.key_buf);
                self.index.insert((next, key));
            }
        }
        Ok(())
    }

    /// Fires every timer due at `watermark`, in time order (then key order).
    fn fire(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        let bounded = self.frame.is_bounded();
        while self.index.first().is_some_and(|(t, _)| *t <= watermark) {
            let Some((t, key)) = self.index.pop_first() else {
                break;
            };
            let codec = codec!(self);
            let Some(state) = self.keys.get_mut(&codec, key.as_slice())? else {
                // The key's state expired or was cleaned up.
                self.recycle(key);
                continue;
            };
            if !remove_sorted(&mut state.indexed, t) {
                // An entry left from an earlier incarnation of the key.
                self.recycle(key);
                continue;
            }
            let mut drop_key = false;
            if state.has_timer_at(t, bounded) {
                drop_key = on_timer(
                    &self.aggs,
                    self.frame,
                    state,
                    t,
                    watermark,
                    &mut self.values_buf,
                    out,
                )?;
            }
            if drop_key {
                self.keys.remove(&codec, key.as_slice())?;
                self.recycle(key);
                continue;
            }
            match state.next_timer(bounded) {
                Some(next) if state.indexed.binary_search(&next).is_err() => {
                    insert_sorted(&mut state.indexed, next);
                    // The key's entry moves on: its row is reused.
                    self.index.insert((next, key));
                }
                _ => self.recycle(key),
            }
        }
        Ok(())
    }

    /// Keeps the row of a fired index entry for a later entry (up to a bound).
    fn recycle(&mut self, key: Row) {
        if self.spare_keys.len() < SPARE_KEYS {
            self.spare_keys.push(key);
        }
    }
}

/// Flink's `onTimer(t)` for one key at watermark `watermark`; true when the key's whole state is
/// to be dropped (a RANGE cleanup timer).
fn on_timer(
    aggs: &AggregateCalls,
    frame: OverFrame,
    state: &mut KeyOverState,
    t: i64,
    watermark: i64,
    values: &mut Row,
    out: &mut Output,
) -> Result<bool> {
    remove_sorted(&mut state.timers, t);
    match frame {
        OverFrame::Rows {
            preceding: Some(preceding),
        } => {
            // Each row sees itself and `preceding` rows before it: `preceding + 1` rows in all.
            let width = preceding.saturating_add(1);
            while state
                .rows
                .get(state.processed)
                .is_some_and(|(ts, _)| *ts == t)
            {
                if state.processed as u64 >= width {
                    let (_, old) = state
                        .rows
                        .pop_front()
                        .expect("invariant: a full frame has a processed row at the front");
                    aggs.accumulate(&mut state.accumulators, &old, true)?;
                    state.processed -= 1;
                }
                let (_, row) = &state.rows[state.processed];
                aggs.accumulate(&mut state.accumulators, row, false)?;
                let mut output = Vec::with_capacity(row.len() + state.accumulators.len());
                output.extend_from_slice(row);
                aggs.values_into(&state.accumulators, &mut output);
                out.emit(RowKind::Insert, output);
                state.processed += 1;
            }
            state.last_triggered = Some(t);
        }
        OverFrame::Range {
            preceding: Some(preceding),
        } => {
            if state.cleanup.is_some_and(|c| c <= t) {
                return Ok(true);
            }
            let group_start = state.processed;
            let mut group_end = group_start;
            while state.rows.get(group_end).is_some_and(|(ts, _)| *ts == t) {
                group_end += 1;
            }
            if group_end > group_start {
                // Rows further back than `preceding` leave the frame.
                while state.processed > 0
                    && state
                        .rows
                        .front()
                        .is_some_and(|(ts, _)| t.saturating_sub(*ts) > preceding)
                {
                    let (_, old) = state
                        .rows
                        .pop_front()
                        .expect("invariant: a processed row is buffered");
                    aggs.accumulate(&mut state.accumulators, &old, true)?;
                    state.processed -= 1;
                    group_end -= 1;
                }
                emit_group(aggs, state, group_end, values, out)?;
            }
            state.last_triggered = Some(t);
        }
        OverFrame::Rows { preceding: None } | OverFrame::Range { preceding: None } => {
            let rows_mode = matches!(frame, OverFrame::Rows { .. });
            while state.rows.front().is_some_and(|(ts, _)| *ts <= watermark) {
                let group_ts = state.rows[0].0;
                if rows_mode {
                    let (_, mut row) = state
                        .rows
                        .pop_front()
                        .expect("invariant: the front row was just seen");
                    aggs.accumulate(&mut state.accumulators, &row, false)?;
                    row.reserve_exact(state.accumulators.len());
                    aggs.values_into(&state.accumulators, &mut row);
                    out.emit(RowKind::Insert, row);
                } else {
                    let mut group_end = 0;
                    while state
                        .rows
                        .get(group_end)
                        .is_some_and(|(ts, _)| *ts == group_ts)
                    {
                        group_end += 1;
                    }
                    for (_, row) in state.rows.range(..group_end) {
                        aggs.accumulate(&mut state.accumulators, row, false)?;
                    }
                    values.clear();
                    aggs.values_into(&state.accumulators, values);
                    for (_, mut row) in state.rows.drain(..group_end) {
                        row.reserve_exact(values.len());
                        row.extend_from_slice(values);
                        out.emit(RowKind::Insert, row);
                    }
                }
            }
            if !state.rows.is_empty() {
                // Rows after the watermark wait for the next one.
                insert_sorted(&mut state.timers, watermark.saturating_add(1));
            }
        }
    }
    Ok(false)
}

/// Accumulates the pending rows `processed..group_end` (one rowtime) and emits each of them with
/// the values of the frame they share.
fn emit_group(
    aggs: &AggregateCalls,
    state: &mut KeyOverState,
    group_end: usize,
    values: &mut Row,
    out: &mut Output,
) -> Result<()> {
    for (_, row) in state.rows.range(state.processed..group_end) {
        aggs.accumulate(&mut state.accumulators, row, false)?;
    }
    values.clear();
    aggs.values_into(&state.accumulators, values);
    for (_, row) in state.rows.range(state.processed..group_end) {
        let mut output = Vec::with_capacity(row.len() + values.len());
        output.extend_from_slice(row);
        output.extend_from_slice(values);
        out.emit(RowKind::Insert, output);
    }
    state.processed = group_end;
    Ok(())
}

impl Operator for OverAggregate {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        self.keys.refresh_time();
        for change in batch {
            self.process(change)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.keys.refresh_time();
            self.fire(watermark, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_end_of_input(&mut self, out: &mut Output) -> Result<()> {
        // The runtime sends a final MAX watermark first; firing again is then a no-op.
        self.fire(i64::MAX, out)
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        self.keys.sweep_expired(&codec!(self))
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_operator_state())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.keys.begin_flush(&codec!(self));
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.keys.continue_flush(&codec!(self), budget) {
            return Ok(false);
        }
        delta.append(self.keys.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        // One old subtask's state: the rescaled restore of a single state.
        self.restore_rescaled(&[state])
    }

    /// The smallest watermark of the old subtasks whose key groups this one takes over, so that
    /// no row one of them would still have accepted is dropped as late.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        if let Some(w) =
            super::restored_watermark("OverAggregate", states, |s| self.decode_operator_state(s))?
        {
            self.watermark = w;
        }
        Ok(())
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let fail = |e: EngineError| {
            EngineError::data(format!("cannot restore the OverAggregate state: {e}"))
        };
        let codec = codec!(self);
        let restored = codec.decode_value(value).map_err(fail)?;
        let key = self
            .keys
            .restore_entry(&codec, state, key, value)
            .map_err(fail)?;
        for t in restored.indexed {
            self.index.insert((t, key.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::resolve_aggregate;
    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};
    use crate::types::DataType;

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 3,
            operator_name: "OverAggregate".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: standalone_context(BackendKind::HashMap, 1 << 20),
        }
    }

    fn call(name: &str, arg: Option<usize>) -> AggCall {
        let types: Vec<DataType> = arg.iter().map(|_| DataType::Int).collect();
        let (kind, ret) = resolve_aggregate(name, &types, false).unwrap();
        AggCall {
            kind,
            arg,
            distinct: false,
            ret,
            filter: None,
        }
    }

    /// Input rows are `[key, ts, v]`; the aggregates are COUNT(*), SUM(v), MIN(v), MAX(v).
    fn new_op(frame: OverFrame, ctx: &TaskContext) -> OverAggregate {
        let spec = OverAggSpec {
            time_col: 1,
            partition_cols: vec![0],
            frame,
            aggs: vec![
                call("COUNT", None),
                call("SUM", Some(2)),
                call("MIN", Some(2)),
                call("MAX", Some(2)),
            ],
        };
        OverAggregate::new(spec, ctx).unwrap()
    }

    fn op(frame: OverFrame) -> OverAggregate {
        new_op(frame, &ctx())
    }

    fn row(k: &str, ts: i64, v: i32) -> Change {
        Change::insert(vec![Value::string(k), Value::Timestamp(ts), Value::Int(v)])
    }

    fn int(v: &Value) -> i64 {
        match v {
            Value::Int(x) => i64::from(*x),
            Value::BigInt(x) => *x,
            Value::Null => -1,
            other => panic!("not an integer: {other:?}"),
        }
    }

    /// `(key, v, count, sum, min, max)` of each output row.
    fn show(out: &Output) -> Vec<(String, i64, i64, i64, i64, i64)> {
        out.changes
            .iter()
            .map(|c| {
                assert_eq!(c.kind, RowKind::Insert);
                let k = match &c.row[0] {
                    Value::String(s) => s.to_string(),
                    other => panic!("{other:?}"),
                };
                (
                    k,
                    int(&c.row[2]),
                    int(&c.row[3]),
                    int(&c.row[4]),
                    int(&c.row[5]),
                    int(&c.row[6]),
                )
            })
            .collect()
    }

    fn feed(op: &mut OverAggregate, rows: Vec<Change>, watermark: i64) -> Output {
        let mut out = Output::new();
        op.on_batch(0, rows, &mut out).unwrap();
        op.on_watermark(watermark, &mut out).unwrap();
        out
    }

    fn o(k: &str, v: i64, c: i64, s: i64, mn: i64, mx: i64) -> (String, i64, i64, i64, i64, i64) {
        (k.to_string(), v, c, s, mn, mx)
    }

    #[test]
    fn rows_bounded_slides_over_the_last_rows_in_time_order() {
        let mut op = op(OverFrame::Rows { preceding: Some(1) });
        // Out of order within the watermark delay, and a tie on rowtime 3000.
        let out = feed(
            &mut op,
            vec![
                row("a", 1000, 5),
                row("a", 3000, 1),
                row("a", 2000, 7),
                row("a", 3000, 4),
                row("b", 1500, 9),
            ],
            2999,
        );
        assert_eq!(
            show(&out),
            vec![
                o("a", 5, 1, 5, 5, 5),
                o("b", 9, 1, 9, 9, 9),
                o("a", 7, 2, 12, 5, 7)
            ]
        );
        assert_eq!(out.watermarks, vec![(3, 2999)]);
        let out = feed(&mut op, vec![], 3000);
        assert_eq!(
            show(&out),
            vec![o("a", 1, 2, 8, 1, 7), o("a", 4, 2, 5, 1, 4)]
        );
        // Only the frame (two rows) stays buffered.
        assert_eq!(op.buffered_rows(), 2 + 1);
    }

    #[test]
    fn range_bounded_ties_see_each_other_and_old_rows_leave() {
        let mut op = op(OverFrame::Range {
            preceding: Some(1000),
        });
        let out = feed(
            &mut op,
            vec![
                row("a", 1000, 5),
                row("a", 2000, 7),
                row("a", 2000, 1),
                row("a", 3500, 2),
            ],
            i64::MAX - 1,
        );
        assert_eq!(
            show(&out),
            vec![
                o("a", 5, 1, 5, 5, 5),
                o("a", 7, 3, 13, 1, 7),
                o("a", 1, 3, 13, 1, 7),
                o("a", 2, 1, 2, 2, 2),
            ]
        );
    }

    #[test]
    fn range_bounded_cleanup_drops_the_key_and_resets_its_lateness() {
        let mut op = op(OverFrame::Range {
            preceding: Some(1000),
        });
        feed(&mut op, vec![row("a", 1000, 5)], 1000);
        // The cleanup timer at 1000 + 1500 + 1 frees the key.
        feed(&mut op, vec![], 2501);
        assert_eq!(op.buffered_rows(), 0);
        assert_eq!(op.keys.hot_entries().count(), 0);
        // A row behind the watermark is taken again: the key's last processed time is gone.
        let out = feed(&mut op, vec![row("a", 900, 3)], 2600);
        assert_eq!(show(&out), vec![o("a", 3, 1, 3, 3, 3)]);
    }

    #[test]
    fn bounded_frames_drop_rows_not_after_the_keys_last_processed_time() {
        let mut op = op(OverFrame::Rows { preceding: Some(1) });
        feed(&mut op, vec![row("a", 1000, 1), row("a", 5000, 2)], 4000);
        // Behind the watermark, but after a's last processed time (1000): kept.
        let out = feed(&mut op, vec![row("a", 2000, 3), row("a", 500, 4)], 4001);
        assert_eq!(show(&out), vec![o("a", 3, 2, 4, 1, 3)]);
        assert_eq!(
            op.metrics
                .late_records_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn unbounded_frames_drop_rows_at_or_before_the_watermark() {
        let mut range_op = op(OverFrame::Range { preceding: None });
        let out = feed(
            &mut range_op,
            vec![row("a", 1000, 1), row("a", 1000, 2), row("a", 5000, 3)],
            1000,
        );
        assert_eq!(
            show(&out),
            vec![o("a", 1, 2, 3, 1, 2), o("a", 2, 2, 3, 1, 2)]
        );
        let out = feed(
            &mut range_op,
            vec![row("a", 1000, 4), row("a", 4000, 5)],
            6000,
        );
        assert_eq!(
            show(&out),
            vec![o("a", 5, 3, 8, 1, 5), o("a", 3, 4, 11, 1, 5)]
        );
        assert_eq!(range_op.buffered_rows(), 0);
        // A late row of a new key leaves no state behind.
        let out = feed(&mut range_op, vec![row("c", 500, 1)], 6001);
        assert!(out.changes.is_empty());
        assert_eq!(range_op.keys.hot_entries().count(), 1);

        let mut rows_op = op(OverFrame::Rows { preceding: None });
        let out = feed(
            &mut rows_op,
            vec![row("a", 1000, 1), row("a", 1000, 2)],
            1000,
        );
        assert_eq!(
            show(&out),
            vec![o("a", 1, 1, 1, 1, 1), o("a", 2, 2, 3, 1, 2)]
        );
    }

    /// Checkpoints `op` and restores the checkpoint into a fresh operator of `frame`.
    fn checkpoint_and_restore(
        op: &mut OverAggregate,
        c: &TaskContext,
        frame: OverFrame,
    ) -> OverAggregate {
        checkpoint_and_restore_with(op, c, |c2| new_op(frame, c2))
    }

    /// Checkpoints `op` and restores the checkpoint into an operator that `make` builds.
    fn checkpoint_and_restore_with(
        op: &mut OverAggregate,
        c: &TaskContext,
        make: impl Fn(&TaskContext) -> OverAggregate,
    ) -> OverAggregate {
        let (blob, snap) = snapshot_now(op, c.state.store.as_ref(), 1).unwrap();
        let c2 = ctx();
        let mut resumed = make(&c2);
        restore_operator(
            &mut resumed,
            c2.state.store.as_ref(),
            &blob,
            snap.into_iter().collect(),
        )
        .unwrap();
        resumed
    }

    #[test]
    fn snapshot_and_restore_continue_where_the_run_stopped() {
        for frame in [
            OverFrame::Rows { preceding: Some(1) },
            OverFrame::Range {
                preceding: Some(1000),
            },
            OverFrame::Rows { preceding: None },
            OverFrame::Range { preceding: None },
        ] {
            let input = |i: i64| row(if i % 2 == 0 { "a" } else { "b" }, 500 * i, i as i32);
            let mut straight = op(frame);
            let mut expected = feed(&mut straight, (0..6).map(input).collect(), 1200);
            let rest = feed(&mut straight, (6..12).map(input).collect(), 4000);
            expected.changes.extend(rest.changes);

            let c = ctx();
            let mut first = new_op(frame, &c);
            let mut got = feed(&mut first, (0..6).map(input).collect(), 1200);
            let mut resumed = checkpoint_and_restore(&mut first, &c, frame);
            assert_eq!(resumed.current_watermark(), 1200);
            let rest = feed(&mut resumed, (6..12).map(input).collect(), 4000);
            got.changes.extend(rest.changes);
            assert_eq!(show(&got), show(&expected), "{frame:?}");
        }
    }

    #[test]
    fn restore_refuses_another_frame() {
        let mut first = op(OverFrame::Rows { preceding: Some(1) });
        let blob = first.snapshot_state(1).unwrap();
        let mut other = op(OverFrame::Range { preceding: None });
        assert!(other.restore_state(&blob).is_err());
    }

    #[test]
    fn null_rowtime_fails_like_flink() {
        let mut op = op(OverFrame::Rows { preceding: None });
        let mut out = Output::new();
        let err = op
            .on_batch(
                0,
                vec![Change::insert(vec![
                    Value::string("a"),
                    Value::Null,
                    Value::Int(1),
                ])],
                &mut out,
            )
            .unwrap_err();
        assert!(err.to_string().contains("RowTime field should not be null"));
    }

    /// Random rows `[key, ts, v, id]` for `keys` keys, none late: rowtimes jitter by up to
    /// 3 s around a clock that advances, and the watermark trails the clock by 4 s.
    fn random_batches(seed: u64, keys: i32, batches: usize) -> Vec<(Vec<Change>, i64)> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut clock = 10_000i64;
        let mut id = 0;
        (0..batches)
            .map(|_| {
                let rows = (0..rng.gen_range(0..40))
                    .map(|_| {
                        clock += rng.gen_range(0..300);
                        id += 1;
                        // Coarse rowtimes so that ties are common.
                        let ts = (clock - rng.gen_range(0..3000)) / 250 * 250;
                        let v = if rng.gen_range(0..10) == 0 {
                            Value::Null
                        } else {
                            Value::Int(rng.gen_range(-50..50))
                        };
                        Change::insert(vec![
                            Value::Int(rng.gen_range(0..keys)),
                            Value::Timestamp(ts),
                            v,
                            Value::Int(id),
                        ])
                    })
                    .collect();
                (rows, clock - 4000)
            })
            .collect()
    }

    /// The aggregates of every row computed from scratch: `id -> [count, sum, min, max]`.
    fn reference(
        frame: OverFrame,
        input: &[Change],
    ) -> std::collections::BTreeMap<i32, Vec<Value>> {
        let mut by_key: std::collections::BTreeMap<i32, Vec<(i64, usize, &Row)>> =
            std::collections::BTreeMap::new();
        for (arrival, c) in input.iter().enumerate() {
            let (Value::Int(k), Value::Timestamp(ts)) = (&c.row[0], &c.row[1]) else {
                unreachable!()
            };
            by_key.entry(*k).or_default().push((*ts, arrival, &c.row));
        }
        let mut out = std::collections::BTreeMap::new();
        for rows in by_key.values_mut() {
            rows.sort_by_key(|(ts, arrival, _)| (*ts, *arrival));
            for (i, (ts, _, row)) in rows.iter().enumerate() {
                let frame_rows: Vec<&Row> = rows
                    .iter()
                    .enumerate()
                    .filter(|(j, (t, _, _))| match frame {
                        OverFrame::Rows { preceding: None } => *j <= i,
                        OverFrame::Rows { preceding: Some(n) } => *j <= i && i - *j <= n as usize,
                        OverFrame::Range { preceding: None } => t <= ts,
                        OverFrame::Range { preceding: Some(p) } => t <= ts && ts - t <= p,
                    })
                    .map(|(_, (_, _, r))| *r)
                    .collect();
                let vs: Vec<i32> = frame_rows
                    .iter()
                    .filter_map(|r| match r[2] {
                        Value::Int(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                let or_null = |v: Option<i32>| v.map_or(Value::Null, Value::Int);
                let Value::Int(id) = row[3] else {
                    unreachable!()
                };
                out.insert(
                    id,
                    vec![
                        Value::BigInt(frame_rows.len() as i64),
                        if vs.is_empty() {
                            Value::Null
                        } else {
                            Value::Int(vs.iter().sum())
                        },
                        or_null(vs.iter().min().copied()),
                        or_null(vs.iter().max().copied()),
                    ],
                );
            }
        }
        out
    }

    fn results(out: &[Change]) -> std::collections::BTreeMap<i32, Vec<Value>> {
        out.iter()
            .map(|c| {
                let Value::Int(id) = c.row[3] else {
                    unreachable!()
                };
                (id, c.row[4..].to_vec())
            })
            .collect()
    }

    const FRAMES: [OverFrame; 4] = [
        OverFrame::Rows { preceding: Some(2) },
        OverFrame::Range {
            preceding: Some(1000),
        },
        OverFrame::Rows { preceding: None },
        OverFrame::Range { preceding: None },
    ];

    #[test]
    fn random_input_matches_a_from_scratch_computation() {
        for seed in 0..8 {
            for frame in FRAMES {
                let batches = random_batches(seed, 1 + seed as i32 * 3, 60);
                let mut op = new_op(frame, &ctx());
                let mut out = Output::new();
                for (rows, wm) in &batches {
                    op.on_batch(0, rows.clone(), &mut out).unwrap();
                    op.on_watermark(*wm, &mut out).unwrap();
                }
                op.on_watermark(i64::MAX, &mut out).unwrap();
                let input: Vec<Change> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
                assert_eq!(out.changes.len(), input.len(), "seed {seed}, {frame:?}");
                assert_eq!(
                    results(&out.changes),
                    reference(frame, &input),
                    "seed {seed}, {frame:?}"
                );
                // Only a ROWS frame keeps its last rows (until the state TTL), as Flink does.
                let kept = match frame {
                    OverFrame::Rows { preceding: Some(n) } => {
                        usize::try_from(n + 1).unwrap() * (1 + seed as usize * 3)
                    }
                    _ => 0,
                };
                assert!(op.buffered_rows() <= kept, "{frame:?}");
            }
        }
    }

    #[test]
    fn sled_spill_and_restores_at_random_cuts_give_the_same_results() {
        use rand::{Rng, SeedableRng};
        for seed in 0..6u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(100 + seed);
            for frame in FRAMES {
                let batches = random_batches(seed, 2000, 80);
                let run = |c: &TaskContext, cut: Option<usize>| {
                    let mut op = new_op(frame, c);
                    let mut out = Output::new();
                    for (i, (rows, wm)) in batches.iter().enumerate() {
                        if cut == Some(i) {
                            op = checkpoint_and_restore_with(&mut op, c, |c2| new_op(frame, c2));
                        }
                        op.on_batch(0, rows.clone(), &mut out).unwrap();
                        op.on_watermark(*wm, &mut out).unwrap();
                    }
                    op.on_watermark(i64::MAX, &mut out).unwrap();
                    out.changes
                };
                let straight = run(&ctx(), None);
                // A few hundred entries fit in memory: most keys live in sled.
                let small = TaskContext {
                    state: standalone_context(BackendKind::Sled, 64 * 1024),
                    ..ctx()
                };
                assert_eq!(run(&small, None), straight, "sled, seed {seed}, {frame:?}");
                let cut = rng.gen_range(0..batches.len());
                assert_eq!(
                    run(&ctx(), Some(cut)),
                    straight,
                    "restored at batch {cut}, seed {seed}, {frame:?}"
                );
            }
        }
    }

    #[test]
    fn state_ttl_forgets_an_idle_key() {
        let clock = crate::runtime::ManualClock::new(0);
        let mut c = ctx();
        c.state.ttl = Some(crate::state::StateTtl {
            ttl: std::time::Duration::from_millis(1000),
            clock: Arc::new(clock.clone()),
        });
        let mut op = new_op(OverFrame::Rows { preceding: Some(1) }, &c);
        let out = feed(&mut op, vec![row("a", 1000, 5), row("b", 1000, 1)], 1000);
        assert_eq!(
            show(&out),
            vec![o("a", 5, 1, 5, 5, 5), o("b", 1, 1, 1, 1, 1)]
        );
        clock.advance(600);
        feed(&mut op, vec![row("b", 1500, 2)], 1500);
        clock.advance(600);
        let mut out = Output::new();
        op.on_timer(0, &mut out).unwrap();
        // a expired: its frame is gone and a row older than its last one is taken again; b
        // was written 600 ms ago and keeps its frame.
        let out = feed(&mut op, vec![row("a", 900, 3), row("b", 1600, 4)], 2000);
        assert_eq!(
            show(&out),
            vec![o("a", 3, 1, 3, 3, 3), o("b", 4, 2, 6, 2, 4)]
        );
    }
}
