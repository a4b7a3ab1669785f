//! The README's quick start (README.md "Using the quick start"), run exactly as a newcomer
//! types it: the first
//! shell block of README.md starts ferry (its RESP endpoint on 127.0.0.1:6380 and a
//! spawned pool), the block marked `readme-test: publish` publishes three messages, and
//! the worker's log must then hold messages 1, 2 and 3. Ctrl-C (SIGINT) must stop ferry
//! with exit 0 and leave none of its worker processes behind.
//!
//! Both workers are exercised: whichever the README's command picks on this machine, then
//! the other through `QUICKSTART_WORKER`. The quick start uses fixed ports (6380, 9180) and
//! `/tmp/ferry-quickstart`, so everything runs in this one test, one after the other.

#[path = "support/procs.rs"]
mod procs;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORKER_LOG: &str = "/tmp/ferry-quickstart/worker.log";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shell blocks of the README: (the quick start command, the publish steps).
fn readme_steps() -> (String, String) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = |text: &str| -> Vec<String> {
        text.split("```sh\n")
            .skip(1)
            .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block.to_string()))
            .collect()
    };
    let quick_start = blocks(&readme)
        .into_iter()
        .next()
        .expect("README has no shell block");
    let (_, after_marker) = readme
        .split_once("<!-- readme-test: publish -->")
        .expect("README lost its 'readme-test: publish' marker");
    let publish = blocks(after_marker)
        .into_iter()
        .next()
        .expect("no shell block after the publish marker");
    (quick_start, publish)
}

/// Runs one shell block from the repository root, in its own process group (so SIGINT
/// reaches it as Ctrl-C would reach the foreground job).
fn shell(block: &str, worker: Option<&str>, log: &Path) -> Child {
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .process_group(0);
    if let Some(worker) = worker {
        command.env("QUICKSTART_WORKER", worker);
    }
    command.spawn().unwrap()
}

/// The running quick start: SIGKILLs its process group (ferry; its workers die with it by
/// PR_SET_PDEATHSIG) when the test fails, so a failed run never leaves ferry holding the
/// quick start's ports.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.0.wait();
        }
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The message numbers in the worker's log: php-cgi's worker.php logs `"number":"N"` in
/// its `data`, the responder logs the form body `number=N`.
fn logged_numbers() -> Vec<u64> {
    let text = std::fs::read_to_string(WORKER_LOG).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            let from_php = value["data"]["number"].as_str().map(str::to_string);
            let from_responder = value["body"]
                .as_str()
                .and_then(|body| body.strip_prefix("number="))
                .map(str::to_string);
            from_php.or(from_responder)?.parse().ok()
        })
        .collect()
}

fn run_quick_start(quick_start: &str, publish: &str, worker: Option<&str>, dir: &Path) {
    let label = worker.unwrap_or("default");
    assert!(
        !listening(6380) && !listening(9180),
        "something already listens on 127.0.0.1:6380 or :9180; the quick start needs them"
    );
    let mut running = Running(shell(
        quick_start,
        worker,
        &dir.join(format!("quickstart-{label}.log")),
    ));
    let ferry = &mut running.0;
    // The first run builds the release binary (bounded wait); once ferry is up (its
    // control endpoint answers) the RESP endpoint must follow at once.
    let mut deadline = Instant::now() + Duration::from_secs(600);
    let mut ferry_up = false;
    while !listening(6380) {
        if !ferry_up && listening(9180) {
            ferry_up = true;
            deadline = Instant::now() + Duration::from_secs(10);
        }
        if let Some(status) = ferry.try_wait().unwrap() {
            panic!(
                "quick start ({label}) exited with {status} before listening: {}",
                std::fs::read_to_string(dir.join(format!("quickstart-{label}.err")))
                    .unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "quick start ({label}) never listened on 6380"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let workers = procs::children(ferry.id());

    let status = shell(publish, None, &dir.join(format!("publish-{label}.log")))
        .wait()
        .unwrap();
    assert!(
        status.success(),
        "the README's publish step failed ({label}): {status}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut numbers = logged_numbers();
    while numbers.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        numbers = logged_numbers();
    }
    let got: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(numbers.len(), 3, "worker log ({label}): {numbers:?}");
    assert_eq!(got, BTreeSet::from([1, 2, 3]), "worker log ({label})");

    // Ctrl-C: the shell exec'd ferry, so ferry is the process group's leader.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(ferry.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = ferry.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ferry ({label}) did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "ferry ({label}) exited with {status}");
    assert!(!workers.is_empty(), "ferry ({label}) started no workers");
    let orphans: Vec<u32> = workers
        .into_iter()
        .filter(|&pid| procs::alive(pid))
        .collect();
    assert!(
        orphans.is_empty(),
        "workers left running ({label}): {orphans:?}"
    );
}

#[test]
fn readme_quick_start_runs_as_written_with_either_worker() {
    let (quick_start, publish) = readme_steps();
    let dir = std::env::temp_dir().join(format!("ferry-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Exactly the README: whichever worker it picks here.
    run_quick_start(&quick_start, &publish, None, &dir);
    // Then the other worker (php-cgi is installed by the test command; without it the
    // explicit php-cgi run fails, as a test without its server must).
    let php_cgi_installed = Command::new("bash")
        .args(["-c", "command -v php-cgi"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    let other = if php_cgi_installed {
        "responder"
    } else {
        "php-cgi"
    };
    run_quick_start(&quick_start, &publish, Some(other), &dir);
}
