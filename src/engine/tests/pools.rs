//! Pools: dispatch, outcomes, the circuit breaker, retries from memory, kept
//! connections, timeouts.

use std::time::Duration;

use super::*;
use crate::dispatch::outcome::ConnectFailure;

fn redis_sim(config: &str) -> (Sim, ConnId) {
    let mut sim = Sim::new(config);
    let conn = redis_up(&mut sim, REDIS_ADDRESS, &["jobs"]);
    (sim, conn)
}

#[test]
fn never_more_connections_than_max_in_flight() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    for n in 0..5 {
        sim.feed(redis, &message("jobs", format!("{n}").as_bytes()));
    }
    assert_eq!(sim.connects_to(PHP).len(), 2, "max_in_flight 2");
    assert_eq!(sim.metric(r#"ferry_jobs_in_flight{pool="php"}"#), 2.0);
    assert_eq!(
        sim.metric(r#"ferry_backlog_messages{source="events"}"#),
        3.0
    );
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 200);
    assert_eq!(
        sim.connects_to(PHP).len(),
        3,
        "one finished, the next starts"
    );
}

#[test]
fn a_refused_pool_opens_the_circuit_and_burns_no_attempt() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.io.refuse.insert(PHP.into(), ConnectFailure::Refused);
    sim.feed(redis, &message("jobs", b"x"));
    assert_eq!(sim.connects_to(PHP).len(), 1);
    assert_eq!(sim.metric(r#"ferry_pool_circuit_open{pool="php"}"#), 1.0);
    assert_eq!(
        sim.metric(r#"ferry_pool_failures_total{pool="php",reason="connect_refused"}"#),
        1.0
    );
    assert_eq!(
        sim.metric(r#"ferry_backlog_messages{source="events"}"#),
        1.0,
        "the job waits"
    );
    assert_eq!(
        sim.metric(r#"ferry_attempts_total{source="events",pool="php",result="retryable"}"#),
        0.0
    );
}

#[test]
fn the_open_circuit_probes_with_backoff_not_spinning() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.io.refuse.insert(PHP.into(), ConnectFailure::Refused);
    sim.feed(redis, &message("jobs", b"x"));
    sim.run_for(Duration::from_secs(30), Duration::from_millis(50));
    let probes = sim.connects_to(PHP).len();
    // 200 ms doubling to 5 s, jittered: about ten probes in 30 s, never hundreds.
    assert!((4..=20).contains(&probes), "{probes} connects in 30 s");
}

#[test]
fn a_probe_that_connects_closes_the_circuit_and_the_job_runs() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.io.refuse.insert(PHP.into(), ConnectFailure::Refused);
    sim.feed(redis, &message("jobs", b"x"));
    sim.io.refuse.clear();
    sim.run_for(Duration::from_secs(6), Duration::from_millis(50));
    let probe = sim.last_connect(PHP);
    sim.connected(probe);
    assert_eq!(sim.metric(r#"ferry_pool_circuit_open{pool="php"}"#), 0.0);
    let request = sim.written(probe);
    let id = request_id(&request);
    worker_answers(&mut sim, probe, id, 200);
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="acked"}"#),
        1.0
    );
    assert_eq!(
        sim.metric(r#"ferry_attempts_total{source="events",pool="php",result="ok"}"#),
        1.0
    );
}

#[test]
fn a_redis_retry_waits_its_delay_and_carries_the_next_attempt() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.feed(redis, &message("jobs", b"x"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 500);
    assert_eq!(sim.connects_to(PHP).len(), 1);
    sim.advance(Duration::from_millis(999));
    assert_eq!(sim.connects_to(PHP).len(), 1, "not before the 1 s step");
    sim.advance(Duration::from_millis(2));
    let (retried, id) = worker_takes(&mut sim, PHP);
    assert_eq!(sim.connects_to(PHP).len(), 2);
    worker_answers(&mut sim, retried, id, 200);
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="acked"}"#),
        1.0
    );
}

#[test]
fn a_redis_message_is_discarded_after_max_attempts() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.feed(redis, &message("jobs", b"x"));
    for _ in 0..3 {
        let (worker, id) = worker_takes(&mut sim, PHP);
        worker_answers(&mut sim, worker, id, 500);
        sim.advance(Duration::from_secs(6));
    }
    assert_eq!(sim.connects_to(PHP).len(), 3, "max_attempts 3");
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="discarded"}"#),
        1.0
    );
    assert_eq!(
        sim.metric(r#"ferry_attempts_total{source="events",pool="php",result="retryable"}"#),
        3.0
    );
}

