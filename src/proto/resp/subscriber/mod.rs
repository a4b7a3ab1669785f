//! The Redis pub/sub subscriber session: one connection's conversation with a Redis
//! server, from `HELLO` to the last message, as a sans-IO state machine (see
//! `docs/ARCHITECTURE.md`, "The session contract"). It implements the Redis side of
//! `docs/SEMANTICS.md`: "Redis pub/sub and the RESP endpoint: at-most-once", "Size limits"
//! (a message over `max_message_bytes` is skipped unread and counted, never buffered), the
//! unsubscribe of "Drain", and the liveness check of "Reconnecting", for which Redis has
//! no heartbeat of its own: the session PINGs when the connection is quiet.
//!
//! # The conversation
//! 1. On construction: `HELLO 3 [AUTH <user|default> <pass>] [SETNAME <name>]`. A map
//!    answer means RESP3 (the server's `version` is kept). `-ERR unknown command` or
//!    `-NOPROTO` means an older server: the session continues in RESP2 and sends
//!    `AUTH [<user>] <pass>` when it has a password. `-WRONGPASS`, `-NOAUTH`,
//!    `-ERR invalid password` (or any error answering AUTH) fail the session with
//!    [`SubscriberError::AuthFailed`].
//! 2. `SUBSCRIBE <every channel>` and `PSUBSCRIBE <every pattern>`, pipelined. Redis
//!    answers one confirmation per name, in order; each is checked, then
//!    [`SubscriberEvent::Ready`].
//! 3. `message`/`pmessage` frames (RESP2 arrays or RESP3 pushes) become
//!    [`SubscriberEvent::Message`]s naming the configured [`Subscription`]. Unknown push
//!    kinds (`invalidate`) and attributes are ignored; a `-ERR` reply is a non-fatal
//!    [`SubscriberEvent::Error`].
//! 4. After `keepalive_interval` without input the session sends `PING`; any input (the
//!    PONG or anything else) proves the peer alive. Nothing for `pong_timeout` after the
//!    PING (or, before subscribing, `keepalive_interval + pong_timeout` after the last
//!    input) is [`SubscriberError::PeerDead`].
//! 5. [`Subscriber::unsubscribe`] (drain) sends `UNSUBSCRIBE`/`PUNSUBSCRIBE` with the same
//!    names; messages still arriving are delivered; when every confirmation is in,
//!    [`SubscriberEvent::Unsubscribed`].
//!
//! # Fatal and non-fatal errors
//! A fatal error ends the session: `handle_input` returns it (and every later call
//! returns [`SubscriberError::SessionOver`]); one found by `handle_timeout` (a dead peer)
//! comes out as [`SubscriberEvent::Failed`]. Either way the reactor closes the connection
//! and reconnects with backoff, making a new session. Non-fatal errors are
//! [`SubscriberEvent::Error`] and the session goes on.
//!
//! # Oversized messages
//! The RESP decoder only hands out whole frames, so on its own it would buffer a message
//! of any size up to its bulk limit. The session caps the decoder's bulk length at
//! `max_message_bytes` (at least 64 KiB, for names and replies), and when a frame stops
//! short (`Partial`) or is refused as too long, it peeks at its header (`peek.rs`): a
//! `message`/`pmessage` whose payload is too long is then skipped as its bytes arrive
//! (counted as consumed, never kept) and reported as [`SubscriberEvent::Dropped`].
//!
//! # Layout
//! - `mod.rs`: [`Subscriber`], its configuration, events and errors.
//! - `peek.rs`: the header peek for oversized messages.

mod peek;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::{encode_command, Decoder, Frame, Limits, PubSubEvent, RespError, SubscribeKind};
use super::{PubSubError, Version};
use crate::proto::Status;
use peek::{peek_oversized, OversizedHeader, Peek};

/// Default quiet time before the session PINGs: 15 s.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Default time a PING may go unanswered (nothing at all read) before the peer is
/// declared dead: two keepalive intervals.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(30);
/// Server error texts kept in errors are cut to this many bytes.
pub const MAX_ERROR_TEXT: usize = 200;
/// The smallest bulk-string limit the decoder gets whatever `max_message_bytes` says:
/// channel names, pattern names and `HELLO`'s fields must fit.
const MIN_BULK_LIMIT: usize = 64 * 1024;

/// What a subscriber session needs to know, built by the reactor from the source's
/// configuration (`config::RedisSource`).
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriberConfig {
    /// ACL user name; used only with a password (`default` when absent).
    pub username: Option<Vec<u8>>,
    /// Password: sent in `HELLO 3 AUTH`, or with `AUTH` on an older server.
    pub password: Option<Vec<u8>>,
    /// Connection name shown by `CLIENT LIST` (e.g. `ferry:<source>`), set through
    /// `HELLO`'s `SETNAME` (so RESP3 servers only). Bytes Redis refuses in a name (space,
    /// control characters, non-ASCII) are sent as `_`.
    pub client_name: Option<Vec<u8>>,
    /// Channels to SUBSCRIBE, in order; [`Subscription::Channel`] indexes this list.
    pub channels: Vec<Vec<u8>>,
    /// Patterns to PSUBSCRIBE, in order; [`Subscription::Pattern`] indexes this list.
    pub patterns: Vec<Vec<u8>>,
    /// Longest payload delivered; longer ones are skipped and reported as dropped.
    pub max_message_bytes: usize,
    /// Quiet time (nothing read) after which the session sends `PING`.
    pub keepalive_interval: Duration,
    /// How long after a `PING` the session waits for any input before the peer is dead.
    pub pong_timeout: Duration,
}

