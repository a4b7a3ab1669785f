//! Hostile peers: malformed FastCGI from a "server" (php-fpm side, decoded by the client
//! role) and from a "web server" (decoded by the responder role). Each case must give one
//! typed error — never a panic, never a wait for bytes a length merely claims, never more
//! memory than the decoder's cap.

use ferry::proto::fastcgi::record::RecordType;
use ferry::proto::fastcgi::{
    encode_begin_request, encode_stdout, CgiHead, FcgiError, NameValuePairs, RequestDecoder,
    ResponseDecoder, ResponseEvent, Role,
};
use ferry::proto::Status;

/// A record header followed by `content` and `padding` zero bytes.
fn record(version: u8, record_type: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
    let len = content.len() as u16;
    let mut out = vec![
        version,
        record_type,
        (id >> 8) as u8,
        id as u8,
        (len >> 8) as u8,
        len as u8,
        padding,
        0,
    ];
    out.extend_from_slice(content);
    out.resize(out.len() + usize::from(padding), 0);
    out
}

/// Runs a response decoder for request 1 over `bytes` until an error, Partial or the end.
fn response_outcome(bytes: &[u8]) -> Result<Status<()>, FcgiError> {
    let mut decoder = ResponseDecoder::new(1);
    let mut pos = 0;
    loop {
        match decoder.decode(&bytes[pos..])? {
            Status::Complete(_, used) => pos += used,
            Status::Partial => return Ok(Status::Partial),
        }
        if pos == bytes.len() {
            return Ok(Status::Complete((), pos));
        }
    }
}

fn request_outcome(bytes: &[u8]) -> Result<Status<()>, FcgiError> {
    let mut decoder = RequestDecoder::new(4096);
    let mut pos = 0;
    loop {
        match decoder.decode(&bytes[pos..])? {
            Status::Complete(_, used) => pos += used,
            Status::Partial => return Ok(Status::Partial),
        }
        if pos == bytes.len() {
            return Ok(Status::Complete((), pos));
        }
    }
}

fn begin(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    encode_begin_request(&mut out, id, Role::Responder, false);
    out
}

fn end_request(id: u16) -> Vec<u8> {
    record(1, 3, id, &[0, 0, 0, 0, 0, 0, 0, 0], 0)
}

