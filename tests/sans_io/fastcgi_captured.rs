//! Real php-fpm 8.2 answers, captured by `scripts/capture/fastcgi.sh` (a private php-fpm
//! master, raw requests from `scripts/capture/fastcgi_client.py`), decoded with the client
//! role; the captured requests are decoded with the responder role.
//!
//! What the captures show: STDERR (from `error_log()`, "PHP message: …") comes before
//! STDOUT; `php://stderr` is *not* forwarded over FastCGI (it lands in the master's log);
//! END_REQUEST follows STDOUT with no empty STDOUT record; php-fpm does not always zero
//! END_REQUEST's reserved bytes nor pad to 8 bytes; GET_VALUES answers only
//! `FCGI_MPXS_CONNS=0`.

use ferry::proto::fastcgi::{
    decode_get_values_result, CgiHead, FerryAction, ProtocolStatus, RequestDecoder, RequestEvent,
    ResponseDecoder, ResponseEvent,
};
use ferry::proto::Status;

use crate::data;

#[derive(Debug, Default)]
struct Answer {
    head: CgiHead,
    body: Vec<u8>,
    stderr: Vec<u8>,
    order: Vec<&'static str>,
    end: Option<(u32, ProtocolStatus)>,
}

fn decode_answer(bytes: &[u8]) -> Answer {
    let mut decoder = ResponseDecoder::new(1);
    let mut answer = Answer::default();
    let mut pos = 0;
    while let Status::Complete(event, used) = decoder.decode(&bytes[pos..]).unwrap() {
        pos += used;
        match event {
            ResponseEvent::Stdout(chunk) => {
                answer.order.push("stdout");
                if let Some(head_len) = answer.head.push(chunk).unwrap() {
                    answer.body.extend_from_slice(&chunk[head_len..]);
                }
            }
            ResponseEvent::Stderr(chunk) => {
                answer.order.push("stderr");
                answer.stderr.extend_from_slice(chunk);
            }
            ResponseEvent::End {
                app_status,
                protocol_status,
            } => {
                answer.order.push("end");
                answer.end = Some((app_status, protocol_status));
            }
            ResponseEvent::DuplicateEnd => answer.order.push("duplicate end"),
        }
    }
    assert_eq!(pos, bytes.len(), "every byte decoded");
    decoder.check_eof(&bytes[pos..]).unwrap();
    answer
}

#[test]
fn normal_response_echoes_post_and_asks_for_retry() {
    let answer = decode_answer(&data::read("fastcgi/normal.response.bin"));
    assert_eq!(answer.order, ["stdout", "end"]);
    assert_eq!(answer.head.status(), None);
    assert_eq!(answer.head.status_or_200(), 200);
    assert_eq!(answer.head.ferry_action(), Some(FerryAction::Retry));
    assert_eq!(answer.head.retry_after_s(), Some(30));
    assert_eq!(answer.head.content_type(), Some(&b"application/json"[..]));
    assert_eq!(
        answer.body,
        br#"{"post":{"name":"ferry","n":"42","tags":["a b"]},"attempt":"1"}"#
    );
    assert_eq!(answer.end, Some((0, ProtocolStatus::RequestComplete)));
}

#[test]
fn stderr_response_comes_before_stdout() {
    let answer = decode_answer(&data::read("fastcgi/stderr.response.bin"));
    assert_eq!(answer.order, ["stderr", "stdout", "end"]);
    assert_eq!(
        answer.stderr,
        b"PHP message: ferry capture: something went wrong"
    );
    assert_eq!(answer.head.ferry_action(), Some(FerryAction::DeadLetter));
    assert_eq!(answer.body, br#"{"ok":false}"#);
    assert_eq!(answer.end, Some((0, ProtocolStatus::RequestComplete)));
}

#[test]
fn status_503_from_the_script() {
    let answer = decode_answer(&data::read("fastcgi/status_503.response.bin"));
    assert_eq!(answer.head.status(), Some(503));
    assert_eq!(answer.head.ferry_action(), None);
    assert_eq!(answer.body, br#"{"busy":true}"#);
    assert_eq!(answer.end, Some((0, ProtocolStatus::RequestComplete)));
}

#[test]
fn primary_script_unknown() {
    let answer = decode_answer(&data::read("fastcgi/missing_script.response.bin"));
    assert_eq!(answer.order, ["stderr", "stdout", "end"]);
    assert_eq!(answer.stderr, b"Primary script unknown");
    assert_eq!(answer.head.status(), Some(404));
    assert_eq!(
        answer.head.content_type(),
        Some(&b"text/html; charset=UTF-8"[..])
    );
    assert_eq!(answer.body, b"File not found.\n");
    assert_eq!(answer.end, Some((0, ProtocolStatus::RequestComplete)));
}

#[test]
fn get_values_answers_only_mpxs_conns() {
    let bytes = data::read("fastcgi/get_values.response.bin");
    let Status::Complete(pairs, used) = decode_get_values_result(&bytes).unwrap() else {
        panic!("partial")
    };
    assert_eq!(used, bytes.len());
    let pairs: Vec<_> = pairs.map(Result::unwrap).collect();
    assert_eq!(pairs, vec![(&b"FCGI_MPXS_CONNS"[..], &b"0"[..])]);

    let request = data::read("fastcgi/get_values.request.bin");
    let mut decoder = RequestDecoder::default();
    let Status::Complete(RequestEvent::GetValues(names), _) = decoder.decode(&request).unwrap()
    else {
        panic!("not GET_VALUES")
    };
    assert_eq!(names.iter().count(), 3);
}

#[test]
fn captured_requests_decode() {
    for name in ["normal", "stderr", "status_503", "missing_script"] {
        let bytes = data::read(&format!("fastcgi/{name}.request.bin"));
        let mut decoder = RequestDecoder::default();
        let mut pos = 0;
        let mut params = Vec::new();
        let mut stdin = Vec::new();
        let mut ended = false;
        while pos < bytes.len() {
            let Status::Complete(event, used) = decoder.decode(&bytes[pos..]).unwrap() else {
                panic!("{name}: partial")
            };
            match event {
                RequestEvent::Params(pairs) => {
                    params = pairs
                        .iter()
                        .map(|(n, v)| (n.to_vec(), v.to_vec()))
                        .collect()
                }
                RequestEvent::Stdin(chunk) => stdin.extend_from_slice(chunk),
                RequestEvent::StdinEnd => ended = true,
                _ => {}
            }
            pos += used;
        }
        assert!(ended, "{name}");
        let get = |key: &[u8]| {
            params
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(b"REQUEST_METHOD"), Some(b"POST".to_vec()));
        assert_eq!(get(b"FERRY_HEADER_X_TRACE").map(|v| v.len()), Some(200));
        let length: usize = String::from_utf8(get(b"CONTENT_LENGTH").unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(stdin.len(), length, "{name}");
    }
}