impl SubscriberConfig {
    /// A configuration without credentials or name, with the default limits and timers.
    pub fn new(channels: Vec<Vec<u8>>, patterns: Vec<Vec<u8>>) -> Self {
        SubscriberConfig {
            username: None,
            password: None,
            client_name: None,
            channels,
            patterns,
            max_message_bytes: crate::config::defaults::MAX_MESSAGE_BYTES,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
        }
    }
}

// Written by hand so that the password never reaches a log through `{:?}`.
impl fmt::Debug for SubscriberConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lossy = |bytes: &Vec<u8>| String::from_utf8_lossy(bytes).into_owned();
        f.debug_struct("SubscriberConfig")
            .field("username", &self.username.as_ref().map(lossy))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_name", &self.client_name.as_ref().map(lossy))
            .field(
                "channels",
                &self.channels.iter().map(lossy).collect::<Vec<_>>(),
            )
            .field(
                "patterns",
                &self.patterns.iter().map(lossy).collect::<Vec<_>>(),
            )
            .field("max_message_bytes", &self.max_message_bytes)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("pong_timeout", &self.pong_timeout)
            .finish()
    }
}

/// Which configured subscription a message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// `SubscriberConfig::channels[i]`.
    Channel(usize),
    /// `SubscriberConfig::patterns[i]`.
    Pattern(usize),
}

/// One published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subscription it came through.
    pub subscription: Subscription,
    /// The channel it was published to, for pattern subscriptions only (for a channel
    /// subscription it is the configured channel).
    pub channel: Option<Vec<u8>>,
    /// The published bytes.
    pub payload: Vec<u8>,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its payload was longer than `max_message_bytes` (metrics: `too_large`).
    TooLarge,
}

/// A message the session skipped without keeping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The subscription it came through, when it names a configured one.
    pub subscription: Option<Subscription>,
    /// The channel, for pattern subscriptions (or when no subscription matched).
    pub channel: Option<Vec<u8>>,
    /// The payload's length in bytes.
    pub bytes: usize,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// What happened on the connection, for the reactor and dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// Every subscription is confirmed: messages flow from now on.
    Ready,
    /// A message arrived.
    Message(Message),
    /// A message was skipped unread (counted as dropped, reason `too_large`).
    Dropped(Dropped),
    /// Something went wrong that does not end the session (a `-ERR` reply, a message
    /// for a channel not subscribed).
    Error(SubscriberError),
    /// The session is over because of this error, found by `handle_timeout` (a dead
    /// peer): close the connection and reconnect.
    Failed(SubscriberError),
    /// Every subscription is gone after [`Subscriber::unsubscribe`]: close the connection.
    Unsubscribed,
    /// The peer closed the connection (`handle_eof`): reconnect with backoff.
    Closed,
}

/// Why the session failed, or what went wrong without ending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberError {
    /// The bytes are not RESP (or break the decoder's limits).
    Protocol(RespError),
    /// A frame named a pub/sub event but had the wrong shape.
    PubSub(PubSubError),
    /// A well-formed frame that has no place in the conversation at this point.
    UnexpectedFrame {
        /// What the session was waiting for.
        waiting_for: &'static str,
        /// What arrived instead (the frame's type, or the pub/sub event's kind).
        found: &'static str,
    },
    /// A subscribe/unsubscribe confirmation that is not the next one expected.
    WrongConfirmation {
        /// The confirmation expected, e.g. `subscribe "orders"`.
        expected: String,
        /// The one received.
        found: String,
    },
    /// The server refused the credentials (or demanded some): its text, cut to
    /// [`MAX_ERROR_TEXT`] bytes, the password removed. Retrying will not help until the
    /// configuration changes.
    AuthFailed {
        /// The server's error text.
        text: String,
    },
    /// The server refused a command of the conversation (fatal during the handshake).
    Rejected {
        /// The command: `HELLO` or `SUBSCRIBE`.
        command: &'static str,
        /// The server's error text, cut to [`MAX_ERROR_TEXT`] bytes.
        text: String,
    },
    /// A `-ERR` reply while subscribed (non-fatal).
    ServerError {
        /// The server's error text, cut to [`MAX_ERROR_TEXT`] bytes.
        text: String,
    },
    /// A message for a channel or pattern this session never subscribed to (non-fatal;
    /// the message is not delivered).
    UnknownSubscription {
        /// The channel (or pattern), lossily decoded and cut to [`MAX_ERROR_TEXT`] bytes.
        name: String,
    },
    /// Nothing was read for this long (a `PING` went unanswered).
    PeerDead {
        /// Time since the last byte was read.
        silent_for: Duration,
    },
    /// The session already ended (error, EOF, dead peer) and takes no more input.
    SessionOver,
}

