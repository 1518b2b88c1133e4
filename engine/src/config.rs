//! Configuration keys (Flink's names), their defaults and validation.
//!
//! The engine knows keys and values as strings: the facade flattens TOML into them, the SQL `SET`
//! statement and `-D key=value` hand them over as they are. Every key streamsql accepts is listed
//! once in a static registry ([`keys`]) with its Flink 2.x name, its Flink 1.x (and older) aliases,
//! its value kind, its default and a one-line meaning; `docs/config.md` is generated from it.
//!
//! Invariants kept by [`Configuration`]:
//! - it holds only known keys, stored under their canonical (Flink 2.x) name, so an alias and its
//!   canonical name can never hold two different values;
//! - every stored value was validated against its key's kind (and normalised: enum values carry
//!   their canonical spelling, booleans are lower case), so typed getters never fail to parse;
//! - an unknown key is an error, never silently ignored: a key streamsql would ignore (such as
//!   `table.exec.mini-batch.*`) is rejected rather than accepted, because accepting it would let a
//!   Flink user believe it had an effect.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::EngineError;
use crate::keygroup;

/// What is wrong with a key or a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key is not a configuration key streamsql knows.
    #[error("unknown configuration key '{key}'")]
    UnknownKey {
        key: String,
        /// The closest known key, when one is close enough to be a likely typo.
        suggestion: Option<String>,
    },
    /// The value does not parse as the key's kind or is out of range.
    #[error("invalid value '{value}' for key '{key}': expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    /// A Flink key that streamsql deliberately does not accept, with the reason.
    #[error("configuration key '{key}' is not supported: {reason}")]
    Unsupported { key: String, reason: String },
    /// Two keys whose values contradict each other.
    #[error("inconsistent configuration: {message}")]
    Conflict { message: String },
}

impl ConfigError {
    /// A help line for the diagnostic.
    pub fn help(&self) -> Option<String> {
        match self {
            ConfigError::UnknownKey {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean '{s}'?")),
            ConfigError::UnknownKey {
                suggestion: None, ..
            } => Some("docs/config.md lists every configuration key".to_string()),
            ConfigError::BadValue { key, .. } => {
                let spec = lookup(key)?.0;
                spec.default
                    .map(|d| format!("the default of '{}' is '{d}'", spec.name))
            }
            ConfigError::Unsupported { .. } | ConfigError::Conflict { .. } => None,
        }
    }
}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        EngineError::Option {
            help: e.help(),
            message: e.to_string(),
        }
    }
}

/// The kind of value a key takes, which decides how its value is parsed and checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Flink's duration forms: `10s`, `10 s`, `1 min`, `500ms`; a bare number is milliseconds.
    Duration,
    /// A whole number within `min..=max`.
    Int { min: i64, max: i64 },
    /// A decimal number within `min..=max`.
    Float { min: f64, max: f64 },
    /// `true` or `false`, in any case.
    Bool,
    /// One of `values`, in any case; each synonym maps to one of `values`.
    Enum {
        values: &'static [&'static str],
        synonyms: &'static [(&'static str, &'static str)],
    },
    /// Flink's memory sizes (`20kb`, `64 mb`, `1 gb`, bare bytes; units are powers of 1024).
    Memory { max: u64 },
    /// Any text.
    String,
    /// A local directory; a `file://` prefix is accepted and dropped.
    Path,
    /// A zone ID such as `UTC`, `Asia/Shanghai` or `GMT+08:00`, with Flink's restrictions.
    TimeZone,
}

impl Kind {
    /// What a valid value looks like, for error messages ("expected ...").
    pub fn expected(&self) -> String {
        match self {
            Kind::Duration => {
                "a duration such as '10 s', '500 ms', '1 min' (units: ns, us, ms, s, min, h, d)"
                    .to_string()
            }
            Kind::Int { min, max } => {
                if *max == i64::from(i32::MAX) {
                    format!("a whole number of at least {min}")
                } else {
                    format!("a whole number between {min} and {max}")
                }
            }
            Kind::Float { min, max } => {
                if *max == f64::MAX {
                    format!("a number of at least {min}")
                } else {
                    format!("a number between {min} and {max}")
                }
            }
            Kind::Bool => "true or false".to_string(),
            Kind::Enum { values, .. } => format!("one of: {}", values.join(", ")),
            Kind::Memory { max } => {
                format!(
                    "a memory size such as '20 kb' or '64 mb' (units: b, kb, mb, gb, tb) of at most {}",
                    format_memory(*max)
                )
            }
            Kind::String => "a string".to_string(),
            Kind::Path => "a local directory path such as '/var/lib/streamsql/checkpoints'".to_string(),
            Kind::TimeZone => {
                "a zone ID such as 'UTC', 'Asia/Shanghai' or 'GMT+08:00' (abbreviations such as 'PST' and 'UTC+8' are not accepted, as in Flink)".to_string()
            }
        }
    }

    /// A short name of the kind for the documentation table.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Duration => "duration",
            Kind::Int { .. } => "integer",
            Kind::Float { .. } => "number",
            Kind::Bool => "boolean",
            Kind::Enum { .. } => "enum",
            Kind::Memory { .. } => "memory size",
            Kind::String => "string",
            Kind::Path => "path",
            Kind::TimeZone => "time zone",
        }
    }

    /// Checks `value` and returns the form to store, or `None` when it is not valid.
    fn normalize(&self, value: &str) -> Option<String> {
        let v = value.trim();
        match self {
            Kind::Duration => parse_duration(v).map(|_| v.to_string()),
            Kind::Int { min, max } => {
                let n: i64 = v.parse().ok()?;
                (*min..=*max).contains(&n).then(|| n.to_string())
            }
            Kind::Float { min, max } => {
                let x: f64 = v.parse().ok()?;
                (x.is_finite() && x >= *min && x <= *max).then(|| v.to_string())
            }
            Kind::Bool => parse_bool(v).map(|b| b.to_string()),
            Kind::Enum { values, synonyms } => values
                .iter()
                .find(|a| a.eq_ignore_ascii_case(v))
                .or_else(|| {
                    synonyms
                        .iter()
                        .find(|(s, _)| s.eq_ignore_ascii_case(v))
                        .map(|(_, a)| a)
                })
                .map(|a| (*a).to_string()),
            Kind::Memory { max } => {
                let bytes = parse_memory_size(v)?;
                (bytes <= *max).then(|| v.to_string())
            }
            // Values are kept verbatim: a pipeline name may have meaningful spaces.
            Kind::String => Some(value.to_string()),
            Kind::Path => {
                let p = v.strip_prefix("file://").unwrap_or(v);
                (!p.is_empty() && !p.contains("://")).then(|| v.to_string())
            }
            Kind::TimeZone => valid_time_zone(v).then(|| v.to_string()),
        }
    }
}

/// Whether the runtime acts on a key today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// The runtime honours the key.
    Honoured,
    /// The key is valid and checked; the feature it configures (checkpointing, restarts,
    /// monitoring, the shell, the REST API) is under construction and will honour it.
    Accepted,
}

