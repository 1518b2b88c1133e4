//! Aggregate functions as accumulators that can add and retract values.
//!
//! [`resolve_aggregate`] gives Flink's result type for a call; [`new_accumulator`] builds the
//! per-key state for it. An [`Accumulator`] is a plain enum (no boxed trait object per key), and
//! it carries what it needs to produce its value, so a key's state is just `Vec<Accumulator>`.
//!
//! Invariants kept here, all Flink's:
//! - NULL inputs are ignored by every function but `COUNT(*)`; an aggregate over no non-NULL
//!   input is NULL (COUNT: 0).
//! - SUM and AVG over TINYINT..BIGINT keep the argument type; the running sum is a wrapping i64
//!   narrowed with wrapping at the end, which is exactly Java's int/long arithmetic modulo 2^n.
//! - Retraction is supported by every accumulator built for an updating input; MIN/MAX keep a
//!   multiset only then (on an append-only input they keep just the current extreme).
//! - DISTINCT keeps a value -> multiplicity map and feeds a value to the inner function only on
//!   its first occurrence (and retracts it on its last).

use std::collections::{BTreeMap, HashMap};

use crate::error::{EngineError, Result};
use crate::types::DataType;
use crate::value::{Row, Value};

/// An aggregate function, as resolved by [`resolve_aggregate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    /// `COUNT(*)`: counts rows, NULLs included.
    CountStar,
    /// `COUNT(x)`: counts non-NULL values.
    Count,
    Sum,
    Avg,
    Min,
    Max,
    FirstValue,
    LastValue,
    StddevPop,
    StddevSamp,
    VarPop,
    VarSamp,
}

impl AggregateKind {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::CountStar | AggregateKind::Count => "COUNT",
            AggregateKind::Sum => "SUM",
            AggregateKind::Avg => "AVG",
            AggregateKind::Min => "MIN",
            AggregateKind::Max => "MAX",
            AggregateKind::FirstValue => "FIRST_VALUE",
            AggregateKind::LastValue => "LAST_VALUE",
            AggregateKind::StddevPop => "STDDEV_POP",
            AggregateKind::StddevSamp => "STDDEV_SAMP",
            AggregateKind::VarPop => "VAR_POP",
            AggregateKind::VarSamp => "VAR_SAMP",
        }
    }
}

/// One aggregate call of an aggregation operator.
#[derive(Clone, Debug, PartialEq)]
pub struct AggCall {
    pub kind: AggregateKind,
    /// The input column aggregated; `None` for `COUNT(*)`.
    pub arg: Option<usize>,
    pub distinct: bool,
    /// The result type, from [`resolve_aggregate`].
    pub ret: DataType,
    /// A BOOLEAN input column: only rows where it is TRUE are aggregated (`FILTER (WHERE ..)`).
    pub filter: Option<usize>,
}

/// Resolves an aggregate call by name (case-insensitive) and argument types to its kind and
/// Flink's result type. `COUNT` with no argument is `COUNT(*)`.
pub fn resolve_aggregate(
    name: &str,
    arg_types: &[DataType],
    distinct: bool,
) -> Result<(AggregateKind, DataType)> {
    let upper = name.to_ascii_uppercase();
    let kind = match upper.as_str() {
        "COUNT" if arg_types.is_empty() => {
            if distinct {
                return Err(EngineError::type_error(
                    "COUNT(DISTINCT *) is not supported",
                ));
            }
            return Ok((AggregateKind::CountStar, DataType::BigInt));
        }
        "COUNT" => AggregateKind::Count,
        "SUM" => AggregateKind::Sum,
        "AVG" => AggregateKind::Avg,
        "MIN" => AggregateKind::Min,
        "MAX" => AggregateKind::Max,
        "FIRST_VALUE" => AggregateKind::FirstValue,
        "LAST_VALUE" => AggregateKind::LastValue,
        "STDDEV_POP" => AggregateKind::StddevPop,
        "STDDEV_SAMP" | "STDDEV" => AggregateKind::StddevSamp,
        "VAR_POP" => AggregateKind::VarPop,
        "VAR_SAMP" | "VARIANCE" => AggregateKind::VarSamp,
        _ => {
            return Err(EngineError::type_error(format!(
                "No match found for aggregate function '{name}'"
            )))
        }
    };
    let [arg] = arg_types else {
        return Err(EngineError::no_signature(&upper, arg_types));
    };
    let ret = match kind {
        AggregateKind::Count => DataType::BigInt,
        AggregateKind::Min
        | AggregateKind::Max
        | AggregateKind::FirstValue
        | AggregateKind::LastValue => {
            if *arg == DataType::Null {
                return Err(EngineError::no_signature(&upper, arg_types));
            }
            arg.clone()
        }
        AggregateKind::Sum => match arg {
            DataType::Decimal(_, s) => DataType::Decimal(38, *s),
            t if t.is_numeric() => t.clone(),
            _ => return Err(EngineError::no_signature(&upper, arg_types)),
        },
        // Flink's LogicalTypeMerging.findAvgAggType, also used for the STDDEV/VAR family.
        _ => match arg {
            DataType::Decimal(_, s) => DataType::Decimal(38, (*s).max(6)),
            t if t.is_numeric() => t.clone(),
            _ => return Err(EngineError::no_signature(&upper, arg_types)),
        },
    };
    Ok((kind, ret))
}

/// The width an integer SUM/AVG result is narrowed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntWidth {
    Tiny,
    Small,
    Int,
    Big,
}

impl IntWidth {
    fn of(t: &DataType) -> Option<IntWidth> {
        match t {
            DataType::TinyInt => Some(IntWidth::Tiny),
            DataType::SmallInt => Some(IntWidth::Small),
            DataType::Int => Some(IntWidth::Int),
            DataType::BigInt => Some(IntWidth::Big),
            _ => None,
        }
    }

    /// Narrows with wrapping, as Java's `(int) long` does: Flink's SUM(INT) overflows this way.
    #[allow(clippy::cast_possible_truncation)]
    fn value(self, v: i64) -> Value {
        match self {
            IntWidth::Tiny => Value::TinyInt(v as i8),
            IntWidth::Small => Value::SmallInt(v as i16),
            IntWidth::Int => Value::Int(v as i32),
            IntWidth::Big => Value::BigInt(v),
        }
    }

    fn truncated(self, v: f64) -> Value {
        // Java's (long) double cast saturates and maps NaN to 0, as Rust's `as` does.
        self.value(v as i64)
    }
}

/// Which of the variance family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moment {
    VarPop,
    VarSamp,
    StddevPop,
    StddevSamp,
}

