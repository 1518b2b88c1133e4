//! `WindowAggregate`: event-time window aggregation, for window TVF aggregations (TUMBLE, HOP,
//! CUMULATE, SESSION) and the legacy `GROUP BY TUMBLE(..)` group windows alike.
//!
//! Semantics (Flink's slicing and merging window operators, observed equal on 021):
//! - A window fires when the watermark reaches `end - 1`; it emits one `+I` row per key that has
//!   rows in it, before the watermark is forwarded. Nothing is ever retracted.
//! - A row contributes to each of its windows that has not fired when it arrives. Flink reaches
//!   the same result through slices: a row whose slice fired is merged into the state of the
//!   windows still open. A row with no open window is late: dropped and counted in
//!   `numLateRecordsDropped`.
//! - A session row opens `[ts, ts + gap)`, merged with every open session of its key that it
//!   intersects (bounds inclusive); it is late when the merged session has already reached its
//!   end, i.e. `end - 1 <= watermark`.
//! - Windows are computed directly (one accumulator set per window and key), not by slices:
//!   results are the same, DOUBLE sums may differ in the last bits, as they do between Flink runs.
//!
//! Output rows are `key values ++ [window_start, window_end, window_time] ++ aggregate values`;
//! window_start/end are TIMESTAMP(3), window_time has the rowtime's type and is `end - 1`.
//! Emission order is deterministic: by window end, then start, then key.
//!
//! State: every key's open windows (fixed windows with their accumulators, or the key's open
//! sessions) in a [`KeyedState`] named `fixed` or `session`; the firing order (timers) is kept in
//! memory beside it and rebuilt from the keyed state on restore, as Flink's heap timers are. The
//! operator state of a snapshot is the operator's shape and the watermark it has seen (it decides
//! which rows are late; restored at another parallelism, the smallest watermark of the subtasks
//! whose key groups a subtask takes over); the late-record counter is a metric and starts again
//! from zero, as Flink's metrics do.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::agg::{column, Accumulator, AggCall, AggregateCalls, AggregateKind};
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, put_ivarint, put_uvarint,
    put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec};
use crate::types::DataType;
use crate::value::{Change, Row, RowKind, Value};
use crate::window::{is_window_fired, SessionWindows, TimeWindow, WindowKind};

/// What the planner specifies for a `WindowAggregate`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowAggSpec {
    /// The input column holding the rowtime (TIMESTAMP(3) or TIMESTAMP_LTZ(3)).
    pub time_col: usize,
    pub window: WindowKind,
    /// Group keys other than the window (for SESSION: the PARTITION BY keys, then the others).
    pub key_cols: Vec<usize>,
    pub aggs: Vec<AggCall>,
    /// The rowtime's type, which `window_time` keeps.
    pub time_type: DataType,
}

/// The message Flink fails with on a NULL rowtime in a window aggregation.
const NULL_ROWTIME: &str =
    "RowTime field should not be null, please convert it to a non-null long value.";

/// The open fixed windows of one key, each with its accumulators, in (end, start) order.
pub type KeyFixedWindows = Vec<(TimeWindow, Vec<Accumulator>)>;

/// The byte after the version byte of a `WindowAggregate` operator-state blob, so that a blob of
/// another operator is refused instead of misread.
const STATE_MARKER: u8 = b'W';
/// The state-blob byte of TUMBLE/HOP/CUMULATE state.
const STATE_FIXED: u8 = 0;
/// The state-blob byte of SESSION state.
const STATE_SESSION: u8 = 1;
/// Keyed-state names.
const FIXED_STATE: &str = "fixed";
const SESSION_STATE: &str = "session";

/// Reads a count written by this module, refusing one larger than the bytes left (every item
/// takes at least one byte), so a corrupt count cannot reserve a huge buffer.
fn get_count(input: &mut &[u8], what: &str) -> Result<usize> {
    let n = get_len(input)?;
    if n > input.len() {
        return Err(corrupt(format!(
            "{n} {what} announced but only {} bytes left",
            input.len()
        )));
    }
    Ok(n)
}

/// How keys and values of the window states become bytes.
struct WindowCodec<'a> {
    aggs: &'a AggregateCalls,
    key_len: usize,
}

impl WindowCodec<'_> {
    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }
}

impl StateCodec<Row, KeyFixedWindows> for WindowCodec<'_> {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        WindowCodec::decode_key(self, bytes)
    }

    fn encode_value(&self, windows: &KeyFixedWindows, out: &mut Vec<u8>) {
        put_uvarint(out, windows.len() as u64);
        for (w, accs) in windows {
            put_ivarint(out, w.end);
            put_ivarint(out, w.start);
            self.aggs.encode_state(accs, out);
        }
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<KeyFixedWindows> {
        let input = &mut bytes;
        let n = get_count(input, "windows")?;
        if n == 0 {
            return Err(corrupt("a key without open windows is not kept"));
        }
        let mut windows = Vec::with_capacity(n);
        let mut previous: Option<(i64, i64)> = None;
        for _ in 0..n {
            let end = get_ivarint(input)?;
            let start = get_ivarint(input)?;
            if start >= end || previous.is_some_and(|p| p >= (end, start)) {
                return Err(corrupt(format!(
                    "window [{start}, {end}) is empty or out of order"
                )));
            }
            previous = Some((end, start));
            windows.push((TimeWindow::new(start, end), self.aggs.decode_state(input)?));
        }
        expect_end(input)?;
        Ok(windows)
    }
}

