//! Encoders: client commands (arrays of bulk strings) and server replies of every type,
//! in RESP2 and RESP3 flavours, appended to a caller's `Vec<u8>` with no allocation of
//! their own (numbers are formatted on the stack).
//!
//! The reply encoders write what Redis 7.0 writes for the same value in each protocol
//! (`src/networking.c`): RESP2 has no null, boolean, double, map, set or push types, so
//! those degrade exactly as Redis degrades them.

use std::io::Write as _;

use super::frame::Frame;

/// The protocol a connection negotiated (`HELLO 2` / `HELLO 3`); replies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// RESP2, the default of every new connection.
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Formats an integer on the stack; returns the buffer and where the digits start.
#[inline]
fn itoa(value: i64, digits: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        start -= 1;
        if magnitude == 0 {
            break;
        }
    }
    digits.get(start..).unwrap_or_default()
}

/// Appends `<type><value>\r\n`.
#[inline]
fn number_line(out: &mut Vec<u8>, type_byte: u8, value: i64) {
    let mut digits = [0u8; 20];
    out.push(type_byte);
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(itoa(value, &mut digits));
    out.extend_from_slice(b"\r\n");
}

fn length_line(out: &mut Vec<u8>, type_byte: u8, len: usize) {
    number_line(out, type_byte, i64::try_from(len).unwrap_or(i64::MAX));
}

/// Appends a command: an array of bulk strings, e.g. `PUBLISH chan payload`.
#[inline]
pub fn encode_command<I>(out: &mut Vec<u8>, args: I)
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: ExactSizeIterator,
{
    let args = args.into_iter();
    length_line(out, b'*', args.len());
    for arg in args {
        bulk_string(out, arg.as_ref());
    }
}

