//! The `datagen` source: rows of random or sequential values, by Flink's options.
//!
//! Options: `rows-per-second` (default 10000, shared by the subtasks), `number-of-rows` (total;
//! unset means unbounded), and per column `fields.<col>.kind` (`random` | `sequence`), `.min` /
//! `.max` (numbers), `.length` and `.var-len` (strings), `.start` / `.end` (sequences),
//! `.max-past` (timestamps), `.null-rate`. Defaults are Flink's: numbers over their type's full
//! range, strings of 100 random hex characters for STRING (the declared length for CHAR(n) /
//! VARCHAR(n)), timestamps at the current time.
//!
//! Work is split as Flink splits it: subtask `i` of `n` emits `number-of-rows / n` rows (the
//! first `number-of-rows % n` subtasks one more), a sequence gives subtask `i` the values
//! `start + i`, `start + i + n`, ... (no overlap, none missing), the source ends when a sequence is
//! exhausted, and each subtask is throttled to its share of `rows-per-second` by sleeping.
//!
//! A subtask's position is the list of row ranges it has left (first sequence index, step, rows);
//! restored at another parallelism, every old subtask's ranges are split over the new subtasks, so
//! every sequence value left is emitted once.
//!
//! Random values are reproducible: each subtask's generator is ChaCha8 seeded from the table name
//! and the subtask index (Flink has no seed option, so none is added). Timestamps, DATE and TIME
//! derive from the wall clock and therefore differ between runs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::connectors::filesystem::SCAN_WATERMARK_OPTIONS;
use crate::connectors::options::{invalid_value, OptionReader, Options};
use crate::connectors::{Source, SourceFactory, SourceStatus};
use crate::error::{EngineError, Result};
use crate::expr::{cast, format};
use crate::graph::stable_hash;
use crate::operator::{Output, TaskContext};
use crate::types::{DataType, Schema, STRING_MAX};
use crate::value::{Change, Value};

/// Flink's default `rows-per-second`.
pub const DEFAULT_ROWS_PER_SECOND: u64 = 10_000;
/// Flink's default length of a random STRING.
pub const DEFAULT_STRING_LENGTH: u32 = 100;

