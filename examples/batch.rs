//! Batches: several operations applied atomically — written behind one batch
//! marker, published at once, acknowledged together — with gets that see the
//! batch's own earlier writes. Also `submit`, which queues a batch and returns
//! a `PendingWrite` to wait on (or `.await`), and group commit across threads.
//!
//! `cargo run --example batch --no-default-features`

#![allow(clippy::unwrap_used, reason = "an example should fail loudly")]

use kvstore::engine::{Batch, Engine, OpResult, Options, Prior};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Engine::open(dir.path(), Options::default()).unwrap();
    db.put(b"account:alice", b"100").unwrap();
    db.put(b"account:bob", b"50").unwrap();

    // A transfer: both balances change, and a log entry is dropped, or nothing is.
    let mut transfer = Batch::new();
    transfer
        .get(b"account:alice")
        .put(b"account:alice", b"70")
        .put(b"account:bob", b"80")
        .delete(b"pending:transfer-1")
        .get(b"account:alice");
    let results = db.apply(transfer).unwrap();
    for (op, result) in ["get", "put", "put", "delete", "get"].iter().zip(&results) {
        match result {
            OpResult::Get(Some(v)) => println!("{op:>6} -> {:?}", String::from_utf8_lossy(v)),
            other => println!("{op:>6} -> {other:?}"),
        }
    }
    assert_eq!(
        results,
        vec![
            OpResult::Get(Some(b"100".to_vec())),
            OpResult::Put(Prior::Live),
            OpResult::Put(Prior::Live),
            OpResult::Delete(Prior::Absent),
            // A get inside a batch sees the batch's earlier writes.
            OpResult::Get(Some(b"70".to_vec())),
        ]
    );
    assert_eq!(db.get(b"account:bob").unwrap().as_deref(), Some(&b"80"[..]));

    // A batch that fails validation is rejected whole: nothing of it is written.
    let mut bad = Batch::new();
    bad.put(b"account:carol", b"10")
        .put(b"", b"empty keys are invalid");
    let err = db.apply(bad).unwrap_err();
    println!("invalid batch rejected: {err}");
    assert!(err.is_invalid_input());
    assert_eq!(db.get(b"account:carol").unwrap(), None);

    // submit queues the batch and returns at once; wait (or .await) for the result.
    let pending: Vec<_> = (0..10)
        .map(|i| {
            let mut b = Batch::new();
            b.put(format!("queued:{i}").as_bytes(), b"x");
            db.submit(b)
        })
        .collect();
    for p in pending {
        assert_eq!(p.wait().unwrap(), vec![OpResult::Put(Prior::Absent)]);
    }
    println!("10 submitted batches acknowledged");

    // Group commit: concurrent writers share fsyncs.
    let before = db.stats();
    std::thread::scope(|s| {
        for t in 0..8 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..50 {
                    db.put(format!("thread:{t}:{i}").as_bytes(), b"v").unwrap();
                }
            });
        }
    });
    let after = db.stats();
    let (writes, fsyncs) = (after.writes - before.writes, after.fsyncs - before.fsyncs);
    println!("8 threads x 50 puts: {writes} writes acknowledged with {fsyncs} fsyncs");
    assert_eq!(writes, 400);
    assert!(fsyncs <= writes);

    // Batches survive a restart whole.
    db.close().unwrap();
    let (db, report) = Engine::open(dir.path(), Options::default()).unwrap();
    assert_eq!(report.batches_discarded, 0);
    assert_eq!(
        db.get(b"account:alice").unwrap().as_deref(),
        Some(&b"70"[..])
    );
    assert_eq!(db.get(b"account:bob").unwrap().as_deref(), Some(&b"80"[..]));
    assert_eq!(db.stats().live_keys, 2 + 10 + 400);
    db.close().unwrap();
    println!("ok");
}
