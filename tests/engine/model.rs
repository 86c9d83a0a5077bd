//! The engine against a `BTreeMap` model: random puts, puts with a ttl,
//! deletes, batches (with in-batch gets), gets, prefix scans, clock steps and
//! reopens, on 4 KiB segments so `wal.log` rotates every few steps. Every
//! result — priors, in-batch gets, gets, scans, `stats()` and the recovery
//! report's live keys — must equal the model's.
//!
//! To add a step: a variant of [`Step`], a weight in [`step`], and an arm in
//! [`Harness::run`] applying it to the engine and the model. `Compact` is wired
//! in already; it keeps the model unchanged because compaction must not change
//! what any read returns.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvstore::engine::clock::{Clock, ManualClock};
use kvstore::engine::{Batch, Engine, Expiry, OpResult, Options, Prior, SyncMode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The key space: small, with shared prefixes, so steps collide and scans matter.
const KEYS: &[&str] = &[
    "a/0", "a/1", "a/2", "a/3", "a/4", "ab", "b", "b/0", "b/1", "b/2", "b/3",
];
const PREFIXES: &[&str] = &["", "a", "a/", "ab", "b", "b/", "c"];

/// A value, kept symbolic so failing cases print short.
#[derive(Debug, Clone, Copy)]
struct Value {
    seed: u8,
    len: u16,
}

impl Value {
    fn bytes(self) -> Vec<u8> {
        (0..self.len)
            .map(|i| self.seed.wrapping_add(i.to_le_bytes()[0]))
            .collect()
    }
}

#[derive(Debug, Clone)]
enum BatchStep {
    Put {
        key: usize,
        value: Value,
    },
    PutTtl {
        key: usize,
        value: Value,
        ttl_ms: u64,
    },
    Delete {
        key: usize,
    },
    Get {
        key: usize,
    },
}

#[derive(Debug, Clone)]
enum Step {
    Put {
        key: usize,
        value: Value,
    },
    /// A ttl of 0 expires at once: the put deletes.
    PutTtl {
        key: usize,
        value: Value,
        ttl_ms: u64,
    },
    Delete {
        key: usize,
    },
    Batch(Vec<BatchStep>),
    Get {
        key: usize,
    },
    Scan {
        prefix: usize,
        after: Option<usize>,
        limit: usize,
    },
    Advance {
        ms: u64,
    },
    Reopen,
    Compact,
}

fn value() -> impl Strategy<Value = Value> {
    (any::<u8>(), 0u16..700).prop_map(|(seed, len)| Value { seed, len })
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

/// Round ttls and clock steps meet exactly, so expiry's boundary (expired at
/// `now == expiry`) is exercised.
fn ttl() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(500), Just(1000), 1u64..3000]
}

fn advance() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(499), Just(500), 0u64..2500]
}

fn batch_step() -> impl Strategy<Value = BatchStep> {
    prop_oneof![
        3 => (key(), value()).prop_map(|(key, value)| BatchStep::Put { key, value }),
        1 => (key(), value(), ttl()).prop_map(|(key, value, ttl_ms)| BatchStep::PutTtl { key, value, ttl_ms }),
        2 => key().prop_map(|key| BatchStep::Delete { key }),
        2 => key().prop_map(|key| BatchStep::Get { key }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (key(), value()).prop_map(|(key, value)| Step::Put { key, value }),
        3 => (key(), value(), ttl()).prop_map(|(key, value, ttl_ms)| Step::PutTtl { key, value, ttl_ms }),
        4 => key().prop_map(|key| Step::Delete { key }),
        4 => prop::collection::vec(batch_step(), 1..7).prop_map(Step::Batch),
        4 => key().prop_map(|key| Step::Get { key }),
        2 => (0..PREFIXES.len(), prop::option::of(key()), prop_oneof![1usize..4, Just(usize::MAX)])
            .prop_map(|(prefix, after, limit)| Step::Scan { prefix, after, limit }),
        2 => advance().prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Reopen),
        1 => Just(Step::Compact),
    ]
}

