//! Broker sources: a Redis subscriber or an AMQP session per source, reconnected with
//! jittered backoff (`docs/SEMANTICS.md`, "Delivery guarantees" and "Reconnects").
//!
//! A source has two independent states:
//! - its [`Link`], the connection: `Idle` (a reconnect timer is armed, or it waits for
//!   its pool) → `Connecting` → `Up` with its protocol session → back to `Idle` when the
//!   connection is lost; `Listening` for a RESP endpoint; `Stopped` for good.
//! - its [`Intake`], whether it takes work: `Taking`, `Parked` (its pool's circuit stayed
//!   open past `circuit_release_ms`: it let go of the broker), `Draining` (SIGTERM) or
//!   `Retired` (removed or replaced by a reload: it finishes its work, then closes).
//!   Pausing through the control endpoint is an operator's flag beside it (`paused`),
//!   since it survives reloads and outlasts a parked spell.
//!
//! A broker source has one or more *nodes* (`url` or `urls`: `docs/SEMANTICS.md`,
//! "Failover"). It is connected to one node at a time; a node whose connection fails or
//! is lost backs off on its own schedule ([`Node`]), and the source goes on with the next
//! node that may be tried soonest, in the order of the list — at once when that node has
//! not failed lately. With one node this is plain reconnecting with backoff.
//!
//! Each new AMQP connection is a new *generation*: a job remembers the generation it was
//! delivered on, and settling a job of an older generation sends nothing — its tag died
//! with its channel, and the broker has already requeued the message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::backoff::Backoff;
use super::ids::{PoolId, SourceId};
use super::io::{Buffers, ConnId, Connect, Fill, Io};
use super::jobs::{Job, Origin};
use super::settle::{retry_queue_name, PendingSettle};
use super::{Engine, Peer, Phase, TimerKey};
use crate::config::Address;
use crate::config::{
    AmqpSource, AmqpUrl, Declare, JobConfig, QueueType, RedisSource, RedisUrl, RespEndpointSource,
    RetryMode, SourceConfig,
};
use crate::dispatch::retry::RetryPolicy;
use crate::metrics::{DropReason, EndpointMetrics, SourceMetrics};
use crate::proto::amqp::session::table_from_json;
use crate::proto::amqp::{
    DeclareMode, Event as AmqpEvent, PublishSeq, QueueType as SessionQueueType, Session,
    SessionConfig,
};
use crate::proto::resp::sentinel::RoleCheck;
use crate::proto::resp::stream::StreamConsumer;
use crate::proto::resp::{Subscriber, SubscriberConfig, SubscriberEvent};

/// Write buffer high-water mark of a broker connection.
const BROKER_WRITE_HIGH_WATER: usize = 8 << 20;
/// Extra read-buffer room above the largest message (frame overhead, other replies).
const READ_SLACK: usize = 256 * 1024;
/// How often a full Redis backlog may log a warning.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// A connect that takes longer (a black-holed host) is given up and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol session of an established connection.
pub(super) enum Session_ {
    /// A master named by a sentinel proves its role before the real session starts.
    Role(Box<RoleCheck>),
    Redis(Box<Subscriber>),
    Amqp(Box<Session>),
    Stream(Box<StreamConsumer>),
}

/// One node of a broker source, with its own reconnect backoff.
pub(super) struct Node {
    /// Where it listens (`host:port`, as `/status` and the log name it).
    pub address: Address,
    backoff: Backoff,
    /// After a failure, the node is not tried again before this instant.
    pub(super) not_before: Option<Instant>,
}

impl Node {
    pub(super) fn new(address: Address, backoff: Backoff) -> Node {
        Node {
            address,
            backoff,
            not_before: None,
        }
    }

    /// Its connection failed or was lost at `now`: it backs off.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.backoff.next_delay();
        self.not_before = Some(now + delay);
        delay
    }

    /// It reached the point where the source is ready: its backoff starts over.
    pub(super) fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = None;
    }
}

/// The nodes of a broker source's `url` / `urls`, in their order.
fn node_addresses(config: &SourceConfig) -> Vec<Address> {
    let tcp = |host: &str, port: u16| Address::Tcp {
        host: host.to_string(),
        port,
    };
    match config {
        // Through Sentinel, one master whose address the sentinels give (`sentinel.rs`).
        SourceConfig::Redis(s) if s.sentinel.is_some() => vec![super::sentinel::unknown_master()],
        SourceConfig::RedisStream(s) if s.sentinel.is_some() => {
            vec![super::sentinel::unknown_master()]
        }
        SourceConfig::Redis(s) => s.urls.iter().map(|u| tcp(&u.host, u.port)).collect(),
        SourceConfig::Amqp(s) => s.urls.iter().map(|u| tcp(&u.host, u.port)).collect(),
        SourceConfig::RedisStream(s) => s.urls.iter().map(|u| tcp(&u.host, u.port)).collect(),
        SourceConfig::RespEndpoint(_) => Vec::new(),
    }
}

/// Where a source's connection stands.
pub(super) enum Link {
    /// Not connected; a `TimerKey::Source` deadline reconnects (unless parked).
    Idle,
    /// A connect (and the host-name lookup before it) is under way on `conn`.
    Connecting { conn: ConnId },
    /// Connected: the session speaks on `conn`; `ready` once subscribed or consuming.
    Up {
        conn: ConnId,
        session: Session_,
        ready: bool,
    },
    /// A RESP endpoint listening (its listener and clients are in `Source::server`).
    Listening,
    /// Drained and closed, or retired: never reconnects.
    Stopped,
}

/// Whether a source takes work; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intake {
    /// Taking messages.
    Taking,
    /// Let go of its broker connection while its pool's circuit stays open; reconnects
    /// when the pool answers again.
    Parked,
    /// SIGTERM: unsubscribed / cancelled, finishing what is in flight.
    Draining,
    /// Removed or replaced by a reload: finishing its work, then closed for good.
    Retired,
}

/// One configured source at run time.
pub(super) struct Source {
    pub name: String,
    config: SourceConfig,
    pub job: JobConfig,
    pub pool: PoolId,
    policy: RetryPolicy,
    pub(super) link: Link,
    pub(super) intake: Intake,
    pub(super) generation: u64,
    /// A RESP endpoint's listen retries (broker sources back off per node).
    backoff: Backoff,
    /// A broker source's nodes (empty for a RESP endpoint), and the one in use: connected,
    /// being connected to, or next to try.
    pub(super) nodes: Vec<Node>,
    pub(super) node: usize,
    /// The node the log last said ferry connects to (a retry of the same node is quieter).
    logged_node: Option<usize>,
    /// Its counters (`/metrics`, `/status`).
    pub metrics: SourceMetrics,
    /// Publishes (retry copies, dead-letter copies) awaiting a broker confirm.
    pub(super) pending: HashMap<PublishSeq, PendingSettle>,
    /// Jobs of this source waiting in its pool's queue, and their bytes.
    waiting_jobs: usize,
    waiting_bytes: usize,
    /// Paused through the control endpoint: AMQP cancels its consumer and hands unstarted
    /// messages back; Redis stays subscribed and drops what arrives.
    pub paused: bool,
    drops_since_warn: u64,
    last_drop_warn: Option<Instant>,
    /// A RESP endpoint's listener, clients and subscription index, while listening.
    pub(super) server: Option<Box<super::endpoint::EndpointServer>>,
    /// A RESP endpoint's client counters (`ferry_endpoint_disconnects_total`).
    pub endpoint_metrics: EndpointMetrics,
    /// A stream source's entries and figures (`streams.rs`).
    pub(super) stream: Option<Box<super::streams::StreamState>>,
    /// A source with a `sentinel` block: its sentinels and watch (`sentinel.rs`).
    pub(super) sentinel: Option<Box<super::sentinel::Watch>>,
}

