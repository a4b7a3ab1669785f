//! The resumable decoder: validates one whole frame, possibly across many calls, then
//! hands out a borrowed [`Frame`] over the validated bytes.
//!
//! State between calls is an offset into the frame (always at an item boundary) and a
//! fixed stack of "children still expected" per open aggregate, as hiredis keeps its task
//! stack: a reply that arrives in small reads is scanned once, never from the start again.

use super::frame::{Aggregate, AggregateKind, Frame};
use super::head::{parse_head, whole_bulk_string, Head, Scan};
use super::RespError;
use crate::proto::Status;

/// Hard ceiling on nesting: the decoder's stack is a fixed array of this many entries
/// (no allocation). Redis replies nest two or three levels; [`Limits::max_depth`] above
/// this is treated as this.
pub const MAX_DEPTH: usize = 64;

/// Bounds a peer cannot make the decoder exceed; each is checked when the header that
/// announces a length is read, before waiting for the bytes it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, bulk error or verbatim string (bytes). Default 512 MiB,
    /// Redis's own `proto-max-bulk-len`.
    pub max_bulk_len: usize,
    /// Most elements in one aggregate (a map counts two per pair). Default 16 Mi.
    pub max_elements: usize,
    /// Deepest nesting of aggregates; a top-level array is depth 1. Default 32, at most
    /// [`MAX_DEPTH`].
    pub max_depth: usize,
    /// Longest simple string, simple error or big number line. Default 64 KiB. (Integer
    /// and header lines are capped at 32 bytes, doubles at 128, whatever this says.)
    pub max_line_len: usize,
}

impl Limits {
    /// No bound beyond the hard ones: used to re-read bytes that were already validated.
    pub(super) const UNBOUNDED: Limits = Limits {
        max_bulk_len: usize::MAX,
        max_elements: usize::MAX,
        max_depth: MAX_DEPTH,
        max_line_len: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: 16 * 1024 * 1024,
            max_depth: 32,
            max_line_len: 64 * 1024,
        }
    }
}

/// Decodes one frame at a time from the start of a connection's read buffer.
///
/// Call [`Decoder::decode`] with the buffer; on `Partial`, read more bytes onto the end of
/// the same buffer and call again with the whole (grown) buffer. On `Complete(frame,
/// used)`, the frame is `buf[..used]`: consume those bytes, so that the next call's buffer
/// starts with the next frame. After `Complete` or an error the decoder starts afresh.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    /// Bytes of the current frame validated so far; always at an item boundary.
    pos: usize,
    /// Bytes of the item at `pos` known to hold no `\r` (long simple strings).
    line_scanned: usize,
    /// Open aggregates; `pending[i]` is how many children level `i` still expects.
    depth: usize,
    pending: [usize; MAX_DEPTH],
    /// The root aggregate's header, kept from the call that read it to the call that
    /// completes the frame, so the finished frame is built without parsing it again.
    root: RootHeader,
}

/// What an aggregate header said, as [`Head::Open`] reports it.
#[derive(Debug, Clone, Copy)]
struct RootHeader {
    kind: AggregateKind,
    count: usize,
    elements: usize,
    header_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits: Limits {
                max_depth: limits.max_depth.min(MAX_DEPTH),
                ..limits
            },
            pos: 0,
            line_scanned: 0,
            depth: 0,
            pending: [0; MAX_DEPTH],
            root: RootHeader {
                kind: AggregateKind::Array,
                count: 0,
                elements: 0,
                header_len: 0,
            },
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True when no frame is half-validated (the last call did not answer `Partial`).
    pub fn is_idle(&self) -> bool {
        self.pos == 0 && self.line_scanned == 0
    }

