//! Hostile inputs: each must give its typed error, never a panic, never an allocation
//! sized by the peer.

use ferry::proto::amqp::*;
use ferry::proto::Status;

use crate::alloc_count::allocated_bytes;

const FRAME_MAX: u32 = 4096;

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(0xCE);
    v
}

fn method_payload(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut v = class.to_be_bytes().to_vec();
    v.extend_from_slice(&method.to_be_bytes());
    v.extend_from_slice(args);
    v
}

fn frame_err(bytes: &[u8]) -> AmqpError {
    decode_frame(bytes, FRAME_MAX).expect_err("must be refused")
}

/// A header frame whose properties do not decode is a per-message error: the frame is
/// still consumed (the stream stays in step) and carries why.
fn bad_header_err(bytes: &[u8]) -> AmqpError {
    match decode_frame(bytes, FRAME_MAX) {
        Ok(Status::Complete(
            Frame {
                payload: FramePayload::BadHeader(bad),
                ..
            },
            used,
        )) if used == bytes.len() => bad.error,
        other => panic!("expected a bad header, got {other:?}"),
    }
}

fn method_err(payload: &[u8]) -> AmqpError {
    Method::decode(payload).expect_err("must be refused")
}

/// A header payload: class 60, weight 0, body size, then `props`.
fn header_payload(body_size: u64, props: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 60, 0, 0];
    v.extend_from_slice(&body_size.to_be_bytes());
    v.extend_from_slice(props);
    v
}

#[test]
fn wrong_frame_end() {
    let mut f = frame(1, 0, &method_payload(10, 51, &[]));
    *f.last_mut().unwrap() = 0xCD;
    assert_eq!(frame_err(&f), AmqpError::BadFrameEnd(0xCD));
}

#[test]
fn size_over_frame_max_refused_from_header_alone() {
    // Only the 7-byte header: no payload yet, the decoder must not wait for it.
    let header = [1, 0, 1, 0, 0, 0x0F, 0xF9]; // 4089 + 8 > 4096
    assert_eq!(
        frame_err(&header),
        AmqpError::FrameTooLarge {
            size: 4089,
            frame_max: FRAME_MAX
        }
    );
    let header = [3, 0, 1, 0, 0, 0x0F, 0xF8]; // 4088 + 8 == 4096: wait for it
    assert_eq!(decode_frame(&header, FRAME_MAX), Ok(Status::Partial));
}

#[test]
fn size_u32_max() {
    let header = [3, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        frame_err(&header),
        AmqpError::FrameTooLarge {
            size: u32::MAX,
            frame_max: FRAME_MAX
        }
    );
    assert_eq!(
        decode_frame(&header, u32::MAX).unwrap_err(),
        AmqpError::FrameTooLarge {
            size: u32::MAX,
            frame_max: u32::MAX
        }
    );
}

#[test]
fn unknown_frame_type() {
    assert_eq!(frame_err(&[4]), AmqpError::UnknownFrameType(4));
    assert_eq!(
        frame_err(&[0, 0, 0, 0, 0, 0, 0, 0xCE]),
        AmqpError::UnknownFrameType(0)
    );
    assert_eq!(frame_err(b"AMQX"), AmqpError::UnknownFrameType(b'A'));
}

#[test]
fn server_protocol_header_is_a_version_mismatch() {
    assert_eq!(decode_frame(b"AMQP\0\0", FRAME_MAX), Ok(Status::Partial));
    assert_eq!(
        frame_err(b"AMQP\x00\x01\x00\x00"),
        AmqpError::ProtocolVersionMismatch {
            protocol_id: 0,
            major: 1,
            minor: 0,
            revision: 0
        }
    );
}

#[test]
fn heartbeat_on_channel_5() {
    assert_eq!(
        frame_err(&frame(8, 5, &[])),
        AmqpError::HeartbeatOnChannel(5)
    );
    assert_eq!(
        frame_err(&frame(8, 0, &[1])),
        AmqpError::HeartbeatWithPayload(1)
    );
}

#[test]
fn method_payload_shorter_than_4() {
    assert_eq!(method_err(&[0, 10, 0]), AmqpError::MethodTooShort(3));
    assert_eq!(method_err(&[]), AmqpError::MethodTooShort(0));
}

#[test]
fn unknown_class_or_method() {
    assert_eq!(
        method_err(&method_payload(60, 61, &[])),
        AmqpError::UnknownMethod {
            class: 60,
            method: 61
        }
    );
    assert_eq!(
        method_err(&method_payload(99, 10, &[])),
        AmqpError::UnknownMethod {
            class: 99,
            method: 10
        }
    );
}

#[test]
fn shortstr_length_beyond_payload() {
    // basic.consume-ok with a consumer tag announced as 200 bytes, 3 present.
    assert_eq!(
        method_err(&method_payload(60, 21, &[200, b'a', b'b', b'c'])),
        AmqpError::Truncated("shortstr")
    );
}

