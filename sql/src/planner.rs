//! Lowering queries to the engine's dataflow graph.
//!
//! A query is planned bottom-up into [`Rel`]s: a graph node plus the columns it emits, whether its
//! stream is append-only, and its parallelism. Each SELECT becomes at most: a `Calc` (filter and
//! the expressions the aggregation needs), an exchange by key, an aggregate, and a `Calc` (HAVING
//! and the final projection). New relational operators (joins, Top-N, OVER) add a lowering arm in
//! `plan_table_factor` / `plan_select` and an operator in the engine.

use std::sync::Arc;

use sqlparser::ast::{
    self, Expr as AstExpr, GroupByExpr, Query, SelectItem, SetExpr, SetOperator, SetQuantifier,
    TableFactor,
};
use streamsql_engine::agg::AggCall;
use streamsql_engine::config::Configuration;
use streamsql_engine::connectors::chain::ChainedSourceFactory;
use streamsql_engine::connectors::options::Options;
use streamsql_engine::connectors::registry;
use streamsql_engine::expr::Expr;
use streamsql_engine::graph::{DataflowGraph, NodeKind, Partitioning};
use streamsql_engine::operator::{Operator, OperatorFactory, TaskContext};
use streamsql_engine::operators::calc::{Calc, Union};
use streamsql_engine::operators::group_agg::{GroupAggregate, GroupAggregateSpec};
use streamsql_engine::operators::watermark_assigner::WatermarkAssigner;
use streamsql_engine::operators::window_agg::{WindowAggSpec, WindowAggregate};
use streamsql_engine::operators::window_tvf::{WindowTableFunction, WindowTvfSpec};
use streamsql_engine::types::{DataType, Field, Schema};
use streamsql_engine::value::Value;
use streamsql_engine::window::WindowKind;

use crate::ast::{ColumnKind, WindowKind as TvfKind};
use crate::binder::{
    contains_aggregate, function_args, function_name, AggContext, Bound, ExprBinder,
    GroupWindowRef, Scope, ScopeColumn, AGG_BASE, WINDOW_BASE,
};
use crate::catalog::{Catalog, CatalogEntry, TableEntry};
use crate::error::{did_you_mean, SqlError, SqlResult};
use crate::span::range_of_node;

#[path = "plan_chain.rs"]
mod plan_chain;
#[path = "plan_over.rs"]
mod plan_over;
#[path = "plan_rank.rs"]
mod plan_rank;

/// A planned relation: the node that emits it and what it emits.
#[derive(Clone, Debug)]
pub struct Rel {
    pub node: usize,
    pub columns: Vec<ScopeColumn>,
    /// Only `+I` rows (no updates or deletes).
    pub append_only: bool,
    pub parallelism: usize,
    /// A window TVF whose window columns are not computed yet (see `PendingWindow`).
    pub pending_window: Option<PendingWindow>,
    /// Set when the node is a `Calc` the planner made: what it computes, so that a `Calc` planned
    /// on top of it can be fused into one.
    pub calc: Option<Box<CalcInfo>>,
    /// Set when the node is a table's source task: what is chained onto the source, so that a
    /// `Calc` planned on top of it joins the chain.
    pub chain: Option<Box<ScanChain>>,
    /// Set when the node is a regular or interval join the planner made: how, so that a `Calc`
    /// on top of it that reads only some of its columns can have the join planned again over
    /// only those (and its keys and condition).
    pub(crate) join: Option<Box<crate::plan_join::JoinInfo>>,
}

impl Rel {
    /// The relation `node` emits: no pending window, and no Calc, source chain or join the
    /// planner could still fuse into.
    pub fn new(
        node: usize,
        columns: Vec<ScopeColumn>,
        append_only: bool,
        parallelism: usize,
    ) -> Self {
        Rel {
            node,
            columns,
            append_only,
            parallelism,
            pending_window: None,
            calc: None,
            chain: None,
            join: None,
        }
    }

    /// The expressions of the Calc that computes this relation, when the planner made one (a
    /// `Calc` node, or the last operator chained onto a source).
    pub fn calc_exprs(&self) -> Option<&[Expr]> {
        if let Some(c) = &self.calc {
            return Some(&c.exprs);
        }
        match self.chain.as_deref() {
            Some(chain) if chain.node == self.node => match chain.stages.last() {
                Some(ChainStage::Calc { exprs, .. }) => Some(exprs),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A table's source task as it is planned: the source, then the stateless operators chained
/// onto it in the same task (computed columns, watermark assigner, the Calcs above them).
#[derive(Clone)]
pub struct ScanChain {
    /// The graph node (the newest node while the chain grows).
    pub node: usize,
    pub source: Arc<dyn streamsql_engine::connectors::SourceFactory>,
    pub table: String,
    pub connector: String,
    /// The table's options, as written (for the chain's digest).
    pub options: Vec<(String, String)>,
    /// The source's columns.
    pub physical: Vec<ScopeColumn>,
    /// Equalities on source columns the source applies itself (filter pushdown).
    pub filters: Vec<(usize, Value)>,
    /// Whether `node` is in the graph yet.
    pub placed: bool,
    pub stages: Vec<ChainStage>,
}

impl std::fmt::Debug for ScanChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanChain")
            .field("node", &self.node)
            .field("table", &self.table)
            .field("stages", &self.stages)
            .finish()
    }
}

/// One operator chained onto a source.
#[derive(Clone, Debug)]
pub enum ChainStage {
    Calc {
        filter: Option<Expr>,
        exprs: Vec<Expr>,
        /// The columns it reads (for EXPLAIN and for fusing the next Calc into it).
        input: Vec<ScopeColumn>,
        /// The columns it emits.
        output: Vec<ScopeColumn>,
    },
    Watermark {
        expr: Expr,
        interval_ms: i64,
        idle_ms: i64,
        description: String,
    },
}

impl ChainStage {
    fn explain(&self) -> (String, String) {
        match self {
            ChainStage::Calc {
                filter,
                exprs,
                input,
                ..
            } => (
                "Calc".into(),
                calc_description(filter.as_ref(), exprs, input),
            ),
            ChainStage::Watermark { description, .. } => {
                ("WatermarkAssigner".into(), description.clone())
            }
        }
    }

    /// What the operator computes, without column names.
    fn digest(&self) -> String {
        match self {
            ChainStage::Calc { filter, exprs, .. } => format!("Calc|{filter:?}|{exprs:?}"),
            ChainStage::Watermark {
                expr,
                interval_ms,
                idle_ms,
                ..
            } => format!("Watermark|{expr:?}|{interval_ms}|{idle_ms}"),
        }
    }

    fn factory(&self) -> Arc<dyn OperatorFactory> {
        match self.clone() {
            ChainStage::Calc { filter, exprs, .. } => Arc::new(move |_: &TaskContext| {
                Ok(Box::new(Calc::new(filter.clone(), exprs.clone())) as Box<dyn Operator>)
            }),
            ChainStage::Watermark {
                expr,
                interval_ms,
                idle_ms,
                ..
            } => Arc::new(move |_: &TaskContext| {
                Ok(
                    Box::new(WatermarkAssigner::new(expr.clone(), interval_ms, idle_ms))
                        as Box<dyn Operator>,
                )
            }),
        }
    }
}

/// What EXPLAIN shows for a Calc.
fn calc_description(filter: Option<&Expr>, exprs: &[Expr], input: &[ScopeColumn]) -> String {
    match filter {
        Some(f) => format!(
            "select=[{}], where=[{}]",
            describe_exprs(exprs, input),
            describe_exprs(std::slice::from_ref(f), input)
        ),
        None => format!("select=[{}]", describe_exprs(exprs, input)),
    }
}

/// Whether a Calc computing `projections` and `filter` can be fused into the Calc below it,
/// which computes `below`: no expression of `below` but a column or literal would be evaluated
/// more often than before.
fn fusable(below: &[Expr], filter: Option<&Expr>, projections: &[(Expr, ScopeColumn)]) -> bool {
    let mut counts = vec![0usize; below.len()];
    for (e, _) in projections {
        count_columns(e, &mut counts);
    }
    if let Some(f) = filter {
        count_columns(f, &mut counts);
    }
    // A column, a literal or a field of a ROW column (read in place).
    let cheap = |e: &Expr| match e {
        Expr::Column(_) | Expr::Literal(_) => true,
        Expr::Call {
            func: streamsql_engine::expr::ScalarFunction::RowField(_),
            args,
            ..
        } => matches!(args.as_slice(), [Expr::Column(_)]),
        _ => false,
    };
    counts.iter().zip(below).all(|(n, e)| *n <= 1 || cheap(e))
}

/// `filter` and `projections` over the output of a Calc computing `below` (with `below_filter`)
/// as one Calc over that Calc's input.
fn fuse(
    below_filter: Option<Expr>,
    below: &[Expr],
    filter: Option<Expr>,
    projections: Vec<(Expr, ScopeColumn)>,
) -> (Option<Expr>, Vec<(Expr, ScopeColumn)>) {
    let filter = match (below_filter, filter.map(|f| substitute(&f, below))) {
        (Some(a), Some(b)) => Some(Expr::And(vec![a, b])),
        (a, b) => a.or(b),
    };
    let projections = projections
        .into_iter()
        .map(|(e, c)| (substitute(&e, below), c))
        .collect();
    (filter, projections)
}

/// The definition of a planner-made `Calc` node.
#[derive(Clone, Debug)]
pub struct CalcInfo {
    pub input: Rel,
    pub filter: Option<Expr>,
    pub exprs: Vec<Expr>,
}

/// Replaces every `Column(i)` of `e` with `inputs[i]`.
fn substitute(e: &Expr, inputs: &[Expr]) -> Expr {
    let replaced = e.rewrite::<std::convert::Infallible>(&mut |x| {
        Ok(match x {
            Expr::Column(i) => Some(
                inputs
                    .get(*i)
                    .cloned()
                    .unwrap_or(Expr::Literal(Value::Null)),
            ),
            _ => None,
        })
    });
    match replaced {
        Ok(x) => x,
        Err(never) => match never {},
    }
}

/// How often each input column is read by `e`.
fn count_columns(e: &Expr, counts: &mut [usize]) {
    e.for_each_column(&mut |i| {
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    });
}

/// `TABLE(TUMBLE(...))` before it is known whether an aggregation will absorb it: the last three
/// columns of the relation (window_start, window_end, window_time) are virtual until
/// [`Planner::materialize`] computes them.
#[derive(Clone, Debug)]
pub struct PendingWindow {
    pub kind: WindowKind,
    pub time_col: usize,
    pub time_type: DataType,
    pub partition_keys: Vec<usize>,
}

impl Rel {
    pub fn scope(&self) -> Scope {
        Scope {
            columns: self.columns.clone(),
        }
    }

    pub fn schema(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name.clone(), c.data_type.clone()))
                .collect(),
        )
    }

    fn base_len(&self) -> usize {
        self.columns.len() - if self.pending_window.is_some() { 3 } else { 0 }
    }
}

