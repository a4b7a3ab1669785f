//! FastCGI codec tests: table tests, "every strict prefix is Partial", and property tests
//! that the client encoder and the responder decoder (and the responder encoders and the
//! client decoder) agree.

use ferry::proto::fastcgi::record::{self, MAX_CHUNK_LEN};
use ferry::proto::fastcgi::{
    decode_get_values_result, decode_record, encode_end_request, encode_get_values,
    encode_get_values_result, encode_request, encode_stderr, encode_stdout, encode_unknown_type,
    CgiHead, FcgiError, FerryAction, ProtocolStatus, RecordType, RequestDecoder, RequestEvent,
    ResponseDecoder, ResponseEvent, Role,
};
use ferry::proto::Status;
use proptest::prelude::*;

type Pair = (Vec<u8>, Vec<u8>);

/// Everything a RequestDecoder saw, owned.
#[derive(Debug, Default, PartialEq)]
struct DecodedRequest {
    begin: Option<(u16, Role, bool)>,
    params: Vec<Pair>,
    stdin: Vec<u8>,
    stdin_ended: bool,
    params_records: usize,
}

fn decode_request(bytes: &[u8]) -> DecodedRequest {
    let mut decoder = RequestDecoder::new(1 << 20);
    let mut seen = DecodedRequest::default();
    let mut pos = 0;
    while pos < bytes.len() {
        let Status::Complete(event, used) = decoder.decode(&bytes[pos..]).unwrap() else {
            panic!("partial at {pos}");
        };
        match event {
            RequestEvent::Begin {
                request_id,
                role,
                keep_conn,
            } => seen.begin = Some((request_id, role, keep_conn)),
            RequestEvent::ParamsChunk(_) => seen.params_records += 1,
            RequestEvent::Params(params) => {
                seen.params = params
                    .iter()
                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                    .collect()
            }
            RequestEvent::Stdin(bytes) => seen.stdin.extend_from_slice(bytes),
            RequestEvent::StdinEnd => seen.stdin_ended = true,
            other => panic!("unexpected {other:?}"),
        }
        pos += used;
    }
    seen
}

fn encode(params: &[Pair], stdin: &[u8], keep_conn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let pairs = params.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
    encode_request(&mut out, 1, keep_conn, pairs, stdin).unwrap();
    out
}

#[test]
fn request_bytes_match_the_spec() {
    let out = encode(&[(b"A".to_vec(), b"BC".to_vec())], b"hi", true);
    let expected: &[u8] = &[
        1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, // BEGIN responder keep_conn
        1, 4, 0, 1, 0, 5, 3, 0, 1, 2, b'A', b'B', b'C', 0, 0, 0, // PARAMS + padding 3
        1, 4, 0, 1, 0, 0, 0, 0, // empty PARAMS
        1, 5, 0, 1, 0, 2, 6, 0, b'h', b'i', 0, 0, 0, 0, 0, 0, // STDIN
        1, 5, 0, 1, 0, 0, 0, 0, // empty STDIN
    ];
    assert_eq!(out, expected);
}

