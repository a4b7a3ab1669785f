//! Numbers as PHP writes them into a query string.
//!
//! `json_decode` turns a JSON number into a PHP `int` when it is an integer literal that
//! fits in `i64` (so `-0` is the int `0`), and into a `float` otherwise (`1.0`, `1e2`,
//! `-0.0`, and integers beyond the `i64` range). `http_build_query` (PHP 8.2,
//! `ext/standard/http.c`) prints ints in decimal and floats with `"%.*G"` at the
//! `precision` ini setting (default 14, *not* `serialize_precision`), through PHP's own
//! `php_gcvt`: 14 significant digits correctly rounded (ties to even), trailing zeros
//! dropped, exponent form `1.0E+25` when the decimal exponent is below -4 or above 14.
//! The result is then url-encoded, so `+` is sent as `%2B`.
//!
//! serde_json (without `arbitrary_precision`) hands the visitor an `f64` for every
//! non-integer, computed with its fast, not always correctly rounded parser, and cannot
//! tell `-0` (PHP int 0) from `-0.0` (PHP float -0). So for each `f64` the visitor asks
//! [`FloatTokens`] for the source text of that number and parses it with Rust's
//! correctly rounded `str::parse`, as PHP's `zend_strtod` does.

use std::io::Write as _;

/// PHP's default `precision` ini value, which `http_build_query` uses for floats.
pub(crate) const PHP_PRECISION: usize = 14;

/// A number as PHP's `json_decode` would hold it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PhpNumber {
    /// A PHP `int`.
    Int(i64),
    /// A PHP `float`.
    Float(f64),
}

impl PhpNumber {
    /// An unsigned JSON integer: PHP keeps it an int only when it fits in `i64`.
    pub(crate) fn from_u64(value: u64) -> PhpNumber {
        match i64::try_from(value) {
            Ok(int) => PhpNumber::Int(int),
            // `as` rounds to nearest, ties to even: the same double `zend_strtod` gives.
            Err(_) => PhpNumber::Float(value as f64),
        }
    }

    /// A number serde_json reported as `f64`, given the literal it came from (when the
    /// scanner found it).
    pub(crate) fn from_float_literal(literal: Option<&[u8]>, parsed: f64) -> PhpNumber {
        let Some(literal) = literal else {
            return PhpNumber::Float(parsed);
        };
        if literal == b"-0" {
            return PhpNumber::Int(0);
        }
        std::str::from_utf8(literal)
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .map_or(PhpNumber::Float(parsed), PhpNumber::Float)
    }
}

/// Appends `number` as `http_build_query` prints it (already url-encoded).
pub(crate) fn write_number(out: &mut Vec<u8>, number: PhpNumber) {
    match number {
        PhpNumber::Int(int) => write_int(out, int),
        PhpNumber::Float(float) => write_php_double(out, float),
    }
}

fn write_int(out: &mut Vec<u8>, int: i64) {
    let mut buf = [0u8; 24];
    let capacity = buf.len();
    let mut cursor = buf.as_mut_slice();
    if write!(cursor, "{int}").is_ok() {
        let used = capacity - cursor.len();
        out.extend_from_slice(buf.get(..used).unwrap_or(&[]));
    }
}

/// Appends a usize in decimal (array indices).
pub(crate) fn write_index(out: &mut Vec<u8>, index: usize) {
    let mut buf = [0u8; 24];
    let capacity = buf.len();
    let mut cursor = buf.as_mut_slice();
    if write!(cursor, "{index}").is_ok() {
        let used = capacity - cursor.len();
        out.extend_from_slice(buf.get(..used).unwrap_or(&[]));
    }
}

/// `%.14G` as PHP's `php_gcvt` writes it, url-encoded (`+` → `%2B`).
pub(crate) fn write_php_double(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NAN");
        return;
    }
    if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"INF" } else { b"-INF" });
        return;
    }
    // Rust's `{:.13e}` is correctly rounded with ties to even, like zend_dtoa mode 2:
    // `d.ddddddddddddde<exp>`, 14 significant digits.
    let mut buf = [0u8; 40];
    let capacity = buf.len();
    let mut cursor = buf.as_mut_slice();
    let precision = PHP_PRECISION - 1;
    if write!(cursor, "{:.*e}", precision, value.abs()).is_err() {
        return;
    }
    let used = capacity - cursor.len();
    let text = buf.get(..used).unwrap_or(&[]);
    let Some(e_at) = text.iter().position(|&b| b == b'e') else {
        return;
    };
    let (mantissa, exponent_text) = text.split_at(e_at);
    let exponent = std::str::from_utf8(exponent_text.get(1..).unwrap_or(&[]))
        .ok()
        .and_then(|t| t.parse::<i32>().ok())
        .unwrap_or(0);

    let mut digits = [0u8; 20];
    let mut count = 0usize;
    for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(count) {
            *slot = b;
            count += 1;
        }
    }
    // zend_dtoa drops trailing zeros; zero itself is the single digit "0".
    while count > 1 && digits.get(count - 1) == Some(&b'0') {
        count -= 1;
    }
    let digits = digits.get(..count).unwrap_or(&[]);
    // dtoa's decimal point position: value = 0.d1d2d3… × 10^decpt.
    let decpt = exponent + 1;

    if value.is_sign_negative() {
        out.push(b'-');
    }
    let precision = i32::try_from(PHP_PRECISION).unwrap_or(14);
    let exponential = if decpt < 0 {
        decpt < -3
    } else {
        decpt > precision
    };
    if exponential {
        let (first, rest) = digits.split_first().unwrap_or((&b'0', &[]));
        out.push(*first);
        out.push(b'.');
        if rest.is_empty() {
            out.push(b'0');
        } else {
            out.extend_from_slice(rest);
        }
        out.push(b'E');
        let exp = decpt - 1;
        out.extend_from_slice(if exp < 0 { b"-" } else { b"%2B" });
        write_index(out, exp.unsigned_abs() as usize);
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        for _ in decpt..0 {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    } else {
        let int_len = decpt.unsigned_abs() as usize;
        let (int_part, frac_part) = digits.split_at(int_len.min(digits.len()));
        out.extend_from_slice(int_part);
        for _ in digits.len()..int_len {
            out.push(b'0');
        }
        if !frac_part.is_empty() {
            out.push(b'.');
            out.extend_from_slice(frac_part);
        }
    }
}

