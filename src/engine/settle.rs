//! What the outcome of an attempt does to its message (`docs/SEMANTICS.md`, "Outcome of
//! a request" and "Delivery guarantees"), and how that is carried out with the broker.
//!
//! [`decide`] is the settlement table as one pure function: an [`Outcome`] and the
//! [`Situation`] of the job (source kind, ack mode, retry mode, dead-letter target,
//! attempt, whether it was acked at dispatch or already resent) give one [`Settlement`].
//! It is unit-tested row by row (every outcome × kind × ack mode × first / middle / last
//! attempt) in `tests.rs`. The `impl Engine` below only carries settlements out: acks,
//! rejects, retry and dead-letter copies published with confirms, retries held in memory.

use std::time::{Duration, Instant};

use log::{debug, error, warn};

use super::ids::{JobId, SourceId};
use super::io::ConnId;
use super::jobs::{Job, Origin};
use super::{Engine, TimerKey};
use crate::config::{AckMode, DeadLetter, RetryMode};
use crate::dispatch::outcome::{Outcome, Reason};
use crate::dispatch::request::SourceKind;
use crate::dispatch::retry::{Next, RetryPolicy};
use crate::metrics::Settlement as Settled;
use crate::proto::amqp::{DeliveryTag, FieldValue, Session};

/// Where a message goes after its last attempt or a permanent failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterTarget {
    /// AMQP `basic.reject` requeue=false: the queue's own dead-letter exchange.
    Reject,
    /// AMQP: a copy published to the configured exchange, then the original acked.
    Publish,
    /// Redis and the RESP endpoint: discarded, with a log line and a count (a stream
    /// entry with `"dead_letter": "discard"` is acked).
    Discard,
    /// A stream entry: `XADD <stream>.ferry-dead` with its fields, `ferry-failure` and
    /// `ferry-attempts`, and `XACK`, in one `MULTI`/`EXEC`.
    Stream,
}

/// How a retried message waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryWait {
    /// AMQP `retry: republish`: a copy with `x-ferry-attempt` goes to the retry queue of
    /// the delay step; the original is acked when the broker confirms the copy.
    Republish,
    /// Redis, or AMQP `retry: hold`: the job waits in ferry's memory.
    InMemory,
    /// A stream entry stays pending in its group; after the delay ferry claims it back
    /// (`XCLAIM`, which raises its delivery counter: the attempt survives restarts).
    Pending,
}

/// Everything about a job that the settlement depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// Where it came from.
    pub kind: SourceKind,
    /// AMQP ack mode (`after_response` for the pub/sub kinds, which have no ack).
    pub ack: AckMode,
    /// AMQP retry mode.
    pub retry: RetryMode,
    /// AMQP: publish dead letters to an exchange (else reject); stream: add them to the
    /// dead-letter stream (else discard).
    pub dead_letter_publish: bool,
    /// The attempt that just ended (1-based).
    pub attempt: u32,
    /// Acked when its request was written (`ack: on_dispatch`).
    pub dispatch_acked: bool,
    /// Already sent again once after a kept connection closed under it.
    pub resent: bool,
}

/// What happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Success: acked (AMQP) or counted as acked (pub/sub).
    Ack,
    /// Nothing is left to settle: acked at dispatch (`ack: on_dispatch` never retries).
    AlreadySettled,
    /// Try again after `delay`, as attempt `next_attempt`.
    Retry {
        /// The delay step.
        delay: Duration,
        /// The attempt number the next try carries.
        next_attempt: u32,
        /// How it waits.
        wait: RetryWait,
    },
    /// Given up (permanent failure, or `max_attempts` reached).
    DeadLetter {
        /// Where it goes.
        target: DeadLetterTarget,
        /// Why, for the log and `x-ferry-failure`.
        reason: &'static str,
        /// True when attempts ran out (else a permanent failure).
        exhausted: bool,
    },
    /// The pool failed, not the message: back to the head of its queue, no attempt
    /// counted, the pool's circuit opens.
    RequeuePoolFailure,
    /// A reused kept connection closed before any answer: sent again once on a new
    /// connection, no attempt counted.
    Resend,
}

