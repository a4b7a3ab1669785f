//! Methods (spec §4.2.5 and the class definitions of `amqp-rabbitmq-0.9.1.json` in
//! rabbitmq/rabbitmq-codegen): the subset ferry speaks, in both directions.
//!
//! # Layout
//! ```text
//! class-id u16 | method-id u16 | arguments in spec order
//! ```
//! Each method is a struct with borrowed fields, generated with its wire layout from one
//! table below so the decoder, encoder and ids cannot drift apart. Reserved arguments
//! (`ticket`, `reserved-1`, ...) are kept as fields so a decoded method re-encodes to
//! the same bytes. Unknown class/method ids and bytes after the last argument are
//! errors.

use super::table::FieldTable;
use super::wire::{Reader, Writer};
use super::AmqpError;

/// Declares the method structs, the [`Method`] enum and its codec from one table:
/// `Name<'b> = (class, method, "name") { field: RustType = wire_kind, ... }` where the
/// wire kind is a [`Reader`]/[`Writer`] function (`octet`, `short`, `long`, `longlong`,
/// `bit`, `shortstr`, `longstr`, `table`).
macro_rules! methods {
    ($b:lifetime; $(
        $(#[$doc:meta])*
        $name:ident $(<$lt:lifetime>)? = ($class:literal, $method:literal, $text:literal) {
            $( $field:ident : $ty:ty = $kind:ident ),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[doc = concat!("\n\nWire: class ", stringify!($class), ", method ", stringify!($method), " (`", $text, "`).")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
            pub struct $name $(<$lt>)? {
                $(
                    #[doc = concat!("`", stringify!($field), "` argument (AMQP `", stringify!($kind), "`).")]
                    pub $field: $ty,
                )*
            }

            impl $(<$lt>)? $name $(<$lt>)? {
                /// Class id on the wire.
                pub const CLASS_ID: u16 = $class;
                /// Method id on the wire.
                pub const METHOD_ID: u16 = $method;
            }

            impl<$b> From<$name $(<$lt>)?> for Method<$b> {
                fn from(m: $name $(<$lt>)?) -> Method<$b> {
                    Method::$name(m)
                }
            }
        )*

        /// Every method this codec knows, one variant per method.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Method<$b> {
            $(
                #[doc = concat!("`", $text, "`.")]
                $name($name $(<$lt>)?),
            )*
        }

        impl<$b> Method<$b> {
            /// Decodes a method frame's whole payload (class id, method id, arguments).
            pub fn decode(payload: &$b [u8]) -> Result<Method<$b>, AmqpError> {
                let mut r = Reader::new(payload);
                let (class, method) = match (r.short(), r.short()) {
                    (Ok(class), Ok(method)) => (class, method),
                    _ => return Err(AmqpError::MethodTooShort(payload.len())),
                };
                let decoded = match (class, method) {
                    $(
                        ($class, $method) => Method::$name($name {
                            // Struct expressions evaluate fields in source order, which
                            // is the spec's argument order.
                            $( $field: r.$kind()?, )*
                        }),
                    )*
                    _ => return Err(AmqpError::UnknownMethod { class, method }),
                };
                if !r.is_empty() {
                    return Err(AmqpError::TrailingBytes("method"));
                }
                Ok(decoded)
            }

            /// Appends the method payload (ids and arguments, no frame envelope). On error
            /// (a shortstr over 255 bytes, a longstr over 4 GiB) `out` is left as it was.
            pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmqpError> {
                let start = out.len();
                let result = self.encode_unchecked(out);
                if result.is_err() {
                    out.truncate(start);
                }
                result
            }

            fn encode_unchecked(&self, out: &mut Vec<u8>) -> Result<(), AmqpError> {
                let mut w = Writer::new(out);
                match self {
                    $(
                        Method::$name(_m) => {
                            w.short($class)?;
                            w.short($method)?;
                            $( w.$kind(_m.$field)?; )*
                        }
                    )*
                }
                Ok(())
            }

            /// The method's class and method ids.
            pub fn ids(&self) -> (u16, u16) {
                match self {
                    $( Method::$name(_) => ($class, $method), )*
                }
            }

            /// The spec's name, e.g. `"basic.deliver"` (for logs and errors).
            pub fn name(&self) -> &'static str {
                match self {
                    $( Method::$name(_) => $text, )*
                }
            }
        }
    };
}

methods! { 'b;
    /// Server greeting: protocol version, server properties, SASL mechanisms, locales.
    ConnectionStart<'b> = (10, 10, "connection.start") {
        version_major: u8 = octet,
        version_minor: u8 = octet,
        server_properties: FieldTable<'b> = table,
        mechanisms: &'b [u8] = longstr,
        locales: &'b [u8] = longstr,
    }
    /// Client answer: client properties, chosen mechanism, SASL response, locale.
    ConnectionStartOk<'b> = (10, 11, "connection.start-ok") {
        client_properties: FieldTable<'b> = table,
        mechanism: &'b [u8] = shortstr,
        response: &'b [u8] = longstr,
        locale: &'b [u8] = shortstr,
    }
    /// SASL challenge.
    ConnectionSecure<'b> = (10, 20, "connection.secure") {
        challenge: &'b [u8] = longstr,
    }
    /// SASL challenge response.
    ConnectionSecureOk<'b> = (10, 21, "connection.secure-ok") {
        response: &'b [u8] = longstr,
    }
    /// Server's proposed limits (0 = no limit; heartbeat in seconds).
    ConnectionTune = (10, 30, "connection.tune") {
        channel_max: u16 = short,
        frame_max: u32 = long,
        heartbeat: u16 = short,
    }
    /// Client's negotiated limits.
    ConnectionTuneOk = (10, 31, "connection.tune-ok") {
        channel_max: u16 = short,
        frame_max: u32 = long,
        heartbeat: u16 = short,
    }
    /// Opens a virtual host.
    ConnectionOpen<'b> = (10, 40, "connection.open") {
        virtual_host: &'b [u8] = shortstr,
        capabilities: &'b [u8] = shortstr,
        insist: bool = bit,
    }
    /// Virtual host opened.
    ConnectionOpenOk<'b> = (10, 41, "connection.open-ok") {
        known_hosts: &'b [u8] = shortstr,
    }
    /// Connection close request with the reason and the failing method, if any.
    ConnectionClose<'b> = (10, 50, "connection.close") {
        reply_code: u16 = short,
        reply_text: &'b [u8] = shortstr,
        class_id: u16 = short,
        method_id: u16 = short,
    }
    /// Connection close confirmed.
    ConnectionCloseOk = (10, 51, "connection.close-ok") {}
    /// RabbitMQ extension: the server blocks publishers (resource alarm).
    ConnectionBlocked<'b> = (10, 60, "connection.blocked") {
        reason: &'b [u8] = shortstr,
    }
    /// RabbitMQ extension: publishers unblocked.
    ConnectionUnblocked = (10, 61, "connection.unblocked") {}

    /// Opens a channel.
    ChannelOpen<'b> = (20, 10, "channel.open") {
        out_of_band: &'b [u8] = shortstr,
    }
    /// Channel opened.
    ChannelOpenOk<'b> = (20, 11, "channel.open-ok") {
        channel_id: &'b [u8] = longstr,
    }
    /// Flow control request.
    ChannelFlow = (20, 20, "channel.flow") {
        active: bool = bit,
    }
    /// Flow control confirmed.
    ChannelFlowOk = (20, 21, "channel.flow-ok") {
        active: bool = bit,
    }
    /// Channel close request with the reason and the failing method, if any.
    ChannelClose<'b> = (20, 40, "channel.close") {
        reply_code: u16 = short,
        reply_text: &'b [u8] = shortstr,
        class_id: u16 = short,
        method_id: u16 = short,
    }
    /// Channel close confirmed.
    ChannelCloseOk = (20, 41, "channel.close-ok") {}

    /// Declares an exchange.
    ExchangeDeclare<'b> = (40, 10, "exchange.declare") {
        ticket: u16 = short,
        exchange: &'b [u8] = shortstr,
        kind: &'b [u8] = shortstr,
        passive: bool = bit,
        durable: bool = bit,
        auto_delete: bool = bit,
        internal: bool = bit,
        no_wait: bool = bit,
        arguments: FieldTable<'b> = table,
    }
    /// Exchange declared.
    ExchangeDeclareOk = (40, 11, "exchange.declare-ok") {}
    /// Deletes an exchange (`ferry conform` removes what its cases declared).
    ExchangeDelete<'b> = (40, 20, "exchange.delete") {
        ticket: u16 = short,
        exchange: &'b [u8] = shortstr,
        if_unused: bool = bit,
        no_wait: bool = bit,
    }
    /// Exchange deleted.
    ExchangeDeleteOk = (40, 21, "exchange.delete-ok") {}

    /// Declares (or, passive, checks) a queue.
    QueueDeclare<'b> = (50, 10, "queue.declare") {
        ticket: u16 = short,
        queue: &'b [u8] = shortstr,
        passive: bool = bit,
        durable: bool = bit,
        exclusive: bool = bit,
        auto_delete: bool = bit,
        no_wait: bool = bit,
        arguments: FieldTable<'b> = table,
    }
    /// Queue declared, with its name and counts.
    QueueDeclareOk<'b> = (50, 11, "queue.declare-ok") {
        queue: &'b [u8] = shortstr,
        message_count: u32 = long,
        consumer_count: u32 = long,
    }
    /// Binds a queue to an exchange.
    QueueBind<'b> = (50, 20, "queue.bind") {
        ticket: u16 = short,
        queue: &'b [u8] = shortstr,
        exchange: &'b [u8] = shortstr,
        routing_key: &'b [u8] = shortstr,
        no_wait: bool = bit,
        arguments: FieldTable<'b> = table,
    }
    /// Queue bound.
    QueueBindOk = (50, 21, "queue.bind-ok") {}
    /// Empties a queue.
    QueuePurge<'b> = (50, 30, "queue.purge") {
        ticket: u16 = short,
        queue: &'b [u8] = shortstr,
        no_wait: bool = bit,
    }
    /// Queue purged, with how many messages it dropped.
    QueuePurgeOk = (50, 31, "queue.purge-ok") {
        message_count: u32 = long,
    }
    /// Deletes a queue; its consumers get basic.cancel when they asked for
    /// `consumer_cancel_notify`.
    QueueDelete<'b> = (50, 40, "queue.delete") {
        ticket: u16 = short,
        queue: &'b [u8] = shortstr,
        if_unused: bool = bit,
        if_empty: bool = bit,
        no_wait: bool = bit,
    }
    /// Queue deleted, with how many messages it held.
    QueueDeleteOk = (50, 41, "queue.delete-ok") {
        message_count: u32 = long,
    }

    /// Sets the prefetch window (RabbitMQ refuses a non-zero prefetch_size).
    BasicQos = (60, 10, "basic.qos") {
        prefetch_size: u32 = long,
        prefetch_count: u16 = short,
        global: bool = bit,
    }
    /// Prefetch window set.
    BasicQosOk = (60, 11, "basic.qos-ok") {}
    /// Starts a consumer.
    BasicConsume<'b> = (60, 20, "basic.consume") {
        ticket: u16 = short,
        queue: &'b [u8] = shortstr,
        consumer_tag: &'b [u8] = shortstr,
        no_local: bool = bit,
        no_ack: bool = bit,
        exclusive: bool = bit,
        no_wait: bool = bit,
        arguments: FieldTable<'b> = table,
    }
    /// Consumer started.
    BasicConsumeOk<'b> = (60, 21, "basic.consume-ok") {
        consumer_tag: &'b [u8] = shortstr,
    }
    /// Cancels a consumer (also sent by RabbitMQ, with no_wait, when the queue goes away).
    BasicCancel<'b> = (60, 30, "basic.cancel") {
        consumer_tag: &'b [u8] = shortstr,
        no_wait: bool = bit,
    }
    /// Consumer cancelled.
    BasicCancelOk<'b> = (60, 31, "basic.cancel-ok") {
        consumer_tag: &'b [u8] = shortstr,
    }
    /// Publishes a message; a content header and body frames follow.
    BasicPublish<'b> = (60, 40, "basic.publish") {
        ticket: u16 = short,
        exchange: &'b [u8] = shortstr,
        routing_key: &'b [u8] = shortstr,
        mandatory: bool = bit,
        immediate: bool = bit,
    }
    /// Returns an unroutable mandatory message; content follows.
    BasicReturn<'b> = (60, 50, "basic.return") {
        reply_code: u16 = short,
        reply_text: &'b [u8] = shortstr,
        exchange: &'b [u8] = shortstr,
        routing_key: &'b [u8] = shortstr,
    }
    /// Delivers a message to a consumer; content follows.
    BasicDeliver<'b> = (60, 60, "basic.deliver") {
        consumer_tag: &'b [u8] = shortstr,
        delivery_tag: u64 = longlong,
        redelivered: bool = bit,
        exchange: &'b [u8] = shortstr,
        routing_key: &'b [u8] = shortstr,
    }
    /// Polls a queue for one message.
    BasicGet<'b> = (60, 70, "basic.get") {
        ticket: u16 = short,
        queue: &'b [u8] = shortstr,
        no_ack: bool = bit,
    }
    /// A polled message; content follows.
    BasicGetOk<'b> = (60, 71, "basic.get-ok") {
        delivery_tag: u64 = longlong,
        redelivered: bool = bit,
        exchange: &'b [u8] = shortstr,
        routing_key: &'b [u8] = shortstr,
        message_count: u32 = long,
    }
    /// The polled queue was empty.
    BasicGetEmpty<'b> = (60, 72, "basic.get-empty") {
        cluster_id: &'b [u8] = shortstr,
    }
    /// Acknowledges one delivery (or, multiple, all up to and including the tag); also
    /// a publisher confirm from the server.
    BasicAck = (60, 80, "basic.ack") {
        delivery_tag: u64 = longlong,
        multiple: bool = bit,
    }
    /// Rejects one delivery.
    BasicReject = (60, 90, "basic.reject") {
        delivery_tag: u64 = longlong,
        requeue: bool = bit,
    }
    /// Redelivery request confirmed.
    BasicRecoverOk = (60, 111, "basic.recover-ok") {}
    /// RabbitMQ extension: negative acknowledgement (also a publisher nack).
    BasicNack = (60, 120, "basic.nack") {
        delivery_tag: u64 = longlong,
        multiple: bool = bit,
        requeue: bool = bit,
    }

    /// RabbitMQ extension: puts the channel in publisher-confirm mode.
    ConfirmSelect = (85, 10, "confirm.select") {
        no_wait: bool = bit,
    }
    /// Confirm mode on.
    ConfirmSelectOk = (85, 11, "confirm.select-ok") {}
}

impl Method<'_> {
    /// True for the methods a content header and body frames follow (spec §4.2.6):
    /// basic.publish, basic.return, basic.deliver and basic.get-ok.
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Method::BasicPublish(_)
                | Method::BasicReturn(_)
                | Method::BasicDeliver(_)
                | Method::BasicGetOk(_)
        )
    }
}
