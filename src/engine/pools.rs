//! Worker connections and the life of a job on them (`docs/SEMANTICS.md`, "Outcome of a
//! request" and "Pools and backpressure").
//!
//! php-fpm serves one request per connection, so a pool runs at most `max_in_flight`
//! connections, each carrying one [`Exchange`] at a time. A worker connection is
//! [`WorkerState::Connecting`] (for a job, or as a circuit probe), [`WorkerState::Busy`]
//! with its job, or [`WorkerState::Idle`] — kept after a clean answer with `keep_conn`,
//! watched for EOF and closed after `idle_timeout_ms`; without `keep_conn` it is closed
//! after END_REQUEST. A pool failure puts the job back at the head of its queue, burns no
//! attempt, and opens the circuit; a probe connect after a jittered backoff closes it
//! again.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::backoff::Backoff;
use super::ids::{PoolId, SourceId};
use super::io::{Buffers, ConnId, Connect, ConnectError, Fill, Io};
use super::jobs::{Job, Origin};
use super::{Engine, Peer, Phase, TimerKey};
use crate::config::{Address, PoolConfig};
use crate::dispatch::outcome::{classify, Attempt, ConnectFailure, Outcome, Reason};
use crate::dispatch::pool::{Circuit, FairQueue};
use crate::dispatch::request::RequestOptions;
use crate::metrics::{DropReason, PoolMetrics};
use crate::proto::fastcgi::{Exchange, ExchangeEvent, ExchangeOptions, Finished};

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
    pub queue: FairQueue<Job, SourceId>,
    pub circuit: Circuit,
    backoff: Backoff,
    /// Connections carrying a job or connecting for one (≤ `max_in_flight`).
    pub in_flight: usize,
    /// Idle kept connections, most recently used last.
    idle: Vec<ConnId>,
    /// Where to connect: the configured address, or the socket a spawned pool bound
    /// (`None` until it is bound).
    pub address: Option<Address>,
    /// Whether a probe connection is out.
    probing: bool,
    /// The last FastCGI request id used: each request gets the next, so a stale
    /// END_REQUEST on a kept connection can never end a newer request.
    last_request_id: u16,
    /// Requests finished (answered, failed or timed out) over the pool's life.
    completed: u64,
    /// What ferry learned of how many connections the workers serve at once.
    pub capacity: Capacity,
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

/// A job on a worker connection, with its FastCGI exchange.
pub(super) struct Assignment {
    pub job: Job,
    exchange: Exchange,
    /// Some answer bytes arrived (a worker took the request).
    answered: bool,
    /// Bytes queued when the request was handed to the socket: while all of them are
    /// still queued, no byte of it left ferry (see [`Engine::worker_never_reached`]).
    queued_at_transmit: usize,
    /// The pool's `completed` count when the request was started: how many other
    /// requests finished while this one waited (see [`Capacity`]).
    started_at_completed: u64,
}

/// What ferry learned of how many connections a pool's workers serve at once
/// (`docs/SEMANTICS.md`, "Pools and backpressure").
///
/// With `keep_conn`, a php-fpm child serves one kept connection until ferry closes it:
/// a connection beyond the number of children waits in the listen backlog, unanswered,
/// while the kept ones are served again and again. ferry watches for exactly that — a
/// request without a single answer byte while the other connections of the pool finished
/// [`STARVED_AFTER`] rounds of requests — and then (1) closes the connection that just
/// finished instead of keeping it, which frees its worker for the waiting connection,
/// and (2) keeps no more connections than the pool was seen to serve, as if
/// `max_in_flight` were that number. Every [`CAPACITY_RECHECK`] it tries one connection
/// more (a pool can grow: php-fpm's dynamic children, a reload).
#[derive(Debug, Default)]
pub(super) struct Capacity {
    /// Connections served at once, when learned.
    pub learned: Option<usize>,
    /// When one more connection may be tried.
    recheck_at: Option<Instant>,
    /// The last change was such a try: a starved request now takes it back.
    trying_more: bool,
}

/// Rounds of answers on the other connections without a byte on this one that make a
/// request "starved" (a slow script also answers nothing for a while, but not while every
/// other connection answers twice).
const STARVED_AFTER: u64 = 2;
/// How often a learned capacity is probed upward.
const CAPACITY_RECHECK: Duration = Duration::from_secs(30);

