//! ferry's logger (`docs/OPERATIONS.md` "Logs"): one line per event on stderr or
//! `--log-file`, level from `--log-level` / `FERRY_LOG`, `--log-format text|json`; the
//! file is reopened on SIGHUP (logrotate's way). A small implementation of the `log`
//! facade: no logging crate beyond `log` is in the dependency list, and this is all ferry
//! needs.
//!
//! Passwords never reach a log line because ferry never formats them: URLs print through
//! their redacting `Display` and passwords are [`Secret`](crate::config::Secret)s.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-11-22T00:44:09.123Z INFO target: message`
    Text,
    /// `{"ts":"…","level":"info","target":"…","msg":"…"}`
    Json,
}

impl Format {
    /// Parses `text` or `json`.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Parses a level name as `--log-level` and `FERRY_LOG` take it.
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    match text.to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

struct Logger {
    format: Format,
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger (once per process). `path` `None` logs to stderr.
pub fn init(level: LevelFilter, format: Format, path: Option<PathBuf>) -> std::io::Result<()> {
    let file = path.as_ref().map(open).transpose()?;
    let logger = LOGGER.get_or_init(|| Logger {
        format,
        path,
        file: Mutex::new(file),
    });
    // A second init (tests) keeps the first logger.
    let _ = log::set_logger(logger);
    log::set_max_level(level);
    Ok(())
}

/// Reopens the log file (after logrotate moved it). No-op when logging to stderr.
pub fn reopen() -> std::io::Result<()> {
    let Some(logger) = LOGGER.get() else {
        return Ok(());
    };
    let Some(path) = &logger.path else {
        return Ok(());
    };
    let file = open(path)?;
    if let Ok(mut slot) = logger.file.lock() {
        *slot = Some(file);
    }
    Ok(())
}

fn open(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(self.format, SystemTime::now(), record);
        match self.file.lock() {
            Ok(mut file) => match file.as_mut() {
                Some(file) => {
                    let _ = file.write_all(line.as_bytes());
                }
                None => {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            },
            Err(_) => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One log line, newline included.
fn format_line(format: Format, now: SystemTime, record: &Record<'_>) -> String {
    let ts = rfc3339_millis(now);
    let message = record.args().to_string();
    let mut line = String::with_capacity(64 + message.len());
    match format {
        Format::Text => {
            let _ = write!(
                line,
                "{ts} {:<5} {}: {}",
                level_name(record.level()).to_ascii_uppercase(),
                record.target(),
                message.replace('\n', "\\n")
            );
        }
        Format::Json => {
            let object = serde_json::json!({
                "ts": ts,
                "level": level_name(record.level()),
                "target": record.target(),
                "msg": message,
            });
            line.push_str(&object.to_string());
        }
    }
    line.push('\n');
    line
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, without a date library (days-from-civil inverse,
/// Howard Hinnant's algorithm).
fn rfc3339_millis(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_308_249_123);
        assert_eq!(rfc3339_millis(t), "2026-11-22T00:44:09.123Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_millis(leap)[..10], "2000-02-29");
    }

    #[test]
    fn lines_in_both_formats() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400);
        let args = format_args!("queue {} gone\nnext", "jobs");
        let record = Record::builder()
            .args(args)
            .level(Level::Warn)
            .target("ferry::amqp")
            .build();
        assert_eq!(
            format_line(Format::Text, t, &record),
            "1970-01-02T00:00:00.000Z WARN  ferry::amqp: queue jobs gone\\nnext\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&format_line(Format::Json, t, &record)).unwrap();
        assert_eq!(json["level"], "warn");
        assert_eq!(json["msg"], "queue jobs gone\nnext");
    }

    #[test]
    fn level_names() {
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("verbose"), None);
    }
}
