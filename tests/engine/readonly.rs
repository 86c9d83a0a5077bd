//! The read-only open: it serves what a read-write open would, and leaves
//! every byte, name and timestamp of the directory as it found them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::support::append;
use super::support::{open, tiny};
use kvstore::engine::fs::{FaultyFs, FsOp};
use kvstore::engine::{Engine, Error};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// Every entry of `dir`: name, length, mtime and bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (
                name,
                (
                    m.len(),
                    m.modified().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                ),
            )
        })
        .collect()
}

/// A closed directory holding keys 0..200 (odd ones deleted), several sealed
/// segments, a torn `wal.log` tail, a leftover `.tmp` and no `LOCK`.
fn closed_fixture(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let (db, _) = open(dir, tiny());
    let mut model = BTreeMap::new();
    for i in 0..200 {
        let v = format!("v{i}").into_bytes();
        db.put(&key(i), &v).unwrap();
        model.insert(key(i), v);
    }
    for i in (1..200).step_by(2) {
        db.delete(&key(i)).unwrap();
        model.remove(&key(i));
    }
    db.close().unwrap();
    append(&dir.join("wal.log"), b"\x13\x37torn");
    std::fs::write(dir.join("0000000000ff0000.seg.tmp"), b"half written").unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    model
}

fn assert_serves(db: &Engine, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for i in 0..200 {
        assert_eq!(
            db.get(&key(i)).unwrap().as_ref(),
            model.get(&key(i)),
            "key {i}"
        );
    }
    assert_eq!(db.stats().live_keys, model.len() as u64);
}

#[test]
fn a_read_only_open_serves_everything_and_changes_no_file() {
    let d = tempfile::tempdir().unwrap();
    let model = closed_fixture(d.path());
    let before = snapshot(d.path());

    let (db, report) = Engine::open_read_only(d.path(), tiny()).unwrap();
    assert!(db.is_read_only_open());
    assert_eq!(report.bytes_truncated, 6, "{report:?}");
    assert_eq!(report.leftovers_removed, 1, "{report:?}");
    assert_serves(&db, &model);
    db.close().unwrap();
    assert_eq!(
        snapshot(d.path()),
        before,
        "a read-only open changed the directory"
    );

    // A read-write open then does what the read-only one only reported.
    let (db, report) = open(d.path(), tiny());
    assert_eq!(report.bytes_truncated, 6, "{report:?}");
    assert_serves(&db, &model);
    assert_ne!(
        snapshot(d.path()).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn every_write_and_compaction_of_a_read_only_open_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let model = closed_fixture(d.path());
    let before = snapshot(d.path());
    let (db, _) = Engine::open_read_only(d.path(), tiny()).unwrap();
    let refused = |r: Result<_, Error>, what: &str| match r {
        Err(e @ Error::ReadOnlyOpen { .. }) => assert!(e.to_string().contains(what), "{e}"),
        other => panic!("expected ReadOnlyOpen for {what}, got {other:?}"),
    };
    refused(db.put(b"new", b"v").map(|_| ()), "writing");
    refused(db.delete(&key(0)).map(|_| ()), "writing");
    refused(
        db.submit(kvstore::engine::Batch::new()).wait().map(|_| ()),
        "writing",
    );
    refused(db.compact().map(|_| ()), "compacting");
    db.sync().unwrap();
    assert_serves(&db, &model);
    drop(db);
    assert_eq!(snapshot(d.path()), before);
}

#[test]
fn a_read_only_open_rolls_an_interrupted_compaction_forward_in_memory_only() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let (db, _) = open(d.path(), tiny().with_fs(Arc::new(fs.clone())));
    let mut model = BTreeMap::new();
    for round in 0..2u32 {
        for i in 0..150 {
            let v = format!("{round}:{i}").into_bytes();
            db.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    for i in (0..150).step_by(3) {
        db.delete(&key(i)).unwrap();
        model.remove(&key(i));
    }
    // The outputs are in place, the manifest names the inputs, and the inputs
    // (holding older values of every key) could not be deleted.
    fs.fail_from(FsOp::Remove, 1);
    assert!(db.compact().is_err());
    drop(db);
    let before = snapshot(d.path());
    assert!(before.contains_key("COMPACTION"), "{:?}", before.keys());

    let (db, report) = Engine::open_read_only(d.path(), tiny()).unwrap();
    assert!(report.leftovers_removed > 0, "{report:?}");
    for i in 0..150 {
        assert_eq!(
            db.get(&key(i)).unwrap().as_ref(),
            model.get(&key(i)),
            "key {i}"
        );
    }
    drop(db);
    assert_eq!(snapshot(d.path()), before);
}

#[test]
fn a_read_only_open_of_a_directory_open_for_writing_fails_as_locked() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    db.put(b"k", b"v").unwrap();
    let err = Engine::open_read_only(d.path(), tiny()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    db.close().unwrap();
    // Two read-only opens share the directory.
    let (a, _) = Engine::open_read_only(d.path(), tiny()).unwrap();
    let (b, _) = Engine::open_read_only(d.path(), tiny()).unwrap();
    assert_eq!(a.get(b"k").unwrap(), b.get(b"k").unwrap());
}

#[test]
fn a_read_only_open_of_a_missing_directory_fails_and_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    assert!(Engine::open_read_only(&missing, tiny()).is_err());
    assert!(!missing.exists());
}
