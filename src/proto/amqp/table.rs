//! Field tables and field arrays (spec §4.2.5.5) with the type octets RabbitMQ really
//! uses: its errata (rabbit_binary_parser) differ from the spec's own table, e.g. `s` is a
//! signed short, `u` an unsigned short, `l` *and* `L` a signed 64-bit integer, `x` a byte
//! array, and there is no short-string type.
//!
//! Decoding validates a table once (every length, every type octet, the nesting depth)
//! and then hands out a borrowed [`FieldTable`] over its raw bytes: iterating it is
//! allocation-free and cannot fail, nested tables and arrays are borrowed views too, and
//! re-encoding writes the same bytes back. [`TableBuilder`] builds ferry's own tables
//! (client properties, queue arguments, message headers).
//!
//! # Layout
//! ```text
//! table: u32 byte length | (shortstr key | type octet | value)*
//! array: u32 byte length | (type octet | value)*
//! ```

use super::wire::{put_longstr, put_shortstr, Reader};
use super::AmqpError;

/// How deep tables and arrays may nest (the outermost table is depth 1). Bounds the
/// validator's recursion so a nesting bomb cannot exhaust the stack.
pub const MAX_TABLE_DEPTH: u32 = 16;

/// A validated field table borrowed from the input: its raw content bytes (without the
/// u32 length prefix). Equality compares those bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldTable<'b> {
    raw: &'b [u8],
}

/// A validated field array borrowed from the input, like [`FieldTable`] without keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldArray<'b> {
    raw: &'b [u8],
}

/// One value of a field table or array, borrowing strings and nested containers.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'b> {
    /// `t`: boolean (any non-zero octet is true, as RabbitMQ reads it).
    Bool(bool),
    /// `b`: signed 8-bit integer.
    I8(i8),
    /// `B`: unsigned 8-bit integer.
    U8(u8),
    /// `s`: signed 16-bit integer.
    I16(i16),
    /// `u`: unsigned 16-bit integer.
    U16(u16),
    /// `I`: signed 32-bit integer.
    I32(i32),
    /// `i`: unsigned 32-bit integer.
    U32(u32),
    /// `l` (and `L`, which RabbitMQ also reads as signed): signed 64-bit integer.
    /// Encoded as `l`.
    I64(i64),
    /// `f`: IEEE-754 single.
    F32(f32),
    /// `d`: IEEE-754 double.
    F64(f64),
    /// `D`: decimal, `value / 10^scale`.
    Decimal {
        /// Number of decimal digits after the point.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// `S`: long string (octets; usually UTF-8).
    LongStr(&'b [u8]),
    /// `T`: POSIX timestamp in seconds.
    Timestamp(u64),
    /// `F`: nested field table.
    Table(FieldTable<'b>),
    /// `A`: field array.
    Array(FieldArray<'b>),
    /// `x`: byte array (RabbitMQ extension).
    Bytes(&'b [u8]),
    /// `V`: no value.
    Void,
}

impl PartialEq for FieldValue<'_> {
    /// Floats compare by bit pattern, so a NaN equals itself and re-decoding a value
    /// always gives an equal one.
    fn eq(&self, other: &Self) -> bool {
        use FieldValue::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a == b,
            (I8(a), I8(b)) => a == b,
            (U8(a), U8(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (F32(a), F32(b)) => a.to_bits() == b.to_bits(),
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            (
                Decimal {
                    scale: s1,
                    value: v1,
                },
                Decimal {
                    scale: s2,
                    value: v2,
                },
            ) => s1 == s2 && v1 == v2,
            (LongStr(a), LongStr(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (Table(a), Table(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Void, Void) => true,
            _ => false,
        }
    }
}

impl<'b> FieldTable<'b> {
    /// Validates `raw` (a table's content, without its length prefix) and borrows it.
    pub fn parse(raw: &'b [u8]) -> Result<Self, AmqpError> {
        validate_table(raw, 1)?;
        Ok(FieldTable { raw })
    }

    /// The empty table.
    pub const EMPTY: FieldTable<'static> = FieldTable { raw: &[] };

    /// The raw content bytes (what follows the u32 length on the wire).
    pub fn as_bytes(&self) -> &'b [u8] {
        self.raw
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The entries in wire order, without allocating.
    pub fn iter(&self) -> TableIter<'b> {
        TableIter {
            reader: Reader::new(self.raw),
        }
    }

    /// The value of the first entry named `key`, if any (a linear scan: tables are small).
    pub fn get(&self, key: &[u8]) -> Option<FieldValue<'b>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Encodes the table (length prefix and content) onto `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmqpError> {
        put_longstr(out, self.raw)
    }
}

impl<'b> IntoIterator for FieldTable<'b> {
    type Item = (&'b [u8], FieldValue<'b>);
    type IntoIter = TableIter<'b>;
    fn into_iter(self) -> TableIter<'b> {
        self.iter()
    }
}

impl<'b> FieldArray<'b> {
    /// Validates `raw` (an array's content, without its length prefix) and borrows it.
    pub fn parse(raw: &'b [u8]) -> Result<Self, AmqpError> {
        validate_array(raw, 1)?;
        Ok(FieldArray { raw })
    }

    /// The raw content bytes.
    pub fn as_bytes(&self) -> &'b [u8] {
        self.raw
    }

    /// The values in wire order, without allocating.
    pub fn iter(&self) -> ArrayIter<'b> {
        ArrayIter {
            reader: Reader::new(self.raw),
        }
    }
}

/// Iterator over a validated table's `(key, value)` entries.
pub struct TableIter<'b> {
    reader: Reader<'b>,
}

impl<'b> Iterator for TableIter<'b> {
    type Item = (&'b [u8], FieldValue<'b>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        // The table was validated when it was built, so neither read can fail; should one
        // anyway, the iteration simply ends.
        let key = self.reader.shortstr().ok()?;
        let value = read_value(&mut self.reader, None).ok()?;
        Some((key, value))
    }
}

/// Iterator over a validated array's values.
pub struct ArrayIter<'b> {
    reader: Reader<'b>,
}