/// Finds, in document order, the source text of every JSON number that serde_json
/// reports as `f64` (a fraction or exponent, `-0`, or an integer outside `i64`/`u64`).
///
/// It only skips strings and looks for number starts, so it is cheap, and it runs only
/// as far as the last float the visitor asked about. It assumes the bytes before the
/// current parse position are valid JSON, which serde_json has checked by then.
pub(crate) struct FloatTokens<'a> {
    rest: &'a [u8],
}

impl<'a> FloatTokens<'a> {
    /// A scanner at the start of `json`.
    pub(crate) fn new(json: &'a [u8]) -> FloatTokens<'a> {
        FloatTokens { rest: json }
    }

    /// The next number literal that serde_json parses as `f64`.
    pub(crate) fn next_float(&mut self) -> Option<&'a [u8]> {
        loop {
            let start = self
                .rest
                .iter()
                .position(|&b| b == b'"' || b == b'-' || b.is_ascii_digit())?;
            let (_, from) = self.rest.split_at_checked(start)?;
            if from.first() == Some(&b'"') {
                self.rest = skip_string(from.get(1..)?);
                continue;
            }
            let len = from
                .iter()
                .position(|&b| {
                    !(b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                })
                .unwrap_or(from.len());
            let (literal, after) = from.split_at_checked(len)?;
            self.rest = after;
            if is_float_literal(literal) {
                return Some(literal);
            }
        }
    }
}

/// The bytes after the closing quote of a string whose opening quote is already eaten.
fn skip_string(mut rest: &[u8]) -> &[u8] {
    loop {
        let Some(at) = rest.iter().position(|&b| b == b'"' || b == b'\\') else {
            return &[];
        };
        match rest.get(at) {
            Some(b'"') => return rest.get(at + 1..).unwrap_or(&[]),
            // A backslash escapes the next byte (enough for `\"` and `\\`).
            _ => rest = rest.get(at + 2..).unwrap_or(&[]),
        }
    }
}

/// Whether serde_json turns this literal into an `f64` rather than `u64`/`i64`.
fn is_float_literal(literal: &[u8]) -> bool {
    if literal.iter().any(|&b| matches!(b, b'.' | b'e' | b'E')) {
        return true;
    }
    match literal.split_first() {
        // serde_json: `-0` and negatives beyond i64::MIN become f64.
        Some((b'-', magnitude)) => magnitude == b"0" || exceeds(magnitude, b"9223372036854775808"),
        _ => exceeds(literal, b"18446744073709551615"),
    }
}

/// `digits > max` for decimal digit strings without leading zeros.
fn exceeds(digits: &[u8], max: &[u8]) -> bool {
    digits.len() > max.len() || (digits.len() == max.len() && digits > max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn php(value: f64) -> String {
        let mut out = Vec::new();
        write_php_double(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn doubles_as_php_prints_them() {
        // Expectations from http_build_query under PHP 8.2 (precision=14).
        assert_eq!(php(0.1), "0.1");
        assert_eq!(php(1.0), "1");
        assert_eq!(php(100.0), "100");
        assert_eq!(php(1e25), "1.0E%2B25");
        assert_eq!(php(-0.0), "-0");
        assert_eq!(php(0.0), "0");
        assert_eq!(php(1.5e-7), "1.5E-7");
        assert_eq!(php(1.2345678901234568e29), "1.2345678901235E%2B29");
        assert_eq!(php(9_223_372_036_854_775_808.0), "9.2233720368548E%2B18");
        assert_eq!(php(1.8446744073709552e19), "1.844674407371E%2B19");
        assert_eq!(php(1e14), "1.0E%2B14");
        assert_eq!(php(1e13), "10000000000000");
        assert_eq!(php(0.0001), "0.0001");
        assert_eq!(php(-0.0001), "-0.0001");
        assert_eq!(php(0.00001), "1.0E-5");
        assert_eq!(php(0.00001234), "1.234E-5");
        assert_eq!(php(5e-324), "4.9406564584125E-324");
        assert_eq!(php(1.7976931348623157e308), "1.7976931348623E%2B308");
        assert_eq!(php(123456789012345.0), "1.2345678901234E%2B14");
        assert_eq!(php(-1.5), "-1.5");
        assert_eq!(php(0.5), "0.5");
    }

    #[test]
    fn float_tokens_skip_strings_and_integers() {
        let json = br#"{"a-1.5":"x\"-2.5","b":[1,-3,0.25,-0,18446744073709551616,-9223372036854775809,-9223372036854775808]}"#;
        let mut tokens = FloatTokens::new(json);
        assert_eq!(tokens.next_float(), Some(&b"0.25"[..]));
        assert_eq!(tokens.next_float(), Some(&b"-0"[..]));
        assert_eq!(tokens.next_float(), Some(&b"18446744073709551616"[..]));
        assert_eq!(tokens.next_float(), Some(&b"-9223372036854775809"[..]));
        assert_eq!(tokens.next_float(), None);
    }
}
