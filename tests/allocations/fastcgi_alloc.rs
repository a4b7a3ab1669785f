//! Zero allocations on the hot path, counted by a global allocator: decoding a php-fpm
//! answer (records and CGI head) with reused decoders, and encoding a request into a
//! pre-reserved buffer.

use ferry::proto::fastcgi::{
    encode_end_request, encode_request, encode_stderr, encode_stdout, CgiHead, ProtocolStatus,
    ResponseDecoder, ResponseEvent,
};
use ferry::proto::Status;

use crate::alloc_count::allocations_during;

fn php_like_response() -> Vec<u8> {
    let mut out = Vec::new();
    encode_stderr(&mut out, 1, b"PHP message: notice");
    encode_stdout(&mut out, 1, b"Content-Type: application/json\r\nX-Ferry-");
    encode_stdout(
        &mut out,
        1,
        b"Action: retry\r\nX-Ferry-Retry-After: 30\r\n\r\n{\"ok\":true}",
    );
    encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
    out
}

#[test]
fn decoding_a_response_allocates_nothing() {
    let wire = php_like_response();
    let mut decoder = ResponseDecoder::new(1);
    let mut head = CgiHead::default();
    let run = |decoder: &mut ResponseDecoder, head: &mut CgiHead| {
        decoder.reset(1);
        head.reset();
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
        assert_eq!(pos, wire.len());
        assert_eq!(body, 11);
        assert_eq!(head.retry_after_s(), Some(30));
    };
    run(&mut decoder, &mut head);
    let counted = allocations_during(|| {
        for _ in 0..100 {
            run(&mut decoder, &mut head);
        }
    });
    assert_eq!(counted, 0);
}

#[test]
fn encoding_into_a_reserved_buffer_allocates_nothing() {
    let value = vec![b'v'; 300];
    let params: Vec<(&[u8], &[u8])> = vec![
        (b"SCRIPT_FILENAME", b"/srv/app/worker.php"),
        (b"REQUEST_METHOD", b"POST"),
        (b"FERRY_HEADER_TRACE", &value),
    ];
    let body = vec![b'b'; 100_000];
    let mut out = Vec::with_capacity(200_000);
    let counted = allocations_during(|| {
        for _ in 0..10 {
            out.clear();
            encode_request(&mut out, 1, false, params.iter().copied(), &body).unwrap();
        }
    });
    assert_eq!(counted, 0);
    assert!(out.len() > 100_000);
}