#[test]
fn the_attempt_number_reaches_the_worker() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.feed(redis, &message("jobs", b"x"));
    let worker = sim.last_connect(PHP);
    sim.connected(worker);
    let first = sim.written(worker);
    assert!(
        contains(&first, b"FERRY_ATTEMPT1"),
        "name and value are adjacent in FastCGI params"
    );
    worker_answers(&mut sim, worker, request_id(&first), 500);
    sim.advance(Duration::from_millis(1001));
    let second = sim.last_connect(PHP);
    sim.connected(second);
    assert!(contains(&sim.written(second), b"FERRY_ATTEMPT2"));
}

#[test]
fn a_request_timeout_closes_the_connection_and_counts_a_timeout() {
    let config = REDIS_CONFIG.replace(
        r#""max_in_flight": 2"#,
        r#""max_in_flight": 2, "request_timeout_ms": 500"#,
    );
    let (mut sim, redis) = redis_sim(&config);
    sim.feed(redis, &message("jobs", b"x"));
    let (worker, _) = worker_takes(&mut sim, PHP);
    sim.advance(Duration::from_millis(600));
    assert!(
        sim.is_closed(worker),
        "php-fpm ignores ABORT: closing is the abort"
    );
    assert_eq!(
        sim.metric(r#"ferry_attempts_total{source="events",pool="php",result="timeout"}"#),
        1.0
    );
}

#[test]
fn a_connect_that_never_completes_is_a_pool_failure() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.feed(redis, &message("jobs", b"x"));
    let worker = sim.last_connect(PHP);
    sim.advance(Duration::from_millis(1001));
    assert!(sim.is_closed(worker));
    assert_eq!(
        sim.metric(r#"ferry_pool_failures_total{pool="php",reason="connect_timeout"}"#),
        1.0
    );
    assert_eq!(
        sim.metric(r#"ferry_backlog_messages{source="events"}"#),
        1.0
    );
}

#[test]
fn kept_connections_are_reused_and_closed_when_idle_too_long() {
    let config = REDIS_CONFIG.replace(
        r#""max_in_flight": 2, "keep_conn": false"#,
        r#""max_in_flight": 2, "keep_conn": true, "idle_timeout_ms": 2000"#,
    );
    let (mut sim, redis) = redis_sim(&config);
    sim.feed(redis, &message("jobs", b"1"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 200);
    assert!(!sim.is_closed(worker), "kept");
    sim.feed(redis, &message("jobs", b"2"));
    assert_eq!(sim.connects_to(PHP).len(), 1, "reused");
    let request = sim.written(worker);
    assert_eq!(
        request_id(&request),
        id + 1,
        "each request gets the next id"
    );
    worker_answers(&mut sim, worker, id + 1, 200);
    sim.advance(Duration::from_millis(2001));
    assert!(sim.is_closed(worker), "idle timeout");
}

#[test]
fn a_reused_connection_closed_before_any_answer_resends_once_without_an_attempt() {
    let config = REDIS_CONFIG.replace(
        r#""max_in_flight": 2, "keep_conn": false"#,
        r#""max_in_flight": 2, "keep_conn": true"#,
    );
    let (mut sim, redis) = redis_sim(&config);
    sim.feed(redis, &message("jobs", b"1"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 200);
    sim.feed(redis, &message("jobs", b"2"));
    sim.eof(worker);
    assert_eq!(
        sim.connects_to(PHP).len(),
        2,
        "sent again on a new connection"
    );
    assert_eq!(
        sim.metric(r#"ferry_attempts_total{source="events",pool="php",result="retryable"}"#),
        0.0
    );
}

#[test]
fn x_ferry_action_dead_letter_wins_over_a_200() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.feed(redis, &message("jobs", b"x"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    sim.feed(
        worker,
        &answer(id, "Status: 200\r\nX-Ferry-Action: dead-letter\r\n\r\n", 0),
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="discarded"}"#),
        1.0
    );
}

#[test]
fn php_fpm_primary_script_unknown_is_a_pool_failure() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.feed(redis, &message("jobs", b"x"));
    let (worker, id) = worker_takes(&mut sim, PHP);
    let mut reply = Vec::new();
    encode_record(
        &mut reply,
        RecordType::Stderr,
        id,
        b"Primary script unknown",
    )
    .unwrap();
    reply.extend(answer(
        id,
        "Status: 404 Not Found\r\n\r\nFile not found.",
        0,
    ));
    sim.feed(worker, &reply);
    assert_eq!(sim.metric(r#"ferry_pool_circuit_open{pool="php"}"#), 1.0);
    assert_eq!(
        sim.metric(r#"ferry_backlog_messages{source="events"}"#),
        1.0,
        "waits, no attempt burned"
    );
}

#[test]
fn sources_sharing_a_pool_are_served_in_turn() {
    let config = r#"{
      "control": {"listen": null},
      "pools": {"php": {"address": "unix:/php.sock", "max_in_flight": 1, "keep_conn": false}},
      "sources": [
        {"name": "a", "kind": "redis", "url": "redis://127.0.0.1:6379", "channels": ["a"],
         "job": {"pool": "php", "script": "/w.php", "body": "raw"}},
        {"name": "b", "kind": "redis", "url": "redis://127.0.0.2:6379", "channels": ["b"],
         "job": {"pool": "php", "script": "/w.php", "body": "raw"}}]
    }"#;
    let mut sim = Sim::new(config);
    let a = redis_up(&mut sim, "127.0.0.1:6379", &["a"]);
    let b = redis_up(&mut sim, "127.0.0.2:6379", &["b"]);
    for _ in 0..5 {
        sim.feed(a, &message("a", b"from-a"));
    }
    sim.feed(b, &message("b", b"from-b"));
    let mut order = Vec::new();
    for _ in 0..3 {
        let worker = sim.last_connect(PHP);
        sim.connected(worker);
        let request = sim.written(worker);
        order.push(if contains(&request, b"from-b") {
            'b'
        } else {
            'a'
        });
        worker_answers(&mut sim, worker, request_id(&request), 200);
    }
    assert_eq!(
        order,
        ['a', 'b', 'a'],
        "b's one message is not stuck behind a's five"
    );
}

#[test]
fn a_worker_socket_that_connects_at_once_gets_its_request_in_the_same_turn() {
    let (mut sim, redis) = redis_sim(REDIS_CONFIG);
    sim.io.connect_at_once = true; // a unix socket: connected or refused at once
    sim.feed(redis, &message("jobs", b"x"));
    let worker = sim.last_connect(PHP);
    let request = sim.written(worker);
    assert!(contains(&request, b"x"), "no wait for a writable event");
    worker_answers(&mut sim, worker, request_id(&request), 200);
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="events",outcome="acked"}"#),
        1.0
    );
}

/// php-fpm with `children` workers behind one socket: a child serves one kept connection
/// until ferry closes it; other connections wait in the listen backlog, unanswered.
struct Children {
    children: usize,
    /// Connections a child accepted: their place in the order of connects.
    serving: Vec<usize>,
    /// Connects accepted or passed over so far (the backlog is FIFO).
    seen: usize,
}

impl Children {
    /// The connection made as connect number `n`, while it is open (ids are reused).
    fn conn(sim: &Sim, n: usize) -> Option<ConnId> {
        let connects = sim.connects_to(PHP);
        let conn = *connects.get(n)?;
        let latest = connects.iter().rposition(|c| *c == conn)?;
        (latest == n && !sim.is_closed(conn)).then_some(conn)
    }

    /// Frees the children of closed connections, lets them accept from the backlog, and
    /// answers every request written to a served connection. Returns requests answered.
    fn step(&mut self, sim: &mut Sim) -> usize {
        self.serving.retain(|n| Self::conn(sim, *n).is_some());
        let total = sim.connects_to(PHP).len();
        while self.serving.len() < self.children && self.seen < total {
            if Self::conn(sim, self.seen).is_some() {
                self.serving.push(self.seen);
            }
            self.seen += 1;
        }
        let mut answered = 0;
        for n in self.serving.clone() {
            let Some(conn) = Self::conn(sim, n) else {
                continue;
            };
            let request = sim.written(conn);
            if request.len() >= 8 {
                worker_answers(sim, conn, request_id(&request), 200);
                answered += 1;
            }
        }
        answered
    }
}

#[test]
fn kept_connections_beyond_the_workers_are_not_left_waiting() {
    let config = REDIS_CONFIG.replace(
        r#""max_in_flight": 2, "keep_conn": false"#,
        r#""max_in_flight": 8, "keep_conn": true"#,
    );
    let config = config.replace(
        r#""channels": ["jobs"],"#,
        r#""channels": ["jobs"], "backlog": 10000,"#,
    );
    let (mut sim, redis) = redis_sim(&config);
    sim.io.connect_at_once = true;
    let mut php = Children {
        children: 4,
        serving: Vec::new(),
        seen: 0,
    };
    for n in 0..200 {
        sim.feed(redis, &message("jobs", format!("{n}").as_bytes()));
    }
    let mut answered = 0;
    for _ in 0..500 {
        answered += php.step(&mut sim);
        if answered >= 200 {
            break;
        }
    }
    assert_eq!(
        answered, 200,
        "every message answered, none stuck in the backlog"
    );
    let pool = sim.engine.pools.keys()[0];
    assert_eq!(
        sim.engine.pools[pool].capacity.learned,
        Some(4),
        "four workers learned"
    );
    let open = (0..sim.connects_to(PHP).len())
        .filter(|n| Children::conn(&sim, *n).is_some())
        .count();
    assert!(open <= 4, "no more kept connections than workers: {open}");
    assert!(
        sim.connects_to(PHP).len() < 40,
        "kept connections are reused: {} connects for 200 requests",
        sim.connects_to(PHP).len()
    );
}

/// Four workers that finish together (equal jobs started at once) answer in one batch:
/// the first three completions must not make the fourth look starved — it was served,
/// its answer is just read last (a wrong "keeping at most 3 connections" used to follow).
#[test]
fn answers_read_in_one_batch_do_not_look_like_a_starved_connection() {
    let config = REDIS_CONFIG.replace(
        r#""max_in_flight": 2, "keep_conn": false"#,
        r#""max_in_flight": 4, "keep_conn": true"#,
    );
    let (mut sim, redis) = redis_sim(&config);
    sim.io.connect_at_once = true;
    for round in 0..3 {
        for n in 0..4 {
            sim.feed(redis, &message("jobs", format!("{round}-{n}").as_bytes()));
        }
        let conns: Vec<ConnId> = sim
            .io
            .open
            .iter()
            .copied()
            .filter(|c| {
                sim.io
                    .connects
                    .iter()
                    .any(|(k, a)| k == c && a.to_string() == PHP)
            })
            .collect();
        assert_eq!(conns.len(), 4, "round {round}: four connections");
        let head = "Status: 200\r\nContent-Type: text/plain\r\n\r\nok";
        for conn in &conns {
            let request = sim.written(*conn);
            let bytes = answer(request_id(&request), head, 0);
            sim.engine.buffers_mut(*conn).unwrap().push_input(&bytes);
        }
        // One readiness batch, then the end of the loop turn.
        for conn in &conns {
            sim.ready(*conn, Fill::Drained);
        }
        sim.turn();
    }
    let pool = sim.engine.pools.keys()[0];
    assert_eq!(
        sim.engine.pools[pool].capacity.learned, None,
        "nothing starved: no capacity learned"
    );
    assert_eq!(
        sim.connects_to(PHP).len(),
        4,
        "the four kept connections served every round"
    );
}
