//! The state every handle and engine thread shares, and the helpers every
//! part of the engine uses on it: locks that latch on poison instead of using
//! half-updated state, and the read path. `Engine` (in `mod.rs`) is the handle.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::error::{Error, Fault, Result};
use super::keydir::{Entry, Keydir};
use super::options::{Options, SyncMode};
use super::sealer::{self, SpareSlot};
use super::segment::{SegmentRef, SegmentSet};
use super::stats::Counters;
use super::writer::{Request, Unsynced, Writer};
use super::{compaction, dir, recovery};

/// Lookups one read makes before it reports
/// [`Error::ReadRetriesExhausted`]: each compaction step moves a key once, so
/// losing this many races in a row means something keeps moving it.
const READ_ATTEMPTS: u32 = 16;

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(super) pending: Vec<Request>,
    pub(super) shutdown: bool,
}

/// State shared by every handle and the background thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) opts: Options,
    pub(super) keydir: RwLock<Keydir>,
    pub(super) segments: RwLock<SegmentSet>,
    pub(super) writer: Mutex<Writer>,
    pub(super) queue: Mutex<Queue>,
    /// Whether `queue` may hold requests: set under its lock with each push,
    /// cleared under it with each take. The single-write fast path reads this
    /// instead of taking the lock.
    pub(super) queued: AtomicBool,
    pub(super) queue_cv: Condvar,
    /// Held by whoever syncs `wal.log` and publishes what the sync covered.
    pub(super) sync_lock: Mutex<()>,
    pub(super) unsynced: Mutex<Unsynced>,
    /// Wakes the syncer thread: groups appended, or shutdown.
    pub(super) syncer_cv: Condvar,
    /// Acknowledgements of synced writes not sent yet (see [`Shared::relay`]).
    pub(super) relay: Mutex<super::writer::Relay>,
    /// Whether `relay` may hold any: set under its lock with each push.
    pub(super) relaying: AtomicBool,
    /// The next segment, made ahead of its rotation.
    pub(super) spare: Mutex<SpareSlot>,
    pub(super) spare_wanted: AtomicBool,
    pub(super) sealer: Mutex<sealer::SealerQueue>,
    pub(super) sealer_cv: Condvar,
    pub(super) prefault: Mutex<super::prefault::PrefaultQueue>,
    pub(super) prefault_cv: Condvar,
    pub(super) failure: OnceLock<Fault>,
    pub(super) counters: Counters,
    pub(super) closed: AtomicBool,
    pub(super) compaction: compaction::State,
    pub(super) access: recovery::Mode,
    pub(super) _lock: Option<dir::DirLock>,
}

impl Shared {
    pub(super) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Locks `m`. A lock a panic left poisoned guards state that may be
    /// half-updated: it is never used; the engine latches read-only instead.
    pub(crate) fn lock<'a, T>(
        &self,
        m: &'a Mutex<T>,
        place: &'static str,
    ) -> Result<MutexGuard<'a, T>> {
        m.lock().map_err(|_| self.poisoned(place))
    }

    pub(crate) fn keydir_read(&self) -> Result<RwLockReadGuard<'_, Keydir>> {
        self.keydir.read().map_err(|_| self.poisoned("the keydir"))
    }

    pub(crate) fn keydir_write(&self) -> Result<RwLockWriteGuard<'_, Keydir>> {
        self.keydir.write().map_err(|_| self.poisoned("the keydir"))
    }

    pub(crate) fn segments_read(&self) -> Result<RwLockReadGuard<'_, SegmentSet>> {
        self.segments
            .read()
            .map_err(|_| self.poisoned("the segment set"))
    }

    pub(crate) fn segments_write(&self) -> Result<RwLockWriteGuard<'_, SegmentSet>> {
        self.segments
            .write()
            .map_err(|_| self.poisoned("the segment set"))
    }

    /// The live value of `key` at `now` (read from the clock when `None`, and
    /// then only for an entry that has an expiry: a clock read was 2 % of a
    /// get's time).
    pub(crate) fn read(&self, key: &[u8], now: Option<u64>) -> Result<Option<Vec<u8>>> {
        self.look_up(key, now, |seg, e| match seg {
            SegmentRef::Active(m) => m.read_value(e.offset, key),
            SegmentRef::Sealed(s) => s.read_value(e.offset, key),
        })
    }

    /// What `found` makes of the live record of `key` at `now` (see [`Shared::read`]).
    pub(crate) fn look_up<T>(
        &self,
        key: &[u8],
        now: Option<u64>,
        found: impl Fn(SegmentRef, &Entry) -> Result<T>,
    ) -> Result<Option<T>> {
        // A lookup can race with compaction retiring the segment it found;
        // the keydir then already points at the new copy, so look again.
        for _ in 0..READ_ATTEMPTS {
            let entry = self.keydir_read()?.get(key);
            let Some(e) = entry else { return Ok(None) };
            if e.expiry != 0 && e.is_expired(now.unwrap_or_else(|| self.opts.clock.now_ms())) {
                return Ok(None);
            }
            let seg = self.segments_read()?.get(e.segment);
            match seg {
                Some(seg) => return found(seg, &e).map(Some),
                None => continue,
            }
        }
        Err(Error::ReadRetriesExhausted {
            attempts: READ_ATTEMPTS,
        })
    }

    pub(super) fn sweep_if_due(&self, now: u64) {
        let due = self.keydir_read().is_ok_and(|kd| kd.has_expired(now));
        if due && let Ok(mut kd) = self.keydir_write() {
            kd.sweep(now);
        }
    }

    pub(super) fn sync_now(&self) -> Result<()> {
        self.lead();
        if self.opts.sync == SyncMode::Always {
            self.sync_unsynced(true);
        }
        self.sync_dirty()
    }
}
