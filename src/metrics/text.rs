//! The Prometheus text exposition format 0.0.4 of ferry's metrics (`docs/OPERATIONS.md`
//! "Metrics", `GET /metrics`; served as `text/plain; version=0.0.4; charset=utf-8`).
//!
//! [`render`] appends every family, in a fixed order, to a caller-owned `String`, so a
//! scrape costs one buffer that the control endpoint can keep and reuse. Every family has
//! its `# HELP` and `# TYPE` lines even when it has no series yet (no source configured,
//! process metrics unreadable). Closed label sets are rendered in full, zeros included,
//! so `rate()` sees a series from its first scrape rather than from its first event.
//!
//! # Layout
//! ```text
//! # HELP ferry_messages_received_total Messages received from the broker.
//! # TYPE ferry_messages_received_total counter
//! ferry_messages_received_total{source="orders"} 3
//! ```
//! Label values are escaped as the format requires (`\` → `\\`, `"` → `\"`, newline →
//! `\n`); names and label names are fixed here and need no escaping.

use std::fmt::Write as _;

use super::histogram::BUCKETS;
use super::labels::{ATTEMPT_RESULTS, POOL_FAILURE_REASONS};
use super::{
    DisconnectReason, DropReason, EndpointMetrics, PoolMetrics, ProcessStats, Settlement,
    SourceMetrics,
};

/// The gauges of one source, read from the runtime's state at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceGauges {
    /// Messages of this source waiting in its pool's queue (`ferry_backlog_messages`).
    pub backlog: u64,
    /// Deliveries taken from the broker and not yet settled (`ferry_unacked_messages`).
    pub unacked: u64,
    /// The broker session is up (`ferry_source_connected`, 1 or 0).
    pub connected: bool,
}

/// One source as rendered: its name, its pool's name, its counters and gauges.
#[derive(Debug, Clone, Copy)]
pub struct SourceSeries<'a> {
    /// The `source` label.
    pub name: &'a str,
    /// The `pool` label of `ferry_attempts_total`: the pool this source feeds.
    pub pool: &'a str,
    /// Its counters.
    pub metrics: &'a SourceMetrics,
    /// Its gauges.
    pub gauges: SourceGauges,
}

/// The gauges of one pool, read from the runtime's state at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolGauges {
    /// Requests written and not yet answered (`ferry_jobs_in_flight`).
    pub in_flight: u64,
    /// The pool's circuit is open (`ferry_pool_circuit_open`, 1 or 0).
    pub circuit_open: bool,
    /// Live worker processes of a spawned pool (`ferry_pool_processes`); `None` for a
    /// pool at an `address`, which has no series in the two process families.
    pub processes: Option<u64>,
}

/// One pool as rendered.
#[derive(Debug, Clone, Copy)]
pub struct PoolSeries<'a> {
    /// The `pool` label.
    pub name: &'a str,
    /// Its counters and histogram.
    pub metrics: &'a PoolMetrics,
    /// Its gauges.
    pub gauges: PoolGauges,
}

/// A RESP endpoint source's own series (`ferry_endpoint_*`).
#[derive(Debug, Clone, Copy)]
pub struct EndpointSeries<'a> {
    /// The `source` label.
    pub name: &'a str,
    /// Clients connected now (`ferry_endpoint_clients`).
    pub clients: u64,
    /// Its counters.
    pub metrics: &'a EndpointMetrics,
}

/// Appends the RESP endpoint families (after [`render`]); HELP and TYPE are written even
/// when no endpoint is configured.
pub fn render_endpoints(out: &mut String, endpoints: &[EndpointSeries<'_>]) {
    family(
        out,
        "ferry_endpoint_clients",
        Kind::Gauge,
        "Redis clients connected to a RESP endpoint source.",
    );
    for e in endpoints {
        sample(
            out,
            "ferry_endpoint_clients",
            &[("source", e.name)],
            Value::Int(e.clients),
        );
    }
    family(
        out,
        "ferry_endpoint_disconnects_total",
        Kind::Counter,
        "RESP endpoint clients closed by ferry, by reason.",
    );
    for e in endpoints {
        for reason in DisconnectReason::ALL {
            let labels = [("source", e.name), ("reason", reason.as_str())];
            let value = Value::Int(e.metrics.disconnects(reason));
            sample(out, "ferry_endpoint_disconnects_total", &labels, value);
        }
    }
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Copy)]
pub struct Exposition<'a> {
    /// `ferry_build_info{version}` (the crate version).
    pub version: &'a str,
    /// The sources configured now; a removed source is simply absent.
    pub sources: &'a [SourceSeries<'a>],
    /// The pools configured now.
    pub pools: &'a [PoolSeries<'a>],
    /// The `process_*` metrics, as [`ProcessStats::read`] found them.
    pub process: &'a ProcessStats,
}

