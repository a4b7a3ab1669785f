//! RESP endpoint sources (`docs/SEMANTICS.md`, "Redis pub/sub and the RESP endpoint"): ferry listens for
//! Redis clients, answers them through `proto::resp::server`, turns what they `PUBLISH`
//! on a configured channel into jobs (the Redis pub/sub rules: backlog, drop reasons,
//! retries from memory), and delivers every published message to the clients subscribed
//! to its channel or a matching pattern — a small pub/sub server.
//!
//! - The listener and each client are peers of the engine (`Peer::RespListener`,
//!   `Peer::RespClient`), like the control endpoint's; the subscription index (channel
//!   → clients, pattern → clients) lives in the source's [`EndpointServer`].
//! - `PUBLISH` answers the number of receivers: 1 when a job was accepted into the
//!   backlog (0 when dropped: paused, draining, backlog full), plus one per subscription
//!   that got the message (a client subscribed to the channel and to a matching pattern
//!   counts twice, as in Redis). A message is encoded once per protocol and pattern, then
//!   copied into each subscriber's output buffer.
//! - Limits, like Redis's own: a bulk (or inline argument) above `max_message_bytes`
//!   (`proto-max-bulk-len`) is a protocol error that closes the client — the rest of its
//!   request is never buffered, and a `PUBLISH` to a job channel refused so counts
//!   `dropped{reason="too_large"}`; one command must fit `max_message_bytes` + 1 MiB (the
//!   query buffer; [`UNAUTHENTICATED_READ_CAP`] before AUTH); past `max_clients` (lowered
//!   to the fd limit, `fds.rs`) a new client is told `-ERR max number of clients reached`
//!   and closed. Each closing by ferry is counted in `ferry_endpoint_disconnects_total`.
//! - Fairness: a client's input is worked off [`INPUT_BUDGET`] per readiness event, then
//!   it is read again at the next turn (`rearm_read`; the reactor reads no further ahead
//!   than that budget); messages are appended to subscribers' buffers and written
//!   once per loop turn (`dirty_clients`), so a PUBLISH costs no syscall per subscriber.
//! - Output: a client's own replies are backpressure (its commands wait while
//!   [`OUTPUT_SOFT_MARK`] is exceeded, resume on writable); published messages are held
//!   to `client_output_buffer_bytes` when queued (Redis's pub/sub hard limit: closed,
//!   counted once, skipped by later messages). `QUIT`, a protocol error and EOF close
//!   after the reply ([`ClientState::Linger`]).
//! - Drain keeps the listener and clients until the closing phase (publishes are dropped
//!   as `shutdown` meanwhile); closing closes them all. A reload that keeps `listen` hands
//!   the listener and the connected clients to the new source entry; a changed `listen`
//!   binds anew and the retired entry closes its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::ids::SourceId;
use super::io::{Buffers, ConnId, Fill, Io};
use super::jobs::{Job, Origin};
use super::{Accept, Engine, Peer, TimerKey};
use crate::config::{Address, RespEndpointSource};
use crate::metrics::{DisconnectReason, DropReason};
use crate::proto::resp::server::{
    encode_message, glob_match, Change, ClientSession, CommandReader, Outcome, ProtocolError,
    ReaderLimits, SessionConfig, SubscriptionKind, MAX_BULK_UNAUTHENTICATED, MAX_INLINE,
};
use crate::proto::resp::{self, Subscription, Version};
use crate::proto::Status;

/// Room in a client's read buffer above `max_message_bytes`: the rest of a command
/// (channel name, headers) or several small pipelined ones.
const QUERY_SLACK: usize = 1 << 20;

/// Input one readiness event of a client works off before the others get their turn
/// (then the client is re-read at the next loop turn). Redis reads 16 KiB per event.
const INPUT_BUDGET: usize = 16 * 1024;

/// A client's own replies queued beyond this stop its commands until it reads some
/// (backpressure, as conn.rs prescribes: a slow reader is slowed down, not dropped).
/// Published messages are not held back: their limit is `client_output_buffer_bytes`.
const OUTPUT_SOFT_MARK: usize = 64 * 1024;

