//! The grammar of one RESP item: its type byte, its line and, for bulk types, its payload.
//!
//! Both the validating [`Decoder`](super::Decoder) and the lazy aggregate iterators read
//! items through [`parse_head`], so the two can never disagree about what a byte means.
//! An aggregate's header is reported as [`Head::Open`]; its children are the caller's
//! business (the decoder keeps a stack of pending counts, the iterator a single counter).
//!
//! (The decoder also calls [`whole_bulk_string`] directly for an aggregate's children;
//! it is `parse_head`'s own happy path for bulk strings, not a second grammar.)
//!
//! Speed: a pub/sub message is four items (`*3`, then three bulk strings), and the three
//! elements are read twice, once validating and once when the frame is classified, so
//! item heads are the decoder's hot path. The common shape (a few digits then CRLF) is read by an
//! always-inlined fast path; the full grammar, errors and `Partial` live out of line.

use super::frame::{Aggregate, AggregateKind, Frame};
use super::{Limits, RespError};

/// Longest integer line (`:`) or length/count header: `-9223372036854775808` is 20 bytes;
/// a little slack for leading zeros, no more, so a peer cannot stall us on digits.
pub(super) const MAX_NUMBER_LINE: usize = 32;
/// Longest double line (`,`): Redis writes at most 24 bytes (`%.17g`); strtod-style
/// inputs with many zeros are allowed up to this cap.
pub(super) const MAX_DOUBLE_LINE: usize = 128;

/// One item header, fully validated.
pub(super) enum Head<'b> {
    /// A whole item that contains no children, and the bytes it used.
    Leaf(Frame<'b>, usize),
    /// An aggregate header: `count` as on the wire (pairs for maps and attributes),
    /// `elements` the frames that follow, `header_len` the bytes of the header line.
    Open {
        kind: AggregateKind,
        count: usize,
        elements: usize,
        header_len: usize,
    },
}

/// The answer of [`parse_head`].
pub(super) enum Scan<'b> {
    /// The item header (and payload) is complete.
    Done(Head<'b>),
    /// More bytes are needed; `line_scanned` bytes of the item are known to hold no `\r`,
    /// so the next attempt can resume its line search there.
    Partial { line_scanned: usize },
}

/// A complete line: its content (between the type byte and `\r\n`) and total length.
struct Line<'b> {
    content: &'b [u8],
    total: usize,
}

/// Finds the `\r\n` ending the line that starts at `buf[0]` (the type byte), searching
/// from `from`, allowing at most `cap` bytes of content.
fn line(buf: &[u8], from: usize, cap: usize) -> Result<Result<Line<'_>, usize>, RespError> {
    let window_end = buf.len().min(cap.saturating_add(2));
    let start = from.max(1);
    let window = buf.get(start..window_end).unwrap_or_default();
    match window.iter().position(|&byte| byte == b'\r') {
        Some(offset) => {
            let cr = start + offset;
            match buf.get(cr + 1) {
                None => Ok(Err(cr)),
                Some(b'\n') => Ok(Ok(Line {
                    content: buf.get(1..cr).unwrap_or_default(),
                    total: cr + 2,
                })),
                Some(_) => Err(RespError::BadLineEnd),
            }
        }
        None if buf.len() >= cap.saturating_add(2) => Err(RespError::LineTooLong),
        None => Ok(Err(buf.len().max(start))),
    }
}

/// Parses an unsigned decimal run (non-empty, digits only).
fn unsigned(digits: &[u8]) -> Result<u64, RespError> {
    if digits.is_empty() {
        return Err(RespError::BadInteger);
    }
    let mut value: u64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(RespError::BadInteger);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(RespError::IntegerOverflow)?;
    }
    Ok(value)
}

/// Parses a signed 64-bit decimal integer as Redis writes it (`-` allowed, no `+`).
pub(super) fn signed(content: &[u8]) -> Result<i64, RespError> {
    match content.split_first() {
        Some((b'-', magnitude)) => {
            let magnitude = unsigned(magnitude)?;
            0i64.checked_sub_unsigned(magnitude)
                .ok_or(RespError::IntegerOverflow)
        }
        _ => i64::try_from(unsigned(content)?).map_err(|_| RespError::IntegerOverflow),
    }
}

