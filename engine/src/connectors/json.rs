//! Flink's `json` format: one JSON object per line, decoded into rows and encoded from them.
//!
//! Decoding follows Flink's `JsonToRowDataConverters`: fields by column name (case-sensitive),
//! a missing field or `null` is NULL (or an error with `json.fail-on-missing-field`), numbers go
//! into the column's type (a fractional number into an integer column truncates, as Jackson's
//! `asInt` does), strings are parsed for non-string columns, a number or object in a string column
//! becomes its JSON text. Timestamps are `yyyy-MM-dd HH:mm[:ss[.f]]` with
//! `json.timestamp-format.standard` = `SQL` (default) or with a `T` for `ISO-8601`; TIMESTAMP_LTZ
//! adds a `Z`. With `json.ignore-parse-errors` malformed JSON is skipped as a whole line and a
//! value that does not convert to its column's type is NULL (Flink's behaviour). Lines are
//! deserialized straight into the row (no intermediate JSON tree); DECIMAL values are taken
//! from the shortest text of the parsed double, which is exact for up to 15 significant digits.
//!
//! Encoding follows `RowDataToJsonConverters`: `{"a":1,"b":"x"}` in schema order, NULL as `null`,
//! DOUBLE as Java prints it, DECIMAL as `BigDecimal.toString` (plain with
//! `json.encode.decimal-as-plain-number`), temporal values as strings in the chosen standard.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::connectors::csv::{
    civil_days, parse_decimal_exact, parse_iso_time, write_scalar_text, write_timestamp_text,
};
use crate::connectors::options::{invalid_value, OptionReader};
use crate::error::{EngineError, Result};
use crate::expr::{cast, format};
use crate::types::{DataType, Schema};
use crate::value::{Row, Value};

/// `json.timestamp-format.standard`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampStandard {
    /// `yyyy-MM-dd HH:mm:ss.s{precision}`.
    Sql,
    /// `yyyy-MM-ddTHH:mm:ss.s{precision}`.
    Iso8601,
}

/// The options of the json format, as Flink names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonFormat {
    pub fail_on_missing_field: bool,
    pub ignore_parse_errors: bool,
    pub timestamp_standard: TimestampStandard,
    /// `json.encode.decimal-as-plain-number`.
    pub decimal_plain: bool,
    /// `json.encode.ignore-null-fields`.
    pub ignore_null_fields: bool,
}

impl Default for JsonFormat {
    fn default() -> Self {
        JsonFormat {
            fail_on_missing_field: false,
            ignore_parse_errors: false,
            timestamp_standard: TimestampStandard::Sql,
            decimal_plain: false,
            ignore_null_fields: false,
        }
    }
}

impl JsonFormat {
    /// Reads the `json.*` options; every json option Flink knows is accepted.
    pub fn from_options(r: &mut OptionReader<'_>) -> Result<JsonFormat> {
        let mut f = JsonFormat {
            fail_on_missing_field: r.bool("json.fail-on-missing-field", false)?,
            ignore_parse_errors: r.bool("json.ignore-parse-errors", false)?,
            ..JsonFormat::default()
        };
        if f.fail_on_missing_field && f.ignore_parse_errors {
            return Err(EngineError::option(
                "fail-on-missing-field and ignore-parse-errors shouldn't both be true.",
                None,
            ));
        }
        f.timestamp_standard = match r.string("json.timestamp-format.standard") {
            None => TimestampStandard::Sql,
            Some(v) if v.eq_ignore_ascii_case("SQL") => TimestampStandard::Sql,
            Some(v) if v.eq_ignore_ascii_case("ISO-8601") => TimestampStandard::Iso8601,
            Some(v) => {
                return Err(invalid_value(
                    "json.timestamp-format.standard",
                    v,
                    "'SQL' or 'ISO-8601'",
                ))
            }
        };
        f.decimal_plain = r.bool("json.encode.decimal-as-plain-number", false)?;
        f.ignore_null_fields = r.bool("json.encode.ignore-null-fields", false)?;
        // Maps are not supported as column types: the map-null-key options have no effect.
        r.accept("json.map-null-key.mode");
        r.accept("json.map-null-key.literal");
        Ok(f)
    }
}

/// What decoding one line gave.
#[derive(Debug, PartialEq)]
pub enum JsonDecoded {
    Row(Row),
    /// A bad line dropped under `json.ignore-parse-errors`.
    Skipped,
}

/// Decodes JSON lines into rows of a fixed schema.
#[derive(Debug)]
pub struct JsonDecoder {
    format: JsonFormat,
    names: Vec<String>,
    types: Vec<DataType>,
    index: HashMap<String, usize>,
    seen: Vec<bool>,
}