/// Plans queries of one job into a shared graph.
pub struct Planner<'a> {
    pub sql: &'a str,
    pub catalog: &'a Catalog,
    pub config: &'a Configuration,
    pub graph: &'a mut DataflowGraph,
    /// Views being expanded, to reject cycles.
    view_stack: Vec<String>,
    /// `WITH` queries visible to the query being planned.
    ctes: Vec<(String, Query)>,
    /// Set while a CREATE VIEW is validated: its top SELECT may hold a bare `ROW_NUMBER()`,
    /// which only a query over the view filters into a Top-N (see `plan_rank`).
    pub validating_view: bool,
}

pub(crate) fn op_factory<F>(f: F) -> NodeKind
where
    F: Fn(&TaskContext) -> streamsql_engine::Result<Box<dyn Operator>> + Send + Sync + 'static,
{
    NodeKind::Operator(Arc::new(f) as Arc<dyn OperatorFactory>)
}

/// The expressions of a Calc as EXPLAIN shows them, with input columns by name.
pub(crate) fn describe_exprs(exprs: &[Expr], input: &[ScopeColumn]) -> String {
    let mut out = String::new();
    for (i, e) in exprs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        describe_expr(&mut out, e, input);
    }
    out
}

/// The SQL name of a scalar function in EXPLAIN: operators by their symbol, other functions by
/// their variant name in upper snake case (`CharLength` is `CHAR_LENGTH`).
fn scalar_name(f: &streamsql_engine::expr::ScalarFunction) -> String {
    use streamsql_engine::expr::functions::CmpOp;
    use streamsql_engine::expr::ScalarFunction as F;
    let symbol = match f {
        F::Add(_) | F::AddTemporal => "+",
        F::Sub(_) | F::SubTemporal => "-",
        F::Mul(_) | F::MulInterval => "*",
        F::Div(_) | F::DivInterval => "/",
        F::Mod(_) => "MOD",
        F::Neg(_) | F::NegInterval => "-",
        F::Cmp(CmpOp::Eq) => "=",
        F::Cmp(CmpOp::NotEq) => "<>",
        F::Cmp(CmpOp::Lt) => "<",
        F::Cmp(CmpOp::LtEq) => "<=",
        F::Cmp(CmpOp::Gt) => ">",
        F::Cmp(CmpOp::GtEq) => ">=",
        F::Concat => "||",
        F::Like(_) => "LIKE",
        F::SimilarTo(_) => "SIMILAR TO",
        other => {
            let debug = format!("{other:?}");
            let name = debug.split('(').next().unwrap_or_default();
            let mut out = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            return out;
        }
    };
    symbol.to_string()
}

/// Appends `e` in Calcite's prefix form (`>(qty, 2)`), input columns by name.
fn describe_expr(out: &mut String, e: &Expr, input: &[ScopeColumn]) {
    let list = |out: &mut String, name: &str, items: &[Expr]| {
        out.push_str(name);
        out.push('(');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            describe_expr(out, x, input);
        }
        out.push(')');
    };
    match e {
        Expr::Column(i) => match input.get(*i) {
            Some(c) => out.push_str(&c.name),
            None => out.push_str(&format!("${i}")),
        },
        Expr::Literal(Value::Null) => out.push_str("null"),
        Expr::Literal(v @ Value::String(_)) => {
            out.push('\'');
            streamsql_engine::expr::format::write_value(out, v, &DataType::STRING);
            out.push('\'');
        }
        Expr::Literal(v) => {
            // Only temporal values look at the type, for their fraction digits.
            let ty = match v {
                Value::Time(_) => DataType::Time(0),
                _ => DataType::Timestamp(3),
            };
            streamsql_engine::expr::format::write_value(out, v, &ty);
        }
        Expr::Call {
            func: streamsql_engine::expr::ScalarFunction::RowField(f),
            args,
            ..
        } if args.len() == 1 => {
            // `col.field`, as Flink shows a field access.
            describe_expr(out, &args[0], input);
            let name = match &args[0] {
                Expr::Column(c) => match input.get(*c).map(|c| &c.data_type) {
                    Some(DataType::Row(fields)) => fields.get(*f).map(|x| x.name.clone()),
                    _ => None,
                },
                _ => None,
            };
            out.push('.');
            out.push_str(&name.unwrap_or_else(|| format!("${f}")));
        }
        Expr::Call { func, args, .. } => list(out, &scalar_name(func), args),
        Expr::Cast { expr, to, safe, .. } => {
            out.push_str(if *safe { "TRY_CAST(" } else { "CAST(" });
            describe_expr(out, expr, input);
            out.push_str(&format!(" AS {to})"));
        }
        Expr::And(v) => list(out, "AND", v),
        Expr::Or(v) => list(out, "OR", v),
        Expr::Coalesce(v) => list(out, "COALESCE", v),
        Expr::Not(x) => list(out, "NOT", std::slice::from_ref(x)),
        Expr::IsNull(x) => list(out, "IS NULL", std::slice::from_ref(x)),
        Expr::IsNotNull(x) => list(out, "IS NOT NULL", std::slice::from_ref(x)),
        Expr::Case { whens, otherwise } => {
            out.push_str("CASE(");
            for (i, (c, t)) in whens.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                describe_expr(out, c, input);
                out.push_str(", ");
                describe_expr(out, t, input);
            }
            if let Some(o) = otherwise {
                out.push_str(", ");
                describe_expr(out, o, input);
            }
            out.push(')');
        }
        Expr::In {
            expr,
            list: items,
            negated,
        } => {
            let mut all = vec![(**expr).clone()];
            all.extend(items.iter().cloned());
            list(out, if *negated { "NOT IN" } else { "IN" }, &all);
        }
    }
}

/// A window as EXPLAIN shows it, sizes in milliseconds: `TUMBLE(size=[10000 ms])`.
fn describe_window(w: &WindowKind) -> String {
    let offset = |o: i64| {
        if o == 0 {
            String::new()
        } else {
            format!(", offset=[{o} ms]")
        }
    };
    match w {
        WindowKind::Tumble { size, offset: o } => {
            format!("TUMBLE(size=[{size} ms]{})", offset(*o))
        }
        WindowKind::Hop {
            size,
            slide,
            offset: o,
        } => format!("HOP(slide=[{slide} ms], size=[{size} ms]{})", offset(*o)),
        WindowKind::Cumulate {
            max_size,
            step,
            offset: o,
        } => format!(
            "CUMULATE(max_size=[{max_size} ms], step=[{step} ms]{})",
            offset(*o)
        ),
        WindowKind::Session { gap } => format!("SESSION(gap=[{gap} ms])"),
    }
}

/// An aggregate call as EXPLAIN shows it: `COUNT(*)`, `SUM(qty)`, `COUNT(DISTINCT customer)`.
fn describe_agg(a: &AggCall, input: &[ScopeColumn]) -> String {
    let arg = match a.arg {
        None => "*".to_string(),
        Some(i) => input
            .get(i)
            .map_or_else(|| format!("${i}"), |c| c.name.clone()),
    };
    let distinct = if a.distinct { "DISTINCT " } else { "" };
    format!("{}({distinct}{arg})", a.kind.name())
}

impl<'a> Planner<'a> {
    pub fn new(
        sql: &'a str,
        catalog: &'a Catalog,
        config: &'a Configuration,
        graph: &'a mut DataflowGraph,
    ) -> Self {
        Planner {
            sql,
            catalog,
            config,
            graph,
            view_stack: Vec::new(),
            ctes: Vec::new(),
            validating_view: false,
        }
    }

    pub(crate) fn parallelism(&self) -> usize {
        self.config.parallelism().max(1)
    }

    pub(crate) fn span(&self, node: &impl ast::Spanned) -> Option<std::ops::Range<usize>> {
        range_of_node(self.sql, node)
    }

