//! Redis Streams sources: at-least-once from a consumer group (`docs/SEMANTICS.md`,
//! "Redis Streams: at-least-once"). The wire side is `proto::resp::stream`; this file
//! decides what to read, when, and how each outcome is settled.
//!
//! - **Reads sized to the pool.** At the end of every loop turn a ready source asks
//!   for as many entries as its pool can take now (`max_in_flight` minus jobs running,
//!   waiting, or already asked for), never more: an entry handed to this consumer stays
//!   pending in the group until acked, so it must not wait long in ferry.
//! - **One connection, short blocks.** A connection blocked in `XREADGROUP` runs nothing
//!   else until the block returns, so `BLOCK` is [`BLOCK`] (1 s): acks, claims and dead
//!   letters issued meanwhile wait at most that long, and the keepalive never competes
//!   with a block. A second connection would settle sooner on an idle stream, at the
//!   price of two handshakes, two reconnect paths and acks racing reads.
//! - **Recovery.** After every (re)connect the session reads this consumer's own pending
//!   entries first; entries ferry still holds (running, waiting, retrying) are skipped,
//!   the rest run again. Acks not answered on a lost connection are sent again on the
//!   next (`XACK` is idempotent).
//! - **Retries stay in Redis.** A retryable failure leaves the entry pending; after the
//!   delay ferry claims it back with `XCLAIM <min-idle = delay>`, which raises its
//!   delivery counter; the counter is the attempt (`FERRY_ATTEMPT`), so it survives
//!   restarts. If another consumer took it over meanwhile, its idle time is shorter and
//!   the claim gets nothing: the retry is that consumer's now.
//! - **Takeover.** Every [`CLAIM_EVERY`] (at most; `claim_idle_ms` / 4 when shorter) an
//!   `XAUTOCLAIM` scan takes entries idle past `claim_idle_ms` from consumers that died.
//! - **Consumers.** Once per connection, after recovery, consumers of the group that
//!   hold nothing, have been idle past `claim_idle_ms`, are named like ferry's default
//!   (`<host>-<source name>`: ending in `-<source name>`) and are not this consumer are
//!   removed (`XGROUP DELCONSUMER`), so hosts that went away do not pile up.
//! - **Hand-back** (pause, drain, reload): entries not started are forgotten, not acked:
//!   they stay pending for this consumer and are read again on resume or restart.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::ids::{PoolId, SourceId};
use super::jobs::{Job, Origin};
use super::settle::DeadLetterTarget;
use super::sources::{Link, Session_};
use super::{Engine, Phase, TimerKey};
use crate::config::{RedisStreamSource, StreamBody};
use crate::metrics::Settlement as Settled;
use crate::proto::form::urlencode_into;
use crate::proto::resp::stream::{
    Entry, EntryId, Fields, ReadKind, StreamConfig, StreamConsumer, StreamEvent,
};

/// `BLOCK` of reads for new entries; see the module docs.
pub(super) const BLOCK: Duration = Duration::from_secs(1);
/// The longest time between two `XAUTOCLAIM` scans.
pub(super) const CLAIM_EVERY: Duration = Duration::from_secs(30);
/// How often the pending count and the lag are asked (`/metrics`, `/status`).
pub(super) const STATUS_EVERY: Duration = Duration::from_secs(5);
/// A retry that comes due while the connection is down waits this long again.
const RETRY_WAIT_FOR_CONNECTION: Duration = Duration::from_secs(1);

/// A stream source's state beside its connection.
#[derive(Debug)]
pub(super) struct StreamState {
    /// Entries with a job in this process (waiting, running, waiting out a retry):
    /// reads that return them again (recovery, `XAUTOCLAIM`) skip them.
    held: HashSet<EntryId>,
    /// Acks to send once a connection is ready.
    unsent_acks: Vec<EntryId>,
    /// When the next `XAUTOCLAIM` scan starts (while connected).
    next_claim: Option<Instant>,
    /// When the next status poll is due.
    next_status: Option<Instant>,
    /// Consumers were looked at on this connection.
    reaped: bool,
    claim_idle: Duration,
    body: StreamBody,
    dead_stream: Vec<u8>,
    /// `-<source name>`: the ending of ferry's default consumer names.
    suffix: Vec<u8>,
    max_entry_bytes: usize,
    /// The last status poll's figures.
    pending_mine: u64,
    group_pending: u64,
    lag: Option<u64>,
}

