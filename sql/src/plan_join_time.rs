//! Planning of the joins driven by event time: window joins and event-time temporal joins.
//!
//! [`Planner::plan_time_join`] looks at one `JOIN` of a FROM clause and plans it when it is one
//! of them, or hands the left input back so that the regular join planning takes it:
//! - a *window join* when both inputs are windowed (a window TVF, a window aggregation or a
//!   window join, seen through projections and filters, as Flink's window-properties metadata
//!   sees them), with the same rowtime type, and the ON condition equates both `window_start`s
//!   and both `window_end`s. Otherwise (for example a TIMESTAMP window joined with a TIMESTAMP_LTZ one)
//!   Flink plans a regular join, and so do we.
//! - a *temporal join* when the right input is `table FOR SYSTEM_TIME AS OF left.rowtime`.
//!
//! The ON condition is analysed as for regular joins (`plan_join.rs`): its `left column = right
//! column` conjuncts are the equi keys (the hash exchange and the operators' state keys),
//! everything else is a residual predicate over `left row ++ right row`.

use sqlparser::ast::{self, Expr as AstExpr, JoinConstraint, JoinOperator};
use streamsql_engine::expr::functions::CmpOp;
use streamsql_engine::expr::{Expr, ScalarFunction};
use streamsql_engine::graph::Partitioning;
use streamsql_engine::operator::Operator;
use streamsql_engine::operators::temporal_join::{
    TemporalJoin, TemporalJoinSpec, TemporalJoinType,
};
use streamsql_engine::operators::window_join::{WindowJoin, WindowJoinSpec, WindowJoinType};
use streamsql_engine::types::DataType;

use crate::binder::ExprBinder;
use crate::catalog::CatalogEntry;
use crate::error::{SqlError, SqlResult};
use crate::plan_join::{analyze_join_condition, JoinKind};
use crate::planner::{describe_exprs, object_name, op_factory, schema_of, Planner, Rel};

/// An ON condition split into equi keys and the rest.
struct JoinCondition {
    /// (left column, right column) pairs, in condition order.
    pairs: Vec<(usize, usize)>,
    /// The other conjuncts, over `left ++ right` columns.
    residual: Vec<Expr>,
}

/// The window columns of a windowed relation.
#[derive(Clone, Debug, PartialEq)]
struct WindowColumns {
    /// Columns holding `window_start` (a window join's output has one per input).
    starts: Vec<usize>,
    /// Columns holding `window_end`.
    ends: Vec<usize>,
    /// The rowtime type the window was computed on (`window_time`'s type), as SQL text.
    time_type: String,
}

fn join_kind(op: &JoinOperator) -> Option<(JoinKind, &JoinConstraint)> {
    Some(match op {
        JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
        JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, c),
        JoinOperator::FullOuter(c) => (JoinKind::Full, c),
        _ => return None,
    })
}

/// `e` over the right input's columns made an expression over the joined row (`by` left
/// columns first).
fn shift_right(e: &Expr, by: usize) -> Expr {
    let shifted = e.rewrite::<std::convert::Infallible>(&mut |x| {
        Ok(match x {
            Expr::Column(i) => Some(Expr::Column(i + by)),
            _ => None,
        })
    });
    match shifted {
        Ok(x) => x,
        Err(never) => match never {},
    }
}

