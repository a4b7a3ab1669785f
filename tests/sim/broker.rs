//! A RabbitMQ model speaking AMQP 0-9-1 with ferry's own codecs (server side): one
//! durable queue `q` dead-lettering to `dead`, the retry queues ferry declares (TTL, then
//! dead-lettered back to `q`), exchange `dlx` routing to `dead`, prefetch, redelivery
//! with `redelivered` when a connection ends, ack / nack / reject, publisher confirms
//! (now and then a nack), mandatory returns, heartbeats both ways, and restarts that
//! keep the durable queues and requeue what was unacked.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry::proto::amqp::{
    self, decode_frame, encode_content, encode_heartbeat, encode_method_frame, BasicProperties,
    FieldValue, FramePayload, Method, TableBuilder, CLASS_BASIC,
};
use ferry::proto::Status;

use crate::ledger::Ledger;
use crate::net::Conn;
use crate::rng::Rng;
use crate::trace::trace;

/// RabbitMQ's connection.start as captured from a real server.
const CONNECTION_START: &[u8] = include_bytes!("../data/amqp/connection_start.bin");
const FRAME_MAX: u32 = 131_072;
pub const QUEUE: &str = "q";
pub const DEAD: &str = "dead";

#[derive(Clone, Debug)]
struct Msg {
    logical: String,
    attempt: Option<u32>,
    failure: Option<String>,
    redelivered: bool,
    expires: Option<Instant>,
}

#[derive(Default)]
struct Queue {
    msgs: BTreeMap<u64, Msg>,
    ttl_ms: Option<u64>,
    dead_letter_to: Option<String>,
}

struct Unacked {
    msg: Msg,
    queue: String,
    order: u64,
    delivery: usize,
}

#[derive(Default)]
struct Publishing {
    exchange: String,
    routing_key: String,
    mandatory: bool,
    header: Option<(Option<String>, Option<u32>, Option<String>)>,
    size: u64,
    body: Vec<u8>,
}

#[derive(Default)]
struct Chan {
    consumer: Option<(String, String)>,
    prefetch: u16,
    next_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    confirm: bool,
    next_seq: u64,
    publishing: Option<Publishing>,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Header,
    Handshake,
    Running,
    Closed,
}

struct BConn {
    phase: Phase,
    inbuf: Vec<u8>,
    heartbeat_s: u16,
    last_heard: Instant,
    last_sent: Instant,
    channels: BTreeMap<u16, Chan>,
    incarnation: u32,
}

/// What the connection does after the broker read it.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Open,
    /// The broker closes it (after close-ok).
    Close,
}

pub struct Broker {
    pub down_until: Option<Instant>,
    queues: BTreeMap<String, Queue>,
    conns: BTreeMap<u64, BConn>,
    next_order: u64,
    /// What connection.tune proposes.
    pub heartbeat_s: u16,
    /// Chance (percent) that a publish is nacked instead of confirmed.
    pub nack_percent: u64,
}

