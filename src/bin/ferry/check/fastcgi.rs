//! `ferry check` for a pool with an `address`, in three steps, each on its own
//! connection (php-fpm serves one exchange per connection and closes after GET_VALUES):
//! 1. GET_VALUES for `FCGI_MAX_CONNS`, `FCGI_MAX_REQS` and `FCGI_MPXS_CONNS`, shown as
//!    answered — php-fpm answers only `FCGI_MPXS_CONNS=0`, the others stay absent
//!    (`docs/PROTOCOLS.md` "FastCGI and php-fpm").
//! 2. With `status_path`: php-fpm's status page, asked for as a request whose
//!    `SCRIPT_NAME` and `REQUEST_URI` are that path; its text is shown.
//! 3. Unless `--no-script`: one request per job script of the sources using the pool,
//!    with an empty body, classified as `ferry run` would (`dispatch::outcome`): php-fpm's
//!    "Primary script unknown" is a missing script. The script really runs once.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use ferry::config::{Address, BodyMode, JobConfig, PoolConfig};
use ferry::dispatch::outcome::{classify, Attempt, ConnectFailure, Outcome, PoolFailureReason};
use ferry::dispatch::request::{Message, RequestBuilder, RequestOptions, SourceKind};
use ferry::proto::fastcgi::{
    decode_get_values_result, encode_get_values, Ending, Exchange, ExchangeEvent, ExchangeOptions,
    Finished, ResponseDecoder, ResponseEvent,
};
use ferry::proto::Status;
use serde::Serialize;

use super::conn::Conn;

/// The names asked for with GET_VALUES.
pub const GET_VALUES_NAMES: [&str; 3] = ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"];
/// Most status-page text kept.
const STATUS_TEXT_CAP: usize = 64 * 1024;
/// Most STDERR kept from the status request.
const STDERR_CAP: usize = 4096;

/// What the pool said.
#[derive(Debug, Default, Serialize)]
pub struct PoolDetails {
    /// GET_VALUES: every name asked for, `null` when the pool did not answer it, plus
    /// any name it volunteered. `None` when the step did not run.
    pub get_values: Option<BTreeMap<String, Option<String>>>,
    /// The status page, when the pool sets `status_path`.
    pub status_page: Option<StatusPage>,
    /// One probe per job script (empty with `--no-script`).
    pub scripts: Vec<ScriptProbe>,
}

/// php-fpm's status page.
#[derive(Debug, Default, Serialize)]
pub struct StatusPage {
    /// The `status_path` asked for.
    pub path: String,
    /// Whether it was served (2xx).
    pub ok: bool,
    /// The CGI `Status:` (php-fpm sends none for 200).
    pub status: Option<u16>,
    /// The page as it came.
    pub text: String,
    /// Its `name: value` lines (`pool`, `active processes`, `max children reached`, …).
    pub fields: BTreeMap<String, String>,
    /// Why it was not served.
    pub error: Option<String>,
}

/// One job script, asked once with an empty body.
#[derive(Debug, Default, Serialize)]
pub struct ScriptProbe {
    /// `SCRIPT_FILENAME`.
    pub script: String,
    /// The sources whose jobs run it.
    pub sources: Vec<String>,
    /// Whether the script answered with a complete response.
    pub ok: bool,
    /// php-fpm said "Primary script unknown" (or could not open it).
    pub missing: bool,
    /// The CGI `Status:` of the answer.
    pub status: Option<u16>,
    /// What `ferry run` would make of the answer (`success`, `permanent: client_error`, …).
    pub outcome: Option<String>,
    /// The first STDERR bytes, when there were any.
    pub stderr: Option<String>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// A job script and the sources (name, kind, job) that run it.
pub struct ScriptUse<'a> {
    /// The first source's job (its method, body mode and params shape the request).
    pub job: &'a JobConfig,
    /// Its kind, for `FERRY_KIND`.
    pub kind: SourceKind,
    /// Every source running this script.
    pub sources: Vec<String>,
}

fn connect_error(address: &Address, e: &io::Error) -> String {
    let reason: PoolFailureReason = ConnectFailure::from_io_error(e).into();
    format!("connect {address}: {e} ({})", reason.as_str())
}

