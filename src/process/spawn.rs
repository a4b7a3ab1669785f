//! Spawned pools at the process level (`docs/SEMANTICS.md` "Spawned pools"): the
//! private socket directory, the listening socket ferry binds for a pool, starting one
//! worker process with that socket on fd 0, and signalling its process group.
//!
//! The FastCGI way (`FCGI_LISTENSOCK_FILENO`): the process manager binds the socket and
//! hands it to every worker as fd 0; each worker blocks in `accept` on it, and the kernel
//! gives each connection to one of them. `php-cgi` detects this (fd 0 is a socket with no
//! peer) and serves FastCGI; `ferry responder` without `--listen` does the same. ferry
//! never accepts on the socket itself — it only connects to it, through the same worker
//! path as an `address` pool — and the socket stays blocking: its `O_NONBLOCK` flag lives
//! on the open file description that every worker shares, and `php-cgi` expects to block.
//!
//! Each worker:
//! - runs in its own process group (`process_group(0)`), so a terminal's Ctrl-C reaches
//!   ferry only (ferry drains, then stops the workers itself), and ferry can signal a
//!   worker together with anything it forked;
//! - dies with ferry: `PR_SET_PDEATHSIG` = `SIGKILL`, set between fork and exec; if ferry
//!   died before that (the race the man page describes), `getppid` no longer names ferry
//!   and the child gives up instead of running as an orphan;
//! - gets ferry's environment minus what would mislead it — `NOTIFY_SOCKET`,
//!   `WATCHDOG_*` (it is not the service), `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`
//!   (socket activation meant for ferry), `PHP_FCGI_CHILDREN` (php-cgi would fork its own
//!   children, hiding them from ferry) — plus `PHP_FCGI_MAX_REQUESTS`, always set, since
//!   php-cgi's own default is 500 and 0 means "never recycle";
//! - writes stdout to `/dev/null` (in FastCGI mode the answer goes over the socket) and
//!   stderr to ferry's stderr, so its complaints land in ferry's log.
//!
//! `cgi.force_redirect` does not get in the way: php-cgi checks it only in plain CGI
//! mode, never when serving FastCGI on fd 0 (php-src `sapi/cgi/cgi_main.c`).

use std::fs::DirBuilder;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Environment variables a spawned worker must not inherit (see the module docs).
pub const STRIPPED_ENV: [&str; 7] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "PHP_FCGI_CHILDREN",
];

