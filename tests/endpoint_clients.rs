//! Real Redis clients against the RESP endpoint (README.md "RESP endpoint (no broker)"):
//! redis-cli
//! (publish, subscribe, raw inline commands), PHP's phpredis (`publish()` from a caller
//! script, a subscriber script), and redis-benchmark publishing through ferry with every
//! accepted message reaching the worker exactly once. Needs redis-tools and php8.2-redis.

#[path = "support/endpoint.rs"]
mod endpoint;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use endpoint::{command, replies, show};
use serde_json::json;

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli (package redis-tools) must be installed");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Publishes to `channel` until some subscriber receives it (the subscriber is connected
/// and subscribed); returns the receiver count.
fn wait_for_subscriber(port: u16, channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let count = replies(port, &command(&[b"PUBLISH", channel.as_bytes(), b"probe"]));
        if count != b":0\r\n" {
            return;
        }
        assert!(Instant::now() < deadline, "no subscriber on {channel}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lines of a child's stdout, through a channel (so a test can wait with a deadline).
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a line from the client in time")
}

#[test]
fn redis_cli_publishes_subscribes_and_speaks_inline() {
    let ep = endpoint::start("ferry-endpoint-redis-cli", json!({}));
    assert_eq!(
        redis_cli(ep.port, &["publish", &ep.channel, "from redis-cli"]),
        "1\n"
    );
    assert_eq!(redis_cli(ep.port, &["ping"]), "PONG\n");
    let jobs = ep.wait_for_jobs(1);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["body"], "from redis-cli");
    assert_eq!(jobs[0]["params"]["FERRY_KIND"], "resp_endpoint");
    assert_eq!(jobs[0]["params"]["FERRY_CHANNEL"], ep.channel.as_str());

    // Inline commands, as telnet sends them, pipelined in one write.
    let mut raw = ep.connect();
    raw.write_all(b"PING\r\nECHO \"two words\"\r\n").unwrap();
    let answer = endpoint::read_until(&mut raw, b"$9\r\ntwo words\r\n");
    assert_eq!(answer, b"+PONG\r\n$9\r\ntwo words\r\n", "{}", show(&answer));

    // redis-cli subscribe receives what another redis-cli publishes.
    let topic = ferry_proc::unique("ferry-test-cli-topic");
    let mut subscriber = Command::new("redis-cli")
        .args(["-p", &ep.port.to_string(), "subscribe", &topic])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(subscriber.stdout.take().unwrap());
    assert_eq!(next_line(&lines), "subscribe");
    assert_eq!(next_line(&lines), topic);
    assert_eq!(next_line(&lines), "1");
    assert_eq!(
        redis_cli(ep.port, &["publish", &topic, "hello subscriber"]),
        "1\n"
    );
    assert_eq!(next_line(&lines), "message");
    assert_eq!(next_line(&lines), topic);
    assert_eq!(next_line(&lines), "hello subscriber");
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}

#[test]
fn phpredis_publishes_and_subscribes() {
    let ep = endpoint::start("ferry-endpoint-phpredis", json!({}));
    let publisher = ep.dir.join("publish.php");
    std::fs::write(
        &publisher,
        format!(
            r#"<?php
$redis = new Redis();
$redis->connect('127.0.0.1', {port});
$receivers = $redis->publish('{channel}', json_encode(['from' => 'phpredis']));
echo var_export($receivers, true), "\n";
echo var_export($redis->ping(), true), "\n";
echo $redis->echo('echoed'), "\n";
"#,
            port = ep.port,
            channel = ep.channel
        ),
    )
    .unwrap();
    let output = Command::new("php").arg(&publisher).output().expect("php");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "1\ntrue\nechoed\n");
    let jobs = ep.wait_for_jobs(1);
    assert_eq!(jobs[0]["body"], r#"{"from":"phpredis"}"#);

    // A phpredis subscriber gets three messages. (phpredis's subscribe loop does not
    // return on `exit` or an exception from its callback, against Redis too: the test
    // stops the script once the messages are in.)
    let topic = ferry_proc::unique("ferry-test-php-topic");
    let subscriber_script = ep.dir.join("subscribe.php");
    std::fs::write(
        &subscriber_script,
        format!(
            r#"<?php
$redis = new Redis();
$redis->connect('127.0.0.1', {port});
$redis->setOption(Redis::OPT_READ_TIMEOUT, -1);
$redis->subscribe(['{topic}'], function ($redis, $channel, $message) {{
    if ($message === 'probe') {{ return; }}
    echo "$channel $message\n";
}});
"#,
            port = ep.port,
        ),
    )
    .unwrap();
    let mut subscriber = Command::new("php")
        .arg(&subscriber_script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(subscriber.stdout.take().unwrap());
    wait_for_subscriber(ep.port, &topic);
    for n in 1..=3 {
        let count = replies(
            ep.port,
            &command(&[b"PUBLISH", topic.as_bytes(), format!("m{n}").as_bytes()]),
        );
        assert_eq!(count, b":1\r\n");
    }
    for n in 1..=3 {
        assert_eq!(next_line(&lines), format!("{topic} m{n}"));
    }
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}

#[test]
fn redis_benchmark_publishes_and_every_accepted_message_reaches_the_worker_once() {
    let ep = endpoint::start(
        "ferry-endpoint-benchmark",
        json!({ "backlog": 100_000, "backlog_bytes": 64 << 20 }),
    );
    let output = Command::new("redis-benchmark")
        .args(["-p", &ep.port.to_string(), "-n", "5000", "-c", "20", "-q"])
        .args(["PUBLISH", &ep.channel, "benchmark-payload"])
        .output()
        .expect("redis-benchmark (package redis-tools) must be installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("requests per second"), "{stdout}");
    // It asks CONFIG GET at start; ferry answers unknown command and it carries on.
    assert_eq!(
        ep.metric(r#"ferry_endpoint_disconnects_total{source="ep",reason="protocol_error"}"#),
        0
    );
    let received = ep.metric(r#"ferry_messages_received_total{source="ep"}"#);
    let dropped: u64 = ["backlog_full", "paused", "shutdown", "too_large"]
        .iter()
        .map(|r| {
            ep.metric(&format!(
                r#"ferry_messages_dropped_total{{source="ep",reason="{r}"}}"#
            ))
        })
        .sum();
    assert_eq!(received, 5000);
    let accepted = (received - dropped) as usize;
    assert_eq!(accepted, 5000, "the backlog holds them all");
    let jobs = ep.wait_for_jobs(accepted);
    assert_eq!(jobs.len(), accepted);
    // Nothing more arrives: exactly once.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ep.jobs().len(), accepted);
    assert!(jobs.iter().all(|j| j["body"] == "benchmark-payload"));
}