/// One configuration key: its names, its kind, its default and its meaning.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// The canonical (Flink 2.x) name. A segment written `<name>` matches any one segment, and a
    /// final `<property>` matches one or more segments.
    pub name: &'static str,
    /// Older names (Flink 1.x and before) that mean the same key.
    pub aliases: &'static [&'static str],
    /// How values are parsed and checked.
    pub kind: Kind,
    /// streamsql's default; `None` means unset (the meaning of unset is in `description`).
    pub default: Option<&'static str>,
    /// Flink's default, as Flink documents it.
    pub flink_default: &'static str,
    /// One line saying what the key does.
    pub description: &'static str,
    /// Whether the runtime acts on the key today.
    pub support: Support,
}

impl KeySpec {
    const fn new(name: &'static str, kind: Kind, description: &'static str) -> Self {
        KeySpec {
            name,
            aliases: &[],
            kind,
            default: None,
            flink_default: "(none)",
            description,
            support: Support::Accepted,
        }
    }

    /// Sets streamsql's and Flink's default to the same value.
    const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self.flink_default = value;
        self
    }

    /// Records Flink's default where ours differs (the reason is in the description).
    const fn flink(mut self, value: &'static str) -> Self {
        self.flink_default = value;
        self
    }

    const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    const fn honoured(mut self) -> Self {
        self.support = Support::Honoured;
        self
    }

    fn is_pattern(&self) -> bool {
        self.name.contains('<')
    }
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

const INT_MAX: i64 = i32::MAX as i64;
/// Flink's upper bound of `pipeline.max-parallelism` (`1 << 15`).
const MAX_PARALLELISM_BOUND: i64 = 32768;
const BOOL: Kind = Kind::Bool;
const DURATION: Kind = Kind::Duration;

