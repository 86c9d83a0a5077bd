//! The `kvstore` binary: parse the command line, set up logging, run, and
//! decide the exit code. Every failure is one line on stderr.

use std::process::ExitCode;

use clap::Parser;
use kvstore::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("kvstore: {}", first.trim_start_matches("error: "));
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
            ExitCode::FAILURE
        }
    }
}
