//! Write throughput: how many puts per second does the engine acknowledge, by
//! sync mode (always / periodic 1 s / never) × value size (100 B / 4 KiB) ×
//! writer threads (1, 4, 16, 64) — and how many writes share one fsync (group
//! commit)?
//!
//! Setup (untimed): each bench id opens a fresh data directory (background
//! compaction off: compaction has its own bench) and starts its writer threads.
//! Timed: every thread puts `iters` random 16-byte keys (uniform over 1M keys for
//! 100 B values, 64 Ki keys for 4 KiB values) and each put's result is checked;
//! criterion reports puts/s. After each round the engine's `writes` counter must
//! have grown by exactly the puts made. After each id, the `stats()` deltas give
//! the writes per fsync, printed as `writes/fsync`.
//!
//! `cargo bench --no-default-features --bench write [-- FILTER]`, e.g. the filter
//! `put_sync_always/100B`. Under `cargo test --benches` each id runs once on a
//! keyspace of 1000 keys.
//!
//! First (skipped when a FILTER is given that is not `tail`), the tail of single
//! put latencies: 10M puts of 100 B values (1M keys, sync never, so every
//! rotation of the default 64 MiB segments is crossed about 18 times) from one
//! thread, each timed on its own; it prints p50, p99, p99.9, p99.99 and max.
//! Beside it, in the same run, the same loop over a control that does no I/O
//! (a `Vec` append and a `HashMap` insert per put): its tail is what the machine
//! itself adds (preemption, page faults), so a kvstore max far above the
//! control's is the engine's own stall.

#![allow(clippy::unwrap_used, reason = "a bench should fail loudly")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use kvstore::engine::{Engine, Options, SyncMode};

use common::{Pool, Rng};

/// Writer threads per bench id.
const THREADS: [usize; 4] = [1, 4, 16, 64];

/// (value length, name, keyspace when benchmarking).
const VALUES: [(usize, &str, u64); 2] = [(100, "100B", 1 << 20), (4096, "4KiB", 1 << 16)];

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    if filter.is_empty() || "tail".contains(filter.as_str()) {
        tail_latency();
    }
    let mut c = common::criterion(Duration::from_secs(1), Duration::from_secs(3), 20);
    puts(&mut c);
    c.final_summary();
}

fn puts(c: &mut Criterion) {
    let modes = [
        (SyncMode::Always, "always"),
        (SyncMode::Periodic(Duration::from_secs(1)), "periodic_1s"),
        (SyncMode::Never, "never"),
    ];
    for (sync, mode) in modes {
        let mut group = c.benchmark_group(format!("put_sync_{mode}"));
        for (value_len, size, keyspace) in VALUES {
            let keyspace = common::scaled(keyspace, 1000);
            for threads in THREADS {
                let id = format!("{size}/{threads}_threads");
                let dir = common::tempdir();
                let opts = Options::default()
                    .with_sync(sync)
                    .with_background_compaction(false);
                let (db, _) = Engine::open(dir.path(), opts).unwrap();
                let pool = Pool::new(threads, put_job(&db, value_len, keyspace));
                let before = db.stats();
                group.throughput(Throughput::Elements(threads as u64));
                group.bench_function(&id, |b| {
                    b.iter_custom(|iters| {
                        let writes = db.stats().writes;
                        let took = pool.round(iters);
                        assert_eq!(db.stats().writes - writes, iters * threads as u64);
                        took
                    });
                });
                let after = db.stats();
                let (w, f) = (after.writes - before.writes, after.fsyncs - before.fsyncs);
                let per_fsync = if f == 0 {
                    "no fsync".to_string()
                } else {
                    format!("{:.1} writes/fsync", common::ratio(w, f))
                };
                println!("put_sync_{mode}/{id}: {w} writes, {f} fsyncs, {per_fsync}");
                drop(pool);
                db.close().unwrap();
            }
        }
        group.finish();
    }
}

/// The work of one writer thread: `ops` puts of random keys from `keyspace`,
/// each result checked.
fn put_job(db: &Engine, value_len: usize, keyspace: u64) -> Arc<common::Job> {
    let db = db.clone();
    let rounds = AtomicU64::new(0);
    Arc::new(move |thread, ops| {
        let round = rounds.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::new(round << 8 | thread as u64);
        let mut value = common::value_for(&common::key(b'k', 0), value_len);
        for _ in 0..ops {
            let key = common::key(b'k', rng.below(keyspace));
            common::stamp(&mut value, &key);
            if let Err(e) = db.put(&key, &value) {
                panic!("put failed: {e}");
            }
        }
    })
}

/// Times each of 10M single puts (10,000 under `cargo test --benches`) through
/// kvstore and through the no-I/O control, and prints both tails.
fn tail_latency() {
    let puts = common::scaled(10_000_000, 10_000);
    let keyspace = common::scaled(1 << 20, 1000);
    let dir = common::tempdir();
    let opts = Options::default()
        .with_sync(SyncMode::Never)
        .with_background_compaction(false);
    let (db, _) = Engine::open(dir.path(), opts).unwrap();
    let mut value = common::value_for(&common::key(b'k', 0), 100);
    let kv = timed_puts(puts, keyspace, &mut value, |key, value| {
        if let Err(e) = db.put(key, value) {
            panic!("put failed: {e}");
        }
    });
    let segments = db.stats().segments;
    db.close().unwrap();
    drop(dir);

    let mut log = Vec::with_capacity(1 << 20);
    let mut index = std::collections::HashMap::new();
    let control = timed_puts(puts, keyspace, &mut value, |key, value| {
        if log.len() > 64 << 20 {
            log.clear();
        }
        let at = log.len();
        log.extend_from_slice(key);
        log.extend_from_slice(value);
        index.insert(key.to_vec(), at);
    });
    std::hint::black_box((&log, &index));

    println!("put latency, {puts} puts of 100 B, sync never, one thread ({segments} segments):");
    println!(
        "  {:<8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "", "p50", "p99", "p99.9", "p99.99", "max"
    );
    for (name, mut lat) in [("kvstore", kv), ("control", control)] {
        lat.sort_unstable();
        // The quantile given in parts per million.
        let at = |ppm: u128| {
            let i = usize::try_from((lat.len() as u128 - 1) * ppm / 1_000_000).unwrap_or(0);
            format!("{:.1}us", lat[i] as f64 / 1000.0)
        };
        println!(
            "  {:<8} {:>8} {:>8} {:>8} {:>8} {:>10}",
            name,
            at(500_000),
            at(990_000),
            at(999_000),
            at(999_900),
            at(1_000_000)
        );
    }
}

/// Runs `puts` puts of random keys through `put`, returning each one's
/// nanoseconds.
fn timed_puts(
    puts: u64,
    keyspace: u64,
    value: &mut [u8],
    mut put: impl FnMut(&[u8], &[u8]),
) -> Vec<u64> {
    let mut rng = Rng::new(0x7a11);
    let mut lat = Vec::with_capacity(usize::try_from(puts).unwrap_or(0));
    for _ in 0..puts {
        let key = common::key(b'k', rng.below(keyspace));
        common::stamp(value, &key);
        let start = std::time::Instant::now();
        put(&key, value);
        lat.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    lat
}
