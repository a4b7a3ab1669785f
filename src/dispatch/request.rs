//! One message → one FastCGI RESPONDER request: `docs/SEMANTICS.md`, "From message to FastCGI request".
//!
//! [`RequestBuilder::build`] appends the whole request (BEGIN_REQUEST, PARAMS, STDIN) to a
//! caller-provided buffer through `proto::fastcgi::encode_request`. Params are borrowed
//! slices: of the job config, of the message (the read buffer), of small stack buffers for
//! numbers, and of one scratch buffer the builder keeps for `FERRY_HEADER_*` names and
//! number-valued headers; the `form` body goes to a second kept buffer. Nothing is
//! allocated per param; the kept buffers only grow to the largest message seen (a body
//! buffer above [`BODY_RETAIN_BYTES`] is released after use).
//!
//! # Params, in this order
//! `GATEWAY_INTERFACE=FastCGI/1.0`, `SERVER_SOFTWARE=ferry/<version>`, `REQUEST_METHOD`
//! (job `method`), `SCRIPT_FILENAME` (job `script`), `SCRIPT_NAME` and `REQUEST_URI` (both
//! the script path), `QUERY_STRING` (empty), `SERVER_PROTOCOL=HTTP/1.1`,
//! `REMOTE_ADDR=127.0.0.1`, `SERVER_NAME=localhost`, `SERVER_PORT=80`, `CONTENT_TYPE`,
//! `CONTENT_LENGTH`; then the job's `params`; then the message metadata `FERRY_SOURCE`,
//! `FERRY_KIND`, `FERRY_ATTEMPT`, `FERRY_CHANNEL`, `FERRY_PATTERN`, `FERRY_QUEUE`,
//! `FERRY_STREAM`, `FERRY_EXCHANGE`, `FERRY_ROUTING_KEY`, `FERRY_REDELIVERED` (`0`|`1`), `FERRY_MESSAGE_ID`,
//! `FERRY_CORRELATION_ID`, `FERRY_REPLY_TO`, `FERRY_TIMESTAMP`, `FERRY_HEADER_<H>`. Absent
//! values are not sent (the default exchange's empty name is a value: it is sent empty).
//!
//! # Decisions
//! - `SCRIPT_NAME` = `REQUEST_URI` = the script's path: a job has no URL, and PHP
//!   frameworks that route on `REQUEST_URI` then see the script itself. php-fpm's status
//!   page is asked for with both set to `status_path`; a job script path never equals it
//!   in practice (it is an absolute file name).
//! - `SERVER_NAME=localhost`, `SERVER_PORT=80`: CGI wants a host name; with these, URL
//!   builders in PHP frameworks produce `http://localhost/…` rather than an unresolvable
//!   host or a `:0` port. Reading the host name would be I/O this module does not do.
//! - A job param named like a standard param replaces ferry's value (it is sent once, in
//!   the job params' place): that is how a job sets `SERVER_NAME` or `HTTPS`. Job params
//!   named `FERRY_*` are not sent: those names carry the message's metadata, which a
//!   config must not be able to spoof or leave stale.
//! - Headers: `S` strings as they are; integers, `T` timestamps, floats (shortest text that
//!   reads back, no exponent) and decimals (`value / 10^scale`, e.g. `1.25`) as decimal
//!   text; booleans, byte arrays, nested tables, arrays and void are not sent. Names:
//!   ASCII letters upper-cased, digits kept, every other byte `_`.
//! - A `form` payload that cannot be encoded, or a single param too large for one PARAMS
//!   record (0xFFF8 bytes), is a [`RequestError`]: the caller fails the message
//!   permanently with [`Reason::InvalidMessage`](super::outcome::Reason::InvalidMessage).

use std::io::Write as _;

use crate::config::{BodyMode, JobConfig};
use crate::proto::amqp::{FieldTable, FieldValue};
use crate::proto::fastcgi::{encode_request, FcgiError};
use crate::proto::form::{self, FormError, Limits};

/// `CONTENT_TYPE` of a `form` body.
pub const FORM_CONTENT_TYPE: &[u8] = b"application/x-www-form-urlencoded";
/// `SERVER_SOFTWARE`.
pub const SERVER_SOFTWARE: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));
/// A kept `form` body buffer larger than this is released after the request is built.
pub const BODY_RETAIN_BYTES: usize = 1 << 20;

