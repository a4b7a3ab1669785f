//! `ferry check --config FILE [--json] [--no-script]` (`docs/OPERATIONS.md` "Other
//! commands"): validates the configuration exactly as `ferry run` does (exit 2 naming the
//! key and why), then connects to every endpoint it names, one after the other with
//! blocking sockets and a short timeout, and reports what each peer says. Exit 0 when
//! every endpoint answered as it should, 1 otherwise.
//!
//! What "as it should" means, per endpoint:
//! - Redis source: HELLO (or AUTH/PING) succeeded — see `check/redis.rs`.
//! - AMQP source: the broker took our credentials and vhost, and the queue exists, or
//!   is missing but the source's `declare` lets `ferry run` create it — `check/amqp.rs`.
//! - Pool with an `address`: GET_VALUES answered, the status page (when `status_path`
//!   is set) was served, and every job script answered with a complete response, whatever
//!   its status: a missing script is a failure — `check/fastcgi.rs`.
//! - `resp_endpoint` source: ferry could listen on its address (free, bindable) —
//!   `check/listen.rs`.
//! - Spawned pools: the program exists and is executable; nothing listens before
//!   `ferry run` starts them, so no script is run — `check/listen.rs`.
//!
//! # Layout
//! - `check.rs`: the command, the report and its two renderings (text, `--json`).
//! - `check/conn.rs`: blocking TCP/unix connections bounded by deadlines.
//! - `check/redis.rs`, `check/amqp.rs`, `check/fastcgi.rs`: one peer kind each.

mod amqp;
mod conn;
mod fastcgi;
mod listen;
mod redis;
mod sentinel;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ferry::config::{self, Config, Declare, SourceConfig};
use ferry::dispatch::request::SourceKind;
use serde::Serialize;

use crate::args::{Kind, Parsed};

/// Flags of `ferry check`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("config", Kind::Single),
    ("json", Kind::Switch),
    ("no-script", Kind::Switch),
    ("help", Kind::Switch),
];

/// `ferry check --help`.
pub const HELP: &str = "\
Usage: ferry check --config FILE [--json] [--no-script]