/// Where a worker connection stands.
pub(super) enum WorkerState {
    /// The connect is under way: for a job (sent once connected), or as a probe of an
    /// open circuit (`None`).
    Connecting(Option<Box<Assignment>>),
    /// Connected, carrying nothing: a kept connection waiting for the next job.
    Idle,
    /// Its request is written or being written; the answer is awaited.
    Busy(Box<Assignment>),
}

/// A worker connection.
pub(super) struct Worker {
    pub pool: PoolId,
    pub buffers: Buffers,
    pub state: WorkerState,
    /// Requests completed on this connection (a reused kept connection has > 0).
    served: u32,
    /// The pool's [`Pool::generation`] when it connected: which backend it reaches.
    pub generation: u64,
}

impl Worker {
    /// The job it carries (connecting for it or busy with it).
    pub fn job(&self) -> Option<&Job> {
        match &self.state {
            WorkerState::Connecting(Some(a)) | WorkerState::Busy(a) => Some(&a.job),
            WorkerState::Connecting(None) | WorkerState::Idle => None,
        }
    }

    fn job_mut(&mut self) -> Option<&mut Job> {
        match &mut self.state {
            WorkerState::Connecting(Some(a)) | WorkerState::Busy(a) => Some(&mut a.job),
            WorkerState::Connecting(None) | WorkerState::Idle => None,
        }
    }

    fn is_connected(&self) -> bool {
        !matches!(self.state, WorkerState::Connecting(_))
    }

    /// Takes the job and its exchange off the connection; it becomes idle.
    fn take_assignment(&mut self) -> Option<Box<Assignment>> {
        match std::mem::replace(&mut self.state, WorkerState::Idle) {
            WorkerState::Connecting(a) => a,
            WorkerState::Busy(a) => Some(a),
            WorkerState::Idle => None,
        }
    }
}

impl Pool {
    pub fn new(name: String, config: PoolConfig, backoff: Backoff) -> Pool {
        Pool {
            name,
            address: config.address.clone(),
            config,
            queue: FairQueue::default(),
            circuit: Circuit::default(),
            backoff,
            in_flight: 0,
            idle: Vec::new(),
            probing: false,
            last_request_id: 0,
            completed: 0,
            capacity: Capacity::default(),
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
    pub fn take_idle(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.idle)
    }

    /// True when a pool removed by a reload has nothing left to do.
    pub fn is_finished(&self) -> bool {
        self.retired && self.queue.is_empty() && self.in_flight == 0
    }

    /// Idle kept connections.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// `max_in_flight`, or fewer with kept connections once the pool was seen to serve
    /// fewer at once ([`Capacity`]).
    fn max_in_flight(&self) -> usize {
        let configured = usize::try_from(self.config.max_in_flight).unwrap_or(usize::MAX);
        match self.capacity.learned {
            Some(learned) if self.config.keep_conn => configured.min(learned.max(1)),
            _ => configured,
        }
    }
}

impl Engine {
    /// Readies a pool: a spawned pool binds its socket and starts its workers; an
    /// `address` pool needs nothing until its first job (the reactor resolves a host name
    /// at connect time).
    pub(super) fn start_pool(&mut self, pool: PoolId, now: Instant, io: &mut dyn Io) {
        if self.pools[pool].config.address.is_none() {
            self.start_spawned_pool(pool, now, io);
        }
    }

    /// Starts waiting jobs while the pool has room and its circuit is closed.
    pub(super) fn pump_pool(&mut self, pool: PoolId, now: Instant, io: &mut dyn Io) {
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        loop {
            let p = &mut self.pools[pool];
            if !p.circuit.is_closed()
                || p.in_flight >= p.max_in_flight()
                || p.queue.is_empty()
                || p.address.is_none()
            {
                return;
            }
            let Some((_, job)) = p.queue.pop() else {
                return;
            };
            self.dequeued(&job);
            self.start_job(pool, job, now, io);
        }
    }

