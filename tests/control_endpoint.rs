//! The control endpoint of a running ferry (`docs/OPERATIONS.md` "Control endpoint"):
//! health, readiness with reasons, status and jobs as JSON, the bearer token on POST,
//! keep-alive, and hostile requests refused without disturbing anything. Needs Redis on
//! 127.0.0.1:6379.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;

use std::io::{Read, Write};

use std::time::Duration;

use ferry_proc::{publish, temp_dir, unique, Ferry};
use http::{exchange, free_port, get};
use serde_json::{json, Value};

#[test]
fn health_readiness_status_jobs_and_refusals() {
    let dir = temp_dir("ferry-control");
    let port = free_port();
    let channel = unique("ferry-control");
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}"), "token": "s3cret" },
        // The job waiting for the absent pool is worked off until this deadline at drain.
        "shutdown_timeout_ms": 1000,
        "pools": { "php": { "address": format!("unix:{}/absent.sock", dir.display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [channel], "job": { "pool": "php", "script": "/w.php" } }]
    });
    let mut ferry = Ferry::start(&dir, &config);
    ferry.wait_for_log("source events: subscribed", Duration::from_secs(10));

    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));
    // HEAD: GET's head (with its Content-Length), no body.
    let head = exchange(
        port,
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 3\r\n"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "HEAD answered with a body: {head:?}"
    );
    let (status, body) = get(port, "/readyz");
    assert_eq!(status, 200, "{body}");

    // A message for a pool that does not answer: the circuit opens, /readyz says why.
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        r#"{"n": 1}"#,
    ]);
    ferry.wait_for_log("circuit open", Duration::from_secs(10));
    let (status, body) = get(port, "/readyz");
    assert_eq!(status, 503);
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false);
    assert!(
        ready["reasons"][0]
            .as_str()
            .unwrap()
            .contains("pool php circuit is open"),
        "{body}"
    );

    let (status, body) = get(port, "/status");
    assert_eq!(status, 200);
    let status_json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_json["sources"][0]["name"], "events");
    assert_eq!(status_json["sources"][0]["state"], "connected");
    assert_eq!(status_json["sources"][0]["received"], 1);
    assert_eq!(
        status_json["sources"][0]["waiting"], 1,
        "the job waits while the pool is down"
    );
    assert_eq!(status_json["pools"][0]["circuit"], "open");
    let (status, body) = get(port, "/jobs");
    assert_eq!((status, body.as_str()), (200, "[]"));

    // /metrics counts what happened: one message received, the pool failures, the gauges.
    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "ferry_messages_received_total{source=\"events\"} 1",
        "ferry_backlog_messages{source=\"events\"} 1",
        "ferry_source_connected{source=\"events\"} 1",
        "ferry_pool_circuit_open{pool=\"php\"} 1",
        "ferry_jobs_in_flight{pool=\"php\"} 0",
        "# TYPE ferry_job_duration_seconds histogram",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in:\n{metrics}"
        );
    }
    // The live output through Prometheus' own Python parser: it parses, and the counter
    // holds what this test sent.
    let script =
        "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
        fams = {f.name: f for f in p(sys.stdin.read())}\n\
        s = [x for x in fams['ferry_messages_received'].samples if x.name.endswith('_total')]\n\
        print(len(fams), int(s[0].value))\n";
    let mut python = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/test.sh installs it)");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let parsed = python.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "prometheus_client could not parse /metrics:\n{metrics}"
    );
    let parsed = String::from_utf8_lossy(&parsed.stdout);
    let mut fields = parsed.split_whitespace();
    let families: usize = fields.next().unwrap().parse().unwrap();
    assert!(families >= 19, "{parsed}");
    assert_eq!(
        fields.next(),
        Some("1"),
        "received counter as parsed: {parsed}"
    );
    let failures: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("ferry_pool_failures_total{pool=\"php\",reason=\"socket_not_found\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 1, "{metrics}");

    // POST needs the token; unknown sources and paths are 404.
    let unauthorized = exchange(
        port,
        b"POST /sources/events/pause HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(unauthorized.starts_with("HTTP/1.1 401"), "{unauthorized}");
    let unknown = exchange(
        port,
        b"POST /sources/nope/pause HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    );
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert_eq!(get(port, "/nowhere").0, 404);

    // Keep-alive: two requests on one connection, two answers.
    let both = exchange(
        port,
        b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");

    // A 1 MB header and garbage are refused; the endpoint and ferry carry on.
    let mut huge = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\n");
    let refused = exchange(port, &huge);
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 431"),
        "{}",
        &refused[..refused.len().min(200)]
    );
    let garbage = exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert_eq!(get(port, "/healthz").0, 200);

    ferry.signal("TERM");
    assert!(
        ferry.wait(Duration::from_secs(15)).success(),
        "{}",
        ferry.log()
    );
}

#[test]
fn a_taken_control_address_is_a_startup_error() {
    let dir = temp_dir("ferry-control-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{port}") },
        "pools": { "php": { "address": "unix:/nonexistent.sock" } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": ["x"], "job": { "pool": "php", "script": "/w.php" } }]
    });
    let mut ferry = Ferry::start(&dir, &config);
    let status = ferry.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    assert!(
        ferry.log().contains("control endpoint: cannot listen"),
        "{}",
        ferry.log()
    );
}

