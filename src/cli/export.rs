//! `kvstore export`: every live key as a JSON line `{"key": k, "value": v}`,
//! in key order, to stdout or a file. Values are spliced as stored. The data
//! directory is opened read-only: exporting never changes it.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::progress::Progress;
use super::{CliError, DirArgs, open_read_only};
use crate::server::body::Out;

/// Flags of `export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The data directory.
    #[command(flatten)]
    pub dir: DirArgs,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Exports every key.
pub fn run(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let dir = &args.dir.data_dir;
    let out_path = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    let io_err = |source| CliError::Io {
        action: "writing",
        path: out_path.clone(),
        source,
    };
    let (engine, _report) = open_read_only(dir)?;
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(File::create(p).map_err(io_err)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    let mut count = 0u64;
    // Lines going to the same terminal would tear the bar apart.
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let progress = if to_terminal {
        Progress::hidden()
    } else {
        Progress::bar(engine.stats().live_keys, "keys").message("exporting")
    };
    // One iterator over every live pair in key order (the keydir's lock is
    // taken per chunk, never across the writes below).
    for pair in engine.prefix(b"") {
        let pair = pair.map_err(super::engine_err(dir))?;
        let mut line = Out::with_capacity(pair.key().len() + pair.value().len() + 24);
        line.key_value(pair.key(), pair.value()).raw(b"\n");
        w.write_all(&line.into_bytes()).map_err(io_err)?;
        count += 1;
        progress.inc(1);
    }
    w.flush().map_err(io_err)?;
    drop(progress);
    engine.close().map_err(super::engine_err(dir))?;
    eprintln!("exported {count} keys");
    Ok(ExitCode::SUCCESS)
}
