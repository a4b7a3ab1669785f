//! One seed's run: the world (network, broker, Redis, php-fpm, the ledger) implementing
//! ferry's `Io`, the real `Engine` driven through its public inputs, a virtual clock, and
//! the step loop that picks, from the seed, what happens next.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ferry::config::{self, Address};
use ferry::dispatch::outcome::ConnectFailure;
use ferry::engine::io::{
    BoundSocket, Buffers, ConnId, Connect, ConnectError, Fill, Io, Notice, ProcessExit,
    ProcessSignal, SocketKey, WriteError,
};
use ferry::engine::{Accept, Engine, Options};
use ferry::metrics::ProcessStats;

use crate::broker::{self, Broker};
use crate::fpm::Fpm;
use crate::ledger::{Ledger, Rules};
use crate::net::{Conn, Mark, Net, PeerKind};
use crate::redis::{self, Redis};
use crate::rng::Rng;
use crate::scenario::{Event, Fault, Params, Scenario};
use crate::trace::{self, trace};

/// Steps before a run is declared stuck.
const MAX_STEPS: u64 = 300_000;
/// Virtual time after the last scheduled event by which everything must be settled.
const SETTLE_LIMIT: Duration = Duration::from_secs(600);

/// Everything but the engine: what ferry's `Io` commands act on.
pub struct World {
    pub now: Instant,
    start: Instant,
    pub rng: Rng,
    pub net: Net,
    pub broker: Broker,
    pub redis: Redis,
    pub fpm: Fpm,
    pub ledger: Ledger,
    pub incarnation: u32,
    redis_refuses_hello: bool,
    write_split_percent: u64,
    /// Broker connections reset while ferry held them, per incarnation (acks ferry
    /// counted may have been lost on the way).
    broker_resets: BTreeMap<u32, u32>,
    /// A control request is on its way: the next one waits for its answer (an operator
    /// pausing then resuming does it in that order).
    control_pending: bool,
    /// A control client was closed without an answer (fine only when ferry exits).
    control_unanswered: bool,
}

impl World {
    fn ms(&self) -> u64 {
        (self.now - self.start).as_millis() as u64
    }

    /// ferry no longer holds connection `id` (it closed it, or it is gone).
    fn ferry_gone(&mut self, id: u64) {
        let Some(mut conn) = self.net.conns.remove(&id) else {
            return;
        };
        conn.ferry = None;
        for (message, attempt, kind) in conn.tap.unread.drain(..) {
            self.ledger.on_request_never_ran(&message, attempt, kind);
        }
        for (_, mark) in conn.marks.drain(..) {
            if let Mark::Answer(proc) = mark {
                self.ledger.answer_cut(proc);
            }
        }
        match conn.peer {
            PeerKind::Broker => {
                // A close is orderly: what ferry wrote before it reaches the broker.
                if !conn.reset && conn.connecting.is_none() {
                    self.broker
                        .input(id, &mut conn, &mut self.ledger, &mut self.rng, self.now);
                }
                self.broker.conn_gone(id, &mut self.ledger);
            }
            PeerKind::Redis => self.redis.conn_gone(id),
            PeerKind::Fpm => self.fpm.conn_gone(id, &mut self.ledger),
            PeerKind::Control => self.control_answer(&mut conn),
        }
    }

    /// The control client's connection ended: ferry's whole answer is in.
    fn control_answer(&mut self, conn: &mut Conn) {
        conn.answer.append(&mut conn.to_peer);
        let answer = String::from_utf8_lossy(&conn.answer).into_owned();
        trace!("control: {}", answer.lines().next().unwrap_or_default());
        self.control_pending = false;
        if answer.is_empty() {
            self.control_unanswered = true;
            return;
        }
        let complete = answer
            .split_once("\r\n\r\n")
            .is_some_and(|(head, body)| head.contains(&format!("Content-Length: {}", body.len())));
        if !answer.starts_with("HTTP/1.1 200") {
            self.ledger
                .violation(format!("control endpoint answered: {answer:?}"));
        } else if !complete {
            // Cut off: a fault unless ferry is ending (checked after the step).
            trace!("control: answer cut off after {} bytes", answer.len());
            self.control_unanswered = true;
        }
    }

