//! What a [`Session`](super::Session) reports to dispatch. Events own their data: a
//! delivery's body and properties are copied out of the read buffer once, because they
//! outlive it (the job runs long after the frame was parsed).

use super::error::SessionError;
use crate::proto::amqp::{AmqpError, BasicProperties, FieldTable, FieldValue, TableBuilder};

/// A delivery tag on the consumer channel. Valid only on the connection that delivered
/// it: after a reconnect every old tag is void.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryTag(pub u64);

/// A publisher-confirm sequence number on the publisher channel (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublishSeq(pub u64);

/// One event, in the order things happened on the wire.
///
/// Every session ends with exactly one [`Event::Closed`], its last event, preceded by
/// [`Event::Failed`] when the end was not asked for with
/// [`Session::close`](super::Session::close) (and not reported as an `Err` of
/// `handle_input`). A publish ends in exactly one of [`Event::Confirmed`],
/// [`Event::Nacked`] or [`Event::Returned`] — or, if the session closes first, in none:
/// it is then in doubt and must be treated as not published.
#[derive(Debug, Clone, PartialEq)]
// A delivery is the common event and is moved once, out of the queue: boxing it would
// cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The consumer is registered (basic.consume-ok): deliveries follow. The counts come
    /// from the queue.declare-ok answered just before.
    Ready {
        /// Messages ready in the queue at declare time.
        message_count: u32,
        /// Other consumers of the queue at declare time.
        consumer_count: u32,
    },
    /// A complete message. Settle it with ack, nack or reject.
    Delivery(Delivery),
    /// A message whose body exceeds `max_message_bytes`: its body was skipped, never
    /// buffered. It is unacked like any delivery: settle it (dispatch rejects it as a
    /// permanent failure).
    TooLarge {
        /// Its delivery tag.
        tag: DeliveryTag,
        /// The body size the content header announced.
        size: u64,
    },
    /// A delivery whose content header did not decode (its properties are malformed,
    /// e.g. a headers table nested deeper than ferry parses). Its body was skipped; it is
    /// unacked like any delivery: settle it (dispatch refuses it as a permanent failure).
    Unreadable {
        /// Its delivery tag.
        tag: DeliveryTag,
        /// Why the header could not be read.
        error: AmqpError,
    },
    /// A retry queue asked for with
    /// [`declare_retry_queue`](super::Session::declare_retry_queue) exists.
    RetryQueueDeclared {
        /// The queue name the broker answered.
        queue: String,
    },
    /// The broker took responsibility for a publish.
    Confirmed(PublishSeq),
    /// The broker could not take a publish (an internal error, a queue overflow with
    /// `reject-publish`, …).
    Nacked(PublishSeq),
    /// A mandatory publish matched no queue; it was returned (and not delivered anywhere).
    Returned {
        /// The publish (RabbitMQ sends basic.return just before that publish's ack).
        seq: PublishSeq,
        /// Reply code (312 NO_ROUTE).
        reply_code: u16,
        /// The broker's reply text.
        reply_text: String,
    },
    /// The broker blocked publishing (a memory or disk alarm): publishes are held in the
    /// session until [`Event::Unblocked`]; acks and the consumer keep going.
    Blocked {
        /// The broker's reason, e.g. `"low on memory"`.
        reason: String,
    },
    /// Publishing resumed; held publishes were released.
    Unblocked,
    /// Our basic.cancel was confirmed: no new deliveries. Those already received (even
    /// after the cancel) must still be settled.
    Cancelled,
    /// The broker cancelled the consumer (the queue was deleted). Deliveries already
    /// received must still be settled; the channel stays open for that.
    ConsumerCancelledByServer,
    /// The session is ending for this reason; [`Event::Closed`] follows.
    Failed(SessionError),
    /// The session is over: flush `poll_transmit` and drop the socket.
    Closed,
}

/// A message from the consumed queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The tag to settle it with.
    pub tag: DeliveryTag,
    /// The broker delivered it before (to this or another consumer).
    pub redelivered: bool,
    /// The exchange it was published to (`""` for the default exchange).
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Its properties.
    pub properties: MessageProperties,
    /// Its body.
    pub body: Vec<u8>,
}

/// A header value as dispatch renders it into `FERRY_HEADER_*` params
/// (`docs/SEMANTICS.md` "Message metadata": string and number headers only).
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// A long string or byte array (UTF-8, invalid sequences replaced).
    Text(String),
    /// Any integer type or a timestamp (those above `i64::MAX` are [`HeaderValue::Other`]).
    Int(i64),
    /// A float, double or decimal.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A table, an array, void, or an integer too large: not rendered.
    Other,
}

