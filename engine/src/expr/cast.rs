//! CAST between types with Flink's rules.

use crate::error::{EngineError, Result};
use crate::types::DataType;
use crate::value::Value;

/// Casts `v` (of type `from`) to `to`. An error where Flink's CAST fails; TRY_CAST turns it into
/// NULL.
pub fn cast(v: &Value, from: &DataType, to: &DataType) -> Result<Value> {
    if v.is_null() || from == to {
        return Ok(v.clone());
    }
    Err(EngineError::eval(format!("cannot cast {from} to {to}")))
}
