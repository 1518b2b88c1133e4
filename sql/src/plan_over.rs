//! Planning OVER aggregations: `agg(x) OVER (PARTITION BY .. ORDER BY rowtime ROWS|RANGE ..)`
//! calls in a SELECT list, inline or through a named `WINDOW w AS (..)` clause.
//!
//! A SELECT with OVER aggregates becomes: a `Calc` (WHERE, and the input columns followed by the
//! aggregate arguments and FILTER conditions), an exchange by the PARTITION BY keys (none: one
//! global subtask), an [`OverAggregate`] that appends one value per call to every row, and a
//! `Calc` computing the SELECT list, in which each OVER call is a column and may sit inside a
//! larger expression.
//!
//! Flink's rules, with its messages: every call uses the same window; the window is ordered by
//! exactly one time attribute, ascending; the frame ends at the current row (`FOLLOWING` is
//! refused); the input is append-only. The frame defaults to `RANGE UNBOUNDED PRECEDING` when
//! only ORDER BY is given. The output is append-only and the rowtime column stays a time
//! attribute. Processing-time OVER windows and Flink's unbounded OVER windows ordered by a
//! non-time column (an updating result) are not supported.

use sqlparser::ast::{
    self, Expr as AstExpr, NamedWindowExpr, OrderBySort, SelectItem, WindowFrameBound,
    WindowFrameUnits, WindowSpec, WindowType,
};
use streamsql_engine::agg::{AggCall, AggregateKind};
use streamsql_engine::expr::Expr;
use streamsql_engine::graph::Partitioning;
use streamsql_engine::operator::Operator;
use streamsql_engine::operators::over_agg::{OverAggSpec, OverAggregate, OverFrame};
use streamsql_engine::types::DataType;
use streamsql_engine::value::Value;

use super::{describe_agg, op_factory, schema_of, Planner, Rel};
use crate::binder::{
    fold, function_name, is_aggregate_name, visit, AggContext, ExprBinder, Scope, ScopeColumn,
    AGG_BASE,
};
use crate::error::{SqlError, SqlResult};

/// Flink's message when the calls of one SELECT use different windows.
const DIFFERENT_WINDOWS: &str = "Over Agg: Unsupported use of OVER windows. All aggregates must be computed on the same window. please re-check the over window statement.";

/// True when the SELECT list holds an aggregate call with an OVER clause.
pub fn has_over_aggregate(s: &ast::Select) -> bool {
    let mut found = false;
    for item in &s.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            visit(e, &mut |x| {
                if let AstExpr::Function(f) = x {
                    if f.over.is_some() && is_aggregate_name(&function_name(f)) {
                        found = true;
                    }
                }
            });
        }
    }
    found
}

/// A window bound against the input: what decides whether two calls share it.
#[derive(Clone, Debug, PartialEq)]
struct BoundWindow {
    partition: Vec<Expr>,
    partition_types: Vec<DataType>,
    /// The ORDER BY column (a time attribute).
    order: usize,
    frame: OverFrame,
}

/// Resolves a named window (following `WINDOW w AS v` chains) to its specification.
fn named_window<'s>(
    s: &'s ast::Select,
    name: &ast::Ident,
    depth: usize,
) -> SqlResult<&'s WindowSpec> {
    let def = s
        .named_window
        .iter()
        .find(|d| d.0.value.eq_ignore_ascii_case(&name.value))
        .ok_or_else(|| SqlError::validation(format!("Window '{}' not found", name.value)))?;
    match &def.1 {
        NamedWindowExpr::WindowSpec(spec) => Ok(spec),
        NamedWindowExpr::NamedWindow(other) if depth < 16 => named_window(s, other, depth + 1),
        NamedWindowExpr::NamedWindow(other) => Err(SqlError::validation(format!(
            "Window '{}' is defined in a cycle",
            other.value
        ))),
    }
}

/// The effective specification of `w`: a named window, or an inline one that may refine a named
/// window (`OVER (w ROWS ..)`).
fn window_spec(s: &ast::Select, w: &WindowType) -> SqlResult<WindowSpec> {
    match w {
        WindowType::NamedWindow(name) => named_window(s, name, 0).cloned(),
        WindowType::WindowSpec(spec) => {
            let Some(base_name) = &spec.window_name else {
                return Ok(spec.clone());
            };
            let base = named_window(s, base_name, 0)?;
            Ok(WindowSpec {
                window_name: None,
                partition_by: if spec.partition_by.is_empty() {
                    base.partition_by.clone()
                } else {
                    spec.partition_by.clone()
                },
                order_by: if spec.order_by.is_empty() {
                    base.order_by.clone()
                } else {
                    spec.order_by.clone()
                },
                window_frame: spec
                    .window_frame
                    .clone()
                    .or_else(|| base.window_frame.clone()),
            })
        }
    }
}