fn method<'a>(out: &mut Vec<u8>, channel: u16, m: impl Into<Method<'a>>) {
    encode_method_frame(out, channel, &m.into(), FRAME_MAX).expect("broker frame");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Broker {
    pub fn new(heartbeat_s: u16, nack_percent: u64) -> Broker {
        let mut queues = BTreeMap::new();
        queues.insert(
            QUEUE.to_string(),
            Queue {
                dead_letter_to: Some(DEAD.to_string()),
                ..Queue::default()
            },
        );
        queues.insert(DEAD.to_string(), Queue::default());
        Broker {
            down_until: None,
            queues,
            conns: BTreeMap::new(),
            next_order: 0,
            heartbeat_s,
            nack_percent,
        }
    }

    pub fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|t| now < t)
    }

    /// The outside world publishes a message to `q`.
    pub fn publish_external(&mut self, logical: &str, ledger: &mut Ledger, now: Instant) {
        ledger.published.push(logical.to_string());
        self.enqueue(
            QUEUE,
            Msg {
                logical: logical.to_string(),
                attempt: None,
                failure: None,
                redelivered: false,
                expires: None,
            },
            now,
        );
    }

    fn enqueue(&mut self, queue: &str, mut msg: Msg, now: Instant) {
        self.next_order += 1;
        let order = self.next_order;
        if let Some(q) = self.queues.get_mut(queue) {
            msg.expires = q.ttl_ms.map(|ms| now + Duration::from_millis(ms));
            q.msgs.insert(order, msg);
        }
    }

    /// A connection completed its TCP connect.
    pub fn accept(&mut self, id: u64, incarnation: u32, now: Instant) {
        self.conns.insert(
            id,
            BConn {
                phase: Phase::Header,
                inbuf: Vec::new(),
                heartbeat_s: 0,
                last_heard: now,
                last_sent: now,
                channels: BTreeMap::new(),
                incarnation,
            },
        );
    }

    /// Messages still in `q` and the retry queues, and deliveries unacked.
    pub fn outstanding(&self) -> usize {
        let queued: usize = self
            .queues
            .iter()
            .filter(|(name, _)| name.as_str() != DEAD)
            .map(|(_, q)| q.msgs.len())
            .sum();
        let unacked: usize = self
            .conns
            .values()
            .flat_map(|c| c.channels.values())
            .map(|ch| ch.unacked.len())
            .sum();
        queued + unacked
    }

    pub fn summary(&self) -> String {
        let queues: Vec<String> = self
            .queues
            .iter()
            .map(|(n, q)| format!("{n}={}", q.msgs.len()))
            .collect();
        let unacked: usize = self
            .conns
            .values()
            .flat_map(|c| c.channels.values())
            .map(|ch| ch.unacked.len())
            .sum();
        format!(
            "broker: queues {} unacked {unacked} connections {}",
            queues.join(" "),
            self.conns.len()
        )
    }

    /// The connection ended (either side, or a reset): unacked deliveries are requeued.
    pub fn conn_gone(&mut self, id: u64, ledger: &mut Ledger) {
        let Some(mut bc) = self.conns.remove(&id) else {
            return;
        };
        for (_, chan) in std::mem::take(&mut bc.channels) {
            self.requeue_channel(chan, ledger);
        }
    }

    fn requeue_channel(&mut self, chan: Chan, ledger: &mut Ledger) {
        for (_, u) in chan.unacked {
            ledger.on_requeued_by_close(u.delivery);
            self.requeue(u);
        }
    }

    fn requeue(&mut self, u: Unacked) {
        let mut msg = u.msg;
        msg.redelivered = true;
        if let Some(q) = self.queues.get_mut(&u.queue) {
            q.msgs.insert(u.order, msg);
        }
    }

    /// The broker reads what ferry wrote on `id`.
    pub fn input(
        &mut self,
        id: u64,
        conn: &mut Conn,
        ledger: &mut Ledger,
        rng: &mut Rng,
        now: Instant,
    ) -> After {
        let bytes = std::mem::take(&mut conn.to_peer);
        let Some(mut bc) = self.conns.remove(&id) else {
            return After::Open;
        };
        bc.inbuf.extend_from_slice(&bytes);
        if !bytes.is_empty() {
            bc.last_heard = now;
        }
        let mut out = Vec::new();
        let mut after = After::Open;
        if bc.phase == Phase::Header {
            if bc.inbuf.len() < 8 {
                self.conns.insert(id, bc);
                return After::Open;
            }
            if &bc.inbuf[..8] != b"AMQP\x00\x00\x09\x01" {
                ledger.violation("broker: ferry did not start with the AMQP 0-9-1 header".into());
                return After::Close;
            }
            bc.inbuf.drain(..8);
            out.extend_from_slice(CONNECTION_START);
            bc.phase = Phase::Handshake;
        }
        let inbuf = std::mem::take(&mut bc.inbuf);
        let mut pos = 0;
        loop {
            let frame = match decode_frame(&inbuf[pos..], FRAME_MAX) {
                Ok(Status::Complete(frame, used)) => {
                    pos += used;
                    frame
                }
                Ok(Status::Partial) => break,
                Err(e) => {
                    ledger.violation(format!("broker: ferry sent a broken frame: {e}"));
                    after = After::Close;
                    break;
                }
            };
            if bc.phase == Phase::Closed {
                continue;
            }
            let channel = frame.channel;
            match frame.payload {
                FramePayload::Heartbeat => {}
                FramePayload::Method(payload) => {
                    let m = match Method::decode(payload) {
                        Ok(m) => m,
                        Err(e) => {
                            ledger.violation(format!("broker: undecodable method: {e}"));
                            after = After::Close;
                            break;
                        }
                    };
                    if let Some(a) =
                        self.on_method(&mut bc, id, channel, m, &mut out, ledger, rng, now)
                    {
                        after = a;
                    }
                }
                FramePayload::Header(header) => {
                    let p = header.properties;
                    let headers = p.headers;
                    let attempt = headers
                        .and_then(|h| h.get(b"x-ferry-attempt"))
                        .and_then(|v| match v {
                            FieldValue::I64(n) => u32::try_from(n).ok(),
                            _ => None,
                        });
                    let failure = headers
                        .and_then(|h| h.get(b"x-ferry-failure"))
                        .and_then(|v| match v {
                            FieldValue::LongStr(s) => Some(text(s)),
                            _ => None,
                        });
                    let message_id = p.message_id.map(text);
                    let mut done = false;
                    if let Some(chan) = bc.channels.get_mut(&channel) {
                        if let Some(pubg) = &mut chan.publishing {
                            pubg.header = Some((message_id, attempt, failure));
                            pubg.size = header.body_size;
                            done = header.body_size == 0;
                        }
                    }
                    if done {
                        self.finish_publish(&mut bc, id, channel, &mut out, ledger, rng, now);
                    }
                }
                FramePayload::BadHeader(_) => {
                    ledger.violation("broker: ferry sent a bad content header".into());
                }
                FramePayload::Body(chunk) => {
                    let mut done = false;
                    if let Some(pubg) = bc
                        .channels
                        .get_mut(&channel)
                        .and_then(|c| c.publishing.as_mut())
                    {
                        pubg.body.extend_from_slice(chunk);
                        done = pubg.body.len() as u64 >= pubg.size;
                    }
                    if done {
                        self.finish_publish(&mut bc, id, channel, &mut out, ledger, rng, now);
                    }
                }
            }
        }
        bc.inbuf = inbuf[pos..].to_vec();
        if !out.is_empty() {
            bc.last_sent = now;
            conn.send(&out);
        }
        if after == After::Open {
            self.conns.insert(id, bc);
        } else {
            for (_, chan) in std::mem::take(&mut bc.channels) {
                self.requeue_channel(chan, ledger);
            }
        }
        after
    }

    #[allow(clippy::too_many_arguments)]
    fn on_method(
        &mut self,
        bc: &mut BConn,
        id: u64,
        channel: u16,
        m: Method<'_>,
        out: &mut Vec<u8>,
        ledger: &mut Ledger,
        rng: &mut Rng,
        now: Instant,
    ) -> Option<After> {
        let _ = rng;
        match m {
            Method::ConnectionStartOk(_) => method(
                out,
                0,
                amqp::ConnectionTune {
                    channel_max: 2047,
                    frame_max: FRAME_MAX,
                    heartbeat: self.heartbeat_s,
                },
            ),
            Method::ConnectionTuneOk(t) => bc.heartbeat_s = t.heartbeat,
            Method::ConnectionOpen(_) => {
                method(out, 0, amqp::ConnectionOpenOk { known_hosts: b"" })
            }
            Method::ConnectionClose(_) => {
                method(out, 0, amqp::ConnectionCloseOk {});
                bc.phase = Phase::Closed;
                return Some(After::Close);
            }
            Method::ConnectionCloseOk(_) => return Some(After::Close),
            Method::ChannelOpen(_) => {
                bc.channels.insert(
                    channel,
                    Chan {
                        next_tag: 1,
                        next_seq: 1,
                        ..Chan::default()
                    },
                );
                bc.phase = Phase::Running;
                method(out, channel, amqp::ChannelOpenOk { channel_id: b"" });
            }
            Method::ChannelClose(_) => {
                if let Some(chan) = bc.channels.remove(&channel) {
                    self.requeue_channel(chan, ledger);
                }
                method(out, channel, amqp::ChannelCloseOk {});
            }
            Method::ChannelCloseOk(_) => {
                if let Some(chan) = bc.channels.remove(&channel) {
                    self.requeue_channel(chan, ledger);
                }
            }
            Method::ConfirmSelect(_) => {
                if let Some(chan) = bc.channels.get_mut(&channel) {
                    chan.confirm = true;
                }
                method(out, channel, amqp::ConfirmSelectOk {});
            }
            Method::QueueDeclare(d) => {
                let name = text(d.queue);
                if d.passive && !self.queues.contains_key(&name) {
                    method(
                        out,
                        channel,
                        amqp::ChannelClose {
                            reply_code: 404,
                            reply_text: b"NOT_FOUND",
                            class_id: 50,
                            method_id: 10,
                        },
                    );
                    return None;
                }
                let ttl = d.arguments.get(b"x-message-ttl").and_then(|v| match v {
                    FieldValue::I64(n) => u64::try_from(n).ok(),
                    _ => None,
                });
                let dl = d
                    .arguments
                    .get(b"x-dead-letter-routing-key")
                    .and_then(|v| match v {
                        FieldValue::LongStr(s) => Some(text(s)),
                        _ => None,
                    });
                let q = self.queues.entry(name.clone()).or_default();
                if !d.passive && ttl.is_some() {
                    q.ttl_ms = ttl;
                    q.dead_letter_to = dl;
                }
                let count = q.msgs.len() as u32;
                method(
                    out,
                    channel,
                    amqp::QueueDeclareOk {
                        queue: d.queue,
                        message_count: count,
                        consumer_count: 0,
                    },
                );
            }
            Method::BasicQos(q) => {
                if let Some(chan) = bc.channels.get_mut(&channel) {
                    chan.prefetch = q.prefetch_count;
                }
                method(out, channel, amqp::BasicQosOk {});
            }
            Method::BasicConsume(c) => {
                if let Some(chan) = bc.channels.get_mut(&channel) {
                    chan.consumer = Some((text(c.queue), text(c.consumer_tag)));
                }
                method(
                    out,
                    channel,
                    amqp::BasicConsumeOk {
                        consumer_tag: c.consumer_tag,
                    },
                );
            }
            Method::BasicCancel(c) => {
                if let Some(chan) = bc.channels.get_mut(&channel) {
                    chan.consumer = None;
                }
                if !c.no_wait {
                    method(
                        out,
                        channel,
                        amqp::BasicCancelOk {
                            consumer_tag: c.consumer_tag,
                        },
                    );
                }
            }
            Method::BasicPublish(p) => {
                if let Some(chan) = bc.channels.get_mut(&channel) {
                    chan.publishing = Some(Publishing {
                        exchange: text(p.exchange),
                        routing_key: text(p.routing_key),
                        mandatory: p.mandatory,
                        ..Publishing::default()
                    });
                }
            }
            Method::BasicAck(a) => {
                // `multiple`: every outstanding tag up to and including this one, which
                // must itself be outstanding (RabbitMQ answers 406 otherwise).
                let mut tags = vec![a.delivery_tag];
                if a.multiple {
                    if let Some(chan) = bc.channels.get(&channel) {
                        if chan.unacked.contains_key(&a.delivery_tag) {
                            tags = chan
                                .unacked
                                .range(..=a.delivery_tag)
                                .map(|(t, _)| *t)
                                .collect();
                        }
                    }
                }
                for tag in tags {
                    self.settle(bc, id, channel, tag, Settle::Ack, out, ledger, now);
                }
            }
            Method::BasicNack(n) => {
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::DeadLetter
                };
                self.settle(bc, id, channel, n.delivery_tag, how, out, ledger, now);
            }
            Method::BasicReject(r) => {
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::DeadLetter
                };
                self.settle(bc, id, channel, r.delivery_tag, how, out, ledger, now);
            }
            other => ledger.violation(format!("broker: unexpected {} from ferry", other.name())),
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        bc: &mut BConn,
        id: u64,
        channel: u16,
        tag: u64,
        how: Settle,
        out: &mut Vec<u8>,
        ledger: &mut Ledger,
        now: Instant,
    ) {
        let Some(u) = bc
            .channels
            .get_mut(&channel)
            .and_then(|c| c.unacked.remove(&tag))
        else {
            ledger.violation(format!(
                "broker: ferry settled ({how:?}) delivery tag {tag} on channel {channel}, which is not outstanding there (RabbitMQ closes the channel: 406 PRECONDITION_FAILED)"
            ));
            method(
                out,
                channel,
                amqp::ChannelClose {
                    reply_code: 406,
                    reply_text: b"PRECONDITION_FAILED - unknown delivery tag",
                    class_id: 60,
                    method_id: 80,
                },
            );
            return;
        };
        trace!(
            "broker: {how:?} {} (tag {tag}, attempt {:?})",
            u.msg.logical,
            u.msg.attempt
        );
        match how {
            Settle::Ack => {
                *ledger.finals_written.entry(bc.incarnation).or_default() += 1;
                ledger.on_ack(u.delivery, id);
            }
            Settle::Requeue => self.requeue(u),
            Settle::DeadLetter => {
                *ledger.finals_written.entry(bc.incarnation).or_default() += 1;
                ledger.on_reject(u.delivery);
                let target = self
                    .queues
                    .get(&u.queue)
                    .and_then(|q| q.dead_letter_to.clone());
                if let Some(target) = target {
                    let mut msg = u.msg;
                    msg.failure = Some("rejected".into());
                    self.enqueue(&target, msg, now);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_publish(
        &mut self,
        bc: &mut BConn,
        id: u64,
        channel: u16,
        out: &mut Vec<u8>,
        ledger: &mut Ledger,
        rng: &mut Rng,
        now: Instant,
    ) {
        let Some(chan) = bc.channels.get_mut(&channel) else {
            return;
        };
        let Some(p) = chan.publishing.take() else {
            return;
        };
        let seq = chan.next_seq;
        chan.next_seq += 1;
        let confirm = chan.confirm;
        let (message_id, attempt, failure) = p.header.clone().unwrap_or_default();
        let logical = message_id.unwrap_or_default();
        if confirm && rng.chance(self.nack_percent) {
            trace!(
                "broker: nacks publish {seq} ({logical} to '{}' '{}')",
                p.exchange,
                p.routing_key
            );
            method(
                out,
                channel,
                amqp::BasicNack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                },
            );
            return;
        }
        // The deliveries this copy may have been made from: held unacked on this connection.
        let held: Vec<usize> = bc
            .channels
            .get(&1)
            .map(|c| {
                c.unacked
                    .values()
                    .filter(|u| u.msg.logical == logical)
                    .map(|u| u.delivery)
                    .collect()
            })
            .unwrap_or_default();
        let target = match p.exchange.as_str() {
            "" if self.queues.contains_key(&p.routing_key) => Some(p.routing_key.clone()),
            "dlx" if p.routing_key == DEAD => Some(DEAD.to_string()),
            _ => None,
        };
        match &target {
            Some(queue) => {
                trace!("broker: publish {seq}: {logical} attempt {attempt:?} to {queue}");
                if held.is_empty() {
                    ledger.violation(format!(
                        "broker: ferry published a copy of {logical} (attempt {attempt:?}) that matches no delivery it holds"
                    ));
                } else if queue == DEAD {
                    ledger.on_dead_letter_copy(&logical, &held, id);
                } else {
                    ledger.on_retry_copy(&logical, &held, attempt.unwrap_or(0), id);
                }
                let msg = Msg {
                    logical: logical.clone(),
                    attempt,
                    failure,
                    redelivered: false,
                    expires: None,
                };
                self.enqueue(queue, msg, now);
            }
            None => {
                trace!(
                    "broker: publish {seq} unroutable ('{}' '{}')",
                    p.exchange,
                    p.routing_key
                );
                if p.mandatory {
                    method(
                        out,
                        channel,
                        amqp::BasicReturn {
                            reply_code: 312,
                            reply_text: b"NO_ROUTE",
                            exchange: b"",
                            routing_key: b"",
                        },
                    );
                    let props = BasicProperties::default();
                    encode_content(out, channel, CLASS_BASIC, &props, &p.body, FRAME_MAX)
                        .expect("content");
                }
            }
        }
        if confirm {
            method(
                out,
                channel,
                amqp::BasicAck {
                    delivery_tag: seq,
                    multiple: false,
                },
            );
        }
    }

    /// Hands out what the consumers may take (prefetch).
    pub fn pump(&mut self, conns: &mut BTreeMap<u64, Conn>, ledger: &mut Ledger, now: Instant) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            if conn.ferry.is_none() || conn.reset || conn.fin {
                continue;
            }
            let mut out = Vec::new();
            let bc = self.conns.get_mut(&id).expect("listed");
            if bc.phase != Phase::Running {
                continue;
            }
            for (channel, chan) in bc.channels.iter_mut() {
                let Some((queue, tag)) = chan.consumer.clone() else {
                    continue;
                };
                while chan.prefetch == 0 || chan.unacked.len() < usize::from(chan.prefetch) {
                    let Some(q) = self.queues.get_mut(&queue) else {
                        break;
                    };
                    let Some((order, msg)) = q.msgs.pop_first() else {
                        break;
                    };
                    let delivery_tag = chan.next_tag;
                    chan.next_tag += 1;
                    method(
                        &mut out,
                        *channel,
                        amqp::BasicDeliver {
                            consumer_tag: tag.as_bytes(),
                            delivery_tag,
                            redelivered: msg.redelivered,
                            exchange: b"",
                            routing_key: queue.as_bytes(),
                        },
                    );
                    let mut table = TableBuilder::new();
                    if let Some(n) = msg.attempt {
                        table
                            .insert(b"x-ferry-attempt", FieldValue::I64(i64::from(n)))
                            .expect("header");
                    }
                    let props = BasicProperties {
                        message_id: Some(msg.logical.as_bytes()),
                        delivery_mode: Some(2),
                        headers: msg.attempt.map(|_| table.as_table()),
                        ..BasicProperties::default()
                    };
                    encode_content(
                        &mut out,
                        *channel,
                        CLASS_BASIC,
                        &props,
                        msg.logical.as_bytes(),
                        FRAME_MAX,
                    )
                    .expect("content");
                    let attempt = msg.attempt.unwrap_or(1);
                    trace!(
                        "broker: deliver {} attempt {attempt} tag {delivery_tag}{}",
                        msg.logical,
                        if msg.redelivered {
                            " (redelivered)"
                        } else {
                            ""
                        }
                    );
                    let delivery = ledger.on_delivery(&msg.logical, attempt);
                    chan.unacked.insert(
                        delivery_tag,
                        Unacked {
                            msg,
                            queue: queue.clone(),
                            order,
                            delivery,
                        },
                    );
                }
            }
            if !out.is_empty() {
                bc.last_sent = now;
                conn.send(&out);
            }
        }
    }

    /// Retry queues expire their heads; heartbeats go out and are checked. Returns the
    /// connections the broker closes for missed heartbeats.
    pub fn on_time(
        &mut self,
        conns: &mut BTreeMap<u64, Conn>,
        ledger: &mut Ledger,
        now: Instant,
    ) -> Vec<u64> {
        let mut expired = Vec::new();
        for q in self.queues.values_mut() {
            while let Some((&order, msg)) = q.msgs.first_key_value() {
                if msg.expires.is_some_and(|t| t <= now) {
                    let msg = q.msgs.remove(&order).expect("first");
                    if let Some(to) = &q.dead_letter_to {
                        expired.push((to.clone(), msg));
                    }
                } else {
                    break;
                }
            }
        }
        for (to, mut msg) in expired {
            msg.expires = None;
            self.enqueue(&to, msg, now);
        }
        let mut dead = Vec::new();
        for (id, bc) in self.conns.iter_mut() {
            if bc.heartbeat_s == 0 || bc.phase == Phase::Header {
                continue;
            }
            let interval = Duration::from_secs(u64::from(bc.heartbeat_s));
            if now >= bc.last_heard + 2 * interval + Duration::from_secs(1) {
                ledger.violation(format!(
                    "broker: no frame from ferry for {} ms (heartbeat {} s): connection closed",
                    (now - bc.last_heard).as_millis(),
                    bc.heartbeat_s
                ));
                dead.push(*id);
                continue;
            }
            if now >= bc.last_sent + interval / 2 {
                if let Some(conn) = conns.get_mut(id) {
                    let mut out = Vec::new();
                    encode_heartbeat(&mut out);
                    conn.send(&out);
                }
                bc.last_sent = now;
            }
        }
        dead
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let expiry = self
            .queues
            .values()
            .filter_map(|q| q.msgs.first_key_value().and_then(|(_, m)| m.expires))
            .min();
        let beats = self
            .conns
            .values()
            .filter(|c| c.heartbeat_s > 0 && c.phase != Phase::Header)
            .map(|c| {
                let interval = Duration::from_secs(u64::from(c.heartbeat_s));
                (c.last_sent + interval / 2)
                    .min(c.last_heard + 2 * interval + Duration::from_secs(1))
            })
            .min();
        [expiry, beats, self.down_until].into_iter().flatten().min()
    }

    /// Every connection id the broker holds.
    pub fn conn_ids(&self) -> Vec<u64> {
        self.conns.keys().copied().collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}
