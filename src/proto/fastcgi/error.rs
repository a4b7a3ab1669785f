//! Errors of the FastCGI codecs, split by cause.
//!
//! Every variant is `Copy` and carries what the codec was looking at, so the reactor can
//! log it (and `ferry responder` can report a client's mistake on stderr) without the codec
//! allocating. Variants fall in four groups: the peer broke the record layer, the peer
//! sent a record that is wrong at this point of the exchange, the CGI header block is
//! malformed, or the caller asked to encode something FastCGI cannot carry.

use std::fmt;

use super::record::RecordType;

/// Everything that can go wrong while decoding or encoding FastCGI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcgiError {
    // ---- record layer (peer sent bytes that are not FastCGI 1.0) ----
    /// The record header's version byte is not 1.
    UnsupportedVersion(u8),
    /// A record of this type must have a fixed content length and does not.
    BadContentLength {
        /// The record's type.
        record_type: RecordType,
        /// The content length its header gave.
        length: u16,
    },
    /// A name-value pair's length runs past the end of its stream or record.
    NameValueTruncated,
    /// The stream ended (EOF) in the middle of a record.
    TruncatedRecord,

    // ---- exchange (a well-formed record arrived where it must not) ----
    /// A record of a type this side never receives, or one that is out of order.
    UnexpectedRecord {
        /// The record's type.
        record_type: RecordType,
        /// What the decoder was waiting for.
        expected: &'static str,
    },
    /// A record for a request other than the one being decoded.
    WrongRequestId {
        /// The request this decoder follows.
        expected: u16,
        /// The request id the record carried.
        found: u16,
    },
    /// An application record (BEGIN, PARAMS, STDIN…) with request id 0, which the spec
    /// reserves for management records.
    RequestIdZero {
        /// The record's type.
        record_type: RecordType,
    },
    /// A management record (GET_VALUES) with a request id other than 0.
    ManagementRecordWithRequestId {
        /// The record's type.
        record_type: RecordType,
        /// The request id it carried.
        request_id: u16,
    },
    /// BEGIN_REQUEST for a request id that is already active.
    DuplicateBegin {
        /// The request id.
        request_id: u16,
    },
    /// BEGIN_REQUEST for a second request while one is active: this side does not
    /// multiplex (answer END_REQUEST with `CANT_MPX_CONN`).
    CantMultiplex {
        /// The active request.
        active: u16,
        /// The request the peer tried to begin.
        request_id: u16,
    },
    /// BEGIN_REQUEST with a role the spec does not define (answer END_REQUEST with
    /// `UNKNOWN_ROLE`).
    UnknownRole {
        /// The request id.
        request_id: u16,
        /// The role it asked for.
        role: u16,
    },
    /// END_REQUEST with a protocol status the spec does not define.
    UnknownProtocolStatus(u8),
    /// Bytes other than a repeated END_REQUEST after the request ended.
    DataAfterEnd {
        /// The type of the record that followed END_REQUEST.
        record_type: RecordType,
    },
    /// The connection ended (EOF) before END_REQUEST.
    MissingEndRequest,
    /// The PARAMS (or GET_VALUES) stream is larger than the decoder's cap.
    ParamsTooLarge {
        /// The cap in bytes.
        cap: usize,
    },

    // ---- CGI response head ----
    /// More than the cap of STDOUT bytes without the blank line that ends the headers.
    HeadersTooLarge {
        /// The cap in bytes.
        cap: usize,
    },
    /// httparse rejected a header line.
    MalformedHeaders(httparse::Error),
    /// `Status:` is not a three-digit code (100–999) optionally followed by a reason.
    InvalidStatus,
    /// `X-Ferry-Action:` is not `ack`, `retry` or `dead-letter`.
    InvalidFerryAction,
    /// `X-Ferry-Retry-After:` is not a decimal number of seconds.
    InvalidRetryAfter,
    /// A header ferry interprets appears twice.
    DuplicateHeader(&'static str),

    // ---- encoding (the caller asked for something FastCGI cannot carry) ----
    /// Request id 0 is reserved for management records.
    ReservedRequestId,
    /// A name or value longer than 2^31 − 1 bytes.
    NameValueTooLong,
    /// One name-value pair does not fit in a single PARAMS record (0xFFF8 bytes of
    /// content); pairs never span records, as php-fpm requires.
    PairTooLarge {
        /// The pair's encoded size.
        encoded_len: usize,
    },
    /// Content that must fit in one record (GET_VALUES, GET_VALUES_RESULT) is larger than
    /// 65535 bytes.
    ContentTooLarge {
        /// The content's size.
        len: usize,
    },
}

impl fmt::Display for FcgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnsupportedVersion(v) => write!(f, "FastCGI version {v} (only 1 exists)"),
            Self::BadContentLength { record_type, length } => {
                write!(f, "{record_type} record with content length {length}")
            }
            Self::NameValueTruncated => f.write_str("name-value pair runs past its stream"),
            Self::TruncatedRecord => f.write_str("stream ended inside a record"),
            Self::UnexpectedRecord { record_type, expected } => {
                write!(f, "unexpected {record_type} record, expected {expected}")
            }
            Self::WrongRequestId { expected, found } => {
                write!(f, "record for request {found}, expected request {expected}")
            }
            Self::RequestIdZero { record_type } => {
                write!(f, "{record_type} record with the management request id 0")
            }
            Self::ManagementRecordWithRequestId { record_type, request_id } => {
                write!(f, "management record {record_type} with request id {request_id} (must be 0)")
            }
            Self::DuplicateBegin { request_id } => {
                write!(f, "BEGIN_REQUEST for request {request_id}, which is already active")
            }
            Self::CantMultiplex { active, request_id } => write!(
                f,
                "BEGIN_REQUEST for request {request_id} while request {active} is active (no multiplexing)"
            ),
            Self::UnknownRole { request_id, role } => {
                write!(f, "BEGIN_REQUEST for request {request_id} with unknown role {role}")
            }
            Self::UnknownProtocolStatus(s) => write!(f, "END_REQUEST with unknown protocol status {s}"),
            Self::DataAfterEnd { record_type } => {
                write!(f, "{record_type} record after END_REQUEST")
            }
            Self::MissingEndRequest => f.write_str("connection ended before END_REQUEST"),
            Self::ParamsTooLarge { cap } => write!(f, "PARAMS stream larger than {cap} bytes"),
            Self::HeadersTooLarge { cap } => {
                write!(f, "CGI headers larger than {cap} bytes without a blank line")
            }
            Self::MalformedHeaders(e) => write!(f, "malformed CGI header: {e}"),
            Self::InvalidStatus => f.write_str("Status header is not a 3-digit code"),
            Self::InvalidFerryAction => {
                f.write_str("X-Ferry-Action is not ack, retry or dead-letter")
            }
            Self::InvalidRetryAfter => f.write_str("X-Ferry-Retry-After is not a number of seconds"),
            Self::DuplicateHeader(name) => write!(f, "{name} header given twice"),
            Self::ReservedRequestId => f.write_str("request id 0 is reserved for management records"),
            Self::NameValueTooLong => f.write_str("name or value longer than 2^31-1 bytes"),
            Self::PairTooLarge { encoded_len } => write!(
                f,
                "name-value pair of {encoded_len} bytes does not fit in one PARAMS record (0xFFF8)"
            ),
            Self::ContentTooLarge { len } => {
                write!(f, "{len} bytes do not fit in one record (65535)")
            }
        }
    }
}

impl std::error::Error for FcgiError {}
