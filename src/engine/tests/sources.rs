//! Sources: connecting, reconnect backoff, intake, pause / resume, AMQP settlement on
//! the wire.

use std::time::Duration;

use super::*;
use crate::dispatch::outcome::ConnectFailure;

#[test]
fn starts_by_connecting_every_source_and_nothing_to_the_pool() {
    let sim = Sim::new(REDIS_CONFIG);
    assert_eq!(sim.connects_to(REDIS_ADDRESS).len(), 1);
    assert!(
        sim.connects_to(PHP).is_empty(),
        "no job, no worker connection"
    );
    assert!(
        sim.io.notices.iter().any(|n| n == "Ready"),
        "READY=1 without brokers"
    );
}

#[test]
fn a_lost_broker_is_reconnected_with_growing_jittered_backoff() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let mut attempts = Vec::new();
    // Every connect fails at once: count the connect attempts over 60 s.
    let mut last = sim.now;
    for _ in 0..600 {
        let conns = sim.connects_to(REDIS_ADDRESS);
        let conn = *conns.last().unwrap();
        if !sim.is_closed(conn) {
            attempts.push(sim.now.duration_since(last));
            last = sim.now;
            sim.connect_failed(conn, ConnectFailure::Refused);
        }
        sim.advance(Duration::from_millis(100));
    }
    // 500 ms doubling to 30 s, jittered: a handful of attempts in a minute, not hundreds.
    let count = sim.connects_to(REDIS_ADDRESS).len();
    assert!(
        (5..=10).contains(&count),
        "{count} connects in 60 s: {attempts:?}"
    );
    let gaps: Vec<u128> = attempts.iter().skip(1).map(Duration::as_millis).collect();
    assert!(
        gaps.windows(2).take(4).all(|w| w[1] >= w[0]),
        "backoff grows: {gaps:?}"
    );
    assert!(sim.metric(r#"ferry_reconnects_total{source="events"}"#) >= 5.0);
}

#[test]
fn a_connect_that_hangs_is_given_up_after_ten_seconds() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let first = sim.last_connect(REDIS_ADDRESS);
    sim.advance(Duration::from_secs(9));
    assert!(!sim.is_closed(first));
    sim.advance(Duration::from_secs(2));
    assert!(sim.is_closed(first), "closed after the connect timeout");
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.connects_to(REDIS_ADDRESS).len(), 2, "and tried again");
}

#[test]
fn redis_subscribes_then_reports_ready() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let conn = sim.last_connect(REDIS_ADDRESS);
    sim.connected(conn);
    sim.feed(conn, NO_HELLO);
    assert!(contains(&sim.written(conn), b"SUBSCRIBE"));
    assert_eq!(sim.status()["sources"][0]["state"], "connecting");
    sim.feed(conn, &subscribed(&["jobs"]));
    assert_eq!(sim.status()["sources"][0]["state"], "connected");
    assert_eq!(
        sim.metric(r#"ferry_source_connected{source="events"}"#),
        1.0
    );
}

#[test]
fn a_redis_message_becomes_one_request() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let conn = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    sim.feed(conn, &message("jobs", b"hello"));
    let worker = sim.last_connect(PHP);
    sim.connected(worker);
    let request = sim.written(worker);
    assert!(contains(&request, b"FERRY_CHANNEL"), "metadata params");
    assert!(contains(&request, b"hello"), "the payload is the body");
    worker_answers(&mut sim, worker, request_id(&request), 200);
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="acked"}"#),
        1.0
    );
    assert!(
        sim.is_closed(worker),
        "no keep_conn: closed after the answer"
    );
}

