//! Hand-written wire-format builders for the side-by-side codec benchmarks.
//!
//! Every input the benches feed to a decoder is produced here, byte by byte, from the
//! protocol specifications (RESP2/RESP3, AMQP 0-9-1 with RabbitMQ's field-table errata,
//! FastCGI 1.0) and never by any of the libraries under test, so that no competitor (and
//! not ferry either) is measured on bytes it wrote itself. The few `*_check` helpers at the
//! bottom are deliberately naive readers used only to assert, outside the timed loops, that
//! an encoder under test produced a valid stream.
//!
//! Payloads carry their index (`payload_for`) so a bench can assert that the *last* frame a
//! decoder returned is the one expected, not just that it returned the right count.

/// Channel name used in every RESP pub/sub frame.
pub const RESP_CHANNEL: &[u8] = b"ferry.events";

/// Deterministic payload for message `index`: the index as 8 zero-padded decimal digits,
/// then `'x'` up to `len` bytes (truncated when `len < 8`).
pub fn payload_for(index: usize, len: usize) -> Vec<u8> {
    let mut payload = format!("{index:08}").into_bytes();
    payload.resize(len, b'x');
    payload
}

fn push_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn resp_message_stream(n: usize, payload_len: usize, aggregate_marker: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (40 + RESP_CHANNEL.len() + payload_len));
    for index in 0..n {
        out.push(aggregate_marker);
        out.extend_from_slice(b"3\r\n");
        push_bulk(&mut out, b"message");
        push_bulk(&mut out, RESP_CHANNEL);
        push_bulk(&mut out, &payload_for(index, payload_len));
    }
    out
}

/// `n` RESP2 pub/sub `message` frames back to back:
/// `*3\r\n$7\r\nmessage\r\n$<len>\r\n<chan>\r\n$<payload_len>\r\n<payload>\r\n`.
pub fn resp2_message_stream(n: usize, payload_len: usize) -> Vec<u8> {
    resp_message_stream(n, payload_len, b'*')
}

/// The same `n` messages as RESP3 push frames (`>3\r\n…`), as Redis sends them after `HELLO 3`.
pub fn resp3_push_message_stream(n: usize, payload_len: usize) -> Vec<u8> {
    resp_message_stream(n, payload_len, b'>')
}

// ---------------------------------------------------------------------------------------
// AMQP 0-9-1
// ---------------------------------------------------------------------------------------

/// AMQP frame-end octet.
pub const AMQP_FRAME_END: u8 = 0xCE;
/// Channel every benchmark frame travels on.
pub const AMQP_CHANNEL: u16 = 1;
pub const AMQP_CONSUMER_TAG: &str = "amq.ctag-ferry-0001";
pub const AMQP_EXCHANGE: &str = "ferry.direct";
pub const AMQP_ROUTING_KEY: &str = "commands";
pub const AMQP_CONTENT_TYPE: &str = "application/json";
pub const AMQP_TIMESTAMP: u64 = 1_767_225_600;
/// Value of the `x-ferry-source` header.
pub const AMQP_SOURCE: &str = "redis:events";

fn amqp_frame(out: &mut Vec<u8>, frame_type: u8, channel: u16, payload: &[u8]) {
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(AMQP_FRAME_END);
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() <= 255);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Message id carried by delivery `index`.
pub fn amqp_message_id(index: usize) -> String {
    format!("msg-{index:08}")
}

/// basic.deliver (60,60) method frame.
pub fn amqp_basic_deliver(out: &mut Vec<u8>, delivery_tag: u64, redelivered: bool) {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&60u16.to_be_bytes());
    p.extend_from_slice(&60u16.to_be_bytes());
    short_str(&mut p, AMQP_CONSUMER_TAG);
    p.extend_from_slice(&delivery_tag.to_be_bytes());
    p.push(redelivered as u8);
    short_str(&mut p, AMQP_EXCHANGE);
    short_str(&mut p, AMQP_ROUTING_KEY);
    amqp_frame(out, 1, AMQP_CHANNEL, &p);
}

