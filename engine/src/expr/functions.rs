//! Scalar functions and operators: overload resolution (argument types in, implicit casts and
//! result type out) and evaluation, with Flink 2.3's semantics.
//!
//! Resolution ([`resolve`], [`resolve_with_literals`]) checks the argument types, picks the
//! computation domain (e.g. `Add(Num::Decimal)`), tells the binder which implicit casts to insert
//! (`Resolved::arg_types`) and computes the result type with Flink's rules (DECIMAL precision and
//! scale of `+ - * / %`, `BIGINT % INT` is INT, ROUND of DECIMAL(p, s) to r digits is
//! DECIMAL(1 + p - s + r, r), ...). After the binder's casts, [`eval`] can rely on every argument
//! having its `arg_types` type (or being NULL) and never re-checks types on the hot path.
//!
//! Literal arguments are compiled once: [`specialize`] (called by [`resolve_with_literals`])
//! turns a literal LIKE or regex pattern into a compiled regex, a literal date-format pattern
//! into parsed items and a literal time unit (`EXTRACT`, `FLOOR_TIME`, `TIMESTAMPADD`, ...) into
//! a `TimeUnit`. A pattern that is not a literal is compiled per call through a small
//! per-thread cache, so it is correct but slower.
//!
//! Evaluation: a NULL argument gives NULL except for `CONCAT_WS` (skips NULLs) and `IF`.
//! Integer arithmetic wraps like Java (`INT` overflow wraps); `INT / 0` fails with `/ by zero`,
//! `DECIMAL / 0` with `Division by zero`; `DOUBLE / 0` is Infinity; a DECIMAL result that does not
//! fit its precision is NULL, as in Flink. Regular expressions use the `regex` crate, which
//! accepts Java's syntax except backreferences and look-around (such a pattern gives NULL, as an
//! invalid pattern does in Flink).
//!
//! Time zone: every TIMESTAMP_LTZ conversion (EXTRACT, DATE_FORMAT, FLOOR, UNIX_TIMESTAMP,
//! FROM_UNIXTIME, CURRENT_TIMESTAMP vs LOCALTIMESTAMP, ...) uses UTC as the session time zone.
//! The current-time functions read the system clock; they are not deterministic.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, Mutex};

use regex::Regex;

use crate::error::{EngineError, Result};
use crate::expr::cast::{self, pow10};
use crate::expr::coerce;
use crate::expr::format::{self, MILLIS_PER_DAY};
use crate::types::{DataType, STRING_MAX};
use crate::value::Value;

/// The computation domain of an arithmetic function; arguments are cast to it first (except
/// integer `MOD`, computed in 64 bits and narrowed to the divisor's type as Flink does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Num {
    /// Any integer width: computed in i64 and wrapped to the result type (Java semantics).
    Integer,
    Float,
    Double,
    Decimal,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A time unit of EXTRACT, FLOOR/CEIL TO, TIMESTAMPADD and TIMESTAMPDIFF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Millennium,
    Century,
    Decade,
    Year,
    IsoYear,
    Quarter,
    Month,
    Week,
    Day,
    DayOfWeek,
    IsoDayOfWeek,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
    Epoch,
}

impl TimeUnit {
    /// Parses a unit name as the binder passes it (`'YEAR'`, `'SQL_TSI_DAY'`, `'DOW'`, ...).
    pub fn parse(name: &str) -> Option<TimeUnit> {
        let upper = name.trim().to_ascii_uppercase();
        let n = upper.strip_prefix("SQL_TSI_").unwrap_or(&upper);
        Some(match n {
            "MILLENNIUM" => TimeUnit::Millennium,
            "CENTURY" => TimeUnit::Century,
            "DECADE" => TimeUnit::Decade,
            "YEAR" => TimeUnit::Year,
            "ISOYEAR" => TimeUnit::IsoYear,
            "QUARTER" => TimeUnit::Quarter,
            "MONTH" => TimeUnit::Month,
            "WEEK" => TimeUnit::Week,
            "DAY" | "DAYOFMONTH" => TimeUnit::Day,
            "DOW" | "DAYOFWEEK" => TimeUnit::DayOfWeek,
            "ISODOW" => TimeUnit::IsoDayOfWeek,
            "DOY" | "DAYOFYEAR" => TimeUnit::DayOfYear,
            "HOUR" => TimeUnit::Hour,
            "MINUTE" => TimeUnit::Minute,
            "SECOND" => TimeUnit::Second,
            "MILLISECOND" | "FRAC_SECOND" => TimeUnit::Millisecond,
            "MICROSECOND" => TimeUnit::Microsecond,
            "NANOSECOND" => TimeUnit::Nanosecond,
            "EPOCH" => TimeUnit::Epoch,
            _ => return None,
        })
    }

    /// The unit's length in milliseconds when it is fixed (up to WEEK).
    fn fixed_millis(self) -> Option<i64> {
        Some(match self {
            TimeUnit::Millisecond => 1,
            TimeUnit::Second => 1000,
            TimeUnit::Minute => 60_000,
            TimeUnit::Hour => 3_600_000,
            TimeUnit::Day => MILLIS_PER_DAY,
            TimeUnit::Week => 7 * MILLIS_PER_DAY,
            _ => return None,
        })
    }

    /// Months in a calendar unit (MONTH, QUARTER, YEAR, ...).
    fn months(self) -> Option<i64> {
        Some(match self {
            TimeUnit::Month => 1,
            TimeUnit::Quarter => 3,
            TimeUnit::Year => 12,
            TimeUnit::Decade => 120,
            TimeUnit::Century => 1200,
            TimeUnit::Millennium => 12_000,
            _ => return None,
        })
    }

    /// True for units below a day (adding one to a DATE gives a TIMESTAMP).
    fn is_time_of_day(self) -> bool {
        matches!(
            self,
            TimeUnit::Hour
                | TimeUnit::Minute
                | TimeUnit::Second
                | TimeUnit::Millisecond
                | TimeUnit::Microsecond
                | TimeUnit::Nanosecond
        )
    }
}

/// TRIM's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimMode {
    Both,
    Leading,
    Trailing,
}

/// A compiled regular expression, compared by its source text.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: Arc<str>,
    regex: Option<Regex>,
}

impl Pattern {
    fn new(source: &str, regex: Option<Regex>) -> Self {
        Pattern {
            source: Arc::from(source),
            regex,
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A parsed Java date-time pattern (`yyyy-MM-dd HH:mm:ss`).
#[derive(Clone, Debug, PartialEq)]
pub struct DateFormat {
    items: Vec<FmtItem>,
}

#[derive(Clone, Debug, PartialEq)]
enum FmtItem {
    Literal(String),
    /// A pattern letter and how many times it repeats.
    Field(char, usize),
}

/// Java's `Random` (a 48-bit LCG), so `RAND(seed)` gives Flink's sequence.
#[derive(Debug)]
pub struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULT: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULT) & Self::MASK,
        }
    }

    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> (48 - bits)) as i32
    }

    fn next_double(&mut self) -> f64 {
        let hi = i64::from(self.next(26)) << 27;
        let lo = i64::from(self.next(27));
        (hi + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn next_int(&mut self, bound: i32) -> i32 {
        if bound <= 0 {
            return 0;
        }
        if bound & (-bound) == bound {
            return ((i64::from(bound) * i64::from(self.next(31))) >> 31) as i32;
        }
        loop {
            let bits = self.next(31);
            let val = bits % bound;
            if bits - val + (bound - 1) >= 0 {
                return val;
            }
        }
    }
}

/// A seeded random generator shared by the copies of one `RAND(seed)` call.
#[derive(Clone, Debug)]
pub struct SeededRandom {
    seed: i64,
    state: Arc<Mutex<JavaRandom>>,
}

impl PartialEq for SeededRandom {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed
    }
}

/// A resolved scalar function or operator.
#[derive(Clone, Debug, PartialEq)]
pub enum ScalarFunction {
    // Arithmetic.
    Add(Num),
    Sub(Num),
    Mul(Num),
    Div(Num),
    Mod(Num),
    Neg(Num),
    /// DATE/TIME/TIMESTAMP/interval `+` interval (either order), interval `+` interval.
    AddTemporal,
    SubTemporal,
    /// interval `*` number (either order).
    MulInterval,
    /// interval `/` number.
    DivInterval,
    NegInterval,
    Cmp(CmpOp),
    // Strings.
    /// `||` and CONCAT: NULL when any argument is NULL.
    Concat,
    ConcatWs,
    /// LIKE with an optional compiled pattern (a literal pattern and escape).
    Like(Option<Arc<Pattern>>),
    SimilarTo(Option<Arc<Pattern>>),
    Upper,
    Lower,
    Substring,
    CharLength,
    /// TRIM(mode, chars, string); the mode is known when it was a literal.
    Trim(Option<TrimMode>),
    LTrim,
    RTrim,
    Replace,
    RegexpExtract(Option<Arc<Pattern>>),
    RegexpReplace(Option<Arc<Pattern>>),
    Regexp(Option<Arc<Pattern>>),
    SplitIndex,
    Position,
    Locate,
    InitCap,
    Reverse,
    LPad,
    RPad,
    Repeat,
    Left,
    Right,
    Ascii,
    Chr,
    Md5,
    Sha256,
    ToBase64,
    FromBase64,
    IsDigit,
    IsAlpha,
    IsDecimal,
    // Math.
    Abs(Num),
    Floor(Num),
    Ceil(Num),
    Round(Num),
    Truncate(Num),
    Sign(Num),
    Power,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Log2,
    Log,
    Pi,
    E,
    Rand(Option<SeededRandom>),
    RandInteger(Option<SeededRandom>),
    Sin,
    Cos,
    Tan,
    Cot,
    Asin,
    Acos,
    Atan,
    Atan2,
    Sinh,
    Cosh,
    Tanh,
    Degrees,
    Radians,
    // Temporal.
    /// EXTRACT(unit, value); also YEAR(), MONTH(), HOUR(), ... with the unit fixed.
    Extract(Option<TimeUnit>),
    FloorTime(Option<TimeUnit>),
    CeilTime(Option<TimeUnit>),
    TimestampAdd(Option<TimeUnit>),
    TimestampDiff(Option<TimeUnit>),
    DateFormat(Option<Arc<DateFormat>>),
    ToTimestamp(Option<Arc<DateFormat>>),
    ToDate(Option<Arc<DateFormat>>),
    ToTimestampLtz,
    UnixTimestamp(Option<Arc<DateFormat>>),
    FromUnixtime(Option<Arc<DateFormat>>),
    CurrentTimestamp,
    LocalTimestamp,
    CurrentDate,
    CurrentTime,
    // Conditional.
    If,
    Greatest,
    Least,
    // Structured types.
    /// The field at this position of a ROW value (`col.field`); NULL for a NULL row.
    RowField(usize),
}

impl ScalarFunction {
    /// False for functions whose result changes between calls (CURRENT_TIMESTAMP, RAND).
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            ScalarFunction::Rand(_)
                | ScalarFunction::RandInteger(_)
                | ScalarFunction::CurrentTimestamp
                | ScalarFunction::LocalTimestamp
                | ScalarFunction::CurrentDate
                | ScalarFunction::CurrentTime
                | ScalarFunction::UnixTimestamp(_)
        )
    }

    /// True when a NULL argument makes the result NULL without calling the function.
    fn strict(&self) -> bool {
        !matches!(
            self,
            ScalarFunction::ConcatWs | ScalarFunction::If | ScalarFunction::Trim(_)
        )
    }
}

/// The outcome of resolving a call: which function, the type each argument must be cast to
/// first (the binder inserts those casts), and the result type.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub func: ScalarFunction,
    pub arg_types: Vec<DataType>,
    pub ret: DataType,
}

/// Every function and operator name [`resolve`] knows, for suggestions and documentation.
pub fn function_names() -> &'static [&'static str] {
    &[
        "+",
        "-",
        "*",
        "/",
        "%",
        "NEG",
        "=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "||",
        "LIKE",
        "SIMILAR TO",
        "ABS",
        "ACOS",
        "ASCII",
        "ASIN",
        "ATAN",
        "ATAN2",
        "CEIL",
        "CEILING",
        "CEIL_TIME",
        "CHAR_LENGTH",
        "CHARACTER_LENGTH",
        "CHR",
        "CONCAT",
        "CONCAT_WS",
        "COS",
        "COSH",
        "COT",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "CURRENT_TIMESTAMP",
        "DATE_FORMAT",
        "DAYOFMONTH",
        "DAYOFWEEK",
        "DAYOFYEAR",
        "DEGREES",
        "E",
        "EXP",
        "EXTRACT",
        "FLOOR",
        "FLOOR_TIME",
        "FROM_BASE64",
        "FROM_UNIXTIME",
        "GREATEST",
        "HOUR",
        "IF",
        "INITCAP",
        "IS_ALPHA",
        "IS_DECIMAL",
        "IS_DIGIT",
        "LEAST",
        "LEFT",
        "LN",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "LOCATE",
        "LOG",
        "LOG10",
        "LOG2",
        "LOWER",
        "LPAD",
        "LTRIM",
        "MD5",
        "MINUTE",
        "MOD",
        "MONTH",
        "NOW",
        "PI",
        "POSITION",
        "POWER",
        "QUARTER",
        "RADIANS",
        "RAND",
        "RAND_INTEGER",
        "REGEXP",
        "REGEXP_EXTRACT",
        "REGEXP_REPLACE",
        "REPEAT",
        "REPLACE",
        "REVERSE",
        "RIGHT",
        "ROUND",
        "RPAD",
        "RTRIM",
        "SECOND",
        "SHA256",
        "SIGN",
        "SIN",
        "SINH",
        "SPLIT_INDEX",
        "SQRT",
        "SUBSTR",
        "SUBSTRING",
        "TAN",
        "TANH",
        "TIMESTAMPADD",
        "TIMESTAMPDIFF",
        "TO_BASE64",
        "TO_DATE",
        "TO_TIMESTAMP",
        "TO_TIMESTAMP_LTZ",
        "TRIM",
        "TRUNCATE",
        "UNIX_TIMESTAMP",
        "UPPER",
        "WEEK",
        "YEAR",
    ]
}

/// True when `name` (upper case) is a function or operator [`resolve`] knows.
pub fn is_known_function(name: &str) -> bool {
    function_names().contains(&name)
}

/// Calcite's family name of a type, as its "No match found" message shows it.
fn family(t: &DataType) -> &'static str {
    match t {
        DataType::Null => "NULL",
        DataType::Boolean => "BOOLEAN",
        t if t.is_numeric() => "NUMERIC",
        DataType::Char(_) | DataType::Varchar(_) => "CHARACTER",
        DataType::Date => "DATE",
        DataType::Time(_) => "TIME",
        DataType::Timestamp(_) => "TIMESTAMP",
        DataType::TimestampLtz(_) => "TIMESTAMP_WITH_LOCAL_TIME_ZONE",
        DataType::IntervalDayTime => "INTERVAL_DAY_TIME",
        _ => "INTERVAL_YEAR_MONTH",
    }
}

fn unknown_function(name: &str, args: &[DataType]) -> EngineError {
    let list: Vec<String> = args.iter().map(|t| format!("<{}>", family(t))).collect();
    EngineError::type_error(format!(
        "No match found for function signature {name}({})",
        list.join(", ")
    ))
}

/// Resolves a function or operator by its SQL name (upper case: `UPPER`, `=`, `+`, ...).
/// Functions whose result type depends on a literal argument (ROUND of a DECIMAL, TIMESTAMPADD
/// of an hour to a DATE) assume the common case; [`resolve_with_literals`] is exact.
pub fn resolve(name: &str, args: &[DataType]) -> Result<Resolved> {
    resolve_with_literals(name, args, &[])
}

/// Like [`resolve`], given the values of the arguments that are literals (`literals[i]` is
/// `Some` for a literal argument `i`; a shorter slice means "not literal"): the result type can
/// then depend on them (ROUND(DECIMAL(10, 2), 1) is DECIMAL(10, 1)) and the function comes back
/// [`specialize`]d (patterns compiled, units parsed).
pub fn resolve_with_literals(
    name: &str,
    args: &[DataType],
    literals: &[Option<Value>],
) -> Result<Resolved> {
    let lit = |i: usize| literals.get(i).and_then(|v| v.as_ref());
    let lit_str = |i: usize| lit(i).and_then(Value::as_str);
    let lit_int = |i: usize| lit(i).and_then(Value::as_i64);
    let resolved = resolve_inner(name, args, &lit_str, &lit_int)?;
    let func = if literals.iter().any(Option::is_some) {
        specialize(&resolved.func, literals)
    } else {
        resolved.func
    };
    Ok(Resolved { func, ..resolved })
}

fn is_str(t: &DataType) -> bool {
    t.is_string() || matches!(t, DataType::Null)
}
fn is_int(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Null)
}
fn is_num(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Null)
}
fn is_bool(t: &DataType) -> bool {
    matches!(t, DataType::Boolean | DataType::Null)
}
fn is_datetime(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date
            | DataType::Timestamp(_)
            | DataType::TimestampLtz(_)
            | DataType::Time(_)
            | DataType::Null
    )
}

/// The type of a NULL literal operand, taken from the other operand.
fn or_other(t: &DataType, other: &DataType) -> DataType {
    if matches!(t, DataType::Null) {
        if matches!(other, DataType::Null) {
            DataType::Int
        } else {
            other.clone()
        }
    } else {
        t.clone()
    }
}

