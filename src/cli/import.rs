//! `kvstore import`: loads JSON lines `{"key": k, "value": v, "ttl": s?}`
//! (the export format) from stdin or a file, in atomic batches. The whole
//! input is validated first: a bad line stores nothing.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::progress::Progress;
use super::{CliError, DirArgs};
use crate::engine::{Batch, Engine, Options};
use crate::server::body::{present, ttl_seconds};
use crate::server::minify;
use crate::server::state::expiry_after;

const BATCH: usize = 1000;

/// Flags of `import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The data directory (created if missing).
    #[command(flatten)]
    pub dir: DirArgs,
    /// Read here instead of stdin.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Line<'a> {
    key: String,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttl: Option<&'a RawValue>,
}

/// Imports every line.
pub fn run(args: &ImportArgs) -> Result<ExitCode, CliError> {
    let dir = &args.dir.data_dir;
    let in_path = args.input.clone().unwrap_or_else(|| PathBuf::from("-"));
    let mut text = String::new();
    let read = match &args.input {
        Some(p) => std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut text)),
        None => std::io::stdin().lock().read_to_string(&mut text),
    };
    read.map_err(|source| CliError::Io {
        action: "reading",
        path: in_path.clone(),
        source,
    })?;
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        action: "creating data directory",
        path: dir.clone(),
        source,
    })?;
    let opts = Options::default().with_background_compaction(false);
    let (engine, _report) = Engine::open(dir, opts).map_err(super::engine_err(dir))?;
    let mut batches = vec![Batch::new()];
    let mut count = 0u64;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| CliError::BadLine {
            path: in_path.clone(),
            line: i + 1,
            reason,
        };
        let parsed: Line<'_> = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let value = parsed
            .value
            .ok_or_else(|| bad("missing \"value\"".into()))?;
        let ttl = ttl_seconds(parsed.ttl).map_err(|_| bad("ttl must be a number".into()))?;
        let batch = match batches.last_mut() {
            Some(b) if b.len() < BATCH => b,
            _ => {
                batches.push(Batch::new());
                batches.last_mut().ok_or_else(|| bad("internal".into()))?
            }
        };
        batch.put_with_expiry(
            parsed.key.as_bytes(),
            &minify(value.get()),
            expiry_after(engine.now_ms(), ttl),
        );
        count += 1;
    }
    let progress = Progress::bar(count, "keys").message("importing");
    for batch in batches.into_iter().filter(|b| !b.is_empty()) {
        let n = batch.len() as u64;
        engine.apply(batch).map_err(super::engine_err(dir))?;
        progress.inc(n);
    }
    drop(progress);
    engine.close().map_err(super::engine_err(dir))?;
    eprintln!("imported {count} keys into {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
