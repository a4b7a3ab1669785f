//! System calls per message, counted (never timed): one ferry process, Redis pub/sub to
//! a pool of `ferry responder` workers on a unix socket, 300 messages published one at a
//! time, `strace -c` attached to ferry for the run. What it proves (see BENCHMARKS.md,
//! "System calls per message", and docs/ARCHITECTURE.md, "One turn of the loop"):
//! - one read per message on the worker connection (a short read drains the socket: no
//!   read that can only answer EAGAIN, no read for the EOF of a finished request);
//! - one `epoll_ctl` per new worker connection (registered for reading only: a unix
//!   socket connects at once, so no interest change to wait for writability, and no
//!   deregistration before close), none per message with kept connections.
//!
//! Needs Redis on 127.0.0.1:6379 and `strace` (scripts/test.sh installs it).

#[path = "support/ferry.rs"]
mod ferry_proc;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_proc::{publish, unique, wait_for_lines, Ferry};
use serde_json::json;

const MESSAGES: usize = 300;

/// Runs the workload with `keep_conn`; ferry's system calls by name.
fn count_syscalls(keep_conn: bool) -> HashMap<String, u64> {
    let dir = std::env::temp_dir().join(unique("ferry-syscalls"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("w.sock");
    let log = dir.join("w.log");
    let _worker = Ferry::start_args(
        &dir,
        &[
            "responder",
            "--listen",
            &format!("unix:{}", socket.display()),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let channel = unique("ferry-test-syscalls");
    let ferry = Ferry::start(
        &dir,
        &json!({
            "control": { "listen": null },
            "pools": { "p": { "address": format!("unix:{}", socket.display()),
                              "max_in_flight": 4, "keep_conn": keep_conn } },
            "sources": [{ "name": "s", "kind": "redis", "url": "redis://127.0.0.1:6379",
                          "channels": [channel], "backlog": 10000,
                          "job": { "pool": "p", "script": "/w.php" } }]
        }),
    );
    ferry.wait_for_log("s: subscribed", Duration::from_secs(10));
    let summary = dir.join("strace.txt");
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(&summary)
        .args(["-p", &ferry.pid().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (scripts/test.sh installs it)");
    std::thread::sleep(Duration::from_millis(500)); // attached
                                                    // One at a time (a rate), so nothing is batched: every count is per message.
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        &MESSAGES.to_string(),
        "--rate",
        "300",
        "{\"n\": {n}}",
    ]);
    let lines = wait_for_lines(&log, MESSAGES, Duration::from_secs(30));
    assert_eq!(lines.len(), MESSAGES, "every message answered");
    std::thread::sleep(Duration::from_millis(200));
    let _ = nix_interrupt(strace.id());
    strace.wait().unwrap();
    let text = std::fs::read_to_string(&summary).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    parse_summary(&text)
}

/// SIGINT: strace prints its summary and detaches.
fn nix_interrupt(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
}

/// `strace -c`'s table: `% time seconds usecs/call calls [errors] syscall`.
fn parse_summary(text: &str) -> HashMap<String, u64> {
    let mut calls = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let name = fields[fields.len() - 1].to_string();
        if let Ok(count) = fields[3].parse::<u64>() {
            calls.insert(name, count);
        }
    }
    calls
}

fn per_message(calls: &HashMap<String, u64>, name: &str) -> f64 {
    calls.get(name).copied().unwrap_or(0) as f64 / MESSAGES as f64
}

#[test]
fn a_message_costs_one_read_and_one_epoll_ctl_on_a_new_connection() {
    let calls = count_syscalls(false);
    let reads = per_message(&calls, "recvfrom") + per_message(&calls, "read");
    let ctl = per_message(&calls, "epoll_ctl");
    // Per message: the Redis message (1 read) and the worker's answer (1 read); a
    // connect-and-close design once cost 3 reads and 3 epoll_ctl.
    assert!(reads <= 2.2, "{reads:.2} reads per message: {calls:?}");
    assert!(ctl <= 1.1, "{ctl:.2} epoll_ctl per message: {calls:?}");
    assert!(
        per_message(&calls, "connect") >= 0.95,
        "a connection per message: {calls:?}"
    );
}

#[test]
fn kept_connections_cost_no_epoll_ctl_per_message() {
    let calls = count_syscalls(true);
    let reads = per_message(&calls, "recvfrom") + per_message(&calls, "read");
    assert!(reads <= 2.2, "{reads:.2} reads per message: {calls:?}");
    assert!(
        per_message(&calls, "epoll_ctl") <= 0.1,
        "kept connections are registered once: {calls:?}"
    );
    assert!(
        per_message(&calls, "connect") <= 0.1,
        "kept connections are reused: {calls:?}"
    );
}

/// A burst larger than a source's read buffer makes ferry read the rest without an
/// event (a re-read); once the burst is worked off, the loop sleeps again: an idle
/// second costs a handful of system calls, not a spin.
#[test]
fn after_a_burst_larger_than_the_read_buffer_the_loop_sleeps() {
    let dir = std::env::temp_dir().join(unique("ferry-syscalls-burst"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("w.sock");
    let log = dir.join("w.log");
    let _worker = Ferry::start_args(
        &dir,
        &[
            "responder",
            "--listen",
            &format!("unix:{}", socket.display()),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let channel = unique("ferry-test-burst");
    // Read buffer: max_message_bytes + 256 KiB; 3,000 messages of 1 KiB overflow it.
    let ferry = Ferry::start(
        &dir,
        &json!({
            "control": { "listen": null },
            "pools": { "p": { "address": format!("unix:{}", socket.display()),
                              "max_in_flight": 4 } },
            "sources": [{ "name": "s", "kind": "redis", "url": "redis://127.0.0.1:6379",
                          "channels": [channel], "backlog": 10000,
                          "max_message_bytes": 2048,
                          "job": { "pool": "p", "script": "/w.php", "body": "raw" } }]
        }),
    );
    ferry.wait_for_log("s: subscribed", Duration::from_secs(10));
    let payload = format!("{{\"n\": {{n}}, \"pad\": \"{}\"}}", "x".repeat(1000));
    // Stopped while the burst is published, ferry finds far more than its read buffer
    // waiting when it runs again: the fill stops at the limit and the rest is re-read.
    ferry.signal("STOP");
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        "3000",
        &payload,
    ]);
    ferry.signal("CONT");
    let lines = wait_for_lines(&log, 3000, Duration::from_secs(60));
    assert_eq!(lines.len(), 3000, "every message answered");
    std::thread::sleep(Duration::from_millis(300));
    let summary = dir.join("idle.txt");
    let mut strace = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(&summary)
        .args(["-p", &ferry.pid().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (scripts/test.sh installs it)");
    std::thread::sleep(Duration::from_millis(1000));
    let _ = nix_interrupt(strace.id());
    strace.wait().unwrap();
    let calls = parse_summary(&std::fs::read_to_string(&summary).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let total: u64 = calls.values().sum();
    assert!(total <= 50, "an idle second after the burst: {calls:?}");
}
