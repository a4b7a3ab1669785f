//! FastCGI client side: arbitrary bytes as a php-fpm response (records, CGI headers).
//! The invariants live in the library (`ferry::proto::fastcgi::invariants::check_response`) so that the stable test suite replays
//! the committed corpus (`fuzz/corpus/fastcgi_response`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::fastcgi::invariants::check_response(data);
});
