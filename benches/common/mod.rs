//! Setup shared by the engine benches: bench-or-test sizing, keys and values,
//! a fast deterministic RNG, a barrier-driven thread pool and temp dirs.
//!
//! Included by each bench with `mod common;`; none of this is timed except
//! what a bench calls inside its `iter_custom` routine (key generation and the
//! pool's barriers), which is kept to a few nanoseconds per operation.

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::Criterion;

/// True under `cargo bench` (criterion's `--bench` flag); false under
/// `cargo test --benches`, which runs every bench once in test mode.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` when benchmarking, `tiny` in test mode (CI, debug build, 2 cores).
pub fn scaled(full: u64, tiny: u64) -> u64 {
    if bench_mode() { full } else { tiny }
}

/// A criterion configured from the command line, with short runs: each bench
/// id costs about `warm_up + measurement` seconds.
pub fn criterion(warm_up: Duration, measurement: Duration, samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .sample_size(samples)
        .configure_from_args()
}

/// Key length used throughout: the 16-byte keys.
pub const KEY_LEN: usize = 16;

/// A 16-byte key: `tag` then `i` as 15 zero-padded decimal digits, so keys of
/// one tag sort in the order of `i` (prefix scans rely on it).
#[allow(clippy::cast_possible_truncation, reason = "n % 10 < 10")]
pub fn key(tag: u8, i: u64) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    k[0] = tag;
    let mut n = i;
    for slot in k[1..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// A value of `len` bytes that starts with its key (as far as it fits), so a
/// read can check it got the right record.
pub fn value_for(key: &[u8], len: usize) -> Vec<u8> {
    let mut v = vec![b'v'; len];
    let n = key.len().min(len);
    v[..n].copy_from_slice(&key[..n]);
    v
}

/// Overwrites the key-derived prefix of `buf` (made by [`value_for`]) for `key`.
pub fn stamp(buf: &mut [u8], key: &[u8]) {
    let n = key.len().min(buf.len());
    buf[..n].copy_from_slice(&key[..n]);
}

/// splitmix64: tiny, fast, deterministic per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0), with negligible bias.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the high half of a u128 fits u64"
    )]
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: the high 64 bits of a 128-bit product.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The i-th index of a fixed permutation of `0..n`, used to load keys in a
/// scattered order. `n` must be coprime with the multiplier (true for every n
/// that is not a multiple of 999_983, a prime).
#[allow(
    clippy::cast_possible_truncation,
    reason = "the remainder is below n: u64"
)]
pub fn scattered(i: u64, n: u64) -> u64 {
    (u128::from(i) * 999_983 % u128::from(n)) as u64
}

/// A fresh temp dir for a data directory; under `$KVSTORE_BENCH_DIR` when set
/// (pick a real disk there: fsync on tmpfs is free and would flatter `always`).
pub fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("KVSTORE_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).expect("temp dir under KVSTORE_BENCH_DIR"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// Removes every `*.hint` file in `dir`; returns how many.
pub fn remove_hints(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("listing data dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "hint") {
            std::fs::remove_file(&path).expect("removing hint");
            n += 1;
        }
    }
    n
}

/// Copies the regular files of `from` into `to` (a data dir has no subdirs).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("listing data dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copying data file");
        }
    }
}

/// A job for the pool: `(thread index, operations to do)`.
pub type Job = dyn Fn(usize, u64) + Send + Sync;

/// `threads` workers that each run the same job `ops` times per round, started
/// together by a barrier so a round's time covers only the work.
pub struct Pool {
    ops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Spawns the workers; they wait for [`Pool::round`].
    pub fn new(threads: usize, job: Arc<Job>) -> Pool {
        let ops = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let workers = (0..threads)
            .map(|t| {
                let (ops, stop) = (Arc::clone(&ops), Arc::clone(&stop));
                let (start, done) = (Arc::clone(&start), Arc::clone(&done));
                let job = Arc::clone(&job);
                std::thread::Builder::new()
                    .name(format!("bench-worker-{t}"))
                    .spawn(move || {
                        loop {
                            start.wait();
                            if stop.load(Ordering::SeqCst) {
                                return;
                            }
                            job(t, ops.load(Ordering::SeqCst));
                            done.wait();
                        }
                    })
                    .expect("spawning bench worker")
            })
            .collect();
        Pool {
            ops,
            stop,
            start,
            done,
            workers,
        }
    }

    /// Every worker runs the job for `ops` operations; returns the wall time
    /// from release to the last worker finishing.
    pub fn round(&self, ops: u64) -> Duration {
        self.ops.store(ops, Ordering::SeqCst);
        let t0 = Instant::now();
        self.start.wait();
        self.done.wait();
        t0.elapsed()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.start.wait();
        for w in self.workers.drain(..) {
            w.join().expect("bench worker panicked");
        }
    }
}

/// `a / b` for reporting, `inf` when `b` is 0.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::INFINITY
    } else {
        a as f64 / b as f64
    }
}
