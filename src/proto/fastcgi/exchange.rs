//! One FastCGI request on one connection, from the request bytes to END_REQUEST, as a
//! sans-IO session (the contract of `docs/ARCHITECTURE.md`).
//!
//! php-fpm does not multiplex: a connection carries one request at a time, so an
//! [`Exchange`] is exactly one request. The reactor connects (that phase is its own; a
//! failed connect goes straight to `dispatch::outcome`), hands the request bytes (built by
//! `dispatch::request`) to [`Exchange::new`], writes what [`Exchange::poll_transmit`]
//! gives it, feeds every byte read to [`Exchange::handle_input`], and reports EOF/reset and
//! the request deadline. The exchange ends with one [`ExchangeEvent::Finished`] carrying a
//! [`Finished`] summary, which `dispatch::outcome::classify` turns into an outcome
//! (`docs/SEMANTICS.md` "Outcome of a request").
//!
//! What it keeps, so a worker cannot make ferry buffer without bound (`docs/SEMANTICS.md`
//! "Worker output": STDERR logged up to 4 KiB per job, the rest counted):
//! - the CGI head (`Status:`, `X-Ferry-Action:`, `X-Ferry-Retry-After:`), in a
//!   [`CgiHead`] bounded by its cap (16 KiB by default; more is a malformed response);
//! - the first [`STDERR_EXCERPT_CAP`] bytes of STDERR (reserved on the first STDERR byte);
//!   beyond that STDERR bytes and lines are counted and dropped;
//! - nothing of the STDOUT body: it is counted and discarded as it is decoded.
//!
//! Records are decoded straight from the caller's read buffer (one whole record per
//! step; [`record::MAX_RECORD_LEN`](super::record::MAX_RECORD_LEN) bytes always suffice),
//! so the exchange itself holds at most the head cap plus the STDERR excerpt.
//!
//! # States
//! - `AwaitingHead`: the request is out (or going out); STDOUT
//!   bytes are CGI head until its blank line; STDERR and END_REQUEST may come.
//! - `AwaitingEnd`: the head is parsed; STDOUT is body (counted),
//!   STDERR is captured, END_REQUEST ends it.
//! - `Finished`: over. Only a duplicate END_REQUEST may follow (seen
//!   when php-fpm recycles a child at `pm.max_requests`); anything else is an error that
//!   makes the kept connection unusable.
//!
//! END_REQUEST, EOF or reset, the request deadline and a codec error each move to
//! `Finished` and queue the summary; `handle_input` also returns a codec error so the
//! reactor knows to close.

use std::time::{Duration, Instant};

use super::cgi::{CgiHead, FerryAction, DEFAULT_HEAD_CAP};
use super::client::{ResponseDecoder, ResponseEvent};
use super::error::FcgiError;
use super::record::ProtocolStatus;
use crate::proto::Status;

/// Bytes of a job's STDERR kept for the log (`docs/SEMANTICS.md` "Worker output").
pub const STDERR_EXCERPT_CAP: usize = 4096;

/// How one exchange is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeOptions {
    /// The request id the request bytes use (ferry uses 1: one request per connection).
    pub request_id: u16,
    /// Whether the request asked php-fpm to keep the connection (FCGI_KEEP_CONN); the
    /// connection is reusable only then, and only after a clean END_REQUEST.
    pub keep_conn: bool,
    /// The pool's `request_timeout_ms`: from [`Exchange::new`] to END_REQUEST.
    pub request_timeout: Duration,
    /// Cap on the CGI head (the buffer grows to it only for a head that long).
    pub head_cap: usize,
    /// Cap on the STDERR excerpt.
    pub stderr_cap: usize,
}

