//! The AMQP cases: AMQP 0-9-1 as RabbitMQ implements it, the consume/ack subset.
//! Sections (`§`) are those of the AMQP 0-9-1 specification (`amqp0-9-1.pdf`, and the
//! class reference `amqp0-9-1.xml` as "§class.method") and of RabbitMQ's documentation
//! (`rabbitmq:page`) for its extensions.
//!
//! Each case opens its own connection with a small blocking client built on
//! `ferry::proto::amqp` (frames, methods, content), declares queues and exchanges with
//! random names (and `x-expires`, so even a killed run leaves nothing for long), and
//! deletes them on a fresh connection when it ends, whatever its verdict.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ferry::config::{Address, AmqpUrl};
use ferry::proto::amqp::{
    decode_frame, encode_content, encode_heartbeat, encode_method_frame, encode_protocol_header,
    BasicAck, BasicConsume, BasicGet, BasicNack, BasicProperties, BasicPublish, BasicQos,
    BasicReject, ChannelClose, ChannelOpen, ConfirmSelect, ConnectionOpen, ConnectionStartOk,
    ConnectionTuneOk, ExchangeDeclare, ExchangeDelete, FieldTable, FieldValue, FramePayload,
    Method, QueueBind, QueueDeclare, QueueDelete, TableBuilder, CLASS_BASIC, FRAME_MIN_SIZE,
};
use ferry::proto::Status;

use super::wire::{Wire, WireError};
use super::{random_suffix, Case, CaseResult, Finding};

/// Largest frame we offer (RabbitMQ's default; 4.1+ refuses tune-ok below 8192).
const FRAME_MAX: u32 = 131_072;
/// The heartbeat cases need two heartbeat intervals of 1 s and some slack, whatever
/// `--timeout-ms` says.
const HEARTBEAT_CASE_TIME: Duration = Duration::from_secs(5);
/// RabbitMQ closes a connection whose tuning it refused 3 s later, silently: that case
/// needs as long as the heartbeat ones.
const REFUSED_TUNING_TIME: Duration = HEARTBEAT_CASE_TIME;
/// The channel a case's queue is filled on (with publisher confirms).
const SETUP_CHANNEL: u16 = 9;

/// What every case needs.
pub struct Ctx {
    url: AmqpUrl,
    timeout: Duration,
    suffix: String,
    counter: u32,
    /// Queues and exchanges the running case declared, deleted when it ends.
    created: Vec<Created>,
}

#[derive(Debug, Clone)]
enum Created {
    Queue(String),
    Exchange(String),
}

impl Ctx {
    /// Context for `amqp://user:pass@host:port/vhost`.
    pub fn new(target: &str, timeout: Duration) -> Result<Ctx, String> {
        Ok(Ctx {
            url: AmqpUrl::parse(target).and_then(|u| {
                if u.tls {
                    Err(crate::publish::PLAIN_ONLY.into())
                } else {
                    Ok(u)
                }
            })?,
            timeout,
            suffix: random_suffix(),
            counter: 0,
            created: Vec::new(),
        })
    }

    /// The URL with its password hidden, for the report.
    pub fn display(&self) -> String {
        self.url.to_string()
    }

    /// The broker takes our credentials and opens the vhost.
    pub fn probe(&mut self, deadline: Instant) -> Result<(), String> {
        Client::open(self, deadline, Tune::default()).map(|(mut c, _)| c.close())
    }

    fn name(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("ferry-conform-{}-{}-{what}", self.suffix, self.counter)
    }

    fn quiet(&self) -> Duration {
        (self.timeout / 4).min(Duration::from_millis(300))
    }

    /// Deletes what the case declared, on a fresh connection.
    fn cleanup(&mut self) {
        let created = std::mem::take(&mut self.created);
        if created.is_empty() {
            return;
        }
        let deadline = Instant::now() + self.timeout.max(Duration::from_secs(2));
        let Ok((mut client, _)) = Client::open(self, deadline, Tune::default()) else {
            // x-expires removes the queues within a minute anyway.
            return;
        };
        for item in created.iter().rev() {
            if client.open_channel(1).is_err() {
                break;
            }
            let _ = match item {
                Created::Queue(name) => client.rpc(
                    1,
                    QueueDelete {
                        queue: name.as_bytes(),
                        ..QueueDelete::default()
                    }
                    .into(),
                    "queue.delete-ok",
                ),
                Created::Exchange(name) => client.rpc(
                    1,
                    ExchangeDelete {
                        exchange: name.as_bytes(),
                        ..ExchangeDelete::default()
                    }
                    .into(),
                    "exchange.delete-ok",
                ),
            };
            let _ = client.close_channel(1);
        }
        client.close();
    }
}

/// What we answer in connection.tune-ok (`None`: take the server's value).
#[derive(Debug, Clone, Copy, Default)]
struct Tune {
    frame_max: Option<u32>,
    channel_max: Option<u16>,
    heartbeat: Option<u16>,
}

/// What the server proposed in connection.tune.
#[derive(Debug, Clone, Copy)]
struct ServerTune {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
}

/// A method we care about, owned.
#[derive(Debug, Clone, PartialEq)]
enum M {
    ChannelClose { code: u16, text: String },
    ConnectionClose { code: u16, text: String },
    DeclareOk { messages: u32 },
    ConsumeOk { tag: Vec<u8> },
    Cancel { tag: Vec<u8> },
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool },
    Other,
}

/// A message (deliver, get-ok or return) with its content.
#[derive(Debug, Clone)]
struct Msg {
    method: &'static str,
    tag: u64,
    redelivered: bool,
    body: Vec<u8>,
    /// `x-death[0].reason` when the message was dead-lettered.
    death_reason: Option<String>,
    /// Largest body frame it came in.
    largest_body_frame: usize,
}

/// Something that came from the broker.
#[derive(Debug, Clone)]
enum In {
    Method {
        channel: u16,
        name: &'static str,
        m: M,
    },
    Message {
        channel: u16,
        msg: Msg,
    },
    Heartbeat,
}

/// A frame decoded into owned parts.
enum Raw {
    Method(Vec<u8>),
    Header {
        body_size: u64,
        death_reason: Option<String>,
    },
    Body(Vec<u8>),
    Heartbeat,
}

fn death_reason(headers: Option<FieldTable<'_>>) -> Option<String> {
    let Some(FieldValue::Array(deaths)) = headers?.get(b"x-death") else {
        return None;
    };
    let Some(FieldValue::Table(first)) = deaths.iter().next() else {
        return Some(String::new());
    };
    match first.get(b"reason") {
        Some(FieldValue::LongStr(reason)) => Some(String::from_utf8_lossy(reason).into_owned()),
        _ => Some(String::new()),
    }
}

