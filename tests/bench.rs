//! `ferry bench` (README.md "`ferry bench`: how fast, and who is the bottleneck") on a
//! small N: every message is accounted for and the JSON has
//! its documented fields, for each source (Redis, AMQP, ferry's RESP endpoint), both
//! kinds of worker, the limits, a sweep and `--attach`. Counts only, never speed. Needs
//! Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672 (guest/guest) and php-fpm8.2;
//! each run starts its own ferry, workers and unique channel, queue or endpoint port, so
//! these tests run in parallel safely.

#[path = "support/ferry.rs"]
mod ferry_proc;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_proc::{temp_dir, unique, Ferry};
use serde_json::{json, Value};

const N: u64 = 200;

/// Runs `ferry bench ARGS --json` and returns the parsed document; panics unless it
/// exits 0 (every message arrived exactly once).
fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run ferry bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ferry bench {args:?} exited {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// The accounting of one run: all sent, all received once, nothing else.
fn assert_accounted(run: &Value, count: u64) {
    let a = &run["accounting"];
    assert_eq!(a["sent"], count, "{run}");
    assert_eq!(a["received"], count, "{run}");
    assert_eq!(a["unique"], count, "{run}");
    assert_eq!(a["lost"], 0, "{run}");
    assert_eq!(a["duplicates"], 0, "{run}");
    assert_eq!(a["unexpected"], 0, "{run}");
    assert_eq!(run["unreadable_lines"], 0, "{run}");
    assert!(run["throughput"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["seconds"].as_f64().unwrap() > 0.0, "{run}");
    let latency = &run["latency_us"];
    for field in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(latency[field].is_number(), "latency_us.{field} in {run}");
    }
    assert!(
        latency["p50"].as_u64() <= latency["p99"].as_u64()
            && latency["p99"].as_u64() <= latency["max"].as_u64()
    );
    assert!(run["timeline"].as_array().is_some_and(|t| !t.is_empty()));
}

/// ferry's own figures, present in a pipeline run.
fn assert_ferry_usage(run: &Value) {
    let ferry = &run["ferry"];
    for field in [
        "cpu_ms",
        "cpu_us_per_message",
        "idle_rss_kib",
        "peak_rss_kib",
    ] {
        assert!(ferry[field].is_number(), "ferry.{field} in {run}");
    }
    assert!(ferry["peak_rss_kib"].as_u64() >= ferry["idle_rss_kib"].as_u64());
}

#[test]
fn redis_pipeline_accounts_for_every_message() {
    let run = bench(&["--count", &N.to_string(), "--pool", "4"]);
    assert_eq!(run["mode"], "pipeline");
    assert_eq!(run["source"], "redis");
    assert_eq!(run["workers"], "responder");
    assert_eq!(run["pool"], 4);
    assert_accounted(&run, N);
    assert_ferry_usage(&run);
}

#[test]
fn amqp_pipeline_with_its_limits() {
    let dir = std::env::temp_dir().join(format!("ferry-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("amqp.svg");
    let all = bench(&[
        "--source",
        "amqp",
        "--count",
        &N.to_string(),
        "--prefetch",
        "8",
        "--limits",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let run = &all["run"];
    assert_eq!(run["source"], "amqp");
    assert_eq!(run["prefetch"], 8);
    assert_accounted(run, N);
    assert_ferry_usage(run);
    assert_eq!(all["direct"]["mode"], "direct");
    assert_accounted(&all["direct"], N);
    assert!(all["direct"]["ferry"].is_null());
    assert_eq!(all["broker"]["mode"], "broker");
    assert_accounted(&all["broker"], N);
    assert!(all["share_of_limit"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn endpoint_pipeline_has_no_broker_limit() {
    let all = bench(&[
        "--source",
        "endpoint",
        "--count",
        &N.to_string(),
        "--limits",
    ]);
    let run = &all["run"];
    assert_eq!(run["source"], "endpoint");
    assert_accounted(run, N);
    assert_ferry_usage(run);
    assert_eq!(run["ferry_dropped"], 0, "{run}");
    // ferry is the broker here: the workers alone are the only limit.
    assert!(all["broker"].is_null(), "{all}");
    assert_accounted(&all["direct"], N);
    assert!(all["share_of_limit"].as_f64().unwrap() > 0.0);
}

#[test]
fn php_fpm_pool_runs_the_null_script() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/null.php");
    let run = bench(&[
        "--count",
        &N.to_string(),
        "--php-script",
        script.to_str().unwrap(),
        "--keep-conn",
    ]);
    assert_eq!(run["workers"], "php-fpm");
    assert_eq!(run["keep_conn"], true);
    assert_accounted(&run, N);
    assert_ferry_usage(&run);
}

#[test]
fn a_small_sweep_holds_the_requests_in_flight() {
    // --rate well above pool ÷ delay: the messages come at once, so the pool fills.
    let all = bench(&[
        "--concurrency-sweep",
        "10,20",
        "--delay-ms",
        "1000",
        "--count",
        "40",
        "--rate",
        "1000",
    ]);
    let runs = all["sweep"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, target) in runs.iter().zip([10, 20]) {
        // The pool has headroom over the target: 1.1 × target + 10.
        let pool = target + target / 10 + 10;
        assert_eq!(run["target_in_flight"], target);
        assert_eq!(run["pool"], pool);
        assert_accounted(run, 40);
        // 40 messages published within 40 ms, each held 1 s by the responder: the pool
        // fills.
        assert_eq!(run["peak_in_flight"], pool, "{run}");
        assert!(run["ferry"]["rss_kib_per_in_flight"].is_number(), "{run}");
    }
}

#[test]
fn attach_measures_a_pipeline_started_elsewhere() {
    let dir = temp_dir("ferry-bench-attach");
    let socket = dir.join("r.sock");
    let log = dir.join("receipts.log");
    // An earlier run's receipt in the log: --attach reads only what is written after.
    std::fs::write(&log, "{\"n\":1,\"t\":1,\"received_at_us\":2}\n").unwrap();
    let listen = format!("unix:{}", socket.display());
    let responder = Ferry::start_args(
        &dir,
        &[
            "responder",
            "--listen",
            &listen,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    responder.wait_for_log("ferry responder: listening on", Duration::from_secs(10));
    let channel = unique("ferry-bench-attach");
    let ferry = Ferry::start(
        &dir,
        &json!({
            "control": { "listen": null },
            "pools": { "workers": { "address": listen } },
            "sources": [{
                "name": "attached", "kind": "redis", "url": "redis://127.0.0.1:6379",
                "channels": [channel],
                "job": { "pool": "workers", "script": "/srv/worker.php" }
            }]
        }),
    );
    ferry.wait_for_log("source attached: subscribed", Duration::from_secs(10));
    let pid = ferry.pid().to_string();
    let run = bench(&[
        "--attach",
        &pid,
        "--worker-log",
        log.to_str().unwrap(),
        "--channel",
        &channel,
        "--count",
        &N.to_string(),
    ]);
    assert_eq!(run["workers"], "attached workers");
    assert_accounted(&run, N);
    assert!(run["ferry"]["cpu_us_per_message"].is_number(), "{run}");
    drop(ferry);
    drop(responder);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_usage_errors() {
    for (args, expected) in [
        (&["--source", "kafka"][..], "--source"),
        (&["--direct", "--broker"], "cannot be combined"),
        (&["--count", "0"], "--count"),
        (&["--php-script", "/nonexistent.php"], "no such file"),
        (&["--concurrency-sweep", "10,x"], "--concurrency-sweep"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
