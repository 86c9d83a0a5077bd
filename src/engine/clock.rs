//! The clock seam: expiry compares against [`Clock::now_ms`], so tests can move
//! time instead of sleeping.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    /// Now, in ms since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(now_ms)))
    }
    /// Moves time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The time of one operation, read from the clock at most once and only when
/// an expiry needs comparing with it: most writes carry none and replace
/// entries with none, and a clock read is a few percent of a buffered put.
pub(crate) struct LazyNow<'c> {
    clock: &'c dyn Clock,
    at: std::cell::Cell<Option<u64>>,
}

impl<'c> LazyNow<'c> {
    pub(crate) fn new(clock: &'c dyn Clock) -> LazyNow<'c> {
        LazyNow {
            clock,
            at: std::cell::Cell::new(None),
        }
    }

    /// Now, as first read.
    pub(crate) fn get(&self) -> u64 {
        match self.at.get() {
            Some(now) => now,
            None => {
                let now = self.clock.now_ms();
                self.at.set(Some(now));
                now
            }
        }
    }

    /// Whether an absolute expiry (0 = never) has passed; reads the clock
    /// only for a real one.
    pub(crate) fn passed(&self, expiry: u64) -> bool {
        expiry != 0 && expiry <= self.get()
    }
}
