//! The command reader: request bytes → commands, as Redis 7.0's `processMultibulkBuffer`
//! and `processInlineBuffer` (redis `src/networking.c`) read them.
//!
//! - A request starting with `*` is a multibulk array of bulk strings; anything else is an
//!   inline line, split by [`split_args`](super::split::split_args). Empty multibulks
//!   (`*0`, `*-1`) and blank lines are skipped, as Redis skips them.
//! - Every count and length is checked when its header is read, before waiting for the
//!   bytes it announces: argument count ≤ `i32::MAX` (10 before AUTH when a password is
//!   set), bulk length ≤ [`ReaderLimits::max_bulk`] (16 KiB before AUTH), header and
//!   inline lines ≤ 64 KiB (`PROTO_INLINE_MAX_SIZE`).
//! - Skipped empty requests are consumed: after a `Partial` read the caller takes
//!   [`CommandReader::take_skipped`] bytes off its buffer, so blank lines cannot pile up
//!   in a client's read buffer (Redis trims them from its query buffer too).
//! - Every argument is held to [`ReaderLimits::max_bulk`], inline ones included.
//! - Resumable: a multibulk that arrives in pieces keeps the arguments already found, so
//!   its bytes are walked once. Arguments borrow from the buffer (inline ones that had
//!   escapes are owned).
//! - Like Redis, the two bytes after a bulk's payload are skipped unread, and a header
//!   line ends at its `\r`.

use std::borrow::Cow;
use std::ops::Range;

use super::split::split_args;
use crate::proto::Status;

/// Longest inline line or header line (`PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments of one multibulk (`INT_MAX`, as Redis).
pub const MAX_ARGS: usize = i32::MAX as usize;
/// Most arguments before authentication when a password is set.
pub const MAX_ARGS_UNAUTHENTICATED: usize = 10;
/// Longest bulk before authentication when a password is set.
pub const MAX_BULK_UNAUTHENTICATED: usize = 16 * 1024;

/// What the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Longest bulk string (the endpoint's `max_message_bytes`; Redis's
    /// `proto-max-bulk-len`).
    pub max_bulk: usize,
}

/// A request that cannot be read; Redis answers `-ERR Protocol error: <text>` and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// An inline line longer than 64 KiB.
    TooBigInline,
    /// A `*N` line longer than 64 KiB.
    TooBigMultibulkCount,
    /// A `$N` line longer than 64 KiB.
    TooBigBulkCount,
    /// `*N` not a number or above the limit.
    InvalidMultibulkLength,
    /// More than 10 arguments before AUTH.
    UnauthenticatedMultibulkLength,
    /// `$N` not a number, negative or above the limit.
    InvalidBulkLength {
        /// The announced length was a valid number above `max_bulk` (a too-large message
        /// rather than garbage).
        too_large: bool,
    },
    /// A bulk above 16 KiB before AUTH.
    UnauthenticatedBulkLength,
    /// An argument of a multibulk does not start with `$`.
    ExpectedDollar(u8),
    /// An inline line's quotes do not balance.
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The error line Redis sends before closing (without `-` and CRLF).
    pub fn write_message(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"ERR Protocol error: ");
        match self {
            ProtocolError::TooBigInline => out.extend_from_slice(b"too big inline request"),
            ProtocolError::TooBigMultibulkCount => {
                out.extend_from_slice(b"too big mbulk count string")
            }
            ProtocolError::TooBigBulkCount => out.extend_from_slice(b"too big bulk count string"),
            ProtocolError::InvalidMultibulkLength => {
                out.extend_from_slice(b"invalid multibulk length")
            }
            ProtocolError::UnauthenticatedMultibulkLength => {
                out.extend_from_slice(b"unauthenticated multibulk length")
            }
            ProtocolError::InvalidBulkLength { .. } => {
                out.extend_from_slice(b"invalid bulk length")
            }
            ProtocolError::UnauthenticatedBulkLength => {
                out.extend_from_slice(b"unauthenticated bulk length")
            }
            ProtocolError::ExpectedDollar(got) => {
                out.extend_from_slice(b"expected '$', got '");
                out.push(*got);
                out.push(b'\'');
            }
            ProtocolError::UnbalancedQuotes => {
                out.extend_from_slice(b"unbalanced quotes in request")
            }
        }
    }
}

/// One command: its arguments, the name first (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'buf> {
    /// `argv`, borrowed from the read buffer where possible.
    pub args: Vec<Cow<'buf, [u8]>>,
}

impl Command<'_> {
    /// The argument at `index`, if present.
    pub fn arg(&self, index: usize) -> Option<&[u8]> {
        self.args.get(index).map(|a| a.as_ref())
    }

    /// `argc`.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Never true for a command the reader produced.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}

