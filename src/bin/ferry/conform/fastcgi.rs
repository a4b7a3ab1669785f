//! The FastCGI cases (FastCGI 1.0, the 1996 Open Market specification; sections as `§`).
//!
//! Every case opens its own connection(s) — php-fpm answers GET_VALUES only as the first
//! record of a connection and then closes it (PROTOCOL-NOTES in docs/ARCHITECTURE.md's
//! sense: the servers' own habits are in `docs/CONFORMANCE.md`) — and judges the answer at
//! the record level: the right request id, STDOUT/STDERR before END_REQUEST, the protocol
//! status. The CGI answer itself (200 or 404) is only reported: a server without
//! `--script` answers "File not found" and that is still a well-formed FastCGI answer.
//!
//! Requests are built from `ferry::proto::fastcgi`'s encoders; records a well-behaved
//! client never sends (another version, odd padding, unknown flag bits) come from
//! [`encode_raw_record`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ferry::config::Address;
use ferry::proto::fastcgi::nv::encode_pair;
use ferry::proto::fastcgi::record::{FLAG_KEEP_CONN, VERSION_1};
use ferry::proto::fastcgi::{
    decode_record, encode_abort_request, encode_begin_request, encode_get_values,
    encode_raw_record, encode_record, NameValuePairs, ProtocolStatus, RecordType, Role,
};
use ferry::proto::Status;

use super::wire::{Wire, WireError};
use super::{show, Case, CaseResult, Finding};

/// What every case needs.
pub struct Ctx {
    address: Address,
    script: Option<String>,
    timeout: Duration,
    /// `FCGI_MPXS_CONNS` as the server answered it (asked once, when a case needs it).
    mpxs_conns: Option<Option<String>>,
}

impl Ctx {
    /// Context for `target` (`unix:/path`, `tcp:host:port`, `host:port`).
    pub fn new(target: &str, script: Option<&str>, timeout: Duration) -> Result<Ctx, String> {
        let address = Address::parse(target)?;
        Ok(Ctx {
            address,
            script: script.map(str::to_string),
            timeout,
            mpxs_conns: None,
        })
    }

    /// The server accepts connections.
    pub fn probe(&mut self, deadline: Instant) -> Result<(), String> {
        Wire::connect(&self.address, deadline)
            .map(drop)
            .map_err(String::from)
    }

    fn connect(&self, deadline: Instant) -> Result<Wire, String> {
        Wire::connect(&self.address, deadline).map_err(|e| format!("connect: {e}"))
    }

    /// The params of an ordinary GET request (plus `extra`).
    fn params(&self, extra: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let script = self.script.as_deref().unwrap_or("/ferry-conform.php");
        let mut params: Vec<(Vec<u8>, Vec<u8>)> = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", "ferry-conform"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_FILENAME", script),
            ("SCRIPT_NAME", "/ferry-conform.php"),
            ("REQUEST_URI", "/ferry-conform.php"),
            ("QUERY_STRING", ""),
            ("REMOTE_ADDR", "127.0.0.1"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        for (name, value) in extra {
            params.push((name.to_vec(), value.to_vec()));
        }
        params
    }

    /// `FCGI_MPXS_CONNS` as the server answers it (`None`: not answered).
    fn mpxs_conns(&mut self) -> Option<String> {
        if let Some(known) = &self.mpxs_conns {
            return known.clone();
        }
        let deadline = Instant::now() + self.timeout;
        let answer = get_values(self, &[b"FCGI_MPXS_CONNS"], deadline)
            .ok()
            .and_then(|values| values.get("FCGI_MPXS_CONNS").cloned());
        self.mpxs_conns = Some(answer.clone());
        answer
    }
}

/// A record as it came, owned.
#[derive(Debug, Clone)]
struct Rec {
    kind: RecordType,
    id: u16,
    content: Vec<u8>,
}

fn read_record(wire: &mut Wire) -> Result<Rec, WireError> {
    wire.next(decode_one)
}