impl fmt::Display for SubscriberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriberError::Protocol(error) => write!(f, "protocol error: {error}"),
            SubscriberError::PubSub(error) => write!(f, "protocol error: {error}"),
            SubscriberError::UnexpectedFrame { waiting_for, found } => {
                write!(f, "unexpected {found} while waiting for {waiting_for}")
            }
            SubscriberError::WrongConfirmation { expected, found } => {
                write!(f, "expected confirmation {expected}, got {found}")
            }
            SubscriberError::AuthFailed { text } => {
                write!(f, "authentication failed: {text}")
            }
            SubscriberError::Rejected { command, text } => {
                write!(f, "server refused {command}: {text}")
            }
            SubscriberError::ServerError { text } => write!(f, "server error: {text}"),
            SubscriberError::UnknownSubscription { name } => {
                write!(f, "message for {name:?}, which is not subscribed")
            }
            SubscriberError::PeerDead { silent_for } => write!(
                f,
                "peer dead: nothing read for {} ms",
                silent_for.as_millis()
            ),
            SubscriberError::SessionOver => f.write_str("session already over"),
        }
    }
}

impl std::error::Error for SubscriberError {}

impl From<RespError> for SubscriberError {
    fn from(error: RespError) -> Self {
        SubscriberError::Protocol(error)
    }
}

impl From<PubSubError> for SubscriberError {
    fn from(error: PubSubError) -> Self {
        SubscriberError::PubSub(error)
    }
}

/// Where the conversation is, named for what it waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `HELLO 3` sent: a map (RESP3), or an error meaning RESP2 or bad credentials.
    AwaitingHello,
    /// RESP2 fallback: `AUTH` sent, `+OK` expected.
    AwaitingAuth,
    /// `SUBSCRIBE`/`PSUBSCRIBE` sent: `confirmed` confirmations (channels, then
    /// patterns) have been checked. `then_unsubscribe`: a drain began meanwhile.
    AwaitingSubscribed {
        confirmed: usize,
        then_unsubscribe: bool,
    },
    /// Subscribed: messages flow.
    Subscribed,
    /// `UNSUBSCRIBE`/`PUNSUBSCRIBE` sent: `confirmed` confirmations checked.
    AwaitingUnsubscribed { confirmed: usize },
    /// Nothing subscribed any more; the reactor closes the connection.
    Unsubscribed,
    /// Over: EOF, a fatal error or a dead peer.
    Over,
}

impl State {
    /// What the state waits for, for [`SubscriberError::UnexpectedFrame`].
    fn waiting_for(self) -> &'static str {
        match self {
            State::AwaitingHello => "the HELLO reply",
            State::AwaitingAuth => "the AUTH reply",
            State::AwaitingSubscribed { .. } => "subscribe confirmations",
            State::Subscribed => "messages",
            State::AwaitingUnsubscribed { .. } => "unsubscribe confirmations",
            State::Unsubscribed => "nothing (unsubscribed)",
            State::Over => "nothing (session over)",
        }
    }

    /// True in the states where pub/sub messages may arrive.
    fn takes_messages(self) -> bool {
        matches!(
            self,
            State::AwaitingSubscribed { .. }
                | State::Subscribed
                | State::AwaitingUnsubscribed { .. }
        )
    }
}

/// How the next input bytes are read: as frames, or skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    /// Frames, through the decoder. `peeked`: the frame now arriving was already
    /// checked for an oversized payload (so later partial reads do not peek again).
    Frames { peeked: bool },
    /// Inside an oversized message's payload: `remaining` bytes (payload then CRLF) to
    /// consume without keeping, then report `dropped`.
    Skipping { remaining: usize, dropped: Dropped },
}

/// A Redis pub/sub subscriber session; see the module docs for the conversation.
pub struct Subscriber {
    config: SubscriberConfig,
    /// Channel name → index in `config.channels` (first occurrence wins).
    channel_index: HashMap<Vec<u8>, usize>,
    /// Pattern → index in `config.patterns`.
    pattern_index: HashMap<Vec<u8>, usize>,
    state: State,
    input: Input,
    decoder: Decoder,
    /// The protocol in use, once the server answered `HELLO`.
    protocol: Option<Version>,
    /// The server's `version` from the `HELLO` map.
    server_version: Option<String>,
    /// When the last byte was read (or the session started).
    last_input: Instant,
    /// When the keepalive `PING` was sent, if one is outstanding since `last_input`.
    ping_sent: Option<Instant>,
    /// Bytes waiting for `poll_transmit`.
    transmit: Vec<u8>,
    events: VecDeque<SubscriberEvent>,
}

