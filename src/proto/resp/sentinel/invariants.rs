//! Invariants the `resp_sentinel` fuzz target asserts on arbitrary bytes (and
//! `tests/sans_io/fuzz_corpus.rs` replays on stable): the sentinel watch and the role
//! check, fed the bytes as replies in chunks of every size the first byte picks, never
//! panic, never consume more than they were given, stay failed once failed, and report
//! only well-formed addresses.
#![doc(hidden)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use super::{Credentials, RoleCheck, SentinelWatch, WatchEvent};

/// Runs every check on `data`.
pub fn check(data: &[u8]) {
    let chunk = data.first().map_or(1, |b| usize::from(*b % 16) + 1);
    let input = data.get(1..).unwrap_or_default();
    check_watch(input, chunk);
    check_role(input, chunk);
}

fn credentials() -> Credentials {
    Credentials {
        username: Some(b"ferry".to_vec()),
        password: Some(b"pw".to_vec()),
    }
}

fn check_watch(input: &[u8], chunk: usize) {
    let mut now = Instant::now();
    let mut watch = SentinelWatch::new(b"mymaster", &credentials(), now);
    let mut out = Vec::new();
    watch.poll_transmit(&mut out);
    assert!(!out.is_empty());
    let mut buffer = Vec::new();
    let mut failed = None;
    for piece in input.chunks(chunk) {
        buffer.extend_from_slice(piece);
        match watch.handle_input(&buffer, now) {
            Ok(used) => {
                assert!(failed.is_none(), "a failed watch reads on");
                assert!(used <= buffer.len());
                buffer.drain(..used);
            }
            Err(e) => {
                if let Some(first) = &failed {
                    assert_eq!(first, &e, "a failed watch keeps its error");
                }
                failed = Some(e);
            }
        }
        while let Some(event) = watch.poll_event() {
            match event {
                WatchEvent::Master(a) => assert!(a.port > 0 && !a.host.is_empty()),
                WatchEvent::Switched { from, to } => {
                    assert!(from.port > 0 && to.port > 0);
                    assert!(!from.host.contains(' ') && !to.host.contains(' '));
                }
                WatchEvent::Watching => {}
            }
        }
        now += Duration::from_secs(1);
        let _ = watch.handle_timeout(now);
        watch.poll_transmit(&mut out);
    }
    // Silence after the bytes: the watch PINGs, then gives up; it never waits forever.
    for _ in 0..3 {
        match watch.poll_timeout() {
            Some(at) => {
                now = now.max(at);
                let _ = watch.handle_timeout(now);
            }
            None => break,
        }
    }
    assert_eq!(watch.poll_timeout(), None, "a silent sentinel is given up");
}

fn check_role(input: &[u8], chunk: usize) {
    let now = Instant::now();
    let mut role = RoleCheck::new(&credentials(), now);
    let mut buffer = Vec::new();
    for piece in input.chunks(chunk) {
        buffer.extend_from_slice(piece);
        match role.handle_input(&buffer) {
            Ok(used) => {
                assert!(used <= buffer.len());
                buffer.drain(..used);
            }
            Err(_) => {
                assert!(!role.confirmed());
                break;
            }
        }
        if role.confirmed() {
            // The rest belongs to the session that takes over: untouched.
            assert_eq!(role.handle_input(&buffer), Ok(0));
            break;
        }
    }
    if !role.confirmed() {
        let at = role.poll_timeout();
        if let Some(at) = at {
            assert!(role.handle_timeout(at).is_err(), "no answer is an error");
        }
    }
}
