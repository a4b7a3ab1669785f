//! One client of the RESP endpoint: what Redis 7.0 keeps per connection (protocol version,
//! authentication, name, id, subscriptions) and the commands that need nothing else
//! (README.md "RESP endpoint (no broker)"). Commands are checked in the order of Redis's
//! `processCommand` (redis `src/server.c`): unknown command or subcommand, arity,
//! authentication, the RESP2 subscribed context; then run. Replies are written into the
//! caller's buffer exactly as Redis words and shapes them.
//!
//! What needs state shared between clients comes out instead: [`Outcome::Publish`] (the
//! runtime delivers it and answers with the receiver count), and subscription changes
//! ([`ClientSession::take_changes`]) for the runtime's channel and pattern index.
//!
//! Differences from Redis, on purpose: one database (`SELECT` of anything but 0 is out of
//! range); one user, `default`; `HELLO` names the server `ferry` with ferry's version;
//! `CLIENT SETINFO` answers as Redis 7.2 does (phpredis and redis-py 5 send it).

use std::collections::HashMap;

use super::reader::{parse_i64, Command};
use crate::proto::resp::{
    array_header, bulk_string, error, integer, map_header, null, push_header, simple_string,
    Version,
};

/// What a client's session needs to know about its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The password of user `default`; `None` lets every client in.
    pub password: Option<Vec<u8>>,
    /// `CLIENT ID` and `HELLO`'s `id`.
    pub id: u64,
    /// `HELLO`'s `version`.
    pub server_version: &'static str,
}

/// A channel or a pattern subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// `SUBSCRIBE`.
    Channel,
    /// `PSUBSCRIBE`.
    Pattern,
}

/// A subscription the client added or dropped, for the runtime's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Channel or pattern.
    pub kind: SubscriptionKind,
    /// Its name.
    pub name: Vec<u8>,
    /// Added (true) or dropped.
    pub subscribed: bool,
}

/// What the runtime must do after [`ClientSession::handle`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'c> {
    /// The reply is written.
    Replied,
    /// `PUBLISH`: deliver, then answer with the number of receivers (an integer).
    Publish {
        /// The channel.
        channel: &'c [u8],
        /// The message.
        message: &'c [u8],
    },
    /// `QUIT`: the reply is written; close once it is sent.
    Close,
}

/// One client's state; see the module docs.
#[derive(Debug, Clone)]
pub struct ClientSession {
    config: SessionConfig,
    version: Version,
    authenticated: bool,
    name: Option<Vec<u8>>,
    /// Subscriptions with the order they were made in (a bare `UNSUBSCRIBE` answers in
    /// that order; Redis uses its dict's order, which is unspecified).
    channels: HashMap<Vec<u8>, u64>,
    patterns: HashMap<Vec<u8>, u64>,
    next_seq: u64,
    changes: Vec<Change>,
}

/// A command ferry knows: its full name (for error texts), arity as Redis gives it
/// (positive: exactly; negative: at least), and flags.
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: Name,
    full_name: &'static str,
    arity: i32,
    /// Runs before authentication (`CMD_NO_AUTH`).
    no_auth: bool,
    /// Allowed in the RESP2 subscribed context.
    in_pubsub: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Ping,
    Echo,
    Select,
    Auth,
    Hello,
    Quit,
    Reset,
    Publish,
    Subscribe,
    Psubscribe,
    Unsubscribe,
    Punsubscribe,
    Client,
    ClientId,
    ClientGetname,
    ClientSetname,
    ClientSetinfo,
}

const fn spec(name: Name, full_name: &'static str, arity: i32) -> Spec {
    Spec {
        name,
        full_name,
        arity,
        no_auth: false,
        in_pubsub: false,
    }
}

const fn no_auth(mut spec: Spec) -> Spec {
    spec.no_auth = true;
    spec
}

const fn in_pubsub(mut spec: Spec) -> Spec {
    spec.in_pubsub = true;
    spec
}

