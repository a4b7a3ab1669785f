//! Process management (`docs/OPERATIONS.md` "Process management", "systemd") against the
//! real `ferry run` binary: the `--pidfile` lock, `--daemonize`, and `NOTIFY_SOCKET` with a
//! unix datagram socket standing in for systemd. Each ferry reads a unique channel on the
//! Redis at 127.0.0.1:6379 and has a pool at a unix socket that does not exist: no php-fpm
//! is needed, nothing is sent.

#[path = "support/ferry.rs"]
mod ferry_proc;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_proc::{temp_dir, unique, Ferry};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

const EXIT: Duration = Duration::from_secs(30);

/// Writes a config to `dir` and returns its path.
fn config(dir: &Path) -> PathBuf {
    let config = json!({
        "control": { "listen": null },
        "pools": { "php": { "address": format!("unix:{}", dir.join("no-fpm.sock").display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                      "channels": [unique("process")],
                      "job": { "pool": "php", "script": "/srv/worker.php" } }]
    });
    let path = dir.join("ferry.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// Runs `ferry run --config CONFIG ARGS…` to completion, without `NOTIFY_SOCKET` unless
/// `notify` gives one.
fn ferry_output(config: &Path, args: &[&str], notify: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    if let Some(socket) = notify {
        command.env("NOTIFY_SOCKET", socket);
    }
    command.output().expect("run ferry")
}

/// Waits until `condition` holds; panics saying `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_in(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// A process that is not our child: alive until its `/proc` entry is gone or a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Kills a daemon left behind by a failing test.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
        }
    }
}

#[test]
fn a_second_instance_exits_2_naming_the_running_pid_and_sigterm_removes_the_pidfile() {
    let dir = temp_dir("ferry-pidfile-second");
    let config = config(&dir);
    let pidfile = dir.join("ferry.pid");
    let mut first = Ferry::start_args(
        &dir,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
    );
    wait_until("the pidfile", EXIT, || {
        pid_in(&pidfile) == Some(first.pid())
    });
    first.wait_for_log("source events: subscribed", EXIT);

    let second = ferry_output(&config, &["--pidfile", pidfile.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("already running (pid {})", first.pid())),
        "{stderr}"
    );
    // The refused instance left the running one's pidfile alone.
    assert_eq!(pid_in(&pidfile), Some(first.pid()));

    first.signal("TERM");
    let status = first.wait(EXIT);
    assert_eq!(status.code(), Some(0), "{}", first.log());
    assert!(!pidfile.exists(), "the pidfile survived a clean exit");
}

#[test]
fn a_stale_pidfile_of_a_dead_process_is_taken_over() {
    let dir = temp_dir("ferry-pidfile-stale");
    let config = config(&dir);
    let pidfile = dir.join("ferry.pid");
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(&pidfile, format!("{dead_pid}\n")).unwrap();

    let mut ferry = Ferry::start_args(
        &dir,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
    );
    wait_until("ferry's pid in the stale pidfile", EXIT, || {
        pid_in(&pidfile) == Some(ferry.pid())
    });
    // The pidfile is written before the loop installs its signal handlers.
    ferry.wait_for_log("source events: subscribed", EXIT);
    ferry.signal("TERM");
    assert_eq!(ferry.wait(EXIT).code(), Some(0), "{}", ferry.log());
    assert!(!pidfile.exists());
}

