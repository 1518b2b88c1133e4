//! Binding scalar expressions: names to column positions, literals and calls to typed engine
//! expressions, with Flink's implicit casts.
//!
//! A [`Scope`] lists the columns an expression may refer to. Aggregate calls and group-window
//! auxiliary functions (`TUMBLE_START`, ...) are only allowed where the caller passes an
//! [`AggContext`]; they are bound to placeholder columns (`AGG_BASE + i`, `WINDOW_BASE + j`) which
//! the planner rewrites to positions in the aggregate's output (see `planner::aggregate`).

use std::ops::Range;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, CeilFloorKind, DateTimeField, Expr as AstExpr, FunctionArg,
    FunctionArgExpr, FunctionArguments, TrimWhereField, UnaryOperator, Value as AstValue,
};
use streamsql_engine::expr::{cast, coerce, functions, Expr};
use streamsql_engine::types::DataType;
use streamsql_engine::value::Value;

use crate::error::{did_you_mean, SqlError, SqlResult};
use crate::span::range_of_node;

/// Placeholder column index of the i-th aggregate call.
pub const AGG_BASE: usize = 1 << 50;
/// Placeholder column indexes of window_start, window_end and window_time of a group window.
pub const WINDOW_BASE: usize = 1 << 45;

/// A column visible to an expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeColumn {
    /// The table name or alias it can be qualified with.
    pub qualifier: Option<String>,
    pub name: String,
    pub data_type: DataType,
    /// A time attribute (event time) column.
    pub rowtime: bool,
}

/// The columns in scope, in row order.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    /// Resolves `name` or `qualifier.name` to a column position.
    pub fn resolve(&self, qualifier: Option<&str>, name: &str) -> Result<usize, Vec<usize>> {
        let matches: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name.eq_ignore_ascii_case(name)
                    && qualifier.is_none_or(|q| {
                        c.qualifier
                            .as_deref()
                            .is_some_and(|cq| cq.eq_ignore_ascii_case(q))
                    })
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            _ => Err(matches),
        }
    }
}

/// An aggregate call found while binding.
#[derive(Clone, Debug, PartialEq)]
pub struct AggCallAst {
    pub name: String,
    pub args: Vec<Expr>,
    pub arg_types: Vec<DataType>,
    pub distinct: bool,
    pub filter: Option<Expr>,
    pub ret: DataType,
    pub kind: streamsql_engine::agg::AggregateKind,
}

/// A group window of the legacy `GROUP BY TUMBLE(ts, ...)` form, as the aggregate context knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupWindowRef {
    /// `TUMBLE`, `HOP` or `SESSION`.
    pub function: String,
    /// The bound arguments of the GROUP BY call (time column, intervals).
    pub args: Vec<Expr>,
    pub time_type: DataType,
}

/// Where aggregate calls are collected while binding SELECT items and HAVING.
#[derive(Debug, Default)]
pub struct AggContext {
    pub calls: Vec<AggCallAst>,
    pub group_window: Option<GroupWindowRef>,
}

/// Binds expressions against one scope.
pub struct ExprBinder<'a> {
    pub sql: &'a str,
    pub scope: &'a Scope,
    pub aggs: Option<&'a mut AggContext>,
}

/// A bound expression with its type.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    pub expr: Expr,
    pub ty: DataType,
}

const AGG_FUNCTIONS: &[&str] = &[
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "FIRST_VALUE",
    "LAST_VALUE",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "STDDEV",
    "VAR_POP",
    "VAR_SAMP",
    "VARIANCE",
];

/// True when `name` is an aggregate function.
pub fn is_aggregate_name(name: &str) -> bool {
    AGG_FUNCTIONS.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// The upper-case last part of a function's name.
pub fn function_name(f: &ast::Function) -> String {
    f.name
        .0
        .last()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => i.value.to_ascii_uppercase(),
            ast::ObjectNamePart::Function(f) => f.name.value.to_ascii_uppercase(),
        })
        .unwrap_or_default()
}

/// The plain (unnamed or named) argument expressions of a call; a `*` becomes `None`.
pub fn function_args(f: &ast::Function) -> Vec<Option<&AstExpr>> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                }
                | FunctionArg::ExprNamed {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_distinct(f: &ast::Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct)))
}

/// Evaluates a constant expression at planning time, when that succeeds.
pub fn fold(b: Bound) -> Bound {
    if matches!(b.expr, Expr::Literal(_)) || !b.expr.is_constant() {
        return b;
    }
    match b.expr.eval(&[]) {
        Ok(v) => Bound {
            expr: Expr::Literal(v),
            ty: b.ty,
        },
        Err(_) => b,
    }
}

/// Wraps `b` in a cast to `to` unless it already has that type.
pub fn cast_to(b: Bound, to: &DataType) -> Bound {
    if &b.ty == to || b.ty == DataType::Null && matches!(b.expr, Expr::Literal(Value::Null)) {
        return Bound {
            expr: b.expr,
            ty: to.clone(),
        };
    }
    fold(Bound {
        expr: Expr::Cast {
            expr: Box::new(b.expr),
            from: b.ty,
            to: to.clone(),
            safe: false,
        },
        ty: to.clone(),
    })
}

