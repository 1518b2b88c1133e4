//! Flink's `csv` format: decoding lines of a file into rows and encoding rows into lines.
//!
//! Decoding follows Flink's `CsvToRowDataConverters` over Jackson's CSV parser: fields by
//! position; a quoted field may span lines and doubles its quote character; an empty field is
//! `''` for a string and a parse error for a number unless it equals `csv.null-literal`; booleans
//! are `true` in any case and everything else `false` (Java's `Boolean.parseBoolean`); integers
//! and floats are trimmed, DECIMAL is exact and rounded HALF_UP to the declared scale (NULL when
//! it does not fit the precision), DATE is `yyyy-[m]m-[d]d`, TIME `HH:mm[:ss[.f]]`, TIMESTAMP
//! `yyyy-[m]m-[d]d hh:mm:ss[.f]` (no `T`, as `java.sql.Timestamp.valueOf`). With
//! `csv.ignore-parse-errors` a field that does not parse becomes NULL, a short line is padded
//! with NULLs, and a line with too many fields is skipped; without it each is an error naming the
//! line and the column. Blank lines are skipped.
//!
//! Encoding follows Jackson's `CsvEncoder` as Flink configures it: a string is quoted when it is
//! longer than 24 characters or holds a character below `-` (space, quote, separator, control
//! characters...), NULL is written as the null literal (empty by default), numbers as Java prints
//! them, TIMESTAMP as `yyyy-MM-dd HH:mm:ss[.f]` with the fraction's trailing zeros dropped.
//!
//! Delimiter, quote and escape characters must be ASCII so that records can be split on bytes
//! without decoding UTF-8 first.

use std::sync::Arc;

use crate::connectors::options::{invalid_value, OptionReader};
use crate::error::{EngineError, Result};
use crate::expr::{cast, format};
use crate::types::DataType;
use crate::value::{Row, Value};

/// The options of the csv format, as Flink names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvFormat {
    /// `csv.field-delimiter`, default `,`.
    pub field_delimiter: u8,
    /// `csv.quote-character` (default `"`), `None` with `csv.disable-quote-character`.
    pub quote: Option<u8>,
    /// `csv.allow-comments`: lines starting with `#` are skipped.
    pub allow_comments: bool,
    /// `csv.ignore-parse-errors`.
    pub ignore_parse_errors: bool,
    /// `csv.escape-character`, none by default.
    pub escape: Option<u8>,
    /// `csv.null-literal`: a field equal to it (quoted or not) is NULL.
    pub null_literal: Option<String>,
    /// `csv.write-bigdecimal-in-scientific-notation` (default true): DECIMAL written as Java's
    /// `BigDecimal.toString` (`1E-7`) rather than plain.
    pub decimal_scientific: bool,
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            field_delimiter: b',',
            quote: Some(b'"'),
            allow_comments: false,
            ignore_parse_errors: false,
            escape: None,
            null_literal: None,
            decimal_scientific: true,
        }
    }
}

/// Reads an option that must be one ASCII character.
fn ascii_char(r: &mut OptionReader<'_>, key: &str) -> Result<Option<u8>> {
    let Some(c) = r.char(key)? else {
        return Ok(None);
    };
    if !c.is_ascii() {
        let value = r.string(key).unwrap_or_default();
        return Err(invalid_value(key, value, "a single ASCII character"));
    }
    // ASCII, so the conversion is exact.
    Ok(Some(c as u8))
}

