//! Redis Streams → ferry → a real private php-fpm: at-least-once through `kill -9`,
//! retries whose attempt survives a restart, the dead-letter stream, an entry trimmed
//! while pending, takeover of a dead consumer's entries, a connection killed while
//! blocked, RESP2 and RESP3. Needs Redis 7 on 127.0.0.1:6379 and php-fpm8.2; fails
//! without them. Each test uses its own stream and group.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_proc::{logging_worker, publish, unique, worker_lines, Ferry};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::json;

const REDIS: &str = "redis://127.0.0.1:6379";

/// `redis-cli` against the test server (a real client, not a mock); its output lines.
fn redis(args: &[&str]) -> Vec<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !text.starts_with("Could not connect"),
        "Redis must run on 127.0.0.1:6379"
    );
    text.lines().map(str::to_string).collect()
}

fn number(args: &[&str]) -> u64 {
    redis(args)
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("redis-cli {args:?}: not a number"))
}

/// Entries pending in `group`.
fn pending(stream: &str, group: &str) -> u64 {
    number(&["XPENDING", stream, group])
}

fn cleanup(stream: &str) {
    redis(&["DEL", stream, &format!("{stream}.ferry-dead")]);
}

fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn source(
    name: &str,
    stream: &str,
    group: &str,
    script: &Path,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut source = json!({
        "name": name, "kind": "redis_stream", "url": REDIS,
        "stream": stream, "group": group, "start": "0",
        "job": { "pool": "php", "script": script }
    });
    if let (Some(s), Some(extra)) = (source.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    source
}

fn config(
    fpm: &PhpFpm,
    max_in_flight: u32,
    control: Option<u16>,
    sources: Vec<serde_json::Value>,
) -> serde_json::Value {
    json!({
        "control": { "listen": control.map(|p| format!("127.0.0.1:{p}")) },
        "shutdown_timeout_ms": 5000,
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "max_in_flight": max_in_flight, "request_timeout_ms": 10000 } },
        "sources": sources
    })
}

fn fpm(children: u32) -> (PhpFpm, std::path::PathBuf, std::path::PathBuf) {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    (fpm, log, script)
}

#[test]
fn ten_kill_nines_over_two_processes_lose_no_entry() {
    let (fpm, log, script) = fpm(8);
    let stream = unique("ferry-test-stream");
    let group = "g";
    cleanup(&stream);
    const COUNT: u64 = 3000;
    publish(&[
        "--redis",
        REDIS,
        "--stream",
        &stream,
        "--count",
        &COUNT.to_string(),
        r#"{"n": {n}, "sleep_ms": 8}"#,
    ]);
    let configs: Vec<serde_json::Value> = ["a", "b"]
        .iter()
        .map(|who| {
            config(
                &fpm,
                4,
                None,
                vec![source(
                    "orders",
                    &stream,
                    group,
                    &script,
                    json!({ "consumer": format!("{who}-orders"), "claim_idle_ms": 20000 }),
                )],
            )
        })
        .collect();
    let mut ferries: Vec<Ferry> = configs.iter().map(|c| Ferry::start(fpm.dir(), c)).collect();
    let mut kills = 0;
    let mut in_flight_at_kill = Vec::new();
    while kills < 10 {
        std::thread::sleep(Duration::from_millis(250));
        let victim = kills % 2;
        let before = worker_lines(&log).len();
        ferries[victim].signal("KILL");
        ferries[victim].wait(Duration::from_secs(5));
        in_flight_at_kill.push(before);
        ferries[victim] = Ferry::start(fpm.dir(), &configs[victim]);
        kills += 1;
    }
    let done = eventually(Duration::from_secs(60), || {
        let lines = worker_lines(&log);
        let seen: BTreeSet<String> = lines
            .iter()
            .filter_map(|l| l["message_id"].as_str().map(str::to_string))
            .collect();
        seen.len() as u64 == COUNT && pending(&stream, group) == 0
    });
    let lines = worker_lines(&log);
    let mut runs: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        *runs
            .entry(line["message_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let duplicates: u64 = runs.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9 x{kills}: {} entries, {} runs, {} distinct, {duplicates} duplicates, pending {}",
        COUNT,
        lines.len(),
        runs.len(),
        pending(&stream, group)
    );
    assert!(
        done,
        "every entry ran and was acked ({} distinct of {COUNT})",
        runs.len()
    );
    assert_eq!(runs.len() as u64, COUNT, "no entry lost");
    // At most what was in flight per kill: 4 requests, plus acks not yet answered.
    assert!(duplicates <= 10 * 8, "{duplicates} duplicates");
    assert_eq!(number(&["XLEN", &format!("{stream}.ferry-dead")]), 0);
    drop(ferries);
    cleanup(&stream);
}

#[test]
fn a_retry_keeps_its_attempt_across_a_restart_then_is_dead_lettered() {
    let (fpm, log, script) = fpm(2);
    let stream = unique("ferry-test-stream");
    cleanup(&stream);
    publish(&[
        "--redis",
        REDIS,
        "--stream",
        &stream,
        r#"{"n": 1, "status": 500}"#,
    ]);
    let config = config(
        &fpm,
        2,
        None,
        vec![source(
            "orders",
            &stream,
            "g",
            &script,
            json!({ "retry_delays_ms": [400], "max_attempts": 4 }),
        )],
    );
    let mut ferry = Ferry::start(fpm.dir(), &config);
    assert!(eventually(Duration::from_secs(15), || worker_lines(&log)
        .len()
        >= 2));
    ferry.signal("KILL");
    ferry.wait(Duration::from_secs(5));
    let _ferry = Ferry::start(fpm.dir(), &config);
    let dead = format!("{stream}.ferry-dead");
    assert!(
        eventually(Duration::from_secs(20), || number(&["XLEN", &dead]) == 1),
        "dead-lettered after the last attempt"
    );
    let attempts: Vec<u64> = worker_lines(&log)
        .iter()
        .map(|l| l["attempt"].as_u64().unwrap())
        .collect();
    eprintln!("attempts across the restart: {attempts:?}");
    assert!(
        attempts.windows(2).all(|w| w[1] > w[0]),
        "never counted again from 1: {attempts:?}"
    );
    assert_eq!(*attempts.last().unwrap(), 4);
    assert_eq!(attempts.first(), Some(&1));
    let fields = redis(&["XRANGE", &dead, "-", "+"]);
    let fields: Vec<&str> = fields.iter().skip(1).map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "n",
            "1",
            "status",
            "500",
            "ferry-failure",
            "server_error",
            "ferry-attempts",
            "4"
        ]
    );
    assert_eq!(pending(&stream, "g"), 0, "acked with the copy");
    cleanup(&stream);
}

