//! RESP endpoint sources inside the loop (SPEC "Embedded deployment"): ferry listens for
//! Redis clients, answers them through `proto::resp::server`, turns what they `PUBLISH`
//! on a configured channel into jobs (the Redis pub/sub rules: backlog, drop reasons,
//! retries from memory), and delivers every published message to the clients subscribed
//! to its channel or a matching pattern — a small pub/sub server.
//!
//! - The listener and each client are slab entries (`Endpoint::RespListener`,
//!   `Endpoint::RespClient`), like the control endpoint's; the subscription index (channel
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
//!   it goes on `rearm_read`; messages are appended to subscribers' buffers and written
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
use std::io::{self, Write as _};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Token;

use super::control::Listener;
use super::jobs::{Job, Origin};
use super::{Endpoint, Runtime, TimerKey};
use crate::config::{Address, RespEndpointSource};
use crate::metrics::{DisconnectReason, DropReason};
use crate::proto::resp::server::{
    encode_message, glob_match, Change, ClientSession, CommandReader, Outcome, ProtocolError,
    ReaderLimits, SessionConfig, SubscriptionKind, MAX_BULK_UNAUTHENTICATED, MAX_INLINE,
};
use crate::proto::resp::{self, Subscription, Version};
use crate::proto::Status;
use crate::reactor::conn::{Conn, Fill};

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
    /// The listener's slab token.
    pub listener: usize,
    /// Clients connected now.
    pub clients: usize,
    /// `CLIENT ID` of the next client.
    next_client_id: u64,
    /// Channel → tokens of the clients subscribed to it.
    channels: HashMap<Vec<u8>, Vec<usize>>,
    /// Pattern → tokens of the clients subscribed to it.
    patterns: HashMap<Vec<u8>, Vec<usize>>,
}

/// One Redis client of an endpoint.
#[derive(Debug)]
pub(super) struct RespClient {
    /// The source (endpoint) it connected to.
    pub source: usize,
    pub conn: Conn,
    reader: CommandReader,
    session: ClientSession,
    state: ClientState,
    /// The peer closed its side: what it sent before is still answered, nothing is read.
    eof: bool,
    /// Listed in `Runtime::dirty_clients` (messages queued, to flush at the turn's end).
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
    fn index_mut(&mut self, kind: SubscriptionKind) -> &mut HashMap<Vec<u8>, Vec<usize>> {
        match kind {
            SubscriptionKind::Channel => &mut self.channels,
            SubscriptionKind::Pattern => &mut self.patterns,
        }
    }

    fn apply(&mut self, token: usize, change: Change) {
        let index = self.index_mut(change.kind);
        if change.subscribed {
            index.entry(change.name).or_default().push(token);
        } else {
            drop_token(index, &change.name, token);
        }
    }
}

