//! Metrics (`docs/OPERATIONS.md` "Metrics", `GET /metrics`): the counters ferry keeps per
//! source and per pool, the job-duration histogram, and their Prometheus text format
//! 0.0.4.
//!
//! ferry runs one thread, so the registry is plain data owned by the runtime: one
//! [`SourceMetrics`] per source, one [`PoolMetrics`] per pool, incremented in place (no
//! atomics, no locks, no global registry, no allocation per event). Label values that are
//! a closed set (drop reasons, attempt results, settlements, pool failure reasons) index
//! fixed arrays through their enums. Gauges are not stored here: they are read from the
//! runtime's own state when a scrape comes in and handed to [`render`] with the counters,
//! so they can never disagree with it. A source or pool that is gone from the runtime is
//! simply not passed to [`render`], and its series disappear.
//!
//! # Layout
//! - [`labels`] — the enums whose labels index the counter arrays.
//! - [`histogram`] — `ferry_job_duration_seconds`.
//! - [`text`] — the exposition format: HELP/TYPE lines, samples, label escaping.
//! - [`process`] — the `process_*` metrics, read from `/proc/self` (the only I/O here).

pub mod histogram;
pub mod labels;
pub mod process;
pub mod text;

pub use histogram::Histogram;
pub use labels::{DisconnectReason, DropReason, Settlement};
pub use process::ProcessStats;
pub use text::{
    render, render_endpoints, EndpointSeries, Exposition, PoolGauges, PoolSeries, SourceGauges,
    SourceSeries,
};

use crate::dispatch::outcome::{AttemptResult, PoolFailureReason};

/// The counters of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMetrics {
    received: u64,
    dropped: [u64; DropReason::ALL.len()],
    attempts: [u64; labels::ATTEMPT_RESULTS.len()],
    settled: [u64; Settlement::ALL.len()],
    reconnects: u64,
}

impl SourceMetrics {
    /// A message (or delivery) arrived from the broker, whatever becomes of it
    /// (`ferry_messages_received_total`).
    pub fn on_received(&mut self) {
        self.received += 1;
    }

    /// A received message was dropped without reaching a worker
    /// (`ferry_messages_dropped_total{reason}`).
    pub fn on_dropped(&mut self, reason: DropReason) {
        self.on_dropped_many(reason, 1);
    }

    /// `count` messages were dropped at once (a backlog discarded on shutdown).
    pub fn on_dropped_many(&mut self, reason: DropReason, count: u64) {
        self.dropped[reason.index()] += count;
    }

    /// An attempt of one of this source's messages ended (`ferry_attempts_total{result}`;
    /// the `pool` label is the source's pool, given at render time).
    pub fn on_attempt(&mut self, result: AttemptResult) {
        self.attempts[labels::attempt_index(result)] += 1;
    }

    /// A delivery reached its final state (`ferry_messages_settled_total{outcome}`; one
    /// per delivery).
    pub fn on_settled(&mut self, outcome: Settlement) {
        self.settled[outcome.index()] += 1;
    }

    /// The broker connection was lost and a reconnect scheduled
    /// (`ferry_reconnects_total`).
    pub fn on_reconnect(&mut self) {
        self.reconnects += 1;
    }

    /// Adds `other`'s counts (a source retired by a reload hands over what it counted
    /// while finishing its work, so the source's series keep counting it).
    pub fn absorb(&mut self, other: &SourceMetrics) {
        self.received += other.received;
        self.reconnects += other.reconnects;
        for (mine, theirs) in self.dropped.iter_mut().zip(other.dropped) {
            *mine += theirs;
        }
        for (mine, theirs) in self.attempts.iter_mut().zip(other.attempts) {
            *mine += theirs;
        }
        for (mine, theirs) in self.settled.iter_mut().zip(other.settled) {
            *mine += theirs;
        }
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Messages dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Attempts that ended with `result` so far.
    pub fn attempts(&self, result: AttemptResult) -> u64 {
        self.attempts[labels::attempt_index(result)]
    }

    /// Deliveries settled as `outcome` so far.
    pub fn settled(&self, outcome: Settlement) -> u64 {
        self.settled[outcome.index()]
    }

    /// Reconnects so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }
}

/// The counters of a RESP endpoint source, beside its [`SourceMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointMetrics {
    disconnects: [u64; DisconnectReason::ALL.len()],
}

