//! The certificate summary `ferry check` prints: arbitrary bytes as a server's DER
//! certificate. The invariants live in the library (`ferry::proto::x509::invariants`) so
//! the stable test suite replays the committed corpus (`fuzz/corpus/x509`) through them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry::proto::x509::invariants::check(data);
});
