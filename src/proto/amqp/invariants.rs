//! Invariants the fuzz target (`fuzz/fuzz_targets/amqp.rs`) and the corpus replay test
//! check on arbitrary bytes: no panic, bytes used ≤ input, every decoded method, header
//! and table re-encodes to something that decodes to the same value, and the content
//! assembler's limits hold.

// Asserting is this module's purpose: it runs only under the fuzzer and the corpus test.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::proto::Status;

/// A small frame_max so that the size check is exercised as often as frames are.
const FUZZ_FRAME_MAX: u32 = 512;
/// A small body limit so that oversized bodies are exercised too.
const FUZZ_MAX_BODY: u64 = 1024;

/// Runs the frame decoder, method decoder, table iterators and content assembler over
/// `data`, asserting the invariants. Panics (only) when one is broken.
pub fn check(data: &[u8]) {
    let mut assembler = ContentAssembler::new(FUZZ_MAX_BODY);
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = data.get(pos..).unwrap_or_default();
        let (frame, used) = match decode_frame(rest, FUZZ_FRAME_MAX) {
            Ok(Status::Complete(frame, used)) => (frame, used),
            Ok(Status::Partial) | Err(_) => break,
        };
        assert!(
            used >= 8 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        assert!(used as u64 <= u64::from(FUZZ_FRAME_MAX));
        check_frame_roundtrip(&frame, rest.get(..used).unwrap_or_default());
        pos += used;
        match frame.payload {
            FramePayload::Method(payload) => {
                let Ok(method) = Method::decode(payload) else {
                    continue;
                };
                check_method(&method);
                if assembler.on_method(&method).is_err() {
                    assembler.reset();
                }
            }
            FramePayload::Header(header) => {
                check_header(&header);
                match assembler.on_header(&header) {
                    Ok(_) => assert!(header.body_size <= FUZZ_MAX_BODY),
                    Err(AmqpError::BodyTooLarge { .. }) => {
                        // Refused at its header: the body is skipped, never kept.
                        assert!(header.body_size > FUZZ_MAX_BODY);
                        assert!(assembler.discard(header.body_size).is_ok());
                    }
                    Err(_) => assembler.reset(),
                }
            }
            FramePayload::BadHeader(bad) => {
                assert!(ContentHeader::decode(&rest[7..used - 1]).is_err());
                if assembler.discard(bad.body_size).is_err() {
                    assembler.reset();
                }
            }
            FramePayload::Body(chunk) => match assembler.on_body(chunk) {
                Ok(Assembled::Complete(body)) => assert!(body.len() as u64 <= FUZZ_MAX_BODY),
                Ok(Assembled::Pending | Assembled::Discarded) => {}
                Err(_) => assembler.reset(),
            },
            FramePayload::Heartbeat => {}
        }
    }
    // The whole input as a table and as properties, too.
    if let Ok(table) = FieldTable::parse(data) {
        check_table(table, 1);
    }
    if let Ok(props) = BasicProperties::decode(data) {
        let mut out = Vec::new();
        props
            .encode(&mut out)
            .expect("decoded properties re-encode");
        assert_eq!(BasicProperties::decode(&out), Ok(props));
    }
}

fn check_frame_roundtrip(frame: &Frame<'_>, bytes: &[u8]) {
    let mut out = Vec::new();
    let encoded = match frame.payload {
        FramePayload::Method(payload) => {
            // Raw method frames re-encode byte for byte through the body encoder's envelope.
            encode_body_frame(&mut out, frame.channel, payload, FUZZ_FRAME_MAX).map(|()| {
                if let Some(t) = out.first_mut() {
                    *t = frame::FRAME_METHOD;
                }
            })
        }
        FramePayload::Header(header) => {
            encode_header_frame(&mut out, frame.channel, &header, FUZZ_FRAME_MAX)
        }
        // Nothing decoded to re-encode: the raw payload failed to decode (checked above).
        FramePayload::BadHeader(_) => return,
        FramePayload::Body(payload) => {
            encode_body_frame(&mut out, frame.channel, payload, FUZZ_FRAME_MAX)
        }
        FramePayload::Heartbeat => {
            encode_heartbeat(&mut out);
            Ok(())
        }
    };
    if matches!(frame.payload, FramePayload::Header(_)) {
        // Ignored flag bit 1 may make the bytes differ; the value must not.
        if encoded.is_ok() {
            let again = decode_frame(&out, FUZZ_FRAME_MAX).expect("re-encoded header decodes");
            assert_eq!(again, Status::Complete(*frame, out.len()));
        }
    } else {
        assert!(encoded.is_ok());
        assert_eq!(out, bytes);
    }
}

fn check_method(method: &Method<'_>) {
    let mut out = Vec::new();
    method.encode(&mut out).expect("decoded method re-encodes");
    // Unused bits of a bit octet are dropped, so compare values, not bytes.
    assert_eq!(Method::decode(&out).as_ref(), Ok(method));
    let tables = match method {
        Method::ConnectionStart(m) => Some(m.server_properties),
        Method::ConnectionStartOk(m) => Some(m.client_properties),
        Method::QueueDeclare(m) => Some(m.arguments),
        Method::ExchangeDeclare(m) => Some(m.arguments),
        Method::QueueBind(m) => Some(m.arguments),
        Method::BasicConsume(m) => Some(m.arguments),
        _ => None,
    };
    if let Some(table) = tables {
        check_table(table, 1);
    }
}

fn check_header(header: &ContentHeader<'_>) {
    let mut out = Vec::new();
    header.encode(&mut out).expect("decoded header re-encodes");
    assert_eq!(ContentHeader::decode(&out).as_ref(), Ok(header));
    if let Some(table) = header.properties.headers {
        check_table(table, 1);
    }
}

/// Re-encodes a table entry by entry through the builder: the result must parse and
/// yield equal entries (bytes may differ: `L` becomes `l`, a non-zero bool becomes 1).
fn check_table(table: FieldTable<'_>, depth: u32) {
    assert!(depth <= MAX_TABLE_DEPTH);
    let mut builder = TableBuilder::new();
    for (key, value) in table.iter() {
        builder
            .insert(key, value)
            .expect("decoded entry re-encodes");
        check_value(value, depth);
    }
    let rebuilt = FieldTable::parse(builder.as_table().as_bytes()).expect("rebuilt table parses");
    assert!(rebuilt.iter().eq(table.iter()));
    assert!(table.as_bytes().len() >= rebuilt.as_bytes().len());
}

fn check_value(value: FieldValue<'_>, depth: u32) {
    match value {
        FieldValue::Table(inner) => check_table(inner, depth + 1),
        FieldValue::Array(array) => {
            assert!(depth < MAX_TABLE_DEPTH);
            for v in array.iter() {
                check_value(v, depth + 1);
            }
        }
        _ => {}
    }
}
