//! `WindowRank`: window Top-N and window deduplication, `ROW_NUMBER()` partitioned by
//! `window_start, window_end` (and other keys) over a window TVF or a window aggregation (Flink's
//! `WindowRankOperator` and `WindowDeduplicateOperator`).
//!
//! Rows are collected per (partition key, window) until the watermark reaches the window's
//! `end - 1`; then the window's top N rows of each key are emitted as `+I` (with the rank number
//! when the output carries it) before the watermark is forwarded, and the window's state is freed.
//! Nothing is ever retracted. A row whose window has already fired when it arrives is late: dropped
//! and counted in `numLateRecordsDropped`, as window aggregations do.
//!
//! Ties keep arrival order, except for deduplication keeping the last row (ORDER BY the time
//! column DESC, rank 1), where the last arrival among equal times wins, as in Flink.
//!
//! Emission order: by window end, then start, then partition key.
//!
//! State: each (partition key, window)'s first N rows, sorted, in a [`KeyedState`] named
//! `window-rank` (the key includes `window_start` and `window_end`, so one key is one window);
//! the firing order (timers) is kept in memory and rebuilt from the keys on restore. The
//! operator state is the shape and the watermark.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::agg::column;
use crate::codec::{
    check_version, corrupt, expect_end, get_ivarint, get_len, get_u8, put_ivarint, put_uvarint,
    put_version,
};
use crate::error::{EngineError, Result};
use crate::metrics::TaskMetrics;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::operators::rank::{ranked_row, SortField, SortKey, SortedRows, SortedRowsCodec};
use crate::state::{KeyedDelta, KeyedState, StateCodec};
use crate::value::{Change, Row, RowKind, Value};
use crate::window::is_window_fired;

/// What the planner specifies for a `WindowRank`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRankSpec {
    /// The PARTITION BY columns; they include the window start and end columns.
    pub partition_cols: Vec<usize>,
    /// The input column holding `window_start`.
    pub window_start_col: usize,
    /// The input column holding `window_end`.
    pub window_end_col: usize,
    /// The ORDER BY.
    pub order: Vec<SortField>,
    /// The first rank kept (1-based).
    pub rank_start: i64,
    /// The last rank kept (inclusive).
    pub rank_end: i64,
    /// Whether output rows end with the rank number (BIGINT).
    pub output_rank: bool,
    /// Among equal sort keys the last arrival ranks first (deduplication keeping the last row).
    pub last_on_ties: bool,
}

const STATE_MARKER: u8 = b'K';
const WINDOW_RANK_STATE: &str = "window-rank";

/// The window operator for Top-N and deduplication.
pub struct WindowRank {
    spec: WindowRankSpec,
    /// Positions of window_start / window_end within the partition key.
    start_in_key: usize,
    end_in_key: usize,
    metrics: Arc<TaskMetrics>,
    watermark: i64,
    windows: KeyedState<Row, SortedRows>,
    /// (end, start) -> keys with rows in that window.
    timers: BTreeMap<(i64, i64), Vec<Row>>,
    key_buf: Row,
    probe: SortKey,
    codec: SortedRowsCodec,
}

fn window_bound(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Timestamp(t) | Value::TimestampLtz(t) => Ok(*t),
        other => Err(EngineError::data(format!(
            "{what} must be a non-null timestamp, got {other:?}"
        ))),
    }
}

impl WindowRank {
    /// Builds the operator; the window columns must be partition columns.
    pub fn new(spec: WindowRankSpec, ctx: &TaskContext) -> Result<Self> {
        let pos = |c: usize, what: &str| {
            spec.partition_cols
                .iter()
                .position(|&p| p == c)
                .ok_or_else(|| {
                    EngineError::internal(format!("a window rank must be partitioned by {what}"))
                })
        };
        let start_in_key = pos(spec.window_start_col, "window_start")?;
        let end_in_key = pos(spec.window_end_col, "window_end")?;
        if spec.rank_start < 1 || spec.rank_end < spec.rank_start || spec.order.is_empty() {
            return Err(EngineError::internal("invalid window rank specification"));
        }
        let order: Arc<[SortField]> = spec.order.clone().into();
        Ok(WindowRank {
            start_in_key,
            end_in_key,
            metrics: ctx.metrics.clone(),
            watermark: i64::MIN,
            windows: KeyedState::new(WINDOW_RANK_STATE, &ctx.state, ctx.max_parallelism),
            timers: BTreeMap::new(),
            key_buf: Vec::with_capacity(spec.partition_cols.len()),
            probe: SortKey::new(order.clone()),
            codec: SortedRowsCodec {
                key_len: spec.partition_cols.len(),
                order,
            },
            spec,
        })
    }