#[test]
fn a_paused_redis_source_drops_what_arrives_and_resumes() {
    let mut sim = Sim::new(REDIS_CONFIG);
    let conn = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    let source = sim.engine.sources.keys()[0];
    sim.engine.pause_source(source);
    sim.feed(conn, &message("jobs", b"a"));
    assert!(sim.connects_to(PHP).is_empty());
    assert_eq!(
        sim.metric(r#"ferry_messages_dropped_total{source="events",reason="paused"}"#),
        1.0
    );
    assert_eq!(sim.status()["sources"][0]["state"], "paused");
    sim.engine.resume_source(source);
    sim.feed(conn, &message("jobs", b"b"));
    assert_eq!(sim.connects_to(PHP).len(), 1, "taken again after resume");
}

#[test]
fn a_full_redis_backlog_drops_and_counts() {
    let config = REDIS_CONFIG.replace(
        r#""channels": ["jobs"],"#,
        r#""channels": ["jobs"], "backlog": 3,"#,
    );
    let mut sim = Sim::new(&config);
    // No pool capacity: the pool's socket refuses, so jobs wait in the backlog.
    sim.io.refuse.insert(PHP.into(), ConnectFailure::Refused);
    let conn = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    for n in 0..10 {
        sim.feed(conn, &message("jobs", format!("m{n}").as_bytes()));
    }
    assert_eq!(
        sim.metric(r#"ferry_backlog_messages{source="events"}"#),
        3.0
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_dropped_total{source="events",reason="backlog_full"}"#),
        7.0
    );
}

#[test]
fn amqp_handshake_reaches_consuming_and_declares_retry_queues() {
    let mut sim = Sim::new(AMQP_CONFIG);
    let conn = sim.last_connect(AMQP_ADDRESS);
    sim.connected(conn);
    assert!(sim.written(conn).starts_with(b"AMQP\x00\x00\x09\x01"));
    sim.feed(conn, &amqp_handshake("q", &consumer_tag("tasks"), true));
    let methods: Vec<_> = said(&sim.written(conn));
    assert_eq!(
        methods
            .iter()
            .filter(|m| **m == (2, Said::Other("queue.declare")))
            .count(),
        2,
        "one retry queue per distinct delay step, on the confirm channel: {methods:?}"
    );
    assert_eq!(sim.status()["sources"][0]["state"], "connected");
}

#[test]
fn an_amqp_delivery_is_acked_only_after_the_worker_succeeded() {
    let mut sim = Sim::new(AMQP_CONFIG);
    let conn = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(
        conn,
        &delivery(&consumer_tag("tasks"), "q", 1, b"work", None),
    );
    let (worker, id) = worker_takes(&mut sim, PHP);
    assert!(
        said(&sim.written(conn)).is_empty(),
        "nothing acked before the answer"
    );
    worker_answers(&mut sim, worker, id, 200);
    assert_eq!(
        said(&sim.written(conn)),
        [(
            1,
            Said::Ack {
                tag: 1,
                multiple: false
            }
        )]
    );
}

#[test]
fn a_failed_amqp_attempt_is_republished_to_the_retry_queue_then_acked_on_confirm() {
    let mut sim = Sim::new(AMQP_CONFIG);
    let conn = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(
        conn,
        &delivery(&consumer_tag("tasks"), "q", 7, b"work", None),
    );
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 500);
    let sent = said(&sim.written(conn));
    assert_eq!(
        sent,
        [(
            2,
            Said::Publish {
                exchange: String::new(),
                routing_key: "q.ferry-retry.1000".into()
            }
        )],
        "a copy to the 1 s retry queue, the original not yet acked"
    );
    sim.feed(conn, &confirm(1));
    assert_eq!(
        said(&sim.written(conn)),
        [(
            1,
            Said::Ack {
                tag: 7,
                multiple: false
            }
        )]
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="tasks",outcome="retried"}"#),
        1.0
    );
}

#[test]
fn the_last_amqp_attempt_is_rejected_to_the_dead_letter_exchange() {
    let mut sim = Sim::new(AMQP_CONFIG);
    let conn = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(
        conn,
        &delivery(&consumer_tag("tasks"), "q", 3, b"work", Some(3)),
    );
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 503);
    assert_eq!(
        said(&sim.written(conn)),
        [(
            1,
            Said::Reject {
                tag: 3,
                requeue: false
            }
        )]
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="tasks",outcome="dead_lettered"}"#),
        1.0
    );
}

#[test]
fn a_lost_amqp_connection_voids_its_tags() {
    let mut sim = Sim::new(AMQP_CONFIG);
    let conn = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(
        conn,
        &delivery(&consumer_tag("tasks"), "q", 1, b"work", None),
    );
    let (worker, id) = worker_takes(&mut sim, PHP);
    sim.eof(conn);
    assert!(sim.is_closed(conn));
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.connects_to(AMQP_ADDRESS).len(), 2, "reconnected");
    let again = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    worker_answers(&mut sim, worker, id, 200);
    assert!(
        said(&sim.written(again)).is_empty(),
        "the tag died with its connection: nothing acked on the new one"
    );
}

