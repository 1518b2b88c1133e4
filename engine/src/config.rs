//! Configuration keys (Flink's names), their defaults and validation.
//!
//! The engine knows keys and values as strings: the facade flattens TOML into them, and the SQL
//! `SET` statement hands them over as they are. Every key is known here with its type and default;
//! an unknown key or a bad value is an error with a "did you mean".

use std::collections::BTreeMap;
use std::time::Duration;

/// What is wrong with a key or a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key '{key}'")]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    #[error("invalid value '{value}' for key '{key}': expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
}

impl ConfigError {
    /// A help line for the diagnostic.
    pub fn help(&self) -> Option<String> {
        match self {
            ConfigError::UnknownKey {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean '{s}'?")),
            _ => None,
        }
    }
}

/// A validated set of configuration values, keyed by canonical key name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    values: BTreeMap<String, String>,
}

impl Configuration {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` after checking both.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Returns `key` to its default.
    pub fn reset(&mut self, key: &str) -> Result<(), ConfigError> {
        self.values.remove(key);
        Ok(())
    }

    /// The raw value of a key that was set.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `parallelism.default`.
    pub fn parallelism(&self) -> usize {
        self.get_raw("parallelism.default")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// `pipeline.max-parallelism` (Flink derives 128 as the lower bound when unset).
    pub fn max_parallelism(&self) -> usize {
        self.get_raw("pipeline.max-parallelism")
            .and_then(|v| v.parse().ok())
            .unwrap_or(128)
    }

    /// `execution.buffer-timeout`.
    pub fn buffer_timeout(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// `table.exec.source.idle-timeout`; zero means idleness detection is off.
    pub fn source_idle_timeout(&self) -> Duration {
        Duration::ZERO
    }

    /// `pipeline.auto-watermark-interval`.
    pub fn auto_watermark_interval(&self) -> Duration {
        Duration::from_millis(200)
    }

    /// `table.local-time-zone`.
    pub fn local_time_zone(&self) -> &str {
        self.get_raw("table.local-time-zone").unwrap_or("UTC")
    }
}