/// Flink's `adjustPrecisionScale`: keeps a decimal within 38 digits, sacrificing scale (down to
/// 6 at least) before integer digits.
fn adjust_decimal(precision: i32, scale: i32) -> DataType {
    if precision <= 38 {
        return DataType::Decimal(precision.max(1) as u8, scale.max(0) as u8);
    }
    let int_digits = precision - scale;
    let min_scale = scale.min(6);
    let scale = (38 - int_digits).max(min_scale);
    DataType::Decimal(38, scale.clamp(0, 38) as u8)
}

fn string_len(t: &DataType) -> u32 {
    match t {
        DataType::Char(n) | DataType::Varchar(n) => *n,
        _ => STRING_MAX,
    }
}

fn num_kind(t: &DataType) -> Num {
    match t {
        DataType::Float => Num::Float,
        DataType::Double => Num::Double,
        DataType::Decimal(..) => Num::Decimal,
        _ => Num::Integer,
    }
}

type LitStr<'a> = dyn Fn(usize) -> Option<&'a str> + 'a;
type LitInt<'a> = dyn Fn(usize) -> Option<i64> + 'a;

/// Resolves binary arithmetic on two numbers.
fn resolve_arith(name: &str, a: &DataType, b: &DataType) -> Result<Resolved> {
    let a = or_other(a, b);
    let b = or_other(b, &a);
    let ctor: fn(Num) -> ScalarFunction = match name {
        "+" => ScalarFunction::Add,
        "-" => ScalarFunction::Sub,
        "*" => ScalarFunction::Mul,
        "/" => ScalarFunction::Div,
        _ => ScalarFunction::Mod,
    };
    let is_mod = matches!(name, "%" | "MOD");
    let common = coerce::common_numeric(&a, &b)
        .ok_or_else(|| EngineError::no_signature(name, &[a.clone(), b.clone()]))?;
    match common {
        DataType::Decimal(..) => {
            let (p1, s1) = coerce::decimal_of(&a).unwrap_or((38, 0));
            let (p2, s2) = coerce::decimal_of(&b).unwrap_or((38, 0));
            let (p1, s1, p2, s2) = (i32::from(p1), i32::from(s1), i32::from(p2), i32::from(s2));
            let ret = match name {
                "+" | "-" => {
                    let scale = s1.max(s2);
                    adjust_decimal((p1 - s1).max(p2 - s2) + scale + 1, scale)
                }
                "*" => adjust_decimal(p1 + p2 + 1, s1 + s2),
                "/" => {
                    let scale = 6.max(s1 + p2 + 1);
                    adjust_decimal(p1 - s1 + s2 + scale, scale)
                }
                _ => {
                    let scale = s1.max(s2);
                    adjust_decimal((p1 - s1).min(p2 - s2) + scale, scale)
                }
            };
            let da = DataType::Decimal(p1 as u8, s1 as u8);
            let db = DataType::Decimal(p2 as u8, s2 as u8);
            Ok(Resolved {
                func: ctor(Num::Decimal),
                arg_types: vec![da, db],
                ret,
            })
        }
        t if t.is_integer() && is_mod => Ok(Resolved {
            // Calcite's MOD returns the divisor's type; the remainder always fits it.
            func: ctor(Num::Integer),
            arg_types: vec![a, b.clone()],
            ret: b,
        }),
        t => Ok(Resolved {
            func: ctor(num_kind(&t)),
            arg_types: vec![t.clone(), t.clone()],
            ret: t,
        }),
    }
}

/// Resolves `+`/`-` where one side is temporal or an interval.
fn resolve_temporal_arith(name: &str, a: &DataType, b: &DataType) -> Option<Resolved> {
    use DataType::*;
    let plus = name == "+";
    let ret = match (a, b) {
        (Date | Time(_) | Timestamp(_) | TimestampLtz(_), IntervalDayTime | IntervalYearMonth) => {
            if matches!((a, b), (Time(_), IntervalYearMonth)) {
                return None;
            }
            a.clone()
        }
        (IntervalDayTime | IntervalYearMonth, Date | Time(_) | Timestamp(_) | TimestampLtz(_))
            if plus =>
        {
            b.clone()
        }
        (IntervalDayTime, IntervalDayTime) => IntervalDayTime,
        (IntervalYearMonth, IntervalYearMonth) => IntervalYearMonth,
        _ => return None,
    };
    Some(Resolved {
        func: if plus {
            ScalarFunction::AddTemporal
        } else {
            ScalarFunction::SubTemporal
        },
        arg_types: vec![a.clone(), b.clone()],
        ret,
    })
}

fn ok(func: ScalarFunction, arg_types: Vec<DataType>, ret: DataType) -> Result<Resolved> {
    Ok(Resolved {
        func,
        arg_types,
        ret,
    })
}

fn resolve_inner(
    name: &str,
    args: &[DataType],
    lit_str: &LitStr<'_>,
    lit_int: &LitInt<'_>,
) -> Result<Resolved> {
    use DataType as T;
    use ScalarFunction as F;
    let bad = || EngineError::no_signature(name, args);
    let same = || args.to_vec();
    let n = args.len();
    let a0 = args.first().cloned().unwrap_or(T::Null);
    let a1 = args.get(1).cloned().unwrap_or(T::Null);
    match name {
        "+" | "-" | "*" | "/" | "%" | "MOD" if n == 2 => {
            if is_num(&a0) && is_num(&a1) {
                return resolve_arith(name, &a0, &a1);
            }
            if matches!(name, "+" | "-") {
                if let Some(r) = resolve_temporal_arith(name, &a0, &a1) {
                    return Ok(r);
                }
            }
            match (name, &a0, &a1) {
                ("*", t, k) | ("*", k, t) if t.is_interval() && is_num(k) => {
                    ok(F::MulInterval, same(), t.clone())
                }
                ("/", t, k) if t.is_interval() && is_num(k) => {
                    ok(F::DivInterval, same(), t.clone())
                }
                _ => Err(bad()),
            }
        }
        "NEG" | "-" if n == 1 => {
            if is_num(&a0) {
                let t = or_other(&a0, &T::Int);
                ok(F::Neg(num_kind(&t)), vec![t.clone()], t)
            } else if a0.is_interval() {
                ok(F::NegInterval, same(), a0)
            } else {
                Err(bad())
            }
        }
        "=" | "<>" | "<" | "<=" | ">" | ">=" if n == 2 => {
            let op = match name {
                "=" => CmpOp::Eq,
                "<>" => CmpOp::NotEq,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::LtEq,
                ">" => CmpOp::Gt,
                _ => CmpOp::GtEq,
            };
            let t = coerce::comparison_type(&a0, &a1).ok_or_else(|| {
                if (a0.is_string() && a1.is_numeric()) || (a0.is_numeric() && a1.is_string()) {
                    EngineError::type_error(format!(
                        "implicit type conversion between {} and {} is not supported now",
                        sql_type_name(&a0),
                        sql_type_name(&a1)
                    ))
                } else {
                    bad()
                }
            })?;
            // Numbers, strings and timestamps compare across widths and kinds without a cast
            // (see `compare`); anything else is cast to the comparison type.
            let no_cast = |x: &DataType| x.is_numeric() || x.is_string() || x.is_timestamp();
            let arg_types = if args.iter().all(|x| no_cast(x) || matches!(x, T::Null)) {
                same()
            } else {
                vec![t.clone(), t]
            };
            ok(F::Cmp(op), arg_types, T::Boolean)
        }
        "||" if n == 2 && is_str(&a0) && is_str(&a1) => {
            let len = string_len(&a0)
                .saturating_add(string_len(&a1))
                .min(STRING_MAX);
            let ret = match (&a0, &a1) {
                (T::Char(_), T::Char(_)) => T::Char(len),
                _ => T::Varchar(len),
            };
            ok(F::Concat, same(), ret)
        }
        "CONCAT" if n >= 1 && args.iter().all(is_str) => ok(F::Concat, same(), T::STRING),
        "CONCAT_WS" if n >= 1 && args.iter().all(is_str) => ok(F::ConcatWs, same(), T::STRING),
        "LIKE" if (n == 2 || n == 3) && args.iter().all(is_str) => {
            ok(F::Like(None), same(), T::Boolean)
        }
        "SIMILAR TO" if (n == 2 || n == 3) && args.iter().all(is_str) => {
            ok(F::SimilarTo(None), same(), T::Boolean)
        }
        "UPPER" | "LOWER" if n == 1 && is_str(&a0) => {
            let ret = if a0.is_string() {
                a0.clone()
            } else {
                T::STRING
            };
            ok(
                if name == "UPPER" { F::Upper } else { F::Lower },
                same(),
                ret,
            )
        }
        "SUBSTRING" | "SUBSTR"
            if (n == 2 || n == 3) && is_str(&a0) && args[1..].iter().all(is_int) =>
        {
            ok(F::Substring, same(), T::Varchar(string_len(&a0)))
        }
        "CHAR_LENGTH" | "CHARACTER_LENGTH" if n == 1 && is_str(&a0) => {
            ok(F::CharLength, same(), T::Int)
        }
        "TRIM" if n == 3 && args.iter().all(is_str) => {
            let mode = lit_str(0).and_then(parse_trim_mode);
            ok(F::Trim(mode), same(), T::STRING)
        }
        "LTRIM" | "RTRIM" if (n == 1 || n == 2) && args.iter().all(is_str) => ok(
            if name == "LTRIM" { F::LTrim } else { F::RTrim },
            same(),
            T::STRING,
        ),
        "REPLACE" if n == 3 && args.iter().all(is_str) => ok(F::Replace, same(), T::STRING),
        "REGEXP_EXTRACT"
            if (n == 2 && args.iter().all(is_str))
                || (n == 3 && is_str(&a0) && is_str(&a1) && is_int(&args[2])) =>
        {
            ok(F::RegexpExtract(None), same(), T::STRING)
        }
        "REGEXP_REPLACE" if n == 3 && args.iter().all(is_str) => {
            ok(F::RegexpReplace(None), same(), T::STRING)
        }
        "REGEXP" if n == 2 && args.iter().all(is_str) => ok(F::Regexp(None), same(), T::Boolean),
        "SPLIT_INDEX"
            if n == 3 && is_str(&a0) && (is_str(&a1) || is_int(&a1)) && is_int(&args[2]) =>
        {
            ok(F::SplitIndex, same(), T::STRING)
        }
        "POSITION" if n == 2 && args.iter().all(is_str) => ok(F::Position, same(), T::Int),
        "LOCATE"
            if (n == 2 && args.iter().all(is_str))
                || (n == 3 && is_str(&a0) && is_str(&a1) && is_int(&args[2])) =>
        {
            ok(F::Locate, same(), T::Int)
        }
        "INITCAP" | "REVERSE" | "MD5" | "SHA256" | "TO_BASE64" | "FROM_BASE64"
            if n == 1 && is_str(&a0) =>
        {
            let f = match name {
                "INITCAP" => F::InitCap,
                "REVERSE" => F::Reverse,
                "MD5" => F::Md5,
                "SHA256" => F::Sha256,
                "TO_BASE64" => F::ToBase64,
                _ => F::FromBase64,
            };
            ok(f, same(), T::STRING)
        }
        "IS_DIGIT" | "IS_ALPHA" | "IS_DECIMAL" if n == 1 && is_str(&a0) => {
            let f = match name {
                "IS_DIGIT" => F::IsDigit,
                "IS_ALPHA" => F::IsAlpha,
                _ => F::IsDecimal,
            };
            ok(f, same(), T::Boolean)
        }
        "LPAD" | "RPAD" if n == 3 && is_str(&a0) && is_int(&a1) && is_str(&args[2]) => ok(
            if name == "LPAD" { F::LPad } else { F::RPad },
            same(),
            T::STRING,
        ),
        "REPEAT" | "LEFT" | "RIGHT" if n == 2 && is_str(&a0) && is_int(&a1) => {
            let f = match name {
                "REPEAT" => F::Repeat,
                "LEFT" => F::Left,
                _ => F::Right,
            };
            ok(f, same(), T::STRING)
        }
        "ASCII" if n == 1 && is_str(&a0) => ok(F::Ascii, same(), T::Int),
        "CHR" if n == 1 && is_int(&a0) => ok(F::Chr, same(), T::STRING),
        // Math.
        "ABS" if n == 1 && is_num(&a0) => {
            let t = or_other(&a0, &T::Int);
            ok(F::Abs(num_kind(&t)), vec![t.clone()], t)
        }
        "SIGN" if n == 1 && is_num(&a0) => {
            let t = or_other(&a0, &T::Int);
            ok(F::Sign(num_kind(&t)), vec![t.clone()], t)
        }
        "FLOOR" | "CEIL" | "CEILING" if n == 1 && is_num(&a0) => {
            let t = or_other(&a0, &T::Double);
            let ret = match t {
                T::Decimal(p, _) => T::Decimal(p, 0),
                _ => t.clone(),
            };
            let f = if name == "FLOOR" {
                F::Floor(num_kind(&t))
            } else {
                F::Ceil(num_kind(&t))
            };
            ok(f, vec![t], ret)
        }
        "ROUND" | "TRUNCATE" if (n == 1 || n == 2) && is_num(&a0) && (n == 1 || is_int(&a1)) => {
            let t = or_other(&a0, &T::Double);
            let digits = if n == 1 { Some(0) } else { lit_int(1) };
            let ret = match t {
                T::Decimal(p, s) => {
                    let r = digits.unwrap_or(i64::from(s));
                    let (p, s) = (i64::from(p), i64::from(s));
                    if r >= s {
                        t.clone()
                    } else if r < 0 {
                        T::Decimal((1 + p - s).clamp(1, 38) as u8, 0)
                    } else {
                        T::Decimal((1 + p - s + r).clamp(1, 38) as u8, r as u8)
                    }
                }
                _ => t.clone(),
            };
            let k = num_kind(&t);
            let f = if name == "ROUND" {
                F::Round(k)
            } else {
                F::Truncate(k)
            };
            let mut arg_types = vec![t];
            if n == 2 {
                arg_types.push(a1.clone());
            }
            ok(f, arg_types, ret)
        }
        "POWER" | "ATAN2" if n == 2 && is_num(&a0) && is_num(&a1) => ok(
            if name == "POWER" { F::Power } else { F::Atan2 },
            vec![T::Double, T::Double],
            T::Double,
        ),
        "LOG" if (n == 1 || n == 2) && args.iter().all(is_num) => {
            ok(F::Log, vec![T::Double; n], T::Double)
        }
        "SQRT" | "EXP" | "LN" | "LOG10" | "LOG2" | "SIN" | "COS" | "TAN" | "COT" | "ASIN"
        | "ACOS" | "ATAN" | "SINH" | "COSH" | "TANH" | "DEGREES" | "RADIANS"
            if n == 1 && is_num(&a0) =>
        {
            let f = match name {
                "SQRT" => F::Sqrt,
                "EXP" => F::Exp,
                "LN" => F::Ln,
                "LOG10" => F::Log10,
                "LOG2" => F::Log2,
                "SIN" => F::Sin,
                "COS" => F::Cos,
                "TAN" => F::Tan,
                "COT" => F::Cot,
                "ASIN" => F::Asin,
                "ACOS" => F::Acos,
                "ATAN" => F::Atan,
                "SINH" => F::Sinh,
                "COSH" => F::Cosh,
                "TANH" => F::Tanh,
                "DEGREES" => F::Degrees,
                _ => F::Radians,
            };
            ok(f, vec![T::Double], T::Double)
        }
        "PI" | "E" if n == 0 => ok(if name == "PI" { F::Pi } else { F::E }, vec![], T::Double),
        "RAND" if n == 0 || (n == 1 && is_int(&a0)) => ok(F::Rand(None), same(), T::Double),
        "RAND_INTEGER" if (n == 1 || n == 2) && args.iter().all(is_int) => {
            ok(F::RandInteger(None), same(), T::Int)
        }
        // Temporal.
        "EXTRACT" if n == 2 && is_str(&a0) && (is_datetime(&a1) || a1.is_interval()) => {
            let unit = lit_str(0).and_then(TimeUnit::parse);
            ok(F::Extract(unit), same(), T::BigInt)
        }
        "YEAR" | "QUARTER" | "MONTH" | "WEEK" | "DAYOFYEAR" | "DAYOFMONTH" | "DAYOFWEEK"
        | "HOUR" | "MINUTE" | "SECOND"
            if n == 1 && is_datetime(&a0) =>
        {
            let unit = TimeUnit::parse(name).ok_or_else(bad)?;
            // The unit travels as a constant first argument, like EXTRACT's.
            ok(F::Extract(Some(unit)), same(), T::BigInt)
        }
        "FLOOR_TIME" | "CEIL_TIME" if n == 2 && is_str(&a0) && is_datetime(&a1) => {
            let unit = lit_str(0).and_then(TimeUnit::parse);
            let f = if name == "FLOOR_TIME" {
                F::FloorTime(unit)
            } else {
                F::CeilTime(unit)
            };
            ok(f, same(), a1.clone())
        }
        "TIMESTAMPADD" if n == 3 && is_str(&a0) && is_int(&a1) && is_datetime(&args[2]) => {
            let unit = lit_str(0).and_then(TimeUnit::parse);
            let ret = match (&args[2], unit) {
                (T::Date, Some(u)) if u.is_time_of_day() => T::Timestamp(6),
                (t, _) => t.clone(),
            };
            ok(F::TimestampAdd(unit), same(), ret)
        }
        "TIMESTAMPDIFF"
            if n == 3
                && is_str(&a0)
                && is_datetime(&a1)
                && is_datetime(&args[2])
                // Flink: "TIMESTAMP_LTZ only supports diff between the same type".
                && matches!(a1, T::TimestampLtz(_)) == matches!(args[2], T::TimestampLtz(_)) =>
        {
            let unit = lit_str(0).and_then(TimeUnit::parse);
            ok(F::TimestampDiff(unit), same(), T::Int)
        }
        "DATE_FORMAT" if n == 2 && (is_datetime(&a0) || is_str(&a0)) && is_str(&a1) => {
            ok(F::DateFormat(None), same(), T::STRING)
        }
        "TO_TIMESTAMP" if (n == 1 || n == 2) && args.iter().all(is_str) => {
            ok(F::ToTimestamp(None), same(), T::Timestamp(3))
        }
        "TO_DATE" if (n == 1 || n == 2) && args.iter().all(is_str) => {
            ok(F::ToDate(None), same(), T::Date)
        }
        "TO_TIMESTAMP_LTZ"
            if (n == 1 && (is_num(&a0) || is_str(&a0)))
                || (n == 2 && is_num(&a0) && is_int(&a1))
                || (n == 2 && is_str(&a0) && is_str(&a1)) =>
        {
            ok(F::ToTimestampLtz, same(), T::TimestampLtz(3))
        }
        "UNIX_TIMESTAMP" if n <= 2 && args.iter().all(is_str) => {
            ok(F::UnixTimestamp(None), same(), T::BigInt)
        }
        "FROM_UNIXTIME" if (n == 1 || n == 2) && is_int(&a0) && (n == 1 || is_str(&a1)) => {
            ok(F::FromUnixtime(None), same(), T::STRING)
        }
        "CURRENT_TIMESTAMP" | "NOW" if n == 0 => {
            ok(F::CurrentTimestamp, vec![], T::TimestampLtz(3))
        }
        "LOCALTIMESTAMP" if n == 0 => ok(F::LocalTimestamp, vec![], T::Timestamp(3)),
        "CURRENT_DATE" if n == 0 => ok(F::CurrentDate, vec![], T::Date),
        "CURRENT_TIME" | "LOCALTIME" if n == 0 => ok(F::CurrentTime, vec![], T::Time(0)),
        // Conditional.
        "IF" if n == 3 && is_bool(&a0) => {
            let t = coerce::common_type(&a1, &args[2]).ok_or_else(bad)?;
            ok(F::If, vec![T::Boolean, t.clone(), t.clone()], t)
        }
        "GREATEST" | "LEAST" if n >= 1 => {
            let mut t = a0.clone();
            for x in &args[1..] {
                t = coerce::common_type(&t, x).ok_or_else(bad)?;
            }
            let f = if name == "GREATEST" {
                F::Greatest
            } else {
                F::Least
            };
            ok(f, vec![t.clone(); n], t)
        }
        _ if is_known_function(name) => Err(bad()),
        _ => Err(unknown_function(name, args)),
    }
}