/// The model: key → (value, raw expiry with 0 = never).
#[derive(Debug, Default, Clone)]
struct Model {
    map: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
}

impl Model {
    fn live(&self, key: &[u8], now: u64) -> Option<&Vec<u8>> {
        self.map
            .get(key)
            .filter(|(_, exp)| *exp == 0 || *exp > now)
            .map(|(v, _)| v)
    }

    fn prior(&self, key: &[u8], now: u64) -> Prior {
        if self.live(key, now).is_some() {
            Prior::Live
        } else {
            Prior::Absent
        }
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>, expiry: Expiry, now: u64) -> Prior {
        let prior = self.prior(key, now);
        let raw = expiry.to_raw();
        if raw != 0 && raw <= now {
            self.map.remove(key);
        } else {
            self.map.insert(key.to_vec(), (value, raw));
        }
        prior
    }

    fn delete(&mut self, key: &[u8], now: u64) -> Prior {
        let prior = self.prior(key, now);
        self.map.remove(key);
        prior
    }

    fn live_keys(&self, now: u64) -> Vec<Vec<u8>> {
        self.map
            .keys()
            .filter(|k| self.live(k, now).is_some())
            .cloned()
            .collect()
    }
}

struct Harness<'a> {
    dir: &'a Path,
    clock: ManualClock,
    db: Option<Engine>,
    model: Model,
}

fn options(clock: &ManualClock) -> Options {
    Options::default()
        .with_segment_bytes(4096)
        .with_sync(SyncMode::Never)
        .with_background_compaction(false)
        .with_clock(Arc::new(clock.clone()))
}

