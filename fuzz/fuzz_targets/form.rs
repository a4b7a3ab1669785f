//! Form encoding: arbitrary bytes as a JSON message body, encoded as http_build_query.
//! The invariants live in the library (`ferry::proto::form::invariants::check`) so that the stable test suite replays
//! the committed corpus (`fuzz/corpus/form`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::form::invariants::check(data);
});
