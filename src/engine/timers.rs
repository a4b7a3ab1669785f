//! Deadlines by key, for the loop's one `poll` timeout (`docs/ARCHITECTURE.md`, "Time is an argument").
//!
//! Every timed thing in ferry (a reconnect backoff, a retry delay, a session's heartbeat
//! or keepalive, a request timeout, the drain deadline) is one key with at most one
//! deadline. Re-arming a key replaces its deadline; the heap keeps stale entries and skips
//! them lazily, so arming and cancelling are O(log n) with no search.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// A fast hasher for small integer-like keys: timer keys are ferry's own (never from a
/// peer), so SipHash's flooding resistance buys nothing on this hot path.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // A multiply-rotate mix (as in FxHash): cheap and spreads consecutive keys.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

/// Deadlines keyed by `K`; see the module docs.
#[derive(Debug)]
pub struct Timers<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    armed: HashMap<K, Instant, BuildHasherDefault<KeyHasher>>,
}

impl<K: Copy + Eq + Hash + Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            armed: HashMap::default(),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> Timers<K> {
    /// Arms `key` for `at`, replacing any deadline it had.
    pub fn arm(&mut self, key: K, at: Instant) {
        if self.armed.insert(key, at) != Some(at) {
            self.heap.push(Reverse((at, key)));
        }
    }

    /// Disarms `key`; a no-op when it was not armed.
    pub fn cancel(&mut self, key: K) {
        self.armed.remove(&key);
    }

    /// The deadline of `key`, if armed.
    pub fn deadline(&self, key: K) -> Option<Instant> {
        self.armed.get(&key).copied()
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes one key whose deadline is at or before `now` (disarming it).
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        self.drop_stale();
        let Reverse((at, key)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.armed.remove(&key);
        Some(key)
    }

    /// Number of armed keys.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if self.armed.get(key) == Some(at) {
                return;
            }
            self.heap.pop();
        }
        // Many re-arms of long deadlines can leave the heap mostly stale; rebuild it
        // before it grows past a few times the live set.
        if self.heap.len() > 64 && self.heap.len() > 4 * self.armed.len() {
            self.heap = self
                .armed
                .iter()
                .map(|(k, at)| Reverse((*at, *k)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_rearm_replaces() {
        let t0 = crate::test_epoch();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.arm(1u32, ms(30));
        timers.arm(2, ms(10));
        timers.arm(3, ms(20));
        timers.arm(2, ms(40)); // re-armed later
        timers.cancel(3);
        assert_eq!(timers.next_deadline(), Some(ms(30)));
        assert_eq!(timers.pop_expired(ms(29)), None);
        assert_eq!(timers.pop_expired(ms(100)), Some(1));
        assert_eq!(timers.pop_expired(ms(100)), Some(2));
        assert_eq!(timers.pop_expired(ms(100)), None);
        assert!(timers.is_empty());
    }

    #[test]
    fn stale_entries_do_not_accumulate() {
        let t0 = crate::test_epoch();
        let mut timers = Timers::default();
        for i in 0..10_000u64 {
            timers.arm(7u32, t0 + Duration::from_millis(i));
            timers.next_deadline();
        }
        assert!(timers.heap.len() <= 65, "{}", timers.heap.len());
        assert_eq!(
            timers.next_deadline(),
            Some(t0 + Duration::from_millis(9_999))
        );
    }
}
