//! PHP's `urlencode` (RFC 1738 flavour, `PHP_QUERY_RFC1738`), which `http_build_query`
//! applies to every key and value.
//!
//! Bytes `A-Z a-z 0-9 - _ .` pass through, a space becomes `+`, every other byte becomes
//! `%XX` with upper-case hex (`~` included, unlike RFC 3986's `rawurlencode`). The input
//! is treated as bytes, so UTF-8 is percent-encoded byte by byte and `\0` becomes `%00`.

/// True for the bytes `urlencode` leaves as they are.
#[inline]
pub(crate) fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')
}

/// Appends `bytes` to `out` encoded exactly as PHP's `urlencode` does.
///
/// Output length is at most `3 * bytes.len()`.
pub fn urlencode_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len());
    let mut rest = bytes;
    loop {
        // Copy runs of plain bytes in one go: typical keys and values are mostly plain.
        let run = rest
            .iter()
            .position(|&b| !is_unreserved(b))
            .unwrap_or(rest.len());
        let Some((plain, tail)) = rest.split_at_checked(run) else {
            return;
        };
        out.extend_from_slice(plain);
        let Some((&byte, after)) = tail.split_first() else {
            return;
        };
        if byte == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[b'%', hex_digit(byte >> 4), hex_digit(byte & 0x0f)]);
        }
        rest = after;
    }
}

/// Upper-case hex digit of a nibble (`n < 16`).
#[inline]
fn hex_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'A' + (nibble - 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &[u8]) -> String {
        let mut out = Vec::new();
        urlencode_into(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_php_urlencode() {
        // Expectations from `php -r 'echo urlencode(...);'` (PHP 8.2).
        assert_eq!(enc(b"aZ09-_."), "aZ09-_.");
        assert_eq!(enc(b"a b"), "a+b");
        assert_eq!(enc(b"~*'()!"), "%7E%2A%27%28%29%21");
        assert_eq!(enc(b"&=+%#[]"), "%26%3D%2B%25%23%5B%5D");
        assert_eq!(enc(b"\0\x1f\x7f\xff"), "%00%1F%7F%FF");
        assert_eq!(enc("é".as_bytes()), "%C3%A9");
        assert_eq!(enc(b""), "");
    }

    #[test]
    fn appends() {
        let mut out = b"x=".to_vec();
        urlencode_into(&mut out, b"y z");
        assert_eq!(out, b"x=y+z");
    }
}