/// Where a message came from (`FERRY_KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Redis pub/sub.
    Redis,
    /// RabbitMQ.
    Amqp,
    /// ferry's own RESP endpoint.
    RespEndpoint,
    /// A Redis stream read through a consumer group.
    RedisStream,
}

impl SourceKind {
    /// The `FERRY_KIND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Amqp => "amqp",
            Self::RespEndpoint => "resp_endpoint",
            Self::RedisStream => "redis_stream",
        }
    }
}

/// A message's metadata, borrowed from wherever it lives (usually the read buffer).
/// Fields that do not apply to the source stay `None`.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The source's name (`FERRY_SOURCE`).
    pub source: &'a str,
    /// The source's kind (`FERRY_KIND`).
    pub kind: SourceKind,
    /// 1 on first delivery (`FERRY_ATTEMPT`).
    pub attempt: u32,
    /// Redis / endpoint channel (`FERRY_CHANNEL`).
    pub channel: Option<&'a [u8]>,
    /// Redis pattern that matched (`FERRY_PATTERN`).
    pub pattern: Option<&'a [u8]>,
    /// AMQP queue (`FERRY_QUEUE`).
    pub queue: Option<&'a [u8]>,
    /// Redis stream key (`FERRY_STREAM`).
    pub stream: Option<&'a [u8]>,
    /// AMQP exchange, empty for the default one (`FERRY_EXCHANGE`).
    pub exchange: Option<&'a [u8]>,
    /// AMQP routing key (`FERRY_ROUTING_KEY`).
    pub routing_key: Option<&'a [u8]>,
    /// AMQP redelivered flag (`FERRY_REDELIVERED`).
    pub redelivered: Option<bool>,
    /// AMQP `message_id` (`FERRY_MESSAGE_ID`).
    pub message_id: Option<&'a [u8]>,
    /// AMQP `correlation_id` (`FERRY_CORRELATION_ID`).
    pub correlation_id: Option<&'a [u8]>,
    /// AMQP `reply_to` (`FERRY_REPLY_TO`).
    pub reply_to: Option<&'a [u8]>,
    /// AMQP `timestamp`, POSIX seconds (`FERRY_TIMESTAMP`).
    pub timestamp: Option<u64>,
    /// AMQP `headers` (`FERRY_HEADER_<H>`).
    pub headers: Option<FieldTable<'a>>,
    /// AMQP `content_type` (`CONTENT_TYPE` of a raw body).
    pub content_type: Option<&'a [u8]>,
}

impl<'a> Message<'a> {
    /// A message with only the always-present metadata.
    pub fn new(source: &'a str, kind: SourceKind, attempt: u32) -> Self {
        Self {
            source,
            kind,
            attempt,
            channel: None,
            pattern: None,
            queue: None,
            stream: None,
            exchange: None,
            routing_key: None,
            redelivered: None,
            message_id: None,
            correlation_id: None,
            reply_to: None,
            timestamp: None,
            headers: None,
            content_type: None,
        }
    }
}

/// Request-level settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// FastCGI request id (ferry uses 1).
    pub request_id: u16,
    /// Ask php-fpm to keep the connection (the pool's `keep_conn`).
    pub keep_conn: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            request_id: 1,
            keep_conn: false,
        }
    }
}

/// Why a message cannot become a request (the message fails permanently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The `form` payload is not a JSON object, is invalid, too deep or too large.
    Form(FormError),
    /// FastCGI cannot carry it (a param larger than one PARAMS record).
    Fcgi(FcgiError),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Form(e) => write!(f, "form body: {e}"),
            Self::Fcgi(e) => write!(f, "FastCGI request: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// What one build produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltRequest {
    /// Bytes appended to the output buffer.
    pub request_bytes: usize,
    /// `CONTENT_LENGTH`.
    pub body_bytes: usize,
    /// For `form`: the number of form variables (compare with PHP's `max_input_vars`).
    pub form_variables: Option<usize>,
}

/// A decimal number formatted on the stack.
struct NumberText {
    digits: [u8; 20],
    start: usize,
}

impl NumberText {
    fn new(mut value: u64) -> Self {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            if let Some(slot) = digits.get_mut(start) {
                // `% 10` keeps the value below 10.
                *slot = b'0' + (value % 10) as u8;
            }
            value /= 10;
            if value == 0 || start == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }
}

