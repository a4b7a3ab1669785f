//! The RESP endpoint answers byte for byte as Redis 7.0 does (README.md "RESP endpoint
//! (no broker)"): every supported command, in RESP2 and RESP3, multibulk and inline, every
//! error case, is sent to the redis-server on 127.0.0.1:6379 (a private one started with
//! `--requirepass` for the password cases) and to ferry, and the raw replies compared.
//!
//! Where a value legitimately differs it is normalised or compared for shape explicitly,
//! and said so where it happens: `HELLO`'s `server`, `version` and `id` values, `CLIENT
//! ID`'s number, `PUBLISH` counts on a channel that makes jobs, and `CLIENT SETINFO`
//! (Redis 7.2 behaviour). Channel names are unique per run.

#[path = "support/endpoint.rs"]
mod endpoint;
#[path = "support/ferry.rs"]
mod ferry_proc;
#[path = "support/http.rs"]
mod http;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use endpoint::{command, connect, exchange, read_until, replies, show, until_closed};
use ferry_proc::unique;
use serde_json::json;

const REDIS: u16 = 6379;

/// A private redis-server with a password, killed on drop.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start(password: &str) -> PrivateRedis {
        let port = http::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (package redis-server) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { child, port }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the values that legitimately differ in a `HELLO` reply — `server` (ferry
/// names itself), `version` and `id` — by placeholders; everything else stays.
fn normalize_hello(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for key in [
        &b"$6\r\nserver\r\n"[..],
        b"$7\r\nversion\r\n",
        b"$2\r\nid\r\n",
    ] {
        let mut from = 0;
        while let Some(at) = find(&out[from..], key).map(|i| i + from) {
            let value_start = at + key.len();
            let line_end = find(&out[value_start..], b"\r\n").unwrap() + value_start + 2;
            let value_end = if out[value_start] == b'$' {
                let len: usize = std::str::from_utf8(&out[value_start + 1..line_end - 2])
                    .unwrap()
                    .parse()
                    .unwrap();
                line_end + len + 2
            } else {
                line_end
            };
            out.splice(value_start..value_end, b"<value>".iter().copied());
            from = value_start;
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn assert_same(what: &str, redis: &[u8], ferry: &[u8]) {
    let (redis, ferry) = (normalize_hello(redis), normalize_hello(ferry));
    assert!(
        redis == ferry,
        "{what}\n redis: {}\n ferry: {}",
        show(&redis),
        show(&ferry)
    );
}

/// Scripts answered on an open connection (a sentinel PING marks their end).
fn open_scripts(u: &str) -> Vec<(&'static str, Vec<u8>)> {
    let a = format!("{u}.a");
    let b = format!("{u}.b");
    let pattern = format!("{u}.*");
    let long_arg = "a".repeat(200);
    let long_name = format!("FOO{}", "x".repeat(200));
    let mut scripts: Vec<(&'static str, Vec<u8>)> = vec![
        ("ping and echo, inline", b"PING\r\nping hello\r\nPING a b\r\nECHO\r\nECHO hi\r\nECHO a b\r\nPiNg\r\n".to_vec()),
        ("ping and echo, multibulk", [
            command(&[b"PING"]), command(&[b"ping", b"hello"]), command(&[b"PING", b"a", b"b"]),
            command(&[b"ECHO"]), command(&[b"echo", b"bin\r\n\0ary"]),
        ].concat()),
        ("unknown commands", [
            b"FOO a b\r\nFOO\r\n".to_vec(),
            command(&[b"foo", b"a", b"b"]),
            format!("FOO {long_arg} b\r\n{long_name}\r\n").into_bytes(),
            b"FOO a\rb c\r\n".to_vec(),
            command(&[b"foo", b"a\nb"]),
            b"$-5\r\n".to_vec(),
        ].concat()),
        ("select", b"SELECT 0\r\nSELECT 16\r\nSELECT x\r\nSELECT -1\r\nSELECT 00\r\nSELECT +0\r\nSELECT\r\nSELECT 99999999999\r\n".to_vec()),
        ("auth without a password", b"AUTH x\r\nAUTH a b\r\nAUTH\r\nAUTH default x\r\nAUTH a b c\r\n".to_vec()),
        ("client", b"CLIENT GETNAME\r\nCLIENT SETNAME foo\r\nCLIENT GETNAME\r\nCLIENT SETNAME \"a b\"\r\nCLIENT SETNAME\r\nCLIENT\r\nCLIENT FOO\r\nclient foo a b\r\nCLIENT ID x\r\nCLIENT GETNAME x\r\nCLIENT SETNAME \"\"\r\nCLIENT GETNAME\r\nclient setname a\x01\r\n".to_vec()),
        ("hello", b"HELLO\r\nHELLO 2\r\nHELLO 4\r\nHELLO x\r\nHELLO 3 SETNAME\r\nHELLO 2 FOO\r\nHELLO 1\r\nHELLO -1\r\nHELLO 99999999999999999999\r\nHELLO 3 4\r\nHELLO 3 SETNAME a b\r\nHELLO 2 SETNAME a\x01b\r\n".to_vec()),
        ("hello 3, then RESP3 replies", b"HELLO 3\r\nCLIENT GETNAME\r\nPING\r\nECHO x\r\nFOO\r\nHELLO 3 SETNAME x\r\nCLIENT GETNAME\r\nHELLO 2\r\nCLIENT GETNAME\r\n".to_vec()),
        ("hello auth without a password", b"HELLO 3 AUTH default x\r\nHELLO 2 AUTH a b\r\nHELLO 3 AUTH\r\nHELLO 3 AUTH a\r\n".to_vec()),
        ("reset", b"CLIENT SETNAME x\r\nHELLO 3\r\nRESET\r\nCLIENT GETNAME\r\nPING\r\nRESET x\r\n".to_vec()),
        ("publish", [
            command(&[b"PUBLISH", a.as_bytes(), b"x"]),
            command(&[b"PUBLISH", a.as_bytes()]),
            command(&[b"publish", b"", b""]),
        ].concat()),
        ("inline quoting and empty requests", [
            &b"ECHO \"a\\x41\\n\"\r\nECHO 'a\\'b'\r\nECHO \"\"\r\nECHO \"\\t\\q\"\r\nECHO a\"b c\"\r\n"[..],
            b"\r\n\r\n   \r\nPING\n*0\r\n*-1\r\nPING\r\n*1\r\n$4\r\nPINGxx\r\n",
        ].concat()),
    ];
    // The subscribed context, RESP2.
    scripts.push((
        "subscribed context, RESP2",
        [
            command(&[b"SUBSCRIBE", a.as_bytes(), b.as_bytes()]),
            b"PING\r\nPING x\r\nECHO x\r\nFOO\r\nCLIENT GETNAME\r\nSELECT 0\r\nHELLO 2\r\n"
                .to_vec(),
            command(&[b"PUBLISH", a.as_bytes(), b"b"]),
            command(&[b"UNSUBSCRIBE", a.as_bytes()]),
            b"UNSUBSCRIBE\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nPSUBSCRIBE\r\nSUBSCRIBE\r\n".to_vec(),
        ]
        .concat(),
    ));
    scripts.push((
        "repeated and unknown subscriptions",
        [
            command(&[b"SUBSCRIBE", a.as_bytes(), a.as_bytes()]),
            command(&[b"PSUBSCRIBE", pattern.as_bytes(), pattern.as_bytes()]),
            command(&[b"UNSUBSCRIBE", b"zz", a.as_bytes()]),
            command(&[b"PUNSUBSCRIBE", pattern.as_bytes()]),
            command(&[b"SUBSCRIBE", b.as_bytes()]),
            b"RESET\r\nPING\r\n".to_vec(),
        ]
        .concat(),
    ));
    scripts.push((
        "subscribed, RESP3: pushes, and a message to oneself",
        [
            b"HELLO 3\r\n".to_vec(),
            command(&[b"SUBSCRIBE", a.as_bytes()]),
            b"PING\r\nECHO x\r\n".to_vec(),
            command(&[b"PSUBSCRIBE", pattern.as_bytes()]),
            command(&[b"PUBLISH", a.as_bytes(), b"to myself"]),
            b"PUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n".to_vec(),
        ]
        .concat(),
    ));
    scripts
}

/// Scripts that end with the server closing the connection.
fn closing_scripts() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("quit", b"PING\r\nQUIT\r\nPING\r\n".to_vec()),
        ("quit with arguments", b"QUIT x\r\n".to_vec()),
        ("quit while subscribed", b"SUBSCRIBE q\r\nQUIT\r\n".to_vec()),
        ("multibulk length", b"PING\r\n*2147483648\r\n".to_vec()),
        ("multibulk garbage", b"*x\r\n".to_vec()),
        ("negative bulk length", b"*1\r\n$-5\r\n".to_vec()),
        ("bulk too long", b"*1\r\n$600000000\r\n".to_vec()),
        ("expected $", b"ECHO a\r\n*1\r\nx\r\n".to_vec()),
        ("unbalanced double quote", b"a \"b\r\n".to_vec()),
        ("unbalanced single quote", b"a 'b\r\n".to_vec()),
        ("text after a closing quote", b"ECHO \"a\"b\r\n".to_vec()),
        ("too big inline", vec![b'x'; 70_000]),
        (
            "too big multibulk count",
            [&b"*"[..], &vec![b'1'; 70_000]].concat(),
        ),
        (
            "too big bulk count",
            [&b"*1\r\n$"[..], &vec![b'1'; 70_000]].concat(),
        ),
    ]
}

#[test]
fn replies_match_redis_byte_for_byte() {
    let ep = endpoint::start("ferry-endpoint-conformance", json!({}));
    let u = unique("ferry-test-conf");
    for (what, script) in open_scripts(&u) {
        let redis = replies(REDIS, &script);
        let ferry = replies(ep.port, &script);
        assert_same(what, &redis, &ferry);
    }
    for (what, script) in closing_scripts() {
        let redis = until_closed(REDIS, &script);
        let ferry = until_closed(ep.port, &script);
        assert!(
            redis.ends_with(b"\r\n") || what.starts_with("quit"),
            "{what}: {}",
            show(&redis)
        );
        assert_same(what, &redis, &ferry);
    }
}

#[test]
fn password_cases_match_a_redis_with_requirepass() {
    let redis = PrivateRedis::start("pw");
    let ep = endpoint::start("ferry-endpoint-conformance-pw", json!({ "password": "pw" }));
    let open: Vec<(&str, &[u8])> = vec![
        ("before auth", b"PING\r\nFOO a\r\nECHO\r\nCLIENT ID\r\nSUBSCRIBE a\r\nSELECT 0\r\nAUTH x\r\nAUTH a b\r\nAUTH pw\r\nPING\r\n"),
        ("auth as default", b"AUTH default x\r\nAUTH default pw\r\nECHO ok\r\n"),
        ("hello before auth", b"HELLO\r\nHELLO 3\r\nHELLO 3 AUTH default x\r\nHELLO 3 AUTH\r\nHELLO 3 AUTH a\r\nHELLO 3 AUTH default pw SETNAME n\r\nCLIENT GETNAME\r\n"),
        ("reset forgets auth", b"RESET\r\nPING\r\nAUTH pw\r\nPING\r\nRESET\r\nPING\r\n"),
    ];
    for (what, script) in open {
        // The sentinel needs authentication: end every script authenticated.
        let script = [script, b"AUTH pw\r\n"].concat();
        let from_redis = replies(redis.port, &script);
        let from_ferry = replies(ep.port, &script);
        assert_same(what, &from_redis, &from_ferry);
    }
    let closing: Vec<(&str, &[u8])> = vec![
        ("quit before auth", b"QUIT\r\n"),
        ("too many arguments before auth", b"*11\r\n"),
        ("too long a bulk before auth", b"*1\r\n$16385\r\n"),
    ];
    for (what, script) in closing {
        let from_redis = until_closed(redis.port, script);
        let from_ferry = until_closed(ep.port, script);
        assert_same(what, &from_redis, &from_ferry);
    }
}

#[test]
fn messages_reach_subscribers_as_redis_sends_them() {
    let ep = endpoint::start("ferry-endpoint-conformance-fanout", json!({}));
    let u = unique("ferry-test-fanout");
    let channel = format!("{u}.c");
    let pattern = format!("{u}.*");
    for hello in [&b""[..], b"HELLO 3\r\n"] {
        let mut received = Vec::new();
        for port in [REDIS, ep.port] {
            let mut subscriber = connect(port);
            let setup = [
                hello.to_vec(),
                command(&[b"SUBSCRIBE", channel.as_bytes()]),
                command(&[b"PSUBSCRIBE", pattern.as_bytes()]),
            ]
            .concat();
            let confirmations = exchange(&mut subscriber, &setup);
            let publish = [
                command(&[b"PUBLISH", channel.as_bytes(), b"hello"]),
                command(&[b"PUBLISH", format!("{u}.other").as_bytes(), b"\r\nbinary\0"]),
                command(&[b"PUBLISH", b"elsewhere", b"nobody"]),
            ]
            .concat();
            let counts = replies(port, &publish);
            assert_eq!(counts, b":2\r\n:1\r\n:0\r\n", "{}", show(&counts));
            let messages = read_until(&mut subscriber, b"binary\0\r\n");
            received.push((confirmations, messages));
        }
        assert_same("subscriber confirmations", &received[0].0, &received[1].0);
        assert_same("messages", &received[0].1, &received[1].1);
    }
}

#[test]
fn values_that_differ_from_redis_have_redis_shapes() {
    let ep = endpoint::start("ferry-endpoint-conformance-shapes", json!({}));
    // CLIENT ID: an integer, its own number.
    for port in [REDIS, ep.port] {
        let id = replies(port, b"CLIENT ID\r\n");
        let text = std::str::from_utf8(&id).unwrap();
        let number = text
            .strip_prefix(':')
            .and_then(|t| t.strip_suffix("\r\n"))
            .unwrap();
        assert!(number.parse::<u64>().unwrap() > 0, "{text}");
    }
    // HELLO: Redis's field names and order; ferry's own server name, version and id.
    let hello = replies(ep.port, b"HELLO 3\r\n");
    let text = String::from_utf8_lossy(&hello);
    assert!(
        text.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nferry\r\n$7\r\nversion\r\n"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "{}\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:",
        env!("CARGO_PKG_VERSION")
    )));
    // CLIENT SETINFO answers as Redis 7.2 does (7.0 does not know it).
    let setinfo = replies(
        ep.port,
        b"CLIENT SETINFO lib-name phpredis\r\nCLIENT SETINFO LIB-VER 6.0\r\nCLIENT SETINFO x y\r\nCLIENT SETINFO lib-name \"a b\"\r\nCLIENT SETINFO lib-name\r\n",
    );
    assert_eq!(
        show(&setinfo),
        show(b"+OK\r\n+OK\r\n-ERR Unrecognized option 'x'\r\n-ERR lib-name cannot contain spaces, newlines or special characters.\r\n-ERR wrong number of arguments for 'client|setinfo' command\r\n")
    );
    // PUBLISH on a job channel counts the job: one more receiver than Redis counts.
    let mut subscriber = connect(ep.port);
    exchange(
        &mut subscriber,
        &command(&[b"SUBSCRIBE", ep.channel.as_bytes()]),
    );
    let mut redis_subscriber = connect(REDIS);
    exchange(
        &mut redis_subscriber,
        &command(&[b"SUBSCRIBE", ep.channel.as_bytes()]),
    );
    let publish = command(&[b"PUBLISH", ep.channel.as_bytes(), b"job"]);
    assert_eq!(replies(REDIS, &publish), b":1\r\n");
    assert_eq!(
        replies(ep.port, &publish),
        b":2\r\n",
        "the subscriber and the job"
    );
    assert_eq!(ep.wait_for_jobs(1).len(), 1);
}