/// One connection, blocking.
struct Client {
    wire: Wire,
    frame_max: u32,
    /// Content being assembled per channel: the method, then header and body.
    content: HashMap<u16, (Msg, u64)>,
    inbox: VecDeque<In>,
    closed: Option<String>,
}

impl Client {
    /// Connects, logs in and opens the vhost, answering tune with `tune`.
    fn open(ctx: &Ctx, deadline: Instant, tune: Tune) -> Result<(Client, ServerTune), String> {
        let address = Address::Tcp {
            host: ctx.url.host.clone(),
            port: ctx.url.port,
        };
        let wire = Wire::connect(&address, deadline).map_err(|e| format!("connect: {e}"))?;
        let mut client = Client {
            wire,
            frame_max: FRAME_MIN_SIZE,
            content: HashMap::new(),
            inbox: VecDeque::new(),
            closed: None,
        };
        let mut out = Vec::new();
        encode_protocol_header(&mut out);
        client.wire.send(&out)?;
        client.expect(0, "connection.start")?;
        let response = format!("\0{}\0{}", ctx.url.username, ctx.url.password.expose());
        let properties = TableBuilder::client_properties(
            b"ferry conform",
            env!("CARGO_PKG_VERSION").as_bytes(),
            Some(b"ferry conform"),
        )
        .map_err(|e| e.to_string())?;
        client.send(
            0,
            ConnectionStartOk {
                client_properties: properties.as_table(),
                mechanism: b"PLAIN",
                response: response.as_bytes(),
                locale: b"en_US",
            }
            .into(),
        )?;
        let server = loop {
            let raw = client.wire.next(|buf| decode_raw(buf, FRAME_MIN_SIZE))?;
            let (channel, Raw::Method(payload)) = raw else {
                continue;
            };
            match Method::decode(&payload).map_err(|e| e.to_string())? {
                Method::ConnectionTune(t) => {
                    break ServerTune {
                        channel_max: t.channel_max,
                        frame_max: t.frame_max,
                        heartbeat: t.heartbeat,
                    }
                }
                Method::ConnectionClose(c) => {
                    return Err(format!(
                        "connection.close {} {} during login (channel {channel})",
                        c.reply_code,
                        String::from_utf8_lossy(c.reply_text)
                    ))
                }
                other => return Err(format!("{} instead of connection.tune", other.name())),
            }
        };
        let frame_max = tune.frame_max.unwrap_or(if server.frame_max == 0 {
            FRAME_MAX
        } else {
            server.frame_max.min(FRAME_MAX)
        });
        client.send(
            0,
            ConnectionTuneOk {
                channel_max: tune.channel_max.unwrap_or(server.channel_max),
                frame_max,
                heartbeat: tune.heartbeat.unwrap_or(0),
            }
            .into(),
        )?;
        // Frames we receive from now on may be as large as what we agreed; frames we send
        // are checked against it too (the frame_max case lifts that on purpose).
        client.frame_max = frame_max.max(FRAME_MIN_SIZE);
        client.send(
            0,
            ConnectionOpen {
                virtual_host: ctx.url.vhost.as_bytes(),
                ..ConnectionOpen::default()
            }
            .into(),
        )?;
        client.expect(0, "connection.open-ok")?;
        Ok((client, server))
    }

    fn send(&mut self, channel: u16, method: Method<'_>) -> Result<(), String> {
        let mut out = Vec::new();
        encode_method_frame(&mut out, channel, &method, self.frame_max)
            .map_err(|e| e.to_string())?;
        self.wire.send(&out).map_err(String::from)
    }

    fn publish(
        &mut self,
        channel: u16,
        exchange: &str,
        key: &str,
        body: &[u8],
        mandatory: bool,
    ) -> Result<(), String> {
        let mut out = Vec::new();
        encode_method_frame(
            &mut out,
            channel,
            &BasicPublish {
                exchange: exchange.as_bytes(),
                routing_key: key.as_bytes(),
                mandatory,
                ..BasicPublish::default()
            }
            .into(),
            self.frame_max,
        )
        .map_err(|e| e.to_string())?;
        encode_content(
            &mut out,
            channel,
            CLASS_BASIC,
            &BasicProperties::default(),
            body,
            self.frame_max,
        )
        .map_err(|e| e.to_string())?;
        self.wire.send(&out).map_err(String::from)
    }

    /// The next thing from the broker (the inbox first), before `until`.
    fn next_until(&mut self, until: Instant) -> Result<In, WireError> {
        if let Some(item) = self.inbox.pop_front() {
            return Ok(item);
        }
        loop {
            let frame_max = self.frame_max;
            let (channel, raw) = self
                .wire
                .next_until(until, |buf| decode_raw(buf, frame_max))?;
            match raw {
                Raw::Heartbeat => return Ok(In::Heartbeat),
                Raw::Method(payload) => {
                    let method = Method::decode(&payload)
                        .map_err(|e| WireError::Malformed(e.to_string()))?;
                    let name = method.name();
                    let msg = |tag, redelivered| Msg {
                        method: name,
                        tag,
                        redelivered,
                        body: Vec::new(),
                        death_reason: None,
                        largest_body_frame: 0,
                    };
                    let m = match method {
                        Method::BasicDeliver(d) => {
                            self.content
                                .insert(channel, (msg(d.delivery_tag, d.redelivered), 0));
                            continue;
                        }
                        Method::BasicGetOk(g) => {
                            self.content
                                .insert(channel, (msg(g.delivery_tag, g.redelivered), 0));
                            continue;
                        }
                        Method::BasicReturn(_) => {
                            self.content.insert(channel, (msg(0, false), 0));
                            continue;
                        }
                        Method::ChannelClose(c) => {
                            // Answer close-ok so the channel number can be used again.
                            let _ = self.send(channel, Method::ChannelCloseOk(Default::default()));
                            M::ChannelClose {
                                code: c.reply_code,
                                text: String::from_utf8_lossy(c.reply_text).into_owned(),
                            }
                        }
                        Method::ConnectionClose(c) => {
                            let _ = self.send(0, Method::ConnectionCloseOk(Default::default()));
                            let text = String::from_utf8_lossy(c.reply_text).into_owned();
                            self.closed = Some(format!("{} {text}", c.reply_code));
                            M::ConnectionClose {
                                code: c.reply_code,
                                text,
                            }
                        }
                        Method::QueueDeclareOk(d) => M::DeclareOk {
                            messages: d.message_count,
                        },
                        Method::BasicConsumeOk(c) => M::ConsumeOk {
                            tag: c.consumer_tag.to_vec(),
                        },
                        Method::BasicCancel(c) => M::Cancel {
                            tag: c.consumer_tag.to_vec(),
                        },
                        Method::BasicAck(a) => M::Ack {
                            tag: a.delivery_tag,
                            multiple: a.multiple,
                        },
                        Method::BasicNack(n) => M::Nack {
                            tag: n.delivery_tag,
                            multiple: n.multiple,
                        },
                        _ => M::Other,
                    };
                    return Ok(In::Method { channel, name, m });
                }
                Raw::Header {
                    body_size,
                    death_reason,
                } => {
                    let Some((msg, expected)) = self.content.get_mut(&channel) else {
                        return Err(WireError::Malformed(
                            "a content header without its method".into(),
                        ));
                    };
                    msg.death_reason = death_reason;
                    *expected = body_size;
                    if body_size == 0 {
                        if let Some((msg, _)) = self.content.remove(&channel) {
                            return Ok(In::Message { channel, msg });
                        }
                    }
                }
                Raw::Body(bytes) => {
                    let Some((msg, expected)) = self.content.get_mut(&channel) else {
                        return Err(WireError::Malformed(
                            "a body frame without its method".into(),
                        ));
                    };
                    msg.largest_body_frame = msg.largest_body_frame.max(bytes.len());
                    msg.body.extend_from_slice(&bytes);
                    if msg.body.len() as u64 >= *expected {
                        if let Some((msg, _)) = self.content.remove(&channel) {
                            return Ok(In::Message { channel, msg });
                        }
                    }
                }
            }
        }
    }

