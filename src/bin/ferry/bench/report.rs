//! Results: the structure `--json` prints, and the table printed otherwise.
//!
//! JSON fields (documented in the README): `mode`, `source`, `workers`, `pool`,
//! `prefetch`, `keep_conn`, `delay_ms`, `rate`, `accounting` {`sent`, `received`,
//! `unique`, `lost`, `duplicates`, `unexpected`}, `publish_failures`,
//! `unreadable_lines`, `seconds`, `throughput` (distinct messages per second),
//! `latency_us` {`p50`, `p90`, `p99`, `p999`, `max`, `mean`}, `ferry` {`cpu_ms`,
//! `cpu_us_per_message`, `idle_rss_kib`, `peak_rss_kib`, `rss_kib_per_in_flight`},
//! `ferry_dropped`, `ferry_pool_failures`, `ferry_start_to_ready_ms`, `peak_in_flight`, `target_in_flight`, `timeline` [{`at_s`, `throughput`,
//! `latency_us`}]; with `--limits` a document {`run`, `direct`, `broker`,
//! `share_of_limit`, `cpu_multiple_of_direct`}; a direct run adds
//! `driver_cpu_us_per_message`; with a sweep {`sweep`: [run…]}.

use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{Accounting, Percentiles, Slice};

/// ferry's own cost in a pipeline run.
#[derive(Debug, Clone, Serialize)]
pub struct FerryUsage {
    /// CPU time over the run (all threads), ms.
    pub cpu_ms: Option<f64>,
    /// CPU time per distinct message received, µs.
    pub cpu_us_per_message: Option<f64>,
    /// VmRSS once ready, before the first message, KiB.
    pub idle_rss_kib: Option<u64>,
    /// VmHWM at the end, KiB.
    pub peak_rss_kib: Option<u64>,
    /// (peak − idle) ÷ peak in-flight requests, KiB (runs with `--delay-ms`).
    pub rss_kib_per_in_flight: Option<f64>,
}

/// One run's results.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub mode: &'static str,
    pub source: Option<&'static str>,
    pub workers: Option<&'static str>,
    pub pool: usize,
    pub prefetch: Option<u16>,
    pub keep_conn: bool,
    pub delay_ms: u64,
    pub rate: Option<f64>,
    pub accounting: Accounting,
    /// Messages the broker refused (AMQP nack/return) or requests that failed (direct).
    pub publish_failures: u64,
    /// Worker log lines that were not receipts.
    pub unreadable_lines: u64,
    /// First publish to last receipt.
    pub seconds: f64,
    /// Distinct messages received per second.
    pub throughput: f64,
    pub latency_us: Option<Percentiles>,
    pub ferry: Option<FerryUsage>,
    /// ferry's `ferry_messages_dropped_total`, summed (runs that started ferry).
    pub ferry_dropped: Option<u64>,
    /// ferry's `ferry_pool_failures_total`, summed: connects the workers refused
    /// (a full listen backlog: EAGAIN), each of which opened the pool's circuit.
    pub ferry_pool_failures: Option<u64>,
    /// From starting ferry to `/readyz` answering 200, ms (runs that started ferry).
    pub ferry_start_to_ready_ms: Option<f64>,
    /// The direct driver's own CPU per request, µs (`--direct` runs): the floor — what
    /// any FastCGI client of these workers costs, with no broker and no ferry.
    pub driver_cpu_us_per_message: Option<f64>,
    /// Most requests the workers held at once (runs with `--delay-ms`).
    pub peak_in_flight: Option<u64>,
    /// What a sweep step aimed at: rate × delay.
    pub target_in_flight: Option<u64>,
    pub timeline: Vec<Slice>,
}

impl RunResult {
    /// What was measured, in words: "redis → ferry → responder ×4".
    pub fn title(&self) -> String {
        let workers = match self.workers {
            Some(name @ "attached workers") => name.to_string(),
            name => format!(
                "{} ×{}{}",
                name.unwrap_or("-"),
                self.pool,
                if self.keep_conn { " (keep_conn)" } else { "" }
            ),
        };
        let source = match (self.source, self.prefetch) {
            (Some(source), Some(prefetch)) => format!("{source} (prefetch {prefetch})"),
            (Some(source), None) => source.to_string(),
            (None, _) => String::new(),
        };
        match self.mode {
            "direct" => format!("direct FastCGI → {workers} (no broker, no ferry)"),
            "broker" => format!("{source} publish → consume (broker alone)"),
            _ => format!("{source} → ferry → {workers}"),
        }
    }
}

