//! ferry's configuration (`docs/CONFIGURATION.md`): the JSON file, its defaults (part of
//! what operators rely on, so they are spelled out here as constants), and the checks that
//! make a bad file exit 2 with the key and the reason.
//!
//! Loading is two steps: serde reads the file strictly (`deny_unknown_fields`: a typo is
//! an error naming the key, never a silently ignored setting), then [`Config::validate`]
//! checks what a type cannot say (a job naming a pool that does not exist, prefetch in
//! 1–65535, a Redis source with nothing to subscribe to, URLs) and resolves defaults that
//! depend on other settings (an AMQP source's `prefetch` defaults to its pool's
//! `max_in_flight`). The result is a [`Config`] whose every field has its final value.
//!
//! # Layout
//! - `mod.rs`: the configuration types and [`load`].
//! - `address.rs`: `unix:`/`tcp:` addresses.
//! - `url.rs`: `redis://` and `amqp://` URLs (and their TLS forms), and [`Secret`].
//! - `tls.rs`: a source's `tls` block, and the rustls client configuration built from it.

mod address;
pub mod sentinel;
pub mod tls;
mod url;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use address::Address;
pub use sentinel::SentinelSettings;
pub use tls::{TlsClient, TlsSettings};
pub use url::{AmqpUrl, RedisUrl, Secret};

/// A configuration error: which key, and why. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: a key path such as `sources[1].prefetch`, or the file for syntax errors.
    pub key: String,
    /// Why, in words an operator can act on.
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Defaults operators rely on (listed in `docs/CONFIGURATION.md`).
pub mod defaults {
    /// `shutdown_timeout_ms`.
    pub const SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
    /// `control.listen`.
    pub const CONTROL_LISTEN: &str = "127.0.0.1:9180";
    /// Pool `max_in_flight`.
    pub const MAX_IN_FLIGHT: u32 = 4;
    /// Pool `connect_timeout_ms`.
    pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
    /// Pool `request_timeout_ms`.
    pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
    /// Pool `idle_timeout_ms`.
    pub const IDLE_TIMEOUT_MS: u64 = 10_000;
    /// Pool `circuit_release_ms`: how long an open circuit lasts before AMQP sources
    /// hand their unstarted messages back.
    pub const CIRCUIT_RELEASE_MS: u64 = 10_000;
    /// Source `max_attempts`.
    pub const MAX_ATTEMPTS: u32 = 5;
    /// Source `retry_delays_ms` (the last step repeats).
    pub const RETRY_DELAYS_MS: [u64; 4] = [1_000, 10_000, 60_000, 300_000];
    /// Redis/endpoint `backlog` (messages).
    pub const BACKLOG: usize = 1_000;
    /// Redis/endpoint `backlog_bytes`.
    pub const BACKLOG_BYTES: usize = 16 << 20;
    /// Source `max_message_bytes`.
    pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
    /// Endpoint `max_clients` (Redis's `maxclients`).
    pub const MAX_CLIENTS: usize = 10_000;
    /// Endpoint `client_output_buffer_bytes` (Redis's pub/sub hard limit).
    pub const CLIENT_OUTPUT_BUFFER_BYTES: usize = 32 << 20;
    /// AMQP `heartbeat_s`.
    pub const HEARTBEAT_S: u16 = 30;
    /// Job `method`.
    pub const METHOD: &str = "POST";
    /// Job `content_type` for raw bodies without an AMQP `content_type`.
    pub const CONTENT_TYPE: &str = "application/octet-stream";
}

/// The whole configuration, validated, every default resolved.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The control endpoint.
    #[serde(default)]
    pub control: ControlConfig,
    /// How long a drain waits for in-flight jobs.
    #[serde(default = "shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// FastCGI pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Message sources, in the file's order.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// `control`: the HTTP endpoint for health, metrics and pause/resume.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Listen address (TCP or `unix:`); `null` disables the endpoint.
    #[serde(default = "control_listen", deserialize_with = "optional_address")]
    pub listen: Option<Address>,
    /// Bearer token that POST requests must present, when set.
    #[serde(default)]
    pub token: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: control_listen(),
            token: None,
        }
    }
}

/// A FastCGI worker pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Where the workers listen (exclusive with `spawn`).
    #[serde(default, deserialize_with = "optional_address")]
    pub address: Option<Address>,
    /// Workers ferry starts itself (exclusive with `address`).
    #[serde(default)]
    pub spawn: Option<SpawnConfig>,
    /// Most concurrent requests (and connections): php-fpm serves one per connection.
    #[serde(default = "max_in_flight")]
    pub max_in_flight: u32,
    /// Connect timeout.
    #[serde(default = "connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// From the request written to END_REQUEST; past it the request is retryable.
    #[serde(default = "request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Reuse connections (FCGI_KEEP_CONN; default true). Each idle kept connection pins
    /// a php-fpm child until `idle_timeout_ms`; connections beyond what the workers serve
    /// at once are noticed and let go of (`docs/SEMANTICS.md`, "Pools and backpressure").
    #[serde(default = "keep_conn")]
    pub keep_conn: bool,
    /// Idle kept connections are closed after this long.
    #[serde(default = "idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// php-fpm's `pm.status_path`, read by `ferry check`.
    #[serde(default)]
    pub status_path: Option<String>,
    /// How long the circuit may stay open before AMQP sources release their messages.
    #[serde(default = "circuit_release_ms")]
    pub circuit_release_ms: u64,
}