impl Source {
    pub fn new(config: SourceConfig, pool: PoolId, backoff: Backoff) -> Source {
        let (max_attempts, delays) = match &config {
            SourceConfig::Redis(s) => (s.max_attempts, s.retry_delays_ms.clone()),
            SourceConfig::Amqp(s) => (s.max_attempts, s.retry_delays_ms.clone()),
            SourceConfig::RespEndpoint(s) => (s.max_attempts, s.retry_delays_ms.clone()),
            SourceConfig::RedisStream(s) => (s.max_attempts, s.retry_delays_ms.clone()),
        };
        let mut job = config.job().clone();
        let stream = match &config {
            SourceConfig::RedisStream(s) => {
                // The body is made from the entry (`streams.rs`) and sent as it is.
                job.body = crate::config::BodyMode::Raw;
                Some(Box::new(super::streams::StreamState::new(s)))
            }
            _ => None,
        };
        let nodes = node_addresses(&config)
            .into_iter()
            .enumerate()
            .map(|(n, address)| Node::new(address, backoff.clone().salted(n as u64)))
            .collect();
        let sentinel = match &config {
            SourceConfig::Redis(s) => s.sentinel.as_ref(),
            SourceConfig::RedisStream(s) => s.sentinel.as_ref(),
            _ => None,
        }
        .map(|settings| Box::new(super::sentinel::Watch::new(settings, &backoff)));
        Source {
            name: config.name().to_string(),
            job,
            pool,
            policy: RetryPolicy::new(max_attempts, &delays),
            link: Link::Idle,
            intake: Intake::Taking,
            generation: 0,
            backoff,
            nodes,
            node: 0,
            logged_node: None,
            metrics: SourceMetrics::default(),
            pending: HashMap::new(),
            waiting_jobs: 0,
            waiting_bytes: 0,
            paused: false,
            drops_since_warn: 0,
            last_drop_warn: None,
            server: None,
            endpoint_metrics: EndpointMetrics::default(),
            stream,
            sentinel,
            config,
        }
    }

    pub fn channels(&self) -> &[String] {
        match &self.config {
            SourceConfig::Redis(s) => &s.channels,
            SourceConfig::RespEndpoint(s) => &s.channels,
            SourceConfig::Amqp(_) | SourceConfig::RedisStream(_) => &[],
        }
    }

    pub fn patterns(&self) -> &[String] {
        match &self.config {
            SourceConfig::Redis(s) => &s.patterns,
            _ => &[],
        }
    }

    pub fn queue(&self) -> Option<&str> {
        match &self.config {
            SourceConfig::Amqp(s) => Some(&s.queue),
            _ => None,
        }
    }

    /// A stream source's configuration.
    pub fn stream_config(&self) -> Option<&crate::config::RedisStreamSource> {
        match &self.config {
            SourceConfig::RedisStream(s) => Some(s),
            _ => None,
        }
    }

    /// The AMQP queue or the stream key (`FERRY_QUEUE` / `FERRY_STREAM`).
    pub fn queue_or_stream(&self) -> Option<&str> {
        match &self.config {
            SourceConfig::Amqp(s) => Some(&s.queue),
            SourceConfig::RedisStream(s) => Some(&s.stream),
            _ => None,
        }
    }

    pub fn is_amqp(&self) -> bool {
        matches!(self.config, SourceConfig::Amqp(_))
    }

    /// Its retry schedule.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The configuration of a RESP endpoint source.
    pub fn endpoint_config(&self) -> Option<&RespEndpointSource> {
        match &self.config {
            SourceConfig::RespEndpoint(s) => Some(s),
            _ => None,
        }
    }

    /// Intake stopped by a drain or a reload: arrivals are dropped (`shutdown`).
    pub fn intake_stopped(&self) -> bool {
        matches!(self.intake, Intake::Draining | Intake::Retired)
    }

    /// Removed or replaced by a reload (finishing its work, then closed).
    pub fn is_retired(&self) -> bool {
        self.intake == Intake::Retired
    }

    /// Parked while its pool's circuit stays open.
    pub fn is_parked(&self) -> bool {
        self.intake == Intake::Parked
    }

    /// Takes new work now (not paused, parked, draining or retired).
    pub fn takes_work(&self) -> bool {
        self.intake == Intake::Taking && !self.paused
    }

    /// A RESP endpoint's connected clients (`None` for other kinds).
    pub fn endpoint_clients(&self) -> Option<usize> {
        self.endpoint_config()?;
        Some(self.server.as_ref().map_or(0, |s| s.clients))
    }

    /// `backlog` and `backlog_bytes`, for the kinds that keep a backlog in memory.
    fn backlog_limits(&self) -> Option<(usize, usize)> {
        match &self.config {
            SourceConfig::Redis(s) => Some((s.backlog, s.backlog_bytes)),
            SourceConfig::RespEndpoint(s) => Some((s.backlog, s.backlog_bytes)),
            SourceConfig::Amqp(_) | SourceConfig::RedisStream(_) => None,
        }
    }

    /// Still connected or connecting (the closing phase waits for these).
    pub fn is_open(&self) -> bool {
        !matches!(self.link, Link::Idle | Link::Stopped)
    }

    /// Counts a job entering its pool's queue against this source's backlog.
    pub fn note_enqueued(&mut self, job: &Job) {
        self.waiting_jobs += 1;
        self.waiting_bytes += job.held_bytes();
    }

    /// Forgets the backlog count (its jobs were taken out of the queue).
    pub fn clear_waiting(&mut self) {
        self.waiting_jobs = 0;
        self.waiting_bytes = 0;
    }

    /// Subscribed or consuming now (`/readyz`, `ferry_source_connected`).
    pub fn is_ready(&self) -> bool {
        matches!(self.link, Link::Up { ready: true, .. } | Link::Listening)
    }

