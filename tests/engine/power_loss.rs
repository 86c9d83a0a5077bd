//! Simulated power loss (issue 9): a random workload runs on `PowerLossFs`, the
//! power is cut at a random point (between operations, or at the N-th call
//! through the seam, on whichever engine thread makes it), the directory is
//! rewritten to what a disk would hold, and a reopen is checked against a
//! model of what had to survive.
//!
//! Durable horizon per sync mode: under `Always` every acknowledged write;
//! under `Periodic` and `Never` every write acknowledged before the last
//! `Engine::sync` that returned `Ok`. In every mode: open succeeds, every key
//! reads back, every value is one that was written for that key at or after
//! its last durable write, and no batch is visible in part.
//!
//! `KVSTORE_POWER_LOSS_SOAK=<seconds>` runs `soak` for that long, printing the
//! seeds, operations, power losses and violations; `KVSTORE_POWER_LOSS_SEED=<n>`
//! starts it at seed `n` (a violation prints its seed: rerun from there),
//! `KVSTORE_POWER_LOSS_DEBUG=1` prints a violating case's steps, and
//! `KVSTORE_POWER_LOSS_KEEP=<dir>` keeps there the restored directory (as
//! recovery found it) of every round that fails its check. Cuts inside the
//! engine race with its threads, so a seed replays the same steps but not
//! always the same cut.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvstore::engine::fs::{PowerLossFs, PowerLossReport, Tail};
use kvstore::engine::{Batch, Engine, Options, SyncMode};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const KEYS: usize = 24;

fn key(k: usize) -> Vec<u8> {
    format!("key-{k:03}").into_bytes()
}

/// Unique per write (its position in history), of a length that varies so
/// records straddle pages and segment ends.
fn value(k: usize, pos: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{k}:{pos}:").into_bytes();
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    v.extend((0..len).map(|i| letters[(pos + i) % letters.len()]));
    v
}

#[derive(Debug, Clone)]
enum Step {
    Put(usize, usize),
    TtlPut(usize, usize),
    Delete(usize),
    /// Distinct keys; `None` deletes.
    Batch(Vec<(usize, Option<usize>)>),
    /// Writes submitted together, each its own call (distinct keys), so the
    /// writer groups them into shared appends and fsyncs (group commit).
    Together(Vec<(usize, Option<usize>)>),
    /// Lets the engine's threads run (periodic sync, sealing, background
    /// compaction) for this many milliseconds.
    Pause(u64),
    Sync,
    Compact,
    /// Cut the power now, restore, reopen, check, go on.
    PowerLoss,
}

fn step() -> impl Strategy<Value = Step> {
    let k = 0..KEYS;
    let len = prop_oneof![4 => 0usize..64, 1 => 64usize..1500];
    prop_oneof![
        30 => (k.clone(), len.clone()).prop_map(|(k, l)| Step::Put(k, l)),
        4 => (k.clone(), len.clone()).prop_map(|(k, l)| Step::TtlPut(k, l)),
        8 => k.clone().prop_map(Step::Delete),
        8 => prop::collection::btree_map(k.clone(), prop::option::weighted(0.8, len.clone()), 2..6)
            .prop_map(|m| Step::Batch(m.into_iter().collect())),
        5 => prop::collection::btree_map(k, prop::option::weighted(0.8, len), 2..8)
            .prop_map(|m| Step::Together(m.into_iter().collect())),
        1 => (1u64..40).prop_map(Step::Pause),
        4 => Just(Step::Sync),
        2 => Just(Step::Compact),
        1 => Just(Step::PowerLoss),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Always,
    Periodic,
    Never,
}

impl Mode {
    fn sync(self) -> SyncMode {
        match self {
            Mode::Always => SyncMode::Always,
            Mode::Periodic => SyncMode::Periodic(Duration::from_millis(20)),
            Mode::Never => SyncMode::Never,
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    mode: Mode,
    steps: Vec<Step>,
    /// Per round: cut at this call through the seam (0: only at a
    /// `PowerLoss` step or the end).
    cut_calls: Vec<u64>,
    tail: Tail,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Mode::Always), Just(Mode::Periodic), Just(Mode::Never)],
        prop::collection::vec(step(), 1..160),
        prop::collection::vec(prop_oneof![1 => Just(0u64), 2 => 1u64..250], 4),
        prop_oneof![
            Just(Tail::Synced),
            Just(Tail::Prefix),
            Just(Tail::Torn),
            Just(Tail::Mixed)
        ],
        any::<u64>(),
    )
        .prop_map(|(mode, steps, cut_calls, tail, seed)| Case {
            mode,
            steps,
            cut_calls,
            tail,
            seed,
        })
}