impl StreamState {
    pub fn new(config: &RedisStreamSource) -> StreamState {
        StreamState {
            held: HashSet::new(),
            unsent_acks: Vec::new(),
            next_claim: None,
            next_status: None,
            reaped: false,
            claim_idle: Duration::from_millis(config.claim_idle_ms.unwrap_or(90_000)),
            body: config.body.clone(),
            dead_stream: config.dead_stream().into_bytes(),
            suffix: format!("-{}", config.name).into_bytes(),
            max_entry_bytes: config.max_message_bytes,
            pending_mine: 0,
            group_pending: 0,
            lag: None,
        }
    }

    /// Pending entries of this consumer (`ferry_unacked_messages`): the last status
    /// poll's count, or the entries ferry holds when that is more (between polls).
    pub fn unacked(&self) -> usize {
        usize::try_from(self.pending_mine)
            .unwrap_or(usize::MAX)
            .max(self.held.len())
    }

    /// `/status` figures.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pending": self.pending_mine,
            "group_pending": self.group_pending,
            "lag": self.lag,
            "held": self.held.len(),
        })
    }

    fn claim_interval(&self) -> Duration {
        (self.claim_idle / 4).clamp(Duration::from_millis(100), CLAIM_EVERY)
    }
}

/// The session settings of a stream source.
pub(super) fn stream_config(
    name: &str,
    source: &RedisStreamSource,
    url: &crate::config::RedisUrl,
) -> StreamConfig {
    let mut config = StreamConfig::new(
        source.stream.as_bytes(),
        source.group.as_bytes(),
        source.consumer_name().as_bytes(),
    );
    config.username = url.username.as_ref().map(|u| u.as_bytes().to_vec());
    config.password = url
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec());
    config.client_name = Some(format!("ferry:{name}").into_bytes());
    config.resp3 = source.resp != 2;
    config.db = url.db;
    config.create_group = source
        .create_group
        .then(|| source.start.as_bytes().to_vec());
    config.block = BLOCK;
    config.max_bulk_bytes = source.max_message_bytes;
    config
}

/// The request body of an entry: its fields as a form (in order), or one field raw.
/// `None` when the configured field is missing.
fn entry_body(body: &StreamBody, fields: Fields<'_>) -> Option<Vec<u8>> {
    match body {
        StreamBody::Form => {
            let mut out = Vec::with_capacity(fields.raw().len());
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b'&');
                }
                urlencode_into(&mut out, name);
                out.push(b'=');
                urlencode_into(&mut out, value);
            }
            Some(out)
        }
        StreamBody::Field(name) => fields.get(name.as_bytes()).map(<[u8]>::to_vec),
    }
}

impl Engine {
    /// The stream session of `source` while it is up.
    fn stream_session(&mut self, source: SourceId) -> Option<&mut StreamConsumer> {
        match &mut self.sources.get_mut(source)?.link {
            Link::Up {
                session: Session_::Stream(s),
                ..
            } => Some(s),
            _ => None,
        }
    }

    /// How many more entries `pool` can take now: its slots minus the jobs running,
    /// waiting in its queue, and entries stream sources asked for that have not arrived.
    fn stream_room(&self, pool: PoolId) -> usize {
        let p = &self.pools[pool];
        let asked: usize = self
            .sources
            .values()
            .filter(|s| s.pool == pool)
            .filter_map(|s| match &s.link {
                Link::Up {
                    session: Session_::Stream(session),
                    ..
                } => Some(session.entries_on_the_way()),
                _ => None,
            })
            .sum();
        (p.config.max_in_flight as usize).saturating_sub(p.in_flight + p.queue.len() + asked)
    }