    /// Where the source stands, in one word (`/status`).
    pub fn state_label(&self) -> &'static str {
        match &self.link {
            _ if self.paused => "paused",
            _ if self.is_parked() => "released",
            Link::Up { ready: true, .. } => "connected",
            Link::Listening => "listening",
            Link::Up { .. } | Link::Connecting { .. } => "connecting",
            Link::Idle => "disconnected",
            Link::Stopped => "stopped",
        }
    }

    /// The node in use (`host:port`): connected, being connected to, or next to try;
    /// `None` for a RESP endpoint (`/status` "node").
    pub fn node_label(&self) -> Option<String> {
        let node = self.nodes.get(self.node)?;
        // Through Sentinel, `null` until a sentinel named the master.
        let unknown = self.sentinel.is_some() && node.address == super::sentinel::unknown_master();
        (!unknown).then(|| node.address.to_string())
    }

    /// The sentinel asked (`/status` "sentinel"); `None` without a `sentinel` block.
    pub fn sentinel_label(&self) -> Option<String> {
        self.sentinel.as_ref().and_then(|w| w.sentinel_label())
    }

    /// Picks the node to try next after the current one failed (see [`pick_next`]).
    /// Returns when to try it.
    fn pick_next_node(&mut self, now: Instant) -> Instant {
        let (index, at) = pick_next(&self.nodes, self.node, now);
        self.node = index;
        at
    }

    /// Its configuration (a reload compares it with the new one).
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The kind as configured.
    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// Jobs of this source waiting in its pool's queue.
    pub fn waiting(&self) -> usize {
        self.waiting_jobs
    }

    /// AMQP deliveries held unacknowledged on the current connection; a stream's pending
    /// entries of this consumer (0 for Redis).
    pub fn unacked(&self) -> usize {
        if let Some(stream) = &self.stream {
            return stream.unacked();
        }
        match &self.link {
            Link::Up {
                session: Session_::Amqp(s),
                ..
            } => s.unacked_count(),
            _ => 0,
        }
    }

    /// Settles waiting for a broker confirm.
    pub fn pending_settles(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn amqp(&self) -> Option<&AmqpSource> {
        match &self.config {
            SourceConfig::Amqp(s) => Some(s),
            _ => None,
        }
    }

    /// The AMQP session while the connection is up.
    pub(super) fn amqp_session_mut(&mut self) -> Option<&mut Session> {
        match &mut self.link {
            Link::Up {
                session: Session_::Amqp(s),
                ..
            } => Some(s),
            _ => None,
        }
    }

    /// The connection while it is up.
    pub(super) fn up_conn(&self) -> Option<ConnId> {
        match self.link {
            Link::Up { conn, .. } => Some(conn),
            _ => None,
        }
    }

    /// The Redis URL of the node in use: from `urls`, or made from the address a
    /// sentinel gave.
    fn redis_url(&self) -> Option<RedisUrl> {
        if let Some(watch) = &self.sentinel {
            let Address::Tcp { host, port } = &self.nodes.first()?.address else {
                return None;
            };
            return Some(watch.settings().master_url(host, *port));
        }
        match &self.config {
            SourceConfig::Redis(s) => s.urls.get(self.node).cloned(),
            SourceConfig::RedisStream(s) => s.urls.get(self.node).cloned(),
            _ => None,
        }
    }

    fn read_cap(&self) -> usize {
        let largest = match &self.config {
            SourceConfig::Redis(s) => s.max_message_bytes,
            // AMQP frames are bounded by frame_max; bodies are assembled by the session.
            SourceConfig::Amqp(_) => 0,
            SourceConfig::RespEndpoint(s) => s.max_message_bytes,
            SourceConfig::RedisStream(s) => s.max_message_bytes,
        };
        largest.min(64 << 20) + READ_SLACK
    }
}

/// The node to try after `current` failed: the one that may be tried soonest, the nodes
/// after `current` first (in the order configured), `current` last; and when.
pub(super) fn pick_next(nodes: &[Node], current: usize, now: Instant) -> (usize, Instant) {
    let count = nodes.len();
    let mut best: Option<(usize, Instant)> = None;
    for step in 1..=count {
        let index = (current + step) % count;
        let at = nodes[index].not_before.map_or(now, |t| t.max(now));
        if best.is_none_or(|(_, soonest)| at < soonest) {
            best = Some((index, at));
        }
    }
    best.unwrap_or((current, now))
}

fn subscriber_config(name: &str, source: &RedisSource, url: &RedisUrl) -> SubscriberConfig {
    let mut config = SubscriberConfig::new(
        source
            .channels
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect(),
        source
            .patterns
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
    );
    config.username = url.username.as_ref().map(|u| u.as_bytes().to_vec());
    config.password = url
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec());
    config.client_name = Some(format!("ferry:{name}").into_bytes());
    config.max_message_bytes = source.max_message_bytes;
    config
}

fn session_config(
    name: &str,
    source: &AmqpSource,
    url: &AmqpUrl,
    pid: u32,
) -> Result<SessionConfig, String> {
    let queue_type = source.queue_type.unwrap_or_default();
    let declare = match &source.declare {
        Declare::IfMissing => DeclareMode::IfMissing,
        Declare::CheckOnly => DeclareMode::CheckOnly,
        Declare::Exactly { durable, arguments } => {
            let mut arguments = arguments.clone();
            if queue_type == QueueType::Quorum {
                // Validation made sure the object does not say otherwise.
                arguments.insert("x-queue-type".into(), queue_type.as_str().into());
            }
            DeclareMode::Exactly {
                durable: *durable,
                arguments: table_from_json(&arguments)
                    .map_err(|e| format!("declare.arguments: {e}"))?,
            }
        }
    };
    Ok(SessionConfig {
        username: url.username.clone(),
        password: url.password.expose().to_string(),
        vhost: url.vhost.clone(),
        queue: source.queue.clone(),
        declare,
        queue_type: match queue_type {
            QueueType::Classic => SessionQueueType::Classic,
            QueueType::Quorum => SessionQueueType::Quorum,
        },
        prefetch: source.prefetch.unwrap_or(1),
        heartbeat_s: source.heartbeat_s,
        max_message_bytes: source.max_message_bytes as u64,
        consumer_tag: format!("ferry-{name}-{pid}"),
        connection_name: Some(format!("ferry {name}")),
        publisher: source.retry == RetryMode::Republish
            || matches!(
                source.dead_letter,
                crate::config::DeadLetter::Publish { .. }
            ),
        consume: true,
    })
}

