//! Counting a metric never allocates, and a scrape rendered into a reused buffer
//! allocates nothing once the buffer has grown to size (`docs/OPERATIONS.md` "Metrics"; the
//! daemon counts on its hot path and renders on every `GET /metrics`).

use std::time::Duration;

use ferry::dispatch::outcome::{AttemptResult, PoolFailureReason};
use ferry::metrics::{
    render, DropReason, Exposition, PoolGauges, PoolMetrics, PoolSeries, ProcessStats, Settlement,
    SourceGauges, SourceMetrics, SourceSeries,
};

use crate::alloc_count::allocations;

#[test]
fn counting_and_rerendering_allocate_nothing() {
    let mut source = SourceMetrics::default();
    let mut pool = PoolMetrics::default();
    let before = allocations();
    for i in 0..10_000u64 {
        source.on_received();
        source.on_dropped(DropReason::ALL[(i % 4) as usize]);
        source.on_attempt(AttemptResult::Retryable);
        source.on_settled(Settlement::ALL[(i % 4) as usize]);
        source.on_reconnect();
        pool.on_failure(PoolFailureReason::Overloaded);
        pool.on_stderr_lines(2);
        pool.on_job_finished(Duration::from_micros(i * 997));
    }
    assert_eq!(allocations() - before, 0, "counting allocated");

    let sources = [SourceSeries {
        name: "orders \"eu\"",
        pool: "php",
        metrics: &source,
        gauges: SourceGauges {
            backlog: 3,
            unacked: 1,
            connected: true,
        },
    }];
    let pools = [PoolSeries {
        name: "php",
        metrics: &pool,
        gauges: PoolGauges {
            in_flight: 2,
            circuit_open: false,
            processes: Some(4),
        },
    }];
    let process = ProcessStats {
        cpu_seconds: Some(12.5),
        resident_memory_bytes: Some(3 << 20),
        open_fds: Some(9),
        max_fds: Some(1 << 20),
        start_time_seconds: Some(1_700_000_000.25),
    };
    let exposition = Exposition {
        version: "0.1.0",
        sources: &sources,
        pools: &pools,
        process: &process,
    };
    let mut out = String::new();
    render(&mut out, &exposition);
    let first = out.clone();
    let before = allocations();
    for _ in 0..100 {
        out.clear();
        render(&mut out, &exposition);
    }
    assert_eq!(allocations() - before, 0, "re-rendering allocated");
    assert_eq!(out, first);
}