    fn next(&mut self) -> Result<In, WireError> {
        let deadline = self.wire.deadline();
        self.next_until(deadline)
    }

    /// Waits for method `name` on `channel`; what else comes is kept for later. A
    /// channel or connection close is the error.
    fn expect(&mut self, channel: u16, name: &str) -> Result<M, String> {
        let mut kept = Vec::new();
        let result = loop {
            let item = match self.next() {
                Ok(item) => item,
                Err(e) => break Err(format!("waiting for {name}: {e}")),
            };
            match item {
                In::Method {
                    channel: c,
                    name: n,
                    m,
                } if c == channel && n == name => break Ok(m),
                In::Method {
                    m: M::ConnectionClose { code, text },
                    ..
                } => {
                    break Err(format!(
                        "waiting for {name}: connection.close {code} {text}"
                    ))
                }
                In::Method {
                    channel: c,
                    m: M::ChannelClose { code, text },
                    ..
                } if c == channel => {
                    break Err(format!("waiting for {name}: channel.close {code} {text}"))
                }
                In::Heartbeat => {}
                other => kept.push(other),
            }
        };
        for item in kept.into_iter().rev() {
            self.inbox.push_front(item);
        }
        result
    }

    fn rpc(&mut self, channel: u16, method: Method<'_>, reply: &str) -> Result<M, String> {
        self.send(channel, method)?;
        self.expect(channel, reply)
    }

    fn open_channel(&mut self, channel: u16) -> Result<(), String> {
        self.rpc(channel, ChannelOpen::default().into(), "channel.open-ok")
            .map(drop)
    }

    fn close_channel(&mut self, channel: u16) -> Result<(), String> {
        self.rpc(
            channel,
            ChannelClose {
                reply_code: 200,
                reply_text: b"bye",
                ..ChannelClose::default()
            }
            .into(),
            "channel.close-ok",
        )
        .map(drop)
    }

    /// connection.close and its close-ok (errors ignored: the case is over).
    fn close(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let sent = self.send(
            0,
            Method::ConnectionClose(ferry::proto::amqp::ConnectionClose {
                reply_code: 200,
                reply_text: b"bye",
                ..Default::default()
            }),
        );
        if sent.is_ok() {
            let _ = self.expect(0, "connection.close-ok");
        }
        self.closed = Some("closed by us".into());
    }

    /// Messages that arrive on `channel` within `quiet` (other things are kept).
    fn messages_within(&mut self, channel: u16, quiet: Duration) -> Vec<Msg> {
        let until = Instant::now() + quiet;
        let mut messages = Vec::new();
        let mut kept = Vec::new();
        while let Ok(item) = self.next_until(until) {
            match item {
                In::Message { channel: c, msg } if c == channel => messages.push(msg),
                In::Heartbeat => {}
                other => kept.push(other),
            }
        }
        self.inbox.extend(kept);
        messages
    }

    /// The next message on `channel` (deliver or get-ok).
    fn message(&mut self, channel: u16) -> Result<Msg, String> {
        let mut kept = Vec::new();
        let result = loop {
            match self.next() {
                Ok(In::Message { channel: c, msg }) if c == channel => break Ok(msg),
                Ok(In::Method {
                    m: M::ChannelClose { code, text } | M::ConnectionClose { code, text },
                    ..
                }) => break Err(format!("closed while waiting for a message: {code} {text}")),
                Ok(In::Heartbeat) => {}
                Ok(other) => kept.push(other),
                Err(e) => break Err(format!("waiting for a message: {e}")),
            }
        };
        self.inbox.extend(kept);
        result
    }

    /// basic.get: `None` for get-empty.
    fn get(&mut self, channel: u16, queue: &str) -> Result<Option<Msg>, String> {
        self.send(
            channel,
            BasicGet {
                queue: queue.as_bytes(),
                no_ack: false,
                ..BasicGet::default()
            }
            .into(),
        )?;
        let mut kept = Vec::new();
        let result = loop {
            match self.next() {
                Ok(In::Message { channel: c, msg })
                    if c == channel && msg.method == "basic.get-ok" =>
                {
                    break Ok(Some(msg))
                }
                Ok(In::Method {
                    channel: c,
                    name: "basic.get-empty",
                    ..
                }) if c == channel => break Ok(None),
                Ok(In::Method {
                    m: M::ChannelClose { code, text } | M::ConnectionClose { code, text },
                    ..
                }) => break Err(format!("basic.get: closed {code} {text}")),
                Ok(In::Heartbeat) => {}
                Ok(other) => kept.push(other),
                Err(e) => break Err(format!("basic.get: {e}")),
            }
        };
        self.inbox.extend(kept);
        result
    }

    fn ack(&mut self, channel: u16, tag: u64, multiple: bool) -> Result<(), String> {
        self.send(
            channel,
            BasicAck {
                delivery_tag: tag,
                multiple,
            }
            .into(),
        )
    }

