//! FastCGI codec benchmarks: encoding a typical ferry request (20 params, 200-byte body)
//! and decoding a typical php-fpm answer (records, CGI head, small body, END_REQUEST).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::proto::fastcgi::{
    encode_end_request, encode_request, encode_stdout, CgiHead, ProtocolStatus, ResponseDecoder,
    ResponseEvent,
};
use ferry::proto::Status;

fn typical_params() -> Vec<(&'static [u8], &'static [u8])> {
    vec![
        (b"GATEWAY_INTERFACE", b"FastCGI/1.0"),
        (b"SERVER_SOFTWARE", b"ferry/0.1.0"),
        (b"REQUEST_METHOD", b"POST"),
        (b"SCRIPT_FILENAME", b"/srv/app/current/public/worker.php"),
        (b"SCRIPT_NAME", b"/worker.php"),
        (b"REQUEST_URI", b"/worker.php"),
        (b"QUERY_STRING", b""),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"SERVER_NAME", b"localhost"),
        (b"SERVER_PORT", b"80"),
        (b"CONTENT_TYPE", b"application/x-www-form-urlencoded"),
        (b"CONTENT_LENGTH", b"200"),
        (b"FERRY_SOURCE", b"tasks"),
        (b"FERRY_KIND", b"amqp"),
        (b"FERRY_ATTEMPT", b"1"),
        (b"FERRY_QUEUE", b"commands"),
        (b"FERRY_ROUTING_KEY", b"commands"),
        (b"FERRY_MESSAGE_ID", b"0b6c2f0e-4a0c-4f7e-9a51-2f5d8e3c1a77"),
        (b"APP_ENV", b"prod"),
    ]
}

fn typical_response() -> Vec<u8> {
    let mut out = Vec::new();
    encode_stdout(
        &mut out,
        1,
        b"X-Powered-By: PHP/8.2.36\r\nContent-Type: application/json\r\n\
          X-Ferry-Action: ack\r\n\r\n{\"ok\":true,\"processed\":42,\"message\":\"done\"}",
    );
    encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
    out
}

fn bench_encode(c: &mut Criterion) {
    let params = typical_params();
    let body = vec![b'a'; 200];
    let mut out = Vec::with_capacity(4096);
    encode_request(&mut out, 1, false, params.iter().copied(), &body).unwrap();
    let mut group = c.benchmark_group("fastcgi");
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("encode_request", |b| {
        b.iter(|| {
            out.clear();
            encode_request(
                &mut out,
                1,
                false,
                black_box(&params).iter().copied(),
                black_box(&body),
            )
            .unwrap();
            black_box(out.len())
        })
    });
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let wire = typical_response();
    let mut decoder = ResponseDecoder::new(1);
    let mut head = CgiHead::default();
    let mut group = c.benchmark_group("fastcgi");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode_response", |b| {
        b.iter(|| {
            decoder.reset(1);
            head.reset();
            let wire = black_box(&wire[..]);
            let mut pos = 0;
            let mut body = 0;
            while let Ok(Status::Complete(event, used)) = decoder.decode(&wire[pos..]) {
                pos += used;
                if let ResponseEvent::Stdout(bytes) = event {
                    if let Ok(Some(head_len)) = head.push(bytes) {
                        body += bytes.len() - head_len;
                    }
                }
            }
            black_box((body, head.status(), head.ferry_action()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
