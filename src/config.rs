//! Loading configuration: TOML files and `-D key=value` overrides, with diagnostics.
//!
//! This module owns everything TOML: it flattens tables into Flink's dotted keys
//! (`[execution.checkpointing] interval = "10s"` is `execution.checkpointing.interval = "10s"`),
//! hands every key and value to the engine's [`Configuration`] for checking, and turns every
//! failure into a [`ConfigDiagnostic`] that carries the file's name and text and a span pointing at
//! the offending key or value.
//!
//! The TOML is read with `toml_edit`'s `ImDocument` rather than `toml`'s serde path: `ImDocument`
//! keeps the span of every key and value of nested and dotted tables without a serde data model
//! (the `toml` crate only exposes spans through `serde::Deserialize` implementations, and a
//! configuration file is an open-ended tree rather than a fixed struct). `toml_edit` is the parser
//! inside `toml`, so this adds no new code to the build.
//!
//! Invariants: a file either loads completely or not at all (the first error aborts, no partial
//! configuration escapes); a key set twice in one file, also through an alias, is an error.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{NamedSource, SourceSpan};
use streamsql_engine::config::{ConfigError, Configuration};
use toml_edit::{ImDocument, Item, Key, Value};

/// Why a configuration file or a `-D` override was rejected, ready for miette to render.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigDiagnostic {
    /// The file could not be read.
    #[error("cannot read configuration file '{path}': {source}")]
    #[diagnostic(code(streamsql::config::io))]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("invalid TOML: {message}")]
    #[diagnostic(code(streamsql::config::syntax))]
    Syntax {
        message: String,
        #[source_code]
        src: NamedSource<String>,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },
    /// A key is unknown or unsupported, or its value is invalid.
    #[error("{error}")]
    #[diagnostic(code(streamsql::config::invalid))]
    Invalid {
        error: ConfigError,
        #[source_code]
        src: NamedSource<String>,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },
    /// The same key (possibly through an alias) is set twice.
    #[error("configuration key '{key}' is set twice")]
    #[diagnostic(code(streamsql::config::duplicate))]
    Duplicate {
        key: String,
        #[source_code]
        src: NamedSource<String>,
        #[label("set again here")]
        span: SourceSpan,
        #[label("first set here")]
        first: SourceSpan,
        #[help]
        help: Option<String>,
    },
    /// A value that is not a string, number or boolean (an array, a date, an array of tables).
    #[error("the value of '{key}' must be a string, a number or a boolean, not {found}")]
    #[diagnostic(code(streamsql::config::value_type))]
    NotAValue {
        key: String,
        found: String,
        #[source_code]
        src: NamedSource<String>,
        #[label("not a configuration value")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },
    /// A `-D` argument without `=`.
    #[error("a -D override must have the form key=value")]
    #[diagnostic(code(streamsql::config::override_syntax))]
    MissingEquals {
        #[source_code]
        src: NamedSource<String>,
        #[label("no '=' in this argument")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },
}

impl ConfigDiagnostic {
    /// The key or value error behind this diagnostic, if it is one.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match self {
            ConfigDiagnostic::Invalid { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The labelled span (byte offsets into the source text), if the diagnostic has one.
    pub fn span(&self) -> Option<Range<usize>> {
        let s = match self {
            ConfigDiagnostic::Io { .. } => return None,
            ConfigDiagnostic::Syntax { span, .. }
            | ConfigDiagnostic::Invalid { span, .. }
            | ConfigDiagnostic::Duplicate { span, .. }
            | ConfigDiagnostic::NotAValue { span, .. }
            | ConfigDiagnostic::MissingEquals { span, .. } => *span,
        };
        Some(s.offset()..s.offset() + s.len())
    }
}

/// Reads and checks the TOML configuration file at `path`.
// A diagnostic carries its source text; it is built once per failed load, never on a hot path.
#[allow(clippy::result_large_err)]
pub fn load_toml(path: &Path) -> Result<Configuration, ConfigDiagnostic> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigDiagnostic::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_toml(&path.display().to_string(), &text)
}

/// Checks the TOML configuration `text`; `name` names it in diagnostics (usually the file path).
// A diagnostic carries its source text; it is built once per failed load, never on a hot path.
#[allow(clippy::result_large_err)]
pub fn parse_toml(name: &str, text: &str) -> Result<Configuration, ConfigDiagnostic> {
    let src = || NamedSource::new(name, text.to_string());
    let doc = ImDocument::parse(text).map_err(|e| {
        let message = e.message().trim().replace('\n', ": ");
        let help = message.contains("duplicate key").then(|| {
            "a key cannot be both a value and a table in TOML: next to 'state.backend.incremental' \
             write 'state.backend' as its 2.x name 'state.backend.type' (likewise \
             'restart-strategy.type'), or quote the whole key: \"state.backend\" = \"sled\""
                .to_string()
        });
        ConfigDiagnostic::Syntax {
            message,
            src: src(),
            span: span_of(e.span().unwrap_or(0..0), text),
            help,
        }
    })?;
    let mut entries = Vec::new();
    collect(
        Node::Item(doc.as_item()),
        "",
        None,
        None,
        &mut entries,
        text,
        &src,
    )?;

    let mut conf = Configuration::new();
    // Canonical key -> (name as written, key span), to report a key set twice under two names.
    let mut seen: BTreeMap<String, (String, Range<usize>)> = BTreeMap::new();
    for e in entries {
        conf.set(&e.key, &e.value).map_err(|error| {
            let (span, label) = match &error {
                ConfigError::BadValue { expected, .. } => {
                    (e.value_span.clone(), format!("expected {expected}"))
                }
                ConfigError::Unsupported { .. } => (e.key_span.clone(), "not supported".into()),
                _ => (e.key_span.clone(), "unknown key".into()),
            };
            ConfigDiagnostic::Invalid {
                help: error.help(),
                error,
                src: src(),
                span: span_of(span, text),
                label,
            }
        })?;
        let canonical = streamsql_engine::config::spec(e.key.trim())
            .filter(|s| !s.name.contains('<'))
            .map_or_else(|| e.key.trim().to_string(), |s| s.name.to_string());
        if let Some((first_name, first)) = seen.get(&canonical) {
            let help = if *first_name == e.key {
                None
            } else {
                Some(format!(
                    "'{first_name}' and '{}' are two names of the same key '{canonical}'; keep one",
                    e.key
                ))
            };
            return Err(ConfigDiagnostic::Duplicate {
                key: canonical,
                src: src(),
                span: span_of(e.key_span, text),
                first: span_of(first.clone(), text),
                help,
            });
        }
        seen.insert(canonical, (e.key, e.key_span));
    }
    Ok(conf)
}

/// Applies `-D key=value` overrides in order; each argument is its own diagnostic source.
// A diagnostic carries its source text; it is built once per failed load, never on a hot path.
#[allow(clippy::result_large_err)]
pub fn apply_overrides(conf: &mut Configuration, pairs: &[String]) -> Result<(), ConfigDiagnostic> {
    for arg in pairs {
        let src = || NamedSource::new("-D", arg.clone());
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ConfigDiagnostic::MissingEquals {
                src: src(),
                span: span_of(0..arg.len(), arg),
                help: Some(
                    "write -D key=value, for example -D execution.checkpointing.interval=10s"
                        .to_string(),
                ),
            });
        };
        conf.set(key, value).map_err(|error| {
            let value_start = key.len() + 1;
            let (span, label) = match &error {
                ConfigError::BadValue { expected, .. } => {
                    (value_start..arg.len(), format!("expected {expected}"))
                }
                ConfigError::Unsupported { .. } => (0..key.len(), "not supported".to_string()),
                _ => (0..key.len(), "unknown key".to_string()),
            };
            ConfigDiagnostic::Invalid {
                help: error.help(),
                error,
                src: src(),
                span: span_of(span, arg),
                label,
            }
        })?;
    }
    Ok(())
}

