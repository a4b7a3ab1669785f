//! Blocking connections for `ferry check`: TCP or unix, every connect, read and write
//! bounded by a deadline. A CLI command that talks to one peer at a time has no use for
//! the reactor; what it needs is that no peer can make it hang.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferry::config::Address;

/// One connection to a peer.
pub enum Conn {
    /// A TCP stream (Nagle off: every check is a small request and an answer).
    Tcp(TcpStream),
    /// A unix stream socket.
    Unix(UnixStream),
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
pub fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
    }
    Ok(left)
}

impl Conn {
    /// Connects to a pool (or any) address before `deadline`.
    pub fn connect(address: &Address, deadline: Instant) -> io::Result<Conn> {
        match address {
            // A unix connect does not wait for the peer (EAGAIN when its backlog is full).
            Address::Unix(path) => UnixStream::connect(path).map(Conn::Unix),
            Address::Tcp { host, port } => Conn::connect_tcp(host, *port, deadline),
        }
    }

    /// Connects to the first address of `host:port` that answers before `deadline`
    /// (name resolution blocks: fine in a command, never done in the reactor).
    pub fn connect_tcp(host: &str, port: u16, deadline: Instant) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn::Tcp(stream));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Writes all of `bytes` before `deadline`.
    pub fn send(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let left = Some(remaining(deadline)?);
        match self {
            Conn::Tcp(s) => s.set_write_timeout(left)?,
            Conn::Unix(s) => s.set_write_timeout(left)?,
        }
        self.write_all(bytes)
    }

    /// Reads once into `buf`, waiting until `wake` at most (`deadline` caps it). Returns
    /// the bytes read (0 = EOF); `TimedOut` when nothing came before `wake`.
    pub fn receive(&mut self, buf: &mut Vec<u8>, wake: Instant) -> io::Result<usize> {
        let left = Some(remaining(wake)?.max(Duration::from_millis(1)));
        match self {
            Conn::Tcp(s) => s.set_read_timeout(left)?,
            Conn::Unix(s) => s.set_read_timeout(left)?,
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            Err(e) => Err(e),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}