static KEYS: &[KeySpec] = &[
    // --- runtime -------------------------------------------------------------------------
    KeySpec::new(
        "parallelism.default",
        int(1, MAX_PARALLELISM_BOUND),
        "Parallelism of every operator that does not set its own.",
    )
    .default("1")
    .honoured(),
    KeySpec::new(
        "pipeline.max-parallelism",
        int(1, MAX_PARALLELISM_BOUND),
        "Number of key groups keyed state is split into, the upper bound for rescaling; unset derives it from the parallelism (1.5 x parallelism rounded up to a power of two, at least 128).",
    )
    .flink("-1 (derived)")
    .honoured(),
    KeySpec::new(
        "execution.buffer-timeout.interval",
        DURATION,
        "How long a partly filled batch may wait before it is sent downstream; 0 ms sends after every input batch.",
    )
    .aliases(&["execution.buffer-timeout"])
    .default("100 ms")
    .honoured(),
    KeySpec::new(
        "table.exec.source.idle-timeout",
        DURATION,
        "A source subtask that receives no data for this long is marked idle and stops holding back watermarks; 0 ms disables idleness detection.",
    )
    .default("0 ms")
    .honoured(),
    KeySpec::new(
        "pipeline.auto-watermark-interval",
        DURATION,
        "Interval at which sources emit watermarks.",
    )
    .default("200 ms")
    .honoured(),
    KeySpec::new(
        "table.local-time-zone",
        Kind::TimeZone,
        "Session time zone for TIMESTAMP_LTZ conversions and time functions. Flink uses the system zone; streamsql computes in UTC so that results do not depend on the machine, and rejects any other zone.",
    )
    .default("UTC")
    .flink("default (the system time zone)")
    .honoured(),
    KeySpec::new(
        "execution.runtime-mode",
        Kind::Enum {
            values: &["STREAMING"],
            synonyms: &[],
        },
        "Runtime execution mode. streamsql runs streaming jobs only (bounded sources finish when exhausted); BATCH and AUTOMATIC are rejected.",
    )
    .default("STREAMING")
    .honoured(),
    KeySpec::new(
        "pipeline.name",
        Kind::String,
        "Name of the job, shown in monitoring and used to find its checkpoints; unset uses the pipeline file name.",
    ),
    // --- checkpointing ---------------------------------------------------------------------
    KeySpec::new(
        "execution.checkpointing.interval",
        DURATION,
        "Interval at which checkpoints are triggered; unset disables checkpointing.",
    )
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.mode",
        Kind::Enum {
            values: &["EXACTLY_ONCE", "AT_LEAST_ONCE"],
            synonyms: &[],
        },
        "Checkpointing guarantee: EXACTLY_ONCE aligns barriers, AT_LEAST_ONCE does not block inputs.",
    )
    .default("EXACTLY_ONCE")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.timeout",
        DURATION,
        "A checkpoint that has not completed after this long is aborted.",
    )
    .default("10 min")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.min-pause",
        DURATION,
        "Minimum time between the end of one checkpoint and the start of the next.",
    )
    .default("0 ms")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.max-concurrent-checkpoints",
        int(1, INT_MAX),
        "Maximum number of checkpoints in progress at the same time.",
    )
    .default("1")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.tolerable-failed-checkpoints",
        int(0, INT_MAX),
        "Number of consecutive checkpoint failures tolerated before the job fails over.",
    )
    .default("0")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.externalized-checkpoint-retention",
        Kind::Enum {
            values: &[
                "NO_EXTERNALIZED_CHECKPOINTS",
                "DELETE_ON_CANCELLATION",
                "RETAIN_ON_CANCELLATION",
            ],
            synonyms: &[],
        },
        "What happens to completed checkpoints when the job ends: NO_EXTERNALIZED_CHECKPOINTS deletes them, DELETE_ON_CANCELLATION keeps them only when the job fails, RETAIN_ON_CANCELLATION also when it is cancelled; a finished job's are always deleted.",
    )
    .default("NO_EXTERNALIZED_CHECKPOINTS")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.unaligned.enabled",
        BOOL,
        "Unaligned checkpoints: barriers overtake in-flight records, which are stored with the checkpoint.",
    )
    .aliases(&["execution.checkpointing.unaligned"])
    .default("false")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.unaligned.forced",
        BOOL,
        "Forces unaligned checkpoints where Flink refuses them (custom partitioners, iterations; neither exists in streamsql). Forward and broadcast inputs keep their task aligned regardless, as in Flink.",
    )
    .default("false")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.aligned-checkpoint-timeout",
        DURATION,
        "With unaligned checkpoints enabled, start aligned and switch to unaligned after this long; 0 ms starts unaligned.",
    )
    .aliases(&["execution.checkpointing.alignment-timeout"])
    .default("0 ms")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.snapshot-compression",
        BOOL,
        "Compress checkpoint and savepoint data with snappy.",
    )
    .default("false")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.checkpoints-after-tasks-finish",
        BOOL,
        "Keep checkpointing after some tasks (for example bounded sources) have finished.",
    )
    .aliases(&["execution.checkpointing.checkpoints-after-tasks-finish.enabled"])
    .default("true"),
    KeySpec::new(
        "execution.checkpointing.dir",
        Kind::Path,
        "Directory where checkpoints are written (one sub-directory per job).",
    )
    .aliases(&["state.checkpoints.dir", "state.backend.fs.checkpointdir"])
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.savepoint-dir",
        Kind::Path,
        "Default directory for savepoints.",
    )
    .aliases(&["state.savepoints.dir", "savepoints.state.backend.fs.dir"])
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.num-retained",
        int(1, INT_MAX),
        "Number of completed checkpoints to keep.",
    )
    .aliases(&["state.checkpoints.num-retained"])
    .default("1")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.incremental",
        BOOL,
        "Incremental checkpoints: only state changed since the previous checkpoint is written.",
    )
    .aliases(&["state.backend.incremental"])
    .default("false")
    .honoured(),
    KeySpec::new(
        "execution.state-recovery.from-local",
        BOOL,
        "Keep a local copy of each checkpoint and recover from it when it verifies.",
    )
    .aliases(&["state.backend.local-recovery"])
    .default("false")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.local-backup.dirs",
        Kind::Path,
        "Directory for the task-local copies of keyed state that local recovery reads first (one sub-directory per job; a 'streamsql-local-state' directory in the temporary directory when unset).",
    )
    .aliases(&["taskmanager.state.local.root-dirs"])
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.local-backup.max-size",
        Kind::Memory { max: u64::MAX },
        "streamsql only: bytes of task-local copies one subtask keeps at most; copies that would exceed it are not written (recovery then reads the checkpoint directory). No limit when unset.",
    )
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.data-inline-threshold",
        Kind::Memory { max: 1024 * 1024 },
        "State chunks smaller than this are stored inline in the checkpoint's _metadata file (at most 1 mb).",
    )
    .aliases(&[
        "state.storage.fs.memory-threshold",
        "state.backend.fs.memory-threshold",
    ])
    .default("20 kb")
    .honoured(),
    KeySpec::new(
        "execution.checkpointing.write-buffer-size",
        int(0, INT_MAX),
        "Write buffer size in bytes of checkpoint file streams (at least the inline threshold).",
    )
    .aliases(&[
        "state.storage.fs.write-buffer-size",
        "state.backend.fs.write-buffer-size",
    ])
    .default("4096")
    .honoured(),
    // --- state -----------------------------------------------------------------------------
    KeySpec::new(
        "state.backend.type",
        Kind::Enum {
            values: &["sled", "hashmap"],
            synonyms: &[],
        },
        "State backend: 'sled' (on disk, memory-bounded, streamsql's counterpart of Flink's rocksdb) or 'hashmap' (all in memory).",
    )
    .aliases(&["state.backend"])
    .default("sled")
    .flink("hashmap")
    .honoured(),
    KeySpec::new(
        "state.backend.sled.memory-budget",
        Kind::Memory { max: u64::MAX },
        "sled backend: bytes of keyed state one operator subtask keeps in memory; the rest is written back to sled in bulk and read back on access.",
    )
    .default("256 mb")
    .honoured(),
    KeySpec::new(
        "state.backend.sled.localdir",
        Kind::Path,
        "sled backend: directory for the working files of the state store (a temporary directory when unset). Never a checkpoint: durability comes only from checkpoints.",
    )
    .honoured(),
    KeySpec::new(
        "state.backend.sled.write-buffer-ratio",
        Kind::Float { min: 0.05, max: 0.95 },
        "sled backend: the fraction of the memory budget given to each operator's in-memory state (typed values, where every write lands); the rest goes to the store's byte cache and sled's page cache (reads that miss).",
    )
    .default("0.75")
    .honoured(),
    KeySpec::new(
        "state.backend.sled.evict-ratio",
        Kind::Float { min: 0.05, max: 1.0 },
        "sled backend: the fraction of a full cache freed at each write-back to sled (clean entries are evicted). Larger: fewer, larger write-backs and more misses after each.",
    )
    .default("0.5")
    .honoured(),
    KeySpec::new(
        "state.backend.sled.mode",
        Kind::Enum {
            values: &["high-throughput", "low-space"],
            synonyms: &[("highthroughput", "high-throughput"), ("lowspace", "low-space")],
        },
        "sled backend: sled's mode: 'high-throughput' (the default) or 'low-space' (rewrites its files more eagerly, for less disk).",
    )
    .default("high-throughput")
    .honoured(),
    KeySpec::new(
        "state.backend.async",
        BOOL,
        "Deprecated in Flink: snapshots are always asynchronous and the value has no effect, as in Flink.",
    )
    .default("true"),
    KeySpec::new(
        "state.latency-track.keyed-state-enabled",
        BOOL,
        "Track the latency of keyed state accesses.",
    )
    .aliases(&["state.backend.latency-track.keyed-state-enabled"])
    .default("false")
    .honoured(),
    KeySpec::new(
        "state.latency-track.sample-interval",
        int(1, INT_MAX),
        "Track the latency of one in this many state accesses.",
    )
    .aliases(&["state.backend.latency-track.sample-interval"])
    .default("100")
    .honoured(),
    KeySpec::new(
        "state.latency-track.history-size",
        int(1, INT_MAX),
        "Number of latency measurements kept per state access operation.",
    )
    .aliases(&["state.backend.latency-track.history-size"])
    .default("128")
    .honoured(),
    KeySpec::new(
        "state.latency-track.state-name-as-variable",
        BOOL,
        "Expose the state name as a metric variable when tracking latency.",
    )
    .aliases(&["state.backend.latency-track.state-name-as-variable"])
    .default("true")
    .honoured(),
    KeySpec::new(
        "table.optimizer.reuse-sub-plan-enabled",
        BOOL,
        "Identical parts of a job's plan (the same source with the same pushed-down filters and fields, and the same operators over the same inputs) run once and feed every consumer.",
    )
    .default("true")
    .honoured(),
    KeySpec::new(
        "table.optimizer.reuse-source-enabled",
        BOOL,
        "Whether sub-plan reuse may share a source scan (and so what is computed from it); only effective when table.optimizer.reuse-sub-plan-enabled is true.",
    )
    .default("true")
    .honoured(),
    KeySpec::new(
        "table.exec.state.ttl",
        DURATION,
        "Idle state of non-windowed operators expires this long after its last update and is swept; 0 ms keeps state forever.",
    )
    .default("0 ms")
    .honoured(),
    // --- restart strategies ----------------------------------------------------------------
    KeySpec::new(
        "restart-strategy.type",
        Kind::Enum {
            values: &["disable", "fixed-delay", "failure-rate", "exponential-delay"],
            synonyms: &[
                ("none", "disable"),
                ("off", "disable"),
                ("fixeddelay", "fixed-delay"),
                ("failurerate", "failure-rate"),
                ("exponentialdelay", "exponential-delay"),
            ],
        },
        "Restart strategy after a failure; unset means 'disable' without checkpointing and 'exponential-delay' with checkpointing (Flink's rule).",
    )
    .aliases(&["restart-strategy"])
    .honoured(),
    KeySpec::new(
        "restart-strategy.fixed-delay.attempts",
        int(0, INT_MAX),
        "fixed-delay: number of restarts before the job fails.",
    )
    .default("1")
    .honoured(),
    KeySpec::new(
        "restart-strategy.fixed-delay.delay",
        DURATION,
        "fixed-delay: delay between two restart attempts.",
    )
    .default("1 s")
    .honoured(),
    KeySpec::new(
        "restart-strategy.failure-rate.max-failures-per-interval",
        int(1, INT_MAX),
        "failure-rate: maximum number of restarts within the interval before the job fails.",
    )
    .default("1")
    .honoured(),
    KeySpec::new(
        "restart-strategy.failure-rate.failure-rate-interval",
        DURATION,
        "failure-rate: time window in which failures are counted.",
    )
    .default("1 min")
    .honoured(),
    KeySpec::new(
        "restart-strategy.failure-rate.delay",
        DURATION,
        "failure-rate: delay between two restart attempts.",
    )
    .default("1 s")
    .honoured(),
    KeySpec::new(
        "restart-strategy.exponential-delay.initial-backoff",
        DURATION,
        "exponential-delay: delay before the first restart.",
    )
    .default("1 s")
    .honoured(),
    KeySpec::new(
        "restart-strategy.exponential-delay.max-backoff",
        DURATION,
        "exponential-delay: the largest delay between restarts.",
    )
    .default("1 min")
    .honoured(),
    KeySpec::new(
        "restart-strategy.exponential-delay.backoff-multiplier",
        Kind::Float {
            min: 1.0,
            max: f64::MAX,
        },
        "exponential-delay: the delay is multiplied by this after every failure.",
    )
    .default("1.5")
    .honoured(),
    KeySpec::new(
        "restart-strategy.exponential-delay.reset-backoff-threshold",
        DURATION,
        "exponential-delay: after running this long without failure the delay returns to the initial backoff.",
    )
    .default("1 h")
    .honoured(),
    KeySpec::new(
        "restart-strategy.exponential-delay.jitter-factor",
        Kind::Float { min: 0.0, max: 1.0 },
        "exponential-delay: random fraction added to or removed from each delay.",
    )
    .default("0.1")
    .honoured(),
    KeySpec::new(
        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        int(1, INT_MAX),
        "exponential-delay: number of restarts before the job fails, counted since the last backoff reset.",
    )
    .default("2147483647")
    .flink("infinite (2147483647)")
    .honoured(),
    // --- monitoring and interfaces ---------------------------------------------------------
    KeySpec::new(
        "web.checkpoints.history",
        int(0, INT_MAX),
        "Number of recent checkpoints kept in the checkpoint history.",
    )
    .default("10")
    .honoured(),
    KeySpec::new(
        "metrics.latency.interval",
        DURATION,
        "Interval at which sources emit latency markers; 0 ms disables latency tracking.",
    )
    .default("0 ms"),
    KeySpec::new(
        "metrics.reporters",
        Kind::String,
        "Comma-separated names of the reporters to start; unset starts every configured reporter.",
    ),
    KeySpec::new(
        "metrics.reporter.<name>.interval",
        DURATION,
        "Reporting interval of the reporter <name>.",
    )
    .default("10 s"),
    KeySpec::new(
        "metrics.reporter.<name>.factory.class",
        Kind::String,
        "Reporter implementation of the reporter <name> (Flink's factory class names, such as the Prometheus reporters).",
    ),
    KeySpec::new(
        "metrics.reporter.<name>.<property>",
        Kind::String,
        "Any other property of the reporter <name> (such as 'port', 'hostUrl', 'jobName').",
    ),
    KeySpec::new(
        "rest.port",
        int(0, 65535),
        "Port of the REST API and web dashboard; 0 picks a free port.",
    )
    .default("8081"),
    KeySpec::new(
        "rest.address",
        Kind::String,
        "Address of the REST API and web dashboard.",
    ),
    KeySpec::new(
        "sql-client.execution.result-mode",
        Kind::Enum {
            values: &["TABLEAU", "CHANGELOG"],
            synonyms: &[],
        },
        "How the SQL shell shows query results: TABLEAU prints a table, CHANGELOG prints every change with its row kind. Flink's full-screen TABLE mode is not offered.",
    )
    .default("TABLEAU")
    .flink("TABLE"),
];

