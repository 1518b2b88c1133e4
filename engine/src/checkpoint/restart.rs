//! Restart strategies: whether a failed job is restarted and after which delay, as Flink's
//! `RestartBackoffTimeStrategy` implementations decide it (`NoRestartBackoffTimeStrategy`,
//! `FixedDelayRestartBackoffTimeStrategy`, `FailureRateRestartBackoffTimeStrategy`,
//! `ExponentialDelayRestartBackoffTimeStrategy`) and which one a configuration selects
//! (`RestartBackoffTimeStrategyFactoryLoader`).
//!
//! Invariants: no I/O, no system time, no sleeping: `now_ms` is the caller's clock in milliseconds
//! and the decision carries the delay for the caller to wait. Jitter comes from a ChaCha8 RNG
//! seeded by the caller, so a run is reproducible from its seed. Every decision follows Flink's
//! `ExecutionFailureHandler`: the strategy is told of the failure first, then asked whether it can
//! restart and for how long to back off; when it cannot, the job fails with Flink's message
//! "Recovery is suppressed by " followed by the strategy's `toString()`, kept character for
//! character because monitoring shows it.
//!
//! Flink resets the exponential backoff without any "running fine" signal: a failure that comes
//! `reset-backoff-threshold` or more after the moment the previous restart was due starts again
//! from the initial backoff. So the runtime only reports failures; there is no success hook.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Configuration;
use crate::error::{EngineError, Result};

/// The prefix of Flink's `JobException` message when the strategy refuses a restart.
pub const RECOVERY_SUPPRESSED_PREFIX: &str = "Recovery is suppressed by ";

/// Flink's `DEFAULT_NEXT_RESTART_TIMESTAMP` (`Integer.MIN_VALUE`): "no restart scheduled yet".
/// It is kept rather than `i64::MIN` because it appears in the strategy's `toString()` and decides
/// whether the first failure resets the backoff.
const NO_RESTART_SCHEDULED_MS: i64 = i32::MIN as i64;

/// Converts a configured duration to whole milliseconds as Java's `Duration.toMillis()` does
/// (sub-millisecond parts are dropped); durations beyond `i64` milliseconds saturate.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Java's `(long) double` conversion: truncation toward zero, saturating at the `i64` range,
/// NaN becomes 0. Rust's float-to-int `as` has exactly these semantics, so the cast is the rule.
fn java_long(x: f64) -> i64 {
    x as i64
}

/// Java's `Double.toString` for the finite values the strategies print (multiplier, jitter):
/// plain notation with at least one fractional digit in `[1e-3, 1e7)`, else `1.0E7` style.
fn java_double(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let a = x.abs();
    if (1e-3..1e7).contains(&a) {
        // Debug prints the shortest representation that round-trips and keeps a ".0", as Java.
        return format!("{x:?}");
    }
    let s = format!("{x:e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    if mantissa.contains('.') {
        format!("{mantissa}E{exponent}")
    } else {
        format!("{mantissa}.0E{exponent}")
    }
}

/// What the runtime does after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the failed job after `delay_ms` milliseconds.
    Restart {
        /// How long to wait before restarting, in milliseconds (never negative).
        delay_ms: i64,
        /// False when the failure was merged into a restart already scheduled (exponential-delay
        /// merges failures that arrive while it backs off); Flink counts only new attempts in
        /// the `numRestarts` metric.
        new_attempt: bool,
    },
    /// Fail the job for good.
    Fail {
        /// Flink's message, `Recovery is suppressed by <strategy>`, the strategy as its `Display`
        /// prints it.
        message: String,
    },
}

/// `restart-strategy.type: disable` (`none`, `off`): every failure fails the job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoRestart;

impl fmt::Display for NoRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoRestartBackoffTimeStrategy")
    }
}

/// `restart-strategy.type: fixed-delay`: up to `attempts` restarts, each after the same delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedDelay {
    max_attempts: u32,
    backoff_ms: i64,
    /// Failures seen so far, each counted as one restart attempt.
    failures: u64,
}

impl FixedDelay {
    /// A fixed-delay strategy; Flink's checks: at least 0 attempts and a delay of at least 0 ms.
    pub fn new(max_attempts: u32, backoff_ms: i64) -> Result<Self> {
        check(
            i32::try_from(max_attempts).is_ok(),
            "Maximum number of restart attempts must be at least 0.",
            "restart-strategy.fixed-delay.attempts",
        )?;
        check(
            backoff_ms >= 0,
            "Backoff time between restart attempts must be at least 0 ms.",
            "restart-strategy.fixed-delay.delay",
        )?;
        Ok(FixedDelay {
            max_attempts,
            backoff_ms,
            failures: 0,
        })
    }

    fn on_failure(&mut self) -> Option<RestartDecision> {
        self.failures = self.failures.saturating_add(1);
        (self.failures <= u64::from(self.max_attempts)).then_some(RestartDecision::Restart {
            delay_ms: self.backoff_ms,
            new_attempt: true,
        })
    }
}

impl fmt::Display for FixedDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts={}, backoffTimeMS={})",
            self.max_attempts, self.backoff_ms
        )
    }
}

