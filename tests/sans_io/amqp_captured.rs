//! Frames captured from a real RabbitMQ 3.10 by `scripts/capture/amqp.py`: the server's
//! connection.start and a basic.deliver whose 10 KiB body the server split over several
//! body frames (frame_max 4096 negotiated in tune-ok).

use ferry::proto::amqp::*;
use ferry::proto::Status;

use crate::data;

#[test]
fn connection_start_from_rabbitmq() {
    let bytes = data::read("amqp/connection_start.bin");
    let Status::Complete(frame, used) = decode_frame(&bytes, FRAME_MIN_SIZE).unwrap() else {
        panic!("partial")
    };
    assert_eq!(used, bytes.len());
    assert_eq!(frame.channel, 0);
    let FramePayload::Method(payload) = frame.payload else {
        panic!("not a method")
    };
    let Method::ConnectionStart(start) = Method::decode(payload).unwrap() else {
        panic!("not start")
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let props = start.server_properties;
    assert_eq!(
        props.get(b"product"),
        Some(FieldValue::LongStr(b"RabbitMQ"))
    );
    let Some(FieldValue::LongStr(version)) = props.get(b"version") else {
        panic!("no version")
    };
    assert!(
        version.starts_with(b"3."),
        "{:?}",
        String::from_utf8_lossy(version)
    );
    let Some(FieldValue::Table(caps)) = props.get(b"capabilities") else {
        panic!("no capabilities")
    };
    assert_eq!(
        caps.get(b"consumer_cancel_notify"),
        Some(FieldValue::Bool(true))
    );
    assert_eq!(
        caps.get(b"publisher_confirms"),
        Some(FieldValue::Bool(true))
    );
    assert_eq!(caps.get(b"basic.nack"), Some(FieldValue::Bool(true)));
    assert!(start.mechanisms.windows(5).any(|w| w == b"PLAIN"));
    assert_eq!(start.locales, b"en_US");
    // Re-encoding gives the server's bytes back.
    let mut out = Vec::new();
    encode_method_frame(&mut out, 0, &Method::ConnectionStart(start), FRAME_MIN_SIZE).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn deliver_with_properties_and_multiframe_body() {
    let bytes = data::read("amqp/deliver_multiframe.bin");
    let published = data::read("amqp/published_body.bin");
    let mut assembler = ContentAssembler::new(1 << 20);
    let mut pos = 0;
    let mut deliver = None;
    let mut header = None;
    let mut body_frames = 0;
    let mut body = None;
    while pos < bytes.len() {
        let Status::Complete(frame, used) = decode_frame(&bytes[pos..], 4096).unwrap() else {
            panic!("partial")
        };
        pos += used;
        assert_eq!(frame.channel, 1);
        match frame.payload {
            FramePayload::Method(payload) => {
                let method = Method::decode(payload).unwrap();
                assembler.on_method(&method).unwrap();
                deliver = Some(method);
            }
            FramePayload::Header(h) => {
                assert_eq!(assembler.on_header(&h).unwrap(), Assembled::Pending);
                header = Some(h);
            }
            FramePayload::Body(chunk) => {
                assert!(chunk.len() <= 4096 - 8);
                body_frames += 1;
                if let Assembled::Complete(b) = assembler.on_body(chunk).unwrap() {
                    body = Some(b.to_vec());
                }
            }
            FramePayload::Heartbeat => panic!("heartbeat"),
            FramePayload::BadHeader(bad) => panic!("{bad:?}"),
        }
    }
    let Some(Method::BasicDeliver(d)) = deliver else {
        panic!("no deliver")
    };
    assert_eq!(d.consumer_tag, b"ferry-capture");
    assert_eq!(d.delivery_tag, 1);
    assert!(!d.redelivered);
    assert_eq!(d.exchange, b"");
    assert!(d.routing_key.starts_with(b"ferry-capture-"));
    let h = header.unwrap();
    assert_eq!((h.class_id, h.body_size), (CLASS_BASIC, 10 * 1024));
    let p = h.properties;
    assert_eq!(p.content_type, Some(&b"application/json"[..]));
    assert_eq!(p.delivery_mode, Some(2));
    assert_eq!(p.priority, Some(5));
    assert_eq!(p.correlation_id, Some(&b"corr-42"[..]));
    assert_eq!(p.reply_to, Some(&b"reply.queue"[..]));
    assert_eq!(p.message_id, Some(&b"msg-0001"[..]));
    assert_eq!(p.timestamp, Some(1_700_000_000));
    assert_eq!(p.kind, Some(&b"job.created"[..]));
    assert_eq!(p.app_id, Some(&b"capture-app"[..]));
    assert_eq!(p.user_id, None);
    let headers = p.headers.unwrap();
    assert_eq!(headers.get(b"x-ferry-attempt"), Some(FieldValue::I32(2)));
    assert_eq!(headers.get(b"trace"), Some(FieldValue::LongStr(b"abc-123")));
    assert_eq!(headers.get(b"big"), Some(FieldValue::I64(1 << 40)));
    assert_eq!(body_frames, 3);
    assert_eq!(body.unwrap(), published);
    assert!(assembler.is_idle());
}
