//! AMQP codec throughput: decoding deliver + header + body triples (frame decode, method
//! decode, content assembly) and encoding basic.ack and basic.publish + content.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::proto::amqp::*;
use ferry::proto::Status;

const FRAME_MAX: u32 = 131_072;
const MESSAGES: u64 = 1000;

fn typical_properties(headers: &TableBuilder) -> BasicProperties<'_> {
    BasicProperties {
        content_type: Some(b"application/json"),
        headers: Some(headers.as_table()),
        delivery_mode: Some(2),
        message_id: Some(b"3f2b8c1e-6d1a-4c57-9b0e-1d2f3a4b5c6d"),
        correlation_id: Some(b"req-000123"),
        timestamp: Some(1_700_000_000),
        app_id: Some(b"shop"),
        ..Default::default()
    }
}

fn headers() -> TableBuilder {
    let mut t = TableBuilder::new();
    t.insert(b"x-ferry-attempt", FieldValue::I32(1)).unwrap();
    t
}

fn deliveries() -> Vec<u8> {
    let headers = headers();
    let props = typical_properties(&headers);
    let mut out = Vec::new();
    for tag in 1..=MESSAGES {
        let body = vec![b'x'; 64 + (tag as usize * 37) % 193]; // 64..=256 bytes
        let deliver = BasicDeliver {
            consumer_tag: b"amq.ctag-Xq3nLk2Zr8Yw5Tb1VgHs0A",
            delivery_tag: tag,
            redelivered: false,
            exchange: b"",
            routing_key: b"commands",
        };
        encode_method_frame(&mut out, 1, &deliver.into(), FRAME_MAX).unwrap();
        encode_content(&mut out, 1, CLASS_BASIC, &props, &body, FRAME_MAX).unwrap();
    }
    out
}

fn decode_all(buf: &[u8], assembler: &mut ContentAssembler) -> (u64, usize) {
    let mut pos = 0;
    let mut tags = 0u64;
    let mut body_bytes = 0usize;
    while let Ok(Status::Complete(frame, used)) =
        decode_frame(buf.get(pos..).unwrap_or_default(), FRAME_MAX)
    {
        pos += used;
        match frame.payload {
            FramePayload::Method(payload) => {
                let method = Method::decode(payload).unwrap();
                if let Method::BasicDeliver(d) = method {
                    tags += d.delivery_tag;
                }
                assembler.on_method(&method).unwrap();
            }
            FramePayload::Header(header) => {
                let _ = assembler.on_header(&header).unwrap();
            }
            FramePayload::Body(chunk) => {
                if let Assembled::Complete(body) = assembler.on_body(chunk).unwrap() {
                    body_bytes += body.len();
                }
            }
            FramePayload::BadHeader(bad) => panic!("{bad:?}"),
            FramePayload::Heartbeat => {}
        }
    }
    (tags, body_bytes)
}

fn bench_decode(c: &mut Criterion) {
    let buf = deliveries();
    let mut group = c.benchmark_group("amqp_decode");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    let mut assembler = ContentAssembler::new(16 << 20);
    group.bench_function("deliver_header_body_x1000", |b| {
        b.iter(|| decode_all(black_box(&buf), &mut assembler))
    });
    group.throughput(Throughput::Elements(MESSAGES));
    group.bench_function("deliver_header_body_x1000_msgs", |b| {
        b.iter(|| decode_all(black_box(&buf), &mut assembler))
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("amqp_encode");
    let mut out = Vec::with_capacity(1 << 20);
    group.throughput(Throughput::Elements(MESSAGES));
    group.bench_function("basic_ack_x1000", |b| {
        b.iter(|| {
            out.clear();
            for tag in 1..=MESSAGES {
                let ack = BasicAck {
                    delivery_tag: tag,
                    multiple: false,
                };
                encode_method_frame(&mut out, 1, &Method::BasicAck(ack), FRAME_MAX).unwrap();
            }
            black_box(out.len())
        })
    });
    let headers = headers();
    let props = typical_properties(&headers);
    let body = vec![b'y'; 200];
    let publish = Method::BasicPublish(BasicPublish {
        ticket: 0,
        exchange: b"",
        routing_key: b"commands.ferry-retry.1000",
        mandatory: true,
        immediate: false,
    });
    out.clear();
    encode_method_frame(&mut out, 1, &publish, FRAME_MAX).unwrap();
    encode_content(&mut out, 1, CLASS_BASIC, &props, &body, FRAME_MAX).unwrap();
    group.throughput(Throughput::Bytes(out.len() as u64 * MESSAGES));
    group.bench_function("basic_publish_content_200B_x1000", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..MESSAGES {
                encode_method_frame(&mut out, 1, &publish, FRAME_MAX).unwrap();
                encode_content(
                    &mut out,
                    1,
                    CLASS_BASIC,
                    &props,
                    black_box(&body),
                    FRAME_MAX,
                )
                .unwrap();
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
