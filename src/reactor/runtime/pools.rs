//! Worker connections and the life of a job on them (SPEC "Outcome of a request", "Pools
//! and backpressure").
//!
//! php-fpm serves one request per connection, so a pool runs at most `max_in_flight`
//! connections, each carrying one [`Exchange`] at a time. With `keep_conn` a connection
//! that ended cleanly waits in the pool's idle list (watched for EOF, closed after
//! `idle_timeout_ms`); otherwise it is closed after END_REQUEST. A pool failure puts the
//! job back at the head of its queue, burns no attempt, and opens the circuit; a probe
//! connect after a jittered backoff closes it again.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::jobs::{Job, Origin};
use super::{Endpoint, Phase, Runtime, TimerKey};
use crate::config::PoolConfig;
use crate::dispatch::outcome::{classify, Attempt, ConnectFailure, Outcome, Reason};
use crate::dispatch::pool::{Circuit, FairQueue};
use crate::dispatch::request::RequestOptions;
use crate::metrics::{DropReason, PoolMetrics};
use crate::proto::fastcgi::{Exchange, ExchangeEvent, ExchangeOptions, Finished};
use crate::reactor::backoff::Backoff;
use crate::reactor::conn::{Conn, Fill};
use crate::reactor::connect::{self, Resolution, Target};

/// Read buffer cap of a worker connection: one whole FastCGI record and a bit more (the
/// exchange consumes record by record and discards bodies).
const WORKER_READ_CAP: usize = 128 * 1024;
/// Write buffer high-water mark of a worker connection (a request is written at once).
const WORKER_WRITE_HIGH_WATER: usize = 64 << 20;

/// One FastCGI pool.
pub(super) struct Pool {
    pub name: String,
    pub config: PoolConfig,
    /// Jobs waiting for a slot, per source, served in turn.
    pub queue: FairQueue<Job>,
    pub circuit: Circuit,
    backoff: Backoff,
    /// Connections carrying a job or connecting for one (≤ `max_in_flight`).
    pub in_flight: usize,
    /// Idle kept connections, most recently used last.
    idle: Vec<usize>,
    /// Where to connect, once resolved.
    pub targets: Option<Vec<Target>>,
    resolving: Option<u64>,
    /// Whether a probe connection is out.
    probing: bool,
    /// The last FastCGI request id used: each request gets the next, so a stale
    /// END_REQUEST on a kept connection can never end a newer request.
    last_request_id: u16,
    /// Its counters and job-duration histogram (`/metrics`).
    pub metrics: PoolMetrics,
    /// Removed by a reload: it works off what waits in its queue, takes nothing new.
    pub retired: bool,
    /// A spawned pool's current worker processes and their socket.
    pub spawned: Option<super::spawned::Group>,
    /// Which backend new connections reach: a new number whenever a reload changes the
    /// pool's `address` or `spawn` (a spawned pool's is its group's generation). A
    /// connection of an older generation is never kept idle or reused: it leads to the
    /// old backend, and a retiring group of workers is stopped only once no connection
    /// of its generation is left.
    pub generation: u64,
}

/// A worker connection (a slab entry).
pub(super) struct Worker {
    pub pool: usize,
    pub conn: Conn,
    connected: bool,
    /// The job it carries, if any.
    pub job: Option<Job>,
    exchange: Option<Exchange>,
    /// Requests completed on this connection (a reused kept connection has > 0).
    served: u32,
    /// The pool's [`Pool::generation`] when it connected: which backend it reaches.
    pub generation: u64,
}

impl Pool {
    pub fn new(name: String, config: PoolConfig, backoff: Backoff) -> Pool {
        Pool {
            name,
            config,
            queue: FairQueue::default(),
            circuit: Circuit::default(),
            backoff,
            in_flight: 0,
            idle: Vec::new(),
            targets: None,
            resolving: None,
            probing: false,
            last_request_id: 0,
            metrics: PoolMetrics::default(),
            retired: false,
            spawned: None,
            generation: 0,
        }
    }

    /// The next request id, 1..=65535 in turn (0 is the management id).
    fn next_request_id(&mut self) -> u16 {
        self.last_request_id = self.last_request_id % u16::MAX + 1;
        self.last_request_id
    }

