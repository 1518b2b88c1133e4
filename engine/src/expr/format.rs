//! Rendering values as text, in the three forms the engine needs:
//!
//! - [`write_value`]: what Flink's `CAST(v AS STRING)` gives (also used by the cast module):
//!   DOUBLE as Java's `Double.toString` (`1.0E10`, `0.125`), DECIMAL in plain notation with
//!   exactly its scale, TIMESTAMP(p) with exactly `p` fraction digits, BOOLEAN as `TRUE`/`FALSE`.
//! - [`write_print_value`]: a field as Flink's `print` connector shows it, i.e. `Row.toString` of
//!   the external Java objects: `LocalDateTime.toString` (`2024-03-10T08:00`), `Instant.toString`
//!   (`2024-03-10T08:00:07.643Z`), `BigDecimal.toString`, `null`.
//! - [`write_csv_value`]: the canonical form of the conformance files (TIMESTAMP always with 3
//!   fraction digits, NULL as `NULL`, strings quoted by RFC 4180 when needed).
//!
//! It also owns the proleptic Gregorian calendar arithmetic (days since the epoch to a civil date
//! and back) that casts and temporal functions share: integer arithmetic only, valid for every
//! `i32` day number, so no date can make rendering fail. TIMESTAMP_LTZ values are rendered in
//! UTC, the session time zone the engine assumes.

use std::fmt::Write;

use crate::types::DataType;
use crate::value::Value;

/// Milliseconds in a day.
pub const MILLIS_PER_DAY: i64 = 86_400_000;

/// The civil date `(year, month 1..=12, day 1..=31)` of a day number (days since 1970-01-01).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm: shift the epoch to 0000-03-01 so leap days end a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // m is 1..=12 and d is 1..=31 by construction.
    (y, m as u32, d as u32)
}

/// The day number of a civil date; the inverse of [`civil_from_days`]. `month` must be 1..=12.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// True for leap years of the proleptic Gregorian calendar.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days of `month` (1..=12) in `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// Splits epoch milliseconds into (day number, millisecond of the day).
pub fn split_millis(millis: i64) -> (i64, i64) {
    (
        millis.div_euclid(MILLIS_PER_DAY),
        millis.rem_euclid(MILLIS_PER_DAY),
    )
}

/// Appends `v` zero-padded to `width` digits (a leading `-` for negatives).
fn pad(out: &mut String, v: i64, width: usize) {
    let _ = write!(out, "{v:0width$}");
}

/// Appends a date as `yyyy-MM-dd` (years beyond 4 digits are written in full).
pub fn write_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    pad(out, y, 4);
    out.push('-');
    pad(out, i64::from(m), 2);
    out.push('-');
    pad(out, i64::from(d), 2);
}

/// Appends `HH:mm:ss` and then exactly `precision` fraction digits (at most 3 are known; more
/// are zeros).
pub fn write_time(out: &mut String, millis_of_day: i64, precision: u8) {
    let ms = millis_of_day.rem_euclid(MILLIS_PER_DAY);
    pad(out, ms / 3_600_000, 2);
    out.push(':');
    pad(out, ms / 60_000 % 60, 2);
    out.push(':');
    pad(out, ms / 1000 % 60, 2);
    write_fraction(out, ms % 1000, precision);
}

/// Appends `.` and `precision` digits of a millisecond fraction, nothing for precision 0.
fn write_fraction(out: &mut String, millis: i64, precision: u8) {
    if precision == 0 {
        return;
    }
    out.push('.');
    let digits = format!("{millis:03}");
    for i in 0..usize::from(precision) {
        out.push(digits.as_bytes().get(i).map_or('0', |b| char::from(*b)));
    }
}

/// Appends a timestamp as `yyyy-MM-dd HH:mm:ss` with exactly `precision` fraction digits, as
/// Flink's CAST to STRING does.
pub fn write_timestamp(out: &mut String, millis: i64, precision: u8) {
    let (days, ms) = split_millis(millis);
    write_date(out, days);
    out.push(' ');
    write_time(out, ms, precision);
}

