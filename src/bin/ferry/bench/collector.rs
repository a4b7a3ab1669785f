//! Receipts: which message arrived at a worker, when it was published and when it
//! arrived. Read from the workers' logs as they grow ([`LogTail`]), or handed over by an
//! in-process consumer (the broker-alone limit) through [`Shared`].
//!
//! Two line shapes are understood, one JSON object per line:
//! - `ferry responder --log`: `{"params": {...}, "body": "n=1&t=…", "received_at_us": …}`
//!   — the body is what ferry sent: a form body (`n=…&t=…`) or, for `body: raw`, the
//!   published JSON;
//! - a PHP job such as `benches/null.php`: `{"n": 1, "t": …, "received_at_us": …}`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// One message seen by a worker (or by the broker-limit consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The message number, 1..=count.
    pub n: u64,
    /// Publish time, µs since the epoch (CLOCK_REALTIME, same host).
    pub sent_us: u64,
    /// Receipt time, µs since the epoch.
    pub received_us: u64,
}

impl Receipt {
    /// Publish to receipt, µs (0 if the clock stepped back).
    pub fn latency_us(&self) -> u64 {
        self.received_us.saturating_sub(self.sent_us)
    }
}

/// The body every bench message carries.
pub fn message_body(n: u64, sent_us: u64) -> Vec<u8> {
    format!(r#"{{"n":{n},"t":{sent_us}}}"#).into_bytes()
}

/// Now, µs since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    t: Option<u64>,
    received_at_us: u64,
}

/// Reads one log line; `None` when it is not a receipt of a bench message.
pub fn parse_line(line: &[u8]) -> Option<Receipt> {
    let line: Line = serde_json::from_slice(line).ok()?;
    let (n, sent_us) = match (line.n, line.t, &line.body) {
        (Some(n), Some(t), _) => (n, t),
        (_, _, Some(body)) => parse_body(body.as_bytes())?,
        _ => return None,
    };
    Some(Receipt {
        n,
        sent_us,
        received_us: line.received_at_us,
    })
}

/// `n` and `t` from a form body (`n=1&t=2`) or the published JSON (`{"n":1,"t":2}`).
pub fn parse_body(body: &[u8]) -> Option<(u64, u64)> {
    if body.first() == Some(&b'{') {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        return Some((value["n"].as_u64()?, value["t"].as_u64()?));
    }
    let text = std::str::from_utf8(body).ok()?;
    let (mut n, mut t) = (None, None);
    for pair in text.split('&') {
        match pair.split_once('=') {
            Some(("n", value)) => n = value.parse().ok(),
            Some(("t", value)) => t = value.parse().ok(),
            _ => {}
        }
    }
    Some((n?, t?))
}

/// Follows one log file as it grows, keeping an unfinished last line for the next read.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Lines that were not receipts (garbled or foreign).
    pub unreadable: u64,
}

impl LogTail {
    /// Follows `path` from its current end (a log of a running pipeline may hold
    /// earlier runs) or from the start.
    pub fn new(path: PathBuf, from_end: bool) -> LogTail {
        let offset = if from_end {
            std::fs::metadata(&path).map_or(0, |m| m.len())
        } else {
            0
        };
        LogTail {
            path,
            offset,
            partial: Vec::new(),
            unreadable: 0,
        }
    }

    /// Appends the receipts of the lines written since the last call.
    pub fn read_new(&mut self, into: &mut Vec<Receipt>) -> Result<(), String> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        for line in self.partial[..end].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match parse_line(line) {
                Some(receipt) => into.push(receipt),
                None => self.unreadable += 1,
            }
        }
        self.partial.drain(..=end);
        Ok(())
    }
}

/// Receipts pushed by another thread of the bench.
pub type Shared = Arc<Mutex<Vec<Receipt>>>;

/// Where a run's receipts come from.
pub enum Receipts {
    /// Worker log files.
    Logs(Vec<LogTail>),
    /// An in-process consumer.
    Shared(Shared),
}

impl Receipts {
    /// Moves the receipts that arrived since the last call into `into`.
    pub fn poll(&mut self, into: &mut Vec<Receipt>) -> Result<(), String> {
        match self {
            Receipts::Logs(tails) => {
                for tail in tails {
                    tail.read_new(into)?;
                }
                Ok(())
            }
            Receipts::Shared(shared) => {
                let mut taken = shared.lock().map_err(|_| "consumer thread panicked")?;
                into.append(&mut taken);
                Ok(())
            }
        }
    }

    /// Lines that were not receipts.
    pub fn unreadable(&self) -> u64 {
        match self {
            Receipts::Logs(tails) => tails.iter().map(|t| t.unreadable).sum(),
            Receipts::Shared(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responder_and_php_lines() {
        let responder = br#"{"params":{"A":"b"},"body":"n=12&t=1000","received_at_us":1500}"#;
        assert_eq!(
            parse_line(responder),
            Some(Receipt {
                n: 12,
                sent_us: 1000,
                received_us: 1500
            })
        );
        let raw = br#"{"params":{},"body":"{\"n\":3,\"t\":7}","received_at_us":9}"#;
        assert_eq!(parse_line(raw).map(|r| (r.n, r.latency_us())), Some((3, 2)));
        let php = br#"{"n":4,"t":10,"received_at_us":25}"#;
        assert_eq!(
            parse_line(php).map(|r| (r.n, r.latency_us())),
            Some((4, 15))
        );
        assert_eq!(parse_line(br#"{"body":"x=1","received_at_us":1}"#), None);
        assert_eq!(parse_line(b"garbage"), None);
    }

    #[test]
    fn tail_keeps_an_unfinished_line() {
        let dir = std::env::temp_dir().join(format!("ferry-bench-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        std::fs::write(&path, b"{\"n\":1,\"t\":1,\"received_at_us\":2}\n{\"n\":2,").unwrap();
        let mut tail = LogTail::new(path.clone(), false);
        let mut got = Vec::new();
        tail.read_new(&mut got).unwrap();
        assert_eq!(got.len(), 1);
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"\"t\":1,\"received_at_us\":3}\n").unwrap();
        tail.read_new(&mut got).unwrap();
        assert_eq!(got.iter().map(|r| r.n).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(tail.unreadable, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
