//! Pub/sub classification: every event kind in RESP2 and RESP3, non-events, and malformed
//! pub/sub-looking frames.

use ferry::proto::resp::{decode, Limits, PubSubError, PubSubEvent, SubscribeKind};
use ferry::proto::Status;

fn classify(bytes: &[u8]) -> Result<Option<PubSubEvent<'_>>, PubSubError> {
    let Ok(Status::Complete(frame, _)) = decode(bytes, &Limits::default()) else {
        panic!()
    };
    PubSubEvent::from_frame(&frame)
}

#[test]
fn events_in_both_protocols() {
    for head in ["*", ">"] {
        let b = |s: &str| s.replace('^', head).into_bytes();
        assert_eq!(
            classify(&b("^3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n")),
            Ok(Some(PubSubEvent::Subscribe {
                kind: SubscribeKind::Shard,
                name: b"s",
                count: 1
            }))
        );
        assert_eq!(
            classify(&b("^3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n")),
            Ok(Some(PubSubEvent::Unsubscribe {
                kind: SubscribeKind::Shard,
                name: Some(b"s"),
                count: 0
            }))
        );
        assert_eq!(
            classify(&b("^3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$2\r\nhi\r\n")),
            Ok(Some(PubSubEvent::SMessage {
                channel: b"s",
                payload: b"hi"
            }))
        );
        assert_eq!(
            classify(&b("^3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n")),
            Ok(Some(PubSubEvent::Message {
                channel: b"c",
                payload: b""
            }))
        );
    }
}

#[test]
fn not_events() {
    assert_eq!(classify(b"+OK\r\n"), Ok(None));
    assert_eq!(classify(b"*0\r\n"), Ok(None));
    assert_eq!(classify(b"*1\r\n:1\r\n"), Ok(None));
    assert_eq!(classify(b"*2\r\n$4\r\nMESS\r\n$1\r\nx\r\n"), Ok(None));
    assert_eq!(
        classify(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n"),
        Ok(None)
    );
    assert_eq!(classify(b"%1\r\n$7\r\nmessage\r\n:1\r\n"), Ok(None));
}

#[test]
fn malformed_events() {
    assert_eq!(
        classify(b"*2\r\n$7\r\nmessage\r\n$1\r\nc\r\n"),
        Err(PubSubError::WrongArity {
            kind: "message",
            expected: 3,
            found: 2
        })
    );
    assert_eq!(
        classify(b">3\r\n$8\r\npmessage\r\n$1\r\np\r\n$1\r\nc\r\n"),
        Err(PubSubError::WrongArity {
            kind: "pmessage",
            expected: 4,
            found: 3
        })
    );
    assert_eq!(
        classify(b"*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\nx\r\n"),
        Err(PubSubError::WrongType {
            kind: "message",
            index: 1
        })
    );
    assert_eq!(
        classify(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n$1\r\n1\r\n"),
        Err(PubSubError::WrongType {
            kind: "subscribe",
            index: 2
        })
    );
    assert_eq!(
        classify(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:-1\r\n"),
        Err(PubSubError::NegativeCount { kind: "subscribe" })
    );
    assert_eq!(
        classify(b"*3\r\n$9\r\nsubscribe\r\n$-1\r\n:1\r\n"),
        Err(PubSubError::WrongType {
            kind: "subscribe",
            index: 1
        })
    );
}