/// `spawn`: processes ferry starts with the listening socket as fd 0.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnConfig {
    /// Program and arguments, e.g. `["php-cgi"]`.
    pub command: Vec<String>,
    /// How many processes.
    #[serde(default = "spawn_processes")]
    pub processes: u32,
    /// Requests a process serves before it is recycled (`PHP_FCGI_MAX_REQUESTS`); 0 = never.
    #[serde(default)]
    pub max_requests: u32,
    /// Where ferry binds the processes' listening socket: `unix:/path` or a loopback
    /// `tcp:127.0.0.1:port` (port 0 picks a free one). Default: a unix socket in a private
    /// directory of ferry's own (`$RUNTIME_DIRECTORY`, `$XDG_RUNTIME_DIR` or `/tmp`).
    #[serde(default, deserialize_with = "optional_address")]
    pub listen: Option<Address>,
}

/// One message source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Redis pub/sub.
    Redis(RedisSource),
    /// An AMQP 0-9-1 queue.
    Amqp(AmqpSource),
    /// ferry's own RESP listener (embedded deployment).
    RespEndpoint(RespEndpointSource),
    /// A Redis stream read through a consumer group (at-least-once).
    RedisStream(RedisStreamSource),
}

impl SourceConfig {
    /// The source's name.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Redis(s) => &s.name,
            SourceConfig::Amqp(s) => &s.name,
            SourceConfig::RespEndpoint(s) => &s.name,
            SourceConfig::RedisStream(s) => &s.name,
        }
    }

    /// The job every message of this source becomes.
    pub fn job(&self) -> &JobConfig {
        match self {
            SourceConfig::Redis(s) => &s.job,
            SourceConfig::Amqp(s) => &s.job,
            SourceConfig::RespEndpoint(s) => &s.job,
            SourceConfig::RedisStream(s) => &s.job,
        }
    }

    /// The TLS client of a `rediss://` / `amqps://` source.
    pub fn tls_client(&self) -> Option<&TlsClient> {
        match self {
            SourceConfig::Redis(s) => s.tls_client.as_ref(),
            SourceConfig::Amqp(s) => s.tls_client.as_ref(),
            SourceConfig::RedisStream(s) => s.tls_client.as_ref(),
            SourceConfig::RespEndpoint(_) => None,
        }
    }

    /// The `kind` as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Redis(_) => "redis",
            SourceConfig::Amqp(_) => "amqp",
            SourceConfig::RespEndpoint(_) => "resp_endpoint",
            SourceConfig::RedisStream(_) => "redis_stream",
        }
    }
}

/// A Redis pub/sub source (at-most-once).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSource {
    /// Unique name (metrics label, control API path).
    pub name: String,
    /// `url`: `redis://[user:pass@]host:port[/db]`, one node (exclusive with `urls`);
    /// [`Config::validate`] moves it into `urls`.
    #[serde(default, rename = "url", deserialize_with = "one_redis_url")]
    one_url: Option<RedisUrl>,
    /// The nodes, in the order ferry tries them (`docs/SEMANTICS.md`, "Failover"); after
    /// validation it holds every node, one when the file gave `url`.
    #[serde(default, deserialize_with = "redis_urls")]
    pub urls: Vec<RedisUrl>,
    /// File holding the password (first line), kept out of the URL and `ps`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The `tls` block (`docs/CONFIGURATION.md`, "TLS"); the URL's scheme turns TLS on.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The client configuration of a TLS source, built by [`Config::validate`].
    #[serde(skip)]
    pub tls_client: Option<TlsClient>,
    /// Find the master through Redis Sentinel instead of `url`/`urls`
    /// (`docs/CONFIGURATION.md`, "Redis Sentinel").
    #[serde(default)]
    pub sentinel: Option<SentinelSettings>,
    /// Channels to SUBSCRIBE.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Patterns to PSUBSCRIBE.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Messages waiting for a pool slot, at most.
    #[serde(default = "backlog")]
    pub backlog: usize,
    /// Bytes waiting for a pool slot, at most.
    #[serde(default = "backlog_bytes")]
    pub backlog_bytes: usize,
    /// Larger messages are dropped and counted.
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
    /// Attempts per message (retried from memory).
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    /// Delays between attempts; the last repeats.
    #[serde(default = "retry_delays_ms")]
    pub retry_delays_ms: Vec<u64>,
    /// What each message becomes.
    pub job: JobConfig,
}

