//! Scripted conversations with the Redis subscriber session: the exact bytes a Redis 7.0
//! server sends (the captures in `tests/data/redis/` where they exist), the exact bytes
//! the session sends back, its events, a fake clock, every split point, hostile input.

use std::time::{Duration, Instant};

use ferry::proto::resp::{
    encode_command, DropReason, Dropped, Message, RespError, Subscriber, SubscriberConfig,
    SubscriberError, SubscriberEvent, Subscription, Version,
};

const RESP3_HELLO: &[u8] = include_bytes!("../data/redis/resp3-hello3.resp");
const RESP3_SUBSCRIBE: &[u8] = include_bytes!("../data/redis/resp3-subscribe.resp");
const RESP3_MESSAGES: &[u8] = include_bytes!("../data/redis/resp3-messages.resp");
const RESP3_PING: &[u8] = include_bytes!("../data/redis/resp3-ping.resp");
const RESP2_SUBSCRIBE: &[u8] = include_bytes!("../data/redis/resp2-subscribe.resp");
const RESP2_MESSAGES: &[u8] = include_bytes!("../data/redis/resp2-messages.resp");
const RESP2_PING: &[u8] = include_bytes!("../data/redis/resp2-ping.resp");

const OLD_REDIS_HELLO: &[u8] = b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// The channel and pattern of the captures, for a variant (`resp2`/`resp3`).
fn capture_config(variant: &str) -> SubscriberConfig {
    SubscriberConfig::new(
        vec![format!("ferry-capture.{variant}.chan").into_bytes()],
        vec![format!("ferry-capture.{variant}.p.*").into_bytes()],
    )
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, args.iter().copied());
    out
}

/// A command as a server would send an array of bulk strings (RESP2 pub/sub frames) or a
/// push (`>`) with the same elements.
fn frame(push: bool, items: &[&[u8]]) -> Vec<u8> {
    let mut out = command(items);
    if push {
        out[0] = b'>';
    }
    out
}

fn message(push: bool, channel: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(push, &[b"message", channel, payload])
}

fn pmessage(push: bool, pattern: &[u8], channel: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(push, &[b"pmessage", pattern, channel, payload])
}

fn confirmation(push: bool, kind: &str, name: &[u8], count: i64) -> Vec<u8> {
    let mut out = frame(push, &[kind.as_bytes(), name]);
    // `frame` wrote a 2-element header; make it 3 and append the count.
    out[1] = b'3';
    out.extend_from_slice(format!(":{count}\r\n").as_bytes());
    out
}

/// The reactor's side: a read buffer that keeps what the session did not consume.
struct Peer {
    session: Subscriber,
    buf: Vec<u8>,
    now: Instant,
    /// The most bytes the read buffer ever held after the session consumed its share.
    max_kept: usize,
}