/// A multibulk read so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Progress {
    /// Where the multibulk starts in the unconsumed input (after skipped empty requests);
    /// the positions below are relative to it.
    base: usize,
    /// Arguments still to read.
    remaining: usize,
    /// Where the next argument's header starts.
    pos: usize,
    /// The arguments found so far, as ranges of the buffer.
    args: Vec<Range<usize>>,
}

/// Reads commands from a client's buffer; see the module docs.
#[derive(Debug, Clone)]
pub struct CommandReader {
    limits: ReaderLimits,
    progress: Option<Progress>,
    /// Empty requests at the front of the input that the last `Partial` read skipped.
    skipped: usize,
    /// The name of an inline command refused for a too-long argument (multibulk ones are
    /// found through `progress`).
    refused_inline: Option<Vec<Vec<u8>>>,
}

/// Where a `\r`-ended header line ends: the index of `\r`, if it and one more byte have
/// arrived (Redis does not check that the next byte is `\n`).
fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let cr = rest.iter().position(|&b| b == b'\r')?;
    (cr + 1 < rest.len()).then_some(from + cr)
}

/// `string2ll`: an optional `-`, digits without leading zeros, fitting an `i64`.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

impl CommandReader {
    /// A reader for one connection.
    pub fn new(limits: ReaderLimits) -> CommandReader {
        CommandReader {
            limits,
            progress: None,
            skipped: 0,
            refused_inline: None,
        }
    }

    /// The argument at `index` of the command in progress or refused for a too-large
    /// argument, once it is in; `buf` is the same unconsumed input.
    pub fn pending_arg<'a>(&'a self, buf: &'a [u8], index: usize) -> Option<&'a [u8]> {
        if let Some(args) = &self.refused_inline {
            return args.get(index).map(Vec::as_slice);
        }
        let progress = self.progress.as_ref()?;
        let range = progress.args.get(index)?.clone();
        buf.get(progress.base..)?.get(range)
    }

    /// Bytes of empty requests (blank lines, `*0`) the last `Partial` read skipped at the
    /// front of its input: the caller must consume exactly these now. Resets to 0.
    pub fn take_skipped(&mut self) -> usize {
        let skipped = std::mem::take(&mut self.skipped);
        if let Some(progress) = &mut self.progress {
            progress.base = progress.base.saturating_sub(skipped);
        }
        skipped
    }

    /// Reads the next command from `buf` (the unconsumed input, starting where the last
    /// complete command ended). `authenticated` is false while a password is required and
    /// not yet given: the tighter pre-AUTH limits apply.
    pub fn read<'b>(
        &mut self,
        buf: &'b [u8],
        authenticated: bool,
    ) -> Result<Status<Command<'b>>, ProtocolError> {
        // Empty requests skipped before a multibulk that is still partial stay in the
        // buffer (nothing was consumed): resume after them.
        let mut start = self.progress.as_ref().map_or(0, |p| p.base);
        self.skipped = 0;
        self.refused_inline = None;
        loop {
            let rest = buf.get(start..).unwrap_or_default();
            let Some(&first) = rest.first() else {
                self.skipped = start;
                return Ok(Status::Partial);
            };
            let read = if first == b'*' || self.progress.is_some() {
                self.read_multibulk(rest, authenticated)?
            } else {
                self.read_inline(rest)?
            };
            match read {
                Read::Partial => {
                    if let Some(progress) = &mut self.progress {
                        progress.base = start;
                    }
                    self.skipped = start;
                    return Ok(Status::Partial);
                }
                Read::Skip(used) => start += used,
                Read::Command(args, used) => {
                    let args = args
                        .into_iter()
                        .map(|arg| match arg {
                            Arg::Range(range) => Cow::Borrowed(rest.get(range).unwrap_or_default()),
                            Arg::Owned(bytes) => Cow::Owned(bytes),
                        })
                        .collect();
                    return Ok(Status::Complete(Command { args }, start + used));
                }
            }
        }
    }

    fn read_multibulk(&mut self, buf: &[u8], authenticated: bool) -> Result<Read, ProtocolError> {
        let mut progress = match self.progress.take() {
            Some(progress) => progress,
            None => {
                let Some(cr) = header_end(buf, 0) else {
                    if buf.len() > MAX_INLINE {
                        return Err(ProtocolError::TooBigMultibulkCount);
                    }
                    return Ok(Read::Partial);
                };
                let count = parse_i64(buf.get(1..cr).unwrap_or_default())
                    .ok_or(ProtocolError::InvalidMultibulkLength)?;
                if count > MAX_ARGS as i64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if !authenticated && count > MAX_ARGS_UNAUTHENTICATED as i64 {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                if count <= 0 {
                    return Ok(Read::Skip(cr + 2));
                }
                let count = usize::try_from(count).unwrap_or(0);
                Progress {
                    base: 0,
                    remaining: count,
                    pos: cr + 2,
                    args: Vec::with_capacity(count.min(1024)),
                }
            }
        };
        while progress.remaining > 0 {
            let Some(&dollar) = buf.get(progress.pos) else {
                self.progress = Some(progress);
                return Ok(Read::Partial);
            };
            if dollar != b'$' {
                return Err(ProtocolError::ExpectedDollar(dollar));
            }
            let Some(cr) = header_end(buf, progress.pos) else {
                if buf.len() - progress.pos > MAX_INLINE {
                    return Err(ProtocolError::TooBigBulkCount);
                }
                self.progress = Some(progress);
                return Ok(Read::Partial);
            };
            let len = parse_i64(buf.get(progress.pos + 1..cr).unwrap_or_default())
                .ok_or(ProtocolError::InvalidBulkLength { too_large: false })?;
            if len < 0 {
                return Err(ProtocolError::InvalidBulkLength { too_large: false });
            }
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if !authenticated && len > MAX_BULK_UNAUTHENTICATED {
                return Err(ProtocolError::UnauthenticatedBulkLength);
            }
            if len > self.limits.max_bulk {
                // Kept so the caller can tell which command was refused.
                self.progress = Some(progress);
                return Err(ProtocolError::InvalidBulkLength { too_large: true });
            }
            let payload = cr + 2;
            if buf.len() < payload + len + 2 {
                self.progress = Some(progress);
                return Ok(Read::Partial);
            }
            progress.args.push(payload..payload + len);
            progress.pos = payload + len + 2;
            progress.remaining -= 1;
        }
        let used = progress.pos;
        Ok(Read::Command(
            progress.args.into_iter().map(Arg::Range).collect(),
            used,
        ))
    }
}

