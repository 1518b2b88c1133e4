//! Planning of regular and interval joins: `a [INNER | LEFT | RIGHT | FULL] JOIN b ON ...`,
//! `JOIN ... USING (...)`, chains of joins and comma joins (`FROM a, b WHERE a.x = b.y`).
//!
//! The ON condition is analysed into equi-join key pairs (a conjunct `left expr = right expr`), an
//! optional time interval between the rowtime attributes of both sides, and a residual predicate
//! over the joined row ([`analyze_join_condition`], [`extract_interval`]). Both inputs are hashed
//! on their keys (key expressions that are not plain columns are computed by a `Calc` appended
//! to the input's columns); without an equi key the join runs on one subtask, both inputs sent
//! to it, as in Flink.
//!
//! Output columns are the left input's then the right input's, qualifiers kept. A regular join
//! materializes time attributes (its output has none); an interval join keeps both inputs'.
//! A condition with time bounds on rowtime attributes of both sides plans an interval join
//! (append-only inputs only, Flink's rule); otherwise the join is regular.

use sqlparser::ast::{self, BinaryOperator, Expr as AstExpr, JoinConstraint, JoinOperator};
use streamsql_engine::expr::functions::CmpOp;
use streamsql_engine::expr::{Expr, ScalarFunction};
use streamsql_engine::graph::Partitioning;
use streamsql_engine::operator::Operator;
use streamsql_engine::operators::interval_join::{IntervalJoin, IntervalJoinSpec};
use streamsql_engine::operators::join::{JoinSpec, JoinType, StreamingJoin};
use streamsql_engine::types::DataType;
use streamsql_engine::value::Value;

use crate::binder::{ExprBinder, Scope, ScopeColumn};
use crate::error::{SqlError, SqlResult};
use crate::planner::{describe_exprs, op_factory, schema_of, Planner, Rel};

/// An analysed ON condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct JoinCondition {
    /// The whole condition, bound over the joined row (left columns, then right columns).
    pub on: Expr,
    /// Equi-join keys of the left input: expressions over the left input's columns.
    pub left_keys: Vec<Expr>,
    /// Equi-join keys of the right input, pairwise equal to `left_keys` (same types): expressions
    /// over the right input's own columns (numbered from 0).
    pub right_keys: Vec<Expr>,
    /// The other conjuncts, over the joined row; empty when the keys are the whole condition.
    pub residual: Vec<Expr>,
}

impl JoinCondition {
    /// The residual conjuncts as one predicate, or `None` when there are none.
    pub(crate) fn residual_predicate(&self) -> Option<Expr> {
        match self.residual.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(Expr::And(many.to_vec())),
        }
    }
}

/// The time interval of an interval join: `left_time - right_time` lies in `[lower, upper]`
/// (milliseconds, bounds inclusive; strict comparisons are moved by one millisecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IntervalBounds {
    /// The rowtime column of the left input.
    pub left_time: usize,
    /// The rowtime column of the right input (numbered from 0 in the right input).
    pub right_time: usize,
    /// The smallest `left_time - right_time`.
    pub lower: i64,
    /// The largest `left_time - right_time`.
    pub upper: i64,
}

/// The join types that lower to the engine's joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    fn engine(self) -> JoinType {
        match self {
            JoinKind::Inner => JoinType::Inner,
            JoinKind::Left => JoinType::LeftOuter,
            JoinKind::Right => JoinType::RightOuter,
            JoinKind::Full => JoinType::FullOuter,
        }
    }
}

/// The scope of a joined row: the left input's columns, then the right input's.
pub(crate) fn joined_scope(left: &Rel, right: &Rel) -> Scope {
    Scope {
        columns: left
            .columns
            .iter()
            .chain(right.columns.iter())
            .cloned()
            .collect(),
    }
}

/// Binds `on` over the joined row of `left` and `right` and splits it into equi-join key pairs
/// and residual conjuncts (see [`split_condition`]).
pub(crate) fn analyze_join_condition(
    sql: &str,
    left: &Rel,
    right: &Rel,
    on: &AstExpr,
) -> SqlResult<JoinCondition> {
    let scope = joined_scope(left, right);
    let on = ExprBinder::new(sql, &scope).bind_predicate(on, "ON")?;
    Ok(split_condition(on, left.columns.len()))
}

