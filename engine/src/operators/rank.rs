//! `Rank`: Top-N with `ROW_NUMBER()` per partition key, over an append-only or an updating input
//! (Flink's `AppendOnlyTopNFunction` and `RetractableTopNFunction`).
//!
//! Per partition key the operator keeps its rows sorted by the ORDER BY key; rows with equal sort
//! keys keep their arrival order (a later one ranks after an earlier one). The changelog follows
//! Flink's record by record:
//! - without the rank number in the output, a row entering the top N emits `-D` of the row it
//!   pushes out (if any) and then `+I` of itself; a retracted row of the top N emits `-D` of
//!   itself and then `+I` of the row that moves up into rank N (if any);
//! - with the rank number (or a rank range not starting at 1), every row whose rank changes is
//!   re-emitted: an insertion at rank r emits `-U old@k` / `+U new@k` down the ranks from r to N,
//!   the last row moving into an empty rank as `+I`; a retraction emits the same chain upwards and
//!   a `-D` of the row leaving the last rank. Only ranks in `[rank_start, rank_end]` are emitted.
//!
//! With an append-only input a row beyond rank N can never come back, so only the first N rows of
//! a partition are kept (what `AppendOnlyTopNFunction` keeps); an updating input keeps every row,
//! since a retraction in the top N promotes the next one. A retraction of a row the operator does
//! not hold is ignored (Flink warns and ignores it too, its state may have expired).
//!
//! State: each partition's sorted rows in a [`KeyedState`] named `rank` (`rank-ttl` with
//! `table.exec.state.ttl`, as Flink's Top-N state expires). The operator state of a snapshot is
//! the operator's shape, which a restore checks before it accepts any keyed entry.
//!
//! The sorted-rows structure ([`SortedRows`]), its codec and the sort comparison are shared with
//! `WindowRank`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::agg::column;
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, get_values_into, put_ivarint,
    put_uvarint, put_values, put_version,
};
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::state::{decode_row_key, row_key_hash, KeyedDelta, KeyedState, StateCodec, StateNames};
use crate::value::{Change, Row, RowKind, Value};

/// One ORDER BY item of a `ROW_NUMBER() OVER (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortField {
    /// The input column.
    pub col: usize,
    /// `DESC`: larger values rank first.
    pub descending: bool,
    /// Where NULLs go. Flink's default: first when ascending, last when descending.
    pub nulls_first: bool,
}

