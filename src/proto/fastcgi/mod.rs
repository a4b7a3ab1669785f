//! FastCGI 1.0 (the 1996 Open Market specification), both roles, as sans-IO codecs.
//!
//! ferry is a FastCGI *client* of php-fpm: it encodes one RESPONDER request per message
//! and decodes the answer, reading the CGI head (`Status:`, `X-Ferry-Action:`) at the
//! start of STDOUT. `ferry responder` plays the *application* role: it decodes requests
//! strictly and encodes answers. php-fpm's own habits (`docs/PROTOCOLS.md` "FastCGI and
//! php-fpm") decide the details: no multiplexing, whole name-value pairs per PARAMS
//! record, ≤ 0xFFF8 bytes of content per record, END_REQUEST without an empty STDOUT
//! before it.
//!
//! Decoders work a whole record at a time: the 8-byte header says exactly how many bytes
//! the record needs (at most [`record::MAX_RECORD_LEN`]), so they answer `Partial` until
//! they are there and never rescan. Events borrow the caller's buffer.
//!
//! # Layout
//! - [`record`]: header, types, roles, statuses, padding; `decode_record`, `encode_record`.
//! - [`nv`]: name-value pairs (1- and 4-byte lengths).
//! - [`client`]: `encode_request`, [`ResponseDecoder`], GET_VALUES.
//! - [`cgi`]: [`CgiHead`], the CGI response head parsed with httparse.
//! - [`responder`]: [`RequestDecoder`] and the answer encoders.
//! - [`exchange`]: [`Exchange`], one request on one connection as a sans-IO session.
//! - [`error`]: the error enum, [`FcgiError`].
//! - `invariants.rs`: checks the fuzz targets and the corpus test run (feature
//!   `invariants` or tests only).

pub mod cgi;
pub mod client;
pub mod error;
pub mod exchange;
#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
pub mod nv;
pub mod record;
pub mod responder;

pub use cgi::{CgiHead, FerryAction};
pub use client::{
    decode_get_values_result, encode_abort_request, encode_begin_request, encode_get_values,
    encode_request, ResponseDecoder, ResponseEvent,
};
pub use error::FcgiError;
pub use exchange::{
    Ending, Exchange, ExchangeEvent, ExchangeOptions, Finished, StderrSummary, STDERR_EXCERPT_CAP,
};
pub use nv::NameValuePairs;
pub use record::{
    decode_record, encode_raw_record, encode_record, ProtocolStatus, Record, RecordType, Role,
};
pub use responder::{
    encode_end_request, encode_get_values_result, encode_stderr, encode_stdout,
    encode_unknown_type, Params, RequestDecoder, RequestEvent,
};
