//! The fallback for payloads with a repeated object key: build a small ordered tree
//! exactly as `json_decode(…, true)` would (last value wins, first position kept), then
//! write it with the same [`Emitter`] as the streaming pass.
//!
//! Lookups use a linear scan for small objects and a `HashMap` index for large ones, so
//! a hostile payload with many repeats stays linear.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;

use super::emit::{Emitter, Key, Scalar};
use super::number::{FloatTokens, PhpNumber};
use super::FormError;

/// A decoded JSON value, as PHP's array would hold it.
enum Node {
    Null,
    Bool(bool),
    Number(PhpNumber),
    Str(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// Objects with more entries than this get a hash index for repeated-key lookups.
const LINEAR_LOOKUP_MAX: usize = 16;

/// Most JSON values the fallback tree holds. Each costs 32 to 56 bytes, so a payload of
/// tiny values with one repeated key could otherwise cost ~16× its size in memory; past
/// this it is refused with [`FormError::TooManyValues`]. PHP itself keeps only
/// `max_input_vars` (default 1000) variables of a body, so no useful payload is lost.
pub const FALLBACK_MAX_VALUES: usize = 100_000;

struct Builder<'s, 'a> {
    floats: &'s mut FloatTokens<'a>,
    depth: usize,
    max_depth: usize,
    /// Values the tree may still take (see [`FALLBACK_MAX_VALUES`]).
    budget: &'s mut usize,
    /// Why building stopped, when it was a limit rather than bad JSON.
    stopped: &'s mut Option<FormError>,
}

impl<'s, 'a> Builder<'s, 'a> {
    fn child(&mut self) -> Builder<'_, 'a> {
        Builder {
            floats: &mut *self.floats,
            depth: self.depth + 1,
            max_depth: self.max_depth,
            budget: &mut *self.budget,
            stopped: &mut *self.stopped,
        }
    }

    fn check_depth<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth > self.max_depth {
            *self.stopped = Some(FormError::TooDeep {
                limit: self.max_depth,
            });
            return Err(E::custom("too deep"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_, '_> {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        match self.budget.checked_sub(1) {
            Some(left) => *self.budget = left,
            None => {
                *self.stopped = Some(FormError::TooManyValues {
                    limit: FALLBACK_MAX_VALUES,
                });
                return Err(de::Error::custom("too many values"));
            }
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Builder<'_, '_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Number(PhpNumber::Int(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Number(PhpNumber::from_u64(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        let literal = self.floats.next_float();
        Ok(Node::Number(PhpNumber::from_float_literal(literal, value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Str(value.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Node, A::Error> {
        self.check_depth()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Node, A::Error> {
        self.check_depth()?;
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            let existing = if entries.len() <= LINEAR_LOOKUP_MAX {
                entries.iter().position(|(k, _)| *k == key)
            } else {
                if index.is_empty() {
                    index = entries
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect();
                }
                index.get(&key).copied()
            };
            match existing.and_then(|at| entries.get_mut(at)) {
                Some(entry) => entry.1 = value,
                None => {
                    if !index.is_empty() {
                        index.insert(key.clone(), entries.len());
                    }
                    entries.push((key, value));
                }
            }
        }
        Ok(Node::Map(entries))
    }
}

/// Re-encodes `json` (already known to be a valid top-level object with a repeated key
/// somewhere) through the ordered tree. Returns `Ok(false)` if serde_json rejected it
/// after all, which the caller reports from the streaming pass's error.
pub(crate) fn encode(
    json: &[u8],
    emit: &mut Emitter<'_>,
    max_depth: usize,
) -> Result<(), TreeError> {
    let mut floats = FloatTokens::new(json);
    let mut budget = FALLBACK_MAX_VALUES;
    let mut stopped = None;
    let builder = Builder {
        floats: &mut floats,
        depth: 1,
        max_depth,
        budget: &mut budget,
        stopped: &mut stopped,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let root = match builder
        .deserialize(&mut deserializer)
        .and_then(|root| deserializer.end().map(|()| root))
    {
        Ok(root) => root,
        Err(error) => {
            return Err(match stopped {
                Some(limit) => TreeError::Form(limit),
                None => TreeError::Json(error),
            })
        }
    };
    let Node::Map(entries) = root else {
        return Ok(());
    };
    for (key, value) in &entries {
        write_node(emit, 1, Key::Raw(key.as_bytes()), value).map_err(TreeError::Form)?;
    }
    Ok(())
}

/// A failure of the fallback pass.
pub(crate) enum TreeError {
    Form(FormError),
    Json(serde_json::Error),
}

fn write_node(
    emit: &mut Emitter<'_>,
    level: usize,
    key: Key<'_>,
    node: &Node,
) -> Result<(), FormError> {
    match node {
        Node::Null => Ok(()),
        Node::Bool(value) => emit.leaf(level, key, Scalar::Bool(*value)),
        Node::Number(number) => emit.leaf(level, key, Scalar::Number(*number)),
        Node::Str(value) => emit.leaf(level, key, Scalar::Str(value.as_bytes())),
        Node::List(items) => {
            let mark = emit.enter(level, key)?;
            for (index, item) in items.iter().enumerate() {
                write_node(emit, level + 1, Key::Index(index), item)?;
            }
            emit.leave(mark);
            Ok(())
        }
        Node::Map(entries) => {
            let mark = emit.enter(level, key)?;
            for (child_key, child) in entries {
                write_node(emit, level + 1, Key::Raw(child_key.as_bytes()), child)?;
            }
            emit.leave(mark);
            Ok(())
        }
    }
}
