//! Process concerns (`docs/OPERATIONS.md` "Process management", `docs/SEMANTICS.md`
//! "systemd notify" and "Spawned pools"): the pidfile lock, daemonizing, the systemd
//! notify protocol and the worker processes of spawned pools.
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
//! - `spawn.rs`: spawned pools: the private socket directory, a pool's listening socket,
//!   starting a worker with it on fd 0, signalling its process group. Unlike the others
//!   this runs inside the reactor; the engine (`engine/spawned.rs`) decides when to
//!   start, restart and stop.
//! - `memory.rs`: once ferry is up, the code only start-up ran is let go of.

pub mod daemon;
pub mod memory;
pub mod notify;
pub mod pidfile;
pub mod spawn;

pub use daemon::{daemonize, DaemonError, Detached};
pub use notify::{Notifier, NotifyError};
pub use pidfile::{Pidfile, PidfileError};
