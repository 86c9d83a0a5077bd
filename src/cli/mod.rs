//! The `kvstore` command line: parsed flags ([`Cli`]) and one module per
//! subcommand. `main.rs` reads the config file ([`config`]), parses, sets up
//! logging, calls [`run`] and turns a [`CliError`] into one line on stderr
//! and its [exit code](CliError::exit_code).

pub mod backup;
pub mod client;
pub mod compact;
pub mod config;
pub mod export;
pub mod import;
pub mod inspect;
pub mod progress;
pub mod serve;
pub mod shell;
pub mod units;
pub mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use client::Client;
use client::ops::{self, Op};

use crate::engine::{self, Engine, Options, RecoveryReport};

/// A Bitcask-style key-value store with an HTTP JSON API.
#[derive(Debug, Parser)]
#[command(name = "kvstore", version, about)]
pub struct Cli {
    /// With no subcommand, `kvstore` serves (same flags as `kvstore serve`).
    #[command(flatten)]
    pub serve: serve::ServeArgs,
    /// An offline subcommand on a data directory.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A TOML file with one key per flag; flags and env override it.
    #[arg(long, global = true, env = "KVSTORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve(serve::ServeArgs),
    /// Print the recovery report, the figures and the files of a data directory.
    Inspect(DirArgs),
    /// Read every key, checking every record; exit non-zero if any is corrupt.
    Verify(DirArgs),
    /// Compact a data directory now.
    Compact(DirArgs),
    /// Write a consistent point-in-time copy of a store to --to (offline, or --url through a server).
    Backup(backup::BackupArgs),
    /// Write every key as JSON lines `{"key": .., "value": ..}`.
    Export(export::ExportArgs),
    /// Load JSON lines `{"key": .., "value": ..}` (the export format).
    Import(import::ImportArgs),
    /// Print the value of KEY as JSON (exit 1 when absent), from a server or --data-dir.
    Get(Client<ops::GetArgs>),
    /// Store VALUE under KEY (JSON if it parses as JSON, else a string).
    Put(Client<ops::PutArgs>),
    /// Delete KEY (exit 1 when absent).
    Delete(Client<ops::KeyArgs>),
    /// Print the keys, one per line, in byte order.
    List(Client<ops::ListArgs>),
    /// Run a `/kv/batch` body from FILE (`-`: stdin) as one atomic batch.
    Batch(Client<ops::BatchArgs>),
    /// Print the store's figures as JSON.
    Stats(Client<ops::StatsArgs>),
    /// An interactive prompt for the client commands (plain lines from a pipe).
    Shell(client::TargetArgs),
}

/// The data directory of an offline subcommand.
#[derive(Debug, Clone, Args)]
pub struct DirArgs {
    /// The data directory (must exist).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// `--sync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fsync before acknowledging (group commit).
    Always,
    /// fsync every `--sync-interval-ms`.
    Periodic,
    /// Leave write-back to the OS.
    Never,
}

/// Everything that can make the command fail; `main` prints it as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The engine could not open or operate on the directory.
    #[error("{path}: {source}")]
    Engine {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: engine::Error,
    },
    /// A file or stream could not be used.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file (or `-` for stdin/stdout).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// host:port.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A flag value that parses but cannot be used.
    #[error("invalid {flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// An import line that is not `{"key": string, "value": any}`.
    #[error("{path} line {line}: {reason}")]
    BadLine {
        /// The input.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// `verify` found damage.
    #[error("{0} corrupt record(s) found")]
    Corrupt(u64),
    /// A client command failed.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

impl CliError {
    /// The process's exit code for this failure: 2 for usage (a flag or
    /// config value that cannot be used), 3 for everything else. (0 is
    /// success and 1 a key not found, so a script can tell them apart.)
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid { .. } | CliError::Config(_) => 2,
            _ => 3,
        }
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Verify(args)) => verify::run(&args),
        Some(Command::Compact(args)) => compact::run(&args),
        Some(Command::Backup(args)) => backup::run(&args),
        Some(Command::Export(args)) => export::run(&args),
        Some(Command::Import(args)) => import::run(&args),
        Some(Command::Get(c)) => client::run(&c.target, &Op::Get(c.op)),
        Some(Command::Put(c)) => client::run(&c.target, &Op::Put(c.op)),
        Some(Command::Delete(c)) => client::run(&c.target, &Op::Delete(c.op)),
        Some(Command::List(c)) => client::run(&c.target, &Op::List(c.op)),
        Some(Command::Batch(c)) => client::run(&c.target, &Op::Batch(c.op)),
        Some(Command::Stats(c)) => client::run(&c.target, &Op::Stats(c.op)),
        Some(Command::Shell(target)) => shell::run(&target),
    }
}

/// A clap error as one line: its message and the lines that complete it
/// (the missing argument's name), without usage and tips.
pub fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim);
    let first = parts
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        first.to_string()
    } else {
        format!("{first} {}", rest.join(" "))
    }
}

/// Opens an existing data directory read-only ([`Engine::open_read_only`]), for
/// the subcommands that only look: they never change what they look at, and
/// work on a copy they may not write to.
pub fn open_read_only(dir: &Path) -> Result<(Engine, RecoveryReport), CliError> {
    require_dir(dir)?;
    Engine::open_read_only(dir, Options::default()).map_err(engine_err(dir))
}

/// Opens an existing data directory for an offline subcommand that writes.
pub fn open_existing(dir: &Path) -> Result<(Engine, RecoveryReport), CliError> {
    require_dir(dir)?;
    let opts = Options::default().with_background_compaction(false);
    Engine::open(dir, opts).map_err(engine_err(dir))
}

fn require_dir(dir: &Path) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Err(CliError::Io {
            action: "opening data directory",
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    Ok(())
}

/// Wraps an engine error with the directory it happened in.
pub fn engine_err(dir: &Path) -> impl FnOnce(engine::Error) -> CliError + '_ {
    move |source| CliError::Engine {
        path: dir.to_path_buf(),
        source,
    }
}

/// The recovery report as one human line.
pub fn summary(report: &RecoveryReport) -> String {
    let mut s = format!(
        "{} live keys, {} records, {} sealed segments ({} from hints), {} bytes truncated, \
         {} batches discarded, {} corrupt records, {} leftovers removed, in {} ms",
        report.live_keys,
        report.records,
        report.segments,
        report.hints_used,
        report.bytes_truncated,
        report.batches_discarded,
        report.corrupt_records,
        report.leftovers_removed,
        report.duration.as_millis()
    );
    if let Some(backup) = &report.migrated_legacy_backup {
        s.push_str(&format!(
            "; migrated {} legacy operations, original kept as {}",
            report.legacy_operations,
            backup.display()
        ));
    }
    s
}
