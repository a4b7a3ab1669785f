//! A php-fpm model on ferry's own FastCGI responder codec: `children` processes, a listen
//! backlog that refuses new connects with EAGAIN once full, one request per connection
//! (kept with KEEP_CONN until the child recycles), answers drawn from the seed — 2xx,
//! 4xx, 5xx, `X-Ferry-Action`, a non-zero app status, a child that dies mid-request, a
//! request slower than ferry's timeout, php-fpm's own "Primary script unknown" 404 — and
//! outages during which connects are refused.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ferry::proto::fastcgi::{
    encode_end_request, encode_stderr, encode_stdout, ProtocolStatus, RequestDecoder, RequestEvent,
};
use ferry::proto::Status;

use crate::ledger::{Intent, Kind, Ledger};
use crate::net::{Conn, Mark};
use crate::rng::Rng;
use crate::trace::trace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok200,
    OkNoStatus,
    AckDespite500,
    Error500,
    RetryAfter503,
    TooMany429,
    Client400,
    ActionRetry,
    ActionDeadLetter,
    AppStatus,
    Crash,
    Slow,
    ScriptUnknown,
    StderrOk,
}

impl Answer {
    fn intent(self) -> Intent {
        match self {
            Answer::Ok200 | Answer::OkNoStatus | Answer::AckDespite500 | Answer::StderrOk => {
                Intent::Success
            }
            Answer::Client400 | Answer::ActionDeadLetter => Intent::Permanent,
            Answer::ScriptUnknown => Intent::PoolFailure,
            _ => Intent::Retryable,
        }
    }
}

/// What ferry wrote on a worker connection, decoded as it is written: the requests a
/// child has not read yet. When the connection ends before a child runs them, ferry
/// still counted them as attempts (a timeout, an EOF after the request was written).
#[derive(Default)]
pub struct WireTap {
    decoder: RequestDecoder,
    buf: Vec<u8>,
    params: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    /// Complete requests written and not yet read by a child: message, attempt, kind.
    pub unread: VecDeque<(String, u32, Kind)>,
}

impl WireTap {
    pub fn written(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.buf);
        let mut used = 0;
        while let Ok(Status::Complete(event, n)) = self.decoder.decode(&buf[used..]) {
            used += n;
            match event {
                RequestEvent::Begin { .. } => self.body.clear(),
                RequestEvent::Params(params) => {
                    self.params = params
                        .iter()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect()
                }
                RequestEvent::Stdin(chunk) => self.body.extend_from_slice(chunk),
                RequestEvent::StdinEnd => {
                    let (message, attempt, kind) = describe(&self.params, &self.body);
                    self.unread.push_back((message, attempt, kind));
                    self.decoder.finish_request();
                }
                _ => {}
            }
        }
        self.buf = buf[used..].to_vec();
    }
}

fn param(params: &[(Vec<u8>, Vec<u8>)], name: &[u8]) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The message, attempt and kind a request carries.
fn describe(params: &[(Vec<u8>, Vec<u8>)], body: &[u8]) -> (String, u32, Kind) {
    let message = String::from_utf8_lossy(body).into_owned();
    let kind = match param(params, b"FERRY_KIND").as_deref() {
        Some("amqp") => Kind::Amqp,
        _ => Kind::Redis,
    };
    let attempt = param(params, b"FERRY_ATTEMPT")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    (message, attempt, kind)
}

struct Job {
    ready_at: Instant,
    proc: usize,
    answer: Answer,
    request_id: u16,
}

struct FConn {
    decoder: RequestDecoder,
    /// A child serves it (else it waits in the listen backlog).
    child: bool,
    job: Option<Job>,
    keep: bool,
    request_id: u16,
    params: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    served: u32,
    /// ferry closed it while the child ran its request (the script runs on).
    orphan: bool,
    /// Bytes read and not yet decoded (a record split across reads).
    inbuf: Vec<u8>,
}

pub struct Fpm {
    pub children: usize,
    pub backlog: usize,
    pub down_until: Option<Instant>,
    /// How long a "slow" request takes.
    pub slow_ms: u64,
    /// Requests a child serves on a kept connection before recycling.
    pub max_requests: u32,
    /// Percent of answers drawn from the failure kinds (the rest succeed).
    pub failure_percent: u64,
    conns: BTreeMap<u64, FConn>,
    waiting: VecDeque<u64>,
    busy: usize,
}

