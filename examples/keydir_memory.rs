//! Keydir memory: how many bytes of RAM does each key cost?
//!
//! Inserts N keys (default 1M; 16-byte keys, 100-byte values, sync never, in a
//! random order, one `put` each) and reports the growth of the process's
//! anonymous resident memory (`RssAnon` in /proc/self/status; file-backed pages
//! of the mapped sealed segments are excluded) per key. The memtable is
//! anonymous memory too, so it is bounded with 4 MiB segments and its bytes
//! (the current `wal.log` length) are subtracted. Then it re-executes itself to
//! measure the same in a fresh process that recovers the directory from its
//! hint files (the keydir built by recovery rather than by inserts).
//!
//! Linux only. `cargo run --release --example keydir_memory --no-default-features [N]`

#![allow(clippy::unwrap_used, reason = "an example should fail loudly")]

use std::path::Path;
use std::process::Command;

use kvstore::engine::{Engine, Options, SyncMode};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir, keys] = args.as_slice()
        && flag == "--reopen"
    {
        reopen(Path::new(dir), keys.parse().unwrap());
        return;
    }
    let keys: u64 = args.get(1).map_or(1_000_000, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    insert(dir.path(), keys);
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--reopen")
        .arg(dir.path())
        .arg(keys.to_string())
        .status()
        .unwrap();
    assert!(child.success(), "reopen measurement failed");
    println!("ok");
}

fn options() -> Options {
    Options::default()
        .with_segment_bytes(4 << 20)
        .with_sync(SyncMode::Never)
        .with_background_compaction(false)
}

fn insert(dir: &Path, keys: u64) {
    let before = rss();
    let (db, _) = Engine::open(dir, options()).unwrap();
    let opened = rss();
    let value = [b'v'; VALUE_LEN];
    for i in 0..keys {
        db.put(&key(scatter(i, keys)), &value).unwrap();
    }
    let after = rss();
    let stats = db.stats();
    assert_eq!(stats.live_keys, keys);
    let memtable = std::fs::metadata(dir.join("wal.log")).unwrap().len();
    let growth = after
        .anon
        .saturating_sub(opened.anon)
        .saturating_sub(memtable);
    println!(
        "inserted {keys} keys: RssAnon {} -> {} -> {} KiB (before open, open, after puts), \
         VmRSS {} KiB; memtable {memtable} bytes subtracted",
        before.anon >> 10,
        opened.anon >> 10,
        after.anon >> 10,
        after.total >> 10,
    );
    report("after inserts", growth, keys);
    db.close().unwrap();
}

fn reopen(dir: &Path, keys: u64) {
    let before = rss();
    let (db, recovery) = Engine::open(dir, options()).unwrap();
    let after = rss();
    assert_eq!(recovery.live_keys, keys);
    let memtable = std::fs::metadata(dir.join("wal.log")).unwrap().len();
    let growth = after
        .anon
        .saturating_sub(before.anon)
        .saturating_sub(memtable);
    println!(
        "reopened ({} of {} segments from hints, {:?}): RssAnon {} -> {} KiB",
        recovery.hints_used,
        recovery.segments,
        recovery.duration,
        before.anon >> 10,
        after.anon >> 10
    );
    report("after recovery", growth, keys);
    db.close().unwrap();
}

fn report(what: &str, growth: u64, keys: u64) {
    let per_key = growth as f64 / keys as f64;
    let target = (KEY_LEN + 40) as f64;
    println!(
        "keydir {what}: {per_key:.1} bytes/key ({:.1} over the key's {KEY_LEN} bytes; target <= {target})",
        per_key - KEY_LEN as f64
    );
    // A sanity bound, not the target: fail if the measurement is nonsense.
    assert!(
        per_key > KEY_LEN as f64 && per_key < 1000.0,
        "implausible {per_key}"
    );
}

/// The 16-byte key of index `i`.
fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..4].copy_from_slice(b"key:");
    k[4..].copy_from_slice(format!("{i:012}").as_bytes());
    k
}

/// A fixed permutation of `0..n` (999_983 is prime), for a random insert order.
fn scatter(i: u64, n: u64) -> u64 {
    u64::try_from(u128::from(i) * 999_983 % u128::from(n)).unwrap()
}

struct Rss {
    total: u64,
    anon: u64,
}

/// VmRSS and RssAnon of this process, in bytes.
fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib << 10
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
    }
}
