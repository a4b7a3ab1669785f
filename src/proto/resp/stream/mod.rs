//! The Redis Streams consumer session: one connection's conversation with a Redis server
//! as a member of a consumer group, sans-IO (`docs/ARCHITECTURE.md`, "The session
//! contract"). It implements the wire side of `docs/SEMANTICS.md`, "Redis Streams:
//! at-least-once"; what to read, when, and what an outcome means is the engine's
//! (`src/engine/streams.rs`).
//!
//! # The conversation
//! 1. `HELLO 3 [AUTH u p] [SETNAME n]` (or `HELLO 2 …` when RESP2 is configured; a server
//!    that does not know `HELLO` gets `AUTH` and RESP2), then, when ferry creates the
//!    group, `XGROUP CREATE <stream> <group> <start> MKSTREAM` (`-BUSYGROUP` is fine).
//!    Then [`StreamEvent::Ready`].
//! 2. Recovery: [`StreamConsumer::fetch`] reads this consumer's own pending entries
//!    first (`XREADGROUP … STREAMS <stream> <cursor>`, from `0`) until a read finds none
//!    ([`StreamEvent::RecoveryDone`]); only then new ones (`… BLOCK <ms> STREAMS
//!    <stream> >`). Entries deleted or trimmed while pending come back as `[id, nil]`
//!    and are reported as [`StreamEvent::Deleted`].
//! 3. Entries that were delivered before (pending ones, claimed ones) are reported with
//!    their delivery counter: the session asks `XPENDING <stream> <group> <id> <id> 1`
//!    for each and holds the batch until the answers are in. New entries count 1.
//! 4. Settling: [`StreamConsumer::ack`] batches ids into one `XACK` per flush;
//!    [`StreamConsumer::dead_letter`] sends `MULTI`, `XADD <dead stream> * <fields>
//!    ferry-failure <reason> ferry-attempts <n>`, `XACK`, `EXEC`.
//! 5. [`StreamConsumer::claim_retry`] (`XCLAIM … <min-idle> <id>`, which raises the
//!    delivery counter) brings a failed entry back after its retry delay;
//!    [`StreamConsumer::autoclaim`] scans with `XAUTOCLAIM` for entries other consumers
//!    left idle; [`StreamConsumer::poll_status`] asks `XPENDING` (summary) and `XINFO
//!    GROUPS` for the metrics; [`StreamConsumer::reap_consumers`] removes idle consumers
//!    with nothing pending (`XGROUP DELCONSUMER`).
//! 6. Liveness: a connection blocked in `XREADGROUP` runs nothing else until the block
//!    returns, so the block is short (the engine's `BLOCK` is 1 s) and the peer is dead
//!    when a reply is `block + pong_timeout` late. With nothing outstanding for
//!    `keepalive_interval`, the session sends `PING`.
//! 7. [`StreamConsumer::finish`] (closing): no new commands; once every reply is in,
//!    [`StreamEvent::Finished`], so acks queued behind a block are not lost with the
//!    connection.
//!
//! Replies come strictly in the order of the commands (no pushes are subscribed to; a
//! RESP3 push is ignored), so the session keeps a queue of what each outstanding command
//! expects.

#[cfg(any(test, feature = "invariants"))]
#[doc(hidden)]
pub mod invariants;
pub mod reply;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::subscriber::{client_name, is_auth_error, is_hello_unsupported, truncated_text};
use super::{
    array_header, bulk_string, encode_command, Decoder, Frame, Limits, RespError, Version,
};
use crate::proto::Status;
pub use reply::{EntryId, Fields, StreamReplyError};

/// A stream consumer session's settings, built by the engine from the source's config.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// ACL user name; used only with a password (`default` when absent).
    pub username: Option<Vec<u8>>,
    /// Password.
    pub password: Option<Vec<u8>>,
    /// Connection name (`CLIENT LIST`), sent with `HELLO`'s `SETNAME`.
    pub client_name: Option<Vec<u8>>,
    /// Speak RESP3 (`HELLO 3`, the default) or RESP2 (`HELLO 2`).
    pub resp3: bool,
    /// Database to `SELECT` (0: none sent).
    pub db: u32,
    /// The stream key.
    pub stream: Vec<u8>,
    /// The consumer group.
    pub group: Vec<u8>,
    /// This consumer's name in the group.
    pub consumer: Vec<u8>,
    /// `Some(start id)`: create the group (`XGROUP CREATE … MKSTREAM`) at this id.
    pub create_group: Option<Vec<u8>>,
    /// `BLOCK` of reads for new entries.
    pub block: Duration,
    /// Longest bulk string accepted in a reply (at least 64 KiB).
    pub max_bulk_bytes: usize,
    /// Quiet time with nothing outstanding after which the session sends `PING`.
    pub keepalive_interval: Duration,
    /// How late a reply may be (beyond a block) before the peer is declared dead.
    pub pong_timeout: Duration,
}

impl StreamConfig {
    /// Defaults for everything but the names.
    pub fn new(stream: &[u8], group: &[u8], consumer: &[u8]) -> StreamConfig {
        StreamConfig {
            username: None,
            password: None,
            client_name: None,
            resp3: true,
            db: 0,
            stream: stream.to_vec(),
            group: group.to_vec(),
            consumer: consumer.to_vec(),
            create_group: Some(b"$".to_vec()),
            block: Duration::from_secs(1),
            max_bulk_bytes: crate::config::defaults::MAX_MESSAGE_BYTES,
            keepalive_interval: super::DEFAULT_KEEPALIVE_INTERVAL,
            pong_timeout: super::DEFAULT_PONG_TIMEOUT,
        }
    }
}

