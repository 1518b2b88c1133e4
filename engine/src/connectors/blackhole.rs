//! The `blackhole` sink: discards every change (the runtime still counts them as records in).
//! Useful to measure a pipeline without the cost of writing its output.

use crate::connectors::options::Options;
use crate::error::Result;
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::value::Change;

/// Validates the blackhole connector's options (it has none besides `sink.parallelism`) and
/// returns the requested parallelism.
pub fn read_options(options: &Options) -> Result<Option<usize>> {
    let mut r = options.reader();
    let parallelism = crate::connectors::registry::sink_parallelism(&mut r)?;
    r.finish("blackhole")?;
    Ok(parallelism)
}

/// Builds blackhole subtasks.
#[derive(Debug, Default)]
pub struct BlackholeSinkFactory;

impl OperatorFactory for BlackholeSinkFactory {
    fn create(&self, _ctx: &TaskContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(BlackholeSink))
    }
}

struct BlackholeSink;

impl Operator for BlackholeSink {
    fn on_batch(&mut self, _input: usize, _batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_options() {
        assert_eq!(
            read_options(&Options::from_pairs([("connector", "blackhole")])).unwrap(),
            None
        );
        let err = read_options(&Options::from_pairs([("path", "/x")])).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Unsupported options found for 'blackhole'."));
    }
}