impl HeaderValue {
    fn from_field(value: FieldValue<'_>) -> HeaderValue {
        match value {
            FieldValue::Bool(b) => HeaderValue::Bool(b),
            FieldValue::I8(v) => HeaderValue::Int(v.into()),
            FieldValue::U8(v) => HeaderValue::Int(v.into()),
            FieldValue::I16(v) => HeaderValue::Int(v.into()),
            FieldValue::U16(v) => HeaderValue::Int(v.into()),
            FieldValue::I32(v) => HeaderValue::Int(v.into()),
            FieldValue::U32(v) => HeaderValue::Int(v.into()),
            FieldValue::I64(v) => HeaderValue::Int(v),
            FieldValue::Timestamp(v) => match i64::try_from(v) {
                Ok(v) => HeaderValue::Int(v),
                Err(_) => HeaderValue::Other,
            },
            FieldValue::F32(v) => HeaderValue::Float(v.into()),
            FieldValue::F64(v) => HeaderValue::Float(v),
            FieldValue::Decimal { scale, value } => {
                HeaderValue::Float(f64::from(value) / 10f64.powi(i32::from(scale)))
            }
            FieldValue::LongStr(s) | FieldValue::Bytes(s) => {
                HeaderValue::Text(String::from_utf8_lossy(s).into_owned())
            }
            FieldValue::Table(_) | FieldValue::Array(_) | FieldValue::Void => HeaderValue::Other,
        }
    }
}

/// A message's basic properties, owned. All fourteen are kept (not just those dispatch
/// renders) so that a retry copy republishes the message as it was; the header table is
/// kept both rendered ([`MessageProperties::headers`]) and as its raw bytes, so a
/// republish keeps every header, whatever its type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageProperties {
    /// `content_type`.
    pub content_type: Option<Vec<u8>>,
    /// `content_encoding`.
    pub content_encoding: Option<Vec<u8>>,
    /// `delivery_mode` (2 = persistent).
    pub delivery_mode: Option<u8>,
    /// `priority`.
    pub priority: Option<u8>,
    /// `correlation_id`.
    pub correlation_id: Option<Vec<u8>>,
    /// `reply_to`.
    pub reply_to: Option<Vec<u8>>,
    /// `expiration` (per-message TTL, decimal milliseconds).
    pub expiration: Option<Vec<u8>>,
    /// `message_id`.
    pub message_id: Option<Vec<u8>>,
    /// `timestamp`, POSIX seconds.
    pub timestamp: Option<u64>,
    /// `type`.
    pub kind: Option<Vec<u8>>,
    /// `user_id`.
    pub user_id: Option<Vec<u8>>,
    /// `app_id`.
    pub app_id: Option<Vec<u8>>,
    /// `cluster_id`.
    pub cluster_id: Option<Vec<u8>>,
    /// The headers in wire order, names UTF-8 (invalid sequences replaced), values
    /// rendered.
    pub headers: Vec<(String, HeaderValue)>,
    /// The header table's raw content (validated), `None` when the message had none.
    headers_raw: Option<Vec<u8>>,
}

impl MessageProperties {
    /// Copies what `properties` borrows.
    pub fn from_basic(properties: &BasicProperties<'_>) -> MessageProperties {
        let owned = |v: Option<&[u8]>| v.map(<[u8]>::to_vec);
        let headers = properties
            .headers
            .map(|table| render_headers(table))
            .unwrap_or_default();
        MessageProperties {
            content_type: owned(properties.content_type),
            content_encoding: owned(properties.content_encoding),
            delivery_mode: properties.delivery_mode,
            priority: properties.priority,
            correlation_id: owned(properties.correlation_id),
            reply_to: owned(properties.reply_to),
            expiration: owned(properties.expiration),
            message_id: owned(properties.message_id),
            timestamp: properties.timestamp,
            kind: owned(properties.kind),
            user_id: owned(properties.user_id),
            app_id: owned(properties.app_id),
            cluster_id: owned(properties.cluster_id),
            headers,
            headers_raw: properties.headers.map(|t| t.as_bytes().to_vec()),
        }
    }