fn lookup_top(name: &[u8]) -> Option<Spec> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_slice() {
        b"ping" => in_pubsub(spec(Name::Ping, "ping", -1)),
        b"echo" => spec(Name::Echo, "echo", 2),
        b"select" => spec(Name::Select, "select", 2),
        b"auth" => no_auth(spec(Name::Auth, "auth", -2)),
        b"hello" => no_auth(spec(Name::Hello, "hello", -1)),
        b"quit" => in_pubsub(no_auth(spec(Name::Quit, "quit", -1))),
        b"reset" => in_pubsub(no_auth(spec(Name::Reset, "reset", 1))),
        b"publish" => spec(Name::Publish, "publish", 3),
        b"subscribe" => in_pubsub(spec(Name::Subscribe, "subscribe", -2)),
        b"psubscribe" => in_pubsub(spec(Name::Psubscribe, "psubscribe", -2)),
        b"unsubscribe" => in_pubsub(spec(Name::Unsubscribe, "unsubscribe", -1)),
        b"punsubscribe" => in_pubsub(spec(Name::Punsubscribe, "punsubscribe", -1)),
        b"client" => spec(Name::Client, "client", -2),
        _ => return None,
    })
}

fn lookup_client(sub: &[u8]) -> Option<Spec> {
    let lower = sub.to_ascii_lowercase();
    Some(match lower.as_slice() {
        b"id" => spec(Name::ClientId, "client|id", 2),
        b"getname" => spec(Name::ClientGetname, "client|getname", 2),
        b"setname" => spec(Name::ClientSetname, "client|setname", 3),
        b"setinfo" => spec(Name::ClientSetinfo, "client|setinfo", 4),
        _ => return None,
    })
}

/// What `%.Ns` prints of an argument: up to its first NUL, at most `max` bytes.
fn c_text(bytes: &[u8], max: usize) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(bytes.len())
        .min(max);
    bytes.get(..end).unwrap_or_default()
}

/// `-ERR …` with CR/LF turned into spaces (the encoder does that).
fn error_text(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let mut text = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        text.extend_from_slice(part);
    }
    error(out, &text);
}

fn wrong_arity(out: &mut Vec<u8>, full_name: &str) {
    error_text(
        out,
        &[
            b"ERR wrong number of arguments for '",
            full_name.as_bytes(),
            b"' command",
        ],
    );
}

/// A name Redis accepts for a client (`CLIENT SETNAME`): printable, no spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

const NOAUTH: &[u8] = b"NOAUTH Authentication required.";
const WRONGPASS: &[u8] = b"WRONGPASS invalid username-password pair or user is disabled.";
const AUTH_WITHOUT_PASSWORD: &[u8] = b"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const HELLO_NOAUTH: &[u8] = b"NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
const BAD_NAME: &[u8] = b"ERR Client names cannot contain spaces, newlines or special characters.";
const NOT_AN_INTEGER: &[u8] = b"ERR value is not an integer or out of range";
/// `getIntFromObjectOrReply`'s words for a valid number outside `int` (sic).
const OUT_OF_INT_RANGE: &[u8] =
    b"ERR value is out of range, value must between -2147483648 and 2147483647";

impl ClientSession {
    /// A new connection: RESP2, authenticated unless a password is set.
    pub fn new(config: SessionConfig) -> ClientSession {
        ClientSession {
            authenticated: config.password.is_none(),
            config,
            version: Version::Resp2,
            name: None,
            channels: HashMap::new(),
            patterns: HashMap::new(),
            next_seq: 0,
            changes: Vec::new(),
        }
    }

    /// The protocol negotiated with `HELLO` (messages are encoded for it).
    pub fn version(&self) -> Version {
        self.version
    }