impl Engine {
    /// Starts (re)connecting `source`.
    pub(super) fn connect_source(&mut self, source: SourceId, now: Instant, io: &mut dyn Io) {
        if self.phase != Phase::Running {
            return;
        }
        let address = match &self.sources[source].config {
            SourceConfig::Redis(_) | SourceConfig::Amqp(_) | SourceConfig::RedisStream(_) => {
                let s = &mut self.sources[source];
                if let Some(watch) = s.sentinel.as_deref_mut() {
                    // Through Sentinel: an address a sentinel just gave, or ask for one.
                    let Some(master) = watch.take_fresh() else {
                        self.ask_sentinels(source, now, io);
                        return;
                    };
                    if let Some(node) = s.nodes.first_mut() {
                        let address = Address::Tcp {
                            host: master.host,
                            port: master.port,
                        };
                        if node.address != address {
                            // A new master is worth a line of its own in the log.
                            s.logged_node = None;
                            node.address = address;
                        }
                    }
                }
                let Some(node) = s.nodes.get(s.node) else {
                    return;
                };
                let address = node.address.clone();
                let of = match s.nodes.len() {
                    1 => String::new(),
                    count => format!(" (node {} of {count})", s.node + 1),
                };
                if s.logged_node == Some(s.node) {
                    debug!("source {}: connecting to {address}{of}", s.name);
                } else {
                    info!("source {}: connecting to {address}{of}", s.name);
                    s.logged_node = Some(s.node);
                }
                address
            }
            SourceConfig::RespEndpoint(endpoint) => {
                let listen = endpoint.listen.clone();
                match self.start_endpoint(source, &listen, io) {
                    Ok(()) => {
                        self.sources[source].link = Link::Listening;
                        self.sources[source].backoff.reset();
                    }
                    Err(e) => {
                        warn!(
                            "source {}: cannot listen on {listen}: {e}",
                            self.sources[source].name
                        );
                        self.sources[source].link = Link::Idle;
                        self.schedule_reconnect(source, now);
                    }
                }
                return;
            }
        };
        let buffers = Buffers::new(self.sources[source].read_cap(), BROKER_WRITE_HIGH_WATER);
        let conn = ConnId(self.peers.insert(Peer::Source { source, buffers }));
        self.sources[source].link = Link::Connecting { conn };
        // A connect that hangs (a black-holed host) is retried.
        self.timers
            .arm(TimerKey::Source(source), now + CONNECT_TIMEOUT);
        let tls = self.sources[source].config.tls_client();
        if tls.is_some_and(|tls| tls.insecure) {
            warn!(
                "source {}: TLS to {address} without certificate verification \
                 (insecure_skip_verify): the server is not authenticated",
                self.sources[source].name
            );
        }
        match io.connect(conn, &address, tls) {
            Ok(Connect::Done) => self.handle_connected(conn, now, io),
            Ok(Connect::Pending) => {}
            Err(e) => {
                warn!(
                    "source {}: connect to {address} failed: {e}",
                    self.sources[source].name
                );
                self.source_lost(source, now);
            }
        }
    }

    /// Arms the reconnect: a RESP endpoint after its own backoff; a broker source at the
    /// node picked by [`Source::pick_next_node`], whose backoff was advanced when its
    /// connection failed (`source_lost`).
    fn schedule_reconnect(&mut self, source: SourceId, now: Instant) {
        if self.phase != Phase::Running {
            self.sources[source].link = Link::Stopped;
            return;
        }
        match self.sources[source].intake {
            Intake::Parked => return, // reconnects when its pool answers (`resume_parked_sources`)
            Intake::Retired | Intake::Draining => {
                self.sources[source].link = Link::Stopped;
                return;
            }
            Intake::Taking => {}
        }
        let s = &mut self.sources[source];
        if s.nodes.is_empty() {
            let delay = s.backoff.next_delay();
            debug!(
                "source {}: listening again in {} ms (attempt {})",
                s.name,
                delay.as_millis(),
                s.backoff.attempts()
            );
            self.timers.arm(TimerKey::Source(source), now + delay);
            return;
        }
        let at = s.pick_next_node(now);
        let node = &s.nodes[s.node];
        debug!(
            "source {}: connecting to {} in {} ms (its attempt {})",
            s.name,
            node.address,
            at.saturating_duration_since(now).as_millis(),
            node.backoff.attempts() + 1
        );
        self.timers.arm(TimerKey::Source(source), at);
    }

    /// The connection of `source` is gone: forget its session, void its tags, retry later.
    pub(super) fn source_lost(&mut self, source: SourceId, now: Instant) {
        self.stream_connection_lost(source);
        if let Link::Up { conn, .. } | Link::Connecting { conn } = self.sources[source].link {
            self.mark_close(conn);
        }
        let was_stopping = matches!(self.phase, Phase::Closing { .. });
        let was_open = self.sources[source].is_open();
        self.sources[source].link = Link::Idle;
        if was_open {
            // The node in use failed or was lost: it backs off on its own.
            let s = &mut self.sources[source];
            let node = s.node;
            if let Some(n) = s.nodes.get_mut(node) {
                n.failed(now);
            }
        }
        self.timers.cancel(TimerKey::Source(source));
        if self.sources[source].is_amqp() {
            // Every tag of the old connection is void; the broker requeues its deliveries.
            self.sources[source].generation += 1;
            self.sources[source].pending.clear();
            let pool = self.sources[source].pool;
            let orphans = self.pools[pool].queue.take_source(source);
            self.sources[source].clear_waiting();
            if !orphans.is_empty() {
                info!(
                    "source {}: {} unstarted deliveries return to the queue with the connection",
                    self.sources[source].name,
                    orphans.len()
                );
            }
            self.retrying.retain(|_, job| {
                job.source != source || !matches!(job.origin, Origin::Amqp { .. })
            });
        }
        if was_stopping {
            self.sources[source].link = Link::Stopped;
            return;
        }
        self.sources[source].metrics.on_reconnect();
        self.schedule_reconnect(source, now);
    }

    /// The connect of a source completed: its session starts (after the `ROLE` check of
    /// a master named by a sentinel).
    pub(super) fn on_source_connected(&mut self, source: SourceId, conn: ConnId, now: Instant) {
        if !matches!(self.sources[source].link, Link::Connecting { conn: c } if c == conn) {
            return;
        }
        let session = match &self.sources[source].sentinel {
            Some(watch) => Session_::Role(Box::new(RoleCheck::new(
                &watch.settings().master_credentials(),
                now,
            ))),
            None => match self.start_session(source, now) {
                Some(session) => session,
                None => return,
            },
        };
        self.sources[source].link = Link::Up {
            conn,
            session,
            ready: false,
        };
    }

    /// The protocol session for the source's node; `None` (the source lost) when its
    /// configuration cannot make one.
    fn start_session(&mut self, source: SourceId, now: Instant) -> Option<Session_> {
        let name = self.sources[source].name.clone();
        let url = self.sources[source].redis_url();
        match &self.sources[source].config {
            SourceConfig::Redis(s) => Some(Session_::Redis(Box::new(Subscriber::new(
                subscriber_config(&name, s, url.as_ref()?),
                now,
            )))),
            SourceConfig::Amqp(s) => match s
                .urls
                .get(self.sources[source].node)
                .ok_or_else(|| "no node".to_string())
                .and_then(|url| session_config(&name, s, url, self.options.pid))
            {
                Ok(config) => Some(Session_::Amqp(Box::new(Session::new(config, now)))),
                Err(why) => {
                    error!("source {name}: {why}");
                    self.source_lost(source, now);
                    None
                }
            },
            SourceConfig::RedisStream(s) => Some(Session_::Stream(Box::new(StreamConsumer::new(
                super::streams::stream_config(&name, s, url.as_ref()?),
                now,
            )))),
            SourceConfig::RespEndpoint(_) => None,
        }
    }

