//! The reactor's side of the engine's commands ([`Io`]): the sockets of every
//! connection and listener (by the engine's [`ConnId`], which is also the poll token),
//! host-name lookups, worker sockets and worker processes, systemd notifications.
//!
//! Registration follows the connection's buffers: `WRITABLE` only while bytes remain
//! (or while a connect is under way), re-registered only when the interest changes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::process::Child;
use std::time::Instant;

use log::{debug, info, warn};
use mio::{Interest, Registry, Token};
use nix::sys::signal::Signal;

use super::conn::{self, Stream};
use super::connect::{self, Resolution, Resolver, Target};
use super::listener::{nofile_limit, AcceptTrouble, Listener, ACCEPT_RETRY};
use super::tls::{Handshake, TlsSession};
use crate::config::{Address, TlsClient};
use crate::dispatch::outcome::ConnectFailure;
use crate::engine::io::{
    BoundSocket, Buffers, ConnId, Connect, ConnectError, Io, Notice, ProcessExit, ProcessSignal,
    SocketKey, WriteError,
};
use crate::engine::timers::Timers;
use crate::metrics::ProcessStats;
use crate::process::spawn::{self, PoolSocket, SocketAddress, SocketDir};
use crate::process::Notifier;

/// A socket the reactor holds for the engine.
pub(super) enum Entry {
    /// A connection; `connecting` until its nonblocking connect completes and, with
    /// `tls`, until its handshake is done.
    Stream {
        stream: Stream,
        registered: Interest,
        connecting: bool,
        tls: Option<Box<TlsSession>>,
    },
    /// Waiting for the lookup of `host` before connecting to it on `port`.
    Resolving {
        lookup: u64,
        host: String,
        port: u16,
        tls: Option<Box<TlsSession>>,
    },
    /// A listener.
    Listener(Listener),
}

/// The sockets by connection id: a vector indexed by the id, since the engine's ids are
/// small dense slab keys (a hash per lookup would cost more than the lookup's work).
#[derive(Default)]
struct Entries(Vec<Option<Entry>>);

impl Entries {
    fn insert(&mut self, conn: ConnId, entry: Entry) {
        if self.0.len() <= conn.0 {
            self.0.resize_with(conn.0 + 1, || None);
        }
        if let Some(slot) = self.0.get_mut(conn.0) {
            *slot = Some(entry);
        }
    }

    fn get(&self, conn: ConnId) -> Option<&Entry> {
        self.0.get(conn.0)?.as_ref()
    }

    fn get_mut(&mut self, conn: ConnId) -> Option<&mut Entry> {
        self.0.get_mut(conn.0)?.as_mut()
    }

    fn remove(&mut self, conn: ConnId) -> Option<Entry> {
        self.0.get_mut(conn.0)?.take()
    }
}

/// Everything the reactor holds; see the module docs.
pub(super) struct Driver {
    registry: Registry,
    /// By `ConnId` (dense: the engine's ids are slab keys).
    entries: Entries,
    resolver: Resolver,
    /// Lookup id → the connection waiting for it.
    lookups: HashMap<u64, ConnId>,
    /// Host names already resolved (a failed connect forgets the name).
    resolved: HashMap<(String, u16), Vec<Target>>,
    notifier: Option<Notifier>,
    pub accept_trouble: AcceptTrouble,
    /// Starved listeners' retry deadlines.
    pub accept_timers: Timers<ConnId>,
    /// Connections to read again without an event: listeners that ran out of
    /// descriptors (one was freed), connections whose peer closed after sending.
    pub again: Vec<ConnId>,
    /// Worker processes by pid (killed and reaped when the driver is dropped).
    children: HashMap<u32, Child>,
    /// Spawned pools' sockets (declared before `socket_dir`: dropped first).
    worker_sockets: HashMap<SocketKey, PoolSocket>,
    next_socket: u64,
    /// The private directory of default worker sockets, made with the first one.
    socket_dir: Option<SocketDir>,
}