    /// A factory building one `WindowRank` per subtask.
    pub fn factory(spec: WindowRankSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(WindowRank::new(spec.clone(), ctx)?))
        })
    }

    /// Open (partition key, window) pairs.
    pub fn open_windows(&self) -> usize {
        self.timers.values().map(Vec::len).sum()
    }

    fn encode_operator_state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        put_version(&mut out);
        out.push(STATE_MARKER);
        put_uvarint(&mut out, self.spec.partition_cols.len() as u64);
        put_ivarint(&mut out, self.spec.rank_end);
        put_ivarint(&mut out, self.watermark);
        out
    }

    fn decode_operator_state(&self, mut input: &[u8]) -> Result<i64> {
        let input = &mut input;
        check_version(input)?;
        let marker = get_u8(input)?;
        if marker != STATE_MARKER {
            return Err(corrupt(format!(
                "state marker {marker} is not that of a window rank"
            )));
        }
        let keys = get_len(input)?;
        let end = get_ivarint(input)?;
        let watermark = get_ivarint(input)?;
        expect_end(input)?;
        if keys != self.spec.partition_cols.len() || end < self.spec.rank_end {
            return Err(EngineError::data(format!(
                "the state was written for {keys} partition columns and the top {end} rows, but the rank has {} and needs the top {}",
                self.spec.partition_cols.len(),
                self.spec.rank_end
            )));
        }
        Ok(watermark)
    }

    /// Adds one row; takes it by value so that it moves into the state.
    fn process(&mut self, change: Change) -> Result<()> {
        if change.kind != RowKind::Insert {
            return Err(EngineError::internal(format!(
                "window rank takes an append-only input, got a {} row",
                change.kind.short()
            )));
        }
        let row = &change.row;
        let start = window_bound(column(row, self.spec.window_start_col)?, "window_start")?;
        let end = window_bound(column(row, self.spec.window_end_col)?, "window_end")?;
        if is_window_fired(end, self.watermark) {
            TaskMetrics::add(&self.metrics.late_records_dropped, 1);
            return Ok(());
        }
        self.key_buf.clear();
        for &c in &self.spec.partition_cols {
            self.key_buf.push(column(row, c)?.clone());
        }
        self.probe.fill_from(row)?;
        let codec = &self.codec;
        let rows = match self.windows.get_mut(codec, self.key_buf.as_slice())? {
            Some(rows) => rows,
            None => {
                self.timers
                    .entry((end, start))
                    .or_default()
                    .push(self.key_buf.clone());
                self.windows
                    .insert(codec, self.key_buf.clone(), SortedRows::default())?;
                self.windows
                    .get_mut(codec, self.key_buf.as_slice())?
                    .ok_or_else(|| EngineError::internal("an inserted window is missing"))?
            }
        };
        rows.insert(&self.probe, change.row, self.spec.last_on_ties);
        rows.truncate(usize::try_from(self.spec.rank_end).unwrap_or(usize::MAX));
        Ok(())
    }

    /// Emits every window that has fired at `watermark`, oldest end first.
    fn fire(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        let codec = &self.codec;
        while let Some(entry) = self.timers.first_entry() {
            let (end, _) = *entry.key();
            if !is_window_fired(end, watermark) {
                break;
            }
            let mut keys = entry.remove();
            keys.sort_unstable();
            for key in keys {
                let Some(rows) = self.windows.remove(codec, &key)? else {
                    continue;
                };
                for (i, row) in rows.rows().enumerate() {
                    let rank = i64::try_from(i).unwrap_or(i64::MAX) + 1;
                    if rank > self.spec.rank_end {
                        break;
                    }
                    if rank >= self.spec.rank_start {
                        out.emit(
                            RowKind::Insert,
                            ranked_row(row, rank, self.spec.output_rank),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

impl Operator for WindowRank {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        for change in batch {
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
        self.fire(i64::MAX, out)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<u8>> {
        Ok(self.encode_operator_state())
    }

    fn begin_keyed_snapshot(&mut self) -> Result<()> {
        self.windows.begin_flush(&self.codec);
        Ok(())
    }

    fn continue_keyed_snapshot(&mut self, budget: usize, delta: &mut KeyedDelta) -> Result<bool> {
        if !self.windows.continue_flush(&self.codec, budget) {
            return Ok(false);
        }
        delta.append(self.windows.take_flushed());
        Ok(true)
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        // One old subtask's state: the rescaled restore of a single state.
        self.restore_rescaled(&[state])
    }

    /// The smallest watermark of the old subtasks whose key groups this one takes over.
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        if let Some(w) =
            super::restored_watermark("WindowRank", states, |s| self.decode_operator_state(s))?
        {
            self.watermark = w;
        }
        Ok(())
    }

    fn restore_keyed(&mut self, state: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let fail =
            |e: EngineError| EngineError::data(format!("cannot restore the WindowRank state: {e}"));
        let codec = &self.codec;
        codec.decode_value(value).map_err(fail)?;
        let key = self
            .windows
            .restore_entry(codec, state, key, value)
            .map_err(fail)?;
        let bound = |i: usize, what: &str| {
            key.get(i)
                .ok_or_else(|| corrupt("a window key without its window"))
                .and_then(|v| window_bound(v, what))
                .map_err(fail)
        };
        let start = bound(self.start_in_key, "window_start")?;
        let end = bound(self.end_in_key, "window_end")?;
        self.timers.entry((end, start)).or_default().push(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{restore_operator, snapshot_now, standalone_context, BackendKind};

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 5,
            operator_name: "WindowRank".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    /// Rows (window_start, window_end, game STRING, id INT, score INT).
    fn row(ws: i64, game: &str, id: i32, score: i32) -> Change {
        Change::insert(vec![
            Value::Timestamp(ws),
            Value::Timestamp(ws + 10),
            Value::string(game),
            Value::Int(id),
            Value::Int(score),
        ])
    }

    fn spec(end: i64, last_on_ties: bool) -> WindowRankSpec {
        WindowRankSpec {
            partition_cols: vec![0, 1, 2],
            window_start_col: 0,
            window_end_col: 1,
            order: vec![SortField {
                col: 4,
                descending: true,
                nulls_first: false,
            }],
            rank_start: 1,
            rank_end: end,
            output_rank: true,
            last_on_ties,
        }
    }

    fn ids(out: &Output) -> Vec<(i32, i64)> {
        out.changes
            .iter()
            .map(|c| match (&c.row[3], &c.row[5]) {
                (Value::Int(id), Value::BigInt(rank)) => (*id, *rank),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn fires_top_n_per_key_at_window_end_and_drops_late_rows() {
        let mut op = WindowRank::new(spec(2, false), &ctx()).unwrap();
        let mut out = Output::new();
        op.on_batch(
            0,
            vec![
                row(0, "a", 1, 5),
                row(0, "a", 2, 9),
                row(0, "a", 3, 5),
                row(0, "b", 4, 1),
                row(10, "a", 5, 1),
            ],
            &mut out,
        )
        .unwrap();
        op.on_watermark(8, &mut out).unwrap();
        assert!(out.changes.is_empty());
        op.on_watermark(9, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(2, 1), (1, 2), (4, 1)]);
        let mut out = Output::new();
        op.on_batch(0, vec![row(0, "a", 6, 99)], &mut out).unwrap();
        assert_eq!(
            op.metrics
                .late_records_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        op.on_end_of_input(&mut out).unwrap();
        assert_eq!(ids(&out), vec![(5, 1)]);
        assert_eq!(op.open_windows(), 0);
    }

    #[test]
    fn deduplication_keeping_the_last_row_prefers_the_last_arrival_on_ties() {
        let mut op = WindowRank::new(spec(1, true), &ctx()).unwrap();
        let mut out = Output::new();
        op.on_batch(0, vec![row(0, "a", 1, 5), row(0, "a", 2, 5)], &mut out)
            .unwrap();
        op.on_end_of_input(&mut out).unwrap();
        assert_eq!(ids(&out), vec![(2, 1)]);
    }

    #[test]
    fn restored_operator_continues_exactly_like_the_original() {
        for kind in [BackendKind::HashMap, BackendKind::Sled] {
            let input: Vec<Change> = (0..60)
                .map(|i| {
                    row(
                        i64::from(i / 20) * 10,
                        ["a", "b", "c"][(i % 3) as usize],
                        i,
                        (i * 7) % 11,
                    )
                })
                .collect();
            let ctx_a = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut a = WindowRank::new(spec(3, false), &ctx_a).unwrap();
            let mut out = Output::new();
            a.on_batch(0, input[..30].to_vec(), &mut out).unwrap();
            a.on_watermark(9, &mut out).unwrap();
            let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
            let ctx_b = TaskContext {
                state: standalone_context(kind, 1 << 20),
                ..ctx()
            };
            let mut b = WindowRank::new(spec(3, false), &ctx_b).unwrap();
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
                op.on_batch(0, input[30..].to_vec(), o).unwrap();
                op.on_watermark(19, o).unwrap();
                op.on_end_of_input(o).unwrap();
            }
            assert_eq!(oa.changes, ob.changes);
            assert!(!oa.changes.is_empty());
        }
    }

    #[test]
    fn corrupt_state_is_refused() {
        let ctx_a = TaskContext {
            state: standalone_context(BackendKind::HashMap, 1 << 20),
            ..ctx()
        };
        let mut a = WindowRank::new(spec(2, false), &ctx_a).unwrap();
        a.on_batch(0, vec![row(0, "a", 1, 1)], &mut Output::new())
            .unwrap();
        let (blob, snap) = snapshot_now(&mut a, ctx_a.state.store.as_ref(), 1).unwrap();
        for len in 1..blob.len() {
            let mut b = WindowRank::new(spec(2, false), &ctx()).unwrap();
            assert!(b.restore_state(&blob[..len]).is_err());
        }
        let snap = snap.unwrap();
        let rec = &snap.records[0];
        let value = rec.value.clone().unwrap();
        let mut b = WindowRank::new(spec(2, false), &ctx()).unwrap();
        for len in 0..value.len() {
            assert!(b
                .restore_keyed(WINDOW_RANK_STATE, &rec.key, &value[..len])
                .is_err());
        }
    }
}