/// Most digits [`short_number_line`] reads: any 19-digit number is below 10^19, which
/// fits in a `u64` (≈ 1.8 × 10^19), so the fast path needs no overflow checks.
const SHORT_NUMBER_DIGITS: usize = 19;

/// A whole line of 1 to [`SHORT_NUMBER_DIGITS`] digits after the type byte, ending in
/// CRLF: its value and the line's length. `None` for anything else (a sign, more digits,
/// a line not yet complete, a malformed end), which the general path then judges.
#[inline(always)]
fn short_number_line(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    // `index` is the position of the byte being read; digits start after the type byte.
    let mut index = 1;
    loop {
        let digit = buf.get(index)?.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if index > SHORT_NUMBER_DIGITS {
            return None;
        }
        value = value * 10 + u64::from(digit);
        index += 1;
    }
    // One comparison of two bytes rather than two branches: this runs for every item.
    match buf.get(index..index + 2) {
        Some(b"\r\n") if index > 1 => Some((value, index + 2)),
        _ => None,
    }
}

/// A length or count header: `Some(n)`, or `None` for the RESP2 null `-1`.
fn length(content: &[u8]) -> Result<Option<u64>, RespError> {
    match content {
        b"-1" => Ok(None),
        b"?" => Err(RespError::StreamedNotSupported),
        [b'-', rest @ ..] => match unsigned(rest) {
            Ok(_) | Err(RespError::IntegerOverflow) => Err(RespError::NegativeLength),
            Err(other) => Err(other),
        },
        _ => unsigned(content).map(Some),
    }
}

/// Parses a RESP3 double's text: a decimal or exponent number, `inf`, `-inf` or `nan`.
fn double(content: &[u8]) -> Result<f64, RespError> {
    // Rust's float grammar also takes "infinity" and a leading '+', which strtod (and so
    // Redis) accepts too; every other byte is refused before parsing.
    let text = std::str::from_utf8(content).map_err(|_| RespError::BadDouble)?;
    text.parse::<f64>().map_err(|_| RespError::BadDouble)
}

fn big_number(content: &[u8]) -> Result<&[u8], RespError> {
    let digits = match content.split_first() {
        Some((b'-' | b'+', rest)) => rest,
        _ => content,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadBigNumber);
    }
    Ok(content)
}

/// The common case of a bulk string: `$`, a short length within the limit, then the
/// payload and its CRLF, all present. Returns the payload and the item's length.
///
/// This is the happy path of [`parse_head`] for bulk strings, and the decoder calls it
/// directly for an aggregate's children, whose frames it would throw away. `None` sends
/// the item to the rest of `parse_head` ([`bulk`]), which judges everything else:
/// errors, `Partial`, long length lines.
#[inline(always)]
pub(super) fn whole_bulk_string<'b>(buf: &'b [u8], limits: &Limits) -> Option<(&'b [u8], usize)> {
    if buf.first() != Some(&b'$') {
        return None;
    }
    let (len, header_len) = short_number_line(buf)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= limits.max_bulk_len)?;
    let payload_end = header_len.checked_add(len)?;
    let total = payload_end.checked_add(2)?;
    match buf.get(payload_end..total) {
        Some(b"\r\n") => Some((buf.get(header_len..payload_end)?, total)),
        _ => None,
    }
}