/// An AMQP queue source (at-least-once with `ack: after_response`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSource {
    /// Unique name.
    pub name: String,
    /// `url`: `amqp://user:pass@host:port/vhost`, one node (exclusive with `urls`);
    /// [`Config::validate`] moves it into `urls`.
    #[serde(default, rename = "url", deserialize_with = "one_amqp_url")]
    one_url: Option<AmqpUrl>,
    /// The nodes of the broker's cluster, in the order ferry tries them
    /// (`docs/SEMANTICS.md`, "Failover"); after validation it holds every node.
    #[serde(default, deserialize_with = "amqp_urls")]
    pub urls: Vec<AmqpUrl>,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The `tls` block (`docs/CONFIGURATION.md`, "TLS"); the URL's scheme turns TLS on.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The client configuration of a TLS source, built by [`Config::validate`].
    #[serde(skip)]
    pub tls_client: Option<TlsClient>,
    /// Queue to consume.
    pub queue: String,
    /// How to declare the queue (see [`Declare`]).
    #[serde(default)]
    pub declare: Declare,
    /// The type of the queues ferry declares: the consumed queue when it creates it, and
    /// its retry queues (`docs/CONFIGURATION.md`, "Quorum queues"). Classic when absent
    /// (resolved by [`Config::validate`], so always `Some` afterwards).
    #[serde(default)]
    pub queue_type: Option<QueueType>,
    /// basic.qos prefetch_count; defaults to the pool's `max_in_flight` (resolved by
    /// [`Config::validate`], so it is always `Some` afterwards).
    #[serde(default)]
    pub prefetch: Option<u16>,
    /// When to ack.
    #[serde(default)]
    pub ack: AckMode,
    /// Attempts before dead-lettering.
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    /// Delays between attempts; the last repeats.
    #[serde(default = "retry_delays_ms")]
    pub retry_delays_ms: Vec<u64>,
    /// How a retry waits.
    #[serde(default)]
    pub retry: RetryMode,
    /// Where failed messages go.
    #[serde(default)]
    pub dead_letter: DeadLetter,
    /// Heartbeat proposed in tune-ok, seconds (0 disables).
    #[serde(default = "heartbeat_s")]
    pub heartbeat_s: u16,
    /// Larger messages are a permanent failure.
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
    /// What each message becomes.
    pub job: JobConfig,
}

/// A RESP listener that Redis clients publish to (embedded deployment).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespEndpointSource {
    /// Unique name.
    pub name: String,
    /// Where to listen.
    #[serde(deserialize_with = "address")]
    pub listen: Address,
    /// Channels whose messages become jobs.
    pub channels: Vec<String>,
    /// Password clients must AUTH with, when set.
    #[serde(default)]
    pub password: Option<String>,
    /// Messages waiting for a pool slot, at most.
    #[serde(default = "backlog")]
    pub backlog: usize,
    /// Bytes waiting for a pool slot, at most.
    #[serde(default = "backlog_bytes")]
    pub backlog_bytes: usize,
    /// Larger messages are refused and counted.
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
    /// Attempts per message (retried from memory).
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    /// Delays between attempts; the last repeats.
    #[serde(default = "retry_delays_ms")]
    pub retry_delays_ms: Vec<u64>,
    /// Most clients connected at once (Redis's `maxclients`, 10000); one more is told
    /// `-ERR max number of clients reached` and closed.
    #[serde(default = "max_clients")]
    pub max_clients: usize,
    /// Unsent reply and message bytes a client may have queued before it is disconnected
    /// (Redis's pub/sub hard limit, 32 MiB): a subscriber that stops reading cannot make
    /// ferry buffer without bound.
    #[serde(default = "client_output_buffer_bytes")]
    pub client_output_buffer_bytes: usize,
    /// What each message becomes.
    pub job: JobConfig,
}

/// A Redis stream consumed through a consumer group (`docs/SEMANTICS.md`, "Redis
/// Streams: at-least-once").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamSource {
    /// Unique name.
    pub name: String,
    /// `url`: `redis://[user:pass@]host:port[/db]`, one node (exclusive with `urls`);
    /// [`Config::validate`] moves it into `urls`.
    #[serde(default, rename = "url", deserialize_with = "one_redis_url")]
    one_url: Option<RedisUrl>,
    /// The nodes, in the order ferry tries them (`docs/SEMANTICS.md`, "Failover"); after
    /// validation it holds every node.
    #[serde(default, deserialize_with = "redis_urls")]
    pub urls: Vec<RedisUrl>,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The `tls` block (`docs/CONFIGURATION.md`, "TLS"); the URL's scheme turns TLS on.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// The client configuration of a TLS source, built by [`Config::validate`].
    #[serde(skip)]
    pub tls_client: Option<TlsClient>,
    /// Find the master through Redis Sentinel instead of `url`/`urls`
    /// (`docs/CONFIGURATION.md`, "Redis Sentinel").
    #[serde(default)]
    pub sentinel: Option<SentinelSettings>,
    /// The stream's key.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// ferry's consumer name in the group; default: host name + `-` + source name
    /// (resolved by [`Config::validate`], so always `Some` afterwards).
    #[serde(default)]
    pub consumer: Option<String>,
    /// Where a group ferry creates starts: `$` (new entries only) or `0` (the whole stream).
    #[serde(default = "stream_start")]
    pub start: String,
    /// Create the group (`XGROUP CREATE … MKSTREAM`) when it does not exist.
    #[serde(default = "yes")]
    pub create_group: bool,
    /// How an entry becomes a request body.
    #[serde(default)]
    pub body: StreamBody,
    /// Pending entries idle this long are taken over (`XAUTOCLAIM`); default: its pool's
    /// `request_timeout_ms` + 30000 (resolved by [`Config::validate`]).
    #[serde(default)]
    pub claim_idle_ms: Option<u64>,
    /// Attempts per entry (the entry's delivery counter).
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    /// Delays between attempts; the last repeats.
    #[serde(default = "retry_delays_ms")]
    pub retry_delays_ms: Vec<u64>,
    /// Where entries go after their last attempt or a permanent failure.
    #[serde(default)]
    pub dead_letter: StreamDeadLetter,
    /// Larger entries (their fields, as received) fail permanently.
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
    /// RESP version spoken: 3 (default) or 2.
    #[serde(default = "resp_version")]
    pub resp: u8,
    /// What each entry becomes.
    pub job: JobConfig,
}

