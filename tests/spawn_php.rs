//! Spawned `php-cgi` pools (`docs/SEMANTICS.md` "Spawned pools", README.md "Spawned
//! pools: ferry as the process manager"): ferry binds the socket,
//! starts php-cgi workers on fd 0, recycles them through `max_requests`, replaces one
//! that is `kill -9`ed while its job runs (the job is retried and nothing else is lost),
//! and leaves no worker behind. Needs php-cgi8.2 (package php8.2-cgi), Redis on
//! 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672; fails without them.

#[path = "support/amqp.rs"]
mod amqp;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/procs.rs"]
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_proc::{publish, temp_dir, unique, worker_lines, Ferry};
use serde_json::{json, Value};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn php_cgi() -> String {
    for candidate in ["/usr/bin/php-cgi8.2", "/usr/bin/php-cgi"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("php-cgi is missing: apt-get install php8.2-cgi (scripts/test.sh does)");
}

/// A worker that appends `{"phase", "pid", "n", "attempt", "env": {...}}` lines to `log`
/// when a job starts and when it is done, and sleeps `sleep_ms` on its first attempt.
fn worker(dir: &Path, log: &Path) -> PathBuf {
    let script = dir.join("worker.php");
    let source = format!(
        r#"<?php
function note($phase) {{
    file_put_contents({log:?}, json_encode([
        'phase' => $phase, 'pid' => getmypid(), 'n' => (int)($_POST['n'] ?? 0),
        'attempt' => (int)($_SERVER['FERRY_ATTEMPT'] ?? 0),
        'notify_socket' => getenv('NOTIFY_SOCKET'),
        'max_requests' => getenv('PHP_FCGI_MAX_REQUESTS'),
    ]) . "\n", FILE_APPEND | LOCK_EX);
}}
note('start');
if (isset($_POST['sleep_ms']) && (int)($_SERVER['FERRY_ATTEMPT'] ?? 1) == 1) {{
    usleep((int)$_POST['sleep_ms'] * 1000);
}}
note('done');
echo "ok";
"#,
        log = log.display().to_string()
    );
    std::fs::write(&script, source).unwrap();
    script
}

fn pool_pids(port: u16) -> Vec<u32> {
    http::get_json(port, "/status")["pools"][0]["processes"]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect()
}

/// `done` lines by message number.
/// After ferry exited: each of `pids` (recorded *before* the shutdown — once ferry is
/// gone its orphans are re-parented, so "ferry's children" proves nothing) is gone with
/// its process group, and ferry logged its end after "stopping … worker processes". A
/// worker killed by PR_SET_PDEATHSIG as ferry died would be gone too, but without that
/// line: ferry must stop its workers itself.
fn assert_stopped_by_ferry(log: &str, pool: &str, pids: &[u32]) {
    assert!(!pids.is_empty());
    let (_, after_stop) = log
        .split_once(&format!("stopping {} worker processes", pids.len()))
        .unwrap_or_else(|| panic!("no stop line for {} workers:\n{log}", pids.len()));
    for &pid in pids {
        assert!(!procs::alive(pid), "worker {pid} outlived ferry");
        assert!(
            procs::group_members(pid).is_empty(),
            "worker {pid}'s process group outlived ferry"
        );
        let stopped = format!("pool {pool}: process {pid} ");
        assert!(
            after_stop
                .lines()
                .any(|l| l.contains(&stopped) && !l.contains("restarting")),
            "ferry did not log the end of worker {pid}:\n{log}"
        );
    }
}

fn done_by_number(lines: &[Value]) -> BTreeMap<u64, Vec<Value>> {
    let mut by_number: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l["phase"] == "done") {
        by_number
            .entry(line["n"].as_u64().unwrap())
            .or_default()
            .push(line.clone());
    }
    by_number
}

