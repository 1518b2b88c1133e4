//! `IntervalJoin`: the event-time interval join of two append-only inputs (Flink's
//! `RowTimeIntervalJoin`), `ON l.k = r.k AND l.ts BETWEEN r.ts - a AND r.ts + b` and its
//! comparison forms, INNER, LEFT, RIGHT and FULL.
//!
//! With `left_time - right_time` in `[lower, upper]`, a left row at `tl` joins right rows in
//! `[tl - upper, tl - lower]` and a right row at `tr` left rows in `[tr + lower, tr + upper]`.
//! Per join key each side's rows are cached by rowtime, with a flag saying whether the row has
//! joined (for outer padding). Exactly as Flink:
//! - a row joins the cached rows of the other side in its range, evaluating the residual
//!   condition; the other side's cache is scanned only while its expiration time (derived from
//!   the watermark, kept per operator) is below the range's upper end, and rows of it that
//!   expired are removed during that scan (null-padded first when that side is outer and they
//!   never joined);
//! - the row is cached when the watermark is below its range's upper end; otherwise it can never
//!   join again: it is null-padded at once when its side is outer and it did not join (a late row
//!   joins only what is still cached, and is otherwise dropped or padded);
//! - a per-key cleanup timer for each side fires at `time + relative size + span / 2 + 1` (the
//!   span being `upper - lower`) once the watermark reaches it, removes (and for an outer side
//!   null-pads) the rows the watermark has passed, and is registered again for the earliest row
//!   left.
//!
//! The output is append-only; the watermark is forwarded held back by the larger relative size
//! (`max(-lower, upper)`), as Flink's operator delays it. Rows with a NULL rowtime are dropped;
//! rows whose key has a NULL never join (outer sides pad them when they expire).
//! An empty interval (`lower > upper`) joins nothing: outer sides are padded at once.
//!
//! State: a [`KeyedState`] named `interval` holding per key both caches and cleanup timers; the
//! timer order is kept in memory and rebuilt from it on restore. The operator state is the
//! shape, the watermark and both expiration times.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_values_into, put_ivarint,
    put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::operators::join::{extract_key, fill_pair, pad, JoinSpec};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec};
use crate::value::{Change, Row, RowKind, Value};

/// What the planner specifies for an interval join.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalJoinSpec {
    /// Join type, keys, widths and residual condition, as for a regular join.
    pub join: JoinSpec,
    /// The rowtime column of the left input.
    pub left_time: usize,
    /// The rowtime column of the right input.
    pub right_time: usize,
    /// `left_time - right_time` lies in `[lower, upper]` (milliseconds).
    pub lower: i64,
    /// See `lower`.
    pub upper: i64,
}

/// Cached rows of one side by rowtime, each with whether it has joined.
pub type RowCache = BTreeMap<i64, Vec<(Row, bool)>>;

/// The state of one join key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IntervalKeyState {
    /// The left rows that may still join.
    pub left: RowCache,
    /// The right rows that may still join.
    pub right: RowCache,
    /// When the cleanup of the left cache is due (Flink's `rightTimerState`).
    pub left_cleanup: Option<i64>,
    /// When the cleanup of the right cache is due (Flink's `leftTimerState`).
    pub right_cleanup: Option<i64>,
}

impl IntervalKeyState {
    fn is_empty(&self) -> bool {
        self.left.is_empty()
            && self.right.is_empty()
            && self.left_cleanup.is_none()
            && self.right_cleanup.is_none()
    }
}

const INTERVAL_STATE: &str = "interval";
const STATE_MARKER: u8 = b'I';

struct IntervalCodec {
    key_len: usize,
}

fn put_cache(cache: &RowCache, out: &mut Vec<u8>) {
    put_uvarint(out, cache.len() as u64);
    for (t, rows) in cache {
        put_ivarint(out, *t);
        put_uvarint(out, rows.len() as u64);
        for (row, joined) in rows {
            out.push(u8::from(*joined));
            put_values(row, out);
        }
    }
}

