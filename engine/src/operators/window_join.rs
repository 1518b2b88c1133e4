//! `WindowJoin`: the join of two windowed relations (window TVFs or window aggregations) on
//! their `window_start`, `window_end` and equi keys (Flink's `WindowJoinOperator`).
//!
//! Semantics:
//! - Each input row carries its window's start and end as columns. A row whose window has fired
//!   (`end - 1 <= watermark`) when it arrives is late: dropped and counted in
//!   `numLateRecordsDropped`. Otherwise it is buffered under its key and window.
//! - When the watermark reaches `end - 1`, the window's rows are joined and emitted (`+I` only,
//!   before the watermark is forwarded), and the window's state is freed. For each left row in
//!   arrival order, the right rows in arrival order that satisfy the residual condition; a LEFT
//!   or FULL join pads an unmatched left row with NULLs, a RIGHT or FULL join an unmatched right
//!   row (after the matched pairs). Rows whose key holds a NULL match nothing (SQL `=`).
//! - Output rows are `left row ++ right row`; both sides keep their window columns.
//!
//! State: per join key its open windows (left and right rows of each) in a [`KeyedState`] named
//! `window-join`; the firing order (timers) is kept in memory beside it and rebuilt from the keyed
//! state on restore. Windows clean themselves up when they fire, so the state has no TTL (as in
//! Flink). The operator state of a snapshot is the operator's shape and the watermark it has seen
//! (it decides which rows are late; at another parallelism the smallest of the old subtasks'
//! watermarks, so no row one of them would still have accepted is dropped).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::agg::column;
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_values_into, put_ivarint,
    put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::expr::Expr;
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec};
use crate::value::{Change, Row, RowKind, Value};
use crate::window::is_window_fired;

/// Which rows without a partner a join keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowJoinType {
    Inner,
    Left,
    Right,
    Full,
}

impl WindowJoinType {
    /// The name EXPLAIN shows (Flink's `joinType`).
    pub fn name(self) -> &'static str {
        match self {
            WindowJoinType::Inner => "InnerJoin",
            WindowJoinType::Left => "LeftOuterJoin",
            WindowJoinType::Right => "RightOuterJoin",
            WindowJoinType::Full => "FullOuterJoin",
        }
    }

    fn code(self) -> u8 {
        match self {
            WindowJoinType::Inner => 0,
            WindowJoinType::Left => 1,
            WindowJoinType::Right => 2,
            WindowJoinType::Full => 3,
        }
    }

    fn pads_left_rows(self) -> bool {
        matches!(self, WindowJoinType::Left | WindowJoinType::Full)
    }

    fn pads_right_rows(self) -> bool {
        matches!(self, WindowJoinType::Right | WindowJoinType::Full)
    }
}

/// What the planner specifies for a `WindowJoin`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowJoinSpec {
    pub join_type: WindowJoinType,
    /// Equi-key columns of the left input, pairwise equal to `right_keys`.
    pub left_keys: Vec<usize>,
    pub right_keys: Vec<usize>,
    /// The left input's `window_start` and `window_end` columns.
    pub left_window: (usize, usize),
    /// The right input's `window_start` and `window_end` columns.
    pub right_window: (usize, usize),
    /// Column counts of the inputs.
    pub left_arity: usize,
    pub right_arity: usize,
    /// The rest of the ON condition, over `left row ++ right row`.
    pub condition: Option<Expr>,
}

/// The rows of one window of one key, each side in arrival order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowRows {
    pub start: i64,
    pub end: i64,
    pub left: Vec<Row>,
    pub right: Vec<Row>,
}

/// The open windows of one key, in (end, start) order.
pub type KeyWindows = Vec<WindowRows>;

/// The byte after the version byte of a `WindowJoin` operator-state blob.
const STATE_MARKER: u8 = b'J';
/// The keyed-state name.
const WINDOW_STATE: &str = "window-join";

/// Reads a count, refusing one larger than the bytes left (every item takes at least a byte).
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

fn put_rows(rows: &[Row], out: &mut Vec<u8>) {
    put_uvarint(out, rows.len() as u64);
    for r in rows {
        put_values(r, out);
    }
}