impl StateCodec<Row, SessionWindows<Vec<Accumulator>>> for WindowCodec<'_> {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        WindowCodec::decode_key(self, bytes)
    }

    fn encode_value(&self, sessions: &SessionWindows<Vec<Accumulator>>, out: &mut Vec<u8>) {
        put_uvarint(out, sessions.len() as u64);
        for (w, accs) in sessions.windows() {
            put_ivarint(out, w.start);
            put_ivarint(out, w.end);
            self.aggs.encode_state(accs, out);
        }
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<SessionWindows<Vec<Accumulator>>> {
        let input = &mut bytes;
        let n = get_count(input, "sessions")?;
        if n == 0 {
            return Err(corrupt("a key without open sessions is not kept"));
        }
        let mut sessions = SessionWindows::new();
        let mut previous_end: Option<i64> = None;
        for _ in 0..n {
            let start = get_ivarint(input)?;
            let end = get_ivarint(input)?;
            // Open sessions of a key never touch (touching ones merge), so each must start after
            // the previous one ended: then adding it cannot merge anything.
            if start >= end || previous_end.is_some_and(|e| start <= e) {
                return Err(corrupt(format!(
                    "session [{start}, {end}) is empty, out of order or overlaps another"
                )));
            }
            previous_end = Some(end);
            let accs = self.aggs.decode_state(input)?;
            sessions.add(TimeWindow::new(start, end), accs, |_, _| {
                Err(corrupt("restored sessions overlap"))
            })?;
        }
        expect_end(input)?;
        Ok(sessions)
    }
}

/// The codec of `op`'s state, borrowing only the fields it needs so the state stays mutable.
macro_rules! codec {
    ($op:expr) => {
        WindowCodec {
            aggs: &$op.aggs,
            key_len: $op.key_cols.len(),
        }
    };
}

/// The window aggregation operator.
pub struct WindowAggregate {
    time_col: usize,
    window: WindowKind,
    key_cols: Vec<usize>,
    aggs: AggregateCalls,
    ltz: bool,
    metrics: Arc<TaskMetrics>,
    watermark: i64,
    /// TUMBLE/HOP/CUMULATE: each key's open windows.
    fixed: KeyedState<Row, KeyFixedWindows>,
    /// TUMBLE/HOP/CUMULATE: the keys of each open window, keyed by (end, start) so firing walks
    /// a prefix (the timers).
    fixed_timers: BTreeMap<(i64, i64), Vec<Row>>,
    /// SESSION: each key's open sessions.
    sessions: KeyedState<Row, SessionWindows<Vec<Accumulator>>>,
    /// SESSION: (end, start, key) of every open session, the firing order (the timers).
    session_timers: BTreeSet<(i64, i64, Row)>,
    key_buf: Row,
    windows_buf: Vec<TimeWindow>,
}

impl WindowAggregate {
    /// Builds the operator; rejects bad window sizes, a rowtime that is not a timestamp, and
    /// FIRST_VALUE/LAST_VALUE in session windows (they cannot merge).
    pub fn new(spec: WindowAggSpec, ctx: &TaskContext) -> Result<Self> {
        spec.window.validate()?;
        let ltz = match spec.time_type {
            DataType::Timestamp(_) => false,
            DataType::TimestampLtz(_) => true,
            ref t => {
                return Err(EngineError::type_error(format!(
                    "The window function requires the timecol is a time attribute type, but is {t}."
                )))
            }
        };
        if matches!(spec.window, WindowKind::Session { .. }) {
            if let Some(c) = spec
                .aggs
                .iter()
                .find(|c| matches!(c.kind, AggregateKind::FirstValue | AggregateKind::LastValue))
            {
                return Err(EngineError::type_error(format!(
                    "{} is not supported in SESSION windows: it cannot merge sessions",
                    c.kind.name()
                )));
            }
        }
        Ok(WindowAggregate {
            time_col: spec.time_col,
            window: spec.window,
            key_buf: Vec::with_capacity(spec.key_cols.len()),
            key_cols: spec.key_cols,
            aggs: AggregateCalls::new(spec.aggs, true)?,
            ltz,
            metrics: ctx.metrics.clone(),
            watermark: i64::MIN,
            fixed: KeyedState::new(FIXED_STATE, &ctx.state, ctx.max_parallelism),
            fixed_timers: BTreeMap::new(),
            sessions: KeyedState::new(SESSION_STATE, &ctx.state, ctx.max_parallelism),
            session_timers: BTreeSet::new(),
            windows_buf: Vec::new(),
        })
    }

