//! Writes form variables in `http_build_query`'s layout; shared by the streaming pass and
//! the duplicate-key fallback so both produce the same bytes.
//!
//! For a scalar under the key path `k1, k2, …, kn` PHP writes
//! `k1%5Bk2%5D…%5Bkn%5D=value` (brackets url-encoded, every key url-encoded, list
//! indices as decimal), variables joined by `&` (`arg_separator.output`'s default).
//! The emitter keeps the encoded prefix of the current container (`k1%5Bk2%5D%5B`) in
//! `path`, so each variable costs one copy of it.

use super::number::{write_index, write_number, PhpNumber};
use super::urlencode::urlencode_into;
use super::FormError;

/// A key of the entry being written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'k> {
    /// Key bytes already url-encoded.
    Encoded(&'k [u8]),
    /// Key bytes as they came (encoded on the way out).
    Raw(&'k [u8]),
    /// A position in a JSON array.
    Index(usize),
}

/// A scalar JSON value as PHP holds it after `json_decode` (null is never written).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'s> {
    /// `true` → `1`, `false` → `0`.
    Bool(bool),
    /// A PHP int or float.
    Number(PhpNumber),
    /// A string's UTF-8 bytes, url-encoded on output.
    Str(&'s [u8]),
}

/// Appends variables to the caller's buffer and enforces the output limit.
pub(crate) struct Emitter<'o> {
    out: &'o mut Vec<u8>,
    /// `out.len()` when encoding began: everything after it is this body.
    start: usize,
    /// Encoded name prefix of the current container, e.g. `a%5Bb%5D%5B`.
    path: Vec<u8>,
    variables: usize,
    max_output_bytes: usize,
    /// Set once the body outgrew the cap: the body is dropped and nothing more is
    /// written, but parsing goes on so that a repeated key later on (whose removal might
    /// have made the body fit) is still noticed.
    overflowed: bool,
}

impl<'o> Emitter<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>, max_output_bytes: usize) -> Emitter<'o> {
        let start = out.len();
        Emitter {
            out,
            start,
            path: Vec::new(),
            variables: 0,
            max_output_bytes,
            overflowed: false,
        }
    }

    /// Number of variables written so far.
    pub(crate) fn variables(&self) -> usize {
        self.variables
    }

    /// Bytes of body written so far.
    pub(crate) fn written(&self) -> usize {
        self.out.len().saturating_sub(self.start)
    }

    /// Drops everything written, leaving the caller's buffer as it was handed in.
    pub(crate) fn discard(&mut self) {
        self.out.truncate(self.start);
        self.path.clear();
        self.variables = 0;
        self.overflowed = false;
    }

    /// The error to report if the body outgrew the cap.
    pub(crate) fn overflow(&self) -> Option<FormError> {
        self.overflowed.then_some(FormError::TooLarge {
            limit: self.max_output_bytes,
        })
    }

    fn overflow_now(&mut self) {
        self.overflowed = true;
        self.out.truncate(self.start);
    }

    /// Writes one variable: `key` at `level` (1 for the top-level object's keys).
    pub(crate) fn leaf(
        &mut self,
        level: usize,
        key: Key<'_>,
        value: Scalar<'_>,
    ) -> Result<(), FormError> {
        if self.variables > 0 {
            self.out.push(b'&');
        }
        self.out.extend_from_slice(&self.path);
        write_key(self.out, key);
        if level > 1 {
            self.out.extend_from_slice(b"%5D");
        }
        self.out.push(b'=');
        match value {
            Scalar::Bool(true) => self.out.push(b'1'),
            Scalar::Bool(false) => self.out.push(b'0'),
            Scalar::Number(number) => write_number(self.out, number),
            Scalar::Str(bytes) => urlencode_into(self.out, bytes),
        }
        self.variables += 1;
        // Checked after the write: one variable overshoots by at most its own length,
        // which is bounded by the path (≤ 3× the keys above it) plus 3× the value.
        if self.written() > self.max_output_bytes {
            self.overflow_now();
        }
        Ok(())
    }

    /// Opens the container held by `key` at `level`; returns the mark for [`Self::leave`].
    pub(crate) fn enter(&mut self, level: usize, key: Key<'_>) -> Result<usize, FormError> {
        let mark = self.path.len();
        write_key(&mut self.path, key);
        if level > 1 {
            self.path.extend_from_slice(b"%5D");
        }
        self.path.extend_from_slice(b"%5B");
        // The path is at most 3 bytes per key byte above it plus 6 per level, so it needs
        // no cap of its own; it is only ever copied into the body, which has one.
        Ok(mark)
    }

    /// Closes the container opened with `mark`.
    pub(crate) fn leave(&mut self, mark: usize) {
        self.path.truncate(mark);
    }
}

fn write_key(out: &mut Vec<u8>, key: Key<'_>) {
    match key {
        Key::Encoded(bytes) => out.extend_from_slice(bytes),
        Key::Raw(bytes) => urlencode_into(out, bytes),
        Key::Index(index) => write_index(out, index),
    }
}