impl RedisStreamSource {
    /// `<stream>.ferry-dead`: the dead-letter stream.
    pub fn dead_stream(&self) -> String {
        format!("{}.ferry-dead", self.stream)
    }

    /// The consumer name in force (the default resolved).
    pub fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .unwrap_or_else(|| default_consumer(&self.name))
    }
}

/// A stream source's `body`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StreamBody {
    /// `"form"`: the entry's fields, in order, as `application/x-www-form-urlencoded`.
    #[default]
    Form,
    /// `{"field": NAME}`: the value of that one field, raw.
    Field(String),
}

/// A stream source's `dead_letter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamDeadLetter {
    /// `XADD <stream>.ferry-dead` with the fields, `ferry-failure` and `ferry-attempts`,
    /// and `XACK`, in one `MULTI`/`EXEC`.
    #[default]
    Stream,
    /// `XACK` only (counted as discarded).
    Discard,
}

/// The default consumer name: the host name, `-`, the source name.
pub fn default_consumer(source: &str) -> String {
    format!("{}-{source}", host_name())
}

/// This machine's host name (the kernel's, else `$HOSTNAME`, else `ferry`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "ferry".to_string())
}

/// `declare`: absent uses the queue if it exists (whatever its arguments) and otherwise
/// declares it durable; `false` only checks that it exists; an object declares exactly so.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Declare {
    /// Passive check first, durable declare when missing (the shortcut flags' way).
    #[default]
    IfMissing,
    /// Passive check only: a missing queue is an error.
    CheckOnly,
    /// queue.declare with these settings.
    Exactly {
        /// Survives a broker restart.
        durable: bool,
        /// Queue arguments (`x-dead-letter-exchange`, `x-queue-type`, …).
        arguments: serde_json::Map<String, serde_json::Value>,
    },
}

/// `queue_type`: the type of the queues ferry declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// RabbitMQ's classic queues: declared without `x-queue-type`, as before this key
    /// existed, so queues ferry declared then still match.
    #[default]
    Classic,
    /// Quorum queues (`x-queue-type: quorum`): replicated, always durable.
    Quorum,
}

impl QueueType {
    /// The `x-queue-type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// When an AMQP delivery is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// After the worker succeeded, or a retry/dead-letter copy was confirmed.
    #[default]
    AfterResponse,
    /// Once the request is written: never retried, can lose work (documented).
    OnDispatch,
}

/// How an AMQP retry waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// Publish a copy to `<queue>.ferry-retry.<ms>` (TTL + dead-letter back), ack the original.
    #[default]
    Republish,
    /// Keep the delivery unacked in memory until the delay passes.
    Hold,
}

/// Where an AMQP message goes after its last attempt or a permanent failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeadLetter {
    /// basic.reject requeue=false: the queue's own dead-letter exchange, if it has one.
    #[default]
    Reject,
    /// Publish (with confirms) to this exchange and routing key, then ack.
    Publish {
        /// Exchange name.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
}

/// `job`: how a message becomes a FastCGI request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Pool name.
    pub pool: String,
    /// Absolute `SCRIPT_FILENAME`.
    pub script: String,
    /// Body encoding.
    #[serde(default)]
    pub body: BodyMode,
    /// `REQUEST_METHOD`.
    #[serde(default = "method")]
    pub method: String,
    /// `CONTENT_TYPE` for raw bodies without an AMQP `content_type`.
    #[serde(default = "content_type")]
    pub content_type: String,
    /// Extra FastCGI params.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Treat a response without `X-Ferry-Action` as retryable.
    #[serde(default)]
    pub require_action_header: bool,
}

/// Message body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyMode {
    /// JSON object → `application/x-www-form-urlencoded` as `http_build_query`.
    #[default]
    Form,
    /// The payload as it is (`php://input`).
    Raw,
}

// --- serde defaults and field readers ------------------------------------------------

fn shutdown_timeout_ms() -> u64 {
    defaults::SHUTDOWN_TIMEOUT_MS
}
fn control_listen() -> Option<Address> {
    Address::parse(defaults::CONTROL_LISTEN).ok()
}
fn max_in_flight() -> u32 {
    defaults::MAX_IN_FLIGHT
}
fn connect_timeout_ms() -> u64 {
    defaults::CONNECT_TIMEOUT_MS
}
fn request_timeout_ms() -> u64 {
    defaults::REQUEST_TIMEOUT_MS
}
fn idle_timeout_ms() -> u64 {
    defaults::IDLE_TIMEOUT_MS
}
fn keep_conn() -> bool {
    true
}

