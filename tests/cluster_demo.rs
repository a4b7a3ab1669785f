//! The multi-host demo, run as written (`scripts/cluster-demo.sh`, `docs/CLUSTER.md`): a
//! three-node RabbitMQ cluster with a quorum queue and three ferry hosts in network
//! namespaces, each with its own php-fpm, through a kill -9, a network cut and a node
//! stop — smaller than the default run (2,000 messages, slower jobs so the faults still
//! hit a busy system, an 8 s cut). Asserts the script's exit status and printed checks,
//! then that nothing of the run is left: no namespace, veth, RabbitMQ node, php-fpm,
//! ferry or temporary directory. A second run, stopped with SIGTERM once its hosts
//! consume, must leave nothing either; a bad option exits 2 before anything is made.
//!
//! Needs root (network namespaces), iproute2, rabbitmq-server, php8.2-fpm, curl and
//! python3 (`scripts/test.sh` installs them); a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The runs share two cores: one at a time.
static ONE_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Command lines of live processes that mention `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        // A zombie has an empty command line: it holds nothing.
        if line.contains(needle) {
            found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e} (install iproute2)"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that nothing of the run of the script with PID `pid` is left: namespaces,
/// veth links, processes (RabbitMQ nodes, php-fpm masters and children, ferries: their
/// command lines name the run), the temporary directory.
fn assert_nothing_left(pid: u32) {
    let run = format!("ferry-demo-{pid}");
    let namespaces = command_output("ip", &["netns", "list"]);
    assert!(
        !namespaces.contains(&run),
        "namespaces left behind:\n{namespaces}"
    );
    let links = command_output("ip", &["-o", "link", "show"]);
    let veth = format!("fd{pid}h");
    assert!(!links.contains(&veth), "veth links left behind:\n{links}");
    let left = processes_mentioning(&run);
    assert!(
        left.is_empty(),
        "processes of the run left behind (RabbitMQ, php-fpm or ferry):\n{}",
        left.join("\n")
    );
    let dirs: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{run}."))
        })
        .collect();
    assert!(dirs.is_empty(), "temporary directory left behind: {dirs:?}");
}

fn check_prerequisites() {
    assert!(
        is_root(),
        "the cluster demo makes network namespaces: run the tests as root (scripts/test.sh)"
    );
    assert!(
        Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists(),
        "ip not found: install iproute2"
    );
}

/// The value after `prefix` on the report line that starts with it.
fn line<'a>(report: &'a str, prefix: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in the report:\n{report}"))
}

#[test]
fn a_bad_option_is_a_usage_error_and_makes_nothing() {
    for args in [
        &["--messages", "many"][..],
        &["--messages", "10"],
        &["--bogus"],
    ] {
        let out = Command::new(repo().join("scripts/cluster-demo.sh"))
            .args(args)
            .output()
            .expect("run scripts/cluster-demo.sh");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cluster-demo:"),
            "{args:?} names the problem: {out:?}"
        );
    }
}

#[test]
fn the_cluster_demo_survives_its_faults_and_leaves_nothing_behind() {
    check_prerequisites();
    let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let out_path = std::env::temp_dir().join(format!(
        "ferry-cluster-demo-test-{}.out",
        std::process::id()
    ));
    let out = std::fs::File::create(&out_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new(repo().join("scripts/cluster-demo.sh"))
        .args([
            "--messages",
            "2000",
            "--work-ms",
            "200",
            // Longer than two heartbeat intervals (3 s): the cut connection dies.
            "--cut-seconds",
            "8",
            "--timeout",
            "120",
            "--ferry",
            env!("CARGO_BIN_EXE_ferry"),
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run scripts/cluster-demo.sh");
    // The script runs as itself (its shebang), so its PID names everything it makes.
    let pid = child.id();
    let deadline = started + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // TERM: the script's trap cleans up before it exits.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!(
                "the demo took more than 300 s:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let report = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    eprintln!("cluster demo ({:.0} s):\n{report}", elapsed.as_secs_f64());

    // Nothing of the run is left, whatever the outcome.
    assert_nothing_left(pid);

    assert!(status.success(), "the demo failed ({status}):\n{report}");
    assert_eq!(line(&report, "result: "), "PASS");
    assert_eq!(line(&report, "messages published: "), "2000");
    assert_eq!(
        line(&report, "check: every message processed: "),
        "ok (2000 of 2000 ids seen)"
    );
    for check in [
        "check: duplicates within what was in flight: ok (",
        "check: every fault hit a busy system: ok (",
        "check: every fault recovered: ok (",
    ] {
        line(&report, check);
    }
    // Every host did work, and the per-host counts add up to the requests made.
    let requests: u64 = (1..=3)
        .map(|h| {
            let host = line(&report, &format!("host h{h}: "));
            let n: u64 = host.split(' ').next().unwrap().parse().unwrap();
            assert!(n > 0, "host h{h} processed nothing: {host}");
            n
        })
        .sum();
    let all: u64 = line(&report, "requests in all: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(requests, all);
    assert!(all >= 2000);
    let rate: f64 = line(&report, "aggregate rate: ")
        .trim_end_matches(" messages/s")
        .parse()
        .unwrap();
    assert!(rate > 0.0);
    let recoveries: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("recovery: "))
        .collect();
    assert!(recoveries.len() >= 4, "recovery lines:\n{report}");
    assert!(
        recoveries.iter().all(|l| !l.contains("never")),
        "a fault never recovered:\n{report}"
    );
}

#[test]
fn a_demo_stopped_halfway_cleans_up_everything() {
    check_prerequisites();
    let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let out_path = std::env::temp_dir().join(format!(
        "ferry-cluster-demo-term-{}.out",
        std::process::id()
    ));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(repo().join("scripts/cluster-demo.sh"))
        .args(["--messages", "2000", "--work-ms", "200"])
        .args(["--ferry", env!("CARGO_BIN_EXE_ferry")])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run scripts/cluster-demo.sh");
    let pid = child.id();
    // Once the three hosts consume — nodes, namespaces, php-fpm and ferries all up — stop it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let so_far = std::fs::read_to_string(&out_path).unwrap_or_default();
        if so_far.contains("ferry on 3 hosts consuming") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the demo ended ({status}) before its hosts consumed:\n{so_far}");
        }
        assert!(
            Instant::now() < deadline,
            "the hosts did not consume within 120 s:\n{so_far}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    assert_eq!(
        status.code(),
        Some(143),
        "exit status after SIGTERM:\n{report}"
    );
    assert!(report.contains("cleaning up"), "{report}");
    assert_nothing_left(pid);
}
