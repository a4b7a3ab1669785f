//! ferry carries messages from brokers (Redis pub/sub, RabbitMQ) to FastCGI workers.
//!
//! # Layout
//! - [`config`]: the JSON configuration file, its defaults and validation.
//! - [`proto`]: the wire formats ferry speaks (RESP, AMQP 0-9-1, FastCGI) and the
//!   message-body encoding, as sans-IO codecs: bytes in, frames out, no sockets, no clock,
//!   no logging. Everything that touches the network is built on top of them.
//! - [`control`]: the control endpoint's HTTP, sans-IO (`docs/OPERATIONS.md`).
//! - [`dispatch`]: ferry's rules between sessions and pools: requests, outcomes, retries.
//! - [`logging`]: the log line format, levels, file reopen.
//! - [`metrics`]: counters, gauges, histograms and their Prometheus text
//!   (`docs/OPERATIONS.md`).
//! - [`process`]: pidfile, daemonizing, systemd notify, spawned workers
//!   (`docs/OPERATIONS.md`, `docs/SEMANTICS.md`).
//! - [`engine`]: ferry's decisions as one sans-IO state machine (intake, dispatch,
//!   settlement, drain, reload, worker supervision): inputs with `now` in, commands out.
//! - [`reactor`]: the single-threaded mio loop that carries the engine's commands out:
//!   sockets, timers, signals, processes.
//! - `src/bin/ferry/`: the command-line interface.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod dispatch;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod proto;
pub mod reactor;

/// Unit tests of the sans-IO layers (`engine`, `dispatch`) need one real `Instant` to
/// start their hand-advanced clocks from; only this reads the clock for them.
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}
