//! The `kvstore` binary: read the config file, parse the command line, set
//! up logging, run, and decide the exit code: 0 success, 1 key not found,
//! 2 usage, 3 any other failure. Every failure is one line on stderr.

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "unit tests fail loudly"))]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
// The CLI is the binary's, not the library's: its modules reach the library
// through these names, as they did when they lived inside it.
#[cfg(feature = "cluster")]
use kvstore::cluster;
use kvstore::{engine, server};

mod cli;

use cli::{Cli, config};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if let Some(path) = config::path_from(&args) {
        command = match config::apply_file(command, &path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kvstore: {e}");
                return ExitCode::from(2);
            }
        };
    }
    let parsed = command
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kvstore: {}", cli::usage_line(&e));
            return ExitCode::from(2);
        }
    };
    let default_level = match cli.command {
        None | Some(cli::Command::Serve(_)) => "info",
        Some(_) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvstore: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
