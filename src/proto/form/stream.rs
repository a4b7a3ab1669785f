//! The fast path: serde visitors that write variables while serde_json parses, in
//! document order, without building any tree.
//!
//! PHP's `json_decode(…, true)` keeps object keys in document order, and for a repeated
//! key keeps the *last* value at the *first* key's position (`{"a":1,"b":2,"a":3}` →
//! `a=3&b=2`). Streaming cannot know at a key whether it will repeat, so each object's
//! encoded keys are remembered (one shared stack of bytes, no per-object allocation) and
//! checked when the object closes; on a repeat the pass aborts with
//! [`Abort::DuplicateKey`] and the caller re-encodes through [`super::tree`]. Payloads
//! with repeated keys are rare, so the common case parses once and allocates only the
//! key stack and path buffer.

use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use std::fmt;

use super::emit::{Emitter, Key, Scalar};
use super::number::{FloatTokens, PhpNumber};
use super::urlencode::urlencode_into;
use super::{FormError, JsonKind};

/// Why a pass stopped early (carried beside serde_json's error, which cannot hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abort {
    /// A real failure of this body.
    Form(FormError),
    /// An object repeats a key: encode again with the ordered tree.
    DuplicateKey,
}

/// State shared by every visitor of one streaming pass.
pub(crate) struct Stream<'a, 'o> {
    pub(crate) emit: Emitter<'o>,
    floats: FloatTokens<'a>,
    /// Encoded keys of every open object, innermost last.
    keys: Vec<u8>,
    /// `(start, end)` of each key in `keys`.
    key_spans: Vec<(usize, usize)>,
    max_depth: usize,
    pub(crate) abort: Option<Abort>,
}

impl<'a, 'o> Stream<'a, 'o> {
    pub(crate) fn new(json: &'a [u8], emit: Emitter<'o>, max_depth: usize) -> Stream<'a, 'o> {
        Stream {
            emit,
            floats: FloatTokens::new(json),
            keys: Vec::new(),
            key_spans: Vec::new(),
            max_depth,
            abort: None,
        }
    }

    fn fail<E: de::Error>(&mut self, abort: Abort) -> E {
        self.abort = Some(abort);
        E::custom("form encoding stopped")
    }
}

/// Visits the top-level value: encodes an object, classifies anything else.
pub(crate) struct Top<'s, 'a, 'o>(pub(crate) &'s mut Stream<'a, 'o>);

impl<'de> Visitor<'de> for Top<'_, '_, '_> {
    type Value = Option<JsonKind>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        visit_object(self.0, 0, None, map)?;
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Drain it so that invalid JSON further on is still reported as invalid JSON.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(JsonKind::Array))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some(JsonKind::String))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some(JsonKind::Bool))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some(JsonKind::Number))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some(JsonKind::Number))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some(JsonKind::Number))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some(JsonKind::Null))
    }
}

/// Where the value being visited sits.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Under an object key, stored in the key stack at this span.
    Key((usize, usize)),
    /// At this position of an array.
    Index(usize),
}

/// Seed and visitor for a value under a key or index at `level` (≥ 1).
struct Value<'s, 'a, 'o> {
    stream: &'s mut Stream<'a, 'o>,
    level: usize,
    slot: Slot,
}

