//! A SQL session: executes the statements of a script against a catalog and a configuration, and
//! gathers every INSERT and SELECT of the script into one job (as a Flink statement set would), so
//! that they run together.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use streamsql_engine::config::Configuration;
use streamsql_engine::connectors::options::Options;
use streamsql_engine::connectors::registry;
use streamsql_engine::expr::coerce;
use streamsql_engine::graph::{DataflowGraph, NodeKind, Partitioning};
use streamsql_engine::operator::{Operator, OperatorFactory};
use streamsql_engine::operators::collect::{CollectSink, Collected};
use streamsql_engine::types::{DataType, Schema};

use crate::ast::{ColumnKind, Insert, Statement};
use crate::binder::{cast_to, Bound, ScopeColumn};
use crate::catalog::{describe_table, Catalog, CatalogEntry, TableEntry, ViewEntry};
use crate::error::{did_you_mean, SqlError, SqlErrorKind, SqlResult};
use crate::parser::parse_script;
use crate::planner::{Planner, Rel};

/// What a statement printed (DDL acknowledgements, listings, plans).
#[derive(Clone, Debug, PartialEq)]
pub enum StatementOutput {
    /// A one-line message such as `[INFO] Execute statement succeeded.`
    Info(String),
    /// A small table (SHOW TABLES, DESCRIBE, SET).
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// The plan of an EXPLAIN.
    Explain(String),
}

/// The result stream of a bare SELECT.
pub struct SelectOutput {
    /// The query's columns.
    pub schema: Schema,
    /// Batches of changes, then `Collected::End`.
    pub receiver: Receiver<Collected>,
}

/// The job a script's INSERTs and SELECTs make.
pub struct JobPlan {
    pub graph: DataflowGraph,
    pub selects: Vec<SelectOutput>,
}

/// Everything a script produced.
pub struct ScriptResult {
    pub outputs: Vec<StatementOutput>,
    /// `None` when the script had no INSERT or SELECT.
    pub job: Option<JobPlan>,
}

/// Tables, views and settings of one session.
#[derive(Default)]
pub struct SqlSession {
    pub catalog: Catalog,
    pub config: Configuration,
    /// Settings a `SET` must not change (the command line's `-D` and `-p` win over the script).
    pub pinned: Vec<(String, String)>,
}

const OK: &str = "[INFO] Execute statement succeeded.";

impl SqlSession {
    pub fn new(config: Configuration) -> Self {
        SqlSession {
            catalog: Catalog::new(),
            config,
            pinned: Vec::new(),
        }
    }

    fn reapply_pinned(&mut self) {
        for (k, v) in &self.pinned {
            // Pinned values were validated when they were first set.
            let _ = self.config.set(k, v);
        }
    }

    /// Runs the DDL and SET statements of `sql` and plans its INSERTs and SELECTs into one job.
    pub fn execute_script(&mut self, sql: &str) -> SqlResult<ScriptResult> {
        let statements = parse_script(sql)?;
        let mut outputs = Vec::new();
        let mut graph = DataflowGraph::new();
        let mut selects = Vec::new();
        for st in &statements {
            self.execute(sql, st, &mut graph, &mut selects, &mut outputs)?;
        }
        let (sub_plans, sources) = self.config.reuse_sub_plans();
        if sub_plans {
            graph.reuse_sub_plans(sources);
        }
        graph.remove_dead_ends();
        graph.chain_sinks();
        let job = if graph.nodes.is_empty() {
            None
        } else {
            let unimplemented = self.config.unimplemented_settings();
            if !unimplemented.is_empty() {
                let list: Vec<String> = unimplemented
                    .iter()
                    .map(|(k, v)| format!("'{k}' = '{v}'"))
                    .collect();
                return Err(SqlError::new(
                    SqlErrorKind::Option,
                    format!(
                        "The job cannot start: {} configure{} a feature this version of streamsql does not implement yet (see docs/config.md), so {} would be ignored",
                        list.join(", "),
                        if list.len() == 1 { "s" } else { "" },
                        if list.len() == 1 { "it" } else { "they" },
                    ),
                )
                .with_help("remove the setting or set it to its default"));
            }
            Some(JobPlan { graph, selects })
        };
        Ok(ScriptResult { outputs, job })
    }

    /// The plan of every INSERT and SELECT of `sql` (after running its DDL), as EXPLAIN shows it.
    pub fn explain_script(&mut self, sql: &str) -> SqlResult<String> {
        let result = self.execute_script(sql)?;
        Ok(result.job.map(|j| j.graph.explain()).unwrap_or_default())
    }

