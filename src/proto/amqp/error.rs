//! Errors of the AMQP 0-9-1 codec.
//!
//! One small `Copy` enum, split by cause: framing (the frame envelope of spec §4.2.3),
//! method and argument encoding (§4.2.5), field tables (§4.2.5.5 with RabbitMQ's errata),
//! content (§4.2.6) and content assembly. Every variant says what was wrong and, where
//! it helps the operator, the offending value; none carries heap data.

use std::fmt;

/// Why bytes could not be decoded (or a value could not be encoded) as AMQP 0-9-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmqpError {
    /// The server answered our protocol header with its own: it does not speak 0-9-1 and
    /// wants the version given here (spec §4.2.2). The server closes the socket next.
    ProtocolVersionMismatch {
        /// Protocol id octet the server sent (0 for AMQP 0-9-1 style headers).
        protocol_id: u8,
        /// Major version the server wants.
        major: u8,
        /// Minor version the server wants.
        minor: u8,
        /// Revision the server wants.
        revision: u8,
    },
    /// The frame type octet is none of method (1), header (2), body (3), heartbeat (8).
    UnknownFrameType(u8),
    /// The frame's total size (payload + 8 octets of envelope) exceeds the negotiated
    /// `frame_max`; RabbitMQ answers this with 501 FRAME_ERROR.
    FrameTooLarge {
        /// Payload size announced by the frame header (or about to be encoded).
        size: u32,
        /// The negotiated maximum total frame size.
        frame_max: u32,
    },
    /// The octet after the payload is not the frame-end octet 0xCE.
    BadFrameEnd(u8),
    /// A heartbeat frame arrived on a channel other than 0.
    HeartbeatOnChannel(u16),
    /// A heartbeat frame announced a non-empty payload.
    HeartbeatWithPayload(u32),
    /// A method frame's payload is shorter than its class and method ids (4 octets).
    MethodTooShort(usize),
    /// A class/method id pair this codec does not know.
    UnknownMethod {
        /// Class id.
        class: u16,
        /// Method id within the class.
        method: u16,
    },
    /// A value runs past the end of its enclosing payload, table or array; the context
    /// names the AMQP type being read (`"shortstr"`, `"longstr"`, `"table"`, ...).
    Truncated(&'static str),
    /// Bytes remain after the last argument or property; the context names what was
    /// being decoded (`"method"`, `"content header"`).
    TrailingBytes(&'static str),
    /// A field-table or field-array value carries a type octet RabbitMQ does not define.
    UnknownFieldType(u8),
    /// Tables and arrays are nested deeper than [`MAX_TABLE_DEPTH`](super::MAX_TABLE_DEPTH).
    TableTooDeep,
    /// The property-flags word has its continuation bit set: basic has only 14 properties,
    /// so a second flags word is never legitimate and is refused rather than followed.
    PropertyFlagsContinuation,
    /// A content header names a class other than the content-bearing method's (or not basic).
    ContentClassMismatch {
        /// Class id of the method that started the content.
        expected: u16,
        /// Class id the content header carries.
        found: u16,
    },
    /// A content header announces a body larger than the configured maximum message size.
    BodyTooLarge {
        /// Body size announced by the header.
        size: u64,
        /// Configured maximum.
        max: u64,
    },
    /// Body frames carry more bytes than the content header announced.
    BodyOverrun {
        /// Body size announced by the header.
        expected: u64,
        /// Bytes received including the offending frame.
        received: u64,
    },
    /// A frame arrived out of order for content assembly (spec §4.2.6: method, header,
    /// then body frames, nothing else on that channel in between). The context names it.
    UnexpectedFrame(&'static str),
    /// Encoding: a shortstr (or a table key) is longer than 255 octets.
    ShortStrTooLong(usize),
    /// Encoding: a longstr, table or array is longer than `u32::MAX` octets.
    LongStrTooLong,
    /// Encoding: `frame_max` is too small to carry even one payload octet.
    FrameMaxTooSmall(u32),
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AmqpError::ProtocolVersionMismatch { protocol_id, major, minor, revision } => write!(
                f,
                "server refused AMQP 0-9-1 and wants protocol {protocol_id} version {major}-{minor}-{revision}"
            ),
            AmqpError::UnknownFrameType(t) => write!(f, "unknown frame type {t}"),
            AmqpError::FrameTooLarge { size, frame_max } => write!(
                f,
                "frame payload of {size} bytes exceeds frame_max {frame_max} (minus 8 bytes of envelope)"
            ),
            AmqpError::BadFrameEnd(b) => write!(f, "frame end octet is {b:#04x}, expected 0xce"),
            AmqpError::HeartbeatOnChannel(c) => write!(f, "heartbeat frame on channel {c}"),
            AmqpError::HeartbeatWithPayload(n) => write!(f, "heartbeat frame with {n} payload bytes"),
            AmqpError::MethodTooShort(n) => write!(f, "method payload of {n} bytes has no class and method id"),
            AmqpError::UnknownMethod { class, method } => write!(f, "unknown method {class}.{method}"),
            AmqpError::Truncated(what) => write!(f, "{what} runs past the end of its payload"),
            AmqpError::TrailingBytes(what) => write!(f, "trailing bytes after {what}"),
            AmqpError::UnknownFieldType(t) => write!(f, "unknown field value type octet {t:#04x}"),
            AmqpError::TableTooDeep => write!(f, "field tables nested deeper than {}", super::MAX_TABLE_DEPTH),
            AmqpError::PropertyFlagsContinuation => write!(f, "property flags continuation bit set"),
            AmqpError::ContentClassMismatch { expected, found } => {
                write!(f, "content header for class {found}, expected class {expected}")
            }
            AmqpError::BodyTooLarge { size, max } => {
                write!(f, "message body of {size} bytes exceeds the limit of {max}")
            }
            AmqpError::BodyOverrun { expected, received } => {
                write!(f, "body frames carry {received} bytes, header announced {expected}")
            }
            AmqpError::UnexpectedFrame(what) => write!(f, "unexpected {what} during content assembly"),
            AmqpError::ShortStrTooLong(n) => write!(f, "shortstr of {n} bytes exceeds 255"),
            AmqpError::LongStrTooLong => write!(f, "longstr, table or array exceeds u32::MAX bytes"),
            AmqpError::FrameMaxTooSmall(m) => write!(f, "frame_max {m} cannot carry a payload"),
        }
    }
}

impl std::error::Error for AmqpError {}
