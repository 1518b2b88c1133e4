//! `Join`: the regular (unbounded) streaming join of two inputs on equi-join keys, with Flink's
//! `StreamingJoinOperator` semantics for INNER, LEFT, RIGHT and FULL joins over append-only or
//! updating inputs.
//!
//! Input 0 is the left side, input 1 the right. Each side's rows are kept per join key (each copy
//! of a row as an entry) and, for an outer side, the number of rows of the other side they join with
//! (their associations, as Flink's `OuterJoinRecordStateViews`). For a record of one side:
//! - accumulate (`+I`/`+U`), outer side: without a match emit `+I row+nulls`; with matches, for
//!   each matching other row (once per copy) emit `-D nulls+other` if that outer other row had
//!   no association yet, then `+I row+other`; store the row with its number of matches;
//! - accumulate, inner side: store the row; per match `+I row+other` when the other side is outer
//!   (after `-D nulls+other` for an unassociated other row), else the input's kind (`+I`/`+U`);
//! - retract (`-U`/`-D`): remove one copy of the row; without a match emit `-D row+nulls` when the
//!   side is outer; per match emit `-D row+other` (outer side) or the input's kind (inner side),
//!   then `+I nulls+other` when that outer other row loses its last association.
//!
//! Every association of an other row changes by one for each copy that matched, as in Flink,
//! whose cached association count is read once per stored row. Rows whose key has a NULL never
//! match (Flink's null filter on `=` keys): they are not stored, and an outer side emits them
//! null-padded (`+I` on accumulate, `-D` on retract). The residual condition is evaluated on the
//! joined row; only rows satisfying it count as matches.
//!
//! Matching rows of the other side are visited in the order they were first stored under the key
//! (Flink's order is its state's map order, which is not specified).
//!
//! State: two [`KeyedState`]s, `left-records` and `right-records` (`-ttl` with a TTL), each key
//! holding the side's rows with their count, associations and last write time.
//! `table.exec.state.ttl` expires each row that long after its last write, as Flink's map state
//! with a TTL does per entry (an expired row reads as absent; a key whose rows all expired goes
//! as a whole through the keyed state's own TTL). The operator state of a snapshot is the
//! operator's shape.

use std::sync::Arc;

use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_values_into, put_ivarint,
    put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::expr::Expr;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec, StateNames};
use crate::value::{Change, Row, RowKind, Value};

/// The type of a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinType {
    /// Only matching pairs.
    Inner,
    /// Matching pairs, and unmatched left rows null-padded.
    LeftOuter,
    /// Matching pairs, and unmatched right rows null-padded.
    RightOuter,
    /// Matching pairs, and unmatched rows of both sides null-padded.
    FullOuter,
}

impl JoinType {
    /// Flink's name in EXPLAIN (`InnerJoin`, `LeftOuterJoin`, ...).
    pub fn name(self) -> &'static str {
        match self {
            JoinType::Inner => "InnerJoin",
            JoinType::LeftOuter => "LeftOuterJoin",
            JoinType::RightOuter => "RightOuterJoin",
            JoinType::FullOuter => "FullOuterJoin",
        }
    }

    /// Whether unmatched left rows are emitted null-padded.
    pub fn left_is_outer(self) -> bool {
        matches!(self, JoinType::LeftOuter | JoinType::FullOuter)
    }

    /// Whether unmatched right rows are emitted null-padded.
    pub fn right_is_outer(self) -> bool {
        matches!(self, JoinType::RightOuter | JoinType::FullOuter)
    }

    fn code(self) -> u8 {
        match self {
            JoinType::Inner => 0,
            JoinType::LeftOuter => 1,
            JoinType::RightOuter => 2,
            JoinType::FullOuter => 3,
        }
    }
}

/// What the planner specifies for a join (regular or interval).
#[derive(Clone, Debug, PartialEq)]
pub struct JoinSpec {
    pub join_type: JoinType,
    /// Key columns of the left input, pairwise equal to `right_keys`.
    pub left_keys: Vec<usize>,
    /// Key columns of the right input.
    pub right_keys: Vec<usize>,
    /// The left input's columns that are output (key columns computed for the join follow them
    /// in the input and are dropped).
    pub left_width: usize,
    /// The right input's columns that are output.
    pub right_width: usize,
    /// The non-equi condition, over `left[..left_width] ++ right[..right_width]`.
    pub residual: Option<Expr>,
}

