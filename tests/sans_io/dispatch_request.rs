//! `dispatch::request`: the params and body of the FastCGI request built for a Redis and an
//! AMQP message, checked by decoding the bytes with the responder role's `RequestDecoder`.

use ferry::config::JobConfig;
use ferry::dispatch::request::{
    Message, RequestBuilder, RequestError, RequestOptions, SourceKind, BODY_RETAIN_BYTES,
    SERVER_SOFTWARE,
};
use ferry::proto::amqp::{FieldValue, TableBuilder};
use ferry::proto::fastcgi::{FcgiError, RequestDecoder, RequestEvent, Role};
use ferry::proto::form::{FormError, JsonKind};
use ferry::proto::Status;

#[derive(Debug, Default)]
struct Decoded {
    request_id: u16,
    keep_conn: bool,
    params: Vec<(String, String)>,
    stdin: Vec<u8>,
}

fn decode(bytes: &[u8]) -> Decoded {
    let mut decoder = RequestDecoder::new(1 << 20);
    let mut decoded = Decoded::default();
    let mut pos = 0;
    loop {
        let (event, used) = match decoder.decode(&bytes[pos..]).unwrap() {
            Status::Complete(event, used) => (event, used),
            Status::Partial => panic!("request cut short at {pos}"),
        };
        pos += used;
        match event {
            RequestEvent::Begin {
                request_id,
                role,
                keep_conn,
            } => {
                assert_eq!(role, Role::Responder);
                decoded.request_id = request_id;
                decoded.keep_conn = keep_conn;
            }
            RequestEvent::ParamsChunk(_) => {}
            RequestEvent::Params(params) => {
                decoded.params = params
                    .iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8(n.to_vec()).unwrap(),
                            String::from_utf8(v.to_vec()).unwrap(),
                        )
                    })
                    .collect();
            }
            RequestEvent::Stdin(chunk) => decoded.stdin.extend_from_slice(chunk),
            RequestEvent::StdinEnd => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pos, bytes.len(), "nothing after the empty STDIN record");
    decoded
}