impl Planner<'_> {
    /// Binds one window specification against `scope`, with Flink's checks and messages.
    fn bind_window(&mut self, spec: &WindowSpec, scope: &Scope) -> SqlResult<BoundWindow> {
        let mut partition = Vec::new();
        let mut partition_types = Vec::new();
        for p in &spec.partition_by {
            let b = ExprBinder::new(self.sql, scope).bind(p)?;
            partition.push(b.expr);
            partition_types.push(b.ty);
        }
        let follow =
            || SqlError::unsupported("OVER RANGE FOLLOWING windows are not supported yet.");
        let [order] = spec.order_by.as_slice() else {
            return Err(SqlError::unsupported(
                "The window can only be ordered by a single time column.",
            ));
        };
        let order_bound = ExprBinder::new(self.sql, scope).bind(&order.expr)?;
        let order_time = matches!(
            order_bound.ty,
            DataType::Timestamp(_) | DataType::TimestampLtz(_)
        );
        // The frame's offset, checked as Calcite's validator does before the planner's rules.
        let (units, start, end) = match &spec.window_frame {
            None => (
                WindowFrameUnits::Range,
                WindowFrameBound::Preceding(None),
                None,
            ),
            Some(f) => (f.units, f.start_bound.clone(), f.end_bound.clone()),
        };
        let offset = match &start {
            WindowFrameBound::Preceding(Some(e)) => {
                Some(fold(ExprBinder::new(self.sql, &Scope::default()).bind(e)?))
            }
            _ => None,
        };
        let frame = match (units, &start, offset) {
            (WindowFrameUnits::Groups, _, _) => {
                return Err(SqlError::unsupported("GROUPS frames are not supported"))
            }
            (_, WindowFrameBound::Following(_) | WindowFrameBound::CurrentRow, _) => {
                return Err(follow())
            }
            (WindowFrameUnits::Rows, _, None) => OverFrame::Rows { preceding: None },
            (WindowFrameUnits::Range, _, None) => OverFrame::Range { preceding: None },
            (WindowFrameUnits::Rows, _, Some(b)) => {
                let n = match b.expr {
                    Expr::Literal(Value::TinyInt(n)) => i64::from(n),
                    Expr::Literal(Value::SmallInt(n)) => i64::from(n),
                    Expr::Literal(Value::Int(n)) => i64::from(n),
                    Expr::Literal(Value::BigInt(n)) => n,
                    _ => -1,
                };
                let preceding = u64::try_from(n).map_err(|_| {
                    SqlError::validation("ROWS value must be a non-negative integral constant")
                })?;
                OverFrame::Rows {
                    preceding: Some(preceding),
                }
            }
            (WindowFrameUnits::Range, _, Some(b)) => match b.expr {
                Expr::Literal(Value::IntervalDayTime(ms)) if order_time && ms >= 0 => {
                    OverFrame::Range {
                        preceding: Some(ms),
                    }
                }
                Expr::Literal(Value::IntervalYearMonth(_)) if order_time => {
                    return Err(SqlError::unsupported(
                        "RANGE frames of a year-month interval are not supported",
                    ))
                }
                _ if order_time => {
                    return Err(SqlError::validation(
                        "Data Type mismatch between ORDER BY and RANGE clause",
                    ))
                }
                // A numeric RANGE over a non-time column: refused below as a non-time sort.
                _ => OverFrame::Range { preceding: Some(0) },
            },
        };
        if !matches!(end, None | Some(WindowFrameBound::CurrentRow)) {
            return Err(follow());
        }
        if matches!(order.options.sort, Some(OrderBySort::Desc)) {
            return Err(SqlError::unsupported(
                "The window can only be ordered in ASCENDING mode.",
            ));
        }
        let order_col = match order_bound.expr {
            Expr::Column(i) if scope.columns.get(i).is_some_and(|c| c.rowtime) => Some(i),
            _ => None,
        };
        let Some(order) = order_col else {
            let bounded = matches!(
                frame,
                OverFrame::Rows { preceding: Some(_) } | OverFrame::Range { preceding: Some(_) }
            );
            return Err(if bounded {
                SqlError::unsupported(
                    "Non-time attribute sort is not supported for bounded OVER window.",
                )
            } else {
                SqlError::unsupported(
                    "OVER windows ordered by a column that is not an event-time attribute (processing time, or a non-time column) are not supported",
                )
            });
        };
        Ok(BoundWindow {
            partition,
            partition_types,
            order,
            frame,
        })
    }

    /// Plans a SELECT whose list holds OVER aggregates (see the module documentation).
    pub(super) fn plan_over(&mut self, s: &ast::Select, rel: Rel) -> SqlResult<Rel> {
        let select_span = self.span(s);
        let grouped = match &s.group_by {
            ast::GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
            ast::GroupByExpr::All(_) => true,
        };
        if grouped || s.having.is_some() {
            return Err(SqlError::unsupported(
                "OVER aggregates together with GROUP BY or HAVING are not supported",
            )
            .with_span(select_span));
        }
        let rel = self.materialize(rel)?;
        let scope = rel.scope();
        let filter = match &s.selection {
            Some(w) => Some(ExprBinder::new(self.sql, &scope).bind_predicate(w, "WHERE")?),
            None => None,
        };
        // SELECT items, one at a time so that `*` may sit beside OVER calls.
        let mut agg_ctx = AggContext {
            over_allowed: true,
            ..AggContext::default()
        };
        let mut projections = Vec::new();
        for (pos, item) in s.projection.iter().enumerate() {
            let one = std::slice::from_ref(item);
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    projections.extend(self.projection(one, &scope, None)?);
                }
                _ => {
                    let mut bound = self.projection(one, &scope, Some(&mut agg_ctx))?;
                    // Unnamed expressions are named by their position in the whole list.
                    if let (SelectItem::UnnamedExpr(e), Some((_, c))) = (item, bound.first_mut()) {
                        if !matches!(e, AstExpr::Identifier(_) | AstExpr::CompoundIdentifier(_)) {
                            c.name = format!("EXPR${pos}");
                        }
                    }
                    projections.extend(bound);
                }
            }
        }
        // One window for all calls.
        let mut window: Option<BoundWindow> = None;
        for call in &agg_ctx.calls {
            let Some(over) = &call.over else {
                return Err(SqlError::unsupported(format!(
                    "{} without OVER beside OVER aggregates in one SELECT is not supported",
                    call.name
                ))
                .with_span(select_span));
            };
            if call.filter.is_some() {
                // Calcite's validator refuses FILTER on a windowed aggregate.
                return Err(
                    SqlError::validation("OVER must be applied to aggregate function")
                        .with_span(select_span),
                );
            }
            let spec = window_spec(s, over).map_err(|e| e.with_span(select_span.clone()))?;
            let bound = self
                .bind_window(&spec, &scope)
                .map_err(|e| e.with_span(select_span.clone()))?;
            match &window {
                Some(w) if *w != bound => {
                    return Err(SqlError::unsupported(DIFFERENT_WINDOWS).with_span(select_span))
                }
                Some(_) => {}
                None => window = Some(bound),
            }
            if !matches!(
                call.kind,
                AggregateKind::Count
                    | AggregateKind::CountStar
                    | AggregateKind::Sum
                    | AggregateKind::Avg
                    | AggregateKind::Min
                    | AggregateKind::Max
            ) {
                return Err(SqlError::unsupported(format!(
                    "{} OVER is not supported (COUNT, SUM, AVG, MIN and MAX are)",
                    call.name
                ))
                .with_span(select_span));
            }
        }
        let window = window.ok_or_else(|| {
            SqlError::internal("a SELECT with OVER aggregates bound no OVER call")
                .with_span(select_span.clone())
        })?;
        if !rel.append_only {
            return Err(SqlError::unsupported(
                "OVER aggregation over an updating input is not supported (Flink requires an append-only input for event-time OVER windows)",
            )
            .with_span(select_span));
        }
        // Pre-projection: the input columns the SELECT list reads (and the rowtime), then the
        // aggregate arguments, FILTER conditions and partition keys that are not among them. Only
        // these columns are buffered in the aggregation's state.
        let mut needed = vec![false; rel.columns.len()];
        needed[window.order] = true;
        for (e, _) in &projections {
            e.for_each_column(&mut |i| {
                if let Some(n) = needed.get_mut(i) {
                    *n = true;
                }
            });
        }
        let mut position = vec![usize::MAX; rel.columns.len()];
        let mut pre: Vec<(Expr, ScopeColumn)> = Vec::new();
        for (i, c) in rel.columns.iter().enumerate() {
            if needed[i] {
                position[i] = pre.len();
                pre.push((Expr::Column(i), c.clone()));
            }
        }
        let mut push_pre = |e: Expr, ty: DataType, name: String| -> usize {
            if let Some(i) = pre.iter().position(|(x, _)| *x == e) {
                return i;
            }
            // An input column keeps its name, for EXPLAIN.
            let name = match &e {
                Expr::Column(i) => rel.columns.get(*i).map_or(name, |c| c.name.clone()),
                _ => name,
            };
            pre.push((
                e,
                ScopeColumn {
                    qualifier: None,
                    name,
                    data_type: ty,
                    rowtime: false,
                },
            ));
            pre.len() - 1
        };
        let mut calls = Vec::new();
        for (i, c) in agg_ctx.calls.iter().enumerate() {
            let arg = match c.args.as_slice() {
                [] => None,
                [a] => Some(push_pre(
                    a.clone(),
                    c.arg_types[0].clone(),
                    format!("$a{i}"),
                )),
                _ => {
                    return Err(SqlError::unsupported(format!(
                        "{} with several arguments is not supported",
                        c.name
                    ))
                    .with_span(select_span))
                }
            };
            let filter = c
                .filter
                .clone()
                .map(|f| push_pre(f, DataType::Boolean, format!("$f{i}")));
            calls.push(AggCall {
                kind: c.kind,
                arg,
                distinct: c.distinct,
                ret: c.ret.clone(),
                filter,
            });
        }
        let partition_cols: Vec<usize> = window
            .partition
            .iter()
            .zip(&window.partition_types)
            .enumerate()
            .map(|(i, (p, ty))| push_pre(p.clone(), ty.clone(), format!("$p{i}")))
            .collect();
        let pre_rel = self.calc(&rel, filter, pre);
        let mut columns = pre_rel.columns.clone();
        for (i, c) in calls.iter().enumerate() {
            columns.push(ScopeColumn {
                qualifier: None,
                name: format!("w0$o{i}"),
                data_type: c.ret.clone(),
                rowtime: false,
            });
        }
        let (p, part) = if partition_cols.is_empty() {
            (1, Partitioning::Global)
        } else {
            (
                self.parallelism(),
                Partitioning::Hash(partition_cols.clone()),
            )
        };
        let description = format!(
            "partitionBy=[{}], orderBy=[{} ASC], window=[{}], select=[{}]",
            partition_cols
                .iter()
                .map(|k| pre_rel.columns[*k].name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            pre_rel.columns[position[window.order]].name,
            describe_frame(window.frame),
            calls
                .iter()
                .map(|a| describe_agg(a, &pre_rel.columns))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let spec = OverAggSpec {
            time_col: position[window.order],
            partition_cols,
            frame: window.frame,
            aggs: calls,
        };
        let node = self.graph.add_node(
            "OverAggregate",
            description,
            p,
            schema_of(&columns),
            op_factory(move |ctx| {
                Ok(Box::new(OverAggregate::new(spec.clone(), ctx)?) as Box<dyn Operator>)
            }),
            &[(pre_rel.node, part)],
        );
        let npre = pre_rel.columns.len();
        let over_rel = Rel::new(node, columns, true, p);
        // The SELECT list over the input columns and the OVER values.
        let mut post = Vec::with_capacity(projections.len());
        for (e, c) in projections {
            let e = e
                .rewrite::<std::convert::Infallible>(&mut |x| {
                    Ok(match x {
                        Expr::Column(i) if *i >= AGG_BASE => {
                            Some(Expr::Column(npre + (i - AGG_BASE)))
                        }
                        Expr::Column(i) if *i < position.len() => Some(Expr::Column(position[*i])),
                        _ => None,
                    })
                })
                .unwrap_or_else(|never| match never {});
            post.push((e, c));
        }
        Ok(self.calc(&over_rel, None, post))
    }
}

/// The frame as EXPLAIN shows it.
fn describe_frame(frame: OverFrame) -> String {
    match frame {
        OverFrame::Rows { preceding: None } => {
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".into()
        }
        OverFrame::Rows { preceding: Some(n) } => {
            format!("ROWS BETWEEN {n} PRECEDING AND CURRENT ROW")
        }
        OverFrame::Range { preceding: None } => {
            "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".into()
        }
        OverFrame::Range {
            preceding: Some(ms),
        } => format!("RANGE BETWEEN {ms} ms PRECEDING AND CURRENT ROW"),
    }
}