    fn consume(&mut self, channel: u16, queue: &str, tag: &str) -> Result<(), String> {
        self.rpc(
            channel,
            BasicConsume {
                queue: queue.as_bytes(),
                consumer_tag: tag.as_bytes(),
                ..BasicConsume::default()
            }
            .into(),
            "basic.consume-ok",
        )
        .map(drop)
    }

    fn qos(&mut self, channel: u16, prefetch: u16) -> Result<(), String> {
        self.rpc(
            channel,
            BasicQos {
                prefetch_count: prefetch,
                ..BasicQos::default()
            }
            .into(),
            "basic.qos-ok",
        )
        .map(drop)
    }

    /// Waits for a channel.close on `channel`: its code and text (`None` if none came
    /// within `quiet`).
    fn channel_closed_within(&mut self, channel: u16, quiet: Duration) -> Option<(u16, String)> {
        let until = Instant::now() + quiet;
        let mut kept = Vec::new();
        let mut found = None;
        while let Ok(item) = self.next_until(until) {
            match item {
                In::Method {
                    channel: c,
                    m: M::ChannelClose { code, text },
                    ..
                } if c == channel => {
                    found = Some((code, text));
                    break;
                }
                In::Method {
                    m: M::ConnectionClose { code, text },
                    ..
                } => {
                    found = Some((code, format!("(connection) {text}")));
                    break;
                }
                In::Heartbeat => {}
                other => kept.push(other),
            }
        }
        self.inbox.extend(kept);
        found
    }
}

/// A frame's channel and its owned parts.
type ChannelFrame = (u16, Raw);

