//! Compaction: how fast live data is rewritten (MB/s), and the p99 latency of
//! writes while a compaction runs compared with no compaction.
//!
//! `cargo bench --no-default-features --bench compaction` (set `COMPACTION_THREADS`
//! to override the default worker count); under `cargo test
//! --benches` (no `--bench` argument) it runs tiny sizes once as a smoke test.
#![allow(clippy::unwrap_used, reason = "a bench fails loudly")]

use std::time::{Duration, Instant};

use kvstore::engine::{Engine, Options, SyncMode};

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// p99, p99.9 and max.
fn tail(mut lat: Vec<Duration>) -> [Duration; 3] {
    lat.sort_unstable();
    let at = |permille: usize| lat.get(lat.len() * permille / 1000).copied();
    [
        at(990).unwrap_or_default(),
        at(999).unwrap_or_default(),
        lat.last().copied().unwrap_or_default(),
    ]
}

/// Times `writes` single puts (sync never) while `compact` runs or not:
/// p99, p99.9 and max.
fn write_latencies(db: &Engine, keys: u64, writes: u64, compact: bool) -> [Duration; 3] {
    let compactor = compact.then(|| {
        let db = db.clone();
        std::thread::spawn(move || {
            let r = db.compact().unwrap();
            assert!(r.reclaimed_bytes > 0, "{r:?}");
            r
        })
    });
    let mut lat = Vec::with_capacity(usize::try_from(writes).unwrap());
    for i in 0..writes {
        let t = Instant::now();
        db.put(&key(i % keys), &[9u8; 100]).unwrap();
        lat.push(t.elapsed());
    }
    if let Some(c) = compactor {
        c.join().unwrap();
    }
    tail(lat)
}

/// `rounds` overwrites of every key, then one of the even keys only: every
/// segment of the last full round is then half dead and half live, so
/// compaction has to rewrite it (a wholly live segment is left as it is).
fn load(db: &Engine, keys: u64, rounds: u64) {
    for round in 0..=rounds {
        for i in (0..keys).filter(|i| round < rounds || i % 2 == 0) {
            db.put(&key(i), &[u8::try_from(round % 200).unwrap(); 100])
                .unwrap();
        }
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (keys, writes) = if bench {
        (1_000_000, 200_000)
    } else {
        (2_000, 2_000)
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_sync(SyncMode::Never)
        .with_segment_bytes(if bench { 64 << 20 } else { 64 << 10 })
        .with_background_compaction(false)
        .with_compaction_threads(
            std::env::var("COMPACTION_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(Options::default().compaction_threads),
        );
    let (db, _) = Engine::open(dir.path(), opts).unwrap();

    // Throughput: 1M keys overwritten two and a half times, then one compaction.
    load(&db, keys, 2);
    let r = db.compact().unwrap();
    let s = db.stats();
    let mb = r.live_bytes_rewritten as f64 / 1e6;
    let rate = |ms: u64| mb / (ms.max(1) as f64 / 1e3);
    println!(
        "compaction: rewrote {mb:.1} MB of live data in {} ms = {:.0} MB/s end to end; \
         rewrite phase {} ms = {:.0} MB/s; deleting inputs {} ms; reclaimed {:.1} MB; \
         disk/live(key+value) = {:.3}",
        r.duration_ms,
        rate(r.duration_ms),
        r.rewrite_ms,
        rate(r.rewrite_ms),
        r.retire_ms,
        r.reclaimed_bytes as f64 / 1e6,
        s.disk_bytes as f64 / (s.live_keys * (16 + 100)) as f64
    );
    assert_eq!(s.live_keys, keys);

    // Write latency with and without a compaction running.
    load(&db, keys, 1);
    let quiet = write_latencies(&db, keys, writes, false);
    load(&db, keys, 1);
    let busy = write_latencies(&db, keys, writes, true);
    println!(
        "write p99: {:?} without compaction, {:?} during compaction ({:.2}x); \
         p99.9 {:?} / {:?}; max {:?} / {:?}",
        quiet[0],
        busy[0],
        busy[0].as_secs_f64() / quiet[0].as_secs_f64().max(1e-9),
        quiet[1],
        busy[1],
        quiet[2],
        busy[2],
    );
    db.close().unwrap();
}
