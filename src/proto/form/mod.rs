//! Message bodies: a JSON object encoded as `application/x-www-form-urlencoded`, byte for
//! byte as PHP 8.2's `http_build_query(json_decode($json, true))` prints it.
//!
//! Implements `docs/SEMANTICS.md` "Body `form`" (the default body): the worker's `$_POST`
//! must see what the message held.
//!
//! # What is sent
//! - Keys and string values go through PHP's `urlencode` ([`urlencode_into`]): `A-Za-z0-9`
//!   and `-_.` as they are, space as `+`, every other byte (UTF-8 included) as `%XX`.
//! - Nested objects and arrays become `a%5Bb%5D%5B0%5D=…` (`a[b][0]`, brackets encoded);
//!   document order is kept; a repeated key keeps its first position and its last value,
//!   as `json_decode` does.
//! - `true` → `1`, `false` → `0`; `null`, `[]` and `{}` send nothing (not even the key).
//! - Integers that fit in `i64` (and `-0`, which PHP reads as int 0) in decimal; every other
//!   number as a PHP float at `precision` 14: `0.1`, `1` (for `1.0`), `1.0E%2B25`, `1.5E-7`,
//!   `-0` (for `-0.0`), `1.2345678901235E%2B29` (see [`number`](self) docs in `number.rs`).
//!
//! # Refused (typed [`FormError`], never a panic)
//! - Anything that is not a JSON object at top level ([`FormError::NotAnObject`]). PHP would
//!   encode a top-level list as `0=…&1=…`; ferry refuses it (`docs/SEMANTICS.md`).
//! - Invalid JSON ([`FormError::InvalidJson`]), including numbers beyond a double such as
//!   `1e400` (PHP would send `INF`) and nesting beyond serde_json's own limit of 128.
//! - Nesting deeper than [`Limits::max_depth`] ([`FormError::TooDeep`]), default 64 with the
//!   top-level object counted as 1. PHP's `json_decode` accepts depth 512, but PHP's
//!   receiving side drops any variable with more than `max_input_nesting_level` (64)
//!   bracket groups, so depth 64 (at most 63 groups) loses nothing PHP would keep. The
//!   limit is capped at 126 so that ours, not serde_json's, is the one that trips.
//! - Output larger than [`Limits::max_output_bytes`] ([`FormError::TooLarge`]).
//! - A payload with a repeated key and more than [`FALLBACK_MAX_VALUES`] JSON values
//!   ([`FormError::TooManyValues`]): resolving repeats needs the whole object in memory
//!   (32–56 bytes a value), so that pass is bounded; PHP keeps only `max_input_vars`
//!   variables of a body anyway.
//!
//! # Output size
//! Each variable repeats the encoded names of all its ancestors, so a payload with long
//! keys nested deep and many leaves below them produces output quadratic in its size
//! (`{"kkk…":{"kkk…":[1,1,1,…]}}`). Without nesting the output is linear: a string byte
//! costs at most 3 output bytes and an array element such as `1,` (2 input bytes) becomes
//! `&` + prefix + `%5B` + index + `%5D=1`. So the only hard bound is the configurable cap,
//! default 16 MiB (the default `max_message_bytes`). It is checked after every variable;
//! once exceeded the body is dropped and parsing goes on only to look for a repeated key
//! (dropping a repeated key's earlier values could make the body fit), so memory never
//! exceeds the cap by more than one variable.
//!
//! # What PHP does on the receiving side (not ferry's doing, but what the worker sees)
//! - In `$_POST`, `.` and space in the top-level part of a name become `_`
//!   (`{"a.b":1}` arrives as `$_POST["a_b"]`), as does an unmatched `[`.
//! - `max_input_vars` (default 1000) silently truncates: variables after the 1000th are
//!   dropped with a warning. [`encode_with_limits`] returns the variable count so the
//!   caller can warn about this.
//! - `max_input_nesting_level` (default 64) drops variables nested deeper.
//! - `post_max_size` (default 8M) discards the whole body when it is larger.
//! - Duplicate names after this encoding cannot occur (keys are unique per object).
//!
//! # Layout
//! - `urlencode.rs`: PHP's `urlencode`.
//! - `number.rs`: PHP's int/float text, and the scanner that recovers float literals.
//! - `emit.rs`: the variable writer and output cap.
//! - `stream.rs`: the fast path, encoding while serde_json parses.
//! - `tree.rs`: the fallback for repeated keys.
//! - `error.rs`: [`FormError`].

mod emit;
mod error;
#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
mod number;
mod stream;
mod tree;
mod urlencode;

