//! # streamsql-sql
//!
//! The Flink SQL front end: parse (sqlparser with a Flink dialect), keep a catalog of tables and
//! views, bind names and types, and lower queries to the engine's dataflow graph.

pub mod ast;
pub mod binder;
pub mod catalog;
pub mod error;
pub mod parser;
pub(crate) mod plan_join;
pub(crate) mod plan_join_time;
pub mod planner;
pub mod session;
pub mod span;

pub use error::{SqlError, SqlErrorKind, SqlResult};