impl JoinSpec {
    /// Checks the spec against itself (no panic on a bad plan).
    pub fn validate(&self) -> Result<()> {
        if self.left_keys.len() != self.right_keys.len() {
            return Err(EngineError::internal(
                "a join needs as many left as right key columns",
            ));
        }
        Ok(())
    }

    /// Puts the shape of the join (type, key count, widths) into an operator-state blob.
    pub(crate) fn put_shape(&self, out: &mut Vec<u8>) {
        out.push(self.join_type.code());
        put_uvarint(out, self.left_keys.len() as u64);
        put_uvarint(out, self.left_width as u64);
        put_uvarint(out, self.right_width as u64);
    }

    /// Checks a shape written by [`JoinSpec::put_shape`].
    pub(crate) fn check_shape(&self, input: &mut &[u8]) -> Result<()> {
        let code = get_u8(input)?;
        let keys = get_len(input)?;
        let lw = get_len(input)?;
        let rw = get_len(input)?;
        if code != self.join_type.code()
            || keys != self.left_keys.len()
            || lw != self.left_width
            || rw != self.right_width
        {
            return Err(corrupt(format!(
                "the state is of another join (type {code}, {keys} keys, widths {lw} and {rw})"
            )));
        }
        Ok(())
    }
}

/// Copies the key columns of `row` into `key`; false when one is NULL (such a row never joins).
pub(crate) fn extract_key(row: &[Value], cols: &[usize], key: &mut Row) -> Result<bool> {
    key.clear();
    let mut has_null = false;
    for &c in cols {
        let v = row
            .get(c)
            .ok_or_else(|| EngineError::internal(format!("join key column {c} is out of range")))?;
        has_null |= v.is_null();
        key.push(v.clone());
    }
    Ok(!has_null)
}

/// One stored row of a side, under its join key.
#[derive(Clone, Debug, PartialEq)]
pub struct SideRow {
    /// The row, without the key columns computed for the join.
    pub row: Row,
    /// Copies of the row this entry stands for (at least 1): the operator stores each added
    /// copy as its own entry (count 1), and a retraction removes one copy of the first equal
    /// entry.
    pub count: i64,
    /// Rows of the other side it joins with; kept for outer sides only (0 otherwise).
    pub associations: i64,
    /// When the row was last written (processing time, milliseconds; 0 without a state TTL):
    /// with `table.exec.state.ttl` each row expires on its own, as an entry of Flink's map
    /// state does.
    pub written: i64,
}

/// How keys and values of a side's state become bytes.
struct SideCodec {
    key_len: usize,
}

impl StateCodec<Row, Vec<SideRow>> for SideCodec {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, rows: &Vec<SideRow>, out: &mut Vec<u8>) {
        put_uvarint(out, rows.len() as u64);
        for r in rows {
            put_ivarint(out, r.count);
            put_ivarint(out, r.associations);
            put_ivarint(out, r.written);
            put_values(&r.row, out);
        }
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<Vec<SideRow>> {
        let input = &mut bytes;
        let n = get_len(input)?;
        if n == 0 || n > input.len() {
            return Err(corrupt(format!("a join key holds {n} rows")));
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let count = get_ivarint(input)?;
            let associations = get_ivarint(input)?;
            let written = get_ivarint(input)?;
            if count <= 0 || associations < 0 {
                return Err(corrupt(format!(
                    "a stored join row has count {count} and {associations} associations"
                )));
            }
            let mut row = Row::new();
            get_values_into(input, &mut row)?;
            rows.push(SideRow {
                row,
                count,
                associations,
                written,
            });
        }
        expect_end(input)?;
        Ok(rows)
    }
}

/// The byte after the version byte of a `Join` operator-state blob.
const STATE_MARKER: u8 = b'J';
const LEFT_STATE: StateNames = StateNames {
    plain: "left-records",
    with_ttl: "left-records-ttl",
};
const RIGHT_STATE: StateNames = StateNames {
    plain: "right-records",
    with_ttl: "right-records-ttl",
};