/// Compares two sort keys (values in `order`'s order) as the ORDER BY says.
pub fn compare_sort_keys(order: &[SortField], a: &[Value], b: &[Value]) -> Ordering {
    for (f, (x, y)) in order.iter().zip(a.iter().zip(b)) {
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if f.nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if f.nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) if f.descending => y.cmp(x),
            (false, false) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A sort key with the ORDER BY it is compared by, so that a sorted map can hold it.
#[derive(Clone)]
pub struct SortKey {
    /// The ORDER BY values, in ORDER BY order.
    pub values: Row,
    order: Arc<[SortField]>,
}

impl SortKey {
    /// An empty key compared by `order` (fill `values` before use).
    pub fn new(order: Arc<[SortField]>) -> Self {
        SortKey {
            values: Row::with_capacity(order.len()),
            order,
        }
    }

    /// Refills the key from `row`'s ORDER BY columns, reusing its buffer.
    pub fn fill_from(&mut self, row: &[Value]) -> Result<()> {
        self.values.clear();
        for f in self.order.iter() {
            self.values.push(column(row, f.col)?.clone());
        }
        Ok(())
    }
}

impl std::fmt::Debug for SortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_sort_keys(&self.order, &self.values, &other.values)
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SortKey {}

/// The rows of one partition, sorted by sort key; rows of one sort key in arrival order. A
/// B-tree, so that a partition holding many rows (a Top-N over an updating input keeps every row)
/// costs O(log n) per change, not a shift of the whole partition.
#[derive(Clone, Debug, Default)]
pub struct SortedRows {
    /// Rows by sort key, ascending by the ORDER BY; no entry has an empty row list.
    entries: BTreeMap<SortKey, Vec<Row>>,
    /// All rows held.
    count: usize,
}

impl SortedRows {
    /// All rows held.
    pub fn row_count(&self) -> usize {
        self.count
    }

    /// True when no row is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The largest sort key.
    pub fn last_key(&self) -> Option<&SortKey> {
        self.entries.last_key_value().map(|(k, _)| k)
    }

    /// The rows of `key`, in arrival order.
    pub fn get(&self, key: &SortKey) -> Option<&Vec<Row>> {
        self.entries.get(key)
    }

    /// The row lists of the keys before `key`, in order.
    fn before<'a>(&'a self, key: &SortKey) -> impl Iterator<Item = &'a Vec<Row>> + 'a {
        self.entries.range(..key).map(|(_, r)| r)
    }

    /// The row lists of the keys after `key`, in order.
    fn after<'a>(&'a self, key: &SortKey) -> impl Iterator<Item = &'a Vec<Row>> + 'a {
        self.entries
            .range::<SortKey, _>((Bound::Excluded(key), Bound::Unbounded))
            .map(|(_, r)| r)
    }

    /// Adds `row` with sort key `key`: after the rows of an equal key, or before them when
    /// `first_on_ties` (deduplication keeping the last row).
    pub fn insert(&mut self, key: &SortKey, row: Row, first_on_ties: bool) {
        match self.entries.get_mut(key) {
            Some(rows) if first_on_ties => rows.insert(0, row),
            Some(rows) => rows.push(row),
            None => {
                self.entries.insert(key.clone(), vec![row]);
            }
        }
        self.count += 1;
    }

    /// Removes row `j` of `key`.
    pub fn remove(&mut self, key: &SortKey, j: usize) -> Option<Row> {
        let rows = self.entries.get_mut(key)?;
        if j >= rows.len() {
            return None;
        }
        let row = rows.remove(j);
        if rows.is_empty() {
            self.entries.remove(key);
        }
        self.count -= 1;
        Some(row)
    }

    /// Drops rows from the end until at most `n` are left.
    pub fn truncate(&mut self, n: usize) {
        while self.count > n {
            let Some(mut last) = self.entries.last_entry() else {
                return;
            };
            last.get_mut().pop();
            if last.get().is_empty() {
                last.remove();
            }
            self.count -= 1;
        }
    }

    /// The rows in rank order.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.entries.values().flat_map(|rows| rows.iter())
    }

    /// Appends the encoded rows, by sort key.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.entries.len() as u64);
        for (key, rows) in &self.entries {
            put_values(&key.values, out);
            put_uvarint(out, rows.len() as u64);
            for row in rows {
                put_values(row, out);
            }
        }
    }

    /// Reads what [`SortedRows::encode`] wrote, with keys compared by `order`; refuses empty
    /// row lists, repeated keys and counts larger than the bytes left.
    pub fn decode(input: &mut &[u8], order: &Arc<[SortField]>) -> Result<Self> {
        let n = get_count(input, "sort keys")?;
        let mut sorted = SortedRows::default();
        for _ in 0..n {
            let mut key = SortKey::new(order.clone());
            get_values_into(input, &mut key.values)?;
            if key.values.len() != order.len() {
                return Err(corrupt(format!(
                    "a sort key of {} values for an ORDER BY of {}",
                    key.values.len(),
                    order.len()
                )));
            }
            let m = get_count(input, "rows")?;
            if m == 0 {
                return Err(corrupt("a sort key without rows"));
            }
            let mut rows = Vec::with_capacity(m);
            for _ in 0..m {
                let mut row = Row::new();
                get_values_into(input, &mut row)?;
                rows.push(row);
            }
            sorted.count += m;
            if sorted.entries.insert(key, rows).is_some() {
                return Err(corrupt("a sort key appears twice"));
            }
        }
        Ok(sorted)
    }
}

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

/// The output row: the input row, and its rank number when the output carries it.
pub fn ranked_row(row: &[Value], rank: i64, output_rank: bool) -> Row {
    let mut out = Vec::with_capacity(row.len() + usize::from(output_rank));
    out.extend_from_slice(row);
    if output_rank {
        out.push(Value::BigInt(rank));
    }
    out
}

/// What the planner specifies for a `Rank`.
#[derive(Clone, Debug, PartialEq)]
pub struct RankSpec {
    /// The PARTITION BY columns (none: one global partition).
    pub partition_cols: Vec<usize>,
    /// The ORDER BY.
    pub order: Vec<SortField>,
    /// The first rank kept (1-based).
    pub rank_start: i64,
    /// The last rank kept (inclusive).
    pub rank_end: i64,
    /// Whether output rows end with the rank number (BIGINT).
    pub output_rank: bool,
    /// Whether the input carries only `+I`.
    pub input_append_only: bool,
}

