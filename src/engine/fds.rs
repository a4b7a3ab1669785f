//! File descriptors as a budget (the reactor survives running out of them when
//! accepting; see `crate::reactor`).
//!
//! RESP endpoint clients are held to what `RLIMIT_NOFILE` leaves after everything else
//! ferry needs: [`FD_RESERVE`] for itself (stdio, epoll, signals, log, listeners,
//! resolver), a worker connection per unit of each pool's `max_in_flight`, one per
//! source, and the control endpoint's clients. As Redis lowers `maxclients` to its fd
//! limit (and logs it), ferry lowers the endpoints' `max_clients` — together, since they
//! share the process's fds — so idle Redis clients can never starve the workers. The
//! reactor first raises the soft limit toward the hard one as far as needed
//! ([`Io::raise_fd_limit`]).

use log::warn;

use super::io::Io;
use super::{control, Engine, Peer};

/// Descriptors ferry keeps for itself beyond connections.
const FD_RESERVE: usize = 32;

impl Engine {
    /// Computes how many RESP endpoint clients the fd limit allows (at start and on
    /// reload), and how many control clients; logs when `max_clients` is lowered.
    pub(super) fn update_fd_budget(&mut self, io: &mut dyn Io) {
        let control_listening = self
            .peers
            .iter()
            .any(|(_, p)| matches!(p, Peer::ControlListener));
        let workers: usize = self
            .pools
            .values()
            .filter(|p| !p.retired)
            .map(|p| p.config.max_in_flight as usize)
            .sum();
        let sources = self.sources.values().filter(|s| !s.is_retired()).count();
        let configured: usize = self
            .sources
            .values()
            .filter(|s| !s.is_retired())
            .filter_map(|s| s.endpoint_config().map(|c| c.max_clients))
            .fold(0usize, usize::saturating_add);
        let control = if control_listening {
            control::MAX_CLIENTS
        } else {
            0
        };
        let wanted = (FD_RESERVE + workers + sources + control).saturating_add(configured);
        let limit = usize::try_from(io.raise_fd_limit(wanted as u64)).unwrap_or(usize::MAX);
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
            .values()
            .filter_map(|s| s.server.as_ref().map(|server| server.clients))
            .sum()
    }
}
