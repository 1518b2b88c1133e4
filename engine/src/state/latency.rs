//! Keyed-state latency tracking (`state.latency-track.*`, Flink's `LatencyTrackingStateConfig`):
//! one in `sample-interval` accesses of each operation of a keyed state is timed, and each
//! (state, operation) keeps its last `history-size` measurements, from which the statistics of
//! Flink's `DescriptiveStatisticsHistogram` (count, min, max, mean, percentiles) are computed when
//! read.
//!
//! Invariants: nothing is timed or counted when tracking is off (the state holds no tracker);
//! when on, an access that is not sampled costs one counter increment, and a sampled one two
//! clock reads and one uncontended lock. Latencies are in nanoseconds, as Flink's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::TaskMetrics;

/// `state.latency-track.*` as a subtask applies it.
#[derive(Clone, Debug)]
pub struct LatencyTracking {
    /// `state.latency-track.sample-interval`: one in this many accesses is timed.
    pub sample_interval: u32,
    /// `state.latency-track.history-size`: measurements kept per state and operation.
    pub history_size: usize,
    /// `state.latency-track.state-name-as-variable`: the state name is a metric variable (the
    /// metric is `valueStateGetLatency` in a group named by the state), not part of the metric
    /// name (`<state>.valueStateGetLatency`).
    pub state_name_as_variable: bool,
    /// Where the subtask's histograms are registered for readers.
    pub metrics: Arc<TaskMetrics>,
}

/// A timed operation of a keyed state, with Flink's metric name for a value state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateOp {
    /// A read (`valueStateGetLatency`), including a read for update.
    Get,
    /// A write of a new value (`valueStateUpdateLatency`).
    Update,
    /// A removal (`valueStateClearLatency`).
    Clear,
}

impl StateOp {
    const ALL: [StateOp; 3] = [StateOp::Get, StateOp::Update, StateOp::Clear];

    /// Flink's metric name.
    pub fn metric(self) -> &'static str {
        match self {
            StateOp::Get => "valueStateGetLatency",
            StateOp::Update => "valueStateUpdateLatency",
            StateOp::Clear => "valueStateClearLatency",
        }
    }
}

/// The last measurements of one operation of one state.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// The state's name.
    pub state: &'static str,
    /// The operation.
    pub op: StateOp,
    state_name_as_variable: bool,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Nanoseconds, a ring of at most `capacity` measurements.
    values: Vec<u64>,
    next: usize,
    capacity: usize,
    /// Every measurement ever recorded.
    count: u64,
}

/// What a [`LatencyHistogram`] holds, in nanoseconds: the statistics of Flink's histograms over
/// the kept measurements, and the count of all measurements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl LatencyHistogram {
    fn new(state: &'static str, op: StateOp, config: &LatencyTracking) -> Self {
        let capacity = config.history_size.max(1);
        LatencyHistogram {
            state,
            op,
            state_name_as_variable: config.state_name_as_variable,
            window: Mutex::new(Window {
                values: Vec::with_capacity(capacity.min(4096)),
                next: 0,
                capacity,
                count: 0,
            }),
        }
    }

    /// The metric's name as Flink reports it under the operator's group: `<metric>` in the
    /// group of the state name (`state.latency-track.state-name-as-variable`), else
    /// `<state>.<metric>`.
    pub fn metric_name(&self) -> String {
        if self.state_name_as_variable {
            self.op.metric().to_string()
        } else {
            format!("{}.{}", self.state, self.op.metric())
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one measurement.
    pub fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let mut w = self.lock();
        if w.values.len() < w.capacity {
            w.values.push(nanos);
        } else {
            let at = w.next;
            w.values[at] = nanos;
        }
        w.next = (w.next + 1) % w.capacity;
        w.count += 1;
    }

    /// The statistics of the kept measurements.
    pub fn stats(&self) -> LatencyStats {
        let (mut values, count) = {
            let w = self.lock();
            (w.values.clone(), w.count)
        };
        if values.is_empty() {
            return LatencyStats {
                count,
                ..LatencyStats::default()
            };
        }
        values.sort_unstable();
        let sum: f64 = values.iter().map(|&v| v as f64).sum();
        LatencyStats {
            count,
            min: values[0],
            max: values[values.len() - 1],
            mean: sum / values.len() as f64,
            p50: percentile(&values, 0.5),
            p95: percentile(&values, 0.95),
            p99: percentile(&values, 0.99),
        }
    }
}