/// One write in history; its index is its position.
#[derive(Debug)]
struct Event {
    key: usize,
    /// `None`: a delete.
    value: Option<Vec<u8>>,
    batch: usize,
    /// The call returned `Ok`.
    acked: bool,
    /// Must survive a power loss.
    durable: bool,
}

#[derive(Debug, Default)]
struct Model {
    events: Vec<Event>,
    batches: usize,
}

impl Model {
    /// Records the writes of one call (one batch); returns their positions.
    fn begin(&mut self, writes: &[(usize, Option<Vec<u8>>)]) -> Vec<usize> {
        self.batches += 1;
        writes
            .iter()
            .map(|(k, v)| {
                self.events.push(Event {
                    key: *k,
                    value: v.clone(),
                    batch: self.batches,
                    acked: false,
                    durable: false,
                });
                self.events.len() - 1
            })
            .collect()
    }

    /// A sync returned `Ok`: every write acknowledged before it is durable.
    fn mark_durable(&mut self, upto: usize) {
        for e in &mut self.events[..upto] {
            e.durable |= e.acked;
        }
    }

    fn ack(&mut self, positions: &[usize], durable: bool) {
        for &p in positions {
            self.events[p].acked = true;
            self.events[p].durable |= durable;
        }
    }

    /// Positions whose write `key` may read as `got` after a power loss
    /// (`None` position: the state before any write in history).
    fn explains(&self, key: usize, got: Option<&[u8]>) -> Vec<Option<usize>> {
        let mine: Vec<(usize, &Event)> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.key == key)
            .collect();
        let floor = mine.iter().rev().find(|(_, e)| e.durable).map(|(p, _)| *p);
        let mut out = Vec::new();
        if floor.is_none() && got.is_none() {
            out.push(None);
        }
        for (p, e) in mine {
            if floor.is_some_and(|f| p < f) {
                continue;
            }
            if e.value.as_deref() == got {
                out.push(Some(p));
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    ops: u64,
    power_losses: u64,
    cut_inside_engine: u64,
    /// Compaction steps the engines counted (explicit and background).
    compactions: u64,
    /// Of those, run by a `Compact` step.
    compact_calls: u64,
    report: PowerLossReport,
    violations: Vec<String>,
}

/// The figures a run prints: what ran and what the power losses did.
impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cases, {} ops, {} power losses ({} cut inside the engine), \
             {} compactions ({} Compact calls), {:?}",
            self.cases,
            self.ops,
            self.power_losses,
            self.cut_inside_engine,
            self.compactions,
            self.compact_calls,
            self.report
        )
    }
}

impl Tally {
    fn add(&mut self, r: &PowerLossReport) {
        let t = &mut self.report;
        t.files += r.files;
        t.names_lost += r.names_lost;
        t.names_revived += r.names_revived;
        t.files_reverted += r.files_reverted;
        t.tails_kept += r.tails_kept;
        t.tails_torn += r.tails_torn;
    }
}

/// Reopening with the real file system: small segments, since every open
/// allocates a whole `wal.log` (the default 64 MiB would dominate the run).
fn plain() -> Options {
    Options::default()
        .with_segment_bytes(4096)
        .with_background_compaction(false)
}

fn options(mode: Mode, fs: Arc<PowerLossFs>) -> Options {
    Options::default()
        .with_segment_bytes(4096)
        .with_sync(mode.sync())
        .with_background_compaction(true)
        .with_compaction_ratio(0.2)
        .with_compaction_min_bytes(8 << 10)
        .with_compaction_threads(1)
        // The background thread ticks at this (at most 250 ms): often enough
        // for its compaction trigger to fire inside a short case.
        .with_expiry_sweep_interval(Duration::from_millis(5))
        .with_fs(fs)
}

struct Run<'a> {
    dir: &'a Path,
    case: &'a Case,
    model: Model,
    tally: &'a mut Tally,
    round: usize,
}

