//! The RESP cases: the pub/sub subset of Redis, with Redis 7 as the reference behaviour.
//! Sections (`§`) name the pages of the Redis documentation: the Pub/Sub page
//! (`pubsub`), the protocol page (`RESP`), and each command's page.
//!
//! Every case uses fresh connections and channel names with a random suffix, so two runs
//! (or a server with other clients) never meet. Replies are decoded with
//! `ferry::proto::resp` and compared as values; a mismatch shows both.

use std::fmt;
use std::time::{Duration, Instant};

use ferry::config::Address;
use ferry::proto::resp::{decode, encode_command, Frame, Limits};
use ferry::proto::Status;

use super::wire::{Wire, WireError};
use super::{random_suffix, show, Case, CaseResult, Finding};

/// What every case needs.
pub struct Ctx {
    address: Address,
    timeout: Duration,
    suffix: String,
    counter: u32,
}

impl Ctx {
    /// Context for `host:port` (or `unix:/path`).
    pub fn new(target: &str, timeout: Duration) -> Result<Ctx, String> {
        let target = target.strip_prefix("redis://").unwrap_or(target);
        Ok(Ctx {
            address: Address::parse(target.trim_end_matches('/'))?,
            timeout,
            suffix: random_suffix(),
            counter: 0,
        })
    }

    /// The server answers PING.
    pub fn probe(&mut self, deadline: Instant) -> Result<(), String> {
        let mut client = Client::connect(self, deadline)?;
        match client.call(&[b"PING"])? {
            Val::Simple(_) => Ok(()),
            other => Err(format!("PING answered {other}")),
        }
    }

    /// A channel name no one else uses.
    fn channel(&mut self, what: &str) -> Vec<u8> {
        self.counter += 1;
        format!(
            "conform:{}:{}{what}",
            self.suffix.get(..8).unwrap_or(&self.suffix),
            self.counter
        )
        .into_bytes()
    }

    fn quiet(&self) -> Duration {
        (self.timeout / 4).min(Duration::from_millis(300))
    }
}

/// A decoded reply, owned.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Val>),
    Push(Vec<Val>),
    Map(Vec<(Val, Val)>),
    Other(String),
}

impl Val {
    fn from_frame(frame: &Frame<'_>) -> Val {
        match *frame {
            Frame::SimpleString(s) => Val::Simple(s.to_vec()),
            Frame::Error(s) | Frame::BulkError(s) => Val::Error(s.to_vec()),
            Frame::Integer(i) => Val::Int(i),
            Frame::BulkString(s) => Val::Bulk(s.to_vec()),
            Frame::NullBulk | Frame::NullArray | Frame::Null => Val::Null,
            Frame::Array(a) | Frame::Set(a) => {
                Val::Array(a.iter().map(|f| Val::from_frame(&f)).collect())
            }
            Frame::Push(a) => Val::Push(a.iter().map(|f| Val::from_frame(&f)).collect()),
            Frame::Map(a) => Val::Map(
                a.pairs()
                    .map(|(k, v)| (Val::from_frame(&k), Val::from_frame(&v)))
                    .collect(),
            ),
            Frame::Verbatim { text, .. } => Val::Bulk(text.to_vec()),
            Frame::Boolean(b) => Val::Other(format!("#{b}")),
            Frame::Double(d) => Val::Other(format!(",{d}")),
            Frame::BigNumber(n) => Val::Other(format!("({}", show(n, 40))),
            Frame::Attribute(_) => Val::Other("|attribute".into()),
        }
    }

