//! `ferry responder` (`docs/OPERATIONS.md` "Other commands", README.md "Status"): ferry
//! run delivers to it, it
//! reports spec violations on stderr and keeps serving, and it answers many delayed
//! requests concurrently from one loop. The first test needs Redis on 127.0.0.1:6379.

#[path = "support/ferry.rs"]
mod ferry_proc;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry::proto::fastcgi::{decode_get_values_result, encode_get_values, encode_request};
use ferry::proto::Status;
use ferry_proc::{publish, temp_dir, unique, wait_for_lines, Ferry};
use serde_json::json;

fn start_responder(dir: &Path, extra: &[&str]) -> (Ferry, PathBuf) {
    let socket = dir.join("r.sock");
    let listen = format!("unix:{}", socket.display());
    let mut args = vec!["responder", "--listen", &listen];
    args.extend_from_slice(extra);
    let responder = Ferry::start_args(dir, &args);
    responder.wait_for_log("ferry responder: listening on", Duration::from_secs(10));
    (responder, socket)
}

/// Sends one request (KEEP_CONN off) and reads the answer until the responder closes.
fn request(socket: &Path, id: u16, body: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(&encoded_request(id, body)).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

fn encoded_request(id: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params: [(&[u8], &[u8]); 2] = [
        (b"SCRIPT_FILENAME", b"/srv/worker.php"),
        (b"REQUEST_METHOD", b"POST"),
    ];
    encode_request(&mut out, id, false, params, body).unwrap();
    out
}

/// A whole answer: STDOUT with the status head, then END_REQUEST (type 3) last.
fn is_answer(bytes: &[u8], status: &str) -> bool {
    let text = String::from_utf8_lossy(bytes);
    bytes.len() >= 16
        && bytes[bytes.len() - 16 + 1] == 3
        && text.contains(&format!("Status: {status}\r\n"))
}

#[test]
fn ferry_run_delivers_published_messages_to_the_responder() {
    let dir = temp_dir("ferry-responder-run");
    let log = dir.join("log");
    let (mut responder, socket) =
        start_responder(&dir, &["--log", log.to_str().unwrap(), "--status", "202"]);
    let channel = unique("ferry-test-responder");
    let config = json!({
        "control": { "listen": null },
        "pools": { "builtin": { "address": format!("unix:{}", socket.display()) } },
        "sources": [{
            "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
            "channels": [channel],
            "job": { "pool": "builtin", "script": "/srv/worker.php" }
        }]
    });
    let mut ferry = Ferry::start(&dir, &config);
    ferry.wait_for_log("source events: subscribed", Duration::from_secs(10));
    publish(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--channel",
        &channel,
        "--count",
        "20",
        r#"{"n": {n}}"#,
    ]);
    let lines = wait_for_lines(&log, 20, Duration::from_secs(20));
    assert_eq!(lines.len(), 20, "responder log:\n{}", responder.log());
    let bodies: BTreeSet<String> = lines
        .iter()
        .map(|l| l["body"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (1..=20).map(|n| format!("n={n}")).collect();
    assert_eq!(bodies, expected);
    for line in &lines {
        let params = &line["params"];
        assert_eq!(params["FERRY_SOURCE"], "events", "{line}");
        assert_eq!(params["FERRY_CHANNEL"], channel.as_str(), "{line}");
        assert_eq!(params["FERRY_ATTEMPT"], "1", "{line}");
        assert_eq!(params["SCRIPT_FILENAME"], "/srv/worker.php", "{line}");
        assert!(line["received_at_us"].as_u64().unwrap() > 1_600_000_000_000_000);
    }
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    responder.signal("TERM");
    assert!(responder.wait(Duration::from_secs(10)).success());
    assert!(!responder.log().contains("closing the connection"));
}

#[test]
fn a_malformed_record_is_reported_and_the_responder_keeps_serving() {
    let dir = temp_dir("ferry-responder-strict");
    let (mut responder, socket) = start_responder(&dir, &[]);

    // Version 2 does not exist.
    let mut bad = UnixStream::connect(&socket).unwrap();
    bad.write_all(&[2, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let mut rest = Vec::new();
    bad.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing answered: {rest:?}");
    responder.wait_for_log("FastCGI version 2", Duration::from_secs(5));
    assert!(responder.log().contains("closing the connection"));

    // STDIN before the PARAMS stream.
    let mut bad = UnixStream::connect(&socket).unwrap();
    bad.write_all(&[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        .unwrap();
    bad.write_all(&[1, 5, 0, 1, 0, 1, 0, 0, b'x']).unwrap();
    bad.read_to_end(&mut Vec::new()).unwrap();
    responder.wait_for_log("STDIN", Duration::from_secs(5));

    // Still serving: a request, and GET_VALUES.
    assert!(is_answer(&request(&socket, 1, b"a=1"), "200"));
    let mut ask = Vec::new();
    encode_get_values(
        &mut ask,
        [&b"FCGI_MAX_CONNS"[..], b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"],
    )
    .unwrap();
    // An unknown management record type (id 0) gets UNKNOWN_TYPE.
    ask.extend_from_slice(&[1, 42, 0, 0, 0, 0, 0, 0]);
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.write_all(&ask).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).unwrap();
        got.extend_from_slice(&chunk[..n]);
        if n == 0
            || got.len() >= 16 && got.ends_with(&[1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0])
        {
            break;
        }
    }
    let Status::Complete(pairs, used) = decode_get_values_result(&got).unwrap() else {
        panic!("no GET_VALUES_RESULT: {got:?}");
    };
    let pairs: Vec<(String, String)> = pairs
        .map(|p| p.unwrap())
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("FCGI_MPXS_CONNS".into(), "0".into())),
        "{pairs:?}"
    );
    assert!(pairs.iter().any(|(n, _)| n == "FCGI_MAX_CONNS"));
    assert!(pairs.iter().any(|(n, _)| n == "FCGI_MAX_REQS"));
    assert_eq!(
        &got[used..],
        &[1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0],
        "UNKNOWN_TYPE for type 42"
    );

    responder.signal("TERM");
    assert!(responder.wait(Duration::from_secs(10)).success());
    let log = responder.log();
    assert_eq!(log.matches("closing the connection").count(), 2, "{log}");
}

#[test]
fn fifty_delayed_requests_are_answered_concurrently() {
    let dir = temp_dir("ferry-responder-delay");
    let (mut responder, socket) = start_responder(&dir, &["--delay-ms", "200"]);
    let mut streams: Vec<UnixStream> = (0..50)
        .map(|i| {
            let mut stream = UnixStream::connect(&socket).unwrap();
            stream
                .write_all(&encoded_request(i + 1, format!("n={i}").as_bytes()))
                .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        })
        .collect();
    let answered = streams
        .iter_mut()
        .map(|stream| {
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).is_ok() && is_answer(&answer, "200")
        })
        .filter(|answered| *answered)
        .count();
    assert_eq!(answered, 50, "responder log:\n{}", responder.log());
    responder.signal("INT");
    assert!(responder.wait(Duration::from_secs(10)).success());
}

/// A request for another role, encoded by hand: BEGIN_REQUEST(role), empty PARAMS, empty
/// STDIN, and for FILTER (3) one DATA record and the empty one.
fn role_request(id: u16, role: u16) -> Vec<u8> {
    let record = |kind: u8, content: &[u8]| -> Vec<u8> {
        let mut r = vec![1, kind];
        r.extend_from_slice(&id.to_be_bytes());
        r.extend_from_slice(&(content.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(content);
        r
    };
    let [hi, lo] = role.to_be_bytes();
    let mut out = record(1, &[hi, lo, 0, 0, 0, 0, 0, 0]);
    out.extend(record(4, b""));
    out.extend(record(5, b""));
    if role == 3 {
        out.extend(record(8, b"data"));
        out.extend(record(8, b""));
    }
    out
}

#[test]
fn authorizer_and_filter_requests_are_refused_with_unknown_role() {
    let dir = temp_dir("ferry-responder-roles");
    let log = dir.join("log");
    let (mut responder, socket) = start_responder(&dir, &["--log", log.to_str().unwrap()]);
    for (id, role) in [(7u16, 2u16), (8, 3)] {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.write_all(&role_request(id, role)).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        // Exactly one record: END_REQUEST (type 3) for this id, protocol status 3.
        assert_eq!(answer.len(), 16, "role {role}: {answer:?}");
        assert_eq!(answer[1], 3, "role {role}: not END_REQUEST");
        assert_eq!(u16::from_be_bytes([answer[2], answer[3]]), id);
        assert_eq!(
            answer[12], 3,
            "role {role}: protocol status is not UNKNOWN_ROLE"
        );
    }
    // A RESPONDER request on the same responder is still answered and logged; the
    // refused ones are not logged.
    assert!(is_answer(&request(&socket, 9, b"x=1"), "200"));
    let lines = wait_for_lines(&log, 1, Duration::from_secs(10));
    assert_eq!(lines.len(), 1);
    responder.wait_for_log("UNKNOWN_ROLE", Duration::from_secs(5));
    responder.signal("TERM");
    assert!(responder.wait(Duration::from_secs(10)).success());
}

/// Reads records until END_REQUEST for every id in `ids` (or EOF); the records as
/// `(type, id, content)`.
fn records_until_ends(stream: &mut UnixStream, ids: &[u16]) -> Vec<(u8, u16, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = Vec::new();
    let mut records = Vec::new();
    let mut waiting: Vec<u16> = ids.to_vec();
    while !waiting.is_empty() {
        while let Ok(Status::Complete(record, used)) = ferry::proto::fastcgi::decode_record(&buf) {
            let kind = record.record_type.to_u8();
            if kind == 3 {
                waiting.retain(|&id| id != record.request_id);
            }
            records.push((kind, record.request_id, record.content.to_vec()));
            buf.drain(..used);
        }
        if waiting.is_empty() {
            break;
        }
        let mut chunk = [0; 65536];
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed before END_REQUEST for {waiting:?}: {records:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    records
}

#[test]
fn a_second_concurrent_request_and_an_undefined_role_get_end_request() {
    use ferry::proto::fastcgi::{encode_begin_request, encode_raw_record, encode_record};
    use ferry::proto::fastcgi::{RecordType, Role};
    let dir = temp_dir("ferry-responder-refusals");
    let (mut responder, socket) = start_responder(&dir, &[]);

    // Request 2 begins while request 1's input is incomplete: CANT_MPX_CONN (protocol
    // status 1) for 2, its records ignored, and request 1 still served.
    let params = b"\x0f\x0fSCRIPT_FILENAME/srv/worker.php";
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, true);
    encode_begin_request(&mut out, 2, Role::Responder, true);
    for id in [1, 2] {
        encode_record(&mut out, RecordType::Params, id, params).unwrap();
        encode_record(&mut out, RecordType::Params, id, b"").unwrap();
    }
    encode_record(&mut out, RecordType::Stdin, 2, b"").unwrap();
    encode_record(&mut out, RecordType::Stdin, 1, b"").unwrap();
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.write_all(&out).unwrap();
    let records = records_until_ends(&mut stream, &[1, 2]);
    let end = |id: u16| {
        records
            .iter()
            .find(|(kind, rid, _)| *kind == 3 && *rid == id)
            .map(|(_, _, content)| content[4])
    };
    assert_eq!(end(2), Some(1), "CANT_MPX_CONN for request 2: {records:?}");
    assert_eq!(end(1), Some(0), "request 1 completed: {records:?}");
    assert!(records.iter().any(|(kind, id, _)| *kind == 6 && *id == 1));
    // The id is usable again with a new BEGIN_REQUEST on the kept connection.
    let mut again = Vec::new();
    encode_request(&mut again, 2, true, [(&b"A"[..], &b"b"[..])], b"").unwrap();
    stream.write_all(&again).unwrap();
    let records = records_until_ends(&mut stream, &[2]);
    assert_eq!(records.last().map(|r| (r.0, r.2[4])), Some((3, 0)));

    // Role 9 is not defined: END_REQUEST UNKNOWN_ROLE (3), then closed (no KEEP_CONN).
    let mut out = Vec::new();
    encode_raw_record(&mut out, 1, 1, 5, &[0, 9, 0, 0, 0, 0, 0, 0], 0).unwrap();
    encode_record(&mut out, RecordType::Params, 5, b"").unwrap();
    encode_record(&mut out, RecordType::Stdin, 5, b"").unwrap();
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.write_all(&out).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert_eq!(answer.len(), 16, "{answer:?}");
    assert_eq!((answer[1], answer[3], answer[12]), (3, 5, 3));

    // A 70,000-byte value (its pair spans PARAMS records) is served.
    let mut pair = Vec::new();
    ferry::proto::fastcgi::nv::encode_pair(&mut pair, b"HTTP_X_BIG", &vec![b'v'; 70_000]).unwrap();
    let mut out = Vec::new();
    encode_begin_request(&mut out, 3, Role::Responder, false);
    for chunk in pair.chunks(0xFFF8) {
        encode_record(&mut out, RecordType::Params, 3, chunk).unwrap();
    }
    encode_record(&mut out, RecordType::Params, 3, b"").unwrap();
    encode_record(&mut out, RecordType::Stdin, 3, b"").unwrap();
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.write_all(&out).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(is_answer(&answer, "200"), "{answer:?}");

    responder.signal("TERM");
    assert!(responder.wait(Duration::from_secs(10)).success());
}