impl Subscriber {
    /// Starts a session on a freshly connected socket: queues `HELLO 3` for
    /// `poll_transmit`.
    pub fn new(config: SubscriberConfig, now: Instant) -> Self {
        let limits = Limits {
            max_bulk_len: config.max_message_bytes.max(MIN_BULK_LIMIT),
            // HELLO's map with a few modules is the largest non-message reply.
            max_elements: 1024,
            max_depth: 8,
            max_line_len: 16 * 1024,
        };
        let index = |names: &[Vec<u8>]| {
            let mut map = HashMap::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                map.entry(name.clone()).or_insert(i);
            }
            map
        };
        let mut session = Subscriber {
            channel_index: index(&config.channels),
            pattern_index: index(&config.patterns),
            config,
            state: State::AwaitingHello,
            input: Input::Frames { peeked: false },
            decoder: Decoder::new(limits),
            protocol: None,
            server_version: None,
            last_input: now,
            ping_sent: None,
            transmit: Vec::new(),
            events: VecDeque::new(),
        };
        session.send_hello();
        session
    }

    /// The protocol the server agreed to, once it answered `HELLO` (or refused it).
    pub fn protocol(&self) -> Option<Version> {
        self.protocol
    }

    /// The server's version as `HELLO` reported it (RESP3 servers only).
    pub fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// True once every subscription is confirmed and until a drain or the end.
    pub fn is_subscribed(&self) -> bool {
        self.state == State::Subscribed
    }

    /// True when the session is over (EOF, fatal error, dead peer) or fully unsubscribed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Over | State::Unsubscribed)
    }

    /// The configuration the session runs with.
    pub fn config(&self) -> &SubscriberConfig {
        &self.config
    }

    /// Feeds bytes read from the socket (call after each read, with every byte not yet
    /// consumed). Returns how many bytes were consumed from the start of `buf`; keep the
    /// rest and pass it, followed by newer bytes, next time. An `Err` is fatal.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> Result<usize, SubscriberError> {
        if self.state == State::Over {
            return Err(SubscriberError::SessionOver);
        }
        if !buf.is_empty() {
            // Any byte proves the peer alive, not just a PONG.
            self.last_input = now;
            self.ping_sent = None;
        }
        match self.read(buf) {
            Ok(consumed) => Ok(consumed),
            Err(error) => {
                self.state = State::Over;
                self.decoder.reset();
                Err(error)
            }
        }
    }

    /// Consumes as many whole frames (and skipped bytes) as `buf` holds.
    fn read(&mut self, buf: &[u8]) -> Result<usize, SubscriberError> {
        let mut consumed = 0;
        loop {
            let rest = buf.get(consumed..).unwrap_or_default();
            if rest.is_empty() || self.state == State::Over {
                return Ok(consumed);
            }
            if let Input::Skipping { remaining, .. } = &mut self.input {
                consumed += skip(rest, remaining)?;
                if *remaining == 0 {
                    if let Input::Skipping { dropped, .. } =
                        std::mem::replace(&mut self.input, Input::Frames { peeked: false })
                    {
                        self.report_dropped(dropped);
                    }
                }
                continue;
            }
            match self.decoder.decode(rest) {
                Ok(Status::Complete(frame, used)) => {
                    consumed += used;
                    self.input = Input::Frames { peeked: false };
                    self.on_frame(&frame)?;
                }
                Ok(Status::Partial) => {
                    if self.should_peek() {
                        match self.peek(rest) {
                            Some(header_len) => consumed += header_len,
                            None => return Ok(consumed),
                        }
                    } else {
                        return Ok(consumed);
                    }
                }
                Err(RespError::BulkTooLong) if self.state.takes_messages() => {
                    // The decoder has reset itself; the peek tells a too-long message
                    // payload (skip it) from any other oversized bulk (fatal).
                    match self.peek(rest) {
                        Some(header_len) => consumed += header_len,
                        None => return Err(RespError::BulkTooLong.into()),
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn should_peek(&self) -> bool {
        self.state.takes_messages() && self.input == Input::Frames { peeked: false }
    }

    /// Peeks at the partial frame at the start of `rest`. When it is an oversized
    /// message, switches to skipping its payload and returns the header's length (to be
    /// consumed); otherwise remembers that this frame was looked at.
    fn peek(&mut self, rest: &[u8]) -> Option<usize> {
        let max_name = self.decoder.limits().max_bulk_len;
        match peek_oversized(rest, self.config.max_message_bytes, max_name) {
            Peek::NeedMore => None,
            Peek::NotOversized => {
                self.input = Input::Frames { peeked: true };
                None
            }
            Peek::Oversized(header) => {
                let dropped = self.dropped_for(rest, &header);
                // The decoder's half-validated position refers to bytes that are now
                // being consumed from under it.
                self.decoder.reset();
                self.input = Input::Skipping {
                    remaining: header.payload_len.saturating_add(2),
                    dropped,
                };
                Some(header.header_len)
            }
        }
    }

    /// Describes the message whose header `header` found in `rest`.
    fn dropped_for(&self, rest: &[u8], header: &OversizedHeader) -> Dropped {
        let channel = rest.get(header.channel.clone()).unwrap_or_default();
        let (subscription, channel) = match &header.pattern {
            Some(pattern) => {
                let pattern = rest.get(pattern.clone()).unwrap_or_default();
                (
                    self.pattern_index
                        .get(pattern)
                        .map(|&i| Subscription::Pattern(i)),
                    Some(channel.to_vec()),
                )
            }
            None => match self.channel_index.get(channel) {
                Some(&i) => (Some(Subscription::Channel(i)), None),
                None => (None, Some(channel.to_vec())),
            },
        };
        Dropped {
            subscription,
            channel,
            bytes: header.payload_len,
            reason: DropReason::TooLarge,
        }
    }

    fn report_dropped(&mut self, dropped: Dropped) {
        self.events.push_back(SubscriberEvent::Dropped(dropped));
    }

    /// Routes one decoded frame according to the state.
    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<(), SubscriberError> {
        match frame {
            // Redis sends none outside `DEBUG PROTOCOL attrib`; they annotate, never answer.
            Frame::Attribute(_) => Ok(()),
            // A push is never a reply: pub/sub or an unknown kind, in any state.
            Frame::Push(_) => self.on_pubsub_frame(frame),
            _ => match self.state {
                State::AwaitingHello => self.on_hello_reply(frame),
                State::AwaitingAuth => self.on_auth_reply(frame),
                _ => self.on_pubsub_frame(frame),
            },
        }
    }

    fn on_hello_reply(&mut self, frame: &Frame<'_>) -> Result<(), SubscriberError> {
        match frame {
            Frame::Map(map) => {
                let mut protocol = Version::Resp3;
                for (key, value) in map.pairs() {
                    match (key.as_bytes(), value) {
                        (Some(b"version"), value) => {
                            self.server_version = value
                                .as_bytes()
                                .map(|version| truncated_text(version, None));
                        }
                        (Some(b"proto"), Frame::Integer(2)) => protocol = Version::Resp2,
                        _ => {}
                    }
                }
                self.protocol = Some(protocol);
                self.send_subscribe();
                Ok(())
            }
            Frame::Error(text) | Frame::BulkError(text) => {
                if is_hello_unsupported(text) {
                    // An older server (or one without RESP3): RESP2 it is. HELLO's AUTH
                    // was not processed, so authenticate separately.
                    self.protocol = Some(Version::Resp2);
                    if self.config.password.is_some() {
                        self.send_auth();
                    } else {
                        self.send_subscribe();
                    }
                    Ok(())
                } else if is_auth_error(text) {
                    Err(self.auth_failed(text))
                } else {
                    Err(SubscriberError::Rejected {
                        command: "HELLO",
                        text: self.server_text(text),
                    })
                }
            }
            other => Err(self.unexpected(other)),
        }
    }

    fn on_auth_reply(&mut self, frame: &Frame<'_>) -> Result<(), SubscriberError> {
        match frame {
            Frame::SimpleString(b"OK") => {
                self.send_subscribe();
                Ok(())
            }
            // Any refusal of AUTH is about the credentials, whatever its code.
            Frame::Error(text) | Frame::BulkError(text) => Err(self.auth_failed(text)),
            other => Err(self.unexpected(other)),
        }
    }

    /// Frames of the subscribed states (and pushes in any state).
    fn on_pubsub_frame(&mut self, frame: &Frame<'_>) -> Result<(), SubscriberError> {
        let event = match PubSubEvent::from_frame(frame)? {
            Some(event) => event,
            None => return self.on_other_frame(frame),
        };
        match event {
            PubSubEvent::Message { channel, payload } if self.state.takes_messages() => {
                match self.channel_index.get(channel) {
                    Some(&i) => self.deliver(Subscription::Channel(i), None, payload),
                    None => self.unknown_subscription(channel),
                }
                Ok(())
            }
            PubSubEvent::PMessage {
                pattern,
                channel,
                payload,
            } if self.state.takes_messages() => {
                match self.pattern_index.get(pattern) {
                    Some(&i) => self.deliver(Subscription::Pattern(i), Some(channel), payload),
                    None => self.unknown_subscription(pattern),
                }
                Ok(())
            }
            // Never subscribed to shard channels: report, do not deliver.
            PubSubEvent::SMessage { channel, .. } if self.state.takes_messages() => {
                self.unknown_subscription(channel);
                Ok(())
            }
            // The keepalive's answer; its arrival already counted as input.
            PubSubEvent::Pong { .. } if self.state.takes_messages() => Ok(()),
            PubSubEvent::Subscribe { kind, name, .. } => self.on_subscribed(kind, name),
            PubSubEvent::Unsubscribe { kind, name, count } => {
                self.on_unsubscribed(kind, name, count)
            }
            PubSubEvent::Message { .. } => Err(self.unexpected_kind("message")),
            PubSubEvent::PMessage { .. } => Err(self.unexpected_kind("pmessage")),
            PubSubEvent::SMessage { .. } => Err(self.unexpected_kind("smessage")),
            PubSubEvent::Pong { .. } => Err(self.unexpected_kind("pong")),
        }
    }

    /// A frame that is no pub/sub event: an unknown push, an error reply, or garbage.
    fn on_other_frame(&mut self, frame: &Frame<'_>) -> Result<(), SubscriberError> {
        match (frame, self.state) {
            // `invalidate` and whatever later Redis versions push: not ours.
            (Frame::Push(_), _) => Ok(()),
            (Frame::Error(text) | Frame::BulkError(text), State::AwaitingSubscribed { .. }) => {
                // SUBSCRIBE refused (ACL `NOPERM`, …): nothing will be delivered.
                Err(SubscriberError::Rejected {
                    command: "SUBSCRIBE",
                    text: self.server_text(text),
                })
            }
            (
                Frame::Error(text) | Frame::BulkError(text),
                State::Subscribed | State::AwaitingUnsubscribed { .. },
            ) => {
                let text = self.server_text(text);
                self.events
                    .push_back(SubscriberEvent::Error(SubscriberError::ServerError {
                        text,
                    }));
                Ok(())
            }
            (other, _) => Err(self.unexpected(other)),
        }
    }

    fn deliver(&mut self, subscription: Subscription, channel: Option<&[u8]>, payload: &[u8]) {
        // A payload at most `max_message_bytes` long: the peek skips longer ones unless
        // the whole frame arrived in one read, which the check below covers.
        if payload.len() > self.config.max_message_bytes {
            self.report_dropped(Dropped {
                subscription: Some(subscription),
                channel: channel.map(<[u8]>::to_vec),
                bytes: payload.len(),
                reason: DropReason::TooLarge,
            });
            return;
        }
        self.events.push_back(SubscriberEvent::Message(Message {
            subscription,
            channel: channel.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
        }));
    }

    fn unknown_subscription(&mut self, name: &[u8]) {
        self.events.push_back(SubscriberEvent::Error(
            SubscriberError::UnknownSubscription {
                name: truncated_text(name, None),
            },
        ));
    }

    /// The `index`-th name of the subscription list (channels, then patterns).
    fn subscription_name(&self, index: usize) -> Option<(SubscribeKind, &[u8])> {
        match self.config.channels.get(index) {
            Some(channel) => Some((SubscribeKind::Channel, channel)),
            None => self
                .config
                .patterns
                .get(index - self.config.channels.len())
                .map(|pattern| (SubscribeKind::Pattern, pattern.as_slice())),
        }
    }

    fn subscription_count(&self) -> usize {
        self.config.channels.len() + self.config.patterns.len()
    }

    /// Checks `found` against the `index`-th expected confirmation.
    fn check_confirmation(
        &self,
        index: usize,
        subscribing: bool,
        kind: SubscribeKind,
        name: Option<&[u8]>,
    ) -> Result<(), SubscriberError> {
        let expected = self.subscription_name(index);
        if let Some((expected_kind, expected_name)) = expected {
            if expected_kind == kind && name == Some(expected_name) {
                return Ok(());
            }
        }
        Err(SubscriberError::WrongConfirmation {
            expected: match expected {
                Some((kind, name)) => describe_confirmation(subscribing, kind, Some(name)),
                None => "none".to_owned(),
            },
            found: describe_confirmation(subscribing, kind, name),
        })
    }

    fn on_subscribed(&mut self, kind: SubscribeKind, name: &[u8]) -> Result<(), SubscriberError> {
        let State::AwaitingSubscribed {
            confirmed,
            then_unsubscribe,
        } = self.state
        else {
            // Extra confirmations once subscribed are a conversation we did not have.
            return Err(match self.state {
                State::Subscribed | State::AwaitingUnsubscribed { .. } => {
                    SubscriberError::WrongConfirmation {
                        expected: "none".to_owned(),
                        found: describe_confirmation(true, kind, Some(name)),
                    }
                }
                _ => self.unexpected_kind(subscribe_kind_name(true, kind)),
            });
        };
        self.check_confirmation(confirmed, true, kind, Some(name))?;
        let confirmed = confirmed + 1;
        if confirmed < self.subscription_count() {
            self.state = State::AwaitingSubscribed {
                confirmed,
                then_unsubscribe,
            };
        } else if then_unsubscribe {
            self.send_unsubscribe();
        } else {
            self.state = State::Subscribed;
            self.events.push_back(SubscriberEvent::Ready);
        }
        Ok(())
    }

    fn on_unsubscribed(
        &mut self,
        kind: SubscribeKind,
        name: Option<&[u8]>,
        count: u64,
    ) -> Result<(), SubscriberError> {
        let State::AwaitingUnsubscribed { confirmed } = self.state else {
            return Err(match self.state {
                State::AwaitingSubscribed { .. } | State::Subscribed => {
                    SubscriberError::WrongConfirmation {
                        expected: "none".to_owned(),
                        found: describe_confirmation(false, kind, name),
                    }
                }
                _ => self.unexpected_kind(subscribe_kind_name(false, kind)),
            });
        };
        self.check_confirmation(confirmed, false, kind, name)?;
        let confirmed = confirmed + 1;
        if confirmed < self.subscription_count() {
            self.state = State::AwaitingUnsubscribed { confirmed };
        } else if count != 0 {
            // The connection holds only our subscriptions: after the last one goes,
            // the server must count none.
            return Err(SubscriberError::WrongConfirmation {
                expected: "a subscription count of 0".to_owned(),
                found: format!("a count of {count}"),
            });
        } else {
            self.finish_unsubscribe();
        }
        Ok(())
    }

    fn finish_unsubscribe(&mut self) {
        self.state = State::Unsubscribed;
        self.ping_sent = None;
        self.events.push_back(SubscriberEvent::Unsubscribed);
    }

    /// Stops intake (`docs/SEMANTICS.md` "Drain"): sends `UNSUBSCRIBE`/`PUNSUBSCRIBE` for
    /// every subscription; [`SubscriberEvent::Unsubscribed`] follows once the server
    /// confirmed them all, and messages arriving until then are still delivered. Before
    /// anything was subscribed, `Unsubscribed` comes at once; during subscription it
    /// follows the confirmations (without `Ready`). Does nothing once unsubscribing or
    /// over.
    pub fn unsubscribe(&mut self) {
        match self.state {
            State::AwaitingHello | State::AwaitingAuth => self.finish_unsubscribe(),
            State::AwaitingSubscribed { confirmed, .. } => {
                self.state = State::AwaitingSubscribed {
                    confirmed,
                    then_unsubscribe: true,
                };
            }
            State::Subscribed => self.send_unsubscribe(),
            State::AwaitingUnsubscribed { .. } | State::Unsubscribed | State::Over => {}
        }
    }

    /// The peer closed the connection (or it was reset): the session is over.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.state != State::Over {
            self.state = State::Over;
            self.events.push_back(SubscriberEvent::Closed);
        }
    }

    /// Time passed: sends the keepalive `PING` or declares the peer dead when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        if self.dead_deadline() <= now {
            self.state = State::Over;
            self.events
                .push_back(SubscriberEvent::Failed(SubscriberError::PeerDead {
                    silent_for: now.saturating_duration_since(self.last_input),
                }));
            return;
        }
        if let Some(ping_at) = self.ping_deadline() {
            if ping_at <= now {
                // RESP2 answers `*2 pong ""` while subscribed, RESP3 `+PONG`.
                encode_command(&mut self.transmit, [&b"PING"[..]]);
                self.ping_sent = Some(now);
            }
        }
    }

    /// When the keepalive PING is due, if the state sends one (only while subscribed:
    /// during the handshake a PING's answer would be mistaken for the reply awaited).
    fn ping_deadline(&self) -> Option<Instant> {
        match (self.state, self.ping_sent) {
            (State::Subscribed, None) => Some(self.last_input + self.config.keepalive_interval),
            _ => None,
        }
    }

    /// When the peer is dead if nothing is read before.
    fn dead_deadline(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + self.config.pong_timeout,
            None => self.last_input + self.config.keepalive_interval + self.config.pong_timeout,
        }
    }

    /// The next event that `handle_timeout` waits for; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let dead = self.dead_deadline();
        Some(match self.ping_deadline() {
            Some(ping) => ping.min(dead),
            None => dead,
        })
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SubscriberEvent> {
        self.events.pop_front()
    }

    /// Appends the bytes to send to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.transmit);
        } else {
            out.append(&mut self.transmit);
        }
    }

    fn send_hello(&mut self) {
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &self.config.password {
            let user = self.config.username.as_deref().unwrap_or(b"default");
            args.extend([&b"AUTH"[..], user, password]);
        }
        let name = self
            .config
            .client_name
            .as_deref()
            .filter(|name| !name.is_empty())
            .map(client_name);
        if let Some(name) = &name {
            args.extend([&b"SETNAME"[..], name]);
        }
        encode_command(&mut self.transmit, args);
        self.state = State::AwaitingHello;
    }

    fn send_auth(&mut self) {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &self.config.username {
            args.push(user);
        }
        if let Some(password) = &self.config.password {
            args.push(password);
        }
        encode_command(&mut self.transmit, args);
        self.state = State::AwaitingAuth;
    }

    fn send_subscribe(&mut self) {
        self.send_pair(b"SUBSCRIBE", b"PSUBSCRIBE");
        self.state = State::AwaitingSubscribed {
            confirmed: 0,
            then_unsubscribe: false,
        };
        if self.subscription_count() == 0 {
            // Config validation refuses a source with nothing to subscribe to; should
            // one get here anyway, it is subscribed to its nothing at once.
            self.state = State::Subscribed;
            self.events.push_back(SubscriberEvent::Ready);
        }
    }

    fn send_unsubscribe(&mut self) {
        self.send_pair(b"UNSUBSCRIBE", b"PUNSUBSCRIBE");
        self.ping_sent = None;
        if self.subscription_count() == 0 {
            self.finish_unsubscribe();
        } else {
            self.state = State::AwaitingUnsubscribed { confirmed: 0 };
        }
    }

    /// One command for the channels, one for the patterns, each only when non-empty
    /// (a bare `UNSUBSCRIBE` would mean "all" and answer in the server's order).
    fn send_pair(&mut self, channel_command: &[u8], pattern_command: &[u8]) {
        for (command, names) in [
            (channel_command, &self.config.channels),
            (pattern_command, &self.config.patterns),
        ] {
            if !names.is_empty() {
                let mut args: Vec<&[u8]> = Vec::with_capacity(names.len() + 1);
                args.push(command);
                args.extend(names.iter().map(Vec::as_slice));
                encode_command(&mut self.transmit, args);
            }
        }
    }

    fn auth_failed(&self, text: &[u8]) -> SubscriberError {
        SubscriberError::AuthFailed {
            text: self.server_text(text),
        }
    }

    /// A server's error text as kept in errors: the password cut out (an old server
    /// echoes the arguments of a command it does not know), then cut to size.
    fn server_text(&self, text: &[u8]) -> String {
        truncated_text(text, self.config.password.as_deref())
    }

    fn unexpected(&self, frame: &Frame<'_>) -> SubscriberError {
        SubscriberError::UnexpectedFrame {
            waiting_for: self.state.waiting_for(),
            found: frame.kind_name(),
        }
    }

    fn unexpected_kind(&self, found: &'static str) -> SubscriberError {
        SubscriberError::UnexpectedFrame {
            waiting_for: self.state.waiting_for(),
            found,
        }
    }
}

