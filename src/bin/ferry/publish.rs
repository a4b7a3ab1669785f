//! `ferry publish`: the caller loop of the SPEC ("Commands"), for tests, demos and
//! benchmarks. A blocking client on ferry's own sans-IO sessions: no reactor needed for
//! one connection that only publishes.
//!
//! AMQP messages are persistent, carry a `message_id`, are published `mandatory` on a
//! confirm channel, and the command exits 0 only when the broker confirmed every one
//! (non-zero if any was returned unroutable or nacked). `{n}` in the message becomes its
//! index, 1..=count.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry::config::{AmqpUrl, RedisUrl};
use ferry::proto::amqp::{BasicProperties, DeclareMode, Event, Session, SessionConfig};
use ferry::proto::resp::{self, Frame};
use ferry::proto::Status;

use crate::args::{Kind, Parsed};

/// Flags of `ferry publish`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("redis", Kind::Single),
    ("channel", Kind::Single),
    ("amqp", Kind::Single),
    ("queue", Kind::Single),
    ("count", Kind::Single),
    ("rate", Kind::Single),
    ("help", Kind::Switch),
];

/// `ferry publish --help`.
pub const HELP: &str = "\
Usage: ferry publish (--redis URL --channel NAME | --amqp URL --queue NAME)
                     [--count N] [--rate PER_S] MESSAGE|-

Publishes MESSAGE (or standard input with -) COUNT times (default 1); {n} in the message
becomes its index, 1..=COUNT. AMQP messages are persistent, carry a message_id and are
published mandatory with publisher confirms: the exit code is 0 only when the broker
confirmed every message, 1 if any was returned unroutable or nacked.
The queue is used if it exists, whatever its arguments, and otherwise declared durable.
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

    /// Sleeps until message `i` (0-based) is due under `--rate`.
    fn pace(&self, start: Instant, i: u64) {
        if let Some(rate) = self.rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
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
    match (parsed.get("redis"), parsed.get("amqp")) {
        (Some(url), None) => {
            let channel = parsed
                .get("channel")
                .ok_or_else(|| usage("--redis needs --channel NAME".into()))?;
            let url = RedisUrl::parse(url).map_err(|e| usage(format!("--redis: {e}")))?;
            publish_redis(&url, channel, &plan).map_err(Failure::Runtime)
        }
        (None, Some(url)) => {
            let queue = parsed
                .get("queue")
                .ok_or_else(|| usage("--amqp needs --queue NAME".into()))?;
            let url = AmqpUrl::parse(url).map_err(|e| usage(format!("--amqp: {e}")))?;
            publish_amqp(&url, queue, &plan).map_err(Failure::Runtime)
        }
        _ => Err(usage(
            "give --redis URL --channel NAME or --amqp URL --queue NAME".into(),
        )),
    }
}

/// Connects to the first address of `host:port` (blocking is fine in a CLI command).
fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect((host, port)).map_err(|e| format!("{host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn publish_redis(url: &RedisUrl, channel: &str, plan: &Plan) -> Result<u8, String> {
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
    let mut replies = Replies::new(stream.try_clone().map_err(|e| e.to_string())?);
    let start = Instant::now();
    let mut receivers = 0i64;
    for i in 0..plan.count {
        plan.pace(start, i);
        let message = plan.message(i + 1);
        resp::encode_command(&mut out, [&b"PUBLISH"[..], channel.as_bytes(), &message]);
        expected += 1;
        // Write in batches; read replies as we go so neither side's buffer fills.
        if out.len() >= 64 * 1024 || plan.rate.is_some() || i + 1 == plan.count {
            stream.write_all(&out).map_err(|e| format!("redis: {e}"))?;
            out.clear();
            while expected > 0 && (plan.rate.is_some() || i + 1 == plan.count || expected > 1000) {
                receivers += replies.next_integer()?;
                expected -= 1;
            }
        }
    }
    eprintln!(
        "published {} messages to {channel}: {receivers} deliveries to subscribers",
        plan.count
    );
    Ok(0)
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
                        Frame::SimpleString(_) => Ok(0),
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

fn publish_amqp(url: &AmqpUrl, queue: &str, plan: &Plan) -> Result<u8, String> {
    let stream = connect(&url.host, url.port)?;
    let config = SessionConfig {
        username: url.username.clone(),
        password: url.password.expose().to_string(),
        vhost: url.vhost.clone(),
        queue: queue.to_string(),
        declare: DeclareMode::IfMissing,
        prefetch: 1,
        heartbeat_s: 30,
        max_message_bytes: 16 << 20,
        consumer_tag: String::new(),
        connection_name: Some("ferry publish".into()),
        publisher: true,
        consume: false,
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
    for i in 0..plan.count {
        plan.pace(start, i);
        let body = plan.message(i + 1);
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
        // Keep at most a window of unconfirmed messages in flight.
        while unconfirmed > 1000 || (plan.rate.is_some() && unconfirmed > 0) {
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
    if failed > 0 {
        eprintln!(
            "published {} messages to {queue}: {failed} returned unroutable or nacked",
            plan.count
        );
        return Ok(1);
    }
    eprintln!(
        "published {} messages to {queue}: all confirmed",
        plan.count
    );
    Ok(0)
}

/// Drives a sans-IO AMQP session over a blocking socket.
struct Blocking {
    stream: TcpStream,
    session: Session,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Blocking {
    fn new(stream: TcpStream, session: Session) -> Blocking {
        Blocking {
            stream,
            session,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Sends pending output, reads once (until the session's next deadline), feeds it.
    fn turn(&mut self) -> Result<(), String> {
        self.session.poll_transmit(&mut self.out);
        if !self.out.is_empty() {
            self.stream
                .write_all(&self.out)
                .map_err(|e| format!("amqp: {e}"))?;
            self.out.clear();
        }
        let now = Instant::now();
        let wait = self
            .session
            .poll_timeout()
            .map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(now)
            })
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
    fn wait_for(&mut self, want: impl Fn(&Event) -> bool) -> Result<(), String> {
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
