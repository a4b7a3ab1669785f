//! `--pidfile` (`docs/OPERATIONS.md` "Process management"): a file holding the daemon's
//! pid, locked with `flock(LOCK_EX|LOCK_NB)` for as long as ferry runs.
//!
//! The lock, not the file's existence, says whether ferry is running: a file left by a
//! process that died (SIGKILL, power loss) is not locked, and the next ferry takes it
//! over. The kernel drops the lock when the holder dies, so there is no pid guessing.
//!
//! The lock belongs to the open file description, which `fork` shares: `--daemonize`
//! takes the lock in the starting process (so a second instance is refused on the
//! terminal, exit 2), and the daemon inherits it and writes its own pid with
//! [`Pidfile::write_pid`]. The processes that exit during daemonizing must not run
//! this type's destructor (an unlock through a shared description unlocks for all);
//! `daemon` leaves them through `exit` without unwinding, and the destructor
//! only removes the file in the process that wrote its pid.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How many times [`Pidfile::acquire`] retries when the file it locked was removed or
/// replaced in the meantime (the previous holder exiting at that very moment).
const ATTEMPTS: usize = 3;

/// Why the pidfile could not be taken.
#[derive(Debug)]
pub enum PidfileError {
    /// Another live process holds the lock: ferry is already running. `pid` is what the
    /// file says, `None` when it is empty or unreadable (that process has not written
    /// it yet).
    Running {
        /// The running process's id, as read from the file.
        pid: Option<u32>,
    },
    /// Opening, locking, reading or writing the file failed.
    Io {
        /// What was being done: "open", "lock", "write", …
        doing: &'static str,
        /// The underlying error.
        error: io::Error,
    },
}

impl fmt::Display for PidfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidfileError::Running { pid: Some(pid) } => {
                write!(f, "ferry is already running (pid {pid})")
            }
            PidfileError::Running { pid: None } => write!(
                f,
                "ferry is already running (locked by another process that has not written its pid yet)"
            ),
            PidfileError::Io { doing, error } => write!(f, "cannot {doing}: {error}"),
        }
    }
}

impl std::error::Error for PidfileError {}

fn io_error(doing: &'static str) -> impl FnOnce(io::Error) -> PidfileError {
    move |error| PidfileError::Io { doing, error }
}

/// A locked pidfile; see the module docs. Dropping it removes the file (in the process
/// that wrote its pid) and releases the lock.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    lock: Option<Flock<File>>,
    /// The pid written to the file: only this process removes it.
    owner: u32,
}

impl Pidfile {
    /// Opens or creates `path`, locks it and writes this process's pid. A file locked by
    /// a live process gives [`PidfileError::Running`] with the pid it holds; a file
    /// nobody holds (stale) is taken over.
    pub fn acquire(path: &Path) -> Result<Pidfile, PidfileError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(io_error("open"))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    return Err(PidfileError::Running {
                        pid: read_pid(&mut file),
                    })
                }
                Err((_, errno)) => return Err(io_error("lock")(errno.into())),
            };
            // The previous holder may have removed the file between our open and our
            // lock: then we hold a lock on a file nobody else can see. Lock the file that
            // is at `path` now instead.
            if !still_at_path(&lock, path) && attempt < ATTEMPTS {
                continue;
            }
            let owner = std::process::id();
            write_pid(&mut lock, owner)?;
            return Ok(Pidfile {
                path: path.to_path_buf(),
                lock: Some(lock),
                owner,
            });
        }
    }

    /// Replaces the pid in the file with this process's: after daemonizing, the daemon
    /// (which inherited the lock) writes its own pid.
    pub fn write_pid(&mut self) -> Result<(), PidfileError> {
        let owner = std::process::id();
        if let Some(lock) = self.lock.as_mut() {
            write_pid(lock, owner)?;
        }
        self.owner = owner;
        Ok(())
    }

    /// The pidfile's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file and releases the lock (a clean exit). Removing first, while
    /// still holding the lock, means no other ferry can lock the old file and believe
    /// it owns the path.
    pub fn release(mut self) -> Result<(), PidfileError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), PidfileError> {
        let Some(lock) = self.lock.take() else {
            return Ok(());
        };
        let result = if self.owner == std::process::id() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove")(e)),
                _ => Ok(()),
            }
        } else {
            // Not ours (a copy left in a forked process): leave the file and the lock
            // alone. Forgetting skips the unlock, which would unlock the owner's lock too.
            std::mem::forget(lock);
            return Ok(());
        };
        drop(lock);
        result
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Whether the locked file is still the one at `path` (same device and inode).
fn still_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(ours), Ok(there)) => ours.dev() == there.dev() && ours.ino() == there.ino(),
        _ => false,
    }
}

fn write_pid(file: &mut File, pid: u32) -> Result<(), PidfileError> {
    file.set_len(0).map_err(io_error("truncate"))?;
    file.seek(SeekFrom::Start(0)).map_err(io_error("write"))?;
    file.write_all(format!("{pid}\n").as_bytes())
        .map_err(io_error("write"))?;
    file.sync_data().map_err(io_error("write"))
}

/// The pid a pidfile holds, if it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ferry-pidfile-{tag}-{}", std::process::id()))
    }

    #[test]
    fn writes_our_pid_and_removes_the_file_on_release() {
        let path = temp_path("release");
        let pidfile = Pidfile::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        pidfile.release().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_held_lock_is_running_with_the_pid_from_the_file() {
        let path = temp_path("held");
        let first = Pidfile::acquire(&path).unwrap();
        // flock locks belong to the open file description: a second open in the same
        // process conflicts just as another process would.
        match Pidfile::acquire(&path) {
            Err(PidfileError::Running { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Running, got {other:?}"),
        }
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_file_is_taken_over() {
        let path = temp_path("stale");
        std::fs::write(&path, "999999999\ngarbage").unwrap();
        let pidfile = Pidfile::acquire(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(pidfile);
    }

    #[test]
    fn an_empty_locked_file_reports_no_pid() {
        let path = temp_path("empty");
        let mut first = Pidfile::acquire(&path).unwrap();
        first.lock.as_mut().unwrap().set_len(0).unwrap();
        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(
            matches!(err, PidfileError::Running { pid: None }),
            "{err:?}"
        );
        assert!(err.to_string().contains("already running"));
    }

    #[test]
    fn an_unopenable_path_is_an_io_error_saying_open() {
        let err = Pidfile::acquire(Path::new("/nonexistent-dir/ferry.pid")).unwrap_err();
        assert!(err.to_string().starts_with("cannot open:"), "{err}");
    }
}
