//! TLS on a nonblocking socket, driven by the loop: rustls' `ClientConnection` is a state
//! machine of its own (`read_tls` → `process_new_packets` → plaintext out, plaintext in
//! → `write_tls`), so it needs no thread and no async adapter; this module moves bytes
//! between it, the socket and the connection's [`Buffers`] (`docs/ARCHITECTURE.md`, "TLS").
//!
//! The handshake completes before the engine hears that the connection is up: nothing
//! the engine writes — AUTH, the AMQP credentials — leaves before the server's certificate
//! was verified. rustls holds at most [`SEND_LIMIT`] bytes of plaintext queued for
//! encryption: beyond it, bytes stay in the engine's buffers, where backpressure sees them.

use std::io::{self, Read, Write};

use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use super::conn::{Fill, Stream};
use crate::config::tls::explain;
use crate::config::TlsClient;
use crate::engine::io::Buffers;

/// Plaintext rustls accepts before its `writer()` refuses more (encrypted records waiting
/// for the socket count too).
const SEND_LIMIT: usize = 64 * 1024;

/// One TLS client session.
pub struct TlsSession {
    session: ClientConnection,
    /// The TCP connect completed: from here on a socket error is the handshake's.
    pub tcp_connected: bool,
    /// The host as configured, for messages.
    host: String,
}

/// Where a handshake stands after a step.
#[derive(Debug)]
pub enum Handshake {
    /// Verified and complete: the connection is up.
    Done,
    /// More bytes must come from the server.
    Pending,
    /// It failed; why, in words an operator can act on.
    Failed(String),
}

impl TlsSession {
    /// A session with `client` to `host` (the name verified, unless the `tls` block names
    /// another).
    pub fn new(client: &TlsClient, host: &str) -> Result<TlsSession, String> {
        let name: ServerName<'static> = client.server_name_for(host)?;
        let mut session = ClientConnection::new(client.config.clone(), name)
            .map_err(|e| format!("TLS setup for {host} failed: {e}"))?;
        session.set_buffer_limit(Some(SEND_LIMIT));
        Ok(TlsSession {
            session,
            tcp_connected: false,
            host: host.to_string(),
        })
    }

    /// Whether encrypted bytes wait for the socket (the loop then wants `WRITABLE`).
    pub fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// One step of the handshake on a connected socket: send what rustls has, read what
    /// the server sent, and say where it stands.
    pub fn handshake(&mut self, stream: &mut Stream) -> Handshake {
        loop {
            if let Err(e) = self.write_records(stream) {
                return Handshake::Failed(self.failed(&format!("write failed: {e}")));
            }
            if !self.session.is_handshaking() {
                return Handshake::Done;
            }
            match self.session.read_tls(stream) {
                Ok(0) => {
                    return Handshake::Failed(self.failed(
                        "the server closed the connection during the handshake \
                         (a plain-text port behind a TLS URL?)",
                    ))
                }
                Ok(_) => {
                    if let Err(e) = self.session.process_new_packets() {
                        // The alert rustls queued tells the server why.
                        let _ = self.write_records(stream);
                        return Handshake::Failed(self.failed(&explain(&e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handshake::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Handshake::Failed(self.failed(
                        "the server reset the connection during the handshake \
                         (a plain-text port behind a TLS URL?)",
                    ))
                }
                Err(e) => return Handshake::Failed(self.failed(&format!("read failed: {e}"))),
            }
        }
    }

    fn failed(&self, why: &str) -> String {
        format!("TLS handshake with {} failed: {why}", self.host)
    }

    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384`, for the log.
    pub fn describe(&self) -> String {
        let version = self
            .session
            .protocol_version()
            .map_or("?".into(), |v| format!("{v:?}"));
        let suite = self
            .session
            .negotiated_cipher_suite()
            .map_or("?".into(), |s| format!("{:?}", s.suite()));
        format!("{version} {suite}")
    }

    /// Reads the socket into `buffers` through the session, like
    /// [`super::conn::fill`]: until `WouldBlock`, EOF or the buffers' fill limit.
    /// Plaintext rustls already decrypted is taken first, so a re-read after `Full`
    /// continues where it stopped.
    pub fn fill(&mut self, stream: &mut Stream, buffers: &mut Buffers) -> io::Result<Fill> {
        let limit = buffers.fill_limit();
        loop {
            loop {
                let room = limit.saturating_sub(buffers.unconsumed());
                if room == 0 {
                    return Ok(Fill::Full);
                }
                match self.session.reader().read(buffers.read_room(room)) {
                    Ok(0) => return Ok(Fill::Eof), // close_notify
                    Ok(n) => buffers.commit_read(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The socket closed without close_notify: an EOF all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Fill::Eof),
                    Err(e) => return Err(e),
                }
            }
            match self.session.read_tls(stream) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(_) => {
                    if let Err(e) = self.session.process_new_packets() {
                        let _ = self.write_records(stream);
                        return Err(io::Error::other(format!(
                            "TLS with {}: {}",
                            self.host,
                            explain(&e)
                        )));
                    }
                    // Post-handshake messages (key updates) may want an answer.
                    if self.session.wants_write() {
                        self.write_records(stream)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts what `buffers` hold and writes it, until done or `WouldBlock`.
    pub fn flush(&mut self, stream: &mut Stream, buffers: &mut Buffers) -> io::Result<()> {
        loop {
            if buffers.wants_write() {
                let taken = self.session.writer().write(buffers.output())?;
                buffers.commit_write(taken);
            }
            if !self.write_records(stream)? {
                return Ok(()); // the socket is full: WRITABLE brings the rest
            }
            if !buffers.wants_write() {
                return Ok(());
            }
        }
    }

    /// Writes encrypted records until none wait (`true`) or the socket would block
    /// (`false`).
    fn write_records(&mut self, stream: &mut Stream) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Says goodbye (`close_notify`), best effort, before the socket is dropped.
    pub fn close(&mut self, stream: &mut Stream) {
        if !self.session.is_handshaking() {
            self.session.send_close_notify();
            let _ = self.write_records(stream);
        }
    }
}