impl RankSpec {
    /// Refuses a range Flink refuses.
    pub fn validate(&self) -> Result<()> {
        if self.rank_start < 1 || self.rank_end < self.rank_start {
            return Err(EngineError::internal(format!(
                "invalid rank range [{}, {}]",
                self.rank_start, self.rank_end
            )));
        }
        if self.order.is_empty() {
            return Err(EngineError::internal("a rank needs an ORDER BY"));
        }
        Ok(())
    }
}

/// The byte after the version byte of a `Rank` operator-state blob.
const STATE_MARKER: u8 = b'R';
/// The names of the keyed state, without and with a TTL.
const RANK_STATE: StateNames = StateNames {
    plain: "rank",
    with_ttl: "rank-ttl",
};

/// How the `rank` state becomes bytes.
pub struct SortedRowsCodec {
    /// Partition key values per key.
    pub key_len: usize,
    /// The ORDER BY the decoded sort keys are compared by.
    pub order: Arc<[SortField]>,
}

impl StateCodec<Row, SortedRows> for SortedRowsCodec {
    fn key_hash(&self, key: &Row) -> i32 {
        row_key_hash(key)
    }

    fn encode_key(&self, key: &Row, out: &mut Vec<u8>) {
        put_values(key, out);
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<Row> {
        decode_row_key(bytes, self.key_len)
    }

    fn encode_value(&self, value: &SortedRows, out: &mut Vec<u8>) {
        value.encode(out);
    }

    fn decode_value(&self, mut bytes: &[u8]) -> Result<SortedRows> {
        let input = &mut bytes;
        let rows = SortedRows::decode(input, &self.order)?;
        expect_end(input)?;
        if rows.is_empty() {
            return Err(corrupt("a partition without rows is not kept"));
        }
        Ok(rows)
    }
}

/// The rank bounds and output shape the emission functions need.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    start: i64,
    end: i64,
    output_rank: bool,
}

impl Bounds {
    fn in_range(&self, rank: i64) -> bool {
        rank >= self.start && rank <= self.end
    }

