//! Decoded RESP frames: leaves borrow their bytes from the read buffer; aggregates are
//! lazy, allocation-free views over bytes the decoder already validated.

use super::head::element_at;

/// One RESP2/RESP3 value, borrowing from the buffer it was decoded from.
///
/// Equality is structural: two aggregates are equal when their elements are, whatever
/// spelling their bytes used (`:007` equals `:7`), and a NaN double equals a NaN double
/// so that decoding is comparable with itself.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'b> {
    /// `+OK`: a simple string (never holds `\r`).
    SimpleString(&'b [u8]),
    /// `-ERR …`: a simple error, code and message as one line.
    Error(&'b [u8]),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$3\r\nfoo`: a binary-safe bulk string.
    BulkString(&'b [u8]),
    /// `$-1`: RESP2's null bulk string (a missing value, e.g. `GET` of no key).
    NullBulk,
    /// `*-1`: RESP2's null array (e.g. a timed-out `BLPOP`).
    NullArray,
    /// `_`: RESP3's null.
    Null,
    /// `#t` / `#f`: a RESP3 boolean.
    Boolean(bool),
    /// `,3.14`: a RESP3 double, including `inf`, `-inf` and `nan`.
    Double(f64),
    /// `(123…`: a RESP3 big number, its digits as sent (optional sign).
    BigNumber(&'b [u8]),
    /// `!21\r\nSYNTAX …`: a RESP3 bulk error.
    BulkError(&'b [u8]),
    /// `=15\r\ntxt:Some string`: a RESP3 verbatim string, its 3-byte format and its text.
    Verbatim {
        /// The format, e.g. `txt` or `mkd`; always 3 bytes.
        format: &'b [u8],
        /// The text after the `:`.
        text: &'b [u8],
    },
    /// `*`: an array.
    Array(Aggregate<'b>),
    /// `~`: a RESP3 set.
    Set(Aggregate<'b>),
    /// `%`: a RESP3 map; [`Aggregate::pairs`] yields its entries.
    Map(Aggregate<'b>),
    /// `|`: a RESP3 attribute, surfaced as a frame of its own that precedes the reply it
    /// annotates; a caller that does not care skips it and decodes the next frame.
    Attribute(Aggregate<'b>),
    /// `>`: a RESP3 push (pub/sub messages, invalidations), out of band with replies.
    Push(Aggregate<'b>),
}

/// Which aggregate type a header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// `*`
    Array,
    /// `~`
    Set,
    /// `%` (its count is in pairs)
    Map,
    /// `|` (its count is in pairs)
    Attribute,
    /// `>`
    Push,
}

impl AggregateKind {
    /// True for maps and attributes, whose count on the wire is in key/value pairs.
    pub fn is_keyed(self) -> bool {
        matches!(self, AggregateKind::Map | AggregateKind::Attribute)
    }

    /// True for attributes.
    pub fn is_attribute(self) -> bool {
        self == AggregateKind::Attribute
    }

    /// The RESP3 type byte of this aggregate.
    pub fn type_byte(self) -> u8 {
        match self {
            AggregateKind::Array => b'*',
            AggregateKind::Set => b'~',
            AggregateKind::Map => b'%',
            AggregateKind::Attribute => b'|',
            AggregateKind::Push => b'>',
        }
    }
}

/// The elements of a validated aggregate, read lazily from the bytes after its header.
///
/// It holds no allocation: iterating reads the element headers again (cheap; they are
/// short lines) and skips over nested aggregates with a single counter.
#[derive(Debug, Clone, Copy)]
pub struct Aggregate<'b> {
    kind: AggregateKind,
    count: usize,
    elements: usize,
    body: &'b [u8],
}

impl<'b> Aggregate<'b> {
    pub(super) fn new(kind: AggregateKind, count: usize, elements: usize, body: &'b [u8]) -> Self {
        Aggregate {
            kind,
            count,
            elements,
            body,
        }
    }

    pub(super) fn into_frame(self) -> Frame<'b> {
        match self.kind {
            AggregateKind::Array => Frame::Array(self),
            AggregateKind::Set => Frame::Set(self),
            AggregateKind::Map => Frame::Map(self),
            AggregateKind::Attribute => Frame::Attribute(self),
            AggregateKind::Push => Frame::Push(self),
        }
    }

    /// The aggregate's type.
    pub fn kind(&self) -> AggregateKind {
        self.kind
    }

    /// The count as sent: elements for arrays, sets and pushes; pairs for maps and attributes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the aggregate has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements == 0
    }

    /// How many frames [`Aggregate::iter`] yields (twice [`Aggregate::len`] for maps).
    pub fn element_count(&self) -> usize {
        self.elements
    }

    /// The encoded elements, exactly as received (everything after the header line).
    pub fn as_bytes(&self) -> &'b [u8] {
        self.body
    }

    /// Every element in order (for maps: key, value, key, value, …).
    pub fn iter(&self) -> Elements<'b> {
        Elements {
            rest: self.body,
            remaining: self.elements,
        }
    }

    /// The elements two by two (meant for maps and attributes); a trailing odd element,
    /// impossible for a validated map, is dropped.
    pub fn pairs(&self) -> Pairs<'b> {
        Pairs { inner: self.iter() }
    }
}

impl<'b> IntoIterator for Aggregate<'b> {
    type Item = Frame<'b>;
    type IntoIter = Elements<'b>;
    fn into_iter(self) -> Elements<'b> {
        self.iter()
    }
}

impl PartialEq for Aggregate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.count == other.count
            && self.elements == other.elements
            && (self.body == other.body || self.iter().eq(other.iter()))
    }
}

