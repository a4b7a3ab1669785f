//! Drain, reload (and freeing what a reload removed), circuit release, spawned workers.

use std::time::Duration;

use super::*;
use crate::dispatch::outcome::ConnectFailure;
use crate::engine::io::{ProcessExit, ProcessSignal};

#[test]
fn sigterm_with_nothing_in_flight_exits_at_once() {
    let mut sim = Sim::new(REDIS_CONFIG);
    redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    assert_eq!(sim.sigterm(), Some(0));
    assert!(sim.io.notices.iter().any(|n| n == "Stopping"));
}

#[test]
fn sigterm_waits_for_the_job_in_flight_then_exits() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let redis = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    sim.feed(redis, &message("jobs", b"x"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    assert_eq!(sim.sigterm(), None, "a job runs");
    assert!(
        contains(&sim.written(redis), b"UNSUBSCRIBE"),
        "intake stops"
    );
    sim.feed(redis, &message("jobs", b"late"));
    assert_eq!(
        sim.metric(r#"ferry_messages_dropped_total{source="events",reason="shutdown"}"#),
        1.0
    );
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.exit, None);
    worker_answers(&mut sim, worker, id, 200);
    assert_eq!(sim.exit, Some(0), "drained once the job settled");
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="acked"}"#),
        1.0
    );
}

#[test]
fn the_drain_deadline_discards_what_still_waits() {
    let config = REDIS_CONFIG.replace(
        r#""control": {"listen": null},"#,
        r#""control": {"listen": null}, "shutdown_timeout_ms": 3000,"#,
    );
    let mut sim = Sim::new(&config);
    let redis = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    for n in 0..4 {
        sim.feed(redis, &message("jobs", format!("{n}").as_bytes()));
    }
    // Two run (max_in_flight 2) and never answer; two wait.
    for worker in sim.connects_to(PHP) {
        sim.connected(worker);
    }
    sim.sigterm();
    sim.advance(Duration::from_millis(2900));
    assert_eq!(sim.exit, None);
    sim.advance(Duration::from_millis(200));
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.exit, Some(0), "closing ends within its own deadline");
    assert_eq!(
        sim.metric(r#"ferry_messages_dropped_total{source="events",reason="shutdown"}"#),
        2.0
    );
}

#[test]
fn a_second_signal_exits_at_once_with_1() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let redis = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    sim.feed(redis, &message("jobs", b"x"));
    assert_eq!(sim.sigterm(), None);
    assert_eq!(sim.sigterm(), Some(1));
}

#[test]
fn drain_hands_unstarted_amqp_messages_back_and_closes_cleanly() {
    let config = AMQP_CONFIG.replace(r#""max_in_flight": 2"#, r#""max_in_flight": 1"#);
    let mut sim = Sim::new(&config);
    let amqp = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(amqp, &delivery(&consumer_tag("tasks"), "q", 1, b"a", None));
    sim.feed(amqp, &delivery(&consumer_tag("tasks"), "q", 2, b"b", None));
    let (worker, id) = worker_takes(&mut sim, PHP);
    sim.sigterm();
    let sent = said(&sim.written(amqp));
    assert!(sent.contains(&(1, Said::Cancel)), "{sent:?}");
    assert!(
        sent.contains(&(
            1,
            Said::Nack {
                tag: 2,
                requeue: true
            }
        )),
        "{sent:?}"
    );
    worker_answers(&mut sim, worker, id, 200);
    let sent = said(&sim.written(amqp));
    assert_eq!(
        sent.first(),
        Some(&(
            1,
            Said::Ack {
                tag: 1,
                multiple: false
            }
        ))
    );
    assert!(
        sent.contains(&(0, Said::Close)),
        "connection.close: {sent:?}"
    );
    assert_eq!(sim.exit, None, "waits for close-ok");
    let mut close_ok = Vec::new();
    amqp::encode_method_frame(
        &mut close_ok,
        0,
        &amqp::ConnectionCloseOk {}.into(),
        131_072,
    )
    .unwrap();
    sim.feed(amqp, &close_ok);
    assert_eq!(sim.exit, Some(0));
}

#[test]
fn a_circuit_open_past_circuit_release_ms_parks_amqp_sources_until_the_pool_answers() {
    let mut sim = Sim::new(AMQP_CONFIG);
    sim.io.refuse.insert(PHP.into(), ConnectFailure::Refused);
    let amqp = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(amqp, &delivery(&consumer_tag("tasks"), "q", 1, b"a", None));
    sim.advance(Duration::from_millis(3001));
    let sent = said(&sim.written(amqp));
    assert!(
        sent.contains(&(
            1,
            Said::Nack {
                tag: 1,
                requeue: true
            }
        )),
        "{sent:?}"
    );
    assert!(sent.contains(&(0, Said::Close)), "{sent:?}");
    assert_eq!(sim.status()["sources"][0]["state"], "released");
    let mut close_ok = Vec::new();
    amqp::encode_method_frame(
        &mut close_ok,
        0,
        &amqp::ConnectionCloseOk {}.into(),
        131_072,
    )
    .unwrap();
    sim.feed(amqp, &close_ok);
    sim.advance(Duration::from_secs(60));
    assert_eq!(
        sim.status()["sources"][0]["state"],
        "released",
        "stays away while the pool fails"
    );
    let before = sim.connects_to(AMQP_ADDRESS).len();
    sim.io.refuse.clear();
    let probes = sim.connects_to(PHP).len();
    while sim.connects_to(PHP).len() == probes {
        sim.advance(Duration::from_millis(50));
    }
    let probe = sim.last_connect(PHP);
    sim.connected(probe);
    assert_eq!(
        sim.connects_to(AMQP_ADDRESS).len(),
        before + 1,
        "reconnects when the pool answers"
    );
}

const TWO_SOURCES: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock"}},
  "sources": [
    {"name": "a", "kind": "redis", "url": "redis://127.0.0.1:6379", "channels": ["a"],
     "job": {"pool": "php", "script": "/w.php"}},
    {"name": "b", "kind": "redis", "url": "redis://127.0.0.1:6379", "channels": ["b"],
     "job": {"pool": "php", "script": "/w.php"}}]
}"#;

