//! Table tests for every RESP2/RESP3 type, "every strict prefix is Partial", resumption
//! across tiny reads, the reply encoders, and the decode∘encode property.

use ferry::proto::resp::{
    self, decode, encode_command, format_double, Decoder, Frame, Limits, RespError, Version,
};
use ferry::proto::Status;
use proptest::prelude::*;

fn one(bytes: &[u8]) -> Result<Status<Frame<'_>>, RespError> {
    decode(bytes, &Limits::default())
}

fn complete(bytes: &[u8]) -> Frame<'_> {
    match one(bytes) {
        Ok(Status::Complete(frame, used)) => {
            assert_eq!(used, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
            frame
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

/// Valid frames of every type, as Redis (or the RESP3 spec) writes them.
const VALID: &[&[u8]] = &[
    b"+OK\r\n",
    b"+\r\n",
    b"-ERR unknown command 'x'\r\n",
    b":0\r\n",
    b":-9223372036854775808\r\n",
    b":9223372036854775807\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$4\r\na\r\nb\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$3\r\nfoo\r\n:1\r\n",
    b"_\r\n",
    b"#t\r\n",
    b"#f\r\n",
    b",1.5\r\n",
    b",inf\r\n",
    b",-inf\r\n",
    b",nan\r\n",
    b",10\r\n",
    b",1e-05\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"(-12\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"=4\r\nmkd:\r\n",
    b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
    b"~3\r\n+a\r\n+b\r\n:3\r\n",
    b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n",
    b">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n",
    b"*3\r\n*2\r\n:1\r\n:2\r\n%1\r\n+k\r\n~1\r\n_\r\n>0\r\n",
    b"*1\r\n*1\r\n*1\r\n*0\r\n",
];

#[test]
fn every_valid_frame_decodes_whole() {
    for bytes in VALID {
        complete(bytes);
    }
}

#[test]
fn every_strict_prefix_is_partial() {
    for bytes in VALID {
        for end in 0..bytes.len() {
            assert_eq!(
                one(&bytes[..end]),
                Ok(Status::Partial),
                "prefix {end} of {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn resumed_byte_by_byte_equals_one_shot() {
    let stream: Vec<u8> = VALID.concat();
    let mut decoder = Decoder::default();
    let mut start = 0;
    let mut frames = 0;
    let mut end = start;
    while start < stream.len() {
        end += 1;
        match decoder.decode(&stream[start..end]).unwrap() {
            Status::Partial => assert!(end < stream.len()),
            Status::Complete(frame, used) => {
                assert_eq!(used, end - start);
                assert_eq!(frame, complete(VALID[frames]));
                frames += 1;
                start = end;
            }
        }
    }
    assert_eq!(frames, VALID.len());
}

#[test]
fn leaf_values() {
    assert_eq!(complete(b"+OK\r\n"), Frame::SimpleString(b"OK"));
    assert_eq!(complete(b"-ERR x\r\n"), Frame::Error(b"ERR x"));
    assert_eq!(
        complete(b":-9223372036854775808\r\n"),
        Frame::Integer(i64::MIN)
    );
    assert_eq!(complete(b":007\r\n"), Frame::Integer(7));
    assert_eq!(complete(b"$4\r\na\r\nb\r\n"), Frame::BulkString(b"a\r\nb"));
    assert_eq!(complete(b"$-1\r\n"), Frame::NullBulk);
    assert_eq!(complete(b"*-1\r\n"), Frame::NullArray);
    assert_eq!(complete(b"_\r\n"), Frame::Null);
    assert!(complete(b"_\r\n").is_null());
    assert_eq!(complete(b"#t\r\n"), Frame::Boolean(true));
    assert_eq!(complete(b",1.5\r\n"), Frame::Double(1.5));
    assert_eq!(complete(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
    assert!(matches!(complete(b",nan\r\n"), Frame::Double(d) if d.is_nan()));
    assert_eq!(complete(b"(-12\r\n"), Frame::BigNumber(b"-12"));
    assert_eq!(complete(b"!3\r\nERR\r\n"), Frame::BulkError(b"ERR"));
    assert_eq!(
        complete(b"=15\r\ntxt:Some string\r\n"),
        Frame::Verbatim {
            format: b"txt",
            text: b"Some string"
        }
    );
}

#[test]
fn aggregates_are_lazy_views() {
    let frame = complete(b"*3\r\n*2\r\n:1\r\n:2\r\n%1\r\n+k\r\n~1\r\n_\r\n>0\r\n");
    let Frame::Array(array) = frame else {
        panic!("{frame:?}")
    };
    assert_eq!(array.len(), 3);
    let elements: Vec<Frame> = array.iter().collect();
    assert_eq!(elements.len(), 3);
    let Frame::Array(inner) = elements[0] else {
        panic!()
    };
    assert_eq!(
        inner.iter().collect::<Vec<_>>(),
        [Frame::Integer(1), Frame::Integer(2)]
    );
    let Frame::Map(map) = elements[1] else {
        panic!()
    };
    assert_eq!(map.len(), 1);
    assert_eq!(map.element_count(), 2);
    let (key, value) = map.pairs().next().unwrap();
    assert_eq!(key, Frame::SimpleString(b"k"));
    let Frame::Set(set) = value else { panic!() };
    assert_eq!(set.iter().collect::<Vec<_>>(), [Frame::Null]);
    let Frame::Push(push) = elements[2] else {
        panic!()
    };
    assert!(push.is_empty());
}

#[test]
fn attribute_is_its_own_frame_before_the_reply() {
    let bytes = b"|1\r\n+ttl\r\n:3600\r\n$3\r\nbar\r\n";
    let Ok(Status::Complete(Frame::Attribute(attribute), used)) = one(bytes) else {
        panic!()
    };
    assert_eq!(
        attribute.pairs().collect::<Vec<_>>(),
        [(Frame::SimpleString(b"ttl"), Frame::Integer(3600))]
    );
    assert_eq!(complete(&bytes[used..]), Frame::BulkString(b"bar"));
    assert_eq!(one(b"*1\r\n|0\r\n:1\r\n"), Err(RespError::NestedAttribute));
}

#[test]
fn invalid_table() {
    let cases: &[(&[u8], RespError)] = &[
        (b"?x\r\n", RespError::UnknownType(b'?')),
        (b"+a\rb\r\n", RespError::BadLineEnd),
        (b":\r\n", RespError::BadInteger),
        (b":12a\r\n", RespError::BadInteger),
        (b":+5\r\n", RespError::BadInteger),
        (b":9223372036854775808\r\n", RespError::IntegerOverflow),
        (b":-9223372036854775809\r\n", RespError::IntegerOverflow),
        (b"$-2\r\n", RespError::NegativeLength),
        (b"$?\r\n", RespError::StreamedNotSupported),
        (b"$x\r\n", RespError::BadInteger),
        (b"$3\r\nabcd\r\n", RespError::BadBulkEnd),
        (b"$3\r\nabc\rx", RespError::BadBulkEnd),
        (b"!-1\r\n", RespError::NegativeLength),
        (b"=-1\r\n", RespError::NegativeLength),
        (b"=3\r\ntxt\r\n", RespError::BadVerbatim),
        (b"=5\r\ntxtx1\r\n", RespError::BadVerbatim),
        (b"%-1\r\n", RespError::NegativeLength),
        (b"~-1\r\n", RespError::NegativeLength),
        (b">-1\r\n", RespError::NegativeLength),
        (b"_x\r\n", RespError::BadNull),
        (b"#x\r\n", RespError::BadBoolean),
        (b"#\r\n", RespError::BadBoolean),
        (b"#tt\r\n", RespError::LineTooLong),
        (b",abc\r\n", RespError::BadDouble),
        (b",\r\n", RespError::BadDouble),
        (b"(12a\r\n", RespError::BadBigNumber),
        (b"(\r\n", RespError::BadBigNumber),
        (b"*1\r\n?\r\n", RespError::UnknownType(b'?')),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            one(bytes),
            Err(*error),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        // The resumable decoder finds the same error byte by byte.
        let mut decoder = Decoder::default();
        let found = (1..=bytes.len()).find_map(|end| decoder.decode(&bytes[..end]).err());
        assert_eq!(found, Some(*error), "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn limits_apply() {
    let limits = Limits {
        max_bulk_len: 4,
        max_elements: 2,
        max_depth: 2,
        max_line_len: 8,
    };
    assert!(decode(b"$4\r\nabcd\r\n", &limits).is_ok());
    assert_eq!(decode(b"$5\r\n", &limits), Err(RespError::BulkTooLong));
    assert_eq!(decode(b"!5\r\n", &limits), Err(RespError::BulkTooLong));
    assert_eq!(decode(b"*3\r\n", &limits), Err(RespError::TooManyElements));
    assert_eq!(decode(b"%2\r\n", &limits), Err(RespError::TooManyElements));
    assert!(decode(b"%1\r\n:1\r\n:2\r\n", &limits).is_ok());
    assert!(decode(b"*1\r\n*0\r\n", &limits).is_ok());
    assert_eq!(
        decode(b"*1\r\n*1\r\n*0\r\n", &limits),
        Err(RespError::TooDeep)
    );
    assert_eq!(decode(b"+123456789", &limits), Err(RespError::LineTooLong));
    assert_eq!(decode(b"+12345678", &limits), Ok(Status::Partial));
    assert!(decode(b"+12345678\r\n", &limits).is_ok());
}

#[test]
fn decoder_resets_after_error_and_after_complete() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode(b"*2\r\n:1\r\n"), Ok(Status::Partial));
    assert!(!decoder.is_idle());
    assert_eq!(
        decoder.decode(b"*2\r\n:1\r\n?"),
        Err(RespError::UnknownType(b'?'))
    );
    assert!(decoder.is_idle());
    assert_eq!(
        decoder.decode(b":5\r\n"),
        Ok(Status::Complete(Frame::Integer(5), 4))
    );
    let Ok(Status::Complete(Frame::Array(array), 12)) = decoder.decode(b"*2\r\n:1\r\n:2\r\n")
    else {
        panic!()
    };
    assert_eq!(array.len(), 2);
    assert!(decoder.is_idle());
}

#[test]
fn shrunk_buffer_is_an_error() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode(b"*2\r\n:1\r\n"), Ok(Status::Partial));
    assert_eq!(decoder.decode(b"*2\r\n"), Err(RespError::BufferShrunk));
}

#[test]
fn command_encoding() {
    let mut out = Vec::new();
    encode_command(&mut out, [&b"PUBLISH"[..], b"chan", b""]);
    assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$0\r\n\r\n");
    out.clear();
    encode_command(&mut out, vec!["SUBSCRIBE".to_string(), "a".repeat(12)]);
    assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$12\r\naaaaaaaaaaaa\r\n");
}

type Encoder = dyn Fn(&mut Vec<u8>, Version);

#[test]
fn reply_encoders_in_both_versions() {
    let cases: Vec<(Box<Encoder>, &[u8], &[u8])> = vec![
        (
            Box::new(|o, _| resp::simple_string(o, b"OK")),
            b"+OK\r\n",
            b"+OK\r\n",
        ),
        (
            Box::new(|o, _| resp::error(o, b"ERR a\r\nb")),
            b"-ERR a  b\r\n",
            b"-ERR a  b\r\n",
        ),
        (
            Box::new(|o, _| resp::integer(o, -42)),
            b":-42\r\n",
            b":-42\r\n",
        ),
        (
            Box::new(|o, _| resp::integer(o, i64::MIN)),
            b":-9223372036854775808\r\n",
            b":-9223372036854775808\r\n",
        ),
        (
            Box::new(|o, _| resp::bulk_string(o, b"hi")),
            b"$2\r\nhi\r\n",
            b"$2\r\nhi\r\n",
        ),
        (Box::new(resp::null), b"$-1\r\n", b"_\r\n"),
        (Box::new(resp::null_array), b"*-1\r\n", b"_\r\n"),
        (
            Box::new(|o, v| resp::boolean(o, v, true)),
            b":1\r\n",
            b"#t\r\n",
        ),
        (
            Box::new(|o, v| resp::double(o, v, 1.5)),
            b"$3\r\n1.5\r\n",
            b",1.5\r\n",
        ),
        (
            Box::new(|o, v| resp::double(o, v, f64::INFINITY)),
            b"$3\r\ninf\r\n",
            b",inf\r\n",
        ),
        (
            Box::new(|o, v| resp::big_number(o, v, b"123")),
            b"$3\r\n123\r\n",
            b"(123\r\n",
        ),
        (
            Box::new(|o, v| resp::bulk_error(o, v, b"ERR x")),
            b"-ERR x\r\n",
            b"!5\r\nERR x\r\n",
        ),
        (
            Box::new(|o, v| resp::verbatim(o, v, b"txt", b"hi")),
            b"$2\r\nhi\r\n",
            b"=6\r\ntxt:hi\r\n",
        ),
        (
            Box::new(|o, _| resp::array_header(o, 2)),
            b"*2\r\n",
            b"*2\r\n",
        ),
        (
            Box::new(|o, v| resp::set_header(o, v, 2)),
            b"*2\r\n",
            b"~2\r\n",
        ),
        (
            Box::new(|o, v| resp::map_header(o, v, 2)),
            b"*4\r\n",
            b"%2\r\n",
        ),
        (
            Box::new(|o, v| resp::push_header(o, v, 3)),
            b"*3\r\n",
            b">3\r\n",
        ),
        (
            Box::new(|o, v| {
                let _ = resp::attribute_header(o, v, 1);
            }),
            b"",
            b"|1\r\n",
        ),
    ];
    for (encode, resp2, resp3) in cases {
        let mut out = Vec::new();
        encode(&mut out, Version::Resp2);
        assert_eq!(out, resp2, "{:?}", String::from_utf8_lossy(&out));
        out.clear();
        encode(&mut out, Version::Resp3);
        assert_eq!(out, resp3, "{:?}", String::from_utf8_lossy(&out));
    }
}

#[test]
fn doubles_format_like_redis_7_0() {
    // Expected strings are C's printf("%.17g"), as Redis 7.0's addReplyDouble writes.
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (-0.0, "-0"),
        (1.5, "1.5"),
        (123.0, "123"),
        (0.1, "0.10000000000000001"),
        (0.0001, "0.0001"),
        (1e-5, "1.0000000000000001e-05"),
        (1e20, "1e+20"),
        (1e16, "10000000000000000"),
        (1e17, "1e+17"),
        (123456789012345678.0, "1.2345678901234568e+17"),
        (-3.25, "-3.25"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (5e-324, "4.9406564584124654e-324"),
        (f64::NAN, "nan"),
        (f64::NEG_INFINITY, "-inf"),
    ];
    for &(value, text) in cases {
        let mut buf = [0u8; 32];
        assert_eq!(
            std::str::from_utf8(format_double(value, &mut buf)).unwrap(),
            text,
            "{value:e}"
        );
    }
}

/// An owned frame, for generating values to round-trip.
#[derive(Debug, Clone)]
enum Owned {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Vec<u8>),
    NullBulk,
    NullArray,
    Null,
    Boolean(bool),
    Double(f64),
    Big(Vec<u8>),
    BulkError(Vec<u8>),
    Verbatim(Vec<u8>),
    Array(Vec<Owned>),
    Set(Vec<Owned>),
    Map(Vec<(Owned, Owned)>),
    Push(Vec<Owned>),
}

impl Owned {
    fn encode(&self, out: &mut Vec<u8>) {
        let v = Version::Resp3;
        match self {
            Owned::Simple(s) => resp::simple_string(out, s),
            Owned::Error(s) => resp::error(out, s),
            Owned::Integer(i) => resp::integer(out, *i),
            Owned::Bulk(b) => resp::bulk_string(out, b),
            Owned::NullBulk => resp::null(out, Version::Resp2),
            Owned::NullArray => resp::null_array(out, Version::Resp2),
            Owned::Null => resp::null(out, v),
            Owned::Boolean(b) => resp::boolean(out, v, *b),
            Owned::Double(d) => resp::double(out, v, *d),
            Owned::Big(d) => resp::big_number(out, v, d),
            Owned::BulkError(b) => resp::bulk_error(out, v, b),
            Owned::Verbatim(t) => resp::verbatim(out, v, b"txt", t),
            Owned::Array(items) | Owned::Set(items) | Owned::Push(items) => {
                match self {
                    Owned::Array(_) => resp::array_header(out, items.len()),
                    Owned::Set(_) => resp::set_header(out, v, items.len()),
                    _ => resp::push_header(out, v, items.len()),
                }
                items.iter().for_each(|item| item.encode(out));
            }
            Owned::Map(pairs) => {
                resp::map_header(out, v, pairs.len());
                for (key, value) in pairs {
                    key.encode(out);
                    value.encode(out);
                }
            }
        }
    }

    fn matches(&self, frame: &Frame) -> bool {
        let all = |items: &[Owned], aggregate: &resp::Aggregate| {
            aggregate.len() == items.len()
                && aggregate.iter().count() == items.len()
                && items
                    .iter()
                    .zip(aggregate.iter())
                    .all(|(o, f)| o.matches(&f))
        };
        match (self, frame) {
            (Owned::Simple(a), Frame::SimpleString(b))
            | (Owned::Error(a), Frame::Error(b))
            | (Owned::Bulk(a), Frame::BulkString(b))
            | (Owned::Big(a), Frame::BigNumber(b))
            | (Owned::BulkError(a), Frame::BulkError(b)) => a == b,
            (Owned::Verbatim(a), Frame::Verbatim { format, text }) => {
                *format == b"txt" && a == text
            }
            (Owned::Integer(a), Frame::Integer(b)) => a == b,
            (Owned::NullBulk, Frame::NullBulk)
            | (Owned::NullArray, Frame::NullArray)
            | (Owned::Null, Frame::Null) => true,
            (Owned::Boolean(a), Frame::Boolean(b)) => a == b,
            (Owned::Double(a), Frame::Double(b)) => {
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
            }
            (Owned::Array(items), Frame::Array(agg))
            | (Owned::Set(items), Frame::Set(agg))
            | (Owned::Push(items), Frame::Push(agg)) => all(items, agg),
            (Owned::Map(pairs), Frame::Map(agg)) => {
                agg.len() == pairs.len()
                    && agg.pairs().count() == pairs.len()
                    && pairs
                        .iter()
                        .zip(agg.pairs())
                        .all(|((k, v), (fk, fv))| k.matches(&fk) && v.matches(&fv))
            }
            _ => false,
        }
    }
}

fn line_text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..20,
    )
}

fn owned() -> impl Strategy<Value = Owned> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    let leaf = prop_oneof![
        line_text().prop_map(Owned::Simple),
        line_text().prop_map(Owned::Error),
        any::<i64>().prop_map(Owned::Integer),
        bytes().prop_map(Owned::Bulk),
        Just(Owned::NullBulk),
        Just(Owned::NullArray),
        Just(Owned::Null),
        any::<bool>().prop_map(Owned::Boolean),
        any::<f64>().prop_map(Owned::Double),
        "-?[0-9]{1,60}".prop_map(|s| Owned::Big(s.into_bytes())),
        bytes().prop_map(Owned::BulkError),
        bytes().prop_map(Owned::Verbatim),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Owned::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Owned::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Owned::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Owned::Map),
        ]
    })
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity(value in owned()) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let frame = complete(&bytes);
        prop_assert!(value.matches(&frame), "{value:?} vs {frame:?}");
        // And the frame's own encoder re-encodes to the same bytes.
        let mut again = Vec::new();
        frame.encode(&mut again);
        prop_assert_eq!(&again, &bytes);
        // Resumable decoding in 3-byte reads agrees.
        let mut decoder = Decoder::default();
        let mut end = 0;
        loop {
            end = (end + 3).min(bytes.len());
            match decoder.decode(&bytes[..end]).unwrap() {
                Status::Partial => prop_assert!(end < bytes.len()),
                Status::Complete(resumed, used) => {
                    prop_assert_eq!(used, bytes.len());
                    prop_assert_eq!(resumed, frame);
                    break;
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        ferry::proto::resp::invariants::check(&bytes);
    }
}

#[test]
fn huge_reply_in_tiny_reads_is_not_rescanned() {
    // 200 000 elements fed 7 bytes at a time: ~300 000 calls. A decoder that restarted
    // from the frame's start on every call would do ~10^11 steps and never finish here.
    let mut bytes = Vec::new();
    resp::array_header(&mut bytes, 200_000);
    for i in 0..200_000 {
        resp::integer(&mut bytes, i);
    }
    let mut decoder = Decoder::default();
    let mut end = 0;
    let started = std::time::Instant::now();
    let array = loop {
        end = (end + 7).min(bytes.len());
        if let Status::Complete(Frame::Array(array), used) = decoder.decode(&bytes[..end]).unwrap()
        {
            assert_eq!(used, bytes.len());
            break array;
        }
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(array.len(), 200_000);
    assert_eq!(array.iter().last(), Some(Frame::Integer(199_999)));
}
