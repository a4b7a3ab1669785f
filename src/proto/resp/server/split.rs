//! Inline commands (what `redis-cli` piped input and `telnet` send): one line split into
//! arguments with Redis's quoting rules (`sdssplitargs` in redis `src/sds.c`), so a line
//! means to ferry exactly what it means to Redis.
//!
//! - Arguments are separated by whitespace.
//! - `"…"`: `\xHH` is a byte, `\n \r \t \b \a` the control characters, `\` before any
//!   other byte is that byte.
//! - `'…'`: literal, except `\'`.
//! - A quote may start inside an argument (`a"b c"` is `ab c`), but a closing quote must be
//!   followed by whitespace or the end of the line; an unterminated quote is an error.

/// The line's quotes do not balance (`-ERR Protocol error: unbalanced quotes in request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnbalancedQuotes;

/// `isspace` in the C locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Splits one inline line (without its line ending) into arguments.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
    let mut args = Vec::new();
    let mut rest = line;
    loop {
        while let [first, tail @ ..] = rest {
            if !is_space(*first) {
                break;
            }
            rest = tail;
        }
        if rest.is_empty() {
            return Ok(args);
        }
        let (arg, tail) = one_arg(rest)?;
        args.push(arg);
        rest = tail;
    }
}

/// Where an argument's scanner stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Bare,
    Double,
    Single,
}

/// Reads one argument from the start of `input` (not whitespace); returns it and the rest.
fn one_arg(input: &[u8]) -> Result<(Vec<u8>, &[u8]), UnbalancedQuotes> {
    let mut arg = Vec::new();
    let mut quoting = Quoting::Bare;
    let mut rest = input;
    loop {
        match quoting {
            Quoting::Double => match rest {
                [] => return Err(UnbalancedQuotes),
                [b'\\', b'x', high, low, tail @ ..]
                    if hex_value(*high).is_some() && hex_value(*low).is_some() =>
                {
                    let byte = hex_value(*high).unwrap_or(0) * 16 + hex_value(*low).unwrap_or(0);
                    arg.push(byte);
                    rest = tail;
                }
                [b'\\', escaped, tail @ ..] => {
                    arg.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => *other,
                    });
                    rest = tail;
                }
                [b'"', tail @ ..] => return closed(arg, tail),
                [byte, tail @ ..] => {
                    arg.push(*byte);
                    rest = tail;
                }
            },
            Quoting::Single => match rest {
                [] => return Err(UnbalancedQuotes),
                [b'\\', b'\'', tail @ ..] => {
                    arg.push(b'\'');
                    rest = tail;
                }
                [b'\'', tail @ ..] => return closed(arg, tail),
                [byte, tail @ ..] => {
                    arg.push(*byte);
                    rest = tail;
                }
            },
            Quoting::Bare => match rest {
                [] => return Ok((arg, rest)),
                [b' ' | b'\n' | b'\r' | b'\t' | 0, tail @ ..] => return Ok((arg, tail)),
                [b'"', tail @ ..] => {
                    quoting = Quoting::Double;
                    rest = tail;
                }
                [b'\'', tail @ ..] => {
                    quoting = Quoting::Single;
                    rest = tail;
                }
                [byte, tail @ ..] => {
                    arg.push(*byte);
                    rest = tail;
                }
            },
        }
    }
}

/// A closing quote must be followed by whitespace or the end of the line.
fn closed(arg: Vec<u8>, after: &[u8]) -> Result<(Vec<u8>, &[u8]), UnbalancedQuotes> {
    match after.first() {
        None => Ok((arg, after)),
        Some(byte) if is_space(*byte) => Ok((arg, after.get(1..).unwrap_or_default())),
        Some(_) => Err(UnbalancedQuotes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, UnbalancedQuotes> {
        split_args(line.as_bytes()).map(|args| {
            args.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    #[test]
    fn splits_like_sdssplitargs() {
        assert_eq!(split("  PING  ").unwrap(), ["PING"]);
        assert_eq!(split("set a\tb").unwrap(), ["set", "a", "b"]);
        assert_eq!(split(r#"ECHO "a\x41\n""#).unwrap(), ["ECHO", "aA\n"]);
        assert_eq!(
            split(r#"ECHO "\x4" "\xZZ" "\t\q""#).unwrap(),
            ["ECHO", "x4", "xZZ", "\tq"]
        );
        assert_eq!(
            split(r"ECHO 'a\'b' 'c\n'").unwrap(),
            ["ECHO", "a'b", r"c\n"]
        );
        assert_eq!(split(r#"a"b c" d"#).unwrap(), ["ab c", "d"]);
        assert_eq!(split(r#"ECHO """#).unwrap(), ["ECHO", ""]);
        assert_eq!(split("a\rb c").unwrap(), ["a", "b", "c"]);
        assert!(split("").unwrap().is_empty());
    }

    #[test]
    fn unbalanced_quotes_are_refused() {
        for line in [r#"a "b"#, "a 'b", r#"ECHO "a"b"#, "ECHO 'a'b", r#"x "\"#] {
            assert_eq!(split(line), Err(UnbalancedQuotes), "{line}");
        }
    }
}
