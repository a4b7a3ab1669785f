//! Table tests (every method encode → decode, known byte vectors), every-prefix-is-Partial
//! tests, and property tests for methods, properties and nested field tables.

use ferry::proto::amqp::*;
use ferry::proto::Status;
use proptest::prelude::*;

fn all_methods<'a>(table: FieldTable<'a>, s: &'a [u8]) -> Vec<Method<'a>> {
    vec![
        ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: table,
            mechanisms: s,
            locales: b"en_US",
        }
        .into(),
        ConnectionStartOk {
            client_properties: table,
            mechanism: b"PLAIN",
            response: s,
            locale: b"en_US",
        }
        .into(),
        ConnectionSecure { challenge: s }.into(),
        ConnectionSecureOk { response: s }.into(),
        ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        }
        .into(),
        ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 30,
        }
        .into(),
        ConnectionOpen {
            virtual_host: b"/",
            capabilities: b"",
            insist: true,
        }
        .into(),
        ConnectionOpenOk { known_hosts: s }.into(),
        ConnectionClose {
            reply_code: 320,
            reply_text: s,
            class_id: 60,
            method_id: 40,
        }
        .into(),
        ConnectionCloseOk {}.into(),
        ConnectionBlocked { reason: s }.into(),
        ConnectionUnblocked {}.into(),
        ChannelOpen { out_of_band: b"" }.into(),
        ChannelOpenOk { channel_id: s }.into(),
        ChannelFlow { active: true }.into(),
        ChannelFlowOk { active: false }.into(),
        ChannelClose {
            reply_code: 406,
            reply_text: s,
            class_id: 60,
            method_id: 80,
        }
        .into(),
        ChannelCloseOk {}.into(),
        ExchangeDeclare {
            ticket: 0,
            exchange: s,
            kind: b"direct",
            passive: false,
            durable: true,
            auto_delete: false,
            internal: true,
            no_wait: true,
            arguments: table,
        }
        .into(),
        ExchangeDeclareOk {}.into(),
        QueueDeclare {
            ticket: 0,
            queue: s,
            passive: true,
            durable: true,
            exclusive: false,
            auto_delete: true,
            no_wait: false,
            arguments: table,
        }
        .into(),
        QueueDeclareOk {
            queue: s,
            message_count: 7,
            consumer_count: 2,
        }
        .into(),
        QueueBind {
            ticket: 0,
            queue: s,
            exchange: b"amq.direct",
            routing_key: s,
            no_wait: true,
            arguments: table,
        }
        .into(),
        QueueBindOk {}.into(),
        QueuePurge {
            ticket: 0,
            queue: s,
            no_wait: false,
        }
        .into(),
        QueuePurgeOk { message_count: 3 }.into(),
        QueueDelete {
            ticket: 0,
            queue: s,
            if_unused: true,
            if_empty: false,
            no_wait: true,
        }
        .into(),
        QueueDeleteOk { message_count: 9 }.into(),
        ExchangeDelete {
            ticket: 0,
            exchange: s,
            if_unused: false,
            no_wait: true,
        }
        .into(),
        ExchangeDeleteOk {}.into(),
        BasicQos {
            prefetch_size: 0,
            prefetch_count: 4,
            global: false,
        }
        .into(),
        BasicQosOk {}.into(),
        BasicConsume {
            ticket: 0,
            queue: s,
            consumer_tag: b"ferry",
            no_local: false,
            no_ack: true,
            exclusive: true,
            no_wait: false,
            arguments: table,
        }
        .into(),
        BasicConsumeOk { consumer_tag: s }.into(),
        BasicCancel {
            consumer_tag: s,
            no_wait: true,
        }
        .into(),
        BasicCancelOk { consumer_tag: s }.into(),
        BasicPublish {
            ticket: 0,
            exchange: b"",
            routing_key: s,
            mandatory: true,
            immediate: false,
        }
        .into(),
        BasicReturn {
            reply_code: 312,
            reply_text: b"NO_ROUTE",
            exchange: b"",
            routing_key: s,
        }
        .into(),
        BasicDeliver {
            consumer_tag: s,
            delivery_tag: u64::MAX,
            redelivered: true,
            exchange: b"x",
            routing_key: s,
        }
        .into(),
        BasicGet {
            ticket: 0,
            queue: s,
            no_ack: true,
        }
        .into(),
        BasicGetOk {
            delivery_tag: 9,
            redelivered: false,
            exchange: b"",
            routing_key: s,
            message_count: 3,
        }
        .into(),
        BasicGetEmpty { cluster_id: b"" }.into(),
        BasicAck {
            delivery_tag: 42,
            multiple: true,
        }
        .into(),
        BasicReject {
            delivery_tag: 43,
            requeue: false,
        }
        .into(),
        BasicRecoverOk {}.into(),
        BasicNack {
            delivery_tag: 44,
            multiple: false,
            requeue: true,
        }
        .into(),
        ConfirmSelect { no_wait: false }.into(),
        ConfirmSelectOk {}.into(),
    ]
}

