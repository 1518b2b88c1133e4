//! Bound scalar expressions and their evaluation over one row.
//!
//! The SQL binder resolves names and types and produces an `Expr` whose every node already knows
//! its result type, so evaluation does no lookups: it walks the tree over a row. Function
//! resolution (which overload, which implicit casts, which result type) lives in `functions`,
//! casts in `cast`, type coercion rules in `coerce`, and value-to-text rendering in `format`.

pub mod cast;
pub mod coerce;
pub mod format;
pub mod functions;

use crate::error::Result;
use crate::types::DataType;
use crate::value::Value;
pub use functions::ScalarFunction;

/// A bound expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// The value of input column `index`.
    Column(usize),
    /// A constant.
    Literal(Value),
    /// A resolved scalar function; `ret` is its result type.
    Call {
        func: ScalarFunction,
        args: Vec<Expr>,
        ret: DataType,
    },
    /// `CAST(expr AS to)`, or `TRY_CAST` when `safe` (NULL instead of an error).
    Cast {
        expr: Box<Expr>,
        from: DataType,
        to: DataType,
        safe: bool,
    },
    /// SQL three-valued AND over all operands.
    And(Vec<Expr>),
    /// SQL three-valued OR over all operands.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    /// `CASE WHEN c1 THEN v1 ... ELSE e END` (the operand form is bound to equalities).
    Case {
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// The first non-NULL operand.
    Coalesce(Vec<Expr>),
    /// `expr [NOT] IN (list)` with SQL NULL semantics; the list is already coerced.
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
}

