//! The boundary between the engine and the reactor: what the engine is told, and what it
//! asks for.
//!
//! Inputs reach the engine as calls on [`super::Engine`] (`handle_ready` with the bytes
//! the reactor read into a connection's [`Buffers`], `handle_connected`,
//! `handle_timeout`, `handle_signal`, `reload`, …), each with `now`. What the engine wants
//! done comes out through the [`Io`] trait: every method is one command — connect, listen,
//! write what is buffered, close, bind a worker socket, start or signal a process — and
//! each returns at once, with the immediate result where the system gives one (a unix
//! connect that fails with `EAGAIN`, a bind on an address in use). Completions that come
//! later (a TCP connect, a host-name lookup, a process ending) come back as inputs.
//!
//! The reactor implements [`Io`] with sockets and system calls; the engine's unit tests
//! implement it with a recorder and a scripted peer. Nothing here reads a clock or
//! touches a descriptor.

use std::fmt;

use crate::config::{Address, TlsClient};
use crate::dispatch::outcome::ConnectFailure;
use crate::metrics::ProcessStats;

/// A connection or a listener known to the engine. The reactor uses it as its poll
/// token; the engine never reuses one within a loop turn (closes happen after the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// A worker socket the reactor bound for a spawned pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketKey(pub u64);

/// What reading a connection found (the reactor reads until `WouldBlock`, EOF, or the
/// limit the connection's [`Buffers`] set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Read until `WouldBlock`: the next readable event brings more.
    Drained,
    /// Stopped at the buffer's limit before `WouldBlock`: consume, and the engine asks
    /// for another read ([`Engine::take_rereads`](super::Engine)).
    Full,
    /// The peer closed its side (bytes before the EOF are in the buffer).
    Eof,
    /// The socket failed (reset, broken pipe…).
    Failed,
    /// Not read: the event brought nothing to read (only writability).
    Skipped,
}

/// How far a connect got at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Connected: the connection can be written to now.
    Done,
    /// Under way (TCP, or a host name being looked up): completion comes as an input.
    Pending,
}

/// Why a connect failed, for the log and for the outcome table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    /// The class the outcome table knows.
    pub failure: ConnectFailure,
    /// What the system said.
    pub message: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A write that failed: the connection is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError(pub String);

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The signals a worker process group is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessSignal {
    /// Please stop (shutdown, retirement).
    Terminate,
    /// Stop now.
    Kill,
}

/// How a worker process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessExit {
    /// Exit status 0.
    pub success: bool,
    /// `exited with status 3`, `killed by signal 9 (SIGKILL)`.
    pub description: String,
}

/// A message for systemd's notify socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// `READY=1`.
    Ready,
    /// `RELOADING=1`.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
    /// `STATUS=…`.
    Status(&'a str),
    /// `WATCHDOG=1`.
    Watchdog,
}

/// A bound worker socket: its key and where workers' connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSocket {
    /// The reactor's handle.
    pub key: SocketKey,
    /// The address to connect to.
    pub address: Address,
}