// Written by hand: the bytes waiting to be sent may hold `HELLO … AUTH`'s password.
impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("input", &self.input)
            .field("protocol", &self.protocol)
            .field("server_version", &self.server_version)
            .field("last_input", &self.last_input)
            .field("ping_sent", &self.ping_sent)
            .field("transmit_len", &self.transmit.len())
            .field("events", &self.events.len())
            .finish()
    }
}

/// Consumes skipped payload bytes from `rest`, checking the CRLF that ends the payload.
fn skip(rest: &[u8], remaining: &mut usize) -> Result<usize, SubscriberError> {
    let take = rest.len().min(*remaining);
    // The last two bytes of the skipped run are the bulk's CRLF: whichever of them fall
    // in this chunk must be right, or the announced length lied.
    let crlf_start = remaining.saturating_sub(2);
    for (offset, &byte) in rest.iter().take(take).enumerate().skip(crlf_start) {
        let expected = if *remaining - offset == 2 {
            b'\r'
        } else {
            b'\n'
        };
        if byte != expected {
            return Err(RespError::BadBulkEnd.into());
        }
    }
    *remaining -= take;
    Ok(take)
}

/// HELLO's refusals that mean "speak RESP2": a server before 6.0 does not know the
/// command; one that does but refuses version 3 says NOPROTO.
pub(super) fn is_hello_unsupported(text: &[u8]) -> bool {
    text.starts_with(b"NOPROTO") || starts_with_ignore_case(text, b"ERR unknown command")
}

