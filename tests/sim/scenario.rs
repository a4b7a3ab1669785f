//! What one seed runs: ferry's configuration, the peers' character, the workload and
//! the faults, all drawn from the seed (`docs/SIMULATION.md`, "Scenarios").

use std::time::Duration;

use crate::rng::Rng;

/// The configuration knobs the seed draws (and a reload changes).
#[derive(Debug, Clone)]
pub struct Params {
    pub max_in_flight: u32,
    pub keep_conn: bool,
    pub request_timeout_ms: u64,
    pub circuit_release_ms: u64,
    pub prefetch: u32,
    pub amqp_max_attempts: u32,
    pub amqp_delays: Vec<u64>,
    pub hold: bool,
    pub on_dispatch: bool,
    pub dead_letter_publish: bool,
    pub heartbeat_s: u16,
    pub redis: bool,
    pub backlog: usize,
    pub redis_max_attempts: u32,
    pub redis_delays: Vec<u64>,
    pub shutdown_timeout_ms: u64,
}

impl Params {
    pub fn draw(rng: &mut Rng) -> Params {
        let delays = |rng: &mut Rng| -> Vec<u64> {
            (0..rng.range(1, 3))
                .map(|_| rng.range(1, 20) * 50)
                .collect()
        };
        Params {
            max_in_flight: rng.range(1, 4) as u32,
            keep_conn: rng.chance(40),
            request_timeout_ms: rng.range(2, 5) * 1000,
            circuit_release_ms: rng.range(1, 6) * 1000,
            prefetch: rng.range(1, 6) as u32,
            amqp_max_attempts: rng.range(1, 5) as u32,
            amqp_delays: delays(rng),
            hold: rng.chance(20),
            on_dispatch: rng.chance(8),
            dead_letter_publish: rng.chance(30),
            heartbeat_s: [0, 2, 5, 30][rng.below(4) as usize],
            redis: rng.chance(70),
            backlog: rng.range(1, 12) as usize,
            redis_max_attempts: rng.range(1, 4) as u32,
            redis_delays: delays(rng),
            shutdown_timeout_ms: rng.range(10, 30) * 1000,
        }
    }

    /// A reload's change: what operators edit under load.
    pub fn reloaded(&self, rng: &mut Rng) -> Params {
        let mut p = self.clone();
        match rng.below(4) {
            0 => p.max_in_flight = rng.range(1, 4) as u32,
            1 => p.prefetch = rng.range(1, 6) as u32,
            2 => p.backlog = rng.range(1, 12) as usize,
            _ => p.keep_conn = !p.keep_conn,
        }
        p
    }

    pub fn config_json(&self) -> String {
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let dead_letter = if self.dead_letter_publish {
            r#"{"exchange": "dlx", "routing_key": "dead"}"#.to_string()
        } else {
            r#""reject""#.to_string()
        };
        let mut sources = vec![format!(
            r#"{{"name": "tasks", "kind": "amqp", "url": "amqp://guest:guest@127.0.0.1:5672/%2f",
               "queue": "q", "prefetch": {}, "max_attempts": {}, "retry_delays_ms": [{}],
               "retry": "{}", "ack": "{}", "dead_letter": {dead_letter}, "heartbeat_s": {},
               "job": {{"pool": "php", "script": "/srv/app/worker.php", "body": "raw"}}}}"#,
            self.prefetch,
            self.amqp_max_attempts,
            list(&self.amqp_delays),
            if self.hold { "hold" } else { "republish" },
            if self.on_dispatch {
                "on_dispatch"
            } else {
                "after_response"
            },
            self.heartbeat_s,
        )];
        if self.redis {
            sources.push(format!(
                r#"{{"name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
                   "channels": ["jobs"], "backlog": {}, "max_attempts": {}, "retry_delays_ms": [{}],
                   "job": {{"pool": "php", "script": "/srv/app/worker.php", "body": "raw"}}}}"#,
                self.backlog,
                self.redis_max_attempts,
                list(&self.redis_delays),
            ));
        }
        format!(
            r#"{{"shutdown_timeout_ms": {},
                "control": {{"listen": "unix:/run/ferry/control.sock"}},
                "pools": {{"php": {{"address": "unix:/run/php/fpm.sock", "max_in_flight": {},
                          "connect_timeout_ms": 500, "request_timeout_ms": {}, "keep_conn": {},
                          "idle_timeout_ms": 3000, "circuit_release_ms": {}}}}},
                "sources": [{}]}}"#,
            self.shutdown_timeout_ms,
            self.max_in_flight,
            self.request_timeout_ms,
            self.keep_conn,
            self.circuit_release_ms,
            sources.join(",")
        )
    }
}