impl Run<'_> {
    fn open(&mut self) -> Result<(Engine, Arc<PowerLossFs>), String> {
        let fs = Arc::new(PowerLossFs::new(self.dir).map_err(|e| format!("snapshot: {e}"))?);
        let (db, _) = Engine::open(self.dir, options(self.case.mode, Arc::clone(&fs)))
            .map_err(|e| format!("round {}: open on PowerLossFs failed: {e}", self.round))?;
        let cut = self
            .case
            .cut_calls
            .get(self.round % self.case.cut_calls.len())
            .copied()
            .unwrap_or(0);
        if cut > 0 {
            fs.cut_power_at_call(cut);
        }
        Ok((db, fs))
    }

    fn write(
        &mut self,
        db: &Engine,
        writes: Vec<(usize, Option<Vec<u8>>)>,
        ttl: bool,
    ) -> Result<(), String> {
        let positions = self.model.begin(&writes);
        let result = if let [(k, v)] = writes.as_slice() {
            match v {
                Some(v) if ttl => db
                    .put_with_ttl(&key(*k), v, Duration::from_secs(3600))
                    .map(drop),
                Some(v) => db.put(&key(*k), v).map(drop),
                None => db.delete(&key(*k)).map(drop),
            }
        } else {
            let mut b = Batch::new();
            for (k, v) in &writes {
                match v {
                    Some(v) => b.put(&key(*k), v),
                    None => b.delete(&key(*k)),
                };
            }
            db.apply(b).map(drop)
        };
        self.tally.ops += 1;
        if result.is_ok() {
            let always = matches!(self.case.mode, Mode::Always);
            self.model.ack(&positions, always);
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        let (mut db, mut fs) = self.open()?;
        let mut seeds = self.case.seed;
        for step in &self.case.steps {
            let pos = self.model.events.len();
            match step {
                Step::Put(k, l) => self.write(&db, vec![(*k, Some(value(*k, pos, *l)))], false)?,
                Step::TtlPut(k, l) => {
                    self.write(&db, vec![(*k, Some(value(*k, pos, *l)))], true)?
                }
                Step::Delete(k) => self.write(&db, vec![(*k, None)], false)?,
                Step::Batch(ops) => {
                    let writes = ops
                        .iter()
                        .enumerate()
                        .map(|(i, (k, l))| (*k, l.map(|l| value(*k, pos + i, l))))
                        .collect();
                    self.write(&db, writes, false)?;
                }
                Step::Together(ops) => {
                    let writes: Vec<(usize, Option<Vec<u8>>)> = ops
                        .iter()
                        .enumerate()
                        .map(|(i, (k, l))| (*k, l.map(|l| value(*k, pos + i, l))))
                        .collect();
                    let pending: Vec<_> = writes
                        .iter()
                        .map(|w| {
                            let positions = self.model.begin(std::slice::from_ref(w));
                            let mut b = Batch::new();
                            match &w.1 {
                                Some(v) => b.put(&key(w.0), v),
                                None => b.delete(&key(w.0)),
                            };
                            (positions, db.submit(b))
                        })
                        .collect();
                    let always = matches!(self.case.mode, Mode::Always);
                    for (positions, p) in pending {
                        self.tally.ops += 1;
                        if p.wait().is_ok() {
                            self.model.ack(&positions, always);
                        }
                    }
                }
                Step::Pause(ms) => std::thread::sleep(Duration::from_millis(*ms)),
                Step::Sync => {
                    if db.sync().is_ok() {
                        self.model.mark_durable(pos);
                    }
                }
                Step::Compact => {
                    if db.compact().is_ok() {
                        self.tally.compact_calls += 1;
                    }
                }
                Step::PowerLoss => {
                    seeds = seeds.wrapping_add(1);
                    (db, fs) = self.power_loss(db, &fs, seeds)?;
                }
            }
        }
        seeds = seeds.wrapping_add(1);
        let _ = self.power_loss(db, &fs, seeds)?;
        Ok(())
    }

    /// Cuts the power, restores, reopens with the real file system and
    /// checks; then opens again on a fresh seam for the next round.
    fn power_loss(
        &mut self,
        db: Engine,
        fs: &PowerLossFs,
        seed: u64,
    ) -> Result<(Engine, Arc<PowerLossFs>), String> {
        if fs.is_cut() {
            self.tally.cut_inside_engine += 1;
        }
        fs.cut_power();
        self.tally.compactions += db.stats().compactions;
        drop(db);
        let report = fs
            .power_loss(seed, self.case.tail)
            .map_err(|e| format!("restoring: {e}"))?;
        self.tally.power_losses += 1;
        self.tally.add(&report);
        let ctx = format!("round {} (seed {seed}, {report:?})", self.round);
        // Debugging: the restored directory as recovery will find it, kept
        // (under KVSTORE_POWER_LOSS_KEEP) for a round that fails its check.
        let keep = std::env::var_os("KVSTORE_POWER_LOSS_KEEP").map(|to| {
            let files: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.file_name(), std::fs::read(e.path()).ok()?)))
                .collect();
            let to = Path::new(&to).join(format!("{}-round-{}", self.case.seed, self.round));
            (to, files)
        });
        let failed = |v: String| {
            if let Some((to, files)) = &keep {
                let _ = std::fs::create_dir_all(to);
                for (name, bytes) in files {
                    let _ = std::fs::write(to.join(name), bytes);
                }
            }
            v
        };
        let (db, _) = Engine::open(self.dir, plain())
            .map_err(|e| failed(format!("{ctx}: open after power loss failed: {e}")))?;
        self.check(&db).map_err(|v| failed(format!("{ctx}: {v}")))?;
        db.close().map_err(|e| format!("{ctx}: close: {e}"))?;
        self.round += 1;
        self.open()
    }

    /// Compares the reopened store with the model; then makes what it holds
    /// the durable baseline of the next round.
    fn check(&mut self, db: &Engine) -> Result<(), String> {
        let mut got: BTreeMap<usize, Option<Vec<u8>>> = BTreeMap::new();
        let known: BTreeSet<Vec<u8>> = (0..KEYS).map(key).collect();
        for pair in db.range::<&[u8]>(..) {
            let pair = pair.map_err(|e| format!("a full read failed: {e}"))?;
            if !known.contains(pair.key()) {
                return Err(format!("a key that was never written: {:?}", pair.key()));
            }
        }
        let mut explained = BTreeMap::new();
        for k in 0..KEYS {
            let v = db
                .get(&key(k))
                .map_err(|e| format!("reading key {k} failed: {e}"))?;
            let why = self.model.explains(k, v.as_deref());
            if why.is_empty() {
                let history: Vec<String> =
                    self.model
                        .events
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.key == k)
                        .map(|(p, e)| {
                            let v = e.value.as_deref().map(|v| {
                                String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned()
                            });
                            format!("{p}:{v:?}{}", if e.durable { "!" } else { "" })
                        })
                        .collect();
                return Err(format!(
                    "key {k} reads {:?}, which no write at or after its last durable one \
                     explains (history, ! = durable: {history:?})",
                    v.as_deref().map(String::from_utf8_lossy)
                ));
            }
            explained.insert(k, why);
            got.insert(k, v);
        }
        // No batch in part: not one key certainly applied while another is
        // certainly not.
        let mut by_batch: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (p, e) in self.model.events.iter().enumerate() {
            by_batch.entry(e.batch).or_default().push(p);
        }
        for (b, positions) in by_batch {
            if positions.len() < 2 {
                continue;
            }
            let (mut applied, mut missing) = (None, None);
            for &p in &positions {
                let k = self.model.events[p].key;
                let why = &explained[&k];
                // Only the batch's own write proves it applied: a later one may
                // have been acknowledged after the batch failed unwritten, and
                // a delete of an absent key writes nothing to look at.
                if why.iter().all(|w| *w == Some(p)) {
                    applied = Some(k);
                }
                // Under sync never / periodic a batch writes a tombstone even
                // for a key that reads as absent (it may be absent only because
                // of an unsynced earlier delete that a power loss drops), so
                // every write of a batch, deletes included, is checked.
                if why.iter().all(|w| w.is_none_or(|w| w < p)) {
                    missing = Some(k);
                }
            }
            if let (Some(a), Some(m)) = (applied, missing) {
                return Err(format!(
                    "batch {b} is applied in part: key {a} has its write, key {m} does not"
                ));
            }
        }
        self.model = Model::default();
        let writes: Vec<(usize, Option<Vec<u8>>)> =
            got.into_iter().filter(|(_, v)| v.is_some()).collect();
        for (k, v) in writes {
            let p = self.model.begin(&[(k, v)]);
            self.model.ack(&p, true);
        }
        Ok(())
    }
}

