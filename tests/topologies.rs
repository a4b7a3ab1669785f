//! Production topologies against the real brokers (`docs/SEMANTICS.md`, "Quorum queues"
//! and "Failover"): quorum queues ferry declares and quorum queues declared by someone
//! else, retries through quorum retry queues, `x-delivery-count` after a connection dies;
//! a source with two nodes — a closed port first, then the real Redis or RabbitMQ —
//! skipping the dead node and coming back after its connection is killed. Needs RabbitMQ
//! 3.10 on 127.0.0.1:5672 (guest/guest, `rabbitmqctl`), Redis on 127.0.0.1:6379
//! (`redis-cli`) and php-fpm8.2.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry::proto::amqp::session::table_from_json;
use ferry::proto::amqp::DeclareMode;
use ferry_proc::{publish, unique, wait_for_lines, worker_lines, Ferry};
use php_fpm::PhpFpm;
use serde_json::{json, Value};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS: &str = "redis://127.0.0.1:6379";

/// A worker that logs `n`, the attempt, the broker's `x-delivery-count` and the source,
/// fails the first attempt with 500 when the message has `fail_first`, and sleeps on the
/// first attempt when it has `sleep_first_ms`.
fn worker(log: &Path) -> String {
    format!(
        r#"<?php
$attempt = (int)($_SERVER['FERRY_ATTEMPT'] ?? 0);
$line = json_encode([
    'n' => $_POST['n'] ?? null,
    'attempt' => $attempt,
    'delivery_count' => $_SERVER['FERRY_HEADER_X_DELIVERY_COUNT'] ?? null,
    'source' => $_SERVER['FERRY_SOURCE'] ?? null,
]);
file_put_contents({log:?}, $line . "\n", FILE_APPEND | LOCK_EX);
if ($attempt == 1 && isset($_POST['sleep_first_ms'])) {{ usleep((int)$_POST['sleep_first_ms'] * 1000); }}
if ($attempt == 1 && isset($_POST['fail_first'])) {{ http_response_code(500); }}
echo "ok";
"#,
        log = log.display().to_string()
    )
}

fn pool(fpm: &PhpFpm) -> Value {
    json!({ "address": format!("unix:{}", fpm.socket().display()), "max_in_flight": 2 })
}

