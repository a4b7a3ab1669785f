//! `ferry conform fastcgi|resp|amqp ADDRESS`: runs a catalogue of protocol cases against a
//! server and reports, per case, what the specification says, what the server did and a
//! verdict. `docs/CONFORMANCE.md` documents every case and the results of the servers
//! ferry is tested with.
//!
//! A case is a short script: connect, send frames built with `ferry::proto`'s encoders,
//! judge what comes back with its decoders. Every case has its own deadline
//! (`--timeout-ms`), so a server that never answers costs one timeout, never a hang; a
//! case that creates broker state removes it before it returns, failed or not.
//!
//! Verdicts (README "Conformance suites"):
//! - `pass`: the server did what the specification says;
//! - `fail`: it did not (wrong frame, no answer, closed when it must answer…);
//! - `tolerated`: it accepted input the specification forbids;
//! - `not supported`: an optional feature it does not offer, and it said so as the
//!   specification allows (or it told us it does not offer it: no multiplexing).
//!
//! # Layout
//! - `mod.rs`: the command, the runner, the report (table and `--json`).
//! - `wire.rs`: blocking connections bounded by deadlines.
//! - `fastcgi.rs`, `resp.rs`, `amqp.rs`: the cases of each protocol.

mod amqp;
mod fastcgi;
mod resp;
mod wire;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::args::{self, Kind, Parsed};

/// Flags of `ferry conform`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("case", Kind::Repeated),
    ("json", Kind::Switch),
    ("timeout-ms", Kind::Single),
    ("script", Kind::Single),
    ("list", Kind::Switch),
    ("help", Kind::Switch),
];

/// `ferry conform --help`.
pub const HELP: &str = "\
Usage: ferry conform fastcgi ADDR [--script PATH] [OPTIONS]
       ferry conform resp    ADDR [OPTIONS]
       ferry conform amqp    URL  [OPTIONS]

Runs a catalogue of protocol cases against a server and prints one row per case: the
case, what the specification says (with its section), what the server did, and a
verdict:
  pass           the server did what the specification says
  fail           it did not
  tolerated      it accepted input the specification forbids
  not supported  an optional feature it does not offer (and said so properly)

  fastcgi  a FastCGI application (php-fpm, php-cgi -b, ferry responder): FastCGI 1.0
           ADDR is unix:/path, tcp:host:port or host:port
  resp     a Redis pub/sub server (Redis 7 is the reference): ADDR is host:port
  amqp     an AMQP 0-9-1 broker (RabbitMQ is the reference):
           URL is amqp://user:pass@host:port/vhost (vhost %2f = /); every queue and
           exchange a case declares has a random name and is deleted at its end

Options:
  --case NAME       run only this case (repeatable; --list shows the names)
  --list            print the case names and what each checks, run nothing
  --json            print one JSON document instead of the table
  --timeout-ms N    deadline of each case (default 2000)
  --script PATH     fastcgi: the SCRIPT_FILENAME every request names (php-fpm and
                    php-cgi need a script that exists to answer 200)
Exit codes: 0 no case failed, 1 a case failed (or the server is unreachable), 2 usage error.
The cases are documented in docs/CONFORMANCE.md.
";

/// Default deadline of one case.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Did what the specification says.
    #[serde(rename = "pass")]
    Pass,
    /// Did not.
    #[serde(rename = "fail")]
    Fail,
    /// Accepted what the specification forbids.
    #[serde(rename = "tolerated")]
    Tolerated,
    /// An optional feature the server does not offer.
    #[serde(rename = "not supported")]
    NotSupported,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Tolerated => "tolerated",
            Verdict::NotSupported => "not supported",
        }
    }
}

/// What a case found: its verdict and what the server did, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The verdict.
    pub verdict: Verdict,
    /// What the server did.
    pub observed: String,
}

impl Finding {
    /// The server did what the specification says.
    pub fn pass(observed: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::Pass,
            observed: observed.into(),
        }
    }

    /// It did not.
    pub fn fail(observed: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::Fail,
            observed: observed.into(),
        }
    }

    /// It accepted what the specification forbids.
    pub fn tolerated(observed: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::Tolerated,
            observed: observed.into(),
        }
    }

    /// An optional feature it does not offer.
    pub fn not_supported(observed: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::NotSupported,
            observed: observed.into(),
        }
    }
}