    fn emit(&self, out: &mut Output, kind: RowKind, row: &[Value], rank: i64) {
        if self.in_range(rank) {
            out.emit(kind, ranked_row(row, rank, self.output_rank));
        }
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Emits what inserting `input` (sort key `key`; `rows` does not hold it yet) changes, with
/// rank numbers: the rows it displaces move down one rank each.
fn emit_insert_numbered(
    rows: &SortedRows,
    key: &SortKey,
    input: &[Value],
    b: Bounds,
    out: &mut Output,
) {
    let equal = rows.get(key).map_or(0, Vec::len);
    let mut rank = 0i64;
    for r in rows.before(key) {
        if rank > b.end {
            return;
        }
        rank += len_i64(r.len());
    }
    if rank > b.end {
        return;
    }
    rank += len_i64(equal) + 1;
    let mut current: &[Value] = input;
    'entries: for r in rows.after(key) {
        for prev in r {
            if rank > b.end {
                break 'entries;
            }
            b.emit(out, RowKind::UpdateBefore, prev, rank);
            b.emit(out, RowKind::UpdateAfter, current, rank);
            current = prev;
            rank += 1;
        }
    }
    if rank <= b.end {
        b.emit(out, RowKind::Insert, current, rank);
    }
}

/// Emits what inserting `input` changes, without rank numbers: `-D` of the row pushed out of the
/// top N, then `+I` of the input when it ranks in it.
fn emit_insert_plain(
    rows: &SortedRows,
    key: &SortKey,
    input: &[Value],
    b: Bounds,
    out: &mut Output,
) {
    let equal = rows.get(key).map_or(0, Vec::len);
    let mut rank = 0i64;
    for r in rows.before(key) {
        if rank > b.end {
            return;
        }
        rank += len_i64(r.len());
    }
    if rank > b.end {
        return;
    }
    rank += len_i64(equal) + 1;
    let collect = b.in_range(rank);
    let mut delete = None;
    for r in rows.after(key) {
        if rank > b.end {
            break;
        }
        let last = rank + len_i64(r.len());
        if last <= b.end {
            rank = last;
        } else {
            delete = usize::try_from(b.end - rank).ok().and_then(|i| r.get(i));
            break;
        }
    }
    if let Some(d) = delete {
        out.emit(RowKind::Delete, d.clone());
    }
    if collect {
        out.emit(RowKind::Insert, input.to_vec());
    }
}

/// Emits what retracting row `j` of sort key `key` changes, with rank numbers: the rows after it
/// move up one rank each and the last rank is deleted.
fn emit_retract_numbered(rows: &SortedRows, key: &SortKey, j: usize, b: Bounds, out: &mut Output) {
    let mut rank = 0i64;
    let mut prev: Option<&Row> = None;
    for (k, r) in &rows.entries {
        if rank > b.end {
            break;
        }
        if prev.is_none() && k == key {
            for (m, row) in r.iter().enumerate() {
                if rank > b.end {
                    break;
                }
                match prev {
                    None if m == j => prev = Some(row),
                    None => {}
                    Some(p) => {
                        b.emit(out, RowKind::UpdateBefore, p, rank);
                        b.emit(out, RowKind::UpdateAfter, row, rank);
                        prev = Some(row);
                    }
                }
                rank += 1;
            }
        } else if let Some(mut p) = prev {
            for row in r {
                if rank > b.end {
                    break;
                }
                b.emit(out, RowKind::UpdateBefore, p, rank);
                b.emit(out, RowKind::UpdateAfter, row, rank);
                p = row;
                rank += 1;
            }
            prev = Some(p);
        } else {
            rank += len_i64(r.len());
        }
    }
    if let Some(p) = prev {
        if rank <= b.end {
            b.emit(out, RowKind::Delete, p, rank);
        }
    }
}

/// Emits what retracting row `j` of sort key `key` changes, without rank numbers: `-D` of it when
/// it is in the top N, then `+I` of the row moving up into rank N.
fn emit_retract_plain(rows: &SortedRows, key: &SortKey, j: usize, b: Bounds, out: &mut Output) {
    let mut next = 1i64;
    let mut found = false;
    for (k, r) in &rows.entries {
        if next > b.end {
            break;
        }
        if !found && k == key {
            for (m, row) in r.iter().enumerate() {
                if next > b.end {
                    break;
                }
                if !found && m == j {
                    out.emit(RowKind::Delete, row.clone());
                    next -= 1;
                    found = true;
                } else if found && next == b.end {
                    out.emit(RowKind::Insert, row.clone());
                }
                next += 1;
            }
        } else if found {
            let last = next + len_i64(r.len()) - 1;
            if last < b.end {
                next = last + 1;
            } else {
                if let Some(row) = usize::try_from(b.end - next).ok().and_then(|x| r.get(x)) {
                    out.emit(RowKind::Insert, row.clone());
                }
                break;
            }
        } else {
            next += len_i64(r.len());
        }
    }
}

/// The Top-N operator.
pub struct Rank {
    spec: RankSpec,
    bounds: Bounds,
    partitions: KeyedState<Row, SortedRows>,
    codec: SortedRowsCodec,
    /// Reused for the partition key of each record.
    key_buf: Row,
    /// Reused for the sort key of each record.
    probe: SortKey,
}

impl Rank {
    /// Builds the operator; refuses an empty ORDER BY or a bad rank range.
    pub fn new(spec: RankSpec, ctx: &TaskContext) -> Result<Self> {
        spec.validate()?;
        let order: Arc<[SortField]> = spec.order.clone().into();
        Ok(Rank {
            bounds: Bounds {
                start: spec.rank_start,
                end: spec.rank_end,
                output_rank: spec.output_rank,
            },
            key_buf: Vec::with_capacity(spec.partition_cols.len()),
            probe: SortKey::new(order.clone()),
            codec: SortedRowsCodec {
                key_len: spec.partition_cols.len(),
                order,
            },
            partitions: KeyedState::with_ttl(
                RANK_STATE,
                &ctx.state,
                ctx.max_parallelism,
                &ctx.metrics,
            ),
            spec,
        })
    }

