//! The statements of a Flink SQL script, as the parser hands them to the binder.
//!
//! DDL, `SET`/`RESET`, `INSERT`, statement sets and the catalog commands are our own types,
//! resolved down to plain names and engine types. Queries and expressions stay in sqlparser's
//! AST (`sqlparser::ast::Query`, `sqlparser::ast::Expr`); they never leave this crate.
//!
//! Invariants:
//! - every span is a byte range into the script text that was parsed, and slices it at char
//!   boundaries, so `&sql[span]` never panics for that script;
//! - a statement's span runs from its first token to its last, excluding the terminating `;`
//!   and any comments before it, so `Statement::text` is stable under reformatting of what
//!   surrounds the statement;
//! - identifiers are stored unquoted and with their case as written (Flink's identifiers are
//!   case-sensitive); multi-part names are joined with `.`.
//!
//! # How Flink-only query syntax appears in sqlparser's AST
//!
//! - `TABLE(f(...)) [AS w]` in `FROM` is `TableFactor::TableFunction { expr: Expr::Function f,
//!   alias }`. Use [`crate::parser::window_tvf`] to read a window TVF out of it.
//! - A table argument `TABLE t [PARTITION BY c | PARTITION BY (c1, c2)]` inside a function call
//!   is `Expr::Function` named [`TABLE_ARG_FUNCTION`] (`__TABLE`) whose arguments are, in order:
//!   the table name (`Expr::Identifier` or `Expr::CompoundIdentifier`), then one
//!   `Expr::Identifier` per partition column. Its span is that of the `TABLE` keyword through the
//!   name. Anywhere but the first argument of a window TVF it is an error for the binder.
//! - `DESCRIPTOR(c)` stays an ordinary function call named `DESCRIPTOR`.
//! - Named arguments `DATA => TABLE t` are `FunctionArg::Named` with operator `RightArrow`.
//! - `INTERVAL '20' MINUTES` is `Expr::Interval` with `leading_field` `Minutes` (plural units keep
//!   their plural `DateTimeField`); evaluate it with [`crate::parser::interval_millis_or_months`].
//! - `TIMESTAMP(p) WITH LOCAL TIME ZONE` is rewritten before parsing to `TIMESTAMP_LTZ(p)`, which
//!   sqlparser keeps as `DataType::Custom`; [`crate::parser::convert_data_type`] maps both.
//! - `t FOR SYSTEM_TIME AS OF expr` is `TableFactor::Table { version:
//!   Some(TableVersion::ForSystemTimeAsOf(expr)), .. }`.

use std::ops::Range;

use streamsql_engine::types::DataType;

/// The name of the synthetic function that carries a `TABLE t [PARTITION BY ...]` argument.
pub const TABLE_ARG_FUNCTION: &str = "__TABLE";

/// One statement of a script.
// A script holds a handful of statements, so the size of the largest variant costs nothing
// worth an indirection at every use.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `CREATE [TEMPORARY] TABLE [IF NOT EXISTS] name (...) WITH (...)`.
    CreateTable(CreateTable),
    /// `CREATE [TEMPORARY] VIEW [IF NOT EXISTS] name AS query`.
    CreateView(CreateView),
    /// `DROP [TEMPORARY] TABLE [IF EXISTS] name`.
    DropTable {
        name: String,
        name_span: Range<usize>,
        if_exists: bool,
        temporary: bool,
        span: Range<usize>,
    },
    /// `DROP [TEMPORARY] VIEW [IF EXISTS] name`.
    DropView {
        name: String,
        name_span: Range<usize>,
        if_exists: bool,
        temporary: bool,
        span: Range<usize>,
    },
    /// `SET 'key' = 'value'`.
    Set {
        key: String,
        value: String,
        key_span: Range<usize>,
        value_span: Range<usize>,
        span: Range<usize>,
    },
    /// Bare `SET`: list the session's settings.
    SetList { span: Range<usize> },
    /// `RESET 'key'`, or bare `RESET` (all keys) when `key` is `None`.
    Reset {
        key: Option<String>,
        key_span: Option<Range<usize>>,
        span: Range<usize>,
    },
    /// `INSERT INTO t [(cols)] query`, also written `EXECUTE INSERT INTO ...`.
    Insert(Insert),
    /// `EXECUTE STATEMENT SET BEGIN INSERT ...; ... END` or `BEGIN STATEMENT SET; ... END`.
    StatementSet {
        inserts: Vec<Insert>,
        span: Range<usize>,
    },
    /// `EXPLAIN [PLAN FOR] statement` of a query, an insert or a statement set.
    Explain {
        statement: Box<Statement>,
        span: Range<usize>,
    },
    /// A bare query: `SELECT`, `VALUES`, `WITH ...`, also written `EXECUTE SELECT ...`.
    Query {
        query: Box<sqlparser::ast::Query>,
        span: Range<usize>,
    },
    /// `SHOW TABLES`.
    ShowTables { span: Range<usize> },
    /// `SHOW VIEWS`.
    ShowViews { span: Range<usize> },
    /// `SHOW FUNCTIONS`.
    ShowFunctions { span: Range<usize> },
    /// `DESCRIBE name` / `DESC name`.
    Describe {
        name: String,
        name_span: Range<usize>,
        span: Range<usize>,
    },
}

