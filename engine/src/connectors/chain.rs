//! A source with stateless operators chained onto it in its own task, as Flink chains a table's
//! computed columns (`Calc`), its `WatermarkAssigner` and the projections and filters over it into
//! the source task: the rows go from one to the next by a function call, not over a channel.
//!
//! Only operators without checkpointed state may be chained (`Calc`, `WatermarkAssigner`): the
//! task's snapshot is the source's position alone. Watermarks an operator emits go through the
//! operators after it at their place among the rows, and the operators' processing-time timers
//! run on the task's timer ([`Source::on_timer`]).

use std::sync::Arc;

use crate::error::Result;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::value::Change;

use super::{Source, SourceFactory, SourceStatus};

/// Builds a [`ChainedSource`] per subtask.
pub struct ChainedSourceFactory {
    pub source: Arc<dyn SourceFactory>,
    /// The chained operators, in order; each must be stateless for checkpoints.
    pub operators: Vec<Arc<dyn OperatorFactory>>,
}

impl ChainedSourceFactory {
    /// `source` with `operators` chained after what it already chains, in one chain.
    pub fn then(
        source: &Arc<dyn SourceFactory>,
        operators: &[Arc<dyn OperatorFactory>],
    ) -> ChainedSourceFactory {
        match source.chain() {
            Some(chain) => ChainedSourceFactory {
                source: Arc::clone(&chain.source),
                operators: chain.operators.iter().chain(operators).cloned().collect(),
            },
            None => ChainedSourceFactory {
                source: Arc::clone(source),
                operators: operators.to_vec(),
            },
        }
    }
}

impl SourceFactory for ChainedSourceFactory {
    fn chain(&self) -> Option<&ChainedSourceFactory> {
        Some(self)
    }

    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>> {
        let source = self.source.create(ctx)?;
        let operators = self
            .operators
            .iter()
            .map(|f| f.create(ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(ChainedSource {
            source,
            operators,
            polled: Output::new(),
        }))
    }
}

/// A source subtask followed by its chained operators.
pub struct ChainedSource {
    source: Box<dyn Source>,
    operators: Vec<Box<dyn Operator>>,
    /// Reused for what the source emits.
    polled: Output,
}

/// Feeds `batch` to the first of `ops` and what it emits through the rest, into `out`.
fn push_batch(ops: &mut [Box<dyn Operator>], batch: Vec<Change>, out: &mut Output) -> Result<()> {
    let Some((first, rest)) = ops.split_first_mut() else {
        if out.changes.is_empty() {
            out.changes = batch;
        } else {
            out.changes.extend(batch);
        }
        return Ok(());
    };
    let mut emitted = Output::new();
    first.on_batch(0, batch, &mut emitted)?;
    pass_on(rest, emitted, out)
}

/// Passes what an operator emitted (rows, watermarks at their positions, idleness) through `ops`.
fn pass_on(ops: &mut [Box<dyn Operator>], emitted: Output, out: &mut Output) -> Result<()> {
    let Output {
        mut changes,
        watermarks,
        idle,
    } = emitted;
    if watermarks.is_empty() {
        if !changes.is_empty() {
            push_batch(ops, changes, out)?;
        }
    } else {
        // Cut the rows at the watermarks' positions, from the back so each cut is a split_off.
        let mut segments = Vec::with_capacity(watermarks.len() + 1);
        for (position, _) in watermarks.iter().rev() {
            segments.push(changes.split_off((*position).min(changes.len())));
        }
        segments.push(changes);
        segments.reverse();
        let mut segments = segments.into_iter();
        for (_, watermark) in watermarks {
            if let Some(segment) = segments.next().filter(|s| !s.is_empty()) {
                push_batch(ops, segment, out)?;
            }
            push_watermark(ops, watermark, out)?;
        }
        for segment in segments.filter(|s| !s.is_empty()) {
            push_batch(ops, segment, out)?;
        }
    }
    if let Some(idle) = idle {
        out.emit_idle(idle);
    }
    Ok(())
}

fn push_watermark(ops: &mut [Box<dyn Operator>], watermark: i64, out: &mut Output) -> Result<()> {
    let Some((first, rest)) = ops.split_first_mut() else {
        out.emit_watermark(watermark);
        return Ok(());
    };
    let mut emitted = Output::new();
    first.on_watermark(watermark, &mut emitted)?;
    pass_on(rest, emitted, out)
}

impl ChainedSource {
    /// What the source emitted. Without rows the batch's reserved room stays for the next poll
    /// (an idle source's polls allocate nothing).
    fn take_polled(&mut self) -> Output {
        if self.polled.changes.is_empty() {
            Output {
                changes: Vec::new(),
                watermarks: std::mem::take(&mut self.polled.watermarks),
                idle: self.polled.idle.take(),
            }
        } else {
            std::mem::take(&mut self.polled)
        }
    }
}

impl Source for ChainedSource {
    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus> {
        // The batch moves on to the operators: room for a full one at once, not by doubling.
        self.polled.changes.reserve(max_rows);
        let status = self.source.poll(&mut self.polled, max_rows)?;
        let polled = self.take_polled();
        pass_on(&mut self.operators, polled, out)?;
        Ok(status)
    }

