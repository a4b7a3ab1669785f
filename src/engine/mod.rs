//! ferry's decisions as one sans-IO state machine: intake from the sources, the
//! backlog, dispatch to pools, the outcome of each request and how it is settled,
//! retries, circuit breakers, pause, drain, reload and the supervision of spawned
//! workers. See `docs/ARCHITECTURE.md` for the walk of a message through it, and
//! `docs/SEMANTICS.md` for the rules it implements.
//!
//! The engine holds every protocol session (through `crate::proto`) and every piece of
//! state; it never touches a socket, a clock or a process. Inputs come in as calls with
//! `now` — bytes the reactor read into a connection's buffers ([`Engine::handle_ready`]),
//! a connect that completed or failed, an accepted connection, a timer, a signal, a
//! reloaded configuration — and what it wants done goes out through [`io::Io`]: write,
//! connect, listen, close, bind a worker socket, start or signal a process, notify
//! systemd. [`Engine::poll_timeout`] tells the loop when to wake; [`Engine::end_turn`]
//! runs what is due at the end of every loop turn and says when ferry is done.
//!
//! # Layout
//! - `io.rs`: the boundary (connection ids, buffers, the [`io::Io`] commands).
//! - `ids.rs`: typed ids for sources, pools and jobs; tables that free removed entries.
//! - `sources.rs`: Redis and AMQP sources — connection state, sessions, intake.
//! - `streams.rs`: Redis Streams sources — reads sized to the pool, acks, retries by
//!   claim, dead letters, recovery and takeover of idle entries.
//! - `sentinel.rs`: sources behind Redis Sentinel — the watch connection to a sentinel,
//!   the master's address, `+switch-master`.
//! - `settle.rs`: what an outcome does to a message (the settlement table) and how it is
//!   carried out with the broker.
//! - `pools.rs`: worker connections, starting jobs, outcomes, the circuit breaker.
//! - `endpoint.rs`: RESP endpoint sources — their clients, publish and fan-out.
//! - `control.rs`: the control endpoint's answers.
//! - `spawned.rs`: spawned pools' worker processes: when to start, restart and stop.
//! - `reload.rs`: SIGHUP — sources and pools added, changed, removed.
//! - `fds.rs`: the descriptor budget of RESP endpoint and control clients.
//! - `jobs.rs`: a job and its origin. `timers.rs`, `backoff.rs`: deadlines and jittered
//!   backoff, both fed `now`.

pub mod backoff;
mod control;
mod endpoint;
mod fds;
pub mod ids;
pub mod io;
mod jobs;
mod pools;
mod reload;
mod sentinel;
pub mod settle;
mod sources;
mod spawned;
mod streams;
#[cfg(test)]
mod tests;
pub mod timers;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use log::{info, warn};
use slab::Slab;

use crate::config::Config;
use crate::dispatch::request::RequestBuilder;
use backoff::Backoff;
use ids::{JobId, PoolId, SourceId, Table};
use io::{Buffers, ConnId, ConnectError, Fill, Io, Notice};
use pools::{Pool, Worker};
use sources::Source;
use timers::Timers;

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKey {
    /// A source's session deadline (heartbeat, keepalive, handshake) or its reconnect.
    Source(SourceId),
    /// A source's sentinel watch: its connect timeout, keepalive or reconnect.
    Sentinel(SourceId),
    /// A worker connection's deadline (connect timeout, request timeout, idle timeout).
    Worker(ConnId),
    /// A pool's circuit probe.
    Probe(PoolId),
    /// A pool's circuit has been open for `circuit_release_ms`: AMQP sources let go.
    Release(PoolId),
    /// A job waiting out its retry delay (Redis, a stream entry, or AMQP `retry: hold`).
    Retry(JobId),
    /// A stream source's housekeeping (`XAUTOCLAIM` scan, status poll) is due.
    Stream(SourceId),
    /// A control or RESP client's idle or linger timeout.
    Client(ConnId),
    /// Time to tell systemd's watchdog the loop is alive.
    Watchdog,
    /// The drain's end.
    DrainDeadline,
    /// A spawned pool's backed-off process restarts.
    Restart(PoolId),
    /// Worker processes sent SIGTERM get SIGKILL.
    StopProcesses,
}

