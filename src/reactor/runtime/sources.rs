//! Broker connections: a Redis subscriber or an AMQP session per source, reconnected with
//! jittered backoff, and the settling of AMQP deliveries (SPEC "Delivery guarantees").
//!
//! A source's connection goes Idle → (Resolving) → Connecting → Up, and back to Idle
//! with a backoff timer whenever it fails. Each new AMQP connection is a new
//! *generation*: a job remembers the generation it was delivered on, and settling a job
//! of an older generation sends nothing — its tag died with its channel, and the broker
//! has already requeued the message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::jobs::{Job, Origin};
use super::{Endpoint, Phase, Runtime, TimerKey};
use crate::config::Address;
use crate::config::{
    AckMode, AmqpSource, DeadLetter, Declare, JobConfig, RedisSource, RespEndpointSource,
    RetryMode, SourceConfig,
};
use crate::dispatch::retry::{Next, RetryPolicy};
use crate::metrics::{DropReason, EndpointMetrics, Settlement, SourceMetrics};
use crate::proto::amqp::session::table_from_json;
use crate::proto::amqp::{
    DeclareMode, DeliveryTag, Event as AmqpEvent, FieldValue, PublishSeq, Session, SessionConfig,
};
use crate::proto::resp::{Subscriber, SubscriberConfig, SubscriberEvent};
use crate::reactor::backoff::Backoff;
use crate::reactor::conn::{Conn, Fill};
use crate::reactor::connect::{self, Resolution, Target};

/// Write buffer high-water mark of a broker connection.
const BROKER_WRITE_HIGH_WATER: usize = 8 << 20;
/// Extra read-buffer room above the largest message (frame overhead, other replies).
const READ_SLACK: usize = 256 * 1024;
/// How often a full Redis backlog may log a warning.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The protocol session of an established connection.
pub(super) enum Session_ {
    Redis(Box<Subscriber>),
    Amqp(Box<Session>),
}

/// Where a source's connection stands.
enum Link {
    /// Not connected; a `TimerKey::Source` deadline (re)connects.
    Idle,
    /// Waiting for the host-name lookup `id`.
    Resolving { id: u64 },
    /// A TCP connect is under way on `token`.
    Connecting { token: usize },
    /// Connected: the session speaks on `token`.
    Up { token: usize, session: Session_ },
    /// A RESP endpoint listening (its listener and clients are in `Source::server`).
    Listening,
    /// Drained and closed: never reconnects.
    Stopped,
}

/// What a confirmed publish settles.
#[derive(Debug, Clone, Copy)]
struct PendingSettle {
    generation: u64,
    tag: DeliveryTag,
    what: &'static str,
}

/// One configured source at run time.
pub(super) struct Source {
    pub name: String,
    config: SourceConfig,
    pub job: JobConfig,
    pub pool: usize,
    policy: RetryPolicy,
    link: Link,
    generation: u64,
    backoff: Backoff,
    /// Its counters (`/metrics`, `/status`).
    pub metrics: SourceMetrics,
    /// Publishes (retry copies, dead-letter copies) awaiting a broker confirm.
    pending: HashMap<PublishSeq, PendingSettle>,
    /// Jobs of this source waiting in its pool's queue, and their bytes.
    waiting_jobs: usize,
    waiting_bytes: usize,
    /// Intake stopped (drain).
    intake_stopped: bool,
    /// Let go of its broker connection while its pool's circuit stays open
    /// (`circuit_release_ms`): reconnects when the pool answers again.
    parked: bool,
    /// Subscribed (Redis) or consuming (AMQP) on the current connection.
    ready: bool,
    /// Paused through the control endpoint (SPEC: AMQP cancels its consumer and hands
    /// unstarted messages back; Redis stays subscribed and drops what arrives).
    pub paused: bool,
    /// Removed or replaced by a reload: finishing its work, then closed for good.
    pub retired: bool,
    drops_since_warn: u64,
    last_drop_warn: Option<Instant>,
    /// A RESP endpoint's listener, clients and subscription index, while listening.
    pub(super) server: Option<Box<super::endpoint::EndpointServer>>,
    /// A RESP endpoint's client counters (`ferry_endpoint_disconnects_total`).
    pub endpoint_metrics: EndpointMetrics,
}

impl Source {
    pub fn new(config: SourceConfig, pool: usize, backoff: Backoff) -> Source {
        let (max_attempts, delays) = match &config {
            SourceConfig::Redis(s) => (s.max_attempts, s.retry_delays_ms.clone()),
            SourceConfig::Amqp(s) => (s.max_attempts, s.retry_delays_ms.clone()),
            SourceConfig::RespEndpoint(s) => (s.max_attempts, s.retry_delays_ms.clone()),
        };
        Source {
            name: config.name().to_string(),
            job: config.job().clone(),
            pool,
            policy: RetryPolicy::new(max_attempts, &delays),
            link: Link::Idle,
            generation: 0,
            backoff,
            metrics: SourceMetrics::default(),
            pending: HashMap::new(),
            waiting_jobs: 0,
            waiting_bytes: 0,
            intake_stopped: false,
            parked: false,
            ready: false,
            paused: false,
            retired: false,
            drops_since_warn: 0,
            last_drop_warn: None,
            server: None,
            endpoint_metrics: EndpointMetrics::default(),
            config,
        }
    }