    /// A factory building one `Rank` per subtask.
    pub fn factory(spec: RankSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(Rank::new(spec.clone(), ctx)?))
        })
    }

    /// Partition keys held in memory (with the `hashmap` backend: every key).
    pub fn hot_keys(&self) -> usize {
        self.partitions.hot_entries().count()
    }

    /// The operator-state blob: version, marker and the operator's shape.
    fn encode_shape(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        put_version(&mut out);
        out.push(STATE_MARKER);
        put_uvarint(&mut out, self.spec.partition_cols.len() as u64);
        put_uvarint(&mut out, self.spec.order.len() as u64);
        put_ivarint(&mut out, self.spec.rank_end);
        out
    }

    /// Checks a blob of [`Rank::encode_shape`] against this operator.
    fn check_shape(&self, mut input: &[u8]) -> Result<()> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a rank"
            )));
        }
        let keys = get_len(input)?;
        let order = get_len(input)?;
        let end = get_ivarint(input)?;
        expect_end(input)?;
        if keys != self.spec.partition_cols.len() || order != self.spec.order.len() {
            return Err(EngineError::data(format!(
                "the state was written for {keys} partition and {order} sort columns, but the rank has {} and {}",
                self.spec.partition_cols.len(),
                self.spec.order.len()
            )));
        }
        if end != self.spec.rank_end && self.spec.input_append_only {
            // An append-only Top-N keeps only N rows: a larger N cannot be restored from it.
            if end < self.spec.rank_end {
                return Err(EngineError::data(format!(
                    "the state keeps the top {end} rows, but the rank needs the top {}",
                    self.spec.rank_end
                )));
            }
        }
        Ok(())
    }

    /// Applies one record; takes it by value so that an inserted row moves into the state.
    fn process(&mut self, change: Change, out: &mut Output) -> Result<()> {
        self.key_buf.clear();
        for &c in &self.spec.partition_cols {
            self.key_buf.push(column(&change.row, c)?.clone());
        }
        self.probe.fill_from(&change.row)?;
        let codec = &self.codec;
        let probe = &self.probe;
        let b = self.bounds;
        let numbered = b.output_rank || b.start > 1;
        if change.kind.is_addition() {
            if self.spec.input_append_only {
                // Most rows of a busy Top-N rank below a full top N: read-only, no state write.
                if let Some(rows) = self.partitions.get(codec, self.key_buf.as_slice())? {
                    let full = rows.row_count() >= usize::try_from(b.end).unwrap_or(usize::MAX);
                    if full && rows.last_key().is_some_and(|k| k <= probe) {
                        return Ok(());
                    }
                }
            }
            let rows = match self.partitions.get_mut(codec, self.key_buf.as_slice())? {
                Some(rows) => rows,
                None => {
                    self.partitions
                        .insert(codec, self.key_buf.clone(), SortedRows::default())?;
                    self.partitions
                        .get_mut(codec, self.key_buf.as_slice())?
                        .ok_or_else(|| EngineError::internal("an inserted partition is missing"))?
                }
            };
            if numbered {
                emit_insert_numbered(rows, probe, &change.row, b, out);
            } else {
                emit_insert_plain(rows, probe, &change.row, b, out);
            }
            rows.insert(probe, change.row, false);
            if self.spec.input_append_only {
                rows.truncate(usize::try_from(b.end).unwrap_or(usize::MAX));
            }
            return Ok(());
        }
        let Some(rows) = self.partitions.get_mut(codec, self.key_buf.as_slice())? else {
            return Ok(());
        };
        let Some(j) = rows
            .get(probe)
            .and_then(|list| list.iter().position(|r| *r == change.row))
        else {
            return Ok(());
        };
        if numbered {
            emit_retract_numbered(rows, probe, j, b, out);
        } else {
            emit_retract_plain(rows, probe, j, b, out);
        }
        rows.remove(probe, j);
        if rows.is_empty() {
            self.partitions.remove(codec, self.key_buf.as_slice())?;
        }
        Ok(())
    }
}

impl Operator for Rank {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        self.partitions.refresh_time();
        for change in batch {
            self.process(change, out)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        self.partitions.sweep_expired(&self.codec)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_shape())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.partitions.begin_flush(&self.codec);
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.partitions.continue_flush(&self.codec, budget) {
            return Ok(false);
        }
        delta.append(self.partitions.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        self.check_shape(state)
            .map_err(|e| EngineError::data(format!("cannot restore the Rank state: {e}")))
    }

    /// The operator state is only the shape, the same in every old subtask: each must fit.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        states.iter().try_for_each(|s| self.restore_state(s))
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.partitions
            .restore_entry(&self.codec, state, key, value)
            .map_err(|e| EngineError::data(format!("cannot restore the Rank state: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TaskMetrics;
    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};

    pub(crate) fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 3,
            operator_name: "Rank".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    /// Rows (game STRING, id INT, score INT); rank per game by score DESC.
    fn spec(end: i64, output_rank: bool, append: bool) -> RankSpec {
        RankSpec {
            partition_cols: vec![0],
            order: vec![SortField {
                col: 2,
                descending: true,
                nulls_first: false,
            }],
            rank_start: 1,
            rank_end: end,
            output_rank,
            input_append_only: append,
        }
    }

    fn r(game: &str, id: i32, score: i32) -> Row {
        vec![Value::string(game), Value::Int(id), Value::Int(score)]
    }

    fn show(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let vals: Vec<String> = c
                    .row
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::BigInt(i) => i.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("{}[{}]", c.kind.short(), vals.join(", "))
            })
            .collect()
    }

