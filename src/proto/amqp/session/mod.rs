//! The AMQP 0-9-1 client session: one TCP connection to RabbitMQ consuming one queue
//! with manual acks, plus (optionally) a publisher channel in confirm mode for ferry's
//! retry and dead-letter copies — sans-IO, driven by the reactor through the session
//! contract of `docs/ARCHITECTURE.md`.
//!
//! Implements `docs/SEMANTICS.md` "AMQP: at-least-once" and "Retries" (manual acks, tags
//! never outliving their connection, confirmed republishes, `max_message_bytes`),
//! `docs/CONFIGURATION.md` "Sources" (`declare` modes) and `docs/PROTOCOLS.md`
//! "AMQP 0-9-1 and RabbitMQ" (capabilities, tune rules, heartbeats, server cancel,
//! blocked connections).
//!
//! # Conversation
//! ```text
//! AMQP 0-9-1 header ─▶ AwaitingStart ─start/start-ok(PLAIN)─▶ AwaitingTune
//!   ─tune/tune-ok+open─▶ AwaitingOpenOk ─open-ok─▶
//!   [publisher] channel.open(2) ─▶ AwaitingPublisherOpenOk ─▶ confirm.select ─▶ AwaitingSelectOk ─▶
//!   channel.open(1) ─▶ AwaitingConsumerOpenOk ─open-ok─▶ queue.declare ─▶ AwaitingDeclareOk
//!     (IfMissing: passive; 404 → close-ok, channel.open(1) again, durable declare)
//!   ─declare-ok/qos─▶ AwaitingQosOk ─qos-ok/consume─▶ AwaitingConsumeOk ─consume-ok─▶
//!   Consuming ─cancel()─▶ AwaitingCancelOk ─cancel-ok─▶ ConsumerCancelled
//!   Consuming ─server basic.cancel─▶ ConsumerCancelled
//! any ─close() or a channel error─▶ AwaitingCloseOk ─close-ok─▶ Closed
//! any ─connection.close, EOF, timeout, protocol error─▶ Closed
//! ```
//! The two channels are set up one after the other (publisher first), so that by
//! [`Event::Ready`] a retry can be published at once; it costs two round trips once
//! per connection. Channel 1 is reused after the 404 of a passive declare: its number
//! is free again once we have sent channel.close-ok.
//!
//! # Decisions
//! - **Tune**: frame_max = the server's, capped at [`FRAME_MAX`] (0 = no limit →
//!   [`FRAME_MAX`]; below 4096 the server is incompatible); channel_max = the channels
//!   we use (1 or 2); heartbeat = 0 when our config says 0 (RabbitMQ honours the client's
//!   value, and `heartbeat_s: 0` is documented as "disables"), ours when the server
//!   proposes 0, else the smaller. Frames are decoded with [`FRAME_MIN_SIZE`] until
//!   tune-ok, then with the negotiated frame_max; the same limit applies to what we send.
//! - **Heartbeats**: every heartbeat/2 the session checks whether it queued any frame
//!   since the last check and sends a heartbeat frame if not (RabbitMQ's own scheme), so
//!   the broker hears from us at least once per heartbeat; silence from the broker for
//!   2 × heartbeat ends the session ([`SessionError::HeartbeatTimeout`]).
//! - **Blocked** (connection.blocked): publishes are accepted, given their sequence
//!   number, and held in the session until connection.unblocked — RabbitMQ stops reading
//!   a blocked connection once it publishes, which would also stall our acks and
//!   heartbeats. Acks, declares and heartbeats keep flowing.
//! - **Returns**: RabbitMQ sends basic.return for an unroutable mandatory publish just
//!   before that publish's basic.ack, whose tag (even with `multiple`) is the returned
//!   publish: that seq is reported as [`Event::Returned`] instead of `Confirmed`.
//! - **Too large**: a delivery whose header announces more than `max_message_bytes` is
//!   reported at once as [`Event::TooLarge`] and its body frames are counted, not kept.
//! - **Unacked tags** live in a sorted deque (see `tags.rs`); a settle command for a tag
//!   not in it is refused with [`CommandError::UnknownTag`] and nothing is sent.
//! - **Errors**: `handle_input` returns `Err` when the broker broke the protocol (or is
//!   incompatible); the session is then closed (an [`Event::Closed`] is queued). Orderly
//!   refusals and ends — auth failure, missing queue, a channel or connection closed by
//!   the broker, timeouts, EOF — arrive as [`Event::Failed`], then [`Event::Closed`].
//!   After a channel error the session answers close-ok and closes the connection itself
//!   (the broker then logs a clean close); it waits [`CLOSE_TIMEOUT`] for close-ok.
//!   While closing, every frame but connection.close/close-ok is discarded (spec §2.2.4);
//!   unsettled deliveries are requeued by the broker.
//!
//! # Layout
//! - `config.rs` — [`SessionConfig`], [`DeclareMode`], [`table_from_json`].
//! - `event.rs` — [`Event`], [`Delivery`], [`MessageProperties`], tags and seqs.
//! - `error.rs` — [`SessionError`], [`CommandError`].
//! - `tags.rs` — the set of outstanding delivery tags / publish sequence numbers.

mod config;
mod error;
mod event;
mod tags;

pub use config::{table_from_json, DeclareMode, QueueType, SessionConfig};
pub use error::{CommandError, SessionError};
pub use event::{Delivery, DeliveryTag, Event, HeaderValue, MessageProperties, PublishSeq};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::encode_heartbeat;
use super::{
    decode_frame, encode_content, encode_method_frame, encode_protocol_header, AmqpError,
    Assembled, BadContentHeader, BasicAck, BasicCancel, BasicCancelOk, BasicConsume, BasicDeliver,
    BasicNack, BasicProperties, BasicPublish, BasicQos, BasicReject, ChannelClose, ChannelCloseOk,
    ChannelFlowOk, ChannelOpen, ConfirmSelect, ConnectionClose, ConnectionCloseOk, ConnectionOpen,
    ConnectionStart, ConnectionStartOk, ConnectionTune, ConnectionTuneOk, ContentAssembler,
    ContentHeader, FieldTable, FieldValue, Frame, FramePayload, Method, QueueDeclare, TableBuilder,
    CLASS_BASIC, FRAME_MIN_SIZE,
};
use crate::proto::Status;
use tags::OutstandingSet;

