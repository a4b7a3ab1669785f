//! The standard `process_*` metrics (`docs/OPERATIONS.md` "Process"), read from `/proc`
//! when a scrape asks for them. This is the only part of `metrics` that does I/O: a
//! handful of small reads of procfs files, which never block on Linux.
//!
//! The parsers are pure functions over the files' text, tested on fixtures; [`read`]
//! only fetches the text. Each value is read on its own, so one unreadable file (a
//! hardened sandbox hiding `/proc/self/fd`) costs that sample only.
//!
//! [`read`]: ProcessStats::read

use std::fs;

use nix::sys::resource::{getrlimit, Resource};

/// Clock ticks per second of `/proc/<pid>/stat` times. The kernel reports them in
/// USER_HZ, which is 100 on every Linux architecture ferry builds for (the value
/// Prometheus's own procfs reader assumes); `sysconf(_SC_CLK_TCK)` would need a nix
/// feature ferry does not enable.
const USER_HZ: f64 = 100.0;

/// One reading of the process metrics; `None` where the value could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time (`process_cpu_seconds_total`).
    pub cpu_seconds: Option<f64>,
    /// Resident set size (`process_resident_memory_bytes`).
    pub resident_memory_bytes: Option<u64>,
    /// Open file descriptors (`process_open_fds`).
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE` (`process_max_fds`).
    pub max_fds: Option<u64>,
    /// Start time since the Unix epoch (`process_start_time_seconds`).
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads this process's figures from `/proc/self` (and the boot time from
    /// `/proc/stat`).
    pub fn read() -> ProcessStats {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let times = stat.as_deref().and_then(parse_stat);
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_boot_time);
        ProcessStats {
            cpu_seconds: times.map(|t| t.cpu_seconds()),
            resident_memory_bytes: fs::read_to_string("/proc/self/status")
                .ok()
                .as_deref()
                .and_then(parse_resident_bytes),
            open_fds: count_open_fds(),
            max_fds: getrlimit(Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft),
            start_time_seconds: times.zip(boot_time).map(|(t, boot)| t.start_time(boot)),
        }
    }
}

/// The fields of `/proc/<pid>/stat` that the metrics use, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    /// Field 14, `utime`.
    pub user_ticks: u64,
    /// Field 15, `stime`.
    pub system_ticks: u64,
    /// Field 22, `starttime`: ticks after boot.
    pub start_ticks: u64,
}

impl StatTimes {
    /// CPU time in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        (self.user_ticks + self.system_ticks) as f64 / USER_HZ
    }

    /// Start time since the epoch, given the boot time since the epoch.
    pub fn start_time(&self, boot_time: u64) -> f64 {
        boot_time as f64 + self.start_ticks as f64 / USER_HZ
    }
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<StatTimes> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts with field 3 (state): field n is at index n - 3.
    let mut fields = rest.split_ascii_whitespace();
    let mut nth = |skip: usize| fields.nth(skip)?.parse::<u64>().ok();
    let user_ticks = nth(14 - 3)?;
    let system_ticks = nth(0)?;
    let start_ticks = nth(22 - 15 - 1)?;
    Some(StatTimes {
        user_ticks,
        system_ticks,
        start_ticks,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The resident set size in bytes from `/proc/<pid>/status` (`VmRSS:  1234 kB`).
pub fn parse_resident_bytes(text: &str) -> Option<u64> {
    let value = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib = value
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

/// Entries of `/proc/self/fd`, less the one the listing itself holds open.
fn count_open_fds() -> Option<u64> {
    let entries = fs::read_dir("/proc/self/fd").ok()?;
    let count = entries.filter(|entry| entry.is_ok()).count() as u64;
    Some(count.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name that holds `) (` to trip a naive split.
    const STAT: &str = "4242 (fer) (ry x) S 1 4242 4242 0 -1 4194560 1093 0 0 0 \
        250 125 0 0 20 0 1 0 98765 12345678 900 18446744073709551615 1 1 0 0 0 0 0 \
        4096 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let times = parse_stat(STAT).unwrap();
        assert_eq!(
            times,
            StatTimes {
                user_ticks: 250,
                system_ticks: 125,
                start_ticks: 98765
            }
        );
        assert_eq!(times.cpu_seconds(), 3.75);
        assert_eq!(times.start_time(1_700_000_000), 1_700_000_987.65);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("4242 (ferry) S 1 4242"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn boot_time_and_rss() {
        let stat = "cpu  1 2 3\nintr 5\nctxt 9\nbtime 1700000000\nprocesses 7\n";
        assert_eq!(parse_boot_time(stat), Some(1_700_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        let status = "Name:\tferry\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_resident_bytes(status), Some(5120 * 1024));
        assert_eq!(parse_resident_bytes("Name:\tferry\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.is_some_and(|b| b > 0));
        // stdin, stdout and stderr at least.
        assert!(stats.open_fds.is_some_and(|n| n >= 3));
        assert!(stats
            .max_fds
            .is_some_and(|n| n >= stats.open_fds.unwrap_or(0)));
        assert!(stats.cpu_seconds.is_some());
        assert!(stats
            .start_time_seconds
            .is_some_and(|t| t > 1_000_000_000.0));
    }
}