/// The regular streaming join operator.
pub struct StreamingJoin {
    spec: JoinSpec,
    codec: SideCodec,
    left: KeyedState<Row, Vec<SideRow>>,
    right: KeyedState<Row, Vec<SideRow>>,
    /// Reused for the key of each record.
    key_buf: Row,
    /// Reused for the joined row a residual is evaluated on.
    pair_buf: Row,
    /// `table.exec.state.ttl`: rows expire this long after their last write.
    ttl: Option<(i64, Arc<dyn crate::runtime::Clock>)>,
    /// Processing time, read once per batch when rows expire.
    now: i64,
}

impl StreamingJoin {
    /// Builds the operator; fails on an inconsistent spec.
    pub fn new(spec: JoinSpec, ctx: &TaskContext) -> Result<Self> {
        spec.validate()?;
        Ok(StreamingJoin {
            codec: SideCodec {
                key_len: spec.left_keys.len(),
            },
            left: KeyedState::with_ttl(LEFT_STATE, &ctx.state, ctx.max_parallelism, &ctx.metrics),
            right: KeyedState::with_ttl(RIGHT_STATE, &ctx.state, ctx.max_parallelism, &ctx.metrics),
            key_buf: Vec::with_capacity(spec.left_keys.len()),
            pair_buf: Vec::with_capacity(spec.left_width + spec.right_width),
            ttl: ctx.state.ttl.as_ref().map(|t| {
                (
                    i64::try_from(t.ttl.as_millis()).unwrap_or(i64::MAX),
                    t.clock.clone(),
                )
            }),
            now: 0,
            spec,
        })
    }

