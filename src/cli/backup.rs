//! `kvstore backup --to DIR`: a consistent point-in-time copy of a store
//! that opens as a data directory of its own (`Engine::backup`).
//!
//! - `--data-dir D` (the default, like the other offline tools): the
//!   directory is opened read-only (its lock taken shared, as `verify` and
//!   `export` do), so it is never changed and a running server holding it
//!   makes the command fail with a pointer to `--url`;
//! - `--url URL`: the running server makes the backup (`POST /admin/backup`);
//!   `--to` is resolved against this command's working directory and must be
//!   a path the server can write to.
//!
//! Exit codes: 0 done, 2 a `--to` that cannot be used (exists and is not
//! empty, inside the data directory, no parent) or a bad flag, 3 anything else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::client::http::Http;
use super::client::{ClientError, TargetArgs};
use super::progress::Progress;
use super::{CliError, open_read_only, units};
use crate::engine::Error;

/// Flags of `backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup's directory: must not exist or be empty, outside the data
    /// directory; its parent must exist.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The data directory to back up offline (no server may hold it).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Back up through the server at this URL instead (`--data-dir` is then
    /// not used).
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token sent to the server (with `--url`).
    #[arg(long, env = "KVSTORE_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// How long to wait for the server's backup (`--url`; `90s`, `5m`; plain
    /// numbers are seconds).
    #[arg(long, default_value = "10m", value_parser = units::seconds)]
    pub timeout: Duration,
}

/// The report as both paths print it.
#[derive(Debug, Deserialize)]
struct Report {
    files: u64,
    bytes: u64,
    linked: u64,
    copied: u64,
    live_keys: u64,
    elapsed_ms: u64,
}

/// Backs up and prints one summary line.
pub fn run(args: &BackupArgs) -> Result<ExitCode, CliError> {
    let (from, report) = match &args.url {
        Some(url) => (url.clone(), through_server(args, url)?),
        None => (
            args.data_dir.display().to_string(),
            offline(&args.data_dir, &args.to)?,
        ),
    };
    println!(
        "backed up {from} to {}: {} files ({} linked, {} copied), {} bytes, {} live keys, {} ms",
        args.to.display(),
        report.files,
        report.linked,
        report.copied,
        report.bytes,
        report.live_keys,
        report.elapsed_ms
    );
    Ok(ExitCode::SUCCESS)
}

fn offline(dir: &Path, to: &Path) -> Result<Report, CliError> {
    let (engine, _) = open_read_only(dir).map_err(|e| match e {
        CliError::Engine {
            source: Error::Locked { path },
            ..
        } => CliError::Client(ClientError::Held { path }),
        other => other,
    })?;
    let progress = Progress::spinner().message(format!("backing up {}", dir.display()));
    let r = engine.backup(to).map_err(|e| match e {
        Error::BackupTarget { reason, .. } => bad_target(format!("backup target {reason}")),
        other => super::engine_err(dir)(other),
    });
    drop(progress);
    let r = r?;
    engine.close().map_err(super::engine_err(dir))?;
    Ok(Report {
        files: r.files,
        bytes: r.bytes,
        linked: r.linked,
        copied: r.copied,
        live_keys: r.live_keys,
        elapsed_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

fn through_server(args: &BackupArgs, url: &str) -> Result<Report, CliError> {
    let http = Http::new(&TargetArgs {
        url: url.to_string(),
        auth_token: args.auth_token.clone(),
        data_dir: None,
        timeout: args.timeout,
    })?;
    // The server resolves a relative path against its own working directory,
    // which is not what a user typing it here means.
    let to = std::path::absolute(&args.to).map_err(|source| CliError::Io {
        action: "resolving",
        path: args.to.clone(),
        source,
    })?;
    let Some(to) = to.to_str() else {
        return Err(CliError::Invalid {
            flag: "--to",
            reason: "is not UTF-8, which JSON cannot carry".into(),
        });
    };
    let progress = Progress::spinner().message(format!("backing up through {url}"));
    let answer = http.backup(to);
    drop(progress);
    let body = answer.map_err(|e| match e {
        ClientError::Server {
            status: 400,
            message,
        } => bad_target(message),
        other => CliError::Client(other),
    })?;
    serde_json::from_str(&body).map_err(|e| {
        CliError::Client(ClientError::BadResponse {
            url: format!("{url}/admin/backup"),
            reason: e.to_string(),
        })
    })
}

fn bad_target(reason: String) -> CliError {
    CliError::Invalid {
        flag: "--to",
        reason,
    }
}