    /// A Calc over `rel`: optional filter, then projections. Returns `rel` itself when the calc
    /// would be the identity.
    pub fn calc(
        &mut self,
        rel: &Rel,
        filter: Option<Expr>,
        projections: Vec<(Expr, ScopeColumn)>,
    ) -> Rel {
        // Fuse with the Calc below when nothing else reads it yet (it is the newest node) and no
        // expression of it would be evaluated more often than before.
        if let Some(below) = rel.calc.as_deref() {
            if rel.node + 1 == self.graph.nodes.len()
                && rel.pending_window.is_none()
                && fusable(&below.exprs, filter.as_ref(), &projections)
            {
                let below = below.clone();
                let (filter, projections) = fuse(below.filter, &below.exprs, filter, projections);
                self.graph.nodes.pop();
                let popped = self.graph.nodes.len();
                self.graph.edges.retain(|e| e.to != popped);
                return self.calc(&below.input, filter, projections);
            }
        }
        // Over a join nothing else reads yet, plan the join again over only the columns read.
        if rel.join.is_some() && rel.pending_window.is_none() {
            let mut used = vec![false; rel.columns.len()];
            for e in projections.iter().map(|(e, _)| e).chain(filter.as_ref()) {
                e.for_each_column(&mut |c| {
                    if let Some(u) = used.get_mut(c) {
                        *u = true;
                    }
                });
            }
            if let Some((joined, positions)) = self.prune_join(rel, &used) {
                let remap = |e: &Expr| {
                    substitute(
                        e,
                        &positions
                            .iter()
                            .map(|p| p.map_or(Expr::Literal(Value::Null), Expr::Column))
                            .collect::<Vec<_>>(),
                    )
                };
                let filter = filter.as_ref().map(remap);
                let projections = projections
                    .iter()
                    .map(|(e, c)| (remap(e), c.clone()))
                    .collect();
                return self.calc(&joined, filter, projections);
            }
        }
        let identity = filter.is_none()
            && projections.len() == rel.columns.len()
            && projections
                .iter()
                .enumerate()
                .all(|(i, (e, c))| *e == Expr::Column(i) && c.name == rel.columns[i].name);
        if identity && rel.pending_window.is_none() {
            let mut r = rel.clone();
            for (i, (_, c)) in projections.into_iter().enumerate() {
                r.columns[i] = c;
            }
            return r;
        }
        // Chain onto a source task nothing else reads yet. Over a pending window TVF only when
        // no window column is read: those are not computed yet.
        if let Some(chain) = rel.chain.as_deref() {
            let width = self.graph.nodes[rel.node].schema.fields.len();
            let mut reads_virtual = false;
            for e in projections.iter().map(|(e, _)| e).chain(filter.as_ref()) {
                e.for_each_column(&mut |c| reads_virtual |= c >= width);
            }
            let unread = !self
                .graph
                .edges
                .iter()
                .any(|e| e.from == rel.node || e.to == rel.node);
            if chain.node == rel.node
                && rel.node < self.graph.nodes.len()
                && unread
                && !reads_virtual
            {
                let mut chain = chain.clone();
                let (filter, projections, input) = match chain.stages.last() {
                    Some(ChainStage::Calc {
                        filter: below_filter,
                        exprs,
                        input,
                        ..
                    }) if fusable(exprs, filter.as_ref(), &projections) => {
                        let (f, p) = fuse(below_filter.clone(), exprs, filter, projections);
                        let input = input.clone();
                        chain.stages.pop();
                        (f, p, input)
                    }
                    _ => (filter, projections, rel.columns.clone()),
                };
                let exprs: Vec<Expr> = projections.iter().map(|(e, _)| e.clone()).collect();
                let columns: Vec<ScopeColumn> = projections.into_iter().map(|(_, c)| c).collect();
                // A Calc that fused into an identity over its input goes away.
                let identity = filter.is_none()
                    && exprs.len() == input.len()
                    && exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i));
                if !identity {
                    chain.stages.push(ChainStage::Calc {
                        filter,
                        exprs,
                        input,
                        output: columns.clone(),
                    });
                }
                let node = self.add_chain(chain, &columns);
                return Rel {
                    node: node.node,
                    columns,
                    append_only: rel.append_only,
                    parallelism: rel.parallelism,
                    pending_window: None,
                    calc: None,
                    chain: Some(Box::new(node)),
                    join: None,
                };
            }
        }
        let exprs: Vec<Expr> = projections.iter().map(|(e, _)| e.clone()).collect();
        let columns: Vec<ScopeColumn> = projections.into_iter().map(|(_, c)| c).collect();
        let description = calc_description(filter.as_ref(), &exprs, &rel.columns);
        let schema = schema_of(&columns);
        let f2 = filter.clone();
        let info = CalcInfo {
            input: Rel {
                calc: None,
                chain: None,
                join: None,
                ..rel.clone()
            },
            filter,
            exprs: exprs.clone(),
        };
        let digest = format!("Calc|{:?}|{:?}", info.filter, info.exprs);
        let node = self.graph.add_node(
            "Calc",
            description,
            rel.parallelism,
            schema,
            op_factory(move |_| {
                Ok(Box::new(Calc::new(f2.clone(), exprs.clone())) as Box<dyn Operator>)
            }),
            &[(rel.node, Partitioning::Forward)],
        );
        self.graph.set_digest(node, digest);
        Rel {
            node,
            columns,
            append_only: rel.append_only,
            parallelism: rel.parallelism,
            pending_window: None,
            calc: Some(Box::new(info)),
            chain: None,
            join: None,
        }
    }

    /// Plans a query.
    pub fn plan_query(&mut self, q: &Query) -> SqlResult<Rel> {
        let saved = self.ctes.len();
        if let Some(with) = &q.with {
            if with.recursive {
                return Err(SqlError::unsupported("WITH RECURSIVE is not supported")
                    .with_span(self.span(q)));
            }
            for cte in &with.cte_tables {
                self.ctes
                    .push((cte.alias.name.value.clone(), (*cte.query).clone()));
            }
        }
        if q.order_by.is_some() {
            self.ctes.truncate(saved);
            return Err(SqlError::unsupported(
                "ORDER BY is not supported on streaming queries yet (Flink supports it only on a time attribute ascending or with LIMIT as Top-N)",
            )
            .with_span(self.span(q)));
        }
        if q.limit_clause.is_some() || q.fetch.is_some() {
            self.ctes.truncate(saved);
            return Err(SqlError::unsupported("LIMIT is not supported yet").with_span(self.span(q)));
        }
        let r = self.plan_set_expr(&q.body);
        self.ctes.truncate(saved);
        let rel = r?;
        self.materialize(rel)
    }

    fn plan_set_expr(&mut self, body: &SetExpr) -> SqlResult<Rel> {
        match body {
            SetExpr::Select(s) => self.plan_select(s),
            SetExpr::Query(q) => self.plan_query(q),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let span = self.span(body);
                if *op != SetOperator::Union {
                    return Err(
                        SqlError::unsupported(format!("{op} is not supported yet")).with_span(span)
                    );
                }
                let l = self.plan_set_expr(left)?;
                let l = self.materialize(l)?;
                let r = self.plan_set_expr(right)?;
                let r = self.materialize(r)?;
                let union = self.union_all(vec![l, r], span)?;
                match set_quantifier {
                    SetQuantifier::All => Ok(union),
                    _ => self.distinct(union),
                }
            }
            SetExpr::Values(v) => self.plan_values(v, self.span(body)),
            other => Err(
                SqlError::unsupported(format!("query form '{other}' is not supported"))
                    .with_span(self.span(other)),
            ),
        }
    }

    fn union_all(
        &mut self,
        inputs: Vec<Rel>,
        span: Option<std::ops::Range<usize>>,
    ) -> SqlResult<Rel> {
        let width = inputs[0].columns.len();
        if inputs.iter().any(|r| r.columns.len() != width) {
            return Err(SqlError::validation(
                "Set operator cannot combine inputs with different numbers of columns",
            )
            .with_span(span));
        }
        let mut types: Vec<DataType> = inputs[0]
            .columns
            .iter()
            .map(|c| c.data_type.clone())
            .collect();
        for r in &inputs[1..] {
            for (i, c) in r.columns.iter().enumerate() {
                types[i] = streamsql_engine::expr::coerce::common_type(&types[i], &c.data_type)
                    .ok_or_else(|| {
                        SqlError::validation(format!(
                            "Type mismatch in column {} of UNION ALL: {} and {}",
                            i + 1,
                            types[i],
                            c.data_type
                        ))
                        .with_span(span.clone())
                    })?;
            }
        }
        // A column stays a time attribute when it is one, of the same type, in every input
        // (Flink keeps the rowtime through UNION ALL; the watermark is the inputs' minimum).
        let rowtime: Vec<bool> = (0..width)
            .map(|i| {
                inputs
                    .iter()
                    .all(|r| r.columns[i].rowtime && r.columns[i].data_type == types[i])
            })
            .collect();
        let p = inputs.iter().map(|r| r.parallelism).max().unwrap_or(1);
        let mut sources = Vec::new();
        let mut append_only = true;
        for r in &inputs {
            append_only &= r.append_only;
            let projections = r
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let b = crate::binder::cast_to(
                        Bound {
                            expr: Expr::Column(i),
                            ty: c.data_type.clone(),
                        },
                        &types[i],
                    );
                    (
                        b.expr,
                        ScopeColumn {
                            data_type: types[i].clone(),
                            rowtime: rowtime[i],
                            ..c.clone()
                        },
                    )
                })
                .collect();
            let casted = self.calc(r, None, projections);
            let part = if casted.parallelism == p {
                Partitioning::Forward
            } else {
                Partitioning::Rebalance
            };
            sources.push((casted.node, part));
        }
        let columns: Vec<ScopeColumn> = inputs[0]
            .columns
            .iter()
            .zip(&types)
            .zip(&rowtime)
            .map(|((c, t), r)| ScopeColumn {
                qualifier: None,
                name: c.name.clone(),
                data_type: t.clone(),
                rowtime: *r,
            })
            .collect();
        let node = self.graph.add_node(
            "Union",
            format!(
                "union=[{}]",
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            p,
            schema_of(&columns),
            op_factory(|_| Ok(Box::new(Union) as Box<dyn Operator>)),
            &sources,
        );
        Ok(Rel::new(node, columns, append_only, p))
    }

    fn plan_values(
        &mut self,
        v: &ast::Values,
        span: Option<std::ops::Range<usize>>,
    ) -> SqlResult<Rel> {
        let empty = Scope::default();
        let mut rows: Vec<Vec<Bound>> = Vec::new();
        for row in &v.rows {
            let mut b = ExprBinder::new(self.sql, &empty);
            rows.push(
                row.content
                    .iter()
                    .map(|e| b.bind(e))
                    .collect::<SqlResult<_>>()?,
            );
        }
        let width = rows.first().map(Vec::len).unwrap_or(0);
        if rows.iter().any(|r| r.len() != width) || width == 0 {
            return Err(SqlError::validation(
                "VALUES rows must all have the same number of columns",
            )
            .with_span(span));
        }
        let mut types = vec![DataType::Null; width];
        for r in &rows {
            for (i, b) in r.iter().enumerate() {
                types[i] = streamsql_engine::expr::coerce::common_type(&types[i], &b.ty)
                    .ok_or_else(|| {
                        SqlError::validation(format!("Type mismatch in VALUES column {}", i + 1))
                            .with_span(span.clone())
                    })?;
            }
        }
        let mut values: Vec<Vec<Value>> = Vec::new();
        for r in rows {
            let mut out = Vec::with_capacity(width);
            for (i, b) in r.into_iter().enumerate() {
                let b = crate::binder::cast_to(b, &types[i]);
                let v = b
                    .expr
                    .eval(&[])
                    .map_err(|e| SqlError::from_engine(e, span.clone()))?;
                out.push(v);
            }
            values.push(out);
        }
        let columns: Vec<ScopeColumn> = types
            .into_iter()
            .enumerate()
            .map(|(i, t)| ScopeColumn {
                qualifier: None,
                name: format!("EXPR${i}"),
                data_type: t,
                rowtime: false,
            })
            .collect();
        Ok(self.constant_rows(values, columns))
    }

    /// A source of constant rows.
    fn constant_rows(&mut self, values: Vec<Vec<Value>>, columns: Vec<ScopeColumn>) -> Rel {
        let factory = streamsql_engine::connectors::values::ValuesSourceFactory::new(values);
        let node = self.graph.add_node(
            "Values",
            format!("tuples={:?}", factory.rows()),
            1,
            schema_of(&columns),
            NodeKind::Source(Arc::new(factory)),
            &[],
        );
        Rel::new(node, columns, true, 1)
    }

    /// Computes the window columns of a pending window TVF.
    pub fn materialize(&mut self, rel: Rel) -> SqlResult<Rel> {
        let Some(w) = rel.pending_window.clone() else {
            return Ok(rel);
        };
        if matches!(w.kind, WindowKind::Session { .. }) {
            return Err(SqlError::unsupported(
                "a SESSION window table function must be followed by an aggregation on window_start and window_end",
            ));
        }
        let kind = w.kind.clone();
        let time_col = w.time_col;
        let time_type = w.time_type.clone();
        let columns = rel.columns.clone();
        let node = self.graph.add_node(
            "WindowTableFunction",
            format!("window=[{kind:?}], time_col=[${time_col}]"),
            rel.parallelism,
            schema_of(&columns),
            op_factory(move |ctx| {
                let spec = WindowTvfSpec {
                    time_col,
                    window: kind.clone(),
                    time_type: time_type.clone(),
                };
                Ok(Box::new(WindowTableFunction::new(spec, ctx)?) as Box<dyn Operator>)
            }),
            &[(rel.node, Partitioning::Forward)],
        );
        let mut columns = rel.columns;
        let n = columns.len();
        columns[n - 1].rowtime = true;
        Ok(Rel::new(node, columns, rel.append_only, rel.parallelism))
    }

    /// Source (and computed columns, and watermark assigner) of a catalog table.
    fn scan(&mut self, t: &TableEntry, alias: &str) -> SqlResult<Rel> {
        let sql = t.sql.as_str();
        let name_span = Some(t.def.name_span.clone());
        let physical = t.physical_schema();
        for c in &t.def.columns {
            if let ColumnKind::Metadata { .. } = c.kind {
                return Err(SqlError::unsupported(format!(
                    "metadata column '{}' is not supported",
                    c.name
                ))
                .with_span(Some(c.name_span.clone())));
            }
        }
        let connector = t.option("connector").ok_or_else(|| {
            SqlError::new(
                crate::error::SqlErrorKind::Option,
                format!(
                    "Table options do not contain an option key 'connector' for discovering a connector. Table: '{}'",
                    t.def.name
                ),
            )
            .with_span(name_span.clone())
        })?;
        let options = Options::from_pairs(
            t.def
                .options
                .iter()
                .filter(|o| o.key != "connector")
                .map(|o| (o.key.clone(), o.value.clone())),
        );
        let factory = match self.catalog.source_connector(connector) {
            Some(custom) => custom(&t.def.name, &physical, &options),
            None => registry::create_source(connector, &t.def.name, &physical, &options),
        }
        .map_err(|e| self.option_error(t, e))?;
        let p = self.parallelism();
        let phys_cols: Vec<ScopeColumn> = physical
            .fields
            .iter()
            .map(|f| ScopeColumn {
                qualifier: Some(alias.to_string()),
                name: f.name.clone(),
                data_type: f.data_type.clone(),
                rowtime: false,
            })
            .collect();
        let chain = self.add_chain(
            ScanChain {
                node: 0,
                source: factory,
                table: t.def.name.clone(),
                connector: connector.to_string(),
                options: t
                    .def
                    .options
                    .iter()
                    .map(|o| (o.key.clone(), o.value.clone()))
                    .collect(),
                physical: phys_cols.clone(),
                filters: Vec::new(),
                placed: false,
                stages: Vec::new(),
            },
            &phys_cols,
        );
        let mut rel = Rel {
            node: chain.node,
            columns: phys_cols.clone(),
            append_only: true,
            parallelism: p,
            pending_window: None,
            calc: None,
            chain: Some(Box::new(chain)),
            join: None,
        };
        // Computed columns, in declaration order.
        if t.def
            .columns
            .iter()
            .any(|c| matches!(c.kind, ColumnKind::Computed { .. }))
        {
            let phys_scope = Scope { columns: phys_cols };
            let mut projections = Vec::new();
            let mut k = 0;
            for c in &t.def.columns {
                match &c.kind {
                    ColumnKind::Physical { data_type, .. } => {
                        projections.push((
                            Expr::Column(k),
                            ScopeColumn {
                                qualifier: Some(alias.to_string()),
                                name: c.name.clone(),
                                data_type: data_type.clone(),
                                rowtime: false,
                            },
                        ));
                        k += 1;
                    }
                    ColumnKind::Computed { expr, .. } => {
                        let b = ExprBinder::new(sql, &phys_scope).bind(expr)?;
                        projections.push((
                            b.expr,
                            ScopeColumn {
                                qualifier: Some(alias.to_string()),
                                name: c.name.clone(),
                                data_type: b.ty,
                                rowtime: false,
                            },
                        ));
                    }
                    ColumnKind::Metadata { .. } => {}
                }
            }
            rel = self.calc(&rel, None, projections);
        }
        if let Some(wm) = &t.def.watermark {
            let scope = rel.scope();
            let col = scope.resolve(None, &wm.column).map_err(|_| {
                SqlError::validation(format!(
                    "The rowtime attribute field '{}' is not defined in the table schema",
                    wm.column
                ))
                .with_span(Some(wm.column_span.clone()))
            })?;
            let col_ty = rel.columns[col].data_type.clone();
            if !matches!(col_ty, DataType::Timestamp(_) | DataType::TimestampLtz(_)) {
                return Err(SqlError::validation(format!(
                    "Invalid data type of time field for watermark definition. The field must be of type TIMESTAMP(p) or TIMESTAMP_LTZ(p), the supported precision 'p' is from 0 to 3, but the time field type is {col_ty}"
                ))
                .with_span(Some(wm.column_span.clone())));
            }
            let b = ExprBinder::new(sql, &scope).bind(&wm.expr)?;
            if !matches!(b.ty, DataType::Timestamp(_) | DataType::TimestampLtz(_)) {
                return Err(SqlError::validation(format!(
                    "Watermark strategy {} must be of type TIMESTAMP or TIMESTAMP_LTZ but is {}",
                    wm.expr, b.ty
                ))
                .with_span(Some(wm.expr_span.clone())));
            }
            let interval = i64::try_from(self.config.auto_watermark_interval().as_millis())
                .unwrap_or(i64::MAX);
            // The table's own `scan.watermark.idle-timeout` wins over the session's
            // `table.exec.source.idle-timeout`, as in Flink.
            let table_idle = t
                .def
                .options
                .iter()
                .find(|o| o.key == "scan.watermark.idle-timeout");
            let idle_timeout = match table_idle {
                Some(o) => streamsql_engine::config::parse_duration(&o.value).ok_or_else(|| {
                    SqlError::new(
                        crate::error::SqlErrorKind::Option,
                        format!(
                            "Could not parse value '{}' for key 'scan.watermark.idle-timeout'.",
                            o.value
                        ),
                    )
                    .with_span(Some(o.value_span.clone()))
                })?,
                None => self.config.source_idle_timeout(),
            };
            let idle = i64::try_from(idle_timeout.as_millis()).unwrap_or(i64::MAX);
            let Some(mut chain) = rel.chain.take().filter(|c| c.node == rel.node) else {
                return Err(SqlError::internal("a table's scan is not a source task"));
            };
            chain.stages.push(ChainStage::Watermark {
                expr: b.expr,
                interval_ms: interval,
                idle_ms: idle,
                description: format!("rowtime=[{}], watermark=[{}]", wm.column, wm.expr),
            });
            let chain = self.add_chain(*chain, &rel.columns);
            rel.node = chain.node;
            rel.chain = Some(Box::new(chain));
            rel.columns[col].rowtime = true;
        }
        Ok(rel)
    }

    /// Puts `chain` in the graph, emitting `columns`: in place of its node when it has one (a
    /// chain that grew; nothing reads it yet), else as a new node. Returns it with its node index.
    fn add_chain(&mut self, mut chain: ScanChain, columns: &[ScopeColumn]) -> ScanChain {
        let filtered = plan_chain::transpose_watermark(&plan_chain::push_filters(&chain));
        let (source, physical, mut stages) = match plan_chain::push_projection(&filtered) {
            Some(pushed) => pushed,
            None => (
                filtered.source.clone(),
                filtered.physical.clone(),
                filtered.stages.clone(),
            ),
        };
        stages.retain(|s| !plan_chain::is_identity(s));
        let kind = if stages.is_empty() {
            NodeKind::Source(source)
        } else {
            NodeKind::Source(Arc::new(ChainedSourceFactory {
                source,
                operators: stages.iter().map(ChainStage::factory).collect(),
            }))
        };
        let filter = match filtered.filters.as_slice() {
            [] => String::new(),
            pushed => {
                let conjuncts: Vec<Expr> = pushed
                    .iter()
                    .map(|(c, v)| Expr::Call {
                        func: streamsql_engine::expr::ScalarFunction::Cmp(
                            streamsql_engine::expr::functions::CmpOp::Eq,
                        ),
                        args: vec![Expr::Column(*c), Expr::Literal(v.clone())],
                        ret: DataType::Boolean,
                    })
                    .collect();
                format!(
                    ", filter=[{}]",
                    describe_exprs(&conjuncts, &filtered.physical)
                )
            }
        };
        let description = format!(
            "table=[{}]{filter}, fields=[{}], connector=[{}]",
            chain.table,
            physical
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            chain.connector
        );
        // What the task computes, without column names or qualifiers (the same table read under
        // two aliases is the same scan).
        let digest = format!(
            "Scan|{}|{}|{:?}|{:?}|{:?}|{:?}",
            chain.table,
            chain.connector,
            chain.options,
            filtered.filters,
            physical
                .iter()
                .map(|c| (&c.name, &c.data_type))
                .collect::<Vec<_>>(),
            stages.iter().map(ChainStage::digest).collect::<Vec<_>>()
        );
        let chained = stages.iter().map(ChainStage::explain).collect();
        let parallelism = self.parallelism();
        chain.node = self.graph.put_source_task(
            chain.placed.then_some(chain.node),
            "TableSourceScan",
            description,
            chained,
            parallelism,
            schema_of(columns),
            kind,
        );
        chain.placed = true;
        self.graph.set_digest(chain.node, digest);
        chain
    }

    fn option_error(&self, t: &TableEntry, e: streamsql_engine::EngineError) -> SqlError {
        let span = t.option_error_span(&e.to_string());
        SqlError::from_engine(e, Some(span))
    }

    pub(crate) fn plan_named(
        &mut self,
        name: &str,
        alias: Option<&str>,
        span: Option<std::ops::Range<usize>>,
    ) -> SqlResult<Rel> {
        let qualifier = alias.unwrap_or(name).to_string();
        if let Some((_, q)) = self
            .ctes
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .cloned()
        {
            let rel = self.plan_query(&q)?;
            return Ok(requalify(rel, &qualifier));
        }
        match self.catalog.get(name) {
            Some(CatalogEntry::Table(t)) => {
                let t = t.clone();
                self.scan(&t, &qualifier)
            }
            Some(CatalogEntry::View(v)) => {
                if self.view_stack.iter().any(|n| n == &v.def.name) {
                    return Err(
                        SqlError::validation(format!("View '{name}' refers to itself"))
                            .with_span(span),
                    );
                }
                let v = v.clone();
                self.view_stack.push(v.def.name.clone());
                let mut inner = Planner {
                    sql: &v.sql,
                    catalog: self.catalog,
                    config: self.config,
                    graph: &mut *self.graph,
                    view_stack: std::mem::take(&mut self.view_stack),
                    ctes: Vec::new(),
                    validating_view: false,
                };
                let r = inner.plan_query(&v.def.query);
                self.view_stack = std::mem::take(&mut inner.view_stack);
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
                        .with_span(span));
                    }
                    for (c, n) in rel.columns.iter_mut().zip(&v.def.columns) {
                        c.name = n.clone();
                    }
                }
                Ok(requalify(rel, &qualifier))
            }
            None => {
                let mut err = SqlError::validation(format!("Object '{name}' not found"));
                let names: Vec<&str> = self
                    .catalog
                    .all_names()
                    .chain(self.ctes.iter().map(|(n, _)| n.as_str()))
                    .collect();
                if let Some(s) = did_you_mean(name, names) {
                    err = err.with_help(format!("did you mean '{s}'?"));
                }
                Err(err.with_span(span))
            }
        }
    }

    pub(crate) fn plan_table_factor(&mut self, tf: &TableFactor) -> SqlResult<Rel> {
        let span = self.span(tf);
        if let Some(tvf) = crate::parser::window_tvf(self.sql, tf)? {
            return self.plan_window_tvf(&tvf);
        }
        match tf {
            TableFactor::Table {
                name,
                alias,
                args,
                version,
                ..
            } => {
                if args.is_some() {
                    return Err(
                        SqlError::unsupported("table functions are not supported").with_span(span)
                    );
                }
                if version.is_some() {
                    return Err(SqlError::unsupported(
                        "FOR SYSTEM_TIME AS OF is only supported on the right side of an INNER or LEFT JOIN with an ON condition (a temporal join)",
                    )
                    .with_span(span));
                }
                let n = object_name(name);
                let alias = alias.as_ref().map(|a| a.name.value.clone());
                let mut rel = self.plan_named(&n, alias.as_deref(), span.clone())?;
                if let Some(a) = tf_alias_columns(tf) {
                    rename_columns(&mut rel, &a, span)?;
                }
                Ok(rel)
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let rel = self.plan_query(subquery)?;
                let mut rel = match alias {
                    Some(a) => requalify(rel, &a.name.value),
                    None => requalify_none(rel),
                };
                if let Some(a) = tf_alias_columns(tf) {
                    rename_columns(&mut rel, &a, span)?;
                }
                Ok(rel)
            }
            TableFactor::NestedJoin { .. } => self.plan_joined_from(
                std::slice::from_ref(&ast::TableWithJoins {
                    relation: tf.clone(),
                    joins: Vec::new(),
                }),
                None,
            ),
            other => Err(
                SqlError::unsupported(format!("FROM item '{other}' is not supported"))
                    .with_span(span),
            ),
        }
    }

    fn plan_window_tvf(&mut self, tvf: &crate::ast::WindowTvf) -> SqlResult<Rel> {
        let span = Some(tvf.span.clone());
        let base = self.plan_named(&tvf.table, None, Some(tvf.table_span.clone()))?;
        let base = self.materialize(base)?;
        if !base.append_only {
            return Err(SqlError::unsupported(format!(
                "{} window table function does not support an updating input",
                tvf.kind.name()
            ))
            .with_span(span));
        }
        let scope = base.scope();
        let time_col = scope.resolve(None, &tvf.time_col).map_err(|_| {
            SqlError::validation(format!("Column '{}' not found in any table", tvf.time_col))
                .with_span(Some(tvf.time_col_span.clone()))
        })?;
        let tc = &base.columns[time_col];
        if !tc.rowtime {
            return Err(SqlError::validation(format!(
                "The window function requires the timecol is a time attribute type, but is {}.",
                tc.data_type
            ))
            .with_span(Some(tvf.time_col_span.clone())));
        }
        let time_type = tc.data_type.clone();
        let mut ms = Vec::new();
        for iv in &tvf.intervals {
            match crate::parser::interval_millis_or_months(iv)? {
                crate::ast::IntervalValue::DayTime(v) => ms.push(v),
                crate::ast::IntervalValue::YearMonth(_) => {
                    return Err(SqlError::unsupported(
                        "year-month intervals are not supported for windows",
                    )
                    .with_span(self.span(iv)))
                }
            }
        }
        let arg = |i: usize| ms.get(i).copied();
        let bad_args = || {
            SqlError::validation(format!(
                "Invalid number of arguments to function '{}'",
                tvf.kind.name()
            ))
            .with_span(span.clone())
        };
        let kind = match tvf.kind {
            TvfKind::Tumble => WindowKind::Tumble {
                size: arg(0).ok_or_else(bad_args)?,
                offset: arg(1).unwrap_or(0),
            },
            TvfKind::Hop => WindowKind::Hop {
                slide: arg(0).ok_or_else(bad_args)?,
                size: arg(1).ok_or_else(bad_args)?,
                offset: arg(2).unwrap_or(0),
            },
            TvfKind::Cumulate => WindowKind::Cumulate {
                step: arg(0).ok_or_else(bad_args)?,
                max_size: arg(1).ok_or_else(bad_args)?,
                offset: arg(2).unwrap_or(0),
            },
            TvfKind::Session => WindowKind::Session {
                gap: arg(0).ok_or_else(bad_args)?,
            },
        };
        kind.validate()
            .map_err(|e| SqlError::from_engine(e, span.clone()))?;
        let mut partition_keys = Vec::new();
        for (p, ps) in tvf.partition_by.iter().zip(&tvf.partition_spans) {
            partition_keys.push(scope.resolve(None, p).map_err(|_| {
                SqlError::validation(format!("Column '{p}' not found in any table"))
                    .with_span(Some(ps.clone()))
            })?);
        }
        let qualifier = tvf.alias.clone().unwrap_or_else(|| tvf.table.clone());
        let mut columns: Vec<ScopeColumn> = base
            .columns
            .iter()
            .map(|c| ScopeColumn {
                qualifier: Some(qualifier.clone()),
                ..c.clone()
            })
            .collect();
        // Flink keeps the time column but it is no longer a time attribute; window_time is.
        columns[time_col].rowtime = false;
        for (name, ty) in [
            ("window_start", DataType::Timestamp(3)),
            ("window_end", DataType::Timestamp(3)),
            ("window_time", time_type.clone()),
        ] {
            columns.push(ScopeColumn {
                qualifier: Some(qualifier.clone()),
                name: name.into(),
                data_type: ty,
                rowtime: false,
            });
        }
        Ok(Rel {
            node: base.node,
            columns,
            append_only: true,
            parallelism: base.parallelism,
            calc: None,
            chain: base.chain.clone(),
            join: None,
            pending_window: Some(PendingWindow {
                kind,
                time_col,
                time_type,
                partition_keys,
            }),
        })
    }

    fn plan_from(
        &mut self,
        from: &[ast::TableWithJoins],
        selection: Option<&AstExpr>,
    ) -> SqlResult<Option<Rel>> {
        match from {
            [] => Ok(None),
            [one] if one.joins.is_empty() => Ok(Some(self.plan_table_factor(&one.relation)?)),
            // Joins: see plan_join.rs.
            _ => Ok(Some(self.plan_joined_from(from, selection)?)),
        }
    }

    fn plan_select(&mut self, s: &ast::Select) -> SqlResult<Rel> {
        if std::mem::take(&mut self.validating_view) {
            if let Some(rel) = self.validate_row_number_view(s)? {
                return Ok(rel);
            }
        }
        if let Some((rel, rest)) = self.try_plan_rank(s)? {
            return self.plan_select_on(&rest, rel);
        }
        let rel = match self.plan_from(&s.from, s.selection.as_ref())? {
            Some(r) => r,
            None => self.constant_rows(
                vec![vec![Value::Int(0)]],
                vec![col("$dummy", DataType::Int, false)],
            ),
        };
        self.plan_select_on(s, rel)
    }

    /// Plans the rest of a SELECT over its planned FROM.
    fn plan_select_on(&mut self, s: &ast::Select, rel: Rel) -> SqlResult<Rel> {
        let select_span = self.span(s);
        let group_exprs: Vec<AstExpr> = match &s.group_by {
            GroupByExpr::Expressions(exprs, mods) => {
                if !mods.is_empty() {
                    return Err(SqlError::unsupported(
                        "GROUP BY modifiers (ROLLUP, CUBE) are not supported",
                    )
                    .with_span(select_span));
                }
                exprs.clone()
            }
            GroupByExpr::All(_) => {
                return Err(
                    SqlError::unsupported("GROUP BY ALL is not supported").with_span(select_span)
                )
            }
        };
        let has_agg = !group_exprs.is_empty()
            || s.having.is_some()
            || s.projection.iter().any(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    contains_aggregate(e)
                }
                _ => false,
            });
        let out = if plan_over::has_over_aggregate(s) {
            self.plan_over(s, rel)?
        } else if has_agg {
            self.plan_aggregate(s, rel, &group_exprs)?
        } else {
            if s.having.is_some() {
                return Err(SqlError::validation(
                    "HAVING requires GROUP BY or an aggregate",
                ));
            }
            // A WHERE that reads only base columns runs before the window columns exist.
            let mut rel = rel;
            let mut filter = None;
            if let Some(w) = &s.selection {
                if rel.pending_window.is_some() && !mentions_window_columns(w) {
                    let base_scope = Scope {
                        columns: rel.columns[..rel.base_len()].to_vec(),
                    };
                    let pred = ExprBinder::new(self.sql, &base_scope).bind_predicate(w, "WHERE")?;
                    let pw = rel.pending_window.take();
                    let cols = rel.columns.clone();
                    let base_cols = cols[..cols.len() - 3].to_vec();
                    let ident: Vec<(Expr, ScopeColumn)> = base_cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (Expr::Column(i), c.clone()))
                        .collect();
                    let mut filtered = self.calc(
                        &Rel {
                            columns: base_cols,
                            pending_window: None,
                            calc: None,
                            chain: None,
                            join: None,
                            ..rel.clone()
                        },
                        Some(pred),
                        ident,
                    );
                    filtered.columns = cols;
                    filtered.pending_window = pw;
                    rel = filtered;
                } else {
                    rel = self.materialize(rel)?;
                    filter =
                        Some(ExprBinder::new(self.sql, &rel.scope()).bind_predicate(w, "WHERE")?);
                }
            }
            let rel = self.materialize(rel)?;
            let scope = rel.scope();
            let projections = self.projection(&s.projection, &scope, None)?;
            self.calc(&rel, filter, projections)
        };
        if s.distinct.is_some() {
            return self.distinct(out);
        }
        Ok(out)
    }

    /// Expands and binds SELECT items.
    fn projection(
        &mut self,
        items: &[SelectItem],
        scope: &Scope,
        mut aggs: Option<&mut AggContext>,
    ) -> SqlResult<Vec<(Expr, ScopeColumn)>> {
        let mut out = Vec::new();
        for (pos, item) in items.iter().enumerate() {
            match item {
                SelectItem::Wildcard(_) => {
                    if aggs.is_some() {
                        return Err(
                            SqlError::validation("SELECT * is not allowed with GROUP BY")
                                .with_span(self.span(item)),
                        );
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        out.push((Expr::Column(i), c.clone()));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    // `t.*`: the qualifier is the object name (the kind's text ends in `.*`).
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n),
                        other => other.to_string(),
                    };
                    let before = out.len();
                    for (i, c) in scope.columns.iter().enumerate() {
                        if c.qualifier
                            .as_deref()
                            .is_some_and(|cq| cq.eq_ignore_ascii_case(&q))
                        {
                            out.push((Expr::Column(i), c.clone()));
                        }
                    }
                    if out.len() == before {
                        return Err(SqlError::validation(format!("Unknown identifier '{q}'"))
                            .with_span(self.span(item)));
                    }
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let b = match aggs.as_deref_mut() {
                        Some(a) => ExprBinder::with_aggs(self.sql, scope, a).bind(e)?,
                        None => ExprBinder::new(self.sql, scope).bind(e)?,
                    };
                    let name = match item {
                        SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                        _ => match e {
                            AstExpr::Identifier(id) => id.value.clone(),
                            AstExpr::CompoundIdentifier(p) => {
                                p.last().map(|i| i.value.clone()).unwrap_or_default()
                            }
                            _ => format!("EXPR${pos}"),
                        },
                    };
                    let rowtime = match &b.expr {
                        Expr::Column(i) if *i < scope.columns.len() => scope.columns[*i].rowtime,
                        _ => false,
                    };
                    out.push((
                        b.expr,
                        ScopeColumn {
                            qualifier: None,
                            name,
                            data_type: b.ty,
                            rowtime,
                        },
                    ));
                }
                other => {
                    return Err(SqlError::unsupported(format!(
                        "select item '{other}' is not supported"
                    ))
                    .with_span(self.span(other)))
                }
            }
        }
        Ok(out)
    }

    /// `SELECT DISTINCT`: a group aggregation over every column with no aggregate.
    fn distinct(&mut self, rel: Rel) -> SqlResult<Rel> {
        let rel = self.materialize(rel)?;
        let keys: Vec<usize> = (0..rel.columns.len()).collect();
        let columns: Vec<ScopeColumn> = rel
            .columns
            .iter()
            .map(|c| ScopeColumn {
                rowtime: false,
                ..c.clone()
            })
            .collect();
        self.group_aggregate(&rel, keys, Vec::new(), columns)
    }

    fn group_aggregate(
        &mut self,
        input: &Rel,
        key_cols: Vec<usize>,
        aggs: Vec<AggCall>,
        columns: Vec<ScopeColumn>,
    ) -> SqlResult<Rel> {
        let (p, part) = if key_cols.is_empty() {
            (1, Partitioning::Global)
        } else {
            (self.parallelism(), Partitioning::Hash(key_cols.clone()))
        };
        let spec = GroupAggregateSpec {
            key_cols: key_cols.clone(),
            aggs: aggs.clone(),
            input_append_only: input.append_only,
        };
        let description = format!(
            "groupBy=[{}], select=[{}]",
            key_cols
                .iter()
                .map(|k| input.columns[*k].name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            aggs.iter()
                .map(|a| describe_agg(a, &input.columns))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let node = self.graph.add_node(
            "GroupAggregate",
            description,
            p,
            schema_of(&columns),
            op_factory(move |ctx| {
                Ok(Box::new(GroupAggregate::new(spec.clone(), ctx)?) as Box<dyn Operator>)
            }),
            &[(input.node, part)],
        );
        Ok(Rel::new(node, columns, false, p))
    }

    fn plan_aggregate(
        &mut self,
        s: &ast::Select,
        rel: Rel,
        group_exprs: &[AstExpr],
    ) -> SqlResult<Rel> {
        let select_span = self.span(s);
        // Which GROUP BY items are window columns of a pending TVF, or a legacy group window.
        let mut window_keys: Vec<usize> = Vec::new(); // 0: start, 1: end, 2: time
        let mut plain_keys: Vec<&AstExpr> = Vec::new();
        let mut group_window: Option<(&ast::Function, String)> = None;
        let pending = rel.pending_window.is_some();
        let base_len = rel.base_len();
        for g in group_exprs {
            if pending {
                if let Some(i) = window_column_ref(g, &rel) {
                    window_keys.push(i - base_len);
                    continue;
                }
            }
            if let AstExpr::Function(f) = g {
                let name = function_name(f);
                if matches!(name.as_str(), "TUMBLE" | "HOP" | "SESSION") {
                    if group_window.is_some() {
                        return Err(SqlError::validation(
                            "Only one group window is allowed in GROUP BY",
                        )
                        .with_span(self.span(g)));
                    }
                    group_window = Some((f, name));
                    continue;
                }
            }
            plain_keys.push(g);
        }
        let window_agg = pending && window_keys.contains(&0) && window_keys.contains(&1);
        let rel = if pending && !window_agg {
            self.materialize(rel)?
        } else {
            rel
        };
        let input_scope = if window_agg {
            Scope {
                columns: rel.columns.clone(),
            }
        } else {
            rel.scope()
        };
        // WHERE before aggregating.
        let filter = match &s.selection {
            Some(w) => {
                if window_agg && mentions_window_columns(w) {
                    return Err(SqlError::unsupported(
                        "a WHERE on window columns before a window aggregation is not supported",
                    )
                    .with_span(self.span(w)));
                }
                Some(ExprBinder::new(self.sql, &input_scope).bind_predicate(w, "WHERE")?)
            }
            None => None,
        };
        // Bind group keys.
        let mut keys: Vec<Bound> = Vec::new();
        for g in &plain_keys {
            keys.push(ExprBinder::new(self.sql, &input_scope).bind(g)?);
        }
        // Legacy group window.
        let mut legacy: Option<(WindowKind, usize, DataType)> = None;
        let mut agg_ctx = AggContext::default();
        if let Some((f, name)) = group_window {
            let args: Vec<&AstExpr> = function_args(f).into_iter().flatten().collect();
            let mut bound = Vec::new();
            for a in &args {
                bound.push(ExprBinder::new(self.sql, &input_scope).bind(a)?);
            }
            let fspan = self.span(f);
            let time = bound.first().ok_or_else(|| {
                SqlError::validation(format!("{name} requires a time attribute and an interval"))
                    .with_span(fspan.clone())
            })?;
            let time_col = match time.expr {
                Expr::Column(i) if input_scope.columns[i].rowtime => i,
                _ => {
                    return Err(SqlError::validation(format!(
                        "Window can only be defined on a time attribute column, but is type of {}",
                        time.ty
                    ))
                    .with_span(fspan))
                }
            };
            let ms: Vec<i64> = bound[1..]
                .iter()
                .map(|b| match &b.expr {
                    Expr::Literal(Value::IntervalDayTime(v)) => Ok(*v),
                    _ => Err(
                        SqlError::validation(format!("{name} expects interval literals"))
                            .with_span(fspan.clone()),
                    ),
                })
                .collect::<SqlResult<_>>()?;
            let kind = match (name.as_str(), ms.as_slice()) {
                ("TUMBLE", [size]) => WindowKind::Tumble {
                    size: *size,
                    offset: 0,
                },
                ("TUMBLE", [size, offset]) => WindowKind::Tumble {
                    size: *size,
                    offset: *offset,
                },
                ("HOP", [slide, size]) => WindowKind::Hop {
                    slide: *slide,
                    size: *size,
                    offset: 0,
                },
                ("SESSION", [gap]) => WindowKind::Session { gap: *gap },
                _ => {
                    return Err(SqlError::validation(format!(
                        "Invalid number of arguments to function '{name}'"
                    ))
                    .with_span(fspan))
                }
            };
            kind.validate()
                .map_err(|e| SqlError::from_engine(e, fspan.clone()))?;
            let time_type = input_scope.columns[time_col].data_type.clone();
            agg_ctx.group_window = Some(GroupWindowRef {
                function: name.clone(),
                args: bound.iter().map(|b| b.expr.clone()).collect(),
                time_type: time_type.clone(),
            });
            legacy = Some((kind, time_col, time_type));
        }
        let is_window = window_agg || legacy.is_some();
        // Bind SELECT items and HAVING with aggregates allowed.
        let projections = self.projection(&s.projection, &input_scope, Some(&mut agg_ctx))?;
        let having = match &s.having {
            Some(h) => Some(
                ExprBinder::with_aggs(self.sql, &input_scope, &mut agg_ctx)
                    .bind_predicate(h, "HAVING")?,
            ),
            None => None,
        };
        // Pre-projection: [time col] ++ keys ++ agg args ++ agg filters.
        let mut pre: Vec<(Expr, ScopeColumn)> = Vec::new();
        let mut push_pre = |e: Expr, ty: DataType, name: String, rowtime: bool| -> usize {
            if let Some(i) = pre.iter().position(|(x, _)| *x == e) {
                return i;
            }
            pre.push((
                e,
                ScopeColumn {
                    qualifier: None,
                    name,
                    data_type: ty,
                    rowtime,
                },
            ));
            pre.len() - 1
        };
        let (window_kind, time_type) = if window_agg {
            let w = rel
                .pending_window
                .clone()
                .expect("invariant: window_agg implies a pending window");
            if let WindowKind::Hop { size, slide, .. } = w.kind {
                // Flink slices HOP windows into panes of `slide` for the TVF aggregate.
                if slide > 0 && size % slide != 0 {
                    return Err(SqlError::validation(format!(
                        "HOP table function based aggregate requires size must be an integral multiple of slide, but got size {size} ms and slide {slide} ms"
                    ))
                    .with_span(select_span.clone()));
                }
            }
            let tc = w.time_col;
            push_pre(
                Expr::Column(tc),
                w.time_type.clone(),
                rel.columns[tc].name.clone(),
                true,
            );
            (Some(w.kind), w.time_type)
        } else if let Some((kind, tc, tt)) = &legacy {
            push_pre(
                Expr::Column(*tc),
                tt.clone(),
                input_scope.columns[*tc].name.clone(),
                true,
            );
            (Some(kind.clone()), tt.clone())
        } else {
            (None, DataType::Timestamp(3))
        };
        let mut key_cols = Vec::new();
        if window_agg {
            // SESSION's PARTITION BY keys are keys of the aggregation as well.
            if let Some(w) = &rel.pending_window {
                for k in &w.partition_keys {
                    let is_group_key = keys.iter().any(|b| b.expr == Expr::Column(*k));
                    if !is_group_key {
                        return Err(SqlError::validation(format!(
                            "SESSION window PARTITION BY column '{}' must also be a GROUP BY key",
                            rel.columns[*k].name
                        ))
                        .with_span(select_span.clone()));
                    }
                }
            }
        }
        for (i, k) in keys.iter().enumerate() {
            key_cols.push(push_pre(
                k.expr.clone(),
                k.ty.clone(),
                format!("$k{i}"),
                false,
            ));
        }
        let mut calls = Vec::new();
        for (i, c) in agg_ctx.calls.iter().enumerate() {
            let arg = match c.args.as_slice() {
                [] => None,
                [a] => Some(push_pre(
                    a.clone(),
                    c.arg_types[0].clone(),
                    format!("$a{i}"),
                    false,
                )),
                _ => {
                    return Err(SqlError::unsupported(format!(
                        "{} with several arguments is not supported",
                        c.name
                    ))
                    .with_span(select_span.clone()))
                }
            };
            let filter = c
                .filter
                .clone()
                .map(|f| push_pre(f, DataType::Boolean, format!("$f{i}"), false));
            calls.push(AggCall {
                kind: c.kind,
                arg,
                distinct: c.distinct,
                ret: c.ret.clone(),
                filter,
            });
        }
        if pre.is_empty() {
            // COUNT(*) over a table: keep one column so rows still flow.
            pre.push((
                Expr::Literal(Value::Int(0)),
                ScopeColumn {
                    qualifier: None,
                    name: "$c".into(),
                    data_type: DataType::Int,
                    rowtime: false,
                },
            ));
        }
        let input_rel = if window_agg {
            let base_cols = rel.columns[..base_len].to_vec();
            Rel {
                columns: base_cols,
                pending_window: None,
                calc: None,
                ..rel.clone()
            }
        } else {
            rel.clone()
        };
        if is_window && !input_rel.append_only {
            return Err(SqlError::unsupported(
                "window aggregation over an updating input is not supported (Flink requires an append-only input)",
            )
            .with_span(select_span));
        }
        let pre_rel = self.calc(&input_rel, filter, pre);
        let nkeys = key_cols.len();
        let nwin = if is_window { 3 } else { 0 };
        // Output of the aggregate: keys ++ [window cols] ++ aggs.
        let mut agg_columns: Vec<ScopeColumn> = key_cols
            .iter()
            .map(|k| pre_rel.columns[*k].clone())
            .collect();
        if is_window {
            agg_columns.push(col("window_start", DataType::Timestamp(3), false));
            agg_columns.push(col("window_end", DataType::Timestamp(3), false));
            agg_columns.push(col("window_time", time_type.clone(), true));
        }
        for (i, c) in calls.iter().enumerate() {
            agg_columns.push(col(&format!("$agg{i}"), c.ret.clone(), false));
        }
        let agg_rel = match window_kind {
            Some(kind) => {
                let spec = WindowAggSpec {
                    time_col: 0,
                    window: kind.clone(),
                    key_cols: key_cols.clone(),
                    aggs: calls.clone(),
                    time_type: time_type.clone(),
                };
                let (p, part) = if key_cols.is_empty() {
                    (1, Partitioning::Global)
                } else {
                    (self.parallelism(), Partitioning::Hash(key_cols.clone()))
                };
                let description = format!(
                    "window=[{}], groupBy=[{}], select=[{}]",
                    describe_window(&kind),
                    key_cols
                        .iter()
                        .map(|k| pre_rel.columns[*k].name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                    calls
                        .iter()
                        .map(|a| describe_agg(a, &pre_rel.columns))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let digest = format!("WindowAggregate|{spec:?}");
                let node = self.graph.add_node(
                    "WindowAggregate",
                    description,
                    p,
                    schema_of(&agg_columns),
                    op_factory(move |ctx| {
                        Ok(Box::new(WindowAggregate::new(spec.clone(), ctx)?) as Box<dyn Operator>)
                    }),
                    &[(pre_rel.node, part)],
                );
                self.graph.set_digest(node, digest);
                Rel::new(node, agg_columns.clone(), true, p)
            }
            None => self.group_aggregate(
                &pre_rel,
                key_cols.clone(),
                calls.clone(),
                agg_columns.clone(),
            )?,
        };
        // Rewrite SELECT items and HAVING onto the aggregate's output.
        let key_exprs: Vec<Expr> = keys.iter().map(|b| b.expr.clone()).collect();
        let base_for_window = if window_agg { Some(base_len) } else { None };
        let rewrite = |e: &Expr| -> SqlResult<Expr> {
            rewrite_post_agg(
                e,
                &key_exprs,
                nkeys,
                nwin,
                base_for_window,
                &window_keys,
                &rel.columns,
            )
        };
        let mut post = Vec::new();
        for (e, c) in &projections {
            let ne = rewrite(e).map_err(|err| err.with_span(select_span.clone()))?;
            let rowtime = matches!(ne, Expr::Column(i) if is_window && i == nkeys + 2);
            post.push((
                ne,
                ScopeColumn {
                    rowtime,
                    ..c.clone()
                },
            ));
        }
        let having = match having {
            Some(h) => {
                let hspan = s.having.as_ref().and_then(|x| self.span(x));
                Some(rewrite(&h).map_err(|err| err.with_span(hspan))?)
            }
            None => None,
        };
        Ok(self.calc(&agg_rel, having, post))
    }
}

fn col(name: &str, ty: DataType, rowtime: bool) -> ScopeColumn {
    ScopeColumn {
        qualifier: None,
        name: name.to_string(),
        data_type: ty,
        rowtime,
    }
}

/// Maps a post-aggregation expression bound against the aggregate's input onto its output:
/// group keys, window columns and aggregate placeholders become output columns; any other input
/// column is an error (it is not grouped).
fn rewrite_post_agg(
    e: &Expr,
    keys: &[Expr],
    nkeys: usize,
    nwin: usize,
    window_base: Option<usize>,
    window_keys: &[usize],
    input: &[ScopeColumn],
) -> SqlResult<Expr> {
    e.rewrite(&mut |x| {
        if let Some(k) = keys.iter().position(|k| k == x) {
            return Ok(Some(Expr::Column(k)));
        }
        let Expr::Column(i) = x else {
            return Ok(None);
        };
        let i = *i;
        if i >= AGG_BASE {
            return Ok(Some(Expr::Column(nkeys + nwin + (i - AGG_BASE))));
        }
        if i >= WINDOW_BASE {
            return Ok(Some(Expr::Column(nkeys + (i - WINDOW_BASE))));
        }
        if let Some(base) = window_base {
            if i >= base && i < base + 3 {
                let w = i - base;
                if w == 2 || window_keys.contains(&w) {
                    return Ok(Some(Expr::Column(nkeys + w)));
                }
            }
        }
        // Flink names the column as written, e.g. `Expression 'qty' is not being grouped`.
        let name = input
            .get(i)
            .map_or_else(|| format!("${i}"), |c| c.name.clone());
        Err(SqlError::validation(format!(
            "Expression '{name}' is not being grouped"
        )))
    })
}

pub(crate) fn schema_of(columns: &[ScopeColumn]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name.clone(), c.data_type.clone()))
            .collect(),
    )
}

