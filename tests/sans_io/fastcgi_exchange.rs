//! Scripted conversations for `proto::fastcgi::Exchange`: real php-fpm answers captured
//! in `tests/data/fastcgi/` fed whole and split at every byte, STDERR capping, a large
//! STDOUT body discarded, timeouts on a fake clock, EOF cases and hostile input.

use std::time::{Duration, Instant};

use ferry::proto::fastcgi::{
    encode_end_request, encode_request, encode_stderr, encode_stdout, Ending, Exchange,
    ExchangeEvent, ExchangeOptions, FcgiError, FerryAction, Finished, ProtocolStatus, RecordType,
    STDERR_EXCERPT_CAP,
};

use crate::data;

const TIMEOUT: Duration = Duration::from_secs(60);

fn request_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(
        &mut out,
        1,
        false,
        [(&b"SCRIPT_FILENAME"[..], &b"/w.php"[..])],
        b"x=1",
    )
    .unwrap();
    out
}

fn new_exchange(options: ExchangeOptions, now: Instant) -> Exchange {
    let mut exchange = Exchange::new(request_bytes(), options, now);
    let mut out = Vec::new();
    exchange.poll_transmit(&mut out);
    assert_eq!(out, request_bytes());
    exchange
}

/// Feeds `chunks` as successive reads into a read buffer the way the reactor does: append,
/// hand the whole unread part over, drop what was used. Returns the finished summary.
fn converse<'a>(
    exchange: &mut Exchange,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    now: Instant,
) -> Result<Option<Finished>, FcgiError> {
    let mut buffer = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        let used = exchange.handle_input(&buffer, now)?;
        assert!(used <= buffer.len());
        buffer.drain(..used);
    }
    assert!(buffer.is_empty(), "unused bytes left: {}", buffer.len());
    Ok(take_finished(exchange))
}

fn take_finished(exchange: &mut Exchange) -> Option<Finished> {
    let event = exchange.poll_event();
    assert_eq!(exchange.poll_event(), None, "one event only");
    event.map(|ExchangeEvent::Finished(finished)| finished)
}

fn whole_and_every_split(bytes: &[u8], check: impl Fn(&Finished)) {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let finished = converse(&mut exchange, [bytes], now).unwrap().unwrap();
    check(&finished);
    let whole = finished;
    for split in 0..=bytes.len() {
        let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
        let (a, b) = bytes.split_at(split);
        let finished = converse(&mut exchange, [a, b], now).unwrap().unwrap();
        assert_eq!(finished, whole, "split at {split}");
    }
    // And one byte per read.
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let finished = converse(&mut exchange, bytes.chunks(1), now)
        .unwrap()
        .unwrap();
    assert_eq!(finished, whole, "byte by byte");
}

const COMPLETE: Ending = Ending::EndRequest {
    app_status: 0,
    protocol_status: ProtocolStatus::RequestComplete,
};

#[test]
fn captured_normal_response() {
    whole_and_every_split(&data::read("fastcgi/normal.response.bin"), |f| {
        assert_eq!(f.ending, COMPLETE);
        assert!(f.head_complete);
        assert_eq!(f.status, None);
        assert_eq!(f.action, Some(FerryAction::Retry));
        assert_eq!(f.retry_after_s, Some(30));
        assert_eq!(
            f.stdout_body_bytes,
            br#"{"post":{"name":"ferry","n":"42","tags":["a b"]},"attempt":"1"}"#.len() as u64
        );
        assert_eq!(f.stderr.total_bytes, 0);
        assert_eq!(f.stderr.lines, 0);
        assert!(f.any_response_byte);
        assert!(!f.reusable, "no KEEP_CONN");
    });
}

