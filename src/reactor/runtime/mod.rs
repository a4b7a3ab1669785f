//! The running daemon: one `mio::Poll`, every socket in one `Slab`, sources feeding
//! pools (SPEC "From message to FastCGI request" to "Process"; issue 3).
//!
//! The loop: wait for readiness or the earliest deadline; for each ready token hand the
//! socket's bytes to its session (a source's Redis or AMQP session, a worker's FastCGI
//! exchange), act on the events that come out (new jobs, finished jobs, settle
//! commands), write what the sessions produced, re-arm their deadlines; then close the
//! connections marked during the batch (STYLE practice 7), start what became startable,
//! and check whether a drain is complete.
//!
//! # Layout
//! - `mod.rs`: the runtime state, the loop, signals and the drain.
//! - `sources.rs`: Redis and AMQP source connections, their sessions, reconnects.
//! - `pools.rs`: worker connections, starting jobs, outcomes, the circuit breaker.
//! - `endpoint.rs`: RESP endpoint sources — their listener, clients, publish and fan-out.
//! - `jobs.rs`: a job and its origin.
//! - `spawned.rs`: spawned pools' worker processes: start, restart on SIGCHLD, stop.

mod control;
mod endpoint;
mod fds;
mod jobs;
mod pools;
mod reload;
mod sources;
mod spawned;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::backoff::Backoff;
use super::conn::Conn;
use super::connect::Resolver;
use super::timers::Timers;
use crate::config::Config;
use crate::dispatch::request::RequestBuilder;
use crate::process::Notifier;
use pools::{Pool, Worker};
use sources::Source;

const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const WAKER_TOKEN: Token = Token(usize::MAX - 2);

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKey {
    /// A source's session deadline (heartbeat, keepalive, handshake) or its reconnect.
    Source(usize),
    /// A worker connection's deadline (connect timeout, request timeout, idle timeout).
    Worker(usize),
    /// A pool's circuit probe.
    Probe(usize),
    /// A pool's circuit has been open for `circuit_release_ms`: AMQP sources let go.
    Release(usize),
    /// A job waiting out its retry delay (Redis, or AMQP `retry: hold`).
    Retry(u64),
    /// A control client's idle timeout.
    Client(usize),
    /// Time to tell systemd's watchdog the loop is alive.
    Watchdog,
    /// The drain's end.
    DrainDeadline,
    /// A listener that ran out of file descriptors accepts again.
    Accept(usize),
    /// A spawned pool's backed-off process restarts.
    Restart(usize),
    /// Worker processes sent SIGTERM get SIGKILL.
    StopProcesses,
}

/// One slab entry: a source's broker connection or a worker connection.
enum Endpoint {
    Source {
        source: usize,
        conn: Conn,
    },
    Worker(Box<Worker>),
    /// The control endpoint's listening socket.
    Listener(control::Listener),
    /// A control endpoint client.
    Client(Conn),
    /// A RESP endpoint source's listening socket.
    RespListener {
        source: usize,
        listener: control::Listener,
    },
    /// A Redis client of a RESP endpoint.
    RespClient(Box<endpoint::RespClient>),
}