/// The consumer channel.
pub const CONSUMER_CHANNEL: u16 = 1;
/// The publisher channel (confirm mode), opened only when configured.
pub const PUBLISHER_CHANNEL: u16 = 2;
/// The largest frame_max we ask for: RabbitMQ's default, and what 4.1+ requires as a
/// floor of 8192 is comfortably above.
pub const FRAME_MAX: u32 = 131_072;
/// How long the handshake (protocol header to consume-ok) may take; RabbitMQ's own
/// `handshake_timeout` is 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for connection.close-ok after sending connection.close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits negotiated in connection.tune-ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Highest channel number we may use.
    pub channel_max: u16,
    /// Largest frame, envelope included, either side may send.
    pub frame_max: u32,
    /// Heartbeat in seconds (0: none).
    pub heartbeat_s: u16,
}

/// What the session waits for next (see the module docs for the transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingStart,
    AwaitingTune,
    AwaitingOpenOk,
    AwaitingPublisherOpenOk,
    AwaitingSelectOk,
    AwaitingConsumerOpenOk,
    AwaitingDeclareOk { passive: bool },
    AwaitingQosOk,
    AwaitingConsumeOk,
    Consuming,
    AwaitingCancelOk,
    ConsumerCancelled,
    AwaitingCloseOk { deadline: Instant },
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::AwaitingStart => "awaiting connection.start",
            State::AwaitingTune => "awaiting connection.tune",
            State::AwaitingOpenOk => "awaiting connection.open-ok",
            State::AwaitingPublisherOpenOk => "awaiting the publisher's channel.open-ok",
            State::AwaitingSelectOk => "awaiting confirm.select-ok",
            State::AwaitingConsumerOpenOk => "awaiting the consumer's channel.open-ok",
            State::AwaitingDeclareOk { .. } => "awaiting queue.declare-ok",
            State::AwaitingQosOk => "awaiting basic.qos-ok",
            State::AwaitingConsumeOk => "awaiting basic.consume-ok",
            State::Consuming => "consuming",
            State::AwaitingCancelOk => "awaiting basic.cancel-ok",
            State::ConsumerCancelled => "consumer cancelled",
            State::AwaitingCloseOk { .. } => "awaiting connection.close-ok",
            State::Closed => "closed",
        }
    }

    /// The consumer is (or was) registered: deliveries may arrive and be settled.
    fn consumer_started(self) -> bool {
        matches!(
            self,
            State::Consuming | State::AwaitingCancelOk | State::ConsumerCancelled
        )
    }

    /// confirm.select-ok has arrived (meaningful only with a publisher channel).
    fn publisher_ready(self) -> bool {
        matches!(
            self,
            State::AwaitingConsumerOpenOk
                | State::AwaitingDeclareOk { .. }
                | State::AwaitingQosOk
                | State::AwaitingConsumeOk
                | State::Consuming
                | State::AwaitingCancelOk
                | State::ConsumerCancelled
        )
    }

    /// connection.open was sent: the connection-level notifications may arrive.
    fn tuned(self) -> bool {
        !matches!(
            self,
            State::AwaitingStart | State::AwaitingTune | State::Closed
        )
    }

    fn closing(self) -> bool {
        matches!(self, State::AwaitingCloseOk { .. } | State::Closed)
    }
}

/// Bytes queued for the socket, and how many frames were ever queued (heartbeats apart):
/// the heartbeat timer compares that count to know whether anything was sent.
#[derive(Debug)]
struct Outbox {
    bytes: Vec<u8>,
    frame_max: u32,
    frames: u64,
}

impl Outbox {
    fn method(&mut self, channel: u16, method: Method<'_>) -> Result<(), AmqpError> {
        encode_method_frame(&mut self.bytes, channel, &method, self.frame_max)?;
        self.frames += 1;
        Ok(())
    }
}

/// A basic.deliver waiting for its content.
#[derive(Debug)]
struct PendingDelivery {
    tag: u64,
    redelivered: bool,
    exchange: String,
    routing_key: String,
}

/// Content in progress on the consumer channel.
#[derive(Debug, Default)]
// One per session, never moved around in bulk: boxing would allocate per message.
#[allow(clippy::large_enum_variant)]
enum Incoming {
    #[default]
    Idle,
    AwaitingHeader(PendingDelivery),
    /// Body frames are gathered by the session's [`ContentAssembler`].
    AwaitingBody(PendingDelivery, MessageProperties),
    /// A too-large body: frames are counted and dropped.
    Skipping {
        size: u64,
        received: u64,
    },
}

/// Content of a basic.return on the publisher channel: never kept, only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReturnContent {
    Idle,
    AwaitingHeader,
    AwaitingBody { size: u64, received: u64 },
}

#[derive(Debug)]
struct Publisher {
    next_seq: u64,
    unconfirmed: OutstandingSet,
    /// basic.return (reply code, text) waiting for the ack that names its publish.
    returns: VecDeque<(u16, String)>,
    content: ReturnContent,
    declares_pending: u32,
}

#[derive(Debug)]
struct Heartbeat {
    interval: Duration,
    next_check: Instant,
    frames_at_check: u64,
}

/// One AMQP connection consuming one queue (see the module docs).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    out: Outbox,
    /// Publishes held while the connection is blocked.
    held: Vec<u8>,
    events: VecDeque<Event>,
    /// The latest `now` handed in (commands have no clock argument).
    now: Instant,
    handshake_deadline: Option<Instant>,
    last_received: Instant,
    heartbeat: Option<Heartbeat>,
    tuning: Option<Tuning>,
    blocked: bool,
    /// The passive declare found no queue (IfMissing): the next declare creates it.
    queue_missing: bool,
    queue_counts: (u32, u32),
    consumer_tag: Vec<u8>,
    unacked: OutstandingSet,
    /// Deliveries acked since the last transmit, not yet encoded: a run of them below
    /// every still-unacked tag goes out as one `basic.ack multiple` (fewer frames per
    /// message when many jobs finish in one loop turn).
    acks: Vec<u64>,
    incoming: Incoming,
    assembler: ContentAssembler,
    publisher: Option<Publisher>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// True when the space-separated `list` (SASL mechanisms, locales) holds `word`.
fn offers(list: &[u8], word: &[u8]) -> bool {
    list.split(|b| *b == b' ').any(|w| w == word)
}

