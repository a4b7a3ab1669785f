//! A Redis model for pub/sub, answering with ferry's own RESP server session (the one
//! the RESP endpoint uses): `HELLO` answered (RESP3) or refused as Redis 6 does (RESP2),
//! `SUBSCRIBE`, `UNSUBSCRIBE`, `PING`, and messages published to every subscribed
//! connection. What nobody is subscribed to when it is published is lost, as in Redis.

use std::collections::BTreeMap;

use ferry::proto::resp::server::{
    encode_message, ClientSession, CommandReader, ReaderLimits, SessionConfig,
};
use ferry::proto::Status;

use crate::net::{Conn, Mark};
use crate::trace::trace;

/// A Redis 6 server's refusal of `HELLO 3`.
const NO_HELLO: &[u8] = b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n";
pub const CHANNEL: &[u8] = b"jobs";

struct RConn {
    reader: CommandReader,
    session: ClientSession,
    refuse_hello: bool,
    subscribed: bool,
    /// Bytes read and not yet parsed (a command split across reads).
    inbuf: Vec<u8>,
}

#[derive(Default)]
pub struct Redis {
    conns: BTreeMap<u64, RConn>,
    pub down_until: Option<std::time::Instant>,
    next_client: u64,
}

/// What the connection does after Redis read it.
pub enum After {
    Open,
    Close,
}

impl Redis {
    pub fn accept(&mut self, id: u64, refuse_hello: bool) {
        self.next_client += 1;
        self.conns.insert(
            id,
            RConn {
                reader: CommandReader::new(ReaderLimits { max_bulk: 1 << 20 }),
                session: ClientSession::new(SessionConfig {
                    password: None,
                    id: self.next_client,
                    server_version: "7.0.15",
                }),
                refuse_hello,
                subscribed: false,
                inbuf: Vec::new(),
            },
        );
    }

    pub fn conn_gone(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    pub fn conn_ids(&self) -> Vec<u64> {
        self.conns.keys().copied().collect()
    }

    /// Redis reads what ferry wrote.
    pub fn input(&mut self, id: u64, conn: &mut Conn) -> After {
        let Some(rc) = self.conns.get_mut(&id) else {
            conn.to_peer.clear();
            return After::Open;
        };
        let mut out = Vec::new();
        let mut used = 0;
        let mut after = After::Open;
        rc.inbuf.append(&mut conn.to_peer);
        let inbuf = std::mem::take(&mut rc.inbuf);
        loop {
            let input = &inbuf[used..];
            match rc.reader.read(input, true) {
                Ok(Status::Complete(command, n)) => {
                    used += n;
                    let name = command.arg(0).unwrap_or_default().to_ascii_uppercase();
                    if name == b"HELLO" && rc.refuse_hello {
                        out.extend_from_slice(NO_HELLO);
                        continue;
                    }
                    let outcome = rc.session.handle(&command, &mut out);
                    if matches!(outcome, ferry::proto::resp::server::Outcome::Close) {
                        after = After::Close;
                        break;
                    }
                    for change in rc.session.take_changes() {
                        if change.name == CHANNEL {
                            rc.subscribed = change.subscribed;
                            trace!(
                                "redis: conn {id} {}subscribed",
                                if change.subscribed { "" } else { "un" }
                            );
                        }
                    }
                }
                Ok(Status::Partial) => {
                    used += rc.reader.take_skipped();
                    break;
                }
                Err(_) => {
                    after = After::Close;
                    break;
                }
            }
        }
        rc.inbuf = inbuf[used..].to_vec();
        conn.send(&out);
        after
    }

    /// Publishes `payload` to every subscribed connection; returns how many took it.
    pub fn publish(&mut self, payload: &str, conns: &mut BTreeMap<u64, Conn>) -> usize {
        let mut receivers = 0;
        for (id, rc) in &self.conns {
            if !rc.subscribed {
                continue;
            }
            let Some(conn) = conns.get_mut(id) else {
                continue;
            };
            if conn.ferry.is_none() || conn.reset || conn.fin {
                continue;
            }
            let mut out = Vec::new();
            encode_message(
                &mut out,
                rc.session.version(),
                None,
                CHANNEL,
                payload.as_bytes(),
            );
            conn.send(&out);
            conn.mark(Mark::RedisMessage);
            receivers += 1;
        }
        trace!("redis: publish {payload} to {receivers} subscribers");
        receivers
    }
}
