//! AMQP: arbitrary bytes through the frame decoder, method decoder and content assembly.
//! The invariants live in the library (`ferry::proto::amqp::invariants::check`) so that the stable test suite replays
//! the committed corpus (`fuzz/corpus/amqp`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::amqp::invariants::check(data);
});
