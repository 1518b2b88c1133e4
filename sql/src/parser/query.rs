//! Reading Flink's query-level extensions back out of sqlparser's AST: window TVFs in `FROM`
//! and interval literals.
//!
//! Interval literals follow Calcite's rules as Flink applies them: the value is a string, the
//! leading field is limited by its precision (default 2 digits, so `INTERVAL '100' DAY` is an
//! error as in Flink while `INTERVAL '100' DAY(3)` is not), and the other fields by their
//! natural range (`HOUR` 0..=23, `MINUTE`/`SECOND` 0..=59, `MONTH` 0..=11).

use std::ops::Range;

use sqlparser::ast::{
    DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Interval, Spanned,
    TableFactor, UnaryOperator, Value,
};

use super::span_of;
use crate::ast::{IntervalValue, WindowKind, WindowTvf, TABLE_ARG_FUNCTION};
use crate::error::{SqlError, SqlResult};

/// Reads a window TVF out of a `FROM` item: `Ok(None)` when the item is not `TABLE(TUMBLE |
/// HOP | CUMULATE | SESSION (...))`, an error when it is one but its arguments are wrong.
/// `sql` is the script the item was parsed from (for spans).
pub fn window_tvf(sql: &str, factor: &TableFactor) -> SqlResult<Option<WindowTvf>> {
    let TableFactor::TableFunction { expr, alias } = factor else {
        return Ok(None);
    };
    let Expr::Function(function) = expr else {
        return Ok(None);
    };
    let name = function.name.to_string().to_ascii_uppercase();
    let kind = match name.as_str() {
        "TUMBLE" => WindowKind::Tumble,
        "HOP" => WindowKind::Hop,
        "CUMULATE" => WindowKind::Cumulate,
        "SESSION" => WindowKind::Session,
        _ => return Ok(None),
    };
    let span = span_of(sql, factor.span()).unwrap_or(0..0);
    let at = |e: &Expr| span_of(sql, e.span()).or_else(|| Some(span.clone()));
    let params: &[&str] = match kind {
        WindowKind::Tumble => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
        WindowKind::Hop => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
        WindowKind::Cumulate => &["DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"],
        WindowKind::Session => &["DATA", "TIMECOL", "GAP"],
    };
    let required = if kind == WindowKind::Session {
        params.len()
    } else {
        params.len() - 1
    };
    let count_error = || {
        let expecting = if required == params.len() {
            format!("{required}")
        } else {
            format!("{required} or {}", params.len())
        };
        SqlError::validation(format!(
            "Invalid number of arguments to function '{}'. Was expecting {expecting} arguments",
            kind.name()
        ))
        .with_span(Some(span.clone()))
    };
    let FunctionArguments::List(list) = &function.args else {
        return Err(count_error());
    };
    let mut slots: Vec<Option<&Expr>> = vec![None; params.len()];
    let mut next_positional = 0;
    let mut seen_named = false;
    for arg in &list.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                if seen_named {
                    return Err(SqlError::validation(
                        "Positional arguments must come before named arguments",
                    )
                    .with_span(at(e)));
                }
                let slot = slots.get_mut(next_positional).ok_or_else(count_error)?;
                *slot = Some(e);
                next_positional += 1;
            }
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                seen_named = true;
                let name_span = span_of(sql, name.span);
                let index = params
                    .iter()
                    .position(|p| p.eq_ignore_ascii_case(&name.value))
                    .ok_or_else(|| {
                        SqlError::validation(format!(
                            "No parameter named '{}' in {}; its parameters are {}",
                            name.value,
                            kind.name(),
                            params.join(", ")
                        ))
                        .with_span(name_span.clone())
                    })?;
                if slots[index].is_some() {
                    return Err(SqlError::validation(format!(
                        "Parameter '{}' of {} is given twice",
                        params[index],
                        kind.name()
                    ))
                    .with_span(name_span));
                }
                slots[index] = Some(e);
            }
            _ => {
                return Err(SqlError::validation(format!(
                    "Unexpected argument {arg} to {}",
                    kind.name()
                ))
                .with_span(Some(span.clone())))
            }
        }
    }
    if slots[..required].iter().any(Option::is_none) {
        return Err(count_error());
    }
    let data = slots[0].expect("invariant: required slots are filled");
    let time = slots[1].expect("invariant: required slots are filled");

    let (table, table_span, partition_by, partition_spans) =
        table_argument(sql, data).ok_or_else(|| {
            SqlError::validation(format!(
                "The first argument of {} must be a table, written TABLE <name>",
                kind.name()
            ))
            .with_span(at(data))
        })?;
    if kind != WindowKind::Session && !partition_by.is_empty() {
        return Err(SqlError::validation(format!(
            "{} does not take PARTITION BY; only SESSION windows are partitioned",
            kind.name()
        ))
        .with_span(at(data)));
    }
    let (time_col, time_col_span) = descriptor_column(sql, time).ok_or_else(|| {
        SqlError::validation(format!(
            "The second argument of {} must be a time attribute written DESCRIPTOR(column)",
            kind.name()
        ))
        .with_span(at(time))
    })?;
    let intervals = slots[2..].iter().flatten().map(|e| (*e).clone()).collect();
    let alias = match alias {
        Some(a) if !a.columns.is_empty() => {
            return Err(SqlError::unsupported(
                "Column aliases on a window table function are not supported",
            )
            .with_span(span_of(sql, a.name.span)));
        }
        Some(a) => Some(a.name.value.clone()),
        None => None,
    };
    Ok(Some(WindowTvf {
        kind,
        table,
        table_span,
        partition_by,
        partition_spans,
        time_col,
        time_col_span,
        intervals,
        alias,
        span,
    }))
}

