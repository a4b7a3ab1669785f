//! Redis glob matching for `PSUBSCRIBE` (`stringmatchlen` in redis `src/util.c`): `*`, `?`,
//! `[abc]`, `[^abc]`, `[a-z]`, and `\` escaping the next byte — with Redis's own edge cases
//! (an unterminated `[` set runs to the end of the pattern; a lone trailing `\` is a
//! literal; an empty channel matches only an empty pattern).
//!
//! Redis recurses once per `*`; a pattern comes from the network and may hold a million of
//! them, so this matcher is iterative (one backtrack point: the last `*`), which accepts
//! the same strings in O(pattern × string) time and constant stack. That product is
//! still a cost a client chooses (a 30 KB pattern against a 60 KB channel is ~2·10⁹ steps,
//! paid on every `PUBLISH`), so a match gets [`MAX_MATCH_STEPS`] pattern bytes examined at
//! most and is a non-match past them — as Redis 7's own `stringmatchlen` gives up (no
//! match) past a nesting limit. Patterns and channels of everyday size (a few hundred
//! bytes and a handful of `*`) stay far below it.

/// Pattern bytes one match may examine before it gives up (a non-match): ~1 ms of CPU.
pub const MAX_MATCH_STEPS: usize = 1 << 20;

/// Whether `string` matches the glob `pattern`, case-sensitively, as Redis decides it.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    if string.is_empty() {
        // Redis's loop never runs for an empty string: only an empty pattern matches.
        return pattern.is_empty();
    }
    let (mut p, mut s) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    let mut steps = 0usize;
    loop {
        steps += 1;
        if steps > MAX_MATCH_STEPS {
            return false;
        }
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            backtrack = Some((p, s));
            continue;
        }
        let Some(&byte) = string.get(s) else { break };
        let token = match_token(pattern, p, byte);
        if let Some((_, next)) = token {
            // A set token costs its length.
            steps += next.saturating_sub(p).saturating_sub(1);
        }
        if let Some((true, next)) = token {
            p = next;
            s += 1;
            continue;
        }
        match backtrack {
            Some((star_p, star_s)) if star_s < string.len() => {
                backtrack = Some((star_p, star_s + 1));
                p = star_p;
                s = star_s + 1;
            }
            _ => return false,
        }
    }
    while pattern.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pattern.len()
}

/// Matches one non-`*` token at `pattern[p..]` against `byte`: whether it matched and
/// where the next token starts; `None` at the end of the pattern.
fn match_token(pattern: &[u8], p: usize, byte: u8) -> Option<(bool, usize)> {
    let at = |i: usize| pattern.get(i).copied();
    match at(p)? {
        b'?' => Some((true, p + 1)),
        b'[' => {
            let mut i = p + 1;
            let negate = at(i) == Some(b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            loop {
                if at(i) == Some(b'\\') && pattern.len().saturating_sub(i) >= 2 {
                    i += 1;
                    if at(i) == Some(byte) {
                        matched = true;
                    }
                } else if at(i) == Some(b']') {
                    break;
                } else if i >= pattern.len() {
                    // Unterminated: the set ends with the pattern.
                    i = pattern.len().saturating_sub(1);
                    break;
                } else if pattern.len() - i >= 3 && at(i + 1) == Some(b'-') {
                    let (mut start, mut end) = (at(i).unwrap_or(0), at(i + 2).unwrap_or(0));
                    if start > end {
                        std::mem::swap(&mut start, &mut end);
                    }
                    if (start..=end).contains(&byte) {
                        matched = true;
                    }
                    i += 2;
                } else if at(i) == Some(byte) {
                    matched = true;
                }
                i += 1;
            }
            Some((matched != negate, i + 1))
        }
        b'\\' if pattern.len() - p >= 2 => Some((at(p + 1) == Some(byte), p + 2)),
        literal => Some((literal == byte, p + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn m(pattern: &str, string: &str) -> bool {
        glob_match(pattern.as_bytes(), string.as_bytes())
    }

    #[test]
    fn matches_like_stringmatchlen() {
        assert!(m("*", "anything"));
        assert!(
            !m("*", ""),
            "Redis: an empty channel matches only an empty pattern"
        );
        assert!(m("", ""));
        assert!(m("news.*", "news.sport"));
        assert!(m("news.*", "news."));
        assert!(!m("news.*", "news"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "reversed ranges are swapped");
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\", r"a\"));
        assert!(m("[abc", "b"), "unterminated set runs to the end");
        assert!(m(r"[\]]", "]"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("**a", "ba"));
        assert!(m("a**", "a"));
        assert!(!m("[", "["));
    }

    #[test]
    fn a_costly_match_gives_up_as_a_non_match() {
        // ~30 KB pattern × 60 KB channel: 1.8·10⁹ steps without the budget.
        let pattern = "*a".repeat(15_000) + "b";
        let channel = "a".repeat(60_000);
        assert!(!glob_match(pattern.as_bytes(), channel.as_bytes()));
        // Long but cheap: a literal prefix and one star match at once.
        let long = "x".repeat(60_000);
        assert!(glob_match(format!("{long}*").as_bytes(), long.as_bytes()));
    }

    #[test]
    fn many_stars_do_not_recurse() {
        let pattern = "a*".repeat(10_000) + "b";
        let string = "a".repeat(20_000);
        assert!(!glob_match(pattern.as_bytes(), string.as_bytes()));
    }
}
