//! Redis Sentinel: a `redis` or `redis_stream` source with a `sentinel` block asks the
//! sentinels where its master is, confirms it with `ROLE`, and follows `+switch-master`
//! (`docs/SEMANTICS.md`, "Redis Sentinel").
//!
//! Beside its master connection such a source keeps a *watch*: one connection to one
//! sentinel ([`SentinelWatch`]), which answers `GET-MASTER-ADDR-BY-NAME` and then stays
//! subscribed to `+switch-master`. The two connections have separate lives:
//!
//! - Every (re)connect of the master starts with a fresh answer: the watch is opened again
//!   (a sentinel that answered minutes ago may have been wrong since), and the master's
//!   connection is made once it answers. The address it gives is *fresh*: used once.
//! - The master connection starts with a [`RoleCheck`]: a sentinel that has not yet seen
//!   a failover names a replica, and only the server knows. A server that is not the
//!   master is a failed connect of the master: backoff, then ask again.
//! - A `+switch-master` for the source's master (or a later answer naming another address)
//!   moves the source at once: the old connection is closed as lost and the new master
//!   is connected without waiting out a backoff.
//! - A lost watch reconnects to the next sentinel with each sentinel's own backoff, as the
//!   nodes of `urls` do, while the master connection goes on.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::backoff::Backoff;
use super::ids::SourceId;
use super::io::{Buffers, ConnId, Connect, Fill, Io};
use super::sources::{pick_next, Intake, Link, Node};
use super::{Engine, Peer, Phase, TimerKey};
use crate::config::{Address, SentinelSettings};
use crate::proto::resp::sentinel::{MasterAddress, SentinelWatch, WatchEvent};

/// A sentinel that takes longer to accept is given up and the next one tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer of a watch: sentinel replies are small.
const READ_CAP: usize = 64 * 1024;
/// Write buffer high-water mark of a watch.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Where a watch's connection stands.
pub(super) enum WatchLink {
    /// Not connected; a `TimerKey::Sentinel` deadline reconnects.
    Idle,
    /// Connecting to the current sentinel.
    Connecting { conn: ConnId },
    /// Talking to it.
    Up {
        conn: ConnId,
        session: Box<SentinelWatch>,
        /// It answered `GET-MASTER-ADDR-BY-NAME` on this connection.
        answered: bool,
    },
}

/// A source's sentinels and its watch; see the module docs.
pub(super) struct Watch {
    settings: SentinelSettings,
    sentinels: Vec<Node>,
    current: usize,
    pub(super) link: WatchLink,
    /// The source waits for an answer to connect its master.
    waiting: bool,
    /// An address a sentinel gave that the next master connect uses.
    fresh: Option<MasterAddress>,
}

impl Watch {
    pub(super) fn new(settings: &SentinelSettings, backoff: &Backoff) -> Watch {
        let sentinels = settings
            .nodes
            .iter()
            .enumerate()
            .map(|(n, (host, port))| {
                Node::new(
                    Address::Tcp {
                        host: host.clone(),
                        port: *port,
                    },
                    backoff.clone().salted(1000 + n as u64),
                )
            })
            .collect();
        Watch {
            settings: settings.clone(),
            sentinels,
            current: 0,
            link: WatchLink::Idle,
            waiting: false,
            fresh: None,
        }
    }

    /// The sentinel in use or next to try (`/status` "sentinel").
    pub(super) fn sentinel_label(&self) -> Option<String> {
        self.sentinels
            .get(self.current)
            .map(|n| n.address.to_string())
    }

    /// The block as configured (the master's URL and credentials).
    pub(super) fn settings(&self) -> &SentinelSettings {
        &self.settings
    }

    fn conn(&self) -> Option<ConnId> {
        match self.link {
            WatchLink::Connecting { conn } | WatchLink::Up { conn, .. } => Some(conn),
            WatchLink::Idle => None,
        }
    }

    /// The address of the next master connect, if a sentinel gave one since the last.
    pub(super) fn take_fresh(&mut self) -> Option<MasterAddress> {
        self.fresh.take()
    }
}

/// The master's address until a sentinel names it: one no sentinel can give (its
/// answers with port 0 are refused).
pub(super) fn unknown_master() -> Address {
    Address::Tcp {
        host: "?".to_string(),
        port: 0,
    }
}

fn tcp(address: &MasterAddress) -> Address {
    Address::Tcp {
        host: address.host.clone(),
        port: address.port,
    }
}

impl Engine {
    /// The source's master must be (re)connected: ask a sentinel afresh.
    pub(super) fn ask_sentinels(&mut self, source: SourceId, now: Instant, io: &mut dyn Io) {
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        watch.waiting = true;
        match &watch.link {
            // Its answer is still to come: it will do.
            WatchLink::Connecting { .. }
            | WatchLink::Up {
                answered: false, ..
            } => return,
            // An answer given earlier may be stale: ask again on a new connection.
            WatchLink::Up { conn, .. } => {
                let conn = *conn;
                watch.link = WatchLink::Idle;
                self.mark_close(conn);
            }
            WatchLink::Idle => {}
        }
        let watch = self.sources[source].sentinel.as_deref().expect("checked");
        match watch.sentinels[watch.current].not_before {
            Some(at) if at > now => self.timers.arm(TimerKey::Sentinel(source), at),
            _ => self.connect_watch(source, now, io),
        }
    }

