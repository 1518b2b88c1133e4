//! A bounded source of constant rows (`VALUES (...)`, `SELECT 1`): subtask 0 emits them all.

use std::sync::Arc;

use super::{Source, SourceFactory, SourceStatus};
use crate::error::Result;
use crate::operator::{Output, TaskContext};
use crate::value::{Change, Row};

/// Builds [`ValuesSource`]s over a shared list of rows.
pub struct ValuesSourceFactory {
    rows: Arc<Vec<Row>>,
}

impl ValuesSourceFactory {
    pub fn new(rows: Vec<Row>) -> Self {
        ValuesSourceFactory {
            rows: Arc::new(rows),
        }
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

impl SourceFactory for ValuesSourceFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(ValuesSource {
            rows: self.rows.clone(),
            next: if ctx.subtask_index == 0 {
                0
            } else {
                usize::MAX
            },
        }))
    }
}

/// Emits its rows once, then finishes.
pub struct ValuesSource {
    rows: Arc<Vec<Row>>,
    next: usize,
}

impl Source for ValuesSource {
    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus> {
        if self.next >= self.rows.len() {
            return Ok(SourceStatus::Finished);
        }
        let end = (self.next + max_rows.max(1)).min(self.rows.len());
        for r in &self.rows[self.next..end] {
            out.push(Change::insert(r.clone()));
        }
        self.next = end;
        Ok(SourceStatus::More)
    }

    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        Ok(u64::try_from(self.next)
            .unwrap_or(u64::MAX)
            .to_le_bytes()
            .to_vec())
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| crate::error::EngineError::data("a VALUES position is 8 bytes"))?;
        self.next = usize::try_from(u64::from_le_bytes(bytes)).unwrap_or(usize::MAX);
        Ok(())
    }

    /// Subtask 0 emits every row at any parallelism: it continues from old subtask 0's position.
    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        match positions.first() {
            Some(first) if self.next != usize::MAX => self.restore_position(first),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn resumes_after_the_last_emitted_row() {
        let rows: Vec<Row> = (0..5).map(|i| vec![Value::Int(i)]).collect();
        let mut a = ValuesSource {
            rows: Arc::new(rows.clone()),
            next: 0,
        };
        let mut out = Output::new();
        a.poll(&mut out, 2).unwrap();
        let pos = a.snapshot_position().unwrap();
        let mut b = ValuesSource {
            rows: Arc::new(rows),
            next: 0,
        };
        b.restore_position(&pos).unwrap();
        let mut rest = Output::new();
        while b.poll(&mut rest, 10).unwrap() != SourceStatus::Finished {}
        let got: Vec<Value> = rest.changes.into_iter().map(|c| c.row[0].clone()).collect();
        assert_eq!(got, vec![Value::Int(2), Value::Int(3), Value::Int(4)]);
    }
}