/// `restart-strategy.type: failure-rate`: restarts while no more than `max_failures` failures
/// fall within any `interval_ms` window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRate {
    max_failures: u32,
    interval_ms: i64,
    backoff_ms: i64,
    /// The last failures, oldest first; at most `max_failures + 1` are kept, as Flink's deque.
    failures: VecDeque<i64>,
}

impl FailureRate {
    /// A failure-rate strategy; Flink's checks: more than 0 failures per interval, an interval
    /// longer than 0 ms, a delay of at least 0 ms.
    pub fn new(max_failures: u32, interval_ms: i64, backoff_ms: i64) -> Result<Self> {
        check(
            max_failures > 0 && i32::try_from(max_failures).is_ok(),
            "Maximum number of restart attempts per time unit must be greater than 0.",
            "restart-strategy.failure-rate.max-failures-per-interval",
        )?;
        check(
            interval_ms > 0,
            "Failures interval must be greater than 0 ms.",
            "restart-strategy.failure-rate.failure-rate-interval",
        )?;
        check(
            backoff_ms >= 0,
            "Backoff time must be at least 0 ms.",
            "restart-strategy.failure-rate.delay",
        )?;
        Ok(FailureRate {
            max_failures,
            interval_ms,
            backoff_ms,
            // Not preallocated: `max_failures` may be as large as `i32::MAX`.
            failures: VecDeque::new(),
        })
    }

    fn is_full(&self) -> bool {
        // `usize` holds every `u32` on the platforms streamsql builds for; saturate otherwise.
        self.failures.len() > usize::try_from(self.max_failures).unwrap_or(usize::MAX)
    }

    fn on_failure(&mut self, now_ms: i64) -> Option<RestartDecision> {
        if self.is_full() {
            self.failures.pop_front();
        }
        self.failures.push_back(now_ms);
        let can_restart = match (self.is_full(), self.failures.front()) {
            // max+1 failures are remembered: the oldest must lie strictly outside the window.
            (true, Some(&earliest)) => now_ms.saturating_sub(earliest) > self.interval_ms,
            _ => true,
        };
        can_restart.then_some(RestartDecision::Restart {
            delay_ms: self.backoff_ms,
            new_attempt: true,
        })
    }
}

impl fmt::Display for FailureRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Flink's text, including its doubled class name and missing spaces.
        write!(
            f,
            "FailureRateRestartBackoffTimeStrategy(FailureRateRestartBackoffTimeStrategy(failuresIntervalMS={},backoffTimeMS={},maxFailuresPerInterval={})",
            self.interval_ms, self.backoff_ms, self.max_failures
        )
    }
}

/// The settings of [`ExponentialDelay`], with Flink's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialDelayConfig {
    /// `restart-strategy.exponential-delay.initial-backoff` (1 s).
    pub initial_backoff_ms: i64,
    /// `restart-strategy.exponential-delay.max-backoff` (1 min).
    pub max_backoff_ms: i64,
    /// `restart-strategy.exponential-delay.backoff-multiplier` (1.5).
    pub backoff_multiplier: f64,
    /// `restart-strategy.exponential-delay.reset-backoff-threshold` (1 h).
    pub reset_backoff_threshold_ms: i64,
    /// `restart-strategy.exponential-delay.jitter-factor` (0.1).
    pub jitter_factor: f64,
    /// `restart-strategy.exponential-delay.attempts-before-reset-backoff` (`Integer.MAX_VALUE`).
    pub attempts_before_reset_backoff: u32,
}

impl Default for ExponentialDelayConfig {
    fn default() -> Self {
        ExponentialDelayConfig {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            backoff_multiplier: 1.5,
            reset_backoff_threshold_ms: 3_600_000,
            jitter_factor: 0.1,
            attempts_before_reset_backoff: i32::MAX.unsigned_abs(),
        }
    }
}

/// `restart-strategy.type: exponential-delay`: the n-th restart since the last reset waits
/// `initial * multiplier^n` (plus or minus the jitter), capped at the maximum backoff.
///
/// Failures that arrive before the scheduled restart (several tasks failing for one cause) are
/// merged into that restart. A failure `reset-backoff-threshold` or more after the moment the
/// previous restart was due resets the backoff and the attempt count.
#[derive(Clone, Debug)]
pub struct ExponentialDelay {
    config: ExponentialDelayConfig,
    /// Restart attempts since the last reset (Flink's `currentRestartAttempt`).
    attempt: u32,
    /// When the last scheduled restart is (or was) due (Flink's `nextRestartTimestamp`).
    next_restart_ms: i64,
    rng: ChaCha8Rng,
}

