//! The CGI response head at the start of STDOUT (RFC 3875 §6): header lines up to a blank
//! line, then the body. ferry reads `Status:`, `Content-Type:`, and its own
//! `X-Ferry-Action:` / `X-Ferry-Retry-After:`; the body is the caller's to count and
//! discard — this module never buffers it.
//!
//! [`CgiHead`] is resumable: STDOUT records may split the head anywhere (one byte per
//! record works). It copies head bytes into a buffer that starts at
//! [`INITIAL_HEAD_CAPACITY`] (PHP's heads are a few hundred bytes) and grows on demand up
//! to its cap (16 KiB by default) — with 10,000 requests in flight, a 16 KiB reservation
//! each was 160 MiB of mostly untouched memory — and scans each byte once for the end of the block (`\n\n` or `\n\r\n`, so
//! both `\r\n\r\n`, which PHP writes, and bare `\n\n` end it). Once the block is whole,
//! httparse parses the lines (a leading `HTTP/1.1 NNN` status line, which PHP writes with
//! `cgi.rfc2616_headers = 1`, counts as `Status:`). More than the cap without a blank line is
//! [`FcgiError::HeadersTooLarge`]: memory stays bounded whatever the worker prints.
//!
//! Decisions: an `X-Ferry-Action` value other than `ack`, `retry` or `dead-letter`
//! (case-insensitive) is an error, not ignored — a worker that asks for something ferry
//! does not understand gets a malformed-response outcome (retryable) rather than a silent
//! ack. Header names match case-insensitively; a header ferry reads that appears twice is
//! [`FcgiError::DuplicateHeader`].

use super::error::FcgiError;

/// What a head buffer reserves at first; it grows (up to the cap) only for longer heads.
pub const INITIAL_HEAD_CAPACITY: usize = 512;

/// Default cap on the CGI head.
pub const DEFAULT_HEAD_CAP: usize = 16 * 1024;
/// Header lines parsed per httparse call (it needs a fixed array). PHP sends a handful;
/// a head with more is parsed in groups (see `visit_headers`), so any count fits the cap.
pub const MAX_HEADERS: usize = 64;

/// What a worker asks ferry to do with the message (`X-Ferry-Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FerryAction {
    /// `ack`: done, acknowledge it.
    Ack,
    /// `retry`: try again later (after `X-Ferry-Retry-After` seconds if given).
    Retry,
    /// `dead-letter`: give up on it.
    DeadLetter,
}

/// Where the end-of-head scan stands, carried between calls so no byte is scanned twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line: a `\n` here (or after `\r`) ends the head.
    LineStart,
    /// Saw `\r` at the start of a line.
    LineStartCr,
    /// Inside a line with content.
    InLine,
}

/// Accumulates and parses the CGI head of one response.
#[derive(Debug, Clone)]
pub struct CgiHead {
    buf: Vec<u8>,
    cap: usize,
    line: LineState,
    complete: bool,
    status: Option<u16>,
    ferry_action: Option<FerryAction>,
    retry_after_s: Option<u64>,
    content_type: Option<(usize, usize)>,
}

impl Default for CgiHead {
    fn default() -> Self {
        Self::new(DEFAULT_HEAD_CAP)
    }
}

