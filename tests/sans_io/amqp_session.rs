//! Scripted broker conversations for the AMQP session, without sockets: the server's
//! frames are built with the codec's encoders (and the captured connection.start and
//! multi-frame delivery of `tests/data/amqp/`), the session's output is decoded and
//! compared method by method, time is a fake `Instant` advanced by hand.

use std::time::{Duration, Instant};

use ferry::proto::amqp::session::{
    table_from_json, Tuning, CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, PUBLISHER_CHANNEL,
};
use ferry::proto::amqp::*;
use ferry::proto::Status;

use crate::data;

const QUEUE: &str = "jobs";

fn config() -> SessionConfig {
    SessionConfig {
        username: "guest".into(),
        password: "s3cret".into(),
        vhost: "/".into(),
        queue: QUEUE.into(),
        declare: DeclareMode::IfMissing,
        queue_type: QueueType::Classic,
        prefetch: 4,
        heartbeat_s: 30,
        max_message_bytes: 16 << 20,
        consumer_tag: "ferry-1".into(),
        connection_name: Some("ferry test".into()),
        publisher: false,
        consume: true,
    }
}

fn publisher_config() -> SessionConfig {
    SessionConfig {
        publisher: true,
        consume: true,
        ..config()
    }
}

/// One frame as the server would send it.
fn frame<'a>(channel: u16, method: impl Into<Method<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_method_frame(&mut out, channel, &method.into(), 131_072).unwrap();
    out
}

fn frames<'a>(list: impl IntoIterator<Item = (u16, Method<'a>)>) -> Vec<u8> {
    list.into_iter().flat_map(|(c, m)| frame(c, m)).collect()
}

fn content(channel: u16, properties: &BasicProperties<'_>, body: &[u8], frame_max: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_content(&mut out, channel, CLASS_BASIC, properties, body, frame_max).unwrap();
    out
}

fn deliver(tag: u64, redelivered: bool) -> Vec<u8> {
    frame(
        1,
        BasicDeliver {
            consumer_tag: b"ferry-1",
            delivery_tag: tag,
            redelivered,
            exchange: b"",
            routing_key: QUEUE.as_bytes(),
        },
    )
}

fn tune(frame_max: u32, heartbeat: u16) -> ConnectionTune {
    ConnectionTune {
        channel_max: 2047,
        frame_max,
        heartbeat,
    }
}

/// Frames as the session sent them: (channel, frame type, payload).
fn decode_all(mut bytes: &[u8]) -> Vec<(u16, FramePayloadOwned)> {
    let mut list = Vec::new();
    while !bytes.is_empty() {
        let Status::Complete(frame, used) = decode_frame(bytes, u32::MAX).unwrap() else {
            panic!("session sent a partial frame")
        };
        let payload = match frame.payload {
            FramePayload::Method(p) => FramePayloadOwned::Method(p.to_vec()),
            FramePayload::Header(h) => FramePayloadOwned::Header(h.body_size),
            FramePayload::Body(b) => FramePayloadOwned::Body(b.to_vec()),
            FramePayload::Heartbeat => FramePayloadOwned::Heartbeat,
            FramePayload::BadHeader(bad) => panic!("ferry sent an unreadable header: {bad:?}"),
        };
        list.push((frame.channel, payload));
        bytes = &bytes[used..];
    }
    list
}

#[derive(Debug, PartialEq)]
enum FramePayloadOwned {
    Method(Vec<u8>),
    Header(u64),
    Body(Vec<u8>),
    Heartbeat,
}

/// A session, its unconsumed input and a fake clock.
struct Harness {
    session: Session,
    inbuf: Vec<u8>,
    now: Instant,
}

impl Harness {
    fn new(config: SessionConfig) -> Harness {
        let now = Instant::now();
        let mut h = Harness {
            session: Session::new(config, now),
            inbuf: Vec::new(),
            now,
        };
        assert_eq!(h.sent(), PROTOCOL_HEADER);
        h
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.inbuf.extend_from_slice(bytes);
        let used = self.session.handle_input(&self.inbuf, self.now)?;
        assert!(used <= self.inbuf.len());
        self.inbuf.drain(..used);
        Ok(())
    }

    fn sent(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        out
    }

    /// The names of the methods sent, with their channel.
    fn sent_methods(&mut self) -> Vec<(u16, &'static str)> {
        decode_all(&self.sent())
            .into_iter()
            .map(|(channel, payload)| match payload {
                FramePayloadOwned::Method(p) => (channel, Method::decode(&p).unwrap().name()),
                FramePayloadOwned::Header(_) => (channel, "header"),
                FramePayloadOwned::Body(_) => (channel, "body"),
                FramePayloadOwned::Heartbeat => (channel, "heartbeat"),
            })
            .collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }
}

/// Everything the server says from connection.start to consume-ok.
fn handshake_script(publisher: bool, tune: ConnectionTune) -> Vec<u8> {
    let mut script = data::read("amqp/connection_start.bin");
    script.extend(frame(0, tune));
    script.extend(frame(0, ConnectionOpenOk { known_hosts: b"" }));
    if publisher {
        script.extend(frame(2, ChannelOpenOk { channel_id: b"" }));
        script.extend(frame(2, ConfirmSelectOk {}));
    }
    script.extend(frames([
        (1, ChannelOpenOk { channel_id: b"" }.into()),
        (
            1,
            QueueDeclareOk {
                queue: QUEUE.as_bytes(),
                message_count: 5,
                consumer_count: 1,
            }
            .into(),
        ),
        (1, BasicQosOk {}.into()),
        (
            1,
            BasicConsumeOk {
                consumer_tag: b"ferry-1",
            }
            .into(),
        ),
    ]));
    script
}

/// A session that is consuming, its handshake output discarded.
fn consuming(config: SessionConfig, frame_max: u32) -> Harness {
    let publisher = config.publisher;
    let mut h = Harness::new(config);
    h.feed(&handshake_script(publisher, tune(frame_max, 60)))
        .unwrap();
    h.sent();
    assert_eq!(
        h.events(),
        [Event::Ready {
            message_count: 5,
            consumer_count: 1
        }]
    );
    h
}

// ---- handshake ----------------------------------------------------------------------

