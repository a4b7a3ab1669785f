//! The control endpoint under abuse (`docs/OPERATIONS.md` "Control endpoint", its
//! limits): 1,000 idle connections and a 1 MB header
//! while messages flow — every message is still delivered, the endpoint keeps answering,
//! and ferry's memory stays bounded; `/jobs` shows a slow job while it runs; JSON logs
//! are one JSON object per line. Needs Redis on 127.0.0.1:6379 and php-fpm8.2.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry_proc::{logging_worker, publish, rss_kib, unique, wait_for_numbers, Ferry};
use http::{free_port, get};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::{json, Value};

#[test]
fn idle_connections_and_a_huge_header_do_not_disturb_delivery() {
    let fpm = PhpFpm::start_with(PhpFpmOptions {
        children: 4,
        ..Default::default()
    });
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let port = free_port();
    let channel = unique("ferry-load");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()), "max_in_flight": 4 } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [channel], "backlog": 5000,
                      "job": { "pool": "php", "script": script } }]
    });
    let ferry = Ferry::start_args(
        fpm.dir(),
        &[
            "run",
            "--config",
            &{
                let path = fpm.dir().join("ferry-load.json");
                std::fs::write(&path, config.to_string()).unwrap();
                path.to_str().unwrap().to_string()
            },
            "--log-format",
            "json",
        ],
    );
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    let rss_before = rss_kib(ferry.pid());

    // 1,000 idle connections (ferry keeps at most 64 and closes the rest at once).
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    // A 1 MB header, sent while messages flow.
    let mut huge = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut header = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
    header.extend(std::iter::repeat_n(b'a', 1 << 20));
    let _ = huge.write_all(&header);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        "2000",
        r#"{"n": {n}}"#,
    ]);
    let lines = wait_for_numbers(&log, 2000, Duration::from_secs(60));
    assert_eq!(lines.len(), 2000, "every message delivered");
    assert!(
        get(port, "/healthz").1.starts_with("ok"),
        "the endpoint still answers"
    );
    let rss_after = rss_kib(ferry.pid());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    drop(idle);

    // JSON logs: one object per line.
    for line in ferry.log().lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string() && value["msg"].is_string());
    }
    ferry.signal("TERM");
}

#[test]
fn jobs_shows_a_slow_job_while_it_runs() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let port = free_port();
    let channel = unique("ferry-jobs");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [channel], "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        r#"{"n": 1, "sleep_ms": "1500"}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let jobs: Value = loop {
        let jobs: Value = serde_json::from_str(&get(port, "/jobs").1).unwrap();
        if jobs.as_array().is_some_and(|a| !a.is_empty()) {
            break jobs;
        }
        assert!(Instant::now() < deadline, "the slow job never showed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(jobs[0]["source"], "events");
    assert_eq!(jobs[0]["pool"], "php");
    assert_eq!(jobs[0]["attempt"], 1);
    assert!(jobs[0]["age_ms"].as_u64().is_some());
    // The worker logs when it starts, then sleeps: the job leaves /jobs when it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port, "/jobs").1 != "[]" {
        assert!(Instant::now() < deadline, "the job never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(15)).success());
}
