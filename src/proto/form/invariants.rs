//! Fuzz invariants for the form encoder (`fuzz/fuzz_targets/form.rs` and
//! `tests/sans_io/fuzz_corpus.rs` both call [`check`]).
#![doc(hidden)]
#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used
)]

use super::{encode_with_limits, FormError, Limits};

/// Bytes that may appear in an encoded body.
fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        | (byte == b'.')
        | (byte == b'_')
        | (byte == b'-')
        | (byte == b'%')
        | (byte == b'+')
        | (byte == b'=')
        | (byte == b'&')
}

/// Runs the encoder on arbitrary bytes and asserts its invariants.
pub fn check(data: &[u8]) {
    const MARKER: &[u8] = b"prefix:";
    let limits = Limits::default();
    let mut out = MARKER.to_vec();
    let first = encode_with_limits(data, &mut out, &limits);
    match first {
        Ok(encoded) => {
            // Appends after what the caller had, and reports what it appended.
            assert!(out.starts_with(MARKER));
            let body = &out[MARKER.len()..];
            assert_eq!(encoded.bytes, body.len());
            assert!(body.len() <= limits.max_output_bytes);
            // Only the form alphabet, and one `name=value` per variable, joined by `&`.
            // A small nested input can encode to megabytes, so the scans are written to
            // vectorise: a branch-free fold, then a byte count and `memchr` per variable.
            let in_alphabet = body.iter().fold(true, |ok, &byte| ok & allowed(byte));
            assert!(in_alphabet, "byte outside the form alphabet");
            let variables = if body.is_empty() {
                0
            } else {
                body.iter().filter(|&&byte| byte == b'&').count() + 1
            };
            assert_eq!(encoded.variables, variables);
            assert!(body
                .split(|&b| b == b'&')
                .all(|pair| body.is_empty() || pair.contains(&b'=')));
            // Deterministic.
            let mut again = Vec::with_capacity(body.len());
            assert_eq!(encode_with_limits(data, &mut again, &limits), first);
            assert_eq!(again, body);
            // A smaller cap either fits or says so, never exceeding it.
            let small = Limits {
                max_output_bytes: 64,
                ..limits
            };
            let mut capped = Vec::new();
            match encode_with_limits(data, &mut capped, &small) {
                Ok(_) => assert!(capped.len() <= 64 && capped == body),
                Err(FormError::TooLarge { limit }) => {
                    assert_eq!(limit, 64);
                    assert!(capped.is_empty() && body.len() > 64);
                }
                Err(other) => panic!("cap changed the outcome: {other:?}"),
            }
        }
        Err(error) => {
            // A failure leaves the caller's buffer untouched.
            assert_eq!(out, MARKER, "{error:?} left output behind");
            let mut again = Vec::new();
            assert_eq!(encode_with_limits(data, &mut again, &limits), first);
            assert!(again.is_empty());
        }
    }
}