/// Which input an expression reads: `Some(true)` only left columns (below `left_width`),
/// `Some(false)` only right columns, `None` both or none.
fn side_of(e: &Expr, left_width: usize) -> Option<bool> {
    let (mut left, mut right) = (false, false);
    e.for_each_column(&mut |i| {
        if i < left_width {
            left = true;
        } else {
            right = true;
        }
    });
    match (left, right) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// `e` with every column moved down by `by` (a right-side expression over the joined row made an
/// expression over the right input).
fn shift_columns(e: &Expr, by: usize) -> Expr {
    let shifted = e.rewrite::<std::convert::Infallible>(&mut |x| {
        Ok(match x {
            Expr::Column(i) => Some(Expr::Column(i.saturating_sub(by))),
            _ => None,
        })
    });
    match shifted {
        Ok(x) => x,
        Err(never) => match never {},
    }
}

/// Appends the conjuncts of `e` (nested ANDs flattened) to `out`.
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::And(items) => items.into_iter().for_each(|x| conjuncts(x, out)),
        other => out.push(other),
    }
}

/// Splits a bound join condition over the joined row (`left_width` left columns first) into
/// equi-join key pairs (`l = r` with `l` reading only left and `r` only right columns, in either
/// order) and residual conjuncts.
pub(crate) fn split_condition(on: Expr, left_width: usize) -> JoinCondition {
    let mut all = Vec::new();
    conjuncts(on.clone(), &mut all);
    let mut cond = JoinCondition {
        on,
        left_keys: Vec::new(),
        right_keys: Vec::new(),
        residual: Vec::new(),
    };
    for c in all {
        if let Expr::Call {
            func: ScalarFunction::Cmp(CmpOp::Eq),
            args,
            ..
        } = &c
        {
            if let [a, b] = args.as_slice() {
                let pair = match (side_of(a, left_width), side_of(b, left_width)) {
                    (Some(true), Some(false)) => Some((a, b)),
                    (Some(false), Some(true)) => Some((b, a)),
                    _ => None,
                };
                if let Some((l, r)) = pair {
                    cond.left_keys.push(l.clone());
                    cond.right_keys.push(shift_columns(r, left_width));
                    continue;
                }
            }
        }
        if c != Expr::Literal(Value::Boolean(true)) {
            cond.residual.push(c);
        }
    }
    cond
}

/// A time attribute reference with a constant offset: `col`, `col + INTERVAL`, `col - INTERVAL`.
fn time_ref(e: &Expr, columns: &[ScopeColumn]) -> Option<(usize, i64)> {
    let interval = |e: &Expr| match e {
        Expr::Literal(Value::IntervalDayTime(ms)) => Some(*ms),
        _ => None,
    };
    let col = |e: &Expr| match e {
        Expr::Column(i) if columns.get(*i).is_some_and(|c| c.rowtime) => Some(*i),
        _ => None,
    };
    match e {
        Expr::Column(_) => Some((col(e)?, 0)),
        Expr::Call {
            func: ScalarFunction::AddTemporal,
            args,
            ..
        } => match args.as_slice() {
            [a, b] => match (col(a), interval(b), interval(a), col(b)) {
                (Some(c), Some(ms), _, _) | (_, _, Some(ms), Some(c)) => Some((c, ms)),
                _ => None,
            },
            _ => None,
        },
        Expr::Call {
            func: ScalarFunction::SubTemporal,
            args,
            ..
        } => match args.as_slice() {
            [a, b] => Some((col(a)?, interval(b)?.checked_neg()?)),
            _ => None,
        },
        _ => None,
    }
}

