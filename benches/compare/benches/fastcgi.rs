//! FastCGI, client role: encode one typical request (BEGIN_REQUEST responder, 20 params,
//! empty PARAMS, 200-byte STDIN, empty STDIN) and decode one typical php-fpm response
//! (STDOUT with CGI headers + small body, empty STDOUT, END_REQUEST).
//!
//! Competitors:
//! - `fastcgi-client` is async-only and exposes no codec: the only entry point is
//!   `Client::execute_once`, which writes the whole request and then reads the whole
//!   response from one stream. It is driven here on an in-memory stream (reads from a
//!   prebuilt response, writes into a reused `Vec`) with a no-op waker, so no runtime, socket
//!   or syscall is involved, but each measurement includes *both* directions:
//!   * "encode" gives it the typical request and a minimal 16-byte response (END_REQUEST only);
//!   * "decode" gives it an empty request (no params, no stdin) and the typical response;
//!   * the baseline (empty request, minimal response) is measured too, so the encode and
//!     decode shares can be estimated by subtraction.
//!
//!   It also builds its `Params` map and a `Client` per request, and copies STDOUT into a
//!   `Vec`: that is its API, so those costs are in its numbers and not in ferry's.
//! - ferry's codec is measured alone: "encode" is `encode_request` into a reused buffer;
//!   "decode" is the record decoder plus the CGI head parser on the typical response,
//!   which is the same work as `fastcgi-client` + `http::Response::try_from` minus the
//!   request it must also write.
//!
//! One `bench_function` per implementation in each group. Every one runs once untimed and
//! is asserted.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use ferry_compare::*;
use std::hint::black_box;

fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: bytes as u64,
    });
    group
}

/// The minimal answer: END_REQUEST, app status 0, request complete.
fn end_request_only() -> Vec<u8> {
    let mut out = vec![1, FCGI_END_REQUEST, 0, 1, 0, 8, 0, 0];
    out.extend_from_slice(&[0; 8]);
    out
}

