//! Process concerns (SPEC "Process"; issue 4): the pidfile lock, daemonizing and the
//! systemd notify protocol.
//!
//! These run in `main` before the reactor starts, while the process still has one
//! thread: daemonizing forks, and the notifier removes its variables from the
//! environment, and neither is sound once other threads exist.
//!
//! # Layout
//! - `pidfile.rs`: `--pidfile`, created and `flock`ed; a live holder means "already
//!   running", a stale file is taken over, the file is removed on a clean exit.
//! - `daemon.rs`: `--daemonize`: double fork, `setsid`, `chdir /`, stdio to `/dev/null`;
//!   the starting process waits until the daemon says it is up.
//! - `notify.rs`: `NOTIFY_SOCKET` datagrams (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, …)
//!   and the watchdog interval; sans-clock, the reactor's timer drives the watchdog.

pub mod daemon;
pub mod notify;
pub mod pidfile;

pub use daemon::{daemonize, DaemonError, Detached};
pub use notify::{Notifier, NotifyError};
pub use pidfile::{Pidfile, PidfileError};