    /// The elements of a pub/sub frame: an array (RESP2) or a push (RESP3).
    fn elements(&self) -> Option<&[Val]> {
        match self {
            Val::Array(items) | Val::Push(items) => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, open: &str, items: &[Val]| {
            f.write_str(open)?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            f.write_str("]")
        };
        match self {
            Val::Simple(s) => write!(f, "+{}", show(s, 80)),
            Val::Error(s) => write!(f, "-{}", show(s, 160)),
            Val::Int(i) => write!(f, ":{i}"),
            Val::Bulk(s) => write!(f, "\"{}\"", show(s, 60)),
            Val::Null => f.write_str("null"),
            Val::Array(items) => list(f, "[", items),
            Val::Push(items) => list(f, ">[", items),
            Val::Map(pairs) => {
                f.write_str("%{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Val::Other(text) => f.write_str(text),
        }
    }
}

fn bulk(bytes: impl AsRef<[u8]>) -> Val {
    Val::Bulk(bytes.as_ref().to_vec())
}

/// `[kind, name, count]` as a RESP2 array.
fn confirm(kind: &str, name: &[u8], count: i64) -> Val {
    Val::Array(vec![bulk(kind), bulk(name), Val::Int(count)])
}

fn message(channel: &[u8], payload: &[u8]) -> Val {
    Val::Array(vec![bulk("message"), bulk(channel), bulk(payload)])
}

fn push(val: Val) -> Val {
    match val {
        Val::Array(items) => Val::Push(items),
        other => other,
    }
}

fn list(vals: &[Val]) -> String {
    if vals.is_empty() {
        return "nothing".into();
    }
    vals.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One client connection.
struct Client {
    wire: Wire,
}

impl Client {
    fn connect(ctx: &Ctx, deadline: Instant) -> Result<Client, String> {
        Wire::connect(&ctx.address, deadline)
            .map(|wire| Client { wire })
            .map_err(|e| format!("connect: {e}"))
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut out = Vec::new();
        encode_command(&mut out, args.iter());
        self.wire.send(&out).map_err(String::from)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wire.send(bytes).map_err(String::from)
    }

    fn read(&mut self) -> Result<Val, WireError> {
        self.wire.next(decode_val)
    }

    fn read_until(&mut self, until: Instant) -> Result<Val, WireError> {
        self.wire.next_until(until, decode_val)
    }

    /// `n` replies; the error says what came before the one that did not.
    fn read_n(&mut self, n: usize) -> Result<Vec<Val>, String> {
        let mut vals = Vec::with_capacity(n);
        for _ in 0..n {
            match self.read() {
                Ok(val) => vals.push(val),
                Err(e) => return Err(format!("after {}: {e}", list(&vals))),
            }
        }
        Ok(vals)
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Val, String> {
        self.send(args)?;
        self.read().map_err(String::from)
    }

    /// Whatever arrives within `quiet` (for "nothing more" checks).
    fn drain(&mut self, quiet: Duration) -> Vec<Val> {
        let until = Instant::now() + quiet;
        let mut vals = Vec::new();
        while let Ok(val) = self.read_until(until) {
            vals.push(val);
        }
        vals
    }
}

fn decode_val(buf: &[u8]) -> Result<Option<(Val, usize)>, String> {
    match decode(buf, &Limits::default()) {
        Ok(Status::Complete(frame, used)) => Ok(Some((Val::from_frame(&frame), used))),
        Ok(Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Pass when `got` equals `want`, else fail showing both.
fn expect(got: &[Val], want: &[Val]) -> Finding {
    if got == want {
        Finding::pass(list(got))
    } else {
        Finding::fail(format!("expected {}, got {}", list(want), list(got)))
    }
}

fn subscribe_confirmations(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (a, b, c) = (ctx.channel("a"), ctx.channel("b"), ctx.channel("c"));
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a, &b, &c])?;
    let got = client.read_n(3)?;
    let mut got = got;
    got.extend(client.drain(ctx.quiet()));
    Ok(expect(
        &got,
        &[
            confirm("subscribe", &a, 1),
            confirm("subscribe", &b, 2),
            confirm("subscribe", &c, 3),
        ],
    ))
}

fn subscribe_twice(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a, &a])?;
    let got = client.read_n(2)?;
    Ok(expect(
        &got,
        &[confirm("subscribe", &a, 1), confirm("subscribe", &a, 1)],
    ))
}

fn psubscribe_confirmations(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut p = ctx.channel("p");
    p.push(b'*');
    let mut q = ctx.channel("q");
    q.push(b'?');
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"PSUBSCRIBE", &p, &q])?;
    let got = client.read_n(2)?;
    Ok(expect(
        &got,
        &[confirm("psubscribe", &p, 1), confirm("psubscribe", &q, 2)],
    ))
}

fn count_channels_and_patterns(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut p = ctx.channel("p");
    p.push(b'*');
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"PSUBSCRIBE", &p])?;
    client.send(&[b"UNSUBSCRIBE", &a])?;
    let got = client.read_n(3)?;
    Ok(expect(
        &got,
        &[
            confirm("subscribe", &a, 1),
            confirm("psubscribe", &p, 2),
            confirm("unsubscribe", &a, 1),
        ],
    ))
}