fn decode_raw(buf: &[u8], frame_max: u32) -> Result<Option<(ChannelFrame, usize)>, String> {
    match decode_frame(buf, frame_max) {
        Ok(Status::Complete(frame, used)) => {
            let raw = match frame.payload {
                FramePayload::Method(payload) => Raw::Method(payload.to_vec()),
                FramePayload::Header(header) => Raw::Header {
                    body_size: header.body_size,
                    death_reason: death_reason(header.properties.headers),
                },
                FramePayload::BadHeader(bad) => Raw::Header {
                    body_size: bad.body_size,
                    death_reason: None,
                },
                FramePayload::Body(bytes) => Raw::Body(bytes.to_vec()),
                FramePayload::Heartbeat => Raw::Heartbeat,
            };
            Ok(Some(((frame.channel, raw), used)))
        }
        Ok(Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Declares a queue (recorded for cleanup) with `arguments` plus `x-expires`.
fn declare_queue(
    ctx: &mut Ctx,
    client: &mut Client,
    channel: u16,
    what: &str,
    extra: &[(&[u8], FieldValue<'_>)],
) -> Result<String, String> {
    let name = ctx.name(what);
    let mut arguments = TableBuilder::new();
    arguments
        .insert(b"x-expires", FieldValue::I32(60_000))
        .map_err(|e| e.to_string())?;
    for (key, value) in extra {
        arguments.insert(key, *value).map_err(|e| e.to_string())?;
    }
    ctx.created.push(Created::Queue(name.clone()));
    client.rpc(
        channel,
        QueueDeclare {
            queue: name.as_bytes(),
            arguments: arguments.as_table(),
            ..QueueDeclare::default()
        }
        .into(),
        "queue.declare-ok",
    )?;
    Ok(name)
}

fn declare_exchange(
    ctx: &mut Ctx,
    client: &mut Client,
    channel: u16,
    kind: &str,
) -> Result<String, String> {
    let name = ctx.name("x");
    ctx.created.push(Created::Exchange(name.clone()));
    client.rpc(
        channel,
        ExchangeDeclare {
            exchange: name.as_bytes(),
            kind: kind.as_bytes(),
            auto_delete: false,
            ..ExchangeDeclare::default()
        }
        .into(),
        "exchange.declare-ok",
    )?;
    Ok(name)
}

/// Opens a connection with channel 1 and a queue holding `messages` messages.
fn with_queue(
    ctx: &mut Ctx,
    deadline: Instant,
    messages: usize,
) -> Result<(Client, String), String> {
    let (mut client, _) = Client::open(ctx, deadline, Tune::default())?;
    client.open_channel(1)?;
    let queue = declare_queue(ctx, &mut client, 1, "q", &[])?;
    if messages > 0 {
        // Published on a confirm channel of its own: once every publish is confirmed the
        // messages are in the queue (a publish alone is asynchronous).
        client.open_channel(SETUP_CHANNEL)?;
        client.rpc(
            SETUP_CHANNEL,
            ConfirmSelect { no_wait: false }.into(),
            "confirm.select-ok",
        )?;
        for i in 0..messages {
            client.publish(SETUP_CHANNEL, "", &queue, format!("m{i}").as_bytes(), false)?;
        }
        let mut confirmed = 0u64;
        while confirmed < messages as u64 {
            match client.next() {
                Ok(In::Method {
                    channel: SETUP_CHANNEL,
                    m: M::Ack { tag, .. },
                    ..
                }) => confirmed = confirmed.max(tag),
                Ok(In::Method {
                    channel: SETUP_CHANNEL,
                    m: M::Nack { tag, .. },
                    ..
                }) => return Err(format!("setting up: publish {tag} nacked")),
                Ok(_) => {}
                Err(e) => return Err(format!("setting up: waiting for confirms: {e}")),
            }
        }
        client.close_channel(SETUP_CHANNEL)?;
    }
    Ok((client, queue))
}

/// Runs a case body, then deletes what it declared.
fn cleaned(
    ctx: &mut Ctx,
    deadline: Instant,
    body: fn(&mut Ctx, Instant) -> CaseResult,
) -> CaseResult {
    let result = body(ctx, deadline);
    ctx.cleanup();
    result
}

fn tune_proposal(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (mut client, server) = Client::open(ctx, deadline, Tune::default())?;
    client.close();
    let said = format!(
        "connection.tune channel_max {}, frame_max {}, heartbeat {} s",
        server.channel_max, server.frame_max, server.heartbeat
    );
    Ok(
        if server.frame_max == 0 || server.frame_max >= FRAME_MIN_SIZE {
            Finding::pass(said)
        } else {
            Finding::fail(format!("{said}: frame_max below the 4096 minimum"))
        },
    )
}

fn frame_max_lower(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let tune = Tune {
            frame_max: Some(8192),
            ..Tune::default()
        };
        let (mut client, _) = Client::open(ctx, deadline, tune)?;
        client.open_channel(1)?;
        let queue = declare_queue(ctx, &mut client, 1, "q", &[])?;
        let body = vec![b'x'; 20_000];
        client.publish(1, "", &queue, &body, false)?;
        let msg = client
            .get(1, &queue)?
            .ok_or("the message is not in the queue")?;
        client.close();
        Ok(if msg.body == body && msg.largest_body_frame <= 8192 - 8 {
            Finding::pass(format!(
                "tune-ok frame_max 8192 accepted; a 20,000-byte body came in body frames of at most {} bytes",
                msg.largest_body_frame
            ))
        } else {
            Finding::fail(format!(
                "a 20,000-byte body came as {} bytes in frames of up to {} bytes (frame_max 8192)",
                msg.body.len(),
                msg.largest_body_frame
            ))
        })
    })
}

fn frame_max_above_server(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (mut probe, server) = Client::open(ctx, deadline, Tune::default())?;
    probe.close();
    if server.frame_max == 0 {
        return Ok(Finding::not_supported(
            "the server proposed frame_max 0 (no limit): nothing is above it",
        ));
    }
    let above = server.frame_max.saturating_mul(2);
    let deadline = deadline.max(Instant::now() + REFUSED_TUNING_TIME);
    let started = Instant::now();
    match Client::open(
        ctx,
        deadline,
        Tune {
            frame_max: Some(above),
            ..Tune::default()
        },
    ) {
        Ok((mut client, _)) => {
            client.close();
            Ok(Finding::tolerated(format!(
                "tune-ok frame_max {above} above the server's {} was accepted",
                server.frame_max
            )))
        }
        Err(e) if e.contains("closed") => Ok(Finding::pass(format!(
            "tune-ok frame_max {above} refused: {e} (after {} ms)",
            started.elapsed().as_millis()
        ))),
        Err(e) => Ok(Finding::fail(format!("tune-ok frame_max {above}: {e}"))),
    }
}

fn channel_max(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let tune = Tune {
        channel_max: Some(2),
        ..Tune::default()
    };
    let (mut client, _) = Client::open(ctx, deadline, tune)?;
    client.open_channel(1)?;
    client.open_channel(2)?;
    Ok(match client.open_channel(3) {
        Ok(()) => {
            client.close();
            Finding::tolerated("channel_max 2 negotiated, yet channel 3 was opened")
        }
        Err(e) => Finding::pass(format!("channels 1 and 2 opened, channel 3 refused: {e}")),
    })
}

fn heartbeat_sent(ctx: &mut Ctx, _deadline: Instant) -> CaseResult {
    let deadline = Instant::now() + HEARTBEAT_CASE_TIME;
    let tune = Tune {
        heartbeat: Some(1),
        ..Tune::default()
    };
    let (mut client, _) = Client::open(ctx, deadline, tune)?;
    // We keep our side alive (a heartbeat every 500 ms) and count the server's.
    let mut seen = 0;
    let until = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < until {
        let mut out = Vec::new();
        encode_heartbeat(&mut out);
        client.wire.send(&out)?;
        let tick = (Instant::now() + Duration::from_millis(500)).min(until);
        loop {
            match client.next_until(tick) {
                Ok(In::Heartbeat) => seen += 1,
                Ok(_) => {}
                Err(WireError::TimedOut) => break,
                Err(e) => return Ok(Finding::fail(format!("after {seen} heartbeats: {e}"))),
            }
        }
    }
    client.close();
    Ok(if seen >= 2 {
        Finding::pass(format!("heartbeat 1 s: {seen} heartbeat frames from the server in 3 s; the connection stayed open"))
    } else {
        Finding::fail(format!(
            "heartbeat 1 s: {seen} heartbeat frames from the server in 3 s"
        ))
    })
}

fn heartbeat_missed(ctx: &mut Ctx, _deadline: Instant) -> CaseResult {
    let deadline = Instant::now() + HEARTBEAT_CASE_TIME;
    let tune = Tune {
        heartbeat: Some(1),
        ..Tune::default()
    };
    let (mut client, _) = Client::open(ctx, deadline, tune)?;
    let silent_since = Instant::now();
    // We send nothing; the server must give up on us.
    loop {
        match client.next_until(deadline) {
            Ok(In::Method {
                m: M::ConnectionClose { code, text },
                ..
            }) => {
                return Ok(Finding::pass(format!(
                    "connection.close {code} {text} after {} ms of our silence",
                    silent_since.elapsed().as_millis()
                )))
            }
            Ok(_) => {}
            Err(e) if e.is_closed() => {
                return Ok(Finding::pass(format!(
                    "closed the connection after {} ms of our silence (heartbeat 1 s)",
                    silent_since.elapsed().as_millis()
                )))
            }
            Err(WireError::TimedOut) => {
                return Ok(Finding::fail(format!(
                    "still open after {} ms of our silence with heartbeat 1 s",
                    silent_since.elapsed().as_millis()
                )))
            }
            Err(e) => return Ok(Finding::fail(e.to_string())),
        }
    }
}

fn frame_too_large(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let tune = Tune {
            frame_max: Some(8192),
            ..Tune::default()
        };
        let (mut client, _) = Client::open(ctx, deadline, tune)?;
        client.open_channel(1)?;
        let queue = declare_queue(ctx, &mut client, 1, "q", &[])?;
        // One body frame of 10,000 bytes: over the 8192 we agreed on. Encoded with a
        // larger limit on purpose.
        let mut out = Vec::new();
        encode_method_frame(
            &mut out,
            1,
            &BasicPublish {
                routing_key: queue.as_bytes(),
                ..BasicPublish::default()
            }
            .into(),
            FRAME_MAX,
        )
        .map_err(|e| e.to_string())?;
        encode_content(
            &mut out,
            1,
            CLASS_BASIC,
            &BasicProperties::default(),
            &vec![b'x'; 10_000],
            FRAME_MAX,
        )
        .map_err(|e| e.to_string())?;
        let _ = client.wire.send(&out);
        loop {
            match client.next() {
                Ok(In::Method {
                    m: M::ConnectionClose { code: 501, text },
                    ..
                }) => return Ok(Finding::pass(format!("connection.close 501 {text}"))),
                Ok(In::Method {
                    m: M::ConnectionClose { code, text },
                    ..
                }) => {
                    return Ok(Finding::fail(format!(
                        "connection.close {code} {text} (501 FRAME_ERROR expected)"
                    )))
                }
                Ok(_) => {}
                Err(e) if e.is_closed() => {
                    return Ok(Finding::fail(
                        "closed the connection without connection.close 501",
                    ))
                }
                Err(WireError::TimedOut) => {
                    return Ok(Finding::tolerated(
                        "a 10,008-byte frame with frame_max 8192 was accepted",
                    ))
                }
                Err(e) => return Ok(Finding::fail(e.to_string())),
            }
        }
    })
}

fn qos_honoured(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 10)?;
        client.qos(1, 3)?;
        client.consume(1, &queue, "c")?;
        let quiet = ctx.quiet();
        let first = client.messages_within(1, quiet);
        if first.len() != 3 {
            return Ok(Finding::fail(format!(
                "prefetch 3: {} deliveries unacked",
                first.len()
            )));
        }
        let last_tag = first.last().map_or(0, |m| m.tag);
        client.ack(1, first.first().map_or(0, |m| m.tag), false)?;
        let more = client.messages_within(1, quiet);
        client.close();
        Ok(if more.len() == 1 {
            Finding::pass(format!(
                "prefetch 3: 3 deliveries (tags up to {last_tag}), one more after one ack"
            ))
        } else {
            Finding::fail(format!(
                "prefetch 3: after one ack {} more deliveries (1 expected)",
                more.len()
            ))
        })
    })
}