/// One connection (or listener) the engine knows, by [`ConnId`].
enum Peer {
    /// A source's broker connection.
    Source { source: SourceId, buffers: Buffers },
    /// A source's connection to a Redis sentinel (`sentinel.rs`).
    Sentinel { source: SourceId, buffers: Buffers },
    /// A worker connection.
    Worker(Box<Worker>),
    /// The control endpoint's listener.
    ControlListener,
    /// A control endpoint client; `closing` once its last answer (`Connection: close`)
    /// is queued: it is closed when that answer is written, not before.
    ControlClient { buffers: Buffers, closing: bool },
    /// A RESP endpoint source's listener.
    RespListener { source: SourceId },
    /// A Redis client of a RESP endpoint.
    RespClient(Box<endpoint::RespClient>),
}

impl Peer {
    /// The buffers, for every peer that is a connection.
    fn buffers_mut(&mut self) -> Option<&mut Buffers> {
        match self {
            Peer::Source { buffers, .. }
            | Peer::Sentinel { buffers, .. }
            | Peer::ControlClient { buffers, .. } => Some(buffers),
            Peer::Worker(worker) => Some(&mut worker.buffers),
            Peer::RespClient(client) => Some(&mut client.buffers),
            Peer::ControlListener | Peer::RespListener { .. } => None,
        }
    }
}

/// Where the process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM/INT received: intake stopped, in-flight work finishing until `deadline`.
    Draining {
        deadline: Instant,
    },
    /// Everything settled or the deadline passed: connections closing.
    Closing {
        deadline: Instant,
    },
}

/// What an accepted connection becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// A new connection with this id: the reactor registers it.
    Take(ConnId),
    /// Refused: the reactor writes these bytes (best effort) and closes it.
    Refuse(&'static [u8]),
}