    /// End of the loop turn: ready stream sources ask for what their pool can take,
    /// scan for idle entries and poll their figures when due.
    pub(super) fn tend_streams(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        for source in self.sources.keys() {
            if self.sources[source].stream.is_none() {
                continue;
            }
            let takes_work = self.sources[source].takes_work();
            let pool = self.sources[source].pool;
            let room = if takes_work && !self.pools[pool].retired {
                self.stream_room(pool)
            } else {
                0
            };
            let Some(state) = self.sources[source].stream.as_deref() else {
                continue;
            };
            let claim_idle = state.claim_idle;
            let claim_due = state.next_claim.is_some_and(|at| at <= now);
            let status_due = state.next_status.is_some_and(|at| at <= now);
            let Some(session) = self.stream_session(source) else {
                continue;
            };
            if !session.is_ready() {
                continue;
            }
            let mut wrote = false;
            // A takeover scan goes first when due (or under way), with the room there is;
            // new entries get what it leaves. It starts again when due.
            let scan = claim_due || session.claim_scan_under_way();
            let mut scan_started = false;
            if scan && room > 0 && !session.is_recovering() && !session.read_outstanding() {
                session.autoclaim(claim_idle, room, now);
                wrote = true;
                scan_started = claim_due;
            }
            let room = room.saturating_sub(session.entries_on_the_way());
            if room > 0 && !session.read_outstanding() {
                session.fetch(room, now);
                wrote = true;
            }
            if status_due {
                session.poll_status(now);
                wrote = true;
            }
            if let Some(state) = self.sources[source].stream.as_deref_mut() {
                if scan_started {
                    // The next scan is scheduled when this one reaches its end.
                    state.next_claim = None;
                }
                if status_due {
                    state.next_status = Some(now + STATUS_EVERY);
                }
            }
            if wrote {
                self.mark_dirty(source);
            }
            self.arm_stream_timer(source);
        }
    }

    fn arm_stream_timer(&mut self, source: SourceId) {
        let Some(state) = self.sources[source].stream.as_deref() else {
            return;
        };
        match [state.next_claim, state.next_status]
            .into_iter()
            .flatten()
            .min()
        {
            Some(at) => self.timers.arm(TimerKey::Stream(source), at),
            None => self.timers.cancel(TimerKey::Stream(source)),
        }
    }

    /// Housekeeping came due: `end_turn` does it (`tend_streams`).
    pub(super) fn on_stream_timer(&mut self, source: SourceId, _now: Instant) {
        self.mark_dirty(source);
    }

