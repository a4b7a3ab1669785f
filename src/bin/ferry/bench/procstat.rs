//! CPU time and memory of a process, from `/proc`.
//!
//! CPU: the sum of `/proc/<pid>/task/*/schedstat`'s first field (nanoseconds on CPU,
//! every thread), which is exact where `/proc/<pid>/stat`'s utime+stime count 10 ms
//! ticks — too coarse for a run of a second. The ticks are the fallback when schedstat
//! is missing (a kernel without `CONFIG_SCHED_INFO`).

/// CPU time used so far by every thread of `pid`, µs.
pub fn cpu_us(pid: u32) -> Option<u64> {
    schedstat_ns(pid)
        .map(|ns| ns / 1000)
        .or_else(|| stat_ticks(pid).map(|ticks| ticks * 1_000_000 / clock_ticks()))
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn stat_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `USER_HZ`: Linux reports `/proc` times in ticks of 1/100 s whatever the kernel's
/// own `HZ` (nix exposes `sysconf` only behind a feature ferry does not enable).
fn clock_ticks() -> u64 {
    100
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let before = cpu_us(pid).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_us(pid).unwrap() >= before);
        assert!(stat_ticks(pid).is_some());
        assert!(status_kib(pid, "VmHWM").unwrap() >= status_kib(pid, "VmRSS").unwrap() / 2);
    }
}