/// Flink keys (or key prefixes, ending with '.') that streamsql rejects on purpose.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "table.exec.mini-batch.",
        "streamsql does not implement mini-batch aggregation, and an ignored key would look as if it took effect",
    ),
    (
        "state.backend.rocksdb.",
        "streamsql's state backends are 'sled' and 'hashmap' (state.backend.type)",
    ),
    (
        "execution.checkpointing.force",
        "it was removed in Flink 2, and streamsql has no iterative jobs",
    ),
    (
        "execution.checkpointing.storage",
        "checkpoints are always written to the local file system under execution.checkpointing.dir",
    ),
    (
        "state.checkpoint-storage",
        "checkpoints are always written to the local file system under execution.checkpointing.dir",
    ),
];

/// Every configuration key streamsql accepts, in documentation order.
pub fn keys() -> &'static [KeySpec] {
    KEYS
}

/// Whether `key` matches the pattern `pattern` (see [`KeySpec::name`]).
fn matches_pattern(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('.').peekable();
    let mut k = key.split('.');
    while let Some(ps) = p.next() {
        let is_var = ps.starts_with('<');
        if is_var && p.peek().is_none() {
            // A final variable takes the rest, which must be non-empty segments.
            let rest: Vec<&str> = k.by_ref().collect();
            return !rest.is_empty() && rest.iter().all(|s| !s.is_empty());
        }
        match k.next() {
            Some(ks) if is_var && !ks.is_empty() => {}
            Some(ks) if ks == ps => {}
            _ => return false,
        }
    }
    k.next().is_none()
}

/// The spec of `key` (a canonical name, an alias or a pattern match) and its canonical name.
fn lookup(key: &str) -> Option<(&'static KeySpec, String)> {
    if let Some(spec) = KEYS
        .iter()
        .find(|s| !s.is_pattern() && (s.name == key || s.aliases.contains(&key)))
    {
        return Some((spec, spec.name.to_string()));
    }
    KEYS.iter()
        .find(|s| s.is_pattern() && matches_pattern(s.name, key))
        .map(|s| (s, key.to_string()))
}

/// The spec of a key, accepting aliases and pattern keys such as `metrics.reporter.prom.port`.
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    lookup(key).map(|(s, _)| s)
}

/// The error for a key that is not in the registry.
fn unknown_key(key: &str) -> ConfigError {
    if let Some((_, reason)) = UNSUPPORTED.iter().find(|(k, _)| {
        if k.ends_with('.') {
            key.starts_with(k)
        } else {
            key == *k
        }
    }) {
        return ConfigError::Unsupported {
            key: key.to_string(),
            reason: (*reason).to_string(),
        };
    }
    ConfigError::UnknownKey {
        key: key.to_string(),
        suggestion: suggest(key),
    }
}

