//! Reconnect and probe delays: exponential with full jitter (`docs/SEMANTICS.md`,
//! "Reconnecting" and "Circuit breaker": broker connections re-established with exponential backoff and jitter;
//! the circuit breaker probes "with backoff and jitter (no spinning)").
//!
//! Full jitter (a uniform delay between half the step and the step) spreads a fleet of
//! ferry hosts that lost the same broker, so they do not reconnect in lockstep. The
//! random source is a small xorshift seeded per process: no dependency, and statistical
//! quality is irrelevant here.

use std::time::Duration;

/// One backoff schedule: `initial`, doubling up to `max`, each delay jittered into
/// `[step/2, step]`. Reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
    attempts: u32,
    rng: u64,
}

impl Backoff {
    /// A schedule starting at `initial` and capped at `max`; `seed` varies the jitter.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max,
            step: initial,
            attempts: 0,
            // Mix the seed (nearby seeds, such as pids, must not give nearby sequences);
            // xorshift must not start at 0.
            rng: splitmix64(seed) | 1,
        }
    }

    /// The same schedule with its jitter varied by `salt` (one per node of a source, so
    /// its nodes do not share one sequence).
    pub fn salted(mut self, salt: u64) -> Backoff {
        self.rng = splitmix64(self.rng ^ salt) | 1;
        self
    }

    /// The delay before the next attempt, advancing the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        let half = step / 2;
        let span = u64::try_from((step - half).as_micros()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.next_random() % (span + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the initial delay (after a connection succeeded).
    pub fn reset(&mut self) {
        self.step = self.initial;
        self.attempts = 0;
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// One round of SplitMix64: a bijective scramble of the seed.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_up_to_the_cap_then_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(1_000), 42);
        let mut step = ms(100);
        for _ in 0..8 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} for step {step:?}"
            );
            step = (step * 2).min(ms(1_000));
        }
        assert_eq!(backoff.attempts(), 8);
        backoff.reset();
        assert!(backoff.next_delay() <= ms(100));
    }

    #[test]
    fn jitter_spreads_hosts() {
        let ms = Duration::from_millis;
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|seed| Backoff::new(ms(1_000), ms(1_000), seed).next_delay())
            .collect();
        assert!(delays.len() > 10);
    }
}
