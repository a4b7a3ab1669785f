//! `ferry responder`: a built-in FastCGI application for tests, demos and benchmarks
//! (`docs/OPERATIONS.md` "Other commands"; `ferry responder --help`).
//!
//! One mio loop, many connections, one request at a time per connection (it answers
//! `FCGI_MPXS_CONNS=0`, like php-fpm). Every request is answered `--delay-ms` after its
//! input is complete — a timer per request, never a sleep — with `Status: <CODE>`, a short
//! body and END_REQUEST; the connection is closed after the answer unless the request
//! asked for KEEP_CONN. Records are decoded strictly by [`RequestDecoder`]: a request that
//! breaks the spec is reported on stderr with what was wrong, and its connection closed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry::config::Address;
use ferry::engine::timers::Timers;
use ferry::proto::fastcgi::record::FLAG_KEEP_CONN;
use ferry::proto::fastcgi::{
    decode_record, encode_end_request, encode_get_values_result, encode_stdout,
    encode_unknown_type, FcgiError, ProtocolStatus, RecordType, RequestDecoder, RequestEvent, Role,
};
use ferry::proto::Status;
use ferry::reactor::conn::{Conn, Fill, Stream};
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::args::{Kind, Parsed};

/// Flags of `ferry responder`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("listen", Kind::Single),
    ("log", Kind::Single),
    ("status", Kind::Single),
    ("delay-ms", Kind::Single),
    ("help", Kind::Switch),
];

/// `ferry responder --help`.
pub const HELP: &str = "\
Usage: ferry responder [--listen ADDR] [--log FILE] [--status CODE] [--delay-ms N]

A built-in FastCGI worker for tests, demos and benchmarks: answers every request with
'Status: CODE' and a short body after N milliseconds. Strict: a request that breaks the
FastCGI spec is reported on stderr and its connection closed. Plays the RESPONDER role
only: AUTHORIZER and FILTER requests get END_REQUEST with UNKNOWN_ROLE. Runs until
SIGTERM/SIGINT.