impl ExchangeOptions {
    /// Request id 1, no KEEP_CONN, default caps, the given request timeout.
    pub fn new(request_timeout: Duration) -> Self {
        Self {
            request_id: 1,
            keep_conn: false,
            request_timeout,
            head_cap: DEFAULT_HEAD_CAP,
            stderr_cap: STDERR_EXCERPT_CAP,
        }
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// END_REQUEST arrived.
    EndRequest {
        /// The application's exit status (php-fpm: always 0).
        app_status: u32,
        /// Whether php-fpm completed the request or refused it.
        protocol_status: ProtocolStatus,
    },
    /// EOF or reset before any response byte arrived.
    ClosedBeforeResponse,
    /// EOF or reset after some response bytes, before END_REQUEST (php-fpm's
    /// `request_terminate_timeout` kills the child this way).
    ClosedMidResponse,
    /// The request deadline passed before END_REQUEST; the caller closes the connection
    /// (php-fpm ignores ABORT_REQUEST).
    TimedOut,
    /// The response broke FastCGI or the CGI head could not be read.
    Malformed(FcgiError),
}

/// What the worker wrote on STDERR: the first bytes, and how much there was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StderrSummary {
    /// The first [`ExchangeOptions::stderr_cap`] bytes.
    pub excerpt: Vec<u8>,
    /// Every STDERR byte, kept or not.
    pub total_bytes: u64,
    /// Lines: newlines, plus one for unterminated text at the end (php-fpm joins a
    /// request's messages with `"; "` in one record, without a final newline).
    pub lines: u64,
}

impl StderrSummary {
    /// True when bytes were dropped beyond the excerpt.
    pub fn truncated(&self) -> bool {
        self.total_bytes > self.excerpt.len() as u64
    }

    /// True when the excerpt contains `needle`.
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.excerpt.windows(needle.len()).any(|w| w == needle)
    }
}

/// The summary of one finished exchange, everything `dispatch::outcome` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How it ended.
    pub ending: Ending,
    /// True when the CGI head's blank line arrived and the head parsed.
    pub head_complete: bool,
    /// The `Status:` code, when the head had one.
    pub status: Option<u16>,
    /// `X-Ferry-Action`.
    pub action: Option<FerryAction>,
    /// `X-Ferry-Retry-After`, in seconds.
    pub retry_after_s: Option<u64>,
    /// STDERR excerpt and counts.
    pub stderr: StderrSummary,
    /// STDOUT bytes after the CGI head (counted, discarded).
    pub stdout_body_bytes: u64,
    /// True when at least one response byte arrived (even an incomplete record).
    pub any_response_byte: bool,
    /// True when the connection may carry another request: KEEP_CONN was asked and the
    /// request ended with END_REQUEST `REQUEST_COMPLETE`.
    pub reusable: bool,
    /// From [`Exchange::new`] to the end (the reactor times `ferry_job_duration_seconds`
    /// from the moment it created the exchange, i.e. the request written).
    pub duration: Duration,
}

/// What an exchange reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// The exchange is over; classify it.
    Finished(Finished),
}

/// Protocol state, named for what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// STDOUT is CGI head until the blank line; STDERR or END_REQUEST may come.
    AwaitingHead,
    /// STDOUT is body; END_REQUEST ends it.
    AwaitingEnd,
    /// Over; only a duplicate END_REQUEST may follow.
    Finished {
        /// Whether the connection can still carry another request.
        reusable: bool,
    },
}

/// STDERR kept up to a cap, the rest counted.
#[derive(Debug, Clone)]
struct StderrCapture {
    excerpt: Vec<u8>,
    cap: usize,
    total: u64,
    newlines: u64,
    ends_with_newline: bool,
}

