//! Redis Sentinel, the client side ferry needs (`docs/SEMANTICS.md`, "Redis Sentinel"),
//! as two small sans-IO conversations:
//!
//! - [`SentinelWatch`], on a connection to one sentinel: `[AUTH]`, `SENTINEL
//!   GET-MASTER-ADDR-BY-NAME <master>`, then `SUBSCRIBE +switch-master`; it reports the
//!   master's address, then every switch of *that* master, and PINGs a quiet connection
//!   so a dead sentinel is noticed.
//! - [`RoleCheck`], on a fresh connection to the address a sentinel gave: `[AUTH]`,
//!   `ROLE`. A sentinel's answer can be stale (it has not yet seen a failover); only the
//!   server itself knows that it is the master. When the check passes, the connection is
//!   handed to the subscriber or stream session, which starts its own conversation.
//!
//! Both speak RESP2 (no `HELLO`): sentinels of every version answer it, and nothing here
//! needs RESP3. Neither holds a socket or a clock beyond the `now` it is given.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::{encode_command, Decoder, Frame, Limits, PubSubEvent};
use crate::proto::Status;

/// Quiet time before the watch PINGs its sentinel.
pub const WATCH_KEEPALIVE: Duration = Duration::from_secs(15);
/// Silence after a PING after which the sentinel is declared dead.
pub const WATCH_PONG_TIMEOUT: Duration = Duration::from_secs(15);
/// A master that does not answer `ROLE` within this is given up.
pub const ROLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest text kept from a server's error.
const MAX_ERROR_TEXT: usize = 200;
/// Sentinel replies are small: names, addresses, roles.
const LIMITS: Limits = Limits {
    max_bulk_len: 64 * 1024,
    max_elements: 1024,
    max_depth: 8,
    max_line_len: 4096,
};

/// Credentials for `AUTH` (`user` only with a password: `AUTH user pass`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name.
    pub username: Option<Vec<u8>>,
    /// Password; no `AUTH` without one.
    pub password: Option<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "username",
                &self.username.as_deref().map(String::from_utf8_lossy),
            )
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Credentials {
    fn encode_auth(&self, out: &mut Vec<u8>) -> bool {
        let Some(password) = &self.password else {
            return false;
        };
        match &self.username {
            Some(user) => encode_command(out, [b"AUTH".as_slice(), user, password]),
            None => encode_command(out, [b"AUTH".as_slice(), password]),
        }
        true
    }
}

/// A master's address as a sentinel gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddress {
    /// Host (an IP address, or a name with `resolve-hostnames`).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What a sentinel conversation reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The answer to `GET-MASTER-ADDR-BY-NAME`.
    Master(MasterAddress),
    /// `SUBSCRIBE +switch-master` confirmed: switches are followed from now on.
    Watching,
    /// `+switch-master` for the watched master: it moved from `from` to `to`.
    Switched {
        /// The old master.
        from: MasterAddress,
        /// The new master.
        to: MasterAddress,
    },
}

/// Why a sentinel or role conversation failed; the connection is then closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelError {
    /// `AUTH` was refused.
    AuthFailed(String),
    /// The sentinel does not monitor a master of that name (a null answer).
    UnknownMaster(String),
    /// The server answered `ROLE` with another role (`slave`, `sentinel`).
    NotMaster(String),
    /// An error reply where an answer was expected.
    Refused(String),
    /// A reply of a shape the conversation does not expect.
    Unexpected(String),
    /// Bytes that are not RESP.
    Protocol(String),
    /// Nothing heard for too long after a PING.
    PeerDead,
    /// No answer to `ROLE` in time.
    NoAnswer,
}