impl CsvFormat {
    /// Reads the `csv.*` options; every csv option Flink knows is accepted.
    pub fn from_options(r: &mut OptionReader<'_>) -> Result<CsvFormat> {
        let mut f = CsvFormat::default();
        if let Some(d) = r.string("csv.field-delimiter") {
            if crate::connectors::options::parse_single_char(d).is_none() {
                return Err(EngineError::option(
                    format!(
                        "Option 'csv.field-delimiter' must be a string with single character, but was: {d}"
                    ),
                    None,
                ));
            }
        }
        if let Some(d) = ascii_char(r, "csv.field-delimiter")? {
            f.field_delimiter = d;
        }
        let disable_quote = r.bool("csv.disable-quote-character", false)?;
        let quote = ascii_char(r, "csv.quote-character")?;
        if disable_quote && quote.is_some() {
            return Err(EngineError::option(
                "Format cannot define a quote character and disabled quote character at the same time.",
                None,
            ));
        }
        f.quote = if disable_quote {
            None
        } else {
            Some(quote.unwrap_or(b'"'))
        };
        f.allow_comments = r.bool("csv.allow-comments", false)?;
        f.ignore_parse_errors = r.bool("csv.ignore-parse-errors", false)?;
        f.escape = ascii_char(r, "csv.escape-character")?;
        f.null_literal = r.string("csv.null-literal").map(str::to_string);
        f.decimal_scientific = r.bool("csv.write-bigdecimal-in-scientific-notation", true)?;
        // Arrays are not supported as column types, so the element delimiter has no use.
        r.accept("csv.array-element-delimiter");
        Ok(f)
    }
}

/// Why one line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The column at fault, when one is.
    pub column: Option<usize>,
    pub reason: String,
}

/// What decoding one record gave.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Row(Row),
    /// Nothing to emit: a comment, a blank line.
    Nothing,
    /// A bad record dropped under `csv.ignore-parse-errors`.
    Skipped,
}

/// The outcome of splitting a record's text into fields.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    Complete,
    /// A quoted field is still open at the end of the text: the record continues on the next line.
    OpenQuote,
}

/// Decodes csv records into rows of a fixed schema, reusing its buffers between records.
#[derive(Debug)]
pub struct CsvDecoder {
    format: CsvFormat,
    types: Vec<DataType>,
    /// The unquoted, unescaped text of all fields of the current record.
    text: Vec<u8>,
    /// (start, end) of each field in `text`.
    spans: Vec<(usize, usize)>,
}

impl CsvDecoder {
    pub fn new(format: CsvFormat, types: Vec<DataType>) -> Self {
        CsvDecoder {
            format,
            types,
            text: Vec::with_capacity(256),
            spans: Vec::with_capacity(16),
        }
    }

    pub fn format(&self) -> &CsvFormat {
        &self.format
    }

    /// Whether `record` (without its line terminator) is skipped before splitting.
    pub fn is_ignorable(&self, record: &[u8]) -> bool {
        record.is_empty() || (self.format.allow_comments && record.first() == Some(&b'#'))
    }

