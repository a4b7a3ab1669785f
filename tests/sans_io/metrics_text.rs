//! The Prometheus text of ferry's metrics, byte for byte (`docs/OPERATIONS.md`
//! "Metrics"): a
//! small registry rendered against a golden text, label escaping, cumulative histogram
//! buckets, and a removed source's series disappearing.

use std::time::Duration;

use ferry::dispatch::outcome::{AttemptResult, PoolFailureReason};
use ferry::metrics::{
    render, DropReason, Exposition, PoolGauges, PoolMetrics, PoolSeries, ProcessStats, Settlement,
    SourceGauges, SourceMetrics, SourceSeries,
};

fn rendered(
    sources: &[SourceSeries<'_>],
    pools: &[PoolSeries<'_>],
    process: &ProcessStats,
) -> String {
    let mut out = String::new();
    render(
        &mut out,
        &Exposition {
            version: "1.2.3",
            sources,
            pools,
            process,
        },
    );
    out
}

const GOLDEN: &str = r#"# HELP ferry_messages_received_total Messages received from the broker, whatever became of them.
# TYPE ferry_messages_received_total counter
ferry_messages_received_total{source="orders"} 5
# HELP ferry_messages_dropped_total Received messages dropped before reaching a worker, by reason.
# TYPE ferry_messages_dropped_total counter
ferry_messages_dropped_total{source="orders",reason="backlog_full"} 1
ferry_messages_dropped_total{source="orders",reason="paused"} 0
ferry_messages_dropped_total{source="orders",reason="shutdown"} 0
ferry_messages_dropped_total{source="orders",reason="too_large"} 0
# HELP ferry_attempts_total Attempts at delivering a message to a worker, by result.
# TYPE ferry_attempts_total counter
ferry_attempts_total{source="orders",pool="php",result="ok"} 3
ferry_attempts_total{source="orders",pool="php",result="retryable"} 0
ferry_attempts_total{source="orders",pool="php",result="permanent"} 0
ferry_attempts_total{source="orders",pool="php",result="timeout"} 1
# HELP ferry_messages_settled_total Deliveries settled, one per delivery, by outcome.
# TYPE ferry_messages_settled_total counter
ferry_messages_settled_total{source="orders",outcome="acked"} 3
ferry_messages_settled_total{source="orders",outcome="retried"} 1
ferry_messages_settled_total{source="orders",outcome="dead_lettered"} 0
ferry_messages_settled_total{source="orders",outcome="discarded"} 0
# HELP ferry_pool_failures_total Failures of a pool (not of a message), by reason.
# TYPE ferry_pool_failures_total counter
ferry_pool_failures_total{pool="php",reason="connect_refused"} 2
ferry_pool_failures_total{pool="php",reason="socket_not_found"} 0
ferry_pool_failures_total{pool="php",reason="backlog_full"} 0
ferry_pool_failures_total{pool="php",reason="connect_timeout"} 0
ferry_pool_failures_total{pool="php",reason="connect_error"} 0
ferry_pool_failures_total{pool="php",reason="overloaded"} 0
ferry_pool_failures_total{pool="php",reason="cant_mpx_conn"} 0
ferry_pool_failures_total{pool="php",reason="unknown_role"} 0
ferry_pool_failures_total{pool="php",reason="script_unknown"} 0
ferry_pool_failures_total{pool="php",reason="access_denied"} 0
ferry_pool_failures_total{pool="php",reason="no_process"} 0
# HELP ferry_reconnects_total Broker connections lost and reconnected.
# TYPE ferry_reconnects_total counter
ferry_reconnects_total{source="orders"} 0
# HELP ferry_worker_stderr_lines_total Lines workers wrote to FCGI_STDERR.
# TYPE ferry_worker_stderr_lines_total counter
ferry_worker_stderr_lines_total{pool="php"} 7
# HELP ferry_pool_process_restarts_total Worker processes of a spawned pool started again after one ended or failed to start.
# TYPE ferry_pool_process_restarts_total counter
ferry_pool_process_restarts_total{pool="php"} 2
# HELP ferry_jobs_in_flight Requests written to a worker and not yet answered.
# TYPE ferry_jobs_in_flight gauge
ferry_jobs_in_flight{pool="php"} 2
# HELP ferry_backlog_messages Messages waiting in ferry for a worker.
# TYPE ferry_backlog_messages gauge
ferry_backlog_messages{source="orders"} 4
# HELP ferry_unacked_messages Deliveries taken from the broker and not yet settled.
# TYPE ferry_unacked_messages gauge
ferry_unacked_messages{source="orders"} 6
# HELP ferry_source_connected 1 when the source's broker session is up, else 0.
# TYPE ferry_source_connected gauge
ferry_source_connected{source="orders"} 1
# HELP ferry_pool_circuit_open 1 when the pool's circuit is open (jobs wait in ferry), else 0.
# TYPE ferry_pool_circuit_open gauge
ferry_pool_circuit_open{pool="php"} 0
# HELP ferry_pool_processes Worker processes of a spawned pool running now.
# TYPE ferry_pool_processes gauge
ferry_pool_processes{pool="php"} 3
# HELP ferry_build_info Always 1; the version label says which ferry runs.
# TYPE ferry_build_info gauge
ferry_build_info{version="1.2.3"} 1
# HELP ferry_job_duration_seconds Seconds from a request written to its END_REQUEST.
# TYPE ferry_job_duration_seconds histogram
ferry_job_duration_seconds_bucket{pool="php",le="0.005"} 0
ferry_job_duration_seconds_bucket{pool="php",le="0.01"} 1
ferry_job_duration_seconds_bucket{pool="php",le="0.025"} 1
ferry_job_duration_seconds_bucket{pool="php",le="0.05"} 1
ferry_job_duration_seconds_bucket{pool="php",le="0.1"} 1
ferry_job_duration_seconds_bucket{pool="php",le="0.25"} 1
ferry_job_duration_seconds_bucket{pool="php",le="0.5"} 2
ferry_job_duration_seconds_bucket{pool="php",le="1"} 2
ferry_job_duration_seconds_bucket{pool="php",le="2.5"} 2
ferry_job_duration_seconds_bucket{pool="php",le="5"} 2
ferry_job_duration_seconds_bucket{pool="php",le="10"} 2
ferry_job_duration_seconds_bucket{pool="php",le="30"} 3
ferry_job_duration_seconds_bucket{pool="php",le="60"} 3
ferry_job_duration_seconds_bucket{pool="php",le="300"} 3
ferry_job_duration_seconds_bucket{pool="php",le="+Inf"} 4
ferry_job_duration_seconds_sum{pool="php"} 520.508
ferry_job_duration_seconds_count{pool="php"} 4
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.25
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4194304
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 12
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1024
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1700000000.5
"#;

#[test]
fn a_small_registry_renders_exactly() {
    let mut orders = SourceMetrics::default();
    for _ in 0..5 {
        orders.on_received();
    }
    orders.on_dropped(DropReason::BacklogFull);
    for _ in 0..3 {
        orders.on_attempt(AttemptResult::Ok);
        orders.on_settled(Settlement::Acked);
    }
    orders.on_attempt(AttemptResult::Timeout);
    orders.on_settled(Settlement::Retried);

    let mut php = PoolMetrics::default();
    php.on_failure(PoolFailureReason::ConnectRefused);
    php.on_failure(PoolFailureReason::ConnectRefused);
    php.on_stderr_lines(7);
    php.on_process_restart();
    php.on_process_restart();
    php.on_job_finished(Duration::from_millis(8));
    php.on_job_finished(Duration::from_millis(500));
    php.on_job_finished(Duration::from_secs(20));
    php.on_job_finished(Duration::from_secs(500));

    let process = ProcessStats {
        cpu_seconds: Some(1.25),
        resident_memory_bytes: Some(4 << 20),
        open_fds: Some(12),
        max_fds: Some(1024),
        start_time_seconds: Some(1_700_000_000.5),
    };
    let sources = [SourceSeries {
        name: "orders",
        pool: "php",
        metrics: &orders,
        gauges: SourceGauges {
            backlog: 4,
            unacked: 6,
            connected: true,
        },
    }];
    let pools = [PoolSeries {
        name: "php",
        metrics: &php,
        gauges: PoolGauges {
            in_flight: 2,
            circuit_open: false,
            processes: Some(3),
        },
    }];
    let text = rendered(&sources, &pools, &process);
    if text != GOLDEN {
        for (got, want) in text.lines().zip(GOLDEN.lines()) {
            assert_eq!(got, want);
        }
        assert_eq!(text.lines().count(), GOLDEN.lines().count());
    }
    assert_eq!(text, GOLDEN);
}

#[test]
fn an_empty_registry_still_has_every_family() {
    let text = rendered(&[], &[], &ProcessStats::default());
    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .collect();
    assert_eq!(
        families,
        [
            "ferry_messages_received_total counter",
            "ferry_messages_dropped_total counter",
            "ferry_attempts_total counter",
            "ferry_messages_settled_total counter",
            "ferry_pool_failures_total counter",
            "ferry_reconnects_total counter",
            "ferry_worker_stderr_lines_total counter",
            "ferry_pool_process_restarts_total counter",
            "ferry_jobs_in_flight gauge",
            "ferry_backlog_messages gauge",
            "ferry_unacked_messages gauge",
            "ferry_source_connected gauge",
            "ferry_pool_circuit_open gauge",
            "ferry_pool_processes gauge",
            "ferry_build_info gauge",
            "ferry_job_duration_seconds histogram",
            "process_cpu_seconds_total counter",
            "process_resident_memory_bytes gauge",
            "process_open_fds gauge",
            "process_max_fds gauge",
            "process_start_time_seconds gauge",
        ]
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("# HELP ")).count(),
        21
    );
    // The only sample without a source or pool: build info.
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples, [r#"ferry_build_info{version="1.2.3"} 1"#]);
}

#[test]
fn label_values_are_escaped() {
    let metrics = SourceMetrics::default();
    let pool = PoolMetrics::default();
    let name = "we\"ird\\name\nx";
    let sources = [SourceSeries {
        name,
        pool: "p\"1",
        metrics: &metrics,
        gauges: SourceGauges::default(),
    }];
    let pools = [PoolSeries {
        name: "p\"1",
        metrics: &pool,
        gauges: PoolGauges::default(),
    }];
    let text = rendered(&sources, &pools, &ProcessStats::default());
    assert!(text.contains("ferry_messages_received_total{source=\"we\\\"ird\\\\name\\nx\"} 0\n"));
    assert!(text.contains(
        "ferry_attempts_total{source=\"we\\\"ird\\\\name\\nx\",pool=\"p\\\"1\",result=\"ok\"} 0\n"
    ));
    assert!(text.contains("ferry_jobs_in_flight{pool=\"p\\\"1\"} 0\n"));
    // No raw newline from a label value ever splits a line.
    for line in text.lines() {
        assert!(
            line.starts_with('#') || line.starts_with("ferry_"),
            "{line:?}"
        );
    }
}

#[test]
fn histogram_buckets_are_cumulative() {
    let mut pool = PoolMetrics::default();
    // One observation per finite bucket, at its bound (bounds are inclusive), and two
    // beyond the last.
    let bounds_ms = [
        5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000,
    ];
    for ms in bounds_ms {
        pool.on_job_finished(Duration::from_millis(ms));
    }
    pool.on_job_finished(Duration::from_millis(300_001));
    pool.on_job_finished(Duration::from_secs(3600));
    let pools = [PoolSeries {
        name: "php",
        metrics: &pool,
        gauges: PoolGauges::default(),
    }];
    let text = rendered(&[], &pools, &ProcessStats::default());
    let buckets: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ferry_job_duration_seconds_bucket{pool=\"php\",le=\""))
        .map(|rest| {
            let (le, count) = rest.split_once("\"} ").unwrap();
            (le.to_string(), count.parse().unwrap())
        })
        .collect();
    assert_eq!(buckets.len(), 15);
    for (i, (_, count)) in buckets.iter().enumerate().take(14) {
        assert_eq!(*count, i as u64 + 1, "bucket {i}: {buckets:?}");
    }
    assert_eq!(buckets[14], ("+Inf".to_string(), 16));
    assert!(text.contains("ferry_job_duration_seconds_count{pool=\"php\"} 16\n"));
    // 5+10+25+50+100+250+500+1000+2500+5000+10000+30000+60000+300000 ms = 409440 ms,
    // plus 300001 ms and 3600 s.
    assert!(text.contains("ferry_job_duration_seconds_sum{pool=\"php\"} 4309.441\n"));
}

#[test]
fn a_removed_source_has_no_series() {
    let kept = SourceMetrics::default();
    let mut removed = SourceMetrics::default();
    removed.on_received();
    let series = |name, metrics| SourceSeries {
        name,
        pool: "php",
        metrics,
        gauges: SourceGauges::default(),
    };
    let before = rendered(
        &[series("kept", &kept), series("gone", &removed)],
        &[],
        &ProcessStats::default(),
    );
    assert!(before.contains("source=\"gone\""));
    let after = rendered(&[series("kept", &kept)], &[], &ProcessStats::default());
    assert!(!after.contains("gone"));
    assert!(after.contains("ferry_messages_received_total{source=\"kept\"} 0\n"));
}