fn unsubscribe_named(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (a, b, z) = (ctx.channel("a"), ctx.channel("b"), ctx.channel("never"));
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a, &b])?;
    client.send(&[b"UNSUBSCRIBE", &a, &z])?;
    let got = client.read_n(4)?;
    Ok(expect(
        &got,
        &[
            confirm("subscribe", &a, 1),
            confirm("subscribe", &b, 2),
            confirm("unsubscribe", &a, 1),
            confirm("unsubscribe", &z, 1),
        ],
    ))
}

fn unsubscribe_all(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let (a, b) = (ctx.channel("a"), ctx.channel("b"));
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a, &b])?;
    client.read_n(2)?;
    client.send(&[b"UNSUBSCRIBE"])?;
    let got = client.read_n(2)?;
    // One frame per channel, in no particular order; the counts go down to 0.
    let names: Vec<Option<&Val>> = got
        .iter()
        .map(|v| v.elements().and_then(|e| e.get(1)))
        .collect();
    let counts: Vec<Option<&Val>> = got
        .iter()
        .map(|v| v.elements().and_then(|e| e.get(2)))
        .collect();
    let kinds_ok = got
        .iter()
        .all(|v| v.elements().and_then(|e| e.first()) == Some(&bulk("unsubscribe")));
    let names_ok = names.contains(&Some(&bulk(&a))) && names.contains(&Some(&bulk(&b)));
    let counts_ok = counts == [Some(&Val::Int(1)), Some(&Val::Int(0))];
    let shown = list(&got);
    Ok(if kinds_ok && names_ok && counts_ok {
        Finding::pass(shown)
    } else {
        Finding::fail(format!(
            "expected one unsubscribe frame per channel with counts 1 then 0, got {shown}"
        ))
    })
}

fn unsubscribe_nothing(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"UNSUBSCRIBE"])?;
    let mut got = client.read_n(1)?;
    got.extend(client.drain(ctx.quiet()));
    Ok(expect(
        &got,
        &[Val::Array(vec![
            bulk("unsubscribe"),
            Val::Null,
            Val::Int(0),
        ])],
    ))
}

fn punsubscribe_nothing(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"PUNSUBSCRIBE"])?;
    let mut got = client.read_n(1)?;
    got.extend(client.drain(ctx.quiet()));
    Ok(expect(
        &got,
        &[Val::Array(vec![
            bulk("punsubscribe"),
            Val::Null,
            Val::Int(0),
        ])],
    ))
}

fn punsubscribe_named(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut p = ctx.channel("p");
    p.push(b'*');
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"PSUBSCRIBE", &p])?;
    client.send(&[b"PUNSUBSCRIBE", &p])?;
    let got = client.read_n(2)?;
    Ok(expect(
        &got,
        &[confirm("psubscribe", &p, 1), confirm("punsubscribe", &p, 0)],
    ))
}

fn subscribe_without_channel(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut client = Client::connect(ctx, deadline)?;
    let got = client.call(&[b"SUBSCRIBE"])?;
    Ok(expect(
        &[got],
        &[Val::Error(
            b"ERR wrong number of arguments for 'subscribe' command".to_vec(),
        )],
    ))
}

fn resp2_ping_subscribed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"PING"])?;
    client.send(&[b"PING", b"hi"])?;
    let got = client.read_n(3)?;
    Ok(expect(
        &got,
        &[
            confirm("subscribe", &a, 1),
            Val::Array(vec![bulk("pong"), bulk("")]),
            Val::Array(vec![bulk("pong"), bulk("hi")]),
        ],
    ))
}

fn resp2_command_refused_subscribed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"ECHO", b"x"])?;
    client.send(&[b"PUBLISH", &a, b"x"])?;
    let got = client.read_n(3)?;
    let refusal = |cmd: &str| {
        Val::Error(
            format!(
                "ERR Can't execute '{cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )
            .into_bytes(),
        )
    };
    Ok(expect(
        &got,
        &[
            confirm("subscribe", &a, 1),
            refusal("echo"),
            refusal("publish"),
        ],
    ))
}