/// Reads the item at the start of `buf` (whose first byte is its type byte).
/// `line_scanned` comes from an earlier [`Scan::Partial`] on the same item, or is 0.
///
/// Always inlined, and only the fast path is: every caller (the decoder's loop, the
/// aggregate iterators) then sees what the `Head` holds and drops what it does not use
/// (the validator never looks at a leaf's `Frame`). Everything else is out of line in
/// [`parse_head_general`].
#[inline(always)]
pub(super) fn parse_head<'b>(
    buf: &'b [u8],
    limits: &Limits,
    line_scanned: usize,
) -> Result<Scan<'b>, RespError> {
    if let Some((payload, total)) = whole_bulk_string(buf, limits) {
        return Ok(Scan::Done(Head::Leaf(Frame::BulkString(payload), total)));
    }
    // Lines that dominate real traffic (`$64`, `*3`, `>3`, `:1`): a few digits then CRLF,
    // read in one pass. Anything else (signs, partial lines, errors, other types) takes
    // the general path, which is the single source of every error and `Partial`.
    if let (Some(&type_byte), Some((value, total))) = (buf.first(), short_number_line(buf)) {
        match type_byte {
            b'$' | b'!' | b'=' => return bulk(buf, type_byte, Some(value), total, limits),
            b'*' | b'~' | b'%' | b'|' | b'>' => {
                return aggregate(type_byte, Some(value), total, limits)
            }
            b':' => {
                if let Ok(value) = i64::try_from(value) {
                    return Ok(Scan::Done(Head::Leaf(Frame::Integer(value), total)));
                }
            }
            _ => {}
        }
    }
    parse_head_general(buf, limits, line_scanned)
}

/// [`parse_head`] for every item: the grammar in full.
#[inline(never)]
fn parse_head_general<'b>(
    buf: &'b [u8],
    limits: &Limits,
    line_scanned: usize,
) -> Result<Scan<'b>, RespError> {
    let Some(&type_byte) = buf.first() else {
        return Ok(Scan::Partial { line_scanned: 0 });
    };
    let cap = match type_byte {
        b'+' | b'-' | b'(' => limits.max_line_len,
        b',' => MAX_DOUBLE_LINE,
        b'_' | b'#' => 1,
        b':' | b'$' | b'!' | b'=' | b'*' | b'~' | b'%' | b'|' | b'>' => MAX_NUMBER_LINE,
        other => return Err(RespError::UnknownType(other)),
    };
    let Line { content, total } = match line(buf, line_scanned, cap)? {
        Ok(line) => line,
        Err(line_scanned) => return Ok(Scan::Partial { line_scanned }),
    };
    let leaf = |frame| Ok(Scan::Done(Head::Leaf(frame, total)));
    match type_byte {
        b'+' => leaf(Frame::SimpleString(content)),
        b'-' => leaf(Frame::Error(content)),
        b':' => leaf(Frame::Integer(signed(content)?)),
        b'(' => leaf(Frame::BigNumber(big_number(content)?)),
        b',' => leaf(Frame::Double(double(content)?)),
        b'_' if content.is_empty() => leaf(Frame::Null),
        b'_' => Err(RespError::BadNull),
        b'#' => match content {
            b"t" => leaf(Frame::Boolean(true)),
            b"f" => leaf(Frame::Boolean(false)),
            _ => Err(RespError::BadBoolean),
        },
        b'$' | b'!' | b'=' => bulk(buf, type_byte, length(content)?, total, limits),
        _ => aggregate(type_byte, length(content)?, total, limits),
    }
}

/// The payload part of `$`, `!` and `=` items, after their header line.
#[inline]
fn bulk<'b>(
    buf: &'b [u8],
    type_byte: u8,
    length: Option<u64>,
    header_len: usize,
    limits: &Limits,
) -> Result<Scan<'b>, RespError> {
    let len = match length {
        Some(len) => len,
        None if type_byte == b'$' => {
            return Ok(Scan::Done(Head::Leaf(Frame::NullBulk, header_len)))
        }
        None => return Err(RespError::NegativeLength),
    };
    // Checked before waiting for (or looking at) a single payload byte.
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= limits.max_bulk_len)
        .ok_or(RespError::BulkTooLong)?;
    let payload_end = header_len.checked_add(len).ok_or(RespError::BulkTooLong)?;
    let total = payload_end.checked_add(2).ok_or(RespError::BulkTooLong)?;
    let Some(after) = buf.get(payload_end..) else {
        return Ok(Scan::Partial { line_scanned: 0 });
    };
    // Check the terminator bytes already present, so a lying length fails as early as the
    // bytes allow instead of after the peer sends more.
    match after {
        [b'\r', b'\n', ..] => {}
        [] | [b'\r'] => return Ok(Scan::Partial { line_scanned: 0 }),
        _ => return Err(RespError::BadBulkEnd),
    }
    let payload = buf.get(header_len..payload_end).unwrap_or_default();
    let frame = match type_byte {
        b'$' => Frame::BulkString(payload),
        b'!' => Frame::BulkError(payload),
        _ => match payload.split_at_checked(3) {
            Some((format, [b':', text @ ..])) => Frame::Verbatim { format, text },
            _ => return Err(RespError::BadVerbatim),
        },
    };
    Ok(Scan::Done(Head::Leaf(frame, total)))
}

