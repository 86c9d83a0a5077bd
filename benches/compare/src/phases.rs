//! The phases, run in one order on every engine, each timed around its loop
//! only and each checking what it reads.
//!
//! Order (one directory per engine, removed afterwards): sequential load
//! (version 0, buffered) → sync, disk bytes → random overwrite of every key
//! (version 1) → random get of every key → prefix scan of the 16 groups with
//! values → close, then reopen + first get (timed together, reopened durable) →
//! durable single writer (version 2) → durable concurrent writers (version 3)
//! → close.

use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::peer::{Durability, Peer, Reader};
use crate::workload::{PREFIXES, Rng, Workload};

/// The rows of the table, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Keys put in key order, buffered.
    SequentialLoad,
    /// Every key put again in random order, buffered.
    RandomOverwrite,
    /// Every key read in random order.
    RandomGet,
    /// Every key and value read through 16 prefix scans.
    PrefixScan,
    /// Open of the loaded store plus its first get.
    Reopen,
    /// Bytes on disk (allocated blocks) after the load and a sync.
    DiskBytes,
    /// One writer, each put durable before it returns.
    DurableSingle,
    /// Many writers at once, each put durable before it returns.
    DurableConcurrent,
}

impl Phase {
    /// Every phase, in table order.
    pub const ALL: [Phase; 8] = [
        Phase::SequentialLoad,
        Phase::RandomOverwrite,
        Phase::RandomGet,
        Phase::PrefixScan,
        Phase::Reopen,
        Phase::DiskBytes,
        Phase::DurableSingle,
        Phase::DurableConcurrent,
    ];

    /// The phase's position in [`Phase::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The phase's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::SequentialLoad => "sequential load",
            Phase::RandomOverwrite => "random overwrite",
            Phase::RandomGet => "random get",
            Phase::PrefixScan => "prefix scan",
            Phase::Reopen => "reopen + first get",
            Phase::DiskBytes => "disk bytes",
            Phase::DurableSingle => "durable, 1 writer",
            Phase::DurableConcurrent => "durable, concurrent writers",
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// `ops` operations (or items) in `secs` seconds.
    Rate {
        /// Operations completed.
        ops: u64,
        /// Wall time of the loop.
        secs: f64,
    },
    /// A duration, in seconds.
    Secs(f64),
    /// A size, in bytes.
    Bytes(u64),
}

impl Measure {
    /// The number the chart and ratios use: ops/s, seconds or bytes.
    pub fn value(self) -> f64 {
        match self {
            Measure::Rate { ops, secs } => ops as f64 / secs.max(1e-9),
            Measure::Secs(s) => s,
            Measure::Bytes(b) => b as f64,
        }
    }

    /// Whether a bigger number is better (rates), or a smaller one (time, bytes).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Measure::Rate { .. })
    }
}

/// One column of the table: an engine and what each phase measured.
#[derive(Debug, Clone)]
pub struct Column {
    /// The engine's name.
    pub name: &'static str,
    /// Indexed by [`Phase::index`]; `None` where the engine does not run a phase.
    pub measures: [Option<Measure>; 8],
}

impl Column {
    /// A column with nothing measured yet.
    pub fn new(name: &'static str) -> Column {
        Column {
            name,
            measures: [None; 8],
        }
    }

    /// What `phase` measured, if it ran.
    pub fn get(&self, phase: Phase) -> Option<Measure> {
        self.measures[phase.index()]
    }

    fn set(&mut self, phase: Phase, m: Measure) {
        self.measures[phase.index()] = Some(m);
    }
}

