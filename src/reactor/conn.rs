//! Nonblocking sockets and moving bytes between them and a connection's [`Buffers`]
//! (the buffers belong to the engine; see `docs/ARCHITECTURE.md`).
//!
//! - Reads drain the socket until `WouldBlock` (mio is edge-triggered), into the read
//!   buffer up to its fill limit. When the limit is reached, [`fill`] stops and says so:
//!   the owner consumes what it can and asks for another read — a connection stopped
//!   before `WouldBlock` gets no new event, so the reactor keeps it on a re-read list.
//! - Writes are eager: [`flush`] sends queued bytes right away; `WRITABLE` is wanted only
//!   while bytes remain ([`interest`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::engine::io::Buffers;

/// A TCP or unix stream socket.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain stream socket.
    Unix(UnixStream),
}

impl Stream {
    /// The error a nonblocking connect ended with, if any (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    /// Whether a nonblocking connect has completed: `Ok(true)` connected, `Ok(false)` still
    /// in progress (a spurious wake-up), `Err` failed.
    pub fn connect_finished(&self) -> io::Result<bool> {
        if let Some(error) = self.take_error()? {
            return Err(error);
        }
        let peer = match self {
            Stream::Tcp(s) => s.peer_addr().map(drop),
            Stream::Unix(s) => s.peer_addr().map(drop),
        };
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Shuts down both directions (the peer sees EOF even if the fd lingers).
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

/// What [`Conn::fill`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Read until `WouldBlock`: wait for the next readable event.
    Drained,
    /// The read buffer reached its limit before `WouldBlock`: consume, then fill again.
    Full,
    /// The peer closed its side (bytes read before the EOF are in the buffer).
    Eof,
}

/// Reads `stream` into `buffers` until `WouldBlock`, EOF, or the buffers' fill limit
/// ([`Buffers::fill_limit`]: the cap, or no further than the owner works ahead).
///
/// With `stop_short`, a read that returns less than it asked for ends the fill as
/// `Drained`: the socket's receive queue was emptied, and with edge-triggered polling the
/// next bytes bring a new event — so the read that could only answer `EAGAIN` is saved.
/// The caller passes `false` when the peer may have closed (the EOF would bring no new
/// event) or when re-reading without an event.
pub fn fill(stream: &mut Stream, buffers: &mut Buffers, stop_short: bool) -> io::Result<Fill> {
    let limit = buffers.fill_limit();
    loop {
        let room = limit.saturating_sub(buffers.unconsumed());
        if room == 0 {
            return Ok(Fill::Full);
        }
        let into = buffers.read_room(room);
        let asked = into.len();
        let result = stream.read(into);
        match result {
            Ok(0) => return Ok(Fill::Eof),
            Ok(n) if stop_short && n < asked => {
                buffers.commit_read(n);
                return Ok(Fill::Drained);
            }
            Ok(n) => buffers.commit_read(n),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            },
        }
    }
}

