//! The RESP endpoint under load (README.md "RESP endpoint (no broker)"; conn.rs's
//! backpressure): a big pipeline of publishes to many subscribers does not keep other
//! clients waiting, replies are never thrown away (`QUIT` after a big pipeline), a slow
//! reader is slowed down rather than disconnected, and a subscriber closed for its output
//! buffer is counted once. Every assertion is on counts and order, never on time.

#[path = "support/endpoint.rs"]
mod endpoint;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use endpoint::{command, connect, exchange, read_until, show};
use serde_json::json;

/// Raises this process's soft fd limit to its hard limit (the tests open many sockets).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// A RESP2 message frame as a subscriber of `channel` receives it.
fn message_frame(channel: &str, payload: &[u8], resp3: bool) -> Vec<u8> {
    let mut frame = command(&[b"message", channel.as_bytes(), payload]);
    frame[0] = if resp3 { b'>' } else { b'*' };
    frame
}

/// Reads everything until EOF (the read timeout fails the test).
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("the server closes the connection in time");
    out
}

#[test]
fn a_big_pipeline_to_many_subscribers_does_not_keep_others_waiting() {
    raise_fd_limit();
    const SUBSCRIBERS: usize = 300;
    const PUBLISHES: usize = 5_000;
    let ep = endpoint::start("ferry-endpoint-fair", json!({}));
    let topic = ferry_proc::unique("ferry-test-fanout");
    let subscribe = command(&[b"SUBSCRIBE", topic.as_bytes()]);
    let mut subscribers: Vec<TcpStream> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut s = connect(ep.port);
            exchange(&mut s, &subscribe);
            s
        })
        .collect();
    // The client that PINGs is a RESP3 subscriber too: on its one connection, the
    // messages before its PONG are exactly the publishes ferry ran before its PING.
    let mut pinger = connect(ep.port);
    exchange(&mut pinger, b"HELLO 3\r\n");
    exchange(&mut pinger, &subscribe);

    let payloads: Vec<Vec<u8>> = (0..PUBLISHES)
        .map(|n| format!("{n:08}").into_bytes())
        .collect();
    let mut pipeline = Vec::new();
    for payload in &payloads {
        pipeline.extend_from_slice(&command(&[b"PUBLISH", topic.as_bytes(), payload]));
    }
    let mut publisher = connect(ep.port);
    publisher.write_all(&pipeline).unwrap();
    pinger.write_all(b"PING\r\n").unwrap();
    let before_pong = read_until(&mut pinger, b"+PONG\r\n");
    let frame_len = message_frame(&topic, &payloads[0], true).len();
    let messages_before_pong = (before_pong.len() - b"+PONG\r\n".len()) / frame_len;
    assert!(
        messages_before_pong < PUBLISHES,
        "the PING waited for the whole pipeline ({messages_before_pong} messages first)"
    );

    // Every publish is answered with every receiver, and every message arrives, in order.
    let receivers = format!(":{}\r\n", SUBSCRIBERS + 1);
    let mut replies = Vec::new();
    while replies.len() < receivers.len() * PUBLISHES {
        let more = read_until(&mut publisher, b"\r\n");
        replies.extend_from_slice(&more);
    }
    assert_eq!(replies, receivers.repeat(PUBLISHES).as_bytes());
    let expected: Vec<u8> = payloads
        .iter()
        .flat_map(|p| message_frame(&topic, p, false))
        .collect();
    for (n, subscriber) in subscribers.iter_mut().enumerate() {
        let mut got = vec![0u8; expected.len()];
        subscriber.read_exact(&mut got).unwrap();
        assert!(got == expected, "subscriber {n} got other bytes");
    }
    let pinger_rest_len = (PUBLISHES - messages_before_pong) * frame_len;
    let mut rest = vec![0u8; pinger_rest_len];
    pinger.read_exact(&mut rest).unwrap();
}

