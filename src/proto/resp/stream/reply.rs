//! Decoders for the replies of the stream commands ferry sends (`XREADGROUP`,
//! `XAUTOCLAIM`, `XCLAIM`, `XPENDING`, `XINFO GROUPS`, `XINFO CONSUMERS`), RESP2 and
//! RESP3 alike (`docs/PROTOCOLS.md`, "Redis Streams").
//!
//! Each decoder takes a [`Frame`] the RESP decoder already validated and checks its shape
//! once, all of it, before handing out a view: a lying length, an odd number of fields,
//! a field that is not a bulk string or an id that is not `ms-seq` is a
//! [`StreamReplyError`], never a half-read reply. The views ([`EntryList`], [`Fields`],
//! [`IdList`], [`PendingList`], [`ConsumerList`]) borrow from the read buffer and iterate
//! without allocating: reading a batch of entries copies nothing until the caller keeps
//! what must outlive the buffer.

use std::fmt;

use super::super::frame::{Aggregate, AggregateKind, Elements, Frame};

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl EntryId {
    /// `0-0`: the start of a stream, and the end of an `XAUTOCLAIM` scan.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// Parses `ms-seq` (both parts decimal, no sign, no spaces). A bare `ms` is refused:
    /// Redis always answers with both parts.
    pub fn parse(text: &[u8]) -> Option<EntryId> {
        let dash = text.iter().position(|&b| b == b'-')?;
        let (ms, rest) = text.split_at(dash);
        let seq = rest.get(1..)?;
        Some(EntryId {
            ms: parse_u64(ms)?,
            seq: parse_u64(seq)?,
        })
    }

    /// Appends the id as text (what Redis commands take).
    pub fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}-{}", self.ms, self.seq);
    }

    /// The id as text.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        self.write(&mut out);
        out
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A decimal `u64` with 1–20 digits and nothing else.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Why a reply does not have the shape its command answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamReplyError {
    /// The reply (or a part of it) is not of the RESP type expected.
    UnexpectedType {
        /// Which reply part: `XREADGROUP`, `entry`, `XPENDING` …
        part: &'static str,
        /// The frame type found.
        found: &'static str,
    },
    /// An aggregate with the wrong number of elements.
    WrongLength {
        /// Which reply part.
        part: &'static str,
        /// How many elements it had.
        found: usize,
    },
    /// An entry id that is not `ms-seq`.
    BadEntryId,
    /// An entry whose field list has an odd number of elements.
    OddFieldCount,
    /// A field name or value that is not a bulk string.
    FieldNotString,
    /// A count or duration that is not a non-negative integer.
    BadNumber,
    /// `XREADGROUP` answered for a stream that was not asked for.
    OtherStream,
}

impl fmt::Display for StreamReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamReplyError::UnexpectedType { part, found } => {
                write!(f, "stream reply: {part} is a {found}")
            }
            StreamReplyError::WrongLength { part, found } => {
                write!(f, "stream reply: {part} has {found} elements")
            }
            StreamReplyError::BadEntryId => f.write_str("stream reply: entry id is not ms-seq"),
            StreamReplyError::OddFieldCount => {
                f.write_str("stream reply: an entry has an odd number of fields")
            }
            StreamReplyError::FieldNotString => {
                f.write_str("stream reply: a field is not a bulk string")
            }
            StreamReplyError::BadNumber => {
                f.write_str("stream reply: a count is not a non-negative integer")
            }
            StreamReplyError::OtherStream => {
                f.write_str("stream reply: entries of a stream that was not read")
            }
        }
    }
}

impl std::error::Error for StreamReplyError {}

type Result<T> = std::result::Result<T, StreamReplyError>;

fn array<'b>(frame: &Frame<'b>, part: &'static str) -> Result<Aggregate<'b>> {
    match frame {
        Frame::Array(a) | Frame::Set(a) => Ok(*a),
        other => Err(StreamReplyError::UnexpectedType {
            part,
            found: other.kind_name(),
        }),
    }
}

fn id_of(frame: &Frame<'_>) -> Result<EntryId> {
    match frame {
        Frame::BulkString(text) | Frame::SimpleString(text) => {
            EntryId::parse(text).ok_or(StreamReplyError::BadEntryId)
        }
        _ => Err(StreamReplyError::BadEntryId),
    }
}

fn number(frame: &Frame<'_>) -> Result<u64> {
    match frame {
        Frame::Integer(n) => u64::try_from(*n).map_err(|_| StreamReplyError::BadNumber),
        // XPENDING's summary sends per-consumer counts as bulk strings.
        Frame::BulkString(text) | Frame::SimpleString(text) => {
            parse_u64(text).ok_or(StreamReplyError::BadNumber)
        }
        _ => Err(StreamReplyError::BadNumber),
    }
}

