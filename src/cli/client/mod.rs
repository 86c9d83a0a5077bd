//! The client commands (`get`, `put`, `delete`, `list`, `batch`, `stats`)
//! and the [`Target`] they run against: a running server over HTTP
//! ([`http::Http`]) or a data directory no server holds, through the engine
//! ([`direct::Direct`]). Both the one-shot commands and `kvstore shell` go
//! through [`ops::execute`], so they share parsing, output and exit codes.
//!
//! Invariants:
//! - Values cross the [`Target`] as JSON text, exactly as stored (the HTTP
//!   target splices the server's bytes; the direct target hands back the
//!   engine's bytes, which the server would have sent).
//! - Exit codes: 0 done/found, 1 not found, 2 usage, 3 any other failure
//!   (see [`CliError::exit_code`](super::CliError::exit_code)).

pub mod direct;
pub mod http;
pub mod ops;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{CliError, units};

/// Where a client command runs: `--url` (default) or `--data-dir`.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Base URL of a running server.
    #[arg(long, env = "KVSTORE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token sent to the server (when it requires one).
    #[arg(long, env = "KVSTORE_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Work directly on this data directory instead of a server (no server
    /// may have it open).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for the server per request (`10s`, `500ms`; plain
    /// numbers are seconds).
    #[arg(long, default_value = "10s", value_parser = units::seconds)]
    pub timeout: Duration,
}

/// A client command with its target flags.
#[derive(Debug, Clone, Args)]
pub struct Client<T: Args> {
    /// Where it runs.
    #[command(flatten)]
    pub target: TargetArgs,
    /// What it does.
    #[command(flatten)]
    pub op: T,
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The keys, ascending.
    pub keys: Vec<String>,
    /// Whether keys remain after the last one.
    pub more: bool,
}

/// A `set` of a batch or `put`: the value as JSON text, with an optional TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The value, compact JSON text.
    pub value: String,
    /// Seconds to live (`<= 0`: already expired), `None`: forever.
    pub ttl: Option<f64>,
}

/// One operation of a batch file.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOp {
    /// Store a value.
    Set {
        /// The key.
        key: String,
        /// The value and TTL.
        write: Write,
    },
    /// Read a key (sees the batch's earlier operations).
    Get {
        /// The key.
        key: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
}

/// What a client command can talk to. Every method is one request (or one
/// engine call); a missing key is `Ok(None)` / `Ok(false)`, not an error.
pub trait Target {
    /// The value of `key` as JSON text.
    fn get(&self, key: &str) -> Result<Option<String>, ClientError>;
    /// Stores `write` under `key`; `true` when no live value existed.
    fn put(&self, key: &str, write: &Write) -> Result<bool, ClientError>;
    /// Deletes `key`; `false` when it was absent.
    fn delete(&self, key: &str) -> Result<bool, ClientError>;
    /// Up to `limit` keys starting with `prefix` and after `after`.
    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page, ClientError>;
    /// Runs `ops` as one atomic batch; one JSON result object per operation,
    /// as `POST /kv/batch` returns them.
    fn batch(&self, ops: &[BatchOp]) -> Result<Vec<String>, ClientError>;
    /// The store's figures as one JSON object.
    fn stats(&self) -> Result<String, ClientError>;
    /// Ends the session: the direct target closes the engine, making every
    /// write durable.
    fn close(self: Box<Self>) -> Result<(), ClientError>;
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No server answered at the URL.
    #[error(
        "cannot reach a kvstore server at {url}: {reason} (start one with `kvstore serve`, \
         or point --url / KVSTORE_URL at it, or use --data-dir)"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The server answered with an error.
    #[error("server answered {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's `error` message (or its body).
        message: String,
    },
    /// The server answered something that is not the API's JSON.
    #[error("unexpected answer from {url}: {reason} (is --url a kvstore server?)")]
    BadResponse {
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// `--data-dir` is open in a server (or another kvstore process).
    #[error(
        "{} is held by a running kvstore server or another kvstore process: talk to \
         the server with --url instead of --data-dir, or stop it first",
        path.display()
    )]
    Held {
        /// The data directory.
        path: PathBuf,
    },
    /// A stored value that is not UTF-8 JSON text (written by an embedder).
    #[error("the value of {key:?} is not JSON text; read it through the engine API")]
    NotJson {
        /// The key.
        key: String,
    },
    /// A batch file that is not a `/kv/batch` body.
    #[error("{} {where_}: {reason}", path.display())]
    BadBatch {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// "operation 3", or "body".
        where_: String,
        /// What is wrong.
        reason: String,
    },
    /// The engine refused or failed (direct target).
    #[error("{}: {source}", path.display())]
    Engine {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: crate::engine::Error,
    },
    /// A batch file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Output could not be written (a closed pipe, a full disk).
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

/// Opens the target the flags name.
pub fn open(args: &TargetArgs) -> Result<Box<dyn Target>, CliError> {
    match &args.data_dir {
        Some(dir) => Ok(Box::new(direct::Direct::open(dir)?)),
        None => Ok(Box::new(http::Http::new(args)?)),
    }
}

/// Runs one client command and reports its outcome as an exit code.
pub fn run(args: &TargetArgs, op: &ops::Op) -> Result<ExitCode, CliError> {
    let target = open(args)?;
    let mut out = std::io::stdout().lock();
    let outcome = ops::execute(target.as_ref(), op, &mut out);
    // Close the engine (direct target) even when the command failed.
    let closed = target.close();
    let outcome = outcome?;
    closed?;
    match outcome {
        ops::Outcome::Done => Ok(ExitCode::SUCCESS),
        ops::Outcome::NotFound(what) => {
            eprintln!("kvstore: {what}");
            Ok(ExitCode::from(1))
        }
    }
}