/// Why the engine could not start.
#[derive(Debug)]
pub enum StartError {
    /// The control endpoint could not listen on its address.
    Control(String, String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Control(address, e) => {
                write!(f, "control endpoint: cannot listen on {address}: {e}")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// How the engine is run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seed for backoff jitter (per process, so a fleet spreads out).
    pub seed: u64,
    /// Running under systemd's notify protocol (`STATUS=` lines are sent).
    pub notify: bool,
    /// systemd's watchdog interval, when it asks for one.
    pub watchdog: Option<Duration>,
    /// This process's id (AMQP consumer tags name it).
    pub pid: u32,
}

/// The engine; see the module docs.
pub struct Engine {
    peers: Slab<Peer>,
    timers: Timers<TimerKey>,
    sources: Table<SourceId, Source>,
    pools: Table<PoolId, Pool>,
    builder: RequestBuilder,
    /// Jobs waiting out a retry delay. Ordered by job id, so what walks it (a hand-back
    /// on drain or pause, the discards at the drain deadline) acts in the same order on
    /// every run: the deterministic simulation (`docs/SIMULATION.md`) replays a seed bit
    /// for bit only if the engine has no hash-order-dependent output.
    retrying: BTreeMap<JobId, jobs::Job>,
    next_job_id: u64,
    phase: Phase,
    shutdown_timeout: Duration,
    /// Connections to close once the current batch of events is handled.
    to_close: Vec<ConnId>,
    /// Connections to read again without an event (a fill stopped at its limit).
    rearm_read: Vec<ConnId>,
    /// Sources whose session has output to write at the end of the loop turn.
    dirty_sources: Vec<SourceId>,
    /// RESP endpoint clients with published messages to write at the end of the turn.
    dirty_clients: Vec<ConnId>,
    /// RESP endpoint clients the fd limit allows, over all endpoints (`fds.rs`).
    resp_client_budget: usize,
    /// Control clients the fd limit allows (at most `control::MAX_CLIENTS`).
    control_max_clients: usize,
    seed: u64,
    /// The bearer token POST requests to the control endpoint must carry.
    control_token: Option<String>,
    /// When the engine started (`/status` uptime).
    started_at: Instant,
    options: Options,
    /// The last `STATUS=` line sent (sent again only when it changes).
    last_status: String,
    /// Spawned pools' shared state.
    spawned: spawned::Processes,
    /// Sources and pools created so far (each gets its own jitter seed).
    added: u64,
    /// Start-up is over (every source connected once, or [`STARTUP_SETTLES`] passed):
    /// the code only start-up ran was let go of.
    settled: bool,
}

/// How long start-up may take before its code is let go of even if a source is still
/// connecting (a broker outage at start must not keep it resident forever).
const STARTUP_SETTLES: Duration = Duration::from_secs(10);

impl Engine {
    /// Creates the pools and sources of `config`, binds the listeners and starts
    /// connecting. Sends `READY=1`: ferry does not wait for brokers, so a broker outage
    /// never puts systemd into a restart loop (`docs/OPERATIONS.md`).
    pub fn start(
        config: &Config,
        options: Options,
        now: Instant,
        io: &mut dyn Io,
    ) -> Result<Engine, StartError> {
        let mut engine = Engine {
            peers: Slab::new(),
            timers: Timers::default(),
            sources: Table::default(),
            pools: Table::default(),
            builder: RequestBuilder::default(),
            retrying: BTreeMap::new(),
            next_job_id: 1,
            phase: Phase::Running,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
            to_close: Vec::new(),
            rearm_read: Vec::new(),
            dirty_sources: Vec::new(),
            dirty_clients: Vec::new(),
            resp_client_budget: usize::MAX,
            control_max_clients: control::MAX_CLIENTS,
            seed: options.seed,
            control_token: config.control.token.clone(),
            started_at: now,
            options,
            last_status: String::new(),
            spawned: spawned::Processes::default(),
            added: 0,
            settled: false,
        };
        if let Some(address) = &config.control.listen {
            let conn = ConnId(engine.peers.insert(Peer::ControlListener));
            if let Err(e) = io.listen(conn, address) {
                engine.peers.remove(conn.0);
                return Err(StartError::Control(address.to_string(), e));
            }
            info!("control endpoint listening on {address}");
        }
        for (name, pool) in &config.pools {
            engine.add_pool(name, pool);
        }
        for source in &config.sources {
            engine.add_source(source);
        }
        engine.update_fd_budget(io);
        for pool in engine.pools.keys() {
            engine.start_pool(pool, now, io);
        }
        for source in engine.sources.keys() {
            engine.connect_source(source, now, io);
        }
        info!(
            "ferry {} started: {} sources, {} pools",
            env!("CARGO_PKG_VERSION"),
            engine.sources.len(),
            engine.pools.len()
        );
        io.notify(Notice::Ready);
        if let Some(interval) = options.watchdog {
            engine.timers.arm(TimerKey::Watchdog, now + interval);
        }
        Ok(engine)
    }

    /// Adds a pool of the configuration (at start or by a reload).
    fn add_pool(&mut self, name: &str, config: &crate::config::PoolConfig) -> PoolId {
        let salt = self.bump_added();
        self.pools.insert(Pool::new(
            name.to_string(),
            config.clone(),
            Backoff::new(
                Duration::from_millis(200),
                Duration::from_secs(5),
                self.seed ^ salt,
            ),
        ))
    }

    /// Adds a source of the configuration, feeding the live pool it names.
    fn add_source(&mut self, config: &crate::config::SourceConfig) -> Option<SourceId> {
        let pool = self
            .pools
            .position(|p| !p.retired && p.name == config.job().pool)?;
        let salt = self.bump_added();
        Some(self.sources.insert(Source::new(
            config.clone(),
            pool,
            Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(30),
                self.seed.rotate_left(7) ^ salt,
            ),
        )))
    }

    /// The earliest deadline (`None`: nothing to wake for but an event). Work queued for
    /// the next turn is told apart by [`Engine::has_queued_work`].
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// True when work is queued for the next turn (re-reads, output, closes): the loop
    /// must not sleep.
    pub fn has_queued_work(&self) -> bool {
        !self.rearm_read.is_empty()
            || !self.dirty_sources.is_empty()
            || !self.dirty_clients.is_empty()
            || !self.to_close.is_empty()
    }

    /// Connections to read again now, without waiting for an event.
    pub fn take_rereads(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.rearm_read)
    }

