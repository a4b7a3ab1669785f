//! Replays the FastCGI fuzz corpora through the invariant checks (the same as
//! `tests/fuzz_corpus.rs` does for every protocol), so this branch checks them on its own.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "invariant broken by {}", path.display());
        replayed += 1;
    }
    assert!(replayed >= 10, "{target}: only {replayed} inputs");
}

#[test]
fn fastcgi_response_corpus() {
    replay(
        "fastcgi_response",
        ferry::proto::fastcgi::invariants::check_response,
    );
}

#[test]
fn fastcgi_request_corpus() {
    replay(
        "fastcgi_request",
        ferry::proto::fastcgi::invariants::check_request,
    );
}
