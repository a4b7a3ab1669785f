//! The stream reply decoders: RESP2 and RESP3 shapes as Redis 7.0 sends them, every
//! prefix of a reply (partial, never an error), and hostile replies.

use super::*;
use crate::proto::resp::{decode, Limits};
use crate::proto::Status;

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn entry_bytes(id: &str, fields: Option<&[(&str, &str)]>) -> Vec<u8> {
    let mut out = b"*2\r\n".to_vec();
    bulk(&mut out, id.as_bytes());
    match fields {
        Some(fields) => {
            out.extend_from_slice(format!("*{}\r\n", fields.len() * 2).as_bytes());
            for (k, v) in fields {
                bulk(&mut out, k.as_bytes());
                bulk(&mut out, v.as_bytes());
            }
        }
        None => out.extend_from_slice(b"*-1\r\n"),
    }
    out
}

/// An XREADGROUP reply for stream `s`: RESP2 (`*1 [[s, entries]]`) or RESP3 (`%1`).
fn read_reply(resp3: bool, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = if resp3 {
        b"%1\r\n".to_vec()
    } else {
        b"*1\r\n*2\r\n".to_vec()
    };
    bulk(&mut out, b"s");
    out.extend_from_slice(format!("*{}\r\n", entries.len()).as_bytes());
    for e in entries {
        out.extend_from_slice(e);
    }
    out
}

fn frame(bytes: &[u8]) -> Frame<'_> {
    match decode(bytes, &Limits::default()).expect("valid RESP") {
        Status::Complete(frame, used) => {
            assert_eq!(used, bytes.len());
            frame
        }
        Status::Partial => panic!("partial"),
    }
}

#[test]
fn entry_ids_are_ms_dash_seq() {
    assert_eq!(
        EntryId::parse(b"1526919030474-55"),
        Some(EntryId {
            ms: 1_526_919_030_474,
            seq: 55
        })
    );
    assert_eq!(EntryId::parse(b"0-0"), Some(EntryId::ZERO));
    for bad in [
        &b""[..],
        b"12",
        b"-1",
        b"1-",
        b"1--2",
        b"a-1",
        b"1-2-3",
        b" 1-2",
        b"+1-2",
        b"99999999999999999999999-1",
    ] {
        assert_eq!(
            EntryId::parse(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(EntryId { ms: 5, seq: 7 }.to_string(), "5-7");
    assert_eq!(EntryId { ms: 5, seq: 7 }.to_bytes(), b"5-7");
    assert!(EntryId { ms: 1, seq: 9 } < EntryId { ms: 2, seq: 0 });
}

#[test]
fn xreadgroup_resp2_and_resp3_read_the_same() {
    let entries = [
        entry_bytes("1-1", Some(&[("a", "1"), ("b", "two words")])),
        entry_bytes("1-2", None),
        entry_bytes("2-0", Some(&[])),
    ];
    for resp3 in [false, true] {
        let bytes = read_reply(resp3, &entries);
        let list = xreadgroup(&frame(&bytes), b"s").unwrap().unwrap();
        assert_eq!(list.len(), 3);
        let got: Vec<_> = list.iter().collect();
        assert_eq!(got[0].id, EntryId { ms: 1, seq: 1 });
        let fields = got[0].fields.unwrap();
        assert_eq!(
            fields.iter().collect::<Vec<_>>(),
            vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"two words"[..])]
        );
        assert_eq!(fields.get(b"b"), Some(&b"two words"[..]));
        assert_eq!(fields.get(b"c"), None);
        assert_eq!(fields.len(), 2);
        // The raw bytes read back as the same fields (what a job keeps).
        let kept = Fields::from_raw(fields.raw(), fields.element_count());
        assert!(kept.iter().eq(fields.iter()));
        assert!(got[1].fields.is_none(), "deleted: [id, nil]");
        assert!(got[2].fields.unwrap().is_empty());
    }
}

#[test]
fn a_timed_out_block_is_null_in_both_protocols() {
    for null in [&b"*-1\r\n"[..], b"_\r\n", b"$-1\r\n"] {
        assert!(xreadgroup(&frame(null), b"s").unwrap().is_none());
    }
}

#[test]
fn every_prefix_of_a_reply_is_partial_never_an_error() {
    let bytes = read_reply(
        true,
        &[
            entry_bytes("1-1", Some(&[("k", "v")])),
            entry_bytes("1-2", None),
        ],
    );
    for end in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..end], &Limits::default()),
            Ok(Status::Partial),
            "prefix of {end} bytes"
        );
    }
    assert!(xreadgroup(&frame(&bytes), b"s").unwrap().is_some());
    // And through the resumable decoder, a byte at a time.
    let mut decoder = crate::proto::resp::Decoder::default();
    for end in 1..=bytes.len() {
        match decoder.decode(&bytes[..end]).unwrap() {
            Status::Partial => assert!(end < bytes.len()),
            Status::Complete(f, used) => {
                assert_eq!(used, bytes.len());
                assert_eq!(xreadgroup(&f, b"s").unwrap().unwrap().len(), 2);
            }
        }
    }
}