/// A fault, at a time the seed chose.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The broker resets one of ferry's connections.
    DropBroker,
    DropRedis,
    /// A worker connection is reset.
    DropWorker,
    /// The broker restarts: every connection reset, down for a while.
    BrokerRestart(u64),
    RedisRestart(u64),
    /// php-fpm stops (every child dies) and comes back.
    FpmOutage(u64),
    /// ferry is killed (kill -9) and started again after a while.
    Crash(u64),
    /// SIGTERM: ferry drains and exits, and is started again after a while.
    Term(u64),
    /// SIGHUP with a changed configuration.
    Reload,
    /// `POST /sources/{name}/pause` and, later, `/resume`.
    Pause(&'static str),
    Resume(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub enum Event {
    PublishAmqp(u32),
    PublishRedis(u32),
    Fault(Fault),
}

/// Everything one seed does, in time order.
pub struct Scenario {
    pub params: Params,
    pub events: Vec<(Duration, Event)>,
    pub amqp_messages: u32,
    pub redis_messages: u32,
    pub fpm_children: usize,
    pub fpm_backlog: usize,
    pub fpm_max_requests: u32,
    pub failure_percent: u64,
    pub broker_heartbeat_s: u16,
    pub broker_nack_percent: u64,
    pub redis_refuses_hello: bool,
    /// Percent of writes that stop short (WouldBlock) at a random byte.
    pub write_split_percent: u64,
    /// Percent of reads that hand ferry all that is there (else a random piece).
    pub read_whole_percent: u64,
}

impl Scenario {
    pub fn draw(rng: &mut Rng) -> Scenario {
        let params = Params::draw(rng);
        let amqp_messages = rng.range(10, 30) as u32;
        let redis_messages = if params.redis {
            rng.range(5, 20) as u32
        } else {
            0
        };
        let span = rng.range(2, 10) * 1000;
        let mut events = Vec::new();
        for k in 0..amqp_messages {
            let at = if rng.chance(40) { 0 } else { rng.below(span) };
            events.push((Duration::from_millis(at), Event::PublishAmqp(k)));
        }
        for k in 0..redis_messages {
            events.push((
                Duration::from_millis(rng.range(500, span + 500)),
                Event::PublishRedis(k),
            ));
        }
        let faults = rng.below(5);
        for _ in 0..faults {
            let at = Duration::from_millis(rng.below(span + 2000));
            let fault = match rng.below(12) {
                0 | 1 => Fault::DropBroker,
                2 => Fault::DropRedis,
                3 => Fault::DropWorker,
                4 => Fault::BrokerRestart(rng.range(1, 8) * 500),
                5 => Fault::RedisRestart(rng.range(1, 4) * 500),
                6 => Fault::FpmOutage(rng.range(1, 16) * 500),
                7 => Fault::Crash(rng.range(0, 6) * 500),
                8 => Fault::Term(rng.range(1, 4) * 500),
                9 => Fault::Reload,
                _ => {
                    let source = if params.redis && rng.chance(30) {
                        "events"
                    } else {
                        "tasks"
                    };
                    let resume = at + Duration::from_millis(rng.range(1, 10) * 300);
                    events.push((resume, Event::Fault(Fault::Resume(source))));
                    Fault::Pause(source)
                }
            };
            events.push((at, Event::Fault(fault)));
        }
        events.sort_by_key(|(at, _)| *at);
        Scenario {
            params,
            events,
            amqp_messages,
            redis_messages,
            fpm_children: rng.range(1, 4) as usize,
            fpm_backlog: rng.range(0, 3) as usize,
            fpm_max_requests: rng.range(2, 20) as u32,
            failure_percent: [0, 10, 25, 50][rng.below(4) as usize],
            broker_heartbeat_s: [0, 10, 60][rng.below(3) as usize],
            broker_nack_percent: if rng.chance(20) { 10 } else { 0 },
            redis_refuses_hello: rng.chance(50),
            write_split_percent: [0, 20, 60][rng.below(3) as usize],
            read_whole_percent: [20, 60, 95][rng.below(3) as usize],
        }
    }
}