fn resp2_context_left(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"UNSUBSCRIBE", &a])?;
    client.send(&[b"ECHO", b"back"])?;
    client.send(&[b"PING"])?;
    let got = client.read_n(4)?;
    Ok(expect(
        &got,
        &[
            confirm("subscribe", &a, 1),
            confirm("unsubscribe", &a, 0),
            bulk("back"),
            Val::Simple(b"PONG".to_vec()),
        ],
    ))
}

/// Sends `HELLO 3` and checks the reply is a map saying `proto` 3.
fn hello3(client: &mut Client) -> Result<Result<(), Finding>, String> {
    let reply = client.call(&[b"HELLO", b"3"])?;
    let proto = match &reply {
        Val::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| *k == bulk("proto"))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    Ok(match proto {
        Some(Val::Int(3)) => Ok(()),
        _ => Err(match &reply {
            Val::Error(_) => Finding::not_supported(format!("HELLO 3 answered {reply}")),
            _ => Finding::fail(format!("HELLO 3 answered {reply}, not a map with proto 3")),
        }),
    })
}

fn resp3_hello(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut client = Client::connect(ctx, deadline)?;
    let reply = client.call(&[b"HELLO", b"3"])?;
    let keys: Vec<String> = match &reply {
        Val::Map(pairs) => pairs.iter().map(|(k, _)| k.to_string()).collect(),
        _ => Vec::new(),
    };
    let proto = match &reply {
        Val::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| *k == bulk("proto"))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    Ok(match proto {
        Some(Val::Int(3)) => Finding::pass(format!("a map with keys {}", keys.join(", "))),
        _ if matches!(reply, Val::Error(_)) => {
            Finding::not_supported(format!("HELLO 3 answered {reply}"))
        }
        _ => Finding::fail(format!("HELLO 3 answered {reply}")),
    })
}

fn resp3_push_confirmations(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    if let Err(finding) = hello3(&mut client)? {
        return Ok(finding);
    }
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"UNSUBSCRIBE", &a])?;
    let got = client.read_n(2)?;
    Ok(expect(
        &got,
        &[
            push(confirm("subscribe", &a, 1)),
            push(confirm("unsubscribe", &a, 0)),
        ],
    ))
}

fn resp3_ping_subscribed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    if let Err(finding) = hello3(&mut client)? {
        return Ok(finding);
    }
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"PING"])?;
    let got = client.read_n(2)?;
    Ok(expect(
        &got,
        &[
            push(confirm("subscribe", &a, 1)),
            Val::Simple(b"PONG".to_vec()),
        ],
    ))
}

fn resp3_commands_allowed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    if let Err(finding) = hello3(&mut client)? {
        return Ok(finding);
    }
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"ECHO", b"x"])?;
    let got = client.read_n(2)?;
    Ok(expect(
        &got,
        &[push(confirm("subscribe", &a, 1)), bulk("x")],
    ))
}

fn resp3_message_push(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut subscriber = Client::connect(ctx, deadline)?;
    if let Err(finding) = hello3(&mut subscriber)? {
        return Ok(finding);
    }
    subscriber.send(&[b"SUBSCRIBE", &a])?;
    subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let count = publisher.call(&[b"PUBLISH", &a, b"hello"])?;
    let got = subscriber.read_n(1)?;
    Ok(expect(
        &[count, got.into_iter().next().unwrap_or(Val::Null)],
        &[Val::Int(1), push(message(&a, b"hello"))],
    ))
}

fn message_format(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"SUBSCRIBE", &a])?;
    subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let count = publisher.call(&[b"PUBLISH", &a, b"hello"])?;
    let got = subscriber.read_n(1)?;
    Ok(expect(
        &[count, got.into_iter().next().unwrap_or(Val::Null)],
        &[Val::Int(1), message(&a, b"hello")],
    ))
}

fn pmessage_format(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let base = ctx.channel("p");
    let mut pattern = base.clone();
    pattern.push(b'*');
    let mut channel = base;
    channel.extend_from_slice(b"-x");
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"PSUBSCRIBE", &pattern])?;
    subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let count = publisher.call(&[b"PUBLISH", &channel, b"hello"])?;
    let got = subscriber.read_n(1)?;
    Ok(expect(
        &[count, got.into_iter().next().unwrap_or(Val::Null)],
        &[
            Val::Int(1),
            Val::Array(vec![
                bulk("pmessage"),
                bulk(&pattern),
                bulk(&channel),
                bulk("hello"),
            ]),
        ],
    ))
}