/// Builds requests, keeping its buffers between messages.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    limits: Limits,
    body: Vec<u8>,
    scratch: Vec<u8>,
    /// `(name_start, name_end, value_end)` in `scratch` for each header param.
    header_spans: Vec<(usize, usize, usize)>,
}

impl Default for RequestBuilder {
    fn default() -> Self {
        Self::new(form::DEFAULT_MAX_OUTPUT_BYTES)
    }
}

/// The params ferry always sets, in order.
const STANDARD_NAMES: [&str; 13] = [
    "GATEWAY_INTERFACE",
    "SERVER_SOFTWARE",
    "REQUEST_METHOD",
    "SCRIPT_FILENAME",
    "SCRIPT_NAME",
    "REQUEST_URI",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
];

impl RequestBuilder {
    /// A builder whose `form` bodies may be at most `max_body_bytes` once encoded (the
    /// source's `max_message_bytes`).
    pub fn new(max_body_bytes: usize) -> Self {
        Self {
            limits: Limits {
                max_output_bytes: max_body_bytes,
                ..Limits::default()
            },
            body: Vec::new(),
            scratch: Vec::new(),
            header_spans: Vec::new(),
        }
    }

    /// Appends the FastCGI request for `message` with `payload` under `job` to `out`. On
    /// error `out` is as it was.
    pub fn build(
        &mut self,
        out: &mut Vec<u8>,
        job: &JobConfig,
        message: &Message<'_>,
        payload: &[u8],
        options: RequestOptions,
    ) -> Result<BuiltRequest, RequestError> {
        let form_variables = match job.body {
            BodyMode::Form => {
                self.body.clear();
                let encoded = form::encode_with_limits(payload, &mut self.body, &self.limits)
                    .map_err(RequestError::Form)?;
                Some(encoded.variables)
            }
            BodyMode::Raw => None,
        };
        self.collect_headers(message.headers);

        let Self {
            body,
            scratch,
            header_spans,
            ..
        } = self;
        let (stdin, content_type): (&[u8], &[u8]) = match job.body {
            BodyMode::Form => (body.as_slice(), FORM_CONTENT_TYPE),
            BodyMode::Raw => (
                payload,
                message.content_type.unwrap_or(job.content_type.as_bytes()),
            ),
        };
        let content_length = NumberText::new(stdin.len() as u64);
        let attempt = NumberText::new(u64::from(message.attempt));
        let timestamp = message.timestamp.map(NumberText::new);
        let script = job.script.as_bytes();

        let standard_values: [&[u8]; 13] = [
            b"FastCGI/1.0",
            SERVER_SOFTWARE.as_bytes(),
            job.method.as_bytes(),
            script,
            script,
            script,
            b"",
            b"HTTP/1.1",
            b"127.0.0.1",
            b"localhost",
            b"80",
            content_type,
            content_length.as_bytes(),
        ];
        let standard = STANDARD_NAMES
            .iter()
            .zip(standard_values)
            .filter(|(name, _)| !job.params.contains_key(**name))
            .map(|(name, value)| (name.as_bytes(), value));
        let job_params = job
            .params
            .iter()
            .filter(|(name, _)| !name.starts_with("FERRY_"))
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
        let redelivered: Option<&[u8]> =
            message
                .redelivered
                .map(|flag| if flag { &b"1"[..] } else { &b"0"[..] });
        let metadata: [(&[u8], Option<&[u8]>); 14] = [
            (b"FERRY_SOURCE", Some(message.source.as_bytes())),
            (b"FERRY_KIND", Some(message.kind.as_str().as_bytes())),
            (b"FERRY_ATTEMPT", Some(attempt.as_bytes())),
            (b"FERRY_CHANNEL", message.channel),
            (b"FERRY_PATTERN", message.pattern),
            (b"FERRY_QUEUE", message.queue),
            (b"FERRY_STREAM", message.stream),
            (b"FERRY_EXCHANGE", message.exchange),
            (b"FERRY_ROUTING_KEY", message.routing_key),
            (b"FERRY_REDELIVERED", redelivered),
            (b"FERRY_MESSAGE_ID", message.message_id),
            (b"FERRY_CORRELATION_ID", message.correlation_id),
            (b"FERRY_REPLY_TO", message.reply_to),
            (
                b"FERRY_TIMESTAMP",
                timestamp.as_ref().map(NumberText::as_bytes),
            ),
        ];
        let metadata = metadata
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)));
        let scratch: &[u8] = scratch;
        let headers = header_spans.iter().map(|&(start, middle, end)| {
            (
                scratch.get(start..middle).unwrap_or_default(),
                scratch.get(middle..end).unwrap_or_default(),
            )
        });

        let before = out.len();
        let params = standard.chain(job_params).chain(metadata).chain(headers);
        encode_request(out, options.request_id, options.keep_conn, params, stdin)
            .map_err(RequestError::Fcgi)?;
        let built = BuiltRequest {
            request_bytes: out.len() - before,
            body_bytes: stdin.len(),
            form_variables,
        };
        if body.capacity() > BODY_RETAIN_BYTES {
            *body = Vec::new();
        }
        Ok(built)
    }

    /// Bytes of memory the builder keeps between messages (its body and scratch
    /// buffers); a body above [`BODY_RETAIN_BYTES`] is not kept.
    pub fn held_bytes(&self) -> usize {
        self.body.capacity()
            + self.scratch.capacity()
            + self.header_spans.capacity() * std::mem::size_of::<(usize, usize, usize)>()
    }

    /// Writes each string/number header's param name and value into the scratch buffer.
    fn collect_headers(&mut self, headers: Option<FieldTable<'_>>) {
        self.scratch.clear();
        self.header_spans.clear();
        let Some(headers) = headers else {
            return;
        };
        for (key, value) in headers.iter() {
            let start = self.scratch.len();
            self.scratch.extend_from_slice(b"FERRY_HEADER_");
            self.scratch.extend(key.iter().map(|&b| {
                if b.is_ascii_alphanumeric() {
                    b.to_ascii_uppercase()
                } else {
                    b'_'
                }
            }));
            let middle = self.scratch.len();
            if write_header_value(&mut self.scratch, value) {
                self.header_spans.push((start, middle, self.scratch.len()));
            } else {
                self.scratch.truncate(start);
            }
        }
    }
}

