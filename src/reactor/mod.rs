//! The loop and nothing else: one `mio::Poll`, the sockets of the engine's connections,
//! timers, signals, host-name lookups and worker processes. It knows no protocol and no
//! policy: every decision is the engine's (`crate::engine`). See
//! `docs/ARCHITECTURE.md`.
//!
//! One turn: wait for readiness or the engine's earliest deadline; for each ready
//! connection, finish its connect if one was under way, write what it had queued, read it
//! until `WouldBlock` (or the limit its buffers set) and hand the result to the engine;
//! accept on ready listeners; re-read the connections the engine asked for; fire due
//! timers; then let the engine end the turn (start jobs, write batched output, close
//! what it marked — after the batch, so a reused token never gets a stale event).
//!
//! # Layout
//! - `conn.rs`: sockets, and moving bytes between them and a connection's buffers.
//! - `connect.rs`: nonblocking connects, host names resolved off the loop thread.
//! - `listener.rs`: listeners, and accepting that survives running out of descriptors.
//! - `tls.rs`: TLS sessions (rustls) driven on the loop's nonblocking sockets.
//! - `driver.rs`: the engine's commands carried out ([`crate::engine::io::Io`]).

pub mod conn;
pub mod connect;
mod driver;
mod listener;
mod tls;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::engine::io::{ConnId, Fill};
use crate::engine::{Accept, Engine, Options, StartError};
use crate::process::Notifier;
use conn::Stream;
use driver::Driver;
use listener::AcceptFailure;

const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const WAKER_TOKEN: Token = Token(usize::MAX - 2);