/// The configuration file to load, by precedence: `--config FILE` (returned even when missing,
/// so that loading reports it), else `PIPELINE.toml` beside the SQL file, else
/// `./streamsql.toml`; `None` when there is none.
pub fn find_config_file(pipeline: Option<&Path>, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(sql) = pipeline {
        let beside = sql.with_extension("toml");
        if beside != sql && beside.is_file() {
            return Some(beside);
        }
    }
    let local = PathBuf::from("streamsql.toml");
    local.is_file().then_some(local)
}

/// One flattened `key = value` with the spans to report it by.
struct Entry {
    key: String,
    value: String,
    key_span: Range<usize>,
    value_span: Range<usize>,
}

/// A TOML node: top-level and `[table]` items, or values inside inline tables.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
}

/// The children of a table: key as text, key with its span, node.
type Children<'a> = Vec<(&'a str, Option<&'a Key>, Node<'a>)>;

/// Flattens `node` (whose dotted path is `prefix`) into `out`. `key_start` is where the dotted key
/// expression naming `node` begins (so `a.b.c = 1` is reported over `a.b.c`, not just `c`), and
/// `key_span` is the span of the node's own last key segment.
// A diagnostic carries its source text; it is built once per failed load, never on a hot path.
#[allow(clippy::result_large_err)]
fn collect<'a>(
    node: Node<'a>,
    prefix: &str,
    key_start: Option<usize>,
    key_span: Option<Range<usize>>,
    out: &mut Vec<Entry>,
    text: &str,
    src: &dyn Fn() -> NamedSource<String>,
) -> Result<(), ConfigDiagnostic> {
    let leaf_key_span = || {
        let k = key_span.clone().unwrap_or(0..0);
        key_start.map_or(k.clone(), |s| s.min(k.start)..k.end)
    };
    // The children of a table, and whether the table is the implicit parent of a dotted key.
    let (children, dotted): (Children<'a>, bool) = match node {
        Node::Item(Item::None) => return Ok(()),
        Node::Item(Item::Table(t)) => (
            t.iter()
                .map(|(k, item)| (k, t.key(k), Node::Item(item)))
                .collect(),
            t.is_dotted(),
        ),
        Node::Item(Item::Value(Value::InlineTable(t))) | Node::Value(Value::InlineTable(t)) => (
            t.iter()
                .map(|(k, v)| (k, t.key(k), Node::Value(v)))
                .collect(),
            t.is_dotted(),
        ),
        Node::Item(Item::ArrayOfTables(a)) => {
            return Err(not_a_value(
                prefix,
                "an array of tables",
                a.span(),
                leaf_key_span(),
                text,
                src,
            ))
        }
        Node::Item(Item::Value(v)) | Node::Value(v) => {
            let value = match v {
                Value::String(s) => s.value().clone(),
                Value::Integer(i) => i.value().to_string(),
                Value::Float(f) => f.value().to_string(),
                Value::Boolean(b) => b.value().to_string(),
                Value::Datetime(_) => {
                    return Err(not_a_value(
                        prefix,
                        "a date-time",
                        v.span(),
                        leaf_key_span(),
                        text,
                        src,
                    ))
                }
                Value::Array(_) => {
                    return Err(not_a_value(
                        prefix,
                        "an array",
                        v.span(),
                        leaf_key_span(),
                        text,
                        src,
                    ))
                }
                // Matched as a table above.
                Value::InlineTable(_) => return Ok(()),
            };
            let key_span = leaf_key_span();
            out.push(Entry {
                key: prefix.to_string(),
                value,
                value_span: v.span().unwrap_or_else(|| key_span.clone()),
                key_span,
            });
            return Ok(());
        }
    };
    for (k, key, child) in children {
        let full = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        let span = key.and_then(Key::span);
        // A dotted parent (`a.b = 1` makes `a` a dotted table) belongs to the same key expression.
        let start = if dotted {
            key_start.or_else(|| key_span.as_ref().map(|s| s.start))
        } else {
            None
        };
        collect(child, &full, start, span, out, text, src)?;
    }
    Ok(())
}

