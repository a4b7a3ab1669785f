//! Hostile clients of the RESP endpoint (README.md "RESP endpoint (no broker)", limits like
//! Redis's own): each is refused or disconnected, counted, and a well-behaved client keeps
//! being answered during and after — a 1 MB inline request, `*2147483648`, `$-5`, an
//! unterminated bulk, a bulk above `max_message_bytes`, ten thousand idle connections, one
//! client past `max_clients`, and a subscriber that never reads.

#[path = "support/endpoint.rs"]
mod endpoint;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use endpoint::{command, connect, exchange, read_until, show, until_closed, Endpoint};
use serde_json::json;

/// The well-behaved client publishes a job and is answered `:1`.
fn still_served(ep: &Endpoint, client: &mut TcpStream, n: usize) {
    let reply = exchange(
        client,
        &command(&[
            b"PUBLISH",
            ep.channel.as_bytes(),
            format!("ok {n}").as_bytes(),
        ]),
    );
    assert_eq!(reply, b":1\r\n", "{}", show(&reply));
}

fn wait_for_metric(ep: &Endpoint, series: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ep.metric(series) != value {
        assert!(
            Instant::now() < deadline,
            "{series} is {}, not {value}",
            ep.metric(series)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn malformed_requests_are_refused_and_others_keep_being_served() {
    let ep = endpoint::start(
        "ferry-endpoint-hostile",
        json!({ "max_message_bytes": 1024 }),
    );
    let mut good = ep.connect();
    still_served(&ep, &mut good, 0);

    let mut big_inline = vec![b'x'; 1 << 20];
    big_inline.extend_from_slice(b"\r\n");
    let too_big_publish = command(&[b"PUBLISH", ep.channel.as_bytes(), &[b'y'; 2000]]);
    let refusals: [(&str, Vec<u8>, &[u8]); 5] = [
        (
            "1 MB inline",
            big_inline,
            b"-ERR Protocol error: too big inline request\r\n",
        ),
        (
            "huge multibulk",
            b"*2147483648\r\n".to_vec(),
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "negative bulk",
            b"*1\r\n$-5\r\n".to_vec(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "bulk above max_message_bytes",
            too_big_publish,
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "expected $",
            b"*1\r\n:1\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got ':'\r\n",
        ),
    ];
    for (n, (what, request, answer)) in refusals.iter().enumerate() {
        let got = until_closed(ep.port, request);
        assert_eq!(show(&got), show(answer), "{what}");
        still_served(&ep, &mut good, n + 1);
    }
    // Inline `$-5` is a command named "$-5", as in Redis: refused, connection kept.
    let mut odd = ep.connect();
    let reply = exchange(&mut odd, b"$-5\r\n");
    assert_eq!(
        reply,
        b"-ERR unknown command '$-5', with args beginning with: \r\n"
    );

    // Pipelined requests followed at once by EOF are all answered (`printf … | nc`).
    let mut hasty = ep.connect();
    hasty.write_all(b"PING\r\nECHO a\r\nPING\r\n").unwrap();
    hasty.shutdown(Shutdown::Write).unwrap();
    let mut answers = Vec::new();
    hasty.read_to_end(&mut answers).unwrap();
    assert_eq!(show(&answers), show(b"+PONG\r\n$1\r\na\r\n+PONG\r\n"));

    // An unterminated bulk, then the client leaves: nothing is published.
    let mut partial = ep.connect();
    partial
        .write_all(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n$100\r\nabc",
                ep.channel.len(),
                ep.channel
            )
            .as_bytes(),
        )
        .unwrap_or(());
    partial.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = partial.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", show(&rest));
    still_served(&ep, &mut good, 9);

    let source = r#"{source="ep"}"#;
    wait_for_metric(
        &ep,
        r#"ferry_endpoint_disconnects_total{source="ep",reason="protocol_error"}"#,
        5,
    );
    assert_eq!(
        ep.metric(r#"ferry_messages_dropped_total{source="ep",reason="too_large"}"#),
        1,
        "the refused PUBLISH is counted"
    );
    // 7 good publishes + the too-large one; the unterminated one never arrived.
    assert_eq!(
        ep.metric(&format!("ferry_messages_received_total{source}")),
        8
    );
    assert_eq!(ep.wait_for_jobs(7).len(), 7);
}

#[test]
fn ten_thousand_idle_connections_do_not_stop_a_publisher() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 10_200,
        "the hard RLIMIT_NOFILE ({hard}) is too low for this test"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();

    let ep = endpoint::start("ferry-endpoint-idle", json!({ "max_clients": 10_100 }));
    let mut good = ep.connect();
    let mut idle = Vec::with_capacity(10_000);
    for n in 0..10_000 {
        idle.push(TcpStream::connect(("127.0.0.1", ep.port)).unwrap());
        if n % 2_500 == 0 {
            still_served(&ep, &mut good, n);
        }
    }
    wait_for_metric(&ep, r#"ferry_endpoint_clients{source="ep"}"#, 10_001);
    still_served(&ep, &mut good, 10_000);
    drop(idle);
    wait_for_metric(&ep, r#"ferry_endpoint_clients{source="ep"}"#, 1);
    still_served(&ep, &mut good, 10_001);
    assert_eq!(ep.wait_for_jobs(6).len(), 6);
}

#[test]
fn one_client_past_max_clients_is_told_and_closed() {
    let ep = endpoint::start("ferry-endpoint-maxclients", json!({ "max_clients": 2 }));
    let mut first = ep.connect();
    let _second = {
        let mut c = ep.connect();
        exchange(&mut c, b"PING\r\n");
        c
    };
    let refused = until_closed(ep.port, b"PING\r\n");
    assert_eq!(refused, b"-ERR max number of clients reached\r\n");
    still_served(&ep, &mut first, 0);
    assert_eq!(
        ep.metric(r#"ferry_endpoint_disconnects_total{source="ep",reason="max_clients"}"#),
        1
    );
}

#[test]
fn a_subscriber_that_never_reads_is_disconnected_and_others_keep_receiving() {
    let ep = endpoint::start(
        "ferry-endpoint-slow",
        json!({ "client_output_buffer_bytes": 1 << 20 }),
    );
    let topic = ferry_proc::unique("ferry-test-slow");
    let subscribe = command(&[b"SUBSCRIBE", topic.as_bytes()]);
    let mut slow = connect(ep.port);
    exchange(&mut slow, &subscribe);
    let mut reader = connect(ep.port);
    exchange(&mut reader, &subscribe);

    const MESSAGES: usize = 300;
    let payload = vec![b'm'; 100 * 1024];
    let published = topic.clone();
    let reading = std::thread::spawn(move || {
        let mut frame = command(&[b"message", topic.as_bytes(), &payload]);
        frame[1] = b'3';
        let mut got = 0;
        let mut buffered = Vec::new();
        let mut chunk = vec![0u8; 256 * 1024];
        while got < MESSAGES {
            let n = reader.read(&mut chunk).expect("the reader keeps receiving");
            assert!(n > 0, "reader closed after {got} messages");
            buffered.extend_from_slice(&chunk[..n]);
            while buffered.len() >= frame.len() {
                assert_eq!(&buffered[..frame.len()], &frame[..]);
                buffered.drain(..frame.len());
                got += 1;
            }
        }
        got
    });
    let mut publisher = connect(ep.port);
    let publish = command(&[b"PUBLISH", published.as_bytes(), &[b'm'; 100 * 1024]]);
    let mut receivers = Vec::new();
    for _ in 0..MESSAGES {
        publisher.write_all(&publish).unwrap();
        let reply = read_until(&mut publisher, b"\r\n");
        receivers.push(reply);
    }
    assert_eq!(reading.join().unwrap(), MESSAGES);
    assert_eq!(receivers.first().map(Vec::as_slice), Some(&b":2\r\n"[..]));
    assert_eq!(
        receivers.last().map(Vec::as_slice),
        Some(&b":1\r\n"[..]),
        "the slow one is gone"
    );
    assert_eq!(
        ep.metric(r#"ferry_endpoint_disconnects_total{source="ep",reason="output_buffer"}"#),
        1
    );
    // The slow subscriber finds its connection closed once it reads what was sent.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut drained = Vec::new();
    assert!(
        slow.read_to_end(&mut drained).is_ok(),
        "closed, not timed out"
    );
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn blank_lines_are_consumed_not_hoarded() {
    let ep = endpoint::start("ferry-endpoint-blank", json!({ "password": "pw" }));
    // Unauthenticated clients sending nothing but empty requests: ferry consumes them as
    // they come (before the fix each held up to max_message_bytes + 1 MiB).
    const HOARDERS: usize = 10;
    let blank = b"\r\n*0\r\n".repeat((8 << 20) / 6);
    let mut hoarders = Vec::new();
    for _ in 0..HOARDERS {
        let mut c = ep.connect();
        c.write_all(&blank).unwrap();
        hoarders.push(c);
    }
    for c in &mut hoarders {
        c.write_all(b"PING\r\n").unwrap();
        let reply = read_until(c, b"\r\n");
        assert_eq!(show(&reply), show(b"-NOAUTH Authentication required.\r\n"));
    }
    let peak_mib = peak_rss_kib(ep.ferry.pid()) / 1024;
    assert!(
        peak_mib < 48,
        "ferry peaked at {peak_mib} MiB for {HOARDERS} clients of blank lines"
    );
    // An authenticated client with more blank lines than a query buffer holds, then a
    // command: answered, as Redis answers it.
    let mut legit = ep.connect();
    assert_eq!(exchange(&mut legit, b"AUTH pw\r\n"), b"+OK\r\n");
    let mut script = b"\r\n".repeat(18 << 20 >> 1);
    script.extend_from_slice(b"PING\r\n");
    assert_eq!(show(&exchange(&mut legit, &script)), show(b"+PONG\r\n"));
    assert_eq!(
        ep.metric(r#"ferry_endpoint_disconnects_total{source="ep",reason="query_buffer"}"#),
        0
    );
}

#[test]
fn an_inline_publish_is_held_to_max_message_bytes() {
    let ep = endpoint::start(
        "ferry-endpoint-inline-limit",
        json!({ "max_message_bytes": 1024 }),
    );
    let mut good = ep.connect();
    let big = "y".repeat(50_000);
    for channel in [ep.channel.as_str(), "not-a-job-channel"] {
        let got = until_closed(ep.port, format!("PUBLISH {channel} {big}\r\n").as_bytes());
        assert_eq!(
            show(&got),
            show(b"-ERR Protocol error: invalid bulk length\r\n")
        );
    }
    let fits = format!("PUBLISH {} {}\r\n", ep.channel, "z".repeat(1024));
    assert_eq!(exchange(&mut good, fits.as_bytes()), b":1\r\n");
    let jobs = ep.wait_for_jobs(1);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["body"].as_str().map(str::len), Some(1024));
    assert_eq!(
        ep.metric(r#"ferry_messages_dropped_total{source="ep",reason="too_large"}"#),
        1,
        "only the refused PUBLISH to a job channel counts"
    );
    assert_eq!(
        ep.metric(r#"ferry_endpoint_disconnects_total{source="ep",reason="protocol_error"}"#),
        2
    );
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn idle_clients_cannot_take_the_workers_descriptors() {
    // ferry under RLIMIT_NOFILE 64: max_clients (10000) is lowered to what is left after
    // the reserve, the pool (max_in_flight 4), the source and the control endpoint.
    let ep = endpoint::start_with("ferry-endpoint-fds", json!({}), |dir, config| {
        let path = dir.join("ferry-fds.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        ferry_proc::Ferry::start_exe(
            std::path::Path::new("/usr/bin/prlimit"),
            dir,
            &[
                "--nofile=64:64",
                env!("CARGO_BIN_EXE_ferry"),
                "run",
                "--config",
                path.to_str().unwrap(),
                "--log-level",
                "debug",
            ],
            &[],
        )
    });
    ep.ferry.wait_for_log(
        "RLIMIT_NOFILE is 64: RESP endpoints take at most 19 clients together",
        Duration::from_secs(5),
    );
    let mut good = ep.connect();
    still_served(&ep, &mut good, 0);
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(("127.0.0.1", ep.port)).unwrap())
        .collect();
    wait_for_metric(
        &ep,
        r#"ferry_endpoint_disconnects_total{source="ep",reason="max_clients"}"#,
        62,
    );
    assert_eq!(ep.metric(r#"ferry_endpoint_clients{source="ep"}"#), 19);
    for n in 1..=10 {
        still_served(&ep, &mut good, n);
    }
    assert_eq!(ep.wait_for_jobs(11).len(), 11, "jobs reach the worker");
    drop(idle);
    wait_for_metric(&ep, r#"ferry_endpoint_clients{source="ep"}"#, 1);

    // Out of descriptors below the budget (the limit lowered under ferry's feet): the
    // clients accept cannot take stay queued, and are accepted once descriptors free up.
    let pid = ep.ferry.pid();
    let limit = open_fds(pid) + 2;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut first = ep.connect();
    let second = ep.connect();
    let mut queued: Vec<TcpStream> = (0..2).map(|_| ep.connect()).collect();
    assert_eq!(exchange(&mut first, b"PING\r\n"), b"+PONG\r\n");
    drop(first);
    drop(second);
    for client in &mut queued {
        assert_eq!(exchange(client, b"PING\r\n"), b"+PONG\r\n");
    }
    let warnings = ep.ferry.log().matches("accept failed").count();
    assert!(
        (1..=2).contains(&warnings),
        "accept failures are logged, rate-limited ({warnings} lines)"
    );
}