fn optional_number(frame: &Frame<'_>) -> Result<Option<u64>> {
    if frame.is_null() {
        Ok(None)
    } else {
        number(frame).map(Some)
    }
}

fn bytes<'b>(frame: &Frame<'b>, part: &'static str) -> Result<&'b [u8]> {
    match frame {
        Frame::BulkString(text) | Frame::SimpleString(text) => Ok(text),
        other => Err(StreamReplyError::UnexpectedType {
            part,
            found: other.kind_name(),
        }),
    }
}

/// One entry's fields: names and values, in the order they were added.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'b> {
    list: Aggregate<'b>,
}

impl<'b> Fields<'b> {
    fn validate(list: Aggregate<'b>) -> Result<Fields<'b>> {
        if list.element_count() % 2 != 0 {
            return Err(StreamReplyError::OddFieldCount);
        }
        if !list.iter().all(|f| matches!(f, Frame::BulkString(_))) {
            return Err(StreamReplyError::FieldNotString);
        }
        Ok(Fields { list })
    }

    /// Fields kept as the raw RESP bulk strings they arrived as (see [`Fields::raw`]),
    /// `count` elements (names and values). Only for bytes a [`Fields`] handed out.
    pub fn from_raw(raw: &'b [u8], count: usize) -> Fields<'b> {
        Fields {
            list: Aggregate::new(AggregateKind::Array, count, count, raw),
        }
    }

    /// How many (name, value) pairs.
    pub fn len(&self) -> usize {
        self.list.element_count() / 2
    }

    /// True without fields.
    pub fn is_empty(&self) -> bool {
        self.list.element_count() == 0
    }

    /// Names and values as RESP bulk strings, exactly as received: they can be copied
    /// into a command (`XADD` of a dead-letter copy) as they are.
    pub fn raw(&self) -> &'b [u8] {
        self.list.as_bytes()
    }

    /// Names and values, as many elements as [`Fields::raw`] holds.
    pub fn element_count(&self) -> usize {
        self.list.element_count()
    }

    /// The pairs in order.
    pub fn iter(&self) -> FieldIter<'b> {
        FieldIter {
            inner: self.list.iter(),
        }
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&'b [u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Iterator over (name, value) pairs.
#[derive(Debug, Clone)]
pub struct FieldIter<'b> {
    inner: Elements<'b>,
}

impl<'b> Iterator for FieldIter<'b> {
    type Item = (&'b [u8], &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let name = self.inner.next()?.as_bytes()?;
        let value = self.inner.next()?.as_bytes()?;
        Some((name, value))
    }
}

/// One entry of a reply: its id, and its fields (`None`: the entry was deleted or
/// trimmed while pending; Redis answers `[id, nil]`).
#[derive(Debug, Clone, Copy)]
pub struct StreamEntry<'b> {
    /// The entry id.
    pub id: EntryId,
    /// Its fields, unless deleted.
    pub fields: Option<Fields<'b>>,
}

fn entry<'b>(frame: &Frame<'b>) -> Result<StreamEntry<'b>> {
    let pair = array(frame, "entry")?;
    if pair.element_count() != 2 {
        return Err(StreamReplyError::WrongLength {
            part: "entry",
            found: pair.element_count(),
        });
    }
    let mut items = pair.iter();
    let (Some(id), Some(fields)) = (items.next(), items.next()) else {
        return Err(StreamReplyError::WrongLength {
            part: "entry",
            found: 0,
        });
    };
    let id = id_of(&id)?;
    let fields = if fields.is_null() {
        None
    } else {
        Some(Fields::validate(array(&fields, "entry fields")?)?)
    };
    Ok(StreamEntry { id, fields })
}

/// A validated list of entries.
#[derive(Debug, Clone, Copy)]
pub struct EntryList<'b> {
    list: Aggregate<'b>,
}

impl<'b> EntryList<'b> {
    fn validate(frame: &Frame<'b>, part: &'static str) -> Result<EntryList<'b>> {
        let list = array(frame, part)?;
        for item in list.iter() {
            entry(&item)?;
        }
        Ok(EntryList { list })
    }

    /// An empty list.
    pub fn empty() -> EntryList<'b> {
        EntryList {
            list: Aggregate::new(AggregateKind::Array, 0, 0, b""),
        }
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.list.element_count()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.list.element_count() == 0
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = StreamEntry<'b>> + 'b {
        // Validated: every element is an entry.
        self.list.iter().filter_map(|f| entry(&f).ok())
    }
}

