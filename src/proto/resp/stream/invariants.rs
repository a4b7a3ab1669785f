//! Invariants the `resp_stream` fuzz target asserts on arbitrary bytes (and
//! `tests/fuzz_corpus.rs` replays on stable): every stream reply decoder, handed any
//! frame, answers without panicking; what it validated iterates completely (as many
//! entries, fields and ids as it counted); kept fields read back the same; and the
//! consumer session fed the bytes after its handshake, in chunks, never panics and never
//! consumes more than it was given.
#![doc(hidden)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use super::reply::{self, Fields};
use super::{StreamConfig, StreamConsumer};
use crate::proto::resp::{Decoder, Limits};
use crate::proto::Status;

const FUZZ_LIMITS: Limits = Limits {
    max_bulk_len: 4096,
    max_elements: 256,
    max_depth: 8,
    max_line_len: 256,
};

/// Runs every check on `data`.
pub fn check(data: &[u8]) {
    let mut decoder = Decoder::new(FUZZ_LIMITS);
    let mut rest = data;
    while let Ok(Status::Complete(frame, used)) = decoder.decode(rest) {
        assert!(used > 0 && used <= rest.len());
        check_frame(&frame);
        rest = &rest[used..];
    }
    check_session(data);
}

fn check_fields(fields: Fields<'_>) {
    let pairs: Vec<_> = fields.iter().collect();
    assert_eq!(pairs.len(), fields.len());
    let again = Fields::from_raw(fields.raw(), fields.element_count());
    assert!(again.iter().eq(pairs.iter().copied()));
}

fn check_frame(frame: &crate::proto::resp::Frame<'_>) {
    if let Ok(Some(list)) = reply::xreadgroup(frame, b"s") {
        assert_eq!(list.iter().count(), list.len());
        for entry in list.iter() {
            if let Some(fields) = entry.fields {
                check_fields(fields);
            }
        }
    }
    if let Ok(list) = reply::xclaim(frame) {
        assert_eq!(list.iter().count(), list.len());
    }
    if let Ok(claimed) = reply::xautoclaim(frame) {
        assert_eq!(claimed.entries.iter().count(), claimed.entries.len());
        assert_eq!(claimed.deleted.iter().count(), claimed.deleted.len());
    }
    if let Ok(list) = reply::xpending(frame) {
        assert_eq!(list.iter().count(), list.len());
    }
    if let Ok(summary) = reply::xpending_summary(frame) {
        let _ = summary.consumers().count();
    }
    let _ = reply::xinfo_groups(frame, b"g");
    if let Ok(list) = reply::xinfo_consumers(frame) {
        let _ = list.iter().count();
    }
}

/// The session past its handshake (RESP2, no group to create), then the fuzz bytes as
/// the replies to a read, in chunks whose size the first byte picks.
fn check_session(data: &[u8]) {
    let now = Instant::now();
    let mut config = StreamConfig::new(b"s", b"g", b"c");
    config.create_group = None;
    config.max_bulk_bytes = 4096;
    let mut session = StreamConsumer::new(config, now);
    let hello = b"*2\r\n$5\r\nproto\r\n:2\r\n";
    assert_eq!(session.handle_input(hello, now), Ok(hello.len()));
    session.fetch(4, now);
    session.autoclaim(Duration::from_secs(1), 4, now);
    session.claim_retry(reply::EntryId { ms: 1, seq: 1 }, Duration::ZERO, now);
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 13) + 1;
    let mut buffer = Vec::new();
    for piece in data.chunks(chunk) {
        buffer.extend_from_slice(piece);
        match session.handle_input(&buffer, now) {
            Ok(used) => {
                assert!(used <= buffer.len());
                buffer.drain(..used);
            }
            Err(_) => break,
        }
        while session.poll_event().is_some() {}
        let mut out = Vec::new();
        session.poll_transmit(&mut out, now);
    }
}
