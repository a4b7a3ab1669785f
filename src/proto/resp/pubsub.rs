//! Pub/sub events as Redis 7 sends them (`src/pubsub.c`): RESP2 arrays on a subscribed
//! connection, RESP3 push frames (`>`) after `HELLO 3`, with the same elements.
//!
//! A RESP2 array is only a pub/sub event in context: on a subscribed connection every
//! frame is one, while an ordinary reply (`LRANGE` of `["message", …]`) could look like
//! one. The caller decides when to ask; this module only reads the shape.

use std::fmt;

use super::frame::{Elements, Frame};

/// What kind of subscription a confirmation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeKind {
    /// `SUBSCRIBE` / `UNSUBSCRIBE`: a channel name.
    Channel,
    /// `PSUBSCRIBE` / `PUNSUBSCRIBE`: a glob pattern.
    Pattern,
    /// `SSUBSCRIBE` / `SUNSUBSCRIBE` (Redis 7): a shard channel.
    Shard,
}

/// One pub/sub event, borrowing from the decoded frame's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubEvent<'b> {
    /// `[subscribe|psubscribe|ssubscribe, name, count]`: one per name subscribed.
    Subscribe {
        /// Channel, pattern or shard channel.
        kind: SubscribeKind,
        /// The name as subscribed.
        name: &'b [u8],
        /// Subscriptions the connection now holds (channels + patterns; shard
        /// subscriptions counted apart).
        count: u64,
    },
    /// `[unsubscribe|punsubscribe|sunsubscribe, name|null, count]`; the name is null when
    /// a bare UNSUBSCRIBE found nothing to unsubscribe.
    Unsubscribe {
        /// Channel, pattern or shard channel.
        kind: SubscribeKind,
        /// The name, or `None` for Redis's null.
        name: Option<&'b [u8]>,
        /// Subscriptions left.
        count: u64,
    },
    /// `[message, channel, payload]`.
    Message {
        /// The channel it was published to.
        channel: &'b [u8],
        /// The published bytes.
        payload: &'b [u8],
    },
    /// `[pmessage, pattern, channel, payload]`.
    PMessage {
        /// The pattern that matched.
        pattern: &'b [u8],
        /// The channel it was published to.
        channel: &'b [u8],
        /// The published bytes.
        payload: &'b [u8],
    },
    /// `[smessage, shard channel, payload]`.
    SMessage {
        /// The shard channel it was published to.
        channel: &'b [u8],
        /// The published bytes.
        payload: &'b [u8],
    },
    /// The answer to `PING` while subscribed: RESP2 `[pong, payload]` (payload `""` when
    /// PING had no argument); RESP3 answers a plain `+PONG`, reported with an empty payload.
    Pong {
        /// PING's argument, or empty.
        payload: &'b [u8],
    },
}

/// A frame whose first element names a pub/sub event but whose shape is not that event's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubError {
    /// The frame has the wrong number of elements for its kind.
    WrongArity {
        /// The event kind, as sent (`message`, `subscribe`, …).
        kind: &'static str,
        /// Elements that kind has.
        expected: usize,
        /// Elements the frame had.
        found: usize,
    },
    /// An element has the wrong type (e.g. an integer where the channel belongs).
    WrongType {
        /// The event kind.
        kind: &'static str,
        /// Index of the offending element.
        index: usize,
    },
    /// A subscription count is negative.
    NegativeCount {
        /// The event kind.
        kind: &'static str,
    },
}

impl fmt::Display for PubSubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PubSubError::WrongArity {
                kind,
                expected,
                found,
            } => write!(
                f,
                "pub/sub `{kind}` frame has {found} elements, expected {expected}"
            ),
            PubSubError::WrongType { kind, index } => {
                write!(
                    f,
                    "pub/sub `{kind}` frame: element {index} has the wrong type"
                )
            }
            PubSubError::NegativeCount { kind } => {
                write!(f, "pub/sub `{kind}` frame: negative subscription count")
            }
        }
    }
}

impl std::error::Error for PubSubError {}

/// The event kinds, by the name Redis puts in the first element.
#[derive(Clone, Copy)]
enum Kind {
    Message,
    PMessage,
    SMessage,
    Subscribe(SubscribeKind),
    Unsubscribe(SubscribeKind),
    Pong,
}