#[test]
fn server_side_hostile_table() {
    let cases: Vec<(&str, Vec<u8>, FcgiError)> = vec![
        (
            "version 2",
            record(2, 6, 1, b"x", 7),
            FcgiError::UnsupportedVersion(2),
        ),
        (
            "version 0",
            record(0, 6, 1, b"", 0),
            FcgiError::UnsupportedVersion(0),
        ),
        (
            "unknown record type from a server",
            record(1, 42, 1, b"", 0),
            FcgiError::UnexpectedRecord {
                record_type: RecordType::Other(42),
                expected: "STDOUT, STDERR or END_REQUEST",
            },
        ),
        (
            "END_REQUEST with content length 3",
            record(1, 3, 1, &[0, 0, 0], 5),
            FcgiError::BadContentLength {
                record_type: RecordType::EndRequest,
                length: 3,
            },
        ),
        (
            "END_REQUEST with protocol status 9",
            record(1, 3, 1, &[0, 0, 0, 0, 9, 0, 0, 0], 0),
            FcgiError::UnknownProtocolStatus(9),
        ),
        (
            "STDOUT for another request id",
            record(1, 6, 2, b"Status: 200\r\n\r\n", 0),
            FcgiError::WrongRequestId {
                expected: 1,
                found: 2,
            },
        ),
        (
            "BEGIN_REQUEST from a server",
            begin(1),
            FcgiError::UnexpectedRecord {
                record_type: RecordType::BeginRequest,
                expected: "STDOUT, STDERR or END_REQUEST",
            },
        ),
        (
            "STDOUT after END_REQUEST",
            [end_request(1), record(1, 6, 1, b"late", 4)].concat(),
            FcgiError::DataAfterEnd {
                record_type: RecordType::Stdout,
            },
        ),
        (
            "END_REQUEST for another id after END_REQUEST",
            [end_request(1), end_request(7)].concat(),
            FcgiError::DataAfterEnd {
                record_type: RecordType::EndRequest,
            },
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(response_outcome(&bytes), Err(expected), "{name}");
    }
}

#[test]
fn duplicate_end_request_is_tolerated() {
    let bytes = [end_request(1), end_request(1)].concat();
    let mut decoder = ResponseDecoder::new(1);
    assert!(matches!(
        decoder.decode(&bytes),
        Ok(Status::Complete(ResponseEvent::End { .. }, 8 | 16))
    ));
    assert_eq!(
        decoder.decode(&bytes[16..]),
        Ok(Status::Complete(ResponseEvent::DuplicateEnd, 16))
    );
}

#[test]
fn padding_lie_is_partial_then_truncated_at_eof() {
    // The header promises 7 bytes of padding; the stream ends after the content. While the
    // connection is open this is only "need more bytes"; at EOF it is a truncated record.
    let mut bytes = record(1, 6, 1, b"X", 7);
    bytes.truncate(8 + 1);
    let decoder = ResponseDecoder::new(1);
    assert_eq!(response_outcome(&bytes), Ok(Status::Partial));
    assert_eq!(decoder.check_eof(&bytes), Err(FcgiError::TruncatedRecord));
    assert_eq!(decoder.check_eof(&[]), Err(FcgiError::MissingEndRequest));
}

#[test]
fn name_value_length_claiming_2_pow_31_minus_1() {
    // Four-byte name length 0x7FFFFFFF with 4 bytes behind it: truncated, no wait.
    let buf = [0xFF, 0xFF, 0xFF, 0xFF, 0x01, b'a', b'b', b'c'];
    let got: Vec<_> = NameValuePairs::new(&buf).collect();
    assert_eq!(got, vec![Err(FcgiError::NameValueTruncated)]);
    // The same in a PARAMS stream of a request: the error comes at the empty PARAMS.
    let bytes = [begin(1), record(1, 4, 1, &buf, 0), record(1, 4, 1, b"", 0)].concat();
    assert_eq!(request_outcome(&bytes), Err(FcgiError::NameValueTruncated));
}

#[test]
fn four_byte_length_with_top_bit_clear_is_two_short_lengths() {
    // 0x00 0x00 0x00 0x05: the top bit of the first byte is clear, so this is a one-byte
    // name length 0 and a one-byte value length 0, then a pair whose lengths (0, 5) run
    // past the end: truncated.
    let buf = [0x00, 0x00, 0x00, 0x05, b'v'];
    let got: Vec<_> = NameValuePairs::new(&buf).collect();
    assert_eq!(
        got,
        vec![Ok((&b""[..], &b""[..])), Err(FcgiError::NameValueTruncated)]
    );
}

#[test]
fn megabyte_of_cgi_headers_without_blank_line() {
    let line =
        b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut head = CgiHead::new(16 * 1024);
    let mut wire = Vec::new();
    let mut sent = 0;
    while sent < 1 << 20 {
        encode_stdout(&mut wire, 1, line);
        sent += line.len();
    }
    let mut decoder = ResponseDecoder::new(1);
    let mut pos = 0;
    let mut outcome = Ok(None);
    while let Ok(Status::Complete(ResponseEvent::Stdout(bytes), used)) =
        decoder.decode(&wire[pos..])
    {
        pos += used;
        outcome = head.push(bytes);
        assert!(head.buffered_len() <= 16 * 1024);
        if outcome.is_err() {
            break;
        }
    }
    assert_eq!(outcome, Err(FcgiError::HeadersTooLarge { cap: 16 * 1024 }));
    assert!(
        pos < 20 * 1024,
        "the error came as soon as the cap was passed"
    );
}

#[test]
fn malformed_cgi_header_lines() {
    for (input, what) in [
        (&b"Bad Header Name: x\r\n\r\n"[..], "space in name"),
        (&b"NoColonHere\r\n\r\n"[..], "no colon"),
        (&b"Status: 200\rX: y\r\n\r\n"[..], "bare CR"),
    ] {
        let mut head = CgiHead::default();
        assert!(
            matches!(head.push(input), Err(FcgiError::MalformedHeaders(_))),
            "{what}"
        );
    }
    let mut head = CgiHead::default();
    assert_eq!(
        head.push(b"Status: abc\r\n\r\n"),
        Err(FcgiError::InvalidStatus)
    );
}

#[test]
fn responder_side_hostile_table() {
    let unknown_role = record(1, 1, 1, &[0, 7, 0, 0, 0, 0, 0, 0], 0);
    let cases: Vec<(&str, Vec<u8>, FcgiError)> = vec![
        (
            "BEGIN_REQUEST with unknown role",
            unknown_role,
            FcgiError::UnknownRole {
                request_id: 1,
                role: 7,
            },
        ),
        (
            "BEGIN_REQUEST with content length 5",
            record(1, 1, 1, &[0, 1, 0, 0, 0], 3),
            FcgiError::BadContentLength {
                record_type: RecordType::BeginRequest,
                length: 5,
            },
        ),
        (
            "PARAMS before BEGIN",
            record(1, 4, 1, &[1, 1, b'a', b'b'], 4),
            FcgiError::UnexpectedRecord {
                record_type: RecordType::Params,
                expected: "PARAMS after BEGIN_REQUEST",
            },
        ),
        (
            "second BEGIN for the same id",
            [begin(1), begin(1)].concat(),
            FcgiError::DuplicateBegin { request_id: 1 },
        ),
        (
            "BEGIN for a second id while one is active",
            [begin(1), begin(2)].concat(),
            FcgiError::CantMultiplex {
                active: 1,
                request_id: 2,
            },
        ),
        (
            "STDIN before the PARAMS stream ended",
            [begin(1), record(1, 5, 1, b"body", 4)].concat(),
            FcgiError::UnexpectedRecord {
                record_type: RecordType::Stdin,
                expected: "STDIN after the PARAMS stream",
            },
        ),
        (
            "GET_VALUES with request id 1",
            record(1, 9, 1, &[15, 0], 6),
            FcgiError::ManagementRecordWithRequestId {
                record_type: RecordType::GetValues,
                request_id: 1,
            },
        ),
        (
            "BEGIN_REQUEST with request id 0",
            record(1, 1, 0, &[0, 1, 0, 0, 0, 0, 0, 0], 0),
            FcgiError::RequestIdZero {
                record_type: RecordType::BeginRequest,
            },
        ),
        (
            "PARAMS for another request id",
            [begin(1), record(1, 4, 9, b"", 0)].concat(),
            FcgiError::WrongRequestId {
                expected: 1,
                found: 9,
            },
        ),
        (
            "STDOUT sent to an application",
            [begin(1), record(1, 6, 1, b"", 0)].concat(),
            FcgiError::UnexpectedRecord {
                record_type: RecordType::Stdout,
                expected: "a record a web server sends (BEGIN, ABORT, PARAMS, STDIN, DATA)",
            },
        ),
        (
            "PARAMS stream larger than the cap",
            [
                begin(1),
                record(1, 4, 1, &[b'p'; 3000], 0),
                record(1, 4, 1, &[b'p'; 3000], 0),
            ]
            .concat(),
            FcgiError::ParamsTooLarge { cap: 4096 },
        ),
        (
            "ABORT_REQUEST with no request active",
            record(1, 2, 1, b"", 0),
            FcgiError::UnexpectedRecord {
                record_type: RecordType::AbortRequest,
                expected: "an active request to abort",
            },
        ),
        (
            "GET_VALUES with a truncated pair",
            record(1, 9, 0, &[15, 0, b'F'], 5),
            FcgiError::NameValueTruncated,
        ),
        (
            "version 2 at the responder",
            record(2, 1, 1, &[0; 8], 0),
            FcgiError::UnsupportedVersion(2),
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(request_outcome(&bytes), Err(expected), "{name}");
    }
}

#[test]
fn padding_of_any_length_is_accepted() {
    // The spec only recommends 8-byte alignment: 255 bytes of padding is legal.
    let bytes = [begin(1), record(1, 4, 1, b"", 255)].concat();
    assert_eq!(
        request_outcome(&bytes),
        Ok(Status::Complete((), bytes.len()))
    );
}
