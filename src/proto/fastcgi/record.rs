//! The FastCGI record layer (spec §3.3, §8): the 8-byte header, record types, roles,
//! flags and protocol statuses, decoding one whole record and encoding padded records.
//!
//! A record is `version u8 (1) | type u8 | requestId u16be | contentLength u16be |
//! paddingLength u8 | reserved u8 | content | padding`. The header alone says how many
//! bytes the record needs (at most [`MAX_RECORD_LEN`]), so [`decode_record`] answers
//! `Partial` until all of them are there and never rescans. The spec lets padding be any
//! length 0–255 (it only *recommends* 8-byte alignment), so decoding accepts any padding;
//! encoding pads content to a multiple of 8 as php-fpm does.

use std::fmt;

use super::error::FcgiError;
use crate::proto::Status;

/// The only FastCGI version.
pub const VERSION_1: u8 = 1;
/// Size of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content of one record.
pub const MAX_CONTENT_LEN: usize = 0xFFFF;
/// Largest record on the wire (header, 65535 bytes of content, 255 of padding): a read
/// buffer this large always holds a whole record.
pub const MAX_RECORD_LEN: usize = HEADER_LEN + MAX_CONTENT_LEN + 255;
/// Largest content ferry puts in a stream record: a multiple of 8, so content plus
/// padding stays within 65535, as php-src's own `fastcgi.c` does.
pub const MAX_CHUNK_LEN: usize = 0xFFF8;
/// Request id of management records (GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE).
pub const MANAGEMENT_REQUEST_ID: u16 = 0;
/// BEGIN_REQUEST flag: keep the connection open after this request.
pub const FLAG_KEEP_CONN: u8 = 1;

/// A record's type (spec §8). Types the spec does not define are kept as `Other`: a
/// responder must answer them with UNKNOWN_TYPE rather than fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST` (1).
    BeginRequest,
    /// `FCGI_ABORT_REQUEST` (2).
    AbortRequest,
    /// `FCGI_END_REQUEST` (3).
    EndRequest,
    /// `FCGI_PARAMS` (4).
    Params,
    /// `FCGI_STDIN` (5).
    Stdin,
    /// `FCGI_STDOUT` (6).
    Stdout,
    /// `FCGI_STDERR` (7).
    Stderr,
    /// `FCGI_DATA` (8).
    Data,
    /// `FCGI_GET_VALUES` (9).
    GetValues,
    /// `FCGI_GET_VALUES_RESULT` (10).
    GetValuesResult,
    /// `FCGI_UNKNOWN_TYPE` (11).
    UnknownType,
    /// Any other type byte.
    Other(u8),
}

impl RecordType {
    /// The type for a type byte.
    pub fn from_u8(byte: u8) -> Self {
        match byte {
            1 => Self::BeginRequest,
            2 => Self::AbortRequest,
            3 => Self::EndRequest,
            4 => Self::Params,
            5 => Self::Stdin,
            6 => Self::Stdout,
            7 => Self::Stderr,
            8 => Self::Data,
            9 => Self::GetValues,
            10 => Self::GetValuesResult,
            11 => Self::UnknownType,
            other => Self::Other(other),
        }
    }

    /// The type byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::BeginRequest => 1,
            Self::AbortRequest => 2,
            Self::EndRequest => 3,
            Self::Params => 4,
            Self::Stdin => 5,
            Self::Stdout => 6,
            Self::Stderr => 7,
            Self::Data => 8,
            Self::GetValues => 9,
            Self::GetValuesResult => 10,
            Self::UnknownType => 11,
            Self::Other(byte) => byte,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::BeginRequest => "BEGIN_REQUEST",
            Self::AbortRequest => "ABORT_REQUEST",
            Self::EndRequest => "END_REQUEST",
            Self::Params => "PARAMS",
            Self::Stdin => "STDIN",
            Self::Stdout => "STDOUT",
            Self::Stderr => "STDERR",
            Self::Data => "DATA",
            Self::GetValues => "GET_VALUES",
            Self::GetValuesResult => "GET_VALUES_RESULT",
            Self::UnknownType => "UNKNOWN_TYPE",
            Self::Other(byte) => return write!(f, "type-{byte}"),
        };
        f.write_str(name)
    }
}

/// The role a BEGIN_REQUEST asks for (spec §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `FCGI_RESPONDER` (1): the only role php-fpm and ferry use.
    Responder,
    /// `FCGI_AUTHORIZER` (2).
    Authorizer,
    /// `FCGI_FILTER` (3): also receives a DATA stream.
    Filter,
}