fn qos_prefetch_size(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (mut client, _) = Client::open(ctx, deadline, Tune::default())?;
    client.open_channel(1)?;
    let result = client.rpc(
        1,
        BasicQos {
            prefetch_size: 65_536,
            prefetch_count: 1,
            global: false,
        }
        .into(),
        "basic.qos-ok",
    );
    client.close();
    Ok(match result {
        Ok(_) => Finding::pass("prefetch_size 65536 accepted (basic.qos-ok)"),
        Err(e) if e.contains("540") => Finding::not_supported(e),
        Err(e) => Finding::fail(e),
    })
}

fn redelivered_after_channel_close(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 2)?;
        client.open_channel(2)?;
        client.qos(2, 10)?;
        client.consume(2, &queue, "c")?;
        let first = client.message(2)?;
        let second = client.message(2)?;
        if first.redelivered || second.redelivered {
            return Ok(Finding::fail("first deliveries already marked redelivered"));
        }
        client.close_channel(2)?;
        let again: Vec<Msg> = (0..2)
            .filter_map(|_| client.get(1, &queue).ok().flatten())
            .collect();
        client.close();
        let flagged = again.iter().filter(|m| m.redelivered).count();
        Ok(if again.len() == 2 && flagged == 2 {
            Finding::pass("both unacked messages back in the queue with redelivered=true")
        } else {
            Finding::fail(format!(
                "{} messages back, {flagged} marked redelivered (2 and 2 expected)",
                again.len()
            ))
        })
    })
}

fn reject_requeue(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 1)?;
        let msg = client
            .get(1, &queue)?
            .ok_or("the message is not in the queue")?;
        client.send(
            1,
            BasicReject {
                delivery_tag: msg.tag,
                requeue: true,
            }
            .into(),
        )?;
        let again = client.get(1, &queue)?;
        client.close();
        Ok(match again {
            Some(m) if m.redelivered && m.body == msg.body => Finding::pass(
                "basic.reject requeue=true: the message came back with redelivered=true",
            ),
            Some(m) => Finding::fail(format!("came back with redelivered={}", m.redelivered)),
            None => Finding::fail("basic.reject requeue=true: the queue is empty"),
        })
    })
}

fn reject_discard(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 1)?;
        let msg = client
            .get(1, &queue)?
            .ok_or("the message is not in the queue")?;
        client.send(
            1,
            BasicReject {
                delivery_tag: msg.tag,
                requeue: false,
            }
            .into(),
        )?;
        let again = client.get(1, &queue)?;
        client.close();
        Ok(match again {
            None => Finding::pass(
                "basic.reject requeue=false: the message is gone (no dead-letter exchange)",
            ),
            Some(_) => {
                Finding::fail("basic.reject requeue=false: the message is still in the queue")
            }
        })
    })
}

fn nack_multiple_requeue(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 3)?;
        client.qos(1, 10)?;
        client.consume(1, &queue, "c")?;
        let mut tags = Vec::new();
        for _ in 0..3 {
            tags.push(client.message(1)?.tag);
        }
        let last = tags.last().copied().unwrap_or(0);
        client.send(
            1,
            BasicNack {
                delivery_tag: last,
                multiple: true,
                requeue: true,
            }
            .into(),
        )?;
        let again = client.messages_within(1, ctx.quiet());
        client.close();
        let flagged = again.iter().filter(|m| m.redelivered).count();
        Ok(if again.len() == 3 && flagged == 3 {
            Finding::pass(format!(
                "basic.nack tag {last} multiple requeue: all 3 redelivered with redelivered=true"
            ))
        } else {
            Finding::fail(format!(
                "{} redelivered, {flagged} flagged (3 and 3 expected)",
                again.len()
            ))
        })
    })
}

fn nack_discard(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 2)?;
        let first = client.get(1, &queue)?.ok_or("empty queue")?;
        client.send(
            1,
            BasicNack {
                delivery_tag: first.tag,
                multiple: false,
                requeue: false,
            }
            .into(),
        )?;
        let next = client.get(1, &queue)?;
        let after = client.get(1, &queue)?;
        client.close();
        Ok(match (next, after) {
            (Some(m), None) if m.body != first.body => {
                Finding::pass("basic.nack requeue=false single: that message gone, the other kept")
            }
            (n, a) => Finding::fail(format!(
                "after nack: next {:?}, then {:?}",
                n.map(|m| String::from_utf8_lossy(&m.body).into_owned()),
                a.map(|m| String::from_utf8_lossy(&m.body).into_owned())
            )),
        })
    })
}

fn ack_multiple(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 3)?;
        client.open_channel(2)?;
        client.qos(2, 10)?;
        client.consume(2, &queue, "c")?;
        let mut tags = Vec::new();
        for _ in 0..3 {
            tags.push(client.message(2)?.tag);
        }
        let second = tags.get(1).copied().unwrap_or(0);
        client.ack(2, second, true)?;
        client.close_channel(2)?;
        let left: Vec<Msg> = std::iter::from_fn(|| client.get(1, &queue).ok().flatten())
            .take(4)
            .collect();
        client.close();
        Ok(
            if left.len() == 1 && left.first().is_some_and(|m| m.body == b"m2") {
                Finding::pass(format!(
                    "basic.ack tag {second} multiple acked tags up to it; only the third came back"
                ))
            } else {
                Finding::fail(format!(
                    "{} messages back after acking 2 of 3 with multiple",
                    left.len()
                ))
            },
        )
    })
}