/// Writes what `buffers` hold until done or `WouldBlock`.
pub fn flush(stream: &mut Stream, buffers: &mut Buffers) -> io::Result<()> {
    while buffers.wants_write() {
        match stream.write(buffers.output()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buffers.commit_write(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The interest set a connection with these buffers needs: writable only while bytes
/// remain (a worker reading ferry's request must not wake ferry).
pub fn interest(buffers: &Buffers) -> Interest {
    if buffers.wants_write() {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

/// A socket with its buffers, for the command-line tools that run a small loop of their
/// own (`ferry responder`, `ferry bench --direct`).
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: Stream,
    buffers: Buffers,
    /// The interest the poll has for this socket, so it is re-registered only when it
    /// changes.
    pub registered: Option<Interest>,
}

impl Conn {
    /// Wraps `stream`; the read buffer holds at most `read_cap` unconsumed bytes, and
    /// the write buffer is "backlogged" above `write_high_water` queued bytes.
    pub fn new(stream: Stream, read_cap: usize, write_high_water: usize) -> Conn {
        Conn {
            stream,
            buffers: Buffers::new(read_cap, write_high_water),
            registered: None,
        }
    }

    /// Reads until `WouldBlock`, EOF or the cap; see [`Fill`].
    pub fn fill(&mut self) -> io::Result<Fill> {
        fill(&mut self.stream, &mut self.buffers, false)
    }

    /// The bytes read and not yet consumed.
    pub fn input(&self) -> &[u8] {
        self.buffers.input()
    }

    /// Marks `n` bytes of [`Conn::input`] as used.
    pub fn consume(&mut self, n: usize) {
        self.buffers.consume(n);
    }

    /// Unconsumed input bytes.
    pub fn unconsumed(&self) -> usize {
        self.buffers.unconsumed()
    }

    /// The write buffer, to append bytes to; call [`Conn::flush`] after.
    pub fn write_buf(&mut self) -> &mut Vec<u8> {
        self.buffers.write_buf()
    }

    /// Writes queued bytes until done or `WouldBlock`.
    pub fn flush(&mut self) -> io::Result<()> {
        flush(&mut self.stream, &mut self.buffers)
    }

    /// True while bytes remain to be written (register `WRITABLE`).
    pub fn wants_write(&self) -> bool {
        self.buffers.wants_write()
    }

    /// The interest set this connection needs now.
    pub fn interest(&self) -> Interest {
        interest(&self.buffers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream as StdUnix;

    fn pair(read_cap: usize) -> (Stream, Buffers, StdUnix) {
        let (ours, theirs) = StdUnix::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = Stream::Unix(UnixStream::from_std(ours));
        (stream, Buffers::new(read_cap, 1024), theirs)
    }

    #[test]
    fn fill_stops_at_the_cap_and_resumes_after_consume() {
        let (mut stream, mut b, mut peer) = pair(100);
        peer.write_all(&[7; 250]).unwrap();
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Full);
        assert_eq!(b.input().len(), 100);
        b.consume(100);
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Full);
        b.consume(60);
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Drained);
        assert_eq!(b.unconsumed(), 90);
        drop(peer);
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Eof);
        assert_eq!(b.unconsumed(), 90, "bytes before the EOF are kept");
    }

    #[test]
    fn read_ahead_reads_no_further_than_wanted() {
        let (mut stream, mut b, mut peer) = pair(1000);
        peer.write_all(&[7; 250]).unwrap();
        b.set_read_ahead(Some(100));
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Full);
        assert_eq!(b.unconsumed(), 100);
        b.set_read_ahead(Some(0));
        assert_eq!(
            fill(&mut stream, &mut b, false).unwrap(),
            Fill::Full,
            "paused"
        );
        assert_eq!(b.unconsumed(), 100);
        b.consume(30);
        b.set_read_ahead(Some(500));
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Drained);
        assert_eq!(b.unconsumed(), 220);
    }

    #[test]
    fn a_burst_is_read_whole() {
        let (mut stream, mut b, mut peer) = pair(1 << 20);
        peer.write_all(&[7; 300]).unwrap();
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Drained);
        assert!(b.held_bytes() <= 4096, "a small answer, a small buffer");
        b.consume(300);
        peer.write_all(&[7; 100_000]).unwrap();
        assert_eq!(fill(&mut stream, &mut b, false).unwrap(), Fill::Drained);
        assert_eq!(b.unconsumed(), 100_000, "a burst is read whole");
    }

    #[test]
    fn writes_are_eager_and_backlog_is_reported() {
        let (mut stream, mut b, mut peer) = pair(100);
        b.write_buf().extend_from_slice(b"hello");
        flush(&mut stream, &mut b).unwrap();
        assert!(!b.wants_write());
        let mut got = [0; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Fill the socket buffer until writes would block.
        b.write_buf().resize(8 << 20, 1);
        flush(&mut stream, &mut b).unwrap();
        assert!(b.wants_write());
        assert!(b.write_backlogged());
        assert_eq!(interest(&b), Interest::READABLE | Interest::WRITABLE);
    }
}
