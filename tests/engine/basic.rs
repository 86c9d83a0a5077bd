//! Put, get, delete, batches and scans on one open engine, and across reopen.

use super::support::{open, tiny};
use kvstore::engine::{Batch, Error, OpResult, Options, Prior};

#[test]
fn a_put_is_read_back_and_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), Options::default());
    assert_eq!(db.put(b"k", b"v1").unwrap(), Prior::Absent);
    assert_eq!(db.put(b"k", b"v2").unwrap(), Prior::Live);
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"v2");
    db.close().unwrap();
    let (db, report) = open(d.path(), Options::default());
    assert_eq!(report.live_keys, 1);
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"v2");
}

#[test]
fn delete_says_whether_a_live_value_existed() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), Options::default());
    assert_eq!(db.delete(b"nope").unwrap(), Prior::Absent);
    db.put(b"k", b"v").unwrap();
    assert_eq!(db.delete(b"k").unwrap(), Prior::Live);
    assert_eq!(db.get(b"k").unwrap(), None);
    drop(db);
    let (db, _) = open(d.path(), Options::default());
    assert_eq!(db.get(b"k").unwrap(), None);
}

#[test]
fn many_keys_across_rotations_all_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    for i in 0..2000u32 {
        db.put(format!("key{i:05}").as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    for i in (0..2000u32).step_by(3) {
        db.delete(format!("key{i:05}").as_bytes()).unwrap();
    }
    assert!(db.stats().segments > 10);
    db.close().unwrap();
    let (db, report) = open(d.path(), tiny());
    assert!(report.hints_used > 10, "{report:?}");
    for i in 0..2000u32 {
        let got = db.get(format!("key{i:05}").as_bytes()).unwrap();
        if i % 3 == 0 {
            assert_eq!(got, None);
        } else {
            assert_eq!(got.unwrap(), i.to_le_bytes());
        }
    }
    assert_eq!(db.stats().live_keys, 2000 - 667);
}

#[test]
fn batch_gets_see_earlier_writes_of_the_same_batch() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), Options::default());
    db.put(b"a", b"old").unwrap();
    let mut b = Batch::new();
    b.get(b"a")
        .put(b"a", b"new")
        .get(b"a")
        .delete(b"a")
        .get(b"a")
        .delete(b"a");
    let r = db.apply(b).unwrap();
    assert_eq!(
        r,
        vec![
            OpResult::Get(Some(b"old".to_vec())),
            OpResult::Put(Prior::Live),
            OpResult::Get(Some(b"new".to_vec())),
            OpResult::Delete(Prior::Live),
            OpResult::Get(None),
            OpResult::Delete(Prior::Absent),
        ]
    );
}

#[test]
fn scan_prefix_pages_in_byte_order() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), Options::default());
    for k in ["b", "a/2", "a/1", "a/3", "a", "c"] {
        db.put(k.as_bytes(), b"x").unwrap();
    }
    assert_eq!(
        db.scan_prefix(b"a/", None, 2),
        vec![b"a/1".to_vec(), b"a/2".to_vec()]
    );
    assert_eq!(
        db.scan_prefix(b"a/", Some(b"a/2"), 2),
        vec![b"a/3".to_vec()]
    );
    assert_eq!(db.scan_prefix(b"", None, 100).len(), 6);
}

#[test]
fn oversized_keys_and_values_are_refused_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options::default().with_max_value_bytes(10);
    let (db, _) = open(d.path(), opts);
    assert!(matches!(
        db.put(&[b'k'; 1025], b"v"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        db.put(b"k", &[0; 11]),
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(matches!(db.put(b"", b"v"), Err(Error::EmptyKey)));
    let mut b = Batch::new();
    b.put(b"ok", b"v").put(b"bad", &[0; 11]);
    assert!(db.apply(b).is_err());
    assert_eq!(db.get(b"ok").unwrap(), None);
    assert_eq!(db.stats().live_keys, 0);
}

#[test]
fn a_second_open_of_an_open_directory_fails_clearly() {
    let d = tempfile::tempdir().unwrap();
    let (_db, _) = open(d.path(), Options::default());
    let err = kvstore::engine::Engine::open(d.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }));
    assert!(err.to_string().contains("already open"));
}