fn drop_token(index: &mut HashMap<Vec<u8>, Vec<usize>>, name: &[u8], token: usize) {
    if let Some(tokens) = index.get_mut(name) {
        tokens.retain(|t| *t != token);
        if tokens.is_empty() {
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

impl Runtime {
    /// Binds a RESP endpoint's listener (or keeps the one handed over by a reload).
    pub(super) fn start_endpoint(&mut self, source: usize, listen: &Address) -> io::Result<()> {
        if self.sources[source].server.is_some() {
            return Ok(()); // adopted from the entry a reload replaced
        }
        let mut listener = Listener::bind(listen)?;
        let entry = self.slab.vacant_entry();
        let token = entry.key();
        listener.register(self.poll.registry(), Token(token))?;
        entry.insert(Endpoint::RespListener { source, listener });
        self.sources[source].server = Some(Box::new(EndpointServer {
            listener: token,
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
    pub(super) fn adopt_endpoint(&mut self, old: usize, new: usize) {
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
        for (_, endpoint) in self.slab.iter_mut() {
            match endpoint {
                Endpoint::RespListener { source, .. } if *source == old => *source = new,
                Endpoint::RespClient(client) if client.source == old => client.source = new,
                _ => {}
            }
        }
        self.sources[new].server = Some(server);
    }

    /// Closing phase (or a retired entry's end): the listener and every client close.
    pub(super) fn close_endpoint(&mut self, source: usize) {
        let Some(server) = self.sources[source].server.take() else {
            return;
        };
        self.mark_close(server.listener);
        let clients: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, e)| matches!(e, Endpoint::RespClient(c) if c.source == source))
            .map(|(token, _)| token)
            .collect();
        for token in clients {
            self.mark_close(token);
        }
    }

    /// Accepts until `WouldBlock` (failures: `fds.rs`).
    pub(super) fn on_endpoint_accept(&mut self, token: usize, now: Instant) {
        while let Some(mut stream) = self.accept_one(token, now) {
            let Some(Endpoint::RespListener { source, .. }) = self.slab.get(token) else {
                return;
            };
            let source = *source;
            let fds_left = self.resp_clients() < self.resp_client_budget;
            let s = &mut self.sources[source];
            let Some(config) = s.endpoint_config().map(ClientLimits::of) else {
                stream.shutdown();
                continue;
            };
            let Some(server) = s.server.as_mut() else {
                stream.shutdown();
                continue;
            };
            if server.clients >= config.max_clients || !fds_left {
                // Like Redis: say why, then close (best effort: the socket is fresh and
                // its send buffer empty, so the line goes out in one write).
                let _ = stream.write(MAX_CLIENTS_REPLY);
                stream.shutdown();
                s.endpoint_metrics
                    .on_disconnect(DisconnectReason::MaxClients);
                debug!("source {}: max_clients reached; a client refused", s.name);
                continue;
            }
            let id = server.next_client_id;
            server.next_client_id += 1;
            let read_cap = config.max_message_bytes.saturating_add(QUERY_SLACK);
            let first_cap = if config.password.is_some() {
                read_cap.min(UNAUTHENTICATED_READ_CAP)
            } else {
                read_cap
            };
            let conn = Conn::new(stream, first_cap, config.client_output_buffer_bytes);
            let client = RespClient {
                source,
                conn,
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
            match self.insert(Endpoint::RespClient(Box::new(client))) {
                Ok(_) => {
                    if let Some(server) = self.sources[source].server.as_mut() {
                        server.clients += 1;
                    }
                }
                Err(e) => warn!(
                    "source {}: cannot register a client: {e}",
                    self.sources[source].name
                ),
            }
        }
    }

    /// A client is being removed from the slab: drop it from the index and the count.
    pub(super) fn forget_resp_client(&mut self, token: usize) {
        let Some(Endpoint::RespClient(client)) = self.slab.get(token) else {
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
                drop_token(server.index_mut(kind), &name, token);
            }
        }
    }

    /// Closes a client at the end of the turn (counted with `reason`, once).
    fn close_client(&mut self, token: usize, source: usize, reason: Option<DisconnectReason>) {
        if let Some(Endpoint::RespClient(client)) = self.slab.get_mut(token) {
            if client.state == ClientState::Closed {
                return;
            }
            client.state = ClientState::Closed;
        }
        self.count_disconnect(source, reason);
        self.mark_close(token);
    }

    fn count_disconnect(&mut self, source: usize, reason: Option<DisconnectReason>) {
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
        token: usize,
        source: usize,
        reason: Option<DisconnectReason>,
        now: Instant,
    ) {
        let Some(Endpoint::RespClient(client)) = self.slab.get_mut(token) else {
            return;
        };
        if client.state != ClientState::Open {
            return;
        }
        client.state = ClientState::Linger;
        let written = client.conn.pending_output() == 0;
        self.count_disconnect(source, reason);
        if written {
            self.mark_close(token);
        } else {
            self.timers.arm(TimerKey::Client(token), now + LINGER);
        }
    }

    /// Readiness of a client (or a re-read at the next turn): write what is queued, then
    /// work off some of its input.
    pub(super) fn on_resp_client_ready(&mut self, token: usize, now: Instant) {
        let Some(Endpoint::RespClient(client)) = self.slab.get(token) else {
            return;
        };
        let source = client.source;
        if self.flush(token).is_err() {
            self.close_client(token, source, None);
            return;
        }
        let Some(Endpoint::RespClient(client)) = self.slab.get(token) else {
            return;
        };
        match client.state {
            ClientState::Open => self.work_client(token, source, now),
            ClientState::Linger if client.conn.pending_output() == 0 => self.mark_close(token),
            ClientState::Linger | ClientState::Closed => {}
        }
    }

    /// Reads a client's requests and answers them in order, [`INPUT_BUDGET`] bytes of
    /// them at most, and no further while [`OUTPUT_SOFT_MARK`] bytes of replies wait.
    fn work_client(&mut self, token: usize, source: usize, now: Instant) {
        /// Why the work stopped.
        enum Stop {
            /// Waiting for bytes: the socket was read until `WouldBlock`.
            NeedInput,
            /// The budget is spent: go on at the next turn.
            Budget,
            /// Replies pile up: go on when the socket is writable.
            Backpressure,
            /// Nothing more will be read (EOF, QUIT, protocol error).
            Linger(Option<DisconnectReason>),
            /// Close at once.
            Close(Option<DisconnectReason>),
        }
        let mut consumed = 0usize;
        let mut drained = false;
        let mut reply = Vec::new();
        let stop = loop {
            let Some(Endpoint::RespClient(client)) = self.slab.get_mut(token) else {
                return;
            };
            if client.conn.pending_output() > OUTPUT_SOFT_MARK {
                if self.flush(token).is_err() {
                    break Stop::Close(None);
                }
                match self.slab.get(token) {
                    Some(Endpoint::RespClient(c)) if c.conn.pending_output() > OUTPUT_SOFT_MARK => {
                        break Stop::Backpressure
                    }
                    Some(Endpoint::RespClient(_)) => continue,
                    _ => return,
                }
            }
            if consumed >= INPUT_BUDGET {
                break Stop::Budget;
            }
            let RespClient {
                conn,
                reader,
                session,
                eof,
                read_cap,
                ..
            } = &mut **client;
            let input = conn.input();
            reply.clear();
            let (used, publish) = match reader.read(input, session.is_authenticated()) {
                Ok(Status::Partial) => {
                    let skipped = reader.take_skipped();
                    conn.consume(skipped);
                    consumed += skipped;
                    if *eof {
                        break Stop::Linger(None);
                    }
                    if drained {
                        break Stop::NeedInput;
                    }
                    if conn.unconsumed() >= conn.read_cap() {
                        // One request does not fit the query buffer.
                        break Stop::Close(Some(DisconnectReason::QueryBuffer));
                    }
                    match conn.fill_to(conn.unconsumed() + INPUT_BUDGET) {
                        Ok(Fill::Full) => {}
                        Ok(Fill::Drained) => drained = true,
                        // What arrived before the EOF is still answered (`echo PING | nc`).
                        Ok(Fill::Eof) => *eof = true,
                        Err(_) => break Stop::Close(None),
                    }
                    continue;
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
                    resp::error(conn.write_buf(), &message);
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
                        conn.set_read_cap(*read_cap);
                    }
                    (used, (publish, quit))
                }
            };
            let (publish, quit) = publish;
            let Some(Endpoint::RespClient(client)) = self.slab.get_mut(token) else {
                return;
            };
            client.conn.consume(used);
            consumed += used;
            client.conn.write_buf().extend_from_slice(&reply);
            let changes = client.session.take_changes();
            if !changes.is_empty() {
                if let Some(server) = self.sources[source].server.as_mut() {
                    for change in changes {
                        server.apply(token, change);
                    }
                }
            }
            if let Some((channel, message)) = publish {
                let receivers = self.publish(source, channel, message, now);
                if let Some(Endpoint::RespClient(client)) = self.slab.get_mut(token) {
                    resp::integer(client.conn.write_buf(), receivers);
                }
            }
            if quit {
                break Stop::Linger(None);
            }
        };
        if self.flush(token).is_err() {
            self.close_client(token, source, None);
            return;
        }
        match stop {
            Stop::NeedInput | Stop::Backpressure => {}
            Stop::Budget => self.rearm_read.push(token),
            Stop::Linger(reason) => self.linger_client(token, source, reason, now),
            Stop::Close(reason) => self.close_client(token, source, reason),
        }
    }

    /// End of a loop turn: writes what the fan-out queued, once per client.
    pub(super) fn flush_dirty_clients(&mut self) {
        for token in std::mem::take(&mut self.dirty_clients) {
            let Some(Endpoint::RespClient(client)) = self.slab.get_mut(token) else {
                continue;
            };
            client.dirty = false;
            let source = client.source;
            if client.state == ClientState::Closed {
                continue;
            }
            if self.flush(token).is_err() {
                self.close_client(token, source, None);
                continue;
            }
            if let Some(Endpoint::RespClient(client)) = self.slab.get(token) {
                if client.state == ClientState::Linger && client.conn.pending_output() == 0 {
                    self.mark_close(token);
                }
            }
        }
    }

    /// `PUBLISH channel message`: a job when the channel is configured, and the message
    /// to every subscriber. Returns the number of receivers.
    fn publish(&mut self, source: usize, channel: Vec<u8>, message: Vec<u8>, now: Instant) -> i64 {
        let mut receivers = self.fan_out(source, &channel, &message);
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
                    id: self.next_job_id,
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
                self.next_job_id += 1;
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
    /// `client_output_buffer_bytes` is closed at once, counted once, its output dropped.
    fn fan_out(&mut self, source: usize, channel: &[u8], message: &[u8]) -> i64 {
        let Some(server) = self.sources[source].server.as_deref() else {
            return 0;
        };
        let mut delivered = 0i64;
        let mut overflowed: Vec<usize> = Vec::new();
        let slab = &mut self.slab;
        let dirty = &mut self.dirty_clients;
        let mut deliver = |tokens: &[usize], pattern: Option<&[u8]>| {
            let mut encoded = Encoded::default();
            for &token in tokens {
                let Some(Endpoint::RespClient(client)) = slab.get_mut(token) else {
                    continue;
                };
                if client.state != ClientState::Open {
                    continue;
                }
                let frame = encoded.get(client.session.version(), pattern, channel, message);
                client.conn.write_buf().extend_from_slice(frame);
                delivered += 1;
                if client.conn.write_backlogged() {
                    // Over the limit only counting what the socket could take now: write
                    // first (rare; a broken socket is found at the turn's end).
                    let _ = client.conn.flush();
                }
                if client.conn.write_backlogged() {
                    // Redis's pub/sub hard limit. Marked here so later messages of this
                    // turn skip it.
                    client.state = ClientState::Closed;
                    client.conn.discard_output();
                    overflowed.push(token);
                } else if !client.dirty {
                    client.dirty = true;
                    dirty.push(token);
                }
            }
        };
        if let Some(tokens) = server.channels.get(channel) {
            deliver(tokens, None);
        }
        for (pattern, tokens) in &server.patterns {
            if glob_match(pattern, channel) {
                deliver(tokens, Some(pattern));
            }
        }
        for token in overflowed {
            self.count_disconnect(source, Some(DisconnectReason::OutputBuffer));
            self.mark_close(token);
        }
        delivered
    }
}
