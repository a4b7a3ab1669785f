//! A job: one message on its way to a worker, with what ferry must remember to settle it.

use std::time::Instant;

use super::ids::{JobId, SourceId};
use crate::dispatch::request::{Message, SourceKind};
use crate::proto::amqp::{DeliveryTag, MessageProperties};
use crate::proto::resp::stream::EntryId;
use crate::proto::resp::Subscription;
use std::time::Duration;

/// Where a job came from, and what settling it needs.
#[derive(Debug)]
pub(super) enum Origin {
    /// Redis pub/sub or the RESP endpoint: nothing to settle with the broker.
    Redis {
        /// The subscription it arrived through (its channel or pattern, in the config).
        subscription: Subscription,
        /// The channel, for pattern subscriptions.
        channel: Option<Vec<u8>>,
        /// Published to ferry's own RESP endpoint (`FERRY_KIND=resp_endpoint`).
        endpoint: bool,
    },
    /// An AMQP delivery, settled on the session `generation` it arrived on (a tag of
    /// an older connection is void: `docs/SEMANTICS.md`, "Delivery guarantees").
    Amqp {
        /// Session generation of the source when delivered.
        generation: u64,
        /// Its delivery tag on that session.
        tag: DeliveryTag,
        /// The broker's redelivered flag.
        redelivered: bool,
        /// Exchange it was published to.
        exchange: String,
        /// Its routing key.
        routing_key: String,
        /// Its properties (headers kept raw so a retry copy keeps them all).
        properties: Box<MessageProperties>,
    },
    /// A Redis stream entry, pending in the group for this consumer until acked
    /// (`docs/SEMANTICS.md`, "Redis Streams: at-least-once"). Acks are by id, on any
    /// connection of the source.
    Stream {
        /// The entry id.
        entry_id: EntryId,
        /// The id as text (`FERRY_MESSAGE_ID`).
        id_text: String,
        /// The group's delivery counter when this attempt started.
        delivery_count: u64,
        /// Its fields, as the RESP bulk strings Redis sent (copied into a dead-letter
        /// `XADD` as they are).
        fields: Vec<u8>,
        /// Names and values in `fields`.
        field_count: usize,
        /// `form` bodies are sent with the form content type.
        form: bool,
        /// The delay of the retry it waits out (the idle time `XCLAIM` asks for).
        retry_delay: Duration,
    },
}

/// One message on its way through ferry.
#[derive(Debug)]
pub(super) struct Job {
    /// Unique per process, for logs and `/jobs`.
    pub id: JobId,
    /// The source it came from.
    pub source: SourceId,
    /// 1 on first delivery (AMQP: from `x-ferry-attempt`, so it survives restarts).
    pub attempt: u32,
    /// The message body.
    pub payload: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
    /// When ferry received it.
    pub received_at: Instant,
    /// A resend on a fresh connection after a kept one closed under it was used.
    pub resent: bool,
    /// `ack: on_dispatch` acked it when its request was written: nothing is left to
    /// settle, and it must never be acked twice (a resend writes it again).
    pub dispatch_acked: bool,
}

impl Job {
    /// The kind of source it came from (`FERRY_KIND`).
    pub fn kind(&self) -> SourceKind {
        match &self.origin {
            Origin::Redis { endpoint: true, .. } => SourceKind::RespEndpoint,
            Origin::Redis { .. } => SourceKind::Redis,
            Origin::Amqp { .. } => SourceKind::Amqp,
            Origin::Stream { .. } => SourceKind::RedisStream,
        }
    }

    /// The request metadata the builder turns into `FERRY_*` params.
    pub fn message<'a>(
        &'a self,
        source_name: &'a str,
        channels: &'a [String],
        patterns: &'a [String],
        queue: Option<&'a str>,
    ) -> Message<'a> {
        match &self.origin {
            Origin::Redis {
                subscription,
                channel,
                ..
            } => {
                let mut message = Message::new(source_name, self.kind(), self.attempt);
                match subscription {
                    Subscription::Channel(i) => {
                        message.channel = channels.get(*i).map(|c| c.as_bytes());
                    }
                    Subscription::Pattern(i) => {
                        message.channel = channel.as_deref();
                        message.pattern = patterns.get(*i).map(|p| p.as_bytes());
                    }
                }
                message
            }
            Origin::Amqp {
                redelivered,
                exchange,
                routing_key,
                properties,
                ..
            } => {
                let mut message = Message::new(source_name, SourceKind::Amqp, self.attempt);
                message.queue = queue.map(str::as_bytes);
                message.exchange = Some(exchange.as_bytes());
                message.routing_key = Some(routing_key.as_bytes());
                message.redelivered = Some(*redelivered);
                message.message_id = properties.message_id.as_deref();
                message.correlation_id = properties.correlation_id.as_deref();
                message.reply_to = properties.reply_to.as_deref();
                message.timestamp = properties.timestamp;
                message.headers = properties.headers_table();
                message.content_type = properties.content_type.as_deref();
                message
            }
            Origin::Stream { id_text, form, .. } => {
                let mut message = Message::new(source_name, SourceKind::RedisStream, self.attempt);
                message.stream = queue.map(str::as_bytes);
                message.message_id = Some(id_text.as_bytes());
                if *form {
                    message.content_type = Some(crate::dispatch::request::FORM_CONTENT_TYPE);
                }
                message
            }
        }
    }

    /// A short id for log lines: the AMQP message id when there is one.
    pub fn log_id(&self) -> String {
        match &self.origin {
            Origin::Amqp { properties, .. } => match &properties.message_id {
                Some(id) => format!("{} ({})", self.id, String::from_utf8_lossy(id)),
                None => self.id.to_string(),
            },
            Origin::Redis { .. } => self.id.to_string(),
            Origin::Stream { id_text, .. } => format!("{} ({id_text})", self.id),
        }
    }

    /// Bytes this job holds (for the Redis backlog's byte bound).
    pub fn held_bytes(&self) -> usize {
        self.payload.len()
    }
}