Validates the configuration (exit 2 naming the bad key, as 'ferry run' does), then
connects to every endpoint it names and reports what each peer says:
  sentinel       (a source with a \"sentinel\" block) each sentinel's answer to SENTINEL
                 GET-MASTER-ADDR-BY-NAME; the master the first answer names is then
                 checked as a redis source and must say role master
  redis source   HELLO 3 (with AUTH when a password is given): server, version, protocol
  amqp source    RabbitMQ's product, version and capabilities (connection.start), and
                 whether the queue exists (a passive declare: nothing is created)
  pool           GET_VALUES (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS; php-fpm
                 answers only FCGI_MPXS_CONNS=0), the php-fpm status page when the pool
                 sets status_path, and whether each job script answers
  resp_endpoint  whether ferry could listen on its address (free and bindable)
  TLS source     (rediss://, amqps://) protocol version, cipher suite, and the server
                 certificate's subject, issuer and days to expiry; a failed
                 verification names its cause
  spawned pool   whether its program is found and executable (its scripts are not run:
                 nothing listens before 'ferry run' starts it)
Each connection and step has a 3 s timeout (a job script: the pool's request timeout, at
most 10 s).

NOTE: checking a job script RUNS IT ONCE, with an empty body (an empty form for
body \"form\") and FERRY_ATTEMPT=0 so the worker can tell the probe apart. php-fpm's
\"Primary script unknown\" is reported as a missing script. Use --no-script to skip this.

Options:
  --config FILE   the JSON configuration
  --json          print one JSON document instead of the text report
  --no-script     do not run the job scripts
Exit codes: 0 every endpoint OK, 1 some endpoint failed, 2 usage or configuration error.
";

/// Timeout of each connection and protocol step.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// The whole report (`--json` prints it as it is).
#[derive(Debug, Serialize)]
struct Report {
    /// The configuration file.
    config: String,
    /// Every endpoint OK.
    ok: bool,
    /// In the file's order: sources, then pools by name.
    endpoints: Vec<Endpoint>,
}

/// One endpoint's verdict and what its peer said.
#[derive(Debug, Serialize)]
struct Endpoint {
    /// `redis`, `amqp`, `redis_stream`, `sentinel`, `resp_endpoint` or `pool`.
    kind: &'static str,
    /// The source's or pool's name.
    name: String,
    /// Where it is (URLs with the password redacted).
    address: String,
    /// Reachable and answering as it should.
    ok: bool,
    /// Nothing was asked (a listener of ferry's own).
    skipped: bool,
    /// Why it is not OK.
    error: Option<String>,
    /// Something worth knowing that is not a failure.
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<redis::RedisDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<redis::StreamDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amqp: Option<amqp::AmqpDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<fastcgi::PoolDetails>,
}

impl Endpoint {
    fn new(kind: &'static str, name: &str, address: String) -> Endpoint {
        Endpoint {
            kind,
            name: name.to_string(),
            address,
            ok: false,
            skipped: false,
            error: None,
            note: None,
            redis: None,
            stream: None,
            amqp: None,
            pool: None,
        }
    }

    fn verdict(mut self, error: Option<String>) -> Endpoint {
        self.ok = error.is_none();
        self.error = error;
        self
    }
}

/// `ferry check ARGS…`: parses the flags, prints help or runs; returns the exit code.
pub fn command(args: &[String]) -> u8 {
    let parsed = match crate::args::parse("check", FLAGS, args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    if parsed.has("help") {
        print!("{HELP}");
        return 0;
    }
    run(&parsed)
}

/// Runs `ferry check`; returns the exit code (usage and config errors are printed here).
fn run(parsed: &Parsed) -> u8 {
    if !parsed.positional.is_empty() {
        eprintln!(
            "ferry check: unexpected argument '{}'",
            parsed.positional[0]
        );
        return 2;
    }
    let Some(path) = parsed.get("config") else {
        eprintln!("ferry check: --config FILE is required (see 'ferry check --help')");
        return 2;
    };
    let config = match config::load(path.as_ref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry check: config {path}: {e}");
            return 2;
        }
    };
    let report = Report::gather(path, &config, !parsed.has("no-script"));
    if parsed.has("json") {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("ferry check: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", report.render());
    }
    if report.ok {
        0
    } else {
        1
    }
}

fn source_kind(source: &SourceConfig) -> SourceKind {
    match source {
        SourceConfig::Redis(_) => SourceKind::Redis,
        SourceConfig::Amqp(_) => SourceKind::Amqp,
        SourceConfig::RespEndpoint(_) => SourceKind::RespEndpoint,
        SourceConfig::RedisStream(_) => SourceKind::RedisStream,
    }
}

impl Report {
    fn gather(path: &str, config: &Config, run_scripts: bool) -> Report {
        let mut endpoints = Vec::new();
        for source in &config.sources {
            if let Some(settings) = sentinel_of(source) {
                endpoints.extend(check_sentinel_source(source, settings));
                continue;
            }
            // Every node of a source's `urls` is an endpoint of its own.
            let nodes = match source {
                SourceConfig::Redis(s) => s.urls.len(),
                SourceConfig::Amqp(s) => s.urls.len(),
                SourceConfig::RedisStream(s) => s.urls.len(),
                SourceConfig::RespEndpoint(_) => 1,
            };
            for node in 0..nodes {
                endpoints.push(check_source(source, node));
            }
        }
        for (name, pool) in &config.pools {
            let Some(address) = &pool.address else {
                let spawn = pool.spawn.as_ref();
                let program = spawn
                    .and_then(|s| s.command.first())
                    .map_or("", String::as_str);
                let endpoint = Endpoint::new("pool", name, "spawn".into());
                let endpoint = match listen::check_program(program) {
                    Ok(path) => {
                        let mut endpoint = endpoint.verdict(None);
                        endpoint.note = Some(format!(
                            "'ferry run' starts {} processes of {}; nothing listens before that, so no script is run",
                            spawn.map_or(0, |s| s.processes),
                            path.display()
                        ));
                        endpoint
                    }
                    Err(why) => endpoint.verdict(Some(why)),
                };
                endpoints.push(endpoint);
                continue;
            };
            // Distinct job scripts of the sources feeding this pool, first use first.
            let mut scripts: Vec<fastcgi::ScriptUse<'_>> = Vec::new();
            if run_scripts {
                for source in config.sources.iter().filter(|s| s.job().pool == *name) {
                    let job = source.job();
                    match scripts.iter_mut().find(|s| s.job.script == job.script) {
                        Some(seen) => seen.sources.push(source.name().to_string()),
                        None => scripts.push(fastcgi::ScriptUse {
                            job,
                            kind: source_kind(source),
                            sources: vec![source.name().to_string()],
                        }),
                    }
                }
            }
            let (details, error) = fastcgi::check(pool, address, &scripts, STEP_TIMEOUT);
            let mut endpoint = Endpoint::new("pool", name, address.to_string()).verdict(error);
            if !run_scripts {
                endpoint.note = Some("job scripts not run (--no-script)".into());
            }
            endpoint.pool = Some(details);
            endpoints.push(endpoint);
        }
        Report {
            config: path.to_string(),
            ok: endpoints.iter().all(|e| e.ok),
            endpoints,
        }
    }

    /// The text report: one block per endpoint, `OK`/`FAIL`/`SKIP` first.
    fn render(&self) -> String {
        let mut out = String::new();
        for endpoint in &self.endpoints {
            render_endpoint(&mut out, endpoint);
        }
        let good = self.endpoints.iter().filter(|e| e.ok).count();
        let _ = writeln!(
            out,
            "{good} of {} endpoints OK ({})",
            self.endpoints.len(),
            self.config
        );
        out
    }
}

fn sentinel_of(source: &SourceConfig) -> Option<&config::SentinelSettings> {
    match source {
        SourceConfig::Redis(s) => s.sentinel.as_ref(),
        SourceConfig::RedisStream(s) => s.sentinel.as_ref(),
        _ => None,
    }
}

/// A source behind Sentinel: one row per sentinel (what it says the master is), then
/// the master the first answer named, checked as a node of its own (it must say
/// `role: master`).
fn check_sentinel_source(
    source: &SourceConfig,
    settings: &config::SentinelSettings,
) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    let mut master = None;
    for (host, port) in &settings.nodes {
        let address = config::Address::Tcp {
            host: host.clone(),
            port: *port,
        };
        let answer = sentinel::ask(settings, host, *port, Instant::now() + STEP_TIMEOUT);
        let mut endpoint = Endpoint::new("sentinel", source.name(), address.to_string());
        match answer {
            Ok(at) => {
                endpoint = endpoint.verdict(None);
                endpoint.note = Some(format!("master {:?} is at {at}", settings.master));
                master.get_or_insert(at);
            }
            Err(why) => endpoint = endpoint.verdict(Some(why)),
        }
        endpoints.push(endpoint);
    }
    let Some(at) = master else {
        let endpoint = Endpoint::new(
            "redis",
            source.name(),
            format!("master {:?}", settings.master),
        )
        .verdict(Some("no sentinel named the master".into()));
        endpoints.push(endpoint);
        return endpoints;
    };
    let url = settings.master_url(&at.host, at.port);
    let mut node = source.clone();
    match &mut node {
        SourceConfig::Redis(s) => s.urls = vec![url],
        SourceConfig::RedisStream(s) => s.urls = vec![url],
        _ => {}
    }
    let mut endpoint = check_source(&node, 0);
    let role = endpoint.redis.as_ref().and_then(|r| r.role.clone());
    if endpoint.ok && role.as_deref().is_some_and(|r| r != "master") {
        let role = role.unwrap_or_default();
        endpoint = endpoint.verdict(Some(format!(
            "a sentinel named it as the master, but its role is {role}"
        )));
    }
    endpoints.push(endpoint);
    endpoints
}

/// Checks node `node` of `source` (a RESP endpoint has one).
fn check_source(source: &SourceConfig, node: usize) -> Endpoint {
    match source {
        SourceConfig::Redis(redis) => {
            let url = &redis.urls[node];
            let (details, error) = redis::check(
                url,
                redis.tls_client.as_ref(),
                Instant::now() + STEP_TIMEOUT,
            );
            let mut endpoint = Endpoint::new("redis", &redis.name, url.to_string()).verdict(error);
            endpoint.redis = Some(details);
            endpoint
        }
        SourceConfig::Amqp(source) => {
            let url = &source.urls[node];
            let (details, mut error) = amqp::check(
                url,
                source.tls_client.as_ref(),
                &source.queue,
                Instant::now() + STEP_TIMEOUT,
            );
            let mut note = None;
            if details.queue_exists == Some(false) {
                if source.declare == Declare::CheckOnly {
                    error.get_or_insert_with(|| {
                        format!(
                            "queue '{}' is missing (\"declare\": false: ferry run will not create it)",
                            source.queue
                        )
                    });
                } else {
                    note = Some(format!(
                        "queue '{}' is missing: ferry run will declare it",
                        source.queue
                    ));
                }
            }
            let mut endpoint = Endpoint::new("amqp", &source.name, url.to_string()).verdict(error);
            endpoint.note = note;
            endpoint.amqp = Some(details);
            endpoint
        }
        SourceConfig::RedisStream(source) => {
            let url = &source.urls[node];
            let (details, stream, note, error) =
                redis::check_stream(source, url, Instant::now() + STEP_TIMEOUT);
            let mut endpoint =
                Endpoint::new("redis_stream", &source.name, url.to_string()).verdict(error);
            endpoint.note = note;
            endpoint.redis = Some(details);
            endpoint.stream = Some(stream);
            endpoint
        }
        SourceConfig::RespEndpoint(endpoint_source) => {
            let mut endpoint = Endpoint::new(
                "resp_endpoint",
                &endpoint_source.name,
                endpoint_source.listen.to_string(),
            )
            .verdict(None);
            match listen::check_listen(&endpoint_source.listen) {
                Ok(note) => {
                    endpoint.note = Some(note);
                    endpoint
                }
                Err(why) => endpoint.verdict(Some(why)),
            }
        }
    }
}

/// `TLS: TLSv1_3 TLS13_AES_256_GCM_SHA384; certificate CN=…, issued by CN=…, expires
/// 2027-03-01 (89 days)`.
fn render_tls(out: &mut String, t: &conn::TlsDetails) {
    let _ = write!(out, "     TLS: {} {}", t.protocol, t.cipher_suite);
    if let (Some(subject), Some(issuer)) = (&t.subject, &t.issuer) {
        let _ = write!(out, "; certificate {subject}, issued by {issuer}");
    }
    if let (Some(expires), Some(days)) = (&t.expires, t.days_to_expiry) {
        let _ = write!(out, ", expires {expires} ({days} days)");
    }
    if t.unverified {
        out.push_str(" — NOT VERIFIED (insecure_skip_verify)");
    }
    out.push('\n');
}

fn or_absent(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("?")
}

fn render_endpoint(out: &mut String, e: &Endpoint) {
    let verdict = match (e.ok, e.skipped) {
        (_, true) => "SKIP",
        (true, false) => "OK",
        (false, false) => "FAIL",
    };
    let what = match e.kind {
        "pool" => format!("pool '{}'", e.name),
        "sentinel" => format!("sentinel of source '{}'", e.name),
        kind => format!("{kind} source '{}'", e.name),
    };
    let _ = writeln!(out, "{verdict:<5}{what} at {}", e.address);
    let tls = e.redis.as_ref().and_then(|r| r.tls.as_ref());
    if let Some(t) = tls.or_else(|| e.amqp.as_ref().and_then(|a| a.tls.as_ref())) {
        render_tls(out, t);
    }
    if let Some(r) = &e.redis {
        if r.version.is_some() || r.protocol.is_some() {
            let _ = writeln!(
                out,
                "     {} {}, protocol {}, mode {}, role {}",
                or_absent(&r.server),
                or_absent(&r.version),
                r.protocol.map_or("?".into(), |p| p.to_string()),
                or_absent(&r.mode),
                or_absent(&r.role)
            );
        }
    }
    if let Some(st) = &e.stream {
        let num = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        if st.group_exists {
            let _ = writeln!(
                out,
                "     stream: {} entries; group: {} consumers, {} pending, lag {}{}",
                num(st.length),
                num(st.consumers),
                num(st.pending),
                num(st.lag),
                st.dead_letters
                    .map_or(String::new(), |n| format!("; {n} dead letters"))
            );
        }
    }
    if let Some(a) = &e.amqp {
        if a.product.is_some() || a.version.is_some() {
            let _ = writeln!(
                out,
                "     {} {} on {}, AMQP {}",
                or_absent(&a.product),
                or_absent(&a.version),
                or_absent(&a.platform),
                or_absent(&a.protocol)
            );
            let on: Vec<&str> = a
                .capabilities
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| name.as_str())
                .collect();
            let _ = writeln!(out, "     capabilities: {}", on.join(", "));
        }
        match (a.queue_exists, a.messages, a.consumers) {
            (Some(true), Some(m), Some(c)) => {
                let _ = writeln!(
                    out,
                    "     queue '{}': exists, {m} messages ready, {c} consumers",
                    a.queue
                );
            }
            (Some(false), ..) => {
                let _ = writeln!(out, "     queue '{}': missing", a.queue);
            }
            _ => {}
        }
    }
    if let Some(p) = &e.pool {
        render_pool(out, p);
    }
    if let Some(note) = &e.note {
        let _ = writeln!(out, "     note: {note}");
    }
    if let Some(error) = &e.error {
        let _ = writeln!(out, "     error: {error}");
    }
}

fn render_pool(out: &mut String, p: &fastcgi::PoolDetails) {
    if let Some(values) = &p.get_values {
        let shown: Vec<String> = values
            .iter()
            .map(|(name, value)| match value {
                Some(v) => format!("{name}={v}"),
                None => format!("{name} absent"),
            })
            .collect();
        let _ = writeln!(out, "     GET_VALUES: {}", shown.join(", "));
    }
    if let Some(page) = &p.status_page {
        let code = page
            .status
            .map_or(String::new(), |c| format!(" (status {c})"));
        if page.ok {
            let _ = writeln!(out, "     status page {}{code}:", page.path);
            for line in page.text.lines() {
                let _ = writeln!(out, "       {line}");
            }
        } else {
            let _ = writeln!(out, "     status page {}: not served{code}", page.path);
        }
    }
    for s in &p.scripts {
        let sources = s.sources.join(", ");
        let said = match (s.ok, s.missing) {
            (true, _) => format!(
                "answers: status {} ({})",
                s.status.map_or("200".into(), |c| c.to_string()),
                s.outcome.as_deref().unwrap_or("?")
            ),
            (false, true) => "MISSING".into(),
            (false, false) => "does not answer".into(),
        };
        let _ = writeln!(out, "     script {} (sources: {sources}): {said}", s.script);
    }
}