/// Appends a header's value as text; false for a kind that is not sent.
fn write_header_value(out: &mut Vec<u8>, value: FieldValue<'_>) -> bool {
    // Writing to a Vec cannot fail.
    let _ = match value {
        FieldValue::LongStr(text) => {
            out.extend_from_slice(text);
            Ok(())
        }
        FieldValue::I8(n) => write!(out, "{n}"),
        FieldValue::U8(n) => write!(out, "{n}"),
        FieldValue::I16(n) => write!(out, "{n}"),
        FieldValue::U16(n) => write!(out, "{n}"),
        FieldValue::I32(n) => write!(out, "{n}"),
        FieldValue::U32(n) => write!(out, "{n}"),
        FieldValue::I64(n) => write!(out, "{n}"),
        FieldValue::Timestamp(n) => write!(out, "{n}"),
        FieldValue::F32(n) => write!(out, "{n}"),
        FieldValue::F64(n) => write!(out, "{n}"),
        FieldValue::Decimal { scale, value } => {
            write_decimal(out, scale, value);
            Ok(())
        }
        FieldValue::Bool(_)
        | FieldValue::Bytes(_)
        | FieldValue::Table(_)
        | FieldValue::Array(_)
        | FieldValue::Void => return false,
    };
    true
}

/// `value / 10^scale` in plain decimal: (2, 125) → `1.25`, (3, 5) → `0.005`.
fn write_decimal(out: &mut Vec<u8>, scale: u8, value: u32) {
    let digits = NumberText::new(u64::from(value));
    let digits = digits.as_bytes();
    let scale = usize::from(scale);
    if scale == 0 {
        out.extend_from_slice(digits);
        return;
    }
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    } else {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn numbers_and_decimals() {
        assert_eq!(NumberText::new(0).as_bytes(), b"0");
        assert_eq!(NumberText::new(42).as_bytes(), b"42");
        assert_eq!(
            NumberText::new(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
        let decimal = |scale, value| {
            let mut out = Vec::new();
            write_decimal(&mut out, scale, value);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(decimal(0, 7), "7");
        assert_eq!(decimal(2, 125), "1.25");
        assert_eq!(decimal(3, 5), "0.005");
        assert_eq!(decimal(2, 25), "0.25");
        assert_eq!(decimal(1, 0), "0.0");
    }
}
