//! `ferry conform` against real servers (README "Conformance suites", docs/CONFORMANCE.md):
//! a private php-fpm 8.2 master, `php-cgi -b`, `ferry responder`, redis-server 7.0 on
//! 127.0.0.1:6379, ferry's own RESP endpoint, RabbitMQ 3.10 on 127.0.0.1:5672, and two
//! deliberately broken FastCGI responders written here. Each test asserts the number of
//! cases and exactly which cases are not `pass` (the departures docs/CONFORMANCE.md
//! records); a server that cannot be reached fails the test.

#[path = "support/endpoint.rs"]
mod endpoint;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_proc::{temp_dir, Ferry};
use serde_json::Value;

/// The PHP script every FastCGI request names: STDERR before and between STDOUT.
const SCRIPT: &str = r#"<?php
error_log("conform: before output");
header('Content-Type: text/plain');
echo "method ", $_SERVER['REQUEST_METHOD'] ?? '', " body ", strlen(file_get_contents('php://input')), "\n";
flush();
error_log("conform: between output");
echo "done\n";
"#;

/// Runs `ferry conform ARGS --json`: the exit code and the report.
fn conform(args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("conform")
        .args(args)
        .arg("--json")
        .output()
        .expect("run ferry conform");
    let code = output.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); exit {code}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (code, report)
}

/// Every case's verdict, by name.
fn verdicts(report: &Value) -> BTreeMap<String, String> {
    report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["case"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts at least `min` cases, the exit code, and that exactly `departures` are not
/// `pass` (with those verdicts).
fn assert_report(code: i32, report: &Value, min: usize, departures: &[(&str, &str)]) {
    let verdicts = verdicts(report);
    assert!(
        verdicts.len() >= min,
        "{} cases, at least {min} expected",
        verdicts.len()
    );
    let not_passing: BTreeMap<&str, &str> = verdicts
        .iter()
        .filter(|(_, v)| *v != "pass")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expected: BTreeMap<&str, &str> = departures.iter().copied().collect();
    assert_eq!(
        not_passing,
        expected,
        "report:\n{}",
        serde_json::to_string_pretty(report).unwrap()
    );
    let failed = departures.iter().any(|(_, v)| *v == "fail");
    assert_eq!(code, i32::from(failed), "exit code");
    assert_eq!(report["ok"], Value::Bool(!failed));
}

/// What php-fpm and php-cgi share (php-src main/fastcgi.c): docs/CONFORMANCE.md.
const PHP_DEPARTURES: &[(&str, &str)] = &[
    ("unknown_management_type", "fail"),
    ("begin_request_id_0", "tolerated"),
    ("mpx_concurrent_requests", "not supported"),
    ("mpx_refused_cant_mpx_conn", "fail"),
    ("params_value_over_64k", "fail"),
    ("params_name_over_64k", "fail"),
    ("params_split_short_header", "fail"),
    ("params_split_long_header", "fail"),
    ("params_one_byte_records", "fail"),
    ("role_undefined", "fail"),
    ("version_2_records", "tolerated"),
    ("stdout_stream_closed", "fail"),
];

#[test]
fn fastcgi_against_php_fpm() {
    let fpm = php_fpm::PhpFpm::start();
    let script = fpm.write_script("conform.php", SCRIPT);
    let address = format!("unix:{}", fpm.socket().display());
    let (code, report) = conform(&["fastcgi", &address, "--script", script.to_str().unwrap()]);
    let mut departures = PHP_DEPARTURES.to_vec();
    // php-fpm's FCGI_MAX_CONNS/FCGI_MAX_REQS setter is compiled out.
    departures.push(("get_values_max_conns", "not supported"));
    departures.push(("get_values_max_reqs", "not supported"));
    assert_report(code, &report, 25, &departures);
    // The script's error_log() lines arrive on STDERR, before the output.
    let order = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == "output_streams_order")
        .unwrap()["observed"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(order.contains("STDERR before STDOUT"), "{order}");
}

/// `php-cgi -b 127.0.0.1:PORT`, killed on drop.
struct PhpCgi {
    child: Child,
    port: u16,
}

impl PhpCgi {
    fn start() -> PhpCgi {
        let port = http::free_port();
        let child = Command::new("php-cgi8.2")
            .args(["-b", &format!("127.0.0.1:{port}")])
            // php-cgi exits after 500 requests by default; one process serves the suite.
            .env("PHP_FCGI_MAX_REQUESTS", "100000")
            .env_remove("PHP_FCGI_CHILDREN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php-cgi8.2 (package php8.2-cgi) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "php-cgi did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        PhpCgi { child, port }
    }
}

impl Drop for PhpCgi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn fastcgi_against_php_cgi() {
    let cgi = PhpCgi::start();
    let dir = temp_dir("ferry-conform-cgi");
    let script = dir.join("conform.php");
    std::fs::write(&script, SCRIPT).unwrap();
    let address = format!("127.0.0.1:{}", cgi.port);
    let (code, report) = conform(&["fastcgi", &address, "--script", script.to_str().unwrap()]);
    assert_report(code, &report, 25, PHP_DEPARTURES);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fastcgi_against_ferry_responder() {
    let dir = temp_dir("ferry-conform-responder");
    let socket = dir.join("r.sock");
    let listen = format!("unix:{}", socket.display());
    let mut responder = Ferry::start_args(&dir, &["responder", "--listen", &listen]);
    responder.wait_for_log("ferry responder: listening on", Duration::from_secs(10));
    let (code, report) = conform(&["fastcgi", &listen]);
    assert_report(
        code,
        &report,
        25,
        &[
            ("mpx_concurrent_requests", "not supported"),
            ("role_authorizer", "not supported"),
            ("role_filter", "not supported"),
        ],
    );
    responder.signal("TERM");
    assert!(responder.wait(Duration::from_secs(10)).success());
}

/// A broken FastCGI application on 127.0.0.1: `answer(request bytes)` is written back
/// after the first read of each connection, then the connection is held `hold` and
/// closed.
fn broken_responder(answer: fn(&[u8]) -> Vec<u8>, hold: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut request = vec![0; 1 << 20];
                let n = stream.read(&mut request).unwrap_or(0);
                let _ = stream.write_all(&answer(&request[..n]));
                std::thread::sleep(hold);
            });
        }
    });
    port
}