    fn on_timer(&mut self, now_millis: i64, out: &mut Output) -> Result<()> {
        self.source.on_timer(now_millis, &mut self.polled)?;
        let polled = self.take_polled();
        pass_on(&mut self.operators, polled, out)?;
        for i in 0..self.operators.len() {
            let (head, rest) = self.operators.split_at_mut(i + 1);
            let mut emitted = Output::new();
            head[i].on_timer(now_millis, &mut emitted)?;
            pass_on(rest, emitted, out)?;
        }
        Ok(())
    }

    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        self.source.snapshot_position()
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        self.source.restore_position(position)
    }

    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        self.source.restore_rescaled(positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;
    use crate::operators::calc::Calc;
    use crate::operators::watermark_assigner::WatermarkAssigner;
    use crate::value::Value;

    /// Emits the given batches, one per poll.
    struct Batches(Vec<Vec<i64>>);

    impl Source for Batches {
        fn poll(&mut self, out: &mut Output, _max_rows: usize) -> Result<SourceStatus> {
            if self.0.is_empty() {
                return Ok(SourceStatus::Finished);
            }
            for t in self.0.remove(0) {
                out.push(Change::insert(vec![Value::Timestamp(t), Value::BigInt(t)]));
            }
            Ok(SourceStatus::More)
        }
    }

    fn chain(batches: Vec<Vec<i64>>, interval: i64) -> ChainedSource {
        // Drops odd values after the watermark assigner, then keeps the BIGINT column only.
        let odd = Expr::Call {
            func: crate::expr::functions::ScalarFunction::Mod(crate::expr::functions::Num::Integer),
            args: vec![Expr::Column(1), Expr::Literal(Value::BigInt(2))],
            ret: crate::types::DataType::BigInt,
        };
        let even = Expr::Call {
            func: crate::expr::functions::ScalarFunction::Cmp(crate::expr::functions::CmpOp::Eq),
            args: vec![odd, Expr::Literal(Value::BigInt(0))],
            ret: crate::types::DataType::Boolean,
        };
        ChainedSource {
            source: Box::new(Batches(batches)),
            operators: vec![
                Box::new(WatermarkAssigner::new(Expr::Column(0), interval, 0)),
                Box::new(Calc::new(Some(even), vec![Expr::Column(1)])),
            ],
            polled: Output::new(),
        }
    }

    #[test]
    fn watermarks_keep_their_place_among_the_rows_through_later_operators() {
        let mut s = chain(vec![vec![1, 2, 3, 4, 10, 12]], 0);
        let mut out = Output::new();
        assert_eq!(s.poll(&mut out, 100).unwrap(), SourceStatus::More);
        let rows: Vec<i64> = out
            .changes
            .iter()
            .map(|c| match c.row[0] {
                Value::BigInt(v) => v,
                _ => panic!("not a BIGINT"),
            })
            .collect();
        assert_eq!(rows, [2, 4, 10, 12]);
        // After every advancing row; the rows before each are the even ones before it.
        assert_eq!(
            out.watermarks,
            [(0, 1), (1, 2), (1, 3), (2, 4), (3, 10), (4, 12)]
        );
        assert_eq!(s.poll(&mut out, 100).unwrap(), SourceStatus::Finished);
    }

    #[test]
    fn timers_of_chained_operators_run_on_the_task_timer() {
        let mut s = chain(vec![vec![100, 150]], 1000);
        let mut out = Output::new();
        s.poll(&mut out, 100).unwrap();
        // The first watermark goes at once, after its row; the small advance waits for the timer.
        assert_eq!(out.watermarks, [(1, 100)]);
        let mut timed = Output::new();
        s.on_timer(5, &mut timed).unwrap();
        assert_eq!(timed.watermarks, [(0, 150)]);
        assert!(timed.changes.is_empty());
    }

    #[test]
    fn a_chain_extended_with_more_operators_stays_one_chain() {
        struct NoSource;
        impl SourceFactory for NoSource {
            fn create(&self, _: &TaskContext) -> Result<Box<dyn Source>> {
                Err(crate::error::EngineError::internal("not run in this test"))
            }
        }
        let calc = |c: usize| -> Arc<dyn OperatorFactory> {
            Arc::new(move |_: &TaskContext| -> Result<Box<dyn Operator>> {
                Ok(Box::new(Calc::new(None, vec![Expr::Column(c)])))
            })
        };
        let plain: Arc<dyn SourceFactory> = Arc::new(NoSource);
        let once: Arc<dyn SourceFactory> = Arc::new(ChainedSourceFactory::then(&plain, &[calc(0)]));
        assert!(plain.chain().is_none());
        let twice = ChainedSourceFactory::then(&once, &[calc(1), calc(2)]);
        assert!(twice.source.chain().is_none(), "not a chain in a chain");
        assert_eq!(twice.operators.len(), 3);
    }
}