// Written by hand so that the password never reaches a log.
impl fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("StreamConfig")
            .field("stream", &lossy(&self.stream))
            .field("group", &lossy(&self.group))
            .field("consumer", &lossy(&self.consumer))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("resp3", &self.resp3)
            .field("block", &self.block)
            .finish()
    }
}

/// How a batch of entries was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// `XREADGROUP … >`: never delivered before.
    New,
    /// `XREADGROUP … <id>`: this consumer's own pending entries (recovery).
    Pending,
    /// `XAUTOCLAIM`: taken over from a consumer that left them idle.
    Claimed,
    /// `XCLAIM` of an entry whose retry delay ended.
    Retry,
}

/// An entry, kept (copied out of the read buffer) for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: EntryId,
    /// Its fields as the RESP bulk strings they arrived as ([`Fields::from_raw`]).
    pub fields: Vec<u8>,
    /// Names and values in `fields`.
    pub field_count: usize,
    /// The group's delivery counter for it, this delivery included.
    pub deliveries: u64,
}

impl Entry {
    /// A view of the fields.
    pub fn fields(&self) -> Fields<'_> {
        Fields::from_raw(&self.fields, self.field_count)
    }
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Handshake done, the group exists: reads may start.
    Ready,
    /// Entries to process (each with its delivery counter).
    Entries {
        /// How they were read.
        kind: ReadKind,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// Pending entries that no longer exist in the stream (deleted or trimmed).
    Deleted(Vec<EntryId>),
    /// A read of own pending entries found none: new entries are read from now on.
    RecoveryDone,
    /// An `XAUTOCLAIM` scan reached the end of the pending list.
    ClaimScanDone,
    /// `XCLAIM` of a retry returned nothing: the entry is gone, or another consumer
    /// holds it now (`owner`).
    RetryGone {
        /// The entry.
        id: EntryId,
        /// Its holder now, when it is still pending.
        owner: Option<Vec<u8>>,
    },
    /// A dead-letter copy was added and the entry acked (the `EXEC` answered).
    DeadLettered(EntryId),
    /// Figures for `/metrics` and `/status`.
    Status {
        /// Entries this consumer holds pending.
        mine: u64,
        /// Entries pending in the whole group.
        group_pending: u64,
        /// Entries not yet delivered to the group (Redis 7).
        lag: Option<u64>,
    },
    /// An idle consumer with nothing pending was removed from the group.
    ConsumerRemoved(Vec<u8>),
    /// A command failed without ending the session (its error text).
    Error(StreamError),
    /// The session is over because of this error (found by `handle_timeout`).
    Failed(StreamError),
    /// After [`StreamConsumer::finish`]: every reply is in; close the connection.
    Finished,
    /// The peer closed the connection.
    Closed,
}

/// Why the session failed, or what went wrong without ending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The bytes are not RESP (or break the decoder's limits).
    Protocol(RespError),
    /// A reply had the wrong shape for its command.
    Reply(StreamReplyError),
    /// A reply arrived with no command outstanding, or of the wrong type.
    UnexpectedFrame {
        /// What was expected.
        waiting_for: &'static str,
        /// What came.
        found: &'static str,
    },
    /// The server refused the credentials.
    AuthFailed {
        /// Its text, the password removed.
        text: String,
    },
    /// The server refused a command (fatal during the handshake and for reads).
    Rejected {
        /// The command.
        command: &'static str,
        /// The server's text.
        text: String,
    },
    /// Nothing was read for this long with a reply outstanding.
    PeerDead {
        /// Time since the last byte.
        silent_for: Duration,
    },
    /// The session is over and takes no more input.
    SessionOver,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Protocol(e) => write!(f, "protocol error: {e}"),
            StreamError::Reply(e) => write!(f, "protocol error: {e}"),
            StreamError::UnexpectedFrame { waiting_for, found } => {
                write!(f, "unexpected {found} while waiting for {waiting_for}")
            }
            StreamError::AuthFailed { text } => write!(f, "authentication failed: {text}"),
            StreamError::Rejected { command, text } => {
                write!(f, "server refused {command}: {text}")
            }
            StreamError::PeerDead { silent_for } => {
                write!(f, "peer dead: no reply for {} ms", silent_for.as_millis())
            }
            StreamError::SessionOver => f.write_str("session already over"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<RespError> for StreamError {
    fn from(e: RespError) -> Self {
        StreamError::Protocol(e)
    }
}

impl From<StreamReplyError> for StreamError {
    fn from(e: StreamReplyError) -> Self {
        StreamError::Reply(e)
    }
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `HELLO` sent.
    AwaitingHello,
    /// RESP2 fallback: `AUTH` sent.
    AwaitingAuth,
    /// `SELECT` sent.
    AwaitingSelect,
    /// `XGROUP CREATE` sent.
    AwaitingGroup,
    /// Reading and settling.
    Ready,
    /// [`StreamConsumer::finish`]: waiting for the last replies.
    Finishing,
    /// Over (EOF, fatal error, dead peer, finished).
    Over,
}

/// What the reply of an outstanding command means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Hello,
    Auth,
    Select,
    CreateGroup,
    /// `XREADGROUP`; `blocking` for `>` reads.
    Read {
        pending: bool,
        blocking: bool,
    },
    /// `XCLAIM` of a retry.
    Claim(EntryId),
    AutoClaim,
    /// `XPENDING id id 1` for the front batch's next entry.
    Count,
    /// `XPENDING id id 1` after an empty `XCLAIM` (who holds it now?).
    Owner(EntryId),
    /// `XACK` of these ids.
    Ack(Vec<EntryId>),
    Multi,
    Queued,
    Exec(EntryId),
    Ping,
    Summary,
    Groups,
    Consumers {
        idle_over_ms: u64,
        suffix: Vec<u8>,
    },
    DelConsumer(Vec<u8>),
}