impl CgiHead {
    /// A head accumulator holding at most `cap` bytes (reserving
    /// [`INITIAL_HEAD_CAPACITY`] now, more only when a head needs it).
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap.min(INITIAL_HEAD_CAPACITY)),
            cap,
            line: LineState::LineStart,
            complete: false,
            status: None,
            ferry_action: None,
            retry_after_s: None,
            content_type: None,
        }
    }

    /// Forgets the last response, keeping the buffer (no allocation).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.line = LineState::LineStart;
        self.complete = false;
        self.status = None;
        self.ferry_action = None;
        self.retry_after_s = None;
        self.content_type = None;
    }

    /// Feeds the next STDOUT bytes. `Ok(None)`: all of `chunk` was head, feed more.
    /// `Ok(Some(head_bytes))`: the head ended after `chunk[..head_bytes]`; the rest of the
    /// chunk (`chunk.len() - head_bytes` bytes) is body. Once complete, further calls
    /// return `Ok(Some(0))`: everything is body.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<usize>, FcgiError> {
        if self.complete {
            return Ok(Some(0));
        }
        let end = self.scan(chunk);
        let head_part = match end {
            Some(end) => chunk.get(..end).unwrap_or(chunk),
            None => chunk,
        };
        if self.buf.len() + head_part.len() > self.cap {
            return Err(FcgiError::HeadersTooLarge { cap: self.cap });
        }
        let needed = self.buf.len() + head_part.len();
        if needed > self.buf.capacity() {
            // Double, but never reserve past the cap (the cap is checked above).
            let target = needed.max(self.buf.capacity() * 2).min(self.cap);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(head_part);
        match end {
            Some(end) => {
                self.parse()?;
                self.complete = true;
                Ok(Some(end))
            }
            None => Ok(None),
        }
    }

    /// Finds the end of the head in `chunk` (the index just past the blank line's `\n`),
    /// continuing from the state the previous chunk left.
    fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut line = self.line;
        let mut pos = 0;
        while let Some(&byte) = chunk.get(pos) {
            pos += 1;
            line = match (line, byte) {
                (LineState::LineStart | LineState::LineStartCr, b'\n') => {
                    self.line = LineState::LineStart;
                    return Some(pos);
                }
                (LineState::LineStart, b'\r') => LineState::LineStartCr,
                (LineState::InLine, b'\n') => LineState::LineStart,
                (LineState::InLine, _) => {
                    // Skip to the next newline at once: the common case is a long line.
                    match chunk
                        .get(pos..)
                        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
                    {
                        Some(offset) => {
                            pos += offset + 1;
                            LineState::LineStart
                        }
                        None => {
                            pos = chunk.len();
                            LineState::InLine
                        }
                    }
                }
                _ => LineState::InLine,
            };
        }
        self.line = line;
        None
    }

    fn parse(&mut self) -> Result<(), FcgiError> {
        let mut status = None;
        let mut ferry_action = None;
        let mut retry_after_s = None;
        let mut content_type = None;
        visit_headers(&self.buf, |name, value, offset| {
            if name.eq_ignore_ascii_case("status") {
                set_once(&mut status, parse_status(value)?, "Status")
            } else if name.eq_ignore_ascii_case("x-ferry-action") {
                set_once(&mut ferry_action, parse_action(value)?, "X-Ferry-Action")
            } else if name.eq_ignore_ascii_case("x-ferry-retry-after") {
                let seconds = parse_decimal(trim(value)).ok_or(FcgiError::InvalidRetryAfter)?;
                set_once(&mut retry_after_s, seconds, "X-Ferry-Retry-After")
            } else if name.eq_ignore_ascii_case("content-type") {
                // Kept as offsets into our own buffer: the value borrows it.
                set_once(
                    &mut content_type,
                    (offset, offset + value.len()),
                    "Content-Type",
                )
            } else {
                Ok(())
            }
        })?;
        self.status = status;
        self.ferry_action = ferry_action;
        self.retry_after_s = retry_after_s;
        self.content_type = content_type;
        Ok(())
    }

    /// True once the blank line ending the head has been seen and parsed.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The `Status:` code; `None` when absent (which CGI defines as 200).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The status code, 200 when the head had no `Status:`.
    pub fn status_or_200(&self) -> u16 {
        self.status.unwrap_or(200)
    }

    /// What the worker asked for in `X-Ferry-Action`.
    pub fn ferry_action(&self) -> Option<FerryAction> {
        self.ferry_action
    }

    /// `X-Ferry-Retry-After`, in seconds.
    pub fn retry_after_s(&self) -> Option<u64> {
        self.retry_after_s
    }

    /// The `Content-Type` value.
    pub fn content_type(&self) -> Option<&[u8]> {
        let (start, end) = self.content_type?;
        self.buf.get(start..end)
    }

    /// Bytes the head buffer holds reserved (grows with the head, never past the cap).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Head bytes held so far (never more than the cap).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The cap given at construction.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Every header line of a complete head, for logging or tests (parses again; not for
    /// the hot path). Yields nothing before the head is complete.
    pub fn for_each_header(&self, mut f: impl FnMut(&str, &[u8])) {
        if !self.complete {
            return;
        }
        let _ = visit_headers(&self.buf, |name, value, _| {
            f(name, value);
            Ok(())
        });
    }
}

/// Calls `visit(name, value, offset of value in head)` for every header of a complete
/// head (which ends with its blank line).
///
/// Two things PHP can send that a plain `httparse::parse_headers` would refuse are
/// accepted: a leading `HTTP/1.1 503 Reason` status line (`cgi.rfc2616_headers = 1`),
/// reported as a `Status` header, and more header lines than [`MAX_HEADERS`] (a script
/// setting many cookies): those are parsed in groups, each copied once with a blank line
/// appended. That path allocates, but only for such heads.
fn visit_headers(
    head: &[u8],
    mut visit: impl FnMut(&str, &[u8], usize) -> Result<(), FcgiError>,
) -> Result<(), FcgiError> {
    let mut start = 0;
    if head.starts_with(b"HTTP/") {
        let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
        let line = head.get(..line_end).unwrap_or_default();
        let after_version = line
            .iter()
            .position(|&b| b == b' ')
            .map_or(line.len(), |p| p + 1);
        let status = line.get(after_version..).unwrap_or_default();
        visit("Status", status, after_version)?;
        start = (line_end + 1).min(head.len());
    }
    let rest = head.get(start..).unwrap_or_default();
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(rest, &mut headers) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let base = rest.as_ptr() as usize;
            for header in parsed {
                let offset = start + (header.value.as_ptr() as usize).saturating_sub(base);
                visit(header.name, header.value, offset)?;
            }
            Ok(())
        }
        Err(httparse::Error::TooManyHeaders) => visit_in_groups(rest, start, visit),
        // The scan found the blank line, so httparse cannot need more: a disagreement
        // (a stray `\r` inside a line) means the block is malformed.
        Ok(httparse::Status::Partial) => Err(FcgiError::MalformedHeaders(httparse::Error::NewLine)),
        Err(e) => Err(FcgiError::MalformedHeaders(e)),
    }
}

