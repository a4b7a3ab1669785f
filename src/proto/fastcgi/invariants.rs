//! Invariant checks shared by the cargo-fuzz targets (`fuzz/fuzz_targets/fastcgi_*.rs`)
//! and the corpus replay test: arbitrary bytes go through the decoders whole and in
//! chunks, and the checks `assert!` what must hold for any input — no panic, bytes used ≤
//! input, the same events however the bytes are split, bounded buffers, and re-encoding a
//! decoded record decoding to the same record.
//!
//! The split runs advance in lockstep with the whole-input run and compare each event
//! (and the record bytes it came from) structurally as it is decoded, so nothing is
//! formatted and no event is stored. Checks that depend only on a record's bytes (the
//! re-encoding round trips, the CGI head) run once, on the whole-input run: the lockstep
//! comparison proves every other run decoded the very same records.
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
/// How much of the input the byte-by-byte run feeds one byte at a time; the rest goes in
/// one read. Every record boundary and header split is reached within a few hundred
/// bytes, and replaying a 4 KiB input byte by byte would dominate the fuzzer's time.
const BYTEWISE_PREFIX: usize = 512;

/// How a run hands the input to its decoder.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// All of it in one read.
    Whole,
    /// One byte per read for the first [`BYTEWISE_PREFIX`] bytes, then the rest at once.
    Bytewise,
    /// Reads of a fixed size.
    Every(usize),
}

impl Split {
    /// The splits every input is run through: whole, byte by byte, and two sizes derived
    /// from the data so the fuzzer explores how records straddle reads.
    fn all(data: &[u8]) -> [Split; 4] {
        let derived = data.first().map_or(3, |b| usize::from(*b % 29) + 2);
        let odd = data.last().map_or(5, |b| usize::from(*b) * 7 + 9);
        [
            Split::Whole,
            Split::Bytewise,
            Split::Every(derived),
            Split::Every(odd),
        ]
    }

    /// The size of the next read when `fed` of `len` bytes were handed over already.
    fn next_read(self, fed: usize, len: usize) -> usize {
        match self {
            Split::Whole => len,
            Split::Bytewise if fed < BYTEWISE_PREFIX => 1,
            Split::Bytewise => len - fed,
            Split::Every(size) => size,
        }
    }
}

/// A record decoder under test: one event per call, borrowing the buffer (and, for the
/// responder side, the decoder's own PARAMS buffer).
trait EventDecoder {
    type Event<'a>: Copy + core::fmt::Debug
    where
        Self: 'a;
    fn decode_next<'a>(&'a mut self, buf: &'a [u8]) -> Result<Status<Self::Event<'a>>, FcgiError>;
    /// Whether two runs' steps are equal (`==` across the two runs' borrows).
    fn same_step<'x, 'y>(a: &Step<'x, Self::Event<'x>>, b: &Step<'y, Self::Event<'y>>) -> bool;
    /// Asserts the decoder's buffers are within their caps.
    fn assert_bounded(&self) {}
}

impl EventDecoder for ResponseDecoder {
    type Event<'a> = ResponseEvent<'a>;
    fn decode_next<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> Result<Status<ResponseEvent<'a>>, FcgiError> {
        self.decode(buf)
    }
    fn same_step<'x, 'y>(a: &Step<'x, Self::Event<'x>>, b: &Step<'y, Self::Event<'y>>) -> bool {
        a == b
    }
}

impl EventDecoder for RequestDecoder {
    type Event<'a> = RequestEvent<'a>;
    fn decode_next<'a>(&'a mut self, buf: &'a [u8]) -> Result<Status<RequestEvent<'a>>, FcgiError> {
        self.decode(buf)
    }
    fn same_step<'x, 'y>(a: &Step<'x, Self::Event<'x>>, b: &Step<'y, Self::Event<'y>>) -> bool {
        a == b
    }
    fn assert_bounded(&self) {
        assert!(self.params_buffered() <= self.params_cap());
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The input ran out inside a record.
    Partial { unread: usize },
    /// The decoder refused the input.
    Error(FcgiError),
}

/// What one step of a run produced: an event with the record bytes it was decoded from
/// and where in the stream they start, or the end of the run.
type Step<'r, E> = Result<(E, &'r [u8], usize), End>;

