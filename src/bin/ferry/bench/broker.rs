//! The broker's own limit (`--broker`): the same publishes, consumed by one in-process
//! client that does nothing but count — Redis: a subscriber on ferry's `Subscriber`
//! session; AMQP: a consumer on ferry's AMQP `Session` acking each delivery, with the
//! run's prefetch. Nothing else is in the path, so this is as fast as ferry could ever
//! take messages from this broker on this machine.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry::config::{AmqpUrl, RedisUrl};
use ferry::proto::amqp::{DeclareMode, Event, Session, SessionConfig};
use ferry::proto::resp::subscriber::{Subscriber, SubscriberConfig, SubscriberEvent};

use super::collector::{now_us, parse_body, Receipt, Shared};
use crate::publish::{connect, Blocking};

/// Subscribes to `channel` and pushes a receipt per message into `receipts` until
/// `stop`. `ready` is set once the subscription is confirmed.
pub fn redis_subscriber(
    url: &RedisUrl,
    channel: &str,
    receipts: &Shared,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut stream = connect(&url.host, url.port)?;
    let mut config = SubscriberConfig::new(vec![channel.as_bytes().to_vec()], Vec::new());
    config.username = url.username.as_ref().map(|u| u.as_bytes().to_vec());
    config.password = url
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec());
    let mut session = Subscriber::new(config, Instant::now());
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let (mut input, mut out) = (Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 256 * 1024];
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        session.poll_transmit(&mut out);
        if !out.is_empty() {
            stream.write_all(&out).map_err(|e| format!("redis: {e}"))?;
            out.clear();
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("redis: the subscriber connection closed".into()),
            Ok(n) => {
                let at = now_us();
                input.extend_from_slice(&chunk[..n]);
                let used = session
                    .handle_input(&input, Instant::now())
                    .map_err(|e| format!("redis: {e}"))?;
                input.drain(..used);
                while let Some(event) = session.poll_event() {
                    match event {
                        SubscriberEvent::Ready => ready.store(true, Ordering::Relaxed),
                        SubscriberEvent::Message(message) => {
                            if let Some((n, sent_us)) = parse_body(&message.payload) {
                                batch.push(Receipt {
                                    n,
                                    sent_us,
                                    received_us: at,
                                });
                            }
                        }
                        SubscriberEvent::Failed(e) => return Err(format!("redis: {e:?}")),
                        SubscriberEvent::Closed => return Err("redis: closed".into()),
                        _ => {}
                    }
                }
                if !batch.is_empty() {
                    if let Ok(mut shared) = receipts.lock() {
                        shared.append(&mut batch);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(Instant::now());
            }
            Err(e) => return Err(format!("redis: {e}")),
        }
    }
    Ok(())
}

/// Consumes `queue` (declared as `declare`) with `prefetch`, acking every delivery and
/// pushing a receipt for it, until `stop`. `ready` is set once the consumer is
/// registered.
pub fn amqp_consumer(
    url: &AmqpUrl,
    queue: &str,
    declare: DeclareMode,
    prefetch: u16,
    receipts: &Shared,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> Result<(), String> {
    let stream = connect(&url.host, url.port)?;
    let config = SessionConfig {
        prefetch,
        consume: true,
        ..crate::publish::cli_session_config(url, queue, declare, "ferry bench consumer")
    };
    let mut client = Blocking::new(stream, Session::new(config, Instant::now()));
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        client.turn_within(Duration::from_millis(50))?;
        let at = now_us();
        while let Some(event) = client.session.poll_event() {
            match event {
                Event::Ready { .. } => ready.store(true, Ordering::Relaxed),
                Event::Delivery(delivery) => {
                    if let Some((n, sent_us)) = parse_body(&delivery.body) {
                        batch.push(Receipt {
                            n,
                            sent_us,
                            received_us: at,
                        });
                    }
                    client
                        .session
                        .ack(delivery.tag)
                        .map_err(|e| format!("amqp: {e}"))?;
                }
                Event::Failed(e) => return Err(format!("amqp: {e}")),
                Event::Closed => return Err("amqp: connection closed".into()),
                _ => {}
            }
        }
        if !batch.is_empty() {
            if let Ok(mut shared) = receipts.lock() {
                shared.append(&mut batch);
            }
        }
    }
    client.session.close();
    let _ = client.flush();
    Ok(())
}

