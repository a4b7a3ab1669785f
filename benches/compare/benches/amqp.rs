//! AMQP 0-9-1: decode 1000 deliveries (basic.deliver + content header + one 128-byte body
//! frame, 3000 frames) frame by frame, as a consumer does; encode 1000 basic.ack frames;
//! encode 1000 publishes (basic.publish + header + body), as `ferry publish` does.
//!
//! One `bench_function` per implementation in each group, ferry's included. Each one runs once untimed and is asserted: decoders
//! on frame count, bytes consumed and the last delivery's tag, message id and body;
//! encoders byte for byte against the hand-written builders in `ferry_compare`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ferry_compare::*;
use std::hint::black_box;

const DELIVERIES: usize = 1000;
const BODY_LEN: usize = 128;

#[derive(Debug, PartialEq)]
struct Decoded {
    frames: usize,
    consumed: usize,
    last_delivery_tag: u64,
    last_message_id: String,
    last_body: Vec<u8>,
}

fn expected(stream: &[u8]) -> Decoded {
    Decoded {
        frames: 3 * DELIVERIES,
        consumed: stream.len(),
        last_delivery_tag: DELIVERIES as u64,
        last_message_id: amqp_message_id(DELIVERIES - 1),
        last_body: payload_for(DELIVERIES - 1, BODY_LEN),
    }
}

mod amq {
    use super::*;
    use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
    use amq_protocol::protocol::basic::{self, AMQPProperties};
    use amq_protocol::protocol::AMQPClass;
    use amq_protocol::types::{AMQPValue, FieldTable, LongString};

    /// `amq_protocol::frame::parse_frame` (nom) on the remaining slice; frames are owned
    /// (`ShortString`s, a `BTreeMap` field table, the body copied into a `Vec<u8>`).
    pub fn decode(stream: &[u8]) -> Decoded {
        let mut rest = stream;
        let mut frames = 0;
        let (mut tag, mut message_id, mut body) = (0, None, Vec::new());
        while !rest.is_empty() {
            let (remaining, frame) = parse_frame(rest).expect("complete, valid frame");
            match frame {
                AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver))) => {
                    tag = deliver.delivery_tag;
                }
                AMQPFrame::Header(1, header) => {
                    assert_eq!(header.body_size, BODY_LEN as u64);
                    message_id = header.properties.message_id().clone();
                }
                AMQPFrame::Body(1, data) => body = data,
                other => panic!("unexpected frame {other:?}"),
            }
            frames += 1;
            rest = remaining;
        }
        Decoded {
            frames,
            consumed: stream.len() - rest.len(),
            last_delivery_tag: tag,
            last_message_id: message_id
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default(),
            last_body: body,
        }
    }

    fn serialize(frame: &AMQPFrame, out: Vec<u8>) -> Vec<u8> {
        gen_frame(frame)(WriteContext::from(out))
            .expect("serializable")
            .write
    }

    /// `gen_frame` (cookie-factory) of `AMQPFrame::Method(.., Basic(Ack))`, appended to one
    /// reused `Vec<u8>`; the frame value is built inside the loop (it holds no heap data).
    pub fn encode_acks(out: &mut Vec<u8>) {
        out.clear();
        let mut buf = std::mem::take(out);
        for tag in 1..=DELIVERIES as u64 {
            let ack = basic::Ack {
                delivery_tag: tag,
                multiple: false,
            };
            let frame =
                AMQPFrame::Method(AMQP_CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)));
            buf = serialize(&frame, buf);
        }
        *out = buf;
    }

    /// The three frames of each publish, built once outside the timed loop (they own
    /// strings, a field table and the body), so only `gen_frame` is timed.
    pub fn publish_frames() -> Vec<[AMQPFrame; 3]> {
        let mut headers = FieldTable::default();
        headers.insert("x-attempt".into(), AMQPValue::LongInt(1));
        headers.insert(
            "x-ferry-source".into(),
            AMQPValue::LongString(LongString::from(AMQP_SOURCE)),
        );
        (0..DELIVERIES)
            .map(|index| {
                let publish = basic::Publish {
                    exchange: AMQP_EXCHANGE.into(),
                    routing_key: AMQP_ROUTING_KEY.into(),
                    mandatory: true,
                    immediate: false,
                };
                let properties = AMQPProperties::default()
                    .with_content_type(AMQP_CONTENT_TYPE.into())
                    .with_headers(headers.clone())
                    .with_delivery_mode(2)
                    .with_message_id(amqp_message_id(index).into())
                    .with_timestamp(AMQP_TIMESTAMP);
                [
                    AMQPFrame::Method(
                        AMQP_CHANNEL,
                        AMQPClass::Basic(basic::AMQPMethod::Publish(publish)),
                    ),
                    AMQPFrame::Header(
                        AMQP_CHANNEL,
                        AMQPContentHeader {
                            class_id: 60,
                            body_size: BODY_LEN as u64,
                            properties,
                        },
                    ),
                    AMQPFrame::Body(AMQP_CHANNEL, payload_for(index, BODY_LEN)),
                ]
            })
            .collect()
    }

    pub fn encode_publishes(frames: &[[AMQPFrame; 3]], out: &mut Vec<u8>) {
        out.clear();
        let mut buf = std::mem::take(out);
        for frame in frames.iter().flatten() {
            buf = serialize(frame, buf);
        }
        *out = buf;
    }
}