/// The commands the engine gives; see the module docs.
pub trait Io {
    /// Starts a nonblocking connect of `conn` to `address`. [`Connect::Done`]: connected
    /// already (a unix socket connects at once or fails); [`Connect::Pending`]:
    /// [`Engine::handle_connected`](super::Engine::handle_connected) or
    /// `handle_connect_failed` follows. With `tls`, the connection is TLS: the reactor
    /// completes and verifies the handshake before it reports the connection connected,
    /// so nothing the engine writes (credentials) leaves before the server is verified.
    fn connect(
        &mut self,
        conn: ConnId,
        address: &Address,
        tls: Option<&TlsClient>,
    ) -> Result<Connect, ConnectError>;
    /// Listens on `address` with `conn` as the listener's id; accepted connections come
    /// back through `Engine::handle_accept`.
    fn listen(&mut self, conn: ConnId, address: &Address) -> Result<(), String>;
    /// Writes what `buffers` hold for `conn` until done or `WouldBlock` (the reactor
    /// then waits for writability).
    fn flush(&mut self, conn: ConnId, buffers: &mut Buffers) -> Result<(), WriteError>;
    /// Closes `conn` (a connection or a listener): shut down, deregistered, dropped.
    fn close(&mut self, conn: ConnId);
    /// Raises the descriptor limit toward `wanted` if needed; returns the limit in force.
    fn raise_fd_limit(&mut self, wanted: u64) -> u64;
    /// Binds the socket of a spawned pool: `listen` as configured, else a private one
    /// named after `pool`.
    fn bind_worker_socket(
        &mut self,
        pool: &str,
        listen: Option<&Address>,
    ) -> Result<BoundSocket, String>;
    /// Closes a spawned pool's socket (its workers are gone).
    fn release_worker_socket(&mut self, socket: SocketKey);
    /// Starts one worker process of `command` with `socket` as its fd 0; its pid.
    fn spawn_worker(
        &mut self,
        command: &[String],
        socket: SocketKey,
        max_requests: u32,
    ) -> Result<u32, String>;
    /// Sends `signal` to the process group of worker `pid`.
    fn signal_worker(&mut self, pid: u32, signal: ProcessSignal) -> Result<(), String>;
    /// If worker `pid` ended: kills what is left of its group, reaps it, says how it
    /// ended. `Ok(None)` while it runs.
    fn reap_worker(&mut self, pid: u32) -> Result<Option<ProcessExit>, String>;
    /// SIGKILL to the group of `pid`, then waits for it.
    fn kill_worker(&mut self, pid: u32);
    /// Sends a message to systemd (when ferry runs under it).
    fn notify(&mut self, notice: Notice<'_>);
    /// The process's own figures for `/metrics`.
    fn process_stats(&mut self) -> ProcessStats;
    /// ferry is up: the code only start-up ran need not stay resident
    /// (`crate::process::memory`).
    fn release_startup_code(&mut self);
}

/// Bytes read per fill at most (the reactor's read chunk).
pub const READ_CHUNK: usize = 16 * 1024;
/// A new connection's first read: big enough for a FastCGI answer or a control request,
/// so most worker connections never grow it; it doubles while a fill keeps finding data.
/// With 10,000 requests in flight, a 16 KiB first read per connection was most of
/// ferry's memory.
pub const FIRST_READ_CHUNK: usize = 2 * 1024;

/// A connection's read and write buffers (the socket is the reactor's).
///
/// - The read buffer holds at most `read_cap` unconsumed bytes; `read_ahead` can keep a
///   reader from reading further ahead than it works (a RESP client's per-turn budget),
///   and 0 pauses reading (backpressure).
/// - The write buffer is flushed eagerly by the reactor; above `write_high_water` queued
///   bytes the owner stops producing ([`Buffers::write_backlogged`]).
#[derive(Debug)]
pub struct Buffers {
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    read_cap: usize,
    read_ahead: Option<usize>,
    wbuf: Vec<u8>,
    wstart: usize,
    write_high_water: usize,
}

impl Buffers {
    /// Empty buffers; see the type docs for the limits.
    pub fn new(read_cap: usize, write_high_water: usize) -> Buffers {
        Buffers {
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            read_cap,
            read_ahead: None,
            wbuf: Vec::new(),
            wstart: 0,
            write_high_water,
        }
    }

    /// The most unconsumed input the reactor buffers.
    pub fn read_cap(&self) -> usize {
        self.read_cap
    }

    /// Changes the read cap (a RESP client's grows once it is authenticated).
    pub fn set_read_cap(&mut self, read_cap: usize) {
        self.read_cap = read_cap;
    }

    /// Reads at most `bytes` beyond what is unconsumed (`None`: up to the cap; `Some(0)`
    /// pauses reading).
    pub fn set_read_ahead(&mut self, bytes: Option<usize>) {
        self.read_ahead = bytes;
    }

    /// True while reading is paused (`read_ahead` 0).
    pub fn read_paused(&self) -> bool {
        self.read_ahead == Some(0)
    }

    /// How many unconsumed bytes the next fill may reach.
    pub fn fill_limit(&self) -> usize {
        match self.read_ahead {
            Some(ahead) => self.unconsumed().saturating_add(ahead).min(self.read_cap),
            None => self.read_cap,
        }
    }

    /// The bytes read and not yet consumed.
    pub fn input(&self) -> &[u8] {
        self.rbuf.get(self.rstart..self.rend).unwrap_or_default()
    }

    /// Marks `n` bytes of [`Buffers::input`] as used.
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