    fn feed(op: &mut Rank, changes: Vec<Change>) -> Vec<String> {
        let mut out = Output::new();
        op.on_batch(0, changes, &mut out).unwrap();
        show(&out.changes)
    }

    /// The chess rows of the Flink run in tests/slt/top_n.slt, in arrival order.
    fn chess() -> Vec<Change> {
        [
            (1, 50),
            (2, 70),
            (5, 60),
            (7, 80),
            (8, 65),
            (9, 70),
            (11, 30),
        ]
        .iter()
        .map(|&(id, s)| Change::insert(r("chess", id, s)))
        .collect()
    }

    #[test]
    fn append_only_with_rank_numbers_matches_flink() {
        let mut op = Rank::new(spec(2, true, true), &ctx()).unwrap();
        assert_eq!(
            feed(&mut op, chess()),
            vec![
                "+I[chess, 1, 50, 1]",
                "-U[chess, 1, 50, 1]",
                "+U[chess, 2, 70, 1]",
                "+I[chess, 1, 50, 2]",
                "-U[chess, 1, 50, 2]",
                "+U[chess, 5, 60, 2]",
                "-U[chess, 2, 70, 1]",
                "+U[chess, 7, 80, 1]",
                "-U[chess, 5, 60, 2]",
                "+U[chess, 2, 70, 2]",
            ]
        );
        // Only the top 2 stay in state.
        let key = vec![Value::string("chess")];
        assert_eq!(
            op.partitions
                .get(&op.codec, key.as_slice())
                .unwrap()
                .unwrap()
                .row_count(),
            2
        );
    }

    #[test]
    fn append_only_without_rank_numbers_deletes_the_row_pushed_out() {
        let mut op = Rank::new(spec(2, false, true), &ctx()).unwrap();
        assert_eq!(
            feed(&mut op, chess()),
            vec![
                "+I[chess, 1, 50]",
                "+I[chess, 2, 70]",
                "-D[chess, 1, 50]",
                "+I[chess, 5, 60]",
                "-D[chess, 5, 60]",
                "+I[chess, 7, 80]",
            ]
        );
    }

    #[test]
    fn a_row_below_a_full_top_n_writes_no_state() {
        let ctx_a = TaskContext {
            state: standalone_context(BackendKind::HashMap, 1 << 20),
            ..ctx()
        };
        let mut op = Rank::new(spec(2, true, true), &ctx_a).unwrap();
        feed(&mut op, chess());
        let mut delta = KeyedDelta::new();
        op.snapshot_keyed(&mut delta).unwrap();
        assert_eq!(delta.len(), 1);
        // 70 ties with the last of the top 2 (70): it ranks after it, outside.
        let out = feed(
            &mut op,
            vec![
                Change::insert(r("chess", 20, 10)),
                Change::insert(r("chess", 21, 70)),
            ],
        );
        assert!(out.is_empty());
        let mut delta = KeyedDelta::new();
        op.snapshot_keyed(&mut delta).unwrap();
        assert_eq!(delta.len(), 0);
    }

    #[test]
    fn rank_range_with_offset_emits_only_its_ranks() {
        let mut s = spec(3, true, true);
        s.rank_start = 2;
        let mut op = Rank::new(s, &ctx()).unwrap();
        let out = feed(&mut op, chess());
        assert_eq!(
            out[..6],
            [
                "+I[chess, 1, 50, 2]",
                "-U[chess, 1, 50, 2]",
                "+U[chess, 5, 60, 2]",
                "+I[chess, 1, 50, 3]",
                "-U[chess, 5, 60, 2]",
                "+U[chess, 2, 70, 2]",
            ]
        );
    }