    /// Connects the watch to the current sentinel.
    fn connect_watch(&mut self, source: SourceId, now: Instant, io: &mut dyn Io) {
        let name = self.sources[source].name.clone();
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        let address = watch.sentinels[watch.current].address.clone();
        let of = match watch.sentinels.len() {
            1 => String::new(),
            count => format!(" ({} of {count})", watch.current + 1),
        };
        let line = format!(
            "source {name}: asking sentinel {address}{of} for master {:?}",
            watch.settings.master
        );
        if watch.waiting {
            info!("{line}");
        } else {
            debug!("{line}");
        }
        let buffers = Buffers::new(READ_CAP, WRITE_HIGH_WATER);
        let conn = ConnId(self.peers.insert(Peer::Sentinel { source, buffers }));
        watch.link = WatchLink::Connecting { conn };
        self.timers
            .arm(TimerKey::Sentinel(source), now + CONNECT_TIMEOUT);
        match io.connect(conn, &address, None) {
            Ok(Connect::Done) => self.on_sentinel_connected(source, conn, now, io),
            Ok(Connect::Pending) => {}
            Err(e) => {
                warn!("source {name}: connect to sentinel {address} failed: {e}");
                self.watch_lost(source, now);
            }
        }
    }

    /// The watch's connect completed: its conversation starts.
    pub(super) fn on_sentinel_connected(
        &mut self,
        source: SourceId,
        conn: ConnId,
        now: Instant,
        io: &mut dyn Io,
    ) {
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        if watch.conn() != Some(conn) {
            return;
        }
        let session = SentinelWatch::new(
            watch.settings.master.as_bytes(),
            &watch.settings.sentinel_credentials(),
            now,
        );
        watch.link = WatchLink::Up {
            conn,
            session: Box::new(session),
            answered: false,
        };
        self.after_watch_io(source, conn, now, io);
    }

    /// The watch's connect failed.
    pub(super) fn on_sentinel_connect_failed(&mut self, source: SourceId, why: &str, now: Instant) {
        let Some(watch) = self.sources[source].sentinel.as_deref() else {
            return;
        };
        warn!(
            "source {}: connect to sentinel {} failed: {why}",
            self.sources[source].name, watch.sentinels[watch.current].address
        );
        self.watch_lost(source, now);
    }

    /// The reactor read the watch's connection.
    pub(super) fn on_sentinel_ready(
        &mut self,
        source: SourceId,
        conn: ConnId,
        fill: Fill,
        now: Instant,
        io: &mut dyn Io,
    ) {
        let name = self.sources[source].name.clone();
        let failure = {
            let Some(Peer::Sentinel { buffers, .. }) = self.peers.get_mut(conn.0) else {
                return;
            };
            let Some(Watch {
                link: WatchLink::Up {
                    conn: up, session, ..
                },
                ..
            }) = self.sources[source].sentinel.as_deref_mut()
            else {
                return;
            };
            if *up != conn {
                return;
            }
            match session.handle_input(buffers.input(), now) {
                Ok(used) => {
                    buffers.consume(used);
                    match fill {
                        Fill::Eof | Fill::Failed => Some("connection closed".to_string()),
                        // Replies are small; a full buffer is a sentinel gone wrong.
                        Fill::Full if used == 0 => Some("a reply larger than 64 KiB".into()),
                        _ => None,
                    }
                }
                Err(e) => Some(e.to_string()),
            }
        };
        self.after_watch_io(source, conn, now, io);
        if let Some(why) = failure {
            if self.watch_conn(source) == Some(conn) {
                warn!("source {name}: sentinel: {why}");
                self.watch_lost(source, now);
            }
        }
    }

    fn watch_conn(&self, source: SourceId) -> Option<ConnId> {
        self.sources
            .get(source)
            .and_then(|s| s.sentinel.as_deref())
            .and_then(Watch::conn)
    }

    /// Writes the watch's commands, re-arms its deadline and acts on its events.
    fn after_watch_io(&mut self, source: SourceId, conn: ConnId, now: Instant, io: &mut dyn Io) {
        let mut events = Vec::new();
        let deadline = {
            let Some(Peer::Sentinel { buffers, .. }) = self.peers.get_mut(conn.0) else {
                return;
            };
            let Some(Watch {
                link: WatchLink::Up { session, .. },
                ..
            }) = self.sources[source].sentinel.as_deref_mut()
            else {
                return;
            };
            session.poll_transmit(buffers.write_buf());
            while let Some(event) = session.poll_event() {
                events.push(event);
            }
            session.poll_timeout()
        };
        if let Err(e) = self.flush(conn, io) {
            debug!(
                "source {}: sentinel write failed: {e}",
                self.sources[source].name
            );
            self.watch_lost(source, now);
            return;
        }
        match deadline {
            Some(at) => self.timers.arm(TimerKey::Sentinel(source), at),
            None => self.timers.cancel(TimerKey::Sentinel(source)),
        }
        for event in events {
            if self.watch_conn(source) != Some(conn) {
                break;
            }
            self.on_watch_event(source, event, now);
        }
    }

