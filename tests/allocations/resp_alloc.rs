//! Zero heap allocations per decoded frame: a stream of pub/sub messages (RESP2 arrays and
//! RESP3 pushes) decoded with a resumable decoder and classified, under a counting
//! global allocator.

use ferry::proto::resp::{encode_command, Decoder, PubSubEvent, Version};
use ferry::proto::Status;

use crate::alloc_count::allocations;

fn stream(version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    let payload = [b'p'; 64];
    for i in 0..500u32 {
        ferry::proto::resp::push_header(&mut out, version, 3);
        ferry::proto::resp::bulk_string(&mut out, b"message");
        ferry::proto::resp::bulk_string(&mut out, format!("chan{}", i % 7).as_bytes());
        ferry::proto::resp::bulk_string(&mut out, &payload);
        ferry::proto::resp::push_header(&mut out, version, 4);
        for part in [&b"pmessage"[..], b"chan*", b"chan9", &payload] {
            ferry::proto::resp::bulk_string(&mut out, part);
        }
    }
    out
}

/// Decodes `bytes` in `read`-byte reads, classifying every frame; counts events.
fn decode_all(bytes: &[u8], read: usize) -> usize {
    let mut decoder = Decoder::default();
    let mut start = 0;
    let mut end = 0;
    let mut events = 0;
    while start < bytes.len() {
        end = (end + read).min(bytes.len());
        while let Status::Complete(frame, used) = decoder.decode(&bytes[start..end]).unwrap() {
            match PubSubEvent::from_frame(&frame).unwrap() {
                Some(PubSubEvent::Message { payload, .. })
                | Some(PubSubEvent::PMessage { payload, .. }) => {
                    assert_eq!(payload.len(), 64);
                    events += 1;
                }
                other => panic!("{other:?}"),
            }
            start += used;
            if start == end {
                break;
            }
        }
    }
    events
}

#[test]
fn decoding_and_classifying_allocates_nothing() {
    for version in [Version::Resp2, Version::Resp3] {
        let bytes = stream(version);
        for read in [bytes.len(), 4096, 7, 1] {
            let before = allocations();
            let events = decode_all(&bytes, read);
            assert_eq!(allocations() - before, 0, "{version:?}, reads of {read}");
            assert_eq!(events, 1000);
        }
    }
}

#[test]
fn encoding_a_command_into_a_reserved_buffer_allocates_nothing() {
    let mut out = Vec::with_capacity(4096);
    let payload = [b'x'; 64];
    let before = allocations();
    for _ in 0..20 {
        encode_command(&mut out, [&b"PUBLISH"[..], b"chan", &payload]);
    }
    assert_eq!(allocations() - before, 0);
    assert_eq!(out.len(), 20 * (4 + 13 + 10 + 5 + 64 + 2));
}
