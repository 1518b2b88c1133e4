//! The `WITH (...)` options of a table, and the reader a connector factory uses to take them.
//!
//! `Options` is the plain, ordered list of key/value pairs as written. An `OptionReader` is what a
//! factory reads through: every key it asks for, present or not, is recorded as supported, so that
//! once the factory is done `OptionReader::finish` can reject every key nobody asked for, with
//! Flink's message ("Unsupported options found for 'filesystem'. ...") and a "did you mean" help.
//! Values are parsed by Flink's rules: booleans `true`/`false` in any case, durations such as
//! `10s`, `1 min`, `500ms` (milliseconds without a unit), memory sizes such as `128mb`, `1 gb`
//! (bytes without a unit, binary multiples).

use std::collections::BTreeSet;

use crate::error::{EngineError, Result};

/// The options of one table, in the order they were written. A key written twice keeps the last
/// value, as Flink's catalog does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(String, String)>,
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Options::default()
    }

    /// Options from key/value pairs, in order.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut options = Options::new();
        for (k, v) in pairs {
            options.insert(k, v);
        }
        options
    }

    /// Sets `key` to `value`, replacing an earlier value in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A reader that records which keys a factory supports.
    pub fn reader(&self) -> OptionReader<'_> {
        OptionReader::new(self)
    }
}

/// Keys every table accepts, whatever its connector (Flink's `FactoryUtil` consumes them).
const ALWAYS_SUPPORTED: [&str; 2] = ["connector", "property-version"];

/// Reads options on behalf of one factory and remembers every key it asked for.
#[derive(Debug)]
pub struct OptionReader<'a> {
    options: &'a Options,
    supported: BTreeSet<String>,
}

impl<'a> OptionReader<'a> {
    /// A reader over `options`; `connector` and `property-version` are always supported.
    pub fn new(options: &'a Options) -> Self {
        OptionReader {
            options,
            supported: ALWAYS_SUPPORTED.iter().map(|k| k.to_string()).collect(),
        }
    }

    /// Marks `key` as supported without reading it (an option accepted and without effect here).
    pub fn accept(&mut self, key: &str) {
        self.supported.insert(key.to_string());
    }

    /// Marks every key present that starts with `prefix` as supported; returns those keys.
    pub fn accept_prefix(&mut self, prefix: &str) -> Vec<&'a str> {
        let keys: Vec<&'a str> = self
            .options
            .entries
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with(prefix))
            .collect();
        for k in &keys {
            self.supported.insert((*k).to_string());
        }
        keys
    }

    /// Whether `key` is set (and marks it as supported).
    pub fn contains(&mut self, key: &str) -> bool {
        self.string(key).is_some()
    }

    /// The raw text of `key`.
    pub fn string(&mut self, key: &str) -> Option<&'a str> {
        self.supported.insert(key.to_string());
        self.options.get(key)
    }

    /// The text of `key`, or `default` when unset.
    pub fn string_or(&mut self, key: &str, default: &'a str) -> &'a str {
        self.string(key).unwrap_or(default)
    }

    /// Fails with Flink's message when any of `keys` is unset, naming all of them.
    pub fn require(&mut self, keys: &[&str]) -> Result<()> {
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| self.string(k).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(EngineError::option(
            format!(
                "One or more required options are missing.\n\nMissing required options are:\n\n{}",
                missing.join("\n")
            ),
            None,
        ))
    }

    /// A boolean option (`true` / `false`, any case).
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.string(key) {
            None => Ok(default),
            Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(invalid_value(key, v, "a boolean: 'true' or 'false'")),
        }
    }

    /// A non-negative integer option.
    pub fn u64(&mut self, key: &str) -> Result<Option<u64>> {
        self.parsed(key, "a non-negative integer", |v| {
            v.trim().parse::<u64>().ok()
        })
    }

    /// A signed integer option.
    pub fn i64(&mut self, key: &str) -> Result<Option<i64>> {
        self.parsed(key, "an integer", |v| v.trim().parse::<i64>().ok())
    }

    /// A floating-point option.
    pub fn f64(&mut self, key: &str) -> Result<Option<f64>> {
        self.parsed(key, "a number", |v| {
            v.trim().parse::<f64>().ok().filter(|f| !f.is_nan())
        })
    }

    /// A duration option in milliseconds (`10s`, `1 min`, `500 ms`; no unit means milliseconds).
    pub fn duration_millis(&mut self, key: &str) -> Result<Option<u64>> {
        self.parsed(key, "a duration such as '10 s', '1 min' or '500 ms'", |v| {
            parse_duration_millis(v)
        })
    }

    /// A memory size option in bytes (`128mb`, `1 gb`, `4096`; binary multiples).
    pub fn memory_size(&mut self, key: &str) -> Result<Option<u64>> {
        self.parsed(key, "a memory size such as '128mb' or '1 gb'", |v| {
            parse_memory_size(v)
        })
    }

    /// A single character, with `\t`, `\n`, `\r`, `\\` and `\uXXXX` escapes accepted.
    pub fn char(&mut self, key: &str) -> Result<Option<char>> {
        self.parsed(key, "a single character", parse_single_char)
    }

    fn parsed<T>(
        &mut self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.string(key) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .ok_or_else(|| invalid_value(key, v, expected)),
        }
    }

    /// Fails when a key was set that the factory never asked for, as Flink's
    /// `FactoryUtil.validateUnconsumedKeys` does, with a "did you mean" help.
    pub fn finish(self, identifier: &str) -> Result<()> {
        let unsupported: BTreeSet<&str> = self
            .options
            .entries
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.supported.contains(*k))
            .collect();
        if unsupported.is_empty() {
            return Ok(());
        }
        let supported: Vec<&str> = self.supported.iter().map(String::as_str).collect();
        let suggestions: Vec<String> = unsupported
            .iter()
            .filter_map(|k| {
                did_you_mean(k, &supported).map(|s| format!("'{k}': did you mean '{s}'?"))
            })
            .collect();
        let help = if suggestions.is_empty() {
            None
        } else {
            Some(suggestions.join("\n"))
        };
        Err(EngineError::option(
            format!(
                "Unsupported options found for '{identifier}'.\n\nUnsupported options:\n\n{}\n\nSupported options:\n\n{}",
                unsupported.iter().copied().collect::<Vec<_>>().join("\n"),
                supported.join("\n")
            ),
            help,
        ))
    }
}