    /// A factory building one `StreamingJoin` per subtask.
    pub fn factory(spec: JoinSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(StreamingJoin::new(spec.clone(), ctx)?))
        })
    }

    /// Join keys held in memory on each side (with the `hashmap` backend: every key).
    pub fn hot_keys(&self) -> (usize, usize) {
        (
            self.left.hot_entries().count(),
            self.right.hot_entries().count(),
        )
    }

    fn process(&mut self, input_is_left: bool, mut change: Change, out: &mut Output) -> Result<()> {
        let spec = &self.spec;
        let (keys, width) = if input_is_left {
            (&spec.left_keys, spec.left_width)
        } else {
            (&spec.right_keys, spec.right_width)
        };
        let joinable = extract_key(&change.row, keys, &mut self.key_buf)?;
        change.row.truncate(width);
        let input_outer = if input_is_left {
            spec.join_type.left_is_outer()
        } else {
            spec.join_type.right_is_outer()
        };
        let other_outer = if input_is_left {
            spec.join_type.right_is_outer()
        } else {
            spec.join_type.left_is_outer()
        };
        let accumulate = change.kind.is_addition();
        let (lw, rw) = (spec.left_width, spec.right_width);
        if !joinable {
            if input_outer {
                let kind = if accumulate {
                    RowKind::Insert
                } else {
                    RowKind::Delete
                };
                out.emit(kind, pad(&change.row, input_is_left, lw, rw));
            }
            return Ok(());
        }
        let (own, other) = if input_is_left {
            (&mut self.left, &mut self.right)
        } else {
            (&mut self.right, &mut self.left)
        };
        let codec = &self.codec;
        let now = self.now;
        let ttl = self.ttl.as_ref().map(|(ms, _)| *ms);
        let live = |r: &SideRow| ttl.is_none_or(|ms| now.saturating_sub(r.written) < ms);
        let residual = spec.residual.as_ref();
        let pair = &mut self.pair_buf;
        let input_kind = change.kind;
        let row = &change.row;
        // Matches found, counting copies.
        let mut matches: i64 = 0;
        let mut visit = |o: &SideRow, out: &mut Output| -> Result<Option<i64>> {
            if !live(o) {
                return Ok(None);
            }
            fill_pair(pair, row, &o.row, input_is_left);
            if let Some(r) = residual {
                if !r.eval_predicate(pair)? {
                    return Ok(None);
                }
            }
            let old = o.associations;
            for _ in 0..o.count {
                if accumulate {
                    if other_outer && old == 0 {
                        out.emit(RowKind::Delete, pad(&o.row, !input_is_left, lw, rw));
                    }
                    let kind = if input_outer || other_outer {
                        RowKind::Insert
                    } else {
                        input_kind
                    };
                    out.emit(kind, pair.clone());
                } else {
                    let kind = if input_outer {
                        RowKind::Delete
                    } else {
                        input_kind
                    };
                    out.emit(kind, pair.clone());
                    if other_outer && old == 1 {
                        out.emit(RowKind::Insert, pad(&o.row, !input_is_left, lw, rw));
                    }
                }
                matches += 1;
            }
            Ok(Some(if accumulate { old + 1 } else { old - 1 }))
        };
        if other_outer {
            let mut emptied = false;
            if let Some(others) = other.get_mut(codec, self.key_buf.as_slice())? {
                // Expired rows read as absent and go with this write, as in Flink.
                others.retain(|o| live(o));
                for o in others.iter_mut() {
                    if let Some(assoc) = visit(o, out)? {
                        o.associations = assoc.max(0);
                        o.written = now;
                    }
                }
                emptied = others.is_empty();
            }
            if emptied {
                other.remove(codec, self.key_buf.as_slice())?;
            }
        } else if let Some(others) = other.get(codec, self.key_buf.as_slice())? {
            // Reading does not change the other side: it is not marked written.
            for o in others {
                visit(o, out)?;
            }
        }
        if matches == 0 && input_outer {
            let kind = if accumulate {
                RowKind::Insert
            } else {
                RowKind::Delete
            };
            out.emit(kind, pad(&change.row, input_is_left, lw, rw));
        }
        // The input side's own state.
        let assoc = if input_outer { matches } else { 0 };
        let fresh = |row: Row| SideRow {
            row,
            count: 1,
            associations: assoc,
            written: now,
        };
        if accumulate {
            // A copy of a stored row becomes an entry of its own rather than a count: no search
            // of the key's rows per record (a hot key of the larger side costs what Flink's map
            // lookup does), and equal rows have equal associations anyway, so matching and
            // padding treat each copy as Flink treats each count of one entry.
            match own.get_mut(codec, self.key_buf.as_slice())? {
                Some(rows) => {
                    // Expired rows are invisible; they are dropped when the oldest one is
                    // expired, so a hot key is not scanned per record.
                    if rows.first().is_some_and(|r| !live(r)) {
                        rows.retain(|r| live(r));
                    }
                    rows.push(fresh(change.row));
                }
                None => own.insert(codec, self.key_buf.clone(), vec![fresh(change.row)])?,
            }
        } else {
            let mut emptied = false;
            if let Some(rows) = own.get_mut(codec, self.key_buf.as_slice())? {
                rows.retain(|r| live(r));
                if let Some(i) = rows.iter().position(|r| r.row == change.row) {
                    rows[i].count -= 1;
                    rows[i].written = now;
                    if rows[i].count <= 0 {
                        rows.remove(i);
                    }
                }
                emptied = rows.is_empty();
            }
            if emptied {
                own.remove(codec, self.key_buf.as_slice())?;
            }
        }
        Ok(())
    }

    fn encode_shape(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        put_version(&mut out);
        out.push(STATE_MARKER);
        self.spec.put_shape(&mut out);
        out
    }

    fn check_shape(&self, mut input: &[u8]) -> Result<()> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a join"
            )));
        }
        self.spec.check_shape(input)?;
        expect_end(input)
    }
}

/// Fills `pair` with the joined row of `input` and `other`, left columns first.
pub(crate) fn fill_pair(pair: &mut Row, input: &[Value], other: &[Value], input_is_left: bool) {
    pair.clear();
    if input_is_left {
        pair.extend_from_slice(input);
        pair.extend_from_slice(other);
    } else {
        pair.extend_from_slice(other);
        pair.extend_from_slice(input);
    }
}

