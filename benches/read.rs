//! Read throughput on one thread: how many gets per second for a key whose
//! record is in the memtable (`wal.log`), in a sealed (mmapped) segment, or
//! absent — and how many keys per second a prefix scan visits?
//!
//! Setup (untimed): 1M cold keys (16 bytes, 100-byte values) are loaded in a
//! scattered order with 4 MiB segments, so all of them end up sealed; then a
//! hot set of 10k keys is written until it sits wholly in a fresh `wal.log`
//! behind a rotation. Cold, hot and missing keys interleave in one key range
//! (`k` + number: cold 4i, hot 4i+2 spread over the range, missing 4i+1), so
//! every case walks the same keydir with the same cache behaviour and only the
//! value fetch differs. Every key is read once before timing (which also faults
//! the mapped segments in: the reads are warm).
//! Timed: gets of uniformly random keys, each result checked (value present
//! with the right length and key stamp, or absent for a miss); prefix-scan
//! pages of 1000 keys after a random cold key, each page's count and last key
//! checked.
//!
//! `cargo bench --no-default-features --bench read [-- FILTER]`. Under
//! `cargo test --benches` each id runs once on 1000 cold and 100 hot keys.

#![allow(clippy::unwrap_used, reason = "a bench should fail loudly")]

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kvstore::engine::{Batch, Engine, Options, ScanEnd, SyncMode};

use common::Rng;

const VALUE_LEN: usize = 100;
const PAGE: u64 = 1000;
const TAG: u8 = b'k';

/// The i-th cold key.
fn cold_key(i: u64) -> [u8; common::KEY_LEN] {
    common::key(TAG, 4 * i)
}

/// The j-th of `hot` hot keys, spread evenly between the `cold` cold keys.
fn hot_key(j: u64, hot: u64, cold: u64) -> [u8; common::KEY_LEN] {
    common::key(TAG, 4 * (j * (cold / hot)) + 2)
}

/// A key that is never written, between two cold keys.
fn missing_key(i: u64) -> [u8; common::KEY_LEN] {
    common::key(TAG, 4 * i + 1)
}

fn main() {
    let mut c = common::criterion(Duration::from_secs(1), Duration::from_secs(3), 50);
    let cold = common::scaled(1_000_000, 1000);
    let hot = common::scaled(10_000, 100);
    let dir = common::tempdir();
    let db = load(dir.path(), cold, hot);
    gets(&mut c, &db, cold, hot);
    scans(&mut c, &db, cold);
    db.close().unwrap();
    c.final_summary();
}

/// Loads `cold` sealed keys and `hot` keys that all sit in `wal.log`.
fn load(dir: &std::path::Path, cold: u64, hot: u64) -> Engine {
    let opts = Options::default()
        .with_segment_bytes(4 << 20)
        .with_sync(SyncMode::Never)
        .with_background_compaction(false);
    let (db, _) = Engine::open(dir, opts).unwrap();
    let t0 = Instant::now();
    put_all(&db, (0..cold).map(|i| cold_key(common::scattered(i, cold))));
    // Rewrite the hot set until one whole pass follows a rotation and is not
    // interrupted by another: then wal.log holds only hot keys.
    let mut rotated = false;
    loop {
        let segments = db.stats().segments;
        put_all(&db, (0..hot).map(|j| hot_key(j, hot, cold)));
        let now = db.stats().segments;
        if rotated && now == segments {
            break;
        }
        rotated |= now != segments;
    }
    for i in 0..cold {
        check(&db, &cold_key(i));
    }
    for j in 0..hot {
        check(&db, &hot_key(j, hot, cold));
    }
    let s = db.stats();
    println!(
        "loaded {cold} cold + {hot} hot keys in {:.2?}: {} segments, {} disk bytes",
        t0.elapsed(),
        s.segments,
        s.disk_bytes
    );
    assert_eq!(s.live_keys, cold + hot);
    db
}

fn put_all(db: &Engine, keys: impl Iterator<Item = [u8; common::KEY_LEN]>) {
    let mut batch = Batch::new();
    for key in keys {
        batch.put(&key, &common::value_for(&key, VALUE_LEN));
        if batch.len() == 1000 {
            db.apply(std::mem::take(&mut batch)).unwrap();
        }
    }
    if !batch.is_empty() {
        db.apply(batch).unwrap();
    }
}

/// Asserts `key` reads back as the value [`load`] wrote.
fn check(db: &Engine, key: &[u8]) {
    match db.get(key) {
        Ok(Some(v)) if v.len() == VALUE_LEN && v[..key.len()] == *key => {}
        other => panic!("bad read of {}: {other:?}", String::from_utf8_lossy(key)),
    }
}

fn gets(c: &mut Criterion, db: &Engine, cold: u64, hot: u64) {
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    type Case<'a> = (
        &'a str,
        Box<dyn Fn(&mut Rng) -> [u8; common::KEY_LEN]>,
        bool,
    );
    let cases: [Case; 3] = [
        (
            "memtable_hit",
            Box::new(move |rng| hot_key(rng.below(hot), hot, cold)),
            true,
        ),
        (
            "sealed_hit",
            Box::new(move |rng| cold_key(rng.below(cold))),
            true,
        ),
        (
            "miss",
            Box::new(move |rng| missing_key(rng.below(cold))),
            false,
        ),
    ];
    for (seed, (name, pick, present)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(seed as u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let key = pick(&mut rng);
                    if present {
                        check(db, &key);
                    } else {
                        assert_eq!(db.get(&key).unwrap(), None);
                    }
                }
                t0.elapsed()
            });
        });
    }
    group.finish();
}

fn scans(c: &mut Criterion, db: &Engine, cold: u64) {
    let mut group = c.benchmark_group("prefix_scan");
    let page = PAGE.min(cold / 2);
    group.throughput(Throughput::Elements(page));
    let mut rng = Rng::new(7);
    let limit = usize::try_from(page).unwrap();
    group.bench_function(format!("page_of_{page}"), |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let after = cold_key(rng.below(cold - page));
                let mut seen = 0u64;
                let mut last = after;
                let end = db.scan_prefix_with(&[TAG], Some(&after), limit, |k| {
                    seen += 1;
                    last.copy_from_slice(k);
                });
                assert_eq!((seen, end), (page, ScanEnd::More));
                assert!(last > after);
            }
            t0.elapsed()
        });
    });
    group.finish();
}