/// The known key closest to `key`, if it is close enough to be a likely typo.
fn suggest(key: &str) -> Option<String> {
    let names = KEYS
        .iter()
        .filter(|s| !s.is_pattern())
        .flat_map(|s| std::iter::once(&s.name).chain(s.aliases.iter()));
    // A key written without its leading segments ("checkpointing.interval").
    let suffix = format!(".{key}");
    if let Some(name) = names.clone().find(|n| n.ends_with(&suffix)) {
        return Some((*name).to_string());
    }
    if key.starts_with("metrics.reporter.") {
        return None;
    }
    let (best, dist) = names
        .map(|n| (*n, levenshtein(key, n)))
        .min_by_key(|&(_, d)| d)?;
    let limit = (key.chars().count() / 4).max(2);
    (dist <= limit).then(|| best.to_string())
}

/// Flink's boolean form: `true` or `false` in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Splits `"10 s"` into the digits and the trimmed unit, as Flink's `TimeUtils` and `MemorySize`
/// do: leading digits, optional spaces, a unit label.
fn split_number_unit(s: &str) -> Option<(u64, String)> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number: u64 = s[..digits].parse().ok()?;
    Some((number, s[digits..].trim().to_lowercase()))
}

/// Parses Flink's duration forms: `10s`, `10 s`, `1 min`, `500ms`, `2 h`, `1d`, long unit names
/// (`millis`, `seconds`, `minutes`...); a bare number is milliseconds. `None` when not a duration.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = split_number_unit(s)?;
    let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => {
            Some(Duration::from_millis(n))
        }
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => Some(Duration::from_nanos(n)),
        "us" | "µs" | "micro" | "micros" | "microsecond" | "microseconds" => {
            Some(Duration::from_micros(n))
        }
        "s" | "sec" | "secs" | "second" | "seconds" => secs(1),
        "m" | "min" | "mins" | "minute" | "minutes" => secs(60),
        "h" | "hour" | "hours" => secs(3600),
        "d" | "day" | "days" => secs(86_400),
        _ => None,
    }
}

/// Parses Flink's memory sizes: `1kb`, `64 mb`, `1 gb`, bare bytes; units are powers of 1024
/// (`b`/`bytes`, `k`/`kb`/`kibibytes`, `m`/`mb`/`mebibytes`, `g`/`gb`/`gibibytes`,
/// `t`/`tb`/`tebibytes`). `None` when not a memory size or when it overflows.
pub fn parse_memory_size(s: &str) -> Option<u64> {
    let (n, unit) = split_number_unit(s)?;
    let factor: u64 = match unit.as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tebibytes" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn format_memory(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} mb", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} kb", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Flink's time zone check: a region ID (`Area/City`), `UTC`, `GMT`, `Z`, or a custom offset
