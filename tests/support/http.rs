//! A tiny HTTP client for tests of the control endpoint: one request per connection
//! (`Connection: close`), raw bytes out, the whole answer in.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `raw` and reads until the server closes (or 5 s pass).
pub fn exchange(port: u16, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(raw);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `METHOD path` with `Connection: close`: the status code and the body.
pub fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = exchange(port, raw.as_bytes());
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `GET path`: the status code and the body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path)
}

/// `GET path`, which must answer 200, with its JSON body parsed (`/status`, `/jobs`).
pub fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, body) = get(port, path);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `POST path` without a token: the status code and the body.
pub fn post(port: u16, path: &str) -> (u16, String) {
    request(port, "POST", path)
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