fn job(json: &str) -> JobConfig {
    serde_json::from_str(json).unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn redis_message_with_a_form_body() {
    let job = job(r#"{"pool": "php", "script": "/srv/app/worker.php"}"#);
    let mut message = Message::new("events", SourceKind::Redis, 1);
    message.channel = Some(b"jobs.mail");
    message.pattern = Some(b"jobs.*");
    let payload = br#"{"name": "ferry", "n": 42, "tags": ["a b"], "ok": true, "none": null}"#;
    let mut out = b"kept".to_vec();
    let built = RequestBuilder::default()
        .build(&mut out, &job, &message, payload, RequestOptions::default())
        .unwrap();
    assert_eq!(&out[..4], b"kept", "appended");
    assert_eq!(built.request_bytes, out.len() - 4);
    let body = b"name=ferry&n=42&tags%5B0%5D=a+b&ok=1";
    assert_eq!(built.body_bytes, body.len());
    assert_eq!(built.form_variables, Some(4));
    let decoded = decode(&out[4..]);
    assert_eq!(decoded.request_id, 1);
    assert!(!decoded.keep_conn);
    assert_eq!(decoded.stdin, body);
    assert_eq!(
        decoded.params,
        pairs(&[
            ("GATEWAY_INTERFACE", "FastCGI/1.0"),
            ("SERVER_SOFTWARE", SERVER_SOFTWARE),
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_FILENAME", "/srv/app/worker.php"),
            ("SCRIPT_NAME", "/srv/app/worker.php"),
            ("REQUEST_URI", "/srv/app/worker.php"),
            ("QUERY_STRING", ""),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"),
            ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
            ("CONTENT_LENGTH", &body.len().to_string()),
            ("FERRY_SOURCE", "events"),
            ("FERRY_KIND", "redis"),
            ("FERRY_ATTEMPT", "1"),
            ("FERRY_CHANNEL", "jobs.mail"),
            ("FERRY_PATTERN", "jobs.*"),
        ])
    );
    assert_eq!(
        SERVER_SOFTWARE,
        concat!("ferry/", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn amqp_message_with_a_raw_body_and_headers() {
    let job = job(
        r#"{"pool": "php", "script": "/srv/app/worker.php", "body": "raw",
            "method": "PUT", "params": {"APP_ENV": "prod", "SERVER_NAME": "jobs.example",
            "FERRY_SOURCE": "spoofed"}}"#,
    );
    let mut headers = TableBuilder::new();
    headers
        .insert(b"x-ferry-attempt", FieldValue::I32(3))
        .unwrap()
        .insert(b"trace-id", FieldValue::LongStr(b"abc-123"))
        .unwrap()
        .insert(
            b"price",
            FieldValue::Decimal {
                scale: 2,
                value: 1999,
            },
        )
        .unwrap()
        .insert(b"ratio", FieldValue::F64(0.25))
        .unwrap()
        .insert(b"big", FieldValue::I64(-9_000_000_000))
        .unwrap()
        .insert(b"flag", FieldValue::Bool(true))
        .unwrap()
        .insert(b"blob", FieldValue::Bytes(b"\x00\x01"))
        .unwrap()
        .insert(b"when", FieldValue::Timestamp(1_700_000_000))
        .unwrap()
        .insert(b"nested", FieldValue::Table(TableBuilder::new().as_table()))
        .unwrap()
        .insert(b"caf\xc3\xa9.Name", FieldValue::U8(7))
        .unwrap();
    let mut message = Message::new("tasks", SourceKind::Amqp, 3);
    message.queue = Some(b"commands");
    message.exchange = Some(b"");
    message.routing_key = Some(b"commands");
    message.redelivered = Some(true);
    message.message_id = Some(b"m-0001");
    message.correlation_id = Some(b"c-9");
    message.reply_to = Some(b"amq.rabbitmq.reply-to");
    message.timestamp = Some(1_700_000_001);
    message.headers = Some(headers.as_table());
    message.content_type = Some(b"application/json");
    let payload = b"[1, 2, 3] is fine raw";
    let mut out = Vec::new();
    let built = RequestBuilder::default()
        .build(
            &mut out,
            &job,
            &message,
            payload,
            RequestOptions {
                request_id: 1,
                keep_conn: true,
            },
        )
        .unwrap();
    assert_eq!(built.form_variables, None);
    assert_eq!(built.body_bytes, payload.len());
    let decoded = decode(&out);
    assert!(decoded.keep_conn);
    assert_eq!(decoded.stdin, payload);
    assert_eq!(
        decoded.params,
        pairs(&[
            ("GATEWAY_INTERFACE", "FastCGI/1.0"),
            ("SERVER_SOFTWARE", SERVER_SOFTWARE),
            ("REQUEST_METHOD", "PUT"),
            ("SCRIPT_FILENAME", "/srv/app/worker.php"),
            ("SCRIPT_NAME", "/srv/app/worker.php"),
            ("REQUEST_URI", "/srv/app/worker.php"),
            ("QUERY_STRING", ""),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "127.0.0.1"),
            // SERVER_NAME: the job's value, in the job params' place.
            ("SERVER_PORT", "80"),
            ("CONTENT_TYPE", "application/json"),
            ("CONTENT_LENGTH", &payload.len().to_string()),
            ("APP_ENV", "prod"),
            ("SERVER_NAME", "jobs.example"),
            // FERRY_SOURCE from the job is not sent.
            ("FERRY_SOURCE", "tasks"),
            ("FERRY_KIND", "amqp"),
            ("FERRY_ATTEMPT", "3"),
            ("FERRY_QUEUE", "commands"),
            ("FERRY_EXCHANGE", ""),
            ("FERRY_ROUTING_KEY", "commands"),
            ("FERRY_REDELIVERED", "1"),
            ("FERRY_MESSAGE_ID", "m-0001"),
            ("FERRY_CORRELATION_ID", "c-9"),
            ("FERRY_REPLY_TO", "amq.rabbitmq.reply-to"),
            ("FERRY_TIMESTAMP", "1700000001"),
            ("FERRY_HEADER_X_FERRY_ATTEMPT", "3"),
            ("FERRY_HEADER_TRACE_ID", "abc-123"),
            ("FERRY_HEADER_PRICE", "19.99"),
            ("FERRY_HEADER_RATIO", "0.25"),
            ("FERRY_HEADER_BIG", "-9000000000"),
            ("FERRY_HEADER_WHEN", "1700000000"),
            // `é` is two bytes, so two underscores, then one for the `.`.
            ("FERRY_HEADER_CAF___NAME", "7"),
        ])
    );
}

#[test]
fn raw_body_without_amqp_content_type_uses_the_jobs() {
    let job = job(r#"{"pool": "p", "script": "/w.php", "body": "raw"}"#);
    let mut message = Message::new("r", SourceKind::RespEndpoint, 2);
    message.redelivered = Some(false);
    let mut out = Vec::new();
    RequestBuilder::default()
        .build(&mut out, &job, &message, b"", RequestOptions::default())
        .unwrap();
    let decoded = decode(&out);
    let get = |name: &str| {
        decoded
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("CONTENT_TYPE"), Some("application/octet-stream"));
    assert_eq!(get("CONTENT_LENGTH"), Some("0"));
    assert_eq!(get("FERRY_KIND"), Some("resp_endpoint"));
    assert_eq!(get("FERRY_REDELIVERED"), Some("0"));
    assert_eq!(get("FERRY_CHANNEL"), None);
    assert!(decoded.stdin.is_empty());
}

#[test]
fn a_form_payload_that_is_not_an_object_is_a_typed_error() {
    let job = job(r#"{"pool": "p", "script": "/w.php"}"#);
    let message = Message::new("events", SourceKind::Redis, 1);
    let mut builder = RequestBuilder::default();
    let mut out = b"untouched".to_vec();
    let error = builder
        .build(
            &mut out,
            &job,
            &message,
            b"[1, 2]",
            RequestOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        error,
        RequestError::Form(FormError::NotAnObject {
            found: JsonKind::Array
        })
    );
    assert!(matches!(
        builder.build(
            &mut out,
            &job,
            &message,
            b"not json",
            RequestOptions::default()
        ),
        Err(RequestError::Form(FormError::InvalidJson { .. }))
    ));
    assert_eq!(out, b"untouched");
    // The builder works on after an error.
    builder
        .build(&mut out, &job, &message, b"{}", RequestOptions::default())
        .unwrap();
    assert_eq!(decode(&out[9..]).stdin, b"");
}

#[test]
fn form_body_larger_than_the_limit() {
    let job = job(r#"{"pool": "p", "script": "/w.php"}"#);
    let message = Message::new("events", SourceKind::Redis, 1);
    let mut out = Vec::new();
    let error = RequestBuilder::new(16)
        .build(
            &mut out,
            &job,
            &message,
            br#"{"a": "0123456789abcdef"}"#,
            RequestOptions::default(),
        )
        .unwrap_err();
    assert_eq!(error, RequestError::Form(FormError::TooLarge { limit: 16 }));
    assert!(out.is_empty());
}

#[test]
fn a_header_too_large_for_one_params_record_is_a_typed_error() {
    let job = job(r#"{"pool": "p", "script": "/w.php", "body": "raw"}"#);
    let huge = vec![b'v'; 70_000];
    let mut headers = TableBuilder::new();
    headers.insert(b"h", FieldValue::LongStr(&huge)).unwrap();
    let mut message = Message::new("tasks", SourceKind::Amqp, 1);
    message.headers = Some(headers.as_table());
    let mut out = Vec::new();
    let error = RequestBuilder::default()
        .build(&mut out, &job, &message, b"x", RequestOptions::default())
        .unwrap_err();
    assert!(matches!(
        error,
        RequestError::Fcgi(FcgiError::PairTooLarge { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn large_bodies_span_records_and_the_buffer_is_released() {
    let job = job(r#"{"pool": "p", "script": "/w.php"}"#);
    let message = Message::new("events", SourceKind::Redis, 1);
    let value = "x".repeat(BODY_RETAIN_BYTES + 10);
    let payload = format!(r#"{{"big": "{value}"}}"#);
    let mut builder = RequestBuilder::default();
    let mut out = Vec::new();
    builder
        .build(
            &mut out,
            &job,
            &message,
            payload.as_bytes(),
            RequestOptions::default(),
        )
        .unwrap();
    let decoded = decode(&out);
    assert_eq!(decoded.stdin, format!("big={value}").as_bytes());
    assert!(
        builder.held_bytes() < BODY_RETAIN_BYTES,
        "{}",
        builder.held_bytes()
    );
    // Many params spread over PARAMS records are still whole pairs.
    let params: std::collections::BTreeMap<String, String> = (0..2000)
        .map(|i| (format!("P{i:04}"), "v".repeat(100)))
        .collect();
    let mut job = job;
    job.params = params;
    out.clear();
    builder
        .build(&mut out, &job, &message, b"{}", RequestOptions::default())
        .unwrap();
    assert_eq!(decode(&out).params.len(), 13 + 2000 + 3);
}

/// Building into a reserved buffer with a warmed-up builder does not allocate a per-param
/// buffer: measured loosely, the output buffer never reallocates and repeated builds reuse
/// the builder's scratch (checked by capacity staying put).
#[test]
fn buffers_are_reused() {
    let job = job(r#"{"pool": "p", "script": "/w.php"}"#);
    let mut headers = TableBuilder::new();
    headers.insert(b"n", FieldValue::I32(1)).unwrap();
    let mut message = Message::new("tasks", SourceKind::Amqp, 1);
    message.headers = Some(headers.as_table());
    let mut builder = RequestBuilder::default();
    let mut out = Vec::with_capacity(4096);
    let pointer = out.as_ptr();
    for _ in 0..3 {
        out.clear();
        builder
            .build(
                &mut out,
                &job,
                &message,
                br#"{"a":1}"#,
                RequestOptions::default(),
            )
            .unwrap();
        assert_eq!(out.as_ptr(), pointer);
    }
}