#[test]
fn handshake_sends_exactly_these_methods() {
    let mut h = Harness::new(config());
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    let sent = h.sent();
    let [(0, FramePayloadOwned::Method(payload))] = &decode_all(&sent)[..] else {
        panic!("one method expected")
    };
    let Method::ConnectionStartOk(start_ok) = Method::decode(payload).unwrap() else {
        panic!("start-ok expected")
    };
    assert_eq!(start_ok.mechanism, b"PLAIN");
    assert_eq!(start_ok.response, b"\0guest\0s3cret");
    assert_eq!(start_ok.locale, b"en_US");
    let props = start_ok.client_properties;
    assert_eq!(props.get(b"product"), Some(FieldValue::LongStr(b"ferry")));
    assert_eq!(
        props.get(b"version"),
        Some(FieldValue::LongStr(env!("CARGO_PKG_VERSION").as_bytes()))
    );
    assert_eq!(
        props.get(b"connection_name"),
        Some(FieldValue::LongStr(b"ferry test"))
    );
    let Some(FieldValue::Table(caps)) = props.get(b"capabilities") else {
        panic!("capabilities expected")
    };
    for cap in [
        &b"consumer_cancel_notify"[..],
        b"basic.nack",
        b"connection.blocked",
        b"publisher_confirms",
        b"authentication_failure_close",
    ] {
        assert_eq!(caps.get(cap), Some(FieldValue::Bool(true)), "{cap:?}");
    }

    h.feed(&frame(0, tune(131_072, 60))).unwrap();
    assert_eq!(
        h.sent(),
        frames([
            (
                0,
                ConnectionTuneOk {
                    channel_max: 1,
                    frame_max: 131_072,
                    heartbeat: 30
                }
                .into()
            ),
            (
                0,
                ConnectionOpen {
                    virtual_host: b"/",
                    capabilities: b"",
                    insist: false
                }
                .into()
            ),
        ])
    );
    h.feed(&frame(0, ConnectionOpenOk { known_hosts: b"" }))
        .unwrap();
    assert_eq!(h.sent(), frame(1, ChannelOpen { out_of_band: b"" }));
    h.feed(&frame(1, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs",
                passive: true,
                durable: false,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: FieldTable::EMPTY
            }
        )
    );
    h.feed(&frame(
        1,
        QueueDeclareOk {
            queue: b"jobs",
            message_count: 5,
            consumer_count: 1,
        },
    ))
    .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicQos {
                prefetch_size: 0,
                prefetch_count: 4,
                global: false
            }
        )
    );
    h.feed(&frame(1, BasicQosOk {})).unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicConsume {
                ticket: 0,
                queue: b"jobs",
                consumer_tag: b"ferry-1",
                no_local: false,
                no_ack: false,
                exclusive: false,
                no_wait: false,
                arguments: FieldTable::EMPTY
            }
        )
    );
    assert_eq!(h.events(), []);
    h.feed(&frame(
        1,
        BasicConsumeOk {
            consumer_tag: b"ferry-1",
        },
    ))
    .unwrap();
    assert_eq!(
        h.events(),
        [Event::Ready {
            message_count: 5,
            consumer_count: 1
        }]
    );
    assert_eq!(h.sent(), b"");
    assert_eq!(h.session.state_name(), "consuming");
}

#[test]
fn handshake_split_at_every_byte_gives_the_same_conversation() {
    for publisher in [false, true] {
        let cfg = SessionConfig {
            publisher,
            ..config()
        };
        let script = handshake_script(publisher, tune(131_072, 60));
        let mut whole = Harness::new(cfg.clone());
        whole.feed(&script).unwrap();
        let expected_bytes = whole.sent();
        let expected_events = whole.events();
        assert_eq!(expected_events.len(), 1);

        for split in 0..=script.len() {
            let mut h = Harness::new(cfg.clone());
            h.feed(&script[..split]).unwrap();
            let mut sent = h.sent();
            h.feed(&script[split..]).unwrap();
            sent.extend(h.sent());
            assert_eq!(sent, expected_bytes, "split at {split}");
            assert_eq!(h.events(), expected_events, "split at {split}");
            assert!(h.inbuf.is_empty());
        }
        // And one byte at a time.
        let mut h = Harness::new(cfg.clone());
        let mut sent = Vec::new();
        for byte in &script {
            h.feed(std::slice::from_ref(byte)).unwrap();
            sent.extend(h.sent());
        }
        assert_eq!(sent, expected_bytes);
        assert_eq!(h.events(), expected_events);
    }
}