/// The SQL name Flink uses in type-mismatch messages (`VARCHAR`, `INTEGER`).
fn sql_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Char(_) => "CHAR",
        DataType::Varchar(_) => "VARCHAR",
        DataType::TinyInt => "TINYINT",
        DataType::SmallInt => "SMALLINT",
        DataType::Int => "INTEGER",
        DataType::BigInt => "BIGINT",
        DataType::Float => "FLOAT",
        DataType::Double => "DOUBLE",
        DataType::Decimal(..) => "DECIMAL",
        _ => "OTHER",
    }
}

fn parse_trim_mode(s: &str) -> Option<TrimMode> {
    match s.trim().to_ascii_uppercase().as_str() {
        "BOTH" => Some(TrimMode::Both),
        "LEADING" => Some(TrimMode::Leading),
        "TRAILING" => Some(TrimMode::Trailing),
        _ => None,
    }
}

/// Precompiles what a function can take from its literal arguments (`literal_args[i]` is the
/// value of argument `i` when it is a literal): LIKE/SIMILAR TO/regex patterns, date-format
/// patterns, time units, TRIM modes and RAND seeds. Returns the function unchanged when nothing
/// applies.
pub fn specialize(func: &ScalarFunction, literal_args: &[Option<Value>]) -> ScalarFunction {
    use ScalarFunction as F;
    let lit = |i: usize| literal_args.get(i).and_then(|v| v.as_ref());
    let lit_str = |i: usize| lit(i).and_then(Value::as_str);
    let fmt = |i: usize| lit_str(i).map(|p| Arc::new(parse_date_format(p)));
    let unit = |u: &Option<TimeUnit>| u.or_else(|| lit_str(0).and_then(TimeUnit::parse));
    match func {
        F::Like(None) => match (lit_str(1), literal_args.len() < 3 || lit(2).is_some()) {
            (Some(p), true) => {
                let escape = lit_str(2);
                F::Like(Some(Arc::new(compile_like(p, escape))))
            }
            _ => func.clone(),
        },
        F::SimilarTo(None) => match lit_str(1) {
            Some(p) if literal_args.len() < 3 => F::SimilarTo(Some(Arc::new(compile_similar(p)))),
            _ => func.clone(),
        },
        F::RegexpExtract(None) => lit_str(1).map_or(func.clone(), |p| {
            F::RegexpExtract(Some(Arc::new(compile_regex(p))))
        }),
        F::RegexpReplace(None) => lit_str(1).map_or(func.clone(), |p| {
            F::RegexpReplace(Some(Arc::new(compile_regex(p))))
        }),
        F::Regexp(None) => lit_str(1).map_or(func.clone(), |p| {
            F::Regexp(Some(Arc::new(compile_regex(p))))
        }),
        F::Extract(u) => F::Extract(unit(u)),
        F::FloorTime(u) => F::FloorTime(unit(u)),
        F::CeilTime(u) => F::CeilTime(unit(u)),
        F::TimestampAdd(u) => F::TimestampAdd(unit(u)),
        F::TimestampDiff(u) => F::TimestampDiff(unit(u)),
        F::Trim(None) => F::Trim(lit_str(0).and_then(parse_trim_mode)),
        F::DateFormat(None) => F::DateFormat(fmt(1)),
        F::ToTimestamp(None) => F::ToTimestamp(fmt(1)),
        F::ToDate(None) => F::ToDate(fmt(1)),
        F::UnixTimestamp(None) => F::UnixTimestamp(fmt(1)),
        F::FromUnixtime(None) => F::FromUnixtime(fmt(1)),
        F::Rand(None) | F::RandInteger(None) => {
            let is_rand = matches!(func, F::Rand(_));
            let has_seed = if is_rand {
                literal_args.len() == 1
            } else {
                literal_args.len() == 2
            };
            match lit(0).and_then(Value::as_i64) {
                Some(seed) if has_seed => {
                    let r = SeededRandom {
                        seed,
                        state: Arc::new(Mutex::new(JavaRandom::new(seed))),
                    };
                    if is_rand {
                        F::Rand(Some(r))
                    } else {
                        F::RandInteger(Some(r))
                    }
                }
                _ => func.clone(),
            }
        }
        _ => func.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

fn eval_err(msg: impl Into<String>) -> EngineError {
    EngineError::eval(msg)
}

fn arg(args: &[Value], i: usize) -> Result<&Value> {
    args.get(i)
        .ok_or_else(|| EngineError::internal(format!("missing argument {i} of a function call")))
}

fn arg_str(args: &[Value], i: usize) -> Result<&str> {
    arg(args, i)?
        .as_str()
        .ok_or_else(|| EngineError::internal(format!("argument {i} is not a string")))
}

fn arg_i64(args: &[Value], i: usize) -> Result<i64> {
    arg(args, i)?
        .as_i64()
        .ok_or_else(|| EngineError::internal(format!("argument {i} is not an integer")))
}

fn arg_f64(args: &[Value], i: usize) -> Result<f64> {
    let v = arg(args, i)?;
    match v {
        Value::Decimal(u, s) => Ok(cast::decimal_to_f64(*u, *s)),
        _ => v
            .as_f64()
            .ok_or_else(|| EngineError::internal(format!("argument {i} is not a number"))),
    }
}

fn string(s: impl Into<Arc<str>>) -> Value {
    Value::String(s.into())
}

/// Wraps an i64 into the integer type `ret` (Java's narrowing).
fn wrap_int(i: i64, ret: &DataType) -> Value {
    match ret {
        DataType::TinyInt => Value::TinyInt(i as i8),
        DataType::SmallInt => Value::SmallInt(i as i16),
        DataType::Int => Value::Int(i as i32),
        _ => Value::BigInt(i),
    }
}

fn float_out(f: f64, ret: &DataType) -> Value {
    if matches!(ret, DataType::Float) {
        Value::Float(f as f32)
    } else {
        Value::Double(f)
    }
}

fn ret_decimal(ret: &DataType) -> (u8, u8) {
    match ret {
        DataType::Decimal(p, s) => (*p, *s),
        _ => (38, 18),
    }
}

fn as_decimal(v: &Value) -> Option<(i128, u8)> {
    match v {
        Value::Decimal(u, s) => Some((*u, *s)),
        _ => v.as_i64().map(|i| (i128::from(i), 0)),
    }
}

/// `n / d` rounded HALF_UP.
fn div_round_half_up(n: i128, d: i128) -> Option<i128> {
    let q = n.checked_div(d)?;
    let r = n % d;
    if r.unsigned_abs().checked_mul(2)? >= d.unsigned_abs() {
        Some(if (n < 0) == (d < 0) { q + 1 } else { q - 1 })
    } else {
        Some(q)
    }
}

/// `a * 10^k / b` rounded HALF_UP, by long division when `a * 10^k` overflows.
fn scaled_div(a: i128, k: u32, b: i128) -> Option<i128> {
    if let Some(n) = pow10(k).and_then(|m| a.checked_mul(m)) {
        return div_round_half_up(n, b);
    }
    let neg = (a < 0) != (b < 0);
    let (a, b) = (a.unsigned_abs(), b.unsigned_abs());
    let mut q = a / b;
    let mut r = a % b;
    for i in 0..k {
        let r10 = r.checked_mul(10)?;
        let digit = r10 / b;
        r = r10 % b;
        q = q.checked_mul(10)?.checked_add(digit)?;
        if i + 1 == k && r.checked_mul(2)? >= b {
            q = q.checked_add(1)?;
        }
    }
    if k == 0 && r.checked_mul(2)? >= b {
        q = q.checked_add(1)?;
    }
    let q = i128::try_from(q).ok()?;
    Some(if neg { -q } else { q })
}

fn decimal_arith(op: u8, a: &Value, b: &Value, ret: &DataType) -> Result<Value> {
    let (Some((ua, sa)), Some((ub, sb))) = (as_decimal(a), as_decimal(b)) else {
        return Err(EngineError::internal("decimal arithmetic on a non-decimal"));
    };
    let (p, s) = ret_decimal(ret);
    let exact = match op {
        b'+' | b'-' | b'%' => {
            let scale = sa.max(sb);
            let (Some(x), Some(y)) = (cast::rescale(ua, sa, scale), cast::rescale(ub, sb, scale))
            else {
                return Ok(Value::Null);
            };
            match op {
                b'+' => x.checked_add(y).map(|v| (v, scale)),
                b'-' => x.checked_sub(y).map(|v| (v, scale)),
                _ => {
                    if y == 0 {
                        return Err(eval_err("Division by zero"));
                    }
                    Some((x % y, scale))
                }
            }
        }
        b'*' => match ua.checked_mul(ub) {
            Some(v) => Some((v, sa + sb)),
            None => mul_wide(
                ua,
                ub,
                u32::from(sa + sb) - u32::from(s).min(u32::from(sa + sb)),
            )
            .map(|v| (v, s.min(sa + sb))),
        },
        _ => {
            if ub == 0 {
                return Err(eval_err("Division by zero"));
            }
            // a/10^sa / (b/10^sb) at scale s = a * 10^(s - sa + sb) / b.
            let k = i32::from(s) - i32::from(sa) + i32::from(sb);
            let q = if k >= 0 {
                scaled_div(ua, k as u32, ub)
            } else {
                pow10((-k) as u32)
                    .and_then(|m| ub.checked_mul(m))
                    .and_then(|d| div_round_half_up(ua, d))
            };
            q.map(|v| (v, s))
        }
    };
    Ok(match exact {
        Some((v, scale)) => cast::to_decimal(v, scale, p, s).unwrap_or(Value::Null),
        None => Value::Null,
    })
}

/// `a * b / 10^drop` rounded HALF_UP for products that overflow an i128, using 256-bit
/// intermediate arithmetic on magnitudes.
fn mul_wide(a: i128, b: i128, drop: u32) -> Option<i128> {
    let neg = (a < 0) != (b < 0);
    let (a, b) = (a.unsigned_abs(), b.unsigned_abs());
    let (a_hi, a_lo) = (a >> 64, a & u128::from(u64::MAX));
    let (b_hi, b_lo) = (b >> 64, b & u128::from(u64::MAX));
    // 256-bit product as four 64-bit limbs, little endian.
    let mut limbs = [0u128; 4];
    for (i, x) in [a_lo, a_hi].iter().enumerate() {
        for (j, y) in [b_lo, b_hi].iter().enumerate() {
            let p = x * y;
            limbs[i + j] += p & u128::from(u64::MAX);
            limbs[i + j + 1] += p >> 64;
        }
    }
    for i in 0..3 {
        let carry = limbs[i] >> 64;
        limbs[i] &= u128::from(u64::MAX);
        limbs[i + 1] += carry;
    }
    // Divide by 10 `drop` times, remembering the last remainder digit and whether any
    // earlier digit was non-zero (for HALF_UP only the first dropped digit matters).
    let mut last = 0u128;
    for _ in 0..drop {
        let mut rem = 0u128;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 64) | *limb;
            *limb = cur / 10;
            rem = cur % 10;
        }
        last = rem;
    }
    if limbs[2] != 0 || limbs[3] != 0 {
        return None;
    }
    let mut q = (limbs[1] << 64) | limbs[0];
    if last >= 5 {
        q = q.checked_add(1)?;
    }
    let q = i128::try_from(q).ok()?;
    Some(if neg { -q } else { q })
}

fn integer_arith(op: u8, a: &Value, b: &Value, ret: &DataType) -> Result<Value> {
    let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) else {
        return Err(EngineError::internal("integer arithmetic on a non-integer"));
    };
    let r = match op {
        b'+' => x.wrapping_add(y),
        b'-' => x.wrapping_sub(y),
        b'*' => x.wrapping_mul(y),
        b'/' | b'%' => {
            if y == 0 {
                return Err(eval_err("/ by zero"));
            }
            // Narrow types divide in 32 bits in Java: INT_MIN / -1 wraps there.
            if op == b'/' {
                match ret {
                    DataType::BigInt => x.wrapping_div(y),
                    _ => i64::from((x as i32).wrapping_div(y as i32)),
                }
            } else {
                x.wrapping_rem(y)
            }
        }
        _ => return Err(EngineError::internal("unknown arithmetic operator")),
    };
    Ok(wrap_int(r, ret))
}

fn float_arith(op: u8, a: &Value, b: &Value, ret: &DataType) -> Result<Value> {
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Err(EngineError::internal("float arithmetic on a non-number"));
    };
    let r = match op {
        b'+' => x + y,
        b'-' => x - y,
        b'*' => x * y,
        b'/' => x / y,
        _ => x % y,
    };
    Ok(float_out(r, ret))
}

fn arith(op: u8, num: Num, args: &[Value], ret: &DataType) -> Result<Value> {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    // Fast paths for the most common shapes.
    match (op, a, b) {
        (b'+', Value::Int(x), Value::Int(y)) => return Ok(Value::Int(x.wrapping_add(*y))),
        (b'+', Value::BigInt(x), Value::BigInt(y)) => return Ok(Value::BigInt(x.wrapping_add(*y))),
        (b'-', Value::BigInt(x), Value::BigInt(y)) => return Ok(Value::BigInt(x.wrapping_sub(*y))),
        (b'*', Value::BigInt(x), Value::BigInt(y)) => return Ok(Value::BigInt(x.wrapping_mul(*y))),
        (b'+', Value::Double(x), Value::Double(y)) => return Ok(Value::Double(x + y)),
        (b'*', Value::Double(x), Value::Double(y)) => return Ok(Value::Double(x * y)),
        _ => {}
    }
    match num {
        Num::Integer => integer_arith(op, a, b, ret),
        Num::Float | Num::Double => float_arith(op, a, b, ret),
        Num::Decimal => decimal_arith(op, a, b, ret),
    }
}

/// Adds `months` to epoch milliseconds, clamping the day to the month's end (Jan 31 + 1 month
/// is Feb 29 in a leap year); `None` when the result leaves the i64 millisecond range.
fn add_months_millis(ms: i64, months: i64) -> Option<i64> {
    let (days, tod) = format::split_millis(ms);
    add_months_days(days, months)?
        .checked_mul(MILLIS_PER_DAY)?
        .checked_add(tod)
}

/// Years beyond this bound are outside every representable timestamp (i64 milliseconds span
/// about ±292 million years) and would overflow the calendar arithmetic.
const MAX_CALENDAR_YEAR: i64 = 300_000_000;

fn add_months_days(days: i64, months: i64) -> Option<i64> {
    let (y, m, d) = format::civil_from_days(days);
    let total = (y * 12 + i64::from(m) - 1).checked_add(months)?;
    let ny = total.div_euclid(12);
    if ny.abs() > MAX_CALENDAR_YEAR {
        return None;
    }
    let nm = total.rem_euclid(12) as u32 + 1;
    let nd = d.min(format::days_in_month(ny, nm));
    Some(format::days_from_civil(ny, nm, nd))
}