impl Endpoint {
    /// The connection, for every endpoint that has one.
    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match self {
            Endpoint::Source { conn, .. } | Endpoint::Client(conn) => Some(conn),
            Endpoint::Worker(worker) => Some(&mut worker.conn),
            Endpoint::RespClient(client) => Some(&mut client.conn),
            Endpoint::Listener(_) | Endpoint::RespListener { .. } => None,
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

/// Why `run` failed to start.
#[derive(Debug)]
pub enum RunError {
    /// Setting up the poll, signals or the waker failed.
    Io(io::Error),
    /// The control endpoint could not listen on its address.
    Control(String, io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Io(e) => write!(f, "cannot start the event loop: {e}"),
            RunError::Control(address, e) => {
                write!(f, "control endpoint: cannot listen on {address}: {e}")
            }
        }
    }
}

impl std::error::Error for RunError {}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

/// The daemon's state; see the module docs.
struct Runtime {
    poll: Poll,
    slab: Slab<Endpoint>,
    timers: Timers<TimerKey>,
    resolver: Resolver,
    sources: Vec<Source>,
    pools: Vec<Pool>,
    builder: RequestBuilder,
    /// Jobs waiting out a retry delay, by job id.
    retrying: std::collections::HashMap<u64, jobs::Job>,
    next_job_id: u64,
    phase: Phase,
    shutdown_timeout: Duration,
    /// Tokens to close once the current batch of events is handled.
    to_close: Vec<usize>,
    /// Tokens whose read stopped at the buffer cap: read again without an event.
    rearm_read: Vec<usize>,
    /// Sources whose session has output to write at the end of the loop turn.
    dirty_sources: Vec<usize>,
    /// RESP endpoint clients with published messages to write at the end of the turn.
    dirty_clients: Vec<usize>,
    /// RESP endpoint clients the fd limit allows, over all endpoints (`fds.rs`).
    resp_client_budget: usize,
    /// Control clients the fd limit allows (at most `control::MAX_CLIENTS`).
    control_max_clients: usize,
    /// Listeners out of descriptors, and accept warnings' rate limit.
    accept_trouble: fds::AcceptTrouble,
    /// Seed for backoff jitter (per process, so a fleet spreads out).
    seed: u64,
    /// The bearer token POST requests to the control endpoint must carry.
    control_token: Option<String>,
    /// When the loop started (`/status` uptime).
    started_at: Instant,
    /// systemd's notify socket, when ferry runs under `Type=notify`.
    notifier: Option<Notifier>,
    /// The last `STATUS=` line sent (sent again only when it changes).
    last_status: String,
    /// The configuration file, reloaded on SIGHUP (absolute: a daemon runs in `/`).
    config_path: Option<PathBuf>,
    /// Spawned pools' shared state (declared after `pools`: dropped after their workers).
    spawned: spawned::Processes,
}

/// Runs ferry until a drain completes; see the module docs. Returns the exit code.
pub fn run(
    config: Config,
    notifier: Option<Notifier>,
    config_path: Option<PathBuf>,
) -> Result<i32, RunError> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
    let mut signals = Signals::new([
        nix::libc::SIGTERM,
        nix::libc::SIGINT,
        nix::libc::SIGHUP,
        nix::libc::SIGCHLD,
    ])?;
    poll.registry()
        .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut runtime = Runtime {
        poll,
        slab: Slab::new(),
        timers: Timers::default(),
        resolver: Resolver::new(waker),
        sources: Vec::new(),
        pools: Vec::new(),
        builder: RequestBuilder::default(),
        retrying: std::collections::HashMap::new(),
        next_job_id: 1,
        phase: Phase::Running,
        shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        to_close: Vec::new(),
        rearm_read: Vec::new(),
        dirty_sources: Vec::new(),
        dirty_clients: Vec::new(),
        resp_client_budget: usize::MAX,
        control_max_clients: control::MAX_CLIENTS,
        accept_trouble: fds::AcceptTrouble::default(),
        seed,
        control_token: config.control.token.clone(),
        started_at: Instant::now(),
        notifier,
        last_status: String::new(),
        config_path,
        spawned: spawned::Processes::default(),
    };
    runtime.build(&config)?;
    // SPEC "Process": READY=1 once the config is loaded and the listeners are bound; ferry
    // does not wait for brokers, so a broker outage never puts systemd into a restart loop.
    runtime.notify(|n| n.ready());
    if let Some(interval) = runtime
        .notifier
        .as_ref()
        .and_then(Notifier::watchdog_interval)
    {
        runtime
            .timers
            .arm(TimerKey::Watchdog, Instant::now() + interval);
    }
    runtime.event_loop(&mut signals)
}