    /// The peer's side resets `id`: ferry's next read fails.
    fn reset(&mut self, id: u64) {
        let Some(conn) = self.net.conns.get_mut(&id) else {
            return;
        };
        if conn.reset {
            return;
        }
        trace!("net: conn {id} ({:?}) reset", conn.peer);
        conn.reset = true;
        conn.to_peer.clear();
        conn.to_ferry.clear();
        for (message, attempt, kind) in conn.tap.unread.drain(..) {
            self.ledger.on_request_never_ran(&message, attempt, kind);
        }
        for (_, mark) in conn.marks.drain(..) {
            if let Mark::Answer(proc) = mark {
                self.ledger.answer_cut(proc);
            }
        }
        match conn.peer {
            PeerKind::Broker => {
                *self.broker_resets.entry(conn.incarnation).or_default() += 1;
                self.broker.conn_gone(id, &mut self.ledger);
            }
            PeerKind::Redis => self.redis.conn_gone(id),
            PeerKind::Fpm => self.fpm.conn_gone(id, &mut self.ledger),
            PeerKind::Control => {}
        }
    }
}

impl Io for World {
    /// Every connect completes later, through the world's own events (a real unix socket
    /// connects at once; the engine's `Connect::Done` path is covered by its unit tests).
    fn connect(
        &mut self,
        conn: ConnId,
        address: &Address,
        _tls: Option<&ferry::config::TlsClient>,
    ) -> Result<Connect, ConnectError> {
        let text = address.to_string();
        let peer = if text.contains("fpm.sock") {
            PeerKind::Fpm
        } else if text.contains("5672") {
            PeerKind::Broker
        } else if text.contains("6379") {
            PeerKind::Redis
        } else {
            self.ledger
                .violation(format!("ferry connected to an unknown address {text}"));
            return Err(ConnectError {
                failure: ConnectFailure::Other,
                message: "unknown".into(),
            });
        };
        let refuse = |failure, message: &str| {
            Err(ConnectError {
                failure,
                message: message.into(),
            })
        };
        let mut c = Conn::new(peer, conn, self.incarnation);
        match peer {
            PeerKind::Fpm => {
                if self.fpm.is_down(self.now) {
                    trace!("net: php-fpm connect refused (down)");
                    return if self.rng.chance(50) {
                        refuse(ConnectFailure::Refused, "Connection refused")
                    } else {
                        refuse(ConnectFailure::NotFound, "No such file or directory")
                    };
                }
                if self.fpm.backlog_full() {
                    trace!("net: php-fpm connect EAGAIN (backlog full)");
                    return refuse(
                        ConnectFailure::BacklogFull,
                        "Resource temporarily unavailable",
                    );
                }
                c.connecting = Some(Ok(()));
                let id = self.net.open(c);
                self.fpm.accept(id);
            }
            PeerKind::Broker | PeerKind::Redis => {
                let down = match peer {
                    PeerKind::Broker => self.broker.is_down(self.now),
                    _ => self.redis.down_until.is_some_and(|t| self.now < t),
                };
                c.connecting = Some(if down {
                    Err(ConnectFailure::Refused)
                } else {
                    Ok(())
                });
                self.net.open(c);
            }
            PeerKind::Control => unreachable!(),
        }
        Ok(Connect::Pending)
    }

    fn listen(&mut self, conn: ConnId, _address: &Address) -> Result<(), String> {
        self.net.control_listener = Some(conn);
        Ok(())
    }

    fn flush(&mut self, conn: ConnId, buffers: &mut Buffers) -> Result<(), WriteError> {
        let Some(id) = self.net.id_of(conn) else {
            return Ok(());
        };
        let split = self.write_split_percent;
        let Some(c) = self.net.conns.get_mut(&id) else {
            return Ok(());
        };
        if c.reset {
            return Err(WriteError("Connection reset by peer".into()));
        }
        if c.connecting.is_some() {
            return Ok(());
        }
        let out = buffers.output();
        let n = if out.is_empty() {
            0
        } else if self.rng.chance(split) {
            // A worker's socket takes a whole request or nothing (a FastCGI request is
            // far smaller than a socket buffer); the ledger could not name a message
            // whose request was cut before its body.
            if c.peer == PeerKind::Fpm {
                0
            } else {
                self.rng.below(out.len() as u64 + 1) as usize
            }
        } else {
            out.len()
        };
        c.to_peer.extend_from_slice(&out[..n]);
        if c.peer == PeerKind::Fpm {
            c.tap.written(&out[..n]);
        }
        buffers.commit_write(n);
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        if self.net.control_listener == Some(conn) {
            self.net.control_listener = None;
            return;
        }
        if let Some(id) = self.net.by_ferry.remove(&conn.0) {
            self.ferry_gone(id);
        }
    }

    fn raise_fd_limit(&mut self, _wanted: u64) -> u64 {
        65536
    }

    fn bind_worker_socket(
        &mut self,
        _pool: &str,
        _listen: Option<&Address>,
    ) -> Result<BoundSocket, String> {
        Err("the simulation has no spawned pools".into())
    }