impl ExponentialDelay {
    /// An exponential-delay strategy whose jitter is drawn from a ChaCha8 RNG seeded with
    /// `jitter_seed`; Flink's checks on the settings.
    pub fn new(config: ExponentialDelayConfig, jitter_seed: u64) -> Result<Self> {
        const P: &str = "restart-strategy.exponential-delay.";
        let c = &config;
        check(
            c.initial_backoff_ms >= 1,
            "Initial backoff must be at least 1.",
            &format!("{P}initial-backoff"),
        )?;
        check(
            c.max_backoff_ms >= 1,
            "Maximum backoff must be at least 1.",
            &format!("{P}max-backoff"),
        )?;
        check(
            c.initial_backoff_ms <= c.max_backoff_ms,
            "Initial backoff cannot be higher than maximum backoff.",
            &format!("{P}initial-backoff"),
        )?;
        check(
            c.backoff_multiplier > 1.0 && c.backoff_multiplier.is_finite(),
            "Backoff multiplier must be greater than 1.",
            &format!("{P}backoff-multiplier"),
        )?;
        check(
            c.reset_backoff_threshold_ms >= 1,
            "Threshold duration for exponential backoff reset must be at least 1.",
            &format!("{P}reset-backoff-threshold"),
        )?;
        check(
            (0.0..=1.0).contains(&c.jitter_factor),
            "Jitter factor must be >= 0 and <= 1.",
            &format!("{P}jitter-factor"),
        )?;
        check(
            c.attempts_before_reset_backoff >= 1
                && i32::try_from(c.attempts_before_reset_backoff).is_ok(),
            "The attemptsBeforeResetBackoff must be at least 1.",
            &format!("{P}attempts-before-reset-backoff"),
        )?;
        Ok(ExponentialDelay {
            config,
            attempt: 0,
            next_restart_ms: NO_RESTART_SCHEDULED_MS,
            rng: ChaCha8Rng::seed_from_u64(jitter_seed),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ExponentialDelayConfig {
        &self.config
    }

    /// Restart attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn on_failure(&mut self, now_ms: i64) -> Option<RestartDecision> {
        let new_attempt = now_ms > self.next_restart_ms;
        if new_attempt {
            if now_ms.saturating_sub(self.next_restart_ms) >= self.config.reset_backoff_threshold_ms
            {
                self.attempt = 0;
            }
            let backoff = self.backoff_with_jitter();
            self.next_restart_ms = now_ms.saturating_add(backoff);
            self.attempt = self.attempt.saturating_add(1);
        }
        (self.attempt <= self.config.attempts_before_reset_backoff).then(|| {
            RestartDecision::Restart {
                delay_ms: self.next_restart_ms.saturating_sub(now_ms).max(0),
                new_attempt,
            }
        })
    }

    /// Flink's `calculateActualBackoffTime`: the uncapped backoff plus a jitter drawn uniformly
    /// from `[-offset, offset]` where `offset = backoff * jitter`, then clamped to
    /// `[initial, max]`. Flink adds in wrapping `long` arithmetic, which makes the delay random
    /// once the uncapped backoff nears `Long.MAX_VALUE` (about 90 attempts without a reset at the
    /// defaults); the sum saturates here, so the delay stays at the maximum.
    fn backoff_with_jitter(&mut self) -> i64 {
        let c = &self.config;
        let backoff = java_long(
            c.initial_backoff_ms as f64 * c.backoff_multiplier.powf(f64::from(self.attempt)),
        );
        let jitter = if c.jitter_factor == 0.0 {
            0
        } else {
            let offset = java_long(backoff as f64 * c.jitter_factor);
            self.rng.gen_range(-offset..=offset)
        };
        backoff
            .saturating_add(jitter)
            .min(c.max_backoff_ms)
            .max(c.initial_backoff_ms)
    }
}

impl fmt::Display for ExponentialDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        write!(
            f,
            "ExponentialDelayRestartBackoffTimeStrategy(initialBackoffMS={}, maxBackoffMS={}, backoffMultiplier={}, resetBackoffThresholdMS={}, jitterFactor={}, attemptsBeforeResetBackoff={}, currentRestartAttempt={}, nextRestartTimestamp={})",
            c.initial_backoff_ms,
            c.max_backoff_ms,
            java_double(c.backoff_multiplier),
            c.reset_backoff_threshold_ms,
            java_double(c.jitter_factor),
            c.attempts_before_reset_backoff,
            self.attempt,
            self.next_restart_ms
        )
    }
}

/// The restart strategy of a job; `Display` is Flink's `toString()` of the strategy.
#[derive(Clone, Debug)]
pub enum RestartStrategy {
    /// `disable`, `none`, `off`.
    NoRestart(NoRestart),
    /// `fixed-delay`, `fixeddelay`.
    FixedDelay(FixedDelay),
    /// `failure-rate`, `failurerate`.
    FailureRate(FailureRate),
    /// `exponential-delay`, `exponentialdelay`. Boxed: the RNG state is a few hundred bytes.
    ExponentialDelay(Box<ExponentialDelay>),
}

