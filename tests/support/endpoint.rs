//! RESP endpoint tests: ferry with one `resp_endpoint` source feeding `ferry responder`
//! (which logs one JSON line per request), and raw RESP exchanges with a server.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::ferry_proc::{temp_dir, unique, worker_lines, Ferry};
use super::http::{free_port, get};

/// The request appended to a script so its replies have a known end.
pub const SENTINEL: &[u8] = b"*2\r\n$4\r\nPING\r\n$8\r\nsentinel\r\n";
/// How the sentinel's reply ends, in every protocol and context.
pub const SENTINEL_END: &[u8] = b"$8\r\nsentinel\r\n";

/// ferry with an endpoint, and the responder it delivers to.
pub struct Endpoint {
    pub dir: PathBuf,
    pub ferry: Ferry,
    pub responder: Ferry,
    /// The endpoint's TCP port.
    pub port: u16,
    /// The control endpoint's port.
    pub control: u16,
    /// The responder's log: one JSON line per job.
    pub jobs_log: PathBuf,
    /// The channel whose messages become jobs.
    pub channel: String,
    /// The configuration ferry runs with (rewrite [`Endpoint::config_path`] and send
    /// SIGHUP to reload).
    pub config: serde_json::Value,
    pub config_path: PathBuf,
}

/// Starts a responder and ferry; `source` keys are merged into the endpoint source.
pub fn start(name: &str, source: serde_json::Value) -> Endpoint {
    start_with(name, source, Ferry::start)
}

/// [`start`], with ferry started by `launch(dir, config)` (under `prlimit`, say).
pub fn start_with(
    name: &str,
    source: serde_json::Value,
    launch: impl FnOnce(&std::path::Path, &serde_json::Value) -> Ferry,
) -> Endpoint {
    let dir = temp_dir(name);
    let socket = dir.join("r.sock");
    let jobs_log = dir.join("jobs.log");
    let listen = format!("unix:{}", socket.display());
    let responder = Ferry::start_args(
        &dir,
        &[
            "responder",
            "--listen",
            &listen,
            "--log",
            jobs_log.to_str().unwrap(),
        ],
    );
    responder.wait_for_log("ferry responder: listening on", Duration::from_secs(10));
    let port = free_port();
    let control = free_port();
    let channel = unique("ferry-test-endpoint");
    let mut endpoint = json!({
        "name": "ep", "kind": "resp_endpoint", "listen": format!("127.0.0.1:{port}"),
        "channels": [channel],
        "job": { "pool": "w", "script": "/srv/worker.php", "body": "raw" }
    });
    for (key, value) in source.as_object().unwrap() {
        endpoint[key] = value.clone();
    }
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{control}") },
        // Not kept: the fd-counting tests need every worker connection gone after its
        // job, not closed later by an idle timeout.
        "pools": { "w": { "address": listen, "max_in_flight": 4, "keep_conn": false } },
        "sources": [endpoint]
    });
    let ferry = launch(&dir, &config);
    ferry.wait_for_log("RESP endpoint listening on", Duration::from_secs(10));
    let config_path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    Endpoint {
        config,
        config_path,
        dir,
        ferry,
        responder,
        port,
        control,
        jobs_log,
        channel,
    }
}

impl Endpoint {
    /// Jobs the responder received so far (complete lines only: the responder may be
    /// writing the last one).
    pub fn jobs(&self) -> Vec<serde_json::Value> {
        worker_lines(&self.jobs_log)
    }

    /// Waits until the responder received `count` jobs (or 30 s pass).
    pub fn wait_for_jobs(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let jobs = self.jobs();
            if jobs.len() >= count || Instant::now() > deadline {
                return jobs;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A sample of `/metrics` (the line starting with `series`), or 0.
    pub fn metric(&self, series: &str) -> u64 {
        let (status, body) = get(self.control, "/metrics");
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A connection to the endpoint.
    pub fn connect(&self) -> TcpStream {
        connect(self.port)
    }
}

pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `script` and reads until the server closes the connection.
pub fn until_closed(port: u16, script: &[u8]) -> Vec<u8> {
    let mut stream = connect(port);
    stream.write_all(script).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Sends `script` then [`SENTINEL`], and returns the replies before the sentinel's.
pub fn replies(port: u16, script: &[u8]) -> Vec<u8> {
    let mut stream = connect(port);
    exchange(&mut stream, script)
}

/// [`replies`] on an open connection.
pub fn exchange(stream: &mut TcpStream, script: &[u8]) -> Vec<u8> {
    let mut request = script.to_vec();
    request.extend_from_slice(SENTINEL);
    stream.write_all(&request).unwrap();
    let mut out = read_until(stream, SENTINEL_END);
    out.truncate(out.len() - SENTINEL_END.len());
    // In the RESP2 subscribed context PING answers `*2 pong <arg>`.
    if out.ends_with(b"*2\r\n$4\r\npong\r\n") {
        out.truncate(out.len() - b"*2\r\n$4\r\npong\r\n".len());
    }
    out
}

/// Reads until what arrived ends with `end`; panics on EOF or after the read timeout.
pub fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while !out.ends_with(end) {
        let n = stream.read(&mut chunk).unwrap_or_else(|e| {
            panic!(
                "read failed ({e}) after {:?}",
                String::from_utf8_lossy(&out)
            )
        });
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&chunk[..n]);
    }
    out
}

/// A RESP command as a multibulk.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Bytes shown with CR/LF visible, for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "⏎")
}
