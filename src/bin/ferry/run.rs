//! `ferry run`: the configuration from `--config` or the single-source shortcut flags,
//! and the process setup before the loop (`--pidfile`, `--daemonize`, `NOTIFY_SOCKET`;
//! `docs/OPERATIONS.md` "Process management").

use std::path::{Path, PathBuf};

use ferry::config::{self, Config};
use ferry::process::{Notifier, Pidfile, PidfileError};
use serde_json::json;

use crate::args::{Kind, Parsed, UsageError};

/// Flags of `ferry run`.
pub const FLAGS: &[(&str, Kind)] = &[
    ("config", Kind::Single),
    ("redis", Kind::Single),
    ("channel", Kind::Repeated),
    ("pattern", Kind::Repeated),
    ("amqp", Kind::Single),
    ("queue", Kind::Single),
    ("prefetch", Kind::Single),
    ("fastcgi", Kind::Single),
    ("script", Kind::Single),
    ("body", Kind::Single),
    ("max-in-flight", Kind::Single),
    ("control", Kind::Single),
    ("pidfile", Kind::Single),
    ("daemonize", Kind::Switch),
    ("log-level", Kind::Single),
    ("log-format", Kind::Single),
    ("log-file", Kind::Single),
    ("help", Kind::Switch),
];

/// `ferry run --help`.
pub const HELP: &str = "\
Usage: ferry run [--config FILE] [source and pool flags] [options]

Consumes the configured sources and turns every message into a FastCGI request.

With a config file:
  --config FILE            the JSON configuration (see the README)
Or one source and one pool from flags (no config file):
  --redis URL --channel NAME... [--pattern GLOB...]   Redis pub/sub source 'redis'
  --amqp URL --queue NAME [--prefetch N]              AMQP source 'amqp'
  --fastcgi ADDR --script PATH                        the pool 'fastcgi' and its script
  [--body form|raw] [--max-in-flight N]
Options:
  --control ADDR           control endpoint (default 127.0.0.1:9180)
  --pidfile PATH           write and lock a pidfile; a second ferry with it exits 2
  --daemonize              detach (double fork, setsid, chdir /, stdio to /dev/null);
                           returns once the daemon is up; not under NOTIFY_SOCKET
  --log-level LEVEL        error, warn, info (default), debug, trace; or FERRY_LOG
  --log-format text|json   log line format (default text)
  --log-file PATH          log to a file, reopened on SIGHUP
";

/// The configuration `ferry run` was asked for.
pub fn config(parsed: &Parsed) -> Result<Config, String> {
    let shortcut = [
        "redis", "amqp", "fastcgi", "script", "channel", "pattern", "queue",
    ]
    .iter()
    .any(|flag| parsed.has(flag));
    let mut config = match parsed.get("config") {
        Some(_) if shortcut => return Err(UsageError(
            "--config and the source/pool flags (--redis, --amqp, --fastcgi, …) exclude each other"
                .into(),
        )
        .0),
        Some(path) => config::load(path.as_ref()).map_err(|e| format!("config {path}: {e}"))?,
        None => from_flags(parsed)?,
    };
    if let Some(control) = parsed.get("control") {
        config.control.listen =
            Some(config::Address::parse(control).map_err(|why| format!("--control: {why}"))?);
    }
    Ok(config)
}

/// `path` made absolute against the current directory (daemonizing moves to `/`).
pub fn absolute(path: &str) -> std::io::Result<PathBuf> {
    std::path::absolute(Path::new(path))
}

/// Locks `--pidfile PATH` (see [`Pidfile::acquire`]).
pub fn lock_pidfile(path: &str) -> Result<Pidfile, PidfileError> {
    let path = absolute(path).map_err(|error| PidfileError::Io {
        doing: "resolve the path",
        error,
    })?;
    Pidfile::acquire(&path)
}

/// `--daemonize`: detaches; in the daemon, writes its pid to the pidfile and tells the
/// starting process (which then exits 0) that it is up.
pub fn detach(pidfile: Option<&mut Pidfile>) -> Result<(), String> {
    let detached = ferry::process::daemonize().map_err(|e| e.to_string())?;
    if let Some(pidfile) = pidfile {
        pidfile
            .write_pid()
            .map_err(|e| format!("--pidfile {}: {e}", pidfile.path().display()))?;
    }
    log::info!("daemonized: pid {}", std::process::id());
    detached
        .ready()
        .map_err(|e| format!("--daemonize: cannot tell the starting process: {e}"))
}

/// The systemd notifier when `NOTIFY_SOCKET` is set. Takes `NOTIFY_SOCKET`,
/// `WATCHDOG_USEC` and `WATCHDOG_PID` out of the environment, so no process ferry spawns
/// inherits them; call before any thread starts. A bad value is logged and ignored.
pub fn notifier() -> Option<Notifier> {
    match Notifier::from_env() {
        Ok(notifier) => notifier,
        Err(e) => {
            log::warn!("{e}; not notifying the service manager");
            None
        }
    }
}

