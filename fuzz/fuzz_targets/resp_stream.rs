//! Stream reply decoders and the stream consumer session: arbitrary bytes as Redis
//! replies. The invariants live in the library
//! (`ferry::proto::resp::stream::invariants::check`) so the stable test suite replays the
//! committed corpus (`fuzz/corpus/resp_stream`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::resp::stream::invariants::check(data);
});
