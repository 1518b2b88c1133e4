//! The generation rate of one `nexmark` source subtask: events generated into batches of 1024 and
//! dropped, nothing downstream (`cargo bench --bench nexmark_source`; `EVENTS=<n>` sets the count,
//! default 5 M). Reported in docs/performance.md, "Nexmark".

use std::sync::Arc;
use std::time::Instant;

use streamsql::engine::connectors::nexmark::{NexmarkConfig, NexmarkSourceFactory};
use streamsql::engine::connectors::{SourceFactory, SourceStatus};
use streamsql::engine::metrics::TaskMetrics;
use streamsql::engine::operator::{Output, TaskContext};

fn main() {
    let events: i64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let config = NexmarkConfig {
        num_events: events,
        first_event_rate: 10_000_000,
        ..NexmarkConfig::default()
    };
    let ctx = TaskContext {
        operator_id: 1,
        operator_name: "nexmark".into(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: 128,
        metrics: Arc::new(TaskMetrics::new()),
        state: Default::default(),
    };
    for round in 1..=3 {
        let mut source = NexmarkSourceFactory::new(config.clone(), 0)
            .create(&ctx)
            .expect("the source starts");
        let started = Instant::now();
        let mut n = 0usize;
        let mut out = Output::new();
        loop {
            out.changes.clear();
            let status = source
                .poll(&mut out, 1024)
                .expect("generation does not fail");
            n += out.changes.len();
            if status == SourceStatus::Finished {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {n} events in {secs:.3} s: {:.2} M events/s",
            n as f64 / secs / 1e6
        );
    }
}
