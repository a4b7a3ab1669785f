//! The simulated network: one [`Conn`] per connection ferry opened or accepted, with the
//! bytes in flight each way. Nothing moves by itself: the driver (`run.rs`) decides which
//! bytes reach which side, in what pieces, and when connections fail.

use std::collections::{BTreeMap, VecDeque};

use ferry::dispatch::outcome::ConnectFailure;
use ferry::engine::io::ConnId;

/// Who is at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Broker,
    Redis,
    Fpm,
    Control,
}

/// Something at a byte offset of the stream toward ferry.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// The end of a worker answer (index into the ledger's requests).
    Answer(usize),
    /// The end of a Redis message frame.
    RedisMessage,
}

/// One connection.
pub struct Conn {
    /// ferry's id for it, while ferry holds it.
    pub ferry: Option<ConnId>,
    pub incarnation: u32,
    pub peer: PeerKind,
    /// A connect under way: how it will end.
    pub connecting: Option<Result<(), ConnectFailure>>,
    /// Bytes ferry wrote, not yet read by the peer.
    pub to_peer: Vec<u8>,
    /// Bytes the peer wrote, not yet read by ferry.
    pub to_ferry: Vec<u8>,
    /// The peer closed its side: ferry reads EOF after `to_ferry`.
    pub fin: bool,
    /// The connection was reset: ferry's next read fails, what was in flight is lost.
    pub reset: bool,
    /// ferry has been told about the EOF or the reset.
    pub end_told: bool,
    /// Bytes ever put in `to_ferry`, and handed to ferry.
    pub sent: u64,
    pub delivered: u64,
    pub marks: VecDeque<(u64, Mark)>,
    /// Worker connections: the requests ferry wrote that no child read yet.
    pub tap: crate::fpm::WireTap,
    /// Control clients: the answer read so far.
    pub answer: Vec<u8>,
}

impl Conn {
    pub fn new(peer: PeerKind, ferry: ConnId, incarnation: u32) -> Conn {
        Conn {
            ferry: Some(ferry),
            incarnation,
            peer,
            connecting: None,
            to_peer: Vec::new(),
            to_ferry: Vec::new(),
            fin: false,
            reset: false,
            end_told: false,
            sent: 0,
            delivered: 0,
            marks: VecDeque::new(),
            tap: crate::fpm::WireTap::default(),
            answer: Vec::new(),
        }
    }

    /// The peer writes `bytes` toward ferry.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.ferry.is_none() || self.reset || self.fin {
            return;
        }
        self.to_ferry.extend_from_slice(bytes);
        self.sent += bytes.len() as u64;
    }

    /// Notes `mark` at the current end of the stream toward ferry.
    pub fn mark(&mut self, mark: Mark) {
        self.marks.push_back((self.sent, mark));
    }

    /// True while ferry has something to learn on it.
    pub fn readable(&self) -> bool {
        self.ferry.is_some()
            && self.connecting.is_none()
            && (!self.to_ferry.is_empty() || ((self.fin || self.reset) && !self.end_told))
    }
}

/// Every connection, by the simulator's own id (ferry's ids are reused across restarts).
#[derive(Default)]
pub struct Net {
    pub conns: BTreeMap<u64, Conn>,
    /// ferry's id → the simulator's, for the running ferry.
    pub by_ferry: BTreeMap<usize, u64>,
    next_id: u64,
    /// The running ferry's control listener.
    pub control_listener: Option<ConnId>,
}

impl Net {
    pub fn open(&mut self, conn: Conn) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(f) = conn.ferry {
            self.by_ferry.insert(f.0, id);
        }
        self.conns.insert(id, conn);
        id
    }

    pub fn id_of(&self, ferry: ConnId) -> Option<u64> {
        self.by_ferry.get(&ferry.0).copied()
    }
}
