//! The RESP endpoint through ferry's life (`docs/SEMANTICS.md` "Pause and resume",
//! "Reload", "Drain"): paused it
//! keeps listening and drops what is published to its job channels (`paused`), a reload
//! that keeps `listen` keeps the connected clients and takes the new channels, a reload
//! that changes `listen` binds the new address and retires the old one, and SIGTERM
//! closes the listener and the clients before ferry exits 0.

#[path = "support/endpoint.rs"]
mod endpoint;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;

use std::io::Read;
use std::time::{Duration, Instant};

use endpoint::{command, connect, exchange, replies, Endpoint};
use serde_json::json;

fn publish(port: u16, channel: &str) -> Vec<u8> {
    replies(port, &command(&[b"PUBLISH", channel.as_bytes(), b"m"]))
}

fn reload(ep: &Endpoint, config: &serde_json::Value, needle_count: usize) {
    std::fs::write(&ep.config_path, config.to_string()).unwrap();
    ep.ferry.signal("HUP");
    ep.ferry.wait_for_log_count(
        "configuration reloaded",
        needle_count,
        "no reload",
        Duration::from_secs(10),
    );
}

#[test]
fn pause_drops_job_messages_and_subscribers_still_receive() {
    let ep = endpoint::start("ferry-endpoint-pause", json!({}));
    assert_eq!(publish(ep.port, &ep.channel), b":1\r\n");
    assert_eq!(http::post(ep.control, "/sources/ep/pause").0, 200);
    let mut subscriber = ep.connect();
    exchange(
        &mut subscriber,
        &command(&[b"SUBSCRIBE", ep.channel.as_bytes()]),
    );
    assert_eq!(
        publish(ep.port, &ep.channel),
        b":1\r\n",
        "the subscriber only"
    );
    let mut no_subscriber = connect(ep.port);
    assert_eq!(exchange(&mut no_subscriber, b"PING\r\n"), b"+PONG\r\n");
    assert_eq!(
        ep.metric(r#"ferry_messages_dropped_total{source="ep",reason="paused"}"#),
        1
    );
    let (_, status) = http::get(ep.control, "/status");
    assert!(status.contains(r#""paused":true"#), "{status}");
    assert_eq!(http::post(ep.control, "/sources/ep/resume").0, 200);
    assert_eq!(publish(ep.port, &ep.channel), b":2\r\n");
    assert_eq!(ep.wait_for_jobs(2).len(), 2);
    assert_eq!(ep.metric(r#"ferry_source_connected{source="ep"}"#), 1);
}

#[test]
fn reloads_keep_clients_on_the_same_address_and_move_to_a_new_one() {
    let ep = endpoint::start("ferry-endpoint-reload", json!({}));
    let mut client = ep.connect();
    assert_eq!(
        exchange(&mut client, b"CLIENT SETNAME kept\r\n"),
        b"+OK\r\n"
    );

    // Same listen, another channel: the client stays, the new channel makes jobs.
    let other = ferry_proc::unique("ferry-test-reload-channel");
    let mut config = ep.config.clone();
    config["sources"][0]["channels"] = json!([other]);
    reload(&ep, &config, 1);
    assert_eq!(
        exchange(&mut client, b"CLIENT GETNAME\r\n"),
        b"$4\r\nkept\r\n"
    );
    let job = command(&[b"PUBLISH", other.as_bytes(), b"after reload"]);
    assert_eq!(exchange(&mut client, &job), b":1\r\n");
    assert_eq!(publish(ep.port, &ep.channel), b":0\r\n");
    assert_eq!(ep.wait_for_jobs(1)[0]["body"], "after reload");

    // Another listen: the new address answers, the old one closes.
    let port = http::free_port();
    config["sources"][0]["listen"] = json!(format!("127.0.0.1:{port}"));
    reload(&ep, &config, 2);
    ep.ferry.wait_for_log(
        &format!("listening on 127.0.0.1:{port}"),
        Duration::from_secs(10),
    );
    assert_eq!(publish(port, &other), b":1\r\n");
    let mut rest = Vec::new();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        client.read_to_end(&mut rest).unwrap(),
        0,
        "the old endpoint closed"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", ep.port)).is_ok() {
        assert!(Instant::now() < deadline, "the old listener is still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ep.wait_for_jobs(2).len(), 2);
}

#[test]
fn sigterm_closes_clients_and_exits() {
    let mut ep = endpoint::start("ferry-endpoint-drain", json!({}));
    let mut client = ep.connect();
    assert_eq!(exchange(&mut client, b"PING\r\n"), b"+PONG\r\n");
    ep.ferry.signal("TERM");
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap(), 0);
    assert!(ep.ferry.wait(Duration::from_secs(10)).success());
}