/// STDOUT and END_REQUEST, always for request 7.
fn wrong_request_id(_request: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let head = b"Status: 200\r\nContent-Type: text/plain\r\n\r\nok";
    ferry::proto::fastcgi::encode_stdout(&mut out, 7, head);
    ferry::proto::fastcgi::encode_end_request(
        &mut out,
        7,
        0,
        ferry::proto::fastcgi::ProtocolStatus::RequestComplete,
    );
    out
}

/// STDOUT for the request's own id, and never END_REQUEST.
fn no_end_request(request: &[u8]) -> Vec<u8> {
    let id = u16::from_be_bytes([
        request.get(2).copied().unwrap_or(0),
        request.get(3).copied().unwrap_or(1),
    ]);
    let mut out = Vec::new();
    ferry::proto::fastcgi::encode_stdout(&mut out, id, b"Status: 200\r\n\r\nok");
    out
}

#[test]
fn fastcgi_against_broken_responders_reports_failures() {
    let port = broken_responder(wrong_request_id, Duration::ZERO);
    let (code, report) = conform(&[
        "fastcgi",
        &format!("127.0.0.1:{port}"),
        "--timeout-ms",
        "500",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], Value::Bool(false));
    let first = verdicts(&report);
    for case in [
        "request_id_258",
        "request_id_65535",
        "keep_conn_serial_requests",
        "get_values_mpxs_conns",
        "unknown_management_type",
        "stdin_one_byte_records",
    ] {
        assert_eq!(first[case], "fail", "{case}: {report}");
    }
    let observed = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == "request_id_258")
        .unwrap()["observed"]
        .clone();
    assert!(
        observed.as_str().unwrap().contains("for request 7"),
        "{observed}"
    );

    let port = broken_responder(no_end_request, Duration::from_secs(2));
    let (code, report) = conform(&[
        "fastcgi",
        &format!("127.0.0.1:{port}"),
        "--case",
        "request_id_258",
        "--case",
        "end_request_status",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(code, 1, "{report}");
    let second = verdicts(&report);
    assert_eq!(second.len(), 2);
    assert!(second.values().all(|v| v == "fail"), "{report}");
    for case in report["cases"].as_array().unwrap() {
        let observed = case["observed"].as_str().unwrap();
        assert!(observed.contains("no END_REQUEST"), "{observed}");
        assert!(
            case["elapsed_ms"].as_u64().unwrap() < 2000,
            "bounded by the deadline"
        );
    }
}

#[test]
fn resp_against_redis() {
    let (code, report) = conform(&["resp", "127.0.0.1:6379"]);
    assert_report(code, &report, 25, &[]);
}

#[test]
fn resp_against_ferry_endpoint() {
    let ep = endpoint::start("ferry-conform-endpoint", serde_json::json!({}));
    let (code, report) = conform(&["resp", &format!("127.0.0.1:{}", ep.port)]);
    // The endpoint has no sharded pub/sub (docs/CONFORMANCE.md).
    assert_report(code, &report, 25, &[("ssubscribe", "not supported")]);
}

#[test]
fn amqp_against_rabbitmq() {
    let (code, report) = conform(&["amqp", "amqp://guest:guest@127.0.0.1:5672/%2f"]);
    // RabbitMQ does not implement prefetch_size (540 NOT_IMPLEMENTED).
    assert_report(code, &report, 15, &[("qos_prefetch_size", "not supported")]);
    assert_eq!(
        report["target"], "amqp://guest:***@127.0.0.1:5672/%2f",
        "the password is never shown"
    );
}

#[test]
fn usage_errors_exit_2_and_unreachable_servers_exit_1() {
    let ferry = env!("CARGO_BIN_EXE_ferry");
    for args in [
        &["conform"][..],
        &["conform", "fastcgi"],
        &["conform", "gopher", "127.0.0.1:1"],
        &[
            "conform",
            "resp",
            "127.0.0.1:6379",
            "--case",
            "no_such_case",
        ],
        &["conform", "resp", "127.0.0.1:6379", "--timeout-ms", "soon"],
        &["conform", "resp", "127.0.0.1:6379", "--timeout-ms", "0"],
        &["conform", "resp", "127.0.0.1:6379", "--script", "/x.php"],
        &["conform", "resp", "127.0.0.1:6379", "--bogus"],
        &["conform", "amqp", "http://127.0.0.1"],
        &["conform", "fastcgi", "nowhere"],
    ] {
        let output = Command::new(ferry).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}: says why");
    }
    let help = Command::new(ferry)
        .args(["conform", "--help"])
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("not supported"));
    let list = Command::new(ferry)
        .args(["conform", "resp", "127.0.0.1:1", "--list"])
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&list.stdout).contains("ssubscribe"));
    // Nothing listens on port 1.
    let output = Command::new(ferry)
        .args(["conform", "resp", "127.0.0.1:1", "--timeout-ms", "500"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
}
