//! Property tests: configuration input of any shape is accepted or rejected, never a panic.
//!
//! `parse_toml` is fed random bytes, random strings and valid configuration files mutated by
//! inserting, deleting and replacing characters; `Configuration::set` and `apply_overrides` are fed
//! random keys and values, partly drawn from real key names and value forms so that the checks
//! behind the key lookup are reached too. Case counts are kept small enough to run in seconds.

use proptest::prelude::*;
use streamsql::config::{apply_overrides, parse_toml};
use streamsql_engine::config::{keys, Configuration};

const VALID: &str = r#"
parallelism.default = 2
pipeline.name = "orders"
table.local-time-zone = "UTC"

[execution.checkpointing]
interval = "10 s"
mode = "EXACTLY_ONCE"
timeout = "1 min"
min-pause = 500
data-inline-threshold = "20 kb"
unaligned = { enabled = true, forced = false }

[state.backend]
type = "sled"
incremental = true

[restart-strategy]
type = "exponential-delay"
exponential-delay.backoff-multiplier = 2.0

[metrics.reporter.prom]
factory.class = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
port = 9249
"#;

/// Characters that tend to matter to a TOML parser and to our value parsers.
const INTERESTING: &[char] = &[
    '[', ']', '{', '}', '"', '\'', '=', '.', ',', '\n', ' ', '#', '\\', '0', '9', 'e', '-', '+',
    ':', 's', 'µ', '\u{0}', '\u{feff}', '字',
];

#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![prop::sample::select(INTERESTING), any::<char>(),];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match *e {
            Edit::Insert(i, c) => {
                let at = i % (chars.len() + 1);
                chars.insert(at, c);
            }
            Edit::Delete(i) if !chars.is_empty() => {
                let at = i % chars.len();
                chars.remove(at);
            }
            Edit::Replace(i, c) if !chars.is_empty() => {
                let at = i % chars.len();
                chars[at] = c;
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Keys: real names and aliases, real names slightly damaged, or arbitrary text.
fn key() -> impl Strategy<Value = String> {
    let names: Vec<String> = keys()
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
        .map(|n| n.replace("<name>", "prom").replace("<property>", "port"))
        .collect();
    let real = prop::sample::select(names);
    prop_oneof![
        real.clone(),
        (real, prop::collection::vec(edit(), 1..3)).prop_map(|(k, e)| mutate(&k, &e)),
        "metrics\\.reporter(\\.[a-z]{0,3}){0,4}",
        ".{0,40}",
    ]
}

/// Values: the forms the kinds accept, near misses, and arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,25} ?(ns|us|µs|ms|s|min|m|h|d|milli|seconds|kb|mb|gb|tb|b|bytes)?",
        "-?[0-9]{1,20}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?",
        "(?i)(true|false|exactly_once|at_least_once|sled|hashmap|none|fixeddelay|streaming|batch)",
        "(UTC|GMT|Asia/Shanghai|PST)([+-][0-9]{1,2}(:[0-9]{1,2})?)?",
        "(file://)?/?[a-z/]{0,12}",
        ".{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_toml("fuzz.toml", &text);
    }

    #[test]
    fn random_strings_never_panic(text in ".{0,200}") {
        let _ = parse_toml("fuzz.toml", &text);
    }

    #[test]
    fn mutated_configs_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        let text = mutate(VALID, &edits);
        if let Err(e) = parse_toml("fuzz.toml", &text) {
            // Rendering must not panic either, whatever span the error carries.
            let _ = format!("{:?}", miette::Report::new(e));
        }
    }

    #[test]
    fn set_never_panics(pairs in prop::collection::vec((key(), value()), 1..6)) {
        let mut conf = Configuration::new();
        for (k, v) in &pairs {
            if conf.set(k, v).is_ok() {
                // Whatever was accepted reads back through every getter without a panic.
                let _ = conf.get_raw(k);
                let _ = conf.get_str(k);
            }
            let _ = conf.reset(k);
            let _ = conf.set(k, v);
        }
        let _ = (conf.parallelism(), conf.max_parallelism(), conf.buffer_timeout());
        let _ = (conf.source_idle_timeout(), conf.auto_watermark_interval(), conf.local_time_zone());
        let _ = conf.validate();
    }

    #[test]
    fn overrides_never_panic(args in prop::collection::vec(
        prop_oneof![(key(), value()).prop_map(|(k, v)| format!("{k}={v}")), ".{0,40}"],
        1..5,
    )) {
        let mut conf = Configuration::new();
        if let Err(e) = apply_overrides(&mut conf, &args) {
            let _ = format!("{:?}", miette::Report::new(e));
        }
    }
}

#[test]
fn the_seed_document_is_valid() {
    let conf = parse_toml("valid.toml", VALID).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(conf.parallelism(), 2);
    assert_eq!(
        conf.get_bool("execution.checkpointing.unaligned.enabled"),
        Some(true)
    );
}