#[test]
fn hostile_xreadgroup_replies_are_typed_errors() {
    let odd = {
        let mut e = b"*2\r\n".to_vec();
        bulk(&mut e, b"1-1");
        e.extend_from_slice(b"*3\r\n");
        bulk(&mut e, b"a");
        bulk(&mut e, b"b");
        bulk(&mut e, b"c");
        e
    };
    assert_eq!(
        xreadgroup(&frame(&read_reply(false, &[odd])), b"s").unwrap_err(),
        StreamReplyError::OddFieldCount
    );
    let bad_id = entry_bytes("12", Some(&[("a", "b")]));
    assert_eq!(
        xreadgroup(&frame(&read_reply(false, &[bad_id])), b"s").unwrap_err(),
        StreamReplyError::BadEntryId
    );
    let not_string = {
        let mut e = b"*2\r\n".to_vec();
        bulk(&mut e, b"1-1");
        e.extend_from_slice(b"*2\r\n:1\r\n");
        bulk(&mut e, b"b");
        e
    };
    assert_eq!(
        xreadgroup(&frame(&read_reply(true, &[not_string])), b"s").unwrap_err(),
        StreamReplyError::FieldNotString
    );
    let three = b"*3\r\n$3\r\n1-1\r\n*0\r\n*0\r\n".to_vec();
    assert!(matches!(
        xreadgroup(&frame(&read_reply(true, &[three])), b"s").unwrap_err(),
        StreamReplyError::WrongLength {
            part: "entry",
            found: 3
        }
    ));
    let mut other = b"*1\r\n*2\r\n".to_vec();
    bulk(&mut other, b"t");
    other.extend_from_slice(b"*0\r\n");
    assert_eq!(
        xreadgroup(&frame(&other), b"s").unwrap_err(),
        StreamReplyError::OtherStream
    );
    assert!(matches!(
        xreadgroup(&frame(b":3\r\n"), b"s").unwrap_err(),
        StreamReplyError::UnexpectedType { .. }
    ));
    assert!(matches!(
        xreadgroup(&frame(b"*2\r\n*0\r\n*0\r\n"), b"s").unwrap_err(),
        StreamReplyError::WrongLength { .. }
    ));
    // A lying length is the RESP decoder's to catch: the frame never completes or fails.
    let lying = b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$9\r\nab\r\n";
    assert!(!matches!(
        decode(lying, &Limits::default()),
        Ok(Status::Complete(..))
    ));
}

#[test]
fn xautoclaim_answers_three_elements_in_7_and_two_in_6_2() {
    let mut seven = b"*3\r\n".to_vec();
    bulk(&mut seven, b"0-0");
    seven.extend_from_slice(b"*1\r\n");
    seven.extend(entry_bytes("3-1", Some(&[("x", "y")])));
    seven.extend_from_slice(b"*2\r\n");
    bulk(&mut seven, b"1-1");
    bulk(&mut seven, b"1-2");
    let claimed = xautoclaim(&frame(&seven)).unwrap();
    assert_eq!(claimed.cursor, EntryId::ZERO);
    assert_eq!(claimed.entries.len(), 1);
    assert_eq!(
        claimed.deleted.iter().collect::<Vec<_>>(),
        vec![EntryId { ms: 1, seq: 1 }, EntryId { ms: 1, seq: 2 }]
    );
    let mut six = b"*2\r\n".to_vec();
    bulk(&mut six, b"5-0");
    six.extend_from_slice(b"*0\r\n");
    let claimed = xautoclaim(&frame(&six)).unwrap();
    assert_eq!(claimed.cursor, EntryId { ms: 5, seq: 0 });
    assert!(claimed.entries.is_empty() && claimed.deleted.is_empty());
    assert!(xautoclaim(&frame(b"*1\r\n$3\r\n0-0\r\n")).is_err());
    let mut bad = b"*3\r\n".to_vec();
    bulk(&mut bad, b"0-0");
    bad.extend_from_slice(b"*0\r\n*1\r\n");
    bulk(&mut bad, b"nope");
    assert_eq!(
        xautoclaim(&frame(&bad)).unwrap_err(),
        StreamReplyError::BadEntryId
    );
}