/// The type of a numeric literal as Flink gives it: INT, BIGINT, DECIMAL(p, s) or DOUBLE.
pub fn number_literal(text: &str) -> Option<Bound> {
    let lower = text.to_ascii_lowercase();
    if lower.contains('e') {
        let v: f64 = text.parse().ok()?;
        return Some(Bound {
            expr: Expr::Literal(Value::Double(v)),
            ty: DataType::Double,
        });
    }
    if let Some((int, frac)) = text.split_once('.') {
        let digits = format!("{int}{frac}");
        let unscaled: i128 = digits.parse().ok()?;
        let scale = u8::try_from(frac.len()).ok()?;
        let precision = u8::try_from(digits.trim_start_matches('0').len().max(1))
            .ok()?
            .max(scale);
        if precision > 38 {
            return None;
        }
        return Some(Bound {
            expr: Expr::Literal(Value::Decimal(unscaled, scale)),
            ty: DataType::Decimal(precision.max(1), scale),
        });
    }
    if let Ok(v) = text.parse::<i32>() {
        return Some(Bound {
            expr: Expr::Literal(Value::Int(v)),
            ty: DataType::Int,
        });
    }
    if let Ok(v) = text.parse::<i64>() {
        return Some(Bound {
            expr: Expr::Literal(Value::BigInt(v)),
            ty: DataType::BigInt,
        });
    }
    let unscaled: i128 = text.parse().ok()?;
    let precision = u8::try_from(text.len()).ok()?;
    (precision <= 38).then_some(Bound {
        expr: Expr::Literal(Value::Decimal(unscaled, 0)),
        ty: DataType::Decimal(precision, 0),
    })
}

fn string_literal(s: &str) -> Bound {
    let len = u32::try_from(s.chars().count()).unwrap_or(u32::MAX).max(1);
    Bound {
        expr: Expr::Literal(Value::string(s)),
        ty: DataType::Char(len),
    }
}

fn unit_literal(unit: &str) -> Bound {
    Bound {
        expr: Expr::Literal(Value::string(&unit.to_ascii_uppercase())),
        ty: DataType::STRING,
    }
}

/// The canonical singular name of a date-time unit (`MINUTES` -> `MINUTE`).
pub fn unit_name(field: &DateTimeField) -> String {
    let s = field.to_string().to_ascii_uppercase();
    match s.as_str() {
        "YEARS" => "YEAR".into(),
        "MONTHS" => "MONTH".into(),
        "WEEKS" => "WEEK".into(),
        "DAYS" => "DAY".into(),
        "HOURS" => "HOUR".into(),
        "MINUTES" => "MINUTE".into(),
        "SECONDS" => "SECOND".into(),
        "MILLISECONDS" => "MILLISECOND".into(),
        "DOW" => "DAYOFWEEK".into(),
        "DOY" => "DAYOFYEAR".into(),
        _ => s,
    }
}