/// Refusals about credentials: a wrong password, a password required but not given,
/// and pre-6.0 servers' wording.
pub(super) fn is_auth_error(text: &[u8]) -> bool {
    text.starts_with(b"WRONGPASS")
        || text.starts_with(b"NOAUTH")
        || starts_with_ignore_case(text, b"ERR invalid password")
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// A client name Redis accepts: bytes outside `!`..=`~` become `_`.
pub(super) fn client_name(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|&byte| match byte {
            b'!'..=b'~' => byte,
            _ => b'_',
        })
        .collect()
}

/// Text for an error: `secret` (when non-empty) replaced, cut to [`MAX_ERROR_TEXT`]
/// bytes, decoded lossily.
pub(super) fn truncated_text(text: &[u8], secret: Option<&[u8]>) -> String {
    let redacted;
    let text = match secret {
        Some(secret) if !secret.is_empty() && text.windows(secret.len()).any(|w| w == secret) => {
            redacted = replace_all(text, secret, b"<redacted>");
            &redacted[..]
        }
        _ => text,
    };
    String::from_utf8_lossy(text.get(..MAX_ERROR_TEXT).unwrap_or(text)).into_owned()
}

fn replace_all(text: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            out.extend_from_slice(with);
            rest = rest.get(needle.len()..).unwrap_or_default();
        } else if let Some((&first, tail)) = rest.split_first() {
            out.push(first);
            rest = tail;
        }
    }
    out
}