#[test]
fn captured_stderr_response() {
    whole_and_every_split(&data::read("fastcgi/stderr.response.bin"), |f| {
        assert_eq!(f.ending, COMPLETE);
        assert_eq!(
            f.stderr.excerpt,
            b"PHP message: ferry capture: something went wrong"
        );
        assert_eq!(f.stderr.total_bytes, 48);
        assert_eq!(f.stderr.lines, 1);
        assert!(!f.stderr.truncated());
        assert_eq!(f.action, Some(FerryAction::DeadLetter));
        assert_eq!(f.stdout_body_bytes, br#"{"ok":false}"#.len() as u64);
    });
}

#[test]
fn captured_status_503() {
    whole_and_every_split(&data::read("fastcgi/status_503.response.bin"), |f| {
        assert_eq!(f.ending, COMPLETE);
        assert_eq!(f.status, Some(503));
        assert_eq!(f.action, None);
        assert_eq!(f.stdout_body_bytes, br#"{"busy":true}"#.len() as u64);
    });
}

#[test]
fn captured_missing_script() {
    whole_and_every_split(&data::read("fastcgi/missing_script.response.bin"), |f| {
        assert_eq!(f.ending, COMPLETE);
        assert_eq!(f.status, Some(404));
        assert_eq!(f.stderr.excerpt, b"Primary script unknown");
        assert!(f.stderr.contains(b"Primary script unknown"));
        assert_eq!(f.stdout_body_bytes, b"File not found.\n".len() as u64);
    });
}

#[test]
fn poll_transmit_hands_the_request_over_once() {
    let now = Instant::now();
    // Empty output buffer: swapped, not copied.
    let mut exchange = Exchange::new(request_bytes(), ExchangeOptions::new(TIMEOUT), now);
    let mut out = Vec::with_capacity(7);
    exchange.poll_transmit(&mut out);
    assert_eq!(out, request_bytes());
    let recycled = exchange.take_request_buffer();
    assert!(recycled.is_empty());
    assert_eq!(recycled.capacity(), 7);
    exchange.poll_transmit(&mut out);
    assert_eq!(out, request_bytes(), "nothing more");
    // Non-empty output buffer: appended.
    let mut exchange = Exchange::new(request_bytes(), ExchangeOptions::new(TIMEOUT), now);
    let mut out = b"before".to_vec();
    exchange.poll_transmit(&mut out);
    assert_eq!(&out[..6], b"before");
    assert_eq!(&out[6..], &request_bytes()[..]);
}

#[test]
fn one_megabyte_of_stderr_is_capped_and_counted() {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let line = b"PHP message: a warning that goes on and on and on\n";
    let mut sent = 0u64;
    let mut lines = 0u64;
    let mut buffer = Vec::new();
    let mut record = Vec::new();
    // 1 MiB of STDERR in records of ~16 KiB, fed one record at a time: the exchange never
    // sees more than one record at once, and must hold no more than its excerpt.
    while sent < 1 << 20 {
        record.clear();
        let mut chunk = Vec::new();
        while chunk.len() + line.len() <= 16 * 1024 {
            chunk.extend_from_slice(line);
            lines += 1;
        }
        sent += chunk.len() as u64;
        encode_stderr(&mut record, 1, &chunk);
        buffer.extend_from_slice(&record);
        let used = exchange.handle_input(&buffer, now).unwrap();
        buffer.drain(..used);
        assert!(
            exchange.held_bytes() <= exchange.options().head_cap + STDERR_EXCERPT_CAP,
            "held {}",
            exchange.held_bytes()
        );
    }
    record.clear();
    encode_stdout(&mut record, 1, b"Status: 500\r\n\r\n");
    encode_end_request(&mut record, 1, 0, ProtocolStatus::RequestComplete);
    let finished = converse(&mut exchange, [&record[..]], now)
        .unwrap()
        .unwrap();
    assert_eq!(finished.stderr.excerpt.len(), STDERR_EXCERPT_CAP);
    assert_eq!(finished.stderr.excerpt.capacity(), STDERR_EXCERPT_CAP);
    assert!(finished.stderr.excerpt.starts_with(line));
    assert_eq!(finished.stderr.total_bytes, sent);
    assert_eq!(finished.stderr.lines, lines);
    assert!(finished.stderr.truncated());
    assert_eq!(finished.status, Some(500));
}

#[test]
fn ten_megabytes_of_stdout_are_counted_and_discarded() {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let mut record = Vec::new();
    encode_stdout(
        &mut record,
        1,
        b"Content-Type: text/plain\r\n\r\nfirst body bytes",
    );
    converse(&mut exchange, [&record[..]], now).unwrap();
    let chunk = vec![b'x'; 0xFFF8];
    record.clear();
    encode_stdout(&mut record, 1, &chunk);
    let mut body = "first body bytes".len() as u64;
    let held = exchange.held_bytes();
    assert!(held <= exchange.options().head_cap);
    while body < 10 << 20 {
        assert_eq!(exchange.handle_input(&record, now).unwrap(), record.len());
        body += chunk.len() as u64;
        assert_eq!(exchange.held_bytes(), held, "the body is never buffered");
    }
    record.clear();
    encode_end_request(&mut record, 1, 0, ProtocolStatus::RequestComplete);
    let finished = converse(&mut exchange, [&record[..]], now)
        .unwrap()
        .unwrap();
    assert_eq!(finished.stdout_body_bytes, body);
    assert_eq!(finished.status, None);
    assert!(finished.head_complete);
}

#[test]
fn request_timeout_on_a_fake_clock() {
    let start = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(Duration::from_millis(1500)), start);
    assert_eq!(
        exchange.poll_timeout(),
        Some(start + Duration::from_millis(1500))
    );
    // Some output, then silence.
    let mut record = Vec::new();
    encode_stdout(&mut record, 1, b"Status: 200\r\n");
    converse(
        &mut exchange,
        [&record[..]],
        start + Duration::from_millis(10),
    )
    .unwrap();
    // A spurious early wake-up changes nothing.
    exchange.handle_timeout(start + Duration::from_millis(1499));
    assert_eq!(exchange.poll_event(), None);
    assert!(!exchange.is_finished());
    exchange.handle_timeout(start + Duration::from_millis(1500));
    let finished = take_finished(&mut exchange).unwrap();
    assert_eq!(finished.ending, Ending::TimedOut);
    assert!(!finished.head_complete);
    assert!(!finished.reusable);
    assert_eq!(finished.duration, Duration::from_millis(1500));
    assert_eq!(exchange.poll_timeout(), None);
    // Later timeouts and EOF change nothing.
    exchange.handle_timeout(start + Duration::from_secs(5));
    exchange.handle_eof(start + Duration::from_secs(5));
    assert_eq!(exchange.poll_event(), None);
}

#[test]
fn eof_before_any_response_byte() {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    // An empty read is not a response byte.
    assert_eq!(exchange.handle_input(&[], now).unwrap(), 0);
    exchange.handle_eof(now + Duration::from_millis(3));
    let finished = take_finished(&mut exchange).unwrap();
    assert_eq!(finished.ending, Ending::ClosedBeforeResponse);
    assert!(!finished.any_response_byte);
    assert_eq!(finished.duration, Duration::from_millis(3));
}

#[test]
fn eof_inside_a_record_counts_as_a_response_byte() {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let wire = data::read("fastcgi/normal.response.bin");
    // Three bytes of a header: nothing decodable, but the peer did answer.
    assert_eq!(exchange.handle_input(&wire[..3], now).unwrap(), 0);
    exchange.handle_eof(now);
    let finished = take_finished(&mut exchange).unwrap();
    assert_eq!(finished.ending, Ending::ClosedMidResponse);
    assert!(finished.any_response_byte);
}

#[test]
fn eof_after_some_stdout() {
    // php-fpm's request_terminate_timeout: the child dies, the client sees EOF.
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let mut record = Vec::new();
    encode_stdout(&mut record, 1, b"Content-Type: text/html\r\n\r\npartial");
    converse(&mut exchange, [&record[..]], now).unwrap();
    exchange.handle_eof(now);
    let finished = take_finished(&mut exchange).unwrap();
    assert_eq!(finished.ending, Ending::ClosedMidResponse);
    assert!(finished.head_complete);
    assert_eq!(finished.stdout_body_bytes, 7);
}

#[test]
fn eof_after_end_request_is_normal() {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let finished = converse(
        &mut exchange,
        [&data::read("fastcgi/normal.response.bin")[..]],
        now,
    )
    .unwrap()
    .unwrap();
    assert_eq!(finished.ending, COMPLETE);
    exchange.handle_eof(now);
    assert_eq!(exchange.poll_event(), None);
    assert!(exchange.is_finished());
}

fn keep_conn() -> ExchangeOptions {
    ExchangeOptions {
        keep_conn: true,
        ..ExchangeOptions::new(TIMEOUT)
    }
}

#[test]
fn kept_connection_is_reusable_and_tolerates_a_duplicate_end() {
    let now = Instant::now();
    let mut exchange = new_exchange(keep_conn(), now);
    let finished = converse(
        &mut exchange,
        [&data::read("fastcgi/status_503.response.bin")[..]],
        now,
    )
    .unwrap()
    .unwrap();
    assert!(finished.reusable);
    assert!(exchange.is_reusable());
    // A duplicate END_REQUEST, later (pm.max_requests recycling a child).
    let mut dup = Vec::new();
    encode_end_request(&mut dup, 1, 0, ProtocolStatus::RequestComplete);
    assert_eq!(exchange.handle_input(&dup, now).unwrap(), dup.len());
    assert_eq!(exchange.poll_event(), None);
    assert!(exchange.is_reusable());
    // Anything else after the end: an error, and the connection is done for.
    let mut stray = Vec::new();
    encode_stdout(&mut stray, 1, b"late");
    assert_eq!(
        exchange.handle_input(&stray, now),
        Err(FcgiError::DataAfterEnd {
            record_type: RecordType::Stdout
        })
    );
    assert_eq!(exchange.poll_event(), None);
    assert!(!exchange.is_reusable());
}

#[test]
fn duplicate_end_in_the_same_read() {
    let now = Instant::now();
    let mut exchange = new_exchange(keep_conn(), now);
    let mut wire = data::read("fastcgi/status_503.response.bin");
    encode_end_request(&mut wire, 1, 0, ProtocolStatus::RequestComplete);
    let finished = converse(&mut exchange, [&wire[..]], now).unwrap().unwrap();
    assert!(finished.reusable);
    assert!(exchange.is_reusable());
}

#[test]
fn kept_connection_closed_after_end_is_not_reusable() {
    let now = Instant::now();
    let mut exchange = new_exchange(keep_conn(), now);
    converse(
        &mut exchange,
        [&data::read("fastcgi/normal.response.bin")[..]],
        now,
    )
    .unwrap();
    exchange.handle_eof(now);
    assert!(!exchange.is_reusable());
}

#[test]
fn refused_requests_are_not_reusable() {
    for status in [ProtocolStatus::Overloaded, ProtocolStatus::CantMpxConn] {
        let now = Instant::now();
        let mut exchange = new_exchange(keep_conn(), now);
        let mut wire = Vec::new();
        encode_end_request(&mut wire, 1, 0, status);
        let finished = converse(&mut exchange, [&wire[..]], now).unwrap().unwrap();
        assert_eq!(
            finished.ending,
            Ending::EndRequest {
                app_status: 0,
                protocol_status: status
            }
        );
        assert!(!finished.head_complete);
        assert!(!finished.reusable);
    }
}

/// Hostile answers: each is a typed error, the exchange ends as malformed, and the
/// summary still carries what arrived before.
#[test]
fn hostile_answers_end_as_malformed() {
    let cases: Vec<(&str, Vec<u8>, FcgiError)> = vec![
        (
            "version 2",
            vec![2, 6, 0, 1, 0, 0, 0, 0],
            FcgiError::UnsupportedVersion(2),
        ),
        (
            "other request id",
            {
                let mut w = Vec::new();
                encode_stdout(&mut w, 7, b"Status: 200\r\n\r\n");
                w
            },
            FcgiError::WrongRequestId {
                expected: 1,
                found: 7,
            },
        ),
        (
            "a request record",
            vec![1, 5, 0, 1, 0, 0, 0, 0],
            FcgiError::UnexpectedRecord {
                record_type: RecordType::Stdin,
                expected: "STDOUT, STDERR or END_REQUEST",
            },
        ),
        (
            "bad status",
            {
                let mut w = Vec::new();
                encode_stdout(&mut w, 1, b"Status: abc\r\n\r\n");
                w
            },
            FcgiError::InvalidStatus,
        ),
        (
            "unknown action",
            {
                let mut w = Vec::new();
                encode_stdout(&mut w, 1, b"X-Ferry-Action: maybe\r\n\r\n");
                w
            },
            FcgiError::InvalidFerryAction,
        ),
        (
            "headers without end",
            {
                let mut w = Vec::new();
                let line = [b'h'; 0xFFF0];
                for _ in 0..2 {
                    encode_stdout(&mut w, 1, &line);
                }
                w
            },
            FcgiError::HeadersTooLarge { cap: 16 * 1024 },
        ),
        (
            "unknown protocol status",
            vec![1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0],
            FcgiError::UnknownProtocolStatus(9),
        ),
    ];
    for (name, wire, expected) in cases {
        let now = Instant::now();
        let mut exchange = new_exchange(keep_conn(), now);
        let mut stderr = Vec::new();
        encode_stderr(&mut stderr, 1, b"before the garbage");
        assert_eq!(exchange.handle_input(&stderr, now), Ok(stderr.len()));
        assert_eq!(exchange.handle_input(&wire, now), Err(expected), "{name}");
        let finished = take_finished(&mut exchange).unwrap();
        assert_eq!(finished.ending, Ending::Malformed(expected), "{name}");
        assert_eq!(finished.stderr.excerpt, b"before the garbage", "{name}");
        assert!(!finished.reusable, "{name}");
        assert!(exchange.is_finished());
        assert_eq!(exchange.poll_timeout(), None);
    }
}

#[test]
fn end_request_before_the_head_ended() {
    let now = Instant::now();
    let mut exchange = new_exchange(ExchangeOptions::new(TIMEOUT), now);
    let mut wire = Vec::new();
    encode_stdout(&mut wire, 1, b"Status: 200\r\n");
    encode_end_request(&mut wire, 1, 0, ProtocolStatus::RequestComplete);
    let finished = converse(&mut exchange, [&wire[..]], now).unwrap().unwrap();
    assert_eq!(finished.ending, COMPLETE);
    assert!(
        !finished.head_complete,
        "classified as malformed by dispatch"
    );
}
