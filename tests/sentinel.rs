//! Redis Sentinel against real servers (`docs/SEMANTICS.md`, "Redis Sentinel"): the test
//! starts a master and a replica (both with a password) and three sentinels (with their
//! own password) on free ports; ferry, given a dead sentinel first and then the three,
//! asks for the master, confirms it with ROLE and consumes a pub/sub channel and a
//! stream. `SENTINEL FAILOVER` then promotes the replica: ferry follows `+switch-master`
//! and keeps delivering from the new master, and the stream's entries are all acked
//! there. Needs `redis-server` (package redis-server), `redis-cli` (redis-tools) and
//! php-fpm8.2.

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_proc::{logging_worker, unique, worker_lines, Ferry};
use php_fpm::PhpFpm;
use serde_json::json;

const MASTER_PASSWORD: &str = "master-pw";
const SENTINEL_PASSWORD: &str = "sentinel-pw";

/// Every redis-server the test started; killed when dropped, even when the test fails.
struct Servers {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Servers {
    fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server (package redis-server) must be installed");
        self.children.push(child);
    }
}

fn free_port() -> u16 {
    http::free_port()
}

/// `redis-cli -p port [-a password] args…`, its output trimmed.
fn cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-a", password, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli (package redis-tools) must be installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn numbers_from(log: &Path, source: &str) -> Vec<String> {
    worker_lines(log)
        .into_iter()
        .filter(|l| l["source"] == source)
        .filter_map(|l| l["post"]["n"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn ferry_follows_a_sentinel_failover_and_keeps_delivering() {
    let dir = ferry_proc::temp_dir("ferry-sentinel");
    let mut servers = Servers {
        children: Vec::new(),
        dir: dir.clone(),
    };
    let master = free_port();
    let replica = free_port();
    let common = [
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        MASTER_PASSWORD,
        "--masterauth",
        MASTER_PASSWORD,
    ];
    let mut args = vec!["--port".to_string(), master.to_string()];
    args.extend(common.iter().map(|s| s.to_string()));
    servers.spawn(
        "master",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut args = vec!["--port".to_string(), replica.to_string()];
    args.extend(common.iter().map(|s| s.to_string()));
    args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
    servers.spawn(
        "replica",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_until("the replica in sync", Duration::from_secs(20), || {
        cli(replica, MASTER_PASSWORD, &["INFO", "replication"]).contains("master_link_status:up")
    });
    let sentinels: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for (n, port) in sentinels.iter().enumerate() {
        let conf = dir.join(format!("sentinel-{n}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n\
                 sentinel monitor mymaster 127.0.0.1 {master} 2\n\
                 sentinel auth-pass mymaster {MASTER_PASSWORD}\n\
                 sentinel down-after-milliseconds mymaster 2000\n\
                 sentinel failover-timeout mymaster 20000\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        servers.spawn(
            &format!("sentinel-{n}"),
            &[conf.to_str().unwrap(), "--sentinel"],
        );
    }
    wait_until(
        "every sentinel to know the replica",
        Duration::from_secs(30),
        || {
            sentinels.iter().all(|port| {
                let replicas = cli(
                    *port,
                    SENTINEL_PASSWORD,
                    &["SENTINEL", "REPLICAS", "mymaster"],
                );
                replicas.contains(&replica.to_string())
            })
        },
    );

    let fpm = PhpFpm::start();
    let log = fpm.dir().join("worker.log");
    let script = fpm.write_script("worker.php", &logging_worker(&log));
    std::fs::write(dir.join("master.pass"), format!("{MASTER_PASSWORD}\n")).unwrap();
    std::fs::write(dir.join("sentinel.pass"), format!("{SENTINEL_PASSWORD}\n")).unwrap();
    let dead = free_port();
    let control = free_port();
    let channel = unique("ferry-test-sentinel");
    let stream = unique("ferry-test-sentinel-stream");
    let mut addresses = vec![format!("127.0.0.1:{dead}")];
    addresses.extend(sentinels.iter().map(|p| format!("127.0.0.1:{p}")));
    let sentinel = json!({
        "master": "mymaster", "addresses": addresses,
        "password_file": dir.join("sentinel.pass"),
    });
    let config = json!({
        "control": { "listen": format!("127.0.0.1:{control}") },
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [
            { "name": "events", "kind": "redis", "sentinel": sentinel,
              "password_file": dir.join("master.pass"),
              "channels": [channel], "job": { "pool": "php", "script": script } },
            { "name": "tasks", "kind": "redis_stream", "sentinel": sentinel,
              "password_file": dir.join("master.pass"),
              "stream": stream, "group": "g", "start": "0",
              "job": { "pool": "php", "script": script } }
        ]
    });
    let config_file = dir.join("ferry.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "check",
                "--no-script",
                "--config",
                config_file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = check();
    assert!(
        report.contains(&format!(
            "FAIL sentinel of source 'events' at 127.0.0.1:{dead}"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "OK   sentinel of source 'tasks' at 127.0.0.1:{}",
            sentinels[2]
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("master \"mymaster\" is at 127.0.0.1:{master}")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "OK   redis source 'events' at redis://:***@127.0.0.1:{master}"
        )),
        "{report}"
    );
    assert!(report.contains("role master"), "{report}");
    let mut ferry = Ferry::start(fpm.dir(), &config);
    ferry.wait_for_log("source events: subscribed", Duration::from_secs(20));
    ferry.wait_for_log("source tasks: consuming as", Duration::from_secs(20));
    let text = ferry.log();
    assert!(
        text.contains(&format!(
            "asking sentinel 127.0.0.1:{dead} (1 of 4) for master \"mymaster\""
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("connect to sentinel 127.0.0.1:{dead} failed")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "says master \"mymaster\" is at 127.0.0.1:{master}"
        )),
        "{text}"
    );
    let status = http::get_json(control, "/status");
    assert_eq!(
        status["sources"][0]["node"],
        format!("127.0.0.1:{master}"),
        "{status}"
    );
    assert_eq!(
        status["sources"][0]["sentinel"],
        format!("127.0.0.1:{}", sentinels[0])
    );

    let publish = |port: u16, n: u32| {
        let receivers = cli(
            port,
            MASTER_PASSWORD,
            &["PUBLISH", &channel, &format!(r#"{{"n": "{n}"}}"#)],
        );
        cli(
            port,
            MASTER_PASSWORD,
            &["XADD", &stream, "*", "n", &n.to_string()],
        );
        receivers
    };
    assert_eq!(publish(master, 1), "1", "ferry subscribed on the master");
    wait_until(
        "message 1 from both sources",
        Duration::from_secs(10),
        || {
            numbers_from(&log, "events").contains(&"1".into())
                && numbers_from(&log, "tasks").contains(&"1".into())
        },
    );

    let answer = cli(
        sentinels[0],
        SENTINEL_PASSWORD,
        &["SENTINEL", "FAILOVER", "mymaster"],
    );
    assert_eq!(answer, "OK");
    ferry.wait_for_log("+switch-master \"mymaster\"", Duration::from_secs(30));
    wait_until("ferry on the new master", Duration::from_secs(30), || {
        let status = http::get_json(control, "/status");
        (0..2).all(|i| {
            status["sources"][i]["node"] == format!("127.0.0.1:{replica}")
                && status["sources"][i]["state"] == "connected"
        })
    });
    assert!(
        cli(replica, MASTER_PASSWORD, &["ROLE"]).starts_with("master"),
        "the replica was promoted"
    );
    assert_eq!(
        publish(replica, 2),
        "1",
        "ferry subscribed on the new master"
    );
    wait_until(
        "message 2 from both sources",
        Duration::from_secs(10),
        || {
            numbers_from(&log, "events").contains(&"2".into())
                && numbers_from(&log, "tasks").contains(&"2".into())
        },
    );
    wait_until("every stream entry acked", Duration::from_secs(10), || {
        cli(replica, MASTER_PASSWORD, &["XPENDING", &stream, "g"]).starts_with('0')
    });
    let text = ferry.log();
    assert!(
        text.contains(&format!("connecting to 127.0.0.1:{replica}")),
        "{text}"
    );
    let report = check();
    assert!(
        report.contains(&format!("master \"mymaster\" is at 127.0.0.1:{replica}")),
        "{report}"
    );
    ferry.signal("TERM");
    assert!(ferry.wait(Duration::from_secs(10)).success());
    if std::env::var_os("FERRY_TEST_SHOW_LOG").is_some() {
        eprintln!("{}", ferry.log());
    }
    drop(servers);
}