fn get_cache(input: &mut &[u8]) -> Result<RowCache> {
    let n = get_len(input)?;
    if n > input.len() {
        return Err(corrupt(format!("{n} rowtimes cached in a shorter value")));
    }
    let mut cache = RowCache::new();
    for _ in 0..n {
        let t = get_ivarint(input)?;
        let m = get_len(input)?;
        if m == 0 || m > input.len() {
            return Err(corrupt(format!("{m} rows cached at one rowtime")));
        }
        let mut rows = Vec::with_capacity(m);
        for _ in 0..m {
            let joined = match get_u8(input)? {
                0 => false,
                1 => true,
                b => return Err(corrupt(format!("joined flag {b}"))),
            };
            let mut row = Row::new();
            get_values_into(input, &mut row)?;
            rows.push((row, joined));
        }
        cache.insert(t, rows);
    }
    Ok(cache)
}

fn put_opt(v: Option<i64>, out: &mut Vec<u8>) {
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
        b => Err(corrupt(format!("timer flag {b}"))),
    }
}

impl StateCodec<Row, IntervalKeyState> for IntervalCodec {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, v: &IntervalKeyState, out: &mut Vec<u8>) {
        put_opt(v.left_cleanup, out);
        put_opt(v.right_cleanup, out);
        put_cache(&v.left, out);
        put_cache(&v.right, out);
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<IntervalKeyState> {
        let input = &mut bytes;
        let left_cleanup = get_opt(input)?;
        let right_cleanup = get_opt(input)?;
        let left = get_cache(input)?;
        let right = get_cache(input)?;
        expect_end(input)?;
        Ok(IntervalKeyState {
            left,
            right,
            left_cleanup,
            right_cleanup,
        })
    }
}

/// The interval join operator.
pub struct IntervalJoin {
    spec: IntervalJoinSpec,
    codec: IntervalCodec,
    state: KeyedState<Row, IntervalKeyState>,
    /// Pending cleanup timers: (time, key).
    timers: BTreeSet<(i64, Row)>,
    /// The last watermark seen (`i64::MIN` before the first).
    watermark: i64,
    /// Flink's `leftRelativeSize` (`-lower`) and `rightRelativeSize` (`upper`).
    left_relative: i64,
    right_relative: i64,
    /// Added to a cleanup timer: half the interval's span.
    min_cleanup_interval: i64,
    /// Rows of a side at or before these times are expired (derived from the watermark).
    left_expiration: i64,
    right_expiration: i64,
    key_buf: Row,
    pair_buf: Row,
}

impl IntervalJoin {
    /// Builds the operator; fails on an inconsistent spec.
    pub fn new(spec: IntervalJoinSpec, ctx: &TaskContext) -> Result<Self> {
        spec.join.validate()?;
        let left_relative = spec
            .lower
            .checked_neg()
            .ok_or_else(|| EngineError::internal("interval join bound out of range"))?;
        let right_relative = spec.upper;
        Ok(IntervalJoin {
            codec: IntervalCodec {
                key_len: spec.join.left_keys.len(),
            },
            state: KeyedState::new(INTERVAL_STATE, &ctx.state, ctx.max_parallelism),
            timers: BTreeSet::new(),
            watermark: i64::MIN,
            left_relative,
            right_relative,
            min_cleanup_interval: left_relative.saturating_add(right_relative) / 2,
            left_expiration: 0,
            right_expiration: 0,
            key_buf: Vec::new(),
            pair_buf: Vec::new(),
            spec,
        })
    }

