//! Expiry: values with a time to live, or an absolute expiry instant. Expired
//! keys read as absent at once and are swept from the keydir later. The clock
//! is a seam: this example uses a `ManualClock` to move time instead of sleeping.
//!
//! `cargo run --example ttl --no-default-features`

#![allow(clippy::unwrap_used, reason = "an example should fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use kvstore::engine::clock::ManualClock;
use kvstore::engine::{Engine, Expiry, Options, Prior};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let opts = Options::default().with_clock(Arc::new(clock.clone()));
    let (db, _) = Engine::open(dir.path(), opts.clone()).unwrap();

    db.put_with_ttl(b"session:1", b"token", Duration::from_secs(30))
        .unwrap();
    db.put_with_expiry(b"coupon", b"10% off", Expiry::At(db.now_ms() + 60_000))
        .unwrap();
    db.put(b"forever", b"no expiry").unwrap();
    assert!(db.get(b"session:1").unwrap().is_some());
    println!("t+0s:  session, coupon and forever all readable");

    clock.advance(31_000);
    assert_eq!(db.get(b"session:1").unwrap(), None);
    assert!(db.get(b"coupon").unwrap().is_some());
    println!("t+31s: session expired (reads as absent), coupon still readable");

    // Writing an expired key again counts as creating it: the old value is gone.
    assert_eq!(db.put(b"session:1", b"new token").unwrap(), Prior::Absent);

    // A plain put clears an expiry; an expiry in the past deletes.
    db.put(b"coupon", b"kept").unwrap();
    db.put_with_expiry(b"forever", b"gone", Expiry::At(db.now_ms() - 1))
        .unwrap();
    assert_eq!(db.get(b"forever").unwrap(), None);
    clock.advance(3_600_000);
    assert_eq!(db.get(b"coupon").unwrap().as_deref(), Some(&b"kept"[..]));
    println!("t+1h:  coupon (expiry cleared by a plain put) readable, forever deleted");

    // stats() sweeps what is due first, so expired keys are never counted.
    db.put_with_ttl(b"short", b"x", Duration::from_millis(10))
        .unwrap();
    clock.advance(20);
    let stats = db.stats();
    println!("live keys: {}", stats.live_keys);
    assert_eq!(stats.live_keys, 2, "session:1 and coupon");

    // Expiry is stored in the record, so it holds across a restart.
    db.put_with_ttl(b"restart", b"x", Duration::from_secs(5))
        .unwrap();
    db.close().unwrap();
    let (db, report) = Engine::open(dir.path(), opts).unwrap();
    assert_eq!(report.live_keys, 3);
    assert!(db.get(b"restart").unwrap().is_some());
    clock.advance(5_000);
    assert_eq!(db.get(b"restart").unwrap(), None);
    println!("after reopen: restart readable until its expiry, then absent");
    db.close().unwrap();
    println!("ok");
}