/// The lines the worker logged for message `n`.
fn lines_of(log: &Path, n: &str) -> Vec<Value> {
    worker_lines(log)
        .into_iter()
        .filter(|l| l["n"] == n)
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `rabbitmqctl list_queues name type`: the type of `queue`.
fn queue_type(queue: &str) -> String {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name", "type"])
        .output()
        .expect("rabbitmqctl (package rabbitmq-server) must be installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let (name, kind) = line.split_once('\t')?;
            (name == queue).then(|| kind.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no queue {queue}"))
}

fn delete_queue(queue: &str) {
    let _ = Command::new("rabbitmqctl")
        .args(["delete_queue", queue])
        .output();
}

/// Closes the RabbitMQ connections whose client properties name `needle` (ferry's
/// `connection_name` is `ferry <source>`), and only those: other tests share the broker.
fn close_amqp_connections(needle: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pids: Vec<String> = text
        .lines()
        .filter(|line| line.contains(needle))
        .filter_map(|line| line.split('\t').next().map(str::to_string))
        .collect();
    for pid in &pids {
        let status = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "ferry test: node lost"])
            .output()
            .expect("rabbitmqctl");
        assert!(
            status.status.success(),
            "close_connection {pid}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    pids.len()
}

/// `CLIENT KILL`s the Redis connections named `ferry:<source>`, and only those.
fn kill_redis_clients(source: &str) -> usize {
    let out = Command::new("redis-cli")
        .args(["CLIENT", "LIST"])
        .output()
        .expect("redis-cli must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let wanted = format!("name=ferry:{source} ");
    let ids: Vec<String> = text
        .lines()
        .filter(|line| line.contains(&wanted))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
        .collect();
    for id in &ids {
        Command::new("redis-cli")
            .args(["CLIENT", "KILL", "ID", id])
            .output()
            .expect("redis-cli");
    }
    ids.len()
}

// ---- quorum queues ---------------------------------------------------------------------

#[test]
fn a_quorum_queue_ferry_declares_retries_through_a_quorum_retry_queue() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &worker(&log));
    let queue = unique("ferry-test-quorum");
    let source = unique("qq");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm) },
        "sources": [{ "name": source, "kind": "amqp", "url": AMQP, "queue": queue,
                      "queue_type": "quorum", "max_attempts": 3, "retry_delays_ms": [300],
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        &format!("source {source}: consuming"),
        Duration::from_secs(15),
    );
    let retry = format!("{queue}.ferry-retry.300");
    wait_until("the retry queue", Duration::from_secs(10), || {
        ferry.log().contains(&format!("retry queue {retry} ready"))
    });
    assert_eq!(queue_type(&queue), "quorum", "declared quorum");
    assert_eq!(queue_type(&retry), "quorum", "its retry queue too");
    // `ferry publish --queue` uses the quorum queue as it is (passive declare first).
    publish(&["--amqp", AMQP, "--queue", &queue, r#"{"n": 1}"#]);
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 2, "fail_first": "1"}"#,
    ]);
    wait_until(
        "message 2's second attempt",
        Duration::from_secs(20),
        || lines_of(&log, "2").len() >= 2,
    );
    let attempts: Vec<i64> = lines_of(&log, "2")
        .iter()
        .map(|l| l["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2], "back through the quorum retry queue");
    assert_eq!(lines_of(&log, "1").len(), 1);
    assert_eq!(
        lines_of(&log, "2")[1]["delivery_count"],
        Value::Null,
        "the copy is a new message: no stale x-delivery-count"
    );
    assert_eq!(
        amqp::wait_for_depth(&queue, Duration::from_secs(10), |d| d == 0),
        0
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    delete_queue(&queue);
    delete_queue(&retry);
}

#[test]
fn a_quorum_queue_declared_by_someone_else_is_consumed_without_a_406() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &worker(&log));
    let queue = unique("ferry-test-their-quorum");
    // Another application's queue: quorum, with arguments ferry knows nothing of.
    let arguments = json!({ "x-queue-type": "quorum", "x-delivery-limit": 20,
                            "x-max-length": 10000 });
    amqp::declare(
        &queue,
        DeclareMode::Exactly {
            durable: true,
            arguments: table_from_json(arguments.as_object().unwrap()).unwrap(),
        },
    );
    publish(&["--amqp", AMQP, "--queue", &queue, r#"{"n": 1}"#]);
    for queue_type_key in [json!(null), json!("quorum")] {
        let source = unique("theirs");
        let mut amqp_source = json!({ "name": source, "kind": "amqp", "url": AMQP,
            "queue": queue, "retry": "hold", "job": { "pool": "php", "script": script } });
        if !queue_type_key.is_null() {
            amqp_source["queue_type"] = queue_type_key.clone();
        }
        let config = json!({
            "control": { "listen": null },
            "pools": { "php": pool(&fpm) },
            "sources": [amqp_source]
        });
        let mut ferry = Ferry::start(fpm.dir(), &config);
        ferry.wait_for_log(
            &format!("source {source}: consuming"),
            Duration::from_secs(15),
        );
        publish(&["--amqp", AMQP, "--queue", &queue, r#"{"n": 2}"#]);
        wait_until("message 2", Duration::from_secs(15), || {
            !lines_of(&log, "2").is_empty()
        });
        assert!(
            !ferry.log().contains("PRECONDITION_FAILED"),
            "{}",
            ferry.log()
        );
        ferry.signal("TERM");
        assert!(ferry.wait(Duration::from_secs(10)).success());
        std::fs::remove_file(&log).ok();
    }
    assert_eq!(queue_type(&queue), "quorum");
    delete_queue(&queue);
}

#[test]
fn x_delivery_count_is_seen_after_the_connection_dies_mid_request() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &worker(&log));
    let queue = unique("ferry-test-delivery-count");
    let source = unique("dc");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm) },
        "sources": [{ "name": source, "kind": "amqp", "url": AMQP, "queue": queue,
                      "queue_type": "quorum", "max_attempts": 5, "retry_delays_ms": [300],
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        &format!("source {source}: consuming"),
        Duration::from_secs(15),
    );
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 1, "sleep_first_ms": "3000"}"#,
    ]);
    wait_for_lines(&log, 1, Duration::from_secs(10));
    // The channel dies while the worker is busy: the broker requeues the message and
    // counts the delivery.
    assert_eq!(close_amqp_connections(&format!("ferry {source}")), 1);
    wait_until("the redelivery", Duration::from_secs(20), || {
        lines_of(&log, "1").len() >= 2
    });
    let lines = lines_of(&log, "1");
    assert_eq!(lines[0]["attempt"], 1);
    assert_eq!(lines[0]["delivery_count"], Value::Null, "first delivery");
    assert_eq!(
        lines[1]["delivery_count"], "1",
        "the quorum queue counted the delivery that died"
    );
    assert_eq!(
        lines[1]["attempt"], 2,
        "x-delivery-count + 1 is the attempt without x-ferry-attempt"
    );
    assert_eq!(
        amqp::wait_for_depth(&queue, Duration::from_secs(10), |d| d == 0),
        0
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    delete_queue(&queue);
    delete_queue(&format!("{queue}.ferry-retry.300"));
}

// ---- failover --------------------------------------------------------------------------