    /// Splits a record (one or more physical lines joined by `\n`, without the final line
    /// terminator) into fields.
    pub fn split(&mut self, record: &[u8]) -> Split {
        self.text.clear();
        self.spans.clear();
        let delim = self.format.field_delimiter;
        let quote = self.format.quote;
        let escape = self.format.escape;
        let mut i = 0;
        loop {
            let start = self.text.len();
            if quote.is_some() && record.get(i).copied() == quote {
                i += 1;
                let mut closed = false;
                while i < record.len() {
                    let b = record[i];
                    if Some(b) == quote {
                        if record.get(i + 1).copied() == quote {
                            self.text.push(b);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        closed = true;
                        break;
                    }
                    if Some(b) == escape && i + 1 < record.len() {
                        self.text.push(unescape(record[i + 1]));
                        i += 2;
                        continue;
                    }
                    self.text.push(b);
                    i += 1;
                }
                if !closed {
                    return Split::OpenQuote;
                }
                // Jackson keeps whatever follows the closing quote up to the delimiter.
                while i < record.len() && record[i] != delim {
                    self.text.push(record[i]);
                    i += 1;
                }
            } else {
                while i < record.len() && record[i] != delim {
                    let b = record[i];
                    if Some(b) == escape && i + 1 < record.len() {
                        self.text.push(unescape(record[i + 1]));
                        i += 2;
                        continue;
                    }
                    self.text.push(b);
                    i += 1;
                }
            }
            self.spans.push((start, self.text.len()));
            if i >= record.len() {
                return Split::Complete;
            }
            // Skip the delimiter; a trailing delimiter starts one more (empty) field.
            i += 1;
        }
    }

    /// The fields of the last [`split`](Self::split), unquoted, as text.
    pub fn fields(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans.iter().map(|(a, b)| &self.text[*a..*b])
    }

    /// Converts the fields of the last [`split`](Self::split) into a row.
    pub fn decode(&self) -> std::result::Result<Decoded, FieldError> {
        let arity = self.types.len();
        let ignore = self.format.ignore_parse_errors;
        if self.spans.len() != arity && !ignore {
            return Err(FieldError {
                column: None,
                reason: format!(
                    "Row length mismatch. {arity} fields expected but was {}.",
                    self.spans.len()
                ),
            });
        }
        if self.spans.len() > arity {
            return Ok(Decoded::Skipped);
        }
        let mut row = Vec::with_capacity(arity);
        for (col, ty) in self.types.iter().enumerate() {
            let Some(&(s, e)) = self.spans.get(col) else {
                row.push(Value::Null);
                continue;
            };
            let text = std::str::from_utf8(&self.text[s..e]).map_err(|_| FieldError {
                column: Some(col),
                reason: "the field is not valid UTF-8".to_string(),
            })?;
            if self.format.null_literal.as_deref() == Some(text) {
                row.push(Value::Null);
                continue;
            }
            match parse_field(text, ty) {
                Ok(v) => row.push(v),
                Err(_) if ignore => row.push(Value::Null),
                Err(reason) => {
                    return Err(FieldError {
                        column: Some(col),
                        reason,
                    })
                }
            }
        }
        Ok(Decoded::Row(row))
    }
}

/// Jackson's escapes: `\n`, `\r`, `\t`, `\0` stand for control characters, any other escaped
/// character for itself.
fn unescape(b: u8) -> u8 {
    match b {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'0' => 0,
        other => other,
    }
}

/// Parses the text of one csv field as a value of `ty`; the error says why it is not one.
pub fn parse_field(text: &str, ty: &DataType) -> std::result::Result<Value, String> {
    let bad = || format!("'{text}' is not a valid {ty}");
    let int = |t: &str| t.trim().parse::<i64>().map_err(|_| bad());
    Ok(match ty {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Boolean(text.trim().eq_ignore_ascii_case("true")),
        DataType::TinyInt => Value::TinyInt(i8::try_from(int(text)?).map_err(|_| bad())?),
        DataType::SmallInt => Value::SmallInt(i16::try_from(int(text)?).map_err(|_| bad())?),
        DataType::Int => Value::Int(i32::try_from(int(text)?).map_err(|_| bad())?),
        DataType::BigInt => Value::BigInt(int(text)?),
        DataType::IntervalYearMonth => {
            Value::IntervalYearMonth(i32::try_from(int(text)?).map_err(|_| bad())?)
        }
        DataType::IntervalDayTime => Value::IntervalDayTime(int(text)?),
        DataType::Float => {
            // Java parses a float directly from the text, not via a double.
            let d = cast::parse_double(text).ok_or_else(bad)?;
            let f = text
                .trim()
                .trim_end_matches(['d', 'D', 'f', 'F'])
                .parse::<f32>()
                .unwrap_or(d as f32);
            Value::Float(f)
        }
        DataType::Double => Value::Double(cast::parse_double(text).ok_or_else(bad)?),
        DataType::Decimal(p, s) => match parse_decimal_exact(text, *p, *s) {
            Some(Some(u)) => Value::Decimal(u, *s),
            Some(None) => Value::Null,
            None => return Err(bad()),
        },
        DataType::Char(_) | DataType::Varchar(_) => Value::String(Arc::from(text)),
        DataType::Date => Value::Date(parse_date_lenient(text).ok_or_else(bad)?),
        DataType::Time(p) => {
            let ms = parse_iso_time(text).ok_or_else(bad)?;
            Value::Time(i32::try_from(cast::truncate_millis(i64::from(ms), *p)).map_err(|_| bad())?)
        }
        DataType::Timestamp(_) => {
            Value::Timestamp(parse_sql_timestamp(text, false).ok_or_else(bad)?)
        }
        DataType::TimestampLtz(_) => {
            Value::TimestampLtz(parse_sql_timestamp(text, true).ok_or_else(bad)?)
        }
        DataType::Row(_) => {
            return Err(format!(
                "the csv format does not read ROW columns here: '{text}'"
            ))
        }
    })
}

/// Parses a decimal exactly as `new BigDecimal(text)` (no surrounding spaces) and rounds it
/// HALF_UP to `scale`. `None`: not a number; `Some(None)`: more digits than `precision` (Flink's
/// `DecimalData.fromBigDecimal` gives NULL); `Some(Some(unscaled))` otherwise.
pub fn parse_decimal_exact(text: &str, precision: u8, scale: u8) -> Option<Option<i128>> {
    let b = text.as_bytes();
    let (neg, mut i) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    // Digits of the mantissa without the point, and how many of them are fraction digits.
    let mut digits: Vec<u8> = Vec::with_capacity(24);
    let mut frac_len: i64 = 0;
    let mut seen_point = false;
    let mut any_digit = false;
    while i < b.len() {
        match b[i] {
            d @ b'0'..=b'9' => {
                any_digit = true;
                if !(digits.is_empty() && d == b'0') {
                    digits.push(d - b'0');
                }
                if seen_point {
                    frac_len += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => break,
            _ => return None,
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    let mut exp: i64 = 0;
    if i < b.len() {
        let e = &text[i + 1..];
        if e.is_empty() || e.starts_with('+') && e.len() == 1 {
            return None;
        }
        exp = e.parse::<i64>().ok()?;
    }
    // value = digits * 10^(exp - frac_len); we want digits * 10^(scale + exp - frac_len).
    let shift = i64::from(scale) + exp - frac_len;
    let limit = cast::pow10(u32::from(precision.min(38)))?;
    let mut unscaled: i128 = 0;
    if shift >= 0 {
        if digits.is_empty() {
            return Some(Some(0));
        }
        if digits.len() as i64 + shift > 38 {
            return Some(None);
        }
        for d in &digits {
            unscaled = unscaled * 10 + i128::from(*d);
        }
        // Within 38 digits by the check above.
        unscaled *= cast::pow10(u32::try_from(shift).ok()?)?;
    } else {
        let keep = digits.len() as i64 + shift;
        if keep > 38 {
            return Some(None);
        }
        let keep = usize::try_from(keep.max(0)).ok()?;
        for d in &digits[..keep.min(digits.len())] {
            unscaled = unscaled * 10 + i128::from(*d);
        }
        let first_dropped = if keep < digits.len() { digits[keep] } else { 0 };
        if first_dropped >= 5 {
            unscaled += 1;
        }
    }
    if unscaled >= limit {
        return Some(None);
    }
    Some(Some(if neg { -unscaled } else { unscaled }))
}

/// Parses 1 to `max` ASCII digits.
fn digits_u32(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `java.sql.Date.valueOf`: `yyyy-[m]m-[d]d`, nothing around it.
pub fn parse_date_lenient(s: &str) -> Option<i32> {
    let mut parts = s.split('-');
    let y = digits_u32(parts.next()?, 4, 4)?;
    let m = digits_u32(parts.next()?, 1, 2)?;
    let d = digits_u32(parts.next()?, 1, 2)?;
    if parts.next().is_some() {
        return None;
    }
    civil_days(i64::from(y), m, d)
}

/// The day number of a valid civil date.
pub(crate) fn civil_days(y: i64, m: u32, d: u32) -> Option<i32> {
    if !(1..=12).contains(&m) || d < 1 || d > format::days_in_month(y, m) {
        return None;
    }
    i32::try_from(format::days_from_civil(y, m, d)).ok()
}

/// Milliseconds of a 1 to 9 digit fraction (digits beyond the third dropped).
fn fraction_millis(f: &str) -> Option<u32> {
    if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + f.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
    }
    Some(ms)
}

/// `LocalTime.parse` (ISO_LOCAL_TIME): `HH:mm[:ss[.f{1,9}]]` with two-digit fields.
pub fn parse_iso_time(s: &str) -> Option<i32> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let h = digits_u32(parts.next()?, 2, 2)?;
    let m = digits_u32(parts.next()?, 2, 2)?;
    let sec = match parts.next() {
        Some(p) => digits_u32(p, 2, 2)?,
        None if frac.is_none() => 0,
        None => return None,
    };
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let ms = match frac {
        Some(f) => fraction_millis(f)?,
        None => 0,
    };
    i32::try_from(((h * 60 + m) * 60 + sec) * 1000 + ms).ok()
}

/// `java.sql.Timestamp.valueOf` after trimming: `yyyy-[m]m-[d]d [h]h:[m]m:[s]s[.f{1,9}]`. With
/// `zulu`, a trailing `Z` (UTC, as Flink writes TIMESTAMP_LTZ) is accepted.
pub fn parse_sql_timestamp(s: &str, zulu: bool) -> Option<i64> {
    let s = s.trim();
    let s = if zulu {
        s.strip_suffix('Z').unwrap_or(s)
    } else {
        s
    };
    let (date, time) = s.split_once(' ')?;
    let days = parse_date_lenient(date)?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    let mut parts = hms.split(':');
    let h = digits_u32(parts.next()?, 1, 2)?;
    let m = digits_u32(parts.next()?, 1, 2)?;
    let sec = digits_u32(parts.next()?, 1, 2)?;
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let ms = match frac {
        Some(f) => fraction_millis(f)?,
        None => 0,
    };
    Some(
        i64::from(days) * format::MILLIS_PER_DAY + i64::from(((h * 60 + m) * 60 + sec) * 1000 + ms),
    )
}

/// Appends `yyyy-MM-dd<sep>HH:mm:ss[.f]` (the fraction without trailing zeros, none when zero),
/// as Java's `ISO_LOCAL_DATE` + `ISO_LOCAL_TIME` formatters write it; `Z` appended with `zulu`.
pub fn write_timestamp_text(out: &mut String, millis: i64, sep: char, zulu: bool) {
    let (days, ms) = format::split_millis(millis);
    format::write_date(out, days);
    out.push(sep);
    write_time_text(out, ms);
    if zulu {
        out.push('Z');
    }
}

/// Appends `HH:mm:ss[.f]` as `ISO_LOCAL_TIME` writes it (fraction without trailing zeros).
pub fn write_time_text(out: &mut String, millis_of_day: i64) {
    use std::fmt::Write;
    let ms = millis_of_day.rem_euclid(format::MILLIS_PER_DAY);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60
    );
    let frac = ms % 1000;
    if frac != 0 {
        let start = out.len();
        let _ = write!(out, ".{frac:03}");
        while out.len() > start + 2 && out.ends_with('0') {
            out.pop();
        }
    }
}

/// Appends the text of a non-string value as Flink's csv and json formats write it.
pub(crate) fn write_scalar_text(
    out: &mut String,
    v: &Value,
    ty: &DataType,
    decimal_scientific: bool,
) {
    use std::fmt::Write;
    match v {
        Value::Null => {}
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::TinyInt(x) => {
            let _ = write!(out, "{x}");
        }
        Value::SmallInt(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Int(x) | Value::IntervalYearMonth(x) => {
            let _ = write!(out, "{x}");
        }
        Value::BigInt(x) | Value::IntervalDayTime(x) => {
            let _ = write!(out, "{x}");
        }
        Value::Float(x) => format::write_float(out, *x),
        Value::Double(x) => format::write_double(out, *x),
        Value::Decimal(u, s) if decimal_scientific => {
            format::write_print_value(out, &Value::Decimal(*u, *s), ty)
        }
        Value::Decimal(u, s) => format::write_decimal(out, *u, *s),
        Value::String(s) => out.push_str(s),
        Value::Date(d) => format::write_date(out, i64::from(*d)),
        Value::Time(ms) => write_time_text(out, i64::from(*ms)),
        Value::Timestamp(ms) => write_timestamp_text(out, *ms, ' ', false),
        Value::TimestampLtz(ms) => write_timestamp_text(out, *ms, ' ', true),
        Value::Row(fields) => write_row_text(out, fields, ty, decimal_scientific),
    }
}

/// Appends the fields of a ROW value joined by `;`, each as [`write_scalar_text`] writes it
/// (a nested row's fields are joined the same way).
fn write_row_text(out: &mut String, fields: &[Value], ty: &DataType, decimal_scientific: bool) {
    let types = ty.row_fields();
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let field_ty = types.get(i).map_or(&DataType::Null, |f| &f.data_type);
        write_scalar_text(out, v, field_ty, decimal_scientific);
    }
}

/// Encodes rows as csv lines, reusing a scratch buffer.
#[derive(Debug)]
pub struct CsvEncoder {
    format: CsvFormat,
    types: Vec<DataType>,
    scratch: String,
    /// Characters below this need quoting (Jackson's `_cfgMinSafeChar`).
    min_safe: u8,
}

/// Strings longer than this are always quoted (Jackson's `MAX_QUOTE_CHECK`).
const MAX_QUOTE_CHECK: usize = 24;

impl CsvEncoder {
    pub fn new(format: CsvFormat, types: Vec<DataType>) -> Self {
        let min_safe = format
            .field_delimiter
            .max(format.quote.unwrap_or(0))
            .max(b'\n')
            .saturating_add(1);
        CsvEncoder {
            format,
            types,
            scratch: String::with_capacity(64),
            min_safe,
        }
    }

    /// Appends `row` as one line (with its `\n`) to `out`.
    pub fn encode(&mut self, row: &Row, out: &mut Vec<u8>) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(self.format.field_delimiter);
            }
            let ty = self.types.get(i).unwrap_or(&DataType::Null);
            match v {
                Value::Null => {
                    if let Some(n) = &self.format.null_literal {
                        out.extend_from_slice(n.as_bytes());
                    }
                }
                Value::String(s) => self.write_string(s, out),
                Value::Row(fields) => {
                    // Flink's csv format writes a ROW as its fields joined by the array element
                    // delimiter `;`, NULL fields empty, as one quoted text field.
                    self.scratch.clear();
                    write_row_text(
                        &mut self.scratch,
                        fields,
                        ty,
                        self.format.decimal_scientific,
                    );
                    let text = std::mem::take(&mut self.scratch);
                    self.write_quoted_if(&text, text.contains(';'), out);
                    self.scratch = text;
                }
                // Jackson writes numbers and booleans raw; temporal values are text nodes.
                Value::Date(_) | Value::Time(_) | Value::Timestamp(_) | Value::TimestampLtz(_) => {
                    self.scratch.clear();
                    write_scalar_text(&mut self.scratch, v, ty, self.format.decimal_scientific);
                    let text = std::mem::take(&mut self.scratch);
                    self.write_string(&text, out);
                    self.scratch = text;
                }
                other => {
                    self.scratch.clear();
                    write_scalar_text(&mut self.scratch, other, ty, self.format.decimal_scientific);
                    out.extend_from_slice(self.scratch.as_bytes());
                }
            }
        }
        out.push(b'\n');
    }

