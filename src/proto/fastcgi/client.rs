//! The client role (ferry → php-fpm): encoding a whole RESPONDER request and decoding the
//! answer to it (spec §5, §6.2), plus the GET_VALUES management exchange (§4.1).
//!
//! php-fpm's traps shape this file (`docs/PROTOCOLS.md` "FastCGI and php-fpm"): a
//! name-value pair never spans PARAMS records and a record's content is at most 0xFFF8
//! bytes; the empty STDIN record is always sent; php-fpm does not multiplex, so a
//! [`ResponseDecoder`] follows exactly one request id and treats any other as an error;
//! END_REQUEST may come without an empty STDOUT first, and a duplicate END_REQUEST has
//! been seen when `pm.max_requests` recycles a child, so one is tolerated (reported as
//! [`ResponseEvent::DuplicateEnd`]).

use super::error::FcgiError;
use super::nv::{self, NameValuePairs};
use super::record::{
    self, decode_record, finish_record, start_record, ProtocolStatus, Record, RecordType, Role,
    FLAG_KEEP_CONN, MANAGEMENT_REQUEST_ID, MAX_CHUNK_LEN, MAX_CONTENT_LEN,
};
use crate::proto::Status;

/// Appends a whole RESPONDER request to `out`: BEGIN_REQUEST, the PARAMS stream and its
/// empty record, the STDIN stream split into records of at most 0xFFF8 bytes, and the
/// empty STDIN record. Writes straight into `out` (header first, then content, then the
/// length is patched): nothing else is allocated, and a pre-reserved `out` never grows.
///
/// Each PARAMS record holds whole pairs only (php-fpm rejects a pair that spans
/// records), so a single pair whose encoding exceeds 0xFFF8 bytes is
/// [`FcgiError::PairTooLarge`]. Request id 0 is [`FcgiError::ReservedRequestId`]. On
/// error `out` is restored to its length before the call.
pub fn encode_request<'p>(
    out: &mut Vec<u8>,
    request_id: u16,
    keep_conn: bool,
    params: impl IntoIterator<Item = (&'p [u8], &'p [u8])>,
    stdin: &[u8],
) -> Result<(), FcgiError> {
    if request_id == MANAGEMENT_REQUEST_ID {
        return Err(FcgiError::ReservedRequestId);
    }
    let original_len = out.len();
    let result = encode_request_unchecked(out, request_id, keep_conn, params, stdin);
    if result.is_err() {
        out.truncate(original_len);
    }
    result
}

fn encode_request_unchecked<'p>(
    out: &mut Vec<u8>,
    request_id: u16,
    keep_conn: bool,
    params: impl IntoIterator<Item = (&'p [u8], &'p [u8])>,
    stdin: &[u8],
) -> Result<(), FcgiError> {
    encode_begin_request(out, request_id, Role::Responder, keep_conn);

    let mut params_start = start_record(out, RecordType::Params, request_id);
    let mut params_content = 0usize;
    for (name, value) in params {
        let pair_len = nv::encoded_pair_len(name, value);
        if pair_len > MAX_CHUNK_LEN {
            return Err(FcgiError::PairTooLarge {
                encoded_len: pair_len,
            });
        }
        if params_content + pair_len > MAX_CHUNK_LEN {
            finish_record(out, params_start);
            params_start = start_record(out, RecordType::Params, request_id);
            params_content = 0;
        }
        nv::encode_pair(out, name, value)?;
        params_content += pair_len;
    }
    finish_record(out, params_start);
    if params_content > 0 {
        // The record just finished held pairs: the stream still needs its empty record.
        let end = start_record(out, RecordType::Params, request_id);
        finish_record(out, end);
    }

    record::encode_stream_chunks(out, RecordType::Stdin, request_id, stdin);
    let end = start_record(out, RecordType::Stdin, request_id);
    finish_record(out, end);
    Ok(())
}

/// Appends a BEGIN_REQUEST record.
pub fn encode_begin_request(out: &mut Vec<u8>, request_id: u16, role: Role, keep_conn: bool) {
    let start = start_record(out, RecordType::BeginRequest, request_id);
    let [role_hi, role_lo] = role.to_u16().to_be_bytes();
    let flags = if keep_conn { FLAG_KEEP_CONN } else { 0 };
    out.extend_from_slice(&[role_hi, role_lo, flags, 0, 0, 0, 0, 0]);
    finish_record(out, start);
}

