//! SIGHUP reload (`docs/SEMANTICS.md` "Reload"): a source added by a reload receives
//! messages, a removed one stops, a changed one is restarted with its counters, the
//! untouched one is left alone, and a bad new configuration is refused with the old one
//! kept. Needs Redis on 127.0.0.1:6379 and php-fpm8.2.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::process::Command;
use std::time::{Duration, Instant};

use ferry_proc::{logging_worker, publish, unique, worker_lines};
use php_fpm::PhpFpm;
use serde_json::{json, Value};

fn wait_lines(log: &std::path::Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = worker_lines(log);
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_adds_removes_and_changes_sources_and_refuses_a_bad_file() {
    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    let (a, b, c) = (unique("reload-a"), unique("reload-b"), unique("reload-c"));
    let pool = json!({ "address": format!("unix:{}", fpm.socket().display()) });
    let source = |name: &str, channel: &str| {
        json!({ "name": name, "kind": "redis", "url": "redis://127.0.0.1:6379",
                "channels": [channel], "job": { "pool": "php", "script": script } })
    };
    let config_path = fpm.dir().join("ferry.json");
    let write = |config: &Value| std::fs::write(&config_path, config.to_string()).unwrap();
    write(
        &json!({ "control": { "listen": null }, "pools": { "php": pool },
                   "sources": [source("one", &a), source("two", &b)] }),
    );
    let ferry_log = fpm.dir().join("ferry-reload.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "run",
            "--config",
            config_path.to_str().unwrap(),
            "--log-level",
            "debug",
        ])
        .stderr(std::fs::File::create(&ferry_log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&ferry_log).unwrap_or_default();
    let wait_log = |needle: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while read_log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} ×{count}:\n{}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
    };
    wait_log("source one: subscribed", 1);
    wait_log("source two: subscribed", 1);

    // Reload: "two" removed, "three" added, "one" untouched.
    write(
        &json!({ "control": { "listen": null }, "pools": { "php": pool },
                   "sources": [source("one", &a), source("three", &c)] }),
    );
    hup();
    wait_log("configuration reloaded (1 added, 0 changed, 1 removed)", 1);
    wait_log("source three: subscribed", 1);
    assert_eq!(
        read_log().matches("source one: subscribed").count(),
        1,
        "one untouched"
    );
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &c,
        r#"{"n": 3}"#,
    ]);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &b,
        r#"{"n": 2}"#,
    ]);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &a,
        r#"{"n": 1}"#,
    ]);
    let lines = wait_lines(&log, 2);
    std::thread::sleep(Duration::from_millis(300));
    let lines_after = worker_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines_after.len(), 2, "the removed source took a message");
    let sources: Vec<&str> = lines_after
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"one") && sources.contains(&"three"),
        "{sources:?}"
    );

    // A bad file is refused; everything keeps running.
    std::fs::write(&config_path, r#"{"pools": {}, "sourcez": []}"#).unwrap();
    hup();
    wait_log("new configuration refused, the old one stays", 1);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &a,
        r#"{"n": 4}"#,
    ]);
    assert_eq!(wait_lines(&log, 3).len(), 3);

    // A changed source (new channel) is restarted; the old channel no longer feeds it.
    let d = unique("reload-d");
    write(
        &json!({ "control": { "listen": null }, "pools": { "php": pool },
                   "sources": [source("one", &d), source("three", &c)] }),
    );
    hup();
    wait_log("configuration reloaded (0 added, 1 changed, 0 removed)", 1);
    wait_log("source one: subscribed", 2);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &a,
        r#"{"n": 5}"#,
    ]);
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &d,
        r#"{"n": 6}"#,
    ]);
    let lines = wait_lines(&log, 4);
    std::thread::sleep(Duration::from_millis(300));
    let numbers: Vec<String> = worker_lines(&log)
        .iter()
        .map(|l| l["post"]["n"].as_str().unwrap().to_string())
        .collect();
    assert!(numbers.iter().any(|n| n == "6"), "{lines:?}");
    assert!(
        !numbers.iter().any(|n| n == "5"),
        "the old channel still fed it: {lines:?}"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", read_log());
}
