//! The request builder, the Exchange and the outcome table against a real private php-fpm
//! 8.2 (see `support/php_fpm.rs`), driven over a blocking `UnixStream`. Fails when
//! php-fpm8.2 is not installed.

#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry::config::JobConfig;
use ferry::dispatch::outcome::{classify, Attempt, Outcome, PoolFailureReason, Reason};
use ferry::dispatch::request::{Message, RequestBuilder, RequestOptions, SourceKind};
use ferry::proto::fastcgi::{
    Ending, Exchange, ExchangeEvent, ExchangeOptions, Finished, ProtocolStatus,
};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::{json, Value};

/// Appends what it saw to $_SERVER['WORKER_LOG'] (a job param) as one JSON line, and does
/// what the POST fields ask: `action` → X-Ferry-Action, `retry_after`, `status`, `warn`.
const WORKER: &str = r#"<?php
$ferry = [];
foreach ($_SERVER as $name => $value) {
    if (strncmp($name, 'FERRY_', 6) === 0) { $ferry[$name] = $value; }
}
$seen = [
    'post' => $_POST,
    'input' => file_get_contents('php://input'),
    'content_type' => $_SERVER['CONTENT_TYPE'] ?? null,
    'method' => $_SERVER['REQUEST_METHOD'],
    'ferry' => $ferry,
];
file_put_contents($_SERVER['WORKER_LOG'], json_encode($seen) . "\n", FILE_APPEND | LOCK_EX);
if (isset($_POST['warn'])) { error_log($_POST['warn']); }
if (isset($_POST['action'])) { header('X-Ferry-Action: ' . $_POST['action']); }
if (isset($_POST['retry_after'])) { header('X-Ferry-Retry-After: ' . $_POST['retry_after']); }
if (isset($_POST['status'])) { http_response_code((int) $_POST['status']); }
header('Content-Type: application/json');
echo json_encode($seen);
"#;

struct Fixture {
    fpm: PhpFpm,
    job: JobConfig,
    log: std::path::PathBuf,
}

fn fixture(options: PhpFpmOptions) -> Fixture {
    let fpm = PhpFpm::start_with(options);
    let script = fpm.write_script("worker.php", WORKER);
    let log = fpm.dir().join("worker.log");
    let job = serde_json::from_value(json!({
        "pool": "php",
        "script": script,
        "params": {"WORKER_LOG": log},
    }))
    .unwrap();
    Fixture { fpm, job, log }
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs one exchange over `stream` the way the reactor will: write what poll_transmit
/// gives, feed reads to handle_input, EOF to handle_eof, until the Finished event.
fn exchange_over(stream: &mut UnixStream, request: Vec<u8>, keep_conn: bool) -> Finished {
    let options = ExchangeOptions {
        keep_conn,
        ..ExchangeOptions::new(Duration::from_secs(10))
    };
    let mut exchange = Exchange::new(request, options, Instant::now());
    let mut out = Vec::new();
    exchange.poll_transmit(&mut out);
    stream.write_all(&out).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(ExchangeEvent::Finished(finished)) = exchange.poll_event() {
            return finished;
        }
        let n = stream
            .read(&mut chunk)
            .expect("php-fpm answers within 10 s");
        if n == 0 {
            exchange.handle_eof(Instant::now());
            continue;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let used = exchange
            .handle_input(&buffer, Instant::now())
            .expect("well-formed answer");
        buffer.drain(..used);
    }
}

fn run(fx: &Fixture, job: &JobConfig, message: &Message<'_>, payload: &[u8]) -> Finished {
    let mut request = Vec::new();
    RequestBuilder::default()
        .build(
            &mut request,
            job,
            message,
            payload,
            RequestOptions::default(),
        )
        .unwrap();
    let mut stream = UnixStream::connect(fx.fpm.socket()).unwrap();
    exchange_over(&mut stream, request, false)
}

fn redis_message() -> Message<'static> {
    let mut message = Message::new("events", SourceKind::Redis, 1);
    message.channel = Some(b"jobs.mail");
    message.pattern = Some(b"jobs.*");
    message
}

