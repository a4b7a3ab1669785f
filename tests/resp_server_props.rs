//! Property tests for the RESP server side (`proto::resp::server`), on stable Rust beside
//! the `resp_server` fuzz target: random byte strings and random sequences of
//! RESP-looking pieces (commands, headers, quotes, escapes) go through the command reader
//! and a client session in two reads, and the fuzz invariants hold — no panic, every
//! command consumes what it says, every reply is valid RESP. Also: a glob pattern matches
//! a string built from it.

use ferry::proto::resp::server::{check_invariants, glob_match};
use proptest::prelude::*;

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\x4".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"-1".to_vec()),
        (0u32..20).prop_map(|n| n.to_string().into_bytes()),
        prop::sample::select(vec![
            "PING",
            "ECHO",
            "SELECT",
            "AUTH",
            "HELLO",
            "QUIT",
            "RESET",
            "PUBLISH",
            "SUBSCRIBE",
            "PSUBSCRIBE",
            "UNSUBSCRIBE",
            "PUNSUBSCRIBE",
            "CLIENT",
            "SETNAME",
            "GETNAME",
            "ID",
            "SETINFO",
            "lib-name",
            "default",
            "secret",
            "3",
            "2",
            "a*",
            "[a-",
            "FOO",
        ])
        .prop_map(|w| w.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_keep_the_invariants(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_invariants(&data);
    }

    #[test]
    fn resp_looking_input_keeps_the_invariants(pieces in prop::collection::vec(piece(), 0..60)) {
        check_invariants(&pieces.concat());
    }

    #[test]
    fn a_pattern_matches_what_it_describes(
        parts in prop::collection::vec(("[a-c]{0,3}", 0u8..3), 1..6)
    ) {
        // Literal runs joined by `*` or `?`; the string replaces each with one `x`.
        let mut pattern = Vec::new();
        let mut string = Vec::new();
        for (literal, wildcard) in &parts {
            pattern.extend_from_slice(literal.as_bytes());
            string.extend_from_slice(literal.as_bytes());
            match wildcard {
                0 => {}
                1 => { pattern.push(b'*'); string.extend_from_slice(b"xx"); }
                _ => { pattern.push(b'?'); string.push(b'x'); }
            }
        }
        prop_assume!(!string.is_empty());
        prop_assert!(glob_match(&pattern, &string));
    }
}
