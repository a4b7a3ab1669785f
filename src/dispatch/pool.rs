//! A pool's waiting jobs and its circuit breaker (`docs/SEMANTICS.md`, "Pools and
//! backpressure" and "Circuit breaker").
//!
//! - [`FairQueue`]: one FIFO per source, served round-robin, so sources sharing a pool
//!   are served fairly and a busy source cannot starve a quiet one.
//! - [`Circuit`]: a pool failure (connect refused, php-fpm overloaded, script unknown…)
//!   opens the circuit: no job starts; after a delay the reactor makes one probe
//!   connect; when one connects the circuit closes. Delays come from the caller (the
//!   reactor's jittered backoff), so this stays free of clocks and randomness.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Jobs waiting for a pool slot, one queue per source (`K` names the source), served
/// round-robin.
#[derive(Debug)]
pub struct FairQueue<J, K = usize> {
    queues: Vec<(K, VecDeque<J>)>,
    cursor: usize,
    len: usize,
}

impl<J, K> Default for FairQueue<J, K> {
    fn default() -> Self {
        FairQueue {
            queues: Vec::new(),
            cursor: 0,
            len: 0,
        }
    }
}

impl<J, K: Copy + PartialEq> FairQueue<J, K> {
    fn queue_of(&mut self, source: K) -> &mut VecDeque<J> {
        let index = match self.queues.iter().position(|(s, _)| *s == source) {
            Some(index) => index,
            None => {
                self.queues.push((source, VecDeque::new()));
                self.queues.len() - 1
            }
        };
        #[allow(clippy::indexing_slicing)] // `index` was just found or pushed
        &mut self.queues[index].1
    }

    /// Appends a job of `source`.
    pub fn push(&mut self, source: K, job: J) {
        self.queue_of(source).push_back(job);
        self.len += 1;
    }

    /// Puts a job back at the head of its source's queue (a pool failure: it keeps its
    /// place and burns no attempt).
    pub fn push_front(&mut self, source: K, job: J) {
        self.queue_of(source).push_front(job);
        self.len += 1;
    }

    /// The next job, taking sources in turn.
    pub fn pop(&mut self) -> Option<(K, J)> {
        if self.len == 0 {
            return None;
        }
        for _ in 0..self.queues.len() {
            let index = self.cursor % self.queues.len();
            self.cursor = index + 1;
            let Some((source, queue)) = self.queues.get_mut(index) else {
                continue;
            };
            if let Some(job) = queue.pop_front() {
                self.len -= 1;
                return Some((*source, job));
            }
        }
        None
    }

    /// Takes every waiting job of `source` (pause, drain, a removed source).
    pub fn take_source(&mut self, source: K) -> Vec<J> {
        let Some(index) = self.queues.iter().position(|(s, _)| *s == source) else {
            return Vec::new();
        };
        let (_, queue) = self.queues.remove(index);
        self.len -= queue.len();
        queue.into()
    }

    /// Waiting jobs of `source`.
    pub fn len_of(&self, source: K) -> usize {
        self.queues
            .iter()
            .find(|(s, _)| *s == source)
            .map_or(0, |(_, q)| q.len())
    }

    /// Waiting jobs in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a pool's circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Jobs start freely.
    Closed,
    /// A pool failure happened `since`; the next probe is due at `probe_at`.
    Open {
        /// When the circuit opened (for `circuit_release_ms`).
        since: Instant,
        /// When the next probe connect may start.
        probe_at: Instant,
    },
    /// A probe connect is under way.
    Probing {
        /// When the circuit opened.
        since: Instant,
    },
}

/// A pool's circuit breaker; see the module docs.
#[derive(Debug, Clone)]
pub struct Circuit {
    state: CircuitState,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            state: CircuitState::Closed,
        }
    }
}

impl Circuit {
    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// True when jobs may start.
    pub fn is_closed(&self) -> bool {
        self.state == CircuitState::Closed
    }

    /// A pool failure at `now`: open (or stay open), next probe after `delay`.
    pub fn on_pool_failure(&mut self, now: Instant, delay: Duration) {
        let since = match self.state {
            CircuitState::Closed => now,
            CircuitState::Open { since, .. } | CircuitState::Probing { since } => since,
        };
        self.state = CircuitState::Open {
            since,
            probe_at: now + delay,
        };
    }