    /// Room to read into, at most `want` bytes (growing the buffer as described in the
    /// type docs); the reader calls [`Buffers::commit_read`] with what it got.
    pub fn read_room(&mut self, want: usize) -> &mut [u8] {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == 0 && self.rbuf.len() > 4 * READ_CHUNK {
            self.rbuf = Vec::new(); // give back what a burst left behind
        }
        let step = want.min(READ_CHUNK);
        let end = if self.rend < self.rbuf.len() {
            self.rbuf.len().min(self.rend + step)
        } else {
            self.rend + step.min(self.rbuf.len().max(FIRST_READ_CHUNK))
        };
        if self.rbuf.len() < end {
            self.rbuf.resize(end, 0);
        }
        let rend = self.rend;
        self.rbuf.get_mut(rend..end).unwrap_or_default()
    }

    /// `n` bytes were read into [`Buffers::read_room`].
    pub fn commit_read(&mut self, n: usize) {
        self.rend = (self.rend + n).min(self.rbuf.len());
    }

    /// Appends input as if it had been read (tests and scripted peers).
    pub fn push_input(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = self.read_room(rest.len());
            let n = room.len().min(rest.len());
            room[..n].copy_from_slice(&rest[..n]);
            self.commit_read(n);
            rest = &rest[n..];
        }
    }

    /// The write buffer, to append bytes to.
    pub fn write_buf(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// The bytes queued and not yet written.
    pub fn output(&self) -> &[u8] {
        self.wbuf.get(self.wstart..).unwrap_or_default()
    }

    /// `n` bytes of [`Buffers::output`] were written.
    pub fn commit_write(&mut self, n: usize) {
        self.wstart = (self.wstart + n).min(self.wbuf.len());
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
    }

    /// Takes everything queued (a test peer reading what ferry wrote).
    pub fn take_output(&mut self) -> Vec<u8> {
        let out = self.output().to_vec();
        self.discard_output();
        out
    }

    /// Drops every byte queued and not yet written (a client closed for its backlog:
    /// its memory is given back at once).
    pub fn discard_output(&mut self) {
        self.wbuf = Vec::new();
        self.wstart = 0;
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wstart
    }

    /// True while bytes remain to be written (the reactor waits for writability).
    pub fn wants_write(&self) -> bool {
        self.pending_output() > 0
    }

    /// True while more than the high-water mark is queued: stop producing.
    pub fn write_backlogged(&self) -> bool {
        self.pending_output() > self.write_high_water
    }

    /// Memory held by the buffers (capacity).
    pub fn held_bytes(&self) -> usize {
        self.rbuf.capacity() + self.wbuf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_starts_small_and_grows_while_data_keeps_coming() {
        let mut b = Buffers::new(1 << 20, 1 << 20);
        assert_eq!(b.read_room(1 << 20).len(), FIRST_READ_CHUNK);
        b.commit_read(FIRST_READ_CHUNK);
        assert_eq!(b.read_room(1 << 20).len(), FIRST_READ_CHUNK);
        b.commit_read(FIRST_READ_CHUNK);
        assert_eq!(b.read_room(1 << 20).len(), 2 * FIRST_READ_CHUNK);
        b.commit_read(2 * FIRST_READ_CHUNK);
        assert_eq!(b.unconsumed(), 4 * FIRST_READ_CHUNK);
        b.consume(4 * FIRST_READ_CHUNK);
        assert_eq!(b.unconsumed(), 0);
    }

    #[test]
    fn read_ahead_limits_and_pauses_filling() {
        let mut b = Buffers::new(1000, 10);
        b.push_input(b"abcdef");
        b.set_read_ahead(Some(4));
        assert_eq!(b.fill_limit(), 10);
        b.set_read_ahead(Some(0));
        assert_eq!(b.fill_limit(), 6);
        b.set_read_ahead(None);
        assert_eq!(b.fill_limit(), 1000);
        assert_eq!(b.input(), b"abcdef");
    }

    #[test]
    fn output_is_committed_in_parts_and_backlog_is_reported() {
        let mut b = Buffers::new(16, 4);
        b.write_buf().extend_from_slice(b"hello world");
        assert!(b.write_backlogged());
        b.commit_write(6);
        assert_eq!(b.output(), b"world");
        assert!(b.write_backlogged());
        b.commit_write(5);
        assert!(!b.wants_write());
    }
}