/// `XREADGROUP … STREAMS <stream> <id>` for one stream: its entries, or `None` when a
/// `BLOCK` timed out (or nothing new was there). RESP2 answers
/// `[[stream, [entries]]]`, RESP3 `{stream: [entries]}`.
pub fn xreadgroup<'b>(frame: &Frame<'b>, stream: &[u8]) -> Result<Option<EntryList<'b>>> {
    let (key, entries) = match frame {
        f if f.is_null() => return Ok(None),
        Frame::Map(map) => {
            if map.len() != 1 {
                return Err(StreamReplyError::WrongLength {
                    part: "XREADGROUP",
                    found: map.len(),
                });
            }
            let mut pairs = map.pairs();
            pairs.next().ok_or(StreamReplyError::WrongLength {
                part: "XREADGROUP",
                found: 0,
            })?
        }
        Frame::Array(outer) => {
            if outer.element_count() != 1 {
                return Err(StreamReplyError::WrongLength {
                    part: "XREADGROUP",
                    found: outer.element_count(),
                });
            }
            let inner = outer.iter().next().ok_or(StreamReplyError::WrongLength {
                part: "XREADGROUP",
                found: 0,
            })?;
            let pair = array(&inner, "XREADGROUP stream")?;
            if pair.element_count() != 2 {
                return Err(StreamReplyError::WrongLength {
                    part: "XREADGROUP stream",
                    found: pair.element_count(),
                });
            }
            let mut items = pair.iter();
            match (items.next(), items.next()) {
                (Some(key), Some(entries)) => (key, entries),
                _ => {
                    return Err(StreamReplyError::WrongLength {
                        part: "XREADGROUP stream",
                        found: 0,
                    })
                }
            }
        }
        other => {
            return Err(StreamReplyError::UnexpectedType {
                part: "XREADGROUP",
                found: other.kind_name(),
            })
        }
    };
    if bytes(&key, "XREADGROUP stream name")? != stream {
        return Err(StreamReplyError::OtherStream);
    }
    EntryList::validate(&entries, "XREADGROUP entries").map(Some)
}

/// `XCLAIM` (without `JUSTID`): the entries now ours.
pub fn xclaim<'b>(frame: &Frame<'b>) -> Result<EntryList<'b>> {
    EntryList::validate(frame, "XCLAIM")
}

/// A validated list of entry ids.
#[derive(Debug, Clone, Copy)]
pub struct IdList<'b> {
    list: Aggregate<'b>,
}

impl<'b> IdList<'b> {
    /// How many ids.
    pub fn len(&self) -> usize {
        self.list.element_count()
    }

    /// True without ids.
    pub fn is_empty(&self) -> bool {
        self.list.element_count() == 0
    }

    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = EntryId> + 'b {
        self.list.iter().filter_map(|f| id_of(&f).ok())
    }
}

/// What `XAUTOCLAIM` answered.
#[derive(Debug, Clone, Copy)]
pub struct AutoClaim<'b> {
    /// Where the next call starts; `0-0` when the scan is complete.
    pub cursor: EntryId,
    /// Entries claimed (their delivery counters were raised).
    pub entries: EntryList<'b>,
    /// Ids of pending entries that no longer exist, removed from the pending list by
    /// Redis (7.0 and later; empty from 6.2, which answers two elements).
    pub deleted: IdList<'b>,
}

/// `XAUTOCLAIM`: `[cursor, entries, deleted ids]` (Redis 7), `[cursor, entries]` (6.2).
pub fn xautoclaim<'b>(frame: &Frame<'b>) -> Result<AutoClaim<'b>> {
    let reply = array(frame, "XAUTOCLAIM")?;
    let count = reply.element_count();
    if count != 2 && count != 3 {
        return Err(StreamReplyError::WrongLength {
            part: "XAUTOCLAIM",
            found: count,
        });
    }
    let mut items = reply.iter();
    let cursor = id_of(&items.next().ok_or(StreamReplyError::BadEntryId)?)?;
    let entries = EntryList::validate(
        &items.next().ok_or(StreamReplyError::WrongLength {
            part: "XAUTOCLAIM",
            found: 1,
        })?,
        "XAUTOCLAIM entries",
    )?;
    let deleted = match items.next() {
        Some(ids) => {
            let list = array(&ids, "XAUTOCLAIM deleted ids")?;
            for id in list.iter() {
                id_of(&id)?;
            }
            IdList { list }
        }
        None => IdList {
            list: Aggregate::new(AggregateKind::Array, 0, 0, b""),
        },
    };
    Ok(AutoClaim {
        cursor,
        entries,
        deleted,
    })
}

