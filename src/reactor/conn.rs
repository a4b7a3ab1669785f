//! One nonblocking socket with its buffers (STYLE practice 7: the reactor is thin).
//!
//! - Reads drain the socket until `WouldBlock` (mio is edge-triggered), into a read
//!   buffer capped at `read_cap`. When the cap is reached, [`Conn::fill`] stops and says
//!   so: the owner consumes what it can and calls again — a connection stopped before
//!   `WouldBlock` gets no new event, so the reactor keeps it on a ready list.
//! - Writes are eager: bytes queued with [`Conn::write_buf`] are sent by [`Conn::flush`]
//!   right away; `WRITABLE` is wanted only while bytes remain ([`Conn::wants_write`]).
//! - The write buffer has a high-water mark: owners stop producing (stop reading their
//!   peer, stop taking work) while [`Conn::write_backlogged`] says so, so a slow peer
//!   cannot make ferry buffer without bound.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// Bytes read per `read` call at most.
const READ_CHUNK: usize = 16 * 1024;
/// A new connection's buffer: big enough for a FastCGI answer or a control request, so
/// most worker connections never grow it. It doubles (up to [`READ_CHUNK`] per read)
/// while one fill keeps finding more data. With 10,000 requests in flight, a 16 KiB
/// zero-filled first read per connection was most of ferry's memory.
const FIRST_READ_CHUNK: usize = 2 * 1024;

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
    /// The read buffer reached its cap before `WouldBlock`: consume, then fill again.
    Full,
    /// The peer closed its side (bytes read before the EOF are in the buffer).
    Eof,
}

/// A socket with a capped read buffer and an eagerly flushed write buffer.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: Stream,
    /// Read buffer: `rbuf[rstart..rend]` is unconsumed input; the rest is room, zeroed
    /// once when the buffer grows (not on every read).
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    read_cap: usize,
    wbuf: Vec<u8>,
    wstart: usize,
    write_high_water: usize,
    /// Bytes read over the connection's life.
    pub bytes_in: u64,
    /// Bytes written over the connection's life.
    pub bytes_out: u64,
    /// The interest the poll has for this socket, so it is re-registered only when it
    /// changes (one `epoll_ctl` per change rather than per write).
    pub registered: Option<Interest>,
}

impl Conn {
    /// Wraps `stream`; the read buffer holds at most `read_cap` unconsumed bytes, and
    /// the write buffer is "backlogged" above `write_high_water` queued bytes.
    pub fn new(stream: Stream, read_cap: usize, write_high_water: usize) -> Conn {
        Conn {
            stream,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            read_cap,
            wbuf: Vec::new(),
            wstart: 0,
            write_high_water,
            bytes_in: 0,
            bytes_out: 0,
            registered: None,
        }
    }

    /// Reads until `WouldBlock`, EOF or the cap; see [`Fill`].
    pub fn fill(&mut self) -> io::Result<Fill> {
        self.fill_to(self.read_cap)
    }