    pub fn channels(&self) -> &[String] {
        match &self.config {
            SourceConfig::Redis(s) => &s.channels,
            SourceConfig::RespEndpoint(s) => &s.channels,
            SourceConfig::Amqp(_) => &[],
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

    pub fn is_amqp(&self) -> bool {
        matches!(self.config, SourceConfig::Amqp(_))
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
        self.intake_stopped
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
            SourceConfig::Amqp(_) => None,
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
        self.ready && matches!(self.link, Link::Up { .. } | Link::Listening)
    }

    /// Where the source stands, in one word (`/status`).
    pub fn state_label(&self) -> &'static str {
        match &self.link {
            _ if self.paused => "paused",
            _ if self.parked => "released",
            Link::Up { .. } if self.ready => "connected",
            Link::Listening => "listening",
            Link::Up { .. } | Link::Connecting { .. } | Link::Resolving { .. } => "connecting",
            Link::Idle => "disconnected",
            Link::Stopped => "stopped",
        }
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

    /// AMQP deliveries held unacknowledged on the current connection (0 for Redis).
    pub fn unacked(&self) -> usize {
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

    fn amqp(&self) -> Option<&AmqpSource> {
        match &self.config {
            SourceConfig::Amqp(s) => Some(s),
            _ => None,
        }
    }

    fn read_cap(&self) -> usize {
        let largest = match &self.config {
            SourceConfig::Redis(s) => s.max_message_bytes,
            // AMQP frames are bounded by frame_max; bodies are assembled by the session.
            SourceConfig::Amqp(_) => 0,
            SourceConfig::RespEndpoint(s) => s.max_message_bytes,
        };
        largest.min(64 << 20) + READ_SLACK
    }
}

fn subscriber_config(name: &str, source: &RedisSource) -> SubscriberConfig {
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
    config.username = source.url.username.as_ref().map(|u| u.as_bytes().to_vec());
    config.password = source
        .url
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec());
    config.client_name = Some(format!("ferry:{name}").into_bytes());
    config.max_message_bytes = source.max_message_bytes;
    config
}

fn session_config(name: &str, source: &AmqpSource) -> Result<SessionConfig, String> {
    let declare = match &source.declare {
        Declare::IfMissing => DeclareMode::IfMissing,
        Declare::CheckOnly => DeclareMode::CheckOnly,
        Declare::Exactly { durable, arguments } => DeclareMode::Exactly {
            durable: *durable,
            arguments: table_from_json(arguments).map_err(|e| format!("declare.arguments: {e}"))?,
        },
    };
    Ok(SessionConfig {
        username: source.url.username.clone(),
        password: source.url.password.expose().to_string(),
        vhost: source.url.vhost.clone(),
        queue: source.queue.clone(),
        declare,
        prefetch: source.prefetch.unwrap_or(1),
        heartbeat_s: source.heartbeat_s,
        max_message_bytes: source.max_message_bytes as u64,
        consumer_tag: format!("ferry-{name}-{}", std::process::id()),
        connection_name: Some(format!("ferry {name}")),
        publisher: source.retry == RetryMode::Republish
            || matches!(source.dead_letter, DeadLetter::Publish { .. }),
        consume: true,
    })
}

/// `<queue>.ferry-retry.<ms>`: the retry queue of one delay step.
fn retry_queue_name(queue: &str, ms: u64) -> String {
    format!("{queue}.ferry-retry.{ms}")
}

impl Runtime {
    /// Starts (re)connecting `source`.
    pub(super) fn connect_source(&mut self, source: usize, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        let address = match &self.sources[source].config {
            SourceConfig::Redis(s) => Address::Tcp {
                host: s.url.host.clone(),
                port: s.url.port,
            },
            SourceConfig::Amqp(s) => Address::Tcp {
                host: s.url.host.clone(),
                port: s.url.port,
            },
            SourceConfig::RespEndpoint(endpoint) => {
                let listen = endpoint.listen.clone();
                match self.start_endpoint(source, &listen) {
                    Ok(()) => {
                        self.sources[source].link = Link::Listening;
                        self.sources[source].ready = true;
                        self.sources[source].backoff.reset();
                    }
                    Err(e) => {
                        self.connect_failed(
                            source,
                            format_args!("cannot listen on {listen}: {e}"),
                            now,
                        );
                    }
                }
                return;
            }
        };
        match self.resolver.resolve(&address) {
            Ok(Resolution::Ready(targets)) => self.start_source_connect(source, &targets, now),
            Ok(Resolution::Pending(id)) => self.sources[source].link = Link::Resolving { id },
            Err(e) => {
                self.connect_failed(source, format_args!("cannot resolve {address}: {e}"), now);
            }
        }
    }

    /// Finished host-name lookups (the resolver woke the loop).
    pub(super) fn on_resolved(&mut self, now: Instant) {
        for (id, result) in self.resolver.finished() {
            if self.on_pool_resolved(id, &result, now) {
                continue;
            }
            let Some(source) = self
                .sources
                .iter()
                .position(|s| matches!(s.link, Link::Resolving { id: i } if i == id))
            else {
                continue;
            };
            match result {
                Ok(targets) => self.start_source_connect(source, &targets, now),
                Err(e) => {
                    self.connect_failed(source, format_args!("name lookup failed: {e}"), now);
                }
            }
        }
    }

    fn start_source_connect(&mut self, source: usize, targets: &[Target], now: Instant) {
        let Some(target) = targets.first() else {
            self.schedule_reconnect(source, now);
            return;
        };
        let stream = match connect::start(target) {
            Ok(stream) => stream,
            Err(e) => {
                self.connect_failed(
                    source,
                    format_args!("connect to {target:?} failed: {e}"),
                    now,
                );
                return;
            }
        };
        let conn = Conn::new(
            stream,
            self.sources[source].read_cap(),
            BROKER_WRITE_HIGH_WATER,
        );
        match self.insert(Endpoint::Source { source, conn }) {
            Ok(token) => {
                self.sources[source].link = Link::Connecting { token };
                // A connect that hangs (a black-holed host) is retried.
                self.timers
                    .arm(TimerKey::Source(source), now + Duration::from_secs(10));
            }
            Err(e) => {
                self.connect_failed(source, format_args!("cannot register a socket: {e}"), now);
            }
        }
    }

    /// A connect attempt failed before a session existed: say why, retry after backoff.
    fn connect_failed(&mut self, source: usize, why: std::fmt::Arguments<'_>, now: Instant) {
        warn!("source {}: {why}", self.sources[source].name);
        self.sources[source].link = Link::Idle;
        self.schedule_reconnect(source, now);
    }

    fn schedule_reconnect(&mut self, source: usize, now: Instant) {
        if self.phase != Phase::Running {
            self.sources[source].link = Link::Stopped;
            return;
        }
        if self.sources[source].parked {
            return; // reconnects when its pool answers (`resume_parked_sources`)
        }
        if self.sources[source].retired {
            self.sources[source].link = Link::Stopped;
            return;
        }
        let delay = self.sources[source].backoff.next_delay();
        debug!(
            "source {}: reconnecting in {} ms (attempt {})",
            self.sources[source].name,
            delay.as_millis(),
            self.sources[source].backoff.attempts()
        );
        self.timers.arm(TimerKey::Source(source), now + delay);
    }

    /// The connection of `source` is gone: forget its session, void its tags, retry later.
    fn source_lost(&mut self, source: usize, now: Instant) {
        if let Link::Up { token, .. } | Link::Connecting { token } = self.sources[source].link {
            self.mark_close(token);
        }
        let was_stopping = matches!(self.phase, Phase::Closing { .. });
        self.sources[source].link = Link::Idle;
        self.sources[source].ready = false;
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

    /// Readiness on a source's socket.
    pub(super) fn on_source_ready(
        &mut self,
        source: usize,
        token: usize,
        writable: bool,
        now: Instant,
    ) {
        if let Link::Connecting { token: connecting } = self.sources[source].link {
            if connecting != token {
                return;
            }
            let Some(Endpoint::Source { conn, .. }) = self.slab.get_mut(token) else {
                return;
            };
            match conn.stream.connect_finished() {
                Ok(false) => return,
                Ok(true) => {}
                Err(e) => {
                    warn!("source {}: connect failed: {e}", self.sources[source].name);
                    self.source_lost(source, now);
                    return;
                }
            }
            let session = match &self.sources[source].config {
                SourceConfig::Redis(s) => Session_::Redis(Box::new(Subscriber::new(
                    subscriber_config(&self.sources[source].name, s),
                    now,
                ))),
                SourceConfig::Amqp(s) => match session_config(&self.sources[source].name, s) {
                    Ok(config) => Session_::Amqp(Box::new(Session::new(config, now))),
                    Err(why) => {
                        error!("source {}: {why}", self.sources[source].name);
                        self.source_lost(source, now);
                        return;
                    }
                },
                SourceConfig::RespEndpoint(_) => return,
            };
            self.sources[source].link = Link::Up { token, session };
        }
        let Link::Up { token: up, .. } = self.sources[source].link else {
            return;
        };
        if up != token {
            return;
        }
        if writable {
            // Bytes the socket could not take before; the flush below sends them.
        }
        self.drive_source(source, token, true, now);
    }

    /// Reads (when `read`), feeds the session, writes its output, handles its events.
    fn drive_source(&mut self, source: usize, token: usize, read: bool, now: Instant) {
        let name = self.sources[source].name.clone();
        let mut lost = false;
        let mut again = false;
        {
            let Some(Endpoint::Source { conn, .. }) = self.slab.get_mut(token) else {
                return;
            };
            let Link::Up { session, .. } = &mut self.sources[source].link else {
                return;
            };
            if read {
                let fill = conn.fill();
                let mut progressed = false;
                while conn.unconsumed() > 0 {
                    let used = match session {
                        Session_::Redis(s) => {
                            s.handle_input(conn.input(), now).map_err(|e| e.to_string())
                        }
                        Session_::Amqp(s) => {
                            s.handle_input(conn.input(), now).map_err(|e| e.to_string())
                        }
                    };
                    match used {
                        Ok(0) => break,
                        Ok(n) => {
                            conn.consume(n);
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
                    Ok(Fill::Drained) => {}
                    Ok(Fill::Full) if progressed => again = true,
                    Ok(Fill::Full) => {
                        warn!(
                            "source {name}: a frame larger than the read buffer ({} bytes)",
                            conn.unconsumed()
                        );
                        lost = true;
                    }
                    Ok(Fill::Eof) => {
                        match session {
                            Session_::Redis(s) => s.handle_eof(now),
                            Session_::Amqp(s) => s.handle_eof(now),
                        }
                        lost = true;
                    }
                    Err(e) => {
                        debug!("source {name}: read error: {e}");
                        match session {
                            Session_::Redis(s) => s.handle_eof(now),
                            Session_::Amqp(s) => s.handle_eof(now),
                        }
                        lost = true;
                    }
                }
            }
        }
        self.after_source_io(source, token, now);
        let still_up = self.up_token(source) == Some(token);
        if again && still_up {
            self.rearm_read.push(token);
        }
        // An event may already have handled the loss (a Closed event).
        if lost && still_up {
            self.source_lost(source, now);
        }
    }

    /// The token of `source`'s connection while its session is up.
    fn up_token(&self, source: usize) -> Option<usize> {
        match self.sources[source].link {
            Link::Up { token, .. } => Some(token),
            _ => None,
        }
    }

    /// Flushes the session's output, re-arms its deadline and handles its events.
    fn after_source_io(&mut self, source: usize, token: usize, now: Instant) {
        let mut redis_events = Vec::new();
        let mut amqp_events = Vec::new();
        let deadline;
        {
            let Some(Endpoint::Source { conn, .. }) = self.slab.get_mut(token) else {
                return;
            };
            let Link::Up { session, .. } = &mut self.sources[source].link else {
                return;
            };
            match session {
                Session_::Redis(s) => {
                    s.poll_transmit(conn.write_buf());
                    while let Some(event) = s.poll_event() {
                        redis_events.push(event);
                    }
                    deadline = s.poll_timeout();
                }
                Session_::Amqp(s) => {
                    s.poll_transmit(conn.write_buf());
                    while let Some(event) = s.poll_event() {
                        amqp_events.push(event);
                    }
                    deadline = s.poll_timeout();
                }
            }
        }
        if let Err(e) = self.flush(token) {
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
            if self.up_token(source) != Some(token) {
                break;
            }
            self.on_redis_event(source, event, now);
        }
        for event in amqp_events {
            if self.up_token(source) != Some(token) {
                break;
            }
            self.on_amqp_event(source, event, now);
        }
        // Commands issued while handling events (acks, publishes) produced output.
        if let Link::Up { .. } = self.sources[source].link {
            self.flush_session(source, now);
        }
    }

    /// Marks a session as having output (acks, publishes): it is written once at the end
    /// of the loop turn, so the acks of a whole batch of finished jobs share one write.
    pub(super) fn flush_session(&mut self, source: usize, _now: Instant) {
        if !self.dirty_sources.contains(&source) {
            self.dirty_sources.push(source);
        }
    }

    /// Writes the output of every session marked by [`Runtime::flush_session`].
    pub(super) fn flush_dirty_sources(&mut self, now: Instant) {
        for source in std::mem::take(&mut self.dirty_sources) {
            self.transmit_session(source, now);
        }
    }

    /// Moves a session's pending output to its socket.
    fn transmit_session(&mut self, source: usize, now: Instant) {
        let Link::Up { token, session } = &mut self.sources[source].link else {
            return;
        };
        let token = *token;
        let Some(Endpoint::Source { conn, .. }) = self.slab.get_mut(token) else {
            return;
        };
        let deadline = match session {
            Session_::Redis(s) => {
                s.poll_transmit(conn.write_buf());
                s.poll_timeout()
            }
            Session_::Amqp(s) => {
                s.poll_transmit(conn.write_buf());
                s.poll_timeout()
            }
        };
        if let Some(at) = deadline {
            self.timers.arm(TimerKey::Source(source), at);
        }
        if let Err(e) = self.flush(token) {
            debug!("source {}: write failed: {e}", self.sources[source].name);
            self.source_lost(source, now);
        }
    }

    /// A source deadline: reconnect, or the session's own timer.
    pub(super) fn on_source_timer(&mut self, source: usize, now: Instant) {
        match &mut self.sources[source].link {
            Link::Idle => self.connect_source(source, now),
            Link::Connecting { .. } => {
                warn!("source {}: connect timed out", self.sources[source].name);
                self.source_lost(source, now);
            }
            Link::Up { token, session } => {
                let token = *token;
                match session {
                    Session_::Redis(s) => s.handle_timeout(now),
                    Session_::Amqp(s) => s.handle_timeout(now),
                }
                self.after_source_io(source, token, now);
            }
            Link::Resolving { .. } | Link::Listening | Link::Stopped => {}
        }
    }

    fn on_redis_event(&mut self, source: usize, event: SubscriberEvent, now: Instant) {
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
                self.sources[source].ready = true;
                self.sources[source].backoff.reset();
            }
            SubscriberEvent::Message(message) => {
                self.sources[source].metrics.on_received();
                if self.sources[source].intake_stopped {
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
                    id: self.next_job_id,
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
                self.next_job_id += 1;
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

    fn on_amqp_event(&mut self, source: usize, event: AmqpEvent, now: Instant) {
        let name = self.sources[source].name.clone();
        match event {
            AmqpEvent::Ready {
                message_count,
                consumer_count,
            } => {
                info!(
                    "source {name}: consuming ({message_count} ready, {consumer_count} other consumers)"
                );
                self.sources[source].ready = true;
                self.sources[source].backoff.reset();
                self.declare_retry_queues(source);
                let stay_off = {
                    let s = &self.sources[source];
                    s.paused || s.intake_stopped || s.parked || s.retired
                };
                if stay_off {
                    // Reached consume-ok while paused, draining or retired (a cancel sent
                    // during the handshake was refused): stay off the queue.
                    if let Link::Up {
                        session: Session_::Amqp(s),
                        ..
                    } = &mut self.sources[source].link
                    {
                        let _ = s.cancel();
                    }
                    self.flush_session(source, now);
                }
            }
            AmqpEvent::Delivery(delivery) => {
                self.sources[source].metrics.on_received();
                let attempt = attempt_of(delivery.properties.header("x-ferry-attempt"));
                let generation = self.sources[source].generation;
                let job = Job {
                    id: self.next_job_id,
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
                self.next_job_id += 1;
                if self.sources[source].intake_stopped || self.sources[source].paused {
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
                    self.ack_tag(source, pending.generation, pending.tag);
                    match pending.what {
                        "retry" => self.sources[source].metrics.on_settled(Settlement::Retried),
                        _ => self.sources[source]
                            .metrics
                            .on_settled(Settlement::DeadLettered),
                    }
                }
            }
            AmqpEvent::Nacked(seq) | AmqpEvent::Returned { seq, .. } => {
                if let Some(pending) = self.sources[source].pending.remove(&seq) {
                    error!(
                        "source {name}: the broker refused the {} copy of a delivery; it goes back to its queue",
                        pending.what
                    );
                    if pending.generation == self.sources[source].generation {
                        if let Link::Up {
                            session: Session_::Amqp(s),
                            ..
                        } = &mut self.sources[source].link
                        {
                            let _ = s.nack(pending.tag, true);
                        }
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
                let s = &self.sources[source];
                if !s.paused && !s.intake_stopped && !s.parked {
                    self.resume_source(source, now);
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

    fn declare_retry_queues(&mut self, source: usize) {
        let Some(amqp) = self.sources[source].amqp() else {
            return;
        };
        if amqp.retry != RetryMode::Republish {
            return;
        }
        let queue = amqp.queue.clone();
        let name = self.sources[source].name.clone();
        let steps = self.sources[source].policy.distinct_steps();
        let Link::Up {
            session: Session_::Amqp(session),
            ..
        } = &mut self.sources[source].link
        else {
            return;
        };
        for ms in steps {
            if let Err(e) = session.declare_retry_queue(&retry_queue_name(&queue, ms), ms, &queue) {
                warn!("source {name}: cannot declare the {ms} ms retry queue: {e}");
            }
        }
    }

    /// The AMQP session of `source` when it is up and `generation` is current.
    /// Whatever the caller sends through it (ack, nack, reject, publish) is written at the
    /// end of the loop turn: the session is marked for a flush here, so no command can be
    /// left sitting in its buffer until an unrelated event.
    fn live_session(&mut self, source: usize, generation: u64) -> Option<&mut Session> {
        if self.sources[source].generation != generation {
            return None;
        }
        if !self.dirty_sources.contains(&source) {
            self.dirty_sources.push(source);
        }
        match &mut self.sources[source].link {
            Link::Up {
                session: Session_::Amqp(s),
                ..
            } => Some(s),
            _ => None,
        }
    }

    fn ack_tag(&mut self, source: usize, generation: u64, tag: DeliveryTag) {
        let name = self.sources[source].name.clone();
        match self.live_session(source, generation) {
            Some(session) => {
                if let Err(e) = session.ack(tag) {
                    warn!("source {name}: cannot ack {tag:?}: {e}");
                } else {
                    self.sources[source].metrics.on_settled(Settlement::Acked);
                }
            }
            None => debug!("source {name}: {tag:?} belongs to a closed connection; not acked"),
        }
    }

    /// basic.reject requeue=false of a delivery that never became a job.
    fn reject_tag(&mut self, source: usize, generation: u64, tag: DeliveryTag, why: &str) {
        if let Some(session) = self.live_session(source, generation) {
            if session.reject(tag, false).is_ok() {
                self.sources[source]
                    .metrics
                    .on_settled(Settlement::DeadLettered);
            }
        }
        debug!(
            "source {}: rejected {tag:?} ({why})",
            self.sources[source].name
        );
    }

    /// Hands every AMQP job of `source` that has not started back to the broker: those
    /// waiting in its pool's queue and those waiting out a retry delay (drain and pause).
    /// Returns how many were waiting in the queue.
    fn hand_back_unstarted(&mut self, source: usize) -> usize {
        let pool = self.sources[source].pool;
        let unstarted = self.pools[pool].queue.take_source(source);
        self.sources[source].clear_waiting();
        let count = unstarted.len();
        for job in unstarted {
            self.release_amqp(job);
        }
        let held: Vec<u64> = self
            .retrying
            .iter()
            .filter(|(_, j)| j.source == source && matches!(j.origin, Origin::Amqp { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            if let Some(job) = self.retrying.remove(&id) {
                self.timers.cancel(TimerKey::Retry(id));
                self.release_amqp(job);
            }
        }
        count
    }

    /// Hands an unstarted AMQP job back to the broker (nack requeue=true, no attempt burned).
    pub(super) fn release_amqp(&mut self, job: Job) {
        if let Origin::Amqp {
            generation, tag, ..
        } = job.origin
        {
            if let Some(session) = self.live_session(job.source, generation) {
                let _ = session.nack(tag, true);
            }
        }
    }

    /// The request of a job was written: `ack: on_dispatch` acks now.
    pub(super) fn on_dispatched(&mut self, token: usize, source: usize) {
        let Some(AckMode::OnDispatch) = self.sources[source].amqp().map(|a| a.ack) else {
            return;
        };
        let Some(Endpoint::Worker(worker)) = self.slab.get_mut(token) else {
            return;
        };
        let Some(job) = worker.job.as_mut() else {
            return;
        };
        let Origin::Amqp {
            generation, tag, ..
        } = job.origin
        else {
            return;
        };
        if job.dispatch_acked {
            return;
        }
        job.dispatch_acked = true;
        self.ack_tag(source, generation, tag);
    }

    /// The worker succeeded.
    pub(super) fn settle_success(&mut self, job: Job) {
        let source = job.source;
        match job.origin {
            Origin::Amqp {
                generation, tag, ..
            } => {
                if !job.dispatch_acked {
                    self.ack_tag(source, generation, tag);
                }
            }
            Origin::Redis { .. } => self.sources[source].metrics.on_settled(Settlement::Acked),
        }
        let flush_now = Instant::now();
        self.flush_session(source, flush_now);
    }

    /// After `max_attempts` or a permanent failure.
    pub(super) fn dead_letter(&mut self, job: Job, reason: &str) {
        let source = job.source;
        let name = self.sources[source].name.clone();
        if job.dispatch_acked {
            return; // acked at dispatch (`ack: on_dispatch`): nothing left to settle
        }
        match &job.origin {
            Origin::Redis { .. } => {
                warn!(
                    "source {name}: message {} discarded ({reason})",
                    job.log_id()
                );
                self.sources[source]
                    .metrics
                    .on_settled(Settlement::Discarded);
            }
            Origin::Amqp {
                generation,
                tag,
                properties,
                ..
            } => {
                let (generation, tag) = (*generation, *tag);
                let target = self.sources[source].amqp().map(|a| a.dead_letter.clone());
                match target {
                    Some(DeadLetter::Publish {
                        exchange,
                        routing_key,
                    }) => {
                        let failure = FieldValue::LongStr(reason.as_bytes());
                        let copy = self.publish_copy(
                            source,
                            (generation, tag),
                            (&exchange, &routing_key),
                            properties,
                            ("x-ferry-failure", failure),
                            &job.payload,
                            "dead-letter",
                        );
                        if let Err(e) = copy {
                            error!("source {name}: cannot publish the dead-letter copy: {e}; rejecting");
                            self.reject_tag(source, generation, tag, reason);
                        }
                    }
                    _ => self.reject_tag(source, generation, tag, reason),
                }
            }
        }
        self.flush_session(source, Instant::now());
    }

    /// A retryable failure: wait and try again, or give up after `max_attempts`.
    pub(super) fn retry_or_give_up(
        &mut self,
        mut job: Job,
        reason: &str,
        retry_after: Option<Duration>,
        now: Instant,
    ) {
        let source = job.source;
        if job.dispatch_acked {
            return; // `ack: on_dispatch` never retries once written (documented as lossy)
        }
        match self.sources[source]
            .policy
            .after_failure(job.attempt, retry_after)
        {
            Next::GiveUp => {
                warn!(
                    "source {}: message {} failed {} times (last: {reason}); giving up",
                    self.sources[source].name,
                    job.log_id(),
                    job.attempt
                );
                self.dead_letter(job, reason);
            }
            Next::RetryAfter(delay) => {
                debug!(
                    "source {}: message {} attempt {} failed ({reason}); retry in {} ms",
                    self.sources[source].name,
                    job.log_id(),
                    job.attempt,
                    delay.as_millis()
                );
                let republish =
                    self.sources[source].amqp().map(|a| a.retry) == Some(RetryMode::Republish);
                match (&job.origin, republish) {
                    (
                        Origin::Amqp {
                            generation,
                            tag,
                            properties,
                            ..
                        },
                        true,
                    ) => {
                        let (generation, tag) = (*generation, *tag);
                        let next = FieldValue::I64(i64::from(job.attempt) + 1);
                        let queue = self.sources[source].queue().unwrap_or_default().to_string();
                        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                        let target = retry_queue_name(&queue, ms);
                        let name = self.sources[source].name.clone();
                        let copy = self.publish_copy(
                            source,
                            (generation, tag),
                            ("", &target),
                            properties,
                            ("x-ferry-attempt", next),
                            &job.payload,
                            "retry",
                        );
                        if let Err(e) = copy {
                            error!("source {name}: cannot publish the retry copy: {e}; the delivery goes back to its queue");
                            if let Some(session) = self.live_session(source, generation) {
                                let _ = session.nack(tag, true);
                            }
                        }
                        self.flush_session(source, now);
                    }
                    _ => {
                        // Redis, or AMQP `retry: hold`: wait in memory.
                        job.attempt += 1;
                        let id = job.id;
                        self.retrying.insert(id, job);
                        self.timers.arm(TimerKey::Retry(id), now + delay);
                    }
                }
            }
        }
    }

    /// Publishes a copy of a delivery (a retry or a dead-letter copy) on the confirm
    /// channel, with `header` set and every other property and header kept; the original
    /// is acked when the broker confirms the copy. A session that is gone (its deliveries
    /// went back to the queue with it) is no error.
    #[allow(clippy::too_many_arguments)]
    fn publish_copy(
        &mut self,
        source: usize,
        (generation, tag): (u64, DeliveryTag),
        (exchange, routing_key): (&str, &str),
        properties: &crate::proto::amqp::MessageProperties,
        (name, value): (&str, FieldValue<'_>),
        payload: &[u8],
        what: &'static str,
    ) -> Result<(), String> {
        let mut props = properties.clone();
        props.set_header(name, value).map_err(|e| e.to_string())?;
        let Some(session) = self.live_session(source, generation) else {
            return Ok(());
        };
        let seq = session
            .publish(exchange, routing_key, true, &props.as_basic(), payload)
            .map_err(|e| e.to_string())?;
        self.sources[source].pending.insert(
            seq,
            PendingSettle {
                generation,
                tag,
                what,
            },
        );
        Ok(())
    }

    /// A retry delay ended: back into the pool's queue.
    pub(super) fn on_retry_timer(&mut self, id: u64, _now: Instant) {
        if let Some(job) = self.retrying.remove(&id).and_then(|job| self.may_wait(job)) {
            self.enqueue(job);
        }
    }

    /// Whether a job coming back (a pool failure, a resend, the end of a retry delay)
    /// may wait in its pool's queue. An AMQP delivery of a closed connection may not: the
    /// broker already requeued it, and its tag is void. One whose source stopped taking
    /// work (drain, circuit release) goes back to the broker now (nack, requeue).
    pub(super) fn may_wait(&mut self, job: Job) -> Option<Job> {
        let Origin::Amqp { generation, .. } = job.origin else {
            return Some(job);
        };
        let source = &self.sources[job.source];
        if generation != source.generation {
            debug!(
                "source {}: job {} belongs to a closed connection; the broker redelivers it",
                source.name,
                job.log_id()
            );
            return None;
        }
        if source.intake_stopped || source.parked || source.paused {
            self.release_amqp(job);
            return None;
        }
        Some(job)
    }

    /// Drain: unsubscribe / cancel, and hand back what AMQP has not started.
    pub(super) fn stop_intake(&mut self, source: usize, now: Instant) {
        self.sources[source].intake_stopped = true;
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
            Link::Idle | Link::Resolving { .. } | Link::Connecting { .. } => {
                if let Link::Connecting { token } = self.sources[source].link {
                    self.mark_close(token);
                }
                self.sources[source].link = Link::Stopped;
                self.timers.cancel(TimerKey::Source(source));
            }
            // A RESP endpoint keeps listening until the closing phase: clients stay
            // connected, and what they publish is dropped (`shutdown`).
            Link::Listening | Link::Stopped => {}
        }
        if self.sources[source].is_amqp() {
            let count = self.hand_back_unstarted(source);
            if count > 0 {
                info!(
                    "source {}: {count} unstarted deliveries handed back",
                    self.sources[source].name
                );
            }
        }
        self.flush_session(source, now);
    }

    /// Closing phase: close the connection cleanly.
    pub(super) fn close_source(&mut self, source: usize, now: Instant) {
        match &mut self.sources[source].link {
            Link::Up {
                session: Session_::Amqp(s),
                ..
            } => s.close(),
            Link::Up {
                token,
                session: Session_::Redis(_),
            } => {
                let token = *token;
                self.mark_close(token);
                self.sources[source].link = Link::Stopped;
                return;
            }
            Link::Listening => {
                self.close_endpoint(source);
                self.sources[source].link = Link::Stopped;
                self.sources[source].ready = false;
                return;
            }
            _ => {
                self.sources[source].link = Link::Stopped;
                return;
            }
        }
        self.flush_session(source, now);
    }
}

impl Runtime {
    /// SPEC "circuit breaker": a pool's circuit open longer than `circuit_release_ms`
    /// makes the AMQP sources feeding it hand their unstarted messages back and leave, so
    /// other ferry hosts can take the work; they come back when the pool answers.
    pub(super) fn on_release_timer(&mut self, pool: usize, now: Instant) {
        if self.pools[pool].circuit.is_closed() || self.phase != Phase::Running {
            return;
        }
        for source in 0..self.sources.len() {
            let s = &self.sources[source];
            if s.pool != pool || !s.is_amqp() || s.parked || s.intake_stopped {
                continue;
            }
            warn!(
                "source {}: pool {} unavailable for {} ms; handing messages back and leaving the queue until it answers",
                s.name,
                self.pools[pool].name,
                self.pools[pool].config.circuit_release_ms
            );
            self.sources[source].parked = true;
            let unstarted = self.pools[pool].queue.take_source(source);
            self.sources[source].clear_waiting();
            for job in unstarted {
                self.release_amqp(job);
            }
            match &mut self.sources[source].link {
                Link::Up {
                    session: Session_::Amqp(s),
                    ..
                } => s.close(),
                Link::Connecting { token } => {
                    let token = *token;
                    self.mark_close(token);
                    self.sources[source].link = Link::Idle;
                    self.timers.cancel(TimerKey::Source(source));
                }
                Link::Idle | Link::Resolving { .. } => {
                    // A lookup still running then finds no source waiting for it.
                    self.sources[source].link = Link::Idle;
                    self.timers.cancel(TimerKey::Source(source));
                }
                _ => {}
            }
            self.flush_session(source, now);
        }
    }

    /// The pool answers again: parked sources reconnect.
    pub(super) fn resume_parked_sources(&mut self, pool: usize, now: Instant) {
        for source in 0..self.sources.len() {
            if self.sources[source].pool == pool && self.sources[source].parked {
                self.sources[source].parked = false;
                info!(
                    "source {}: its pool answers again; reconnecting",
                    self.sources[source].name
                );
                if matches!(self.sources[source].link, Link::Idle) {
                    self.connect_source(source, now);
                }
            }
        }
    }
}

impl Runtime {
    /// `POST /sources/{name}/pause` (SPEC "Control endpoint").
    pub(super) fn pause_source(&mut self, source: usize, now: Instant) {
        if self.sources[source].paused {
            return;
        }
        self.sources[source].paused = true;
        info!("source {}: paused", self.sources[source].name);
        if !self.sources[source].is_amqp() {
            return; // Redis stays subscribed; arrivals are dropped (reason "paused")
        }
        if let Link::Up {
            session: Session_::Amqp(s),
            ..
        } = &mut self.sources[source].link
        {
            let _ = s.cancel();
        }
        self.hand_back_unstarted(source);
        self.flush_session(source, now);
    }

    /// `POST /sources/{name}/resume`.
    pub(super) fn resume_source(&mut self, source: usize, now: Instant) {
        if self.sources[source].paused {
            self.sources[source].paused = false;
            info!("source {}: resumed", self.sources[source].name);
        }
        let stopped = {
            let s = &self.sources[source];
            s.intake_stopped || s.parked || s.retired
        };
        if let Link::Up {
            session: Session_::Amqp(s),
            ..
        } = &mut self.sources[source].link
        {
            // A draining, released or retired source stays off the queue. NotReady while
            // the cancel is in flight: the Cancelled event resumes then.
            if !stopped {
                let _ = s.consume();
            }
        }
        self.flush_session(source, now);
    }
}

/// `x-ferry-attempt` as the attempt number (absent or unreadable: 1).
fn attempt_of(header: Option<&crate::proto::amqp::HeaderValue>) -> u32 {
    match header {
        Some(crate::proto::amqp::HeaderValue::Int(n)) => u32::try_from(*n).unwrap_or(1).max(1),
        Some(crate::proto::amqp::HeaderValue::Text(t)) => t.trim().parse().unwrap_or(1).max(1),
        _ => 1,
    }
}