    /// The header table as it arrived (or as [`set_header`](Self::set_header) left it).
    pub fn headers_table(&self) -> Option<FieldTable<'_>> {
        // The bytes were validated when they were decoded or built: parsing cannot fail.
        self.headers_raw
            .as_deref()
            .and_then(|raw| FieldTable::parse(raw).ok())
    }

    /// The rendered value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets header `name` to `value`, replacing any entry of that name and keeping every
    /// other header (ferry's `x-ferry-attempt` on a retry copy).
    pub fn set_header(&mut self, name: &str, value: FieldValue<'_>) -> Result<(), AmqpError> {
        let mut table = TableBuilder::new();
        if let Some(old) = self.headers_table() {
            for (key, v) in old.iter().filter(|(key, _)| *key != name.as_bytes()) {
                table.insert(key, v)?;
            }
        }
        table.insert(name.as_bytes(), value)?;
        let built = table.as_table();
        self.headers = render_headers(built);
        self.headers_raw = Some(built.as_bytes().to_vec());
        Ok(())
    }

    /// Removes every header named `name` (the broker's `x-delivery-count` from a copy);
    /// nothing changes when there is none.
    pub fn remove_header(&mut self, name: &str) -> Result<(), AmqpError> {
        let Some(old) = self.headers_table() else {
            return Ok(());
        };
        if old.iter().all(|(key, _)| key != name.as_bytes()) {
            return Ok(());
        }
        let mut table = TableBuilder::new();
        for (key, v) in old.iter().filter(|(key, _)| *key != name.as_bytes()) {
            table.insert(key, v)?;
        }
        let built = table.as_table();
        self.headers = render_headers(built);
        self.headers_raw = Some(built.as_bytes().to_vec());
        Ok(())
    }

    /// Borrows these properties for [`Session::publish`](super::Session::publish).
    pub fn as_basic(&self) -> BasicProperties<'_> {
        BasicProperties {
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            headers: self.headers_table(),
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            correlation_id: self.correlation_id.as_deref(),
            reply_to: self.reply_to.as_deref(),
            expiration: self.expiration.as_deref(),
            message_id: self.message_id.as_deref(),
            timestamp: self.timestamp,
            kind: self.kind.as_deref(),
            user_id: self.user_id.as_deref(),
            app_id: self.app_id.as_deref(),
            cluster_id: self.cluster_id.as_deref(),
        }
    }
}

fn render_headers(table: FieldTable<'_>) -> Vec<(String, HeaderValue)> {
    table
        .iter()
        .map(|(name, value)| {
            (
                String::from_utf8_lossy(name).into_owned(),
                HeaderValue::from_field(value),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_header_drops_that_name_and_keeps_the_rest() {
        let mut headers = TableBuilder::new();
        headers
            .insert(b"x-delivery-count", FieldValue::I64(2))
            .unwrap()
            .insert(b"tenant", FieldValue::LongStr(b"acme"))
            .unwrap();
        let basic = BasicProperties {
            headers: Some(headers.as_table()),
            ..Default::default()
        };
        let mut props = MessageProperties::from_basic(&basic);
        props.remove_header("x-delivery-count").unwrap();
        assert_eq!(props.header("x-delivery-count"), None);
        assert_eq!(
            props.header("tenant"),
            Some(&HeaderValue::Text("acme".into()))
        );
        let table = props.headers_table().unwrap();
        assert_eq!(table.iter().count(), 1, "gone from the raw table too");
        let mut none = MessageProperties::default();
        none.remove_header("x").unwrap();
        assert_eq!(none, MessageProperties::default());
    }

    #[test]
    fn properties_round_trip_and_headers_are_replaced_not_duplicated() {
        let mut headers = TableBuilder::new();
        headers
            .insert(b"x-ferry-attempt", FieldValue::I64(2))
            .unwrap()
            .insert(b"tenant", FieldValue::LongStr(b"acme"))
            .unwrap()
            .insert(b"nested", FieldValue::Table(FieldTable::EMPTY))
            .unwrap();
        let basic = BasicProperties {
            content_type: Some(b"application/json"),
            headers: Some(headers.as_table()),
            delivery_mode: Some(2),
            message_id: Some(b"m-1"),
            timestamp: Some(1_700_000_000),
            ..BasicProperties::default()
        };
        let mut owned = MessageProperties::from_basic(&basic);
        assert_eq!(owned.as_basic(), basic);
        assert_eq!(owned.header("x-ferry-attempt"), Some(&HeaderValue::Int(2)));
        assert_eq!(
            owned.header("tenant"),
            Some(&HeaderValue::Text("acme".into()))
        );
        assert_eq!(owned.header("nested"), Some(&HeaderValue::Other));

        owned
            .set_header("x-ferry-attempt", FieldValue::I64(3))
            .unwrap();
        let names: Vec<_> = owned.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["tenant", "nested", "x-ferry-attempt"]);
        assert_eq!(owned.header("x-ferry-attempt"), Some(&HeaderValue::Int(3)));
        let table = owned.headers_table().unwrap();
        assert_eq!(table.get(b"x-ferry-attempt"), Some(FieldValue::I64(3)));
        assert_eq!(
            table.get(b"nested"),
            Some(FieldValue::Table(FieldTable::EMPTY))
        );
    }

    #[test]
    fn header_values_render_by_type() {
        assert_eq!(
            HeaderValue::from_field(FieldValue::Decimal {
                scale: 2,
                value: 150
            }),
            HeaderValue::Float(1.5)
        );
        assert_eq!(
            HeaderValue::from_field(FieldValue::Timestamp(u64::MAX)),
            HeaderValue::Other
        );
        assert_eq!(
            HeaderValue::from_field(FieldValue::U32(u32::MAX)),
            HeaderValue::Int(i64::from(u32::MAX))
        );
    }
}
