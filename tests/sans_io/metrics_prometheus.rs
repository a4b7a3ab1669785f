//! ferry's `/metrics` text read back by the reference parser, Python's
//! `prometheus_client.parser.text_string_to_metric_families` (`docs/OPERATIONS.md`
//! "Metrics": valid Prometheus text format 0.0.4, HELP and TYPE on every family).
//!
//! A populated registry is rendered, piped to `python3`, and the families, their types
//! and every sample value the parser saw are compared with what was counted. The test
//! fails, never skips, when python3 or prometheus_client is missing: `scripts/test.sh`
//! installs it (`python3 -m pip install prometheus-client`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry::dispatch::outcome::{AttemptResult, PoolFailureReason};
use ferry::metrics::{
    render, DropReason, Exposition, PoolGauges, PoolMetrics, PoolSeries, ProcessStats, Settlement,
    SourceGauges, SourceMetrics, SourceSeries,
};
use serde_json::Value;

const INSTALL: &str = "install it with `python3 -m pip install prometheus-client` \
    (or Debian's python3-prometheus-client); scripts/test.sh does this";

/// Parses stdin with prometheus_client and prints the families as JSON.
const PARSE: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print("prometheus_client is missing: %s" % e, file=sys.stderr)
    sys.exit(3)
families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": f.name,
        "type": f.type,
        "help": f.documentation,
        "samples": [[s.name, s.labels, s.value] for s in f.samples],
    })
json.dump(families, sys.stdout)
"#;

/// A sample as the parser reports it: name and labels.
type Key = (String, BTreeMap<String, String>);

struct Parsed {
    /// Family name → (type, help).
    families: Vec<(String, String, String)>,
    samples: BTreeMap<Key, f64>,
}