/// Runs the steps; the error (also kept in the details' parts) says why the pool is not OK.
pub fn check(
    pool: &PoolConfig,
    address: &Address,
    scripts: &[ScriptUse<'_>],
    step_timeout: Duration,
) -> (PoolDetails, Option<String>) {
    let mut details = PoolDetails::default();
    match get_values(address, Instant::now() + step_timeout) {
        Ok(values) => details.get_values = Some(values),
        Err(e) => return (details, Some(e)),
    }
    let mut problems = Vec::new();
    if let Some(path) = &pool.status_path {
        let page = status_page(address, path, Instant::now() + step_timeout);
        if let Some(e) = &page.error {
            problems.push(format!("status page {path}: {e}"));
        }
        details.status_page = Some(page);
    }
    // A job runs up to the pool's request timeout; the probe waits at most 10 s for it.
    let script_timeout = Duration::from_millis(pool.request_timeout_ms)
        .min(Duration::from_secs(10))
        .max(step_timeout);
    for script in scripts {
        let probe = probe_script(address, script, step_timeout, script_timeout);
        if let Some(e) = &probe.error {
            problems.push(format!("script {}: {e}", probe.script));
        }
        details.scripts.push(probe);
    }
    let error = (!problems.is_empty()).then(|| problems.join("; "));
    (details, error)
}

fn get_values(
    address: &Address,
    deadline: Instant,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut conn = Conn::connect(address, deadline).map_err(|e| connect_error(address, &e))?;
    let mut request = Vec::new();
    encode_get_values(&mut request, GET_VALUES_NAMES.map(str::as_bytes))
        .map_err(|e| format!("GET_VALUES: {e}"))?;
    conn.send(&request, deadline)
        .map_err(|e| format!("GET_VALUES: send: {e}"))?;
    let mut buf = Vec::new();
    loop {
        match decode_get_values_result(&buf) {
            Ok(Status::Complete(pairs, _)) => {
                let mut values: BTreeMap<String, Option<String>> = GET_VALUES_NAMES
                    .iter()
                    .map(|name| (name.to_string(), None))
                    .collect();
                for (name, value) in pairs.flatten() {
                    values.insert(
                        String::from_utf8_lossy(name).into_owned(),
                        Some(String::from_utf8_lossy(value).into_owned()),
                    );
                }
                return Ok(values);
            }
            Ok(Status::Partial) => {}
            Err(e) => return Err(format!("GET_VALUES: the answer is not FastCGI: {e}")),
        }
        match conn.receive(&mut buf, deadline) {
            Ok(0) => {
                return Err("GET_VALUES: the pool closed the connection without answering".into())
            }
            Ok(_) => {}
            Err(e) => return Err(format!("GET_VALUES: {e}")),
        }
    }
}

/// The CGI `Status:` code and the body of a response's STDOUT.
fn split_cgi(stdout: &[u8]) -> (Option<u16>, &[u8]) {
    let (head, body) = match stdout.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&stdout[..at], &stdout[at + 4..]),
        None => match stdout.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&stdout[..at], &stdout[at + 2..]),
            None => (&stdout[..0], stdout),
        },
    };
    let status = String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("status") {
            return None;
        }
        value.trim().split(' ').next()?.parse().ok()
    });
    (status, body)
}

fn status_page(address: &Address, path: &str, deadline: Instant) -> StatusPage {
    let mut page = StatusPage {
        path: path.to_string(),
        ..StatusPage::default()
    };
    match read_status_page(address, path, deadline, &mut page) {
        Ok(()) => page.ok = true,
        Err(e) => page.error = Some(e),
    }
    page
}

fn read_status_page(
    address: &Address,
    path: &str,
    deadline: Instant,
    page: &mut StatusPage,
) -> Result<(), String> {
    // SCRIPT_FILENAME, SCRIPT_NAME and REQUEST_URI all become the path (see
    // dispatch::request): php-fpm answers its status page on SCRIPT_NAME.
    let job = JobConfig {
        pool: String::new(),
        script: path.to_string(),
        body: BodyMode::Raw,
        method: "GET".into(),
        content_type: String::new(),
        params: BTreeMap::new(),
        require_action_header: false,
    };
    let mut request = Vec::new();
    RequestBuilder::default()
        .build(
            &mut request,
            &job,
            &Message::new("ferry-check", SourceKind::Redis, 0),
            b"",
            RequestOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    let mut conn = Conn::connect(address, deadline).map_err(|e| connect_error(address, &e))?;
    conn.send(&request, deadline)
        .map_err(|e| format!("send: {e}"))?;
    let mut decoder = ResponseDecoder::new(1);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    let mut pos = 0;
    'read: loop {
        while let Some(rest) = buf.get(pos..) {
            match decoder.decode(rest) {
                Ok(Status::Complete(event, used)) => {
                    pos += used;
                    match event {
                        ResponseEvent::Stdout(chunk) => keep(&mut stdout, chunk, STATUS_TEXT_CAP),
                        ResponseEvent::Stderr(chunk) => keep(&mut stderr, chunk, STDERR_CAP),
                        ResponseEvent::End { .. } => break 'read,
                        ResponseEvent::DuplicateEnd => {}
                    }
                }
                Ok(Status::Partial) => break,
                Err(e) => return Err(format!("the answer is not FastCGI: {e}")),
            }
        }
        buf.drain(..pos);
        pos = 0;
        match conn.receive(&mut buf, deadline) {
            Ok(0) => return Err("the pool closed the connection mid-answer".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the answer: {e}")),
        }
    }
    let (status, body) = split_cgi(&stdout);
    page.status = status;
    page.text = String::from_utf8_lossy(body).into_owned();
    page.fields = page
        .text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    match status {
        None => Ok(()),
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => {
            let said = String::from_utf8_lossy(&stderr);
            let hint = if said.contains("Primary script unknown") {
                " (is pm.status_path set to this path in the php-fpm pool?)"
            } else {
                ""
            };
            Err(format!("answered {code}: {}{hint}", said.trim()))
        }
    }
}

fn keep(into: &mut Vec<u8>, chunk: &[u8], cap: usize) {
    let room = cap.saturating_sub(into.len());
    into.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
}

fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success => "success".into(),
        Outcome::Permanent { reason } => format!("permanent: {}", reason.as_str()),
        Outcome::Retryable { reason, .. } => format!("retryable: {}", reason.as_str()),
        Outcome::PoolFailure { reason } => format!("pool failure: {}", reason.as_str()),
        Outcome::ResendOnce => "resend".into(),
    }
}