    fn release_worker_socket(&mut self, _socket: SocketKey) {}

    fn spawn_worker(
        &mut self,
        _command: &[String],
        _socket: SocketKey,
        _max: u32,
    ) -> Result<u32, String> {
        Err("the simulation has no spawned pools".into())
    }

    fn signal_worker(&mut self, _pid: u32, _signal: ProcessSignal) -> Result<(), String> {
        Ok(())
    }

    fn reap_worker(&mut self, _pid: u32) -> Result<Option<ProcessExit>, String> {
        Ok(None)
    }

    fn kill_worker(&mut self, _pid: u32) {}

    fn notify(&mut self, notice: Notice<'_>) {
        trace!("notify {notice:?}");
    }

    fn process_stats(&mut self) -> ProcessStats {
        ProcessStats::default()
    }

    fn release_startup_code(&mut self) {}
}

/// What happens next.
#[derive(Debug, Clone, Copy)]
enum Action {
    Connect(u64),
    Deliver(u64),
    PeerRead(u64),
    Writable(u64),
    Advance(bool),
}

/// The result of a run.
pub struct Report {
    pub steps: u64,
    pub virtual_ms: u64,
    pub digest: u64,
}

/// One seed's run; see the module docs.
pub struct Sim {
    w: World,
    engine: Option<Engine>,
    params: Params,
    schedule: VecDeque<(Instant, Event)>,
    restart_at: Option<Instant>,
    /// Restart after the current drain ends (a mid-run SIGTERM).
    restart_after_exit: Option<Duration>,
    term_at: Option<Instant>,
    final_term: bool,
    done: bool,
    steps: u64,
    /// The largest `max_in_flight`, `prefetch` and `backlog` of this incarnation's configs.
    limits: (u32, u32, usize),
    read_whole_percent: u64,
    last_event: Instant,
}

fn parse(json: &str) -> config::Config {
    config::parse(json.as_bytes(), None).unwrap_or_else(|e| panic!("config: {e}\n{json}"))
}

impl Sim {
    pub fn new(seed: u64, epoch: Instant) -> Sim {
        trace::reset();
        let mut rng = Rng::new(seed);
        let scenario = Scenario::draw(&mut rng);
        let p = &scenario.params;
        let mut ledger = Ledger::default();
        ledger.rules = Some(Rules {
            amqp_max_attempts: p.amqp_max_attempts,
            redis_max_attempts: p.redis_max_attempts,
            hold: p.hold,
            on_dispatch: p.on_dispatch,
        });
        trace!("seed {seed}: {:?}", p);
        trace!(
            "php-fpm {} children, backlog {}, max_requests {}, {}% failures; broker heartbeat {} s, {}% nacks; redis refuses HELLO: {}; {} AMQP and {} Redis messages; events {:?}",
            scenario.fpm_children,
            scenario.fpm_backlog,
            scenario.fpm_max_requests,
            scenario.failure_percent,
            scenario.broker_heartbeat_s,
            scenario.broker_nack_percent,
            scenario.redis_refuses_hello,
            scenario.amqp_messages,
            scenario.redis_messages,
            scenario.events.iter().filter(|(_, e)| matches!(e, Event::Fault(_))).collect::<Vec<_>>()
        );
        let slow_ms = p.request_timeout_ms + rng.range(1, 4) * 500;
        let w = World {
            now: epoch,
            start: epoch,
            rng,
            net: Net::default(),
            broker: Broker::new(scenario.broker_heartbeat_s, scenario.broker_nack_percent),
            redis: Redis::default(),
            fpm: Fpm::new(
                scenario.fpm_children,
                scenario.fpm_backlog,
                slow_ms,
                scenario.fpm_max_requests,
                scenario.failure_percent,
            ),
            ledger,
            incarnation: 0,
            redis_refuses_hello: scenario.redis_refuses_hello,
            write_split_percent: scenario.write_split_percent,
            broker_resets: BTreeMap::new(),
            control_pending: false,
            control_unanswered: false,
        };
        let schedule: VecDeque<(Instant, Event)> = scenario
            .events
            .iter()
            .map(|(at, e)| (epoch + *at, *e))
            .collect();
        let last_event = schedule.back().map_or(epoch, |(at, _)| *at);
        let limits = (p.max_in_flight, p.prefetch, p.backlog);
        let mut sim = Sim {
            w,
            engine: None,
            params: scenario.params,
            schedule,
            restart_at: None,
            restart_after_exit: None,
            term_at: None,
            final_term: false,
            done: false,
            steps: 0,
            limits,
            read_whole_percent: scenario.read_whole_percent,
            last_event,
        };
        sim.start_engine();
        sim
    }