fn decode_one(buf: &[u8]) -> Result<Option<(Rec, usize)>, String> {
    match decode_record(buf) {
        Ok(Status::Complete(record, used)) => Ok(Some((
            Rec {
                kind: record.record_type,
                id: record.request_id,
                content: record.content.to_vec(),
            },
            used,
        ))),
        Ok(Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Encodes `params` as a PARAMS stream: whole pairs, at most 0xFFF8 bytes per record
/// (a pair larger than that spans records, as §3.4 allows), then the empty record.
fn params_stream(params: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for (name, value) in params {
        encode_pair(&mut bytes, name, value).map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Appends `bytes` as records of `record_type` of at most `chunk` bytes each, then the
/// empty record that ends the stream.
fn stream(out: &mut Vec<u8>, record_type: RecordType, id: u16, bytes: &[u8], chunk: usize) {
    for piece in bytes.chunks(chunk.max(1)) {
        let _ = encode_record(out, record_type, id, piece);
    }
    let _ = encode_record(out, record_type, id, b"");
}

/// A whole RESPONDER request: BEGIN, PARAMS (whole pairs per record), empty STDIN.
fn request(ctx: &Ctx, id: u16, keep_conn: bool, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_begin_request(&mut out, id, Role::Responder, keep_conn);
    let params = ctx.params(extra);
    let mut record = Vec::new();
    for (name, value) in &params {
        let mut pair = Vec::new();
        let _ = encode_pair(&mut pair, name, value);
        if record.len() + pair.len() > 0xFFF8 {
            let _ = encode_record(&mut out, RecordType::Params, id, &record);
            record.clear();
        }
        record.extend_from_slice(&pair);
    }
    if !record.is_empty() {
        let _ = encode_record(&mut out, RecordType::Params, id, &record);
    }
    let _ = encode_record(&mut out, RecordType::Params, id, b"");
    let _ = encode_record(&mut out, RecordType::Stdin, id, b"");
    out
}

/// What came back for the requests a case sent.
#[derive(Debug, Default)]
struct Answer {
    /// Every record in order.
    records: Vec<Rec>,
    /// Why reading stopped before every awaited END_REQUEST came.
    stopped: Option<String>,
    /// The server closed the connection.
    closed: bool,
}

impl Answer {
    fn end_of(&self, id: u16) -> Option<(u32, Option<ProtocolStatus>, usize)> {
        self.records
            .iter()
            .find(|r| r.kind == RecordType::EndRequest && r.id == id)
            .map(|r| {
                let app = r
                    .content
                    .first_chunk::<4>()
                    .map_or(0, |b| u32::from_be_bytes(*b));
                let protocol = r.content.get(4).and_then(|&b| ProtocolStatus::from_u8(b));
                (app, protocol, r.content.len())
            })
    }

    fn stream_of(&self, id: u16, kind: RecordType) -> Vec<u8> {
        self.records
            .iter()
            .filter(|r| r.id == id && r.kind == kind)
            .flat_map(|r| r.content.iter().copied())
            .collect()
    }

    /// Record types and ids in order, for the report: `STDOUT(1) END_REQUEST(1)`.
    fn sequence(&self) -> String {
        let mut text = String::new();
        let mut last: Option<(RecordType, u16)> = None;
        let mut repeat = 0;
        for r in &self.records {
            if last == Some((r.kind, r.id)) {
                repeat += 1;
                continue;
            }
            flush_repeat(&mut text, repeat);
            repeat = 0;
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{}({})", r.kind, r.id);
            last = Some((r.kind, r.id));
        }
        flush_repeat(&mut text, repeat);
        if text.is_empty() {
            text.push_str("no record");
        }
        text
    }
}

fn flush_repeat(text: &mut String, repeat: usize) {
    if repeat > 0 {
        let _ = write!(text, "×{}", repeat + 1);
    }
}

/// Reads records until END_REQUEST came for every id in `ids`, the server closed, or the
/// deadline passed.
fn collect(wire: &mut Wire, ids: &[u16]) -> Answer {
    let mut answer = Answer::default();
    let mut waiting: Vec<u16> = ids.to_vec();
    while !waiting.is_empty() {
        match read_record(wire) {
            Ok(rec) => {
                if rec.kind == RecordType::EndRequest {
                    waiting.retain(|&id| id != rec.id);
                }
                answer.records.push(rec);
            }
            Err(e) => {
                answer.closed = e.is_closed();
                answer.stopped = Some(e.to_string());
                break;
            }
        }
    }
    answer
}

/// The CGI `Status:` of a STDOUT stream (none: 200).
fn cgi_status(stdout: &[u8]) -> String {
    let head_end = stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| stdout.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(stdout.len());
    let head = String::from_utf8_lossy(stdout.get(..head_end).unwrap_or_default()).into_owned();
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("status")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "200".into())
}

/// Judges the answer to one RESPONDER request: `Ok(description)` when it was served (its
/// own id only, output before END_REQUEST, REQUEST_COMPLETE), `Err(description)` if not.
fn served(answer: &Answer, id: u16) -> Result<String, String> {
    let sequence = answer.sequence();
    if let Some(other) = answer.records.iter().find(|r| r.id != id) {
        return Err(format!(
            "a {} record for request {} (we sent {id}): {sequence}",
            other.kind, other.id
        ));
    }
    let Some((app, protocol, len)) = answer.end_of(id) else {
        let why = answer.stopped.as_deref().unwrap_or("no END_REQUEST");
        return Err(format!("no END_REQUEST ({why}) after {sequence}"));
    };
    if len != 8 {
        return Err(format!("END_REQUEST with {len} bytes of content (§5.5: 8)"));
    }
    match protocol {
        Some(ProtocolStatus::RequestComplete) => {}
        Some(other) => return Err(format!("END_REQUEST {other:?}: {sequence}")),
        None => return Err("END_REQUEST with an undefined protocol status".into()),
    }
    let stdout = answer.stream_of(id, RecordType::Stdout);
    if stdout.is_empty() {
        return Err(format!("END_REQUEST without any STDOUT: {sequence}"));
    }
    Ok(format!(
        "served: {sequence}; {} bytes of STDOUT, CGI status {}, app status {app}",
        stdout.len(),
        cgi_status(&stdout)
    ))
}

/// Sends `bytes` on a new connection and judges the answer to request `id`.
fn serve_one(ctx: &Ctx, deadline: Instant, id: u16, bytes: &[u8]) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    wire.send(bytes)?;
    let answer = collect(&mut wire, &[id]);
    Ok(match served(&answer, id) {
        Ok(text) => Finding::pass(text),
        Err(text) => Finding::fail(text),
    })
}

/// GET_VALUES for `names` on a new connection; the values answered.
fn get_values(
    ctx: &Ctx,
    names: &[&[u8]],
    deadline: Instant,
) -> Result<BTreeMap<String, String>, String> {
    let mut wire = ctx.connect(deadline)?;
    let mut out = Vec::new();
    encode_get_values(&mut out, names.iter().copied()).map_err(|e| e.to_string())?;
    wire.send(&out)?;
    let rec = read_record(&mut wire).map_err(|e| format!("no GET_VALUES_RESULT: {e}"))?;
    if rec.kind != RecordType::GetValuesResult || rec.id != 0 {
        return Err(format!(
            "a {} record for request {} instead of GET_VALUES_RESULT",
            rec.kind, rec.id
        ));
    }
    let mut values = BTreeMap::new();
    for pair in NameValuePairs::new(&rec.content) {
        let (name, value) = pair.map_err(|e| format!("GET_VALUES_RESULT: {e}"))?;
        values.insert(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
    }
    Ok(values)
}

fn describe_values(values: &BTreeMap<String, String>) -> String {
    if values.is_empty() {
        return "GET_VALUES_RESULT with no value".into();
    }
    let listed: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("GET_VALUES_RESULT {}", listed.join(", "))
}

fn get_value_case(
    ctx: &mut Ctx,
    deadline: Instant,
    name: &str,
    valid: fn(&str) -> bool,
) -> CaseResult {
    let values = get_values(ctx, &[name.as_bytes()], deadline)?;
    let said = describe_values(&values);
    Ok(match values.get(name) {
        None => Finding::not_supported(format!("{said}: {name} not answered")),
        Some(value) if valid(value) => Finding::pass(said),
        Some(_) => Finding::fail(format!("{said}: not a valid value")),
    })
}

fn is_count(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

fn max_conns(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    get_value_case(ctx, deadline, "FCGI_MAX_CONNS", is_count)
}

fn max_reqs(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    get_value_case(ctx, deadline, "FCGI_MAX_REQS", is_count)
}

fn mpxs_conns(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let finding = get_value_case(ctx, deadline, "FCGI_MPXS_CONNS", |v| v == "0" || v == "1")?;
    Ok(finding)
}

fn unknown_name(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let values = get_values(
        ctx,
        &[b"FERRY_CONFORM_NO_SUCH_VARIABLE", b"FCGI_MPXS_CONNS"],
        deadline,
    )?;
    let said = describe_values(&values);
    Ok(if values.contains_key("FERRY_CONFORM_NO_SUCH_VARIABLE") {
        Finding::fail(format!("{said}: the unknown name was answered"))
    } else {
        Finding::pass(format!("{said}: the unknown name omitted"))
    })
}

fn unknown_type(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    let mut out = Vec::new();
    encode_raw_record(&mut out, VERSION_1, 42, 0, b"ferry", 3).map_err(|e| e.to_string())?;
    wire.send(&out)?;
    Ok(match read_record(&mut wire) {
        Ok(rec) if rec.kind == RecordType::UnknownType && rec.id == 0 => {
            match rec.content.first() {
                Some(42) if rec.content.len() == 8 => Finding::pass("UNKNOWN_TYPE naming type 42"),
                _ => Finding::fail(format!(
                    "UNKNOWN_TYPE with content {}",
                    show(&rec.content, 16)
                )),
            }
        }
        Ok(rec) => Finding::fail(format!("a {} record for request {}", rec.kind, rec.id)),
        Err(e) => Finding::fail(format!("no UNKNOWN_TYPE: {e}")),
    })
}

fn request_id_258(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    serve_one(ctx, deadline, 258, &request(ctx, 258, false, &[]))
}

fn request_id_65535(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    serve_one(ctx, deadline, 65535, &request(ctx, 65535, false, &[]))
}

/// A BEGIN_REQUEST with id 0: id 0 is for management records only (§3.3), so this is
/// an unknown management record (UNKNOWN_TYPE) or an error; serving it is tolerated.
fn request_id_zero(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    let mut out = Vec::new();
    encode_raw_record(&mut out, VERSION_1, 1, 0, &[0, 1, 0, 0, 0, 0, 0, 0], 0)
        .map_err(|e| e.to_string())?;
    let params = params_stream(&ctx.params(&[]))?;
    encode_raw_record(&mut out, VERSION_1, 4, 0, &params, 0).map_err(|e| e.to_string())?;
    encode_raw_record(&mut out, VERSION_1, 4, 0, b"", 0).map_err(|e| e.to_string())?;
    encode_raw_record(&mut out, VERSION_1, 5, 0, b"", 0).map_err(|e| e.to_string())?;
    // A server that already closed is an answer too.
    let _ = wire.send(&out);
    let quiet = Instant::now() + quiet_period(ctx);
    let mut seen = Vec::new();
    loop {
        match wire.next_until(quiet, decode_one) {
            Ok(rec) => {
                let done = rec.kind == RecordType::EndRequest;
                seen.push(rec);
                if done {
                    break;
                }
            }
            Err(WireError::TimedOut) => break,
            Err(e) if e.is_closed() => {
                let what = describe(&seen);
                return Ok(Finding::pass(format!("{what}, then closed the connection")));
            }
            Err(e) => return Ok(Finding::fail(e.to_string())),
        }
    }
    let what = describe(&seen);
    if seen.iter().any(|r| r.kind == RecordType::Stdout) {
        return Ok(Finding::tolerated(format!("served the request: {what}")));
    }
    if seen.iter().all(|r| r.kind == RecordType::UnknownType) {
        return Ok(Finding::pass(what));
    }
    Ok(Finding::fail(what))
}

fn describe(records: &[Rec]) -> String {
    if records.is_empty() {
        return "no record".into();
    }
    let answer = Answer {
        records: records.to_vec(),
        ..Answer::default()
    };
    answer.sequence()
}

/// How long "nothing happens" must last to count as the server ignoring something.
fn quiet_period(ctx: &Ctx) -> Duration {
    (ctx.timeout / 4).min(Duration::from_millis(500))
}

fn keep_conn_serial(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    let mut said = Vec::new();
    for id in [1u16, 2, 3] {
        wire.send(&request(ctx, id, true, &[]))?;
        let answer = collect(&mut wire, &[id]);
        match served(&answer, id) {
            Ok(_) => said.push(format!("request {id} served")),
            Err(text) => {
                return Ok(Finding::fail(format!(
                    "{}request {id}: {text}",
                    said.iter().map(|s| format!("{s}; ")).collect::<String>()
                )))
            }
        }
    }
    // The connection must still be open after the last one.
    if wire.closes_by(Instant::now() + quiet_period(ctx))? {
        return Ok(Finding::fail(format!(
            "{}; then closed the connection although KEEP_CONN was set",
            said.join("; ")
        )));
    }
    Ok(Finding::pass(format!(
        "{} on one connection, which stayed open",
        said.join(", ")
    )))
}

fn keep_conn_absent(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    wire.send(&request(ctx, 1, false, &[]))?;
    let answer = collect(&mut wire, &[1]);
    if let Err(text) = served(&answer, 1) {
        return Ok(Finding::fail(text));
    }
    Ok(if wire.closes_by(deadline)? {
        Finding::pass("served, then the server closed the connection")
    } else {
        Finding::fail("served, but the connection was still open at the deadline")
    })
}

/// Two requests whose records interleave on one connection.
fn interleaved(ctx: &Ctx) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, true);
    encode_begin_request(&mut out, 2, Role::Responder, true);
    let params = params_stream(&ctx.params(&[]))?;
    for id in [1u16, 2] {
        stream(&mut out, RecordType::Params, id, &params, 0xFFF8);
    }
    let _ = encode_record(&mut out, RecordType::Stdin, 2, b"");
    let _ = encode_record(&mut out, RecordType::Stdin, 1, b"");
    Ok(out)
}

fn mpx_concurrent(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mpxs = ctx.mpxs_conns();
    if mpxs.as_deref() != Some("1") {
        return Ok(Finding::not_supported(format!(
            "FCGI_MPXS_CONNS={}: the server does not multiplex (see mpx_refused_cant_mpx_conn)",
            mpxs.as_deref().unwrap_or("(not answered)")
        )));
    }
    let mut wire = ctx.connect(deadline)?;
    wire.send(&interleaved(ctx)?)?;
    let answer = collect(&mut wire, &[1, 2]);
    let one = answer_for(&answer, 1);
    let two = answer_for(&answer, 2);
    Ok(match (served(&one, 1), served(&two, 2)) {
        (Ok(_), Ok(_)) => Finding::pass(format!("both served: {}", answer.sequence())),
        (a, b) => Finding::fail(format!(
            "request 1: {}; request 2: {}",
            a.unwrap_or_else(|e| e),
            b.unwrap_or_else(|e| e)
        )),
    })
}

/// The records of one request only (for judging interleaved answers).
fn answer_for(answer: &Answer, id: u16) -> Answer {
    Answer {
        records: answer
            .records
            .iter()
            .filter(|r| r.id == id)
            .cloned()
            .collect(),
        stopped: answer.stopped.clone(),
        closed: answer.closed,
    }
}

fn mpx_refused(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mpxs = ctx.mpxs_conns();
    if mpxs.as_deref() == Some("1") {
        return Ok(Finding::not_supported(
            "FCGI_MPXS_CONNS=1: the server multiplexes (see mpx_concurrent_requests)",
        ));
    }
    let mut wire = ctx.connect(deadline)?;
    // Request 2 begins while request 1's input is incomplete: concurrent, not serial.
    let _ = wire.send(&interleaved(ctx)?);
    let answer = collect(&mut wire, &[1, 2]);
    let one = served(&answer_for(&answer, 1), 1);
    let two_end = answer.end_of(2);
    let sequence = answer.sequence();
    Ok(match (one, two_end) {
        (Ok(_), Some((_, Some(ProtocolStatus::CantMpxConn), _))) => Finding::pass(format!(
            "request 2 refused with CANT_MPX_CONN, request 1 served: {sequence}"
        )),
        (Ok(_), Some((_, Some(ProtocolStatus::RequestComplete), _))) => {
            Finding::pass(format!("both served, one after the other: {sequence}"))
        }
        (one, _) => Finding::fail(format!(
            "{sequence}{}; §5.5 wants END_REQUEST CANT_MPX_CONN for request 2 {}",
            if answer.closed { ", then closed" } else { "" },
            match one {
                Ok(_) => "(request 1 was served)".to_string(),
                Err(e) => format!("and request 1 served ({e})"),
            }
        )),
    })
}

fn params_empty(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, false);
    let _ = encode_record(&mut out, RecordType::Params, 1, b"");
    let _ = encode_record(&mut out, RecordType::Stdin, 1, b"");
    serve_one(ctx, deadline, 1, &out)
}

/// A request whose PARAMS stream is `params` cut into the given records.
fn request_with_params_records(id: u16, records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_begin_request(&mut out, id, Role::Responder, false);
    for record in records {
        let _ = encode_record(&mut out, RecordType::Params, id, record);
    }
    let _ = encode_record(&mut out, RecordType::Params, id, b"");
    let _ = encode_record(&mut out, RecordType::Stdin, id, b"");
    out
}

fn params_long_lengths(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let name = vec![b'N'; 200];
    let value = vec![b'v'; 300];
    let bytes = request(ctx, 1, false, &[(&name, &value)]);
    serve_one(ctx, deadline, 1, &bytes)
}

fn over_64k(ctx: &Ctx, deadline: Instant, name: &[u8], value: &[u8]) -> CaseResult {
    let params = params_stream(&ctx.params(&[(name, value)]))?;
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, false);
    stream(&mut out, RecordType::Params, 1, &params, 0xFFF8);
    let _ = encode_record(&mut out, RecordType::Stdin, 1, b"");
    serve_one(ctx, deadline, 1, &out)
}

fn params_value_over_64k(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    over_64k(ctx, deadline, b"HTTP_X_FERRY_LARGE", &vec![b'v'; 70_000])
}

fn params_name_over_64k(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut name = b"HTTP_X_".to_vec();
    name.resize(70_000, b'N');
    over_64k(ctx, deadline, &name, b"v")
}

/// One pair, split into two PARAMS records at each byte offset in `cuts`, one request
/// per cut; the first cut that is not served is the finding.
fn split_pair(
    ctx: &Ctx,
    deadline: Instant,
    name: &[u8],
    value: &[u8],
    cuts: &[usize],
) -> CaseResult {
    let mut pair = Vec::new();
    encode_pair(&mut pair, name, value).map_err(|e| e.to_string())?;
    let rest = params_stream(&ctx.params(&[]))?;
    for &cut in cuts {
        let (head, tail) = pair.split_at(cut.min(pair.len()));
        let bytes = request_with_params_records(1, &[&rest, head, tail]);
        let mut wire = ctx.connect(deadline)?;
        // A server that gives up may close before reading everything.
        let _ = wire.send(&bytes);
        let answer = collect(&mut wire, &[1]);
        if let Err(text) = served(&answer, 1) {
            return Ok(Finding::fail(format!(
                "pair split after byte {cut} of {}: {text}",
                pair.len()
            )));
        }
    }
    Ok(Finding::pass(format!(
        "served with the pair split after each of bytes {cuts:?}"
    )))
}

fn params_split_short_header(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    // Header: nameLength (1 byte), valueLength (1 byte); then name, value.
    split_pair(ctx, deadline, b"HTTP_X_FERRY", b"split", &[1, 2, 5, 14])
}

fn params_split_long_header(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    // Header: nameLength (4 bytes), valueLength (4 bytes).
    let mut name = b"HTTP_X_".to_vec();
    name.resize(200, b'N');
    split_pair(
        ctx,
        deadline,
        &name,
        &vec![b'v'; 300],
        &[1, 2, 3, 4, 5, 6, 7, 8],
    )
}

fn params_one_byte_records(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let params = params_stream(&ctx.params(&[]))?;
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, false);
    stream(&mut out, RecordType::Params, 1, &params, 1);
    let _ = encode_record(&mut out, RecordType::Stdin, 1, b"");
    serve_one(ctx, deadline, 1, &out)
}

