//! Just enough of an X.509 certificate's DER to say whose it is and when it expires, for
//! `ferry check` (`docs/OPERATIONS.md`, "TLS"). Verification is rustls' business, never
//! this module's: it reads a certificate that rustls already accepted.
//!
//! DER is tag, length, value: a certificate is `SEQUENCE { tbsCertificate SEQUENCE {
//! [0] version?, serial, signature algorithm, issuer Name, validity { notBefore,
//! notAfter }, subject Name, … }, … }`. A Name is a sequence of sets of (OID, string)
//! pairs. Any input answers `None` or a summary; none panics.

use std::fmt::Write as _;

/// What `ferry check` shows of a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `CN=redis.internal, O=Example`.
    pub subject: String,
    /// The issuer, in the same form.
    pub issuer: String,
    /// The end of validity, seconds since 1970 (UTC).
    pub not_after: i64,
}

/// Reads the subject, issuer and expiry of a DER certificate.
pub fn summarize(der: &[u8]) -> Option<Summary> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest, 0xa0)?.1; // [0] EXPLICIT version
    }
    rest = element(rest, 0x02)?.1; // serial number
    rest = element(rest, 0x30)?.1; // signature algorithm
    let (issuer, after) = element(rest, 0x30)?;
    let (validity, after) = element(after, 0x30)?;
    let (subject, _) = element(after, 0x30)?;
    let (_, times) = any_element(validity)?; // notBefore
    let (tag, not_after, _) = any_element(times).map(|(tag, r)| (tag.0, tag.1, r))?;
    Some(Summary {
        subject: name(subject)?,
        issuer: name(issuer)?,
        not_after: time(tag, not_after)?,
    })
}

/// The value of the element at the start of `bytes` if its tag is `tag`, and the bytes
/// after it.
fn element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let ((found, value), rest) = any_element(bytes)?;
    (found == tag).then_some((value, rest))
}

/// The tag and value of the element at the start of `bytes`, and the bytes after it.
#[allow(clippy::type_complexity)]
fn any_element(bytes: &[u8]) -> Option<((u8, &[u8]), &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None; // indefinite or absurd lengths are not DER
        }
        let (digits, after) = (rest.get(..count)?, rest.get(count..)?);
        rest = after;
        digits
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d))
    };
    Some(((tag, rest.get(..length)?), rest.get(length..)?))
}

/// `CN=…, O=…` of a Name (RDNs in order; unknown attributes by their dotted OID).
fn name(mut rdns: &[u8]) -> Option<String> {
    let mut out = String::new();
    while !rdns.is_empty() {
        let (set, after) = element(rdns, 0x31)?;
        rdns = after;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (pair, after) = element(attributes, 0x30)?;
            attributes = after;
            let (oid, value) = element(pair, 0x06)?;
            let ((_, text), _) = any_element(value)?;
            if !out.is_empty() {
                out.push_str(", ");
            }
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN".to_string(),
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                [0x55, 0x04, 0x0a] => "O".to_string(),
                [0x55, 0x04, 0x0b] => "OU".to_string(),
                other => dotted(other),
            };
            let _ = write!(out, "{key}={}", String::from_utf8_lossy(text));
        }
    }
    Some(out)
}

/// An OID in dotted form.
fn dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &byte in oid {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if parts.is_empty() {
                let first = (value / 40).min(2);
                parts.push(first);
                parts.push(value - first * 40);
            } else {
                parts.push(value);
            }
            value = 0;
        }
    }
    let texts: Vec<String> = parts.iter().map(u64::to_string).collect();
    texts.join(".")
}

/// UTCTime (`YYMMDDhhmmssZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDhhmmssZ`, 0x18) as
/// seconds since 1970.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, at) = match tag {
        0x17 => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        0x18 => (digits(0..4)?, 4),
        _ => return None,
    };
    let month = digits(at..at + 2)?;
    let day = digits(at + 2..at + 4)?;
    let hour = digits(at + 4..at + 6)?;
    let minute = digits(at + 6..at + 8)?;
    let second = digits(at + 8..at + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `YYYY-MM-DD` of seconds since 1970.
pub fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    // The inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The fuzz target's checks (`fuzz/fuzz_targets/x509.rs`), replayed on the committed
/// corpus by the stable tests: any input answers without panicking, and a summary's
/// date prints as a date.
#[cfg(any(test, feature = "invariants"))]
pub mod invariants {
    /// Panics when an invariant is broken.
    pub fn check(data: &[u8]) {
        if let Some(summary) = super::summarize(data) {
            assert!(summary.subject.len() <= data.len() * 4 + 16);
            let date = super::date(summary.not_after);
            assert!(date.len() >= 10, "{date}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(4_102_444_800), "2100-01-01");
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(time(0x17, b"99133100000Z"), None);
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }

    #[test]
    fn truncations_and_garbage_answer_none() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(summarize(&[0x30, 0x80, 0x00, 0x00]), None);
        let mut x = 0u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (x >> 56) as u8
                })
                .collect();
            let _ = summarize(&bytes);
        }
    }
}