    /// False while a password is required and not given (the reader's tighter limits).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// `CLIENT ID`.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// Channels and patterns subscribed to (the count in confirmations).
    pub fn subscription_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Every subscription, for the runtime to drop from its index when the client leaves.
    pub fn subscriptions(&self) -> impl Iterator<Item = (SubscriptionKind, &[u8])> {
        self.channels
            .keys()
            .map(|c| (SubscriptionKind::Channel, c.as_slice()))
            .chain(
                self.patterns
                    .keys()
                    .map(|p| (SubscriptionKind::Pattern, p.as_slice())),
            )
    }

    /// Subscription changes since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Runs one command, writing its reply into `out` (see [`Outcome`]).
    pub fn handle<'c>(&mut self, command: &'c Command<'_>, out: &mut Vec<u8>) -> Outcome<'c> {
        let Some(name) = command.arg(0) else {
            return Outcome::Replied;
        };
        let Some(mut found) = lookup_top(name) else {
            self.unknown_command(command, out);
            return Outcome::Replied;
        };
        if found.name == Name::Client && command.len() >= 2 {
            let sub = command.arg(1).unwrap_or_default();
            match lookup_client(sub) {
                Some(sub_spec) => found = sub_spec,
                None => {
                    error_text(
                        out,
                        &[
                            b"ERR unknown subcommand '",
                            c_text(sub, 128),
                            b"'. Try CLIENT HELP.",
                        ],
                    );
                    return Outcome::Replied;
                }
            }
        }
        let argc = i64::try_from(command.len()).unwrap_or(i64::MAX);
        let arity = i64::from(found.arity);
        if (arity > 0 && argc != arity) || argc < -arity {
            wrong_arity(out, found.full_name);
            return Outcome::Replied;
        }
        if !self.authenticated && !found.no_auth {
            error(out, NOAUTH);
            return Outcome::Replied;
        }
        if self.version == Version::Resp2 && self.subscription_count() > 0 && !found.in_pubsub {
            error_text(
                out,
                &[
                    b"ERR Can't execute '",
                    found.full_name.as_bytes(),
                    b"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                ],
            );
            return Outcome::Replied;
        }
        self.run(found.name, command, out)
    }

    fn unknown_command(&self, command: &Command<'_>, out: &mut Vec<u8>) {
        let mut text = b"ERR unknown command '".to_vec();
        text.extend_from_slice(c_text(command.arg(0).unwrap_or_default(), 128));
        text.extend_from_slice(b"', with args beginning with: ");
        let mut args: Vec<u8> = Vec::new();
        for arg in command.args.iter().skip(1) {
            if args.len() >= 128 {
                break;
            }
            let precision = 128 - args.len();
            args.push(b'\'');
            args.extend_from_slice(c_text(arg, precision));
            args.extend_from_slice(b"' ");
        }
        text.extend_from_slice(&args);
        error(out, &text);
    }

    fn run<'c>(&mut self, name: Name, command: &'c Command<'_>, out: &mut Vec<u8>) -> Outcome<'c> {
        let arg = |i: usize| command.arg(i).unwrap_or_default();
        match name {
            Name::Ping => self.ping(command, out),
            Name::Echo => bulk_string(out, arg(1)),
            Name::Select => match parse_i64(arg(1)).map(i32::try_from) {
                None => error(out, NOT_AN_INTEGER),
                Some(Err(_)) => error(out, OUT_OF_INT_RANGE),
                Some(Ok(0)) => simple_string(out, b"OK"),
                Some(Ok(_)) => error(out, b"ERR DB index is out of range"),
            },
            Name::Auth => self.auth(command, out),
            Name::Hello => self.hello(command, out),
            Name::Quit => {
                simple_string(out, b"OK");
                return Outcome::Close;
            }
            Name::Reset => {
                self.reset();
                simple_string(out, b"RESET");
            }
            Name::Publish => {
                return Outcome::Publish {
                    channel: arg(1),
                    message: arg(2),
                }
            }
            Name::Subscribe => self.subscribe(SubscriptionKind::Channel, command, out),
            Name::Psubscribe => self.subscribe(SubscriptionKind::Pattern, command, out),
            Name::Unsubscribe => self.unsubscribe(SubscriptionKind::Channel, command, out),
            Name::Punsubscribe => self.unsubscribe(SubscriptionKind::Pattern, command, out),
            // `CLIENT` alone fails its arity check; with a subcommand it is looked up.
            Name::Client => wrong_arity(out, "client"),
            Name::ClientId => integer(out, i64::try_from(self.config.id).unwrap_or(i64::MAX)),
            Name::ClientGetname => match &self.name {
                Some(name) => bulk_string(out, name),
                None => null(out, self.version),
            },
            Name::ClientSetname => {
                if valid_name(arg(2)) {
                    self.name = (!arg(2).is_empty()).then(|| arg(2).to_vec());
                    simple_string(out, b"OK");
                } else {
                    error(out, BAD_NAME);
                }
            }
            Name::ClientSetinfo => {
                let attribute = arg(2);
                if !attribute.eq_ignore_ascii_case(b"lib-name")
                    && !attribute.eq_ignore_ascii_case(b"lib-ver")
                {
                    error_text(
                        out,
                        &[
                            b"ERR Unrecognized option '",
                            c_text(attribute, usize::MAX),
                            b"'",
                        ],
                    );
                } else if !valid_name(arg(3)) {
                    error_text(
                        out,
                        &[
                            b"ERR ",
                            c_text(attribute, usize::MAX),
                            b" cannot contain spaces, newlines or special characters.",
                        ],
                    );
                } else {
                    simple_string(out, b"OK");
                }
            }
        }
        Outcome::Replied
    }

    fn ping(&self, command: &Command<'_>, out: &mut Vec<u8>) {
        if command.len() > 2 {
            wrong_arity(out, "ping");
            return;
        }
        let message = command.arg(1);
        if self.version == Version::Resp2 && self.subscription_count() > 0 {
            array_header(out, 2);
            bulk_string(out, b"pong");
            bulk_string(out, message.unwrap_or_default());
            return;
        }
        match message {
            Some(message) => bulk_string(out, message),
            None => simple_string(out, b"PONG"),
        }
    }

    /// Whether `user`/`password` are the credentials of `default`.
    fn credentials_ok(&self, user: &[u8], password: &[u8]) -> bool {
        user == b"default"
            && self
                .config
                .password
                .as_deref()
                .is_none_or(|expected| expected == password)
    }

    fn auth(&mut self, command: &Command<'_>, out: &mut Vec<u8>) {
        if command.len() > 3 {
            error(out, b"ERR syntax error");
            return;
        }
        let (user, password) = if command.len() == 2 {
            if self.config.password.is_none() {
                error(out, AUTH_WITHOUT_PASSWORD);
                return;
            }
            (&b"default"[..], command.arg(1).unwrap_or_default())
        } else {
            (
                command.arg(1).unwrap_or_default(),
                command.arg(2).unwrap_or_default(),
            )
        };
        if self.credentials_ok(user, password) {
            self.authenticated = true;
            simple_string(out, b"OK");
        } else {
            error(out, WRONGPASS);
        }
    }

    fn hello(&mut self, command: &Command<'_>, out: &mut Vec<u8>) {
        let mut version = None;
        let mut next = 1;
        if let Some(requested) = command.arg(1) {
            next = 2;
            match parse_i64(requested) {
                None => {
                    error(
                        out,
                        b"ERR Protocol version is not an integer or out of range",
                    );
                    return;
                }
                Some(2) => version = Some(Version::Resp2),
                Some(3) => version = Some(Version::Resp3),
                Some(_) => {
                    error(out, b"NOPROTO unsupported protocol version");
                    return;
                }
            }
        }
        let mut credentials = None;
        let mut new_name = None;
        while let Some(option) = command.arg(next) {
            let more = command.len() - 1 - next;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                credentials = Some((
                    command.arg(next + 1).unwrap_or_default(),
                    command.arg(next + 2).unwrap_or_default(),
                ));
                next += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                new_name = Some(command.arg(next + 1).unwrap_or_default());
                next += 2;
            } else {
                error_text(
                    out,
                    &[
                        b"ERR Syntax error in HELLO option '",
                        c_text(option, usize::MAX),
                        b"'",
                    ],
                );
                return;
            }
        }
        if let Some((user, password)) = credentials {
            if !self.credentials_ok(user, password) {
                error(out, WRONGPASS);
                return;
            }
            self.authenticated = true;
        }
        if !self.authenticated {
            error(out, HELLO_NOAUTH);
            return;
        }
        if let Some(name) = new_name {
            if !valid_name(name) {
                error(out, BAD_NAME);
                return;
            }
            self.name = (!name.is_empty()).then(|| name.to_vec());
        }
        if let Some(version) = version {
            self.version = version;
        }
        let proto = match self.version {
            Version::Resp2 => 2,
            Version::Resp3 => 3,
        };
        map_header(out, self.version, 7);
        bulk_string(out, b"server");
        bulk_string(out, b"ferry");
        bulk_string(out, b"version");
        bulk_string(out, self.config.server_version.as_bytes());
        bulk_string(out, b"proto");
        integer(out, proto);
        bulk_string(out, b"id");
        integer(out, i64::try_from(self.config.id).unwrap_or(i64::MAX));
        bulk_string(out, b"mode");
        bulk_string(out, b"standalone");
        bulk_string(out, b"role");
        bulk_string(out, b"master");
        bulk_string(out, b"modules");
        array_header(out, 0);
    }

