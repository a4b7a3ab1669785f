//! Errors of the AMQP session, split by who is at fault (`docs/ARCHITECTURE.md` "Errors by
//! cause"): [`SessionError`] ends a session (the peer misbehaved, refused us, closed, or
//! went silent; or a local value could not be encoded), [`CommandError`] refuses one
//! command of the caller and leaves the session as it was.

use std::fmt;

use super::event::DeliveryTag;
use crate::proto::amqp::AmqpError;

/// Why a session ended (other than by its own [`close`](super::Session::close)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The peer sent bytes that are not AMQP 0-9-1 (a malformed frame, an unknown
    /// method, a frame over frame_max, a server refusing our protocol version, …).
    Codec(AmqpError),
    /// A well-formed method arrived that the session does not expect in its state.
    UnexpectedMethod {
        /// The method's spec name, e.g. `"basic.deliver"`.
        method: &'static str,
        /// The channel it arrived on.
        channel: u16,
        /// The session state it arrived in, e.g. `"awaiting-tune"`.
        state: &'static str,
    },
    /// A content header or body frame arrived where none belongs.
    UnexpectedContent {
        /// `"content header"` or `"body frame"`.
        frame: &'static str,
        /// The channel it arrived on.
        channel: u16,
    },
    /// A frame arrived on a channel the session never opened.
    UnknownChannel(u16),
    /// A delivery tag that does not follow the previous one (tags grow by channel).
    DeliveryTagOutOfOrder(u64),
    /// A publisher confirm for a sequence number that is not awaiting one.
    UnknownConfirm(u64),
    /// The server cannot serve this client (no PLAIN, no en_US, not 0-9, limits too low).
    Incompatible(&'static str),
    /// The broker refused the credentials (connection.close 403 ACCESS_REFUSED answering
    /// start-ok, as RabbitMQ does for clients advertising `authentication_failure_close`).
    AuthFailed {
        /// The broker's reply text.
        text: String,
    },
    /// [`DeclareMode::CheckOnly`](super::DeclareMode::CheckOnly) and the queue does not
    /// exist (404 NOT_FOUND on the passive declare).
    QueueMissing {
        /// The queue.
        queue: String,
        /// The broker's reply text.
        text: String,
    },
    /// A declare was refused because the existing queue differs (406 PRECONDITION_FAILED).
    PreconditionFailed {
        /// The channel (1 consumer, 2 publisher: a retry queue).
        channel: u16,
        /// The broker's reply text, naming the differing argument.
        text: String,
    },
    /// The broker closed a channel (an unknown delivery tag, `consumer_timeout`, a
    /// publish to a missing exchange, …); the session closes the connection after it.
    ChannelClosed {
        /// The channel (1 consumer, 2 publisher).
        channel: u16,
        /// Reply code (e.g. 406, 404).
        code: u16,
        /// The broker's reply text.
        text: String,
    },
    /// The broker closed the connection (320 CONNECTION_FORCED on shutdown or
    /// `rabbitmqctl close_connection`, 530 NOT_ALLOWED for a vhost, 501 FRAME_ERROR, …).
    ServerClosed {
        /// Reply code.
        code: u16,
        /// The broker's reply text.
        text: String,
    },
    /// Nothing arrived for twice the negotiated heartbeat.
    HeartbeatTimeout,
    /// The handshake (up to consume-ok) did not finish within
    /// [`HANDSHAKE_TIMEOUT`](super::HANDSHAKE_TIMEOUT).
    HandshakeTimeout {
        /// The state it stalled in.
        state: &'static str,
    },
    /// The peer closed the TCP connection without a connection.close.
    ConnectionLost {
        /// The state the session was in.
        state: &'static str,
    },
    /// A value of ours could not be encoded (a start-ok over the pre-tune frame size…).
    Encode(AmqpError),
}

impl From<AmqpError> for SessionError {
    fn from(e: AmqpError) -> Self {
        SessionError::Codec(e)
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Codec(e) => write!(f, "protocol error from the broker: {e}"),
            SessionError::UnexpectedMethod {
                method,
                channel,
                state,
            } => {
                write!(f, "unexpected {method} on channel {channel} while {state}")
            }
            SessionError::UnexpectedContent { frame, channel } => {
                write!(f, "unexpected {frame} on channel {channel}")
            }
            SessionError::UnknownChannel(c) => write!(f, "frame on unopened channel {c}"),
            SessionError::DeliveryTagOutOfOrder(t) => {
                write!(f, "delivery tag {t} does not follow the previous one")
            }
            SessionError::UnknownConfirm(s) => write!(f, "confirm for unknown publish {s}"),
            SessionError::Incompatible(why) => write!(f, "incompatible broker: {why}"),
            SessionError::AuthFailed { text } => write!(f, "authentication failed: {text}"),
            SessionError::QueueMissing { queue, text } => {
                write!(f, "queue {queue:?} does not exist: {text}")
            }
            SessionError::PreconditionFailed { channel, text } => {
                write!(f, "declare refused on channel {channel}: {text}")
            }
            SessionError::ChannelClosed {
                channel,
                code,
                text,
            } => {
                write!(f, "broker closed channel {channel}: {code} {text}")
            }
            SessionError::ServerClosed { code, text } => {
                write!(f, "broker closed the connection: {code} {text}")
            }
            SessionError::HeartbeatTimeout => write!(f, "broker silent for two heartbeats"),
            SessionError::HandshakeTimeout { state } => {
                write!(f, "handshake timed out while {state}")
            }
            SessionError::ConnectionLost { state } => {
                write!(f, "connection lost while {state}")
            }
            SessionError::Encode(e) => write!(f, "could not encode a frame: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// Why a command was refused; nothing was sent and the session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The tag is not an unsettled delivery of this session (settled already, never
    /// delivered, or from an earlier connection). Sending it would make RabbitMQ close
    /// the channel with 406 PRECONDITION_FAILED.
    UnknownTag(DeliveryTag),
    /// The command needs a state the session is not in (e.g. cancel before consume-ok).
    NotReady {
        /// The session's state.
        state: &'static str,
    },
    /// The session was configured without a publisher channel.
    NoPublisher,
    /// The session is closing or closed.
    Closed,
    /// An argument could not be encoded (a name over 255 bytes, …).
    Encode(AmqpError),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::UnknownTag(t) => write!(f, "delivery tag {} is not unacked", t.0),
            CommandError::NotReady { state } => write!(f, "not possible while {state}"),
            CommandError::NoPublisher => write!(f, "session has no publisher channel"),
            CommandError::Closed => write!(f, "session is closed"),
            CommandError::Encode(e) => write!(f, "could not encode: {e}"),
        }
    }
}

impl std::error::Error for CommandError {}