fn probe_script(
    address: &Address,
    script: &ScriptUse<'_>,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> ScriptProbe {
    let mut probe = ScriptProbe {
        script: script.job.script.clone(),
        sources: script.sources.clone(),
        ..ScriptProbe::default()
    };
    // An empty form is an empty JSON object; a raw body is empty.
    let payload: &[u8] = match script.job.body {
        BodyMode::Form => b"{}",
        BodyMode::Raw => b"",
    };
    let source = script.sources.first().map_or("", String::as_str);
    // FERRY_ATTEMPT=0: no delivery has attempt 0, so a worker can tell the probe apart.
    let message = Message::new(source, script.kind, 0);
    let mut request = Vec::new();
    if let Err(e) = RequestBuilder::default().build(
        &mut request,
        script.job,
        &message,
        payload,
        RequestOptions::default(),
    ) {
        probe.error = Some(e.to_string());
        return probe;
    }
    let attempt = match Conn::connect(address, Instant::now() + connect_timeout) {
        Err(e) => {
            probe.error = Some(connect_error(address, &e));
            return probe;
        }
        Ok(conn) => run_exchange(conn, request, request_timeout),
    };
    let finished = match attempt {
        Ok(finished) => finished,
        Err(e) => {
            probe.error = Some(e);
            return probe;
        }
    };
    let outcome = classify(
        Attempt::Finished(&finished),
        script.job.require_action_header,
        false,
    );
    probe.status = finished.status;
    probe.outcome = Some(outcome_label(&outcome));
    if !finished.stderr.excerpt.is_empty() {
        probe.stderr = Some(String::from_utf8_lossy(&finished.stderr.excerpt).into_owned());
    }
    let said = probe.stderr.as_deref().unwrap_or("").trim().to_string();
    match (outcome, finished.ending) {
        (
            Outcome::PoolFailure {
                reason: PoolFailureReason::ScriptUnknown,
            },
            _,
        ) => {
            probe.missing = true;
            probe.error = Some(format!("missing: php-fpm says {said:?}"));
        }
        (Outcome::PoolFailure { reason }, _) => {
            probe.error = Some(format!("{}: {said}", reason.as_str()));
        }
        (_, Ending::EndRequest { .. }) if finished.head_complete => probe.ok = true,
        (_, Ending::TimedOut) => {
            probe.error = Some(format!(
                "no answer within {} ms",
                request_timeout.as_millis()
            ))
        }
        (_, Ending::Malformed(e)) => probe.error = Some(format!("malformed answer: {e}")),
        (_, ending) => probe.error = Some(format!("no complete answer: {ending:?}")),
    }
    probe
}

/// Runs one [`Exchange`] over a blocking connection to its end.
fn run_exchange(mut conn: Conn, request: Vec<u8>, timeout: Duration) -> Result<Finished, String> {
    let now = Instant::now();
    let deadline = now + timeout;
    let mut exchange = Exchange::new(request, ExchangeOptions::new(timeout), now);
    let mut out = Vec::new();
    exchange.poll_transmit(&mut out);
    conn.send(&out, deadline)
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    loop {
        if let Some(ExchangeEvent::Finished(finished)) = exchange.poll_event() {
            return Ok(finished);
        }
        match conn.receive(&mut buf, deadline) {
            Ok(0) => exchange.handle_eof(Instant::now()),
            Ok(_) => {
                // A codec error ends the exchange as Malformed; the event says so.
                if let Ok(used) = exchange.handle_input(&buf, Instant::now()) {
                    buf.drain(..used);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                exchange.handle_timeout(Instant::now());
            }
            Err(_) => exchange.handle_eof(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_cgi;

    #[test]
    fn cgi_status_and_body_are_split() {
        assert_eq!(
            split_cgi(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found."),
            (Some(404), &b"File not found."[..])
        );
        assert_eq!(
            split_cgi(b"Content-type: text/plain\r\n\r\npool: www\n"),
            (None, &b"pool: www\n"[..])
        );
        assert_eq!(split_cgi(b"no head"), (None, &b"no head"[..]));
    }
}
