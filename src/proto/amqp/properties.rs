//! Content headers and the basic class's 14 properties (spec §4.2.6.1 and the basic
//! class's property list).
//!
//! # Layout
//! ```text
//! class-id u16 | weight u16 (0) | body-size u64 | property-flags u16 | present properties
//! ```
//! Flag bit 15 (the most significant) is content-type, then content-encoding, headers,
//! delivery-mode, priority, correlation-id, reply-to, expiration, message-id, timestamp,
//! type, user-id, app-id, cluster-id (bit 2). Bit 0 would announce a further flags word:
//! basic has no 15th property, so it is refused rather than followed; bit 1 is unused and
//! ignored, as RabbitMQ ignores it.

use super::table::FieldTable;
use super::wire::{Reader, Writer};
use super::AmqpError;

/// The basic class id (60): the only class RabbitMQ sends content for.
pub const CLASS_BASIC: u16 = 60;

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
const CONTINUATION: u16 = 1;

/// The properties of a basic-class message; absent ones are `None`. Strings borrow
/// from the frame they were decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BasicProperties<'b> {
    /// MIME content type (`content_type`).
    pub content_type: Option<&'b [u8]>,
    /// MIME content encoding.
    pub content_encoding: Option<&'b [u8]>,
    /// Application headers (ferry's retry count travels here as `x-ferry-attempt`).
    pub headers: Option<FieldTable<'b>>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Message priority, 0 to 9.
    pub priority: Option<u8>,
    /// Application correlation identifier.
    pub correlation_id: Option<&'b [u8]>,
    /// Address to reply to.
    pub reply_to: Option<&'b [u8]>,
    /// Per-message TTL in milliseconds, as a decimal string.
    pub expiration: Option<&'b [u8]>,
    /// Application message identifier.
    pub message_id: Option<&'b [u8]>,
    /// Message timestamp, POSIX seconds.
    pub timestamp: Option<u64>,
    /// Message type name.
    pub kind: Option<&'b [u8]>,
    /// Creating user id (RabbitMQ validates it against the connection's user).
    pub user_id: Option<&'b [u8]>,
    /// Creating application id.
    pub app_id: Option<&'b [u8]>,
    /// Deprecated cluster id.
    pub cluster_id: Option<&'b [u8]>,
}

/// A decoded content header frame payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentHeader<'b> {
    /// Class of the content-bearing method (60 for basic).
    pub class_id: u16,
    /// Unused by 0-9-1; must be 0 (kept so a re-encode is faithful).
    pub weight: u16,
    /// Total body size that the following body frames carry.
    pub body_size: u64,
    /// The message properties.
    pub properties: BasicProperties<'b>,
}

impl<'b> ContentHeader<'b> {
    /// Decodes a header frame's whole payload.
    pub fn decode(payload: &'b [u8]) -> Result<Self, AmqpError> {
        let mut r = Reader::new(payload);
        let class_id = r.short()?;
        let weight = r.short()?;
        let body_size = r.longlong()?;
        let properties = BasicProperties::decode_from(&mut r)?;
        if !r.is_empty() {
            return Err(AmqpError::TrailingBytes("content header"));
        }
        Ok(ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        })
    }

    /// Appends the header payload (not the frame envelope).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmqpError> {
        out.extend_from_slice(&self.class_id.to_be_bytes());
        out.extend_from_slice(&self.weight.to_be_bytes());
        out.extend_from_slice(&self.body_size.to_be_bytes());
        self.properties.encode(out)
    }
}

impl<'b> BasicProperties<'b> {
    /// Decodes a property-flags word and the properties it announces.
    pub fn decode(bytes: &'b [u8]) -> Result<Self, AmqpError> {
        let mut r = Reader::new(bytes);
        let props = Self::decode_from(&mut r)?;
        if !r.is_empty() {
            return Err(AmqpError::TrailingBytes("properties"));
        }
        Ok(props)
    }

    pub(crate) fn decode_from(r: &mut Reader<'b>) -> Result<Self, AmqpError> {
        let flags = r.short()?;
        if flags & CONTINUATION != 0 {
            return Err(AmqpError::PropertyFlagsContinuation);
        }
        // Most messages carry a few properties: test each flag, read only what is there.
        let mut p = BasicProperties::default();
        if flags & CONTENT_TYPE != 0 {
            p.content_type = Some(r.shortstr()?);
        }
        if flags & CONTENT_ENCODING != 0 {
            p.content_encoding = Some(r.shortstr()?);
        }
        if flags & HEADERS != 0 {
            p.headers = Some(r.table()?);
        }
        if flags & DELIVERY_MODE != 0 {
            p.delivery_mode = Some(r.octet()?);
        }
        if flags & PRIORITY != 0 {
            p.priority = Some(r.octet()?);
        }
        if flags & CORRELATION_ID != 0 {
            p.correlation_id = Some(r.shortstr()?);
        }
        if flags & REPLY_TO != 0 {
            p.reply_to = Some(r.shortstr()?);
        }
        if flags & EXPIRATION != 0 {
            p.expiration = Some(r.shortstr()?);
        }
        if flags & MESSAGE_ID != 0 {
            p.message_id = Some(r.shortstr()?);
        }
        if flags & TIMESTAMP != 0 {
            p.timestamp = Some(r.longlong()?);
        }
        if flags & TYPE != 0 {
            p.kind = Some(r.shortstr()?);
        }
        if flags & USER_ID != 0 {
            p.user_id = Some(r.shortstr()?);
        }
        if flags & APP_ID != 0 {
            p.app_id = Some(r.shortstr()?);
        }
        if flags & CLUSTER_ID != 0 {
            p.cluster_id = Some(r.shortstr()?);
        }
        Ok(p)
    }

    /// The property-flags word these properties encode to.
    pub fn flags(&self) -> u16 {
        let mut flags = 0;
        let mut set = |present: bool, bit: u16| {
            if present {
                flags |= bit;
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), TYPE);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        flags
    }

    /// Appends the flags word and the present properties. On error (a string longer
    /// than 255 bytes) `out` is left as it was.
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
        w.short(self.flags())?;
        if let Some(v) = self.content_type {
            w.shortstr(v)?;
        }
        if let Some(v) = self.content_encoding {
            w.shortstr(v)?;
        }
        if let Some(v) = self.headers {
            w.table(v)?;
        }
        if let Some(v) = self.delivery_mode {
            w.octet(v)?;
        }
        if let Some(v) = self.priority {
            w.octet(v)?;
        }
        for v in [
            self.correlation_id,
            self.reply_to,
            self.expiration,
            self.message_id,
        ]
        .into_iter()
        .flatten()
        {
            w.shortstr(v)?;
        }
        if let Some(v) = self.timestamp {
            w.longlong(v)?;
        }
        for v in [self.kind, self.user_id, self.app_id, self.cluster_id]
            .into_iter()
            .flatten()
        {
            w.shortstr(v)?;
        }
        Ok(())
    }
}
