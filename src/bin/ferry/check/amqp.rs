//! `ferry check` for an AMQP source: ferry's own [`Session`] over a blocking socket,
//! with no consumer and no publisher channel, declaring the queue passively only
//! ([`DeclareMode::CheckOnly`]: a check never creates anything). What RabbitMQ says about
//! itself comes from connection.start's `server_properties`; the session does not keep
//! them, so the first frame is decoded here, from the same bytes, before the session
//! reads it. The queue exists when the session gets to `Ready` (with its message and
//! consumer counts) and is missing on [`SessionError::QueueMissing`].

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use ferry::config::{AmqpUrl, TlsClient};
use ferry::proto::amqp::{
    decode_frame, DeclareMode, Event, FieldTable, FieldValue, FramePayload, Method, Session,
    SessionConfig, SessionError, FRAME_MIN_SIZE,
};
use ferry::proto::Status;
use serde::Serialize;

use super::conn::{Conn, TlsDetails};

/// What the broker said.
#[derive(Debug, Default, Serialize)]
pub struct AmqpDetails {
    /// The TLS session (`amqps://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDetails>,
    /// `product` from connection.start (`RabbitMQ`).
    pub product: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `platform` (`Erlang/OTP 25.3`).
    pub platform: Option<String>,
    /// `cluster_name`.
    pub cluster_name: Option<String>,
    /// The protocol version the broker offered (`0-9`).
    pub protocol: Option<String>,
    /// `capabilities`, by name.
    pub capabilities: BTreeMap<String, bool>,
    /// The queue the source consumes.
    pub queue: String,
    /// Whether it exists (`None` when the check did not get that far).
    pub queue_exists: Option<bool>,
    /// Messages ready in it.
    pub messages: Option<u32>,
    /// Consumers it has.
    pub consumers: Option<u32>,
}

fn long_string(table: &FieldTable<'_>, key: &str) -> Option<String> {
    match table.get(key.as_bytes()) {
        Some(FieldValue::LongStr(text)) => Some(String::from_utf8_lossy(text).into_owned()),
        _ => None,
    }
}

impl AmqpDetails {
    /// Reads connection.start when `buf` begins with it; false while it is incomplete.
    fn read_start(&mut self, buf: &[u8]) -> bool {
        let frame = match decode_frame(buf, FRAME_MIN_SIZE) {
            Ok(Status::Complete(frame, _)) => frame,
            Ok(Status::Partial) => return false,
            Err(_) => return true, // the session reports what is wrong
        };
        let FramePayload::Method(payload) = frame.payload else {
            return true;
        };
        let Ok(Method::ConnectionStart(start)) = Method::decode(payload) else {
            return true;
        };
        let properties = start.server_properties;
        self.product = long_string(&properties, "product");
        self.version = long_string(&properties, "version");
        self.platform = long_string(&properties, "platform");
        self.cluster_name = long_string(&properties, "cluster_name");
        self.protocol = Some(format!("{}-{}", start.version_major, start.version_minor));
        if let Some(FieldValue::Table(capabilities)) = properties.get(b"capabilities") {
            for (name, value) in capabilities.iter() {
                if let FieldValue::Bool(on) = value {
                    self.capabilities
                        .insert(String::from_utf8_lossy(name).into_owned(), on);
                }
            }
        }
        true
    }
}

/// Connects, reads what the broker is, checks the queue; the details hold what was
/// learnt even when an error follows.
pub fn check(
    url: &AmqpUrl,
    tls: Option<&TlsClient>,
    queue: &str,
    deadline: Instant,
) -> (AmqpDetails, Option<String>) {
    let mut details = AmqpDetails {
        queue: queue.to_string(),
        ..AmqpDetails::default()
    };
    let error = run(url, tls, deadline, &mut details).err();
    (details, error)
}

fn run(
    url: &AmqpUrl,
    tls: Option<&TlsClient>,
    deadline: Instant,
    details: &mut AmqpDetails,
) -> Result<(), String> {
    let (mut conn, session) = Conn::connect_broker(&url.host, url.port, tls, deadline)
        .map_err(|e| format!("connect {}:{}: {e}", url.host, url.port))?;
    details.tls = session;
    let config = SessionConfig {
        heartbeat_s: 0,
        max_message_bytes: 1 << 20,
        ..crate::publish::cli_session_config(
            url,
            &details.queue,
            DeclareMode::CheckOnly,
            "ferry check",
        )
    };
    let mut session = Session::new(config, Instant::now());
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut start_read = false;
    // The result, once known; then the session is closed politely and we wait for it.
    let mut result: Option<Result<(), String>> = None;
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Ready {
                    message_count,
                    consumer_count,
                } => {
                    details.queue_exists = Some(true);
                    details.messages = Some(message_count);
                    details.consumers = Some(consumer_count);
                    result.get_or_insert(Ok(()));
                    session.close();
                }
                Event::Failed(SessionError::QueueMissing { .. }) => {
                    details.queue_exists = Some(false);
                    result.get_or_insert(Ok(()));
                }
                Event::Failed(e) => {
                    result.get_or_insert(Err(e.to_string()));
                }
                Event::Closed => {
                    return result.unwrap_or_else(|| Err("the connection closed".into()));
                }
                _ => {}
            }
        }
        session.poll_transmit(&mut out);
        if !out.is_empty() {
            let sent = conn.send(&out, deadline);
            out.clear();
            if let Err(e) = sent {
                return result.unwrap_or_else(|| Err(format!("send: {e}")));
            }
        }
        let wake = session.poll_timeout().map_or(deadline, |t| t.min(deadline));
        match conn.receive(&mut buf, wake) {
            Ok(0) => session.handle_eof(Instant::now()),
            Ok(_) => {
                if !start_read {
                    start_read = details.read_start(&buf);
                }
                let used = session
                    .handle_input(&buf, Instant::now())
                    .map_err(|e| format!("protocol error: {e}"));
                match used {
                    Ok(used) => {
                        buf.drain(..used);
                    }
                    Err(e) => return result.unwrap_or(Err(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if Instant::now() >= deadline {
                    return result.unwrap_or_else(|| {
                        Err(format!("no answer in time ({})", session.state_name()))
                    });
                }
            }
            Err(e) => return result.unwrap_or_else(|| Err(format!("read: {e}"))),
        }
        session.handle_timeout(Instant::now());
    }
}