#[test]
fn redis_skips_a_dead_node_and_comes_back_after_its_connection_is_killed() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &worker(&log));
    let dead = http::free_port();
    let control = http::free_port();
    let source = unique("fo");
    let channel = unique("ferry-test-failover");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{control}") },
        "pools": { "php": pool(&fpm) },
        "sources": [{ "name": source, "kind": "redis",
                      "urls": [format!("redis://127.0.0.1:{dead}"), REDIS],
                      "channels": [channel], "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        &format!("source {source}: subscribed"),
        Duration::from_secs(10),
    );
    let text = ferry.log();
    assert!(
        text.contains(&format!("connecting to 127.0.0.1:{dead} (node 1 of 2)")),
        "{text}"
    );
    assert!(
        text.contains("connecting to 127.0.0.1:6379 (node 2 of 2)"),
        "{text}"
    );
    let status = http::get_json(control, "/status");
    assert_eq!(status["sources"][0]["node"], "127.0.0.1:6379");
    publish(&["--redis", REDIS, "--channel", &channel, r#"{"n": 1}"#]);
    wait_until("message 1", Duration::from_secs(10), || {
        !lines_of(&log, "1").is_empty()
    });
    assert_eq!(kill_redis_clients(&source), 1);
    ferry.wait_for_log_count(
        &format!("source {source}: subscribed"),
        2,
        "subscribed again",
        Duration::from_secs(10),
    );
    publish(&["--redis", REDIS, "--channel", &channel, r#"{"n": 2}"#]);
    wait_until("message 2", Duration::from_secs(10), || {
        !lines_of(&log, "2").is_empty()
    });
    assert_eq!(
        http::get_json(control, "/status")["sources"][0]["node"],
        "127.0.0.1:6379"
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}

#[test]
fn amqp_skips_a_dead_node_and_comes_back_after_its_connection_is_closed() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &worker(&log));
    let dead = http::free_port();
    let control = http::free_port();
    let source = unique("fo");
    let queue = unique("ferry-test-failover");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{control}") },
        "pools": { "php": pool(&fpm) },
        "sources": [{ "name": source, "kind": "amqp",
                      "urls": [format!("amqp://guest:guest@127.0.0.1:{dead}/%2f"), AMQP],
                      "queue": queue, "retry": "hold",
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        &format!("source {source}: consuming"),
        Duration::from_secs(15),
    );
    assert!(ferry
        .log()
        .contains(&format!("connecting to 127.0.0.1:{dead} (node 1 of 2)")));
    assert_eq!(
        http::get_json(control, "/status")["sources"][0]["node"],
        "127.0.0.1:5672"
    );
    publish(&["--amqp", AMQP, "--queue", &queue, r#"{"n": 1}"#]);
    wait_until("message 1", Duration::from_secs(10), || {
        !lines_of(&log, "1").is_empty()
    });
    assert_eq!(close_amqp_connections(&format!("ferry {source}")), 1);
    ferry.wait_for_log_count(
        &format!("source {source}: consuming"),
        2,
        "consuming again",
        Duration::from_secs(15),
    );
    publish(&["--amqp", AMQP, "--queue", &queue, r#"{"n": 2}"#]);
    wait_until("message 2", Duration::from_secs(10), || {
        !lines_of(&log, "2").is_empty()
    });
    assert_eq!(
        amqp::wait_for_depth(&queue, Duration::from_secs(10), |d| d == 0),
        0
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    delete_queue(&queue);
}

#[test]
fn a_stream_source_skips_a_dead_node_and_acks_on_the_live_one() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &worker(&log));
    let dead = http::free_port();
    let control = http::free_port();
    let source = unique("fo-stream");
    let stream = unique("ferry-test-failover-stream");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{control}") },
        "pools": { "php": pool(&fpm) },
        "sources": [{ "name": source, "kind": "redis_stream",
                      "urls": [format!("redis://127.0.0.1:{dead}"), REDIS],
                      "stream": stream, "group": "g", "start": "0",
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        &format!("source {source}: consuming as"),
        Duration::from_secs(10),
    );
    assert!(
        ferry
            .log()
            .contains(&format!("connecting to 127.0.0.1:{dead} (node 1 of 2)")),
        "{}",
        ferry.log()
    );
    for n in 1..=3 {
        publish(&[
            "--redis",
            REDIS,
            "--stream",
            &stream,
            &format!(r#"{{"n": {n}}}"#),
        ]);
    }
    wait_until("three entries", Duration::from_secs(10), || {
        (1..=3).all(|n| !lines_of(&log, &n.to_string()).is_empty())
    });
    assert_eq!(
        kill_redis_clients(&source),
        1,
        "one connection, on the live node"
    );
    ferry.wait_for_log_count(
        &format!("source {source}: consuming as"),
        2,
        "consuming again",
        Duration::from_secs(10),
    );
    publish(&["--redis", REDIS, "--stream", &stream, r#"{"n": 4}"#]);
    wait_until("entry 4", Duration::from_secs(10), || {
        !lines_of(&log, "4").is_empty()
    });
    // Every entry acked on the live node: nothing pending in the group.
    wait_until("no pending entry", Duration::from_secs(10), || {
        let out = Command::new("redis-cli")
            .args(["XPENDING", &stream, "g"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().next() == Some("0")
    });
    assert_eq!(
        http::get_json(control, "/status")["sources"][0]["node"],
        "127.0.0.1:6379"
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    Command::new("redis-cli")
        .args(["DEL", &stream])
        .output()
        .unwrap();
}