/// `GMT+hh:mm`; Flink rejects `UTC+x` offsets and three-letter short IDs such as `PST`. The region
/// itself is not looked up in a zone database here.
fn valid_time_zone(zone: &str) -> bool {
    let upper = zone.to_ascii_uppercase();
    if matches!(upper.as_str(), "UTC" | "GMT" | "Z" | "UT") {
        return true;
    }
    if let Some(offset) = upper.strip_prefix("GMT") {
        return valid_offset(offset);
    }
    if upper.starts_with("UTC") || upper.starts_with("UT+") || upper.starts_with("UT-") {
        return false;
    }
    if upper.starts_with('+') || upper.starts_with('-') {
        return valid_offset(&upper);
    }
    let mut parts = zone.split('/');
    let area = parts.next().unwrap_or_default();
    zone.contains('/')
        && area.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && zone.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

/// `+h`, `+hh`, `+hh:mm`, `+hhmm` (or `-`), hours at most 18 as in `java.time.ZoneOffset`.
fn valid_offset(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) else {
        return false;
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let ok = |t: &str, max: u32| {
        (1..=2).contains(&t.len())
            && t.bytes().all(|b| b.is_ascii_digit())
            && t.parse::<u32>().is_ok_and(|v| v <= max)
    };
    ok(h, 18) && ok(m, 59)
}

/// True when two normalized values of one key mean the same (`0` and `0 ms` are one duration).
fn same_value(a: &str, b: &str) -> bool {
    if let (Some(x), Some(y)) = (parse_duration(a), parse_duration(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (parse_memory_size(a), parse_memory_size(b)) {
        return x == y;
    }
    a.eq_ignore_ascii_case(b)
}

/// True for the spellings of UTC that `table.local-time-zone` accepts.
fn is_utc(zone: &str) -> bool {
    matches!(
        zone.to_ascii_uppercase().as_str(),
        "UTC"
            | "Z"
            | "GMT"
            | "ETC/UTC"
            | "ETC/GMT"
            | "UTC+00:00"
            | "GMT+00:00"
            | "GMT+0"
            | "GMT-0"
            | "+00:00"
    )
}

pub use crate::suggest::levenshtein;

/// A validated set of configuration values, keyed by canonical key name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    values: BTreeMap<String, String>,
}

impl Configuration {
    /// An empty configuration: every key has its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `key` and `value` and sets the key under its canonical name (aliases are
    /// canonicalised). Surrounding whitespace of the key and the value is ignored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        let (spec, canonical) = lookup(key).ok_or_else(|| unknown_key(key))?;
        let normalized = spec
            .kind
            .normalize(value)
            .ok_or_else(|| ConfigError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
                expected: spec.kind.expected(),
            })?;
        if canonical == "table.local-time-zone" && !is_utc(&normalized) {
            // Every time function and LTZ conversion of the engine computes in UTC; accepting
            // another zone would silently give wrong results.
            return Err(ConfigError::Unsupported {
                key: key.to_string(),
                reason: format!("only the UTC session time zone is supported, not '{normalized}'"),
            });
        }
        self.values.insert(canonical, normalized);
        Ok(())
    }

    /// Returns `key` to its default.
    pub fn reset(&mut self, key: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        let (_, canonical) = lookup(key).ok_or_else(|| unknown_key(key))?;
        self.values.remove(&canonical);
        Ok(())
    }

    /// The value of a key that was set (by any of its names), without defaults.
    /// Keys set to a non-default value whose feature the engine does not implement yet
    /// (`Support::Accepted`), as `(key, value)`. A job must not start with any of them: the
    /// setting would be silently ignored. Shell settings (`sql-client.*`) are left out: they do
    /// not affect a job.
    pub fn unimplemented_settings(&self) -> Vec<(&str, &str)> {
        self.values
            .iter()
            .filter(|(k, v)| {
                let Some(spec) = spec(k) else {
                    return false;
                };
                let is_default = spec
                    .default
                    .and_then(|d| spec.kind.normalize(d))
                    .is_some_and(|d| same_value(&d, v));
                spec.support == Support::Accepted && !is_default && !k.starts_with("sql-client.")
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn get_raw(&self, key: &str) -> Option<&str> {
        let (_, canonical) = lookup(key)?;
        self.values.get(&canonical).map(String::as_str)
    }

    /// The keys that were set and their values, sorted by canonical key name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no key was set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sets every key that `other` sets; `other` wins over `self`.
    pub fn merge(&mut self, other: &Configuration) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
        }
    }

    /// The configured or default value of `key`; `None` for a key that is not in the registry
    /// (the shell may ask for any key). Reading a key as another kind is a bug in the caller,
    /// hence the debug assertion.
    fn value_of(&self, key: &str, kind_ok: fn(&Kind) -> bool) -> Option<&str> {
        let (spec, canonical) = lookup(key)?;
        debug_assert!(
            kind_ok(&spec.kind),
            "invariant: '{key}' is read as its own kind ({})",
            spec.kind.name()
        );
        self.values
            .get(&canonical)
            .map(String::as_str)
            .or(spec.default)
    }

    /// The configured or default duration of a duration key; `None` when unset without default.
    pub fn get_duration(&self, key: &str) -> Option<Duration> {
        self.value_of(key, |k| matches!(k, Kind::Duration))
            .and_then(parse_duration)
    }

    /// The configured or default value of a boolean key.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.value_of(key, |k| matches!(k, Kind::Bool))
            .and_then(parse_bool)
    }

    /// The configured or default value of an integer key.
    pub fn get_int(&self, key: &str) -> Option<i64> {
        self.value_of(key, |k| matches!(k, Kind::Int { .. }))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The configured or default value of a decimal key.
    pub fn get_float(&self, key: &str) -> Option<f64> {
        self.value_of(key, |k| matches!(k, Kind::Float { .. }))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The configured or default value of a memory-size key, in bytes.
    pub fn get_memory(&self, key: &str) -> Option<u64> {
        self.value_of(key, |k| matches!(k, Kind::Memory { .. }))
            .and_then(parse_memory_size)
    }

    /// The configured or default value of any key as text (enum values in canonical spelling).
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.value_of(key, |_| true)
    }

    /// The configured directory of a path key, without a `file://` prefix.
    pub fn get_path(&self, key: &str) -> Option<PathBuf> {
        self.value_of(key, |k| matches!(k, Kind::Path)).map(|v| {
            let v = v.trim();
            PathBuf::from(v.strip_prefix("file://").unwrap_or(v))
        })
    }

    /// `parallelism.default`.
    pub fn parallelism(&self) -> usize {
        self.get_int("parallelism.default")
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(1)
    }

    /// `pipeline.max-parallelism`, or Flink's derived value when unset.
    pub fn max_parallelism(&self) -> usize {
        self.get_int("pipeline.max-parallelism")
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or_else(|| keygroup::default_max_parallelism(self.parallelism()))
    }

    /// `execution.buffer-timeout.interval` (alias `execution.buffer-timeout`).
    pub fn buffer_timeout(&self) -> Duration {
        self.get_duration("execution.buffer-timeout.interval")
            .unwrap_or(Duration::from_millis(100))
    }

    /// `table.exec.source.idle-timeout`; zero means idleness detection is off.
    pub fn source_idle_timeout(&self) -> Duration {
        self.get_duration("table.exec.source.idle-timeout")
            .unwrap_or(Duration::ZERO)
    }

    /// `table.optimizer.reuse-sub-plan-enabled` and `table.optimizer.reuse-source-enabled`:
    /// whether identical sub-plans are shared, and whether sources may be.
    pub fn reuse_sub_plans(&self) -> (bool, bool) {
        let sub_plans = self
            .get_bool("table.optimizer.reuse-sub-plan-enabled")
            .unwrap_or(true);
        let sources = self
            .get_bool("table.optimizer.reuse-source-enabled")
            .unwrap_or(true);
        (sub_plans, sub_plans && sources)
    }

    /// `pipeline.auto-watermark-interval`.
    pub fn auto_watermark_interval(&self) -> Duration {
        self.get_duration("pipeline.auto-watermark-interval")
            .unwrap_or(Duration::from_millis(200))
    }

    /// `table.local-time-zone`.
    pub fn local_time_zone(&self) -> &str {
        self.get_str("table.local-time-zone")
            .map(str::trim)
            .unwrap_or("UTC")
    }

    /// Checks rules that involve several keys, as Flink does when a job is submitted.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.parallelism();
        let max = self.max_parallelism();
        if max < p {
            return Err(ConfigError::Conflict {
                message: format!(
                    "pipeline.max-parallelism ({max}) must be at least parallelism.default ({p})"
                ),
            });
        }
        Ok(())
    }
}

