//! Recovery: how long does `Engine::open` take on 1M keys (16-byte keys,
//! 100-byte values) when the sealed segments have hint files, and when it must
//! scan them?
//!
//! Setup (untimed): one data directory is filled with 1M keys (8 MiB segments,
//! so about 95 % of the records are in sealed segments with hint files and the
//! rest in `wal.log`, which every open scans) and closed; a copy of it has its
//! `*.hint` files deleted. Both stay in the page
//! cache, so this measures the engine's CPU work, not the disk.
//! Timed: `Engine::open` only (closing and dropping the keydir is not timed);
//! each open's `RecoveryReport` is checked (every key recovered, hints used or
//! not as intended). Criterion reports keys recovered per second; the time per
//! iteration is the open time.
//!
//! After criterion, each case is opened a few more times and the fastest open
//! is printed as wall time and as the opening thread's CPU time: on a machine
//! shared with other work the CPU time is the steadier figure (recovery runs
//! on the opening thread).
//!
//! `cargo bench --no-default-features --bench recovery [-- FILTER]`. Under
//! `cargo test --benches` each id runs once on 1000 keys (4 KiB segments).

#![allow(clippy::unwrap_used, reason = "a bench should fail loudly")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{SamplingMode, Throughput};
use kvstore::engine::{Batch, Engine, Options, SyncMode};

const VALUE_LEN: usize = 100;

fn main() {
    let mut c = common::criterion(Duration::from_secs(1), Duration::from_secs(8), 10);
    let keys = common::scaled(1_000_000, 1000);
    let opts = Options::default()
        .with_segment_bytes(common::scaled(8 << 20, 4096))
        .with_sync(SyncMode::Never)
        .with_background_compaction(false);
    let hinted = common::tempdir();
    fill(hinted.path(), &opts, keys);
    let scanned = common::tempdir();
    common::copy_dir(hinted.path(), scanned.path());
    let hints = common::remove_hints(scanned.path());
    assert!(hints > 0, "the data set should have sealed segments");

    let mut group = c.benchmark_group(format!("open_{keys}_keys"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(keys));
    for (name, dir, with_hints) in [
        ("with_hints", hinted.path(), true),
        ("by_scan", scanned.path(), false),
    ] {
        let mut last = None;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    let (db, report) = Engine::open(dir, opts.clone()).unwrap();
                    took += t0.elapsed();
                    assert_eq!(report.live_keys, keys);
                    assert_eq!(report.hints_used == report.segments, with_hints);
                    assert!(with_hints || report.hints_used == 0);
                    db.close().unwrap();
                    last = Some(report);
                }
                took
            });
        });
        println!("open_{keys}_keys/{name}: last report {last:?}");
    }
    group.finish();
    for (name, dir) in [("with_hints", hinted.path()), ("by_scan", scanned.path())] {
        let (mut wall, mut cpu) = (Duration::MAX, Duration::MAX);
        for _ in 0..common::scaled(7, 1) {
            let (t0, c0) = (Instant::now(), thread_cpu());
            let (db, report) = Engine::open(dir, opts.clone()).unwrap();
            let (w, c) = (t0.elapsed(), thread_cpu() - c0);
            assert_eq!(report.live_keys, keys);
            db.close().unwrap();
            wall = wall.min(w);
            cpu = cpu.min(c);
        }
        println!("open_{keys}_keys/{name}: fastest open {wall:.2?} wall, {cpu:.2?} CPU");
    }
    c.final_summary();
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill in.
    #[allow(unsafe_code, reason = "a thread's CPU clock has no std wrapper")]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(
        u64::try_from(t.tv_sec).unwrap(),
        u32::try_from(t.tv_nsec).unwrap(),
    )
}

/// Writes `keys` keys in a scattered order, in batches of 1000, and closes.
fn fill(dir: &Path, opts: &Options, keys: u64) {
    let t0 = Instant::now();
    let (db, _) = Engine::open(dir, opts.clone()).unwrap();
    let mut batch = Batch::new();
    for i in 0..keys {
        let key = common::key(b'k', common::scattered(i, keys));
        batch.put(&key, &common::value_for(&key, VALUE_LEN));
        if batch.len() == 1000 {
            db.apply(std::mem::take(&mut batch)).unwrap();
        }
    }
    if !batch.is_empty() {
        db.apply(batch).unwrap();
    }
    let s = db.stats();
    assert_eq!(s.live_keys, keys);
    db.close().unwrap();
    println!(
        "filled {keys} keys in {:.2?}: {} segments, {} disk bytes",
        t0.elapsed(),
        s.segments,
        s.disk_bytes
    );
}
