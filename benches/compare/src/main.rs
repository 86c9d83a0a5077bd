//! `kvstore-compare`: kvstore beside a naive append-only log, fjall and redb over
//! the same workload in one process, the way redb's `lmdb_benchmark` compares
//! itself. Prints a markdown table (each peer's ratio to kvstore) and, with
//! `--out DIR`, writes it to `DIR/compare.md` and a bar chart to
//! `DIR/compare.svg`.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- --out docs/bench
//! ```
//!
//! Engines run one after another, each in a fresh directory under `--dir` (a
//! temporary directory by default) that is removed after it. Every phase checks
//! what it reads; a wrong result stops the run with an error, never a number.

mod args;
mod chart;
mod error;
mod peer;
mod peers;
mod phases;
mod report;
mod workload;

use std::path::Path;
use std::process::ExitCode;

use error::{Error, Result};
use peer::Peer;
use phases::Column;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvstore-compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(args) = args::parse(std::env::args().skip(1))? else {
        print!("{}", args::HELP);
        return Ok(());
    };
    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
    let root = tempfile::Builder::new()
        .prefix("kvstore-compare-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io("creating a directory in", &parent, e))?;
    let w = &args.workload;
    let load_before = report::load_average();
    let mut columns = Vec::new();
    for engine in &args.engines {
        let col = match engine.as_str() {
            "kvstore" => one::<peers::kvstore::Kvstore>(root.path(), w)?,
            "naive" => one::<peers::naive::NaiveLog>(root.path(), w)?,
            "fjall" => one::<peers::fjall::Fjall>(root.path(), w)?,
            "redb" => one::<peers::redb::Redb>(root.path(), w)?,
            "bare" => {
                eprintln!("== {}", peers::bare::NAME);
                let mut col = Column::new(peers::bare::NAME);
                col.measures[phases::Phase::DurableSingle.index()] =
                    Some(peers::bare::durable_single_writer(root.path(), w)?);
                col
            }
            other => return Err(Error::Usage(format!("unknown engine {other:?}"))),
        };
        columns.push(col);
    }
    let load = load_before.zip(report::load_average());
    let table = report::markdown(&columns, w, load);
    print!("{table}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
        let md = out.join("compare.md");
        let command = format!(
            "Written by `cargo run --release --manifest-path benches/compare/Cargo.toml -- {}`.\n\n",
            args.command_line
        );
        std::fs::write(&md, command + &table).map_err(|e| Error::io("writing", &md, e))?;
        chart::draw(&out.join("compare.svg"), &columns, w)?;
        eprintln!("wrote {} and compare.svg", md.display());
    }
    Ok(())
}

/// Runs every phase on `P`, logging each finished one to stderr.
fn one<P: Peer>(root: &Path, w: &workload::Workload) -> Result<Column> {
    eprintln!("== {}", P::NAME);
    let shown = std::cell::Cell::new(0);
    let progress = |col: &Column| {
        for phase in phases::Phase::ALL.iter().skip(shown.get()) {
            let Some(m) = col.get(*phase) else { break };
            eprintln!("  {:<28} {}", phase.name(), report::format_measure(m));
            shown.set(shown.get() + 1);
        }
    };
    phases::run::<P>(&root.join(P::NAME), w, &progress)
}