impl Session {
    /// A session that starts by sending the protocol header (see `poll_transmit`).
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        let mut out = Outbox {
            bytes: Vec::with_capacity(512),
            frame_max: FRAME_MIN_SIZE,
            frames: 0,
        };
        encode_protocol_header(&mut out.bytes);
        let publisher = config.publisher.then(|| Publisher {
            next_seq: 1,
            unconfirmed: OutstandingSet::default(),
            returns: VecDeque::new(),
            content: ReturnContent::Idle,
            declares_pending: 0,
        });
        Session {
            assembler: ContentAssembler::new(config.max_message_bytes),
            config,
            state: State::AwaitingStart,
            out,
            held: Vec::new(),
            events: VecDeque::new(),
            now,
            handshake_deadline: Some(now + HANDSHAKE_TIMEOUT),
            last_received: now,
            heartbeat: None,
            tuning: None,
            blocked: false,
            queue_missing: false,
            queue_counts: (0, 0),
            consumer_tag: Vec::new(),
            unacked: OutstandingSet::default(),
            acks: Vec::new(),
            incoming: Incoming::Idle,
            publisher,
        }
    }

    // ---- the session contract -------------------------------------------------------

    /// Feeds bytes read from the socket; answers how many were used (whole frames only:
    /// call again with the rest once more bytes arrived). An `Err` means the broker broke
    /// the protocol: the session is closed and the connection must be dropped.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> Result<usize, SessionError> {
        self.now = now;
        if self.state == State::Closed {
            return Ok(buf.len());
        }
        if !buf.is_empty() {
            self.last_received = now;
        }
        let mut pos = 0;
        while let Some(rest) = buf.get(pos..) {
            if self.state == State::Closed {
                // close-ok (or the server's close) ended the session: nothing follows.
                return Ok(buf.len());
            }
            let frame_max = self.tuning.map_or(FRAME_MIN_SIZE, |t| t.frame_max);
            let (frame, used) = match decode_frame(rest, frame_max) {
                Ok(Status::Complete(frame, used)) => (frame, used),
                Ok(Status::Partial) => break,
                Err(e) => return Err(self.abort(e.into())),
            };
            pos += used;
            if let Err(e) = self.on_frame(frame) {
                return Err(self.abort(e));
            }
        }
        Ok(pos)
    }

    /// Runs the timers due at `now`: handshake and close timeouts, heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.state {
            State::Closed => return,
            State::AwaitingCloseOk { deadline } => {
                if now >= deadline {
                    self.finish();
                }
                return;
            }
            _ => {}
        }
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            let state = self.state.name();
            self.fail(SessionError::HandshakeTimeout { state });
            return;
        }
        let Some(heartbeat) = &mut self.heartbeat else {
            return;
        };
        if now >= self.last_received + 2 * heartbeat.interval {
            self.fail(SessionError::HeartbeatTimeout);
            return;
        }
        if now >= heartbeat.next_check {
            if self.out.frames == heartbeat.frames_at_check {
                encode_heartbeat(&mut self.out.bytes);
            }
            heartbeat.frames_at_check = self.out.frames;
            heartbeat.next_check = now + heartbeat.interval / 2;
        }
    }

    /// The broker closed the connection (or it was reset).
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        match self.state {
            State::Closed => {}
            State::AwaitingCloseOk { .. } => self.finish(),
            state => self.fail(SessionError::ConnectionLost {
                state: state.name(),
            }),
        }
    }

    /// The next event, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes to send to `out` (and forgets them).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        self.encode_acks();
        out.append(&mut self.out.bytes);
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => return None,
            State::AwaitingCloseOk { deadline } => return Some(deadline),
            _ => {}
        }
        let heartbeat = self
            .heartbeat
            .as_ref()
            .map(|h| h.next_check.min(self.last_received + 2 * h.interval));
        match (self.handshake_deadline, heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- commands -------------------------------------------------------------------

    /// Acknowledges one delivery. The ack is encoded at the next
    /// [`poll_transmit`](Self::poll_transmit) (or before a close), together with the
    /// other acks of the same loop turn (one `basic.ack multiple` for a run below every
    /// unacked tag).
    pub fn ack(&mut self, tag: DeliveryTag) -> Result<(), CommandError> {
        if self.state.closing() {
            return Err(CommandError::Closed);
        }
        if !self.unacked.remove(tag.0) {
            return Err(CommandError::UnknownTag(tag));
        }
        self.acks.push(tag.0);
        Ok(())
    }

    /// Negatively acknowledges one delivery; `requeue` puts it back in the queue.
    pub fn nack(&mut self, tag: DeliveryTag, requeue: bool) -> Result<(), CommandError> {
        self.settle(
            tag,
            BasicNack {
                delivery_tag: tag.0,
                multiple: false,
                requeue,
            }
            .into(),
        )
    }

    /// Rejects one delivery; without `requeue` it goes to the queue's dead-letter
    /// exchange, or is dropped by the broker when the queue has none.
    pub fn reject(&mut self, tag: DeliveryTag, requeue: bool) -> Result<(), CommandError> {
        self.settle(
            tag,
            BasicReject {
                delivery_tag: tag.0,
                requeue,
            }
            .into(),
        )
    }

    /// Registers the consumer again after [`Session::cancel`] (a resume after a pause):
    /// basic.consume on the same channel, and [`Event::Ready`] again at its consume-ok.
    /// Deliveries of before the pause stay settleable. While the cancel is still in flight
    /// this answers [`CommandError::NotReady`]: call again after [`Event::Cancelled`].
    pub fn consume(&mut self) -> Result<(), CommandError> {
        match self.state {
            State::ConsumerCancelled if self.config.consume => {
                self.send_consume().map_err(CommandError::Encode)?;
                self.state = State::AwaitingConsumeOk;
                Ok(())
            }
            State::Consuming | State::AwaitingConsumeOk => Ok(()),
            State::AwaitingCloseOk { .. } | State::Closed => Err(CommandError::Closed),
            state => Err(CommandError::NotReady {
                state: state.name(),
            }),
        }
    }

    fn send_consume(&mut self) -> Result<(), AmqpError> {
        let consume = BasicConsume {
            ticket: 0,
            queue: self.config.queue.as_bytes(),
            consumer_tag: self.config.consumer_tag.as_bytes(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            no_wait: false,
            arguments: FieldTable::EMPTY,
        };
        self.out.method(CONSUMER_CHANNEL, consume.into())
    }

    /// Cancels the consumer (basic.cancel; [`Event::Cancelled`] follows). Deliveries
    /// already on their way still arrive and must be settled. A no-op when the consumer
    /// is already cancelled or being cancelled.
    pub fn cancel(&mut self) -> Result<(), CommandError> {
        match self.state {
            State::Consuming => {
                let method = BasicCancel {
                    consumer_tag: &self.consumer_tag,
                    no_wait: false,
                };
                self.out
                    .method(CONSUMER_CHANNEL, method.into())
                    .map_err(CommandError::Encode)?;
                self.state = State::AwaitingCancelOk;
                Ok(())
            }
            State::AwaitingCancelOk | State::ConsumerCancelled => Ok(()),
            State::AwaitingCloseOk { .. } | State::Closed => Err(CommandError::Closed),
            state => Err(CommandError::NotReady {
                state: state.name(),
            }),
        }
    }

    /// Closes the connection (connection.close 200; [`Event::Closed`] follows close-ok).
    /// Unsettled deliveries go back to the queue. Idempotent.
    pub fn close(&mut self) {
        match self.state {
            State::AwaitingCloseOk { .. } | State::Closed => {}
            // Before tune-ok there is no connection to close politely: just drop it.
            State::AwaitingStart | State::AwaitingTune => self.finish(),
            _ => self.begin_close(),
        }
    }

    /// Publishes a message on the publisher channel (basic.publish, content header, body
    /// frames split at the negotiated frame_max) and returns its confirm sequence number.
    /// While the connection is blocked the frames are held until it is unblocked.
    pub fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: &BasicProperties<'_>,
        body: &[u8],
    ) -> Result<PublishSeq, CommandError> {
        if self.state.closing() {
            return Err(CommandError::Closed);
        }
        let Some(publisher) = self.publisher.as_mut() else {
            return Err(CommandError::NoPublisher);
        };
        if !self.state.publisher_ready() {
            return Err(CommandError::NotReady {
                state: self.state.name(),
            });
        }
        let frame_max = self.out.frame_max;
        let target = if self.blocked {
            &mut self.held
        } else {
            &mut self.out.bytes
        };
        let start = target.len();
        let method = Method::from(BasicPublish {
            ticket: 0,
            exchange: exchange.as_bytes(),
            routing_key: routing_key.as_bytes(),
            mandatory,
            immediate: false,
        });
        let encoded =
            encode_method_frame(target, PUBLISHER_CHANNEL, &method, frame_max).and_then(|()| {
                encode_content(
                    target,
                    PUBLISHER_CHANNEL,
                    CLASS_BASIC,
                    properties,
                    body,
                    frame_max,
                )
            });
        if let Err(e) = encoded {
            target.truncate(start);
            return Err(CommandError::Encode(e));
        }
        if !self.blocked {
            self.out.frames += 1;
        }
        let seq = publisher.next_seq;
        publisher.next_seq += 1;
        publisher.unconfirmed.insert_next(seq);
        Ok(PublishSeq(seq))
    }

    /// Declares a retry queue on the publisher channel: durable, of the session's
    /// [`QueueType`], with `x-message-ttl` `ttl_ms` and dead-lettering to `target_queue`
    /// through the default exchange (`docs/SEMANTICS.md` "Retries": one queue per delay
    /// step).
    /// [`Event::RetryQueueDeclared`] follows; a queue that exists with other arguments
    /// ends the session with [`SessionError::PreconditionFailed`].
    pub fn declare_retry_queue(
        &mut self,
        queue: &str,
        ttl_ms: u64,
        target_queue: &str,
    ) -> Result<(), CommandError> {
        if self.state.closing() {
            return Err(CommandError::Closed);
        }
        let Some(publisher) = self.publisher.as_mut() else {
            return Err(CommandError::NoPublisher);
        };
        if !self.state.publisher_ready() {
            return Err(CommandError::NotReady {
                state: self.state.name(),
            });
        }
        let mut arguments = TableBuilder::new();
        arguments
            .insert(
                b"x-message-ttl",
                FieldValue::I64(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
            )
            .and_then(|t| t.insert(b"x-dead-letter-exchange", FieldValue::LongStr(b"")))
            .and_then(|t| {
                t.insert(
                    b"x-dead-letter-routing-key",
                    FieldValue::LongStr(target_queue.as_bytes()),
                )
            })
            .map_err(CommandError::Encode)?;
        self.config
            .queue_type
            .add_argument(&mut arguments)
            .map_err(CommandError::Encode)?;
        let declare = QueueDeclare {
            ticket: 0,
            queue: queue.as_bytes(),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: false,
            no_wait: false,
            arguments: arguments.as_table(),
        };
        self.out
            .method(PUBLISHER_CHANNEL, declare.into())
            .map_err(CommandError::Encode)?;
        publisher.declares_pending += 1;
        Ok(())
    }

    // ---- queries --------------------------------------------------------------------

    /// Deliveries received and not yet settled.
    pub fn unacked_count(&self) -> usize {
        self.unacked.len()
    }

    /// Publishes awaiting a confirm.
    pub fn unconfirmed_count(&self) -> usize {
        self.publisher.as_ref().map_or(0, |p| p.unconfirmed.len())
    }

    /// True while the broker blocks publishing.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// True once the session is over ([`Event::Closed`] was queued).
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed
    }

    /// The negotiated limits, once tune-ok was sent.
    pub fn tuning(&self) -> Option<Tuning> {
        self.tuning
    }

    /// The session's state, for logs and `/status`.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    // ---- frames ---------------------------------------------------------------------

    fn on_frame(&mut self, frame: Frame<'_>) -> Result<(), SessionError> {
        if let State::AwaitingCloseOk { .. } = self.state {
            return self.on_frame_while_closing(frame);
        }
        match (frame.channel, frame.payload) {
            (_, FramePayload::Heartbeat) => Ok(()),
            (0, FramePayload::Method(payload)) => {
                self.on_connection_method(Method::decode(payload)?)
            }
            (CONSUMER_CHANNEL, FramePayload::Method(payload)) => {
                self.on_consumer_method(Method::decode(payload)?)
            }
            (CONSUMER_CHANNEL, FramePayload::Header(header)) => self.on_delivery_header(&header),
            (CONSUMER_CHANNEL, FramePayload::BadHeader(bad)) => self.on_delivery_bad_header(&bad),
            (CONSUMER_CHANNEL, FramePayload::Body(chunk)) => self.on_delivery_body(chunk),
            (PUBLISHER_CHANNEL, payload) if self.publisher.is_some() => {
                self.on_publisher_frame(payload)
            }
            (0, FramePayload::Header(_) | FramePayload::BadHeader(_)) => {
                Err(SessionError::UnexpectedContent {
                    frame: "content header",
                    channel: 0,
                })
            }
            (0, FramePayload::Body(_)) => Err(SessionError::UnexpectedContent {
                frame: "body frame",
                channel: 0,
            }),
            (channel, _) => Err(SessionError::UnknownChannel(channel)),
        }
    }

    /// After connection.close, only close and close-ok matter (spec §2.2.4).
    fn on_frame_while_closing(&mut self, frame: Frame<'_>) -> Result<(), SessionError> {
        let (0, FramePayload::Method(payload)) = (frame.channel, frame.payload) else {
            return Ok(());
        };
        match Method::decode(payload)? {
            Method::ConnectionCloseOk(_) => self.finish(),
            Method::ConnectionClose(_) => {
                // Both sides closed at once: answer, and we are done.
                self.out
                    .method(0, ConnectionCloseOk {}.into())
                    .map_err(SessionError::Encode)?;
                self.finish();
            }
            _ => {}
        }
        Ok(())
    }

    fn unexpected(&self, method: &Method<'_>, channel: u16) -> SessionError {
        SessionError::UnexpectedMethod {
            method: method.name(),
            channel,
            state: self.state.name(),
        }
    }

    // ---- channel 0 ------------------------------------------------------------------

    fn on_connection_method(&mut self, method: Method<'_>) -> Result<(), SessionError> {
        match (self.state, method) {
            (State::AwaitingStart, Method::ConnectionStart(start)) => self.on_start(&start),
            (State::AwaitingTune, Method::ConnectionTune(tune)) => self.on_tune(tune),
            (State::AwaitingOpenOk, Method::ConnectionOpenOk(_)) => {
                if self.publisher.is_some() {
                    self.open_channel(PUBLISHER_CHANNEL)?;
                    self.state = State::AwaitingPublisherOpenOk;
                } else {
                    self.open_channel(CONSUMER_CHANNEL)?;
                    self.state = State::AwaitingConsumerOpenOk;
                }
                Ok(())
            }
            (state, Method::ConnectionClose(close)) => {
                self.out
                    .method(0, ConnectionCloseOk {}.into())
                    .map_err(SessionError::Encode)?;
                let text = text(close.reply_text);
                // With `authentication_failure_close` RabbitMQ answers bad credentials
                // with 403 instead of connection.tune.
                let error = if state == State::AwaitingTune && close.reply_code == 403 {
                    SessionError::AuthFailed { text }
                } else {
                    SessionError::ServerClosed {
                        code: close.reply_code,
                        text,
                    }
                };
                self.fail(error);
                Ok(())
            }
            (state, Method::ConnectionBlocked(blocked)) if state.tuned() => {
                self.blocked = true;
                self.events.push_back(Event::Blocked {
                    reason: text(blocked.reason),
                });
                Ok(())
            }
            (state, Method::ConnectionUnblocked(_)) if state.tuned() => {
                self.blocked = false;
                if !self.held.is_empty() {
                    self.out.bytes.append(&mut self.held);
                    self.out.frames += 1;
                }
                self.events.push_back(Event::Unblocked);
                Ok(())
            }
            (_, method) => Err(self.unexpected(&method, 0)),
        }
    }

    fn on_start(&mut self, start: &ConnectionStart<'_>) -> Result<(), SessionError> {
        if (start.version_major, start.version_minor) != (0, 9) {
            return Err(SessionError::Incompatible(
                "server does not speak AMQP 0-9-1",
            ));
        }
        if !offers(start.mechanisms, b"PLAIN") {
            return Err(SessionError::Incompatible(
                "server does not offer SASL PLAIN",
            ));
        }
        if !offers(start.locales, b"en_US") {
            return Err(SessionError::Incompatible(
                "server does not offer locale en_US",
            ));
        }
        let properties = TableBuilder::client_properties(
            b"ferry",
            env!("CARGO_PKG_VERSION").as_bytes(),
            self.config.connection_name.as_deref().map(str::as_bytes),
        )
        .map_err(SessionError::Encode)?;
        let user = self.config.username.as_bytes();
        let password = self.config.password.as_bytes();
        let mut response = Vec::with_capacity(2 + user.len() + password.len());
        response.push(0);
        response.extend_from_slice(user);
        response.push(0);
        response.extend_from_slice(password);
        let start_ok = ConnectionStartOk {
            client_properties: properties.as_table(),
            mechanism: b"PLAIN",
            response: &response,
            locale: b"en_US",
        };
        self.out
            .method(0, start_ok.into())
            .map_err(SessionError::Encode)?;
        self.state = State::AwaitingTune;
        Ok(())
    }

    fn on_tune(&mut self, tune: ConnectionTune) -> Result<(), SessionError> {
        let channels_needed = if self.publisher.is_some() {
            PUBLISHER_CHANNEL
        } else {
            CONSUMER_CHANNEL
        };
        let channel_max = match tune.channel_max {
            0 => channels_needed,
            max if max < channels_needed => {
                return Err(SessionError::Incompatible(
                    "server channel_max is below the channels ferry needs",
                ))
            }
            max => max.min(channels_needed),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            max if max < FRAME_MIN_SIZE => {
                return Err(SessionError::Incompatible(
                    "server frame_max is below the AMQP minimum of 4096",
                ))
            }
            max => max.min(FRAME_MAX),
        };
        let heartbeat_s = match (self.config.heartbeat_s, tune.heartbeat) {
            (0, _) => 0,
            (ours, 0) => ours,
            (ours, theirs) => ours.min(theirs),
        };
        let tune_ok = ConnectionTuneOk {
            channel_max,
            frame_max,
            heartbeat: heartbeat_s,
        };
        self.out
            .method(0, tune_ok.into())
            .map_err(SessionError::Encode)?;
        self.tuning = Some(Tuning {
            channel_max,
            frame_max,
            heartbeat_s,
        });
        self.out.frame_max = frame_max;
        let open = ConnectionOpen {
            virtual_host: self.config.vhost.as_bytes(),
            capabilities: b"",
            insist: false,
        };
        self.out
            .method(0, open.into())
            .map_err(SessionError::Encode)?;
        if heartbeat_s > 0 {
            let interval = Duration::from_secs(u64::from(heartbeat_s));
            self.heartbeat = Some(Heartbeat {
                interval,
                next_check: self.now + interval / 2,
                frames_at_check: self.out.frames,
            });
        }
        self.state = State::AwaitingOpenOk;
        Ok(())
    }

    fn open_channel(&mut self, channel: u16) -> Result<(), SessionError> {
        self.out
            .method(channel, ChannelOpen { out_of_band: b"" }.into())
            .map_err(SessionError::Encode)
    }

    // ---- channel 1: the consumer ----------------------------------------------------

    fn on_consumer_method(&mut self, method: Method<'_>) -> Result<(), SessionError> {
        if !matches!(self.incoming, Incoming::Idle) {
            // Spec §4.2.6: no method between a content-bearing method and its content.
            return Err(SessionError::UnexpectedMethod {
                method: method.name(),
                channel: CONSUMER_CHANNEL,
                state: "receiving a delivery's content",
            });
        }
        match (self.state, method) {
            (State::AwaitingConsumerOpenOk, Method::ChannelOpenOk(_)) => self.send_declare(),
            (State::AwaitingDeclareOk { .. }, Method::QueueDeclareOk(ok))
                if !self.config.consume =>
            {
                // Publishing only: the queue exists; no consumer (so nothing is taken).
                self.state = State::ConsumerCancelled;
                self.handshake_deadline = None;
                self.events.push_back(Event::Ready {
                    message_count: ok.message_count,
                    consumer_count: ok.consumer_count,
                });
                Ok(())
            }
            (State::AwaitingDeclareOk { .. }, Method::QueueDeclareOk(ok)) => {
                self.queue_counts = (ok.message_count, ok.consumer_count);
                let qos = BasicQos {
                    prefetch_size: 0,
                    prefetch_count: self.config.prefetch,
                    global: false,
                };
                self.out
                    .method(CONSUMER_CHANNEL, qos.into())
                    .map_err(SessionError::Encode)?;
                self.state = State::AwaitingQosOk;
                Ok(())
            }
            (State::AwaitingQosOk, Method::BasicQosOk(_)) => {
                self.send_consume().map_err(SessionError::Encode)?;
                self.state = State::AwaitingConsumeOk;
                Ok(())
            }
            (State::AwaitingConsumeOk, Method::BasicConsumeOk(ok)) => {
                self.consumer_tag = ok.consumer_tag.to_vec();
                self.state = State::Consuming;
                self.handshake_deadline = None;
                self.events.push_back(Event::Ready {
                    message_count: self.queue_counts.0,
                    consumer_count: self.queue_counts.1,
                });
                Ok(())
            }
            (state, Method::BasicDeliver(deliver)) if state.consumer_started() => {
                self.on_deliver(&deliver)
            }
            (state @ (State::Consuming | State::AwaitingCancelOk), Method::BasicCancel(cancel)) => {
                // RabbitMQ sends it with no_wait set (queue deleted): no answer then.
                if !cancel.no_wait {
                    let ok = BasicCancelOk {
                        consumer_tag: cancel.consumer_tag,
                    };
                    self.out
                        .method(CONSUMER_CHANNEL, ok.into())
                        .map_err(SessionError::Encode)?;
                }
                // Crossing our own cancel: the broker still answers ours with cancel-ok.
                if state == State::Consuming {
                    self.state = State::ConsumerCancelled;
                }
                self.events.push_back(Event::ConsumerCancelledByServer);
                Ok(())
            }
            (State::AwaitingCancelOk, Method::BasicCancelOk(_)) => {
                self.state = State::ConsumerCancelled;
                self.events.push_back(Event::Cancelled);
                Ok(())
            }
            (_, Method::ChannelClose(close)) => self.on_consumer_channel_close(&close),
            (state, Method::ChannelFlow(flow))
                if state.consumer_started()
                    || matches!(
                        state,
                        State::AwaitingDeclareOk { .. }
                            | State::AwaitingQosOk
                            | State::AwaitingConsumeOk
                    ) =>
            {
                let ok = ChannelFlowOk {
                    active: flow.active,
                };
                self.out
                    .method(CONSUMER_CHANNEL, ok.into())
                    .map_err(SessionError::Encode)
            }
            (_, method) => Err(self.unexpected(&method, CONSUMER_CHANNEL)),
        }
    }

    fn send_declare(&mut self) -> Result<(), SessionError> {
        let mut created = TableBuilder::new();
        self.config
            .queue_type
            .add_argument(&mut created)
            .map_err(SessionError::Encode)?;
        let (passive, durable, arguments) = match &self.config.declare {
            DeclareMode::IfMissing if !self.queue_missing => (true, false, FieldTable::EMPTY),
            DeclareMode::IfMissing => (false, true, created.as_table()),
            DeclareMode::CheckOnly => (true, false, FieldTable::EMPTY),
            DeclareMode::Exactly { durable, arguments } => (false, *durable, arguments.as_table()),
        };
        let declare = QueueDeclare {
            ticket: 0,
            queue: self.config.queue.as_bytes(),
            passive,
            durable,
            exclusive: false,
            auto_delete: false,
            no_wait: false,
            arguments,
        };
        self.out
            .method(CONSUMER_CHANNEL, declare.into())
            .map_err(SessionError::Encode)?;
        self.state = State::AwaitingDeclareOk { passive };
        Ok(())
    }

    fn on_consumer_channel_close(&mut self, close: &ChannelClose<'_>) -> Result<(), SessionError> {
        self.out
            .method(CONSUMER_CHANNEL, ChannelCloseOk {}.into())
            .map_err(SessionError::Encode)?;
        self.incoming = Incoming::Idle;
        self.assembler.reset();
        let text = text(close.reply_text);
        let passive = matches!(self.state, State::AwaitingDeclareOk { passive: true });
        let error = match (close.reply_code, &self.config.declare) {
            (404, DeclareMode::IfMissing) if passive => {
                // The queue does not exist: reopen channel 1 (free again now that
                // close-ok is sent) and declare it durable.
                self.queue_missing = true;
                self.open_channel(CONSUMER_CHANNEL)?;
                self.state = State::AwaitingConsumerOpenOk;
                return Ok(());
            }
            (404, _) if passive => SessionError::QueueMissing {
                queue: self.config.queue.clone(),
                text,
            },
            (406, _) if matches!(self.state, State::AwaitingDeclareOk { .. }) => {
                SessionError::PreconditionFailed {
                    channel: CONSUMER_CHANNEL,
                    text,
                }
            }
            (code, _) => SessionError::ChannelClosed {
                channel: CONSUMER_CHANNEL,
                code,
                text,
            },
        };
        self.events.push_back(Event::Failed(error));
        self.begin_close();
        Ok(())
    }

    fn on_deliver(&mut self, deliver: &BasicDeliver<'_>) -> Result<(), SessionError> {
        if !self.unacked.insert_next(deliver.delivery_tag) {
            return Err(SessionError::DeliveryTagOutOfOrder(deliver.delivery_tag));
        }
        self.assembler.on_method(&Method::BasicDeliver(*deliver))?;
        self.incoming = Incoming::AwaitingHeader(PendingDelivery {
            tag: deliver.delivery_tag,
            redelivered: deliver.redelivered,
            exchange: text(deliver.exchange),
            routing_key: text(deliver.routing_key),
        });
        Ok(())
    }

    /// The delivery a content header belongs to: a header must follow a basic.deliver
    /// and be of the basic class.
    fn pending_for_header(&mut self, class_id: u16) -> Result<PendingDelivery, SessionError> {
        let Incoming::AwaitingHeader(pending) = std::mem::take(&mut self.incoming) else {
            return Err(SessionError::UnexpectedContent {
                frame: "content header",
                channel: CONSUMER_CHANNEL,
            });
        };
        if class_id != CLASS_BASIC {
            return Err(AmqpError::ContentClassMismatch {
                expected: CLASS_BASIC,
                found: class_id,
            }
            .into());
        }
        Ok(pending)
    }

    /// Reports a delivery that will not be delivered (`event`) and skips its body frames
    /// as they arrive, never buffering them.
    fn refuse_and_skip(&mut self, event: Event, body_size: u64) {
        self.assembler.reset();
        self.events.push_back(event);
        if body_size > 0 {
            self.incoming = Incoming::Skipping {
                size: body_size,
                received: 0,
            };
        }
    }

    fn on_delivery_header(&mut self, header: &ContentHeader<'_>) -> Result<(), SessionError> {
        let pending = self.pending_for_header(header.class_id)?;
        if header.body_size > self.config.max_message_bytes {
            let event = Event::TooLarge {
                tag: DeliveryTag(pending.tag),
                size: header.body_size,
            };
            self.refuse_and_skip(event, header.body_size);
            return Ok(());
        }
        let properties = MessageProperties::from_basic(&header.properties);
        match self.assembler.on_header(header)? {
            Assembled::Complete(_) => self.deliver(pending, properties, Vec::new()),
            Assembled::Pending => self.incoming = Incoming::AwaitingBody(pending, properties),
            // Only answers `discard`, which this session never calls.
            Assembled::Discarded => {}
        }
        Ok(())
    }

    /// A delivery whose properties do not decode (e.g. a headers table nested deeper than
    /// we parse): reported for dispatch to refuse it, its body skipped like a too-large
    /// one's; the connection lives on (otherwise the broker would redeliver it forever).
    fn on_delivery_bad_header(&mut self, bad: &BadContentHeader) -> Result<(), SessionError> {
        let pending = self.pending_for_header(bad.class_id)?;
        let event = Event::Unreadable {
            tag: DeliveryTag(pending.tag),
            error: bad.error,
        };
        self.refuse_and_skip(event, bad.body_size);
        Ok(())
    }

    fn on_delivery_body(&mut self, chunk: &[u8]) -> Result<(), SessionError> {
        match &mut self.incoming {
            Incoming::Skipping { size, received } => {
                let now = received.saturating_add(chunk.len() as u64);
                if now > *size {
                    return Err(AmqpError::BodyOverrun {
                        expected: *size,
                        received: now,
                    }
                    .into());
                }
                *received = now;
                if now == *size {
                    self.incoming = Incoming::Idle;
                }
                Ok(())
            }
            Incoming::AwaitingBody(..) => {
                let body = match self.assembler.on_body(chunk)? {
                    Assembled::Pending | Assembled::Discarded => return Ok(()),
                    Assembled::Complete(body) => body.to_vec(),
                };
                if let Incoming::AwaitingBody(pending, properties) =
                    std::mem::take(&mut self.incoming)
                {
                    self.deliver(pending, properties, body);
                }
                Ok(())
            }
            _ => Err(SessionError::UnexpectedContent {
                frame: "body frame",
                channel: CONSUMER_CHANNEL,
            }),
        }
    }

    fn deliver(&mut self, pending: PendingDelivery, properties: MessageProperties, body: Vec<u8>) {
        self.events.push_back(Event::Delivery(Delivery {
            tag: DeliveryTag(pending.tag),
            redelivered: pending.redelivered,
            exchange: pending.exchange,
            routing_key: pending.routing_key,
            properties,
            body,
        }));
    }

    /// Encodes the acks gathered since the last transmit. Acks of tags below every tag
    /// still unacked are one `basic.ack multiple=true` of the highest of them: the broker
    /// holds no other unsettled tag up to it (nacks and rejects are encoded when they are
    /// asked for, so they precede this frame). Any other ack goes out on its own.
    fn encode_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let mut acks = std::mem::take(&mut self.acks);
        acks.sort_unstable();
        let floor = self.unacked.first().unwrap_or(u64::MAX);
        let below = acks.partition_point(|tag| *tag < floor);
        let (run, rest) = acks.split_at(below);
        if let Some(&highest) = run.last() {
            let ack = BasicAck {
                delivery_tag: highest,
                multiple: run.len() > 1,
            };
            // A failure to encode an ack leaves the delivery unacked: the broker
            // redelivers it (at-least-once holds).
            let _ = self.out.method(CONSUMER_CHANNEL, ack.into());
        }
        for &tag in rest {
            let ack = BasicAck {
                delivery_tag: tag,
                multiple: false,
            };
            let _ = self.out.method(CONSUMER_CHANNEL, ack.into());
        }
        acks.clear();
        self.acks = acks; // keep the allocation for the next turn
    }

    fn settle(&mut self, tag: DeliveryTag, method: Method<'static>) -> Result<(), CommandError> {
        if self.state.closing() {
            return Err(CommandError::Closed);
        }
        if !self.unacked.contains(tag.0) {
            return Err(CommandError::UnknownTag(tag));
        }
        self.out
            .method(CONSUMER_CHANNEL, method)
            .map_err(CommandError::Encode)?;
        self.unacked.remove(tag.0);
        Ok(())
    }

    // ---- channel 2: the publisher ---------------------------------------------------

    fn on_publisher_frame(&mut self, payload: FramePayload<'_>) -> Result<(), SessionError> {
        let Some(publisher) = self.publisher.as_mut() else {
            return Err(SessionError::UnknownChannel(PUBLISHER_CHANNEL));
        };
        match (publisher.content, payload) {
            (_, FramePayload::Heartbeat) => Ok(()),
            (ReturnContent::Idle, FramePayload::Method(payload)) => {
                self.on_publisher_method(Method::decode(payload)?)
            }
            (_, FramePayload::Method(payload)) => Err(SessionError::UnexpectedMethod {
                method: Method::decode(payload)?.name(),
                channel: PUBLISHER_CHANNEL,
                state: "receiving a returned message's content",
            }),
            (ReturnContent::AwaitingHeader, FramePayload::BadHeader(bad)) => {
                // A returned copy we cannot read: only its size matters here.
                publisher.content = match bad.body_size {
                    0 => ReturnContent::Idle,
                    size => ReturnContent::AwaitingBody { size, received: 0 },
                };
                Ok(())
            }
            (ReturnContent::AwaitingHeader, FramePayload::Header(header)) => {
                if header.class_id != CLASS_BASIC {
                    return Err(AmqpError::ContentClassMismatch {
                        expected: CLASS_BASIC,
                        found: header.class_id,
                    }
                    .into());
                }
                publisher.content = match header.body_size {
                    0 => ReturnContent::Idle,
                    size => ReturnContent::AwaitingBody { size, received: 0 },
                };
                Ok(())
            }
            (ReturnContent::AwaitingBody { size, received }, FramePayload::Body(chunk)) => {
                let now = received.saturating_add(chunk.len() as u64);
                if now > size {
                    return Err(AmqpError::BodyOverrun {
                        expected: size,
                        received: now,
                    }
                    .into());
                }
                publisher.content = if now == size {
                    ReturnContent::Idle
                } else {
                    ReturnContent::AwaitingBody {
                        size,
                        received: now,
                    }
                };
                Ok(())
            }
            (_, FramePayload::Header(_) | FramePayload::BadHeader(_)) => {
                Err(SessionError::UnexpectedContent {
                    frame: "content header",
                    channel: PUBLISHER_CHANNEL,
                })
            }
            (_, FramePayload::Body(_)) => Err(SessionError::UnexpectedContent {
                frame: "body frame",
                channel: PUBLISHER_CHANNEL,
            }),
        }
    }

    fn on_publisher_method(&mut self, method: Method<'_>) -> Result<(), SessionError> {
        let ready = self.state.publisher_ready();
        match (self.state, method) {
            (State::AwaitingPublisherOpenOk, Method::ChannelOpenOk(_)) => {
                self.out
                    .method(PUBLISHER_CHANNEL, ConfirmSelect { no_wait: false }.into())
                    .map_err(SessionError::Encode)?;
                self.state = State::AwaitingSelectOk;
                Ok(())
            }
            (State::AwaitingSelectOk, Method::ConfirmSelectOk(_)) => {
                self.open_channel(CONSUMER_CHANNEL)?;
                self.state = State::AwaitingConsumerOpenOk;
                Ok(())
            }
            (_, Method::QueueDeclareOk(ok)) if ready && self.declares_pending() > 0 => {
                if let Some(publisher) = self.publisher.as_mut() {
                    publisher.declares_pending -= 1;
                }
                self.events.push_back(Event::RetryQueueDeclared {
                    queue: text(ok.queue),
                });
                Ok(())
            }
            (_, Method::BasicAck(ack)) if ready => {
                self.on_confirm(ack.delivery_tag, ack.multiple, true)
            }
            (_, Method::BasicNack(nack)) if ready => {
                self.on_confirm(nack.delivery_tag, nack.multiple, false)
            }
            (_, Method::BasicReturn(returned)) if ready => {
                if let Some(publisher) = self.publisher.as_mut() {
                    publisher
                        .returns
                        .push_back((returned.reply_code, text(returned.reply_text)));
                    publisher.content = ReturnContent::AwaitingHeader;
                }
                Ok(())
            }
            (_, Method::ChannelClose(close)) => {
                self.out
                    .method(PUBLISHER_CHANNEL, ChannelCloseOk {}.into())
                    .map_err(SessionError::Encode)?;
                let text = text(close.reply_text);
                let error = if close.reply_code == 406 && self.declares_pending() > 0 {
                    SessionError::PreconditionFailed {
                        channel: PUBLISHER_CHANNEL,
                        text,
                    }
                } else {
                    SessionError::ChannelClosed {
                        channel: PUBLISHER_CHANNEL,
                        code: close.reply_code,
                        text,
                    }
                };
                self.events.push_back(Event::Failed(error));
                self.begin_close();
                Ok(())
            }
            (_, Method::ChannelFlow(flow)) if ready => self
                .out
                .method(
                    PUBLISHER_CHANNEL,
                    ChannelFlowOk {
                        active: flow.active,
                    }
                    .into(),
                )
                .map_err(SessionError::Encode),
            (_, method) => Err(self.unexpected(&method, PUBLISHER_CHANNEL)),
        }
    }

    fn declares_pending(&self) -> u32 {
        self.publisher.as_ref().map_or(0, |p| p.declares_pending)
    }

    /// A publisher ack or nack; `multiple` covers every outstanding seq up to `tag`. A
    /// pending basic.return belongs to the publish named by `tag` (see the module docs).
    fn on_confirm(&mut self, tag: u64, multiple: bool, ack: bool) -> Result<(), SessionError> {
        let Some(publisher) = self.publisher.as_mut() else {
            return Err(SessionError::UnknownChannel(PUBLISHER_CHANNEL));
        };
        let outcome = |seq: u64| {
            if ack {
                Event::Confirmed(PublishSeq(seq))
            } else {
                Event::Nacked(PublishSeq(seq))
            }
        };
        if !multiple && !publisher.unconfirmed.contains(tag) {
            return Err(SessionError::UnknownConfirm(tag));
        }
        let mut returned = publisher.returns.pop_front();
        let mut settle_one = |seq: u64, events: &mut VecDeque<Event>| {
            let event = match returned.take() {
                Some((reply_code, reply_text)) if seq == tag => Event::Returned {
                    seq: PublishSeq(seq),
                    reply_code,
                    reply_text,
                },
                other => {
                    returned = other;
                    outcome(seq)
                }
            };
            events.push_back(event);
        };
        if multiple {
            while let Some(seq) = publisher.unconfirmed.pop_up_to(tag) {
                settle_one(seq, &mut self.events);
            }
        } else {
            publisher.unconfirmed.remove(tag);
            settle_one(tag, &mut self.events);
        }
        // A return whose publish this confirm did not name waits for the next one.
        if let Some(unused) = returned {
            publisher.returns.push_front(unused);
        }
        Ok(())
    }

    // ---- endings --------------------------------------------------------------------

    /// Sends connection.close and waits for close-ok; tags and held publishes are void.
    fn begin_close(&mut self) {
        let close = ConnectionClose {
            reply_code: 200,
            reply_text: b"ferry closing",
            class_id: 0,
            method_id: 0,
        };
        // Work that succeeded is acked before the connection closes.
        self.encode_acks();
        self.unacked.clear();
        self.held.clear();
        self.incoming = Incoming::Idle;
        self.handshake_deadline = None;
        match self.out.method(0, close.into()) {
            Ok(()) => {
                self.state = State::AwaitingCloseOk {
                    deadline: self.now + CLOSE_TIMEOUT,
                }
            }
            Err(_) => self.finish(),
        }
    }

    fn fail(&mut self, error: SessionError) {
        self.events.push_back(Event::Failed(error));
        self.finish();
    }

    fn abort(&mut self, error: SessionError) -> SessionError {
        self.finish();
        error
    }

    /// The session is over: nothing of it may be used again.
    fn finish(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.unacked.clear();
        self.acks.clear();
        self.held.clear();
        self.incoming = Incoming::Idle;
        self.heartbeat = None;
        self.handshake_deadline = None;
        self.events.push_back(Event::Closed);
    }
}