fn requalify(mut rel: Rel, q: &str) -> Rel {
    crate::plan_join::uniquify_names(&mut rel.columns);
    for c in &mut rel.columns {
        c.qualifier = Some(q.to_string());
    }
    rel
}

fn requalify_none(mut rel: Rel) -> Rel {
    crate::plan_join::uniquify_names(&mut rel.columns);
    for c in &mut rel.columns {
        c.qualifier = None;
    }
    rel
}

fn tf_alias_columns(tf: &TableFactor) -> Option<Vec<String>> {
    let alias = match tf {
        TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } => alias.as_ref()?,
        _ => return None,
    };
    if alias.columns.is_empty() {
        return None;
    }
    Some(alias.columns.iter().map(|c| c.name.value.clone()).collect())
}

fn rename_columns(
    rel: &mut Rel,
    names: &[String],
    span: Option<std::ops::Range<usize>>,
) -> SqlResult<()> {
    if names.len() != rel.columns.len() {
        return Err(SqlError::validation(format!(
            "List of column aliases must have same degree as table; table has {} columns, whereas alias list has {} columns",
            rel.columns.len(),
            names.len()
        ))
        .with_span(span));
    }
    for (c, n) in rel.columns.iter_mut().zip(names) {
        c.name = n.clone();
    }
    Ok(())
}