fn post_request(ctx: &Ctx, id: u16, body: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
    let length = body.len().to_string();
    let params = params_stream(&ctx.params(&[
        (b"REQUEST_METHOD", b"POST"),
        (b"CONTENT_TYPE", b"application/octet-stream"),
        (b"CONTENT_LENGTH", length.as_bytes()),
    ]))?;
    let mut out = Vec::new();
    encode_begin_request(&mut out, id, Role::Responder, false);
    stream(&mut out, RecordType::Params, id, &params, 0xFFF8);
    stream(&mut out, RecordType::Stdin, id, body, chunk);
    Ok(out)
}

fn stdin_empty(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let bytes = post_request(ctx, 1, b"", 1)?;
    serve_one(ctx, deadline, 1, &bytes)
}

fn stdin_one_byte_records(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let bytes = post_request(ctx, 1, &[b'x'; 100], 1)?;
    serve_one(ctx, deadline, 1, &bytes)
}

fn padding(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    // 256 PARAMS records, each one whole pair, record i padded with i bytes; then STDIN
    // records padded 0, 1, 255.
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, false);
    let mut pairs = ctx.params(&[]);
    for i in 0..256usize {
        pairs.push((format!("HTTP_X_PAD_{i:03}").into_bytes(), b"x".to_vec()));
    }
    for (i, (name, value)) in pairs.iter().enumerate() {
        let mut pair = Vec::new();
        encode_pair(&mut pair, name, value).map_err(|e| e.to_string())?;
        let pad = u8::try_from(i % 256).unwrap_or(0);
        encode_raw_record(&mut out, VERSION_1, 4, 1, &pair, pad).map_err(|e| e.to_string())?;
    }
    encode_raw_record(&mut out, VERSION_1, 4, 1, b"", 255).map_err(|e| e.to_string())?;
    encode_raw_record(&mut out, VERSION_1, 5, 1, b"", 1).map_err(|e| e.to_string())?;
    serve_one(ctx, deadline, 1, &out)
}