impl Kind {
    #[inline]
    fn from_name(name: &[u8]) -> Option<(Kind, &'static str, usize)> {
        Some(match name {
            b"message" => (Kind::Message, "message", 3),
            b"pmessage" => (Kind::PMessage, "pmessage", 4),
            b"smessage" => (Kind::SMessage, "smessage", 3),
            b"subscribe" => (Kind::Subscribe(SubscribeKind::Channel), "subscribe", 3),
            b"psubscribe" => (Kind::Subscribe(SubscribeKind::Pattern), "psubscribe", 3),
            b"ssubscribe" => (Kind::Subscribe(SubscribeKind::Shard), "ssubscribe", 3),
            b"unsubscribe" => (Kind::Unsubscribe(SubscribeKind::Channel), "unsubscribe", 3),
            b"punsubscribe" => (Kind::Unsubscribe(SubscribeKind::Pattern), "punsubscribe", 3),
            b"sunsubscribe" => (Kind::Unsubscribe(SubscribeKind::Shard), "sunsubscribe", 3),
            b"pong" => (Kind::Pong, "pong", 2),
            _ => return None,
        })
    }
}

/// Reads the elements after the kind name, checking their types.
struct Fields<'b> {
    elements: Elements<'b>,
    kind: &'static str,
    index: usize,
}

impl<'b> Fields<'b> {
    #[inline(always)]
    fn next(&mut self) -> Result<Frame<'b>, PubSubError> {
        self.index += 1;
        // The arity was checked first, so `None` means the impossible happened.
        self.elements.next().ok_or(PubSubError::WrongType {
            kind: self.kind,
            index: self.index,
        })
    }

    // Always inlined, as `Elements::next` is: the pair reads a bulk string in a few
    // instructions, and a call per field would cost more than the reading.
    #[inline(always)]
    fn bytes(&mut self) -> Result<&'b [u8], PubSubError> {
        match self.next()? {
            Frame::BulkString(bytes) | Frame::SimpleString(bytes) => Ok(bytes),
            _ => Err(self.wrong_type()),
        }
    }

    fn optional_bytes(&mut self) -> Result<Option<&'b [u8]>, PubSubError> {
        match self.next()? {
            Frame::BulkString(bytes) | Frame::SimpleString(bytes) => Ok(Some(bytes)),
            Frame::NullBulk | Frame::Null => Ok(None),
            _ => Err(self.wrong_type()),
        }
    }

    fn count(&mut self) -> Result<u64, PubSubError> {
        match self.next()? {
            Frame::Integer(count) => {
                u64::try_from(count).map_err(|_| PubSubError::NegativeCount { kind: self.kind })
            }
            _ => Err(self.wrong_type()),
        }
    }

    fn wrong_type(&self) -> PubSubError {
        PubSubError::WrongType {
            kind: self.kind,
            index: self.index,
        }
    }
}

impl<'b> PubSubEvent<'b> {
    /// Classifies a decoded frame: `Ok(None)` when it is not a pub/sub event (an ordinary
    /// reply, an unknown push kind such as `invalidate`), `Err` when it names a pub/sub
    /// event but has the wrong shape.
    #[inline]
    pub fn from_frame(frame: &Frame<'b>) -> Result<Option<Self>, PubSubError> {
        let aggregate = match frame {
            Frame::Array(aggregate) | Frame::Push(aggregate) => aggregate,
            Frame::SimpleString(b"PONG") => return Ok(Some(PubSubEvent::Pong { payload: b"" })),
            _ => return Ok(None),
        };
        let mut elements = aggregate.iter();
        let Some(Frame::BulkString(name) | Frame::SimpleString(name)) = elements.next() else {
            return Ok(None);
        };
        let Some((kind, kind_name, expected)) = Kind::from_name(name) else {
            return Ok(None);
        };
        let found = aggregate.element_count();
        if found != expected {
            return Err(PubSubError::WrongArity {
                kind: kind_name,
                expected,
                found,
            });
        }
        let mut fields = Fields {
            elements,
            kind: kind_name,
            index: 0,
        };
        let event = match kind {
            Kind::Message => PubSubEvent::Message {
                channel: fields.bytes()?,
                payload: fields.bytes()?,
            },
            Kind::PMessage => PubSubEvent::PMessage {
                pattern: fields.bytes()?,
                channel: fields.bytes()?,
                payload: fields.bytes()?,
            },
            Kind::SMessage => PubSubEvent::SMessage {
                channel: fields.bytes()?,
                payload: fields.bytes()?,
            },
            Kind::Subscribe(kind) => PubSubEvent::Subscribe {
                kind,
                name: fields.bytes()?,
                count: fields.count()?,
            },
            Kind::Unsubscribe(kind) => PubSubEvent::Unsubscribe {
                kind,
                name: fields.optional_bytes()?,
                count: fields.count()?,
            },
            Kind::Pong => PubSubEvent::Pong {
                payload: fields.bytes()?,
            },
        };
        Ok(Some(event))
    }
}