fn run_case(case: &Case, tally: &mut Tally) -> Result<(), String> {
    let dir = super::support::mem_tempdir();
    tally.cases += 1;
    let mut run = Run {
        dir: dir.path(),
        case,
        model: Model::default(),
        tally,
        round: 0,
    };
    run.run()
}

#[test]
fn power_loss_keeps_what_each_sync_mode_promises() {
    let config = Config {
        cases: super::support::cases(64),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    // The same cases every run, so a failure names cases CI has passed
    // before; the soak explores new seeds.
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&case(), |case| {
        run_case(&case, &mut tally.borrow_mut()).map_err(TestCaseError::fail)
    });
    let tally = tally.into_inner();
    eprintln!("power loss: {tally}");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(tally.power_losses >= tally.cases, "every case lost power");
}

/// `n` puts of `len`-byte values over the keys in turn, each acknowledged in
/// `model` (the negative controls' workload).
fn put_acknowledged(db: &Engine, model: &mut Model, n: usize, len: usize) {
    for i in 0..n {
        let k = i % KEYS;
        let v = value(k, i, len);
        let pos = model.begin(&[(k, Some(v.clone()))]);
        db.put(&key(k), &v).unwrap();
        model.ack(&pos, true);
    }
}

/// The negative control: with directory fsyncs dropped, renames of rotation
/// are not durable, and the same checker must find acknowledged writes lost.
#[test]
fn the_checker_catches_a_build_that_skips_directory_fsyncs() {
    let mut found = None;
    for seed in 0..16usize {
        let dir = super::support::mem_tempdir();
        let fs = Arc::new(PowerLossFs::new(dir.path()).unwrap());
        fs.drop_dir_syncs(true);
        let (db, _) = Engine::open(dir.path(), options(Mode::Always, Arc::clone(&fs))).unwrap();
        let mut model = Model::default();
        put_acknowledged(&db, &mut model, 40 + seed * 7, 200);
        drop(db);
        fs.power_loss(seed as u64, Tail::Synced).unwrap();
        assert!(fs.counts().dir_syncs_dropped > 0);
        let lost = match Engine::open(dir.path(), plain()) {
            Err(e) => Some(format!("open failed: {e}")),
            Ok((db, _)) => (0..KEYS).find_map(|k| {
                let v = db.get(&key(k)).ok()?;
                model
                    .explains(k, v.as_deref())
                    .is_empty()
                    .then(|| format!("key {k} lost its acknowledged value"))
            }),
        };
        if let Some(l) = lost {
            found = Some((seed, l));
            break;
        }
    }
    let found = found.expect("16 seeds without dir fsyncs and no violation: the checker is blind");
    eprintln!("negative control: seed {} -> {}", found.0, found.1);
}