    /// Builds the request for `job` and sends it on an idle or a new connection.
    fn start_job(&mut self, pool: PoolId, job: Job, now: Instant, io: &mut dyn Io) {
        let request_id = self.pools[pool].next_request_id();
        let source = &self.sources[job.source];
        let keep_conn = self.pools[pool].config.keep_conn;
        let mut request = Vec::new();
        let message = job.message(
            &source.name,
            source.channels(),
            source.patterns(),
            source.queue_or_stream(),
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
        let request_timeout = Duration::from_millis(self.pools[pool].config.request_timeout_ms);
        let mut options = ExchangeOptions::new(request_timeout);
        options.request_id = request_id;
        options.keep_conn = keep_conn;
        let assignment = Box::new(Assignment {
            job,
            exchange: Exchange::new(request, options, now),
            answered: false,
            queued_at_transmit: 0,
            started_at_completed: self.pools[pool].completed,
        });
        self.pools[pool].in_flight += 1;
        if let Some(conn) = self.take_idle(pool) {
            if let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) {
                worker.state = WorkerState::Busy(assignment);
            }
            self.transmit_request(conn, now, io);
            return;
        }
        let conn = self.open_worker(pool, Some(assignment));
        let connect_timeout = Duration::from_millis(self.pools[pool].config.connect_timeout_ms);
        self.timers
            .arm(TimerKey::Worker(conn), now + connect_timeout);
        self.connect_worker(conn, pool, now, io);
    }

    /// Takes an idle kept connection of `pool`, if one is still there.
    fn take_idle(&mut self, pool: PoolId) -> Option<ConnId> {
        let generation = self.pools[pool].generation;
        while let Some(conn) = self.pools[pool].idle.pop() {
            if matches!(self.peers.get(conn.0), Some(Peer::Worker(w))
                    if matches!(w.state, WorkerState::Idle) && w.generation == generation)
                && !self.to_close.contains(&conn)
            {
                self.timers.cancel(TimerKey::Worker(conn));
                return Some(conn);
            }
        }
        None
    }

    /// A new worker connection of `pool` (connecting; the caller starts the connect).
    fn open_worker(&mut self, pool: PoolId, assignment: Option<Box<Assignment>>) -> ConnId {
        let worker = Worker {
            pool,
            buffers: Buffers::new(WORKER_READ_CAP, WORKER_WRITE_HIGH_WATER),
            state: WorkerState::Connecting(assignment),
            served: 0,
            generation: self.pools[pool].generation,
        };
        ConnId(self.peers.insert(Peer::Worker(Box::new(worker))))
    }

    /// Asks the reactor to connect `conn` to the pool; a connect that fails at once
    /// (a unix socket missing, refused, its backlog full) is handled now.
    fn connect_worker(&mut self, conn: ConnId, pool: PoolId, now: Instant, io: &mut dyn Io) {
        let result = match &self.pools[pool].address {
            Some(address) => io.connect(conn, address, None),
            None => Err(ConnectError {
                failure: ConnectFailure::Other,
                message: "no address yet".into(),
            }),
        };
        match result {
            // A unix socket connects at once: write the request in this turn, with no
            // wake-up for writability and no change of the poll's interest.
            Ok(Connect::Done) => self.on_worker_connected(conn, now, io),
            Ok(Connect::Pending) => {}
            Err(e) => self.worker_connect_failed(conn, e.failure, now),
        }
    }

    /// Hands the exchange's request to the socket and arms the request deadline.
    fn transmit_request(&mut self, conn: ConnId, now: Instant, io: &mut dyn Io) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        let WorkerState::Busy(assignment) = &mut worker.state else {
            return;
        };
        assignment
            .exchange
            .poll_transmit(worker.buffers.write_buf());
        let deadline = assignment.exchange.poll_timeout();
        let source = assignment.job.source;
        let queued = worker.buffers.pending_output();
        assignment.queued_at_transmit = queued;
        if let Err(e) = io.flush(conn, &mut worker.buffers) {
            debug!("worker connection lost while writing: {e}");
            let untouched = worker.served == 0 && worker.buffers.pending_output() == queued;
            if untouched {
                self.worker_never_reached(conn, now);
            } else {
                self.worker_eof(conn, now);
            }
            return;
        }
        if let Some(at) = deadline {
            self.timers.arm(TimerKey::Worker(conn), at);
        }
        self.on_dispatched(conn, source);
    }