#[test]
fn empty_request_has_empty_streams() {
    let out = encode(&[], b"", false);
    assert_eq!(out.len(), 16 + 8 + 8);
    assert_eq!(&out[16..24], &[1, 4, 0, 1, 0, 0, 0, 0]);
    assert_eq!(&out[24..32], &[1, 5, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn records_are_padded_and_never_exceed_0xfff8() {
    let stdin = vec![7u8; 200_000];
    let params: Vec<Pair> = (0..40)
        .map(|i| (format!("N{i}").into_bytes(), vec![b'v'; 3000]))
        .collect();
    let out = encode(&params, &stdin, false);
    let mut pos = 0;
    while pos < out.len() {
        let Status::Complete(record, used) = decode_record(&out[pos..]).unwrap() else {
            panic!()
        };
        assert!(record.content.len() <= MAX_CHUNK_LEN);
        assert_eq!(used % 8, 0);
        pos += used;
    }
    let seen = decode_request(&out);
    assert!(
        seen.params_records >= 2,
        "40 × 3 KB of params must span records"
    );
    assert_eq!(seen.params, params);
    assert_eq!(seen.stdin, stdin);
}

#[test]
fn oversized_pair_is_an_error_and_leaves_out_untouched() {
    let mut out = b"keep".to_vec();
    let big = vec![b'x'; MAX_CHUNK_LEN];
    let err = encode_request(&mut out, 1, false, [(&b"K"[..], &big[..])], b"").unwrap_err();
    assert!(matches!(err, FcgiError::PairTooLarge { .. }));
    assert_eq!(out, b"keep");
    let fits = vec![b'x'; MAX_CHUNK_LEN - 1 - 4 - 1];
    encode_request(&mut out, 1, false, [(&b"K"[..], &fits[..])], b"").unwrap();
    assert_eq!(
        encode_request(&mut out, 0, false, [], b""),
        Err(FcgiError::ReservedRequestId)
    );
}

#[test]
fn every_strict_prefix_of_a_record_is_partial() {
    let mut out = Vec::new();
    encode_stdout(&mut out, 1, b"Status: 200\r\n\r\nbody");
    for len in 0..out.len() {
        assert_eq!(
            decode_record(&out[..len]),
            Ok(Status::Partial),
            "prefix {len}"
        );
        assert_eq!(
            ResponseDecoder::new(1).decode(&out[..len]),
            Ok(Status::Partial)
        );
    }
    let request = encode(
        &[(b"SCRIPT_FILENAME".to_vec(), b"/x.php".to_vec())],
        b"body",
        false,
    );
    let mut decoder = RequestDecoder::default();
    let Status::Complete(_, first) = decoder.decode(&request).unwrap() else {
        panic!()
    };
    let second = &request[first..];
    let Status::Complete(params_record, second_len) = decode_record(second).unwrap() else {
        panic!()
    };
    assert_eq!(params_record.record_type, RecordType::Params);
    for len in 0..second_len {
        assert!(
            decoder.decode(&second[..len]).unwrap().is_partial(),
            "prefix {len}"
        );
    }
}

#[test]
fn response_events_in_order() {
    let mut out = Vec::new();
    encode_stderr(&mut out, 1, b"PHP message: oops");
    encode_stdout(&mut out, 1, b"Status: 404 Not Found\r\n\r\n");
    encode_stdout(&mut out, 1, b"");
    encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
    encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
    let mut decoder = ResponseDecoder::new(1);
    let mut events = Vec::new();
    let mut pos = 0;
    while let Status::Complete(event, used) = decoder.decode(&out[pos..]).unwrap() {
        events.push(format!("{event:?}"));
        pos += used;
    }
    assert_eq!(pos, out.len());
    assert_eq!(events.len(), 5);
    assert!(events[2].contains("Stdout([])"));
    assert_eq!(events[4], format!("{:?}", ResponseEvent::DuplicateEnd));
    assert!(decoder.is_ended());
    assert_eq!(decoder.check_eof(&[]), Ok(()));
}

#[test]
fn a_late_end_of_the_previous_request_does_not_end_the_next() {
    let mut decoder = ResponseDecoder::new(1);
    let mut first = Vec::new();
    encode_end_request(&mut first, 1, 0, ProtocolStatus::RequestComplete);
    assert!(matches!(
        decoder.decode(&first).unwrap(),
        Status::Complete(ResponseEvent::End { .. }, _)
    ));
    decoder.reset(2);
    // The recycled child repeats request 1's END_REQUEST before request 2's answer.
    let mut next = first.clone();
    encode_stdout(&mut next, 2, b"Status: 200 OK\r\n\r\n");
    encode_end_request(&mut next, 2, 0, ProtocolStatus::RequestComplete);
    let mut events = Vec::new();
    let mut pos = 0;
    while let Status::Complete(event, used) = decoder.decode(&next[pos..]).unwrap() {
        events.push(format!("{event:?}"));
        pos += used;
    }
    assert_eq!(events[0], format!("{:?}", ResponseEvent::DuplicateEnd));
    assert!(events[1].starts_with("Stdout("), "{events:?}");
    assert!(events[2].starts_with("End {"), "{events:?}");
}

#[test]
fn get_values_roundtrip() {
    let mut out = Vec::new();
    encode_get_values(&mut out, [&b"FCGI_MPXS_CONNS"[..], b"FCGI_MAX_REQS"]).unwrap();
    let mut decoder = RequestDecoder::default();
    let Status::Complete(RequestEvent::GetValues(names), used) = decoder.decode(&out).unwrap()
    else {
        panic!()
    };
    assert_eq!(used, out.len());
    let names: Vec<_> = names.iter().map(|(n, v)| (n, v.len())).collect();
    assert_eq!(
        names,
        vec![(&b"FCGI_MPXS_CONNS"[..], 0), (&b"FCGI_MAX_REQS"[..], 0)]
    );

    let mut answer = Vec::new();
    encode_get_values_result(&mut answer, [(&b"FCGI_MPXS_CONNS"[..], &b"0"[..])]).unwrap();
    let Status::Complete(pairs, _) = decode_get_values_result(&answer).unwrap() else {
        panic!()
    };
    let pairs: Vec<_> = pairs.map(Result::unwrap).collect();
    assert_eq!(pairs, vec![(&b"FCGI_MPXS_CONNS"[..], &b"0"[..])]);

    let mut unknown = Vec::new();
    encode_unknown_type(&mut unknown, 42);
    let Status::Complete(record, _) = decode_record(&unknown).unwrap() else {
        panic!()
    };
    assert_eq!(record.record_type, RecordType::UnknownType);
    assert_eq!(record.content, &[42, 0, 0, 0, 0, 0, 0, 0]);
    let too_many = vec![b'n'; 70_000];
    assert!(encode_get_values(&mut Vec::new(), [&too_many[..]]).is_err());
}

#[test]
fn unknown_management_type_is_reported() {
    let mut decoder = RequestDecoder::default();
    let record = [1, 99, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        decoder.decode(&record),
        Ok(Status::Complete(RequestEvent::UnknownType(99), 8))
    );
}

#[test]
fn filter_role_reads_data_and_abort_resets() {
    let mut out = Vec::new();
    ferry::proto::fastcgi::encode_begin_request(&mut out, 3, Role::Filter, false);
    record::encode_record(&mut out, RecordType::Params, 3, b"").unwrap();
    record::encode_record(&mut out, RecordType::Stdin, 3, b"").unwrap();
    record::encode_record(&mut out, RecordType::Data, 3, b"filtered").unwrap();
    ferry::proto::fastcgi::encode_abort_request(&mut out, 3);
    let mut decoder = RequestDecoder::default();
    let mut pos = 0;
    let mut events = Vec::new();
    while pos < out.len() {
        let Status::Complete(event, used) = decoder.decode(&out[pos..]).unwrap() else {
            panic!()
        };
        events.push(format!("{event:?}"));
        pos += used;
    }
    assert_eq!(events[3], "Data([102, 105, 108, 116, 101, 114, 101, 100])");
    assert_eq!(events[4], "Abort { request_id: 3 }");
    assert_eq!(decoder.active_request(), None);
}

#[test]
fn cgi_head_split_one_byte_per_record() {
    let stdout = b"Status: 429 Too Many\r\nX-FERRY-ACTION: Retry\r\nx-ferry-retry-after: 15\r\n\
                   Content-Type: text/plain\r\n\r\nbody bytes";
    let mut wire = Vec::new();
    for byte in stdout.chunks(1) {
        encode_stdout(&mut wire, 1, byte);
    }
    encode_end_request(&mut wire, 1, 0, ProtocolStatus::RequestComplete);
    let mut decoder = ResponseDecoder::new(1);
    let mut head = CgiHead::default();
    let mut body = 0;
    let mut pos = 0;
    while let Status::Complete(event, used) = decoder.decode(&wire[pos..]).unwrap() {
        pos += used;
        if let ResponseEvent::Stdout(bytes) = event {
            if let Some(head_bytes) = head.push(bytes).unwrap() {
                body += bytes.len() - head_bytes;
            }
        }
    }
    assert_eq!(body, b"body bytes".len());
    assert_eq!(head.status(), Some(429));
    assert_eq!(head.ferry_action(), Some(FerryAction::Retry));
    assert_eq!(head.retry_after_s(), Some(15));
    assert_eq!(head.content_type(), Some(&b"text/plain"[..]));
}

#[test]
fn cgi_head_variants() {
    type Expected = Result<(Option<u16>, Option<FerryAction>), FcgiError>;
    let cases: &[(&[u8], Expected)] = &[
        (b"Content-Type: text/html\r\n\r\n", Ok((None, None))),
        (b"Status: 200\n\n", Ok((Some(200), None))),
        (b"\r\n", Ok((None, None))),
        (
            b"X-Ferry-Action: dead-letter\r\n\r\n",
            Ok((None, Some(FerryAction::DeadLetter))),
        ),
        (
            b"X-Ferry-Action:  ACK \r\n\r\n",
            Ok((None, Some(FerryAction::Ack))),
        ),
        (
            b"X-Ferry-Action: later\r\n\r\n",
            Err(FcgiError::InvalidFerryAction),
        ),
        (b"Status: abc\r\n\r\n", Err(FcgiError::InvalidStatus)),
        (b"Status: 2000\r\n\r\n", Err(FcgiError::InvalidStatus)),
        (b"Status: 099\r\n\r\n", Err(FcgiError::InvalidStatus)),
        (
            b"Status: 200\r\nStatus: 500\r\n\r\n",
            Err(FcgiError::DuplicateHeader("Status")),
        ),
        (
            b"X-Ferry-Retry-After: -1\r\n\r\n",
            Err(FcgiError::InvalidRetryAfter),
        ),
        (
            b"X-Ferry-Retry-After: 99999999999999999999999\r\n\r\n",
            Err(FcgiError::InvalidRetryAfter),
        ),
    ];
    for (input, expected) in cases {
        let mut head = CgiHead::default();
        let got = head
            .push(input)
            .map(|_| (head.status(), head.ferry_action()));
        assert_eq!(&got, expected, "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn cgi_head_reset_reuses_buffer() {
    let mut head = CgiHead::new(64);
    assert_eq!(head.push(b"Status: 500\r\n"), Ok(None));
    assert_eq!(head.push(b"\r\nrest"), Ok(Some(2)));
    assert_eq!(head.push(b"more body"), Ok(Some(0)));
    assert_eq!(head.status_or_200(), 500);
    head.reset();
    assert_eq!(head.push(b"A: b\n\n"), Ok(Some(6)));
    assert_eq!(head.status_or_200(), 200);
}

fn pair_strategy() -> impl Strategy<Value = Pair> {
    let len = prop_oneof![0usize..20, 120usize..140, 1000usize..9000];
    (prop::collection::vec(any::<u8>(), 0..40), len)
        .prop_map(|(name, value_len)| (name, vec![b'v'; value_len]))
}

fn stdin_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(0xFFF8),
        Just(0xFFF9),
        Just(200_000),
        0usize..5000
    ]
    .prop_map(|len| (0..len).map(|i| i as u8).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn encode_request_then_decode(
        params in prop::collection::vec(pair_strategy(), 0..30),
        stdin in stdin_strategy(),
        keep_conn in any::<bool>(),
    ) {
        let out = encode(&params, &stdin, keep_conn);
        let seen = decode_request(&out);
        prop_assert_eq!(seen.begin, Some((1, Role::Responder, keep_conn)));
        prop_assert_eq!(seen.params, params);
        prop_assert_eq!(seen.stdin, stdin);
        prop_assert!(seen.stdin_ended);
    }

    #[test]
    fn responder_encoders_then_response_decoder(
        chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 0..20),
        app_status in any::<u32>(),
        request_id in 1u16..,
    ) {
        let mut out = Vec::new();
        for (is_stderr, bytes) in &chunks {
            if *is_stderr {
                encode_stderr(&mut out, request_id, bytes);
            } else {
                encode_stdout(&mut out, request_id, bytes);
            }
        }
        encode_end_request(&mut out, request_id, app_status, ProtocolStatus::Overloaded);
        let mut decoder = ResponseDecoder::new(request_id);
        let mut pos = 0;
        for (is_stderr, bytes) in &chunks {
            let Status::Complete(event, used) = decoder.decode(&out[pos..]).unwrap() else { panic!() };
            let expected = if *is_stderr {
                ResponseEvent::Stderr(bytes)
            } else {
                ResponseEvent::Stdout(bytes)
            };
            prop_assert_eq!(event, expected);
            pos += used;
        }
        let end = decoder.decode(&out[pos..]).unwrap();
        prop_assert_eq!(
            end,
            Status::Complete(
                ResponseEvent::End { app_status, protocol_status: ProtocolStatus::Overloaded },
                16
            )
        );
    }
}

/// The head buffer starts small and grows only as far as a long head needs, never past
/// its cap (10,000 requests in flight once reserved 16 KiB each up front).
#[test]
fn cgi_head_buffer_grows_on_demand_up_to_its_cap() {
    let cap = 16 * 1024;
    let mut head = CgiHead::new(cap);
    assert!(head.capacity() <= ferry::proto::fastcgi::cgi::INITIAL_HEAD_CAPACITY);
    let mut text = Vec::new();
    for i in 0..120 {
        text.extend_from_slice(format!("X-Header-{i:03}: {}\r\n", "v".repeat(100)).as_bytes());
    }
    text.extend_from_slice(b"Status: 202 Accepted\r\n\r\nbody");
    let mut result = None;
    for chunk in text.chunks(7) {
        if let Some(used) = head.push(chunk).unwrap() {
            result = Some(used);
            break;
        }
    }
    assert!(result.is_some(), "the head ended");
    assert_eq!(head.status(), Some(202));
    assert!(head.capacity() >= head.buffered_len());
    assert!(
        head.capacity() <= cap,
        "capacity {} over the cap",
        head.capacity()
    );
}
