//! Spawned pools as a process manager (`docs/SEMANTICS.md` "Spawned pools", README.md
//! "Spawned pools: ferry as the process manager"): `ferry responder` as the worker
//! (recycled through `PHP_FCGI_MAX_REQUESTS`, reached over unix or loopback TCP), the
//! environment workers get, shutdown leaving no process and no socket directory (also when
//! a worker ignores SIGTERM, and on a second signal), backed-off restarts of a command that
//! cannot run, and a reload that replaces only the changed pool's workers. Needs Redis on
//! 127.0.0.1:6379; fails without it.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/procs.rs"]
mod procs;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_proc::{publish, temp_dir, unique, worker_lines, Ferry};
use serde_json::{json, Value};

const REDIS: &str = "redis://127.0.0.1:6379";
const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// The `processes` object of pool `name` in `/status`.
fn processes(port: u16, name: &str) -> Value {
    http::get_json(port, "/status")["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["processes"].clone())
        .unwrap_or(Value::Null)
}

fn pids(port: u16, name: &str) -> Vec<u32> {
    processes(port, name)["pids"]
        .as_array()
        .map(|a| a.iter().map(|p| p.as_u64().unwrap() as u32).collect())
        .unwrap_or_default()
}

/// Writes `config` to `dir/ferry.json` and starts ferry on it, with `RUNTIME_DIRECTORY`
/// set to `dir`, so the socket directory is `dir/ferry-<pid>`.
fn start(dir: &Path, config: &Value, env: &[(&str, &str)]) -> (Ferry, PathBuf) {
    let path = dir.join("ferry.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let mut all = vec![("RUNTIME_DIRECTORY", dir.to_str().unwrap())];
    all.extend_from_slice(env);
    let ferry = Ferry::start_args_env(
        dir,
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--log-level",
            "debug",
        ],
        &all,
    );
    (ferry, path)
}

fn redis_source(channel: &str, pool: &str) -> Value {
    json!({ "name": format!("events-{pool}"), "kind": "redis", "url": REDIS,
            "channels": [channel], "job": { "pool": pool, "script": "/srv/worker.php" } })
}

fn publish_numbers(channel: &str, count: u32) {
    publish(&[
        "--redis",
        REDIS,
        "--channel",
        channel,
        "--count",
        &count.to_string(),
        r#"{"n": {n}}"#,
    ]);
}

/// POST field `n` of the responder's log lines.
fn logged_numbers(log: &Path) -> Vec<u64> {
    worker_lines(log)
        .iter()
        .filter_map(|l| l["body"].as_str())
        .filter_map(|body| body.strip_prefix("n=").and_then(|n| n.parse().ok()))
        .collect()
}

fn assert_gone(pids: &[u32], socket_dir: &Path) {
    for &pid in pids {
        assert!(!procs::alive(pid), "worker {pid} outlived ferry");
        assert!(
            procs::group_members(pid).is_empty(),
            "worker {pid}'s process group outlived ferry"
        );
    }
    assert!(
        !socket_dir.exists(),
        "{} still exists",
        socket_dir.display()
    );
}

#[test]
fn ferry_responder_workers_recycle_and_serve_over_unix_and_loopback_tcp() {
    let dir = temp_dir("ferry-spawn-responder");
    let port = http::free_port();
    let (unix_log, tcp_log) = (dir.join("unix.log"), dir.join("tcp.log"));
    let (unix_channel, tcp_channel) = (unique("ferry-spawn-u"), unique("ferry-spawn-t"));
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": {
            "unix": { "max_in_flight": 2,
                      "spawn": { "command": ["ferry", "responder", "--log", unix_log],
                                 "processes": 2, "max_requests": 3 } },
            "tcp": { "keep_conn": true,
                     "spawn": { "command": ["ferry", "responder", "--log", tcp_log],
                                "processes": 1, "listen": "tcp:127.0.0.1:0" } }
        },
        "sources": [redis_source(&unix_channel, "unix"), redis_source(&tcp_channel, "tcp")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("events-tcp: subscribed", Duration::from_secs(10));
    ferry.wait_for_log("events-unix: subscribed", Duration::from_secs(10));
    publish_numbers(&unix_channel, 30);
    publish_numbers(&tcp_channel, 20);
    let all = |log: &Path, count: u64| {
        let mut numbers = logged_numbers(log);
        numbers.sort_unstable();
        numbers == (1..=count).collect::<Vec<_>>()
    };
    assert!(
        procs::eventually(Duration::from_secs(20), || all(&unix_log, 30)
            && all(&tcp_log, 20)),
        "every message once; log:\n{}",
        ferry.log()
    );
    assert!(ferry.log().contains("on tcp:127.0.0.1:"));
    // A responder serves several connections at once: reaching 3 answers it stops
    // accepting and finishes what it holds (at most max_in_flight - 1 more). So 30
    // requests take at least 8 workers: 6 restarts.
    let unix = processes(port, "unix");
    assert!(unix["restarts"].as_u64().unwrap() >= 6, "{unix}");
    assert!(
        procs::eventually(Duration::from_secs(5), || processes(port, "unix")
            ["running"]
            == 2),
        "recycled workers are replaced at once"
    );
    // max_requests 0: the TCP worker never recycles.
    let tcp = processes(port, "tcp");
    assert_eq!(
        (tcp["restarts"].as_u64(), tcp["running"].as_u64()),
        (Some(0), Some(1))
    );
    let (_, metrics) = http::get(port, "/metrics");
    assert!(
        metrics.contains("ferry_pool_processes{pool=\"unix\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_pool_process_restarts_total{pool=\"tcp\"} 0"));

    let workers = [pids(port, "unix"), pids(port, "tcp")].concat();
    let socket_dir = dir.join(format!("ferry-{}", ferry.pid()));
    assert!(socket_dir.join("unix.sock").exists());
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
    assert_gone(&workers, &socket_dir);
}

#[test]
fn workers_get_ferrys_environment_without_the_service_managers_variables() {
    let dir = temp_dir("ferry-spawn-env");
    let log = dir.join("responder.log");
    let channel = unique("ferry-spawn-env");
    let notify = dir.join("notify.sock");
    let _receiver = UnixDatagram::bind(&notify).unwrap();
    // A wrapper records the environment the worker gets, then becomes the responder.
    let wrapper = format!(
        "env > {dir}/env-$$.txt; exec {FERRY} responder --log {log}",
        dir = dir.display(),
        log = log.display()
    );
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "spawn": { "command": ["sh", "-c", wrapper], "processes": 2 } } },
        "sources": [redis_source(&channel, "php")]
    });
    let (mut ferry, _) = start(
        &dir,
        &config,
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("LISTEN_FDS", "1"),
            ("PHP_FCGI_CHILDREN", "8"),
            ("FERRY_TEST_KEPT", "yes"),
        ],
    );
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    publish_numbers(&channel, 10);
    assert!(
        procs::eventually(Duration::from_secs(10), || logged_numbers(&log).len() == 10),
        "{}",
        ferry.log()
    );
    let envs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("env-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(envs.len(), 2, "one environment per worker");
    for env in &envs {
        let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
        for gone in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "PHP_FCGI_CHILDREN",
            "WATCHDOG_USEC",
        ] {
            assert!(!names.contains(&gone), "{gone} inherited:\n{env}");
        }
        assert!(env.lines().any(|l| l == "FERRY_TEST_KEPT=yes"), "{env}");
        assert!(env.lines().any(|l| l == "PHP_FCGI_MAX_REQUESTS=0"), "{env}");
    }
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