fn circuit_release_ms() -> u64 {
    defaults::CIRCUIT_RELEASE_MS
}
fn spawn_processes() -> u32 {
    defaults::MAX_IN_FLIGHT
}
fn max_attempts() -> u32 {
    defaults::MAX_ATTEMPTS
}
fn retry_delays_ms() -> Vec<u64> {
    defaults::RETRY_DELAYS_MS.to_vec()
}
fn backlog() -> usize {
    defaults::BACKLOG
}
fn backlog_bytes() -> usize {
    defaults::BACKLOG_BYTES
}
fn max_clients() -> usize {
    defaults::MAX_CLIENTS
}
fn client_output_buffer_bytes() -> usize {
    defaults::CLIENT_OUTPUT_BUFFER_BYTES
}

fn stream_start() -> String {
    "$".into()
}
fn yes() -> bool {
    true
}
fn resp_version() -> u8 {
    3
}

fn max_message_bytes() -> usize {
    defaults::MAX_MESSAGE_BYTES
}
fn heartbeat_s() -> u16 {
    defaults::HEARTBEAT_S
}
fn method() -> String {
    defaults::METHOD.into()
}
fn content_type() -> String {
    defaults::CONTENT_TYPE.into()
}

fn address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    let text = String::deserialize(d)?;
    Address::parse(&text).map_err(serde::de::Error::custom)
}

fn optional_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => Address::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn one_redis_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RedisUrl>, D::Error> {
    let text = String::deserialize(d)?;
    RedisUrl::parse(&text)
        .map(Some)
        .map_err(|why| serde::de::Error::custom(format!("url: {why}")))
}

fn one_amqp_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AmqpUrl>, D::Error> {
    let text = String::deserialize(d)?;
    AmqpUrl::parse(&text)
        .map(Some)
        .map_err(|why| serde::de::Error::custom(format!("url: {why}")))
}

fn redis_urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<RedisUrl>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .enumerate()
        .map(|(n, text)| {
            RedisUrl::parse(text)
                .map_err(|why| serde::de::Error::custom(format!("urls[{n}]: {why}")))
        })
        .collect()
}

fn amqp_urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<AmqpUrl>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .enumerate()
        .map(|(n, text)| {
            AmqpUrl::parse(text)
                .map_err(|why| serde::de::Error::custom(format!("urls[{n}]: {why}")))
        })
        .collect()
}

/// Resolves `url` / `urls` into the list of nodes: exactly one of the keys, 1 to
/// [`MAX_NODES`] nodes, none twice (`docs/CONFIGURATION.md`, "Failover").
fn resolve_nodes<U: fmt::Display>(
    at: &str,
    one: Option<U>,
    urls: &mut Vec<U>,
) -> Result<(), ConfigError> {
    match one {
        Some(_) if !urls.is_empty() => {
            return Err(ConfigError::new(
                format!("{at}.urls"),
                "give either url or urls, not both",
            ))
        }
        Some(url) => urls.push(url),
        None if urls.is_empty() => {
            return Err(ConfigError::new(
                format!("{at}.url"),
                "missing (give url, or urls with the nodes of one cluster)",
            ))
        }
        None => {}
    }
    if urls.len() > MAX_NODES {
        return Err(ConfigError::new(
            format!("{at}.urls"),
            format!("at most {MAX_NODES} nodes"),
        ));
    }
    let texts: Vec<String> = urls.iter().map(ToString::to_string).collect();
    for (n, text) in texts.iter().enumerate() {
        if texts[..n].contains(text) {
            return Err(ConfigError::new(
                format!("{at}.urls[{n}]"),
                format!("{text} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Most nodes in `urls`: a source tries them in turn, and a longer list is a mistake.
pub const MAX_NODES: usize = 16;

impl<'de> Deserialize<'de> for Declare {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Spec {
            #[serde(default = "yes")]
            durable: bool,
            #[serde(default)]
            arguments: serde_json::Map<String, serde_json::Value>,
        }
        fn yes() -> bool {
            true
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Flag(bool),
            Spec(Spec),
        }
        Ok(match Form::deserialize(d)? {
            Form::Flag(false) => Declare::CheckOnly,
            Form::Flag(true) => Declare::IfMissing,
            Form::Spec(spec) => Declare::Exactly {
                durable: spec.durable,
                arguments: spec.arguments,
            },
        })
    }
}

impl<'de> Deserialize<'de> for StreamBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct One {
            field: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            One(One),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("body must be \"form\" or {\"field\": \"NAME\"}")
        })? {
            Form::Word(word) if word == "form" => Ok(StreamBody::Form),
            Form::Word(word) => Err(serde::de::Error::custom(format!(
                "body must be \"form\" or {{\"field\": \"NAME\"}}, not \"{word}\""
            ))),
            Form::One(one) => Ok(StreamBody::Field(one.field)),
        }
    }
}

impl<'de> Deserialize<'de> for DeadLetter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Target {
            exchange: String,
            #[serde(default)]
            routing_key: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            Target(Target),
        }
        match Form::deserialize(d)? {
            Form::Word(word) if word == "reject" => Ok(DeadLetter::Reject),
            Form::Word(word) => Err(serde::de::Error::custom(format!(
                "dead_letter must be \"reject\" or {{\"exchange\": …, \"routing_key\": …}}, not \"{word}\""
            ))),
            Form::Target(t) => Ok(DeadLetter::Publish {
                exchange: t.exchange,
                routing_key: t.routing_key,
            }),
        }
    }
}