fn abort_before_input_complete(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let params = params_stream(&ctx.params(&[]))?;
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, false);
    let _ = encode_record(&mut out, RecordType::Params, 1, &params);
    encode_abort_request(&mut out, 1);
    let mut wire = ctx.connect(deadline)?;
    wire.send(&out)?;
    let answer = collect(&mut wire, &[1]);
    let sequence = answer.sequence();
    Ok(match answer.end_of(1) {
        Some((app, Some(status), 8)) => Finding::pass(format!(
            "{sequence}: END_REQUEST {status:?}, app status {app}"
        )),
        Some(_) => Finding::fail(format!("{sequence}: malformed END_REQUEST")),
        None => Finding::fail(format!(
            "{sequence}: no END_REQUEST ({})",
            answer.stopped.as_deref().unwrap_or("")
        )),
    })
}

fn abort_after_input(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut out = request(ctx, 1, false, &[]);
    encode_abort_request(&mut out, 1);
    let mut wire = ctx.connect(deadline)?;
    // The server may answer and close before the ABORT_REQUEST is read.
    let _ = wire.send(&out);
    let mut answer = collect(&mut wire, &[1]);
    // A second END_REQUEST (one for the request, one for the abort) would be a bug.
    if answer.end_of(1).is_some() {
        let quiet = Instant::now() + quiet_period(ctx);
        while let Ok(rec) = wire.next_until(quiet, decode_one) {
            answer.records.push(rec);
        }
    }
    let ends = answer
        .records
        .iter()
        .filter(|r| r.kind == RecordType::EndRequest)
        .count();
    let sequence = answer.sequence();
    Ok(match (answer.end_of(1), ends) {
        (Some((_, Some(status), 8)), 1) => {
            Finding::pass(format!("one END_REQUEST ({status:?}): {sequence}"))
        }
        (Some(_), n) if n > 1 => Finding::fail(format!("{n} END_REQUEST records: {sequence}")),
        _ => Finding::fail(format!(
            "no END_REQUEST ({}): {sequence}",
            answer.stopped.as_deref().unwrap_or("")
        )),
    })
}

