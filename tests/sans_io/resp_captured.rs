//! Real bytes from Redis 7.0 (captured by `scripts/capture/redis.py`, described in
//! `tests/data/redis/README.md`), decoded into the exact pub/sub events they hold.

use ferry::proto::resp::{Decoder, Frame, PubSubEvent, SubscribeKind};
use ferry::proto::Status;

use crate::data;

/// Every frame of a file (which must end on a frame boundary), in 5-byte reads.
fn frames(bytes: &[u8]) -> Vec<Frame<'_>> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let (mut start, mut end) = (0, 0);
    while start < bytes.len() {
        end = (end + 5).min(bytes.len());
        while start < end {
            match decoder.decode(&bytes[start..end]).unwrap() {
                Status::Complete(frame, used) => {
                    out.push(frame);
                    start += used;
                }
                Status::Partial => break,
            }
        }
    }
    assert!(decoder.is_idle());
    out
}

fn events(name: &str) -> Vec<Option<PubSubEvent<'static>>> {
    let bytes: &'static [u8] = data::read(&format!("redis/{name}")).leak();
    frames(bytes)
        .iter()
        .map(|frame| PubSubEvent::from_frame(frame).unwrap())
        .collect()
}

fn expected_stream(v: &'static str) -> Vec<Option<PubSubEvent<'static>>> {
    let name = |suffix: &str| -> &'static [u8] {
        format!("ferry-capture.{v}.{suffix}").into_bytes().leak()
    };
    vec![
        Some(PubSubEvent::Subscribe {
            kind: SubscribeKind::Channel,
            name: name("chan"),
            count: 1,
        }),
        Some(PubSubEvent::Subscribe {
            kind: SubscribeKind::Pattern,
            name: name("p.*"),
            count: 2,
        }),
        Some(PubSubEvent::Message {
            channel: name("chan"),
            payload: b"hello from ferry",
        }),
        Some(PubSubEvent::PMessage {
            pattern: name("p.*"),
            channel: name("p.one"),
            payload: b"\x00binary\r\npayload\xff",
        }),
    ]
}

#[test]
fn resp2_subscribe_and_messages() {
    let mut got = events("resp2-subscribe.resp");
    got.extend(events("resp2-messages.resp"));
    assert_eq!(got, expected_stream("resp2"));
}

#[test]
fn resp3_subscribe_and_messages_are_pushes() {
    let bytes = data::read("redis/resp3-messages.resp");
    assert!(frames(&bytes)
        .iter()
        .all(|frame| matches!(frame, Frame::Push(_))));
    let mut got = events("resp3-subscribe.resp");
    got.extend(events("resp3-messages.resp"));
    assert_eq!(got, expected_stream("resp3"));
}

#[test]
fn resp2_ping_while_subscribed() {
    assert_eq!(
        events("resp2-ping.resp"),
        [
            Some(PubSubEvent::Pong { payload: b"" }),
            Some(PubSubEvent::Pong {
                payload: b"still there"
            })
        ]
    );
}

#[test]
fn resp3_ping_while_subscribed_is_a_plain_reply() {
    let bytes = data::read("redis/resp3-ping.resp");
    let frames = frames(&bytes);
    assert_eq!(
        frames,
        [
            Frame::SimpleString(b"PONG"),
            Frame::BulkString(b"still there")
        ]
    );
    assert_eq!(
        PubSubEvent::from_frame(&frames[0]),
        Ok(Some(PubSubEvent::Pong { payload: b"" }))
    );
    // PING with an argument answers a bulk string in RESP3: an ordinary reply.
    assert_eq!(PubSubEvent::from_frame(&frames[1]), Ok(None));
}

#[test]
fn unsubscribe_ends_with_a_null_name() {
    for v in ["resp2", "resp3"] {
        let name = |suffix: &str| -> &'static [u8] {
            format!("ferry-capture.{v}.{suffix}").into_bytes().leak()
        };
        assert_eq!(
            events(&format!("{v}-unsubscribe.resp")),
            [
                Some(PubSubEvent::Unsubscribe {
                    kind: SubscribeKind::Channel,
                    name: Some(name("chan")),
                    count: 1
                }),
                Some(PubSubEvent::Unsubscribe {
                    kind: SubscribeKind::Pattern,
                    name: Some(name("p.*")),
                    count: 0
                }),
                Some(PubSubEvent::Unsubscribe {
                    kind: SubscribeKind::Channel,
                    name: None,
                    count: 0
                }),
            ],
            "{v}"
        );
    }
}

#[test]
fn hello3_reply_is_a_map() {
    let bytes = data::read("redis/resp3-hello3.resp");
    let frames = frames(&bytes);
    assert_eq!(frames.len(), 1);
    let Frame::Map(map) = frames[0] else {
        panic!("{:?}", frames[0])
    };
    assert_eq!(map.len(), 7);
    let get = |key: &[u8]| {
        map.pairs()
            .find(|(k, _)| k.as_bytes() == Some(key))
            .map(|(_, v)| v)
    };
    assert_eq!(get(b"server"), Some(Frame::BulkString(b"redis")));
    assert_eq!(get(b"proto"), Some(Frame::Integer(3)));
    assert_eq!(get(b"mode"), Some(Frame::BulkString(b"standalone")));
    assert!(matches!(get(b"version"), Some(Frame::BulkString(v)) if v.starts_with(b"7.")));
    assert!(matches!(get(b"modules"), Some(Frame::Array(modules)) if modules.is_empty()));
    assert_eq!(PubSubEvent::from_frame(&frames[0]), Ok(None));
}