impl fmt::Display for SentinelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SentinelError::AuthFailed(why) => write!(f, "authentication refused: {why}"),
            SentinelError::UnknownMaster(name) => {
                write!(f, "the sentinel does not monitor a master named {name:?}")
            }
            SentinelError::NotMaster(role) => {
                write!(
                    f,
                    "the server is a {role}, not the master (a stale answer?)"
                )
            }
            SentinelError::Refused(why) => write!(f, "error reply: {why}"),
            SentinelError::Unexpected(what) => write!(f, "unexpected reply: {what}"),
            SentinelError::Protocol(why) => write!(f, "not RESP: {why}"),
            SentinelError::PeerDead => write!(f, "no answer to PING: the sentinel seems dead"),
            SentinelError::NoAnswer => {
                write!(f, "no answer to ROLE within {} s", ROLE_TIMEOUT.as_secs())
            }
        }
    }
}

impl std::error::Error for SentinelError {}

fn text(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_ERROR_TEXT).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

fn describe(frame: &Frame<'_>) -> String {
    match frame.as_bytes() {
        Some(bytes) => format!("{} {:?}", frame.kind_name(), text(bytes)),
        None => frame.kind_name().to_string(),
    }
}

fn error_text(frame: &Frame<'_>) -> Option<String> {
    match frame {
        Frame::Error(e) | Frame::BulkError(e) => Some(text(e)),
        _ => None,
    }
}

fn parse_port(bytes: &[u8]) -> Option<u16> {
    std::str::from_utf8(bytes)
        .ok()?
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

fn parse_host(bytes: &[u8]) -> Option<String> {
    let host = std::str::from_utf8(bytes).ok()?;
    let valid = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    valid.then(|| host.to_string())
}

/// Replies the conversation waits for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Auth,
    Address,
    Subscribed,
    Role,
}

/// Decodes whole frames from `input` and hands each to `on_frame`; returns the bytes
/// used. A fatal error stops at once.
fn each_frame(
    decoder: &mut Decoder,
    input: &[u8],
    mut on_frame: impl FnMut(&Frame<'_>) -> Result<(), SentinelError>,
) -> Result<usize, SentinelError> {
    let mut used = 0;
    while used < input.len() {
        match decoder.decode(input.get(used..).unwrap_or_default()) {
            Ok(Status::Complete(frame, n)) => {
                used += n;
                if matches!(frame, Frame::Attribute(_)) {
                    continue;
                }
                on_frame(&frame)?;
            }
            Ok(Status::Partial) => break,
            Err(e) => return Err(SentinelError::Protocol(e.to_string())),
        }
    }
    Ok(used)
}

/// The conversation with one sentinel; see the module docs.
pub struct SentinelWatch {
    master: Vec<u8>,
    decoder: Decoder,
    output: Vec<u8>,
    expect: VecDeque<Expect>,
    events: VecDeque<WatchEvent>,
    /// The last input (or the start).
    last_input: Instant,
    /// When the outstanding PING went out.
    ping_sent: Option<Instant>,
    failed: Option<SentinelError>,
}

impl fmt::Debug for SentinelWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelWatch")
            .field("master", &text(&self.master))
            .field("expect", &self.expect)
            .finish()
    }
}

impl SentinelWatch {
    /// Starts the conversation: its commands wait in the output.
    pub fn new(master: &[u8], credentials: &Credentials, now: Instant) -> SentinelWatch {
        let mut output = Vec::new();
        let mut expect = VecDeque::new();
        if credentials.encode_auth(&mut output) {
            expect.push_back(Expect::Auth);
        }
        encode_command(
            &mut output,
            [b"SENTINEL".as_slice(), b"GET-MASTER-ADDR-BY-NAME", master],
        );
        expect.push_back(Expect::Address);
        encode_command(&mut output, [b"SUBSCRIBE".as_slice(), b"+switch-master"]);
        expect.push_back(Expect::Subscribed);
        SentinelWatch {
            master: master.to_vec(),
            decoder: Decoder::new(LIMITS),
            output,
            expect,
            events: VecDeque::new(),
            last_input: now,
            ping_sent: None,
            failed: None,
        }
    }