    /// A factory building one `WindowAggregate` per subtask.
    pub fn factory(spec: WindowAggSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(WindowAggregate::new(spec.clone(), ctx)?))
        })
    }

    /// Open (window, key) pairs: fixed windows per key, or open sessions.
    pub fn open_windows(&self) -> usize {
        self.fixed_timers.values().map(Vec::len).sum::<usize>() + self.session_timers.len()
    }

    /// The watermark the operator last saw (`i64::MIN` before the first).
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    fn is_session(&self) -> bool {
        matches!(self.window, WindowKind::Session { .. })
    }

    /// The operator-state blob: version, marker, window family, key column count, aggregate
    /// call count, watermark.
    fn encode_operator_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_version(&mut out);
        out.push(STATE_MARKER);
        out.push(if self.is_session() {
            STATE_SESSION
        } else {
            STATE_FIXED
        });
        self.aggs.put_state_shape(self.key_cols.len(), &mut out);
        put_ivarint(&mut out, self.watermark);
        out
    }

    /// Reads a blob of [`WindowAggregate::encode_operator_state`], checking it fits this
    /// operator; returns the watermark.
    fn decode_operator_state(&self, mut input: &[u8]) -> Result<i64> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a window aggregation"
            )));
        }
        let session = self.is_session();
        let family = get_u8(input)?;
        let expected = if session { STATE_SESSION } else { STATE_FIXED };
        if family != expected {
            let name = |f: bool| if f { "SESSION" } else { "TUMBLE/HOP/CUMULATE" };
            return Err(EngineError::data(format!(
                "the state was written for {} windows, but the aggregation uses {} windows",
                name(family == STATE_SESSION),
                name(session)
            )));
        }
        self.aggs.check_state_shape(self.key_cols.len(), input)?;
        let watermark = get_ivarint(input)?;
        expect_end(input)?;
        Ok(watermark)
    }

    fn process(&mut self, change: &Change) -> Result<()> {
        if change.kind != RowKind::Insert {
            return Err(EngineError::internal(format!(
                "window aggregation takes an append-only input, got a {} row",
                change.kind.short()
            )));
        }
        let row = &change.row;
        let ts = match column(row, self.time_col)? {
            Value::Timestamp(t) | Value::TimestampLtz(t) => *t,
            Value::Null => return Err(EngineError::data(NULL_ROWTIME)),
            other => {
                return Err(EngineError::internal(format!(
                    "the rowtime column {} holds a non-timestamp value {other:?}",
                    self.time_col
                )))
            }
        };
        self.key_buf.clear();
        for &c in &self.key_cols {
            self.key_buf.push(column(row, c)?.clone());
        }
        let accepted = if let WindowKind::Session { gap } = self.window {
            self.add_to_session(ts, gap, row)?
        } else {
            self.add_to_fixed(ts, row)?
        };
        if !accepted {
            TaskMetrics::add(&self.metrics.late_records_dropped, 1);
        }
        Ok(())
    }

    /// Adds the row to its open windows; false when all of them have fired.
    fn add_to_fixed(&mut self, ts: i64, row: &[Value]) -> Result<bool> {
        self.window.assign(ts, &mut self.windows_buf)?;
        let watermark = self.watermark;
        self.windows_buf
            .retain(|w| !is_window_fired(w.end, watermark));
        if self.windows_buf.is_empty() {
            return Ok(false);
        }
        let codec = codec!(self);
        if self.fixed.get(&codec, self.key_buf.as_slice())?.is_none() {
            self.fixed
                .insert(&codec, self.key_buf.clone(), Vec::new())?;
        }
        let windows = self
            .fixed
            .get_mut(&codec, self.key_buf.as_slice())?
            .ok_or_else(|| EngineError::internal("a key inserted into window state is missing"))?;
        for w in &self.windows_buf {
            match windows.iter_mut().find(|(o, _)| o == w) {
                Some((_, accs)) => self.aggs.accumulate(accs, row, false)?,
                None => {
                    let mut accs = self.aggs.create();
                    self.aggs.accumulate(&mut accs, row, false)?;
                    let at = windows.partition_point(|(o, _)| (o.end, o.start) < (w.end, w.start));
                    windows.insert(at, (*w, accs));
                    self.fixed_timers
                        .entry((w.end, w.start))
                        .or_default()
                        .push(self.key_buf.clone());
                }
            }
        }
        Ok(true)
    }

    /// Adds the row to its key's sessions; false when the merged session has already fired.
    fn add_to_session(&mut self, ts: i64, gap: i64, row: &[Value]) -> Result<bool> {
        let end = ts.checked_add(gap).ok_or_else(|| {
            EngineError::data(format!(
                "event timestamp {ts} ms plus the session gap overflows the time range"
            ))
        })?;
        let new = TimeWindow::new(ts, end);
        let codec = codec!(self);
        if self
            .sessions
            .get(&codec, self.key_buf.as_slice())?
            .is_none()
        {
            if is_window_fired(new.end, self.watermark) {
                return Ok(false);
            }
            self.sessions
                .insert(&codec, self.key_buf.clone(), SessionWindows::new())?;
        }
        let sessions = self
            .sessions
            .get_mut(&codec, self.key_buf.as_slice())?
            .ok_or_else(|| EngineError::internal("a key inserted into session state is missing"))?;
        if is_window_fired(sessions.merged_extent(new).end, self.watermark) {
            if sessions.is_empty() {
                self.sessions.remove(&codec, self.key_buf.as_slice())?;
            }
            return Ok(false);
        }
        let aggs = &self.aggs;
        let (merged, replaced, accs) =
            sessions.add(new, aggs.create(), |into, from| aggs.merge(into, from))?;
        aggs.accumulate(accs, row, false)?;
        for old in replaced {
            self.session_timers
                .remove(&(old.end, old.start, self.key_buf.clone()));
        }
        self.session_timers
            .insert((merged.end, merged.start, self.key_buf.clone()));
        Ok(true)
    }

    fn output_row(&self, key: &[Value], w: TimeWindow, accs: &[Accumulator]) -> Row {
        let mut row = Vec::with_capacity(key.len() + 3 + accs.len());
        row.extend_from_slice(key);
        row.push(Value::Timestamp(w.start));
        row.push(Value::Timestamp(w.end));
        let time = w.max_timestamp();
        row.push(if self.ltz {
            Value::TimestampLtz(time)
        } else {
            Value::Timestamp(time)
        });
        self.aggs.values_into(accs, &mut row);
        row
    }

    /// Emits every window that has fired at `watermark`, oldest end first.
    fn fire(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        while let Some(entry) = self.fixed_timers.first_entry() {
            let (end, start) = *entry.key();
            if !is_window_fired(end, watermark) {
                break;
            }
            let mut keys = entry.remove();
            keys.sort_unstable();
            let w = TimeWindow::new(start, end);
            for key in keys {
                let codec = codec!(self);
                let Some(windows) = self.fixed.get_mut(&codec, &key)? else {
                    continue;
                };
                let Some(at) = windows.iter().position(|(o, _)| *o == w) else {
                    continue;
                };
                let (_, accs) = windows.remove(at);
                if windows.is_empty() {
                    self.fixed.remove(&codec, &key)?;
                }
                out.emit(RowKind::Insert, self.output_row(&key, w, &accs));
            }
        }
        while self
            .session_timers
            .first()
            .is_some_and(|(end, _, _)| is_window_fired(*end, watermark))
        {
            let Some((_, start, key)) = self.session_timers.pop_first() else {
                break;
            };
            let codec = codec!(self);
            let Some(sessions) = self.sessions.get_mut(&codec, &key)? else {
                continue;
            };
            let removed = sessions.remove(start);
            if sessions.is_empty() {
                self.sessions.remove(&codec, &key)?;
            }
            if let Some((w, accs)) = removed {
                out.emit(RowKind::Insert, self.output_row(&key, w, &accs));
            }
        }
        Ok(())
    }
}

