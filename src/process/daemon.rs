//! `--daemonize` (`docs/OPERATIONS.md` "Process management"): detach from the terminal the
//! classic way — fork, `setsid`, fork again, `chdir /`, stdio to `/dev/null`.
//!
//! The first fork lets the starting process return to the shell; `setsid` leaves the
//! terminal's session; the second fork makes sure the daemon, no longer a session
//! leader, can never acquire a controlling terminal again. `chdir /` keeps the daemon
//! from pinning a mount point, so every path ferry uses later must be absolute (the
//! caller makes `--pidfile` and `--log-file` absolute first).
//!
//! The starting process does not exit as soon as it has forked: it waits on a pipe
//! until the daemon calls [`Detached::ready`] (after writing its pid to the pidfile), so
//! a script that runs `ferry run --daemonize --pidfile P` can read `P` as soon as the
//! command returns. It exits 0 then, or 1 if the daemon died before saying so.
//!
//! This must run before any other thread exists (no reactor, no resolver): `fork` in a
//! multi-threaded process copies only the calling thread, and the child may then
//! deadlock on a lock another thread held. [`daemonize`] checks `/proc/self/task`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use nix::fcntl::OFlag;
use nix::unistd::{self, ForkResult};

/// Why the process could not detach.
#[derive(Debug)]
pub enum DaemonError {
    /// Other threads exist already: forking now would not be sound.
    Threads(usize),
    /// A system call failed.
    Sys {
        /// The call: "pipe", "fork", "setsid", "chdir", "open /dev/null", "dup2".
        call: &'static str,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Threads(n) => {
                write!(
                    f,
                    "cannot daemonize: {n} threads already run (fork needs one)"
                )
            }
            DaemonError::Sys { call, error } => write!(f, "cannot daemonize: {call}: {error}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn sys(call: &'static str) -> impl FnOnce(nix::errno::Errno) -> DaemonError {
    move |errno| DaemonError::Sys {
        call,
        error: errno.into(),
    }
}

/// Held by the daemon until it is up; see [`Detached::ready`].
#[derive(Debug)]
pub struct Detached {
    /// The write end of the pipe the starting process waits on.
    ready: File,
}

/// The byte the daemon sends when it is up.
const READY: u8 = b'R';

impl Detached {
    /// Tells the starting process that the daemon is up (its pid is in the pidfile), so
    /// it exits 0. Dropping a `Detached` without calling this makes it exit 1.
    pub fn ready(mut self) -> io::Result<()> {
        self.ready.write_all(&[READY])
    }
}

/// Detaches the process; see the module docs. Returns only in the daemon. The starting
/// process and the intermediate child exit inside this call without running any
/// destructor (so a [`super::Pidfile`] they hold a copy of is left alone).
pub fn daemonize() -> Result<Detached, DaemonError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(DaemonError::Threads(threads));
    }
    // Close-on-exec, so no worker ferry spawns later holds the pipe open.
    let (read_end, write_end) = unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    match fork_single_threaded().map_err(sys("fork"))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            // Reap the intermediate child (it exits right after the second fork).
            let _ = nix::sys::wait::waitpid(child, None);
            let mut byte = [0u8; 1];
            let code = match File::from(read_end).read(&mut byte) {
                Ok(1) if byte[0] == READY => 0,
                _ => {
                    eprintln!("ferry: the daemon exited before it was up (see --log-file)");
                    1
                }
            };
            std::process::exit(code);
        }
        ForkResult::Child => {}
    }
    drop(read_end);
    unistd::setsid().map_err(sys("setsid"))?;
    match fork_single_threaded().map_err(sys("fork"))? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    unistd::chdir("/").map_err(sys("chdir"))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|error| DaemonError::Sys {
            call: "open /dev/null",
            error,
        })?;
    for fd in 0..=2 {
        unistd::dup2(null.as_raw_fd(), fd).map_err(sys("dup2"))?;
    }
    Ok(Detached {
        ready: File::from(write_end),
    })
}

/// `fork(2)`, for a process known to have a single thread.
#[allow(unsafe_code)]
fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: nix marks fork unsafe because, in a multi-threaded process, the child may
    // only call async-signal-safe functions until it execs. `daemonize` checked that this
    // process has one thread (it runs in `main` before the reactor, the resolver or any
    // other thread starts), so the child is a full copy of a consistent process and may
    // do anything, including allocate.
    unsafe { unistd::fork() }
}

/// The number of threads in this process, from `/proc/self/task`; 1 when unknown.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |entries| entries.count().max(1))
}
