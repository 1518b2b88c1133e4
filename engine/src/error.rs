//! The engine's error type. Every variant says who is at fault: the user (bad query or options),
//! the outside world (a file, the disk), or the engine itself (a bug).

use crate::types::DataType;

/// Who is responsible for an error, which decides how it is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    User,
    External,
    Internal,
}

/// An error raised while planning or running a dataflow.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A function or operator applied to arguments it does not take.
    #[error("{message}")]
    Type { message: String },
    /// An option of a connector or of the configuration is missing or wrong.
    #[error("{message}")]
    Option {
        message: String,
        /// A suggestion shown as help.
        help: Option<String>,
    },
    /// A value could not be computed (division by zero, a failed CAST, overflow).
    #[error("{message}")]
    Eval { message: String },
    /// Bad data in an input: which table, which file, which line.
    #[error("{message}")]
    Data { message: String },
    /// A file or directory could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A task panicked or the job was stopped because another task failed.
    #[error("{message}")]
    Task { message: String },
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
    /// A broken invariant inside the engine: a bug.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl EngineError {
    pub fn class(&self) -> ErrorClass {
        match self {
            EngineError::Type { .. } | EngineError::Option { .. } => ErrorClass::User,
            EngineError::Eval { .. } | EngineError::Data { .. } | EngineError::Io { .. } => {
                ErrorClass::External
            }
            EngineError::Task { .. } | EngineError::Cancelled => ErrorClass::External,
            EngineError::Internal { .. } => ErrorClass::Internal,
        }
    }

    pub fn type_error(message: impl Into<String>) -> Self {
        EngineError::Type {
            message: message.into(),
        }
    }

    pub fn eval(message: impl Into<String>) -> Self {
        EngineError::Eval {
            message: message.into(),
        }
    }

    pub fn option(message: impl Into<String>, help: Option<String>) -> Self {
        EngineError::Option {
            message: message.into(),
            help,
        }
    }

    pub fn data(message: impl Into<String>) -> Self {
        EngineError::Data {
            message: message.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        EngineError::Internal {
            message: message.into(),
        }
    }

    /// A type error for a function applied to the wrong argument types.
    pub fn no_signature(name: &str, args: &[DataType]) -> Self {
        let list: Vec<String> = args.iter().map(|t| t.to_string()).collect();
        EngineError::type_error(format!(
            "Cannot apply '{name}' to arguments of type '{name}({})'",
            list.join(", ")
        ))
    }
}

/// Short for `Result<T, EngineError>`.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