mod client {
    use fastcgi_client::{Client, Params, Request};
    use futures_io::{AsyncRead, AsyncWrite};
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    /// An in-memory duplex: reads come from `input`, writes append to `output`.
    /// Never returns `Pending`.
    pub struct MemoryStream<'a> {
        pub input: &'a [u8],
        pub output: &'a mut Vec<u8>,
    }

    impl AsyncRead for MemoryStream<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for MemoryStream<'_> {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().output.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Polls once: the in-memory stream is always ready, so the future must complete.
    fn run_ready<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("in-memory stream never pends"),
        }
    }

    /// Build `Params` (a `HashMap<Cow<str>, Cow<str>>`; the API takes it by value, so it is
    /// built for every request, borrowing the strings), then `Client::new(stream)
    /// .execute_once(Request::new(params, stdin))`. Returns the parsed response;
    /// the encoded request is left in `output`.
    pub fn execute_once(
        params: &[(&'static str, String)],
        stdin: &[u8],
        response: &[u8],
        output: &mut Vec<u8>,
    ) -> fastcgi_client::Response {
        output.clear();
        let mut map = Params::default();
        map.clear(); // drop the three defaults it inserts; we send exactly our 20
        for (name, value) in params {
            map.insert((*name).into(), value.as_str().into());
        }
        let stream = MemoryStream {
            input: response,
            output,
        };
        run_ready(Client::new(stream).execute_once(Request::new(map, stdin)))
            .expect("FastCGI exchange")
    }
}

mod ferry_impl {
    use ferry::proto::fastcgi::{
        encode_request, CgiHead, ProtocolStatus, ResponseDecoder, ResponseEvent,
    };

    /// `ferry::proto::fastcgi::encode_request` into a reused `Vec<u8>`: BEGIN_REQUEST,
    /// PARAMS written straight from the caller's `(&[u8], &[u8])` pairs (no map, no
    /// copy), empty PARAMS, STDIN, empty STDIN.
    pub fn encode(params: &[(&'static str, String)], stdin: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let pairs = params
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
        encode_request(out, super::FCGI_REQUEST_ID, false, pairs, stdin).unwrap();
    }

    /// `ResponseDecoder::decode` record by record + `CgiHead::push` on STDOUT (end-of-head
    /// scan, head copied into its buffer, httparse over the lines, `Status:` /
    /// `Content-Type:` / `X-Ferry-*` picked out). The decoder and head are per-connection
    /// state, reset (not reallocated) per response, as ferry's pool does. Returns the
    /// status (CGI: 200 when absent) and the body, borrowed from the input.
    pub fn decode<'b>(
        decoder: &mut ResponseDecoder,
        head: &mut CgiHead,
        wire: &'b [u8],
    ) -> (u16, &'b [u8]) {
        decoder.reset(super::FCGI_REQUEST_ID);
        head.reset();
        let (mut pos, mut body): (usize, &[u8]) = (0, &[]);
        while !decoder.is_ended() {
            let (event, used) = decoder
                .decode(&wire[pos..])
                .unwrap()
                .complete()
                .expect("complete record");
            match event {
                ResponseEvent::Stdout(chunk) => {
                    if let Some(head_len) = head.push(chunk).unwrap() {
                        if head_len < chunk.len() {
                            assert!(body.is_empty(), "body in one record");
                            body = &chunk[head_len..];
                        }
                    }
                }
                ResponseEvent::End {
                    app_status: 0,
                    protocol_status: ProtocolStatus::RequestComplete,
                } => {}
                other => panic!("unexpected {other:?}"),
            }
            pos += used;
        }
        assert_eq!(pos, wire.len());
        (head.status_or_200(), body)
    }
}

fn encode_request(c: &mut Criterion) {
    let params = typical_fastcgi_params();
    let stdin = typical_fastcgi_stdin();
    let reference = fastcgi_request(&params, &stdin);
    let minimal_response = end_request_only();
    let mut group = group(
        c,
        "fastcgi_encode_request_20_params_200b_stdin",
        reference.len(),
    );

    let mut output = Vec::with_capacity(4096);
    let response = client::execute_once(&params, &stdin, &minimal_response, &mut output);
    assert_fastcgi_request(&output, &params, &stdin);
    assert!(response.stdout.is_none() && response.stderr.is_none());
    group.bench_function("fastcgi-client/execute_once(+16-byte response)", |b| {
        b.iter(|| {
            client::execute_once(
                black_box(&params),
                black_box(&stdin),
                &minimal_response,
                &mut output,
            )
        })
    });

    let mut out = Vec::with_capacity(4096);
    ferry_impl::encode(&params, &stdin, &mut out);
    assert_fastcgi_request(&out, &params, &stdin);
    assert_eq!(out, reference, "ferry writes the reference encoding");
    group.bench_function("ferry/encode_request", |b| {
        b.iter(|| ferry_impl::encode(black_box(&params), black_box(&stdin), &mut out))
    });

    group.finish();
}

fn decode_response(c: &mut Criterion) {
    let response = fastcgi_php_response(PHP_FPM_BODY);
    let minimal_response = end_request_only();
    let mut stdout_expected = PHP_FPM_HEADERS.to_vec();
    stdout_expected.extend_from_slice(PHP_FPM_BODY);
    let mut group = group(c, "fastcgi_decode_php_fpm_response", response.len());
    let no_params: Vec<(&'static str, String)> = Vec::new();
    let mut output = Vec::with_capacity(4096);

    let parsed = client::execute_once(&no_params, b"", &response, &mut output);
    assert_eq!(parsed.stdout.as_deref(), Some(&stdout_expected[..]));
    assert!(parsed.stderr.is_none());
    group.bench_function("fastcgi-client/execute_once(+empty request)", |b| {
        b.iter(|| client::execute_once(&no_params, b"", black_box(&response), &mut output))
    });

    // Same, then `http::Response::try_from`, the crate's own split of the CGI headers
    // from the body (ferry's decoder does this split with httparse).
    let split = |response: &[u8], output: &mut Vec<u8>| {
        let parsed = client::execute_once(&no_params, b"", response, output);
        http::Response::<Vec<u8>>::try_from(parsed).expect("CGI headers")
    };
    let http_response = split(&response, &mut output);
    assert_eq!(http_response.status(), 200);
    assert_eq!(
        http_response.headers()["content-type"],
        "text/html; charset=UTF-8"
    );
    assert_eq!(http_response.headers()["x-powered-by"], "PHP/8.2");
    assert_eq!(http_response.body(), PHP_FPM_BODY);
    group.bench_function(
        "fastcgi-client/execute_once+http::Response(+empty request)",
        |b| b.iter(|| split(black_box(&response), &mut output)),
    );

    // Baseline: empty request, END_REQUEST-only response. Subtract from the two above to
    // estimate the share of response parsing.
    let parsed = client::execute_once(&no_params, b"", &minimal_response, &mut output);
    assert!(parsed.stdout.is_none());
    group.bench_function(
        "baseline/fastcgi-client/execute_once(empty request,+16-byte response)",
        |b| {
            b.iter(|| {
                client::execute_once(&no_params, b"", black_box(&minimal_response), &mut output)
            })
        },
    );

    let mut decoder = ferry::proto::fastcgi::ResponseDecoder::new(FCGI_REQUEST_ID);
    let mut head = ferry::proto::fastcgi::CgiHead::default();
    let (status, body) = ferry_impl::decode(&mut decoder, &mut head, &response);
    assert_eq!((status, body), (200, PHP_FPM_BODY));
    assert_eq!(head.content_type(), Some(&b"text/html; charset=UTF-8"[..]));
    let mut powered_by = None;
    head.for_each_header(|name, value| {
        if name.eq_ignore_ascii_case("x-powered-by") {
            powered_by = Some(value.to_vec());
        }
    });
    assert_eq!(powered_by.as_deref(), Some(&b"PHP/8.2"[..]));
    group.bench_function("ferry/ResponseDecoder+CgiHead", |b| {
        b.iter(|| ferry_impl::decode(&mut decoder, &mut head, black_box(&response)).0)
    });

    group.finish();
}

criterion_group!(benches, encode_request, decode_response);
criterion_main!(benches);