fn temporal_add(a: &Value, b: &Value, negate: bool) -> Result<Value> {
    use Value::*;
    let overflow = || eval_err("timestamp arithmetic overflow");
    let sign = |x: i64| if negate { x.wrapping_neg() } else { x };
    Ok(match (a, b) {
        (Timestamp(t), IntervalDayTime(i)) | (IntervalDayTime(i), Timestamp(t)) => {
            Timestamp(t.checked_add(sign(*i)).ok_or_else(overflow)?)
        }
        (TimestampLtz(t), IntervalDayTime(i)) | (IntervalDayTime(i), TimestampLtz(t)) => {
            TimestampLtz(t.checked_add(sign(*i)).ok_or_else(overflow)?)
        }
        (Timestamp(t), IntervalYearMonth(m)) | (IntervalYearMonth(m), Timestamp(t)) => {
            Timestamp(add_months_millis(*t, sign(i64::from(*m))).ok_or_else(overflow)?)
        }
        (TimestampLtz(t), IntervalYearMonth(m)) | (IntervalYearMonth(m), TimestampLtz(t)) => {
            TimestampLtz(add_months_millis(*t, sign(i64::from(*m))).ok_or_else(overflow)?)
        }
        (Date(d), IntervalDayTime(i)) | (IntervalDayTime(i), Date(d)) => {
            // Java long division: truncates toward zero.
            let nd = i64::from(*d) + sign(*i) / MILLIS_PER_DAY;
            Date(i32::try_from(nd).map_err(|_| overflow())?)
        }
        (Date(d), IntervalYearMonth(m)) | (IntervalYearMonth(m), Date(d)) => {
            let nd = add_months_days(i64::from(*d), sign(i64::from(*m))).ok_or_else(overflow)?;
            Date(i32::try_from(nd).map_err(|_| overflow())?)
        }
        (Time(t), IntervalDayTime(i)) | (IntervalDayTime(i), Time(t)) => {
            let v = (i64::from(*t) + sign(*i)).rem_euclid(MILLIS_PER_DAY);
            Time(v as i32)
        }
        (IntervalDayTime(x), IntervalDayTime(y)) => {
            IntervalDayTime(x.checked_add(sign(*y)).ok_or_else(overflow)?)
        }
        (IntervalYearMonth(x), IntervalYearMonth(y)) => {
            let y = if negate { y.wrapping_neg() } else { *y };
            IntervalYearMonth(x.checked_add(y).ok_or_else(overflow)?)
        }
        _ => {
            return Err(EngineError::internal(
                "temporal arithmetic on unexpected values",
            ))
        }
    })
}

fn interval_scale(args: &[Value], divide: bool) -> Result<Value> {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    let (iv, k) = if a.is_interval_value() {
        (a, b)
    } else {
        (b, a)
    };
    let f = match k {
        Value::Decimal(u, s) => cast::decimal_to_f64(*u, *s),
        _ => k.as_f64().unwrap_or(f64::NAN),
    };
    if divide && f == 0.0 {
        return Err(eval_err("/ by zero"));
    }
    let apply = |x: f64| if divide { x / f } else { x * f };
    Ok(match iv {
        Value::IntervalDayTime(ms) => Value::IntervalDayTime(apply(*ms as f64) as i64),
        Value::IntervalYearMonth(m) => Value::IntervalYearMonth(apply(f64::from(*m)) as i32),
        _ => {
            return Err(EngineError::internal(
                "interval arithmetic on a non-interval",
            ))
        }
    })
}

trait IntervalValue {
    fn is_interval_value(&self) -> bool;
}

impl IntervalValue for Value {
    fn is_interval_value(&self) -> bool {
        matches!(
            self,
            Value::IntervalDayTime(_) | Value::IntervalYearMonth(_)
        )
    }
}

/// SQL comparison of two non-NULL values: `None` when unordered (NaN).
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::BigInt(x), Value::BigInt(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Float(_) | Value::Double(_), _) | (_, Value::Float(_) | Value::Double(_)) => {
            let x = match a {
                Value::Decimal(u, s) => Some(cast::decimal_to_f64(*u, *s)),
                _ => a.as_f64(),
            };
            let y = match b {
                Value::Decimal(u, s) => Some(cast::decimal_to_f64(*u, *s)),
                _ => b.as_f64(),
            };
            match (x, y) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => Some(a.cmp(b)),
            }
        }
        (Value::Date(d), Value::Timestamp(t) | Value::TimestampLtz(t)) => {
            Some((i64::from(*d) * MILLIS_PER_DAY).cmp(t))
        }
        (Value::Timestamp(t) | Value::TimestampLtz(t), Value::Date(d)) => {
            Some(t.cmp(&(i64::from(*d) * MILLIS_PER_DAY)))
        }
        _ => Some(a.cmp(b)),
    }
}

fn comparison(op: CmpOp, a: &Value, b: &Value) -> Value {
    let ord = compare(a, b);
    Value::Boolean(match (op, ord) {
        (CmpOp::NotEq, None) => true,
        (_, None) => false,
        (CmpOp::Eq, Some(o)) => o.is_eq(),
        (CmpOp::NotEq, Some(o)) => o.is_ne(),
        (CmpOp::Lt, Some(o)) => o.is_lt(),
        (CmpOp::LtEq, Some(o)) => o.is_le(),
        (CmpOp::Gt, Some(o)) => o.is_gt(),
        (CmpOp::GtEq, Some(o)) => o.is_ge(),
    })
}

/// Evaluates a resolved function over already evaluated arguments.
pub fn eval(func: &ScalarFunction, args: &[Value], ret: &DataType) -> Result<Value> {
    use ScalarFunction as F;
    // Comparisons first: the hottest path.
    if let F::Cmp(op) = func {
        return match args {
            [a, b] if !a.is_null() && !b.is_null() => Ok(comparison(*op, a, b)),
            [_, _] => Ok(Value::Null),
            _ => Err(EngineError::internal("comparison takes two arguments")),
        };
    }
    if func.strict() && args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    match func {
        F::Add(n) => arith(b'+', *n, args, ret),
        F::Sub(n) => arith(b'-', *n, args, ret),
        F::Mul(n) => arith(b'*', *n, args, ret),
        F::Div(n) => arith(b'/', *n, args, ret),
        F::Mod(n) => arith(b'%', *n, args, ret),
        F::Neg(n) => negate(*n, arg(args, 0)?, ret),
        F::AddTemporal => temporal_add(arg(args, 0)?, arg(args, 1)?, false),
        F::SubTemporal => temporal_add(arg(args, 0)?, arg(args, 1)?, true),
        F::MulInterval => interval_scale(args, false),
        F::DivInterval => interval_scale(args, true),
        F::NegInterval => Ok(match arg(args, 0)? {
            Value::IntervalDayTime(x) => Value::IntervalDayTime(x.wrapping_neg()),
            Value::IntervalYearMonth(x) => Value::IntervalYearMonth(x.wrapping_neg()),
            _ => return Err(EngineError::internal("negating a non-interval")),
        }),
        F::Cmp(op) => Ok(comparison(*op, arg(args, 0)?, arg(args, 1)?)),
        F::Concat => {
            let mut out = String::new();
            for (i, _) in args.iter().enumerate() {
                out.push_str(arg_str(args, i)?);
            }
            Ok(string(out))
        }
        F::ConcatWs => {
            let Some(sep) = arg(args, 0)?.as_str() else {
                return Ok(Value::Null);
            };
            let mut out = String::new();
            let mut first = true;
            for v in &args[1..] {
                if let Some(s) = v.as_str() {
                    if !first {
                        out.push_str(sep);
                    }
                    out.push_str(s);
                    first = false;
                }
            }
            Ok(string(out))
        }
        F::Like(p) => {
            let s = arg_str(args, 0)?;
            match p {
                Some(p) => Ok(regex_bool(p, s)),
                None => {
                    let pattern = arg_str(args, 1)?;
                    let escape = match args.get(2) {
                        Some(v) => Some(v.as_str().unwrap_or("")),
                        None => None,
                    };
                    let compiled = compile_like(pattern, escape);
                    if compiled.regex.is_none() {
                        return Err(eval_err(format!(
                            "Invalid escape sequence in LIKE pattern '{pattern}'"
                        )));
                    }
                    Ok(regex_bool(&compiled, s))
                }
            }
        }
        F::SimilarTo(p) => {
            let s = arg_str(args, 0)?;
            match p {
                Some(p) => Ok(regex_bool(p, s)),
                None => Ok(regex_bool(&compile_similar(arg_str(args, 1)?), s)),
            }
        }
        F::Upper => Ok(string(arg_str(args, 0)?.to_uppercase())),
        F::Lower => Ok(string(arg_str(args, 0)?.to_lowercase())),
        F::Substring => substring(args),
        F::CharLength => Ok(Value::Int(
            i32::try_from(arg_str(args, 0)?.chars().count()).unwrap_or(i32::MAX),
        )),
        F::Trim(mode) => trim(*mode, args),
        F::LTrim | F::RTrim => {
            let s = arg_str(args, 0)?;
            let chars = if args.len() > 1 {
                arg_str(args, 1)?
            } else {
                " "
            };
            let t = if matches!(func, F::LTrim) {
                s.trim_start_matches(|c| chars.contains(c))
            } else {
                s.trim_end_matches(|c| chars.contains(c))
            };
            Ok(substr_value(&args[0], s, t))
        }
        F::Replace => {
            let (s, from, to) = (arg_str(args, 0)?, arg_str(args, 1)?, arg_str(args, 2)?);
            Ok(string(s.replace(from, to)))
        }
        F::RegexpExtract(p) => with_regex(p, args, regexp_extract),
        F::RegexpReplace(p) => with_regex(p, args, regexp_replace),
        F::Regexp(p) => with_regex(p, args, |re, args| {
            Ok(Value::Boolean(re.is_match(arg_str(args, 0)?)))
        }),
        F::SplitIndex => split_index(args),
        F::Position => Ok(Value::Int(locate(arg_str(args, 0)?, arg_str(args, 1)?, 1))),
        F::Locate => {
            let start = if args.len() > 2 { arg_i64(args, 2)? } else { 1 };
            Ok(Value::Int(locate(
                arg_str(args, 0)?,
                arg_str(args, 1)?,
                start,
            )))
        }
        F::InitCap => Ok(string(initcap(arg_str(args, 0)?))),
        F::Reverse => Ok(string(arg_str(args, 0)?.chars().rev().collect::<String>())),
        F::LPad | F::RPad => pad(args, matches!(func, F::LPad)),
        F::Repeat => {
            let n = usize::try_from(arg_i64(args, 1)?.max(0)).unwrap_or(0);
            let s = arg_str(args, 0)?;
            if s.len().saturating_mul(n) > (1 << 30) {
                return Err(eval_err("REPEAT result is too large"));
            }
            Ok(string(s.repeat(n)))
        }
        F::Left | F::Right => {
            let s = arg_str(args, 0)?;
            let n = usize::try_from(arg_i64(args, 1)?.max(0)).unwrap_or(0);
            let count = s.chars().count();
            let t: String = if matches!(func, F::Left) {
                s.chars().take(n).collect()
            } else {
                s.chars().skip(count.saturating_sub(n)).collect()
            };
            Ok(string(t))
        }
        F::Ascii => Ok(Value::Int(
            arg_str(args, 0)?.chars().next().map_or(0, |c| c as i32),
        )),
        F::Chr => {
            let n = arg_i64(args, 0)?;
            if n < 0 {
                return Ok(string(""));
            }
            let c = char::from((n & 0xFF) as u8);
            Ok(string(c.to_string()))
        }
        F::Md5 => Ok(string(hex(&md5(arg_str(args, 0)?.as_bytes())))),
        F::Sha256 => Ok(string(hex(&sha256(arg_str(args, 0)?.as_bytes())))),
        F::ToBase64 => Ok(string(base64_encode(arg_str(args, 0)?.as_bytes()))),
        F::FromBase64 => Ok(match base64_decode(arg_str(args, 0)?) {
            Some(bytes) => string(String::from_utf8_lossy(&bytes).into_owned()),
            None => Value::Null,
        }),
        F::IsDigit => {
            let s = arg_str(args, 0)?;
            Ok(Value::Boolean(
                !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()),
            ))
        }
        F::IsAlpha => {
            let s = arg_str(args, 0)?;
            Ok(Value::Boolean(
                !s.is_empty() && s.chars().all(char::is_alphabetic),
            ))
        }
        F::IsDecimal => {
            let s = arg_str(args, 0)?;
            Ok(Value::Boolean(
                !s.is_empty() && cast::parse_double(s).is_some_and(f64::is_finite),
            ))
        }
        F::Abs(n) => abs(*n, arg(args, 0)?, ret),
        F::Sign(n) => sign(*n, arg(args, 0)?, ret),
        F::Floor(n) => floor_ceil(*n, arg(args, 0)?, ret, false),
        F::Ceil(n) => floor_ceil(*n, arg(args, 0)?, ret, true),
        F::Round(n) => round(*n, args, ret, true),
        F::Truncate(n) => round(*n, args, ret, false),
        F::Power => Ok(Value::Double(arg_f64(args, 0)?.powf(arg_f64(args, 1)?))),
        F::Atan2 => Ok(Value::Double(arg_f64(args, 0)?.atan2(arg_f64(args, 1)?))),
        F::Log => Ok(Value::Double(if args.len() == 2 {
            arg_f64(args, 1)?.ln() / arg_f64(args, 0)?.ln()
        } else {
            arg_f64(args, 0)?.ln()
        })),
        F::Sqrt => unary_f64(args, f64::sqrt),
        F::Exp => unary_f64(args, f64::exp),
        F::Ln => unary_f64(args, f64::ln),
        F::Log10 => unary_f64(args, f64::log10),
        F::Log2 => unary_f64(args, |x| x.ln() / 2f64.ln()),
        F::Sin => unary_f64(args, f64::sin),
        F::Cos => unary_f64(args, f64::cos),
        F::Tan => unary_f64(args, f64::tan),
        F::Cot => unary_f64(args, |x| 1.0 / x.tan()),
        F::Asin => unary_f64(args, f64::asin),
        F::Acos => unary_f64(args, f64::acos),
        F::Atan => unary_f64(args, f64::atan),
        F::Sinh => unary_f64(args, f64::sinh),
        F::Cosh => unary_f64(args, f64::cosh),
        F::Tanh => unary_f64(args, f64::tanh),
        F::Degrees => unary_f64(args, f64::to_degrees),
        F::Radians => unary_f64(args, f64::to_radians),
        F::Pi => Ok(Value::Double(std::f64::consts::PI)),
        F::E => Ok(Value::Double(std::f64::consts::E)),
        F::Rand(seeded) => Ok(Value::Double(match seeded {
            Some(r) => r
                .state
                .lock()
                .map_err(|_| EngineError::internal("RAND state poisoned"))?
                .next_double(),
            None => thread_random(|r| r.next_double()),
        })),
        F::RandInteger(seeded) => {
            let bound = arg_i64(args, args.len().saturating_sub(1))?;
            let bound = i32::try_from(bound).unwrap_or(i32::MAX);
            if bound <= 0 {
                return Err(eval_err("bound must be positive"));
            }
            Ok(Value::Int(match seeded {
                Some(r) => r
                    .state
                    .lock()
                    .map_err(|_| EngineError::internal("RAND state poisoned"))?
                    .next_int(bound),
                None => thread_random(|r| r.next_int(bound)),
            }))
        }
        F::Extract(unit) => {
            let unit = unit_of(*unit, args)?;
            extract(unit, arg(args, args.len() - 1)?)
        }
        F::FloorTime(unit) => floor_time(unit_of(*unit, args)?, arg(args, 1)?, false),
        F::CeilTime(unit) => floor_time(unit_of(*unit, args)?, arg(args, 1)?, true),
        F::TimestampAdd(unit) => {
            timestamp_add(unit_of(*unit, args)?, arg_i64(args, 1)?, arg(args, 2)?, ret)
        }
        F::TimestampDiff(unit) => {
            timestamp_diff(unit_of(*unit, args)?, arg(args, 1)?, arg(args, 2)?)
        }
        F::DateFormat(fmt) => {
            let ms = match arg(args, 0)? {
                Value::String(s) => match cast::parse_timestamp(s) {
                    Some(ms) => ms,
                    None => return Ok(Value::Null),
                },
                v => temporal_millis(v)?,
            };
            with_format(fmt, args, 1, |f| Ok(string(format_datetime(f, ms))))
        }
        F::ToTimestamp(fmt) => {
            let s = arg_str(args, 0)?;
            let ms = if args.len() > 1 {
                with_format(fmt, args, 1, |f| Ok(parse_datetime(f, s)))?
            } else {
                parse_default_timestamp(s)
            };
            Ok(ms.map_or(Value::Null, Value::Timestamp))
        }
        F::ToDate(fmt) => {
            let s = arg_str(args, 0)?;
            let days = if args.len() > 1 {
                with_format(fmt, args, 1, |f| Ok(parse_datetime(f, s)))?
                    .map(|ms| ms.div_euclid(MILLIS_PER_DAY))
                    .and_then(|d| i32::try_from(d).ok())
            } else {
                cast::parse_date(s)
            };
            Ok(days.map_or(Value::Null, Value::Date))
        }
        F::ToTimestampLtz => to_timestamp_ltz(args),
        F::UnixTimestamp(fmt) => {
            if args.is_empty() {
                return Ok(Value::BigInt(now_millis().div_euclid(1000)));
            }
            let s = arg_str(args, 0)?;
            let ms = if args.len() > 1 {
                with_format(fmt, args, 1, |f| Ok(parse_datetime(f, s)))?
            } else {
                parse_default_timestamp(s)
            };
            // Flink returns Long.MIN_VALUE for text that does not parse.
            Ok(Value::BigInt(ms.map_or(i64::MIN, |ms| ms.div_euclid(1000))))
        }
        F::FromUnixtime(fmt) => {
            let ms = arg_i64(args, 0)?.saturating_mul(1000);
            if args.len() > 1 {
                with_format(fmt, args, 1, |f| Ok(string(format_datetime(f, ms))))
            } else {
                let mut s = String::with_capacity(19);
                format::write_timestamp(&mut s, ms, 0);
                Ok(string(s))
            }
        }
        F::CurrentTimestamp => Ok(Value::TimestampLtz(now_millis())),
        F::LocalTimestamp => Ok(Value::Timestamp(now_millis())),
        F::CurrentDate => Ok(Value::Date(
            i32::try_from(now_millis().div_euclid(MILLIS_PER_DAY)).unwrap_or(0),
        )),
        F::CurrentTime => Ok(Value::Time(
            (now_millis().rem_euclid(MILLIS_PER_DAY) / 1000 * 1000) as i32,
        )),
        F::If => Ok(if matches!(arg(args, 0)?, Value::Boolean(true)) {
            arg(args, 1)?.clone()
        } else {
            arg(args, 2)?.clone()
        }),
        F::Greatest | F::Least => {
            let mut best = arg(args, 0)?;
            for v in &args[1..] {
                let o = compare(v, best).unwrap_or(Ordering::Equal);
                if (matches!(func, F::Greatest) && o.is_gt())
                    || (matches!(func, F::Least) && o.is_lt())
                {
                    best = v;
                }
            }
            Ok(best.clone())
        }
        F::RowField(i) => Ok(arg(args, 0)?
            .as_row()
            .and_then(|fields| fields.get(*i))
            .cloned()
            .unwrap_or(Value::Null)),
    }
}