/// The result type of a floating or decimal variance, and of a float AVG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FloatOut {
    Float,
    Double,
    Decimal(u8),
}

impl FloatOut {
    fn value(self, v: f64) -> Value {
        match self {
            #[allow(clippy::cast_possible_truncation)]
            FloatOut::Float => Value::Float(v as f32),
            FloatOut::Double => Value::Double(v),
            FloatOut::Decimal(scale) => {
                if !v.is_finite() {
                    return Value::Null;
                }
                let scaled = (v * 10f64.powi(i32::from(scale))).round();
                if scaled.abs() >= 1e38 {
                    Value::Null
                } else {
                    Value::Decimal(scaled as i128, scale)
                }
            }
        }
    }
}

/// 10^38: DECIMAL(38, s) holds unscaled values strictly below it.
const DECIMAL_LIMIT: i128 = 100_000_000_000_000_000_000_000_000_000_000_000_000;

/// Brings an unscaled decimal from scale `from` to scale `to`, rounding HALF_UP when it drops
/// digits. `None` on overflow.
fn rescale(unscaled: i128, from: u8, to: u8) -> Option<i128> {
    if from == to {
        return Some(unscaled);
    }
    if to > from {
        let m = 10i128.checked_pow(u32::from(to - from))?;
        return unscaled.checked_mul(m);
    }
    let d = 10i128.checked_pow(u32::from(from - to))?;
    Some(div_half_up(unscaled, d))
}

/// Division rounding HALF_UP (away from zero on a tie), as `BigDecimal.divide(.., HALF_UP)`.
fn div_half_up(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if r.unsigned_abs() * 2 >= d.unsigned_abs() {
        if (n < 0) != (d < 0) {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

/// The decimal as an unscaled integer at `scale`, or an internal error when it is not numeric.
fn decimal_at(v: &Value, scale: u8) -> Result<Option<i128>> {
    let (u, s) = match v {
        Value::Decimal(u, s) => (*u, *s),
        other => match other.as_i64() {
            Some(i) => (i128::from(i), 0),
            None => return Err(bad_input("a DECIMAL aggregate", v)),
        },
    };
    Ok(rescale(u, s, scale))
}

fn bad_input(what: &str, v: &Value) -> EngineError {
    EngineError::internal(format!("{what} received a non-numeric value {v:?}"))
}

fn int_of(v: &Value) -> Result<i64> {
    v.as_i64()
        .ok_or_else(|| bad_input("an integer aggregate", v))
}

fn float_of(v: &Value) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| bad_input("a floating aggregate", v))
}

/// The state of one aggregate function for one key (or window).
#[derive(Clone, Debug)]
enum AccState {
    CountStar(i64),
    Count(i64),
    SumInt {
        sum: i64,
        count: i64,
        width: IntWidth,
    },
    /// FLOAT sums in f32 arithmetic, as Java's `float + float`.
    SumFloat {
        sum: f32,
        count: i64,
    },
    SumDouble {
        sum: f64,
        count: i64,
    },
    /// Unscaled at `scale`, the result scale; `overflow` once it left DECIMAL(38).
    SumDecimal {
        sum: i128,
        count: i64,
        scale: u8,
        overflow: bool,
    },
    AvgInt {
        sum: i64,
        count: i64,
        width: IntWidth,
    },
    AvgFloat {
        sum: f64,
        count: i64,
        out: FloatOut,
    },
    /// Summed at the result scale (never below the input scale), so one HALF_UP division gives
    /// Flink's `DECIMAL(38, s) / BIGINT` result exactly.
    AvgDecimal {
        sum: i128,
        count: i64,
        scale: u8,
        overflow: bool,
    },
    /// MIN/MAX over an append-only input.
    Extreme {
        cur: Value,
        max: bool,
    },
    /// MIN/MAX over an updating input: value -> multiplicity.
    ExtremeMulti {
        values: BTreeMap<Value, u64>,
        max: bool,
    },
    /// FIRST_VALUE/LAST_VALUE over an append-only input: the first or last non-NULL value.
    Edge {
        cur: Value,
        last: bool,
    },
    /// FIRST_VALUE/LAST_VALUE over an updating input: the live values in arrival order.
    EdgeMulti {
        values: Vec<Value>,
        last: bool,
    },
    /// Calcite's reduction of the variance family for integer arguments: integer sums and
    /// integer division, then the square root, truncated to the argument type.
    MomentInt {
        sum: i64,
        sum_sq: i64,
        count: i64,
        moment: Moment,
        width: IntWidth,
    },
    MomentFloat {
        sum: f64,
        sum_sq: f64,
        count: i64,
        moment: Moment,
        out: FloatOut,
    },
}

/// The running state of one aggregate call for one group.
#[derive(Clone, Debug)]
pub struct Accumulator {
    state: AccState,
    /// For DISTINCT calls: each distinct non-NULL value and how many live rows carry it. Boxed
    /// so that the common non-DISTINCT accumulator stays one pointer wide here, not a map wide.
    #[allow(clippy::box_collection)]
    distinct: Option<Box<HashMap<Value, u64>>>,
}

/// Builds the accumulator of `kind` producing `ret` (as given by [`resolve_aggregate`]).
/// `input_is_append_only` lets MIN/MAX and FIRST/LAST_VALUE keep only one value; such
/// accumulators refuse retraction.
pub fn new_accumulator(
    kind: AggregateKind,
    ret: &DataType,
    distinct: bool,
    input_is_append_only: bool,
) -> Result<Accumulator> {
    let mismatch = || {
        EngineError::internal(format!(
            "aggregate {} cannot produce type {ret}",
            kind.name()
        ))
    };
    let float_out = |t: &DataType| match t {
        DataType::Float => Some(FloatOut::Float),
        DataType::Double => Some(FloatOut::Double),
        DataType::Decimal(_, s) => Some(FloatOut::Decimal(*s)),
        _ => None,
    };
    let moment = match kind {
        AggregateKind::VarPop => Some(Moment::VarPop),
        AggregateKind::VarSamp => Some(Moment::VarSamp),
        AggregateKind::StddevPop => Some(Moment::StddevPop),
        AggregateKind::StddevSamp => Some(Moment::StddevSamp),
        _ => None,
    };
    let state = match kind {
        AggregateKind::CountStar => {
            if distinct {
                return Err(EngineError::internal("COUNT(DISTINCT *) has no argument"));
            }
            AccState::CountStar(0)
        }
        AggregateKind::Count => AccState::Count(0),
        AggregateKind::Sum => match ret {
            DataType::Float => AccState::SumFloat { sum: 0.0, count: 0 },
            DataType::Double => AccState::SumDouble { sum: 0.0, count: 0 },
            DataType::Decimal(_, s) => AccState::SumDecimal {
                sum: 0,
                count: 0,
                scale: *s,
                overflow: false,
            },
            t => AccState::SumInt {
                sum: 0,
                count: 0,
                width: IntWidth::of(t).ok_or_else(mismatch)?,
            },
        },
        AggregateKind::Avg => match ret {
            DataType::Decimal(_, s) => AccState::AvgDecimal {
                sum: 0,
                count: 0,
                scale: *s,
                overflow: false,
            },
            t => match IntWidth::of(t) {
                Some(width) => AccState::AvgInt {
                    sum: 0,
                    count: 0,
                    width,
                },
                None => AccState::AvgFloat {
                    sum: 0.0,
                    count: 0,
                    out: float_out(t).ok_or_else(mismatch)?,
                },
            },
        },
        AggregateKind::Min | AggregateKind::Max => {
            let max = kind == AggregateKind::Max;
            if input_is_append_only {
                AccState::Extreme {
                    cur: Value::Null,
                    max,
                }
            } else {
                AccState::ExtremeMulti {
                    values: BTreeMap::new(),
                    max,
                }
            }
        }
        AggregateKind::FirstValue | AggregateKind::LastValue => {
            let last = kind == AggregateKind::LastValue;
            if input_is_append_only {
                AccState::Edge {
                    cur: Value::Null,
                    last,
                }
            } else {
                AccState::EdgeMulti {
                    values: Vec::new(),
                    last,
                }
            }
        }
        AggregateKind::StddevPop
        | AggregateKind::StddevSamp
        | AggregateKind::VarPop
        | AggregateKind::VarSamp => {
            let moment = moment.ok_or_else(mismatch)?;
            match IntWidth::of(ret) {
                Some(width) => AccState::MomentInt {
                    sum: 0,
                    sum_sq: 0,
                    count: 0,
                    moment,
                    width,
                },
                None => AccState::MomentFloat {
                    sum: 0.0,
                    sum_sq: 0.0,
                    count: 0,
                    moment,
                    out: float_out(ret).ok_or_else(mismatch)?,
                },
            }
        }
    };
    // DISTINCT changes nothing for MIN/MAX, and FIRST/LAST_VALUE take it as a plain call.
    let distinct = distinct
        && !matches!(
            kind,
            AggregateKind::Min
                | AggregateKind::Max
                | AggregateKind::FirstValue
                | AggregateKind::LastValue
        );
    Ok(Accumulator {
        state,
        distinct: distinct.then(Default::default),
    })
}

impl Accumulator {
    /// Accumulates one input value (`Value::Null` for `COUNT(*)`'s row).
    pub fn add(&mut self, v: &Value) -> Result<()> {
        if let Some(seen) = self.distinct.as_mut() {
            if v.is_null() {
                return Ok(());
            }
            let n = seen.entry(v.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                return Ok(());
            }
        }
        self.state.add(v)
    }

    /// Takes back one earlier input value.
    pub fn retract(&mut self, v: &Value) -> Result<()> {
        if let Some(seen) = self.distinct.as_mut() {
            if v.is_null() {
                return Ok(());
            }
            match seen.get_mut(v) {
                // Retracting a value never added: nothing to take back.
                None => return Ok(()),
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return Ok(());
                }
                Some(_) => {
                    seen.remove(v);
                }
            }
        }
        self.state.retract(v)
    }

    /// Folds `other` (of the same call) into `self`, as when two session windows merge.
    pub fn merge(&mut self, other: Accumulator) -> Result<()> {
        if let (Some(seen), Some(theirs)) = (self.distinct.as_mut(), other.distinct) {
            for (v, n) in *theirs {
                let mine = seen.entry(v.clone()).or_insert(0);
                if *mine == 0 {
                    self.state.add(&v)?;
                }
                *mine += n;
            }
            return Ok(());
        }
        self.state.merge(other.state)
    }

    /// The current result.
    pub fn value(&self) -> Value {
        self.state.value()
    }
}