    #[test]
    fn updating_input_promotes_the_next_row() {
        // player, total: ORDER BY total DESC, top 2, global.
        let mut s = spec(2, true, false);
        s.partition_cols = vec![];
        s.order[0].col = 1;
        let mut op = Rank::new(s.clone(), &ctx()).unwrap();
        let p = |n: &str, t: i32| vec![Value::string(n), Value::Int(t)];
        let ins = |n, t| Change::insert(p(n, t));
        let ub = |n, t| Change::new(RowKind::UpdateBefore, p(n, t));
        let ua = |n, t| Change::new(RowKind::UpdateAfter, p(n, t));
        let input = vec![
            ins("ann", 50),
            ins("bob", 70),
            ins("cid", 40),
            ub("ann", 50),
            ua("ann", 140),
            ub("cid", 40),
            ua("cid", 100),
        ];
        assert_eq!(
            feed(&mut op, input.clone()),
            vec![
                "+I[ann, 50, 1]",
                "-U[ann, 50, 1]",
                "+U[bob, 70, 1]",
                "+I[ann, 50, 2]",
                "-U[ann, 50, 2]",
                "+U[cid, 40, 2]",
                "-U[bob, 70, 1]",
                "+U[ann, 140, 1]",
                "-U[cid, 40, 2]",
                "+U[bob, 70, 2]",
                "-U[bob, 70, 2]",
                "+U[cid, 100, 2]",
            ]
        );
        s.output_rank = false;
        let mut op = Rank::new(s, &ctx()).unwrap();
        assert_eq!(
            feed(&mut op, input),
            vec![
                "+I[ann, 50]",
                "+I[bob, 70]",
                "-D[ann, 50]",
                "+I[cid, 40]",
                "-D[cid, 40]",
                "+I[ann, 140]",
                "-D[bob, 70]",
                "+I[cid, 100]",
            ]
        );
    }

    #[test]
    fn unknown_retractions_are_ignored_and_empty_partitions_dropped() {
        let mut op = Rank::new(spec(2, false, false), &ctx()).unwrap();
        let out = feed(
            &mut op,
            vec![
                Change::new(RowKind::Delete, r("go", 1, 5)),
                Change::insert(r("go", 1, 5)),
                Change::new(RowKind::Delete, r("go", 2, 5)),
                Change::new(RowKind::Delete, r("go", 1, 5)),
            ],
        );
        assert_eq!(out, vec!["+I[go, 1, 5]", "-D[go, 1, 5]"]);
        assert_eq!(op.hot_keys(), 0);
    }

    #[test]
    fn expired_partitions_start_again() {
        let clock = crate::runtime::ManualClock::new(0);
        let mut c = ctx();
        c.state.ttl = Some(crate::state::StateTtl {
            ttl: std::time::Duration::from_millis(1000),
            clock: Arc::new(clock.clone()),
        });
        let mut op = Rank::new(spec(1, false, true), &c).unwrap();
        assert_eq!(
            feed(&mut op, vec![Change::insert(r("go", 1, 5))]),
            vec!["+I[go, 1, 5]"]
        );
        clock.advance(600);
        // Below the top 1: no write, so the partition's time is not refreshed.
        assert!(feed(&mut op, vec![Change::insert(r("go", 2, 4))]).is_empty());
        clock.advance(600);
        // Expired: the partition starts again as if empty (Flink's Top-N state expires too).
        assert_eq!(
            feed(&mut op, vec![Change::insert(r("go", 3, 1))]),
            vec!["+I[go, 3, 1]"]
        );
        op.on_timer(0, &mut Output::new()).unwrap();
        assert_eq!(op.hot_keys(), 1);
    }

    #[test]
    fn nulls_sort_low_by_default() {
        let order = [SortField {
            col: 0,
            descending: false,
            nulls_first: true,
        }];
        assert_eq!(
            compare_sort_keys(&order, &[Value::Null], &[Value::Int(1)]),
            Ordering::Less
        );
        let desc = [SortField {
            col: 0,
            descending: true,
            nulls_first: false,
        }];
        assert_eq!(
            compare_sort_keys(&desc, &[Value::Int(1)], &[Value::Int(2)]),
            Ordering::Greater
        );
        assert_eq!(
            compare_sort_keys(&desc, &[Value::Null], &[Value::Int(2)]),
            Ordering::Greater
        );
    }