/// The settlement table; see the module docs.
pub fn decide(outcome: Outcome, situation: Situation, policy: &RetryPolicy) -> Settlement {
    let failure = match outcome {
        Outcome::Success if situation.dispatch_acked => return Settlement::AlreadySettled,
        Outcome::Success => return Settlement::Ack,
        Outcome::PoolFailure { .. } => return Settlement::RequeuePoolFailure,
        Outcome::ResendOnce if !situation.resent => return Settlement::Resend,
        Outcome::ResendOnce => Failure::Retryable(Reason::ConnectionClosed, None),
        Outcome::Permanent { reason } => Failure::Permanent(reason),
        Outcome::Retryable {
            reason,
            retry_after,
        } => Failure::Retryable(reason, retry_after),
    };
    if situation.dispatch_acked {
        return Settlement::AlreadySettled;
    }
    let dead_letter = |reason: Reason, exhausted: bool| Settlement::DeadLetter {
        target: match situation.kind {
            SourceKind::Amqp if situation.dead_letter_publish => DeadLetterTarget::Publish,
            SourceKind::Amqp => DeadLetterTarget::Reject,
            SourceKind::RedisStream if situation.dead_letter_publish => DeadLetterTarget::Stream,
            SourceKind::RedisStream => DeadLetterTarget::Discard,
            SourceKind::Redis | SourceKind::RespEndpoint => DeadLetterTarget::Discard,
        },
        reason: reason.as_str(),
        exhausted,
    };
    match failure {
        Failure::Permanent(reason) => dead_letter(reason, false),
        Failure::Retryable(reason, asked) => match policy.after_failure(situation.attempt, asked) {
            Next::GiveUp => dead_letter(reason, true),
            Next::RetryAfter(delay) => Settlement::Retry {
                delay,
                next_attempt: situation.attempt.saturating_add(1),
                wait: match (situation.kind, situation.retry) {
                    (SourceKind::Amqp, RetryMode::Republish) => RetryWait::Republish,
                    (SourceKind::RedisStream, _) => RetryWait::Pending,
                    _ => RetryWait::InMemory,
                },
            },
        },
    }
}

/// A failed attempt, before the schedule is asked.
enum Failure {
    Permanent(Reason),
    Retryable(Reason, Option<Duration>),
}

/// What a confirmed publish settles.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingSettle {
    pub generation: u64,
    pub tag: DeliveryTag,
    pub copy: CopyKind,
}

/// Which copy of a delivery was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyKind {
    /// A retry copy (to `<queue>.ferry-retry.<ms>`).
    Retry,
    /// A dead-letter copy (to the configured exchange).
    DeadLetter,
}

impl CopyKind {
    fn as_str(self) -> &'static str {
        match self {
            CopyKind::Retry => "retry",
            CopyKind::DeadLetter => "dead-letter",
        }
    }

    /// What the original counts as once the copy is confirmed.
    pub fn settled(self) -> Settled {
        match self {
            CopyKind::Retry => Settled::Retried,
            CopyKind::DeadLetter => Settled::DeadLettered,
        }
    }

    /// For the log when the broker refused the copy.
    pub fn label(self) -> &'static str {
        self.as_str()
    }
}

/// `<queue>.ferry-retry.<ms>`: the retry queue of one delay step.
pub(super) fn retry_queue_name(queue: &str, ms: u64) -> String {
    format!("{queue}.ferry-retry.{ms}")
}