fn parse_with_python(text: &str) -> Parsed {
    let mut child = match Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run python3 ({e}): this test needs python3 and prometheus_client; {INSTALL}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!("{}; {INSTALL}", stderr.trim());
    }
    assert!(
        output.status.success(),
        "prometheus_client rejected the text ({}):\n{stderr}\n--- text ---\n{text}",
        output.status
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut families = Vec::new();
    let mut samples = BTreeMap::new();
    for family in json.as_array().unwrap() {
        families.push((
            family["name"].as_str().unwrap().to_string(),
            family["type"].as_str().unwrap().to_string(),
            family["help"].as_str().unwrap().to_string(),
        ));
        for sample in family["samples"].as_array().unwrap() {
            let name = sample[0].as_str().unwrap().to_string();
            let labels = sample[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let value = sample[2].as_f64().unwrap();
            let previous = samples.insert((name.clone(), labels), value);
            assert!(previous.is_none(), "duplicate series of {name}");
        }
    }
    Parsed { families, samples }
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (name.to_string(), labels)
}

#[test]
fn prometheus_client_reads_every_family_and_value() {
    // A Redis source with an awkward name, an AMQP source, two pools.
    let odd = "news \"live\"\\n\nfeed";
    let mut news = SourceMetrics::default();
    for _ in 0..10 {
        news.on_received();
    }
    news.on_dropped(DropReason::BacklogFull);
    news.on_dropped(DropReason::Paused);
    news.on_dropped(DropReason::Paused);
    news.on_dropped_many(DropReason::Shutdown, 3);
    for _ in 0..4 {
        news.on_attempt(AttemptResult::Ok);
        news.on_settled(Settlement::Acked);
    }
    news.on_attempt(AttemptResult::Retryable);
    news.on_attempt(AttemptResult::Retryable);
    news.on_settled(Settlement::Discarded);
    news.on_reconnect();

    let mut mail = SourceMetrics::default();
    for _ in 0..7 {
        mail.on_received();
    }
    mail.on_dropped(DropReason::TooLarge);
    mail.on_attempt(AttemptResult::Ok);
    mail.on_attempt(AttemptResult::Permanent);
    mail.on_attempt(AttemptResult::Timeout);
    mail.on_settled(Settlement::Acked);
    mail.on_settled(Settlement::DeadLettered);
    mail.on_settled(Settlement::Retried);
    mail.on_reconnect();
    mail.on_reconnect();

    let mut php = PoolMetrics::default();
    php.on_failure(PoolFailureReason::Overloaded);
    php.on_failure(PoolFailureReason::ConnectTimeout);
    php.on_stderr_lines(12);
    php.on_process_restart();
    php.on_failure(PoolFailureReason::NoProcess);
    for ms in [1, 7, 7, 40, 900, 45_000] {
        php.on_job_finished(Duration::from_millis(ms));
    }
    let mut mailers = PoolMetrics::default();
    mailers.on_failure(PoolFailureReason::ScriptUnknown);
    mailers.on_job_finished(Duration::from_secs(400));

    let process = ProcessStats::read();
    let sources = [
        SourceSeries {
            name: odd,
            pool: "php",
            metrics: &news,
            gauges: SourceGauges {
                backlog: 5,
                unacked: 0,
                connected: true,
            },
        },
        SourceSeries {
            name: "mail",
            pool: "mailers",
            metrics: &mail,
            gauges: SourceGauges {
                backlog: 0,
                unacked: 3,
                connected: false,
            },
        },
    ];
    let pools = [
        PoolSeries {
            name: "php",
            metrics: &php,
            gauges: PoolGauges {
                in_flight: 4,
                circuit_open: false,
                processes: Some(3),
            },
        },
        PoolSeries {
            name: "mailers",
            metrics: &mailers,
            gauges: PoolGauges {
                in_flight: 0,
                circuit_open: true,
                processes: None,
            },
        },
    ];
    let mut text = String::new();
    render(
        &mut text,
        &Exposition {
            version: env!("CARGO_PKG_VERSION"),
            sources: &sources,
            pools: &pools,
            process: &process,
        },
    );
    let parsed = parse_with_python(&text);

    // Every family, with its type, in order. The parser names a counter family without
    // its `_total` suffix (the OpenMetrics convention); its samples keep it.
    let families: Vec<(&str, &str)> = parsed
        .families
        .iter()
        .map(|(name, kind, _)| (name.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        families,
        [
            ("ferry_messages_received", "counter"),
            ("ferry_messages_dropped", "counter"),
            ("ferry_attempts", "counter"),
            ("ferry_messages_settled", "counter"),
            ("ferry_pool_failures", "counter"),
            ("ferry_reconnects", "counter"),
            ("ferry_worker_stderr_lines", "counter"),
            ("ferry_pool_process_restarts", "counter"),
            ("ferry_jobs_in_flight", "gauge"),
            ("ferry_backlog_messages", "gauge"),
            ("ferry_unacked_messages", "gauge"),
            ("ferry_source_connected", "gauge"),
            ("ferry_pool_circuit_open", "gauge"),
            ("ferry_pool_processes", "gauge"),
            ("ferry_build_info", "gauge"),
            ("ferry_job_duration_seconds", "histogram"),
            ("process_cpu_seconds", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ]
    );
    for (name, _, help) in &parsed.families {
        assert!(!help.is_empty(), "{name} has no HELP");
    }

    let expected: Vec<(Key, f64)> = vec![
        (
            key("ferry_messages_received_total", &[("source", odd)]),
            10.0,
        ),
        (
            key("ferry_messages_received_total", &[("source", "mail")]),
            7.0,
        ),
        (
            key(
                "ferry_messages_dropped_total",
                &[("source", odd), ("reason", "backlog_full")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_messages_dropped_total",
                &[("source", odd), ("reason", "paused")],
            ),
            2.0,
        ),
        (
            key(
                "ferry_messages_dropped_total",
                &[("source", odd), ("reason", "shutdown")],
            ),
            3.0,
        ),
        (
            key(
                "ferry_messages_dropped_total",
                &[("source", odd), ("reason", "too_large")],
            ),
            0.0,
        ),
        (
            key(
                "ferry_messages_dropped_total",
                &[("source", "mail"), ("reason", "too_large")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_attempts_total",
                &[("source", odd), ("pool", "php"), ("result", "ok")],
            ),
            4.0,
        ),
        (
            key(
                "ferry_attempts_total",
                &[("source", odd), ("pool", "php"), ("result", "retryable")],
            ),
            2.0,
        ),
        (
            key(
                "ferry_attempts_total",
                &[
                    ("source", "mail"),
                    ("pool", "mailers"),
                    ("result", "permanent"),
                ],
            ),
            1.0,
        ),
        (
            key(
                "ferry_attempts_total",
                &[
                    ("source", "mail"),
                    ("pool", "mailers"),
                    ("result", "timeout"),
                ],
            ),
            1.0,
        ),
        (
            key(
                "ferry_messages_settled_total",
                &[("source", odd), ("outcome", "acked")],
            ),
            4.0,
        ),
        (
            key(
                "ferry_messages_settled_total",
                &[("source", odd), ("outcome", "discarded")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_messages_settled_total",
                &[("source", "mail"), ("outcome", "dead_lettered")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_messages_settled_total",
                &[("source", "mail"), ("outcome", "retried")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_pool_failures_total",
                &[("pool", "php"), ("reason", "overloaded")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_pool_failures_total",
                &[("pool", "php"), ("reason", "connect_timeout")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_pool_failures_total",
                &[("pool", "mailers"), ("reason", "script_unknown")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_pool_failures_total",
                &[("pool", "mailers"), ("reason", "overloaded")],
            ),
            0.0,
        ),
        (key("ferry_reconnects_total", &[("source", odd)]), 1.0),
        (key("ferry_reconnects_total", &[("source", "mail")]), 2.0),
        (
            key("ferry_worker_stderr_lines_total", &[("pool", "php")]),
            12.0,
        ),
        (
            key("ferry_worker_stderr_lines_total", &[("pool", "mailers")]),
            0.0,
        ),
        (key("ferry_jobs_in_flight", &[("pool", "php")]), 4.0),
        (key("ferry_backlog_messages", &[("source", odd)]), 5.0),
        (key("ferry_unacked_messages", &[("source", "mail")]), 3.0),
        (key("ferry_source_connected", &[("source", odd)]), 1.0),
        (key("ferry_source_connected", &[("source", "mail")]), 0.0),
        (key("ferry_pool_circuit_open", &[("pool", "php")]), 0.0),
        (key("ferry_pool_circuit_open", &[("pool", "mailers")]), 1.0),
        (
            key("ferry_pool_process_restarts_total", &[("pool", "php")]),
            1.0,
        ),
        (key("ferry_pool_processes", &[("pool", "php")]), 3.0),
        (
            key(
                "ferry_pool_failures_total",
                &[("pool", "php"), ("reason", "no_process")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))],
            ),
            1.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "0.005")],
            ),
            1.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "0.01")],
            ),
            3.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "0.05")],
            ),
            4.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "1")],
            ),
            5.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "30")],
            ),
            5.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "60")],
            ),
            6.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "php"), ("le", "+Inf")],
            ),
            6.0,
        ),
        (
            key("ferry_job_duration_seconds_count", &[("pool", "php")]),
            6.0,
        ),
        (
            key("ferry_job_duration_seconds_sum", &[("pool", "php")]),
            45.955,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "mailers"), ("le", "300")],
            ),
            0.0,
        ),
        (
            key(
                "ferry_job_duration_seconds_bucket",
                &[("pool", "mailers"), ("le", "+Inf")],
            ),
            1.0,
        ),
        (
            key("ferry_job_duration_seconds_sum", &[("pool", "mailers")]),
            400.0,
        ),
    ];
    for (key, value) in &expected {
        assert_eq!(
            parsed.samples.get(key),
            Some(value),
            "{key:?}\n--- text ---\n{text}"
        );
    }

    // Series counts per family: sources × closed label set, pools × buckets.
    let count = |name: &str| parsed.samples.keys().filter(|(n, _)| n == name).count();
    assert_eq!(count("ferry_messages_dropped_total"), 2 * 4);
    assert_eq!(count("ferry_attempts_total"), 2 * 4);
    assert_eq!(count("ferry_messages_settled_total"), 2 * 4);
    assert_eq!(count("ferry_pool_failures_total"), 2 * 11);
    // Only a spawned pool has process series.
    assert_eq!(count("ferry_pool_process_restarts_total"), 1);
    assert_eq!(count("ferry_pool_processes"), 1);
    assert_eq!(count("ferry_job_duration_seconds_bucket"), 2 * 15);

    // The process metrics of this very process, as read from /proc.
    let process_value = |name: &str| parsed.samples.get(&key(name, &[])).copied();
    assert!(process_value("process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(process_value("process_open_fds").is_some_and(|v| v >= 3.0));
    assert!(process_value("process_max_fds").is_some_and(|v| v >= 3.0));
    assert!(process_value("process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
    assert!(process_value("process_start_time_seconds").is_some_and(|v| v > 1e9));
}