    /// Moves pending commands to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// Reads replies and messages from the start of `input`; returns the bytes used (the
    /// caller consumes them). An error ends the conversation.
    pub fn handle_input(&mut self, input: &[u8], now: Instant) -> Result<usize, SentinelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !input.is_empty() {
            self.last_input = now;
            self.ping_sent = None;
        }
        let Self {
            decoder,
            expect,
            events,
            master,
            ..
        } = self;
        let result = each_frame(decoder, input, |frame| {
            Self::on_frame(master, expect, events, frame)
        });
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn on_frame(
        master: &[u8],
        expect: &mut VecDeque<Expect>,
        events: &mut VecDeque<WatchEvent>,
        frame: &Frame<'_>,
    ) -> Result<(), SentinelError> {
        // Messages and PONGs come once subscribed; replies before that, in order.
        if expect.is_empty() {
            return match PubSubEvent::from_frame(frame) {
                Ok(Some(PubSubEvent::Message { channel, payload }))
                    if channel == b"+switch-master" =>
                {
                    if let Some(switch) = parse_switch(master, payload) {
                        events.push_back(switch);
                    }
                    Ok(())
                }
                Ok(Some(_)) => Ok(()),
                _ => match error_text(frame) {
                    Some(e) => Err(SentinelError::Refused(e)),
                    None => Err(SentinelError::Unexpected(describe(frame))),
                },
            };
        }
        let step = expect.pop_front().unwrap_or(Expect::Subscribed);
        match step {
            Expect::Auth => match frame {
                Frame::SimpleString(_) => Ok(()),
                _ => Err(SentinelError::AuthFailed(
                    error_text(frame).unwrap_or_else(|| describe(frame)),
                )),
            },
            Expect::Address => {
                if let Some(e) = error_text(frame) {
                    return Err(SentinelError::Refused(e));
                }
                if frame.is_null() {
                    return Err(SentinelError::UnknownMaster(text(master)));
                }
                let address = frame.as_aggregate().and_then(|pair| {
                    let mut items = pair.iter();
                    let host = items.next()?.as_bytes().and_then(parse_host)?;
                    let port = items.next()?.as_bytes().and_then(parse_port)?;
                    items
                        .next()
                        .is_none()
                        .then_some(MasterAddress { host, port })
                });
                match address {
                    Some(address) => {
                        events.push_back(WatchEvent::Master(address));
                        Ok(())
                    }
                    None => Err(SentinelError::Unexpected(describe(frame))),
                }
            }
            Expect::Subscribed => match PubSubEvent::from_frame(frame) {
                Ok(Some(PubSubEvent::Subscribe { .. })) => {
                    events.push_back(WatchEvent::Watching);
                    Ok(())
                }
                _ => match error_text(frame) {
                    Some(e) => Err(SentinelError::Refused(e)),
                    None => Err(SentinelError::Unexpected(describe(frame))),
                },
            },
            Expect::Role => Err(SentinelError::Unexpected(describe(frame))),
        }
    }