    fn execute(
        &mut self,
        sql: &str,
        st: &Statement,
        graph: &mut DataflowGraph,
        selects: &mut Vec<SelectOutput>,
        outputs: &mut Vec<StatementOutput>,
    ) -> SqlResult<()> {
        match st {
            Statement::CreateTable(t) => {
                if self.catalog.contains(&t.name) {
                    if t.if_not_exists {
                        outputs.push(StatementOutput::Info(OK.into()));
                        return Ok(());
                    }
                    // Flink's catalog message (TableAlreadyExistException).
                    return Err(SqlError::validation(format!(
                        "Table (or view) default_database.{} already exists in Catalog default_catalog",
                        t.name
                    ))
                    .with_span(Some(t.name_span.clone())));
                }
                self.validate_table(sql, t)?;
                self.catalog.insert(
                    t.name.clone(),
                    CatalogEntry::Table(TableEntry {
                        def: t.clone(),
                        sql: sql.to_string(),
                    }),
                );
                outputs.push(StatementOutput::Info(OK.into()));
            }
            Statement::CreateView(v) => {
                if self.catalog.contains(&v.name) {
                    if v.if_not_exists {
                        outputs.push(StatementOutput::Info(OK.into()));
                        return Ok(());
                    }
                    // Flink's catalog message (TableAlreadyExistException).
                    return Err(SqlError::validation(format!(
                        "Table (or view) default_database.{} already exists in Catalog default_catalog",
                        v.name
                    ))
                    .with_span(Some(v.name_span.clone())));
                }
                let entry = ViewEntry {
                    def: v.clone(),
                    sql: sql.to_string(),
                };
                // Validate the view now (Flink does), planning into a scratch graph.
                let mut scratch = DataflowGraph::new();
                let mut planner = Planner::new(sql, &self.catalog, &self.config, &mut scratch);
                planner.validating_view = true;
                planner.plan_query(&v.query)?;
                self.catalog
                    .insert(v.name.clone(), CatalogEntry::View(entry));
                outputs.push(StatementOutput::Info(OK.into()));
            }
            Statement::DropTable {
                name,
                name_span,
                if_exists,
                ..
            }
            | Statement::DropView {
                name,
                name_span,
                if_exists,
                ..
            } => {
                let is_view = matches!(st, Statement::DropView { .. });
                match self.catalog.get(name) {
                    Some(CatalogEntry::View(_)) if !is_view => {
                        return Err(SqlError::validation(format!(
                            "'{name}' is a view: use DROP VIEW"
                        ))
                        .with_span(Some(name_span.clone())))
                    }
                    Some(CatalogEntry::Table(_)) if is_view => {
                        return Err(SqlError::validation(format!(
                            "'{name}' is a table: use DROP TABLE"
                        ))
                        .with_span(Some(name_span.clone())))
                    }
                    Some(_) => {
                        self.catalog.remove(name);
                    }
                    None if *if_exists => {}
                    None => {
                        return Err(SqlError::validation(format!(
                            "{} '{name}' does not exist",
                            if is_view { "View" } else { "Table" }
                        ))
                        .with_span(Some(name_span.clone())))
                    }
                }
                outputs.push(StatementOutput::Info(OK.into()));
            }
            Statement::Set {
                key,
                value,
                key_span,
                value_span,
                ..
            } => {
                self.config.set(key, value).map_err(|e| {
                    let span = match e {
                        streamsql_engine::config::ConfigError::UnknownKey { .. } => {
                            key_span.clone()
                        }
                        _ => value_span.clone(),
                    };
                    let mut err =
                        SqlError::new(SqlErrorKind::Option, e.to_string()).with_span(Some(span));
                    if let Some(h) = e.help() {
                        err = err.with_help(h);
                    }
                    err
                })?;
                self.reapply_pinned();
                outputs.push(StatementOutput::Info(OK.into()));
            }
            Statement::SetList { .. } => {
                let rows = self
                    .config
                    .iter()
                    .map(|(k, v)| vec![k.to_string(), v.to_string()])
                    .collect();
                outputs.push(StatementOutput::Table {
                    header: vec!["key".into(), "value".into()],
                    rows,
                });
            }
            Statement::Reset { key, key_span, .. } => {
                match key {
                    Some(k) => self.config.reset(k).map_err(|e| {
                        let mut err = SqlError::new(SqlErrorKind::Option, e.to_string())
                            .with_span(key_span.clone());
                        if let Some(h) = e.help() {
                            err = err.with_help(h);
                        }
                        err
                    })?,
                    None => self.config = Configuration::new(),
                }
                self.reapply_pinned();
                outputs.push(StatementOutput::Info(OK.into()));
            }
            Statement::Insert(ins) => self.plan_insert(sql, ins, graph)?,
            Statement::StatementSet { inserts, .. } => {
                for ins in inserts {
                    self.plan_insert(sql, ins, graph)?;
                }
            }
            Statement::Query { query, .. } => {
                let rel =
                    Planner::new(sql, &self.catalog, &self.config, graph).plan_query(query)?;
                crate::plan_join::check_one_rowtime(&rel, "*anonymous_collect$1*")?;
                selects.push(self.collect_sink(graph, &rel));
            }
            Statement::Explain { statement, .. } => {
                let mut scratch = DataflowGraph::new();
                let mut scratch_selects = Vec::new();
                let mut scratch_out = Vec::new();
                match statement.as_ref() {
                    Statement::Query { .. }
                    | Statement::Insert(_)
                    | Statement::StatementSet { .. } => {
                        self.execute(
                            sql,
                            statement,
                            &mut scratch,
                            &mut scratch_selects,
                            &mut scratch_out,
                        )?;
                    }
                    other => {
                        return Err(SqlError::unsupported(
                            "EXPLAIN supports queries, INSERT and statement sets",
                        )
                        .with_span(Some(other.span())))
                    }
                }
                let (sub_plans, sources) = self.config.reuse_sub_plans();
                if sub_plans {
                    scratch.reuse_sub_plans(sources);
                }
                scratch.remove_dead_ends();
                scratch.chain_sinks();
                outputs.push(StatementOutput::Explain(scratch.explain()));
            }
            Statement::ShowTables { .. } | Statement::ShowViews { .. } => {
                let views = matches!(st, Statement::ShowViews { .. });
                outputs.push(StatementOutput::Table {
                    header: vec![if views { "view name" } else { "table name" }.into()],
                    rows: self
                        .catalog
                        .names(views)
                        .into_iter()
                        .map(|n| vec![n])
                        .collect(),
                });
            }
            Statement::ShowFunctions { .. } => {
                let mut names: Vec<String> = streamsql_engine::expr::functions::function_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                names.sort();
                outputs.push(StatementOutput::Table {
                    header: vec!["function name".into()],
                    rows: names.into_iter().map(|n| vec![n]).collect(),
                });
            }
            Statement::Describe {
                name, name_span, ..
            } => {
                let rows = match self.catalog.get(name) {
                    Some(CatalogEntry::Table(t)) => describe_table(t),
                    Some(CatalogEntry::View(v)) => {
                        let mut scratch = DataflowGraph::new();
                        let rel = Planner::new(&v.sql, &self.catalog, &self.config, &mut scratch)
                            .plan_query(&v.def.query)?;
                        rel.columns
                            .iter()
                            .map(|c| {
                                vec![
                                    c.name.clone(),
                                    c.data_type.to_string(),
                                    "true".to_string(),
                                    String::new(),
                                    String::new(),
                                    String::new(),
                                ]
                            })
                            .collect()
                    }
                    None => {
                        let mut err = SqlError::validation(format!(
                            "Tables or views with the identifier '{name}' doesn't exist."
                        ))
                        .with_span(Some(name_span.clone()));
                        if let Some(s) = did_you_mean(name, self.catalog.all_names()) {
                            err = err.with_help(format!("did you mean '{s}'?"));
                        }
                        return Err(err);
                    }
                };
                outputs.push(StatementOutput::Table {
                    header: ["name", "type", "null", "key", "extras", "watermark"]
                        .map(String::from)
                        .to_vec(),
                    rows,
                });
            }
        }
        Ok(())
    }

