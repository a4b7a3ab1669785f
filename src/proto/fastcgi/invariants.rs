//! Invariant checks shared by the cargo-fuzz targets (`fuzz/fuzz_targets/fastcgi_*.rs`)
//! and the corpus replay test: arbitrary bytes go through the decoders whole and in
//! chunks, and the checks `assert!` what must hold for any input — no panic, bytes used ≤
//! input, the same events however the bytes are split, bounded buffers, and re-encoding a
//! decoded record decoding to the same record.
//!
//! These functions allocate and panic freely: they are test code compiled into the library
//! so that the fuzzer and `cargo test` run exactly the same checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::cgi::CgiHead;
use super::client::{encode_begin_request, ResponseDecoder, ResponseEvent};
use super::error::FcgiError;
use super::record::{decode_record, encode_record};
use super::responder::{
    encode_end_request, encode_stderr, encode_stdout, RequestDecoder, RequestEvent,
};
use crate::proto::Status;

/// Small cap so the fuzzer reaches `HeadersTooLarge` with small inputs.
const FUZZ_HEAD_CAP: usize = 512;
/// Small cap so the fuzzer reaches `ParamsTooLarge` with small inputs.
const FUZZ_PARAMS_CAP: usize = 1024;

/// Chunk sizes to split `data` into: whole, byte by byte, and sizes derived from the data.
fn steps(data: &[u8]) -> Vec<usize> {
    let derived = data.first().map_or(3, |b| usize::from(*b % 29) + 2);
    let odd = data.last().map_or(5, |b| usize::from(*b) * 7 + 9);
    vec![data.len().max(1), 1, derived, odd]
}

/// Feeds `data` `step` bytes at a time to `decode`, which consumes from the front of the
/// unread bytes; returns the debug form of every event and how the run ended.
fn stream<F>(data: &[u8], step: usize, mut decode: F) -> (Vec<String>, String)
where
    F: FnMut(&[u8]) -> Result<Status<String>, FcgiError>,
{
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut pos = 0;
    let mut events = Vec::new();
    loop {
        match decode(&buf[pos..]) {
            Ok(Status::Complete(event, used)) => {
                assert!(
                    used > 0 && used <= buf.len() - pos,
                    "used {used} of {}",
                    buf.len() - pos
                );
                pos += used;
                events.push(event);
            }
            Ok(Status::Partial) => {
                if fed == data.len() {
                    return (events, format!("partial with {} unread", buf.len() - pos));
                }
                let next = (fed + step).min(data.len());
                buf.extend_from_slice(&data[fed..next]);
                fed = next;
            }
            Err(e) => return (events, format!("error {e:?}")),
        }
    }
}

/// Checks a record re-encodes to bytes that decode to the same record.
fn check_record_roundtrip(bytes: &[u8]) {
    let Ok(Status::Complete(record, used)) = decode_record(bytes) else {
        panic!("event without a whole record");
    };
    assert!(used <= bytes.len());
    let mut again = Vec::new();
    encode_record(
        &mut again,
        record.record_type,
        record.request_id,
        record.content,
    )
    .unwrap();
    let Ok(Status::Complete(decoded, used_again)) = decode_record(&again) else {
        panic!("re-encoded record does not decode");
    };
    assert_eq!(used_again, again.len());
    assert_eq!(again.len() % 8, 0);
    assert_eq!(
        (decoded.record_type, decoded.request_id, decoded.content),
        (record.record_type, record.request_id, record.content)
    );
}

/// What the CGI head made of a STDOUT stream.
fn head_outcome(head: &CgiHead, result: Result<Option<usize>, FcgiError>) -> String {
    format!(
        "{result:?} {:?} {:?} {:?} {:?}",
        head.status(),
        head.ferry_action(),
        head.retry_after_s(),
        head.content_type()
    )
}

