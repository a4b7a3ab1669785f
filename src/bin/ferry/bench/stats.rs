//! Numbers from receipts: accounting (lost, duplicated), latency percentiles (exact,
//! from a sorted `Vec`: a run holds at most a few million receipts, so a histogram
//! would only add error), a timeline for the plot, and the peak number of requests the
//! workers held at once.

use serde::Serialize;

use super::collector::Receipt;

/// Every message accounted for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Messages published.
    pub sent: u64,
    /// Receipts, duplicates included.
    pub received: u64,
    /// Distinct messages received.
    pub unique: u64,
    /// Published and never received.
    pub lost: u64,
    /// Receipts beyond the first of a message.
    pub duplicates: u64,
    /// Receipts of numbers never published (another run's messages).
    pub unexpected: u64,
}

impl Accounting {
    /// True when every message arrived exactly once.
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.unexpected == 0 && self.sent > 0
    }
}

/// Counts what arrived of messages `1..=sent`.
pub fn account(sent: u64, receipts: &[Receipt]) -> Accounting {
    let mut seen = vec![0u32; usize::try_from(sent).unwrap_or(0) + 1];
    let mut accounting = Accounting {
        sent,
        received: receipts.len() as u64,
        ..Accounting::default()
    };
    for receipt in receipts {
        match usize::try_from(receipt.n)
            .ok()
            .filter(|&n| n >= 1)
            .and_then(|n| seen.get_mut(n))
        {
            Some(count) => {
                if *count == 0 {
                    accounting.unique += 1;
                } else {
                    accounting.duplicates += 1;
                }
                *count += 1;
            }
            None => accounting.unexpected += 1,
        }
    }
    accounting.lost = sent - accounting.unique;
    accounting
}

/// Latency percentiles, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The value below which `fraction` of the sorted values lie (nearest rank).
fn rank(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Percentiles of `latencies` (sorted here); `None` when empty.
pub fn percentiles(mut latencies: Vec<u64>) -> Option<Percentiles> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let sum: u128 = latencies.iter().map(|&v| u128::from(v)).sum();
    Some(Percentiles {
        p50: rank(&latencies, 0.50),
        p90: rank(&latencies, 0.90),
        p99: rank(&latencies, 0.99),
        p999: rank(&latencies, 0.999),
        max: latencies[latencies.len() - 1],
        mean: sum as f64 / latencies.len() as f64,
    })
}

/// One slice of the run, for the plot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slice {
    /// Start of the slice, seconds since the run started.
    pub at_s: f64,
    /// Receipts per second in the slice.
    pub throughput: f64,
    /// Latency percentiles of the slice's receipts (µs), if any arrived.
    pub latency_us: Option<Percentiles>,
}

/// Splits the run (from `start_us` to the last receipt) into at most `slices` equal
/// slices by receipt time.
pub fn timeline(receipts: &[Receipt], start_us: u64, slices: usize) -> Vec<Slice> {
    let Some(end_us) = receipts.iter().map(|r| r.received_us).max() else {
        return Vec::new();
    };
    let span = end_us.saturating_sub(start_us).max(1);
    // Slices of at least 10 ms, so a short run does not plot noise.
    let count = slices.clamp(1, usize::try_from(span / 10_000).unwrap_or(1).max(1));
    let width = span.div_ceil(count as u64);
    let mut groups: Vec<Vec<u64>> = vec![Vec::new(); count];
    for receipt in receipts {
        let index = usize::try_from(receipt.received_us.saturating_sub(start_us) / width)
            .unwrap_or(usize::MAX)
            .min(count - 1);
        groups[index].push(receipt.latency_us());
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, latencies)| Slice {
            at_s: (i as u64 * width) as f64 / 1e6,
            throughput: latencies.len() as f64 / (width as f64 / 1e6),
            latency_us: percentiles(latencies),
        })
        .collect()
}

/// The most requests the workers held at once, when each is held `hold_us` after its
/// receipt (the responder's `--delay-ms`): a sweep over sorted receipt times.
pub fn peak_in_flight(receipts: &[Receipt], hold_us: u64) -> u64 {
    let mut times: Vec<u64> = receipts.iter().map(|r| r.received_us).collect();
    times.sort_unstable();
    let (mut peak, mut first) = (0usize, 0usize);
    for (i, &at) in times.iter().enumerate() {
        while times[first] + hold_us <= at && first < i {
            first += 1;
        }
        peak = peak.max(i - first + 1);
    }
    peak as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(n: u64, sent_us: u64, received_us: u64) -> Receipt {
        Receipt {
            n,
            sent_us,
            received_us,
        }
    }

    #[test]
    fn accounting_finds_losses_duplicates_and_strangers() {
        let receipts = [
            receipt(1, 0, 1),
            receipt(2, 0, 1),
            receipt(2, 0, 1),
            receipt(9, 0, 1),
        ];
        let a = account(3, &receipts);
        assert_eq!(
            (a.received, a.unique, a.lost, a.duplicates, a.unexpected),
            (4, 2, 1, 1, 1)
        );
        assert!(!a.exact());
        assert!(account(2, &receipts[..2]).exact());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = percentiles((1..=1000).collect()).unwrap();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max),
            (500, 900, 990, 999, 1000)
        );
        assert_eq!(percentiles(vec![7]).unwrap().p999, 7);
        assert!(percentiles(Vec::new()).is_none());
    }

    #[test]
    fn in_flight_counts_overlapping_holds() {
        let receipts: Vec<Receipt> = (0..10).map(|i| receipt(i, 0, i * 10)).collect();
        assert_eq!(peak_in_flight(&receipts, 35), 4);
        assert_eq!(peak_in_flight(&receipts, 1), 1);
        assert_eq!(peak_in_flight(&[], 5), 0);
    }

    #[test]
    fn timeline_covers_the_run() {
        let receipts: Vec<Receipt> = (0..100)
            .map(|i| receipt(i, i * 1000, i * 1000 + 50))
            .collect();
        let slices = timeline(&receipts, 0, 5);
        assert_eq!(slices.len(), 5);
        let total: f64 = slices.iter().map(|s| s.throughput * 0.0199).sum();
        assert!((total - 100.0).abs() < 2.0, "{total}");
    }
}
