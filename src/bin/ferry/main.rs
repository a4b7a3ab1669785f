//! The `ferry` command line.
//!
//! Argument parsing is hand-written on purpose: the runtime dependency list is fixed
//! (see DEVELOPERS.md), and ferry's flags are few and regular.

mod args;
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

Not yet available in this build: publish, check, responder, bench; 'run' validates
its configuration but does not consume yet (the reactor is being built).

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
        Some(command @ ("publish" | "check" | "responder" | "bench")) => {
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
    match run::config(&parsed) {
        Ok(config) => {
            eprintln!(
                "ferry run: configuration valid ({} pools, {} sources); consuming is not built yet",
                config.pools.len(),
                config.sources.len()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ferry run: {e}");
            ExitCode::from(2)
        }
    }
}
