//! Runtime values, rows and changelog records.
//!
//! `Value` is a 32-byte enum; strings are `Arc<str>` so that copying a row between operators never
//! copies text. Equality, hashing and ordering are total (floats by their IEEE total order, NULL
//! first) so that values can be group keys and MIN/MAX multiset entries.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One SQL value. The column's `DataType` says how to interpret it (a decimal's scale is kept
/// here too, so a value can be rendered and compared without its type).
#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    Null,
    Boolean(bool),
    TinyInt(i8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    /// Unscaled value and scale: `Decimal(1234, 2)` is 12.34.
    Decimal(i128, u8),
    String(Arc<str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds of the day.
    Time(i32),
    /// Milliseconds since the epoch, no time zone.
    Timestamp(i64),
    /// Milliseconds since the epoch of an instant (UTC).
    TimestampLtz(i64),
    /// Milliseconds.
    IntervalDayTime(i64),
    /// Months.
    IntervalYearMonth(i32),
    /// A ROW value: one value per field of its type. NULL fields are `Value::Null`; a NULL row is
    /// `Value::Null` itself.
    Row(Arc<[Value]>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn string(s: &str) -> Value {
        Value::String(Arc::from(s))
    }

    /// The value as an i64 when it is an integer of any width.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::TinyInt(v) => Some(i64::from(*v)),
            Value::SmallInt(v) => Some(i64::from(*v)),
            Value::Int(v) => Some(i64::from(*v)),
            Value::BigInt(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as an f64 when it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::TinyInt(v) => Some(f64::from(*v)),
            Value::SmallInt(v) => Some(f64::from(*v)),
            Value::Int(v) => Some(f64::from(*v)),
            Value::BigInt(v) => Some(*v as f64),
            Value::Float(v) => Some(f64::from(*v)),
            Value::Double(v) => Some(*v),
            Value::Decimal(u, s) => Some(*u as f64 / 10f64.powi(i32::from(*s))),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The fields of a ROW value.
    pub fn as_row(&self) -> Option<&[Value]> {
        match self {
            Value::Row(fields) => Some(fields),
            _ => None,
        }
    }

    /// Milliseconds of a TIMESTAMP or TIMESTAMP_LTZ.
    pub fn as_timestamp_millis(&self) -> Option<i64> {
        match self {
            Value::Timestamp(v) | Value::TimestampLtz(v) => Some(*v),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Boolean(_) => 1,
            Value::TinyInt(_)
            | Value::SmallInt(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Double(_)
            | Value::Decimal(..) => 2,
            Value::String(_) => 3,
            Value::Date(_) => 4,
            Value::Time(_) => 5,
            Value::Timestamp(_) | Value::TimestampLtz(_) => 6,
            Value::IntervalDayTime(_) => 7,
            Value::IntervalYearMonth(_) => 8,
            Value::Row(_) => 9,
        }
    }
}

/// Compares two decimals exactly, aligning scales in i128 (falls back to f64 on overflow).
fn cmp_decimal(a: i128, sa: u8, b: i128, sb: u8) -> Ordering {
    if sa == sb {
        return a.cmp(&b);
    }
    let (hi, lo, flip) = if sa > sb { (a, b, false) } else { (b, a, true) };
    let diff = u32::from(sa.abs_diff(sb));
    let ord = match 10i128.checked_pow(diff).and_then(|m| lo.checked_mul(m)) {
        Some(lo_scaled) => hi.cmp(&lo_scaled),
        None => {
            let h = hi as f64 / 10f64.powi(i32::from(sa.max(sb)));
            let l = lo as f64 / 10f64.powi(i32::from(sa.min(sb)));
            h.total_cmp(&l)
        }
    };
    if flip {
        ord.reverse()
    } else {
        ord
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Boolean(a), Boolean(b)) => a.cmp(b),
            (Decimal(a, sa), Decimal(b, sb)) => cmp_decimal(*a, *sa, *b, *sb),
            (Float(_) | Double(_), _) | (_, Float(_) | Double(_))
                if self.rank() == 2 && other.rank() == 2 =>
            {
                let (a, b) = (self.as_f64(), other.as_f64());
                a.unwrap_or(0.0).total_cmp(&b.unwrap_or(0.0))
            }
            (Decimal(a, sa), _) if other.rank() == 2 => {
                cmp_decimal(*a, *sa, i128::from(other.as_i64().unwrap_or(0)), 0)
            }
            (_, Decimal(b, sb)) if self.rank() == 2 => {
                cmp_decimal(i128::from(self.as_i64().unwrap_or(0)), 0, *b, *sb)
            }
            (String(a), String(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b)) => a.cmp(b),
            (IntervalDayTime(a), IntervalDayTime(b)) => a.cmp(b),
            (IntervalYearMonth(a), IntervalYearMonth(b)) => a.cmp(b),
            (Row(a), Row(b)) => a.iter().cmp(b.iter()),
            _ if self.rank() == 2 && other.rank() == 2 => {
                self.as_i64().unwrap_or(0).cmp(&other.as_i64().unwrap_or(0))
            }
            _ if self.rank() == 6 && other.rank() == 6 => self
                .as_timestamp_millis()
                .unwrap_or(0)
                .cmp(&other.as_timestamp_millis().unwrap_or(0)),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Values that compare equal must hash equal: integers of every width hash as i64,
        // decimals by their normalised form, floats by their bits.
        match self {
            Value::Null => 0u8.hash(state),
            Value::Boolean(b) => b.hash(state),
            Value::TinyInt(_) | Value::SmallInt(_) | Value::Int(_) | Value::BigInt(_) => {
                self.as_i64().unwrap_or(0).hash(state)
            }
            Value::Float(v) => f64::from(*v).to_bits().hash(state),
            Value::Double(v) => v.to_bits().hash(state),
            Value::Decimal(u, s) => {
                let (mut u, mut s) = (*u, *s);
                while s > 0 && u % 10 == 0 {
                    u /= 10;
                    s -= 1;
                }
                if s == 0 {
                    if let Ok(i) = i64::try_from(u) {
                        return i.hash(state);
                    }
                }
                (u, s).hash(state)
            }
            Value::String(v) => v.hash(state),
            Value::Date(v) => v.hash(state),
            Value::Time(v) => v.hash(state),
            Value::Timestamp(v) | Value::TimestampLtz(v) => v.hash(state),
            Value::IntervalDayTime(v) => v.hash(state),
            Value::IntervalYearMonth(v) => v.hash(state),
            Value::Row(fields) => {
                9u8.hash(state);
                fields.len().hash(state);
                for f in fields.iter() {
                    f.hash(state);
                }
            }
        }
    }
}

/// A row: one value per column.
pub type Row = Vec<Value>;

/// Flink's `RowKind`: how a row changes the result table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKind {
    Insert,
    UpdateBefore,
    UpdateAfter,
    Delete,
}

impl RowKind {
    /// The short form Flink prints: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// `+I` and `+U` add a row to the result; `-U` and `-D` take one away.
    pub fn is_addition(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// One changelog record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: RowKind,
    pub row: Row,
}

impl Change {
    pub fn insert(row: Row) -> Self {
        Change {
            kind: RowKind::Insert,
            row,
        }
    }

    pub fn new(kind: RowKind, row: Row) -> Self {
        Change { kind, row }
    }
}

/// The unit that crosses a channel: many changes, never one per hop.
pub type Batch = Vec<Change>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
    }

    #[test]
    fn numeric_equality_across_widths() {
        assert_eq!(Value::Int(3), Value::BigInt(3));
        assert_eq!(Value::Decimal(300, 2), Value::Int(3));
        assert!(Value::Decimal(305, 2) > Value::Int(3));
        assert!(Value::Null < Value::Int(i32::MIN));
    }

    #[test]
    fn rows_compare_and_hash_by_their_fields() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |v: &Value| {
            let mut h = DefaultHasher::new();
            v.hash(&mut h);
            h.finish()
        };
        let a = Value::Row(Arc::from(vec![Value::Int(1), Value::string("x")]));
        let b = Value::Row(Arc::from(vec![Value::BigInt(1), Value::string("x")]));
        let c = Value::Row(Arc::from(vec![Value::Int(1), Value::Null]));
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        assert!(c < a);
        assert!(Value::Null < c);
    }
}