#[test]
fn pausing_amqp_cancels_and_hands_unstarted_messages_back() {
    let config = AMQP_CONFIG.replace(r#""max_in_flight": 2"#, r#""max_in_flight": 1"#);
    let mut sim = Sim::new(&config);
    let conn = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    sim.feed(conn, &delivery(&consumer_tag("tasks"), "q", 1, b"a", None));
    sim.feed(conn, &delivery(&consumer_tag("tasks"), "q", 2, b"b", None));
    let (worker, id) = worker_takes(&mut sim, PHP);
    let source = sim.engine.sources.keys()[0];
    sim.engine.pause_source(source);
    sim.turn();
    let sent = said(&sim.written(conn));
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
    assert_eq!(
        said(&sim.written(conn)),
        [(
            1,
            Said::Ack {
                tag: 1,
                multiple: false
            }
        )],
        "the job in flight still settles"
    );
}

#[test]
fn a_message_that_is_not_json_fails_permanently_without_a_request() {
    let config = REDIS_CONFIG.replace(r#""body": "raw""#, r#""body": "form""#);
    let mut sim = Sim::new(&config);
    let conn = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    sim.feed(conn, &message("jobs", b"not json"));
    sim.turn();
    assert!(sim.connects_to(PHP).is_empty());
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="discarded"}"#),
        1.0
    );
}

// ---- failover across nodes (`urls`) ----------------------------------------------------

/// Redis source `events` on three nodes.
fn three_nodes() -> String {
    REDIS_CONFIG.replace(
        r#""url": "redis://127.0.0.1:6379""#,
        r#""urls": ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"]"#,
    )
}

const NODE_1: &str = "10.0.0.1:6379";
const NODE_2: &str = "10.0.0.2:6379";
const NODE_3: &str = "10.0.0.3:6379";

#[test]
fn a_refusing_first_node_is_skipped_for_the_second() {
    let mut io = FakeIo::default();
    io.refuse.insert(NODE_1.into(), ConnectFailure::Refused);
    let mut sim = Sim::with_io(&three_nodes(), io);
    assert_eq!(sim.connects_to(NODE_1).len(), 1);
    assert_eq!(
        sim.connects_to(NODE_2).len(),
        1,
        "the next node is tried at once, not after a backoff"
    );
    assert!(sim.connects_to(NODE_3).is_empty());
    assert_eq!(sim.status()["sources"][0]["node"], NODE_2);
    let conn = redis_up(&mut sim, NODE_2, &["jobs"]);
    assert_eq!(sim.status()["sources"][0]["state"], "connected");
    sim.feed(conn, &message("jobs", b"hello"));
    assert_eq!(sim.connects_to(PHP).len(), 1, "delivered through node 2");
}

