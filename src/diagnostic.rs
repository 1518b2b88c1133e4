//! Rendering errors for people: SQL and configuration errors become miette reports that show the
//! offending text; runtime errors become one clear message. Context is added here, once.

use miette::{Diagnostic, NamedSource, SourceSpan};
use streamsql_engine::error::ErrorClass;
use streamsql_engine::EngineError;
use streamsql_sql::{SqlError, SqlErrorKind};

use crate::config::ConfigDiagnostic;

/// A SQL error with its script, ready for miette.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct SqlDiagnostic {
    pub message: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    #[diagnostic(code)]
    pub code: String,
}

impl SqlDiagnostic {
    pub fn new(err: &SqlError, name: &str, sql: &str) -> Self {
        let (code, label) = match err.kind {
            SqlErrorKind::Parse => ("sql::parse", "here"),
            SqlErrorKind::Unsupported => ("sql::unsupported", "not supported"),
            SqlErrorKind::Validation => ("sql::validation", "here"),
            SqlErrorKind::Option => ("sql::option", "this option"),
            SqlErrorKind::Internal => ("sql::internal", "while planning this"),
        };
        let span = err
            .span
            .clone()
            .filter(|r| r.start <= sql.len())
            .map(|r| SourceSpan::from(r.start..r.end.min(sql.len()).max(r.start)));
        SqlDiagnostic {
            message: err.message.clone(),
            source_code: NamedSource::new(name, sql.to_string()),
            span,
            label: label.to_string(),
            help: err.help.clone(),
            code: code.to_string(),
        }
    }
}

/// Everything that can go wrong running streamsql.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sql(Box<SqlDiagnostic>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(Box<ConfigDiagnostic>),
    /// The job failed while running.
    #[error("The job failed: {0}")]
    #[diagnostic(code(job::failed))]
    Job(EngineError),
    /// A savepoint could not be taken (Flink's CLI: "Triggering a savepoint for the job ...
    /// failed.").
    #[error("Triggering a savepoint for the job failed: {0}")]
    #[diagnostic(code(savepoint::failed))]
    Savepoint(EngineError),
    /// A file could not be read.
    #[error("cannot read '{path}': {source}")]
    #[diagnostic(code(io))]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Who is at fault: a user error is the input's, otherwise the environment's or ours.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Sql(d) if d.code == "sql::internal" => ErrorClass::Internal,
            Error::Sql(_) | Error::Config(_) => ErrorClass::User,
            Error::Job(e) | Error::Savepoint(e) => e.class(),
            Error::Read { .. } => ErrorClass::External,
        }
    }
}
