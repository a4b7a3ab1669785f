//! The workers' own limit (`--direct`): the same FastCGI requests ferry would send — built
//! by `dispatch::request` and read by `proto::fastcgi::Exchange`, ferry's own code — sent
//! straight to the pool over `concurrency` connections at once, with no broker and no
//! ferry in the path. One mio loop, like ferry's, so the driver itself costs about what
//! ferry's pool side costs and 10,000 connections need no 10,000 threads.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry::config::JobConfig;
use ferry::dispatch::request::{Message, RequestBuilder, RequestOptions, SourceKind};
use ferry::proto::fastcgi::{Ending, Exchange, ExchangeEvent, ExchangeOptions};
use ferry::reactor::conn::{Conn, Fill, Stream};
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::collector::{message_body, now_us};

/// How the requests ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectOutcome {
    /// END_REQUEST with a 2xx/3xx status (or none).
    pub completed: u64,
    /// Anything else: refused, reset, malformed, an error status.
    pub failed: u64,
}

/// What the driver is asked to do.
pub struct DirectLoad<'a> {
    /// The workers' unix socket.
    pub socket: &'a Path,
    /// SCRIPT_FILENAME.
    pub script: &'a str,
    /// Requests, numbered 1..=count.
    pub count: u64,
    /// Connections at once.
    pub concurrency: usize,
    /// Keep connections (FCGI_KEEP_CONN) and reuse them.
    pub keep_conn: bool,
    /// Requests started per second at most.
    pub rate: Option<f64>,
    /// Counts requests written.
    pub sent: &'a AtomicU64,
    /// Stops early when set.
    pub stop: &'a AtomicBool,
}

struct Slot {
    conn: Conn,
    exchange: Option<Exchange>,
}

/// CPU time the last [`drive`] used on its thread, µs (`u64::MAX`: not measured).
static DRIVER_CPU_US: AtomicU64 = AtomicU64::new(u64::MAX);

/// The CPU time of the last [`drive`], µs: the floor a FastCGI client of these workers
/// costs.
pub fn last_driver_cpu_us() -> Option<u64> {
    Some(DRIVER_CPU_US.load(Ordering::Relaxed)).filter(|us| *us != u64::MAX)
}

/// CPU time of the calling thread so far, ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Runs the load to the end; an error only when the loop itself fails. Its own CPU
/// time is kept for [`last_driver_cpu_us`].
pub fn drive(load: &DirectLoad<'_>) -> Result<DirectOutcome, String> {
    let before = thread_cpu_ns();
    let outcome = drive_load(load);
    if let (Some(before), Some(after)) = (before, thread_cpu_ns()) {
        DRIVER_CPU_US.store(after.saturating_sub(before) / 1000, Ordering::Relaxed);
    }
    outcome
}