impl AccState {
    fn add(&mut self, v: &Value) -> Result<()> {
        if v.is_null() {
            if let AccState::CountStar(n) = self {
                *n += 1;
            }
            return Ok(());
        }
        match self {
            AccState::CountStar(n) | AccState::Count(n) => *n += 1,
            AccState::SumInt { sum, count, .. } | AccState::AvgInt { sum, count, .. } => {
                *sum = sum.wrapping_add(int_of(v)?);
                *count += 1;
            }
            AccState::SumFloat { sum, count } => {
                #[allow(clippy::cast_possible_truncation)]
                let x = float_of(v)? as f32;
                *sum += x;
                *count += 1;
            }
            AccState::SumDouble { sum, count } | AccState::AvgFloat { sum, count, .. } => {
                *sum += float_of(v)?;
                *count += 1;
            }
            AccState::SumDecimal {
                sum,
                count,
                scale,
                overflow,
            }
            | AccState::AvgDecimal {
                sum,
                count,
                scale,
                overflow,
            } => {
                match decimal_at(v, *scale)?.and_then(|x| sum.checked_add(x)) {
                    Some(s) => *sum = s,
                    None => *overflow = true,
                }
                *count += 1;
            }
            AccState::Extreme { cur, max } => {
                let better = cur.is_null() || if *max { v > cur } else { v < cur };
                if better {
                    *cur = v.clone();
                }
            }
            AccState::ExtremeMulti { values, .. } => {
                *values.entry(v.clone()).or_insert(0) += 1;
            }
            AccState::Edge { cur, last } => {
                if *last || cur.is_null() {
                    *cur = v.clone();
                }
            }
            AccState::EdgeMulti { values, .. } => values.push(v.clone()),
            AccState::MomentInt {
                sum, sum_sq, count, ..
            } => {
                let x = int_of(v)?;
                *sum = sum.wrapping_add(x);
                *sum_sq = sum_sq.wrapping_add(x.wrapping_mul(x));
                *count += 1;
            }
            AccState::MomentFloat {
                sum, sum_sq, count, ..
            } => {
                let x = float_of(v)?;
                *sum += x;
                *sum_sq += x * x;
                *count += 1;
            }
        }
        Ok(())
    }

