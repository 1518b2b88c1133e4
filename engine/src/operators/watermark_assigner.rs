//! `WatermarkAssigner`: derives watermarks from a table's `WATERMARK FOR col AS expr`.
//!
//! As Flink's `WatermarkAssignerOperator`: the watermark is the largest value of `expr` seen so far;
//! it is emitted at once when it moved by more than `pipeline.auto-watermark-interval` (in event
//! time) since the last emission, and otherwise on the periodic timer. With an interval of 0 it is
//! emitted after every row that advances it. With `table.exec.source.idle-timeout` set, an input
//! that delivered no row for that long is announced idle. Input watermarks are not forwarded, except
//! the final one at the end of a bounded input.

use crate::error::Result;
use crate::expr::Expr;
use crate::operator::{Operator, Output};
use crate::value::{Change, Value};

/// Stamps watermarks onto a stream from the rows' `WATERMARK` expression.
///
/// Stateless for checkpoints (the trait's default empty snapshot), as Flink's
/// `WatermarkAssignerOperator`, which does not checkpoint its current watermark: after a restore
/// the watermark starts again from `i64::MIN` and is derived anew from the rows that follow.
/// Downstream operators that decide lateness keep the watermark they had seen in their own state,
/// so the lower watermarks emitted after a restore do not reopen what was already closed.
pub struct WatermarkAssigner {
    /// Evaluates to the watermark a row allows (a TIMESTAMP or TIMESTAMP_LTZ).
    expr: Expr,
    interval_ms: i64,
    idle_timeout_ms: i64,
    current: i64,
    emitted: i64,
    last_row_at: Option<i64>,
    idle: bool,
}

impl WatermarkAssigner {
    pub fn new(expr: Expr, interval_ms: i64, idle_timeout_ms: i64) -> Self {
        WatermarkAssigner {
            expr,
            interval_ms,
            idle_timeout_ms,
            current: i64::MIN,
            emitted: i64::MIN,
            last_row_at: None,
            idle: false,
        }
    }

    fn emit_current(&mut self, out: &mut Output) {
        if self.current > self.emitted {
            self.emitted = self.current;
            out.emit_watermark(self.current);
        }
    }
}

impl Operator for WatermarkAssigner {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        if self.idle {
            self.idle = false;
            out.emit_idle(false);
        }
        // Marks "a row arrived"; the timer compares it with the clock.
        self.last_row_at = None;
        for change in batch {
            let wm = match self.expr.eval(&change.row)? {
                Value::Timestamp(t) | Value::TimestampLtz(t) => Some(t),
                _ => None,
            };
            out.push(change);
            if let Some(wm) = wm {
                if wm > self.current {
                    self.current = wm;
                    if self.emitted == i64::MIN
                        || self.current.saturating_sub(self.emitted) > self.interval_ms
                    {
                        self.emit_current(out);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        if watermark == i64::MAX {
            self.current = i64::MAX;
            self.emit_current(out);
        }
        Ok(())
    }

    fn on_timer(&mut self, now_millis: i64, out: &mut Output) -> Result<()> {
        self.emit_current(out);
        if self.idle_timeout_ms > 0 && !self.idle {
            let since = *self.last_row_at.get_or_insert(now_millis);
            if now_millis - since >= self.idle_timeout_ms {
                self.idle = true;
                out.emit_idle(true);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64) -> Change {
        Change::insert(vec![Value::Timestamp(t)])
    }

    #[test]
    fn interval_zero_emits_after_every_advancing_row() {
        let mut a = WatermarkAssigner::new(Expr::Column(0), 0, 0);
        let mut out = Output::new();
        a.on_batch(0, vec![row(10), row(5), row(20)], &mut out)
            .unwrap();
        assert_eq!(out.watermarks, vec![(1, 10), (3, 20)]);
    }

    #[test]
    fn interval_holds_small_advances_until_the_timer() {
        let mut a = WatermarkAssigner::new(Expr::Column(0), 200, 0);
        let mut out = Output::new();
        a.on_batch(0, vec![row(1000), row(1100), row(1300)], &mut out)
            .unwrap();
        assert_eq!(out.watermarks, vec![(1, 1000), (3, 1300)]);
        a.on_batch(0, vec![row(1350)], &mut out).unwrap();
        assert_eq!(out.watermarks.len(), 2);
        a.on_timer(0, &mut out).unwrap();
        assert_eq!(out.watermarks.last(), Some(&(4, 1350)));
    }

    #[test]
    fn idle_after_timeout() {
        let mut a = WatermarkAssigner::new(Expr::Column(0), 200, 1000);
        let mut out = Output::new();
        a.on_timer(0, &mut out).unwrap();
        assert_eq!(out.idle, None);
        a.on_timer(1000, &mut out).unwrap();
        assert_eq!(out.idle, Some(true));
    }
}