fn drive_load(load: &DirectLoad<'_>) -> Result<DirectOutcome, String> {
    let job: JobConfig = serde_json::from_value(serde_json::json!({
        "pool": "direct", "script": load.script
    }))
    .map_err(|e| e.to_string())?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Slab<Slot> = Slab::new();
    let mut idle: Vec<usize> = Vec::new();
    let mut builder = RequestBuilder::default();
    let mut outcome = DirectOutcome::default();
    let (mut next, mut active) = (1u64, 0usize);
    let start = Instant::now();
    loop {
        if load.stop.load(Ordering::Relaxed) {
            return Ok(outcome);
        }
        // Start requests while there is room, each on a kept or a new connection.
        let mut wait = Duration::from_millis(100);
        while active < load.concurrency && next <= load.count {
            if let Some(rate) = load.rate {
                let due = start + Duration::from_secs_f64((next - 1) as f64 / rate);
                let now = Instant::now();
                if due > now {
                    wait = wait.min(due - now);
                    break;
                }
            }
            let key = match idle.pop() {
                Some(key) => key,
                None => match UnixStream::connect(load.socket) {
                    Ok(mut stream) => {
                        let entry = slots.vacant_entry();
                        poll.registry()
                            .register(&mut stream, Token(entry.key()), Interest::READABLE)
                            .map_err(|e| e.to_string())?;
                        let mut conn = Conn::new(Stream::Unix(stream), 64 * 1024, 64 * 1024);
                        conn.registered = Some(Interest::READABLE);
                        let key = entry.key();
                        entry.insert(Slot {
                            conn,
                            exchange: None,
                        });
                        key
                    }
                    // The listen backlog is full: try again shortly.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait = Duration::from_millis(1);
                        break;
                    }
                    Err(e) => return Err(format!("{}: {e}", load.socket.display())),
                },
            };
            let mut request = Vec::new();
            let body = message_body(next, now_us());
            builder
                .build(
                    &mut request,
                    &job,
                    &Message::new("bench", SourceKind::Redis, 1),
                    &body,
                    RequestOptions {
                        request_id: 1,
                        keep_conn: load.keep_conn,
                    },
                )
                .map_err(|e| e.to_string())?;
            let mut options = ExchangeOptions::new(Duration::from_secs(60));
            options.keep_conn = load.keep_conn;
            let mut exchange = Exchange::new(request, options, Instant::now());
            if let Some(slot) = slots.get_mut(key) {
                exchange.poll_transmit(slot.conn.write_buf());
                slot.exchange = Some(exchange);
                if slot.conn.flush().is_err() {
                    outcome.failed += 1;
                    close(&mut poll, &mut slots, key);
                } else {
                    active += 1;
                    reregister(&mut poll, &mut slots, key);
                }
            }
            load.sent.fetch_add(1, Ordering::Relaxed);
            next += 1;
        }
        if next > load.count && active == 0 {
            return Ok(outcome);
        }
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.to_string());
            }
        }
        for event in events.iter() {
            let key = event.token().0;
            let Some(slot) = slots.get_mut(key) else {
                continue;
            };
            if event.is_writable() && slot.conn.flush().is_err() {
                if slot.exchange.is_some() {
                    active -= 1;
                    outcome.failed += 1;
                }
                close(&mut poll, &mut slots, key);
                continue;
            }
            match read(slot) {
                Some(finished) => {
                    active -= 1;
                    if finished.0 {
                        outcome.completed += 1;
                    } else {
                        outcome.failed += 1;
                    }
                    if finished.1 && load.keep_conn {
                        idle.push(key);
                    } else {
                        close(&mut poll, &mut slots, key);
                    }
                }
                None if slot.exchange.is_none() => {
                    // An idle kept connection closed by the worker.
                    idle.retain(|&k| k != key);
                    close(&mut poll, &mut slots, key);
                }
                None => reregister(&mut poll, &mut slots, key),
            }
        }
    }
}

/// Reads what arrived; `Some((succeeded, reusable))` when the exchange ended.
fn read(slot: &mut Slot) -> Option<(bool, bool)> {
    let exchange = slot.exchange.as_mut()?;
    loop {
        let fill = slot.conn.fill();
        let input = slot.conn.input();
        let used = exchange.handle_input(input, Instant::now()).unwrap_or(0);
        slot.conn.consume(used);
        match fill {
            Ok(Fill::Full) if !exchange.is_finished() => continue,
            Ok(Fill::Eof) | Err(_) => exchange.handle_eof(Instant::now()),
            _ => {}
        }
        break;
    }
    let ExchangeEvent::Finished(finished) = exchange.poll_event()?;
    slot.exchange = None;
    let ok = matches!(finished.ending, Ending::EndRequest { .. })
        && finished.status.is_none_or(|s| s < 400);
    Some((ok, finished.reusable))
}

fn reregister(poll: &mut Poll, slots: &mut Slab<Slot>, key: usize) {
    if let Some(slot) = slots.get_mut(key) {
        let interest = slot.conn.interest();
        if slot.conn.registered != Some(interest) {
            let _ = poll
                .registry()
                .reregister(&mut slot.conn.stream, Token(key), interest);
            slot.conn.registered = Some(interest);
        }
    }
}

fn close(poll: &mut Poll, slots: &mut Slab<Slot>, key: usize) {
    if let Some(mut slot) = slots.try_remove(key) {
        let _ = poll.registry().deregister(&mut slot.conn.stream);
        slot.conn.stream.shutdown();
    }
}
