//! Retry schedules (`docs/SEMANTICS.md`, "Retries"): `retry_delays_ms` gives the delay after
//! each failed attempt, the last step repeating; a worker's `X-Ferry-Retry-After` rounds
//! up to a step, because AMQP retries wait in one queue per step (`<queue>.ferry-retry.<ms>`:
//! a classic queue expires messages only at its head, so one queue holds one delay).

use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this delay (a step of the schedule).
    RetryAfter(Duration),
    /// `max_attempts` reached: dead-letter (AMQP) or discard (Redis).
    GiveUp,
}

/// A source's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    steps_ms: Vec<u64>,
}

impl RetryPolicy {
    /// `max_attempts` ≥ 1 and a non-empty `steps_ms` (the config validates both; an
    /// empty schedule falls back to retrying at once).
    pub fn new(max_attempts: u32, steps_ms: &[u64]) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            steps_ms: if steps_ms.is_empty() {
                vec![0]
            } else {
                steps_ms.to_vec()
            },
        }
    }

    /// After attempt `attempt` (1-based) failed: retry or give up. `asked` is the
    /// worker's `X-Ferry-Retry-After`, rounded up to a step of the schedule (or the
    /// largest step when it asks for more).
    pub fn after_failure(&self, attempt: u32, asked: Option<Duration>) -> Next {
        if attempt >= self.max_attempts {
            return Next::GiveUp;
        }
        let ms = match asked {
            Some(asked) => self.round_up(asked),
            None => self.step_for(attempt),
        };
        Next::RetryAfter(Duration::from_millis(ms))
    }

    /// The delay after failed attempt `attempt` (1-based): steps in order, the last
    /// repeating.
    pub fn step_for(&self, attempt: u32) -> u64 {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.steps_ms
            .get(index)
            .or(self.steps_ms.last())
            .copied()
            .unwrap_or(0)
    }

    /// The smallest step at least `asked`, or the largest step.
    pub fn round_up(&self, asked: Duration) -> u64 {
        let asked_ms = u64::try_from(asked.as_millis()).unwrap_or(u64::MAX);
        let mut sorted = self.steps_ms.clone();
        sorted.sort_unstable();
        sorted
            .iter()
            .copied()
            .find(|&step| step >= asked_ms)
            .or(sorted.last().copied())
            .unwrap_or(0)
    }

    /// Every distinct step, for declaring the AMQP retry queues up front.
    pub fn distinct_steps(&self) -> Vec<u64> {
        let mut steps = self.steps_ms.clone();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Attempts allowed per message.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn steps_in_order_last_repeats_then_give_up() {
        let policy = RetryPolicy::new(6, &[1_000, 10_000, 60_000]);
        let delays: Vec<_> = (1..=6).map(|a| policy.after_failure(a, None)).collect();
        assert_eq!(
            delays,
            vec![
                Next::RetryAfter(secs(1)),
                Next::RetryAfter(secs(10)),
                Next::RetryAfter(secs(60)),
                Next::RetryAfter(secs(60)),
                Next::RetryAfter(secs(60)),
                Next::GiveUp,
            ]
        );
    }

    #[test]
    fn retry_after_rounds_up_to_a_step() {
        let policy = RetryPolicy::new(5, &[1_000, 10_000, 60_000, 300_000]);
        assert_eq!(
            policy.after_failure(1, Some(secs(30))),
            Next::RetryAfter(secs(60))
        );
        assert_eq!(
            policy.after_failure(1, Some(secs(0))),
            Next::RetryAfter(secs(1))
        );
        assert_eq!(
            policy.after_failure(1, Some(secs(9_999))),
            Next::RetryAfter(secs(300))
        );
        assert_eq!(policy.after_failure(5, Some(secs(1))), Next::GiveUp);
        assert_eq!(
            policy.distinct_steps(),
            vec![1_000, 10_000, 60_000, 300_000]
        );
    }

    #[test]
    fn one_attempt_means_no_retry() {
        assert_eq!(
            RetryPolicy::new(1, &[5]).after_failure(1, None),
            Next::GiveUp
        );
    }
}