/// `docs/OPERATIONS.md` "Process management": ferry raises its open-files soft limit to
/// the hard limit. Started with a soft limit of 256 (a shell lowers it), it runs with
/// soft = hard.
#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_limit() {
    let dir = temp_dir("ferry-nofile");
    let config_path = dir.join("ferry.json");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": "unix:/nonexistent.sock" } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [unique("nofile")], "job": { "pool": "php", "script": "/w.php" } }]
    });
    std::fs::write(&config_path, config.to_string()).unwrap();
    let log = dir.join("ferry.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {} run --config {}",
            env!("CARGO_BIN_EXE_ferry"),
            config_path.display()
        ))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("subscribed")
    {
        assert!(std::time::Instant::now() < deadline, "ferry did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(files[3], "256", "the soft limit was not raised: {limits}");
    assert_eq!(files[3], files[4], "soft = hard: {limits}");
}

/// `docs/CONFIGURATION.md` "Passwords": passwords never appear in logs — not in URLs, not
/// in errors, not at debug level. A wrong AMQP password and a Redis password both show up
/// only as `***`.
#[test]
fn passwords_never_reach_the_log() {
    let dir = temp_dir("ferry-secrets");
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": "unix:/nonexistent.sock" } },
        "sources": [
            { "name": "tasks", "kind": "amqp",
              "url": "amqp://guest:Sup3rS3cretAmqp@127.0.0.1:5672/%2f", "queue": unique("secret"),
              "job": { "pool": "php", "script": "/w.php" } },
            { "name": "events", "kind": "redis",
              "url": "redis://someone:Sup3rS3cretRedis@127.0.0.1:6379", "channels": ["x"],
              "job": { "pool": "php", "script": "/w.php" } }
        ]
    });
    let mut ferry = Ferry::start(&dir, &config);
    // Both fail to authenticate (and retry); wait until both said so.
    ferry.wait_for_log(
        "source tasks: authentication failed",
        Duration::from_secs(10),
    );
    ferry.wait_for_log(
        "source events: authentication failed",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    ferry.signal("TERM");
    let _ = ferry.wait(Duration::from_secs(15));
    let log = ferry.log();
    assert!(
        !log.contains("Sup3rS3cret"),
        "a password reached the log:\n{log}"
    );
}

/// The control endpoint on a unix socket, and `--log-file` reopened on SIGHUP (logrotate
/// moves the file away; ferry writes a new one).
#[test]
fn unix_control_socket_and_log_reopen() {
    use std::os::unix::net::UnixStream;
    let dir = temp_dir("ferry-unix-control");
    let socket = dir.join("control.sock");
    let config_path = dir.join("ferry.json");
    std::fs::write(
        &config_path,
        json!({
            "control": { "listen": format!("unix:{}", socket.display()) },
            "pools": { "php": { "address": "unix:/nonexistent.sock" } },
            "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                          "channels": [unique("unix")], "job": { "pool": "php", "script": "/w.php" } }]
        })
        .to_string(),
    )
    .unwrap();
    let log_file = dir.join("ferry.log");
    let mut ferry = Ferry::start_args(
        &dir,
        &[
            "run",
            "--config",
            config_path.to_str().unwrap(),
            "--log-file",
            log_file.to_str().unwrap(),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_file)
        .unwrap_or_default()
        .contains("subscribed")
    {
        assert!(std::time::Instant::now() < deadline, "ferry did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stream = UnixStream::connect(&socket).expect("control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("ok\n"),
        "{answer}"
    );

    let rotated = dir.join("ferry.log.1");
    std::fs::rename(&log_file, &rotated).unwrap();
    ferry.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_file)
        .unwrap_or_default()
        .contains("SIGHUP")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no new log file after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(15)).success());
    assert!(
        !socket.exists(),
        "the unix control socket is removed at exit"
    );
}