    pub(super) fn on_stream_event(&mut self, source: SourceId, event: StreamEvent, now: Instant) {
        let name = self.sources[source].name.clone();
        match event {
            StreamEvent::Ready => {
                let (protocol, version, consumer) = match self.stream_session(source) {
                    Some(s) => (
                        if s.protocol() == Some(crate::proto::resp::Version::Resp3) {
                            "RESP3"
                        } else {
                            "RESP2"
                        },
                        s.server_version().unwrap_or("version unknown").to_string(),
                        String::from_utf8_lossy(&s.config().consumer).into_owned(),
                    ),
                    None => return,
                };
                info!("source {name}: consuming as {consumer} ({protocol}, Redis {version})");
                self.set_ready(source);
                let acks = match self.sources[source].stream.as_deref_mut() {
                    Some(state) => {
                        state.reaped = false;
                        state.next_claim = Some(now + state.claim_interval());
                        state.next_status = Some(now);
                        std::mem::take(&mut state.unsent_acks)
                    }
                    None => Vec::new(),
                };
                if let Some(session) = self.stream_session(source) {
                    for id in acks {
                        session.ack(id);
                    }
                }
                self.mark_dirty(source);
            }
            StreamEvent::Entries { kind, entries } => {
                for entry in entries {
                    self.on_stream_entry(source, kind, entry, now);
                }
            }
            StreamEvent::Deleted(ids) => {
                for id in ids {
                    let held = self.sources[source]
                        .stream
                        .as_ref()
                        .is_some_and(|s| s.held.contains(&id));
                    if held {
                        continue; // its job settles it
                    }
                    warn!(
                        "source {name}: entry {id} was deleted or trimmed while pending; discarded"
                    );
                    self.sources[source].metrics.on_settled(Settled::Discarded);
                    if let Some(session) = self.stream_session(source) {
                        session.ack(id);
                    }
                }
                self.mark_dirty(source);
            }
            StreamEvent::RecoveryDone => {
                debug!("source {name}: own pending entries read");
                let Some(state) = self.sources[source].stream.as_deref_mut() else {
                    return;
                };
                if !state.reaped {
                    state.reaped = true;
                    let (idle, suffix) = (state.claim_idle, state.suffix.clone());
                    if let Some(session) = self.stream_session(source) {
                        session.reap_consumers(idle, &suffix, now);
                    }
                    self.mark_dirty(source);
                }
            }
            StreamEvent::ClaimScanDone => {
                if let Some(state) = self.sources[source].stream.as_deref_mut() {
                    state.next_claim = Some(now + state.claim_interval());
                }
                self.arm_stream_timer(source);
            }
            StreamEvent::RetryGone { id, owner } => {
                self.stream_forget(source, id);
                match owner {
                    Some(owner) => info!(
                        "source {name}: entry {id} was taken over by {} before its retry",
                        String::from_utf8_lossy(&owner)
                    ),
                    None => {
                        warn!("source {name}: entry {id} was deleted, trimmed or acked while waiting for its retry");
                        self.sources[source].metrics.on_settled(Settled::Discarded);
                    }
                }
            }
            StreamEvent::DeadLettered(id) => debug!("source {name}: entry {id} dead-lettered"),
            StreamEvent::Status {
                mine,
                group_pending,
                lag,
            } => {
                if let Some(state) = self.sources[source].stream.as_deref_mut() {
                    state.pending_mine = mine;
                    state.group_pending = group_pending;
                    state.lag = lag;
                }
            }
            StreamEvent::ConsumerRemoved(consumer) => info!(
                "source {name}: removed idle consumer {} (nothing pending)",
                String::from_utf8_lossy(&consumer)
            ),
            StreamEvent::Error(e) => warn!("source {name}: {e}"),
            StreamEvent::Failed(e) => {
                warn!("source {name}: {e}");
                self.source_lost(source, now);
            }
            StreamEvent::Finished => self.source_lost(source, now),
            StreamEvent::Closed => {
                if !matches!(self.phase, Phase::Closing { .. }) {
                    warn!("source {name}: connection closed");
                }
                self.source_lost(source, now);
            }
        }
    }

    /// One entry read: a job, unless ferry holds it already or stopped taking work.
    fn on_stream_entry(&mut self, source: SourceId, kind: ReadKind, entry: Entry, now: Instant) {
        let Some(state) = self.sources[source].stream.as_deref_mut() else {
            return;
        };
        let retry = kind == ReadKind::Retry;
        if !retry && state.held.contains(&entry.id) {
            debug!(
                "entry {} read again while ferry holds it; skipped",
                entry.id
            );
            return;
        }
        let body = entry_body(&state.body, entry.fields());
        let form = state.body == StreamBody::Form;
        let too_large = entry.fields.len() > state.max_entry_bytes;
        if !retry {
            self.sources[source].metrics.on_received();
        }
        if !self.sources[source].takes_work() {
            // It stays pending for this consumer and is read again later.
            self.stream_forget(source, entry.id);
            return;
        }
        if let Some(state) = self.sources[source].stream.as_deref_mut() {
            state.held.insert(entry.id);
        }
        let job = Job {
            id: self.next_job_id(),
            source,
            attempt: u32::try_from(entry.deliveries).unwrap_or(u32::MAX).max(1),
            payload: body.clone().unwrap_or_default(),
            origin: Origin::Stream {
                entry_id: entry.id,
                id_text: entry.id.to_string(),
                delivery_count: entry.deliveries,
                fields: entry.fields,
                field_count: entry.field_count,
                form,
                retry_delay: Duration::ZERO,
            },
            received_at: now,
            resent: false,
            dispatch_acked: false,
        };
        let target = match self.sources[source].stream_config() {
            Some(c) if c.dead_letter == crate::config::StreamDeadLetter::Stream => {
                DeadLetterTarget::Stream
            }
            _ => DeadLetterTarget::Discard,
        };
        if too_large {
            warn!(
                "source {}: entry {} exceeds max_message_bytes; dead-lettered",
                self.sources[source].name,
                job.log_id()
            );
            self.stream_dead_letter(job, target, "too_large");
        } else if body.is_none() {
            warn!(
                "source {}: entry {} lacks the body field; dead-lettered",
                self.sources[source].name,
                job.log_id()
            );
            self.stream_dead_letter(job, target, "invalid_message");
        } else {
            self.enqueue(job);
        }
    }

