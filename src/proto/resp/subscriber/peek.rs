//! The oversized-message peek: reads the header of a pub/sub `message`/`pmessage` frame
//! that is still arriving, up to its payload's length line, so that a payload larger than
//! `max_message_bytes` can be skipped as it arrives instead of waiting (and buffering)
//! for the whole frame, which is all the [`Decoder`](crate::proto::resp::Decoder) can do.
//!
//! Why a peek in the session rather than a skip mode in the codec: only the session knows
//! that a frame on this connection is a pub/sub message and what the payload limit is; the
//! codec stays a pure "whole frames" decoder with no pub/sub knowledge. The peek runs only
//! on the rare paths (the decoder answered `Partial` for the first time on a frame, or
//! refused a bulk as too long), so the common path of small messages never pays for it.
//!
//! Redis writes these headers in one fixed shape (`src/pubsub.c`: `*3`/`>3` then
//! `$7\r\nmessage\r\n`, or `*4`/`>4` then `$8\r\npmessage\r\n` and the pattern, then the
//! channel, then the payload), all bulk strings. Anything else is "not oversized": the
//! decoder then reads the frame normally and reports whatever is wrong with it.

use std::ops::Range;

/// Longest length line the peek reads (`$` + digits), like the codec's own cap.
const MAX_NUMBER_LINE: usize = 32;

/// What the peek found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Peek {
    /// The header is not complete yet: peek again when more bytes arrived.
    NeedMore,
    /// Not a pub/sub message with a too-long payload: let the decoder have it.
    NotOversized,
    /// A message whose payload is longer than allowed.
    Oversized(OversizedHeader),
}

/// The header of a message whose payload must be skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OversizedHeader {
    /// Bytes up to and including the payload's `$<len>\r\n` line.
    pub(super) header_len: usize,
    /// The payload's announced length (its CRLF follows it).
    pub(super) payload_len: usize,
    /// Where the pattern is in the buffer (`pmessage` only).
    pub(super) pattern: Option<Range<usize>>,
    /// Where the channel is in the buffer.
    pub(super) channel: Range<usize>,
}

/// One step of the peek: `Err` ends it with that answer.
type Step<T> = Result<T, Peek>;

/// Reads a header line starting at `at` (type byte included); returns the content's
/// range and the position after the CRLF.
fn line(buf: &[u8], at: usize, type_byte: u8) -> Step<(Range<usize>, usize)> {
    match buf.get(at) {
        None => return Err(Peek::NeedMore),
        Some(&byte) if byte != type_byte => return Err(Peek::NotOversized),
        Some(_) => {}
    }
    let start = at + 1;
    let window_end = buf.len().min(start + MAX_NUMBER_LINE + 1);
    let window = buf.get(start..window_end).unwrap_or_default();
    match window.iter().position(|&byte| byte == b'\r') {
        Some(offset) => match buf.get(start + offset + 1) {
            None => Err(Peek::NeedMore),
            Some(b'\n') => Ok((start..start + offset, start + offset + 2)),
            Some(_) => Err(Peek::NotOversized),
        },
        None if window.len() > MAX_NUMBER_LINE => Err(Peek::NotOversized),
        None => Err(Peek::NeedMore),
    }
}

/// A length line's value: digits only (a null `-1` or anything else is not our shape).
fn number(buf: &[u8], range: Range<usize>) -> Step<usize> {
    let digits = buf.get(range).unwrap_or_default();
    if digits.is_empty() {
        return Err(Peek::NotOversized);
    }
    digits.iter().try_fold(0usize, |value, &byte| {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(Peek::NotOversized);
        }
        value
            .checked_mul(10)
            .and_then(|value| value.checked_add(usize::from(digit)))
            .ok_or(Peek::NotOversized)
    })
}

/// Reads a whole bulk string of at most `max_len` bytes at `at`: its content's range and
/// the position after it.
fn bulk(buf: &[u8], at: usize, max_len: usize) -> Step<(Range<usize>, usize)> {
    let (digits, after_line) = line(buf, at, b'$')?;
    let len = number(buf, digits)?;
    if len > max_len {
        return Err(Peek::NotOversized);
    }
    let end = after_line + len;
    match buf.get(end..end + 2) {
        None => Err(Peek::NeedMore),
        Some(b"\r\n") => Ok((after_line..end, end + 2)),
        Some(_) => Err(Peek::NotOversized),
    }
}