Options:
  --listen ADDR    unix:/path or host:port; without it, the listening socket inherited
                   on fd 0 (FCGI_LISTENSOCK_FILENO, as a process manager spawns php-cgi);
                   then, like php-cgi, it exits 0 after PHP_FCGI_MAX_REQUESTS requests
                   when that is set and above 0 (a spawned pool's max_requests)
  --log FILE       append one JSON line per request:
                   {\"params\": {...}, \"body\": \"...\", \"received_at_us\": N}
  --status CODE    the answer's status (default 200)
  --delay-ms N     answer each request N ms after its input is complete (default 0)
";

/// Connections at most (also the `FCGI_MAX_CONNS` / `FCGI_MAX_REQS` answer).
const MAX_CONNS: usize = 65_536;
const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
/// Unconsumed input per connection at most (a whole record always fits).
const READ_CAP: usize = 128 * 1024;
/// Largest PARAMS stream of one request: names and values over 64 KiB are legal
/// (`ferry conform fastcgi`'s `params_*_over_64k`); the buffer grows only as needed.
const PARAMS_CAP: usize = 1024 * 1024;
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Recycling (`PHP_FCGI_MAX_REQUESTS` reached): how long a connection accepted but still
/// silent gets to send its request before it is closed (a client sends its request as
/// soon as it connects; one that does not — a process manager's probe — is not waiting
/// for an answer).
const RECYCLE_GRACE: Duration = Duration::from_secs(1);

/// The options.
#[derive(Debug)]
pub struct Options {
    listen: Option<Address>,
    log: Option<String>,
    status: u16,
    delay: Duration,
}

/// Reads the options from the parsed flags.
pub fn options(parsed: &Parsed) -> Result<Options, String> {
    if let Some(extra) = parsed.positional.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let listen = parsed
        .get("listen")
        .map(|text| Address::parse(text).map_err(|why| format!("--listen: {why}")))
        .transpose()?;
    let status = parsed
        .number::<u16>("status")
        .map_err(|e| e.0)?
        .unwrap_or(200);
    if !(100..=999).contains(&status) {
        return Err(format!("--status: {status} is not a three-digit status"));
    }
    let delay_ms = parsed
        .number::<u64>("delay-ms")
        .map_err(|e| e.0)?
        .unwrap_or(0);
    Ok(Options {
        listen,
        log: parsed.get("log").map(str::to_string),
        status,
        delay: Duration::from_millis(delay_ms),
    })
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Unix(path) => {
                // A stale socket file from an earlier run would make bind fail.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        std::fs::remove_file(path)?;
                    }
                }
                Ok(Listener::Unix(UnixListener::bind(path)?))
            }
            Address::Tcp { host, port } => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other(format!("{host}: no address")))?;
                Ok(Listener::Tcp(TcpListener::bind(addr)?))
            }
        }
    }

    /// The listening socket inherited on fd 0 (`FCGI_LISTENSOCK_FILENO`).
    fn inherited() -> io::Result<Listener> {
        use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
        use std::os::fd::FromRawFd;
        let name = getsockname::<SockaddrStorage>(0).map_err(|e| {
            io::Error::other(format!(
                "fd 0 is not a listening socket ({e}); pass --listen ADDR"
            ))
        })?;
        match name.family() {
            Some(AddressFamily::Unix) => {
                // SAFETY: fd 0 is a socket (getsockname succeeded) of the unix family;
                // nothing else in this process uses or closes fd 0 once it is wrapped here,
                // so the listener owns it.
                #[allow(unsafe_code)]
                let std = unsafe { std::os::unix::net::UnixListener::from_raw_fd(0) };
                std.set_nonblocking(true)?;
                Ok(Listener::Unix(UnixListener::from_std(std)))
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                // SAFETY: as above, for an inet socket.
                #[allow(unsafe_code)]
                let std = unsafe { std::net::TcpListener::from_raw_fd(0) };
                std.set_nonblocking(true)?;
                Ok(Listener::Tcp(TcpListener::from_std(std)))
            }
            other => Err(io::Error::other(format!(
                "fd 0 is a socket of family {other:?}, not unix or inet"
            ))),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp".into(), |a| a.to_string()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix socket".into()),
        }
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Listener::Tcp(l) => l,
            Listener::Unix(l) => l,
        }
    }
}

/// The request being read or waiting for its answer.
struct Request {
    id: u16,
    /// Only RESPONDER is played: AUTHORIZER and FILTER requests are read to their end
    /// and answered END_REQUEST `UNKNOWN_ROLE` (spec §5.5), never logged or delayed.
    role: Role,
    keep_conn: bool,
    params: serde_json::Map<String, serde_json::Value>,
    body: Vec<u8>,
    received_at_us: u128,
    /// Input complete; the answer is due when the timer fires.
    waiting: bool,
}

struct Client {
    conn: Conn,
    decoder: RequestDecoder,
    request: Option<Request>,
    /// Distinguishes this connection's timers from a previous one in the same slot.
    generation: u64,
    /// Close once the write buffer is flushed.
    closing: bool,
    /// The peer closed its side.
    eof: bool,
    /// Requests answered on this connection.
    served: u32,
    /// Requests refused with END_REQUEST (CANT_MPX_CONN, UNKNOWN_ROLE): inactive, so
    /// their remaining records are ignored until a new BEGIN_REQUEST (spec §3.3).
    refused: Vec<u16>,
}

struct Responder {
    poll: Poll,
    listener: Listener,
    clients: Slab<Client>,
    timers: Timers<(usize, u64)>,
    generation: u64,
    log: Option<File>,
    status: u16,
    delay: Duration,
    accepting: bool,
    /// Exit after this many answers (`PHP_FCGI_MAX_REQUESTS` when spawned).
    max_requests: Option<u64>,
    answered: u64,
    /// `max_requests` reached: accept nothing more, finish, exit.
    recycling: bool,
    /// Recycling: when connections accepted but still silent are given up.
    recycle_deadline: Option<Instant>,
}

