//! `ferry publish` (`docs/OPERATIONS.md` "Other commands"): a publishing loop for tests,
//! demos and benchmarks. A blocking client on ferry's own sans-IO sessions: no reactor
//! needed for one connection that only publishes.
//!
//! AMQP messages are persistent, carry a `message_id`, are published `mandatory` on a
//! confirm channel, and the command exits 0 only when the broker confirmed every one
//! (non-zero if any was returned unroutable or nacked). `{n}` in the message becomes its
//! index, 1..=count.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry::config::{AmqpUrl, RedisUrl};
use ferry::proto::amqp::{BasicProperties, DeclareMode, Event, QueueType, Session, SessionConfig};
use ferry::proto::resp::{self, Frame};
use ferry::proto::Status;

use crate::args::{Kind, Parsed};

/// Flags of `ferry publish`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("redis", Kind::Single),
    ("channel", Kind::Single),
    ("stream", Kind::Single),
    ("maxlen", Kind::Single),
    ("amqp", Kind::Single),
    ("queue", Kind::Single),
    ("count", Kind::Single),
    ("rate", Kind::Single),
    ("help", Kind::Switch),
];

/// `ferry publish --help`.
pub const HELP: &str = "\
Usage: ferry publish (--redis URL (--channel NAME | --stream NAME [--maxlen N])
                      | --amqp URL --queue NAME) [--count N] [--rate PER_S] MESSAGE|-

Publishes MESSAGE (or standard input with -) COUNT times (default 1); {n} in the message
becomes its index, 1..=COUNT. AMQP messages are persistent, carry a message_id and are
published mandatory with publisher confirms: the exit code is 0 only when the broker
confirmed every message, 1 if any was returned unroutable or nacked.
The queue is used if it exists, whatever its arguments, and otherwise declared durable.
--stream adds entries with XADD (MAXLEN ~ N with --maxlen): a JSON object message
becomes the entry's fields (strings and numbers as text, other values as JSON); any
other message becomes one field named body.
";

/// What to publish.
struct Plan {
    template: Vec<u8>,
    count: u64,
    rate: Option<f64>,
}

impl Plan {
    fn message(&self, n: u64) -> Vec<u8> {
        let template = &self.template;
        let Some(at) = find(template, b"{n}") else {
            return template.clone();
        };
        let mut out = Vec::with_capacity(template.len() + 8);
        let mut rest = &template[..];
        let mut pos = at;
        loop {
            out.extend_from_slice(&rest[..pos]);
            out.extend_from_slice(n.to_string().as_bytes());
            rest = &rest[pos + 3..];
            match find(rest, b"{n}") {
                Some(next) => pos = next,
                None => break,
            }
        }
        out.extend_from_slice(rest);
        out
    }
}

/// Messages to publish and how fast: what `ferry publish` and `ferry bench` hand to
/// [`publish_redis`] and [`publish_amqp`].
pub struct Outgoing<'a> {
    /// How many messages.
    pub count: u64,
    /// Messages per second at most (`None`: as fast as the broker takes them).
    pub rate: Option<f64>,
    /// The body of message `n` (1..=count), built just before it is sent (so a
    /// timestamp inside it is the publish time).
    pub body: &'a mut dyn FnMut(u64) -> Vec<u8>,
    /// Counts messages written to the broker, for a progress line.
    pub sent: Option<&'a AtomicU64>,
    /// Stops publishing early when set (Ctrl-C in `ferry bench`).
    pub stop: Option<&'a AtomicBool>,
}