fn unary_f64(args: &[Value], f: fn(f64) -> f64) -> Result<Value> {
    Ok(Value::Double(f(arg_f64(args, 0)?)))
}

fn negate(n: Num, v: &Value, ret: &DataType) -> Result<Value> {
    Ok(match (n, v) {
        (_, Value::Decimal(u, s)) => Value::Decimal(-*u, *s),
        (Num::Float | Num::Double, _) => float_out(-v.as_f64().unwrap_or(0.0), ret),
        _ => wrap_int(v.as_i64().unwrap_or(0).wrapping_neg(), ret),
    })
}

fn abs(n: Num, v: &Value, ret: &DataType) -> Result<Value> {
    Ok(match (n, v) {
        (_, Value::Decimal(u, s)) => Value::Decimal(u.abs(), *s),
        (Num::Float | Num::Double, _) => float_out(v.as_f64().unwrap_or(0.0).abs(), ret),
        // Java's Math.abs(Integer.MIN_VALUE) stays negative: wrap in the result width.
        _ => match v {
            Value::TinyInt(x) => Value::TinyInt(x.wrapping_abs()),
            Value::SmallInt(x) => Value::SmallInt(x.wrapping_abs()),
            Value::Int(x) => Value::Int(x.wrapping_abs()),
            _ => wrap_int(v.as_i64().unwrap_or(0).wrapping_abs(), ret),
        },
    })
}

fn sign(n: Num, v: &Value, ret: &DataType) -> Result<Value> {
    Ok(match (n, v) {
        (_, Value::Decimal(u, s)) => {
            let sig = u.signum();
            Value::Decimal(sig * pow10(u32::from(*s)).unwrap_or(1), *s)
        }
        (Num::Float | Num::Double, _) => {
            let f = v.as_f64().unwrap_or(0.0);
            float_out(
                if f == 0.0 || f.is_nan() {
                    f
                } else {
                    f.signum()
                },
                ret,
            )
        }
        _ => wrap_int(v.as_i64().unwrap_or(0).signum(), ret),
    })
}

fn floor_ceil(n: Num, v: &Value, ret: &DataType, ceil: bool) -> Result<Value> {
    Ok(match (n, v) {
        (_, Value::Decimal(u, s)) => {
            let d = pow10(u32::from(*s)).unwrap_or(1);
            let r = if ceil {
                -(-u).div_euclid(d)
            } else {
                u.div_euclid(d)
            };
            let (p, _) = ret_decimal(ret);
            cast::to_decimal(r, 0, p, 0).unwrap_or(Value::Null)
        }
        (Num::Float | Num::Double, _) => {
            let f = v.as_f64().unwrap_or(0.0);
            float_out(if ceil { f.ceil() } else { f.floor() }, ret)
        }
        _ => v.clone(),
    })
}

/// ROUND (HALF_UP) or TRUNCATE (DOWN) to `digits` fraction digits, as Flink does through
/// `BigDecimal` (a double is first turned into its shortest decimal text).
fn round(n: Num, args: &[Value], ret: &DataType, half_up: bool) -> Result<Value> {
    let v = arg(args, 0)?;
    let digits = if args.len() > 1 { arg_i64(args, 1)? } else { 0 };
    let digits = digits.clamp(-64, 64) as i32;
    Ok(match (n, v) {
        (_, Value::Decimal(u, s)) => {
            let s_i = i32::from(*s);
            let (p, rs) = ret_decimal(ret);
            if digits >= s_i {
                return Ok(cast::to_decimal(*u, *s, p, rs).unwrap_or(Value::Null));
            }
            let drop = (s_i - digits) as u32;
            let q = drop_digits(*u, drop, half_up);
            // q is at scale `digits` (negative digits: scale 0 after multiplying back).
            let (val, scale) = if digits >= 0 {
                (Some(q), digits as u8)
            } else {
                (pow10((-digits) as u32).and_then(|m| q.checked_mul(m)), 0)
            };
            match val {
                Some(x) => cast::to_decimal(x, scale, p, rs).unwrap_or(Value::Null),
                None => Value::Null,
            }
        }
        (Num::Float | Num::Double, _) => {
            let f = v.as_f64().unwrap_or(0.0);
            float_out(round_f64(f, digits, half_up), ret)
        }
        _ => {
            let i = v.as_i64().unwrap_or(0);
            if digits >= 0 {
                v.clone()
            } else {
                let q = drop_digits(i128::from(i), (-digits) as u32, half_up);
                let r = pow10((-digits) as u32)
                    .and_then(|m| q.checked_mul(m))
                    .unwrap_or(0);
                wrap_int(r as i64, ret)
            }
        }
    })
}

/// Drops `n` decimal digits of `v`, HALF_UP or toward zero.
fn drop_digits(v: i128, n: u32, half_up: bool) -> i128 {
    if n > 38 {
        return 0;
    }
    if half_up {
        cast::div_pow10_half_up(v, n)
    } else {
        v / pow10(n).unwrap_or(1)
    }
}

/// `BigDecimal.valueOf(f).setScale(digits, HALF_UP or DOWN).doubleValue()`.
fn round_f64(f: f64, digits: i32, half_up: bool) -> f64 {
    if !f.is_finite() || f == 0.0 {
        return f;
    }
    let (d, exp) = format::shortest_digits(f);
    // value = 0.d * 10^exp; keep the digits before position exp + digits.
    let keep = exp + digits;
    let len = d.len() as i32;
    if keep >= len {
        return f;
    }
    if keep < 0 {
        return 0.0;
    }
    let kept = &d[..keep as usize];
    let mut k: i128 = kept.parse().unwrap_or(0);
    if half_up && d.as_bytes()[keep as usize] >= b'5' {
        k += 1;
    }
    let text = format!("{}{k}e{}", if f < 0.0 { "-" } else { "" }, -digits);
    text.parse().unwrap_or(f)
}

// ----- strings ---------------------------------------------------------------------------------

/// Returns `t` (a sub-slice of `s`) as a value, reusing `original` when nothing was cut.
fn substr_value(original: &Value, s: &str, t: &str) -> Value {
    if t.len() == s.len() {
        original.clone()
    } else {
        string(t)
    }
}

/// Flink's `SUBSTRING(s, pos[, len])`: 1-based; 0 acts as 1; a negative start counts from the
/// end; the end is computed before clamping, so `SUBSTRING('abcdef', -10, 3)` is empty; a
/// negative length gives NULL.
fn substring(args: &[Value]) -> Result<Value> {
    let s = arg_str(args, 0)?;
    let pos = arg_i64(args, 1)?;
    let len = if args.len() > 2 {
        let l = arg_i64(args, 2)?;
        // Flink gives NULL for a negative length.
        if l < 0 {
            return Ok(Value::Null);
        }
        Some(l)
    } else {
        None
    };
    let count = s.chars().count() as i64;
    let start = match pos.cmp(&0) {
        Ordering::Greater => pos - 1,
        Ordering::Less => count + pos,
        Ordering::Equal => 0,
    };
    let end = match len {
        Some(l) => start.saturating_add(l),
        None => count,
    };
    let (start, end) = (start.max(0), end.min(count));
    if start >= end {
        return Ok(string(""));
    }
    if start == 0 && end == count {
        return Ok(args[0].clone());
    }
    let t: String = s
        .chars()
        .skip(start as usize)
        .take((end - start) as usize)
        .collect();
    Ok(string(t))
}

fn trim(mode: Option<TrimMode>, args: &[Value]) -> Result<Value> {
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let mode = match mode {
        Some(m) => m,
        None => parse_trim_mode(arg_str(args, 0)?)
            .ok_or_else(|| eval_err("TRIM mode must be BOTH, LEADING or TRAILING"))?,
    };
    let chars = arg_str(args, 1)?;
    let s = arg_str(args, 2)?;
    let pred = |c: char| chars.contains(c);
    let t = match mode {
        TrimMode::Both => s.trim_matches(pred),
        TrimMode::Leading => s.trim_start_matches(pred),
        TrimMode::Trailing => s.trim_end_matches(pred),
    };
    Ok(substr_value(&args[2], s, t))
}

/// 1-based character position of `needle` in `hay` at or after `start`; 0 when absent.
fn locate(needle: &str, hay: &str, start: i64) -> i32 {
    if start < 1 {
        return 0;
    }
    let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let Some((byte_start, _)) = hay
        .char_indices()
        .nth(skip)
        .or_else(|| (hay.chars().count() == skip).then_some((hay.len(), ' ')))
    else {
        return 0;
    };
    match hay[byte_start..].find(needle) {
        Some(b) => {
            let chars_before = hay[..byte_start + b].chars().count();
            i32::try_from(chars_before + 1).unwrap_or(0)
        }
        None => 0,
    }
}

/// Upper-cases the first letter of every run of letters and digits, lower-cases the rest.
fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_word = false;
    for c in s.chars() {
        if prev_word {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_word = c.is_alphanumeric();
    }
    out
}

/// Flink's LPAD/RPAD: the result has exactly `len` characters (the string is cut when
/// longer); NULL for a negative length or an empty pad.
fn pad(args: &[Value], left: bool) -> Result<Value> {
    let s = arg_str(args, 0)?;
    let len = arg_i64(args, 1)?;
    let p = arg_str(args, 2)?;
    if len < 0 || p.is_empty() {
        return Ok(Value::Null);
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > (1 << 30) {
        return Err(eval_err("padded length is too large"));
    }
    let chars: Vec<char> = s.chars().collect();
    let fill = len.saturating_sub(chars.len());
    let mut padding = p.chars().cycle().take(fill);
    let mut out = String::with_capacity(len);
    if left {
        out.extend(&mut padding);
        out.extend(chars.iter().take(len - fill));
    } else {
        out.extend(chars.iter().take(len - fill));
        out.extend(&mut padding);
    }
    Ok(string(out))
}

fn split_index(args: &[Value]) -> Result<Value> {
    let s = arg_str(args, 0)?;
    let idx = arg_i64(args, 2)?;
    if idx < 0 || s.is_empty() {
        return Ok(Value::Null);
    }
    let idx = usize::try_from(idx).unwrap_or(usize::MAX);
    let sep_owned;
    let sep: &str = match arg(args, 1)? {
        Value::String(x) => x,
        v => {
            let code = v.as_i64().unwrap_or(0);
            sep_owned = char::from_u32(u32::try_from(code).unwrap_or(0))
                .unwrap_or('\0')
                .to_string();
            &sep_owned
        }
    };
    let part = if sep.is_empty() {
        s.split(char::is_whitespace).nth(idx)
    } else {
        s.split(sep).nth(idx)
    };
    Ok(part.map_or(Value::Null, string))
}

// ----- patterns --------------------------------------------------------------------------------

thread_local! {
    /// Recently compiled patterns that were not literals (source text, kind tag, compiled).
    static PATTERN_CACHE: RefCell<Vec<(String, u8, Arc<Pattern>)>> = const { RefCell::new(Vec::new()) };
}

const CACHE_SIZE: usize = 16;

fn cached_pattern(source: &str, kind: u8, compile: impl FnOnce(&str) -> Pattern) -> Arc<Pattern> {
    PATTERN_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, _, p)) = cache.iter().find(|(s, k, _)| *k == kind && s == source) {
            return p.clone();
        }
        let p = Arc::new(compile(source));
        if cache.len() >= CACHE_SIZE {
            cache.remove(0);
        }
        cache.push((source.to_owned(), kind, p.clone()));
        p
    })
}

fn compile_regex(source: &str) -> Pattern {
    Pattern::new(source, Regex::new(source).ok())
}

fn regex_bool(p: &Pattern, s: &str) -> Value {
    match &p.regex {
        Some(re) => Value::Boolean(re.is_match(s)),
        None => Value::Null,
    }
}

/// Translates a SQL LIKE pattern into an anchored regex; `regex` is `None` for a malformed
/// escape.
fn compile_like(pattern: &str, escape: Option<&str>) -> Pattern {
    let esc = match escape {
        Some(e) => {
            let mut it = e.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Some(c),
                _ => return Pattern::new(pattern, None),
            }
        }
        None => None,
    };
    let mut re = String::with_capacity(pattern.len() + 8);
    re.push_str("(?s)^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            match chars.next() {
                Some(n) if n == '%' || n == '_' || Some(n) == esc => {
                    re.push_str(&regex::escape(&n.to_string()))
                }
                _ => return Pattern::new(pattern, None),
            }
        } else if c == '%' {
            re.push_str(".*");
        } else if c == '_' {
            re.push('.');
        } else {
            re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
    }
    re.push('$');
    Pattern::new(pattern, Regex::new(&re).ok())
}

/// Translates a SQL SIMILAR TO pattern (LIKE wildcards plus regex alternation, grouping and
/// repetition) into an anchored regex.
fn compile_similar(pattern: &str) -> Pattern {
    let mut re = String::from("(?s)^(?:");
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            // Calcite copies other characters into the Java regex as they are, so `.` matches
            // any character (`'a_b' SIMILAR TO 'a.b'` is true in Flink).
            '|' | '(' | ')' | '*' | '+' | '?' | '{' | '}' | '[' | ']' | '^' | '-' | '.' => {
                re.push(c)
            }
            _ => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push_str(")$");
    Pattern::new(pattern, Regex::new(&re).ok())
}

fn with_regex(
    p: &Option<Arc<Pattern>>,
    args: &[Value],
    f: impl FnOnce(&Regex, &[Value]) -> Result<Value>,
) -> Result<Value> {
    let compiled;
    let pattern = match p {
        Some(p) => p,
        None => {
            compiled = cached_pattern(arg_str(args, 1)?, 0, compile_regex);
            &compiled
        }
    };
    match &pattern.regex {
        Some(re) => f(re, args),
        None => Ok(Value::Null),
    }
}

fn regexp_extract(re: &Regex, args: &[Value]) -> Result<Value> {
    let s = arg_str(args, 0)?;
    let idx = if args.len() > 2 { arg_i64(args, 2)? } else { 0 };
    let Ok(idx) = usize::try_from(idx) else {
        return Ok(Value::Null);
    };
    if idx >= re.captures_len() {
        return Ok(Value::Null);
    }
    Ok(match re.captures(s).and_then(|c| c.get(idx)) {
        Some(m) => string(m.as_str()),
        None => Value::Null,
    })
}

fn regexp_replace(re: &Regex, args: &[Value]) -> Result<Value> {
    let s = arg_str(args, 0)?;
    let Some(replacement) = java_replacement(arg_str(args, 2)?, re.captures_len()) else {
        return Ok(Value::Null);
    };
    Ok(string(re.replace_all(s, replacement.as_str()).into_owned()))
}

/// Converts a Java `replaceAll` replacement (`$1`, `${name}`, `\$`) into the regex crate's
/// syntax; `None` for a malformed one (Flink then gives NULL).
fn java_replacement(r: &str, groups: usize) -> Option<String> {
    let mut out = String::with_capacity(r.len() + 4);
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let n = chars.next()?;
                if n == '$' {
                    out.push_str("$$");
                } else {
                    out.push(n);
                }
            }
            '$' => match chars.peek() {
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    for n in chars.by_ref() {
                        if n == '}' {
                            break;
                        }
                        name.push(n);
                    }
                    out.push_str(&format!("${{{name}}}"));
                }
                Some(d) if d.is_ascii_digit() => {
                    // Java takes further digits only while they name an existing group.
                    let mut num = d.to_digit(10)? as usize;
                    chars.next();
                    while let Some(n) = chars.peek().and_then(|c| c.to_digit(10)) {
                        let next = num * 10 + n as usize;
                        if next >= groups {
                            break;
                        }
                        num = next;
                        chars.next();
                    }
                    if num >= groups {
                        return None;
                    }
                    out.push_str(&format!("${{{num}}}"));
                }
                _ => return None,
            },
            _ => out.push(c),
        }
    }
    Some(out)
}