/// Runs the responder until SIGTERM/SIGINT; the exit code.
pub fn run(options: Options) -> u8 {
    let listener = match &options.listen {
        Some(address) => Listener::bind(address)
            .map_err(|e| format!("cannot listen on {address}: {e}"))
            .map(|l| (l, options.listen.clone())),
        None => Listener::inherited()
            .map_err(|e| e.to_string())
            .map(|l| (l, None)),
    };
    let (listener, bound) = match listener {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("ferry responder: {e}");
            return 2;
        }
    };
    let log = match options.log.as_deref().map(|path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--log {path}: {e}"))
    }) {
        Some(Err(e)) => {
            eprintln!("ferry responder: {e}");
            return 2;
        }
        Some(Ok(file)) => Some(file),
        None => None,
    };
    // Spawned by a process manager: recycle like php-cgi does.
    let max_requests = match bound {
        Some(_) => None,
        None => std::env::var("PHP_FCGI_MAX_REQUESTS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0),
    };
    let result =
        Responder::new(listener, log, &options, max_requests).and_then(|mut r| r.event_loop());
    if let Some(Address::Unix(path)) = bound {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferry responder: {e}");
            1
        }
    }
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

impl Responder {
    fn new(
        mut listener: Listener,
        log: Option<File>,
        options: &Options,
        max_requests: Option<u64>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(listener.source(), LISTENER, Interest::READABLE)?;
        Ok(Responder {
            poll,
            listener,
            clients: Slab::new(),
            timers: Timers::default(),
            generation: 0,
            log,
            status: options.status,
            delay: options.delay,
            accepting: true,
            max_requests,
            answered: 0,
            recycling: false,
            recycle_deadline: None,
        })
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([nix::libc::SIGTERM, nix::libc::SIGINT])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        eprintln!(
            "ferry responder: listening on {} (status {}, delay {} ms)",
            self.listener.describe(),
            self.status,
            self.delay.as_millis()
        );
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .timers
                .next_deadline()
                .into_iter()
                .chain(self.recycle_deadline)
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if signals.pending().next().is_some() {
                            eprintln!("ferry responder: signal received, exiting");
                            return Ok(());
                        }
                    }
                    Token(idx) => {
                        if event.is_writable() {
                            self.on_writable(idx);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(idx);
                        }
                    }
                }
            }
            let now = Instant::now();
            while let Some((idx, generation)) = self.timers.pop_expired(now) {
                if self.clients.get(idx).map(|c| c.generation) == Some(generation) {
                    self.answer(idx);
                }
            }
            if self.recycling {
                // Exit once every connection is done. A connection accepted but not read
                // from yet holds a request on its way (the process manager connected to
                // have it served): closing it would fail that request, so it is served
                // too. Only connections that already had their answers (kept ones), that
                // the peer closed, or that stayed silent past the grace are closed.
                let silent_too = self.recycle_deadline.is_some_and(|at| now >= at);
                let idle: Vec<usize> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| {
                        c.request.is_none()
                            && !c.conn.wants_write()
                            && (c.served > 0 || c.eof || silent_too)
                    })
                    .map(|(idx, _)| idx)
                    .collect();
                for idx in idle {
                    self.close(idx);
                }
                if self.clients.is_empty() {
                    eprintln!(
                        "ferry responder: {} requests answered (PHP_FCGI_MAX_REQUESTS), exiting",
                        self.answered
                    );
                    return Ok(());
                }
                continue;
            }
            if !self.accepting && self.clients.len() < MAX_CONNS {
                self.accepting = true;
                self.accept_all();
            }
        }
    }

    fn accept_all(&mut self) {
        while self.clients.len() < MAX_CONNS && !self.recycling {
            let mut stream = match self.listener.accept() {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the pending connections wait in the backlog.
                    eprintln!("ferry responder: accept: {e}");
                    self.accepting = false;
                    return;
                }
            };
            let entry = self.clients.vacant_entry();
            let idx = entry.key();
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut stream, Token(idx), Interest::READABLE)
            {
                eprintln!("ferry responder: register: {e}");
                continue;
            }
            self.generation += 1;
            let mut conn = Conn::new(stream, READ_CAP, WRITE_HIGH_WATER);
            conn.registered = Some(Interest::READABLE);
            entry.insert(Client {
                conn,
                decoder: RequestDecoder::new(PARAMS_CAP),
                request: None,
                generation: self.generation,
                closing: false,
                eof: false,
                served: 0,
                refused: Vec::new(),
            });
            // Edge-triggered: bytes may already be there.
            self.on_readable(idx);
        }
        self.accepting = false;
    }

    fn on_writable(&mut self, idx: usize) {
        let Some(client) = self.clients.get_mut(idx) else {
            return;
        };
        if let Err(e) = client.conn.flush() {
            eprintln!("ferry responder: connection {idx}: write: {e}");
            self.close(idx);
            return;
        }
        self.after_write(idx);
    }

    /// Re-registers for what the connection needs, or closes it when done.
    fn after_write(&mut self, idx: usize) {
        let Some(client) = self.clients.get_mut(idx) else {
            return;
        };
        if client.closing && !client.conn.wants_write() {
            self.close(idx);
            return;
        }
        let interest = client.conn.interest();
        if client.conn.registered != Some(interest) {
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut client.conn.stream, Token(idx), interest)
            {
                eprintln!("ferry responder: connection {idx}: reregister: {e}");
                self.close(idx);
                return;
            }
            client.conn.registered = Some(interest);
        }
    }

    fn on_readable(&mut self, idx: usize) {
        loop {
            let Some(client) = self.clients.get_mut(idx) else {
                return;
            };
            if client.closing {
                return;
            }
            let fill = if client.eof {
                Fill::Eof
            } else {
                match client.conn.fill() {
                    Ok(fill) => fill,
                    Err(e) => {
                        eprintln!("ferry responder: connection {idx}: read: {e}");
                        self.close(idx);
                        return;
                    }
                }
            };
            if let Err(e) = self.process(idx) {
                eprintln!("ferry responder: connection {idx}: {e}; closing the connection");
                self.close(idx);
                return;
            }
            let Some(client) = self.clients.get_mut(idx) else {
                return;
            };
            match fill {
                Fill::Drained => return,
                Fill::Full => {
                    // Waiting for an answer with a full buffer: read on after answering.
                    if client.request.as_ref().is_some_and(|r| r.waiting) {
                        return;
                    }
                }
                Fill::Eof => {
                    client.eof = true;
                    if client.request.is_none() {
                        if client.conn.unconsumed() > 0 {
                            eprintln!(
                                "ferry responder: connection {idx}: the peer closed the \
                                 connection in the middle of a record ({} bytes left)",
                                client.conn.unconsumed()
                            );
                        }
                        client.closing = true;
                        self.after_write(idx);
                    } else if !client.request.as_ref().is_some_and(|r| r.waiting) {
                        eprintln!(
                            "ferry responder: connection {idx}: the peer closed the connection \
                             before the request's input was complete"
                        );
                        self.close(idx);
                    }
                    return;
                }
            }
        }
    }

    /// Decodes the records buffered on connection `idx`, until one is partial or a
    /// request's input is complete (its answer comes first).
    fn process(&mut self, idx: usize) -> Result<(), String> {
        let delay = self.delay;
        let Some(client) = self.clients.get_mut(idx) else {
            return Ok(());
        };
        let mut out = Vec::new();
        let mut answer_now = false;
        loop {
            if client.request.as_ref().is_some_and(|r| r.waiting) {
                break;
            }
            let Client {
                conn,
                decoder,
                request,
                refused,
                ..
            } = &mut *client;
            if skip_refused(conn.input(), refused)
                .map(|used| conn.consume(used))
                .is_some()
            {
                continue;
            }
            let (event, used) = match decoder.decode(conn.input()) {
                Ok(Status::Complete(event, used)) => (event, used),
                Ok(Status::Partial) => break,
                Err(e) => {
                    // A request refused with END_REQUEST; other errors close the connection.
                    let (used, keep_conn) = refuse(e, conn.input(), &mut out, refused)?;
                    conn.consume(used);
                    if !keep_conn && decoder.active_request().is_none() {
                        client.closing = true;
                        break;
                    }
                    continue;
                }
            };
            match event {
                RequestEvent::Begin {
                    request_id,
                    role,
                    keep_conn,
                } => {
                    *request = Some(Request {
                        id: request_id,
                        role,
                        keep_conn,
                        params: serde_json::Map::new(),
                        body: Vec::new(),
                        received_at_us: now_us(),
                        waiting: false,
                    });
                }
                RequestEvent::ParamsChunk(_) | RequestEvent::Data(_) => {}
                RequestEvent::DataEnd => {
                    // FILTER's input ends with its DATA stream.
                    if let Some(request) = request.as_mut() {
                        request.waiting = true;
                    }
                }
                RequestEvent::Params(params) => {
                    if let Some(request) = request.as_mut() {
                        for (name, value) in params.iter() {
                            request.params.insert(
                                String::from_utf8_lossy(name).into_owned(),
                                String::from_utf8_lossy(value).into_owned().into(),
                            );
                        }
                    }
                }
                RequestEvent::Stdin(bytes) => {
                    if let Some(request) = request.as_mut() {
                        request.body.extend_from_slice(bytes);
                    }
                }
                RequestEvent::StdinEnd => {
                    if let Some(request) = request.as_mut() {
                        request.waiting = request.role != Role::Filter;
                    }
                }
                RequestEvent::Abort { request_id } => {
                    *request = None;
                    encode_end_request(&mut out, request_id, 0, ProtocolStatus::RequestComplete);
                }
                RequestEvent::GetValues(names) => {
                    let max = MAX_CONNS.to_string();
                    let answers: Vec<(&[u8], &[u8])> = names
                        .iter()
                        .filter_map(|(name, _)| match name {
                            b"FCGI_MAX_CONNS" | b"FCGI_MAX_REQS" => Some((name, max.as_bytes())),
                            b"FCGI_MPXS_CONNS" => Some((name, &b"0"[..])),
                            _ => None,
                        })
                        .collect();
                    encode_get_values_result(&mut out, answers).map_err(|e| e.to_string())?;
                }
                RequestEvent::UnknownType(byte) => encode_unknown_type(&mut out, byte),
            }
            conn.consume(used);
            if client
                .request
                .as_ref()
                .is_some_and(|r| r.waiting && r.role != Role::Responder)
            {
                answer_now = true;
                break;
            }
            if client.request.as_ref().is_some_and(|r| r.waiting) {
                if let Some(line) = client.request.as_ref().map(log_line) {
                    if let Some(log) = self.log.as_mut() {
                        if let Err(e) = log.write_all(line.as_bytes()) {
                            eprintln!("ferry responder: --log: {e}");
                        }
                    }
                }
                if delay.is_zero() {
                    answer_now = true;
                } else {
                    self.timers
                        .arm((idx, client.generation), Instant::now() + delay);
                }
                break;
            }
        }
        if !out.is_empty() {
            client.conn.write_buf().extend_from_slice(&out);
            client.conn.flush().map_err(|e| format!("write: {e}"))?;
            self.after_write(idx);
        }
        if answer_now {
            self.answer(idx);
        }
        Ok(())
    }

    /// Writes the answer to the waiting request on connection `idx`.
    fn answer(&mut self, idx: usize) {
        let status = self.status;
        let Some(client) = self.clients.get_mut(idx) else {
            return;
        };
        let Some(request) = client.request.take() else {
            return;
        };
        let out = client.conn.write_buf();
        if request.role == Role::Responder {
            let head = format!(
                "Status: {status}\r\nContent-Type: text/plain\r\n\r\nferry responder: {status}\n"
            );
            encode_stdout(out, request.id, head.as_bytes());
            encode_stdout(out, request.id, b"");
            encode_end_request(out, request.id, 0, ProtocolStatus::RequestComplete);
        } else {
            eprintln!(
                "ferry responder: connection {idx}: request {} asks for the {:?} role; only RESPONDER is played (END_REQUEST UNKNOWN_ROLE)",
                request.id, request.role
            );
            encode_end_request(out, request.id, 0, ProtocolStatus::UnknownRole);
        }
        client.decoder.finish_request();
        client.served += 1;
        self.answered += 1;
        if self.max_requests.is_some_and(|max| self.answered >= max) && !self.recycling {
            // Leave the rest of the listen backlog to the other workers; serve what was
            // accepted already (see the event loop).
            self.recycling = true;
            self.recycle_deadline = Some(Instant::now() + RECYCLE_GRACE);
            let _ = self.poll.registry().deregister(self.listener.source());
        }
        // Recycling (like php-cgi at PHP_FCGI_MAX_REQUESTS): a kept connection is
        // closed after this answer, not served on and on.
        if !request.keep_conn || client.eof || self.recycling {
            client.closing = true;
        }
        if let Err(e) = client.conn.flush() {
            eprintln!("ferry responder: connection {idx}: write: {e}");
            self.close(idx);
            return;
        }
        self.after_write(idx);
        // Records the peer sent after this request (keep_conn) are waiting in the buffer.
        if self.clients.get(idx).is_some_and(|c| !c.closing) {
            self.on_readable(idx);
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut client) = self.clients.try_remove(idx) {
            self.timers.cancel((idx, client.generation));
            let _ = self.poll.registry().deregister(&mut client.conn.stream);
            client.conn.stream.shutdown();
        }
    }
}