impl Runtime {
    /// Creates the pools and sources of `config` and starts connecting.
    fn build(&mut self, config: &Config) -> Result<(), RunError> {
        let now = Instant::now();
        if let Some(address) = &config.control.listen {
            let listener = control::Listener::bind(address)
                .map_err(|e| RunError::Control(address.to_string(), e))?;
            let entry = self.slab.vacant_entry();
            let token = entry.key();
            let mut listener = listener;
            listener.register(self.poll.registry(), Token(token))?;
            entry.insert(Endpoint::Listener(listener));
            info!("control endpoint listening on {address}");
        }
        for (index, (name, pool)) in config.pools.iter().enumerate() {
            self.pools.push(Pool::new(
                name.clone(),
                pool.clone(),
                Backoff::new(
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                    self.seed ^ index as u64,
                ),
            ));
        }
        for (index, source) in config.sources.iter().enumerate() {
            let pool = self
                .pools
                .iter()
                .position(|p| p.name == source.job().pool)
                .unwrap_or(0);
            self.sources.push(Source::new(
                source.clone(),
                pool,
                Backoff::new(
                    Duration::from_millis(500),
                    Duration::from_secs(30),
                    self.seed.rotate_left(7) ^ index as u64,
                ),
            ));
        }
        self.update_fd_budget();
        for pool in 0..self.pools.len() {
            self.resolve_pool(pool, now);
        }
        for source in 0..self.sources.len() {
            self.connect_source(source, now);
        }
        info!(
            "ferry {} started: {} sources, {} pools",
            env!("CARGO_PKG_VERSION"),
            self.sources.len(),
            self.pools.len()
        );
        Ok(())
    }