/// How long a closing client's last replies may take to be read.
const LINGER: Duration = Duration::from_secs(10);

/// The read buffer before `AUTH` when a password is set: one inline line or one
/// pre-AUTH bulk (and its header), so an unauthenticated client holds little memory.
pub(super) const UNAUTHENTICATED_READ_CAP: usize = MAX_INLINE + MAX_BULK_UNAUTHENTICATED;

/// What a full endpoint tells one client too many (Redis's words).
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// A listening endpoint: its listener, client count and subscription index.
#[derive(Debug)]
pub(super) struct EndpointServer {
    /// The listener.
    pub listener: ConnId,
    /// Clients connected now.
    pub clients: usize,
    /// `CLIENT ID` of the next client.
    next_client_id: u64,
    /// Channel → the clients subscribed to it.
    channels: HashMap<Vec<u8>, Vec<ConnId>>,
    /// Pattern → the clients subscribed to it.
    patterns: HashMap<Vec<u8>, Vec<ConnId>>,
}

/// One Redis client of an endpoint.
#[derive(Debug)]
pub(super) struct RespClient {
    /// The source (endpoint) it connected to.
    pub source: SourceId,
    pub buffers: Buffers,
    reader: CommandReader,
    session: ClientSession,
    state: ClientState,
    /// The peer closed its side: what it sent before is still answered, nothing is read.
    eof: bool,
    /// Listed in `Engine::dirty_clients` (messages queued, to flush at the turn's end).
    dirty: bool,
    /// The read cap once authenticated (`max_message_bytes` + [`QUERY_SLACK`]).
    read_cap: usize,
}

/// Where a client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Reading and running commands, receiving messages.
    Open,
    /// `QUIT`, a protocol error or the peer's EOF: nothing more is read, run or queued;
    /// it closes once its output is written (Redis's close-after-reply), or at
    /// [`LINGER`].
    Linger,
    /// Marked for closing (its output limit, a broken socket): skipped by the fan-out,
    /// counted once.
    Closed,
}

impl EndpointServer {
    fn index_mut(&mut self, kind: SubscriptionKind) -> &mut HashMap<Vec<u8>, Vec<ConnId>> {
        match kind {
            SubscriptionKind::Channel => &mut self.channels,
            SubscriptionKind::Pattern => &mut self.patterns,
        }
    }

    fn apply(&mut self, client: ConnId, change: Change) {
        let index = self.index_mut(change.kind);
        if change.subscribed {
            index.entry(change.name).or_default().push(client);
        } else {
            drop_client(index, &change.name, client);
        }
    }
}

fn drop_client(index: &mut HashMap<Vec<u8>, Vec<ConnId>>, name: &[u8], client: ConnId) {
    if let Some(clients) = index.get_mut(name) {
        clients.retain(|c| *c != client);
        if clients.is_empty() {
            index.remove(name);
        }
    }
}

/// What a new client is given from its endpoint's configuration.
struct ClientLimits {
    max_clients: usize,
    max_message_bytes: usize,
    client_output_buffer_bytes: usize,
    password: Option<Vec<u8>>,
}

impl ClientLimits {
    fn of(config: &RespEndpointSource) -> ClientLimits {
        ClientLimits {
            max_clients: config.max_clients,
            max_message_bytes: config.max_message_bytes,
            client_output_buffer_bytes: config.client_output_buffer_bytes,
            password: config.password.as_ref().map(|p| p.as_bytes().to_vec()),
        }
    }
}

/// Lazily encoded copies of one message, per protocol version.
#[derive(Default)]
struct Encoded {
    resp2: Option<Vec<u8>>,
    resp3: Option<Vec<u8>>,
}

impl Encoded {
    fn get(
        &mut self,
        version: Version,
        pattern: Option<&[u8]>,
        channel: &[u8],
        payload: &[u8],
    ) -> &[u8] {
        let slot = match version {
            Version::Resp2 => &mut self.resp2,
            Version::Resp3 => &mut self.resp3,
        };
        slot.get_or_insert_with(|| {
            let mut out = Vec::with_capacity(payload.len() + channel.len() + 64);
            encode_message(&mut out, version, pattern, channel, payload);
            out
        })
    }
}

