//! Redis Sentinel: asking the sentinels, the ROLE check, `+switch-master`, backoff per
//! sentinel, and the watch's end at drain — against scripted sentinels and masters.

use std::time::Duration;

use super::*;
use crate::dispatch::outcome::ConnectFailure;

const SENTINEL_CONFIG: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock", "max_in_flight": 2, "keep_conn": false}},
  "sources": [{"name": "events", "kind": "redis",
               "sentinel": {"master": "mymaster",
                            "addresses": ["10.0.0.1:26379", "10.0.0.2:26379"]},
               "channels": ["jobs"],
               "job": {"pool": "php", "script": "/w.php", "body": "raw"}}]
}"#;
const S1: &str = "10.0.0.1:26379";
const S2: &str = "10.0.0.2:26379";

fn address_reply(host: &str, port: u16) -> Vec<u8> {
    let mut out = b"*2\r\n".to_vec();
    bulk(&mut out, host.as_bytes());
    bulk(&mut out, port.to_string().as_bytes());
    out
}

const WATCHING: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
const ROLE_MASTER: &[u8] = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
const ROLE_REPLICA: &[u8] =
    b"*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.9\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n";

/// A sentinel connection answers: the master is at `host:port`, and it watches.
fn sentinel_answers(sim: &mut Sim, sentinel: &str, host: &str, port: u16) -> ConnId {
    let conn = sim.last_connect(sentinel);
    sim.connected(conn);
    let asked = sim.written(conn);
    assert!(contains(&asked, b"GET-MASTER-ADDR-BY-NAME"));
    assert!(contains(&asked, b"+switch-master"));
    let mut reply = address_reply(host, port);
    reply.extend_from_slice(WATCHING);
    sim.feed(conn, &reply);
    conn
}

/// The master's connection proves its role, then subscribes.
fn master_up(sim: &mut Sim, address: &str) -> ConnId {
    let conn = sim.last_connect(address);
    sim.connected(conn);
    assert_eq!(
        sim.written(conn),
        b"*1\r\n$4\r\nROLE\r\n",
        "ROLE before anything"
    );
    sim.feed(conn, ROLE_MASTER);
    assert!(contains(&sim.written(conn), b"HELLO"), "then the session");
    sim.feed(conn, NO_HELLO);
    sim.feed(conn, &subscribed(&["jobs"]));
    conn
}

#[test]
fn the_master_a_sentinel_names_is_confirmed_then_subscribed() {
    let mut sim = Sim::new(SENTINEL_CONFIG);
    assert!(sim.status()["sources"][0]["node"].is_null(), "unknown yet");
    sentinel_answers(&mut sim, S1, "10.0.0.5", 6379);
    master_up(&mut sim, "10.0.0.5:6379");
    let status = sim.status();
    assert_eq!(status["sources"][0]["state"], "connected");
    assert_eq!(status["sources"][0]["node"], "10.0.0.5:6379");
    assert_eq!(status["sources"][0]["sentinel"], S1);
}

#[test]
fn a_stale_answer_naming_a_replica_is_refused_and_the_sentinels_asked_again() {
    let mut sim = Sim::new(SENTINEL_CONFIG);
    let watch = sentinel_answers(&mut sim, S1, "10.0.0.5", 6379);
    let old = sim.last_connect("10.0.0.5:6379");
    sim.connected(old);
    sim.written(old);
    sim.feed(old, ROLE_REPLICA);
    assert!(sim.is_closed(old), "a replica is not used");
    assert!(!contains(&sim.written(old), b"SUBSCRIBE"));
    // After the master's backoff, a fresh answer on a fresh sentinel connection.
    let before = sim.connects_to(S1).len();
    sim.run_for(Duration::from_secs(2), Duration::from_millis(100));
    assert_eq!(sim.connects_to(S1).len(), before + 1, "asked again");
    assert!(
        sim.io.closed.contains(&watch),
        "the old answer's connection is replaced"
    );
    sentinel_answers(&mut sim, S1, "10.0.0.6", 6379);
    master_up(&mut sim, "10.0.0.6:6379");
    assert_eq!(sim.status()["sources"][0]["node"], "10.0.0.6:6379");
}

#[test]
fn switch_master_moves_the_source_at_once() {
    let mut sim = Sim::new(SENTINEL_CONFIG);
    let watch = sentinel_answers(&mut sim, S1, "10.0.0.5", 6379);
    let old = master_up(&mut sim, "10.0.0.5:6379");
    let mut switch = b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n".to_vec();
    bulk(&mut switch, b"mymaster 10.0.0.5 6379 10.0.0.6 6380");
    sim.feed(watch, &switch);
    assert!(sim.is_closed(old), "the old master is left");
    assert_eq!(
        sim.connects_to("10.0.0.6:6380").len(),
        1,
        "the new one connected without a backoff"
    );
    master_up(&mut sim, "10.0.0.6:6380");
    assert!(!sim.is_closed(watch), "the watch goes on");
    assert_eq!(sim.status()["sources"][0]["node"], "10.0.0.6:6380");
    // Another master's switch is none of this source's business.
    let mut other = b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n".to_vec();
    bulk(&mut other, b"othermaster 10.0.0.6 6380 10.0.0.7 6379");
    sim.feed(watch, &other);
    assert!(sim.connects_to("10.0.0.7:6379").is_empty());
}

#[test]
fn dead_sentinels_are_tried_in_turn_with_backoff_each() {
    let mut sim = Sim::new(SENTINEL_CONFIG);
    // Every sentinel refuses for a minute: count the attempts.
    for _ in 0..600 {
        for sentinel in [S1, S2] {
            if let Some(conn) = sim.connects_to(sentinel).last().copied() {
                if !sim.is_closed(conn) {
                    sim.connect_failed(conn, ConnectFailure::Refused);
                }
            }
        }
        sim.advance(Duration::from_millis(100));
    }
    let (one, two) = (sim.connects_to(S1).len(), sim.connects_to(S2).len());
    assert!(
        (4..=10).contains(&one),
        "{one} attempts on the first sentinel"
    );
    assert!(
        (4..=10).contains(&two),
        "{two} attempts on the second sentinel"
    );
    assert_eq!(sim.status()["sources"][0]["state"], "disconnected");
    // A sentinel answers at last: the source goes on from there.
    let mut waited = 0;
    let (conn, sentinel) = loop {
        let (conn, address) = sim.io.connects.last().cloned().unwrap();
        if !sim.is_closed(conn) {
            break (conn, address.to_string());
        }
        waited += 1;
        assert!(waited < 600, "no sentinel tried again");
        sim.advance(Duration::from_millis(100));
    };
    assert!([S1, S2].contains(&sentinel.as_str()));
    assert_eq!(conn, sim.last_connect(&sentinel));
    sentinel_answers(&mut sim, &sentinel, "10.0.0.5", 6379);
    master_up(&mut sim, "10.0.0.5:6379");
    assert_eq!(sim.status()["sources"][0]["sentinel"], sentinel);
}

#[test]
fn a_drain_closes_the_watch_for_good() {
    let mut sim = Sim::new(SENTINEL_CONFIG);
    let watch = sentinel_answers(&mut sim, S1, "10.0.0.5", 6379);
    master_up(&mut sim, "10.0.0.5:6379");
    sim.sigterm();
    assert!(sim.io.closed.contains(&watch));
    sim.run_for(Duration::from_secs(60), Duration::from_millis(500));
    assert_eq!(
        sim.connects_to(S1).len(),
        1,
        "no sentinel asked after the drain"
    );
    assert!(sim.connects_to(S2).is_empty());
}