/// The key table of `docs/config.md`, generated from the registry.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | aliases (older names) | type | default | Flink's default | honoured | meaning |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in KEYS {
        let aliases = s
            .aliases
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = match s.kind {
            Kind::Enum { values, .. } => format!("enum: {}", values.join(", ")),
            Kind::Int { min, max } if max == INT_MAX => format!("integer >= {min}"),
            Kind::Int { min, max } => format!("integer {min}..{max}"),
            other => other.name().to_string(),
        };
        let support = match s.support {
            Support::Honoured => "yes",
            Support::Accepted => "accepted",
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            s.name.replace('<', "&lt;").replace('>', "&gt;"),
            aliases,
            kind,
            s.default.unwrap_or("(none)"),
            s.flink_default,
            support,
            s.description.replace('<', "&lt;").replace('>', "&gt;"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: &mut Configuration, k: &str, v: &str) {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }

    #[test]
    fn durations_accept_flinks_forms() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("10 s", Duration::from_secs(10)),
            ("1 min", Duration::from_secs(60)),
            ("1m", Duration::from_secs(60)),
            ("500ms", Duration::from_millis(500)),
            ("2 h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("1500", Duration::from_millis(1500)),
            ("3 milli", Duration::from_millis(3)),
            ("3 millis", Duration::from_millis(3)),
            ("1 second", Duration::from_secs(1)),
            ("4 seconds", Duration::from_secs(4)),
            ("2 minutes", Duration::from_secs(120)),
            ("7 ns", Duration::from_nanos(7)),
            ("7 us", Duration::from_micros(7)),
            ("10 SECONDS", Duration::from_secs(10)),
            ("  5 s  ", Duration::from_secs(5)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "s",
            "-1 s",
            "1.5 s",
            "10 parsecs",
            "1 s 2",
            "99999999999999999999 d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("18446744073709551615 d"), None);
    }

    #[test]
    fn memory_sizes_accept_flinks_forms() {
        assert_eq!(parse_memory_size("20kb"), Some(20 * 1024));
        assert_eq!(parse_memory_size("64 mb"), Some(64 << 20));
        assert_eq!(parse_memory_size("1 gb"), Some(1 << 30));
        assert_eq!(parse_memory_size("1 GB"), Some(1 << 30));
        assert_eq!(parse_memory_size("4096"), Some(4096));
        assert_eq!(parse_memory_size("12 bytes"), Some(12));
        assert_eq!(parse_memory_size("2 t"), Some(2 << 40));
        assert_eq!(parse_memory_size("1 kibibytes"), Some(1024));
        assert_eq!(parse_memory_size("kb"), None);
        assert_eq!(parse_memory_size("1 xb"), None);
        assert_eq!(parse_memory_size("18446744073709551615 tb"), None);
    }

    #[test]
    fn every_default_is_valid_for_its_kind() {
        for s in keys() {
            if let Some(d) = s.default {
                assert!(s.kind.normalize(d).is_some(), "{}: default '{d}'", s.name);
            }
            for a in s.aliases {
                assert_ne!(*a, s.name);
                assert_eq!(spec(a).map(|x| x.name), Some(s.name), "alias {a}");
            }
        }
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for s in keys() {
            for n in std::iter::once(&s.name).chain(s.aliases) {
                assert!(seen.insert(*n), "{n} registered twice");
            }
        }
    }

    #[test]
    fn set_canonicalises_aliases() {
        let mut c = Configuration::new();
        set(&mut c, "state.backend", "HashMap");
        set(&mut c, "state.checkpoints.dir", "/tmp/chk");
        set(&mut c, "state.savepoints.dir", "file:///tmp/sp");
        set(&mut c, "state.checkpoints.num-retained", "3");
        set(&mut c, "state.backend.incremental", "TRUE");
        set(&mut c, "state.backend.local-recovery", "true");
        set(&mut c, "taskmanager.state.local.root-dirs", "/tmp/local");
        set(
            &mut c,
            "execution.checkpointing.checkpoints-after-tasks-finish.enabled",
            "false",
        );
        set(&mut c, "state.storage.fs.memory-threshold", "1 kb");
        set(&mut c, "execution.buffer-timeout", "5 ms");
        set(&mut c, "restart-strategy", "fixeddelay");
        let keys: Vec<&str> = c.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "execution.buffer-timeout.interval",
                "execution.checkpointing.checkpoints-after-tasks-finish",
                "execution.checkpointing.data-inline-threshold",
                "execution.checkpointing.dir",
                "execution.checkpointing.incremental",
                "execution.checkpointing.local-backup.dirs",
                "execution.checkpointing.num-retained",
                "execution.checkpointing.savepoint-dir",
                "execution.state-recovery.from-local",
                "restart-strategy.type",
                "state.backend.type",
            ]
        );
        assert_eq!(c.get_str("state.backend.type"), Some("hashmap"));
        assert_eq!(c.get_raw("state.backend"), Some("hashmap"));
        assert_eq!(c.get_str("restart-strategy.type"), Some("fixed-delay"));
        assert_eq!(c.get_bool("state.backend.incremental"), Some(true));
        assert_eq!(
            c.get_path("state.savepoints.dir"),
            Some(PathBuf::from("/tmp/sp"))
        );
        assert_eq!(
            c.get_path("execution.checkpointing.dir"),
            Some(PathBuf::from("/tmp/chk"))
        );
        assert_eq!(
            c.get_memory("execution.checkpointing.data-inline-threshold"),
            Some(1024)
        );
        assert_eq!(c.buffer_timeout(), Duration::from_millis(5));
        assert_eq!(c.get_int("execution.checkpointing.num-retained"), Some(3));
    }

    #[test]
    fn defaults_are_flinks() {
        let c = Configuration::new();
        assert_eq!(c.parallelism(), 1);
        assert_eq!(c.max_parallelism(), 128);
        assert_eq!(c.buffer_timeout(), Duration::from_millis(100));
        assert_eq!(c.source_idle_timeout(), Duration::ZERO);
        assert_eq!(c.auto_watermark_interval(), Duration::from_millis(200));
        assert_eq!(c.local_time_zone(), "UTC");
        assert_eq!(
            c.get_duration("execution.checkpointing.timeout"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(c.get_duration("execution.checkpointing.interval"), None);
        assert_eq!(
            c.get_str("execution.checkpointing.mode"),
            Some("EXACTLY_ONCE")
        );
        assert_eq!(
            c.get_memory("state.storage.fs.memory-threshold"),
            Some(20 * 1024)
        );
        assert_eq!(
            c.get_int("execution.checkpointing.write-buffer-size"),
            Some(4096)
        );
        assert_eq!(c.get_int("web.checkpoints.history"), Some(10));
        assert_eq!(
            c.get_float("restart-strategy.exponential-delay.backoff-multiplier"),
            Some(1.5)
        );
        assert_eq!(
            c.get_duration("restart-strategy.exponential-delay.max-backoff"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            c.get_duration("metrics.reporter.prom.interval"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(c.get_str("restart-strategy.type"), None);
        assert_eq!(c.get_duration("table.exec.state.ttl"), Some(Duration::ZERO));
        assert!(c.is_empty());
    }

    #[test]
    fn max_parallelism_is_derived_from_parallelism() {
        let mut c = Configuration::new();
        set(&mut c, "parallelism.default", "100");
        assert_eq!(c.max_parallelism(), 256);
        set(&mut c, "pipeline.max-parallelism", "64");
        assert_eq!(c.max_parallelism(), 64);
        assert!(matches!(c.validate(), Err(ConfigError::Conflict { .. })));
        set(&mut c, "pipeline.max-parallelism", "4096");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn enums_and_booleans_are_case_insensitive() {
        let mut c = Configuration::new();
        set(&mut c, "execution.checkpointing.mode", "at_least_once");
        assert_eq!(
            c.get_raw("execution.checkpointing.mode"),
            Some("AT_LEAST_ONCE")
        );
        set(&mut c, "execution.checkpointing.unaligned", "True");
        assert_eq!(
            c.get_raw("execution.checkpointing.unaligned.enabled"),
            Some("true")
        );
        set(&mut c, "sql-client.execution.result-mode", "changelog");
        assert_eq!(
            c.get_str("sql-client.execution.result-mode"),
            Some("CHANGELOG")
        );
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let mut c = Configuration::new();
        let e = c.set("execution.checkpointing.mode", "twice").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value 'twice' for key 'execution.checkpointing.mode': expected one of: EXACTLY_ONCE, AT_LEAST_ONCE"
        );
        assert_eq!(
            e.help().as_deref(),
            Some("the default of 'execution.checkpointing.mode' is 'EXACTLY_ONCE'")
        );
        let e = c
            .set("execution.checkpointing.interval", "often")
            .unwrap_err();
        assert!(e.to_string().contains("a duration such as '10 s'"), "{e}");
        let e = c.set("parallelism.default", "0").unwrap_err();
        assert!(e.to_string().contains("between 1 and 32768"), "{e}");
        assert!(c
            .set("execution.checkpointing.unaligned.enabled", "yes")
            .is_err());
        assert!(c
            .set("execution.checkpointing.data-inline-threshold", "2 mb")
            .is_err());
        assert!(c
            .set("restart-strategy.exponential-delay.jitter-factor", "1.5")
            .is_err());
        assert!(c
            .set(
                "restart-strategy.exponential-delay.backoff-multiplier",
                "NaN"
            )
            .is_err());
        assert!(c.set("rest.port", "65536").is_err());
        assert!(c
            .set("execution.checkpointing.dir", "hdfs:///flink/chk")
            .is_err());
        assert!(c.set("execution.checkpointing.dir", "").is_err());
        assert!(
            c.is_empty(),
            "a rejected value leaves the configuration unchanged"
        );
    }

    #[test]
    fn batch_mode_is_rejected() {
        let mut c = Configuration::new();
        let e = c.set("execution.runtime-mode", "batch").unwrap_err();
        assert!(e.to_string().contains("expected one of: STREAMING"), "{e}");
        set(&mut c, "execution.runtime-mode", "streaming");
    }

    #[test]
    fn time_zones_follow_flinks_rules() {
        let mut c = Configuration::new();
        for ok in ["UTC", "Z", "GMT", "Etc/UTC"] {
            set(&mut c, "table.local-time-zone", ok);
            assert_eq!(c.local_time_zone(), ok);
        }
        for valid_but_unsupported in ["Asia/Shanghai", "America/Los_Angeles", "GMT+08:00", "GMT-8"]
        {
            assert!(matches!(
                c.set("table.local-time-zone", valid_but_unsupported),
                Err(ConfigError::Unsupported { .. })
            ));
        }
        for bad in ["UTC+8", "PST", "default", "", "Asia/", "GMT+25:00", "+8:99"] {
            assert!(c.set("table.local-time-zone", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let mut c = Configuration::new();
        let e = c
            .set("execution.checkpointing.intervall", "1 s")
            .unwrap_err();
        assert_eq!(
            e,
            ConfigError::UnknownKey {
                key: "execution.checkpointing.intervall".into(),
                suggestion: Some("execution.checkpointing.interval".into()),
            }
        );
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean 'execution.checkpointing.interval'?")
        );
        let e = c.set("checkpointing.interval", "1 s").unwrap_err();
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean 'execution.checkpointing.interval'?")
        );
        let e = c.set("state.checkpoint.dir", "/x").unwrap_err();
        assert_eq!(
            e.help().as_deref(),
            Some("did you mean 'state.checkpoints.dir'?")
        );
        let e = c.set("completely.different", "1").unwrap_err();
        assert!(matches!(
            e,
            ConfigError::UnknownKey {
                suggestion: None,
                ..
            }
        ));
        assert!(c.reset("no.such.key").is_err());
    }

    #[test]
    fn ignored_flink_keys_are_rejected_with_a_reason() {
        let mut c = Configuration::new();
        let e = c.set("table.exec.mini-batch.enabled", "true").unwrap_err();
        assert!(matches!(e, ConfigError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("mini-batch"));
        assert!(c.set("execution.checkpointing.force", "false").is_err());
    }

    #[test]
    fn reporter_family_accepts_any_reporter_name() {
        let mut c = Configuration::new();
        set(
            &mut c,
            "metrics.reporter.prom.factory.class",
            "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
        );
        set(&mut c, "metrics.reporter.prom.port", "9249");
        set(&mut c, "metrics.reporter.push.filter.includes", "*:*");
        set(&mut c, "metrics.reporter.push.interval", "60 SECONDS");
        assert_eq!(
            c.get_duration("metrics.reporter.push.interval"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(c.get_str("metrics.reporter.prom.port"), Some("9249"));
        assert!(c.set("metrics.reporter.push.interval", "soon").is_err());
        assert!(c.set("metrics.reporter.prom", "x").is_err());
        assert!(c.set("metrics.reporter..port", "x").is_err());
        assert!(c.set("metrics.reporter.prom.", "x").is_err());
    }

    #[test]
    fn reset_merge_and_iter() {
        let mut a = Configuration::new();
        set(&mut a, "parallelism.default", "2");
        set(&mut a, "execution.checkpointing.interval", "10 s");
        let mut b = Configuration::new();
        set(&mut b, "parallelism.default", "4");
        set(&mut b, "pipeline.name", "orders");
        a.merge(&b);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [
                ("execution.checkpointing.interval", "10 s"),
                ("parallelism.default", "4"),
                ("pipeline.name", "orders"),
            ]
        );
        a.reset("parallelism.default").unwrap();
        assert_eq!(a.parallelism(), 1);
        a.reset("parallelism.default").unwrap();
    }

    #[test]
    fn unimplemented_settings_are_listed_unless_default() {
        let mut c = Configuration::new();
        c.set("table.exec.state.ttl", "0").unwrap();
        c.set("execution.checkpointing.mode", "exactly_once")
            .unwrap();
        c.set("sql-client.execution.result-mode", "changelog")
            .unwrap();
        assert!(c.unimplemented_settings().is_empty());
        c.set("execution.checkpointing.interval", "10 s").unwrap();
        assert!(
            c.unimplemented_settings().is_empty(),
            "checkpointing is honoured"
        );
        c.set("execution.checkpointing.unaligned.enabled", "true")
            .unwrap();
        assert!(
            c.unimplemented_settings().is_empty(),
            "unaligned checkpoints are honoured"
        );
        c.set("state.backend.async", "false").unwrap();
        assert_eq!(
            c.unimplemented_settings(),
            vec![("state.backend.async", "false")]
        );
        c.set("parallelism.default", "4").unwrap();
        assert_eq!(
            c.unimplemented_settings().len(),
            1,
            "honoured keys are fine"
        );
    }

    #[test]
    fn levenshtein_distance() {
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
        assert_eq!(levenshtein("µs", "us"), 1);
    }

    #[test]
    fn pattern_matching() {
        assert!(matches_pattern("a.<n>.b", "a.x.b"));
        assert!(!matches_pattern("a.<n>.b", "a.x.c"));
        assert!(!matches_pattern("a.<n>.b", "a.x.b.c"));
        assert!(matches_pattern("a.<n>.<p>", "a.x.b.c"));
        assert!(!matches_pattern("a.<n>.<p>", "a.x"));
        assert!(!matches_pattern("a.<n>.<p>", "a..b"));
    }

    /// docs/config.md must contain the table generated from the registry. To refresh it, run
    /// `cargo run -p streamsql-engine --example config_docs`.
    #[test]
    fn docs_list_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md");
        let doc = std::fs::read_to_string(path).expect("invariant: docs/config.md exists");
        for s in keys() {
            let name = s.name.replace('<', "&lt;").replace('>', "&gt;");
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/config.md lacks {}",
                s.name
            );
        }
        assert!(
            doc.contains(&markdown_table()),
            "docs/config.md's key table is out of date: run `cargo run -p streamsql-engine --example config_docs`"
        );
    }
}
