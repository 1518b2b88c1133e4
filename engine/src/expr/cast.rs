//! CAST between types with Flink's rules, plus the exact decimal and text-parsing helpers that
//! casts and functions share.
//!
//! The rules, as Flink 2.x applies them at runtime:
//! - integer narrowing wraps (Java primitive casts); DECIMAL to an integer truncates toward zero
//!   and then wraps; DOUBLE/FLOAT to INT or BIGINT saturates (NaN gives 0), to TINYINT or
//!   SMALLINT saturates to INT first and then wraps, as Java's `(byte) d` does;
//! - to DECIMAL(p, s) rounds HALF_UP; a value that does not fit `p` digits gives NULL (Flink's
//!   `DecimalData.fromBigDecimal`), not an error; DOUBLE goes through its shortest decimal text
//!   (`BigDecimal.valueOf`), so 0.125 rounds to 0.13;
//! - STRING to an integer trims spaces, accepts a sign, truncates a fraction (`'3.5'` is 3,
//!   `'.5'` is 0) and rejects anything else (`'2e3'`, `'A-77'`, `'1,5'`); STRING to DOUBLE
//!   accepts Java's `Double.parseDouble` syntax (`'2e3'`); STRING to DECIMAL accepts an exponent;
//! - STRING to DATE takes the part before a space (`'2024-03-10 08:00'` is a date) and allows
//!   one-digit months and days; STRING to TIMESTAMP takes a date, optionally followed by ` ` or
//!   `T` and `h:m[:s[.fraction]]`;
//! - anything to CHAR(n) is cut to n characters and padded with spaces, to VARCHAR(n) cut;
//! - TIMESTAMP <-> TIMESTAMP_LTZ and DATE <-> TIMESTAMP_LTZ use UTC, the session time zone the
//!   engine assumes.
//!
//! A failing cast is an `EngineError::Eval`; `TRY_CAST` (handled by the caller) turns it into
//! NULL.

use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::expr::format;
use crate::types::{DataType, STRING_MAX};
use crate::value::Value;

/// Largest precision of a DECIMAL.
pub const MAX_PRECISION: u8 = 38;

/// Powers of ten that fit an `i128` (10^0 ..= 10^38).
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// 10^n for n <= 38, `None` beyond.
pub fn pow10(n: u32) -> Option<i128> {
    POW10.get(usize::try_from(n).ok()?).copied()
}

/// Divides `v` by 10^`n`, rounding HALF_UP (half away from zero), as `BigDecimal.setScale`
/// with `RoundingMode.HALF_UP` does.
pub fn div_pow10_half_up(v: i128, n: u32) -> i128 {
    let Some(d) = pow10(n) else {
        return 0;
    };
    let q = v / d;
    let r = v % d;
    if r.unsigned_abs() * 2 >= d.unsigned_abs() {
        q + v.signum()
    } else {
        q
    }
}

/// Changes the scale of an unscaled decimal, rounding HALF_UP when digits are dropped; `None`
/// when the result does not fit an `i128`.
pub fn rescale(v: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        v.checked_mul(pow10(u32::from(to - from))?)
    } else {
        Some(div_pow10_half_up(v, u32::from(from - to)))
    }
}

/// True when `v` has at most `precision` digits.
pub fn fits_precision(v: i128, precision: u8) -> bool {
    match pow10(u32::from(precision)) {
        Some(limit) => v.unsigned_abs() < limit.unsigned_abs(),
        None => true,
    }
}

/// Rounds `v` (at scale `from`) to DECIMAL(precision, to): `None` when it does not fit, which
/// Flink turns into NULL.
pub fn to_decimal(v: i128, from: u8, precision: u8, to: u8) -> Option<Value> {
    let r = rescale(v, from, to)?;
    fits_precision(r, precision).then_some(Value::Decimal(r, to))
}

/// The `f64` nearest to an unscaled decimal, as `BigDecimal.doubleValue` gives it.
pub fn decimal_to_f64(v: i128, scale: u8) -> f64 {
    // Both operands exact and one division: correctly rounded. Otherwise parse the text, which
    // Rust rounds correctly too.
    if v.unsigned_abs() < (1u128 << 53) && scale <= 22 {
        return v as f64 / 10f64.powi(i32::from(scale));
    }
    let mut s = String::with_capacity(48);
    format::write_decimal(&mut s, v, scale);
    s.parse().unwrap_or(f64::NAN)
}