/// Milliseconds (day-time) or months (year-month) of an interval literal.
pub fn interval_value(sql: &str, iv: &ast::Interval) -> SqlResult<Bound> {
    let span = range_of_node(sql, iv.value.as_ref());
    let text = match iv.value.as_ref() {
        AstExpr::Value(v) => match &v.value {
            AstValue::SingleQuotedString(s) | AstValue::Number(s, _) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let bad = || {
        SqlError::validation(format!("Illegal interval literal '{}'", text.trim()))
            .with_span(span.clone())
    };
    let text = text.trim();
    let (neg, text) = match text.strip_prefix('-') {
        Some(t) => (true, t.trim()),
        None => (false, text.strip_prefix('+').unwrap_or(text).trim()),
    };
    let lead = iv
        .leading_field
        .as_ref()
        .map(unit_name)
        .unwrap_or_else(|| "SECOND".into());
    let last = iv.last_field.as_ref().map(unit_name);
    let ms = |unit: &str| -> Option<i64> {
        Some(match unit {
            "DAY" => 86_400_000,
            "HOUR" => 3_600_000,
            "MINUTE" => 60_000,
            "SECOND" => 1_000,
            "MILLISECOND" => 1,
            _ => return None,
        })
    };
    let sign: i64 = if neg { -1 } else { 1 };
    if lead == "YEAR" || lead == "MONTH" {
        let months = match (lead.as_str(), last.as_deref()) {
            ("YEAR", Some("MONTH")) => {
                let (y, m) = text.split_once('-').ok_or_else(bad)?;
                let y: i32 = y.trim().parse().map_err(|_| bad())?;
                let m: i32 = m.trim().parse().map_err(|_| bad())?;
                y.checked_mul(12)
                    .and_then(|v| v.checked_add(m))
                    .ok_or_else(bad)?
            }
            ("YEAR", None) => text
                .parse::<i32>()
                .ok()
                .and_then(|y| y.checked_mul(12))
                .ok_or_else(bad)?,
            ("MONTH", None) => text.parse::<i32>().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        return Ok(Bound {
            expr: Expr::Literal(Value::IntervalYearMonth(if neg { -months } else { months })),
            ty: DataType::IntervalYearMonth,
        });
    }
    let lead_ms = ms(&lead).ok_or_else(|| {
        SqlError::unsupported(format!("interval unit {lead} is not supported"))
            .with_span(span.clone())
    })?;
    let total: i64 = match last.as_deref() {
        None => {
            if let Some((whole, frac)) = text.split_once('.') {
                // '1.5' SECOND
                let w: i64 = whole.parse().map_err(|_| bad())?;
                let mut f = frac.to_string();
                f.truncate(3);
                while f.len() < 3 {
                    f.push('0');
                }
                let f: i64 = f.parse().map_err(|_| bad())?;
                w.checked_mul(lead_ms)
                    .and_then(|v| v.checked_add(f * lead_ms / 1000))
                    .ok_or_else(bad)?
            } else {
                text.parse::<i64>()
                    .ok()
                    .and_then(|v| v.checked_mul(lead_ms))
                    .ok_or_else(bad)?
            }
        }
        Some(last) => {
            // 'd hh:mm:ss.fff' style: split on space, ':' and '.'.
            let units = ["DAY", "HOUR", "MINUTE", "SECOND"];
            let from = units.iter().position(|u| *u == lead).ok_or_else(bad)?;
            let to = units.iter().position(|u| *u == last).ok_or_else(bad)?;
            if to < from {
                return Err(bad());
            }
            let parts: Vec<&str> = text.split([' ', ':']).collect();
            if parts.len() != to - from + 1 {
                return Err(bad());
            }
            let mut total = 0i64;
            for (k, p) in parts.iter().enumerate() {
                let unit = units[from + k];
                let unit_ms = ms(unit).ok_or_else(bad)?;
                let v = if unit == "SECOND" {
                    let secs: f64 = p.parse().map_err(|_| bad())?;
                    (secs * 1000.0).round() as i64
                } else {
                    p.parse::<i64>().map_err(|_| bad())? * unit_ms
                };
                total = total.checked_add(v).ok_or_else(bad)?;
            }
            total
        }
    };
    Ok(Bound {
        expr: Expr::Literal(Value::IntervalDayTime(sign * total)),
        ty: DataType::IntervalDayTime,
    })
}

impl<'a> ExprBinder<'a> {
    pub fn new(sql: &'a str, scope: &'a Scope) -> Self {
        ExprBinder {
            sql,
            scope,
            aggs: None,
        }
    }

    pub fn with_aggs(sql: &'a str, scope: &'a Scope, aggs: &'a mut AggContext) -> Self {
        ExprBinder {
            sql,
            scope,
            aggs: Some(aggs),
        }
    }

    fn span(&self, e: &AstExpr) -> Option<Range<usize>> {
        range_of_node(self.sql, e)
    }

    /// Binds the predicate of `clause` (`WHERE`, `HAVING`, `FILTER`): must be BOOLEAN, else
    /// Flink's `WHERE clause must be a condition`.
    pub fn bind_predicate(&mut self, e: &AstExpr, clause: &str) -> SqlResult<Expr> {
        let b = self.bind(e)?;
        if b.ty != DataType::Boolean && b.ty != DataType::Null {
            return Err(
                SqlError::validation(format!("{clause} clause must be a condition"))
                    .with_span(self.span(e)),
            );
        }
        Ok(b.expr)
    }

    /// Binds an expression.
    pub fn bind(&mut self, e: &AstExpr) -> SqlResult<Bound> {
        let span = self.span(e);
        let r = self.bind_inner(e);
        r.map(fold).map_err(|err| err.with_span(span))
    }

    fn call(
        &mut self,
        name: &str,
        args: Vec<Bound>,
        span: Option<Range<usize>>,
    ) -> SqlResult<Bound> {
        let types: Vec<DataType> = args.iter().map(|a| a.ty.clone()).collect();
        let literals: Vec<Option<Value>> = args
            .iter()
            .map(|a| match &a.expr {
                Expr::Literal(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let resolved = functions::resolve_with_literals(name, &types, &literals).map_err(|e| {
            let mut err = SqlError::from_engine(e, span.clone());
            if !functions::is_known_function(name) {
                if let Some(s) = did_you_mean(name, functions::function_names().iter().copied()) {
                    err = err.with_help(format!("did you mean '{s}'?"));
                }
            }
            err
        })?;
        let args = args
            .into_iter()
            .zip(resolved.arg_types.iter())
            .map(|(a, t)| cast_to(a, t).expr)
            .collect();
        Ok(Bound {
            expr: Expr::Call {
                func: resolved.func,
                args,
                ret: resolved.ret.clone(),
            },
            ty: resolved.ret,
        })
    }

    fn bind_all(&mut self, items: &[&AstExpr]) -> SqlResult<Vec<Bound>> {
        items.iter().map(|e| self.bind(e)).collect()
    }

    fn common(
        &self,
        items: &[Bound],
        span: Option<Range<usize>>,
        what: &str,
    ) -> SqlResult<DataType> {
        let mut ty = DataType::Null;
        for b in items {
            ty = coerce::common_type(&ty, &b.ty).ok_or_else(|| {
                SqlError::validation(format!(
                    "Cannot find a common type for {what}: {ty} and {}",
                    b.ty
                ))
                .with_span(span.clone())
            })?;
        }
        Ok(ty)
    }

    fn boolean(&mut self, e: &AstExpr, op: &str) -> SqlResult<Expr> {
        let b = self.bind(e)?;
        match b.ty {
            DataType::Boolean | DataType::Null => Ok(b.expr),
            other => Err(SqlError::validation(format!(
                "Cannot apply '{op}' to arguments of type '{other}': a BOOLEAN is required"
            ))
            .with_span(self.span(e))),
        }
    }

    fn bind_inner(&mut self, e: &AstExpr) -> SqlResult<Bound> {
        let span = self.span(e);
        match e {
            AstExpr::Identifier(id) => self.column(None, &id.value, span),
            AstExpr::CompoundIdentifier(parts) => {
                if let Some(bound) = self.row_field_access(parts, span.clone())? {
                    return Ok(bound);
                }
                match parts.as_slice() {
                    [q, c] => self.column(Some(&q.value), &c.value, span),
                    [.., q, c] => self.column(Some(&q.value), &c.value, span),
                    _ => Err(SqlError::validation("empty identifier").with_span(span)),
                }
            }
            AstExpr::Value(v) => match &v.value {
                AstValue::Number(n, _) => number_literal(n).ok_or_else(|| {
                    SqlError::validation(format!("Numeric literal '{n}' out of range"))
                        .with_span(span)
                }),
                AstValue::SingleQuotedString(s)
                | AstValue::EscapedStringLiteral(s)
                | AstValue::UnicodeStringLiteral(s)
                | AstValue::NationalStringLiteral(s) => Ok(string_literal(s)),
                AstValue::Boolean(b) => Ok(Bound {
                    expr: Expr::Literal(Value::Boolean(*b)),
                    ty: DataType::Boolean,
                }),
                AstValue::Null => Ok(Bound {
                    expr: Expr::Literal(Value::Null),
                    ty: DataType::Null,
                }),
                AstValue::DoubleQuotedString(s) => self.column(None, s, span),
                other => Err(
                    SqlError::unsupported(format!("literal {other} is not supported"))
                        .with_span(span),
                ),
            },
            AstExpr::Nested(inner) => self.bind(inner),
            AstExpr::TypedString(ts) => {
                let to = crate::parser::convert_data_type(&ts.data_type)
                    .map_err(|err| err.with_span(span.clone()))?;
                let text = match &ts.value.value {
                    AstValue::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                // A time literal's precision is the number of fraction digits written
                // (`TIME '00:00:00.5'` is TIME(1)), as in Flink.
                let to = match to {
                    DataType::Time(_) | DataType::Timestamp(_) => {
                        let digits = text
                            .trim()
                            .rsplit_once('.')
                            .map_or(0, |(_, f)| f.bytes().take_while(u8::is_ascii_digit).count());
                        let p = u8::try_from(digits.min(9)).unwrap_or(9);
                        if matches!(to, DataType::Time(_)) {
                            DataType::Time(p)
                        } else {
                            DataType::Timestamp(p)
                        }
                    }
                    other => other,
                };
                let v =
                    cast::cast(&Value::string(&text), &DataType::STRING, &to).map_err(|_| {
                        SqlError::validation(format!("Illegal {to} literal '{text}'"))
                            .with_span(span.clone())
                    })?;
                Ok(Bound {
                    expr: Expr::Literal(v),
                    ty: to,
                })
            }
            AstExpr::Interval(iv) => interval_value(self.sql, iv),
            AstExpr::BinaryOp { left, op, right } => self.binary(left, op, right, span),
            AstExpr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Ok(Bound {
                    expr: Expr::Not(Box::new(self.boolean(expr, "NOT")?)),
                    ty: DataType::Boolean,
                }),
                UnaryOperator::Minus => {
                    if let AstExpr::Value(v) = expr.as_ref() {
                        if let AstValue::Number(n, _) = &v.value {
                            if let Some(b) = number_literal(&format!("-{n}")) {
                                return Ok(b);
                            }
                        }
                    }
                    let a = self.bind(expr)?;
                    self.call("NEG", vec![a], span)
                }
                UnaryOperator::Plus => self.bind(expr),
                other => Err(
                    SqlError::unsupported(format!("operator {other} is not supported"))
                        .with_span(span),
                ),
            },
            AstExpr::IsNull(x) => Ok(Bound {
                expr: Expr::IsNull(Box::new(self.bind(x)?.expr)),
                ty: DataType::Boolean,
            }),
            AstExpr::IsNotNull(x) => Ok(Bound {
                expr: Expr::IsNotNull(Box::new(self.bind(x)?.expr)),
                ty: DataType::Boolean,
            }),
            AstExpr::IsUnknown(x) => Ok(Bound {
                expr: Expr::IsNull(Box::new(self.boolean(x, "IS UNKNOWN")?)),
                ty: DataType::Boolean,
            }),
            AstExpr::IsNotUnknown(x) => Ok(Bound {
                expr: Expr::IsNotNull(Box::new(self.boolean(x, "IS NOT UNKNOWN")?)),
                ty: DataType::Boolean,
            }),
            AstExpr::IsDistinctFrom(a, b) | AstExpr::IsNotDistinctFrom(a, b) => {
                // NULL-safe comparison: two NULLs are not distinct, one NULL is distinct from
                // any value, otherwise `<>`.
                let a = self.bind(a)?;
                let b = self.bind(b)?;
                let (a_null, b_null) = (
                    Expr::IsNull(Box::new(a.expr.clone())),
                    Expr::IsNull(Box::new(b.expr.clone())),
                );
                let eq = self.call("=", vec![a, b], span)?.expr;
                let distinct = matches!(e, AstExpr::IsDistinctFrom(..));
                Ok(Bound {
                    expr: Expr::Case {
                        whens: vec![
                            (
                                Expr::And(vec![a_null.clone(), b_null.clone()]),
                                Expr::Literal(Value::Boolean(!distinct)),
                            ),
                            (
                                Expr::Or(vec![a_null, b_null]),
                                Expr::Literal(Value::Boolean(distinct)),
                            ),
                        ],
                        otherwise: Some(Box::new(if distinct {
                            Expr::Not(Box::new(eq))
                        } else {
                            eq
                        })),
                    },
                    ty: DataType::Boolean,
                })
            }
            AstExpr::IsTrue(x)
            | AstExpr::IsNotFalse(x)
            | AstExpr::IsFalse(x)
            | AstExpr::IsNotTrue(x) => {
                let b = self.boolean(x, "IS TRUE")?;
                let (negate_value, default) = match e {
                    AstExpr::IsTrue(_) => (false, false),
                    AstExpr::IsNotFalse(_) => (false, true),
                    AstExpr::IsFalse(_) => (true, false),
                    _ => (true, true),
                };
                let v = if negate_value {
                    Expr::Not(Box::new(b))
                } else {
                    b
                };
                Ok(Bound {
                    expr: Expr::Coalesce(vec![v, Expr::Literal(Value::Boolean(default))]),
                    ty: DataType::Boolean,
                })
            }
            AstExpr::InList {
                expr,
                list,
                negated,
            } => {
                let mut items = vec![self.bind(expr)?];
                for i in list {
                    items.push(self.bind(i)?);
                }
                let ty = self.common(&items, span, "IN")?;
                let mut items = items.into_iter().map(|b| cast_to(b, &ty).expr);
                let first = items.next().unwrap_or(Expr::Literal(Value::Null));
                Ok(Bound {
                    expr: Expr::In {
                        expr: Box::new(first),
                        list: items.collect(),
                        negated: *negated,
                    },
                    ty: DataType::Boolean,
                })
            }
            AstExpr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.bind(expr)?;
                let lo = self.bind(low)?;
                let hi = self.bind(high)?;
                let (op_lo, op_hi) = if *negated { ("<", ">") } else { (">=", "<=") };
                let a = self.call(op_lo, vec![x.clone(), lo], span.clone())?;
                let b = self.call(op_hi, vec![x, hi], span)?;
                let expr = if *negated {
                    Expr::Or(vec![a.expr, b.expr])
                } else {
                    Expr::And(vec![a.expr, b.expr])
                };
                Ok(Bound {
                    expr,
                    ty: DataType::Boolean,
                })
            }
            AstExpr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            } => {
                if *any {
                    return Err(SqlError::unsupported("LIKE ANY is not supported").with_span(span));
                }
                let mut args = vec![self.bind(expr)?, self.bind(pattern)?];
                if let Some(esc) = escape_char {
                    args.push(self.bind(esc)?);
                }
                let b = self.call("LIKE", args, span)?;
                Ok(if *negated {
                    Bound {
                        expr: Expr::Not(Box::new(b.expr)),
                        ty: DataType::Boolean,
                    }
                } else {
                    b
                })
            }
            AstExpr::SimilarTo {
                negated,
                expr,
                pattern,
                ..
            } => {
                let args = vec![self.bind(expr)?, self.bind(pattern)?];
                let b = self.call("SIMILAR TO", args, span)?;
                Ok(if *negated {
                    Bound {
                        expr: Expr::Not(Box::new(b.expr)),
                        ty: DataType::Boolean,
                    }
                } else {
                    b
                })
            }
            AstExpr::Cast {
                kind,
                expr,
                data_type,
                ..
            } => {
                let to = crate::parser::convert_data_type(data_type)
                    .map_err(|err| err.with_span(span.clone()))?;
                let from = self.bind(expr)?;
                if !coerce::can_cast(&from.ty, &to) {
                    return Err(SqlError::validation(format!(
                        "Cast function cannot convert value of type {} to type {to}",
                        from.ty
                    ))
                    .with_span(span));
                }
                let safe = matches!(kind, CastKind::TryCast | CastKind::SafeCast);
                Ok(Bound {
                    expr: Expr::Cast {
                        expr: Box::new(from.expr),
                        from: from.ty,
                        to: to.clone(),
                        safe,
                    },
                    ty: to,
                })
            }
            AstExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = match operand {
                    Some(o) => Some(self.bind(o)?),
                    None => None,
                };
                let mut conds = Vec::new();
                let mut results = Vec::new();
                for w in conditions {
                    let cond = match &operand {
                        Some(o) => {
                            let v = self.bind(&w.condition)?;
                            self.call("=", vec![o.clone(), v], self.span(&w.condition))?
                                .expr
                        }
                        None => self.boolean(&w.condition, "CASE")?,
                    };
                    conds.push(cond);
                    results.push(self.bind(&w.result)?);
                }
                let otherwise = match else_result {
                    Some(e) => Some(self.bind(e)?),
                    None => None,
                };
                let mut all = results.clone();
                all.extend(otherwise.iter().cloned());
                let ty = self.common(&all, span, "CASE")?;
                let whens = conds
                    .into_iter()
                    .zip(results)
                    .map(|(c, r)| (c, cast_to(r, &ty).expr))
                    .collect();
                Ok(Bound {
                    expr: Expr::Case {
                        whens,
                        otherwise: otherwise.map(|o| Box::new(cast_to(o, &ty).expr)),
                    },
                    ty,
                })
            }
            AstExpr::Extract { field, expr, .. } => {
                let v = self.bind(expr)?;
                self.call("EXTRACT", vec![unit_literal(&unit_name(field)), v], span)
            }
            AstExpr::Floor { expr, field } | AstExpr::Ceil { expr, field } => {
                let is_floor = matches!(e, AstExpr::Floor { .. });
                let v = self.bind(expr)?;
                match field {
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {
                        self.call(if is_floor { "FLOOR" } else { "CEIL" }, vec![v], span)
                    }
                    CeilFloorKind::DateTimeField(f) => self.call(
                        if is_floor { "FLOOR_TIME" } else { "CEIL_TIME" },
                        vec![unit_literal(&unit_name(f)), v],
                        span,
                    ),
                    CeilFloorKind::Scale(s) => {
                        let scale = self.bind_inner(&AstExpr::Value(s.clone()))?;
                        self.call(
                            if is_floor { "FLOOR" } else { "CEIL" },
                            vec![v, scale],
                            span,
                        )
                    }
                }
            }
            AstExpr::Position { expr, r#in } => {
                let args = self.bind_all(&[expr, r#in])?;
                self.call("POSITION", args, span)
            }
            AstExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.bind(expr)?];
                match substring_from {
                    Some(f) => args.push(self.bind(f)?),
                    None => args.push(Bound {
                        expr: Expr::Literal(Value::Int(1)),
                        ty: DataType::Int,
                    }),
                }
                if let Some(f) = substring_for {
                    args.push(self.bind(f)?);
                }
                self.call("SUBSTRING", args, span)
            }
            AstExpr::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return Err(SqlError::unsupported(
                        "TRIM with a character list is not supported",
                    )
                    .with_span(span));
                }
                let mode = match trim_where {
                    Some(TrimWhereField::Leading) => "LEADING",
                    Some(TrimWhereField::Trailing) => "TRAILING",
                    _ => "BOTH",
                };
                let chars = match trim_what {
                    Some(w) => self.bind(w)?,
                    None => string_literal(" "),
                };
                let s = self.bind(expr)?;
                self.call("TRIM", vec![unit_literal(mode), chars, s], span)
            }
            AstExpr::Function(f) => self.function(f, span),
            AstExpr::Subquery(_) | AstExpr::InSubquery { .. } | AstExpr::Exists { .. } => Err(
                SqlError::unsupported("subqueries in expressions are not supported")
                    .with_span(span),
            ),
            other => Err(
                SqlError::unsupported(format!("expression '{other}' is not supported"))
                    .with_span(span),
            ),
        }
    }

    /// `a.b[.c...]` as a ROW field access, resolved as Calcite does: `a.b` as a column `b` of
    /// the table `a` first (then `.c...` are its fields), else `a` as a column and `.b...` as
    /// its fields. `None` when neither reading applies or no ROW column is involved (the caller
    /// then reports the qualified column as missing).
    fn row_field_access(
        &mut self,
        parts: &[ast::Ident],
        span: Option<Range<usize>>,
    ) -> SqlResult<Option<Bound>> {
        let (column, fields) = match parts {
            [q, c, rest @ ..] if self.scope.resolve(Some(&q.value), &c.value).is_ok() => {
                if rest.is_empty() {
                    return Ok(None);
                }
                (self.column(Some(&q.value), &c.value, span.clone())?, rest)
            }
            [c, rest @ ..] if !rest.is_empty() => match self.scope.resolve(None, &c.value) {
                Ok(_) => (self.column(None, &c.value, span.clone())?, rest),
                Err(matches) if matches.len() > 1 => {
                    return Err(
                        SqlError::validation(format!("Column '{}' is ambiguous", c.value))
                            .with_span(span),
                    )
                }
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        };
        let mut bound = column;
        for field in fields {
            let row_fields = bound.ty.row_fields();
            if !bound.ty.is_row() {
                return Err(SqlError::validation(format!(
                    "Cannot access field '{}' of a value of type {}: only ROW values have fields",
                    field.value, bound.ty
                ))
                .with_span(span));
            }
            let position = row_fields
                .iter()
                .position(|f| f.name == field.value)
                .or_else(|| {
                    row_fields
                        .iter()
                        .position(|f| f.name.eq_ignore_ascii_case(&field.value))
                });
            let Some(i) = position else {
                let mut err = SqlError::validation(format!(
                    "Unknown field '{}' of type {}",
                    field.value, bound.ty
                ));
                if let Some(s) =
                    did_you_mean(&field.value, row_fields.iter().map(|f| f.name.as_str()))
                {
                    err = err.with_help(format!("did you mean '{s}'?"));
                }
                return Err(err.with_span(span));
            };
            let ty = row_fields[i].data_type.clone();
            bound = Bound {
                expr: Expr::Call {
                    func: functions::ScalarFunction::RowField(i),
                    args: vec![bound.expr],
                    ret: ty.clone(),
                },
                ty,
            };
        }
        Ok(Some(bound))
    }

    fn column(
        &mut self,
        qualifier: Option<&str>,
        name: &str,
        span: Option<Range<usize>>,
    ) -> SqlResult<Bound> {
        match self.scope.resolve(qualifier, name) {
            Ok(i) => Ok(Bound {
                expr: Expr::Column(i),
                ty: self.scope.columns[i].data_type.clone(),
            }),
            Err(matches) if matches.len() > 1 => {
                Err(SqlError::validation(format!("Column '{name}' is ambiguous")).with_span(span))
            }
            Err(_) => {
                // A niladic function written without parentheses.
                let upper = name.to_ascii_uppercase();
                if qualifier.is_none()
                    && matches!(
                        upper.as_str(),
                        "CURRENT_TIMESTAMP"
                            | "LOCALTIMESTAMP"
                            | "CURRENT_DATE"
                            | "CURRENT_TIME"
                            | "LOCALTIME"
                            | "CURRENT_ROW_TIMESTAMP"
                    )
                {
                    return self.call(&upper, vec![], span);
                }
                let full = match qualifier {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                };
                let mut err =
                    SqlError::validation(format!("Column '{full}' not found in any table"));
                if let Some(q) = qualifier {
                    if !self.scope.columns.iter().any(|c| {
                        c.qualifier
                            .as_deref()
                            .is_some_and(|cq| cq.eq_ignore_ascii_case(q))
                    }) {
                        err = SqlError::validation(format!("Table '{q}' not found"));
                    }
                }
                if let Some(s) =
                    did_you_mean(name, self.scope.columns.iter().map(|c| c.name.as_str()))
                {
                    err = err.with_help(format!("did you mean '{s}'?"));
                }
                Err(err.with_span(span))
            }
        }
    }

    fn binary(
        &mut self,
        left: &AstExpr,
        op: &BinaryOperator,
        right: &AstExpr,
        span: Option<Range<usize>>,
    ) -> SqlResult<Bound> {
        match op {
            BinaryOperator::And => {
                let l = self.boolean(left, "AND")?;
                let r = self.boolean(right, "AND")?;
                let mut items = Vec::new();
                for x in [l, r] {
                    match x {
                        Expr::And(inner) => items.extend(inner),
                        other => items.push(other),
                    }
                }
                Ok(Bound {
                    expr: Expr::And(items),
                    ty: DataType::Boolean,
                })
            }
            BinaryOperator::Or => {
                let l = self.boolean(left, "OR")?;
                let r = self.boolean(right, "OR")?;
                let mut items = Vec::new();
                for x in [l, r] {
                    match x {
                        Expr::Or(inner) => items.extend(inner),
                        other => items.push(other),
                    }
                }
                Ok(Bound {
                    expr: Expr::Or(items),
                    ty: DataType::Boolean,
                })
            }
            _ => {
                let name = match op {
                    BinaryOperator::Plus => "+",
                    BinaryOperator::Minus => "-",
                    BinaryOperator::Multiply => "*",
                    BinaryOperator::Divide => "/",
                    BinaryOperator::Modulo => "%",
                    BinaryOperator::StringConcat => "||",
                    BinaryOperator::Gt => ">",
                    BinaryOperator::Lt => "<",
                    BinaryOperator::GtEq => ">=",
                    BinaryOperator::LtEq => "<=",
                    BinaryOperator::Eq => "=",
                    BinaryOperator::NotEq => "<>",
                    other => {
                        return Err(SqlError::unsupported(format!(
                            "operator {other} is not supported"
                        ))
                        .with_span(span))
                    }
                };
                let l = self.bind(left)?;
                let r = self.bind(right)?;
                self.call(name, vec![l, r], span)
            }
        }
    }

    fn function(&mut self, f: &ast::Function, span: Option<Range<usize>>) -> SqlResult<Bound> {
        let name = function_name(f);
        if f.over.is_some() {
            return Err(SqlError::unsupported(format!(
                "OVER windows ({name} ... OVER) are not supported yet"
            ))
            .with_span(span));
        }
        let args = function_args(f);
        if is_aggregate_name(&name) {
            return self.aggregate(f, &name, &args, span);
        }
        match name.as_str() {
            "TUMBLE_START" | "TUMBLE_END" | "TUMBLE_ROWTIME" | "HOP_START" | "HOP_END"
            | "HOP_ROWTIME" | "SESSION_START" | "SESSION_END" | "SESSION_ROWTIME" => {
                return self.group_window_aux(&name, &args, span)
            }
            "TUMBLE" | "HOP" | "SESSION" | "CUMULATE" => {
                return Err(SqlError::validation(format!(
                    "Group window function {name} can only be used in GROUP BY"
                ))
                .with_span(span))
            }
            _ => {}
        }
        let plain: Vec<&AstExpr> = args
            .iter()
            .map(|a| {
                a.ok_or_else(|| {
                    SqlError::validation(format!("'*' is not a valid argument of {name}"))
                        .with_span(span.clone())
                })
            })
            .collect::<SqlResult<_>>()?;
        match name.as_str() {
            "COALESCE" | "IFNULL" => {
                if name == "IFNULL" && plain.len() != 2 {
                    return Err(SqlError::validation("IFNULL takes two arguments").with_span(span));
                }
                let items = self.bind_all(&plain)?;
                let ty = self.common(&items, span, "COALESCE")?;
                Ok(Bound {
                    expr: Expr::Coalesce(items.into_iter().map(|b| cast_to(b, &ty).expr).collect()),
                    ty,
                })
            }
            "NULLIF" => {
                let [a, b] = plain.as_slice() else {
                    return Err(SqlError::validation("NULLIF takes two arguments").with_span(span));
                };
                let a = self.bind(a)?;
                let b = self.bind(b)?;
                let eq = self.call("=", vec![a.clone(), b], span)?;
                Ok(Bound {
                    expr: Expr::Case {
                        whens: vec![(eq.expr, Expr::Literal(Value::Null))],
                        otherwise: Some(Box::new(a.expr)),
                    },
                    ty: a.ty,
                })
            }
            "IF" => {
                let [c, a, b] = plain.as_slice() else {
                    return Err(SqlError::validation("IF takes three arguments").with_span(span));
                };
                let c = self.boolean(c, "IF")?;
                let a = self.bind(a)?;
                let b = self.bind(b)?;
                let ty = self.common(&[a.clone(), b.clone()], span, "IF")?;
                Ok(Bound {
                    expr: Expr::Case {
                        whens: vec![(c, cast_to(a, &ty).expr)],
                        otherwise: Some(Box::new(cast_to(b, &ty).expr)),
                    },
                    ty,
                })
            }
            "TIMESTAMPADD" | "TIMESTAMPDIFF" => {
                let Some((unit, rest)) = plain.split_first() else {
                    return Err(
                        SqlError::validation(format!("{name} takes three arguments"))
                            .with_span(span),
                    );
                };
                let unit = match unit {
                    AstExpr::Identifier(id) => id.value.to_ascii_uppercase(),
                    other => other.to_string().to_ascii_uppercase(),
                };
                let unit = match unit.trim_end_matches('S') {
                    "SECOND" | "MINUTE" | "HOUR" | "DAY" | "WEEK" | "MONTH" | "QUARTER"
                    | "YEAR" | "MILLISECOND" => unit.trim_end_matches('S').to_string(),
                    _ => unit,
                };
                let mut bound = vec![unit_literal(&unit)];
                bound.extend(self.bind_all(rest)?);
                self.call(&name, bound, span)
            }
            _ => {
                let bound = self.bind_all(&plain)?;
                self.call(&name, bound, span)
            }
        }
    }

    fn aggregate(
        &mut self,
        f: &ast::Function,
        name: &str,
        args: &[Option<&AstExpr>],
        span: Option<Range<usize>>,
    ) -> SqlResult<Bound> {
        let distinct = is_distinct(f);
        let mut bound_args = Vec::new();
        for a in args {
            match a {
                Some(e) => {
                    let sub_scope = self.scope;
                    let mut inner = ExprBinder::new(self.sql, sub_scope);
                    let b = inner.bind(e)?;
                    bound_args.push(b);
                }
                None if name == "COUNT" => {}
                None => {
                    return Err(SqlError::validation(format!(
                        "'*' is not a valid argument of {name}"
                    ))
                    .with_span(span))
                }
            }
        }
        let filter = match &f.filter {
            Some(fe) => Some(ExprBinder::new(self.sql, self.scope).bind_predicate(fe, "FILTER")?),
            None => None,
        };
        let Some(aggs) = self.aggs.as_deref_mut() else {
            return Err(SqlError::validation(format!(
                "Aggregate function {name} is not allowed here"
            ))
            .with_span(span));
        };
        let arg_types: Vec<DataType> = bound_args.iter().map(|b| b.ty.clone()).collect();
        let canonical = match name {
            "STDDEV" => "STDDEV_SAMP",
            "VARIANCE" => "VAR_SAMP",
            other => other,
        };
        let (kind, ret) = streamsql_engine::agg::resolve_aggregate(canonical, &arg_types, distinct)
            .map_err(|e| SqlError::from_engine(e, span.clone()))?;
        let call = AggCallAst {
            name: canonical.to_string(),
            args: bound_args.into_iter().map(|b| b.expr).collect(),
            arg_types,
            distinct,
            filter,
            ret: ret.clone(),
            kind,
        };
        let idx = match aggs.calls.iter().position(|c| *c == call) {
            Some(i) => i,
            None => {
                aggs.calls.push(call);
                aggs.calls.len() - 1
            }
        };
        Ok(Bound {
            expr: Expr::Column(AGG_BASE + idx),
            ty: ret,
        })
    }

    fn group_window_aux(
        &mut self,
        name: &str,
        args: &[Option<&AstExpr>],
        span: Option<Range<usize>>,
    ) -> SqlResult<Bound> {
        let (function, part) = name.split_once('_').unwrap_or((name, ""));
        let mut bound = Vec::new();
        for a in args.iter().flatten() {
            bound.push(ExprBinder::new(self.sql, self.scope).bind(a)?.expr);
        }
        let window = self.aggs.as_ref().and_then(|a| a.group_window.clone());
        let Some(window) = window.filter(|w| w.function == function && w.args == bound) else {
            return Err(SqlError::validation(format!(
                "{name} must refer to the group window of the GROUP BY clause ({function}(...) with the same arguments)"
            ))
            .with_span(span));
        };
        let (offset, ty) = match part {
            "START" => (0, DataType::Timestamp(3)),
            "END" => (1, DataType::Timestamp(3)),
            _ => (2, window.time_type.clone()),
        };
        Ok(Bound {
            expr: Expr::Column(WINDOW_BASE + offset),
            ty,
        })
    }
}

/// True when the AST contains an aggregate call (outside OVER).
pub fn contains_aggregate(e: &AstExpr) -> bool {
    let mut found = false;
    visit(e, &mut |x| {
        if let AstExpr::Function(f) = x {
            if f.over.is_none() && is_aggregate_name(&function_name(f)) {
                found = true;
            }
        }
    });
    found
}

/// Calls `f` on `e` and on every sub-expression (not descending into subqueries).
pub fn visit(e: &AstExpr, f: &mut dyn FnMut(&AstExpr)) {
    f(e);
    match e {
        AstExpr::BinaryOp { left, right, .. } => {
            visit(left, f);
            visit(right, f);
        }
        AstExpr::UnaryOp { expr, .. }
        | AstExpr::Nested(expr)
        | AstExpr::IsNull(expr)
        | AstExpr::IsNotNull(expr)
        | AstExpr::IsTrue(expr)
        | AstExpr::IsFalse(expr)
        | AstExpr::IsNotTrue(expr)
        | AstExpr::IsNotFalse(expr)
        | AstExpr::IsUnknown(expr)
        | AstExpr::IsNotUnknown(expr)
        | AstExpr::Cast { expr, .. }
        | AstExpr::Extract { expr, .. }
        | AstExpr::Floor { expr, .. }
        | AstExpr::Ceil { expr, .. } => visit(expr, f),
        AstExpr::IsDistinctFrom(a, b) | AstExpr::IsNotDistinctFrom(a, b) => {
            visit(a, f);
            visit(b, f);
        }
        AstExpr::InList { expr, list, .. } => {
            visit(expr, f);
            for x in list {
                visit(x, f);
            }
        }
        AstExpr::Between {
            expr, low, high, ..
        } => {
            visit(expr, f);
            visit(low, f);
            visit(high, f);
        }
        AstExpr::Like { expr, pattern, .. } | AstExpr::SimilarTo { expr, pattern, .. } => {
            visit(expr, f);
            visit(pattern, f);
        }
        AstExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                visit(o, f);
            }
            for c in conditions {
                visit(&c.condition, f);
                visit(&c.result, f);
            }
            if let Some(e) = else_result {
                visit(e, f);
            }
        }
        AstExpr::Position { expr, r#in } => {
            visit(expr, f);
            visit(r#in, f);
        }
        AstExpr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            visit(expr, f);
            if let Some(x) = substring_from {
                visit(x, f);
            }
            if let Some(x) = substring_for {
                visit(x, f);
            }
        }
        AstExpr::Trim {
            expr, trim_what, ..
        } => {
            visit(expr, f);
            if let Some(x) = trim_what {
                visit(x, f);
            }
        }
        AstExpr::Function(func) => {
            for a in function_args(func).into_iter().flatten() {
                visit(a, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::parser::Parser;
    use streamsql_engine::types::DataType;
    use streamsql_engine::value::Value;

    use super::{ExprBinder, Scope, ScopeColumn};
    use crate::parser::FlinkDialect;

    /// Binds `text` over one nullable INT column `i` and evaluates it with `i = value`.
    fn eval(text: &str, value: Value) -> (Value, DataType) {
        let scope = Scope {
            columns: vec![ScopeColumn {
                qualifier: None,
                name: "i".into(),
                data_type: DataType::Int,
                rowtime: false,
            }],
        };
        let ast = Parser::new(&FlinkDialect)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr())
            .expect("test expression parses");
        let b = ExprBinder::new(text, &scope)
            .bind(&ast)
            .expect("test expression binds");
        (b.expr.eval(&[value]).expect("evaluates"), b.ty)
    }

    #[test]
    fn is_distinct_from_is_null_safe() {
        let t = Value::Boolean(true);
        let f = Value::Boolean(false);
        assert_eq!(eval("i IS DISTINCT FROM 10", Value::Null).0, t);
        assert_eq!(eval("i IS DISTINCT FROM 10", Value::Int(10)).0, f);
        assert_eq!(eval("i IS DISTINCT FROM NULL", Value::Null).0, f);
        assert_eq!(eval("i IS NOT DISTINCT FROM NULL", Value::Null).0, t);
        assert_eq!(eval("i IS NOT DISTINCT FROM 3", Value::Int(4)).0, f);
    }

    #[test]
    fn is_unknown_and_ifnull() {
        assert_eq!(
            eval("(i > 0) IS UNKNOWN", Value::Null).0,
            Value::Boolean(true)
        );
        assert_eq!(
            eval("(i > 0) IS NOT UNKNOWN", Value::Int(1)).0,
            Value::Boolean(true)
        );
        assert_eq!(eval("IFNULL(i, -1)", Value::Null).0, Value::Int(-1));
        assert_eq!(eval("IFNULL(i, -1)", Value::Int(7)).0, Value::Int(7));
    }

    #[test]
    fn time_literals_keep_their_fraction_digits() {
        // Flink types TIME '00:00:00.5' as TIME(1): the fraction is not truncated away.
        assert_eq!(
            eval("TIME '00:00:00.5'", Value::Null),
            (Value::Time(500), DataType::Time(1))
        );
        assert_eq!(
            eval("TIMESTAMP '2024-01-01 00:00:00'", Value::Null).1,
            DataType::Timestamp(0)
        );
    }
}