/// The `q` quantile of sorted `values`, estimated as Flink's `DescriptiveStatisticsHistogram`
/// does (Apache Commons Math's default `Percentile`: position `q * (n + 1)`, linear
/// interpolation between neighbours, clamped to the extremes).
fn percentile(sorted: &[u64], q: f64) -> f64 {
    let n = sorted.len();
    let pos = q * (n as f64 + 1.0);
    if pos < 1.0 {
        return sorted[0] as f64;
    }
    if pos >= n as f64 {
        return sorted[n - 1] as f64;
    }
    let lower = pos.floor();
    let d = pos - lower;
    // `lower` is in 1..n here, so both indices are in range.
    let i = lower as usize - 1;
    let (a, b) = (sorted[i] as f64, sorted[i + 1] as f64);
    a + d * (b - a)
}

/// The sampling of one keyed state's accesses: owned by the state, on the operator thread.
#[derive(Debug)]
pub(crate) struct StateLatency {
    interval: u32,
    /// Accesses since the last sample, per operation.
    seen: [u32; 3],
    histograms: [Arc<LatencyHistogram>; 3],
}

impl StateLatency {
    /// Tracking of state `state`, its histograms registered in the subtask's metrics.
    pub(crate) fn new(state: &'static str, config: &LatencyTracking) -> Self {
        let histograms = StateOp::ALL.map(|op| Arc::new(LatencyHistogram::new(state, op, config)));
        config
            .metrics
            .state_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(histograms.iter().cloned());
        StateLatency {
            interval: config.sample_interval.max(1),
            seen: [0; 3],
            histograms,
        }
    }

    /// Counts an access of `op`; for one in `sample-interval`, the histogram to record it in and
    /// the start of its timing.
    pub(crate) fn sample(&mut self, op: StateOp) -> Option<(Arc<LatencyHistogram>, Instant)> {
        let i = op as usize;
        self.seen[i] += 1;
        if self.seen[i] < self.interval {
            return None;
        }
        self.seen[i] = 0;
        Some((self.histograms[i].clone(), Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(interval: u32, history: usize, as_variable: bool) -> LatencyTracking {
        LatencyTracking {
            sample_interval: interval,
            history_size: history,
            state_name_as_variable: as_variable,
            metrics: Arc::new(TaskMetrics::new()),
        }
    }

    #[test]
    fn one_in_sample_interval_accesses_is_timed() {
        let c = config(3, 128, true);
        let mut l = StateLatency::new("group", &c);
        let sampled: Vec<bool> = (0..9).map(|_| l.sample(StateOp::Get).is_some()).collect();
        assert_eq!(
            sampled,
            vec![false, false, true, false, false, true, false, false, true]
        );
        // Each operation counts on its own.
        assert!(l.sample(StateOp::Clear).is_none());
        assert_eq!(c.metrics.state_latency.lock().unwrap().len(), 3);
    }

    #[test]
    fn the_history_keeps_the_last_measurements() {
        let h = LatencyHistogram::new("group", StateOp::Update, &config(1, 4, false));
        for n in [1000, 1, 2, 3, 4] {
            h.record(Duration::from_nanos(n));
        }
        let s = h.stats();
        assert_eq!(s.count, 5);
        assert_eq!((s.min, s.max), (1, 4));
        assert!((s.mean - 2.5).abs() < 1e-9);
        // Commons Math: position 0.5 * 5 = 2.5 between the 2nd and 3rd values.
        assert!((s.p50 - 2.5).abs() < 1e-9);
        assert_eq!(s.p99, 4.0);
        assert_eq!(h.metric_name(), "group.valueStateUpdateLatency");
        let v = LatencyHistogram::new("group", StateOp::Get, &config(1, 4, true));
        assert_eq!(v.metric_name(), "valueStateGetLatency");
        assert_eq!(v.stats(), LatencyStats::default());
    }
}
