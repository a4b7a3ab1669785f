//! ferry's own rules, between the protocol sessions and the reactor (see
//! `docs/ARCHITECTURE.md`): how a message becomes a FastCGI request, what a worker's
//! answer means (SPEC, "Outcome of a request"), retry schedules, the circuit breaker and
//! fair queues. Sans-IO like `proto`: no sockets, no clock reads, no logging.
//!
//! # Layout
//! - `pool.rs`: per-pool fair queue of waiting jobs and the circuit breaker.
//! - `retry.rs`: retry schedules (`retry_delays_ms`, `max_attempts`, `X-Ferry-Retry-After`).

// Peer input reaches this module too (worker answers): none of it may panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod pool;
pub mod retry;
