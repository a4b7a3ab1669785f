//! The subscriber session against real Redis 7.0 servers over blocking sockets: the
//! machine's Redis at 127.0.0.1:6379 (unreachable = failure, not a skip), and a private
//! `redis-server` with a password for the authentication paths. Channel names are unique
//! to each run.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::proto::resp::{
    encode_command, DropReason, Subscriber, SubscriberConfig, SubscriberError, SubscriberEvent,
    Subscription, Version,
};

#[path = "support/ferry.rs"]
mod ferry_proc;
use ferry_proc::unique;

const REDIS: &str = "127.0.0.1:6379";

fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address)
        .unwrap_or_else(|error| panic!("Redis at {address} is unreachable: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    stream
}

/// Drives a session over a blocking socket, as the reactor would.
struct Driver {
    session: Subscriber,
    stream: TcpStream,
    buf: Vec<u8>,
    max_kept: usize,
    pings_sent: usize,
}

impl Driver {
    fn new(address: &str, config: SubscriberConfig) -> Driver {
        let stream = connect(address);
        Driver {
            session: Subscriber::new(config, Instant::now()),
            stream,
            buf: Vec::new(),
            max_kept: 0,
            pings_sent: 0,
        }
    }

    /// Runs the loop until `done` holds for the events gathered, or `limit` passes.
    fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&[SubscriberEvent]) -> bool,
    ) -> Result<Vec<SubscriberEvent>, SubscriberError> {
        let end = Instant::now() + limit;
        let mut events = Vec::new();
        let mut chunk = vec![0u8; 16384];
        loop {
            let mut out = Vec::new();
            self.session.poll_transmit(&mut out);
            if out == b"*1\r\n$4\r\nPING\r\n" {
                self.pings_sent += 1;
            }
            self.stream.write_all(&out).unwrap();
            events.extend(std::iter::from_fn(|| self.session.poll_event()));
            if done(&events) {
                return Ok(events);
            }
            assert!(Instant::now() < end, "timed out; events so far: {events:?}");
            match self.stream.read(&mut chunk) {
                Ok(0) => self.session.handle_eof(Instant::now()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    let used = self.session.handle_input(&self.buf, Instant::now())?;
                    self.buf.drain(..used);
                    self.max_kept = self.max_kept.max(self.buf.len());
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) => panic!("read: {error}"),
            }
            let now = Instant::now();
            if self.session.poll_timeout().is_some_and(|at| at <= now) {
                self.session.handle_timeout(now);
            }
        }
    }
}

