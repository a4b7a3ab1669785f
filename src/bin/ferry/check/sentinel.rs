//! `ferry check` for a source behind Redis Sentinel: each sentinel is asked where the
//! master is — with the same sans-IO conversation `ferry run` uses
//! (`ferry::proto::resp::sentinel`) — and the master the first answer names is then
//! checked like any Redis node, its role included.

use std::time::Instant;

use ferry::config::SentinelSettings;
use ferry::proto::resp::sentinel::{MasterAddress, SentinelWatch, WatchEvent};

use super::conn::Conn;

/// Asks the sentinel at `host:port` for the master's address.
pub fn ask(
    settings: &SentinelSettings,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<MasterAddress, String> {
    let mut conn = Conn::connect_tcp(host, port, deadline).map_err(|e| format!("connect: {e}"))?;
    let mut watch = SentinelWatch::new(
        settings.master.as_bytes(),
        &settings.sentinel_credentials(),
        Instant::now(),
    );
    let mut out = Vec::new();
    watch.poll_transmit(&mut out);
    conn.send(&out, deadline)
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    loop {
        let used = watch
            .handle_input(&buf, Instant::now())
            .map_err(|e| e.to_string())?;
        buf.drain(..used);
        while let Some(event) = watch.poll_event() {
            if let WatchEvent::Master(address) = event {
                return Ok(address);
            }
        }
        match conn.receive(&mut buf, deadline) {
            Ok(0) => return Err("the sentinel closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for its answer: {e}")),
        }
    }
}