/// The dotted name of an object.
pub fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => i.value.clone(),
            ast::ObjectNamePart::Function(f) => f.name.value.clone(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn is_window_col_name(n: &str) -> bool {
    n.eq_ignore_ascii_case("window_start")
        || n.eq_ignore_ascii_case("window_end")
        || n.eq_ignore_ascii_case("window_time")
}

fn mentions_window_columns(e: &AstExpr) -> bool {
    let mut found = false;
    crate::binder::visit(e, &mut |x| match x {
        AstExpr::Identifier(id) if is_window_col_name(&id.value) => found = true,
        AstExpr::CompoundIdentifier(p)
            if p.last().is_some_and(|i| is_window_col_name(&i.value)) =>
        {
            found = true
        }
        _ => {}
    });
    found
}

/// The position of a window column named directly in GROUP BY.
fn window_column_ref(e: &AstExpr, rel: &Rel) -> Option<usize> {
    let (q, name) = match e {
        AstExpr::Identifier(id) => (None, id.value.as_str()),
        AstExpr::CompoundIdentifier(p) if p.len() == 2 => {
            (Some(p[0].value.as_str()), p[1].value.as_str())
        }
        _ => return None,
    };
    if !is_window_col_name(name) {
        return None;
    }
    let i = rel.scope().resolve(q, name).ok()?;
    (i >= rel.base_len()).then_some(i)
}

#[cfg(test)]
mod tests {
    use streamsql_engine::config::Configuration;

    use crate::session::SqlSession;

    fn plan_error(sql: &str) -> String {
        let mut s = SqlSession::new(Configuration::new());
        match s.execute_script(sql) {
            Ok(_) => panic!("expected an error for {sql}"),
            Err(e) => e.message.clone(),
        }
    }

    #[test]
    fn hop_aggregate_needs_size_a_multiple_of_slide() {
        let msg = plan_error(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'datagen');
             SELECT window_start, COUNT(*) FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts),
               INTERVAL '3' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
        );
        assert_eq!(
            msg,
            "HOP table function based aggregate requires size must be an integral multiple of slide, but got size 10000 ms and slide 3000 ms"
        );
    }

    fn outputs(sql: &str) -> Vec<crate::session::StatementOutput> {
        let mut s = SqlSession::new(Configuration::new());
        s.execute_script(sql).expect("script plans").outputs
    }

    #[test]
    fn exact_numerics_insert_into_any_decimal_column() {
        // Flink casts DECIMAL(21, 2) into a DECIMAL(12, 2) sink column implicitly.
        let mut s = SqlSession::new(Configuration::new());
        s.execute_script(
            "CREATE TABLE src (q INT, p DECIMAL(10, 2)) WITH ('connector' = 'datagen');
             CREATE TABLE dst (a DECIMAL(12, 2), b DECIMAL(5, 0)) WITH ('connector' = 'blackhole');
             INSERT INTO dst SELECT p * q, q FROM src",
        )
        .expect("implicit decimal cast is accepted");
    }

    #[test]
    fn describe_and_show_tables_follow_flink() {
        use crate::session::StatementOutput;
        let out = outputs(
            "CREATE TABLE t (id INT, q INT, p DECIMAL(10, 2), ts TIMESTAMP(3), total AS q * p,
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND, PRIMARY KEY (id) NOT ENFORCED)
             WITH ('connector' = 'datagen');
             CREATE VIEW v AS SELECT id FROM t;
             DESCRIBE t;
             SHOW TABLES;
             SHOW VIEWS",
        );
        let tables: Vec<&Vec<Vec<String>>> = out
            .iter()
            .filter_map(|o| match o {
                StatementOutput::Table { rows, .. } => Some(rows),
                _ => None,
            })
            .collect();
        let row = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tables[0][0],
            row(&["id", "INT", "false", "PRI(id)", "", ""])
        );
        assert_eq!(
            tables[0][3],
            row(&[
                "ts",
                "TIMESTAMP(3) *ROWTIME*",
                "true",
                "",
                "",
                "`ts` - INTERVAL '1' SECOND"
            ])
        );
        assert_eq!(
            tables[0][4],
            row(&["total", "DECIMAL(21, 2)", "true", "", "AS `q` * `p`", ""])
        );
        assert_eq!(*tables[1], vec![row(&["t"]), row(&["v"])]);
        assert_eq!(*tables[2], vec![row(&["v"])]);
    }

    #[test]
    fn ungrouped_column_is_named_as_written() {
        let msg = plan_error(
            "CREATE TABLE t (k STRING, qty INT) WITH ('connector' = 'datagen');
             SELECT k, qty FROM t GROUP BY k",
        );
        assert_eq!(msg, "Expression 'qty' is not being grouped");
    }
}
