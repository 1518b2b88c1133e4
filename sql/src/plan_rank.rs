//! Top-N and deduplication: Flink's `ROW_NUMBER()` pattern
//!
//! ```sql
//! SELECT ... FROM (
//!   SELECT ..., ROW_NUMBER() OVER ([PARTITION BY k, ...] ORDER BY c [ASC|DESC], ...) AS rn
//!   FROM t ...
//! ) [alias] WHERE rn <= N [AND other conditions]
//! ```
//!
//! lowered the way Flink's optimizer does:
//! - `PARTITION BY window_start, window_end, ...` over an append-only input (a window TVF or a
//!   window aggregation): `WindowRank`, final rows when the window fires (window deduplication is
//!   the case `rn = 1` ordered by a timestamp);
//! - rank 1 ordered by a rowtime attribute of an append-only input: `Deduplicate`, keeping the
//!   first (ASC) or the last (DESC) row;
//! - anything else: `Rank` (append-only or retracting, from the input's changelog).
//!
//! The rank range comes from the outer WHERE's conjuncts on `rn` (`<=`, `<`, `=`, `>=`, `>`,
//! `BETWEEN`); an upper bound is required, as in Flink. Without any such conjunct the query is not
//! a Top-N: `ROW_NUMBER()` is then an OVER aggregation, left to the regular path. The rank number is computed only when
//! the rest of the outer query reads it and the range has more than one rank (otherwise it is the
//! constant rank, as Flink's `ConstantRankNumberColumnRemoveRule` makes it), because the
//! changelog differs: with the number, rows whose rank shifts are updated.
//!
//! PARTITION BY and ORDER BY expressions are planned as hidden columns of the inner SELECT, so they
//! may use columns it does not project and aggregates of its GROUP BY, and a constant holds
//! ROW_NUMBER's place; a `Calc` after the rank drops the hidden columns and puts the rank number
//! in that place.

use sqlparser::ast::{
    self, BinaryOperator, Expr as AstExpr, OrderBySort, SelectItem, SetExpr, TableFactor,
    WindowType,
};
use streamsql_engine::expr::Expr;
use streamsql_engine::graph::Partitioning;
use streamsql_engine::operator::Operator;
use streamsql_engine::operators::dedup::{Deduplicate, DeduplicateSpec};
use streamsql_engine::operators::rank::{Rank, RankSpec, SortField};
use streamsql_engine::operators::window_rank::{WindowRank, WindowRankSpec};
use streamsql_engine::types::DataType;
use streamsql_engine::value::Value;

use super::{
    object_name, op_factory, rename_columns, requalify, requalify_none, schema_of,
    tf_alias_columns, Planner, Rel,
};
use crate::binder::{function_name, ScopeColumn};
use crate::catalog::CatalogEntry;
use crate::error::{SqlError, SqlResult};

/// The name of the column holding ROW_NUMBER's place in the inner SELECT.
const RN_PLACEHOLDER: &str = "$rn";
/// Flink's message when the outer WHERE gives no upper bound for the rank.
const NO_RANK_END: &str = "Rank end is not specified. Currently rank only support TopN, which means the rank end must be specified.";

/// What the outer WHERE says about the rank.
struct RankRange {
    start: i64,
    end: Option<i64>,
    /// Conjuncts that are not about the rank.
    rest: Vec<AstExpr>,
    /// Whether any conjunct was about the rank.
    seen: bool,
}

/// Splits `e` into its AND-ed conjuncts.
fn conjuncts(e: &AstExpr, out: &mut Vec<AstExpr>) {
    match e {
        AstExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        AstExpr::Nested(inner)
            if matches!(
                **inner,
                AstExpr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner, out)
        }
        other => out.push(other.clone()),
    }
}

/// True when `e` names the rank column.
fn is_rank_ref(e: &AstExpr, rn: &str) -> bool {
    match e {
        AstExpr::Identifier(id) => id.value.eq_ignore_ascii_case(rn),
        AstExpr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|id| id.value.eq_ignore_ascii_case(rn)),
        AstExpr::Nested(inner) => is_rank_ref(inner, rn),
        _ => false,
    }
}

/// An integer literal.
fn int_literal(e: &AstExpr) -> Option<i64> {
    match e {
        AstExpr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        AstExpr::Nested(inner) => int_literal(inner),
        _ => None,
    }
}