impl Engine {
    /// What a finished (or failed) attempt means for its job: counts the attempt, then
    /// carries out the settlement [`decide`] gives.
    pub(super) fn on_outcome(&mut self, mut job: Job, outcome: Outcome, now: Instant) {
        let source = job.source;
        if let Some(result) = outcome.attempt_result() {
            self.sources[source].metrics.on_attempt(result);
        }
        let situation = self.situation_of(&job);
        let settlement = decide(outcome, situation, self.sources[source].policy());
        match settlement {
            Settlement::Ack => self.settle_success(job),
            Settlement::AlreadySettled => {}
            Settlement::RequeuePoolFailure => {
                if let Outcome::PoolFailure { reason } = outcome {
                    let pool = self.sources[source].pool;
                    self.pools[pool].metrics.on_failure(reason);
                    self.requeue_front(job);
                    self.open_circuit(pool, reason.as_str(), now);
                }
            }
            Settlement::Resend => {
                job.resent = true;
                self.requeue_front(job);
            }
            Settlement::DeadLetter {
                target,
                reason,
                exhausted,
            } => {
                if exhausted {
                    warn!(
                        "source {}: message {} failed {} times (last: {reason}); giving up",
                        self.sources[source].name,
                        job.log_id(),
                        job.attempt
                    );
                } else {
                    warn!(
                        "source {}: message {} failed permanently ({reason})",
                        self.sources[source].name,
                        job.log_id(),
                    );
                }
                self.dead_letter(job, target, reason);
            }
            Settlement::Retry {
                delay,
                next_attempt,
                wait,
            } => {
                debug!(
                    "source {}: message {} attempt {} failed; retry in {} ms",
                    self.sources[source].name,
                    job.log_id(),
                    job.attempt,
                    delay.as_millis()
                );
                match wait {
                    RetryWait::Republish => self.republish_retry(job, delay, next_attempt),
                    RetryWait::Pending => self.stream_retry(job, delay, now),
                    RetryWait::InMemory => {
                        job.attempt = next_attempt;
                        let id = job.id;
                        self.retrying.insert(id, job);
                        self.timers.arm(TimerKey::Retry(id), now + delay);
                    }
                }
            }
        }
    }

    /// The [`Situation`] of a job, from its source's configuration.
    fn situation_of(&self, job: &Job) -> Situation {
        let source = &self.sources[job.source];
        let amqp = source.amqp();
        Situation {
            kind: job.kind(),
            ack: amqp.map_or(AckMode::AfterResponse, |a| a.ack),
            retry: amqp.map_or(RetryMode::Hold, |a| a.retry),
            dead_letter_publish: amqp
                .is_some_and(|a| matches!(a.dead_letter, DeadLetter::Publish { .. }))
                || source
                    .stream_config()
                    .is_some_and(|s| s.dead_letter == crate::config::StreamDeadLetter::Stream),
            attempt: job.attempt,
            dispatch_acked: job.dispatch_acked,
            resent: job.resent,
        }
    }

    /// The worker succeeded.
    fn settle_success(&mut self, job: Job) {
        let source = job.source;
        match job.origin {
            Origin::Amqp {
                generation, tag, ..
            } => self.ack_tag(source, generation, tag, Settled::Acked),
            Origin::Redis { .. } => self.sources[source].metrics.on_settled(Settled::Acked),
            Origin::Stream { entry_id, .. } => self.stream_ack(source, entry_id),
        }
        self.mark_dirty(source);
    }