impl Engine {
    /// Binds a RESP endpoint's listener (or keeps the one handed over by a reload).
    pub(super) fn start_endpoint(
        &mut self,
        source: SourceId,
        listen: &Address,
        io: &mut dyn Io,
    ) -> Result<(), String> {
        if self.sources[source].server.is_some() {
            return Ok(()); // adopted from the entry a reload replaced
        }
        let listener = ConnId(self.peers.insert(Peer::RespListener { source }));
        if let Err(e) = io.listen(listener, listen) {
            self.peers.remove(listener.0);
            return Err(e);
        }
        self.sources[source].server = Some(Box::new(EndpointServer {
            listener,
            clients: 0,
            next_client_id: 1,
            channels: HashMap::new(),
            patterns: HashMap::new(),
        }));
        info!(
            "source {}: RESP endpoint listening on {listen}",
            self.sources[source].name
        );
        Ok(())
    }

    /// A reload replaced endpoint `old` by `new` with the same `listen`: the new entry
    /// takes the listener and the connected clients (they keep their sessions).
    pub(super) fn adopt_endpoint(&mut self, old: SourceId, new: SourceId) {
        let same_listen = match (
            self.sources[old].endpoint_config(),
            self.sources[new].endpoint_config(),
        ) {
            (Some(a), Some(b)) => a.listen == b.listen,
            _ => false,
        };
        if !same_listen {
            return;
        }
        let Some(server) = self.sources[old].server.take() else {
            return;
        };
        for (_, peer) in self.peers.iter_mut() {
            match peer {
                Peer::RespListener { source } if *source == old => *source = new,
                Peer::RespClient(client) if client.source == old => client.source = new,
                _ => {}
            }
        }
        self.sources[new].server = Some(server);
    }