type TableArgument = (String, Range<usize>, Vec<String>, Vec<Range<usize>>);

/// Unpacks the `__TABLE(name, partition columns...)` call the dialect makes of `TABLE t`.
fn table_argument(sql: &str, e: &Expr) -> Option<TableArgument> {
    let Expr::Function(f) = e else { return None };
    if f.name.to_string() != TABLE_ARG_FUNCTION {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let mut exprs = list.args.iter().map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    });
    let name_expr = exprs.next()??;
    let (name, name_span) = match name_expr {
        Expr::Identifier(i) => (i.value.clone(), span_of(sql, i.span)?),
        Expr::CompoundIdentifier(parts) => (
            parts
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>()
                .join("."),
            span_of(sql, name_expr.span())?,
        ),
        _ => return None,
    };
    let mut columns = Vec::new();
    let mut spans = Vec::new();
    for e in exprs {
        let Some(Expr::Identifier(i)) = e else {
            return None;
        };
        columns.push(i.value.clone());
        spans.push(span_of(sql, i.span)?);
    }
    Some((name, name_span, columns, spans))
}

/// The one column of `DESCRIPTOR(col)`.
fn descriptor_column(sql: &str, e: &Expr) -> Option<(String, Range<usize>)> {
    let Expr::Function(f) = e else { return None };
    if !f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i)))] => {
            Some((i.value.clone(), span_of(sql, i.span)?))
        }
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::CompoundIdentifier(parts)))] => {
            let last = parts.last()?;
            Some((last.value.clone(), span_of(sql, last.span)?))
        }
        _ => None,
    }
}

/// A field of an interval qualifier, in order from the most significant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Year => "YEAR",
            Unit::Month => "MONTH",
            Unit::Day => "DAY",
            Unit::Hour => "HOUR",
            Unit::Minute => "MINUTE",
            Unit::Second => "SECOND",
        }
    }

    fn from_field(field: &DateTimeField) -> SqlResult<Unit> {
        Ok(match field {
            DateTimeField::Year | DateTimeField::Years => Unit::Year,
            DateTimeField::Month | DateTimeField::Months => Unit::Month,
            DateTimeField::Day | DateTimeField::Days => Unit::Day,
            DateTimeField::Hour | DateTimeField::Hours => Unit::Hour,
            DateTimeField::Minute | DateTimeField::Minutes => Unit::Minute,
            DateTimeField::Second | DateTimeField::Seconds => Unit::Second,
            other => {
                return Err(SqlError::unsupported(format!(
                    "INTERVAL ... {other} is not supported; use YEAR, MONTH, DAY, HOUR, MINUTE or SECOND"
                )))
            }
        })
    }

    /// The largest value of this field when it is not the leading one.
    fn max_trailing(self) -> u64 {
        match self {
            Unit::Year | Unit::Day => u64::MAX,
            Unit::Month => 11,
            Unit::Hour => 23,
            Unit::Minute | Unit::Second => 59,
        }
    }

    fn millis(self) -> i64 {
        match self {
            Unit::Day => 86_400_000,
            Unit::Hour => 3_600_000,
            Unit::Minute => 60_000,
            Unit::Second => 1_000,
            Unit::Year | Unit::Month => 0,
        }
    }
}