/// A request in `role` (with a DATA stream for FILTER): served or UNKNOWN_ROLE.
fn role_case(ctx: &Ctx, deadline: Instant, role: Role) -> CaseResult {
    let params = params_stream(&ctx.params(&[(b"FCGI_DATA_LENGTH", b"4")]))?;
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, role, false);
    stream(&mut out, RecordType::Params, 1, &params, 0xFFF8);
    let _ = encode_record(&mut out, RecordType::Stdin, 1, b"");
    if role == Role::Filter {
        stream(&mut out, RecordType::Data, 1, b"data", 0xFFF8);
    }
    let mut wire = ctx.connect(deadline)?;
    let _ = wire.send(&out);
    let answer = collect(&mut wire, &[1]);
    let sequence = answer.sequence();
    Ok(match answer.end_of(1) {
        Some((_, Some(ProtocolStatus::UnknownRole), 8)) => {
            Finding::not_supported(format!("refused with END_REQUEST UNKNOWN_ROLE: {sequence}"))
        }
        Some((_, Some(ProtocolStatus::RequestComplete), 8)) => match served(&answer, 1) {
            Ok(text) => Finding::pass(text),
            Err(text) => Finding::fail(text),
        },
        _ => Finding::fail(format!(
            "neither served nor UNKNOWN_ROLE: {sequence} ({})",
            answer.stopped.as_deref().unwrap_or("")
        )),
    })
}