fn ack_unknown_tag(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, _queue) = with_queue(ctx, deadline, 0)?;
        client.ack(1, 999, false)?;
        let closed = client.channel_closed_within(1, ctx.quiet().max(Duration::from_millis(500)));
        client.close();
        Ok(match closed {
            Some((406, text)) => Finding::pass(format!("channel.close 406 {text}")),
            Some((code, text)) => {
                Finding::fail(format!("channel.close {code} {text} (406 expected)"))
            }
            None => Finding::tolerated("basic.ack of an unknown delivery tag was accepted"),
        })
    })
}

fn ack_twice(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 1)?;
        let msg = client.get(1, &queue)?.ok_or("empty queue")?;
        client.ack(1, msg.tag, false)?;
        client.ack(1, msg.tag, false)?;
        let closed = client.channel_closed_within(1, ctx.quiet().max(Duration::from_millis(500)));
        client.close();
        Ok(match closed {
            Some((406, text)) => Finding::pass(format!("second ack: channel.close 406 {text}")),
            Some((code, text)) => {
                Finding::fail(format!("channel.close {code} {text} (406 expected)"))
            }
            None => Finding::tolerated("a second basic.ack of the same tag was accepted"),
        })
    })
}

/// A queue dead-lettering to a fanout exchange, and the queue bound to that exchange.
fn dead_letter_setup(
    ctx: &mut Ctx,
    client: &mut Client,
    extra: &[(&[u8], FieldValue<'_>)],
) -> Result<(String, String), String> {
    let exchange = declare_exchange(ctx, client, 1, "fanout")?;
    let dead = declare_queue(ctx, client, 1, "dlq", &[])?;
    client.rpc(
        1,
        QueueBind {
            queue: dead.as_bytes(),
            exchange: exchange.as_bytes(),
            ..QueueBind::default()
        }
        .into(),
        "queue.bind-ok",
    )?;
    let mut arguments: Vec<(&[u8], FieldValue<'_>)> = vec![(
        b"x-dead-letter-exchange",
        FieldValue::LongStr(exchange.as_bytes()),
    )];
    arguments.extend_from_slice(extra);
    let queue = declare_queue(ctx, client, 1, "q", &arguments)?;
    Ok((queue, dead))
}

fn dead_letter_on_reject(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, _) = Client::open(ctx, deadline, Tune::default())?;
        client.open_channel(1)?;
        let (queue, dead) = dead_letter_setup(ctx, &mut client, &[])?;
        client.publish(1, "", &queue, b"doomed", false)?;
        let msg = wait_for_get(&mut client, &queue, deadline)?
            .ok_or("the message never reached the queue")?;
        client.send(
            1,
            BasicReject {
                delivery_tag: msg.tag,
                requeue: false,
            }
            .into(),
        )?;
        let dead_msg = wait_for_get(&mut client, &dead, deadline)?;
        client.close();
        Ok(match dead_msg {
            Some(m) if m.body == b"doomed" && m.death_reason.as_deref() == Some("rejected") => {
                Finding::pass("rejected without requeue: in the dead-letter queue with x-death reason \"rejected\"")
            }
            Some(m) => Finding::fail(format!("dead-lettered, x-death reason {:?}", m.death_reason)),
            None => Finding::fail("the rejected message never reached the dead-letter queue"),
        })
    })
}

fn dead_letter_on_expiry(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, _) = Client::open(ctx, deadline, Tune::default())?;
        client.open_channel(1)?;
        let (queue, dead) =
            dead_letter_setup(ctx, &mut client, &[(b"x-message-ttl", FieldValue::I32(10))])?;
        client.publish(1, "", &queue, b"stale", false)?;
        let dead_msg = wait_for_get(&mut client, &dead, deadline)?;
        client.close();
        Ok(match dead_msg {
            Some(m) if m.body == b"stale" && m.death_reason.as_deref() == Some("expired") => Finding::pass(
                "expired after x-message-ttl 10 ms: in the dead-letter queue with x-death reason \"expired\"",
            ),
            Some(m) => Finding::fail(format!("dead-lettered, x-death reason {:?}", m.death_reason)),
            None => Finding::fail("the expired message never reached the dead-letter queue"),
        })
    })
}

/// basic.get until a message comes or the deadline passes (routing takes a moment).
fn wait_for_get(
    client: &mut Client,
    queue: &str,
    deadline: Instant,
) -> Result<Option<Msg>, String> {
    loop {
        if let Some(msg) = client.get(1, queue)? {
            return Ok(Some(msg));
        }
        if Instant::now() + Duration::from_millis(20) >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cancel_on_queue_delete(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 0)?;
        client.open_channel(2)?;
        client.consume(2, &queue, "conform-consumer")?;
        client.rpc(
            1,
            QueueDelete {
                queue: queue.as_bytes(),
                ..QueueDelete::default()
            }
            .into(),
            "queue.delete-ok",
        )?;
        let mut cancelled = None;
        let until = Instant::now() + ctx.quiet().max(Duration::from_millis(500));
        while let Ok(item) = client.next_until(until) {
            if let In::Method {
                channel: 2,
                m: M::Cancel { tag },
                ..
            } = item
            {
                cancelled = Some(tag);
                break;
            }
        }
        client.close();
        Ok(match cancelled {
            Some(tag) if tag == b"conform-consumer" => {
                Finding::pass("basic.cancel for our consumer tag after queue.delete")
            }
            Some(tag) => Finding::fail(format!(
                "basic.cancel for tag {}",
                String::from_utf8_lossy(&tag)
            )),
            None => Finding::fail(
                "no basic.cancel after the queue was deleted (consumer_cancel_notify was offered)",
            ),
        })
    })
}

fn publisher_confirms(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    cleaned(ctx, deadline, |ctx, deadline| {
        let (mut client, queue) = with_queue(ctx, deadline, 0)?;
        client.open_channel(2)?;
        client.rpc(
            2,
            ConfirmSelect { no_wait: false }.into(),
            "confirm.select-ok",
        )?;
        for i in 0..3 {
            client.publish(2, "", &queue, format!("c{i}").as_bytes(), false)?;
        }
        let mut confirmed = 0u64;
        let mut said = Vec::new();
        while confirmed < 3 {
            match client.next() {
                Ok(In::Method {
                    channel: 2,
                    m: M::Ack { tag, multiple },
                    ..
                }) => {
                    said.push(format!(
                        "ack {tag}{}",
                        if multiple { " multiple" } else { "" }
                    ));
                    confirmed = confirmed.max(tag);
                }
                Ok(In::Method {
                    channel: 2,
                    m: M::Nack { tag, .. },
                    ..
                }) => {
                    return Ok(Finding::fail(format!(
                        "basic.nack {tag} for a routable message"
                    )))
                }
                Ok(_) => {}
                Err(e) => return Ok(Finding::fail(format!("after {}: {e}", said.join(", ")))),
            }
        }
        client.close();
        Ok(Finding::pass(format!(
            "3 publishes confirmed: {}",
            said.join(", ")
        )))
    })
}