// ----- time ------------------------------------------------------------------------------------

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unit_of(unit: Option<TimeUnit>, args: &[Value]) -> Result<TimeUnit> {
    match unit {
        Some(u) => Ok(u),
        None => {
            let s = arg_str(args, 0)?;
            TimeUnit::parse(s).ok_or_else(|| eval_err(format!("unknown time unit '{s}'")))
        }
    }
}

/// Epoch milliseconds of a DATE, TIMESTAMP or TIMESTAMP_LTZ (UTC), or of a TIME on 1970-01-01.
fn temporal_millis(v: &Value) -> Result<i64> {
    match v {
        Value::Date(d) => Ok(i64::from(*d) * MILLIS_PER_DAY),
        Value::Timestamp(t) | Value::TimestampLtz(t) => Ok(*t),
        Value::Time(t) => Ok(i64::from(*t)),
        _ => Err(EngineError::internal("not a temporal value")),
    }
}

/// ISO-8601 week number and week-based year of a day.
fn iso_week(days: i64) -> (i64, i64) {
    let dow = (days + 3).rem_euclid(7); // Monday = 0
    let thursday = days - dow + 3;
    let (y, _, _) = format::civil_from_days(thursday);
    let jan1 = format::days_from_civil(y, 1, 1);
    ((thursday - jan1) / 7 + 1, y)
}

fn extract(unit: TimeUnit, v: &Value) -> Result<Value> {
    let r = match v {
        Value::IntervalDayTime(ms) => match unit {
            TimeUnit::Day => ms / MILLIS_PER_DAY,
            TimeUnit::Hour => ms / 3_600_000 % 24,
            TimeUnit::Minute => ms / 60_000 % 60,
            TimeUnit::Second => ms / 1000 % 60,
            TimeUnit::Millisecond => ms % 60_000,
            TimeUnit::Epoch => ms / 1000,
            _ => {
                return Err(eval_err(format!(
                    "cannot EXTRACT {unit:?} from a day-time interval"
                )))
            }
        },
        Value::IntervalYearMonth(m) => {
            let m = i64::from(*m);
            match unit {
                TimeUnit::Year => m / 12,
                TimeUnit::Month => m % 12,
                TimeUnit::Quarter => m % 12 / 3 + 1,
                _ => {
                    return Err(eval_err(format!(
                        "cannot EXTRACT {unit:?} from a year-month interval"
                    )))
                }
            }
        }
        _ => {
            let ms = temporal_millis(v)?;
            let (days, tod) = format::split_millis(ms);
            let civil = || format::civil_from_days(days);
            match unit {
                TimeUnit::Millennium => (civil().0 + 999).div_euclid(1000),
                TimeUnit::Century => (civil().0 + 99).div_euclid(100),
                TimeUnit::Decade => civil().0.div_euclid(10),
                TimeUnit::Year => civil().0,
                TimeUnit::IsoYear => iso_week(days).1,
                TimeUnit::Quarter => i64::from((civil().1 - 1) / 3 + 1),
                TimeUnit::Month => i64::from(civil().1),
                TimeUnit::Week => iso_week(days).0,
                TimeUnit::Day => i64::from(civil().2),
                TimeUnit::DayOfWeek => (days + 4).rem_euclid(7) + 1,
                TimeUnit::IsoDayOfWeek => (days + 3).rem_euclid(7) + 1,
                TimeUnit::DayOfYear => {
                    let (y, _, _) = civil();
                    days - format::days_from_civil(y, 1, 1) + 1
                }
                TimeUnit::Hour => tod / 3_600_000,
                TimeUnit::Minute => tod / 60_000 % 60,
                TimeUnit::Second => tod / 1000 % 60,
                TimeUnit::Millisecond => tod % 1000,
                TimeUnit::Microsecond => tod % 1000 * 1000,
                TimeUnit::Nanosecond => tod % 1000 * 1_000_000,
                TimeUnit::Epoch => ms.div_euclid(1000),
            }
        }
    };
    Ok(Value::BigInt(r))
}

/// Rebuilds a value of the same variant as `like` from epoch milliseconds.
fn same_kind(like: &Value, ms: i64) -> Result<Value> {
    Ok(match like {
        Value::Date(_) => Value::Date(
            i32::try_from(ms.div_euclid(MILLIS_PER_DAY))
                .map_err(|_| eval_err("date out of range"))?,
        ),
        Value::Time(_) => Value::Time(ms.rem_euclid(MILLIS_PER_DAY) as i32),
        Value::TimestampLtz(_) => Value::TimestampLtz(ms),
        _ => Value::Timestamp(ms),
    })
}

/// FLOOR(v TO unit) / CEIL(v TO unit); weeks start on Sunday, as in Flink.
fn floor_time(unit: TimeUnit, v: &Value, ceil: bool) -> Result<Value> {
    let ms = temporal_millis(v)?;
    let (days, _) = format::split_millis(ms);
    let floor = match unit {
        TimeUnit::Week => {
            let sunday = days - (days + 4).rem_euclid(7);
            sunday * MILLIS_PER_DAY
        }
        u => match (u.fixed_millis(), u.months()) {
            (Some(step), _) => ms - ms.rem_euclid(step),
            (None, Some(months)) => {
                let (y, m, _) = format::civil_from_days(days);
                let idx = y * 12 + i64::from(m) - 1;
                let start = idx - idx.rem_euclid(months);
                format::days_from_civil(start.div_euclid(12), start.rem_euclid(12) as u32 + 1, 1)
                    * MILLIS_PER_DAY
            }
            _ => return Err(eval_err(format!("cannot FLOOR or CEIL to {unit:?}"))),
        },
    };
    let overflow = || eval_err("CEIL overflow");
    let out = if ceil && floor != ms {
        match (unit.fixed_millis(), unit.months()) {
            (Some(step), _) => floor.checked_add(step).ok_or_else(overflow)?,
            (None, Some(months)) => add_months_millis(floor, months).ok_or_else(overflow)?,
            _ => floor,
        }
    } else {
        floor
    };
    same_kind(v, out)
}

fn timestamp_add(unit: TimeUnit, n: i64, v: &Value, ret: &DataType) -> Result<Value> {
    let ms = temporal_millis(v)?;
    let overflow = || eval_err("TIMESTAMPADD overflow");
    let out = match (unit.fixed_millis(), unit.months()) {
        (Some(step), _) => ms
            .checked_add(n.checked_mul(step).ok_or_else(overflow)?)
            .ok_or_else(overflow)?,
        (None, Some(months)) => add_months_millis(ms, n.checked_mul(months).ok_or_else(overflow)?)
            .ok_or_else(overflow)?,
        _ => match unit {
            TimeUnit::Microsecond => ms.checked_add(n / 1000).ok_or_else(overflow)?,
            TimeUnit::Nanosecond => ms.checked_add(n / 1_000_000).ok_or_else(overflow)?,
            _ => return Err(eval_err(format!("cannot TIMESTAMPADD {unit:?}"))),
        },
    };
    match (v, ret) {
        (Value::Date(_), DataType::Timestamp(_)) => Ok(Value::Timestamp(out)),
        _ => same_kind(v, out),
    }
}

/// Whole months from `t1` to `t0` (both epoch millis), as Calcite's `subtractMonths`.
fn subtract_months(t0: i64, t1: i64) -> i64 {
    let (d0, ms0) = format::split_millis(t0);
    let (d1, ms1) = format::split_millis(t1);
    let mut x = subtract_months_days(d0, d1);
    if add_months_days(d1, x) == Some(d0) && ms0 < ms1 {
        x -= 1;
    }
    x
}

fn subtract_months_days(d0: i64, d1: i64) -> i64 {
    if d0 < d1 {
        return -subtract_months_days(d1, d0);
    }
    // No month is longer than 31 days, so `(d0 - d1) / 31` is never too high; the calendar
    // month distance less one is not either (that month of `d1` lies before `d0`), and it is
    // within two steps of the answer, so the loop stays short for spans of any length.
    let (y0, m0, _) = format::civil_from_days(d0);
    let (y1, m1, _) = format::civil_from_days(d1);
    let calendar = (y0 * 12 + i64::from(m0)) - (y1 * 12 + i64::from(m1));
    let mut m = ((d0 - d1) / 31).max(calendar - 1);
    loop {
        // A date beyond the calendar's range is past `d0`.
        if add_months_days(d1, m).is_none_or(|d| d >= d0) {
            return m;
        }
        if add_months_days(d1, m + 1).is_none_or(|d| d > d0) {
            return m;
        }
        m += 1;
    }
}

fn timestamp_diff(unit: TimeUnit, a: &Value, b: &Value) -> Result<Value> {
    let (t1, t2) = (temporal_millis(a)?, temporal_millis(b)?);
    // Java's long subtraction, which wraps for differences beyond the i64 range.
    let diff = t2.wrapping_sub(t1);
    let r = match (unit.fixed_millis(), unit.months()) {
        (Some(step), _) => diff / step,
        (None, Some(months)) => subtract_months(t2, t1) / months,
        _ => match unit {
            TimeUnit::Microsecond => diff.saturating_mul(1000),
            TimeUnit::Nanosecond => diff.saturating_mul(1_000_000),
            _ => return Err(eval_err(format!("cannot TIMESTAMPDIFF in {unit:?}"))),
        },
    };
    // Flink's TIMESTAMPDIFF is INT: a larger difference wraps as Java's (int) cast does.
    Ok(Value::Int(r as i32))
}

fn to_timestamp_ltz(args: &[Value]) -> Result<Value> {
    let v = arg(args, 0)?;
    if let Value::String(s) = v {
        let ms = if args.len() > 1 {
            let f = cached_format(arg_str(args, 1)?);
            parse_datetime(&f, s)
        } else {
            parse_default_timestamp(s)
        };
        return Ok(ms.map_or(Value::Null, Value::TimestampLtz));
    }
    let precision = if args.len() > 1 { arg_i64(args, 1)? } else { 3 };
    let factor: f64 = match precision {
        0 => 1000.0,
        3 => 1.0,
        p => {
            return Err(eval_err(format!(
                "The precision value '{p}' for function TO_TIMESTAMP_LTZ(numeric, precision) is unsupported, the supported value is '0' for second or '3' for millisecond."
            )))
        }
    };
    let ms = match v.as_i64() {
        Some(i) => {
            if precision == 0 {
                i.checked_mul(1000)
            } else {
                Some(i)
            }
        }
        None => {
            let f = arg_f64(args, 0)? * factor;
            f.is_finite().then_some(f as i64)
        }
    };
    Ok(ms.map_or(Value::Null, Value::TimestampLtz))
}

/// TO_TIMESTAMP's default parse: `yyyy-MM-dd HH:mm:ss[.SSS]` or a date alone (an ISO `T`
/// separator gives NULL in Flink).
fn parse_default_timestamp(s: &str) -> Option<i64> {
    cast::parse_timestamp(s)
}

// ----- Java date-time patterns -----------------------------------------------------------------

fn parse_date_format(pattern: &str) -> DateFormat {
    let mut items = Vec::new();
    let mut chars = pattern.chars().peekable();
    let mut literal = String::new();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // 'quoted text'; '' is a single quote.
            if chars.peek() == Some(&'\'') {
                chars.next();
                literal.push('\'');
                continue;
            }
            while let Some(q) = chars.next() {
                if q == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        literal.push('\'');
                    } else {
                        break;
                    }
                } else {
                    literal.push(q);
                }
            }
        } else if c.is_ascii_alphabetic() {
            if !literal.is_empty() {
                items.push(FmtItem::Literal(std::mem::take(&mut literal)));
            }
            let mut count = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                count += 1;
            }
            items.push(FmtItem::Field(c, count));
        } else {
            literal.push(c);
        }
    }
    if !literal.is_empty() {
        items.push(FmtItem::Literal(literal));
    }
    DateFormat { items }
}

fn cached_format(pattern: &str) -> Arc<DateFormat> {
    thread_local! {
        static FORMATS: RefCell<Vec<(String, Arc<DateFormat>)>> = const { RefCell::new(Vec::new()) };
    }
    FORMATS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, f)) = cache.iter().find(|(p, _)| p == pattern) {
            return f.clone();
        }
        let f = Arc::new(parse_date_format(pattern));
        if cache.len() >= CACHE_SIZE {
            cache.remove(0);
        }
        cache.push((pattern.to_owned(), f.clone()));
        f
    })
}

