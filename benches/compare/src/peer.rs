//! The one small trait every engine in the comparison implements.
//!
//! The harness only ever calls these methods, so each engine is driven by the
//! same loops; an adapter's job is to map them onto the engine's idiomatic,
//! fastest correct use (documented on each adapter).

use std::path::Path;

use crate::error::Result;

/// Whether each write must be on stable storage before `put` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Writes reach the OS (survive a process kill), never fsynced while running.
    Buffered,
    /// Every `put` is fsynced (or covered by a shared fsync) before it returns.
    Synced,
}

/// An engine under comparison, opened on one directory.
pub trait Peer: Sized + Sync {
    /// The engine's name in the table and chart.
    const NAME: &'static str;

    /// A consistent read view for one phase (the engine's cheapest way to run
    /// many reads; for most engines the handle itself).
    type Reader<'a>: Reader
    where
        Self: 'a;

    /// Opens or creates the store in `dir` (an empty or previously used directory).
    fn open(dir: &Path, durability: Durability) -> Result<Self>;

    /// Sets `key` to `value`, durable as opened. Called from many threads at once
    /// in the concurrent durable phase.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// A read view that sees every `put` that returned before it was made.
    fn reader(&self) -> Result<Self::Reader<'_>>;

    /// Makes everything written so far durable (not timed: before disk bytes).
    fn sync(&self) -> Result<()>;

    /// Closes the store cleanly, as a process would before exiting.
    fn close(self) -> Result<()>;
}

/// Reads of a [`Peer`].
pub trait Reader {
    /// Hands the value of `key` to `seen`; says whether the key was present.
    fn get(&self, key: &[u8], seen: impl FnMut(&[u8])) -> Result<bool>;

    /// Hands every live key starting with `prefix` and its value to `visit`, in
    /// the engine's order (sorted for all but the naive log).
    fn scan_prefix(&self, prefix: &[u8], visit: impl FnMut(&[u8], &[u8])) -> Result<()>;
}
