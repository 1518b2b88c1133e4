//! `WindowTableFunction`: `TABLE(TUMBLE | HOP | CUMULATE(...))` when no aggregation follows.
//!
//! Each input row is emitted once per window containing its rowtime, with `window_start`,
//! `window_end` (TIMESTAMP(3)) and `window_time` (the rowtime's type, `end - 1`) appended. As in
//! Flink's `WindowTableFunctionOperator`, nothing is buffered and no row is late here (lateness
//! is decided by the window aggregation or join that follows, if any); a row with a NULL rowtime
//! is dropped. Row kinds pass through unchanged. SESSION has no fixed windows to assign row by
//! row, so a session TVF must be followed by an aggregation and is rejected here.

use std::sync::Arc;

use crate::agg::column;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::types::DataType;
use crate::value::{Change, Value};
use crate::window::{TimeWindow, WindowKind};

/// What the planner specifies for a `WindowTableFunction`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowTvfSpec {
    /// The input column holding the rowtime (TIMESTAMP(3) or TIMESTAMP_LTZ(3)).
    pub time_col: usize,
    /// TUMBLE, HOP or CUMULATE.
    pub window: WindowKind,
    /// The rowtime's type, which `window_time` keeps.
    pub time_type: DataType,
}

/// The window table function operator.
pub struct WindowTableFunction {
    time_col: usize,
    window: WindowKind,
    ltz: bool,
    windows_buf: Vec<TimeWindow>,
}

impl WindowTableFunction {
    /// Builds the operator; rejects SESSION, bad sizes and a non-timestamp rowtime.
    pub fn new(spec: WindowTvfSpec, _ctx: &TaskContext) -> Result<Self> {
        spec.window.validate()?;
        if matches!(spec.window, WindowKind::Session { .. }) {
            return Err(EngineError::type_error(
                "a SESSION window table function must be followed by an aggregation \
                 (GROUP BY window_start, window_end, ...)",
            ));
        }
        let ltz = match spec.time_type {
            DataType::Timestamp(_) => false,
            DataType::TimestampLtz(_) => true,
            ref t => {
                return Err(EngineError::type_error(format!(
                    "The window function requires the timecol is a time attribute type, but is {t}."
                )))
            }
        };
        Ok(WindowTableFunction {
            time_col: spec.time_col,
            window: spec.window,
            ltz,
            windows_buf: Vec::new(),
        })
    }

    /// A factory building one `WindowTableFunction` per subtask.
    pub fn factory(spec: WindowTvfSpec) -> Arc<dyn OperatorFactory> {
        Arc::new(move |ctx: &TaskContext| -> Result<Box<dyn Operator>> {
            Ok(Box::new(WindowTableFunction::new(spec.clone(), ctx)?))
        })
    }
}

impl Operator for WindowTableFunction {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        for change in batch {
            let ts = match column(&change.row, self.time_col)? {
                Value::Timestamp(t) | Value::TimestampLtz(t) => *t,
                Value::Null => continue,
                other => {
                    return Err(EngineError::internal(format!(
                        "the rowtime column {} holds a non-timestamp value {other:?}",
                        self.time_col
                    )))
                }
            };
            self.window.assign(ts, &mut self.windows_buf)?;
            let n = self.windows_buf.len();
            let mut row = Some(change.row);
            for (i, w) in self.windows_buf.iter().enumerate() {
                // The last window takes the input row itself; earlier ones copy it.
                let mut r = if i + 1 == n {
                    row.take().unwrap_or_default()
                } else {
                    row.clone().unwrap_or_default()
                };
                r.reserve(3);
                r.push(Value::Timestamp(w.start));
                r.push(Value::Timestamp(w.end));
                let time = w.max_timestamp();
                r.push(if self.ltz {
                    Value::TimestampLtz(time)
                } else {
                    Value::Timestamp(time)
                });
                out.emit(change.kind, r);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TaskMetrics;
    use crate::value::RowKind;

    fn ctx() -> TaskContext {
        TaskContext {
            operator_id: 3,
            operator_name: "WindowTableFunction".into(),
            subtask_index: 0,
            parallelism: 1,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    #[test]
    fn hop_emits_one_row_per_window() {
        let spec = WindowTvfSpec {
            time_col: 1,
            window: WindowKind::Hop {
                size: 20,
                slide: 10,
                offset: 0,
            },
            time_type: DataType::TimestampLtz(3),
        };
        let mut op = WindowTableFunction::new(spec, &ctx()).unwrap();
        let mut out = Output::new();
        let input = vec![
            Change::insert(vec![Value::Int(1), Value::TimestampLtz(15)]),
            Change::insert(vec![Value::Int(2), Value::Null]),
        ];
        op.on_batch(0, input, &mut out).unwrap();
        let rows: Vec<_> = out.changes.iter().map(|c| c.row.clone()).collect();
        assert_eq!(
            rows,
            vec![
                vec![
                    Value::Int(1),
                    Value::TimestampLtz(15),
                    Value::Timestamp(10),
                    Value::Timestamp(30),
                    Value::TimestampLtz(29)
                ],
                vec![
                    Value::Int(1),
                    Value::TimestampLtz(15),
                    Value::Timestamp(0),
                    Value::Timestamp(20),
                    Value::TimestampLtz(19)
                ],
            ]
        );
        assert!(out.changes.iter().all(|c| c.kind == RowKind::Insert));
        assert!(matches!(out.changes[0].row[4], Value::TimestampLtz(_)));
    }

    #[test]
    fn tumble_keeps_late_rows_and_row_kinds() {
        let spec = WindowTvfSpec {
            time_col: 0,
            window: WindowKind::Tumble {
                size: 10,
                offset: 0,
            },
            time_type: DataType::Timestamp(3),
        };
        let mut op = WindowTableFunction::new(spec, &ctx()).unwrap();
        let mut out = Output::new();
        op.on_watermark(100, &mut out).unwrap();
        op.on_batch(
            0,
            vec![Change::new(RowKind::Delete, vec![Value::Timestamp(-1)])],
            &mut out,
        )
        .unwrap();
        assert_eq!(out.changes.len(), 1);
        assert_eq!(out.changes[0].kind, RowKind::Delete);
        assert_eq!(
            out.changes[0].row,
            vec![
                Value::Timestamp(-1),
                Value::Timestamp(-10),
                Value::Timestamp(0),
                Value::Timestamp(-1)
            ]
        );
    }

    #[test]
    fn session_is_rejected() {
        let spec = WindowTvfSpec {
            time_col: 0,
            window: WindowKind::Session { gap: 10 },
            time_type: DataType::Timestamp(3),
        };
        assert!(WindowTableFunction::new(spec, &ctx()).is_err());
    }
}