impl Expect {
    fn name(&self) -> &'static str {
        match self {
            Expect::Hello => "HELLO",
            Expect::Auth => "AUTH",
            Expect::Select => "SELECT",
            Expect::CreateGroup => "XGROUP CREATE",
            Expect::Read { .. } => "XREADGROUP",
            Expect::Claim(_) => "XCLAIM",
            Expect::AutoClaim => "XAUTOCLAIM",
            Expect::Count | Expect::Owner(_) | Expect::Summary => "XPENDING",
            Expect::Ack(_) => "XACK",
            Expect::Multi => "MULTI",
            Expect::Queued => "XADD/XACK in MULTI",
            Expect::Exec(_) => "EXEC",
            Expect::Ping => "PING",
            Expect::Groups => "XINFO GROUPS",
            Expect::Consumers { .. } => "XINFO CONSUMERS",
            Expect::DelConsumer(_) => "XGROUP DELCONSUMER",
        }
    }
}

/// Entries waiting for their delivery counters.
#[derive(Debug)]
struct Batch {
    kind: ReadKind,
    entries: Vec<Entry>,
    /// How many `XPENDING` answers are still to come (for the last `counts_left`
    /// entries).
    counts_left: usize,
}

/// A Redis Streams consumer-group session; see the module docs.
pub struct StreamConsumer {
    config: StreamConfig,
    state: State,
    decoder: Decoder,
    protocol: Option<Version>,
    server_version: Option<String>,
    expects: VecDeque<Expect>,
    /// Batches whose counters are being asked, oldest first.
    batches: VecDeque<Batch>,
    /// Ids to ack with the next `XACK`.
    acks: Vec<EntryId>,
    /// Commands given before the handshake ended, sent once it has.
    deferred: Vec<u8>,
    deferred_expects: Vec<Expect>,
    /// Reading own pending entries from after this id (`None`: reading new ones).
    recovery_cursor: Option<EntryId>,
    /// Where the `XAUTOCLAIM` scan goes on (`ZERO`: no scan under way).
    claim_cursor: EntryId,
    /// Entries asked for by the read outstanding (0: none outstanding).
    asked: usize,
    /// Entries the `XAUTOCLAIM` outstanding may claim.
    claim_asked: usize,
    read_outstanding: bool,
    autoclaim_outstanding: bool,
    status_outstanding: bool,
    /// Figures of the status poll, put together from its two replies.
    status_mine: u64,
    status_group_pending: u64,
    last_input: Instant,
    /// The latest `now` the session was given (for commands given without one).
    clock: Instant,
    /// When the oldest unanswered command (or the last input since) was seen.
    waiting_since: Option<Instant>,
    transmit: Vec<u8>,
    events: VecDeque<StreamEvent>,
}

impl StreamConsumer {
    /// Starts a session on a freshly connected socket: queues `HELLO`.
    pub fn new(config: StreamConfig, now: Instant) -> Self {
        let limits = Limits {
            max_bulk_len: config.max_bulk_bytes.max(64 * 1024),
            max_elements: 1 << 20,
            max_depth: 8,
            max_line_len: 16 * 1024,
        };
        let mut session = StreamConsumer {
            config,
            state: State::AwaitingHello,
            decoder: Decoder::new(limits),
            protocol: None,
            server_version: None,
            expects: VecDeque::new(),
            batches: VecDeque::new(),
            acks: Vec::new(),
            deferred: Vec::new(),
            deferred_expects: Vec::new(),
            recovery_cursor: Some(EntryId::ZERO),
            claim_cursor: EntryId::ZERO,
            asked: 0,
            claim_asked: 0,
            read_outstanding: false,
            autoclaim_outstanding: false,
            status_outstanding: false,
            status_mine: 0,
            status_group_pending: 0,
            last_input: now,
            clock: now,
            waiting_since: None,
            transmit: Vec::new(),
            events: VecDeque::new(),
        };
        session.send_hello(now);
        session
    }

    /// The protocol agreed on, once `HELLO` was answered.
    pub fn protocol(&self) -> Option<Version> {
        self.protocol
    }

    /// The server's version from `HELLO`.
    pub fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// True once the handshake is done and until the end.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// True when the session is over.
    pub fn is_over(&self) -> bool {
        self.state == State::Over
    }

    /// True while own pending entries are still being read (after a (re)connect).
    pub fn is_recovering(&self) -> bool {
        self.recovery_cursor.is_some()
    }

    /// True while a read is outstanding (its reply, or its counters, not yet in).
    pub fn read_outstanding(&self) -> bool {
        self.read_outstanding
    }

    /// True while a read waits in `BLOCK` (nothing else runs on the connection).
    pub fn is_blocked(&self) -> bool {
        self.expects
            .iter()
            .any(|e| matches!(e, Expect::Read { blocking: true, .. }))
    }

    /// Entries that may still arrive for what was asked: the outstanding read's count
    /// and the entries of batches waiting for their counters.
    pub fn entries_on_the_way(&self) -> usize {
        let batched: usize = self.batches.iter().map(|b| b.entries.len()).sum();
        self.asked + self.claim_asked + batched
    }

    /// True while an `XAUTOCLAIM` scan has more to go (its cursor is not `0-0`).
    pub fn claim_scan_under_way(&self) -> bool {
        self.claim_cursor != EntryId::ZERO || self.autoclaim_outstanding
    }