/// Why `run` failed to start.
#[derive(Debug)]
pub enum RunError {
    /// Setting up the poll, signals or the waker failed.
    Io(io::Error),
    /// The engine could not start (the control endpoint could not listen).
    Start(StartError),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Io(e) => write!(f, "cannot start the event loop: {e}"),
            RunError::Start(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

/// Runs ferry until a drain completes; see the module docs. Returns the exit code.
pub fn run(
    config: Config,
    notifier: Option<Notifier>,
    config_path: Option<PathBuf>,
) -> Result<i32, RunError> {
    let mut poll = Poll::new()?;
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
    let options = Options {
        seed,
        notify: notifier.is_some(),
        watchdog: notifier.as_ref().and_then(Notifier::watchdog_interval),
        pid: std::process::id(),
    };
    let registry = poll.registry().try_clone()?;
    let mut driver = Driver::new(registry, connect::Resolver::new(waker), notifier);
    let mut engine =
        Engine::start(&config, options, Instant::now(), &mut driver).map_err(RunError::Start)?;
    drop(config);
    let mut reactor = Reactor {
        engine: &mut engine,
        driver: &mut driver,
        config_path,
    };
    reactor.event_loop(&mut poll, &mut signals)
}

/// The loop's state: the engine and the sockets it commands.
struct Reactor<'a> {
    engine: &'a mut Engine,
    driver: &'a mut Driver,
    /// The configuration file, reloaded on SIGHUP (absolute: a daemon runs in `/`).
    config_path: Option<PathBuf>,
}

impl Reactor<'_> {
    fn event_loop(&mut self, poll: &mut Poll, signals: &mut Signals) -> Result<i32, RunError> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = poll.poll(&mut events, timeout) {
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
                    WAKER_TOKEN => self.on_lookups(now),
                    Token(token) => {
                        let readiness = Readiness {
                            writable: event.is_writable(),
                            readable: event.is_readable(),
                            closed: event.is_read_closed() || event.is_error(),
                            reread: false,
                        };
                        self.on_ready(ConnId(token), readiness, now);
                    }
                }
            }
            let rereads = self.engine.take_rereads();
            let again = std::mem::take(&mut self.driver.again);
            for conn in rereads.into_iter().chain(again) {
                self.on_ready(conn, Readiness::REREAD, now);
            }
            while let Some(listener) = self.driver.accept_timers.pop_expired(now) {
                self.driver
                    .accept_trouble
                    .starved
                    .retain(|l| *l != listener);
                self.on_ready(listener, Readiness::REREAD, now);
            }
            self.engine.handle_timeout(now, self.driver);
            if let Some(code) = self.engine.end_turn(now, self.driver) {
                return Ok(code);
            }
        }
    }

    /// How long the poll may sleep: not at all while work is queued for the next turn.
    fn poll_timeout(&mut self, now: Instant) -> Option<Duration> {
        if self.engine.has_queued_work() || !self.driver.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let accept = self.driver.accept_timers.next_deadline();
        let engine = self.engine.poll_timeout();
        let at = match (engine, accept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|at| at.saturating_duration_since(now))
    }

    fn on_signal(&mut self, signal: i32, now: Instant) -> Option<i32> {
        match signal {
            nix::libc::SIGCHLD => {
                self.engine.handle_child_exited();
                None
            }
            nix::libc::SIGHUP => {
                if let Err(e) = crate::logging::reopen() {
                    error!("SIGHUP: cannot reopen the log file: {e}");
                }
                match &self.config_path {
                    Some(path) => {
                        let loaded = crate::config::load(path).map_err(|e| e.to_string());
                        self.engine.reload(loaded, now, self.driver);
                    }
                    None => info!("SIGHUP: log reopened (no configuration file to reload)"),
                }
                None
            }
            _ => self.engine.handle_terminate(signal, now, self.driver),
        }
    }

    /// Host-name lookups finished: their connects started or failed.
    fn on_lookups(&mut self, now: Instant) {
        for (conn, result) in self.driver.finished_lookups() {
            if let Err(e) = result {
                self.engine.handle_connect_failed(conn, &e, now);
            }
        }
    }

    /// Readiness of `conn` (or a re-read): see the module docs.
    fn on_ready(&mut self, conn: ConnId, mut ready: Readiness, now: Instant) {
        if self.driver.listener(conn).is_some() {
            self.accept(conn, now);
            return;
        }
        if let Some(result) = self.driver.advance_connect(conn) {
            match result {
                Ok(()) => {
                    self.engine.handle_connected(conn, now, self.driver);
                    // The handshake's last read may have brought application data along:
                    // it waits in the TLS session, where no event would announce it.
                    ready.readable |= self.driver.is_tls(conn);
                }
                Err(e) => {
                    self.engine.handle_connect_failed(conn, &e, now);
                    return;
                }
            }
        }
        if !self.driver.is_connected_stream(conn) {
            return;
        }
        let Some(buffers) = self.engine.buffers_mut(conn) else {
            return;
        };
        let mut fill = Fill::Skipped;
        if ready.writable {
            if let Err(e) = self.driver.write_ready(conn, buffers) {
                debug!("connection {}: write failed: {e}", conn.0);
                fill = Fill::Failed;
            }
        }
        // Edge-triggered: an event that is not readable brings no new bytes (a worker
        // taking ferry's request wakes nothing to read), so no read that can only answer
        // EAGAIN. A short read drained the socket unless the peer also closed it.
        let read = ready.readable || ready.closed;
        if fill != Fill::Failed && read {
            fill = match self.driver.fill(conn, buffers, !ready.reread) {
                Some(Ok(conn::Fill::Drained)) | None => Fill::Drained,
                Some(Ok(conn::Fill::Full)) => Fill::Full,
                Some(Ok(conn::Fill::Eof)) => Fill::Eof,
                Some(Err(e)) => {
                    // A TLS failure (an alert, a bad record) is worth more than debug.
                    if e.kind() == io::ErrorKind::Other {
                        warn!("connection {}: {e}", conn.0);
                    } else {
                        debug!("connection {}: read failed: {e}", conn.0);
                    }
                    Fill::Failed
                }
            };
        }
        self.driver.update_interest(conn, buffers);
        self.engine.handle_ready(conn, fill, now, self.driver);
        // The peer closed too: its EOF is read at once (one re-read, which reads to EOF) —
        // unless the engine is done with the connection anyway (a worker's answer ended
        // the request: no read for EOF). Only an event's `closed` asks for it: a re-read
        // never schedules another one, or a drained socket would be re-read forever.
        if ready.closed && !ready.reread && fill == Fill::Drained && !self.engine.is_closing(conn) {
            self.driver.again.push(conn);
        }
    }

    /// Accepts on `listener` until `WouldBlock`.
    fn accept(&mut self, listener: ConnId, now: Instant) {
        loop {
            let Some(socket) = self.driver.listener(listener) else {
                return;
            };
            let mut stream = match socket.accept() {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let label = self.engine.listener_label(listener);
                    match self.driver.accept_trouble.failed(listener, &label, &e, now) {
                        AcceptFailure::OneConnection => continue,
                        AcceptFailure::Starved => {
                            self.driver.retry_accept_later(listener, now);
                            return;
                        }
                    }
                }
            };
            match self.engine.handle_accept(listener, now) {
                Some(Accept::Take(conn)) => {
                    if let Err(e) = self.driver.insert_stream(conn, stream, false, None) {
                        warn!("cannot register a client: {e}");
                        self.engine
                            .handle_ready(conn, Fill::Failed, now, self.driver);
                    }
                }
                Some(Accept::Refuse(reply)) => refuse(&mut stream, reply),
                None => stream.shutdown(),
            }
        }
    }
}

/// What an event (or a re-read) says about a connection.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    writable: bool,
    readable: bool,
    /// The peer closed its side or the socket failed: its EOF is read too.
    closed: bool,
    /// Read again without an event: until `WouldBlock` (no short-read shortcut).
    reread: bool,
}

impl Readiness {
    /// A connection read again without an event (a fill stopped at its limit, a peer
    /// that closed after sending): read until `WouldBlock` or EOF.
    const REREAD: Readiness = Readiness {
        writable: false,
        readable: true,
        closed: false,
        reread: true,
    };
}

/// Says why (best effort: the socket is fresh and its send buffer empty, so the line
/// goes out in one write), then closes.
fn refuse(stream: &mut Stream, reply: &[u8]) {
    use std::io::Write as _;
    if !reply.is_empty() {
        let _ = stream.write(reply);
    }
    stream.shutdown();
}