pub use error::{FormError, JsonFault, JsonKind, JsonPosition};
pub use tree::FALLBACK_MAX_VALUES;
pub use urlencode::urlencode_into;

use emit::Emitter;
use stream::{Abort, Stream};

/// Default for [`Limits::max_depth`]: keeps every variable within PHP's
/// `max_input_nesting_level` of 64.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Highest accepted [`Limits::max_depth`]: serde_json refuses depth 128 itself.
pub const MAX_SUPPORTED_DEPTH: usize = 126;

/// Default for [`Limits::max_output_bytes`]: the default `max_message_bytes`.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Bounds on one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of objects and arrays accepted, the top-level object being 1.
    /// Values above [`MAX_SUPPORTED_DEPTH`] act as [`MAX_SUPPORTED_DEPTH`].
    pub max_depth: usize,
    /// Largest encoded body, in bytes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// What one successful encoding produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Number of form variables (`name=value` pairs), to compare with PHP's
    /// `max_input_vars` (default 1000).
    pub variables: usize,
    /// Number of bytes appended to the output.
    pub bytes: usize,
}

/// Appends the form encoding of the JSON object `json` to `out`, with default [`Limits`].
///
/// On error `out` is left exactly as it was.
pub fn encode_json_object(json: &[u8], out: &mut Vec<u8>) -> Result<(), FormError> {
    encode_with_limits(json, out, &Limits::default()).map(|_| ())
}

/// Appends the form encoding of the JSON object `json` to `out`, within `limits`, and
/// says how many variables and bytes it produced.
///
/// On error `out` is left exactly as it was.
pub fn encode_with_limits(
    json: &[u8],
    out: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Encoded, FormError> {
    let max_depth = limits.max_depth.min(MAX_SUPPORTED_DEPTH);
    let mut stream = Stream::new(json, Emitter::new(out, limits.max_output_bytes), max_depth);
    let outcome = stream::run(json, &mut stream);
    let Stream {
        mut emit, abort, ..
    } = stream;
    let result = match (outcome, abort) {
        // A repeated key means the streamed body (and any overflow) is wrong: rebuild.
        (_, Some(Abort::DuplicateKey)) => {
            emit.discard();
            match tree::encode(json, &mut emit, max_depth) {
                Ok(()) => Ok(()),
                Err(tree::TreeError::Form(error)) => Err(error),
                Err(tree::TreeError::Json(error)) => Err(json_error(&error)),
            }
        }
        (_, Some(Abort::Form(error))) => Err(error),
        (Err(error), None) => Err(json_error(&error)),
        (Ok(Some(found)), None) => Err(FormError::NotAnObject { found }),
        (Ok(None), None) => Ok(()),
    };
    let result = result.and_then(|()| emit.overflow().map_or(Ok(()), Err));
    match result {
        Ok(()) => Ok(Encoded {
            variables: emit.variables(),
            bytes: emit.written(),
        }),
        Err(error) => {
            emit.discard();
            Err(error)
        }
    }
}

/// Classifies a serde_json error that our visitors did not cause.
fn json_error(error: &serde_json::Error) -> FormError {
    let fault = if error.is_eof() {
        JsonFault::Truncated
    } else if is_number_out_of_range(error) {
        JsonFault::NumberOutOfRange
    } else {
        JsonFault::Syntax
    };
    FormError::InvalidJson {
        fault,
        at: JsonPosition {
            line: error.line(),
            column: error.column(),
        },
    }
}

/// serde_json has no public code for this one; its message is stable ("number out of
/// range"). Compared without allocating, through a `fmt::Write` that checks a prefix.
fn is_number_out_of_range(error: &serde_json::Error) -> bool {
    use std::fmt::Write as _;
    struct Prefix<'p> {
        expected: &'p [u8],
        matched: bool,
    }
    impl std::fmt::Write for Prefix<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let take = s.len().min(self.expected.len());
            let (head, rest) = self.expected.split_at(take);
            if s.as_bytes().get(..take) != Some(head) {
                self.matched = false;
                return Err(std::fmt::Error);
            }
            self.expected = rest;
            if rest.is_empty() {
                // Everything we wanted is seen; stop formatting.
                return Err(std::fmt::Error);
            }
            Ok(())
        }
    }
    let mut prefix = Prefix {
        expected: b"number out of range",
        matched: true,
    };
    let _ = write!(prefix, "{error}");
    prefix.matched && prefix.expected.is_empty()
}

#[cfg(test)]
mod tests;