    fn event_loop(&mut self, signals: &mut Signals) -> Result<i32, RunError> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e.into());
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => {
                        for signal in signals.pending() {
                            if let Some(code) = self.on_signal(signal, now) {
                                return Ok(code);
                            }
                        }
                    }
                    WAKER_TOKEN => self.on_resolved(now),
                    Token(token) => self.on_ready(token, event.is_writable(), now),
                }
            }
            for token in std::mem::take(&mut self.rearm_read) {
                self.on_ready(token, false, now);
            }
            self.fire_timers(now);
            self.close_marked();
            for pool in 0..self.pools.len() {
                self.pump_pool(pool, now);
            }
            self.close_retired_sources(now);
            self.tend_processes(now);
            self.flush_dirty_sources(now);
            self.flush_dirty_clients();
            self.close_marked();
            self.update_status_line();
            if let Some(code) = self.check_phase(now) {
                return Ok(code);
            }
        }
    }

    /// The earliest deadline of every timer; `None` sleeps until an event.
    fn poll_timeout(&mut self, now: Instant) -> Option<Duration> {
        // Work queued for the end of a turn (re-reads, session output, closes) must not
        // wait for the next event.
        if !self.rearm_read.is_empty()
            || !self.dirty_sources.is_empty()
            || !self.dirty_clients.is_empty()
            || !self.to_close.is_empty()
        {
            return Some(Duration::ZERO);
        }
        self.timers
            .next_deadline()
            .map(|at| at.saturating_duration_since(now))
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_expired(now) {
            match key {
                TimerKey::Source(source) => self.on_source_timer(source, now),
                TimerKey::Worker(token) => self.on_worker_timer(token, now),
                TimerKey::Probe(pool) => self.on_probe_timer(pool, now),
                TimerKey::Release(pool) => self.on_release_timer(pool, now),
                TimerKey::Retry(job) => self.on_retry_timer(job, now),
                TimerKey::Client(token) => self.mark_close(token),
                TimerKey::Watchdog => {
                    // From the loop's own timer: a stuck loop stops these, as it should.
                    self.notify(|n| n.watchdog());
                    if let Some(interval) =
                        self.notifier.as_ref().and_then(Notifier::watchdog_interval)
                    {
                        self.timers.arm(TimerKey::Watchdog, now + interval);
                    }
                }
                TimerKey::DrainDeadline => self.on_drain_deadline(now),
                TimerKey::Restart(pool) => self.on_restart_timer(pool, now),
                TimerKey::Accept(listener) => self.on_accept_timer(listener, now),
                TimerKey::StopProcesses => self.on_stop_processes_timer(now),
            }
        }
    }

    /// Readiness of a slab token (or a re-read after a full buffer).
    fn on_ready(&mut self, token: usize, writable: bool, now: Instant) {
        match self.slab.get(token) {
            Some(Endpoint::Source { source, .. }) => {
                let source = *source;
                self.on_source_ready(source, token, writable, now);
            }
            Some(Endpoint::Worker(_)) => self.on_worker_ready(token, writable, now),
            Some(Endpoint::Listener(_)) => self.on_accept(token, now),
            Some(Endpoint::Client(_)) => self.on_client_ready(token, now),
            Some(Endpoint::RespListener { .. }) => self.on_endpoint_accept(token, now),
            Some(Endpoint::RespClient(_)) => self.on_resp_client_ready(token, now),
            // Closed earlier in this batch: a stale event (mio "tolerate spurious events").
            None => {}
        }
    }

    /// Sends a message to systemd when ferry runs under it; a failure is logged once per
    /// call and never stops ferry.
    fn notify(&self, send: impl Fn(&Notifier) -> Result<(), crate::process::notify::NotifyError>) {
        if let Some(notifier) = &self.notifier {
            if let Err(e) = send(notifier) {
                warn!("systemd notify: {e}");
            }
        }
    }

    /// `STATUS=` with a one-line summary, sent when it changes.
    fn update_status_line(&mut self) {
        if self.notifier.is_none() {
            return;
        }
        let live = self.sources.iter().filter(|s| !s.retired);
        let (total, connected) =
            live.fold((0, 0), |(t, c), s| (t + 1, c + usize::from(s.is_ready())));
        let open = self
            .pools
            .iter()
            .filter(|p| !p.retired && !p.circuit.is_closed())
            .count();
        let in_flight: usize = self.pools.iter().map(|p| p.in_flight).sum();
        let line = format!(
            "{connected}/{total} sources connected, {open} pool circuits open, {in_flight} jobs in flight"
        );
        if line != self.last_status {
            self.notify(|n| n.status(&line));
            self.last_status = line;
        }
    }

    /// Marks `token` to be closed after the batch.
    fn mark_close(&mut self, token: usize) {
        if !self.to_close.contains(&token) {
            self.to_close.push(token);
        }
    }

    fn close_marked(&mut self) {
        let marked = std::mem::take(&mut self.to_close);
        if !marked.is_empty() {
            // Descriptors are freed: listeners that ran out of them accept again.
            self.wake_starved_listeners();
        }
        for token in marked {
            if self.slab.contains(token) {
                if matches!(self.slab.get(token), Some(Endpoint::RespClient(_))) {
                    self.forget_resp_client(token);
                }
                let mut endpoint = self.slab.remove(token);
                match endpoint.conn_mut() {
                    Some(conn) => {
                        let _ = self.poll.registry().deregister(&mut conn.stream);
                        conn.stream.shutdown();
                    }
                    None => {
                        if let Endpoint::Listener(listener)
                        | Endpoint::RespListener { listener, .. } = &mut endpoint
                        {
                            listener.close(self.poll.registry());
                        }
                    }
                }
                self.timers.cancel(TimerKey::Worker(token));
                self.timers.cancel(TimerKey::Client(token));
                self.timers.cancel(TimerKey::Accept(token));
            }
        }
    }

    /// Registers a new connection in the slab and the poll.
    fn insert(&mut self, endpoint: Endpoint) -> io::Result<usize> {
        let entry = self.slab.vacant_entry();
        let token = entry.key();
        let mut endpoint = endpoint;
        let Some(conn) = endpoint.conn_mut() else {
            return Err(io::Error::other(
                "listeners are registered by control::bind",
            ));
        };
        // Writable too until connected: a nonblocking connect completes as writable.
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut conn.stream, Token(token), interest)?;
        conn.registered = Some(interest);
        entry.insert(endpoint);
        Ok(token)
    }

    /// Writes what is queued on `token` and re-derives its interest.
    fn flush(&mut self, token: usize) -> io::Result<()> {
        let Some(conn) = self.slab.get_mut(token).and_then(Endpoint::conn_mut) else {
            return Ok(());
        };
        conn.flush()?;
        let interest = conn.interest();
        if conn.registered == Some(interest) {
            return Ok(());
        }
        conn.registered = Some(interest);
        self.poll
            .registry()
            .reregister(&mut conn.stream, Token(token), interest)
    }

    fn on_signal(&mut self, signal: i32, now: Instant) -> Option<i32> {
        match signal {
            nix::libc::SIGCHLD => {
                self.on_sigchld();
                None
            }
            nix::libc::SIGHUP => {
                if let Err(e) = crate::logging::reopen() {
                    error!("SIGHUP: cannot reopen the log file: {e}");
                }
                match self.config_path.clone() {
                    Some(path) => self.reload(&path, now),
                    None => info!("SIGHUP: log reopened (no configuration file to reload)"),
                }
                None
            }
            _ if self.phase == Phase::Running => {
                info!(
                    "signal {signal}: draining (up to {} ms); a second signal exits at once",
                    self.shutdown_timeout.as_millis()
                );
                self.start_drain(now);
                None
            }
            _ => {
                warn!("second signal {signal}: exiting now; unsettled AMQP deliveries return to their queues");
                self.kill_processes();
                Some(1)
            }
        }
    }

    /// SPEC "Process": stop intake, hand back unstarted AMQP messages, let in-flight
    /// requests finish up to the shutdown timeout.
    fn start_drain(&mut self, now: Instant) {
        let deadline = now + self.shutdown_timeout;
        self.phase = Phase::Draining { deadline };
        self.notify(|n| n.stopping());
        self.timers.arm(TimerKey::DrainDeadline, deadline);
        for source in 0..self.sources.len() {
            self.stop_intake(source, now);
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
    fn check_phase(&mut self, now: Instant) -> Option<i32> {
        match self.phase {
            Phase::Running => None,
            Phase::Draining { .. } => {
                if self.work_remaining() == 0 {
                    self.begin_closing(now);
                    self.flush_dirty_sources(now);
                    self.close_marked();
                    // Sources that closed at once (Redis) need no further wake-up.
                    return self.check_phase(now);
                }
                None
            }
            Phase::Closing { deadline } => {
                let open_sources = self.sources.iter().filter(|s| s.is_open()).count();
                if open_sources == 0 || now >= deadline {
                    // Spawned workers stop once nothing can reach them any more.
                    if !self.processes_stopped(now) {
                        return None;
                    }
                    for token in self.slab.iter().map(|(t, _)| t).collect::<Vec<_>>() {
                        self.mark_close(token);
                    }
                    self.close_marked();
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
        let waiting: usize = self.pools.iter().map(|p| p.queue.len()).sum();
        let running = self
            .slab
            .iter()
            .filter(|(_, e)| matches!(e, Endpoint::Worker(w) if w.job.is_some()))
            .count();
        let confirming: usize = self.sources.iter().map(Source::pending_settles).sum();
        waiting + running + confirming + self.retrying.len()
    }

    fn begin_closing(&mut self, now: Instant) {
        let deadline = now + Duration::from_secs(5);
        self.phase = Phase::Closing { deadline };
        self.timers.arm(TimerKey::DrainDeadline, deadline);
        for source in 0..self.sources.len() {
            self.close_source(source, now);
        }
    }
}