/// A legacy JSON-lines `wal.log` migrated at open, with the power cut at
/// every call the migration makes: the legacy data was durable before open,
/// so every cut must leave all of it readable.
#[test]
fn power_loss_at_every_step_of_a_legacy_migration_keeps_the_legacy_data() {
    let mut legacy = String::new();
    let mut want = BTreeMap::new();
    for i in 0..40 {
        legacy.push_str(&format!(
            "{{\"op\":\"set\",\"key\":\"legacy-{i}\",\"value\":{i},\"timestamp\":1700000000}}\n"
        ));
        want.insert(format!("legacy-{i}"), Some(i.to_string()));
    }
    for i in (0..40).step_by(3) {
        legacy.push_str(&format!(
            "{{\"op\":\"delete\",\"key\":\"legacy-{i}\",\"timestamp\":1700000001}}\n"
        ));
        want.insert(format!("legacy-{i}"), None);
    }
    // How many calls a migration makes, uncut.
    let calls = {
        let dir = super::support::mem_tempdir();
        std::fs::write(dir.path().join("wal.log"), &legacy).unwrap();
        let fs = Arc::new(PowerLossFs::new(dir.path()).unwrap());
        let (db, report) =
            Engine::open(dir.path(), options(Mode::Always, Arc::clone(&fs))).unwrap();
        assert!(report.migrated_legacy_backup.is_some());
        drop(db);
        fs.counts().calls
    };
    assert!(calls > 3, "a migration makes several calls ({calls})");
    for nth in 1..=calls {
        let dir = super::support::mem_tempdir();
        std::fs::write(dir.path().join("wal.log"), &legacy).unwrap();
        let fs = Arc::new(PowerLossFs::new(dir.path()).unwrap());
        fs.cut_power_at_call(nth);
        if let Ok((db, _)) = Engine::open(dir.path(), options(Mode::Always, Arc::clone(&fs))) {
            drop(db);
        }
        fs.power_loss(nth, Tail::Mixed).unwrap();
        let (db, _) = Engine::open(dir.path(), plain())
            .unwrap_or_else(|e| panic!("cut at call {nth}: open failed: {e}"));
        for (k, v) in &want {
            let got = db
                .get(k.as_bytes())
                .unwrap()
                .map(|v| String::from_utf8(v).unwrap());
            assert_eq!(&got, v, "cut at call {nth}: key {k}");
        }
        db.close().unwrap();
    }
}