    /// Forgets any half-validated frame (e.g. after the connection was reset).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.line_scanned = 0;
        self.depth = 0;
    }

    /// Decodes the frame at the start of `buf`; see the type's docs for the calling contract.
    #[inline]
    pub fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Status<Frame<'b>>, RespError> {
        match self.validate(buf) {
            Ok(Some((frame, end))) => {
                self.reset();
                Ok(Status::Complete(frame, end))
            }
            Ok(None) => Ok(Status::Partial),
            Err(error) => {
                self.reset();
                Err(error)
            }
        }
    }

    /// Walks items from `pos` on; the frame and its length when the frame that starts at
    /// `buf[0]` is whole.
    ///
    /// The position and depth live in locals (registers) while the loop runs and are
    /// stored back only when the call answers `Partial`: after `Complete` or an error
    /// [`Decoder::decode`] resets them anyway.
    #[inline]
    fn validate<'b>(&mut self, buf: &'b [u8]) -> Result<Option<(Frame<'b>, usize)>, RespError> {
        let mut pos = self.pos;
        let mut depth = self.depth;
        let mut line_scanned = self.line_scanned;
        'items: loop {
            let rest = buf.get(pos..).ok_or(RespError::BufferShrunk)?;
            // An aggregate's children are nearly all bulk strings (a pub/sub message is
            // nothing else): check them without building a `Head` whose frame nobody reads.
            match whole_bulk_string(rest, &self.limits) {
                Some((_, used)) if depth > 0 => {
                    pos += used;
                    line_scanned = 0;
                }
                _ => {
                    let head = match parse_head(rest, &self.limits, line_scanned)? {
                        Scan::Done(head) => head,
                        Scan::Partial { line_scanned } => {
                            self.pos = pos;
                            self.depth = depth;
                            self.line_scanned = line_scanned;
                            return Ok(None);
                        }
                    };
                    line_scanned = 0;
                    match head {
                        // A leaf at depth 0 is the whole frame (and `pos` is still 0).
                        Head::Leaf(frame, used) if depth == 0 => return Ok(Some((frame, used))),
                        Head::Leaf(_, used) => pos += used,
                        Head::Open {
                            kind,
                            count,
                            elements,
                            header_len,
                        } => {
                            // Attributes annotate a whole reply; nested ones would make an
                            // aggregate's element count disagree with its frames (module docs).
                            if kind.is_attribute() && depth > 0 {
                                return Err(RespError::NestedAttribute);
                            }
                            if depth >= self.limits.max_depth {
                                return Err(RespError::TooDeep);
                            }
                            if depth == 0 {
                                self.root = RootHeader {
                                    kind,
                                    count,
                                    elements,
                                    header_len,
                                };
                            }
                            pos += header_len;
                            if elements > 0 {
                                let slot = self.pending.get_mut(depth).ok_or(RespError::TooDeep)?;
                                *slot = elements;
                                depth += 1;
                                continue;
                            }
                        }
                    }
                }
            }
            // One item is complete: settle it with its parent, closing every aggregate
            // this completes.
            while let Some(parent) = depth.checked_sub(1) {
                let Some(remaining) = self.pending.get_mut(parent) else {
                    return Err(RespError::TooDeep);
                };
                *remaining = remaining.saturating_sub(1);
                if *remaining > 0 {
                    continue 'items;
                }
                depth = parent;
            }
            // Every aggregate is closed: the root's elements are `buf[header_len..pos]`.
            let root = self.root;
            let body = buf
                .get(root.header_len..pos)
                .ok_or(RespError::Inconsistent)?;
            let frame = Aggregate::new(root.kind, root.count, root.elements, body).into_frame();
            return Ok(Some((frame, pos)));
        }
    }
}

/// Decodes the frame at the start of `buf` in one go (no state kept between calls).
///
/// On `Partial` a later call re-validates from the start: fine for small inputs and tests;
/// connections should keep a [`Decoder`].
pub fn decode<'b>(buf: &'b [u8], limits: &Limits) -> Result<Status<Frame<'b>>, RespError> {
    Decoder::new(*limits).decode(buf)
}
