//! Message content (spec §4.2.6): a content-bearing method, one header frame, then body
//! frames carrying exactly the header's body size (none for an empty body).
//!
//! Encoding splits a body into frames of at most `frame_max - 8` octets. Decoding is
//! done by a [`ContentAssembler`], a small state machine fed the frames of **one**
//! channel: frames of different channels interleave on a connection, so the caller keeps
//! one assembler per open channel and routes each frame by its channel number.
//!
//! The header's u64 body size comes from the peer: it is checked against the configured
//! maximum message size before anything is reserved. A body that arrives in a single body
//! frame is handed out as a slice of that frame (no copy); only bodies split over several
//! frames are gathered into a buffer owned by the assembler and reused for every message,
//! so the steady state allocates nothing.

use super::frame::{
    effective_frame_max, encode_header_frame, FRAME_BODY, FRAME_END, FRAME_OVERHEAD,
};
use super::method::Method;
use super::properties::{BasicProperties, ContentHeader};
use super::AmqpError;

/// Appends a content header frame for `body` and the body frames that carry it, each
/// no larger than `frame_max`. On error `out` is left as it was.
pub fn encode_content(
    out: &mut Vec<u8>,
    channel: u16,
    class_id: u16,
    properties: &BasicProperties<'_>,
    body: &[u8],
    frame_max: u32,
) -> Result<(), AmqpError> {
    let max_payload = effective_frame_max(frame_max).saturating_sub(FRAME_OVERHEAD);
    if max_payload == 0 {
        return Err(AmqpError::FrameMaxTooSmall(frame_max));
    }
    let start = out.len();
    let header = ContentHeader {
        class_id,
        weight: 0,
        body_size: body.len() as u64,
        properties: *properties,
    };
    encode_header_frame(out, channel, &header, frame_max)?;
    let chunks = body.chunks(max_payload as usize);
    // Reserve once for all body frames: the size is that of the caller's own body.
    out.reserve(body.len() + chunks.len() * FRAME_OVERHEAD as usize);
    for chunk in chunks {
        let Ok(size) = u32::try_from(chunk.len()) else {
            out.truncate(start);
            return Err(AmqpError::FrameMaxTooSmall(frame_max));
        };
        out.push(FRAME_BODY);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(chunk);
        out.push(FRAME_END);
    }
    Ok(())
}

/// What the assembler expects next on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// No content in progress: any method may come.
    Method,
    /// A content-bearing method of this class arrived: its header is next.
    Header { class_id: u16 },
    /// The header announced `expected` body octets; `received` have arrived. Bodies
    /// received in more than one frame are gathered in the assembler's buffer.
    Body { expected: u64, received: u64 },
    /// The message was refused at its header ([`ContentAssembler::discard`]): its body
    /// frames are counted and dropped.
    Discarding { expected: u64, received: u64 },
}

/// The outcome of feeding a frame to a [`ContentAssembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// The frame was accepted; the message is not complete yet.
    Pending,
    /// The message body is complete: borrowed from the last body frame when it arrived
    /// whole, otherwise from the assembler's buffer (valid until the next call).
    Complete(&'a [u8]),
    /// The last body frame of a message being discarded arrived: the channel is ready for
    /// its next method.
    Discarded,
}

/// Capacity a [`ContentAssembler`]'s body buffer may keep between messages.
const RETAINED_CAPACITY: usize = 256 * 1024;

/// Reassembles message bodies on one channel (see the module docs).
#[derive(Debug, Clone)]
pub struct ContentAssembler {
    max_body_size: u64,
    awaiting: Awaiting,
    buffer: Vec<u8>,
}

impl ContentAssembler {
    /// An assembler refusing bodies larger than `max_body_size` octets (ferry's
    /// `max_message_bytes`).
    pub fn new(max_body_size: u64) -> Self {
        ContentAssembler {
            max_body_size,
            awaiting: Awaiting::Method,
            buffer: Vec::new(),
        }
    }

    /// True when no content is in progress (the next frame on the channel may be a method).
    pub fn is_idle(&self) -> bool {
        self.awaiting == Awaiting::Method
    }

    /// Feeds a method decoded on this channel. A content-bearing method (deliver, return,
    /// get-ok, publish) makes the assembler expect a header; any method while content is
    /// in progress is an error (spec §4.2.6: content frames are not interleaved with
    /// methods on a channel).
    pub fn on_method(&mut self, method: &Method<'_>) -> Result<(), AmqpError> {
        if self.awaiting != Awaiting::Method {
            return Err(AmqpError::UnexpectedFrame("method frame"));
        }
        if method.has_content() {
            self.awaiting = Awaiting::Header {
                class_id: method.ids().0,
            };
        }
        Ok(())
    }

