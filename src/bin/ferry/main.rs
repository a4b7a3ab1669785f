//! The `ferry` command line.
//!
//! Argument parsing is hand-written on purpose: the runtime dependency list is fixed
//! (`docs/ARCHITECTURE.md` "Dependencies"), and ferry's flags are few and regular.

mod args;
mod bench;
mod check;
mod conform;
mod publish;
mod responder;
mod run;

use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const HELP: &str = "\
ferry — carries messages from Redis pub/sub and RabbitMQ to FastCGI workers (php-fpm)

Usage: ferry <COMMAND> [OPTIONS]

Commands:
  run        consume the configured sources and dispatch each message to a FastCGI pool
  publish    publish messages to a Redis channel or an AMQP queue
  check      validate a config file and report what every endpoint says
  responder  a built-in FastCGI worker for tests, demos and benchmarks
  bench      end-to-end benchmark harness
  conform    run a protocol conformance suite against a FastCGI, Redis or AMQP server

Options:
  -h, --help     print this help
  -V, --version  print the version

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            eprint!("{HELP}");
            ExitCode::from(2)
        }
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("ferry {VERSION}");
            ExitCode::SUCCESS
        }
        Some("run") => run_command(&args[1..]),
        Some("publish") => publish_command(&args[1..]),
        Some("check") => ExitCode::from(check::command(&args[1..])),
        Some("responder") => responder_command(&args[1..]),
        Some("bench") => bench_command(&args[1..]),
        Some("conform") => ExitCode::from(conform::command(&args[1..])),
        Some(other) => {
            eprintln!("ferry: unknown command or option '{other}' (see 'ferry --help')");
            ExitCode::from(2)
        }
    }
}

fn run_command(args: &[String]) -> ExitCode {
    let parsed = match args::parse("run", run::FLAGS, args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if parsed.has("help") {
        print!("{}", run::HELP);
        return ExitCode::SUCCESS;
    }
    let config = match run::config(&parsed) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry run: {e}");
            return ExitCode::from(2);
        }
    };
    let level_text = parsed
        .get("log-level")
        .map(str::to_string)
        .or_else(|| std::env::var("FERRY_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let Some(level) = ferry::logging::parse_level(&level_text) else {
        eprintln!(
            "ferry run: --log-level: '{level_text}' is not error, warn, info, debug or trace"
        );
        return ExitCode::from(2);
    };
    let format_text = parsed.get("log-format").unwrap_or("text");
    let Some(format) = ferry::logging::Format::parse(format_text) else {
        eprintln!("ferry run: --log-format: '{format_text}' is not text or json");
        return ExitCode::from(2);
    };
    let daemonize = parsed.has("daemonize");
    if daemonize && ferry::process::notify::notify_socket_set() {
        eprintln!(
            "ferry run: --daemonize: NOTIFY_SOCKET is set, so a service manager runs ferry \
             in the foreground (systemd Type=notify); drop --daemonize"
        );
        return ExitCode::from(2);
    }
    // Daemonizing changes directory to `/`: paths used later must be absolute.
    let log_file = match parsed.get("log-file").map(run::absolute).transpose() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("ferry run: --log-file: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ferry::logging::init(level, format, log_file.clone()) {
        eprintln!("ferry run: --log-file: {e}");
        return ExitCode::from(2);
    }
    // Locked before daemonizing, so a second instance is refused on the terminal; the
    // daemon inherits the lock and writes its own pid.
    let mut pidfile = match parsed.get("pidfile").map(run::lock_pidfile).transpose() {
        Ok(pidfile) => pidfile,
        Err(e) => {
            eprintln!(
                "ferry run: --pidfile {}: {e}",
                parsed.get("pidfile").unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    if daemonize {
        if log_file.is_none() {
            log::warn!("--daemonize without --log-file: the daemon's logs go to /dev/null");
        }
        if let Err(e) = run::detach(pidfile.as_mut()) {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    }
    // READY=1, STOPPING=1 and the watchdog are sent by the runtime (after the control
    // listener is bound and the signal handlers are installed).
    let notifier = run::notifier();
    raise_fd_limit();
    let config_path = parsed
        .get("config")
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.into()));
    let code = match ferry::reactor::run(config, notifier, config_path) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    };
    if let Some(pidfile) = pidfile {
        if let Err(e) = pidfile.release() {
            log::warn!("--pidfile: {e}");
        }
    }
    code
}

fn responder_command(args: &[String]) -> ExitCode {
    let parsed = match args::parse("responder", responder::FLAGS, args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if parsed.has("help") {
        print!("{}", responder::HELP);
        return ExitCode::SUCCESS;
    }
    let options = match responder::options(&parsed) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ferry responder: {e}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit();
    ExitCode::from(responder::run(options))
}

fn bench_command(args: &[String]) -> ExitCode {
    let parsed = match args::parse("bench", bench::FLAGS, args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if parsed.has("help") {
        print!("{}", bench::HELP);
        return ExitCode::SUCCESS;
    }
    // Thousands of pool connections in a concurrency sweep: the same raised limit as
    // the ferry and responders it starts.
    raise_fd_limit();
    ExitCode::from(bench::command(&parsed))
}

fn publish_command(args: &[String]) -> ExitCode {
    let parsed = match args::parse("publish", publish::FLAGS, args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if parsed.has("help") {
        print!("{}", publish::HELP);
        return ExitCode::SUCCESS;
    }
    match publish::run(&parsed) {
        Ok(code) => ExitCode::from(code),
        Err(publish::Failure::Usage(e)) => {
            eprintln!("ferry publish: {e}");
            ExitCode::from(2)
        }
        Err(publish::Failure::Runtime(e)) => {
            eprintln!("ferry publish: {e}");
            ExitCode::from(1)
        }
    }
}

/// `docs/OPERATIONS.md` "Process management": the soft `RLIMIT_NOFILE` is raised to the
/// hard limit, so a busy pool and many control clients never hit a low default of 1024
/// descriptors.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("cannot raise the open-files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot read the open-files limit: {e}"),
    }
}
