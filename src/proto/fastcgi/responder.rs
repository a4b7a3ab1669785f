//! The responder role (`ferry responder`): decoding what a web server (or ferry itself)
//! sends to a FastCGI application, and encoding the answers (spec §4–§6).
//!
//! [`RequestDecoder`] is strict: it follows one request at a time (ferry's responder
//! answers `FCGI_MPXS_CONNS=0`, like php-fpm) through an explicit phase enum, and every
//! record that breaks the spec at that point is a typed error saying what was wrong. The
//! spec lets a name-value pair span PARAMS records, so the decoder copies the PARAMS stream
//! into a buffer bounded by a cap (64 KiB by default) and hands out the validated pairs
//! when the empty PARAMS record ends the stream. STDIN and DATA content borrow the input.
//!
//! Decisions: padding of any length (0–255) is accepted, as the spec allows; AUTHORIZER
//! requests are decoded like RESPONDER ones (params, then a STDIN stream, which the spec
//! leaves empty for authorizers); an application record (id ≠ 0) of a type the spec does
//! not define is an error, while an unknown management record (id 0) is reported so it can
//! be answered with UNKNOWN_TYPE (§4.2).

use super::error::FcgiError;
use super::nv::{self, NameValuePairs};
use super::record::{
    self, decode_record, finish_record, start_record, ProtocolStatus, Record, RecordType, Role,
    FLAG_KEEP_CONN, MANAGEMENT_REQUEST_ID, MAX_CONTENT_LEN,
};
use crate::proto::Status;

/// Default cap on one request's PARAMS stream.
pub const DEFAULT_PARAMS_CAP: usize = 64 * 1024;

/// A PARAMS stream or GET_VALUES content whose pairs were all checked: iterating cannot
/// fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params<'a> {
    bytes: &'a [u8],
}

impl<'a> Params<'a> {
    /// Validates `bytes` as whole name-value pairs.
    pub fn new(bytes: &'a [u8]) -> Result<Self, FcgiError> {
        NameValuePairs::validate(bytes)?;
        Ok(Self { bytes })
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        NameValuePairs::new(self.bytes).map_while(Result::ok)
    }

    /// The encoded stream.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// What one record of a request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEvent<'a> {
    /// BEGIN_REQUEST: a request starts.
    Begin {
        /// Its id.
        request_id: u16,
        /// The role asked for.
        role: Role,
        /// Whether the client keeps the connection after END_REQUEST.
        keep_conn: bool,
    },
    /// A non-empty PARAMS record (already copied into the decoder's buffer; shown for
    /// tracing, safe to ignore).
    ParamsChunk(&'a [u8]),
    /// The empty PARAMS record ended the stream: every pair, in order.
    Params(Params<'a>),
    /// STDIN content (the request body).
    Stdin(&'a [u8]),
    /// The empty STDIN record: the body is complete. For a RESPONDER this is the moment
    /// to answer.
    StdinEnd,
    /// DATA content (FILTER role only).
    Data(&'a [u8]),
    /// The empty DATA record (FILTER role only).
    DataEnd,
    /// ABORT_REQUEST for the active request.
    Abort {
        /// Its id.
        request_id: u16,
    },
    /// A GET_VALUES management record: the names asked for (values are empty).
    GetValues(Params<'a>),
    /// A management record of a type the spec does not define: answer with
    /// [`encode_unknown_type`].
    UnknownType(u8),
}

/// Where the request on this connection stands: named for what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestPhase {
    /// No request active: BEGIN_REQUEST or management records.
    AwaitingBegin,
    /// PARAMS records until the empty one.
    ReadingParams { request_id: u16, role: Role },
    /// STDIN records until the empty one.
    ReadingStdin { request_id: u16, role: Role },
    /// FILTER: DATA records until the empty one.
    ReadingData { request_id: u16 },
    /// All input arrived; the application answers. A new BEGIN_REQUEST may follow.
    InputComplete { request_id: u16 },
}

/// Decodes a connection's records, one per call, for a FastCGI application.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    phase: RequestPhase,
    params: Vec<u8>,
    params_cap: usize,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_PARAMS_CAP)
    }
}

impl RequestDecoder {
    /// A decoder accepting PARAMS streams of at most `params_cap` bytes. The buffer grows
    /// on demand up to the cap and is kept across requests.
    pub fn new(params_cap: usize) -> Self {
        Self {
            phase: RequestPhase::AwaitingBegin,
            params: Vec::new(),
            params_cap,
        }
    }

    /// Forgets any request in progress (keeps the params buffer's memory).
    pub fn reset(&mut self) {
        self.phase = RequestPhase::AwaitingBegin;
        self.params.clear();
    }

    /// The request being decoded, if any.
    pub fn active_request(&self) -> Option<u16> {
        match self.phase {
            RequestPhase::AwaitingBegin => None,
            RequestPhase::ReadingParams { request_id, .. }
            | RequestPhase::ReadingStdin { request_id, .. }
            | RequestPhase::ReadingData { request_id }
            | RequestPhase::InputComplete { request_id } => Some(request_id),
        }
    }

