//! Implicit type coercion: the common type of several expressions (CASE branches, COALESCE, IN
//! lists, UNION ALL inputs, comparison operands), and which explicit casts exist.
//!
//! The rules follow Flink's `LogicalTypeMerging.findCommonType` as observed in Flink 2.3:
//! integers widen to the wider integer; an integer meets a DECIMAL as DECIMAL(3|5|10|19, 0) and
//! two decimals merge to `max(integer digits) + max(scale)` digits (capped at 38); anything
//! approximate makes the result approximate; CHAR and VARCHAR of different lengths give VARCHAR
//! of the longer (so `CASE ... THEN 'ab' ELSE 'abc'` is VARCHAR(3), never a padded CHAR);
//! TIMESTAMP and TIMESTAMP_LTZ merge to TIMESTAMP; other
//! temporal types only merge within their family (DATE and TIMESTAMP have no common type, Flink
//! rejects such a CASE). Strings never implicitly become numbers: comparing VARCHAR with INT is
//! rejected, as Flink does ("implicit type conversion between VARCHAR and INTEGER is not
//! supported now").

use crate::types::{DataType, STRING_MAX};

/// The DECIMAL an exact numeric type converts to without loss: `(precision, scale)`.
pub fn decimal_of(t: &DataType) -> Option<(u8, u8)> {
    match t {
        DataType::TinyInt => Some((3, 0)),
        DataType::SmallInt => Some((5, 0)),
        DataType::Int => Some((10, 0)),
        DataType::BigInt => Some((19, 0)),
        DataType::Decimal(p, s) => Some((*p, *s)),
        _ => None,
    }
}

fn integer_rank(t: &DataType) -> u8 {
    match t {
        DataType::TinyInt => 1,
        DataType::SmallInt => 2,
        DataType::Int => 3,
        _ => 4,
    }
}

/// The common type of two numeric types.
pub fn common_numeric(a: &DataType, b: &DataType) -> Option<DataType> {
    if !a.is_numeric() || !b.is_numeric() {
        return None;
    }
    if a == b {
        return Some(a.clone());
    }
    if matches!(a, DataType::Double) || matches!(b, DataType::Double) {
        return Some(DataType::Double);
    }
    if matches!(a, DataType::Float) || matches!(b, DataType::Float) {
        // FLOAT meets DECIMAL as DOUBLE, any integer as FLOAT (both seen in Flink 2.3).
        let other = if matches!(a, DataType::Float) { b } else { a };
        return Some(match other {
            DataType::Decimal(..) => DataType::Double,
            _ => DataType::Float,
        });
    }
    if matches!(a, DataType::Decimal(..)) || matches!(b, DataType::Decimal(..)) {
        let (pa, sa) = decimal_of(a)?;
        let (pb, sb) = decimal_of(b)?;
        let scale = sa.max(sb);
        let int_digits = (pa - sa).max(pb - sb);
        let precision = (u16::from(int_digits) + u16::from(scale)).min(38);
        return Some(DataType::Decimal(u8::try_from(precision).ok()?, scale));
    }
    Some(if integer_rank(a) >= integer_rank(b) {
        a.clone()
    } else {
        b.clone()
    })
}

/// The type both `a` and `b` can be converted to without loss, as Flink picks it (its "least
/// restrictive" type). `None` when Flink rejects the mix.
pub fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Null, t) | (t, Null) => Some(t.clone()),
        _ if a.is_numeric() && b.is_numeric() => common_numeric(a, b),
        (Char(x), Char(y)) => Some(Varchar((*x).max(*y))),
        (Char(x) | Varchar(x), Char(y) | Varchar(y)) => Some(Varchar((*x).max(*y))),
        (Time(x), Time(y)) => Some(Time((*x).max(*y))),
        (Timestamp(x), Timestamp(y)) => Some(Timestamp((*x).max(*y))),
        (TimestampLtz(x), TimestampLtz(y)) => Some(TimestampLtz((*x).max(*y))),
        // Flink 2.3: CASE over a TIMESTAMP(3) and a TIMESTAMP_LTZ(3) is TIMESTAMP(3).
        (Timestamp(x), TimestampLtz(y)) | (TimestampLtz(x), Timestamp(y)) => {
            Some(Timestamp((*x).max(*y)))
        }
        _ => None,
    }
}