/// Runs `data` as php-fpm's answer to one request (the request id is taken from the
/// first header, so the fuzzer reaches the deep paths).
pub fn check_response(data: &[u8]) {
    let request_id = match data.get(2..4) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 1,
    };
    let mut baseline = None;
    for step in steps(data) {
        let mut decoder = ResponseDecoder::new(request_id);
        let mut head = CgiHead::new(FUZZ_HEAD_CAP);
        let mut byte_head = CgiHead::new(FUZZ_HEAD_CAP);
        let mut head_result = Ok(None);
        let mut byte_result = Ok(None);
        let run = stream(data, step, |buf| {
            let status = decoder.decode(buf)?;
            if let Status::Complete(event, used) = status {
                check_record_roundtrip(&buf[..used]);
                check_event_roundtrip(request_id, &event);
                if let ResponseEvent::Stdout(bytes) = event {
                    if matches!(head_result, Ok(None)) {
                        head_result = head.push(bytes);
                        assert!(head.buffered_len() <= head.cap());
                    }
                    // The same bytes one at a time must reach the same conclusion.
                    for byte in bytes.chunks(1) {
                        if matches!(byte_result, Ok(None)) {
                            byte_result = byte_head.push(byte);
                            assert!(byte_head.buffered_len() <= byte_head.cap());
                        }
                    }
                }
            }
            Ok(status.map(|event| format!("{event:?}")))
        });
        let head_said = head_outcome(&head, head_result.map(|done| done.map(|_| 0)));
        let byte_said = head_outcome(&byte_head, byte_result.map(|done| done.map(|_| 0)));
        assert_eq!(
            head_said, byte_said,
            "CGI head depends on how STDOUT was split"
        );
        let outcome = (run, head_said);
        match &baseline {
            None => baseline = Some(outcome),
            Some(first) => assert_eq!(first, &outcome, "events depend on read size {step}"),
        }
    }
}

/// Re-encodes a response event with the responder's encoders and decodes it again.
fn check_event_roundtrip(request_id: u16, event: &ResponseEvent<'_>) {
    let mut out = Vec::new();
    match *event {
        ResponseEvent::Stdout(bytes) => encode_stdout(&mut out, request_id, bytes),
        ResponseEvent::Stderr(bytes) => encode_stderr(&mut out, request_id, bytes),
        ResponseEvent::End {
            app_status,
            protocol_status,
        } => encode_end_request(&mut out, request_id, app_status, protocol_status),
        ResponseEvent::DuplicateEnd => return,
    }
    let mut decoder = ResponseDecoder::new(request_id);
    let Ok(Status::Complete(again, used)) = decoder.decode(&out) else {
        panic!("re-encoded {event:?} does not decode");
    };
    assert_eq!(used, out.len());
    assert_eq!(&again, event);
}

/// Runs `data` as what a web server sends to a FastCGI application.
pub fn check_request(data: &[u8]) {
    let mut baseline = None;
    for step in steps(data) {
        let mut decoder = RequestDecoder::new(FUZZ_PARAMS_CAP);
        let run = stream(data, step, |buf| {
            let status = decoder.decode(buf)?;
            let described = status.map(|event| {
                if let RequestEvent::Begin {
                    request_id,
                    role,
                    keep_conn,
                } = event
                {
                    check_begin_roundtrip(request_id, role, keep_conn);
                }
                if let RequestEvent::Params(params) | RequestEvent::GetValues(params) = event {
                    // Validated: iterating visits every byte.
                    let pairs = params.iter().count();
                    assert!(pairs * 2 <= params.as_bytes().len());
                }
                format!("{event:?}")
            });
            if let Status::Complete(_, used) = status {
                check_record_roundtrip(&buf[..used]);
            }
            assert!(decoder.params_buffered() <= decoder.params_cap());
            Ok(described)
        });
        match &baseline {
            None => baseline = Some(run),
            Some(first) => assert_eq!(first, &run, "events depend on read size {step}"),
        }
    }
}

fn check_begin_roundtrip(request_id: u16, role: super::record::Role, keep_conn: bool) {
    let mut out = Vec::new();
    encode_begin_request(&mut out, request_id, role, keep_conn);
    let mut decoder = RequestDecoder::default();
    let Ok(Status::Complete(again, _)) = decoder.decode(&out) else {
        panic!("re-encoded BEGIN_REQUEST does not decode");
    };
    assert_eq!(
        again,
        RequestEvent::Begin {
            request_id,
            role,
            keep_conn
        }
    );
}
