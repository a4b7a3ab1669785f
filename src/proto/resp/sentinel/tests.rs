//! The sentinel and role conversations against scripted replies.

use super::*;

fn creds(user: Option<&str>, pass: Option<&str>) -> Credentials {
    Credentials {
        username: user.map(|u| u.as_bytes().to_vec()),
        password: pass.map(|p| p.as_bytes().to_vec()),
    }
}

fn sent(watch: &mut SentinelWatch) -> String {
    let mut out = Vec::new();
    watch.poll_transmit(&mut out);
    String::from_utf8(out).unwrap()
}

fn events(watch: &mut SentinelWatch) -> Vec<WatchEvent> {
    std::iter::from_fn(|| watch.poll_event()).collect()
}

fn addr(host: &str, port: u16) -> MasterAddress {
    MasterAddress {
        host: host.into(),
        port,
    }
}

const ADDRESS: &[u8] = b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6390\r\n";
const SUBSCRIBED: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";

#[test]
fn asks_for_the_master_then_follows_its_switches_only() {
    let now = Instant::now();
    let mut watch = SentinelWatch::new(b"mymaster", &creds(None, None), now);
    assert_eq!(
        sent(&mut watch),
        "*3\r\n$8\r\nSENTINEL\r\n$23\r\nGET-MASTER-ADDR-BY-NAME\r\n$8\r\nmymaster\r\n\
         *2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n"
    );
    let mut input = ADDRESS.to_vec();
    input.extend_from_slice(SUBSCRIBED);
    // Byte by byte: every split point of the replies.
    let mut buffer = Vec::new();
    for byte in input {
        buffer.push(byte);
        let used = watch.handle_input(&buffer, now).unwrap();
        buffer.drain(..used);
    }
    assert!(buffer.is_empty());
    assert_eq!(
        events(&mut watch),
        [
            WatchEvent::Master(addr("127.0.0.1", 6390)),
            WatchEvent::Watching
        ]
    );
    let message = |payload: &str| {
        format!(
            "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n${}\r\n{payload}\r\n",
            payload.len()
        )
        .into_bytes()
    };
    let other = message("other 10.0.0.1 6379 10.0.0.2 6379");
    let ours = message("mymaster 127.0.0.1 6390 127.0.0.1 6391 extra");
    let ours_exact = message("mymaster 127.0.0.1 6390 127.0.0.1 6391");
    for msg in [other.as_slice(), ours.as_slice(), ours_exact.as_slice()] {
        assert_eq!(watch.handle_input(msg, now).unwrap(), msg.len());
    }
    assert_eq!(
        events(&mut watch),
        [WatchEvent::Switched {
            from: addr("127.0.0.1", 6390),
            to: addr("127.0.0.1", 6391)
        }],
        "another master's switch and a malformed payload are ignored"
    );
}

#[test]
fn auth_comes_first_and_a_refusal_is_named() {
    let now = Instant::now();
    let mut watch = SentinelWatch::new(b"m", &creds(Some("ferry"), Some("pw")), now);
    assert!(sent(&mut watch).starts_with("*3\r\n$4\r\nAUTH\r\n$5\r\nferry\r\n$2\r\npw\r\n"));
    let err = watch
        .handle_input(b"-WRONGPASS invalid username-password pair\r\n", now)
        .unwrap_err();
    assert!(matches!(err, SentinelError::AuthFailed(ref why) if why.contains("WRONGPASS")));
    assert_eq!(
        watch.handle_input(b"+OK\r\n", now),
        Err(err),
        "the conversation is over"
    );
}

#[test]
fn an_unknown_master_and_odd_answers_fail_clearly() {
    let now = Instant::now();
    let mut watch = SentinelWatch::new(b"nope", &creds(None, None), now);
    assert_eq!(
        watch.handle_input(b"*-1\r\n", now),
        Err(SentinelError::UnknownMaster("nope".into()))
    );
    for bad in [
        b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n99999\r\n".as_slice(),
        b"*1\r\n$9\r\n127.0.0.1\r\n",
        b"*2\r\n$3\r\na b\r\n$4\r\n6379\r\n",
        b":3\r\n",
        b"-ERR unknown command\r\n",
        b"?garbage\r\n",
    ] {
        let mut watch = SentinelWatch::new(b"m", &creds(None, None), now);
        assert!(watch.handle_input(bad, now).is_err(), "{bad:?}");
        assert!(events(&mut watch).is_empty());
    }
}

#[test]
fn a_quiet_sentinel_is_pinged_then_declared_dead() {
    let start = Instant::now();
    let mut watch = SentinelWatch::new(b"m", &creds(None, None), start);
    sent(&mut watch);
    watch.handle_input(ADDRESS, start).unwrap();
    watch.handle_input(SUBSCRIBED, start).unwrap();
    let ping_at = watch.poll_timeout().unwrap();
    assert_eq!(ping_at, start + WATCH_KEEPALIVE);
    watch.handle_timeout(ping_at).unwrap();
    assert_eq!(sent(&mut watch), "*1\r\n$4\r\nPING\r\n");
    // The PONG (RESP2 subscribed form) keeps it alive.
    let pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    assert_eq!(watch.handle_input(pong, ping_at).unwrap(), pong.len());
    let next = watch.poll_timeout().unwrap();
    assert_eq!(next, ping_at + WATCH_KEEPALIVE);
    watch.handle_timeout(next).unwrap();
    let dead_at = watch.poll_timeout().unwrap();
    assert_eq!(watch.handle_timeout(dead_at), Err(SentinelError::PeerDead));
    assert_eq!(watch.poll_timeout(), None);
}

#[test]
fn role_check_passes_a_master_and_leaves_later_bytes_alone() {
    let mut check = RoleCheck::new(&creds(None, Some("pw")), Instant::now());
    let mut out = Vec::new();
    check.poll_transmit(&mut out);
    assert_eq!(out, b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$4\r\nROLE\r\n");
    let role = b"+OK\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
    let mut input = role.to_vec();
    input.extend_from_slice(b"+NEXT\r\n");
    assert_eq!(check.handle_input(&input).unwrap(), role.len());
    assert!(check.confirmed());
}

#[test]
fn role_check_refuses_a_replica_and_bad_auth() {
    let replica = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6390\r\n$9\r\nconnected\r\n:10\r\n";
    let mut check = RoleCheck::new(&creds(None, None), Instant::now());
    assert_eq!(
        check.handle_input(replica),
        Err(SentinelError::NotMaster("slave".into()))
    );
    assert!(!check.confirmed());
    let mut check = RoleCheck::new(&creds(None, Some("x")), Instant::now());
    assert!(matches!(
        check.handle_input(b"-WRONGPASS no\r\n"),
        Err(SentinelError::AuthFailed(_))
    ));
    let mut check = RoleCheck::new(&creds(None, None), Instant::now());
    assert!(check.handle_input(b"%1\r\n+a\r\n+b\r\n").is_err());
}