fn sample_table() -> TableBuilder {
    let mut inner = TableBuilder::new();
    inner.insert(b"flag", FieldValue::Bool(true)).unwrap();
    let mut array = TableBuilder::new();
    array
        .push_value(FieldValue::I16(-3))
        .unwrap()
        .push_value(FieldValue::LongStr(b"a"))
        .unwrap();
    let mut t = TableBuilder::new();
    t.insert(b"x-message-ttl", FieldValue::I64(1000))
        .unwrap()
        .insert(b"x-dead-letter-exchange", FieldValue::LongStr(b""))
        .unwrap()
        .insert(b"nested", FieldValue::Table(inner.as_table()))
        .unwrap()
        .insert(b"list", FieldValue::Array(array.as_array()))
        .unwrap();
    t
}

#[test]
fn every_method_roundtrips_through_a_frame() {
    let t = sample_table();
    // Keep the nested builders alive: rebuild from the table's own bytes.
    let raw = t.as_table().as_bytes().to_vec();
    let table = FieldTable::parse(&raw).unwrap();
    let methods = all_methods(table, b"some-name");
    assert_eq!(methods.len(), 48);
    for method in methods {
        let mut out = Vec::new();
        encode_method_frame(&mut out, 3, &method, 131_072).unwrap();
        let Status::Complete(frame, used) = decode_frame(&out, 131_072).unwrap() else {
            panic!()
        };
        assert_eq!(used, out.len());
        assert_eq!(frame.channel, 3);
        let FramePayload::Method(payload) = frame.payload else {
            panic!()
        };
        let decoded = Method::decode(payload).unwrap();
        assert_eq!(decoded, method, "{}", method.name());
        assert_eq!(
            decoded.ids(),
            (
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]])
            )
        );
        // Every strict prefix is Partial.
        for cut in 0..out.len() {
            assert_eq!(
                decode_frame(&out[..cut], 131_072),
                Ok(Status::Partial),
                "{} cut at {cut}",
                method.name()
            );
        }
    }
}