/// Sends one command on a plain connection and reads its (short) reply.
fn call(stream: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, args.iter().copied());
    stream.write_all(&out).unwrap();
    let mut reply = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match stream.read(&mut reply) {
            Ok(n) => return reply[..n].to_vec(),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(Instant::now() < deadline, "no reply to {args:?}");
            }
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
fn subscribes_receives_pings_and_unsubscribes_on_the_real_redis() {
    let channel = unique("ferry-test.chan");
    let pattern_base = unique("ferry-test.pat");
    let pattern = format!("{pattern_base}.*");
    let mut config = SubscriberConfig::new(
        vec![channel.clone().into_bytes()],
        vec![pattern.clone().into_bytes()],
    );
    config.client_name = Some(b"ferry:live test".to_vec());
    config.max_message_bytes = 1024;
    config.keepalive_interval = Duration::from_millis(150);
    config.pong_timeout = Duration::from_secs(2);
    let mut driver = Driver::new(REDIS, config);

    let events = driver
        .run_until(Duration::from_secs(5), |events| !events.is_empty())
        .unwrap();
    assert_eq!(events, [SubscriberEvent::Ready]);
    assert_eq!(driver.session.protocol(), Some(Version::Resp3));
    let version = driver.session.server_version().unwrap();
    assert!(
        version.starts_with(|c: char| c.is_ascii_digit()),
        "{version}"
    );

    // The name went through HELLO's SETNAME, made acceptable to Redis.
    let mut publisher = connect(REDIS);
    let list = call(&mut publisher, &[b"CLIENT", b"LIST"]);
    assert!(
        String::from_utf8_lossy(&list).contains("name=ferry:live_test"),
        "{}",
        String::from_utf8_lossy(&list)
    );

    let matched = format!("{pattern_base}.one");
    let big = vec![b'B'; 200_000];
    assert_eq!(
        call(&mut publisher, &[b"PUBLISH", channel.as_bytes(), b"hello"]),
        b":1\r\n"
    );
    assert_eq!(
        call(
            &mut publisher,
            &[b"PUBLISH", matched.as_bytes(), b"\x00bin\r\n"]
        ),
        b":1\r\n"
    );
    assert_eq!(
        call(&mut publisher, &[b"PUBLISH", channel.as_bytes(), &big]),
        b":1\r\n"
    );
    assert_eq!(
        call(&mut publisher, &[b"PUBLISH", channel.as_bytes(), b"after"]),
        b":1\r\n"
    );
    let events = driver
        .run_until(Duration::from_secs(5), |events| events.len() >= 4)
        .unwrap();
    let summary: Vec<(Option<Subscription>, Option<Vec<u8>>, usize)> = events
        .iter()
        .map(|event| match event {
            SubscriberEvent::Message(message) => (
                Some(message.subscription),
                message.channel.clone(),
                message.payload.len(),
            ),
            SubscriberEvent::Dropped(dropped) => {
                assert_eq!(dropped.reason, DropReason::TooLarge);
                (dropped.subscription, dropped.channel.clone(), dropped.bytes)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some(Subscription::Channel(0)), None, 5),
            (
                Some(Subscription::Pattern(0)),
                Some(matched.into_bytes()),
                6
            ),
            (Some(Subscription::Channel(0)), None, 200_000),
            (Some(Subscription::Channel(0)), None, 5),
        ]
    );
    assert!(matches!(&events[3], SubscriberEvent::Message(m) if m.payload == b"after"));
    assert!(matches!(&events[0], SubscriberEvent::Message(m) if m.payload == b"hello"));
    assert!(
        driver.max_kept <= 16384,
        "buffered {} bytes of a skipped message",
        driver.max_kept
    );

    // Quiet for a while: PINGs go out, PONGs come back, the session stays up.
    let quiet_until = Instant::now() + Duration::from_millis(700);
    let events = driver
        .run_until(Duration::from_secs(3), |_| Instant::now() >= quiet_until)
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert!(driver.pings_sent >= 2, "{} PINGs", driver.pings_sent);
    assert!(driver.session.is_subscribed());

    driver.session.unsubscribe();
    let events = driver
        .run_until(Duration::from_secs(5), |events| !events.is_empty())
        .unwrap();
    assert_eq!(events, [SubscriberEvent::Unsubscribed]);
    assert_eq!(
        call(&mut publisher, &[b"PUBLISH", channel.as_bytes(), b"nobody"]),
        b":0\r\n"
    );
}

/// A private `redis-server` with a password, on a free port; killed on drop.
struct PrivateRedis {
    child: Child,
    address: String,
}

impl PrivateRedis {
    fn start(password: &str) -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--user", "ferry", "on", ">ferry-pw", "~*", "&*", "+@all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { child, address }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn authenticates_with_hello_and_reports_bad_credentials() {
    let server = PrivateRedis::start("s3cret");
    let base = SubscriberConfig::new(vec![unique("ferry-test.auth").into_bytes()], vec![]);
    let ready = |config: SubscriberConfig| {
        Driver::new(&server.address, config)
            .run_until(Duration::from_secs(5), |events| !events.is_empty())
    };

    let mut config = base.clone();
    config.password = Some(b"s3cret".to_vec());
    assert_eq!(ready(config.clone()), Ok(vec![SubscriberEvent::Ready]));
    config.username = Some(b"ferry".to_vec());
    config.password = Some(b"ferry-pw".to_vec());
    assert_eq!(ready(config), Ok(vec![SubscriberEvent::Ready]));

    let mut config = base.clone();
    config.password = Some(b"wrong".to_vec());
    assert_eq!(
        ready(config),
        Err(SubscriberError::AuthFailed {
            text: "WRONGPASS invalid username-password pair or user is disabled.".into()
        })
    );
    match ready(base) {
        Err(SubscriberError::AuthFailed { text }) => assert!(text.starts_with("NOAUTH"), "{text}"),
        other => panic!("{other:?}"),
    }
}