fn channel_and_pattern_both(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let channel = ctx.channel("a");
    let mut pattern = channel.clone();
    pattern.push(b'*');
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"SUBSCRIBE", &channel])?;
    subscriber.send(&[b"PSUBSCRIBE", &pattern])?;
    subscriber.read_n(2)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let count = publisher.call(&[b"PUBLISH", &channel, b"twice"])?;
    let mut got = vec![count];
    got.extend(subscriber.read_n(2)?);
    Ok(expect(
        &got,
        &[
            Val::Int(2),
            message(&channel, b"twice"),
            Val::Array(vec![
                bulk("pmessage"),
                bulk(&pattern),
                bulk(&channel),
                bulk("twice"),
            ]),
        ],
    ))
}

fn publish_receiver_count(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let channel = ctx.channel("a");
    let mut pattern = channel.clone();
    pattern.push(b'*');
    let mut one = Client::connect(ctx, deadline)?;
    one.send(&[b"SUBSCRIBE", &channel])?;
    one.read_n(1)?;
    let mut two = Client::connect(ctx, deadline)?;
    two.send(&[b"SUBSCRIBE", &channel])?;
    two.read_n(1)?;
    let mut three = Client::connect(ctx, deadline)?;
    three.send(&[b"PSUBSCRIBE", &pattern])?;
    three.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let counted = publisher.call(&[b"PUBLISH", &channel, b"x"])?;
    let nobody = ctx.channel("nobody");
    let none = publisher.call(&[b"PUBLISH", &nobody, b"x"])?;
    Ok(expect(&[counted, none], &[Val::Int(3), Val::Int(0)]))
}

/// Subscribes to `pattern` (after the case's prefix) and publishes to each channel
/// (after the prefix): the receiver counts must be `want`.
fn pattern_case(
    ctx: &mut Ctx,
    deadline: Instant,
    pattern: &[u8],
    channels: &[(&[u8], i64)],
) -> CaseResult {
    let prefix = ctx.channel("m-");
    let mut full = prefix.clone();
    full.extend_from_slice(pattern);
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"PSUBSCRIBE", &full])?;
    subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let mut problems = Vec::new();
    let mut said = Vec::new();
    for (suffix, want) in channels {
        let mut channel = prefix.clone();
        channel.extend_from_slice(suffix);
        let got = publisher.call(&[b"PUBLISH", &channel, b"m"])?;
        said.push(format!("{}→{got}", show(suffix, 20)));
        if got != Val::Int(*want) {
            problems.push(format!(
                "'{}' {} '{}'",
                show(pattern, 20),
                if *want == 1 {
                    "should match"
                } else {
                    "should not match"
                },
                show(suffix, 20)
            ));
        }
    }
    Ok(if problems.is_empty() {
        Finding::pass(format!(
            "pattern '{}': {}",
            show(pattern, 20),
            said.join(", ")
        ))
    } else {
        Finding::fail(problems.join("; "))
    })
}

fn pattern_question_mark(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    pattern_case(
        ctx,
        deadline,
        b"h?llo",
        &[(b"hello", 1), (b"hallo", 1), (b"hllo", 0), (b"heello", 0)],
    )
}

fn pattern_star(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    pattern_case(
        ctx,
        deadline,
        b"h*llo",
        &[(b"hllo", 1), (b"heeeello", 1), (b"hello!", 0)],
    )
}

fn pattern_classes(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    pattern_case(
        ctx,
        deadline,
        b"h[ae]l[^x][a-c]",
        &[
            (b"hella", 1),
            (b"hallb", 1),
            (b"hillc", 0),
            (b"helxa", 0),
            (b"helld", 0),
        ],
    )
}

fn pattern_escapes(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    pattern_case(
        ctx,
        deadline,
        b"a\\*b\\?c\\[d",
        &[(b"a*b?c[d", 1), (b"axb?c[d", 0), (b"a*bxc[d", 0)],
    )
}

fn ordering(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"SUBSCRIBE", &a])?;
    subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let mut out = Vec::new();
    for i in 0..200 {
        let payload = i.to_string();
        encode_command(&mut out, [&b"PUBLISH"[..], &a, payload.as_bytes()]);
    }
    publisher.raw(&out)?;
    publisher.read_n(200)?;
    let got = subscriber.read_n(200)?;
    for (i, val) in got.iter().enumerate() {
        let want = message(&a, i.to_string().as_bytes());
        if *val != want {
            return Ok(Finding::fail(format!(
                "message {i}: expected {want}, got {val}"
            )));
        }
    }
    Ok(Finding::pass("200 pipelined PUBLISHes arrived in order"))
}

