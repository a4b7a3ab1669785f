//! `ferry check` against the real servers (`docs/OPERATIONS.md` "Other commands"): Redis on
//! 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672 (guest/guest) and a private php-fpm. Runs
//! the real binary and reads its `--json` report (or its text and exit code).

#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::path::Path;
use std::process::{Command, Output};

use ferry_proc::{publish, temp_dir, unique};
use php_fpm::{PhpFpm, PhpFpmOptions};
use serde_json::{json, Value};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS: &str = "redis://127.0.0.1:6379";

/// Writes `config` next to the pool and runs `ferry check --config … args`.
fn check(dir: &Path, config: &Value, args: &[&str]) -> Output {
    let path = dir.join(format!("{}.json", unique("check")));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "--config", path.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run ferry check")
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn endpoint<'a>(report: &'a Value, kind: &str, name: &str) -> &'a Value {
    report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} '{name}' in {report:#}"))
}

fn status_pool() -> PhpFpm {
    PhpFpm::start_with(PhpFpmOptions {
        pool_lines: vec!["pm.status_path = /fpm-status".into()],
        ..Default::default()
    })
}

#[test]
fn a_good_config_reports_what_every_peer_says_and_exits_0() {
    let fpm = status_pool();
    let marker = fpm.dir().join("ran");
    let script = fpm.write_script(
        "worker.php",
        &format!(
            "<?php file_put_contents({:?}, $_SERVER['FERRY_ATTEMPT'] . ' ' . count($_POST));",
            marker.display()
        ),
    );
    let queue = unique("ferry-test-check");
    publish(&["--amqp", AMQP, "--queue", &queue, "--count", "3", "x"]);
    let job = json!({ "pool": "php", "script": script });
    let config = json!({
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()),
                            "status_path": "/fpm-status" } },
        "sources": [
            { "name": "events", "kind": "redis", "url": REDIS, "channels": ["c"], "job": job },
            { "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue, "declare": false,
              "job": job },
        ]
    });
    let output = check(fpm.dir(), &config, &["--json"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true);

    let redis = endpoint(&report, "redis", "events");
    assert_eq!(redis["ok"], true);
    assert_eq!(redis["redis"]["protocol"], 3);
    let version = redis["redis"]["version"].as_str().unwrap();
    assert!(version.starts_with("7."), "Redis version {version}");

    let amqp = endpoint(&report, "amqp", "tasks");
    assert_eq!(amqp["amqp"]["product"], "RabbitMQ");
    assert_eq!(amqp["amqp"]["capabilities"]["publisher_confirms"], true);
    assert_eq!(amqp["amqp"]["queue_exists"], true);
    assert_eq!(amqp["amqp"]["messages"], 3);
    // The password never appears.
    assert_eq!(amqp["address"], "amqp://guest:***@127.0.0.1:5672/%2f");

    let pool = endpoint(&report, "pool", "php");
    assert_eq!(pool["ok"], true, "{pool:#}");
    let values = &pool["pool"]["get_values"];
    assert_eq!(values["FCGI_MPXS_CONNS"], "0");
    assert!(values["FCGI_MAX_CONNS"].is_null() && values["FCGI_MAX_REQS"].is_null());
    let page = &pool["pool"]["status_page"];
    assert_eq!(page["ok"], true, "{page:#}");
    assert_eq!(page["fields"]["pool"], "ferry-test");
    assert!(
        page["fields"]["max children reached"].is_string(),
        "{page:#}"
    );
    // One script shared by both sources: asked once, with an empty form and attempt 0.
    let scripts = pool["pool"]["scripts"].as_array().unwrap();
    assert_eq!(scripts.len(), 1);
    assert_eq!(scripts[0]["sources"], json!(["events", "tasks"]));
    assert_eq!(scripts[0]["ok"], true);
    assert_eq!(scripts[0]["outcome"], "success");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "0 0");
    // The check declared nothing and consumed nothing.
    assert_eq!(report_queue_depth(fpm.dir(), &queue), 3);
}

