//! The read-only latch: the first fault that leaves the engine unable to
//! promise durability (a failed fsync, a removed `wal.log`, a panic under a
//! lock) is kept, and every later write is refused with it as its typed cause
//! (`Error::ReadOnly { cause }`). Reads go on; a restart recovers from disk.

use super::Shared;
use super::error::{Error, Fault, Result};
use super::memtable::Memtable;

impl Shared {
    /// Latches the engine read-only after `e`.
    pub(crate) fn latch(&self, e: &Error) {
        self.latch_fault(Fault::of(e));
    }

    /// Latches the engine read-only with `fault` (the first fault wins).
    pub(crate) fn latch_fault(&self, fault: Fault) {
        if self.failure.set(fault).is_ok() {
            if let Some(f) = self.failure.get() {
                tracing::error!(fault = %f, "engine is now read-only");
            }
            self.counters
                .read_only
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The fault that latched the engine, if any.
    pub(crate) fn failure(&self) -> Option<Fault> {
        self.failure.get().cloned()
    }

    /// Latches after `e`; the error for the write that met it.
    pub(crate) fn latch_and_refuse(&self, e: &Error) -> Error {
        self.latch_and_refuse_with(Fault::of(e))
    }

    /// Latches the engine for a lock a panic poisoned; the error to return.
    pub(crate) fn poisoned(&self, place: &'static str) -> Error {
        self.latch_and_refuse_with(Fault::Panic {
            place,
            message: "a panic while the lock was held".into(),
        })
    }

    /// Latches with `fault` and returns the error for the caller: read-only,
    /// with the fault that latched first (this one, unless another won).
    pub(crate) fn latch_and_refuse_with(&self, fault: Fault) -> Error {
        self.latch_fault(fault.clone());
        Error::ReadOnly {
            cause: self.failure().unwrap_or(fault),
        }
    }

    /// Fails (and latches) once `m`'s file has no name left: writes acknowledged
    /// into an unlinked `wal.log` would be lost with it.
    pub(crate) fn check_not_removed(&self, m: &Memtable) -> Result<()> {
        match m.with_file(|f| f.link_count()) {
            Ok(0) => {
                let e = Error::ReadOnly {
                    cause: Fault::Removed {
                        path: m.path().to_path_buf(),
                    },
                };
                self.latch(&e);
                Err(e)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(Error::io("checking", m.path(), e)),
        }
    }
}
