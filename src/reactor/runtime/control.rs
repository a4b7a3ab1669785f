//! The control endpoint inside the loop (SPEC "Control endpoint"): a listener and its
//! clients in the same slab as everything else. Requests are parsed and routed by
//! `crate::control` (sans-IO); this file answers them from the runtime's state.
//!
//! Bounds: at most [`MAX_CLIENTS`] connections (a new one beyond that closes the client
//! idle the longest, so idle connections cannot lock an operator out), a client idle for
//! [`CLIENT_IDLE`] is closed, request heads and
//! bodies are capped by the parser, and a client whose answers pile up unread is closed.
//! `accept` errors such as EMFILE or ECONNABORTED are logged and survived (`fds.rs`, which
//! also lowers [`MAX_CLIENTS`] under a small fd limit).

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use serde_json::json;

use super::{Endpoint, Runtime, TimerKey};
use crate::config::Address;
use crate::control::http::{parse_request, write_error, write_json, write_response};
use crate::control::route::{route, Route};
use crate::metrics::{
    render, render_endpoints, DisconnectReason, DropReason, EndpointSeries, Exposition, PoolGauges,
    PoolSeries, ProcessStats, Settlement, SourceGauges, SourceSeries,
};
use crate::proto::Status;
use crate::reactor::conn::{Conn, Fill, Stream};

/// Most control connections at once.
pub(super) const MAX_CLIENTS: usize = 64;
/// A control connection idle this long is closed.
const CLIENT_IDLE: Duration = Duration::from_secs(30);
/// Read buffer of a client: one request head and a small body.
const CLIENT_READ_CAP: usize = 16 * 1024;
/// A client with more unread answer bytes than this is closed.
const CLIENT_WRITE_HIGH_WATER: usize = 4 << 20;