#[test]
fn publisher_channel_is_set_up_before_the_consumer() {
    let mut h = Harness::new(publisher_config());
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    h.feed(&frame(0, tune(0, 0))).unwrap();
    h.sent();
    // frame_max 0 means no limit: ours; heartbeat 0 from the server: ours.
    assert_eq!(
        h.session.tuning(),
        Some(Tuning {
            channel_max: 2,
            frame_max: 131_072,
            heartbeat_s: 30
        })
    );
    h.feed(&frame(0, ConnectionOpenOk { known_hosts: b"" }))
        .unwrap();
    assert_eq!(h.sent(), frame(2, ChannelOpen { out_of_band: b"" }));
    h.feed(&frame(2, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    assert_eq!(h.sent(), frame(2, ConfirmSelect { no_wait: false }));
    h.feed(&frame(2, ConfirmSelectOk {})).unwrap();
    assert_eq!(h.sent(), frame(1, ChannelOpen { out_of_band: b"" }));
}

#[test]
fn tune_negotiation() {
    let cases = [
        // (server frame_max, server heartbeat, our heartbeat) → (frame_max, heartbeat)
        (131_072, 60, 30, 131_072, 30),
        (1 << 20, 10, 30, 131_072, 10),
        (4096, 60, 0, 4096, 0),
        (8192, 0, 30, 8192, 30),
        (0, 0, 0, 131_072, 0),
    ];
    for (frame_max, server_hb, our_hb, want_frame_max, want_hb) in cases {
        let mut h = Harness::new(SessionConfig {
            heartbeat_s: our_hb,
            ..config()
        });
        h.feed(&data::read("amqp/connection_start.bin")).unwrap();
        h.feed(&frame(0, tune(frame_max, server_hb))).unwrap();
        let tuning = h.session.tuning().unwrap();
        assert_eq!(
            (tuning.frame_max, tuning.heartbeat_s),
            (want_frame_max, want_hb),
            "{frame_max} {server_hb} {our_hb}"
        );
    }
    let mut h = Harness::new(config());
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    assert_eq!(
        h.feed(&frame(0, tune(2048, 60))),
        Err(SessionError::Incompatible(
            "server frame_max is below the AMQP minimum of 4096"
        ))
    );
    assert!(h.session.is_finished());
}

#[test]
fn a_server_without_plain_is_incompatible() {
    let mut h = Harness::new(config());
    let start = ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: FieldTable::EMPTY,
        mechanisms: b"AMQPLAIN EXTERNAL",
        locales: b"en_US",
    };
    assert!(matches!(
        h.feed(&frame(0, start)),
        Err(SessionError::Incompatible(_))
    ));
    assert_eq!(h.events(), [Event::Closed]);
}

#[test]
fn auth_failure_is_a_typed_error_with_the_broker_text() {
    let mut h = Harness::new(config());
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    h.sent();
    let text = b"ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.";
    h.feed(&frame(
        0,
        ConnectionClose {
            reply_code: 403,
            reply_text: text,
            class_id: 0,
            method_id: 0,
        },
    ))
    .unwrap();
    assert_eq!(h.sent(), frame(0, ConnectionCloseOk {}));
    assert_eq!(
        h.events(),
        [
            Event::Failed(SessionError::AuthFailed {
                text: String::from_utf8(text.to_vec()).unwrap()
            }),
            Event::Closed
        ]
    );
    assert!(h.session.is_finished());
    assert_eq!(h.session.poll_timeout(), None);
}

// ---- declare modes ------------------------------------------------------------------

fn until_declare(config: SessionConfig) -> Harness {
    let mut h = Harness::new(config);
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    h.feed(&frame(0, tune(131_072, 60))).unwrap();
    h.feed(&frame(0, ConnectionOpenOk { known_hosts: b"" }))
        .unwrap();
    h.feed(&frame(1, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    h.sent();
    h
}

fn channel_close(channel: u16, code: u16, text: &[u8]) -> Vec<u8> {
    frame(
        channel,
        ChannelClose {
            reply_code: code,
            reply_text: text,
            class_id: 50,
            method_id: 10,
        },
    )
}

#[test]
fn if_missing_reopens_the_channel_and_declares_durable_after_a_404() {
    let mut h = until_declare(config());
    h.feed(&channel_close(
        1,
        404,
        b"NOT_FOUND - no queue 'jobs' in vhost '/'",
    ))
    .unwrap();
    assert_eq!(
        h.sent(),
        frames([
            (1, ChannelCloseOk {}.into()),
            (1, ChannelOpen { out_of_band: b"" }.into())
        ])
    );
    assert_eq!(h.events(), []);
    h.feed(&frame(1, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs",
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: FieldTable::EMPTY
            }
        )
    );
    h.feed(&frame(
        1,
        QueueDeclareOk {
            queue: b"jobs",
            message_count: 0,
            consumer_count: 0,
        },
    ))
    .unwrap();
    h.feed(&frame(1, BasicQosOk {})).unwrap();
    h.feed(&frame(
        1,
        BasicConsumeOk {
            consumer_tag: b"ferry-1",
        },
    ))
    .unwrap();
    assert_eq!(
        h.events(),
        [Event::Ready {
            message_count: 0,
            consumer_count: 0
        }]
    );
}

#[test]
fn check_only_fails_with_queue_missing_and_closes() {
    let mut h = until_declare(SessionConfig {
        declare: DeclareMode::CheckOnly,
        ..config()
    });
    h.feed(&channel_close(1, 404, b"NOT_FOUND - no queue 'jobs'"))
        .unwrap();
    assert_eq!(
        h.sent_methods(),
        [(1, "channel.close-ok"), (0, "connection.close")]
    );
    assert_eq!(
        h.events(),
        [Event::Failed(SessionError::QueueMissing {
            queue: "jobs".into(),
            text: "NOT_FOUND - no queue 'jobs'".into()
        })]
    );
    h.feed(&frame(0, ConnectionCloseOk {})).unwrap();
    assert_eq!(h.events(), [Event::Closed]);
}

#[test]
fn exactly_declares_with_the_arguments_and_reports_a_precondition_failure() {
    let args = serde_json::json!({"x-queue-type": "quorum"});
    let arguments = table_from_json(args.as_object().unwrap()).unwrap();
    let mut h = until_declare(SessionConfig {
        declare: DeclareMode::Exactly {
            durable: true,
            arguments: arguments.clone(),
        },
        ..config()
    });
    // until_declare discarded the declare: run again to see it.
    let mut fresh = Harness::new(SessionConfig {
        declare: DeclareMode::Exactly {
            durable: true,
            arguments: arguments.clone(),
        },
        ..config()
    });
    fresh
        .feed(&data::read("amqp/connection_start.bin"))
        .unwrap();
    fresh.feed(&frame(0, tune(131_072, 60))).unwrap();
    fresh
        .feed(&frame(0, ConnectionOpenOk { known_hosts: b"" }))
        .unwrap();
    fresh.sent();
    fresh
        .feed(&frame(1, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    assert_eq!(
        fresh.sent(),
        frame(
            1,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs",
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: arguments.as_table()
            }
        )
    );

    let text = b"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'jobs'";
    h.feed(&channel_close(1, 406, text)).unwrap();
    assert_eq!(
        h.events(),
        [Event::Failed(SessionError::PreconditionFailed {
            channel: 1,
            text: String::from_utf8(text.to_vec()).unwrap()
        })]
    );
    assert_eq!(
        h.sent_methods(),
        [(1, "channel.close-ok"), (0, "connection.close")]
    );
}

// ---- deliveries ---------------------------------------------------------------------

#[test]
fn single_frame_delivery_with_properties() {
    let mut h = consuming(config(), 131_072);
    let mut headers = TableBuilder::new();
    headers
        .insert(b"x-ferry-attempt", FieldValue::I32(3))
        .unwrap()
        .insert(b"tenant", FieldValue::LongStr(b"acme"))
        .unwrap()
        .insert(b"flag", FieldValue::Bool(true))
        .unwrap();
    let props = BasicProperties {
        content_type: Some(b"application/json"),
        headers: Some(headers.as_table()),
        delivery_mode: Some(2),
        correlation_id: Some(b"c-9"),
        reply_to: Some(b"answers"),
        message_id: Some(b"m-1"),
        timestamp: Some(1_700_000_000),
        ..BasicProperties::default()
    };
    let mut script = deliver(1, true);
    script.extend(content(1, &props, br#"{"n":1}"#, 131_072));
    h.feed(&script).unwrap();
    let events = h.events();
    let [Event::Delivery(d)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(d.tag, DeliveryTag(1));
    assert!(d.redelivered);
    assert_eq!(d.exchange, "");
    assert_eq!(d.routing_key, "jobs");
    assert_eq!(d.body, br#"{"n":1}"#);
    let p = &d.properties;
    assert_eq!(p.content_type.as_deref(), Some(&b"application/json"[..]));
    assert_eq!(p.message_id.as_deref(), Some(&b"m-1"[..]));
    assert_eq!(p.correlation_id.as_deref(), Some(&b"c-9"[..]));
    assert_eq!(p.reply_to.as_deref(), Some(&b"answers"[..]));
    assert_eq!(p.timestamp, Some(1_700_000_000));
    assert_eq!(p.delivery_mode, Some(2));
    assert_eq!(
        p.headers,
        [
            ("x-ferry-attempt".to_string(), HeaderValue::Int(3)),
            ("tenant".to_string(), HeaderValue::Text("acme".into())),
            ("flag".to_string(), HeaderValue::Bool(true)),
        ]
    );
    assert_eq!(p.headers_table(), Some(headers.as_table()));
    assert_eq!(p.as_basic(), props);
    assert_eq!(h.session.unacked_count(), 1);
}

#[test]
fn empty_body_delivery_completes_at_the_header() {
    let mut h = consuming(config(), 131_072);
    let mut script = deliver(1, false);
    script.extend(content(1, &BasicProperties::default(), b"", 131_072));
    h.feed(&script).unwrap();
    let events = h.events();
    assert!(matches!(&events[..], [Event::Delivery(d)] if d.body.is_empty()));
}

#[test]
fn multi_frame_delivery_captured_from_rabbitmq() {
    // The capture was made with frame_max 4096 negotiated: the body spans several frames.
    let mut h = consuming(config(), 4096);
    let captured = data::read("amqp/deliver_multiframe.bin");
    let published = data::read("amqp/published_body.bin");
    // Split at every byte boundary of the first frames too: the result is the same.
    for split in [1, 7, 100, 4095, 4096, captured.len() - 1] {
        let mut h2 = consuming(config(), 4096);
        h2.feed(&captured[..split]).unwrap();
        assert_eq!(h2.events(), []);
        h2.feed(&captured[split..]).unwrap();
        let events = h2.events();
        assert!(
            matches!(&events[..], [Event::Delivery(d)] if d.body == published),
            "split {split}"
        );
    }
    h.feed(&captured).unwrap();
    let events = h.events();
    let [Event::Delivery(d)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(d.body, published);
    assert!(d.body.len() > 4096);
}

#[test]
fn a_frame_above_the_negotiated_frame_max_is_refused() {
    let mut h = consuming(config(), 4096);
    let mut script = deliver(1, false);
    script.extend(content(1, &BasicProperties::default(), &[0; 8000], 131_072));
    assert!(matches!(
        h.feed(&script),
        Err(SessionError::Codec(AmqpError::FrameTooLarge {
            frame_max: 4096,
            ..
        }))
    ));
    assert!(h.session.is_finished());
}

#[test]
fn a_too_large_body_is_skipped_not_buffered() {
    let mut h = consuming(
        SessionConfig {
            max_message_bytes: 1000,
            ..config()
        },
        4096,
    );
    // The header announces a terabyte: the event comes at once, before any body frame.
    let huge: u64 = 1 << 40;
    let mut header = Vec::new();
    encode_header_frame(
        &mut header,
        1,
        &ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: huge,
            properties: BasicProperties::default(),
        },
        4096,
    )
    .unwrap();
    h.feed(&deliver(1, false)).unwrap();
    h.feed(&header).unwrap();
    assert_eq!(
        h.events(),
        [Event::TooLarge {
            tag: DeliveryTag(1),
            size: huge
        }]
    );
    // Body frames are consumed and dropped.
    let mut chunk = Vec::new();
    encode_body_frame(&mut chunk, 1, &[7; 4088], 4096).unwrap();
    for _ in 0..64 {
        h.feed(&chunk).unwrap();
    }
    assert_eq!(h.events(), []);
    // It is unacked like any delivery: dispatch rejects it.
    h.session.reject(DeliveryTag(1), false).unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicReject {
                delivery_tag: 1,
                requeue: false
            }
        )
    );

    // A too-large body that ends is followed by ordinary deliveries.
    let mut h = consuming(
        SessionConfig {
            max_message_bytes: 1000,
            ..config()
        },
        4096,
    );
    let mut script = deliver(1, false);
    script.extend(content(1, &BasicProperties::default(), &[1; 10_000], 4096));
    script.extend(deliver(2, false));
    script.extend(content(1, &BasicProperties::default(), &[2; 1000], 4096));
    h.feed(&script).unwrap();
    let events = h.events();
    assert_eq!(
        events[0],
        Event::TooLarge {
            tag: DeliveryTag(1),
            size: 10_000
        }
    );
    assert!(
        matches!(&events[1], Event::Delivery(d) if d.tag == DeliveryTag(2) && d.body == [2; 1000])
    );
    assert_eq!(events.len(), 2);

    // More body than announced is an error even when skipping.
    let mut h = consuming(
        SessionConfig {
            max_message_bytes: 10,
            ..config()
        },
        4096,
    );
    let mut script = deliver(1, false);
    let mut header = Vec::new();
    encode_header_frame(
        &mut header,
        1,
        &ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 20,
            properties: BasicProperties::default(),
        },
        4096,
    )
    .unwrap();
    script.extend(header);
    encode_body_frame(&mut script, 1, &[0; 30], 4096).unwrap();
    assert!(matches!(
        h.feed(&script),
        Err(SessionError::Codec(AmqpError::BodyOverrun { .. }))
    ));
}

// ---- settling -----------------------------------------------------------------------

fn with_deliveries(tags: &[u64]) -> Harness {
    let mut h = consuming(config(), 131_072);
    for &tag in tags {
        let mut script = deliver(tag, false);
        script.extend(content(1, &BasicProperties::default(), b"x", 131_072));
        h.feed(&script).unwrap();
    }
    assert_eq!(h.events().len(), tags.len());
    h
}

#[test]
fn ack_nack_reject_send_the_right_tags_and_refuse_unknown_ones() {
    let mut h = with_deliveries(&[1, 2, 3]);
    h.session.ack(DeliveryTag(2)).unwrap();
    h.session.nack(DeliveryTag(1), true).unwrap();
    h.session.reject(DeliveryTag(3), false).unwrap();
    // Nacks and rejects are encoded when asked for; the turn's acks follow them.
    assert_eq!(
        h.sent(),
        frames([
            (
                1,
                BasicNack {
                    delivery_tag: 1,
                    multiple: false,
                    requeue: true
                }
                .into()
            ),
            (
                1,
                BasicReject {
                    delivery_tag: 3,
                    requeue: false
                }
                .into()
            ),
            (
                1,
                BasicAck {
                    delivery_tag: 2,
                    multiple: false
                }
                .into()
            ),
        ])
    );
    for tag in [1, 2, 3, 4, 0, 99] {
        assert_eq!(
            h.session.ack(DeliveryTag(tag)),
            Err(CommandError::UnknownTag(DeliveryTag(tag)))
        );
        assert_eq!(
            h.session.reject(DeliveryTag(tag), true),
            Err(CommandError::UnknownTag(DeliveryTag(tag)))
        );
    }
    assert_eq!(h.sent(), b"", "refused commands send nothing");
    assert_eq!(h.session.unacked_count(), 0);
}

#[test]
fn acks_of_one_turn_below_every_unacked_tag_share_one_multiple_ack() {
    let mut h = with_deliveries(&[1, 2, 3, 4, 5, 6]);
    for tag in [2, 1, 5, 6] {
        h.session.ack(DeliveryTag(tag)).unwrap();
    }
    // 3 and 4 are still in flight: 1–2 go as one multiple ack; 5 and 6 must not cover
    // 3 and 4, so they go one by one.
    assert_eq!(
        h.sent(),
        frames([
            (
                1,
                BasicAck {
                    delivery_tag: 2,
                    multiple: true
                }
                .into()
            ),
            (
                1,
                BasicAck {
                    delivery_tag: 5,
                    multiple: false
                }
                .into()
            ),
            (
                1,
                BasicAck {
                    delivery_tag: 6,
                    multiple: false
                }
                .into()
            ),
        ])
    );
    h.session.ack(DeliveryTag(3)).unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicAck {
                delivery_tag: 3,
                multiple: false
            }
        ),
        "a lone ack stays single"
    );
    assert_eq!(h.session.unacked_count(), 1);
    assert_eq!(
        h.session.ack(DeliveryTag(2)),
        Err(CommandError::UnknownTag(DeliveryTag(2)))
    );
}

#[test]
fn acks_asked_for_before_a_close_go_out_before_it() {
    let mut h = with_deliveries(&[1, 2]);
    h.session.ack(DeliveryTag(1)).unwrap();
    h.session.close();
    assert_eq!(
        h.sent_methods(),
        [(1, "basic.ack"), (0, "connection.close")]
    );
}

#[test]
fn delivery_tags_must_grow() {
    let mut h = with_deliveries(&[1, 2]);
    h.session.ack(DeliveryTag(2)).unwrap();
    assert_eq!(
        h.feed(&deliver(2, false)),
        Err(SessionError::DeliveryTagOutOfOrder(2))
    );
    assert_eq!(h.events(), [Event::Closed]);
    assert_eq!(h.session.ack(DeliveryTag(1)), Err(CommandError::Closed));
}

// ---- cancel -------------------------------------------------------------------------

#[test]
fn our_cancel_still_delivers_what_was_in_flight() {
    let mut h = with_deliveries(&[1]);
    h.session.cancel().unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicCancel {
                consumer_tag: b"ferry-1",
                no_wait: false
            }
        )
    );
    let mut script = deliver(2, false);
    script.extend(content(1, &BasicProperties::default(), b"late", 131_072));
    script.extend(frame(
        1,
        BasicCancelOk {
            consumer_tag: b"ferry-1",
        },
    ));
    h.feed(&script).unwrap();
    let events = h.events();
    assert!(matches!(&events[0], Event::Delivery(d) if d.tag == DeliveryTag(2)));
    assert_eq!(events[1], Event::Cancelled);
    h.session.ack(DeliveryTag(1)).unwrap();
    h.session.ack(DeliveryTag(2)).unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicAck {
                delivery_tag: 2,
                multiple: true
            }
        ),
        "both in one frame"
    );
    // A second cancel is a no-op.
    h.session.cancel().unwrap();
    assert_eq!(h.sent(), b"");
}