impl RestartStrategy {
    /// The strategy `config` selects, by Flink's rules: `restart-strategy.type` when set, with
    /// that strategy's keys; otherwise exponential-delay with its *default* settings when
    /// checkpointing is enabled (`execution.checkpointing.interval` set and above 0), else no
    /// restart. As in Flink, `restart-strategy.exponential-delay.*` keys are read only when the
    /// type is set explicitly. `jitter_seed` seeds exponential-delay's jitter.
    pub fn from_configuration(config: &Configuration, jitter_seed: u64) -> Result<Self> {
        let Some(kind) = config.get_str("restart-strategy.type") else {
            let checkpointing = config
                .get_duration("execution.checkpointing.interval")
                .is_some_and(|d| millis(d) > 0);
            return Ok(if checkpointing {
                RestartStrategy::ExponentialDelay(Box::new(ExponentialDelay::new(
                    ExponentialDelayConfig::default(),
                    jitter_seed,
                )?))
            } else {
                RestartStrategy::NoRestart(NoRestart)
            });
        };
        let duration = |key: &str| {
            config.get_duration(key).map(millis).ok_or_else(|| {
                EngineError::internal(format!("configuration key '{key}' has no default"))
            })
        };
        let int = |key: &str| {
            config
                .get_int(key)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    EngineError::internal(format!(
                        "configuration key '{key}' has no default or is out of range"
                    ))
                })
        };
        let float = |key: &str| {
            config.get_float(key).ok_or_else(|| {
                EngineError::internal(format!("configuration key '{key}' has no default"))
            })
        };
        // The registry stores the canonical spelling; aliases and case were resolved on `set`.
        match kind.to_ascii_lowercase().as_str() {
            "disable" | "none" | "off" => Ok(RestartStrategy::NoRestart(NoRestart)),
            "fixed-delay" | "fixeddelay" => Ok(RestartStrategy::FixedDelay(FixedDelay::new(
                int("restart-strategy.fixed-delay.attempts")?,
                duration("restart-strategy.fixed-delay.delay")?,
            )?)),
            "failure-rate" | "failurerate" => Ok(RestartStrategy::FailureRate(FailureRate::new(
                int("restart-strategy.failure-rate.max-failures-per-interval")?,
                duration("restart-strategy.failure-rate.failure-rate-interval")?,
                duration("restart-strategy.failure-rate.delay")?,
            )?)),
            "exponential-delay" | "exponentialdelay" => {
                const P: &str = "restart-strategy.exponential-delay.";
                let cfg = ExponentialDelayConfig {
                    initial_backoff_ms: duration(&format!("{P}initial-backoff"))?,
                    max_backoff_ms: duration(&format!("{P}max-backoff"))?,
                    backoff_multiplier: float(&format!("{P}backoff-multiplier"))?,
                    reset_backoff_threshold_ms: duration(&format!("{P}reset-backoff-threshold"))?,
                    jitter_factor: float(&format!("{P}jitter-factor"))?,
                    attempts_before_reset_backoff: int(&format!(
                        "{P}attempts-before-reset-backoff"
                    ))?,
                };
                Ok(RestartStrategy::ExponentialDelay(Box::new(
                    ExponentialDelay::new(cfg, jitter_seed)?,
                )))
            }
            _ => Err(EngineError::option(
                format!("Unknown restart strategy {kind}."),
                Some(
                    "'restart-strategy.type' takes disable, fixed-delay, failure-rate or exponential-delay"
                        .to_string(),
                ),
            )),
        }
    }

    /// Flink's main name of the strategy type, as `restart-strategy.type` spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            RestartStrategy::NoRestart(_) => "disable",
            RestartStrategy::FixedDelay(_) => "fixed-delay",
            RestartStrategy::FailureRate(_) => "failure-rate",
            RestartStrategy::ExponentialDelay(_) => "exponential-delay",
        }
    }

    /// Records a failure at `now_ms` and decides: restart after a delay, or fail the job with
    /// Flink's "Recovery is suppressed by ..." message.
    pub fn on_failure(&mut self, now_ms: i64) -> RestartDecision {
        let decision = match self {
            RestartStrategy::NoRestart(_) => None,
            RestartStrategy::FixedDelay(s) => s.on_failure(),
            RestartStrategy::FailureRate(s) => s.on_failure(now_ms),
            RestartStrategy::ExponentialDelay(s) => s.on_failure(now_ms),
        };
        // The message is built after the failure is recorded: Flink prints the state then.
        decision.unwrap_or_else(|| RestartDecision::Fail {
            message: format!("{RECOVERY_SUPPRESSED_PREFIX}{self}"),
        })
    }
}

impl fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartStrategy::NoRestart(s) => s.fmt(f),
            RestartStrategy::FixedDelay(s) => s.fmt(f),
            RestartStrategy::FailureRate(s) => s.fmt(f),
            RestartStrategy::ExponentialDelay(s) => s.fmt(f),
        }
    }
}

