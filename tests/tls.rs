//! TLS to real servers (`docs/OPERATIONS.md`, "TLS"), with certificates the test makes:
//! Redis with `tls-port` (Debian's redis-server is built with TLS) and a private
//! RabbitMQ node with a TLS listener. Deliveries over TLS, mutual TLS, what `ferry check`
//! reports, and the hostile cases — wrong host name, expired certificate, unknown CA, a
//! plain-text server behind a TLS URL — each a clear error naming the cause, retried
//! with backoff, and no credentials sent before the server was verified.
//!
//! Needs `redis-server`, `redis-cli`, RabbitMQ 3.10 (`/usr/lib/rabbitmq/bin`), php-fpm8.2;
//! a missing one fails the test.

#[path = "support/certs.rs"]
mod certs;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;
#[path = "support/rabbit_node.rs"]
mod rabbit_node;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proc::{publish, temp_dir, unique, wait_for_lines, Ferry};
use http::free_port;
use php_fpm::PhpFpm;
use serde_json::{json, Value};

const PASSWORD: &str = "tls-test-sekrit";

/// A private redis-server: plain on `port` (for publishing and for the test's own
/// questions) and TLS on `tls_port` with `cert`; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    tls_port: u16,
}

impl TlsRedis {
    fn start(dir: &Path, ca: &Path, cert: &certs::Pair, client_certs: &str) -> TlsRedis {
        let (port, tls_port) = (free_port(), free_port());
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--tls-port",
                &tls_port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", PASSWORD])
            .arg("--tls-cert-file")
            .arg(&cert.cert)
            .arg("--tls-key-file")
            .arg(&cert.key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", client_certs])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (package redis-server) must be installed");
        let redis = TlsRedis {
            child,
            port,
            tls_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "-a",
                PASSWORD,
            ])
            .args(args)
            .output()
            .expect("redis-cli (package redis-tools) must be installed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// PUBLISH of a message too large for a command line, over the plain port.
    fn publish_large(&self, channel: &str, message: &str) {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut command = Vec::new();
        for args in [vec!["AUTH", PASSWORD], vec!["PUBLISH", channel, message]] {
            command.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for arg in args {
                command.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
            }
        }
        conn.write_all(&command).unwrap();
        let mut reply = [0u8; 64];
        let mut got = Vec::new();
        while got.iter().filter(|&&b| b == b'\n').count() < 2 {
            let n = conn.read(&mut reply).unwrap();
            assert!(n > 0, "redis closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&reply[..n]);
        }
        assert!(
            got.starts_with(b"+OK\r\n:1\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }

    /// Publishes until a subscriber received one (ferry subscribed), then `count` more
    /// numbered messages.
    fn publish_when_subscribed(&self, channel: &str, count: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.cli(&["PUBSUB", "NUMSUB", channel]).lines().nth(1) != Some("1") {
            assert!(Instant::now() < deadline, "ferry never subscribed over TLS");
            std::thread::sleep(Duration::from_millis(50));
        }
        for n in 1..=count {
            self.cli(&["PUBLISH", channel, &json!({ "n": n }).to_string()]);
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(fpm: &PhpFpm, log: &Path) -> String {
    fpm.write_script("w.php", &ferry_proc::logging_worker(log))
        .display()
        .to_string()
}

fn pool(fpm: &PhpFpm) -> Value {
    json!({ "address": format!("unix:{}", fpm.socket().display()), "max_in_flight": 2 })
}

fn redis_source(name: &str, url: String, tls: Value, channel: &str, script: &str) -> Value {
    json!({
        "kind": "redis", "name": name, "url": url, "tls": tls,
        "password_file": "password", "channels": [channel],
        "job": { "pool": "php", "script": script }
    })
}

fn config(dir: &Path, fpm: &PhpFpm, sources: Vec<Value>) -> Value {
    std::fs::write(dir.join("password"), PASSWORD).unwrap();
    json!({
        "control": { "listen": format!("127.0.0.1:{}", free_port()) },
        "pools": { "php": pool(fpm) },
        "sources": sources,
    })
}

/// `ferry check --config` of `config`: the exit code and the text report.
fn check(dir: &Path, config: &Value, json_output: bool) -> (i32, String) {
    let path = dir.join(format!("{}.json", unique("check")));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(["check", "--no-script", "--config"])
        .arg(&path);
    if json_output {
        command.arg("--json");
    }
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn redis_over_tls_delivers_and_check_reports_the_certificate() {
    let dir = temp_dir("tls-redis");
    let certs = certs::Set::new(&dir);
    let redis = TlsRedis::start(&dir, &certs.ca.cert, &certs.server, "optional");
    let fpm = PhpFpm::start();
    let log = dir.join("worker.log");
    let script = worker(&fpm, &log);
    let channel = unique("tls");
    let tls = json!({ "ca_file": certs.ca.cert });
    let url = format!("rediss://localhost:{}", redis.tls_port);
    let config = config(
        &dir,
        &fpm,
        vec![redis_source("r", url, tls, &channel, &script)],
    );
    let ferry = Ferry::start(&dir, &config);
    redis.publish_when_subscribed(&channel, 20);
    // One message of many TLS records (16 KiB each) and a larger read than one fill.
    let blob = "x".repeat(300_000);
    redis.publish_large(&channel, &json!({ "n": 21, "blob": blob }).to_string());
    let lines = wait_for_lines(&log, 21, Duration::from_secs(20));
    assert_eq!(lines.len(), 21, "{}", ferry.log());
    let big = lines.iter().find(|l| l["post"]["n"] == "21").unwrap();
    assert_eq!(big["post"]["blob"].as_str().map(str::len), Some(300_000));
    assert!(ferry.log().contains("TLS up (TLSv1_3"), "{}", ferry.log());
    let control = config["control"]["listen"].as_str().unwrap();
    let port: u16 = control.rsplit(':').next().unwrap().parse().unwrap();
    let status = http::get_json(port, "/status");
    assert_eq!(status["sources"][0]["tls"], "verified", "{status}");

    let (code, text) = check(&dir, &config, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("OK   redis source 'r'"), "{text}");
    assert!(text.contains("TLS: TLSv1_3 TLS13_"), "{text}");
    assert!(
        text.contains("certificate CN=localhost, issued by CN=ferry test CA, expires 2099-01-01"),
        "{text}"
    );
    let summary = ferry::proto::x509::summarize(&certs.server.der).unwrap();
    assert_eq!(summary.subject, "CN=localhost");
    assert_eq!(summary.issuer, "CN=ferry test CA");
    assert_eq!(ferry::proto::x509::date(summary.not_after), "2099-01-01");
    let (_, report) = check(&dir, &config, true);
    let report: Value = serde_json::from_str(&report).unwrap();
    let tls = &report["endpoints"][0]["redis"]["tls"];
    let days = tls["days_to_expiry"].as_i64().unwrap();
    assert!(days > 20_000 && days < 30_000, "{tls}");
    assert_eq!(tls["unverified"], false);
}

#[test]
fn mutual_tls_presents_the_client_certificate_and_fails_clearly_without_it() {
    let dir = temp_dir("tls-mutual");
    let certs = certs::Set::new(&dir);
    let redis = TlsRedis::start(&dir, &certs.ca.cert, &certs.server, "yes");
    let fpm = PhpFpm::start();
    let log = dir.join("worker.log");
    let script = worker(&fpm, &log);
    let channel = unique("mtls");
    let url = format!("rediss://localhost:{}", redis.tls_port);
    let with_cert = json!({
        "ca_file": certs.ca.cert,
        "client_cert_file": certs.client.cert, "client_key_file": certs.client.key
    });
    let without = json!({ "ca_file": certs.ca.cert });
    let config = config(
        &dir,
        &fpm,
        vec![
            redis_source("with", url.clone(), with_cert, &channel, &script),
            redis_source("without", url, without, &channel, &script),
        ],
    );
    let ferry = Ferry::start(&dir, &config);
    redis.publish_when_subscribed(&channel, 5);
    let lines = wait_for_lines(&log, 5, Duration::from_secs(20));
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["source"] == "with"), "{lines:?}");
    // TLS 1.3: the server refuses the missing certificate after the client's Finished,
    // so the refusal arrives as an alert on the first read.
    ferry.wait_for_log("CertificateRequired", Duration::from_secs(10));
    assert!(!ferry.log().contains("source without: subscribed"));
}

#[test]
fn a_server_failing_verification_is_named_and_retried_with_backoff() {
    let dir = temp_dir("tls-hostile");
    let certs = certs::Set::new(&dir);
    let ca = &certs.ca.cert;
    let wrong = TlsRedis::start(&dir, ca, &certs.wrong_name, "optional");
    let expired = TlsRedis::start(&dir, ca, &certs.expired, "optional");
    let unknown = TlsRedis::start(&dir, ca, &certs.unknown_ca, "optional");
    let fpm = PhpFpm::start();
    let tls = json!({ "ca_file": ca });
    let url = |r: &TlsRedis| format!("rediss://localhost:{}", r.tls_port);
    let config = config(
        &dir,
        &fpm,
        vec![
            redis_source("wrong", url(&wrong), tls.clone(), "c", "/x.php"),
            redis_source("expired", url(&expired), tls.clone(), "c", "/x.php"),
            redis_source("unknown", url(&unknown), tls, "c", "/x.php"),
        ],
    );
    let started = Instant::now();
    let ferry = Ferry::start(&dir, &config);
    std::thread::sleep(Duration::from_secs(6));
    let window = started.elapsed();
    let log = ferry.log();
    for (source, cause) in [
        ("wrong", "not valid for this host name"),
        ("expired", "certificate has expired"),
        ("unknown", "authority ferry does not trust"),
    ] {
        let failures: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("source {source}: connect failed: TLS handshake")))
            .collect();
        assert!(!failures.is_empty(), "{source}: {log}");
        assert!(
            failures.iter().all(|l| l.contains(cause)),
            "{source}: {failures:?}"
        );
        // Backoff from 500 ms, doubling, each delay at least half its step: within the
        // window at most 1 + the attempts whose earliest start fits in it.
        let (mut at, mut step, mut most) = (0.0, 0.5, 1);
        loop {
            at += step / 2.0;
            if at > window.as_secs_f64() {
                break;
            }
            most += 1;
            step *= 2.0;
        }
        assert!(
            failures.len() >= 2 && failures.len() <= most,
            "{source}: {} attempts in {window:?} (backoff allows {most})",
            failures.len()
        );
    }
    assert!(!log.contains("subscribed"), "{log}");
    let (code, text) = check(&dir, &config, false);
    assert_eq!(code, 1);
    assert!(text.contains("certificate has expired"), "{text}");
}

/// A hostile peer on a TLS URL: it records every byte ferry sends, then answers as a
/// plain-text Redis would to a line it does not know, and closes.
#[test]
fn a_plain_text_server_behind_a_tls_url_gets_no_credentials_and_a_clear_error() {
    let dir = temp_dir("tls-plain");
    let fpm = PhpFpm::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let record = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut bytes = vec![0; 4096];
            let n = stream.read(&mut bytes).unwrap_or(0);
            bytes.truncate(n);
            record.lock().unwrap().push(bytes);
            let _ = stream.write_all(b"-ERR unknown command\r\n");
        }
    });
    let config = config(
        &dir,
        &fpm,
        vec![
            redis_source(
                "plain",
                format!("rediss://127.0.0.1:{port}"),
                json!({}),
                "c",
                "/x.php",
            ),
            json!({
                "kind": "amqp", "name": "rabbit", "url": "amqps://guest:guest@localhost:5672/%2f",
                "queue": unique("tls-plain"), "tls": {}, "job": { "pool": "php", "script": "/x.php" }
            }),
        ],
    );
    let ferry = Ferry::start(&dir, &config);
    ferry.wait_for_log_count(
        "source plain: connect failed: TLS handshake",
        2,
        "two failed handshakes",
        Duration::from_secs(10),
    );
    ferry.wait_for_log(
        "source rabbit: connect failed: TLS handshake",
        Duration::from_secs(10),
    );
    let log = ferry.log();
    for source in ["plain", "rabbit"] {
        assert!(
            log.lines()
                .filter(|l| l.contains(&format!("source {source}: connect failed")))
                .all(|l| l.contains("plain-text port behind a TLS URL")),
            "{source}: {log}"
        );
    }
    let received = received.lock().unwrap();
    assert!(received.len() >= 2);
    for bytes in received.iter() {
        assert_eq!(
            bytes.get(..2),
            Some(&[0x16, 0x03][..]),
            "a TLS ClientHello first"
        );
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(PASSWORD) && !text.contains("AUTH") && !text.contains("HELLO"));
    }
}

/// A TLS server whose certificate fails verification (issued for another name): the
/// handshake runs to the server's side of it, and ferry sends not one byte of
/// application data.
#[test]
fn no_application_byte_leaves_before_the_certificate_is_verified() {
    let dir = temp_dir("tls-nobytes");
    let certs = certs::Set::new(&dir);
    let fpm = PhpFpm::start();
    let server_config = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![CertificateDer::from_pem_file(&certs.wrong_name.cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&certs.wrong_name.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let plaintext = Arc::new(std::sync::Mutex::new((0usize, 0usize))); // (handshakes, bytes)
    let seen = Arc::clone(&plaintext);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { return };
            tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut session = rustls::ServerConnection::new(Arc::clone(&server_config)).unwrap();
            let mut got = Vec::new();
            loop {
                match session.complete_io(&mut tcp) {
                    Ok((0, 0)) => break,
                    Ok(_) => {
                        let _ = session.reader().read_to_end(&mut got);
                    }
                    Err(_) => break,
                }
            }
            let mut seen = seen.lock().unwrap();
            seen.0 += 1;
            seen.1 += got.len();
        }
    });
    let tls = json!({ "ca_file": certs.ca.cert, "server_name": "localhost" });
    let config = config(
        &dir,
        &fpm,
        vec![redis_source(
            "strict",
            format!("rediss://127.0.0.1:{port}"),
            tls,
            "c",
            "/x.php",
        )],
    );
    let ferry = Ferry::start(&dir, &config);
    ferry.wait_for_log_count(
        "source strict: connect failed: TLS handshake",
        2,
        "two refused certificates",
        Duration::from_secs(10),
    );
    assert!(
        ferry.log().contains("not valid for this host name"),
        "{}",
        ferry.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let (handshakes, bytes) = *plaintext.lock().unwrap();
    assert!(handshakes >= 1, "the server saw the handshakes");
    assert_eq!(bytes, 0, "no application data before verification");
}

#[test]
fn amqp_over_tls_with_a_client_certificate_consumes_and_acks() {
    let dir = temp_dir("tls-amqp");
    let certs = certs::Set::new(&dir);
    let (plain, tls_port) = (free_port(), free_port());
    let conf = format!(
        "listeners.ssl.default = {tls_port}\n\
         ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n",
        certs.ca.cert.display(),
        certs.server.cert.display(),
        certs.server.key.display()
    );
    let node = rabbit_node::RabbitNode::start(&dir.join("node"), "tls", plain, &conf, tls_port);
    let fpm = PhpFpm::start();
    let log = dir.join("worker.log");
    let script = worker(&fpm, &log);
    let queue = unique("tls-jobs");
    let source = json!({
        "kind": "amqp", "name": "secure",
        "url": format!("amqps://guest:guest@localhost:{tls_port}/%2f"),
        "tls": {
            "ca_file": certs.ca.cert,
            "client_cert_file": certs.client.cert, "client_key_file": certs.client.key
        },
        "queue": queue, "job": { "pool": "php", "script": script }
    });
    let config = config(&dir, &fpm, vec![source]);
    let (code, text) = check(&dir, &config, false);
    assert!(text.contains("TLS: TLSv1_3"), "{code} {text}");
    assert!(text.contains("OK   amqp source 'secure'"), "{text}");
    let ferry = Ferry::start(&dir, &config);
    ferry.wait_for_log("source secure: consuming", Duration::from_secs(20));
    let plain_url = format!("amqp://guest:guest@127.0.0.1:{plain}/%2f");
    publish(&[
        "--amqp",
        &plain_url,
        "--queue",
        &queue,
        "--count",
        "50",
        r#"{"n": {n}}"#,
    ]);
    let lines = wait_for_lines(&log, 50, Duration::from_secs(30));
    assert_eq!(lines.len(), 50, "{}", ferry.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.depth(&queue) != Some(0) {
        assert!(Instant::now() < deadline, "every message acked");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stream_source_reads_and_acks_over_tls() {
    let dir = temp_dir("tls-stream");
    let certs = certs::Set::new(&dir);
    let redis = TlsRedis::start(&dir, &certs.ca.cert, &certs.server, "optional");
    let fpm = PhpFpm::start();
    let log = dir.join("worker.log");
    let script = worker(&fpm, &log);
    let stream = unique("tls-stream");
    let source = json!({
        "kind": "redis_stream", "name": "s",
        "url": format!("rediss://localhost:{}", redis.tls_port),
        "tls": { "ca_file": certs.ca.cert }, "password_file": "password",
        "stream": stream, "group": "g", "start": "0",
        "job": { "pool": "php", "script": script }
    });
    let config = config(&dir, &fpm, vec![source]);
    for n in 1..=10 {
        redis.cli(&["XADD", &stream, "*", "n", &n.to_string()]);
    }
    let ferry = Ferry::start(&dir, &config);
    let lines = wait_for_lines(&log, 10, Duration::from_secs(20));
    assert_eq!(lines.len(), 10, "{}", ferry.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cli(&["XPENDING", &stream, "g"]).lines().next() != Some("0") {
        assert!(Instant::now() < deadline, "every entry acked over TLS");
        std::thread::sleep(Duration::from_millis(50));
    }
}
