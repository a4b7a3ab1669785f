//! Sans-IO codecs for the protocols ferry speaks.
//!
//! Every decoder here follows one contract (`docs/ARCHITECTURE.md` "Codecs answer three
//! ways" and "Limits before allocation"):
//!
//! - it is handed a byte slice (usually a connection's read buffer) and answers with
//!   [`Status::Partial`] when the bytes end before a whole frame does (never an error),
//!   [`Status::Complete`] with the frame and the number of bytes it used, or a
//!   protocol-specific error enum when the bytes cannot be a valid frame;
//! - decoded frames borrow from the input (`&'buf [u8]`); nothing is copied that need not
//!   outlive the buffer;
//! - every length read from the wire is checked against a limit before anything is
//!   allocated or waited for, so a peer cannot make ferry buffer without bound;
//! - no codec touches a socket, a clock or a logger, and no input can make one panic.
//!
//! # Layout
//! - [`resp`]: Redis serialization protocol, RESP2 and RESP3, client and server side.
//! - [`amqp`]: AMQP 0-9-1 frames, methods, field tables and content, as RabbitMQ speaks it.
//! - [`fastcgi`]: FastCGI 1.0 records, the client (ferry → php-fpm) and responder roles.
//! - [`form`]: JSON message bodies encoded as PHP's `http_build_query` would.
//! - [`x509`]: the subject and expiry of a certificate, for `ferry check`.

// Peer input reaches every function below: none may panic on it. Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod amqp;
pub mod fastcgi;
pub mod form;
pub mod resp;
pub mod x509;

/// What a decoder found in the bytes it was handed.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole frame, and how many bytes of the input it used.
    Complete(T, usize),
    /// The input ends before the frame does: read more bytes and call again.
    Partial,
}

impl<T> Status<T> {
    /// The frame, or `None` when more bytes are needed.
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Status::Complete(frame, used) => Some((frame, used)),
            Status::Partial => None,
        }
    }

    /// True when more bytes are needed.
    pub fn is_partial(&self) -> bool {
        matches!(self, Status::Partial)
    }

    /// Applies `f` to a complete frame, keeping the byte count.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Status<U> {
        match self {
            Status::Complete(frame, used) => Status::Complete(f(frame), used),
            Status::Partial => Status::Partial,
        }
    }
}
