//! Expiry, with a `ManualClock` instead of sleeps: an expired key is absent to
//! every read at once, later puts replace or clear a ttl, expiry survives a
//! restart (also through hint files), and the sweep drops expired keys from
//! the keydir and from `stats()`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvstore::engine::clock::ManualClock;
use kvstore::engine::{Batch, Engine, Expiry, OpResult, Options, Prior, SyncMode};

const START: u64 = 1_800_000_000_000;

fn options(clock: &ManualClock) -> Options {
    Options::default()
        .with_clock(Arc::new(clock.clone()))
        .with_sync(SyncMode::Never)
        .with_background_compaction(false)
}

fn open(dir: &Path, clock: &ManualClock) -> Engine {
    Engine::open(dir, options(clock)).unwrap().0
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn an_expired_key_is_absent_to_get_scan_and_stats_at_the_same_instant() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    db.put_with_ttl(b"k/short", b"12345", secs(10)).unwrap();
    db.put(b"k/long", b"678").unwrap();
    clock.advance(9_999);
    assert_eq!(db.get(b"k/short").unwrap().unwrap(), b"12345");
    assert_eq!(db.scan_prefix(b"k/", None, 10).len(), 2);
    assert_eq!(db.stats().live_keys, 2);

    clock.advance(1);
    assert_eq!(db.get(b"k/short").unwrap(), None);
    assert_eq!(db.scan_prefix(b"k/", None, 10), vec![b"k/long".to_vec()]);
    let stats = db.stats();
    assert_eq!(stats.live_keys, 1);
    assert_eq!(stats.live_value_bytes, 3);
    let mut b = Batch::new();
    b.get(b"k/short");
    assert_eq!(db.apply(b).unwrap(), vec![OpResult::Get(None)]);
}

#[test]
fn a_put_without_ttl_clears_an_earlier_ttl() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    db.put_with_ttl(b"k", b"v1", secs(10)).unwrap();
    assert_eq!(db.put(b"k", b"v2").unwrap(), Prior::Live);
    clock.advance(60_000);
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"v2");
    assert_eq!(db.stats().live_keys, 1);
    db.close().unwrap();
    let db = open(d.path(), &clock);
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"v2");
}

#[test]
fn a_put_with_a_later_ttl_replaces_the_earlier_one() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    db.put_with_ttl(b"k", b"v1", secs(10)).unwrap();
    db.put_with_ttl(b"k", b"v2", secs(100)).unwrap();
    clock.advance(50_000);
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"v2");
    assert_eq!(db.stats().live_keys, 1);
    clock.advance(50_000);
    assert_eq!(db.get(b"k").unwrap(), None);
    assert_eq!(db.stats().live_keys, 0);
}

#[test]
fn a_put_with_an_expiry_in_the_past_deletes_the_earlier_value() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    db.put(b"past", b"v").unwrap();
    db.put(b"now", b"v").unwrap();
    assert_eq!(
        db.put_with_expiry(b"past", b"w", Expiry::At(START - 1))
            .unwrap(),
        Prior::Live
    );
    assert_eq!(
        db.put_with_expiry(b"now", b"w", Expiry::At(START)).unwrap(),
        Prior::Live,
        "an expiry at exactly now has already passed"
    );
    for k in [&b"past"[..], b"now"] {
        assert_eq!(db.get(k).unwrap(), None);
    }
    assert!(db.scan_prefix(b"", None, 10).is_empty());
    assert_eq!(db.stats().live_keys, 0);
    assert_eq!(
        db.put(b"past", b"again").unwrap(),
        Prior::Absent,
        "the key was deleted"
    );
    db.delete(b"past").unwrap();
    db.close().unwrap();
    let db = open(d.path(), &clock);
    assert_eq!(db.get(b"past").unwrap(), None);
    assert_eq!(db.get(b"now").unwrap(), None);
}

