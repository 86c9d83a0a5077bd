//! Installing one step: manifest, outputs renamed into place, the in-memory
//! swap, and the retirement of the inputs.
//!
//! Invariants: the manifest is durable before the first rename and removed only
//! after the last input is deleted (so an open always knows which side is
//! meant); a keydir entry moves to its copy only if it still names the record
//! that was copied (a write made meanwhile keeps its newer location); inputs
//! leave the segment set only after no keydir entry names them; a failed
//! retirement latches the engine read-only, since only an open may finish it.

use std::path::Path;
use std::sync::Arc;

use super::super::dir;
use super::super::dir::MANIFEST;
use super::super::error::{Error, Result};
use super::super::fs::Fs;
use super::super::segment::active::write_file_atomically;
use super::super::segment::sealed::SealedSegment;
use super::super::stats::Counters;
use super::super::{SegmentId, Shared};
use super::SWAP_CHUNK;
use super::manifest;
use super::output::{Move, Output};

impl Shared {
    /// Manifest, then outputs into place.
    pub(super) fn install(&self, inputs: &[SegmentId], outputs: &[SegmentId]) -> Result<()> {
        let fs = &*self.opts.fs;
        let manifest = self.dir.join(MANIFEST);
        write_file_atomically(
            fs,
            &self.dir,
            &manifest,
            manifest::encode(inputs, outputs).as_bytes(),
        )?;
        let renamed = (|| {
            for &id in outputs {
                for path in [
                    dir::segment_path(&self.dir, id),
                    dir::hint_path(&self.dir, id),
                ] {
                    let tmp = dir::tmp_path(&path);
                    fs.rename(&tmp, &path)
                        .map_err(|e| Error::io("installing compacted", &tmp, e))?;
                }
            }
            fs.sync_dir(&self.dir)
                .map_err(|e| Error::io("syncing directory", &self.dir, e))
        })();
        if let Err(e) = renamed {
            // Roll back now if we can; otherwise the next open does (manifest).
            let undo = (|| -> std::io::Result<()> {
                for &id in outputs {
                    remove_if_present(fs, &dir::segment_path(&self.dir, id))?;
                    remove_if_present(fs, &dir::hint_path(&self.dir, id))?;
                }
                fs.remove_file(&manifest)?;
                fs.sync_dir(&self.dir)
            })();
            if let Err(u) = undo {
                // Outputs and manifest may be left in place: as after a failed
                // retirement, only the next open may decide what they mean.
                tracing::warn!(error = %u, "could not roll back compaction; the next open will");
                self.latch(&Error::io("rolling back compaction", &self.dir, u));
            }
            return Err(e);
        }
        Ok(())
    }

    /// The in-memory swap.
    pub(super) fn swap(
        &self,
        inputs: &[Arc<SealedSegment>],
        outputs: &[Output],
        moves: &[Move],
    ) -> Result<()> {
        let mut mapped = Vec::with_capacity(outputs.len());
        for o in outputs {
            let seg = SealedSegment::open(o.id, &dir::segment_path(&self.dir, o.id)).inspect_err(
                |e| {
                    // The outputs are in place on disk but unusable here: keep serving
                    // the inputs, and let the next open finish from the manifest.
                    self.latch(e);
                },
            )?;
            mapped.push(Arc::new(seg));
        }
        {
            let mut set = self.segments_write()?;
            for seg in mapped {
                set.sealed.insert(seg.id(), seg);
            }
        }
        for chunk in moves.chunks(SWAP_CHUNK) {
            self.keydir_write()?
                .relocate_sorted(chunk.iter().map(|m| (&m.key, &m.old, m.new_entry())));
        }
        let c = &self.counters;
        {
            let mut set = self.segments_write()?;
            for seg in inputs {
                set.sealed.remove(&seg.id());
            }
        }
        Counters::add(&c.segments, outputs.len() as u64);
        Counters::add(&c.disk_bytes, outputs.iter().map(|o| o.len).sum());
        Ok(())
    }

    /// Deletes inputs oldest first, then the manifest.
    pub(super) fn retire(&self, inputs: &[SegmentId]) -> Result<()> {
        let fs = &*self.opts.fs;
        let c = &self.counters;
        for &id in inputs {
            let seg = dir::segment_path(&self.dir, id);
            let len = std::fs::metadata(&seg).map(|m| m.len()).unwrap_or(0);
            remove_if_present(fs, &dir::hint_path(&self.dir, id))
                .and_then(|()| remove_if_present(fs, &seg))
                .map_err(|e| Error::io("removing compacted", &seg, e))?;
            Counters::sub(&c.disk_bytes, len);
            Counters::sub(&c.segments, 1);
        }
        let manifest = self.dir.join(MANIFEST);
        fs.sync_dir(&self.dir)
            .and_then(|()| fs.remove_file(&manifest))
            .and_then(|()| fs.sync_dir(&self.dir))
            .map_err(|e| Error::io("removing", &manifest, e))
    }
}

fn remove_if_present(fs: &dyn Fs, path: &Path) -> std::io::Result<()> {
    match fs.remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
