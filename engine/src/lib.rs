//! # streamsql-engine
//!
//! The dataflow runtime of streamsql. It knows no SQL text: the `sql` crate plans a query into a
//! [`graph::DataflowGraph`] of operator factories, and [`runtime`] runs it with one named thread per
//! operator subtask, connected by bounded crossbeam channels that carry [`message::Message`]s
//! (batches of changelog rows, watermarks, barriers, latency markers, end of stream).
//!
//! Layers, bottom up:
//! - [`types`], [`value`]: SQL types, values, rows and row kinds (`+I`, `-U`, `+U`, `-D`).
//! - [`expr`]: bound scalar expressions, functions, casts and value rendering.
//! - [`codec`]: the stable binary encoding of values, rows, state keys and accumulators.
//! - [`operator`], [`connectors`]: the hooks an operator or a source implements.
//! - [`operators`], [`agg`], [`window`]: the relational operators (calc, aggregates, windows).
//! - [`runtime`]: threads, channels, exchanges by key group, watermark tracking, failure handling.
//! - [`config`]: Flink's configuration keys with defaults and validation.
//!
//! Depends on `streamsql-storage` for durable files.

pub mod agg;
pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod connectors;
pub mod error;
pub mod expr;
pub mod graph;
pub mod keygroup;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod runtime;
pub mod state;
pub mod suggest;
pub mod types;
pub mod unique;
pub mod value;
pub mod window;

pub use error::{EngineError, Result};