impl JsonDecoder {
    pub fn new(format: JsonFormat, schema: &Schema) -> Self {
        let names: Vec<String> = schema.fields.iter().map(|f| f.name.clone()).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        JsonDecoder {
            format,
            types: schema.types(),
            seen: vec![false; names.len()],
            names,
            index,
        }
    }

    /// Decodes one line (a JSON object); the error says why it is not a row.
    pub fn decode(&mut self, line: &str) -> std::result::Result<JsonDecoded, String> {
        match self.decode_strict(line) {
            Ok(row) => Ok(JsonDecoded::Row(row)),
            Err(_) if self.format.ignore_parse_errors => Ok(JsonDecoded::Skipped),
            Err(e) => Err(e),
        }
    }

    fn decode_strict(&mut self, line: &str) -> std::result::Result<Row, String> {
        let mut row: Row = vec![Value::Null; self.types.len()];
        self.seen.iter_mut().for_each(|s| *s = false);
        let mut de = serde_json::Deserializer::from_str(line);
        let seed = RowSeed {
            index: &self.index,
            types: &self.types,
            names: &self.names,
            row: &mut row,
            seen: &mut self.seen,
            standard: self.format.timestamp_standard,
            lenient: self.format.ignore_parse_errors,
        };
        seed.deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        if self.format.fail_on_missing_field {
            if let Some(i) = self.seen.iter().position(|s| !s) {
                return Err(format!(
                    "Could not find field with name '{}'.",
                    self.names[i]
                ));
            }
        }
        Ok(row)
    }
}

struct RowSeed<'a> {
    index: &'a HashMap<String, usize>,
    types: &'a [DataType],
    names: &'a [String],
    row: &'a mut Row,
    seen: &'a mut [bool],
    standard: TimestampStandard,
    lenient: bool,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(col) = map.next_key_seed(KeySeed { index: self.index })? {
            match col {
                Some(i) => {
                    let v = map.next_value_seed(FieldSeed {
                        ty: &self.types[i],
                        name: &self.names[i],
                        standard: self.standard,
                        lenient: self.lenient,
                    })?;
                    self.row[i] = v;
                    self.seen[i] = true;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Resolves a key to its column without allocating.
struct KeySeed<'a> {
    index: &'a HashMap<String, usize>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Option<usize>, E> {
        Ok(self.index.get(v).copied())
    }
}

/// Deserializes one field's value into the column's type.
struct FieldSeed<'a> {
    ty: &'a DataType,
    name: &'a str,
    standard: TimestampStandard,
    /// `json.ignore-parse-errors`: a value that does not convert to the column's type is NULL
    /// (the rest of the row is kept), as in Flink; malformed JSON still drops the whole line.
    lenient: bool,
}