/// Appends an ABORT_REQUEST record. php-fpm ignores it: to stop a request, close the
/// connection.
pub fn encode_abort_request(out: &mut Vec<u8>, request_id: u16) {
    let start = start_record(out, RecordType::AbortRequest, request_id);
    finish_record(out, start);
}

/// Appends a GET_VALUES record asking for `names` (e.g. `FCGI_MPXS_CONNS`). The names must
/// fit in one record. php-fpm answers GET_VALUES only as the first record of a
/// connection, then closes it.
pub fn encode_get_values<'n>(
    out: &mut Vec<u8>,
    names: impl IntoIterator<Item = &'n [u8]>,
) -> Result<(), FcgiError> {
    let original_len = out.len();
    let start = start_record(out, RecordType::GetValues, MANAGEMENT_REQUEST_ID);
    for name in names {
        let fits = nv::encode_pair(out, name, b"").is_ok()
            && out.len() - start - record::HEADER_LEN <= MAX_CONTENT_LEN;
        if !fits {
            let len = out.len().saturating_sub(start + record::HEADER_LEN);
            out.truncate(original_len);
            return Err(FcgiError::ContentTooLarge { len });
        }
    }
    finish_record(out, start);
    Ok(())
}

/// Decodes a GET_VALUES_RESULT record into its pairs (validated: iterating yields no
/// error). Any other record is [`FcgiError::UnexpectedRecord`].
pub fn decode_get_values_result(buf: &[u8]) -> Result<Status<NameValuePairs<'_>>, FcgiError> {
    let (record, used) = match decode_record(buf)? {
        Status::Complete(record, used) => (record, used),
        Status::Partial => return Ok(Status::Partial),
    };
    if record.record_type != RecordType::GetValuesResult {
        return Err(FcgiError::UnexpectedRecord {
            record_type: record.record_type,
            expected: "GET_VALUES_RESULT",
        });
    }
    if record.request_id != MANAGEMENT_REQUEST_ID {
        return Err(FcgiError::ManagementRecordWithRequestId {
            record_type: record.record_type,
            request_id: record.request_id,
        });
    }
    NameValuePairs::validate(record.content)?;
    Ok(Status::Complete(NameValuePairs::new(record.content), used))
}