    fn write_string(&self, s: &str, out: &mut Vec<u8>) {
        self.write_quoted_if(s, false, out);
    }

    /// Writes `s` as a text field, quoted when Jackson would or when `force` is set.
    fn write_quoted_if(&self, s: &str, force: bool, out: &mut Vec<u8>) {
        let Some(q) = self.format.quote else {
            out.extend_from_slice(s.as_bytes());
            return;
        };
        let esc = self.format.escape;
        let needs = force
            || s.chars().count() > MAX_QUOTE_CHECK
            || s.bytes().any(|b| b < self.min_safe || Some(b) == esc);
        if !needs {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        out.push(q);
        for b in s.bytes() {
            if b == q {
                out.push(q);
            } else if Some(b) == esc {
                out.push(b);
            }
            out.push(b);
        }
        out.push(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::options::Options;

    fn decoder(types: Vec<DataType>, pairs: &[(&str, &str)]) -> CsvDecoder {
        let o = Options::from_pairs(pairs.iter().copied());
        let mut r = o.reader();
        let f = CsvFormat::from_options(&mut r).unwrap();
        r.finish("csv").unwrap();
        CsvDecoder::new(f, types)
    }

    fn decode(d: &mut CsvDecoder, line: &str) -> std::result::Result<Decoded, FieldError> {
        assert_eq!(d.split(line.as_bytes()), Split::Complete);
        d.decode()
    }

    fn row(d: Decoded) -> Row {
        match d {
            Decoded::Row(r) => r,
            other => panic!("expected a row, got {other:?}"),
        }
    }

    #[test]
    fn splits_quotes_and_doubled_quotes() {
        let mut d = decoder(vec![DataType::STRING, DataType::STRING, DataType::Int], &[]);
        let r = row(decode(&mut d, "\"a,b\",\"say \"\"hi\"\"\", 7").unwrap());
        assert_eq!(
            r,
            vec![
                Value::string("a,b"),
                Value::string("say \"hi\""),
                Value::Int(7)
            ]
        );
        // A quoted field left open continues on the next line.
        assert_eq!(d.split(b"\"multi"), Split::OpenQuote);
        assert_eq!(d.split(b"\"multi\nline\",x,1"), Split::Complete);
        assert_eq!(row(d.decode().unwrap())[0], Value::string("multi\nline"));
    }

    #[test]
    fn empty_fields_follow_flink() {
        let mut d = decoder(vec![DataType::STRING, DataType::Int], &[]);
        assert_eq!(d.split(b"x,"), Split::Complete);
        let err = d.decode().unwrap_err();
        assert_eq!(err.column, Some(1));
        let r = row(decode(&mut d, ",5").unwrap());
        assert_eq!(r, vec![Value::string(""), Value::Int(5)]);

        let mut d = decoder(
            vec![DataType::STRING, DataType::Int],
            &[("csv.null-literal", "")],
        );
        let r = row(decode(&mut d, "\"\",").unwrap());
        assert_eq!(r, vec![Value::Null, Value::Null]);
        // Spaces are kept in strings and trimmed for numbers.
        let r = row(decode(&mut d, " a , 12 ").unwrap());
        assert_eq!(r, vec![Value::string(" a "), Value::Int(12)]);
    }

    #[test]
    fn ignore_parse_errors_nulls_fields_and_pads() {
        let types = vec![DataType::Int, DataType::Double, DataType::STRING];
        let mut d = decoder(types.clone(), &[("csv.ignore-parse-errors", "true")]);
        let r = row(decode(&mut d, "abc,1.5,x").unwrap());
        assert_eq!(r, vec![Value::Null, Value::Double(1.5), Value::string("x")]);
        let r = row(decode(&mut d, "1").unwrap());
        assert_eq!(r, vec![Value::Int(1), Value::Null, Value::Null]);
        assert_eq!(decode(&mut d, "1,2,3,4").unwrap(), Decoded::Skipped);

        let mut strict = decoder(types, &[]);
        let err = decode(&mut strict, "1,2").unwrap_err();
        assert_eq!(
            err.reason,
            "Row length mismatch. 3 fields expected but was 2."
        );
    }

    #[test]
    fn field_types_parse_like_flink() {
        let p = |t: &str, ty: DataType| parse_field(t, &ty);
        assert_eq!(p("TRUE", DataType::Boolean), Ok(Value::Boolean(true)));
        assert_eq!(p("yes", DataType::Boolean), Ok(Value::Boolean(false)));
        assert_eq!(p("-128", DataType::TinyInt), Ok(Value::TinyInt(-128)));
        assert!(p("128", DataType::TinyInt).is_err());
        assert!(p("1.5", DataType::Int).is_err());
        assert_eq!(p("1e3", DataType::Double), Ok(Value::Double(1000.0)));
        assert_eq!(
            p("12.345", DataType::Decimal(10, 2)),
            Ok(Value::Decimal(1235, 2))
        );
        assert_eq!(
            p("-12.345", DataType::Decimal(10, 2)),
            Ok(Value::Decimal(-1235, 2))
        );
        assert_eq!(
            p("1E2", DataType::Decimal(5, 1)),
            Ok(Value::Decimal(1000, 1))
        );
        assert_eq!(p("123456", DataType::Decimal(5, 1)), Ok(Value::Null));
        assert!(p(" 1.5", DataType::Decimal(5, 1)).is_err());
        assert_eq!(p("2024-03-10", DataType::Date), Ok(Value::Date(19792)));
        assert_eq!(p("2024-3-1", DataType::Date), Ok(Value::Date(19783)));
        assert!(p("2024-02-30", DataType::Date).is_err());
        assert_eq!(
            p("08:00:07.643", DataType::Time(3)),
            Ok(Value::Time(28_807_643))
        );
        assert_eq!(
            p("08:00:07.643", DataType::Time(0)),
            Ok(Value::Time(28_807_000))
        );
        assert_eq!(
            p("2024-03-10 08:00:07.643", DataType::Timestamp(3)),
            Ok(Value::Timestamp(1_710_057_607_643))
        );
        assert_eq!(
            p("2024-03-10 08:00:07", DataType::Timestamp(3)),
            Ok(Value::Timestamp(1_710_057_607_000))
        );
        assert!(p("2024-03-10T08:00:07", DataType::Timestamp(3)).is_err());
        assert_eq!(
            p("2024-03-10 08:00:07.643Z", DataType::TimestampLtz(3)),
            Ok(Value::TimestampLtz(1_710_057_607_643))
        );
    }

    #[test]
    fn comments_and_delimiters() {
        let mut d = decoder(
            vec![DataType::Int, DataType::STRING],
            &[
                ("csv.field-delimiter", "\\t"),
                ("csv.allow-comments", "true"),
            ],
        );
        assert!(d.is_ignorable(b"# note"));
        assert!(d.is_ignorable(b""));
        let r = row(decode(&mut d, "1\ta,b").unwrap());
        assert_eq!(r, vec![Value::Int(1), Value::string("a,b")]);
        let mut e = decoder(vec![DataType::STRING], &[("csv.escape-character", "\\\\")]);
        let r = row(decode(&mut e, "a\\,b").unwrap());
        assert_eq!(r, vec![Value::string("a,b")]);
    }

    #[test]
    fn option_errors() {
        let o = Options::from_pairs([("csv.field-delimiter", ";;")]);
        let err = CsvFormat::from_options(&mut o.reader()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Option 'csv.field-delimiter' must be a string with single character, but was: ;;"
        );
        let o = Options::from_pairs([
            ("csv.disable-quote-character", "true"),
            ("csv.quote-character", "'"),
        ]);
        assert!(CsvFormat::from_options(&mut o.reader()).is_err());
    }

    #[test]
    fn rows_are_written_as_flink_writes_them() {
        use crate::types::Field;
        let row_ty = DataType::Row(Arc::from(vec![
            Field::new("name", DataType::STRING),
            Field::new("age", DataType::Int),
            Field::new("ts", DataType::Timestamp(3)),
        ]));
        let mut e = CsvEncoder::new(CsvFormat::default(), vec![DataType::Int, row_ty]);
        let mut out = Vec::new();
        let row = |name: Value, ms: i64| {
            Value::Row(Arc::from(vec![name, Value::Int(30), Value::Timestamp(ms)]))
        };
        e.encode(
            &vec![Value::Int(3), row(Value::Null, 1_704_103_205_000)],
            &mut out,
        );
        e.encode(&vec![Value::Int(2), Value::Null], &mut out);
        e.encode(
            &vec![Value::Int(5), row(Value::string("x, y"), 1_704_103_200_123)],
            &mut out,
        );
        // As Flink 2.3's csv format wrote the same rows.
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "3,\";30;2024-01-01 10:00:05\"\n2,\n5,\"x, y;30;2024-01-01 10:00:00.123\"\n"
        );
    }

    #[test]
    fn encodes_like_jackson() {
        let types = vec![
            DataType::Int,
            DataType::STRING,
            DataType::STRING,
            DataType::Decimal(10, 2),
            DataType::Timestamp(3),
            DataType::Double,
            DataType::STRING,
        ];
        let mut e = CsvEncoder::new(CsvFormat::default(), types);
        let mut out = Vec::new();
        e.encode(
            &vec![
                Value::Int(-1),
                Value::string("abc"),
                Value::string("a b"),
                Value::Decimal(1225, 2),
                Value::Timestamp(1_710_057_607_600),
                Value::Double(1e10),
                Value::Null,
            ],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-1,abc,\"a b\",12.25,\"2024-03-10 08:00:07.6\",1.0E10,\n"
        );
        let mut out = Vec::new();
        let mut e = CsvEncoder::new(CsvFormat::default(), vec![DataType::STRING, DataType::Date]);
        e.encode(
            &vec![Value::string("say \"x\""), Value::Date(19792)],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"say \"\"x\"\"\",2024-03-10\n"
        );
    }
}