/// Flink's `checkArgument`: an `IllegalArgumentException` with `message`, here a user error
/// naming the key to fix.
fn check(ok: bool, message: &str, key: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(EngineError::option(
            message,
            Some(format!("check the value of '{key}'")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Configuration {
        let mut c = Configuration::new();
        for (k, v) in pairs {
            c.set(k, v)
                .unwrap_or_else(|e| panic!("setting {k}={v} failed: {e}"));
        }
        c
    }

    fn strategy(pairs: &[(&str, &str)]) -> RestartStrategy {
        RestartStrategy::from_configuration(&config(pairs), 7)
            .unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
    }

    fn restart(delay_ms: i64) -> RestartDecision {
        RestartDecision::Restart {
            delay_ms,
            new_attempt: true,
        }
    }

    fn merged(delay_ms: i64) -> RestartDecision {
        RestartDecision::Restart {
            delay_ms,
            new_attempt: false,
        }
    }

    fn fail(strategy: &str) -> RestartDecision {
        RestartDecision::Fail {
            message: format!("Recovery is suppressed by {strategy}"),
        }
    }

    /// Settings, expected `type_name()`, expected `Display`.
    type SelectionCase = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );
    /// Max failures per interval, interval, failures as (time, restarts?).
    type WindowCase = (&'static str, &'static str, &'static [(i64, bool)]);

    const DEFAULT_EXPONENTIAL: &str = "ExponentialDelayRestartBackoffTimeStrategy(initialBackoffMS=1000, maxBackoffMS=60000, backoffMultiplier=1.5, resetBackoffThresholdMS=3600000, jitterFactor=0.1, attemptsBeforeResetBackoff=2147483647, currentRestartAttempt=0, nextRestartTimestamp=-2147483648)";

    #[test]
    fn configuration_selects_flinks_strategy() {
        let fixed_default =
            "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts=1, backoffTimeMS=1000)";
        let cases: &[SelectionCase] = &[
            (&[], "disable", "NoRestartBackoffTimeStrategy"),
            (
                &[("execution.checkpointing.interval", "10 s")],
                "exponential-delay",
                DEFAULT_EXPONENTIAL,
            ),
            // Without an explicit type Flink uses the defaults, not the configured keys.
            (
                &[
                    ("execution.checkpointing.interval", "10 s"),
                    ("restart-strategy.exponential-delay.initial-backoff", "5 s"),
                    ("restart-strategy.exponential-delay.backoff-multiplier", "3"),
                ],
                "exponential-delay",
                DEFAULT_EXPONENTIAL,
            ),
            (
                &[("execution.checkpointing.interval", "0 ms")],
                "disable",
                "NoRestartBackoffTimeStrategy",
            ),
            // Keys of a strategy that is not selected change nothing.
            (
                &[("restart-strategy.fixed-delay.attempts", "5")],
                "disable",
                "NoRestartBackoffTimeStrategy",
            ),
            (
                &[
                    ("execution.checkpointing.interval", "10 s"),
                    ("restart-strategy.type", "none"),
                ],
                "disable",
                "NoRestartBackoffTimeStrategy",
            ),
            (
                &[("restart-strategy.type", "off")],
                "disable",
                "NoRestartBackoffTimeStrategy",
            ),
            (
                &[("restart-strategy.type", "DISABLE")],
                "disable",
                "NoRestartBackoffTimeStrategy",
            ),
            (
                &[("restart-strategy.type", "fixed-delay")],
                "fixed-delay",
                fixed_default,
            ),
            (
                &[("restart-strategy.type", "FixedDelay")],
                "fixed-delay",
                fixed_default,
            ),
            // The Flink 1.x key.
            (
                &[("restart-strategy", "fixeddelay")],
                "fixed-delay",
                fixed_default,
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.attempts", "3"),
                    ("restart-strategy.fixed-delay.delay", "10 s"),
                ],
                "fixed-delay",
                "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts=3, backoffTimeMS=10000)",
            ),
            (
                &[
                    ("restart-strategy.type", "fixed-delay"),
                    ("restart-strategy.fixed-delay.delay", "1500 us"),
                ],
                "fixed-delay",
                "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts=1, backoffTimeMS=1)",
            ),
            (
                &[("restart-strategy.type", "failurerate")],
                "failure-rate",
                "FailureRateRestartBackoffTimeStrategy(FailureRateRestartBackoffTimeStrategy(failuresIntervalMS=60000,backoffTimeMS=1000,maxFailuresPerInterval=1)",
            ),
            (
                &[
                    ("restart-strategy.type", "failure-rate"),
                    ("restart-strategy.failure-rate.max-failures-per-interval", "3"),
                    ("restart-strategy.failure-rate.failure-rate-interval", "5 min"),
                    ("restart-strategy.failure-rate.delay", "10 s"),
                ],
                "failure-rate",
                "FailureRateRestartBackoffTimeStrategy(FailureRateRestartBackoffTimeStrategy(failuresIntervalMS=300000,backoffTimeMS=10000,maxFailuresPerInterval=3)",
            ),
            (
                &[("restart-strategy.type", "exponentialdelay")],
                "exponential-delay",
                DEFAULT_EXPONENTIAL,
            ),
            (
                &[
                    ("restart-strategy.type", "exponential-delay"),
                    ("restart-strategy.exponential-delay.initial-backoff", "100 ms"),
                    ("restart-strategy.exponential-delay.max-backoff", "2 min"),
                    ("restart-strategy.exponential-delay.backoff-multiplier", "2"),
                    ("restart-strategy.exponential-delay.reset-backoff-threshold", "10 min"),
                    ("restart-strategy.exponential-delay.jitter-factor", "0"),
                    (
                        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                        "10",
                    ),
                ],
                "exponential-delay",
                "ExponentialDelayRestartBackoffTimeStrategy(initialBackoffMS=100, maxBackoffMS=120000, backoffMultiplier=2.0, resetBackoffThresholdMS=600000, jitterFactor=0.0, attemptsBeforeResetBackoff=10, currentRestartAttempt=0, nextRestartTimestamp=-2147483648)",
            ),
        ];
        for (pairs, type_name, text) in cases {
            let s = strategy(pairs);
            assert_eq!(s.type_name(), *type_name, "{pairs:?}");
            assert_eq!(s.to_string(), *text, "{pairs:?}");
        }
    }

    #[test]
    fn invalid_values_are_rejected_when_set() {
        let cases = [
            ("restart-strategy.type", "sometimes"),
            ("restart-strategy.type", "fixed_delay"),
            ("restart-strategy.fixed-delay.attempts", "-1"),
            ("restart-strategy.fixed-delay.attempts", "three"),
            ("restart-strategy.fixed-delay.delay", "soon"),
            (
                "restart-strategy.failure-rate.max-failures-per-interval",
                "0",
            ),
            (
                "restart-strategy.exponential-delay.backoff-multiplier",
                "0.5",
            ),
            ("restart-strategy.exponential-delay.jitter-factor", "1.5"),
            ("restart-strategy.exponential-delay.jitter-factor", "-0.1"),
            (
                "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                "0",
            ),
        ];
        for (key, value) in cases {
            assert!(
                Configuration::new().set(key, value).is_err(),
                "{key}={value} was accepted"
            );
        }
    }

    #[test]
    fn invalid_combinations_fail_with_flinks_message() {
        let exp = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![("restart-strategy.type", "exponential-delay")];
            pairs.extend_from_slice(extra);
            pairs
        };
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                exp(&[(
                    "restart-strategy.exponential-delay.backoff-multiplier",
                    "1.0",
                )]),
                "Backoff multiplier must be greater than 1.",
            ),
            (
                exp(&[(
                    "restart-strategy.exponential-delay.initial-backoff",
                    "2 min",
                )]),
                "Initial backoff cannot be higher than maximum backoff.",
            ),
            (
                exp(&[("restart-strategy.exponential-delay.initial-backoff", "0 ms")]),
                "Initial backoff must be at least 1.",
            ),
            // Sub-millisecond durations truncate to 0 ms, as Java's `Duration.toMillis()`.
            (
                exp(&[(
                    "restart-strategy.exponential-delay.initial-backoff",
                    "500 us",
                )]),
                "Initial backoff must be at least 1.",
            ),
            (
                exp(&[
                    ("restart-strategy.exponential-delay.initial-backoff", "0 ms"),
                    ("restart-strategy.exponential-delay.max-backoff", "0 ms"),
                ]),
                "Initial backoff must be at least 1.",
            ),
            (
                exp(&[(
                    "restart-strategy.exponential-delay.reset-backoff-threshold",
                    "0 s",
                )]),
                "Threshold duration for exponential backoff reset must be at least 1.",
            ),
            (
                vec![
                    ("restart-strategy.type", "failure-rate"),
                    (
                        "restart-strategy.failure-rate.failure-rate-interval",
                        "0 ms",
                    ),
                ],
                "Failures interval must be greater than 0 ms.",
            ),
        ];
        for (pairs, message) in cases {
            let err = RestartStrategy::from_configuration(&config(&pairs), 0)
                .expect_err(&format!("{pairs:?} was accepted"));
            match err {
                EngineError::Option { message: m, help } => {
                    assert_eq!(m, message, "{pairs:?}");
                    assert!(help.is_some_and(|h| h.contains("restart-strategy.")));
                }
                other => panic!("{pairs:?}: unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn constructors_check_flinks_preconditions() {
        assert!(FixedDelay::new(0, 0).is_ok());
        assert!(FixedDelay::new(1, -1).is_err());
        assert!(FixedDelay::new(u32::MAX, 0).is_err());
        assert!(FailureRate::new(0, 1, 0).is_err());
        assert!(FailureRate::new(1, 0, 0).is_err());
        assert!(FailureRate::new(1, 1, -1).is_err());
        let ok = ExponentialDelayConfig::default();
        assert!(ExponentialDelay::new(ok, 0).is_ok());
        let bad = [
            ExponentialDelayConfig {
                max_backoff_ms: 0,
                ..ok
            },
            ExponentialDelayConfig {
                backoff_multiplier: f64::INFINITY,
                ..ok
            },
            ExponentialDelayConfig {
                backoff_multiplier: f64::NAN,
                ..ok
            },
            ExponentialDelayConfig {
                jitter_factor: f64::NAN,
                ..ok
            },
            ExponentialDelayConfig {
                jitter_factor: 1.01,
                ..ok
            },
            ExponentialDelayConfig {
                attempts_before_reset_backoff: 0,
                ..ok
            },
            ExponentialDelayConfig {
                attempts_before_reset_backoff: u32::MAX,
                ..ok
            },
        ];
        for c in bad {
            assert!(ExponentialDelay::new(c, 0).is_err(), "{c:?} was accepted");
        }
    }

    #[test]
    fn no_restart_fails_every_failure() {
        let mut s = strategy(&[]);
        for now in [0, 1, i64::MAX] {
            assert_eq!(s.on_failure(now), fail("NoRestartBackoffTimeStrategy"));
        }
    }

    #[test]
    fn fixed_delay_counts_attempts() {
        // (attempts, delay, decisions for consecutive failures)
        let cases: &[(&str, &str, &[Option<i64>])] = &[
            ("0", "1 s", &[None, None]),
            ("1", "1 s", &[Some(1000), None, None]),
            ("3", "1 s", &[Some(1000), Some(1000), Some(1000), None]),
            ("2", "0 ms", &[Some(0), Some(0), None]),
        ];
        for (attempts, delay, expected) in cases {
            let mut s = strategy(&[
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", attempts),
                ("restart-strategy.fixed-delay.delay", delay),
            ]);
            let text = s.to_string();
            for (i, want) in expected.iter().enumerate() {
                // Time plays no part in fixed-delay: failures far apart still count.
                let now = i64::try_from(i).expect("small") * 86_400_000;
                let want = want.map_or_else(|| fail(&text), restart);
                assert_eq!(s.on_failure(now), want, "attempts={attempts} failure {i}");
            }
        }
        let mut s = strategy(&[
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "3"),
        ]);
        for _ in 0..3 {
            assert_eq!(s.on_failure(0), restart(1000));
        }
        assert_eq!(
            s.on_failure(0),
            RestartDecision::Fail {
                message: "Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts=3, backoffTimeMS=1000)".to_string()
            }
        );
    }

    #[test]
    fn failure_rate_slides_its_window() {
        // (max failures per interval, interval ms, failure times, expected: restart?)
        let cases: &[WindowCase] = &[
            // Default: one failure per minute.
            ("1", "1 min", &[(0, true), (59_999, false)]),
            // The oldest failure must lie strictly more than the interval before.
            ("1", "1 min", &[(0, true), (60_000, false)]),
            ("1", "1 min", &[(0, true), (60_001, true), (120_001, false)]),
            ("1", "1 min", &[(0, true), (60_001, true), (120_002, true)]),
            (
                "2",
                "1 s",
                &[(0, true), (100, true), (200, false), (300, false)],
            ),
            // Once the window slides past the old failures, restarts resume.
            (
                "2",
                "1 s",
                &[
                    (0, true),
                    (500, true),
                    (1001, true),
                    (1200, false),
                    (2002, true),
                ],
            ),
            ("2", "1 s", &[(0, true), (10, true), (1000, false)]),
            (
                "3",
                "10 s",
                &[(0, true), (1, true), (2, true), (3, false), (10_002, true)],
            ),
        ];
        for (max, interval, failures) in cases {
            let mut s = strategy(&[
                ("restart-strategy.type", "failure-rate"),
                (
                    "restart-strategy.failure-rate.max-failures-per-interval",
                    max,
                ),
                (
                    "restart-strategy.failure-rate.failure-rate-interval",
                    interval,
                ),
                ("restart-strategy.failure-rate.delay", "250 ms"),
            ]);
            for (now, restarts) in *failures {
                let want = if *restarts {
                    restart(250)
                } else {
                    fail(&s.to_string())
                };
                assert_eq!(
                    s.on_failure(*now),
                    want,
                    "max={max} interval={interval} t={now}"
                );
            }
        }
    }

    fn exponential(c: ExponentialDelayConfig, seed: u64) -> RestartStrategy {
        RestartStrategy::ExponentialDelay(Box::new(
            ExponentialDelay::new(c, seed).expect("valid settings"),
        ))
    }

    const NO_JITTER: ExponentialDelayConfig = ExponentialDelayConfig {
        initial_backoff_ms: 1000,
        max_backoff_ms: 10_000,
        backoff_multiplier: 2.0,
        reset_backoff_threshold_ms: 60_000,
        jitter_factor: 0.0,
        attempts_before_reset_backoff: i32::MAX.unsigned_abs(),
    };

    #[test]
    fn exponential_delay_grows_caps_merges_and_resets() {
        let mut s = exponential(NO_JITTER, 0);
        // (failure time, expected decision)
        let steps = [
            (0, restart(1000)),
            // Failures before the scheduled restart are merged into it.
            (500, merged(500)),
            (1000, merged(0)),
            (1001, restart(2000)),
            (3002, restart(4000)),
            (7003, restart(8000)),
            // 16 s is capped at the maximum.
            (15_004, restart(10_000)),
            (25_005, restart(10_000)),
            // One millisecond short of the threshold after the restart was due (35_005).
            (95_004, restart(10_000)),
            // Exactly the threshold after the restart was due (105_004): reset.
            (165_004, restart(1000)),
            (166_005, restart(2000)),
        ];
        for (now, want) in steps {
            assert_eq!(s.on_failure(now), want, "t={now}");
        }
    }

    #[test]
    fn exponential_delay_with_flinks_default_multiplier() {
        let c = ExponentialDelayConfig {
            jitter_factor: 0.0,
            ..ExponentialDelayConfig::default()
        };
        let mut s = exponential(c, 0);
        let expected = [
            1000, 1500, 2250, 3375, 5062, 7593, 11_390, 17_085, 25_628, 38_443, 57_665, 60_000,
            60_000,
        ];
        let mut now = 0;
        for want in expected {
            assert_eq!(s.on_failure(now), restart(want), "t={now}");
            // Fail again right after the restart.
            now += want + 1;
        }
    }

    #[test]
    fn exponential_delay_attempts_before_reset() {
        let c = ExponentialDelayConfig {
            attempts_before_reset_backoff: 2,
            ..NO_JITTER
        };
        let mut s = exponential(c, 0);
        assert_eq!(s.on_failure(0), restart(1000));
        assert_eq!(s.on_failure(2000), restart(2000));
        assert_eq!(
            s.on_failure(10_000),
            RestartDecision::Fail {
                message: "Recovery is suppressed by ExponentialDelayRestartBackoffTimeStrategy(initialBackoffMS=1000, maxBackoffMS=10000, backoffMultiplier=2.0, resetBackoffThresholdMS=60000, jitterFactor=0.0, attemptsBeforeResetBackoff=2, currentRestartAttempt=3, nextRestartTimestamp=14000)".to_string()
            }
        );
        // A merged failure does not count, but the strategy stays exhausted.
        assert!(matches!(s.on_failure(11_000), RestartDecision::Fail { .. }));
        // After a stable period the count starts again.
        assert_eq!(s.on_failure(74_000), restart(1000));
        assert_eq!(s.on_failure(75_001), restart(2000));
    }

    #[test]
    fn exponential_delay_jitter_stays_within_bounds() {
        for jitter in [0.1, 0.5, 1.0] {
            for seed in 0..50u64 {
                let c = ExponentialDelayConfig {
                    jitter_factor: jitter,
                    ..ExponentialDelayConfig::default()
                };
                let mut s = exponential(c, seed);
                let mut now = 0i64;
                for attempt in 0..20 {
                    let backoff = java_long(1000.0 * 1.5f64.powi(attempt));
                    let offset = java_long(backoff as f64 * jitter);
                    let low = (backoff - offset).clamp(1000, 60_000);
                    let high = (backoff + offset).clamp(1000, 60_000);
                    match s.on_failure(now) {
                        RestartDecision::Restart {
                            delay_ms,
                            new_attempt: true,
                        } => {
                            assert!(
                                (low..=high).contains(&delay_ms),
                                "seed={seed} jitter={jitter} attempt={attempt}: {delay_ms} not in {low}..={high}"
                            );
                            now += delay_ms + 1;
                        }
                        other => panic!("seed={seed} jitter={jitter}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn exponential_delay_jitter_is_reproducible_from_the_seed() {
        let run = |seed: u64| {
            let mut s = exponential(ExponentialDelayConfig::default(), seed);
            let mut now = 0;
            let mut delays = Vec::new();
            for _ in 0..8 {
                if let RestartDecision::Restart { delay_ms, .. } = s.on_failure(now) {
                    delays.push(delay_ms);
                    now += delay_ms + 1;
                }
            }
            delays
        };
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(run(seed), run(seed), "seed={seed}");
        }
        // Jitter does move the delays: 10 seeds cannot all draw the exact backoff 8 times.
        let plain = [1000, 1500, 2250, 3375, 5062, 7593, 11_390, 17_085];
        assert!((0..10).any(|seed| run(seed) != plain));
    }

    #[test]
    fn exponential_delay_survives_extremes() {
        // Hundreds of consecutive failures push the uncapped backoff past i64: it saturates.
        for jitter in [0.0, 0.1, 1.0] {
            let c = ExponentialDelayConfig {
                jitter_factor: jitter,
                ..ExponentialDelayConfig::default()
            };
            let mut s = exponential(c, 3);
            let mut now = 0;
            for i in 0..300 {
                match s.on_failure(now) {
                    RestartDecision::Restart { delay_ms, .. } => {
                        assert!(
                            (1000..=60_000).contains(&delay_ms),
                            "failure {i}: {delay_ms}"
                        );
                        if i > 100 {
                            assert_eq!(delay_ms, 60_000, "jitter={jitter} failure {i}");
                        }
                        now += delay_ms + 1;
                    }
                    other => panic!("failure {i}: {other:?}"),
                }
            }
        }
        // Clock values at the ends of the range neither panic nor go negative.
        let mut s = exponential(NO_JITTER, 0);
        for now in [i64::MIN, -1, i64::MAX - 5, i64::MAX] {
            match s.on_failure(now) {
                RestartDecision::Restart { delay_ms, .. } => assert!(delay_ms >= 0),
                other => panic!("t={now}: {other:?}"),
            }
        }
    }

    #[test]
    fn doubles_print_as_java_does() {
        let cases = [
            (1.5, "1.5"),
            (2.0, "2.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1.25e-5, "1.25E-5"),
            (9_999_999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (1.25e10, "1.25E10"),
        ];
        for (x, text) in cases {
            assert_eq!(java_double(x), text, "{x}");
        }
    }
}