#[test]
fn daemonize_returns_at_once_and_the_daemon_runs_until_sigterm() {
    let dir = temp_dir("ferry-daemonize");
    let config = config(&dir);
    let pidfile = dir.join("ferry.pid");
    let log = dir.join("ferry.log");
    let args = [
        "--pidfile",
        pidfile.to_str().unwrap(),
        "--daemonize",
        "--log-file",
        log.to_str().unwrap(),
    ];
    // `output()` returns once the starting process exited and closed its stdout and
    // stderr: the daemon holds neither.
    let started = ferry_output(&config, &args, None);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    // The pidfile is written before the starting process returns.
    let pid = pid_in(&pidfile).expect("the daemon's pid in the pidfile");
    let _guard = KillOnDrop(pid);
    assert!(alive(pid), "the daemon is not running");
    assert_ne!(pid, std::process::id());

    // Detached: its own session, in `/`, stdio on /dev/null.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let (ppid, session) = (fields[1], fields[3]);
    assert_ne!(
        session,
        nix::unistd::getsid(None).unwrap().to_string(),
        "same session"
    );
    assert_ne!(session, pid.to_string(), "the daemon is a session leader");
    assert_ne!(ppid, std::process::id().to_string());
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    for fd in 0..=2 {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(),
            Path::new("/dev/null"),
            "fd {fd}"
        );
    }

    // The daemon holds the lock it inherited: a second daemon is refused on the
    // terminal, naming the daemon's pid.
    let second = ferry_output(&config, &args, None);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("(pid {pid})")), "{stderr}");

    wait_until("the daemon to subscribe", EXIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("source events: subscribed"))
    });
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    wait_until("the daemon to exit", EXIT, || !alive(pid));
    assert!(!pidfile.exists(), "the daemon left its pidfile");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains(&format!("daemonized: pid {pid}")), "{log}");
    assert!(log.contains("drained; exiting"), "{log}");
}

#[test]
fn daemonize_under_notify_socket_is_a_usage_error() {
    let dir = temp_dir("ferry-daemonize-notify");
    let config = config(&dir);
    let pidfile = dir.join("ferry.pid");
    let out = ferry_output(
        &config,
        &["--daemonize", "--pidfile", pidfile.to_str().unwrap()],
        Some("/run/systemd/notify"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--daemonize") && stderr.contains("NOTIFY_SOCKET"),
        "{stderr}"
    );
    assert!(!pidfile.exists(), "a refused start created the pidfile");
}

/// Starts `ferry run` with `NOTIFY_SOCKET=address`: `receiver` gets `READY=1`, and
/// SIGTERM drains it to exit 0.
fn ready_through(dir: &Path, receiver: &UnixDatagram, address: &str) {
    let config = config(dir);
    let log = dir.join("ferry.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", address)
        // Watchdog every 50 ms (half of WATCHDOG_USEC), from the loop's own timer.
        .env("WATCHDOG_USEC", "100000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    receiver.set_read_timeout(Some(EXIT)).unwrap();
    let mut buf = [0u8; 512];
    let got = receiver.recv(&mut buf).map(|n| buf[..n].to_vec());
    // Wait for the subscription, so the drain has a connected source to report on.
    wait_until("the source to subscribe", EXIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("source events: subscribed"))
    });
    // Long enough for a few watchdog periods.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let got = got.unwrap_or_else(|e| panic!("no datagram ({e}); log:\n{log}"));
    assert_eq!(String::from_utf8_lossy(&got), "READY=1", "{log}");
    // Then STATUS= lines as sources connect, and STOPPING=1 when the drain starts.
    let mut later = Vec::new();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    while let Ok(n) = receiver.recv(&mut buf) {
        later.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(later.iter().any(|m| m == "STOPPING=1"), "{later:?}");
    assert!(later.iter().any(|m| m == "WATCHDOG=1"), "{later:?}");
    assert!(
        later
            .iter()
            .any(|m| m.starts_with("STATUS=1/1 sources connected")),
        "{later:?}"
    );
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn notify_socket_path_receives_ready() {
    let dir = temp_dir("ferry-notify-path");
    let socket = dir.join("notify.sock");
    let receiver = UnixDatagram::bind(&socket).unwrap();
    ready_through(&dir, &receiver, socket.to_str().unwrap());
}

#[test]
fn notify_socket_abstract_name_receives_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let dir = temp_dir("ferry-notify-abstract");
    let name = unique("ferry-notify");
    let receiver =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    ready_through(&dir, &receiver, &format!("@{name}"));
}
