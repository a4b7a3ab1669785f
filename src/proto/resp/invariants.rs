//! Invariants the `resp` fuzz target asserts on arbitrary bytes (and
//! `tests/sans_io/fuzz_corpus.rs` replays on stable): no panic, bytes used within the input
//! and never zero, re-encoding a frame decodes to an equal frame, and the resumable
//! decoder fed the same bytes in small chunks answers exactly what one-shot decoding
//! answers.
#![doc(hidden)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use super::{decode, Decoder, Frame, Limits, PubSubEvent, RespError};
use crate::proto::Status;

/// Small limits, so the fuzzer reaches every limit error with short inputs.
const FUZZ_LIMITS: Limits = Limits {
    max_bulk_len: 1024,
    max_elements: 16,
    max_depth: 6,
    max_line_len: 256,
};

/// What one-shot decoding said about one frame: the bytes used, or why it stopped.
#[derive(Debug, PartialEq)]
enum Outcome<'b> {
    Frame(Frame<'b>, usize),
    Partial,
    Error(RespError),
}

fn outcome(result: Result<Status<Frame<'_>>, RespError>) -> Outcome<'_> {
    match result {
        Ok(Status::Complete(frame, used)) => Outcome::Frame(frame, used),
        Ok(Status::Partial) => Outcome::Partial,
        Err(error) => Outcome::Error(error),
    }
}

/// Runs every check on `data`.
pub fn check(data: &[u8]) {
    // Chunk sizes for the resumable run are derived from the data, so the fuzzer also
    // explores how a frame is split across reads.
    let chunk_seed = data.first().copied().unwrap_or(0);
    let mut decoder = Decoder::new(FUZZ_LIMITS);
    let mut rest = data;
    loop {
        let expected = outcome(decode(rest, &FUZZ_LIMITS));
        if let Outcome::Frame(frame, used) = &expected {
            assert!(
                *used > 0 && *used <= rest.len(),
                "used {used} of {}",
                rest.len()
            );
            check_frame(frame);
        }
        assert_ne!(
            expected,
            Outcome::Error(RespError::Inconsistent),
            "a validated frame could not be read back"
        );
        let resumed = resumable(&mut decoder, rest, chunk_seed);
        assert_eq!(
            expected, resumed,
            "resumable decoding disagrees with one-shot"
        );
        match expected {
            Outcome::Frame(_, used) => rest = &rest[used..],
            Outcome::Partial | Outcome::Error(_) => break,
        }
        if rest.is_empty() {
            break;
        }
    }
}

/// Re-encodes `frame`, decodes the encoding, and classifies the frame as pub/sub.
fn check_frame(frame: &Frame<'_>) {
    let mut encoded = Vec::new();
    frame.encode(&mut encoded);
    match decode(&encoded, &Limits::default()) {
        Ok(Status::Complete(again, used)) => {
            assert_eq!(used, encoded.len(), "re-encoding has trailing bytes");
            assert_eq!(*frame, again, "re-encoding decodes differently");
        }
        other => panic!("re-encoding of {frame:?} does not decode: {other:?}"),
    }
    if let Some(aggregate) = frame.as_aggregate() {
        assert_eq!(aggregate.iter().count(), aggregate.element_count());
    }
    let _ = PubSubEvent::from_frame(frame);
}

/// Feeds `data` to `decoder` in growing prefixes until it answers something other than
/// `Partial` or the data is exhausted.
fn resumable<'b>(decoder: &mut Decoder, data: &'b [u8], seed: u8) -> Outcome<'b> {
    let mut available = 0;
    let mut step = usize::from(seed % 5) + 1;
    loop {
        available = (available + step).min(data.len());
        step = step % 7 + 1;
        match outcome(decoder.decode(&data[..available])) {
            Outcome::Partial if available < data.len() => continue,
            other => return other,
        }
    }
}
