//! The RESP endpoint: clients, PUBLISH into jobs, fan-out to subscribers, limits and
//! backpressure.

use super::*;

const ENDPOINT: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock", "max_in_flight": 1}},
  "sources": [{"name": "local", "kind": "resp_endpoint", "listen": "127.0.0.1:6380",
               "channels": ["jobs"], "max_clients": 3, "client_output_buffer_bytes": 65536,
               "job": {"pool": "php", "script": "/w.php", "body": "raw"}}]
}"#;

fn endpoint() -> (Sim, ConnId) {
    let sim = Sim::new(ENDPOINT);
    let listener = sim.io.listens.last().expect("listening").0;
    (sim, listener)
}

fn client(sim: &mut Sim, listener: ConnId) -> ConnId {
    match sim.accept(listener) {
        Accept::Take(conn) => conn,
        Accept::Refuse(reply) => panic!("refused: {}", String::from_utf8_lossy(reply)),
    }
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::proto::resp::encode_command(&mut out, args.iter().map(|a| a.as_bytes()));
    out
}

#[test]
fn the_endpoint_listens_and_answers_ping() {
    let (mut sim, listener) = endpoint();
    assert_eq!(sim.status()["sources"][0]["state"], "listening");
    let c = client(&mut sim, listener);
    sim.feed(c, &command(&["PING"]));
    assert_eq!(sim.written(c), b"+PONG\r\n");
}

#[test]
fn publish_to_a_job_channel_counts_the_job_as_a_receiver_and_runs_it() {
    let (mut sim, listener) = endpoint();
    let c = client(&mut sim, listener);
    sim.feed(c, &command(&["PUBLISH", "jobs", "work"]));
    assert_eq!(sim.written(c), b":1\r\n");
    let (worker, _) = worker_takes(&mut sim, PHP);
    let _ = worker;
    sim.feed(c, &command(&["PUBLISH", "other", "x"]));
    assert_eq!(sim.written(c), b":0\r\n", "no job channel, no subscriber");
}

#[test]
fn subscribers_receive_what_is_published_once_per_turn_write() {
    let (mut sim, listener) = endpoint();
    let sub = client(&mut sim, listener);
    sim.feed(sub, &command(&["SUBSCRIBE", "news"]));
    sim.written(sub);
    let publisher = client(&mut sim, listener);
    let mut pipeline = command(&["PUBLISH", "news", "a"]);
    pipeline.extend(command(&["PUBLISH", "news", "b"]));
    sim.feed(publisher, &pipeline);
    assert_eq!(sim.written(publisher), b":1\r\n:1\r\n");
    let got = sim.written(sub);
    assert!(contains(&got, b"$1\r\na\r\n") && contains(&got, b"$1\r\nb\r\n"));
}

#[test]
fn clients_past_max_clients_are_refused_with_redis_words() {
    let (mut sim, listener) = endpoint();
    for _ in 0..3 {
        client(&mut sim, listener);
    }
    match sim.accept(listener) {
        Accept::Refuse(reply) => assert_eq!(reply, b"-ERR max number of clients reached\r\n"),
        Accept::Take(_) => panic!("a fourth client was taken"),
    }
    assert_eq!(
        sim.metric(r#"ferry_endpoint_disconnects_total{source="local",reason="max_clients"}"#),
        1.0
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_closed_at_its_output_limit_and_others_keep_receiving() {
    let (mut sim, listener) = endpoint();
    let slow = client(&mut sim, listener);
    let fast = client(&mut sim, listener);
    for c in [slow, fast] {
        sim.feed(c, &command(&["SUBSCRIBE", "news"]));
        sim.written(c);
    }
    sim.io.blocked.insert(slow);
    let publisher = client(&mut sim, listener);
    let big = "x".repeat(20_000);
    for _ in 0..5 {
        sim.feed(publisher, &command(&["PUBLISH", "news", &big]));
    }
    assert!(sim.is_closed(slow), "100 KB unread: closed");
    assert_eq!(
        sim.metric(r#"ferry_endpoint_disconnects_total{source="local",reason="output_buffer"}"#),
        1.0,
        "counted once"
    );
    let got = sim.written(fast);
    assert_eq!(got.len(), 5 * (big.len() + 37), "the other got all five");
}

#[test]
fn a_client_whose_replies_pile_up_is_not_read_further() {
    let (mut sim, listener) = endpoint();
    let c = client(&mut sim, listener);
    sim.io.blocked.insert(c);
    let mut pings = Vec::new();
    for _ in 0..20_000 {
        pings.extend(command(&["PING"]));
    }
    sim.feed(c, &pings);
    sim.turn();
    let buffers = sim.engine.buffers_mut(c).expect("still open");
    assert!(
        buffers.pending_output() <= 64 * 1024 + 16 * 1024,
        "replies held to the soft mark"
    );
    assert_eq!(buffers.fill_limit(), buffers.unconsumed(), "reading paused");
    assert!(!sim.is_closed(c), "slowed down, not dropped");
    sim.io.blocked.remove(&c);
    for _ in 0..10 {
        sim.engine
            .handle_ready(c, Fill::Skipped, sim.now, &mut sim.io);
        sim.turn();
    }
    assert_eq!(sim.written(c).len(), 20_000 * 7, "every PONG, in the end");
}

#[test]
fn quit_is_answered_then_the_client_closes() {
    let (mut sim, listener) = endpoint();
    let c = client(&mut sim, listener);
    sim.feed(c, &command(&["QUIT"]));
    assert_eq!(sim.written(c), b"+OK\r\n");
    assert!(sim.is_closed(c));
}

#[test]
fn an_oversized_bulk_is_a_protocol_error_that_closes_the_client() {
    let (mut sim, listener) = endpoint();
    let c = client(&mut sim, listener);
    sim.feed(c, b"*3\r\n$7\r\nPUBLISH\r\n$4\r\njobs\r\n$999999999\r\n");
    assert!(contains(&sim.written(c), b"-ERR"));
    assert!(sim.is_closed(c));
    assert_eq!(
        sim.metric(r#"ferry_messages_dropped_total{source="local",reason="too_large"}"#),
        1.0
    );
}

#[test]
fn a_paused_endpoint_drops_job_publishes_but_subscribers_still_receive() {
    let (mut sim, listener) = endpoint();
    let sub = client(&mut sim, listener);
    sim.feed(sub, &command(&["SUBSCRIBE", "jobs"]));
    sim.written(sub);
    let source = sim.engine.sources.keys()[0];
    sim.engine.pause_source(source);
    let c = client(&mut sim, listener);
    sim.feed(c, &command(&["PUBLISH", "jobs", "x"]));
    assert_eq!(sim.written(c), b":1\r\n", "the subscriber, not the job");
    assert!(sim.connects_to(PHP).is_empty());
    assert!(!sim.written(sub).is_empty());
}
