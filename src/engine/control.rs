//! The control endpoint's answers (`docs/OPERATIONS.md`, "Control endpoint"): a listener
//! and its clients are peers like every other connection. Requests are parsed and routed
//! by `crate::control` (sans-IO); this file answers them from the engine's state.
//!
//! Bounds: at most [`MAX_CLIENTS`] connections (a new one beyond that closes the client
//! idle the longest, so idle connections cannot lock an operator out), a client idle for
//! [`CLIENT_IDLE`] is closed, request heads and
//! bodies are capped by the parser, and a client whose answers pile up unread is closed.
//! `accept` errors such as EMFILE or ECONNABORTED are logged and survived by the reactor;
//! `fds.rs` lowers [`MAX_CLIENTS`] under a small fd limit.

use std::time::{Duration, Instant};

use log::debug;
use serde_json::json;

use super::io::{Buffers, ConnId, Fill, Io};
use super::{Accept, Engine, Peer, TimerKey};
use crate::control::http::{parse_request, write_error, write_json, write_response};
use crate::control::route::{route, Route};
use crate::metrics::{
    render, render_endpoints, DisconnectReason, DropReason, EndpointSeries, Exposition, PoolGauges,
    PoolSeries, Settlement, SourceGauges, SourceSeries,
};
use crate::proto::Status;

/// Most control connections at once.
pub(super) const MAX_CLIENTS: usize = 64;
/// A control connection idle this long is closed.
const CLIENT_IDLE: Duration = Duration::from_secs(30);
/// Read buffer of a client: one request head and a small body.
const CLIENT_READ_CAP: usize = 16 * 1024;
/// A client with more unread answer bytes than this is closed.
const CLIENT_WRITE_HIGH_WATER: usize = 4 << 20;

impl Engine {
    /// A control client connected. Full: the client idle the longest makes room, so idle
    /// connections can never lock an operator out (their idle deadlines say who waited
    /// most).
    pub(super) fn accept_control_client(&mut self, now: Instant) -> Accept {
        let clients: Vec<ConnId> = self
            .peers
            .iter()
            .map(|(key, p)| (ConnId(key), p))
            .filter(|(c, p)| matches!(p, Peer::ControlClient { .. }) && !self.to_close.contains(c))
            .map(|(c, _)| c)
            .collect();
        if clients.len() >= self.control_max_clients {
            let oldest = clients
                .iter()
                .copied()
                .min_by_key(|c| self.timers.deadline(TimerKey::Client(*c)));
            if let Some(oldest) = oldest {
                debug!(
                    "control endpoint: {} clients; closing the longest idle",
                    self.control_max_clients
                );
                self.mark_close(oldest);
            }
        }
        let buffers = Buffers::new(CLIENT_READ_CAP, CLIENT_WRITE_HIGH_WATER);
        let conn = ConnId(self.peers.insert(Peer::ControlClient {
            buffers,
            closing: false,
        }));
        self.timers.arm(TimerKey::Client(conn), now + CLIENT_IDLE);
        Accept::Take(conn)
    }

    /// A control or RESP client's idle or linger deadline.
    pub(super) fn on_client_timer(&mut self, conn: ConnId) {
        self.mark_close(conn);
    }

