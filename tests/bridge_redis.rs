//! Redis pub/sub → ferry → a real private php-fpm (`docs/SEMANTICS.md` "Redis pub/sub and
//! the RESP endpoint: at-most-once"): every message
//! published while ferry is subscribed reaches the worker exactly once, through channels
//! and patterns, in RESP3 (ferry's default, with HELLO 3). Needs Redis on 127.0.0.1:6379
//! and php-fpm8.2; fails without them.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_proc::{logging_worker, publish, unique, wait_for_lines, Ferry};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::json;

#[test]
fn a_thousand_published_messages_reach_the_worker_exactly_once() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let channel = unique("ferry-test-redis");
    let pattern_base = unique("ferry-test-pattern");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "max_in_flight": 4 } },
        "sources": [{
            "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
            "channels": [channel], "patterns": [format!("{pattern_base}.*")],
            "backlog": 2000,
            "job": { "pool": "php", "script": script }
        }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        "source events: subscribed (RESP3, Redis 7",
        Duration::from_secs(10),
    );

    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        "1000",
        r#"{"n": {n}}"#,
    ]);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &format!("{pattern_base}.a"),
        "--count",
        "5",
        r#"{"n": {n}, "via": "pattern"}"#,
    ]);

    let lines = wait_for_lines(&log, 1005, Duration::from_secs(30));
    let direct: Vec<u64> = lines
        .iter()
        .filter(|l| l["post"]["via"].is_null())
        .map(|l| l["post"]["n"].as_str().unwrap().parse().unwrap())
        .collect();
    let unique_numbers: BTreeSet<u64> = direct.iter().copied().collect();
    assert_eq!(direct.len(), 1000, "each message once");
    assert_eq!(
        unique_numbers,
        (1..=1000).collect(),
        "exactly the numbers published"
    );
    assert!(lines
        .iter()
        .all(|l| l["attempt"] == 1 && l["source"] == "events"));
    let via_pattern: Vec<_> = lines
        .iter()
        .filter(|l| l["post"]["via"] == "pattern")
        .collect();
    assert_eq!(via_pattern.len(), 5);
    assert!(via_pattern
        .iter()
        .all(|l| l["pattern"] == format!("{pattern_base}.*")
            && l["channel"] == format!("{pattern_base}.a")));

    ferry.signal("TERM");
    let status = ferry.wait(Duration::from_secs(10));
    assert!(status.success(), "drain exits 0; log:\n{}", ferry.log());
}

/// RESP2: a private redis-server whose HELLO is renamed away answers `-ERR unknown
/// command`, so ferry falls back to RESP2 (as with a Redis older than 6).
#[test]
fn resp2_fallback_delivers_too() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--rename-command",
            "HELLO",
            "",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (package redis-server) must be installed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "private redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("redis://127.0.0.1:{port}");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [{ "name": "old", "kind": "redis", "url": url, "channels": ["jobs"],
                      "patterns": ["jobs.*"], "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source old: subscribed (RESP2", Duration::from_secs(10));
    publish(&[
        "--redis",
        &url,
        "--channel",
        "jobs",
        "--count",
        "50",
        r#"{"n": {n}}"#,
    ]);
    publish(&["--redis", &url, "--channel", "jobs.x", r#"{"n": 51}"#]);
    let lines = wait_for_lines(&log, 51, Duration::from_secs(20));
    let seen: BTreeSet<u64> = lines
        .iter()
        .map(|l| l["post"]["n"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seen, (1..=51).collect());
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    let _ = redis.kill();
    let _ = redis.wait();
}
