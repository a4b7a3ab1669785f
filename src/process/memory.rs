//! Memory at rest (`docs/OPERATIONS.md`, "Memory"): once ferry is up, the code that only
//! start-up ran (argument and configuration parsing, the command-line tools that share
//! the binary, the dynamic loader's work) need not stay mapped into the process.
//!
//! [`release_startup_code`] drops the page-table entries of every read-only, executable,
//! file-backed mapping (the ferry binary's text and the shared libraries'). Nothing is
//! lost: those pages were never written, so the next instruction fetched from one of
//! them faults it back in from the page cache — a minor fault, once per page that the
//! running loop actually uses. What the idle process keeps resident is then its working
//! set: well under 2 MiB instead of about 3.5 MiB, most of which was code run once.
//! Writable or relocated mappings (data, RELRO, heap, stacks) are never touched: dropping
//! them would lose what was written to them.

use std::io;

use nix::sys::mman::{madvise, MmapAdvise};

/// Drops the resident pages of read-only executable file mappings; returns how many
/// bytes of mappings were advised. See the module docs.
pub fn release_startup_code() -> io::Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut released = 0;
    for (start, end) in maps.lines().filter_map(executable_file_mapping) {
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        let len = end - start;
        // SAFETY: `addr..addr+len` is a whole mapping the kernel listed as private,
        // read-only and executable, backed by a file: its pages were never written
        // (x86-64 PIE code has no text relocations), so MADV_DONTNEED only discards
        // page-table entries and the next access refaults the same bytes from the file.
        // No Rust reference points into it other than code being executed, which the
        // kernel refaults transparently.
        #[allow(unsafe_code)]
        let advised = unsafe { madvise(addr.cast(), len, MmapAdvise::MADV_DONTNEED) };
        if advised.is_ok() {
            released += len;
        }
    }
    Ok(released)
}

/// `start-end r-xp offset dev inode /path`: the bounds of a private, read-only,
/// executable mapping of a file (the vDSO and anonymous mappings have no path).
fn executable_file_mapping(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3)?;
    if perms != "r-xp" || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_read_only_executable_file_mappings_are_picked() {
        let text = "55d0c0a00000-55d0c0b00000 r-xp 00001000 08:01 123 /usr/bin/ferry";
        assert_eq!(
            executable_file_mapping(text),
            Some((0x55d0c0a00000, 0x55d0c0b00000))
        );
        for other in [
            "55d0c0b00000-55d0c0b10000 r--p 00101000 08:01 123 /usr/bin/ferry",
            "55d0c0b10000-55d0c0b20000 rw-p 00111000 08:01 123 /usr/bin/ferry",
            "7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]",
            "7f0000000000-7f0000001000 r-xp 00000000 00:00 0",
            "7f0000000000-7f0000001000 r-xs 00000000 08:01 9 /dev/shm/x",
        ] {
            assert_eq!(executable_file_mapping(other), None, "{other}");
        }
    }

    #[test]
    fn releasing_keeps_the_process_running() {
        let released = release_startup_code().unwrap();
        assert!(released > 0);
        // Code runs on: every page used from here on is faulted back in.
        assert_eq!(format!("{}", 40 + 2), "42");
    }
}
