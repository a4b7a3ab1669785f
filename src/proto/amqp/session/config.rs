//! What a [`Session`](super::Session) needs to know, as plain data the reactor builds from
//! `config::AmqpSource` (the session never sees the configuration module: `src/proto`
//! depends on nothing of ferry's own).

use std::fmt;

use crate::proto::amqp::{AmqpError, FieldValue, TableBuilder, MAX_TABLE_DEPTH};

/// How the consumed queue is declared (`docs/CONFIGURATION.md`: `--queue` and `declare`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeclareMode {
    /// Passive declare; when the broker answers 404, declare the queue durable,
    /// non-exclusive, non-auto-delete, without arguments (as PHP consumers usually do)
    /// but `x-queue-type` for a [`QueueType::Quorum`] session.
    #[default]
    IfMissing,
    /// Passive declare only: a missing queue ends the session with
    /// [`SessionError::QueueMissing`](super::SessionError::QueueMissing).
    CheckOnly,
    /// queue.declare with exactly these settings; a queue that exists with other settings
    /// ends the session with
    /// [`SessionError::PreconditionFailed`](super::SessionError::PreconditionFailed).
    Exactly {
        /// Survives a broker restart.
        durable: bool,
        /// Queue arguments, already encoded (see [`table_from_json`]).
        arguments: TableBuilder,
    },
}

/// The type of the queues the session creates (`docs/CONFIGURATION.md`, "Quorum queues").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// No `x-queue-type` argument: RabbitMQ's default, classic, and queues declared so
    /// before still match.
    #[default]
    Classic,
    /// `x-queue-type: quorum` (durable, not exclusive, as RabbitMQ requires).
    Quorum,
}

impl QueueType {
    /// Adds `x-queue-type` to the arguments of a queue the session creates (nothing for
    /// classic).
    pub fn add_argument(self, table: &mut TableBuilder) -> Result<(), AmqpError> {
        match self {
            QueueType::Classic => Ok(()),
            QueueType::Quorum => table
                .insert(b"x-queue-type", FieldValue::LongStr(b"quorum"))
                .map(drop),
        }
    }
}

/// Everything one AMQP session needs; `password` is never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// SASL PLAIN user name.
    pub username: String,
    /// SASL PLAIN password.
    pub password: String,
    /// Virtual host opened with connection.open (`/` by default).
    pub vhost: String,
    /// The queue to consume (at most 255 bytes, as config validation ensures).
    pub queue: String,
    /// How the queue is declared.
    pub declare: DeclareMode,
    /// The type of what the session creates: the queue under [`DeclareMode::IfMissing`]
    /// and the retry queues. [`DeclareMode::Exactly`] carries its own arguments.
    pub queue_type: QueueType,
    /// basic.qos prefetch_count (per consumer).
    pub prefetch: u16,
    /// Heartbeat proposed in tune-ok, seconds; 0 disables heartbeats.
    pub heartbeat_s: u16,
    /// Bodies larger than this are not buffered but reported as
    /// [`Event::TooLarge`](super::Event::TooLarge).
    pub max_message_bytes: u64,
    /// Consumer tag for basic.consume; empty lets the broker choose one.
    pub consumer_tag: String,
    /// `connection_name` client property, shown in the management UI.
    pub connection_name: Option<String>,
    /// Open a publisher channel in confirm mode (retries and dead-letter publishes).
    pub publisher: bool,
    /// Register a consumer on the queue. `false` (`ferry publish`) only declares the
    /// queue: [`Event::Ready`](super::Event::Ready) then comes after declare-ok, and no
    /// delivery ever arrives.
    pub consume: bool,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("vhost", &self.vhost)
            .field("queue", &self.queue)
            .field("declare", &self.declare)
            .field("queue_type", &self.queue_type)
            .field("prefetch", &self.prefetch)
            .field("heartbeat_s", &self.heartbeat_s)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("consumer_tag", &self.consumer_tag)
            .field("connection_name", &self.connection_name)
            .field("publisher", &self.publisher)
            .finish()
    }
}