/// A listening socket: the control endpoint's, or a RESP endpoint's.
#[derive(Debug)]
pub(super) enum Listener {
    Tcp(TcpListener),
    /// A unix socket and its path (removed when ferry exits).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `address`. A unix socket path left by a dead ferry is replaced.
    pub fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Unix(path) => {
                if std::os::unix::net::UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
            Address::Tcp { host, port } => {
                let ip: std::net::IpAddr = match host.as_str() {
                    "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
                    other => other.parse().map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "listen on an IP address or localhost",
                        )
                    })?,
                };
                Ok(Listener::Tcp(TcpListener::bind((ip, *port).into())?))
            }
        }
    }

    /// Registers for readiness.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => registry.register(l, token, Interest::READABLE),
            Listener::Unix(l, _) => registry.register(l, token, Interest::READABLE),
        }
    }

    /// Deregisters and removes a unix socket's path.
    pub fn close(&mut self, registry: &Registry) {
        match self {
            Listener::Tcp(l) => {
                let _ = registry.deregister(l);
            }
            Listener::Unix(l, path) => {
                let _ = registry.deregister(l);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Accepts one connection (nonblocking: `WouldBlock` when none is waiting).
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

impl Runtime {
    /// Accepts until `WouldBlock` (failures: `fds.rs`).
    pub(super) fn on_accept(&mut self, token: usize, now: Instant) {
        while let Some(stream) = self.accept_one(token, now) {
            let clients: Vec<usize> = self
                .slab
                .iter()
                .filter(|(t, e)| matches!(e, Endpoint::Client(_)) && !self.to_close.contains(t))
                .map(|(t, _)| t)
                .collect();
            if clients.len() >= self.control_max_clients {
                // Full: the client idle the longest makes room, so idle connections can
                // never lock an operator out (their idle deadlines say who waited most).
                let oldest = clients
                    .iter()
                    .copied()
                    .min_by_key(|t| self.timers.deadline(TimerKey::Client(*t)));
                if let Some(oldest) = oldest {
                    debug!(
                        "control endpoint: {} clients; closing the longest idle",
                        self.control_max_clients
                    );
                    self.mark_close(oldest);
                }
            }
            let conn = Conn::new(stream, CLIENT_READ_CAP, CLIENT_WRITE_HIGH_WATER);
            match self.insert(Endpoint::Client(conn)) {
                Ok(client) => self.timers.arm(TimerKey::Client(client), now + CLIENT_IDLE),
                Err(e) => warn!("control endpoint: cannot register a client: {e}"),
            }
        }
    }

    /// Reads requests and answers them in order.
    pub(super) fn on_client_ready(&mut self, token: usize, now: Instant) {
        let Some(Endpoint::Client(conn)) = self.slab.get_mut(token) else {
            return;
        };
        let fill = conn.fill();
        let mut close = matches!(fill, Ok(Fill::Eof) | Err(_));
        let mut consumed_any = false;
        let mut answers = Vec::new();
        loop {
            let Some(Endpoint::Client(conn)) = self.slab.get_mut(token) else {
                return;
            };
            let input = conn.input();
            if input.is_empty() {
                break;
            }
            match parse_request(input) {
                Ok(Status::Partial) => {
                    if matches!(fill, Ok(Fill::Full)) {
                        close = true; // cannot happen within the parser's caps; be safe
                    }
                    break;
                }
                Ok(Status::Complete(request, used)) => {
                    let keep_alive = request.keep_alive;
                    let head_only = request.method == "HEAD";
                    let answer_start = answers.len();
                    let routed =
                        route(&request, self.control_token.as_deref()).map(|r| owned_route(&r));
                    if let Some(Endpoint::Client(conn)) = self.slab.get_mut(token) {
                        conn.consume(used);
                        consumed_any = true;
                    }
                    match routed {
                        Ok(route) => self.answer(&route, keep_alive, &mut answers, now),
                        Err(e) => {
                            let (status, reason, message) = e.status();
                            write_error(&mut answers, status, reason, message, keep_alive);
                        }
                    }
                    if head_only {
                        strip_body(&mut answers, answer_start);
                    }
                    if !keep_alive {
                        close = true;
                        break;
                    }
                }
                Err(e) => {
                    let (status, reason) = e.status();
                    write_error(&mut answers, status, reason, reason, false);
                    close = true;
                    break;
                }
            }
        }
        if let Some(Endpoint::Client(conn)) = self.slab.get_mut(token) {
            conn.write_buf().extend_from_slice(&answers);
            if conn.write_backlogged() {
                close = true;
            }
        }
        if self.flush(token).is_err() {
            close = true;
        }
        self.timers.arm(TimerKey::Client(token), now + CLIENT_IDLE);
        if close {
            self.mark_close(token);
        } else if matches!(fill, Ok(Fill::Full)) && consumed_any {
            // Pipelined requests beyond one buffer: read the rest without a new event.
            self.rearm_read.push(token);
        }
    }

    fn answer(&mut self, route: &OwnedRoute, keep_alive: bool, out: &mut Vec<u8>, now: Instant) {
        match route {
            OwnedRoute::Healthz => {
                write_response(out, 200, "OK", "text/plain", b"ok\n", keep_alive)
            }
            OwnedRoute::Readyz => {
                let reasons = self.not_ready_reasons();
                let (status, reason) = if reasons.is_empty() {
                    (200, "OK")
                } else {
                    (503, "Service Unavailable")
                };
                let body = json!({ "ready": reasons.is_empty(), "reasons": reasons });
                write_json(out, status, reason, &body, keep_alive);
            }
            OwnedRoute::Status => write_json(out, 200, "OK", &self.status_json(now), keep_alive),
            OwnedRoute::Jobs => write_json(out, 200, "OK", &self.jobs_json(now), keep_alive),
            OwnedRoute::Metrics => {
                let body = self.render_metrics();
                write_response(
                    out,
                    200,
                    "OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    body.as_bytes(),
                    keep_alive,
                );
            }
            OwnedRoute::Pause(name) | OwnedRoute::Resume(name)
                if !self.sources.iter().any(|s| !s.retired && &s.name == name) =>
            {
                let message = format!("no source named '{name}'");
                write_error(out, 404, "Not Found", &message, keep_alive);
            }
            OwnedRoute::Pause(name) | OwnedRoute::Resume(name) => {
                let pause = matches!(route, OwnedRoute::Pause(_));
                if let Some(source) = self
                    .sources
                    .iter()
                    .position(|s| !s.retired && &s.name == name)
                {
                    if pause {
                        self.pause_source(source, now);
                    } else {
                        self.resume_source(source, now);
                    }
                }
                let body = json!({ "source": name, "paused": pause });
                write_json(out, 200, "OK", &body, keep_alive);
            }
        }
    }

    /// `/metrics`: every family of the SPEC, gauges read from the live state.
    fn render_metrics(&self) -> String {
        let sources: Vec<SourceSeries<'_>> = self
            .sources
            .iter()
            .filter(|s| !s.retired)
            .map(|s| SourceSeries {
                name: &s.name,
                pool: &self.pools[s.pool].name,
                metrics: &s.metrics,
                gauges: SourceGauges {
                    backlog: s.waiting() as u64,
                    unacked: s.unacked() as u64,
                    connected: s.is_ready(),
                },
            })
            .collect();
        let pools: Vec<PoolSeries<'_>> = self
            .pools
            .iter()
            .filter(|p| !p.retired)
            .map(|p| PoolSeries {
                name: &p.name,
                metrics: &p.metrics,
                gauges: PoolGauges {
                    in_flight: p.in_flight as u64,
                    circuit_open: !p.circuit.is_closed(),
                    processes: p.spawned.as_ref().map(|g| g.live() as u64),
                },
            })
            .collect();
        let process = ProcessStats::read();
        let mut out = String::with_capacity(8 * 1024);
        render(
            &mut out,
            &Exposition {
                version: env!("CARGO_PKG_VERSION"),
                sources: &sources,
                pools: &pools,
                process: &process,
            },
        );
        let endpoints: Vec<EndpointSeries<'_>> = self
            .sources
            .iter()
            .filter(|s| !s.retired)
            .filter_map(|s| {
                Some(EndpointSeries {
                    name: &s.name,
                    clients: s.endpoint_clients()? as u64,
                    metrics: &s.endpoint_metrics,
                })
            })
            .collect();
        render_endpoints(&mut out, &endpoints);
        out
    }

    /// Why `/readyz` says no: sources not connected, pools whose circuit is open.
    fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for source in self.sources.iter().filter(|s| !s.retired) {
            if !source.is_ready() {
                reasons.push(format!(
                    "source {} is {}",
                    source.name,
                    source.state_label()
                ));
            }
        }
        for pool in self.pools.iter().filter(|p| !p.retired) {
            if !pool.circuit.is_closed() {
                reasons.push(format!("pool {} circuit is open", pool.name));
            }
        }
        reasons
    }

    fn status_json(&self, now: Instant) -> serde_json::Value {
        let sources: Vec<_> = self
            .sources
            .iter()
            .filter(|s| !s.retired)
            .map(|s| {
                json!({
                    "name": s.name, "kind": s.kind(), "state": s.state_label(),
                    "paused": s.paused,
                    "waiting": s.waiting(),
                    "received": s.metrics.received(),
                    "acked": s.metrics.settled(Settlement::Acked),
                    "retried": s.metrics.settled(Settlement::Retried),
                    "dead_lettered": s.metrics.settled(Settlement::DeadLettered),
                    "discarded": s.metrics.settled(Settlement::Discarded),
                    "reconnects": s.metrics.reconnects(),
                    "dropped": {
                        "backlog_full": s.metrics.dropped(DropReason::BacklogFull),
                        "paused": s.metrics.dropped(DropReason::Paused),
                        "too_large": s.metrics.dropped(DropReason::TooLarge),
                        "shutdown": s.metrics.dropped(DropReason::Shutdown),
                    },
                    "endpoint": s.endpoint_clients().map(|clients| json!({
                        "clients": clients,
                        "disconnects": DisconnectReason::ALL.iter().map(|r| {
                            (r.as_str().to_string(), json!(s.endpoint_metrics.disconnects(*r)))
                        }).collect::<serde_json::Map<_, _>>(),
                    })),
                })
            })
            .collect();
        let pools: Vec<_> = self
            .pools
            .iter()
            .filter(|p| !p.retired)
            .map(|p| {
                let mut pool = json!({
                    "name": p.name, "in_flight": p.in_flight, "waiting": p.queue.len(),
                    "idle_connections": p.idle_count(),
                    "circuit": if p.circuit.is_closed() { "closed" } else { "open" },
                });
                if let Some(group) = &p.spawned {
                    pool["processes"] = json!({
                        "configured": group.configured(), "running": group.live(),
                        "pids": group.pids(), "restarts": p.metrics.process_restarts(),
                    });
                }
                pool
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": now.saturating_duration_since(self.started_at).as_secs(),
            "sources": sources,
            "pools": pools,
        })
    }

    fn jobs_json(&self, now: Instant) -> serde_json::Value {
        let jobs: Vec<_> = self
            .slab
            .iter()
            .filter_map(|(_, endpoint)| match endpoint {
                Endpoint::Worker(worker) => worker.job.as_ref().map(|job| (worker.pool, job)),
                _ => None,
            })
            .map(|(pool, job)| {
                json!({
                    "id": job.id,
                    "source": self.sources[job.source].name,
                    "pool": self.pools[pool].name,
                    "attempt": job.attempt,
                    "age_ms": now.saturating_duration_since(job.received_at).as_millis() as u64,
                })
            })
            .collect();
        json!(jobs)
    }
}

/// A route that no longer borrows the read buffer (so the client can be consumed).
enum OwnedRoute {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Jobs,
    Pause(String),
    Resume(String),
}

/// HEAD: the response from `start` keeps its head (with the Content-Length GET would
/// have) and loses its body (RFC 9110 §9.3.2).
fn strip_body(answers: &mut Vec<u8>, start: usize) {
    let head_end = answers
        .get(start..)
        .and_then(|answer| answer.windows(4).position(|w| w == b"\r\n\r\n"));
    if let Some(end) = head_end {
        answers.truncate(start + end + 4);
    }
}

fn owned_route(route: &Route<'_>) -> OwnedRoute {
    match route {
        Route::Healthz => OwnedRoute::Healthz,
        Route::Readyz => OwnedRoute::Readyz,
        Route::Metrics => OwnedRoute::Metrics,
        Route::Status => OwnedRoute::Status,
        Route::Jobs => OwnedRoute::Jobs,
        Route::Pause(name) => OwnedRoute::Pause((*name).to_string()),
        Route::Resume(name) => OwnedRoute::Resume((*name).to_string()),
    }
}