    fn on_watch_event(&mut self, source: SourceId, event: WatchEvent, now: Instant) {
        let name = self.sources[source].name.clone();
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        let sentinel = watch.sentinels[watch.current].address.clone();
        let to = match event {
            WatchEvent::Master(address) => {
                if let WatchLink::Up { answered, .. } = &mut watch.link {
                    *answered = true;
                }
                watch.sentinels[watch.current].succeeded();
                if watch.waiting {
                    info!(
                        "source {name}: sentinel {sentinel} says master {:?} is at {address}",
                        watch.settings.master
                    );
                }
                address
            }
            WatchEvent::Watching => {
                debug!("source {name}: following +switch-master on sentinel {sentinel}");
                return;
            }
            WatchEvent::Switched { from, to } => {
                info!(
                    "source {name}: sentinel {sentinel}: +switch-master {:?} from {from} to {to}",
                    watch.settings.master
                );
                to
            }
        };
        self.move_master(source, to, now);
    }

    /// A sentinel named the master: connect there if the source waits for it, or move
    /// there if the source is on another address.
    fn move_master(&mut self, source: SourceId, to: MasterAddress, now: Instant) {
        let s = &mut self.sources[source];
        let Some(watch) = s.sentinel.as_deref_mut() else {
            return;
        };
        let on = s.nodes.first().map(|n| n.address.clone());
        let same = on.as_ref() == Some(&tcp(&to));
        let taking = self.phase == Phase::Running && s.intake == Intake::Taking;
        if watch.waiting {
            watch.waiting = false;
            watch.fresh = Some(to);
            if matches!(s.link, Link::Idle) && taking {
                self.timers.arm(TimerKey::Source(source), now);
            }
            return;
        }
        if same || !taking {
            return;
        }
        watch.fresh = Some(to);
        match s.link {
            Link::Up { .. } | Link::Connecting { .. } => {
                info!(
                    "source {}: leaving {} for the new master",
                    s.name,
                    on.map_or_else(String::new, |a| a.to_string())
                );
                self.source_lost(source, now);
                self.connect_now(source, now);
            }
            Link::Idle => self.connect_now(source, now),
            Link::Listening | Link::Stopped => {}
        }
    }

    /// The master moved: reconnect at once, whatever the old address's backoff said.
    fn connect_now(&mut self, source: SourceId, now: Instant) {
        let s = &mut self.sources[source];
        if !matches!(s.link, Link::Idle) {
            return;
        }
        if let Some(node) = s.nodes.first_mut() {
            node.succeeded();
        }
        self.timers.arm(TimerKey::Source(source), now);
    }

    /// The watch's connection failed or was lost: the sentinel backs off, the next one
    /// is tried when its own backoff allows.
    pub(super) fn watch_lost(&mut self, source: SourceId, now: Instant) {
        let taking = self.phase == Phase::Running && self.sources[source].intake == Intake::Taking;
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        if let Some(conn) = watch.conn() {
            watch.link = WatchLink::Idle;
            let current = watch.current;
            watch.sentinels[current].failed(now);
            self.mark_close(conn);
        }
        self.timers.cancel(TimerKey::Sentinel(source));
        if !taking {
            return;
        }
        let watch = self.sources[source]
            .sentinel
            .as_deref_mut()
            .expect("checked");
        let (next, at) = pick_next(&watch.sentinels, watch.current, now);
        watch.current = next;
        self.timers.arm(TimerKey::Sentinel(source), at);
    }

    /// The watch's deadline: reconnect, the connect timeout, or its keepalive.
    pub(super) fn on_sentinel_timer(&mut self, source: SourceId, now: Instant, io: &mut dyn Io) {
        let name = self.sources[source].name.clone();
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        match &mut watch.link {
            WatchLink::Idle => {
                if self.phase == Phase::Running && self.sources[source].intake == Intake::Taking {
                    self.connect_watch(source, now, io);
                }
            }
            WatchLink::Connecting { .. } => {
                warn!(
                    "source {name}: sentinel {} did not accept within {} s",
                    watch.sentinels[watch.current].address,
                    CONNECT_TIMEOUT.as_secs()
                );
                self.watch_lost(source, now);
            }
            WatchLink::Up { conn, session, .. } => {
                let conn = *conn;
                match session.handle_timeout(now) {
                    Ok(()) => self.after_watch_io(source, conn, now, io),
                    Err(e) => {
                        warn!("source {name}: sentinel: {e}");
                        self.watch_lost(source, now);
                    }
                }
            }
        }
    }

    /// The source stops (drain, retirement, exit): its watch closes for good.
    pub(super) fn stop_watch(&mut self, source: SourceId) {
        let Some(watch) = self.sources[source].sentinel.as_deref_mut() else {
            return;
        };
        watch.waiting = false;
        if let Some(conn) = watch.conn() {
            watch.link = WatchLink::Idle;
            self.mark_close(conn);
        }
        self.timers.cancel(TimerKey::Sentinel(source));
    }
}