impl Statement {
    /// The statement's byte range in the script.
    pub fn span(&self) -> Range<usize> {
        match self {
            Statement::CreateTable(t) => t.span.clone(),
            Statement::CreateView(v) => v.span.clone(),
            Statement::Insert(i) => i.span.clone(),
            Statement::DropTable { span, .. }
            | Statement::DropView { span, .. }
            | Statement::Set { span, .. }
            | Statement::SetList { span }
            | Statement::Reset { span, .. }
            | Statement::StatementSet { span, .. }
            | Statement::Explain { span, .. }
            | Statement::Query { span, .. }
            | Statement::ShowTables { span }
            | Statement::ShowViews { span }
            | Statement::ShowFunctions { span }
            | Statement::Describe { span, .. } => span.clone(),
        }
    }

    /// The statement's own text in `sql`, the script it was parsed from.
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.span()).unwrap_or("")
    }
}

/// `CREATE TABLE`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateTable {
    pub name: String,
    pub name_span: Range<usize>,
    pub if_not_exists: bool,
    pub temporary: bool,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    /// From `PRIMARY KEY (a, b) NOT ENFORCED` or a column's `PRIMARY KEY NOT ENFORCED`.
    pub primary_key: Option<PrimaryKey>,
    /// The `WITH (...)` options in order; duplicates are kept for the binder to reject.
    pub options: Vec<TableOption>,
    /// The table's `COMMENT '...'`.
    pub comment: Option<String>,
    pub span: Range<usize>,
}

/// One column of a `CREATE TABLE`.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub name_span: Range<usize>,
    pub kind: ColumnKind,
    /// `NOT NULL` was given (types themselves carry no nullability).
    pub not_null: bool,
    pub comment: Option<String>,
}

/// Whether a column is stored, computed or read from connector metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    /// `name TYPE`.
    Physical {
        data_type: DataType,
        type_span: Range<usize>,
    },
    /// `name AS expr`.
    Computed {
        expr: Box<sqlparser::ast::Expr>,
        expr_span: Range<usize>,
    },
    /// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`.
    Metadata {
        data_type: DataType,
        type_span: Range<usize>,
        key: Option<String>,
        is_virtual: bool,
    },
}

/// `WATERMARK FOR column AS expr`.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkDef {
    pub column: String,
    pub column_span: Range<usize>,
    pub expr: sqlparser::ast::Expr,
    pub expr_span: Range<usize>,
    /// The whole `WATERMARK ...` clause.
    pub span: Range<usize>,
}

/// `PRIMARY KEY (columns) NOT ENFORCED`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryKey {
    pub columns: Vec<String>,
    pub column_spans: Vec<Range<usize>>,
    /// The whole constraint.
    pub span: Range<usize>,
}

/// One `'key' = 'value'` of a `WITH (...)` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableOption {
    pub key: String,
    pub value: String,
    pub key_span: Range<usize>,
    pub value_span: Range<usize>,
}

/// `CREATE VIEW`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateView {
    pub name: String,
    pub name_span: Range<usize>,
    pub if_not_exists: bool,
    pub temporary: bool,
    /// `CREATE VIEW v (a, b) AS ...` column names, empty when not given.
    pub columns: Vec<String>,
    pub query: Box<sqlparser::ast::Query>,
    pub span: Range<usize>,
}

/// `INSERT INTO table [(columns)] query`.
#[derive(Clone, Debug, PartialEq)]
pub struct Insert {
    pub table: String,
    pub table_span: Range<usize>,
    /// The explicit target column list, empty when not given.
    pub columns: Vec<String>,
    pub column_spans: Vec<Range<usize>>,
    pub query: Box<sqlparser::ast::Query>,
    pub span: Range<usize>,
}

/// Which window table-valued function a `TABLE(...)` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

impl WindowKind {
    /// The function's name as Flink spells it.
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Cumulate => "CUMULATE",
            WindowKind::Session => "SESSION",
        }
    }
}

/// A window TVF in `FROM`: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size)) [AS alias]`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowTvf {
    pub kind: WindowKind,
    /// The windowed table or view (a name: Flink does not allow a subquery here).
    pub table: String,
    pub table_span: Range<usize>,
    /// `SESSION(TABLE t PARTITION BY ...)` keys; empty otherwise.
    pub partition_by: Vec<String>,
    pub partition_spans: Vec<Range<usize>>,
    /// The `DESCRIPTOR(col)` column.
    pub time_col: String,
    pub time_col_span: Range<usize>,
    /// The interval arguments in Flink's positional order: TUMBLE size [, offset]; HOP slide,
    /// size [, offset]; CUMULATE step, max size [, offset]; SESSION gap. Named arguments are
    /// put in this order too.
    pub intervals: Vec<sqlparser::ast::Expr>,
    pub alias: Option<String>,
    /// The table factor as sqlparser spans it: from the function name to the alias (sqlparser's
    /// spans of calls stop at their last argument, so the closing parentheses may be outside).
    pub span: Range<usize>,
}

/// The value of an interval literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntervalValue {
    /// DAY TO SECOND family, in milliseconds.
    DayTime(i64),
    /// YEAR TO MONTH family, in months.
    YearMonth(i32),
}
