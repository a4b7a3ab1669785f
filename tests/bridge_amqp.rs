//! RabbitMQ → ferry → a real private php-fpm (`docs/SEMANTICS.md` "AMQP: at-least-once",
//! "Retries", "Dead-lettering"). Needs
//! RabbitMQ on 127.0.0.1:5672 (guest/guest) and php-fpm8.2; fails without them. Every
//! test uses its own queue.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferry_proc::{
    logging_worker, numbers, publish, unique, wait_for_lines, wait_for_numbers, worker_lines, Ferry,
};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::{json, Value};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn pool(fpm: &PhpFpm, max_in_flight: u32) -> Value {
    json!({ "address": format!("unix:{}", fpm.socket().display()), "max_in_flight": max_in_flight })
}

#[test]
fn ten_thousand_persistent_messages_all_processed_and_the_queue_empty() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 8,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-bulk");
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "10000",
        r#"{"n": {n}}"#,
    ]);
    assert_eq!(amqp::queue_depth(&queue), 10_000);
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm, 8) },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "prefetch": 8, "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    let lines = wait_for_lines(&log, 10_000, Duration::from_secs(120));
    let seen: BTreeSet<u64> = numbers(&lines).into_iter().collect();
    assert_eq!(seen, (1..=10_000).collect(), "every number processed");
    assert_eq!(
        lines.len(),
        10_000,
        "nothing processed twice when nothing failed"
    );
    assert_eq!(
        amqp::wait_for_depth(&queue, Duration::from_secs(10), |depth| depth == 0),
        0,
        "queue empty"
    );
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(10)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn kill_9_mid_run_loses_nothing() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-kill");
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "2000",
        r#"{"n": {n}}"#,
    ]);
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm, 4) },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "prefetch": 8, "job": { "pool": "php", "script": script } }]
    });
    let mut first = Ferry::start(fpm.dir(), &config);
    let before = wait_for_lines(&log, 300, Duration::from_secs(30));
    assert!(before.len() >= 300);
    first.signal("KILL");
    first.wait(Duration::from_secs(5));
    let at_kill = worker_lines(&log).len();

    let mut second = Ferry::start(fpm.dir(), &config);
    let lines = wait_for_numbers(&log, 2000, Duration::from_secs(60));
    let all = numbers(&lines);
    let seen: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        seen,
        (1..=2000).collect(),
        "every number processed at least once"
    );
    assert_eq!(
        amqp::wait_for_depth(&queue, Duration::from_secs(20), |depth| depth == 0),
        0
    );
    // Duplicates are only messages that were unacked at the kill: at most the prefetch
    // window plus what the workers were running (and what finished before the ack left).
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for n in &all {
        *counts.entry(*n).or_default() += 1;
    }
    let duplicates = counts.values().filter(|&&c| c > 1).count();
    assert!(
        duplicates <= 8 + 4,
        "{duplicates} duplicates (processed {at_kill} before the kill)"
    );
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(10)).success());
}