#[test]
fn php_cgi_workers_recycle_after_max_requests_and_every_message_runs_once() {
    let php_cgi = php_cgi();
    let dir = temp_dir("ferry-spawn-php");
    let log = dir.join("worker.log");
    let script = worker(&dir, &log);
    let channel = unique("ferry-spawn-php");
    let port = http::free_port();
    // ferry runs under a (fake) service manager: its workers must not believe they do.
    let notify = dir.join("notify.sock");
    let _receiver = UnixDatagram::bind(&notify).unwrap();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "max_in_flight": 2,
                            "spawn": { "command": [php_cgi], "processes": 2, "max_requests": 5 } } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [channel], "job": { "pool": "php", "script": script } }]
    });
    let config_path = dir.join("ferry.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut ferry = Ferry::start_args_env(
        &dir,
        &["run", "--config", config_path.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify.to_str().unwrap())],
    );
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    assert!(
        procs::eventually(Duration::from_secs(10), || pool_pids(port).len() == 2),
        "two workers run"
    );
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        "40",
        r#"{"n": {n}}"#,
    ]);
    assert!(
        procs::eventually(Duration::from_secs(30), || {
            done_by_number(&worker_lines(&log)).len() == 40
        }),
        "every message handled; log:\n{}",
        ferry.log()
    );
    let lines = worker_lines(&log);
    let done = done_by_number(&lines);
    assert_eq!(
        done.keys().copied().collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    assert!(
        done.values().all(|v| v.len() == 1),
        "each message exactly once"
    );
    let pids: BTreeSet<u64> = lines.iter().map(|l| l["pid"].as_u64().unwrap()).collect();
    assert!(
        pids.len() >= 8,
        "40 requests at 5 per worker need at least 8 workers, saw {}",
        pids.len()
    );
    for line in &lines {
        assert_eq!(
            line["max_requests"], "5",
            "PHP_FCGI_MAX_REQUESTS from max_requests"
        );
        assert_eq!(
            line["notify_socket"], false,
            "NOTIFY_SOCKET is not inherited"
        );
    }
    assert!(ferry.log().contains("exited with status 0"));
    assert!(
        http::get_json(port, "/status")["pools"][0]["processes"]["restarts"]
            .as_u64()
            .unwrap()
            >= 6
    );

    // Recycled workers come back (a slot recycling again within a second waits out a
    // short backoff).
    assert!(procs::eventually(Duration::from_secs(10), || pool_pids(
        port
    )
    .len()
        == 2));
    let last = pool_pids(port);
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
    assert_stopped_by_ferry(&ferry.log(), "php", &last);
}

#[test]
fn a_php_cgi_killed_mid_job_is_replaced_and_its_job_retried_with_nothing_lost() {
    let php_cgi = php_cgi();
    let dir = temp_dir("ferry-spawn-kill");
    let log = dir.join("worker.log");
    let script = worker(&dir, &log);
    let queue = unique("ferry-spawn-kill");
    let port = http::free_port();
    const SLOW: u64 = 1000;
    // The slow one first, so it is surely running when we kill its worker.
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        r#"{"n": 1000, "sleep_ms": 20000}"#,
    ]);
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "max_in_flight": 3,
                            "spawn": { "command": [php_cgi], "processes": 3 } } },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "ack": "after_response", "retry_delays_ms": [200],
                      "job": { "pool": "php", "script": script } }]
    });
    let mut ferry = Ferry::start(&dir, &config);
    assert!(
        procs::eventually(Duration::from_secs(15), || {
            worker_lines(&log)
                .iter()
                .any(|l| l["phase"] == "start" && l["n"] == SLOW)
        }),
        "the slow job started; log:\n{}",
        ferry.log()
    );
    let victim = worker_lines(&log)
        .iter()
        .find(|l| l["phase"] == "start" && l["n"] == SLOW)
        .and_then(|l| l["pid"].as_u64())
        .unwrap() as u32;
    assert!(pool_pids(port).contains(&victim));
    publish(&[
        "--amqp",
        AMQP,
        "--queue",
        &queue,
        "--count",
        "30",
        r#"{"n": {n}}"#,
    ]);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Every message done, the slow one on its second attempt.
    let expected: BTreeSet<u64> = (1..=30).chain([SLOW]).collect();
    assert!(
        procs::eventually(Duration::from_secs(30), || {
            let done = done_by_number(&worker_lines(&log));
            expected.iter().all(|n| done.contains_key(n))
        }),
        "every message done; log:\n{}",
        ferry.log()
    );
    let done = done_by_number(&worker_lines(&log));
    assert_eq!(done[&SLOW].len(), 1, "the killed job completed once");
    assert_eq!(done[&SLOW][0]["attempt"], 2, "on its second attempt");
    for n in expected.iter().filter(|&&n| n != SLOW) {
        assert_eq!(done[n].len(), 1, "message {n} ran once");
    }
    assert_eq!(done.len(), expected.len(), "nothing else ran: {done:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while amqp::queue_depth(&queue) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(amqp::queue_depth(&queue), 0, "the queue drained");
    assert!(ferry
        .log()
        .contains(&format!("process {victim} killed by signal 9 (SIGKILL)")));
    let pids = pool_pids(port);
    assert_eq!(pids.len(), 3, "the worker was replaced");
    assert!(!pids.contains(&victim));

    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
    assert_stopped_by_ferry(&ferry.log(), "php", &pids);
}
