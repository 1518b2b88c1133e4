//! `Calc`: filter and projection over each row, keeping the row kind.

use crate::error::Result;
use crate::expr::Expr;
use crate::operator::{Operator, Output};
use crate::value::{Change, Row};

/// Evaluates an optional predicate and a list of projections per row.
pub struct Calc {
    filter: Option<Expr>,
    projections: Vec<Expr>,
    /// Per projection: the input column it can move out of the (consumed) input row, when it is a
    /// plain column reference that no other projection takes.
    takes: Vec<Option<usize>>,
    /// The projections are exactly the input columns in order: the input row is reused as is.
    identity: bool,
    /// Every projection at position `i` is either input column `i` itself or an expression
    /// that is not a plain column (then its index is listed here): the row is updated in place,
    /// those values computed and written over (or, past the input's width, appended to) it, and
    /// no kept value moves. `None` when the projections have another shape.
    in_place: Option<Vec<usize>>,
    /// Input columns a row needs for the in-place path: one past the last kept column.
    kept_width: usize,
    /// Reused buffer for the values of one output row.
    scratch: Vec<crate::value::Value>,
}

impl Calc {
    pub fn new(filter: Option<Expr>, projections: Vec<Expr>) -> Self {
        let cols: Vec<Option<usize>> = projections
            .iter()
            .map(|p| match p {
                Expr::Column(c) => Some(*c),
                _ => None,
            })
            .collect();
        let takes = cols
            .iter()
            .map(|c| c.filter(|c| cols.iter().filter(|x| **x == Some(*c)).count() == 1))
            .collect();
        let identity = cols.iter().enumerate().all(|(i, c)| *c == Some(i));
        let in_place = cols
            .iter()
            .enumerate()
            .all(|(i, c)| c.is_none_or(|c| c == i))
            .then(|| {
                cols.iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_none())
                    .map(|(i, _)| i)
                    .collect()
            });
        let kept_width = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(0);
        Calc {
            filter,
            projections,
            takes,
            identity,
            in_place,
            kept_width,
            scratch: Vec::new(),
        }
    }

    /// Applies the calc to an owned row, moving values instead of cloning them, and reusing the
    /// row's allocation for the result (no allocation per row).
    pub fn apply_owned(&mut self, mut row: Row) -> Result<Option<Row>> {
        if let Some(f) = &self.filter {
            if !f.eval_predicate(&row)? {
                return Ok(None);
            }
        }
        if self.identity && row.len() == self.projections.len() {
            return Ok(Some(row));
        }
        let width = self.projections.len();
        // In place when every kept column is in the row (then the positions past it are all
        // computed, and land in order).
        let kept_fit = row.len() >= self.kept_width;
        if let Some(computed) = self.in_place.as_ref().filter(|_| kept_fit) {
            // Every kept column stays where it is; the computed ones are evaluated on the input
            // row first, then written in.
            let scratch = &mut self.scratch;
            scratch.clear();
            for &i in computed {
                scratch.push(self.projections[i].eval(&row)?);
            }
            for (&i, v) in computed.iter().zip(scratch.drain(..)) {
                if i < row.len() {
                    row[i] = v;
                } else {
                    // Positions past the input are all computed, in order.
                    row.push(v);
                }
            }
            row.truncate(width);
            return Ok(Some(row));
        }
        let scratch = &mut self.scratch;
        scratch.clear();
        for (p, take) in self.projections.iter().zip(&self.takes) {
            scratch.push(match take {
                Some(_) => crate::value::Value::Null,
                None => p.eval(&row)?,
            });
        }
        for (slot, take) in scratch.iter_mut().zip(&self.takes) {
            if let Some(c) = take {
                if let Some(v) = row.get_mut(*c) {
                    *slot = std::mem::take(v);
                }
            }
        }
        row.clear();
        row.append(scratch);
        Ok(Some(row))
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
            if let Some(row) = self.apply_owned(change.row)? {
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

    #[test]
    fn computed_columns_are_written_in_place_and_appended() {
        let plus_one = Expr::Call {
            func: crate::expr::functions::ScalarFunction::Add(crate::expr::functions::Num::Integer),
            args: vec![Expr::Column(0), Expr::Literal(Value::Int(1))],
            ret: crate::types::DataType::Int,
        };
        // Column 0 replaced by a value computed from it; column 1 kept; two columns appended.
        let mut calc = Calc::new(
            None,
            vec![
                plus_one.clone(),
                Expr::Column(1),
                Expr::Literal(Value::Int(7)),
                plus_one,
            ],
        );
        assert!(calc.in_place.is_some());
        let row = vec![Value::Int(1), Value::string("a"), Value::Int(9)];
        assert_eq!(
            calc.apply_owned(row).unwrap(),
            Some(vec![
                Value::Int(2),
                Value::string("a"),
                Value::Int(7),
                Value::Int(2)
            ])
        );
        // A column that moves is not in place.
        assert!(Calc::new(None, vec![Expr::Column(1)]).in_place.is_none());
    }

    #[test]
    fn owned_rows_move_columns_and_clone_repeated_ones() {
        let mut calc = Calc::new(
            None,
            vec![Expr::Column(1), Expr::Column(0), Expr::Column(1)],
        );
        let row = vec![Value::Int(1), Value::string("a")];
        assert_eq!(
            calc.apply_owned(row).unwrap(),
            Some(vec![Value::string("a"), Value::Int(1), Value::string("a")])
        );
        let mut identity = Calc::new(None, vec![Expr::Column(0), Expr::Column(1)]);
        let row = vec![Value::Int(1), Value::Int(2)];
        assert_eq!(identity.apply_owned(row.clone()).unwrap(), Some(row));
    }
}