#[test]
fn live_php_fpm() {
    let fx = fixture(PhpFpmOptions {
        children: 2,
        pool_lines: vec!["security.limit_extensions = .php".into()],
    });

    // 1. $_POST sees the form body; FERRY_* params arrive; ack wins over a 500.
    let payload = br#"{"action": "ack", "status": 500, "n": 42, "nested": {"a": [1, true]},
                       "text": "a b&c=d", "none": null, "warn": "careful\nnow"}"#;
    let finished = run(&fx, &fx.job, &redis_message(), payload);
    let seen = log_lines(&fx.log).pop().expect("the worker ran");
    assert_eq!(
        seen["post"],
        json!({"action": "ack", "status": "500", "n": "42",
               "nested": {"a": ["1", "1"]}, "text": "a b&c=d", "warn": "careful\nnow"})
    );
    assert_eq!(seen["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(seen["method"], "POST");
    assert_eq!(
        seen["ferry"],
        json!({"FERRY_SOURCE": "events", "FERRY_KIND": "redis", "FERRY_ATTEMPT": "1",
               "FERRY_CHANNEL": "jobs.mail", "FERRY_PATTERN": "jobs.*"})
    );
    assert_eq!(
        finished.ending,
        Ending::EndRequest {
            app_status: 0,
            protocol_status: ProtocolStatus::RequestComplete
        }
    );
    assert_eq!(finished.status, Some(500));
    assert!(finished.stdout_body_bytes > 0);
    assert_eq!(finished.stderr.excerpt, b"PHP message: careful\nnow");
    assert_eq!(finished.stderr.lines, 2);
    assert_eq!(
        classify(Attempt::Finished(&finished), false, false),
        Outcome::Success
    );

    // 2. retry with Retry-After.
    let finished = run(
        &fx,
        &fx.job,
        &redis_message(),
        br#"{"action": "retry", "retry_after": 30}"#,
    );
    assert_eq!(
        classify(Attempt::Finished(&finished), false, false),
        Outcome::Retryable {
            reason: Reason::RetryRequested,
            retry_after: Some(Duration::from_secs(30))
        }
    );

    // 3. The script's own 422 is permanent; its 503 retryable.
    let finished = run(&fx, &fx.job, &redis_message(), br#"{"status": 422}"#);
    assert_eq!(finished.status, Some(422));
    assert_eq!(
        classify(Attempt::Finished(&finished), false, false),
        Outcome::Permanent {
            reason: Reason::ClientError
        }
    );
    let finished = run(&fx, &fx.job, &redis_message(), br#"{"status": 503}"#);
    assert_eq!(
        classify(Attempt::Finished(&finished), false, false),
        Outcome::Retryable {
            reason: Reason::ServerError,
            retry_after: None
        }
    );

    // 4. A raw AMQP body with its content type reaches php://input.
    let mut raw_job = fx.job.clone();
    raw_job.body = ferry::config::BodyMode::Raw;
    let mut amqp = Message::new("tasks", SourceKind::Amqp, 2);
    amqp.queue = Some(b"commands");
    amqp.exchange = Some(b"");
    amqp.redelivered = Some(true);
    amqp.message_id = Some(b"m-1");
    amqp.content_type = Some(b"application/json");
    let finished = run(&fx, &raw_job, &amqp, br#"[1,2,3]"#);
    let seen = log_lines(&fx.log).pop().unwrap();
    assert_eq!(seen["input"], "[1,2,3]");
    assert_eq!(seen["content_type"], "application/json");
    assert_eq!(
        seen["ferry"],
        json!({"FERRY_SOURCE": "tasks", "FERRY_KIND": "amqp", "FERRY_ATTEMPT": "2",
               "FERRY_QUEUE": "commands", "FERRY_EXCHANGE": "", "FERRY_REDELIVERED": "1",
               "FERRY_MESSAGE_ID": "m-1"})
    );
    assert_eq!(
        classify(Attempt::Finished(&finished), false, false),
        Outcome::Success
    );
    // require_action_header: no X-Ferry-Action → retryable.
    assert_eq!(
        classify(Attempt::Finished(&finished), true, false),
        Outcome::Retryable {
            reason: Reason::MissingActionHeader,
            retry_after: None
        }
    );

    // 5. php-fpm's own 404 "Primary script unknown" and 403 (limit_extensions) are pool
    // failures; the worker never ran.
    let runs_before = log_lines(&fx.log).len();
    let mut missing = fx.job.clone();
    missing.script = fx.fpm.dir().join("nope.php").display().to_string();
    let finished = run(&fx, &missing, &redis_message(), b"{}");
    assert_eq!(finished.status, Some(404));
    assert!(finished.stderr.contains(b"Primary script unknown"));
    assert_eq!(
        classify(Attempt::Finished(&finished), true, false),
        Outcome::PoolFailure {
            reason: PoolFailureReason::ScriptUnknown
        }
    );
    let text = fx.fpm.write_script("worker.txt", WORKER);
    let mut denied = fx.job.clone();
    denied.script = text.display().to_string();
    let finished = run(&fx, &denied, &redis_message(), b"{}");
    assert_eq!(finished.status, Some(403));
    assert_eq!(
        classify(Attempt::Finished(&finished), false, false),
        Outcome::PoolFailure {
            reason: PoolFailureReason::AccessDenied
        }
    );
    assert_eq!(log_lines(&fx.log).len(), runs_before);

    // 6. KEEP_CONN: two requests on one connection; reusable after each.
    let mut stream = UnixStream::connect(fx.fpm.socket()).unwrap();
    for n in 1..=2 {
        let mut request = Vec::new();
        RequestBuilder::default()
            .build(
                &mut request,
                &fx.job,
                &redis_message(),
                format!(r#"{{"n": {n}}}"#).as_bytes(),
                RequestOptions {
                    request_id: 1,
                    keep_conn: true,
                },
            )
            .unwrap();
        let finished = exchange_over(&mut stream, request, true);
        assert!(finished.reusable, "request {n}");
        assert_eq!(
            log_lines(&fx.log).pop().unwrap()["post"]["n"],
            n.to_string()
        );
    }
}