#[test]
fn a_permanent_failure_goes_to_the_dead_letter_stream_over_resp2() {
    let (fpm, log, script) = fpm(2);
    let stream = unique("ferry-test-stream");
    cleanup(&stream);
    let config = config(
        &fpm,
        2,
        None,
        vec![source(
            "orders",
            &stream,
            "g",
            &script,
            json!({ "resp": 2 }),
        )],
    );
    let ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source orders: consuming as", Duration::from_secs(10));
    assert!(ferry.log().contains("(RESP2, Redis 7"), "{}", ferry.log());
    publish(&[
        "--redis",
        REDIS,
        "--stream",
        &stream,
        r#"{"id": "x 1", "status": 404}"#,
    ]);
    let dead = format!("{stream}.ferry-dead");
    assert!(eventually(Duration::from_secs(10), || number(&[
        "XLEN", &dead
    ]) == 1));
    let fields = redis(&["XRANGE", &dead, "-", "+"]);
    let fields: Vec<&str> = fields.iter().skip(1).map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "id",
            "x 1",
            "status",
            "404",
            "ferry-failure",
            "client_error",
            "ferry-attempts",
            "1"
        ]
    );
    assert_eq!(
        worker_lines(&log).len(),
        1,
        "no retry for a permanent failure"
    );
    assert!(eventually(Duration::from_secs(5), || pending(&stream, "g") == 0));
    cleanup(&stream);
}

#[test]
fn an_entry_trimmed_while_pending_is_acked_and_counted_discarded() {
    let (fpm, log, script) = fpm(2);
    let stream = unique("ferry-test-stream");
    cleanup(&stream);
    redis(&["XGROUP", "CREATE", &stream, "g", "$", "MKSTREAM"]);
    redis(&["XADD", &stream, "*", "n", "1"]);
    redis(&["XADD", &stream, "*", "n", "2"]);
    // Delivered to ferry's consumer (as before a crash), then trimmed away.
    redis(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "me-orders",
        "COUNT",
        "1",
        "STREAMS",
        &stream,
        ">",
    ]);
    redis(&["XTRIM", &stream, "MAXLEN", "1"]);
    assert_eq!(pending(&stream, "g"), 1);
    let port = http::free_port();
    let config = config(
        &fpm,
        2,
        Some(port),
        vec![source(
            "orders",
            &stream,
            "g",
            &script,
            json!({ "consumer": "me-orders" }),
        )],
    );
    let _ferry = Ferry::start(fpm.dir(), &config);
    assert!(eventually(Duration::from_secs(10), || worker_lines(&log)
        .len()
        == 1));
    assert!(eventually(Duration::from_secs(5), || pending(&stream, "g") == 0));
    let (_, metrics) = http::get(port, "/metrics");
    assert!(
        metrics.contains(r#"ferry_messages_settled_total{source="orders",outcome="discarded"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        worker_lines(&log)[0]["post"]["n"],
        "2",
        "the surviving entry ran"
    );
    cleanup(&stream);
}