/// One line of `XPENDING <stream> <group> <start> <end> <count> [consumer]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEntry<'b> {
    /// The entry id.
    pub id: EntryId,
    /// The consumer that holds it.
    pub consumer: &'b [u8],
    /// Milliseconds since it was last delivered.
    pub idle_ms: u64,
    /// How many times it was delivered (`XREADGROUP`, `XCLAIM`, `XAUTOCLAIM`).
    pub deliveries: u64,
}

fn pending_entry<'b>(frame: &Frame<'b>) -> Result<PendingEntry<'b>> {
    let line = array(frame, "XPENDING entry")?;
    if line.element_count() != 4 {
        return Err(StreamReplyError::WrongLength {
            part: "XPENDING entry",
            found: line.element_count(),
        });
    }
    let mut items = line.iter();
    let mut next = || {
        items.next().ok_or(StreamReplyError::WrongLength {
            part: "XPENDING entry",
            found: 0,
        })
    };
    Ok(PendingEntry {
        id: id_of(&next()?)?,
        consumer: bytes(&next()?, "XPENDING consumer")?,
        idle_ms: number(&next()?)?,
        deliveries: number(&next()?)?,
    })
}

/// A validated extended `XPENDING` reply.
#[derive(Debug, Clone, Copy)]
pub struct PendingList<'b> {
    list: Aggregate<'b>,
}

impl<'b> PendingList<'b> {
    /// How many lines.
    pub fn len(&self) -> usize {
        self.list.element_count()
    }

    /// True without lines.
    pub fn is_empty(&self) -> bool {
        self.list.element_count() == 0
    }

    /// The lines in order.
    pub fn iter(&self) -> impl Iterator<Item = PendingEntry<'b>> + 'b {
        self.list.iter().filter_map(|f| pending_entry(&f).ok())
    }
}

/// The extended form of `XPENDING` (with a range and a count).
pub fn xpending<'b>(frame: &Frame<'b>) -> Result<PendingList<'b>> {
    let list = array(frame, "XPENDING")?;
    for line in list.iter() {
        pending_entry(&line)?;
    }
    Ok(PendingList { list })
}

/// The summary form of `XPENDING <stream> <group>`.
#[derive(Debug, Clone, Copy)]
pub struct PendingSummary<'b> {
    /// Entries pending in the group.
    pub count: u64,
    /// The smallest and largest pending ids (absent when nothing is pending).
    pub range: Option<(EntryId, EntryId)>,
    consumers: Option<Aggregate<'b>>,
}

impl<'b> PendingSummary<'b> {
    /// Each consumer holding entries, with how many.
    pub fn consumers(&self) -> impl Iterator<Item = (&'b [u8], u64)> + 'b {
        self.consumers
            .into_iter()
            .flat_map(|list| list.iter())
            .filter_map(|f| consumer_count(&f).ok())
    }

    /// How many entries `consumer` holds.
    pub fn pending_of(&self, consumer: &[u8]) -> u64 {
        self.consumers()
            .find(|(name, _)| *name == consumer)
            .map_or(0, |(_, n)| n)
    }
}

fn consumer_count<'b>(frame: &Frame<'b>) -> Result<(&'b [u8], u64)> {
    let pair = array(frame, "XPENDING consumer")?;
    if pair.element_count() != 2 {
        return Err(StreamReplyError::WrongLength {
            part: "XPENDING consumer",
            found: pair.element_count(),
        });
    }
    let mut items = pair.iter();
    match (items.next(), items.next()) {
        (Some(name), Some(count)) => Ok((bytes(&name, "XPENDING consumer")?, number(&count)?)),
        _ => Err(StreamReplyError::WrongLength {
            part: "XPENDING consumer",
            found: 0,
        }),
    }
}

/// `XPENDING <stream> <group>`: `[count, min|nil, max|nil, [[consumer, count]…]|nil]`.
pub fn xpending_summary<'b>(frame: &Frame<'b>) -> Result<PendingSummary<'b>> {
    let reply = array(frame, "XPENDING summary")?;
    if reply.element_count() != 4 {
        return Err(StreamReplyError::WrongLength {
            part: "XPENDING summary",
            found: reply.element_count(),
        });
    }
    let items: [Frame<'b>; 4] = {
        let mut it = reply.iter();
        let mut take = || {
            it.next().ok_or(StreamReplyError::WrongLength {
                part: "XPENDING summary",
                found: 0,
            })
        };
        [take()?, take()?, take()?, take()?]
    };
    let [count, min, max, consumers] = items;
    let count = number(&count)?;
    let range = if min.is_null() || max.is_null() {
        None
    } else {
        Some((id_of(&min)?, id_of(&max)?))
    };
    let consumers = if consumers.is_null() {
        None
    } else {
        let list = array(&consumers, "XPENDING consumers")?;
        for item in list.iter() {
            consumer_count(&item)?;
        }
        Some(list)
    };
    Ok(PendingSummary {
        count,
        range,
        consumers,
    })
}

