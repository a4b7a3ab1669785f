//! Pause and resume through the control endpoint (`docs/SEMANTICS.md` "Pause and
//! resume"): an AMQP source cancels its
//! consumer and hands unstarted messages back while paused, and takes them up again on
//! resume with nothing lost; a Redis source stays subscribed and drops what arrives while
//! paused (counted with reason "paused"). Needs RabbitMQ, Redis and php-fpm8.2.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry_proc::{logging_worker, publish, unique, wait_for_numbers, worker_lines, Ferry};
use http::{free_port, get, post};
use php_fpm::PhpFpm;
use serde_json::json;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[test]
fn an_amqp_source_paused_hands_work_back_and_resumes_without_loss() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-pause");
    let port = free_port();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "max_in_flight": 2 } },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "prefetch": 8, "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source tasks: consuming", Duration::from_secs(10));
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "200",
        r#"{"n": {n}, "sleep_ms": "20"}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while worker_lines(&log).len() < 10 {
        assert!(Instant::now() < deadline, "no work started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(post(port, "/sources/tasks/pause").0 == 200);
    ferry.wait_for_log("consumer cancelled", Duration::from_secs(10));
    // In-flight jobs finish; then nothing more runs while paused.
    std::thread::sleep(Duration::from_millis(500));
    let during = worker_lines(&log).len();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(worker_lines(&log).len(), during, "work ran while paused");
    assert_eq!(
        amqp::queue_depth(&queue) as usize + during,
        200,
        "the rest is back in the queue"
    );
    assert!(get(port, "/status").1.contains(r#""paused":true"#));

    assert!(post(port, "/sources/tasks/resume").0 == 200);
    let lines = wait_for_numbers(&log, 200, Duration::from_secs(60));
    let seen: BTreeSet<u64> = lines
        .iter()
        .filter_map(|l| l["post"]["n"].as_str()?.parse().ok())
        .collect();
    assert_eq!(
        seen,
        (1..=200).collect(),
        "nothing lost; log:\n{}",
        ferry.log()
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(15)).success());
}

#[test]
fn a_paused_redis_source_drops_and_counts_then_resumes() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let channel = unique("ferry-test-pause");
    let port = free_port();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [channel], "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source events: subscribed", Duration::from_secs(10));
    assert!(post(port, "/sources/events/pause").0 == 200);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        "5",
        r#"{"n": {n}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = r#"ferry_messages_dropped_total{source="events",reason="paused"} 5"#;
    while !get(port, "/metrics").1.lines().any(|l| l == dropped) {
        assert!(Instant::now() < deadline, "{}", get(port, "/metrics").1);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(post(port, "/sources/events/resume").0 == 200);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        r#"{"n": 6}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker_lines(&log).is_empty() {
        assert!(Instant::now() < deadline, "no message after resume");
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = worker_lines(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["post"]["n"], "6");
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(15)).success());
}