fn large_payload(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"SUBSCRIBE", &a])?;
    subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    let count = publisher.call(&[b"PUBLISH", &a, &payload])?;
    let got = subscriber.read_n(1)?;
    let intact = got.first() == Some(&message(&a, &payload));
    Ok(if count == Val::Int(1) && intact {
        Finding::pass("a 4 MiB payload arrived intact")
    } else {
        Finding::fail(format!(
            "PUBLISH answered {count}; the message {}",
            if intact {
                "arrived intact"
            } else {
                "did not arrive intact"
            }
        ))
    })
}

fn binary_names(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut a = ctx.channel("a");
    a.extend_from_slice(b"\r\n\x00\xff ");
    let payload = b"\x00\r\n$3\r\n*1\r\n\xfe";
    let mut subscriber = Client::connect(ctx, deadline)?;
    subscriber.send(&[b"SUBSCRIBE", &a])?;
    let mut got = subscriber.read_n(1)?;
    let mut publisher = Client::connect(ctx, deadline)?;
    got.insert(0, publisher.call(&[b"PUBLISH", &a, payload])?);
    got.extend(subscriber.read_n(1)?);
    Ok(expect(
        &got,
        &[
            Val::Int(1),
            confirm("subscribe", &a, 1),
            message(&a, payload),
        ],
    ))
}

fn pipelined(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    let mut out = Vec::new();
    encode_command(&mut out, [&b"ECHO"[..], b"one"]);
    encode_command(&mut out, [&b"PUBLISH"[..], &a, b"x"]);
    encode_command(&mut out, [&b"PING"[..]]);
    encode_command(&mut out, [&b"SUBSCRIBE"[..], &a]);
    encode_command(&mut out, [&b"PING"[..]]);
    encode_command(&mut out, [&b"UNSUBSCRIBE"[..]]);
    encode_command(&mut out, [&b"ECHO"[..], b"two"]);
    client.raw(&out)?;
    let got = client.read_n(7)?;
    Ok(expect(
        &got,
        &[
            bulk("one"),
            Val::Int(0),
            Val::Simple(b"PONG".to_vec()),
            confirm("subscribe", &a, 1),
            Val::Array(vec![bulk("pong"), bulk("")]),
            confirm("unsubscribe", &a, 0),
            bulk("two"),
        ],
    ))
}

fn inline_commands(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let b = ctx.channel("b");
    let mut client = Client::connect(ctx, deadline)?;
    let mut out = b"PING\r\nSUBSCRIBE ".to_vec();
    out.extend_from_slice(&a);
    out.push(b' ');
    out.extend_from_slice(&b);
    out.extend_from_slice(b"\r\nPING inline\r\nUNSUBSCRIBE\r\n");
    client.raw(&out)?;
    let mut got = client.read_n(4)?;
    // The last unsubscribe frames come in no particular order: only the count matters.
    let last = client.read_n(2)?;
    got.extend(last.iter().map(|v| match v.elements() {
        Some([kind, _, count]) => Val::Array(vec![kind.clone(), Val::Null, count.clone()]),
        _ => v.clone(),
    }));
    Ok(expect(
        &got,
        &[
            Val::Simple(b"PONG".to_vec()),
            confirm("subscribe", &a, 1),
            confirm("subscribe", &b, 2),
            Val::Array(vec![bulk("pong"), bulk("inline")]),
            Val::Array(vec![bulk("unsubscribe"), Val::Null, Val::Int(1)]),
            Val::Array(vec![bulk("unsubscribe"), Val::Null, Val::Int(0)]),
        ],
    ))
}

/// `QUIT` (optionally after subscribing): `+OK`, then the server closes.
fn quit_case(ctx: &mut Ctx, deadline: Instant, subscribe: bool) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    let mut want = Vec::new();
    if subscribe {
        client.send(&[b"SUBSCRIBE", &a])?;
        want.push(confirm("subscribe", &a, 1));
    }
    client.send(&[b"QUIT"])?;
    want.push(Val::Simple(b"OK".to_vec()));
    let got = client.read_n(want.len())?;
    if got != want {
        return Ok(expect(&got, &want));
    }
    Ok(if client.wire.closes_by(deadline)? {
        Finding::pass(format!("{}, then the connection closed", list(&got)))
    } else {
        Finding::fail(format!("{}, but the connection stayed open", list(&got)))
    })
}

