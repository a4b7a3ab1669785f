//! RESP: decode 1000 pub/sub `message` frames back to back, frame by frame, extracting the
//! channel and payload of each — what ferry's Redis source does for every read buffer.
//!
//! Each group holds one `bench_function` per implementation, ferry's included. Every one
//! is run once before timing and its result asserted (frame count, channel, last payload), so a wrong or lazy decoder
//! cannot post a good number.

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ferry_compare::{payload_for, resp2_message_stream, resp3_push_message_stream, RESP_CHANNEL};
use std::hint::black_box;

const FRAMES: usize = 1000;
const PAYLOAD_LEN: usize = 64;

/// What every decoder must report for one stream: number of messages, bytes consumed,
/// and a fingerprint of the last message (channel length, payload).
#[derive(Debug, PartialEq)]
struct Decoded {
    messages: usize,
    consumed: usize,
    last_channel_len: usize,
    last_payload: Vec<u8>,
}

fn expected(stream: &[u8]) -> Decoded {
    Decoded {
        messages: FRAMES,
        consumed: stream.len(),
        last_channel_len: RESP_CHANNEL.len(),
        last_payload: payload_for(FRAMES - 1, PAYLOAD_LEN),
    }
}

/// Runs `decode` once and asserts, then times it.
fn bench_decoder(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    stream: &[u8],
    decode: impl Fn(&[u8]) -> Decoded,
) {
    assert_eq!(
        decode(stream),
        expected(stream),
        "{name} decoded the wrong thing"
    );
    group.bench_function(name, |b| b.iter(|| decode(black_box(stream))));
}

fn group<'a>(c: &'a mut Criterion, name: &str, stream: &[u8]) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::ElementsAndBytes {
        elements: FRAMES as u64,
        bytes: stream.len() as u64,
    });
    group
}

// --- redis-protocol 6 -------------------------------------------------------------------

mod rp2 {
    use super::*;
    use redis_protocol::resp2::decode::{decode, decode_bytes, decode_range};
    use redis_protocol::resp2::types::{BytesFrame, OwnedFrame, RangeFrame};

    /// `decode_range`: frames of `(start, end)` offsets into the input (the crate's zero-copy
    /// core); the array itself is still a heap `Vec<RangeFrame>`.
    pub fn range(stream: &[u8]) -> Decoded {
        let (mut offset, mut messages) = (0, 0);
        let (mut channel, mut payload): (&[u8], &[u8]) = (&[], &[]);
        while offset < stream.len() {
            let input = &stream[offset..];
            let (frame, used) = decode_range(input).unwrap().expect("complete frame");
            match frame {
                RangeFrame::Array(items) => match &items[..] {
                    [RangeFrame::BulkString(kind), RangeFrame::BulkString(chan), RangeFrame::BulkString(data)]
                        if &input[kind.0..kind.1] == b"message" =>
                    {
                        channel = &input[chan.0..chan.1];
                        payload = &input[data.0..data.1];
                    }
                    _ => panic!("not a message"),
                },
                _ => panic!("not an array"),
            }
            messages += 1;
            offset += used;
        }
        Decoded {
            messages,
            consumed: offset,
            last_channel_len: channel.len(),
            last_payload: payload.to_vec(),
        }
    }

    /// `decode`: owned frames, one `Vec<u8>` per bulk string.
    pub fn owned(stream: &[u8]) -> Decoded {
        let (mut offset, mut messages) = (0, 0);
        let (mut channel, mut payload) = (Vec::new(), Vec::new());
        while offset < stream.len() {
            let (frame, used) = decode(&stream[offset..]).unwrap().expect("complete frame");
            match frame {
                OwnedFrame::Array(items) => {
                    let mut items = items.into_iter();
                    match (items.next(), items.next(), items.next()) {
                        (
                            Some(OwnedFrame::BulkString(kind)),
                            Some(OwnedFrame::BulkString(c)),
                            Some(OwnedFrame::BulkString(p)),
                        ) if kind == b"message" => {
                            channel = c;
                            payload = p;
                        }
                        _ => panic!("not a message"),
                    }
                }
                _ => panic!("not an array"),
            }
            messages += 1;
            offset += used;
        }
        Decoded {
            messages,
            consumed: offset,
            last_channel_len: channel.len(),
            last_payload: payload,
        }
    }

