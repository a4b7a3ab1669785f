//! The engine without sockets: a recording [`Io`], scripted peers built on `crate::proto`
//! (a Redis server, a RabbitMQ broker, php-fpm answering FastCGI requests), and a clock
//! advanced by hand. Each test runs in microseconds.
//!
//! # Layout
//! - `mod.rs`: the harness ([`Sim`], [`FakeIo`]) and the peers' bytes.
//! - `settle.rs`: the settlement table, row by row.
//! - `sources.rs`: connecting, reconnect backoff, intake, pause / resume.
//! - `pools.rs`: dispatch, outcomes, circuit breaker, retries, kept connections.
//! - `lifecycle.rs`: drain, reload (and freeing removed entries), spawned workers.
//! - `endpoint.rs`: the RESP endpoint's publish, fan-out and backpressure.
//! - `streams.rs`: Redis Streams sources against a scripted Redis.
//! - `sentinel.rs`: Redis Sentinel against scripted sentinels and masters.

mod endpoint;
mod lifecycle;
mod pools;
mod sentinel;
mod settle;
mod sources;
mod streams;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::io::{
    BoundSocket, Buffers, ConnId, Connect, ConnectError, Fill, Io, Notice, ProcessExit,
    ProcessSignal, SocketKey, WriteError,
};
use super::{Accept, Engine, Options};
use crate::config::{self, Address, Config};
use crate::dispatch::outcome::ConnectFailure;
use crate::metrics::ProcessStats;
use crate::proto::amqp::{self, decode_frame, FramePayload, Method};
use crate::proto::fastcgi::{encode_record, RecordType};
use crate::proto::Status;

/// What the engine asked for, recorded; and what the "system" answers.
#[derive(Default)]
pub struct FakeIo {
    /// Every connect, in order.
    pub connects: Vec<(ConnId, Address)>,
    /// Connects to fail at once, by address text.
    pub refuse: HashMap<String, ConnectFailure>,
    /// Connects complete at once (as a unix socket's do); else they are pending until
    /// the test says `connected`.
    pub connect_at_once: bool,
    pub listens: Vec<(ConnId, Address)>,
    /// Addresses whose listen fails.
    pub listen_fails: HashSet<String>,
    pub closed: Vec<ConnId>,
    /// Connections open now (connected or accepted, not closed): ids are reused.
    pub open: HashSet<ConnId>,
    /// Bytes written per connection (taken by the peers).
    pub written: HashMap<ConnId, Vec<u8>>,
    /// Connections whose socket takes nothing (a peer that does not read).
    pub blocked: HashSet<ConnId>,
    pub notices: Vec<String>,
    pub fd_limit: u64,
    pub next_pid: u32,
    pub spawned: Vec<u32>,
    pub signals: Vec<(u32, ProcessSignal)>,
    /// Workers that ended, and how; taken by `reap_worker`.
    pub exits: HashMap<u32, ProcessExit>,
    pub killed: Vec<u32>,
    pub sockets: Vec<SocketKey>,
    pub released_sockets: Vec<SocketKey>,
}

impl Io for FakeIo {
    fn connect(
        &mut self,
        conn: ConnId,
        address: &Address,
        _tls: Option<&crate::config::TlsClient>,
    ) -> Result<Connect, ConnectError> {
        self.connects.push((conn, address.clone()));
        self.open.insert(conn);
        match self.refuse.get(&address.to_string()) {
            Some(failure) => Err(ConnectError {
                failure: *failure,
                message: "refused by the test".into(),
            }),
            None if self.connect_at_once => Ok(Connect::Done),
            None => Ok(Connect::Pending),
        }
    }

    fn listen(&mut self, conn: ConnId, address: &Address) -> Result<(), String> {
        if self.listen_fails.contains(&address.to_string()) {
            return Err("address in use".into());
        }
        self.listens.push((conn, address.clone()));
        Ok(())
    }

