//! Redis Streams sources against a scripted Redis: reads sized to the pool, acks batched
//! before the next read, retries claimed back with their delivery counter, dead letters
//! in one transaction, recovery after a reconnect, hand-back on pause, drain.

use std::time::Duration;

use super::*;

/// Stream source `orders` (stream `s`, group `g`, consumer `me`) and pool `php` (2 slots).
const STREAM_CONFIG: &str = r#"{
  "control": {"listen": null},
  "pools": {"php": {"address": "unix:/php.sock", "max_in_flight": 2, "keep_conn": false}},
  "sources": [{"name": "orders", "kind": "redis_stream", "url": "redis://127.0.0.1:6379",
               "stream": "s", "group": "g", "consumer": "me", "max_attempts": 3,
               "retry_delays_ms": [1000], "claim_idle_ms": 60000,
               "job": {"pool": "php", "script": "/w.php"}}]
}"#;

const HELLO3: &[u8] = b"%2\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n";
const NO_ENTRIES: &[u8] = b"*1\r\n*2\r\n$1\r\ns\r\n*0\r\n";
const SUMMARY_EMPTY: &[u8] = b"*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n";

/// An XREADGROUP reply (RESP2) with `entries`; `None` fields: deleted while pending.
/// An entry as a test writes it: its id, and its fields unless deleted.
type TestEntry<'a> = (&'a str, Option<&'a [(&'a str, &'a str)]>);

fn read_reply(entries: &[TestEntry<'_>]) -> Vec<u8> {
    let mut out = b"*1\r\n*2\r\n".to_vec();
    bulk(&mut out, b"s");
    out.extend_from_slice(format!("*{}\r\n", entries.len()).as_bytes());
    for (id, fields) in entries {
        out.extend_from_slice(b"*2\r\n");
        bulk(&mut out, id.as_bytes());
        match fields {
            Some(fields) => {
                out.extend_from_slice(format!("*{}\r\n", fields.len() * 2).as_bytes());
                for (k, v) in *fields {
                    bulk(&mut out, k.as_bytes());
                    bulk(&mut out, v.as_bytes());
                }
            }
            None => out.extend_from_slice(b"*-1\r\n"),
        }
    }
    out
}

/// `XPENDING s g id id 1`'s answer: held by `me`, delivered `count` times.
fn count_reply(id: &str, count: u64) -> Vec<u8> {
    let mut out = b"*1\r\n*4\r\n".to_vec();
    bulk(&mut out, id.as_bytes());
    bulk(&mut out, b"me");
    out.extend_from_slice(format!(":5\r\n:{count}\r\n").as_bytes());
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", " ")
}

/// Connects the source, answers the handshake, the status poll and an empty recovery:
/// it is left blocked in `XREADGROUP … >`, whose command text is returned.
fn stream_up(sim: &mut Sim, pending: &[u8]) -> (ConnId, String) {
    let conn = sim.last_connect(REDIS_ADDRESS);
    sim.connected(conn);
    assert!(text(&sim.written(conn)).contains("HELLO $1 3"));
    sim.feed(conn, HELLO3);
    assert!(text(&sim.written(conn)).contains("XGROUP $6 CREATE $1 s $1 g $1 $ $8 MKSTREAM"));
    sim.feed(conn, b"-BUSYGROUP Consumer Group name already exists\r\n");
    let first = text(&sim.written(conn));
    assert!(
        first.contains("XREADGROUP $5 GROUP $1 g $2 me $5 COUNT")
            && first.contains("$7 STREAMS $1 s $3 0-0"),
        "own pending entries first: {first}"
    );
    assert!(first.contains("XPENDING $1 s $1 g") && first.contains("XINFO $6 GROUPS"));
    let mut replies = pending.to_vec();
    replies.extend_from_slice(SUMMARY_EMPTY);
    replies.extend_from_slice(b"*0\r\n");
    sim.feed(conn, &replies);
    (conn, text(&sim.written(conn)))
}

/// Finishes the recovery (an empty history read) after `stream_up` was given entries.
fn finish_recovery(sim: &mut Sim, conn: ConnId) -> String {
    sim.feed(conn, NO_ENTRIES);
    text(&sim.written(conn))
}

/// The worker connections opened since `before` connects to the pool.
fn new_workers(sim: &Sim, before: usize) -> Vec<ConnId> {
    sim.connects_to(PHP)[before..].to_vec()
}

#[test]
fn reads_ask_for_what_the_pool_can_take_and_acks_go_before_the_next_read() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, after) = stream_up(&mut sim, NO_ENTRIES);
    assert!(after.contains("XINFO $9 CONSUMERS"), "{after}");
    assert!(
        after.contains("COUNT $1 2 $5 BLOCK $4 1000 $7 STREAMS $1 s $1 >"),
        "two free slots, a short block: {after}"
    );
    sim.feed(conn, b"*0\r\n"); // XINFO CONSUMERS: nobody to remove
    assert_eq!(sim.status()["sources"][0]["state"], "connected");
    sim.feed(
        conn,
        &read_reply(&[
            ("1-1", Some(&[("n", "1"), ("who", "Ann Lee")])),
            ("1-2", Some(&[("n", "2")])),
        ]),
    );
    let workers = new_workers(&sim, 0);
    assert_eq!(workers.len(), 2);
    assert!(
        !text(&sim.written(conn)).contains("XREADGROUP"),
        "no room, no read"
    );
    let mut ids = Vec::new();
    for &worker in &workers {
        sim.connected(worker);
        let request = sim.written(worker);
        assert!(contains(&request, b"FERRY_KINDredis_stream"));
        assert!(contains(&request, b"FERRY_STREAMs"));
        assert!(contains(&request, b"FERRY_ATTEMPT1"));
        assert!(contains(&request, b"application/x-www-form-urlencoded"));
        ids.push(request_id(&request));
    }
    worker_answers(&mut sim, workers[0], ids[0], 200);
    let out = text(&sim.written(conn));
    let ack = out.find("XACK $1 s $1 g $3 1-1").expect(&out);
    let read = out.find("COUNT $1 1 $5 BLOCK").expect(&out);
    assert!(ack < read, "the ack goes before the next read: {out}");
    worker_answers(&mut sim, workers[1], ids[1], 200);
    let out = text(&sim.written(conn));
    assert!(out.contains("XACK $1 s $1 g $3 1-2"), "{out}");
    assert!(!out.contains("XREADGROUP"), "one read at a time: {out}");
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="orders",outcome="acked"}"#),
        2.0
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_received_total{source="orders"}"#),
        2.0
    );
}