/// `KVSTORE_POWER_LOSS_SOAK=<seconds>`: random cases until the time is up.
#[test]
fn soak() {
    let Some(secs) = std::env::var("KVSTORE_POWER_LOSS_SOAK")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let base = std::env::var("KVSTORE_POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tally = Tally::default();
    let strategy = case();
    let mut seed = base;
    while Instant::now() < deadline {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        let mut runner = TestRunner::new_with_rng(Config::default(), rng);
        let case = strategy.new_tree(&mut runner).unwrap().current();
        if let Err(v) = run_case(&case, &mut tally) {
            eprintln!("VIOLATION seed {seed} (KVSTORE_POWER_LOSS_SEED={seed}): {v}");
            if std::env::var_os("KVSTORE_POWER_LOSS_DEBUG").is_some() {
                eprintln!("{case:#?}");
            }
            tally.violations.push(format!("seed {seed}: {v}"));
        }
        seed = seed.wrapping_add(1);
    }
    eprintln!(
        "soak: seeds {base}..{seed}, {tally}, {} violations",
        tally.violations.len()
    );
    assert!(tally.violations.is_empty(), "{:#?}", tally.violations);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn all_pairs(db: &Engine) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.range::<&[u8]>(..)
        .map(|p| p.unwrap().into_parts())
        .collect()
}

/// A directory that gives recovery work: sealed segments (one without its
/// hint, one with a preallocated tail left), a leftover `.tmp`, and a
/// `wal.log` whose header is zeros (torn while it was being written).
fn directory_needing_recovery(dir: &Path) {
    let opts = plain()
        .with_segment_bytes(4096)
        .with_sync(SyncMode::Never)
        .with_background_compaction(false);
    let (db, _) = Engine::open(dir, opts).unwrap();
    for i in 0..60 {
        db.put(&key(i % KEYS), &value(i % KEYS, i, 150)).unwrap();
    }
    db.close().unwrap();
    let segs = super::support::sealed_segments(dir);
    assert!(segs.len() >= 2, "rotations happened: {segs:?}");
    std::fs::remove_file(super::support::hint_of(&segs[0])).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len + 1000).unwrap();
    std::fs::write(dir.join("0000000000990000.wal.tmp"), [1u8; 64]).unwrap();
    std::fs::write(dir.join("wal.log"), [0u8; 4096]).unwrap();
}

/// The power cut at every call a recovery makes, with unsynced bytes kept
/// as prefixes or torn: the next open succeeds and finds what a clean open
/// finds. (Cut while recreating `wal.log` over its torn header, the new
/// header itself can be torn.)
#[test]
fn power_loss_at_every_call_of_a_recovery_keeps_the_data() {
    let prepared = super::support::mem_tempdir();
    directory_needing_recovery(prepared.path());
    let want = {
        let reference = super::support::mem_tempdir();
        copy_dir(prepared.path(), reference.path());
        let (db, report) = Engine::open(reference.path(), plain()).unwrap();
        assert!(
            report.leftovers_removed > 0 && report.segments >= 2,
            "{report:?}"
        );
        all_pairs(&db)
    };
    assert!(
        want.len() > 5,
        "the sealed segments hold data: {}",
        want.len()
    );
    let calls = {
        let d = super::support::mem_tempdir();
        copy_dir(prepared.path(), d.path());
        let fs = Arc::new(PowerLossFs::new(d.path()).unwrap());
        let opts = plain().with_fs(Arc::clone(&fs) as _);
        let (db, _) = Engine::open(d.path(), opts).unwrap();
        let calls = fs.counts().calls;
        drop(db);
        calls
    };
    assert!(calls > 5, "recovery makes calls through the seam ({calls})");
    for nth in 1..=calls {
        for (seed, tail) in [(0, Tail::Prefix), (1, Tail::Torn), (2, Tail::Prefix)] {
            let d = super::support::mem_tempdir();
            copy_dir(prepared.path(), d.path());
            let fs = Arc::new(PowerLossFs::new(d.path()).unwrap());
            fs.cut_power_at_call(nth);
            let opts = plain().with_fs(Arc::clone(&fs) as _);
            if let Ok((db, _)) = Engine::open(d.path(), opts) {
                drop(db);
            }
            let report = fs.power_loss(nth * 10 + seed, tail).unwrap();
            let (db, _) = Engine::open(d.path(), plain()).unwrap_or_else(|e| {
                panic!(
                    "cut at call {nth}/{calls}, {tail:?} seed {seed} ({report:?}): open failed: {e}"
                )
            });
            assert_eq!(all_pairs(&db), want, "cut at call {nth}, {tail:?}");
            db.close().unwrap();
        }
    }
}