mod ferry_impl {
    use super::*;
    use ferry::proto::amqp::{
        decode_frame, encode_content, encode_method_frame, Assembled, BasicAck, BasicProperties,
        BasicPublish, ContentAssembler, FieldValue, FramePayload, Method, TableBuilder,
        CLASS_BASIC,
    };

    /// RabbitMQ's default `frame_max`; every frame is checked against it.
    const FRAME_MAX: u32 = 131_072;

    /// `decode_frame` (envelope, frame-end octet, size vs `frame_max`; a content header is
    /// decoded into `BasicProperties` borrowing the frame, its field table validated but
    /// not copied) + `Method::decode` + the channel's `ContentAssembler` (state checks,
    /// body size vs the header's), as ferry's consumer does. Nothing is copied: the body
    /// is a slice of the input. The assembler is created per stream, as it would be per
    /// channel; a single-frame body never touches its buffer, so it allocates nothing.
    pub fn decode(stream: &[u8]) -> Decoded {
        let mut assembler = ContentAssembler::new(16 << 20);
        let (mut pos, mut frames) = (0, 0);
        let (mut tag, mut message_id, mut body): (u64, Option<&[u8]>, &[u8]) = (0, None, &[]);
        while pos < stream.len() {
            let (frame, used) = decode_frame(&stream[pos..], FRAME_MAX)
                .unwrap()
                .complete()
                .expect("complete frame");
            assert_eq!(frame.channel, AMQP_CHANNEL);
            match frame.payload {
                FramePayload::Method(payload) => {
                    let method = Method::decode(payload).unwrap();
                    match method {
                        Method::BasicDeliver(deliver) => tag = deliver.delivery_tag,
                        other => panic!("unexpected method {other:?}"),
                    }
                    assembler.on_method(&method).unwrap();
                }
                FramePayload::Header(header) => {
                    assert_eq!(header.body_size, BODY_LEN as u64);
                    message_id = header.properties.message_id;
                    assembler.on_header(&header).unwrap();
                }
                FramePayload::BadHeader(bad) => panic!("unreadable header {bad:?}"),
                FramePayload::Body(chunk) => match assembler.on_body(chunk).unwrap() {
                    // The result borrows the assembler (a multi-frame body lives in its
                    // buffer); a single-frame body is the frame's own slice of the input,
                    // which is what is kept here past the next frame.
                    Assembled::Complete(data) => {
                        assert!(std::ptr::eq(data, chunk), "single-frame body borrowed");
                        body = chunk;
                    }
                    Assembled::Pending | Assembled::Discarded => {
                        panic!("single-frame body not complete")
                    }
                },
                FramePayload::Heartbeat => panic!("unexpected heartbeat"),
            }
            frames += 1;
            pos += used;
        }
        Decoded {
            frames,
            consumed: pos,
            last_delivery_tag: tag,
            last_message_id: String::from_utf8(message_id.unwrap_or_default().to_vec()).unwrap(),
            last_body: body.to_vec(),
        }
    }

    /// `encode_method_frame(Method::BasicAck)` appended to one reused `Vec<u8>`.
    pub fn encode_acks(out: &mut Vec<u8>) {
        out.clear();
        for tag in 1..=DELIVERIES as u64 {
            let ack = Method::BasicAck(BasicAck {
                delivery_tag: tag,
                multiple: false,
            });
            encode_method_frame(out, AMQP_CHANNEL, &ack, FRAME_MAX).unwrap();
        }
    }

    /// What a publisher holds before encoding, built once outside the timed loop like
    /// amq-protocol's frames: the headers table (ferry's `TableBuilder` holds it already
    /// encoded, amq-protocol's `FieldTable` is a `BTreeMap` serialized on every frame),
    /// and each message's id and body.
    pub struct PublishInput {
        pub headers: TableBuilder,
        pub messages: Vec<(String, Vec<u8>)>,
    }

