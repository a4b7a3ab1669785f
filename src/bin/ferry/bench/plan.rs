//! What `ferry bench` was asked to do: its flags, checked and turned into a [`Plan`].
//!
//! One plan describes one kind of run; a concurrency sweep and the limit runs are the
//! same plan with the pool size or the [`Mode`] changed ([`Plan::with_pool`],
//! [`Plan::with_mode`]).

use std::path::PathBuf;
use std::time::Duration;

use ferry::config::{Address, AmqpUrl, RedisUrl};

use crate::args::{Kind, Parsed};

/// Flags of `ferry bench`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("source", Kind::Single),
    ("redis", Kind::Single),
    ("amqp", Kind::Single),
    ("prefetch", Kind::Single),
    ("count", Kind::Single),
    ("rate", Kind::Single),
    ("pool", Kind::Single),
    ("keep-conn", Kind::Switch),
    ("delay-ms", Kind::Single),
    ("php-script", Kind::Single),
    ("php-fpm", Kind::Single),
    ("php-children", Kind::Single),
    ("direct", Kind::Switch),
    ("broker", Kind::Switch),
    ("limits", Kind::Switch),
    ("concurrency-sweep", Kind::Single),
    ("timeout-s", Kind::Single),
    ("json", Kind::Switch),
    ("plot", Kind::Single),
    ("attach", Kind::Single),
    ("worker-log", Kind::Repeated),
    ("channel", Kind::Single),
    ("queue", Kind::Single),
    ("endpoint", Kind::Single),
    ("help", Kind::Switch),
];

/// `ferry bench --help`.
pub const HELP: &str = "\
Usage: ferry bench [--source redis|amqp|endpoint|stream] [--count N] [--rate PER_S] [--pool N]
                   [--prefetch N] [--keep-conn] [--delay-ms N] [--php-script FILE]
                   [--direct | --broker | --limits | --concurrency-sweep LIST]
                   [--json] [--plot FILE.svg] [--timeout-s S]
       ferry bench --attach PID --worker-log FILE (--channel NAME | --queue NAME) ...

