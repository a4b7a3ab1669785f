//! `ferry check` for a Redis source: `HELLO 3` (with `AUTH` when the URL or
//! `password_file` gives a password) and what the server says about itself — its name,
//! version, protocol, mode and role. A server older than Redis 6 answers
//! `-ERR unknown command`: then `AUTH`, `PING` and `INFO server` stand in (protocol 2).
//! A non-zero database is `SELECT`ed, so a db index out of range shows here.

use std::time::Instant;

use ferry::config::{RedisUrl, TlsClient};
use ferry::proto::resp::{encode_command, Decoder, Frame};
use ferry::proto::Status;
use serde::Serialize;

use super::conn::{Conn, TlsDetails};

/// What the Redis server said.
#[derive(Debug, Default, Serialize)]
pub struct RedisDetails {
    /// The TLS session (`rediss://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDetails>,
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

    /// The next reply's bytes, whatever it is.
    fn call_raw(&mut self, args: &[&[u8]]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        encode_command(&mut out, args.iter());
        self.conn
            .send(&out, self.deadline)
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(Status::Complete(_, used)) => {
                    let raw = self.buf[..used].to_vec();
                    self.buf.drain(..used);
                    return Ok(raw);
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
pub fn check(
    url: &RedisUrl,
    tls: Option<&TlsClient>,
    deadline: Instant,
) -> (RedisDetails, Option<String>) {
    let mut details = RedisDetails::default();
    let error = connect(url, tls, deadline, &mut details).err();
    (details, error)
}

/// What a stream source's stream and group look like.
#[derive(Debug, Default, Serialize)]
pub struct StreamDetails {
    /// The key exists and is a stream.
    pub stream_exists: bool,
    /// Entries in the stream (`XLEN`).
    pub length: Option<u64>,
    /// The consumer group exists.
    pub group_exists: bool,
    /// Entries delivered to the group and not acked.
    pub pending: Option<u64>,
    /// Entries not yet delivered to the group (Redis 7).
    pub lag: Option<u64>,
    /// Consumers in the group.
    pub consumers: Option<u64>,
    /// Entries in the dead-letter stream.
    pub dead_letters: Option<u64>,
}

/// `ferry check` for a stream source: the server as for a Redis source, then whether the
/// stream and the group exist (or `ferry run` will create them), pending entries, lag.
pub fn check_stream(
    source: &ferry::config::RedisStreamSource,
    url: &RedisUrl,
    deadline: Instant,
) -> (RedisDetails, StreamDetails, Option<String>, Option<String>) {
    let mut details = RedisDetails::default();
    let mut stream = StreamDetails::default();
    let mut note = None;
    let error = (|| -> Result<(), String> {
        let mut replies = connect(url, source.tls_client.as_ref(), deadline, &mut details)?;
        let key = source.stream.as_bytes();
        match replies.call(&[b"TYPE", key])? {
            Reply::Other(Some(t)) if t == "stream" => stream.stream_exists = true,
            Reply::Other(Some(t)) if t == "none" => {}
            Reply::Other(Some(t)) => {
                return Err(format!("key '{}' is a {t}, not a stream", source.stream))
            }
            Reply::Error(e) => return Err(format!("TYPE: {e}")),
            _ => return Err("TYPE: unexpected answer".into()),
        }
        if stream.stream_exists {
            if let Reply::Other(Some(n)) = replies.call(&[b"XLEN", key])? {
                stream.length = n.parse().ok();
            }
            let raw = replies.call_raw(&[b"XINFO", b"GROUPS", key])?;
            let frame = match ferry::proto::resp::decode(&raw, &Default::default()) {
                Ok(Status::Complete(frame, _)) => frame,
                _ => return Err("XINFO GROUPS: not a RESP reply".into()),
            };
            if let Frame::Error(e) = frame {
                return Err(format!("XINFO GROUPS: {}", String::from_utf8_lossy(e)));
            }
            let group = ferry::proto::resp::stream::reply::xinfo_groups(
                &frame,
                source.group.as_bytes(),
            )
            .map_err(|e| format!("XINFO GROUPS: {e}"))?;
            if let Some(group) = group {
                stream.group_exists = true;
                stream.pending = Some(group.pending);
                stream.lag = group.lag;
                stream.consumers = Some(group.consumers);
            }
        }
        let dead = source.dead_stream();
        if let Reply::Other(Some(n)) = replies.call(&[b"XLEN", dead.as_bytes()])? {
            stream.dead_letters = n.parse().ok().filter(|&n: &u64| n > 0);
        }
        if !stream.group_exists {
            if source.create_group {
                note = Some(format!(
                    "{} '{}' does not exist yet: ferry run will create it (XGROUP CREATE … {} MKSTREAM)",
                    if stream.stream_exists { "group" } else { "stream and group" },
                    source.group,
                    source.start
                ));
            } else {
                return Err(format!(
                    "group '{}' of stream '{}' does not exist (\"create_group\": false)",
                    source.group, source.stream
                ));
            }
        }
        Ok(())
    })()
    .err();
    (details, stream, note, error)
}

fn connect(
    url: &RedisUrl,
    tls: Option<&TlsClient>,
    deadline: Instant,
    details: &mut RedisDetails,
) -> Result<Replies, String> {
    let (conn, session) = Conn::connect_broker(&url.host, url.port, tls, deadline)
        .map_err(|e| format!("connect {}:{}: {e}", url.host, url.port))?;
    details.tls = session;
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
    Ok(replies)
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