// --- loading and validation ----------------------------------------------------------

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read(path)
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
    parse(&text, path.parent())
}

/// Parses and validates configuration text; `base` resolves relative `password_file`s.
pub fn parse(text: &[u8], base: Option<&Path>) -> Result<Config, ConfigError> {
    let mut config: Config = serde_json::from_slice(text).map_err(|e| {
        ConfigError::new(
            format!("line {} column {}", e.line(), e.column()),
            strip_position(&e.to_string()),
        )
    })?;
    config.validate(base)?;
    Ok(config)
}

/// serde_json appends " at line L column C"; the position is already in the key.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Source names appear in metric labels and URL paths: keep them plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Config {
    /// Checks what types cannot say and resolves dependent defaults.
    pub fn validate(&mut self, base: Option<&Path>) -> Result<(), ConfigError> {
        if self.shutdown_timeout_ms > MAX_DURATION_MS {
            return Err(ConfigError::new(
                "shutdown_timeout_ms",
                format!("must be at most {MAX_DURATION_MS} ms (a week)"),
            ));
        }
        for (name, pool) in &self.pools {
            let key = |field: &str| format!("pools.{name}.{field}");
            if !valid_name(name) {
                return Err(ConfigError::new(
                    format!("pools.{name}"),
                    "pool names are 1–64 characters of A-Z a-z 0-9 _ - .",
                ));
            }
            match (&pool.address, &pool.spawn) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        key("spawn"),
                        "give either address or spawn, not both",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::new(key("address"), "missing (or give spawn)"))
                }
                (None, Some(spawn)) => {
                    if spawn.command.first().is_none_or(String::is_empty) {
                        return Err(ConfigError::new(
                            key("spawn.command"),
                            "must name a program",
                        ));
                    }
                    if spawn.processes == 0 {
                        return Err(ConfigError::new(
                            key("spawn.processes"),
                            "must be at least 1",
                        ));
                    }
                    if let Some(Address::Tcp { host, .. }) = &spawn.listen {
                        let loopback = host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback());
                        if !loopback {
                            return Err(ConfigError::new(
                                key("spawn.listen"),
                                "a TCP listen address must be a loopback IP literal \
                                 (127.0.0.1 or ::1): FastCGI has no authentication",
                            ));
                        }
                    }
                }
                (Some(_), None) => {}
            }
            if pool.max_in_flight == 0 {
                return Err(ConfigError::new(key("max_in_flight"), "must be at least 1"));
            }
            for (field, value) in [
                ("connect_timeout_ms", pool.connect_timeout_ms),
                ("request_timeout_ms", pool.request_timeout_ms),
                ("idle_timeout_ms", pool.idle_timeout_ms),
                ("circuit_release_ms", pool.circuit_release_ms),
            ] {
                if value == 0 || value > MAX_DURATION_MS {
                    return Err(ConfigError::new(
                        key(field),
                        format!("must be 1–{MAX_DURATION_MS} ms (a week)"),
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, source) in self.sources.iter_mut().enumerate() {
            let at = format!("sources[{index}]");
            let name = source.name().to_string();
            if !valid_name(&name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    "source names are 1–64 characters of A-Z a-z 0-9 _ - .",
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("'{name}' is used by another source"),
                ));
            }
            let at = format!("{at} (\"{name}\")");
            let job = source.job();
            let Some(pool) = self.pools.get(&job.pool) else {
                return Err(ConfigError::new(
                    format!("{at}.job.pool"),
                    format!("no pool named '{}'", job.pool),
                ));
            };
            if !job.script.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{at}.job.script"),
                    "must be an absolute path (php-fpm resolves SCRIPT_FILENAME as it is)",
                ));
            }
            let pool_max_in_flight = pool.max_in_flight;
            match source {
                SourceConfig::Redis(redis) => {
                    if redis.channels.is_empty() && redis.patterns.is_empty() {
                        return Err(ConfigError::new(
                            format!("{at}.channels"),
                            "give at least one channel or pattern",
                        ));
                    }
                    let names_nodes = redis.one_url.is_some() || !redis.urls.is_empty();
                    let tls = redis.tls.is_some();
                    if !resolve_sentinel(&at, &mut redis.sentinel, names_nodes, tls, base)? {
                        resolve_nodes(&at, redis.one_url.take(), &mut redis.urls)?;
                    }
                    let nodes = redis.urls.iter().map(|u| (u.tls, u.host.as_str()));
                    redis.tls_client = resolve_tls(&at, redis.tls.as_ref(), nodes, base)?;
                    check_retries(&at, redis.max_attempts, &redis.retry_delays_ms)?;
                    check_backlog(&at, redis.backlog, redis.backlog_bytes)?;
                    if let Some(file) = &redis.password_file {
                        let password = read_password(&at, base, file)?;
                        for url in &mut redis.urls {
                            url.password = Some(password.clone());
                        }
                        if let Some(sentinel) = &mut redis.sentinel {
                            sentinel.master_password = Some(password);
                        }
                    }
                }
                SourceConfig::Amqp(amqp) => {
                    resolve_nodes(&at, amqp.one_url.take(), &mut amqp.urls)?;
                    let nodes = amqp.urls.iter().map(|u| (u.tls, u.host.as_str()));
                    amqp.tls_client = resolve_tls(&at, amqp.tls.as_ref(), nodes, base)?;
                    check_queue_type(&at, amqp)?;
                    amqp.queue_type = Some(amqp.queue_type.unwrap_or_default());
                    if amqp.queue.is_empty() || amqp.queue.len() > 255 {
                        return Err(ConfigError::new(
                            format!("{at}.queue"),
                            "must be 1–255 bytes",
                        ));
                    }
                    let prefetch = match amqp.prefetch {
                        Some(0) => {
                            return Err(ConfigError::new(
                                format!("{at}.prefetch"),
                                "must be 1–65535",
                            ))
                        }
                        Some(n) => n,
                        None => u16::try_from(pool_max_in_flight).unwrap_or(u16::MAX),
                    };
                    amqp.prefetch = Some(prefetch);
                    check_retries(&at, amqp.max_attempts, &amqp.retry_delays_ms)?;
                    if amqp
                        .retry_delays_ms
                        .iter()
                        .any(|&ms| ms > u64::from(u32::MAX))
                    {
                        return Err(ConfigError::new(
                            format!("{at}.retry_delays_ms"),
                            "each delay must fit a queue TTL (at most 4294967295 ms)",
                        ));
                    }
                    if let Some(file) = &amqp.password_file {
                        let password = read_password(&at, base, file)?;
                        for url in &mut amqp.urls {
                            url.password = password.clone();
                        }
                    }
                }
                SourceConfig::RedisStream(stream) => {
                    let names_nodes = stream.one_url.is_some() || !stream.urls.is_empty();
                    let tls = stream.tls.is_some();
                    if !resolve_sentinel(&at, &mut stream.sentinel, names_nodes, tls, base)? {
                        resolve_nodes(&at, stream.one_url.take(), &mut stream.urls)?;
                    }
                    let nodes = stream.urls.iter().map(|u| (u.tls, u.host.as_str()));
                    stream.tls_client = resolve_tls(&at, stream.tls.as_ref(), nodes, base)?;
                    for (field, value) in [("stream", &stream.stream), ("group", &stream.group)] {
                        if value.is_empty() {
                            return Err(ConfigError::new(
                                format!("{at}.{field}"),
                                "must not be empty",
                            ));
                        }
                    }
                    if stream.consumer.as_deref() == Some("") {
                        return Err(ConfigError::new(
                            format!("{at}.consumer"),
                            "must not be empty (leave it out for host name + '-' + source name)",
                        ));
                    }
                    if stream.consumer.is_none() {
                        stream.consumer = Some(default_consumer(&stream.name));
                    }
                    if stream.start != "$"
                        && stream.start != "0"
                        && crate::proto::resp::stream::EntryId::parse(stream.start.as_bytes())
                            .is_none()
                    {
                        return Err(ConfigError::new(
                            format!("{at}.start"),
                            "must be \"$\" (new entries), \"0\" (the whole stream) or an entry id",
                        ));
                    }
                    if stream.resp != 2 && stream.resp != 3 {
                        return Err(ConfigError::new(format!("{at}.resp"), "must be 2 or 3"));
                    }
                    if stream.job.body == BodyMode::Raw {
                        return Err(ConfigError::new(
                            format!("{at}.job.body"),
                            "a redis_stream source sets its body with the source's own \"body\" \
                             key (\"form\" or {\"field\": NAME})",
                        ));
                    }
                    if stream.max_message_bytes == 0 {
                        return Err(ConfigError::new(
                            format!("{at}.max_message_bytes"),
                            "must be at least 1",
                        ));
                    }
                    let claim = stream
                        .claim_idle_ms
                        .unwrap_or(pool.request_timeout_ms.saturating_add(30_000));
                    if claim == 0 || claim > MAX_DURATION_MS {
                        return Err(ConfigError::new(
                            format!("{at}.claim_idle_ms"),
                            format!("must be 1–{MAX_DURATION_MS} ms (a week)"),
                        ));
                    }
                    stream.claim_idle_ms = Some(claim);
                    check_retries(&at, stream.max_attempts, &stream.retry_delays_ms)?;
                    if let Some(file) = &stream.password_file {
                        let password = read_password(&at, base, file)?;
                        for url in &mut stream.urls {
                            url.password = Some(password.clone());
                        }
                        if let Some(sentinel) = &mut stream.sentinel {
                            sentinel.master_password = Some(password);
                        }
                    }
                }
                SourceConfig::RespEndpoint(endpoint) => {
                    if endpoint.channels.is_empty() {
                        return Err(ConfigError::new(
                            format!("{at}.channels"),
                            "give at least one channel",
                        ));
                    }
                    check_retries(&at, endpoint.max_attempts, &endpoint.retry_delays_ms)?;
                    check_backlog(&at, endpoint.backlog, endpoint.backlog_bytes)?;
                    if endpoint.max_clients == 0 {
                        return Err(ConfigError::new(
                            format!("{at}.max_clients"),
                            "must be at least 1",
                        ));
                    }
                    if endpoint.client_output_buffer_bytes < 64 * 1024 {
                        return Err(ConfigError::new(
                            format!("{at}.client_output_buffer_bytes"),
                            "must be at least 65536",
                        ));
                    }
                    if endpoint.max_message_bytes == 0 {
                        return Err(ConfigError::new(
                            format!("{at}.max_message_bytes"),
                            "must be at least 1",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The longest duration any `*_ms` setting may have: a week. Larger values are
/// mistakes, and bounded values keep deadline arithmetic from overflowing.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;

fn check_retries(at: &str, max_attempts: u32, delays: &[u64]) -> Result<(), ConfigError> {
    if delays.iter().any(|&ms| ms > MAX_DURATION_MS) {
        return Err(ConfigError::new(
            format!("{at}.retry_delays_ms"),
            format!("each delay must be at most {MAX_DURATION_MS} ms (a week)"),
        ));
    }
    if max_attempts == 0 {
        return Err(ConfigError::new(
            format!("{at}.max_attempts"),
            "must be at least 1",
        ));
    }
    if delays.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.retry_delays_ms"),
            "give at least one delay",
        ));
    }
    Ok(())
}

/// `queue_type: "quorum"` with a `declare` that contradicts it: quorum queues are
/// durable, and `x-queue-type` in `declare.arguments` must agree.
fn check_queue_type(at: &str, amqp: &AmqpSource) -> Result<(), ConfigError> {
    let Declare::Exactly { durable, arguments } = &amqp.declare else {
        return Ok(());
    };
    // Without `queue_type`, `declare.arguments` alone says what the queue is (as before
    // the key existed), and the retry queues stay classic.
    let Some(queue_type) = amqp.queue_type else {
        return Ok(());
    };
    let wanted = queue_type.as_str();
    match arguments.get("x-queue-type") {
        Some(serde_json::Value::String(given)) if given == wanted => {}
        None => {}
        Some(given) => {
            return Err(ConfigError::new(
                format!("{at}.declare.arguments.x-queue-type"),
                format!("is {given} but queue_type is \"{wanted}\" (give one of them)"),
            ))
        }
    }
    if queue_type == QueueType::Quorum && !durable {
        return Err(ConfigError::new(
            format!("{at}.declare.durable"),
            "a quorum queue is always durable",
        ));
    }
    Ok(())
}

fn check_backlog(at: &str, messages: usize, bytes: usize) -> Result<(), ConfigError> {
    if messages == 0 || bytes == 0 {
        return Err(ConfigError::new(
            format!("{at}.backlog"),
            "backlog and backlog_bytes must be above 0",
        ));
    }
    Ok(())
}

/// The TLS client of a source whose nodes are `(tls, host)`: `None` for plain nodes,
/// built from `settings` (or the defaults: system roots, the URL's host) for TLS ones.
/// Every node of a source speaks the same: a cluster is all TLS or all plain.
fn resolve_tls<'a>(
    at: &str,
    settings: Option<&TlsSettings>,
    nodes: impl Iterator<Item = (bool, &'a str)>,
    base: Option<&Path>,
) -> Result<Option<TlsClient>, ConfigError> {
    let nodes: Vec<(bool, &str)> = nodes.collect();
    let tls = nodes.iter().filter(|(tls, _)| *tls).count();
    if tls == 0 {
        return match settings {
            Some(_) => Err(ConfigError::new(
                format!("{at}.tls"),
                "the URL is plain: use rediss:// or amqps:// for TLS",
            )),
            None => Ok(None),
        };
    }
    if tls != nodes.len() {
        return Err(ConfigError::new(
            format!("{at}.urls"),
            "mixes TLS and plain URLs: the nodes of one cluster speak the same",
        ));
    }
    let defaults = TlsSettings::default();
    let settings = settings.unwrap_or(&defaults);
    let client = tls::build(settings, base)
        .map_err(|(key, why)| ConfigError::new(format!("{at}.{key}"), why))?;
    for (_, host) in &nodes {
        client
            .server_name_for(host)
            .map_err(|why| ConfigError::new(format!("{at}.url"), why))?;
    }
    Ok(Some(client))
}

/// Resolves a `sentinel` block; returns whether the source has one (then it must name
/// no node — `url`, `urls` — nor TLS: the sentinels say where the master is).
fn resolve_sentinel(
    at: &str,
    sentinel: &mut Option<SentinelSettings>,
    names_nodes: bool,
    tls: bool,
    base: Option<&Path>,
) -> Result<bool, ConfigError> {
    let Some(sentinel) = sentinel else {
        return Ok(false);
    };
    if names_nodes {
        return Err(ConfigError::new(
            format!("{at}.sentinel"),
            "give either url/urls or sentinel: with sentinel, the sentinels name the master",
        ));
    }
    if tls {
        return Err(ConfigError::new(
            format!("{at}.tls"),
            "TLS through Sentinel is not supported yet: name the TLS nodes in urls",
        ));
    }
    sentinel.resolve(at, base)?;
    Ok(true)
}

/// Reads the first line of a password file (relative paths from the config's folder).
fn read_password(at: &str, base: Option<&Path>, file: &Path) -> Result<Secret, ConfigError> {
    let path = match base {
        Some(base) if file.is_relative() => base.join(file),
        _ => file.to_path_buf(),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::new(
            format!("{at}.password_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let password = text.lines().next().unwrap_or("");
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests;