    /// Bytes of the current PARAMS stream held so far (never more than the cap).
    pub fn params_buffered(&self) -> usize {
        self.params.len()
    }

    /// The cap on a PARAMS stream.
    pub fn params_cap(&self) -> usize {
        self.params_cap
    }

    /// The request's input is complete and the application has answered (written its
    /// END_REQUEST): the next record may start a new request. Calling this is optional —
    /// a BEGIN_REQUEST after the input is complete is accepted anyway.
    pub fn finish_request(&mut self) {
        self.reset();
    }

    /// Decodes the next record of `buf`. `Partial` until a whole record is there (a buffer
    /// of [`record::MAX_RECORD_LEN`] bytes always suffices).
    pub fn decode<'a>(&'a mut self, buf: &'a [u8]) -> Result<Status<RequestEvent<'a>>, FcgiError> {
        let (record, used) = match decode_record(buf)? {
            Status::Complete(record, used) => (record, used),
            Status::Partial => return Ok(Status::Partial),
        };
        let event = self.on_record(record)?;
        Ok(Status::Complete(event, used))
    }

    fn on_record<'a>(&'a mut self, record: Record<'a>) -> Result<RequestEvent<'a>, FcgiError> {
        let record_type = record.record_type;
        if record.request_id == MANAGEMENT_REQUEST_ID {
            return on_management_record(&record);
        }
        let request_id = record.request_id;
        match record_type {
            RecordType::BeginRequest => self.on_begin(&record),
            RecordType::AbortRequest => {
                expect_content_len(&record, 0)?;
                self.expect_active(request_id, record_type, "an active request to abort")?;
                self.reset();
                Ok(RequestEvent::Abort { request_id })
            }
            RecordType::Params => match self.phase {
                RequestPhase::ReadingParams {
                    request_id: active,
                    role,
                } if active == request_id => {
                    if record.content.is_empty() {
                        self.phase = RequestPhase::ReadingStdin { request_id, role };
                        return Ok(RequestEvent::Params(Params::new(&self.params)?));
                    }
                    if self.params.len() + record.content.len() > self.params_cap {
                        return Err(FcgiError::ParamsTooLarge {
                            cap: self.params_cap,
                        });
                    }
                    self.params.extend_from_slice(record.content);
                    Ok(RequestEvent::ParamsChunk(record.content))
                }
                _ => Err(self.misplaced(request_id, record_type, "PARAMS after BEGIN_REQUEST")),
            },
            RecordType::Stdin => match self.phase {
                RequestPhase::ReadingStdin {
                    request_id: active,
                    role,
                } if active == request_id => {
                    if record.content.is_empty() {
                        self.phase = match role {
                            Role::Filter => RequestPhase::ReadingData { request_id },
                            Role::Responder | Role::Authorizer => {
                                RequestPhase::InputComplete { request_id }
                            }
                        };
                        return Ok(RequestEvent::StdinEnd);
                    }
                    Ok(RequestEvent::Stdin(record.content))
                }
                _ => Err(self.misplaced(request_id, record_type, "STDIN after the PARAMS stream")),
            },
            RecordType::Data => match self.phase {
                RequestPhase::ReadingData { request_id: active } if active == request_id => {
                    if record.content.is_empty() {
                        self.phase = RequestPhase::InputComplete { request_id };
                        return Ok(RequestEvent::DataEnd);
                    }
                    Ok(RequestEvent::Data(record.content))
                }
                _ => Err(self.misplaced(request_id, record_type, "DATA after STDIN (FILTER role)")),
            },
            RecordType::GetValues | RecordType::GetValuesResult | RecordType::UnknownType => {
                Err(FcgiError::ManagementRecordWithRequestId {
                    record_type,
                    request_id,
                })
            }
            _ => Err(FcgiError::UnexpectedRecord {
                record_type,
                expected: "a record a web server sends (BEGIN, ABORT, PARAMS, STDIN, DATA)",
            }),
        }
    }