/// The queue depth as a second `ferry check` sees it.
fn report_queue_depth(dir: &Path, queue: &str) -> u64 {
    let config = json!({
        "pools": { "p": { "address": "unix:/nonexistent.sock" } },
        "sources": [{ "name": "q", "kind": "amqp", "url": AMQP, "queue": queue,
                      "job": { "pool": "p", "script": "/x.php" } }]
    });
    let report = report(&check(dir, &config, &["--json", "--no-script"]));
    endpoint(&report, "amqp", "q")["amqp"]["messages"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_missing_queue_with_declare_false_fails() {
    let fpm = PhpFpm::start();
    let queue = unique("ferry-test-check-missing");
    let config = json!({
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [{ "name": "tasks", "kind": "amqp", "url": AMQP, "queue": queue,
                      "declare": false, "job": { "pool": "php", "script": "/x.php" } }]
    });
    let output = check(fpm.dir(), &config, &["--no-script"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("queue '{queue}': missing")),
        "{text}"
    );
    assert!(text.contains("FAIL amqp source 'tasks'"), "{text}");

    // Without "declare": false, ferry run would declare it: a note, not a failure.
    let mut lenient = config.clone();
    lenient["sources"][0]
        .as_object_mut()
        .unwrap()
        .remove("declare");
    let output = check(fpm.dir(), &lenient, &["--json", "--no-script"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    let amqp = endpoint(&report, "amqp", "tasks");
    assert_eq!(amqp["amqp"]["queue_exists"], false);
    assert!(amqp["note"].as_str().unwrap().contains("will declare it"));
}

#[test]
fn a_pool_socket_that_does_not_exist_fails_with_the_reason() {
    let dir = temp_dir("ferry-check");
    let socket = dir.join("absent.sock");
    let config = json!({
        "pools": { "php": { "address": format!("unix:{}", socket.display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": REDIS, "channels": ["c"],
                      "job": { "pool": "php", "script": "/x.php" } }]
    });
    let output = check(&dir, &config, &["--json"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let pool = endpoint(&report, "pool", "php");
    assert_eq!(pool["ok"], false);
    let error = pool["error"].as_str().unwrap();
    assert!(
        error.contains("socket_not_found") && error.contains("absent.sock"),
        "{error}"
    );
    assert_eq!(endpoint(&report, "redis", "events")["ok"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_job_script_is_reported_as_missing() {
    let fpm = PhpFpm::start();
    let script = fpm.dir().join("not-there.php");
    let config = json!({
        "pools": { "php": { "address": format!("unix:{}", fpm.socket().display()) } },
        "sources": [{ "name": "events", "kind": "redis", "url": REDIS, "channels": ["c"],
                      "job": { "pool": "php", "script": script } }]
    });
    let output = check(fpm.dir(), &config, &["--json"]);
    let report = report(&output);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let probe = &endpoint(&report, "pool", "php")["pool"]["scripts"][0];
    assert_eq!(probe["missing"], true, "{probe:#}");
    assert_eq!(probe["ok"], false);
    assert!(probe["error"]
        .as_str()
        .unwrap()
        .contains("Primary script unknown"));

    // --no-script skips the probe: the pool itself answers.
    let output = check(fpm.dir(), &config, &["--json", "--no-script"]);
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = temp_dir("ferry-check");
    let config = json!({ "pools": {}, "sources": [], "shutdown_timeout": 5 });
    let output = check(&dir, &config, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("shutdown_timeout"), "{stderr}");
    assert!(output.stdout.is_empty());

    let usage = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "--help"])
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("RUNS IT ONCE"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resp_endpoint_address_in_use_fails_and_a_free_one_passes() {
    let dir = temp_dir("ferry-check-endpoint");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let config = |listen: String| {
        json!({
            "control": { "listen": null },
            "pools": { "p": { "address": format!("unix:{}/absent.sock", dir.display()) } },
            "sources": [{ "name": "ep", "kind": "resp_endpoint", "listen": listen,
                          "channels": ["jobs"], "job": { "pool": "p", "script": "/w.php" } }]
        })
    };
    let busy = report(&check(
        &dir,
        &config(format!("127.0.0.1:{taken_port}")),
        &["--json", "--no-script"],
    ));
    let endpoint_report = endpoint(&busy, "resp_endpoint", "ep");
    assert_eq!(endpoint_report["ok"], false, "{busy}");
    assert!(
        endpoint_report["error"]
            .as_str()
            .unwrap()
            .contains("in use"),
        "{busy}"
    );
    drop(taken);
    let socket = dir.join("endpoint.sock");
    let free = report(&check(
        &dir,
        &config(format!("unix:{}", socket.display())),
        &["--json", "--no-script"],
    ));
    let endpoint_report = endpoint(&free, "resp_endpoint", "ep");
    assert_eq!(endpoint_report["ok"], true, "{free}");
    assert_eq!(endpoint_report["skipped"], false, "{free}");
    assert!(!socket.exists(), "the trial socket was left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spawned_pool_with_a_missing_program_fails_and_ferry_itself_passes() {
    let dir = temp_dir("ferry-check-spawn");
    let config = |program: &str| {
        json!({
            "control": { "listen": null },
            "pools": { "w": { "spawn": { "command": [program, "responder"], "processes": 2 } } },
            "sources": [{ "name": "r", "kind": "redis", "url": "redis://127.0.0.1:6379",
                          "channels": ["jobs"], "job": { "pool": "w", "script": "/w.php" } }]
        })
    };
    let output = check(&dir, &config("no-such-program-ferry-test"), &["--json"]);
    assert_eq!(output.status.code(), Some(1));
    let missing = report(&output);
    let pool = endpoint(&missing, "pool", "w");
    assert_eq!(pool["ok"], false, "{missing}");
    assert!(
        pool["error"]
            .as_str()
            .unwrap()
            .contains("not found in PATH"),
        "{missing}"
    );
    let output = check(&dir, &config("ferry"), &["--json"]);
    let found = report(&output);
    assert_eq!(output.status.code(), Some(0), "{found}");
    let pool = endpoint(&found, "pool", "w");
    assert_eq!(pool["ok"], true, "{found}");
    assert!(
        pool["note"].as_str().unwrap().contains("2 processes of /"),
        "{found}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
