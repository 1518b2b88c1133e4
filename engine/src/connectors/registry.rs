//! The connector registry: from a table's `connector` name and options to a source factory or a
//! sink, with Flink's errors for unknown connectors and for a connector used in the wrong
//! direction.
//!
//! Sources: `filesystem`, `datagen`, `nexmark`. Sinks: `filesystem` (append-only), `print`, `blackhole`
//! (both accept updating streams).

use std::sync::Arc;

use crate::connectors::options::{did_you_mean, invalid_value, OptionReader, Options};
use crate::connectors::{blackhole, datagen, filesystem, fs_sink, nexmark, print, SourceFactory};
use crate::error::{EngineError, Result};
use crate::operator::OperatorFactory;
use crate::types::Schema;

/// Every connector name, sorted as Flink lists them.
pub const CONNECTORS: [&str; 5] = ["blackhole", "datagen", "filesystem", "nexmark", "print"];

/// A source connector an application adds to a session (`Catalog::add_source_connector` of the
/// sql crate): from a table's name, physical schema and options (`connector` left out) to the
/// factory of its sources, or the error that the table's options deserve.
pub type CustomSource =
    Arc<dyn Fn(&str, &Schema, &Options) -> Result<Arc<dyn SourceFactory>> + Send + Sync>;

/// A sink ready to be placed in a dataflow.
pub struct SinkSpec {
    /// Builds one sink operator per subtask.
    pub factory: Arc<dyn OperatorFactory>,
    /// Whether the sink takes `-U` / `+U` / `-D` changes; the planner rejects an updating input
    /// to a sink that does not.
    pub accepts_updates: bool,
    /// A short text for EXPLAIN, e.g. `print` or `filesystem(path=/out, format=csv)`.
    pub description: String,
    /// `sink.parallelism`, when the table sets it.
    pub parallelism: Option<usize>,
    /// Whether the sink keeps no checkpointed state and needs no checkpoint notifications, so
    /// that it can run in its input's task (`DataflowGraph::chain_sinks`).
    pub chainable: bool,
}

impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSpec")
            .field("accepts_updates", &self.accepts_updates)
            .field("description", &self.description)
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

/// Reads `sink.parallelism` (a positive integer).
pub(crate) fn sink_parallelism(r: &mut OptionReader<'_>) -> Result<Option<usize>> {
    match r.u64("sink.parallelism")? {
        None => Ok(None),
        Some(p) => usize::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .ok_or_else(|| invalid_value("sink.parallelism", &p.to_string(), "a positive integer")),
    }
}

fn unknown_connector(connector: &str) -> EngineError {
    EngineError::option(
        format!(
            "Could not find any factory for identifier '{connector}' that implements 'org.apache.flink.table.factories.DynamicTableFactory' in the classpath.\n\nAvailable factory identifiers are:\n\n{}",
            CONNECTORS.join("\n")
        ),
        Some(match did_you_mean(connector, &CONNECTORS) {
            Some(s) => format!("did you mean '{s}'?"),
            None => format!("available connectors: {}", CONNECTORS.join(", ")),
        }),
    )
}

/// The source factory of table `table` with connector `connector`.
pub fn create_source(
    connector: &str,
    table: &str,
    schema: &Schema,
    options: &Options,
) -> Result<Arc<dyn SourceFactory>> {
    match connector {
        "filesystem" => Ok(Arc::new(filesystem::create_source(table, schema, options)?)),
        "datagen" => Ok(Arc::new(datagen::create_source(table, schema, options)?)),
        "nexmark" => Ok(Arc::new(nexmark::create_source(table, schema, options)?)),
        "print" | "blackhole" => Err(EngineError::option(
            format!("Connector '{connector}' can only be used as a sink. It cannot be used as a source."),
            None,
        )),
        other => Err(unknown_connector(other)),
    }
}

/// The sink of table `table` with connector `connector`.
pub fn create_sink(
    connector: &str,
    table: &str,
    schema: &Schema,
    options: &Options,
) -> Result<SinkSpec> {
    match connector {
        "print" => {
            let o = print::read_options(options)?;
            let description = match &o.identifier {
                Some(id) => format!("print(identifier={id})"),
                None => "print".to_string(),
            };
            let parallelism = o.parallelism;
            Ok(SinkSpec {
                factory: Arc::new(print::PrintSinkFactory::new(o, schema)),
                accepts_updates: true,
                description,
                parallelism,
                chainable: true,
            })
        }
        "blackhole" => {
            let parallelism = blackhole::read_options(options)?;
            Ok(SinkSpec {
                factory: Arc::new(blackhole::BlackholeSinkFactory),
                accepts_updates: true,
                description: "blackhole".to_string(),
                parallelism,
                chainable: true,
            })
        }
        "filesystem" => {
            let f = fs_sink::create_sink(table, schema, options)?;
            let description = format!(
                "filesystem(path={}, format={})",
                options.get("path").unwrap_or_default(),
                options.get("format").unwrap_or_default()
            );
            let parallelism = f.parallelism;
            Ok(SinkSpec {
                factory: Arc::new(f),
                accepts_updates: false,
                description,
                parallelism,
                // Two-phase commit: its pending files are state, committed when a checkpoint
                // completes.
                chainable: false,
            })
        }
        "datagen" | "nexmark" => Err(EngineError::option(
            format!("Connector '{connector}' can only be used as a source. It cannot be used as a sink."),
            None,
        )),
        other => Err(unknown_connector(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DataType, Field};

    fn schema() -> Schema {
        Schema::new(vec![Field::new("a", DataType::Int)])
    }

    #[test]
    fn unknown_connector_suggests() {
        let err = create_source("kafkaa", "t", &schema(), &Options::new())
            .err()
            .unwrap();
        match err {
            EngineError::Option { message, help } => {
                assert!(message.starts_with(
                    "Could not find any factory for identifier 'kafkaa' that implements 'org.apache.flink.table.factories.DynamicTableFactory' in the classpath."
                ));
                assert!(message.ends_with("blackhole\ndatagen\nfilesystem\nnexmark\nprint"));
                assert_eq!(
                    help.as_deref(),
                    Some("available connectors: blackhole, datagen, filesystem, nexmark, print")
                );
            }
            other => panic!("{other:?}"),
        }
        let err = create_sink("prnt", "t", &schema(), &Options::new()).unwrap_err();
        assert!(
            matches!(err, EngineError::Option { help: Some(h), .. } if h == "did you mean 'print'?")
        );
    }

    #[test]
    fn directions_and_update_modes() {
        assert!(create_source("print", "t", &schema(), &Options::new())
            .err()
            .unwrap()
            .to_string()
            .contains("can only be used as a sink"));
        assert!(create_sink("datagen", "t", &schema(), &Options::new()).is_err());
        let p = create_sink(
            "print",
            "t",
            &schema(),
            &Options::from_pairs([("connector", "print")]),
        )
        .unwrap();
        assert!(p.accepts_updates);
        let b = create_sink("blackhole", "t", &schema(), &Options::new()).unwrap();
        assert!(b.accepts_updates);
        let o = Options::from_pairs([
            ("path", "/tmp/x"),
            ("format", "csv"),
            ("sink.parallelism", "3"),
        ]);
        let f = create_sink("filesystem", "t", &schema(), &o).unwrap();
        assert!(!f.accepts_updates);
        assert_eq!(f.parallelism, Some(3));
        assert_eq!(f.description, "filesystem(path=/tmp/x, format=csv)");
        assert!(create_source(
            "datagen",
            "t",
            &schema(),
            &Options::from_pairs([("number-of-rows", "1")])
        )
        .is_ok());
    }
}