End-to-end benchmark: publishes COUNT numbered messages {\"n\": i, \"t\": publish_time_us}
through a broker and ferry to a pool of FastCGI workers, and reports throughput, latency
from publish to the worker's receipt (p50/p90/p99/p99.9/max), ferry's CPU time per
message and its RSS, and every message lost or received twice. It starts everything
itself in a temporary directory (ferry with a generated config and its control endpoint
on a unix socket, the workers) and stops and removes it all on exit, also on Ctrl-C.
Needs the broker: Redis at --redis, RabbitMQ at --amqp.

Source (what ferry consumes):
  --source KIND       redis (default): pub/sub channel; amqp: a queue (non-durable, removed
                      by the broker 10 min after its last use); endpoint: ferry's own RESP
                      endpoint on a free port, published to with RESP PUBLISH; stream:
                      a Redis stream (XADD) read through a consumer group, deleted after
                      the run
  --redis URL         default redis://127.0.0.1:6379
  --amqp URL          default amqp://guest:guest@127.0.0.1:5672/%2f
  --prefetch N        AMQP prefetch (default: the pool size)
  Redis and endpoint sources get backlog = COUNT (at least 1000), so a burst is queued
  in ferry, not dropped.

Load:
  --count N           messages (default 10000)
  --rate PER_S        publish at most PER_S messages a second (default: as fast as the
                      broker takes them)
  --timeout-s S       after publishing, give up when nothing arrived for S seconds
                      (default 30); what did not arrive is reported lost

Workers (the pool):
  --pool N            ferry's max_in_flight, and php-fpm's pm.max_children (default 4)
  --keep-conn         the pool keeps FastCGI connections (keep_conn: true)
  --delay-ms N        ferry responder answers each request after N ms (default 0)
  --php-script FILE   a private php-fpm master (pm static, N children) runs FILE instead
                      of ferry responder; FILE appends {\"n\", \"t\", \"received_at_us\"}
                      JSON lines to getenv('FERRY_BENCH_LOG'), as benches/null.php does
  --php-fpm BIN       the php-fpm binary (default php-fpm8.2 on PATH or in /usr/sbin)
  --php-children N    php-fpm's pm.max_children when it should differ from --pool (e.g.
                      --pool 8 --php-children 4 --keep-conn: more connections than
                      children, which ferry must not leave waiting)
  Without --php-script, one `ferry responder` process serves the whole pool: it answers
  many connections at once from one loop, so the pool size is ferry's limit, not its.

Limits (ferry taken out of the path):
  --direct            the same workers driven over FastCGI with POOL concurrent
                      connections, without broker or ferry
  --broker            the broker alone: Redis publish and one subscriber; AMQP publish
                      with confirms and one consumer acking (prefetch as given)
  --limits            the ferry run, then both limit runs, and ferry's share of the lower
                      limit

Scale:
  --concurrency-sweep LIST   e.g. 10,100,1000,10000: one run per value C with C requests
                      in flight in the steady state: published at --rate R (default
                      2000/s, the same for every step) to ferry responder answering after
                      C / R, so in flight = rate x delay = C (with --delay-ms D instead,
                      the delay is fixed and the rate is C / D). Pool size and AMQP
                      prefetch: 1.1 x C + 10, so the pool is never the queue. Reports
                      CPU per message, peak in flight and RSS per in-flight request.
                      --count is per step (default: 3 x C, at least 2 s of messages)

Output:
  --json              one JSON document on stdout instead of the table
  --plot FILE         an SVG of latency percentiles and throughput over the run

Running pipeline (nothing started; publishes to it and reads its workers' logs):
  --attach PID        ferry's pid, for CPU and RSS
  --worker-log FILE   a `ferry responder --log` file or FERRY_BENCH_LOG file (repeatable)
  --channel NAME      publish to this Redis channel (or endpoint channel)
  --queue NAME        publish to this AMQP queue (--source amqp)
  --endpoint ADDR     ferry's RESP endpoint, host:port (--source endpoint)

Exit code 0 when every message arrived exactly once, 1 otherwise or on a runtime
failure, 2 for usage errors.
";

/// Where messages enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Redis pub/sub.
    Redis,
    /// A RabbitMQ queue.
    Amqp,
    /// ferry's own RESP endpoint.
    Endpoint,
    /// A Redis stream read through a consumer group.
    Stream,
}

impl SourceKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Redis => "redis",
            SourceKind::Amqp => "amqp",
            SourceKind::Endpoint => "endpoint",
            SourceKind::Stream => "stream",
        }
    }
}

/// Who answers the FastCGI requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workers {
    /// One `ferry responder` process.
    Responder,
    /// A private php-fpm master running `script`.
    Php {
        /// The job script (absolute).
        script: PathBuf,
        /// The php-fpm binary.
        binary: PathBuf,
    },
}

impl Workers {
    /// The name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Workers::Responder => "responder",
            Workers::Php { .. } => "php-fpm",
        }
    }
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Broker → ferry → workers.
    Pipeline,
    /// Workers alone, driven over FastCGI.
    Direct,
    /// Broker alone: publish and consume.
    Broker,
}

impl Mode {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pipeline => "pipeline",
            Mode::Direct => "direct",
            Mode::Broker => "broker",
        }
    }
}