#[test]
fn server_cancel_is_not_answered_and_deliveries_stay_settleable() {
    let mut h = with_deliveries(&[1]);
    h.feed(&frame(
        1,
        BasicCancel {
            consumer_tag: b"ferry-1",
            no_wait: true,
        },
    ))
    .unwrap();
    assert_eq!(h.events(), [Event::ConsumerCancelledByServer]);
    assert_eq!(h.sent(), b"");
    h.session.ack(DeliveryTag(1)).unwrap();
    assert_eq!(h.sent_methods(), [(1, "basic.ack")]);

    // Without no_wait the spec wants an answer.
    let mut h = with_deliveries(&[]);
    h.feed(&frame(
        1,
        BasicCancel {
            consumer_tag: b"ferry-1",
            no_wait: false,
        },
    ))
    .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            BasicCancelOk {
                consumer_tag: b"ferry-1"
            }
        )
    );
}

// ---- publisher ----------------------------------------------------------------------

fn publish(h: &mut Harness, body: &[u8]) -> PublishSeq {
    h.session
        .publish(
            "",
            "jobs.ferry-retry.1000",
            true,
            &BasicProperties::default(),
            body,
        )
        .unwrap()
}

#[test]
fn publish_splits_the_body_at_the_negotiated_frame_max() {
    let mut h = consuming(publisher_config(), 4096);
    let body = vec![9u8; 10_000];
    let props = BasicProperties {
        message_id: Some(b"m"),
        delivery_mode: Some(2),
        ..BasicProperties::default()
    };
    let seq = h
        .session
        .publish("dlx", "failed", true, &props, &body)
        .unwrap();
    assert_eq!(seq, PublishSeq(1));
    let sent = h.sent();
    let mut expected = frame(
        2,
        BasicPublish {
            ticket: 0,
            exchange: b"dlx",
            routing_key: b"failed",
            mandatory: true,
            immediate: false,
        },
    );
    expected.extend(content(2, &props, &body, 4096));
    assert_eq!(sent, expected);
    let decoded = decode_all(&sent);
    assert_eq!(decoded.len(), 5); // method, header, 3 body frames
    assert!(decoded
        .iter()
        .all(|(channel, _)| *channel == PUBLISHER_CHANNEL));
    assert_eq!(h.session.unconfirmed_count(), 1);
}

