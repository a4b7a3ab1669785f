//! File descriptors as a budget, and accepting that survives running out of them.
//!
//! - RESP endpoint clients are held to what `RLIMIT_NOFILE` leaves after everything else
//!   ferry needs: [`FD_RESERVE`] for itself (stdio, epoll, signals, log, listeners,
//!   resolver), a worker connection per unit of each pool's `max_in_flight`, one per
//!   source, and the control endpoint's clients. As Redis lowers `maxclients` to its fd
//!   limit (and logs it), ferry lowers the endpoints' `max_clients` — together, since
//!   they share the process's fds — so idle Redis clients can never starve the workers.
//!   The soft limit is first raised toward the hard limit as far as needed.
//! - `accept` failing with EMFILE/ENFILE leaves connections queued on an edge-triggered
//!   listener that will not wake again by itself: the listener is retried when any
//!   connection closes and after [`ACCEPT_RETRY`]. Failures are logged at most once per
//!   [`ACCEPT_WARN_EVERY`], with the count of those not logged.

use std::io;
use std::time::{Duration, Instant};

use log::warn;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use super::{control, Endpoint, Runtime, TimerKey};
use crate::reactor::conn::Stream;

/// Descriptors ferry keeps for itself beyond connections.
const FD_RESERVE: usize = 32;
/// A listener that ran out of descriptors tries again after this (or at the next close).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one accept warning per this long.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// `accept` failures and when the last was logged.
#[derive(Debug, Default)]
pub(super) struct AcceptTrouble {
    /// Listeners out of descriptors, waiting for a close or their retry timer.
    starved: Vec<usize>,
    last_warning: Option<Instant>,
    /// Failures since the last warning, not logged.
    quiet: u64,
}

/// The soft `RLIMIT_NOFILE`, raised toward the hard one up to `wanted` when lower.
fn nofile_limit(wanted: u64) -> u64 {
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

impl Runtime {
    /// Computes how many RESP endpoint clients the fd limit allows (at start and on
    /// reload), and how many control clients; logs when `max_clients` is lowered.
    pub(super) fn update_fd_budget(&mut self) {
        let control_listening = self
            .slab
            .iter()
            .any(|(_, e)| matches!(e, Endpoint::Listener(_)));
        let workers: usize = self
            .pools
            .iter()
            .filter(|p| !p.retired)
            .map(|p| p.config.max_in_flight as usize)
            .sum();
        let sources = self.sources.iter().filter(|s| !s.retired).count();
        let configured: usize = self
            .sources
            .iter()
            .filter(|s| !s.retired)
            .filter_map(|s| s.endpoint_config().map(|c| c.max_clients))
            .fold(0usize, usize::saturating_add);
        let control = if control_listening {
            control::MAX_CLIENTS
        } else {
            0
        };
        let wanted = (FD_RESERVE + workers + sources + control).saturating_add(configured);
        let limit = usize::try_from(nofile_limit(wanted as u64)).unwrap_or(usize::MAX);
        // The control endpoint gets an eighth of a small limit at most.
        self.control_max_clients = control::MAX_CLIENTS.min(limit / 8).max(1);
        let control = if control_listening {
            self.control_max_clients
        } else {
            0
        };
        let budget = limit
            .saturating_sub(FD_RESERVE + workers + sources + control)
            .max(1);
        self.resp_client_budget = budget;
        if configured > budget {
            warn!(
                "RLIMIT_NOFILE is {limit}: RESP endpoints take at most {budget} clients together \
                 (max_clients lowered from {configured}; raise the limit, e.g. LimitNOFILE=, for more)"
            );
        }
    }

    /// RESP endpoint clients connected now, over every endpoint.
    pub(super) fn resp_clients(&self) -> usize {
        self.sources
            .iter()
            .filter_map(|s| s.server.as_ref().map(|server| server.clients))
            .sum()
    }

    /// Accepts one connection on listener `token` (the control endpoint's or a RESP
    /// endpoint's): `None` when none waits, or accepting failed — then the listener is
    /// retried later if it ran out of descriptors.
    pub(super) fn accept_one(&mut self, token: usize, now: Instant) -> Option<Stream> {
        loop {
            let (listener, what) = match self.slab.get(token) {
                Some(Endpoint::Listener(listener)) => (listener, None),
                Some(Endpoint::RespListener { listener, source }) => (listener, Some(*source)),
                _ => return None,
            };
            let error = match listener.accept() {
                Ok(stream) => return Some(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            let label = match what {
                Some(source) => format!("source {}", self.sources[source].name),
                None => "control endpoint".to_string(),
            };
            self.warn_accept(&label, &error, now);
            // A connection that failed on its own (reset before accept): take the next.
            let per_connection = matches!(
                error.raw_os_error(),
                Some(nix::libc::ECONNABORTED | nix::libc::EPROTO | nix::libc::EPERM)
            );
            if !per_connection {
                // EMFILE, ENFILE, ENOBUFS…: connections stay queued; try again later.
                if !self.accept_trouble.starved.contains(&token) {
                    self.accept_trouble.starved.push(token);
                }
                self.timers.arm(TimerKey::Accept(token), now + ACCEPT_RETRY);
                return None;
            }
        }
    }

    fn warn_accept(&mut self, label: &str, error: &io::Error, now: Instant) {
        let trouble = &mut self.accept_trouble;
        let due = trouble
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_WARN_EVERY);
        if !due {
            trouble.quiet += 1;
            return;
        }
        let quiet = std::mem::take(&mut trouble.quiet);
        trouble.last_warning = Some(now);
        if quiet > 0 {
            warn!("{label}: accept failed: {error} ({quiet} more failures not logged)");
        } else {
            warn!("{label}: accept failed: {error}");
        }
    }

    /// A connection closed (a descriptor is free): starved listeners accept again.
    pub(super) fn wake_starved_listeners(&mut self) {
        self.rearm_read.append(&mut self.accept_trouble.starved);
    }

    /// A starved listener's retry timer.
    pub(super) fn on_accept_timer(&mut self, token: usize, now: Instant) {
        self.accept_trouble.starved.retain(|t| *t != token);
        self.on_ready(token, false, now);
    }
}
