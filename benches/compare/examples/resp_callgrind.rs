//! Instruction counts for the RESP2 pub/sub decode comparison, independent of machine load.
//!
//! Runs one decoder over the same 1000 `message` frames (64-byte payloads) as the
//! `resp2_pubsub_message_x1000` criterion group, `N` times, doing exactly what that group
//! times: decode frame by frame, pick out channel and payload. Each pass is one call of an
//! `#[inline(never)]` function whose name callgrind can select, so the count excludes
//! building the input and process start-up:
//!
//! ```text
//! cargo build -j1 --profile bench --example resp_callgrind
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*pass_ferry*' \
//!     target/release/examples/resp_callgrind ferry 100
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*pass_redis_protocol*' \
//!     target/release/examples/resp_callgrind redis-protocol 100
//! ```
//!
//! Callgrind's "Collected" figure divided by `N` is the instructions per 1000-frame pass.
//! Every pass's result is checked, so a decoder cannot skip work.

use ferry_compare::{payload_for, resp2_message_stream, RESP_CHANNEL};
use std::hint::black_box;

const FRAMES: usize = 1000;
const PAYLOAD_LEN: usize = 64;

/// What one pass found: messages, bytes consumed, and the last message's channel and payload.
type Found<'a> = (usize, usize, &'a [u8], &'a [u8]);

/// ferry: `Decoder::decode` + `PubSubEvent::from_frame`, as in the criterion bench.
#[inline(never)]
fn pass_ferry(stream: &[u8]) -> Found<'_> {
    use ferry::proto::resp::{Decoder, PubSubEvent};

    let mut decoder = Decoder::default();
    let (mut offset, mut messages) = (0, 0);
    let (mut channel, mut payload): (&[u8], &[u8]) = (&[], &[]);
    while let Some(input) = stream.get(offset..).filter(|rest| !rest.is_empty()) {
        let (frame, used) = decoder
            .decode(input)
            .ok()
            .and_then(|status| status.complete())
            .expect("complete frame");
        match PubSubEvent::from_frame(&frame) {
            Ok(Some(PubSubEvent::Message {
                channel: c,
                payload: p,
            })) => (channel, payload) = (c, p),
            _ => panic!("not a message"),
        }
        messages += 1;
        offset += used;
    }
    (messages, offset, channel, payload)
}

/// redis-protocol 6: `resp2::decode::decode_range`, as in the criterion bench.
#[inline(never)]
fn pass_redis_protocol(stream: &[u8]) -> Found<'_> {
    use redis_protocol::resp2::decode::decode_range;
    use redis_protocol::resp2::types::RangeFrame;

    let (mut offset, mut messages) = (0, 0);
    let (mut channel, mut payload): (&[u8], &[u8]) = (&[], &[]);
    while let Some(input) = stream.get(offset..).filter(|rest| !rest.is_empty()) {
        let (frame, used) = decode_range(input).ok().flatten().expect("complete frame");
        match frame {
            RangeFrame::Array(items) => match &items[..] {
                [RangeFrame::BulkString(kind), RangeFrame::BulkString(chan), RangeFrame::BulkString(data)]
                    if input.get(kind.0..kind.1) == Some(&b"message"[..]) =>
                {
                    channel = input.get(chan.0..chan.1).expect("channel in input");
                    payload = input.get(data.0..data.1).expect("payload in input");
                }
                _ => panic!("not a message"),
            },
            _ => panic!("not an array"),
        }
        messages += 1;
        offset += used;
    }
    (messages, offset, channel, payload)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let passes: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let pass: fn(&[u8]) -> Found<'_> = match which.as_str() {
        "ferry" => pass_ferry,
        "redis-protocol" => pass_redis_protocol,
        _ => {
            eprintln!("usage: resp_callgrind ferry|redis-protocol [passes]");
            std::process::exit(2);
        }
    };
    let stream = resp2_message_stream(FRAMES, PAYLOAD_LEN);
    let last_payload = payload_for(FRAMES - 1, PAYLOAD_LEN);
    for _ in 0..passes {
        let (messages, consumed, channel, payload) = pass(black_box(&stream));
        assert_eq!(
            (messages, consumed, channel, payload),
            (FRAMES, stream.len(), RESP_CHANNEL, &last_payload[..]),
            "{which} decoded the wrong thing"
        );
    }
    println!("{which}: {passes} passes of {FRAMES} frames checked");
}