#[test]
fn an_expired_key_that_is_not_yet_swept_reads_as_absent_to_writes() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    db.put_with_ttl(b"a", b"1", secs(1)).unwrap();
    db.put_with_ttl(b"b", b"2", secs(1)).unwrap();
    clock.advance(1_000);
    assert_eq!(db.put(b"a", b"3").unwrap(), Prior::Absent);
    assert_eq!(db.delete(b"b").unwrap(), Prior::Absent);
    let mut batch = Batch::new();
    batch.get(b"b").put(b"b", b"4").delete(b"a");
    assert_eq!(
        db.apply(batch).unwrap(),
        vec![
            OpResult::Get(None),
            OpResult::Put(Prior::Absent),
            OpResult::Delete(Prior::Live),
        ]
    );
}

#[test]
fn a_key_that_expired_while_closed_stays_gone_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    db.put(b"old", b"forever").unwrap();
    db.put_with_ttl(b"old", b"briefly", secs(5)).unwrap();
    db.put_with_ttl(b"later", b"v", secs(60)).unwrap();
    db.close().unwrap();

    clock.advance(10_000);
    let (db, report) = Engine::open(d.path(), options(&clock)).unwrap();
    assert_eq!(report.live_keys, 1, "{report:?}");
    assert_eq!(db.get(b"old").unwrap(), None, "no older value comes back");
    assert_eq!(db.get(b"later").unwrap().unwrap(), b"v");
    clock.advance(50_000);
    assert_eq!(
        db.get(b"later").unwrap(),
        None,
        "the expiry survived the restart"
    );
    assert_eq!(db.stats().live_keys, 0);
}

#[test]
fn expiry_read_back_from_hint_files_still_applies() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let opts = options(&clock).with_segment_bytes(4096);
    let (db, _) = Engine::open(d.path(), opts.clone()).unwrap();
    for i in 0..300u32 {
        let k = format!("k{i:04}");
        if i % 2 == 0 {
            db.put_with_ttl(k.as_bytes(), &[7; 40], secs(30)).unwrap();
        } else {
            db.put(k.as_bytes(), &[7; 40]).unwrap();
        }
    }
    db.close().unwrap();
    let (db, report) = Engine::open(d.path(), opts).unwrap();
    assert!(report.hints_used >= 3, "{report:?}");
    assert_eq!(report.live_keys, 300);
    clock.advance(30_000);
    assert_eq!(db.stats().live_keys, 150);
    assert_eq!(db.get(b"k0000").unwrap(), None);
    assert_eq!(db.get(b"k0001").unwrap().unwrap(), [7; 40]);
    assert_eq!(db.scan_prefix(b"k", None, usize::MAX).len(), 150);
}

#[test]
fn the_sweep_drops_expired_keys_from_the_keydir_and_stats() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let db = open(d.path(), &clock);
    for i in 0..100u32 {
        db.put_with_ttl(
            format!("t{i:03}").as_bytes(),
            &[1; 10],
            secs(1 + u64::from(i % 2)),
        )
        .unwrap();
        db.put(format!("p{i:03}").as_bytes(), &[2; 20]).unwrap();
    }
    let before = db.stats();
    assert_eq!(before.live_keys, 200);
    assert_eq!(before.live_value_bytes, 100 * 10 + 100 * 20);

    clock.advance(1_000);
    let half = db.stats();
    assert_eq!(half.live_keys, 150);
    assert_eq!(half.live_value_bytes, 50 * 10 + 100 * 20);
    assert!(
        half.dead_bytes > before.dead_bytes,
        "swept records are dead"
    );

    clock.advance(1_000);
    let after = db.stats();
    assert_eq!(after.live_keys, 100);
    assert_eq!(after.live_value_bytes, 100 * 20);
    // Swept keys can be written afresh.
    assert_eq!(db.put(b"t000", b"new").unwrap(), Prior::Absent);
    assert_eq!(db.stats().live_keys, 101);
}