impl Harness<'_> {
    fn db(&self) -> &Engine {
        self.db.as_ref().unwrap()
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let now = self.now();
        match step {
            Step::Put { key, value } => {
                let k = KEYS[*key].as_bytes();
                let got = self.db().put(k, &value.bytes()).unwrap();
                let want = self.model.put(k, value.bytes(), Expiry::Never, now);
                prop_assert_eq!(got, want, "prior of put {:?}", KEYS[*key]);
            }
            Step::PutTtl { key, value, ttl_ms } => {
                let k = KEYS[*key].as_bytes();
                let ttl = Duration::from_millis(*ttl_ms);
                let got = self.db().put_with_ttl(k, &value.bytes(), ttl).unwrap();
                let want = self
                    .model
                    .put(k, value.bytes(), Expiry::after(now, ttl), now);
                prop_assert_eq!(got, want, "prior of put with ttl {:?}", KEYS[*key]);
            }
            Step::Delete { key } => {
                let k = KEYS[*key].as_bytes();
                let got = self.db().delete(k).unwrap();
                let want = self.model.delete(k, now);
                prop_assert_eq!(got, want, "prior of delete {:?}", KEYS[*key]);
            }
            Step::Batch(ops) => {
                let mut batch = Batch::new();
                let mut want = Vec::new();
                for op in ops {
                    match op {
                        BatchStep::Put { key, value } => {
                            let k = KEYS[*key].as_bytes();
                            batch.put(k, &value.bytes());
                            want.push(OpResult::Put(self.model.put(
                                k,
                                value.bytes(),
                                Expiry::Never,
                                now,
                            )));
                        }
                        BatchStep::PutTtl { key, value, ttl_ms } => {
                            let k = KEYS[*key].as_bytes();
                            let expiry = Expiry::after(now, Duration::from_millis(*ttl_ms));
                            batch.put_with_expiry(k, &value.bytes(), expiry);
                            want.push(OpResult::Put(self.model.put(k, value.bytes(), expiry, now)));
                        }
                        BatchStep::Delete { key } => {
                            let k = KEYS[*key].as_bytes();
                            batch.delete(k);
                            want.push(OpResult::Delete(self.model.delete(k, now)));
                        }
                        BatchStep::Get { key } => {
                            let k = KEYS[*key].as_bytes();
                            batch.get(k);
                            want.push(OpResult::Get(self.model.live(k, now).cloned()));
                        }
                    }
                }
                let got = self.db().apply(batch).unwrap();
                prop_assert_eq!(got, want, "results of batch {:?}", ops);
            }
            Step::Get { key } => {
                let k = KEYS[*key].as_bytes();
                let got = self.db().get(k).unwrap();
                prop_assert_eq!(
                    got.as_ref(),
                    self.model.live(k, now),
                    "get {:?}",
                    KEYS[*key]
                );
            }
            Step::Scan {
                prefix,
                after,
                limit,
            } => {
                let p = PREFIXES[*prefix].as_bytes();
                let a = after.map(|i| KEYS[i].as_bytes());
                let got = self.db().scan_prefix(p, a, *limit);
                let want: Vec<Vec<u8>> = self
                    .model
                    .live_keys(now)
                    .into_iter()
                    .filter(|k| k.starts_with(p) && a.is_none_or(|a| k.as_slice() > a))
                    .take(*limit)
                    .collect();
                prop_assert_eq!(got, want, "scan {:?} after {:?}", PREFIXES[*prefix], a);
            }
            Step::Advance { ms } => self.clock.advance(*ms),
            Step::Reopen => {
                self.db.take().unwrap().close().unwrap();
                let (db, report) = Engine::open(self.dir, options(&self.clock)).unwrap();
                self.db = Some(db);
                prop_assert_eq!(
                    report.live_keys,
                    self.model.live_keys(now).len() as u64,
                    "live keys in the recovery report"
                );
                self.check_all()?;
            }
            Step::Compact => {
                self.db().compact().unwrap();
                self.check_all()?;
            }
        }
        Ok(())
    }

    /// Every key, a full scan and the live figures against the model.
    fn check_all(&self) -> Result<(), TestCaseError> {
        let now = self.now();
        for k in KEYS {
            let got = self.db().get(k.as_bytes()).unwrap();
            prop_assert_eq!(
                got.as_ref(),
                self.model.live(k.as_bytes(), now),
                "get {}",
                k
            );
        }
        let live = self.model.live_keys(now);
        prop_assert_eq!(self.db().scan_prefix(b"", None, usize::MAX), live.clone());
        let stats = self.db().stats();
        prop_assert_eq!(stats.live_keys, live.len() as u64, "stats().live_keys");
        let bytes: u64 = live
            .iter()
            .map(|k| self.model.live(k, now).unwrap().len() as u64)
            .sum();
        prop_assert_eq!(stats.live_value_bytes, bytes, "stats().live_value_bytes");
        let on_disk: u64 = std::fs::read_dir(self.dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_str().unwrap();
                name == "wal.log" || name.ends_with(".seg")
            })
            .map(|e| super::support::data_len(&e.path()))
            .sum();
        prop_assert_eq!(stats.disk_bytes, on_disk, "stats().disk_bytes vs the files");
        let files = std::fs::read_dir(self.dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .ends_with(".seg")
            })
            .count() as u64;
        prop_assert_eq!(
            stats.segments,
            files + 1,
            "stats().segments counts wal.log too"
        );
        Ok(())
    }
}

#[test]
fn random_operations_with_reopens_match_a_btreemap_model() {
    let config = Config {
        cases: super::support::cases(256),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let steps = prop::collection::vec(step(), 1..120);
    runner
        .run(&steps, |steps| {
            let dir = super::support::mem_tempdir();
            let clock = ManualClock::new(1_700_000_000_000);
            let (db, _) = Engine::open(dir.path(), options(&clock)).unwrap();
            let mut h = Harness {
                dir: dir.path(),
                clock,
                db: Some(db),
                model: Model::default(),
            };
            for step in &steps {
                h.run(step)?;
            }
            h.check_all()?;
            // Whatever the steps did, a final reopen recovers the same state.
            h.run(&Step::Reopen)
        })
        .unwrap();
}