/// One decoder fed `data` with one [`Split`].
struct Run<D> {
    decoder: D,
    split: Split,
    buf: Vec<u8>,
    fed: usize,
    pos: usize,
}

impl<D: EventDecoder> Run<D> {
    fn new(decoder: D, split: Split, data: &[u8]) -> Self {
        Self {
            decoder,
            split,
            buf: Vec::with_capacity(data.len()),
            fed: 0,
            pos: 0,
        }
    }

    /// Feeds reads until the decoder answers an event or the run ends, hands that to
    /// `visit`, and says whether the run ended.
    fn step<F>(&mut self, data: &[u8], visit: F) -> bool
    where
        F: for<'r> FnOnce(Step<'r, D::Event<'r>>),
    {
        loop {
            match self.decoder.decode_next(&self.buf[self.pos..]) {
                Ok(Status::Complete(event, used)) => {
                    let unread = self.buf.len() - self.pos;
                    assert!(used > 0 && used <= unread, "used {used} of {unread}");
                    let record = &self.buf[self.pos..self.pos + used];
                    visit(Ok((event, record, self.pos)));
                    self.decoder.assert_bounded();
                    self.pos += used;
                    return false;
                }
                Ok(Status::Partial) => {
                    self.decoder.assert_bounded();
                    if self.fed == data.len() {
                        let unread = self.buf.len() - self.pos;
                        visit(Err(End::Partial { unread }));
                        return true;
                    }
                    let read = self.split.next_read(self.fed, data.len()).max(1);
                    let next = (self.fed + read).min(data.len());
                    self.buf.extend_from_slice(&data[self.fed..next]);
                    self.fed = next;
                }
                Err(e) => {
                    visit(Err(End::Error(e)));
                    return true;
                }
            }
        }
    }
}

/// Runs `data` through one decoder per [`Split`] in lockstep: the first (whole-input)
/// run's step goes to `baseline`, and every other run must produce an equal step — the
/// same event from the same record bytes at the same offset, or the same ending.
fn lockstep<D, B>(data: &[u8], mut make: impl FnMut() -> D, mut baseline: B)
where
    D: EventDecoder,
    B: for<'r> FnMut(&Step<'r, D::Event<'r>>),
{
    let mut runs = Split::all(data).map(|split| Run::new(make(), split, data));
    let (first, others) = runs.split_first_mut().unwrap();
    loop {
        let mut others_ended = [false; 3];
        let ended = first.step(data, |expected| {
            baseline(&expected);
            for (run, ended) in others.iter_mut().zip(&mut others_ended) {
                let split = run.split;
                *ended = run.step(data, |got| {
                    assert!(
                        D::same_step(&expected, &got),
                        "events depend on read split {split:?}: {expected:?} vs {got:?}"
                    );
                });
            }
        });
        assert!(
            others_ended.iter().all(|&other| other == ended),
            "runs ended at different events"
        );
        if ended {
            return;
        }
    }
}

/// Checks a record re-encodes to bytes that decode to the same record.
fn check_record_roundtrip(bytes: &[u8], scratch: &mut Vec<u8>) {
    let Ok(Status::Complete(record, used)) = decode_record(bytes) else {
        panic!("event without a whole record");
    };
    assert!(used <= bytes.len());
    scratch.clear();
    encode_record(
        scratch,
        record.record_type,
        record.request_id,
        record.content,
    )
    .unwrap();
    let Ok(Status::Complete(decoded, used_again)) = decode_record(scratch) else {
        panic!("re-encoded record does not decode");
    };
    assert_eq!(used_again, scratch.len());
    assert_eq!(scratch.len() % 8, 0);
    assert_eq!(
        (decoded.record_type, decoded.request_id, decoded.content),
        (record.record_type, record.request_id, record.content)
    );
}