impl Outgoing<'_> {
    /// Sleeps until message `i` (0-based) is due under `rate`.
    fn pace(&self, start: Instant, i: u64) {
        if let Some(rate) = self.rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    fn count_sent(&self, n: u64) {
        if let Some(sent) = self.sent {
            sent.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why `ferry publish` failed: exit code 2 for usage, 1 for everything at run time.
pub enum Failure {
    /// Bad flags or arguments.
    Usage(String),
    /// The broker could not be reached or refused.
    Runtime(String),
}

/// Runs `ferry publish`; returns the exit code.
pub fn run(parsed: &Parsed) -> Result<u8, Failure> {
    let usage = Failure::Usage;
    let template = match parsed.positional.as_slice() {
        [one] if one == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Failure::Runtime(format!("reading standard input: {e}")))?;
            buf
        }
        [one] => one.as_bytes().to_vec(),
        [] => {
            return Err(usage(
                "give the MESSAGE to publish (or - for standard input)".into(),
            ))
        }
        _ => return Err(usage("give exactly one MESSAGE (quote it)".into())),
    };
    let count = parsed
        .number::<u64>("count")
        .map_err(|e| usage(e.0))?
        .unwrap_or(1);
    let rate = parsed.number::<f64>("rate").map_err(|e| usage(e.0))?;
    if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(usage("--rate: must be above 0".into()));
    }
    let plan = Plan {
        template,
        count,
        rate,
    };
    let mut body = |n: u64| plan.message(n);
    let mut outgoing = Outgoing {
        count: plan.count,
        rate: plan.rate,
        body: &mut body,
        sent: None,
        stop: None,
    };
    match (parsed.get("redis"), parsed.get("amqp")) {
        (Some(url), None) if parsed.get("stream").is_some() => {
            let stream = parsed.get("stream").unwrap_or_default();
            let maxlen = parsed.number::<u64>("maxlen").map_err(|e| usage(e.0))?;
            let url = plain_redis(url).map_err(|e| usage(format!("--redis: {e}")))?;
            publish_stream(&url, stream, maxlen, &mut outgoing).map_err(Failure::Runtime)?;
            eprintln!("added {count} entries to stream {stream}");
            Ok(0)
        }
        (Some(url), None) => {
            let channel = parsed
                .get("channel")
                .ok_or_else(|| usage("--redis needs --channel NAME or --stream NAME".into()))?;
            let url = plain_redis(url).map_err(|e| usage(format!("--redis: {e}")))?;
            let receivers =
                publish_redis(&url, channel, &mut outgoing).map_err(Failure::Runtime)?;
            eprintln!(
                "published {count} messages to {channel}: {receivers} deliveries to subscribers"
            );
            Ok(0)
        }
        (None, Some(url)) => {
            let queue = parsed
                .get("queue")
                .ok_or_else(|| usage("--amqp needs --queue NAME".into()))?;
            let url = AmqpUrl::parse(url)
                .and_then(|u| if u.tls { Err(PLAIN_ONLY.into()) } else { Ok(u) })
                .map_err(|e| usage(format!("--amqp: {e}")))?;
            let failed = publish_amqp(&url, queue, DeclareMode::IfMissing, &mut outgoing)
                .map_err(Failure::Runtime)?;
            if failed > 0 {
                eprintln!(
                    "published {count} messages to {queue}: {failed} returned unroutable or nacked"
                );
                return Ok(1);
            }
            eprintln!("published {count} messages to {queue}: all confirmed");
            Ok(0)
        }
        _ => Err(usage(
            "give --redis URL --channel NAME or --amqp URL --queue NAME".into(),
        )),
    }
}

/// How long a blocking read or write may wait before the broker is declared stuck: a
/// publisher (or `ferry bench`) must end with an error, never hang.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the first address of `host:port` (blocking is fine in a CLI command).
/// The command-line tools speak plain TCP; TLS is for `ferry run`'s sources.
pub const PLAIN_ONLY: &str = "TLS URLs (rediss://, amqps://) are for ferry run's sources; \
     this command speaks plain TCP (use the server's plain port, or a local tunnel)";

/// A `redis://` URL (a TLS one is refused with [`PLAIN_ONLY`]).
pub fn plain_redis(text: &str) -> Result<RedisUrl, String> {
    let url = RedisUrl::parse(text)?;
    if url.tls {
        return Err(PLAIN_ONLY.into());
    }
    Ok(url)
}