#[test]
fn a_form_body_is_the_fields_in_order() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, _) = stream_up(&mut sim, NO_ENTRIES);
    sim.feed(conn, b"*0\r\n");
    sim.feed(
        conn,
        &read_reply(&[("1-1", Some(&[("z", "1"), ("a", "x y")]))]),
    );
    let worker = sim.last_connect(PHP);
    sim.connected(worker);
    let request = sim.written(worker);
    assert!(contains(&request, b"z=1&a=x+y"));
    assert!(contains(&request, b"FERRY_MESSAGE_ID1-1"));
}

#[test]
fn a_retry_stays_pending_and_comes_back_claimed_with_its_delivery_counter() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, _) = stream_up(&mut sim, NO_ENTRIES);
    sim.feed(conn, b"*0\r\n");
    sim.feed(conn, &read_reply(&[("1-1", Some(&[("n", "1")]))]));
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 500);
    let out = text(&sim.written(conn));
    assert!(!out.contains("XACK"), "a failed entry stays pending: {out}");
    sim.advance(Duration::from_millis(999));
    assert!(!text(&sim.written(conn)).contains("XCLAIM"));
    sim.advance(Duration::from_millis(1));
    let out = text(&sim.written(conn));
    assert!(
        out.contains("XCLAIM $1 s $1 g $2 me $4 1000 $3 1-1"),
        "claimed back once idle for the delay: {out}"
    );
    // The block read answers first (nothing), then the claim; its counter is asked.
    let mut replies = b"*-1\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nn\r\n$1\r\n1\r\n".to_vec();
    sim.feed(conn, &replies);
    assert!(text(&sim.written(conn)).contains("XPENDING $1 s $1 g $3 1-1 $3 1-1 $1 1"));
    replies = count_reply("1-1", 2);
    let before = sim.connects_to(PHP).len();
    sim.feed(conn, &replies);
    let worker = new_workers(&sim, before)[0];
    sim.connected(worker);
    let request = sim.written(worker);
    assert!(
        contains(&request, b"FERRY_ATTEMPT2"),
        "the delivery counter is the attempt"
    );
    assert!(contains(&request, b"n=1"));
    assert_eq!(
        sim.metric(r#"ferry_messages_received_total{source="orders"}"#),
        1.0
    );
}

#[test]
fn a_permanent_failure_is_dead_lettered_and_acked_in_one_transaction() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, _) = stream_up(&mut sim, NO_ENTRIES);
    sim.feed(conn, b"*0\r\n");
    sim.feed(conn, &read_reply(&[("1-1", Some(&[("n", "1")]))]));
    let (worker, id) = worker_takes(&mut sim, PHP);
    worker_answers(&mut sim, worker, id, 400);
    let out = text(&sim.written(conn));
    assert!(
        out.contains("*1 $5 MULTI *9 $4 XADD $12 s.ferry-dead $1 * $1 n $1 1 $13 ferry-failure $12 client_error $14 ferry-attempts $1 1 *4 $4 XACK $1 s $1 g $3 1-1 *1 $4 EXEC"),
        "{out}"
    );
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="orders",outcome="dead_lettered"}"#),
        1.0
    );
}

