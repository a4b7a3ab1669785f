//! The stream consumer session against scripted Redis replies.

use super::*;

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// An entry as a test writes it: its id, and its fields unless deleted.
type TestEntry<'a> = (&'a str, Option<&'a [(&'a str, &'a str)]>);

fn entries(resp3: bool, list: &[TestEntry<'_>]) -> Vec<u8> {
    let mut out = if resp3 {
        b"%1\r\n".to_vec()
    } else {
        b"*1\r\n*2\r\n".to_vec()
    };
    bulk(&mut out, b"s");
    out.extend_from_slice(format!("*{}\r\n", list.len()).as_bytes());
    for (id, fields) in list {
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

fn pending_line(id: &str, consumer: &str, count: u64) -> Vec<u8> {
    let mut out = b"*1\r\n*4\r\n".to_vec();
    bulk(&mut out, id.as_bytes());
    bulk(&mut out, consumer.as_bytes());
    out.extend_from_slice(format!(":10\r\n:{count}\r\n").as_bytes());
    out
}

const HELLO3: &[u8] = b"%1\r\n$5\r\nproto\r\n:3\r\n";

fn sent(session: &mut StreamConsumer, now: Instant) -> String {
    let mut out = Vec::new();
    session.poll_transmit(&mut out, now);
    String::from_utf8_lossy(&out).replace("\r\n", " ")
}

fn events(session: &mut StreamConsumer) -> Vec<StreamEvent> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn feed(session: &mut StreamConsumer, bytes: &[u8], now: Instant) {
    assert_eq!(session.handle_input(bytes, now), Ok(bytes.len()));
}

/// A session past HELLO 3 and an `XGROUP CREATE` answered BUSYGROUP.
fn ready(now: Instant) -> StreamConsumer {
    let mut config = StreamConfig::new(b"s", b"g", b"me");
    config.client_name = Some(b"ferry:src".to_vec());
    let mut session = StreamConsumer::new(config, now);
    let hello = sent(&mut session, now);
    assert!(hello.starts_with("*4 $5 HELLO $1 3 $7 SETNAME"), "{hello}");
    feed(&mut session, HELLO3, now);
    assert!(sent(&mut session, now).contains("XGROUP $6 CREATE $1 s $1 g $1 $ $8 MKSTREAM"));
    feed(
        &mut session,
        b"-BUSYGROUP Consumer Group name already exists\r\n",
        now,
    );
    assert_eq!(events(&mut session), vec![StreamEvent::Ready]);
    session
}

#[test]
fn recovery_reads_own_pending_entries_with_their_counters_then_new_ones() {
    let now = Instant::now();
    let mut session = ready(now);
    assert!(session.is_recovering());
    session.fetch(3, now);
    let read = sent(&mut session, now);
    assert!(
        read.contains("XREADGROUP $5 GROUP $1 g $2 me $5 COUNT $1 3 $7 STREAMS $1 s $3 0-0"),
        "{read}"
    );
    assert!(!read.contains("BLOCK"), "history reads do not block");
    assert_eq!(session.entries_on_the_way(), 3);
    feed(
        &mut session,
        &entries(true, &[("1-1", Some(&[("a", "1")])), ("1-2", None)]),
        now,
    );
    assert_eq!(
        events(&mut session),
        vec![StreamEvent::Deleted(vec![EntryId { ms: 1, seq: 2 }])]
    );
    let ask = sent(&mut session, now);
    assert!(
        ask.contains("XPENDING $1 s $1 g $3 1-1 $3 1-1 $1 1"),
        "{ask}"
    );
    session.fetch(3, now);
    assert!(sent(&mut session, now).is_empty(), "one read at a time");
    feed(&mut session, &pending_line("1-1", "me", 4), now);
    let got = events(&mut session);
    let [StreamEvent::Entries {
        kind,
        entries: batch,
    }] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!(*kind, ReadKind::Pending);
    assert_eq!(batch[0].deliveries, 4);
    assert_eq!(
        batch[0].fields().iter().collect::<Vec<_>>(),
        vec![(&b"a"[..], &b"1"[..])]
    );
    // Next history read goes on after the last id, finds nothing: recovery is over.
    session.fetch(3, now);
    assert!(sent(&mut session, now).contains("$3 1-2"));
    feed(&mut session, &entries(true, &[]), now);
    assert_eq!(events(&mut session), vec![StreamEvent::RecoveryDone]);
    session.ack(EntryId { ms: 1, seq: 1 });
    session.ack(EntryId { ms: 1, seq: 2 });
    session.fetch(2, now);
    let out = sent(&mut session, now);
    let ack_at = out.find("XACK $1 s $1 g $3 1-1 $3 1-2").expect(&out);
    let read_at = out.find("BLOCK $4 1000 $7 STREAMS $1 s $1 >").expect(&out);
    assert!(ack_at < read_at, "acks go before the blocking read: {out}");
    assert!(session.is_blocked());
    feed(&mut session, b":2\r\n_\r\n", now);
    assert!(events(&mut session).is_empty());
    assert!(!session.read_outstanding());
}

#[test]
fn new_entries_count_one_delivery_and_resp2_reads_the_same() {
    let now = Instant::now();
    let mut config = StreamConfig::new(b"s", b"g", b"me");
    config.resp3 = false;
    config.create_group = None;
    let mut session = StreamConsumer::new(config, now);
    assert!(sent(&mut session, now).contains("HELLO $1 2"));
    feed(&mut session, b"*2\r\n$5\r\nproto\r\n:2\r\n", now);
    assert_eq!(events(&mut session), vec![StreamEvent::Ready]);
    assert_eq!(session.protocol(), Some(Version::Resp2));
    session.fetch(1, now);
    feed(&mut session, &entries(false, &[]), now);
    assert_eq!(events(&mut session), vec![StreamEvent::RecoveryDone]);
    session.fetch(5, now);
    sent(&mut session, now);
    feed(
        &mut session,
        &entries(
            false,
            &[("5-0", Some(&[("n", "1")])), ("5-1", Some(&[("n", "2")]))],
        ),
        now,
    );
    let got = events(&mut session);
    let [StreamEvent::Entries {
        kind: ReadKind::New,
        entries: batch,
    }] = &got[..]
    else {
        panic!("{got:?}")
    };
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|e| e.deliveries == 1));
    session.fetch(5, now);
    sent(&mut session, now);
    feed(&mut session, b"*-1\r\n", now);
    assert!(
        events(&mut session).is_empty(),
        "a timed-out block is nothing"
    );
}

#[test]
fn commands_given_during_the_handshake_wait_for_it() {
    let now = Instant::now();
    let mut session = StreamConsumer::new(StreamConfig::new(b"s", b"g", b"me"), now);
    sent(&mut session, now);
    session.ack(EntryId { ms: 9, seq: 9 });
    session.fetch(1, now);
    assert!(
        sent(&mut session, now).is_empty(),
        "nothing before HELLO's answer"
    );
    feed(&mut session, HELLO3, now);
    let out = sent(&mut session, now);
    assert!(
        out.contains("XGROUP") && !out.contains("XREADGROUP"),
        "{out}"
    );
    feed(&mut session, b"+OK\r\n", now);
    let out = sent(&mut session, now);
    assert!(out.contains("XACK $1 s $1 g $3 9-9"), "{out}");
    assert!(out.contains("XREADGROUP"), "{out}");
    assert_eq!(session.unconfirmed_acks(), vec![EntryId { ms: 9, seq: 9 }]);
    feed(&mut session, b":1\r\n", now);
    assert!(session.unconfirmed_acks().is_empty());
}

#[test]
fn a_dead_letter_is_one_transaction() {
    let now = Instant::now();
    let mut session = ready(now);
    let mut raw = Vec::new();
    bulk(&mut raw, b"k");
    bulk(&mut raw, b"v");
    let id = EntryId { ms: 3, seq: 0 };
    session.dead_letter(
        b"s.ferry-dead",
        id,
        Fields::from_raw(&raw, 2),
        b"timeout",
        5,
    );
    let out = sent(&mut session, now);
    assert!(out.starts_with("*1 $5 MULTI *9 $4 XADD $12 s.ferry-dead $1 * $1 k $1 v $13 ferry-failure $7 timeout $14 ferry-attempts $1 5 *4 $4 XACK $1 s $1 g $3 3-0 *1 $4 EXEC"), "{out}");
    feed(
        &mut session,
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$3\r\n4-0\r\n:1\r\n",
        now,
    );
    assert_eq!(events(&mut session), vec![StreamEvent::DeadLettered(id)]);
}

#[test]
fn a_retry_claims_the_entry_back_or_learns_who_took_it() {
    let now = Instant::now();
    let mut session = ready(now);
    let id = EntryId { ms: 7, seq: 1 };
    session.claim_retry(id, Duration::from_millis(1500), now);
    assert!(sent(&mut session, now).contains("XCLAIM $1 s $1 g $2 me $4 1500 $3 7-1"));
    let mut claimed = b"*1\r\n*2\r\n".to_vec();
    bulk(&mut claimed, b"7-1");
    claimed.extend_from_slice(b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n");
    feed(&mut session, &claimed, now);
    assert!(sent(&mut session, now).contains("XPENDING"));
    feed(&mut session, &pending_line("7-1", "me", 3), now);
    let got = events(&mut session);
    assert!(
        matches!(&got[..], [StreamEvent::Entries { kind: ReadKind::Retry, entries }] if entries[0].deliveries == 3),
        "{got:?}"
    );
    session.claim_retry(id, Duration::from_millis(1500), now);
    sent(&mut session, now);
    feed(&mut session, b"*0\r\n", now);
    assert!(sent(&mut session, now).contains("XPENDING $1 s $1 g $3 7-1 $3 7-1 $1 1"));
    feed(&mut session, &pending_line("7-1", "other", 4), now);
    assert_eq!(
        events(&mut session),
        vec![StreamEvent::RetryGone {
            id,
            owner: Some(b"other".to_vec())
        }]
    );
}

#[test]
fn autoclaim_scans_reports_deleted_ids_and_the_end() {
    let now = Instant::now();
    let mut session = ready(now);
    session.autoclaim(Duration::from_secs(90), 4, now);
    assert!(sent(&mut session, now)
        .contains("XAUTOCLAIM $1 s $1 g $2 me $5 90000 $3 0-0 $5 COUNT $1 4"));
    let mut reply = b"*3\r\n".to_vec();
    bulk(&mut reply, b"0-0");
    reply.extend_from_slice(b"*1\r\n*2\r\n");
    bulk(&mut reply, b"2-2");
    reply.extend_from_slice(b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n");
    bulk(&mut reply, b"2-1");
    feed(&mut session, &reply, now);
    assert_eq!(
        events(&mut session),
        vec![
            StreamEvent::Deleted(vec![EntryId { ms: 2, seq: 1 }]),
            StreamEvent::ClaimScanDone
        ]
    );
    feed(&mut session, &pending_line("2-2", "me", 2), now);
    let got = events(&mut session);
    assert!(
        matches!(&got[..], [StreamEvent::Entries { kind: ReadKind::Claimed, entries }] if entries[0].deliveries == 2)
    );
}

#[test]
fn the_status_poll_and_the_consumer_rule() {
    let now = Instant::now();
    let mut session = ready(now);
    session.poll_status(now);
    sent(&mut session, now);
    let mut summary =
        b"*4\r\n:3\r\n$3\r\n1-0\r\n$3\r\n2-0\r\n*1\r\n*2\r\n$2\r\nme\r\n$1\r\n3\r\n".to_vec();
    summary.extend_from_slice(b"*1\r\n%2\r\n$4\r\nname\r\n$1\r\ng\r\n$3\r\nlag\r\n:7\r\n");
    feed(&mut session, &summary, now);
    assert_eq!(
        events(&mut session),
        vec![StreamEvent::Status {
            mine: 3,
            group_pending: 3,
            lag: Some(7)
        }]
    );
    session.reap_consumers(Duration::from_secs(60), b"-src", now);
    assert!(sent(&mut session, now).contains("XINFO $9 CONSUMERS $1 s $1 g"));
    let consumer = |name: &str, pending: u64, idle: u64| {
        let mut out = b"*6\r\n".to_vec();
        bulk(&mut out, b"name");
        bulk(&mut out, name.as_bytes());
        out.extend_from_slice(
            format!("$7\r\npending\r\n:{pending}\r\n$4\r\nidle\r\n:{idle}\r\n").as_bytes(),
        );
        out
    };
    let mut list = b"*5\r\n".to_vec();
    list.extend(consumer("old-src", 0, 120_000)); // removed
    list.extend(consumer("busy-src", 2, 120_000)); // holds entries
    list.extend(consumer("fresh-src", 0, 1_000)); // recently seen
    list.extend(consumer("someone-else", 0, 120_000)); // not ferry's naming
    list.extend(consumer("me", 0, 120_000)); // itself
    feed(&mut session, &list, now);
    let out = sent(&mut session, now);
    assert_eq!(out.matches("DELCONSUMER").count(), 1, "{out}");
    assert!(out.contains("DELCONSUMER $1 s $1 g $7 old-src"));
    feed(&mut session, b":0\r\n", now);
    assert_eq!(
        events(&mut session),
        vec![StreamEvent::ConsumerRemoved(b"old-src".to_vec())]
    );
}

#[test]
fn keepalive_and_a_dead_peer_behind_a_block() {
    let now = Instant::now();
    let mut session = ready(now);
    let ping_at = session.poll_timeout().unwrap();
    assert_eq!(ping_at, now + DEFAULT_KEEPALIVE);
    session.handle_timeout(ping_at);
    assert!(sent(&mut session, ping_at).contains("PING"));
    feed(&mut session, b"+PONG\r\n", ping_at);
    let t = ping_at + Duration::from_secs(1);
    session.fetch(1, t);
    sent(&mut session, t);
    feed(&mut session, &entries(true, &[]), t);
    events(&mut session);
    session.fetch(1, t);
    sent(&mut session, t);
    // Blocked: the deadline allows the block plus the pong timeout.
    let dead = session.poll_timeout().unwrap();
    assert_eq!(
        dead,
        t + Duration::from_secs(1) + super::super::DEFAULT_PONG_TIMEOUT
    );
    session.handle_timeout(dead);
    assert!(matches!(
        events(&mut session)[..],
        [StreamEvent::Failed(StreamError::PeerDead { .. })]
    ));
    assert!(session.is_over());
}

const DEFAULT_KEEPALIVE: Duration = super::super::DEFAULT_KEEPALIVE_INTERVAL;

#[test]
fn finish_waits_for_the_replies_of_what_was_sent() {
    let now = Instant::now();
    let mut session = ready(now);
    session.ack(EntryId { ms: 1, seq: 0 });
    session.finish(now);
    assert!(sent(&mut session, now).contains("XACK"));
    assert!(events(&mut session).is_empty());
    feed(&mut session, b":1\r\n", now);
    assert_eq!(events(&mut session), vec![StreamEvent::Finished]);
}

#[test]
fn errors_read_and_handshake_are_fatal_others_are_not() {
    let now = Instant::now();
    let mut session = ready(now);
    session.ack(EntryId { ms: 1, seq: 0 });
    session.fetch(1, now);
    sent(&mut session, now);
    feed(&mut session, b"-ERR something\r\n", now);
    assert!(matches!(
        events(&mut session)[..],
        [StreamEvent::Error(StreamError::Rejected {
            command: "XACK",
            ..
        })]
    ));
    assert!(matches!(
        session.handle_input(b"-NOGROUP No such key 's' or consumer group 'g'\r\n", now),
        Err(StreamError::Rejected {
            command: "XREADGROUP",
            ..
        })
    ));
    let mut session = StreamConsumer::new(StreamConfig::new(b"s", b"g", b"me"), now);
    sent(&mut session, now);
    assert!(matches!(
        session.handle_input(b"-WRONGPASS invalid username-password pair\r\n", now),
        Err(StreamError::AuthFailed { .. })
    ));
    let mut session = ready(now);
    assert!(matches!(
        session.handle_input(b"+OK\r\n", now),
        Err(StreamError::UnexpectedFrame { .. })
    ));
}
