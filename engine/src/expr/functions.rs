//! Scalar functions and operators: overload resolution (argument types in, implicit casts and
//! result type out) and evaluation.

use crate::error::{EngineError, Result};
use crate::types::DataType;
use crate::value::Value;

/// A resolved scalar function or operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScalarFunction {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl ScalarFunction {
    /// False for functions whose result changes between calls (CURRENT_TIMESTAMP, RAND).
    pub fn is_deterministic(&self) -> bool {
        true
    }
}

/// The outcome of resolving a call: which function, the type each argument must be cast to
/// first (the binder inserts those casts), and the result type.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub func: ScalarFunction,
    pub arg_types: Vec<DataType>,
    pub ret: DataType,
}

/// Resolves a function or operator by its SQL name (upper case: `UPPER`, `=`, `+`, ...).
pub fn resolve(name: &str, args: &[DataType]) -> Result<Resolved> {
    let func = match name {
        "=" => ScalarFunction::Eq,
        "<>" => ScalarFunction::NotEq,
        "<" => ScalarFunction::Lt,
        "<=" => ScalarFunction::LtEq,
        ">" => ScalarFunction::Gt,
        ">=" => ScalarFunction::GtEq,
        _ => return Err(EngineError::no_signature(name, args)),
    };
    Ok(Resolved {
        func,
        arg_types: args.to_vec(),
        ret: DataType::Boolean,
    })
}

/// Evaluates a resolved function over already evaluated arguments.
pub fn eval(func: &ScalarFunction, args: &[Value], _ret: &DataType) -> Result<Value> {
    let (a, b) = match args {
        [a, b] => (a, b),
        _ => return Err(EngineError::internal("comparison takes two arguments")),
    };
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let ord = a.cmp(b);
    Ok(Value::Boolean(match func {
        ScalarFunction::Eq => ord.is_eq(),
        ScalarFunction::NotEq => ord.is_ne(),
        ScalarFunction::Lt => ord.is_lt(),
        ScalarFunction::LtEq => ord.is_le(),
        ScalarFunction::Gt => ord.is_gt(),
        ScalarFunction::GtEq => ord.is_ge(),
    }))
}
