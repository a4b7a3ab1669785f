//! Why a message body could not be form-encoded.
//!
//! Every variant is a permanent failure of that one message, logged with the reason
//! (`docs/SEMANTICS.md` "Body `form`"). The `Display` text is meant for that log line.

use std::fmt;

/// Where in the payload the JSON parser gave up (1-based, as serde_json counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonPosition {
    /// Line of the offending byte, starting at 1.
    pub line: usize,
    /// Column of the offending byte, starting at 1 (0 when the input is empty).
    pub column: usize,
}

/// What kind of JSON fault stopped parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFault {
    /// Bytes that are not JSON: bad token, bad escape, invalid UTF-8, lone surrogate,
    /// trailing bytes after the value, or nesting beyond serde_json's own limit (128).
    Syntax,
    /// The payload ends in the middle of a value (or is empty).
    Truncated,
    /// A number too large for a double, such as `1e400`. PHP's `json_decode` would turn
    /// it into `INF` and `http_build_query` would send the string `INF`; ferry refuses it.
    NumberOutOfRange,
}

/// The top-level JSON value, when it is valid JSON but not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// `[...]` (PHP would encode it with numeric keys `0=…&1=…`; ferry refuses it).
    Array,
    /// `"..."`.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

/// A message body that cannot become an `application/x-www-form-urlencoded` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    /// The payload is not valid JSON.
    InvalidJson {
        /// What went wrong.
        fault: JsonFault,
        /// Where it went wrong.
        at: JsonPosition,
    },
    /// The payload is valid JSON but its top-level value is not an object.
    NotAnObject {
        /// What was found instead.
        found: JsonKind,
    },
    /// Objects and arrays nest deeper than the configured limit (the top-level object
    /// counts as depth 1).
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The encoded body would be larger than the configured limit (deep nesting repeats
    /// every ancestor key in every variable name, so output can grow quadratically).
    TooLarge {
        /// The limit, in bytes of encoded output.
        limit: usize,
    },
    /// A payload with a repeated object key holds more JSON values than the ordered tree
    /// that resolves repeats may hold (bounds memory; see [`FALLBACK_MAX_VALUES`](super::FALLBACK_MAX_VALUES)).
    TooManyValues {
        /// The limit, in JSON values.
        limit: usize,
    },
}

impl fmt::Display for JsonFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonFault::Syntax => "invalid JSON",
            JsonFault::Truncated => "JSON ends before its value does",
            JsonFault::NumberOutOfRange => "JSON number out of the range of a double",
        })
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Array => "an array",
            JsonKind::String => "a string",
            JsonKind::Number => "a number",
            JsonKind::Bool => "a boolean",
            JsonKind::Null => "null",
        })
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::InvalidJson { fault, at } => write!(
                f,
                "form body: {fault} at line {} column {}",
                at.line, at.column
            ),
            FormError::NotAnObject { found } => {
                write!(f, "form body: payload is {found}, not a JSON object")
            }
            FormError::TooDeep { limit } => {
                write!(f, "form body: JSON nests deeper than {limit} levels")
            }
            FormError::TooLarge { limit } => {
                write!(f, "form body: encoded body would exceed {limit} bytes")
            }
            FormError::TooManyValues { limit } => write!(
                f,
                "form body: a repeated key in a payload of more than {limit} values"
            ),
        }
    }
}

impl std::error::Error for FormError {}
