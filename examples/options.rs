//! Options: segment size (rotation into sealed segments with hint files), sync
//! modes and their fsync counts, size limits, and validation of bad settings.
//!
//! `cargo run --example options --no-default-features`

#![allow(clippy::unwrap_used, reason = "an example should fail loudly")]

use std::time::Duration;

use kvstore::engine::{Engine, Error, Options, SyncMode};

fn main() {
    segments_rotate();
    sync_modes();
    limits();
    validation();
    println!("ok");
}

/// A small `segment_bytes` seals `wal.log` often; sealed segments get hint
/// files, and the next open loads the hints instead of scanning.
fn segments_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_segment_bytes(64 << 10)
        .with_sync(SyncMode::Never);
    let (db, _) = Engine::open(dir.path(), opts.clone()).unwrap();
    let value = [7u8; 1000];
    for i in 0..500u32 {
        db.put(format!("key:{i:05}").as_bytes(), &value).unwrap();
    }
    let stats = db.stats();
    println!(
        "segment_bytes 64 KiB, 500 x 1 KB: {} segment files, {} disk bytes",
        stats.segments, stats.disk_bytes
    );
    assert!(stats.segments >= 7);
    db.close().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    println!("files: {}", files.join(" "));
    assert!(files.iter().any(|f| f == "wal.log"));
    assert!(files.iter().any(|f| f.ends_with(".hint")));

    let (db, report) = Engine::open(dir.path(), opts).unwrap();
    println!(
        "reopen: {} sealed segments, {} from hint files, {} live keys",
        report.segments, report.hints_used, report.live_keys
    );
    assert_eq!(report.hints_used, report.segments);
    assert_eq!(report.live_keys, 500);
    db.close().unwrap();
}

/// Always fsyncs before acknowledging; periodic at most once per interval;
/// never leaves it to the OS (close still syncs).
fn sync_modes() {
    for sync in [
        SyncMode::Always,
        SyncMode::Periodic(Duration::from_secs(60)),
        SyncMode::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default().with_sync(sync);
        let (db, _) = Engine::open(dir.path(), opts).unwrap();
        for i in 0..20u32 {
            db.put(&i.to_be_bytes(), b"v").unwrap();
        }
        let s = db.stats();
        println!("{sync:?}: 20 puts, {} fsyncs", s.fsyncs);
        match sync {
            SyncMode::Always => assert_eq!(s.fsyncs, 20),
            // The first write syncs when no sync happened for an interval since
            // open; none within the next 60 s.
            SyncMode::Periodic(_) => assert!(s.fsyncs <= 1),
            SyncMode::Never => assert_eq!(s.fsyncs, 0),
        }
        db.sync().unwrap();
        db.close().unwrap();
    }
}

/// Keys and values longer than the limits are refused with a typed error.
fn limits() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_max_key_bytes(8)
        .with_max_value_bytes(16);
    let (db, _) = Engine::open(dir.path(), opts).unwrap();
    db.put(b"12345678", b"0123456789abcdef").unwrap();
    let key_err = db.put(b"123456789", b"v").unwrap_err();
    let value_err = db.put(b"k", &[0u8; 17]).unwrap_err();
    println!("max_key_bytes 8: {key_err}");
    println!("max_value_bytes 16: {value_err}");
    assert!(matches!(key_err, Error::KeyTooLarge { len: 9, max: 8 }));
    assert!(matches!(
        value_err,
        Error::ValueTooLarge { len: 17, max: 16 }
    ));
    assert!(matches!(db.put(b"", b"v"), Err(Error::EmptyKey)));
    db.close().unwrap();
}

/// Out-of-range settings are rejected at open, naming the field.
fn validation() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, field) in [
        (Options::default().with_segment_bytes(100), "segment_bytes"),
        (
            Options::default().with_sync(SyncMode::Periodic(Duration::ZERO)),
            "sync",
        ),
        (
            Options::default().with_compaction_ratio(0.0),
            "compaction_ratio",
        ),
        (
            Options::default().with_compaction_threads(0),
            "compaction_threads",
        ),
    ] {
        let err = Engine::open(dir.path(), bad).unwrap_err();
        println!("rejected: {err}");
        assert!(matches!(err, Error::InvalidOption { name, .. } if name == field));
    }
}
