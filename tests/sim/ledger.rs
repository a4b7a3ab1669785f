//! What the simulated peers saw, and the invariants checked against it
//! (`docs/SIMULATION.md`, "Invariants"). The peers report here as things happen: the
//! broker each delivery, settle and confirmed copy; php-fpm each request it ran and the
//! answer it gave; the network whether that answer reached ferry whole. Checks that
//! need a justification ("this ack follows a worker's success") look it up here at the
//! moment the peer sees the act, so a violation is reported at the step that caused it.

use std::collections::{BTreeMap, BTreeSet};

use crate::trace::trace;

/// Which source a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Amqp,
    Redis,
}

/// What a worker's answer means by `docs/SEMANTICS.md`, "Outcome of a request".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Success,
    Retryable,
    Permanent,
    PoolFailure,
}

/// An answer as ferry can have understood it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    /// Not decided yet (the answer is on its way, or the worker still runs).
    Pending,
    /// The whole answer reached ferry.
    Seen(Intent),
    /// The connection ended before the whole answer reached ferry: an EOF or reset
    /// after the request was written (retryable), or a resend.
    Cut,
}

/// One request a php-fpm child read and ran.
#[derive(Debug)]
pub struct Proc {
    pub message: String,
    pub attempt: u32,
    pub kind: Kind,
    pub seq: u64,
    pub intent: Intent,
    pub delivered: bool,
    pub cut: bool,
}

impl Proc {
    pub fn effective(&self) -> Effective {
        if self.delivered {
            Effective::Seen(self.intent)
        } else if self.cut {
            Effective::Cut
        } else {
            Effective::Pending
        }
    }

    /// Ferry may have counted this attempt as failed and retryable.
    fn retryable(&self) -> bool {
        matches!(
            self.effective(),
            Effective::Seen(Intent::Retryable) | Effective::Cut
        )
    }
}

/// A delivery the broker made (by its index in [`Ledger::deliveries`]).
#[derive(Debug)]
pub struct Delivery {
    pub message: String,
    /// `x-ferry-attempt` of the delivered copy (absent: 1).
    pub attempt: u32,
    pub seq: u64,
}

/// A confirmed copy waiting for the ack of its original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    Retry,
    DeadLetter,
}

/// The source settings the checks need.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub amqp_max_attempts: u32,
    pub redis_max_attempts: u32,
    /// AMQP `retry: hold` (attempts counted in memory).
    pub hold: bool,
    /// AMQP `ack: on_dispatch`.
    pub on_dispatch: bool,
}

#[derive(Default)]
pub struct Ledger {
    seq: u64,
    pub procs: Vec<Proc>,
    by_message: BTreeMap<String, Vec<usize>>,
    pub deliveries: Vec<Delivery>,
    delivered_attempts: BTreeMap<String, BTreeSet<u32>>,
    /// AMQP messages published by the outside world.
    pub published: Vec<String>,
    /// Final settlements per logical AMQP message (success ack or dead-lettered).
    pub completions: BTreeMap<String, u32>,
    /// Times a delivery of the message was requeued because its connection ended.
    pub requeued_unacked: BTreeMap<String, u32>,
    /// acks and rejects (requeue false) ferry wrote, per ferry incarnation.
    pub finals_written: BTreeMap<u32, u64>,
    /// Redis messages whose bytes reached ferry whole, per incarnation.
    pub redis_received: BTreeMap<u32, u64>,
    pub violations: Vec<String>,
    pub rules: Option<Rules>,
    /// Confirmed copies per (broker connection, message) whose original is not acked
    /// yet: several deliveries of one message can be held at once (after requeues), so
    /// a copy justifies the ack of any of them on that connection.
    copies: BTreeMap<(u64, String), Vec<Copy>>,
}

impl Ledger {
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn violation(&mut self, text: String) {
        trace!("VIOLATION {text}");
        self.violations.push(text);
    }

    fn rules(&self) -> Rules {
        self.rules.expect("rules are set before the run")
    }