    /// `decode_bytes`: `Bytes` frames, ref-counted slices of the input (no copy).
    /// The caller's buffer is converted to `Bytes` once per stream, which copies it
    /// (a real client would read into `BytesMut` to begin with).
    pub fn bytes(stream: &[u8]) -> Decoded {
        let stream = Bytes::copy_from_slice(stream);
        let (mut offset, mut messages) = (0, 0);
        let (mut channel, mut payload) = (Bytes::new(), Bytes::new());
        while offset < stream.len() {
            let (frame, used) = decode_bytes(&stream.slice(offset..))
                .unwrap()
                .expect("complete frame");
            match frame {
                BytesFrame::Array(items) => match &items[..] {
                    [BytesFrame::BulkString(kind), BytesFrame::BulkString(c), BytesFrame::BulkString(p)]
                        if kind == &b"message"[..] =>
                    {
                        channel = c.clone();
                        payload = p.clone();
                    }
                    _ => panic!("not a message"),
                },
                _ => panic!("not an array"),
            }
            messages += 1;
            offset += used;
        }
        Decoded {
            messages,
            consumed: offset,
            last_channel_len: channel.len(),
            last_payload: payload.to_vec(),
        }
    }
}

mod rp3 {
    use super::*;
    use redis_protocol::resp3::decode::complete::{decode, decode_bytes, decode_range};
    use redis_protocol::resp3::types::{BytesFrame, OwnedFrame, RangeFrame};

    pub fn range(stream: &[u8]) -> Decoded {
        let (mut offset, mut messages) = (0, 0);
        let (mut channel, mut payload): (&[u8], &[u8]) = (&[], &[]);
        while offset < stream.len() {
            let input = &stream[offset..];
            let (frame, used) = decode_range(input).unwrap().expect("complete frame");
            match frame {
                RangeFrame::Push { data, .. } => match &data[..] {
                    [RangeFrame::BlobString { data: kind, .. }, RangeFrame::BlobString { data: chan, .. }, RangeFrame::BlobString { data: body, .. }]
                        if &input[kind.0..kind.1] == b"message" =>
                    {
                        channel = &input[chan.0..chan.1];
                        payload = &input[body.0..body.1];
                    }
                    _ => panic!("not a message"),
                },
                _ => panic!("not a push"),
            }
            messages += 1;
            offset += used;
        }
        Decoded {
            messages,
            consumed: offset,
            last_channel_len: channel.len(),
            last_payload: payload.to_vec(),
        }
    }

    pub fn owned(stream: &[u8]) -> Decoded {
        let (mut offset, mut messages) = (0, 0);
        let (mut channel, mut payload) = (Vec::new(), Vec::new());
        while offset < stream.len() {
            let (frame, used) = decode(&stream[offset..]).unwrap().expect("complete frame");
            match frame {
                OwnedFrame::Push { data, .. } => {
                    let mut items = data.into_iter();
                    match (items.next(), items.next(), items.next()) {
                        (
                            Some(OwnedFrame::BlobString { data: kind, .. }),
                            Some(OwnedFrame::BlobString { data: c, .. }),
                            Some(OwnedFrame::BlobString { data: p, .. }),
                        ) if kind == b"message" => {
                            channel = c;
                            payload = p;
                        }
                        _ => panic!("not a message"),
                    }
                }
                _ => panic!("not a push"),
            }
            messages += 1;
            offset += used;
        }
        Decoded {
            messages,
            consumed: offset,
            last_channel_len: channel.len(),
            last_payload: payload,
        }
    }

    pub fn bytes(stream: &[u8]) -> Decoded {
        let stream = Bytes::copy_from_slice(stream);
        let (mut offset, mut messages) = (0, 0);
        let (mut channel, mut payload) = (Bytes::new(), Bytes::new());
        while offset < stream.len() {
            let (frame, used) = decode_bytes(&stream.slice(offset..))
                .unwrap()
                .expect("complete frame");
            match frame {
                BytesFrame::Push { data, .. } => match &data[..] {
                    [BytesFrame::BlobString { data: kind, .. }, BytesFrame::BlobString { data: c, .. }, BytesFrame::BlobString { data: p, .. }]
                        if kind == &b"message"[..] =>
                    {
                        channel = c.clone();
                        payload = p.clone();
                    }
                    _ => panic!("not a message"),
                },
                _ => panic!("not a push"),
            }
            messages += 1;
            offset += used;
        }
        Decoded {
            messages,
            consumed: offset,
            last_channel_len: channel.len(),
            last_payload: payload.to_vec(),
        }
    }
}

