//! Blocking connections for `ferry conform`: TCP or unix, every connect, read and write
//! bounded by the case's deadline, so no server can make a case hang.
//!
//! A case is a short script (send these bytes, expect those frames), and a script reads
//! best as straight-line code: the reactor would add nothing but indirection here. Bytes
//! read are kept in one buffer per connection; the case's decoder takes whole frames off
//! its front ([`Wire::next`]), so a frame split over many reads is decoded once.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferry::config::Address;

/// Most bytes kept unread per connection: a server that sends more without completing a
/// frame the case understands is reported, not buffered without bound.
const READ_CAP: usize = 16 * 1024 * 1024;

/// Why no frame came.
#[derive(Debug)]
pub enum WireError {
    /// The deadline passed first.
    TimedOut,
    /// The server closed (or reset) the connection; `pending` bytes of a frame were left.
    Closed {
        /// Unread bytes when it closed.
        pending: usize,
    },
    /// The bytes are not what the protocol allows.
    Malformed(String),
    /// Any other socket error.
    Io(io::Error),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TimedOut => f.write_str("no answer before the deadline"),
            WireError::Closed { pending: 0 } => f.write_str("the server closed the connection"),
            WireError::Closed { pending } => write!(
                f,
                "the server closed the connection in the middle of a frame ({pending} bytes left)"
            ),
            WireError::Malformed(why) => write!(f, "malformed answer: {why}"),
            WireError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl WireError {
    /// True when the server ended the connection (EOF or reset).
    pub fn is_closed(&self) -> bool {
        matches!(self, WireError::Closed { .. })
    }
}

impl From<WireError> for String {
    fn from(e: WireError) -> String {
        e.to_string()
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One connection to the server under test, with its read buffer and deadline.
pub struct Wire {
    stream: Stream,
    buf: Vec<u8>,
    deadline: Instant,
    eof: bool,
}

/// The time left until `deadline`, or `TimedOut`.
fn remaining(deadline: Instant) -> Result<Duration, WireError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(WireError::TimedOut);
    }
    Ok(left)
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

impl Wire {
    /// Connects to `address` before `deadline`.
    pub fn connect(address: &Address, deadline: Instant) -> Result<Wire, WireError> {
        let stream = match address {
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).map_err(WireError::Io)?),
            Address::Tcp { host, port } => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
                let mut found = None;
                let addrs = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(WireError::Io)?;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            found = Some(stream);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                Stream::Tcp(found.ok_or(WireError::Io(last))?)
            }
        };
        Ok(Wire {
            stream,
            buf: Vec::new(),
            deadline,
            eof: false,
        })
    }

    /// The case's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Writes all of `bytes`. A server that already closed gives `Closed`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let left = Some(remaining(self.deadline)?);
        let result = match &mut self.stream {
            Stream::Tcp(s) => s.set_write_timeout(left).and_then(|()| s.write_all(bytes)),
            Stream::Unix(s) => s.set_write_timeout(left).and_then(|()| s.write_all(bytes)),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_reset(&e) => Err(WireError::Closed { pending: 0 }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(WireError::TimedOut)
            }
            Err(e) => Err(WireError::Io(e)),
        }
    }

    /// Reads once, waiting until `until` at most (the deadline caps it). `Ok(false)` when
    /// nothing came in time.
    fn fill(&mut self, until: Instant) -> Result<bool, WireError> {
        if self.eof {
            return Err(WireError::Closed {
                pending: self.buf.len(),
            });
        }
        if self.buf.len() >= READ_CAP {
            return Err(WireError::Malformed(format!(
                "{READ_CAP} bytes without a frame this case understands"
            )));
        }
        let until = until.min(self.deadline);
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let left = Some(left.max(Duration::from_millis(1)));
        let mut chunk = [0u8; 64 * 1024];
        let read = match &mut self.stream {
            Stream::Tcp(s) => s.set_read_timeout(left).and_then(|()| s.read(&mut chunk)),
            Stream::Unix(s) => s.set_read_timeout(left).and_then(|()| s.read(&mut chunk)),
        };
        match read {
            Ok(0) => {
                self.eof = true;
                Err(WireError::Closed {
                    pending: self.buf.len(),
                })
            }
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if is_reset(&e) => {
                self.eof = true;
                Err(WireError::Closed {
                    pending: self.buf.len(),
                })
            }
            Err(e) => Err(WireError::Io(e)),
        }
    }

    /// The next frame, decoded by `decode` from the front of the unread bytes: it answers
    /// `Ok(Some((frame, used)))`, `Ok(None)` for "need more bytes", or why the bytes are
    /// malformed. Waits until the deadline.
    pub fn next<T>(
        &mut self,
        decode: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, String>,
    ) -> Result<T, WireError> {
        let deadline = self.deadline;
        self.next_until(deadline, decode)
    }

    /// [`Wire::next`], giving up (`TimedOut`) at `until` (before the deadline: "nothing
    /// more came in 200 ms").
    pub fn next_until<T>(
        &mut self,
        until: Instant,
        mut decode: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, String>,
    ) -> Result<T, WireError> {
        loop {
            if !self.buf.is_empty() {
                if let Some((frame, used)) = decode(&self.buf).map_err(WireError::Malformed)? {
                    self.buf.drain(..used.min(self.buf.len()));
                    return Ok(frame);
                }
            }
            if !self.fill(until)? {
                return Err(WireError::TimedOut);
            }
        }
    }

    /// Waits until the server closes the connection (true), or until `until` passes with
    /// the connection still open (false); bytes that arrive meanwhile are kept unread.
    pub fn closes_by(&mut self, until: Instant) -> Result<bool, WireError> {
        loop {
            match self.fill(until) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(WireError::Closed { .. }) => return Ok(true),
                Err(WireError::Malformed(_)) => {
                    // Over the cap: drop what is unread and keep waiting for the close.
                    self.buf.clear();
                }
                Err(e) => return Err(e),
            }
        }
    }
}