#[test]
fn confirms_with_multiple_and_nacks() {
    let mut h = consuming(publisher_config(), 131_072);
    let seqs: Vec<_> = (0..4).map(|_| publish(&mut h, b"copy")).collect();
    assert_eq!(seqs, (1..=4).map(PublishSeq).collect::<Vec<_>>());
    h.sent();
    h.feed(&frames([
        (
            2,
            BasicAck {
                delivery_tag: 3,
                multiple: false,
            }
            .into(),
        ),
        (
            2,
            BasicAck {
                delivery_tag: 2,
                multiple: true,
            }
            .into(),
        ),
        (
            2,
            BasicNack {
                delivery_tag: 4,
                multiple: false,
                requeue: false,
            }
            .into(),
        ),
    ]))
    .unwrap();
    assert_eq!(
        h.events(),
        [
            Event::Confirmed(PublishSeq(3)),
            Event::Confirmed(PublishSeq(1)),
            Event::Confirmed(PublishSeq(2)),
            Event::Nacked(PublishSeq(4)),
        ]
    );
    assert_eq!(h.session.unconfirmed_count(), 0);
    assert_eq!(
        h.feed(&frame(
            2,
            BasicAck {
                delivery_tag: 4,
                multiple: false
            }
        )),
        Err(SessionError::UnknownConfirm(4))
    );
}

