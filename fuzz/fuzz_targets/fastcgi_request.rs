//! FastCGI responder side: arbitrary bytes as a web server's request.
//! The invariants live in the library (`ferry::proto::fastcgi::invariants::check_request`) so that the stable test suite replays
//! the committed corpus (`fuzz/corpus/fastcgi_request`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::fastcgi::invariants::check_request(data);
});