    pub fn publish_input() -> PublishInput {
        let mut headers = TableBuilder::new();
        headers.insert(b"x-attempt", FieldValue::I32(1)).unwrap();
        headers
            .insert(
                b"x-ferry-source",
                FieldValue::LongStr(AMQP_SOURCE.as_bytes()),
            )
            .unwrap();
        let messages = (0..DELIVERIES)
            .map(|i| (amqp_message_id(i), payload_for(i, BODY_LEN)))
            .collect();
        PublishInput { headers, messages }
    }

    /// Per message: the `BasicPublish` and `BasicProperties` values (plain borrowed
    /// structs, no heap) are built in the loop, then `encode_method_frame` +
    /// `encode_content` (header frame + body frames split at `frame_max`).
    pub fn encode_publishes(input: &PublishInput, out: &mut Vec<u8>) {
        out.clear();
        let headers = input.headers.as_table();
        for (message_id, body) in &input.messages {
            let publish = Method::BasicPublish(BasicPublish {
                ticket: 0,
                exchange: AMQP_EXCHANGE.as_bytes(),
                routing_key: AMQP_ROUTING_KEY.as_bytes(),
                mandatory: true,
                immediate: false,
            });
            let properties = BasicProperties {
                content_type: Some(AMQP_CONTENT_TYPE.as_bytes()),
                headers: Some(headers),
                delivery_mode: Some(2),
                message_id: Some(message_id.as_bytes()),
                timestamp: Some(AMQP_TIMESTAMP),
                ..Default::default()
            };
            encode_method_frame(out, AMQP_CHANNEL, &publish, FRAME_MAX).unwrap();
            encode_content(out, AMQP_CHANNEL, CLASS_BASIC, &properties, body, FRAME_MAX).unwrap();
        }
    }
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    elements: usize,
    bytes: usize,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::ElementsAndBytes {
        elements: elements as u64,
        bytes: bytes as u64,
    });
    group
}

fn decode_deliveries(c: &mut Criterion) {
    let stream = amqp_delivery_stream(DELIVERIES, BODY_LEN);
    // Elements = frames (3 per delivery).
    let mut group = group(
        c,
        "amqp_decode_deliver_header_body_x1000",
        3 * DELIVERIES,
        stream.len(),
    );

    assert_eq!(
        amq::decode(&stream),
        expected(&stream),
        "amq-protocol decoded the wrong thing"
    );
    group.bench_function("amq-protocol/parse_frame", |b| {
        b.iter(|| amq::decode(black_box(&stream)))
    });

    assert_eq!(
        ferry_impl::decode(&stream),
        expected(&stream),
        "ferry decoded the wrong thing"
    );
    group.bench_function("ferry/decode_frame+Method+ContentAssembler", |b| {
        b.iter(|| ferry_impl::decode(black_box(&stream)))
    });
    group.finish();
}

fn encode_acks(c: &mut Criterion) {
    let reference = amqp_ack_stream(DELIVERIES);
    let mut group = group(
        c,
        "amqp_encode_basic_ack_x1000",
        DELIVERIES,
        reference.len(),
    );

    let mut out = Vec::with_capacity(reference.len());
    amq::encode_acks(&mut out);
    assert_eq!(out, reference, "amq-protocol basic.ack bytes differ");
    group.bench_function("amq-protocol/gen_frame", |b| {
        b.iter(|| amq::encode_acks(black_box(&mut out)))
    });

    ferry_impl::encode_acks(&mut out);
    assert_eq!(out, reference, "ferry basic.ack bytes differ");
    group.bench_function("ferry/encode_method_frame", |b| {
        b.iter(|| ferry_impl::encode_acks(black_box(&mut out)))
    });
    group.finish();
}

fn encode_publishes(c: &mut Criterion) {
    let reference = amqp_publish_stream(DELIVERIES, BODY_LEN);
    // Elements = messages (3 frames each).
    let mut group = group(
        c,
        "amqp_encode_publish_header_body_x1000",
        DELIVERIES,
        reference.len(),
    );

    let frames = amq::publish_frames();
    let mut out = Vec::with_capacity(reference.len());
    amq::encode_publishes(&frames, &mut out);
    assert_eq!(out, reference, "amq-protocol publish bytes differ");
    group.bench_function("amq-protocol/gen_frame", |b| {
        b.iter(|| amq::encode_publishes(black_box(&frames), black_box(&mut out)))
    });

    let input = ferry_impl::publish_input();
    ferry_impl::encode_publishes(&input, &mut out);
    assert_eq!(out, reference, "ferry publish bytes differ");
    group.bench_function("ferry/encode_method_frame+encode_content", |b| {
        b.iter(|| ferry_impl::encode_publishes(black_box(&input), black_box(&mut out)))
    });
    group.finish();
}

criterion_group!(benches, decode_deliveries, encode_acks, encode_publishes);
criterion_main!(benches);