    /// Success: `XACK` (batched with the turn's other acks).
    pub(super) fn stream_ack(&mut self, source: SourceId, id: EntryId) {
        self.stream_forget(source, id);
        self.sources[source].metrics.on_settled(Settled::Acked);
        match self.stream_session(source) {
            Some(session) if !session.is_over() => session.ack(id),
            _ => {
                if let Some(state) = self.sources[source].stream.as_deref_mut() {
                    state.unsent_acks.push(id);
                }
            }
        }
        self.mark_dirty(source);
    }

    /// After the last attempt or a permanent failure: a copy to the dead-letter stream
    /// and the ack in one transaction, or (`discard`) the ack alone.
    pub(super) fn stream_dead_letter(&mut self, job: Job, target: DeadLetterTarget, reason: &str) {
        let source = job.source;
        let Origin::Stream {
            entry_id,
            fields,
            field_count,
            delivery_count,
            ..
        } = &job.origin
        else {
            return;
        };
        let (entry_id, attempts) = (*entry_id, (*delivery_count).max(u64::from(job.attempt)));
        if target != DeadLetterTarget::Stream {
            warn!(
                "source {}: entry {} discarded ({reason})",
                self.sources[source].name,
                job.log_id()
            );
            self.stream_forget(source, entry_id);
            self.sources[source].metrics.on_settled(Settled::Discarded);
            match self.stream_session(source) {
                Some(session) if !session.is_over() => session.ack(entry_id),
                _ => {
                    if let Some(state) = self.sources[source].stream.as_deref_mut() {
                        state.unsent_acks.push(entry_id);
                    }
                }
            }
            self.mark_dirty(source);
            return;
        }
        let dead_stream = self.sources[source]
            .stream
            .as_ref()
            .map(|s| s.dead_stream.clone())
            .unwrap_or_default();
        self.stream_forget(source, entry_id);
        let name = self.sources[source].name.clone();
        match self.stream_session(source) {
            Some(session) if session.is_ready() => {
                session.dead_letter(
                    &dead_stream,
                    entry_id,
                    Fields::from_raw(fields, *field_count),
                    reason.as_bytes(),
                    attempts,
                );
                self.sources[source]
                    .metrics
                    .on_settled(Settled::DeadLettered);
                self.mark_dirty(source);
            }
            _ => {
                // It stays pending and comes back (recovery, or a takeover) with a higher
                // delivery counter, to be dead-lettered then.
                warn!(
                    "source {name}: entry {} not dead-lettered: no connection; it stays pending",
                    job.log_id()
                );
            }
        }
    }

    /// A retryable failure: the entry stays pending; the job waits out the delay, then
    /// claims it back (`stream_retry_due`).
    pub(super) fn stream_retry(&mut self, mut job: Job, delay: Duration, now: Instant) {
        if let Origin::Stream { retry_delay, .. } = &mut job.origin {
            *retry_delay = delay;
        }
        // Its payload is read again from Redis by the claim.
        job.payload = Vec::new();
        let id = job.id;
        self.retrying.insert(id, job);
        self.timers.arm(TimerKey::Retry(id), now + delay);
    }

