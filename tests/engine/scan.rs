//! Ordered scans with values (`Engine::range`, `Engine::prefix`, both ways of
//! taking their pairs) and point reads without a copy (`Engine::get_pair`)
//! against a model, across chunks, rotations, expiries,
//! deletes and compactions running while a scan is under way.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kvstore::engine::clock::ManualClock;
use kvstore::engine::{Expiry, Iter};
use proptest::prelude::*;

use super::support::{open, tiny};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// The pairs of `it` taken as owned [`KvPair`](kvstore::engine::KvPair)s.
fn owned(it: Iter) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|p| p.unwrap().into_parts()).collect()
}

/// The pairs of `it` taken through the lending `next_ref`.
fn lent(mut it: Iter) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(p) = it.next_ref() {
        let (k, v) = p.unwrap();
        out.push((k.to_vec(), v.to_vec()));
    }
    out
}

/// The model's pairs within the bounds (none when they cross, as the engine).
fn expected(model: &Model, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|(k, _)| RangeBounds::<[u8]>::contains(&(from, to), k.as_slice()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Put(u16, u8),
    PutExpiring(u16, u8),
    Delete(u16),
    Advance,
    Compact,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u16..900, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        1 => (0u16..900, any::<u8>()).prop_map(|(k, v)| Step::PutExpiring(k, v)),
        2 => (0u16..900).prop_map(Step::Delete),
        1 => Just(Step::Advance),
        1 => Just(Step::Compact),
    ]
}

/// Keys under two prefixes, so that prefix scans have something to leave out.
fn key(k: u16) -> Vec<u8> {
    let group = if k.is_multiple_of(3) { "b/" } else { "a/" };
    format!("{group}{k:05}").into_bytes()
}

fn value(k: u16, v: u8) -> Vec<u8> {
    // Sizes from a few bytes to past a cache line, so records straddle lines.
    vec![v; 1 + usize::from(k) % 150]
}

fn bound(b: Option<(u16, bool)>) -> Bound<Vec<u8>> {
    match b {
        None => Bound::Unbounded,
        Some((k, true)) => Bound::Included(key(k)),
        Some((k, false)) => Bound::Excluded(key(k)),
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    // Hundreds of keys in 4 KiB segments: every scan crosses chunks and
    // segments, and compactions move records between the writes.
    #[test]
    fn ranges_and_prefixes_yield_exactly_the_live_pairs_in_order(
        steps in proptest::collection::vec(step(), 200..1200),
        from in proptest::option::of((0u16..900, any::<bool>())),
        to in proptest::option::of((0u16..900, any::<bool>())),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (db, _) = open(dir.path(), tiny().with_clock(clock.clone()));
        let mut model = Model::new();
        // Keys with an expiry, and when it falls.
        let mut expiring: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for s in &steps {
            match *s {
                Step::Put(k, v) => {
                    db.put(&key(k), &value(k, v)).unwrap();
                    model.insert(key(k), value(k, v));
                    expiring.remove(&key(k));
                }
                Step::PutExpiring(k, v) => {
                    let at = db.now_ms() + 500;
                    db.put_with_expiry(&key(k), &value(k, v), Expiry::from_raw(at)).unwrap();
                    model.insert(key(k), value(k, v));
                    expiring.insert(key(k), at);
                }
                Step::Delete(k) => {
                    db.delete(&key(k)).unwrap();
                    model.remove(&key(k));
                    expiring.remove(&key(k));
                }
                Step::Advance => {
                    clock.advance(400);
                    let now = db.now_ms();
                    expiring.retain(|k, at| {
                        let gone = *at <= now;
                        if gone {
                            model.remove(k);
                        }
                        !gone
                    });
                }
                Step::Compact => {
                    db.compact().unwrap();
                }
            }
        }
        let (from, to) = (bound(from), bound(to));
        let want = expected(&model, as_slice(&from), as_slice(&to));
        prop_assert_eq!(&owned(db.range((from.clone(), to.clone()))), &want);
        prop_assert_eq!(&lent(db.range((from, to))), &want);
        for k in (0..900).step_by(7) {
            let got = db.get_pair(&key(k)).unwrap().map(|p| p.into_parts());
            prop_assert_eq!(got, model.get(&key(k)).map(|v| (key(k), v.clone())));
        }
        for prefix in [&b""[..], b"a/", b"b/", b"a/001", b"c"] {
            let want: Vec<_> = model
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(&owned(db.prefix(prefix)), &want);
            prop_assert_eq!(&lent(db.prefix(prefix)), &want);
        }
    }
}

/// Scans while compactions retire the segments the scan's chunks point
/// into: nothing is missed, repeated, reordered or wrong, whichever way the
/// pairs are taken, and a pair taken before a compaction still reads.
#[test]
fn scans_racing_compactions_see_every_pair_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = open(dir.path(), tiny());
    let db = Arc::new(db);
    let keys = 3_000u16;
    // Two versions each: half of every segment is garbage, so each
    // compaction rewrites (and retires) segments under the scans.
    for round in 0..2u8 {
        for k in 0..keys {
            db.put(&key(k), &value(k, round)).unwrap();
        }
    }
    let want: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut m = Model::new();
        for k in 0..keys {
            m.insert(key(k), value(k, 1));
        }
        m.into_iter().collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let compactor = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Rewrites move every record: put them back as garbage first.
                for k in (0..keys).step_by(7) {
                    db.put(&key(k), &value(k, 1)).unwrap();
                }
                db.compact().unwrap();
                runs += 1;
            }
            runs
        })
    };
    let mut kept = Vec::new();
    for round in 0..40u32 {
        if round.is_multiple_of(2) {
            let pairs: Vec<_> = db.range::<&[u8]>(..).map(|p| p.unwrap()).collect();
            let got: Vec<_> = pairs
                .iter()
                .map(|p| (p.key().to_vec(), p.value().to_vec()))
                .collect();
            assert_eq!(got.len(), want.len(), "round {round}");
            assert!(got == want, "round {round}: pairs differ");
            let middle = usize::from(keys) / 2;
            kept.push((middle, pairs.into_iter().nth(middle).unwrap()));
        } else {
            assert!(
                lent(db.prefix(b"")) == want,
                "round {round}: lent pairs differ"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let runs = compactor.join().unwrap();
    assert!(runs > 0, "no compaction ran beside the scans");
    // Pairs outlive the compactions that retired their segments.
    for (i, p) in &kept {
        assert_eq!((p.key(), p.value()), (&want[*i].0[..], &want[*i].1[..]));
    }
}