impl Role {
    /// The role for a wire value, `None` when the spec defines none.
    pub fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(Self::Responder),
            2 => Some(Self::Authorizer),
            3 => Some(Self::Filter),
            _ => None,
        }
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Responder => 1,
            Self::Authorizer => 2,
            Self::Filter => 3,
        }
    }
}

/// END_REQUEST's protocol status (spec §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE` (0): normal end.
    RequestComplete,
    /// `FCGI_CANT_MPX_CONN` (1): the application refused a second concurrent request.
    CantMpxConn,
    /// `FCGI_OVERLOADED` (2): the application is out of some resource.
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE` (3): the application does not play the requested role.
    UnknownRole,
}

impl ProtocolStatus {
    /// The status for a wire value, `None` when the spec defines none.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::RequestComplete),
            1 => Some(Self::CantMpxConn),
            2 => Some(Self::Overloaded),
            3 => Some(Self::UnknownRole),
            _ => None,
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::RequestComplete => 0,
            Self::CantMpxConn => 1,
            Self::Overloaded => 2,
            Self::UnknownRole => 3,
        }
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The record's type.
    pub record_type: RecordType,
    /// The request the record belongs to (0: management record).
    pub request_id: u16,
    /// Bytes of content that follow the header.
    pub content_length: u16,
    /// Bytes of padding that follow the content.
    pub padding_length: u8,
}

impl Header {
    /// Header, content and padding together.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + usize::from(self.content_length) + usize::from(self.padding_length)
    }
}

/// One whole record, borrowing its content from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'b> {
    /// The record's type.
    pub record_type: RecordType,
    /// The request the record belongs to (0: management record).
    pub request_id: u16,
    /// The content, padding excluded.
    pub content: &'b [u8],
    /// How much padding followed the content on the wire.
    pub padding_length: u8,
}

/// Reads a record header: `Partial` with fewer than 8 bytes, an error for a version
/// other than 1.
pub fn decode_header(buf: &[u8]) -> Result<Status<Header>, FcgiError> {
    let Some(bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Status::Partial);
    };
    let [version, record_type, id_hi, id_lo, len_hi, len_lo, padding_length, _reserved] = *bytes;
    if version != VERSION_1 {
        return Err(FcgiError::UnsupportedVersion(version));
    }
    let header = Header {
        record_type: RecordType::from_u8(record_type),
        request_id: u16::from_be_bytes([id_hi, id_lo]),
        content_length: u16::from_be_bytes([len_hi, len_lo]),
        padding_length,
    };
    Ok(Status::Complete(header, HEADER_LEN))
}

/// Decodes one whole record. `Partial` until header, content and padding are all in
/// `buf` (never more than [`MAX_RECORD_LEN`] bytes); the bytes used include the padding.
pub fn decode_record(buf: &[u8]) -> Result<Status<Record<'_>>, FcgiError> {
    let header = match decode_header(buf)? {
        Status::Complete(header, _) => header,
        Status::Partial => return Ok(Status::Partial),
    };
    let record_len = header.record_len();
    let Some(record) = buf.get(..record_len) else {
        return Ok(Status::Partial);
    };
    let content_end = HEADER_LEN + usize::from(header.content_length);
    let content = record.get(HEADER_LEN..content_end).unwrap_or_default();
    let record = Record {
        record_type: header.record_type,
        request_id: header.request_id,
        content,
        padding_length: header.padding_length,
    };
    Ok(Status::Complete(record, record_len))
}

/// Padding that brings `content_len` to a multiple of 8.
pub fn padding_for(content_len: usize) -> u8 {
    // `& 7` keeps the value below 8, so the cast cannot truncate.
    (content_len.wrapping_neg() & 7) as u8
}

/// Appends a record header with content length 0 and returns where it starts; write the
/// content after it, then call [`finish_record`]. This is how every encoder writes
/// straight into the caller's buffer without an intermediate copy.
pub(crate) fn start_record(out: &mut Vec<u8>, record_type: RecordType, request_id: u16) -> usize {
    let start = out.len();
    let [id_hi, id_lo] = request_id.to_be_bytes();
    out.extend_from_slice(&[VERSION_1, record_type.to_u8(), id_hi, id_lo, 0, 0, 0, 0]);
    start
}

/// Patches the content length of the record started at `start` and appends its padding.
/// The caller guarantees the content is at most 65535 bytes.
///
/// Content plus padding is kept within 65535 bytes (`docs/PROTOCOLS.md` "FastCGI and
/// php-fpm": PHP's own writer never exceeds it, so neither do we): content above
/// [`MAX_CHUNK_LEN`] goes unpadded, which the spec allows (padding is a recommendation for
/// alignment).
pub(crate) fn finish_record(out: &mut Vec<u8>, start: usize) {
    let content_len = out.len().saturating_sub(start + HEADER_LEN);
    debug_assert!(content_len <= MAX_CONTENT_LEN);
    let padding = if content_len > MAX_CHUNK_LEN {
        0
    } else {
        padding_for(content_len)
    };
    let [len_hi, len_lo] = u16::try_from(content_len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(fields) = out.get_mut(start + 4..start + 7) {
        fields.copy_from_slice(&[len_hi, len_lo, padding]);
    }
    out.resize(out.len() + usize::from(padding), 0);
}

/// Appends one record with `content` (at most 65535 bytes) padded to 8 bytes.
pub fn encode_record(
    out: &mut Vec<u8>,
    record_type: RecordType,
    request_id: u16,
    content: &[u8],
) -> Result<(), FcgiError> {
    if content.len() > MAX_CONTENT_LEN {
        return Err(FcgiError::ContentTooLarge { len: content.len() });
    }
    let start = start_record(out, record_type, request_id);
    out.extend_from_slice(content);
    finish_record(out, start);
    Ok(())
}

/// Appends one record exactly as given: any version byte, any type byte, any padding
/// length (filled with zeros). For peers that must send what a well-behaved encoder
/// never would — conformance cases (`ferry conform`), hostile-peer tests: padding other
/// than 8-byte alignment is legal (spec §3.3), a version other than 1 is not.
pub fn encode_raw_record(
    out: &mut Vec<u8>,
    version: u8,
    record_type: u8,
    request_id: u16,
    content: &[u8],
    padding_length: u8,
) -> Result<(), FcgiError> {
    let Ok(content_len) = u16::try_from(content.len()) else {
        return Err(FcgiError::ContentTooLarge { len: content.len() });
    };
    let [id_hi, id_lo] = request_id.to_be_bytes();
    let [len_hi, len_lo] = content_len.to_be_bytes();
    out.extend_from_slice(&[
        version,
        record_type,
        id_hi,
        id_lo,
        len_hi,
        len_lo,
        padding_length,
        0,
    ]);
    out.extend_from_slice(content);
    out.resize(out.len() + usize::from(padding_length), 0);
    Ok(())
}

/// Appends a stream record type's content split into records of at most
/// [`MAX_CHUNK_LEN`] bytes. Empty `bytes` appends nothing.
pub(crate) fn encode_stream_chunks(
    out: &mut Vec<u8>,
    record_type: RecordType,
    request_id: u16,
    bytes: &[u8],
) {
    for chunk in bytes.chunks(MAX_CHUNK_LEN) {
        let start = start_record(out, record_type, request_id);
        out.extend_from_slice(chunk);
        finish_record(out, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_records_keep_the_padding_and_version_given() {
        for padding in [0u8, 1, 7, 8, 255] {
            let mut out = Vec::new();
            encode_raw_record(&mut out, VERSION_1, 4, 258, b"abc", padding).unwrap();
            assert_eq!(out.len(), HEADER_LEN + 3 + usize::from(padding));
            let Status::Complete(record, used) = decode_record(&out).unwrap() else {
                panic!("whole record")
            };
            assert_eq!(used, out.len());
            assert_eq!(
                (record.record_type, record.request_id, record.content),
                (RecordType::Params, 258, &b"abc"[..])
            );
            assert_eq!(record.padding_length, padding);
        }
        let mut out = Vec::new();
        encode_raw_record(&mut out, 2, 1, 1, &[0; 8], 0).unwrap();
        assert_eq!(decode_record(&out), Err(FcgiError::UnsupportedVersion(2)));
        assert_eq!(
            encode_raw_record(&mut out, 1, 5, 1, &vec![0; 65_536], 0),
            Err(FcgiError::ContentTooLarge { len: 65_536 })
        );
    }

    #[test]
    fn content_and_padding_never_exceed_65535() {
        for len in [
            0,
            1,
            MAX_CHUNK_LEN - 1,
            MAX_CHUNK_LEN,
            MAX_CHUNK_LEN + 1,
            MAX_CONTENT_LEN,
        ] {
            let mut out = Vec::new();
            encode_record(&mut out, RecordType::Stdout, 1, &vec![b'x'; len]).unwrap();
            let Status::Complete(record, used) = decode_record(&out).unwrap() else {
                panic!("whole record")
            };
            assert_eq!((record.content.len(), used), (len, out.len()));
            assert!(
                len + usize::from(record.padding_length) <= MAX_CONTENT_LEN,
                "{len}"
            );
        }
    }
}
