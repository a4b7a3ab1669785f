//! Asks RabbitMQ (127.0.0.1:5672, guest/guest) how many messages a queue holds, with
//! ferry's own session over a blocking socket (a passive declare, no consumer), and
//! waits for a depth. Panics
//! when RabbitMQ is unreachable: the tests that use it need the real broker.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry::proto::amqp::{DeclareMode, Event, QueueType, Session, SessionConfig};

/// Polls [`queue_depth`] every 100 ms until `done(depth)` holds or `timeout` passes;
/// returns the last depth seen, for the caller to assert on.
pub fn wait_for_depth(queue: &str, timeout: Duration, done: impl Fn(u32) -> bool) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let depth = queue_depth(queue);
        if done(depth) || Instant::now() > deadline {
            return depth;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Messages ready in `queue` (0 for a missing queue is an error: check-only declare).
pub fn queue_depth(queue: &str) -> u32 {
    declare(queue, DeclareMode::CheckOnly)
}

/// Declares `queue` as `declare` says (as another application would), returning the
/// messages ready in it.
pub fn declare(queue: &str, declare: DeclareMode) -> u32 {
    let mut stream = TcpStream::connect("127.0.0.1:5672")
        .expect("RabbitMQ must answer on 127.0.0.1:5672 (the test command starts it)");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = SessionConfig {
        username: "guest".into(),
        password: "guest".into(),
        vhost: "/".into(),
        queue: queue.into(),
        declare,
        queue_type: QueueType::Classic,
        prefetch: 1,
        heartbeat_s: 0,
        max_message_bytes: 1 << 20,
        consumer_tag: String::new(),
        connection_name: Some("ferry test: queue depth".into()),
        publisher: false,
        consume: false,
    };
    let mut session = Session::new(config, Instant::now());
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Ready { message_count, .. } => {
                    session.close();
                    session.poll_transmit(&mut out);
                    let _ = stream.write_all(&out);
                    return message_count;
                }
                Event::Failed(e) => panic!("queue {queue}: {e}"),
                Event::Closed => panic!("queue {queue}: connection closed"),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "queue {queue}: no answer");
        session.poll_transmit(&mut out);
        stream.write_all(&out).unwrap();
        out.clear();
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) => panic!("queue {queue}: RabbitMQ closed the connection"),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let used = session.handle_input(&buf, Instant::now()).unwrap();
                    if used == 0 {
                        break;
                    }
                    buf.drain(..used);
                }
            }
            Err(_) => session.handle_timeout(Instant::now()),
        }
    }
}