impl<'b> Iterator for ArrayIter<'b> {
    type Item = FieldValue<'b>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        read_value(&mut self.reader, None).ok()
    }
}

fn validate_table(raw: &[u8], depth: u32) -> Result<(), AmqpError> {
    if depth > MAX_TABLE_DEPTH {
        return Err(AmqpError::TableTooDeep);
    }
    let mut reader = Reader::new(raw);
    while !reader.is_empty() {
        reader.shortstr()?;
        read_value(&mut reader, Some(depth))?;
    }
    Ok(())
}

fn validate_array(raw: &[u8], depth: u32) -> Result<(), AmqpError> {
    if depth > MAX_TABLE_DEPTH {
        return Err(AmqpError::TableTooDeep);
    }
    let mut reader = Reader::new(raw);
    while !reader.is_empty() {
        read_value(&mut reader, Some(depth))?;
    }
    Ok(())
}

/// Reads one type octet and value. With `validate_depth = Some(d)` (the depth of the
/// container being read) nested containers are validated at depth `d + 1`; with `None`
/// they are trusted, because an enclosing table was validated already.
fn read_value<'b>(
    r: &mut Reader<'b>,
    validate_depth: Option<u32>,
) -> Result<FieldValue<'b>, AmqpError> {
    let value = match r.octet()? {
        b't' => FieldValue::Bool(r.octet()? != 0),
        b'b' => FieldValue::I8(i8::from_be_bytes([r.octet()?])),
        b'B' => FieldValue::U8(r.octet()?),
        b's' => FieldValue::I16(r.short()? as i16),
        b'u' => FieldValue::U16(r.short()?),
        b'I' => FieldValue::I32(r.long()? as i32),
        b'i' => FieldValue::U32(r.long()?),
        b'l' | b'L' => FieldValue::I64(r.longlong()? as i64),
        b'f' => FieldValue::F32(f32::from_bits(r.long()?)),
        b'd' => FieldValue::F64(f64::from_bits(r.longlong()?)),
        b'D' => FieldValue::Decimal {
            scale: r.octet()?,
            value: r.long()?,
        },
        b'S' => FieldValue::LongStr(r.longstr()?),
        b'T' => FieldValue::Timestamp(r.longlong()?),
        b'x' => FieldValue::Bytes(r.longstr()?),
        b'V' => FieldValue::Void,
        b'F' => {
            let len = r.long()?;
            let raw = r.bytes(len as usize, "table")?;
            if let Some(depth) = validate_depth {
                validate_table(raw, depth + 1)?;
            }
            FieldValue::Table(FieldTable { raw })
        }
        b'A' => {
            let len = r.long()?;
            let raw = r.bytes(len as usize, "array")?;
            if let Some(depth) = validate_depth {
                validate_array(raw, depth + 1)?;
            }
            FieldValue::Array(FieldArray { raw })
        }
        other => return Err(AmqpError::UnknownFieldType(other)),
    };
    Ok(value)
}