    /// The master named by a sentinel confirmed its role: the real session takes the
    /// connection over.
    fn after_role_check(&mut self, source: SourceId, now: Instant) {
        let confirmed = matches!(
            &self.sources[source].link,
            Link::Up { session: Session_::Role(check), .. } if check.confirmed()
        );
        if !confirmed {
            return;
        }
        debug!(
            "source {}: {} confirms it is the master",
            self.sources[source].name,
            self.sources[source].node_label().unwrap_or_default()
        );
        if let Some(session) = self.start_session(source, now) {
            if let Link::Up { session: slot, .. } = &mut self.sources[source].link {
                *slot = session;
            }
        }
    }

    /// The reactor read a source's connection (or found it writable).
    pub(super) fn on_source_ready(
        &mut self,
        source: SourceId,
        conn: ConnId,
        fill: Fill,
        now: Instant,
        io: &mut dyn Io,
    ) {
        if self.sources[source].up_conn() != Some(conn) {
            return;
        }
        let name = self.sources[source].name.clone();
        let mut lost = false;
        let mut again = false;
        {
            let Some(Peer::Source { buffers, .. }) = self.peers.get_mut(conn.0) else {
                return;
            };
            let Link::Up { session, .. } = &mut self.sources[source].link else {
                return;
            };
            let mut progressed = false;
            while buffers.unconsumed() > 0 {
                let used = match session {
                    Session_::Role(s) => s
                        .handle_input(buffers.input())
                        .map_err(|e| format!("the master a sentinel named: {e}")),
                    Session_::Redis(s) => s
                        .handle_input(buffers.input(), now)
                        .map_err(|e| e.to_string()),
                    Session_::Amqp(s) => s
                        .handle_input(buffers.input(), now)
                        .map_err(|e| e.to_string()),
                    Session_::Stream(s) => s
                        .handle_input(buffers.input(), now)
                        .map_err(|e| e.to_string()),
                };
                match used {
                    Ok(0) => break,
                    Ok(n) => {
                        buffers.consume(n);
                        progressed = true;
                    }
                    Err(why) => {
                        warn!("source {name}: {why}");
                        lost = true;
                        break;
                    }
                }
            }
            match fill {
                Fill::Drained | Fill::Skipped => {}
                Fill::Full if progressed => again = true,
                Fill::Full => {
                    warn!(
                        "source {name}: a frame larger than the read buffer ({} bytes)",
                        buffers.unconsumed()
                    );
                    lost = true;
                }
                Fill::Eof | Fill::Failed => {
                    match session {
                        Session_::Role(_) => {}
                        Session_::Redis(s) => s.handle_eof(now),
                        Session_::Amqp(s) => s.handle_eof(now),
                        Session_::Stream(s) => s.handle_eof(now),
                    }
                    lost = true;
                }
            }
        }
        if !lost {
            self.after_role_check(source, now);
        }
        self.after_source_io(source, conn, now, io);
        let still_up = self.sources[source].up_conn() == Some(conn);
        if again && still_up {
            self.rearm_read.push(conn);
        }
        // An event may already have handled the loss (a Closed event).
        if lost && still_up {
            self.source_lost(source, now);
        }
    }

    /// Flushes the session's output, re-arms its deadline and handles its events.
    fn after_source_io(&mut self, source: SourceId, conn: ConnId, now: Instant, io: &mut dyn Io) {
        let mut redis_events = Vec::new();
        let mut amqp_events = Vec::new();
        let mut stream_events = Vec::new();
        let deadline;
        {
            let Some(Peer::Source { buffers, .. }) = self.peers.get_mut(conn.0) else {
                return;
            };
            let Link::Up { session, .. } = &mut self.sources[source].link else {
                return;
            };
            match session {
                Session_::Role(s) => {
                    s.poll_transmit(buffers.write_buf());
                    deadline = s.poll_timeout();
                }
                Session_::Redis(s) => {
                    s.poll_transmit(buffers.write_buf());
                    while let Some(event) = s.poll_event() {
                        redis_events.push(event);
                    }
                    deadline = s.poll_timeout();
                }
                Session_::Amqp(s) => {
                    s.poll_transmit(buffers.write_buf());
                    while let Some(event) = s.poll_event() {
                        amqp_events.push(event);
                    }
                    deadline = s.poll_timeout();
                }
                Session_::Stream(s) => {
                    s.poll_transmit(buffers.write_buf(), now);
                    while let Some(event) = s.poll_event() {
                        stream_events.push(event);
                    }
                    deadline = s.poll_timeout();
                }
            }
        }
        if let Err(e) = self.flush(conn, io) {
            debug!("source {}: write failed: {e}", self.sources[source].name);
            self.source_lost(source, now);
            return;
        }
        match deadline {
            Some(at) => self.timers.arm(TimerKey::Source(source), at),
            None => self.timers.cancel(TimerKey::Source(source)),
        }
        // Once an event lost the connection, the rest of the batch belongs to a session
        // that is gone (its tags are void): stop there.
        for event in redis_events {
            if self.sources[source].up_conn() != Some(conn) {
                break;
            }
            self.on_redis_event(source, event, now);
        }
        for event in amqp_events {
            if self.sources[source].up_conn() != Some(conn) {
                break;
            }
            self.on_amqp_event(source, event, now);
        }
        for event in stream_events {
            if self.sources[source].up_conn() != Some(conn) {
                break;
            }
            self.on_stream_event(source, event, now);
        }
        // Commands issued while handling events (acks, publishes) produced output.
        if self.sources[source].up_conn().is_some() {
            self.mark_dirty(source);
        }
    }

    /// Marks a session as having output (acks, publishes): it is written once at the end
    /// of the loop turn, so the acks of a whole batch of finished jobs share one write.
    pub(super) fn mark_dirty(&mut self, source: SourceId) {
        if !self.dirty_sources.contains(&source) {
            self.dirty_sources.push(source);
        }
    }

    /// Writes the output of every session marked by [`Engine::mark_dirty`].
    pub(super) fn flush_dirty_sources(&mut self, now: Instant, io: &mut dyn Io) {
        for source in std::mem::take(&mut self.dirty_sources) {
            self.transmit_session(source, now, io);
        }
    }