    /// Takes the idle kept connections out of the pool (to close them).
    pub fn take_idle_tokens(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.idle)
    }

    /// True when a pool removed by a reload has nothing left to do.
    pub fn is_finished(&self) -> bool {
        self.retired && self.queue.is_empty() && self.in_flight == 0
    }

    /// Forgets resolved addresses (the address changed in a reload).
    pub fn forget_targets(&mut self) {
        self.targets = None;
        self.resolving = None;
    }

    /// Idle kept connections.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    fn max_in_flight(&self) -> usize {
        usize::try_from(self.config.max_in_flight).unwrap_or(usize::MAX)
    }
}

impl Runtime {
    /// Resolves a pool's address (unix paths and IP literals at once). A failed lookup is
    /// a pool failure: the circuit opens and the probe timer looks the name up again.
    /// A spawned pool binds its own socket and starts its workers instead.
    pub(super) fn resolve_pool(&mut self, pool: usize, now: Instant) {
        let Some(address) = self.pools[pool].config.address.clone() else {
            self.start_spawned_pool(pool, now);
            return;
        };
        match self.resolver.resolve(&address) {
            Ok(Resolution::Ready(targets)) => self.pools[pool].targets = Some(targets),
            Ok(Resolution::Pending(id)) => self.pools[pool].resolving = Some(id),
            Err(e) => {
                warn!(
                    "pool {}: cannot resolve {address}: {e}",
                    self.pools[pool].name
                );
                self.open_circuit(pool, "address lookup failed", now);
            }
        }
    }

    /// A finished lookup for a pool; true when it was one.
    pub(super) fn on_pool_resolved(
        &mut self,
        id: u64,
        result: &std::io::Result<Vec<Target>>,
        now: Instant,
    ) -> bool {
        let Some(pool) = self.pools.iter().position(|p| p.resolving == Some(id)) else {
            return false;
        };
        self.pools[pool].resolving = None;
        match result {
            Ok(targets) => {
                self.pools[pool].targets = Some(targets.clone());
                self.probe_now(pool, now);
            }
            Err(e) => {
                warn!(
                    "pool {}: cannot resolve its address: {e}",
                    self.pools[pool].name
                );
                self.open_circuit(pool, "address lookup failed", now);
            }
        }
        true
    }

    /// Starts waiting jobs while the pool has room and its circuit is closed.
    pub(super) fn pump_pool(&mut self, pool: usize, now: Instant) {
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        loop {
            let p = &mut self.pools[pool];
            if !p.circuit.is_closed()
                || p.in_flight >= p.max_in_flight()
                || p.queue.is_empty()
                || p.targets.is_none()
            {
                return;
            }
            let Some((_, job)) = p.queue.pop() else {
                return;
            };
            self.dequeued(&job);
            self.start_job(pool, job, now);
        }
    }

    /// Builds the request for `job` and sends it on an idle or a new connection.
    fn start_job(&mut self, pool: usize, job: Job, now: Instant) {
        let request_id = self.pools[pool].next_request_id();
        let source = &self.sources[job.source];
        let keep_conn = self.pools[pool].config.keep_conn;
        let mut request = Vec::new();
        let message = job.message(
            &source.name,
            source.channels(),
            source.patterns(),
            source.queue(),
        );
        let built = self.builder.build(
            &mut request,
            &source.job,
            &message,
            &job.payload,
            RequestOptions {
                request_id,
                keep_conn,
            },
        );
        if let Err(e) = built {
            warn!(
                "source {}: message {} cannot become a request: {e}",
                source.name,
                job.log_id()
            );
            self.on_outcome(
                job,
                Outcome::Permanent {
                    reason: Reason::InvalidMessage,
                },
                now,
            );
            return;
        }
        let token = match self.take_idle(pool) {
            Some(token) => token,
            None => match self.open_worker(pool, now) {
                Ok(token) => token,
                Err(failure) => {
                    let outcome = classify(Attempt::ConnectFailed(failure), false, false);
                    self.on_outcome(job, outcome, now);
                    return;
                }
            },
        };
        self.pools[pool].in_flight += 1;
        let request_timeout = Duration::from_millis(self.pools[pool].config.request_timeout_ms);
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        let mut options = ExchangeOptions::new(request_timeout);
        options.request_id = request_id;
        options.keep_conn = keep_conn;
        worker.exchange = Some(Exchange::new(request, options, now));
        worker.job = Some(job);
        if worker.connected {
            self.transmit_request(token, now);
        } else {
            let connect_timeout = Duration::from_millis(self.pools[pool].config.connect_timeout_ms);
            self.timers
                .arm(TimerKey::Worker(token), now + connect_timeout);
        }
    }

