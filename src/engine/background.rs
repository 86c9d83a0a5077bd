//! The engine's threads and their lifecycle: spawning them (a panic in one
//! latches the engine instead of hanging its waiters), the background loop
//! (async commits, expiry sweeps, compaction triggers), the syncer loop, and
//! the ordered shutdown that commits, syncs and seals what is left.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use super::error::{Error, Fault, Result};
use super::options::SyncMode;

/// The engine's threads: the background thread (async commits, sweeps,
/// compaction triggers), the syncer (fsyncs and publishes under `Always`,
/// syncs every interval under `Periodic`, watches `wal.log`'s link count),
/// the sealer (finishes rotations, makes spares) and, unless every write
/// syncs, the prefaulter (maps `wal.log`'s pages ahead of the writer).
#[derive(Debug, Default)]
pub(crate) struct Threads {
    background: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
    sealer: Option<JoinHandle<()>>,
    prefault: Option<JoinHandle<()>>,
}

impl Threads {
    /// Starts the threads of a read-write engine into the guard's
    /// slots, one by one: on an error, the guard's shutdown joins whichever
    /// did start.
    pub(crate) fn start(&mut self, shared: &Arc<Shared>) -> Result<()> {
        self.background = Some(shared.spawn("kvstore-engine", Shared::background)?);
        self.syncer = Some(shared.spawn("kvstore-syncer", Shared::syncer)?);
        self.sealer = Some(shared.spawn("kvstore-sealer", Shared::sealer_loop)?);
        if shared.prefaults() {
            self.prefault = Some(shared.spawn("kvstore-prefault", Shared::prefaulter)?);
        }
        Ok(())
    }
}

impl Shared {
    /// Starts an engine thread; a panic in it latches the engine read-only and
    /// fails every waiter, instead of leaving them hanging.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        name: &'static str,
        body: fn(&Arc<Shared>),
    ) -> Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| body(&me));
                if let Err(payload) = std::panic::catch_unwind(run) {
                    me.latch_fault(Fault::panic(name, &*payload));
                    me.fail_everything_waiting();
                }
            })
            .map_err(|e| Error::io("spawning a thread for", &self.dir, e))
    }

    /// After a latch: fails every queued and unsynced request.
    fn fail_everything_waiting(&self) {
        let e = Error::ReadOnly {
            cause: self.failure().unwrap_or(Fault::Other {
                message: "engine failed".into(),
            }),
        };
        self.fail_queued(&e);
        self.sync_unsynced(false);
    }

    /// Stops the threads, commits what is queued and syncs. Idempotent.
    pub(crate) fn shutdown(&self, threads: &Mutex<Threads>) -> Result<()> {
        if let Ok(mut q) = self.queue.lock() {
            q.shutdown = true;
        }
        self.queue_cv.notify_all();
        self.compaction.stop();
        let mut t = match threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        // In order: the background thread commits what was queued, the syncer
        // syncs it, the sealer finishes the rotations.
        join(t.background.take(), "background");
        if let Ok(mut u) = self.unsynced.lock() {
            u.shutdown = true;
        }
        self.syncer_cv.notify_all();
        join(t.syncer.take(), "syncer");
        if t.sealer.is_some() {
            self.seal_large_wal_at_close();
        }
        if let Ok(mut q) = self.sealer.lock() {
            q.shutdown = true;
        }
        self.sealer_cv.notify_all();
        join(t.sealer.take(), "sealer");
        self.stop_prefaulter();
        join(t.prefault.take(), "prefault");
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.sync_now().and_then(|()| self.cut_active());
        // Fail whatever was queued after the last commit.
        self.fail_queued(&Error::Closed);
        if let Ok(mut slot) = self.spare.lock()
            && let Some(s) = slot.spare.take()
        {
            s.discard(&*self.opts.fs);
        }
        match self.failure() {
            Some(cause) => result.and(Err(Error::ReadOnly { cause })),
            None => result,
        }
    }

    /// The background thread: commits async requests, expiry sweeps and
    /// compaction triggers.
    pub(crate) fn background(self: &Arc<Self>) {
        let sweep_every = self.opts.expiry_sweep_interval;
        let tick = sweep_every.min(Duration::from_millis(250));
        let mut last_sweep = Instant::now();
        loop {
            let has_work = {
                let Ok(mut q) = self.lock(&self.queue, "the write queue") else {
                    return;
                };
                if q.pending.is_empty() && !q.shutdown {
                    q = match self.queue_cv.wait_timeout(q, tick) {
                        Ok((q, _)) => q,
                        Err(_) => return,
                    };
                }
                if q.shutdown {
                    break;
                }
                !q.pending.is_empty()
            };
            if has_work {
                self.lead();
            }
            if last_sweep.elapsed() >= sweep_every {
                self.sweep_if_due(self.opts.clock.now_ms());
                last_sweep = Instant::now();
            }
            self.maybe_compact_in_background();
        }
        self.lead();
    }

    /// The syncer thread: under `Always`, syncs and publishes appended groups as
    /// they come (so the appender never waits for an fsync); under `Periodic`,
    /// syncs every interval; in every mode, checks each second that `wal.log`
    /// still has a name.
    pub(crate) fn syncer(self: &Arc<Self>) {
        let every = match self.opts.sync {
            SyncMode::Periodic(d) => Some(d),
            _ => None,
        };
        let tick = every.map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)));
        let (mut last_sync, mut last_check) = (Instant::now(), Instant::now());
        // Whether the last round left the groups to a thread already syncing:
        // that thread syncs until the queue is empty, so wait for a new group
        // rather than spin on its lock (which took a core from the writers).
        let mut left_to_other = false;
        loop {
            let shutdown = {
                let Ok(mut u) = self.lock(&self.unsynced, "the unsynced queue") else {
                    return;
                };
                if (u.is_empty() || left_to_other) && !u.shutdown {
                    let wait = if left_to_other {
                        tick.min(Duration::from_millis(20))
                    } else {
                        tick.saturating_sub(last_sync.elapsed().min(tick))
                    };
                    u = match self
                        .syncer_cv
                        .wait_timeout(u, wait.max(Duration::from_millis(1)))
                    {
                        Ok((u, _)) => u,
                        Err(_) => return,
                    };
                }
                u.shutdown
            };
            left_to_other = !self.sync_unsynced(false);
            if let Some(d) = every
                && last_sync.elapsed() >= d
            {
                let _ = self.sync_dirty();
                last_sync = Instant::now();
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                if let Ok(set) = self.segments_read() {
                    let active = Arc::clone(&set.active);
                    drop(set);
                    let _ = self.check_not_removed(&active);
                }
                last_check = Instant::now();
            }
            if shutdown {
                break;
            }
        }
    }
}

fn join(handle: Option<JoinHandle<()>>, name: &str) {
    if let Some(h) = handle
        && h.join().is_err()
    {
        tracing::error!(thread = name, "engine thread panicked");
    }
}
