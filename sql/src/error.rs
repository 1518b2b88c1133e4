//! The SQL front end's error: what went wrong, who is at fault, and where in the text.

use std::ops::Range;

use streamsql_engine::EngineError;

/// What kind of mistake a `SqlError` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// The text is not valid SQL.
    Parse,
    /// Valid Flink SQL that streamsql does not support (named as such).
    Unsupported,
    /// Unknown table, column or function; type mismatch; bad statement.
    Validation,
    /// A connector option or a configuration key/value is wrong.
    Option,
    /// A bug in the planner.
    Internal,
}

/// An error in a SQL script, with the byte range of the offending text when it is known.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub kind: SqlErrorKind,
    pub message: String,
    /// Byte range into the script text.
    pub span: Option<Range<usize>>,
    /// A suggestion ("did you mean ...") shown as help.
    pub help: Option<String>,
}

impl SqlError {
    pub fn new(kind: SqlErrorKind, message: impl Into<String>) -> Self {
        SqlError {
            kind,
            message: message.into(),
            span: None,
            help: None,
        }
    }

    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Parse, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Unsupported, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Validation, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(SqlErrorKind::Internal, message)
    }

    /// Attaches a span unless one is already there (the innermost span is the most precise).
    pub fn with_span(mut self, span: Option<Range<usize>>) -> Self {
        if self.span.is_none() {
            self.span = span;
        }
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Wraps an engine error (type error, bad connector option) at the place it was raised.
    pub fn from_engine(e: EngineError, span: Option<Range<usize>>) -> Self {
        let (kind, help) = match &e {
            EngineError::Type { .. } => (SqlErrorKind::Validation, None),
            EngineError::Option { help, .. } => (SqlErrorKind::Option, help.clone()),
            EngineError::Internal { .. } => (SqlErrorKind::Internal, None),
            _ => (SqlErrorKind::Validation, None),
        };
        SqlError {
            kind,
            message: e.to_string(),
            span,
            help,
        }
    }
}

/// Short for `Result<T, SqlError>`.
pub type SqlResult<T> = Result<T, SqlError>;

/// The closest candidate to `name` by edit distance, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = streamsql_engine::suggest::levenshtein(&lower, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("ordres", ["orders", "customers"]).as_deref(),
            Some("orders")
        );
        assert_eq!(did_you_mean("xyz", ["orders", "customers"]), None);
    }
}