    /// Feeds a content header. An empty body completes the message at once.
    pub fn on_header(
        &mut self,
        header: &ContentHeader<'_>,
    ) -> Result<Assembled<'static>, AmqpError> {
        let Awaiting::Header { class_id } = self.awaiting else {
            return Err(AmqpError::UnexpectedFrame("content header"));
        };
        if header.class_id != class_id {
            return Err(AmqpError::ContentClassMismatch {
                expected: class_id,
                found: header.class_id,
            });
        }
        if header.body_size > self.max_body_size {
            return Err(AmqpError::BodyTooLarge {
                size: header.body_size,
                max: self.max_body_size,
            });
        }
        // A past large message's buffer is released here, at the next message, rather
        // than pinned for the life of the channel.
        if self.buffer.capacity() > RETAINED_CAPACITY {
            self.buffer = Vec::new();
        }
        if header.body_size == 0 {
            self.awaiting = Awaiting::Method;
            return Ok(Assembled::Complete(&[]));
        }
        self.awaiting = Awaiting::Body {
            expected: header.body_size,
            received: 0,
        };
        Ok(Assembled::Pending)
    }

    /// Feeds a body frame's payload.
    pub fn on_body<'a>(&'a mut self, chunk: &'a [u8]) -> Result<Assembled<'a>, AmqpError> {
        let (expected, received) = match self.awaiting {
            Awaiting::Body { expected, received } => (expected, received),
            Awaiting::Discarding { expected, received } => {
                return self.discard_body(expected, received, chunk.len() as u64)
            }
            Awaiting::Method | Awaiting::Header { .. } => {
                return Err(AmqpError::UnexpectedFrame("body frame"))
            }
        };
        let now = received.saturating_add(chunk.len() as u64);
        if now > expected {
            return Err(AmqpError::BodyOverrun {
                expected,
                received: now,
            });
        }
        if received == 0 && now == expected {
            // The whole body in one frame: the hot path, no copy.
            self.awaiting = Awaiting::Method;
            return Ok(Assembled::Complete(chunk));
        }
        if received == 0 {
            self.buffer.clear();
            // Reserve what the header announced only up to a bound: a peer that announces
            // `max_body_size` and then trickles bytes gets memory as the bytes arrive.
            let announced = usize::try_from(expected).unwrap_or(usize::MAX);
            self.buffer.reserve(announced.min(RETAINED_CAPACITY));
        }
        self.buffer.extend_from_slice(chunk);
        if now == expected {
            self.awaiting = Awaiting::Method;
            return Ok(Assembled::Complete(&self.buffer));
        }
        self.awaiting = Awaiting::Body {
            expected,
            received: now,
        };
        Ok(Assembled::Pending)
    }

    /// Skips the body of the message whose header this assembler just refused with
    /// [`AmqpError::BodyTooLarge`], or whose header frame arrived as
    /// [`FramePayload::BadHeader`](super::FramePayload::BadHeader): its body frames are
    /// then counted, never kept, and [`ContentAssembler::on_body`] answers
    /// [`Assembled::Discarded`] for the last one (this call does, for an empty body).
    /// The caller settles that delivery as a permanent failure; the connection lives on.
    pub fn discard(&mut self, body_size: u64) -> Result<Assembled<'static>, AmqpError> {
        let Awaiting::Header { .. } = self.awaiting else {
            return Err(AmqpError::UnexpectedFrame("content header"));
        };
        if body_size == 0 {
            self.awaiting = Awaiting::Method;
            return Ok(Assembled::Discarded);
        }
        self.awaiting = Awaiting::Discarding {
            expected: body_size,
            received: 0,
        };
        Ok(Assembled::Pending)
    }

    fn discard_body(
        &mut self,
        expected: u64,
        received: u64,
        len: u64,
    ) -> Result<Assembled<'static>, AmqpError> {
        let now = received.saturating_add(len);
        if now > expected {
            return Err(AmqpError::BodyOverrun {
                expected,
                received: now,
            });
        }
        if now == expected {
            self.awaiting = Awaiting::Method;
            return Ok(Assembled::Discarded);
        }
        self.awaiting = Awaiting::Discarding {
            expected,
            received: now,
        };
        Ok(Assembled::Pending)
    }

    /// Forgets any content in progress (after a channel close); keeps the buffer.
    pub fn reset(&mut self) {
        self.awaiting = Awaiting::Method;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::amqp::{BasicDeliver, BasicProperties};

    fn start(assembler: &mut ContentAssembler, body_size: u64) {
        let deliver = Method::from(BasicDeliver::default());
        assembler.on_method(&deliver).unwrap();
        let header = ContentHeader {
            class_id: 60,
            weight: 0,
            body_size,
            properties: BasicProperties::default(),
        };
        assert_eq!(assembler.on_header(&header).unwrap(), Assembled::Pending);
    }

    #[test]
    fn an_announced_size_is_not_reserved_before_the_bytes_arrive() {
        let mut assembler = ContentAssembler::new(16 << 20);
        start(&mut assembler, 16 << 20);
        assert_eq!(assembler.on_body(b"x").unwrap(), Assembled::Pending);
        assert!(assembler.buffer.capacity() <= RETAINED_CAPACITY);
    }

    #[test]
    fn a_large_body_buffer_is_released_for_the_next_message() {
        let mut assembler = ContentAssembler::new(16 << 20);
        let half = vec![7u8; 1 << 20];
        start(&mut assembler, 2 << 20);
        assert_eq!(assembler.on_body(&half).unwrap(), Assembled::Pending);
        assert!(
            matches!(assembler.on_body(&half).unwrap(), Assembled::Complete(b) if b.len() == 2 << 20)
        );
        start(&mut assembler, 4);
        assert_eq!(assembler.on_body(b"ab").unwrap(), Assembled::Pending);
        assert!(assembler.buffer.capacity() <= RETAINED_CAPACITY);
    }
}
