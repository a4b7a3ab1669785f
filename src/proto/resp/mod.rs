//! RESP, the Redis serialization protocol: RESP2 and every RESP3 type, client and server
//! side (`docs/PROTOCOLS.md` "RESP and Redis"); ferry uses it to subscribe to Redis
//! pub/sub (the client side) and to serve the RESP endpoint (the server side).
//!
//! - Decoding is incremental and resumable ([`Decoder`]): a frame arriving in many small
//!   reads is validated once, item by item. Frames borrow from the read buffer; aggregates
//!   are lazy views ([`Aggregate`]) so decoding allocates nothing.
//! - Every length and count is checked against [`Limits`] when its header is read, before
//!   waiting for the bytes it announces; nesting is tracked on a fixed stack, so a nesting
//!   bomb fails at `max_depth` instead of exhausting memory or the call stack.
//! - Attributes (`|`) are surfaced as a frame of their own, before the reply they annotate:
//!   callers that do not use them decode the next frame. An attribute *inside* an
//!   aggregate is refused ([`RespError::NestedAttribute`]): it would not count as an
//!   element, so the aggregate's count and its frames would disagree, and Redis never sends
//!   one (it sends no attributes at all outside `DEBUG PROTOCOL attrib`).
//! - Streamed RESP3 types (`$?`, `*?`) are refused; Redis never sends them.
//! - [`PubSubEvent`] reads subscribe confirmations and messages from RESP2 arrays and RESP3
//!   pushes alike.
//!
//! # Layout
//! - `error.rs`: [`RespError`].
//! - `head.rs`: the grammar of one item, shared by the decoder and the aggregate iterators.
//! - `decode.rs`: [`Limits`], [`Decoder`], [`decode`].
//! - `frame.rs`: [`Frame`], [`Aggregate`] and its iterators.
//! - `encode.rs`: [`encode_command`], the reply encoders, [`Frame::encode`].
//! - `pubsub.rs`: [`PubSubEvent`].
//! - `invariants.rs`: the fuzz target's assertions (feature `invariants` or tests only).
//! - `subscriber/`: [`Subscriber`], the pub/sub subscriber session built on all of the above.
//! - `sentinel.rs`: the Redis Sentinel conversations (ask for the master, follow its
//!   switches, confirm `ROLE`).
//! - `server/`: the server side — command reader, per-client session, glob matching —
//!   for the RESP endpoint.

mod decode;
mod encode;
mod error;
mod frame;
mod head;
#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
mod pubsub;
pub mod sentinel;
pub mod server;
pub mod stream;
pub mod subscriber;

pub use decode::{decode, Decoder, Limits, MAX_DEPTH};
pub use encode::{
    array_header, attribute_header, big_number, boolean, bulk_error, bulk_string, double,
    encode_command, error, format_double, integer, map_header, null, null_array, push_header,
    set_header, simple_string, verbatim, Version,
};
pub use error::RespError;
pub use frame::{Aggregate, AggregateKind, Elements, Frame, Pairs};
pub use pubsub::{PubSubError, PubSubEvent, SubscribeKind};
pub use subscriber::{
    DropReason, Dropped, Message, Subscriber, SubscriberConfig, SubscriberError, SubscriberEvent,
    Subscription, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_PONG_TIMEOUT, MAX_ERROR_TEXT,
};
