//! The `print` sink: every change as Flink's print connector writes it, `+I[1, abc]`.
//!
//! The prefix follows Flink's `PrintSinkOutputWriter`: `print-identifier` when set, then, when the
//! sink runs with more than one subtask, `:` (only after an identifier) and the subtask index + 1,
//! then `> ` if anything was written before: `+I[..]`, `x> +I[..]`, `2> +I[..]`, `x:2> +I[..]`.
//! Fields are rendered by `expr::format::write_print_value` (Java's `toString` of each field).
//! Each batch is formatted into one buffer and written to a locked stdout (or stderr with
//! `standard-error`) at once, so output interleaves between subtasks by batch, never mid-line.

use std::io::Write;
use std::sync::Arc;

use crate::connectors::options::Options;
use crate::error::{EngineError, Result};
use crate::expr::format::write_print_value;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::types::{DataType, Schema};
use crate::value::Change;

/// The options of one print table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    /// `print-identifier`.
    pub identifier: Option<String>,
    /// `standard-error`.
    pub standard_error: bool,
    /// `sink.parallelism`.
    pub parallelism: Option<usize>,
}

/// Reads the print connector's options.
pub fn read_options(options: &Options) -> Result<PrintOptions> {
    let mut r = options.reader();
    let identifier = r.string("print-identifier").map(str::to_string);
    let standard_error = r.bool("standard-error", false)?;
    let parallelism = crate::connectors::registry::sink_parallelism(&mut r)?;
    r.finish("print")?;
    Ok(PrintOptions {
        identifier,
        standard_error,
        parallelism,
    })
}

/// Flink's prefix for a subtask: identifier, `:`, subtask number, `> `.
pub fn prefix(identifier: Option<&str>, subtask_index: usize, parallelism: usize) -> String {
    let mut p = identifier.unwrap_or_default().to_string();
    if parallelism > 1 {
        if !p.is_empty() {
            p.push(':');
        }
        p.push_str(&(subtask_index + 1).to_string());
    }
    if !p.is_empty() {
        p.push_str("> ");
    }
    p
}

/// Appends one change as a print line (with its `\n`).
pub fn format_change(out: &mut String, prefix: &str, change: &Change, types: &[DataType]) {
    out.push_str(prefix);
    out.push_str(change.kind.short());
    out.push('[');
    for (i, v) in change.row.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_print_value(out, v, types.get(i).unwrap_or(&DataType::Null));
    }
    out.push_str("]\n");
}

/// Builds the print sink's subtasks.
pub struct PrintSinkFactory {
    options: PrintOptions,
    types: Arc<[DataType]>,
}

impl PrintSinkFactory {
    pub fn new(options: PrintOptions, schema: &Schema) -> Self {
        PrintSinkFactory {
            options,
            types: schema.types().into(),
        }
    }
}

impl OperatorFactory for PrintSinkFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(PrintSink {
            prefix: prefix(
                self.options.identifier.as_deref(),
                ctx.subtask_index,
                ctx.parallelism,
            ),
            standard_error: self.options.standard_error,
            types: self.types.clone(),
            buffer: String::with_capacity(4096),
        }))
    }
}

/// One subtask of the print sink.
struct PrintSink {
    prefix: String,
    standard_error: bool,
    types: Arc<[DataType]>,
    buffer: String,
}

impl Operator for PrintSink {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        self.buffer.clear();
        for change in &batch {
            format_change(&mut self.buffer, &self.prefix, change, &self.types);
        }
        let result = if self.standard_error {
            let mut lock = std::io::stderr().lock();
            lock.write_all(self.buffer.as_bytes())
                .and_then(|_| lock.flush())
        } else {
            let mut lock = std::io::stdout().lock();
            lock.write_all(self.buffer.as_bytes())
                .and_then(|_| lock.flush())
        };
        result.map_err(|e| {
            let target = if self.standard_error {
                "standard error"
            } else {
                "standard output"
            };
            EngineError::io(format!("print sink: cannot write to {target}"), e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{RowKind, Value};

    #[test]
    fn prefixes_follow_flink() {
        assert_eq!(prefix(None, 0, 1), "");
        assert_eq!(prefix(Some("x"), 0, 1), "x> ");
        assert_eq!(prefix(None, 1, 2), "2> ");
        assert_eq!(prefix(Some("x"), 1, 2), "x:2> ");
        assert_eq!(prefix(Some(""), 0, 1), "");
    }

    #[test]
    fn rows_render_like_row_to_string() {
        let types = [
            DataType::Int,
            DataType::STRING,
            DataType::Timestamp(3),
            DataType::Decimal(5, 2),
        ];
        let mut s = String::new();
        let c = Change::new(
            RowKind::UpdateBefore,
            vec![
                Value::Int(1),
                Value::string("abc"),
                Value::Timestamp(1_710_057_600_000),
                Value::Null,
            ],
        );
        format_change(&mut s, "x> ", &c, &types);
        assert_eq!(s, "x> -U[1, abc, 2024-03-10T08:00, null]\n");
    }

    #[test]
    fn options() {
        let o = Options::from_pairs([
            ("connector", "print"),
            ("print-identifier", "x"),
            ("sink.parallelism", "2"),
        ]);
        let p = read_options(&o).unwrap();
        assert_eq!(p.identifier.as_deref(), Some("x"));
        assert_eq!(p.parallelism, Some(2));
        let o = Options::from_pairs([("print-identifer", "x")]);
        let err = read_options(&o).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Unsupported options found for 'print'."));
        let o = Options::from_pairs([("sink.parallelism", "0")]);
        assert!(read_options(&o).is_err());
    }
}
