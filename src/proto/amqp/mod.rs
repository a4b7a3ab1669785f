//! AMQP 0-9-1 as RabbitMQ speaks it: the protocol header, frames, methods, field tables,
//! content headers with the basic properties, and content reassembly — sans-IO.
//!
//! Spec: AMQP 0-9-1 (§4.2 "Wire-level format"), method definitions from
//! `amqp-rabbitmq-0.9.1.json` (rabbitmq/rabbitmq-codegen), field-table types from
//! RabbitMQ's errata (rabbit_binary_parser), frame-size rule from rabbit_reader.
//!
//! # Decoding a stream
//! ```
//! use ferry::proto::amqp::{decode_frame, Assembled, ContentAssembler, FramePayload, Method};
//! use ferry::proto::Status;
//!
//! # fn deliver(_body: &[u8]) {}
//! # fn refuse() {}
//! # fn run(buf: &[u8]) -> Result<(), ferry::proto::amqp::AmqpError> {
//! let mut channel_1 = ContentAssembler::new(16 << 20); // one per channel
//! let mut pos = 0;
//! while let Status::Complete(frame, used) = decode_frame(&buf[pos..], 131_072)? {
//!     pos += used;
//!     let assembled = match frame.payload {
//!         FramePayload::Method(payload) => {
//!             channel_1.on_method(&Method::decode(payload)?)?;
//!             Assembled::Pending
//!         }
//!         // An empty body completes at the header.
//!         FramePayload::Header(header) => channel_1.on_header(&header)?,
//!         // One bad message, not a bad connection: skip its body, refuse it.
//!         FramePayload::BadHeader(bad) => channel_1.discard(bad.body_size)?,
//!         FramePayload::Body(chunk) => channel_1.on_body(chunk)?,
//!         FramePayload::Heartbeat => Assembled::Pending,
//!     };
//!     match assembled {
//!         Assembled::Complete(body) => deliver(body),
//!         Assembled::Discarded => refuse(),
//!         Assembled::Pending => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`frame`] — protocol header, frame envelope, frame encoders.
//! - [`method`] — the [`Method`] enum and one struct per method.
//! - [`table`] — field tables and arrays (borrowed, validated views; a builder).
//! - [`properties`] — content header and [`BasicProperties`].
//! - [`content`] — body splitting and the per-channel [`ContentAssembler`].
//! - [`error`] — [`AmqpError`].
//! - [`session`] — the client [`Session`]: handshake, consumer, publisher confirms.

pub mod content;
pub mod error;
pub mod frame;
#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
pub mod method;
pub mod properties;
pub mod session;
pub mod table;
mod wire;

pub use content::{encode_content, Assembled, ContentAssembler};
pub use error::AmqpError;
pub use frame::{
    decode_frame, effective_frame_max, encode_body_frame, encode_header_frame, encode_heartbeat,
    encode_method_frame, encode_protocol_header, BadContentHeader, Frame, FramePayload,
    FRAME_MIN_SIZE, PROTOCOL_HEADER,
};
pub use method::*;
pub use properties::{BasicProperties, ContentHeader, CLASS_BASIC};
pub use session::{
    CommandError, DeclareMode, Delivery, DeliveryTag, Event, HeaderValue, MessageProperties,
    PublishSeq, QueueType, Session, SessionConfig, SessionError,
};
pub use table::{FieldArray, FieldTable, FieldValue, TableBuilder, MAX_TABLE_DEPTH};