/// Builds the one-source, one-pool configuration of the shortcut flags. It goes through
/// the same parser and validation as a file, so defaults and checks are the same.
fn from_flags(parsed: &Parsed) -> Result<Config, String> {
    let fastcgi = parsed
        .get("fastcgi")
        .ok_or("--fastcgi ADDR is required (or --config)")?;
    let script = parsed
        .get("script")
        .ok_or("--script PATH is required (or --config)")?;
    let mut pool = json!({ "address": fastcgi });
    if let Some(n) = parsed.number::<u32>("max-in-flight").map_err(|e| e.0)? {
        pool["max_in_flight"] = json!(n);
    }
    let mut job = json!({ "pool": "fastcgi", "script": script });
    if let Some(body) = parsed.get("body") {
        job["body"] = json!(body);
    }
    let source = match (parsed.get("redis"), parsed.get("amqp")) {
        (Some(_), Some(_)) => return Err("give --redis or --amqp, not both".into()),
        (None, None) => return Err("give a source: --redis URL or --amqp URL (or --config)".into()),
        (Some(url), None) => {
            if parsed.has("queue") || parsed.has("prefetch") {
                return Err("--queue and --prefetch go with --amqp".into());
            }
            json!({ "name": "redis", "kind": "redis", "url": url,
                    "channels": parsed.all("channel"), "patterns": parsed.all("pattern"),
                    "job": job })
        }
        (None, Some(url)) => {
            if parsed.has("channel") || parsed.has("pattern") {
                return Err("--channel and --pattern go with --redis".into());
            }
            let queue = parsed.get("queue").ok_or("--amqp needs --queue NAME")?;
            let mut source = json!({ "name": "amqp", "kind": "amqp", "url": url,
                                     "queue": queue, "job": job });
            if let Some(n) = parsed.number::<u16>("prefetch").map_err(|e| e.0)? {
                source["prefetch"] = json!(n);
            }
            source
        }
    };
    let text = json!({ "pools": { "fastcgi": pool }, "sources": [source] }).to_string();
    config::parse(text.as_bytes(), None).map_err(|e| {
        // Errors name the flag, not the key it became.
        let field = if e.reason.starts_with("url:") {
            "url"
        } else {
            e.key.rsplit('.').next().unwrap_or("")
        };
        let flag = match field {
            "address" => "--fastcgi",
            "script" => "--script",
            "body" => "--body",
            "url" => "--redis/--amqp",
            "channels" => "--channel",
            "prefetch" => "--prefetch",
            "max_in_flight" => "--max-in-flight",
            _ => "flags",
        };
        format!("{flag}: {}", e.reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse;
    use ferry::config::SourceConfig;

    fn config_of(list: &[&str]) -> Result<Config, String> {
        let args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        config(&parse("run", FLAGS, &args).map_err(|e| e.0)?)
    }

    #[test]
    fn redis_shortcut() {
        let config = config_of(&[
            "--redis",
            "redis://127.0.0.1:6379",
            "--channel",
            "commands",
            "--pattern",
            "jobs.*",
            "--fastcgi",
            "unix:/run/php/php8.2-fpm.sock",
            "--script",
            "/srv/app/worker.php",
            "--max-in-flight",
            "8",
        ])
        .unwrap();
        assert_eq!(config.pools["fastcgi"].max_in_flight, 8);
        let SourceConfig::Redis(redis) = &config.sources[0] else {
            panic!()
        };
        assert_eq!((redis.channels.len(), redis.patterns.len()), (1, 1));
    }

    #[test]
    fn amqp_shortcut_prefetch_defaults_to_max_in_flight() {
        let config = config_of(&[
            "--amqp",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "--queue",
            "commands",
            "--fastcgi",
            "127.0.0.1:9000",
            "--script",
            "/w.php",
        ])
        .unwrap();
        let SourceConfig::Amqp(amqp) = &config.sources[0] else {
            panic!()
        };
        assert_eq!(amqp.prefetch, Some(4));
    }

    #[test]
    fn mistakes_name_the_flag() {
        for (list, expected) in [
            (
                &["--redis", "redis://h", "--fastcgi", "h:1"][..],
                "--script",
            ),
            (
                &["--redis", "redis://h", "--fastcgi", "h:1", "--script", "/w"],
                "--channel",
            ),
            (
                &["--amqp", "amqp://h", "--fastcgi", "h:1", "--script", "/w"],
                "--queue",
            ),
            (
                &[
                    "--amqp",
                    "amqp://h",
                    "--queue",
                    "q",
                    "--fastcgi",
                    "h:1",
                    "--script",
                    "w",
                ],
                "--script",
            ),
            (
                &[
                    "--redis",
                    "x://h",
                    "--channel",
                    "c",
                    "--fastcgi",
                    "h:1",
                    "--script",
                    "/w",
                ],
                "--redis",
            ),
            (
                &["--config", "/x.json", "--redis", "redis://h"],
                "exclude each other",
            ),
            (
                &[
                    "--amqp",
                    "amqp://h",
                    "--queue",
                    "q",
                    "--prefetch",
                    "0",
                    "--fastcgi",
                    "h:1",
                    "--script",
                    "/w",
                ],
                "--prefetch",
            ),
        ] {
            let err = config_of(list).unwrap_err();
            assert!(err.contains(expected), "{list:?}: {err}");
        }
    }
}
