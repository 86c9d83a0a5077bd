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
//! Beside the engine, a naive append log (a `HashMap` of key to value
//! location, one `pread` per get: what a Bitcask's read path must beat) is
//! read with the same keys and values.
//!
//! The keydir alone (group `keydir_get`): random hits on 1M 16-byte keys put
//! in random order, in the keydir, in the B-tree map it replaced
//! (`BTreeMap<Key, Entry>`) and in a `HashMap<Box<[u8]>, _>` (the naive log's
//! index); and the heap bytes per key of each, measured with a counting
//! global allocator and printed before timing.
//!
//! `cargo bench --no-default-features --bench read [-- FILTER]`. Under
//! `cargo test --benches` each id runs once on 1000 cold and 100 hot keys.

#![allow(clippy::unwrap_used, reason = "a bench should fail loudly")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kvstore::engine::__test_support::{Entry, Key, KeySlice, Keydir};
use kvstore::engine::{Batch, Engine, Options, ScanEnd, SegmentId, SyncMode};

use common::Rng;

/// The system allocator, counting the bytes live: memory per key is the
/// difference across building an index.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counts are added.
#[allow(
    unsafe_code,
    reason = "a counting global allocator is an unsafe trait impl"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Builds something and returns it with the heap bytes it holds.
fn measured<T>(build: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let t = build();
    (t, LIVE.load(Ordering::Relaxed).saturating_sub(before))
}

const VALUE_LEN: usize = 100;
#[allow(clippy::cast_possible_truncation, reason = "100 fits")]
const VALUE_LEN32: u32 = VALUE_LEN as u32;
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
    keydir_gets(&mut c, cold);
    let db = load(dir.path(), cold, hot);
    let naive = NaiveLog::load(dir.path(), cold);
    gets(&mut c, &db, &naive, cold, hot);
    scans(&mut c, &db, cold);
    db.close().unwrap();
    c.final_summary();
}

fn entry(i: u64) -> Entry {
    Entry {
        segment: SegmentId(1 + i % 7),
        offset: u32::try_from(i % (1 << 30)).unwrap(),
        value_len: VALUE_LEN32,
        expiry: 0,
    }
}

/// The three indexes side by side: memory per key, then random gets.
fn keydir_gets(c: &mut Criterion, n: u64) {
    let keys: Vec<[u8; common::KEY_LEN]> =
        (0..n).map(|i| cold_key(common::scattered(i, n))).collect();
    let per_key = |bytes: usize| bytes as f64 / n as f64;
    // The slowest single insert: a hash table's growth rehashes at once.
    let mut slowest = Duration::ZERO;
    let (keydir, kd_bytes) = measured(|| {
        let mut kd = Keydir::default();
        for (i, k) in keys.iter().enumerate() {
            let t0 = Instant::now();
            kd.insert(k, entry(i as u64));
            slowest = slowest.max(t0.elapsed());
        }
        kd
    });
    println!("keydir: slowest of {n} random inserts {slowest:.2?}");
    let (btree, bt_bytes) = measured(|| {
        let mut m = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            m.insert(Key::from_slice(k), entry(i as u64));
        }
        m
    });
    let (hash, hm_bytes) = measured(|| {
        let mut m: HashMap<Box<[u8]>, (u64, u32)> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            m.insert(Box::from(&k[..]), (i as u64, VALUE_LEN32));
        }
        m
    });
    let mut sorted: Vec<(Key, Entry)> = keydir
        .iter()
        .map(|(k, e)| (Key::from_slice(k), e))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let t0 = Instant::now();
    let (built, built_bytes) = measured(|| Keydir::from_sorted(sorted.clone()));
    let built_in = t0.elapsed();
    let t0 = Instant::now();
    let (old_built, old_built_bytes) =
        measured(|| sorted.clone().into_iter().collect::<BTreeMap<Key, Entry>>());
    let old_built_in = t0.elapsed();
    println!(
        "keydir memory, {n} 16-byte keys: random puts {:.1} B/key (B-tree map it replaced {:.1}, \
         naive HashMap<Box<[u8]>> {:.1}); built sorted {:.1} B/key in {built_in:.2?} \
         (B-tree map {:.1} B/key in {old_built_in:.2?}); Keydir::heap_bytes says {:.1}",
        per_key(kd_bytes),
        per_key(bt_bytes),
        per_key(hm_bytes),
        per_key(built_bytes),
        per_key(old_built_bytes),
        per_key(keydir.heap_bytes()),
    );
    assert!(built.iter().eq(keydir.iter()));
    assert_eq!(old_built.len(), built.len());
    drop((built, old_built, sorted));

    let mut group = c.benchmark_group("keydir_get");
    group.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(11);
    group.bench_function("keydir", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let i = rng.below(n);
                let e = keydir.get(&cold_key(i)).unwrap();
                assert_eq!(e.value_len, VALUE_LEN32);
            }
            t0.elapsed()
        });
    });
    group.bench_function("btree_map_before", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let i = rng.below(n);
                let e = btree.get(KeySlice::new(&cold_key(i))).unwrap();
                assert_eq!(e.value_len, VALUE_LEN32);
            }
            t0.elapsed()
        });
    });
    group.bench_function("naive_hashmap", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let i = rng.below(n);
                let e = hash.get(&cold_key(i)[..]).unwrap();
                assert_eq!(e.1, VALUE_LEN32);
            }
            t0.elapsed()
        });
    });
    group.finish();
}

/// The naive append log's read path over the cold keys: one file of values,
/// a `HashMap` from key to (offset, length), a `pread` per get.
struct NaiveLog {
    file: std::fs::File,
    index: HashMap<Box<[u8]>, (u64, u32)>,
}

impl NaiveLog {
    fn load(dir: &std::path::Path, cold: u64) -> NaiveLog {
        let path = dir.join("naive.log");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut index = HashMap::new();
        let mut at = 0u64;
        for i in 0..cold {
            let key = cold_key(common::scattered(i, cold));
            let value = common::value_for(&key, VALUE_LEN);
            std::io::Write::write_all(&mut out, &value).unwrap();
            index.insert(Box::from(&key[..]), (at, VALUE_LEN32));
            at += VALUE_LEN as u64;
        }
        std::io::Write::flush(&mut out).unwrap();
        NaiveLog {
            file: std::fs::File::open(&path).unwrap(),
            index,
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let &(at, len) = self.index.get(key)?;
        let mut v = vec![0; len as usize];
        self.file.read_exact_at(&mut v, at).unwrap();
        Some(v)
    }
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

fn gets(c: &mut Criterion, db: &Engine, naive: &NaiveLog, cold: u64, hot: u64) {
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
    let mut rng = Rng::new(1);
    group.bench_function("naive_log_sealed_hit", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let key = cold_key(rng.below(cold));
                let v = naive.get(&key).unwrap();
                assert!(v.len() == VALUE_LEN && v[..key.len()] == key);
            }
            t0.elapsed()
        });
    });
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
