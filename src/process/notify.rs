//! systemd's notify protocol (`docs/SEMANTICS.md` "systemd notify", `sd_notify(3)`):
//! datagrams such as `READY=1` sent to the unix socket named by `NOTIFY_SOCKET` — a
//! filesystem path, or an `@name` in the abstract namespace.
//!
//! [`Notifier::from_env`] reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and
//! removes them from the environment, as `sd_notify(…, unset_environment=1)` does, so
//! no process ferry spawns (spawned pools) believes it is the service. It must run
//! before other threads start: changing the environment races with threads reading it.
//!
//! Sans-clock: [`Notifier::watchdog_interval`] says how often `WATCHDOG=1` is due and the
//! reactor's timer calls [`Notifier::watchdog`]; nothing here sleeps or spawns. The
//! socket is nonblocking, so a stalled supervisor can never stall the reactor; a datagram
//! that would block is reported as an error for the caller to log.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variables the protocol uses.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Why a notifier could not be made or a notification not sent.
#[derive(Debug)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an `@abstract` name (systemd also
    /// knows `vsock:`, which ferry does not speak).
    BadAddress(String),
    /// Creating the socket or sending failed (`WouldBlock` when the supervisor's socket
    /// buffer is full).
    Io(io::Error),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadAddress(value) => write!(
                f,
                "NOTIFY_SOCKET={value:?} is neither an absolute path nor an @abstract name"
            ),
            NotifyError::Io(e) => write!(f, "NOTIFY_SOCKET: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {}

impl From<io::Error> for NotifyError {
    fn from(e: io::Error) -> Self {
        NotifyError::Io(e)
    }
}

/// Whether `NOTIFY_SOCKET` is set to something: `--daemonize` refuses to run then.
pub fn notify_socket_set() -> bool {
    std::env::var_os(NOTIFY_SOCKET).is_some_and(|v| !v.is_empty())
}

/// A connection to the service manager; see the module docs.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for, `None` when `NOTIFY_SOCKET` is unset or empty.
    /// Removes the three variables from the environment (see the module docs), so call
    /// it once, before any thread starts.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        let socket = std::env::var_os(NOTIFY_SOCKET);
        let usec = std::env::var_os(WATCHDOG_USEC);
        let pid = std::env::var_os(WATCHDOG_PID);
        for name in [NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID] {
            std::env::remove_var(name);
        }
        let Some(socket) = socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let watchdog = watchdog_interval(
            usec.as_deref().and_then(OsStr::to_str),
            pid.as_deref().and_then(OsStr::to_str),
            std::process::id(),
        );
        Notifier::connect(&socket, watchdog).map(Some)
    }

    /// A notifier sending to `address` (a path or `@abstract`), with the watchdog
    /// interval `watchdog`.
    pub fn connect(address: &OsStr, watchdog: Option<Duration>) -> Result<Notifier, NotifyError> {
        let target = parse_address(address)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            target,
            watchdog,
        })
    }

    /// How often `WATCHDOG=1` is due: half of `WATCHDOG_USEC`, when systemd enabled the
    /// watchdog for this process. The reactor arms a timer with it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one datagram of `KEY=value` lines as it is.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        self.socket.send_to_addr(state.as_bytes(), &self.target)?;
        Ok(())
    }

    /// `READY=1`: the config is loaded and the listeners are bound (ferry does not wait
    /// for brokers; `docs/SEMANTICS.md` "systemd notify"). Also sent after a reload.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send("READY=1")
    }

    /// `RELOADING=1`: a SIGHUP reload starts; [`Notifier::ready`] ends it.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.send("RELOADING=1")
    }

    /// `STOPPING=1`: the drain starts.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1")
    }

    /// `STATUS=<line>`: a one-line summary (`systemctl status` shows it). Line breaks
    /// would end the field, so they become spaces.
    pub fn status(&self, line: &str) -> Result<(), NotifyError> {
        self.send(&status_datagram(line))
    }

    /// `WATCHDOG=1`: the loop is alive; due every [`Notifier::watchdog_interval`].
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send("WATCHDOG=1")
    }
}

fn status_datagram(line: &str) -> String {
    let line: String = line
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={line}")
}

/// `NOTIFY_SOCKET`'s value as a socket address: `@name` is abstract (the `@` stands for
/// the leading NUL byte), anything else must be an absolute path.
fn parse_address(value: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = value.as_bytes();
    let bad = || NotifyError::BadAddress(value.to_string_lossy().into_owned());
    match bytes.split_first() {
        Some((b'@', name)) if !name.is_empty() => {
            SocketAddr::from_abstract_name(name).map_err(|_| bad())
        }
        Some((b'/', _)) => SocketAddr::from_pathname(value).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// Half of `WATCHDOG_USEC` when the watchdog is meant for `our_pid`: `WATCHDOG_PID` unset
/// or equal to it (systemd sets it so a child that inherited the variables does not
/// answer for its parent).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_half_of_usec_for_us_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn addresses_are_absolute_paths_or_abstract_names() {
        let path = parse_address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_name = parse_address(OsStr::new("@ferry/notify")).unwrap();
        assert_eq!(abstract_name.as_abstract_name(), Some(&b"ferry/notify"[..]));
        for bad in ["relative/path", "@", "", "vsock:2:1234"] {
            assert!(
                matches!(
                    parse_address(OsStr::new(bad)),
                    Err(NotifyError::BadAddress(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_datagram("a\nb\r\nc"), "STATUS=a b  c");
    }

    fn received(receiver: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        let name = format!("ferry-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::connect(OsStr::new(&format!("@{name}")), None).unwrap();
        notifier.ready().unwrap();
        notifier.status("2 sources connected").unwrap();
        notifier.reloading().unwrap();
        notifier.stopping().unwrap();
        notifier.watchdog().unwrap();
        let got: Vec<String> = (0..5).map(|_| received(&receiver)).collect();
        assert_eq!(
            got,
            [
                "READY=1",
                "STATUS=2 sources connected",
                "RELOADING=1",
                "STOPPING=1",
                "WATCHDOG=1"
            ]
        );
    }

    #[test]
    fn datagrams_reach_a_path_socket() {
        let path = std::env::temp_dir().join(format!("ferry-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.as_os_str(), Some(Duration::from_secs(1))).unwrap();
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(1)));
        notifier.ready().unwrap();
        assert_eq!(received(&receiver), "READY=1");
        let _ = std::fs::remove_file(&path);
    }
}