impl RankRange {
    fn from_where(selection: Option<&AstExpr>, rn: &str) -> RankRange {
        let mut all = Vec::new();
        if let Some(w) = selection {
            conjuncts(w, &mut all);
        }
        let mut r = RankRange {
            start: 1,
            end: None,
            rest: Vec::new(),
            seen: false,
        };
        for c in all {
            if !r.absorb(&c, rn) {
                r.rest.push(c);
            }
        }
        r
    }

    fn upper(&mut self, n: i64) {
        self.end = Some(self.end.map_or(n, |e| e.min(n)));
    }

    fn lower(&mut self, n: i64) {
        self.start = self.start.max(n);
    }

    /// Takes `c` into the range when it bounds the rank by a constant.
    fn absorb(&mut self, c: &AstExpr, rn: &str) -> bool {
        match c {
            AstExpr::BinaryOp { left, op, right } => {
                let (op, n) = if is_rank_ref(left, rn) {
                    match int_literal(right) {
                        Some(n) => (op.clone(), n),
                        None => return false,
                    }
                } else if is_rank_ref(right, rn) {
                    let Some(n) = int_literal(left) else {
                        return false;
                    };
                    let flipped = match op {
                        BinaryOperator::Lt => BinaryOperator::Gt,
                        BinaryOperator::LtEq => BinaryOperator::GtEq,
                        BinaryOperator::Gt => BinaryOperator::Lt,
                        BinaryOperator::GtEq => BinaryOperator::LtEq,
                        other => other.clone(),
                    };
                    (flipped, n)
                } else {
                    return false;
                };
                match op {
                    BinaryOperator::LtEq => self.upper(n),
                    BinaryOperator::Lt => self.upper(n.saturating_sub(1)),
                    BinaryOperator::Eq => {
                        self.upper(n);
                        self.lower(n);
                    }
                    BinaryOperator::GtEq => self.lower(n),
                    BinaryOperator::Gt => self.lower(n.saturating_add(1)),
                    _ => return false,
                }
                self.seen = true;
                true
            }
            AstExpr::Between {
                expr,
                negated: false,
                low,
                high,
            } if is_rank_ref(expr, rn) => match (int_literal(low), int_literal(high)) {
                (Some(lo), Some(hi)) => {
                    self.lower(lo);
                    self.upper(hi);
                    self.seen = true;
                    true
                }
                _ => false,
            },
            AstExpr::Nested(inner) => self.absorb(inner, rn),
            _ => false,
        }
    }
}

/// True when the SQL text `text` contains `name` as an identifier (outside string literals).
fn mentions_identifier(text: &str, name: &str) -> bool {
    let mut chars = text.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if ch == '\'' {
            for (_, c) in chars.by_ref() {
                if c == '\'' {
                    break;
                }
            }
        } else if ch == '`' || ch == '"' {
            let start = i + 1;
            let mut end = text.len();
            for (j, c) in chars.by_ref() {
                if c == ch {
                    end = j;
                    break;
                }
            }
            if text[start..end].eq_ignore_ascii_case(name) {
                return true;
            }
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let mut end = i + ch.len_utf8();
            while let Some(&(j, c)) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    end = j + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            if text[i..end].eq_ignore_ascii_case(name) {
                return true;
            }
        }
    }
    false
}

/// Whether the outer SELECT (with the rank conditions taken out) reads the rank column.
fn reads_rank(s: &ast::Select, rest: &[AstExpr], rn: &str) -> bool {
    let mut text = String::new();
    for item in &s.projection {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => return true,
            other => text.push_str(&format!("{other} ")),
        }
    }
    for c in rest {
        text.push_str(&format!("{c} "));
    }
    text.push_str(&format!("{} ", s.group_by));
    if let Some(h) = &s.having {
        text.push_str(&format!("{h} "));
    }
    mentions_identifier(&text, rn)
}

/// The output name of the first `ROW_NUMBER() OVER (...)` item of `inner`.
fn row_number_name(inner: &ast::Select) -> Option<String> {
    inner.projection.iter().enumerate().find_map(|(pos, item)| {
        let (e, name) = match item {
            SelectItem::UnnamedExpr(e) => (e, format!("EXPR${pos}")),
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            _ => return None,
        };
        match e {
            AstExpr::Function(f) if f.over.is_some() && function_name(f) == "ROW_NUMBER" => {
                Some(name)
            }
            _ => None,
        }
    })
}