fn not_a_value(
    key: &str,
    found: &str,
    value_span: Option<Range<usize>>,
    key_span: Range<usize>,
    text: &str,
    src: &dyn Fn() -> NamedSource<String>,
) -> ConfigDiagnostic {
    ConfigDiagnostic::NotAValue {
        key: key.to_string(),
        found: found.to_string(),
        src: src(),
        span: span_of(value_span.unwrap_or(key_span), text),
        help: Some(
            "configuration values are single strings, numbers or booleans, as in Flink's \
             configuration; write lists as one comma-separated string"
                .to_string(),
        ),
    }
}

/// A miette span for a byte range, clamped to the text so a bad range never panics a renderer.
fn span_of(range: Range<usize>, text: &str) -> SourceSpan {
    let start = range.start.min(text.len());
    let end = range.end.clamp(start, text.len());
    (start, end - start).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ok(text: &str) -> Configuration {
        parse_toml("test.toml", text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn err(text: &str) -> ConfigDiagnostic {
        match parse_toml("test.toml", text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    /// The text under the diagnostic's label.
    fn labelled<'t>(e: &ConfigDiagnostic, text: &'t str) -> &'t str {
        &text[e.span().expect("a span")]
    }

    #[test]
    fn tables_flatten_to_dotted_keys() {
        let a = ok("[execution.checkpointing]\ninterval = \"10s\"\n");
        let b = ok("\"execution.checkpointing.interval\" = \"10s\"\n");
        let c = ok("execution.checkpointing.interval = \"10s\"\n");
        let d = ok("[execution]\ncheckpointing = { interval = \"10s\" }\n");
        let e = ok("[execution]\n\"checkpointing.interval\" = \"10s\"\n");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert_eq!(a, e);
        assert_eq!(
            a.get_duration("execution.checkpointing.interval"),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn values_may_be_strings_numbers_or_booleans() {
        let c = ok(r#"
parallelism.default = 4
execution.checkpointing.interval = 30000
execution.checkpointing.unaligned.enabled = true
restart-strategy.exponential-delay.backoff-multiplier = 2.5
state.backend.type = "hashmap"

[metrics.reporter.prom]
factory.class = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
port = 9249
"#);
        assert_eq!(c.parallelism(), 4);
        assert_eq!(
            c.get_duration("execution.checkpointing.interval"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            c.get_bool("execution.checkpointing.unaligned.enabled"),
            Some(true)
        );
        assert_eq!(
            c.get_float("restart-strategy.exponential-delay.backoff-multiplier"),
            Some(2.5)
        );
        assert_eq!(c.get_str("metrics.reporter.prom.port"), Some("9249"));
        assert_eq!(c.get_str("state.backend.type"), Some("hashmap"));
    }

    #[test]
    fn unknown_key_points_at_the_key_with_a_suggestion() {
        let text = "[execution.checkpointing]\nintervall = \"10s\"\n";
        let e = err(text);
        assert_eq!(labelled(&e, text), "intervall");
        let ConfigDiagnostic::Invalid { help, error, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(matches!(error, ConfigError::UnknownKey { .. }));
        assert_eq!(
            help.as_deref(),
            Some("did you mean 'execution.checkpointing.interval'?")
        );

        let text = "pipeline.name = \"a\"\nexecution.checkpointing.intervall = \"10s\"\n";
        let e = err(text);
        assert_eq!(labelled(&e, text), "execution.checkpointing.intervall");
    }

    #[test]
    fn bad_value_points_at_the_value() {
        let text = "[execution.checkpointing]\nmode = \"TWICE\"\n";
        let e = err(text);
        assert_eq!(labelled(&e, text), "\"TWICE\"");
        assert_eq!(
            e.to_string(),
            "invalid value 'TWICE' for key 'execution.checkpointing.mode': expected one of: EXACTLY_ONCE, AT_LEAST_ONCE"
        );
        let ConfigDiagnostic::Invalid { label, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(label, "expected one of: EXACTLY_ONCE, AT_LEAST_ONCE");
    }

    #[test]
    fn syntax_errors_carry_a_span() {
        let text = "parallelism.default = \n";
        let e = err(text);
        assert!(matches!(e, ConfigDiagnostic::Syntax { .. }), "{e:?}");
        assert!(e.span().is_some());
    }

    #[test]
    fn value_and_table_at_once_is_explained() {
        let text = "[state]\nbackend = \"sled\"\n[state.backend]\nincremental = true\n";
        let e = err(text);
        let ConfigDiagnostic::Syntax { help, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            help.as_deref().unwrap_or("").contains("state.backend.type"),
            "{help:?}"
        );
        // The 2.x name or a quoted key avoids the clash.
        let c = ok("[state.backend]\ntype = \"sled\"\nincremental = true\n");
        assert_eq!(
            c.get_bool("execution.checkpointing.incremental"),
            Some(true)
        );
        let c = ok("\"state.backend\" = \"hashmap\"\n[state.backend]\nincremental = true\n");
        assert_eq!(c.get_str("state.backend.type"), Some("hashmap"));
    }

    #[test]
    fn a_key_set_twice_through_an_alias_is_an_error() {
        let text = "state.checkpoints.dir = \"/a\"\n[execution.checkpointing]\ndir = \"/b\"\n";
        let e = err(text);
        let ConfigDiagnostic::Duplicate {
            key, help, first, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(key, "execution.checkpointing.dir");
        assert!(help.as_deref().unwrap_or("").contains("two names"));
        assert_eq!(
            &text[first.offset()..first.offset() + first.len()],
            "state.checkpoints.dir"
        );
        assert_eq!(labelled(&e, text), "dir");
    }

    #[test]
    fn arrays_and_dates_are_not_values() {
        let text = "metrics.reporters = [\"a\", \"b\"]\n";
        let e = err(text);
        assert!(matches!(e, ConfigDiagnostic::NotAValue { .. }), "{e:?}");
        assert_eq!(labelled(&e, text), "[\"a\", \"b\"]");
        assert!(matches!(
            err("pipeline.name = 1979-05-27\n"),
            ConfigDiagnostic::NotAValue { .. }
        ));
        assert!(matches!(
            err("[[pipeline]]\nname = \"x\"\n"),
            ConfigDiagnostic::NotAValue { .. }
        ));
    }

    #[test]
    fn unsupported_keys_are_rejected() {
        let e = err("table.exec.mini-batch.enabled = true\n");
        assert!(matches!(
            e.config_error(),
            Some(ConfigError::Unsupported { .. })
        ));
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert!(ok("").is_empty());
        assert!(ok("# only a comment\n").is_empty());
    }

    #[test]
    fn overrides_set_keys_and_report_spans() {
        let mut c = Configuration::new();
        apply_overrides(
            &mut c,
            &[
                "parallelism.default=3".to_string(),
                "state.backend = hashmap".to_string(),
            ],
        )
        .unwrap();
        assert_eq!(c.parallelism(), 3);
        assert_eq!(c.get_str("state.backend.type"), Some("hashmap"));

        let arg = "parallelism.default".to_string();
        let e = apply_overrides(&mut c, std::slice::from_ref(&arg)).unwrap_err();
        assert!(matches!(e, ConfigDiagnostic::MissingEquals { .. }));
        assert_eq!(labelled(&e, &arg), arg);

        let arg = "parallelism.default=zero".to_string();
        let e = apply_overrides(&mut c, std::slice::from_ref(&arg)).unwrap_err();
        assert_eq!(labelled(&e, &arg), "zero");

        let arg = "paralelism.default=2".to_string();
        let e = apply_overrides(&mut c, std::slice::from_ref(&arg)).unwrap_err();
        assert_eq!(labelled(&e, &arg), "paralelism.default");
        assert_eq!(
            e.config_error().and_then(ConfigError::help).as_deref(),
            Some("did you mean 'parallelism.default'?")
        );
        assert_eq!(c.parallelism(), 3, "failed overrides change nothing");
    }

    #[test]
    fn config_file_precedence() {
        let dir =
            std::env::temp_dir().join(format!("streamsql-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sql = dir.join("pipeline.sql");
        let beside = dir.join("pipeline.toml");
        let explicit = dir.join("other.toml");
        std::fs::write(&sql, "").unwrap();
        assert_eq!(
            find_config_file(Some(&sql), Some(&explicit)),
            Some(explicit.clone())
        );
        std::fs::write(&beside, "parallelism.default = 2\n").unwrap();
        assert_eq!(find_config_file(Some(&sql), None), Some(beside.clone()));
        assert_eq!(load_toml(&beside).unwrap().parallelism(), 2);
        assert!(matches!(
            load_toml(&explicit),
            Err(ConfigDiagnostic::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn diagnostics_render_with_miette() {
        let text = "[execution.checkpointing]\nintervall = \"10s\"\n";
        let report = miette::Report::new(err(text));
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, report.as_ref())
            .unwrap();
        assert!(out.contains("test.toml"), "{out}");
        assert!(out.contains("did you mean"), "{out}");
        assert!(out.contains("unknown key"), "{out}");
    }
}