/// What a case returns: its finding, or why it could not go on (reported as `fail`).
pub type CaseResult = Result<Finding, String>;

/// One case of a catalogue, run with the protocol's context `C`.
pub struct Case<C> {
    /// Its name (`--case NAME`).
    pub name: &'static str,
    /// What the specification says, with its section.
    pub spec: &'static str,
    /// The script.
    pub run: fn(&mut C, Instant) -> CaseResult,
}

/// One row of the report.
#[derive(Debug, Serialize)]
struct Row {
    case: &'static str,
    spec: &'static str,
    observed: String,
    verdict: Verdict,
    elapsed_ms: u64,
}

/// How many cases got each verdict.
#[derive(Debug, Default, Serialize)]
struct Counts {
    pass: usize,
    fail: usize,
    tolerated: usize,
    not_supported: usize,
}

/// The whole report (`--json` prints it as it is).
#[derive(Debug, Serialize)]
struct Report {
    protocol: &'static str,
    target: String,
    /// No case failed.
    ok: bool,
    counts: Counts,
    cases: Vec<Row>,
}

/// `ferry conform ...`: the exit code.
pub fn command(argv: &[String]) -> u8 {
    let parsed = match args::parse("conform", FLAGS, argv) {
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
    match run(&parsed) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("ferry conform: {e} (see 'ferry conform --help')");
            2
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("ferry conform: {e}");
            1
        }
    }
}

/// Why the suite did not run.
pub enum Failure {
    /// Bad arguments: exit 2.
    Usage(String),
    /// The server cannot be reached at all: exit 1.
    Unreachable(String),
}

fn run(parsed: &Parsed) -> Result<u8, Failure> {
    let (protocol, target) = match parsed.positional.as_slice() {
        [protocol, target] => (protocol.as_str(), target.as_str()),
        [] | [_] => {
            return Err(Failure::Usage(
                "needs a protocol (fastcgi, resp or amqp) and the server's address".into(),
            ))
        }
        [_, _, extra, ..] => return Err(Failure::Usage(format!("unexpected argument '{extra}'"))),
    };
    let timeout = match parsed.number::<u64>("timeout-ms") {
        Ok(Some(0)) => return Err(Failure::Usage("--timeout-ms must be above 0".into())),
        Ok(Some(ms)) => Duration::from_millis(ms),
        Ok(None) => DEFAULT_TIMEOUT,
        Err(e) => return Err(Failure::Usage(e.0)),
    };
    if parsed.has("script") && protocol != "fastcgi" {
        return Err(Failure::Usage("--script is for fastcgi only".into()));
    }
    let options = Options {
        target: target.to_string(),
        timeout,
        filter: parsed.all("case").to_vec(),
        json: parsed.has("json"),
        list: parsed.has("list"),
    };
    match protocol {
        "fastcgi" => {
            let ctx =
                fastcgi::Ctx::new(target, parsed.get("script"), timeout).map_err(Failure::Usage)?;
            suite(
                "fastcgi",
                &fastcgi::cases(),
                ctx,
                &options,
                fastcgi::Ctx::probe,
            )
        }
        "resp" => {
            let ctx = resp::Ctx::new(target, timeout).map_err(Failure::Usage)?;
            suite("resp", &resp::cases(), ctx, &options, resp::Ctx::probe)
        }
        "amqp" => {
            let ctx = amqp::Ctx::new(target, timeout).map_err(Failure::Usage)?;
            // The report never shows the password.
            let options = Options {
                target: ctx.display(),
                ..options
            };
            suite("amqp", &amqp::cases(), ctx, &options, amqp::Ctx::probe)
        }
        other => Err(Failure::Usage(format!(
            "unknown protocol '{other}': fastcgi, resp or amqp"
        ))),
    }
}

/// What the command line asked for, whatever the protocol.
struct Options {
    target: String,
    timeout: Duration,
    filter: Vec<String>,
    json: bool,
    list: bool,
}