/// Appends a decimal given by its unscaled value and scale, in plain notation with exactly
/// `scale` fraction digits (Java's `BigDecimal.toPlainString`).
pub fn write_decimal(out: &mut String, unscaled: i128, scale: u8) {
    let digits = unscaled.unsigned_abs().to_string();
    if unscaled < 0 {
        out.push('-');
    }
    let scale = usize::from(scale);
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(&digits);
    }
}

/// Appends a decimal as Java's `BigDecimal.toString` does: plain unless the adjusted exponent is
/// below -6, then scientific (`1E-7`).
fn write_decimal_java(out: &mut String, unscaled: i128, scale: u8) {
    let digits = unscaled.unsigned_abs().to_string();
    let adjusted = digits.len() as i64 - 1 - i64::from(scale);
    if adjusted >= -6 {
        return write_decimal(out, unscaled, scale);
    }
    if unscaled < 0 {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let _ = write!(out, "E{adjusted}");
}

/// The shortest decimal digits that round-trip `v` (finite, non-zero) and the exponent `e`
/// such that `v = 0.d1d2d3... * 10^e` — i.e. the decimal point sits after `e` digits.
pub fn shortest_digits(v: f64) -> (String, i32) {
    // `{:e}` prints the shortest round-trip digits in scientific form, e.g. `-1.25e-3`.
    let s = format!("{:e}", v.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exp + 1)
}

/// Appends a double as Java's `Double.toString`: plain with at least one fraction digit for
/// magnitudes in [1e-3, 1e7), otherwise `d.dddE±n`; `NaN`, `Infinity`, `-0.0`.
pub fn write_double(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    if v == 0.0 {
        out.push_str("0.0");
        return;
    }
    let (digits, exp) = shortest_digits(v);
    write_java_digits(out, &digits, exp, v.abs());
}

/// Appends a float as Java's `Float.toString` (shortest digits that round-trip the `f32`).
pub fn write_float(out: &mut String, v: f32) {
    if v.is_nan() || v.is_infinite() || v == 0.0 {
        return write_double(out, f64::from(v));
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    let s = format!("{:e}", v.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    write_java_digits(out, &digits, exp + 1, f64::from(v.abs()));
}

fn write_java_digits(out: &mut String, digits: &str, exp: i32, abs: f64) {
    if (1e-3..1e7).contains(&abs) {
        if exp <= 0 {
            out.push_str("0.");
            for _ in 0..-exp {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let e = exp as usize;
            if digits.len() <= e {
                out.push_str(digits);
                for _ in digits.len()..e {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..e]);
                out.push('.');
                out.push_str(&digits[e..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{}", exp - 1);
    }
}

/// Appends a day-time interval as Flink's CAST to STRING: `+1 02:03:04.500`.
fn write_interval_day_time(out: &mut String, millis: i64) {
    out.push(if millis < 0 { '-' } else { '+' });
    let ms = millis.unsigned_abs();
    let _ = write!(
        out,
        "{} {:02}:{:02}:{:02}.{:03}",
        ms / 86_400_000,
        ms / 3_600_000 % 24,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// Appends a year-month interval as Flink's CAST to STRING: `+1-02`.
fn write_interval_year_month(out: &mut String, months: i32) {
    out.push(if months < 0 { '-' } else { '+' });
    let m = months.unsigned_abs();
    let _ = write!(out, "{}-{:02}", m / 12, m % 12);
}

/// Appends the text of `v` (of type `ty`) as Flink's `CAST(v AS STRING)` gives it; NULL is
/// written as `NULL`.
pub fn write_value(out: &mut String, v: &Value, ty: &DataType) {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Boolean(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::TinyInt(x) => {
            let _ = write!(out, "{x}");
        }
        Value::SmallInt(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Int(x) => {
            let _ = write!(out, "{x}");
        }
        Value::BigInt(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Float(x) => write_float(out, *x),
        Value::Double(x) => write_double(out, *x),
        Value::Decimal(u, s) => write_decimal(out, *u, *s),
        Value::String(s) => out.push_str(s),
        Value::Date(d) => write_date(out, i64::from(*d)),
        Value::Time(ms) => write_time(out, i64::from(*ms), time_precision(ty, 0)),
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => {
            write_timestamp(out, *ms, time_precision(ty, 3))
        }
        Value::IntervalDayTime(ms) => write_interval_day_time(out, *ms),
        Value::IntervalYearMonth(m) => write_interval_year_month(out, *m),
        Value::Row(fields) => {
            // Flink's CAST(ROW AS STRING): `(a, 10, NULL)`, each field cast to STRING.
            out.push('(');
            write_fields(out, fields, ty, write_value);
            out.push(')');
        }
    }
}

/// Appends the fields of a row value separated by `, `, each rendered by `render` with its field
/// type (the type of a field the row type does not describe is taken as NULL).
fn write_fields(
    out: &mut String,
    fields: &[Value],
    ty: &DataType,
    render: fn(&mut String, &Value, &DataType),
) {
    let types = ty.row_fields();
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let field_ty = types.get(i).map_or(&DataType::Null, |f| &f.data_type);
        render(out, v, field_ty);
    }
}

/// The fraction precision of a temporal type, `default` when the type carries none.
fn time_precision(ty: &DataType, default: u8) -> u8 {
    match ty {
        DataType::Time(p) | DataType::Timestamp(p) | DataType::TimestampLtz(p) => *p,
        _ => default,
    }
}

/// Appends `HH:mm[:ss[.fff]]` as Java's `LocalTime.toString`: seconds only when the seconds or
/// the fraction are non-zero, the fraction in milliseconds when non-zero.
fn write_java_local_time(out: &mut String, ms: i64, always_seconds: bool) {
    pad(out, ms / 3_600_000, 2);
    out.push(':');
    pad(out, ms / 60_000 % 60, 2);
    let (sec, frac) = (ms / 1000 % 60, ms % 1000);
    if always_seconds || sec != 0 || frac != 0 {
        out.push(':');
        pad(out, sec, 2);
        if frac != 0 {
            out.push('.');
            pad(out, frac, 3);
        }
    }
}

/// Appends a field as Flink's `print` connector shows it (`Row.toString` of the external
/// objects): NULL as `null`, TIMESTAMP as `LocalDateTime` (`2024-03-10T08:00:07.643`), LTZ as
/// `Instant` (`2024-03-10T08:00:07.643Z`), DECIMAL as `BigDecimal`, BOOLEAN as `true`.
pub fn write_print_value(out: &mut String, v: &Value, ty: &DataType) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Decimal(u, s) => write_decimal_java(out, *u, *s),
        Value::Time(ms) => write_java_local_time(out, i64::from(*ms), false),
        Value::Timestamp(ms) => {
            let (days, ms) = split_millis(*ms);
            write_date(out, days);
            out.push('T');
            write_java_local_time(out, ms, false);
        }
        Value::TimestampLtz(ms) => {
            let (days, ms) = split_millis(*ms);
            write_date(out, days);
            out.push('T');
            write_java_local_time(out, ms, true);
            out.push('Z');
        }
        Value::IntervalDayTime(ms) => write_java_duration(out, *ms),
        Value::IntervalYearMonth(m) => {
            // java.time.Period as Flink converts it: years and months, `P0D` when zero.
            let (y, mo) = (m / 12, m % 12);
            out.push('P');
            if y != 0 {
                let _ = write!(out, "{y}Y");
            }
            if mo != 0 {
                let _ = write!(out, "{mo}M");
            }
            if *m == 0 {
                out.push_str("0D");
            }
        }
        Value::Row(fields) => {
            // A nested `Row.toString`: its kind, then its fields.
            out.push_str("+I[");
            write_fields(out, fields, ty, write_print_value);
            out.push(']');
        }
        other => write_value(out, other, ty),
    }
}

/// Appends a `java.time.Duration` as its `toString`: `PT1H30M`, `PT0.5S`, `PT0S`.
fn write_java_duration(out: &mut String, millis: i64) {
    if millis == 0 {
        out.push_str("PT0S");
        return;
    }
    out.push_str("PT");
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let rem = millis % 60_000;
    if hours != 0 {
        let _ = write!(out, "{hours}H");
    }
    if minutes != 0 {
        let _ = write!(out, "{minutes}M");
    }
    if rem != 0 {
        let (secs, frac) = (rem / 1000, rem % 1000);
        if rem < 0 && secs == 0 {
            out.push('-');
        }
        let _ = write!(out, "{secs}");
        if frac != 0 {
            let f = format!("{:03}", frac.abs());
            out.push('.');
            out.push_str(f.trim_end_matches('0'));
        }
        out.push('S');
    }
}

/// Appends a field in the canonical CSV form of the conformance files: NULL as `NULL`,
/// BOOLEAN `true`/`false`, TIMESTAMP and TIMESTAMP_LTZ (UTC) always with 3 fraction digits,
/// TIME `HH:mm:ss`, DECIMAL with exactly its scale, doubles like Java, strings quoted by
/// RFC 4180 rules when they hold a comma, a quote or a line break.
pub fn write_csv_value(out: &mut String, v: &Value, ty: &DataType) {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Time(ms) => write_time(out, i64::from(*ms), 0),
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => write_timestamp(out, *ms, 3),
        Value::String(s) => write_csv_text(out, s),
        other => {
            let start = out.len();
            write_value(out, other, ty);
            if out[start..].contains([',', '"', '\n', '\r']) {
                let text = out.split_off(start);
                write_csv_text(out, &text);
            }
        }
    }
}

/// Appends `s` as a CSV field, quoted only when it must be.
fn write_csv_text(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        for c in s.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The text of `v` as [`write_value`] writes it, in a new string.
pub fn value_to_string(v: &Value, ty: &DataType) -> String {
    let mut s = String::new();
    write_value(&mut s, v, ty);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Value, ty: DataType) -> String {
        value_to_string(&v, &ty)
    }

    fn print(v: Value, ty: DataType) -> String {
        let mut s = String::new();
        write_print_value(&mut s, &v, &ty);
        s
    }

    fn csv(v: Value, ty: DataType) -> String {
        let mut s = String::new();
        write_csv_value(&mut s, &v, &ty);
        s
    }

    #[test]
    fn calendar_round_trips() {
        for d in [-800_000i64, -719_468, -1, 0, 1, 19_792, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_792), (2024, 3, 10));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
    }

    #[test]
    fn doubles_render_like_java() {
        let cases = [
            (1e10, "1.0E10"),
            (0.125, "0.125"),
            (2.5, "2.5"),
            (-4.0, "-4.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (272.5, "272.5"),
            (2000.0, "2000.0"),
            (1e7, "1.0E7"),
            (9_999_999.0, "9999999.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (65.93440000000001, "65.93440000000001"),
            (1.234e-5, "1.234E-5"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (123_456_789.125, "1.23456789125E8"),
        ];
        for (v, want) in cases {
            assert_eq!(text(Value::Double(v), DataType::Double), want, "{v}");
        }
        assert_eq!(text(Value::Float(0.1), DataType::Float), "0.1");
        assert_eq!(text(Value::Float(1e10), DataType::Float), "1.0E10");
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(
            text(Value::Decimal(20882, 2), DataType::Decimal(10, 2)),
            "208.82"
        );
        assert_eq!(
            text(Value::Decimal(-5, 3), DataType::Decimal(5, 3)),
            "-0.005"
        );
        assert_eq!(text(Value::Decimal(7, 0), DataType::Decimal(5, 0)), "7");
        assert_eq!(
            text(
                Value::Decimal(2_500_000_000_000_000, 12),
                DataType::Decimal(21, 12)
            ),
            "2500.000000000000"
        );
        assert_eq!(print(Value::Decimal(1, 7), DataType::Decimal(8, 7)), "1E-7");
        assert_eq!(
            print(Value::Decimal(1, 6), DataType::Decimal(8, 6)),
            "0.000001"
        );
    }

    #[test]
    fn temporal_cast_text() {
        // 2024-03-10 08:00:07.643
        let ts = 1_710_057_607_643;
        assert_eq!(
            text(Value::Timestamp(ts), DataType::Timestamp(3)),
            "2024-03-10 08:00:07.643"
        );
        assert_eq!(
            text(Value::Timestamp(ts), DataType::Timestamp(0)),
            "2024-03-10 08:00:07"
        );
        assert_eq!(
            text(Value::Timestamp(ts), DataType::Timestamp(6)),
            "2024-03-10 08:00:07.643000"
        );
        assert_eq!(
            text(Value::Timestamp(-1), DataType::Timestamp(3)),
            "1969-12-31 23:59:59.999"
        );
        assert_eq!(text(Value::Date(19_792), DataType::Date), "2024-03-10");
        assert_eq!(text(Value::Time(28_807_000), DataType::Time(0)), "08:00:07");
        assert_eq!(text(Value::Boolean(true), DataType::Boolean), "TRUE");
        assert_eq!(
            text(
                Value::IntervalDayTime(90_061_500),
                DataType::IntervalDayTime
            ),
            "+1 01:01:01.500"
        );
        assert_eq!(
            text(Value::IntervalYearMonth(-14), DataType::IntervalYearMonth),
            "-1-02"
        );
    }

    #[test]
    fn print_form_matches_java_objects() {
        let ts = 1_710_057_607_643;
        assert_eq!(
            print(Value::Timestamp(ts), DataType::Timestamp(3)),
            "2024-03-10T08:00:07.643"
        );
        assert_eq!(
            print(Value::Timestamp(1_710_057_600_000), DataType::Timestamp(3)),
            "2024-03-10T08:00"
        );
        assert_eq!(
            print(Value::Timestamp(1_710_057_607_500), DataType::Timestamp(3)),
            "2024-03-10T08:00:07.500"
        );
        assert_eq!(
            print(Value::TimestampLtz(ts), DataType::TimestampLtz(3)),
            "2024-03-10T08:00:07.643Z"
        );
        assert_eq!(
            print(
                Value::TimestampLtz(1_710_057_600_000),
                DataType::TimestampLtz(3)
            ),
            "2024-03-10T08:00:00Z"
        );
        assert_eq!(print(Value::Null, DataType::Int), "null");
        assert_eq!(print(Value::Boolean(false), DataType::Boolean), "false");
        assert_eq!(
            print(Value::Time(28_807_000), DataType::Time(0)),
            "08:00:07"
        );
        assert_eq!(print(Value::Double(17.0), DataType::Double), "17.0");
        assert_eq!(
            print(Value::IntervalDayTime(5_400_000), DataType::IntervalDayTime),
            "PT1H30M"
        );
    }

    #[test]
    fn csv_form() {
        assert_eq!(
            csv(Value::Timestamp(1_717_281_720_000), DataType::Timestamp(0)),
            "2024-06-01 22:42:00.000"
        );
        assert_eq!(csv(Value::Null, DataType::Int), "NULL");
        assert_eq!(csv(Value::Boolean(true), DataType::Boolean), "true");
        assert_eq!(
            csv(Value::string("leave at \"door\""), DataType::STRING),
            "\"leave at \"\"door\"\"\""
        );
        assert_eq!(
            csv(Value::string("gift wrap  "), DataType::STRING),
            "gift wrap  "
        );
        assert_eq!(
            csv(
                Value::Decimal(2_500_000_000_000_000, 13),
                DataType::Decimal(21, 13)
            ),
            "250.0000000000000"
        );
        assert_eq!(csv(Value::Double(-0.0), DataType::Double), "-0.0");
    }
}