    /// Moves a session's pending output to its socket.
    fn transmit_session(&mut self, source: SourceId, now: Instant, io: &mut dyn Io) {
        let Some(s) = self.sources.get_mut(source) else {
            return;
        };
        let Link::Up { conn, session, .. } = &mut s.link else {
            return;
        };
        let conn = *conn;
        let Some(Peer::Source { buffers, .. }) = self.peers.get_mut(conn.0) else {
            return;
        };
        let deadline = match session {
            Session_::Role(s) => {
                s.poll_transmit(buffers.write_buf());
                s.poll_timeout()
            }
            Session_::Redis(s) => {
                s.poll_transmit(buffers.write_buf());
                s.poll_timeout()
            }
            Session_::Amqp(s) => {
                s.poll_transmit(buffers.write_buf());
                s.poll_timeout()
            }
            Session_::Stream(s) => {
                s.poll_transmit(buffers.write_buf(), now);
                s.poll_timeout()
            }
        };
        if let Some(at) = deadline {
            self.timers.arm(TimerKey::Source(source), at);
        }
        if let Err(e) = self.flush(conn, io) {
            debug!("source {}: write failed: {e}", self.sources[source].name);
            self.source_lost(source, now);
        }
    }

    /// A source deadline: reconnect, the connect timeout, or the session's own timer.
    pub(super) fn on_source_timer(&mut self, source: SourceId, now: Instant, io: &mut dyn Io) {
        match &mut self.sources[source].link {
            Link::Idle => self.connect_source(source, now, io),
            Link::Connecting { .. } => {
                let s = &self.sources[source];
                if s.config.tls_client().is_some() {
                    // A plain-text server may wait for a line that a ClientHello never
                    // ends: the timeout is then the only sign.
                    warn!(
                        "source {}: connect timed out: no TLS handshake within {} s \
                         (a plain-text port behind a TLS URL, or an unreachable host?)",
                        s.name,
                        CONNECT_TIMEOUT.as_secs()
                    );
                } else {
                    warn!("source {}: connect timed out", s.name);
                }
                self.source_lost(source, now);
            }
            Link::Up { conn, session, .. } => {
                let conn = *conn;
                match session {
                    Session_::Role(s) => {
                        if let Err(e) = s.handle_timeout(now) {
                            warn!("source {}: {e}", self.sources[source].name);
                            self.source_lost(source, now);
                            return;
                        }
                    }
                    Session_::Redis(s) => s.handle_timeout(now),
                    Session_::Amqp(s) => s.handle_timeout(now),
                    Session_::Stream(s) => s.handle_timeout(now),
                }
                self.after_source_io(source, conn, now, io);
            }
            Link::Listening | Link::Stopped => {}
        }
    }

    /// Marks the current connection as subscribed / consuming.
    pub(super) fn set_ready(&mut self, source: SourceId) {
        let s = &mut self.sources[source];
        if let Link::Up { ready, .. } = &mut s.link {
            *ready = true;
        }
        s.backoff.reset();
        let node = s.node;
        if let Some(n) = s.nodes.get_mut(node) {
            n.succeeded();
        }
    }

    fn on_redis_event(&mut self, source: SourceId, event: SubscriberEvent, now: Instant) {
        let name = self.sources[source].name.clone();
        match event {
            SubscriberEvent::Ready => {
                let (protocol, version) = match &self.sources[source].link {
                    Link::Up {
                        session: Session_::Redis(s),
                        ..
                    } => (
                        if s.protocol() == Some(crate::proto::resp::Version::Resp3) {
                            "RESP3"
                        } else {
                            "RESP2"
                        },
                        s.server_version().map(str::to_string),
                    ),
                    _ => ("?", None),
                };
                info!(
                    "source {name}: subscribed ({protocol}, Redis {})",
                    version.as_deref().unwrap_or("version unknown")
                );
                self.set_ready(source);
            }
            SubscriberEvent::Message(message) => {
                self.sources[source].metrics.on_received();
                if self.sources[source].intake_stopped() {
                    self.sources[source]
                        .metrics
                        .on_dropped(DropReason::Shutdown);
                    return;
                }
                if self.sources[source].paused {
                    // Pub/sub cannot hold messages: what arrives while paused is dropped.
                    self.sources[source].metrics.on_dropped(DropReason::Paused);
                    return;
                }
                let job = Job {
                    id: self.next_job_id(),
                    source,
                    attempt: 1,
                    payload: message.payload,
                    origin: Origin::Redis {
                        subscription: message.subscription,
                        channel: message.channel,
                        endpoint: false,
                    },
                    received_at: now,
                    resent: false,
                    dispatch_acked: false,
                };
                self.offer_pubsub_job(job, now);
            }
            SubscriberEvent::Dropped(dropped) => {
                self.sources[source].metrics.on_received();
                self.sources[source]
                    .metrics
                    .on_dropped(DropReason::TooLarge);
                warn!(
                    "source {name}: a message of {} bytes exceeds max_message_bytes; dropped",
                    dropped.bytes
                );
            }
            SubscriberEvent::Error(e) => warn!("source {name}: {e}"),
            SubscriberEvent::Failed(e) => {
                warn!("source {name}: {e}");
                self.source_lost(source, now);
            }
            SubscriberEvent::Unsubscribed => {
                info!("source {name}: unsubscribed");
                if matches!(self.phase, Phase::Closing { .. }) {
                    self.source_lost(source, now);
                }
            }
            SubscriberEvent::Closed => {
                if !matches!(self.phase, Phase::Closing { .. }) {
                    warn!("source {name}: connection closed");
                }
                self.source_lost(source, now);
            }
        }
    }

    /// Takes a Redis or RESP endpoint message into its pool's queue unless the backlog
    /// is full (then it is dropped and counted, with a rate-limited warning). Returns
    /// whether it was taken.
    pub(super) fn offer_pubsub_job(&mut self, job: Job, now: Instant) -> bool {
        let source = job.source;
        let Some((max_jobs, max_bytes)) = self.sources[source].backlog_limits() else {
            return false;
        };
        let s = &mut self.sources[source];
        if s.waiting_jobs >= max_jobs || s.waiting_bytes + job.held_bytes() > max_bytes {
            s.metrics.on_dropped(DropReason::BacklogFull);
            s.drops_since_warn += 1;
            let due = s
                .last_drop_warn
                .is_none_or(|at| now.saturating_duration_since(at) >= DROP_WARN_INTERVAL);
            if due {
                warn!(
                    "source {}: backlog full ({} messages, {} bytes); {} messages dropped",
                    s.name, s.waiting_jobs, s.waiting_bytes, s.drops_since_warn
                );
                s.drops_since_warn = 0;
                s.last_drop_warn = Some(now);
            }
            return false;
        }
        self.enqueue(job);
        true
    }

    /// Appends a job to its pool's queue, counting it against its source's backlog.
    pub(super) fn enqueue(&mut self, job: Job) {
        let source = job.source;
        let s = &mut self.sources[source];
        s.note_enqueued(&job);
        let pool = s.pool;
        self.pools[pool].queue.push(source, job);
    }