    /// `RESET`: back to a new connection's state; subscriptions dropped silently.
    fn reset(&mut self) {
        for (kind, names) in [
            (
                SubscriptionKind::Channel,
                std::mem::take(&mut self.channels),
            ),
            (
                SubscriptionKind::Pattern,
                std::mem::take(&mut self.patterns),
            ),
        ] {
            for (name, _) in names {
                self.changes.push(Change {
                    kind,
                    name,
                    subscribed: false,
                });
            }
        }
        self.version = Version::Resp2;
        self.name = None;
        self.authenticated = self.config.password.is_none();
    }

    fn set_of(&mut self, kind: SubscriptionKind) -> &mut HashMap<Vec<u8>, u64> {
        match kind {
            SubscriptionKind::Channel => &mut self.channels,
            SubscriptionKind::Pattern => &mut self.patterns,
        }
    }

    /// `[p]subscribe, name, count` — an array in RESP2, a push in RESP3.
    fn confirm(&self, out: &mut Vec<u8>, word: &[u8], name: Option<&[u8]>) {
        push_header(out, self.version, 3);
        bulk_string(out, word);
        match name {
            Some(name) => bulk_string(out, name),
            None => null(out, self.version),
        }
        integer(
            out,
            i64::try_from(self.subscription_count()).unwrap_or(i64::MAX),
        );
    }