#[test]
fn a_return_marks_the_publish_its_ack_names() {
    let mut h = consuming(publisher_config(), 131_072);
    let first = publish(&mut h, b"routed");
    let second = publish(&mut h, b"unroutable");
    let mut script = frame(
        2,
        BasicReturn {
            reply_code: 312,
            reply_text: b"NO_ROUTE",
            exchange: b"",
            routing_key: b"nowhere",
        },
    );
    script.extend(content(
        2,
        &BasicProperties::default(),
        b"unroutable",
        131_072,
    ));
    script.extend(frame(
        2,
        BasicAck {
            delivery_tag: 2,
            multiple: false,
        },
    ));
    script.extend(frame(
        2,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    ));
    // Split everywhere: the return's content may arrive in pieces.
    for split in 0..script.len() {
        let mut h2 = consuming(publisher_config(), 131_072);
        publish(&mut h2, b"routed");
        publish(&mut h2, b"unroutable");
        h2.feed(&script[..split]).unwrap();
        h2.feed(&script[split..]).unwrap();
        assert_eq!(h2.events().len(), 2, "split {split}");
    }
    h.feed(&script).unwrap();
    assert_eq!(
        h.events(),
        [
            Event::Returned {
                seq: second,
                reply_code: 312,
                reply_text: "NO_ROUTE".into()
            },
            Event::Confirmed(first),
        ]
    );
}

#[test]
fn a_return_followed_by_a_multiple_ack() {
    let mut h = consuming(publisher_config(), 131_072);
    publish(&mut h, b"a");
    publish(&mut h, b"b");
    let mut script = frame(
        2,
        BasicReturn {
            reply_code: 312,
            reply_text: b"NO_ROUTE",
            exchange: b"",
            routing_key: b"x",
        },
    );
    script.extend(content(2, &BasicProperties::default(), b"", 131_072));
    script.extend(frame(
        2,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    ));
    h.feed(&script).unwrap();
    assert_eq!(
        h.events(),
        [
            Event::Confirmed(PublishSeq(1)),
            Event::Returned {
                seq: PublishSeq(2),
                reply_code: 312,
                reply_text: "NO_ROUTE".into()
            },
        ]
    );
}

#[test]
fn declare_retry_queue_sends_ttl_and_dead_letter_arguments() {
    let mut h = consuming(publisher_config(), 131_072);
    h.session
        .declare_retry_queue("jobs.ferry-retry.1000", 1000, "jobs")
        .unwrap();
    let mut args = TableBuilder::new();
    args.insert(b"x-message-ttl", FieldValue::I64(1000))
        .unwrap()
        .insert(b"x-dead-letter-exchange", FieldValue::LongStr(b""))
        .unwrap()
        .insert(b"x-dead-letter-routing-key", FieldValue::LongStr(b"jobs"))
        .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            2,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs.ferry-retry.1000",
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: args.as_table()
            }
        )
    );
    h.feed(&frame(
        2,
        QueueDeclareOk {
            queue: b"jobs.ferry-retry.1000",
            message_count: 0,
            consumer_count: 0,
        },
    ))
    .unwrap();
    assert_eq!(
        h.events(),
        [Event::RetryQueueDeclared {
            queue: "jobs.ferry-retry.1000".into()
        }]
    );
    // An unasked declare-ok is a protocol error.
    assert!(matches!(
        h.feed(&frame(
            2,
            QueueDeclareOk {
                queue: b"x",
                message_count: 0,
                consumer_count: 0
            }
        )),
        Err(SessionError::UnexpectedMethod {
            method: "queue.declare-ok",
            channel: 2,
            ..
        })
    ));
}

fn quorum(config: SessionConfig) -> SessionConfig {
    SessionConfig {
        queue_type: QueueType::Quorum,
        ..config
    }
}

#[test]
fn a_quorum_session_checks_passively_first_then_creates_a_durable_quorum_queue() {
    let mut h = Harness::new(quorum(config()));
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    h.feed(&frame(0, tune(131_072, 60))).unwrap();
    h.feed(&frame(0, ConnectionOpenOk { known_hosts: b"" }))
        .unwrap();
    h.sent();
    h.feed(&frame(1, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    // Someone else's queue is used whatever its arguments: a passive declare, no type.
    assert_eq!(
        h.sent(),
        frame(
            1,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs",
                passive: true,
                durable: false,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: FieldTable::EMPTY
            }
        )
    );
    h.feed(&channel_close(1, 404, b"NOT_FOUND - no queue 'jobs'"))
        .unwrap();
    h.sent();
    h.feed(&frame(1, ChannelOpenOk { channel_id: b"" }))
        .unwrap();
    let mut args = TableBuilder::new();
    args.insert(b"x-queue-type", FieldValue::LongStr(b"quorum"))
        .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            1,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs",
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: args.as_table()
            }
        ),
        "created durable, not exclusive, with x-queue-type quorum"
    );
}

#[test]
fn a_quorum_session_declares_quorum_retry_queues() {
    let mut h = consuming(quorum(publisher_config()), 131_072);
    h.session
        .declare_retry_queue("jobs.ferry-retry.1000", 1000, "jobs")
        .unwrap();
    let mut args = TableBuilder::new();
    args.insert(b"x-message-ttl", FieldValue::I64(1000))
        .unwrap()
        .insert(b"x-dead-letter-exchange", FieldValue::LongStr(b""))
        .unwrap()
        .insert(b"x-dead-letter-routing-key", FieldValue::LongStr(b"jobs"))
        .unwrap()
        .insert(b"x-queue-type", FieldValue::LongStr(b"quorum"))
        .unwrap();
    assert_eq!(
        h.sent(),
        frame(
            2,
            QueueDeclare {
                ticket: 0,
                queue: b"jobs.ferry-retry.1000",
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                no_wait: false,
                arguments: args.as_table()
            }
        )
    );
}

#[test]
fn a_retry_queue_with_other_arguments_is_a_precondition_failure() {
    let mut h = consuming(publisher_config(), 131_072);
    h.session
        .declare_retry_queue("jobs.ferry-retry.1000", 1000, "jobs")
        .unwrap();
    h.sent();
    h.feed(&channel_close(
        2,
        406,
        b"PRECONDITION_FAILED - inequivalent arg",
    ))
    .unwrap();
    assert_eq!(
        h.events(),
        [Event::Failed(SessionError::PreconditionFailed {
            channel: 2,
            text: "PRECONDITION_FAILED - inequivalent arg".into()
        })]
    );
    assert_eq!(
        h.sent_methods(),
        [(2, "channel.close-ok"), (0, "connection.close")]
    );
}