/// Encodes a JSON object (the config's `declare.arguments`) as a field table: strings as
/// long strings, integers as signed 64-bit (`l`, which RabbitMQ accepts for every
/// integer argument such as `x-message-ttl`), other numbers as doubles, booleans, `null`
/// as void, arrays and objects nested. Nesting deeper than [`MAX_TABLE_DEPTH`] is refused.
pub fn table_from_json(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<TableBuilder, AmqpError> {
    table_at_depth(map, 1)
}

fn table_at_depth(
    map: &serde_json::Map<String, serde_json::Value>,
    depth: u32,
) -> Result<TableBuilder, AmqpError> {
    if depth > MAX_TABLE_DEPTH {
        return Err(AmqpError::TableTooDeep);
    }
    let mut table = TableBuilder::new();
    for (key, value) in map {
        put_json(&mut table, Some(key), value, depth)?;
    }
    Ok(table)
}

/// Appends `value` to `out`, as an entry named `key` or, without a key, as an array item.
fn put_json(
    out: &mut TableBuilder,
    key: Option<&str>,
    value: &serde_json::Value,
    depth: u32,
) -> Result<(), AmqpError> {
    use serde_json::Value;
    let put = |out: &mut TableBuilder, v: FieldValue<'_>| match key {
        Some(k) => out.insert(k.as_bytes(), v).map(drop),
        None => out.push_value(v).map(drop),
    };
    match value {
        Value::Null => put(out, FieldValue::Void),
        Value::Bool(b) => put(out, FieldValue::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => put(out, FieldValue::I64(i)),
            None => put(out, FieldValue::F64(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => put(out, FieldValue::LongStr(s.as_bytes())),
        Value::Array(items) => {
            if depth + 1 > MAX_TABLE_DEPTH {
                return Err(AmqpError::TableTooDeep);
            }
            let mut array = TableBuilder::new();
            for item in items {
                put_json(&mut array, None, item, depth + 1)?;
            }
            put(out, FieldValue::Array(array.as_array()))
        }
        Value::Object(map) => {
            let nested = table_at_depth(map, depth + 1)?;
            put(out, FieldValue::Table(nested.as_table()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arguments_become_rabbitmq_field_values() {
        let json: serde_json::Value = serde_json::json!({
            "x-message-ttl": 1000, "x-dead-letter-exchange": "", "x-flag": true,
            "x-ratio": 0.5, "x-none": null, "x-list": [1, "a"], "x-map": {"k": "v"}
        });
        let serde_json::Value::Object(map) = json else {
            panic!()
        };
        let built = table_from_json(&map).unwrap();
        let table = built.as_table();
        assert_eq!(table.get(b"x-message-ttl"), Some(FieldValue::I64(1000)));
        assert_eq!(
            table.get(b"x-dead-letter-exchange"),
            Some(FieldValue::LongStr(b""))
        );
        assert_eq!(table.get(b"x-flag"), Some(FieldValue::Bool(true)));
        assert_eq!(table.get(b"x-ratio"), Some(FieldValue::F64(0.5)));
        assert_eq!(table.get(b"x-none"), Some(FieldValue::Void));
        let Some(FieldValue::Array(list)) = table.get(b"x-list") else {
            panic!()
        };
        assert_eq!(
            list.iter().collect::<Vec<_>>(),
            [FieldValue::I64(1), FieldValue::LongStr(b"a")]
        );
        let Some(FieldValue::Table(nested)) = table.get(b"x-map") else {
            panic!()
        };
        assert_eq!(nested.get(b"k"), Some(FieldValue::LongStr(b"v")));
        // What was built parses back as a valid table.
        crate::proto::amqp::FieldTable::parse(table.as_bytes()).unwrap();
    }

    #[test]
    fn json_nesting_is_bounded() {
        let mut value = serde_json::json!(1);
        for _ in 0..40 {
            value = serde_json::json!({ "k": value });
        }
        let serde_json::Value::Object(map) = value else {
            panic!()
        };
        assert_eq!(table_from_json(&map), Err(AmqpError::TableTooDeep));
    }

    #[test]
    fn debug_hides_the_password() {
        let config = SessionConfig {
            username: "u".into(),
            password: "hunter2".into(),
            vhost: "/".into(),
            queue: "q".into(),
            declare: DeclareMode::IfMissing,
            queue_type: QueueType::Classic,
            prefetch: 1,
            heartbeat_s: 30,
            max_message_bytes: 1,
            consumer_tag: String::new(),
            connection_name: None,
            publisher: false,
            consume: true,
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