impl Driver {
    pub fn new(registry: Registry, resolver: Resolver, notifier: Option<Notifier>) -> Driver {
        Driver {
            registry,
            entries: Entries::default(),
            resolver,
            lookups: HashMap::new(),
            resolved: HashMap::new(),
            notifier,
            accept_trouble: AcceptTrouble::default(),
            accept_timers: Timers::default(),
            again: Vec::new(),
            children: HashMap::new(),
            worker_sockets: HashMap::new(),
            next_socket: 1,
            socket_dir: None,
        }
    }

    /// Registers a new stream (an accepted one, or one connecting) under `conn`.
    pub fn insert_stream(
        &mut self,
        conn: ConnId,
        mut stream: Stream,
        connecting: bool,
        tls: Option<Box<TlsSession>>,
    ) -> io::Result<()> {
        let interest = if connecting {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.registry
            .register(&mut stream, Token(conn.0), interest)?;
        self.entries.insert(
            conn,
            Entry::Stream {
                stream,
                registered: interest,
                connecting,
                tls,
            },
        );
        Ok(())
    }

    /// Re-derives the interest of `conn` from its buffers.
    pub fn update_interest(&mut self, conn: ConnId, buffers: &Buffers) {
        if let Some(Entry::Stream {
            stream,
            registered,
            connecting: false,
            tls,
        }) = self.entries.get_mut(conn)
        {
            let mut wanted = conn::interest(buffers);
            if tls.as_ref().is_some_and(|t| t.wants_write()) {
                wanted |= Interest::WRITABLE;
            }
            if *registered != wanted
                && self
                    .registry
                    .reregister(stream, Token(conn.0), wanted)
                    .is_ok()
            {
                *registered = wanted;
            }
        }
    }

    /// Starts connecting `conn` to `target`. A unix socket connects at once (or fails
    /// with `EAGAIN` when its listen backlog is full): it is registered for reading only.
    /// With `tls`, the connection is not done before its handshake is.
    fn connect_target(
        &mut self,
        conn: ConnId,
        target: &Target,
        tls: Option<Box<TlsSession>>,
    ) -> Result<Connect, ConnectError> {
        let stream = connect::start(target).map_err(|e| connect_error(target, &e))?;
        let done = matches!(target, Target::Unix(_)) && tls.is_none();
        self.insert_stream(conn, stream, !done, tls)
            .map_err(|e| connect_error(target, &e))?;
        Ok(if done {
            Connect::Done
        } else {
            Connect::Pending
        })
    }

    /// Finished host-name lookups: connects that waited start, or fail.
    pub fn finished_lookups(&mut self) -> Vec<(ConnId, Result<(), ConnectError>)> {
        let mut done = Vec::new();
        for (lookup, result) in self.resolver.finished() {
            let Some(conn) = self.lookups.remove(&lookup) else {
                continue;
            };
            let Some(Entry::Resolving {
                host, port, tls, ..
            }) = self.entries.remove(conn)
            else {
                continue;
            };
            let outcome = match result {
                Ok(targets) => {
                    let first = targets.first().cloned();
                    if first.is_some() {
                        self.resolved.insert((host, port), targets.clone());
                    }
                    match first {
                        Some(target) => self.connect_target(conn, &target, tls).map(drop),
                        None => Err(lookup_failed("no address")),
                    }
                }
                Err(e) => Err(lookup_failed(&e.to_string())),
            };
            done.push((conn, outcome));
        }
        done
    }

    /// The connect of `conn` may have progressed (an event): `Some(result)` when it
    /// completed or failed — for a TLS connection, when its handshake did — and the
    /// connection is then registered for what its buffers need.
    pub fn advance_connect(&mut self, conn: ConnId) -> Option<Result<(), ConnectError>> {
        let Some(Entry::Stream {
            stream,
            connecting,
            tls,
            registered,
        }) = self.entries.get_mut(conn)
        else {
            return None;
        };
        if !*connecting {
            return None;
        }
        if !tls.as_ref().is_some_and(|t| t.tcp_connected) {
            match stream.connect_finished() {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    return Some(Err(ConnectError {
                        failure: ConnectFailure::from_io_error(&e),
                        message: e.to_string(),
                    }))
                }
            }
        }
        let Some(session) = tls else {
            *connecting = false;
            return Some(Ok(()));
        };
        session.tcp_connected = true;
        match session.handshake(stream) {
            Handshake::Done => {
                debug!("connection {}: TLS up ({})", conn.0, session.describe());
                *connecting = false;
                Some(Ok(()))
            }
            Handshake::Pending => {
                let wanted = if session.wants_write() {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if *registered != wanted
                    && self
                        .registry
                        .reregister(stream, Token(conn.0), wanted)
                        .is_ok()
                {
                    *registered = wanted;
                }
                None
            }
            Handshake::Failed(why) => Some(Err(ConnectError {
                failure: ConnectFailure::Other,
                message: why,
            })),
        }
    }

    /// Whether `conn` is a TLS connection.
    pub fn is_tls(&self, conn: ConnId) -> bool {
        matches!(
            self.entries.get(conn),
            Some(Entry::Stream { tls: Some(_), .. })
        )
    }

    /// Whether `conn` is a connected stream (ready to be read).
    pub fn is_connected_stream(&self, conn: ConnId) -> bool {
        matches!(
            self.entries.get(conn),
            Some(Entry::Stream {
                connecting: false,
                ..
            })
        )
    }

    /// Reads `conn` into `buffers` (through its TLS session, if it has one); see
    /// [`conn::fill`]. `None`: no such stream.
    pub fn fill(
        &mut self,
        conn: ConnId,
        buffers: &mut Buffers,
        stop_short: bool,
    ) -> Option<io::Result<conn::Fill>> {
        match self.entries.get_mut(conn) {
            Some(Entry::Stream {
                stream, tls: None, ..
            }) => Some(conn::fill(stream, buffers, stop_short)),
            Some(Entry::Stream {
                stream,
                tls: Some(session),
                ..
            }) => Some(session.fill(stream, buffers)),
            _ => None,
        }
    }

    /// Writes what `buffers` hold to `conn` (through its TLS session, if it has one).
    fn write(&mut self, conn: ConnId, buffers: &mut Buffers) -> io::Result<()> {
        match self.entries.get_mut(conn) {
            Some(Entry::Stream {
                stream, tls: None, ..
            }) => conn::flush(stream, buffers),
            Some(Entry::Stream {
                stream,
                tls: Some(session),
                ..
            }) => session.flush(stream, buffers),
            _ => Ok(()),
        }
    }

    /// Writes what `buffers` hold to `conn` and re-derives its interest; for the loop's
    /// writable events.
    pub fn write_ready(&mut self, conn: ConnId, buffers: &mut Buffers) -> io::Result<()> {
        let written = self.write(conn, buffers);
        self.update_interest(conn, buffers);
        written
    }

    /// The listener of `conn`, if it is one.
    pub fn listener(&self, conn: ConnId) -> Option<&Listener> {
        match self.entries.get(conn) {
            Some(Entry::Listener(listener)) => Some(listener),
            _ => None,
        }
    }

    /// A listener ran out of descriptors: retry it later.
    pub fn retry_accept_later(&mut self, listener: ConnId, now: Instant) {
        self.accept_timers.arm(listener, now + ACCEPT_RETRY);
    }
}

fn connect_error(target: &Target, e: &io::Error) -> ConnectError {
    ConnectError {
        failure: ConnectFailure::from_io_error(e),
        message: format!("connect to {} failed: {e}", describe_target(target)),
    }
}

fn lookup_failed(why: &str) -> ConnectError {
    ConnectError {
        failure: ConnectFailure::Other,
        message: format!("name lookup failed: {why}"),
    }
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Unix(path) => format!("unix:{}", path.display()),
        Target::Tcp(addr) => format!("tcp:{addr}"),
    }
}

