//! `CollectSink`: hands every change of a query's result to the caller over a bounded channel
//! (the command line prints them; an embedding application consumes them).

use crossbeam_channel::{SendTimeoutError, Sender};
use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::operator::{Operator, Output};
use crate::value::Change;

/// What the collect sink sends: batches of changes, then the end.
#[derive(Debug)]
pub enum Collected {
    Changes(Vec<Change>),
    End,
}

pub struct CollectSink {
    tx: Sender<Collected>,
}

impl CollectSink {
    pub fn new(tx: Sender<Collected>) -> Self {
        CollectSink { tx }
    }

    fn send(&self, mut item: Collected) -> Result<()> {
        loop {
            match self.tx.send_timeout(item, Duration::from_millis(50)) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(i)) => item = i,
                // The consumer went away: the result is no longer wanted.
                Err(SendTimeoutError::Disconnected(_)) => return Err(EngineError::Cancelled),
            }
        }
    }
}

impl Operator for CollectSink {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        self.send(Collected::Changes(batch))
    }

    fn on_end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        self.send(Collected::End)
    }
}