/// Finds the time bounds of an interval join among the residual conjuncts: comparisons between
/// rowtime attributes of both sides (with constant interval offsets) that bound
/// `left_time - right_time` from below and from above. On success the bounding conjuncts leave
/// the residual. Without both bounds on the same pair of rowtime columns this is no interval
/// join (Flink plans a regular join then).
pub(crate) fn extract_interval(
    cond: &mut JoinCondition,
    left: &Rel,
    right: &Rel,
) -> Option<IntervalBounds> {
    let nl = left.columns.len();
    let scope = joined_scope(left, right);
    let mut found: Vec<TimeBound> = Vec::new();
    for (idx, c) in cond.residual.iter().enumerate() {
        let Expr::Call {
            func: ScalarFunction::Cmp(op),
            args,
            ..
        } = c
        else {
            continue;
        };
        let [a, b] = args.as_slice() else { continue };
        let (Some((ca, oa)), Some((cb, ob))) =
            (time_ref(a, &scope.columns), time_ref(b, &scope.columns))
        else {
            continue;
        };
        // Normalize to `l + ol  op  r + or`.
        let (l, ol, r, or, op) = match (ca < nl, cb < nl) {
            (true, false) => (ca, oa, cb, ob, *op),
            (false, true) => (cb, ob, ca, oa, flip(*op)),
            _ => continue,
        };
        // l - r  op  or - ol
        let Some(k) = or.checked_sub(ol) else {
            continue;
        };
        let (lower, upper) = match op {
            CmpOp::Lt => (None, k.checked_sub(1)),
            CmpOp::LtEq => (None, Some(k)),
            CmpOp::Gt => (k.checked_add(1), None),
            CmpOp::GtEq => (Some(k), None),
            _ => continue,
        };
        found.push((idx, l, r - nl, lower, upper));
    }
    let (_, l, r, _, _) = *found.first()?;
    if found.iter().any(|f| f.1 != l || f.2 != r) {
        return None;
    }
    let lower = found.iter().filter_map(|f| f.3).max()?;
    let upper = found.iter().filter_map(|f| f.4).min()?;
    let used: Vec<usize> = found.iter().map(|f| f.0).collect();
    let mut i = 0;
    cond.residual.retain(|_| {
        let keep = !used.contains(&i);
        i += 1;
        keep
    });
    Some(IntervalBounds {
        left_time: l,
        right_time: r,
        lower,
        upper,
    })
}

/// One time-bound conjunct: (its index among the residual conjuncts, left rowtime column, right
/// rowtime column, lower bound, upper bound).
type TimeBound = (usize, usize, usize, Option<i64>, Option<i64>);

/// The comparison with its operands swapped.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

/// Splits an AST predicate into its AND-ed parts.
fn ast_conjuncts<'e>(e: &'e AstExpr, out: &mut Vec<&'e AstExpr>) {
    match e {
        AstExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            ast_conjuncts(left, out);
            ast_conjuncts(right, out);
        }
        AstExpr::Nested(inner) => ast_conjuncts(inner, out),
        other => out.push(other),
    }
}