fn confirm_unroutable(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (mut client, _) = Client::open(ctx, deadline, Tune::default())?;
    client.open_channel(1)?;
    client.rpc(
        1,
        ConfirmSelect { no_wait: false }.into(),
        "confirm.select-ok",
    )?;
    let nowhere = ctx.name("nowhere");
    client.publish(1, "", &nowhere, b"lost", true)?;
    let mut order = Vec::new();
    loop {
        match client.next() {
            Ok(In::Message { channel: 1, msg }) if msg.method == "basic.return" => {
                order.push("basic.return".to_string())
            }
            Ok(In::Method {
                channel: 1,
                m: M::Ack { tag, .. },
                ..
            }) => {
                order.push(format!("basic.ack {tag}"));
                break;
            }
            Ok(In::Method {
                channel: 1,
                m: M::Nack { tag, .. },
                ..
            }) => {
                order.push(format!("basic.nack {tag}"));
                break;
            }
            Ok(_) => {}
            Err(e) => return Ok(Finding::fail(format!("after {}: {e}", order.join(", ")))),
        }
    }
    client.close();
    Ok(
        if order.first().map(String::as_str) == Some("basic.return")
            && order.get(1).is_some_and(|s| s.starts_with("basic.ack"))
        {
            Finding::pass(order.join(", "))
        } else {
            Finding::fail(format!(
                "{} (basic.return, then basic.ack expected)",
                order.join(", ")
            ))
        },
    )
}

/// The catalogue, in the order the report lists it.
pub fn cases() -> Vec<Case<Ctx>> {
    vec![
        Case { name: "tune_server_proposal", spec: "§4.2.3, §connection.tune: the server proposes channel_max, frame_max (≥ 4096 or 0) and heartbeat", run: tune_proposal },
        Case { name: "tune_frame_max_lower", spec: "§connection.tune-ok: the client may lower frame_max; the server then sends no frame larger (a 20,000-byte body with frame_max 8192)", run: frame_max_lower },
        Case { name: "tune_frame_max_above_server", spec: "§connection.tune-ok: frame_max must not exceed the server's proposal; a higher value is refused (case time 5 s)", run: frame_max_above_server },
        Case { name: "tune_channel_max", spec: "§connection.tune-ok, §channel.open: with channel_max 2 channels 1–2 open and channel 3 is refused", run: channel_max },
        Case { name: "heartbeat_from_server", spec: "§4.2.7: with heartbeat 1 s the server sends heartbeat frames when it has nothing else to send (case time 5 s)", run: heartbeat_sent },
        Case { name: "heartbeat_missed_closes", spec: "§4.2.7: a peer that hears nothing for two heartbeat intervals closes the connection (case time 5 s)", run: heartbeat_missed },
        Case { name: "frame_over_frame_max", spec: "§4.2.3, §constants frame-error: a frame larger than the negotiated frame_max is a connection error 501 FRAME_ERROR", run: frame_too_large },
        Case { name: "qos_prefetch_honoured", spec: "§basic.qos: prefetch_count 3 — never more than 3 unacked deliveries; one ack lets one more through", run: qos_honoured },
        Case { name: "qos_prefetch_size", spec: "§basic.qos: prefetch_size (octets); RabbitMQ does not implement it (540 NOT_IMPLEMENTED = not supported)", run: qos_prefetch_size },
        Case { name: "redelivered_after_channel_close", spec: "§basic.deliver redelivered, rabbitmq:confirms: unacked messages of a closed channel are requeued and redelivered with redelivered=true", run: redelivered_after_channel_close },
        Case { name: "reject_requeue", spec: "§basic.reject requeue=true: the message goes back to the queue, redelivered=true", run: reject_requeue },
        Case { name: "reject_discard", spec: "§basic.reject requeue=false: the message is discarded (no dead-letter exchange)", run: reject_discard },
        Case { name: "nack_multiple_requeue", spec: "rabbitmq:nack, §basic.nack multiple=true requeue=true: every delivery up to the tag is requeued", run: nack_multiple_requeue },
        Case { name: "nack_discard", spec: "rabbitmq:nack, §basic.nack multiple=false requeue=false: only that message is discarded", run: nack_discard },
        Case { name: "ack_multiple", spec: "§basic.ack multiple=true: acknowledges every delivery up to and including the tag", run: ack_multiple },
        Case { name: "ack_unknown_tag", spec: "§basic.ack, §constants precondition-failed: acking a tag never delivered is a channel error 406", run: ack_unknown_tag },
        Case { name: "ack_twice", spec: "§basic.ack: acking a tag twice is a channel error 406 PRECONDITION_FAILED", run: ack_twice },
        Case { name: "dead_letter_on_reject", spec: "rabbitmq:dlx: a message rejected without requeue goes to x-dead-letter-exchange with x-death reason \"rejected\"", run: dead_letter_on_reject },
        Case { name: "dead_letter_on_expiry", spec: "rabbitmq:dlx, rabbitmq:ttl: a message expired by x-message-ttl goes to the dead-letter exchange with x-death reason \"expired\"", run: dead_letter_on_expiry },
        Case { name: "consumer_cancel_on_queue_delete", spec: "rabbitmq:consumer-cancel: with consumer_cancel_notify, deleting the queue sends basic.cancel with the consumer's tag", run: cancel_on_queue_delete },
        Case { name: "publisher_confirms", spec: "rabbitmq:confirms: after confirm.select every publish is confirmed by basic.ack (sequence from 1, multiple allowed)", run: publisher_confirms },
        Case { name: "confirm_unroutable_mandatory", spec: "rabbitmq:confirms: an unroutable mandatory message gets basic.return before its basic.ack", run: confirm_unroutable },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_death_reason_is_read_from_the_first_entry() {
        let mut death = TableBuilder::new();
        death
            .insert(b"reason", FieldValue::LongStr(b"expired"))
            .unwrap();
        let mut deaths = TableBuilder::new();
        deaths
            .push_value(FieldValue::Table(death.as_table()))
            .unwrap();
        let mut headers = TableBuilder::new();
        headers
            .insert(b"x-death", FieldValue::Array(deaths.as_array()))
            .unwrap();
        assert_eq!(
            death_reason(Some(headers.as_table())).as_deref(),
            Some("expired")
        );
        assert_eq!(death_reason(None), None);
        assert_eq!(death_reason(Some(FieldTable::EMPTY)), None);
    }
}