/// The metric kinds of the 0.0.4 format that ferry uses.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: counts are exact integers, the rest floating point.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// Appends every family of `exposition` to `out`.
pub fn render(out: &mut String, exposition: &Exposition<'_>) {
    let sources = exposition.sources;
    let pools = exposition.pools;

    family(
        out,
        "ferry_messages_received_total",
        Kind::Counter,
        "Messages received from the broker, whatever became of them.",
    );
    for s in sources {
        let value = Value::Int(s.metrics.received());
        sample(
            out,
            "ferry_messages_received_total",
            &[("source", s.name)],
            value,
        );
    }

    family(
        out,
        "ferry_messages_dropped_total",
        Kind::Counter,
        "Received messages dropped before reaching a worker, by reason.",
    );
    for s in sources {
        for reason in DropReason::ALL {
            let labels = [("source", s.name), ("reason", reason.as_str())];
            let value = Value::Int(s.metrics.dropped(reason));
            sample(out, "ferry_messages_dropped_total", &labels, value);
        }
    }

    family(
        out,
        "ferry_attempts_total",
        Kind::Counter,
        "Attempts at delivering a message to a worker, by result.",
    );
    for s in sources {
        for result in ATTEMPT_RESULTS {
            let labels = [
                ("source", s.name),
                ("pool", s.pool),
                ("result", result.as_str()),
            ];
            let value = Value::Int(s.metrics.attempts(result));
            sample(out, "ferry_attempts_total", &labels, value);
        }
    }

    family(
        out,
        "ferry_messages_settled_total",
        Kind::Counter,
        "Deliveries settled, one per delivery, by outcome.",
    );
    for s in sources {
        for outcome in Settlement::ALL {
            let labels = [("source", s.name), ("outcome", outcome.as_str())];
            let value = Value::Int(s.metrics.settled(outcome));
            sample(out, "ferry_messages_settled_total", &labels, value);
        }
    }

    family(
        out,
        "ferry_pool_failures_total",
        Kind::Counter,
        "Failures of a pool (not of a message), by reason.",
    );
    for p in pools {
        for reason in POOL_FAILURE_REASONS {
            let labels = [("pool", p.name), ("reason", reason.as_str())];
            let value = Value::Int(p.metrics.failures(reason));
            sample(out, "ferry_pool_failures_total", &labels, value);
        }
    }

    family(
        out,
        "ferry_reconnects_total",
        Kind::Counter,
        "Broker connections lost and reconnected.",
    );
    for s in sources {
        let value = Value::Int(s.metrics.reconnects());
        sample(out, "ferry_reconnects_total", &[("source", s.name)], value);
    }

    family(
        out,
        "ferry_worker_stderr_lines_total",
        Kind::Counter,
        "Lines workers wrote to FCGI_STDERR.",
    );
    for p in pools {
        let value = Value::Int(p.metrics.stderr_lines());
        sample(
            out,
            "ferry_worker_stderr_lines_total",
            &[("pool", p.name)],
            value,
        );
    }

    family(
        out,
        "ferry_pool_process_restarts_total",
        Kind::Counter,
        "Worker processes of a spawned pool started again after one ended or failed to start.",
    );
    for p in pools.iter().filter(|p| p.gauges.processes.is_some()) {
        let value = Value::Int(p.metrics.process_restarts());
        let labels = [("pool", p.name)];
        sample(out, "ferry_pool_process_restarts_total", &labels, value);
    }

    family(
        out,
        "ferry_jobs_in_flight",
        Kind::Gauge,
        "Requests written to a worker and not yet answered.",
    );
    for p in pools {
        let value = Value::Int(p.gauges.in_flight);
        sample(out, "ferry_jobs_in_flight", &[("pool", p.name)], value);
    }

    family(
        out,
        "ferry_backlog_messages",
        Kind::Gauge,
        "Messages waiting in ferry for a worker.",
    );
    for s in sources {
        let value = Value::Int(s.gauges.backlog);
        sample(out, "ferry_backlog_messages", &[("source", s.name)], value);
    }

    family(
        out,
        "ferry_unacked_messages",
        Kind::Gauge,
        "Deliveries taken from the broker and not yet settled.",
    );
    for s in sources {
        let value = Value::Int(s.gauges.unacked);
        sample(out, "ferry_unacked_messages", &[("source", s.name)], value);
    }

    family(
        out,
        "ferry_source_connected",
        Kind::Gauge,
        "1 when the source's broker session is up, else 0.",
    );
    for s in sources {
        let value = Value::Int(u64::from(s.gauges.connected));
        sample(out, "ferry_source_connected", &[("source", s.name)], value);
    }

    family(
        out,
        "ferry_pool_circuit_open",
        Kind::Gauge,
        "1 when the pool's circuit is open (jobs wait in ferry), else 0.",
    );
    for p in pools {
        let value = Value::Int(u64::from(p.gauges.circuit_open));
        sample(out, "ferry_pool_circuit_open", &[("pool", p.name)], value);
    }

    family(
        out,
        "ferry_pool_processes",
        Kind::Gauge,
        "Worker processes of a spawned pool running now.",
    );
    for p in pools {
        if let Some(processes) = p.gauges.processes {
            let value = Value::Int(processes);
            sample(out, "ferry_pool_processes", &[("pool", p.name)], value);
        }
    }

    family(
        out,
        "ferry_build_info",
        Kind::Gauge,
        "Always 1; the version label says which ferry runs.",
    );
    let labels = [("version", exposition.version)];
    sample(out, "ferry_build_info", &labels, Value::Int(1));

    family(
        out,
        "ferry_job_duration_seconds",
        Kind::Histogram,
        "Seconds from a request written to its END_REQUEST.",
    );
    for p in pools {
        let histogram = p.metrics.job_duration();
        for (&(_, le), count) in BUCKETS.iter().zip(histogram.cumulative()) {
            let labels = [("pool", p.name), ("le", le)];
            sample(
                out,
                "ferry_job_duration_seconds_bucket",
                &labels,
                Value::Int(count),
            );
        }
        let count = Value::Int(histogram.count());
        let labels = [("pool", p.name), ("le", "+Inf")];
        sample(out, "ferry_job_duration_seconds_bucket", &labels, count);
        let labels = [("pool", p.name)];
        let sum = Value::Float(histogram.sum_seconds());
        sample(out, "ferry_job_duration_seconds_sum", &labels, sum);
        sample(out, "ferry_job_duration_seconds_count", &labels, count);
    }

    render_process(out, exposition.process);
}

