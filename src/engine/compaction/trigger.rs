//! When a compaction starts on its own: the background trigger on dead bytes.
//!
//! Invariant: at most one background compaction thread exists, and a failed
//! one is not retried until dead bytes grew by `compaction_min_bytes` again (a
//! damaged record stays damaged; retrying at once would spin).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::super::Shared;
use super::super::stats::Counters;

impl Shared {
    /// Starts a background compaction when dead bytes pass both thresholds.
    pub(crate) fn maybe_compact_in_background(self: &Arc<Self>) {
        if !self.opts.background_compaction || self.compaction.stopping.load(Ordering::SeqCst) {
            return;
        }
        let disk = Counters::get(&self.counters.disk_bytes);
        let dead = self.dead_bytes();
        let floor = self.compaction.dead_after_last.load(Ordering::Relaxed);
        let due = dead as f64 > self.opts.compaction_ratio * disk as f64
            && dead > self.opts.compaction_min_bytes
            && dead >= floor.saturating_add(self.opts.compaction_min_bytes);
        if !due {
            return;
        }
        let Ok(mut slot) = self.lock(&self.compaction.background, "the compaction thread slot")
        else {
            return;
        };
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        // A finished thread's panic was caught in `compact`, which latched the
        // engine: joining can only report what is already known.
        if let Some(h) = slot.take()
            && h.join().is_err()
        {
            tracing::error!("compaction thread panicked");
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kvstore-compaction".into())
            .spawn(move || match me.compact(false) {
                Ok(r) => tracing::info!(?r, "background compaction finished"),
                Err(e) => {
                    me.compaction
                        .dead_after_last
                        .store(me.dead_bytes(), Ordering::Relaxed);
                    tracing::warn!(error = %e, "background compaction failed");
                }
            });
        match spawned {
            Ok(h) => *slot = Some(h),
            Err(e) => tracing::warn!(error = %e, "could not start compaction thread"),
        }
    }

    /// Disk bytes not holding a live record.
    pub(super) fn dead_bytes(&self) -> u64 {
        // A poisoned keydir has latched the engine; no compaction is due then.
        let Ok(kd) = self.keydir_read() else {
            return 0;
        };
        let live = kd.live_record_bytes();
        drop(kd);
        Counters::get(&self.counters.disk_bytes).saturating_sub(live)
    }
}