impl StderrCapture {
    fn new(cap: usize) -> Self {
        Self {
            excerpt: Vec::new(),
            cap,
            total: 0,
            newlines: 0,
            ends_with_newline: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else {
            return;
        };
        let room = self.cap.saturating_sub(self.excerpt.len());
        if room > 0 {
            if self.excerpt.capacity() == 0 {
                // Reserved once, exactly: most jobs write no STDERR at all.
                self.excerpt.reserve_exact(self.cap);
            }
            self.excerpt
                .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        }
        self.total += chunk.len() as u64;
        self.newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        self.ends_with_newline = last == b'\n';
    }

    fn take(&mut self) -> StderrSummary {
        let unterminated = u64::from(self.total > 0 && !self.ends_with_newline);
        StderrSummary {
            excerpt: std::mem::take(&mut self.excerpt),
            total_bytes: self.total,
            lines: self.newlines + unterminated,
        }
    }
}

/// One FastCGI request on one connection: see the module docs.
#[derive(Debug, Clone)]
pub struct Exchange {
    options: ExchangeOptions,
    state: State,
    decoder: ResponseDecoder,
    head: CgiHead,
    /// Request bytes not yet handed to `poll_transmit`.
    request: Vec<u8>,
    started_at: Instant,
    deadline: Instant,
    stderr: StderrCapture,
    stdout_body_bytes: u64,
    any_response_byte: bool,
    event: Option<Finished>,
}

impl Exchange {
    /// Starts an exchange for `request` (a whole FastCGI request, as
    /// `dispatch::request` builds it, using `options.request_id`) at `now`: the request
    /// deadline is `now + options.request_timeout`.
    pub fn new(request: Vec<u8>, options: ExchangeOptions, now: Instant) -> Self {
        Self {
            options,
            state: State::AwaitingHead,
            decoder: ResponseDecoder::new(options.request_id),
            head: CgiHead::new(options.head_cap),
            request,
            started_at: now,
            deadline: now + options.request_timeout,
            stderr: StderrCapture::new(options.stderr_cap),
            stdout_body_bytes: 0,
            any_response_byte: false,
            event: None,
        }
    }