    /// Reads until `WouldBlock`, EOF, or `want` unconsumed bytes (at most the cap): an
    /// owner that works off its input in slices reads no further ahead than it works, so
    /// its buffer stays small and is not compacted again and again. `Full` when it
    /// stopped at `want` (or the cap) before `WouldBlock`.
    pub fn fill_to(&mut self, want: usize) -> io::Result<Fill> {
        let limit = want.min(self.read_cap);
        if self.unconsumed() >= limit {
            return Ok(Fill::Full);
        }
        self.compact_input();
        loop {
            let room = limit.saturating_sub(self.unconsumed());
            if room == 0 {
                return Ok(Fill::Full);
            }
            let step = room.min(READ_CHUNK);
            let want = if self.rend < self.rbuf.len() {
                // Room left in the buffer: use it before growing.
                self.rbuf.len().min(self.rend + step)
            } else {
                // Full (or new): double it, starting at FIRST_READ_CHUNK.
                self.rend + step.min(self.rbuf.len().max(FIRST_READ_CHUNK))
            };
            if self.rbuf.len() < want {
                self.rbuf.resize(want, 0);
            }
            let result = self.stream.read(&mut self.rbuf[self.rend..want]);
            let n = match result {
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                },
            };
            if n == 0 {
                return Ok(Fill::Eof);
            }
            self.rend += n;
            self.bytes_in += n as u64;
        }
    }

    /// The most unconsumed input [`Conn::fill`] buffers.
    pub fn read_cap(&self) -> usize {
        self.read_cap
    }

    /// Changes the read cap (a RESP client's grows once it is authenticated).
    pub fn set_read_cap(&mut self, read_cap: usize) {
        self.read_cap = read_cap;
    }

    /// The bytes read and not yet consumed.
    pub fn input(&self) -> &[u8] {
        self.rbuf.get(self.rstart..self.rend).unwrap_or_default()
    }

    /// Marks `n` bytes of [`Conn::input`] as used.
    pub fn consume(&mut self, n: usize) {
        self.rstart = (self.rstart + n).min(self.rend);
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
    }

    /// Unconsumed input bytes.
    pub fn unconsumed(&self) -> usize {
        self.rend - self.rstart
    }

    /// Moves unconsumed bytes to the front, and gives back memory a burst left behind.
    fn compact_input(&mut self) {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == 0 && self.rbuf.len() > 4 * READ_CHUNK {
            self.rbuf = Vec::new();
        }
    }

    /// The write buffer, to append bytes to; call [`Conn::flush`] after.
    pub fn write_buf(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Writes queued bytes until done or `WouldBlock`.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.wstart < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wstart..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wstart += n;
                    self.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wstart == self.wbuf.len() {
            self.wbuf.clear();
            self.wstart = 0;
            if self.wbuf.capacity() > 4 * READ_CHUNK {
                self.wbuf = Vec::new();
            }
        } else if self.wstart > self.wbuf.len() / 2 {
            self.wbuf.drain(..self.wstart);
            self.wstart = 0;
        }
        Ok(())
    }

    /// Drops every byte queued and not yet written (a client being closed for its
    /// backlog: its memory is given back at once).
    pub fn discard_output(&mut self) {
        self.wbuf = Vec::new();
        self.wstart = 0;
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wstart
    }

    /// True while bytes remain to be written (register `WRITABLE`).
    pub fn wants_write(&self) -> bool {
        self.pending_output() > 0
    }

    /// True while more than the high-water mark is queued: stop producing.
    pub fn write_backlogged(&self) -> bool {
        self.pending_output() > self.write_high_water
    }

    /// The interest set this connection needs now.
    pub fn interest(&self) -> Interest {
        if self.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream as StdUnix;

    fn pair(read_cap: usize) -> (Conn, StdUnix) {
        let (ours, theirs) = StdUnix::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let conn = Conn::new(Stream::Unix(UnixStream::from_std(ours)), read_cap, 1024);
        (conn, theirs)
    }

    #[test]
    fn fill_stops_at_the_cap_and_resumes_after_consume() {
        let (mut conn, mut peer) = pair(100);
        peer.write_all(&[7; 250]).unwrap();
        assert_eq!(conn.fill().unwrap(), Fill::Full);
        assert_eq!(conn.input().len(), 100);
        conn.consume(100);
        assert_eq!(conn.fill().unwrap(), Fill::Full);
        conn.consume(60);
        assert_eq!(conn.fill().unwrap(), Fill::Drained);
        assert_eq!(conn.unconsumed(), 90);
        drop(peer);
        assert_eq!(conn.fill().unwrap(), Fill::Eof);
        assert_eq!(conn.unconsumed(), 90, "bytes before the EOF are kept");
    }

    #[test]
    fn fill_to_reads_no_further_than_wanted() {
        let (mut conn, mut peer) = pair(1000);
        peer.write_all(&[7; 250]).unwrap();
        assert_eq!(conn.fill_to(100).unwrap(), Fill::Full);
        assert_eq!(conn.unconsumed(), 100);
        assert_eq!(conn.fill_to(50).unwrap(), Fill::Full, "enough already");
        assert_eq!(conn.unconsumed(), 100);
        conn.consume(30);
        assert_eq!(conn.fill_to(500).unwrap(), Fill::Drained);
        assert_eq!(conn.unconsumed(), 220);
    }

    #[test]
    fn the_read_buffer_starts_small_and_grows_while_data_keeps_coming() {
        let (mut conn, mut peer) = pair(1 << 20);
        peer.write_all(&[7; 300]).unwrap();
        assert_eq!(conn.fill().unwrap(), Fill::Drained);
        assert_eq!(
            conn.rbuf.len(),
            FIRST_READ_CHUNK,
            "a small answer, a small buffer"
        );
        conn.consume(300);
        peer.write_all(&[7; 100_000]).unwrap();
        assert_eq!(conn.fill().unwrap(), Fill::Drained);
        assert_eq!(conn.unconsumed(), 100_000, "a burst is read whole");
        assert!(conn.rbuf.len() >= 100_000);
    }

    #[test]
    fn writes_are_eager_and_backlog_is_reported() {
        let (mut conn, mut peer) = pair(100);
        conn.write_buf().extend_from_slice(b"hello");
        conn.flush().unwrap();
        assert!(!conn.wants_write());
        let mut got = [0; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // Fill the socket buffer until writes would block.
        conn.write_buf().resize(8 << 20, 1);
        conn.flush().unwrap();
        assert!(conn.wants_write());
        assert!(conn.write_backlogged());
        assert_eq!(conn.interest(), Interest::READABLE | Interest::WRITABLE);
    }
}