#[test]
fn known_byte_vectors() {
    let mut out = Vec::new();
    // queue.delete: ticket, shortstr "q", bits if_unused (0) = false, if_empty (1) =
    // true, no_wait (2) = false → 0x02.
    Method::from(QueueDelete {
        ticket: 0,
        queue: b"q",
        if_unused: false,
        if_empty: true,
        no_wait: false,
    })
    .encode(&mut out)
    .unwrap();
    assert_eq!(out, b"\x00\x32\x00\x28\x00\x00\x01q\x02");
    out.clear();
    encode_method_frame(
        &mut out,
        1,
        &BasicAck {
            delivery_tag: 5,
            multiple: true,
        }
        .into(),
        4096,
    )
    .unwrap();
    assert_eq!(
        out,
        b"\x01\x00\x01\x00\x00\x00\x0d\x00\x3c\x00\x50\x00\x00\x00\x00\x00\x00\x00\x05\x01\xce"
    );
    out.clear();
    // basic.nack: multiple (bit 0) = false, requeue (bit 1) = true → 0x02.
    encode_method_frame(
        &mut out,
        2,
        &BasicNack {
            delivery_tag: 1,
            multiple: false,
            requeue: true,
        }
        .into(),
        4096,
    )
    .unwrap();
    assert_eq!(
        out,
        b"\x01\x00\x02\x00\x00\x00\x0d\x00\x3c\x00\x78\x00\x00\x00\x00\x00\x00\x00\x01\x02\xce"
    );
    out.clear();
    // queue.declare durable: ticket, "q", bits 0b0000_0010, empty table.
    let declare = QueueDeclare {
        queue: b"q",
        durable: true,
        ..Default::default()
    };
    encode_method_frame(&mut out, 1, &declare.into(), 4096).unwrap();
    assert_eq!(
        out,
        b"\x01\x00\x01\x00\x00\x00\x0d\x00\x32\x00\x0a\x00\x00\x01q\x02\x00\x00\x00\x00\xce"
    );
    out.clear();
    encode_heartbeat(&mut out);
    assert_eq!(out, b"\x08\x00\x00\x00\x00\x00\x00\xce");
    assert_eq!(
        decode_frame(&out, 4096),
        Ok(Status::Complete(
            Frame {
                channel: 0,
                payload: FramePayload::Heartbeat
            },
            8
        ))
    );
    out.clear();
    encode_protocol_header(&mut out);
    assert_eq!(out, b"AMQP\x00\x00\x09\x01");
    // Content: header frame with content-type + delivery-mode, body split 4 + 1.
    out.clear();
    let props = BasicProperties {
        content_type: Some(b"t/p"),
        delivery_mode: Some(2),
        ..Default::default()
    };
    encode_content(&mut out, 1, 60, &props, b"hello", 12).unwrap_err(); // header frame too big for 12
    encode_content(&mut out, 1, 60, &props, b"hello", 64).unwrap();
    assert_eq!(
        out,
        b"\x02\x00\x01\x00\x00\x00\x13\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x90\x00\x03t/p\x02\xce\x03\x00\x01\x00\x00\x00\x05hello\xce"
    );
    out.clear();
    // frame_max 22: the 14-byte header payload just fits, body frames carry 14 bytes.
    encode_content(
        &mut out,
        1,
        60,
        &BasicProperties::default(),
        b"0123456789abcdXYZ",
        22,
    )
    .unwrap();
    assert_eq!(
        &out[22..],
        b"\x03\x00\x01\x00\x00\x00\x0e0123456789abcd\xce\x03\x00\x01\x00\x00\x00\x03XYZ\xce"
    );
    out.clear();
    encode_content(&mut out, 1, 60, &BasicProperties::default(), b"", 22).unwrap();
    assert_eq!(out.len(), 8 + 14, "an empty body has no body frame");
}

#[test]
fn field_table_types_as_rabbitmq_reads_them() {
    let raw = [
        1, b'a', b's', 0xFF, 0xFE, // s = i16 -2
        1, b'b', b'u', 0xFF, 0xFE, // u = u16
        1, b'c', b'I', 0xFF, 0xFF, 0xFF, 0xFF, // I = i32 -1
        1, b'd', b'i', 0xFF, 0xFF, 0xFF, 0xFF, // i = u32
        1, b'e', b'L', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // L = i64 -1
        1, b'f', b'x', 0, 0, 0, 2, 9, 8, // byte array
        1, b'g', b'V', // void
        1, b'h', b'D', 2, 0, 0, 0x01, 0x00, // decimal 2.56
        1, b'i', b't', 2, // any non-zero bool is true
        1, b'j', b'b', 0x80, 1, b'k', b'B', 0x80, // i8, u8
        1, b'l', b'T', 0, 0, 0, 0, 0, 0, 0, 7, // timestamp
        1, b'm', b'f', 0x3F, 0x80, 0, 0, 1, b'n', b'd', 0x3F, 0xF0, 0, 0, 0, 0, 0, 0,
    ];
    let t = FieldTable::parse(&raw).unwrap();
    let values: Vec<_> = t.iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        [
            FieldValue::I16(-2),
            FieldValue::U16(0xFFFE),
            FieldValue::I32(-1),
            FieldValue::U32(u32::MAX),
            FieldValue::I64(-1),
            FieldValue::Bytes(&[9, 8]),
            FieldValue::Void,
            FieldValue::Decimal {
                scale: 2,
                value: 256
            },
            FieldValue::Bool(true),
            FieldValue::I8(-128),
            FieldValue::U8(128),
            FieldValue::Timestamp(7),
            FieldValue::F32(1.0),
            FieldValue::F64(1.0),
        ]
    );
    let mut out = Vec::new();
    t.encode(&mut out).unwrap();
    assert_eq!(
        &out[4..],
        &raw[..],
        "a decoded table re-encodes byte for byte"
    );
}