// --- redis (redis-rs) 1.x ---------------------------------------------------------------

/// `redis::Parser::parse_value` over a `&[u8]` reader, as the crate's sync connection reads
/// replies, then `redis::Msg::from_owned_value` (its pub/sub message extraction), which
/// accepts both the RESP2 array and the RESP3 push form. The parser reports no byte count
/// per frame: it pulls from the reader through its own buffer, so "consumed" is checked
/// as the reader being drained and the parser answering end-of-stream afterwards.
fn redis_rs(stream: &[u8]) -> Decoded {
    let mut reader = stream;
    let mut parser = redis::Parser::new();
    let mut messages = 0;
    let mut last = None;
    for _ in 0..FRAMES {
        let value = parser.parse_value(&mut reader).expect("complete frame");
        last = Some(redis::Msg::from_owned_value(value).expect("a message"));
        messages += 1;
    }
    assert!(
        reader.is_empty() && parser.parse_value(&mut reader).is_err(),
        "stream not drained"
    );
    let last = last.expect("at least one message");
    Decoded {
        messages,
        consumed: stream.len() - reader.len(),
        last_channel_len: last.get_channel_name().len(),
        last_payload: last.get_payload_bytes().to_vec(),
    }
}

// --- ferry ------------------------------------------------------------------------------

/// `ferry::proto::resp::Decoder::decode` (validates the whole frame, then returns a lazy
/// view borrowing the input) + `PubSubEvent::from_frame` (walks the three elements and
/// checks the kind), as ferry's Redis source does per read buffer. One decoder per stream:
/// it is a fixed-size value (no heap) that a connection keeps across reads.
fn ferry(stream: &[u8]) -> Decoded {
    use ferry::proto::resp::{Decoder, PubSubEvent};

    let mut decoder = Decoder::default();
    let (mut offset, mut messages) = (0, 0);
    let (mut channel, mut payload): (&[u8], &[u8]) = (&[], &[]);
    while offset < stream.len() {
        let (frame, used) = decoder
            .decode(&stream[offset..])
            .unwrap()
            .complete()
            .expect("complete frame");
        match PubSubEvent::from_frame(&frame) {
            Ok(Some(PubSubEvent::Message {
                channel: c,
                payload: p,
            })) => {
                channel = c;
                payload = p;
            }
            _ => panic!("not a message"),
        }
        messages += 1;
        offset += used;
    }
    Decoded {
        messages,
        consumed: offset,
        last_channel_len: channel.len(),
        last_payload: payload.to_vec(),
    }
}

fn resp2_pubsub_message(c: &mut Criterion) {
    let stream = resp2_message_stream(FRAMES, PAYLOAD_LEN);
    let mut group = group(c, "resp2_pubsub_message_x1000", &stream);
    bench_decoder(
        &mut group,
        "redis-protocol/decode_range",
        &stream,
        rp2::range,
    );
    bench_decoder(
        &mut group,
        "redis-protocol/decode_owned",
        &stream,
        rp2::owned,
    );
    bench_decoder(
        &mut group,
        "redis-protocol/decode_bytes",
        &stream,
        rp2::bytes,
    );
    bench_decoder(&mut group, "redis/Parser+Msg", &stream, redis_rs);
    bench_decoder(&mut group, "ferry/Decoder+PubSubEvent", &stream, ferry);
    group.finish();
}

fn resp3_push_message(c: &mut Criterion) {
    let stream = resp3_push_message_stream(FRAMES, PAYLOAD_LEN);
    let mut group = group(c, "resp3_push_message_x1000", &stream);
    bench_decoder(
        &mut group,
        "redis-protocol/decode_range",
        &stream,
        rp3::range,
    );
    bench_decoder(
        &mut group,
        "redis-protocol/decode_owned",
        &stream,
        rp3::owned,
    );
    bench_decoder(
        &mut group,
        "redis-protocol/decode_bytes",
        &stream,
        rp3::bytes,
    );
    bench_decoder(&mut group, "redis/Parser+Msg", &stream, redis_rs);
    bench_decoder(&mut group, "ferry/Decoder+PubSubEvent", &stream, ferry);
    group.finish();
}

criterion_group!(benches, resp2_pubsub_message, resp3_push_message);
criterion_main!(benches);