impl EndpointMetrics {
    /// ferry closed a client (`ferry_endpoint_disconnects_total{reason}`).
    pub fn on_disconnect(&mut self, reason: DisconnectReason) {
        self.disconnects[reason.index()] += 1;
    }

    /// Clients closed for `reason` so far.
    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        self.disconnects[reason.index()]
    }
}

/// The counters and the job-duration histogram of one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    failures: [u64; labels::POOL_FAILURE_REASONS.len()],
    stderr_lines: u64,
    process_restarts: u64,
    job_duration: Histogram,
}

impl PoolMetrics {
    /// The pool failed (`ferry_pool_failures_total{reason}`).
    pub fn on_failure(&mut self, reason: PoolFailureReason) {
        self.failures[labels::pool_failure_index(reason)] += 1;
    }

    /// A worker wrote `lines` lines to FCGI_STDERR (`ferry_worker_stderr_lines_total`).
    pub fn on_stderr_lines(&mut self, lines: u64) {
        self.stderr_lines += lines;
    }

    /// A spawned pool started a worker process again after one ended or failed to start
    /// (`ferry_pool_process_restarts_total`).
    pub fn on_process_restart(&mut self) {
        self.process_restarts += 1;
    }

    /// Worker process restarts so far.
    pub fn process_restarts(&self) -> u64 {
        self.process_restarts
    }

    /// A job's request was answered (END_REQUEST) `duration` after it was written
    /// (`ferry_job_duration_seconds`).
    pub fn on_job_finished(&mut self, duration: std::time::Duration) {
        self.job_duration.observe(duration);
    }

    /// Failures for `reason` so far.
    pub fn failures(&self, reason: PoolFailureReason) -> u64 {
        self.failures[labels::pool_failure_index(reason)]
    }

    /// Worker stderr lines so far.
    pub fn stderr_lines(&self) -> u64 {
        self.stderr_lines
    }

    /// The job-duration histogram.
    pub fn job_duration(&self) -> &Histogram {
        &self.job_duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_counters_count_per_label() {
        let mut m = SourceMetrics::default();
        m.on_received();
        m.on_received();
        m.on_dropped(DropReason::TooLarge);
        m.on_dropped_many(DropReason::Shutdown, 3);
        m.on_attempt(AttemptResult::Timeout);
        m.on_settled(Settlement::Retried);
        m.on_reconnect();
        assert_eq!(m.received(), 2);
        assert_eq!(m.dropped(DropReason::TooLarge), 1);
        assert_eq!(m.dropped(DropReason::Shutdown), 3);
        assert_eq!(m.dropped(DropReason::Paused), 0);
        assert_eq!(m.attempts(AttemptResult::Timeout), 1);
        assert_eq!(m.attempts(AttemptResult::Ok), 0);
        assert_eq!(m.settled(Settlement::Retried), 1);
        assert_eq!(m.reconnects(), 1);
    }

    #[test]
    fn pool_counters_count_per_label() {
        let mut m = PoolMetrics::default();
        m.on_failure(PoolFailureReason::Overloaded);
        m.on_failure(PoolFailureReason::Overloaded);
        m.on_stderr_lines(4);
        m.on_job_finished(std::time::Duration::from_millis(30));
        assert_eq!(m.failures(PoolFailureReason::Overloaded), 2);
        assert_eq!(m.failures(PoolFailureReason::AccessDenied), 0);
        assert_eq!(m.stderr_lines(), 4);
        assert_eq!(m.job_duration().count(), 1);
    }
}