/// Peeks at the frame starting at `buf[0]`: is it a `message`/`pmessage` whose payload is
/// longer than `max_payload`? Channel and pattern names longer than `max_name` are not
/// read (the decoder refuses them).
pub(super) fn peek_oversized(buf: &[u8], max_payload: usize, max_name: usize) -> Peek {
    match peek(buf, max_payload, max_name) {
        Ok(header) => Peek::Oversized(header),
        Err(answer) => answer,
    }
}

fn peek(buf: &[u8], max_payload: usize, max_name: usize) -> Step<OversizedHeader> {
    let aggregate = match buf.first() {
        None => return Err(Peek::NeedMore),
        Some(&byte @ (b'*' | b'>')) => byte,
        Some(_) => return Err(Peek::NotOversized),
    };
    let (count, mut at) = line(buf, 0, aggregate)?;
    let is_pattern = match buf.get(count) {
        Some(b"3") => false,
        Some(b"4") => true,
        _ => return Err(Peek::NotOversized),
    };
    let (kind, after_kind) = bulk(buf, at, 8)?;
    let expected: &[u8] = if is_pattern { b"pmessage" } else { b"message" };
    if buf.get(kind) != Some(expected) {
        return Err(Peek::NotOversized);
    }
    at = after_kind;
    let pattern = if is_pattern {
        let (pattern, after_pattern) = bulk(buf, at, max_name)?;
        at = after_pattern;
        Some(pattern)
    } else {
        None
    };
    let (channel, after_channel) = bulk(buf, at, max_name)?;
    let (digits, header_len) = line(buf, after_channel, b'$')?;
    let payload_len = number(buf, digits)?;
    if payload_len <= max_payload {
        return Err(Peek::NotOversized);
    }
    Ok(OversizedHeader {
        header_len,
        payload_len,
        pattern,
        channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$2000\r\n";
    const PMESSAGE: &[u8] = b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$4\r\nchan\r\n$2000\r\n";

    #[test]
    fn finds_oversized_message_headers() {
        assert_eq!(
            peek_oversized(MESSAGE, 1024, 100),
            Peek::Oversized(OversizedHeader {
                header_len: MESSAGE.len(),
                payload_len: 2000,
                pattern: None,
                channel: 21..25,
            })
        );
        assert_eq!(
            peek_oversized(PMESSAGE, 1024, 100),
            Peek::Oversized(OversizedHeader {
                header_len: PMESSAGE.len(),
                payload_len: 2000,
                pattern: Some(22..24),
                channel: 30..34,
            })
        );
    }

    #[test]
    fn every_prefix_needs_more() {
        for frame in [MESSAGE, PMESSAGE] {
            for end in 0..frame.len() {
                assert_eq!(
                    peek_oversized(&frame[..end], 1024, 100),
                    Peek::NeedMore,
                    "{end}"
                );
            }
        }
    }

    #[test]
    fn within_limits_or_other_shapes_are_not_oversized() {
        assert_eq!(peek_oversized(MESSAGE, 2000, 100), Peek::NotOversized);
        assert_eq!(peek_oversized(MESSAGE, 1024, 3), Peek::NotOversized);
        for other in [
            &b"+PONG\r\n"[..],
            b"*3\r\n$9\r\nsubscribe\r\n",
            b"*3\r\n$7\r\nMESSAGE\r\n",
            b"*4\r\n$7\r\nmessage\r\n",
            b"*3\r\n$7\r\nmessage\r\n$-1\r\n",
            b"*3\r\n$7\r\nmessage\r\n$4\r\nchanXY",
            b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n:5\r\n",
            b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$99999999999999999999999\r\n",
            b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$123456789012345678901234567890123",
        ] {
            assert_eq!(peek_oversized(other, 1024, 100), Peek::NotOversized);
        }
    }
}
