//! The job-duration histogram (`docs/OPERATIONS.md` "Histogram":
//! `ferry_job_duration_seconds`, a job's start on its worker connection → END_REQUEST).
//!
//! Observations are counted per bucket (not cumulatively) and in whole nanoseconds, so
//! `observe` is an integer comparison walk and two additions: no floating point, no
//! allocation, and `_sum` never drifts. The text renderer makes the buckets cumulative.

use std::time::Duration;

/// Number of finite buckets.
pub const BUCKET_COUNT: usize = 14;

/// The finite upper bounds (inclusive, as Prometheus's `le`) in nanoseconds, with the
/// label text each is rendered with. 0.005 s … 300 s, as `docs/OPERATIONS.md` lists them.
pub const BUCKETS: [(u64, &str); BUCKET_COUNT] = [
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
    (10_000_000_000, "10"),
    (30_000_000_000, "30"),
    (60_000_000_000, "60"),
    (300_000_000_000, "300"),
];

/// A histogram of durations over [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations that fell in each finite bucket and no smaller one.
    buckets: [u64; BUCKET_COUNT],
    /// Observations above the last finite bound (only the `+Inf` bucket holds them).
    overflow: u64,
    /// Sum of all observations, in nanoseconds (saturating: 584 years of job time).
    sum_nanos: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&mut self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
        match BUCKETS.iter().position(|&(bound, _)| nanos <= bound) {
            Some(i) => self.buckets[i] += 1,
            None => self.overflow += 1,
        }
    }

    /// Number of observations (`_count`, equal to the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.overflow
    }

    /// Sum of the observations in seconds (`_sum`).
    pub fn sum_seconds(&self) -> f64 {
        // Whole seconds and the remainder separately keep nanosecond precision for
        // sums below 2^53 ns (104 days) and lose only sub-ulp digits beyond.
        (self.sum_nanos / 1_000_000_000) as f64 + (self.sum_nanos % 1_000_000_000) as f64 / 1e9
    }

    /// The cumulative count of each finite bucket, in [`BUCKETS`] order (what `_bucket`
    /// samples show); the `+Inf` bucket is [`Histogram::count`].
    pub fn cumulative(&self) -> [u64; BUCKET_COUNT] {
        let mut running = 0;
        let mut out = [0; BUCKET_COUNT];
        for (slot, &n) in out.iter_mut().zip(self.buckets.iter()) {
            running += n;
            *slot = running;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(5)); // exactly 0.005: first bucket
        h.observe(Duration::from_nanos(5_000_001)); // just above: 0.01
        h.observe(Duration::from_millis(700)); // 1
        h.observe(Duration::from_secs(300)); // 300
        h.observe(Duration::from_secs(301)); // +Inf only
        let c = h.cumulative();
        assert_eq!(c, [1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4]);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum_seconds(), 601.710000001);
    }

    #[test]
    fn empty_histogram_is_zero() {
        let h = Histogram::default();
        assert_eq!(h.count(), 0);
        assert_eq!(h.sum_seconds(), 0.0);
        assert_eq!(h.cumulative(), [0; BUCKET_COUNT]);
    }

    #[test]
    fn bounds_are_increasing_and_labels_match() {
        for pair in BUCKETS.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        for (nanos, label) in BUCKETS {
            let seconds: f64 = label.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, nanos, "{label}");
        }
    }

    #[test]
    fn huge_durations_saturate() {
        let mut h = Histogram::default();
        h.observe(Duration::MAX);
        h.observe(Duration::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum_nanos, u64::MAX);
    }
}