/// A pipeline started by someone else.
#[derive(Debug, Clone)]
pub struct Attach {
    /// ferry's pid.
    pub pid: u32,
    /// The workers' receipt logs.
    pub worker_logs: Vec<PathBuf>,
    /// Channel (Redis, endpoint) or queue (AMQP) to publish to.
    pub target: String,
    /// The endpoint's address (endpoint source).
    pub endpoint: Option<(String, u16)>,
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: SourceKind,
    pub redis: RedisUrl,
    /// As given (with its password, for ferry's config; `Display` hides it).
    pub redis_text: String,
    pub amqp: AmqpUrl,
    /// As given.
    pub amqp_text: String,
    pub prefetch: Option<u16>,
    pub count: u64,
    pub rate: Option<f64>,
    pub pool: usize,
    /// php-fpm's `pm.max_children` when it differs from `pool` (`--php-children`).
    pub php_children: Option<usize>,
    pub keep_conn: bool,
    pub delay_ms: u64,
    pub workers: Workers,
    pub mode: Mode,
    /// Also run both limits and report the share.
    pub limits: bool,
    /// Requests in flight of each step of a concurrency sweep (empty: no sweep).
    pub sweep: Vec<usize>,
    /// The sweep step's aim (rate × delay), reported with the step.
    pub target_in_flight: Option<u64>,
    /// Count given explicitly (a sweep otherwise sizes each step).
    pub count_given: bool,
    pub timeout: Duration,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub attach: Option<Attach>,
}

impl Plan {
    /// The same plan in another mode.
    pub fn with_mode(&self, mode: Mode) -> Plan {
        Plan {
            mode,
            ..self.clone()
        }
    }

    /// The same plan with another pool size (and AMQP prefetch) and count.
    pub fn with_pool(&self, pool: usize, count: u64) -> Plan {
        Plan {
            pool,
            prefetch: Some(u16::try_from(pool).unwrap_or(u16::MAX)),
            count,
            ..self.clone()
        }
    }

    /// The AMQP prefetch in effect.
    pub fn prefetch(&self) -> u16 {
        self.prefetch
            .unwrap_or_else(|| u16::try_from(self.pool).unwrap_or(u16::MAX))
    }
}

/// Reads the flags; an error is a usage error (exit 2).
pub fn plan(parsed: &Parsed) -> Result<Plan, String> {
    if let Some(extra) = parsed.positional.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let number = |flag: &str| parsed.number::<u64>(flag).map_err(|e| e.0);
    let source = match parsed.get("source").unwrap_or("redis") {
        "redis" => SourceKind::Redis,
        "amqp" => SourceKind::Amqp,
        "endpoint" => SourceKind::Endpoint,
        "stream" => SourceKind::Stream,
        other => {
            return Err(format!(
                "--source: '{other}' is not redis, amqp, endpoint or stream"
            ))
        }
    };
    let redis_text = parsed
        .get("redis")
        .unwrap_or("redis://127.0.0.1:6379")
        .to_string();
    let redis = crate::publish::plain_redis(&redis_text).map_err(|e| format!("--redis: {e}"))?;
    let amqp_text = parsed
        .get("amqp")
        .unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f")
        .to_string();
    let amqp = AmqpUrl::parse(&amqp_text)
        .and_then(|u| {
            if u.tls {
                Err(crate::publish::PLAIN_ONLY.into())
            } else {
                Ok(u)
            }
        })
        .map_err(|e| format!("--amqp: {e}"))?;
    let prefetch = match number("prefetch")? {
        None => None,
        Some(n @ 1..=65_535) => Some(n as u16),
        Some(n) => return Err(format!("--prefetch: {n} is not within 1..=65535")),
    };
    let count = number("count")?;
    if count == Some(0) {
        return Err("--count: give at least 1".into());
    }
    let rate = parsed.number::<f64>("rate").map_err(|e| e.0)?;
    if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err("--rate: must be above 0".into());
    }
    let pool = match number("pool")?.unwrap_or(4) {
        0 => return Err("--pool: give at least 1".into()),
        n => usize::try_from(n).map_err(|_| "--pool: too large".to_string())?,
    };
    let delay_ms = number("delay-ms")?.unwrap_or(0);
    let workers = match parsed.get("php-script") {
        None => Workers::Responder,
        Some(script) => {
            let script =
                std::path::absolute(script).map_err(|e| format!("--php-script {script}: {e}"))?;
            if !script.is_file() {
                return Err(format!("--php-script {}: no such file", script.display()));
            }
            let binary = match parsed.get("php-fpm") {
                Some(binary) => PathBuf::from(binary),
                None => find_php_fpm().ok_or(
                    "--php-script: php-fpm8.2 is not on PATH or in /usr/sbin; \
                     install php8.2-fpm or give --php-fpm BIN",
                )?,
            };
            Workers::Php { script, binary }
        }
    };
    if delay_ms > 0 && workers != Workers::Responder {
        return Err("--delay-ms applies to ferry responder, not to --php-script".into());
    }
    let chosen = ["direct", "broker", "limits", "concurrency-sweep", "attach"]
        .iter()
        .filter(|flag| parsed.has(flag))
        .collect::<Vec<_>>();
    if chosen.len() > 1 {
        return Err(format!(
            "--{} and --{} cannot be combined",
            chosen[0], chosen[1]
        ));
    }
    let mode = if parsed.has("direct") {
        Mode::Direct
    } else if parsed.has("broker") {
        Mode::Broker
    } else {
        Mode::Pipeline
    };
    if mode == Mode::Broker && source == SourceKind::Endpoint {
        return Err(
            "--broker: the endpoint is ferry itself, so it has no broker-alone limit; \
             use --direct"
                .into(),
        );
    }
    let sweep = match parsed.get("concurrency-sweep") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|item| match item.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "--concurrency-sweep: '{item}' is not a positive number"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if !sweep.is_empty() && parsed.has("plot") {
        return Err("--plot draws one run; it cannot be combined with --concurrency-sweep".into());
    }
    let timeout = Duration::from_secs(number("timeout-s")?.unwrap_or(30).max(1));
    let attach = match parsed.get("attach") {
        None => None,
        Some(pid) => Some(attach(parsed, source, pid)?),
    };
    Ok(Plan {
        source,
        redis,
        redis_text,
        amqp,
        amqp_text,
        prefetch,
        count: count.unwrap_or(10_000),
        count_given: count.is_some(),
        rate,
        pool,
        php_children: match number("php-children")? {
            None => None,
            Some(0) => return Err("--php-children: give at least 1".into()),
            Some(n) => Some(usize::try_from(n).map_err(|_| "--php-children: too large")?),
        },
        keep_conn: parsed.has("keep-conn"),
        delay_ms,
        workers,
        mode,
        limits: parsed.has("limits"),
        sweep,
        target_in_flight: None,
        timeout,
        json: parsed.has("json"),
        plot: parsed.get("plot").map(PathBuf::from),
        attach,
    })
}