/// The header of `*`, `~`, `%`, `|` and `>` items.
#[inline]
fn aggregate<'b>(
    type_byte: u8,
    length: Option<u64>,
    header_len: usize,
    limits: &Limits,
) -> Result<Scan<'b>, RespError> {
    let kind = match type_byte {
        b'*' => AggregateKind::Array,
        b'~' => AggregateKind::Set,
        b'%' => AggregateKind::Map,
        b'|' => AggregateKind::Attribute,
        _ => AggregateKind::Push,
    };
    let count = match length {
        Some(count) => count,
        None if kind == AggregateKind::Array => {
            return Ok(Scan::Done(Head::Leaf(Frame::NullArray, header_len)))
        }
        None => return Err(RespError::NegativeLength),
    };
    let per_entry = if kind.is_keyed() { 2 } else { 1 };
    let elements = count
        .checked_mul(per_entry)
        .and_then(|elements| usize::try_from(elements).ok())
        .filter(|&elements| elements <= limits.max_elements)
        .ok_or(RespError::TooManyElements)?;
    let count = usize::try_from(count).map_err(|_| RespError::TooManyElements)?;
    Ok(Scan::Done(Head::Open {
        kind,
        count,
        elements,
        header_len,
    }))
}

/// Reads one already-validated item and, for an aggregate, skips over its children to
/// find where it ends. Returns `None` if the bytes are not a complete item, which cannot
/// happen on bytes the decoder accepted; callers end their iteration then.
#[inline(always)]
pub(super) fn element_at(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
    // Bulk strings are nearly every element Redis sends (pub/sub frames are nothing
    // else): read them here, inlined into the iterator. Their limit and CRLF were checked
    // during validation; everything else goes out of line.
    if buf.first() == Some(&b'$') {
        if let Some((len, header_len)) = short_number_line(buf) {
            let end = header_len.checked_add(usize::try_from(len).ok()?)?;
            let payload = buf.get(header_len..end)?;
            return Some((Frame::BulkString(payload), end.checked_add(2)?));
        }
    }
    element_at_general(buf)
}

/// [`element_at`] for every item.
#[inline(never)]
fn element_at_general(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
    let (kind, count, elements, header_len) = match parse_head(buf, &Limits::UNBOUNDED, 0) {
        Ok(Scan::Done(Head::Leaf(frame, used))) => return Some((frame, used)),
        Ok(Scan::Done(Head::Open {
            kind,
            count,
            elements,
            header_len,
        })) => (kind, count, elements, header_len),
        Ok(Scan::Partial { .. }) | Err(_) => return None,
    };
    // One counter suffices to find the end: every item read settles one pending element
    // and an aggregate header adds its own children. No recursion, no stack.
    let mut pending = elements;
    let mut end = header_len;
    while pending > 0 {
        let rest = buf.get(end..)?;
        match parse_head(rest, &Limits::UNBOUNDED, 0) {
            Ok(Scan::Done(Head::Leaf(_, used))) => {
                end = end.checked_add(used)?;
                pending -= 1;
            }
            Ok(Scan::Done(Head::Open {
                elements,
                header_len,
                ..
            })) => {
                end = end.checked_add(header_len)?;
                pending = (pending - 1).checked_add(elements)?;
            }
            Ok(Scan::Partial { .. }) | Err(_) => return None,
        }
    }
    let aggregate = Aggregate::new(kind, count, elements, buf.get(header_len..end)?);
    Some((aggregate.into_frame(), end))
}
