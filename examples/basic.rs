//! The basics: open a data directory, put, get, overwrite, delete, close, and
//! reopen to find the data recovered from disk.
//!
//! `cargo run --example basic --no-default-features`

#![allow(clippy::unwrap_used, reason = "an example should fail loudly")]

use kvstore::engine::{Engine, Options, Prior};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!("data directory: {}", dir.path().display());

    // A fresh directory recovers nothing.
    let (db, report) = Engine::open(dir.path(), Options::default()).unwrap();
    println!("opened: {} keys recovered", report.live_keys);
    assert_eq!(report.live_keys, 0);

    // A put says whether it replaced a live value.
    assert_eq!(db.put(b"language", b"rust").unwrap(), Prior::Absent);
    assert_eq!(db.put(b"editor", b"vim").unwrap(), Prior::Absent);
    assert_eq!(db.put(b"editor", b"helix").unwrap(), Prior::Live);
    let editor = db.get(b"editor").unwrap();
    println!(
        "editor = {}",
        String::from_utf8_lossy(editor.as_deref().unwrap())
    );
    assert_eq!(editor.as_deref(), Some(&b"helix"[..]));

    // A delete says whether there was something to delete; the key then reads as absent.
    assert_eq!(db.delete(b"language").unwrap(), Prior::Live);
    assert_eq!(db.delete(b"language").unwrap(), Prior::Absent);
    assert_eq!(db.get(b"language").unwrap(), None);
    println!("language deleted: get returns None");

    // Values are bytes: anything goes, including the empty value.
    db.put(b"empty", b"").unwrap();
    assert_eq!(db.get(b"empty").unwrap(), Some(Vec::new()));

    let stats = db.stats();
    println!(
        "stats: {} live keys, {} live value bytes, {} writes, {} fsyncs (sync mode always)",
        stats.live_keys, stats.live_value_bytes, stats.writes, stats.fsyncs
    );
    assert_eq!(stats.live_keys, 2);
    assert_eq!(stats.live_value_bytes, 5);
    // Each acknowledged write was fsynced first (SyncMode::Always is the default).
    assert!(stats.fsyncs >= stats.writes);

    // Close, reopen: everything acknowledged is recovered from wal.log.
    db.close().unwrap();
    let (db, report) = Engine::open(dir.path(), Options::default()).unwrap();
    println!(
        "reopened: {} records replayed, {} live keys, in {:?}",
        report.records, report.live_keys, report.duration
    );
    assert_eq!(report.live_keys, 2);
    assert_eq!(db.get(b"editor").unwrap().as_deref(), Some(&b"helix"[..]));
    assert_eq!(db.get(b"language").unwrap(), None);

    // A directory is open in one engine at a time (clones share it).
    let second = Engine::open(dir.path(), Options::default());
    println!("opening it twice: {}", second.as_ref().unwrap_err());
    assert!(second.is_err());
    db.close().unwrap();
    println!("ok");
}