/// The error for an option whose value cannot be used, naming both.
pub fn invalid_value(key: &str, value: &str, expected: &str) -> EngineError {
    EngineError::option(
        format!("Could not parse value '{value}' for key '{key}'."),
        Some(format!("'{key}' expects {expected}")),
    )
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (crate::suggest::levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Splits `12 min` / `12min` into the number and the unit (lower-cased by the caller).
fn split_number_unit(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits_end = text
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(text.len(), |(i, _)| i);
    if digits_end == 0 {
        return None;
    }
    let number = text[..digits_end].parse::<u64>().ok()?;
    Some((number, text[digits_end..].trim()))
}

/// Flink's `TimeUtils.parseDuration`, in milliseconds.
pub fn parse_duration_millis(text: &str) -> Option<u64> {
    let (number, unit) = split_number_unit(text)?;
    let unit = unit.to_ascii_lowercase();
    let millis_per_unit: u64 = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(millis_per_unit)
}

/// Flink's `MemorySize.parse`, in bytes.
pub fn parse_memory_size(text: &str) -> Option<u64> {
    let (number, unit) = split_number_unit(text)?;
    let unit = unit.to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// One character, or one escaped character (`\t`, `\n`, `\r`, `\\`, `\uXXXX`).
pub fn parse_single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let first = chars.next()?;
    let rest = chars.as_str();
    if rest.is_empty() {
        return Some(first);
    }
    if first != '\\' {
        return None;
    }
    match rest {
        "t" => Some('\t'),
        "n" => Some('\n'),
        "r" => Some('\r'),
        "\\" => Some('\\'),
        "0" => Some('\0'),
        _ => {
            let hex = rest.strip_prefix('u')?;
            if hex.len() != 4 {
                return None;
            }
            char::from_u32(u32::from_str_radix(hex, 16).ok()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Options {
        Options::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn unsupported_key_lists_supported_and_suggests() {
        let o = opts(&[
            ("connector", "filesystem"),
            ("path", "/x"),
            ("csv.ignore-parse-error", "true"),
        ]);
        let mut r = o.reader();
        r.string("path");
        r.string("csv.ignore-parse-errors");
        let err = r.finish("filesystem").unwrap_err();
        match err {
            EngineError::Option { message, help } => {
                assert_eq!(
                    message,
                    "Unsupported options found for 'filesystem'.\n\nUnsupported options:\n\n\
                     csv.ignore-parse-error\n\nSupported options:\n\nconnector\n\
                     csv.ignore-parse-errors\npath\nproperty-version"
                );
                assert_eq!(
                    help.as_deref(),
                    Some("'csv.ignore-parse-error': did you mean 'csv.ignore-parse-errors'?")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_required_names_all() {
        let o = opts(&[("connector", "filesystem")]);
        let mut r = o.reader();
        let err = r.require(&["path", "format"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "One or more required options are missing.\n\nMissing required options are:\n\npath\nformat"
        );
    }

    #[test]
    fn values_parse_by_flink_rules() {
        let o = opts(&[
            ("b", "TRUE"),
            ("bad", "yes"),
            ("d", "1 min"),
            ("d2", "500"),
            ("m", "128mb"),
            ("c", "\\t"),
            ("u", "\\u0001"),
        ]);
        let mut r = o.reader();
        assert!(r.bool("b", false).unwrap());
        assert!(!r.bool("absent", false).unwrap());
        let err = r.bool("bad", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Could not parse value 'yes' for key 'bad'."
        );
        assert_eq!(r.duration_millis("d").unwrap(), Some(60_000));
        assert_eq!(r.duration_millis("d2").unwrap(), Some(500));
        assert_eq!(r.memory_size("m").unwrap(), Some(128 << 20));
        assert_eq!(r.char("c").unwrap(), Some('\t'));
        assert_eq!(r.char("u").unwrap(), Some('\u{1}'));
        assert!(r.finish("x").is_ok());
    }

    #[test]
    fn duplicate_key_keeps_last() {
        let o = opts(&[("a", "1"), ("a", "2")]);
        assert_eq!(o.get("a"), Some("2"));
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn suggestion_needs_closeness() {
        assert_eq!(did_you_mean("kafkaa", &["kafka", "print"]), Some("kafka"));
        assert_eq!(did_you_mean("zzzzzz", &["kafka", "print"]), None);
    }
}
