//! Property tests for the RESP server side (`proto::resp::server`), on stable Rust beside
//! the `resp_server` fuzz target: random byte strings and random sequences of
//! RESP-looking pieces (commands, headers, quotes, escapes) go through the command reader
//! and a client session in two reads, and the fuzz invariants hold — no panic, every
//! command consumes what it says, every reply is valid RESP. Also: a glob pattern matches
//! a string built from it, and the matcher decides exactly as a plain recursive reference
//! (written from the rules of Redis's `stringmatchlen`) on random small patterns and
//! strings — so non-matches are checked too, not only matches.

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

/// The reference: Redis's glob rules, recursive and obviously slow. A byte past the end
/// of the pattern reads as 0, as C reads the terminator of an sds string.
fn reference_match(pattern: &[u8], string: &[u8]) -> bool {
    let at = |p: usize| pattern.get(p).copied().unwrap_or(0);
    let (mut p, mut s) = (0usize, 0usize);
    while p < pattern.len() && s < string.len() {
        match at(p) {
            b'*' => {
                while p + 1 < pattern.len() && at(p + 1) == b'*' {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                while s < string.len() {
                    if reference_match(&pattern[p + 1..], &string[s..]) {
                        return true;
                    }
                    s += 1;
                }
                return false;
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let negate = at(p) == b'^';
                if negate {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    let left = pattern.len().saturating_sub(p);
                    if at(p) == b'\\' && left >= 2 {
                        p += 1;
                        matched |= at(p) == string[s];
                    } else if at(p) == b']' {
                        break;
                    } else if left == 0 {
                        p -= 1;
                        break;
                    } else if left >= 3 && at(p + 1) == b'-' {
                        let (lo, hi) = (at(p).min(at(p + 2)), at(p).max(at(p + 2)));
                        matched |= (lo..=hi).contains(&string[s]);
                        p += 2;
                    } else {
                        matched |= at(p) == string[s];
                    }
                    p += 1;
                }
                if matched == negate {
                    return false;
                }
                s += 1;
            }
            byte => {
                let mut literal = byte;
                if byte == b'\\' && pattern.len() - p >= 2 {
                    p += 1;
                    literal = at(p);
                }
                if literal != string[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == string.len() {
            while at(p) == b'*' && p < pattern.len() {
                p += 1;
            }
            break;
        }
    }
    p >= pattern.len() && s == string.len()
}

fn glob_byte() -> impl Strategy<Value = u8> {
    prop::sample::select(b"ab*?[]^-\\".to_vec())
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

    #[test]
    fn the_matcher_decides_as_the_reference(
        pattern in prop::collection::vec(glob_byte(), 0..9),
        string in prop::collection::vec(prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..9),
    ) {
        prop_assert_eq!(
            glob_match(&pattern, &string),
            reference_match(&pattern, &string),
            "pattern {:?} string {:?}",
            String::from_utf8_lossy(&pattern),
            String::from_utf8_lossy(&string)
        );
    }
}

#[test]
fn known_non_matches() {
    for (pattern, string) in [
        ("news.*", "news"),
        ("h?llo", "hllo"),
        ("h[ae]llo", "hillo"),
        ("h[^e]llo", "hello"),
        ("a*b*c", "aXXbYY"),
        ("a", "b"),
        ("*", ""),
        ("[", "["),
        ("a\\*b", "axb"),
    ] {
        assert!(
            !glob_match(pattern.as_bytes(), string.as_bytes()),
            "{pattern} {string}"
        );
        assert!(
            !reference_match(pattern.as_bytes(), string.as_bytes()),
            "{pattern} {string}"
        );
    }
}