    /// True when a probe should start now (then call [`Circuit::probe_started`]).
    pub fn probe_due(&self, now: Instant) -> bool {
        matches!(self.state, CircuitState::Open { probe_at, .. } if now >= probe_at)
    }

    /// Something changed that may have healed the pool (a worker process started, an
    /// address resolved): an open circuit's probe becomes due at `now` instead of
    /// waiting out its backoff. A probe already under way is left alone.
    pub fn probe_now(&mut self, now: Instant) {
        if let CircuitState::Open { since, probe_at } = self.state {
            self.state = CircuitState::Open {
                since,
                probe_at: probe_at.min(now),
            };
        }
    }

    /// A probe connect started.
    pub fn probe_started(&mut self) {
        if let CircuitState::Open { since, .. } = self.state {
            self.state = CircuitState::Probing { since };
        }
    }

    /// A connect succeeded (a probe's or a job's): the pool answers again.
    pub fn on_connected(&mut self) {
        self.state = CircuitState::Closed;
    }

    /// When the next probe is due, for the loop's timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            CircuitState::Open { probe_at, .. } => Some(probe_at),
            CircuitState::Closed | CircuitState::Probing { .. } => None,
        }
    }

    /// How long the circuit has been open, if it is.
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        match self.state {
            CircuitState::Closed => None,
            CircuitState::Open { since, .. } | CircuitState::Probing { since } => {
                Some(now.saturating_duration_since(since))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_take_turns() {
        let mut queue = FairQueue::default();
        for n in 0..5 {
            queue.push(0, ("busy", n));
        }
        queue.push(1, ("quiet", 0));
        queue.push(2, ("other", 0));
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).map(|(_, j)| j).collect();
        assert_eq!(
            order,
            vec![
                ("busy", 0),
                ("quiet", 0),
                ("other", 0),
                ("busy", 1),
                ("busy", 2),
                ("busy", 3),
                ("busy", 4)
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_failed_job_keeps_its_place_and_sources_can_be_taken_out() {
        let mut queue = FairQueue::default();
        queue.push(0, 1);
        queue.push(0, 2);
        queue.push(1, 10);
        let (source, job) = queue.pop().unwrap();
        queue.push_front(source, job);
        assert_eq!(queue.len_of(0), 2);
        assert_eq!(queue.pop(), Some((1, 10)), "the other source's turn");
        assert_eq!(
            queue.pop(),
            Some((0, 1)),
            "ahead of its source's later jobs"
        );
        assert_eq!(queue.take_source(0), vec![2]);
        assert!(queue.is_empty());
    }

    #[test]
    fn circuit_opens_probes_and_closes() {
        let t0 = crate::test_epoch();
        let s = Duration::from_secs;
        let mut circuit = Circuit::default();
        assert!(circuit.is_closed());
        circuit.on_pool_failure(t0, s(1));
        assert!(!circuit.is_closed());
        assert!(!circuit.probe_due(t0));
        assert_eq!(circuit.next_deadline(), Some(t0 + s(1)));
        assert!(circuit.probe_due(t0 + s(1)));
        circuit.probe_started();
        assert_eq!(circuit.next_deadline(), None);
        circuit.probe_now(t0);
        assert_eq!(
            circuit.next_deadline(),
            None,
            "a probe under way is left alone"
        );
        circuit.on_pool_failure(t0 + s(2), s(2));
        assert_eq!(
            circuit.open_for(t0 + s(3)),
            Some(s(3)),
            "open since the first failure"
        );
        circuit.on_connected();
        assert!(circuit.is_closed());
        assert_eq!(circuit.open_for(t0 + s(9)), None);
    }

    #[test]
    fn a_probe_can_be_brought_forward_never_pushed_back() {
        let t0 = crate::test_epoch();
        let s = Duration::from_secs;
        let mut circuit = Circuit::default();
        circuit.on_pool_failure(t0, s(4));
        circuit.probe_now(t0 + s(1));
        assert!(circuit.probe_due(t0 + s(1)));
        assert_eq!(circuit.next_deadline(), Some(t0 + s(1)));
        circuit.probe_now(t0 + s(3));
        assert_eq!(circuit.next_deadline(), Some(t0 + s(1)));
        assert_eq!(circuit.open_for(t0 + s(3)), Some(s(3)));
    }
}