pub fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect((host, port)).map_err(|e| format!("{host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(STALL_TIMEOUT));
    let _ = stream.set_write_timeout(Some(STALL_TIMEOUT));
    Ok(stream)
}

/// Publishes `outgoing` to a Redis channel (or any server that speaks RESP `PUBLISH`,
/// such as ferry's own endpoint); the sum of the receiver counts Redis answered.
pub fn publish_redis(
    url: &RedisUrl,
    channel: &str,
    outgoing: &mut Outgoing<'_>,
) -> Result<i64, String> {
    publish_resp(
        url,
        &|out, message| {
            resp::encode_command(out, [&b"PUBLISH"[..], channel.as_bytes(), message]);
        },
        outgoing,
    )
}

/// Adds `outgoing` as entries of a Redis stream (`XADD`, trimmed with `MAXLEN ~ N`
/// when `maxlen` is given); see the help text for how a message becomes fields.
pub fn publish_stream(
    url: &RedisUrl,
    stream: &str,
    maxlen: Option<u64>,
    outgoing: &mut Outgoing<'_>,
) -> Result<(), String> {
    let maxlen = maxlen.map(|n| n.to_string());
    publish_resp(
        url,
        &|out, message| {
            let mut args: Vec<Vec<u8>> = vec![b"XADD".to_vec(), stream.as_bytes().to_vec()];
            if let Some(n) = &maxlen {
                args.extend([b"MAXLEN".to_vec(), b"~".to_vec(), n.as_bytes().to_vec()]);
            }
            args.push(b"*".to_vec());
            args.extend(entry_fields(message));
            resp::encode_command(out, args.iter());
        },
        outgoing,
    )
    .map(drop)
}

/// A message as stream fields: a JSON object's members (strings as they are, other
/// values as JSON text), else one field `body`.
pub fn entry_fields(message: &[u8]) -> Vec<Vec<u8>> {
    match serde_json::from_slice::<serde_json::Value>(message) {
        Ok(serde_json::Value::Object(members)) if !members.is_empty() => members
            .into_iter()
            .flat_map(|(name, value)| {
                let value = match value {
                    serde_json::Value::String(text) => text.into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                [name.into_bytes(), value]
            })
            .collect(),
        _ => vec![b"body".to_vec(), message.to_vec()],
    }
}

/// Sends one command per message (`command` encodes it), pipelined, and sums the
/// integer replies.
fn publish_resp(
    url: &RedisUrl,
    command: &dyn Fn(&mut Vec<u8>, &[u8]),
    outgoing: &mut Outgoing<'_>,
) -> Result<i64, String> {
    let mut stream = connect(&url.host, url.port)?;
    let mut out = Vec::new();
    let mut expected = 0u64;
    if let Some(password) = &url.password {
        match &url.username {
            Some(user) => resp::encode_command(
                &mut out,
                [&b"AUTH"[..], user.as_bytes(), password.expose().as_bytes()],
            ),
            None => resp::encode_command(&mut out, [&b"AUTH"[..], password.expose().as_bytes()]),
        }
        expected += 1;
    }
    if url.db != 0 {
        resp::encode_command(&mut out, [&b"SELECT"[..], url.db.to_string().as_bytes()]);
        expected += 1;
    }
    let mut replies = Replies::new(stream.try_clone().map_err(|e| e.to_string())?);
    let start = Instant::now();
    let mut receivers = 0i64;
    let paced = outgoing.rate.is_some();
    let mut batched = 0u64;
    for i in 0..outgoing.count {
        if outgoing.stopped() {
            break;
        }
        outgoing.pace(start, i);
        let message = (outgoing.body)(i + 1);
        command(&mut out, &message);
        expected += 1;
        batched += 1;
        let last = i + 1 == outgoing.count;
        // Write in batches; read replies as we go so neither side's buffer fills.
        if out.len() >= 64 * 1024 || paced || last {
            stream.write_all(&out).map_err(|e| format!("redis: {e}"))?;
            out.clear();
            outgoing.count_sent(batched);
            batched = 0;
            while expected > 0 && (paced || last || expected > 1000) {
                receivers += replies.next_integer()?;
                expected -= 1;
            }
        }
    }
    if !out.is_empty() {
        stream.write_all(&out).map_err(|e| format!("redis: {e}"))?;
        outgoing.count_sent(batched);
    }
    while expected > 0 {
        receivers += replies.next_integer()?;
        expected -= 1;
    }
    Ok(receivers)
}

/// Reads RESP replies from a blocking socket.
struct Replies {
    stream: TcpStream,
    buf: Vec<u8>,
    decoder: resp::Decoder,
}

impl Replies {
    fn new(stream: TcpStream) -> Replies {
        Replies {
            stream,
            buf: Vec::new(),
            decoder: resp::Decoder::default(),
        }
    }

    /// The next reply as an integer (`+OK` counts 0); an error reply is an error.
    fn next_integer(&mut self) -> Result<i64, String> {
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(Status::Complete(frame, used)) => {
                    let value = match frame {
                        Frame::Integer(n) => Ok(n),
                        Frame::SimpleString(_) | Frame::BulkString(_) => Ok(0),
                        Frame::Error(text) => {
                            Err(format!("redis: {}", String::from_utf8_lossy(text)))
                        }
                        other => Err(format!("redis: unexpected reply {other:?}")),
                    };
                    self.buf.drain(..used);
                    return value;
                }
                Ok(Status::Partial) => {}
                Err(e) => return Err(format!("redis: {e}")),
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| format!("redis: {e}"))?;
            if n == 0 {
                return Err("redis: connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The AMQP session of a blocking command (`publish`, `bench`, `check`): credentials and
/// vhost from `url`, `queue` declared as `declare`, prefetch 1, 30 s heartbeat, neither
/// publishing nor consuming; each caller sets what it does differently.
pub fn cli_session_config(
    url: &AmqpUrl,
    queue: &str,
    declare: DeclareMode,
    connection_name: &str,
) -> SessionConfig {
    SessionConfig {
        username: url.username.clone(),
        password: url.password.expose().to_string(),
        vhost: url.vhost.clone(),
        queue: queue.to_string(),
        declare,
        queue_type: QueueType::Classic,
        prefetch: 1,
        heartbeat_s: 30,
        max_message_bytes: 16 << 20,
        consumer_tag: String::new(),
        connection_name: Some(connection_name.into()),
        publisher: false,
        consume: false,
    }
}

/// Publishes `outgoing` to an AMQP queue through the default exchange (persistent,
/// `mandatory`, with a `message_id`, on a confirm channel), declaring the queue as
/// `declare` says; how many the broker returned unroutable or nacked.
pub fn publish_amqp(
    url: &AmqpUrl,
    queue: &str,
    declare: DeclareMode,
    outgoing: &mut Outgoing<'_>,
) -> Result<u64, String> {
    let stream = connect(&url.host, url.port)?;
    let config = SessionConfig {
        publisher: true,
        ..cli_session_config(url, queue, declare, "ferry publish")
    };
    let mut client = Blocking::new(stream, Session::new(config, Instant::now()));
    client.wait_for(|event| matches!(event, Event::Ready { .. }))?;
    let id_base = format!(
        "ferry-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = Instant::now();
    let mut unconfirmed = 0u64;
    let mut failed = 0u64;
    for i in 0..outgoing.count {
        if outgoing.stopped() {
            break;
        }
        outgoing.pace(start, i);
        let body = (outgoing.body)(i + 1);
        let message_id = format!("{id_base}-{}", i + 1);
        let properties = BasicProperties {
            delivery_mode: Some(2),
            message_id: Some(message_id.as_bytes()),
            timestamp: Some(timestamp),
            ..BasicProperties::default()
        };
        client
            .session
            .publish("", queue, true, &properties, &body)
            .map_err(|e| format!("amqp: {e}"))?;
        unconfirmed += 1;
        // Under --rate, hand each message to the socket now; otherwise batch them.
        if outgoing.rate.is_some() {
            client.flush()?;
        }
        outgoing.count_sent(1);
        // Keep at most a window of unconfirmed messages in flight.
        while unconfirmed > 1000 {
            let (confirmed, bad) = client.settle_some()?;
            unconfirmed -= confirmed + bad;
            failed += bad;
        }
    }
    while unconfirmed > 0 {
        let (confirmed, bad) = client.settle_some()?;
        unconfirmed -= confirmed + bad;
        failed += bad;
    }
    client.session.close();
    let _ = client.wait_for(|event| matches!(event, Event::Closed));
    Ok(failed)
}

/// Drives a sans-IO AMQP session over a blocking socket.
pub struct Blocking {
    stream: TcpStream,
    /// The session (commands go straight to it; [`Blocking::turn`] moves the bytes).
    pub session: Session,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Blocking {
    /// Wraps a connected socket and a new session.
    pub fn new(stream: TcpStream, session: Session) -> Blocking {
        Blocking {
            stream,
            session,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Writes what the session has to send.
    pub fn flush(&mut self) -> Result<(), String> {
        self.session.poll_transmit(&mut self.out);
        if !self.out.is_empty() {
            self.stream
                .write_all(&self.out)
                .map_err(|e| format!("amqp: {e}"))?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends pending output, reads once (until the session's next deadline or
    /// `max_wait`), feeds it.
    pub fn turn(&mut self) -> Result<(), String> {
        self.turn_within(Duration::from_secs(1))
    }

    /// [`Blocking::turn`], waiting for input at most `max_wait`.
    pub fn turn_within(&mut self, max_wait: Duration) -> Result<(), String> {
        self.flush()?;
        let now = Instant::now();
        let wait = self
            .session
            .poll_timeout()
            .map_or(max_wait, |at| at.saturating_duration_since(now))
            .min(max_wait)
            .max(Duration::from_millis(1));
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.session.handle_eof(Instant::now()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                loop {
                    let used = self
                        .session
                        .handle_input(&self.buf, Instant::now())
                        .map_err(|e| format!("amqp: {e}"))?;
                    if used == 0 {
                        break;
                    }
                    self.buf.drain(..used);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("amqp: {e}")),
        }
        self.session.handle_timeout(Instant::now());
        Ok(())
    }

    /// Turns until an event matching `want` (errors and closes end the wait).
    pub fn wait_for(&mut self, want: impl Fn(&Event) -> bool) -> Result<(), String> {
        loop {
            while let Some(event) = self.session.poll_event() {
                if want(&event) {
                    return Ok(());
                }
                match event {
                    Event::Failed(e) => return Err(format!("amqp: {e}")),
                    Event::Closed => return Err("amqp: connection closed".into()),
                    _ => {}
                }
            }
            self.turn()?;
        }
    }

    /// Turns once and counts confirms (good, bad) among the events.
    fn settle_some(&mut self) -> Result<(u64, u64), String> {
        self.turn()?;
        let (mut good, mut bad) = (0, 0);
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Confirmed(_) => good += 1,
                Event::Nacked(_) | Event::Returned { .. } => bad += 1,
                Event::Failed(e) => return Err(format!("amqp: {e}")),
                Event::Closed => return Err("amqp: connection closed".into()),
                _ => {}
            }
        }
        Ok((good, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_is_the_message_index() {
        let plan = Plan {
            template: br#"{"number": {n}, "again": "{n}"}"#.to_vec(),
            count: 3,
            rate: None,
        };
        assert_eq!(plan.message(12), br#"{"number": 12, "again": "12"}"#);
        let plain = Plan {
            template: b"x".to_vec(),
            count: 1,
            rate: None,
        };
        assert_eq!(plain.message(5), b"x");
    }
}