/// A `wal.log` header that does not decode: torn (nothing after it) is
/// recreated; over records that decode it is damage, reported, not erased.
#[test]
fn a_garbage_wal_header_is_torn_only_when_no_record_follows() {
    let d = super::support::mem_tempdir();
    let (db, _) = Engine::open(d.path(), plain()).unwrap();
    for i in 0..40 {
        db.put(&key(i % KEYS), &value(i % KEYS, i, 150)).unwrap();
    }
    db.close().unwrap();
    let wal = d.path().join("wal.log");
    let mut bytes = std::fs::read(&wal).unwrap();
    assert!(bytes.len() > 20, "wal.log holds records");
    bytes[..20].copy_from_slice(&[0xab; 20]);
    std::fs::write(&wal, &bytes).unwrap();
    match Engine::open(d.path(), plain()) {
        Err(kvstore::engine::Error::Format { .. }) => {}
        other => panic!("records behind a bad header must not be dropped: {other:?}"),
    }
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "left untouched");

    // Only a (partly written) header: nothing acknowledged could live there.
    let mut torn = bytes[..20].to_vec();
    torn[..8].copy_from_slice(b"KVSTORE\0");
    torn.resize(4096, 0);
    std::fs::write(&wal, &torn).unwrap();
    let (db, report) = Engine::open(d.path(), plain()).unwrap();
    assert!(report.bytes_truncated > 0, "{report:?}");
    assert!(report.segments > 0 && report.live_keys > 0, "{report:?}");
    db.put(b"after", b"works").unwrap();
    db.close().unwrap();
    let (db, _) = Engine::open(d.path(), plain()).unwrap();
    assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"works"[..]));
}

/// Background compaction under `SyncMode::Never`: a synced value superseded
/// by a write still only in the page cache must not be compacted away before
/// that write is durable, or a power loss loses the key altogether.
#[test]
fn compaction_keeps_a_durable_value_whose_successor_is_not_yet_synced() {
    let d = super::support::mem_tempdir();
    let fs = Arc::new(PowerLossFs::new(d.path()).unwrap());
    let opts = Options::default()
        .with_segment_bytes(4096)
        .with_sync(SyncMode::Never)
        .with_background_compaction(true)
        .with_compaction_ratio(0.01)
        .with_compaction_min_bytes(1)
        .with_compaction_threads(1)
        .with_expiry_sweep_interval(Duration::from_millis(5))
        .with_fs(Arc::clone(&fs) as _);
    let (db, _) = Engine::open(d.path(), opts).unwrap();
    db.put(b"k", &[b'1'; 1000]).unwrap();
    for i in 0..12u8 {
        db.put(&[b'f', i], &[i; 900]).unwrap();
    }
    db.sync().unwrap();
    let before = db.stats().compactions;
    // Supersedes the synced value; only in the page cache (sync never).
    db.put(b"k", b"2").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().compactions == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        db.stats().compactions > before,
        "a background compaction ran"
    );
    fs.cut_power();
    drop(db);
    fs.power_loss(0, Tail::Synced).unwrap();
    let (db, _) = Engine::open(d.path(), plain()).unwrap();
    let got = db.get(b"k").unwrap();
    assert!(
        got.as_deref() == Some(&[b'1'; 1000][..]) || got.as_deref() == Some(&b"2"[..]),
        "the synced value or its successor, not {:?}",
        got.map(|v| v.len())
    );
    for i in 0..12u8 {
        assert_eq!(
            db.get(&[b'f', i]).unwrap(),
            Some(vec![i; 900]),
            "filler {i}"
        );
    }
}