fn get_rows(input: &mut &[u8], arity: usize) -> Result<Vec<Row>> {
    let n = get_count(input, "rows")?;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let mut row = Row::new();
        get_values_into(input, &mut row)?;
        if row.len() != arity {
            return Err(corrupt(format!(
                "a buffered row has {} values, expected {arity}",
                row.len()
            )));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// How keys and values of the `window-join` state become bytes.
struct WindowJoinCodec {
    key_len: usize,
    left_arity: usize,
    right_arity: usize,
}

impl StateCodec<Row, KeyWindows> for WindowJoinCodec {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, windows: &KeyWindows, out: &mut Vec<u8>) {
        put_uvarint(out, windows.len() as u64);
        for w in windows {
            put_ivarint(out, w.end);
            put_ivarint(out, w.start);
            put_rows(&w.left, out);
            put_rows(&w.right, out);
        }
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<KeyWindows> {
        let input = &mut bytes;
        let n = get_count(input, "windows")?;
        if n == 0 {
            return Err(corrupt("a key without open windows is not kept"));
        }
        let mut windows: KeyWindows = Vec::with_capacity(n);
        for _ in 0..n {
            let end = get_ivarint(input)?;
            let start = get_ivarint(input)?;
            if windows
                .last()
                .is_some_and(|p| (p.end, p.start) >= (end, start))
            {
                return Err(corrupt(format!("window [{start}, {end}) is out of order")));
            }
            let left = get_rows(input, self.left_arity)?;
            let right = get_rows(input, self.right_arity)?;
            windows.push(WindowRows {
                start,
                end,
                left,
                right,
            });
        }
        expect_end(input)?;
        Ok(windows)
    }
}

/// Adds a row of the left (`left`) or right input to window `[start, end)` of a key's windows;
/// true when that window was not open yet (it then needs a timer).
fn add_row(windows: &mut KeyWindows, start: i64, end: i64, left: bool, row: Row) -> bool {
    let at = windows.partition_point(|w| (w.end, w.start) < (end, start));
    let opened = windows
        .get(at)
        .is_none_or(|w| (w.end, w.start) != (end, start));
    if opened {
        windows.insert(
            at,
            WindowRows {
                start,
                end,
                left: Vec::new(),
                right: Vec::new(),
            },
        );
    }
    let w = &mut windows[at];
    if left {
        w.left.push(row);
    } else {
        w.right.push(row);
    }
    opened
}

/// The window join operator.
pub struct WindowJoin {
    spec: WindowJoinSpec,
    metrics: Arc<TaskMetrics>,
    watermark: i64,
    windows: KeyedState<Row, KeyWindows>,
    /// The keys of each open window, keyed by (end, start) so firing walks a prefix.
    timers: BTreeMap<(i64, i64), Vec<Row>>,
    key_buf: Row,
    /// Reused for `left ++ right` when evaluating the residual condition.
    pair_buf: Row,
}

macro_rules! codec {
    ($op:expr) => {
        WindowJoinCodec {
            key_len: $op.spec.left_keys.len(),
            left_arity: $op.spec.left_arity,
            right_arity: $op.spec.right_arity,
        }
    };
}

/// The window bound in column `col` of `row`, in milliseconds.
fn window_bound(row: &[Value], col: usize) -> Result<i64> {
    match column(row, col)? {
        Value::Timestamp(t) | Value::TimestampLtz(t) => Ok(*t),
        other => Err(EngineError::data(format!(
            "a window join input has window bound {other:?} in column {col}, expected a timestamp"
        ))),
    }
}

impl WindowJoin {
    /// Builds the operator; the key lists must pair up.
    pub fn new(spec: WindowJoinSpec, ctx: &TaskContext) -> Result<Self> {
        if spec.left_keys.len() != spec.right_keys.len() {
            return Err(EngineError::internal(
                "a window join has key lists of different lengths",
            ));
        }
        Ok(WindowJoin {
            key_buf: Vec::with_capacity(spec.left_keys.len()),
            pair_buf: Vec::with_capacity(spec.left_arity + spec.right_arity),
            spec,
            metrics: ctx.metrics.clone(),
            watermark: i64::MIN,
            windows: KeyedState::new(WINDOW_STATE, &ctx.state, ctx.max_parallelism),
            timers: BTreeMap::new(),
        })
    }

    /// A factory building one `WindowJoin` per subtask.
    pub fn factory(spec: WindowJoinSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(WindowJoin::new(spec.clone(), ctx)?))
        })
    }

    /// Open (window, key) pairs.
    pub fn open_windows(&self) -> usize {
        self.timers.values().map(Vec::len).sum()
    }

    fn encode_operator_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_version(&mut out);
        out.push(STATE_MARKER);
        out.push(self.spec.join_type.code());
        put_uvarint(&mut out, self.spec.left_keys.len() as u64);
        put_uvarint(&mut out, self.spec.left_arity as u64);
        put_uvarint(&mut out, self.spec.right_arity as u64);
        put_ivarint(&mut out, self.watermark);
        out
    }

    fn decode_operator_state(&self, mut input: &[u8]) -> Result<i64> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a window join"
            )));
        }
        let join_type = get_u8(input)?;
        let keys = get_len(input)?;
        let left = get_len(input)?;
        let right = get_len(input)?;
        if join_type != self.spec.join_type.code()
            || keys != self.spec.left_keys.len()
            || left != self.spec.left_arity
            || right != self.spec.right_arity
        {
            return Err(EngineError::data(
                "the state was written for a window join of another shape",
            ));
        }
        let watermark = get_ivarint(input)?;
        expect_end(input)?;
        Ok(watermark)
    }

    fn process(&mut self, input: usize, change: Change) -> Result<()> {
        if change.kind != RowKind::Insert {
            return Err(EngineError::internal(format!(
                "a window join takes append-only inputs, got a {} row",
                change.kind.short()
            )));
        }
        let left = input == 0;
        let (keys, (start_col, end_col)) = if left {
            (&self.spec.left_keys, self.spec.left_window)
        } else {
            (&self.spec.right_keys, self.spec.right_window)
        };
        let start = window_bound(&change.row, start_col)?;
        let end = window_bound(&change.row, end_col)?;
        if is_window_fired(end, self.watermark) {
            TaskMetrics::add(&self.metrics.late_records_dropped, 1);
            return Ok(());
        }
        self.key_buf.clear();
        for &c in keys {
            self.key_buf.push(column(&change.row, c)?.clone());
        }
        let codec = codec!(self);
        let opened = match self.windows.get_mut(&codec, self.key_buf.as_slice())? {
            Some(windows) => add_row(windows, start, end, left, change.row),
            None => {
                let mut windows = Vec::with_capacity(1);
                add_row(&mut windows, start, end, left, change.row);
                self.windows.insert(&codec, self.key_buf.clone(), windows)?;
                true
            }
        };
        if opened {
            self.timers
                .entry((end, start))
                .or_default()
                .push(self.key_buf.clone());
        }
        Ok(())
    }

    /// Whether `l` and `r` join: keys without NULLs and the residual condition.
    fn matches(&mut self, key_has_null: bool, l: &[Value], r: &[Value]) -> Result<bool> {
        if key_has_null {
            return Ok(false);
        }
        let Some(cond) = &self.spec.condition else {
            return Ok(true);
        };
        self.pair_buf.clear();
        self.pair_buf.extend_from_slice(l);
        self.pair_buf.extend_from_slice(r);
        cond.eval_predicate(&self.pair_buf)
    }

    /// Joins the rows of one window of one key (Flink's order: left rows with their matches,
    /// then the unmatched right rows).
    fn join_window(&mut self, key: &[Value], w: WindowRows, out: &mut Output) -> Result<()> {
        let key_has_null = key.iter().any(Value::is_null);
        let jt = self.spec.join_type;
        let mut right_matched = vec![false; w.right.len()];
        for l in &w.left {
            let mut matched = false;
            for (i, r) in w.right.iter().enumerate() {
                if self.matches(key_has_null, l, r)? {
                    matched = true;
                    right_matched[i] = true;
                    let mut row = Vec::with_capacity(l.len() + r.len());
                    row.extend_from_slice(l);
                    row.extend_from_slice(r);
                    out.emit(RowKind::Insert, row);
                }
            }
            if !matched && jt.pads_left_rows() {
                let mut row = Vec::with_capacity(l.len() + self.spec.right_arity);
                row.extend_from_slice(l);
                row.resize(l.len() + self.spec.right_arity, Value::Null);
                out.emit(RowKind::Insert, row);
            }
        }
        if jt.pads_right_rows() {
            for (r, matched) in w.right.into_iter().zip(right_matched) {
                if !matched {
                    let mut row = vec![Value::Null; self.spec.left_arity];
                    row.extend(r);
                    out.emit(RowKind::Insert, row);
                }
            }
        }
        Ok(())
    }

    /// Joins and frees every window that has fired at `watermark`, oldest end first.
    fn fire(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        while let Some(entry) = self.timers.first_entry() {
            let (end, start) = *entry.key();
            if !is_window_fired(end, watermark) {
                break;
            }
            let mut keys = entry.remove();
            keys.sort_unstable();
            for key in keys {
                let codec = codec!(self);
                let Some(windows) = self.windows.get_mut(&codec, &key)? else {
                    continue;
                };
                let Some(at) = windows
                    .iter()
                    .position(|w| (w.end, w.start) == (end, start))
                else {
                    continue;
                };
                let w = windows.remove(at);
                if windows.is_empty() {
                    self.windows.remove(&codec, &key)?;
                }
                self.join_window(&key, w, out)?;
            }
        }
        Ok(())
    }
}