    /// Runs to the end; `Err` with the violations.
    pub fn run(mut self) -> Result<Report, String> {
        while !self.done && self.w.ledger.violations.is_empty() {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                let why = format!("no end after {MAX_STEPS} steps; {}", self.summary());
                self.w.ledger.violation(why);
                break;
            }
            if self.w.now > self.last_event + SETTLE_LIMIT {
                let why = format!(
                    "not settled {} s after the last event; {}",
                    SETTLE_LIMIT.as_secs(),
                    self.summary()
                );
                self.w.ledger.violation(why);
                break;
            }
            self.maybe_final_term();
            let action = self.choose();
            if self.steps + 8 > MAX_STEPS {
                trace!("step {}: {action:?}", self.steps);
            }
            self.perform(action);
            if std::mem::take(&mut self.w.control_unanswered) && self.engine.is_some() {
                self.w
                    .ledger
                    .violation("the control endpoint closed a client without an answer".into());
            }
            self.check_step();
        }
        if self.w.ledger.violations.is_empty() {
            self.w.ledger.check_final();
            if self.w.broker.outstanding() > 0 {
                let why = format!(
                    "messages left in the broker at the end; {}",
                    self.w.broker.summary()
                );
                self.w.ledger.violation(why);
            }
        }
        if self.w.ledger.violations.is_empty() {
            Ok(Report {
                steps: self.steps,
                virtual_ms: self.w.ms(),
                digest: trace::digest(),
            })
        } else {
            Err(self.w.ledger.violations.join("\n"))
        }
    }

    fn summary(&self) -> String {
        let unsettled: Vec<&String> = self
            .w
            .ledger
            .published
            .iter()
            .filter(|m| self.w.ledger.completions.get(*m).copied().unwrap_or(0) == 0)
            .collect();
        format!(
            "{}; ferry {}; unsettled {:?}",
            self.w.broker.summary(),
            if self.engine.is_some() {
                "running"
            } else {
                "not running"
            },
            unsettled
        )
    }

    fn start_engine(&mut self) {
        self.w.incarnation += 1;
        self.limits = (
            self.params.max_in_flight,
            self.params.prefetch,
            self.params.backlog,
        );
        let config = parse(&self.params.config_json());
        let options = Options {
            seed: self.w.rng.next(),
            notify: false,
            watchdog: None,
            pid: 4000 + self.w.incarnation,
        };
        trace!("ferry: start (incarnation {})", self.w.incarnation);
        let engine =
            Engine::start(&config, options, self.w.now, &mut self.w).expect("ferry starts");
        self.engine = Some(engine);
        self.turn();
    }

    /// Everything ferry held is gone (a crash, or its exit).
    fn engine_gone(&mut self) {
        self.engine = None;
        self.w.control_pending = false;
        self.w.control_unanswered = false;
        let ids: Vec<u64> = self
            .w
            .net
            .conns
            .iter()
            .filter(|(_, c)| c.ferry.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(c) = self.w.net.conns.get_mut(&id) {
                // A process that dies resets nothing: its sockets close.
                c.to_peer.clear();
            }
            self.w.ferry_gone(id);
        }
        self.w.net.by_ferry.clear();
        self.w.net.control_listener = None;
        // A control client cut off by ferry's end (crash or exit) is no fault of the
        // endpoint: only one closed while ferry lives is.
        self.w.control_pending = false;
        self.w.control_unanswered = false;
    }

    /// One loop turn of the reactor: re-reads, due timers, the end of the turn.
    fn turn(&mut self) {
        for _ in 0..32 {
            let Some(engine) = self.engine.as_mut() else {
                return;
            };
            for conn in engine.take_rereads() {
                if let Some(id) = self.w.net.id_of(conn) {
                    self.deliver(id, true);
                }
            }
            let Some(engine) = self.engine.as_mut() else {
                return;
            };
            engine.handle_timeout(self.w.now, &mut self.w);
            if let Some(code) = engine.end_turn(self.w.now, &mut self.w) {
                self.on_exit(code);
                return;
            }
            if !engine.has_queued_work() {
                return;
            }
        }
    }

    fn on_exit(&mut self, code: i32) {
        trace!("ferry: exited with code {code}");
        if code != 0 {
            self.w
                .ledger
                .violation(format!("ferry exited with code {code} after a drain"));
        }
        self.check_exit_metrics();
        self.engine_gone();
        if self.final_term {
            self.done = true;
        } else if let Some(after) = self.restart_after_exit.take() {
            self.restart_at = Some(self.w.now + after);
        } else {
            self.w
                .ledger
                .violation("ferry exited without being told to".into());
        }
        self.term_at = None;
    }

    // ---- choosing -----------------------------------------------------------------------

    fn choose(&mut self) -> Action {
        let mut candidates = Vec::new();
        for (id, c) in &self.w.net.conns {
            let Some(f) = c.ferry else {
                continue;
            };
            if c.connecting.is_some() {
                candidates.push(Action::Connect(*id));
                continue;
            }
            if c.readable() {
                let room = self
                    .engine
                    .as_mut()
                    .and_then(|e| e.buffers_mut(f))
                    .map_or(0, |b| b.fill_limit().saturating_sub(b.unconsumed()));
                if room > 0 || c.to_ferry.is_empty() {
                    candidates.push(Action::Deliver(*id));
                }
            }
            let peer_can_read = match c.peer {
                PeerKind::Fpm => self.w.fpm.can_read(*id),
                _ => true,
            };
            if !c.to_peer.is_empty() && peer_can_read && !c.reset {
                candidates.push(Action::PeerRead(*id));
            }
            let wants_write = self
                .engine
                .as_mut()
                .and_then(|e| e.buffers_mut(f))
                .is_some_and(|b| b.wants_write());
            if wants_write && !c.reset {
                candidates.push(Action::Writable(*id));
            }
        }
        if candidates.is_empty() {
            return Action::Advance(true);
        }
        if self.w.rng.chance(6) {
            return Action::Advance(false);
        }
        candidates[self.w.rng.below(candidates.len() as u64) as usize]
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let engine = self.engine.as_mut().and_then(|e| e.poll_timeout());
        [
            engine,
            self.w.broker.next_deadline(),
            self.w.fpm.next_deadline(),
            self.w.fpm.down_until,
            self.w.redis.down_until,
            self.schedule.front().map(|(at, _)| *at),
            self.restart_at,
        ]
        .into_iter()
        .flatten()
        // What is due now was handled when the clock got here.
        .filter(|t| *t > self.w.now)
        .min()
    }

    // ---- acting -------------------------------------------------------------------------

    fn perform(&mut self, action: Action) {
        match action {
            Action::Connect(id) => self.complete_connect(id),
            Action::Deliver(id) => {
                self.deliver(id, false);
                self.turn();
            }
            Action::PeerRead(id) => self.peer_read(id),
            Action::Writable(id) => self.writable(id),
            Action::Advance(big) => self.advance(big),
        }
    }

    fn complete_connect(&mut self, id: u64) {
        let Some(c) = self.w.net.conns.get_mut(&id) else {
            return;
        };
        let (Some(result), Some(f)) = (c.connecting.take(), c.ferry) else {
            return;
        };
        let peer = c.peer;
        let incarnation = c.incarnation;
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        match result {
            Ok(()) => {
                match peer {
                    PeerKind::Broker => self.w.broker.accept(id, incarnation, self.w.now),
                    PeerKind::Redis => self.w.redis.accept(id, self.w.redis_refuses_hello),
                    _ => {}
                }
                engine.handle_connected(f, self.w.now, &mut self.w);
                if let Some(engine) = self.engine.as_mut() {
                    engine.handle_ready(f, Fill::Drained, self.w.now, &mut self.w);
                }
            }
            Err(failure) => {
                trace!("net: connect of conn {id} ({peer:?}) refused");
                let error = ConnectError {
                    failure,
                    message: "Connection refused".into(),
                };
                engine.handle_connect_failed(f, &error, self.w.now);
            }
        }
        self.turn();
    }

    /// ferry reads connection `id` (a readable event, or a re-read when `all`).
    fn deliver(&mut self, id: u64, all: bool) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let Some(c) = self.w.net.conns.get_mut(&id) else {
            return;
        };
        let Some(f) = c.ferry else {
            return;
        };
        if c.connecting.is_some() {
            return;
        }
        let fill = if c.reset {
            if c.end_told {
                return;
            }
            c.end_told = true;
            Fill::Failed
        } else {
            let Some(buffers) = engine.buffers_mut(f) else {
                return;
            };
            let room = buffers.fill_limit().saturating_sub(buffers.unconsumed());
            let available = c.to_ferry.len().min(room);
            let n = if all || available <= 1 || self.w.rng.chance(self.read_whole_percent) {
                available
            } else {
                self.w.rng.range(1, available as u64) as usize
            };
            buffers.push_input(&c.to_ferry[..n]);
            c.to_ferry.drain(..n);
            c.delivered += n as u64;
            while let Some(&(at, mark)) = c.marks.front() {
                if at > c.delivered {
                    break;
                }
                c.marks.pop_front();
                match mark {
                    Mark::Answer(proc) => self.w.ledger.answer_delivered(proc),
                    Mark::RedisMessage => {
                        *self
                            .w
                            .ledger
                            .redis_received
                            .entry(c.incarnation)
                            .or_default() += 1
                    }
                }
            }
            if c.to_ferry.is_empty() && c.fin && !c.end_told {
                c.end_told = true;
                Fill::Eof
            } else if n == room && !c.to_ferry.is_empty() {
                Fill::Full
            } else {
                Fill::Drained
            }
        };
        engine.handle_ready(f, fill, self.w.now, &mut self.w);
    }

    fn writable(&mut self, id: u64) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let Some(f) = self.w.net.conns.get(&id).and_then(|c| c.ferry) else {
            return;
        };
        let Some(buffers) = engine.buffers_mut(f) else {
            return;
        };
        let fill = match self.w.flush(f, buffers) {
            Ok(()) => Fill::Drained,
            Err(_) => Fill::Failed,
        };
        engine.handle_ready(f, fill, self.w.now, &mut self.w);
        self.turn();
    }

    fn peer_read(&mut self, id: u64) {
        let w = &mut self.w;
        let Some(mut conn) = w.net.conns.remove(&id) else {
            return;
        };
        match conn.peer {
            PeerKind::Broker => {
                let after = w
                    .broker
                    .input(id, &mut conn, &mut w.ledger, &mut w.rng, w.now);
                if after == broker::After::Close {
                    conn.fin = true;
                    w.broker.conn_gone(id, &mut w.ledger);
                }
            }
            PeerKind::Redis => {
                if let redis::After::Close = w.redis.input(id, &mut conn) {
                    conn.fin = true;
                    w.redis.conn_gone(id);
                }
            }
            PeerKind::Fpm => {
                if !w.fpm.input(id, &mut conn, &mut w.ledger, &mut w.rng, w.now) {
                    w.net.conns.insert(id, conn);
                    w.reset(id);
                    return;
                }
            }
            PeerKind::Control => conn.answer.append(&mut conn.to_peer),
        }
        w.net.conns.insert(id, conn);
        w.broker.pump(&mut w.net.conns, &mut w.ledger, w.now);
    }

    fn advance(&mut self, big: bool) {
        let next = self.next_deadline();
        let now = self.w.now;
        let target = if big {
            next.unwrap_or(now + Duration::from_secs(1))
        } else {
            let small = now + Duration::from_millis(self.w.rng.range(1, 40));
            next.map_or(small, |n| n.min(small))
        };
        self.w.now = target.max(now);
        trace::set_now(self.w.ms());
        // Scheduled events.
        while let Some(&(at, event)) = self.schedule.front() {
            if at > self.w.now {
                break;
            }
            self.schedule.pop_front();
            self.on_event(event);
        }
        if self.restart_at.is_some_and(|t| t <= self.w.now) && self.engine.is_none() {
            self.restart_at = None;
            self.start_engine();
        }
        let w = &mut self.w;
        for id in w.broker.on_time(&mut w.net.conns, &mut w.ledger, w.now) {
            w.reset(id);
        }
        w.fpm.on_time(&mut w.net.conns, &mut w.ledger, w.now);
        w.broker.pump(&mut w.net.conns, &mut w.ledger, w.now);
        self.turn();
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::PublishAmqp(k) => {
                let w = &mut self.w;
                w.broker
                    .publish_external(&format!("a{k}"), &mut w.ledger, w.now);
                trace!("world: publish a{k}");
                w.broker.pump(&mut w.net.conns, &mut w.ledger, w.now);
            }
            Event::PublishRedis(k) => {
                let w = &mut self.w;
                w.redis.publish(&format!("r{k}"), &mut w.net.conns);
            }
            Event::Fault(fault) => self.on_fault(fault),
        }
    }

    fn current_conns(&self, peer: PeerKind) -> Vec<u64> {
        self.w
            .net
            .conns
            .iter()
            .filter(|(_, c)| {
                c.peer == peer && c.ferry.is_some() && c.connecting.is_none() && !c.reset
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn on_fault(&mut self, fault: Fault) {
        trace!("FAULT {fault:?}");
        let now = self.w.now;
        match fault {
            Fault::DropBroker | Fault::DropRedis | Fault::DropWorker => {
                let peer = match fault {
                    Fault::DropBroker => PeerKind::Broker,
                    Fault::DropRedis => PeerKind::Redis,
                    _ => PeerKind::Fpm,
                };
                let ids = self.current_conns(peer);
                if !ids.is_empty() {
                    let id = ids[self.w.rng.below(ids.len() as u64) as usize];
                    self.w.reset(id);
                }
            }
            Fault::BrokerRestart(ms) => {
                for id in self.w.broker.conn_ids() {
                    self.w.reset(id);
                }
                self.w.broker.down_until = Some(now + Duration::from_millis(ms));
            }
            Fault::RedisRestart(ms) => {
                for id in self.w.redis.conn_ids() {
                    self.w.reset(id);
                }
                self.w.redis.down_until = Some(now + Duration::from_millis(ms));
            }
            Fault::FpmOutage(ms) => {
                let ids = self.w.fpm.stop(&mut self.w.ledger);
                for id in ids {
                    self.w.reset(id);
                }
                self.w.fpm.down_until = Some(now + Duration::from_millis(ms));
            }
            Fault::Crash(after) => {
                if self.engine.is_some() && self.term_at.is_none() {
                    trace!("ferry: killed");
                    self.engine_gone();
                    self.restart_at = Some(now + Duration::from_millis(after));
                }
            }
            Fault::Term(after) => {
                if self.engine.is_some() && self.term_at.is_none() {
                    self.restart_after_exit = Some(Duration::from_millis(after));
                    self.sigterm();
                }
            }
            Fault::Reload => {
                if let (Some(engine), None) = (self.engine.as_mut(), self.term_at) {
                    let new = self.params.reloaded(&mut self.w.rng);
                    trace!("ferry: SIGHUP with {new:?}");
                    engine.reload(Ok(parse(&new.config_json())), now, &mut self.w);
                    self.limits.0 = self.limits.0.max(new.max_in_flight);
                    self.limits.1 = self.limits.1.max(new.prefetch);
                    self.limits.2 = self.limits.2.max(new.backlog);
                    self.params = new;
                    self.turn();
                }
            }
            Fault::Pause(_) | Fault::Resume(_) if self.w.control_pending => {
                let at = now + Duration::from_millis(50);
                let index = self.schedule.partition_point(|(t, _)| *t <= at);
                self.schedule.insert(index, (at, Event::Fault(fault)));
                self.last_event = self.last_event.max(at);
            }
            Fault::Pause(source) => self.control(&format!("/sources/{source}/pause")),
            Fault::Resume(source) => self.control(&format!("/sources/{source}/resume")),
        }
    }

    /// A control client POSTs `path`.
    fn control(&mut self, path: &str) {
        let (Some(engine), Some(listener)) = (self.engine.as_mut(), self.w.net.control_listener)
        else {
            return;
        };
        let Some(Accept::Take(conn)) = engine.handle_accept(listener, self.w.now) else {
            self.w
                .ledger
                .violation("the control endpoint refused a client".into());
            return;
        };
        let mut c = Conn::new(PeerKind::Control, conn, self.w.incarnation);
        c.send(format!("POST {path} HTTP/1.1\r\nHost: ferry\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        self.w.net.open(c);
        self.w.control_pending = true;
        trace!("control: POST {path}");
        self.turn();
    }

    fn sigterm(&mut self) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        trace!("ferry: SIGTERM");
        self.term_at = Some(self.w.now);
        if let Some(code) = engine.handle_terminate(15, self.w.now, &mut self.w) {
            self.on_exit(code);
            return;
        }
        self.turn();
    }

    /// Once the workload is done and every message settled, the last SIGTERM.
    fn maybe_final_term(&mut self) {
        if self.final_term
            || !self.schedule.is_empty()
            || self.restart_at.is_some()
            || self.term_at.is_some()
            || self.w.control_pending
        {
            return;
        }
        if self.engine.is_none() || self.w.broker.outstanding() > 0 {
            return;
        }
        if !self.params.on_dispatch && !self.w.ledger.all_completed() {
            return;
        }
        self.final_term = true;
        self.sigterm();
    }

    // ---- checking -----------------------------------------------------------------------

    fn check_step(&mut self) {
        let open_workers = self
            .w
            .net
            .conns
            .values()
            .filter(|c| {
                c.peer == PeerKind::Fpm && c.ferry.is_some() && c.incarnation == self.w.incarnation
            })
            .count();
        // One more than max_in_flight: a circuit probe may be out.
        if open_workers > self.limits.0 as usize + 1 {
            let states: Vec<String> = self
                .w
                .net
                .conns
                .iter()
                .filter(|(_, c)| c.peer == PeerKind::Fpm && c.ferry.is_some())
                .map(|(id, c)| {
                    format!(
                        "conn {id}{}{}{}, {} requests unread",
                        if c.connecting.is_some() {
                            " connecting"
                        } else {
                            ""
                        },
                        if c.fin { " closed by php-fpm" } else { "" },
                        if c.reset { " reset" } else { "" },
                        c.tap.unread.len()
                    )
                })
                .collect();
            self.w.ledger.violation(format!(
                "ferry holds {open_workers} worker connections with max_in_flight {}: {}",
                self.limits.0,
                states.join("; ")
            ));
        }
        if self.steps % 64 == 0 {
            self.check_gauges();
        }
    }

    fn metrics(&mut self) -> Option<BTreeMap<String, f64>> {
        let engine = self.engine.as_mut()?;
        let text = engine.render_metrics(&mut self.w);
        Some(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    fn check_gauges(&mut self) {
        let Some(m) = self.metrics() else {
            return;
        };
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let (max_in_flight, prefetch, backlog) = self.limits;
        let in_flight = get(r#"ferry_jobs_in_flight{pool="php"}"#);
        let unacked = get(r#"ferry_unacked_messages{source="tasks"}"#);
        let waiting = get(r#"ferry_backlog_messages{source="events"}"#);
        if in_flight > f64::from(max_in_flight) {
            self.w.ledger.violation(format!(
                "{in_flight} jobs in flight, max_in_flight {max_in_flight}"
            ));
        }
        if unacked > f64::from(prefetch) {
            self.w
                .ledger
                .violation(format!("{unacked} unacked deliveries, prefetch {prefetch}"));
        }
        if waiting > (backlog + self.w.ledger.redis_may_return()) as f64 {
            self.w.ledger.violation(format!(
                "{waiting} messages in the Redis backlog, backlog {backlog}"
            ));
        }
    }

    /// After a drain: ferry's counters against what the peers saw.
    fn check_exit_metrics(&mut self) {
        let Some(m) = self.metrics() else {
            return;
        };
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0) as u64;
        let inc = self.w.incarnation;
        let settled = |outcome: &str| {
            get(&format!(
                r#"ferry_messages_settled_total{{source="tasks",outcome="{outcome}"}}"#
            ))
        };
        let ferry_finals = settled("acked") + settled("retried") + settled("dead_lettered");
        let broker_finals = self.w.ledger.finals_written.get(&inc).copied().unwrap_or(0);
        let resets = self.w.broker_resets.get(&inc).copied().unwrap_or(0);
        if ferry_finals != broker_finals && !(resets > 0 && ferry_finals > broker_finals) {
            self.w.ledger.violation(format!(
                "ferry counts {ferry_finals} AMQP deliveries settled (acked {} + retried {} + dead_lettered {}), the broker saw {broker_finals} acks and rejects",
                settled("acked"),
                settled("retried"),
                settled("dead_lettered")
            ));
        }
        if self.params.redis {
            let received = get(r#"ferry_messages_received_total{source="events"}"#);
            let seen = self.w.ledger.redis_received.get(&inc).copied().unwrap_or(0);
            if received != seen {
                self.w.ledger.violation(format!(
                    "ferry counts {received} Redis messages received, {seen} reached it"
                ));
            }
            let redis_settled = |outcome: &str| {
                get(&format!(
                    r#"ferry_messages_settled_total{{source="events",outcome="{outcome}"}}"#
                ))
            };
            let dropped: u64 = ["backlog_full", "paused", "shutdown", "too_large"]
                .iter()
                .map(|r| {
                    get(&format!(
                        r#"ferry_messages_dropped_total{{source="events",reason="{r}"}}"#
                    ))
                })
                .sum();
            let accounted = redis_settled("acked") + redis_settled("discarded") + dropped;
            let in_time = self.term_at.is_some_and(|t| {
                self.w.now < t + Duration::from_millis(self.params.shutdown_timeout_ms)
            });
            if accounted > received || (in_time && accounted != received) {
                self.w.ledger.violation(format!(
                    "Redis: {received} received, but acked {} + discarded {} + dropped {dropped} = {accounted}",
                    redis_settled("acked"),
                    redis_settled("discarded")
                ));
            }
        }
        // Only where php-fpm can take `max_in_flight` connections at once: with fewer
        // children than that (a misconfiguration the docs warn about) connects get
        // EAGAIN and the pool's circuit keeps opening, which can outlast any timeout.
        let fpm_fits = self.w.fpm.children + self.w.fpm.backlog >= self.limits.0 as usize;
        if self.final_term && fpm_fits {
            let in_time = self.term_at.is_some_and(|t| {
                self.w.now < t + Duration::from_millis(self.params.shutdown_timeout_ms)
            });
            if !in_time {
                let why = format!(
                    "the last drain, with every peer healthy, ran into shutdown_timeout_ms; {}",
                    self.w.fpm.summary()
                );
                self.w.ledger.violation(why);
            }
        }
    }
}