/// A rotation renames `wal.log` to `<id>.seg` before the sealer syncs it,
/// and the rename can reach the disk first; the power then goes with the
/// segment's unsynced records torn. Such a segment has no hint and still its
/// zeroed, preallocated tail — or, filled to the brim, is damaged up to its
/// end. Its torn records must not be skipped over (resyncing there can land
/// inside a batch whose first record was torn and apply the rest of it).
#[test]
fn a_torn_batch_in_a_segment_whose_sealing_never_finished_is_dropped_whole() {
    for zero_tail in [true, false] {
        let d = super::support::mem_tempdir();
        let (db, _) = Engine::open(d.path(), plain()).unwrap();
        db.put(b"before", b"synced").unwrap();
        let mut b = Batch::new();
        b.put(b"batch-key-a", b"value-a")
            .put(b"batch-key-b", b"value-b");
        db.apply(b).unwrap();
        for i in 0..12u8 {
            db.put(&[b'f', i], &[i; 900]).unwrap();
        }
        db.close().unwrap();
        let seg = super::support::sealed_segments(d.path())
            .into_iter()
            .find(|p| {
                let bytes = std::fs::read(p).unwrap();
                bytes.windows(11).any(|w| w == b"batch-key-a")
            })
            .expect("the batch is in a sealed segment");
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.windows(11).position(|w| w == b"batch-key-a").unwrap();
        bytes[at..at + 11].copy_from_slice(b"torn-torn-t");
        if zero_tail {
            bytes.resize(bytes.len() + 4096, 0);
        } else {
            let n = bytes.len();
            bytes[n - 3..].copy_from_slice(&[0x5a; 3]);
        }
        std::fs::write(&seg, &bytes).unwrap();
        std::fs::remove_file(super::support::hint_of(&seg)).unwrap();

        let (db, _) = Engine::open(d.path(), plain()).unwrap();
        let a = db.get(b"batch-key-a").unwrap();
        let b = db.get(b"batch-key-b").unwrap();
        assert_eq!(
            a.is_some(),
            b.is_some(),
            "zero tail {zero_tail}: a batch in part: a {a:?}, b {b:?}"
        );
        assert_eq!(db.get(b"before").unwrap().as_deref(), Some(&b"synced"[..]));
        db.close().unwrap();
        // The torn tail was cut: a second open finds the same.
        let (db, _) = Engine::open(d.path(), plain()).unwrap();
        assert_eq!(db.get(b"batch-key-b").unwrap(), b);
    }
}

/// The second negative control: compaction outputs not synced before their
/// manifest (their syncs dropped) lose compacted data, and the workload's
/// check sees it.
#[test]
fn the_checker_catches_a_build_that_skips_the_compaction_output_fsync() {
    let mut found = None;
    for seed in 0..16usize {
        let dir = super::support::mem_tempdir();
        let fs = Arc::new(PowerLossFs::new(dir.path()).unwrap());
        fs.drop_syncs_of(Some(".seg.tmp"));
        let opts = options(Mode::Always, Arc::clone(&fs)).with_background_compaction(false);
        let (db, _) = Engine::open(dir.path(), opts).unwrap();
        let mut model = Model::default();
        put_acknowledged(&db, &mut model, 60 + seed * 5, 100);
        db.compact().unwrap();
        drop(db);
        assert!(fs.counts().syncs_dropped > 0, "compaction wrote outputs");
        fs.power_loss(seed as u64, Tail::Synced).unwrap();
        let lost = match Engine::open(dir.path(), plain()) {
            Err(e) => Some(format!("open failed: {e}")),
            Ok((db, _)) => (0..KEYS).find_map(|k| match db.get(&key(k)) {
                Err(e) => Some(format!("key {k}: {e}")),
                Ok(v) => model
                    .explains(k, v.as_deref())
                    .is_empty()
                    .then(|| format!("key {k} lost its acknowledged value")),
            }),
        };
        if let Some(l) = lost {
            found = Some((seed, l));
            break;
        }
    }
    let found = found.expect("16 seeds with unsynced compaction outputs and no violation");
    eprintln!(
        "negative control (compaction fsync): seed {} -> {}",
        found.0, found.1
    );
}