impl FieldSeed<'_> {
    /// Applies [`FieldSeed::lenient`] to a conversion result.
    fn lenient<E>(&self, r: std::result::Result<Value, E>) -> std::result::Result<Value, E> {
        match r {
            Err(_) if self.lenient => Ok(Value::Null),
            other => other,
        }
    }

    fn fail<E: de::Error>(&self, text: &str) -> E {
        E::custom(format!(
            "Fail to deserialize at field: {}: '{text}' is not a valid {}",
            self.name, self.ty
        ))
    }

    fn convert_integer<E: de::Error>(&self, n: i128) -> std::result::Result<Value, E> {
        let text = || n.to_string();
        Ok(match self.ty {
            DataType::TinyInt => Value::TinyInt(i8::try_from(n).map_err(|_| self.fail(&text()))?),
            DataType::SmallInt => {
                Value::SmallInt(i16::try_from(n).map_err(|_| self.fail(&text()))?)
            }
            DataType::Int => Value::Int(i32::try_from(n).map_err(|_| self.fail(&text()))?),
            DataType::BigInt => Value::BigInt(i64::try_from(n).map_err(|_| self.fail(&text()))?),
            DataType::IntervalYearMonth => {
                Value::IntervalYearMonth(i32::try_from(n).map_err(|_| self.fail(&text()))?)
            }
            DataType::IntervalDayTime => {
                Value::IntervalDayTime(i64::try_from(n).map_err(|_| self.fail(&text()))?)
            }
            DataType::Float => Value::Float(n as f32),
            DataType::Double => Value::Double(n as f64),
            DataType::Decimal(p, s) => match cast::rescale(n, 0, *s) {
                Some(u) if cast::fits_precision(u, *p) => Value::Decimal(u, *s),
                _ => Value::Null,
            },
            _ => return self.convert_text(&text()),
        })
    }

    fn convert_text<E: de::Error>(&self, text: &str) -> std::result::Result<Value, E> {
        let int = || text.trim().parse::<i64>().map_err(|_| self.fail(text));
        Ok(match self.ty {
            DataType::Null => Value::Null,
            DataType::Boolean => Value::Boolean(text.trim().eq_ignore_ascii_case("true")),
            DataType::TinyInt
            | DataType::SmallInt
            | DataType::Int
            | DataType::BigInt
            | DataType::IntervalYearMonth
            | DataType::IntervalDayTime => return self.convert_integer(i128::from(int()?)),
            DataType::Float => {
                Value::Float(cast::parse_double(text).ok_or_else(|| self.fail(text))? as f32)
            }
            DataType::Double => {
                Value::Double(cast::parse_double(text).ok_or_else(|| self.fail(text))?)
            }
            DataType::Decimal(p, s) => match parse_decimal_exact(text, *p, *s) {
                Some(Some(u)) => Value::Decimal(u, *s),
                Some(None) => Value::Null,
                None => return Err(self.fail(text)),
            },
            DataType::Char(_) | DataType::Varchar(_) => Value::String(Arc::from(text)),
            DataType::Date => Value::Date(parse_iso_date(text).ok_or_else(|| self.fail(text))?),
            DataType::Time(p) => {
                let ms = parse_iso_time(text).ok_or_else(|| self.fail(text))?;
                let ms = cast::truncate_millis(i64::from(ms), *p);
                Value::Time(i32::try_from(ms).map_err(|_| self.fail(text))?)
            }
            DataType::Timestamp(_) => Value::Timestamp(
                parse_json_timestamp(text, self.standard, false).ok_or_else(|| self.fail(text))?,
            ),
            DataType::TimestampLtz(_) => Value::TimestampLtz(
                parse_json_timestamp(text, self.standard, true).ok_or_else(|| self.fail(text))?,
            ),
            DataType::Row(_) => return Err(self.fail(text)),
        })
    }
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of type {}", self.ty)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Value, E> {
        match self.ty {
            DataType::Boolean => Ok(Value::Boolean(b)),
            _ => self.lenient(self.convert_text(if b { "true" } else { "false" })),
        }
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Value, E> {
        self.lenient(self.convert_integer(i128::from(n)))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Value, E> {
        self.lenient(self.convert_integer(i128::from(n)))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> std::result::Result<Value, E> {
        let r = self.convert_f64(x);
        self.lenient(r)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Value, E> {
        self.lenient(self.convert_text(s))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Value, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.lenient(self.nested(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Value, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.lenient(self.nested(v))
    }
}

impl FieldSeed<'_> {
    fn convert_f64<E: de::Error>(&self, x: f64) -> std::result::Result<Value, E> {
        let java_text = || {
            let mut s = String::new();
            format::write_double(&mut s, x);
            s
        };
        // Jackson's asInt/asLong on a floating node truncate toward zero; out of range fails.
        let truncate = |lo: f64, hi: f64| -> std::result::Result<i128, E> {
            if x.is_finite() && x >= lo && x <= hi {
                Ok(x.trunc() as i128)
            } else {
                Err(self.fail(&java_text()))
            }
        };
        match self.ty {
            DataType::Float => Ok(Value::Float(x as f32)),
            DataType::Double => Ok(Value::Double(x)),
            DataType::TinyInt
            | DataType::SmallInt
            | DataType::Int
            | DataType::IntervalYearMonth => {
                self.convert_integer(truncate(f64::from(i32::MIN), f64::from(i32::MAX))?)
            }
            DataType::BigInt | DataType::IntervalDayTime => {
                self.convert_integer(truncate(i64::MIN as f64, i64::MAX as f64)?)
            }
            DataType::Decimal(..) => {
                // `{}` is the shortest text that reads back as `x`, i.e. the literal's digits.
                self.convert_text(&x.to_string())
            }
            _ => self.convert_text(&java_text()),
        }
    }

    /// An object or array: a ROW column's fields by name (a missing field is NULL), its JSON
    /// text in a string column, an error elsewhere.
    fn nested<E: de::Error>(&self, v: serde_json::Value) -> std::result::Result<Value, E> {
        if let (DataType::Row(fields), serde_json::Value::Object(map)) = (self.ty, &v) {
            let mut values = Vec::with_capacity(fields.len());
            for f in fields.iter() {
                let value = match map.get(&f.name) {
                    None => Value::Null,
                    Some(inner) => FieldSeed {
                        ty: &f.data_type,
                        name: &f.name,
                        standard: self.standard,
                        lenient: self.lenient,
                    }
                    .deserialize(inner)
                    .map_err(E::custom)?,
                };
                values.push(value);
            }
            return Ok(Value::Row(Arc::from(values)));
        }
        let text = v.to_string();
        match self.ty {
            DataType::Char(_) | DataType::Varchar(_) => Ok(Value::String(Arc::from(text.as_str()))),
            _ => Err(self.fail(&text)),
        }
    }
}

/// ISO_LOCAL_DATE: `yyyy-MM-dd`.
pub fn parse_iso_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: u32 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !s
        .bytes()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    civil_days(i64::from(y), m, d)
}

/// Flink json's timestamp formats: `yyyy-MM-dd HH:mm[:ss[.f]]` (SQL) or with `T` (ISO-8601),
/// followed by `Z` for TIMESTAMP_LTZ.
pub fn parse_json_timestamp(s: &str, standard: TimestampStandard, zulu: bool) -> Option<i64> {
    let s = if zulu { s.strip_suffix('Z')? } else { s };
    let sep = match standard {
        TimestampStandard::Sql => ' ',
        TimestampStandard::Iso8601 => 'T',
    };
    let (date, time) = s.split_once(sep)?;
    let days = parse_iso_date(date)?;
    let ms = parse_iso_time(time)?;
    Some(i64::from(days) * format::MILLIS_PER_DAY + i64::from(ms))
}

/// Encodes rows as JSON lines.
#[derive(Debug)]
pub struct JsonEncoder {
    format: JsonFormat,
    /// Each column's key, already quoted and escaped, followed by `:`.
    keys: Vec<Vec<u8>>,
    types: Vec<DataType>,
    scratch: String,
}

impl JsonEncoder {
    pub fn new(format: JsonFormat, schema: &Schema) -> Self {
        let keys = schema
            .fields
            .iter()
            .map(|f| {
                let mut k = Vec::new();
                write_json_string(&f.name, &mut k);
                k.push(b':');
                k
            })
            .collect();
        JsonEncoder {
            format,
            keys,
            types: schema.types(),
            scratch: String::with_capacity(32),
        }
    }

    /// Appends `row` as one JSON object line (with its `\n`) to `out`.
    pub fn encode(&mut self, row: &Row, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (i, v) in row.iter().enumerate() {
            if v.is_null() && self.format.ignore_null_fields {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            if let Some(k) = self.keys.get(i) {
                out.extend_from_slice(k);
            }
            let ty = self.types.get(i).unwrap_or(&DataType::Null);
            write_json_value(&self.format, &mut self.scratch, v, ty, out);
        }
        out.push(b'}');
        out.push(b'\n');
    }
}

/// Appends one value as Flink's json format writes it: a ROW as a nested object keyed by its
/// field names.
fn write_json_value(
    format: &JsonFormat,
    scratch: &mut String,
    v: &Value,
    ty: &DataType,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    match v {
        Value::Row(fields) => {
            out.push(b'{');
            let types = ty.row_fields();
            let mut first = true;
            for (j, f) in fields.iter().enumerate() {
                if f.is_null() && format.ignore_null_fields {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                let (name, field_ty) = types
                    .get(j)
                    .map_or(("", &DataType::Null), |t| (t.name.as_str(), &t.data_type));
                write_json_string(name, out);
                out.push(b':');
                write_json_value(format, scratch, f, field_ty, out);
            }
            out.push(b'}');
        }
        Value::Null => out.extend_from_slice(b"null"),
        Value::String(s) => write_json_string(s, out),
        Value::Float(x) if !x.is_finite() => {
            format::write_float(scratch, *x);
            write_json_string(&scratch, out);
        }
        Value::Double(x) if !x.is_finite() => {
            format::write_double(scratch, *x);
            write_json_string(&scratch, out);
        }
        Value::Date(_) | Value::Time(_) => {
            write_scalar_text(scratch, v, ty, true);
            write_json_string(&scratch, out);
        }
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => {
            let sep = match format.timestamp_standard {
                TimestampStandard::Sql => ' ',
                TimestampStandard::Iso8601 => 'T',
            };
            let zulu = matches!(v, Value::TimestampLtz(_));
            write_timestamp_text(scratch, *ms, sep, zulu);
            write_json_string(&scratch, out);
        }
        other => {
            write_scalar_text(scratch, other, ty, !format.decimal_plain);
            out.extend_from_slice(scratch.as_bytes());
        }
    }
}

/// Appends `s` as a JSON string literal.
fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends the time text of a TIME value, as the encoder writes it (exposed for tests).
#[cfg(test)]
fn time_text(ms: i64) -> String {
    let mut s = String::new();
    crate::connectors::csv::write_time_text(&mut s, ms);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::options::Options;
    use crate::types::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::BigInt),
            Field::new("name", DataType::STRING),
            Field::new("amount", DataType::Decimal(10, 2)),
            Field::new("ts", DataType::Timestamp(3)),
            Field::new("ok", DataType::Boolean),
        ])
    }

    fn decoder(pairs: &[(&str, &str)]) -> JsonDecoder {
        let o = Options::from_pairs(pairs.iter().copied());
        let mut r = o.reader();
        let f = JsonFormat::from_options(&mut r).unwrap();
        JsonDecoder::new(f, &schema())
    }

    #[test]
    fn decodes_by_name_with_nulls_and_missing() {
        let mut d = decoder(&[]);
        let r = d
            .decode(r#"{"name":"a\"b","id":7,"extra":[1,{"x":2}],"amount":12.345,"ts":"2024-03-10 08:00:07.643","ok":null}"#)
            .unwrap();
        assert_eq!(
            r,
            JsonDecoded::Row(vec![
                Value::BigInt(7),
                Value::string("a\"b"),
                Value::Decimal(1235, 2),
                Value::Timestamp(1_710_057_607_643),
                Value::Null,
            ])
        );
        let r = d.decode(r#"{"id":"12","name":5,"amount":"1.5"}"#).unwrap();
        assert_eq!(
            r,
            JsonDecoded::Row(vec![
                Value::BigInt(12),
                Value::string("5"),
                Value::Decimal(150, 2),
                Value::Null,
                Value::Null,
            ])
        );
        let r = d.decode(r#"{"name":{"a":1},"id":2.9}"#).unwrap();
        match r {
            JsonDecoded::Row(row) => {
                assert_eq!(row[0], Value::BigInt(2));
                assert_eq!(row[1], Value::string(r#"{"a":1}"#));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_and_ignoring() {
        let mut d = decoder(&[]);
        assert!(d.decode(r#"{"id":"x"}"#).unwrap_err().contains("field: id"));
        assert!(d.decode("{not json").is_err());
        assert!(d.decode("[1,2]").is_err());
        let mut d = decoder(&[("json.ignore-parse-errors", "true")]);
        assert_eq!(d.decode("{not json").unwrap(), JsonDecoded::Skipped);
        // A value of the wrong type is NULL and the rest of the row is kept (Flink's behaviour).
        match d.decode(r#"{"id":"x","name":"ben"}"#).unwrap() {
            JsonDecoded::Row(row) => {
                assert_eq!(row[0], Value::Null);
                assert_eq!(row[1], Value::string("ben"));
            }
            other => panic!("{other:?}"),
        }
        let mut d = decoder(&[("json.fail-on-missing-field", "true")]);
        assert_eq!(
            d.decode(r#"{"id":1}"#).unwrap_err(),
            "Could not find field with name 'name'."
        );
        let o = Options::from_pairs([
            ("json.fail-on-missing-field", "true"),
            ("json.ignore-parse-errors", "true"),
        ]);
        assert!(JsonFormat::from_options(&mut o.reader()).is_err());
    }

    #[test]
    fn timestamp_standards() {
        let t = parse_json_timestamp("2024-03-10T08:00:07.643", TimestampStandard::Iso8601, false);
        assert_eq!(t, Some(1_710_057_607_643));
        assert_eq!(
            parse_json_timestamp("2024-03-10T08:00:07", TimestampStandard::Sql, false),
            None
        );
        assert_eq!(
            parse_json_timestamp("2024-03-10 08:00:07Z", TimestampStandard::Sql, true),
            Some(1_710_057_607_000)
        );
        assert_eq!(parse_iso_date("2024-3-10"), None);
        assert_eq!(time_text(28_807_500), "08:00:07.5");
    }

    #[test]
    fn encodes_like_flink() {
        let mut e = JsonEncoder::new(JsonFormat::default(), &schema());
        let mut out = Vec::new();
        e.encode(
            &vec![
                Value::BigInt(1),
                Value::string("x\"y"),
                Value::Decimal(1225, 2),
                Value::Timestamp(1_710_057_607_643),
                Value::Null,
            ],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":1,\"name\":\"x\\\"y\",\"amount\":12.25,\"ts\":\"2024-03-10 08:00:07.643\",\"ok\":null}\n"
        );
    }
}