#[test]
fn a_dead_consumers_entries_are_claimed_with_xautoclaim() {
    let (fpm, log, script) = fpm(2);
    let stream = unique("ferry-test-stream");
    cleanup(&stream);
    redis(&["XGROUP", "CREATE", &stream, "g", "$", "MKSTREAM"]);
    for n in 1..=3 {
        redis(&["XADD", &stream, "*", "n", &n.to_string()]);
    }
    redis(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "died",
        "COUNT",
        "10",
        "STREAMS",
        &stream,
        ">",
    ]);
    let config = config(
        &fpm,
        2,
        None,
        vec![source(
            "orders",
            &stream,
            "g",
            &script,
            json!({ "claim_idle_ms": 1000 }),
        )],
    );
    let _ferry = Ferry::start(fpm.dir(), &config);
    assert!(
        eventually(Duration::from_secs(15), || worker_lines(&log).len() == 3),
        "the three entries of the dead consumer ran"
    );
    assert!(eventually(Duration::from_secs(5), || pending(&stream, "g") == 0));
    for line in worker_lines(&log) {
        assert_eq!(line["attempt"], 2, "claimed: delivered a second time");
    }
    cleanup(&stream);
}

#[test]
fn a_connection_killed_while_blocked_is_reconnected_in_resp3() {
    let (fpm, log, script) = fpm(2);
    let stream = unique("ferry-test-stream");
    cleanup(&stream);
    let name = unique("src").replace('-', "_");
    let config = config(
        &fpm,
        2,
        None,
        vec![source(&name, &stream, "g", &script, json!({}))],
    );
    let ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log(
        &format!("source {name}: consuming as"),
        Duration::from_secs(10),
    );
    assert!(ferry.log().contains("(RESP3, Redis 7"));
    std::thread::sleep(Duration::from_millis(300)); // inside a BLOCK now
                                                    // Only ferry's own connection (by its name): other tests share this Redis.
    let client_name = format!("name=ferry:{name} ");
    let id = redis(&["CLIENT", "LIST"])
        .iter()
        .find(|line| line.contains(&client_name))
        .and_then(|line| {
            line.strip_prefix("id=")?
                .split(' ')
                .next()
                .map(str::to_string)
        })
        .expect("ferry's connection is listed");
    assert_eq!(
        number(&["CLIENT", "KILL", "ID", &id]),
        1,
        "killed while blocked"
    );
    publish(&[
        "--redis",
        REDIS,
        "--stream",
        &stream,
        "--count",
        "20",
        r#"{"n": {n}}"#,
    ]);
    assert!(
        eventually(Duration::from_secs(15), || worker_lines(&log).len() == 20),
        "{}",
        ferry.log()
    );
    assert!(eventually(Duration::from_secs(5), || pending(&stream, "g") == 0));
    assert!(
        ferry.log().matches("consuming as").count() >= 2,
        "it reconnected"
    );
    cleanup(&stream);
}

#[test]
fn check_reports_the_stream_group_pending_and_lag() {
    let (fpm, _log, script) = fpm(1);
    let stream = unique("ferry-test-stream");
    cleanup(&stream);
    let config = config(
        &fpm,
        1,
        None,
        vec![source("orders", &stream, "g", &script, json!({}))],
    );
    let path = fpm.dir().join("check.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let check = || {
        let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "check",
                "--config",
                path.to_str().unwrap(),
                "--json",
                "--no-script",
            ])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stdout)));
        report["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "redis_stream")
            .cloned()
            .unwrap()
    };
    let before = check();
    assert_eq!(before["ok"], true, "{before}");
    assert!(
        before["note"].as_str().unwrap().contains("will create it"),
        "{before}"
    );
    redis(&["XGROUP", "CREATE", &stream, "g", "$", "MKSTREAM"]);
    publish(&[
        "--redis",
        REDIS,
        "--stream",
        &stream,
        "--count",
        "3",
        r#"{"n": {n}}"#,
    ]);
    redis(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "x",
        "COUNT",
        "1",
        "STREAMS",
        &stream,
        ">",
    ]);
    let after = check();
    assert_eq!(after["stream"]["length"], 3, "{after}");
    assert_eq!(after["stream"]["pending"], 1, "{after}");
    assert_eq!(after["stream"]["lag"], 2, "{after}");
    cleanup(&stream);
}