/// The type both operands of `=`, `<`, ... are compared in. Numbers of different types compare
/// by value (no cast is needed at runtime, but the type says how); strings compare as strings;
/// TIMESTAMP against TIMESTAMP_LTZ compares the epoch milliseconds (UTC session zone). `None` when Flink rejects the
/// comparison: string against number, DATE against TIMESTAMP (`Cannot apply '=' to arguments
/// of type '<DATE> = <TIMESTAMP(3)>'`).
pub fn comparison_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    match (a, b) {
        (Char(_) | Varchar(_), Char(_) | Varchar(_)) => Some(DataType::Varchar(STRING_MAX)),
        _ => common_type(a, b),
    }
}

/// True when `CAST(x AS to)` is allowed for an `x` of type `from` (Flink's explicit casts).
/// Flink 2.x rejects numbers to and from TIMESTAMP / TIMESTAMP_LTZ ("The cast from NUMERIC type
/// to TIMESTAMP_LTZ type is not allowed"), and DATE to numbers.
pub fn can_cast(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || matches!(from, Null) {
        return true;
    }
    let numeric = |t: &DataType| t.is_numeric();
    match (from, to) {
        (_, Char(_) | Varchar(_)) => true,
        (Char(_) | Varchar(_), _) => !to.is_interval() && !matches!(to, Null),
        (Boolean, t) | (t, Boolean) => numeric(t),
        (f, t) if numeric(f) && numeric(t) => true,
        (Date, Timestamp(_) | TimestampLtz(_)) => true,
        (Timestamp(_) | TimestampLtz(_), Date | Time(_) | Timestamp(_) | TimestampLtz(_)) => true,
        (Time(_), Time(_)) => true,
        (IntervalDayTime, IntervalDayTime) | (IntervalYearMonth, IntervalYearMonth) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn numeric_merging_like_flink() {
        assert_eq!(common_type(&Int, &BigInt), Some(BigInt));
        assert_eq!(common_type(&TinyInt, &SmallInt), Some(SmallInt));
        // CASE WHEN .. THEN int_col ELSE decimal(10,2)_col: DECIMAL(12, 2) in Flink.
        assert_eq!(common_type(&Int, &Decimal(10, 2)), Some(Decimal(12, 2)));
        assert_eq!(common_type(&Decimal(10, 2), &Double), Some(Double));
        assert_eq!(
            common_type(&Decimal(38, 10), &BigInt),
            Some(Decimal(38, 10))
        );
        assert_eq!(common_type(&Null, &Int), Some(Int));
    }

    #[test]
    fn strings_merge_to_varchar() {
        assert_eq!(common_type(&Char(2), &Char(3)), Some(Varchar(3)));
        assert_eq!(common_type(&Char(5), &Char(5)), Some(Char(5)));
        assert_eq!(
            common_type(&Char(5), &DataType::STRING),
            Some(DataType::STRING)
        );
        assert_eq!(common_type(&DataType::STRING, &Int), None);
    }

    #[test]
    fn temporal_merging() {
        assert_eq!(
            common_type(&Timestamp(3), &Timestamp(6)),
            Some(Timestamp(6))
        );
        // Flink: "Illegal mixing of types in CASE or COALESCE statement".
        assert_eq!(common_type(&Date, &Timestamp(3)), None);
        assert_eq!(comparison_type(&Date, &Timestamp(3)), None);
        assert_eq!(
            comparison_type(&Timestamp(3), &TimestampLtz(3)),
            Some(Timestamp(3))
        );
        assert_eq!(common_type(&Float, &BigInt), Some(Float));
        assert_eq!(common_type(&Float, &Decimal(10, 2)), Some(Double));
        assert_eq!(comparison_type(&Varchar(10), &Int), None);
        assert_eq!(comparison_type(&Int, &Decimal(10, 2)), Some(Decimal(12, 2)));
    }

    #[test]
    fn explicit_casts() {
        assert!(can_cast(&DataType::STRING, &Int));
        assert!(can_cast(&Double, &Decimal(5, 2)));
        assert!(can_cast(&Timestamp(3), &Date));
        assert!(can_cast(&Int, &DataType::STRING));
        assert!(!can_cast(&Date, &Int));
        assert!(!can_cast(&Int, &Date));
        assert!(!can_cast(&Timestamp(3), &BigInt));
        assert!(!can_cast(&BigInt, &TimestampLtz(3)));
    }
}
