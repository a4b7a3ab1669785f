//! ferry's own rules, between the protocol sessions and the reactor (see
//! `docs/ARCHITECTURE.md`): how a message becomes a FastCGI request, what a worker's
//! answer means (`docs/SEMANTICS.md`, "Outcome of a request"), retry schedules, the circuit breaker and
//! fair queues. Sans-IO like `proto`: no sockets, no clock reads, no logging.
//!
//! # Layout
//! - `request.rs`: message + job config → FastCGI request bytes.
//! - `outcome.rs`: a finished exchange → success / permanent / retryable / pool failure.
//! - `pool.rs`: per-pool fair queue of waiting jobs and the circuit breaker.
//! - `retry.rs`: retry schedules (`retry_delays_ms`, `max_attempts`, `X-Ferry-Retry-After`).

// Peer input (worker answers, message payloads and metadata) reaches every function
// below: none may panic on it. Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod outcome;
pub mod pool;
pub mod request;
pub mod retry;