impl Io for Driver {
    fn connect(
        &mut self,
        conn: ConnId,
        address: &Address,
        tls: Option<&TlsClient>,
    ) -> Result<Connect, ConnectError> {
        let session = match (tls, address) {
            (None, _) => None,
            (Some(client), Address::Tcp { host, .. }) => Some(Box::new(
                TlsSession::new(client, host).map_err(|message| ConnectError {
                    failure: ConnectFailure::Other,
                    message,
                })?,
            )),
            (Some(_), Address::Unix(_)) => {
                return Err(ConnectError {
                    failure: ConnectFailure::Other,
                    message: "TLS needs a TCP address".into(),
                })
            }
        };
        let (host, port) = match address {
            Address::Unix(path) => {
                return self.connect_target(conn, &Target::Unix(path.clone()), session)
            }
            Address::Tcp { host, port } => (host.clone(), *port),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.connect_target(conn, &Target::Tcp((ip, port).into()), session);
        }
        if let Some(target) = self
            .resolved
            .get(&(host.clone(), port))
            .and_then(|t| t.first().cloned())
        {
            let result = self.connect_target(conn, &target, session);
            if result.is_err() {
                self.resolved.remove(&(host, port)); // look it up again next time
            }
            return result;
        }
        match self.resolver.resolve(address) {
            Ok(Resolution::Ready(targets)) => match targets.first() {
                Some(target) => self.connect_target(conn, target, session),
                None => Err(lookup_failed("no address")),
            },
            Ok(Resolution::Pending(lookup)) => {
                self.lookups.insert(lookup, conn);
                self.entries.insert(
                    conn,
                    Entry::Resolving {
                        lookup,
                        host,
                        port,
                        tls: session,
                    },
                );
                Ok(Connect::Pending)
            }
            Err(e) => Err(lookup_failed(&e.to_string())),
        }
    }