    fn retract(&mut self, v: &Value) -> Result<()> {
        if v.is_null() {
            if let AccState::CountStar(n) = self {
                *n -= 1;
            }
            return Ok(());
        }
        match self {
            AccState::CountStar(n) | AccState::Count(n) => *n -= 1,
            AccState::SumInt { sum, count, .. } | AccState::AvgInt { sum, count, .. } => {
                *sum = sum.wrapping_sub(int_of(v)?);
                *count -= 1;
            }
            AccState::SumFloat { sum, count } => {
                #[allow(clippy::cast_possible_truncation)]
                let x = float_of(v)? as f32;
                *sum -= x;
                *count -= 1;
            }
            AccState::SumDouble { sum, count } | AccState::AvgFloat { sum, count, .. } => {
                *sum -= float_of(v)?;
                *count -= 1;
            }
            AccState::SumDecimal {
                sum,
                count,
                scale,
                overflow,
            }
            | AccState::AvgDecimal {
                sum,
                count,
                scale,
                overflow,
            } => {
                match decimal_at(v, *scale)?.and_then(|x| sum.checked_sub(x)) {
                    Some(s) => *sum = s,
                    None => *overflow = true,
                }
                *count -= 1;
            }
            AccState::Extreme { .. } | AccState::Edge { .. } => {
                return Err(EngineError::internal(
                    "an aggregate built for an append-only input received a retraction",
                ))
            }
            AccState::ExtremeMulti { values, .. } => {
                if let Some(n) = values.get_mut(v) {
                    *n -= 1;
                    if *n == 0 {
                        values.remove(v);
                    }
                }
            }
            AccState::EdgeMulti { values, last } => {
                // Take back the occurrence nearest the end the function reports from, so the
                // reported value changes only when its own row goes.
                let pos = if *last {
                    values.iter().rposition(|x| x == v)
                } else {
                    values.iter().position(|x| x == v)
                };
                if let Some(i) = pos {
                    values.remove(i);
                }
            }
            AccState::MomentInt {
                sum, sum_sq, count, ..
            } => {
                let x = int_of(v)?;
                *sum = sum.wrapping_sub(x);
                *sum_sq = sum_sq.wrapping_sub(x.wrapping_mul(x));
                *count -= 1;
            }
            AccState::MomentFloat {
                sum, sum_sq, count, ..
            } => {
                let x = float_of(v)?;
                *sum -= x;
                *sum_sq -= x * x;
                *count -= 1;
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: AccState) -> Result<()> {
        match (self, other) {
            (AccState::CountStar(a), AccState::CountStar(b))
            | (AccState::Count(a), AccState::Count(b)) => *a += b,
            (
                AccState::SumInt { sum, count, .. },
                AccState::SumInt {
                    sum: s2, count: c2, ..
                },
            )
            | (
                AccState::AvgInt { sum, count, .. },
                AccState::AvgInt {
                    sum: s2, count: c2, ..
                },
            ) => {
                *sum = sum.wrapping_add(s2);
                *count += c2;
            }
            (AccState::SumFloat { sum, count }, AccState::SumFloat { sum: s2, count: c2 }) => {
                *sum += s2;
                *count += c2;
            }
            (AccState::SumDouble { sum, count }, AccState::SumDouble { sum: s2, count: c2 })
            | (
                AccState::AvgFloat { sum, count, .. },
                AccState::AvgFloat {
                    sum: s2, count: c2, ..
                },
            ) => {
                *sum += s2;
                *count += c2;
            }
            (
                AccState::SumDecimal {
                    sum,
                    count,
                    overflow,
                    ..
                },
                AccState::SumDecimal {
                    sum: s2,
                    count: c2,
                    overflow: o2,
                    ..
                },
            )
            | (
                AccState::AvgDecimal {
                    sum,
                    count,
                    overflow,
                    ..
                },
                AccState::AvgDecimal {
                    sum: s2,
                    count: c2,
                    overflow: o2,
                    ..
                },
            ) => {
                match sum.checked_add(s2) {
                    Some(s) => *sum = s,
                    None => *overflow = true,
                }
                *overflow |= o2;
                *count += c2;
            }
            (this @ AccState::Extreme { .. }, AccState::Extreme { cur, .. }) => {
                this.add(&cur)?;
            }
            (AccState::ExtremeMulti { values, .. }, AccState::ExtremeMulti { values: v2, .. }) => {
                for (v, n) in v2 {
                    *values.entry(v).or_insert(0) += n;
                }
            }
            (
                AccState::MomentInt {
                    sum, sum_sq, count, ..
                },
                AccState::MomentInt {
                    sum: s2,
                    sum_sq: q2,
                    count: c2,
                    ..
                },
            ) => {
                *sum = sum.wrapping_add(s2);
                *sum_sq = sum_sq.wrapping_add(q2);
                *count += c2;
            }
            (
                AccState::MomentFloat {
                    sum, sum_sq, count, ..
                },
                AccState::MomentFloat {
                    sum: s2,
                    sum_sq: q2,
                    count: c2,
                    ..
                },
            ) => {
                *sum += s2;
                *sum_sq += q2;
                *count += c2;
            }
            (this, _) => {
                return Err(EngineError::internal(format!(
                    "cannot merge accumulators of {this:?}: FIRST_VALUE and LAST_VALUE have no \
                     merge, and both sides must come from the same call"
                )))
            }
        }
        Ok(())
    }

    fn value(&self) -> Value {
        match self {
            AccState::CountStar(n) | AccState::Count(n) => Value::BigInt(*n),
            AccState::SumInt { sum, count, width } => {
                if *count == 0 {
                    Value::Null
                } else {
                    width.value(*sum)
                }
            }
            AccState::SumFloat { sum, count } => {
                if *count == 0 {
                    Value::Null
                } else {
                    Value::Float(*sum)
                }
            }
            AccState::SumDouble { sum, count } => {
                if *count == 0 {
                    Value::Null
                } else {
                    Value::Double(*sum)
                }
            }
            AccState::SumDecimal {
                sum,
                count,
                scale,
                overflow,
            } => {
                if *count == 0 || *overflow || sum.unsigned_abs() >= DECIMAL_LIMIT.unsigned_abs() {
                    Value::Null
                } else {
                    Value::Decimal(*sum, *scale)
                }
            }
            AccState::AvgInt { sum, count, width } => {
                if *count == 0 {
                    Value::Null
                } else {
                    // Java's long division truncates toward zero: AVG(-1, -2) is -1.
                    width.value(sum.wrapping_div(*count))
                }
            }
            AccState::AvgFloat { sum, count, out } => {
                if *count == 0 {
                    Value::Null
                } else {
                    out.value(*sum / *count as f64)
                }
            }
            AccState::AvgDecimal {
                sum,
                count,
                scale,
                overflow,
            } => {
                if *count == 0 || *overflow {
                    Value::Null
                } else {
                    let avg = div_half_up(*sum, i128::from(*count));
                    if avg.unsigned_abs() >= DECIMAL_LIMIT.unsigned_abs() {
                        Value::Null
                    } else {
                        Value::Decimal(avg, *scale)
                    }
                }
            }
            AccState::Extreme { cur, .. } | AccState::Edge { cur, .. } => cur.clone(),
            AccState::ExtremeMulti { values, max } => {
                let e = if *max {
                    values.keys().next_back()
                } else {
                    values.keys().next()
                };
                e.cloned().unwrap_or(Value::Null)
            }
            AccState::EdgeMulti { values, last } => {
                let e = if *last { values.last() } else { values.first() };
                e.cloned().unwrap_or(Value::Null)
            }
            AccState::MomentInt {
                sum,
                sum_sq,
                count,
                moment,
                width,
            } => {
                let Some(denom) = moment_denominator(*moment, *count) else {
                    return Value::Null;
                };
                let diff = sum_sq.wrapping_sub(sum.wrapping_mul(*sum).wrapping_div(*count));
                let var = diff.wrapping_div(denom);
                match moment {
                    Moment::VarPop | Moment::VarSamp => width.value(var),
                    Moment::StddevPop | Moment::StddevSamp => width.truncated((var as f64).sqrt()),
                }
            }
            AccState::MomentFloat {
                sum,
                sum_sq,
                count,
                moment,
                out,
            } => {
                let Some(denom) = moment_denominator(*moment, *count) else {
                    return Value::Null;
                };
                let var = (sum_sq - sum * sum / *count as f64) / denom as f64;
                match moment {
                    Moment::VarPop | Moment::VarSamp => out.value(var),
                    Moment::StddevPop | Moment::StddevSamp => out.value(var.sqrt()),
                }
            }
        }
    }
}

/// Calcite's denominators: `count` for the population forms, `count - 1` for the sample forms
/// (NULL when there is a single value); NULL on an empty input.
fn moment_denominator(moment: Moment, count: i64) -> Option<i64> {
    if count <= 0 {
        return None;
    }
    match moment {
        Moment::VarPop | Moment::StddevPop => Some(count),
        Moment::VarSamp | Moment::StddevSamp => (count > 1).then_some(count - 1),
    }
}

/// The aggregate calls of one operator with a prototype accumulator each, so a new group's
/// state is a clone rather than a fresh resolution.
#[derive(Clone, Debug)]
pub struct AggregateCalls {
    calls: Vec<AggCall>,
    prototypes: Vec<Accumulator>,
}

impl AggregateCalls {
    /// Builds the prototypes; `input_is_append_only` as for [`new_accumulator`].
    pub fn new(calls: Vec<AggCall>, input_is_append_only: bool) -> Result<Self> {
        let prototypes = calls
            .iter()
            .map(|c| new_accumulator(c.kind, &c.ret, c.distinct, input_is_append_only))
            .collect::<Result<Vec<_>>>()?;
        Ok(AggregateCalls { calls, prototypes })
    }

    /// The calls, in output order.
    pub fn calls(&self) -> &[AggCall] {
        &self.calls
    }

    /// Fresh accumulators for a new group.
    pub fn create(&self) -> Vec<Accumulator> {
        self.prototypes.clone()
    }

    /// Adds (`retract == false`) or takes back one input row into `accs`, honouring each
    /// call's argument and FILTER column.
    pub fn accumulate(&self, accs: &mut [Accumulator], row: &[Value], retract: bool) -> Result<()> {
        for (call, acc) in self.calls.iter().zip(accs.iter_mut()) {
            if let Some(f) = call.filter {
                match column(row, f)? {
                    Value::Boolean(true) => {}
                    _ => continue,
                }
            }
            let v = match call.arg {
                Some(i) => column(row, i)?,
                None => &Value::Null,
            };
            if retract {
                acc.retract(v)?;
            } else {
                acc.add(v)?;
            }
        }
        Ok(())
    }

    /// Appends the current result of each call to `out`.
    pub fn values_into(&self, accs: &[Accumulator], out: &mut Row) {
        out.extend(accs.iter().map(Accumulator::value));
    }

    /// Folds the accumulators of `other` into `accs`, call by call.
    pub fn merge(&self, accs: &mut [Accumulator], other: Vec<Accumulator>) -> Result<()> {
        for (a, b) in accs.iter_mut().zip(other) {
            a.merge(b)?;
        }
        Ok(())
    }
}

/// Column `i` of `row`, or an internal error when the plan and the row disagree.
pub(crate) fn column(row: &[Value], i: usize) -> Result<&Value> {
    row.get(i).ok_or_else(|| {
        EngineError::internal(format!(
            "column {i} is out of range for a row of {} values",
            row.len()
        ))
    })
}

// The encoded form of accumulators, for keyed state and snapshots (see `crate::codec`).
//
// An accumulator is written as one tag byte (its state's variant, with `DISTINCT_BIT` set for a
// DISTINCT call) followed by the state's running fields, then a DISTINCT call's value counts.
// What the plan fixes (result width, scale, MIN or MAX, the variance form) is not written: it is
// taken from the prototype the decoder is given, so the bytes stay small; the tag catches state
// restored into another kind of call.

/// Set in an accumulator's tag byte when the call is DISTINCT.
const DISTINCT_BIT: u8 = 0x80;

impl AccState {
    fn tag(&self) -> u8 {
        match self {
            AccState::CountStar(_) => 1,
            AccState::Count(_) => 2,
            AccState::SumInt { .. } => 3,
            AccState::SumFloat { .. } => 4,
            AccState::SumDouble { .. } => 5,
            AccState::SumDecimal { .. } => 6,
            AccState::AvgInt { .. } => 7,
            AccState::AvgFloat { .. } => 8,
            AccState::AvgDecimal { .. } => 9,
            AccState::Extreme { .. } => 10,
            AccState::ExtremeMulti { .. } => 11,
            AccState::Edge { .. } => 12,
            AccState::EdgeMulti { .. } => 13,
            AccState::MomentInt { .. } => 14,
            AccState::MomentFloat { .. } => 15,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        use crate::codec::{encode_value, put_bool, put_f32, put_f64, put_i128, put_ivarint};
        match self {
            AccState::CountStar(n) | AccState::Count(n) => put_ivarint(out, *n),
            AccState::SumInt { sum, count, .. } | AccState::AvgInt { sum, count, .. } => {
                put_ivarint(out, *sum);
                put_ivarint(out, *count);
            }
            AccState::SumFloat { sum, count } => {
                put_f32(out, *sum);
                put_ivarint(out, *count);
            }
            AccState::SumDouble { sum, count } | AccState::AvgFloat { sum, count, .. } => {
                put_f64(out, *sum);
                put_ivarint(out, *count);
            }
            AccState::SumDecimal {
                sum,
                count,
                overflow,
                ..
            }
            | AccState::AvgDecimal {
                sum,
                count,
                overflow,
                ..
            } => {
                put_i128(out, *sum);
                put_ivarint(out, *count);
                put_bool(out, *overflow);
            }
            AccState::Extreme { cur, .. } | AccState::Edge { cur, .. } => encode_value(cur, out),
            AccState::ExtremeMulti { values, .. } => {
                // A BTreeMap iterates in key order: the bytes do not depend on arrival order.
                crate::codec::put_uvarint(out, values.len() as u64);
                for (v, n) in values {
                    encode_value(v, out);
                    crate::codec::put_uvarint(out, *n);
                }
            }
            AccState::EdgeMulti { values, .. } => crate::codec::put_values(values, out),
            AccState::MomentInt {
                sum, sum_sq, count, ..
            } => {
                put_ivarint(out, *sum);
                put_ivarint(out, *sum_sq);
                put_ivarint(out, *count);
            }
            AccState::MomentFloat {
                sum, sum_sq, count, ..
            } => {
                put_f64(out, *sum);
                put_f64(out, *sum_sq);
                put_ivarint(out, *count);
            }
        }
    }

    /// Reads the running fields into a clone of `self`, the prototype, which supplies the rest.
    fn decode(&self, input: &mut &[u8]) -> Result<AccState> {
        use crate::codec::{
            decode_value, get_bool, get_f32, get_f64, get_i128, get_ivarint, get_len, get_uvarint,
            get_values_into,
        };
        let mut state = self.clone();
        match &mut state {
            AccState::CountStar(n) | AccState::Count(n) => *n = get_ivarint(input)?,
            AccState::SumInt { sum, count, .. } | AccState::AvgInt { sum, count, .. } => {
                *sum = get_ivarint(input)?;
                *count = get_ivarint(input)?;
            }
            AccState::SumFloat { sum, count } => {
                *sum = get_f32(input)?;
                *count = get_ivarint(input)?;
            }
            AccState::SumDouble { sum, count } | AccState::AvgFloat { sum, count, .. } => {
                *sum = get_f64(input)?;
                *count = get_ivarint(input)?;
            }
            AccState::SumDecimal {
                sum,
                count,
                overflow,
                ..
            }
            | AccState::AvgDecimal {
                sum,
                count,
                overflow,
                ..
            } => {
                *sum = get_i128(input)?;
                *count = get_ivarint(input)?;
                *overflow = get_bool(input)?;
            }
            AccState::Extreme { cur, .. } | AccState::Edge { cur, .. } => {
                *cur = decode_value(input)?;
            }
            AccState::ExtremeMulti { values, .. } => {
                let n = get_len(input)?;
                values.clear();
                for _ in 0..n {
                    let v = decode_value(input)?;
                    let m = get_uvarint(input)?;
                    let e = values.entry(v).or_insert(0);
                    *e = e.saturating_add(m);
                }
            }
            AccState::EdgeMulti { values, .. } => get_values_into(input, values)?,
            AccState::MomentInt {
                sum, sum_sq, count, ..
            } => {
                *sum = get_ivarint(input)?;
                *sum_sq = get_ivarint(input)?;
                *count = get_ivarint(input)?;
            }
            AccState::MomentFloat {
                sum, sum_sq, count, ..
            } => {
                *sum = get_f64(input)?;
                *sum_sq = get_f64(input)?;
                *count = get_ivarint(input)?;
            }
        }
        Ok(state)
    }
}

impl Accumulator {
    /// Appends this accumulator's state; deterministic (a DISTINCT call's values are written
    /// sorted by their encoding, not in hash order). No version byte: accumulators nest in a
    /// blob such as [`AggregateCalls::encode_state`]'s.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let distinct = if self.distinct.is_some() {
            DISTINCT_BIT
        } else {
            0
        };
        out.push(self.state.tag() | distinct);
        self.state.encode(out);
        if let Some(seen) = &self.distinct {
            // Sorting the entries' bytes, not the values, keeps the order total even for values
            // `Eq` equates but the map holds apart (an INT 3 and a DOUBLE 3.0).
            let mut scratch = Vec::new();
            let mut spans = Vec::with_capacity(seen.len());
            for (v, n) in seen.iter() {
                let start = scratch.len();
                crate::codec::encode_value(v, &mut scratch);
                crate::codec::put_uvarint(&mut scratch, *n);
                spans.push(start..scratch.len());
            }
            spans.sort_unstable_by(|a, b| scratch[a.clone()].cmp(&scratch[b.clone()]));
            crate::codec::put_uvarint(out, spans.len() as u64);
            for span in spans {
                out.extend_from_slice(&scratch[span]);
            }
        }
    }

    /// Reads an accumulator written by [`Accumulator::encode`] for the same call as
    /// `prototype` (a fresh accumulator of that call), which supplies what the plan fixes.
    pub fn decode(input: &mut &[u8], prototype: &Accumulator) -> Result<Accumulator> {
        use crate::codec::{corrupt, decode_value, get_len, get_u8, get_uvarint};
        let tag = get_u8(input)?;
        let expected = prototype.state.tag()
            | if prototype.distinct.is_some() {
                DISTINCT_BIT
            } else {
                0
            };
        if tag != expected {
            return Err(EngineError::data(format!(
                "aggregate state has tag {tag}, but the call expects tag {expected}: the state \
                 was written for another aggregate call"
            )));
        }
        let state = prototype.state.decode(input)?;
        let distinct = match prototype.distinct {
            None => None,
            Some(_) => {
                let n = get_len(input)?;
                // Each entry takes at least two bytes; check before reserving.
                if n > input.len() / 2 {
                    return Err(corrupt(format!(
                        "{n} DISTINCT values announced but only {} bytes left",
                        input.len()
                    )));
                }
                let mut seen = HashMap::with_capacity(n);
                for _ in 0..n {
                    let v = decode_value(input)?;
                    let m = get_uvarint(input)?;
                    let e = seen.entry(v).or_insert(0u64);
                    *e = e.saturating_add(m);
                }
                Some(Box::new(seen))
            }
        };
        Ok(Accumulator { state, distinct })
    }
}

impl AggregateCalls {
    /// Appends one group's accumulators as a top-level blob: version byte, count, accumulators.
    pub fn encode_state(&self, accs: &[Accumulator], out: &mut Vec<u8>) {
        crate::codec::put_version(out);
        crate::codec::put_uvarint(out, accs.len() as u64);
        for acc in accs {
            acc.encode(out);
        }
    }

