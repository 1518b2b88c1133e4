//! The binary encoding of values, rows and state keys kept in keyed state and snapshots.
//!
//! Invariants:
//! - Stable: the byte layout is part of the snapshot format. Every top-level blob ([`encode_row`],
//!   [`encode_key`], an aggregation's accumulators) starts with [`CODEC_VERSION`]; a change of
//!   layout bumps it and decoding refuses a version it does not know.
//! - Deterministic: the same input always gives the same bytes (no hash-map order reaches them).
//! - Total: decoding arbitrary bytes never panics and never allocates more than the input can
//!   describe; a malformed input is an [`EngineError::Data`] naming what was wrong.
//!
//! Layout of one value: a one-byte tag, then the payload. Integers are LEB128 varints, signed ones
//! zigzag-mapped first, so small magnitudes take one byte; TINYINT is its one raw byte. Floats are
//! their IEEE bits, little-endian, so NaN payloads and -0.0 survive. A decimal is its unscaled
//! i128 (zigzag varint) and its scale byte. A string is its UTF-8 byte length (varint) and bytes.
//! BOOLEAN has a tag per value, so it costs one byte. A ROW is its field count (varint) and its
//! fields, each a value; rows nest at most [`MAX_ROW_DEPTH`] deep, so that decoding hostile bytes
//! cannot exhaust the stack.
//!
//! Keys ([`encode_key`]) are not decodable: they are normalised so that values which compare equal
//! under `Value`'s `Eq` give identical bytes, the rule `Value`'s `Hash` follows, taken further:
//! - every integer width, a decimal with no fractional part that fits an i64, and a float (FLOAT
//!   widened to DOUBLE) that is finite, integral, within the i64 range and not -0.0 are all
//!   encoded as the same i64;
//! - other decimals are encoded with trailing zeros of the unscaled value stripped (so 1.50 and
//!   1.5 agree);
//! - other floats are encoded as their DOUBLE bits (so FLOAT 1.5 and DOUBLE 1.5 agree; -0.0 and
//!   0.0 differ, as they do under `Eq`);
//! - TIMESTAMP and TIMESTAMP_LTZ of the same millisecond agree.
//!
//! `Value`'s `Eq` compares a decimal with a non-integral float through f64, which is not
//! transitive (0.1 as DECIMAL(1, 1) equals 0.1 as DOUBLE, which is not exactly 1/10), so no byte
//! encoding can follow it there: a fractional decimal and a float never share a key. Flink never
//! compares them without a cast to one type, so a key column never mixes them.

use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::value::{Row, Value};

/// The version byte at the start of every top-level blob of this encoding.
pub const CODEC_VERSION: u8 = 1;

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_TINYINT: u8 = 3;
const TAG_SMALLINT: u8 = 4;
const TAG_INT: u8 = 5;
const TAG_BIGINT: u8 = 6;
const TAG_FLOAT: u8 = 7;
const TAG_DOUBLE: u8 = 8;
const TAG_DECIMAL: u8 = 9;
const TAG_STRING: u8 = 10;
const TAG_DATE: u8 = 11;
const TAG_TIME: u8 = 12;
const TAG_TIMESTAMP: u8 = 13;
const TAG_TIMESTAMP_LTZ: u8 = 14;
const TAG_INTERVAL_DAY_TIME: u8 = 15;
const TAG_INTERVAL_YEAR_MONTH: u8 = 16;
const TAG_ROW: u8 = 17;

/// The deepest nesting of ROW values a decoder accepts.
pub const MAX_ROW_DEPTH: usize = 64;

/// The error for bytes that do not decode.
pub fn corrupt(what: impl std::fmt::Display) -> EngineError {
    EngineError::data(format!("corrupt encoded state: {what}"))
}

/// Appends the version byte that starts a top-level blob.
pub fn put_version(out: &mut Vec<u8>) {
    out.push(CODEC_VERSION);
}

/// Reads and checks the version byte that starts a top-level blob.
pub fn check_version(input: &mut &[u8]) -> Result<()> {
    match get_u8(input)? {
        CODEC_VERSION => Ok(()),
        v => Err(EngineError::data(format!(
            "encoded state has format version {v}, this build reads version {CODEC_VERSION}"
        ))),
    }
}

/// Fails unless the whole input was consumed: trailing bytes mean a blob was misread.
pub fn expect_end(input: &[u8]) -> Result<()> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(corrupt(format!(
            "{} unexpected trailing bytes",
            input.len()
        )))
    }
}

/// Reads one byte.
pub fn get_u8(input: &mut &[u8]) -> Result<u8> {
    let (&b, rest) = input
        .split_first()
        .ok_or_else(|| corrupt("unexpected end of input"))?;
    *input = rest;
    Ok(b)
}