fn with_format<T>(
    fmt: &Option<Arc<DateFormat>>,
    args: &[Value],
    i: usize,
    f: impl FnOnce(&DateFormat) -> Result<T>,
) -> Result<T> {
    match fmt {
        Some(d) => f(d),
        None => f(&cached_format(arg_str(args, i)?)),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats epoch milliseconds (UTC) with a Java `DateTimeFormatter` pattern.
fn format_datetime(f: &DateFormat, ms: i64) -> String {
    use fmt::Write;
    let (days, tod) = format::split_millis(ms);
    let (y, m, d) = format::civil_from_days(days);
    let mut out = String::with_capacity(24);
    for item in &f.items {
        match item {
            FmtItem::Literal(s) => out.push_str(s),
            FmtItem::Field(c, n) => {
                let n = *n;
                let num = |out: &mut String, v: i64| {
                    let _ = write!(out, "{v:0n$}");
                };
                match c {
                    'y' | 'u' => {
                        if n == 2 {
                            let _ = write!(out, "{:02}", y.rem_euclid(100));
                        } else {
                            num(&mut out, y);
                        }
                    }
                    'M' | 'L' => match n {
                        1 | 2 => num(&mut out, i64::from(m)),
                        3 => out.push_str(&MONTHS[(m - 1) as usize][..3]),
                        _ => out.push_str(MONTHS[(m - 1) as usize]),
                    },
                    'd' => num(&mut out, i64::from(d)),
                    'D' => num(&mut out, days - format::days_from_civil(y, 1, 1) + 1),
                    'H' => num(&mut out, tod / 3_600_000),
                    'k' => num(&mut out, (tod / 3_600_000 + 23) % 24 + 1),
                    'K' => num(&mut out, tod / 3_600_000 % 12),
                    'h' => num(&mut out, (tod / 3_600_000 + 11) % 12 + 1),
                    'm' => num(&mut out, tod / 60_000 % 60),
                    's' => num(&mut out, tod / 1000 % 60),
                    'S' => {
                        let frac = format!("{:03}", tod % 1000);
                        for i in 0..n {
                            out.push(frac.as_bytes().get(i).map_or('0', |b| char::from(*b)));
                        }
                    }
                    'a' => out.push_str(if tod < 43_200_000 { "AM" } else { "PM" }),
                    'E' => {
                        let wd = WEEKDAYS[(days + 3).rem_euclid(7) as usize];
                        out.push_str(if n >= 4 { wd } else { &wd[..3] });
                    }
                    'e' => num(&mut out, (days + 4).rem_euclid(7) + 1),
                    'Q' | 'q' => num(&mut out, i64::from((m - 1) / 3 + 1)),
                    'w' => num(&mut out, iso_week(days).0),
                    'X' => out.push('Z'),
                    'x' | 'Z' => out.push_str("+0000"),
                    'z' | 'V' => out.push_str("UTC"),
                    other => {
                        for _ in 0..n {
                            out.push(*other);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Parses `s` with a Java date-time pattern into epoch milliseconds (UTC); `None` when it does
/// not match completely.
fn parse_datetime(f: &DateFormat, s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut pos = 0;
    let (mut y, mut mo, mut d) = (1970i64, 1u32, 1u32);
    let (mut h, mut mi, mut sec, mut milli) = (0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let items = &f.items;
    for (i, item) in items.iter().enumerate() {
        match item {
            FmtItem::Literal(l) => {
                if !s[pos..].starts_with(l.as_str()) {
                    return None;
                }
                pos += l.len();
            }
            FmtItem::Field(c, n) => {
                // Adjacent numeric fields have fixed widths; otherwise read all digits.
                let next_is_field = matches!(items.get(i + 1), Some(FmtItem::Field(..)));
                let read_num = |pos: &mut usize, width: usize| -> Option<i64> {
                    let start = *pos;
                    let max = if next_is_field { width } else { 10 };
                    while *pos < b.len() && *pos - start < max && b[*pos].is_ascii_digit() {
                        *pos += 1;
                    }
                    if *pos == start {
                        return None;
                    }
                    s[start..*pos].parse().ok()
                };
                match c {
                    'y' | 'u' => y = read_num(&mut pos, *n)?,
                    'M' | 'L' if *n >= 3 => {
                        let idx = MONTHS.iter().position(|name| {
                            let cand = if *n == 3 { &name[..3] } else { name };
                            s[pos..].starts_with(cand)
                        })?;
                        pos += if *n == 3 { 3 } else { MONTHS[idx].len() };
                        mo = idx as u32 + 1;
                    }
                    'M' | 'L' => mo = u32::try_from(read_num(&mut pos, *n)?).ok()?,
                    'd' => d = u32::try_from(read_num(&mut pos, *n)?).ok()?,
                    'H' | 'k' => h = read_num(&mut pos, *n)? % 24,
                    'h' | 'K' => h = read_num(&mut pos, *n)? % 12,
                    'm' => mi = read_num(&mut pos, *n)?,
                    's' => sec = read_num(&mut pos, *n)?,
                    'S' => {
                        let start = pos;
                        let frac = read_num(&mut pos, *n)?;
                        let digits = (pos - start) as u32;
                        milli = match digits {
                            0..=3 => frac * 10i64.pow(3 - digits),
                            _ => frac / 10i64.pow(digits - 3),
                        };
                    }
                    'a' => {
                        let rest = &s[pos..];
                        if rest.starts_with("AM") || rest.starts_with("am") {
                            pm = Some(false);
                        } else if rest.starts_with("PM") || rest.starts_with("pm") {
                            pm = Some(true);
                        } else {
                            return None;
                        }
                        pos += 2;
                    }
                    'E' => {
                        let idx = WEEKDAYS.iter().position(|name| {
                            let cand = if *n >= 4 { name } else { &name[..3] };
                            s[pos..].starts_with(cand)
                        })?;
                        pos += if *n >= 4 { WEEKDAYS[idx].len() } else { 3 };
                    }
                    'X' | 'Z' | 'x' => {
                        if s[pos..].starts_with('Z') {
                            pos += 1;
                        } else if s[pos..].starts_with("+0000") || s[pos..].starts_with("+00:00") {
                            pos += if s[pos..].starts_with("+00:00") { 6 } else { 5 };
                        } else {
                            return None;
                        }
                    }
                    _ => return None,
                }
            }
        }
    }
    if pos != s.len() {
        return None;
    }
    if pm == Some(true) {
        h += 12;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > format::days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = format::days_from_civil(y, mo, d);
    Some(days * MILLIS_PER_DAY + ((h * 60 + mi) * 60 + sec) * 1000 + milli)
}

// ----- random ----------------------------------------------------------------------------------

fn thread_random<T>(f: impl FnOnce(&mut JavaRandom) -> T) -> T {
    thread_local! {
        static RNG: RefCell<JavaRandom> = RefCell::new(JavaRandom::new(now_millis() ^ 0x5DEE_CE66));
    }
    RNG.with(|r| f(&mut r.borrow_mut()))
}

// ----- digests and base64 ----------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((f64::from(i + 1)).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let w: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(w[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, s) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&s.to_le_bytes());
    }
    out
}

fn sha256(input: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (x, y) in h.iter_mut().zip(v) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in input.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&b| b == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType as T;

    fn s(x: &str) -> (Value, DataType) {
        (Value::string(x), T::STRING)
    }
    fn int(x: i32) -> (Value, DataType) {
        (Value::Int(x), T::Int)
    }
    fn big(x: i64) -> (Value, DataType) {
        (Value::BigInt(x), T::BigInt)
    }
    fn dbl(x: f64) -> (Value, DataType) {
        (Value::Double(x), T::Double)
    }
    fn dec(u: i128, p: u8, sc: u8) -> (Value, DataType) {
        (Value::Decimal(u, sc), T::Decimal(p, sc))
    }
    fn ts(text: &str) -> (Value, DataType) {
        let ms = cast::parse_timestamp(text).expect("test timestamp");
        (Value::Timestamp(ms), T::Timestamp(3))
    }

    /// Resolves with every argument literal (specialized) and without (generic), casts the
    /// arguments as the binder would, evaluates both ways and checks they agree when their
    /// result types do. Returns the specialized result and its type.
    fn call_typed(name: &str, args: &[(Value, DataType)]) -> Result<(Value, DataType)> {
        let types: Vec<DataType> = args.iter().map(|(_, t)| t.clone()).collect();
        let lits: Vec<Option<Value>> = args.iter().map(|(v, _)| Some(v.clone())).collect();
        let run = |r: &Resolved| -> Result<Value> {
            let vals = args
                .iter()
                .zip(&r.arg_types)
                .map(|((v, from), to)| cast::cast(v, from, to))
                .collect::<Result<Vec<_>>>()?;
            eval(&r.func, &vals, &r.ret)
        };
        let special = resolve_with_literals(name, &types, &lits)?;
        let generic = resolve(name, &types)?;
        let a = run(&special);
        let b = run(&generic);
        if special.ret == generic.ret && special.func.is_deterministic() {
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert!(
                    x == y || (x.is_null() && y.is_null()),
                    "{name}: specialized {x:?} != generic {y:?}"
                ),
                (Err(_), Err(_)) => {}
                _ => panic!("{name}: specialized {a:?} vs generic {b:?}"),
            }
        }
        Ok((a?, special.ret))
    }

    fn call(name: &str, args: &[(Value, DataType)]) -> Value {
        call_typed(name, args)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .0
    }

    fn text(name: &str, args: &[(Value, DataType)]) -> String {
        let (v, t) = call_typed(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        format::value_to_string(&v, &t)
    }

    fn ret_type(name: &str, types: &[DataType]) -> DataType {
        resolve(name, types)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .ret
    }

    #[test]
    fn integer_arithmetic_like_java() {
        // 001: quantity * price, price / 100, price % 100, -price + 1.
        assert_eq!(call("*", &[int(6), big(2180)]), Value::BigInt(13_080));
        assert_eq!(call("/", &[big(2180), int(100)]), Value::BigInt(21));
        assert_eq!(call("%", &[big(2180), int(100)]), Value::Int(80));
        assert_eq!(ret_type("%", &[T::BigInt, T::Int]), T::Int);
        assert_eq!(ret_type("%", &[T::Int, T::BigInt]), T::BigInt);
        assert_eq!(call("MOD", &[int(-3), int(4)]), Value::Int(-3));
        assert_eq!(call("NEG", &[big(2180)]), Value::BigInt(-2180));
        assert_eq!(call("/", &[int(-7), int(2)]), Value::Int(-3));
        assert_eq!(call("+", &[int(i32::MAX), int(1)]), Value::Int(i32::MIN));
        assert_eq!(
            call("*", &[int(2_000_000_000), int(2)]),
            Value::Int(-294_967_296)
        );
        assert_eq!(call("/", &[int(i32::MIN), int(-1)]), Value::Int(i32::MIN));
        assert_eq!(ret_type("+", &[T::TinyInt, T::TinyInt]), T::TinyInt);
        assert_eq!(
            call(
                "+",
                &[
                    (Value::TinyInt(127), T::TinyInt),
                    (Value::TinyInt(1), T::TinyInt)
                ]
            ),
            Value::TinyInt(-128)
        );
        assert_eq!(ret_type("+", &[T::Int, T::BigInt]), T::BigInt);
        let err = call_typed("/", &[int(1), int(0)]).unwrap_err();
        assert_eq!(err.to_string(), "/ by zero");
        assert!(call_typed("%", &[int(1), int(0)]).is_err());
        assert_eq!(call("+", &[(Value::Null, T::Int), int(1)]), Value::Null);
    }

    #[test]
    fn double_arithmetic() {
        assert_eq!(call("/", &[dbl(2180.0), int(8)]), Value::Double(272.5));
        assert_eq!(call("/", &[dbl(2.5), int(0)]), Value::Double(f64::INFINITY));
        assert_eq!(ret_type("+", &[T::Decimal(10, 2), T::Double]), T::Double);
        assert_eq!(ret_type("/", &[T::Int, T::Double]), T::Double);
    }

    #[test]
    fn decimal_result_types_like_flink() {
        let d = T::Decimal(10, 2);
        assert_eq!(ret_type("/", &[d.clone(), T::Int]), T::Decimal(21, 13));
        assert_eq!(
            ret_type("/", &[T::Decimal(8, 1), T::Int]),
            T::Decimal(19, 12)
        );
        assert_eq!(ret_type("/", &[d.clone(), d.clone()]), T::Decimal(23, 13));
        assert_eq!(ret_type("*", &[d.clone(), d.clone()]), T::Decimal(21, 4));
        assert_eq!(ret_type("%", &[d.clone(), T::Int]), T::Decimal(10, 2));
        assert_eq!(
            ret_type("+", &[d.clone(), T::Decimal(2, 1)]),
            T::Decimal(11, 2)
        );
        assert_eq!(
            ret_type("*", &[T::Decimal(38, 10), T::Decimal(38, 10)]),
            T::Decimal(38, 6)
        );
        assert_eq!(
            ret_type("/", &[T::Decimal(38, 10), T::Decimal(38, 10)]),
            T::Decimal(38, 6)
        );
        assert_eq!(
            ret_type("FLOOR", std::slice::from_ref(&d)),
            T::Decimal(10, 0)
        );
        assert_eq!(
            ret_type("ROUND", std::slice::from_ref(&d)),
            T::Decimal(9, 0)
        );
        assert_eq!(ret_type("SIGN", std::slice::from_ref(&d)), d);
        let r = resolve_with_literals("ROUND", &[d.clone(), T::Int], &[None, Some(Value::Int(1))])
            .unwrap();
        assert_eq!(r.ret, T::Decimal(10, 1));
    }

    #[test]
    fn decimal_arithmetic_case_008() {
        let amount = dec(62_646, 10, 2); // 626.46
        assert_eq!(text("*", &[amount.clone(), int(2)]), "1252.92");
        assert_eq!(text("+", &[amount.clone(), dec(5, 2, 1)]), "626.96");
        assert_eq!(text("-", &[amount.clone(), big(82)]), "544.46");
        assert_eq!(text("*", &[amount.clone(), int(8)]), "5011.68");
        assert_eq!(text("/", &[amount.clone(), int(3)]), "208.8200000000000");
        assert_eq!(text("/", &[amount.clone(), int(8)]), "78.3075000000000");
        assert_eq!(text("/", &[dec(2570, 10, 2), int(3)]), "8.5666666666667");
        assert_eq!(text("/", &[dec(6151, 10, 2), int(3)]), "20.5033333333333");
        assert_eq!(text("ROUND", &[amount.clone(), int(1)]), "626.5");
        assert_eq!(text("FLOOR", std::slice::from_ref(&amount)), "626");
        assert_eq!(text("CEIL", std::slice::from_ref(&amount)), "627");
        assert_eq!(text("ABS", &[dec(-37_646, 13, 2)]), "376.46");
        assert_eq!(
            call(">", &[amount.clone(), dec(10_000, 5, 2)]),
            Value::Boolean(true)
        );
        // 001: CAST(order_id AS DECIMAL(8, 1)) / 4.
        assert_eq!(text("/", &[dec(10_000, 8, 1), int(4)]), "250.000000000000");
        assert_eq!(text("FLOOR", &[dec(-25, 10, 2)]), "-1");
        assert_eq!(text("CEIL", &[dec(-25, 10, 2)]), "0");
        assert_eq!(text("MOD", &[dec(-75, 3, 1), int(2)]), "-1.5");
        assert_eq!(text("ROUND", &[dec(-384, 5, 2), int(1)]), "-3.8");
        assert_eq!(text("ROUND", &[dec(25, 5, 1)]), "3");
        assert_eq!(text("ROUND", &[dec(-25, 5, 1)]), "-3");
        assert_eq!(text("ROUND", &[dec(12_345, 10, 2), int(-1)]), "120");
        assert_eq!(text("TRUNCATE", &[dec(12_399, 10, 2), int(1)]), "123.9");
        let err = call_typed("/", &[amount.clone(), int(0)]).unwrap_err();
        assert_eq!(err.to_string(), "Division by zero");
    }

    #[test]
    fn decimal_overflow_is_null_and_wide_products_work() {
        let big_dec = dec(99_999_999_999_999_999_999_999_999_999_999_999_999, 38, 0);
        assert_eq!(call("+", &[big_dec.clone(), big_dec.clone()]), Value::Null);
        // (38,10) * (38,10) -> (38,6): 10^20 * 10^20 unscaled overflows i128 but the result fits.
        let x = dec(100_000_000_000_000_000_000, 38, 10); // 10^10
        assert_eq!(text("*", &[x.clone(), x]), "100000000000000000000.000000");
    }

    #[test]
    fn math_on_doubles_case_006() {
        assert_eq!(call("FLOOR", &[dbl(-0.96)]), Value::Double(-1.0));
        assert_eq!(text("CEIL", &[dbl(-0.96)]), "-0.0");
        assert_eq!(call("CEIL", &[dbl(19.23)]), Value::Double(20.0));
        assert_eq!(call("ROUND", &[dbl(-3.84), int(1)]), Value::Double(-3.8));
        assert_eq!(call("ROUND", &[dbl(17.46), int(1)]), Value::Double(17.5));
        assert_eq!(call("ROUND", &[dbl(0.125), int(2)]), Value::Double(0.13));
        assert_eq!(call("ROUND", &[dbl(1.005), int(2)]), Value::Double(1.01));
        assert_eq!(call("ROUND", &[dbl(2.5)]), Value::Double(3.0));
        assert_eq!(call("ROUND", &[dbl(-2.5)]), Value::Double(-3.0));
        assert_eq!(call("ROUND", &[int(7), int(-1)]), Value::Int(10));
        assert_eq!(call("TRUNCATE", &[dbl(2.567), int(2)]), Value::Double(2.56));
        assert_eq!(call("ABS", &[dbl(-3.84)]), Value::Double(3.84));
        assert_eq!(call("ABS", &[int(-5)]), Value::Int(5));
        assert_eq!(call("SQRT", &[dbl(25.0)]), Value::Double(5.0));
        let Value::Double(p) = call("POWER", &[dbl(8.12), int(2)]) else {
            panic!("POWER is DOUBLE")
        };
        assert!((p - 65.9344).abs() < 1e-9);
        assert_eq!(call("MOD", &[int(93), int(7)]), Value::Int(2));
        assert_eq!(call("/", &[int(100), int(3)]), Value::Int(33));
        assert_eq!(call("SIGN", &[dbl(-2.0)]), Value::Double(-1.0));
        assert_eq!(call("LOG", &[dbl(2.0), dbl(8.0)]), Value::Double(3.0));
        assert_eq!(ret_type("POWER", &[T::Int, T::Int]), T::Double);
    }

    #[test]
    fn comparisons() {
        assert_eq!(call("=", &[int(3), big(3)]), Value::Boolean(true));
        assert_eq!(call("<", &[dec(305, 5, 2), int(3)]), Value::Boolean(false));
        assert_eq!(call("=", &[dbl(-0.0), dbl(0.0)]), Value::Boolean(true));
        assert_eq!(
            call("=", &[dbl(f64::NAN), dbl(f64::NAN)]),
            Value::Boolean(false)
        );
        assert_eq!(call("<>", &[dbl(f64::NAN), dbl(1.0)]), Value::Boolean(true));
        assert_eq!(
            call("=", &[s("books"), (Value::string("books"), T::Char(5))]),
            Value::Boolean(true)
        );
        assert_eq!(call("<", &[s("a"), s("b")]), Value::Boolean(true));
        assert_eq!(call("=", &[(Value::Null, T::STRING), s("b")]), Value::Null);
        assert!(resolve("=", &[T::Date, T::Timestamp(3)]).is_err());
        let ltz = (Value::TimestampLtz(1000), T::TimestampLtz(3));
        assert_eq!(
            call("<", &[(Value::Timestamp(999), T::Timestamp(3)), ltz]),
            Value::Boolean(true)
        );
        let err = resolve("=", &[T::STRING, T::Int]).unwrap_err();
        assert!(err
            .to_string()
            .contains("implicit type conversion between VARCHAR and INTEGER"));
    }

    #[test]
    fn string_functions_case_004() {
        let p = s("Puzzle-500");
        assert_eq!(
            call("UPPER", std::slice::from_ref(&p)),
            Value::string("PUZZLE-500")
        );
        assert_eq!(
            call("LOWER", std::slice::from_ref(&p)),
            Value::string("puzzle-500")
        );
        assert_eq!(
            call("CONCAT", &[p.clone(), s("/"), s("toys")]),
            Value::string("Puzzle-500/toys")
        );
        assert_eq!(
            call("CONCAT", &[p.clone(), (Value::Null, T::STRING)]),
            Value::Null
        );
        assert_eq!(
            call("||", &[p.clone(), s("#")]),
            Value::string("Puzzle-500#")
        );
        assert_eq!(
            call(
                "CONCAT_WS",
                &[s("-"), s("a"), (Value::Null, T::STRING), s("b")]
            ),
            Value::string("a-b")
        );
        assert_eq!(
            call("SUBSTRING", &[p.clone(), int(1), int(4)]),
            Value::string("Puzz")
        );
        assert_eq!(
            call("SUBSTRING", &[p.clone(), int(3)]),
            Value::string("zzle-500")
        );
        assert_eq!(
            call("SUBSTRING", &[s("abcdef"), int(0), int(3)]),
            Value::string("abc")
        );
        assert_eq!(
            call("SUBSTRING", &[s("abcdef"), int(-3)]),
            Value::string("def")
        );
        assert_eq!(call("SUBSTRING", &[s("abcdef"), int(7)]), Value::string(""));
        assert_eq!(
            call("SUBSTRING", &[s("abcdef"), int(-10), int(3)]),
            Value::string("")
        );
        assert_eq!(call("CHAR_LENGTH", &[s("Chef's Knife")]), Value::Int(12));
        let note = s("  gift wrap  ");
        assert_eq!(
            call("TRIM", &[s("BOTH"), s(" "), note.clone()]),
            Value::string("gift wrap")
        );
        assert_eq!(
            call("LTRIM", std::slice::from_ref(&note)),
            Value::string("gift wrap  ")
        );
        assert_eq!(
            call("RTRIM", std::slice::from_ref(&note)),
            Value::string("  gift wrap")
        );
        assert_eq!(
            call("TRIM", &[s("LEADING"), s("x"), s("xxaxx")]),
            Value::string("axx")
        );
        assert_eq!(
            call("REPLACE", &[p.clone(), s("-"), s("_")]),
            Value::string("Puzzle_500")
        );
        assert_eq!(call("POSITION", &[s("-"), p.clone()]), Value::Int(7));
        assert_eq!(call("POSITION", &[s("-"), s("Rake")]), Value::Int(0));
        assert_eq!(
            call("LOCATE", &[s("c"), s("abcdef"), int(2)]),
            Value::Int(3)
        );
        assert_eq!(
            call("LOCATE", &[s("a"), s("banana"), int(3)]),
            Value::Int(4)
        );
        assert_eq!(
            call("INITCAP", &[s("hello wORLD-foo bar_baz 9ab")]),
            Value::string("Hello World-Foo Bar_Baz 9ab")
        );
        assert_eq!(
            call("LPAD", &[s("abcdef"), int(3), s("x")]),
            Value::string("abc")
        );
        assert_eq!(
            call("RPAD", &[s("abcdef"), int(9), s("xy")]),
            Value::string("abcdefxyx")
        );
        assert_eq!(
            call("LPAD", &[s("abcdef"), int(9), s("xy")]),
            Value::string("xyxabcdef")
        );
        assert_eq!(call("REVERSE", &[s("abc")]), Value::string("cba"));
        assert_eq!(call("REPEAT", &[s("ab"), int(3)]), Value::string("ababab"));
        assert_eq!(call("LEFT", &[s("abc"), int(2)]), Value::string("ab"));
        assert_eq!(call("RIGHT", &[s("abc"), int(2)]), Value::string("bc"));
        assert_eq!(call("CHR", &[int(65)]), Value::string("A"));
        assert_eq!(call("CHR", &[int(321)]), Value::string("A"));
        assert_eq!(call("ASCII", &[s("Abc")]), Value::Int(65));
        assert_eq!(
            call("MD5", &[s("abc")]),
            Value::string("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            call("SHA256", &[s("abc")]),
            Value::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(call("TO_BASE64", &[s("hello")]), Value::string("aGVsbG8="));
        assert_eq!(
            call("FROM_BASE64", &[s("aGVsbG8=")]),
            Value::string("hello")
        );
        assert_eq!(ret_type("||", &[T::Char(1), T::Char(2)]), T::Char(3));
        assert_eq!(ret_type("UPPER", &[T::Varchar(5)]), T::Varchar(5));
        assert_eq!(
            ret_type("SUBSTRING", &[T::Varchar(9), T::Int]),
            T::Varchar(9)
        );
        assert!(resolve("CONCAT", &[T::STRING, T::Int]).is_err());
    }

    #[test]
    fn regexp_and_split_case_005() {
        let email = s("katherine.bernerslee70@example.com");
        assert_eq!(
            call("SPLIT_INDEX", &[email.clone(), s("@"), int(0)]),
            Value::string("katherine.bernerslee70")
        );
        assert_eq!(
            call("SPLIT_INDEX", &[email.clone(), s("@"), int(1)]),
            Value::string("example.com")
        );
        assert_eq!(
            call("SPLIT_INDEX", &[s("Radia Liskov"), s(" "), int(2)]),
            Value::Null
        );
        assert_eq!(
            call("SPLIT_INDEX", &[s("a,b"), s(","), int(-1)]),
            Value::Null
        );
        assert_eq!(
            call(
                "REGEXP_EXTRACT",
                &[email.clone(), s(r"^([a-z]+)\.([a-z]+)"), int(2)]
            ),
            Value::string("bernerslee")
        );
        assert_eq!(
            call("REGEXP_EXTRACT", &[email.clone(), s("([0-9]+)@"), int(1)]),
            Value::string("70")
        );
        assert_eq!(
            call(
                "REGEXP_EXTRACT",
                &[s("radia.liskov@x"), s("([0-9]+)@"), int(1)]
            ),
            Value::Null
        );
        assert_eq!(
            call("REGEXP_EXTRACT", &[s("abc123def45"), s("[0-9]+")]),
            Value::string("123")
        );
        assert_eq!(
            call(
                "REGEXP_EXTRACT",
                &[s("abc123"), s("([a-z]+)([0-9]+)"), int(3)]
            ),
            Value::Null
        );
        assert_eq!(call("REGEXP_EXTRACT", &[s("abc"), s("(")]), Value::Null);
        assert_eq!(
            call("REGEXP_REPLACE", &[s("abcd"), s("(b)(c)"), s(r"$2$1\$")]),
            Value::string("acb$d")
        );
        assert_eq!(
            call("REGEXP", &[s("abc123"), s("[0-9]")]),
            Value::Boolean(true)
        );
    }

    #[test]
    fn like_patterns_case_003() {
        assert_eq!(
            call("LIKE", &[s("Seeds-Tomato"), s("%-%")]),
            Value::Boolean(true)
        );
        assert_eq!(
            call("LIKE", &[s("Gizmo-X2"), s("G_zmo%")]),
            Value::Boolean(true)
        );
        assert_eq!(
            call("LIKE", &[s("Gzmo"), s("G_zmo%")]),
            Value::Boolean(false)
        );
        assert_eq!(call("LIKE", &[s("a.c"), s("a.c")]), Value::Boolean(true));
        assert_eq!(call("LIKE", &[s("abc"), s("a.c")]), Value::Boolean(false));
        assert_eq!(
            call("LIKE", &[s("10%"), s("10!%"), s("!")]),
            Value::Boolean(true)
        );
        assert_eq!(
            call("LIKE", &[s("100"), s("10!%"), s("!")]),
            Value::Boolean(false)
        );
        assert_eq!(call("LIKE", &[s("a\nb"), s("a%b")]), Value::Boolean(true));
        assert_eq!(
            call("SIMILAR TO", &[s("abc"), s("(abc|def)")]),
            Value::Boolean(true)
        );
        // `.` is the regex wildcard in Calcite's SIMILAR TO translation.
        assert_eq!(
            call("SIMILAR TO", &[s("a_b%c"), s("a.b%c")]),
            Value::Boolean(true)
        );
        assert_eq!(
            call("SIMILAR TO", &[s("ab"), s("a.b")]),
            Value::Boolean(false)
        );
    }

    #[test]
    fn temporal_functions_case_007() {
        let r = ts("2024-06-01 22:42:16.356");
        let unit = |u: &str| s(u);
        assert_eq!(
            call("EXTRACT", &[unit("YEAR"), r.clone()]),
            Value::BigInt(2024)
        );
        assert_eq!(call("EXTRACT", &[unit("DAY"), r.clone()]), Value::BigInt(1));
        assert_eq!(
            call("EXTRACT", &[unit("HOUR"), r.clone()]),
            Value::BigInt(22)
        );
        assert_eq!(
            call("EXTRACT", &[unit("MINUTE"), r.clone()]),
            Value::BigInt(42)
        );
        assert_eq!(
            call("EXTRACT", &[unit("SECOND"), r.clone()]),
            Value::BigInt(16)
        );
        assert_eq!(
            call("EXTRACT", &[unit("MILLISECOND"), r.clone()]),
            Value::BigInt(356)
        );
        assert_eq!(
            call("DATE_FORMAT", &[r.clone(), s("yyyy-MM-dd HH:mm")]),
            Value::string("2024-06-01 22:42")
        );
        assert_eq!(
            text("FLOOR_TIME", &[unit("HOUR"), r.clone()]),
            "2024-06-01 22:00:00.000"
        );
        assert_eq!(
            text("CEIL_TIME", &[unit("MINUTE"), r.clone()]),
            "2024-06-01 22:43:00.000"
        );
        assert_eq!(
            text("TIMESTAMPADD", &[unit("MINUTE"), int(45), r.clone()]),
            "2024-06-01 23:27:16.356"
        );
        let day = (Value::IntervalDayTime(MILLIS_PER_DAY), T::IntervalDayTime);
        assert_eq!(text("-", &[r.clone(), day]), "2024-05-31 22:42:16.356");
        let t23 = call("TO_TIMESTAMP", &[s("2024-06-01 23:00:00")]);
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[unit("SECOND"), (t23, T::Timestamp(3)), r.clone()]
            ),
            Value::Int(-1063)
        );
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[unit("MINUTE"), r.clone(), ts("2024-06-02 00:00:00")]
            ),
            Value::Int(77)
        );
    }

    #[test]
    fn temporal_edge_cases_match_flink() {
        let t = ts("2024-03-10 08:00:07.643");
        let u = |x: &str| s(x);
        assert_eq!(call("EXTRACT", &[u("DOW"), t.clone()]), Value::BigInt(1));
        assert_eq!(call("EXTRACT", &[u("WEEK"), t.clone()]), Value::BigInt(10));
        assert_eq!(call("EXTRACT", &[u("DOY"), t.clone()]), Value::BigInt(70));
        assert_eq!(
            call("EXTRACT", &[u("EPOCH"), t.clone()]),
            Value::BigInt(1_710_057_607)
        );
        assert_eq!(
            call("EXTRACT", &[u("QUARTER"), t.clone()]),
            Value::BigInt(1)
        );
        assert_eq!(call("YEAR", std::slice::from_ref(&t)), Value::BigInt(2024));
        let ninety = (Value::IntervalDayTime(90_000), T::IntervalDayTime);
        assert_eq!(call("EXTRACT", &[u("SECOND"), ninety]), Value::BigInt(30));
        assert_eq!(
            text("FLOOR_TIME", &[u("WEEK"), t.clone()]),
            "2024-03-10 00:00:00.000"
        );
        assert_eq!(
            text("CEIL_TIME", &[u("MONTH"), t.clone()]),
            "2024-04-01 00:00:00.000"
        );
        let leap = (Value::Date(19_782), T::Date); // 2024-02-29
        assert_eq!(
            text("FLOOR_TIME", &[u("MONTH"), leap.clone()]),
            "2024-02-01"
        );
        assert_eq!(
            text(
                "DATE_FORMAT",
                &[t.clone(), s("EEE MMM d yyyy h:mm a S SSS")]
            ),
            "Sun Mar 10 2024 8:00 AM 6 643"
        );
        assert_eq!(
            text(
                "TIMESTAMPADD",
                &[u("MONTH"), int(1), ts("2024-01-31 00:00:00")]
            ),
            "2024-02-29 00:00:00.000"
        );
        let r = resolve_with_literals(
            "TIMESTAMPADD",
            &[T::STRING, T::Int, T::Date],
            &[Some(Value::string("HOUR")), None, None],
        )
        .unwrap();
        assert_eq!(r.ret, T::Timestamp(6));
        assert_eq!(
            ret_type("TIMESTAMPADD", &[T::STRING, T::Int, T::Date]),
            T::Date
        );
        let hours = (Value::IntervalDayTime(25 * 3_600_000), T::IntervalDayTime);
        assert_eq!(text("+", &[leap.clone(), hours]), "2024-03-01");
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[
                    u("MONTH"),
                    ts("2024-01-31 10:00:00"),
                    ts("2024-02-29 09:00:00")
                ]
            ),
            Value::Int(0)
        );
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[
                    u("DAY"),
                    (Value::Date(19_723), T::Date),
                    ts("2024-01-03 09:00:00")
                ]
            ),
            Value::Int(2)
        );
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[
                    u("YEAR"),
                    ts("2024-03-10 00:00:00"),
                    ts("2020-03-11 00:00:00")
                ]
            ),
            Value::Int(-3)
        );
        assert_eq!(
            call("FROM_UNIXTIME", &[big(0)]),
            Value::string("1970-01-01 00:00:00")
        );
        assert_eq!(
            call("TO_TIMESTAMP_LTZ", &[big(1500), int(3)]),
            Value::TimestampLtz(1500)
        );
        assert_eq!(
            call("TO_TIMESTAMP_LTZ", &[big(1500), int(0)]),
            Value::TimestampLtz(1_500_000)
        );
        assert_eq!(
            call("UNIX_TIMESTAMP", &[s("2024-03-10 08:00:07")]),
            Value::BigInt(1_710_057_607)
        );
        assert_eq!(
            call("TO_DATE", &[s("20240310"), s("yyyyMMdd")]),
            Value::Date(19_792)
        );
        assert_eq!(
            text("TO_TIMESTAMP", &[s("10/03/2024 08"), s("dd/MM/yyyy HH")]),
            "2024-03-10 08:00:00.000"
        );
        assert_eq!(call("TO_TIMESTAMP", &[s("bad")]), Value::Null);
        assert_eq!(
            call("TO_TIMESTAMP", &[s("2024-03-10T08:00:07")]),
            Value::Null
        );
        assert!(resolve(
            "TIMESTAMPDIFF",
            &[T::STRING, T::Timestamp(3), T::TimestampLtz(3)]
        )
        .is_err());
        assert_eq!(
            call("SPLIT_INDEX", &[s("abcdef"), s("cd"), int(1)]),
            Value::string("ef")
        );
        assert_eq!(call("UNIX_TIMESTAMP", &[s("bad")]), Value::BigInt(i64::MIN));
        assert_eq!(
            call("SUBSTRING", &[s("abcdef"), int(2), int(-1)]),
            Value::Null
        );
        let month = (Value::IntervalYearMonth(1), T::IntervalYearMonth);
        assert_eq!(
            text("+", &[ts("2024-01-31 12:00:00"), month]),
            "2024-02-29 12:00:00.000"
        );
    }

    #[test]
    fn conditional_functions() {
        let t = (Value::Boolean(true), T::Boolean);
        let n = (Value::Null, T::Boolean);
        assert_eq!(call("IF", &[t, int(1), big(2)]), Value::BigInt(1));
        assert_eq!(call("IF", &[n, int(1), int(2)]), Value::Int(2));
        assert_eq!(
            ret_type("GREATEST", &[T::Int, T::Decimal(10, 2)]),
            T::Decimal(12, 2)
        );
        assert_eq!(call("GREATEST", &[int(1), int(5), int(3)]), Value::Int(5));
        assert_eq!(call("LEAST", &[int(1), (Value::Null, T::Int)]), Value::Null);
    }

    #[test]
    fn unknown_and_mistyped_functions() {
        let e = resolve("FOO", &[T::Int]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "No match found for function signature FOO(<NUMERIC>)"
        );
        let e = resolve("UPPER", &[T::Int]).unwrap_err();
        assert!(e.to_string().starts_with("Cannot apply 'UPPER'"));
        assert!(is_known_function("SPLIT_INDEX"));
        assert!(!is_known_function("FOO"));
        for name in function_names() {
            assert!(is_known_function(name));
        }
    }

    #[test]
    fn determinism_and_random() {
        assert!(!ScalarFunction::CurrentTimestamp.is_deterministic());
        assert!(ScalarFunction::Upper.is_deterministic());
        // java.util.Random(42).nextDouble()
        let mut r = JavaRandom::new(42);
        assert!((r.next_double() - 0.7275636800328681).abs() < 1e-16);
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(10), 0);
        let Value::Double(x) = call("RAND", &[]) else {
            panic!("RAND is DOUBLE")
        };
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn specialized_functions_compare_by_pattern() {
        let a = specialize(
            &ScalarFunction::Like(None),
            &[None, Some(Value::string("a%"))],
        );
        let b = specialize(
            &ScalarFunction::Like(None),
            &[None, Some(Value::string("a%"))],
        );
        assert_eq!(a, b);
        assert!(matches!(a, ScalarFunction::Like(Some(_))));
    }

    #[test]
    fn calendar_overflow_is_an_error_not_a_panic() {
        let far = |ms: i64| (Value::TimestampLtz(ms), T::TimestampLtz(3));
        let months = (Value::IntervalYearMonth(i32::MAX), T::IntervalYearMonth);
        assert!(call_typed(
            "TIMESTAMPADD",
            &[s("MONTH"), big(i64::MAX), ts("2020-01-01 00:00:00")]
        )
        .is_err());
        assert!(call_typed("TIMESTAMPADD", &[s("YEAR"), big(i64::MAX / 12), far(0)]).is_err());
        assert!(call_typed("+", &[far(i64::MAX - 1), months.clone()]).is_err());
        assert!(call_typed("+", &[(Value::Date(i32::MAX), T::Date), months]).is_err());
        assert!(call_typed("CEIL_TIME", &[s("DAY"), far(i64::MAX)]).is_err());
        assert!(call_typed("CEIL_TIME", &[s("MONTH"), far(i64::MAX)]).is_err());
        // Java's long subtraction wraps; the INT result then wraps too.
        assert!(call_typed(
            "TIMESTAMPDIFF",
            &[s("SECOND"), far(i64::MIN + 1), far(i64::MAX)]
        )
        .is_ok());
        assert!(call_typed(
            "TIMESTAMPDIFF",
            &[s("MONTH"), far(i64::MIN + 1), far(i64::MAX)]
        )
        .is_ok());
        // Month differences over long spans are exact (and quick).
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[
                    s("YEAR"),
                    ts("1970-01-01 00:00:00"),
                    ts("9970-01-01 00:00:00")
                ]
            ),
            Value::Int(8000)
        );
        assert_eq!(
            call(
                "TIMESTAMPDIFF",
                &[
                    s("MONTH"),
                    ts("9970-01-31 00:00:00"),
                    ts("1970-03-01 00:00:00")
                ]
            ),
            Value::Int(-95_998)
        );
        // In range, month arithmetic still clamps to the month's end.
        assert_eq!(
            text(
                "TIMESTAMPADD",
                &[s("MONTH"), int(-1), ts("2024-03-31 10:00:00")]
            ),
            "2024-02-29 10:00:00.000"
        );
    }
}