impl FieldValue<'_> {
    /// Appends the type octet and the value.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmqpError> {
        match *self {
            FieldValue::Bool(v) => out.extend_from_slice(&[b't', u8::from(v)]),
            FieldValue::I8(v) => out.extend_from_slice(&[b'b', v.to_be_bytes()[0]]),
            FieldValue::U8(v) => out.extend_from_slice(&[b'B', v]),
            FieldValue::I16(v) => put_tagged(out, b's', &v.to_be_bytes()),
            FieldValue::U16(v) => put_tagged(out, b'u', &v.to_be_bytes()),
            FieldValue::I32(v) => put_tagged(out, b'I', &v.to_be_bytes()),
            FieldValue::U32(v) => put_tagged(out, b'i', &v.to_be_bytes()),
            FieldValue::I64(v) => put_tagged(out, b'l', &v.to_be_bytes()),
            FieldValue::F32(v) => put_tagged(out, b'f', &v.to_bits().to_be_bytes()),
            FieldValue::F64(v) => put_tagged(out, b'd', &v.to_bits().to_be_bytes()),
            FieldValue::Decimal { scale, value } => {
                out.extend_from_slice(&[b'D', scale]);
                out.extend_from_slice(&value.to_be_bytes());
            }
            FieldValue::LongStr(v) => {
                out.push(b'S');
                put_longstr(out, v)?;
            }
            FieldValue::Timestamp(v) => put_tagged(out, b'T', &v.to_be_bytes()),
            FieldValue::Table(t) => {
                out.push(b'F');
                put_longstr(out, t.raw)?;
            }
            FieldValue::Array(a) => {
                out.push(b'A');
                put_longstr(out, a.raw)?;
            }
            FieldValue::Bytes(v) => {
                out.push(b'x');
                put_longstr(out, v)?;
            }
            FieldValue::Void => out.push(b'V'),
        }
        Ok(())
    }
}

fn put_tagged(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(bytes);
}

/// Builds a field table (or, with [`TableBuilder::push_value`], an array) for ferry's own
/// use: entries are encoded as they are inserted, and [`TableBuilder::as_table`] borrows
/// the result for a method argument, a property or an enclosing builder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableBuilder {
    raw: Vec<u8>,
}

impl TableBuilder {
    /// An empty table.
    pub fn new() -> Self {
        TableBuilder::default()
    }

    /// Appends an entry (keys are shortstrs: at most 255 bytes). Keys are not
    /// de-duplicated: the caller inserts each once.
    pub fn insert(&mut self, key: &[u8], value: FieldValue<'_>) -> Result<&mut Self, AmqpError> {
        let start = self.raw.len();
        let result = put_shortstr(&mut self.raw, key).and_then(|()| value.encode(&mut self.raw));
        if result.is_err() {
            self.raw.truncate(start);
        }
        result.map(|()| self)
    }

    /// Appends a bare value (building an array's content instead of a table's).
    pub fn push_value(&mut self, value: FieldValue<'_>) -> Result<&mut Self, AmqpError> {
        let start = self.raw.len();
        let result = value.encode(&mut self.raw);
        if result.is_err() {
            self.raw.truncate(start);
        }
        result.map(|()| self)
    }

    /// The table built so far. Nesting built tables deeper than [`MAX_TABLE_DEPTH`]
    /// produces a table peers (and this codec) refuse.
    pub fn as_table(&self) -> FieldTable<'_> {
        FieldTable { raw: &self.raw }
    }

    /// The values pushed so far, as an array.
    pub fn as_array(&self) -> FieldArray<'_> {
        FieldArray { raw: &self.raw }
    }

    /// Empties the builder, keeping its allocation.
    pub fn clear(&mut self) {
        self.raw.clear();
    }

    /// The `client_properties` table ferry sends in connection.start-ok: product,
    /// version, platform, an optional connection name, and the capabilities RabbitMQ
    /// needs to send basic.cancel, connection.blocked and publisher-confirm nacks.
    pub fn client_properties(
        product: &[u8],
        version: &[u8],
        connection_name: Option<&[u8]>,
    ) -> Result<Self, AmqpError> {
        let mut capabilities = TableBuilder::new();
        for capability in [
            &b"publisher_confirms"[..],
            b"consumer_cancel_notify",
            b"basic.nack",
            b"connection.blocked",
            b"exchange_exchange_bindings",
            b"authentication_failure_close",
            b"per_consumer_qos",
        ] {
            capabilities.insert(capability, FieldValue::Bool(true))?;
        }
        let mut props = TableBuilder::new();
        props
            .insert(b"product", FieldValue::LongStr(product))?
            .insert(b"version", FieldValue::LongStr(version))?
            .insert(b"platform", FieldValue::LongStr(b"Rust"))?
            .insert(b"capabilities", FieldValue::Table(capabilities.as_table()))?;
        if let Some(name) = connection_name {
            props.insert(b"connection_name", FieldValue::LongStr(name))?;
        }
        Ok(props)
    }
}