fn role_authorizer(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    role_case(ctx, deadline, Role::Authorizer)
}

fn role_filter(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    role_case(ctx, deadline, Role::Filter)
}

fn role_unknown(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let params = params_stream(&ctx.params(&[]))?;
    let mut out = Vec::new();
    encode_raw_record(&mut out, VERSION_1, 1, 1, &[0, 9, 0, 0, 0, 0, 0, 0], 0)
        .map_err(|e| e.to_string())?;
    stream(&mut out, RecordType::Params, 1, &params, 0xFFF8);
    let _ = encode_record(&mut out, RecordType::Stdin, 1, b"");
    let mut wire = ctx.connect(deadline)?;
    let _ = wire.send(&out);
    let answer = collect(&mut wire, &[1]);
    let sequence = answer.sequence();
    Ok(match answer.end_of(1) {
        Some((_, Some(ProtocolStatus::UnknownRole), 8)) => {
            Finding::pass(format!("END_REQUEST UNKNOWN_ROLE: {sequence}"))
        }
        Some((_, Some(ProtocolStatus::RequestComplete), _)) => Finding::tolerated(format!(
            "served a role the spec does not define: {sequence}"
        )),
        _ => Finding::fail(format!(
            "no END_REQUEST UNKNOWN_ROLE: {sequence} ({})",
            answer.stopped.as_deref().unwrap_or("")
        )),
    })
}

fn version_2(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    // The ordinary request with every header's version byte set to 2.
    let mut bytes = request(ctx, 1, false, &[]);
    let mut at = 0;
    while let Some(header) = bytes.get_mut(at..at + 8) {
        header[0] = 2;
        let len = usize::from(u16::from_be_bytes([header[4], header[5]])) + usize::from(header[6]);
        at += 8 + len;
    }
    let mut wire = ctx.connect(deadline)?;
    let _ = wire.send(&bytes);
    let quiet = Instant::now() + quiet_period(ctx);
    let mut seen = Vec::new();
    loop {
        match wire.next_until(quiet, decode_one) {
            Ok(rec) => {
                let done = rec.kind == RecordType::EndRequest;
                seen.push(rec);
                if done {
                    break;
                }
            }
            Err(WireError::TimedOut) => {
                return Ok(Finding::pass(format!(
                    "{}, connection left open: the records were ignored",
                    describe(&seen)
                )))
            }
            Err(e) if e.is_closed() => {
                return Ok(Finding::pass(format!(
                    "{}, then closed the connection",
                    describe(&seen)
                )))
            }
            Err(WireError::Malformed(why)) => {
                return Ok(Finding::fail(format!(
                    "answered with bytes that are not FastCGI 1: {why}"
                )))
            }
            Err(e) => return Ok(Finding::fail(e.to_string())),
        }
    }
    let what = describe(&seen);
    Ok(if seen.iter().any(|r| r.kind == RecordType::Stdout) {
        Finding::tolerated(format!("served version-2 records as version 1: {what}"))
    } else {
        Finding::pass(what)
    })
}

fn unknown_flag_bits(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut bytes = request(ctx, 1, false, &[]);
    // BEGIN_REQUEST is the first record: flags are content byte 2 (header 8 + 2).
    let flags = 0xFE & !FLAG_KEEP_CONN;
    if let Some(byte) = bytes.get_mut(10) {
        *byte = flags;
    }
    let mut wire = ctx.connect(deadline)?;
    wire.send(&bytes)?;
    let answer = collect(&mut wire, &[1]);
    if let Err(text) = served(&answer, 1) {
        return Ok(Finding::fail(format!("flags 0x{flags:02x}: {text}")));
    }
    Ok(if wire.closes_by(deadline)? {
        Finding::pass(format!(
            "flags 0x{flags:02x} (KEEP_CONN clear): served, then closed"
        ))
    } else {
        Finding::fail(format!(
            "flags 0x{flags:02x}: served, but the connection stayed open as if KEEP_CONN were set"
        ))
    })
}