/// What the CGI head made of a STDOUT stream: how pushing ended (the offset of the body
/// in the last chunk is dropped, since it depends on how the stream was chunked) and every
/// header ferry reads.
type HeadOutcome<'h> = (
    Result<Option<()>, FcgiError>,
    Option<u16>,
    Option<super::cgi::FerryAction>,
    Option<u64>,
    Option<&'h [u8]>,
);

fn head_outcome(head: &CgiHead, result: Result<Option<usize>, FcgiError>) -> HeadOutcome<'_> {
    (
        result.map(|done| done.map(|_| ())),
        head.status(),
        head.ferry_action(),
        head.retry_after_s(),
        head.content_type(),
    )
}

/// Runs `data` as php-fpm's answer to one request (the request id is taken from the
/// first header, so the fuzzer reaches the deep paths).
pub fn check_response(data: &[u8]) {
    let request_id = match data.get(2..4) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 1,
    };
    let mut head = CgiHead::new(FUZZ_HEAD_CAP);
    let mut byte_head = CgiHead::new(FUZZ_HEAD_CAP);
    let mut head_result = Ok(None);
    let mut byte_result = Ok(None);
    let mut scratch = Vec::new();
    lockstep(
        data,
        || ResponseDecoder::new(request_id),
        |step| {
            let Ok((event, record, _)) = step else {
                return;
            };
            check_record_roundtrip(record, &mut scratch);
            check_event_roundtrip(request_id, event, &mut scratch);
            if let ResponseEvent::Stdout(bytes) = *event {
                if matches!(head_result, Ok(None)) {
                    head_result = head.push(bytes);
                    assert!(head.buffered_len() <= head.cap());
                }
                // The same bytes one at a time must reach the same conclusion.
                for byte in bytes.chunks(1) {
                    if !matches!(byte_result, Ok(None)) {
                        break;
                    }
                    byte_result = byte_head.push(byte);
                    assert!(byte_head.buffered_len() <= byte_head.cap());
                }
            }
        },
    );
    assert_eq!(
        head_outcome(&head, head_result),
        head_outcome(&byte_head, byte_result),
        "CGI head depends on how STDOUT was split"
    );
}

/// Re-encodes a response event with the responder's encoders and decodes it again.
fn check_event_roundtrip(request_id: u16, event: &ResponseEvent<'_>, out: &mut Vec<u8>) {
    out.clear();
    match *event {
        ResponseEvent::Stdout(bytes) => encode_stdout(out, request_id, bytes),
        ResponseEvent::Stderr(bytes) => encode_stderr(out, request_id, bytes),
        ResponseEvent::End {
            app_status,
            protocol_status,
        } => encode_end_request(out, request_id, app_status, protocol_status),
        ResponseEvent::DuplicateEnd => return,
    }
    let mut decoder = ResponseDecoder::new(request_id);
    let Ok(Status::Complete(again, used)) = decoder.decode(out) else {
        panic!("re-encoded {event:?} does not decode");
    };
    assert_eq!(used, out.len());
    assert_eq!(&again, event);
}

/// Runs `data` as what a web server sends to a FastCGI application.
pub fn check_request(data: &[u8]) {
    let mut scratch = Vec::new();
    lockstep(
        data,
        || RequestDecoder::new(FUZZ_PARAMS_CAP),
        |step| {
            let Ok((event, record, _)) = step else {
                return;
            };
            if let RequestEvent::Begin {
                request_id,
                role,
                keep_conn,
            } = *event
            {
                check_begin_roundtrip(request_id, role, keep_conn, &mut scratch);
            }
            if let RequestEvent::Params(params) | RequestEvent::GetValues(params) = *event {
                // Validated: iterating visits every byte.
                let pairs = params.iter().count();
                assert!(pairs * 2 <= params.as_bytes().len());
            }
            check_record_roundtrip(record, &mut scratch);
        },
    );
}

fn check_begin_roundtrip(
    request_id: u16,
    role: super::record::Role,
    keep_conn: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    encode_begin_request(out, request_id, role, keep_conn);
    let mut decoder = RequestDecoder::default();
    let Ok(Status::Complete(again, _)) = decoder.decode(out) else {
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