fn attach(parsed: &Parsed, source: SourceKind, pid: &str) -> Result<Attach, String> {
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("--attach: '{pid}' is not a process id"))?;
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(format!("--attach: no process {pid}"));
    }
    let worker_logs: Vec<PathBuf> = parsed.all("worker-log").iter().map(PathBuf::from).collect();
    if worker_logs.is_empty() {
        return Err("--attach needs --worker-log FILE (where the workers log receipts)".into());
    }
    let (flag, target) = match source {
        SourceKind::Amqp => ("queue", parsed.get("queue")),
        SourceKind::Redis | SourceKind::Endpoint | SourceKind::Stream => {
            ("channel", parsed.get("channel"))
        }
    };
    let target = target
        .ok_or_else(|| {
            format!(
                "--attach with --source {} needs --{flag} NAME",
                source.name()
            )
        })?
        .to_string();
    let endpoint = match (source, parsed.get("endpoint")) {
        (SourceKind::Endpoint, Some(text)) => match Address::parse(text) {
            Ok(Address::Tcp { host, port }) => Some((host, port)),
            _ => return Err(format!("--endpoint: '{text}' is not host:port")),
        },
        (SourceKind::Endpoint, None) => {
            return Err("--attach with --source endpoint needs --endpoint HOST:PORT".into())
        }
        _ => None,
    };
    Ok(Attach {
        pid,
        worker_logs,
        target,
        endpoint,
    })
}

/// php-fpm 8.2 on PATH or in the sbin directories (often not on a user's PATH).
fn find_php_fpm() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir: PathBuf| dir.join("php-fpm8.2"))
        .find(|path| path.is_file())
}