    /// When [`SentinelWatch::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + WATCH_PONG_TIMEOUT,
            None => self.last_input + WATCH_KEEPALIVE,
        })
    }

    /// A quiet connection is PINGed (allowed while subscribed); one that stays silent
    /// after the PING fails with [`SentinelError::PeerDead`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SentinelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.ping_sent {
            Some(sent) if now >= sent + WATCH_PONG_TIMEOUT => {
                self.failed = Some(SentinelError::PeerDead);
                Err(SentinelError::PeerDead)
            }
            None if now >= self.last_input + WATCH_KEEPALIVE => {
                encode_command(&mut self.output, [b"PING".as_slice()]);
                self.ping_sent = Some(now);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `+switch-master`'s payload: `<name> <old-ip> <old-port> <new-ip> <new-port>`; only a
/// switch of `master` is reported.
fn parse_switch(master: &[u8], payload: &[u8]) -> Option<WatchEvent> {
    let mut words = payload.split(|b| *b == b' ');
    if words.next()? != master {
        return None;
    }
    let from = MasterAddress {
        host: parse_host(words.next()?)?,
        port: parse_port(words.next()?)?,
    };
    let to = MasterAddress {
        host: parse_host(words.next()?)?,
        port: parse_port(words.next()?)?,
    };
    words
        .next()
        .is_none()
        .then_some(WatchEvent::Switched { from, to })
}

/// The `ROLE` check on a master's connection; see the module docs.
pub struct RoleCheck {
    decoder: Decoder,
    output: Vec<u8>,
    expect: VecDeque<Expect>,
    /// `Some(Ok)` once the server said `master`.
    outcome: Option<Result<(), SentinelError>>,
    deadline: Instant,
}

impl fmt::Debug for RoleCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleCheck")
            .field("expect", &self.expect)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl RoleCheck {
    /// Starts the check: its commands wait in the output.
    pub fn new(credentials: &Credentials, now: Instant) -> RoleCheck {
        let mut output = Vec::new();
        let mut expect = VecDeque::new();
        if credentials.encode_auth(&mut output) {
            expect.push_back(Expect::Auth);
        }
        encode_command(&mut output, [b"ROLE".as_slice()]);
        expect.push_back(Expect::Role);
        RoleCheck {
            decoder: Decoder::new(LIMITS),
            output,
            expect,
            outcome: None,
            deadline: now + ROLE_TIMEOUT,
        }
    }

    /// Until the answer, the deadline for it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outcome.is_none().then_some(self.deadline)
    }

    /// Past the deadline without an answer: [`SentinelError::NoAnswer`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SentinelError> {
        match &self.outcome {
            Some(Err(e)) => Err(e.clone()),
            None if now >= self.deadline => {
                self.outcome = Some(Err(SentinelError::NoAnswer));
                Err(SentinelError::NoAnswer)
            }
            _ => Ok(()),
        }
    }

    /// Moves pending commands to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// Reads the replies; returns the bytes used. Stops after the `ROLE` reply, so that
    /// whatever follows belongs to the session that takes the connection over.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, SentinelError> {
        if let Some(Err(e)) = &self.outcome {
            return Err(e.clone());
        }
        let mut used = 0;
        while self.outcome.is_none() && used < input.len() {
            match self.decoder.decode(input.get(used..).unwrap_or_default()) {
                Ok(Status::Complete(frame, n)) => {
                    used += n;
                    if matches!(frame, Frame::Attribute(_)) {
                        continue;
                    }
                    if let Err(e) = self.on_frame(&frame) {
                        self.outcome = Some(Err(e.clone()));
                        return Err(e);
                    }
                }
                Ok(Status::Partial) => break,
                Err(e) => {
                    let e = SentinelError::Protocol(e.to_string());
                    self.outcome = Some(Err(e.clone()));
                    return Err(e);
                }
            }
        }
        Ok(used)
    }

    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<(), SentinelError> {
        match self.expect.pop_front() {
            Some(Expect::Auth) => match frame {
                Frame::SimpleString(_) => Ok(()),
                _ => Err(SentinelError::AuthFailed(
                    error_text(frame).unwrap_or_else(|| describe(frame)),
                )),
            },
            Some(Expect::Role) => {
                if let Some(e) = error_text(frame) {
                    return Err(SentinelError::Refused(e));
                }
                let role = frame
                    .as_aggregate()
                    .and_then(|a| a.iter().next())
                    .and_then(|first| first.as_bytes().map(text));
                match role.as_deref() {
                    Some("master") => {
                        self.outcome = Some(Ok(()));
                        Ok(())
                    }
                    Some(other) => Err(SentinelError::NotMaster(other.to_string())),
                    None => Err(SentinelError::Unexpected(describe(frame))),
                }
            }
            _ => Err(SentinelError::Unexpected(describe(frame))),
        }
    }

    /// Whether the server confirmed it is the master.
    pub fn confirmed(&self) -> bool {
        matches!(self.outcome, Some(Ok(())))
    }
}

#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
#[cfg(test)]
mod tests;
