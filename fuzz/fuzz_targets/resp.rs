//! RESP decoder: arbitrary bytes through the incremental decoder and the pub/sub classifier.
//! The invariants live in the library (`ferry::proto::resp::invariants::check`) so that the stable test suite replays
//! the committed corpus (`fuzz/corpus/resp`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::resp::invariants::check(data);
});
