//! Deterministic simulation of ferry (`docs/SIMULATION.md`): the real engine against a
//! simulated RabbitMQ, Redis and php-fpm speaking the real protocols, a virtual clock,
//! faults, and invariants checked at every step — thousands of seeds, each replayable
//! bit for bit.
//!
//! - `cargo test --test sim`: the default seeds (0..2000) and the regression seeds.
//! - `FERRY_SIM_SEED=<n> cargo test --test sim`: replays one seed, with its trace.
//! - `FERRY_SIM_SEEDS=<start>..<end>`: a range (what `scripts/sim.sh` hands each job).
//!
//! # Layout
//! - `sim/rng.rs`: the one seeded PRNG.
//! - `sim/trace.rs`: the bounded event trace (ferry's log lines included).
//! - `sim/scenario.rs`: configuration, workload and faults drawn from the seed.
//! - `sim/net.rs`: connections and the bytes in flight.
//! - `sim/broker.rs`, `sim/redis.rs`, `sim/fpm.rs`: the peers.
//! - `sim/ledger.rs`: what the peers saw, and the invariants.
//! - `sim/run.rs`: the world as ferry's `Io`, and the step loop.

#[path = "sim/broker.rs"]
mod broker;
#[path = "sim/fpm.rs"]
mod fpm;
#[path = "sim/ledger.rs"]
mod ledger;
#[path = "sim/net.rs"]
mod net;
#[path = "sim/redis.rs"]
mod redis;
#[path = "sim/rng.rs"]
mod rng;
#[path = "sim/run.rs"]
mod run;
#[path = "sim/scenario.rs"]
mod scenario;
#[path = "sim/trace.rs"]
mod trace;

use std::time::Instant;

/// Seeds that found bugs: always run.
const REGRESSIONS: &[u64] = &[5, 12, 33, 131, 143, 475, 2221, 4357, 4415];

/// Seeds run by default (`cargo test`).
const DEFAULT_SEEDS: u64 = 2000;

fn seeds_from_env() -> Option<Vec<u64>> {
    if let Ok(seed) = std::env::var("FERRY_SIM_SEED") {
        return Some(vec![seed
            .trim()
            .parse()
            .expect("FERRY_SIM_SEED is a number")]);
    }
    let range = std::env::var("FERRY_SIM_SEEDS").ok()?;
    let (start, end) = range
        .split_once("..")
        .expect("FERRY_SIM_SEEDS is <start>..<end>");
    let start: u64 = start.trim().parse().expect("a start seed");
    let end: u64 = end.trim().parse().expect("an end seed");
    Some((start..end).collect())
}

/// Runs `seed`; `Err` with the report to print.
fn run_seed(seed: u64, epoch: Instant) -> Result<run::Report, String> {
    let sim = run::Sim::new(seed, epoch);
    sim.run().map_err(|violations| {
        format!(
            "seed {seed} failed:\n{violations}\n\n--- trace (latest lines) ---\n{}\n--- replay with ---\nFERRY_SIM_SEED={seed} cargo test --test sim\n",
            trace::dump()
        )
    })
}

/// Runs `seeds` on a few threads; returns the failures' reports.
fn run_all(seeds: Vec<u64>, threads: usize) -> (Vec<String>, u64) {
    let epoch = Instant::now();
    let chunks: Vec<Vec<u64>> = (0..threads)
        .map(|t| seeds.iter().copied().skip(t).step_by(threads).collect())
        .collect();
    let results: Vec<(Vec<String>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    let mut steps = 0;
                    for seed in chunk {
                        match run_seed(seed, epoch) {
                            Ok(report) => steps += report.steps,
                            Err(report) => {
                                failures.push(report);
                                if failures.len() >= 3 {
                                    break;
                                }
                            }
                        }
                    }
                    (failures, steps)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a sim thread"))
            .collect()
    });
    let steps = results.iter().map(|(_, s)| s).sum();
    (results.into_iter().flat_map(|(f, _)| f).collect(), steps)
}

#[test]
fn seeds_hold_every_invariant() {
    let single = std::env::var("FERRY_SIM_SEED").is_ok();
    trace::install_logger(single);
    let mut seeds = seeds_from_env().unwrap_or_else(|| (0..DEFAULT_SEEDS).collect());
    if !single {
        seeds.extend_from_slice(REGRESSIONS);
    }
    let count = seeds.len();
    let threads = std::env::var("FERRY_SIM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let started = Instant::now();
    let (failures, steps) = run_all(seeds, threads);
    eprintln!(
        "sim: {count} seeds, {steps} steps in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if single && failures.is_empty() {
        eprintln!("{}", trace::dump());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_seed_replays_bit_for_bit() {
    trace::install_logger(std::env::var("FERRY_SIM_SEED").is_ok());
    let epoch = Instant::now();
    for seed in [3, 17, 1234] {
        let first = run_seed(seed, epoch).map(|r| (r.digest, r.steps, r.virtual_ms));
        let second = run_seed(seed, epoch + std::time::Duration::from_secs(1))
            .map(|r| (r.digest, r.steps, r.virtual_ms));
        match (first, second) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "seed {seed} ran differently twice"),
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        }
    }
}