/// Whether values of types `a` and `b` that compare equal also hash equal, so that the columns
/// can be join keys as they are: integers and decimals hash by value, strings by their text;
/// other types only match their own kind. A pair that cannot is kept as a residual condition.
fn same_key_family(a: &DataType, b: &DataType) -> bool {
    let exact = |t: &DataType| t.is_integer() || matches!(t, DataType::Decimal(..));
    (exact(a) && exact(b))
        || (a.is_string() && b.is_string())
        || std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The AND of `exprs`, or `None` when there are none.
fn and_all(mut exprs: Vec<Expr>) -> Option<Expr> {
    match exprs.len() {
        0 => None,
        1 => exprs.pop(),
        _ => Some(Expr::And(exprs)),
    }
}

impl Planner<'_> {
    /// Plans `left JOIN join.relation` when it is a window join or an event-time temporal join;
    /// otherwise returns `left` untouched (and the graph as it was) for the regular join
    /// planning.
    pub(crate) fn plan_time_join(
        &mut self,
        left: Rel,
        join: &ast::Join,
    ) -> SqlResult<Result<Rel, Rel>> {
        let span = self.span(join);
        let Some((kind, constraint)) = join_kind(&join.join_operator) else {
            return Ok(Err(left));
        };
        if let ast::TableFactor::Table {
            version: Some(version),
            ..
        } = &join.relation
        {
            return self
                .plan_temporal_join(left, kind, constraint, &join.relation, version, span)
                .map(Ok);
        }
        let JoinConstraint::On(on) = constraint else {
            return Ok(Err(left));
        };
        let left = self.materialize(left)?;
        let Some(left_window) = self.window_columns(&left) else {
            return Ok(Err(left));
        };
        let mark = self.graph.nodes.len();
        let right = self.plan_table_factor(&join.relation)?;
        let right = self.materialize(right)?;
        let planned = match self.window_columns(&right) {
            Some(right_window) if right_window.time_type == left_window.time_type => {
                self.plan_window_join(&left, &right, kind, on, (&left_window, &right_window), span)?
            }
            _ => None,
        };
        match planned {
            Some(rel) => Ok(Ok(rel)),
            None => {
                // Not a window join: forget the right input, the regular join plans it again.
                self.graph.nodes.truncate(mark);
                self.graph.edges.retain(|e| e.from < mark && e.to < mark);
                Ok(Err(left))
            }
        }
    }

    /// Splits the ON condition over `left ++ right` (with the regular joins' analysis): key pairs
    /// between plain columns whose equal values hash alike become join keys, every other
    /// conjunct (other key pairs included) the residual condition.
    fn join_condition(&self, on: &AstExpr, left: &Rel, right: &Rel) -> SqlResult<JoinCondition> {
        let analyzed = analyze_join_condition(self.sql, left, right, on)?;
        let n_left = left.columns.len();
        let mut pairs = Vec::new();
        let mut residual = analyzed.residual;
        for (l, r) in analyzed.left_keys.into_iter().zip(analyzed.right_keys) {
            match (&l, &r) {
                (Expr::Column(x), Expr::Column(y))
                    if same_key_family(
                        &left.columns[*x].data_type,
                        &right.columns[*y].data_type,
                    ) =>
                {
                    pairs.push((*x, *y));
                }
                _ => residual.push(Expr::Call {
                    func: ScalarFunction::Cmp(CmpOp::Eq),
                    args: vec![l, shift_right(&r, n_left)],
                    ret: DataType::Boolean,
                }),
            }
        }
        Ok(JoinCondition { pairs, residual })
    }

    /// Where a column of `rel` comes from: a column of a node that is not a planner-made
    /// `Calc`, seen through the `Calc` on top of `rel` if any.
    fn column_origin(&self, rel: &Rel, col: usize) -> Option<(usize, usize)> {
        match &rel.calc {
            Some(calc) => match calc.exprs.get(col)? {
                Expr::Column(c) if calc.input.calc.is_none() => Some((calc.input.node, *c)),
                _ => None,
            },
            None => Some((rel.node, col)),
        }
    }

    /// The window columns of `rel` when it is windowed (Flink's window properties): its
    /// `window_start` and `window_end` columns come straight from a window table function, a
    /// window aggregation or a window join.
    fn window_columns(&self, rel: &Rel) -> Option<WindowColumns> {
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut time_type = None;
        for col in 0..rel.columns.len() {
            let Some((node, c)) = self.column_origin(rel, col) else {
                continue;
            };
            let n = &self.graph.nodes[node];
            let fields = &n.schema.fields;
            let role = match n.name.as_str() {
                "WindowTableFunction" => {
                    let len = fields.len();
                    time_type = fields.last().map(|f| f.data_type.to_string());
                    (c + 3 == len)
                        .then_some(true)
                        .or((c + 2 == len).then_some(false))
                }
                "WindowAggregate" => {
                    time_type = fields
                        .iter()
                        .find(|f| f.name == "window_time")
                        .map(|f| f.data_type.to_string());
                    match fields.get(c).map(|f| f.name.as_str()) {
                        Some("window_start") => Some(true),
                        Some("window_end") => Some(false),
                        _ => None,
                    }
                }
                "WindowJoin" => {
                    // A window join's output is windowed by both inputs' bounds (recorded in
                    // its description, see `plan_window_join`).
                    let (l, r, rowtime) = recorded_window_join(&n.description)?;
                    let left_arity = self
                        .graph
                        .inputs_of(node)
                        .first()
                        .map(|e| self.graph.nodes[e.from].schema.fields.len())?;
                    time_type = Some(rowtime);
                    if c == l.0 || c == left_arity + r.0 {
                        Some(true)
                    } else if c == l.1 || c == left_arity + r.1 {
                        Some(false)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            match role {
                Some(true) => starts.push(col),
                Some(false) => ends.push(col),
                None => {}
            }
        }
        if starts.is_empty() || ends.is_empty() {
            return None;
        }
        Some(WindowColumns {
            starts,
            ends,
            time_type: time_type?,
        })
    }

    /// Plans the window join when the condition equates both window bounds.
    fn plan_window_join(
        &mut self,
        left: &Rel,
        right: &Rel,
        kind: JoinKind,
        on: &AstExpr,
        (lw, rw): (&WindowColumns, &WindowColumns),
        span: Option<std::ops::Range<usize>>,
    ) -> SqlResult<Option<Rel>> {
        let cond = self.join_condition(on, left, right)?;
        let equated = |l: &[usize], r: &[usize]| {
            cond.pairs
                .iter()
                .copied()
                .find(|(a, b)| l.contains(a) && r.contains(b))
        };
        let (Some(starts), Some(ends)) =
            (equated(&lw.starts, &rw.starts), equated(&lw.ends, &rw.ends))
        else {
            return Ok(None);
        };
        if !left.append_only || !right.append_only {
            return Err(SqlError::unsupported(
                "a window join takes append-only inputs (window table functions or window aggregations)",
            )
            .with_span(span));
        }
        let (left_keys, right_keys): (Vec<usize>, Vec<usize>) = cond
            .pairs
            .iter()
            .filter(|p| **p != starts && **p != ends)
            .copied()
            .unzip();
        let join_type = match kind {
            JoinKind::Inner => WindowJoinType::Inner,
            JoinKind::Left => WindowJoinType::Left,
            JoinKind::Right => WindowJoinType::Right,
            JoinKind::Full => WindowJoinType::Full,
        };
        let columns: Vec<_> = left.columns.iter().chain(&right.columns).cloned().collect();
        let condition = and_all(cond.residual);
        let mut description = format!(
            "joinType=[{}], leftKeys=[{}], rightKeys=[{}], leftWindow=[${}, ${}], \
             rightWindow=[${}, ${}], rowtime=[{}]",
            join_type.name(),
            key_names(&left_keys, left),
            key_names(&right_keys, right),
            starts.0,
            ends.0,
            starts.1,
            ends.1,
            lw.time_type,
        );
        if let Some(c) = &condition {
            description.push_str(&format!(
                ", where=[{}]",
                describe_exprs(std::slice::from_ref(c), &columns)
            ));
        }
        let spec = WindowJoinSpec {
            join_type,
            left_keys: left_keys.clone(),
            right_keys: right_keys.clone(),
            left_window: (starts.0, ends.0),
            right_window: (starts.1, ends.1),
            left_arity: left.columns.len(),
            right_arity: right.columns.len(),
            condition,
        };
        let (p, lpart, rpart) = partitionings(self.parallelism(), left_keys, right_keys);
        let node = self.graph.add_node(
            "WindowJoin",
            description,
            p,
            schema_of(&columns),
            op_factory(move |ctx| {
                Ok(Box::new(WindowJoin::new(spec.clone(), ctx)?) as Box<dyn Operator>)
            }),
            &[(left.node, lpart), (right.node, rpart)],
        );
        Ok(Some(Rel::new(node, columns, true, p)))
    }

    /// Plans `left [LEFT] JOIN table FOR SYSTEM_TIME AS OF left.rowtime ON ...`.
    fn plan_temporal_join(
        &mut self,
        left: Rel,
        kind: JoinKind,
        constraint: &JoinConstraint,
        relation: &ast::TableFactor,
        version: &ast::TableVersion,
        span: Option<std::ops::Range<usize>>,
    ) -> SqlResult<Rel> {
        let ast::TableFactor::Table { name, alias, .. } = relation else {
            return Err(SqlError::internal("a versioned table is not a table"));
        };
        let relation_span = self.span(relation);
        let join_type = match kind {
            JoinKind::Inner => TemporalJoinType::Inner,
            JoinKind::Left => TemporalJoinType::Left,
            JoinKind::Right => {
                return Err(SqlError::unsupported("Unknown join type RIGHT").with_span(span))
            }
            JoinKind::Full => {
                return Err(SqlError::unsupported("Unknown join type FULL").with_span(span))
            }
        };
        let ast::TableVersion::ForSystemTimeAsOf(as_of) = version else {
            return Err(SqlError::unsupported(
                "only FOR SYSTEM_TIME AS OF is supported for temporal joins",
            )
            .with_span(relation_span));
        };
        let left = self.materialize(left)?;
        let as_of_span = self.span(as_of);
        let left_time = match ExprBinder::new(self.sql, &left.scope()).bind(as_of)?.expr {
            Expr::Column(c) if left.columns[c].rowtime => c,
            _ => {
                return Err(SqlError::validation(
                    "Temporal table join currently only supports 'FOR SYSTEM_TIME AS OF' left table's time attribute field",
                )
                .with_span(as_of_span))
            }
        };
        let table_name = object_name(name);
        let table = match self.catalog.get(&table_name) {
            Some(CatalogEntry::Table(t)) => Some(t.clone()),
            _ => None,
        };
        let alias = alias.as_ref().map(|a| a.name.value.clone());
        let right = self.plan_named(&table_name, alias.as_deref(), relation_span.clone())?;
        let right = self.materialize(right)?;
        let primary_key: Vec<String> = match &table {
            Some(t) => t
                .def
                .primary_key
                .as_ref()
                .map(|pk| pk.columns.clone())
                .unwrap_or_default(),
            None => {
                return Err(SqlError::unsupported(
                    "temporal joins against views are not supported yet; join a table with a PRIMARY KEY and a WATERMARK",
                )
                .with_span(relation_span))
            }
        };
        if primary_key.is_empty() {
            return Err(no_primary_key().with_span(relation_span.clone()));
        }
        let Some(right_time) = right.columns.iter().position(|c| c.rowtime) else {
            return Err(SqlError::validation(
                "Event-Time Temporal Table Join requires both primary key and row time attribute in versioned table, but no row time attribute can be found.",
            )
            .with_span(relation_span.clone()));
        };
        let JoinConstraint::On(on) = constraint else {
            return Err(
                SqlError::unsupported("a temporal join needs an ON condition").with_span(span),
            );
        };
        let cond = self.join_condition(on, &left, &right)?;
        if cond.pairs.is_empty() {
            return Err(SqlError::validation(
                "Currently the join key in Temporal Table Join can not be empty.",
            )
            .with_span(self.span(on)));
        }
        // Flink finds the versioned table's key only among the join keys.
        let right_scope = right.scope();
        let covered = |pk: &String| {
            right_scope
                .resolve(None, pk)
                .is_ok_and(|c| cond.pairs.iter().any(|(_, r)| *r == c))
        };
        if !primary_key.iter().all(covered) {
            return Err(no_primary_key().with_span(relation_span));
        }
        let (left_keys, right_keys): (Vec<usize>, Vec<usize>) = cond.pairs.iter().copied().unzip();
        let mut columns: Vec<_> = left.columns.iter().chain(&right.columns).cloned().collect();
        // Only the left rowtime stays a time attribute.
        for c in &mut columns[left.columns.len()..] {
            c.rowtime = false;
        }
        let condition = and_all(cond.residual);
        let mut description = format!(
            "joinType=[{}], leftKeys=[{}], rightKeys=[{}], leftTime=[{}], rightTime=[{}]",
            join_type.name(),
            key_names(&left_keys, &left),
            key_names(&right_keys, &right),
            left.columns[left_time].name,
            right.columns[right_time].name,
        );
        if let Some(c) = &condition {
            description.push_str(&format!(
                ", where=[{}]",
                describe_exprs(std::slice::from_ref(c), &columns)
            ));
        }
        let spec = TemporalJoinSpec {
            join_type,
            left_keys: left_keys.clone(),
            right_keys: right_keys.clone(),
            left_time,
            right_time,
            left_arity: left.columns.len(),
            right_arity: right.columns.len(),
            condition,
        };
        let (p, lpart, rpart) = partitionings(self.parallelism(), left_keys, right_keys);
        let node = self.graph.add_node(
            "TemporalJoin",
            description,
            p,
            schema_of(&columns),
            op_factory(move |ctx| {
                Ok(Box::new(TemporalJoin::new(spec.clone(), ctx)?) as Box<dyn Operator>)
            }),
            &[(left.node, lpart), (right.node, rpart)],
        );
        Ok(Rel::new(node, columns, left.append_only, p))
    }
}

/// The (window_start, window_end) columns of an input.
type Bounds = (usize, usize);

/// The window bounds a `WindowJoin` node's description records: the left input's
/// (start, end) columns, the right input's, and the rowtime type.
fn recorded_window_join(description: &str) -> Option<(Bounds, Bounds, String)> {
    let bounds = |tag: &str| -> Option<Bounds> {
        let rest = description.split_once(tag)?.1;
        let (start, rest) = rest.split_once(", $")?;
        let (end, _) = rest.split_once(']')?;
        Some((start.parse().ok()?, end.parse().ok()?))
    };
    let rowtime = description.split_once("rowtime=[")?.1.split_once(']')?.0;
    Some((
        bounds("leftWindow=[$")?,
        bounds("rightWindow=[$")?,
        rowtime.to_string(),
    ))
}

/// Flink's error for a versioned table whose primary key is not among the join keys.
fn no_primary_key() -> SqlError {
    SqlError::validation(
        "Temporal Table Join requires primary key in versioned table, but no primary key can be found.",
    )
}

/// The names of key columns, for EXPLAIN.
fn key_names(keys: &[usize], rel: &Rel) -> String {
    keys.iter()
        .map(|k| rel.columns[*k].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parallelism and input exchanges of a join on these keys: hashed by key, or everything on
/// one subtask without keys.
fn partitionings(
    parallelism: usize,
    left_keys: Vec<usize>,
    right_keys: Vec<usize>,
) -> (usize, Partitioning, Partitioning) {
    if left_keys.is_empty() {
        (1, Partitioning::Global, Partitioning::Global)
    } else {
        (
            parallelism,
            Partitioning::Hash(left_keys),
            Partitioning::Hash(right_keys),
        )
    }
}

#[cfg(test)]
mod tests {
    use streamsql_engine::config::Configuration;

    use crate::session::{SqlSession, StatementOutput};

    const TABLES: &str = "
        CREATE TABLE a (k STRING, n INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
          WITH ('connector' = 'datagen');
        CREATE TABLE b (k STRING, n BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
          WITH ('connector' = 'datagen');
        CREATE TABLE c (k STRING, n INT, ts TIMESTAMP_LTZ(3), WATERMARK FOR ts AS ts)
          WITH ('connector' = 'datagen');
        CREATE TABLE v (k STRING, x DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts,
          PRIMARY KEY (k) NOT ENFORCED) WITH ('connector' = 'datagen');";

    fn plan(query: &str) -> String {
        let mut s = SqlSession::new(Configuration::new());
        let script = format!("{TABLES}\nEXPLAIN {query};");
        let outputs = s.execute_script(&script).expect("script plans").outputs;
        match outputs.last() {
            Some(StatementOutput::Explain(p)) => p.clone(),
            _ => panic!("no plan"),
        }
    }

    fn tumble(t: &str) -> String {
        // Without window_time: a result may carry only one rowtime attribute.
        format!(
            "(SELECT k, n, ts, window_start, window_end \
             FROM TABLE(TUMBLE(TABLE {t}, DESCRIPTOR(ts), INTERVAL '1' MINUTE)))"
        )
    }

    const ON_WINDOW: &str = "L.window_start = R.window_start AND L.window_end = R.window_end";

    #[test]
    fn window_joins_need_both_bounds_and_the_same_rowtime_type() {
        let p = plan(&format!(
            "SELECT * FROM {} L JOIN {} R ON L.k = R.k AND L.n = R.n AND {ON_WINDOW}",
            tumble("a"),
            tumble("b")
        ));
        // INT and BIGINT keys hash alike: both are keys.
        assert!(
            p.contains("WindowJoin(parallelism=1): joinType=[InnerJoin], leftKeys=[k, n], rightKeys=[k, n], leftWindow=[$3, $4], rightWindow=[$3, $4], rowtime=[TIMESTAMP(3)]"),
            "{p}"
        );
        // Only window_start equated: a regular join.
        let p = plan(&format!(
            "SELECT * FROM {} L JOIN {} R ON L.k = R.k AND L.window_start = R.window_start",
            tumble("a"),
            tumble("b")
        ));
        assert!(!p.contains("WindowJoin"), "{p}");
        // TIMESTAMP and TIMESTAMP_LTZ windows: a regular join, as in Flink.
        let p = plan(&format!(
            "SELECT * FROM {} L LEFT JOIN {} R ON L.k = R.k AND {ON_WINDOW}",
            tumble("a"),
            tumble("c")
        ));
        assert!(!p.contains("WindowJoin"), "{p}");
        // A window aggregation behind a renaming projection is windowed too.
        let p = plan(&format!(
            "SELECT * FROM (SELECT k, window_start AS s, window_end AS e, COUNT(*) AS cnt \
             FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             GROUP BY k, window_start, window_end) L \
             FULL JOIN {} R ON L.k = R.k AND L.s = R.window_start AND L.e = R.window_end",
            tumble("b")
        ));
        assert!(p.contains("joinType=[FullOuterJoin], leftKeys=[k]"), "{p}");
    }

    #[test]
    fn a_window_join_is_windowed_for_the_next_one() {
        let p = plan(&format!(
            "SELECT * FROM {} A JOIN {} B ON A.k = B.k AND A.window_start = B.window_start \
             AND A.window_end = B.window_end \
             LEFT JOIN {} C ON B.k = C.k AND B.window_start = C.window_start \
             AND B.window_end = C.window_end",
            tumble("a"),
            tumble("b"),
            tumble("a")
        ));
        assert_eq!(p.matches("WindowJoin(").count(), 2, "{p}");
        assert!(
            p.contains(
                "joinType=[LeftOuterJoin], leftKeys=[k], rightKeys=[k], leftWindow=[$8, $9]"
            ),
            "{p}"
        );
    }

    #[test]
    fn a_versioned_table_outside_a_temporal_join_is_refused() {
        let mut s = SqlSession::new(Configuration::new());
        let script = format!(
            "{TABLES}\nSELECT * FROM v FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 00:00:00';"
        );
        let err = s.execute_script(&script).err().expect("an error");
        assert!(
            err.message
                .starts_with("FOR SYSTEM_TIME AS OF is only supported on the right side"),
            "{}",
            err.message
        );
    }

    #[test]
    fn temporal_joins_key_on_the_equi_keys_and_keep_the_residual() {
        let p = plan(
            "SELECT * FROM a LEFT JOIN v FOR SYSTEM_TIME AS OF a.ts AS r \
             ON a.k = r.k AND r.x > a.n",
        );
        assert!(
            p.contains(
                "TemporalJoin(parallelism=1): joinType=[LeftOuterJoin], leftKeys=[k], \
                 rightKeys=[k], leftTime=[ts], rightTime=[ts], where=[>(x, n)]"
            ),
            "{p}"
        );
    }
}