impl Peer {
    fn new(config: SubscriberConfig) -> Peer {
        let now = Instant::now();
        Peer {
            session: Subscriber::new(config, now),
            buf: Vec::new(),
            now,
            max_kept: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), SubscriberError> {
        self.buf.extend_from_slice(bytes);
        let used = self.session.handle_input(&self.buf, self.now)?;
        assert!(used <= self.buf.len());
        self.buf.drain(..used);
        self.max_kept = self.max_kept.max(self.buf.len());
        Ok(())
    }

    fn sent(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        out
    }

    fn events(&mut self) -> Vec<SubscriberEvent> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    /// Runs the RESP3 handshake of the captures; leaves the session subscribed.
    fn subscribed_resp3() -> Peer {
        let mut peer = Peer::new(capture_config("resp3"));
        peer.sent();
        peer.feed(RESP3_HELLO).unwrap();
        peer.sent();
        peer.feed(RESP3_SUBSCRIBE).unwrap();
        assert_eq!(peer.events(), [SubscriberEvent::Ready]);
        peer
    }

    /// The RESP2 handshake (old server) of the captures; leaves the session subscribed.
    fn subscribed_resp2() -> Peer {
        let mut peer = Peer::new(capture_config("resp2"));
        peer.sent();
        peer.feed(OLD_REDIS_HELLO).unwrap();
        peer.sent();
        peer.feed(RESP2_SUBSCRIBE).unwrap();
        assert_eq!(peer.events(), [SubscriberEvent::Ready]);
        peer
    }
}

fn channel_message(index: usize, payload: &[u8]) -> SubscriberEvent {
    SubscriberEvent::Message(Message {
        subscription: Subscription::Channel(index),
        channel: None,
        payload: payload.to_vec(),
    })
}

fn pattern_message(index: usize, channel: &[u8], payload: &[u8]) -> SubscriberEvent {
    SubscriberEvent::Message(Message {
        subscription: Subscription::Pattern(index),
        channel: Some(channel.to_vec()),
        payload: payload.to_vec(),
    })
}

fn captured_messages(variant: &str) -> Vec<SubscriberEvent> {
    vec![
        channel_message(0, b"hello from ferry"),
        pattern_message(
            0,
            format!("ferry-capture.{variant}.p.one").as_bytes(),
            b"\x00binary\r\npayload\xff",
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Handshakes

#[test]
fn resp3_conversation_without_auth() {
    let mut peer = Peer::new(capture_config("resp3"));
    assert_eq!(peer.sent(), command(&[b"HELLO", b"3"]));
    assert_eq!(peer.session.protocol(), None);
    assert!(peer.events().is_empty());

    peer.feed(RESP3_HELLO).unwrap();
    assert_eq!(peer.session.protocol(), Some(Version::Resp3));
    assert_eq!(peer.session.server_version(), Some("7.0.15"));
    let mut expected = command(&[b"SUBSCRIBE", b"ferry-capture.resp3.chan"]);
    expected.extend(command(&[b"PSUBSCRIBE", b"ferry-capture.resp3.p.*"]));
    assert_eq!(peer.sent(), expected);
    assert!(peer.events().is_empty());
    assert!(!peer.session.is_subscribed());

    peer.feed(RESP3_SUBSCRIBE).unwrap();
    assert_eq!(peer.events(), [SubscriberEvent::Ready]);
    assert!(peer.session.is_subscribed());

    peer.feed(RESP3_MESSAGES).unwrap();
    assert_eq!(peer.events(), captured_messages("resp3"));
    // `+PONG` and the echoed bulk string of `PING "still there"`: the first is a PONG;
    // the second is not something this session ever asks for.
    peer.feed(&RESP3_PING[..7]).unwrap();
    assert!(peer.events().is_empty());
    assert!(peer.sent().is_empty());
}

#[test]
fn resp3_with_auth_and_client_name() {
    let mut config = capture_config("resp3");
    config.password = Some(b"s3cret".to_vec());
    config.client_name = Some(b"ferry:my events".to_vec());
    let mut peer = Peer::new(config.clone());
    assert_eq!(
        peer.sent(),
        command(&[
            b"HELLO",
            b"3",
            b"AUTH",
            b"default",
            b"s3cret",
            b"SETNAME",
            b"ferry:my_events"
        ])
    );
    config.username = Some(b"ferry".to_vec());
    config.client_name = None;
    let mut peer = Peer::new(config);
    assert_eq!(
        peer.sent(),
        command(&[b"HELLO", b"3", b"AUTH", b"ferry", b"s3cret"])
    );
    peer.feed(RESP3_HELLO).unwrap();
    peer.feed(RESP3_SUBSCRIBE).unwrap();
    assert_eq!(peer.events(), [SubscriberEvent::Ready]);
}

#[test]
fn username_without_password_sends_no_auth() {
    let mut config = capture_config("resp3");
    config.username = Some(b"ferry".to_vec());
    let mut peer = Peer::new(config);
    assert_eq!(peer.sent(), command(&[b"HELLO", b"3"]));
}

#[test]
fn resp2_fallback_without_auth() {
    for refusal in [
        OLD_REDIS_HELLO,
        b"-NOPROTO unsupported protocol version\r\n",
    ] {
        let mut peer = Peer::new(capture_config("resp2"));
        peer.sent();
        peer.feed(refusal).unwrap();
        assert_eq!(peer.session.protocol(), Some(Version::Resp2));
        assert_eq!(peer.session.server_version(), None);
        let mut expected = command(&[b"SUBSCRIBE", b"ferry-capture.resp2.chan"]);
        expected.extend(command(&[b"PSUBSCRIBE", b"ferry-capture.resp2.p.*"]));
        assert_eq!(peer.sent(), expected);
        peer.feed(RESP2_SUBSCRIBE).unwrap();
        assert_eq!(peer.events(), [SubscriberEvent::Ready]);
        peer.feed(RESP2_MESSAGES).unwrap();
        assert_eq!(peer.events(), captured_messages("resp2"));
        // `*2 pong ""` and `*2 pong "still there"`: keepalive answers, no events.
        peer.feed(RESP2_PING).unwrap();
        assert!(peer.events().is_empty());
    }
}

#[test]
fn resp2_fallback_with_auth() {
    for (username, auth) in [
        (None, command(&[b"AUTH", b"s3cret"])),
        (
            Some(b"ferry".to_vec()),
            command(&[b"AUTH", b"ferry", b"s3cret"]),
        ),
    ] {
        let mut config = capture_config("resp2");
        config.username = username;
        config.password = Some(b"s3cret".to_vec());
        let mut peer = Peer::new(config);
        peer.sent();
        // An old server echoes the arguments it did not understand, password included.
        peer.feed(b"-ERR unknown command `HELLO`, with args beginning with: `3`, `AUTH`, `default`, `s3cret`, \r\n")
            .unwrap();
        assert_eq!(peer.sent(), auth);
        assert!(peer.events().is_empty());
        peer.feed(b"+OK\r\n").unwrap();
        let mut expected = command(&[b"SUBSCRIBE", b"ferry-capture.resp2.chan"]);
        expected.extend(command(&[b"PSUBSCRIBE", b"ferry-capture.resp2.p.*"]));
        assert_eq!(peer.sent(), expected);
        peer.feed(RESP2_SUBSCRIBE).unwrap();
        assert_eq!(peer.events(), [SubscriberEvent::Ready]);
    }
}

#[test]
fn auth_failures_are_typed_and_fatal() {
    let password = |peer_config: &mut SubscriberConfig| {
        peer_config.password = Some(b"s3cret".to_vec());
    };
    let cases: [(&[u8], bool, &str); 4] = [
        (
            WRONGPASS,
            true,
            "WRONGPASS invalid username-password pair or user is disabled.",
        ),
        (
            b"-NOAUTH HELLO must be called with the client already authenticated\r\n",
            false,
            "NOAUTH HELLO must be called with the client already authenticated",
        ),
        (b"-ERR invalid password\r\n", true, "ERR invalid password"),
        (b"-WRONGPASS ok\r\n", true, "WRONGPASS ok"),
    ];
    for (reply, with_password, text) in cases {
        let mut config = capture_config("resp3");
        if with_password {
            password(&mut config);
        }
        let mut peer = Peer::new(config);
        peer.sent();
        assert_eq!(
            peer.feed(reply),
            Err(SubscriberError::AuthFailed {
                text: text.to_owned()
            })
        );
        assert!(peer.session.is_finished());
        assert_eq!(peer.session.poll_timeout(), None);
        assert_eq!(peer.feed(b"+OK\r\n"), Err(SubscriberError::SessionOver));
        assert!(peer.sent().is_empty());
    }

    // AUTH refused after the RESP2 fallback, in whatever words.
    let mut config = capture_config("resp2");
    password(&mut config);
    let mut peer = Peer::new(config);
    peer.feed(OLD_REDIS_HELLO).unwrap();
    let long = format!(
        "-ERR Client sent AUTH, but no password is set{}\r\n",
        "!".repeat(300)
    );
    match peer.feed(long.as_bytes()) {
        Err(SubscriberError::AuthFailed { text }) => {
            assert_eq!(text.len(), 200);
            assert!(text.starts_with("ERR Client sent AUTH, but no password is set!!"));
        }
        other => panic!("{other:?}"),
    }
    let error = SubscriberError::AuthFailed {
        text: "WRONGPASS x".into(),
    };
    assert_eq!(error.to_string(), "authentication failed: WRONGPASS x");
}

#[test]
fn other_hello_refusals_and_replies_are_fatal() {
    let mut peer = Peer::new(capture_config("resp3"));
    assert_eq!(
        peer.feed(b"-ERR Client names cannot contain spaces\r\n"),
        Err(SubscriberError::Rejected {
            command: "HELLO",
            text: "ERR Client names cannot contain spaces".into()
        })
    );
    let mut peer = Peer::new(capture_config("resp3"));
    assert_eq!(
        peer.feed(b"+OK\r\n"),
        Err(SubscriberError::UnexpectedFrame {
            waiting_for: "the HELLO reply",
            found: "simple string"
        })
    );
    let mut config = capture_config("resp2");
    config.password = Some(b"pw".to_vec());
    let mut peer = Peer::new(config);
    peer.feed(OLD_REDIS_HELLO).unwrap();
    assert_eq!(
        peer.feed(b":1\r\n"),
        Err(SubscriberError::UnexpectedFrame {
            waiting_for: "the AUTH reply",
            found: "integer"
        })
    );
    // A message before anything was subscribed.
    let mut peer = Peer::new(capture_config("resp3"));
    assert_eq!(
        peer.feed(&message(true, b"ferry-capture.resp3.chan", b"x")),
        Err(SubscriberError::UnexpectedFrame {
            waiting_for: "the HELLO reply",
            found: "message"
        })
    );
}

#[test]
fn attributes_and_unknown_pushes_are_ignored_in_every_state() {
    let invalidate = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n";
    let attribute = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n";
    let mut peer = Peer::new(capture_config("resp3"));
    peer.sent();
    peer.feed(invalidate).unwrap();
    peer.feed(attribute).unwrap();
    peer.feed(RESP3_HELLO).unwrap();
    peer.feed(invalidate).unwrap();
    peer.feed(RESP3_SUBSCRIBE).unwrap();
    peer.feed(invalidate).unwrap();
    peer.feed(attribute).unwrap();
    peer.feed(RESP3_MESSAGES).unwrap();
    let mut expected = vec![SubscriberEvent::Ready];
    expected.extend(captured_messages("resp3"));
    assert_eq!(peer.events(), expected);
}

// ---------------------------------------------------------------------------------------
// Confirmations

fn two_and_two() -> SubscriberConfig {
    SubscriberConfig::new(
        vec![b"a".to_vec(), b"b".to_vec()],
        vec![b"p.*".to_vec(), b"q.*".to_vec()],
    )
}

fn after_hello(config: SubscriberConfig) -> Peer {
    let mut peer = Peer::new(config);
    peer.sent();
    peer.feed(RESP3_HELLO).unwrap();
    peer
}

#[test]
fn every_name_is_subscribed_in_one_command_each() {
    let mut peer = after_hello(two_and_two());
    let mut expected = command(&[b"SUBSCRIBE", b"a", b"b"]);
    expected.extend(command(&[b"PSUBSCRIBE", b"p.*", b"q.*"]));
    assert_eq!(peer.sent(), expected);

    // Only patterns: no SUBSCRIBE at all (a bare one is an arity error).
    let mut peer = after_hello(SubscriberConfig::new(vec![], vec![b"p.*".to_vec()]));
    assert_eq!(peer.sent(), command(&[b"PSUBSCRIBE", b"p.*"]));
    peer.feed(&confirmation(true, "psubscribe", b"p.*", 1))
        .unwrap();
    assert_eq!(peer.events(), [SubscriberEvent::Ready]);
}

#[test]
fn confirmations_are_checked_one_by_one() {
    let good = [
        confirmation(true, "subscribe", b"a", 1),
        confirmation(true, "subscribe", b"b", 2),
        confirmation(true, "psubscribe", b"p.*", 3),
        confirmation(true, "psubscribe", b"q.*", 4),
    ];
    let mut peer = after_hello(two_and_two());
    for (i, confirmation) in good.iter().enumerate() {
        assert!(peer.events().is_empty(), "Ready too early, before {i}");
        peer.feed(confirmation).unwrap();
    }
    assert_eq!(peer.events(), [SubscriberEvent::Ready]);

    let wrong = |found: &str, expected: &str| {
        Err(SubscriberError::WrongConfirmation {
            expected: expected.to_owned(),
            found: found.to_owned(),
        })
    };
    // Missing: `b` never confirmed, the patterns' start instead.
    let mut peer = after_hello(two_and_two());
    peer.feed(&good[0]).unwrap();
    assert_eq!(
        peer.feed(&good[2]),
        wrong("psubscribe \"p.*\"", "subscribe \"b\"")
    );
    // Misnamed.
    let mut peer = after_hello(two_and_two());
    assert_eq!(
        peer.feed(&confirmation(true, "subscribe", b"c", 1)),
        wrong("subscribe \"c\"", "subscribe \"a\"")
    );
    // Right name, wrong kind.
    let mut peer = after_hello(two_and_two());
    assert_eq!(
        peer.feed(&confirmation(true, "psubscribe", b"a", 1)),
        wrong("psubscribe \"a\"", "subscribe \"a\"")
    );
    // Extra, once all are in.
    let mut peer = after_hello(two_and_two());
    for confirmation in &good {
        peer.feed(confirmation).unwrap();
    }
    assert_eq!(peer.feed(&good[3]), wrong("psubscribe \"q.*\"", "none"));
    // An unsubscribe confirmation nobody asked for.
    let mut peer = after_hello(two_and_two());
    assert_eq!(
        peer.feed(&confirmation(true, "unsubscribe", b"a", 0)),
        wrong("unsubscribe \"a\"", "none")
    );
    // Malformed.
    let mut peer = after_hello(two_and_two());
    assert!(matches!(
        peer.feed(b">2\r\n$9\r\nsubscribe\r\n$1\r\na\r\n"),
        Err(SubscriberError::PubSub(_))
    ));
}

#[test]
fn subscribe_refused_is_fatal() {
    let mut peer = after_hello(two_and_two());
    assert_eq!(
        peer.feed(b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"),
        Err(SubscriberError::Rejected {
            command: "SUBSCRIBE",
            text: "NOPERM this user has no permissions to access one of the channels used as arguments".into()
        })
    );
}

#[test]
fn messages_between_confirmations_are_delivered() {
    // SUBSCRIBE a b is answered, then a publish to `a` lands before PSUBSCRIBE's answer.
    let mut peer = after_hello(two_and_two());
    peer.feed(&confirmation(false, "subscribe", b"a", 1))
        .unwrap();
    peer.feed(&confirmation(false, "subscribe", b"b", 2))
        .unwrap();
    peer.feed(&message(false, b"a", b"early")).unwrap();
    peer.feed(&confirmation(false, "psubscribe", b"p.*", 3))
        .unwrap();
    peer.feed(&pmessage(false, b"p.*", b"p.1", b"early too"))
        .unwrap();
    peer.feed(&confirmation(false, "psubscribe", b"q.*", 4))
        .unwrap();
    assert_eq!(
        peer.events(),
        [
            channel_message(0, b"early"),
            pattern_message(0, b"p.1", b"early too"),
            SubscriberEvent::Ready
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Subscribed

#[test]
fn messages_name_their_subscription() {
    let mut peer = after_hello(two_and_two());
    peer.feed(
        &[
            confirmation(true, "subscribe", b"a", 1),
            confirmation(true, "subscribe", b"b", 2),
            confirmation(true, "psubscribe", b"p.*", 3),
            confirmation(true, "psubscribe", b"q.*", 4),
        ]
        .concat(),
    )
    .unwrap();
    peer.events();
    peer.feed(
        &[
            message(true, b"b", b"to b"),
            message(true, b"a", b""),
            pmessage(true, b"q.*", b"q.x", b"to q"),
            pmessage(true, b"p.*", b"p.y", b"to p"),
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(
        peer.events(),
        [
            channel_message(1, b"to b"),
            channel_message(0, b""),
            pattern_message(1, b"q.x", b"to q"),
            pattern_message(0, b"p.y", b"to p"),
        ]
    );
}

#[test]
fn errors_while_subscribed_are_not_fatal() {
    let mut peer = Peer::subscribed_resp2();
    peer.feed(b"-ERR unknown command 'FOO', with args beginning with: \r\n")
        .unwrap();
    peer.feed(&message(false, b"not-subscribed", b"x")).unwrap();
    peer.feed(&pmessage(false, b"x.*", b"x.1", b"x")).unwrap();
    peer.feed(&frame(false, &[b"smessage", b"shard", b"x"]))
        .unwrap();
    peer.feed(RESP2_MESSAGES).unwrap();
    let mut expected = vec![
        SubscriberEvent::Error(SubscriberError::ServerError {
            text: "ERR unknown command 'FOO', with args beginning with: ".into(),
        }),
        SubscriberEvent::Error(SubscriberError::UnknownSubscription {
            name: "not-subscribed".into(),
        }),
        SubscriberEvent::Error(SubscriberError::UnknownSubscription { name: "x.*".into() }),
        SubscriberEvent::Error(SubscriberError::UnknownSubscription {
            name: "shard".into(),
        }),
    ];
    expected.extend(captured_messages("resp2"));
    assert_eq!(peer.events(), expected);
    assert!(peer.session.is_subscribed());
}

#[test]
fn hostile_frames_while_subscribed_are_fatal() {
    let cases: [(&[u8], SubscriberError); 5] = [
        (
            b":1\r\n",
            SubscriberError::UnexpectedFrame {
                waiting_for: "messages",
                found: "integer",
            },
        ),
        (
            b"*1\r\n$3\r\nfoo\r\n",
            SubscriberError::UnexpectedFrame {
                waiting_for: "messages",
                found: "array",
            },
        ),
        (
            b"hello\r\n",
            SubscriberError::Protocol(RespError::UnknownType(b'h')),
        ),
        (
            b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n:5\r\n",
            SubscriberError::PubSub(ferry::proto::resp::PubSubError::WrongType {
                kind: "message",
                index: 2,
            }),
        ),
        // A bulk far beyond any limit that is not a message payload.
        (
            b"$1099511627776\r\n",
            SubscriberError::Protocol(RespError::BulkTooLong),
        ),
    ];
    for (bytes, error) in cases {
        let mut peer = Peer::subscribed_resp3();
        assert_eq!(peer.feed(bytes), Err(error));
        assert!(peer.session.is_finished());
        assert_eq!(peer.session.poll_timeout(), None);
    }
}

// ---------------------------------------------------------------------------------------
// Partial input: every split point gives the same events as one read.

fn conversation(variant: &str) -> (SubscriberConfig, Vec<u8>) {
    let config = capture_config(variant);
    let bytes = if variant == "resp3" {
        [
            RESP3_HELLO,
            RESP3_SUBSCRIBE,
            RESP3_MESSAGES,
            &RESP3_PING[..7],
        ]
        .concat()
    } else {
        [OLD_REDIS_HELLO, RESP2_SUBSCRIBE, RESP2_MESSAGES, RESP2_PING].concat()
    };
    (config, bytes)
}

fn run_in_chunks(
    config: &SubscriberConfig,
    bytes: &[u8],
    cuts: &[usize],
) -> (Vec<SubscriberEvent>, Vec<u8>) {
    let mut peer = Peer::new(config.clone());
    let mut sent = peer.sent();
    let mut start = 0;
    for &cut in cuts.iter().chain([&bytes.len()]) {
        peer.feed(&bytes[start..cut]).unwrap();
        sent.extend(peer.sent());
        start = cut;
    }
    assert!(peer.buf.is_empty(), "bytes left unconsumed");
    (peer.events(), sent)
}

#[test]
fn every_split_point_gives_the_same_conversation() {
    for variant in ["resp3", "resp2"] {
        let (config, bytes) = conversation(variant);
        let whole = run_in_chunks(&config, &bytes, &[]);
        assert_eq!(whole.0.len(), 3, "{:?}", whole.0);
        for cut in 0..=bytes.len() {
            assert_eq!(
                run_in_chunks(&config, &bytes, &[cut]),
                whole,
                "{variant} cut {cut}"
            );
        }
        let every_byte: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(
            run_in_chunks(&config, &bytes, &every_byte),
            whole,
            "{variant}"
        );
    }
}

#[test]
fn messages_split_at_every_byte() {
    for push in [false, true] {
        let mut peer = if push {
            Peer::subscribed_resp3()
        } else {
            Peer::subscribed_resp2()
        };
        let variant = if push { "resp3" } else { "resp2" };
        let channel = format!("ferry-capture.{variant}.chan");
        let pattern = format!("ferry-capture.{variant}.p.*");
        let pchannel = format!("ferry-capture.{variant}.p.two");
        let bytes = [
            message(push, channel.as_bytes(), b"payload with \r\n inside"),
            pmessage(push, pattern.as_bytes(), pchannel.as_bytes(), b"0123456789"),
        ]
        .concat();
        let expected = [
            channel_message(0, b"payload with \r\n inside"),
            pattern_message(0, pchannel.as_bytes(), b"0123456789"),
        ];
        for cut in 0..=bytes.len() {
            peer.feed(&bytes[..cut]).unwrap();
            peer.feed(&bytes[cut..]).unwrap();
            assert_eq!(peer.events(), expected, "cut {cut}");
            assert!(peer.buf.is_empty());
        }
        for &byte in &bytes {
            peer.feed(&[byte]).unwrap();
        }
        assert_eq!(peer.events(), expected);
    }
}

// ---------------------------------------------------------------------------------------
// Oversized messages: skipped as they arrive, never buffered.

fn small_limit(variant: &str) -> Peer {
    let mut config = capture_config(variant);
    config.max_message_bytes = 1024;
    let mut peer = Peer::new(config);
    peer.sent();
    if variant == "resp3" {
        peer.feed(RESP3_HELLO).unwrap();
        peer.feed(RESP3_SUBSCRIBE).unwrap();
    } else {
        peer.feed(OLD_REDIS_HELLO).unwrap();
        peer.feed(RESP2_SUBSCRIBE).unwrap();
    }
    assert_eq!(peer.events(), [SubscriberEvent::Ready]);
    peer
}

#[test]
fn a_one_megabyte_message_is_skipped_in_bounded_memory() {
    let payload = vec![b'x'; 1_000_000];
    for variant in ["resp3", "resp2"] {
        let push = variant == "resp3";
        let channel = format!("ferry-capture.{variant}.chan");
        let pattern = format!("ferry-capture.{variant}.p.*");
        let pchannel = format!("ferry-capture.{variant}.p.big");
        let cases = [
            (
                message(push, channel.as_bytes(), &payload),
                Dropped {
                    subscription: Some(Subscription::Channel(0)),
                    channel: None,
                    bytes: payload.len(),
                    reason: DropReason::TooLarge,
                },
            ),
            (
                pmessage(push, pattern.as_bytes(), pchannel.as_bytes(), &payload),
                Dropped {
                    subscription: Some(Subscription::Pattern(0)),
                    channel: Some(pchannel.clone().into_bytes()),
                    bytes: payload.len(),
                    reason: DropReason::TooLarge,
                },
            ),
        ];
        for (big, dropped) in cases {
            for chunk in [1, 7, 1460, 65536] {
                let mut peer = small_limit(variant);
                let after = message(push, channel.as_bytes(), b"the next one");
                let stream = [big.clone(), after].concat();
                if chunk == 1 {
                    // Byte by byte only through the header and the start of the payload,
                    // then the rest in large reads (a million calls is a slow test).
                    for byte in &stream[..300] {
                        peer.feed(&[*byte]).unwrap();
                    }
                    for part in stream[300..].chunks(4096) {
                        peer.feed(part).unwrap();
                    }
                } else {
                    for part in stream.chunks(chunk) {
                        peer.feed(part).unwrap();
                    }
                }
                assert!(
                    peer.max_kept <= 4096,
                    "{variant} chunk {chunk}: kept {} bytes",
                    peer.max_kept
                );
                assert!(peer.buf.is_empty());
                assert_eq!(
                    peer.events(),
                    [
                        SubscriberEvent::Dropped(dropped.clone()),
                        channel_message(0, b"the next one")
                    ],
                    "{variant} chunk {chunk}"
                );
            }
        }
    }
}

#[test]
fn a_message_just_over_the_limit_is_dropped_however_it_arrives() {
    for variant in ["resp3", "resp2"] {
        let push = variant == "resp3";
        let channel = format!("ferry-capture.{variant}.chan");
        let at_limit = message(push, channel.as_bytes(), &[b'y'; 1024]);
        let over = message(push, channel.as_bytes(), &[b'z'; 1025]);
        let dropped = SubscriberEvent::Dropped(Dropped {
            subscription: Some(Subscription::Channel(0)),
            channel: None,
            bytes: 1025,
            reason: DropReason::TooLarge,
        });
        let stream = [at_limit, over].concat();
        // In one read (the decoder takes the whole frame: its limit is 64 KiB)…
        let mut peer = small_limit(variant);
        peer.feed(&stream).unwrap();
        assert_eq!(
            peer.events(),
            [channel_message(0, &[b'y'; 1024]), dropped.clone()]
        );
        // …and in small reads (the peek skips it).
        let mut peer = small_limit(variant);
        for part in stream.chunks(100) {
            peer.feed(part).unwrap();
        }
        assert!(peer.max_kept < 1100, "kept {}", peer.max_kept);
        assert_eq!(peer.events(), [channel_message(0, &[b'y'; 1024]), dropped]);
    }
}

#[test]
fn a_skipped_payload_must_end_in_crlf() {
    let mut peer = small_limit("resp3");
    let mut big = message(true, b"ferry-capture.resp3.chan", &[b'x'; 2000]);
    let len = big.len();
    big[len - 2] = b'!';
    for part in big[..len - 3].chunks(500) {
        peer.feed(part).unwrap();
    }
    assert_eq!(
        peer.feed(&big[len - 3..]),
        Err(SubscriberError::Protocol(RespError::BadBulkEnd))
    );
}

#[test]
fn a_hostile_two_terabyte_message_is_skipped_not_buffered() {
    let mut peer = small_limit("resp2");
    peer.feed(b"*3\r\n$7\r\nmessage\r\n$24\r\nferry-capture.resp2.chan\r\n$2199023255552\r\n")
        .unwrap();
    for _ in 0..100 {
        peer.feed(&[0u8; 65536]).unwrap();
    }
    assert_eq!(peer.max_kept, 0);
    assert!(peer.events().is_empty());
}

// ---------------------------------------------------------------------------------------
// Keepalive and dead peers

#[test]
fn keepalive_ping_after_the_interval_and_peer_dead_after_the_timeout() {
    let mut peer = Peer::subscribed_resp3();
    let start = peer.now;
    let secs = Duration::from_secs;
    assert_eq!(peer.session.poll_timeout(), Some(start + secs(15)));

    peer.advance(secs(14));
    assert!(peer.sent().is_empty());
    peer.advance(secs(1));
    assert_eq!(peer.sent(), command(&[b"PING"]));
    assert_eq!(peer.session.poll_timeout(), Some(start + secs(45)));
    // No second PING while the first is unanswered.
    peer.advance(secs(10));
    assert!(peer.sent().is_empty());

    // The PONG (any input would do) proves the peer alive.
    peer.feed(b"+PONG\r\n").unwrap();
    assert!(peer.events().is_empty());
    let pong_at = peer.now;
    assert_eq!(peer.session.poll_timeout(), Some(pong_at + secs(15)));

    // Silence: PING at +15 s, dead 30 s later.
    peer.advance(secs(15));
    assert_eq!(peer.sent(), command(&[b"PING"]));
    peer.advance(secs(29));
    assert!(peer.events().is_empty());
    peer.advance(secs(1));
    assert_eq!(
        peer.events(),
        [SubscriberEvent::Failed(SubscriberError::PeerDead {
            silent_for: secs(45)
        })]
    );
    assert!(peer.session.is_finished());
    assert_eq!(peer.session.poll_timeout(), None);
    peer.advance(secs(100));
    assert!(peer.events().is_empty());
    assert!(peer.sent().is_empty());
}

#[test]
fn any_input_resets_the_liveness_clock() {
    let mut peer = Peer::subscribed_resp2();
    let secs = Duration::from_secs;
    for _ in 0..10 {
        peer.advance(secs(10));
        peer.feed(&message(false, b"ferry-capture.resp2.chan", b"tick"))
            .unwrap();
    }
    assert!(peer.sent().is_empty());
    assert_eq!(peer.events().len(), 10);
    // Even part of a frame counts.
    let tick = message(false, b"ferry-capture.resp2.chan", b"tock");
    peer.advance(secs(14));
    peer.feed(&tick[..5]).unwrap();
    peer.advance(secs(14));
    assert!(peer.sent().is_empty());
    peer.advance(secs(1));
    assert_eq!(peer.sent(), command(&[b"PING"]));
    peer.feed(&tick[5..]).unwrap();
    // RESP2's answer to PING while subscribed.
    peer.feed(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").unwrap();
    assert_eq!(peer.events(), [channel_message(0, b"tock")]);
    assert!(peer.session.is_subscribed());
}

#[test]
fn custom_keepalive_timers() {
    let mut config = capture_config("resp3");
    config.keepalive_interval = Duration::from_millis(100);
    config.pong_timeout = Duration::from_millis(50);
    let mut peer = Peer::new(config);
    peer.feed(RESP3_HELLO).unwrap();
    peer.feed(RESP3_SUBSCRIBE).unwrap();
    peer.sent();
    let start = peer.now;
    assert_eq!(
        peer.session.poll_timeout(),
        Some(start + Duration::from_millis(100))
    );
    peer.advance(Duration::from_millis(100));
    assert_eq!(peer.sent(), command(&[b"PING"]));
    assert_eq!(
        peer.session.poll_timeout(),
        Some(start + Duration::from_millis(150))
    );
}

#[test]
fn a_silent_server_during_the_handshake_is_dead_without_pings() {
    let mut peer = Peer::new(capture_config("resp3"));
    peer.sent();
    let start = peer.now;
    assert_eq!(
        peer.session.poll_timeout(),
        Some(start + Duration::from_secs(45))
    );
    peer.advance(Duration::from_secs(44));
    assert!(peer.sent().is_empty(), "no PING before the HELLO reply");
    peer.advance(Duration::from_secs(1));
    assert_eq!(
        peer.events(),
        [SubscriberEvent::Failed(SubscriberError::PeerDead {
            silent_for: Duration::from_secs(45)
        })]
    );
}

// ---------------------------------------------------------------------------------------
// Unsubscribe (drain), EOF

#[test]
fn unsubscribe_flow() {
    for push in [true, false] {
        let mut peer = after_hello(two_and_two());
        peer.feed(
            &[
                confirmation(push, "subscribe", b"a", 1),
                confirmation(push, "subscribe", b"b", 2),
                confirmation(push, "psubscribe", b"p.*", 3),
                confirmation(push, "psubscribe", b"q.*", 4),
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(peer.events(), [SubscriberEvent::Ready]);
        peer.sent();
        peer.session.unsubscribe();
        let mut expected = command(&[b"UNSUBSCRIBE", b"a", b"b"]);
        expected.extend(command(&[b"PUNSUBSCRIBE", b"p.*", b"q.*"]));
        assert_eq!(peer.sent(), expected);
        assert!(!peer.session.is_subscribed());
        // A second call changes nothing.
        peer.session.unsubscribe();
        assert!(peer.sent().is_empty());

        peer.feed(&message(push, b"b", b"still delivered")).unwrap();
        peer.feed(&confirmation(push, "unsubscribe", b"a", 3))
            .unwrap();
        peer.feed(&pmessage(push, b"q.*", b"q.1", b"this too"))
            .unwrap();
        peer.feed(&confirmation(push, "unsubscribe", b"b", 2))
            .unwrap();
        peer.feed(&confirmation(push, "punsubscribe", b"p.*", 1))
            .unwrap();
        assert_eq!(
            peer.events(),
            [
                channel_message(1, b"still delivered"),
                pattern_message(1, b"q.1", b"this too")
            ]
        );
        assert!(!peer.session.is_finished());
        peer.feed(&confirmation(push, "punsubscribe", b"q.*", 0))
            .unwrap();
        assert_eq!(peer.events(), [SubscriberEvent::Unsubscribed]);
        assert!(peer.session.is_finished());
        assert_eq!(peer.session.poll_timeout(), None);
        peer.session.handle_eof(peer.now);
        assert_eq!(peer.events(), [SubscriberEvent::Closed]);
    }
}

#[test]
fn unsubscribe_confirmations_are_checked() {
    let mut peer = Peer::subscribed_resp3();
    peer.session.unsubscribe();
    peer.sent();
    assert_eq!(
        peer.feed(b">3\r\n$12\r\npunsubscribe\r\n$23\r\nferry-capture.resp3.p.*\r\n:0\r\n"),
        Err(SubscriberError::WrongConfirmation {
            expected: "unsubscribe \"ferry-capture.resp3.chan\"".into(),
            found: "punsubscribe \"ferry-capture.resp3.p.*\"".into(),
        })
    );
    let mut peer = Peer::subscribed_resp3();
    peer.session.unsubscribe();
    peer.feed(b">3\r\n$11\r\nunsubscribe\r\n$24\r\nferry-capture.resp3.chan\r\n:1\r\n")
        .unwrap();
    assert_eq!(
        peer.feed(b">3\r\n$12\r\npunsubscribe\r\n$23\r\nferry-capture.resp3.p.*\r\n:3\r\n"),
        Err(SubscriberError::WrongConfirmation {
            expected: "a subscription count of 0".into(),
            found: "a count of 3".into(),
        })
    );
    // The captured drain: RESP3, names as subscribed, counts down to 0.
    let mut peer = Peer::subscribed_resp3();
    peer.session.unsubscribe();
    let captured = include_bytes!("../data/redis/resp3-unsubscribe.resp");
    // The capture's third frame answers a bare UNSUBSCRIBE this session never sends.
    let two_frames = captured.len() - b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n".len();
    peer.feed(&captured[..two_frames]).unwrap();
    assert_eq!(peer.events(), [SubscriberEvent::Unsubscribed]);
    assert_eq!(
        peer.feed(&captured[two_frames..]),
        Err(SubscriberError::UnexpectedFrame {
            waiting_for: "nothing (unsubscribed)",
            found: "unsubscribe"
        })
    );
}

#[test]
fn unsubscribe_before_subscribed() {
    // Before the HELLO reply: nothing to undo.
    let mut peer = Peer::new(capture_config("resp3"));
    peer.sent();
    peer.session.unsubscribe();
    assert_eq!(peer.events(), [SubscriberEvent::Unsubscribed]);
    assert!(peer.sent().is_empty());
    assert_eq!(peer.session.poll_timeout(), None);

    // While confirmations are arriving: they are checked, then the unsubscribe goes out,
    // with no `Ready` in between.
    let mut peer = Peer::new(capture_config("resp3"));
    peer.sent();
    peer.feed(RESP3_HELLO).unwrap();
    peer.sent();
    peer.session.unsubscribe();
    assert!(peer.sent().is_empty());
    peer.feed(RESP3_SUBSCRIBE).unwrap();
    let mut expected = command(&[b"UNSUBSCRIBE", b"ferry-capture.resp3.chan"]);
    expected.extend(command(&[b"PUNSUBSCRIBE", b"ferry-capture.resp3.p.*"]));
    assert_eq!(peer.sent(), expected);
    assert!(peer.events().is_empty());
    let captured = include_bytes!("../data/redis/resp3-unsubscribe.resp");
    let two_frames = captured.len() - b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n".len();
    peer.feed(&captured[..two_frames]).unwrap();
    assert_eq!(peer.events(), [SubscriberEvent::Unsubscribed]);
}

#[test]
fn eof_closes_the_session() {
    let mut peer = Peer::subscribed_resp2();
    peer.session.handle_eof(peer.now);
    assert_eq!(peer.events(), [SubscriberEvent::Closed]);
    assert!(peer.session.is_finished());
    assert_eq!(peer.session.poll_timeout(), None);
    assert_eq!(peer.feed(b"+PONG\r\n"), Err(SubscriberError::SessionOver));
    peer.session.handle_eof(peer.now);
    assert!(peer.events().is_empty());
    peer.session.unsubscribe();
    assert!(peer.sent().is_empty());
}

#[test]
fn the_password_stays_out_of_debug_output() {
    let mut config = capture_config("resp3");
    config.password = Some(b"s3cret".to_vec());
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("<redacted>"));
    let session = Subscriber::new(config, Instant::now());
    let debug = format!("{session:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
}