impl Expr {
    /// Evaluates the expression over `row`.
    pub fn eval(&self, row: &[Value]) -> Result<Value> {
        match self {
            Expr::Column(i) => Ok(row.get(*i).cloned().unwrap_or(Value::Null)),
            Expr::Literal(v) => Ok(v.clone()),
            // A field of a ROW column is read in place: cloning the whole row first would touch
            // its shared reference count twice per record.
            Expr::Call {
                func: functions::ScalarFunction::RowField(f),
                args,
                ..
            } if matches!(args.as_slice(), [Expr::Column(_)]) => {
                let Some(Expr::Column(c)) = args.first() else {
                    return Ok(Value::Null);
                };
                Ok(row
                    .get(*c)
                    .and_then(Value::as_row)
                    .and_then(|fields| fields.get(*f))
                    .cloned()
                    .unwrap_or(Value::Null))
            }
            Expr::Call { func, args, ret } => match args.as_slice() {
                [] => functions::eval(func, &[], ret),
                [a] => functions::eval(func, &[a.eval(row)?], ret),
                [a, b] => functions::eval(func, &[a.eval(row)?, b.eval(row)?], ret),
                [a, b, c] => {
                    functions::eval(func, &[a.eval(row)?, b.eval(row)?, c.eval(row)?], ret)
                }
                many => {
                    let vals = many
                        .iter()
                        .map(|a| a.eval(row))
                        .collect::<Result<Vec<_>>>()?;
                    functions::eval(func, &vals, ret)
                }
            },
            Expr::Cast {
                expr,
                from,
                to,
                safe,
            } => {
                let v = expr.eval(row)?;
                if *safe {
                    Ok(cast::cast(&v, from, to).unwrap_or(Value::Null))
                } else {
                    cast::cast(&v, from, to)
                }
            }
            Expr::And(items) => {
                let mut saw_null = false;
                for e in items {
                    match e.eval(row)? {
                        Value::Boolean(false) => return Ok(Value::Boolean(false)),
                        Value::Boolean(true) => {}
                        _ => saw_null = true,
                    }
                }
                Ok(if saw_null {
                    Value::Null
                } else {
                    Value::Boolean(true)
                })
            }
            Expr::Or(items) => {
                let mut saw_null = false;
                for e in items {
                    match e.eval(row)? {
                        Value::Boolean(true) => return Ok(Value::Boolean(true)),
                        Value::Boolean(false) => {}
                        _ => saw_null = true,
                    }
                }
                Ok(if saw_null {
                    Value::Null
                } else {
                    Value::Boolean(false)
                })
            }
            Expr::Not(e) => Ok(match e.eval(row)? {
                Value::Boolean(b) => Value::Boolean(!b),
                _ => Value::Null,
            }),
            Expr::IsNull(e) => Ok(Value::Boolean(e.eval(row)?.is_null())),
            Expr::IsNotNull(e) => Ok(Value::Boolean(!e.eval(row)?.is_null())),
            Expr::Case { whens, otherwise } => {
                for (cond, then) in whens {
                    if let Value::Boolean(true) = cond.eval(row)? {
                        return then.eval(row);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(row),
                    None => Ok(Value::Null),
                }
            }
            Expr::Coalesce(items) => {
                for e in items {
                    let v = e.eval(row)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Expr::In {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(row)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for e in list {
                    let item = e.eval(row)?;
                    if item.is_null() {
                        saw_null = true;
                    } else if item == v {
                        return Ok(Value::Boolean(!negated));
                    }
                }
                Ok(if saw_null {
                    Value::Null
                } else {
                    Value::Boolean(*negated)
                })
            }
        }
    }

    /// Rebuilds the expression top-down: `f` may replace a node (whose children are then not
    /// visited) by returning `Some`, or keep it (`None`) so that its children are rewritten.
    pub fn rewrite<E>(
        &self,
        f: &mut dyn FnMut(&Expr) -> std::result::Result<Option<Expr>, E>,
    ) -> std::result::Result<Expr, E> {
        if let Some(replaced) = f(self)? {
            return Ok(replaced);
        }
        let all = |v: &[Expr], f: &mut dyn FnMut(&Expr) -> std::result::Result<Option<Expr>, E>| {
            v.iter()
                .map(|x| x.rewrite(f))
                .collect::<std::result::Result<Vec<_>, E>>()
        };
        Ok(match self {
            Expr::Column(_) | Expr::Literal(_) => self.clone(),
            Expr::Call { func, args, ret } => Expr::Call {
                func: func.clone(),
                args: all(args, f)?,
                ret: ret.clone(),
            },
            Expr::Cast {
                expr,
                from,
                to,
                safe,
            } => Expr::Cast {
                expr: Box::new(expr.rewrite(f)?),
                from: from.clone(),
                to: to.clone(),
                safe: *safe,
            },
            Expr::And(v) => Expr::And(all(v, f)?),
            Expr::Or(v) => Expr::Or(all(v, f)?),
            Expr::Coalesce(v) => Expr::Coalesce(all(v, f)?),
            Expr::Not(x) => Expr::Not(Box::new(x.rewrite(f)?)),
            Expr::IsNull(x) => Expr::IsNull(Box::new(x.rewrite(f)?)),
            Expr::IsNotNull(x) => Expr::IsNotNull(Box::new(x.rewrite(f)?)),
            Expr::Case { whens, otherwise } => Expr::Case {
                whens: whens
                    .iter()
                    .map(|(c, t)| Ok((c.rewrite(f)?, t.rewrite(f)?)))
                    .collect::<std::result::Result<_, E>>()?,
                otherwise: match otherwise {
                    Some(o) => Some(Box::new(o.rewrite(f)?)),
                    None => None,
                },
            },
            Expr::In {
                expr,
                list,
                negated,
            } => Expr::In {
                expr: Box::new(expr.rewrite(f)?),
                list: all(list, f)?,
                negated: *negated,
            },
        })
    }

    /// The columns the expression reads, once per reference.
    pub fn for_each_column(&self, f: &mut dyn FnMut(usize)) {
        let _ = self.rewrite::<std::convert::Infallible>(&mut |x| {
            if let Expr::Column(i) = x {
                f(*i);
            }
            Ok(None)
        });
    }

    /// Evaluates a predicate: only TRUE passes (FALSE and NULL filter the row out).
    pub fn eval_predicate(&self, row: &[Value]) -> Result<bool> {
        Ok(matches!(self.eval(row)?, Value::Boolean(true)))
    }

    /// True when the expression reads no column (it can be folded at planning time).
    pub fn is_constant(&self) -> bool {
        match self {
            Expr::Column(_) => false,
            Expr::Literal(_) => true,
            Expr::Call { func, args, .. } => {
                func.is_deterministic() && args.iter().all(Expr::is_constant)
            }
            Expr::Cast { expr, .. }
            | Expr::Not(expr)
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr) => expr.is_constant(),
            Expr::And(items) | Expr::Or(items) | Expr::Coalesce(items) => {
                items.iter().all(Expr::is_constant)
            }
            Expr::Case { whens, otherwise } => {
                whens
                    .iter()
                    .all(|(c, t)| c.is_constant() && t.is_constant())
                    && otherwise.as_ref().is_none_or(|e| e.is_constant())
            }
            Expr::In { expr, list, .. } => expr.is_constant() && list.iter().all(Expr::is_constant),
        }
    }
}