#[test]
fn a_dropped_node_moves_the_source_to_the_next_one() {
    let mut sim = Sim::new(&three_nodes());
    let first = redis_up(&mut sim, NODE_1, &["jobs"]);
    assert_eq!(sim.status()["sources"][0]["node"], NODE_1);
    sim.eof(first);
    assert!(sim.is_closed(first));
    assert_eq!(
        sim.connects_to(NODE_2).len(),
        1,
        "the next node at once after a loss"
    );
    let second = redis_up(&mut sim, NODE_2, &["jobs"]);
    assert_eq!(sim.status()["sources"][0]["node"], NODE_2);
    assert_eq!(sim.status()["sources"][0]["state"], "connected");
    sim.advance(Duration::from_secs(1));
    sim.eof(second);
    assert_eq!(sim.connects_to(NODE_3).len(), 1, "then the third");
    let third = sim.last_connect(NODE_3);
    sim.connect_failed(third, ConnectFailure::Refused);
    // Node 1's first backoff step (250–500 ms) is over: the list goes round to it at
    // once; node 2, lost just now, waits out its own step.
    assert_eq!(sim.connects_to(NODE_1).len(), 2, "node 1 again");
    assert_eq!(sim.connects_to(NODE_2).len(), 1);
    assert_eq!(sim.status()["sources"][0]["node"], NODE_1);
    assert_eq!(
        sim.metric(r#"ferry_reconnects_total{source="events"}"#),
        3.0
    );
}

#[test]
fn each_node_backs_off_on_its_own() {
    let mut io = FakeIo::default();
    for node in [NODE_1, NODE_2, NODE_3] {
        io.refuse.insert(node.into(), ConnectFailure::Refused);
    }
    let mut sim = Sim::with_io(&three_nodes(), io);
    // All three tried at start, one after the other, without waiting.
    for node in [NODE_1, NODE_2, NODE_3] {
        assert_eq!(sim.connects_to(node).len(), 1, "{node} tried at start");
    }
    // Then a minute of refusals: each node on its own 500 ms → 30 s schedule, so each
    // sees about as many attempts as a single-node source would (5–10), not three times
    // fewer (one shared schedule) or hundreds (no backoff).
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let start = sim.now;
    let mut seen = [1, 1, 1];
    for _ in 0..600 {
        sim.advance(Duration::from_millis(100));
        for (n, node) in [NODE_1, NODE_2, NODE_3].iter().enumerate() {
            let count = sim.connects_to(node).len();
            if count > seen[n] {
                times[n].push(sim.now.duration_since(start));
                seen[n] = count;
            }
        }
    }
    for (n, node) in [NODE_1, NODE_2, NODE_3].iter().enumerate() {
        let count = sim.connects_to(node).len();
        assert!(
            (5..=10).contains(&count),
            "{node}: {count} connects in 60 s at {:?}",
            times[n]
        );
        let gaps: Vec<u128> = times[n]
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        assert!(
            gaps.windows(2).take(3).all(|w| w[1] + 100 >= w[0]),
            "{node}: its own backoff grows: {gaps:?}"
        );
    }
}

#[test]
fn a_node_that_answers_again_starts_its_backoff_over() {
    let mut io = FakeIo::default();
    io.refuse.insert(NODE_2.into(), ConnectFailure::Refused);
    io.refuse.insert(NODE_3.into(), ConnectFailure::Refused);
    let mut sim = Sim::with_io(&three_nodes(), io);
    let conn = redis_up(&mut sim, NODE_1, &["jobs"]);
    sim.eof(conn);
    // Node 2 and node 3 refuse at once; node 1 comes back after its first step only
    // (it was reset when it subscribed), well before a grown backoff would allow.
    assert_eq!(sim.connects_to(NODE_2).len(), 1);
    assert_eq!(sim.connects_to(NODE_3).len(), 1);
    sim.advance(Duration::from_millis(600));
    assert_eq!(sim.connects_to(NODE_1).len(), 2);
    redis_up(&mut sim, NODE_1, &["jobs"]);
    assert_eq!(sim.status()["sources"][0]["node"], NODE_1);
}

// ---- quorum queues: x-delivery-count ---------------------------------------------------

/// A delivery whose headers are `headers` (name, integer value).
fn delivery_with(tag: u64, headers: &[(&str, i64)]) -> Vec<u8> {
    let mut out = frame(
        1,
        amqp::BasicDeliver {
            consumer_tag: consumer_tag("tasks").as_bytes(),
            delivery_tag: tag,
            redelivered: true,
            exchange: b"",
            routing_key: b"q",
        },
    );
    let mut table = amqp::TableBuilder::new();
    for (name, value) in headers {
        table
            .insert(name.as_bytes(), amqp::FieldValue::I64(*value))
            .unwrap();
    }
    let props = amqp::BasicProperties {
        headers: Some(table.as_table()),
        ..Default::default()
    };
    amqp::encode_content(&mut out, 1, amqp::CLASS_BASIC, &props, b"work", 131_072).unwrap();
    out
}

#[test]
fn x_delivery_count_is_a_floor_for_the_attempt_without_x_ferry_attempt() {
    let config = AMQP_CONFIG.replace(r#""max_in_flight": 2"#, r#""max_in_flight": 1"#);
    let mut sim = Sim::new(&config);
    let conn = amqp_up(&mut sim, AMQP_ADDRESS, "q", "tasks", true);
    // Delivered twice before (ferry died mid-request, say): this is attempt 3 of 3.
    sim.feed(conn, &delivery_with(1, &[("x-delivery-count", 2)]));
    let worker = sim.last_connect(PHP);
    sim.connected(worker);
    let request = sim.written(worker);
    assert!(contains(&request, b"FERRY_ATTEMPT3"), "attempt 3");
    assert!(
        contains(&request, b"FERRY_HEADER_X_DELIVERY_COUNT2"),
        "the worker sees the count"
    );
    worker_answers(&mut sim, worker, request_id(&request), 500);
    assert_eq!(
        said(&sim.written(conn)),
        [(
            1,
            Said::Reject {
                tag: 1,
                requeue: false
            }
        )],
        "the last attempt failed: dead-lettered, not retried again"
    );
    // ferry's own count wins when it is there.
    sim.feed(
        conn,
        &delivery_with(2, &[("x-ferry-attempt", 2), ("x-delivery-count", 5)]),
    );
    let worker = sim.last_connect(PHP);
    sim.connected(worker);
    assert!(contains(&sim.written(worker), b"FERRY_ATTEMPT2"));
}