#[test]
fn client_properties_carry_capabilities() {
    let props = TableBuilder::client_properties(b"ferry", b"0.1.0", Some(b"ferry@host")).unwrap();
    let t = FieldTable::parse(props.as_table().as_bytes()).unwrap();
    assert_eq!(t.get(b"product"), Some(FieldValue::LongStr(b"ferry")));
    let Some(FieldValue::Table(caps)) = t.get(b"capabilities") else {
        panic!()
    };
    for cap in [
        &b"consumer_cancel_notify"[..],
        b"connection.blocked",
        b"publisher_confirms",
        b"basic.nack",
    ] {
        assert_eq!(caps.get(cap), Some(FieldValue::Bool(true)));
    }
}

// ---- property tests ----

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn leaf() -> impl Strategy<Value = (u8, Vec<u8>)> {
    // (kind, payload) pairs turned into encoded values by `encode_leaf`.
    (0u8..16, bytes(24))
}

fn encode_leaf(kind: u8, data: &[u8], out: &mut TableBuilder, key: &[u8]) {
    let n = data
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(131).wrapping_add(u64::from(*b)));
    let v = match kind {
        0 => FieldValue::Bool(n % 2 == 0),
        1 => FieldValue::I8(n as i8),
        2 => FieldValue::U8(n as u8),
        3 => FieldValue::I16(n as i16),
        4 => FieldValue::U16(n as u16),
        5 => FieldValue::I32(n as i32),
        6 => FieldValue::U32(n as u32),
        7 => FieldValue::I64(n as i64),
        8 => FieldValue::F32(f32::from_bits(n as u32)),
        9 => FieldValue::F64(f64::from_bits(n)),
        10 => FieldValue::Decimal {
            scale: n as u8,
            value: (n >> 8) as u32,
        },
        11 => FieldValue::LongStr(data),
        12 => FieldValue::Timestamp(n),
        13 => FieldValue::Bytes(data),
        _ => FieldValue::Void,
    };
    out.insert(key, v).unwrap();
}

/// One level of a generated table: `(key, (value kind, value bytes))` entries.
type Level = Vec<(Vec<u8>, (u8, Vec<u8>))>;

/// Builds a nested table from a tree description: one table per level, each holding the
/// next as a nested table and inside an array.
fn build_nested(levels: &[Level]) -> TableBuilder {
    let mut current = TableBuilder::new();
    for level in levels.iter().rev() {
        let mut t = TableBuilder::new();
        for (key, (kind, data)) in level {
            encode_leaf(*kind, data, &mut t, key);
        }
        let mut arr = TableBuilder::new();
        arr.push_value(FieldValue::Table(current.as_table()))
            .unwrap();
        t.insert(b"child", FieldValue::Table(current.as_table()))
            .unwrap();
        t.insert(b"children", FieldValue::Array(arr.as_array()))
            .unwrap();
        current = t;
    }
    current
}