    fn listen(&mut self, conn: ConnId, address: &Address) -> Result<(), String> {
        let mut listener = Listener::bind(address).map_err(|e| e.to_string())?;
        listener
            .register(&self.registry, Token(conn.0))
            .map_err(|e| e.to_string())?;
        self.entries.insert(conn, Entry::Listener(listener));
        Ok(())
    }

    fn flush(&mut self, conn: ConnId, buffers: &mut Buffers) -> Result<(), WriteError> {
        match self.entries.get(conn) {
            // Not connected yet, or its TLS handshake runs: written once it is up.
            Some(Entry::Stream {
                connecting: true,
                tls: Some(_),
                ..
            })
            | Some(Entry::Resolving { .. } | Entry::Listener(_))
            | None => return Ok(()),
            Some(Entry::Stream { .. }) => {}
        }
        self.write(conn, buffers)
            .map_err(|e| WriteError(e.to_string()))?;
        self.update_interest(conn, buffers);
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        match self.entries.remove(conn) {
            // Closing the descriptor is enough: epoll forgets it, the peer sees EOF
            // (no deregister, no shutdown: two system calls per connection saved).
            Some(Entry::Stream {
                mut stream, tls, ..
            }) => {
                if let Some(mut session) = tls {
                    session.close(&mut stream);
                }
                drop(stream)
            }
            Some(Entry::Listener(mut listener)) => listener.close(&self.registry),
            Some(Entry::Resolving { lookup, .. }) => {
                self.lookups.remove(&lookup);
            }
            None => {}
        }
        self.accept_timers.cancel(conn);
        // A descriptor is free: listeners that ran out of them accept again.
        self.again.append(&mut self.accept_trouble.starved);
    }

    fn raise_fd_limit(&mut self, wanted: u64) -> u64 {
        nofile_limit(wanted)
    }