/// An argument before it is turned into a `Cow` of the caller's buffer.
enum Arg {
    Range(Range<usize>),
    Owned(Vec<u8>),
}

/// One step of reading.
enum Read {
    Partial,
    /// An empty request of this many bytes.
    Skip(usize),
    Command(Vec<Arg>, usize),
}

impl CommandReader {
    fn read_inline(&mut self, buf: &[u8]) -> Result<Read, ProtocolError> {
        let read = read_inline(buf)?;
        if let Read::Command(args, _) = &read {
            let too_long = args
                .iter()
                .any(|arg| matches!(arg, Arg::Owned(bytes) if bytes.len() > self.limits.max_bulk));
            if too_long {
                // Redis has no such check (its inline lines stop at 64 KiB); ferry's
                // `max_message_bytes` may be lower, and binds every way in.
                self.refused_inline = Some(
                    args.iter()
                        .take(2)
                        .map(|arg| match arg {
                            Arg::Owned(bytes) if bytes.len() <= self.limits.max_bulk => {
                                bytes.clone()
                            }
                            _ => Vec::new(),
                        })
                        .collect(),
                );
                return Err(ProtocolError::InvalidBulkLength { too_large: true });
            }
        }
        Ok(read)
    }
}

fn read_inline(buf: &[u8]) -> Result<Read, ProtocolError> {
    let window = buf.get(..buf.len().min(MAX_INLINE + 1)).unwrap_or(buf);
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_INLINE {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(Read::Partial);
    };
    let mut line = buf.get(..newline).unwrap_or_default();
    if let [head @ .., b'\r'] = line {
        line = head;
    }
    let args = split_args(line).map_err(|_| ProtocolError::UnbalancedQuotes)?;
    if args.is_empty() {
        return Ok(Read::Skip(newline + 1));
    }
    Ok(Read::Command(
        args.into_iter().map(Arg::Owned).collect(),
        newline + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> CommandReader {
        CommandReader::new(ReaderLimits { max_bulk: 1024 })
    }

    fn args(command: &Command<'_>) -> Vec<Vec<u8>> {
        command.args.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn reads_multibulk_and_inline_commands_in_order() {
        let buf = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n\r\n*0\r\nECHO \"a b\"\r\n";
        let mut r = reader();
        let mut at = 0;
        let mut seen = Vec::new();
        while let Status::Complete(command, used) = r.read(&buf[at..], true).unwrap() {
            seen.push(args(&command));
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(
            seen,
            vec![
                vec![b"ECHO".to_vec(), b"hi".to_vec()],
                vec![b"PING".to_vec()],
                vec![b"ECHO".to_vec(), b"a b".to_vec()],
            ]
        );
    }

    #[test]
    fn every_prefix_is_partial_and_resumes() {
        let buf = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..buf.len() {
            let mut r = reader();
            assert!(r.read(&buf[..cut], true).unwrap().is_partial(), "cut {cut}");
            let (command, used) = r.read(buf, true).unwrap().complete().unwrap();
            assert_eq!(used, buf.len());
            assert_eq!(command.arg(2), Some(&b"hello"[..]));
        }
    }

    #[test]
    fn limits_are_checked_on_headers() {
        let cases: [(&[u8], bool, ProtocolError); 9] = [
            (
                b"*2147483648\r\n",
                true,
                ProtocolError::InvalidMultibulkLength,
            ),
            (b"*x\r\n", true, ProtocolError::InvalidMultibulkLength),
            (
                b"*1\r\n$-5\r\n",
                true,
                ProtocolError::InvalidBulkLength { too_large: false },
            ),
            (
                b"*1\r\n$1025\r\n",
                true,
                ProtocolError::InvalidBulkLength { too_large: true },
            ),
            (b"*1\r\nx\r\n", true, ProtocolError::ExpectedDollar(b'x')),
            (
                b"*11\r\n",
                false,
                ProtocolError::UnauthenticatedMultibulkLength,
            ),
            (
                b"*1\r\n$16385\r\n",
                false,
                ProtocolError::UnauthenticatedBulkLength,
            ),
            (b"a \"b\r\n", true, ProtocolError::UnbalancedQuotes),
            (b"*01\r\n", true, ProtocolError::InvalidMultibulkLength),
        ];
        for (buf, authenticated, expected) in cases {
            assert_eq!(reader().read(buf, authenticated), Err(expected), "{buf:?}");
        }
        let long = vec![b'x'; MAX_INLINE + 1];
        assert_eq!(reader().read(&long, true), Err(ProtocolError::TooBigInline));
        assert!(reader()
            .read(&long[..MAX_INLINE], true)
            .unwrap()
            .is_partial());
        let mut count = b"*".to_vec();
        count.resize(MAX_INLINE + 2, b'1');
        assert_eq!(
            reader().read(&count, true),
            Err(ProtocolError::TooBigMultibulkCount)
        );
    }

    #[test]
    fn a_partial_multibulk_after_blank_lines_resumes() {
        let buf = b"\r\n*0\r\n*1\r\n$4\r\nPING\r\n";
        let mut r = reader();
        assert!(r.read(&buf[..12], true).unwrap().is_partial());
        assert!(r.read(&buf[..17], true).unwrap().is_partial());
        let (command, used) = r.read(buf, true).unwrap().complete().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(command.arg(0), Some(&b"PING"[..]));
    }

    #[test]
    fn a_too_large_bulk_names_its_command() {
        let buf = b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2000\r\n";
        let mut r = reader();
        assert_eq!(
            r.read(buf, true),
            Err(ProtocolError::InvalidBulkLength { too_large: true })
        );
        assert_eq!(r.pending_arg(buf, 0), Some(&b"PUBLISH"[..]));
        assert_eq!(r.pending_arg(buf, 1), Some(&b"c"[..]));
    }

    #[test]
    fn an_inline_argument_above_max_bulk_is_refused() {
        let mut buf = b"PUBLISH c ".to_vec();
        buf.extend_from_slice(&[b'x'; 1025]);
        buf.extend_from_slice(b"\r\n");
        let mut r = reader();
        assert_eq!(
            r.read(&buf, true),
            Err(ProtocolError::InvalidBulkLength { too_large: true })
        );
        assert_eq!(r.pending_arg(&buf, 0), Some(&b"PUBLISH"[..]));
        assert_eq!(r.pending_arg(&buf, 1), Some(&b"c"[..]));
        let ok = [b"PUBLISH c ".as_slice(), &[b'x'; 1024], b"\r\n"].concat();
        assert!(reader().read(&ok, true).unwrap().complete().is_some());
    }

    #[test]
    fn skipped_empty_requests_are_handed_back_for_consuming() {
        let mut r = reader();
        let blank = b"\r\n\n*0\r\n*-1\r\n";
        assert!(r.read(blank, true).unwrap().is_partial());
        assert_eq!(r.take_skipped(), blank.len());
        assert_eq!(r.take_skipped(), 0);
        // Skipped bytes before a partial multibulk: consumed, and the multibulk resumes.
        let buf = b"\r\n*0\r\n*1\r\n$4\r\nPING\r\n";
        let mut r = reader();
        assert!(r.read(&buf[..14], true).unwrap().is_partial());
        let skipped = r.take_skipped();
        assert_eq!(skipped, 6);
        let (command, used) = r.read(&buf[skipped..], true).unwrap().complete().unwrap();
        assert_eq!(used, buf.len() - skipped);
        assert_eq!(command.arg(0), Some(&b"PING"[..]));
    }

    #[test]
    fn parse_i64_is_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"00"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b"99999999999999999999"), None);
        assert_eq!(parse_i64(b""), None);
    }
}
