//! Implicit type coercion: the common type of several expressions (CASE branches, COALESCE, IN
//! lists, UNION ALL inputs, comparison operands).

use crate::types::DataType;

/// The type both `a` and `b` can be converted to without loss, as Flink picks it.
pub fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        _ => None,
    }
}
