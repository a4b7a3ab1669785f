//! RESP server side: arbitrary bytes through the command reader and a client session, fed
//! in two pieces. The invariants live in the library
//! (`ferry::proto::resp::server::check_invariants`) so that the stable test suite replays
//! the committed corpus (`fuzz/corpus/resp_server`) through exactly the same checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::resp::server::check_invariants(data);
});