fn quit(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    quit_case(ctx, deadline, false)
}

fn quit_subscribed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    quit_case(ctx, deadline, true)
}

fn reset_subscribed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut client = Client::connect(ctx, deadline)?;
    if let Err(finding) = hello3(&mut client)? {
        return Ok(finding);
    }
    client.send(&[b"SUBSCRIBE", &a])?;
    client.send(&[b"RESET"])?;
    client.send(&[b"PUBLISH", &a, b"x"])?;
    client.send(&[b"PING"])?;
    let got = client.read_n(4)?;
    // After RESET: RESP2 again (PONG as a simple string, not subscribed any more), and
    // the subscription is gone (PUBLISH reaches no one).
    Ok(expect(
        &got,
        &[
            push(confirm("subscribe", &a, 1)),
            Val::Simple(b"RESET".to_vec()),
            Val::Int(0),
            Val::Simple(b"PONG".to_vec()),
        ],
    ))
}

fn ssubscribe(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let a = ctx.channel("a");
    let mut subscriber = Client::connect(ctx, deadline)?;
    let reply = subscriber.call(&[b"SSUBSCRIBE", &a])?;
    if let Val::Error(text) = &reply {
        if text.starts_with(b"ERR unknown command") {
            return Ok(Finding::not_supported(format!(
                "SSUBSCRIBE answered {reply}"
            )));
        }
    }
    let mut publisher = Client::connect(ctx, deadline)?;
    let count = publisher.call(&[b"SPUBLISH", &a, b"s"])?;
    let mut got = vec![reply, count];
    got.extend(subscriber.read_n(1)?);
    subscriber.send(&[b"SUNSUBSCRIBE", &a])?;
    got.extend(subscriber.read_n(1)?);
    Ok(expect(
        &got,
        &[
            confirm("ssubscribe", &a, 1),
            Val::Int(1),
            Val::Array(vec![bulk("smessage"), bulk(&a), bulk("s")]),
            confirm("sunsubscribe", &a, 0),
        ],
    ))
}