/// `row` of the left (`is_left`) or right side padded with NULLs for the other side.
pub(crate) fn pad(row: &[Value], is_left: bool, left_width: usize, right_width: usize) -> Row {
    let mut out = Vec::with_capacity(left_width + right_width);
    if is_left {
        out.extend_from_slice(row);
        out.resize(left_width + right_width, Value::Null);
    } else {
        out.resize(left_width, Value::Null);
        out.extend_from_slice(row);
    }
    out
}

impl Operator for StreamingJoin {
    fn on_batch(&mut self, input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        self.left.refresh_time();
        self.right.refresh_time();
        if let Some((_, clock)) = &self.ttl {
            self.now = clock.now_millis();
        }
        let input_is_left = match input {
            0 => true,
            1 => false,
            other => {
                return Err(EngineError::internal(format!(
                    "a join has two inputs, not input {other}"
                )))
            }
        };
        for change in batch {
            self.process(input_is_left, change, out)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        self.left.sweep_expired(&self.codec)?;
        self.right.sweep_expired(&self.codec)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_shape())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.left.begin_flush(&self.codec);
        self.right.begin_flush(&self.codec);
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.left.continue_flush(&self.codec, budget) {
            return Ok(false);
        }
        if !self.right.continue_flush(&self.codec, budget) {
            return Ok(false);
        }
        delta.append(self.left.take_flushed());
        delta.append(self.right.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        self.check_shape(state)
            .map_err(|e| EngineError::data(format!("cannot restore the Join state: {e}")))
    }

    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        states.iter().try_for_each(|s| self.restore_state(s))
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let target = if state == LEFT_STATE.plain || state == LEFT_STATE.with_ttl {
            &mut self.left
        } else if state == RIGHT_STATE.plain || state == RIGHT_STATE.with_ttl {
            &mut self.right
        } else {
            return Err(EngineError::data(format!(
                "cannot restore the Join state: unknown keyed state '{state}'"
            )));
        };
        target
            .restore_entry(&self.codec, state, key, value)
            .map_err(|e| EngineError::data(format!("cannot restore the Join state: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TaskMetrics;
    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 1,
            operator_name: "Join".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    /// Rows are (key INT, name STRING) on both sides.
    fn spec(join_type: JoinType, residual: Option<Expr>) -> JoinSpec {
        JoinSpec {
            join_type,
            left_keys: vec![0],
            right_keys: vec![0],
            left_width: 2,
            right_width: 2,
            residual,
        }
    }

    fn r(k: Option<i32>, name: &str) -> Row {
        vec![k.map_or(Value::Null, Value::Int), Value::string(name)]
    }

    fn show(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let vals: Vec<String> = c
                    .row
                    .iter()
                    .map(|v| match v {
                        Value::Null => "null".to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::String(s) => s.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("{}[{}]", c.kind.short(), vals.join(", "))
            })
            .collect()
    }

    fn step(op: &mut StreamingJoin, input: usize, kind: RowKind, row: Row) -> Vec<String> {
        let mut out = Output::new();
        op.on_batch(input, vec![Change::new(kind, row)], &mut out)
            .unwrap();
        show(&out.changes)
    }

    #[test]
    fn left_join_pads_retracts_and_pads_again() {
        let mut op = StreamingJoin::new(spec(JoinType::LeftOuter, None), &ctx()).unwrap();
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(Some(1), "a")),
            ["+I[1, a, null, null]"]
        );
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(Some(1), "x")),
            ["-D[1, a, null, null]", "+I[1, a, 1, x]"]
        );
        // A second match: the left row was associated already.
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(Some(1), "y")),
            ["+I[1, a, 1, y]"]
        );
        // The inner side's retraction keeps its kind; the last one pads again.
        assert_eq!(
            step(&mut op, 1, RowKind::UpdateBefore, r(Some(1), "x")),
            ["-U[1, a, 1, x]"]
        );
        assert_eq!(
            step(&mut op, 1, RowKind::Delete, r(Some(1), "y")),
            ["-D[1, a, 1, y]", "+I[1, a, null, null]"]
        );
        // The outer side's retraction is a delete.
        assert_eq!(
            step(&mut op, 0, RowKind::UpdateBefore, r(Some(1), "a")),
            ["-D[1, a, null, null]"]
        );
        assert_eq!(op.hot_keys(), (0, 0));
    }

    #[test]
    fn full_join_and_null_keys() {
        let mut op = StreamingJoin::new(spec(JoinType::FullOuter, None), &ctx()).unwrap();
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(Some(2), "x")),
            ["+I[null, null, 2, x]"]
        );
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(Some(2), "a")),
            ["-D[null, null, 2, x]", "+I[2, a, 2, x]"]
        );
        assert_eq!(
            step(&mut op, 0, RowKind::Delete, r(Some(2), "a")),
            ["-D[2, a, 2, x]", "+I[null, null, 2, x]"]
        );
        // NULL keys never match, on either side.
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(None, "n")),
            ["+I[null, n, null, null]"]
        );
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(None, "m")),
            ["+I[null, null, null, m]"]
        );
        assert_eq!(
            step(&mut op, 0, RowKind::Delete, r(None, "n")),
            ["-D[null, n, null, null]"]
        );
    }

    #[test]
    fn inner_join_forwards_update_kinds_and_repeats_duplicates() {
        let mut op = StreamingJoin::new(spec(JoinType::Inner, None), &ctx()).unwrap();
        assert!(step(&mut op, 0, RowKind::Insert, r(Some(1), "a")).is_empty());
        step(&mut op, 0, RowKind::Insert, r(Some(1), "a"));
        assert_eq!(
            step(&mut op, 1, RowKind::UpdateAfter, r(Some(1), "x")),
            ["+U[1, a, 1, x]", "+U[1, a, 1, x]"]
        );
        assert_eq!(
            step(&mut op, 1, RowKind::UpdateBefore, r(Some(1), "x")),
            ["-U[1, a, 1, x]", "-U[1, a, 1, x]"]
        );
        step(&mut op, 0, RowKind::Delete, r(Some(1), "a"));
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(Some(1), "z")),
            ["+I[1, a, 1, z]"]
        );
    }

    #[test]
    fn outer_duplicates_are_padded_and_unpadded_per_copy() {
        let mut op = StreamingJoin::new(spec(JoinType::RightOuter, None), &ctx()).unwrap();
        step(&mut op, 1, RowKind::Insert, r(Some(1), "x"));
        step(&mut op, 1, RowKind::Insert, r(Some(1), "x"));
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(Some(1), "a")),
            [
                "-D[null, null, 1, x]",
                "+I[1, a, 1, x]",
                "-D[null, null, 1, x]",
                "+I[1, a, 1, x]"
            ]
        );
        assert_eq!(
            step(&mut op, 0, RowKind::Delete, r(Some(1), "a")),
            [
                "-D[1, a, 1, x]",
                "+I[null, null, 1, x]",
                "-D[1, a, 1, x]",
                "+I[null, null, 1, x]"
            ]
        );
    }

    #[test]
    fn residual_decides_matches() {
        use crate::expr::functions::CmpOp;
        use crate::expr::ScalarFunction;
        use crate::types::DataType;
        // left.name <> right.name
        let residual = Expr::Call {
            func: ScalarFunction::Cmp(CmpOp::NotEq),
            args: vec![Expr::Column(1), Expr::Column(3)],
            ret: DataType::Boolean,
        };
        let mut op = StreamingJoin::new(spec(JoinType::LeftOuter, Some(residual)), &ctx()).unwrap();
        step(&mut op, 1, RowKind::Insert, r(Some(1), "a"));
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(Some(1), "a")),
            ["+I[1, a, null, null]"]
        );
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(Some(1), "b")),
            ["-D[1, a, null, null]", "+I[1, a, 1, b]"]
        );
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
            let mut live: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
            let mut steps = Vec::new();
            for _ in 0..200 {
                let side = rng.gen_range(0..2usize);
                if rng.gen_bool(0.3) && !live[side].is_empty() {
                    let i = rng.gen_range(0..live[side].len());
                    steps.push((
                        side,
                        Change::new(RowKind::Delete, live[side].swap_remove(i)),
                    ));
                } else {
                    let k = if rng.gen_bool(0.1) {
                        None
                    } else {
                        Some(rng.gen_range(0..5))
                    };
                    let row = r(k, ["a", "b", "c"][rng.gen_range(0..3)]);
                    live[side].push(row.clone());
                    steps.push((side, Change::insert(row)));
                }
            }
            let cut = rng.gen_range(0..steps.len());
            let ctx_a = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut a = StreamingJoin::new(spec(jt, None), &ctx_a).unwrap();
            let mut out = Output::new();
            for (side, c) in &steps[..cut] {
                a.on_batch(*side, vec![c.clone()], &mut out).unwrap();
            }
            let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
            let ctx_b = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut b = StreamingJoin::new(spec(jt, None), &ctx_b).unwrap();
            restore_operator(
                &mut b,
                ctx_b.state.store.as_ref(),
                &blob,
                snap.into_iter().collect(),
            )
            .unwrap();
            let (mut out_a, mut out_b) = (Output::new(), Output::new());
            for (side, c) in &steps[cut..] {
                a.on_batch(*side, vec![c.clone()], &mut out_a).unwrap();
                b.on_batch(*side, vec![c.clone()], &mut out_b).unwrap();
            }
            assert_eq!(out_a.changes, out_b.changes, "seed {seed}");
        }
    }

    #[test]
    fn rows_expire_with_the_state_ttl() {
        let clock = crate::runtime::ManualClock::new(0);
        let mut c = ctx();
        c.state.ttl = Some(crate::state::StateTtl {
            ttl: std::time::Duration::from_millis(1000),
            clock: Arc::new(clock.clone()),
        });
        let mut op = StreamingJoin::new(spec(JoinType::Inner, None), &c).unwrap();
        step(&mut op, 0, RowKind::Insert, r(Some(1), "a"));
        clock.advance(600);
        assert_eq!(
            step(&mut op, 1, RowKind::Insert, r(Some(1), "x")),
            ["+I[1, a, 1, x]"]
        );
        clock.advance(600);
        // The left row was written at 0: expired. The right row (600) is not.
        assert!(step(&mut op, 1, RowKind::Insert, r(Some(1), "y")).is_empty());
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(Some(1), "b")),
            ["+I[1, b, 1, x]", "+I[1, b, 1, y]"]
        );
        // Each row expires on its own, though its key was written since: x (600) is gone at
        // 1700, y (1200) is not.
        clock.advance(500);
        step(&mut op, 1, RowKind::Insert, r(Some(1), "z"));
        assert_eq!(
            step(&mut op, 0, RowKind::Insert, r(Some(1), "c")),
            ["+I[1, c, 1, y]", "+I[1, c, 1, z]"]
        );
    }

    #[test]
    fn outer_rows_expire_without_retracting_their_padding() {
        let clock = crate::runtime::ManualClock::new(0);
        let mut c = ctx();
        c.state.ttl = Some(crate::state::StateTtl {
            ttl: std::time::Duration::from_millis(1000),
            clock: Arc::new(clock.clone()),
        });
        let mut op = StreamingJoin::new(spec(JoinType::LeftOuter, None), &c).unwrap();
        step(&mut op, 0, RowKind::Insert, r(Some(1), "a"));
        clock.advance(1000);
        // The padded row is never retracted: the left row expired (Flink's behaviour too).
        assert!(step(&mut op, 1, RowKind::Insert, r(Some(1), "x")).is_empty());
        assert_eq!(op.hot_keys(), (0, 1));
    }

    #[test]
    fn corrupt_state_is_refused_without_panicking() {
        let mut op = StreamingJoin::new(spec(JoinType::LeftOuter, None), &ctx()).unwrap();
        let blob = op.snapshot_state(1).unwrap();
        for len in 0..blob.len() {
            let mut b = StreamingJoin::new(spec(JoinType::LeftOuter, None), &ctx()).unwrap();
            if len > 0 {
                assert!(b.restore_state(&blob[..len]).is_err());
            }
        }
        let mut other = StreamingJoin::new(spec(JoinType::Inner, None), &ctx()).unwrap();
        assert!(other.restore_state(&blob).is_err());
        assert!(op.restore_keyed("nope", &[], &[]).is_err());
        assert!(op
            .restore_keyed("left-records", &[1, 2], &[9, 9, 9])
            .is_err());
    }
}