impl Operator for WindowJoin {
    fn on_batch(&mut self, input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        for change in batch {
            self.process(input, change)?;
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
        self.fire(i64::MAX, out)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_operator_state())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.windows.begin_flush(&codec!(self));
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.windows.continue_flush(&codec!(self), budget) {
            return Ok(false);
        }
        delta.append(self.windows.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        // One old subtask's state: the rescaled restore of a single state.
        self.restore_rescaled(&[state])
    }

    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        if let Some(w) =
            super::restored_watermark("WindowJoin", states, |s| self.decode_operator_state(s))?
        {
            self.watermark = w;
        }
        Ok(())
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let fail =
            |e: EngineError| EngineError::data(format!("cannot restore the WindowJoin state: {e}"));
        let codec = codec!(self);
        let windows = codec.decode_value(value).map_err(fail)?;
        let key = self
            .windows
            .restore_entry(&codec, state, key, value)
            .map_err(fail)?;
        for w in windows {
            self.timers
                .entry((w.end, w.start))
                .or_default()
                .push(key.clone());
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
            operator_id: 7,
            operator_name: "WindowJoin".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    /// Both inputs: (key STRING, v INT, window_start, window_end).
    fn spec(join_type: WindowJoinType) -> WindowJoinSpec {
        WindowJoinSpec {
            join_type,
            left_keys: vec![0],
            right_keys: vec![0],
            left_window: (2, 3),
            right_window: (2, 3),
            left_arity: 4,
            right_arity: 4,
            condition: None,
        }
    }

    fn row(k: &str, v: i32, start: i64) -> Change {
        Change::insert(vec![
            Value::string(k),
            Value::Int(v),
            Value::Timestamp(start),
            Value::Timestamp(start + 10),
        ])
    }

    /// (left v, right v) of every emitted row, NULL as -1.
    fn pairs(out: &Output) -> Vec<(i32, i32)> {
        let v = |x: &Value| match x {
            Value::Int(i) => *i,
            _ => -1,
        };
        out.changes
            .iter()
            .map(|c| {
                assert_eq!(c.kind, RowKind::Insert);
                (v(&c.row[1]), v(&c.row[5]))
            })
            .collect()
    }

    fn feed(op: &mut WindowJoin, input: usize, rows: Vec<Change>) {
        op.on_batch(input, rows, &mut Output::new()).unwrap();
    }

    #[test]
    fn inner_join_fires_at_window_end_and_drops_late_rows() {
        let c = ctx();
        let mut op = WindowJoin::new(spec(WindowJoinType::Inner), &c).unwrap();
        feed(
            &mut op,
            0,
            vec![row("a", 1, 0), row("a", 2, 0), row("b", 3, 0)],
        );
        feed(&mut op, 1, vec![row("a", 10, 0), row("b", 11, 10)]);
        let mut out = Output::new();
        op.on_watermark(8, &mut out).unwrap();
        assert!(out.changes.is_empty());
        op.on_watermark(9, &mut out).unwrap();
        assert_eq!(pairs(&out), vec![(1, 10), (2, 10)]);
        // The watermark follows the joined rows.
        assert_eq!(out.watermarks, vec![(0, 8), (2, 9)]);
        // Window [0, 10) has fired: a row of it is late.
        feed(&mut op, 1, vec![row("a", 12, 0)]);
        assert_eq!(TaskMetrics::get(&c.metrics.late_records_dropped), 1);
        let mut out = Output::new();
        op.on_end_of_input(&mut out).unwrap();
        assert!(out.changes.is_empty());
        assert_eq!(op.open_windows(), 0);
    }

    #[test]
    fn outer_joins_pad_rows_without_a_partner() {
        for (jt, expected) in [
            (WindowJoinType::Left, vec![(1, 10), (2, -1)]),
            (WindowJoinType::Right, vec![(1, 10), (-1, 11)]),
            (WindowJoinType::Full, vec![(1, 10), (2, -1), (-1, 11)]),
        ] {
            let mut op = WindowJoin::new(spec(jt), &ctx()).unwrap();
            feed(&mut op, 0, vec![row("a", 1, 0), row("b", 2, 0)]);
            feed(&mut op, 1, vec![row("a", 10, 0), row("c", 11, 0)]);
            let mut out = Output::new();
            op.on_end_of_input(&mut out).unwrap();
            let mut got = pairs(&out);
            got.sort_unstable();
            let mut expected = expected;
            expected.sort_unstable();
            assert_eq!(got, expected, "{jt:?}");
        }
    }

    #[test]
    fn null_keys_and_the_residual_condition_decide_matches() {
        let mut s = spec(WindowJoinType::Full);
        // l.v < r.v
        s.condition = Some(Expr::Call {
            func: crate::expr::ScalarFunction::Cmp(crate::expr::functions::CmpOp::Lt),
            args: vec![Expr::Column(1), Expr::Column(5)],
            ret: crate::types::DataType::Boolean,
        });
        let mut op = WindowJoin::new(s, &ctx()).unwrap();
        let mut null_row = row("x", 5, 0);
        null_row.row[0] = Value::Null;
        feed(
            &mut op,
            0,
            vec![row("a", 1, 0), row("a", 20, 0), null_row.clone()],
        );
        feed(&mut op, 1, vec![row("a", 10, 0), null_row]);
        let mut out = Output::new();
        op.on_end_of_input(&mut out).unwrap();
        let mut got = pairs(&out);
        got.sort_unstable();
        assert_eq!(got, vec![(-1, 5), (1, 10), (5, -1), (20, -1)]);
    }

    #[test]
    fn snapshot_and_restore_keep_windows_and_watermark() {
        let state = standalone_context(BackendKind::Sled, 1 << 20);
        let mut c = ctx();
        c.state = state.clone();
        let mut op = WindowJoin::new(spec(WindowJoinType::Left), &c).unwrap();
        feed(&mut op, 0, vec![row("a", 1, 0), row("b", 2, 10)]);
        feed(&mut op, 1, vec![row("a", 10, 0)]);
        op.on_watermark(5, &mut Output::new()).unwrap();
        let (operator, keyed) = snapshot_now(&mut op, state.store.as_ref(), 1).unwrap();

        let restored_state = standalone_context(BackendKind::Sled, 1 << 20);
        let mut c2 = ctx();
        c2.state = restored_state.clone();
        let mut restored = WindowJoin::new(spec(WindowJoinType::Left), &c2).unwrap();
        restore_operator(
            &mut restored,
            restored_state.store.as_ref(),
            &operator,
            keyed.into_iter().collect(),
        )
        .unwrap();
        assert_eq!(restored.open_windows(), 2);
        // The restored watermark still decides lateness: [-10, 0) has fired at 5.
        feed(&mut restored, 0, vec![row("a", 3, -10)]);
        assert_eq!(TaskMetrics::get(&c2.metrics.late_records_dropped), 1);
        let mut out = Output::new();
        restored.on_end_of_input(&mut out).unwrap();
        assert_eq!(pairs(&out), vec![(1, 10), (2, -1)]);

        // Another operator's shape is refused.
        let mut other = WindowJoin::new(spec(WindowJoinType::Inner), &ctx()).unwrap();
        assert!(other.restore_state(&operator).is_err());
    }

    /// Random rows of both inputs, none late, with a snapshot and restore at a random step: a
    /// FULL join gives what a brute-force join of each key's windows gives.
    #[test]
    fn random_inputs_match_a_brute_force_join_across_a_restore() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let keys = ["a", "b", "c", ""];
            let mut steps: Vec<(Option<(usize, Change)>, i64)> = Vec::new();
            let mut wm = 0i64;
            for i in 0..80i32 {
                if rng.gen_bool(0.25) {
                    wm += rng.gen_range(0..=12);
                    steps.push((None, wm));
                } else {
                    let start = ((wm + 9) / 10 + rng.gen_range(0..=2)) * 10;
                    let mut r = row(keys[rng.gen_range(0..keys.len())], i, start);
                    if r.row[0] == Value::string("") {
                        r.row[0] = Value::Null;
                    }
                    steps.push((Some((rng.gen_range(0..=1), r)), wm));
                }
            }
            let rows: Vec<&(usize, Change)> =
                steps.iter().filter_map(|(s, _)| s.as_ref()).collect();
            let same = |l: &Change, r: &Change| {
                !l.row[0].is_null() && l.row[0] == r.row[0] && l.row[2] == r.row[2]
            };
            let v = |c: &Change| match c.row[1] {
                Value::Int(x) => x,
                _ => panic!("v is an INT"),
            };
            let mut expected = Vec::new();
            for (side, l) in rows.iter().map(|(s, c)| (*s, c)) {
                let others: Vec<&Change> = rows
                    .iter()
                    .filter(|(s, r)| *s != side && same(l, r))
                    .map(|(_, r)| r)
                    .collect();
                match (side, others.is_empty()) {
                    (0, true) => expected.push((v(l), -1)),
                    (0, false) => expected.extend(others.iter().map(|r| (v(l), v(r)))),
                    (_, true) => expected.push((-1, v(l))),
                    _ => {}
                }
            }
            expected.sort_unstable();

            let cut = rng.gen_range(0..steps.len());
            let state = standalone_context(BackendKind::Sled, 1 << 20);
            let mut c = ctx();
            c.state = state.clone();
            let mut op = WindowJoin::new(spec(WindowJoinType::Full), &c).unwrap();
            let mut out = Output::new();
            for (i, (step, wm)) in steps.iter().enumerate() {
                if i == cut {
                    let (operator, keyed) = snapshot_now(&mut op, state.store.as_ref(), 1).unwrap();
                    let fresh = standalone_context(BackendKind::Sled, 1 << 20);
                    let mut c2 = ctx();
                    c2.state = fresh.clone();
                    op = WindowJoin::new(spec(WindowJoinType::Full), &c2).unwrap();
                    let keyed = keyed.into_iter().collect();
                    restore_operator(&mut op, fresh.store.as_ref(), &operator, keyed).unwrap();
                }
                match step {
                    Some((input, change)) => {
                        op.on_batch(*input, vec![change.clone()], &mut out).unwrap()
                    }
                    None => op.on_watermark(*wm, &mut out).unwrap(),
                }
            }
            op.on_end_of_input(&mut out).unwrap();
            let mut got = pairs(&out);
            got.sort_unstable();
            assert_eq!(got, expected, "seed {seed}");
            assert_eq!(TaskMetrics::get(&c.metrics.late_records_dropped), 0);
        }
    }
}