/// Appends a line whose content must not hold `\r` or `\n` (they would end the line
/// early and let the content inject frames): they are replaced by spaces, as Redis does
/// for error messages.
fn line(out: &mut Vec<u8>, type_byte: u8, content: &[u8]) {
    out.push(type_byte);
    let start = out.len();
    out.extend_from_slice(content);
    if let Some(written) = out.get_mut(start..) {
        for byte in written
            .iter_mut()
            .filter(|byte| matches!(byte, b'\r' | b'\n'))
        {
            *byte = b' ';
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn raw_line(out: &mut Vec<u8>, type_byte: u8, content: &[u8]) {
    out.push(type_byte);
    out.extend_from_slice(content);
    out.extend_from_slice(b"\r\n");
}

/// `+OK\r\n` (CR/LF in `text` become spaces).
pub fn simple_string(out: &mut Vec<u8>, text: &[u8]) {
    line(out, b'+', text);
}

/// `-ERR message\r\n`: `message` includes the code (`ERR`, `WRONGTYPE`, …); CR/LF become spaces.
pub fn error(out: &mut Vec<u8>, message: &[u8]) {
    line(out, b'-', message);
}

/// `:42\r\n`.
pub fn integer(out: &mut Vec<u8>, value: i64) {
    number_line(out, b':', value);
}

/// `$3\r\nfoo\r\n` (binary-safe).
#[inline]
pub fn bulk_string(out: &mut Vec<u8>, bytes: &[u8]) {
    length_line(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A missing value: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn null(out: &mut Vec<u8>, version: Version) {
    out.extend_from_slice(match version {
        Version::Resp2 => b"$-1\r\n",
        Version::Resp3 => b"_\r\n",
    });
}

/// A missing aggregate (e.g. a timed-out `BLPOP`): `*-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn null_array(out: &mut Vec<u8>, version: Version) {
    out.extend_from_slice(match version {
        Version::Resp2 => b"*-1\r\n",
        Version::Resp3 => b"_\r\n",
    });
}

/// `#t\r\n` / `#f\r\n` in RESP3; `:1\r\n` / `:0\r\n` in RESP2.
pub fn boolean(out: &mut Vec<u8>, version: Version, value: bool) {
    out.extend_from_slice(match (version, value) {
        (Version::Resp3, true) => b"#t\r\n",
        (Version::Resp3, false) => b"#f\r\n",
        (Version::Resp2, true) => b":1\r\n",
        (Version::Resp2, false) => b":0\r\n",
    });
}

/// A double as Redis 7.0 writes it (`%.17g`, `inf`, `-inf`, `nan`): `,1.5\r\n` in RESP3,
/// the same text as a bulk string in RESP2.
pub fn double(out: &mut Vec<u8>, version: Version, value: f64) {
    let mut text = [0u8; 32];
    let text = format_double(value, &mut text);
    match version {
        Version::Resp3 => line(out, b',', text),
        Version::Resp2 => bulk_string(out, text),
    }
}

/// `(12345…\r\n` in RESP3; a bulk string of the digits in RESP2. `digits` must be an
/// optionally signed run of ASCII digits.
pub fn big_number(out: &mut Vec<u8>, version: Version, digits: &[u8]) {
    match version {
        Version::Resp3 => line(out, b'(', digits),
        Version::Resp2 => bulk_string(out, digits),
    }
}

/// `!<len>\r\nmessage\r\n` in RESP3; a simple error (CR/LF become spaces) in RESP2.
pub fn bulk_error(out: &mut Vec<u8>, version: Version, message: &[u8]) {
    match version {
        Version::Resp3 => {
            length_line(out, b'!', message.len());
            out.extend_from_slice(message);
            out.extend_from_slice(b"\r\n");
        }
        Version::Resp2 => error(out, message),
    }
}

/// `=<len>\r\ntxt:text\r\n` in RESP3; a bulk string of `text` in RESP2. `format` is three
/// bytes (`txt`, `mkd`); a shorter or longer one is padded or cut to three.
pub fn verbatim(out: &mut Vec<u8>, version: Version, format: &[u8], text: &[u8]) {
    match version {
        Version::Resp3 => {
            length_line(out, b'=', text.len().saturating_add(4));
            let mut format3 = *b"txt";
            for (slot, &byte) in format3.iter_mut().zip(format) {
                *slot = byte;
            }
            out.extend_from_slice(&format3);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Version::Resp2 => bulk_string(out, text),
    }
}

/// `*<len>\r\n`: the caller then encodes `len` elements.
pub fn array_header(out: &mut Vec<u8>, len: usize) {
    length_line(out, b'*', len);
}

/// `~<len>\r\n` in RESP3, `*<len>\r\n` in RESP2; then `len` elements.
pub fn set_header(out: &mut Vec<u8>, version: Version, len: usize) {
    let type_byte = if version == Version::Resp3 {
        b'~'
    } else {
        b'*'
    };
    length_line(out, type_byte, len);
}

/// `%<pairs>\r\n` in RESP3, `*<2×pairs>\r\n` (a flat key, value, … array) in RESP2; then
/// `pairs` keys and values alternately.
pub fn map_header(out: &mut Vec<u8>, version: Version, pairs: usize) {
    match version {
        Version::Resp3 => length_line(out, b'%', pairs),
        Version::Resp2 => length_line(out, b'*', pairs.saturating_mul(2)),
    }
}

/// `><len>\r\n` in RESP3, `*<len>\r\n` in RESP2 (pub/sub messages are arrays there).
pub fn push_header(out: &mut Vec<u8>, version: Version, len: usize) {
    let type_byte = if version == Version::Resp3 {
        b'>'
    } else {
        b'*'
    };
    length_line(out, type_byte, len);
}

/// `|<pairs>\r\n` in RESP3, then `pairs` keys and values, then the reply they annotate.
/// RESP2 has no attributes and Redis drops them there: nothing is written and `false`
/// returned, and the caller must then not write the pairs either.
#[must_use]
pub fn attribute_header(out: &mut Vec<u8>, version: Version, pairs: usize) -> bool {
    if version == Version::Resp2 {
        return false;
    }
    length_line(out, b'|', pairs);
    true
}

/// A fixed buffer that `write!` can format into without allocating.
struct StackText<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl std::io::Write for StackText<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let free = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = bytes.len().min(free.len());
        free.iter_mut()
            .zip(bytes)
            .for_each(|(slot, &byte)| *slot = byte);
        self.len += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// C's `printf("%.17g", value)`, which Redis 7.0 uses for doubles (`addReplyDouble`):
/// 17 significant digits, trailing zeros dropped, exponent form when the exponent is
/// below -4 or at least 17. Infinities are `inf`/`-inf`, NaN is `nan`.
pub fn format_double(value: f64, out: &mut [u8; 32]) -> &[u8] {
    if value.is_nan() {
        return b"nan";
    }
    if value.is_infinite() {
        return if value > 0.0 { b"inf" } else { b"-inf" };
    }
    // Rust's `{:.16e}` is correctly rounded, like glibc: 17 significant digits and the
    // decimal exponent, e.g. `-1.2340000000000000e-5`.
    let mut scientific = [0u8; 32];
    let mut writer = StackText {
        buf: &mut scientific,
        len: 0,
    };
    if write!(writer, "{:.16e}", value.abs()).is_err() {
        return b"nan";
    }
    let written = writer.len;
    let text = scientific.get(..written).unwrap_or_default();
    let Some(e_at) = text.iter().position(|&b| b == b'e') else {
        return b"nan";
    };
    let (mantissa, exponent) = text.split_at(e_at);
    let exponent: i32 = std::str::from_utf8(exponent.get(1..).unwrap_or_default())
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let mut digits = [b'0'; 17];
    for (slot, &digit) in digits
        .iter_mut()
        .zip(mantissa.iter().filter(|b| b.is_ascii_digit()))
    {
        *slot = digit;
    }
    // Significant digits without trailing zeros (at least one).
    let significant = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |last| last + 1);
    let digits = digits.get(..significant).unwrap_or_default();

    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &byte in bytes {
            if let Some(slot) = out.get_mut(len) {
                *slot = byte;
                len += 1;
            }
        }
    };
    if value.is_sign_negative() {
        put(b"-");
    }
    if !(-4..17).contains(&exponent) {
        let (first, rest) = digits.split_at_checked(1).unwrap_or((b"0", b""));
        put(first);
        if !rest.is_empty() {
            put(b".");
            put(rest);
        }
        put(if exponent < 0 { b"e-" } else { b"e+" });
        let mut exponent_digits = [0u8; 20];
        let exponent_text = itoa(i64::from(exponent), &mut exponent_digits);
        if exponent_text.len() < 2 {
            put(b"0");
        }
        put(exponent_text);
    } else if exponent < 0 {
        put(b"0.");
        for _ in 0..(-exponent - 1) {
            put(b"0");
        }
        put(digits);
    } else {
        let integer_len = usize::try_from(exponent).unwrap_or(0) + 1;
        for position in 0..integer_len {
            put(digits.get(position..=position).unwrap_or(b"0"));
        }
        if let Some(fraction) = digits.get(integer_len..).filter(|f| !f.is_empty()) {
            put(b".");
            put(fraction);
        }
    }
    out.get(..len).unwrap_or_default()
}

impl Frame<'_> {
    /// Appends this frame's canonical RESP3 encoding (RESP2 nulls stay RESP2 nulls):
    /// decoding the output gives a frame equal to `self`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            // Decoded lines hold no `\r` (the decoder ended them there) and a bare `\n`
            // is kept as received, so these are written verbatim.
            Frame::SimpleString(text) => raw_line(out, b'+', text),
            Frame::Error(text) => raw_line(out, b'-', text),
            Frame::Integer(value) => integer(out, value),
            Frame::BulkString(bytes) => bulk_string(out, bytes),
            Frame::NullBulk => null(out, Version::Resp2),
            Frame::NullArray => null_array(out, Version::Resp2),
            Frame::Null => null(out, Version::Resp3),
            Frame::Boolean(value) => boolean(out, Version::Resp3, value),
            Frame::Double(value) => double(out, Version::Resp3, value),
            Frame::BigNumber(digits) => raw_line(out, b'(', digits),
            Frame::BulkError(message) => bulk_error(out, Version::Resp3, message),
            Frame::Verbatim { format, text } => verbatim(out, Version::Resp3, format, text),
            Frame::Array(aggregate)
            | Frame::Set(aggregate)
            | Frame::Map(aggregate)
            | Frame::Attribute(aggregate)
            | Frame::Push(aggregate) => {
                length_line(out, aggregate.kind().type_byte(), aggregate.len());
                // Recursion depth is bounded by the decoder's nesting limit (≤ MAX_DEPTH).
                for element in aggregate.iter() {
                    element.encode(out);
                }
            }
        }
    }
}
