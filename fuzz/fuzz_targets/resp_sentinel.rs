//! The Redis Sentinel conversations (asking for the master, following `+switch-master`,
//! the `ROLE` check): arbitrary bytes as a sentinel's or a master's replies. The
//! invariants live in the library (`ferry::proto::resp::sentinel::invariants::check`) so
//! the stable test suite replays the committed corpus (`fuzz/corpus/resp_sentinel`)
//! through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::resp::sentinel::invariants::check(data);
});