    fn flush(&mut self, conn: ConnId, buffers: &mut Buffers) -> Result<(), WriteError> {
        if !self.blocked.contains(&conn) {
            let out = buffers.take_output();
            self.written.entry(conn).or_default().extend(out);
        }
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        self.closed.push(conn);
        self.open.remove(&conn);
    }

    fn raise_fd_limit(&mut self, _wanted: u64) -> u64 {
        if self.fd_limit == 0 {
            65536
        } else {
            self.fd_limit
        }
    }

    fn bind_worker_socket(
        &mut self,
        pool: &str,
        _listen: Option<&Address>,
    ) -> Result<BoundSocket, String> {
        let key = SocketKey(self.sockets.len() as u64 + 1);
        self.sockets.push(key);
        Ok(BoundSocket {
            key,
            address: Address::Unix(format!("/tmp/test-{pool}-{}.sock", key.0).into()),
        })
    }

    fn release_worker_socket(&mut self, socket: SocketKey) {
        self.released_sockets.push(socket);
    }

    fn spawn_worker(
        &mut self,
        _command: &[String],
        _socket: SocketKey,
        _max: u32,
    ) -> Result<u32, String> {
        self.next_pid += 1;
        let pid = 1000 + self.next_pid;
        self.spawned.push(pid);
        Ok(pid)
    }

    fn signal_worker(&mut self, pid: u32, signal: ProcessSignal) -> Result<(), String> {
        self.signals.push((pid, signal));
        Ok(())
    }

    fn reap_worker(&mut self, pid: u32) -> Result<Option<ProcessExit>, String> {
        Ok(self.exits.remove(&pid))
    }

    fn kill_worker(&mut self, pid: u32) {
        self.killed.push(pid);
    }

    fn notify(&mut self, notice: Notice<'_>) {
        self.notices.push(format!("{notice:?}"));
    }

    fn process_stats(&mut self) -> ProcessStats {
        ProcessStats::default()
    }

    fn release_startup_code(&mut self) {
        self.notices.push("ReleaseStartupCode".into());
    }
}

/// The engine, its recorder and the clock.
pub struct Sim {
    pub engine: Engine,
    pub io: FakeIo,
    pub now: Instant,
    /// Exit code, once the engine ended.
    pub exit: Option<i32>,
}

impl Sim {
    pub fn new(config_json: &str) -> Sim {
        Sim::with_io(config_json, FakeIo::default())
    }

    pub fn with_io(config_json: &str, mut io: FakeIo) -> Sim {
        let config = parse(config_json);
        let now = crate::test_epoch();
        let options = Options {
            seed: 7,
            notify: true,
            watchdog: None,
            pid: 1,
        };
        let engine = Engine::start(&config, options, now, &mut io).expect("engine starts");
        let mut sim = Sim {
            engine,
            io,
            now,
            exit: None,
        };
        sim.turn();
        sim
    }

    /// One loop turn without events: re-reads, due timers, the end of the turn.
    pub fn turn(&mut self) -> Option<i32> {
        for _ in 0..8 {
            let rereads = self.engine.take_rereads();
            for conn in rereads {
                self.ready(conn, Fill::Drained);
            }
            self.engine.handle_timeout(self.now, &mut self.io);
            if let Some(code) = self.engine.end_turn(self.now, &mut self.io) {
                self.exit = Some(code);
                return Some(code);
            }
            if !self.engine.has_queued_work() {
                break;
            }
        }
        None
    }

    /// Moves the clock and runs what came due.
    pub fn advance(&mut self, by: Duration) -> Option<i32> {
        self.now += by;
        self.turn()
    }

    /// Advances in steps of `step` until `until` passed.
    pub fn run_for(&mut self, total: Duration, step: Duration) {
        let end = self.now + total;
        while self.now < end && self.exit.is_none() {
            self.advance(step);
        }
    }

    fn ready(&mut self, conn: ConnId, fill: Fill) {
        self.engine.handle_ready(conn, fill, self.now, &mut self.io);
    }

    /// A peer sent `bytes` on `conn`.
    pub fn feed(&mut self, conn: ConnId, bytes: &[u8]) {
        if let Some(buffers) = self.engine.buffers_mut(conn) {
            buffers.push_input(bytes);
        }
        self.ready(conn, Fill::Drained);
        self.turn();
    }

