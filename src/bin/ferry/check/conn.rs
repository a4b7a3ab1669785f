//! Blocking connections for `ferry check`: TCP or unix, every connect, read and write
//! bounded by a deadline. A CLI command that talks to one peer at a time has no use for
//! the reactor; what it needs is that no peer can make it hang.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferry::config::{Address, TlsClient};
use ferry::proto::x509;
use rustls::{ClientConnection, StreamOwned};
use serde::Serialize;

/// One connection to a peer.
pub enum Conn {
    /// A TCP stream (Nagle off: every check is a small request and an answer).
    Tcp(TcpStream),
    /// A unix stream socket.
    Unix(UnixStream),
    /// TLS over TCP (`rediss://`, `amqps://`), the handshake done and verified.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// What `ferry check` tells of a TLS connection.
#[derive(Debug, Default, Serialize)]
pub struct TlsDetails {
    /// `TLSv1_3`.
    pub protocol: String,
    /// `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The server certificate's subject (`CN=…`).
    pub subject: Option<String>,
    /// Who signed it.
    pub issuer: Option<String>,
    /// Its last valid day, `YYYY-MM-DD` (UTC).
    pub expires: Option<String>,
    /// Whole days until it expires (negative: expired).
    pub days_to_expiry: Option<i64>,
    /// The certificate was not verified (`insecure_skip_verify`).
    pub unverified: bool,
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
pub fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
    }
    Ok(left)
}

impl Conn {
    /// Connects to a pool (or any) address before `deadline`.
    pub fn connect(address: &Address, deadline: Instant) -> io::Result<Conn> {
        match address {
            // A unix connect does not wait for the peer (EAGAIN when its backlog is full).
            Address::Unix(path) => UnixStream::connect(path).map(Conn::Unix),
            Address::Tcp { host, port } => Conn::connect_tcp(host, *port, deadline),
        }
    }

    /// Connects to the first address of `host:port` that answers before `deadline`
    /// (name resolution blocks: fine in a command, never done in the reactor).
    pub fn connect_tcp(host: &str, port: u16, deadline: Instant) -> io::Result<Conn> {
        tcp_stream(host, port, deadline).map(Conn::Tcp)
    }

    /// Connects to a broker at `host:port`, through TLS when `tls` is given: the
    /// handshake completes (and the certificate is verified) before this returns.
    pub fn connect_broker(
        host: &str,
        port: u16,
        tls: Option<&TlsClient>,
        deadline: Instant,
    ) -> io::Result<(Conn, Option<TlsDetails>)> {
        let mut tcp = tcp_stream(host, port, deadline)?;
        let Some(client) = tls else {
            return Ok((Conn::Tcp(tcp), None));
        };
        let name = client.server_name_for(host).map_err(io::Error::other)?;
        let mut session =
            ClientConnection::new(client.config.clone(), name).map_err(io::Error::other)?;
        while session.is_handshaking() {
            tcp.set_read_timeout(Some(remaining(deadline)?))?;
            tcp.set_write_timeout(Some(remaining(deadline)?))?;
            match session.complete_io(&mut tcp) {
                Ok((0, 0)) if session.is_handshaking() => {
                    return Err(io::Error::other(
                        "the server closed the connection during the TLS handshake \
                         (is this a TLS port?)",
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    let why = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        Some(tls) => ferry::config::tls::explain(tls),
                        None if e.kind() == io::ErrorKind::WouldBlock => {
                            "no TLS handshake answer (a plain-text port?)".into()
                        }
                        None => e.to_string(),
                    };
                    return Err(io::Error::other(format!("TLS handshake failed: {why}")));
                }
            }
        }
        let details = tls_details(&session, client.insecure);
        Ok((
            Conn::Tls(Box::new(StreamOwned::new(session, tcp))),
            Some(details),
        ))
    }

    /// Writes all of `bytes` before `deadline`.
    pub fn send(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let left = Some(remaining(deadline)?);
        match self {
            Conn::Tcp(s) => s.set_write_timeout(left)?,
            Conn::Unix(s) => s.set_write_timeout(left)?,
            Conn::Tls(s) => s.sock.set_write_timeout(left)?,
        }
        self.write_all(bytes)
    }

    /// Reads once into `buf`, waiting until `wake` at most (`deadline` caps it). Returns
    /// the bytes read (0 = EOF); `TimedOut` when nothing came before `wake`.
    pub fn receive(&mut self, buf: &mut Vec<u8>, wake: Instant) -> io::Result<usize> {
        let left = Some(remaining(wake)?.max(Duration::from_millis(1)));
        match self {
            Conn::Tcp(s) => s.set_read_timeout(left)?,
            Conn::Unix(s) => s.set_read_timeout(left)?,
            Conn::Tls(s) => s.sock.set_read_timeout(left)?,
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            Err(e) => Err(e),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Connects to the first address of `host:port` that answers before `deadline`.
fn tcp_stream(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The protocol, cipher suite and certificate of a finished handshake.
fn tls_details(session: &ClientConnection, unverified: bool) -> TlsDetails {
    let mut details = TlsDetails {
        protocol: session
            .protocol_version()
            .map_or("?".into(), |v| format!("{v:?}")),
        cipher_suite: session
            .negotiated_cipher_suite()
            .map_or("?".into(), |s| format!("{:?}", s.suite())),
        unverified,
        ..TlsDetails::default()
    };
    let leaf = session.peer_certificates().and_then(|chain| chain.first());
    if let Some(summary) = leaf.and_then(|cert| x509::summarize(cert)) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        details.subject = Some(summary.subject);
        details.issuer = Some(summary.issuer);
        details.expires = Some(x509::date(summary.not_after));
        details.days_to_expiry = Some((summary.not_after - now).div_euclid(86_400));
    }
    details
}