/// How one column is generated.
#[derive(Clone, Debug, PartialEq)]
enum Generator {
    /// Integers of any width in `[min, max]`.
    Integer {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    /// Unscaled decimals in `[min, max]`.
    Decimal {
        min: i128,
        max: i128,
    },
    Boolean,
    /// Random hex strings of `length` (or 1..=length with `var_len`).
    Text {
        length: u32,
        var_len: bool,
    },
    /// Timestamps in `[now - max_past, now]`.
    PastTimestamp {
        max_past: i64,
    },
    /// The current date / time of day.
    Today,
    TimeOfDay,
    /// `start + subtask + k * parallelism` (the row's sequence index added to the start),
    /// rendered in the column's type.
    Sequence {
        start: i128,
        end: i128,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct ColumnGen {
    ty: DataType,
    generator: Generator,
    null_rate: f32,
}

/// Builds the datagen subtasks of one table.
#[derive(Clone, Debug)]
pub struct DataGenSourceFactory {
    table: String,
    columns: Vec<ColumnGen>,
    rows_per_second: f64,
    number_of_rows: Option<u64>,
}

fn integer_range(ty: &DataType) -> Option<(i64, i64)> {
    Some(match ty {
        DataType::TinyInt => (i64::from(i8::MIN), i64::from(i8::MAX)),
        DataType::SmallInt => (i64::from(i16::MIN), i64::from(i16::MAX)),
        DataType::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
        DataType::BigInt | DataType::IntervalDayTime => (i64::MIN, i64::MAX),
        DataType::IntervalYearMonth => (0, 120_000),
        _ => return None,
    })
}

/// Reads the options of one column.
fn column_generator(r: &mut OptionReader<'_>, name: &str, ty: &DataType) -> Result<ColumnGen> {
    let key = |k: &str| format!("fields.{name}.{k}");
    let kind = r.string(&key("kind")).unwrap_or("random");
    let null_rate = match r.f64(&key("null-rate"))? {
        Some(x) if (0.0..=1.0).contains(&x) => x as f32,
        Some(_) => {
            let v = r.string(&key("null-rate")).unwrap_or_default();
            return Err(invalid_value(
                &key("null-rate"),
                v,
                "a number between 0 and 1",
            ));
        }
        None => 0.0,
    };
    let generator = match kind {
        "sequence" => {
            let (Some(start), Some(end)) = (r.string(&key("start")), r.string(&key("end"))) else {
                let missing = if r.string(&key("start")).is_none() {
                    "start"
                } else {
                    "end"
                };
                return Err(EngineError::option(
                    format!(
                        "Could not find required property '{}' for sequence generator.",
                        key(missing)
                    ),
                    None,
                ));
            };
            let parse = |k: &str, v: &str| -> Result<i128> {
                v.trim()
                    .parse::<i64>()
                    .map(i128::from)
                    .map_err(|_| invalid_value(&key(k), v, "an integer"))
            };
            let (start, end) = (parse("start", start)?, parse("end", end)?);
            if start > end {
                return Err(EngineError::option(
                    format!(
                        "'{}' ({start}) must not be greater than '{}' ({end})",
                        key("start"),
                        key("end")
                    ),
                    None,
                ));
            }
            if let Some((lo, hi)) = integer_range(ty) {
                if start < i128::from(lo) || end > i128::from(hi) {
                    return Err(EngineError::option(
                        format!("the sequence of '{name}' ({start} to {end}) does not fit its type {ty}"),
                        None,
                    ));
                }
            } else if !matches!(
                ty,
                DataType::Float
                    | DataType::Double
                    | DataType::Decimal(..)
                    | DataType::Char(_)
                    | DataType::Varchar(_)
            ) {
                return Err(EngineError::option(
                    format!("Unsupported type for the sequence generator of '{name}': {ty}"),
                    None,
                ));
            }
            Generator::Sequence { start, end }
        }
        "random" => random_generator(r, name, ty)?,
        other => {
            return Err(invalid_value(&key("kind"), other, "'random' or 'sequence'"));
        }
    };
    Ok(ColumnGen {
        ty: ty.clone(),
        generator,
        null_rate,
    })
}

fn random_generator(r: &mut OptionReader<'_>, name: &str, ty: &DataType) -> Result<Generator> {
    let key = |k: &str| format!("fields.{name}.{k}");
    let check = |lo: f64, hi: f64| -> Result<()> {
        if lo > hi {
            return Err(EngineError::option(
                format!("'{}' must not be greater than '{}'", key("min"), key("max")),
                None,
            ));
        }
        Ok(())
    };
    Ok(match ty {
        DataType::Boolean => Generator::Boolean,
        t if integer_range(t).is_some() => {
            let (lo, hi) = integer_range(t).unwrap_or((0, 0));
            let min = r.i64(&key("min"))?.unwrap_or(lo);
            let max = r.i64(&key("max"))?.unwrap_or(hi);
            if min < lo || max > hi {
                return Err(EngineError::option(
                    format!("the range of '{name}' ({min} to {max}) does not fit its type {ty}"),
                    None,
                ));
            }
            check(min as f64, max as f64)?;
            Generator::Integer { min, max }
        }
        DataType::Float | DataType::Double => {
            let (lo, hi) = if *ty == DataType::Float {
                (f64::from(f32::MIN_POSITIVE), f64::from(f32::MAX))
            } else {
                (f64::MIN_POSITIVE, f64::MAX)
            };
            let min = r.f64(&key("min"))?.unwrap_or(lo);
            let max = r.f64(&key("max"))?.unwrap_or(hi);
            check(min, max)?;
            Generator::Float { min, max }
        }
        DataType::Decimal(p, s) => {
            let limit = cast::pow10(u32::from(*p)).unwrap_or(i128::MAX) - 1;
            let to_unscaled = |x: f64| -> i128 {
                let scaled = x * 10f64.powi(i32::from(*s));
                if scaled >= limit as f64 {
                    limit
                } else if scaled <= -(limit as f64) {
                    -limit
                } else {
                    scaled.round() as i128
                }
            };
            let min = r.f64(&key("min"))?.map_or(0, to_unscaled);
            let max = r.f64(&key("max"))?.map_or(limit, to_unscaled);
            check(min as f64, max as f64)?;
            Generator::Decimal { min, max }
        }
        DataType::Char(n) => Generator::Text {
            length: *n,
            var_len: false,
        },
        DataType::Varchar(n) => {
            let default = if *n == STRING_MAX {
                DEFAULT_STRING_LENGTH
            } else {
                *n
            };
            let length = match r.u64(&key("length"))? {
                Some(l) => u32::try_from(l).ok().filter(|l| *l > 0).ok_or_else(|| {
                    invalid_value(&key("length"), &l.to_string(), "a positive length")
                })?,
                None => default,
            };
            Generator::Text {
                length,
                var_len: r.bool(&key("var-len"), false)?,
            }
        }
        DataType::Timestamp(_) | DataType::TimestampLtz(_) => {
            let max_past = r.duration_millis(&key("max-past"))?.unwrap_or(0);
            Generator::PastTimestamp {
                max_past: i64::try_from(max_past).unwrap_or(i64::MAX),
            }
        }
        DataType::Date => Generator::Today,
        DataType::Time(_) => Generator::TimeOfDay,
        other => {
            return Err(EngineError::option(
                format!(
                    "Unsupported type for the datagen connector: column '{name}' of type {other}"
                ),
                None,
            ))
        }
    })
}

/// Reads the datagen options of table `table`.
pub fn create_source(
    table: &str,
    schema: &Schema,
    options: &Options,
) -> Result<DataGenSourceFactory> {
    let mut r = options.reader();
    let rows_per_second = r.u64("rows-per-second")?.unwrap_or(DEFAULT_ROWS_PER_SECOND);
    if rows_per_second == 0 {
        return Err(invalid_value(
            "rows-per-second",
            "0",
            "a positive number of rows",
        ));
    }
    let number_of_rows = r.u64("number-of-rows")?;
    r.accept("scan.parallelism");
    for key in SCAN_WATERMARK_OPTIONS {
        r.accept(key);
    }
    let mut columns = Vec::with_capacity(schema.len());
    for f in &schema.fields {
        columns.push(column_generator(&mut r, &f.name, &f.data_type)?);
    }
    r.finish("datagen")?;
    Ok(DataGenSourceFactory {
        table: table.to_string(),
        columns,
        rows_per_second: rows_per_second as f64,
        number_of_rows,
    })
}

/// How many of `total` items subtask `index` of `parallelism` gets.
fn share(total: u64, index: usize, parallelism: usize) -> u64 {
    let n = parallelism.max(1) as u64;
    let i = index as u64;
    total / n + u64::from(total % n > i)
}

impl SourceFactory for DataGenSourceFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>> {
        let parallelism = ctx.parallelism.max(1);
        let mut remaining = self
            .number_of_rows
            .map(|n| share(n, ctx.subtask_index, parallelism));
        for c in &self.columns {
            if let Generator::Sequence { start, end } = c.generator {
                let total = u64::try_from(end - start + 1).unwrap_or(u64::MAX);
                let n = share(total, ctx.subtask_index, parallelism);
                remaining = Some(remaining.map_or(n, |r| r.min(n)));
            }
        }
        let seed = stable_hash(self.table.as_bytes(), ctx.subtask_index as u64);
        Ok(Box::new(DataGenSource {
            columns: self.columns.clone().into(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            remaining,
            produced: 0,
            first: ctx.subtask_index as i128,
            step: parallelism as i128,
            taken: 0,
            queued: VecDeque::new(),
            subtask: ctx.subtask_index,
            parallelism,
            rate: self.rows_per_second / parallelism as f64,
            started: None,
            throttle_base: 0,
            text: Vec::with_capacity(128),
        }))
    }
}

/// Rows of a datagen source still to emit: row `k` (from 0) has sequence index
/// `first + k * step` (a sequence column's value is its start plus the index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowRange {
    first: i128,
    step: i128,
    /// `None` = unbounded.
    count: Option<u64>,
}

impl RowRange {
    /// The part of this range new subtask `index` of `parallelism` emits: every
    /// `parallelism`-th row from the `index`-th, so the parts of all new subtasks are the range.
    fn share(&self, index: usize, parallelism: usize) -> RowRange {
        RowRange {
            first: self.first + index as i128 * self.step,
            step: self.step * parallelism.max(1) as i128,
            count: self.count.map(|c| share(c, index, parallelism)),
        }
    }
}

/// One datagen subtask.
struct DataGenSource {
    columns: Arc<[ColumnGen]>,
    rng: ChaCha8Rng,
    /// Rows still to emit from the current range; `None` = unbounded.
    remaining: Option<u64>,
    /// Rows emitted since the start or the restore (throttling counts them).
    produced: u64,
    /// The current range: its first sequence index, its step, and the rows taken from it.
    first: i128,
    step: i128,
    taken: u64,
    /// Ranges to emit after the current one (a job restored at another parallelism).
    queued: VecDeque<RowRange>,
    subtask: usize,
    parallelism: usize,
    /// Rows per second for this subtask.
    rate: f64,
    started: Option<Instant>,
    /// `produced` when throttling started (after a restore, the rate counts from there).
    throttle_base: u64,
    text: Vec<u8>,
}

/// The longest a poll sleeps while throttled, so that the task stays responsive.
const MAX_THROTTLE_SLEEP: Duration = Duration::from_millis(50);

fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl DataGenSource {
    fn value(&mut self, col: usize, now: i64) -> Value {
        let c = &self.columns[col];
        if c.null_rate > 0.0 && self.rng.gen::<f32>() < c.null_rate {
            return Value::Null;
        }
        match &c.generator {
            Generator::Integer { min, max } => {
                integer_value(&c.ty, i128::from(self.rng.gen_range(*min..=*max)))
            }
            Generator::Float { min, max } => {
                let x = min + (max - min) * self.rng.gen::<f64>();
                if c.ty == DataType::Float {
                    Value::Float(x as f32)
                } else {
                    Value::Double(x)
                }
            }
            Generator::Decimal { min, max } => {
                let scale = if let DataType::Decimal(_, s) = c.ty {
                    s
                } else {
                    0
                };
                Value::Decimal(self.rng.gen_range(*min..=*max), scale)
            }
            Generator::Boolean => Value::Boolean(self.rng.gen()),
            Generator::Text { length, var_len } => {
                let len = if *var_len {
                    self.rng.gen_range(1..=*length.max(&1))
                } else {
                    *length
                } as usize;
                self.text.clear();
                while self.text.len() < len {
                    let bits = self.rng.next_u64();
                    for i in 0..16 {
                        if self.text.len() == len {
                            break;
                        }
                        self.text.push(HEX[((bits >> (i * 4)) & 0xf) as usize]);
                    }
                }
                // Hex digits only: always valid UTF-8.
                Value::String(Arc::from(
                    std::str::from_utf8(&self.text).unwrap_or_default(),
                ))
            }
            Generator::PastTimestamp { max_past } => {
                let back = if *max_past > 0 {
                    self.rng.gen_range(0..=*max_past)
                } else {
                    0
                };
                let ms = now.saturating_sub(back);
                if matches!(c.ty, DataType::TimestampLtz(_)) {
                    Value::TimestampLtz(ms)
                } else {
                    Value::Timestamp(ms)
                }
            }
            Generator::Today => {
                Value::Date(i32::try_from(now.div_euclid(format::MILLIS_PER_DAY)).unwrap_or(0))
            }
            Generator::TimeOfDay => {
                Value::Time(i32::try_from(now.rem_euclid(format::MILLIS_PER_DAY)).unwrap_or(0))
            }
            Generator::Sequence { start, .. } => {
                let v = start + self.first + i128::from(self.taken) * self.step;
                match &c.ty {
                    DataType::Float => Value::Float(v as f32),
                    DataType::Double => Value::Double(v as f64),
                    DataType::Decimal(p, s) => {
                        cast::to_decimal(v, 0, *p, *s).unwrap_or(Value::Null)
                    }
                    DataType::Char(_) | DataType::Varchar(_) => {
                        Value::String(Arc::from(v.to_string()))
                    }
                    ty => integer_value(ty, v),
                }
            }
        }
    }
}

/// An integer in the value variant of `ty` (the caller keeps it within the type's range).
fn integer_value(ty: &DataType, v: i128) -> Value {
    match ty {
        DataType::TinyInt => i8::try_from(v).map_or(Value::Null, Value::TinyInt),
        DataType::SmallInt => i16::try_from(v).map_or(Value::Null, Value::SmallInt),
        DataType::Int => i32::try_from(v).map_or(Value::Null, Value::Int),
        DataType::IntervalYearMonth => {
            i32::try_from(v).map_or(Value::Null, Value::IntervalYearMonth)
        }
        DataType::IntervalDayTime => i64::try_from(v).map_or(Value::Null, Value::IntervalDayTime),
        _ => i64::try_from(v).map_or(Value::Null, Value::BigInt),
    }
}

/// Version byte of the first datagen position (one range implied by the subtask index); still
/// read, never written.
const POSITION_V1: u8 = 1;
/// Version byte of a datagen position: the ranges left.
const POSITION_V2: u8 = 2;

impl DataGenSource {
    /// The ranges left: the current one, then the queued ones.
    fn ranges(&self) -> Vec<RowRange> {
        let current = RowRange {
            first: self.first + i128::from(self.taken) * self.step,
            step: self.step,
            count: self.remaining,
        };
        std::iter::once(current)
            .chain(self.queued.iter().copied())
            .filter(|r| r.count != Some(0))
            .collect()
    }

    /// Emits `ranges` from now on, in order.
    fn use_ranges(&mut self, ranges: Vec<RowRange>) {
        self.queued = ranges.into_iter().filter(|r| r.count != Some(0)).collect();
        self.taken = 0;
        match self.queued.pop_front() {
            Some(r) => {
                self.first = r.first;
                self.step = r.step;
                self.remaining = r.count;
            }
            None => self.remaining = Some(0),
        }
    }

    /// The ranges a position of old subtask `subtask` of `parallelism` had left, and its
    /// generator's word position.
    fn decode_position(
        position: &[u8],
        subtask: usize,
        parallelism: usize,
    ) -> Result<(Vec<RowRange>, u128)> {
        let bad = || crate::error::EngineError::data("malformed datagen source position");
        let u64_at = |i: usize| -> Result<u64> {
            let b = position.get(i..i + 8).ok_or_else(bad)?;
            Ok(u64::from_le_bytes(b.try_into().map_err(|_| bad())?))
        };
        let u128_at = |i: usize| -> Result<u128> {
            let b = position.get(i..i + 16).ok_or_else(bad)?;
            Ok(u128::from_le_bytes(b.try_into().map_err(|_| bad())?))
        };
        let i128_at = |i: usize| -> Result<i128> {
            let b = position.get(i..i + 16).ok_or_else(bad)?;
            Ok(i128::from_le_bytes(b.try_into().map_err(|_| bad())?))
        };
        let count = |c: u64| (c != u64::MAX).then_some(c);
        match position.first() {
            Some(&POSITION_V1) if position.len() == 33 => {
                let produced = u64_at(1)?;
                let step = parallelism.max(1) as i128;
                let range = RowRange {
                    first: subtask as i128 + i128::from(produced) * step,
                    step,
                    count: count(u64_at(9)?),
                };
                Ok((vec![range], u128_at(17)?))
            }
            Some(&POSITION_V2) => {
                let word = u128_at(1)?;
                let n = u64_at(17)?;
                let mut ranges = Vec::new();
                let mut at = 25;
                for _ in 0..n {
                    ranges.push(RowRange {
                        first: i128_at(at)?,
                        step: i128_at(at + 16)?,
                        count: count(u64_at(at + 32)?),
                    });
                    at += 40;
                }
                if at != position.len() {
                    return Err(bad());
                }
                Ok((ranges, word))
            }
            _ => Err(bad()),
        }
    }
}

impl Source for DataGenSource {
    /// `version 2 | rng word position (u128) | range count (u64) | per range: first sequence
    /// index (i128), step (i128), rows left (u64, u64::MAX = unbounded)`: sequences derive from
    /// the ranges, random columns from the generator's position.
    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        let ranges = self.ranges();
        let mut out = vec![POSITION_V2];
        out.extend_from_slice(&self.rng.get_word_pos().to_le_bytes());
        out.extend_from_slice(&(ranges.len() as u64).to_le_bytes());
        for r in &ranges {
            out.extend_from_slice(&r.first.to_le_bytes());
            out.extend_from_slice(&r.step.to_le_bytes());
            out.extend_from_slice(&r.count.unwrap_or(u64::MAX).to_le_bytes());
        }
        Ok(out)
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        let (ranges, word) = Self::decode_position(position, self.subtask, self.parallelism)?;
        self.use_ranges(ranges);
        self.rng.set_word_pos(word);
        self.throttle_base = self.produced;
        self.started = None;
        Ok(())
    }

    /// Every old subtask's ranges, each split over the new subtasks (a union redistribution):
    /// every row left is emitted by exactly one new subtask. Random columns continue from this
    /// subtask's own generator, so their values differ from an uninterrupted run's.
    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        let mut mine = Vec::new();
        for (j, position) in positions.iter().enumerate() {
            let (ranges, _) = Self::decode_position(position, j, positions.len())?;
            mine.extend(
                ranges
                    .iter()
                    .map(|r| r.share(self.subtask, self.parallelism)),
            );
        }
        self.use_ranges(mine);
        self.throttle_base = self.produced;
        self.started = None;
        Ok(())
    }

    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus> {
        if self.remaining == Some(0) {
            return Ok(SourceStatus::Finished);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = (started.elapsed().as_secs_f64() * self.rate) as u64 + 1;
        let allowed = due.saturating_sub(self.produced - self.throttle_base);
        if allowed == 0 {
            let next_due = ((self.produced - self.throttle_base) as f64) / self.rate;
            let wait =
                Duration::from_secs_f64((next_due - started.elapsed().as_secs_f64()).max(0.0));
            std::thread::sleep(wait.min(MAX_THROTTLE_SLEEP));
            return Ok(SourceStatus::More);
        }
        let mut n = (max_rows.max(1) as u64).min(allowed);
        if let Some(r) = self.remaining {
            n = n.min(r);
        }
        let now = wall_millis();
        out.changes.reserve(n as usize);
        let width = self.columns.len();
        for _ in 0..n {
            let mut row = Vec::with_capacity(width);
            for col in 0..width {
                row.push(self.value(col, now));
            }
            out.changes.push(Change::insert(row));
            self.produced += 1;
            self.taken += 1;
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= n;
        }
        if self.remaining == Some(0) {
            if let Some(next) = self.queued.pop_front() {
                self.first = next.first;
                self.step = next.step;
                self.remaining = next.count;
                self.taken = 0;
            }
        }
        Ok(SourceStatus::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TaskMetrics;
    use crate::types::Field;

    fn ctx(subtask: usize, parallelism: usize) -> TaskContext {
        TaskContext {
            operator_id: 3,
            operator_name: "gen".into(),
            subtask_index: subtask,
            parallelism,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    fn drain(f: &DataGenSourceFactory, subtask: usize, parallelism: usize) -> Vec<Vec<Value>> {
        let mut src = f.create(&ctx(subtask, parallelism)).unwrap();
        let mut rows = Vec::new();
        loop {
            let mut out = Output::new();
            if src.poll(&mut out, 1000).unwrap() == SourceStatus::Finished {
                return rows;
            }
            rows.extend(out.changes.into_iter().map(|c| c.row));
        }
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::BigInt),
            Field::new("v", DataType::Int),
            Field::new("s", DataType::STRING),
            Field::new("d", DataType::Decimal(5, 2)),
        ])
    }

    #[test]
    fn a_restored_position_continues_the_same_rows() {
        let o = Options::from_pairs([
            ("rows-per-second", "1000000000"),
            ("number-of-rows", "50"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.id.end", "100"),
            ("fields.s.length", "4"),
        ]);
        let f = create_source("t", &schema(), &o).unwrap();
        let all = drain(&f, 0, 1);
        assert_eq!(all.len(), 50);
        let mut first = f.create(&ctx(0, 1)).unwrap();
        let mut head = Vec::new();
        while head.len() < 17 {
            let mut out = Output::new();
            first.poll(&mut out, 17 - head.len()).unwrap();
            head.extend(out.changes.into_iter().map(|c| c.row));
        }
        let pos = first.snapshot_position().unwrap();
        let mut second = f.create(&ctx(0, 1)).unwrap();
        second.restore_position(&pos).unwrap();
        loop {
            let mut out = Output::new();
            let st = second.poll(&mut out, 7).unwrap();
            head.extend(out.changes.into_iter().map(|c| c.row));
            if st == SourceStatus::Finished {
                break;
            }
        }
        assert_eq!(
            head, all,
            "random columns and sequences continue where they stopped"
        );
        assert!(second.restore_position(&[1, 2, 3]).is_err());
    }

    #[test]
    fn rows_left_at_a_checkpoint_are_emitted_once_at_any_new_parallelism() {
        let o = Options::from_pairs([
            ("rows-per-second", "1000000000"),
            ("number-of-rows", "95"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "10"),
            ("fields.id.end", "200"),
        ]);
        let f = create_source("t", &schema(), &o).unwrap();
        let ids =
            |rows: &[Change]| -> Vec<Value> { rows.iter().map(|c| c.row[0].clone()).collect() };
        let mut all: Vec<Value> = (0..3)
            .flat_map(|i| drain(&f, i, 3))
            .map(|r| r[0].clone())
            .collect();
        all.sort();
        assert_eq!(all.len(), 95);
        for (old_p, new_p, then_p) in [(3, 2, 4), (2, 1, 3), (1, 4, 1), (2, 5, 2)] {
            let mut seen = Vec::new();
            let positions_after =
                |p: usize, restore: &dyn Fn(&mut dyn Source), seen: &mut Vec<Value>| {
                    (0..p)
                        .map(|i| {
                            let mut src = f.create(&ctx(i, p)).unwrap();
                            restore(src.as_mut());
                            for _ in 0..=i {
                                let mut out = Output::new();
                                src.poll(&mut out, 4).unwrap();
                                seen.extend(ids(&out.changes));
                            }
                            src.snapshot_position().unwrap()
                        })
                        .collect::<Vec<_>>()
                };
            let first = positions_after(old_p, &|_| {}, &mut seen);
            let second =
                positions_after(new_p, &|s| s.restore_rescaled(&first).unwrap(), &mut seen);
            for i in 0..then_p {
                let mut src = f.create(&ctx(i, then_p)).unwrap();
                src.restore_rescaled(&second).unwrap();
                loop {
                    let mut out = Output::new();
                    let st = src.poll(&mut out, 3).unwrap();
                    seen.extend(ids(&out.changes));
                    if st == SourceStatus::Finished {
                        break;
                    }
                }
            }
            seen.sort();
            assert_eq!(seen, all, "{old_p} -> {new_p} -> {then_p}");
        }
    }

    #[test]
    fn sequences_split_without_overlap_and_end() {
        let o = Options::from_pairs([
            ("connector", "datagen"),
            ("rows-per-second", "1000000"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.id.end", "10"),
            ("fields.v.min", "5"),
            ("fields.v.max", "7"),
            ("fields.s.length", "8"),
        ]);
        let f = create_source("t", &schema(), &o).unwrap();
        let a = drain(&f, 0, 3);
        let b = drain(&f, 1, 3);
        let c = drain(&f, 2, 3);
        let ids = |rows: &[Vec<Value>]| {
            rows.iter()
                .map(|r| r[0].as_i64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), vec![1, 4, 7, 10]);
        assert_eq!(ids(&b), vec![2, 5, 8]);
        assert_eq!(ids(&c), vec![3, 6, 9]);
        for r in a.iter().chain(&b).chain(&c) {
            let v = r[1].as_i64().unwrap();
            assert!((5..=7).contains(&v));
            let s = r[2].as_str().unwrap();
            assert_eq!(s.len(), 8);
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
            match r[3] {
                Value::Decimal(u, 2) => assert!(u.abs() < 100_000),
                ref other => panic!("{other:?}"),
            }
        }
        // The same table and subtask give the same values.
        assert_eq!(drain(&f, 0, 3), a);
    }

    #[test]
    fn number_of_rows_is_shared() {
        let o = Options::from_pairs([("number-of-rows", "5"), ("rows-per-second", "1000000")]);
        let f = create_source("t", &schema(), &o).unwrap();
        assert_eq!(drain(&f, 0, 2).len(), 3);
        assert_eq!(drain(&f, 1, 2).len(), 2);
    }

    #[test]
    fn null_rate_and_timestamps() {
        let s = Schema::new(vec![Field::new("ts", DataType::Timestamp(3))]);
        let o = Options::from_pairs([
            ("number-of-rows", "200"),
            ("rows-per-second", "1000000"),
            ("fields.ts.max-past", "5 s"),
            ("fields.ts.null-rate", "0.5"),
        ]);
        let f = create_source("t", &s, &o).unwrap();
        let before = wall_millis();
        let rows = drain(&f, 0, 1);
        let nulls = rows.iter().filter(|r| r[0].is_null()).count();
        assert!(nulls > 50 && nulls < 150, "{nulls}");
        for r in rows.iter().filter(|r| !r[0].is_null()) {
            let ms = r[0].as_timestamp_millis().unwrap();
            assert!(ms >= before - 5_000 && ms <= wall_millis());
        }
    }

    #[test]
    fn throttles_to_rate() {
        let o = Options::from_pairs([("number-of-rows", "30"), ("rows-per-second", "100")]);
        let f = create_source("t", &schema(), &o).unwrap();
        let start = Instant::now();
        assert_eq!(drain(&f, 0, 1).len(), 30);
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[test]
    fn option_errors() {
        let o = Options::from_pairs([("fields.id.kind", "sequence"), ("fields.id.start", "1")]);
        assert_eq!(
            create_source("t", &schema(), &o).unwrap_err().to_string(),
            "Could not find required property 'fields.id.end' for sequence generator."
        );
        let o = Options::from_pairs([("fields.nope.kind", "random")]);
        let err = create_source("t", &schema(), &o).unwrap_err();
        assert!(err
            .to_string()
            .contains("Unsupported options:\n\nfields.nope.kind"));
        let o = Options::from_pairs([("fields.v.kind", "rand")]);
        assert!(create_source("t", &schema(), &o).is_err());
        let o = Options::from_pairs([("fields.v.min", "10"), ("fields.v.max", "1")]);
        assert!(create_source("t", &schema(), &o).is_err());
    }
}
