//! One measured run: start what the mode needs, publish (or drive) the load on a helper
//! thread while this thread collects receipts and shows progress, then measure and stop
//! everything. The sources are arms of one `match` ([`Producer`]), so a new source is
//! one more arm.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::config::RedisUrl;
use ferry::proto::amqp::session::table_from_json;
use ferry::proto::amqp::DeclareMode;

use super::collector::{message_body, now_us, LogTail, Receipt, Receipts};
use super::direct::{self, DirectLoad};
use super::harness::{
    self, bench_queue_arguments, check_interrupted, free_port, start_ferry, start_workers, Process,
    Scratch, SourceTarget,
};
use super::plan::{Mode, Plan, SourceKind};
use super::procstat::{cpu_us, status_kib};
use super::report::{FerryUsage, RunResult};
use super::stats::{account, peak_in_flight, percentiles, timeline};
use super::{broker, Progress};
use crate::publish::{publish_amqp, publish_redis, Outgoing};

/// What makes the load.
enum Producer {
    /// Publish to a Redis channel (Redis itself, or ferry's endpoint).
    Redis { url: RedisUrl, channel: String },
    /// Publish to an AMQP queue.
    Amqp { queue: String },
    /// Add entries to a Redis stream.
    Stream { url: RedisUrl, stream: String },
    /// FastCGI requests straight to the workers.
    Direct {
        socket: std::path::PathBuf,
        script: String,
    },
}

/// A unique channel or queue name for this run.
fn unique_name() -> String {
    format!("ferry-bench-{}-{}", std::process::id(), now_us())
}

fn bench_declare() -> Result<DeclareMode, String> {
    Ok(DeclareMode::Exactly {
        durable: false,
        arguments: table_from_json(&bench_queue_arguments()).map_err(|e| e.to_string())?,
    })
}

/// Runs `plan` once.
pub fn run(plan: &Plan, progress: &Progress) -> Result<RunResult, String> {
    check_interrupted()?;
    if let Some(attach) = &plan.attach {
        let producer = match plan.source {
            SourceKind::Redis => Producer::Redis {
                url: plan.redis.clone(),
                channel: attach.target.clone(),
            },
            SourceKind::Endpoint => Producer::Redis {
                url: endpoint_url(attach.endpoint.clone().unwrap_or_default())?,
                channel: attach.target.clone(),
            },
            SourceKind::Amqp => Producer::Amqp {
                queue: attach.target.clone(),
            },
            SourceKind::Stream => Producer::Stream {
                url: plan.redis.clone(),
                stream: attach.target.clone(),
            },
        };
        let tails = attach
            .worker_logs
            .iter()
            .map(|path| LogTail::new(path.clone(), true))
            .collect();
        return measured(
            plan,
            &producer,
            Receipts::Logs(tails),
            Some(attach.pid),
            &mut [],
            progress,
        );
    }
    let scratch = Scratch::new()?;
    match plan.mode {
        Mode::Pipeline => {
            let target = SourceTarget {
                name: unique_name(),
                endpoint_port: match plan.source {
                    SourceKind::Endpoint => Some(free_port()?),
                    _ => None,
                },
            };
            let mut workers = start_workers(plan, &scratch)?;
            let mut ferry = start_ferry(plan, &scratch, &mut workers, &target)?;
            let producer = match plan.source {
                SourceKind::Redis => Producer::Redis {
                    url: plan.redis.clone(),
                    channel: target.name.clone(),
                },
                SourceKind::Endpoint => Producer::Redis {
                    url: endpoint_url(("127.0.0.1".into(), target.endpoint_port.unwrap_or(0)))?,
                    channel: target.name.clone(),
                },
                SourceKind::Amqp => Producer::Amqp {
                    queue: target.name.clone(),
                },
                SourceKind::Stream => Producer::Stream {
                    url: plan.redis.clone(),
                    stream: target.name.clone(),
                },
            };
            let receipts = Receipts::Logs(vec![LogTail::new(workers.log.clone(), false)]);
            let pid = ferry.process.pid();
            let mut result = measured(
                plan,
                &producer,
                receipts,
                Some(pid),
                &mut [&mut ferry.process, &mut workers.process],
                progress,
            )?;
            result.ferry_start_to_ready_ms = Some(ferry.start_to_ready.as_secs_f64() * 1000.0);
            result.ferry_dropped = metric_sum(&ferry.control, "ferry_messages_dropped_total");
            result.ferry_pool_failures = metric_sum(&ferry.control, "ferry_pool_failures_total");
            ferry.process.stop(Duration::from_secs(5));
            if plan.source == SourceKind::Stream {
                broker::delete_key(&plan.redis, &target.name);
            }
            Ok(result)
        }
        Mode::Direct => {
            let mut workers = start_workers(plan, &scratch)?;
            let producer = Producer::Direct {
                socket: workers.socket.clone(),
                script: workers.script.clone(),
            };
            let receipts = Receipts::Logs(vec![LogTail::new(workers.log.clone(), false)]);
            measured(
                plan,
                &producer,
                receipts,
                None,
                &mut [&mut workers.process],
                progress,
            )
        }
        Mode::Broker => broker_run(plan, progress),
    }
}