    /// A stream retry's delay ended: `XCLAIM` it back (the entry comes back as a
    /// `Retry` read, with its raised delivery counter).
    pub(super) fn stream_retry_due(&mut self, job: Job, now: Instant) {
        let source = job.source;
        let Origin::Stream {
            entry_id,
            retry_delay,
            ..
        } = job.origin
        else {
            return;
        };
        if !self.sources[source].takes_work() {
            self.stream_forget(source, entry_id);
            return;
        }
        match self.stream_session(source) {
            Some(session) if session.is_ready() => {
                session.claim_retry(entry_id, retry_delay, now);
                self.mark_dirty(source);
            }
            _ => {
                let id = job.id;
                self.retrying.insert(id, job);
                self.timers
                    .arm(TimerKey::Retry(id), now + RETRY_WAIT_FOR_CONNECTION);
            }
        }
    }

    /// ferry no longer holds `id` (settled, or handed back: then it stays pending).
    pub(super) fn stream_forget(&mut self, source: SourceId, id: EntryId) {
        if let Some(state) = self
            .sources
            .get_mut(source)
            .and_then(|s| s.stream.as_deref_mut())
        {
            state.held.remove(&id);
        }
    }

    /// Pause, drain, reload: stream jobs not started are forgotten (they stay pending
    /// for this consumer, read again on resume or at the next start).
    pub(super) fn stream_hand_back(&mut self, source: SourceId) {
        if self.sources[source].stream.is_none() {
            return;
        }
        let pool = self.sources[source].pool;
        let unstarted = self.pools[pool].queue.take_source(source);
        self.sources[source].clear_waiting();
        let waiting: Vec<_> = self
            .retrying
            .iter()
            .filter(|(_, j)| j.source == source)
            .map(|(id, _)| *id)
            .collect();
        let mut count = unstarted.len();
        for job in unstarted {
            if let Origin::Stream { entry_id, .. } = job.origin {
                self.stream_forget(source, entry_id);
            }
        }
        for id in waiting {
            if let Some(job) = self.retrying.remove(&id) {
                self.timers.cancel(TimerKey::Retry(id));
                if let Origin::Stream { entry_id, .. } = job.origin {
                    self.stream_forget(source, entry_id);
                    count += 1;
                }
            }
        }
        if count > 0 {
            info!(
                "source {}: {count} entries not started stay pending for this consumer",
                self.sources[source].name
            );
        }
    }

    /// Resume: own pending entries (those handed back) are read first again.
    pub(super) fn stream_resumed(&mut self, source: SourceId) {
        if let Some(session) = self.stream_session(source) {
            session.restart_recovery();
        }
        self.mark_dirty(source);
    }

    /// The connection is going: acks it did not confirm are sent again on the next.
    pub(super) fn stream_connection_lost(&mut self, source: SourceId) {
        let acks = match &self.sources[source].link {
            Link::Up {
                session: Session_::Stream(s),
                ..
            } => s.unconfirmed_acks(),
            _ => return,
        };
        self.timers.cancel(TimerKey::Stream(source));
        if let Some(state) = self.sources[source].stream.as_deref_mut() {
            state.unsent_acks.extend(acks);
            state.next_claim = None;
            state.next_status = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_fields_as_a_form_or_one_field_raw() {
        let mut raw = Vec::new();
        for part in [&b"name"[..], b"Ann Lee", b"tags[0]", b"a&b", b"n", b"1"] {
            crate::proto::resp::bulk_string(&mut raw, part);
        }
        let fields = Fields::from_raw(&raw, 6);
        assert_eq!(
            entry_body(&StreamBody::Form, fields).unwrap(),
            b"name=Ann+Lee&tags%5B0%5D=a%26b&n=1"
        );
        assert_eq!(
            entry_body(&StreamBody::Field("n".into()), fields).unwrap(),
            b"1"
        );
        assert_eq!(entry_body(&StreamBody::Field("x".into()), fields), None);
    }
}