#[test]
fn failures_retry_then_dead_letter_and_permanent_ones_at_once() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-retry");
    let dlq = format!("{queue}.dead");
    // The dead-letter queue, fed through the default exchange by the queue's arguments.
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm, 2) },
        "sources": [
            { "name": "dead", "kind": "amqp", "url": AMQP, "queue": dlq, "prefetch": 1,
              "job": { "pool": "php", "script": script } },
        ]
    });
    // Create the DLQ by consuming it briefly with a ferry that never sees a message.
    {
        let mut setup = Ferry::start(fpm.dir(), &config);
        setup.wait_for_log("source dead: consuming", Duration::from_secs(10));
        setup.signal("TERM");
        setup.wait(Duration::from_secs(10));
    }
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm, 2) },
        "sources": [{
            "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
            "declare": { "durable": true, "arguments": {
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq } },
            "max_attempts": 3, "retry_delays_ms": [100, 200],
            "job": { "pool": "php", "script": script }
        }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source tasks: consuming", Duration::from_secs(10));
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 1, "status": "500"}"#,
    ]);
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 2, "status": "422"}"#,
    ]);
    publish(&["--amqp", AMQP, "--queue", &queue, "not json at all"]);
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 3, "status": "500", "action": "ack"}"#,
    ]);
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 4, "action": "retry"}"#,
    ]);

    assert_eq!(
        amqp::wait_for_depth(&dlq, Duration::from_secs(20), |depth| depth >= 4),
        4,
        "500×3, 422, non-JSON, retry×3 dead-lettered; log:\n{}",
        ferry.log()
    );
    let lines = worker_lines(&log);
    let attempts = |n: &str| -> Vec<i64> {
        lines
            .iter()
            .filter(|l| l["post"]["n"] == n)
            .map(|l| l["attempt"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(attempts("1"), vec![1, 2, 3], "retried up to max_attempts");
    assert_eq!(attempts("2"), vec![1], "422 is permanent");
    assert_eq!(
        attempts("3"),
        vec![1],
        "X-Ferry-Action: ack wins over the 500"
    );
    assert_eq!(
        attempts("4"),
        vec![1, 2, 3],
        "X-Ferry-Action: retry honoured"
    );
    let log_text = ferry.log();
    assert!(
        log_text.contains("cannot become a request"),
        "non-JSON payload logged clearly"
    );
    assert_eq!(amqp::queue_depth(&queue), 0);
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}

#[test]
fn sigterm_under_load_drains_and_hands_back_the_rest() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 2,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-drain");
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "300",
        r#"{"n": {n}, "sleep_ms": "20"}"#,
    ]);
    let config = json!({
        "control": { "listen": null },
        "shutdown_timeout_ms": 10000,
        "pools": { "php": pool(&fpm, 2) },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "prefetch": 16, "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    wait_for_lines(&log, 20, Duration::from_secs(20));
    ferry.signal("TERM");
    let status = ferry.wait(Duration::from_secs(15));
    assert!(
        status.success(),
        "exit 0 within the drain timeout; log:\n{}",
        ferry.log()
    );
    let processed = worker_lines(&log).len() as u32;
    let left = amqp::queue_depth(&queue);
    // Everything acked was processed, everything not processed is back in the queue.
    assert_eq!(processed + left, 300, "processed {processed}, left {left}");
    assert!(left > 0, "the drain stopped intake");
}

#[test]
fn dead_letter_publish_sends_a_confirmed_copy_with_the_reason() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-dlx");
    let dead = format!("{queue}.failed");
    // The target queue exists (with one seed message) before ferry publishes to it.
    publish(&["--amqp", AMQP, "--queue", &dead, "seed"]);
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm, 2) },
        "sources": [{
            "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
            "dead_letter": { "exchange": "", "routing_key": dead },
            "job": { "pool": "php", "script": script }
        }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source tasks: consuming", Duration::from_secs(10));
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 1, "status": "422"}"#,
    ]);
    assert_eq!(
        amqp::wait_for_depth(&dead, Duration::from_secs(20), |depth| depth >= 2),
        2,
        "the copy arrived; log:\n{}",
        ferry.log()
    );
    assert_eq!(
        amqp::queue_depth(&queue),
        0,
        "the original was acked after the confirm"
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}

#[test]
fn on_dispatch_acks_once_written_and_never_retries() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let queue = unique("ferry-test-on-dispatch");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": pool(&fpm, 2) },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "ack": "on_dispatch", "retry_delays_ms": [100],
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source tasks: consuming", Duration::from_secs(10));
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "5",
        r#"{"n": {n}, "status": "500"}"#,
    ]);
    let lines = wait_for_numbers(&log, 5, Duration::from_secs(20));
    // Give a wrongly scheduled retry time to happen before counting.
    std::thread::sleep(Duration::from_millis(500));
    let lines_after = worker_lines(&log);
    assert_eq!(lines.len(), 5, "log:\n{}", ferry.log());
    assert_eq!(
        lines_after.len(),
        5,
        "a failed on_dispatch job is not retried"
    );
    assert_eq!(amqp::queue_depth(&queue), 0, "acked when written");
    assert!(
        !ferry.log().contains("PRECONDITION_FAILED"),
        "no double ack"
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
}