    /// Checks a table definition the way Flink does at CREATE time.
    fn validate_table(&self, _sql: &str, t: &crate::ast::CreateTable) -> SqlResult<()> {
        let mut seen: Vec<&str> = Vec::new();
        for c in &t.columns {
            if seen.iter().any(|s| *s == c.name) {
                return Err(SqlError::validation(format!(
                    "Column '{}' is defined more than once",
                    c.name
                ))
                .with_span(Some(c.name_span.clone())));
            }
            seen.push(&c.name);
        }
        if let Some(pk) = &t.primary_key {
            for (k, s) in pk.columns.iter().zip(&pk.column_spans) {
                let physical = t
                    .columns
                    .iter()
                    .any(|c| &c.name == k && matches!(c.kind, ColumnKind::Physical { .. }));
                if !physical {
                    return Err(SqlError::validation(format!(
                        "Could not create a PRIMARY KEY with column '{k}': it is not a physical column of the table"
                    ))
                    .with_span(Some(s.clone())));
                }
            }
        }
        if let Some(w) = &t.watermark {
            if !t.columns.iter().any(|c| c.name == w.column) {
                let mut err = SqlError::validation(format!(
                    "The rowtime attribute field '{}' is not defined in the table schema, at line",
                    w.column
                ));
                err.message = format!(
                    "The rowtime attribute field '{}' is not defined in the table schema",
                    w.column
                );
                return Err(err.with_span(Some(w.column_span.clone())));
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        for o in &t.options {
            if keys.contains(&o.key.as_str()) {
                return Err(SqlError::new(
                    SqlErrorKind::Option,
                    format!("Duplicate option key '{}'", o.key),
                )
                .with_span(Some(o.key_span.clone())));
            }
            keys.push(&o.key);
        }
        Ok(())
    }

    fn collect_sink(&self, graph: &mut DataflowGraph, rel: &Rel) -> SelectOutput {
        let (tx, rx) = bounded::<Collected>(16);
        let schema = rel.schema();
        let factory: Arc<dyn OperatorFactory> =
            Arc::new(move |_: &streamsql_engine::operator::TaskContext| {
                Ok(Box::new(CollectSink::new(tx.clone())) as Box<dyn Operator>)
            });
        let part = if rel.parallelism == 1 {
            Partitioning::Forward
        } else {
            Partitioning::Global
        };
        graph.add_node(
            "CollectSink",
            format!(
                "fields=[{}]",
                schema
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            1,
            schema.clone(),
            NodeKind::Operator(factory),
            &[(rel.node, part)],
        );
        SelectOutput {
            schema,
            receiver: rx,
        }
    }

    fn plan_insert(&self, sql: &str, ins: &Insert, graph: &mut DataflowGraph) -> SqlResult<()> {
        let target = match self.catalog.get(&ins.table) {
            Some(CatalogEntry::Table(t)) => t.clone(),
            Some(CatalogEntry::View(_)) => {
                return Err(SqlError::validation(format!(
                    "'{}' is a view: INSERT needs a table",
                    ins.table
                ))
                .with_span(Some(ins.table_span.clone())))
            }
            None => {
                let mut err = SqlError::validation(format!(
                    "Cannot find table '`default_catalog`.`default_database`.`{}`' in any of the catalogs [default_catalog], nor as a temporary table.",
                    ins.table
                ))
                    .with_span(Some(ins.table_span.clone()));
                if let Some(s) = did_you_mean(&ins.table, self.catalog.all_names()) {
                    err = err.with_help(format!("did you mean '{s}'?"));
                }
                return Err(err);
            }
        };
        let rel = Planner::new(sql, &self.catalog, &self.config, graph).plan_query(&ins.query)?;
        let schema = target.physical_schema();
        let full_name = format!("default_catalog.default_database.{}", target.def.name);
        crate::plan_join::check_one_rowtime(&rel, &full_name)?;
        // Which query column feeds which sink column.
        let mapping: Vec<Option<usize>> = if ins.columns.is_empty() {
            if rel.columns.len() != schema.len() {
                return Err(SqlError::validation(format!(
                    "Column types of query result and sink for '{full_name}' do not match.\nCause: Different number of columns.\n\nQuery schema: [{}]\nSink schema:  [{}]",
                    rel.columns.iter().map(|c| format!("{}: {}", c.name, c.data_type)).collect::<Vec<_>>().join(", "),
                    schema.fields.iter().map(|f| format!("{}: {}", f.name, f.data_type)).collect::<Vec<_>>().join(", ")
                ))
                .with_span(Some(ins.span.clone())));
            }
            (0..schema.len()).map(Some).collect()
        } else {
            if ins.columns.len() != rel.columns.len() {
                return Err(SqlError::validation(format!(
                    "Column types of query result and sink for '{full_name}' do not match.\nCause: Different number of columns."
                ))
                .with_span(Some(ins.span.clone())));
            }
            let mut m = vec![None; schema.len()];
            for (qi, (c, s)) in ins.columns.iter().zip(&ins.column_spans).enumerate() {
                let si = schema.index_of(c).ok_or_else(|| {
                    SqlError::validation(format!("Unknown target column '{c}'"))
                        .with_span(Some(s.clone()))
                })?;
                m[si] = Some(qi);
            }
            m
        };
        let mut projections = Vec::new();
        for (si, f) in schema.fields.iter().enumerate() {
            let b = match mapping[si] {
                Some(qi) => {
                    let from = rel.columns[qi].data_type.clone();
                    let ok = from == f.data_type
                        || from == DataType::Null
                        || coerce::common_type(&from, &f.data_type)
                            .is_some_and(|t| t == f.data_type)
                        || (from.is_string() && f.data_type.is_string())
                        || (from.is_timestamp() && f.data_type.is_timestamp())
                        // Flink casts any exact numeric to a DECIMAL sink column implicitly,
                        // whatever the precision (LogicalTypeCasts: DECIMAL implicit from
                        // EXACT_NUMERIC).
                        || (matches!(f.data_type, DataType::Decimal(..))
                            && matches!(
                                from,
                                DataType::TinyInt
                                    | DataType::SmallInt
                                    | DataType::Int
                                    | DataType::BigInt
                                    | DataType::Decimal(..)
                            ));
                    if !ok {
                        return Err(SqlError::validation(format!(
                            "Column types of query result and sink for '{full_name}' do not match.\nCause: Incompatible types for sink column '{}' at position {si}.\n\nQuery schema: [{}]\nSink schema:  [{}]",
                            f.name,
                            rel.columns.iter().map(|c| format!("{}: {}", c.name, c.data_type)).collect::<Vec<_>>().join(", "),
                            schema.fields.iter().map(|f| format!("{}: {}", f.name, f.data_type)).collect::<Vec<_>>().join(", ")
                        ))
                        .with_span(Some(ins.span.clone())));
                    }
                    cast_to(
                        Bound {
                            expr: streamsql_engine::expr::Expr::Column(qi),
                            ty: from,
                        },
                        &f.data_type,
                    )
                }
                None => Bound {
                    expr: streamsql_engine::expr::Expr::Literal(
                        streamsql_engine::value::Value::Null,
                    ),
                    ty: f.data_type.clone(),
                },
            };
            projections.push((
                b.expr,
                ScopeColumn {
                    qualifier: None,
                    name: f.name.clone(),
                    data_type: f.data_type.clone(),
                    rowtime: false,
                },
            ));
        }
        let connector = target.option("connector").ok_or_else(|| {
            SqlError::new(
                SqlErrorKind::Option,
                format!(
                    "Table options do not contain an option key 'connector' for discovering a connector. Table: '{}'",
                    target.def.name
                ),
            )
            .with_span(Some(target.def.name_span.clone()))
        })?;
        let options = Options::from_pairs(
            target
                .def
                .options
                .iter()
                .filter(|o| o.key != "connector")
                .map(|o| (o.key.clone(), o.value.clone())),
        );
        let sink =
            registry::create_sink(connector, &target.def.name, &schema, &options).map_err(|e| {
                let span = target.option_error_span(&e.to_string());
                SqlError::from_engine(e, Some(span))
            })?;
        if !rel.append_only && !sink.accepts_updates {
            let producer = graph
                .nodes
                .get(rel.node)
                .map(|n| format!("{}({})", n.name, n.description))
                .unwrap_or_default();
            return Err(SqlError::validation(format!(
                "Table sink '{full_name}' doesn't support consuming update and delete changes which is produced by node {producer}"
            ))
            .with_span(Some(ins.span.clone())));
        }
        let mut planner = Planner::new(sql, &self.catalog, &self.config, graph);
        let casted = planner.calc(&rel, None, projections);
        // `sink.parallelism` sets the sink's own parallelism; rows then travel round robin, as in
        // Flink when the sink's parallelism differs from its input's.
        let parallelism = sink.parallelism.unwrap_or(casted.parallelism).max(1);
        let partitioning = if parallelism == casted.parallelism {
            Partitioning::Forward
        } else {
            Partitioning::Rebalance
        };
        let node = graph.add_node(
            "Sink",
            format!("table=[{full_name}], {}", sink.description),
            parallelism,
            schema,
            NodeKind::Operator(sink.factory),
            &[(casted.node, partitioning)],
        );
        graph.nodes[node].chainable_sink = sink.chainable;
        Ok(())
    }
}
