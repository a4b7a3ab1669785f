//! Why a byte sequence cannot be RESP: one `Copy` variant per cause, so callers (and the
//! hostile-input tests) can tell a lying length from a broken line ending.

use std::fmt;

/// The peer sent bytes that are not a valid RESP2/RESP3 frame, or that break a [`Limits`]
/// bound. Every variant means the connection's byte stream can no longer be trusted.
///
/// [`Limits`]: super::Limits
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a frame is not one of the RESP2/RESP3 type bytes.
    UnknownType(u8),
    /// A line ran past its cap (simple string/error, number, header) without `\r\n`.
    LineTooLong,
    /// A `\r` not followed by `\n` at the end of a line.
    BadLineEnd,
    /// An integer (`:`) or a length/count header is not a decimal number.
    BadInteger,
    /// An integer does not fit in a signed 64-bit value.
    IntegerOverflow,
    /// A length or count is negative but not the RESP2 null `-1`, or `-1` where null is
    /// not allowed (bulk errors, verbatim strings, RESP3 aggregates).
    NegativeLength,
    /// A streamed RESP3 string or aggregate (`$?`, `*?`); Redis never sends them.
    StreamedNotSupported,
    /// A bulk string (or bulk error, verbatim string) longer than `Limits::max_bulk_len`.
    BulkTooLong,
    /// An aggregate with more elements than `Limits::max_elements` (a map counts two per pair).
    TooManyElements,
    /// Aggregates nested deeper than `Limits::max_depth`.
    TooDeep,
    /// A bulk payload not followed by `\r\n`: its length lied.
    BadBulkEnd,
    /// A double (`,`) that is not a number, `inf`, `-inf` or `nan`.
    BadDouble,
    /// A RESP3 null (`_`) with content before its `\r\n`.
    BadNull,
    /// A boolean (`#`) other than `t` or `f`.
    BadBoolean,
    /// A big number (`(`) that is not an optionally signed run of digits.
    BadBigNumber,
    /// A verbatim string (`=`) shorter than four bytes or without `:` after its format.
    BadVerbatim,
    /// An attribute (`|`) inside an aggregate; see the module docs for why this is refused.
    NestedAttribute,
    /// The resumable decoder was handed a buffer shorter than the bytes it already
    /// validated: the caller consumed or dropped bytes in the middle of a frame.
    BufferShrunk,
    /// A frame that passed validation could not be read back. Never expected: it would be
    /// a decoder bug, reported as an error so the connection is closed rather than stalled.
    Inconsistent,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(byte) => write!(f, "unknown RESP type byte 0x{byte:02x}"),
            RespError::LineTooLong => f.write_str("RESP line too long without CRLF"),
            RespError::BadLineEnd => f.write_str("RESP line: CR not followed by LF"),
            RespError::BadInteger => f.write_str("RESP integer or length is not a number"),
            RespError::IntegerOverflow => f.write_str("RESP integer overflows 64 bits"),
            RespError::NegativeLength => f.write_str("RESP length is negative"),
            RespError::StreamedNotSupported => f.write_str("streamed RESP3 types unsupported"),
            RespError::BulkTooLong => f.write_str("RESP bulk length above the limit"),
            RespError::TooManyElements => f.write_str("RESP aggregate count above the limit"),
            RespError::TooDeep => f.write_str("RESP aggregates nested above the limit"),
            RespError::BadBulkEnd => f.write_str("RESP bulk payload not followed by CRLF"),
            RespError::BadDouble => f.write_str("RESP3 double is not a number"),
            RespError::BadNull => f.write_str("RESP3 null has content"),
            RespError::BadBoolean => f.write_str("RESP3 boolean is neither t nor f"),
            RespError::BadBigNumber => f.write_str("RESP3 big number is not digits"),
            RespError::BadVerbatim => f.write_str("RESP3 verbatim string lacks its format"),
            RespError::NestedAttribute => f.write_str("RESP3 attribute inside an aggregate"),
            RespError::BufferShrunk => f.write_str("RESP decoder resumed on a shorter buffer"),
            RespError::Inconsistent => f.write_str("RESP decoder could not re-read a frame"),
        }
    }
}

impl std::error::Error for RespError {}