#[test]
fn longstr_length_u32_max() {
    let before = allocated_bytes();
    let err = method_err(&method_payload(10, 21, &[0xFF, 0xFF, 0xFF, 0xFF, b'x']));
    assert_eq!(err, AmqpError::Truncated("longstr"));
    assert!(allocated_bytes() - before < 1024);
}

#[test]
fn table_length_beyond_payload() {
    // queue.declare: ticket, queue "q", bits, arguments announced as 100 bytes, 2 present.
    let args = [0, 0, 1, b'q', 0, 0, 0, 0, 100, b'a', b'b'];
    assert_eq!(
        method_err(&method_payload(50, 10, &args)),
        AmqpError::Truncated("table")
    );
    // A nested table whose length exceeds its parent.
    assert_eq!(
        FieldTable::parse(&[1, b'k', b'F', 0, 0, 0, 9, 0]).unwrap_err(),
        AmqpError::Truncated("table")
    );
}

#[test]
fn table_with_unknown_type_octet() {
    assert_eq!(
        FieldTable::parse(&[1, b'k', b'Z', 0]).unwrap_err(),
        AmqpError::UnknownFieldType(b'Z')
    );
    // Short strings ('s' in the spec's own table) are signed shorts for RabbitMQ: a
    // 'U' (the spec's u64) is unknown.
    assert_eq!(
        FieldTable::parse(&[1, b'k', b'U', 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
        AmqpError::UnknownFieldType(b'U')
    );
}

#[test]
fn nesting_bomb_of_tables() {
    // 10 000 nested tables, each `k F <len>` wrapping the next.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let mut outer = vec![1, b'k', b'F'];
        outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    assert_eq!(
        FieldTable::parse(&inner).unwrap_err(),
        AmqpError::TableTooDeep
    );
    // Arrays count too.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..1_000 {
        let mut outer = vec![b'A'];
        outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    assert_eq!(
        FieldArray::parse(&inner).unwrap_err(),
        AmqpError::TableTooDeep
    );
}

#[test]
fn header_body_size_2_pow_63_allocates_nothing() {
    let bytes = frame(2, 1, &header_payload(1 << 63, &[0, 0]));
    let mut assembler = ContentAssembler::new(16 << 20);
    assembler
        .on_method(&Method::BasicDeliver(BasicDeliver::default()))
        .unwrap();
    let before = allocated_bytes();
    let Status::Complete(frame, _) = decode_frame(&bytes, FRAME_MAX).unwrap() else {
        panic!()
    };
    let FramePayload::Header(header) = frame.payload else {
        panic!()
    };
    let err = assembler.on_header(&header).unwrap_err();
    assert_eq!(
        allocated_bytes(),
        before,
        "allocated for a hostile body size"
    );
    assert_eq!(
        err,
        AmqpError::BodyTooLarge {
            size: 1 << 63,
            max: 16 << 20
        }
    );
}

#[test]
fn body_frames_exceeding_declared_size() {
    let mut assembler = ContentAssembler::new(1 << 20);
    assembler
        .on_method(&Method::BasicDeliver(BasicDeliver::default()))
        .unwrap();
    let payload = header_payload(10, &[0, 0]);
    let header = ContentHeader::decode(&payload).unwrap();
    assert_eq!(assembler.on_header(&header), Ok(Assembled::Pending));
    assert_eq!(assembler.on_body(b"123456"), Ok(Assembled::Pending));
    assert_eq!(
        assembler.on_body(b"789012").unwrap_err(),
        AmqpError::BodyOverrun {
            expected: 10,
            received: 12
        }
    );
    // A single oversized frame, too.
    let mut assembler = ContentAssembler::new(1 << 20);
    assembler
        .on_method(&Method::BasicDeliver(BasicDeliver::default()))
        .unwrap();
    assembler.on_header(&header).unwrap();
    assert_eq!(
        assembler.on_body(&[0; 11]).unwrap_err(),
        AmqpError::BodyOverrun {
            expected: 10,
            received: 11
        }
    );
}

#[test]
fn frames_out_of_order_during_content() {
    let mut assembler = ContentAssembler::new(1 << 20);
    assert_eq!(
        assembler.on_body(b"x").unwrap_err(),
        AmqpError::UnexpectedFrame("body frame")
    );
    let payload = header_payload(4, &[0, 0]);
    let header = ContentHeader::decode(&payload).unwrap();
    assert_eq!(
        assembler.on_header(&header).unwrap_err(),
        AmqpError::UnexpectedFrame("content header")
    );
    assembler
        .on_method(&Method::BasicDeliver(BasicDeliver::default()))
        .unwrap();
    assert_eq!(
        assembler
            .on_method(&Method::BasicAck(BasicAck::default()))
            .unwrap_err(),
        AmqpError::UnexpectedFrame("method frame")
    );
    let mut wrong_class = header;
    wrong_class.class_id = 50;
    assert_eq!(
        assembler.on_header(&wrong_class).unwrap_err(),
        AmqpError::ContentClassMismatch {
            expected: 60,
            found: 50
        }
    );
}

#[test]
fn property_flags_with_continuation_bit() {
    let bytes = frame(2, 1, &header_payload(0, &[0x80, 0x01, 0]));
    assert_eq!(bad_header_err(&bytes), AmqpError::PropertyFlagsContinuation);
}

#[test]
fn trailing_garbage_after_args() {
    // basic.ack: delivery tag + bits, then one extra byte.
    let args = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0xAA];
    assert_eq!(
        method_err(&method_payload(60, 80, &args)),
        AmqpError::TrailingBytes("method")
    );
    assert_eq!(
        bad_header_err(&frame(2, 1, &header_payload(0, &[0, 0, 7]))),
        AmqpError::TrailingBytes("content header")
    );
}

#[test]
fn properties_running_past_the_header() {
    // content-type flag set, shortstr length 50, nothing after.
    assert_eq!(
        bad_header_err(&frame(2, 1, &header_payload(0, &[0x80, 0, 50]))),
        AmqpError::Truncated("shortstr")
    );
}

#[test]
fn encoders_refuse_what_the_peer_would() {
    let long = vec![b'q'; 256];
    let mut out = vec![9];
    let m = Method::BasicConsumeOk(BasicConsumeOk {
        consumer_tag: &long,
    });
    assert_eq!(
        encode_method_frame(&mut out, 1, &m, FRAME_MAX).unwrap_err(),
        AmqpError::ShortStrTooLong(256)
    );
    assert_eq!(out, [9], "output restored");
    let big = vec![0; 5000];
    let m = Method::ConnectionSecureOk(ConnectionSecureOk { response: &big });
    assert_eq!(
        encode_method_frame(&mut out, 0, &m, FRAME_MAX).unwrap_err(),
        AmqpError::FrameTooLarge {
            size: 5008,
            frame_max: FRAME_MAX
        }
    );
    assert_eq!(out, [9]);
    let props = BasicProperties::default();
    assert_eq!(
        encode_content(&mut out, 1, 60, &props, b"x", 8).unwrap_err(),
        AmqpError::FrameMaxTooSmall(8)
    );
}

#[test]
fn a_poisoned_header_costs_one_message_not_the_connection() {
    // A publisher's headers table nested 40 deep (RabbitMQ passes it through as is).
    let mut table: Vec<u8> = Vec::new();
    for _ in 0..40 {
        let mut outer = vec![1, b'k', b'F'];
        outer.extend_from_slice(&(table.len() as u32).to_be_bytes());
        outer.extend_from_slice(&table);
        table = outer;
    }
    let mut props = vec![0x20, 0x00]; // headers flag
    props.extend_from_slice(&(table.len() as u32).to_be_bytes());
    props.extend_from_slice(&table);
    let deliver = method_payload(60, 60, &[1, b'c', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, b'q']);
    let mut stream = frame(1, 1, &deliver);
    stream.extend(frame(2, 1, &header_payload(5, &props)));
    stream.extend(frame(3, 1, b"he"));
    stream.extend(frame(3, 1, b"llo"));
    // The next message is intact.
    stream.extend(frame(1, 1, &deliver));
    stream.extend(frame(2, 1, &header_payload(2, &[0, 0])));
    stream.extend(frame(3, 1, b"ok"));

    let mut assembler = ContentAssembler::new(1 << 20);
    let mut outcomes = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let Status::Complete(frame, used) = decode_frame(&stream[pos..], FRAME_MAX).unwrap() else {
            panic!("whole frames")
        };
        pos += used;
        let assembled = match frame.payload {
            FramePayload::Method(p) => {
                assembler.on_method(&Method::decode(p).unwrap()).unwrap();
                Assembled::Pending
            }
            FramePayload::Header(h) => assembler.on_header(&h).unwrap(),
            FramePayload::BadHeader(bad) => {
                assert_eq!(bad.error, AmqpError::TableTooDeep);
                assert_eq!((bad.class_id, bad.body_size), (60, 5));
                assembler.discard(bad.body_size).unwrap()
            }
            FramePayload::Body(chunk) => assembler.on_body(chunk).unwrap(),
            FramePayload::Heartbeat => Assembled::Pending,
        };
        match assembled {
            Assembled::Complete(body) => outcomes.push(String::from_utf8_lossy(body).into_owned()),
            Assembled::Discarded => outcomes.push("discarded".into()),
            Assembled::Pending => {}
        }
    }
    assert_eq!(outcomes, ["discarded", "ok"]);
}

#[test]
fn frame_max_zero_means_no_limit() {
    let big = frame(3, 1, &vec![0; 200_000]);
    assert!(matches!(decode_frame(&big, 0), Ok(Status::Complete(_, n)) if n == big.len()));
    let mut out = Vec::new();
    encode_content(
        &mut out,
        1,
        60,
        &BasicProperties::default(),
        &[1; 300_000],
        0,
    )
    .unwrap();
    assert!(matches!(decode_frame(&out, 0), Ok(Status::Complete(_, _))));
}