/// What one record of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseEvent<'b> {
    /// STDOUT content (the CGI response: headers, blank line, body). An empty slice is the
    /// empty record that closes the stream (php-fpm usually skips it).
    Stdout(&'b [u8]),
    /// STDERR content (PHP messages). An empty slice closes the stream.
    Stderr(&'b [u8]),
    /// END_REQUEST: the request is over. php-fpm's app status is always 0: the outcome is
    /// in the CGI `Status:` header.
    End {
        /// The application's exit status.
        app_status: u32,
        /// Whether the request completed or was refused.
        protocol_status: ProtocolStatus,
    },
    /// A second END_REQUEST for this request, or a late one for the request this decoder
    /// followed before its last [`ResponseDecoder::reset`] (seen when php-fpm recycles a
    /// child at `pm.max_requests`): harmless, reported so the bytes count as used.
    DuplicateEnd,
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponsePhase {
    /// STDOUT/STDERR may come, until END_REQUEST.
    AwaitingEnd,
    /// END_REQUEST came; only a duplicate of it may follow.
    Ended,
}

/// Decodes the records answering one request, one record per call. Feed it the read
/// buffer from where the last call stopped; it answers `Partial` until a whole record is
/// there (a buffer of [`record::MAX_RECORD_LEN`] bytes always suffices), so it never
/// rescans. Reuse it across requests with [`ResponseDecoder::reset`].
///
/// On a kept connection give each request a new id (php-fpm accepts any non-zero id):
/// a stale END_REQUEST of the previous request is then told apart from the end of the
/// current one and reported as [`ResponseEvent::DuplicateEnd`]. With the same id twice it
/// would end the new request before its script ran.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    request_id: u16,
    /// The request followed before the last reset, whose END_REQUEST may still arrive.
    previous_id: Option<u16>,
    phase: ResponsePhase,
}

impl ResponseDecoder {
    /// A decoder for the answer to `request_id`.
    pub fn new(request_id: u16) -> Self {
        Self {
            request_id,
            previous_id: None,
            phase: ResponsePhase::AwaitingEnd,
        }
    }

    /// Starts over for a new request on the same (kept) connection; `request_id` should
    /// differ from the previous one (see the type's docs).
    pub fn reset(&mut self, request_id: u16) {
        let previous = self.request_id;
        *self = Self::new(request_id);
        self.previous_id = (previous != request_id).then_some(previous);
    }

    /// The request this decoder follows.
    pub fn request_id(&self) -> u16 {
        self.request_id
    }

    /// True once END_REQUEST has been decoded.
    pub fn is_ended(&self) -> bool {
        self.phase == ResponsePhase::Ended
    }

    /// Decodes the next record of `buf`.
    pub fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Status<ResponseEvent<'b>>, FcgiError> {
        let (record, used) = match decode_record(buf)? {
            Status::Complete(record, used) => (record, used),
            Status::Partial => return Ok(Status::Partial),
        };
        let event = self.on_record(&record)?;
        Ok(Status::Complete(event, used))
    }

    fn on_record<'b>(&mut self, record: &Record<'b>) -> Result<ResponseEvent<'b>, FcgiError> {
        let record_type = record.record_type;
        if record_type == RecordType::EndRequest && Some(record.request_id) == self.previous_id {
            decode_end_request(record)?;
            return Ok(ResponseEvent::DuplicateEnd);
        }
        if self.phase == ResponsePhase::Ended {
            let same_end =
                record_type == RecordType::EndRequest && record.request_id == self.request_id;
            if !same_end {
                return Err(FcgiError::DataAfterEnd { record_type });
            }
            decode_end_request(record)?;
            return Ok(ResponseEvent::DuplicateEnd);
        }
        let expects_ours = matches!(
            record_type,
            RecordType::Stdout | RecordType::Stderr | RecordType::EndRequest
        );
        if !expects_ours {
            return Err(FcgiError::UnexpectedRecord {
                record_type,
                expected: "STDOUT, STDERR or END_REQUEST",
            });
        }
        if record.request_id != self.request_id {
            return Err(FcgiError::WrongRequestId {
                expected: self.request_id,
                found: record.request_id,
            });
        }
        match record_type {
            RecordType::Stdout => Ok(ResponseEvent::Stdout(record.content)),
            RecordType::Stderr => Ok(ResponseEvent::Stderr(record.content)),
            _ => {
                let (app_status, protocol_status) = decode_end_request(record)?;
                self.phase = ResponsePhase::Ended;
                Ok(ResponseEvent::End {
                    app_status,
                    protocol_status,
                })
            }
        }
    }

    /// Says whether the connection may end (EOF) here, given the bytes still unread in the
    /// buffer: fine after END_REQUEST with nothing left; [`FcgiError::TruncatedRecord`]
    /// when a record was cut short (including a header whose padding never came);
    /// [`FcgiError::MissingEndRequest`] otherwise.
    pub fn check_eof(&self, unread: &[u8]) -> Result<(), FcgiError> {
        if !unread.is_empty() {
            return Err(FcgiError::TruncatedRecord);
        }
        if self.phase == ResponsePhase::Ended {
            Ok(())
        } else {
            Err(FcgiError::MissingEndRequest)
        }
    }
}

/// END_REQUEST content: `appStatus u32be | protocolStatus u8 | reserved[3]`.
fn decode_end_request(record: &Record<'_>) -> Result<(u32, ProtocolStatus), FcgiError> {
    let Ok([s0, s1, s2, s3, protocol, _, _, _]) = <[u8; 8]>::try_from(record.content) else {
        return Err(FcgiError::BadContentLength {
            record_type: record.record_type,
            length: u16::try_from(record.content.len()).unwrap_or(u16::MAX),
        });
    };
    let protocol_status =
        ProtocolStatus::from_u8(protocol).ok_or(FcgiError::UnknownProtocolStatus(protocol))?;
    Ok((u32::from_be_bytes([s0, s1, s2, s3]), protocol_status))
}