    /// Reads requests and answers them in order.
    pub(super) fn on_client_ready(
        &mut self,
        conn: ConnId,
        fill: Fill,
        now: Instant,
        io: &mut dyn Io,
    ) {
        let mut close = matches!(fill, Fill::Eof | Fill::Failed);
        if let Some(Peer::ControlClient {
            buffers,
            closing: true,
        }) = self.peers.get(conn.0)
        {
            // Its last answer is being written; nothing more is read.
            if close || !buffers.wants_write() {
                self.mark_close(conn);
            }
            return;
        }
        let mut consumed_any = false;
        let mut answers = Vec::new();
        loop {
            let Some(Peer::ControlClient { buffers, .. }) = self.peers.get_mut(conn.0) else {
                return;
            };
            let input = buffers.input();
            if input.is_empty() {
                break;
            }
            match parse_request(input) {
                Ok(Status::Partial) => {
                    if fill == Fill::Full {
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
                    buffers.consume(used);
                    consumed_any = true;
                    match routed {
                        Ok(route) => self.answer(&route, keep_alive, &mut answers, now, io),
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
        let mut backlogged = false;
        if let Some(Peer::ControlClient { buffers, .. }) = self.peers.get_mut(conn.0) {
            buffers.write_buf().extend_from_slice(&answers);
            backlogged = buffers.write_backlogged();
        }
        let failed = self.flush(conn, io).is_err();
        self.timers.arm(TimerKey::Client(conn), now + CLIENT_IDLE);
        let unwritten = matches!(self.peers.get(conn.0),
            Some(Peer::ControlClient { buffers, .. }) if buffers.wants_write());
        if close && unwritten && !backlogged && !failed && !matches!(fill, Fill::Eof | Fill::Failed)
        {
            // `Connection: close` with the answer not all written yet (a /metrics page
            // larger than the socket takes at once): closing now would cut it off.
            // Reading stops; the connection closes once the rest is written (or the
            // idle timeout passes).
            if let Some(Peer::ControlClient { buffers, closing }) = self.peers.get_mut(conn.0) {
                buffers.set_read_ahead(Some(0));
                *closing = true;
            }
        } else if close || backlogged || failed {
            self.mark_close(conn);
        } else if fill == Fill::Full && consumed_any {
            // Pipelined requests beyond one buffer: read the rest without a new event.
            self.rearm_read.push(conn);
        }
    }

    fn answer(
        &mut self,
        route: &OwnedRoute,
        keep_alive: bool,
        out: &mut Vec<u8>,
        now: Instant,
        io: &mut dyn Io,
    ) {
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
                let body = self.render_metrics(io);
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
                if !self
                    .sources
                    .values()
                    .any(|s| !s.is_retired() && &s.name == name) =>
            {
                let message = format!("no source named '{name}'");
                write_error(out, 404, "Not Found", &message, keep_alive);
            }
            OwnedRoute::Pause(name) | OwnedRoute::Resume(name) => {
                let pause = matches!(route, OwnedRoute::Pause(_));
                if let Some(source) = self
                    .sources
                    .position(|s| !s.is_retired() && &s.name == name)
                {
                    if pause {
                        self.pause_source(source);
                    } else {
                        self.resume_source(source);
                    }
                }
                let body = json!({ "source": name, "paused": pause });
                write_json(out, 200, "OK", &body, keep_alive);
            }
        }
    }

    /// `/metrics`: every family `docs/OPERATIONS.md` lists, gauges read from the live
    /// state. Public so the deterministic simulation (`docs/SIMULATION.md`) can compare
    /// ferry's counters with what its simulated peers saw, even after ferry has exited.
    pub fn render_metrics(&self, io: &mut dyn Io) -> String {
        let sources: Vec<SourceSeries<'_>> = self
            .sources
            .values()
            .filter(|s| !s.is_retired())
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
            .values()
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
        let process = io.process_stats();
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
            .values()
            .filter(|s| !s.is_retired())
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
        for source in self.sources.values().filter(|s| !s.is_retired()) {
            if !source.is_ready() {
                reasons.push(format!(
                    "source {} is {}",
                    source.name,
                    source.state_label()
                ));
            }
        }
        for pool in self.pools.values().filter(|p| !p.retired) {
            if !pool.circuit.is_closed() {
                reasons.push(format!("pool {} circuit is open", pool.name));
            }
        }
        reasons
    }

    pub(super) fn status_json(&self, now: Instant) -> serde_json::Value {
        let sources: Vec<_> = self
            .sources
            .values()
            .filter(|s| !s.is_retired())
            .map(|s| {
                json!({
                    "name": s.name, "kind": s.kind(), "state": s.state_label(),
                    "node": s.node_label(),
                    "sentinel": s.sentinel_label(),
                    "tls": s.config().tls_client().map(|t| {
                        if t.insecure { "unverified" } else { "verified" }
                    }),
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
                    "stream": s.stream.as_ref().map(|state| state.status_json()),
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
            .values()
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
            .peers
            .iter()
            .filter_map(|(_, peer)| match peer {
                Peer::Worker(worker) => worker.job().map(|job| (worker.pool, job)),
                _ => None,
            })
            .map(|(pool, job)| {
                json!({
                    "id": job.id.0,
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
