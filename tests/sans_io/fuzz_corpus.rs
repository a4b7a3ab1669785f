//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same invariant
//! checks the cargo-fuzz targets run, so the stable test suite guards every input the
//! fuzzer ever found interesting without needing nightly.

use std::path::Path;

type Check = fn(&[u8]);

fn replay(target: &str, check: Check) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} unreadable: {e}", dir.display()));
    let mut replayed = 0usize;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "invariant broken by {}", path.display());
        replayed += 1;
    }
    assert!(
        replayed >= 10,
        "corpus {target} holds only {replayed} inputs"
    );
}

#[test]
fn resp_corpus() {
    replay("resp", ferry::proto::resp::invariants::check);
}

#[test]
fn amqp_corpus() {
    replay("amqp", ferry::proto::amqp::invariants::check);
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

#[test]
fn form_corpus() {
    replay("form", ferry::proto::form::invariants::check);
}

#[test]
fn resp_server_corpus() {
    replay("resp_server", ferry::proto::resp::server::check_invariants);
}

#[test]
fn resp_stream_corpus() {
    replay("resp_stream", ferry::proto::resp::stream::invariants::check);
}

#[test]
fn x509_corpus() {
    replay("x509", ferry::proto::x509::invariants::check);
}

#[test]
fn resp_sentinel_corpus() {
    replay(
        "resp_sentinel",
        ferry::proto::resp::sentinel::invariants::check,
    );
}