    /// A factory building one `IntervalJoin` per subtask.
    pub fn factory(spec: IntervalJoinSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(IntervalJoin::new(spec.clone(), ctx)?))
        })
    }

    /// Join keys with cached rows or timers.
    pub fn keys(&self) -> usize {
        self.state.hot_entries().count()
    }

    /// Pending cleanup timers.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The watermark the operator last saw.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Flink's operator time: the watermark, or 0 before a positive one.
    fn operator_time(&self) -> i64 {
        if self.watermark > 0 {
            self.watermark
        } else {
            0
        }
    }

    /// Rows of a side at or before this time can no longer join (Flink's `calExpirationTime`:
    /// everything once the watermark is at its maximum).
    fn expiration(operator_time: i64, relative: i64) -> i64 {
        if operator_time == i64::MAX {
            return i64::MAX;
        }
        operator_time.saturating_sub(relative).saturating_sub(1)
    }

    fn empty_window(&self) -> bool {
        self.spec.lower > self.spec.upper
    }

    fn process(&mut self, is_left: bool, mut change: Change, out: &mut Output) -> Result<()> {
        if change.kind != RowKind::Insert {
            return Err(EngineError::data(
                "an interval join accepts only inserted rows (its inputs must be append-only)",
            ));
        }
        let j = &self.spec.join;
        let (keys, width, time_col) = if is_left {
            (&j.left_keys, j.left_width, self.spec.left_time)
        } else {
            (&j.right_keys, j.right_width, self.spec.right_time)
        };
        let (lw, rw) = (j.left_width, j.right_width);
        let (left_outer, right_outer) = (j.join_type.left_is_outer(), j.join_type.right_is_outer());
        let joinable = extract_key(&change.row, keys, &mut self.key_buf)?;
        let Some(time) = change
            .row
            .get(time_col)
            .and_then(Value::as_timestamp_millis)
        else {
            // A NULL rowtime cannot be placed in time.
            return Ok(());
        };
        change.row.truncate(width);
        let row = change.row;
        let input_outer = if is_left { left_outer } else { right_outer };
        let other_outer = if is_left { right_outer } else { left_outer };
        if self.empty_window() {
            if input_outer {
                out.emit(RowKind::Insert, pad(&row, is_left, lw, rw));
            }
            return Ok(());
        }
        let (own_relative, other_relative) = if is_left {
            (self.left_relative, self.right_relative)
        } else {
            (self.right_relative, self.left_relative)
        };
        // The other side's qualifying range.
        let lower_bound = time.saturating_sub(other_relative);
        let upper_bound = time.saturating_add(own_relative);
        let operator_time = self.operator_time();
        let mut emitted = false;
        let other_expiration = if is_left {
            &mut self.right_expiration
        } else {
            &mut self.left_expiration
        };
        let mut entry = self.state.get_mut(&self.codec, self.key_buf.as_slice())?;
        if *other_expiration < upper_bound {
            *other_expiration = Self::expiration(operator_time, other_relative);
            let expiration = *other_expiration;
            if let Some(st) = entry.as_deref_mut() {
                let cache = if is_left { &mut st.right } else { &mut st.left };
                let residual = j.residual.as_ref();
                for (&t, rows) in cache.range_mut(lower_bound..=upper_bound) {
                    let _ = t;
                    for (other, joined) in rows.iter_mut() {
                        if !joinable {
                            continue;
                        }
                        fill_pair(&mut self.pair_buf, &row, other, is_left);
                        if let Some(r) = residual {
                            if !r.eval_predicate(&self.pair_buf)? {
                                continue;
                            }
                        }
                        out.emit(RowKind::Insert, self.pair_buf.clone());
                        emitted = true;
                        *joined = true;
                    }
                }
                // Expired rows of the other side go during the scan.
                if cache
                    .first_key_value()
                    .is_some_and(|(t, _)| *t <= expiration)
                {
                    let keep = match expiration.checked_add(1) {
                        Some(e) => cache.split_off(&e),
                        None => RowCache::new(),
                    };
                    let expired = std::mem::replace(cache, keep);
                    if other_outer {
                        for rows in expired.into_values() {
                            for (other, joined) in rows {
                                if !joined {
                                    out.emit(RowKind::Insert, pad(&other, !is_left, lw, rw));
                                }
                            }
                        }
                    }
                }
            }
        }
        if operator_time < upper_bound {
            let cleanup = time
                .saturating_add(own_relative)
                .saturating_add(self.min_cleanup_interval)
                .saturating_add(1);
            let mut new_timer = None;
            let mut fresh = None;
            match entry {
                Some(st) => {
                    let (cache, timer) = if is_left {
                        (&mut st.left, &mut st.left_cleanup)
                    } else {
                        (&mut st.right, &mut st.right_cleanup)
                    };
                    cache.entry(time).or_default().push((row, emitted));
                    if timer.is_none() {
                        *timer = Some(cleanup);
                        new_timer = Some(cleanup);
                    }
                }
                None => {
                    let mut st = IntervalKeyState::default();
                    if is_left {
                        st.left.insert(time, vec![(row, emitted)]);
                        st.left_cleanup = Some(cleanup);
                    } else {
                        st.right.insert(time, vec![(row, emitted)]);
                        st.right_cleanup = Some(cleanup);
                    }
                    new_timer = Some(cleanup);
                    fresh = Some(st);
                }
            }
            if let Some(st) = fresh {
                self.state.insert(&self.codec, self.key_buf.clone(), st)?;
            }
            if let Some(t) = new_timer {
                self.timers.insert((t, self.key_buf.clone()));
            }
        } else if !emitted && input_outer {
            out.emit(RowKind::Insert, pad(&row, is_left, lw, rw));
        }
        Ok(())
    }

    /// Fires the cleanup timers due at the current watermark, in time order.
    fn fire_timers(&mut self, out: &mut Output) -> Result<()> {
        let j = &self.spec.join;
        let (lw, rw) = (j.left_width, j.right_width);
        let (left_outer, right_outer) = (j.join_type.left_is_outer(), j.join_type.right_is_outer());
        let operator_time = self.operator_time();
        while self
            .timers
            .first()
            .is_some_and(|(t, _)| *t <= self.watermark)
        {
            let Some((t, key)) = self.timers.pop_first() else {
                break;
            };
            let Some(st) = self.state.get_mut(&self.codec, key.as_slice())? else {
                continue;
            };
            let mut new_timers = Vec::new();
            if st.right_cleanup == Some(t) {
                self.right_expiration = Self::expiration(operator_time, self.right_relative);
                let earliest = remove_expired(
                    &mut st.right,
                    self.right_expiration,
                    right_outer,
                    false,
                    lw,
                    rw,
                    out,
                );
                st.right_cleanup = earliest.map(|e| {
                    e.saturating_add(self.right_relative)
                        .saturating_add(self.min_cleanup_interval)
                        .saturating_add(1)
                });
                new_timers.extend(st.right_cleanup);
            }
            if st.left_cleanup == Some(t) {
                self.left_expiration = Self::expiration(operator_time, self.left_relative);
                let earliest = remove_expired(
                    &mut st.left,
                    self.left_expiration,
                    left_outer,
                    true,
                    lw,
                    rw,
                    out,
                );
                st.left_cleanup = earliest.map(|e| {
                    e.saturating_add(self.left_relative)
                        .saturating_add(self.min_cleanup_interval)
                        .saturating_add(1)
                });
                new_timers.extend(st.left_cleanup);
            }
            if st.is_empty() {
                self.state.remove(&self.codec, key.as_slice())?;
            }
            for n in new_timers {
                self.timers.insert((n, key.clone()));
            }
        }
        Ok(())
    }

    fn encode_operator_state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        put_version(&mut out);
        out.push(STATE_MARKER);
        self.spec.join.put_shape(&mut out);
        put_ivarint(&mut out, self.spec.lower);
        put_ivarint(&mut out, self.spec.upper);
        put_ivarint(&mut out, self.watermark);
        put_ivarint(&mut out, self.left_expiration);
        put_ivarint(&mut out, self.right_expiration);
        out
    }

    /// Checks the shape and returns (watermark, left expiration, right expiration).
    fn decode_operator_state(&self, mut input: &[u8]) -> Result<(i64, i64, i64)> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of an interval join"
            )));
        }
        self.spec.join.check_shape(input)?;
        let lower = get_ivarint(input)?;
        let upper = get_ivarint(input)?;
        if lower != self.spec.lower || upper != self.spec.upper {
            return Err(corrupt(format!(
                "the state is of an interval join with bounds [{lower}, {upper}]"
            )));
        }
        let w = get_ivarint(input)?;
        let l = get_ivarint(input)?;
        let r = get_ivarint(input)?;
        expect_end(input)?;
        Ok((w, l, r))
    }
}