/// The private directory holding the sockets of spawned pools: `ferry-<pid>` (mode 0700)
/// under `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), `$XDG_RUNTIME_DIR` or
/// `/tmp`. Removed, with whatever is left in it, when dropped.
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Creates the directory. A leftover directory of an earlier process with the same
    /// pid (a reboot, a `kill -9`) is removed first; anything else in the way (a symlink,
    /// a file) is an error, never followed. The directory is then created afresh with
    /// mode 0700, failing if someone re-created the name in between.
    pub fn create() -> io::Result<SocketDir> {
        let path = runtime_base().join(format!("ferry-{}", std::process::id()));
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                std::fs::remove_dir_all(&path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        DirBuilder::new().mode(0o700).create(&path)?;
        Ok(SocketDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A socket path for `pool` not used yet in this directory (a reload that changes a
    /// pool's processes binds a new socket while the old ones finish their work).
    pub fn socket_path(&self, pool: &str) -> PathBuf {
        let first = self.path.join(format!("{pool}.sock"));
        if !first.exists() {
            return first;
        }
        (2u32..)
            .map(|n| self.path.join(format!("{pool}.{n}.sock")))
            .find(|p| !p.exists())
            .unwrap_or(first)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `$RUNTIME_DIRECTORY` (its first entry: systemd may list several), `$XDG_RUNTIME_DIR`,
/// else `/tmp`.
fn runtime_base() -> PathBuf {
    let from = |name: &str| {
        std::env::var_os(name)
            .and_then(|v| {
                v.to_str()
                    .and_then(|s| s.split(':').next())
                    .map(PathBuf::from)
            })
            .filter(|p| p.is_absolute())
    };
    from("RUNTIME_DIRECTORY")
        .or_else(|| from("XDG_RUNTIME_DIR"))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Where a pool's socket is, for ferry to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A unix socket path.
    Unix(PathBuf),
    /// A loopback TCP address (the port actually bound, when 0 was asked for).
    Tcp(SocketAddr),
}

/// The listening socket of one spawned pool. A unix socket's file is removed on drop,
/// if it is still this socket's.
#[derive(Debug)]
pub struct PoolSocket {
    fd: OwnedFd,
    address: SocketAddress,
    /// Device and inode of the unix socket file this socket bound. A reload with an
    /// explicit `listen` path binds the next generation's socket at the same path
    /// (replacing the file) while the old workers finish; the old socket, dropped later,
    /// must then leave the new socket's file alone.
    bound_file: Option<(u64, u64)>,
}

impl PoolSocket {
    /// Binds a unix socket at `path`, replacing a stale socket file (never another kind
    /// of file).
    pub fn bind_unix(path: &Path) -> io::Result<PoolSocket> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        let bound_file = std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))?;
        Ok(PoolSocket {
            fd: listener.into(),
            address: SocketAddress::Unix(path.to_path_buf()),
            bound_file: Some(bound_file),
        })
    }

    /// Binds a TCP socket at `addr` (loopback; the configuration checks that).
    pub fn bind_tcp(addr: SocketAddr) -> io::Result<PoolSocket> {
        let listener = TcpListener::bind(addr)?;
        let address = SocketAddress::Tcp(listener.local_addr()?);
        Ok(PoolSocket {
            fd: listener.into(),
            address,
            bound_file: None,
        })
    }

    /// Where to connect.
    pub fn address(&self) -> &SocketAddress {
        &self.address
    }
}

impl Drop for PoolSocket {
    fn drop(&mut self) {
        let SocketAddress::Unix(path) = &self.address else {
            return;
        };
        let still_ours = std::fs::symlink_metadata(path)
            .is_ok_and(|m| Some((m.dev(), m.ino())) == self.bound_file);
        if still_ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The program a spawned pool's `command[0]` names: `ferry` is this very binary; anything
/// else is left to `exec` (a bare name is looked up in `PATH`).
pub fn program_path(program: &str) -> io::Result<PathBuf> {
    if program == "ferry" {
        std::env::current_exe()
    } else {
        Ok(PathBuf::from(program))
    }
}

/// This process's own executable, valid even once its file was deleted or replaced.
const SELF_EXE: &str = "/proc/self/exe";

/// Starts one worker of a spawned pool: `command` with `socket` on fd 0 (see the module
/// docs for its process group, environment and death signal). A `command[0]` of exactly
/// `ferry` means this very binary, so a configuration can say `["ferry", "responder"]`
/// without knowing where ferry is installed.
pub fn start(command: &[String], socket: &PoolSocket, max_requests: u32) -> io::Result<Child> {
    let Some((program, args)) = command.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = if program == "ferry" {
        // Not `current_exe()`: after a package upgrade replaced the binary, that path
        // names the new file (or a deleted one), while `/proc/self/exe` — resolved in the
        // forked child, a copy of this process — is the very binary that runs, deleted
        // or not. argv[0] stays `ferry` for `ps` and the worker's own messages.
        let mut cmd = Command::new(SELF_EXE);
        cmd.arg0("ferry");
        cmd
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .stdin(Stdio::from(socket.fd.try_clone()?))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .env("PHP_FCGI_MAX_REQUESTS", max_requests.to_string());
    for name in STRIPPED_ENV {
        cmd.env_remove(name);
    }
    let ferry = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes three system calls (close_range,
    // prctl, getppid) and builds errors from raw errno values, without allocating or
    // taking locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            // Descriptors ferry itself inherited without close-on-exec (a service
            // manager's, a shell's) are not the worker's business: mark every one above
            // stderr close-on-exec (fd 0 is the pool's socket, already in place). A
            // kernel before 5.11 refuses the flag; the worker then inherits them, as
            // before — not worth failing the start.
            let _ = nix::libc::syscall(
                nix::libc::SYS_close_range,
                3u32,
                u32::MAX,
                nix::libc::CLOSE_RANGE_CLOEXEC,
            );
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
            // ferry may have died between fork and prctl: then no signal will come.
            if nix::unistd::getppid() != ferry {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// True when child `pid` has ended, *without* reaping it: while it is a zombie its pid
/// (and so its process group id) cannot be reused, so its group can still be signalled
/// safely. Reap it afterwards (`Child::try_wait`).
pub fn has_ended(pid: u32) -> io::Result<bool> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(true);
    };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(raw)), flags) {
        Ok(WaitStatus::StillAlive) => Ok(false),
        Ok(_) => Ok(true),
        Err(errno) => Err(errno.into()),
    }
}

/// Sends `signal` to the process group led by `pid` (a worker and whatever it forked).
/// A group that no longer exists is not an error.
pub fn signal_group(pid: u32, signal: Signal) -> io::Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(());
    };
    match kill(Pid::from_raw(-raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// How a worker ended, for the log: `exited with status 0`, `killed by signal 9
/// (SIGKILL)`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(number) => match Signal::try_from(number) {
            Ok(signal) => format!("killed by signal {number} ({})", signal.as_str()),
            Err(_) => format!("killed by signal {number}"),
        },
        None => format!("ended ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_with_status_or_signal() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn a_unix_socket_file_leaves_with_its_socket() {
        let dir = std::env::temp_dir().join(format!("ferry-spawn-test-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("p.sock");
        let socket = PoolSocket::bind_unix(&path).unwrap();
        assert!(path.exists());
        // A stale file (its socket gone without cleaning up) is replaced, not an error.
        std::mem::forget(socket);
        let again = PoolSocket::bind_unix(&path).unwrap();
        // The next generation binds the same path while the old socket still runs:
        // dropping the old one leaves the new one's file.
        let next = PoolSocket::bind_unix(&path).unwrap();
        drop(again);
        assert!(path.exists(), "the newer socket's file stays");
        drop(next);
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_tcp_socket_reports_the_port_it_got() {
        let socket = PoolSocket::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let SocketAddress::Tcp(addr) = socket.address() else {
            panic!("tcp")
        };
        assert_ne!(addr.port(), 0);
    }
}
