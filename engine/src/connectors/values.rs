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
}
