//! Runs the real `ferry` binary for integration tests: a config file in a temp dir,
//! stderr captured to a log file, SIGTERM/SIGKILL helpers, killed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or earlier run) uses: for queues and channels.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temp dir, named with [`unique`]`(prefix)`, for a
/// test's configs, sockets and logs.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running ferry.
pub struct Ferry {
    child: Option<Child>,
    log: PathBuf,
}

impl Ferry {
    /// Starts `ferry run --config <file>` with `config` (JSON) written to `dir`.
    pub fn start(dir: &Path, config: &serde_json::Value) -> Ferry {
        let path = dir.join(format!(
            "ferry-{}.json",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        Ferry::start_args(
            dir,
            &[
                "run",
                "--config",
                path.to_str().unwrap(),
                "--log-level",
                "debug",
            ],
        )
    }

    /// Starts the ferry binary with `args`.
    pub fn start_args(dir: &Path, args: &[&str]) -> Ferry {
        Ferry::start_args_env(dir, args, &[])
    }

    /// Starts the ferry binary with `args` and extra environment variables.
    pub fn start_args_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Ferry {
        Ferry::start_exe(Path::new(env!("CARGO_BIN_EXE_ferry")), dir, args, env)
    }

    /// Starts the ferry binary found at `exe` (a copy, say) with `args` and extra
    /// environment variables.
    pub fn start_exe(exe: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Ferry {
        let log = dir.join(format!(
            "ferry-{}.log",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ferry");
        Ferry {
            child: Some(child),
            log,
        }
    }

    /// What ferry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ferry never logged {needle:?}; log:\n{}", self.log());
    }

    /// Waits until the log contains `needle` at least `count` times (a second reconnect,
    /// a third reload); panics with `what` and the log after `timeout`.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log().matches(needle).count() < count {
            assert!(Instant::now() < deadline, "{what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal by name (`TERM`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "ferry did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `ferry publish` with `args`; panics unless it exits 0.
pub fn publish(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("publish")
        .args(args)
        .output()
        .expect("run ferry publish");
    assert!(
        output.status.success(),
        "ferry publish {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PHP worker that appends `{"n": …, "attempt": …, …}` to `log` (one JSON line per
/// request) and answers with the status in POST field `status` (default 200).
pub fn logging_worker(log: &Path) -> String {
    format!(
        r#"<?php
$line = json_encode([
    'post' => $_POST,
    'attempt' => (int)($_SERVER['FERRY_ATTEMPT'] ?? 0),
    'source' => $_SERVER['FERRY_SOURCE'] ?? null,
    'channel' => $_SERVER['FERRY_CHANNEL'] ?? null,
    'pattern' => $_SERVER['FERRY_PATTERN'] ?? null,
    'message_id' => $_SERVER['FERRY_MESSAGE_ID'] ?? null,
]);
file_put_contents({log:?}, $line . "\n", FILE_APPEND | LOCK_EX);
if (isset($_POST['status'])) {{ http_response_code((int)$_POST['status']); }}
if (isset($_POST['action'])) {{ header('X-Ferry-Action: ' . $_POST['action']); }}
if (isset($_POST['sleep_ms'])) {{ usleep((int)$_POST['sleep_ms'] * 1000); }}
echo "ok";
"#,
        log = log.display().to_string()
    )
}

/// The JSON lines a logging worker wrote. A worker may be appending while we read: a
/// last line without its newline is not complete yet and is left for the next read.
pub fn worker_lines(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .map(|line| serde_json::from_str(line).expect("worker line is JSON"))
        .collect()
}

/// Waits until the worker log holds at least `count` lines.
pub fn wait_for_lines(log: &Path, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = worker_lines(log);
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until the worker saw every number in `1..=count` (POST field `n`) — not merely
/// `count` lines, which duplicates after a crash or a reconnect could reach first.
pub fn wait_for_numbers(log: &Path, count: u64, timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = worker_lines(log);
        let seen: std::collections::BTreeSet<u64> = lines
            .iter()
            .filter_map(|l| l["post"]["n"].as_str().and_then(|n| n.parse().ok()))
            .collect();
        if (1..=count).all(|n| seen.contains(&n)) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Resident memory of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The POST field `n` of every worker line, as numbers, in order.
pub fn numbers(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l["post"]["n"].as_str().and_then(|n| n.parse().ok()))
        .collect()
}