#[test]
fn quit_after_a_big_pipeline_sends_every_reply_first() {
    const PINGS: usize = 1_000_000;
    let ep = endpoint::start("ferry-endpoint-quit", json!({}));
    let mut client = connect(ep.port);
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut pipeline = b"PING\r\n".repeat(PINGS);
        pipeline.extend_from_slice(b"QUIT\r\n");
        writer.write_all(&pipeline).unwrap();
    });
    // Replies (7 MB) pile up beyond the socket buffers before the client reads: they
    // must wait in ferry, not be dropped by the QUIT.
    std::thread::sleep(Duration::from_millis(300));
    let got = read_to_eof(&mut client);
    sending.join().unwrap();
    let mut expected = b"+PONG\r\n".repeat(PINGS);
    expected.extend_from_slice(b"+OK\r\n");
    assert_eq!(got.len(), expected.len(), "every PONG, then +OK, then EOF");
    assert!(got == expected);
    // A protocol error after a pipeline: the replies, the error, then EOF.
    let mut erring = connect(ep.port);
    let mut writer = erring.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut script = b"PING\r\n".repeat(PINGS);
        script.extend_from_slice(b"*1\r\n$-5\r\n");
        writer.write_all(&script).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = read_to_eof(&mut erring);
    sending.join().unwrap();
    let mut expected = b"+PONG\r\n".repeat(PINGS);
    expected.extend_from_slice(b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(
        got == expected,
        "{}",
        show(&got[got.len().saturating_sub(80)..])
    );
}

#[test]
fn a_slow_reader_is_slowed_down_not_disconnected() {
    // Replies far beyond the output limit, read slowly: ferry stops running the
    // client's commands while its replies wait, and never drops it.
    const PINGS: usize = 400_000;
    let ep = endpoint::start(
        "ferry-endpoint-slowreader",
        json!({ "client_output_buffer_bytes": 65536 }),
    );
    let mut client = connect(ep.port);
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let mut pipeline = b"PING\r\n".repeat(PINGS);
        pipeline.extend_from_slice(b"QUIT\r\n");
        writer.write_all(&pipeline).unwrap();
    });
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        let n = client.read(&mut chunk).expect("no reset, no timeout");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        std::thread::sleep(Duration::from_micros(500));
    }
    sending.join().unwrap();
    let mut expected = b"+PONG\r\n".repeat(PINGS);
    expected.extend_from_slice(b"+OK\r\n");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected);
    assert_eq!(
        ep.metric(r#"ferry_endpoint_disconnects_total{source="ep",reason="output_buffer"}"#),
        0
    );
}

#[test]
fn a_subscriber_closed_for_its_output_buffer_is_counted_once() {
    const PUBLISHES: usize = 20_000;
    let ep = endpoint::start(
        "ferry-endpoint-countonce",
        json!({ "client_output_buffer_bytes": 65536 }),
    );
    let topic = ferry_proc::unique("ferry-test-countonce");
    let mut slow = connect(ep.port);
    exchange(&mut slow, &command(&[b"SUBSCRIBE", topic.as_bytes()]));
    let mut publisher = connect(ep.port);
    let mut writer = publisher.try_clone().unwrap();
    let payload = vec![b'p'; 1024];
    let one = command(&[b"PUBLISH", topic.as_bytes(), &payload]);
    let sending = std::thread::spawn(move || writer.write_all(&one.repeat(PUBLISHES)).unwrap());
    let mut replies = Vec::new();
    while replies.iter().filter(|&&b| b == b'\n').count() < PUBLISHES {
        replies.extend_from_slice(&read_until(&mut publisher, b"\r\n"));
    }
    sending.join().unwrap();
    assert!(replies.ends_with(b":0\r\n"), "the slow subscriber is gone");
    let deadline = Instant::now() + Duration::from_secs(10);
    let series = r#"ferry_endpoint_disconnects_total{source="ep",reason="output_buffer"}"#;
    while ep.metric(series) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ep.metric(series), 1);
    assert_eq!(ep.metric(r#"ferry_endpoint_clients{source="ep"}"#), 1);
}