    /// Closing phase (or a retired entry's end): the listener and every client close.
    pub(super) fn close_endpoint(&mut self, source: SourceId) {
        let Some(server) = self.sources[source].server.take() else {
            return;
        };
        self.mark_close(server.listener);
        let clients: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p, Peer::RespClient(c) if c.source == source))
            .map(|(key, _)| ConnId(key))
            .collect();
        for conn in clients {
            self.mark_close(conn);
        }
    }

    /// A client connected to the endpoint of `source`.
    pub(super) fn accept_resp_client(&mut self, source: SourceId) -> Accept {
        let fds_left = self.resp_clients() < self.resp_client_budget;
        let s = &mut self.sources[source];
        let (Some(config), Some(server)) =
            (s.endpoint_config().map(ClientLimits::of), s.server.as_mut())
        else {
            return Accept::Refuse(b"");
        };
        if server.clients >= config.max_clients || !fds_left {
            // Like Redis: say why, then close.
            s.endpoint_metrics
                .on_disconnect(DisconnectReason::MaxClients);
            debug!("source {}: max_clients reached; a client refused", s.name);
            return Accept::Refuse(MAX_CLIENTS_REPLY);
        }
        let id = server.next_client_id;
        server.next_client_id += 1;
        server.clients += 1;
        let read_cap = config.max_message_bytes.saturating_add(QUERY_SLACK);
        let first_cap = if config.password.is_some() {
            read_cap.min(UNAUTHENTICATED_READ_CAP)
        } else {
            read_cap
        };
        let mut buffers = Buffers::new(first_cap, config.client_output_buffer_bytes);
        buffers.set_read_ahead(Some(INPUT_BUDGET));
        let client = RespClient {
            source,
            buffers,
            state: ClientState::Open,
            eof: false,
            dirty: false,
            read_cap,
            reader: CommandReader::new(ReaderLimits {
                max_bulk: config.max_message_bytes,
            }),
            session: ClientSession::new(SessionConfig {
                password: config.password,
                id,
                server_version: env!("CARGO_PKG_VERSION"),
            }),
        };
        Accept::Take(ConnId(
            self.peers.insert(Peer::RespClient(Box::new(client))),
        ))
    }

    /// A client is being removed: drop it from the index and the count.
    pub(super) fn forget_resp_client(&mut self, conn: ConnId) {
        let Some(Peer::RespClient(client)) = self.peers.get(conn.0) else {
            return;
        };
        let source = client.source;
        let subscriptions: Vec<(SubscriptionKind, Vec<u8>)> = client
            .session
            .subscriptions()
            .map(|(kind, name)| (kind, name.to_vec()))
            .collect();
        if let Some(server) = self.sources.get_mut(source).and_then(|s| s.server.as_mut()) {
            server.clients = server.clients.saturating_sub(1);
            for (kind, name) in subscriptions {
                drop_client(server.index_mut(kind), &name, conn);
            }
        }
    }

    /// Closes a client at the end of the turn (counted with `reason`, once).
    fn close_client(&mut self, conn: ConnId, source: SourceId, reason: Option<DisconnectReason>) {
        if let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) {
            if client.state == ClientState::Closed {
                return;
            }
            client.state = ClientState::Closed;
        }
        self.count_disconnect(source, reason);
        self.mark_close(conn);
    }

    fn count_disconnect(&mut self, source: SourceId, reason: Option<DisconnectReason>) {
        if let Some(reason) = reason {
            self.sources[source].endpoint_metrics.on_disconnect(reason);
            debug!(
                "source {}: client closed ({})",
                self.sources[source].name,
                reason.as_str()
            );
        }
    }

    /// Close-after-reply: stop reading and running, close once the output is written.
    fn linger_client(
        &mut self,
        conn: ConnId,
        source: SourceId,
        reason: Option<DisconnectReason>,
        now: Instant,
    ) {
        let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) else {
            return;
        };
        if client.state != ClientState::Open {
            return;
        }
        client.state = ClientState::Linger;
        client.buffers.set_read_ahead(Some(0));
        let written = client.buffers.pending_output() == 0;
        self.count_disconnect(source, reason);
        if written {
            self.mark_close(conn);
        } else {
            self.timers.arm(TimerKey::Client(conn), now + LINGER);
        }
    }

    /// The reactor read a client (or wrote its queued output, or re-reads it at the next
    /// turn): work off some of its input.
    pub(super) fn on_resp_client_ready(
        &mut self,
        conn: ConnId,
        fill: Fill,
        now: Instant,
        io: &mut dyn Io,
    ) {
        let Some(Peer::RespClient(client)) = self.peers.get(conn.0) else {
            return;
        };
        let source = client.source;
        if fill == Fill::Failed {
            self.close_client(conn, source, None);
            return;
        }
        match client.state {
            ClientState::Open => self.work_client(conn, source, fill, now, io),
            ClientState::Linger if client.buffers.pending_output() == 0 => self.mark_close(conn),
            ClientState::Linger | ClientState::Closed => {}
        }
    }

    /// Reads a client's requests and answers them in order, [`INPUT_BUDGET`] bytes of
    /// them at most, and no further while [`OUTPUT_SOFT_MARK`] bytes of replies wait.
    fn work_client(
        &mut self,
        conn: ConnId,
        source: SourceId,
        fill: Fill,
        now: Instant,
        io: &mut dyn Io,
    ) {
        /// Why the work stopped.
        enum Stop {
            /// Waiting for bytes: the socket was read until `WouldBlock`.
            NeedInput,
            /// The budget is spent, or the read stopped at it: go on at the next turn.
            Budget,
            /// Replies pile up: go on when the socket is writable.
            Backpressure,
            /// Nothing more will be read (EOF, QUIT, protocol error).
            Linger(Option<DisconnectReason>),
            /// Close at once.
            Close(Option<DisconnectReason>),
        }
        if fill == Fill::Eof {
            if let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) {
                // What arrived before the EOF is still answered (`echo PING | nc`).
                client.eof = true;
            }
        }
        // Nothing waits in the socket after a fill that drained it, or after an event
        // with nothing to read — unless reading was paused (backpressure): then the
        // kernel may still hold what was never read, and it is read at the next turn.
        let was_paused = match self.peers.get(conn.0) {
            Some(Peer::RespClient(client)) => client.buffers.read_paused(),
            _ => false,
        };
        let drained = fill == Fill::Drained || (fill == Fill::Skipped && !was_paused);
        let mut consumed = 0usize;
        let mut reply = Vec::new();
        let stop = loop {
            let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) else {
                return;
            };
            if client.buffers.pending_output() > OUTPUT_SOFT_MARK {
                if io.flush(conn, &mut client.buffers).is_err() {
                    break Stop::Close(None);
                }
                if client.buffers.pending_output() > OUTPUT_SOFT_MARK {
                    break Stop::Backpressure;
                }
            }
            if consumed >= INPUT_BUDGET {
                break Stop::Budget;
            }
            let RespClient {
                buffers,
                reader,
                session,
                eof,
                read_cap,
                ..
            } = &mut **client;
            let input = buffers.input();
            reply.clear();
            let (used, publish) = match reader.read(input, session.is_authenticated()) {
                Ok(Status::Partial) => {
                    let skipped = reader.take_skipped();
                    buffers.consume(skipped);
                    if *eof {
                        break Stop::Linger(None);
                    }
                    if buffers.unconsumed() >= buffers.read_cap() {
                        // One request does not fit the query buffer.
                        break Stop::Close(Some(DisconnectReason::QueryBuffer));
                    }
                    if drained {
                        break Stop::NeedInput;
                    }
                    // The read stopped at its limit: more waits in the socket.
                    break Stop::Budget;
                }
                Err(e) => {
                    let refused_job = e == ProtocolError::InvalidBulkLength { too_large: true }
                        && reader
                            .pending_arg(input, 0)
                            .is_some_and(|name| name.eq_ignore_ascii_case(b"publish"))
                        && reader.pending_arg(input, 1).is_some_and(|channel| {
                            self.sources[source]
                                .channels()
                                .iter()
                                .any(|c| c.as_bytes() == channel)
                        });
                    let mut message = Vec::new();
                    e.write_message(&mut message);
                    resp::error(buffers.write_buf(), &message);
                    if refused_job {
                        let s = &mut self.sources[source];
                        s.metrics.on_received();
                        s.metrics.on_dropped(DropReason::TooLarge);
                        warn!(
                            "source {}: a PUBLISH larger than max_message_bytes refused; client closed",
                            s.name
                        );
                    }
                    break Stop::Linger(Some(DisconnectReason::ProtocolError));
                }
                Ok(Status::Complete(command, used)) => {
                    let mut quit = false;
                    let publish = match session.handle(&command, &mut reply) {
                        Outcome::Replied => None,
                        Outcome::Publish { channel, message } => {
                            Some((channel.to_vec(), message.to_vec()))
                        }
                        Outcome::Close => {
                            quit = true;
                            None
                        }
                    };
                    if session.is_authenticated() {
                        buffers.set_read_cap(*read_cap);
                    }
                    (used, (publish, quit))
                }
            };
            let (publish, quit) = publish;
            let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) else {
                return;
            };
            client.buffers.consume(used);
            consumed += used;
            client.buffers.write_buf().extend_from_slice(&reply);
            let changes = client.session.take_changes();
            if !changes.is_empty() {
                if let Some(server) = self.sources[source].server.as_mut() {
                    for change in changes {
                        server.apply(conn, change);
                    }
                }
            }
            if let Some((channel, message)) = publish {
                let receivers = self.publish(source, channel, message, now, io);
                if let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) {
                    resp::integer(client.buffers.write_buf(), receivers);
                }
            }
            if quit {
                break Stop::Linger(None);
            }
        };
        if let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) {
            // Paused while its replies pile up; otherwise one budget ahead at most.
            let ahead = matches!(stop, Stop::Backpressure).then_some(0);
            client
                .buffers
                .set_read_ahead(Some(ahead.unwrap_or(INPUT_BUDGET)));
        }
        if self.flush(conn, io).is_err() {
            self.close_client(conn, source, None);
            return;
        }
        match stop {
            Stop::NeedInput | Stop::Backpressure => {}
            Stop::Budget => self.rearm_read.push(conn),
            Stop::Linger(reason) => self.linger_client(conn, source, reason, now),
            Stop::Close(reason) => self.close_client(conn, source, reason),
        }
    }

    /// End of a loop turn: writes what the fan-out queued, once per client.
    pub(super) fn flush_dirty_clients(&mut self, io: &mut dyn Io) {
        for conn in std::mem::take(&mut self.dirty_clients) {
            let Some(Peer::RespClient(client)) = self.peers.get_mut(conn.0) else {
                continue;
            };
            client.dirty = false;
            let source = client.source;
            if client.state == ClientState::Closed {
                continue;
            }
            if io.flush(conn, &mut client.buffers).is_err() {
                self.close_client(conn, source, None);
                continue;
            }
            if client.state == ClientState::Linger && client.buffers.pending_output() == 0 {
                self.mark_close(conn);
            }
        }
    }

    /// `PUBLISH channel message`: a job when the channel is configured, and the message
    /// to every subscriber. Returns the number of receivers.
    fn publish(
        &mut self,
        source: SourceId,
        channel: Vec<u8>,
        message: Vec<u8>,
        now: Instant,
        io: &mut dyn Io,
    ) -> i64 {
        let mut receivers = self.fan_out(source, &channel, &message, io);
        let configured = self.sources[source]
            .channels()
            .iter()
            .position(|c| c.as_bytes() == channel.as_slice());
        if let Some(index) = configured {
            let s = &mut self.sources[source];
            s.metrics.on_received();
            if s.intake_stopped() {
                s.metrics.on_dropped(DropReason::Shutdown);
            } else if s.paused {
                // Pub/sub cannot hold messages: dropped, and not counted as received by a job.
                s.metrics.on_dropped(DropReason::Paused);
            } else {
                let job = Job {
                    id: self.next_job_id(),
                    source,
                    attempt: 1,
                    payload: message,
                    origin: Origin::Redis {
                        subscription: Subscription::Channel(index),
                        channel: None,
                        endpoint: true,
                    },
                    received_at: now,
                    resent: false,
                    dispatch_acked: false,
                };
                if self.offer_pubsub_job(job, now) {
                    receivers += 1;
                }
            }
        }
        receivers
    }

    /// Queues `message` on every open client subscribed to `channel` or a matching
    /// pattern; they are written once at the end of the loop turn (one write per client
    /// per turn, however many messages). A client whose queued bytes pass
    /// `client_output_buffer_bytes` — counting only what its socket could not take — is
    /// closed at once, counted once, its output dropped.
    fn fan_out(
        &mut self,
        source: SourceId,
        channel: &[u8],
        message: &[u8],
        io: &mut dyn Io,
    ) -> i64 {
        let Some(server) = self.sources[source].server.as_deref() else {
            return 0;
        };
        let mut delivered = 0i64;
        let mut overflowed: Vec<ConnId> = Vec::new();
        let peers = &mut self.peers;
        let dirty = &mut self.dirty_clients;
        let mut deliver = |clients: &[ConnId], pattern: Option<&[u8]>| {
            let mut encoded = Encoded::default();
            for &conn in clients {
                let Some(Peer::RespClient(client)) = peers.get_mut(conn.0) else {
                    continue;
                };
                if client.state != ClientState::Open {
                    continue;
                }
                let frame = encoded.get(client.session.version(), pattern, channel, message);
                client.buffers.write_buf().extend_from_slice(frame);
                delivered += 1;
                if client.buffers.write_backlogged() {
                    // Over the limit only counting what the socket could take now: write
                    // first (rare; a broken socket is found at the turn's end).
                    let _ = io.flush(conn, &mut client.buffers);
                }
                if client.buffers.write_backlogged() {
                    // Redis's pub/sub hard limit. Marked here so later messages of this
                    // turn skip it.
                    client.state = ClientState::Closed;
                    client.buffers.discard_output();
                    overflowed.push(conn);
                } else if !client.dirty {
                    client.dirty = true;
                    dirty.push(conn);
                }
            }
        };
        if let Some(clients) = server.channels.get(channel) {
            deliver(clients, None);
        }
        for (pattern, clients) in &server.patterns {
            if glob_match(pattern, channel) {
                deliver(clients, Some(pattern));
            }
        }
        for conn in overflowed {
            self.count_disconnect(source, Some(DisconnectReason::OutputBuffer));
            self.mark_close(conn);
        }
        delivered
    }
}
