//! The server side of RESP, for ferry's RESP endpoint (README.md "RESP endpoint (no
//! broker)"): Redis clients (redis-cli, phpredis, redis-py) connect to ferry and
//! `PUBLISH`, `SUBSCRIBE`… as they would to Redis 7.0, and get the same bytes back.
//!
//! Sans-IO like the rest of `proto`: the runtime hands a client's read buffer to a
//! [`CommandReader`], each command to the client's [`ClientSession`], and writes what the
//! session produced; publishing and the subscription index are the runtime's, since they
//! span clients.
//!
//! # Layout
//! - `reader.rs`: [`CommandReader`] — multibulk and inline requests, Redis's limits.
//! - `split.rs`: inline lines split with Redis's quoting rules.
//! - `session.rs`: [`ClientSession`] — per-client state and the commands it answers.
//! - `glob.rs`: [`glob_match`] — `PSUBSCRIBE` patterns.
//! - `mod.rs`: [`encode_message`] (what subscribers receive) and the fuzz invariants.

mod glob;
mod reader;
mod session;
mod split;

pub use glob::glob_match;
pub use reader::{
    parse_i64, Command, CommandReader, ProtocolError, ReaderLimits, MAX_ARGS,
    MAX_ARGS_UNAUTHENTICATED, MAX_BULK_UNAUTHENTICATED, MAX_INLINE,
};
pub use session::{Change, ClientSession, Outcome, SessionConfig, SubscriptionKind};
pub use split::{split_args, UnbalancedQuotes};

use super::{bulk_string, push_header, Version};

/// A published message as a subscriber receives it: `message, channel, payload`, or
/// `pmessage, pattern, channel, payload` when it matched a pattern — an array in RESP2, a
/// push in RESP3.
pub fn encode_message(
    out: &mut Vec<u8>,
    version: Version,
    pattern: Option<&[u8]>,
    channel: &[u8],
    payload: &[u8],
) {
    match pattern {
        Some(pattern) => {
            push_header(out, version, 4);
            bulk_string(out, b"pmessage");
            bulk_string(out, pattern);
        }
        None => {
            push_header(out, version, 3);
            bulk_string(out, b"message");
        }
    }
    bulk_string(out, channel);
    bulk_string(out, payload);
}

/// The fuzz target's assertions: any bytes, read and run command by command, never panic;
/// every complete command consumes at least one byte and no more than it was given; a
/// protocol error always has a message. Compiled only for tests and with the feature
/// `invariants` (the fuzz targets, the integration tests).
#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub fn check_invariants(data: &[u8]) {
    let password = data.first().is_some_and(|b| b & 1 == 1);
    let mut session = ClientSession::new(SessionConfig {
        password: password.then(|| b"secret".to_vec()),
        id: 1,
        server_version: "0.0.0",
    });
    let mut reader = CommandReader::new(ReaderLimits { max_bulk: 4096 });
    let mut out = Vec::new();
    let mut at = 0usize;
    // Feed in two pieces, as reads would, to exercise resumption.
    let split = data.len() / 2;
    for end in [split, data.len()] {
        loop {
            let input = data.get(at..end).unwrap_or_default();
            match reader.read(input, session.is_authenticated()) {
                Ok(crate::proto::Status::Complete(command, used)) => {
                    assert!(
                        used > 0 && used <= input.len(),
                        "consumed {used} of {}",
                        input.len()
                    );
                    assert!(!command.is_empty());
                    match session.handle(&command, &mut out) {
                        Outcome::Publish { .. } => super::integer(&mut out, 0),
                        Outcome::Replied | Outcome::Close => {}
                    }
                    let _ = session.take_changes();
                    at += used;
                }
                Ok(crate::proto::Status::Partial) => break,
                Err(e) => {
                    let mut message = Vec::new();
                    e.write_message(&mut message);
                    assert!(!message.is_empty());
                    return;
                }
            }
        }
    }
    // Every reply ferry wrote is valid RESP.
    let mut decoder = super::Decoder::new(super::Limits::default());
    let mut pos = 0;
    while pos < out.len() {
        let used = match decoder.decode(out.get(pos..).unwrap_or_default()) {
            Ok(crate::proto::Status::Complete(_, used)) => used,
            _ => 0,
        };
        assert!(used > 0, "ferry wrote invalid RESP at byte {pos}");
        pos += used;
    }
}