/// The broker-alone limit of a stream: one consumer of a group reads batches of 256
/// (`XREADGROUP … BLOCK`) and acks each batch, pushing a receipt per entry until `stop`.
/// The stream is deleted at the end.
pub fn stream_consumer(
    url: &RedisUrl,
    stream_key: &str,
    receipts: &Shared,
    ready: &AtomicBool,
    stop: &AtomicBool,
) -> Result<(), String> {
    use ferry::proto::resp::stream::{StreamConfig, StreamConsumer, StreamEvent};
    let mut stream = connect(&url.host, url.port)?;
    let mut config = StreamConfig::new(stream_key.as_bytes(), b"bench", b"bench-broker");
    config.create_group = Some(b"0".to_vec());
    config.username = url.username.as_ref().map(|u| u.as_bytes().to_vec());
    config.password = url
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec());
    config.db = url.db;
    config.block = Duration::from_millis(100);
    let mut session = StreamConsumer::new(config, Instant::now());
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let (mut input, mut out) = (Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 256 * 1024];
    let mut batch = Vec::new();
    let result = (|| {
        while !stop.load(Ordering::Relaxed) {
            if session.is_ready() {
                session.fetch(256, Instant::now());
            }
            session.poll_transmit(&mut out, Instant::now());
            if !out.is_empty() {
                stream.write_all(&out).map_err(|e| format!("redis: {e}"))?;
                out.clear();
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Err("redis: the stream connection closed".to_string()),
                Ok(n) => {
                    let at = now_us();
                    input.extend_from_slice(&chunk[..n]);
                    let used = session
                        .handle_input(&input, Instant::now())
                        .map_err(|e| format!("redis: {e}"))?;
                    input.drain(..used);
                    while let Some(event) = session.poll_event() {
                        match event {
                            StreamEvent::Ready => ready.store(true, Ordering::Relaxed),
                            StreamEvent::Entries { entries, .. } => {
                                for entry in entries {
                                    session.ack(entry.id);
                                    let fields = entry.fields();
                                    let number = |name: &[u8]| {
                                        std::str::from_utf8(fields.get(name)?).ok()?.parse().ok()
                                    };
                                    if let (Some(n), Some(sent_us)) = (number(b"n"), number(b"t")) {
                                        batch.push(Receipt {
                                            n,
                                            sent_us,
                                            received_us: at,
                                        });
                                    }
                                }
                            }
                            StreamEvent::Failed(e) => return Err(format!("redis: {e}")),
                            StreamEvent::Closed => return Err("redis: closed".into()),
                            _ => {}
                        }
                    }
                    if !batch.is_empty() {
                        if let Ok(mut shared) = receipts.lock() {
                            shared.append(&mut batch);
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    session.handle_timeout(Instant::now());
                }
                Err(e) => return Err(format!("redis: {e}")),
            }
        }
        Ok(())
    })();
    delete_key(url, stream_key);
    result
}

/// Deletes `key` (best effort: a bench run cleans up after itself).
pub fn delete_key(url: &RedisUrl, key: &str) {
    let Ok(mut stream) = connect(&url.host, url.port) else {
        return;
    };
    let mut out = Vec::new();
    if let Some(password) = &url.password {
        let user = url.username.as_deref().unwrap_or("default");
        ferry::proto::resp::encode_command(
            &mut out,
            [&b"AUTH"[..], user.as_bytes(), password.expose().as_bytes()],
        );
    }
    if url.db != 0 {
        ferry::proto::resp::encode_command(
            &mut out,
            [&b"SELECT"[..], url.db.to_string().as_bytes()],
        );
    }
    ferry::proto::resp::encode_command(&mut out, [&b"DEL"[..], key.as_bytes()]);
    let _ = stream.write_all(&out);
    let _ = stream.read(&mut [0u8; 256]);
}
