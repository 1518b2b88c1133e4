//! Rendering values as text, the way Flink's print connector and CAST(... AS STRING) do.

use crate::types::DataType;
use crate::value::Value;

/// Appends the text of `v` (of type `ty`) to `out`; NULL is written as `NULL`.
pub fn write_value(out: &mut String, v: &Value, _ty: &DataType) {
    use std::fmt::Write;
    let _ = match v {
        Value::Null => write!(out, "NULL"),
        Value::String(s) => write!(out, "{s}"),
        other => write!(out, "{other:?}"),
    };
}