/// Removes the rows at or before `expiration` from `cache` (null-padding those that never joined
/// when the side is outer) and returns the earliest rowtime left, if it is positive (Flink's
/// rule: otherwise the whole cache is cleared and no timer is registered).
fn remove_expired(
    cache: &mut RowCache,
    expiration: i64,
    outer: bool,
    is_left: bool,
    lw: usize,
    rw: usize,
    out: &mut Output,
) -> Option<i64> {
    let keep = match expiration.checked_add(1) {
        Some(e) => cache.split_off(&e),
        None => RowCache::new(),
    };
    let expired = std::mem::replace(cache, keep);
    if outer {
        for rows in expired.into_values() {
            for (row, joined) in rows {
                if !joined {
                    out.emit(RowKind::Insert, pad(&row, is_left, lw, rw));
                }
            }
        }
    }
    match cache.keys().next() {
        Some(&t) if t > 0 => Some(t),
        _ => {
            cache.clear();
            None
        }
    }
}

impl Operator for IntervalJoin {
    fn on_batch(&mut self, input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        let is_left = match input {
            0 => true,
            1 => false,
            other => {
                return Err(EngineError::internal(format!(
                    "a join has two inputs, not input {other}"
                )))
            }
        };
        for change in batch {
            self.process(is_left, change, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            if !self.empty_window() {
                self.fire_timers(out)?;
            }
        }
        let delay = if self.empty_window() {
            0
        } else {
            self.left_relative.max(self.right_relative).max(0)
        };
        let held = if watermark == i64::MAX {
            watermark
        } else {
            watermark.saturating_sub(delay)
        };
        out.emit_watermark(held);
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_operator_state())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.state.begin_flush(&self.codec);
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.state.continue_flush(&self.codec, budget) {
            return Ok(false);
        }
        delta.append(self.state.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        let (w, l, r) = self.decode_operator_state(state).map_err(|e| {
            EngineError::data(format!("cannot restore the IntervalJoin state: {e}"))
        })?;
        self.watermark = w;
        self.left_expiration = l;
        self.right_expiration = r;
        Ok(())
    }

    /// The smallest watermark and expiration times of the old subtasks, so that no row one of
    /// them would still have joined is taken for late.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        let mut merged: Option<(i64, i64, i64)> = None;
        for s in states.iter().filter(|s| !s.is_empty()) {
            let (w, l, r) = self.decode_operator_state(s).map_err(|e| {
                EngineError::data(format!("cannot restore the IntervalJoin state: {e}"))
            })?;
            merged = Some(match merged {
                None => (w, l, r),
                Some((a, b, c)) => (a.min(w), b.min(l), c.min(r)),
            });
        }
        if let Some((w, l, r)) = merged {
            self.watermark = w;
            self.left_expiration = l;
            self.right_expiration = r;
        }
        Ok(())
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let fail = |e: EngineError| {
            EngineError::data(format!("cannot restore the IntervalJoin state: {e}"))
        };
        if state != INTERVAL_STATE {
            return Err(fail(corrupt(format!("unknown keyed state '{state}'"))));
        }
        let st = self.codec.decode_value(value).map_err(fail)?;
        let key = self
            .state
            .restore_entry(&self.codec, state, key, value)
            .map_err(fail)?;
        for t in [st.left_cleanup, st.right_cleanup].into_iter().flatten() {
            self.timers.insert((t, key.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TaskMetrics;
    use crate::operators::join::JoinType;
    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 1,
            operator_name: "IntervalJoin".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    /// Rows are (k INT, ts TIMESTAMP) on both sides; `l.ts - r.ts` in [-1, 5].
    fn spec(join_type: JoinType) -> IntervalJoinSpec {
        IntervalJoinSpec {
            join: JoinSpec {
                join_type,
                left_keys: vec![0],
                right_keys: vec![0],
                left_width: 2,
                right_width: 2,
                residual: None,
            },
            left_time: 1,
            right_time: 1,
            lower: -1,
            upper: 5,
        }
    }

    fn row(k: i32, ts: i64) -> Change {
        Change::insert(vec![Value::Int(k), Value::Timestamp(ts)])
    }

    fn show(out: &Output) -> Vec<String> {
        out.changes
            .iter()
            .map(|c| {
                let vals: Vec<String> = c
                    .row
                    .iter()
                    .map(|v| match v {
                        Value::Int(i) => i.to_string(),
                        Value::Timestamp(t) => t.to_string(),
                        _ => "null".to_string(),
                    })
                    .collect();
                format!("{}[{}]", c.kind.short(), vals.join(", "))
            })
            .collect()
    }

    fn feed(op: &mut IntervalJoin, input: usize, c: Change) -> Output {
        let mut out = Output::new();
        op.on_batch(input, vec![c], &mut out).unwrap();
        out
    }

    fn watermark(op: &mut IntervalJoin, w: i64) -> Output {
        let mut out = Output::new();
        op.on_watermark(w, &mut out).unwrap();
        out
    }

    #[test]
    fn joins_in_the_interval_and_delays_the_watermark() {
        let mut op = IntervalJoin::new(spec(JoinType::Inner), &ctx()).unwrap();
        assert!(show(&feed(&mut op, 0, row(1, 10))).is_empty());
        // 10 - 4 = 6 is in [-1, 5]? No: 6 > 5.
        assert!(show(&feed(&mut op, 1, row(1, 4))).is_empty());
        assert_eq!(show(&feed(&mut op, 1, row(1, 5))), ["+I[1, 10, 1, 5]"]);
        assert_eq!(show(&feed(&mut op, 1, row(1, 11))), ["+I[1, 10, 1, 11]"]);
        assert!(show(&feed(&mut op, 1, row(2, 10))).is_empty());
        let out = watermark(&mut op, 100);
        assert_eq!(out.watermarks, vec![(0, 95)]);
        assert_eq!(op.keys(), 0, "everything expired");
        assert_eq!(op.pending_timers(), 0);
    }

    #[test]
    fn outer_rows_are_padded_when_they_expire_or_arrive_late() {
        let mut op = IntervalJoin::new(spec(JoinType::FullOuter), &ctx()).unwrap();
        assert!(show(&feed(&mut op, 0, row(1, 10))).is_empty());
        assert!(show(&feed(&mut op, 1, row(2, 10))).is_empty());
        assert!(show(&watermark(&mut op, 10)).is_empty());
        // The left row's cleanup is due at 10 + 1 + 3 + 1 = 15.
        assert_eq!(show(&watermark(&mut op, 15)), ["+I[1, 10, null, null]"]);
        // The right row's at 10 + 5 + 3 + 1 = 19.
        assert_eq!(show(&watermark(&mut op, 19)), ["+I[null, null, 2, 10]"]);
        // A left row whose range ended before the watermark is padded at once...
        assert_eq!(
            show(&feed(&mut op, 0, row(3, 10))),
            ["+I[3, 10, null, null]"]
        );
        // ...and a late right row still joins what is cached.
        feed(&mut op, 0, row(4, 30));
        assert_eq!(show(&feed(&mut op, 1, row(4, 26))), ["+I[4, 30, 4, 26]"]);
        assert_eq!(op.pending_timers(), 1, "the cached left row");
    }

    #[test]
    fn empty_interval_joins_nothing() {
        let mut s = spec(JoinType::LeftOuter);
        s.lower = 3;
        s.upper = 2;
        let mut op = IntervalJoin::new(s, &ctx()).unwrap();
        feed(&mut op, 1, row(1, 10));
        assert_eq!(
            show(&feed(&mut op, 0, row(1, 12))),
            ["+I[1, 12, null, null]"]
        );
        assert_eq!(watermark(&mut op, 50).watermarks, vec![(0, 50)]);
    }

    #[test]
    fn updates_and_bad_inputs_are_errors() {
        let mut op = IntervalJoin::new(spec(JoinType::Inner), &ctx()).unwrap();
        let mut out = Output::new();
        let del = Change::new(RowKind::Delete, vec![Value::Int(1), Value::Timestamp(1)]);
        assert!(op.on_batch(0, vec![del], &mut out).is_err());
        assert!(op.on_batch(2, vec![row(1, 1)], &mut out).is_err());
        // A NULL rowtime is dropped.
        let null_time = Change::insert(vec![Value::Int(1), Value::Null]);
        op.on_batch(0, vec![null_time], &mut out).unwrap();
        assert_eq!(op.keys(), 0);
        assert!(op.restore_state(&[1, 2, 3]).is_err());
        assert!(op.restore_keyed("interval", &[0], &[7, 7]).is_err());
    }

    #[test]
    fn restored_operator_continues_like_the_original() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let kind = if seed % 2 == 0 {
                BackendKind::HashMap
            } else {
                BackendKind::Sled
            };
            let jt = [
                JoinType::Inner,
                JoinType::LeftOuter,
                JoinType::RightOuter,
                JoinType::FullOuter,
            ][usize::try_from(seed % 4).unwrap()];
            let mut steps: Vec<(usize, Option<Change>, i64)> = Vec::new();
            let mut wm = 0;
            for _ in 0..150 {
                if rng.gen_bool(0.15) {
                    wm += rng.gen_range(0..6);
                    steps.push((0, None, wm));
                } else {
                    let t = wm + rng.gen_range(-3..12);
                    steps.push((rng.gen_range(0..2), Some(row(rng.gen_range(0..4), t)), 0));
                }
            }
            let run = |op: &mut IntervalJoin, steps: &[(usize, Option<Change>, i64)]| {
                let mut out = Output::new();
                for (side, c, w) in steps {
                    match c {
                        Some(c) => op.on_batch(*side, vec![c.clone()], &mut out).unwrap(),
                        None => op.on_watermark(*w, &mut out).unwrap(),
                    }
                }
                op.on_watermark(i64::MAX, &mut out).unwrap();
                out
            };
            let cut = rng.gen_range(0..steps.len());
            let ctx_a = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut a = IntervalJoin::new(spec(jt), &ctx_a).unwrap();
            let mut out = Output::new();
            for (side, c, w) in &steps[..cut] {
                match c {
                    Some(c) => a.on_batch(*side, vec![c.clone()], &mut out).unwrap(),
                    None => a.on_watermark(*w, &mut out).unwrap(),
                }
            }
            let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
            let ctx_b = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut b = IntervalJoin::new(spec(jt), &ctx_b).unwrap();
            restore_operator(
                &mut b,
                ctx_b.state.store.as_ref(),
                &blob,
                snap.into_iter().collect(),
            )
            .unwrap();
            assert_eq!(b.pending_timers(), a.pending_timers(), "seed {seed}");
            let out_a = run(&mut a, &steps[cut..]);
            let out_b = run(&mut b, &steps[cut..]);
            assert_eq!(out_a.changes, out_b.changes, "seed {seed}");
            assert_eq!(out_a.watermarks, out_b.watermarks, "seed {seed}");
        }
    }
}