/// The catalogue, in the order the report lists it.
pub fn cases() -> Vec<Case<Ctx>> {
    vec![
        Case { name: "subscribe_confirmations", spec: "§pubsub \"Format of pushed messages\", SUBSCRIBE: one [subscribe, channel, count] per argument, count = subscriptions so far", run: subscribe_confirmations },
        Case { name: "subscribe_same_channel_twice", spec: "§SUBSCRIBE: a channel already subscribed is confirmed again with the count unchanged", run: subscribe_twice },
        Case { name: "psubscribe_confirmations", spec: "§PSUBSCRIBE: one [psubscribe, pattern, count] per pattern", run: psubscribe_confirmations },
        Case { name: "count_is_channels_plus_patterns", spec: "§pubsub \"The meaning of the subscription count with pattern matching\": count = channels + patterns", run: count_channels_and_patterns },
        Case { name: "unsubscribe_named", spec: "§UNSUBSCRIBE: [unsubscribe, channel, count] per argument, also for a channel not subscribed", run: unsubscribe_named },
        Case { name: "unsubscribe_all", spec: "§UNSUBSCRIBE: without arguments, every channel is unsubscribed, one frame each, counts down to 0", run: unsubscribe_all },
        Case { name: "unsubscribe_nothing_subscribed", spec: "§UNSUBSCRIBE (Redis 7 pubsub.c): with nothing subscribed, one [unsubscribe, null, 0]", run: unsubscribe_nothing },
        Case { name: "punsubscribe_nothing_subscribed", spec: "§PUNSUBSCRIBE (Redis 7 pubsub.c): with no pattern, one [punsubscribe, null, 0]", run: punsubscribe_nothing },
        Case { name: "punsubscribe_named", spec: "§PUNSUBSCRIBE: [punsubscribe, pattern, count]", run: punsubscribe_named },
        Case { name: "subscribe_without_channel", spec: "§SUBSCRIBE (arity -2): no channel is an error, \"ERR wrong number of arguments for 'subscribe' command\"", run: subscribe_without_channel },
        Case { name: "resp2_ping_subscribed", spec: "§PING: in the RESP2 subscribed context PING answers [pong, \"\"] (or [pong, argument])", run: resp2_ping_subscribed },
        Case { name: "resp2_command_refused_subscribed", spec: "§pubsub: in the RESP2 subscribed context other commands get \"ERR Can't execute '<cmd>': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\"", run: resp2_command_refused_subscribed },
        Case { name: "resp2_context_left", spec: "§pubsub: with the last subscription gone the connection leaves the subscribed context (ECHO and PING answer normally)", run: resp2_context_left },
        Case { name: "resp3_hello", spec: "§HELLO, §RESP \"RESP3\": HELLO 3 answers a map with proto 3", run: resp3_hello },
        Case { name: "resp3_push_confirmations", spec: "§RESP \"Pushes\": after HELLO 3 subscription confirmations are push frames (>)", run: resp3_push_confirmations },
        Case { name: "resp3_ping_subscribed", spec: "§PING: in RESP3 a subscribed PING answers +PONG", run: resp3_ping_subscribed },
        Case { name: "resp3_commands_allowed_subscribed", spec: "§pubsub: in RESP3 any command may be sent while subscribed", run: resp3_commands_allowed },
        Case { name: "resp3_message_push", spec: "§RESP \"Pushes\": after HELLO 3 a message arrives as >[message, channel, payload]", run: resp3_message_push },
        Case { name: "message_format", spec: "§pubsub \"Format of pushed messages\": [message, channel, payload]", run: message_format },
        Case { name: "pmessage_format", spec: "§pubsub \"Pattern-matching subscriptions\": [pmessage, pattern, channel, payload]", run: pmessage_format },
        Case { name: "channel_and_pattern_both_deliver", spec: "§pubsub \"Messages matching both a pattern and a channel subscription\": the client gets it twice; PUBLISH counts 2", run: channel_and_pattern_both },
        Case { name: "publish_receiver_count", spec: "§PUBLISH: the reply is the number of clients that received the message (channel and pattern subscribers); 0 with none", run: publish_receiver_count },
        Case { name: "pattern_question_mark", spec: "§PSUBSCRIBE, §KEYS glob rules: ? matches exactly one character", run: pattern_question_mark },
        Case { name: "pattern_star", spec: "§PSUBSCRIBE glob rules: * matches any run of characters, also none", run: pattern_star },
        Case { name: "pattern_classes", spec: "§PSUBSCRIBE glob rules: [ae] a class, [^x] a negated class, [a-c] a range", run: pattern_classes },
        Case { name: "pattern_escapes", spec: "§PSUBSCRIBE glob rules: \\ escapes *, ? and [ to match them literally", run: pattern_escapes },
        Case { name: "ordering", spec: "§pubsub \"Delivery semantics\": messages from one publisher reach a subscriber in publishing order", run: ordering },
        Case { name: "large_payload", spec: "§RESP \"Bulk strings\" (binary safe, up to 512 MB): a 4 MiB payload is delivered intact", run: large_payload },
        Case { name: "binary_channel_and_payload", spec: "§RESP \"Bulk strings\": channel names and payloads are binary safe (CR, LF, NUL, 0xFF)", run: binary_names },
        Case { name: "pipelined_commands", spec: "§RESP \"Pipelining\": commands sent in one write are answered in order, across entering and leaving the subscribed context", run: pipelined },
        Case { name: "inline_commands", spec: "§RESP \"Inline commands\": space-separated commands on a line work, SUBSCRIBE and PING included", run: inline_commands },
        Case { name: "quit", spec: "§QUIT: +OK, then the server closes the connection", run: quit },
        Case { name: "quit_subscribed", spec: "§QUIT, §pubsub: QUIT is allowed in the RESP2 subscribed context: +OK, then closed", run: quit_subscribed },
        Case { name: "reset_subscribed", spec: "§RESET: +RESET, subscriptions dropped, back to RESP2 outside the subscribed context", run: reset_subscribed },
        Case { name: "ssubscribe", spec: "§SSUBSCRIBE (Redis 7): [ssubscribe, channel, count], SPUBLISH delivers [smessage, channel, payload]; an unknown command means not supported", run: ssubscribe },
    ]
}
