//! Name-value pairs (spec §3.4): the content of PARAMS streams, GET_VALUES and
//! GET_VALUES_RESULT records.
//!
//! Each pair is `nameLength valueLength name value`; a length below 128 takes one byte,
//! any other takes four bytes, big-endian, with the top bit set (31 bits of length).
//! Decoding accepts a short length written in the four-byte form, as php-src does; every
//! length is checked against the bytes that remain before anything is sliced, so a
//! length claiming 2^31 − 1 bytes is simply "truncated", never a wait or an allocation.

use super::error::FcgiError;

/// Largest name or value length the four-byte form can carry.
pub const MAX_NV_LEN: usize = 0x7FFF_FFFF;

/// Iterates over the pairs of a complete name-value buffer without allocating. Yields an
/// error (once, then ends) when a length runs past the end of the buffer.
#[derive(Debug, Clone)]
pub struct NameValuePairs<'b> {
    rest: &'b [u8],
}

impl<'b> NameValuePairs<'b> {
    /// Pairs over `buf`, which must hold whole pairs (a PARAMS stream, GET_VALUES content).
    pub fn new(buf: &'b [u8]) -> Self {
        Self { rest: buf }
    }

    /// Checks that `buf` is a sequence of whole pairs.
    pub fn validate(buf: &[u8]) -> Result<(), FcgiError> {
        NameValuePairs::new(buf).try_for_each(|pair| pair.map(drop))
    }
}

impl<'b> Iterator for NameValuePairs<'b> {
    type Item = Result<(&'b [u8], &'b [u8]), FcgiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = split_pair(self.rest);
        self.rest = match parsed {
            Ok((_, _, rest)) => rest,
            Err(_) => &[],
        };
        Some(parsed.map(|(name, value, _)| (name, value)))
    }
}

/// Reads one length; returns it and the rest.
fn split_len(buf: &[u8]) -> Result<(usize, &[u8]), FcgiError> {
    match buf {
        [short, rest @ ..] if *short < 0x80 => Ok((usize::from(*short), rest)),
        [b0, b1, b2, b3, rest @ ..] => {
            let len = u32::from_be_bytes([b0 & 0x7F, *b1, *b2, *b3]);
            let len = usize::try_from(len).map_err(|_| FcgiError::NameValueTruncated)?;
            Ok((len, rest))
        }
        _ => Err(FcgiError::NameValueTruncated),
    }
}

/// A pair's name, its value, and the bytes after it.
type SplitPair<'b> = (&'b [u8], &'b [u8], &'b [u8]);

/// Splits one pair off the front of `buf`.
fn split_pair(buf: &[u8]) -> Result<SplitPair<'_>, FcgiError> {
    let (name_len, rest) = split_len(buf)?;
    let (value_len, rest) = split_len(rest)?;
    let (name, rest) = rest
        .split_at_checked(name_len)
        .ok_or(FcgiError::NameValueTruncated)?;
    let (value, rest) = rest
        .split_at_checked(value_len)
        .ok_or(FcgiError::NameValueTruncated)?;
    Ok((name, value, rest))
}

/// Bytes one length takes on the wire.
fn len_size(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        4
    }
}

/// Bytes the pair takes on the wire.
pub fn encoded_pair_len(name: &[u8], value: &[u8]) -> usize {
    len_size(name.len()) + len_size(value.len()) + name.len() + value.len()
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if let Ok(short) = u8::try_from(len) {
        if short < 0x80 {
            out.push(short);
            return;
        }
    }
    // The caller checked len <= MAX_NV_LEN, so it fits in 31 bits.
    let long = u32::try_from(len).unwrap_or(u32::MAX) | 0x8000_0000;
    out.extend_from_slice(&long.to_be_bytes());
}

/// Appends one pair. Fails (appending nothing) when a name or value is longer than
/// 2^31 − 1 bytes.
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), FcgiError> {
    if name.len() > MAX_NV_LEN || value.len() > MAX_NV_LEN {
        return Err(FcgiError::NameValueTooLong);
    }
    push_len(out, name.len());
    push_len(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type OwnedPairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn decode_all(buf: &[u8]) -> Result<OwnedPairs, FcgiError> {
        NameValuePairs::new(buf)
            .map(|p| p.map(|(n, v)| (n.to_vec(), v.to_vec())))
            .collect()
    }

    #[test]
    fn short_and_long_lengths_roundtrip() {
        let long_value = vec![b'x'; 300];
        let mut out = Vec::new();
        encode_pair(&mut out, b"A", b"1").unwrap();
        encode_pair(&mut out, b"LONG", &long_value).unwrap();
        encode_pair(&mut out, b"", b"").unwrap();
        assert_eq!(&out[..4], &[1, 1, b'A', b'1']);
        assert_eq!(&out[4..9], &[4, 0x80, 0, 1, 44]);
        let pairs = decode_all(&out).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[1].1, long_value);
        assert_eq!(encoded_pair_len(b"LONG", &long_value), 1 + 4 + 4 + 300);
    }

    #[test]
    fn non_canonical_long_form_is_accepted() {
        let buf = [0x80, 0, 0, 1, 1, b'N', b'V'];
        assert_eq!(
            decode_all(&buf).unwrap(),
            vec![(b"N".to_vec(), b"V".to_vec())]
        );
    }

    #[test]
    fn lengths_past_the_end_are_truncated() {
        for buf in [
            &[0x7F, 0x7F][..],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0, b'a'][..],
            &[1][..],
            &[0x80, 0, 0][..],
            &[1, 2, b'a', b'b'][..],
        ] {
            assert_eq!(
                decode_all(buf),
                Err(FcgiError::NameValueTruncated),
                "{buf:?}"
            );
        }
        let mut pairs = NameValuePairs::new(&[5]);
        assert!(pairs.next().unwrap().is_err());
        assert!(pairs.next().is_none());
    }
}