fn subscribe_kind_name(subscribing: bool, kind: SubscribeKind) -> &'static str {
    match (subscribing, kind) {
        (true, SubscribeKind::Channel) => "subscribe",
        (true, SubscribeKind::Pattern) => "psubscribe",
        (true, SubscribeKind::Shard) => "ssubscribe",
        (false, SubscribeKind::Channel) => "unsubscribe",
        (false, SubscribeKind::Pattern) => "punsubscribe",
        (false, SubscribeKind::Shard) => "sunsubscribe",
    }
}

fn describe_confirmation(subscribing: bool, kind: SubscribeKind, name: Option<&[u8]>) -> String {
    let kind = subscribe_kind_name(subscribing, kind);
    match name {
        Some(name) => format!("{kind} {:?}", truncated_text(name, None)),
        None => format!("{kind} (null)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_checks_the_final_crlf_across_chunks() {
        let mut remaining = 5;
        assert_eq!(skip(b"abc\r", &mut remaining), Ok(4));
        assert_eq!(remaining, 1);
        assert_eq!(skip(b"\nmore", &mut remaining), Ok(1));
        assert_eq!(remaining, 0);
        let mut remaining = 4;
        assert_eq!(
            skip(b"abXY", &mut remaining),
            Err(SubscriberError::Protocol(RespError::BadBulkEnd))
        );
    }

    #[test]
    fn error_texts_lose_the_password_and_are_cut() {
        assert_eq!(
            truncated_text(b"ERR unknown command 'HELLO' `s3cret`", Some(b"s3cret")),
            "ERR unknown command 'HELLO' `<redacted>`"
        );
        assert_eq!(truncated_text(&[b'x'; 500], None).len(), MAX_ERROR_TEXT);
    }

    #[test]
    fn client_names_are_made_acceptable() {
        assert_eq!(client_name(b"ferry:my source\n\xff"), b"ferry:my_source__");
    }
}