    /// The connect of a worker connection completed.
    pub(super) fn on_worker_connected(&mut self, conn: ConnId, now: Instant, io: &mut dyn Io) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        // Only a connection still connecting (a second report of the same connect, or
        // one for a connection already in use, changes nothing).
        if !matches!(worker.state, WorkerState::Connecting(_)) {
            return;
        }
        let WorkerState::Connecting(assignment) =
            std::mem::replace(&mut worker.state, WorkerState::Idle)
        else {
            return;
        };
        let pool = worker.pool;
        self.on_pool_connected(pool, now);
        match assignment {
            Some(assignment) => {
                if let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) {
                    worker.state = WorkerState::Busy(assignment);
                }
                self.transmit_request(conn, now, io);
            }
            // A probe: it proved the pool answers; let a waiting job use it.
            None => self.keep_idle(conn, pool, now),
        }
    }

    /// The reactor read a worker connection.
    pub(super) fn on_worker_ready(&mut self, conn: ConnId, fill: Fill, now: Instant) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        let WorkerState::Busy(assignment) = &mut worker.state else {
            if worker.is_connected() {
                // Idle kept connection: php-fpm closed it (EOF) or sent what it should not.
                if !matches!(fill, Fill::Drained | Fill::Skipped) || worker.buffers.unconsumed() > 0
                {
                    self.mark_close(conn);
                }
            }
            return;
        };
        if worker.buffers.unconsumed() > 0 {
            assignment.answered = true;
        }
        // The connection failed while not one byte of the request had left ferry (the
        // socket took nothing, then php-fpm reset it): no worker saw the job.
        let untouched = worker.served == 0
            && !assignment.answered
            && assignment.queued_at_transmit > 0
            && worker.buffers.pending_output() == assignment.queued_at_transmit;
        if untouched && matches!(fill, Fill::Eof | Fill::Failed) {
            self.worker_never_reached(conn, now);
            return;
        }
        let exchange = &mut assignment.exchange;
        let buffers = &mut worker.buffers;
        let mut progressed = false;
        let mut failed = false;
        while buffers.unconsumed() > 0 && !exchange.is_finished() {
            match exchange.handle_input(buffers.input(), now) {
                Ok(0) => break,
                Ok(n) => {
                    buffers.consume(n);
                    progressed = true;
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        match fill {
            Fill::Eof | Fill::Failed => exchange.handle_eof(now),
            Fill::Full if !progressed && !failed && !exchange.is_finished() => {
                exchange.handle_eof(now)
            }
            _ => {}
        }
        if let Some(ExchangeEvent::Finished(finished)) = exchange.poll_event() {
            self.complete_job(conn, finished, now);
            return;
        }
        match fill {
            Fill::Full if progressed => self.rearm_read.push(conn),
            Fill::Drained | Fill::Skipped => {
                if let Some(at) = exchange.poll_timeout() {
                    self.timers.arm(TimerKey::Worker(conn), at);
                }
            }
            _ => {}
        }
    }

    /// The exchange on `conn` ended: classify, settle, keep or close the connection.
    fn complete_job(&mut self, conn: ConnId, finished: Finished, now: Instant) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        let pool = worker.pool;
        let reused = worker.served > 0;
        worker.served += 1;
        let Some(assignment) = worker.take_assignment() else {
            return;
        };
        // Live state, not the copy taken at END_REQUEST: an EOF read in the same batch
        // (php-fpm recycling the child) makes the connection unusable.
        let reusable = finished.reusable && assignment.exchange.is_reusable();
        let job = assignment.job;
        self.timers.cancel(TimerKey::Worker(conn));
        self.pools[pool].in_flight = self.pools[pool].in_flight.saturating_sub(1);
        self.pools[pool].completed += 1;
        let starving = self.pools[pool].config.keep_conn && self.note_starved(pool, conn, now);
        let keep = reusable
            && !starving
            && self.pools[pool].config.keep_conn
            && matches!(self.phase, Phase::Running | Phase::Draining { .. });
        if keep {
            self.keep_idle(conn, pool, now);
        } else {
            self.mark_close(conn);
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
    fn keep_idle(&mut self, conn: ConnId, pool: PoolId, now: Instant) {
        let current = matches!(
            self.peers.get(conn.0),
            Some(Peer::Worker(w)) if w.generation == self.pools[pool].generation
        );
        if current {
            self.pools[pool].idle.push(conn);
            let idle = Duration::from_millis(self.pools[pool].config.idle_timeout_ms);
            self.timers.arm(TimerKey::Worker(conn), now + idle);
        } else {
            self.mark_close(conn);
        }
    }

    /// A new connection failed before any byte of its request was written: php-fpm
    /// reset it between accepting it and reading it (a restart, an outage). No worker
    /// saw the job, so this is a pool failure like a refused connect — no attempt
    /// counted (`docs/SEMANTICS.md`, "Outcome of a request") — not the "EOF after the
    /// request was written" that burns one.
    fn worker_never_reached(&mut self, conn: ConnId, now: Instant) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        let pool = worker.pool;
        let Some(assignment) = worker.take_assignment() else {
            return;
        };
        self.mark_close(conn);
        self.timers.cancel(TimerKey::Worker(conn));
        self.pools[pool].in_flight = self.pools[pool].in_flight.saturating_sub(1);
        let outcome = classify(
            Attempt::ConnectFailed(ConnectFailure::Refused),
            false,
            false,
        );
        self.on_outcome(assignment.job, outcome, now);
    }

    /// EOF or a write error on a worker.
    fn worker_eof(&mut self, conn: ConnId, now: Instant) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        if let WorkerState::Busy(assignment) = &mut worker.state {
            assignment.exchange.handle_eof(now);
            if let Some(ExchangeEvent::Finished(finished)) = assignment.exchange.poll_event() {
                self.complete_job(conn, finished, now);
            }
        }
        self.mark_close(conn);
    }

    pub(super) fn worker_connect_failed(
        &mut self,
        conn: ConnId,
        failure: ConnectFailure,
        now: Instant,
    ) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        let pool = worker.pool;
        let assignment = match std::mem::replace(&mut worker.state, WorkerState::Idle) {
            WorkerState::Connecting(assignment) => assignment,
            other => {
                worker.state = other;
                return;
            }
        };
        self.mark_close(conn);
        self.timers.cancel(TimerKey::Worker(conn));
        match assignment {
            Some(assignment) => {
                self.pools[pool].in_flight = self.pools[pool].in_flight.saturating_sub(1);
                let outcome = classify(Attempt::ConnectFailed(failure), false, false);
                self.on_outcome(assignment.job, outcome, now);
            }
            None => {
                self.pools[pool].probing = false;
                self.pools[pool].metrics.on_failure(failure.into());
                self.open_circuit(pool, failure_label(failure), now)
            }
        }
    }

    /// A worker deadline: connect timeout, request timeout or idle timeout.
    pub(super) fn on_worker_timer(&mut self, conn: ConnId, now: Instant) {
        let Some(Peer::Worker(worker)) = self.peers.get_mut(conn.0) else {
            return;
        };
        match &mut worker.state {
            WorkerState::Connecting(_) => {
                self.worker_connect_failed(conn, ConnectFailure::TimedOut, now);
            }
            WorkerState::Busy(assignment) => {
                assignment.exchange.handle_timeout(now);
                match assignment.exchange.poll_event() {
                    Some(ExchangeEvent::Finished(finished)) => {
                        self.complete_job(conn, finished, now);
                        // php-fpm ignores FCGI_ABORT_REQUEST: closing is the only abort.
                        self.mark_close(conn);
                    }
                    None => {
                        if let Some(at) = assignment.exchange.poll_timeout() {
                            self.timers.arm(TimerKey::Worker(conn), at);
                        }
                    }
                }
            }
            WorkerState::Idle => {
                let pool = worker.pool;
                self.pools[pool].idle.retain(|&c| c != conn);
                self.mark_close(conn);
            }
        }
    }

    /// A connect to `pool` succeeded: its circuit closes.
    fn on_pool_connected(&mut self, pool: PoolId, now: Instant) {
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
    pub(super) fn open_circuit(&mut self, pool: PoolId, reason: &str, now: Instant) {
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
            // No job starts while the circuit is open, and probes open connections of
            // their own: idle kept connections would only pin php-fpm children (maybe
            // the very children whose absence made connects fail) and pile up, one per
            // successful probe, past `max_in_flight`.
            for conn in self.pools[pool].take_idle() {
                self.mark_close(conn);
            }
        } else {
            debug!(
                "pool {}: still failing ({reason}); next probe in {delay:?}",
                p.name
            );
        }
        if let Some(at) = self.pools[pool].circuit.next_deadline() {
            self.timers.arm(TimerKey::Probe(pool), at);
        }
    }

    /// Something that may have healed the pool happened (a worker process started): if
    /// its circuit is open, probe at once rather than after the backoff.
    pub(super) fn probe_now(&mut self, pool: PoolId, now: Instant) {
        let circuit = &mut self.pools[pool].circuit;
        circuit.probe_now(now);
        if let Some(at) = circuit.next_deadline() {
            self.timers.arm(TimerKey::Probe(pool), at);
        }
    }

    /// Time for a probe connect.
    pub(super) fn on_probe_timer(&mut self, pool: PoolId, now: Instant, io: &mut dyn Io) {
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
        if self.pools[pool].address.is_none() {
            // A spawned pool whose socket could not be bound: try again.
            self.start_pool(pool, now, io);
            if self.pools[pool].address.is_none() {
                return;
            }
        }
        self.pools[pool].circuit.probe_started();
        self.pools[pool].probing = true;
        let conn = self.open_worker(pool, None);
        let timeout = Duration::from_millis(self.pools[pool].config.connect_timeout_ms);
        self.timers.arm(TimerKey::Worker(conn), now + timeout);
        self.connect_worker(conn, pool, now, io);
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

    /// After a request of `pool` finished on `finished`: true when another connection
    /// of the pool starves (see [`Capacity`]); the capacity is learned then. Also lets a
    /// learned capacity grow by one every [`CAPACITY_RECHECK`].
    fn note_starved(&mut self, pool: PoolId, finished: ConnId, now: Instant) -> bool {
        let completed = self.pools[pool].completed;
        // The pool's connections but the one that just finished, and the longest a
        // request that no worker ever answered has waited, in completed requests.
        let mut others = 0u64;
        let mut longest_unanswered = 0u64;
        let mut served = 0usize;
        for (key, peer) in self.peers.iter() {
            let Peer::Worker(w) = peer else { continue };
            if w.pool != pool || ConnId(key) == finished {
                continue;
            }
            others += 1;
            if w.served > 0 || matches!(&w.state, WorkerState::Busy(a) if a.answered) {
                served += 1;
            }
            // Only a connection no worker ever answered can wait in the backlog: a kept
            // connection that served before belongs to a worker.
            if let WorkerState::Busy(a) = &w.state {
                if w.served == 0 && !a.answered {
                    let rounds = completed.saturating_sub(a.started_at_completed);
                    longest_unanswered = longest_unanswered.max(rounds);
                }
            }
        }
        // A waiting request is measured against every other connection of the pool, the
        // one that just finished included (the count above holds the waiter itself, not
        // the finished one: the same number). Not against the requests in flight: answers
        // read in one batch each lower that count before the next request is dispatched,
        // so equal jobs finishing together made the last of them look starved.
        let starved = longest_unanswered >= STARVED_AFTER * others.max(1);
        // The connection that just finished was served too.
        let served = served + 1;
        let p = &mut self.pools[pool];
        if starved {
            // Learned once; afterwards only a failed try of one more takes it back (the
            // connections this very rule closes must not lower it further).
            let learned = match (p.capacity.learned, p.capacity.trying_more) {
                (None, _) => served,
                (Some(c), true) => c.saturating_sub(1).max(1),
                (Some(c), false) => c,
            };
            if p.capacity.learned != Some(learned) {
                warn!(
                    "pool {}: a request waits in a connection no worker accepts while the others are served; \
                     keeping at most {learned} connections (the pool serves {learned} at once)",
                    p.name
                );
            }
            p.capacity.learned = Some(learned);
            p.capacity.trying_more = false;
            p.capacity.recheck_at = Some(now + CAPACITY_RECHECK);
            return true;
        }
        if let (Some(learned), Some(at)) = (p.capacity.learned, p.capacity.recheck_at) {
            if now >= at {
                // Try one more: a starved request shows within a few rounds if it is
                // one too many.
                p.capacity.learned = Some(learned + 1);
                p.capacity.trying_more = true;
                p.capacity.recheck_at = Some(now + CAPACITY_RECHECK);
            }
        }
        false
    }

    /// Drops every waiting Redis job (drain deadline).
    pub(super) fn discard_waiting_redis_jobs(&mut self) {
        for pool in self.pools.keys() {
            for source in self.sources.keys() {
                if self.sources[source].is_amqp() || self.sources[source].stream.is_some() {
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
        let retrying: Vec<_> = self.retrying.keys().copied().collect();
        for id in retrying {
            if let Some(job) = self.retrying.remove(&id) {
                self.timers.cancel(TimerKey::Retry(id));
                match job.origin {
                    Origin::Amqp { .. } => self.release_amqp(job),
                    // Still pending in its group: read again at the next start.
                    Origin::Stream { entry_id, .. } => self.stream_forget(job.source, entry_id),
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

    /// The job of worker `conn`, mutably (`ack: on_dispatch` marks it acked).
    pub(super) fn worker_job_mut(&mut self, conn: ConnId) -> Option<&mut Job> {
        match self.peers.get_mut(conn.0) {
            Some(Peer::Worker(worker)) => worker.job_mut(),
            _ => None,
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