    /// Asks for up to `count` entries: own pending ones while recovering, else new ones
    /// with `BLOCK`. Does nothing when a read is outstanding or `count` is 0.
    pub fn fetch(&mut self, count: usize, now: Instant) {
        if self.read_outstanding || count == 0 || !self.takes_commands() {
            return;
        }
        let count_text = count.to_string();
        let mut args: Vec<Vec<u8>> = vec![
            b"XREADGROUP".to_vec(),
            b"GROUP".to_vec(),
            self.config.group.clone(),
            self.config.consumer.clone(),
            b"COUNT".to_vec(),
            count_text.into_bytes(),
        ];
        let blocking = self.recovery_cursor.is_none();
        if blocking {
            args.push(b"BLOCK".to_vec());
            args.push(self.config.block.as_millis().to_string().into_bytes());
        }
        args.push(b"STREAMS".to_vec());
        args.push(self.config.stream.clone());
        match self.recovery_cursor {
            Some(cursor) => args.push(cursor.to_bytes()),
            None => args.push(b">".to_vec()),
        }
        self.read_outstanding = true;
        self.asked = count;
        self.command(
            &args,
            Expect::Read {
                pending: !blocking,
                blocking,
            },
            now,
        );
    }

    /// Reads own pending entries again before new ones (a resume after a pause: entries
    /// handed back then are still this consumer's).
    pub fn restart_recovery(&mut self) {
        if self.recovery_cursor.is_none() {
            self.recovery_cursor = Some(EntryId::ZERO);
        }
    }

    /// Acks `id` with the next `XACK` (one per flush, however many ids).
    pub fn ack(&mut self, id: EntryId) {
        if self.state != State::Over {
            self.acks.push(id);
        }
    }

    /// Ids acked but not yet answered (or not yet sent): to ack again on the next
    /// connection when this one is lost (`XACK` is idempotent).
    pub fn unconfirmed_acks(&self) -> Vec<EntryId> {
        let mut ids: Vec<EntryId> = self
            .expects
            .iter()
            .chain(self.deferred_expects.iter())
            .filter_map(|e| match e {
                Expect::Ack(ids) => Some(ids.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        ids.extend_from_slice(&self.acks);
        ids
    }

    /// Adds a copy of an entry to `dead_stream` (its fields, then `ferry-failure` and
    /// `ferry-attempts`) and acks the entry, in one `MULTI`/`EXEC`.
    pub fn dead_letter(
        &mut self,
        dead_stream: &[u8],
        id: EntryId,
        fields: Fields<'_>,
        failure: &[u8],
        attempts: u64,
    ) {
        if !self.takes_commands() {
            return;
        }
        let now = self.clock;
        self.flush_acks(now);
        self.command(&[&b"MULTI"[..]], Expect::Multi, now);
        let mut xadd = Vec::with_capacity(fields.raw().len() + 128);
        array_header(&mut xadd, 3 + fields.element_count() + 4);
        bulk_string(&mut xadd, b"XADD");
        bulk_string(&mut xadd, dead_stream);
        bulk_string(&mut xadd, b"*");
        xadd.extend_from_slice(fields.raw());
        bulk_string(&mut xadd, b"ferry-failure");
        bulk_string(&mut xadd, failure);
        bulk_string(&mut xadd, b"ferry-attempts");
        bulk_string(&mut xadd, attempts.to_string().as_bytes());
        self.raw_command(&xadd, Expect::Queued, now);
        let id_text = id.to_bytes();
        self.command(
            &[
                &b"XACK"[..],
                &self.config.stream.clone(),
                &self.config.group.clone(),
                &id_text,
            ],
            Expect::Queued,
            now,
        );
        self.command(&[&b"EXEC"[..]], Expect::Exec(id), now);
    }

    /// Claims `id` back for a retry once it has been idle `min_idle` (the retry delay):
    /// `XCLAIM` raises its delivery counter. If another consumer took it over meanwhile
    /// its idle time is shorter, and nothing is claimed ([`StreamEvent::RetryGone`]).
    pub fn claim_retry(&mut self, id: EntryId, min_idle: Duration, now: Instant) {
        if !self.takes_commands() {
            return;
        }
        let min_idle = min_idle.as_millis().to_string();
        let id_text = id.to_bytes();
        let args: [&[u8]; 6] = [
            b"XCLAIM",
            &self.config.stream,
            &self.config.group,
            &self.config.consumer,
            min_idle.as_bytes(),
            &id_text,
        ];
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        self.command(&args, Expect::Claim(id), now);
    }

    /// Goes on with (or starts) the `XAUTOCLAIM` scan for entries idle at least
    /// `min_idle`, claiming up to `count`.
    pub fn autoclaim(&mut self, min_idle: Duration, count: usize, now: Instant) {
        if self.autoclaim_outstanding || count == 0 || !self.takes_commands() {
            return;
        }
        let args: Vec<Vec<u8>> = vec![
            b"XAUTOCLAIM".to_vec(),
            self.config.stream.clone(),
            self.config.group.clone(),
            self.config.consumer.clone(),
            min_idle.as_millis().to_string().into_bytes(),
            self.claim_cursor.to_bytes(),
            b"COUNT".to_vec(),
            count.to_string().into_bytes(),
        ];
        self.autoclaim_outstanding = true;
        self.claim_asked = count;
        self.command(&args, Expect::AutoClaim, now);
    }

    /// Asks for the figures of [`StreamEvent::Status`].
    pub fn poll_status(&mut self, now: Instant) {
        if self.status_outstanding || !self.takes_commands() {
            return;
        }
        self.status_outstanding = true;
        let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
        self.command(&[&b"XPENDING"[..], &stream, &group], Expect::Summary, now);
        self.command(&[&b"XINFO"[..], b"GROUPS", &stream], Expect::Groups, now);
    }

    /// Removes consumers of the group that hold nothing, have been idle longer than
    /// `idle_over`, are not this session's consumer, and whose name ends with `suffix`
    /// (`docs/SEMANTICS.md`, "Consumers").
    pub fn reap_consumers(&mut self, idle_over: Duration, suffix: &[u8], now: Instant) {
        if !self.takes_commands() {
            return;
        }
        let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
        self.command(
            &[&b"XINFO"[..], b"CONSUMERS", &stream, &group],
            Expect::Consumers {
                idle_over_ms: u64::try_from(idle_over.as_millis()).unwrap_or(u64::MAX),
                suffix: suffix.to_vec(),
            },
            now,
        );
    }

    /// Closing: no more commands; [`StreamEvent::Finished`] once every reply is in.
    pub fn finish(&mut self, now: Instant) {
        match self.state {
            State::Ready => {
                self.flush_acks(now);
                self.state = State::Finishing;
                self.check_finished();
            }
            State::AwaitingHello
            | State::AwaitingAuth
            | State::AwaitingSelect
            | State::AwaitingGroup => {
                self.state = State::Over;
                self.events.push_back(StreamEvent::Finished);
            }
            State::Finishing | State::Over => {}
        }
    }

    fn check_finished(&mut self) {
        if self.state == State::Finishing && self.expects.is_empty() {
            self.state = State::Over;
            self.events.push_back(StreamEvent::Finished);
        }
    }

    fn takes_commands(&self) -> bool {
        matches!(
            self.state,
            State::AwaitingHello
                | State::AwaitingAuth
                | State::AwaitingSelect
                | State::AwaitingGroup
                | State::Ready
        )
    }

    /// Feeds bytes read from the socket; returns how many were consumed. An `Err` is fatal.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> Result<usize, StreamError> {
        if self.state == State::Over {
            return Err(StreamError::SessionOver);
        }
        self.clock = self.clock.max(now);
        if !buf.is_empty() {
            self.last_input = now;
        }
        let mut consumed = 0;
        let result = loop {
            let rest = buf.get(consumed..).unwrap_or_default();
            if rest.is_empty() || self.state == State::Over {
                break Ok(consumed);
            }
            match self.decoder.decode(rest) {
                Ok(Status::Complete(frame, used)) => {
                    consumed += used;
                    if let Err(e) = self.on_frame(&frame, now) {
                        break Err(e);
                    }
                }
                Ok(Status::Partial) => break Ok(consumed),
                Err(e) => break Err(e.into()),
            }
        };
        match result {
            Ok(n) => {
                self.waiting_since = if self.expects.is_empty() {
                    None
                } else {
                    Some(now)
                };
                self.check_finished();
                Ok(n)
            }
            Err(e) => {
                self.state = State::Over;
                self.decoder.reset();
                Err(e)
            }
        }
    }

    /// The peer closed the connection.
    pub fn handle_eof(&mut self, _now: Instant) {
        if self.state != State::Over {
            self.state = State::Over;
            self.events.push_back(StreamEvent::Closed);
        }
    }

    /// Sends the keepalive `PING`, or declares the peer dead, when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if self.state == State::Over {
            return;
        }
        if let Some(dead) = self.dead_deadline() {
            if dead <= now {
                self.state = State::Over;
                self.events
                    .push_back(StreamEvent::Failed(StreamError::PeerDead {
                        silent_for: now.saturating_duration_since(self.last_input),
                    }));
            }
            return;
        }
        if self.state == State::Ready && self.last_input + self.config.keepalive_interval <= now {
            self.command(&[&b"PING"[..]], Expect::Ping, now);
        }
    }