    /// A job left its pool's queue.
    pub(super) fn dequeued(&mut self, job: &Job) {
        let s = &mut self.sources[job.source];
        s.waiting_jobs = s.waiting_jobs.saturating_sub(1);
        s.waiting_bytes = s.waiting_bytes.saturating_sub(job.held_bytes());
    }

    fn on_amqp_event(&mut self, source: SourceId, event: AmqpEvent, now: Instant) {
        let name = self.sources[source].name.clone();
        match event {
            AmqpEvent::Ready {
                message_count,
                consumer_count,
            } => {
                info!(
                    "source {name}: consuming ({message_count} ready, {consumer_count} other consumers)"
                );
                self.set_ready(source);
                self.declare_retry_queues(source);
                if !self.sources[source].takes_work() {
                    // Reached consume-ok while paused, draining, parked or retired (a
                    // cancel sent during the handshake was refused): stay off the queue.
                    if let Some(s) = self.sources[source].amqp_session_mut() {
                        let _ = s.cancel();
                    }
                    self.mark_dirty(source);
                }
            }
            AmqpEvent::Delivery(delivery) => {
                self.sources[source].metrics.on_received();
                let attempt = attempt_of(
                    delivery.properties.header("x-ferry-attempt"),
                    delivery.properties.header("x-delivery-count"),
                );
                if let Some(count) = delivery_count(delivery.properties.header("x-delivery-count"))
                {
                    debug!(
                        "source {name}: {:?} delivered before {count} times (x-delivery-count); attempt {attempt}",
                        delivery.tag
                    );
                }
                let generation = self.sources[source].generation;
                let job = Job {
                    id: self.next_job_id(),
                    source,
                    attempt,
                    payload: delivery.body,
                    origin: Origin::Amqp {
                        generation,
                        tag: delivery.tag,
                        redelivered: delivery.redelivered,
                        exchange: delivery.exchange,
                        routing_key: delivery.routing_key,
                        properties: Box::new(delivery.properties),
                    },
                    received_at: now,
                    resent: false,
                    dispatch_acked: false,
                };
                let s = &self.sources[source];
                if s.intake_stopped() || s.paused {
                    self.release_amqp(job);
                } else {
                    self.enqueue(job);
                }
            }
            AmqpEvent::TooLarge { tag, size } => {
                self.sources[source].metrics.on_received();
                warn!("source {name}: delivery of {size} bytes exceeds max_message_bytes; dead-lettered");
                let generation = self.sources[source].generation;
                self.reject_tag(source, generation, tag, "too_large");
            }
            AmqpEvent::Unreadable { tag, error } => {
                self.sources[source].metrics.on_received();
                warn!("source {name}: delivery with an unreadable header ({error}); dead-lettered");
                let generation = self.sources[source].generation;
                self.reject_tag(source, generation, tag, "unreadable");
            }
            AmqpEvent::RetryQueueDeclared { queue } => {
                debug!("source {name}: retry queue {queue} ready")
            }
            AmqpEvent::Confirmed(seq) => {
                if let Some(pending) = self.sources[source].pending.remove(&seq) {
                    let settled = pending.copy.settled();
                    self.ack_tag(source, pending.generation, pending.tag, settled);
                }
            }
            AmqpEvent::Nacked(seq) | AmqpEvent::Returned { seq, .. } => {
                if let Some(pending) = self.sources[source].pending.remove(&seq) {
                    error!(
                        "source {name}: the broker refused the {} copy of a delivery; it goes back to its queue",
                        pending.copy.label()
                    );
                    if let Some(session) = self.live_session(source, pending.generation) {
                        let _ = session.nack(pending.tag, true);
                    }
                }
            }
            AmqpEvent::Blocked { reason } => {
                warn!("source {name}: broker blocked publishing: {reason}")
            }
            AmqpEvent::Unblocked => info!("source {name}: broker unblocked publishing"),
            AmqpEvent::Cancelled => {
                info!("source {name}: consumer cancelled");
                // A resume that came while the cancel was in flight.
                if self.sources[source].takes_work() {
                    self.resume_source(source);
                }
            }
            AmqpEvent::ConsumerCancelledByServer => {
                warn!("source {name}: the broker cancelled the consumer (queue deleted?); reconnecting");
                self.source_lost(source, now);
            }
            AmqpEvent::Failed(e) => warn!("source {name}: {e}"),
            AmqpEvent::Closed => {
                if !matches!(self.phase, Phase::Closing { .. }) {
                    warn!("source {name}: connection closed");
                }
                self.source_lost(source, now);
            }
        }
    }

    fn declare_retry_queues(&mut self, source: SourceId) {
        let Some(amqp) = self.sources[source].amqp() else {
            return;
        };
        if amqp.retry != RetryMode::Republish {
            return;
        }
        let queue = amqp.queue.clone();
        let name = self.sources[source].name.clone();
        let steps = self.sources[source].policy.distinct_steps();
        let Some(session) = self.sources[source].amqp_session_mut() else {
            return;
        };
        for ms in steps {
            if let Err(e) = session.declare_retry_queue(&retry_queue_name(&queue, ms), ms, &queue) {
                warn!("source {name}: cannot declare the {ms} ms retry queue: {e}");
            }
        }
    }

    /// Drain or retirement: unsubscribe / cancel, and hand back what AMQP has not
    /// started. `retire` marks it removed by a reload.
    pub(super) fn stop_intake(&mut self, source: SourceId) {
        if self.sources[source].intake != Intake::Retired {
            self.sources[source].intake = Intake::Draining;
        }
        self.stop_watch(source);
        match &mut self.sources[source].link {
            Link::Up {
                session: Session_::Redis(s),
                ..
            } => s.unsubscribe(),
            Link::Up {
                session: Session_::Amqp(s),
                ..
            } => {
                let _ = s.cancel();
            }
            // A stream source just stops asking; a block under way returns within 1 s.
            Link::Up {
                session: Session_::Stream(_),
                ..
            } => {}
            // Not connected, or a master still proving its role: nothing taken yet.
            Link::Idle
            | Link::Connecting { .. }
            | Link::Up {
                session: Session_::Role(_),
                ..
            } => {
                if let Link::Connecting { conn } | Link::Up { conn, .. } = self.sources[source].link
                {
                    self.mark_close(conn);
                }
                self.sources[source].link = Link::Stopped;
                self.timers.cancel(TimerKey::Source(source));
            }
            // A RESP endpoint keeps listening until the closing phase: clients stay
            // connected, and what they publish is dropped (`shutdown`).
            Link::Listening | Link::Stopped => {}
        }
        self.stream_hand_back(source);
        if self.sources[source].is_amqp() {
            let count = self.hand_back_unstarted(source);
            if count > 0 {
                info!(
                    "source {}: {count} unstarted deliveries handed back",
                    self.sources[source].name
                );
            }
        }
        self.mark_dirty(source);
    }