const ONE_SOURCE: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock"}},
  "sources": [
    {"name": "a", "kind": "redis", "url": "redis://127.0.0.1:6379", "channels": ["a"],
     "job": {"pool": "php", "script": "/w.php"}}]
}"#;

#[test]
fn reload_adds_and_removes_sources_without_touching_the_others() {
    let mut sim = Sim::new(ONE_SOURCE);
    let a = redis_up(&mut sim, REDIS_ADDRESS, &["a"]);
    sim.reload(TWO_SOURCES);
    assert_eq!(sim.connects_to(REDIS_ADDRESS).len(), 2, "b connects");
    assert!(!sim.is_closed(a), "a is untouched");
    sim.reload(ONE_SOURCE);
    let b = sim.last_connect(REDIS_ADDRESS);
    assert!(sim.is_closed(b), "b, still connecting, closes");
    assert!(!sim.is_closed(a));
    assert!(
        !sim.metrics().contains(r#"source="b""#),
        "a removed source's series leave"
    );
    assert_eq!(sim.engine.table_sizes().0, 1, "its entry is freed");
}

#[test]
fn reload_that_changes_a_source_restarts_it_and_keeps_its_counters_and_pause() {
    let mut sim = Sim::new(ONE_SOURCE);
    let a = redis_up(&mut sim, REDIS_ADDRESS, &["a"]);
    sim.feed(a, &message("a", b"{}"));
    let source = sim.engine.sources.keys()[0];
    sim.engine.pause_source(source);
    sim.reload(&ONE_SOURCE.replace(r#"["a"]"#, r#"["a", "a2"]"#));
    assert!(
        contains(&sim.written(a), b"UNSUBSCRIBE"),
        "the old entry stops its intake"
    );
    assert_eq!(
        sim.connects_to(REDIS_ADDRESS).len(),
        2,
        "the new entry connects"
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_received_total{source="a"}"#),
        1.0
    );
    assert_eq!(sim.status()["sources"][0]["paused"], true, "pause survives");
}

#[test]
fn a_bad_config_on_reload_keeps_the_old_one() {
    let mut sim = Sim::new(ONE_SOURCE);
    redis_up(&mut sim, REDIS_ADDRESS, &["a"]);
    sim.engine.reload(Err("bad".into()), sim.now, &mut sim.io);
    sim.turn();
    assert_eq!(sim.connects_to(REDIS_ADDRESS).len(), 1);
    assert_eq!(sim.status()["sources"][0]["state"], "connected");
    assert!(sim
        .io
        .notices
        .ends_with(&["Reloading".into(), "Ready".into()]));
}

#[test]
fn a_thousand_reloads_adding_and_removing_a_source_leave_no_entries_behind() {
    let mut sim = Sim::new(ONE_SOURCE);
    redis_up(&mut sim, REDIS_ADDRESS, &["a"]);
    let with_pool = TWO_SOURCES.replace(
        r#""pools": {"php": {"address": "unix:/php.sock"}}"#,
        r#""pools": {"php": {"address": "unix:/php.sock"}, "extra": {"address": "unix:/x.sock"}}"#,
    );
    for _ in 0..1000 {
        sim.reload(&with_pool);
        let b = sim.last_connect(REDIS_ADDRESS);
        sim.connected(b);
        sim.reload(ONE_SOURCE);
        sim.turn();
    }
    assert_eq!(sim.engine.table_sizes(), (1, 1), "one source, one pool");
    assert!(
        sim.engine.peers.len() <= 2,
        "no connection left behind: {}",
        sim.engine.peers.len()
    );
}

#[test]
fn reload_removing_a_pool_with_work_frees_it_only_when_done() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let redis = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    sim.feed(redis, &message("jobs", b"x"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    let moved = REDIS_CONFIG
        .replace(
            r#""php": {"address": "unix:/php.sock""#,
            r#""fpm": {"address": "unix:/fpm.sock""#,
        )
        .replace(r#""pool": "php""#, r#""pool": "fpm""#);
    sim.reload(&moved);
    assert_eq!(
        sim.engine.table_sizes().1,
        2,
        "the old pool still has a job"
    );
    worker_answers(&mut sim, worker, id, 200);
    sim.advance(Duration::from_secs(1));
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.engine.table_sizes().1, 1, "freed once its work is done");
}

const SPAWNED: &str = r#"{
  "control": {"listen": null},
  "pools": {"cgi": {"spawn": {"command": ["php-cgi"], "processes": 2}}},
  "sources": [{"name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
               "channels": ["jobs"], "job": {"pool": "cgi", "script": "/w.php"}}]
}"#;

fn died(sim: &mut Sim, pid: u32, success: bool) {
    sim.io.exits.insert(
        pid,
        ProcessExit {
            success,
            description: "exited with status 1".into(),
        },
    );
    sim.engine.handle_child_exited();
    sim.turn();
}

#[test]
fn a_spawned_pool_starts_its_processes_on_its_own_socket() {
    let sim = Sim::new(SPAWNED);
    assert_eq!(sim.io.spawned.len(), 2);
    assert_eq!(sim.io.sockets.len(), 1);
    assert_eq!(sim.status()["pools"][0]["processes"]["running"], 2);
}

#[test]
fn a_worker_that_lived_long_is_replaced_at_once() {
    let mut sim = Sim::new(SPAWNED);
    sim.advance(Duration::from_secs(5));
    let pid = sim.io.spawned[0];
    died(&mut sim, pid, false);
    assert_eq!(sim.io.spawned.len(), 3, "restarted at once");
}

#[test]
fn a_crash_looping_worker_backs_off_and_opens_the_circuit() {
    let mut sim = Sim::new(SPAWNED);
    // Both workers die at once, again and again, for 60 s.
    for _ in 0..600 {
        let live: Vec<u32> = sim
            .io
            .spawned
            .iter()
            .copied()
            .filter(|p| !sim.io.exits.contains_key(p))
            .collect();
        for pid in live.iter().rev().take(2) {
            died(&mut sim, *pid, false);
        }
        sim.advance(Duration::from_millis(100));
    }
    let starts = sim.io.spawned.len();
    // 200 ms doubling to 10 s per slot, jittered: a few dozen starts, not hundreds.
    assert!((10..=60).contains(&starts), "{starts} starts in 60 s");
    assert!(sim.metric(r#"ferry_pool_failures_total{pool="cgi",reason="no_process"}"#) >= 1.0);
}

#[test]
fn shutdown_terminates_then_kills_the_workers_and_exits_only_when_they_are_gone() {
    let mut sim = Sim::new(SPAWNED);
    redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    assert_eq!(sim.sigterm(), None, "workers still run");
    let terms: Vec<u32> = sim
        .io
        .signals
        .iter()
        .filter(|(_, s)| *s == ProcessSignal::Terminate)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(terms.len(), 2);
    died(&mut sim, terms[0], true);
    assert_eq!(sim.exit, None, "one worker ignores SIGTERM");
    sim.advance(Duration::from_secs(6));
    assert_eq!(sim.io.killed, [terms[1]], "SIGKILL after the stop timeout");
    sim.turn();
    assert_eq!(sim.exit, Some(0));
    assert_eq!(sim.io.spawned.len(), 2, "nothing restarted while stopping");
}

#[test]
fn reload_changing_spawn_retires_the_old_workers_once_unused() {
    let mut sim = Sim::new(SPAWNED);
    let old: Vec<u32> = sim.io.spawned.clone();
    sim.reload(&SPAWNED.replace(r#""processes": 2"#, r#""processes": 3"#));
    assert_eq!(sim.io.spawned.len(), 5, "a new generation of three");
    assert_eq!(sim.io.sockets.len(), 2, "on a new socket");
    let termed: Vec<u32> = sim.io.signals.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        termed, old,
        "the old ones get SIGTERM: no connection uses them"
    );
    for pid in old {
        died(&mut sim, pid, true);
    }
    assert_eq!(
        sim.io.released_sockets.len(),
        1,
        "the old socket goes with them"
    );
}