fn output_order(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    wire.send(&request(ctx, 1, false, &[]))?;
    let answer = collect(&mut wire, &[1]);
    if let Err(text) = served(&answer, 1) {
        return Ok(Finding::fail(text));
    }
    let sequence = answer.sequence();
    // After END_REQUEST nothing of this request may follow, and no stream record may
    // follow its own empty (closing) record.
    let mut closed_streams = Vec::new();
    for rec in &answer.records {
        if closed_streams.contains(&rec.kind) {
            return Ok(Finding::fail(format!(
                "{} data after its stream was closed by an empty record: {sequence}",
                rec.kind
            )));
        }
        if matches!(rec.kind, RecordType::Stdout | RecordType::Stderr) && rec.content.is_empty() {
            closed_streams.push(rec.kind);
        }
    }
    let kinds: Vec<RecordType> = answer
        .records
        .iter()
        .filter(|r| !r.content.is_empty())
        .map(|r| r.kind)
        .collect();
    let first_stdout = kinds.iter().position(|k| *k == RecordType::Stdout);
    let last_stdout = kinds.iter().rposition(|k| *k == RecordType::Stdout);
    let stderr_at: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == RecordType::Stderr)
        .map(|(i, _)| i)
        .collect();
    let before = stderr_at
        .iter()
        .any(|&i| first_stdout.is_some_and(|f| i < f));
    let between = stderr_at
        .iter()
        .any(|&i| first_stdout.is_some_and(|f| i > f) && last_stdout.is_some_and(|l| i < l));
    let stderr = answer.stream_of(1, RecordType::Stderr);
    Ok(Finding::pass(if stderr.is_empty() {
        format!("{sequence} (no STDERR)")
    } else {
        format!(
            "{sequence}; STDERR {}{}: {}",
            if before {
                "before STDOUT"
            } else {
                "not before STDOUT"
            },
            if between {
                ", and between STDOUT records"
            } else {
                ""
            },
            show(&stderr, 60)
        )
    }))
}

fn stdout_closed(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    wire.send(&request(ctx, 1, false, &[]))?;
    let answer = collect(&mut wire, &[1]);
    if let Err(text) = served(&answer, 1) {
        return Ok(Finding::fail(text));
    }
    let end_at = answer
        .records
        .iter()
        .position(|r| r.kind == RecordType::EndRequest)
        .unwrap_or(answer.records.len());
    let closed = answer
        .records
        .iter()
        .take(end_at)
        .any(|r| r.kind == RecordType::Stdout && r.content.is_empty());
    let sequence = answer.sequence();
    Ok(if closed {
        Finding::pass(format!(
            "empty STDOUT record before END_REQUEST: {sequence}"
        ))
    } else {
        Finding::fail(format!(
            "END_REQUEST without the empty STDOUT record that ends the stream: {sequence}"
        ))
    })
}

fn end_request_status(ctx: &mut Ctx, deadline: Instant) -> CaseResult {
    let mut wire = ctx.connect(deadline)?;
    wire.send(&request(ctx, 1, false, &[]))?;
    let answer = collect(&mut wire, &[1]);
    let Some((app, protocol, len)) = answer.end_of(1) else {
        return Ok(Finding::fail(format!(
            "no END_REQUEST: {} ({})",
            answer.sequence(),
            answer.stopped.as_deref().unwrap_or("")
        )));
    };
    let stdout = answer.stream_of(1, RecordType::Stdout);
    Ok(match (len, protocol) {
        (8, Some(ProtocolStatus::RequestComplete)) => Finding::pass(format!(
            "END_REQUEST appStatus {app}, protocolStatus REQUEST_COMPLETE (CGI status {})",
            cgi_status(&stdout)
        )),
        (8, Some(other)) => Finding::fail(format!("protocolStatus {other:?} for a plain request")),
        (8, None) => Finding::fail("protocolStatus is not one §5.5 defines"),
        (n, _) => Finding::fail(format!(
            "END_REQUEST with {n} bytes of content (8 expected)"
        )),
    })
}