/// DECIMAL(precision, scale) of a double, through its shortest decimal text and HALF_UP
/// rounding (Java's `BigDecimal.valueOf(d).setScale(scale, HALF_UP)`). `None` when it does not
/// fit; an error for NaN and infinities.
pub fn f64_to_decimal(d: f64, precision: u8, scale: u8) -> Result<Option<Value>> {
    if !d.is_finite() {
        return Err(EngineError::eval(format!(
            "Cannot cast {} to DECIMAL({precision}, {scale}): not a finite number",
            format_f64(d)
        )));
    }
    if d == 0.0 {
        return Ok(Some(Value::Decimal(0, scale)));
    }
    let (digits, exp) = format::shortest_digits(d);
    // value = 0.digits * 10^exp = digits * 10^(exp - len)
    let frac_digits = digits.len() as i64 - i64::from(exp);
    let mut unscaled: i128 = 0;
    for b in digits.bytes() {
        unscaled = match unscaled
            .checked_mul(10)
            .and_then(|u| u.checked_add(i128::from(b - b'0')))
        {
            Some(u) => u,
            None => return Ok(None),
        };
    }
    let shift = i64::from(scale) - frac_digits;
    let r = if shift >= 0 {
        match u32::try_from(shift)
            .ok()
            .and_then(pow10)
            .and_then(|m| unscaled.checked_mul(m))
        {
            Some(v) => v,
            None => return Ok(None),
        }
    } else {
        match u32::try_from(-shift) {
            Ok(n) if n <= 38 => div_pow10_half_up(unscaled, n),
            _ => 0,
        }
    };
    let r = if d < 0.0 { -r } else { r };
    Ok(fits_precision(r, precision).then_some(Value::Decimal(r, scale)))
}

fn format_f64(d: f64) -> String {
    let mut s = String::new();
    format::write_double(&mut s, d);
    s
}