    /// The peer closed `conn`.
    pub fn eof(&mut self, conn: ConnId) {
        self.ready(conn, Fill::Eof);
        self.turn();
    }

    /// The connect of `conn` completed.
    pub fn connected(&mut self, conn: ConnId) {
        self.engine.handle_connected(conn, self.now, &mut self.io);
        self.ready(conn, Fill::Drained);
        self.turn();
    }

    /// The connect of `conn` failed.
    pub fn connect_failed(&mut self, conn: ConnId, failure: ConnectFailure) {
        let error = ConnectError {
            failure,
            message: "test".into(),
        };
        self.engine.handle_connect_failed(conn, &error, self.now);
        self.turn();
    }

    /// A client connected to listener `listener`.
    pub fn accept(&mut self, listener: ConnId) -> Accept {
        let accepted = self
            .engine
            .handle_accept(listener, self.now)
            .expect("a listener");
        if let Accept::Take(conn) = accepted {
            self.io.open.insert(conn);
        }
        self.turn();
        accepted
    }

    /// What ferry wrote on `conn` since the last call.
    pub fn written(&mut self, conn: ConnId) -> Vec<u8> {
        self.io.written.remove(&conn).unwrap_or_default()
    }

    /// The connections made to `address` so far.
    pub fn connects_to(&self, address: &str) -> Vec<ConnId> {
        self.io
            .connects
            .iter()
            .filter(|(_, a)| a.to_string() == address)
            .map(|(c, _)| *c)
            .collect()
    }

    /// The last connection made to `address`.
    pub fn last_connect(&self, address: &str) -> ConnId {
        *self.connects_to(address).last().expect("a connect")
    }

    /// True when `conn` is not open (never opened, or closed): ids are reused, so a
    /// closed id may name a newer connection again — then it is open.
    pub fn is_closed(&self, conn: ConnId) -> bool {
        !self.io.open.contains(&conn)
    }

    pub fn sigterm(&mut self) -> Option<i32> {
        let code = self.engine.handle_terminate(15, self.now, &mut self.io);
        if code.is_some() {
            self.exit = code;
            return code;
        }
        self.turn()
    }

    pub fn reload(&mut self, config_json: &str) {
        let config = parse(config_json);
        self.engine.reload(Ok(config), self.now, &mut self.io);
        self.turn();
    }

    /// `/metrics` as the control endpoint renders it.
    pub fn metrics(&mut self) -> String {
        self.engine.render_metrics(&mut self.io)
    }

    /// The value of one series of `/metrics` (0 when absent).
    pub fn metric(&mut self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap_or(0.0))
    }

    /// `/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        self.engine.status_json(self.now)
    }
}

pub fn parse(json: &str) -> Config {
    config::parse(json.as_bytes(), None).unwrap_or_else(|e| panic!("config: {e}\n{json}"))
}

// ---- Redis -----------------------------------------------------------------------

/// A Redis 6 server's refusal of `HELLO 3`: the session goes on in RESP2.
pub const NO_HELLO: &[u8] = b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n";

pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `subscribe` confirmations for `channels` (RESP2).
pub fn subscribed(channels: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, channel) in channels.iter().enumerate() {
        out.extend_from_slice(b"*3\r\n");
        bulk(&mut out, b"subscribe");
        bulk(&mut out, channel.as_bytes());
        out.extend_from_slice(format!(":{}\r\n", n + 1).as_bytes());
    }
    out
}

/// A published message (RESP2).
pub fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = b"*3\r\n".to_vec();
    bulk(&mut out, b"message");
    bulk(&mut out, channel.as_bytes());
    bulk(&mut out, payload);
    out
}

