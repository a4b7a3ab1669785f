//! Replays the amqp fuzz corpus through the invariant checks (the shared
//! `tests/fuzz_corpus.rs` does the same for every target once all codecs are merged).

#[test]
fn amqp_corpus_holds_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/amqp");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| ferry::proto::amqp::invariants::check(&data));
        assert!(outcome.is_ok(), "invariant broken by {}", path.display());
        replayed += 1;
    }
    assert!(replayed >= 15, "only {replayed} corpus inputs");
}
