//! The manifest `COMPACTION`: which inputs one compaction step replaces with
//! which outputs, and what an open does when it finds one.
//!
//! The manifest is written whole (`.tmp` + rename) before any output is
//! renamed into place and removed only after every input is deleted, so while
//! it exists exactly one of two states is meant: the inputs (not every output
//! is in place: roll back) or the outputs (all in place: roll forward). Each
//! step of a compaction writes and removes its own manifest; at most one exists.

use std::path::{Path, PathBuf};

use super::super::SegmentId;
use super::super::dir::{self, Listing, MANIFEST, MANIFEST_HEADER};
use super::super::error::{Error, Result};
use super::super::options::Options;
use super::super::recovery::Mode;

/// The manifest's text naming `inputs` and `outputs`.
pub(super) fn encode(inputs: &[SegmentId], outputs: &[SegmentId]) -> String {
    let mut s = format!("{MANIFEST_HEADER}\n");
    for id in inputs {
        s.push_str(&format!("input {id}\n"));
    }
    for id in outputs {
        s.push_str(&format!("output {id}\n"));
    }
    s.push_str("end\n");
    s
}

/// Inputs and outputs of a whole manifest; `None` if it is not one.
fn decode(text: &str) -> Result<(Vec<SegmentId>, Vec<SegmentId>), &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        return Err("its first line is not the manifest header");
    }
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for line in lines {
        if line == "end" {
            return Ok((inputs, outputs));
        }
        let (kind, id) = line
            .split_once(' ')
            .ok_or("a line is not `input <id>`, `output <id>` or `end`")?;
        let id = SegmentId(u64::from_str_radix(id, 16).map_err(|_| "a segment id is not hex")?);
        match kind {
            "input" => inputs.push(id),
            "output" => outputs.push(id),
            _ => return Err("a line is neither an input nor an output"),
        }
    }
    Err("it has no `end` line")
}

/// At open: finishes or undoes a compaction step that a crash interrupted
/// after its manifest was written, and updates `listing` to what remains.
/// Returns how many files were (under [`Mode::Write`]) or would have been
/// (under [`Mode::ReadOnly`], which changes nothing on disk) removed.
pub(crate) fn recover(
    dir: &Path,
    opts: &Options,
    listing: &mut Listing,
    mode: Mode,
) -> Result<usize> {
    let fs = &*opts.fs;
    let manifest = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("reading", &manifest, e)),
    };
    // The manifest is written whole (tmp + rename) or not at all.
    let (inputs, outputs) = decode(&text).map_err(|reason| Error::Manifest {
        path: manifest.clone(),
        reason,
    })?;
    let all_in_place = outputs
        .iter()
        .all(|id| listing.segments.binary_search(id).is_ok());
    let doomed: Vec<SegmentId> = if all_in_place { inputs } else { outputs };
    let mut removed = 0;
    let mut remove = |path: PathBuf| -> Result<()> {
        if path.exists() {
            if mode == Mode::Write {
                fs.remove_file(&path)
                    .map_err(|e| Error::io("removing leftover of compaction", &path, e))?;
            }
            removed += 1;
        }
        Ok(())
    };
    // Oldest first, as a step retires its inputs.
    for &id in &doomed {
        remove(dir::hint_path(dir, id))?;
        remove(dir::segment_path(dir, id))?;
    }
    if mode == Mode::Write {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        fs.remove_file(&manifest)
            .map_err(|e| Error::io("removing", &manifest, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("syncing directory", dir, e))?;
    }
    tracing::info!(
        rolled = if all_in_place { "forward" } else { "back" },
        files = removed,
        ?mode,
        "an interrupted compaction step found at open"
    );
    listing.segments.retain(|id| !doomed.contains(id));
    listing.hints.retain(|id| !doomed.contains(id));
    Ok(removed + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let text = encode(
            &[SegmentId(0x10000), SegmentId(0x20000)],
            &[SegmentId(0x20001)],
        );
        assert_eq!(
            decode(&text),
            Ok((
                vec![SegmentId(0x10000), SegmentId(0x20000)],
                vec![SegmentId(0x20001)]
            ))
        );
        assert!(decode(&text[..text.len() - 4]).is_err());
        assert!(decode("not a manifest\nend\n").is_err());
    }
}