impl Planner<'_> {
    /// Plans a FROM clause with joins or several items. `selection` is the WHERE clause: for a
    /// comma join its conjuncts that read both sides of a step become that step's join condition
    /// (the WHERE is still applied after the joins, which changes nothing for an inner join).
    pub(crate) fn plan_joined_from(
        &mut self,
        from: &[ast::TableWithJoins],
        selection: Option<&AstExpr>,
    ) -> SqlResult<Rel> {
        let mut where_parts = Vec::new();
        if let Some(w) = selection {
            ast_conjuncts(w, &mut where_parts);
        }
        let mut acc: Option<Rel> = None;
        for item in from {
            let rel = self.plan_table_with_joins(item, &where_parts)?;
            acc = Some(match acc {
                None => rel,
                Some(left) => {
                    let rel = self.materialize(rel)?;
                    let left = self.materialize(left)?;
                    let scope = joined_scope(&left, &rel);
                    let nl = left.columns.len();
                    let mut parts = Vec::new();
                    for p in &where_parts {
                        let Ok(b) = ExprBinder::new(self.sql, &scope).bind_predicate(p, "WHERE")
                        else {
                            continue;
                        };
                        // Every conjunct the joined row binds: those of one side filter that
                        // side before the join (the WHERE still runs after it).
                        parts.push(b);
                    }
                    let on = match parts.len() {
                        0 => Expr::Literal(Value::Boolean(true)),
                        1 => parts.remove(0),
                        _ => Expr::And(parts),
                    };
                    let cond = split_condition(on, nl);
                    self.plan_join(left, rel, JoinKind::Inner, cond)?
                }
            });
        }
        acc.ok_or_else(|| SqlError::validation("FROM clause without a table"))
    }

    /// Plans one FROM item with its chain of joins, left to right. `where_parts` are the
    /// conjuncts of the WHERE over it: those that read one input of an inner join filter that
    /// input before the join too, unless a later RIGHT or FULL join could null-pad its rows
    /// (the WHERE still runs after the joins).
    pub(crate) fn plan_table_with_joins(
        &mut self,
        twj: &ast::TableWithJoins,
        where_parts: &[&AstExpr],
    ) -> SqlResult<Rel> {
        let mut left = self.plan_join_factor(&twj.relation)?;
        for (i, join) in twj.joins.iter().enumerate() {
            let padded_later = twj.joins[i + 1..].iter().any(|j| {
                matches!(
                    j.join_operator,
                    JoinOperator::Right(_)
                        | JoinOperator::RightOuter(_)
                        | JoinOperator::FullOuter(_)
                )
            });
            // Window joins and temporal joins: see plan_join_time.rs.
            match self.plan_time_join(left, join)? {
                Ok(joined) => {
                    left = joined;
                    continue;
                }
                Err(back) => left = back,
            }
            let span = self.span(join);
            let (kind, constraint) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, c),
                JoinOperator::FullOuter(c) => (JoinKind::Full, c),
                JoinOperator::CrossJoin(c) => (JoinKind::Inner, c),
                other => {
                    return Err(SqlError::unsupported(format!(
                        "join type '{}' is not supported",
                        other_join_name(other)
                    ))
                    .with_span(span))
                }
            };
            let right = self.plan_join_factor(&join.relation)?;
            let right = self.materialize(right)?;
            left = self.materialize(left)?;
            let cond = match constraint {
                JoinConstraint::On(on) => analyze_join_condition(self.sql, &left, &right, on)?,
                JoinConstraint::Using(names) => self.using_condition(&left, &right, names, span)?,
                JoinConstraint::None => {
                    if !matches!(join.join_operator, JoinOperator::CrossJoin(_))
                        && kind != JoinKind::Inner
                    {
                        return Err(SqlError::validation("an outer join needs an ON condition")
                            .with_span(span));
                    }
                    split_condition(Expr::Literal(Value::Boolean(true)), left.columns.len())
                }
                JoinConstraint::Natural => {
                    return Err(
                        SqlError::unsupported("NATURAL joins are not supported").with_span(span)
                    )
                }
            };
            let mut cond = cond;
            if kind == JoinKind::Inner && !padded_later {
                let scope = joined_scope(&left, &right);
                let nl = left.columns.len();
                for p in where_parts {
                    let Ok(b) = ExprBinder::new(self.sql, &scope).bind_predicate(p, "WHERE") else {
                        continue;
                    };
                    if side_of(&b, nl).is_some() && !cond.residual.contains(&b) {
                        cond.on = Expr::And(vec![cond.on, b.clone()]);
                        cond.residual.push(b);
                    }
                }
            }
            left = self.plan_join(left, right, kind, cond)?;
        }
        Ok(left)
    }

    /// A table factor inside a join: a nested join is planned recursively.
    fn plan_join_factor(&mut self, tf: &ast::TableFactor) -> SqlResult<Rel> {
        match tf {
            ast::TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let rel = self.plan_table_with_joins(table_with_joins, &[])?;
                Ok(match alias {
                    Some(a) => {
                        let mut rel = rel;
                        for c in &mut rel.columns {
                            c.qualifier = Some(a.name.value.clone());
                        }
                        rel
                    }
                    None => rel,
                })
            }
            other => self.plan_table_factor(other),
        }
    }

    /// `USING (a, b)`: `left.a = right.a AND left.b = right.b`.
    fn using_condition(
        &mut self,
        left: &Rel,
        right: &Rel,
        names: &[ast::ObjectName],
        span: Option<std::ops::Range<usize>>,
    ) -> SqlResult<JoinCondition> {
        let nl = left.columns.len();
        let mut parts = Vec::new();
        for n in names {
            let name = crate::planner::object_name(n);
            let find = |rel: &Rel, side: &str| {
                rel.scope().resolve(None, &name).map_err(|_| {
                    SqlError::validation(format!(
                        "Column '{name}' not found in the {side} input of the join"
                    ))
                    .with_span(span.clone())
                })
            };
            let l = find(left, "left")?;
            let r = find(right, "right")?;
            let lt = &left.columns[l].data_type;
            let rt = &right.columns[r].data_type;
            let common = streamsql_engine::expr::coerce::common_type(lt, rt).ok_or_else(|| {
                SqlError::validation(format!(
                    "Cannot join on column '{name}': types {lt} and {rt} are not comparable"
                ))
                .with_span(span.clone())
            })?;
            let cast = |e: Expr, t: &streamsql_engine::types::DataType| {
                crate::binder::cast_to(
                    crate::binder::Bound {
                        expr: e,
                        ty: t.clone(),
                    },
                    &common,
                )
                .expr
            };
            parts.push(Expr::Call {
                func: ScalarFunction::Cmp(CmpOp::Eq),
                args: vec![cast(Expr::Column(l), lt), cast(Expr::Column(nl + r), rt)],
                ret: streamsql_engine::types::DataType::Boolean,
            });
        }
        let on = match parts.len() {
            1 => parts.remove(0),
            _ => Expr::And(parts),
        };
        Ok(split_condition(on, nl))
    }

    /// Makes the key expressions plain columns of `rel`: returns the input to hash (with computed
    /// keys appended by a `Calc` when some are not plain columns) and the key columns.
    fn key_columns(&mut self, rel: &Rel, keys: &[Expr]) -> (Rel, Vec<usize>) {
        let plain: Vec<usize> = keys
            .iter()
            .filter_map(|k| match k {
                Expr::Column(i) => Some(*i),
                _ => None,
            })
            .collect();
        if plain.len() == keys.len() {
            return (rel.clone(), plain);
        }
        let n = rel.columns.len();
        let mut projections: Vec<(Expr, ScopeColumn)> = rel
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (Expr::Column(i), c.clone()))
            .collect();
        for (j, k) in keys.iter().enumerate() {
            let ty = expr_type(k, &rel.columns);
            projections.push((
                k.clone(),
                ScopeColumn {
                    qualifier: None,
                    name: format!("$f{}", n + j),
                    data_type: ty,
                    rowtime: false,
                },
            ));
        }
        let computed = self.calc(rel, None, projections);
        (computed, (n..n + keys.len()).collect())
    }

    /// Filters each input by the conjuncts of the condition that read only that input, when
    /// that input is not preserved (both inputs of an inner join, the right of a left join, the
    /// left of a right join), as Flink's `FilterJoinRule` does: rows that can never match are
    /// not kept in the join's state. The conjuncts leave `cond`.
    fn push_side_filters(
        &mut self,
        left: Rel,
        right: Rel,
        kind: JoinKind,
        cond: &mut JoinCondition,
    ) -> (Rel, Rel) {
        let (push_left, push_right) = match kind {
            JoinKind::Inner => (true, true),
            JoinKind::Left => (false, true),
            JoinKind::Right => (true, false),
            JoinKind::Full => (false, false),
        };
        let lw = left.columns.len();
        let mut pushed = Vec::new();
        let (mut on_left, mut on_right) = (Vec::new(), Vec::new());
        cond.residual.retain(|c| match side_of(c, lw) {
            Some(true) if push_left => {
                on_left.push(c.clone());
                pushed.push(c.clone());
                false
            }
            Some(false) if push_right => {
                on_right.push(shift_columns(c, lw));
                pushed.push(c.clone());
                false
            }
            _ => true,
        });
        if pushed.is_empty() {
            return (left, right);
        }
        let mut on = Vec::new();
        conjuncts(cond.on.clone(), &mut on);
        on.retain(|c| !pushed.contains(c));
        cond.on = match on.len() {
            0 => Expr::Literal(Value::Boolean(true)),
            1 => on.remove(0),
            _ => Expr::And(on),
        };
        let filter = |planner: &mut Self, rel: Rel, mut parts: Vec<Expr>| -> Rel {
            if parts.is_empty() {
                return rel;
            }
            let predicate = if parts.len() == 1 {
                parts.remove(0)
            } else {
                Expr::And(parts)
            };
            let identity = rel
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (Expr::Column(i), c.clone()))
                .collect();
            planner.calc(&rel, Some(predicate), identity)
        };
        let left = filter(self, left, on_left);
        let right = filter(self, right, on_right);
        (left, right)
    }

    /// Adds the join node for `left` and `right` under `cond`: an interval join when the
    /// condition bounds the rowtimes of both sides, a regular join otherwise.
    pub(crate) fn plan_join(
        &mut self,
        left: Rel,
        right: Rel,
        kind: JoinKind,
        mut cond: JoinCondition,
    ) -> SqlResult<Rel> {
        let info = JoinInfo {
            left: left.clone(),
            right: right.clone(),
            kind,
            cond: cond.clone(),
            first_node: self.graph.nodes.len(),
        };
        let interval = extract_interval(&mut cond, &left, &right);
        let (left, right) = self.push_side_filters(left, right, kind, &mut cond);
        let (lw, rw) = (left.columns.len(), right.columns.len());
        let joined = joined_scope(&left, &right);
        let (lin, lkeys) = self.key_columns(&left, &cond.left_keys);
        let (rin, rkeys) = self.key_columns(&right, &cond.right_keys);
        let (p, lpart, rpart) = if lkeys.is_empty() {
            (1, Partitioning::Global, Partitioning::Global)
        } else {
            let p = self.parallelism();
            (
                p,
                Partitioning::Hash(lkeys.clone()),
                Partitioning::Hash(rkeys.clone()),
            )
        };
        let residual = cond.residual_predicate();
        let select = joined
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let where_ = describe_exprs(std::slice::from_ref(&cond.on), &joined.columns);
        let spec = JoinSpec {
            join_type: kind.engine(),
            left_keys: lkeys.clone(),
            right_keys: rkeys.clone(),
            left_width: lw,
            right_width: rw,
            residual,
        };
        let mut columns = joined.columns.clone();
        let (name, description, factory, append_only) = match interval {
            Some(b) => {
                for (side, rel) in [("left", &left), ("right", &right)] {
                    if !rel.append_only {
                        return Err(SqlError::unsupported(format!(
                            "StreamPhysicalIntervalJoin doesn't support consuming update and delete changes which is produced by the {side} input of the join"
                        )));
                    }
                }
                for (i, c) in columns.iter_mut().enumerate() {
                    c.rowtime = (i == b.left_time || i == lw + b.right_time) && c.rowtime;
                }
                let ispec = IntervalJoinSpec {
                    join: spec,
                    left_time: b.left_time,
                    right_time: b.right_time,
                    lower: b.lower,
                    upper: b.upper,
                };
                let description = format!(
                    "joinType=[{}], windowBounds=[isRowTime=true, leftLowerBound={}, leftUpperBound={}, leftTimeIndex={}, rightTimeIndex={}], where=[{where_}], select=[{select}]",
                    kind.engine().name(),
                    b.lower,
                    b.upper,
                    b.left_time,
                    b.right_time,
                );
                (
                    "IntervalJoin",
                    description,
                    op_factory(move |ctx| {
                        Ok(Box::new(IntervalJoin::new(ispec.clone(), ctx)?) as Box<dyn Operator>)
                    }),
                    true,
                )
            }
            None => {
                for c in &mut columns {
                    c.rowtime = false;
                }
                // Flink names the state layout of each input; unique keys are not tracked
                // here, so every input is stored as Flink stores one without a unique key.
                let description = format!(
                    "joinType=[{}], where=[{where_}], select=[{select}], leftInputSpec=[NoUniqueKey], rightInputSpec=[NoUniqueKey]",
                    kind.engine().name(),
                );
                let append_only = kind == JoinKind::Inner && left.append_only && right.append_only;
                (
                    "Join",
                    description,
                    op_factory(move |ctx| {
                        Ok(Box::new(StreamingJoin::new(spec.clone(), ctx)?) as Box<dyn Operator>)
                    }),
                    append_only,
                )
            }
        };
        let node = self.graph.add_node(
            name,
            description,
            p,
            schema_of(&columns),
            factory,
            &[(lin.node, lpart), (rin.node, rpart)],
        );
        Ok(Rel {
            node,
            columns,
            append_only,
            parallelism: p,
            pending_window: None,
            calc: None,
            chain: None,
            join: Some(Box::new(info)),
        })
    }

    /// The join `info` made, planned again over only the columns of its inputs that `used` (per
    /// column of its output) marks, its keys and its condition read, as Flink prunes columns
    /// before a join: the join's state then holds only what is read. Returns the new join and,
    /// per old output column, its new position; `None` when every column is read or the join
    /// has been read by something else since.
    pub(crate) fn prune_join(
        &mut self,
        rel: &Rel,
        used: &[bool],
    ) -> Option<(Rel, Vec<Option<usize>>)> {
        let info = rel.join.as_deref()?;
        let (lw, rw) = (info.left.columns.len(), info.right.columns.len());
        if rel.node + 1 != self.graph.nodes.len() || used.len() > lw + rw {
            return None;
        }
        let mut need = vec![false; lw + rw];
        for (i, u) in used.iter().enumerate() {
            need[i] |= *u;
        }
        let mut mark = |e: &Expr, offset: usize| {
            e.for_each_column(&mut |c| {
                if let Some(n) = need.get_mut(c + offset) {
                    *n = true;
                }
            })
        };
        info.cond.left_keys.iter().for_each(|k| mark(k, 0));
        info.cond.right_keys.iter().for_each(|k| mark(k, lw));
        info.cond.residual.iter().for_each(|r| mark(r, 0));
        mark(&info.cond.on, 0);
        if need.iter().all(|n| *n) {
            return None;
        }
        // Where each kept column goes, per side.
        let positions = |range: std::ops::Range<usize>| -> Vec<Option<usize>> {
            let mut next = 0;
            range
                .map(|i| {
                    need[i].then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        let left_pos = positions(0..lw);
        let right_pos = positions(lw..lw + rw);
        let kept_left = left_pos.iter().flatten().count();
        let joined_pos: Vec<Option<usize>> = left_pos
            .iter()
            .copied()
            .chain(right_pos.iter().map(|p| p.map(|p| p + kept_left)))
            .collect();
        let remap = |e: &Expr, map: &[Option<usize>]| -> Option<Expr> {
            e.rewrite::<()>(&mut |x| match x {
                Expr::Column(c) => match map.get(*c).copied().flatten() {
                    Some(to) => Ok(Some(Expr::Column(to))),
                    None => Err(()),
                },
                _ => Ok(None),
            })
            .ok()
        };
        let cond = JoinCondition {
            on: remap(&info.cond.on, &joined_pos)?,
            left_keys: info
                .cond
                .left_keys
                .iter()
                .map(|k| remap(k, &left_pos))
                .collect::<Option<_>>()?,
            right_keys: info
                .cond
                .right_keys
                .iter()
                .map(|k| remap(k, &right_pos))
                .collect::<Option<_>>()?,
            residual: info
                .cond
                .residual
                .iter()
                .map(|r| remap(r, &joined_pos))
                .collect::<Option<_>>()?,
        };
        let (left, right, kind, first_node) = (
            info.left.clone(),
            info.right.clone(),
            info.kind,
            info.first_node,
        );
        let saved = self.graph.clone();
        // The join and what it planned for its inputs are the newest nodes: take them out.
        self.graph.nodes.truncate(first_node);
        self.graph
            .edges
            .retain(|e| e.from < first_node && e.to < first_node);
        let project = |planner: &mut Self, rel: Rel, pos: &[Option<usize>]| -> Rel {
            if pos.iter().all(Option::is_some) {
                return rel;
            }
            let projections = pos
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_some())
                .map(|(i, _)| (Expr::Column(i), rel.columns[i].clone()))
                .collect();
            planner.calc(&rel, None, projections)
        };
        let left = project(self, left, &left_pos);
        let right = project(self, right, &right_pos);
        match self.plan_join(left, right, kind, cond) {
            Ok(joined) => Some((joined, joined_pos)),
            // The unpruned join planned from the same inputs succeeded, so a failure here is not
            // expected; should one happen, the unpruned join stays in the graph.
            Err(_) => {
                *self.graph = saved;
                None
            }
        }
    }
}

/// How a join was planned (see [`Rel::join`]).
#[derive(Clone, Debug)]
pub(crate) struct JoinInfo {
    pub left: Rel,
    pub right: Rel,
    pub kind: JoinKind,
    pub cond: JoinCondition,
    /// The first graph node planned for the join (input Calcs, then the join).
    pub first_node: usize,
}

/// The type of a bound expression over `columns`.
fn expr_type(e: &Expr, columns: &[ScopeColumn]) -> DataType {
    match e {
        Expr::Column(i) => columns
            .get(*i)
            .map_or(DataType::Null, |c| c.data_type.clone()),
        // Key expressions always read a column; a literal's type does not matter here.
        Expr::Literal(_) => DataType::Null,
        Expr::Call { ret, .. } => ret.clone(),
        Expr::Cast { to, .. } => to.clone(),
        Expr::Case { whens, otherwise } => whens
            .first()
            .map(|(_, t)| expr_type(t, columns))
            .or_else(|| otherwise.as_deref().map(|o| expr_type(o, columns)))
            .unwrap_or(DataType::Null),
        Expr::Coalesce(items) => items
            .first()
            .map_or(DataType::Null, |x| expr_type(x, columns)),
        Expr::And(_)
        | Expr::Or(_)
        | Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::In { .. } => DataType::Boolean,
    }
}

/// Makes the column names of a derived table or view unique as Calcite does, so that a join's
/// `SELECT *` can be read from outside: a repeated name gets the first free suffix counting from
/// 0 (`uid`, `uid0`, `uid1`). Names compare without case, as this planner resolves them.
pub(crate) fn uniquify_names(columns: &mut [ScopeColumn]) {
    let mut used: std::collections::HashSet<String> = std::collections::HashSet::new();
    for c in columns.iter_mut() {
        if used.insert(c.name.to_ascii_lowercase()) {
            continue;
        }
        for j in 0usize.. {
            let candidate = format!("{}{j}", c.name);
            if used.insert(candidate.to_ascii_lowercase()) {
                c.name = candidate;
                break;
            }
        }
    }
}

/// Flink refuses to write a result with more than one rowtime attribute (an interval join keeps
/// both inputs'): one must be cast to a plain TIMESTAMP first.
pub(crate) fn check_one_rowtime(rel: &Rel, table: &str) -> SqlResult<()> {
    let mut names: Vec<String> = Vec::new();
    for (i, c) in rel.columns.iter().enumerate() {
        if !c.rowtime {
            continue;
        }
        // Calcite makes duplicate field names unique with a counter: ts, ts0, ts1.
        let dup = rel.columns[..i]
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case(&c.name))
            .count();
        names.push(if dup == 0 {
            c.name.clone()
        } else {
            format!("{}{}", c.name, dup - 1)
        });
    }
    if names.len() > 1 {
        return Err(SqlError::validation(format!(
            "The query contains more than one rowtime attribute column [{}] for writing into table '{table}'.",
            names.join(", ")
        ))
        .with_help("cast all but one of them to TIMESTAMP(3)"));
    }
    Ok(())
}

/// A join operator's name for an error message.
fn other_join_name(op: &JoinOperator) -> String {
    let debug = format!("{op:?}");
    debug.split('(').next().unwrap_or_default().to_string()
}