/// Iterator over an aggregate's elements. It cannot fail: if the bytes were somehow not
/// a valid element (they were validated, so this does not happen), it ends early.
#[derive(Debug, Clone)]
pub struct Elements<'b> {
    rest: &'b [u8],
    remaining: usize,
}

impl<'b> Iterator for Elements<'b> {
    type Item = Frame<'b>;

    // Always inlined: for the bulk strings that make up nearly every aggregate, reading
    // the next element is a few instructions, fewer than a call that returns a `Frame`.
    #[inline(always)]
    fn next(&mut self) -> Option<Frame<'b>> {
        if self.remaining == 0 {
            return None;
        }
        match element_at(self.rest).and_then(|(frame, used)| Some((frame, self.rest.get(used..)?)))
        {
            Some((frame, rest)) => {
                self.rest = rest;
                self.remaining -= 1;
                Some(frame)
            }
            None => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// Iterator over a map's (or attribute's) key/value pairs.
#[derive(Debug, Clone)]
pub struct Pairs<'b> {
    inner: Elements<'b>,
}

impl<'b> Iterator for Pairs<'b> {
    type Item = (Frame<'b>, Frame<'b>);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.inner.next()?;
        let value = self.inner.next()?;
        Some((key, value))
    }
}

impl<'b> Frame<'b> {
    /// The aggregate view, for arrays, sets, maps, attributes and pushes.
    pub fn as_aggregate(&self) -> Option<&Aggregate<'b>> {
        match self {
            Frame::Array(aggregate)
            | Frame::Set(aggregate)
            | Frame::Map(aggregate)
            | Frame::Attribute(aggregate)
            | Frame::Push(aggregate) => Some(aggregate),
            _ => None,
        }
    }

    /// The bytes of a simple string, bulk string or verbatim string's text.
    pub fn as_bytes(&self) -> Option<&'b [u8]> {
        match *self {
            Frame::SimpleString(bytes) | Frame::BulkString(bytes) => Some(bytes),
            Frame::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for every kind of null (`$-1`, `*-1`, `_`).
    pub fn is_null(&self) -> bool {
        matches!(self, Frame::NullBulk | Frame::NullArray | Frame::Null)
    }

    /// The frame's type in words, for errors ("bulk string", "map", …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::SimpleString(_) => "simple string",
            Frame::Error(_) => "error reply",
            Frame::Integer(_) => "integer",
            Frame::BulkString(_) => "bulk string",
            Frame::NullBulk | Frame::NullArray | Frame::Null => "null",
            Frame::Boolean(_) => "boolean",
            Frame::Double(_) => "double",
            Frame::BigNumber(_) => "big number",
            Frame::BulkError(_) => "bulk error",
            Frame::Verbatim { .. } => "verbatim string",
            Frame::Array(_) => "array",
            Frame::Set(_) => "set",
            Frame::Map(_) => "map",
            Frame::Attribute(_) => "attribute",
            Frame::Push(_) => "push",
        }
    }
}

impl PartialEq for Frame<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Frame::SimpleString(a), Frame::SimpleString(b))
            | (Frame::Error(a), Frame::Error(b))
            | (Frame::BulkString(a), Frame::BulkString(b))
            | (Frame::BigNumber(a), Frame::BigNumber(b))
            | (Frame::BulkError(a), Frame::BulkError(b)) => a == b,
            (Frame::Integer(a), Frame::Integer(b)) => a == b,
            (Frame::NullBulk, Frame::NullBulk)
            | (Frame::NullArray, Frame::NullArray)
            | (Frame::Null, Frame::Null) => true,
            (Frame::Boolean(a), Frame::Boolean(b)) => a == b,
            (Frame::Double(a), Frame::Double(b)) => a == b || (a.is_nan() && b.is_nan()),
            (
                Frame::Verbatim { format, text },
                Frame::Verbatim {
                    format: other_format,
                    text: other_text,
                },
            ) => format == other_format && text == other_text,
            (Frame::Array(a), Frame::Array(b))
            | (Frame::Set(a), Frame::Set(b))
            | (Frame::Map(a), Frame::Map(b))
            | (Frame::Attribute(a), Frame::Attribute(b))
            | (Frame::Push(a), Frame::Push(b)) => a == b,
            _ => false,
        }
    }
}