    /// Reads a blob written by [`AggregateCalls::encode_state`] for these calls.
    pub fn decode_state(&self, input: &mut &[u8]) -> Result<Vec<Accumulator>> {
        crate::codec::check_version(input)?;
        let n = crate::codec::get_len(input)?;
        if n != self.prototypes.len() {
            return Err(EngineError::data(format!(
                "aggregate state holds {n} accumulators, but the aggregation has {} calls",
                self.prototypes.len()
            )));
        }
        self.prototypes
            .iter()
            .map(|p| Accumulator::decode(input, p))
            .collect()
    }
}

impl AggregateCalls {
    /// Writes the shape of an aggregation's state (number of group key columns, number of
    /// aggregate calls), which [`AggregateCalls::check_state_shape`] verifies on restore.
    pub fn put_state_shape(&self, key_cols: usize, out: &mut Vec<u8>) {
        crate::codec::put_uvarint(out, key_cols as u64);
        crate::codec::put_uvarint(out, self.calls().len() as u64);
    }

    /// Reads a state shape written by [`AggregateCalls::put_state_shape`] and checks it against
    /// this aggregation with `key_cols` group key columns.
    pub fn check_state_shape(&self, key_cols: usize, input: &mut &[u8]) -> Result<()> {
        let key_len = crate::codec::get_len(input)?;
        if key_len != key_cols {
            return Err(EngineError::data(format!(
                "the state has {key_len} group key columns, but the aggregation groups by {key_cols}"
            )));
        }
        let calls = crate::codec::get_len(input)?;
        if calls != self.calls().len() {
            return Err(EngineError::data(format!(
                "the state has {calls} aggregate calls, but the aggregation has {}",
                self.calls().len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        name: &str,
        arg: DataType,
        distinct: bool,
        append_only: bool,
        adds: &[Value],
        retracts: &[Value],
    ) -> (DataType, Value) {
        let (kind, ret) = resolve_aggregate(name, &[arg], distinct).unwrap();
        let mut acc = new_accumulator(kind, &ret, distinct, append_only).unwrap();
        for v in adds {
            acc.add(v).unwrap();
        }
        for v in retracts {
            acc.retract(v).unwrap();
        }
        (ret, acc.value())
    }

    fn ints(v: &[i32]) -> Vec<Value> {
        v.iter().map(|x| Value::Int(*x)).collect()
    }

    #[test]
    fn result_types_are_flinks() {
        let t = |n: &str, a: DataType| resolve_aggregate(n, &[a], false).unwrap().1;
        assert_eq!(
            resolve_aggregate("count", &[], false).unwrap(),
            (AggregateKind::CountStar, DataType::BigInt)
        );
        assert_eq!(t("COUNT", DataType::STRING), DataType::BigInt);
        assert_eq!(t("SUM", DataType::Int), DataType::Int);
        assert_eq!(t("SUM", DataType::TinyInt), DataType::TinyInt);
        assert_eq!(t("SUM", DataType::Decimal(10, 2)), DataType::Decimal(38, 2));
        assert_eq!(t("AVG", DataType::Decimal(10, 2)), DataType::Decimal(38, 6));
        assert_eq!(t("AVG", DataType::Decimal(20, 8)), DataType::Decimal(38, 8));
        assert_eq!(t("AVG", DataType::Int), DataType::Int);
        assert_eq!(t("AVG", DataType::Float), DataType::Float);
        assert_eq!(t("MAX", DataType::Timestamp(3)), DataType::Timestamp(3));
        assert_eq!(t("MIN", DataType::STRING), DataType::STRING);
        assert!(resolve_aggregate("SUM", &[DataType::STRING], false).is_err());
        assert!(resolve_aggregate("AVG", &[DataType::Int, DataType::Int], false).is_err());
        assert!(resolve_aggregate("MEDIAN", &[DataType::Int], false).is_err());
        assert!(resolve_aggregate("COUNT", &[], true).is_err());
    }

    #[test]
    fn sum_int_wraps_like_java() {
        let (_, v) = run(
            "SUM",
            DataType::Int,
            false,
            true,
            &ints(&[2_000_000_000, 2_000_000_000]),
            &[],
        );
        assert_eq!(v, Value::Int(-294_967_296));
    }

    #[test]
    fn sum_of_nulls_is_null_and_count_ignores_nulls() {
        let (_, v) = run("SUM", DataType::Int, false, true, &[Value::Null], &[]);
        assert!(v.is_null());
        let (_, v) = run(
            "COUNT",
            DataType::Int,
            false,
            true,
            &[Value::Null, Value::Int(1)],
            &[],
        );
        assert_eq!(v, Value::BigInt(1));
        let (kind, ret) = resolve_aggregate("COUNT", &[], false).unwrap();
        let mut acc = new_accumulator(kind, &ret, false, true).unwrap();
        acc.add(&Value::Null).unwrap();
        acc.add(&Value::Null).unwrap();
        assert_eq!(acc.value(), Value::BigInt(2));
    }

    #[test]
    fn sum_back_to_no_rows_is_null() {
        let (_, v) = run(
            "SUM",
            DataType::BigInt,
            false,
            false,
            &ints(&[3]),
            &ints(&[3]),
        );
        assert!(v.is_null());
    }

    #[test]
    fn avg_truncates_toward_zero_and_keeps_type() {
        let (_, v) = run("AVG", DataType::Int, false, true, &ints(&[-1, -2]), &[]);
        assert_eq!(v, Value::Int(-1));
        let (_, v) = run(
            "AVG",
            DataType::TinyInt,
            false,
            true,
            &[Value::TinyInt(100), Value::TinyInt(101)],
            &[],
        );
        assert_eq!(v, Value::TinyInt(100));
        let (_, v) = run(
            "AVG",
            DataType::Int,
            false,
            false,
            &ints(&[1, 2, 9]),
            &ints(&[9]),
        );
        assert_eq!(v, Value::Int(1));
    }

    #[test]
    fn avg_decimal_rounds_half_up_at_scale_six() {
        // (1.00 + 2.00 + 2.00) / 3 = 1.666666666... -> 1.666667
        let d = |u| Value::Decimal(u, 2);
        let (ret, v) = run(
            "AVG",
            DataType::Decimal(10, 2),
            false,
            true,
            &[d(100), d(200), d(200)],
            &[],
        );
        assert_eq!(ret, DataType::Decimal(38, 6));
        assert_eq!(v, Value::Decimal(1_666_667, 6));
        // Negative ties round away from zero: -0.000001 / 2 -> -0.000001 (HALF_UP).
        let (_, v) = run(
            "AVG",
            DataType::Decimal(10, 6),
            false,
            true,
            &[Value::Decimal(-1, 6), Value::Decimal(0, 6)],
            &[],
        );
        assert_eq!(v, Value::Decimal(-1, 6));
        let (_, v) = run(
            "SUM",
            DataType::Decimal(10, 2),
            false,
            true,
            &[d(105), d(250)],
            &[],
        );
        assert_eq!(v, Value::Decimal(355, 2));
    }

    #[test]
    fn avg_double_and_float() {
        let (_, v) = run(
            "AVG",
            DataType::Double,
            false,
            true,
            &[Value::Double(1.0), Value::Null, Value::Double(2.0)],
            &[],
        );
        assert_eq!(v, Value::Double(1.5));
        let (_, v) = run(
            "AVG",
            DataType::Float,
            false,
            true,
            &[Value::Float(1.0), Value::Float(2.0)],
            &[],
        );
        assert_eq!(v, Value::Float(1.5));
    }

    #[test]
    fn min_max_with_and_without_retraction() {
        let (_, v) = run("MAX", DataType::Int, false, true, &ints(&[3, 9, 1]), &[]);
        assert_eq!(v, Value::Int(9));
        let (_, v) = run(
            "MAX",
            DataType::Int,
            false,
            false,
            &ints(&[3, 9, 1, 9]),
            &ints(&[9]),
        );
        assert_eq!(v, Value::Int(9));
        let (_, v) = run(
            "MAX",
            DataType::Int,
            false,
            false,
            &ints(&[3, 9, 1, 9]),
            &ints(&[9, 9]),
        );
        assert_eq!(v, Value::Int(3));
        let (_, v) = run("MIN", DataType::Int, false, false, &ints(&[3]), &ints(&[3]));
        assert!(v.is_null());
        let s = |x: &str| Value::string(x);
        let (_, v) = run(
            "MAX",
            DataType::STRING,
            false,
            true,
            &[s("88 "), s("A-77"), s("0009")],
            &[],
        );
        assert_eq!(v, s("A-77"));
        // An append-only accumulator refuses a retraction rather than compute garbage.
        let (kind, ret) = resolve_aggregate("MIN", &[DataType::Int], false).unwrap();
        let mut acc = new_accumulator(kind, &ret, false, true).unwrap();
        acc.add(&Value::Int(1)).unwrap();
        assert!(acc.retract(&Value::Int(1)).is_err());
    }

    #[test]
    fn count_and_sum_distinct_with_retraction() {
        let (_, v) = run(
            "COUNT",
            DataType::Int,
            true,
            false,
            &ints(&[1, 1, 2, 3]),
            &ints(&[1]),
        );
        assert_eq!(v, Value::BigInt(3));
        let (_, v) = run(
            "COUNT",
            DataType::Int,
            true,
            false,
            &ints(&[1, 1, 2, 3]),
            &ints(&[1, 1, 3]),
        );
        assert_eq!(v, Value::BigInt(1));
        let (_, v) = run("SUM", DataType::Int, true, false, &ints(&[5, 5, 7]), &[]);
        assert_eq!(v, Value::Int(12));
    }

    #[test]
    fn first_and_last_value() {
        let (_, v) = run(
            "FIRST_VALUE",
            DataType::Int,
            false,
            true,
            &[Value::Null, Value::Int(4), Value::Int(5)],
            &[],
        );
        assert_eq!(v, Value::Int(4));
        let (_, v) = run(
            "LAST_VALUE",
            DataType::Int,
            false,
            true,
            &ints(&[4, 5]),
            &[],
        );
        assert_eq!(v, Value::Int(5));
        let (_, v) = run(
            "LAST_VALUE",
            DataType::Int,
            false,
            false,
            &ints(&[4, 5]),
            &ints(&[5]),
        );
        assert_eq!(v, Value::Int(4));
    }

    #[test]
    fn variance_family() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0].map(Value::Double);
        let (_, v) = run("VAR_POP", DataType::Double, false, true, &xs, &[]);
        assert_eq!(v, Value::Double(4.0));
        let (_, v) = run("STDDEV_POP", DataType::Double, false, true, &xs, &[]);
        assert_eq!(v, Value::Double(2.0));
        let (_, v) = run("VAR_SAMP", DataType::Double, false, true, &xs[..1], &[]);
        assert!(v.is_null());
        let (_, v) = run(
            "STDDEV_SAMP",
            DataType::Int,
            false,
            true,
            &ints(&[1, 2, 3, 4]),
            &[],
        );
        // Integer arithmetic as Calcite reduces it: (30 - 100 / 4) / 3 = 1, sqrt -> 1.
        assert_eq!(v, Value::Int(1));
    }

    #[test]
    fn merge_combines_states() {
        let (kind, ret) = resolve_aggregate("COUNT", &[DataType::Int], true).unwrap();
        let mut a = new_accumulator(kind, &ret, true, true).unwrap();
        let mut b = a.clone();
        a.add(&Value::Int(1)).unwrap();
        b.add(&Value::Int(1)).unwrap();
        b.add(&Value::Int(2)).unwrap();
        a.merge(b).unwrap();
        assert_eq!(a.value(), Value::BigInt(2));
        let (kind, ret) = resolve_aggregate("MIN", &[DataType::Int], false).unwrap();
        let mut a = new_accumulator(kind, &ret, false, true).unwrap();
        let mut b = a.clone();
        a.add(&Value::Int(5)).unwrap();
        b.add(&Value::Int(3)).unwrap();
        a.merge(b).unwrap();
        assert_eq!(a.value(), Value::Int(3));
    }

    #[test]
    fn filter_and_missing_columns() {
        let calls = vec![
            AggCall {
                kind: AggregateKind::CountStar,
                arg: None,
                distinct: false,
                ret: DataType::BigInt,
                filter: Some(1),
            },
            AggCall {
                kind: AggregateKind::Sum,
                arg: Some(0),
                distinct: false,
                ret: DataType::Int,
                filter: None,
            },
        ];
        let aggs = AggregateCalls::new(calls, true).unwrap();
        let mut accs = aggs.create();
        aggs.accumulate(&mut accs, &[Value::Int(2), Value::Boolean(true)], false)
            .unwrap();
        aggs.accumulate(&mut accs, &[Value::Int(3), Value::Null], false)
            .unwrap();
        let mut out = Vec::new();
        aggs.values_into(&accs, &mut out);
        assert_eq!(out, vec![Value::BigInt(1), Value::Int(5)]);
        assert!(aggs.accumulate(&mut accs, &[Value::Int(3)], false).is_err());
    }
}