#[test]
fn xpending_extended_and_summary() {
    let mut lines = b"*1\r\n*4\r\n".to_vec();
    bulk(&mut lines, b"7-1");
    bulk(&mut lines, b"host-a");
    lines.extend_from_slice(b":1500\r\n:3\r\n");
    let list = xpending(&frame(&lines)).unwrap();
    assert_eq!(
        list.iter().next(),
        Some(PendingEntry {
            id: EntryId { ms: 7, seq: 1 },
            consumer: b"host-a",
            idle_ms: 1500,
            deliveries: 3
        })
    );
    assert!(xpending(&frame(b"*0\r\n")).unwrap().is_empty());
    assert!(xpending(&frame(b"*1\r\n*3\r\n$3\r\n7-1\r\n$1\r\nc\r\n:1\r\n")).is_err());
    assert_eq!(
        xpending(&frame(b"*1\r\n*4\r\n$3\r\n7-1\r\n$1\r\nc\r\n:-1\r\n:1\r\n")).unwrap_err(),
        StreamReplyError::BadNumber
    );

    let mut summary = b"*4\r\n:3\r\n".to_vec();
    bulk(&mut summary, b"1-0");
    bulk(&mut summary, b"9-0");
    summary.extend_from_slice(b"*2\r\n*2\r\n");
    bulk(&mut summary, b"a");
    bulk(&mut summary, b"2");
    summary.extend_from_slice(b"*2\r\n");
    bulk(&mut summary, b"b");
    bulk(&mut summary, b"1");
    let s = xpending_summary(&frame(&summary)).unwrap();
    assert_eq!(s.count, 3);
    assert_eq!(s.pending_of(b"a"), 2);
    assert_eq!(s.pending_of(b"b"), 1);
    assert_eq!(s.pending_of(b"z"), 0);
    let empty = xpending_summary(&frame(b"*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n")).unwrap();
    assert_eq!((empty.count, empty.range), (0, None));
    let empty3 = xpending_summary(&frame(b"*4\r\n:0\r\n_\r\n_\r\n_\r\n")).unwrap();
    assert_eq!(empty3.consumers().count(), 0);
}

fn group(resp3: bool, name: &str, lag: Option<i64>) -> Vec<u8> {
    let mut out = if resp3 {
        b"%6\r\n".to_vec()
    } else {
        b"*12\r\n".to_vec()
    };
    bulk(&mut out, b"name");
    bulk(&mut out, name.as_bytes());
    bulk(&mut out, b"consumers");
    out.extend_from_slice(b":2\r\n");
    bulk(&mut out, b"pending");
    out.extend_from_slice(b":5\r\n");
    bulk(&mut out, b"last-delivered-id");
    bulk(&mut out, b"10-1");
    bulk(&mut out, b"entries-read");
    out.extend_from_slice(b":10\r\n");
    bulk(&mut out, b"lag");
    match lag {
        Some(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        None if resp3 => out.extend_from_slice(b"_\r\n"),
        None => out.extend_from_slice(b"$-1\r\n"),
    }
    out
}

#[test]
fn xinfo_groups_finds_the_group_in_both_protocols() {
    for resp3 in [false, true] {
        let mut bytes = b"*2\r\n".to_vec();
        bytes.extend(group(resp3, "other", Some(1)));
        bytes.extend(group(resp3, "g", Some(42)));
        let info = xinfo_groups(&frame(&bytes), b"g").unwrap().unwrap();
        assert_eq!(info.lag, Some(42));
        assert_eq!(info.pending, 5);
        assert_eq!(info.consumers, 2);
        assert_eq!(info.last_delivered, Some(EntryId { ms: 10, seq: 1 }));
        assert!(xinfo_groups(&frame(&bytes), b"nope").unwrap().is_none());
        let mut unknown = b"*1\r\n".to_vec();
        unknown.extend(group(resp3, "g", None));
        assert_eq!(
            xinfo_groups(&frame(&unknown), b"g").unwrap().unwrap().lag,
            None
        );
    }
    assert!(xinfo_groups(
        &frame(b"*1\r\n*3\r\n$4\r\nname\r\n$1\r\ng\r\n$3\r\nlag\r\n"),
        b"g"
    )
    .is_err());
}

#[test]
fn xinfo_consumers_lists_names_pending_and_idle() {
    let mut bytes = b"*1\r\n*6\r\n".to_vec();
    bulk(&mut bytes, b"name");
    bulk(&mut bytes, b"h-src");
    bulk(&mut bytes, b"pending");
    bytes.extend_from_slice(b":0\r\n");
    bulk(&mut bytes, b"idle");
    bytes.extend_from_slice(b":90000\r\n");
    let list = xinfo_consumers(&frame(&bytes)).unwrap();
    assert_eq!(
        list.iter().collect::<Vec<_>>(),
        vec![ConsumerInfo {
            name: b"h-src",
            pending: 0,
            idle_ms: 90000
        }]
    );
}