    /// A random valid changelog over a few games: inserts and retractions of live rows.
    fn random_changes(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<Vec<Change>> {
        use rand::Rng;
        let games = ["a", "b", "c"];
        let mut live: Vec<Row> = Vec::new();
        let mut batches = Vec::new();
        let mut id = 0;
        for _ in 0..n {
            let mut batch = Vec::new();
            for _ in 0..rng.gen_range(1..6) {
                if rng.gen_bool(0.3) && !live.is_empty() {
                    let i = rng.gen_range(0..live.len());
                    batch.push(Change::new(RowKind::Delete, live.swap_remove(i)));
                } else {
                    id += 1;
                    let row = r(games[rng.gen_range(0..3)], id, rng.gen_range(0..8));
                    live.push(row.clone());
                    batch.push(Change::insert(row));
                }
            }
            batches.push(batch);
        }
        batches
    }

    /// The top N of each game, recomputed from the live rows: the fold of the changelog must
    /// equal it after every batch.
    #[test]
    fn folded_changelog_equals_the_top_n_of_the_live_rows() {
        use rand::SeedableRng;
        for seed in 0..60u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let output_rank = seed % 2 == 0;
            let start = if seed % 3 == 0 { 2 } else { 1 };
            let append = seed % 5 == 0;
            let mut s = spec(3, output_rank, append);
            s.rank_start = start;
            let mut op = Rank::new(s, &ctx()).unwrap();
            let mut live: Vec<Row> = Vec::new();
            let mut table: Vec<Row> = Vec::new();
            for mut batch in random_changes(&mut rng, 40) {
                if append {
                    batch.retain(|c| c.kind.is_addition());
                }
                for c in &batch {
                    if c.kind.is_addition() {
                        live.push(c.row.clone());
                    } else if let Some(i) = live.iter().position(|x| *x == c.row) {
                        live.remove(i);
                    }
                }
                let mut out = Output::new();
                op.on_batch(0, batch, &mut out).unwrap();
                for c in out.changes {
                    if c.kind.is_addition() {
                        table.push(c.row);
                    } else {
                        let i = table
                            .iter()
                            .position(|x| *x == c.row)
                            .expect("retracted row");
                        table.remove(i);
                    }
                }
                let mut expected = Vec::new();
                for g in ["a", "b", "c"] {
                    let mut rows: Vec<&Row> =
                        live.iter().filter(|x| x[0] == Value::string(g)).collect();
                    // Stable: ties keep arrival order (live keeps it).
                    rows.sort_by(|x, y| y[2].cmp(&x[2]));
                    for (k, row) in rows.iter().enumerate().take(3).skip(start as usize - 1) {
                        expected.push(ranked_row(row, k as i64 + 1, output_rank));
                    }
                }
                let mut got = table.clone();
                got.sort();
                expected.sort();
                assert_eq!(got, expected, "seed {seed}");
            }
        }
    }

    #[test]
    fn restored_operator_continues_exactly_like_the_original() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let kind = if seed % 2 == 0 {
                BackendKind::HashMap
            } else {
                BackendKind::Sled
            };
            let batches = random_changes(&mut rng, 30);
            let cut = rng.gen_range(0..=batches.len());
            let s = spec(2, seed % 3 == 0, false);
            let ctx_a = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut a = Rank::new(s.clone(), &ctx_a).unwrap();
            for b in &batches[..cut] {
                a.on_batch(0, b.clone(), &mut Output::new()).unwrap();
            }
            let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
            let snap = snap.unwrap();
            let ctx_b = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut b = Rank::new(s, &ctx_b).unwrap();
            restore_operator(&mut b, ctx_b.state.store.as_ref(), &blob, vec![snap]).unwrap();
            for batch in &batches[cut..] {
                let mut oa = Output::new();
                let mut ob = Output::new();
                a.on_batch(0, batch.clone(), &mut oa).unwrap();
                b.on_batch(0, batch.clone(), &mut ob).unwrap();
                assert_eq!(oa.changes, ob.changes, "seed {seed}");
            }
        }
    }

    #[test]
    fn corrupt_state_is_refused_without_panicking() {
        let ctx_a = TaskContext {
            state: standalone_context(BackendKind::HashMap, 1 << 20),
            ..ctx()
        };
        let mut a = Rank::new(spec(2, true, true), &ctx_a).unwrap();
        a.on_batch(0, chess(), &mut Output::new()).unwrap();
        let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
        let snap = snap.unwrap();
        for len in 0..blob.len() {
            let mut b = Rank::new(spec(2, true, true), &ctx()).unwrap();
            if len > 0 {
                assert!(b.restore_state(&blob[..len]).is_err());
            }
        }
        let mut bigger = Rank::new(spec(5, true, true), &ctx()).unwrap();
        assert!(bigger.restore_state(&blob).is_err());
        let rec = &snap.records[0];
        let value = rec.value.clone().unwrap();
        let mut b = Rank::new(spec(2, true, true), &ctx()).unwrap();
        for len in 0..value.len() {
            assert!(b
                .restore_keyed(RANK_STATE.plain, &rec.key, &value[..len])
                .is_err());
        }
        assert!(b.restore_keyed("other", &rec.key, &value).is_err());
    }
}