/// Reads `n` bytes.
pub fn get_bytes<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(corrupt(format!(
            "{n} bytes announced but only {} left",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn get_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    let bytes = get_bytes(input, N)?;
    let mut a = [0u8; N];
    a.copy_from_slice(bytes);
    Ok(a)
}

/// Appends an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint of at most 64 bits.
pub fn get_uvarint(input: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let b = get_u8(input)?;
        if shift == 63 && b > 1 {
            return Err(corrupt("varint exceeds 64 bits"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

/// Appends a signed integer as a zigzag varint (small magnitudes of either sign are short).
pub fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a zigzag varint.
pub fn get_ivarint(input: &mut &[u8]) -> Result<i64> {
    let u = get_uvarint(input)?;
    Ok((u >> 1) as i64 ^ -((u & 1) as i64))
}

/// Reads a zigzag varint that must fit an i32.
pub fn get_i32(input: &mut &[u8]) -> Result<i32> {
    let v = get_ivarint(input)?;
    i32::try_from(v).map_err(|_| corrupt(format!("{v} does not fit a 32-bit integer")))
}

/// Reads a varint that must fit a usize (a length or a count).
pub fn get_len(input: &mut &[u8]) -> Result<usize> {
    let v = get_uvarint(input)?;
    usize::try_from(v).map_err(|_| corrupt(format!("length {v} is out of range")))
}

/// Appends an i128 as a zigzag varint (up to 19 bytes).
pub fn put_i128(out: &mut Vec<u8>, v: i128) {
    let mut u = ((v << 1) ^ (v >> 127)) as u128;
    while u >= 0x80 {
        out.push((u & 0x7f) as u8 | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

/// Reads an i128 zigzag varint.
pub fn get_i128(input: &mut &[u8]) -> Result<i128> {
    let mut u = 0u128;
    let mut shift = 0u32;
    loop {
        let b = get_u8(input)?;
        if shift == 126 && b > 3 {
            return Err(corrupt("varint exceeds 128 bits"));
        }
        u |= u128::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    Ok((u >> 1) as i128 ^ -((u & 1) as i128))
}

/// Appends an f32's bits, little-endian.
pub fn put_f32(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// Reads an f32 written by [`put_f32`], bit for bit.
pub fn get_f32(input: &mut &[u8]) -> Result<f32> {
    Ok(f32::from_bits(u32::from_le_bytes(get_array(input)?)))
}

/// Appends an f64's bits, little-endian.
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// Reads an f64 written by [`put_f64`], bit for bit.
pub fn get_f64(input: &mut &[u8]) -> Result<f64> {
    Ok(f64::from_bits(u64::from_le_bytes(get_array(input)?)))
}

/// Appends a boolean as one byte.
pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

/// Reads a boolean byte; anything but 0 or 1 is corrupt.
pub fn get_bool(input: &mut &[u8]) -> Result<bool> {
    match get_u8(input)? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(corrupt(format!("invalid boolean byte {b}"))),
    }
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Reads a string written by [`put_str`], borrowing from the input.
pub fn get_str<'a>(input: &mut &'a [u8]) -> Result<&'a str> {
    let n = get_len(input)?;
    let bytes = get_bytes(input, n)?;
    std::str::from_utf8(bytes).map_err(|e| corrupt(format!("string is not UTF-8: {e}")))
}

/// Appends one value: its tag and payload (no version byte; values nest in other blobs).
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Boolean(false) => out.push(TAG_FALSE),
        Value::Boolean(true) => out.push(TAG_TRUE),
        Value::TinyInt(x) => {
            out.push(TAG_TINYINT);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::SmallInt(x) => {
            out.push(TAG_SMALLINT);
            put_ivarint(out, i64::from(*x));
        }
        Value::Int(x) => {
            out.push(TAG_INT);
            put_ivarint(out, i64::from(*x));
        }
        Value::BigInt(x) => {
            out.push(TAG_BIGINT);
            put_ivarint(out, *x);
        }
        Value::Float(x) => {
            out.push(TAG_FLOAT);
            put_f32(out, *x);
        }
        Value::Double(x) => {
            out.push(TAG_DOUBLE);
            put_f64(out, *x);
        }
        Value::Decimal(u, s) => {
            out.push(TAG_DECIMAL);
            put_i128(out, *u);
            out.push(*s);
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            put_str(out, s);
        }
        Value::Date(x) => {
            out.push(TAG_DATE);
            put_ivarint(out, i64::from(*x));
        }
        Value::Time(x) => {
            out.push(TAG_TIME);
            put_ivarint(out, i64::from(*x));
        }
        Value::Timestamp(x) => {
            out.push(TAG_TIMESTAMP);
            put_ivarint(out, *x);
        }
        Value::TimestampLtz(x) => {
            out.push(TAG_TIMESTAMP_LTZ);
            put_ivarint(out, *x);
        }
        Value::IntervalDayTime(x) => {
            out.push(TAG_INTERVAL_DAY_TIME);
            put_ivarint(out, *x);
        }
        Value::IntervalYearMonth(x) => {
            out.push(TAG_INTERVAL_YEAR_MONTH);
            put_ivarint(out, i64::from(*x));
        }
        Value::Row(fields) => {
            out.push(TAG_ROW);
            put_values(fields, out);
        }
    }
}

/// Reads one value written by [`encode_value`], exactly as it was (variant, bits and scale).
pub fn decode_value(input: &mut &[u8]) -> Result<Value> {
    decode_value_at(input, 0)
}

/// [`decode_value`] inside `depth` enclosing rows.
fn decode_value_at(input: &mut &[u8], depth: usize) -> Result<Value> {
    let tag = get_u8(input)?;
    Ok(match tag {
        TAG_NULL => Value::Null,
        TAG_FALSE => Value::Boolean(false),
        TAG_TRUE => Value::Boolean(true),
        TAG_TINYINT => Value::TinyInt(i8::from_le_bytes(get_array(input)?)),
        TAG_SMALLINT => {
            let v = get_ivarint(input)?;
            Value::SmallInt(
                i16::try_from(v).map_err(|_| corrupt(format!("{v} does not fit a SMALLINT")))?,
            )
        }
        TAG_INT => Value::Int(get_i32(input)?),
        TAG_BIGINT => Value::BigInt(get_ivarint(input)?),
        TAG_FLOAT => Value::Float(get_f32(input)?),
        TAG_DOUBLE => Value::Double(get_f64(input)?),
        TAG_DECIMAL => {
            let u = get_i128(input)?;
            Value::Decimal(u, get_u8(input)?)
        }
        TAG_STRING => Value::String(Arc::from(get_str(input)?)),
        TAG_DATE => Value::Date(get_i32(input)?),
        TAG_TIME => Value::Time(get_i32(input)?),
        TAG_TIMESTAMP => Value::Timestamp(get_ivarint(input)?),
        TAG_TIMESTAMP_LTZ => Value::TimestampLtz(get_ivarint(input)?),
        TAG_INTERVAL_DAY_TIME => Value::IntervalDayTime(get_ivarint(input)?),
        TAG_INTERVAL_YEAR_MONTH => Value::IntervalYearMonth(get_i32(input)?),
        TAG_ROW => {
            if depth >= MAX_ROW_DEPTH {
                return Err(corrupt(format!(
                    "rows nested more than {MAX_ROW_DEPTH} deep"
                )));
            }
            let n = get_len(input)?;
            if n > input.len() {
                return Err(corrupt(format!(
                    "{n} row fields announced but only {} bytes left",
                    input.len()
                )));
            }
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                fields.push(decode_value_at(input, depth + 1)?);
            }
            Value::Row(Arc::from(fields))
        }
        t => return Err(corrupt(format!("unknown value tag {t}"))),
    })
}

/// Appends a count and the values, without a version byte (for rows nested in other blobs).
pub fn put_values(values: &[Value], out: &mut Vec<u8>) {
    put_uvarint(out, values.len() as u64);
    for v in values {
        encode_value(v, out);
    }
}

/// Reads what [`put_values`] wrote into `row`, replacing its contents (its buffer is reused).
pub fn get_values_into(input: &mut &[u8], row: &mut Row) -> Result<()> {
    let n = get_len(input)?;
    // Every value takes at least one byte: a count beyond the input is corrupt, and checking it
    // first keeps a bad count from reserving a huge buffer.
    if n > input.len() {
        return Err(corrupt(format!(
            "{n} values announced but only {} bytes left",
            input.len()
        )));
    }
    row.clear();
    row.reserve(n);
    for _ in 0..n {
        row.push(decode_value(input)?);
    }
    Ok(())
}

/// Appends a row as a top-level blob: version byte, value count, values.
pub fn encode_row(row: &[Value], out: &mut Vec<u8>) {
    put_version(out);
    put_values(row, out);
}

/// Reads a row written by [`encode_row`].
pub fn decode_row(input: &mut &[u8]) -> Result<Row> {
    let mut row = Row::new();
    decode_row_into(input, &mut row)?;
    Ok(row)
}

/// Reads a row written by [`encode_row`] into `row`, reusing its buffer.
pub fn decode_row_into(input: &mut &[u8], row: &mut Row) -> Result<()> {
    check_version(input)?;
    get_values_into(input, row)
}

/// The key bytes of `values`: a version byte, then each value normalised (see the module
/// documentation) so that values which compare equal give identical bytes.
pub fn encode_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 9 * values.len());
    encode_key_into(values, &mut out);
    out
}

/// [`encode_key`] appending to `out`, so a caller can reuse one buffer for every record.
pub fn encode_key_into(values: &[Value], out: &mut Vec<u8>) {
    put_version(out);
    for v in values {
        encode_key_value(v, out);
    }
}

/// 2^63 as an f64: floats in [-2^63, 2^63) convert to i64 exactly when integral.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

fn encode_key_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::TinyInt(_) | Value::SmallInt(_) | Value::Int(_) | Value::BigInt(_) => {
            out.push(TAG_BIGINT);
            put_ivarint(out, v.as_i64().unwrap_or(0));
        }
        Value::Float(x) => encode_key_double(f64::from(*x), out),
        Value::Double(x) => encode_key_double(*x, out),
        Value::Decimal(u, s) => {
            let (mut u, mut s) = (*u, *s);
            while s > 0 && u % 10 == 0 {
                u /= 10;
                s -= 1;
            }
            if s == 0 {
                if let Ok(i) = i64::try_from(u) {
                    out.push(TAG_BIGINT);
                    put_ivarint(out, i);
                    return;
                }
            }
            out.push(TAG_DECIMAL);
            put_i128(out, u);
            out.push(s);
        }
        Value::TimestampLtz(x) => {
            out.push(TAG_TIMESTAMP);
            put_ivarint(out, *x);
        }
        Value::Row(fields) => {
            out.push(TAG_ROW);
            put_uvarint(out, fields.len() as u64);
            for f in fields.iter() {
                encode_key_value(f, out);
            }
        }
        other => encode_value(other, out),
    }
}

fn encode_key_double(x: f64, out: &mut Vec<u8>) {
    let integral = x.is_finite()
        && x.fract() == 0.0
        && (-TWO_POW_63..TWO_POW_63).contains(&x)
        && !(x == 0.0 && x.is_sign_negative());
    if integral {
        // Exact: x is an integer within i64's range, checked just above.
        #[allow(clippy::cast_possible_truncation)]
        let i = x as i64;
        out.push(TAG_BIGINT);
        put_ivarint(out, i);
    } else {
        out.push(TAG_DOUBLE);
        put_f64(out, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::{new_accumulator, resolve_aggregate, AggCall, AggregateCalls, AggregateKind};
    use crate::types::DataType;
    use proptest::prelude::*;

    /// Structural equality: same variant, same bits (`Value`'s `Eq` equates Int(3) and BigInt(3)
    /// and cannot tell NaN payloads apart).
    fn same(a: &Value, b: &Value) -> bool {
        use Value::*;
        match (a, b) {
            (Null, Null) => true,
            (Boolean(x), Boolean(y)) => x == y,
            (TinyInt(x), TinyInt(y)) => x == y,
            (SmallInt(x), SmallInt(y)) => x == y,
            (Int(x), Int(y)) => x == y,
            (BigInt(x), BigInt(y)) => x == y,
            (Float(x), Float(y)) => x.to_bits() == y.to_bits(),
            (Double(x), Double(y)) => x.to_bits() == y.to_bits(),
            (Decimal(u, s), Decimal(v, t)) => u == v && s == t,
            (String(x), String(y)) => x == y,
            (Date(x), Date(y)) => x == y,
            (Time(x), Time(y)) => x == y,
            (Timestamp(x), Timestamp(y)) => x == y,
            (TimestampLtz(x), TimestampLtz(y)) => x == y,
            (IntervalDayTime(x), IntervalDayTime(y)) => x == y,
            (IntervalYearMonth(x), IntervalYearMonth(y)) => x == y,
            (Row(x), Row(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
            }
            _ => false,
        }
    }

    fn arb_i64() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0i64),
            Just(-1i64),
            -300i64..300,
            any::<i64>(),
        ]
    }

    fn arb_i32() -> impl Strategy<Value = i32> {
        prop_oneof![Just(i32::MIN), Just(i32::MAX), -300i32..300, any::<i32>()]
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(-f64::NAN),
            Just(f64::from_bits(0x7ff0_0000_0000_0001)),
            Just(-0.0f64),
            Just(0.0f64),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            Just(f64::MAX),
            (-1000i32..1000).prop_map(|x| f64::from(x) / 4.0),
            any::<u64>().prop_map(f64::from_bits),
        ]
    }

    fn arb_f32() -> impl Strategy<Value = f32> {
        prop_oneof![
            Just(f32::NAN),
            Just(-0.0f32),
            Just(f32::NEG_INFINITY),
            Just(f32::MAX),
            (-1000i16..1000).prop_map(|x| f32::from(x) / 4.0),
            any::<u32>().prop_map(f32::from_bits),
        ]
    }

    fn arb_i128() -> impl Strategy<Value = i128> {
        prop_oneof![
            Just(i128::MIN),
            Just(i128::MAX),
            Just(0i128),
            (-100_000i128..100_000),
            any::<i128>(),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i8>().prop_map(Value::TinyInt),
            any::<i16>().prop_map(Value::SmallInt),
            arb_i32().prop_map(Value::Int),
            arb_i64().prop_map(Value::BigInt),
            arb_f32().prop_map(Value::Float),
            arb_f64().prop_map(Value::Double),
            (arb_i128(), any::<u8>()).prop_map(|(u, s)| Value::Decimal(u, s)),
            prop_oneof![Just(String::new()), "\\PC{0,12}", any::<String>()]
                .prop_map(|s| Value::string(&s)),
            arb_i32().prop_map(Value::Date),
            arb_i32().prop_map(Value::Time),
            arb_i64().prop_map(Value::Timestamp),
            arb_i64().prop_map(Value::TimestampLtz),
            arb_i64().prop_map(Value::IntervalDayTime),
            arb_i32().prop_map(Value::IntervalYearMonth),
        ]
    }

    fn encoded(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        out
    }

    #[test]
    fn layout_is_compact_and_stable() {
        assert_eq!(encoded(&Value::Null), [TAG_NULL]);
        assert_eq!(encoded(&Value::Boolean(true)), [TAG_TRUE]);
        assert_eq!(encoded(&Value::Int(-1)), [TAG_INT, 1]);
        assert_eq!(encoded(&Value::Int(64)), [TAG_INT, 0x80, 1]);
        assert_eq!(encoded(&Value::TinyInt(-1)), [TAG_TINYINT, 0xff]);
        assert_eq!(encoded(&Value::Decimal(-2, 2)), [TAG_DECIMAL, 3, 2]);
        assert_eq!(encoded(&Value::string("é")), [TAG_STRING, 2, 0xc3, 0xa9]);
        assert_eq!(
            encoded(&Value::Double(1.0)),
            [TAG_DOUBLE, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
        );
        let mut row = Vec::new();
        encode_row(&[Value::Int(1), Value::Null], &mut row);
        assert_eq!(row, [CODEC_VERSION, 2, TAG_INT, 2, TAG_NULL]);
        // Extremes take the longest varints and still decode.
        for v in [
            Value::BigInt(i64::MIN),
            Value::BigInt(i64::MAX),
            Value::Decimal(i128::MIN, 255),
            Value::Decimal(i128::MAX, 0),
        ] {
            let bytes = encoded(&v);
            let mut input = &bytes[..];
            assert!(same(&decode_value(&mut input).unwrap(), &v));
            assert!(input.is_empty());
        }
    }

    #[test]
    fn rows_round_trip_and_share_keys_with_equal_rows() {
        let inner = Value::Row(Arc::from(vec![Value::string("a"), Value::Null]));
        let row = Value::Row(Arc::from(vec![Value::Int(7), inner, Value::Timestamp(5)]));
        let mut bytes = Vec::new();
        encode_value(&row, &mut bytes);
        let mut input = bytes.as_slice();
        let back = decode_value(&mut input).unwrap();
        assert!(input.is_empty());
        assert!(same(&row, &back));
        let wider = Value::Row(Arc::from(vec![
            Value::BigInt(7),
            Value::Row(Arc::from(vec![Value::string("a"), Value::Null])),
            Value::TimestampLtz(5),
        ]));
        assert_eq!(encode_key(&[row.clone()]), encode_key(&[wider]));
        let other = Value::Row(Arc::from(vec![Value::Int(8)]));
        assert_ne!(encode_key(&[row]), encode_key(&[other]));
    }

    #[test]
    fn deeply_nested_rows_are_refused_not_overflowed() {
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[TAG_ROW, 1]);
        }
        bytes.push(TAG_NULL);
        assert!(decode_value(&mut bytes.as_slice()).is_err());
        let mut ok = Vec::new();
        for _ in 0..MAX_ROW_DEPTH {
            ok.extend_from_slice(&[TAG_ROW, 1]);
        }
        ok.push(TAG_NULL);
        assert!(decode_value(&mut ok.as_slice()).is_ok());
    }

    #[test]
    fn malformed_input_is_a_data_error() {
        let cases: [&[u8]; 9] = [
            &[],
            &[200],
            &[TAG_INT],
            &[TAG_INT, 0xff, 0xff, 0xff, 0xff, 0x7f],
            &[
                TAG_BIGINT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            &[TAG_STRING, 5, b'a'],
            &[TAG_STRING, 1, 0xff],
            &[TAG_DOUBLE, 0, 0],
            &[TAG_SMALLINT, 0x80, 0x80, 0x04],
        ];
        for bytes in cases {
            let mut input = bytes;
            let err = decode_value(&mut input).unwrap_err();
            assert!(matches!(err, EngineError::Data { .. }), "{bytes:?}: {err}");
        }
        let mut input: &[u8] = &[9, 0];
        assert!(decode_row(&mut input)
            .unwrap_err()
            .to_string()
            .contains("format version 9"));
        // A count far beyond the input is refused before anything is reserved.
        let mut input: &[u8] = &[CODEC_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_row(&mut input).is_err());
        assert!(expect_end(&[1]).is_err());
    }

    #[test]
    fn equal_values_have_equal_keys() {
        let three = [
            Value::TinyInt(3),
            Value::SmallInt(3),
            Value::Int(3),
            Value::BigInt(3),
            Value::Decimal(3, 0),
            Value::Decimal(300, 2),
            Value::Float(3.0),
            Value::Double(3.0),
        ];
        for v in &three {
            assert_eq!(*v, three[0]);
            assert_eq!(
                encode_key(std::slice::from_ref(v)),
                encode_key(&[Value::Int(3)]),
                "{v:?}"
            );
        }
        assert_eq!(
            encode_key(&[Value::Decimal(150, 2)]),
            encode_key(&[Value::Decimal(15, 1)])
        );
        assert_eq!(
            encode_key(&[Value::Float(1.5)]),
            encode_key(&[Value::Double(1.5)])
        );
        assert_eq!(
            encode_key(&[Value::Timestamp(7)]),
            encode_key(&[Value::TimestampLtz(7)])
        );
        assert_eq!(
            encode_key(&[Value::Decimal(0, 9)]),
            encode_key(&[Value::Int(0)])
        );
        // Unequal under `Eq`, so distinct keys.
        assert_ne!(Value::Double(-0.0), Value::Int(0));
        assert_ne!(
            encode_key(&[Value::Double(-0.0)]),
            encode_key(&[Value::Int(0)])
        );
        assert_ne!(
            encode_key(&[Value::Int(1), Value::string("")]),
            encode_key(&[Value::string(""), Value::Int(1)])
        );
        assert_ne!(encode_key(&[Value::Date(3)]), encode_key(&[Value::Int(3)]));
        assert_ne!(
            encode_key(&[Value::string("ab"), Value::string("c")]),
            encode_key(&[Value::string("a"), Value::string("bc")])
        );
        // Beyond i64, a whole decimal keeps the decimal form, normalised.
        let big = i128::from(i64::MAX) + 1;
        assert_eq!(
            encode_key(&[Value::Decimal(big * 100, 2)]),
            encode_key(&[Value::Decimal(big, 0)])
        );
        assert_eq!(encode_key(&[]), [CODEC_VERSION]);
    }

    /// One number in every type that can hold it exactly.
    fn representations(x: i64, shift: u8) -> Vec<Value> {
        let mut out = vec![Value::BigInt(x), Value::Decimal(i128::from(x), 0)];
        if let Ok(v) = i32::try_from(x) {
            out.push(Value::Int(v));
        }
        if let Ok(v) = i16::try_from(x) {
            out.push(Value::SmallInt(v));
        }
        if let Ok(v) = i8::try_from(x) {
            out.push(Value::TinyInt(v));
        }
        if let Some(u) = 10i128
            .checked_pow(u32::from(shift))
            .and_then(|m| i128::from(x).checked_mul(m))
        {
            out.push(Value::Decimal(u, shift));
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        if x.unsigned_abs() < (1 << 53) {
            out.push(Value::Double(x as f64));
            if x.unsigned_abs() < (1 << 24) {
                out.push(Value::Float(x as f32));
            }
        }
        out
    }

    fn small_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            (-3i8..3).prop_map(Value::TinyInt),
            (-3i32..3).prop_map(Value::Int),
            (-3i64..3).prop_map(Value::BigInt),
            (-30i128..30, 0u8..3).prop_map(|(u, s)| Value::Decimal(u, s)),
            (-6i32..6).prop_map(|x| Value::Double(f64::from(x) / 2.0)),
            (-6i16..6).prop_map(|x| Value::Float(f32::from(x) / 2.0)),
            Just(Value::Double(-0.0)),
            Just(Value::Double(f64::NAN)),
            prop_oneof![Just(""), Just("a"), Just("ä")].prop_map(Value::string),
            (-3i32..3).prop_map(Value::Date),
            (-3i64..3).prop_map(Value::Timestamp),
            (-3i64..3).prop_map(Value::TimestampLtz),
        ]
    }

    /// What the aggregation operator builds: every kind over every type it accepts.
    const ARG_TYPES: [DataType; 9] = [
        DataType::TinyInt,
        DataType::SmallInt,
        DataType::Int,
        DataType::BigInt,
        DataType::Float,
        DataType::Double,
        DataType::Decimal(10, 2),
        DataType::Decimal(20, 8),
        DataType::STRING,
    ];

    const KINDS: [&str; 12] = [
        "COUNT",
        "COUNT",
        "SUM",
        "AVG",
        "MIN",
        "MAX",
        "FIRST_VALUE",
        "LAST_VALUE",
        "STDDEV_POP",
        "STDDEV_SAMP",
        "VAR_POP",
        "VAR_SAMP",
    ];

    /// An input value of type `t` from random material; `sel` picks NULL, a small value (so
    /// DISTINCT and retraction meet repeats) or an extreme one.
    #[allow(clippy::cast_possible_truncation)]
    fn input(t: &DataType, sel: u8, raw: i64, bits: u64) -> Value {
        if sel.is_multiple_of(8) {
            return Value::Null;
        }
        let small = sel % 8 < 6;
        let x = if small { raw % 5 } else { raw };
        match t {
            DataType::TinyInt => Value::TinyInt(x as i8),
            DataType::SmallInt => Value::SmallInt(x as i16),
            DataType::Int => Value::Int(x as i32),
            DataType::BigInt => Value::BigInt(x),
            DataType::Float if small => Value::Float(x as f32 / 2.0),
            DataType::Float => Value::Float(f32::from_bits(bits as u32)),
            DataType::Double if small => Value::Double(x as f64 / 4.0),
            DataType::Double => Value::Double(f64::from_bits(bits)),
            DataType::Decimal(p, s) => {
                let limit = 10i128.pow(u32::from(*p)) - 1;
                Value::Decimal(i128::from(x).clamp(-limit, limit), *s)
            }
            _ if small => {
                Value::string(["", "a", "é", "ab", "\u{1F600}"][x.unsigned_abs() as usize % 5])
            }
            _ => Value::string(&format!("{bits:x}")),
        }
    }

    fn encode_acc(acc: &crate::agg::Accumulator) -> Vec<u8> {
        let mut out = Vec::new();
        acc.encode(&mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn values_round_trip_bit_exact(v in arb_value()) {
            let bytes = encoded(&v);
            let mut input = &bytes[..];
            let back = decode_value(&mut input).unwrap();
            prop_assert!(same(&back, &v), "{v:?} came back as {back:?}");
            prop_assert!(input.is_empty());
            prop_assert_eq!(encoded(&back), bytes);
        }

        #[test]
        fn rows_round_trip(row in prop::collection::vec(arb_value(), 0..12)) {
            let mut bytes = Vec::new();
            encode_row(&row, &mut bytes);
            let mut input = &bytes[..];
            let mut back = vec![Value::Int(9); 3];
            decode_row_into(&mut input, &mut back).unwrap();
            prop_assert!(input.is_empty());
            prop_assert_eq!(back.len(), row.len());
            for (a, b) in back.iter().zip(&row) {
                prop_assert!(same(a, b), "{b:?} came back as {a:?}");
            }
            // Every strict prefix is an error, never a panic or a shorter row.
            for cut in 0..bytes.len() {
                let mut input = &bytes[..cut];
                prop_assert!(decode_row(&mut input).is_err());
            }
        }

        #[test]
        fn equal_numbers_share_a_key(x in arb_i64(), shift in 0u8..40, rest in small_value()) {
            let reps = representations(x, shift);
            let first = encode_key(&[reps[0].clone(), rest.clone()]);
            for r in &reps {
                prop_assert_eq!(r, &reps[0]);
                prop_assert_eq!(&encode_key(&[r.clone(), rest.clone()]), &first, "{:?}", r);
            }
        }

        #[test]
        fn keys_agree_exactly_when_values_are_equal(
            a in prop::collection::vec(small_value(), 0..3),
            b in prop::collection::vec(small_value(), 0..3),
        ) {
            // Small values are all exact, where `Eq` is an equivalence and keys must follow it.
            let equal = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y);
            prop_assert_eq!(encode_key(&a) == encode_key(&b), equal, "{:?} vs {:?}", a, b);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut input = &bytes[..];
            let _ = decode_value(&mut input);
            let mut input = &bytes[..];
            let _ = decode_row(&mut input);
            let mut with_version = vec![CODEC_VERSION];
            with_version.extend_from_slice(&bytes);
            let mut input = &with_version[..];
            let _ = decode_row(&mut input);
            for (kind, arg) in KINDS.iter().enumerate().flat_map(|k| ARG_TYPES.iter().map(move |t| (k, t))) {
                let args: &[DataType] = if kind.0 == 0 { &[] } else { std::slice::from_ref(arg) };
                let Ok((k, ret)) = resolve_aggregate(kind.1, args, false) else { continue };
                for (distinct, append_only) in [(false, false), (true, false), (false, true)] {
                    let Ok(proto) = new_accumulator(k, &ret, distinct, append_only) else { continue };
                    let mut input = &bytes[..];
                    let _ = crate::agg::Accumulator::decode(&mut input, &proto);
                    // Start from the right tag so the payload decoders get exercised too.
                    let mut tagged = encode_acc(&proto);
                    tagged.truncate(1);
                    tagged.extend_from_slice(&bytes);
                    let mut input = &tagged[..];
                    let _ = crate::agg::Accumulator::decode(&mut input, &proto);
                }
            }
        }

        #[test]
        fn accumulators_continue_identically_after_a_round_trip(
            kind in 0usize..KINDS.len(),
            arg in 0usize..ARG_TYPES.len(),
            distinct in any::<bool>(),
            append_only in any::<bool>(),
            before in prop::collection::vec((any::<u8>(), any::<i64>(), any::<u64>()), 0..40),
            after in prop::collection::vec((any::<u8>(), any::<i64>(), any::<u64>()), 0..20),
        ) {
            let t = &ARG_TYPES[arg];
            let args: &[DataType] = if kind == 0 { &[] } else { std::slice::from_ref(t) };
            let distinct = distinct && kind != 0;
            let Ok((k, ret)) = resolve_aggregate(KINDS[kind], args, distinct) else {
                return Ok(());
            };
            let mut acc = new_accumulator(k, &ret, distinct, append_only).unwrap();
            let proto = acc.clone();
            let feed = |acc: &mut crate::agg::Accumulator, op: &(u8, i64, u64)| {
                let v = if kind == 0 { Value::Null } else { input(t, op.0 >> 1, op.1, op.2) };
                // Append-only accumulators are only ever fed additions.
                if op.0 & 1 == 1 && !append_only {
                    acc.retract(&v)
                } else {
                    acc.add(&v)
                }
            };
            for op in &before {
                feed(&mut acc, op).unwrap();
            }
            let bytes = encode_acc(&acc);
            let mut input_bytes = &bytes[..];
            let mut back = crate::agg::Accumulator::decode(&mut input_bytes, &proto).unwrap();
            prop_assert!(input_bytes.is_empty());
            prop_assert!(same(&back.value(), &acc.value()));
            prop_assert_eq!(encode_acc(&back), bytes.clone());
            prop_assert_eq!(encode_acc(&acc.clone()), bytes.clone());
            for op in &after {
                let r1 = feed(&mut acc, op);
                let r2 = feed(&mut back, op);
                prop_assert_eq!(r1.is_ok(), r2.is_ok());
                prop_assert!(same(&back.value(), &acc.value()),
                    "{:?} vs {:?}", back.value(), acc.value());
            }
            prop_assert_eq!(encode_acc(&back), encode_acc(&acc));
            // Truncated state is an error, never a panic.
            for cut in 0..bytes.len() {
                let mut input = &bytes[..cut];
                prop_assert!(crate::agg::Accumulator::decode(&mut input, &proto).is_err());
            }
        }
    }

    #[test]
    fn distinct_state_bytes_do_not_depend_on_insertion_order() {
        let (kind, ret) = resolve_aggregate("COUNT", &[DataType::Int], true).unwrap();
        let mut a = new_accumulator(kind, &ret, true, false).unwrap();
        let mut b = a.clone();
        for i in 0..200 {
            a.add(&Value::Int(i)).unwrap();
            b.add(&Value::Int(199 - i)).unwrap();
        }
        assert_eq!(encode_acc(&a), encode_acc(&b));
    }

    #[test]
    fn state_of_another_call_is_refused() {
        let (kind, ret) = resolve_aggregate("SUM", &[DataType::Int], false).unwrap();
        let sum = new_accumulator(kind, &ret, false, true).unwrap();
        let (kind, ret) = resolve_aggregate("COUNT", &[DataType::Int], false).unwrap();
        let count = new_accumulator(kind, &ret, false, true).unwrap();
        let distinct_count = new_accumulator(kind, &ret, true, true).unwrap();
        let bytes = encode_acc(&sum);
        let mut input = &bytes[..];
        let err = crate::agg::Accumulator::decode(&mut input, &count).unwrap_err();
        assert!(matches!(err, EngineError::Data { .. }), "{err}");
        let bytes = encode_acc(&count);
        let mut input = &bytes[..];
        assert!(crate::agg::Accumulator::decode(&mut input, &distinct_count).is_err());
    }

    #[test]
    fn aggregation_state_round_trips_as_one_blob() {
        let call = |kind, arg, ret| AggCall {
            kind,
            arg,
            distinct: false,
            ret,
            filter: None,
        };
        let calls = AggregateCalls::new(
            vec![
                call(AggregateKind::CountStar, None, DataType::BigInt),
                call(AggregateKind::Sum, Some(0), DataType::Int),
                call(AggregateKind::Max, Some(1), DataType::STRING),
                call(AggregateKind::Avg, Some(2), DataType::Decimal(38, 6)),
            ],
            false,
        )
        .unwrap();
        let mut accs = calls.create();
        let rows = [
            [Value::Int(5), Value::string("b"), Value::Decimal(150, 2)],
            [Value::Int(7), Value::string("z"), Value::Decimal(100, 2)],
            [Value::Null, Value::string("a"), Value::Null],
        ];
        for r in &rows {
            calls.accumulate(&mut accs, r, false).unwrap();
        }
        calls.accumulate(&mut accs, &rows[1], true).unwrap();
        let mut bytes = Vec::new();
        calls.encode_state(&accs, &mut bytes);
        assert_eq!(bytes[0], CODEC_VERSION);
        let mut input = &bytes[..];
        let back = calls.decode_state(&mut input).unwrap();
        assert!(input.is_empty());
        let (mut x, mut y) = (Vec::new(), Vec::new());
        calls.values_into(&accs, &mut x);
        calls.values_into(&back, &mut y);
        assert_eq!(
            y,
            vec![
                Value::BigInt(2),
                Value::Int(5),
                Value::string("b"),
                Value::Decimal(1_500_000, 6)
            ]
        );
        assert_eq!(x, y);
        // A blob for fewer calls, or one cut short, is refused.
        let one = AggregateCalls::new(
            vec![call(AggregateKind::CountStar, None, DataType::BigInt)],
            false,
        )
        .unwrap();
        let mut input = &bytes[..];
        assert!(one.decode_state(&mut input).is_err());
        let mut input = &bytes[..bytes.len() - 1];
        assert!(calls.decode_state(&mut input).is_err());
    }
}
