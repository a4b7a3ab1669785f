//! The frame envelope (spec §4.2.3) and the protocol header (§4.2.2).
//!
//! # Layout
//! ```text
//! type u8 | channel u16 | size u32 | payload (size octets) | 0xCE
//! ```
//! Types: method 1, header 2, body 3, heartbeat 8. RabbitMQ (rabbit_reader) refuses a
//! frame whose payload exceeds `frame_max - 8`, i.e. `frame_max` bounds the *whole* frame
//! including the 7 header octets and the end octet; the decoder applies the same rule as
//! soon as the 7-octet header is in, before waiting for the payload.
//!
//! A server that does not accept our protocol header answers with its own header and
//! closes; [`decode_frame`] recognises those 8 bytes (`"AMQP"` can never start a frame,
//! `'A'` is no frame type) and reports the version the server wants.

use super::method::Method;
use super::properties::ContentHeader;
use super::AmqpError;
use crate::proto::Status;

/// The protocol header a client sends first: `AMQP`, 0, 0-9-1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// Frame type of a method frame.
pub const FRAME_METHOD: u8 = 1;
/// Frame type of a content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Frame type of a content body frame.
pub const FRAME_BODY: u8 = 3;
/// Frame type of a heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Octets of envelope around a payload: 7 of header, 1 of frame end.
pub const FRAME_OVERHEAD: u32 = 8;
/// The limit that applies before connection.tune (spec §4.2.3: `frame-min-size`), and
/// the smallest frame_max the spec lets a peer negotiate. RabbitMQ 4.1+ refuses a tune-ok
/// below 8192: propose 131072 (`docs/PROTOCOLS.md` "AMQP 0-9-1 and RabbitMQ").
pub const FRAME_MIN_SIZE: u32 = 4096;

/// `frame_max` as a bound: in connection.tune 0 means "no limit" (rabbit_reader checks
/// `FrameMax /= 0` before comparing), so 0 bounds nothing below `u32::MAX`.
pub fn effective_frame_max(frame_max: u32) -> u32 {
    if frame_max == 0 {
        u32::MAX
    } else {
        frame_max
    }
}

const HEADER_LEN: usize = 7;

/// What is known of a content header whose properties failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadContentHeader {
    /// Class of the content-bearing method.
    pub class_id: u16,
    /// Body size announced: this many body octets follow and must be skipped.
    pub body_size: u64,
    /// Why the properties could not be decoded.
    pub error: AmqpError,
}

/// One decoded frame; the payload borrows from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'b> {
    /// Channel number (0 for the connection itself).
    pub channel: u16,
    /// What the frame carries.
    pub payload: FramePayload<'b>,
}

/// A frame's payload by frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePayload<'b> {
    /// A method frame's raw payload; decode it with [`Method::decode`] (kept raw so a
    /// caller that only routes frames pays nothing for methods it forwards).
    Method(&'b [u8]),
    /// A content header, decoded.
    Header(ContentHeader<'b>),
    /// A content header whose envelope and body size are sound but whose properties are
    /// not (e.g. a publisher's headers table nested deeper than we parse). The stream is
    /// still in step: this one message is refused, its body skipped
    /// ([`ContentAssembler::discard`](super::ContentAssembler::discard)), the connection kept —
    /// otherwise one poisoned message would be redelivered and kill every reconnect.
    BadHeader(BadContentHeader),
    /// A slice of message body.
    Body(&'b [u8]),
    /// A heartbeat (channel 0, empty payload).
    Heartbeat,
}

/// Decodes one frame from the front of `buf`, whose total size (payload + 8) must not
/// exceed `frame_max` (use [`FRAME_MIN_SIZE`] before tuning, the negotiated value after).
/// Answers [`Status::Partial`] when `buf` ends before the frame does; an oversized size
/// field is an error as soon as the 7-octet header is readable.
pub fn decode_frame(buf: &[u8], frame_max: u32) -> Result<Status<Frame<'_>>, AmqpError> {
    let Some(&frame_type) = buf.first() else {
        return Ok(Status::Partial);
    };
    match frame_type {
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT => {}
        b'A' => return decode_server_protocol_header(buf),
        other => return Err(AmqpError::UnknownFrameType(other)),
    }
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Status::Partial);
    };
    let channel = u16::from_be_bytes([header[1], header[2]]);
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if u64::from(size) + u64::from(FRAME_OVERHEAD) > u64::from(effective_frame_max(frame_max)) {
        return Err(AmqpError::FrameTooLarge { size, frame_max });
    }
    if frame_type == FRAME_HEARTBEAT {
        if channel != 0 {
            return Err(AmqpError::HeartbeatOnChannel(channel));
        }
        if size != 0 {
            return Err(AmqpError::HeartbeatWithPayload(size));
        }
    }
    // size + 8 <= frame_max <= u32::MAX, so this cannot overflow usize on any target
    // with at least 32-bit pointers; checked anyway.
    let payload_end = HEADER_LEN
        .checked_add(size as usize)
        .ok_or(AmqpError::FrameTooLarge { size, frame_max })?;
    let Some((&end, payload)) = buf
        .get(HEADER_LEN..=payload_end)
        .and_then(|s| s.split_last())
    else {
        return Ok(Status::Partial);
    };
    if end != FRAME_END {
        return Err(AmqpError::BadFrameEnd(end));
    }
    let payload = match frame_type {
        FRAME_METHOD => FramePayload::Method(payload),
        FRAME_HEADER => match ContentHeader::decode(payload) {
            Ok(header) => FramePayload::Header(header),
            Err(error) => FramePayload::BadHeader(bad_content_header(payload, error)?),
        },
        FRAME_BODY => FramePayload::Body(payload),
        _ => FramePayload::Heartbeat,
    };
    Ok(Status::Complete(
        Frame { channel, payload },
        payload_end + 1,
    ))
}

