//! Per-subtask counters, shared between the task thread (which writes) and whoever watches the job
//! (which reads). Relaxed atomics: each counter is independent and only needs to be eventually
//! visible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::state::latency::LatencyHistogram;

/// Counters of one operator subtask, with Flink's metric names in their docs.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    /// `numRecordsIn`.
    pub records_in: AtomicU64,
    /// `numRecordsOut`.
    pub records_out: AtomicU64,
    /// `numLateRecordsDropped`.
    pub late_records_dropped: AtomicU64,
    /// Rows skipped by `*.ignore-parse-errors`.
    pub parse_errors_skipped: AtomicU64,
    /// Keyed-state entries removed because `table.exec.state.ttl` expired them.
    pub state_ttl_expired: AtomicU64,
    /// Encoded bytes of those entries (key, value and write time).
    pub state_ttl_bytes_reclaimed: AtomicU64,
    /// How long the state TTL sweeper's last complete pass over the state took, in
    /// milliseconds: an expired entry nobody reads is removed at most about this long after it
    /// expired.
    pub state_ttl_sweep_lag_ms: AtomicU64,
    /// Keyed-state access latencies, per state and operation, when
    /// `state.latency-track.keyed-state-enabled` is on.
    pub state_latency: Mutex<Vec<Arc<LatencyHistogram>>>,
    /// `currentInputWatermark` (milliseconds; i64::MIN before the first).
    pub current_input_watermark: std::sync::atomic::AtomicI64,
}

impl TaskMetrics {
    pub fn new() -> Self {
        TaskMetrics {
            current_input_watermark: std::sync::atomic::AtomicI64::new(i64::MIN),
            ..Default::default()
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The keyed-state latency histograms registered so far.
    pub fn state_latencies(&self) -> Vec<Arc<LatencyHistogram>> {
        self.state_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
