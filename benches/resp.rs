//! RESP benchmarks: decoding + classifying a stream of pub/sub messages with 64-byte
//! payloads (RESP2 arrays and RESP3 pushes, 1000 back to back in one buffer), and encoding
//! `PUBLISH chan <64 B>`. Run: `cargo bench --bench resp`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::proto::resp::{bulk_string, encode_command, push_header, Decoder, PubSubEvent, Version};
use ferry::proto::Status;

const MESSAGES: usize = 1000;

fn stream(version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    let payload = [b'x'; 64];
    for i in 0..MESSAGES {
        push_header(&mut out, version, 3);
        bulk_string(&mut out, b"message");
        bulk_string(&mut out, format!("events.{}", i % 10).as_bytes());
        bulk_string(&mut out, &payload);
    }
    out
}

fn decode_stream(decoder: &mut Decoder, mut bytes: &[u8]) -> usize {
    let mut payload_bytes = 0;
    while let Ok(Status::Complete(frame, used)) = decoder.decode(bytes) {
        if let Ok(Some(PubSubEvent::Message { payload, .. })) = PubSubEvent::from_frame(&frame) {
            payload_bytes += payload.len();
        }
        bytes = bytes.get(used..).unwrap_or_default();
    }
    payload_bytes
}

fn decode_benches(c: &mut Criterion) {
    for (name, version) in [("resp2", Version::Resp2), ("resp3", Version::Resp3)] {
        let bytes = stream(version);
        let mut decoder = Decoder::default();
        assert_eq!(decode_stream(&mut decoder, &bytes), MESSAGES * 64);
        let mut group = c.benchmark_group(format!("resp_decode_pubsub_{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("bytes", |b| {
            b.iter(|| decode_stream(&mut decoder, black_box(&bytes)))
        });
        group.throughput(Throughput::Elements(MESSAGES as u64));
        group.bench_function("frames", |b| {
            b.iter(|| decode_stream(&mut decoder, black_box(&bytes)))
        });
        group.finish();
    }
}

fn encode_benches(c: &mut Criterion) {
    let payload = [b'x'; 64];
    let mut out = Vec::with_capacity(1 << 20);
    out.clear();
    encode_command(&mut out, [&b"PUBLISH"[..], b"chan", &payload]);
    let mut group = c.benchmark_group("resp_encode_publish");
    group.throughput(Throughput::Bytes((out.len() * MESSAGES) as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..MESSAGES {
                encode_command(
                    &mut out,
                    [&b"PUBLISH"[..], b"chan", black_box(&payload[..])],
                );
            }
            out.len()
        })
    });
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("frames", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..MESSAGES {
                encode_command(
                    &mut out,
                    [&b"PUBLISH"[..], b"chan", black_box(&payload[..])],
                );
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, decode_benches, encode_benches);
criterion_main!(benches);
