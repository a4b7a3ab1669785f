//! `ferry check` for a Redis source: `HELLO 3` (with `AUTH` when the URL or
//! `password_file` gives a password) and what the server says about itself — its name,
//! version, protocol, mode and role. A server older than Redis 6 answers
//! `-ERR unknown command`: then `AUTH`, `PING` and `INFO server` stand in (protocol 2).
//! A non-zero database is `SELECT`ed, so a db index out of range shows here.

use std::time::Instant;

use ferry::config::RedisUrl;
use ferry::proto::resp::{encode_command, Decoder, Frame};
use ferry::proto::Status;
use serde::Serialize;

use super::conn::Conn;

/// What the Redis server said.
#[derive(Debug, Default, Serialize)]
pub struct RedisDetails {
    /// `server` from HELLO (`redis`, or another RESP server's name).
    pub server: Option<String>,
    /// `version` from HELLO (or `redis_version` from INFO).
    pub version: Option<String>,
    /// The protocol the connection speaks (3 after HELLO 3, 2 on the fallback).
    pub protocol: Option<i64>,
    /// `mode`: standalone, sentinel or cluster.
    pub mode: Option<String>,
    /// `role`: master or replica.
    pub role: Option<String>,
}

/// A reply, owned (frames borrow the read buffer, which is drained after each one).
enum Reply {
    /// A map's entries as text (HELLO 3).
    Map(Vec<(String, Option<String>)>),
    /// `-ERR …` or a bulk error.
    Error(String),
    /// Anything else, as text when it has some.
    Other(Option<String>),
}

fn text(frame: &Frame<'_>) -> Option<String> {
    match frame {
        Frame::Integer(n) => Some(n.to_string()),
        other => other
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
    }
}

/// RESP replies read from a blocking connection.
struct Replies {
    conn: Conn,
    buf: Vec<u8>,
    decoder: Decoder,
    deadline: Instant,
}

impl Replies {
    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut out = Vec::new();
        encode_command(&mut out, args.iter());
        self.conn
            .send(&out, self.deadline)
            .map_err(|e| format!("send: {e}"))?;
        self.next()
    }

    fn next(&mut self) -> Result<Reply, String> {
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(Status::Complete(frame, used)) => {
                    let reply = match &frame {
                        // Attributes annotate the reply that follows: skip them.
                        Frame::Attribute(_) => None,
                        Frame::Map(map) => Some(Reply::Map(
                            map.pairs()
                                .map(|(k, v)| (text(&k).unwrap_or_default(), text(&v)))
                                .collect(),
                        )),
                        Frame::Error(e) | Frame::BulkError(e) => {
                            Some(Reply::Error(String::from_utf8_lossy(e).into_owned()))
                        }
                        other => Some(Reply::Other(text(other))),
                    };
                    self.buf.drain(..used);
                    match reply {
                        Some(reply) => return Ok(reply),
                        None => continue,
                    }
                }
                Ok(Status::Partial) => {}
                Err(e) => return Err(format!("not a RESP reply: {e}")),
            }
            match self.conn.receive(&mut self.buf, self.deadline) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("waiting for a reply: {e}")),
            }
        }
    }
}

/// Connects and asks; the details hold what was learnt even when an error follows.
pub fn check(url: &RedisUrl, deadline: Instant) -> (RedisDetails, Option<String>) {
    let mut details = RedisDetails::default();
    let error = run(url, deadline, &mut details).err();
    (details, error)
}

fn run(url: &RedisUrl, deadline: Instant, details: &mut RedisDetails) -> Result<(), String> {
    let conn = Conn::connect_tcp(&url.host, url.port, deadline)
        .map_err(|e| format!("connect {}:{}: {e}", url.host, url.port))?;
    let mut replies = Replies {
        conn,
        buf: Vec::new(),
        decoder: Decoder::default(),
        deadline,
    };
    let password = url.password.as_ref().map(|p| p.expose().as_bytes());
    let user = url.username.as_deref().unwrap_or("default").as_bytes();
    let hello = match password {
        Some(pass) => replies.call(&[b"HELLO", b"3", b"AUTH", user, pass])?,
        None => replies.call(&[b"HELLO", b"3"])?,
    };
    match hello {
        Reply::Map(entries) => {
            for (key, value) in entries {
                match key.as_str() {
                    "server" => details.server = value,
                    "version" => details.version = value,
                    "proto" => details.protocol = value.and_then(|v| v.parse().ok()),
                    "mode" => details.mode = value,
                    "role" => details.role = value,
                    _ => {}
                }
            }
        }
        Reply::Error(e) if e.starts_with("ERR unknown command") => {
            fallback(url, &mut replies, details)?
        }
        Reply::Error(e) => return Err(format!("HELLO 3: {e}")),
        Reply::Other(_) => return Err("HELLO 3: the answer is not a map".into()),
    }
    if url.db != 0 {
        let db = url.db.to_string();
        if let Reply::Error(e) = replies.call(&[b"SELECT", db.as_bytes()])? {
            return Err(format!("SELECT {db}: {e}"));
        }
    }
    Ok(())
}

/// Before Redis 6: AUTH, PING, and the version from INFO.
fn fallback(
    url: &RedisUrl,
    replies: &mut Replies,
    details: &mut RedisDetails,
) -> Result<(), String> {
    if let Some(pass) = &url.password {
        let pass = pass.expose().as_bytes();
        let reply = match &url.username {
            Some(user) => replies.call(&[b"AUTH", user.as_bytes(), pass])?,
            None => replies.call(&[b"AUTH", pass])?,
        };
        if let Reply::Error(e) = reply {
            return Err(format!("AUTH: {e}"));
        }
    }
    if let Reply::Error(e) = replies.call(&[b"PING"])? {
        return Err(format!("PING: {e}"));
    }
    details.protocol = Some(2);
    if let Reply::Other(Some(info)) = replies.call(&[b"INFO", b"server"])? {
        for line in info.lines() {
            if let Some((key, value)) = line.trim_end().split_once(':') {
                match key {
                    "redis_version" => details.version = Some(value.into()),
                    "redis_mode" => details.mode = Some(value.into()),
                    _ => {}
                }
            }
        }
        details.server = Some("redis".into());
    }
    Ok(())
}