/// Content header frame, class 60, with content-type, a two-entry headers table
/// (`x-attempt` signed 32-bit `I`, `x-ferry-source` long string), delivery-mode 2,
/// message-id and timestamp.
pub fn amqp_content_header(out: &mut Vec<u8>, body_size: u64, message_id: &str) {
    let mut p = Vec::with_capacity(128);
    p.extend_from_slice(&60u16.to_be_bytes()); // class
    p.extend_from_slice(&0u16.to_be_bytes()); // weight
    p.extend_from_slice(&body_size.to_be_bytes());
    // property flags: content-type(15) headers(13) delivery-mode(12) message-id(7) timestamp(6)
    let flags: u16 = (1 << 15) | (1 << 13) | (1 << 12) | (1 << 7) | (1 << 6);
    p.extend_from_slice(&flags.to_be_bytes());
    short_str(&mut p, AMQP_CONTENT_TYPE);
    // Entries in name order, as a sorted-map encoder writes them.
    let mut table = Vec::new();
    short_str(&mut table, "x-attempt");
    table.push(b'I');
    table.extend_from_slice(&1i32.to_be_bytes());
    short_str(&mut table, "x-ferry-source");
    table.push(b'S');
    table.extend_from_slice(&(AMQP_SOURCE.len() as u32).to_be_bytes());
    table.extend_from_slice(AMQP_SOURCE.as_bytes());
    p.extend_from_slice(&(table.len() as u32).to_be_bytes());
    p.extend_from_slice(&table);
    p.push(2); // delivery-mode: persistent
    short_str(&mut p, message_id);
    p.extend_from_slice(&AMQP_TIMESTAMP.to_be_bytes());
    amqp_frame(out, 2, AMQP_CHANNEL, &p);
}

/// Body frame carrying `body`.
pub fn amqp_body(out: &mut Vec<u8>, body: &[u8]) {
    amqp_frame(out, 3, AMQP_CHANNEL, body);
}

/// `n` deliveries (basic.deliver + content header + one body frame of `body_len` bytes),
/// back to back, as RabbitMQ sends them to a consumer: `3 * n` frames.
/// Delivery `i` has delivery tag `i + 1`, message id `amqp_message_id(i)` and body
/// `payload_for(i, body_len)`.
pub fn amqp_delivery_stream(n: usize, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (body_len + 200));
    for index in 0..n {
        amqp_basic_deliver(&mut out, index as u64 + 1, false);
        amqp_content_header(&mut out, body_len as u64, &amqp_message_id(index));
        amqp_body(&mut out, &payload_for(index, body_len));
    }
    out
}

/// basic.publish (60,40) method frame (reserved-1 short 0, then exchange, routing key,
/// mandatory bit 0 and immediate bit 1 in one octet).
pub fn amqp_basic_publish(out: &mut Vec<u8>, mandatory: bool) {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&60u16.to_be_bytes());
    p.extend_from_slice(&40u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    short_str(&mut p, AMQP_EXCHANGE);
    short_str(&mut p, AMQP_ROUTING_KEY);
    p.push(mandatory as u8);
    amqp_frame(out, 1, AMQP_CHANNEL, &p);
}

/// `n` publishes (basic.publish mandatory + the same content header + body as
/// `amqp_delivery_stream`), the reference bytes a publisher must produce.
pub fn amqp_publish_stream(n: usize, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * (body_len + 200));
    for index in 0..n {
        amqp_basic_publish(&mut out, true);
        amqp_content_header(&mut out, body_len as u64, &amqp_message_id(index));
        amqp_body(&mut out, &payload_for(index, body_len));
    }
    out
}

/// basic.ack (60,80) method frame, the reference bytes an encoder must produce.
pub fn amqp_basic_ack(out: &mut Vec<u8>, delivery_tag: u64, multiple: bool) {
    let mut p = Vec::with_capacity(13);
    p.extend_from_slice(&60u16.to_be_bytes());
    p.extend_from_slice(&80u16.to_be_bytes());
    p.extend_from_slice(&delivery_tag.to_be_bytes());
    p.push(multiple as u8);
    amqp_frame(out, 1, AMQP_CHANNEL, &p);
}

/// `n` basic.ack frames for delivery tags `1..=n`.
pub fn amqp_ack_stream(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 21);
    for tag in 1..=n as u64 {
        amqp_basic_ack(&mut out, tag, false);
    }
    out
}

// ---------------------------------------------------------------------------------------
// FastCGI 1.0
// ---------------------------------------------------------------------------------------

pub const FCGI_BEGIN_REQUEST: u8 = 1;
pub const FCGI_END_REQUEST: u8 = 3;
pub const FCGI_PARAMS: u8 = 4;
pub const FCGI_STDIN: u8 = 5;
pub const FCGI_STDOUT: u8 = 6;
pub const FCGI_REQUEST_ID: u16 = 1;
pub const FCGI_RESPONDER: u16 = 1;