impl Operator for WindowAggregate {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        for change in &batch {
            self.process(change)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire(watermark, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_end_of_input(&mut self, out: &mut Output) -> Result<()> {
        // The runtime sends a final MAX watermark first; firing again is a no-op then.
        self.fire(i64::MAX, out)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_operator_state())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        let codec = codec!(self);
        self.fixed.begin_flush(&codec);
        self.sessions.begin_flush(&codec);
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        let codec = codec!(self);
        if !self.fixed.continue_flush(&codec, budget)
            || !self.sessions.continue_flush(&codec, budget)
        {
            return Ok(false);
        }
        delta.append(self.fixed.take_flushed());
        delta.append(self.sessions.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            // No state was written for this operator: it starts fresh.
            return Ok(());
        }
        self.watermark = self.decode_operator_state(state).map_err(|e| {
            EngineError::data(format!("cannot restore the WindowAggregate state: {e}"))
        })?;
        Ok(())
    }

    /// The states of the old subtasks whose key groups this one takes over: the smallest of
    /// their watermarks, so that no row one of them would still have accepted is dropped as late
    /// (Flink restores no watermark at all).
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        let mut watermark: Option<i64> = None;
        for state in states.iter().filter(|s| !s.is_empty()) {
            let w = self.decode_operator_state(state).map_err(|e| {
                EngineError::data(format!("cannot restore the WindowAggregate state: {e}"))
            })?;
            watermark = Some(watermark.map_or(w, |m| m.min(w)));
        }
        if let Some(w) = watermark {
            self.watermark = w;
        }
        Ok(())
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let fail = |e: EngineError| {
            EngineError::data(format!("cannot restore the WindowAggregate state: {e}"))
        };
        let codec = codec!(self);
        match (state, self.is_session()) {
            (FIXED_STATE, false) => {
                let windows: KeyFixedWindows = codec.decode_value(value).map_err(fail)?;
                let key = self
                    .fixed
                    .restore_entry(&codec, state, key, value)
                    .map_err(fail)?;
                for (w, _) in windows {
                    self.fixed_timers
                        .entry((w.end, w.start))
                        .or_default()
                        .push(key.clone());
                }
            }
            (SESSION_STATE, true) => {
                let sessions: SessionWindows<Vec<Accumulator>> =
                    codec.decode_value(value).map_err(fail)?;
                let key = self
                    .sessions
                    .restore_entry(&codec, state, key, value)
                    .map_err(fail)?;
                for (w, _) in sessions.windows() {
                    self.session_timers.insert((w.end, w.start, key.clone()));
                }
            }
            _ => {
                return Err(fail(corrupt(format!(
                    "keyed state '{state}' does not belong to {} windows",
                    if self.is_session() {
                        "SESSION"
                    } else {
                        "TUMBLE/HOP/CUMULATE"
                    }
                ))))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::resolve_aggregate;

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 2,
            operator_name: "WindowAggregate".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    fn call(name: &str, arg: Option<(usize, DataType)>) -> AggCall {
        let types: Vec<DataType> = arg.iter().map(|(_, t)| t.clone()).collect();
        let (kind, ret) = resolve_aggregate(name, &types, false).unwrap();
        AggCall {
            kind,
            arg: arg.map(|(i, _)| i),
            distinct: false,
            ret,
            filter: None,
        }
    }

    /// Input rows: (key STRING, ts TIMESTAMP(3), v INT).
    fn op(window: WindowKind) -> WindowAggregate {
        let spec = WindowAggSpec {
            time_col: 1,
            window,
            key_cols: vec![0],
            aggs: vec![call("COUNT", None), call("SUM", Some((2, DataType::Int)))],
            time_type: DataType::Timestamp(3),
        };
        WindowAggregate::new(spec, &ctx()).unwrap()
    }

    fn row(k: &str, ts: i64, v: i32) -> Change {
        Change::insert(vec![Value::string(k), Value::Timestamp(ts), Value::Int(v)])
    }

    /// (key, start, end, count, sum) of every emitted row.
    fn rows(changes: &[Change]) -> Vec<(String, i64, i64, i64, i64)> {
        changes
            .iter()
            .map(|c| {
                assert_eq!(c.kind, RowKind::Insert);
                let r = &c.row;
                assert_eq!(
                    r[3].as_timestamp_millis().unwrap(),
                    r[2].as_timestamp_millis().unwrap() - 1
                );
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_timestamp_millis().unwrap(),
                    r[2].as_timestamp_millis().unwrap(),
                    r[4].as_i64().unwrap(),
                    r[5].as_i64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn tumble_fires_at_end_minus_one_before_the_watermark() {
        let mut op = op(WindowKind::Tumble {
            size: 10,
            offset: 0,
        });
        let mut out = Output::new();
        op.on_batch(
            0,
            vec![row("b", 1, 1), row("a", 9, 2), row("a", 12, 3)],
            &mut out,
        )
        .unwrap();
        assert!(out.changes.is_empty());
        op.on_watermark(8, &mut out).unwrap();
        assert!(out.changes.is_empty());
        assert_eq!(out.watermarks, vec![(0, 8)]);
        let mut out = Output::new();
        op.on_watermark(9, &mut out).unwrap();
        assert_eq!(
            rows(&out.changes),
            vec![("a".into(), 0, 10, 1, 2), ("b".into(), 0, 10, 1, 1)]
        );
        assert_eq!(out.watermarks, vec![(2, 9)]);
        // Late: its window [0, 10) has fired.
        let mut out = Output::new();
        op.on_batch(0, vec![row("a", 5, 100)], &mut out).unwrap();
        assert_eq!(TaskMetrics::get(&op.metrics.late_records_dropped), 1);
        op.on_watermark(i64::MAX, &mut out).unwrap();
        op.on_end_of_input(&mut out).unwrap();
        assert_eq!(rows(&out.changes), vec![("a".into(), 10, 20, 1, 3)]);
    }

    #[test]
    fn hop_row_late_for_some_windows_goes_to_the_open_ones() {
        let mut op = op(WindowKind::Hop {
            size: 20,
            slide: 10,
            offset: 0,
        });
        let mut out = Output::new();
        op.on_batch(0, vec![row("a", 12, 1)], &mut out).unwrap();
        op.on_watermark(19, &mut out).unwrap();
        assert_eq!(rows(&out.changes), vec![("a".into(), 0, 20, 1, 1)]);
        // ts 15 is in [0, 20) (fired) and [10, 30) (open).
        let mut out = Output::new();
        op.on_batch(0, vec![row("a", 15, 2)], &mut out).unwrap();
        op.on_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(rows(&out.changes), vec![("a".into(), 10, 30, 2, 3)]);
        assert_eq!(TaskMetrics::get(&op.metrics.late_records_dropped), 0);
    }

    #[test]
    fn cumulate_windows_grow() {
        let mut op = op(WindowKind::Cumulate {
            max_size: 30,
            step: 10,
            offset: 0,
        });
        let mut out = Output::new();
        op.on_batch(0, vec![row("a", 5, 1), row("a", 25, 2)], &mut out)
            .unwrap();
        op.on_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(
            rows(&out.changes),
            vec![
                ("a".into(), 0, 10, 1, 1),
                ("a".into(), 0, 20, 1, 1),
                ("a".into(), 0, 30, 2, 3)
            ]
        );
    }

    #[test]
    fn sessions_merge_and_fire_per_key() {
        let mut op = op(WindowKind::Session { gap: 10 });
        let mut out = Output::new();
        op.on_batch(
            0,
            vec![
                row("a", 100, 1),
                row("b", 105, 1),
                row("a", 120, 2),
                // Exactly `gap` after 100: bridges into [100, 130).
                row("a", 110, 4),
            ],
            &mut out,
        )
        .unwrap();
        op.on_watermark(114, &mut out).unwrap();
        assert_eq!(rows(&out.changes), vec![("b".into(), 105, 115, 1, 1)]);
        // Would be late on its own ([95, 105) ended) but merges into the open session.
        let mut out = Output::new();
        op.on_batch(0, vec![row("a", 95, 8), row("b", 90, 1)], &mut out)
            .unwrap();
        assert_eq!(TaskMetrics::get(&op.metrics.late_records_dropped), 1);
        op.on_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(rows(&out.changes), vec![("a".into(), 95, 130, 4, 15)]);
        assert_eq!(op.open_windows(), 0);
        assert_eq!(op.sessions.hot_entries().count(), 0);
    }

    #[test]
    fn ltz_rowtime_gives_ltz_window_time() {
        let spec = WindowAggSpec {
            time_col: 0,
            window: WindowKind::Tumble {
                size: 10,
                offset: 0,
            },
            key_cols: vec![],
            aggs: vec![call("COUNT", None)],
            time_type: DataType::TimestampLtz(3),
        };
        let mut op = WindowAggregate::new(spec, &ctx()).unwrap();
        let mut out = Output::new();
        op.on_batch(
            0,
            vec![Change::insert(vec![Value::TimestampLtz(3)])],
            &mut out,
        )
        .unwrap();
        op.on_end_of_input(&mut out).unwrap();
        assert_eq!(
            out.changes[0].row,
            vec![
                Value::Timestamp(0),
                Value::Timestamp(10),
                Value::TimestampLtz(9),
                Value::BigInt(1)
            ]
        );
        assert!(matches!(out.changes[0].row[2], Value::TimestampLtz(9)));
        assert!(matches!(out.changes[0].row[1], Value::Timestamp(10)));
    }

    #[test]
    fn rejects_updates_null_rowtime_and_bad_specs() {
        let mut op = op(WindowKind::Tumble {
            size: 10,
            offset: 0,
        });
        let mut out = Output::new();
        let upd = Change::new(
            RowKind::UpdateAfter,
            vec![Value::string("a"), Value::Timestamp(1), Value::Int(1)],
        );
        assert!(op.on_batch(0, vec![upd], &mut out).is_err());
        let null_ts = Change::insert(vec![Value::string("a"), Value::Null, Value::Int(1)]);
        assert!(op.on_batch(0, vec![null_ts], &mut out).is_err());
        let spec = WindowAggSpec {
            time_col: 0,
            window: WindowKind::Tumble { size: 0, offset: 0 },
            key_cols: vec![],
            aggs: vec![],
            time_type: DataType::Timestamp(3),
        };
        assert!(WindowAggregate::new(spec.clone(), &ctx()).is_err());
        let spec = WindowAggSpec {
            window: WindowKind::Tumble { size: 5, offset: 0 },
            time_type: DataType::BigInt,
            ..spec
        };
        assert!(WindowAggregate::new(spec, &ctx()).is_err());
    }

    /// A step of a random input: a batch of rows or a watermark.
    #[derive(Clone, Debug)]
    enum Step {
        Batch(Vec<Change>),
        Watermark(i64),
    }

    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};
    use streamsql_storage::Snapshot;

    /// A context whose subtask has a state store: alternately hashmap and sled, the latter with a
    /// budget small enough that state spills.
    fn store_ctx(seed: u64) -> TaskContext {
        let state = if seed.is_multiple_of(2) {
            standalone_context(BackendKind::HashMap, 1 << 20)
        } else {
            standalone_context(BackendKind::Sled, 16 * 1024)
        };
        TaskContext { state, ..ctx() }
    }

    fn checkpoint(op: &mut WindowAggregate, ctx: &TaskContext, id: u64) -> (Vec<u8>, Snapshot) {
        let (blob, snap) = snapshot_now(op, ctx.state.store.as_ref(), id).unwrap();
        (blob, snap.expect("a store gives a keyed snapshot"))
    }

    /// Input rows: (key STRING, ts TIMESTAMP(3), v INT); a DISTINCT call included so merged
    /// sessions carry value sets too.
    fn snapshot_op(window: WindowKind) -> WindowAggregate {
        snapshot_op_in(window, &ctx())
    }

    fn snapshot_op_in(window: WindowKind, ctx: &TaskContext) -> WindowAggregate {
        let mut distinct = call("COUNT", Some((2, DataType::Int)));
        distinct.distinct = true;
        let spec = WindowAggSpec {
            time_col: 1,
            window,
            key_cols: vec![0],
            aggs: vec![
                call("COUNT", None),
                call("SUM", Some((2, DataType::Int))),
                call("MAX", Some((2, DataType::Int))),
                distinct,
            ],
            time_type: DataType::Timestamp(3),
        };
        WindowAggregate::new(spec, ctx).unwrap()
    }

    /// Rows around the watermark (some late), watermarks that mostly advance (sometimes they
    /// repeat or go back, which the operator ignores).
    fn random_steps(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<Step> {
        use rand::Rng;
        let keys = [
            Value::string("a"),
            Value::string("b"),
            Value::string("c"),
            Value::Null,
        ];
        let mut wm = 0i64;
        let mut steps = Vec::with_capacity(n);
        for _ in 0..n {
            if rng.gen_bool(0.3) {
                wm += rng.gen_range(-3..=20);
                steps.push(Step::Watermark(wm));
            } else {
                let batch = (0..rng.gen_range(1..=6))
                    .map(|_| {
                        Change::insert(vec![
                            keys[rng.gen_range(0..keys.len())].clone(),
                            Value::Timestamp(wm + rng.gen_range(-25..=40)),
                            Value::Int(rng.gen_range(0..=4)),
                        ])
                    })
                    .collect();
                steps.push(Step::Batch(batch));
            }
        }
        steps
    }

    fn feed_steps(op: &mut WindowAggregate, steps: &[Step], out: &mut Output) {
        for step in steps {
            match step {
                Step::Batch(b) => op.on_batch(0, b.clone(), out).unwrap(),
                Step::Watermark(w) => op.on_watermark(*w, out).unwrap(),
            }
        }
    }

    fn all_windows() -> Vec<WindowKind> {
        vec![
            WindowKind::Tumble {
                size: 10,
                offset: 0,
            },
            WindowKind::Hop {
                size: 20,
                slide: 5,
                offset: 0,
            },
            WindowKind::Cumulate {
                max_size: 30,
                step: 10,
                offset: 0,
            },
            WindowKind::Session { gap: 7 },
        ]
    }

    #[test]
    fn restored_operator_continues_exactly_like_the_original() {
        use rand::{Rng, SeedableRng};
        for window in all_windows() {
            // The random inputs must reach what matters: state at the cut, late rows after it.
            let (mut cuts_with_state, mut late_after_cut) = (0, 0);
            for seed in 0..25u64 {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let steps = random_steps(&mut rng, 60);
                let cut = rng.gen_range(0..=steps.len());
                let ctx_a = store_ctx(seed);
                let mut a = snapshot_op_in(window.clone(), &ctx_a);
                feed_steps(&mut a, &steps[..cut], &mut Output::new());
                let late_at_cut = TaskMetrics::get(&a.metrics.late_records_dropped);
                let (blob, snap) = checkpoint(&mut a, &ctx_a, 1);
                let (blob2, snap2) = checkpoint(&mut a, &ctx_a, 2);
                assert_eq!(
                    (&blob2, &snap2.records),
                    (&blob, &snap.records),
                    "repeatable"
                );
                if a.open_windows() > 0 {
                    cuts_with_state += 1;
                }
                let ctx_b = store_ctx(seed);
                let mut b = snapshot_op_in(window.clone(), &ctx_b);
                restore_operator(
                    &mut b,
                    ctx_b.state.store.as_ref(),
                    &blob,
                    vec![snap.clone()],
                )
                .unwrap();
                assert_eq!(b.current_watermark(), a.current_watermark());
                assert_eq!(b.open_windows(), a.open_windows());
                let (blob_b, snap_b) = checkpoint(&mut b, &ctx_b, 1);
                assert_eq!(
                    (&blob_b, &snap_b.records),
                    (&blob, &snap.records),
                    "{window:?} seed {seed}"
                );
                let (mut out_a, mut out_b) = (Output::new(), Output::new());
                feed_steps(&mut a, &steps[cut..], &mut out_a);
                feed_steps(&mut b, &steps[cut..], &mut out_b);
                assert_eq!(
                    checkpoint(&mut a, &ctx_a, 3).1.records,
                    checkpoint(&mut b, &ctx_b, 3).1.records
                );
                a.on_watermark(i64::MAX, &mut out_a).unwrap();
                a.on_end_of_input(&mut out_a).unwrap();
                b.on_watermark(i64::MAX, &mut out_b).unwrap();
                b.on_end_of_input(&mut out_b).unwrap();
                let what = format!("{window:?} seed {seed}, cut after step {cut}");
                assert_eq!(out_a.changes, out_b.changes, "{what}");
                assert_eq!(out_a.watermarks, out_b.watermarks, "{what}");
                assert_eq!(
                    TaskMetrics::get(&a.metrics.late_records_dropped) - late_at_cut,
                    TaskMetrics::get(&b.metrics.late_records_dropped),
                    "{what}"
                );
                late_after_cut += TaskMetrics::get(&b.metrics.late_records_dropped);
            }
            assert!(cuts_with_state > 15 && late_after_cut > 0, "{window:?}");
        }
    }

    #[test]
    fn restored_watermark_still_decides_lateness() {
        let mut a = op(WindowKind::Session { gap: 10 });
        let mut out = Output::new();
        a.on_batch(0, vec![row("a", 100, 1)], &mut out).unwrap();
        a.on_watermark(200, &mut out).unwrap();
        let mut b = op(WindowKind::Session { gap: 10 });
        b.restore_state(&a.snapshot_state(1).unwrap()).unwrap();
        let mut out = Output::new();
        b.on_batch(0, vec![row("a", 150, 1)], &mut out).unwrap();
        assert_eq!(TaskMetrics::get(&b.metrics.late_records_dropped), 1);
        b.on_end_of_input(&mut out).unwrap();
        assert!(out.changes.is_empty());
    }

    #[test]
    fn empty_state_restores_a_fresh_operator() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let steps = random_steps(&mut rng, 40);
        for window in all_windows() {
            let mut fresh = snapshot_op(window.clone());
            let ctx_r = store_ctx(1);
            let mut restored = snapshot_op_in(window.clone(), &ctx_r);
            restore_operator(&mut restored, ctx_r.state.store.as_ref(), &[], vec![]).unwrap();
            assert_eq!(restored.current_watermark(), i64::MIN);
            let (mut out_f, mut out_r) = (Output::new(), Output::new());
            feed_steps(&mut fresh, &steps, &mut out_f);
            feed_steps(&mut restored, &steps, &mut out_r);
            assert_eq!(out_f.changes, out_r.changes);
            assert_eq!(out_f.watermarks, out_r.watermarks);
        }
    }

    #[test]
    fn corrupt_or_mismatched_state_is_refused_without_panicking() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let steps = random_steps(&mut rng, 30);
        for window in all_windows() {
            let ctx_a = store_ctx(0);
            let mut a = snapshot_op_in(window.clone(), &ctx_a);
            feed_steps(&mut a, &steps, &mut Output::new());
            let (blob, snap) = checkpoint(&mut a, &ctx_a, 1);
            let refused = |bytes: &[u8], b: &mut WindowAggregate| -> String {
                match b.restore_state(bytes) {
                    Err(e @ EngineError::Data { .. }) => {
                        assert_eq!(b.current_watermark(), i64::MIN, "nothing restored");
                        e.to_string()
                    }
                    other => panic!("expected a data error, got {other:?}"),
                }
            };
            for len in 1..blob.len() {
                let msg = refused(&blob[..len], &mut snapshot_op(window.clone()));
                assert!(msg.contains("WindowAggregate"), "{msg}");
            }
            let mut wrong_version = blob.clone();
            wrong_version[0] = 7;
            let msg = refused(&wrong_version, &mut snapshot_op(window.clone()));
            assert!(msg.contains("format version 7"), "{msg}");
            // The test operator of `op` has two aggregate calls, this state four.
            let msg = refused(&blob, &mut op(window.clone()));
            assert!(msg.contains("4 aggregate calls"), "{msg}");
            let other_family = if matches!(window, WindowKind::Session { .. }) {
                WindowKind::Tumble {
                    size: 10,
                    offset: 0,
                }
            } else {
                WindowKind::Session { gap: 7 }
            };
            let msg = refused(&blob, &mut snapshot_op(other_family));
            assert!(msg.contains("windows"), "{msg}");
            for _ in 0..500 {
                let mut bytes = blob.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
                let _ = snapshot_op(window.clone()).restore_state(&bytes);
            }
            // Keyed entries: damaged or misplaced ones are refused, never a panic.
            let Some(r) = snap.records.first() else {
                panic!("{window:?}: the random input leaves open windows");
            };
            let value = r.value.clone().unwrap();
            let name = if matches!(window, WindowKind::Session { .. }) {
                SESSION_STATE
            } else {
                FIXED_STATE
            };
            let other = if name == FIXED_STATE {
                SESSION_STATE
            } else {
                FIXED_STATE
            };
            let mut b = snapshot_op(window.clone());
            assert!(b.restore_keyed(other, &r.key, &value).is_err());
            for len in 0..value.len() {
                assert!(b.restore_keyed(name, &r.key, &value[..len]).is_err());
            }
            for _ in 0..500 {
                let mut v = value.clone();
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
                let _ = b.restore_keyed(name, &r.key, &v);
            }
        }
    }
}