impl Value<'_, '_, '_> {
    fn leaf<E: de::Error>(self, scalar: Scalar<'_>) -> Result<(), E> {
        let stream = self.stream;
        let key = match self.slot {
            Slot::Key(span) => Key::Encoded(stream.keys.get(span.0..span.1).unwrap_or(&[])),
            Slot::Index(index) => Key::Index(index),
        };
        match stream.emit.leaf(self.level, key, scalar) {
            Ok(()) => Ok(()),
            Err(error) => Err(stream.fail(Abort::Form(error))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Value<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        // PHP's http_build_query skips null entirely (the key is not sent).
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.leaf(Scalar::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.leaf(Scalar::Number(PhpNumber::Int(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.leaf(Scalar::Number(PhpNumber::from_u64(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        let literal = self.stream.floats.next_float();
        self.leaf(Scalar::Number(PhpNumber::from_float_literal(
            literal, value,
        )))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.leaf(Scalar::Str(value.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let stream = self.stream;
        let depth = self.level + 1;
        if depth > stream.max_depth {
            let limit = stream.max_depth;
            return Err(stream.fail(Abort::Form(FormError::TooDeep { limit })));
        }
        let mark = enter(stream, self.level, self.slot)?;
        let mut index = 0usize;
        while seq
            .next_element_seed(Value {
                stream: &mut *stream,
                level: depth,
                slot: Slot::Index(index),
            })?
            .is_some()
        {
            index += 1;
        }
        stream.emit.leave(mark);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        visit_object(self.stream, self.level, Some(self.slot), map)
    }
}

/// Opens a container in the emitter's path.
fn enter<E: de::Error>(stream: &mut Stream<'_, '_>, level: usize, slot: Slot) -> Result<usize, E> {
    let key = match slot {
        Slot::Key(span) => Key::Encoded(stream.keys.get(span.0..span.1).unwrap_or(&[])),
        Slot::Index(index) => Key::Index(index),
    };
    match stream.emit.enter(level, key) {
        Ok(mark) => Ok(mark),
        Err(error) => Err(stream.fail(Abort::Form(error))),
    }
}

/// Encodes an object whose key sits at `level` (0 for the top-level object, which has
/// no key and no path of its own).
fn visit_object<'de, A: MapAccess<'de>>(
    stream: &mut Stream<'_, '_>,
    level: usize,
    slot: Option<Slot>,
    mut map: A,
) -> Result<(), A::Error> {
    let depth = level + 1;
    if depth > stream.max_depth {
        let limit = stream.max_depth;
        return Err(stream.fail(Abort::Form(FormError::TooDeep { limit })));
    }
    let mark = match slot {
        Some(slot) => Some(enter(stream, level, slot)?),
        None => None,
    };
    let first_key = stream.key_spans.len();
    let keys_mark = stream.keys.len();
    while let Some(span) = map.next_key_seed(KeySeed(&mut *stream))? {
        map.next_value_seed(Value {
            stream: &mut *stream,
            level: depth,
            slot: Slot::Key(span),
        })?;
    }
    if has_duplicate(
        &stream.keys,
        stream.key_spans.get_mut(first_key..).unwrap_or(&mut []),
    ) {
        return Err(stream.fail(Abort::DuplicateKey));
    }
    stream.key_spans.truncate(first_key);
    stream.keys.truncate(keys_mark);
    if let Some(mark) = mark {
        stream.emit.leave(mark);
    }
    Ok(())
}

/// Whether two spans hold the same key. url-encoding is injective, so equal encoded
/// keys mean equal JSON keys (and PHP's turning `"1"` into int key 1 changes nothing:
/// only the canonical decimal string maps to an int, so distinct strings stay distinct).
fn has_duplicate(keys: &[u8], spans: &mut [(usize, usize)]) -> bool {
    let key = |span: &(usize, usize)| keys.get(span.0..span.1).unwrap_or(&[]);
    if spans.len() <= 16 {
        return spans
            .iter()
            .enumerate()
            .any(|(i, a)| spans.iter().skip(i + 1).any(|b| key(a) == key(b)));
    }
    // The spans are dropped after this check, so sorting them in place is free.
    spans.sort_unstable_by(|a, b| key(a).cmp(key(b)));
    spans.windows(2).any(|pair| match pair {
        [a, b] => key(a) == key(b),
        _ => false,
    })
}

/// Reads an object key, url-encodes it onto the key stack and returns its span.
struct KeySeed<'s, 'a, 'o>(&'s mut Stream<'a, 'o>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_, '_> {
    type Value = (usize, usize);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_, '_> {
    type Value = (usize, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let start = self.0.keys.len();
        urlencode_into(&mut self.0.keys, key.as_bytes());
        let span = (start, self.0.keys.len());
        self.0.key_spans.push(span);
        Ok(span)
    }
}

/// Runs the streaming pass; `Ok(None)` means a top-level object was encoded.
pub(crate) fn run(
    json: &[u8],
    stream: &mut Stream<'_, '_>,
) -> Result<Option<JsonKind>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let kind = deserializer.deserialize_any(Top(stream))?;
    deserializer.end()?;
    Ok(kind)
}