    /// Takes an idle kept connection of `pool`, if one is still there.
    fn take_idle(&mut self, pool: usize) -> Option<usize> {
        let generation = self.pools[pool].generation;
        while let Some(token) = self.pools[pool].idle.pop() {
            if matches!(self.slab.get(token), Some(Endpoint::Worker(w))
                    if w.job.is_none() && w.connected && w.generation == generation)
                && !self.to_close.contains(&token)
            {
                self.timers.cancel(TimerKey::Worker(token));
                return Some(token);
            }
        }
        None
    }

    /// Starts a nonblocking connect to the pool.
    fn open_worker(&mut self, pool: usize, now: Instant) -> Result<usize, ConnectFailure> {
        let target = self.pools[pool]
            .targets
            .as_ref()
            .and_then(|t| t.first().cloned())
            .ok_or(ConnectFailure::Other)?;
        let stream = connect::start(&target).map_err(|e| ConnectFailure::from_io_error(&e))?;
        let worker = Worker {
            pool,
            conn: Conn::new(stream, WORKER_READ_CAP, WORKER_WRITE_HIGH_WATER),
            connected: false,
            job: None,
            exchange: None,
            served: 0,
            generation: self.pools[pool].generation,
        };
        let token = self
            .insert(Endpoint::Worker(Box::new(worker)))
            .map_err(|e| ConnectFailure::from_io_error(&e))?;
        let _ = now;
        Ok(token)
    }

    /// Hands the exchange's request to the socket and arms the request deadline.
    fn transmit_request(&mut self, token: usize, now: Instant) {
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        let Some(exchange) = worker.exchange.as_mut() else {
            return;
        };
        exchange.poll_transmit(worker.conn.write_buf());
        let deadline = exchange.poll_timeout();
        let dispatched = worker.job.as_ref().map(|j| j.source);
        if let Err(e) = self.flush(token) {
            debug!("worker connection lost while writing: {e}");
            self.worker_eof(token, now);
            return;
        }
        if let Some(at) = deadline {
            self.timers.arm(TimerKey::Worker(token), at);
        }
        if let Some(source) = dispatched {
            self.on_dispatched(token, source);
        }
    }

    /// Readiness of a worker connection.
    pub(super) fn on_worker_ready(&mut self, token: usize, writable: bool, now: Instant) {
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        let pool = worker.pool;
        if !worker.connected {
            match worker.conn.stream.connect_finished() {
                Ok(false) => return,
                Ok(true) => {
                    worker.connected = true;
                    let has_job = worker.job.is_some();
                    self.on_pool_connected(pool, now);
                    if has_job {
                        self.transmit_request(token, now);
                    } else {
                        // A probe: it proved the pool answers; let a waiting job use it.
                        self.keep_idle(token, pool, now);
                    }
                }
                Err(e) => {
                    let failure = ConnectFailure::from_io_error(&e);
                    self.worker_connect_failed(token, failure, now);
                    return;
                }
            }
        }
        if writable {
            if let Err(e) = self.flush(token) {
                debug!("worker connection lost while writing: {e}");
                self.worker_eof(token, now);
                return;
            }
        }
        self.read_worker(token, now);
    }

