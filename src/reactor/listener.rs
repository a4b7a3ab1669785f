//! Listening sockets (the control endpoint's and RESP endpoints'), and accepting that
//! survives running out of file descriptors.
//!
//! `accept` failing with EMFILE/ENFILE leaves connections queued on an edge-triggered
//! listener that will not wake again by itself: the listener is retried when any
//! connection closes and after [`ACCEPT_RETRY`]. Failures are logged at most once per
//! [`ACCEPT_WARN_EVERY`], with the count of those not logged. A failure that belongs to
//! one connection (ECONNABORTED: reset before it was accepted) just moves on to the next.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::warn;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::conn::Stream;
use crate::config::Address;
use crate::engine::io::ConnId;

/// A listener that ran out of descriptors tries again after this (or at the next close).
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one accept warning per this long.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// A listening socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket and its path (removed when ferry exits).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `address`. A unix socket path left by a dead ferry is replaced.
    pub fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Unix(path) => {
                if std::os::unix::net::UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
            Address::Tcp { host, port } => {
                let ip: std::net::IpAddr = match host.as_str() {
                    "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
                    other => other.parse().map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "listen on an IP address or localhost",
                        )
                    })?,
                };
                Ok(Listener::Tcp(TcpListener::bind((ip, *port).into())?))
            }
        }
    }

    /// Registers for readiness.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Listener::Unix(l, _) => registry.register(l, token, Interest::READABLE),
        }
    }

    /// Deregisters and removes a unix socket's path.
    pub fn close(&mut self, registry: &Registry) {
        match self {
            Listener::Tcp(l) => {
                let _ = registry.deregister(l);
            }
            Listener::Unix(l, path) => {
                let _ = registry.deregister(l);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Accepts one connection (nonblocking: `WouldBlock` when none is waiting).
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// What an `accept` error means.
pub enum AcceptFailure {
    /// This connection failed on its own: take the next.
    OneConnection,
    /// Out of descriptors or buffers: connections stay queued; retry later.
    Starved,
}

/// `accept` failures and when the last was logged.
#[derive(Debug, Default)]
pub struct AcceptTrouble {
    /// Listeners out of descriptors, waiting for a close or their retry timer.
    pub starved: Vec<ConnId>,
    last_warning: Option<Instant>,
    /// Failures since the last warning, not logged.
    quiet: u64,
}

impl AcceptTrouble {
    /// Logs (rate-limited) and classifies an accept error of `listener` (named `label`).
    pub fn failed(
        &mut self,
        listener: ConnId,
        label: &str,
        error: &io::Error,
        now: Instant,
    ) -> AcceptFailure {
        let due = self
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_WARN_EVERY);
        if due {
            let quiet = std::mem::take(&mut self.quiet);
            self.last_warning = Some(now);
            if quiet > 0 {
                warn!("{label}: accept failed: {error} ({quiet} more failures not logged)");
            } else {
                warn!("{label}: accept failed: {error}");
            }
        } else {
            self.quiet += 1;
        }
        let per_connection = matches!(
            error.raw_os_error(),
            Some(nix::libc::ECONNABORTED | nix::libc::EPROTO | nix::libc::EPERM)
        );
        if per_connection {
            return AcceptFailure::OneConnection;
        }
        if !self.starved.contains(&listener) {
            self.starved.push(listener);
        }
        AcceptFailure::Starved
    }
}

/// The soft `RLIMIT_NOFILE`, raised toward the hard one up to `wanted` when lower.
pub fn nofile_limit(wanted: u64) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return u64::MAX;
    };
    if soft >= wanted {
        return soft;
    }
    let raised = wanted.min(hard);
    match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
        Ok(()) => raised,
        Err(_) => soft,
    }
}
