//! The hot path allocates nothing: decoding a stream of basic.deliver + content header +
//! single-frame body triples, their methods, properties and header tables, and running
//! them through the content assembler.

use ferry::proto::amqp::*;
use ferry::proto::Status;

use crate::alloc_count::allocations;

fn stream(messages: u64) -> Vec<u8> {
    let mut headers = TableBuilder::new();
    headers
        .insert(b"x-ferry-attempt", FieldValue::I32(1))
        .unwrap();
    headers
        .insert(b"trace", FieldValue::LongStr(b"abc"))
        .unwrap();
    let props = BasicProperties {
        content_type: Some(b"application/json"),
        headers: Some(headers.as_table()),
        delivery_mode: Some(2),
        message_id: Some(b"m-1"),
        correlation_id: Some(b"c-1"),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    let mut out = Vec::new();
    for tag in 1..=messages {
        let deliver = BasicDeliver {
            consumer_tag: b"ferry",
            delivery_tag: tag,
            redelivered: false,
            exchange: b"",
            routing_key: b"commands",
        };
        encode_method_frame(&mut out, 1, &deliver.into(), 131_072).unwrap();
        encode_content(&mut out, 1, CLASS_BASIC, &props, &[b'x'; 128], 131_072).unwrap();
    }
    out
}

#[test]
fn decoding_deliveries_allocates_nothing() {
    let bytes = stream(200);
    let mut assembler = ContentAssembler::new(16 << 20);
    let mut bodies = 0usize;
    let mut attempts = 0i64;
    let before = allocations();
    let mut pos = 0;
    while let Status::Complete(frame, used) = decode_frame(&bytes[pos..], 131_072).unwrap() {
        pos += used;
        match frame.payload {
            FramePayload::Method(payload) => {
                let method = Method::decode(payload).unwrap();
                assembler.on_method(&method).unwrap();
            }
            FramePayload::Header(header) => {
                for (key, value) in header.properties.headers.unwrap().iter() {
                    if let (b"x-ferry-attempt", FieldValue::I32(n)) = (key, value) {
                        attempts += i64::from(n);
                    }
                }
                assembler.on_header(&header).unwrap();
            }
            FramePayload::BadHeader(bad) => panic!("{bad:?}"),
            FramePayload::Body(chunk) => {
                if let Assembled::Complete(body) = assembler.on_body(chunk).unwrap() {
                    bodies += body.len();
                }
            }
            FramePayload::Heartbeat => {}
        }
        if pos == bytes.len() {
            break;
        }
    }
    assert_eq!(allocations() - before, 0);
    assert_eq!(bodies, 200 * 128);
    assert_eq!(attempts, 200);
}

#[test]
fn multi_frame_bodies_reuse_the_assembler_buffer() {
    let mut bytes = Vec::new();
    for tag in 1..=50 {
        let deliver = BasicDeliver {
            delivery_tag: tag,
            ..Default::default()
        };
        encode_method_frame(&mut bytes, 1, &deliver.into(), 4096).unwrap();
        encode_content(
            &mut bytes,
            1,
            CLASS_BASIC,
            &BasicProperties::default(),
            &[7; 10_000],
            4096,
        )
        .unwrap();
    }
    let mut assembler = ContentAssembler::new(1 << 20);
    let mut allocations_after_first = None;
    let mut pos = 0;
    let mut complete = 0;
    while pos < bytes.len() {
        let Status::Complete(frame, used) = decode_frame(&bytes[pos..], 4096).unwrap() else {
            panic!()
        };
        pos += used;
        match frame.payload {
            FramePayload::Method(p) => assembler.on_method(&Method::decode(p).unwrap()).unwrap(),
            FramePayload::Header(h) => {
                assert_eq!(assembler.on_header(&h).unwrap(), Assembled::Pending)
            }
            FramePayload::BadHeader(bad) => panic!("{bad:?}"),
            FramePayload::Body(chunk) => {
                if let Assembled::Complete(body) = assembler.on_body(chunk).unwrap() {
                    assert_eq!(body.len(), 10_000);
                    complete += 1;
                    if complete == 1 {
                        allocations_after_first = Some(allocations());
                    }
                }
            }
            FramePayload::Heartbeat => {}
        }
    }
    assert_eq!(complete, 50);
    assert_eq!(allocations(), allocations_after_first.unwrap());
}
