//! The single-threaded mio reactor (issue 3): connections in a slab, timers, signals.
//! See `docs/ARCHITECTURE.md`.
//!
//! # Layout
//! - `conn.rs`: a nonblocking socket with its capped read buffer and eager writes.
//! - `connect.rs`: nonblocking connects, host names resolved off the loop thread.
//! - `timers.rs`: deadlines by key, for the loop's single poll timeout.
//! - `backoff.rs`: exponential backoff with jitter for reconnects and probes.

pub mod backoff;
pub mod conn;
pub mod connect;
pub mod runtime;
pub mod timers;

pub use runtime::{run, RunError};