    fn subscribe(&mut self, kind: SubscriptionKind, command: &Command<'_>, out: &mut Vec<u8>) {
        let word: &[u8] = match kind {
            SubscriptionKind::Channel => b"subscribe",
            SubscriptionKind::Pattern => b"psubscribe",
        };
        for name in command.args.iter().skip(1) {
            let seq = self.next_seq;
            if !self.set_of(kind).contains_key(name.as_ref()) {
                self.set_of(kind).insert(name.to_vec(), seq);
                self.next_seq += 1;
                self.changes.push(Change {
                    kind,
                    name: name.to_vec(),
                    subscribed: true,
                });
            }
            self.confirm(out, word, Some(name));
        }
    }

    fn unsubscribe(&mut self, kind: SubscriptionKind, command: &Command<'_>, out: &mut Vec<u8>) {
        let word: &[u8] = match kind {
            SubscriptionKind::Channel => b"unsubscribe",
            SubscriptionKind::Pattern => b"punsubscribe",
        };
        let names: Vec<Vec<u8>> = if command.len() > 1 {
            command.args.iter().skip(1).map(|n| n.to_vec()).collect()
        } else {
            let mut all: Vec<(u64, Vec<u8>)> = self
                .set_of(kind)
                .iter()
                .map(|(name, seq)| (*seq, name.clone()))
                .collect();
            all.sort_unstable();
            if all.is_empty() {
                self.confirm(out, word, None);
                return;
            }
            all.into_iter().map(|(_, name)| name).collect()
        };
        for name in names {
            if self.set_of(kind).remove(&name).is_some() {
                self.changes.push(Change {
                    kind,
                    name: name.clone(),
                    subscribed: false,
                });
            }
            self.confirm(out, word, Some(&name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::resp::server::{CommandReader, ReaderLimits};
    use crate::proto::Status;

    fn session(password: Option<&str>) -> ClientSession {
        ClientSession::new(SessionConfig {
            password: password.map(|p| p.as_bytes().to_vec()),
            id: 7,
            server_version: "1.2.3",
        })
    }

    /// Runs every command of `input`; returns the replies and the last outcome's kind.
    fn run(session: &mut ClientSession, input: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut reader = CommandReader::new(ReaderLimits { max_bulk: 1 << 20 });
        let (mut out, mut outcomes, mut at) = (Vec::new(), Vec::new(), 0);
        while let Ok(Status::Complete(command, used)) =
            reader.read(&input[at..], session.is_authenticated())
        {
            outcomes.push(format!("{:?}", session.handle(&command, &mut out)));
            at += used;
        }
        (out, outcomes)
    }

    #[test]
    fn subscriptions_are_reported_as_changes_and_reset_drops_them() {
        let mut s = session(None);
        let (out, _) = run(
            &mut s,
            b"SUBSCRIBE a b a\r\nPSUBSCRIBE p*\r\nUNSUBSCRIBE b\r\n",
        );
        assert!(out.starts_with(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"));
        let changes = s.take_changes();
        let added: Vec<_> = changes
            .iter()
            .filter(|c| c.subscribed)
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(added, [b"a".to_vec(), b"b".to_vec(), b"p*".to_vec()]);
        assert_eq!(changes.iter().filter(|c| !c.subscribed).count(), 1);
        assert_eq!(s.subscription_count(), 2);
        let (out, _) = run(&mut s, b"RESET\r\n");
        assert_eq!(out, b"+RESET\r\n");
        assert_eq!(s.subscription_count(), 0);
        assert_eq!(s.take_changes().iter().filter(|c| !c.subscribed).count(), 2);
    }

    #[test]
    fn publish_and_quit_are_handed_to_the_runtime() {
        let mut s = session(None);
        let (out, outcomes) = run(&mut s, b"PUBLISH ch hello\r\nQUIT\r\n");
        assert_eq!(out, b"+OK\r\n");
        assert!(outcomes[0].starts_with("Publish"), "{outcomes:?}");
        assert_eq!(outcomes[1], "Close");
    }

    #[test]
    fn a_password_gates_everything_but_auth_hello_quit_reset() {
        let mut s = session(Some("pw"));
        let (out, _) = run(
            &mut s,
            b"PUBLISH a b\r\nRESET\r\nHELLO 3 AUTH default pw\r\nPUBLISH a b\r\n",
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("-NOAUTH Authentication required.\r\n+RESET\r\n%7\r\n"),
            "{text}"
        );
        assert!(
            text.contains("$5\r\nferry\r\n$7\r\nversion\r\n$5\r\n1.2.3\r\n"),
            "{text}"
        );
        assert!(text.contains("$2\r\nid\r\n:7\r\n"), "{text}");
        assert!(s.is_authenticated());
        assert_eq!(s.version(), Version::Resp3);
    }
}
