//! `ferry bench`: the end-to-end benchmark harness (issue 6).
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
    let all = WithLimits {
        share_of_limit: (limit.is_finite() && limit > 0.0).then(|| result.throughput / limit),
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

fn sweep(plan: &Plan) -> Result<bool, String> {
    let mut runs = Vec::new();
    for &concurrency in &plan.sweep {
        let count = if plan.count_given {
            plan.count
        } else {
            (3 * concurrency as u64).max(200)
        };
        runs.push(run(&plan.with_pool(concurrency, count))?);
    }
    let exact = runs.iter().all(|r| r.accounting.exact());
    if plan.json {
        print_json(&serde_json::json!({ "sweep": runs }))?;
    } else {
        print!("{}", report::sweep_table(&runs));
    }
    Ok(exact)
}
