//! Hostile peers (`docs/SEMANTICS.md` "Reconnecting", "Retries"): scripted sockets that
//! play a broken Redis, a broken RabbitMQ and a broken php-fpm. ferry logs, recovers
//! (reconnects with backoff, retries the job), keeps its memory bounded and never panics.
//! The Redis-sourced cases publish through the real Redis on 127.0.0.1:6379.

#[path = "support/ferry.rs"]
mod ferry_proc;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proc::{publish, rss_kib, temp_dir, unique, Ferry};
use serde_json::json;

/// A TCP "server" that answers every connection with `reply` after reading a little,
/// counting connections.
fn scripted_tcp(reply: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(&reply);
                std::thread::sleep(Duration::from_millis(300));
            });
        }
    });
    (port, count)
}

fn wait_count(count: &AtomicUsize, at_least: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    while count.load(Ordering::SeqCst) < at_least && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    count.load(Ordering::SeqCst)
}

#[test]
fn a_redis_announcing_a_2_pow_40_bulk_is_dropped_and_retried_with_backoff() {
    let dir = temp_dir("ferry-hostile-redis");
    let (port, connections) = scripted_tcp(b"$1099511627776\r\nxxxx".to_vec());
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}/none.sock", dir.display()) } },
        "sources": [{ "name": "evil", "kind": "redis", "url": format!("redis://127.0.0.1:{port}"),
                      "channels": ["c"], "job": { "pool": "php", "script": "/w.php" } }]
    });
    let mut ferry = Ferry::start(&dir, &config);
    let started = Instant::now();
    let n = wait_count(&connections, 3, Duration::from_secs(10));
    assert!(n >= 3, "ferry reconnects after a protocol error");
    // Backoff: 500 ms doubling (jittered down to half) — three connections take ≥ 0.7 s.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "no reconnect storm"
    );
    assert!(
        rss_kib(ferry.pid()) < 50 * 1024,
        "nothing buffered for the lying length"
    );
    let log = ferry.log();
    assert!(log.contains("source evil"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(10)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn an_amqp_broker_sending_garbage_or_huge_frames_is_survived() {
    let dir = temp_dir("ferry-hostile-amqp");
    // A frame header announcing 2^31 bytes, after a plausible start: far above frame_max.
    let mut huge = vec![1, 0, 0, 0x80, 0, 0, 0];
    huge.extend_from_slice(&[0; 64]);
    for reply in [b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), huge] {
        let (port, connections) = scripted_tcp(reply);
        let config = json!({
            "control": { "listen": null },
            "pools": { "php": { "address": format!("unix:{}/none.sock", dir.display()) } },
            "sources": [{ "name": "evil", "kind": "amqp",
                          "url": format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
                          "queue": "q", "job": { "pool": "php", "script": "/w.php" } }]
        });
        let mut ferry = Ferry::start(&dir, &config);
        assert!(
            wait_count(&connections, 2, Duration::from_secs(10)) >= 2,
            "reconnects"
        );
        assert!(rss_kib(ferry.pid()) < 50 * 1024);
        ferry.signal("TERM");
        assert!(
            ferry.wait(Duration::from_secs(10)).success(),
            "{}",
            ferry.log()
        );
    }
}

/// A "php-fpm" on a unix socket that answers each connection with `answer` (or nothing).
fn scripted_fpm(dir: &std::path::Path, answer: Option<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let path = dir.join("fpm.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf);
                match answer {
                    Some(bytes) => {
                        let _ = stream.write_all(&bytes);
                    }
                    None => std::thread::sleep(Duration::from_secs(5)),
                }
            });
        }
    });
    (format!("unix:{}", path.display()), count)
}

#[test]
fn broken_php_fpm_answers_are_retried_then_discarded() {
    // Malformed records, half a response then close, and silence.
    let mut half = vec![1, 6, 0, 1, 0, 100, 0, 0];
    half.extend_from_slice(b"Status: 200\r\n");
    let cases: [(&str, Option<Vec<u8>>); 3] = [
        (
            "malformed",
            Some(b"\x09\x09garbage that is no FastCGI record at all".to_vec()),
        ),
        ("half", Some(half)),
        ("silent", None),
    ];
    for (name, answer) in cases {
        let dir = temp_dir(&format!("ferry-hostile-fpm-{name}"));
        let (address, connections) = scripted_fpm(&dir, answer);
        let channel = unique("ferry-hostile");
        let config = json!({
            "control": { "listen": null },
            "pools": { "php": { "address": address, "request_timeout_ms": 300 } },
            "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                          "channels": [channel], "max_attempts": 2, "retry_delays_ms": [100],
                          "job": { "pool": "php", "script": "/w.php" } }]
        });
        let mut ferry = Ferry::start(&dir, &config);
        ferry.wait_for_log("source events: subscribed", Duration::from_secs(10));
        publish(&[
            "--redis",
            "redis://127.0.0.1:6379",
            "--channel",
            &channel,
            r#"{"n": 1}"#,
        ]);
        ferry.wait_for_log("giving up", Duration::from_secs(10));
        assert_eq!(
            connections.load(Ordering::SeqCst),
            2,
            "{name}: one connection per attempt, max_attempts 2; log:\n{}",
            ferry.log()
        );
        ferry.signal("TERM");
        assert!(
            ferry.wait(Duration::from_secs(10)).success(),
            "{}",
            ferry.log()
        );
    }
}