/// A run with its limits.
#[derive(Debug, Clone, Serialize)]
pub struct WithLimits {
    pub run: RunResult,
    pub direct: Option<RunResult>,
    pub broker: Option<RunResult>,
    /// ferry's throughput ÷ the lower limit's.
    pub share_of_limit: Option<f64>,
    /// ferry's CPU per message ÷ the direct driver's (how far ferry is from the floor).
    pub cpu_multiple_of_direct: Option<f64>,
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// The readable table of one run.
pub fn table(result: &RunResult) -> String {
    let a = &result.accounting;
    let mut out = String::new();
    let _ = writeln!(out, "{}", result.title());
    let _ = writeln!(
        out,
        "  messages     sent {}  received {}  lost {}  duplicates {}{}",
        a.sent,
        a.received,
        a.lost,
        a.duplicates,
        if a.unexpected > 0 {
            format!("  unexpected {}", a.unexpected)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  throughput   {} msg/s over {:.2} s{}",
        thousands(result.throughput),
        result.seconds,
        result
            .rate
            .map_or(String::new(), |r| format!(" (--rate {r})"))
    );
    if let Some(l) = &result.latency_us {
        let _ = writeln!(
            out,
            "  latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            thousands(l.p50 as f64),
            thousands(l.p90 as f64),
            thousands(l.p99 as f64),
            thousands(l.p999 as f64),
            thousands(l.max as f64)
        );
    }
    if let Some(f) = &result.ferry {
        let _ = writeln!(
            out,
            "  ferry        CPU {} µs/msg ({} ms)  RSS idle {}  peak {}{}",
            f.cpu_us_per_message
                .map_or("-".into(), |v| format!("{v:.1}")),
            f.cpu_ms.map_or("-".into(), |v| format!("{v:.0}")),
            mib(f.idle_rss_kib),
            mib(f.peak_rss_kib),
            result
                .ferry_start_to_ready_ms
                .map_or(String::new(), |ms| format!(
                    "  ready {ms:.0} ms after start"
                ))
        );
    }
    if let Some(cpu) = result.driver_cpu_us_per_message {
        let _ = writeln!(
            out,
            "  driver       CPU {cpu:.1} µs/request (the bare FastCGI client)"
        );
    }
    if let Some(n) = result.peak_in_flight {
        let per = result
            .ferry
            .as_ref()
            .and_then(|f| f.rss_kib_per_in_flight)
            .map_or(String::new(), |k| format!("  ({k:.1} KiB RSS each)"));
        let _ = writeln!(out, "  in flight    {n} at most{per}");
    }
    if result.publish_failures > 0 {
        let _ = writeln!(
            out,
            "  failures     {} refused by the broker or failed requests",
            result.publish_failures
        );
    }
    let dropped = result.ferry_dropped.unwrap_or(0);
    let failures = result.ferry_pool_failures.unwrap_or(0);
    if dropped > 0 || failures > 0 {
        let _ = writeln!(
            out,
            "  ferry        dropped {dropped} messages, {failures} pool failures (circuit opened)"
        );
    }
    out
}

/// The table of a run and its limits.
pub fn limits_table(all: &WithLimits) -> String {
    let mut out = table(&all.run);
    for limit in [&all.direct, &all.broker].into_iter().flatten() {
        out.push('\n');
        out.push_str(&table(limit));
    }
    if let Some(share) = all.share_of_limit {
        let limit = [&all.direct, &all.broker]
            .into_iter()
            .flatten()
            .map(|r| r.throughput)
            .fold(f64::INFINITY, f64::min);
        let _ = writeln!(
            out,
            "\nferry: {} msg/s = {:.0} % of the lower limit ({} msg/s)",
            thousands(all.run.throughput),
            share * 100.0,
            thousands(limit)
        );
    }
    if let Some(multiple) = all.cpu_multiple_of_direct {
        let _ = writeln!(
            out,
            "ferry: {multiple:.2}× the direct driver's CPU per message"
        );
    }
    out
}

/// The table of a concurrency sweep.
pub fn sweep_table(runs: &[RunResult]) -> String {
    let mut out = String::new();
    if let Some(first) = runs.first() {
        let _ = writeln!(
            out,
            "concurrency sweep: {} → ferry → {}; in flight = rate × the responder's delay",
            first.source.unwrap_or("-"),
            first.workers.unwrap_or("-"),
        );
    }
    let row = |cells: [String; 12]| cells.map(|c| format!("{c:>10}")).join(" ");
    let _ = writeln!(
        out,
        "{}",
        row([
            "in flight",
            "pool",
            "delay ms",
            "rate",
            "messages",
            "msg/s",
            "peak",
            "CPU µs/msg",
            "idle RSS",
            "peak RSS",
            "KiB/each",
            "lost+fail",
        ]
        .map(String::from))
    );
    for run in runs {
        let f = run.ferry.as_ref();
        let _ = writeln!(
            out,
            "{}",
            row([
                run.target_in_flight.map_or("-".into(), |n| n.to_string()),
                run.pool.to_string(),
                run.delay_ms.to_string(),
                run.rate.map_or("-".into(), thousands),
                run.accounting.sent.to_string(),
                thousands(run.throughput),
                run.peak_in_flight.map_or("-".into(), |n| n.to_string()),
                f.and_then(|f| f.cpu_us_per_message)
                    .map_or("-".into(), |v| format!("{v:.1}")),
                mib(f.and_then(|f| f.idle_rss_kib)),
                mib(f.and_then(|f| f.peak_rss_kib)),
                f.and_then(|f| f.rss_kib_per_in_flight)
                    .map_or("-".into(), |v| format!("{v:.1}")),
                format!(
                    "{}+{}",
                    run.accounting.lost,
                    run.ferry_pool_failures.unwrap_or(0)
                ),
            ])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
