//! Outages under a running ferry (`docs/SEMANTICS.md` "Circuit breaker", "Reconnecting",
//! "Hand-back"): php-fpm stopped mid-run, RabbitMQ closing ferry's connection, a Redis
//! server restarted, two ferry processes on one queue. Needs RabbitMQ, Redis (`redis-server` binary) and php-fpm8.2.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_proc::{
    logging_worker, numbers, publish, unique, wait_for_lines, wait_for_numbers, worker_lines, Ferry,
};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::json;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn php_fpm_down_for_three_seconds_loses_nothing_and_burns_no_attempt() {
    let mut fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-fpm-outage");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "max_in_flight": 4 } },
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
        r#"{"n": {n}}"#,
    ]);
    wait_for_lines(&log, 200, Duration::from_secs(30));
    // The pool goes away between jobs (SIGQUIT lets requests in flight finish: a request
    // cut mid-way is retryable (`docs/SEMANTICS.md` "Outcome of a request") and counts an
    // attempt, which is not what this case measures). Messages keep arriving during the
    // outage.
    fpm.stop();
    let ticks_before = cpu_ticks(ferry.pid());
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "200",
        r#"{"n": 1{n}000}"#,
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let ticks_during = cpu_ticks(ferry.pid()) - ticks_before;
    fpm.restart();
    let lines = wait_for_lines(&log, 400, Duration::from_secs(60));
    let seen: BTreeSet<u64> = numbers(&lines).into_iter().collect();
    // Batch 2 numbers are 1{n}000: 11000, 12000, …, 1200000.
    let expected: BTreeSet<u64> = (1..=200)
        .chain((1..=200).map(|n| format!("1{n}000").parse().unwrap()))
        .collect();
    assert_eq!(seen, expected, "nothing lost");
    assert!(
        lines.iter().all(|l| l["attempt"] == 1),
        "no attempt burned by the outage"
    );
    // No spinning: probes follow the backoff schedule (200 ms doubling, jittered), so
    // 3 s of outage allows only a handful of connect attempts.
    let log_text = ferry.log();
    let probes =
        log_text.matches("still failing").count() + log_text.matches("circuit open").count();
    assert!(
        log_text.contains("circuit open"),
        "the circuit opened:\n{log_text}"
    );
    assert!(probes <= 8, "{probes} connect attempts in 3 s:\n{log_text}");
    eprintln!("ferry CPU during the 3 s outage: {ticks_during} ticks; {probes} connect attempts");
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}

#[test]
fn rabbitmq_closing_the_connection_is_survived_without_loss() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-reconnect");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "max_in_flight": 4 } },
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
        "300",
        r#"{"n": {n}, "sleep_ms": "20"}"#,
    ]);
    wait_for_lines(&log, 10, Duration::from_secs(30));
    let status = Command::new("rabbitmqctl")
        .args(["close_all_connections", "ferry test: forced close"])
        .output()
        .expect("rabbitmqctl (package rabbitmq-server) must be installed");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let lines = wait_for_numbers(&log, 300, Duration::from_secs(60));
    let seen: BTreeSet<u64> = numbers(&lines).into_iter().collect();
    assert_eq!(
        seen,
        (1..=300).collect(),
        "nothing lost; log:\n{}",
        ferry.log()
    );
    assert_eq!(
        amqp::wait_for_depth(&queue, Duration::from_secs(20), |depth| depth == 0),
        0,
        "all acked after the reconnect"
    );
    ferry.wait_for_log_count(
        "source tasks: consuming",
        2,
        "no reconnect",
        Duration::from_secs(20),
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}

/// A private redis-server on a free port, restarted under a running ferry.
#[test]
fn a_restarted_redis_server_is_resubscribed() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let start_redis = || {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (package redis-server) must be installed")
    };
    let wait_redis = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut redis = start_redis();
    wait_redis();
    let url = format!("redis://127.0.0.1:{port}");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": url, "channels": ["jobs"],
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source events: subscribed", Duration::from_secs(10));
    publish(&["--redis", &url, "--channel", "jobs", r#"{"n": 1}"#]);
    wait_for_lines(&log, 1, Duration::from_secs(10));

    redis.kill().unwrap();
    redis.wait().unwrap();
    let mut redis = start_redis();
    wait_redis();
    ferry.wait_for_log_count(
        "source events: subscribed",
        2,
        "no resubscribe",
        Duration::from_secs(30),
    );
    publish(&["--redis", &url, "--channel", "jobs", r#"{"n": 2}"#]);
    let lines = wait_for_lines(&log, 2, Duration::from_secs(10));
    assert_eq!(numbers(&lines), vec![1, 2]);
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    let _ = redis.kill();
    let _ = redis.wait();
}

#[test]
fn two_ferries_share_one_queue_without_duplicates() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-two");
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "1000",
        r#"{"n": {n}, "sleep_ms": "1"}"#,
    ]);
    let config = |name: &str| {
        json!({
            "control": { "listen": null },
            "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                                "max_in_flight": 2 } },
            "sources": [{ "name": name, "kind": "amqp", "url": AMQP, "queue": queue,
                          "prefetch": 4, "job": { "pool": "php", "script": script } }]
        })
    };
    let mut a = Ferry::start(fpm.dir(), &config("a"));
    let mut b = Ferry::start(fpm.dir(), &config("b"));
    let lines = wait_for_lines(&log, 1000, Duration::from_secs(60));
    let all = numbers(&lines);
    let seen: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(seen, (1..=1000).collect());
    assert_eq!(all.len(), 1000, "no duplicates when nothing failed");
    let by_a = lines.iter().filter(|l| l["source"] == "a").count();
    let by_b = lines.iter().filter(|l| l["source"] == "b").count();
    assert!(by_a > 0 && by_b > 0, "both got work: a {by_a}, b {by_b}");
    assert_eq!(worker_lines(&log).len(), 1000);
    a.signal("TERM");
    b.signal("TERM");
    assert!(a.wait(Duration::from_secs(10)).success());
    assert!(b.wait(Duration::from_secs(10)).success());
}

#[test]
fn a_pool_down_past_circuit_release_hands_the_messages_back_until_it_answers() {
    let mut fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    fpm.stop();
    let queue = unique("ferry-test-release");
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "20",
        r#"{"n": {n}}"#,
    ]);
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "circuit_release_ms": 500 } },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "prefetch": 8, "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("handing messages back", Duration::from_secs(10));
    // Every message is back in the queue for other hosts (none was started).
    let depth = amqp::wait_for_depth(&queue, Duration::from_secs(10), |depth| depth >= 20);
    assert!(
        depth >= 20,
        "messages not handed back ({depth}); log:\n{}",
        ferry.log()
    );
    assert!(worker_lines(&log).is_empty());
    fpm.restart();
    let lines = wait_for_lines(&log, 20, Duration::from_secs(30));
    let seen: BTreeSet<u64> = numbers(&lines).into_iter().collect();
    assert_eq!(seen, (1..=20).collect(), "log:\n{}", ferry.log());
    assert!(lines.iter().all(|l| l["attempt"] == 1));
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}