fn endpoint_url((host, port): (String, u16)) -> Result<RedisUrl, String> {
    RedisUrl::parse(&format!("redis://{host}:{port}")).map_err(|e| format!("endpoint: {e}"))
}

/// The sum of every series of a counter family in ferry's `/metrics`.
fn metric_sum(control: &std::path::Path, family: &str) -> Option<u64> {
    let (_, body) = harness::http_get_unix(control, "/metrics")?;
    let prefix = format!("{family}{{");
    Some(
        body.lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

/// Sets the flag when dropped, so a helper thread stops on every exit path.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn broker_run(plan: &Plan, progress: &Progress) -> Result<RunResult, String> {
    let name = unique_name();
    let shared = Arc::new(Mutex::new(Vec::new()));
    let ready = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let consumer = scope.spawn(|| {
            let result = match plan.source {
                SourceKind::Redis => {
                    broker::redis_subscriber(&plan.redis, &name, &shared, &ready, &stop)
                }
                SourceKind::Amqp => bench_declare().and_then(|declare| {
                    broker::amqp_consumer(
                        &plan.amqp,
                        &name,
                        declare,
                        plan.prefetch(),
                        &shared,
                        &ready,
                        &stop,
                    )
                }),
                SourceKind::Stream => {
                    broker::stream_consumer(&plan.redis, &name, &shared, &ready, &stop)
                }
                SourceKind::Endpoint => Err("the endpoint has no broker-alone limit".into()),
            };
            // A failed consumer must not leave the publisher waiting for readiness.
            stop.store(true, Ordering::Relaxed);
            result
        });
        let guard = StopOnDrop(&stop);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.load(Ordering::Relaxed) {
            check_interrupted()?;
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                drop(guard);
                return Err(consumer
                    .join()
                    .map_err(|_| "consumer thread panicked".to_string())?
                    .err()
                    .unwrap_or_else(|| "the consumer did not start within 20 s".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let producer = match plan.source {
            SourceKind::Amqp => Producer::Amqp {
                queue: name.clone(),
            },
            SourceKind::Stream => Producer::Stream {
                url: plan.redis.clone(),
                stream: name.clone(),
            },
            _ => Producer::Redis {
                url: plan.redis.clone(),
                channel: name.clone(),
            },
        };
        let result = measured(
            plan,
            &producer,
            Receipts::Shared(shared.clone()),
            None,
            &mut [],
            progress,
        );
        drop(guard);
        let consumed = consumer
            .join()
            .map_err(|_| "consumer thread panicked".to_string())?;
        let result = result?;
        consumed?;
        Ok(result)
    })
}

/// Runs the producer on a helper thread and collects receipts until every message
/// arrived, or nothing arrived for `plan.timeout` after the producer finished.
fn measured(
    plan: &Plan,
    producer: &Producer,
    mut receipts: Receipts,
    ferry_pid: Option<u32>,
    watch: &mut [&mut Process],
    progress: &Progress,
) -> Result<RunResult, String> {
    let sent = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let idle_rss_kib = ferry_pid.and_then(|pid| status_kib(pid, "VmRSS"));
    let cpu_before = ferry_pid.and_then(cpu_us);
    let start_us = now_us();
    let started = Instant::now();
    let mut all: Vec<Receipt> = Vec::with_capacity(usize::try_from(plan.count).unwrap_or(0));
    let (failures, cpu_after) = std::thread::scope(|scope| -> Result<_, String> {
        let handle = scope.spawn(|| {
            let result = produce(plan, producer, &sent);
            failed.store(result.is_err(), Ordering::Relaxed);
            result
        });
        let mut seen = vec![false; usize::try_from(plan.count).unwrap_or(0) + 1];
        let mut unique = 0u64;
        let mut last_progress = Instant::now();
        let mut produced_at: Option<Instant> = None;
        let outcome = loop {
            let before = all.len();
            if let Err(e) = receipts.poll(&mut all) {
                break Err(e);
            }
            for receipt in &all[before..] {
                if let Some(slot) = usize::try_from(receipt.n)
                    .ok()
                    .and_then(|n| seen.get_mut(n))
                {
                    if !*slot && receipt.n > 0 {
                        *slot = true;
                        unique += 1;
                    }
                }
            }
            if all.len() > before {
                last_progress = Instant::now();
            }
            progress.show(sent.load(Ordering::Relaxed), plan.count, unique, started);
            if let Err(e) = check_interrupted() {
                break Err(e);
            }
            if handle.is_finished() && produced_at.is_none() {
                produced_at = Some(Instant::now());
            }
            if let Some(at) = produced_at {
                // A failed producer: its error is the result, at once.
                if failed.load(Ordering::Relaxed) || unique >= sent.load(Ordering::Relaxed) {
                    break Ok(());
                }
                if last_progress.max(at).elapsed() > plan.timeout {
                    break Ok(());
                }
            }
            if let Some(e) = watch.iter_mut().find_map(|p| p.check_alive().err()) {
                break Err(e);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let cpu_after = ferry_pid.and_then(cpu_us);
        progress.clear();
        if outcome.is_err() {
            // Stop the producer (it polls the flag) so the scope can end.
            harness::stop_flag().store(true, Ordering::Relaxed);
        }
        let produced = handle.join().map_err(|_| "producer thread panicked")?;
        outcome?;
        Ok((produced?, cpu_after))
    })?;
    // VmHWM can read below an earlier VmRSS: ferry drops its start-up code's pages once
    // it is up, and the kernel's high-water mark forgets pages dropped that way. The peak
    // is at least what was seen.
    let peak_rss_kib = ferry_pid
        .and_then(|pid| status_kib(pid, "VmHWM"))
        .map(|hwm| hwm.max(idle_rss_kib.unwrap_or(0)));
    let sent = sent.load(Ordering::Relaxed);
    let accounting = account(sent, &all);
    let last_us = all.iter().map(|r| r.received_us).max().unwrap_or(start_us);
    let seconds = (last_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6);
    let in_flight = (plan.delay_ms > 0).then(|| peak_in_flight(&all, plan.delay_ms * 1000));
    let ferry = ferry_pid.map(|_| {
        let cpu_us = cpu_after.zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
        FerryUsage {
            cpu_ms: cpu_us.map(|us| us as f64 / 1000.0),
            cpu_us_per_message: cpu_us
                .filter(|_| accounting.unique > 0)
                .map(|us| us as f64 / accounting.unique as f64),
            idle_rss_kib,
            peak_rss_kib,
            rss_kib_per_in_flight: match (idle_rss_kib, peak_rss_kib, in_flight) {
                (Some(idle), Some(peak), Some(n)) if n > 0 => {
                    Some(peak.saturating_sub(idle) as f64 / n as f64)
                }
                _ => None,
            },
        }
    });
    Ok(RunResult {
        mode: plan.mode.name(),
        source: match plan.mode {
            Mode::Direct => None,
            _ => Some(plan.source.name()),
        },
        workers: match (plan.mode, &plan.attach) {
            (Mode::Broker, _) => None,
            // Someone else's pool: whatever it is, it is not ours to name.
            (_, Some(_)) => Some("attached workers"),
            _ => Some(plan.workers.name()),
        },
        pool: plan.pool,
        prefetch: (plan.source == SourceKind::Amqp && plan.mode != Mode::Direct)
            .then(|| plan.prefetch()),
        keep_conn: plan.keep_conn,
        delay_ms: plan.delay_ms,
        rate: plan.rate,
        accounting,
        publish_failures: failures,
        unreadable_lines: receipts.unreadable(),
        seconds,
        throughput: accounting.unique as f64 / seconds,
        latency_us: percentiles(all.iter().map(Receipt::latency_us).collect()),
        ferry,
        ferry_dropped: None,
        ferry_pool_failures: None,
        ferry_start_to_ready_ms: None,
        driver_cpu_us_per_message: (plan.mode == Mode::Direct)
            .then(direct::last_driver_cpu_us)
            .flatten()
            .filter(|_| accounting.unique > 0)
            .map(|us| us as f64 / accounting.unique as f64),
        peak_in_flight: in_flight,
        target_in_flight: plan.target_in_flight,
        timeline: timeline(&all, start_us, 50),
    })
}

/// Makes the load; the number of messages the other side refused.
fn produce(plan: &Plan, producer: &Producer, sent: &AtomicU64) -> Result<u64, String> {
    let stop = harness::stop_flag();
    let mut body = |n: u64| message_body(n, now_us());
    let mut outgoing = Outgoing {
        count: plan.count,
        rate: plan.rate,
        body: &mut body,
        sent: Some(sent),
        stop: Some(stop),
    };
    match producer {
        Producer::Redis { url, channel } => {
            publish_redis(url, channel, &mut outgoing)?;
            Ok(0)
        }
        Producer::Stream { url, stream } => {
            crate::publish::publish_stream(url, stream, None, &mut outgoing)?;
            Ok(0)
        }
        Producer::Amqp { queue } => {
            let declare = if plan.attach.is_some() {
                DeclareMode::IfMissing
            } else {
                bench_declare()?
            };
            publish_amqp(&plan.amqp, queue, declare, &mut outgoing)
        }
        Producer::Direct { socket, script } => {
            let outcome = direct::drive(&DirectLoad {
                socket,
                script,
                count: plan.count,
                concurrency: plan.pool,
                keep_conn: plan.keep_conn,
                rate: plan.rate,
                sent,
                stop,
            })?;
            Ok(outcome.failed)
        }
    }
}