fn suite<C>(
    protocol: &'static str,
    cases: &[Case<C>],
    mut ctx: C,
    options: &Options,
    probe: fn(&mut C, Instant) -> Result<(), String>,
) -> Result<u8, Failure> {
    if let Some(unknown) = options
        .filter
        .iter()
        .find(|name| !cases.iter().any(|case| case.name == name.as_str()))
    {
        return Err(Failure::Usage(format!(
            "no {protocol} case named '{unknown}' (--list shows them)"
        )));
    }
    if options.list {
        for case in cases {
            println!("{:<36} {}", case.name, case.spec);
        }
        return Ok(0);
    }
    probe(&mut ctx, Instant::now() + options.timeout).map_err(|e| {
        Failure::Unreachable(format!(
            "cannot reach the {protocol} server {}: {e}",
            options.target
        ))
    })?;
    let mut rows = Vec::new();
    for case in cases {
        if !options.filter.is_empty() && !options.filter.iter().any(|n| n == case.name) {
            continue;
        }
        let started = Instant::now();
        let finding = (case.run)(&mut ctx, started + options.timeout).unwrap_or_else(Finding::fail);
        rows.push(Row {
            case: case.name,
            spec: case.spec,
            observed: finding.observed,
            verdict: finding.verdict,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    let mut counts = Counts::default();
    for row in &rows {
        match row.verdict {
            Verdict::Pass => counts.pass += 1,
            Verdict::Fail => counts.fail += 1,
            Verdict::Tolerated => counts.tolerated += 1,
            Verdict::NotSupported => counts.not_supported += 1,
        }
    }
    let report = Report {
        protocol,
        target: options.target.clone(),
        ok: counts.fail == 0,
        counts,
        cases: rows,
    };
    if options.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("ferry conform: {e}");
                return Ok(1);
            }
        }
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ok { 0 } else { 1 })
}

/// A table cell: one line, pipes escaped (the table is Markdown, so it pastes into
/// `docs/CONFORMANCE.md` as it is).
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ferry conform {} {}\n", report.protocol, report.target);
    let _ = writeln!(out, "| case | specification | server | verdict |");
    let _ = writeln!(out, "|---|---|---|---|");
    for row in &report.cases {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            row.case,
            cell(row.spec),
            cell(&row.observed),
            row.verdict.as_str()
        );
    }
    let c = &report.counts;
    let _ = writeln!(
        out,
        "\n{} cases: {} pass, {} fail, {} tolerated, {} not supported",
        report.cases.len(),
        c.pass,
        c.fail,
        c.tolerated,
        c.not_supported
    );
    out
}

/// A random hex suffix for names of queues, exchanges and channels, so runs never share
/// state (std's hasher is seeded randomly per process).
pub fn random_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Text for a peer's bytes in a report: printable ASCII as it is, the rest escaped, cut
/// at `max` bytes.
pub fn show(bytes: &[u8], max: usize) -> String {
    let mut text = String::new();
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => text.push_str("\\r"),
            b'\n' => text.push_str("\\n"),
            0x20..=0x7e => text.push(char::from(b)),
            _ => {
                let _ = write!(text, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > max {
        let _ = write!(text, "…(+{} bytes)", bytes.len() - max);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_stay_on_one_line_of_one_column() {
        assert_eq!(cell("a|b\r\nc"), "a\\|b  c");
    }

    #[test]
    fn peer_bytes_are_shown_escaped_and_cut() {
        assert_eq!(show(b"+OK\r\n\x00", 10), "+OK\\r\\n\\x00");
        assert_eq!(show(b"abcdef", 3), "abc…(+3 bytes)");
    }

    #[test]
    fn suffixes_differ() {
        assert_ne!(random_suffix(), random_suffix());
    }

    #[test]
    fn every_catalogue_has_unique_documented_names() {
        let names: Vec<(&str, &str)> = fastcgi::cases()
            .iter()
            .map(|c| (c.name, c.spec))
            .chain(resp::cases().iter().map(|c| (c.name, c.spec)))
            .chain(amqp::cases().iter().map(|c| (c.name, c.spec)))
            .collect();
        for (i, (name, spec)) in names.iter().enumerate() {
            assert!(!spec.is_empty(), "{name}");
            // A section of the specification, or of RabbitMQ's guides for its extensions.
            assert!(
                spec.contains('§') || spec.starts_with("rabbitmq:"),
                "{name}: the spec text names its section"
            );
            assert!(
                !names[..i].iter().any(|(other, _)| other == name),
                "{name} twice"
            );
        }
        assert!(fastcgi::cases().len() >= 25);
        assert!(resp::cases().len() >= 25);
        assert!(amqp::cases().len() >= 15);
    }
}