/// Connects a Redis source's latest connection and subscribes it to `channels`.
pub fn redis_up(sim: &mut Sim, address: &str, channels: &[&str]) -> ConnId {
    let conn = sim.last_connect(address);
    sim.connected(conn);
    assert!(
        contains(&sim.written(conn), b"HELLO"),
        "the session starts with HELLO"
    );
    sim.feed(conn, NO_HELLO);
    sim.written(conn);
    sim.feed(conn, &subscribed(channels));
    conn
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- FastCGI ---------------------------------------------------------------------

/// The request id of the first record ferry wrote on a worker connection.
pub fn request_id(request: &[u8]) -> u16 {
    assert!(request.len() >= 8, "a request was written");
    u16::from_be_bytes([request[2], request[3]])
}

/// A php-fpm answer: `head` (CGI headers and body) and END_REQUEST.
pub fn answer(request_id: u16, head: &str, app_status: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, RecordType::Stdout, request_id, head.as_bytes()).unwrap();
    let mut end = app_status.to_be_bytes().to_vec();
    end.extend_from_slice(&[0, 0, 0, 0]);
    encode_record(&mut out, RecordType::EndRequest, request_id, &end).unwrap();
    out
}

/// The worker connection of `pool_address` that was opened last: connects it and
/// checks a request was written; returns it with the request id.
pub fn worker_takes(sim: &mut Sim, pool_address: &str) -> (ConnId, u16) {
    let conn = sim.last_connect(pool_address);
    sim.connected(conn);
    let request = sim.written(conn);
    (conn, request_id(&request))
}

/// The worker on `conn` answers request `id` with `status`.
pub fn worker_answers(sim: &mut Sim, conn: ConnId, id: u16, status: u16) {
    let head = format!("Status: {status}\r\nContent-Type: text/plain\r\n\r\nok");
    sim.feed(conn, &answer(id, &head, 0));
}

// ---- AMQP ------------------------------------------------------------------------

/// What ferry said to the broker, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Ack {
        tag: u64,
        multiple: bool,
    },
    Nack {
        tag: u64,
        requeue: bool,
    },
    Reject {
        tag: u64,
        requeue: bool,
    },
    Publish {
        exchange: String,
        routing_key: String,
    },
    Cancel,
    Consume,
    Close,
    Other(&'static str),
}

/// Decodes ferry's frames to AMQP broker: methods with channel.
pub fn said(bytes: &[u8]) -> Vec<(u16, Said)> {
    let mut rest = bytes;
    let mut out = Vec::new();
    if rest.starts_with(b"AMQP") {
        rest = &rest[8..];
    }
    while !rest.is_empty() {
        let Ok(Status::Complete(frame, used)) = decode_frame(rest, u32::MAX) else {
            panic!("ferry sent a broken frame");
        };
        if let FramePayload::Method(payload) = frame.payload {
            let said = match Method::decode(payload).unwrap() {
                Method::BasicAck(m) => Said::Ack {
                    tag: m.delivery_tag,
                    multiple: m.multiple,
                },
                Method::BasicNack(m) => Said::Nack {
                    tag: m.delivery_tag,
                    requeue: m.requeue,
                },
                Method::BasicReject(m) => Said::Reject {
                    tag: m.delivery_tag,
                    requeue: m.requeue,
                },
                Method::BasicPublish(m) => Said::Publish {
                    exchange: String::from_utf8_lossy(m.exchange).into(),
                    routing_key: String::from_utf8_lossy(m.routing_key).into(),
                },
                Method::BasicCancel(_) => Said::Cancel,
                Method::BasicConsume(_) => Said::Consume,
                Method::ConnectionClose(_) => Said::Close,
                other => Said::Other(other.name()),
            };
            out.push((frame.channel, said));
        }
        rest = &rest[used..];
    }
    out
}

fn frame<'a>(channel: u16, method: impl Into<Method<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    amqp::encode_method_frame(&mut out, channel, &method.into(), 131_072).unwrap();
    out
}

/// RabbitMQ's connection.start as captured.
const CONNECTION_START: &[u8] = include_bytes!("../../tests/data/amqp/connection_start.bin");