#[test]
fn publishing_needs_a_publisher_channel() {
    let mut h = consuming(config(), 131_072);
    assert_eq!(
        h.session
            .publish("", "q", false, &BasicProperties::default(), b""),
        Err(CommandError::NoPublisher)
    );
    let mut h = Harness::new(publisher_config());
    assert_eq!(
        h.session
            .publish("", "q", false, &BasicProperties::default(), b""),
        Err(CommandError::NotReady {
            state: "awaiting connection.start"
        })
    );
    let mut h = consuming(publisher_config(), 131_072);
    let long = "x".repeat(300);
    assert!(matches!(
        h.session
            .publish("", &long, false, &BasicProperties::default(), b""),
        Err(CommandError::Encode(AmqpError::ShortStrTooLong(300)))
    ));
    assert_eq!(h.sent(), b"");
    // A refused publish takes no sequence number.
    assert_eq!(publish(&mut h, b"ok"), PublishSeq(1));
}

#[test]
fn blocked_connection_holds_publishes_but_not_acks() {
    let mut h = consuming(publisher_config(), 131_072);
    let mut script = deliver(1, false);
    script.extend(content(1, &BasicProperties::default(), b"m", 131_072));
    script.extend(frame(
        0,
        ConnectionBlocked {
            reason: b"low on memory",
        },
    ));
    h.feed(&script).unwrap();
    let events = h.events();
    assert_eq!(
        events[1],
        Event::Blocked {
            reason: "low on memory".into()
        }
    );
    assert!(h.session.is_blocked());
    let seq = publish(&mut h, b"held");
    assert_eq!(seq, PublishSeq(1));
    h.session.ack(DeliveryTag(1)).unwrap();
    assert_eq!(h.sent_methods(), [(1, "basic.ack")]);
    h.feed(&frame(0, ConnectionUnblocked {})).unwrap();
    assert_eq!(h.events(), [Event::Unblocked]);
    assert_eq!(
        h.sent_methods(),
        [(2, "basic.publish"), (2, "header"), (2, "body")]
    );
}

// ---- server closes ------------------------------------------------------------------

#[test]
fn channel_close_by_the_server_ends_the_session_cleanly() {
    let mut h = with_deliveries(&[1, 2]);
    h.feed(&channel_close(
        1,
        406,
        b"PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out",
    ))
    .unwrap();
    assert_eq!(
        h.events(),
        [Event::Failed(SessionError::ChannelClosed {
            channel: 1,
            code: 406,
            text: "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out".into()
        })]
    );
    assert_eq!(
        h.sent_methods(),
        [(1, "channel.close-ok"), (0, "connection.close")]
    );
    // Old tags are void now.
    assert_eq!(h.session.ack(DeliveryTag(1)), Err(CommandError::Closed));
    // While closing, everything but close/close-ok is discarded.
    let mut script = deliver(3, false);
    script.extend(content(1, &BasicProperties::default(), b"ignored", 131_072));
    script.extend(frame(0, ConnectionCloseOk {}));
    h.feed(&script).unwrap();
    assert_eq!(h.events(), [Event::Closed]);
    assert!(h.session.is_finished());
    // Bytes after the end are swallowed.
    h.feed(b"garbage").unwrap();
}

#[test]
fn connection_close_by_the_server() {
    let mut h = with_deliveries(&[1]);
    h.feed(&frame(
        0,
        ConnectionClose {
            reply_code: 320,
            reply_text:
                b"CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
            class_id: 0,
            method_id: 0,
        },
    ))
    .unwrap();
    assert_eq!(h.sent(), frame(0, ConnectionCloseOk {}));
    let events = h.events();
    assert!(matches!(
        &events[..],
        [
            Event::Failed(SessionError::ServerClosed { code: 320, .. }),
            Event::Closed
        ]
    ));
}

#[test]
fn our_close_waits_for_close_ok_or_times_out() {
    let mut h = with_deliveries(&[1]);
    h.session.close();
    assert_eq!(
        h.sent(),
        frame(
            0,
            ConnectionClose {
                reply_code: 200,
                reply_text: b"ferry closing",
                class_id: 0,
                method_id: 0
            }
        )
    );
    h.session.close();
    assert_eq!(h.sent(), b"", "close is idempotent");
    h.feed(&frame(0, ConnectionCloseOk {})).unwrap();
    assert_eq!(h.events(), [Event::Closed]);

    let mut h = with_deliveries(&[]);
    h.session.close();
    assert_eq!(h.session.poll_timeout(), Some(h.now + CLOSE_TIMEOUT));
    h.advance(CLOSE_TIMEOUT - Duration::from_millis(1));
    assert_eq!(h.events(), []);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.events(), [Event::Closed]);

    // Before tune there is nothing to close politely.
    let mut h = Harness::new(config());
    h.session.close();
    assert_eq!(h.events(), [Event::Closed]);
    assert_eq!(h.sent(), b"");
}

#[test]
fn eof_is_a_lost_connection() {
    let mut h = with_deliveries(&[1]);
    h.session.handle_eof(h.now);
    assert_eq!(
        h.events(),
        [
            Event::Failed(SessionError::ConnectionLost { state: "consuming" }),
            Event::Closed
        ]
    );
    h.session.handle_eof(h.now);
    assert_eq!(h.events(), []);
}

// ---- timers -------------------------------------------------------------------------