/// Runs every phase on engine `P` in a fresh directory `dir`, reporting each
/// finished phase to `progress`.
pub fn run<P: Peer>(dir: &Path, w: &Workload, progress: &dyn Fn(&Column)) -> Result<Column> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let mut col = Column::new(P::NAME);
    let wrong = |phase: Phase, what: String| Error::Wrong {
        engine: P::NAME,
        phase: phase.name(),
        what,
    };
    let mut value = Vec::with_capacity(w.value_bytes);

    let db = P::open(dir, Durability::Buffered)?;
    let start = Instant::now();
    for i in 0..w.keys {
        w.value_into(i, 0, &mut value);
        db.put(&w.key(i), &value)?;
    }
    col.set(Phase::SequentialLoad, rate(w.keys, start));
    db.sync()?;
    col.set(Phase::DiskBytes, Measure::Bytes(disk_bytes(dir)?));
    progress(&col);

    let order = w.permutation(1);
    let start = Instant::now();
    for &i in &order {
        w.value_into(i, 1, &mut value);
        db.put(&w.key(i), &value)?;
    }
    col.set(Phase::RandomOverwrite, rate(w.keys, start));
    progress(&col);

    let order = w.permutation(2);
    let reader = db.reader()?;
    let start = Instant::now();
    for &i in &order {
        let mut ok = false;
        let found = reader.get(&w.key(i), |v| ok = w.value_matches(i, 1, v))?;
        if !(found && ok) {
            return Err(wrong(
                Phase::RandomGet,
                format!("key {i}: found {found}, value right {ok}"),
            ));
        }
    }
    col.set(Phase::RandomGet, rate(w.keys, start));
    progress(&col);

    let start = Instant::now();
    let mut items = 0u64;
    for g in 0..PREFIXES {
        let mut in_group = 0u64;
        let mut bad = None;
        reader.scan_prefix(&Workload::prefix(g), |k, v| {
            in_group += 1;
            let right = Workload::index_of_value(v)
                .is_some_and(|i| i < w.keys && w.key(i) == k && w.value_matches(i, 1, v));
            if !right && bad.is_none() {
                bad = Some(String::from_utf8_lossy(k).into_owned());
            }
        })?;
        if let Some(key) = bad {
            return Err(wrong(
                Phase::PrefixScan,
                format!("key {key} has a wrong value"),
            ));
        }
        if in_group != w.keys_in_group(g) {
            return Err(wrong(
                Phase::PrefixScan,
                format!(
                    "group {g}: {in_group} items, expected {}",
                    w.keys_in_group(g)
                ),
            ));
        }
        items += in_group;
    }
    col.set(Phase::PrefixScan, rate(items, start));
    drop(reader);
    progress(&col);

    db.close()?;
    let probe = w.keys / 2;
    let start = Instant::now();
    let db = P::open(dir, Durability::Synced)?;
    let mut ok = false;
    let found = db
        .reader()?
        .get(&w.key(probe), |v| ok = w.value_matches(probe, 1, v))?;
    let secs = start.elapsed().as_secs_f64();
    if !(found && ok) {
        return Err(wrong(Phase::Reopen, format!("key {probe} lost or wrong")));
    }
    col.set(Phase::Reopen, Measure::Secs(secs));
    progress(&col);

    col.set(
        Phase::DurableSingle,
        durable(&db, w, Phase::DurableSingle, 1, 2)?,
    );
    progress(&col);
    col.set(
        Phase::DurableConcurrent,
        durable(&db, w, Phase::DurableConcurrent, w.durable_threads, 3)?,
    );
    progress(&col);
    db.close()?;
    std::fs::remove_dir_all(dir).map_err(|e| Error::io("removing", dir, e))?;
    Ok(col)
}

/// `threads` writers put random keys at `version`, durably, until the phase's
/// op or time budget runs out; then each writer's last key must read back.
fn durable<P: Peer>(
    db: &P,
    w: &Workload,
    phase: Phase,
    threads: usize,
    version: u64,
) -> Result<Measure> {
    let issued = AtomicU64::new(0);
    let barrier = Barrier::new(threads + 1);
    let limit = Duration::from_secs_f64(w.durable_secs);
    let (last_keys, secs) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (issued, barrier) = (&issued, &barrier);
                s.spawn(move || -> Result<(Option<u64>, u64)> {
                    let mut rng = Rng(version << 32 | t as u64);
                    let mut value = Vec::with_capacity(w.value_bytes);
                    let (mut last, mut done) = (None, 0u64);
                    barrier.wait();
                    let start = Instant::now();
                    while issued.fetch_add(1, Ordering::Relaxed) < w.durable_ops
                        && start.elapsed() < limit
                    {
                        let i = rng.below(w.keys);
                        w.value_into(i, version, &mut value);
                        db.put(&w.key(i), &value)?;
                        last = Some(i);
                        done += 1;
                    }
                    Ok((last, done))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let last: Vec<_> = workers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        (last, start.elapsed().as_secs_f64())
    });
    let reader = db.reader()?;
    let mut ops = 0;
    for outcome in last_keys {
        let (last, done) = outcome?;
        ops += done;
        let Some(i) = last else { continue };
        let mut ok = false;
        reader.get(&w.key(i), |v| ok = w.value_matches(i, version, v))?;
        if !ok {
            return Err(Error::Wrong {
                engine: P::NAME,
                phase: phase.name(),
                what: format!("key {i} does not read back at version {version}"),
            });
        }
    }
    Ok(Measure::Rate { ops, secs })
}

fn rate(ops: u64, start: Instant) -> Measure {
    Measure::Rate {
        ops,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Bytes allocated on disk by every file under `dir` (what `du` says).
pub fn disk_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::io("inspecting", entry.path(), e))?;
        total += if meta.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