/// The `process_*` families; a value that could not be read has no sample.
fn render_process(out: &mut String, process: &ProcessStats) {
    let families = [
        (
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            process.cpu_seconds.map(Value::Float),
        ),
        (
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            process.resident_memory_bytes.map(Value::Int),
        ),
        (
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            process.open_fds.map(Value::Int),
        ),
        (
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            process.max_fds.map(Value::Int),
        ),
        (
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            process.start_time_seconds.map(Value::Float),
        ),
    ];
    for (name, kind, help, value) in families {
        family(out, name, kind, help);
        if let Some(value) = value {
            sample(out, name, &[], value);
        }
    }
}

/// `# HELP` and `# TYPE` of one family. Help texts are fixed here and hold neither `\`
/// nor a newline, the two characters HELP would need escaped.
fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    debug_assert!(!help.contains(['\\', '\n']));
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// One sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: Value) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, label_value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, label_value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_value(out, value);
    out.push('\n');
}

/// Appends `value` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value as the format spells it (Go's `ParseFloat` syntax).
fn push_value(out: &mut String, value: Value) {
    // Writing to a `String` cannot fail; the `fmt::Result` carries nothing.
    let _ = match value {
        Value::Int(n) => write!(out, "{n}"),
        Value::Float(f) if f.is_nan() => write!(out, "NaN"),
        Value::Float(f) if f == f64::INFINITY => write!(out, "+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => write!(out, "-Inf"),
        // Rust's shortest round-trip form, never in exponent notation.
        Value::Float(f) => write!(out, "{f}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_label_value(&mut out, value);
        out
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(escaped(r"a\b"), r"a\\b");
        assert_eq!(escaped(r#"say "hi""#), r#"say \"hi\""#);
        assert_eq!(escaped("two\nlines"), r"two\nlines");
        assert_eq!(escaped("é\t✓"), "é\t✓");
    }

    #[test]
    fn values_use_the_format_spelling() {
        let cases = [
            (Value::Int(0), "0"),
            (Value::Int(u64::MAX), "18446744073709551615"),
            (Value::Float(1.0), "1"),
            (Value::Float(0.25), "0.25"),
            (Value::Float(1e-7), "0.0000001"),
            (Value::Float(f64::INFINITY), "+Inf"),
            (Value::Float(f64::NEG_INFINITY), "-Inf"),
            (Value::Float(f64::NAN), "NaN"),
        ];
        for (value, text) in cases {
            let mut out = String::new();
            push_value(&mut out, value);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn sample_without_labels_has_no_braces() {
        let mut out = String::new();
        sample(&mut out, "process_open_fds", &[], Value::Int(7));
        assert_eq!(out, "process_open_fds 7\n");
    }
}