#[test]
fn heartbeats_are_sent_when_idle_and_silence_is_fatal() {
    let mut h = consuming(config(), 131_072); // heartbeat min(30, 60) = 30 s
    let t0 = h.now;
    assert_eq!(h.session.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    // Frames were sent since tune: the first check sends nothing.
    h.advance(Duration::from_secs(15));
    assert_eq!(h.sent(), b"");
    assert_eq!(h.session.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    // Then idle: a heartbeat.
    h.advance(Duration::from_secs(15));
    assert_eq!(h.sent(), [8, 0, 0, 0, 0, 0, 0, 0xCE]);
    // An ack in the interval makes the next heartbeat unnecessary.
    h.feed(&{
        let mut s = deliver(1, false);
        s.extend(content(1, &BasicProperties::default(), b"x", 131_072));
        s
    })
    .unwrap();
    let t_received = h.now;
    h.session.ack(DeliveryTag(1)).unwrap();
    h.sent();
    h.advance(Duration::from_secs(15));
    assert_eq!(h.sent(), b"");
    h.advance(Duration::from_secs(15));
    assert_eq!(h.sent(), [8, 0, 0, 0, 0, 0, 0, 0xCE]);
    // A server heartbeat counts as traffic.
    h.feed(&[8, 0, 0, 0, 0, 0, 0, 0xCE]).unwrap();
    let t_heard = h.now;
    assert!(t_heard > t_received);
    assert_eq!(h.events().len(), 1); // the delivery
                                     // Silence for 2 × 30 s ends the session; the earliest deadline is always reported.
    loop {
        let next = h.session.poll_timeout().unwrap();
        assert!(next <= t_heard + Duration::from_secs(60));
        h.now = next;
        h.session.handle_timeout(next);
        if h.session.is_finished() {
            break;
        }
        assert_eq!(h.sent(), [8, 0, 0, 0, 0, 0, 0, 0xCE]);
    }
    assert_eq!(h.now, t_heard + Duration::from_secs(60));
    assert_eq!(
        h.events(),
        [Event::Failed(SessionError::HeartbeatTimeout), Event::Closed]
    );
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn heartbeat_zero_disables_the_timers() {
    let mut h = consuming(
        SessionConfig {
            heartbeat_s: 0,
            ..config()
        },
        131_072,
    );
    assert_eq!(h.session.tuning().unwrap().heartbeat_s, 0);
    assert_eq!(h.session.poll_timeout(), None);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.events(), []);
    assert_eq!(h.sent(), b"");
}

#[test]
fn a_stalled_handshake_times_out() {
    let mut h = Harness::new(config());
    h.feed(&data::read("amqp/connection_start.bin")).unwrap();
    assert_eq!(h.session.poll_timeout(), Some(h.now + HANDSHAKE_TIMEOUT));
    h.advance(HANDSHAKE_TIMEOUT);
    assert_eq!(
        h.events(),
        [
            Event::Failed(SessionError::HandshakeTimeout {
                state: "awaiting connection.tune"
            }),
            Event::Closed
        ]
    );
}

// ---- hostile input ------------------------------------------------------------------

#[test]
fn wrong_frames_in_a_state_are_typed_errors() {
    let cases: Vec<(Vec<u8>, SessionError)> = vec![
        (
            frame(0, tune(131_072, 60)),
            SessionError::UnexpectedMethod {
                method: "connection.tune",
                channel: 0,
                state: "awaiting connection.start",
            },
        ),
        (
            frame(3, ChannelOpenOk { channel_id: b"" }),
            SessionError::UnknownChannel(3),
        ),
        (
            frame(2, ChannelOpenOk { channel_id: b"" }),
            SessionError::UnknownChannel(2),
        ),
        (
            deliver(1, false),
            SessionError::UnexpectedMethod {
                method: "basic.deliver",
                channel: 1,
                state: "awaiting connection.start",
            },
        ),
        (
            content(1, &BasicProperties::default(), b"x", 131_072),
            SessionError::UnexpectedContent {
                frame: "content header",
                channel: 1,
            },
        ),
        (
            // A 5000-byte frame before tune: over the 4096 pre-tune limit.
            {
                let mut f = vec![1, 0, 0];
                f.extend(5000u32.to_be_bytes());
                f
            },
            SessionError::Codec(AmqpError::FrameTooLarge {
                size: 5000,
                frame_max: 4096,
            }),
        ),
        (
            b"AMQP\x00\x00\x09\x01".to_vec(),
            SessionError::Codec(AmqpError::ProtocolVersionMismatch {
                protocol_id: 0,
                major: 0,
                minor: 9,
                revision: 1,
            }),
        ),
        (
            vec![0x42; 8],
            SessionError::Codec(AmqpError::UnknownFrameType(0x42)),
        ),
    ];
    for (bytes, error) in cases {
        let mut h = Harness::new(config());
        assert_eq!(h.feed(&bytes), Err(error.clone()), "{error:?}");
        assert!(h.session.is_finished());
        assert_eq!(h.events(), [Event::Closed]);
        assert_eq!(h.session.poll_timeout(), None);
    }

    // While consuming: a method inside a delivery's content, a body without a header.
    let mut h = consuming(config(), 131_072);
    let mut script = deliver(1, false);
    script.extend(deliver(2, false));
    assert!(matches!(
        h.feed(&script),
        Err(SessionError::UnexpectedMethod {
            method: "basic.deliver",
            ..
        })
    ));
    let mut h = consuming(config(), 131_072);
    let mut body = Vec::new();
    encode_body_frame(&mut body, 1, b"x", 131_072).unwrap();
    assert_eq!(
        h.feed(&body),
        Err(SessionError::UnexpectedContent {
            frame: "body frame",
            channel: 1
        })
    );
    // A publisher ack on a session without a publisher channel.
    let mut h = consuming(config(), 131_072);
    assert_eq!(
        h.feed(&frame(
            2,
            BasicAck {
                delivery_tag: 1,
                multiple: false
            }
        )),
        Err(SessionError::UnknownChannel(2))
    );
}

#[test]
fn commands_in_the_wrong_state_are_refused() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.session.cancel(),
        Err(CommandError::NotReady {
            state: "awaiting connection.start"
        })
    );
    assert_eq!(
        h.session.ack(DeliveryTag(1)),
        Err(CommandError::UnknownTag(DeliveryTag(1)))
    );
    assert_eq!(h.sent(), b"");
}

#[test]
fn an_unreadable_header_costs_that_delivery_only() {
    let mut h = consuming(config(), 131_072);
    // Properties announcing headers (flag 0x2000) whose table runs past the frame.
    let mut payload = vec![0, 60, 0, 0];
    payload.extend_from_slice(&3u64.to_be_bytes());
    payload.extend_from_slice(&[0x20, 0x00, 0, 0, 0, 99]);
    let mut script = deliver(1, false);
    script.push(2);
    script.extend_from_slice(&1u16.to_be_bytes());
    script.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    script.extend_from_slice(&payload);
    script.push(0xCE);
    // The body frame of the unreadable message.
    script.extend_from_slice(&[3, 0, 1, 0, 0, 0, 3, b'a', b'b', b'c', 0xCE]);
    // The next delivery is intact.
    script.extend(deliver(2, false));
    script.extend(content(1, &BasicProperties::default(), b"ok", 131_072));
    h.feed(&script).unwrap();
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [Event::Unreadable { tag: DeliveryTag(1), .. }, Event::Delivery(d)] if d.body == b"ok"
        ),
        "{events:?}"
    );
    // Both stay settleable.
    h.session.reject(DeliveryTag(1), false).unwrap();
    h.session.ack(DeliveryTag(2)).unwrap();
    assert!(!h.session.is_finished());
}