    fn bind_worker_socket(
        &mut self,
        pool: &str,
        listen: Option<&Address>,
    ) -> Result<BoundSocket, String> {
        let socket = match listen {
            Some(Address::Unix(path)) => PoolSocket::bind_unix(path),
            Some(Address::Tcp { host, port }) => match host.parse::<IpAddr>() {
                Ok(ip) => PoolSocket::bind_tcp((ip, *port).into()),
                Err(_) => return Err(format!("{host} is not an IP address")),
            },
            None => {
                if self.socket_dir.is_none() {
                    let dir = SocketDir::create().map_err(|e| e.to_string())?;
                    info!("spawned pools' sockets in {}", dir.path().display());
                    self.socket_dir = Some(dir);
                }
                match &self.socket_dir {
                    Some(dir) => PoolSocket::bind_unix(&dir.socket_path(pool)),
                    None => return Err("no socket directory".into()),
                }
            }
        }
        .map_err(|e| e.to_string())?;
        let address = match socket.address() {
            SocketAddress::Unix(path) => Address::Unix(path.clone()),
            SocketAddress::Tcp(addr) => Address::Tcp {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
        };
        let key = SocketKey(self.next_socket);
        self.next_socket += 1;
        self.worker_sockets.insert(key, socket);
        Ok(BoundSocket { key, address })
    }

    fn release_worker_socket(&mut self, socket: SocketKey) {
        self.worker_sockets.remove(&socket);
    }

    fn spawn_worker(
        &mut self,
        command: &[String],
        socket: SocketKey,
        max_requests: u32,
    ) -> Result<u32, String> {
        let Some(bound) = self.worker_sockets.get(&socket) else {
            return Err("the workers' socket is gone".into());
        };
        let child = spawn::start(command, bound, max_requests).map_err(|e| e.to_string())?;
        let pid = child.id();
        self.children.insert(pid, child);
        Ok(pid)
    }

    fn signal_worker(&mut self, pid: u32, signal: ProcessSignal) -> Result<(), String> {
        let signal = match signal {
            ProcessSignal::Terminate => Signal::SIGTERM,
            ProcessSignal::Kill => Signal::SIGKILL,
        };
        spawn::signal_group(pid, signal).map_err(|e| e.to_string())
    }

    fn reap_worker(&mut self, pid: u32) -> Result<Option<ProcessExit>, String> {
        if !spawn::has_ended(pid).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        // Killed while it is a zombie, before reaping: until then its pid, the group's
        // id, cannot name some other process's group.
        let _ = spawn::signal_group(pid, Signal::SIGKILL);
        let Some(child) = self.children.get_mut(&pid) else {
            return Ok(None);
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.children.remove(&pid);
                Ok(Some(ProcessExit {
                    success: status.success(),
                    description: spawn::describe_exit(status),
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn kill_worker(&mut self, pid: u32) {
        let _ = spawn::signal_group(pid, Signal::SIGKILL);
        if let Some(mut child) = self.children.remove(&pid) {
            // SIGKILL cannot be caught or ignored: the kernel ends the process at once
            // (a worker stuck in uninterruptible I/O is the one case that would hold
            // ferry here, and nothing else could free it either).
            let _ = child.wait();
        }
    }

    fn notify(&mut self, notice: Notice<'_>) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let sent = match notice {
            Notice::Ready => notifier.ready(),
            Notice::Reloading => notifier.reloading(),
            Notice::Stopping => notifier.stopping(),
            Notice::Status(line) => notifier.status(line),
            Notice::Watchdog => notifier.watchdog(),
        };
        if let Err(e) = sent {
            warn!("systemd notify: {e}");
        }
    }

    fn process_stats(&mut self) -> ProcessStats {
        ProcessStats::read()
    }

    fn release_startup_code(&mut self) {
        match crate::process::memory::release_startup_code() {
            Ok(bytes) => debug!("start-up code released: {} KiB of mappings", bytes / 1024),
            Err(e) => debug!("cannot release start-up code: {e}"),
        }
    }
}

impl Drop for Driver {
    /// An early return from the loop must not leave orphans: every worker still held is
    /// killed and reaped (then the sockets and their directory go).
    fn drop(&mut self) {
        let pids: Vec<u32> = self.children.keys().copied().collect();
        for pid in pids {
            debug!("killing worker process {pid} at exit");
            self.kill_worker(pid);
        }
    }
}
