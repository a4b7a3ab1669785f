//! Primitive AMQP data types on the wire (spec §4.2.5): octet, short, long, longlong,
//! packed bits, shortstr, longstr and field tables, read from a borrowed slice and
//! written to a caller's `Vec<u8>`.
//!
//! Consecutive `bit` arguments share one octet, least significant bit first (§4.2.5.2);
//! both [`Reader`] and [`Writer`] keep that packing state, and any non-bit value ends a
//! run of bits, so method definitions can list their arguments in spec order.

use super::table::FieldTable;
use super::AmqpError;

/// Reads primitive values from the front of a borrowed slice, never past its end.
pub(crate) struct Reader<'b> {
    rest: &'b [u8],
    /// The octet holding the current run of bits and the index of the next bit in it;
    /// `bit_index == 8` means no run is open.
    bits: u8,
    bit_index: u8,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(buf: &'b [u8]) -> Self {
        Reader {
            rest: buf,
            bits: 0,
            bit_index: 8,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], AmqpError> {
        self.bit_index = 8;
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(AmqpError::Truncated(what))?;
        self.rest = rest;
        Ok(*head)
    }

    pub(crate) fn bytes(&mut self, len: usize, what: &'static str) -> Result<&'b [u8], AmqpError> {
        self.bit_index = 8;
        let (head, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(AmqpError::Truncated(what))?;
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn octet(&mut self) -> Result<u8, AmqpError> {
        Ok(u8::from_be_bytes(self.take::<1>("octet")?))
    }

    pub(crate) fn short(&mut self) -> Result<u16, AmqpError> {
        Ok(u16::from_be_bytes(self.take::<2>("short")?))
    }

    pub(crate) fn long(&mut self) -> Result<u32, AmqpError> {
        Ok(u32::from_be_bytes(self.take::<4>("long")?))
    }

    pub(crate) fn longlong(&mut self) -> Result<u64, AmqpError> {
        Ok(u64::from_be_bytes(self.take::<8>("longlong")?))
    }

    pub(crate) fn bit(&mut self) -> Result<bool, AmqpError> {
        if self.bit_index >= 8 {
            let [octet] = self.take::<1>("bit")?;
            self.bits = octet;
            self.bit_index = 0;
        }
        let value = self.bits & (1 << self.bit_index) != 0;
        self.bit_index += 1;
        Ok(value)
    }

    pub(crate) fn shortstr(&mut self) -> Result<&'b [u8], AmqpError> {
        let [len] = self.take::<1>("shortstr")?;
        self.bytes(usize::from(len), "shortstr")
    }

    pub(crate) fn longstr(&mut self) -> Result<&'b [u8], AmqpError> {
        let len = u32::from_be_bytes(self.take::<4>("longstr")?);
        // The length is checked against what is actually there, never used to allocate.
        self.bytes(len as usize, "longstr")
    }

    pub(crate) fn table(&mut self) -> Result<FieldTable<'b>, AmqpError> {
        let len = u32::from_be_bytes(self.take::<4>("table")?);
        let raw = self.bytes(len as usize, "table")?;
        FieldTable::parse(raw)
    }
}

/// Appends primitive values to a caller's buffer, packing consecutive bits.
pub(crate) struct Writer<'o> {
    pub(crate) out: &'o mut Vec<u8>,
    /// Position of the octet holding the current run of bits and the next bit index;
    /// `bit_index == 8` means no run is open.
    bit_pos: usize,
    bit_index: u8,
}

impl<'o> Writer<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        Writer {
            out,
            bit_pos: 0,
            bit_index: 8,
        }
    }

    pub(crate) fn octet(&mut self, v: u8) -> Result<(), AmqpError> {
        self.bit_index = 8;
        self.out.push(v);
        Ok(())
    }

    pub(crate) fn short(&mut self, v: u16) -> Result<(), AmqpError> {
        self.bit_index = 8;
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    pub(crate) fn long(&mut self, v: u32) -> Result<(), AmqpError> {
        self.bit_index = 8;
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    pub(crate) fn longlong(&mut self, v: u64) -> Result<(), AmqpError> {
        self.bit_index = 8;
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    pub(crate) fn bit(&mut self, v: bool) -> Result<(), AmqpError> {
        if self.bit_index >= 8 {
            self.bit_pos = self.out.len();
            self.out.push(0);
            self.bit_index = 0;
        }
        if v {
            if let Some(octet) = self.out.get_mut(self.bit_pos) {
                *octet |= 1 << self.bit_index;
            }
        }
        self.bit_index += 1;
        Ok(())
    }

    pub(crate) fn shortstr(&mut self, v: &[u8]) -> Result<(), AmqpError> {
        self.bit_index = 8;
        put_shortstr(self.out, v)
    }

    pub(crate) fn longstr(&mut self, v: &[u8]) -> Result<(), AmqpError> {
        self.bit_index = 8;
        put_longstr(self.out, v)
    }

    pub(crate) fn table(&mut self, v: FieldTable<'_>) -> Result<(), AmqpError> {
        self.bit_index = 8;
        put_longstr(self.out, v.as_bytes())
    }
}

/// Appends a shortstr: one length octet, then the bytes.
pub(crate) fn put_shortstr(out: &mut Vec<u8>, v: &[u8]) -> Result<(), AmqpError> {
    let len = u8::try_from(v.len()).map_err(|_| AmqpError::ShortStrTooLong(v.len()))?;
    out.push(len);
    out.extend_from_slice(v);
    Ok(())
}

/// Appends a longstr (also the layout of tables and arrays): a u32 length, then the bytes.
pub(crate) fn put_longstr(out: &mut Vec<u8>, v: &[u8]) -> Result<(), AmqpError> {
    let len = u32::try_from(v.len()).map_err(|_| AmqpError::LongStrTooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}