    /// Appends the request bytes to `out` (once; later calls append nothing). When `out`
    /// is empty its buffer and the request's are swapped, so the bytes are not copied:
    /// the caller's old (empty) buffer is what [`Exchange::take_request_buffer`] returns.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if self.request.is_empty() {
            return;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut self.request);
        } else {
            out.extend_from_slice(&self.request);
            self.request.clear();
        }
    }

    /// The (empty) request buffer after [`Exchange::poll_transmit`], for reuse by the next
    /// request built.
    pub fn take_request_buffer(&mut self) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.request);
        buffer.clear();
        buffer
    }

    /// Feeds response bytes; returns how many were used (whole records). Call again with
    /// the unused rest once more bytes arrived. A malformed response ends the exchange
    /// (the [`Finished`] event says [`Ending::Malformed`]) and is returned as the error:
    /// close the connection. After the end, only a duplicate END_REQUEST is accepted.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> Result<usize, FcgiError> {
        if !buf.is_empty() {
            self.any_response_byte = true;
        }
        let mut used = 0;
        while let Some(rest) = buf.get(used..) {
            let step = match self.decoder.decode(rest) {
                Ok(Status::Complete(event, len)) => self.on_event(event, now).map(|()| len),
                Ok(Status::Partial) => break,
                Err(error) => Err(error),
            };
            match step {
                Ok(len) => used += len,
                Err(error) => {
                    self.fail(error, now);
                    return Err(error);
                }
            }
        }
        Ok(used)
    }

    fn on_event(&mut self, event: ResponseEvent<'_>, now: Instant) -> Result<(), FcgiError> {
        match (self.state, event) {
            // After END_REQUEST the decoder yields only duplicates of it (anything else is
            // its `DataAfterEnd` error): tolerated, the connection stays as it was.
            (State::Finished { .. }, _) => Ok(()),
            (_, ResponseEvent::Stderr(chunk)) => {
                self.stderr.push(chunk);
                Ok(())
            }
            (State::AwaitingHead, ResponseEvent::Stdout(chunk)) => {
                if let Some(head_len) = self.head.push(chunk)? {
                    self.stdout_body_bytes += chunk.len().saturating_sub(head_len) as u64;
                    self.state = State::AwaitingEnd;
                }
                Ok(())
            }
            (State::AwaitingEnd, ResponseEvent::Stdout(chunk)) => {
                self.stdout_body_bytes += chunk.len() as u64;
                Ok(())
            }
            (
                _,
                ResponseEvent::End {
                    app_status,
                    protocol_status,
                },
            ) => {
                self.finish(
                    Ending::EndRequest {
                        app_status,
                        protocol_status,
                    },
                    now,
                );
                Ok(())
            }
            // The decoder reports a duplicate only after an END it already reported, when
            // this exchange is Finished (handled above).
            (_, ResponseEvent::DuplicateEnd) => Ok(()),
        }
    }

    /// A codec error: before the end it ends the exchange as malformed; after the end the
    /// connection just stops being reusable.
    fn fail(&mut self, error: FcgiError, now: Instant) {
        match self.state {
            State::Finished { .. } => self.state = State::Finished { reusable: false },
            State::AwaitingHead | State::AwaitingEnd => {
                self.finish(Ending::Malformed(error), now);
            }
        }
    }

    fn finish(&mut self, ending: Ending, now: Instant) {
        let reusable = self.options.keep_conn
            && matches!(
                ending,
                Ending::EndRequest {
                    protocol_status: ProtocolStatus::RequestComplete,
                    ..
                }
            );
        self.state = State::Finished { reusable };
        self.event = Some(Finished {
            ending,
            head_complete: self.head.is_complete(),
            status: self.head.status(),
            action: self.head.ferry_action(),
            retry_after_s: self.head.retry_after_s(),
            stderr: self.stderr.take(),
            stdout_body_bytes: self.stdout_body_bytes,
            any_response_byte: self.any_response_byte,
            reusable,
            duration: now.saturating_duration_since(self.started_at),
        });
    }

    /// The request deadline: ends the exchange as [`Ending::TimedOut`] once `now` reaches
    /// it. Earlier calls (spurious wake-ups) change nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_finished() || now < self.deadline {
            return;
        }
        self.finish(Ending::TimedOut, now);
    }

    /// The peer closed the connection or reset it. Before END_REQUEST this ends the
    /// exchange ([`Ending::ClosedBeforeResponse`] or [`Ending::ClosedMidResponse`]); after
    /// it, the connection just stops being reusable (php-fpm without KEEP_CONN closes
    /// after END_REQUEST).
    pub fn handle_eof(&mut self, now: Instant) {
        match self.state {
            State::Finished { .. } => self.state = State::Finished { reusable: false },
            State::AwaitingHead | State::AwaitingEnd => {
                let ending = if self.any_response_byte {
                    Ending::ClosedMidResponse
                } else {
                    Ending::ClosedBeforeResponse
                };
                self.finish(ending, now);
            }
        }
    }

    /// The [`Finished`] summary, once.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ExchangeEvent> {
        self.event.take().map(ExchangeEvent::Finished)
    }

    /// The request deadline while the exchange runs; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Finished { .. } => None,
            State::AwaitingHead | State::AwaitingEnd => Some(self.deadline),
        }
    }

    /// True once END_REQUEST, EOF, the deadline or an error ended the exchange.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished { .. })
    }

    /// True when the connection may carry another request now: finished cleanly with
    /// KEEP_CONN, and nothing but duplicate END_REQUESTs (no EOF, no garbage) since.
    pub fn is_reusable(&self) -> bool {
        matches!(self.state, State::Finished { reusable: true })
    }

    /// Bytes of memory this exchange holds for the response (CGI head buffer and STDERR
    /// excerpt capacities): bounded by the two caps whatever the worker sends.
    pub fn held_bytes(&self) -> usize {
        self.head.capacity() + self.stderr.excerpt.capacity()
    }

    /// The options it was created with.
    pub fn options(&self) -> &ExchangeOptions {
        &self.options
    }
}