/// The broker's side of the handshake, up to consume-ok (`publisher`: ferry also opens
/// its confirm channel 2).
pub fn amqp_handshake(queue: &str, consumer_tag: &str, publisher: bool) -> Vec<u8> {
    let mut script = CONNECTION_START.to_vec();
    script.extend(frame(
        0,
        amqp::ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        },
    ));
    script.extend(frame(0, amqp::ConnectionOpenOk { known_hosts: b"" }));
    if publisher {
        script.extend(frame(2, amqp::ChannelOpenOk { channel_id: b"" }));
        script.extend(frame(2, amqp::ConfirmSelectOk {}));
    }
    script.extend(frame(1, amqp::ChannelOpenOk { channel_id: b"" }));
    script.extend(frame(
        1,
        amqp::QueueDeclareOk {
            queue: queue.as_bytes(),
            message_count: 0,
            consumer_count: 0,
        },
    ));
    script.extend(frame(1, amqp::BasicQosOk {}));
    script.extend(frame(
        1,
        amqp::BasicConsumeOk {
            consumer_tag: consumer_tag.as_bytes(),
        },
    ));
    script
}

/// A delivery of `body` with delivery tag `tag`, headers as given.
pub fn delivery(
    consumer_tag: &str,
    queue: &str,
    tag: u64,
    body: &[u8],
    attempt: Option<i64>,
) -> Vec<u8> {
    let mut out = frame(
        1,
        amqp::BasicDeliver {
            consumer_tag: consumer_tag.as_bytes(),
            delivery_tag: tag,
            redelivered: false,
            exchange: b"",
            routing_key: queue.as_bytes(),
        },
    );
    let mut table = amqp::TableBuilder::new();
    if let Some(n) = attempt {
        table
            .insert(b"x-ferry-attempt", amqp::FieldValue::I64(n))
            .unwrap();
    }
    let message_id = format!("m{tag}");
    let props = amqp::BasicProperties {
        message_id: Some(message_id.as_bytes()),
        headers: attempt.map(|_| table.as_table()),
        ..Default::default()
    };
    amqp::encode_content(&mut out, 1, amqp::CLASS_BASIC, &props, body, 131_072).unwrap();
    out
}

/// The broker confirms publish `seq` on the confirm channel.
pub fn confirm(seq: u64) -> Vec<u8> {
    frame(
        2,
        amqp::BasicAck {
            delivery_tag: seq,
            multiple: false,
        },
    )
}

/// An AMQP source consuming `queue` on its latest connection to `address`.
pub fn amqp_up(sim: &mut Sim, address: &str, queue: &str, source: &str, publisher: bool) -> ConnId {
    let conn = sim.last_connect(address);
    sim.connected(conn);
    sim.feed(
        conn,
        &amqp_handshake(queue, &consumer_tag(source), publisher),
    );
    sim.written(conn);
    conn
}

pub fn consumer_tag(source: &str) -> String {
    format!("ferry-{source}-1")
}

/// Redis source `events` (channel `jobs`) and pool `php` at `unix:/php.sock`.
pub const REDIS_CONFIG: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock", "max_in_flight": 2, "keep_conn": false}},
  "sources": [{"name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
               "channels": ["jobs"], "retry_delays_ms": [1000, 5000], "max_attempts": 3,
               "job": {"pool": "php", "script": "/w.php", "body": "raw"}}]
}"#;

/// AMQP source `tasks` (queue `q`) and pool `php` at `unix:/php.sock`.
pub const AMQP_CONFIG: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock", "max_in_flight": 2, "keep_conn": false,
                    "circuit_release_ms": 3000}},
  "sources": [{"name": "tasks", "kind": "amqp", "url": "amqp://guest:guest@127.0.0.1:5672/%2f",
               "queue": "q", "prefetch": 4, "max_attempts": 3, "retry_delays_ms": [1000, 5000],
               "job": {"pool": "php", "script": "/w.php", "body": "raw"}}]
}"#;

pub const REDIS_ADDRESS: &str = "127.0.0.1:6379";
pub const AMQP_ADDRESS: &str = "127.0.0.1:5672";
pub const PHP: &str = "unix:/php.sock";