impl Fpm {
    pub fn new(
        children: usize,
        backlog: usize,
        slow_ms: u64,
        max_requests: u32,
        failure_percent: u64,
    ) -> Fpm {
        Fpm {
            children,
            backlog,
            down_until: None,
            slow_ms,
            max_requests,
            failure_percent,
            conns: BTreeMap::new(),
            waiting: VecDeque::new(),
            busy: 0,
        }
    }

    pub fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|t| now < t)
    }

    /// Every child busy and the backlog full: a unix connect gets EAGAIN.
    pub fn backlog_full(&self) -> bool {
        self.busy >= self.children && self.waiting.len() >= self.backlog
    }

    pub fn accept(&mut self, id: u64) {
        self.conns.insert(
            id,
            FConn {
                decoder: RequestDecoder::default(),
                child: false,
                job: None,
                keep: false,
                request_id: 0,
                params: Vec::new(),
                body: Vec::new(),
                served: 0,
                orphan: false,
                inbuf: Vec::new(),
            },
        );
        self.waiting.push_back(id);
        self.assign();
    }

    fn assign(&mut self) {
        while self.busy < self.children {
            let Some(id) = self.waiting.pop_front() else {
                return;
            };
            if let Some(c) = self.conns.get_mut(&id) {
                c.child = true;
                self.busy += 1;
            }
        }
    }

    fn release(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            if c.child {
                self.busy -= 1;
            }
        }
        self.waiting.retain(|w| *w != id);
        self.assign();
    }

    /// A child is free to read `id`.
    pub fn can_read(&self, id: u64) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.child && c.job.is_none())
    }

    /// ferry closed the connection (or it was reset).
    pub fn conn_gone(&mut self, id: u64, ledger: &mut Ledger) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(job) = &c.job {
            ledger.answer_cut(job.proc);
            c.orphan = true; // the child runs the script to its end
            return;
        }
        self.release(id);
    }

    /// php-fpm stops: every child dies, every connection is reset.
    pub fn stop(&mut self, ledger: &mut Ledger) -> Vec<u64> {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for c in self.conns.values() {
            if let Some(job) = &c.job {
                ledger.answer_cut(job.proc);
            }
        }
        self.conns.clear();
        self.waiting.clear();
        self.busy = 0;
        ids
    }

    /// A child reads what ferry wrote.
    pub fn input(
        &mut self,
        id: u64,
        conn: &mut Conn,
        ledger: &mut Ledger,
        rng: &mut Rng,
        now: Instant,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            conn.to_peer.clear();
            return true;
        };
        c.inbuf.append(&mut conn.to_peer);
        let inbuf = std::mem::take(&mut c.inbuf);
        let mut used = 0;
        let mut complete = false;
        loop {
            match c.decoder.decode(&inbuf[used..]) {
                Ok(Status::Complete(event, n)) => {
                    used += n;
                    match event {
                        RequestEvent::Begin {
                            request_id,
                            keep_conn,
                            ..
                        } => {
                            c.request_id = request_id;
                            c.keep = keep_conn;
                            c.params.clear();
                            c.body.clear();
                        }
                        RequestEvent::Params(params) => {
                            c.params = params
                                .iter()
                                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                                .collect();
                        }
                        RequestEvent::Stdin(chunk) => c.body.extend_from_slice(chunk),
                        RequestEvent::StdinEnd => {
                            complete = true;
                            break;
                        }
                        _ => {}
                    }
                }
                Ok(Status::Partial) => break,
                Err(e) => {
                    ledger.violation(format!("php-fpm: ferry sent a malformed request: {e}"));
                    return false;
                }
            }
        }
        c.inbuf = inbuf[used..].to_vec();
        if !complete {
            return true;
        }
        conn.tap.unread.pop_front();
        let (message, attempt, kind) = describe(&c.params, &c.body);
        let message_id = param(&c.params, b"FERRY_MESSAGE_ID");
        if kind == Kind::Amqp && message_id.as_deref() != Some(message.as_str()) {
            ledger.violation(format!(
                "php-fpm: {message}: FERRY_MESSAGE_ID is {message_id:?}"
            ));
        }
        let answer = if rng.chance(self.failure_percent) {
            rng.weighted(&[
                (4, Answer::AckDespite500),
                (8, Answer::Error500),
                (3, Answer::RetryAfter503),
                (3, Answer::TooMany429),
                (5, Answer::Client400),
                (4, Answer::ActionRetry),
                (3, Answer::ActionDeadLetter),
                (3, Answer::AppStatus),
                (6, Answer::Crash),
                (4, Answer::Slow),
                (4, Answer::ScriptUnknown),
                (3, Answer::StderrOk),
            ])
        } else {
            rng.weighted(&[(9, Answer::Ok200), (1, Answer::OkNoStatus)])
        };
        let proc = ledger.on_request(&message, attempt, kind, answer.intent());
        let ms = match answer {
            Answer::Slow => self.slow_ms,
            _ => rng.range(1, 150),
        };
        trace!("php-fpm: conn {id} runs {message} attempt {attempt}: {answer:?} in {ms} ms");
        c.job = Some(Job {
            ready_at: now + Duration::from_millis(ms),
            proc,
            answer,
            request_id: c.request_id,
        });
        true
    }

    pub fn summary(&self) -> String {
        let conns: Vec<String> = self
            .conns
            .iter()
            .map(|(id, c)| {
                format!(
                    "{id}:{}{}{}",
                    if c.child { "child" } else { "waiting" },
                    if c.job.is_some() { "+job" } else { "" },
                    if c.orphan { "+orphan" } else { "" }
                )
            })
            .collect();
        format!(
            "php-fpm: {} busy of {}, {} waiting; {}",
            self.busy,
            self.children,
            self.waiting.len(),
            conns.join(" ")
        )
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| c.job.as_ref().map(|j| j.ready_at))
            .min()
    }

    /// Children whose request is done answer.
    pub fn on_time(&mut self, conns: &mut BTreeMap<u64, Conn>, ledger: &mut Ledger, now: Instant) {
        let due: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.job.as_ref().is_some_and(|j| j.ready_at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let c = self.conns.get_mut(&id).expect("due");
            let job = c.job.take().expect("due");
            let conn = conns
                .get_mut(&id)
                .filter(|conn| conn.ferry.is_some() && !conn.reset);
            let (Some(conn), false) = (conn, c.orphan) else {
                self.release(id);
                continue;
            };
            let mut out = Vec::new();
            let id16 = job.request_id;
            let head = |out: &mut Vec<u8>, head: &str| encode_stdout(out, id16, head.as_bytes());
            let mut app_status = 0;
            match job.answer {
                Answer::Ok200 => head(
                    &mut out,
                    "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok",
                ),
                Answer::OkNoStatus => head(&mut out, "Content-Type: text/html\r\n\r\n<p>done</p>"),
                Answer::AckDespite500 => {
                    head(&mut out, "Status: 500\r\nX-Ferry-Action: ack\r\n\r\n")
                }
                Answer::Error500 => head(&mut out, "Status: 500 Internal Server Error\r\n\r\nboom"),
                Answer::RetryAfter503 => {
                    head(&mut out, "Status: 503\r\nX-Ferry-Retry-After: 1\r\n\r\n")
                }
                Answer::TooMany429 => head(&mut out, "Status: 429\r\n\r\n"),
                Answer::Client400 => head(&mut out, "Status: 400 Bad Request\r\n\r\nno"),
                Answer::ActionRetry => {
                    head(&mut out, "Status: 200\r\nX-Ferry-Action: retry\r\n\r\n")
                }
                Answer::ActionDeadLetter => head(&mut out, "X-Ferry-Action: dead-letter\r\n\r\n"),
                Answer::AppStatus => {
                    head(&mut out, "Content-Type: text/plain\r\n\r\n");
                    app_status = 255;
                }
                Answer::Crash => head(&mut out, "Status: 200\r\nContent-Type: text/pl"),
                Answer::Slow => head(&mut out, "Status: 200\r\n\r\nslow"),
                Answer::ScriptUnknown => {
                    encode_stderr(&mut out, id16, b"Primary script unknown");
                    head(
                        &mut out,
                        "Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n",
                    );
                }
                Answer::StderrOk => {
                    encode_stderr(
                        &mut out,
                        id16,
                        b"PHP message: PHP Warning:  Undefined variable $x\n",
                    );
                    head(&mut out, "Status: 200\r\n\r\nok");
                }
            }
            if job.answer == Answer::Crash {
                // The child dies mid-answer: the rest never comes.
                conn.send(&out);
                ledger.answer_cut(job.proc);
                conn.fin = true;
                self.release(id);
                continue;
            }
            encode_end_request(&mut out, id16, app_status, ProtocolStatus::RequestComplete);
            conn.send(&out);
            conn.mark(Mark::Answer(job.proc));
            c.served += 1;
            let recycle = c.served >= self.max_requests;
            if c.keep && !recycle {
                c.decoder.finish_request();
            } else {
                // Without KEEP_CONN php shuts its side down after END_REQUEST; a recycled
                // child closes its kept connection.
                conn.fin = true;
                self.release(id);
            }
        }
    }
}