    fn procs_of<'a>(&'a self, message: &str) -> impl Iterator<Item = &'a Proc> + 'a {
        self.by_message
            .get(message)
            .into_iter()
            .flatten()
            .map(|&i| &self.procs[i])
    }

    // ---- php-fpm -----------------------------------------------------------------------

    /// A child read a whole request: checks the attempt it carries, records it.
    pub fn on_request(&mut self, message: &str, attempt: u32, kind: Kind, intent: Intent) -> usize {
        let rules = self.rules();
        let max = match kind {
            Kind::Amqp => rules.amqp_max_attempts,
            Kind::Redis => rules.redis_max_attempts,
        };
        if attempt == 0 || attempt > max {
            self.violation(format!(
                "{message}: worker got FERRY_ATTEMPT={attempt}, outside 1..={max}"
            ));
        }
        // An attempt number either comes with a delivery (the broker's copy carries it)
        // or follows a retryable failure of the attempt before (retries from memory).
        let follows_failure = attempt > 1
            && self
                .procs_of(message)
                .any(|p| p.attempt == attempt - 1 && p.retryable());
        let ok = match kind {
            Kind::Amqp => {
                let delivered = self
                    .delivered_attempts
                    .get(message)
                    .is_some_and(|s| s.contains(&attempt));
                delivered || (rules.hold && follows_failure)
            }
            Kind::Redis => attempt == 1 || follows_failure,
        };
        if !ok {
            self.violation(format!(
                "{message}: worker got attempt {attempt}, which neither a delivery nor a retryable failure of attempt {} explains (an attempt burned or skipped)",
                attempt.saturating_sub(1)
            ));
        }
        if kind == Kind::Redis {
            // At most once: the same attempt runs again only when ferry never saw how
            // the first one ended (a resend) or the pool failed it.
            let again = self.procs_of(message).any(|p| {
                p.attempt == attempt
                    && matches!(
                        p.effective(),
                        Effective::Seen(Intent::Success | Intent::Retryable | Intent::Permanent)
                            | Effective::Pending
                    )
            });
            if again {
                self.violation(format!(
                    "{message}: Redis message delivered twice to the worker (attempt {attempt})"
                ));
            }
        }
        let seq = self.next_seq();
        let index = self.procs.len();
        self.procs.push(Proc {
            message: message.to_string(),
            attempt,
            kind,
            seq,
            intent,
            delivered: false,
            cut: false,
        });
        self.by_message
            .entry(message.to_string())
            .or_default()
            .push(index);
        index
    }

    /// A request ferry wrote that no worker ran (it waited in the listen backlog, or its
    /// connection ended first): ferry counted it as an attempt all the same.
    pub fn on_request_never_ran(&mut self, message: &str, attempt: u32, kind: Kind) {
        trace!("php-fpm: {message} attempt {attempt} written but never run");
        let proc = self.on_request(message, attempt, kind, Intent::Retryable);
        self.procs[proc].cut = true;
    }

    /// The whole answer of `proc` reached ferry.
    pub fn answer_delivered(&mut self, proc: usize) {
        let p = &mut self.procs[proc];
        if p.cut || p.delivered {
            return;
        }
        p.delivered = true;
        if p.kind == Kind::Redis && p.intent == Intent::Success {
            let message = p.message.clone();
            let successes = self
                .procs_of(&message)
                .filter(|p| p.effective() == Effective::Seen(Intent::Success))
                .count();
            if successes > 1 {
                self.violation(format!("{message}: a Redis message succeeded twice"));
            }
        }
    }

    /// The connection of `proc` ended before its whole answer reached ferry.
    pub fn answer_cut(&mut self, proc: usize) {
        let p = &mut self.procs[proc];
        if !p.delivered {
            p.cut = true;
        }
    }

    // ---- the broker --------------------------------------------------------------------

    pub fn on_delivery(&mut self, message: &str, attempt: u32) -> usize {
        let seq = self.next_seq();
        self.delivered_attempts
            .entry(message.to_string())
            .or_default()
            .insert(attempt);
        self.deliveries.push(Delivery {
            message: message.to_string(),
            attempt,
            seq,
        });
        self.deliveries.len() - 1
    }

    /// A worker answer after `delivery` that lets ferry give up on the message.
    fn gives_up(&self, delivery: usize) -> bool {
        let d = &self.deliveries[delivery];
        let max = self.rules().amqp_max_attempts;
        self.procs_of(&d.message).any(|p| {
            p.seq > d.seq
                && p.attempt >= d.attempt
                && (p.effective() == Effective::Seen(Intent::Permanent)
                    || (p.attempt >= max && p.retryable()))
        })
    }

    /// ferry acked `delivery` on broker connection `conn`.
    pub fn on_ack(&mut self, delivery: usize, conn: u64) {
        let d = &self.deliveries[delivery];
        let message = d.message.clone();
        let succeeded = self.procs_of(&message).any(|p| {
            p.seq > d.seq
                && p.attempt >= d.attempt
                && p.effective() == Effective::Seen(Intent::Success)
        });
        let attempt = d.attempt;
        if let Some(copy) = self
            .copies
            .get_mut(&(conn, message.clone()))
            .and_then(Vec::pop)
        {
            // The retry copy carries the message on; a dead-letter copy ended it.
            if copy == Copy::DeadLetter {
                *self.completions.entry(message).or_default() += 1;
            }
            return;
        }
        if succeeded {
            *self.completions.entry(message).or_default() += 1;
        } else if !self.rules().on_dispatch {
            self.violation(format!(
                "{message}: acked (attempt {attempt}) before any worker succeeded with it and without a confirmed copy"
            ));
        }
    }

    /// ferry rejected `delivery` without requeue: dead-lettered.
    pub fn on_reject(&mut self, delivery: usize) {
        let message = self.deliveries[delivery].message.clone();
        if !self.gives_up(delivery) {
            self.violation(format!(
                "{message}: dead-lettered (reject) without a permanent failure or a last attempt that failed"
            ));
        }
        *self.completions.entry(message).or_default() += 1;
    }

    /// The broker confirmed a retry copy of `message` with `x-ferry-attempt: attempt`,
    /// published on `conn`, which holds `held` deliveries of that message.
    pub fn on_retry_copy(&mut self, message: &str, held: &[usize], attempt: u32, conn: u64) {
        let max = self.rules().amqp_max_attempts;
        let justified = held.iter().any(|&d| {
            let d = &self.deliveries[d];
            attempt == d.attempt + 1
                && attempt <= max
                && self
                    .procs_of(message)
                    .any(|p| p.seq > d.seq && p.attempt + 1 == attempt && p.retryable())
        });
        if !justified {
            let held: Vec<u32> = held.iter().map(|&d| self.deliveries[d].attempt).collect();
            self.violation(format!(
                "{message}: retry copy with attempt {attempt} (max {max}) while ferry holds deliveries of attempts {held:?}, without a retryable failure of attempt {}",
                attempt.saturating_sub(1)
            ));
        }
        self.copies
            .entry((conn, message.to_string()))
            .or_default()
            .push(Copy::Retry);
    }

    /// The broker confirmed a dead-letter copy of `message` published on `conn`.
    pub fn on_dead_letter_copy(&mut self, message: &str, held: &[usize], conn: u64) {
        if !held.iter().any(|&d| self.gives_up(d)) {
            self.violation(format!(
                "{message}: dead-letter copy published without a permanent failure or a last attempt that failed"
            ));
        }
        self.copies
            .entry((conn, message.to_string()))
            .or_default()
            .push(Copy::DeadLetter);
    }

    /// The connection of an unacked `delivery` ended: the broker requeued it.
    pub fn on_requeued_by_close(&mut self, delivery: usize) {
        let message = self.deliveries[delivery].message.clone();
        *self.requeued_unacked.entry(message).or_default() += 1;
    }

    /// Redis messages that ran at least once and may come back into the backlog (a
    /// retry after its delay, a pool failure, a resend): the backlog bounds what ferry
    /// takes in, and those were taken in before.
    pub fn redis_may_return(&self) -> usize {
        self.by_message
            .iter()
            .filter(|(_, procs)| {
                let last = &self.procs[*procs.last().expect("a request")];
                last.kind == Kind::Redis
                    && !matches!(
                        last.effective(),
                        Effective::Seen(Intent::Success | Intent::Permanent)
                    )
            })
            .count()
    }

    /// Every published AMQP message was settled for good (at least once).
    pub fn all_completed(&self) -> bool {
        self.published
            .iter()
            .all(|m| self.completions.get(m).copied().unwrap_or(0) > 0)
    }

    /// The end of the run: nothing lost, duplicates only where a delivery was in flight
    /// when its connection ended.
    pub fn check_final(&mut self) {
        if self.rules().on_dispatch {
            return; // documented to lose work; the queues being empty is checked apart
        }
        for message in self.published.clone() {
            let done = self.completions.get(&message).copied().unwrap_or(0);
            let requeued = self.requeued_unacked.get(&message).copied().unwrap_or(0);
            if done == 0 {
                self.violation(format!(
                    "{message}: lost (never acked after success nor dead-lettered)"
                ));
            } else if done > 1 + requeued {
                self.violation(format!(
                    "{message}: settled {done} times, but only {requeued} of its deliveries were in flight when a connection ended"
                ));
            }
        }
    }
}