/// The length of the record at the front of `input` when it belongs to a refused request
/// (to be dropped); a new BEGIN_REQUEST makes the id usable again.
fn skip_refused(input: &[u8], refused: &mut Vec<u16>) -> Option<usize> {
    let Ok(Status::Complete(record, used)) = decode_record(input) else {
        return None;
    };
    if !refused.contains(&record.request_id) {
        return None;
    }
    if record.record_type == RecordType::BeginRequest {
        refused.retain(|&id| id != record.request_id);
        return None;
    }
    Some(used)
}

/// Answers a BEGIN_REQUEST this responder cannot take with END_REQUEST (spec §5.5): a
/// second concurrent request gets CANT_MPX_CONN (`FCGI_MPXS_CONNS=0`), a role the spec
/// does not define UNKNOWN_ROLE. Returns the record's length and its KEEP_CONN flag;
/// any other error is the connection's end.
fn refuse(
    error: FcgiError,
    input: &[u8],
    out: &mut Vec<u8>,
    refused: &mut Vec<u16>,
) -> Result<(usize, bool), String> {
    let (request_id, status) = match error {
        FcgiError::CantMultiplex { request_id, .. } => (request_id, ProtocolStatus::CantMpxConn),
        FcgiError::UnknownRole { request_id, .. } => (request_id, ProtocolStatus::UnknownRole),
        other => return Err(other.to_string()),
    };
    let Ok(Status::Complete(record, used)) = decode_record(input) else {
        return Err(error.to_string());
    };
    let keep_conn = record
        .content
        .get(2)
        .is_some_and(|flags| flags & FLAG_KEEP_CONN != 0);
    eprintln!("ferry responder: request {request_id}: {error}; answered END_REQUEST {status:?}");
    encode_end_request(out, request_id, 0, status);
    refused.push(request_id);
    Ok((used, keep_conn))
}

fn log_line(request: &Request) -> String {
    let line = serde_json::json!({
        "params": request.params,
        "body": String::from_utf8_lossy(&request.body),
        "received_at_us": request.received_at_us as u64,
    });
    let mut text = line.to_string();
    text.push('\n');
    text
}
