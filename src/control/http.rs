//! HTTP/1.1 for the control endpoint: just enough, strictly bounded.
//!
//! Requests are parsed with httparse from the connection's read buffer. Limits: the head
//! (request line and headers) at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] lines, a body
//! at most [`MAX_BODY_BYTES`] (the API takes none; a small one is read and ignored so the
//! connection stays in step). A request over a limit gets its error status and the
//! connection closes: nothing is buffered beyond the limits. Keep-alive follows HTTP/1.1
//! (`Connection: close` ends it; HTTP/1.0 keeps alive only when asked).

use crate::proto::Status;

/// Most bytes of a request head.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines.
pub const MAX_HEADERS: usize = 32;
/// Most body bytes accepted (and ignored).
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// The parts of a request the endpoint uses; borrows the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'b> {
    /// `GET`, `POST`, …
    pub method: &'b str,
    /// The path, without a query string.
    pub path: &'b str,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<&'b [u8]>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

/// Why a request was refused before routing: the status to answer, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Unparseable request (400).
    Malformed,
    /// Head over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`] (431).
    HeadTooLarge,
    /// Body over [`MAX_BODY_BYTES`], or chunked (413).
    BodyTooLarge,
}

impl HttpError {
    /// The status code and reason this error is answered with.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HttpError::Malformed => (400, "Bad Request"),
            HttpError::HeadTooLarge => (431, "Request Header Fields Too Large"),
            HttpError::BodyTooLarge => (413, "Content Too Large"),
        }
    }
}

/// Parses one request from the front of `buf`; `Complete` carries the bytes it used
/// (head and body).
pub fn parse_request(buf: &[u8]) -> Result<Status<Request<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Status::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(HttpError::Malformed);
    };
    let mut body_len = 0usize;
    let mut authorization = None;
    let mut connection_close = minor == 0;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(HttpError::Malformed)?;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::BodyTooLarge);
        } else if header.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(header.value);
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value;
            if value.eq_ignore_ascii_case(b"close") {
                connection_close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                connection_close = false;
            }
        }
    }
    if body_len > MAX_BODY_BYTES {
        return Err(HttpError::BodyTooLarge);
    }
    let total = head_len + body_len;
    if buf.len() < total {
        return Ok(Status::Partial);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Status::Complete(
        Request {
            method,
            path,
            authorization,
            keep_alive: !connection_close,
        },
        total,
    ))
}

/// Appends a complete response with a body of `content_type`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    );
    out.extend_from_slice(body);
}

/// Appends a response whose body is `value` as JSON.
pub fn write_json(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    value: &serde_json::Value,
    keep_alive: bool,
) {
    let body = value.to_string();
    write_response(
        out,
        status,
        reason,
        "application/json",
        body.as_bytes(),
        keep_alive,
    );
}

/// Appends a JSON error response `{"error": message}`.
pub fn write_error(out: &mut Vec<u8>, status: u16, reason: &str, message: &str, keep_alive: bool) {
    let value = serde_json::json!({ "error": message });
    write_json(out, status, reason, &value, keep_alive);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_keep_alive() {
        let raw = b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n";
        let Status::Complete(first, used) = parse_request(raw).unwrap() else {
            panic!("complete")
        };
        assert_eq!(
            (first.method, first.path, first.keep_alive),
            ("GET", "/metrics", true)
        );
        let Status::Complete(second, _) = parse_request(&raw[used..]).unwrap() else {
            panic!("complete")
        };
        assert!(!second.keep_alive, "HTTP/1.0 closes unless asked");
        let post = b"POST /sources/a/pause HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        let Status::Complete(request, used) = parse_request(post).unwrap() else {
            panic!("complete")
        };
        assert_eq!(used, post.len());
        assert_eq!(request.authorization, Some(&b"Bearer t"[..]));
        assert!(!request.keep_alive);
    }

    #[test]
    fn every_prefix_is_partial() {
        let raw = b"POST /sources/a/resume HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        for end in 0..raw.len() {
            assert_eq!(
                parse_request(&raw[..end]),
                Ok(Status::Partial),
                "prefix {end}"
            );
        }
    }

    #[test]
    fn limits_and_garbage() {
        let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
        while huge.len() <= MAX_HEAD_BYTES {
            huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_request(&huge), Err(HttpError::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(HttpError::HeadTooLarge));
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            parse_request(b"\x16\x03\x01 TLS hello\r\n\r\n"),
            Err(HttpError::Malformed)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::Malformed)
        );
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "OK", "text/plain", b"ok\n", true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
        );
        out.clear();
        write_error(&mut out, 404, "Not Found", "no source \"x\"", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with(r#"{"error":"no source \"x\""}"#));
    }
}