/// A group as `XINFO GROUPS` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo<'b> {
    /// The group's name.
    pub name: &'b [u8],
    /// Consumers it has.
    pub consumers: u64,
    /// Entries pending (delivered, not acked).
    pub pending: u64,
    /// The last entry delivered to it.
    pub last_delivered: Option<EntryId>,
    /// Entries not yet delivered to it (Redis 7; absent when Redis cannot tell).
    pub lag: Option<u64>,
}

/// The (key, value) pairs of a map (RESP3) or a flat array (RESP2).
fn keyed<'b>(frame: &Frame<'b>, part: &'static str) -> Result<Aggregate<'b>> {
    match frame {
        Frame::Map(a) => Ok(*a),
        Frame::Array(a) if a.element_count() % 2 == 0 => Ok(*a),
        Frame::Array(a) => Err(StreamReplyError::WrongLength {
            part,
            found: a.element_count(),
        }),
        other => Err(StreamReplyError::UnexpectedType {
            part,
            found: other.kind_name(),
        }),
    }
}

fn group_info<'b>(frame: &Frame<'b>) -> Result<GroupInfo<'b>> {
    let mut info = GroupInfo {
        name: b"",
        consumers: 0,
        pending: 0,
        last_delivered: None,
        lag: None,
    };
    for (key, value) in keyed(frame, "XINFO GROUPS group")?.pairs() {
        match key.as_bytes() {
            Some(b"name") => info.name = bytes(&value, "XINFO GROUPS name")?,
            Some(b"consumers") => info.consumers = number(&value)?,
            Some(b"pending") => info.pending = number(&value)?,
            Some(b"last-delivered-id") => info.last_delivered = Some(id_of(&value)?),
            Some(b"lag") => info.lag = optional_number(&value)?,
            _ => {}
        }
    }
    Ok(info)
}

/// `XINFO GROUPS <stream>`: the group named `group`, if the stream has it.
pub fn xinfo_groups<'b>(frame: &Frame<'b>, group: &[u8]) -> Result<Option<GroupInfo<'b>>> {
    let list = array(frame, "XINFO GROUPS")?;
    let mut found = None;
    for item in list.iter() {
        let info = group_info(&item)?;
        if info.name == group && found.is_none() {
            found = Some(info);
        }
    }
    Ok(found)
}

/// A consumer as `XINFO CONSUMERS` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerInfo<'b> {
    /// Its name.
    pub name: &'b [u8],
    /// Entries it holds.
    pub pending: u64,
    /// Milliseconds since it last read (or was otherwise seen).
    pub idle_ms: u64,
}

fn consumer_info<'b>(frame: &Frame<'b>) -> Result<ConsumerInfo<'b>> {
    let mut info = ConsumerInfo {
        name: b"",
        pending: 0,
        idle_ms: 0,
    };
    for (key, value) in keyed(frame, "XINFO CONSUMERS consumer")?.pairs() {
        match key.as_bytes() {
            Some(b"name") => info.name = bytes(&value, "XINFO CONSUMERS name")?,
            Some(b"pending") => info.pending = number(&value)?,
            Some(b"idle") => info.idle_ms = number(&value)?,
            _ => {}
        }
    }
    Ok(info)
}

/// A validated `XINFO CONSUMERS` reply.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerList<'b> {
    list: Aggregate<'b>,
}

impl<'b> ConsumerList<'b> {
    /// The consumers in order.
    pub fn iter(&self) -> impl Iterator<Item = ConsumerInfo<'b>> + 'b {
        self.list.iter().filter_map(|f| consumer_info(&f).ok())
    }
}

/// `XINFO CONSUMERS <stream> <group>`.
pub fn xinfo_consumers<'b>(frame: &Frame<'b>) -> Result<ConsumerList<'b>> {
    let list = array(frame, "XINFO CONSUMERS")?;
    for item in list.iter() {
        consumer_info(&item)?;
    }
    Ok(ConsumerList { list })
}

#[cfg(test)]
mod tests;