    /// True when `conn` is closed at the end of this turn: nothing more to read on it.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.to_close.contains(&conn)
    }

    /// The buffers of `conn`, for the reactor to read into and write from.
    pub fn buffers_mut(&mut self, conn: ConnId) -> Option<&mut Buffers> {
        self.peers.get_mut(conn.0).and_then(Peer::buffers_mut)
    }

    /// A listener's name for log lines.
    pub fn listener_label(&self, conn: ConnId) -> String {
        match self.peers.get(conn.0) {
            Some(Peer::RespListener { source }) => self
                .sources
                .get(*source)
                .map_or_else(String::new, |s| format!("source {}", s.name)),
            _ => "control endpoint".to_string(),
        }
    }

    /// Deadlines that are due.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut dyn Io) {
        while let Some(key) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Source(source) => self.on_source_timer(source, now, io),
                TimerKey::Sentinel(source) => self.on_sentinel_timer(source, now, io),
                TimerKey::Worker(conn) => self.on_worker_timer(conn, now),
                TimerKey::Probe(pool) => self.on_probe_timer(pool, now, io),
                TimerKey::Release(pool) => self.on_release_timer(pool),
                TimerKey::Retry(job) => self.on_retry_timer(job, now),
                TimerKey::Stream(source) => self.on_stream_timer(source, now),
                TimerKey::Client(conn) => self.on_client_timer(conn),
                TimerKey::Watchdog => {
                    // From the loop's own timer: a stuck loop stops these, as it should.
                    io.notify(Notice::Watchdog);
                    if let Some(interval) = self.options.watchdog {
                        self.timers.arm(TimerKey::Watchdog, now + interval);
                    }
                }
                TimerKey::DrainDeadline => self.on_drain_deadline(now),
                TimerKey::Restart(pool) => self.on_restart_timer(pool, now, io),
                TimerKey::StopProcesses => self.on_stop_processes_timer(now, io),
            }
        }
    }

    /// The reactor read `conn` (or found it writable and wrote what it could): `fill` says
    /// what reading found; the bytes are in the connection's buffers.
    pub fn handle_ready(&mut self, conn: ConnId, fill: Fill, now: Instant, io: &mut dyn Io) {
        match self.peers.get(conn.0) {
            Some(Peer::Source { source, .. }) => {
                let source = *source;
                self.on_source_ready(source, conn, fill, now, io);
            }
            Some(Peer::Sentinel { source, .. }) => {
                let source = *source;
                self.on_sentinel_ready(source, conn, fill, now, io);
            }
            Some(Peer::Worker(_)) => self.on_worker_ready(conn, fill, now),
            Some(Peer::ControlClient { .. }) => self.on_client_ready(conn, fill, now, io),
            Some(Peer::RespClient(_)) => self.on_resp_client_ready(conn, fill, now, io),
            // Listeners are accepted on by the reactor; a closed id is a stale event.
            Some(Peer::ControlListener | Peer::RespListener { .. }) | None => {}
        }
    }

    /// A nonblocking connect of `conn` completed.
    pub fn handle_connected(&mut self, conn: ConnId, now: Instant, io: &mut dyn Io) {
        match self.peers.get(conn.0) {
            Some(Peer::Source { source, .. }) => {
                let source = *source;
                self.on_source_connected(source, conn, now);
                // The session's first bytes (HELLO, the AMQP header) go out now.
                self.on_source_ready(source, conn, Fill::Skipped, now, io);
            }
            Some(Peer::Sentinel { source, .. }) => {
                let source = *source;
                self.on_sentinel_connected(source, conn, now, io);
            }
            Some(Peer::Worker(_)) => self.on_worker_connected(conn, now, io),
            _ => {}
        }
    }

    /// A connect of `conn` failed (at once, after a lookup, or when it completed).
    pub fn handle_connect_failed(&mut self, conn: ConnId, error: &ConnectError, now: Instant) {
        match self.peers.get(conn.0) {
            Some(Peer::Source { source, .. }) => {
                let source = *source;
                warn!(
                    "source {}: connect failed: {error}",
                    self.sources[source].name
                );
                self.source_lost(source, now);
            }
            Some(Peer::Sentinel { source, .. }) => {
                let source = *source;
                self.on_sentinel_connect_failed(source, &error.to_string(), now);
            }
            Some(Peer::Worker(_)) => self.worker_connect_failed(conn, error.failure, now),
            _ => {}
        }
    }

    /// A connection was accepted on listener `listener`.
    pub fn handle_accept(&mut self, listener: ConnId, now: Instant) -> Option<Accept> {
        match self.peers.get(listener.0)? {
            Peer::ControlListener => Some(self.accept_control_client(now)),
            Peer::RespListener { source } => {
                let source = *source;
                Some(self.accept_resp_client(source))
            }
            _ => None,
        }
    }

    /// SIGTERM or SIGINT: the first drains; a second exits at once (exit code 1).
    pub fn handle_terminate(&mut self, signal: i32, now: Instant, io: &mut dyn Io) -> Option<i32> {
        if self.phase == Phase::Running {
            info!(
                "signal {signal}: draining (up to {} ms); a second signal exits at once",
                self.shutdown_timeout.as_millis()
            );
            self.start_drain(now, io);
            return None;
        }
        warn!(
            "second signal {signal}: exiting now; unsettled AMQP deliveries return to their queues"
        );
        self.kill_processes(io);
        Some(1)
    }

    /// SIGCHLD: the workers are reaped at the end of the loop turn, once the events of
    /// the same batch are handled. A worker recycled by `max_requests` writes its last
    /// answer, then exits: its connection is readable no later than the signal, and the
    /// answer must be counted before deciding whether the worker "worked".
    pub fn handle_child_exited(&mut self) {
        self.spawned.note_sigchld();
    }

    /// The end of a loop turn: start what became startable, close what was marked,
    /// write queued output, tend worker processes, and decide whether ferry is done
    /// (`Some(exit code)`).
    pub fn end_turn(&mut self, now: Instant, io: &mut dyn Io) -> Option<i32> {
        self.close_marked(io);
        for slot in 0..self.pools.slot_count() {
            if let Some(pool) = self.pools.key_at(slot) {
                self.pump_pool(pool, now, io);
            }
        }
        self.tend_streams(now);
        self.close_retired_sources(now);
        self.tend_processes(now, io);
        self.free_finished_entries();
        self.flush_dirty_sources(now, io);
        self.flush_dirty_clients(io);
        self.close_marked(io);
        self.update_status_line(io);
        self.settle_memory(now, io);
        self.check_phase(now, io)
    }

    /// Once start-up is over, the code only it ran need not stay resident: idle ferry
    /// keeps its working set, not its start-up (`docs/OPERATIONS.md`, "Memory").
    fn settle_memory(&mut self, now: Instant, io: &mut dyn Io) {
        if self.settled {
            return;
        }
        let connected = self.sources.values().all(Source::is_ready);
        if connected || now.saturating_duration_since(self.started_at) >= STARTUP_SETTLES {
            self.settled = true;
            io.release_startup_code();
        }
    }

    /// `STATUS=` with a one-line summary, sent when it changes.
    fn update_status_line(&mut self, io: &mut dyn Io) {
        if !self.options.notify {
            return;
        }
        let live = self.sources.values().filter(|s| !s.is_retired());
        let (total, connected) =
            live.fold((0, 0), |(t, c), s| (t + 1, c + usize::from(s.is_ready())));
        let open = self
            .pools
            .values()
            .filter(|p| !p.retired && !p.circuit.is_closed())
            .count();
        let in_flight: usize = self.pools.values().map(|p| p.in_flight).sum();
        let line = format!(
            "{connected}/{total} sources connected, {open} pool circuits open, {in_flight} jobs in flight"
        );
        if line != self.last_status {
            io.notify(Notice::Status(&line));
            self.last_status = line;
        }
    }

    /// Marks `conn` to be closed after the batch.
    fn mark_close(&mut self, conn: ConnId) {
        if !self.to_close.contains(&conn) {
            self.to_close.push(conn);
        }
    }

    fn close_marked(&mut self, io: &mut dyn Io) {
        for conn in std::mem::take(&mut self.to_close) {
            if !self.peers.contains(conn.0) {
                continue;
            }
            if matches!(self.peers.get(conn.0), Some(Peer::RespClient(_))) {
                self.forget_resp_client(conn);
            }
            self.peers.remove(conn.0);
            io.close(conn);
            self.timers.cancel(TimerKey::Worker(conn));
            self.timers.cancel(TimerKey::Client(conn));
        }
    }

    /// Writes what is queued on `conn`.
    fn flush(&mut self, conn: ConnId, io: &mut dyn Io) -> Result<(), io::WriteError> {
        match self.peers.get_mut(conn.0).and_then(Peer::buffers_mut) {
            Some(buffers) => io.flush(conn, buffers),
            None => Ok(()),
        }
    }

    /// SIGTERM: stop intake, hand back unstarted AMQP messages, let in-flight requests
    /// finish up to the shutdown timeout (`docs/SEMANTICS.md`, "Drain").
    fn start_drain(&mut self, now: Instant, io: &mut dyn Io) {
        let deadline = now + self.shutdown_timeout;
        self.phase = Phase::Draining { deadline };
        io.notify(Notice::Stopping);
        self.timers.arm(TimerKey::DrainDeadline, deadline);
        for source in self.sources.keys() {
            self.stop_intake(source);
        }
    }

    fn on_drain_deadline(&mut self, now: Instant) {
        match self.phase {
            Phase::Draining { .. } => {
                warn!("drain: shutdown timeout reached with work still in flight");
                self.discard_waiting_redis_jobs();
                self.begin_closing(now);
            }
            Phase::Closing { .. } => {
                warn!("drain: connections did not close in time; exiting");
                self.phase = Phase::Closing { deadline: now };
            }
            Phase::Running => {}
        }
    }

    /// Decides whether the process is done.
    fn check_phase(&mut self, now: Instant, io: &mut dyn Io) -> Option<i32> {
        match self.phase {
            Phase::Running => None,
            Phase::Draining { .. } => {
                if self.work_remaining() == 0 {
                    self.begin_closing(now);
                    self.flush_dirty_sources(now, io);
                    self.close_marked(io);
                    // Sources that closed at once (Redis) need no further wake-up.
                    return self.check_phase(now, io);
                }
                None
            }
            Phase::Closing { deadline } => {
                let open_sources = self.sources.values().filter(|s| s.is_open()).count();
                if open_sources == 0 || now >= deadline {
                    // Spawned workers stop once nothing can reach them any more.
                    if !self.processes_stopped(now, io) {
                        return None;
                    }
                    // Last answers (a control client's `/status` during the drain, a
                    // RESP client's reply) get one more write before everything closes.
                    for (key, peer) in self.peers.iter_mut() {
                        if let Some(buffers) = peer.buffers_mut().filter(|b| b.wants_write()) {
                            let _ = io.flush(ConnId(key), buffers);
                        }
                    }
                    for (conn, _) in self.peers.iter() {
                        self.to_close.push(ConnId(conn));
                    }
                    self.close_marked(io);
                    info!("drained; exiting");
                    Some(0)
                } else {
                    None
                }
            }
        }
    }

    /// Jobs still waiting, running or awaiting a broker confirm.
    fn work_remaining(&self) -> usize {
        let waiting: usize = self.pools.values().map(|p| p.queue.len()).sum();
        let running = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p, Peer::Worker(w) if w.job().is_some()))
            .count();
        let confirming: usize = self.sources.values().map(Source::pending_settles).sum();
        waiting + running + confirming + self.retrying.len()
    }

    fn begin_closing(&mut self, now: Instant) {
        let deadline = now + Duration::from_secs(5);
        self.phase = Phase::Closing { deadline };
        self.timers.arm(TimerKey::DrainDeadline, deadline);
        for source in self.sources.keys() {
            self.close_source(source, now);
        }
    }

    /// A number never given to another source or pool (its jitter seed).
    fn bump_added(&mut self) -> u64 {
        self.added += 1;
        self.added
    }

    /// A new job id.
    fn next_job_id(&mut self) -> JobId {
        let id = JobId(self.next_job_id);
        self.next_job_id += 1;
        id
    }

    /// How many sources and pools the tables hold (retired ones included): a test of
    /// reloads checks that removed entries are freed.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.sources.len(), self.pools.len())
    }
}