    fn read_worker(&mut self, token: usize, now: Instant) {
        loop {
            let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
                return;
            };
            let fill = worker.conn.fill();
            let Some(exchange) = worker.exchange.as_mut() else {
                // Idle kept connection: php-fpm closed it (EOF) or sent what it should not.
                if !matches!(fill, Ok(Fill::Drained)) || worker.conn.unconsumed() > 0 {
                    self.mark_close(token);
                }
                return;
            };
            let mut progressed = false;
            let mut failed = false;
            while worker.conn.unconsumed() > 0 && !exchange.is_finished() {
                match exchange.handle_input(worker.conn.input(), now) {
                    Ok(0) => break,
                    Ok(n) => {
                        worker.conn.consume(n);
                        progressed = true;
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            match fill {
                Ok(Fill::Eof) | Err(_) => exchange.handle_eof(now),
                Ok(Fill::Full) if !progressed && !failed && !exchange.is_finished() => {
                    exchange.handle_eof(now)
                }
                _ => {}
            }
            if let Some(ExchangeEvent::Finished(finished)) = exchange.poll_event() {
                self.complete_job(token, finished, now);
                return;
            }
            match fill {
                Ok(Fill::Full) if progressed => continue,
                Ok(Fill::Drained) => {
                    if let Some(at) = exchange.poll_timeout() {
                        self.timers.arm(TimerKey::Worker(token), at);
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// The exchange on `token` ended: classify, settle, keep or close the connection.
    fn complete_job(&mut self, token: usize, finished: Finished, now: Instant) {
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        let pool = worker.pool;
        let reused = worker.served > 0;
        worker.served += 1;
        // Live state, not the copy taken at END_REQUEST: an EOF read in the same batch
        // (php-fpm recycling the child) makes the connection unusable.
        let reusable = finished.reusable
            && worker
                .exchange
                .as_ref()
                .is_some_and(|exchange| exchange.is_reusable());
        worker.exchange = None;
        let Some(job) = worker.job.take() else {
            return;
        };
        self.timers.cancel(TimerKey::Worker(token));
        self.pools[pool].in_flight = self.pools[pool].in_flight.saturating_sub(1);
        let keep = reusable
            && self.pools[pool].config.keep_conn
            && matches!(self.phase, Phase::Running | Phase::Draining { .. });
        if keep {
            self.keep_idle(token, pool, now);
        } else {
            self.mark_close(token);
        }
        self.pools[pool]
            .metrics
            .on_stderr_lines(finished.stderr.lines);
        self.pools[pool].metrics.on_job_finished(finished.duration);
        if finished.stderr.total_bytes > 0 {
            warn!(
                "pool {}: job {} stderr ({} bytes, {} lines): {}",
                self.pools[pool].name,
                job.log_id(),
                finished.stderr.total_bytes,
                finished.stderr.lines,
                String::from_utf8_lossy(&finished.stderr.excerpt).trim_end()
            );
        }
        debug!(
            "pool {}: job {} answered after {} ms in ferry",
            self.pools[pool].name,
            job.log_id(),
            now.saturating_duration_since(job.received_at).as_millis()
        );
        let require_action = self.sources[job.source].job.require_action_header;
        let outcome = classify(Attempt::Finished(&finished), require_action, reused);
        self.on_outcome(job, outcome, now);
    }

    /// Puts a connection in the pool's idle list, if it still leads to the pool's
    /// current backend; closes it otherwise (it was in flight during a reload that
    /// changed the pool: reused, it would keep the old workers busy forever).
    fn keep_idle(&mut self, token: usize, pool: usize, now: Instant) {
        let current = matches!(
            self.slab.get(token),
            Some(Endpoint::Worker(w)) if w.generation == self.pools[pool].generation
        );
        if current {
            self.pools[pool].idle.push(token);
            self.arm_idle(token, pool, now);
        } else {
            self.mark_close(token);
        }
    }

    fn arm_idle(&mut self, token: usize, pool: usize, now: Instant) {
        let idle = Duration::from_millis(self.pools[pool].config.idle_timeout_ms);
        self.timers.arm(TimerKey::Worker(token), now + idle);
    }

    /// EOF or a write error on a worker.
    fn worker_eof(&mut self, token: usize, now: Instant) {
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        match worker.exchange.as_mut() {
            Some(exchange) => {
                exchange.handle_eof(now);
                if let Some(ExchangeEvent::Finished(finished)) = exchange.poll_event() {
                    self.complete_job(token, finished, now);
                }
            }
            None => self.mark_close(token),
        }
        self.mark_close(token);
    }

    fn worker_connect_failed(&mut self, token: usize, failure: ConnectFailure, now: Instant) {
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        let pool = worker.pool;
        let job = worker.job.take();
        worker.exchange = None;
        self.mark_close(token);
        self.timers.cancel(TimerKey::Worker(token));
        if job.is_none() {
            self.pools[pool].probing = false;
        }
        match job {
            Some(job) => {
                self.pools[pool].in_flight = self.pools[pool].in_flight.saturating_sub(1);
                let outcome = classify(Attempt::ConnectFailed(failure), false, false);
                self.on_outcome(job, outcome, now);
            }
            None => {
                self.pools[pool].metrics.on_failure(failure.into());
                self.open_circuit(pool, failure_label(failure), now)
            }
        }
    }

    /// A worker deadline: connect timeout, request timeout or idle timeout.
    pub(super) fn on_worker_timer(&mut self, token: usize, now: Instant) {
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        if !worker.connected {
            self.worker_connect_failed(token, ConnectFailure::TimedOut, now);
            return;
        }
        match worker.exchange.as_mut() {
            Some(exchange) => {
                exchange.handle_timeout(now);
                match exchange.poll_event() {
                    Some(ExchangeEvent::Finished(finished)) => {
                        self.complete_job(token, finished, now);
                        // php-fpm ignores FCGI_ABORT_REQUEST: closing is the only abort.
                        self.mark_close(token);
                    }
                    None => {
                        if let Some(at) = exchange.poll_timeout() {
                            self.timers.arm(TimerKey::Worker(token), at);
                        }
                    }
                }
            }
            None => {
                let pool = worker.pool;
                self.pools[pool].idle.retain(|&t| t != token);
                self.mark_close(token);
            }
        }
    }

    /// A connect to `pool` succeeded: its circuit closes.
    fn on_pool_connected(&mut self, pool: usize, now: Instant) {
        let p = &mut self.pools[pool];
        p.probing = false;
        if !p.circuit.is_closed() {
            let open_for = p.circuit.open_for(now).unwrap_or_default();
            info!(
                "pool {}: answers again after {} ms; circuit closed",
                p.name,
                open_for.as_millis()
            );
        }
        p.circuit.on_connected();
        p.backoff.reset();
        self.timers.cancel(TimerKey::Probe(pool));
        self.timers.cancel(TimerKey::Release(pool));
        self.resume_parked_sources(pool, now);
    }

    /// A pool failure: the circuit opens (or stays open) and a probe is scheduled.
    pub(super) fn open_circuit(&mut self, pool: usize, reason: &str, now: Instant) {
        if self.pools[pool].is_finished() {
            return;
        }
        let p = &mut self.pools[pool];
        let was_closed = p.circuit.is_closed();
        let delay = p.backoff.next_delay();
        p.circuit.on_pool_failure(now, delay);
        if was_closed {
            warn!(
                "pool {}: {reason}; circuit open, jobs wait in ferry (probing with backoff)",
                p.name
            );
            let release = Duration::from_millis(p.config.circuit_release_ms);
            self.timers.arm(TimerKey::Release(pool), now + release);
        } else {
            debug!(
                "pool {}: still failing ({reason}); next probe in {delay:?}",
                p.name
            );
        }
        if let Some(at) = p.circuit.next_deadline() {
            self.timers.arm(TimerKey::Probe(pool), at);
        }
    }

    /// Something that may have healed the pool happened (a worker process started, an
    /// address resolved): if its circuit is open, probe at once rather than after the
    /// backoff.
    pub(super) fn probe_now(&mut self, pool: usize, now: Instant) {
        let circuit = &mut self.pools[pool].circuit;
        circuit.probe_now(now);
        if let Some(at) = circuit.next_deadline() {
            self.timers.arm(TimerKey::Probe(pool), at);
        }
    }

    /// Time for a probe connect.
    pub(super) fn on_probe_timer(&mut self, pool: usize, now: Instant) {
        if self.pools[pool].is_finished() || matches!(self.phase, Phase::Closing { .. }) {
            return; // removed by a reload and done, or ferry is closing: no more probes
        }
        if self.pools[pool].probing {
            return;
        }
        if !self.pools[pool].circuit.probe_due(now) {
            // Fired early (the timer was armed for an earlier probe time than the
            // circuit's): the timer is the only thing that will wake the probe, so it
            // must stay armed at the circuit's own deadline.
            if let Some(at) = self.pools[pool].circuit.next_deadline() {
                self.timers.arm(TimerKey::Probe(pool), at);
            }
            return;
        }
        if self.open_circuit_without_workers(pool, now) {
            return;
        }
        if self.pools[pool].targets.is_none() {
            // The address never resolved: look it up again (the answer re-arms the probe).
            if self.pools[pool].resolving.is_none() {
                self.resolve_pool(pool, now);
            }
            if self.pools[pool].targets.is_none() {
                return;
            }
        }
        self.pools[pool].circuit.probe_started();
        self.pools[pool].probing = true;
        match self.open_worker(pool, now) {
            Ok(token) => {
                let timeout = Duration::from_millis(self.pools[pool].config.connect_timeout_ms);
                self.timers.arm(TimerKey::Worker(token), now + timeout);
            }
            Err(failure) => {
                self.pools[pool].probing = false;
                self.pools[pool].metrics.on_failure(failure.into());
                self.open_circuit(pool, failure_label(failure), now);
            }
        }
    }

    /// Puts a job back at the head of its pool's queue (no attempt burned).
    pub(super) fn requeue_front(&mut self, job: Job) {
        let Some(job) = self.may_wait(job) else {
            return;
        };
        let source = &mut self.sources[job.source];
        source.note_enqueued(&job);
        let pool = source.pool;
        self.pools[pool].queue.push_front(job.source, job);
    }

    /// Drops every waiting Redis job (drain deadline).
    pub(super) fn discard_waiting_redis_jobs(&mut self) {
        for pool in 0..self.pools.len() {
            for source in 0..self.sources.len() {
                if self.sources[source].is_amqp() {
                    continue;
                }
                let dropped = self.pools[pool].queue.take_source(source);
                if !dropped.is_empty() {
                    warn!(
                        "source {}: {} waiting messages discarded at shutdown",
                        self.sources[source].name,
                        dropped.len()
                    );
                    self.sources[source]
                        .metrics
                        .on_dropped_many(DropReason::Shutdown, dropped.len() as u64);
                    self.sources[source].clear_waiting();
                }
            }
        }
        let retrying: Vec<u64> = self.retrying.keys().copied().collect();
        for id in retrying {
            if let Some(job) = self.retrying.remove(&id) {
                self.timers.cancel(TimerKey::Retry(id));
                match job.origin {
                    Origin::Amqp { .. } => self.release_amqp(job),
                    Origin::Redis { .. } => {
                        warn!(
                            "source {}: message {} waiting to be retried discarded at shutdown",
                            self.sources[job.source].name,
                            job.log_id()
                        );
                        self.sources[job.source]
                            .metrics
                            .on_dropped(DropReason::Shutdown);
                    }
                }
            }
        }
    }
}

/// The label of a connect failure, for logs.
fn failure_label(failure: ConnectFailure) -> &'static str {
    match failure {
        ConnectFailure::Refused => "connection refused",
        ConnectFailure::NotFound => "socket not found",
        ConnectFailure::BacklogFull => "listen backlog full (EAGAIN)",
        ConnectFailure::TimedOut => "connect timed out",
        ConnectFailure::Other => "connect failed",
    }
}

impl Runtime {
    /// What a finished (or failed) attempt means for its job.
    pub(super) fn on_outcome(&mut self, mut job: Job, outcome: Outcome, now: Instant) {
        let source = job.source;
        if let Some(result) = outcome.attempt_result() {
            self.sources[source].metrics.on_attempt(result);
        }
        match outcome {
            Outcome::Success => self.settle_success(job),
            Outcome::Permanent { reason } => {
                warn!(
                    "source {}: message {} failed permanently ({})",
                    self.sources[source].name,
                    job.log_id(),
                    reason.as_str()
                );
                self.dead_letter(job, reason.as_str());
            }
            Outcome::Retryable {
                reason,
                retry_after,
            } => self.retry_or_give_up(job, reason.as_str(), retry_after, now),
            Outcome::PoolFailure { reason } => {
                let pool = self.sources[source].pool;
                self.pools[pool].metrics.on_failure(reason);
                self.requeue_front(job);
                self.open_circuit(pool, reason.as_str(), now);
            }
            Outcome::ResendOnce if !job.resent => {
                job.resent = true;
                self.requeue_front(job);
            }
            Outcome::ResendOnce => {
                self.retry_or_give_up(job, Reason::ConnectionClosed.as_str(), None, now)
            }
        }
    }
}