    /// After `max_attempts` or a permanent failure.
    fn dead_letter(&mut self, job: Job, target: DeadLetterTarget, reason: &str) {
        let source = job.source;
        let name = self.sources[source].name.clone();
        if let Origin::Stream { .. } = job.origin {
            self.stream_dead_letter(job, target, reason);
            return;
        }
        match (&job.origin, target) {
            (Origin::Redis { .. } | Origin::Stream { .. }, _)
            | (_, DeadLetterTarget::Discard | DeadLetterTarget::Stream) => {
                warn!(
                    "source {name}: message {} discarded ({reason})",
                    job.log_id()
                );
                self.sources[source].metrics.on_settled(Settled::Discarded);
            }
            (
                Origin::Amqp {
                    generation,
                    tag,
                    properties,
                    ..
                },
                DeadLetterTarget::Publish,
            ) => {
                let (generation, tag) = (*generation, *tag);
                let target = match self.sources[source].amqp().map(|a| &a.dead_letter) {
                    Some(DeadLetter::Publish {
                        exchange,
                        routing_key,
                    }) => (exchange.clone(), routing_key.clone()),
                    _ => (String::new(), String::new()),
                };
                let failure = FieldValue::LongStr(reason.as_bytes());
                let copy = self.publish_copy(
                    source,
                    (generation, tag),
                    (&target.0, &target.1),
                    properties,
                    ("x-ferry-failure", failure),
                    &job.payload,
                    CopyKind::DeadLetter,
                );
                if let Err(e) = copy {
                    error!("source {name}: cannot publish the dead-letter copy: {e}; rejecting");
                    self.reject_tag(source, generation, tag, reason);
                }
            }
            (
                Origin::Amqp {
                    generation, tag, ..
                },
                DeadLetterTarget::Reject,
            ) => self.reject_tag(source, *generation, *tag, reason),
        }
        self.mark_dirty(source);
    }