/// The 20 params ferry sends for one message (realistic CGI names and values).
pub fn typical_fastcgi_params() -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("SERVER_SOFTWARE", "ferry/0.1.0".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("SERVER_NAME", "localhost".into()),
        ("SERVER_ADDR", "127.0.0.1".into()),
        ("SERVER_PORT", "80".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REMOTE_PORT", "0".into()),
        ("REQUEST_METHOD", "POST".into()),
        ("REQUEST_URI", "/worker.php".into()),
        ("SCRIPT_NAME", "/worker.php".into()),
        ("SCRIPT_FILENAME", "/srv/app/worker.php".into()),
        ("DOCUMENT_ROOT", "/srv/app".into()),
        ("QUERY_STRING", "".into()),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded".into()),
        ("CONTENT_LENGTH", "200".into()),
        ("FERRY_SOURCE", "events".into()),
        ("FERRY_CHANNEL", "commands".into()),
        ("FERRY_MESSAGE_ID", "01JD4V6QXJ8M2N7P3R5S9T1W4Y".into()),
        ("FERRY_ATTEMPT", "1".into()),
    ]
}

/// The 200-byte form-encoded STDIN of the typical request.
pub fn typical_fastcgi_stdin() -> Vec<u8> {
    let mut body =
        b"job=resize&image=%2Fsrv%2Fuploads%2F2026%2F11%2Fcat.jpg&width=640&height=480&".to_vec();
    while body.len() < 200 {
        body.push(b'x');
    }
    body.truncate(200);
    body
}

fn fcgi_record(out: &mut Vec<u8>, record_type: u8, request_id: u16, content: &[u8]) {
    assert!(content.len() <= 0xFFFF);
    let padding = (8 - content.len() % 8) % 8;
    out.push(1); // version
    out.push(record_type);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.push(padding as u8);
    out.push(0);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0u8, padding));
}

fn fcgi_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// FastCGI name-value pair body (1- or 4-byte lengths).
pub fn fastcgi_name_values<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        fcgi_length(&mut out, name.len());
        fcgi_length(&mut out, value.len());
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
    out
}

/// A whole request: BEGIN_REQUEST (responder, flags 0), one PARAMS record, empty PARAMS,
/// one STDIN record, empty STDIN. The reference encoding (params in the given order).
pub fn fastcgi_request<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)], stdin: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut begin = FCGI_RESPONDER.to_be_bytes().to_vec();
    begin.extend_from_slice(&[0; 6]);
    fcgi_record(&mut out, FCGI_BEGIN_REQUEST, FCGI_REQUEST_ID, &begin);
    fcgi_record(
        &mut out,
        FCGI_PARAMS,
        FCGI_REQUEST_ID,
        &fastcgi_name_values(pairs),
    );
    fcgi_record(&mut out, FCGI_PARAMS, FCGI_REQUEST_ID, &[]);
    if !stdin.is_empty() {
        fcgi_record(&mut out, FCGI_STDIN, FCGI_REQUEST_ID, stdin);
    }
    fcgi_record(&mut out, FCGI_STDIN, FCGI_REQUEST_ID, &[]);
    out
}

/// The CGI headers php-fpm 8.2 prints before a body.
pub const PHP_FPM_HEADERS: &[u8] =
    b"X-Powered-By: PHP/8.2\r\nContent-type: text/html; charset=UTF-8\r\n\r\n";
/// The small body of the typical response.
pub const PHP_FPM_BODY: &[u8] = b"{\"status\":\"ok\",\"job\":\"resize\",\"took_ms\":12}\n";

/// A typical php-fpm answer: one STDOUT record (headers + body), an empty STDOUT closing
/// the stream, and END_REQUEST (app status 0, FCGI_REQUEST_COMPLETE).
pub fn fastcgi_php_response(body: &[u8]) -> Vec<u8> {
    let mut stdout = PHP_FPM_HEADERS.to_vec();
    stdout.extend_from_slice(body);
    let mut out = Vec::with_capacity(stdout.len() + 48);
    fcgi_record(&mut out, FCGI_STDOUT, FCGI_REQUEST_ID, &stdout);
    fcgi_record(&mut out, FCGI_STDOUT, FCGI_REQUEST_ID, &[]);
    fcgi_record(
        &mut out,
        FCGI_END_REQUEST,
        FCGI_REQUEST_ID,
        &[0, 0, 0, 0, 0, 0, 0, 0],
    );
    out
}

// ---------------------------------------------------------------------------------------
// Naive checkers (never benchmarked): used to assert an encoder under test is right.
// ---------------------------------------------------------------------------------------

/// One FastCGI record as `(type, request_id, content)`.
pub type FcgiRecordCheck = (u8, u16, Vec<u8>);