/// [`visit_headers`] for heads with more than [`MAX_HEADERS`] lines: groups of lines are
/// parsed one at a time, each as its own block.
fn visit_in_groups(
    rest: &[u8],
    start: usize,
    mut visit: impl FnMut(&str, &[u8], usize) -> Result<(), FcgiError>,
) -> Result<(), FcgiError> {
    // `rest` ends with the blank line that ended the head; the lines before it are headers.
    let lines = rest
        .strip_suffix(b"\r\n")
        .or_else(|| rest.strip_suffix(b"\n"))
        .unwrap_or(rest);
    let mut scratch = Vec::new();
    let mut group_start = 0;
    while group_start < lines.len() {
        let group_end = lines
            .iter()
            .enumerate()
            .skip(group_start)
            .filter(|&(_, &b)| b == b'\n')
            .nth(MAX_HEADERS - 2)
            .map_or(lines.len(), |(pos, _)| pos + 1);
        scratch.clear();
        scratch.extend_from_slice(lines.get(group_start..group_end).unwrap_or_default());
        scratch.extend_from_slice(b"\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = match httparse::parse_headers(&scratch, &mut headers) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            Ok(httparse::Status::Partial) => {
                return Err(FcgiError::MalformedHeaders(httparse::Error::NewLine))
            }
            Err(e) => return Err(FcgiError::MalformedHeaders(e)),
        };
        let base = scratch.as_ptr() as usize;
        for header in parsed {
            let offset =
                start + group_start + (header.value.as_ptr() as usize).saturating_sub(base);
            visit(header.name, header.value, offset)?;
        }
        group_start = group_end;
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), FcgiError> {
    if slot.is_some() {
        return Err(FcgiError::DuplicateHeader(name));
    }
    *slot = Some(value);
    Ok(())
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// `Status: 404 Not Found` → 404. Three digits, 100–999, then the end or a space.
fn parse_status(value: &[u8]) -> Result<u16, FcgiError> {
    match trim(value) {
        [a, b, c, rest @ ..]
            if a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && *a != b'0'
                && matches!(rest.first(), None | Some(b' ' | b'\t')) =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(FcgiError::InvalidStatus),
    }
}

fn parse_action(value: &[u8]) -> Result<FerryAction, FcgiError> {
    let value = trim(value);
    if value.eq_ignore_ascii_case(b"ack") {
        Ok(FerryAction::Ack)
    } else if value.eq_ignore_ascii_case(b"retry") {
        Ok(FerryAction::Retry)
    } else if value.eq_ignore_ascii_case(b"dead-letter") {
        Ok(FerryAction::DeadLetter)
    } else {
        Err(FcgiError::InvalidFerryAction)
    }
}

/// A non-empty run of ASCII digits that fits in u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<CgiHead, FcgiError> {
        let mut head = CgiHead::default();
        head.push(text.as_bytes())?;
        assert!(head.is_complete());
        Ok(head)
    }

    #[test]
    fn many_headers_are_parsed_in_groups() {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!("Set-Cookie: c{i}=v\r\n"));
        }
        text.push_str(
            "Status: 503 Busy\r\nX-Ferry-Action: retry\r\nContent-Type: text/x\r\n\r\nbody",
        );
        let parsed = head(&text).unwrap();
        assert_eq!(parsed.status(), Some(503));
        assert_eq!(parsed.ferry_action(), Some(FerryAction::Retry));
        assert_eq!(parsed.content_type(), Some(&b"text/x"[..]));
        let mut seen = 0;
        parsed.for_each_header(|_, _| seen += 1);
        assert_eq!(seen, 203);
        // The duplicate check still spans groups.
        let dup = text.replacen("Set-Cookie: c100=v", "Status: 200", 1);
        assert_eq!(head(&dup).err(), Some(FcgiError::DuplicateHeader("Status")));
    }

    #[test]
    fn exactly_max_headers_and_bare_newlines() {
        let mut text = String::new();
        for i in 0..MAX_HEADERS + 1 {
            text.push_str(&format!("X-{i}: v\n"));
        }
        text.push_str("Status: 404\n\n");
        assert_eq!(head(&text).unwrap().status(), Some(404));
    }

    #[test]
    fn an_http_status_line_counts_as_the_status() {
        let parsed =
            head("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n\r\n").unwrap();
        assert_eq!(parsed.status(), Some(503));
        assert_eq!(parsed.content_type(), Some(&b"text/html"[..]));
        let clash = head("HTTP/1.1 200 OK\r\nStatus: 500\r\n\r\n");
        assert_eq!(clash.err(), Some(FcgiError::DuplicateHeader("Status")));
    }
}