/// Evaluates an interval literal such as `INTERVAL '20' MINUTES`, `INTERVAL '1:30' HOUR TO
/// MINUTE` or `-INTERVAL '2' YEAR`. Errors carry no span: the caller knows the expression's.
pub fn interval_millis_or_months(expr: &Expr) -> SqlResult<IntervalValue> {
    match expr {
        Expr::Nested(inner) => interval_millis_or_months(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => interval_millis_or_months(expr),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => negate(interval_millis_or_months(expr)?),
        Expr::Interval(interval) => evaluate_interval(interval),
        other => Err(SqlError::validation(format!(
            "Expected an interval literal such as INTERVAL '10' SECOND, found {other}"
        ))),
    }
}

fn negate(v: IntervalValue) -> SqlResult<IntervalValue> {
    let overflow = || SqlError::validation("Interval literal out of range");
    Ok(match v {
        IntervalValue::DayTime(ms) => {
            IntervalValue::DayTime(ms.checked_neg().ok_or_else(overflow)?)
        }
        IntervalValue::YearMonth(m) => {
            IntervalValue::YearMonth(m.checked_neg().ok_or_else(overflow)?)
        }
    })
}

fn evaluate_interval(interval: &Interval) -> SqlResult<IntervalValue> {
    let text = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.as_str(),
            other => {
                return Err(SqlError::validation(format!(
                    "The value of an interval literal must be a string, as in INTERVAL '5' MINUTE; found {other}"
                )))
            }
        },
        other => {
            return Err(SqlError::validation(format!(
                "The value of an interval literal must be a string, as in INTERVAL '5' MINUTE; found {other}"
            )))
        }
    };
    let Some(leading_field) = &interval.leading_field else {
        return Err(SqlError::validation(
            "An interval literal needs a unit, as in INTERVAL '5' MINUTE",
        ));
    };
    let leading = Unit::from_field(leading_field)?;
    let last = match &interval.last_field {
        Some(f) => Unit::from_field(f)?,
        None => leading,
    };
    let qualifier = if last == leading {
        leading.name().to_string()
    } else {
        format!("{} TO {}", leading.name(), last.name())
    };
    let valid = match (leading, last) {
        (a, b) if a == b => true,
        (Unit::Year, Unit::Month) => true,
        (Unit::Day | Unit::Hour | Unit::Minute, b) => b > leading && b >= Unit::Hour,
        _ => false,
    };
    if !valid {
        return Err(SqlError::validation(format!(
            "Invalid interval qualifier INTERVAL {qualifier}"
        )));
    }
    let illegal = || {
        SqlError::validation(format!(
            "Illegal interval literal format '{text}' for INTERVAL {qualifier}"
        ))
    };
    let body = text.trim();
    let (negative, body) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let units: Vec<Unit> = [
        Unit::Year,
        Unit::Month,
        Unit::Day,
        Unit::Hour,
        Unit::Minute,
        Unit::Second,
    ]
    .into_iter()
    .filter(|u| *u >= leading && *u <= last)
    .collect();
    let leading_precision = interval.leading_precision.unwrap_or(2);
    let mut rest = body;
    let mut values: Vec<u64> = Vec::with_capacity(units.len());
    let mut fraction_millis = 0i64;
    for (i, unit) in units.iter().enumerate() {
        if i > 0 {
            let separator = match unit {
                Unit::Month => '-',
                Unit::Hour => ' ',
                _ => ':',
            };
            rest = rest.strip_prefix(separator).ok_or_else(illegal)?;
        }
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(illegal());
        }
        let value: u64 = rest[..digits_len].parse().map_err(|_| illegal())?;
        rest = &rest[digits_len..];
        if i == 0 {
            let fits = u32::try_from(leading_precision)
                .ok()
                .and_then(|p| 10u64.checked_pow(p))
                .is_none_or(|limit| value < limit);
            if !fits {
                return Err(SqlError::validation(format!(
                    "Interval field value {value} exceeds precision of {}({leading_precision}) field",
                    unit.name()
                )));
            }
        } else if value > unit.max_trailing() {
            return Err(illegal());
        }
        values.push(value);
        if *unit == Unit::Second {
            if let Some(frac) = rest.strip_prefix('.') {
                let frac_len = frac.bytes().take_while(u8::is_ascii_digit).count();
                let max_digits = interval.fractional_seconds_precision.unwrap_or(9);
                if frac_len == 0 || frac_len as u64 > max_digits.max(3) {
                    return Err(illegal());
                }
                let millis_digits: String = frac[..frac_len]
                    .chars()
                    .chain("000".chars())
                    .take(3)
                    .collect();
                fraction_millis = millis_digits.parse().map_err(|_| illegal())?;
                rest = &frac[frac_len..];
            }
        }
    }
    if !rest.is_empty() {
        return Err(illegal());
    }
    let overflow = || SqlError::validation(format!("Interval literal '{text}' is out of range"));
    let value = if leading <= Unit::Month {
        let mut months: i64 = 0;
        for (unit, v) in units.iter().zip(&values) {
            let v = i64::try_from(*v).map_err(|_| overflow())?;
            let m = if *unit == Unit::Year {
                v.checked_mul(12).ok_or_else(overflow)?
            } else {
                v
            };
            months = months.checked_add(m).ok_or_else(overflow)?;
        }
        let months = i32::try_from(months).map_err(|_| overflow())?;
        IntervalValue::YearMonth(months)
    } else {
        let mut millis: i64 = fraction_millis;
        for (unit, v) in units.iter().zip(&values) {
            let v = i64::try_from(*v).map_err(|_| overflow())?;
            let ms = v.checked_mul(unit.millis()).ok_or_else(overflow)?;
            millis = millis.checked_add(ms).ok_or_else(overflow)?;
        }
        IntervalValue::DayTime(millis)
    };
    if negative {
        negate(value)
    } else {
        Ok(value)
    }
}