#[test]
fn after_a_reconnect_unconfirmed_acks_are_sent_again_and_held_entries_are_skipped() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, _) = stream_up(&mut sim, NO_ENTRIES);
    sim.feed(conn, b"*0\r\n");
    sim.feed(
        conn,
        &read_reply(&[("1-1", Some(&[("n", "1")])), ("1-2", Some(&[("n", "2")]))]),
    );
    let workers = new_workers(&sim, 0);
    let mut ids = Vec::new();
    for &w in &workers {
        sim.connected(w);
        ids.push(request_id(&sim.written(w)));
    }
    // 1-1 succeeds; its XACK is written, never answered: the connection drops.
    worker_answers(&mut sim, workers[0], ids[0], 200);
    assert!(text(&sim.written(conn)).contains("XACK $1 s $1 g $3 1-1"));
    sim.eof(conn);
    sim.advance(Duration::from_secs(2));
    let conn2 = sim.last_connect(REDIS_ADDRESS);
    sim.connected(conn2);
    sim.written(conn2);
    sim.feed(conn2, HELLO3);
    sim.written(conn2);
    sim.feed(conn2, b"+OK\r\n");
    let out = text(&sim.written(conn2));
    let ack = out.find("XACK $1 s $1 g $3 1-1").expect(&out);
    let read = out.find("$3 0-0").expect(&out);
    assert!(ack < read, "acks first, then own pending entries: {out}");
    // Recovery returns 1-2 (still running here: skipped) and 1-3 (not held: runs).
    let mut replies = b":1\r\n".to_vec();
    replies.extend(read_reply(&[
        ("1-2", Some(&[("n", "2")])),
        ("1-3", Some(&[("n", "3")])),
    ]));
    replies.extend_from_slice(SUMMARY_EMPTY);
    replies.extend_from_slice(b"*0\r\n");
    sim.feed(conn2, &replies);
    let out = text(&sim.written(conn2));
    assert!(out.contains("XPENDING $1 s $1 g $3 1-2") && out.contains("$3 1-3 $3 1-3"));
    let mut counts = count_reply("1-2", 2);
    counts.extend(count_reply("1-3", 4));
    let before = sim.connects_to(PHP).len();
    sim.feed(conn2, &counts);
    let fresh = new_workers(&sim, before);
    assert_eq!(fresh.len(), 1, "1-2 is held: not run twice");
    sim.connected(fresh[0]);
    let request = sim.written(fresh[0]);
    assert!(contains(&request, b"FERRY_MESSAGE_ID1-3"));
    assert!(contains(&request, b"FERRY_ATTEMPT4"));
    // 1-2 still settles, on the new connection.
    worker_answers(&mut sim, workers[1], ids[1], 200);
    assert!(text(&sim.written(conn2)).contains("XACK $1 s $1 g $3 1-2"));
}

#[test]
fn entries_deleted_while_pending_are_acked_and_counted_discarded() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, out) = stream_up(&mut sim, &read_reply(&[("1-1", None)]));
    assert!(out.contains("XACK $1 s $1 g $3 1-1"), "{out}");
    assert_eq!(
        sim.metric(r#"ferry_messages_settled_total{source="orders",outcome="discarded"}"#),
        1.0
    );
    sim.feed(conn, b":1\r\n");
    let out = finish_recovery(&mut sim, conn);
    assert!(out.contains("BLOCK"), "{out}");
}

#[test]
fn pause_leaves_unstarted_entries_pending_and_resume_reads_them_again() {
    let mut sim = Sim::new(
        STREAM_CONFIG
            .replace("\"max_in_flight\": 2", "\"max_in_flight\": 1")
            .as_str(),
    );
    let (conn, _) = stream_up(&mut sim, NO_ENTRIES);
    sim.feed(conn, b"*0\r\n");
    sim.feed(conn, &read_reply(&[("1-1", Some(&[("n", "1")]))]));
    let (worker, id) = worker_takes(&mut sim, PHP);
    sim.engine.pause_source(crate::engine::ids::SourceId(0));
    sim.turn();
    worker_answers(&mut sim, worker, id, 200);
    let out = text(&sim.written(conn));
    assert!(out.contains("XACK"), "work in flight settles: {out}");
    assert!(!out.contains("XREADGROUP"), "paused: nothing read: {out}");
    sim.engine.resume_source(crate::engine::ids::SourceId(0));
    sim.turn();
    let out = text(&sim.written(conn));
    assert!(
        out.contains("STREAMS $1 s $3 0-0"),
        "own pending entries first: {out}"
    );
}

#[test]
fn drain_stops_reading_settles_and_waits_for_the_last_replies() {
    let mut sim = Sim::new(STREAM_CONFIG);
    let (conn, _) = stream_up(&mut sim, NO_ENTRIES);
    sim.feed(conn, b"*0\r\n");
    sim.feed(conn, &read_reply(&[("1-1", Some(&[("n", "1")]))]));
    let (worker, id) = worker_takes(&mut sim, PHP);
    sim.written(conn);
    sim.sigterm();
    worker_answers(&mut sim, worker, id, 200);
    let out = text(&sim.written(conn));
    assert!(
        out.contains("XACK $1 s $1 g $3 1-1") && !out.contains("XREADGROUP"),
        "{out}"
    );
    assert!(!sim.is_closed(conn), "the ack's reply is awaited");
    assert_eq!(sim.exit, None);
    // The block read that was out returns, then the ack is answered.
    sim.feed(conn, b"*-1\r\n:1\r\n");
    assert!(sim.is_closed(conn));
    assert_eq!(sim.exit, Some(0));
}