    /// Closing phase: close the connection cleanly.
    pub(super) fn close_source(&mut self, source: SourceId, now: Instant) {
        self.stop_watch(source);
        match &mut self.sources[source].link {
            Link::Up {
                session: Session_::Amqp(s),
                ..
            } => s.close(),
            Link::Up {
                conn,
                session: Session_::Stream(s),
                ..
            } => {
                // Acks queued behind a block must be answered before the connection
                // goes (Redis drops a blocked client's queued commands with it).
                s.finish(now);
                if s.is_over() {
                    let conn = *conn;
                    self.mark_close(conn);
                    self.sources[source].link = Link::Stopped;
                    return;
                }
            }
            Link::Up {
                conn,
                session: Session_::Redis(_) | Session_::Role(_),
                ..
            } => {
                let conn = *conn;
                self.mark_close(conn);
                self.sources[source].link = Link::Stopped;
                return;
            }
            Link::Listening => {
                self.close_endpoint(source);
                self.sources[source].link = Link::Stopped;
                return;
            }
            Link::Connecting { conn } => {
                let conn = *conn;
                self.mark_close(conn);
                self.sources[source].link = Link::Stopped;
                return;
            }
            Link::Idle | Link::Stopped => {
                self.sources[source].link = Link::Stopped;
                return;
            }
        }
        self.mark_dirty(source);
    }

    /// A pool's circuit open longer than `circuit_release_ms` makes the AMQP sources
    /// feeding it hand their unstarted messages back and leave, so other ferry hosts can
    /// take the work; they come back when the pool answers (`docs/SEMANTICS.md`,
    /// "Circuit breaker").
    pub(super) fn on_release_timer(&mut self, pool: PoolId) {
        if self.pools[pool].circuit.is_closed() || self.phase != Phase::Running {
            return;
        }
        for source in self.sources.keys() {
            let s = &self.sources[source];
            if s.pool != pool || !s.is_amqp() || s.intake != Intake::Taking {
                continue;
            }
            warn!(
                "source {}: pool {} unavailable for {} ms; handing messages back and leaving the queue until it answers",
                s.name,
                self.pools[pool].name,
                self.pools[pool].config.circuit_release_ms
            );
            self.sources[source].intake = Intake::Parked;
            self.hand_back_queued(source);
            match &mut self.sources[source].link {
                Link::Up {
                    session: Session_::Amqp(s),
                    ..
                } => s.close(),
                Link::Connecting { conn } => {
                    let conn = *conn;
                    self.mark_close(conn);
                    self.sources[source].link = Link::Idle;
                    self.timers.cancel(TimerKey::Source(source));
                }
                Link::Idle => {
                    self.timers.cancel(TimerKey::Source(source));
                }
                _ => {}
            }
            self.mark_dirty(source);
        }
    }

    /// The pool answers again: parked sources reconnect.
    pub(super) fn resume_parked_sources(&mut self, pool: PoolId, now: Instant) {
        for source in self.sources.keys() {
            if self.sources[source].pool == pool && self.sources[source].is_parked() {
                self.sources[source].intake = Intake::Taking;
                info!(
                    "source {}: its pool answers again; reconnecting",
                    self.sources[source].name
                );
                if matches!(self.sources[source].link, Link::Idle) {
                    // The next loop turn connects (a timer due now: no I/O here).
                    self.timers.arm(TimerKey::Source(source), now);
                }
            }
        }
    }

    /// `POST /sources/{name}/pause` (`docs/OPERATIONS.md`, "Control endpoint").
    pub(super) fn pause_source(&mut self, source: SourceId) {
        if self.sources[source].paused {
            return;
        }
        self.sources[source].paused = true;
        info!("source {}: paused", self.sources[source].name);
        self.stream_hand_back(source);
        if !self.sources[source].is_amqp() {
            return; // Redis stays subscribed; arrivals are dropped (reason "paused")
        }
        if let Some(s) = self.sources[source].amqp_session_mut() {
            let _ = s.cancel();
        }
        self.hand_back_unstarted(source);
        self.mark_dirty(source);
    }

    /// `POST /sources/{name}/resume`.
    pub(super) fn resume_source(&mut self, source: SourceId) {
        if self.sources[source].paused {
            self.sources[source].paused = false;
            info!("source {}: resumed", self.sources[source].name);
            self.stream_resumed(source);
        }
        let taking = self.sources[source].intake == Intake::Taking;
        if let Some(s) = self.sources[source].amqp_session_mut() {
            // A draining, parked or retired source stays off the queue. NotReady while
            // the cancel is in flight: the Cancelled event resumes then.
            if taking {
                let _ = s.consume();
            }
        }
        self.mark_dirty(source);
    }
}

/// The attempt number of a delivery (`docs/SEMANTICS.md`, "Quorum queues and
/// x-delivery-count"): `x-ferry-attempt` when ferry's retry path set it (its own count of
/// the worker's answers, exact); otherwise the broker's `x-delivery-count` + 1 when a
/// quorum queue set it (deliveries that ended without a settle, e.g. ferry or its
/// connection died mid-request, are counted so a message that kills its handler cannot
/// come back as attempt 1 forever); otherwise 1. Unreadable values count as absent.
pub(super) fn attempt_of(
    ferry_attempt: Option<&crate::proto::amqp::HeaderValue>,
    delivery_count: Option<&crate::proto::amqp::HeaderValue>,
) -> u32 {
    if let Some(n) = header_number(ferry_attempt).filter(|&n| n >= 1) {
        return n;
    }
    self::delivery_count(delivery_count).map_or(1, |count| count.saturating_add(1))
}

/// `x-delivery-count` as a number, when present and readable.
fn delivery_count(header: Option<&crate::proto::amqp::HeaderValue>) -> Option<u32> {
    header_number(header)
}

fn header_number(header: Option<&crate::proto::amqp::HeaderValue>) -> Option<u32> {
    match header? {
        crate::proto::amqp::HeaderValue::Int(n) => u32::try_from(*n).ok(),
        crate::proto::amqp::HeaderValue::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::attempt_of;
    use crate::proto::amqp::HeaderValue;

    #[test]
    fn the_attempt_is_ferrys_count_else_the_brokers_plus_one_else_one() {
        let int = HeaderValue::Int;
        assert_eq!(attempt_of(None, None), 1);
        assert_eq!(attempt_of(Some(&int(3)), None), 3);
        assert_eq!(attempt_of(None, Some(&int(0))), 1);
        assert_eq!(attempt_of(None, Some(&int(4))), 5);
        assert_eq!(attempt_of(Some(&int(2)), Some(&int(9))), 2);
        assert_eq!(
            attempt_of(Some(&int(0)), Some(&int(1))),
            2,
            "0 is unreadable"
        );
        assert_eq!(attempt_of(Some(&HeaderValue::Text(" 4 ".into())), None), 4);
        assert_eq!(attempt_of(Some(&HeaderValue::Other), Some(&int(-1))), 1);
    }
}
