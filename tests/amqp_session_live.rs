//! The AMQP session against the real RabbitMQ of this machine (127.0.0.1:5672,
//! guest/guest), driven over a blocking `TcpStream`: handshake, an exact declare with
//! arguments, a retry queue that dead-letters back, a publish with confirms, consume,
//! ack, close. Fails (never skips) when RabbitMQ is unreachable.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry::proto::amqp::session::table_from_json;
use ferry::proto::amqp::*;

#[path = "support/ferry.rs"]
mod ferry_proc;
use ferry_proc::unique;

/// Drives a session over a blocking socket until `until` accepts an event.
struct Driver {
    stream: TcpStream,
    session: Session,
    inbuf: Vec<u8>,
    events: Vec<Event>,
    /// Events seen while waiting for another one, not yet claimed by `until` (a delivery
    /// may arrive before the confirm of the publish that produced it).
    unclaimed: std::collections::VecDeque<Event>,
}

impl Driver {
    fn connect(config: SessionConfig) -> Driver {
        let stream =
            TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(5))
                .expect("RabbitMQ must be running at 127.0.0.1:5672 for this test");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Driver {
            stream,
            session: Session::new(config, Instant::now()),
            inbuf: Vec::new(),
            events: Vec::new(),
            unclaimed: std::collections::VecDeque::new(),
        }
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        if !out.is_empty() {
            self.stream.write_all(&out).unwrap();
        }
    }

    /// Runs the loop until an event matching `wanted` arrives (returning it), failing on
    /// a session error or after 10 s.
    fn until(&mut self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(at) = self.unclaimed.iter().position(&wanted) {
            if let Some(event) = self.unclaimed.remove(at) {
                return event;
            }
        }
        loop {
            while let Some(event) = self.session.poll_event() {
                self.events.push(event.clone());
                if wanted(&event) {
                    self.flush();
                    return event;
                }
                self.unclaimed.push_back(event.clone());
                if let Event::Failed(e) = &event {
                    panic!("session failed waiting for {what}: {e}");
                }
                if event == Event::Closed {
                    panic!("session closed waiting for {what}");
                }
            }
            self.flush();
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.session.handle_eof(Instant::now()),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    // The session may take the input in several calls: feed it all.
                    loop {
                        let used = self
                            .session
                            .handle_input(&self.inbuf, Instant::now())
                            .unwrap_or_else(|e| panic!("protocol error waiting for {what}: {e}"));
                        if used == 0 {
                            break;
                        }
                        self.inbuf.drain(..used);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
            if self
                .session
                .poll_timeout()
                .is_some_and(|t| t <= Instant::now())
            {
                self.session.handle_timeout(Instant::now());
            }
        }
    }
}

#[test]
fn consume_publish_confirm_ack_close_against_rabbitmq() {
    let queue = unique("ferry-session-live");
    // The queue expires a minute after its last use, so a failed run leaves nothing.
    let arguments = serde_json::json!({ "x-expires": 60000 });
    let config = SessionConfig {
        username: "guest".into(),
        password: "guest".into(),
        vhost: "/".into(),
        queue: queue.clone(),
        declare: DeclareMode::Exactly {
            durable: false,
            arguments: table_from_json(arguments.as_object().unwrap()).unwrap(),
        },
        queue_type: QueueType::Classic,
        prefetch: 4,
        heartbeat_s: 10,
        max_message_bytes: 1 << 20,
        consumer_tag: "ferry-live".into(),
        connection_name: Some("ferry session live test".into()),
        publisher: true,
        consume: true,
    };
    let mut driver = Driver::connect(config);

    let ready = driver.until("ready", |e| matches!(e, Event::Ready { .. }));
    assert_eq!(
        ready,
        Event::Ready {
            message_count: 0,
            consumer_count: 0
        }
    );
    let tuning = driver.session.tuning().unwrap();
    assert_eq!(tuning.frame_max, 131_072);
    assert_eq!(tuning.heartbeat_s, 10);
    assert_eq!(tuning.channel_max, 2);

    // A body larger than one frame, so the publisher splits it and the broker does too.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let properties = BasicProperties {
        content_type: Some(b"application/octet-stream"),
        delivery_mode: Some(2),
        message_id: Some(b"live-1"),
        ..BasicProperties::default()
    };
    let seq = driver
        .session
        .publish("", &queue, true, &properties, &body)
        .unwrap();
    assert_eq!(seq, PublishSeq(1));
    assert_eq!(
        driver.until("confirm", |e| matches!(e, Event::Confirmed(_))),
        Event::Confirmed(seq)
    );
    let Event::Delivery(delivery) = driver.until("delivery", |e| matches!(e, Event::Delivery(_)))
    else {
        unreachable!()
    };
    assert_eq!(delivery.body, body);
    assert!(!delivery.redelivered);
    assert_eq!(delivery.routing_key, queue);
    assert_eq!(
        delivery.properties.message_id.as_deref(),
        Some(&b"live-1"[..])
    );

    // A retry copy: through a TTL queue that dead-letters back to ours.
    let retry_queue = format!("{queue}.ferry-retry.200");
    driver
        .session
        .declare_retry_queue(&retry_queue, 200, &queue)
        .unwrap();
    let declared = driver.until("retry queue", |e| {
        matches!(e, Event::RetryQueueDeclared { .. })
    });
    assert_eq!(
        declared,
        Event::RetryQueueDeclared {
            queue: retry_queue.clone()
        }
    );
    let mut copy = delivery.properties.clone();
    copy.set_header("x-ferry-attempt", FieldValue::I64(2))
        .unwrap();
    let seq = driver
        .session
        .publish("", &retry_queue, true, &copy.as_basic(), b"retry me")
        .unwrap();
    assert_eq!(
        driver.until("retry confirm", |e| matches!(e, Event::Confirmed(_))),
        Event::Confirmed(seq)
    );
    driver.session.ack(delivery.tag).unwrap();
    assert_eq!(
        driver.session.ack(delivery.tag),
        Err(CommandError::UnknownTag(delivery.tag))
    );

    let Event::Delivery(again) =
        driver.until("dead-lettered copy", |e| matches!(e, Event::Delivery(_)))
    else {
        unreachable!()
    };
    assert_eq!(again.body, b"retry me");
    assert_eq!(
        again.properties.header("x-ferry-attempt"),
        Some(&HeaderValue::Int(2))
    );
    driver.session.ack(again.tag).unwrap();

    // An unroutable mandatory publish comes back as Returned, not Confirmed.
    let seq = driver
        .session
        .publish("", &unique("ferry-no-such-queue"), true, &properties, b"x")
        .unwrap();
    assert_eq!(
        driver.until("return", |e| matches!(e, Event::Returned { .. })),
        Event::Returned {
            seq,
            reply_code: 312,
            reply_text: "NO_ROUTE".into()
        }
    );

    driver.session.cancel().unwrap();
    driver.until("cancel-ok", |e| *e == Event::Cancelled);
    driver.session.close();
    driver.until("close-ok", |e| *e == Event::Closed);
    assert!(driver.session.is_finished());
    assert!(
        !driver
            .events
            .iter()
            .any(|e| matches!(e, Event::Confirmed(s) if *s == PublishSeq(3))),
        "the returned publish must not also be confirmed"
    );

    // The retry queue has no expiry of its own (ferry's are permanent): remove it.
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["delete_queue", &retry_queue])
        .output();
}