/// The last name of a column reference.
fn column_name(e: &AstExpr) -> Option<&str> {
    match e {
        AstExpr::Identifier(id) => Some(&id.value),
        AstExpr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.as_str()),
        AstExpr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

/// The `ROW_NUMBER() OVER (...)` item of a SELECT: its position, output name and window.
struct RowNumberItem<'s> {
    pos: usize,
    name: String,
    spec: &'s ast::WindowSpec,
    span: Option<std::ops::Range<usize>>,
}

impl<'a> Planner<'a> {
    fn row_number_item<'s>(&self, inner: &'s ast::Select) -> SqlResult<Option<RowNumberItem<'s>>> {
        let mut found = None;
        for (pos, item) in inner.projection.iter().enumerate() {
            let (e, name) = match item {
                SelectItem::UnnamedExpr(e) => (e, format!("EXPR${pos}")),
                SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
                _ => continue,
            };
            let AstExpr::Function(f) = e else { continue };
            if function_name(f) != "ROW_NUMBER" {
                continue;
            }
            let Some(over) = &f.over else { continue };
            let span = self.span(item);
            if found.is_some() {
                return Err(SqlError::unsupported(
                    "only one ROW_NUMBER() per SELECT is supported (Top-N)",
                )
                .with_span(span));
            }
            let WindowType::WindowSpec(spec) = over else {
                return Err(
                    SqlError::unsupported("named windows are not supported").with_span(span)
                );
            };
            if spec.window_frame.is_some() || spec.window_name.is_some() {
                return Err(SqlError::unsupported(
                    "ROW_NUMBER() takes no window frame: Top-N is PARTITION BY ... ORDER BY ...",
                )
                .with_span(span));
            }
            if spec.order_by.is_empty() {
                return Err(SqlError::validation(
                    "ROW_NUMBER() requires an ORDER BY in its OVER clause",
                )
                .with_span(span));
            }
            found = Some(RowNumberItem {
                pos,
                name,
                spec,
                span,
            });
        }
        Ok(found)
    }

    /// The rank's input: `planned` (the inner SELECT: its `visible` columns, ROW_NUMBER's
    /// placeholder among them, then the hidden PARTITION BY and ORDER BY columns) without the
    /// placeholder and without hidden columns that repeat a visible one, so that the state holds
    /// each value once. Returns it and, for each column of `planned`, where it went (`None` for
    /// the placeholder).
    fn rank_input(&mut self, planned: Rel, visible: usize) -> (Rel, Vec<Option<usize>>) {
        let exprs: Option<Vec<Expr>> = planned.calc_exprs().map(<[Expr]>::to_vec);
        let same = |a: usize, b: usize| match &exprs {
            Some(e) => e.get(a).is_some_and(|x| Some(x) == e.get(b)),
            None => false,
        };
        let mut keep: Vec<usize> = Vec::with_capacity(planned.columns.len());
        let mut slots: Vec<Option<usize>> = Vec::with_capacity(planned.columns.len());
        for (i, c) in planned.columns.iter().enumerate() {
            if i < visible {
                if c.name == RN_PLACEHOLDER {
                    slots.push(None);
                } else {
                    slots.push(Some(keep.len()));
                    keep.push(i);
                }
                continue;
            }
            match keep.iter().position(|&k| k < visible && same(k, i)) {
                Some(at) => slots.push(Some(at)),
                None => {
                    slots.push(Some(keep.len()));
                    keep.push(i);
                }
            }
        }
        let projections = keep
            .iter()
            .map(|&i| (Expr::Column(i), planned.columns[i].clone()))
            .collect();
        (self.calc(&planned, None, projections), slots)
    }

    /// Plans `s` when its FROM is a derived table, a WITH query or a view whose SELECT has
    /// `ROW_NUMBER()`, filtered by the outer WHERE (the module documentation has the shape):
    /// returns the relation of that table, ranked, and `s` with the rank conditions taken out of
    /// its WHERE. `None` when `s` has another shape.
    pub(super) fn try_plan_rank(
        &mut self,
        s: &ast::Select,
    ) -> SqlResult<Option<(Rel, ast::Select)>> {
        let [one] = s.from.as_slice() else {
            return Ok(None);
        };
        if !one.joins.is_empty() {
            return Ok(None);
        }
        let (query, qualifier, view) = match &one.relation {
            TableFactor::Derived {
                subquery, alias, ..
            } => (
                (**subquery).clone(),
                alias.as_ref().map(|a| a.name.value.clone()),
                None,
            ),
            TableFactor::Table {
                name,
                alias,
                args: None,
                version: None,
                ..
            } => {
                let n = object_name(name);
                let qualifier = Some(alias.as_ref().map_or(n.clone(), |a| a.name.value.clone()));
                let cte = self
                    .ctes
                    .iter()
                    .rev()
                    .find(|(c, _)| c.eq_ignore_ascii_case(&n))
                    .map(|(_, q)| q.clone());
                match (cte, self.catalog.get(&n)) {
                    (Some(q), _) => (q, qualifier, None),
                    (None, Some(CatalogEntry::View(v))) => {
                        ((*v.def.query).clone(), qualifier, Some(v.clone()))
                    }
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        if query.with.is_some()
            || query.order_by.is_some()
            || query.limit_clause.is_some()
            || query.fetch.is_some()
        {
            return Ok(None);
        }
        let SetExpr::Select(inner) = query.body.as_ref() else {
            return Ok(None);
        };
        let Some(rn) = row_number_name(inner.as_ref()) else {
            return Ok(None);
        };
        let range = RankRange::from_where(s.selection.as_ref(), &rn);
        if !range.seen {
            // Not a Top-N: ROW_NUMBER() is then an OVER aggregation (Flink's plan too), which
            // the regular path plans or rejects.
            return Ok(None);
        }
        let Some(end) = range.end else {
            return Err(SqlError::unsupported(NO_RANK_END).with_span(self.span(s)));
        };
        let start = range.start;
        if end < start || end < 1 {
            return Err(SqlError::validation(format!(
                "the rank range [{start}, {end}] of '{rn}' is empty"
            ))
            .with_span(self.span(s)));
        }
        let rn_read = reads_rank(s, &range.rest, &rn);
        let ranked = match view {
            None => self.plan_ranked(inner.as_ref(), start, end, rn_read)?,
            Some(v) => {
                // The view's text gives its spans: plan it with a planner over that text, as
                // `plan_named` does.
                if self.view_stack.iter().any(|n| n == &v.def.name) {
                    return Err(SqlError::validation(format!(
                        "View '{}' refers to itself",
                        v.def.name
                    ))
                    .with_span(self.span(&one.relation)));
                }
                self.view_stack.push(v.def.name.clone());
                let mut in_view = Planner {
                    sql: &v.sql,
                    catalog: self.catalog,
                    config: self.config,
                    graph: &mut *self.graph,
                    view_stack: std::mem::take(&mut self.view_stack),
                    ctes: Vec::new(),
                    validating_view: false,
                };
                let r = in_view.plan_ranked(inner.as_ref(), start, end, rn_read);
                self.view_stack = std::mem::take(&mut in_view.view_stack);
                self.view_stack.pop();
                let mut rel = r?;
                if !v.def.columns.is_empty() {
                    if v.def.columns.len() != rel.columns.len() {
                        return Err(SqlError::validation(format!(
                            "View '{}' declares {} columns but its query has {}",
                            v.def.name,
                            v.def.columns.len(),
                            rel.columns.len()
                        ))
                        .with_span(self.span(&one.relation)));
                    }
                    for (c, n) in rel.columns.iter_mut().zip(&v.def.columns) {
                        c.name = n.clone();
                    }
                }
                rel
            }
        };
        let mut derived = match qualifier.as_deref() {
            Some(q) => requalify(ranked, q),
            None => requalify_none(ranked),
        };
        if let Some(names) = tf_alias_columns(&one.relation) {
            rename_columns(&mut derived, &names, self.span(&one.relation))?;
        }
        let mut rest = s.clone();
        rest.selection = range.rest.into_iter().reduce(|a, b| AstExpr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        });
        Ok(Some((derived, rest)))
    }

    /// Checks a view's SELECT holding `ROW_NUMBER()` (the inner SELECT of a Top-N whose filter
    /// comes with the queries over the view) by planning it as a Top-1; `None` for other SELECTs.
    pub(super) fn validate_row_number_view(&mut self, s: &ast::Select) -> SqlResult<Option<Rel>> {
        if row_number_name(s).is_none() {
            return Ok(None);
        }
        self.plan_ranked(s, 1, 1, true).map(Some)
    }

    /// Plans the rank of `inner`, a SELECT with `ROW_NUMBER()`, keeping ranks `start..=end`;
    /// `rn_read` says whether the outer query reads the rank number. Returns the relation with
    /// `inner`'s columns.
    fn plan_ranked(
        &mut self,
        inner: &ast::Select,
        start: i64,
        end: i64,
        rn_read: bool,
    ) -> SqlResult<Rel> {
        let Some(item) = self.row_number_item(inner)? else {
            return Err(SqlError::internal("a Top-N SELECT lost its ROW_NUMBER()"));
        };
        if inner.distinct.is_some() {
            return Err(SqlError::unsupported(
                "SELECT DISTINCT together with ROW_NUMBER() is not supported",
            )
            .with_span(item.span.clone()));
        }

        // The inner SELECT without ROW_NUMBER, with the window's expressions as hidden columns.
        // ROW_NUMBER's place is held by a constant, so that the rank number can take its column
        // whatever wildcards come before it.
        let mut planned = inner.clone();
        planned.projection[item.pos] = SelectItem::ExprWithAlias {
            expr: AstExpr::Value(ast::Value::Number("0".into(), false).into()),
            alias: ast::Ident::new(RN_PLACEHOLDER),
        };
        let partition = &item.spec.partition_by;
        let order = &item.spec.order_by;
        for (i, e) in partition
            .iter()
            .chain(order.iter().map(|o| &o.expr))
            .enumerate()
        {
            planned.projection.push(SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: ast::Ident::new(format!("$rank{i}")),
            });
        }
        let planned = self.plan_select(&planned)?;
        let planned = self.materialize(planned)?;
        let hidden = partition.len() + order.len();
        let visible = planned.columns.len() - hidden;
        let (input, slots) = self.rank_input(planned, visible);
        let partition_cols: Vec<usize> = slots[visible..visible + partition.len()]
            .iter()
            .map(|s| s.unwrap_or(0))
            .collect();
        let mut sort = Vec::with_capacity(order.len());
        for (i, o) in order.iter().enumerate() {
            let descending = match &o.options.sort {
                Some(OrderBySort::Desc) => true,
                Some(OrderBySort::Asc) | None => false,
                Some(OrderBySort::Using(_)) => {
                    return Err(SqlError::unsupported("ORDER BY ... USING is not supported")
                        .with_span(self.span(&o.expr)))
                }
            };
            sort.push(SortField {
                col: slots[visible + partition.len() + i].unwrap_or(0),
                descending,
                // Flink sorts NULL as the smallest value unless told otherwise.
                nulls_first: o.options.nulls_first.unwrap_or(!descending),
            });
        }

        let window_col = |name: &str| {
            partition
                .iter()
                .position(|e| column_name(e).is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .map(|i| partition_cols[i])
                .filter(|&c| matches!(input.columns[c].data_type, DataType::Timestamp(_)))
        };
        let window = match (window_col("window_start"), window_col("window_end")) {
            (Some(ws), Some(we)) if input.append_only => Some((ws, we)),
            _ => None,
        };
        let single_rank = start == end;
        let rowtime_order = sort.len() == 1 && input.columns[sort[0].col].rowtime;
        let partition_text = partition
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let order_text = order
            .iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let (p, part) = if partition_cols.is_empty() {
            (1, Partitioning::Global)
        } else {
            (
                self.parallelism(),
                Partitioning::Hash(partition_cols.clone()),
            )
        };

        let (node, output_rank, append_only) = if let Some((ws, we)) = window {
            let output_rank = rn_read && !single_rank;
            // Rank 1 by one timestamp: Flink's window deduplication, where the last arrival
            // among equal times wins when keeping the last row.
            let dedup = single_rank
                && start == 1
                && sort.len() == 1
                && matches!(
                    input.columns[sort[0].col].data_type,
                    DataType::Timestamp(_) | DataType::TimestampLtz(_)
                );
            let last_on_ties = dedup && sort[0].descending;
            let spec = WindowRankSpec {
                partition_cols: partition_cols.clone(),
                window_start_col: ws,
                window_end_col: we,
                order: sort,
                rank_start: start,
                rank_end: end,
                output_rank,
                last_on_ties,
            };
            let (name, description) = if dedup {
                (
                    "WindowDeduplicate",
                    format!(
                        "keep=[{}], partitionBy=[{partition_text}], orderBy=[{order_text}]",
                        if last_on_ties { "LastRow" } else { "FirstRow" }
                    ),
                )
            } else {
                (
                    "WindowRank",
                    format!(
                        "rankRange=[rankStart={start}, rankEnd={end}], partitionBy=[{partition_text}], orderBy=[{order_text}]"
                    ),
                )
            };
            let columns = rank_columns(&input, output_rank, &item.name);
            let node = self.graph.add_node(
                name,
                description,
                p,
                schema_of(&columns),
                op_factory(move |ctx| {
                    Ok(Box::new(WindowRank::new(spec.clone(), ctx)?) as Box<dyn Operator>)
                }),
                &[(input.node, part)],
            );
            (node, output_rank, true)
        } else if single_rank && start == 1 && rowtime_order && input.append_only {
            let keep_last = sort[0].descending;
            let spec = DeduplicateSpec {
                key_cols: partition_cols.clone(),
                time_col: sort[0].col,
                keep_last,
            };
            let columns = rank_columns(&input, false, &item.name);
            let node = self.graph.add_node(
                "Deduplicate",
                format!(
                    "keep=[{}], key=[{}], order=[ROWTIME]",
                    if keep_last { "LastRow" } else { "FirstRow" },
                    partition_text
                ),
                p,
                schema_of(&columns),
                op_factory(move |ctx| {
                    Ok(Box::new(Deduplicate::new(spec.clone(), ctx)?) as Box<dyn Operator>)
                }),
                &[(input.node, part)],
            );
            (node, false, !keep_last)
        } else {
            let output_rank = rn_read && !single_rank;
            let spec = RankSpec {
                partition_cols: partition_cols.clone(),
                order: sort,
                rank_start: start,
                rank_end: end,
                output_rank,
                input_append_only: input.append_only,
            };
            let columns = rank_columns(&input, output_rank, &item.name);
            let node = self.graph.add_node(
                "Rank",
                format!(
                    "strategy=[{}], rankType=[ROW_NUMBER], rankRange=[rankStart={start}, rankEnd={end}], partitionBy=[{}], orderBy=[{order_text}], select=[{}]",
                    if input.append_only { "AppendFastStrategy" } else { "RetractStrategy" },
                    partition_text,
                    columns
                        .iter()
                        .filter(|c| !c.name.starts_with("$rank"))
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                p,
                schema_of(&columns),
                op_factory(move |ctx| {
                    Ok(Box::new(Rank::new(spec.clone(), ctx)?) as Box<dyn Operator>)
                }),
                &[(input.node, part)],
            );
            (node, output_rank, false)
        };

        // The derived table's columns: the visible ones, with rn back at its place.
        let ranked = Rel::new(
            node,
            rank_columns(&input, output_rank, &item.name),
            append_only,
            p,
        );
        let rn_expr = if output_rank {
            Expr::Column(input.columns.len())
        } else {
            Expr::Literal(Value::BigInt(start))
        };
        let rn_col = ScopeColumn {
            qualifier: None,
            name: item.name.clone(),
            data_type: DataType::BigInt,
            rowtime: false,
        };
        let projections: Vec<(Expr, ScopeColumn)> = slots[..visible]
            .iter()
            .map(|slot| match slot {
                None => (rn_expr.clone(), rn_col.clone()),
                Some(i) => {
                    let mut c = input.columns[*i].clone();
                    c.rowtime &= append_only;
                    (Expr::Column(*i), c)
                }
            })
            .collect();
        Ok(self.calc(&ranked, None, projections))
    }
}

/// The columns a rank emits: its input's, then the rank number when it computes it.
fn rank_columns(input: &Rel, output_rank: bool, rn: &str) -> Vec<ScopeColumn> {
    let mut columns: Vec<ScopeColumn> = input
        .columns
        .iter()
        .map(|c| ScopeColumn {
            rowtime: false,
            ..c.clone()
        })
        .collect();
    if output_rank {
        columns.push(ScopeColumn {
            qualifier: None,
            name: rn.to_string(),
            data_type: DataType::BigInt,
            rowtime: false,
        });
    }
    columns
}

#[cfg(test)]
mod tests {
    use streamsql_engine::config::Configuration;

    use super::mentions_identifier;
    use crate::session::{SqlSession, StatementOutput};

    const TABLE: &str = "CREATE TABLE t (k INT, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'datagen');";

    /// The plan of `query` over table `t`, or the error message.
    fn explain(query: &str) -> Result<String, String> {
        let mut s = SqlSession::new(Configuration::new());
        match s.execute_script(&format!("{TABLE} EXPLAIN {query}")) {
            Ok(result) => Ok(result
                .outputs
                .iter()
                .filter_map(|o| match o {
                    StatementOutput::Explain(p) => Some(p.clone()),
                    _ => None,
                })
                .collect()),
            Err(e) => Err(e.message.clone()),
        }
    }

    fn ranked(filter: &str) -> String {
        explain(&format!(
            "SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE {filter}"
        ))
        .unwrap_or_else(|e| e)
    }

    #[test]
    fn the_rank_range_comes_from_the_conjuncts_on_rn() {
        for (filter, range) in [
            ("rn <= 3", "rankStart=1, rankEnd=3"),
            ("rn < 3", "rankStart=1, rankEnd=2"),
            ("3 >= rn", "rankStart=1, rankEnd=3"),
            ("rn = 2", "rankStart=2, rankEnd=2"),
            ("rn BETWEEN 2 AND 4", "rankStart=2, rankEnd=4"),
            ("rn > 1 AND rn <= 5 AND rn < 4", "rankStart=2, rankEnd=3"),
            ("(rn <= 2) AND k > 0", "rankStart=1, rankEnd=2"),
        ] {
            let plan = ranked(filter);
            assert!(plan.contains(range), "{filter}: {plan}");
        }
        // Other conjuncts stay in a Calc after the rank.
        assert!(ranked("rn <= 2 AND k > 0").contains("where=[>(k, 0)]"));
    }

    #[test]
    fn top_n_needs_an_upper_bound_and_a_filter() {
        assert!(ranked("rn > 2").starts_with("Rank end is not specified"));
        assert!(ranked("rn <= 0").contains("is empty"));
        // Without a bound on rn it is no Top-N but an OVER aggregation.
        assert!(ranked("k > 2").contains("OVER windows (ROW_NUMBER ... OVER)"));
        assert!(ranked("rn <= 2 OR k = 1").contains("OVER windows (ROW_NUMBER ... OVER)"));
    }

    #[test]
    fn rowtime_rank_one_is_a_deduplication() {
        let q = |order: &str, filter: &str| {
            explain(&format!(
                "SELECT k FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY {order}) AS rn FROM t) WHERE {filter}"
            ))
            .unwrap()
        };
        assert!(q("ts", "rn = 1").contains("Deduplicate(parallelism=1): keep=[FirstRow]"));
        assert!(q("ts DESC", "rn <= 1").contains("keep=[LastRow]"));
        assert!(q("ts DESC", "rn <= 2").contains("Rank("));
        assert!(q("v", "rn = 1").contains("Rank("));
        assert!(q("ts, v", "rn = 1").contains("Rank("));
    }

    #[test]
    fn the_rank_number_is_computed_only_when_read() {
        let q = |select: &str, filter: &str| {
            explain(&format!(
                "SELECT {select} FROM (SELECT k, ROW_NUMBER() OVER (ORDER BY v) AS rn FROM t) WHERE {filter}"
            ))
            .unwrap()
        };
        assert!(q("k, rn", "rn <= 2").contains("select=[k, rn]"));
        assert!(q("*", "rn <= 2").contains("select=[k, rn]"));
        assert!(q("k", "rn <= 2").contains("select=[k]"));
        // A single rank is a constant.
        assert!(q("k, rn", "rn = 2").contains("select=[k]"));
        // No partition key: one subtask, all rows to it.
        assert!(q("k", "rn <= 2").contains("GLOBAL"));
    }

    #[test]
    fn identifiers_are_found_outside_string_literals() {
        assert!(mentions_identifier("a, rn + 1", "rn"));
        assert!(mentions_identifier("a, `RN`", "rn"));
        assert!(!mentions_identifier("a, 'rn', rnx, xrn", "rn"));
        assert!(mentions_identifier("t.rn", "rn"));
    }
}
