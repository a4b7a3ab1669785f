//! The outstanding numbers of one channel: unsettled delivery tags on the consumer
//! channel, unconfirmed publish sequence numbers on the publisher channel.
//!
//! Both are handed out in increasing order and mostly retired oldest first, and there
//! are few of them (the broker delivers at most `prefetch` unacked messages; publishes
//! wait only for a confirm), so a sorted `VecDeque` beats a hash set: no per-entry
//! allocation, push at the back, binary search to remove, pop at the front.

use std::collections::VecDeque;

/// A sorted set of numbers inserted in strictly increasing order.
#[derive(Debug, Clone, Default)]
pub(super) struct OutstandingSet {
    numbers: VecDeque<u64>,
    /// The largest number ever inserted (0 before the first).
    last: u64,
}

impl OutstandingSet {
    /// Adds `n`; refuses (returns false) one not above every number inserted before.
    pub(super) fn insert_next(&mut self, n: u64) -> bool {
        if n <= self.last {
            return false;
        }
        self.last = n;
        self.numbers.push_back(n);
        true
    }

    /// True when `n` is outstanding.
    pub(super) fn contains(&self, n: u64) -> bool {
        self.numbers.binary_search(&n).is_ok()
    }

    /// Removes `n`; false when it was not outstanding.
    pub(super) fn remove(&mut self, n: u64) -> bool {
        match self.numbers.binary_search(&n) {
            Ok(i) => self.numbers.remove(i).is_some(),
            Err(_) => false,
        }
    }

    /// Removes and returns the smallest number if it is at most `n`.
    pub(super) fn pop_up_to(&mut self, n: u64) -> Option<u64> {
        match self.numbers.front() {
            Some(&first) if first <= n => self.numbers.pop_front(),
            _ => None,
        }
    }

    /// The smallest outstanding number.
    pub(super) fn first(&self) -> Option<u64> {
        self.numbers.front().copied()
    }

    /// How many are outstanding.
    pub(super) fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Forgets every outstanding number (the channel is gone), keeping `last`.
    pub(super) fn clear(&mut self) {
        self.numbers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_in_order_and_removes_anywhere() {
        let mut set = OutstandingSet::default();
        for n in 1..=5 {
            assert!(set.insert_next(n));
        }
        assert!(!set.insert_next(5));
        assert!(!set.insert_next(3));
        assert!(set.remove(3));
        assert!(!set.remove(3));
        assert!(!set.contains(3));
        assert_eq!(set.pop_up_to(4), Some(1));
        assert_eq!(set.pop_up_to(4), Some(2));
        assert_eq!(set.pop_up_to(4), Some(4));
        assert_eq!(set.pop_up_to(4), None);
        assert_eq!(set.len(), 1);
        set.clear();
        assert!(!set.insert_next(5));
        assert!(set.insert_next(6));
    }
}