/// A worker that ignores SIGTERM and serves nothing (`sleep` inherits the ignored TERM).
const STUBBORN: &str = "trap '' TERM; while :; do sleep 0.2; done";

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_the_timeout() {
    let dir = temp_dir("ferry-spawn-stubborn");
    let port = http::free_port();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "shutdown_timeout_ms": 1000,
        "pools": { "php": { "spawn": { "command": ["sh", "-c", STUBBORN], "processes": 2 } } },
        "sources": [redis_source(&unique("ferry-spawn-stubborn"), "php")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    assert!(procs::eventually(Duration::from_secs(10), || pids(
        port, "php"
    )
    .len()
        == 2));
    let workers = pids(port, "php");
    let socket_dir = dir.join(format!("ferry-{}", ferry.pid()));
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
    let log = ferry.log();
    assert!(log.contains("SIGKILL after 1000 ms"), "{log}");
    assert_eq!(log.matches("after SIGTERM; killed").count(), 2, "{log}");
    assert_gone(&workers, &socket_dir);
}

#[test]
fn a_second_signal_kills_the_workers_at_once() {
    let dir = temp_dir("ferry-spawn-second");
    let port = http::free_port();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "shutdown_timeout_ms": 60000,
        "pools": { "php": { "spawn": { "command": ["sh", "-c", STUBBORN], "processes": 2 } } },
        "sources": [redis_source(&unique("ferry-spawn-second"), "php")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    assert!(procs::eventually(Duration::from_secs(10), || pids(
        port, "php"
    )
    .len()
        == 2));
    let workers = pids(port, "php");
    let socket_dir = dir.join(format!("ferry-{}", ferry.pid()));
    ferry.signal("TERM");
    ferry.wait_for_log("SIGKILL after 5000 ms", Duration::from_secs(10));
    ferry.signal("TERM");
    let exit = ferry.wait(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(1), "{}", ferry.log());
    assert!(ferry.log().contains("killed processes"));
    assert_gone(&workers, &socket_dir);
}

#[test]
fn a_command_that_cannot_run_is_restarted_with_backoff_and_ferry_keeps_running() {
    let dir = temp_dir("ferry-spawn-broken");
    let port = http::free_port();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": {
            "missing": { "spawn": { "command": ["/nonexistent/php-cgi"], "processes": 2 } },
            "crashing": { "spawn": { "command": ["sh", "-c", "exit 3"], "processes": 1 } }
        },
        "sources": [redis_source(&unique("ferry-spawn-m"), "missing"),
                    redis_source(&unique("ferry-spawn-c"), "crashing")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    // Over ~3 s, a restart schedule from 200 ms doubling (each delay jittered to at least
    // half its step) allows at most 1 + 5 starts per worker; a restart loop would make
    // thousands. ferry's own startup adds slack, so allow 7.
    std::thread::sleep(Duration::from_secs(3));
    let log = ferry.log();
    let cannot_start = log.matches("cannot start \"/nonexistent/php-cgi\"").count();
    let crashes = log.matches("exited with status 3").count();
    assert!(
        (2..=14).contains(&cannot_start),
        "{cannot_start} start attempts:\n{log}"
    );
    assert!((2..=7).contains(&crashes), "{crashes} crashes:\n{log}");
    assert_eq!(http::get(port, "/healthz").0, 200, "ferry keeps running");
    let (code, body) = http::get(port, "/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("pool missing circuit is open"), "{body}");
    assert!(body.contains("pool crashing circuit is open"), "{body}");
    let (_, metrics) = http::get(port, "/metrics");
    assert!(
        !metrics.contains("ferry_pool_failures_total{pool=\"missing\",reason=\"no_process\"} 0"),
        "{metrics}"
    );
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn a_reload_replaces_the_workers_of_a_changed_pool_only() {
    let dir = temp_dir("ferry-spawn-reload");
    let port = http::free_port();
    let (a_channel, b_channel) = (unique("ferry-spawn-ra"), unique("ferry-spawn-rb"));
    let b_log = dir.join("b.log");
    let pools = |b_processes: u32| {
        json!({
            "a": { "spawn": { "command": ["ferry", "responder"], "processes": 2 } },
            "b": { "spawn": { "command": ["ferry", "responder", "--log", b_log],
                              "processes": b_processes } }
        })
    };
    let config = |b_processes: u32| {
        json!({
            "control": { "listen": format!("127.0.0.1:{port}") },
            "pools": pools(b_processes),
            "sources": [redis_source(&a_channel, "a"), redis_source(&b_channel, "b")]
        })
    };
    let (mut ferry, path) = start(&dir, &config(1), &[]);
    ferry.wait_for_log("events-b: subscribed", Duration::from_secs(10));
    assert!(procs::eventually(Duration::from_secs(10), || {
        pids(port, "a").len() == 2 && pids(port, "b").len() == 1
    }));
    let (a_before, b_before) = (pids(port, "a"), pids(port, "b"));
    std::fs::write(&path, config(3).to_string()).unwrap();
    ferry.signal("HUP");
    ferry.wait_for_log("configuration reloaded", Duration::from_secs(10));
    assert!(
        procs::eventually(Duration::from_secs(10), || pids(port, "b").len() == 3
            && b_before.iter().all(|&pid| !procs::alive(pid))),
        "b's old worker stopped, three new ones run; log:\n{}",
        ferry.log()
    );
    assert_eq!(
        pids(port, "a"),
        a_before,
        "the unchanged pool kept its workers"
    );
    assert!(pids(port, "b").iter().all(|pid| !b_before.contains(pid)));
    publish_numbers(&b_channel, 10);
    assert!(
        procs::eventually(Duration::from_secs(10), || logged_numbers(&b_log).len()
            == 10),
        "{}",
        ferry.log()
    );
    let workers = [pids(port, "a"), pids(port, "b")].concat();
    let socket_dir = dir.join(format!("ferry-{}", ferry.pid()));
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
    assert_gone(&workers, &socket_dir);
}

#[test]
fn a_worker_that_crashes_at_first_then_works_closes_the_circuit_again() {
    let dir = temp_dir("ferry-spawn-recover");
    let port = http::free_port();
    let (log, flag) = (dir.join("responder.log"), dir.join("flag"));
    let channel = unique("ferry-spawn-recover");
    // Dies young (status 1) until the flag exists, then serves: every start while the
    // circuit is open must lead to a probe, or the jobs wait forever.
    let command = format!(
        "test -f {flag} && exec {FERRY} responder --log {log}; exit 1",
        flag = flag.display(),
        log = log.display()
    );
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "spawn": { "command": ["sh", "-c", command], "processes": 1 } } },
        "sources": [redis_source(&channel, "php")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    publish_numbers(&channel, 10);
    ferry.wait_for_log("exited with status 1", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&flag, b"").unwrap();
    assert!(
        procs::eventually(Duration::from_secs(30), || {
            let mut numbers = logged_numbers(&log);
            numbers.sort_unstable();
            numbers == (1..=10).collect::<Vec<_>>()
        }),
        "every waiting job answered once the worker works; log:\n{}",
        ferry.log()
    );
    assert!(
        procs::eventually(Duration::from_secs(10), || http::get(port, "/readyz").0
            == 200),
        "ready again; log:\n{}",
        ferry.log()
    );
    assert!(ferry.log().contains("circuit closed"), "{}", ferry.log());
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn a_reload_that_fixes_a_broken_command_closes_the_circuit() {
    let dir = temp_dir("ferry-spawn-reload-fix");
    let port = http::free_port();
    let log = dir.join("responder.log");
    let channel = unique("ferry-spawn-reload-fix");
    let config = |command: Value| {
        json!({
            "control": { "listen": format!("127.0.0.1:{port}") },
            "pools": { "php": { "spawn": { "command": command, "processes": 2 } } },
            "sources": [redis_source(&channel, "php")]
        })
    };
    let (mut ferry, path) = start(&dir, &config(json!(["sh", "-c", "exit 1"])), &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    publish_numbers(&channel, 10);
    // Let the backoffs grow past the first steps.
    std::thread::sleep(Duration::from_millis(1500));
    let fixed = config(json!(["ferry", "responder", "--log", log]));
    std::fs::write(&path, fixed.to_string()).unwrap();
    ferry.signal("HUP");
    ferry.wait_for_log("configuration reloaded", Duration::from_secs(10));
    assert!(
        procs::eventually(Duration::from_secs(30), || logged_numbers(&log).len() == 10),
        "every waiting job answered after the fix; log:\n{}",
        ferry.log()
    );
    assert!(
        procs::eventually(Duration::from_secs(10), || http::get(port, "/readyz").0
            == 200),
        "ready again; log:\n{}",
        ferry.log()
    );
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn a_bind_that_succeeds_after_the_workers_were_told_to_stop_starts_nothing() {
    let dir = temp_dir("ferry-spawn-late-bind");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let config = json!({
        "control": { "listen": null },
        "shutdown_timeout_ms": 5000,
        "pools": {
            // Ignores SIGTERM: ferry waits up to 5 s for it, long enough for the other
            // pool's bind retry to come due once the port is free.
            "stubborn": { "spawn": { "command": ["sh", "-c", STUBBORN], "processes": 1 } },
            "late": { "spawn": { "command": ["ferry", "responder"], "processes": 1,
                                 "listen": format!("tcp:127.0.0.1:{taken}") } }
        },
        "sources": [redis_source(&unique("ferry-spawn-ls"), "stubborn"),
                    redis_source(&unique("ferry-spawn-ll"), "late")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("events-late: subscribed", Duration::from_secs(10));
    ferry.wait_for_log("events-stubborn: subscribed", Duration::from_secs(10));
    ferry.wait_for_log("cannot bind the workers' socket", Duration::from_secs(10));
    ferry.signal("TERM");
    ferry.wait_for_log("stopping 1 worker processes", Duration::from_secs(10));
    drop(held);
    let exit = ferry.wait(Duration::from_secs(30));
    assert!(exit.success(), "{}", ferry.log());
    let log = ferry.log();
    assert!(!log.contains("pool late: starting"), "{log}");
    assert_eq!(log.matches("after SIGTERM; killed").count(), 1, "{log}");
}

#[test]
fn a_reload_under_traffic_with_keep_conn_retires_the_old_workers() {
    let dir = temp_dir("ferry-spawn-keep-reload");
    let port = http::free_port();
    let (old_log, new_log) = (dir.join("old.log"), dir.join("new.log"));
    let channel = unique("ferry-spawn-keep-reload");
    let config = |log: &Path| {
        json!({
            "control": { "listen": format!("127.0.0.1:{port}") },
            // Idle connections never time out here: only the generation check closes
            // the old workers' connections.
            "pools": { "php": { "keep_conn": true, "max_in_flight": 4, "idle_timeout_ms": 600000,
                "spawn": { "command": ["ferry", "responder", "--delay-ms", "50", "--log", log],
                           "processes": 2 } } },
            "sources": [redis_source(&channel, "php")]
        })
    };
    let (mut ferry, path) = start(&dir, &config(&old_log), &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    assert!(procs::eventually(Duration::from_secs(10), || pids(
        port, "php"
    )
    .len()
        == 2));
    let old = pids(port, "php");
    // 40 jobs of 50 ms, 4 at a time: about half a second of traffic.
    publish_numbers(&channel, 40);
    assert!(procs::eventually(
        Duration::from_secs(10),
        || logged_numbers(&old_log).len() >= 8
    ));
    std::fs::write(&path, config(&new_log).to_string()).unwrap();
    ferry.signal("HUP");
    ferry.wait_for_log("configuration reloaded", Duration::from_secs(10));
    let all_answered = || logged_numbers(&old_log).len() + logged_numbers(&new_log).len() >= 40;
    assert!(
        procs::eventually(Duration::from_secs(20), all_answered),
        "{}",
        ferry.log()
    );
    // Connections in flight during the reload were closed, not kept: the old workers
    // serve nothing more, get SIGTERM and end.
    assert!(
        procs::eventually(Duration::from_secs(15), || old
            .iter()
            .all(|&pid| !procs::alive(pid))),
        "old workers {old:?} still run; log:\n{}",
        ferry.log()
    );
    let log = ferry.log();
    for pid in &old {
        assert!(
            log.contains(&format!("retired process {pid} ")),
            "no stop line for {pid}:\n{log}"
        );
    }
    let served_by_old = logged_numbers(&old_log).len();
    let before = logged_numbers(&new_log).len();
    publish_numbers(&channel, 10);
    assert!(
        procs::eventually(Duration::from_secs(10), || logged_numbers(&new_log).len()
            == before + 10),
        "the new workers serve what comes after; log:\n{}",
        ferry.log()
    );
    assert_eq!(logged_numbers(&old_log).len(), served_by_old);
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn a_reload_keeps_an_explicit_unix_socket_path_reachable() {
    let dir = temp_dir("ferry-spawn-unix-reload");
    let port = http::free_port();
    let log = dir.join("responder.log");
    let socket = dir.join("php.sock");
    let channel = unique("ferry-spawn-unix-reload");
    let config = |processes: u32| {
        json!({
            "control": { "listen": format!("127.0.0.1:{port}") },
            "pools": { "php": { "spawn": { "command": ["ferry", "responder", "--log", log],
                                           "processes": processes,
                                           "listen": format!("unix:{}", socket.display()) } } },
            "sources": [redis_source(&channel, "php")]
        })
    };
    let (mut ferry, path) = start(&dir, &config(1), &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    assert!(procs::eventually(Duration::from_secs(10), || pids(
        port, "php"
    )
    .len()
        == 1));
    let old = pids(port, "php");
    std::fs::write(&path, config(2).to_string()).unwrap();
    ferry.signal("HUP");
    ferry.wait_for_log("configuration reloaded", Duration::from_secs(10));
    // The old generation is gone, and its socket with it: the path must still lead to
    // the new one.
    assert!(
        procs::eventually(Duration::from_secs(10), || pids(port, "php").len() == 2
            && old.iter().all(|&pid| !procs::alive(pid))),
        "{}",
        ferry.log()
    );
    ferry.wait_for_log(
        &format!("retired process {}", old[0]),
        Duration::from_secs(10),
    );
    assert!(socket.exists(), "{} removed", socket.display());
    publish_numbers(&channel, 10);
    assert!(
        procs::eventually(Duration::from_secs(15), || logged_numbers(&log).len() == 10),
        "messages after the reload are answered; log:\n{}",
        ferry.log()
    );
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
    assert!(!socket.exists(), "ferry's socket file is removed at exit");
}

/// The value of `ferry_attempts_total` for `result`, summed over sources.
fn attempts(port: u16, result: &str) -> u64 {
    let (_, metrics) = http::get(port, "/metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_attempts_total{"))
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

#[test]
fn a_recycling_responder_serves_every_connection_it_accepted() {
    let dir = temp_dir("ferry-spawn-recycle-clean");
    let port = http::free_port();
    let log = dir.join("responder.log");
    let channel = unique("ferry-spawn-recycle-clean");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "max_in_flight": 4,
            "spawn": { "command": ["ferry", "responder", "--log", log],
                       "processes": 2, "max_requests": 3 } } },
        "sources": [redis_source(&channel, "php")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    publish_numbers(&channel, 300);
    assert!(
        procs::eventually(Duration::from_secs(30), || attempts(port, "ok") == 300),
        "{}",
        ferry.log()
    );
    let mut numbers = logged_numbers(&log);
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=300).collect::<Vec<_>>(), "every job once");
    // A worker that reached max_requests answered what it had accepted: no attempt
    // ended with "closed before response".
    assert_eq!(attempts(port, "retryable"), 0, "{}", ferry.log());
    assert!(processes(port, "php")["restarts"].as_u64().unwrap() >= 10);
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn ferry_workers_restart_after_the_ferry_binary_was_replaced() {
    let dir = temp_dir("ferry-spawn-upgrade");
    let port = http::free_port();
    let log = dir.join("responder.log");
    let channel = unique("ferry-spawn-upgrade");
    // A copy of the binary that the "package upgrade" deletes while ferry runs.
    let exe = dir.join("ferry");
    std::fs::copy(FERRY, &exe).unwrap();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "spawn": { "command": ["ferry", "responder", "--log", log],
                                       "processes": 2 } } },
        "sources": [redis_source(&channel, "php")]
    });
    let path = dir.join("ferry.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut ferry = Ferry::start_exe(
        &exe,
        &dir,
        &["run", "--config", path.to_str().unwrap()],
        &[("RUNTIME_DIRECTORY", dir.to_str().unwrap())],
    );
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    assert!(procs::eventually(Duration::from_secs(10), || pids(
        port, "php"
    )
    .len()
        == 2));
    std::fs::remove_file(&exe).unwrap();
    let before = pids(port, "php");
    let victim = before[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        procs::eventually(Duration::from_secs(10), || {
            let now = pids(port, "php");
            now.len() == 2 && !now.contains(&victim)
        }),
        "the killed worker is replaced from the deleted binary; log:\n{}",
        ferry.log()
    );
    assert!(!ferry.log().contains("cannot start"), "{}", ferry.log());
    publish_numbers(&channel, 10);
    assert!(
        procs::eventually(Duration::from_secs(10), || logged_numbers(&log).len() == 10),
        "{}",
        ferry.log()
    );
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn a_slot_whose_worker_exits_0_at_once_backs_off_while_the_others_work() {
    let dir = temp_dir("ferry-spawn-exit0");
    let log = dir.join("responder.log");
    let channel = unique("ferry-spawn-exit0");
    // The first worker to take the lock serves for good; the other slot's worker exits
    // 0 at once, every time, while the pool finishes jobs all along.
    let command = format!(
        "mkdir {lock} 2>/dev/null && exec {FERRY} responder --delay-ms 5 --log {log}; exit 0",
        lock = dir.join("lock").display(),
        log = log.display()
    );
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "max_in_flight": 1,
                            "spawn": { "command": ["sh", "-c", command], "processes": 2 } } },
        "sources": [redis_source(&channel, "php")]
    });
    let (mut ferry, _) = start(&dir, &config, &[]);
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    // About 5 s of jobs of 5 ms, one at a time.
    publish_numbers(&channel, 1000);
    assert!(procs::eventually(
        Duration::from_secs(10),
        || logged_numbers(&log).len() >= 50
    ));
    std::thread::sleep(Duration::from_secs(3));
    let served = logged_numbers(&log).len();
    let exits = ferry.log().matches("exited with status 0").count();
    assert!(served < 1000, "the traffic lasted the whole measurement");
    println!("{exits} exits of the exit-0 slot while {served} jobs were served");
    // At most one immediate restart a second, backed off starts in between (200 ms,
    // 400 ms…): a dozen over ~3.5 s; a restart loop would make hundreds.
    assert!(exits <= 25, "{exits} exits:\n{}", ferry.log());
    ferry.signal("TERM");
    let _ = ferry.wait(Duration::from_secs(60));
}

#[test]
fn descriptors_ferry_inherited_do_not_reach_the_workers() {
    let dir = temp_dir("ferry-spawn-fds");
    let channel = unique("ferry-spawn-fds");
    let log = dir.join("responder.log");
    // The worker lists its descriptors, then becomes the responder.
    let wrapper = format!(
        "ls /proc/$$/fd > {dir}/fds-$$.txt; exec {FERRY} responder --log {log}",
        dir = dir.display(),
        log = log.display()
    );
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "spawn": { "command": ["sh", "-c", wrapper], "processes": 1 } } },
        "sources": [redis_source(&channel, "php")]
    });
    let path = dir.join("ferry.json");
    std::fs::write(&path, config.to_string()).unwrap();
    // ferry itself starts with descriptor 7 open and inheritable, as a careless parent
    // would leave it.
    let script = format!(
        "exec 7</dev/null; exec {FERRY} run --config {}",
        path.display()
    );
    let mut ferry = Ferry::start_exe(
        Path::new("/bin/sh"),
        &dir,
        &["-c", &script],
        &[("RUNTIME_DIRECTORY", dir.to_str().unwrap())],
    );
    ferry.wait_for_log("subscribed", Duration::from_secs(10));
    publish_numbers(&channel, 1);
    assert!(procs::eventually(
        Duration::from_secs(10),
        || logged_numbers(&log).len() == 1
    ));
    let listing: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("fds-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(listing.len(), 1);
    let fds: Vec<&str> = listing[0].lines().collect();
    assert!(fds.contains(&"0"), "{fds:?}");
    assert!(
        !fds.contains(&"7"),
        "inherited descriptor 7 leaked: {fds:?}"
    );
    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(20)).success(),
        "{}",
        ferry.log()
    );
}