    /// AMQP `retry: republish`: a copy with the next attempt number to the retry queue
    /// of the delay step; the original is acked when the copy is confirmed.
    fn republish_retry(&mut self, job: Job, delay: Duration, next_attempt: u32) {
        let source = job.source;
        let Origin::Amqp {
            generation,
            tag,
            properties,
            ..
        } = &job.origin
        else {
            return;
        };
        let (generation, tag) = (*generation, *tag);
        let next = FieldValue::I64(i64::from(next_attempt));
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
            CopyKind::Retry,
        );
        if let Err(e) = copy {
            error!("source {name}: cannot publish the retry copy: {e}; the delivery goes back to its queue");
            if let Some(session) = self.live_session(source, generation) {
                let _ = session.nack(tag, true);
            }
        }
        self.mark_dirty(source);
    }

    /// Publishes a copy of a delivery (a retry or a dead-letter copy) on the confirm
    /// channel, with `header` set and every other property and header kept; the original
    /// is acked when the broker confirms the copy. A session that is gone (its deliveries
    /// went back to the queue with it) is no error.
    #[allow(clippy::too_many_arguments)]
    fn publish_copy(
        &mut self,
        source: SourceId,
        (generation, tag): (u64, DeliveryTag),
        (exchange, routing_key): (&str, &str),
        properties: &crate::proto::amqp::MessageProperties,
        (name, value): (&str, FieldValue<'_>),
        payload: &[u8],
        copy: CopyKind,
    ) -> Result<(), String> {
        let mut props = properties.clone();
        // A copy is a new message: the broker's count of the original's deliveries is not
        // its own (a quorum queue sets it again when it redelivers the copy).
        props
            .remove_header("x-delivery-count")
            .map_err(|e| e.to_string())?;
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
                copy,
            },
        );
        Ok(())
    }

    /// The AMQP session of `source` when it is up and `generation` is current.
    /// Whatever the caller sends through it (ack, nack, reject, publish) is written at the
    /// end of the loop turn: the session is marked for a flush here, so no command can be
    /// left sitting in its buffer until an unrelated event.
    pub(super) fn live_session(
        &mut self,
        source: SourceId,
        generation: u64,
    ) -> Option<&mut Session> {
        if self.sources[source].generation != generation {
            return None;
        }
        self.mark_dirty(source);
        self.sources[source].amqp_session_mut()
    }

    /// Acks `tag` and counts the delivery's one final settlement as `settled`: `Acked`
    /// after a success, `Retried` or `DeadLettered` when the ack follows a confirmed
    /// copy. One count per delivery (`docs/OPERATIONS.md`, `ferry_messages_settled_total`):
    /// counting the ack of a confirmed copy as `acked` as well would count it twice.
    pub(super) fn ack_tag(
        &mut self,
        source: SourceId,
        generation: u64,
        tag: DeliveryTag,
        settled: Settled,
    ) {
        let name = self.sources[source].name.clone();
        match self.live_session(source, generation) {
            Some(session) => {
                if let Err(e) = session.ack(tag) {
                    warn!("source {name}: cannot ack {tag:?}: {e}");
                } else {
                    self.sources[source].metrics.on_settled(settled);
                }
            }
            None => debug!("source {name}: {tag:?} belongs to a closed connection; not acked"),
        }
    }

    /// basic.reject requeue=false (the queue's dead-letter exchange, if any).
    pub(super) fn reject_tag(
        &mut self,
        source: SourceId,
        generation: u64,
        tag: DeliveryTag,
        why: &str,
    ) {
        if let Some(session) = self.live_session(source, generation) {
            if session.reject(tag, false).is_ok() {
                self.sources[source]
                    .metrics
                    .on_settled(Settled::DeadLettered);
            }
        }
        debug!(
            "source {}: rejected {tag:?} ({why})",
            self.sources[source].name
        );
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
    pub(super) fn on_dispatched(&mut self, conn: ConnId, source: SourceId) {
        let on_dispatch = self.sources[source].amqp().map(|a| a.ack) == Some(AckMode::OnDispatch);
        if !on_dispatch {
            return;
        }
        let Some(job) = self.worker_job_mut(conn) else {
            return;
        };
        let Origin::Amqp {
            generation, tag, ..
        } = job.origin
        else {
            return;
        };
        if job.dispatch_acked {
            return; // a resend writes it again: never acked twice
        }
        job.dispatch_acked = true;
        self.ack_tag(source, generation, tag, Settled::Acked);
    }

    /// A retry delay ended: back into the pool's queue (a stream entry is claimed back
    /// first).
    pub(super) fn on_retry_timer(&mut self, id: JobId, now: Instant) {
        if matches!(
            self.retrying.get(&id).map(|j| &j.origin),
            Some(Origin::Stream { .. })
        ) {
            if let Some(job) = self.retrying.remove(&id) {
                self.stream_retry_due(job, now);
            }
            return;
        }
        if let Some(job) = self.retrying.remove(&id).and_then(|job| self.may_wait(job)) {
            self.enqueue(job);
        }
    }

    /// Whether a job coming back (a pool failure, a resend, the end of a retry delay)
    /// may wait in its pool's queue. An AMQP delivery of a closed connection may not: the
    /// broker already requeued it, and its tag is void. One whose source stopped taking
    /// work (drain, circuit release, pause) goes back to the broker now (nack, requeue).
    pub(super) fn may_wait(&mut self, job: Job) -> Option<Job> {
        if let Origin::Stream { entry_id, .. } = job.origin {
            if self.sources[job.source].takes_work() {
                return Some(job);
            }
            // Handed back: it stays pending for this consumer and is read again.
            self.stream_forget(job.source, entry_id);
            return None;
        }
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
        if !source.takes_work() {
            self.release_amqp(job);
            return None;
        }
        Some(job)
    }

    /// Hands the jobs of `source` waiting in its pool's queue back to the broker (circuit
    /// release; part of [`Engine::hand_back_unstarted`]). Returns how many.
    pub(super) fn hand_back_queued(&mut self, source: SourceId) -> usize {
        let pool = self.sources[source].pool;
        let unstarted = self.pools[pool].queue.take_source(source);
        self.sources[source].clear_waiting();
        let count = unstarted.len();
        for job in unstarted {
            self.release_amqp(job);
        }
        count
    }

    /// Hands every AMQP job of `source` that has not started back to the broker: those
    /// waiting in its pool's queue and those waiting out a retry delay (drain, pause,
    /// circuit release). Returns how many were waiting in the queue.
    pub(super) fn hand_back_unstarted(&mut self, source: SourceId) -> usize {
        let count = self.hand_back_queued(source);
        let held: Vec<JobId> = self
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
}