/// The catalogue, in the order the report lists it.
pub fn cases() -> Vec<Case<Ctx>> {
    vec![
        Case { name: "get_values_max_conns", spec: "§4.1: GET_VALUES FCGI_MAX_CONNS is answered in GET_VALUES_RESULT with a decimal count (a name the application does not supply is omitted)", run: max_conns },
        Case { name: "get_values_max_reqs", spec: "§4.1: GET_VALUES FCGI_MAX_REQS is answered with a decimal count", run: max_reqs },
        Case { name: "get_values_mpxs_conns", spec: "§4.1: GET_VALUES FCGI_MPXS_CONNS is answered \"0\" or \"1\"", run: mpxs_conns },
        Case { name: "get_values_unknown_name", spec: "§4.1: a GET_VALUES name the application does not know is omitted from the result", run: unknown_name },
        Case { name: "unknown_management_type", spec: "§4.2: a management record (id 0) of a type the application does not know is answered UNKNOWN_TYPE naming the type", run: unknown_type },
        Case { name: "request_id_258", spec: "§3.3: any request id 1–65535 may be used; records of the answer carry the request's id (here 0x0102)", run: request_id_258 },
        Case { name: "request_id_65535", spec: "§3.3: request id 65535 is a valid id; the answer carries it", run: request_id_65535 },
        Case { name: "begin_request_id_0", spec: "§3.3: id 0 is reserved for management records, so BEGIN_REQUEST with id 0 starts no request (UNKNOWN_TYPE, ignored or closed); serving it is tolerated", run: request_id_zero },
        Case { name: "keep_conn_serial_requests", spec: "§5.1: with FCGI_KEEP_CONN the application keeps the connection after END_REQUEST: three requests one after another on one connection", run: keep_conn_serial },
        Case { name: "keep_conn_absent_closes", spec: "§3.5, §5.1: without FCGI_KEEP_CONN the application closes the connection after END_REQUEST", run: keep_conn_absent },
        Case { name: "mpx_concurrent_requests", spec: "§3.3, §4.1: an application answering FCGI_MPXS_CONNS=1 serves two requests whose records interleave on one connection", run: mpx_concurrent },
        Case { name: "mpx_refused_cant_mpx_conn", spec: "§5.5: an application that does not multiplex rejects a second concurrent request with END_REQUEST CANT_MPX_CONN (or serves the two in turn) and still serves the first", run: mpx_refused },
        Case { name: "params_empty", spec: "§5.2: a PARAMS stream of no pairs (only the closing empty record) is a complete stream", run: params_empty },
        Case { name: "params_long_lengths", spec: "§3.4: names and values over 127 bytes carry 4-byte lengths with the top bit set", run: params_long_lengths },
        Case { name: "params_value_over_64k", spec: "§3.4, §5.2: a value of 70,000 bytes (its pair spans PARAMS records: a stream is a byte sequence)", run: params_value_over_64k },
        Case { name: "params_name_over_64k", spec: "§3.4, §5.2: a name of 70,000 bytes (its pair spans PARAMS records)", run: params_name_over_64k },
        Case { name: "params_split_short_header", spec: "§3.3, §5.2: a stream's record boundaries carry no meaning: a pair with 1-byte lengths split into two PARAMS records inside and after its header", run: params_split_short_header },
        Case { name: "params_split_long_header", spec: "§3.3, §5.2: a pair with 4-byte lengths split into two PARAMS records after each byte of its 8-byte header", run: params_split_long_header },
        Case { name: "params_one_byte_records", spec: "§3.3, §5.2: the whole PARAMS stream in records of 1 byte each", run: params_one_byte_records },
        Case { name: "stdin_empty", spec: "§5.3: a POST whose STDIN stream is only the closing empty record", run: stdin_empty },
        Case { name: "stdin_one_byte_records", spec: "§5.3: a 100-byte body in STDIN records of 1 byte each", run: stdin_one_byte_records },
        Case { name: "padding_0_to_255", spec: "§3.3: paddingLength may be anything 0–255 (8-byte alignment is only recommended): 256 PARAMS records padded 0…255", run: padding },
        Case { name: "abort_before_input_complete", spec: "§5.4: ABORT_REQUEST before the input is complete is answered with END_REQUEST", run: abort_before_input_complete },
        Case { name: "abort_after_input", spec: "§5.4: ABORT_REQUEST while the request runs ends it with one END_REQUEST (whether or not it was aborted)", run: abort_after_input },
        Case { name: "role_authorizer", spec: "§6.3, §5.5: an AUTHORIZER request is served or refused with END_REQUEST UNKNOWN_ROLE (not supported)", run: role_authorizer },
        Case { name: "role_filter", spec: "§6.4, §5.5: a FILTER request (with its DATA stream) is served or refused with END_REQUEST UNKNOWN_ROLE (not supported)", run: role_filter },
        Case { name: "role_undefined", spec: "§5.1, §5.5: a role the spec does not define (9) is refused with END_REQUEST UNKNOWN_ROLE", run: role_unknown },
        Case { name: "version_2_records", spec: "§3.3: FCGI_VERSION_1 is the only version; records of version 2 are not a request (ignored, closed or refused); serving them is tolerated", run: version_2 },
        Case { name: "begin_flags_unknown_bits", spec: "§5.1: only bit 0 (KEEP_CONN) of BEGIN_REQUEST's flags is defined; the others are ignored (the request is served and, KEEP_CONN clear, the connection closed)", run: unknown_flag_bits },
        Case { name: "output_streams_order", spec: "§5.3, §6.2: STDOUT and STDERR records (STDERR may come before or between STDOUT records) precede END_REQUEST; nothing follows a stream's empty record", run: output_order },
        Case { name: "stdout_stream_closed", spec: "§3.3, §5.3, Appendix B: the STDOUT stream ends with an empty STDOUT record before END_REQUEST", run: stdout_closed },
        Case { name: "end_request_status", spec: "§5.5: END_REQUEST carries 8 bytes: appStatus (u32) and protocolStatus REQUEST_COMPLETE for a served request", run: end_request_status },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_status_defaults_to_200() {
        assert_eq!(
            cgi_status(b"Status: 404 Not Found\r\n\r\nx"),
            "404 Not Found"
        );
        assert_eq!(cgi_status(b"Content-Type: text/plain\n\nx"), "200");
    }

    #[test]
    fn a_served_answer_needs_its_own_id_output_and_end() {
        let rec = |kind, id, content: &[u8]| Rec {
            kind,
            id,
            content: content.to_vec(),
        };
        let end = [0, 0, 0, 0, 0, 0, 0, 0];
        let good = Answer {
            records: vec![
                rec(RecordType::Stdout, 7, b"Status: 200\r\n\r\n"),
                rec(RecordType::EndRequest, 7, &end),
            ],
            ..Answer::default()
        };
        assert!(served(&good, 7).is_ok());
        assert!(served(&good, 8).is_err(), "wrong id");
        let no_end = Answer {
            records: vec![rec(RecordType::Stdout, 7, b"x")],
            ..Answer::default()
        };
        assert!(served(&no_end, 7).is_err());
        let refused = Answer {
            records: vec![rec(RecordType::EndRequest, 7, &[0, 0, 0, 0, 3, 0, 0, 0])],
            ..Answer::default()
        };
        assert!(served(&refused, 7).is_err());
        assert_eq!(good.sequence(), "STDOUT(7) END_REQUEST(7)");
    }
}
