//! `ferry bench`: the end-to-end benchmark harness (README.md "Benchmarks").
//!
//! # Layout
//! - `plan` — flags, `--help`, the [`plan::Plan`] of a run;
//! - `harness` — the temporary directory, child processes (workers, ferry with a
//!   generated config) and their cleanup, Ctrl-C;
//! - `runner` — one measured run: the load on a helper thread, receipts collected here;
//! - `direct` / `broker` — the two limit modes (workers alone, broker alone);
//! - `collector` — receipts from the workers' logs; `stats` — accounting, percentiles,
//!   timeline; `procstat` — ferry's CPU and RSS from `/proc`;
//! - `report` — table and JSON; `plot` — the SVG.

mod broker;
mod collector;
mod direct;
mod harness;
mod plan;
mod plot;
mod procstat;
mod report;
mod runner;
mod stats;

use std::io::{IsTerminal, Write};
use std::time::Instant;

use plan::{Mode, Plan};
pub use plan::{FLAGS, HELP};
use report::{RunResult, WithLimits};

/// The progress line on a terminal (stderr); nothing when stderr is not a terminal.
pub struct Progress {
    tty: bool,
    label: String,
    last: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn new(label: String) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            label,
            last: std::cell::Cell::new(None),
        }
    }

    /// Redraws the line, at most five times a second.
    pub fn show(&self, sent: u64, count: u64, received: u64, started: Instant) {
        if !self.tty
            || self
                .last
                .get()
                .is_some_and(|t| t.elapsed().as_millis() < 200)
        {
            return;
        }
        self.last.set(Some(Instant::now()));
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r\x1b[K{}: sent {sent}/{count}  received {received}  {:.1} s",
            self.label,
            started.elapsed().as_secs_f64()
        );
        let _ = err.flush();
    }

    /// Erases the line.
    pub fn clear(&self) {
        if self.tty && self.last.get().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.last.set(None);
        }
    }
}

/// Runs `ferry bench`; the exit code.
pub fn command(parsed: &crate::args::Parsed) -> u8 {
    let plan = match plan::plan(parsed) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("ferry bench: {e}");
            return 2;
        }
    };
    if let Err(e) = harness::watch_signals() {
        eprintln!("ferry bench: {e}");
        return 1;
    }
    let outcome = if !plan.sweep.is_empty() {
        sweep(&plan)
    } else if plan.limits {
        with_limits(&plan)
    } else {
        single(&plan)
    };
    match outcome {
        Ok(exact) => u8::from(!exact),
        Err(e) => {
            eprintln!("ferry bench: {e}");
            1
        }
    }
}

fn run(plan: &Plan) -> Result<RunResult, String> {
    let label = format!("{} {}", plan.mode.name(), plan.source.name());
    runner::run(plan, &Progress::new(label))
}

fn write_plot(plan: &Plan, result: &RunResult) -> Result<(), String> {
    if let Some(path) = &plan.plot {
        std::fs::write(path, plot::svg(result))
            .map_err(|e| format!("--plot {}: {e}", path.display()))?;
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn single(plan: &Plan) -> Result<bool, String> {
    let result = run(plan)?;
    write_plot(plan, &result)?;
    if plan.json {
        print_json(&result)?;
    } else {
        print!("{}", report::table(&result));
    }
    Ok(result.accounting.exact())
}

fn with_limits(plan: &Plan) -> Result<bool, String> {
    let result = run(plan)?;
    write_plot(plan, &result)?;
    let direct = run(&plan.with_mode(Mode::Direct))?;
    let broker = match plan.source {
        plan::SourceKind::Endpoint => None,
        _ => Some(run(&plan.with_mode(Mode::Broker))?),
    };
    let limit = [Some(&direct), broker.as_ref()]
        .into_iter()
        .flatten()
        .map(|r| r.throughput)
        .fold(f64::INFINITY, f64::min);
    let exact = result.accounting.exact();
    let ferry_cpu = result.ferry.as_ref().and_then(|f| f.cpu_us_per_message);
    let all = WithLimits {
        share_of_limit: (limit.is_finite() && limit > 0.0).then(|| result.throughput / limit),
        cpu_multiple_of_direct: ferry_cpu
            .zip(direct.driver_cpu_us_per_message)
            .filter(|(_, floor)| *floor > 0.0)
            .map(|(ferry, floor)| ferry / floor),
        run: result,
        direct: Some(direct),
        broker,
    };
    if plan.json {
        print_json(&all)?;
    } else {
        print!("{}", report::limits_table(&all));
    }
    Ok(exact)
}

/// One step of a sweep: pool (and prefetch) ≈ `concurrency`, and the responder's delay
/// and the publish rate chosen so that `concurrency` requests are in flight in the
/// steady state (in flight = rate × delay).
///
/// By default the rate is the same for every step (`--rate`, default 2,000 msg/s) and the
/// delay grows with the concurrency: ferry's CPU per message depends strongly on the
/// rate (at a low rate every message is its own wake-up of the loop; at a high one a
/// wake-up serves many), so only a fixed rate isolates the cost of concurrency. With
/// `--delay-ms` the delay is fixed instead and the rate grows with the concurrency.
/// Messages are paced, never sent as one burst: 10,000 at once would make ferry open
/// 10,000 connections in one loop turn, beyond any worker's listen backlog (somaxconn),
/// and the refused connects (EAGAIN) would open the pool's circuit — another test.
fn sweep_step(plan: &Plan, concurrency: usize) -> Plan {
    let c = concurrency as f64;
    let (rate, delay_ms) = match (plan.delay_ms, plan.rate) {
        (0, rate) => {
            let rate = rate.unwrap_or(2000.0);
            (rate, ((c * 1000.0 / rate).round() as u64).max(1))
        }
        (delay_ms, Some(rate)) => (rate, delay_ms),
        (delay_ms, None) => (c * 1000.0 / delay_ms as f64, delay_ms),
    };
    let count = if plan.count_given {
        plan.count
    } else {
        // Three rounds of the pool, and at least two seconds.
        (3 * concurrency as u64).max((2.0 * rate) as u64).max(1)
    };
    // Headroom in the pool (10 %, and 10 more), so requests in flight are set by rate ×
    // delay and the pool never becomes the queue: a request takes its delay plus a
    // millisecond or two (the responder's timer granularity, connect, close), which at
    // 10 requests of 5 ms would otherwise cap the pool below the rate.
    let pool = concurrency + concurrency.div_ceil(10) + 10;
    let mut step = plan.with_pool(pool, count);
    step.rate = Some(rate);
    step.delay_ms = delay_ms;
    step.target_in_flight = Some(concurrency as u64);
    step
}

fn sweep(plan: &Plan) -> Result<bool, String> {
    let mut runs = Vec::new();
    for &concurrency in &plan.sweep {
        runs.push(run(&sweep_step(plan, concurrency))?);
    }
    let exact = runs.iter().all(|r| r.accounting.exact());
    if plan.json {
        print_json(&serde_json::json!({ "sweep": runs }))?;
    } else {
        print!("{}", report::sweep_table(&runs));
    }
    Ok(exact)
}