/// Split a buffer into FastCGI records; panics on anything malformed or truncated.
pub fn fastcgi_records_check(mut buf: &[u8]) -> Vec<FcgiRecordCheck> {
    let mut records = Vec::new();
    while !buf.is_empty() {
        assert!(buf.len() >= 8, "truncated record header");
        assert_eq!(buf[0], 1, "version");
        let record_type = buf[1];
        let request_id = u16::from_be_bytes([buf[2], buf[3]]);
        let len = u16::from_be_bytes([buf[4], buf[5]]) as usize;
        let padding = buf[6] as usize;
        assert!(buf.len() >= 8 + len + padding, "truncated record");
        records.push((record_type, request_id, buf[8..8 + len].to_vec()));
        buf = &buf[8 + len + padding..];
    }
    records
}

/// Decode a name-value pair body; panics on anything malformed.
pub fn fastcgi_name_values_check(mut buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fn length(buf: &mut &[u8]) -> usize {
        if buf[0] < 0x80 {
            let len = buf[0] as usize;
            *buf = &buf[1..];
            len
        } else {
            let len = u32::from_be_bytes([buf[0] & 0x7f, buf[1], buf[2], buf[3]]) as usize;
            *buf = &buf[4..];
            len
        }
    }
    let mut pairs = Vec::new();
    while !buf.is_empty() {
        let name_len = length(&mut buf);
        let value_len = length(&mut buf);
        pairs.push((
            buf[..name_len].to_vec(),
            buf[name_len..name_len + value_len].to_vec(),
        ));
        buf = &buf[name_len + value_len..];
    }
    pairs
}

/// Assert that `encoded` is a valid single request carrying exactly `pairs` (in any order,
/// possibly split over several PARAMS records) and `stdin`.
pub fn assert_fastcgi_request<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    encoded: &[u8],
    pairs: &[(N, V)],
    stdin: &[u8],
) {
    let records = fastcgi_records_check(encoded);
    assert_eq!(records[0].0, FCGI_BEGIN_REQUEST);
    assert_eq!(&records[0].2[..2], &FCGI_RESPONDER.to_be_bytes());
    assert!(records.iter().all(|r| r.1 == FCGI_REQUEST_ID));
    let params: Vec<u8> = records
        .iter()
        .filter(|r| r.0 == FCGI_PARAMS)
        .flat_map(|r| r.2.clone())
        .collect();
    let body: Vec<u8> = records
        .iter()
        .filter(|r| r.0 == FCGI_STDIN)
        .flat_map(|r| r.2.clone())
        .collect();
    let mut got = fastcgi_name_values_check(&params);
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .iter()
        .map(|(n, v)| (n.as_ref().to_vec(), v.as_ref().to_vec()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "params");
    assert_eq!(body, stdin, "stdin");
    let empty_params = records
        .iter()
        .filter(|r| r.0 == FCGI_PARAMS && r.2.is_empty())
        .count();
    let empty_stdin = records
        .iter()
        .filter(|r| r.0 == FCGI_STDIN && r.2.is_empty())
        .count();
    assert_eq!((empty_params, empty_stdin), (1, 1), "stream terminators");
    assert_eq!(
        records.last().map(|r| (r.0, r.2.len())),
        Some((FCGI_STDIN, 0))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_frame_layout() {
        let one = resp2_message_stream(1, 64);
        let mut want = b"*3\r\n$7\r\nmessage\r\n$12\r\nferry.events\r\n$64\r\n00000000".to_vec();
        want.extend(std::iter::repeat_n(b'x', 56));
        want.extend_from_slice(b"\r\n");
        assert_eq!(one, want);
        assert!(resp3_push_message_stream(1, 64).starts_with(b">3\r\n"));
    }

    #[test]
    fn amqp_frames_are_well_formed() {
        let stream = amqp_delivery_stream(2, 128);
        let mut rest = &stream[..];
        let mut types = Vec::new();
        while !rest.is_empty() {
            let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
            assert_eq!(rest[7 + size], AMQP_FRAME_END);
            types.push(rest[0]);
            rest = &rest[8 + size..];
        }
        assert_eq!(types, [1, 2, 3, 1, 2, 3]);
        assert_eq!(amqp_ack_stream(1).len(), 21);
    }

    #[test]
    fn fastcgi_reference_request_checks() {
        let params = typical_fastcgi_params();
        let stdin = typical_fastcgi_stdin();
        assert_eq!(params.len(), 20);
        assert_eq!(stdin.len(), 200);
        assert_fastcgi_request(&fastcgi_request(&params, &stdin), &params, &stdin);
        let response = fastcgi_records_check(&fastcgi_php_response(PHP_FPM_BODY));
        assert_eq!(response.iter().map(|r| r.0).collect::<Vec<_>>(), [6, 6, 3]);
    }
}