    fn on_begin<'a>(&mut self, record: &Record<'a>) -> Result<RequestEvent<'a>, FcgiError> {
        let request_id = record.request_id;
        let Ok([role_hi, role_lo, flags, _, _, _, _, _]) = <[u8; 8]>::try_from(record.content)
        else {
            return Err(bad_len(record));
        };
        match self.phase {
            RequestPhase::AwaitingBegin | RequestPhase::InputComplete { .. } => {}
            RequestPhase::ReadingParams {
                request_id: active, ..
            }
            | RequestPhase::ReadingStdin {
                request_id: active, ..
            }
            | RequestPhase::ReadingData { request_id: active } => {
                return Err(if active == request_id {
                    FcgiError::DuplicateBegin { request_id }
                } else {
                    FcgiError::CantMultiplex { active, request_id }
                });
            }
        }
        let role_value = u16::from_be_bytes([role_hi, role_lo]);
        let role = Role::from_u16(role_value).ok_or(FcgiError::UnknownRole {
            request_id,
            role: role_value,
        })?;
        self.params.clear();
        self.phase = RequestPhase::ReadingParams { request_id, role };
        Ok(RequestEvent::Begin {
            request_id,
            role,
            keep_conn: flags & FLAG_KEEP_CONN != 0,
        })
    }

    fn expect_active(
        &self,
        request_id: u16,
        record_type: RecordType,
        expected: &'static str,
    ) -> Result<(), FcgiError> {
        match self.active_request() {
            Some(active) if active == request_id => Ok(()),
            _ => Err(self.misplaced(request_id, record_type, expected)),
        }
    }

    /// The error for a stream record that does not belong here: another request's, or
    /// ours in the wrong phase.
    fn misplaced(
        &self,
        request_id: u16,
        record_type: RecordType,
        expected: &'static str,
    ) -> FcgiError {
        match self.active_request() {
            Some(active) if active != request_id => FcgiError::WrongRequestId {
                expected: active,
                found: request_id,
            },
            _ => FcgiError::UnexpectedRecord {
                record_type,
                expected,
            },
        }
    }
}

fn on_management_record<'a>(record: &Record<'a>) -> Result<RequestEvent<'a>, FcgiError> {
    match record.record_type {
        RecordType::GetValues => Ok(RequestEvent::GetValues(Params::new(record.content)?)),
        RecordType::Other(byte) => Ok(RequestEvent::UnknownType(byte)),
        record_type @ (RecordType::GetValuesResult | RecordType::UnknownType) => {
            Err(FcgiError::UnexpectedRecord {
                record_type,
                expected: "GET_VALUES (web server side)",
            })
        }
        record_type => Err(FcgiError::RequestIdZero { record_type }),
    }
}

fn bad_len(record: &Record<'_>) -> FcgiError {
    FcgiError::BadContentLength {
        record_type: record.record_type,
        length: u16::try_from(record.content.len()).unwrap_or(u16::MAX),
    }
}

fn expect_content_len(record: &Record<'_>, len: usize) -> Result<(), FcgiError> {
    if record.content.len() == len {
        Ok(())
    } else {
        Err(bad_len(record))
    }
}

/// Appends STDOUT records carrying `bytes`, split at 0xFFF8 bytes. Empty `bytes` appends
/// the empty record that closes the stream.
pub fn encode_stdout(out: &mut Vec<u8>, request_id: u16, bytes: &[u8]) {
    encode_stream(out, RecordType::Stdout, request_id, bytes);
}

/// Appends STDERR records carrying `bytes`, split at 0xFFF8 bytes. Empty `bytes` appends
/// the empty record that closes the stream.
pub fn encode_stderr(out: &mut Vec<u8>, request_id: u16, bytes: &[u8]) {
    encode_stream(out, RecordType::Stderr, request_id, bytes);
}

fn encode_stream(out: &mut Vec<u8>, record_type: RecordType, request_id: u16, bytes: &[u8]) {
    if bytes.is_empty() {
        let start = start_record(out, record_type, request_id);
        finish_record(out, start);
    } else {
        record::encode_stream_chunks(out, record_type, request_id, bytes);
    }
}

/// Appends END_REQUEST.
pub fn encode_end_request(
    out: &mut Vec<u8>,
    request_id: u16,
    app_status: u32,
    protocol_status: ProtocolStatus,
) {
    let start = start_record(out, RecordType::EndRequest, request_id);
    out.extend_from_slice(&app_status.to_be_bytes());
    out.extend_from_slice(&[protocol_status.to_u8(), 0, 0, 0]);
    finish_record(out, start);
}

/// Appends GET_VALUES_RESULT with `pairs` (e.g. `FCGI_MPXS_CONNS` = `0`); they must fit in
/// one record. On error `out` is left as it was.
pub fn encode_get_values_result<'p>(
    out: &mut Vec<u8>,
    pairs: impl IntoIterator<Item = (&'p [u8], &'p [u8])>,
) -> Result<(), FcgiError> {
    let original_len = out.len();
    let start = start_record(out, RecordType::GetValuesResult, MANAGEMENT_REQUEST_ID);
    for (name, value) in pairs {
        let fits = nv::encode_pair(out, name, value).is_ok()
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

/// Appends UNKNOWN_TYPE naming the management record type that was not understood.
pub fn encode_unknown_type(out: &mut Vec<u8>, record_type: u8) {
    let start = start_record(out, RecordType::UnknownType, MANAGEMENT_REQUEST_ID);
    out.extend_from_slice(&[record_type, 0, 0, 0, 0, 0, 0, 0]);
    finish_record(out, start);
}