proptest! {
    #[test]
    fn nested_tables_roundtrip(levels in proptest::collection::vec(proptest::collection::vec((bytes(20), leaf()), 0..5), 0..6)) {
        let built = build_nested(&levels);
        let raw = built.as_table().as_bytes();
        let table = FieldTable::parse(raw).unwrap();
        let mut rebuilt = TableBuilder::new();
        for (k, v) in table.iter() {
            rebuilt.insert(k, v).unwrap();
        }
        prop_assert_eq!(rebuilt.as_table().as_bytes(), raw);
        ferry::proto::amqp::invariants::check(raw);
    }

    #[test]
    fn properties_roundtrip(
        strings in proptest::collection::vec(proptest::option::of(bytes(255)), 11),
        delivery_mode in proptest::option::of(any::<u8>()),
        priority in proptest::option::of(any::<u8>()),
        timestamp in proptest::option::of(any::<u64>()),
        with_headers in any::<bool>(),
        body_size in any::<u64>(),
    ) {
        let headers = sample_table();
        let s = |i: usize| strings[i].as_deref();
        let props = BasicProperties {
            content_type: s(0), content_encoding: s(1),
            headers: with_headers.then(|| headers.as_table()),
            delivery_mode, priority,
            correlation_id: s(2), reply_to: s(3), expiration: s(4), message_id: s(5),
            timestamp, kind: s(6), user_id: s(7), app_id: s(8), cluster_id: s(9),
        };
        let header = ContentHeader { class_id: 60, weight: 0, body_size, properties: props };
        let mut out = Vec::new();
        encode_header_frame(&mut out, 7, &header, 131_072).unwrap();
        let Status::Complete(frame, used) = decode_frame(&out, 131_072).unwrap() else { panic!() };
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(frame.payload, FramePayload::Header(header));
        prop_assert_eq!(decode_frame(&out[..out.len() - 1], 131_072).unwrap(), Status::Partial);
    }

    #[test]
    fn methods_with_random_strings_roundtrip(s in bytes(256), long in bytes(600), idx in 0usize..42) {
        let t = sample_table();
        let short = &s[..s.len().min(255)];
        let method = all_methods(t.as_table(), short)[idx];
        let mut out = Vec::new();
        method.encode(&mut out).unwrap();
        prop_assert_eq!(Method::decode(&out).unwrap(), method);
        let secure: Method = ConnectionSecureOk { response: &long }.into();
        out.clear();
        secure.encode(&mut out).unwrap();
        prop_assert_eq!(Method::decode(&out).unwrap(), secure);
        if s.len() > 255 {
            let tag: Method = BasicCancelOk { consumer_tag: &s }.into();
            prop_assert_eq!(tag.encode(&mut out).unwrap_err(), AmqpError::ShortStrTooLong(s.len()));
        }
    }

    #[test]
    fn content_splits_and_reassembles(body in bytes(3000), frame_max in 9u32..600) {
        let mut out = Vec::new();
        let deliver: Method = BasicDeliver { delivery_tag: 1, ..Default::default() }.into();
        encode_method_frame(&mut out, 1, &deliver, 4096).unwrap();
        let fm = frame_max.max(64);
        encode_content(&mut out, 1, 60, &BasicProperties::default(), &body, fm).unwrap();
        let mut asm = ContentAssembler::new(4096);
        let mut pos = 0;
        let mut got = None;
        while pos < out.len() {
            let Status::Complete(frame, used) = decode_frame(&out[pos..], 4096).unwrap() else { panic!() };
            prop_assert!(used as u32 <= fm.max(4096));
            pos += used;
            match frame.payload {
                FramePayload::Method(p) => asm.on_method(&Method::decode(p).unwrap()).unwrap(),
                FramePayload::Header(h) => if let Assembled::Complete(b) = asm.on_header(&h).unwrap() { got = Some(b.to_vec()) },
                FramePayload::Body(c) => {
                    prop_assert!(c.len() as u32 <= fm - 8);
                    if let Assembled::Complete(b) = asm.on_body(c).unwrap() { got = Some(b.to_vec()) }
                }
                FramePayload::Heartbeat => {}
                FramePayload::BadHeader(bad) => panic!("{bad:?}"),
            }
        }
        prop_assert_eq!(got, Some(body));
    }
}