/// Parses a decimal number (`-12.5`, `.5`, `1e2`, `+3`) into an unscaled value and scale.
pub fn parse_decimal(s: &str) -> Option<(i128, u8)> {
    let s = s.trim();
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (neg, body) = match mantissa.as_bytes().first()? {
        b'-' => (true, &mantissa[1..]),
        b'+' => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut unscaled: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    let mut scale = i32::try_from(frac.len()).ok()? - exp;
    if scale < 0 {
        unscaled = unscaled.checked_mul(pow10(u32::try_from(-scale).ok()?)?)?;
        scale = 0;
    }
    let scale = u8::try_from(scale).ok()?;
    Some((if neg { -unscaled } else { unscaled }, scale))
}

/// Parses an integer as Flink's `BinaryStringDataUtil.toLong` does (after trimming): optional
/// sign, digits, and an optional `.` followed only by digits, which are dropped.
pub fn parse_integer(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (neg, mut i) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    if i == b.len() {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut acc: i64 = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c == b'.' {
            break;
        }
        if !c.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
    }
    if !b[i..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if neg {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

/// Parses a double as Java's `Double.parseDouble` does for the common forms: decimal and
/// exponent notation, an optional `d`/`f` suffix, `NaN` and `Infinity`.
pub fn parse_double(s: &str) -> Option<f64> {
    let s = s.trim();
    match s {
        "NaN" => return Some(f64::NAN),
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    let s = s.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(s);
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_u32_field(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a date as Flink's `DateTimeUtils.parseDate`: `yyyy[-m[-d]]`, ignoring anything after
/// the first space. Returns days since the epoch, `None` for a malformed or impossible date.
pub fn parse_date(s: &str) -> Option<i32> {
    let s = s.trim();
    let s = s.split_once(' ').map_or(s, |(d, _)| d);
    let mut parts = s.splitn(3, '-');
    let (neg, first) = match parts.next()? {
        p if p.starts_with('-') => (true, &p[1..]),
        p => (false, p),
    };
    let mut y = i64::from(parse_u32_field(first)?);
    if neg {
        y = -y;
    }
    let m = parts.next().map_or(Some(1), parse_u32_field)?;
    let d = parts.next().map_or(Some(1), parse_u32_field)?;
    if !(1..=12).contains(&m) || d < 1 || d > format::days_in_month(y, m) {
        return None;
    }
    i32::try_from(format::days_from_civil(y, m, d)).ok()
}

/// Parses `h:m[:s[.fraction]]` into milliseconds of the day (fraction digits beyond the third
/// are dropped).
pub fn parse_time(s: &str) -> Option<i32> {
    let s = s.trim();
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.splitn(3, ':');
    let h = parse_u32_field(parts.next()?)?;
    let m = parse_u32_field(parts.next()?)?;
    let sec = parts.next().map_or(Some(0), parse_u32_field)?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let mut millis = 0u32;
    for i in 0..3 {
        millis = millis * 10 + frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
    }
    i32::try_from(((h * 60 + m) * 60 + sec) * 1000 + millis).ok()
}

/// Parses a timestamp as Flink's CAST does: a date (see [`parse_date`], but with full
/// `yyyy-mm-dd`) optionally followed by a space and a time (see [`parse_time`]); an ISO `T`
/// separator is rejected, as in Flink. Returns epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = match s.find(' ') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if date.matches('-').count() != 2 {
        return None;
    }
    let days = parse_date(date)?;
    let ms = match time {
        Some(t) => parse_time(t)?,
        None => 0,
    };
    Some(i64::from(days) * format::MILLIS_PER_DAY + i64::from(ms))
}

/// Drops the sub-precision part of epoch milliseconds (TIMESTAMP(p) with p < 3).
pub fn truncate_millis(ms: i64, precision: u8) -> i64 {
    match precision {
        0 => ms - ms.rem_euclid(1000),
        1 => ms - ms.rem_euclid(100),
        2 => ms - ms.rem_euclid(10),
        _ => ms,
    }
}

fn cast_error(v: &Value, from: &DataType, to: &DataType) -> EngineError {
    let mut text = String::new();
    format::write_value(&mut text, v, from);
    EngineError::eval(format!("Cannot cast '{text}' of type {from} to {to}"))
}

fn number_format_error(s: &str, to: &DataType) -> EngineError {
    EngineError::eval(format!(
        "java.lang.NumberFormatException: For input string: '{s}' (casting to {to})"
    ))
}

/// Casts `v` (of type `from`) to `to`. An error where Flink's CAST fails; TRY_CAST turns it into
/// NULL.
pub fn cast(v: &Value, from: &DataType, to: &DataType) -> Result<Value> {
    if v.is_null() || from == to {
        return Ok(v.clone());
    }
    match to {
        DataType::Null => Ok(Value::Null),
        DataType::Boolean => to_boolean(v, from, to),
        DataType::TinyInt | DataType::SmallInt | DataType::Int | DataType::BigInt => {
            to_integer(v, from, to)
        }
        DataType::Float | DataType::Double => to_float(v, from, to),
        DataType::Row(to_fields) => match (v, from) {
            // Field by field, between rows of the same arity (the only ROW cast Flink allows).
            (Value::Row(values), DataType::Row(from_fields))
                if values.len() == to_fields.len() && from_fields.len() == to_fields.len() =>
            {
                let mut out = Vec::with_capacity(values.len());
                for ((v, f), t) in values.iter().zip(from_fields.iter()).zip(to_fields.iter()) {
                    out.push(cast(v, &f.data_type, &t.data_type)?);
                }
                Ok(Value::Row(out.into()))
            }
            _ => Err(cast_error(v, from, to)),
        },
        DataType::Decimal(p, s) => to_decimal_value(v, from, to, *p, *s),
        DataType::Char(n) => Ok(to_char(v, from, *n, true)),
        DataType::Varchar(n) => Ok(to_char(v, from, *n, false)),
        DataType::Date => match v {
            Value::Date(_) => Ok(v.clone()),
            Value::Timestamp(ms) | Value::TimestampLtz(ms) => {
                let days = format::split_millis(*ms).0;
                i32::try_from(days)
                    .map(Value::Date)
                    .map_err(|_| cast_error(v, from, to))
            }
            Value::String(s) => parse_date(s)
                .map(Value::Date)
                .ok_or_else(|| cast_error(v, from, to)),
            _ => Err(cast_error(v, from, to)),
        },
        DataType::Time(p) => {
            let ms = match v {
                Value::Time(ms) => i64::from(*ms),
                Value::Timestamp(ms) | Value::TimestampLtz(ms) => format::split_millis(*ms).1,
                Value::String(s) => {
                    i64::from(parse_time(s).ok_or_else(|| cast_error(v, from, to))?)
                }
                _ => return Err(cast_error(v, from, to)),
            };
            let ms = i32::try_from(truncate_millis(ms, *p)).map_err(|_| cast_error(v, from, to))?;
            Ok(Value::Time(ms))
        }
        DataType::Timestamp(p) | DataType::TimestampLtz(p) => {
            let ms = match v {
                Value::Timestamp(ms) | Value::TimestampLtz(ms) => *ms,
                Value::Date(d) => i64::from(*d) * format::MILLIS_PER_DAY,
                Value::String(s) => parse_timestamp(s).ok_or_else(|| cast_error(v, from, to))?,
                // Flink reads a number cast to TIMESTAMP_LTZ as epoch seconds.
                _ if matches!(to, DataType::TimestampLtz(_)) && from.is_numeric() => {
                    match v.as_i64() {
                        Some(secs) => secs.wrapping_mul(1000),
                        None => {
                            let f = v.as_f64().unwrap_or(f64::NAN);
                            if !f.is_finite() {
                                return Err(cast_error(v, from, to));
                            }
                            (f * 1000.0) as i64
                        }
                    }
                }
                _ => return Err(cast_error(v, from, to)),
            };
            let ms = truncate_millis(ms, *p);
            Ok(if matches!(to, DataType::Timestamp(_)) {
                Value::Timestamp(ms)
            } else {
                Value::TimestampLtz(ms)
            })
        }
        DataType::IntervalDayTime => match v {
            Value::IntervalDayTime(_) => Ok(v.clone()),
            _ => Err(cast_error(v, from, to)),
        },
        DataType::IntervalYearMonth => match v {
            Value::IntervalYearMonth(_) => Ok(v.clone()),
            _ => Err(cast_error(v, from, to)),
        },
    }
}

fn to_boolean(v: &Value, from: &DataType, to: &DataType) -> Result<Value> {
    match v {
        Value::Boolean(_) => Ok(v.clone()),
        Value::String(s) => {
            let t = s.trim();
            // Flink's BinaryStringDataUtil.toBoolean word lists.
            const TRUE: [&str; 5] = ["t", "true", "y", "yes", "1"];
            const FALSE: [&str; 5] = ["f", "false", "n", "no", "0"];
            if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
                Ok(Value::Boolean(true))
            } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
                Ok(Value::Boolean(false))
            } else {
                Err(cast_error(v, from, to))
            }
        }
        Value::Decimal(u, _) => Ok(Value::Boolean(*u != 0)),
        _ => match (v.as_i64(), v.as_f64()) {
            (Some(i), _) => Ok(Value::Boolean(i != 0)),
            (None, Some(f)) => Ok(Value::Boolean(f != 0.0)),
            _ => Err(cast_error(v, from, to)),
        },
    }
}

/// Wraps an i64 into the integer type `to`, as Java's narrowing casts do.
fn wrap_integer(i: i64, to: &DataType) -> Value {
    match to {
        DataType::TinyInt => Value::TinyInt(i as i8),
        DataType::SmallInt => Value::SmallInt(i as i16),
        DataType::Int => Value::Int(i as i32),
        _ => Value::BigInt(i),
    }
}

fn to_integer(v: &Value, from: &DataType, to: &DataType) -> Result<Value> {
    let i = match v {
        Value::TinyInt(_) | Value::SmallInt(_) | Value::Int(_) | Value::BigInt(_) => {
            v.as_i64().unwrap_or(0)
        }
        Value::Boolean(b) => i64::from(*b),
        // Truncate toward zero, keep the low 64 bits (BigDecimal.longValue).
        Value::Decimal(u, s) => (*u / pow10(u32::from(*s)).unwrap_or(1)) as i64,
        Value::Float(_) | Value::Double(_) => {
            let f = v.as_f64().unwrap_or(0.0);
            // Java saturates a double to int or long, then narrows int to byte/short by wrapping.
            return Ok(match to {
                DataType::BigInt => Value::BigInt(f as i64),
                DataType::Int => Value::Int(f as i32),
                DataType::SmallInt => Value::SmallInt((f as i32) as i16),
                _ => Value::TinyInt((f as i32) as i8),
            });
        }
        Value::String(s) => {
            let t = s.trim();
            let parsed = parse_integer(t).ok_or_else(|| number_format_error(s, to))?;
            let in_range = match to {
                DataType::TinyInt => i8::try_from(parsed).is_ok(),
                DataType::SmallInt => i16::try_from(parsed).is_ok(),
                DataType::Int => i32::try_from(parsed).is_ok(),
                _ => true,
            };
            if !in_range {
                return Err(number_format_error(s, to));
            }
            parsed
        }
        Value::TimestampLtz(ms) if matches!(to, DataType::BigInt | DataType::Int) => {
            ms.div_euclid(1000)
        }
        _ => return Err(cast_error(v, from, to)),
    };
    Ok(wrap_integer(i, to))
}

fn to_float(v: &Value, from: &DataType, to: &DataType) -> Result<Value> {
    let f = match v {
        Value::Decimal(u, s) => decimal_to_f64(*u, *s),
        Value::Boolean(b) => f64::from(u8::from(*b)),
        Value::Float(x) if matches!(to, DataType::Float) => return Ok(Value::Float(*x)),
        Value::String(s) => parse_double(s).ok_or_else(|| number_format_error(s, to))?,
        _ => v.as_f64().ok_or_else(|| cast_error(v, from, to))?,
    };
    Ok(if matches!(to, DataType::Float) {
        Value::Float(f as f32)
    } else {
        Value::Double(f)
    })
}

fn to_decimal_value(v: &Value, from: &DataType, to: &DataType, p: u8, s: u8) -> Result<Value> {
    let out = match v {
        Value::Decimal(u, vs) => to_decimal(*u, *vs, p, s),
        Value::Boolean(b) => to_decimal(i128::from(*b), 0, p, s),
        Value::Float(_) | Value::Double(_) => {
            let f = match v {
                // Float.toString digits, as BigDecimal.valueOf((double) f) would not be.
                Value::Float(x) => {
                    let mut t = String::new();
                    format::write_float(&mut t, *x);
                    t.parse().unwrap_or(f64::NAN)
                }
                _ => v.as_f64().unwrap_or(f64::NAN),
            };
            f64_to_decimal(f, p, s)?
        }
        Value::String(text) => {
            let (u, vs) = parse_decimal(text).ok_or_else(|| number_format_error(text, to))?;
            to_decimal(u, vs, p, s)
        }
        _ => match v.as_i64() {
            Some(i) => to_decimal(i128::from(i), 0, p, s),
            None => return Err(cast_error(v, from, to)),
        },
    };
    Ok(out.unwrap_or(Value::Null))
}

/// Renders `v` as text and fits it to CHAR(n) (cut and padded) or VARCHAR(n) (cut).
fn to_char(v: &Value, from: &DataType, n: u32, pad: bool) -> Value {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let text: Arc<str> = match v {
        Value::String(s) => {
            if (n == STRING_MAX as usize || s.len() <= n) && !pad {
                return v.clone();
            }
            s.clone()
        }
        _ => {
            let mut t = String::new();
            format::write_value(&mut t, v, from);
            Arc::from(t)
        }
    };
    let count = if text.len() <= n && !pad {
        return Value::String(text);
    } else {
        text.chars().count()
    };
    if count == n || (count < n && !pad) {
        return Value::String(text);
    }
    let mut out: String = text.chars().take(n).collect();
    if pad {
        for _ in count..n {
            out.push(' ');
        }
    }
    Value::String(Arc::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: Value, from: DataType, to: DataType) -> Result<Value> {
        cast(&v, &from, &to)
    }

    fn s(text: &str) -> Value {
        Value::string(text)
    }

    fn text_of(v: Value) -> String {
        match v {
            Value::String(s) => s.to_string(),
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn string_to_int_like_flink() {
        let to_int = |t: &str| c(s(t), DataType::STRING, DataType::Int).ok();
        assert_eq!(to_int("  17"), Some(Value::Int(17)));
        assert_eq!(to_int("88 "), Some(Value::Int(88)));
        assert_eq!(to_int("3.5"), Some(Value::Int(3)));
        assert_eq!(to_int("0.75"), Some(Value::Int(0)));
        assert_eq!(to_int("-12"), Some(Value::Int(-12)));
        assert_eq!(to_int("0009"), Some(Value::Int(9)));
        assert_eq!(to_int("1042"), Some(Value::Int(1042)));
        assert_eq!(to_int("2e3"), None);
        assert_eq!(to_int("A-77"), None);
        assert_eq!(to_int("1,5"), None);
        assert_eq!(to_int(""), None);
        assert_eq!(to_int("-"), None);
        assert_eq!(to_int("99999999999"), None);
        assert_eq!(
            c(s("99999999999"), DataType::STRING, DataType::BigInt).ok(),
            Some(Value::BigInt(99_999_999_999))
        );
    }

    #[test]
    fn string_to_double_and_decimal() {
        let to_d = |t: &str| c(s(t), DataType::STRING, DataType::Double).ok();
        assert_eq!(to_d("2e3"), Some(Value::Double(2000.0)));
        assert_eq!(to_d("3.5"), Some(Value::Double(3.5)));
        assert_eq!(to_d("  17"), Some(Value::Double(17.0)));
        assert_eq!(to_d("A-77"), None);
        assert_eq!(to_d("1,5"), None);
        assert_eq!(to_d("inf"), None);
        let to_dec = |t: &str| c(s(t), DataType::STRING, DataType::Decimal(5, 2)).ok();
        assert_eq!(to_dec(" 5.5"), Some(Value::Decimal(550, 2)));
        assert_eq!(to_dec("7.125"), Some(Value::Decimal(713, 2)));
        assert_eq!(to_dec("1e2"), Some(Value::Decimal(10000, 2)));
        assert_eq!(to_dec("1000"), Some(Value::Null));
        assert_eq!(to_dec("abc"), None);
    }

    #[test]
    fn numeric_narrowing() {
        assert_eq!(
            c(
                Value::Decimal(13_080, 2),
                DataType::Decimal(10, 2),
                DataType::BigInt
            )
            .unwrap(),
            Value::BigInt(130)
        );
        assert_eq!(
            c(
                Value::Decimal(-2_599, 2),
                DataType::Decimal(10, 2),
                DataType::Int
            )
            .unwrap(),
            Value::Int(-25)
        );
        assert_eq!(
            c(Value::Double(1e10), DataType::Double, DataType::Int).unwrap(),
            Value::Int(i32::MAX)
        );
        assert_eq!(
            c(Value::Double(f64::NAN), DataType::Double, DataType::BigInt).unwrap(),
            Value::BigInt(0)
        );
        assert_eq!(
            c(Value::Double(1e10), DataType::Double, DataType::TinyInt).unwrap(),
            Value::TinyInt(-1)
        );
        assert_eq!(
            c(Value::Int(300), DataType::Int, DataType::TinyInt).unwrap(),
            Value::TinyInt(44)
        );
        assert_eq!(
            c(Value::BigInt(1234), DataType::BigInt, DataType::Double).unwrap(),
            Value::Double(1234.0)
        );
    }

    #[test]
    fn to_decimal_rounds_half_up() {
        let dec = |v: Value, from: DataType, p, s| c(v, from, DataType::Decimal(p, s)).unwrap();
        assert_eq!(
            dec(Value::Double(2.5), DataType::Double, 5, 0),
            Value::Decimal(3, 0)
        );
        assert_eq!(
            dec(Value::Double(-2.5), DataType::Double, 5, 0),
            Value::Decimal(-3, 0)
        );
        assert_eq!(
            dec(Value::Double(0.125), DataType::Double, 5, 2),
            Value::Decimal(13, 2)
        );
        assert_eq!(
            dec(Value::Decimal(5528, 2), DataType::Decimal(10, 2), 7, 1),
            Value::Decimal(553, 1)
        );
        assert_eq!(
            dec(Value::Decimal(62_646, 2), DataType::Decimal(10, 2), 12, 4),
            Value::Decimal(6_264_600, 4)
        );
        assert_eq!(
            dec(Value::BigInt(1000), DataType::BigInt, 8, 1),
            Value::Decimal(10_000, 1)
        );
        assert_eq!(dec(Value::Int(12_345), DataType::Int, 3, 0), Value::Null);
        assert_eq!(
            dec(Value::Double(1e10), DataType::Double, 38, 2),
            Value::Decimal(1_000_000_000_000, 2)
        );
        assert!(c(
            Value::Double(f64::NAN),
            DataType::Double,
            DataType::Decimal(5, 2)
        )
        .is_err());
    }

    #[test]
    fn to_string_forms() {
        let st = |v: Value, from: DataType| text_of(c(v, from, DataType::STRING).unwrap());
        assert_eq!(st(Value::Int(6), DataType::Int), "6");
        assert_eq!(st(Value::Double(2.5), DataType::Double), "2.5");
        assert_eq!(st(Value::Double(1e10), DataType::Double), "1.0E10");
        assert_eq!(
            st(Value::Timestamp(1_710_057_607_643), DataType::Timestamp(3)),
            "2024-03-10 08:00:07.643"
        );
        assert_eq!(
            st(Value::Decimal(1250, 2), DataType::Decimal(10, 2)),
            "12.50"
        );
        assert_eq!(
            text_of(c(s("ab"), DataType::STRING, DataType::Char(4)).unwrap()),
            "ab  "
        );
        assert_eq!(
            text_of(c(s("abcdef"), DataType::STRING, DataType::Varchar(3)).unwrap()),
            "abc"
        );
        assert_eq!(
            text_of(c(Value::Int(12345), DataType::Int, DataType::Char(3)).unwrap()),
            "123"
        );
    }

    #[test]
    fn temporal_casts() {
        let ts = 1_717_281_736_356; // 2024-06-01 22:42:16.356
        assert_eq!(
            c(Value::Timestamp(ts), DataType::Timestamp(3), DataType::Date).unwrap(),
            Value::Date(19_875)
        );
        assert_eq!(
            c(
                Value::Timestamp(ts),
                DataType::Timestamp(3),
                DataType::TimestampLtz(3)
            )
            .unwrap(),
            Value::TimestampLtz(ts)
        );
        assert_eq!(
            c(Value::Date(19_875), DataType::Date, DataType::Timestamp(3)).unwrap(),
            Value::Timestamp(19_875 * 86_400_000)
        );
        assert_eq!(
            c(
                Value::Timestamp(ts),
                DataType::Timestamp(3),
                DataType::Timestamp(0)
            )
            .unwrap(),
            Value::Timestamp(ts - 356)
        );
        assert_eq!(
            c(
                s("2024-06-01 22:42:16.356"),
                DataType::STRING,
                DataType::Timestamp(3)
            )
            .unwrap(),
            Value::Timestamp(ts)
        );
        assert_eq!(
            c(
                s("2024-06-01 22:42:16.3567"),
                DataType::STRING,
                DataType::Timestamp(3)
            )
            .unwrap(),
            Value::Timestamp(ts)
        );
        assert!(c(
            s("2024-06-01T22:42:16"),
            DataType::STRING,
            DataType::Timestamp(3)
        )
        .is_err());
        assert_eq!(
            c(s("2024-06-01"), DataType::STRING, DataType::Timestamp(3)).unwrap(),
            Value::Timestamp(19_875 * 86_400_000)
        );
        assert_eq!(
            c(s("2024-6-1"), DataType::STRING, DataType::Date).unwrap(),
            Value::Date(19_875)
        );
        assert_eq!(
            c(s("2024-06-01 10:00:00"), DataType::STRING, DataType::Date).unwrap(),
            Value::Date(19_875)
        );
        assert!(c(s("2024-02-30"), DataType::STRING, DataType::Date).is_err());
        assert!(c(s("junk"), DataType::STRING, DataType::Timestamp(3)).is_err());
        assert_eq!(
            c(s("08:00:07"), DataType::STRING, DataType::Time(0)).unwrap(),
            Value::Time(28_807_000)
        );
        assert_eq!(
            c(
                Value::Timestamp(ts),
                DataType::Timestamp(3),
                DataType::Time(0)
            )
            .unwrap(),
            Value::Time(81_736_000)
        );
    }

    #[test]
    fn booleans() {
        let b = |t: &str| c(s(t), DataType::STRING, DataType::Boolean).ok();
        assert_eq!(b("TRUE"), Some(Value::Boolean(true)));
        assert_eq!(b(" yes "), Some(Value::Boolean(true)));
        assert_eq!(b("0"), Some(Value::Boolean(false)));
        assert_eq!(b("maybe"), None);
        assert_eq!(
            c(Value::Boolean(true), DataType::Boolean, DataType::Int).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            text_of(c(Value::Boolean(false), DataType::Boolean, DataType::STRING).unwrap()),
            "FALSE"
        );
    }
}