    fn dead_deadline(&self) -> Option<Instant> {
        let since = self.waiting_since?;
        let block = if self.is_blocked() {
            self.config.block
        } else {
            Duration::ZERO
        };
        Some(since + block + self.config.pong_timeout)
    }

    /// The next deadline for `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Over {
            return None;
        }
        match self.dead_deadline() {
            Some(dead) => Some(dead),
            None if self.state == State::Ready => {
                Some(self.last_input + self.config.keepalive_interval)
            }
            None => None,
        }
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Appends the bytes to send (the batched `XACK` included) to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, now: Instant) {
        self.clock = self.clock.max(now);
        self.flush_acks(now);
        if out.is_empty() {
            std::mem::swap(out, &mut self.transmit);
        } else {
            out.append(&mut self.transmit);
        }
    }

    fn flush_acks(&mut self, now: Instant) {
        // Before the handshake ends acks wait in `acks`, to go first once it has.
        if self.acks.is_empty() || self.state != State::Ready {
            return;
        }
        let ids = std::mem::take(&mut self.acks);
        let mut command = Vec::with_capacity(32 + ids.len() * 24);
        array_header(&mut command, 3 + ids.len());
        bulk_string(&mut command, b"XACK");
        bulk_string(&mut command, &self.config.stream);
        bulk_string(&mut command, &self.config.group);
        let mut text = Vec::with_capacity(24);
        for id in &ids {
            text.clear();
            id.write(&mut text);
            bulk_string(&mut command, &text);
        }
        self.raw_command(&command, Expect::Ack(ids), now);
    }

    /// Encodes a command; before the handshake ends it waits in `deferred`.
    fn command<A: AsRef<[u8]>>(&mut self, args: &[A], expect: Expect, now: Instant) {
        let mut bytes = Vec::new();
        encode_command(&mut bytes, args.iter().map(AsRef::as_ref));
        self.raw_command(&bytes, expect, now);
    }

    fn raw_command(&mut self, bytes: &[u8], expect: Expect, now: Instant) {
        self.clock = self.clock.max(now);
        let now = self.clock;
        let handshake = matches!(
            expect,
            Expect::Hello | Expect::Auth | Expect::Select | Expect::CreateGroup
        );
        if self.state == State::Ready || handshake {
            // Acks given meanwhile go first, so they are never behind a block read.
            if !handshake && !matches!(expect, Expect::Ack(_)) && !self.acks.is_empty() {
                self.flush_acks(now);
            }
            self.transmit.extend_from_slice(bytes);
            if self.expects.is_empty() {
                self.waiting_since = Some(now);
            }
            self.expects.push_back(expect);
        } else {
            self.deferred.extend_from_slice(bytes);
            self.deferred_expects.push(expect);
        }
    }

    fn send_hello(&mut self, now: Instant) {
        let mut args: Vec<Vec<u8>> = vec![
            b"HELLO".to_vec(),
            if self.config.resp3 {
                b"3".to_vec()
            } else {
                b"2".to_vec()
            },
        ];
        if let Some(password) = &self.config.password {
            let user = self.config.username.clone().unwrap_or(b"default".to_vec());
            args.extend([b"AUTH".to_vec(), user, password.clone()]);
        }
        if let Some(name) = self.config.client_name.as_deref().filter(|n| !n.is_empty()) {
            args.extend([b"SETNAME".to_vec(), client_name(name)]);
        }
        self.command(&args, Expect::Hello, now);
        self.state = State::AwaitingHello;
    }

    fn after_auth(&mut self, now: Instant) {
        if self.config.db != 0 && self.state != State::AwaitingSelect {
            let db = self.config.db.to_string();
            self.command(&[&b"SELECT"[..], db.as_bytes()], Expect::Select, now);
            self.state = State::AwaitingSelect;
            return;
        }
        match self.config.create_group.clone() {
            Some(start) => {
                let args: [&[u8]; 6] = [
                    b"XGROUP",
                    b"CREATE",
                    &self.config.stream.clone(),
                    &self.config.group.clone(),
                    &start,
                    b"MKSTREAM",
                ];
                self.command(&args, Expect::CreateGroup, now);
                self.state = State::AwaitingGroup;
            }
            None => self.become_ready(now),
        }
    }

    fn become_ready(&mut self, now: Instant) {
        self.state = State::Ready;
        self.events.push_back(StreamEvent::Ready);
        // Acks given meanwhile go first, as they would have on a ready connection.
        self.flush_acks(now);
        let deferred = std::mem::take(&mut self.deferred);
        let expects = std::mem::take(&mut self.deferred_expects);
        if !expects.is_empty() && self.expects.is_empty() {
            self.waiting_since = Some(now);
        }
        self.transmit.extend_from_slice(&deferred);
        self.expects.extend(expects);
    }

    fn server_text(&self, text: &[u8]) -> String {
        truncated_text(text, self.config.password.as_deref())
    }

    fn on_frame(&mut self, frame: &Frame<'_>, now: Instant) -> Result<(), StreamError> {
        match frame {
            // Not subscribed to anything: pushes (`invalidate`, …) are not ours, and
            // attributes only annotate.
            Frame::Push(_) | Frame::Attribute(_) => return Ok(()),
            _ => {}
        }
        let Some(expect) = self.expects.pop_front() else {
            return Err(StreamError::UnexpectedFrame {
                waiting_for: "nothing",
                found: frame.kind_name(),
            });
        };
        let error_text = match frame {
            Frame::Error(text) | Frame::BulkError(text) => Some(*text),
            _ => None,
        };
        match expect {
            Expect::Hello => self.on_hello(frame, now),
            Expect::Auth => match (frame, error_text) {
                (Frame::SimpleString(b"OK"), _) => {
                    self.after_auth(now);
                    Ok(())
                }
                (_, Some(text)) => Err(StreamError::AuthFailed {
                    text: self.server_text(text),
                }),
                (other, None) => Err(self.unexpected("the AUTH reply", other)),
            },
            Expect::Select => match (frame, error_text) {
                (Frame::SimpleString(_), _) => {
                    self.after_auth(now);
                    Ok(())
                }
                (_, Some(text)) => Err(StreamError::Rejected {
                    command: "SELECT",
                    text: self.server_text(text),
                }),
                (other, None) => Err(self.unexpected("the SELECT reply", other)),
            },
            Expect::CreateGroup => match (frame, error_text) {
                (Frame::SimpleString(_), _) => {
                    self.become_ready(now);
                    Ok(())
                }
                (_, Some(text)) if text.starts_with(b"BUSYGROUP") => {
                    self.become_ready(now);
                    Ok(())
                }
                (_, Some(text)) => Err(StreamError::Rejected {
                    command: "XGROUP CREATE",
                    text: self.server_text(text),
                }),
                (other, None) => Err(self.unexpected("the XGROUP CREATE reply", other)),
            },
            Expect::Read { pending, .. } => {
                if let Some(text) = error_text {
                    // NOGROUP (the group was destroyed), WRONGTYPE…: nothing can be read
                    // on this connection; the engine reconnects with backoff.
                    return Err(StreamError::Rejected {
                        command: "XREADGROUP",
                        text: self.server_text(text),
                    });
                }
                self.on_read(frame, pending, now)
            }
            Expect::Claim(id) => {
                if let Some(text) = error_text {
                    self.non_fatal("XCLAIM", text);
                    return Ok(());
                }
                let list = reply::xclaim(frame)?;
                let kept = self.keep_entries(list.iter(), ReadKind::Retry);
                if kept == 0 {
                    let id_text = id.to_bytes();
                    let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
                    let args: [&[u8]; 6] = [b"XPENDING", &stream, &group, &id_text, &id_text, b"1"];
                    self.command(&args, Expect::Owner(id), now);
                } else {
                    self.ask_counts(now);
                }
                Ok(())
            }
            Expect::AutoClaim => {
                self.autoclaim_outstanding = false;
                self.claim_asked = 0;
                if let Some(text) = error_text {
                    self.claim_cursor = EntryId::ZERO;
                    self.non_fatal("XAUTOCLAIM", text);
                    return Ok(());
                }
                let claimed = reply::xautoclaim(frame)?;
                self.claim_cursor = claimed.cursor;
                if !claimed.deleted.is_empty() {
                    self.events
                        .push_back(StreamEvent::Deleted(claimed.deleted.iter().collect()));
                }
                self.keep_entries(claimed.entries.iter(), ReadKind::Claimed);
                self.ask_counts(now);
                if claimed.cursor == EntryId::ZERO {
                    self.events.push_back(StreamEvent::ClaimScanDone);
                }
                Ok(())
            }
            Expect::Count => {
                let line = match error_text {
                    Some(text) => {
                        self.non_fatal("XPENDING", text);
                        None
                    }
                    None => reply::xpending(frame)?.iter().next(),
                };
                self.on_count(
                    line.map(|l| (l.id, l.consumer == self.config.consumer, l.deliveries)),
                );
                Ok(())
            }
            Expect::Owner(id) => {
                let owner = match error_text {
                    Some(_) => None,
                    None => reply::xpending(frame)?
                        .iter()
                        .find(|l| l.id == id)
                        .map(|l| l.consumer.to_vec()),
                };
                self.events.push_back(StreamEvent::RetryGone { id, owner });
                Ok(())
            }
            Expect::Ack(_) => {
                match (frame, error_text) {
                    (Frame::Integer(_), _) => {}
                    (_, Some(text)) => self.non_fatal("XACK", text),
                    (other, None) => return Err(self.unexpected("the XACK reply", other)),
                }
                Ok(())
            }
            Expect::Multi | Expect::Queued => {
                if let Some(text) = error_text {
                    self.non_fatal(expect.name(), text);
                }
                Ok(())
            }
            Expect::Exec(id) => {
                match (frame, error_text) {
                    (Frame::Array(_), _) => self.events.push_back(StreamEvent::DeadLettered(id)),
                    (_, Some(text)) => self.non_fatal("EXEC", text),
                    (f, None) if f.is_null() => self.non_fatal("EXEC", b"transaction aborted"),
                    (other, None) => return Err(self.unexpected("the EXEC reply", other)),
                }
                Ok(())
            }
            Expect::Ping => Ok(()),
            Expect::Summary => {
                match error_text {
                    Some(text) => {
                        self.status_outstanding = false;
                        self.non_fatal("XPENDING", text);
                        // Its XINFO GROUPS partner still answers; ignored below.
                    }
                    None => {
                        let summary = reply::xpending_summary(frame)?;
                        self.status_mine = summary.pending_of(&self.config.consumer);
                        self.status_group_pending = summary.count;
                    }
                }
                Ok(())
            }
            Expect::Groups => {
                let outstanding = std::mem::replace(&mut self.status_outstanding, false);
                match error_text {
                    Some(text) => self.non_fatal("XINFO GROUPS", text),
                    None => {
                        let group = reply::xinfo_groups(frame, &self.config.group)?;
                        if outstanding {
                            self.events.push_back(StreamEvent::Status {
                                mine: self.status_mine,
                                group_pending: self.status_group_pending,
                                lag: group.and_then(|g| g.lag),
                            });
                        }
                    }
                }
                Ok(())
            }
            Expect::Consumers {
                idle_over_ms,
                suffix,
            } => {
                if let Some(text) = error_text {
                    self.non_fatal("XINFO CONSUMERS", text);
                    return Ok(());
                }
                let list = reply::xinfo_consumers(frame)?;
                let doomed: Vec<Vec<u8>> = list
                    .iter()
                    .filter(|c| {
                        c.pending == 0
                            && c.idle_ms > idle_over_ms
                            && c.name != self.config.consumer.as_slice()
                            && !suffix.is_empty()
                            && c.name.ends_with(&suffix)
                    })
                    .map(|c| c.name.to_vec())
                    .collect();
                for name in doomed {
                    let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
                    let args: [&[u8]; 5] = [b"XGROUP", b"DELCONSUMER", &stream, &group, &name];
                    self.command(&args, Expect::DelConsumer(name.clone()), now);
                }
                Ok(())
            }
            Expect::DelConsumer(name) => {
                match error_text {
                    Some(text) => self.non_fatal("XGROUP DELCONSUMER", text),
                    None => self.events.push_back(StreamEvent::ConsumerRemoved(name)),
                }
                Ok(())
            }
        }
    }

    fn on_hello(&mut self, frame: &Frame<'_>, now: Instant) -> Result<(), StreamError> {
        match frame {
            Frame::Map(fields) | Frame::Array(fields) => {
                let mut protocol = if self.config.resp3 {
                    Version::Resp3
                } else {
                    Version::Resp2
                };
                for (key, value) in fields.pairs() {
                    match (key.as_bytes(), value) {
                        (Some(b"version"), value) => {
                            self.server_version = value.as_bytes().map(|v| truncated_text(v, None));
                        }
                        (Some(b"proto"), Frame::Integer(2)) => protocol = Version::Resp2,
                        (Some(b"proto"), Frame::Integer(3)) => protocol = Version::Resp3,
                        _ => {}
                    }
                }
                self.protocol = Some(protocol);
                self.after_auth(now);
                Ok(())
            }
            Frame::Error(text) | Frame::BulkError(text) => {
                if is_hello_unsupported(text) {
                    self.protocol = Some(Version::Resp2);
                    if let Some(password) = self.config.password.clone() {
                        let mut args = vec![b"AUTH".to_vec()];
                        if let Some(user) = &self.config.username {
                            args.push(user.clone());
                        }
                        args.push(password);
                        self.command(&args, Expect::Auth, now);
                        self.state = State::AwaitingAuth;
                    } else {
                        self.after_auth(now);
                    }
                    Ok(())
                } else if is_auth_error(text) {
                    Err(StreamError::AuthFailed {
                        text: self.server_text(text),
                    })
                } else {
                    Err(StreamError::Rejected {
                        command: "HELLO",
                        text: self.server_text(text),
                    })
                }
            }
            other => Err(self.unexpected("the HELLO reply", other)),
        }
    }

    fn on_read(
        &mut self,
        frame: &Frame<'_>,
        pending: bool,
        now: Instant,
    ) -> Result<(), StreamError> {
        self.asked = 0;
        let list = reply::xreadgroup(frame, &self.config.stream)?;
        let list = list.unwrap_or_else(reply::EntryList::empty);
        if !pending {
            self.read_outstanding = false;
            self.keep_entries(list.iter(), ReadKind::New);
            return Ok(());
        }
        if let Some(last) = list.iter().last() {
            self.recovery_cursor = Some(last.id);
        } else {
            self.recovery_cursor = None;
            self.events.push_back(StreamEvent::RecoveryDone);
        }
        let deleted: Vec<EntryId> = list
            .iter()
            .filter(|e| e.fields.is_none())
            .map(|e| e.id)
            .collect();
        if !deleted.is_empty() {
            self.events.push_back(StreamEvent::Deleted(deleted));
        }
        let kept = self.keep_entries(list.iter(), ReadKind::Pending);
        if kept == 0 {
            self.read_outstanding = false;
        } else {
            self.ask_counts(now);
        }
        Ok(())
    }

    /// Copies the entries that still exist: new ones are reported at once (delivered
    /// once), others wait in a batch for their counters. Returns how many were kept.
    fn keep_entries<'b>(
        &mut self,
        entries: impl Iterator<Item = reply::StreamEntry<'b>>,
        kind: ReadKind,
    ) -> usize {
        let kept: Vec<Entry> = entries
            .filter_map(|e| {
                let fields = e.fields?;
                Some(Entry {
                    id: e.id,
                    fields: fields.raw().to_vec(),
                    field_count: fields.element_count(),
                    deliveries: 1,
                })
            })
            .collect();
        let count = kept.len();
        if count == 0 {
            return 0;
        }
        if kind == ReadKind::New {
            self.events.push_back(StreamEvent::Entries {
                kind,
                entries: kept,
            });
        } else {
            self.batches.push_back(Batch {
                kind,
                entries: kept,
                counts_left: 0,
            });
        }
        count
    }

    /// Asks `XPENDING id id 1` for every entry of the newest batch.
    fn ask_counts(&mut self, now: Instant) {
        let Some(batch) = self.batches.back_mut() else {
            return;
        };
        if batch.counts_left != 0 {
            return;
        }
        let ids: Vec<Vec<u8>> = batch.entries.iter().map(|e| e.id.to_bytes()).collect();
        batch.counts_left = ids.len();
        let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
        for id in ids {
            let args: [&[u8]; 6] = [b"XPENDING", &stream, &group, &id, &id, b"1"];
            self.command(&args, Expect::Count, now);
        }
    }

    /// One `XPENDING` answer for the front batch: `(id, held by us, deliveries)`.
    fn on_count(&mut self, line: Option<(EntryId, bool, u64)>) {
        let Some(batch) = self.batches.front_mut() else {
            return;
        };
        let index = batch.entries.len().saturating_sub(batch.counts_left);
        if let Some(entry) = batch.entries.get_mut(index) {
            entry.deliveries = match line {
                Some((id, true, deliveries)) if id == entry.id => deliveries.max(1),
                // Acked, deleted or taken over between the read and the question.
                _ => 0,
            };
        }
        batch.counts_left = batch.counts_left.saturating_sub(1);
        if batch.counts_left == 0 {
            if let Some(batch) = self.batches.pop_front() {
                if batch.kind == ReadKind::Pending {
                    self.read_outstanding = false;
                }
                let entries: Vec<Entry> = batch
                    .entries
                    .into_iter()
                    .filter(|e| e.deliveries > 0)
                    .collect();
                self.events.push_back(StreamEvent::Entries {
                    kind: batch.kind,
                    entries,
                });
            }
        }
    }

    fn non_fatal(&mut self, command: &'static str, text: &[u8]) {
        let text = self.server_text(text);
        self.events
            .push_back(StreamEvent::Error(StreamError::Rejected { command, text }));
    }

    fn unexpected(&self, waiting_for: &'static str, frame: &Frame<'_>) -> StreamError {
        StreamError::UnexpectedFrame {
            waiting_for,
            found: frame.kind_name(),
        }
    }
}

impl fmt::Debug for StreamConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConsumer")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("expects", &self.expects.len())
            .field("recovery_cursor", &self.recovery_cursor)
            .finish()
    }
}

#[cfg(test)]
mod tests;
