//! The `ferry` command line.
//!
//! Argument parsing is hand-written on purpose: the runtime dependency list is fixed
//! (see DEVELOPERS.md), and ferry's flags are few and regular.

mod args;
mod check;
mod publish;
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

Options:
  -h, --help     print this help
  -V, --version  print the version

Not yet available in this build: responder, bench.

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
        Some(command @ ("responder" | "bench")) => {
            eprintln!("ferry: '{command}' is not available in this build yet");
            ExitCode::from(2)
        }
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
    if parsed.has("pidfile") || parsed.has("daemonize") {
        eprintln!("ferry run: --pidfile and --daemonize arrive with the operations work (issue 4)");
        return ExitCode::from(2);
    }
    let log_file = parsed.get("log-file").map(std::path::PathBuf::from);
    if let Err(e) = ferry::logging::init(level, format, log_file) {
        eprintln!("ferry run: --log-file: {e}");
        return ExitCode::from(2);
    }
    match ferry::reactor::run(config) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
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
