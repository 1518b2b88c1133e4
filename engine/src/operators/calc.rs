//! `Calc`: filter and projection over each row, keeping the row kind.

use crate::error::Result;
use crate::expr::Expr;
use crate::operator::{Operator, Output};
use crate::value::{Change, Row};

/// Evaluates an optional predicate and a list of projections per row.
pub struct Calc {
    filter: Option<Expr>,
    projections: Vec<Expr>,
}

impl Calc {
    pub fn new(filter: Option<Expr>, projections: Vec<Expr>) -> Self {
        Calc {
            filter,
            projections,
        }
    }

    /// Applies the calc to one row; `None` when the filter rejects it.
    pub fn apply(&self, row: &[crate::value::Value]) -> Result<Option<Row>> {
        if let Some(f) = &self.filter {
            if !f.eval_predicate(row)? {
                return Ok(None);
            }
        }
        let mut out = Vec::with_capacity(self.projections.len());
        for p in &self.projections {
            out.push(p.eval(row)?);
        }
        Ok(Some(out))
    }
}

impl Operator for Calc {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        out.changes.reserve(batch.len());
        for change in batch {
            if let Some(row) = self.apply(&change.row)? {
                out.emit(change.kind, row);
            }
        }
        Ok(())
    }
}

/// Passes every input through unchanged: UNION ALL of several inputs.
pub struct Union;

impl Operator for Union {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, out: &mut Output) -> Result<()> {
        out.changes.extend(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn filter_then_project() {
        let calc = Calc::new(
            Some(Expr::IsNotNull(Box::new(Expr::Column(0)))),
            vec![Expr::Column(1), Expr::Column(0)],
        );
        assert_eq!(
            calc.apply(&[Value::Int(1), Value::string("a")]).unwrap(),
            Some(vec![Value::string("a"), Value::Int(1)])
        );
        assert_eq!(
            calc.apply(&[Value::Null, Value::string("a")]).unwrap(),
            None
        );
    }
}