/// Salvages class and body size from a header whose properties did not decode; without
/// them the body frames that follow could not be told apart, so that stays fatal.
fn bad_content_header(payload: &[u8], error: AmqpError) -> Result<BadContentHeader, AmqpError> {
    let Some(fixed) = payload.first_chunk::<12>() else {
        return Err(error);
    };
    let [c0, c1, _, _, b0, b1, b2, b3, b4, b5, b6, b7] = *fixed;
    Ok(BadContentHeader {
        class_id: u16::from_be_bytes([c0, c1]),
        body_size: u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
        error,
    })
}

/// The server's own protocol header, sent when it refuses ours (spec §4.2.2).
fn decode_server_protocol_header(buf: &[u8]) -> Result<Status<Frame<'_>>, AmqpError> {
    // Partial only while the bytes so far can still be "AMQP".
    let seen = buf.len().min(4);
    if buf.get(..seen) != b"AMQP".get(..seen) {
        return Err(AmqpError::UnknownFrameType(b'A'));
    }
    match buf.first_chunk::<8>() {
        None => Ok(Status::Partial),
        Some(&[_, _, _, _, protocol_id, major, minor, revision]) => {
            Err(AmqpError::ProtocolVersionMismatch {
                protocol_id,
                major,
                minor,
                revision,
            })
        }
    }
}

/// Appends the protocol header the client opens a connection with.
pub fn encode_protocol_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&PROTOCOL_HEADER);
}

/// Writes a frame whose payload `write_payload` appends in place: the size is patched in
/// afterwards, so no intermediate buffer is needed. On error `out` is restored.
fn encode_frame(
    out: &mut Vec<u8>,
    frame_type: u8,
    channel: u16,
    frame_max: u32,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), AmqpError>,
) -> Result<(), AmqpError> {
    let start = out.len();
    out.push(frame_type);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let result = write_payload(out).and_then(|()| {
        let len = out.len() - start - HEADER_LEN;
        let size = u32::try_from(len).map_err(|_| AmqpError::FrameTooLarge {
            size: u32::MAX,
            frame_max,
        })?;
        if u64::from(size) + u64::from(FRAME_OVERHEAD) > u64::from(effective_frame_max(frame_max)) {
            return Err(AmqpError::FrameTooLarge { size, frame_max });
        }
        if let Some(field) = out.get_mut(start + 3..start + HEADER_LEN) {
            field.copy_from_slice(&size.to_be_bytes());
        }
        out.push(FRAME_END);
        Ok(())
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends a method frame; refuses (leaving `out` unchanged) one larger than `frame_max`.
pub fn encode_method_frame(
    out: &mut Vec<u8>,
    channel: u16,
    method: &Method<'_>,
    frame_max: u32,
) -> Result<(), AmqpError> {
    encode_frame(out, FRAME_METHOD, channel, frame_max, |out| {
        method.encode(out)
    })
}

/// Appends a content header frame; refuses one larger than `frame_max`.
pub fn encode_header_frame(
    out: &mut Vec<u8>,
    channel: u16,
    header: &ContentHeader<'_>,
    frame_max: u32,
) -> Result<(), AmqpError> {
    encode_frame(out, FRAME_HEADER, channel, frame_max, |out| {
        header.encode(out)
    })
}

/// Appends one body frame carrying all of `body`; refuses one larger than `frame_max`
/// (use [`encode_content`](super::content::encode_content) to split a body).
pub fn encode_body_frame(
    out: &mut Vec<u8>,
    channel: u16,
    body: &[u8],
    frame_max: u32,
) -> Result<(), AmqpError> {
    encode_frame(out, FRAME_BODY, channel, frame_max, |out| {
        out.extend_from_slice(body);
        Ok(())
    })
}

/// Appends a heartbeat frame (`08 0000 00000000 CE`).
pub fn encode_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}
