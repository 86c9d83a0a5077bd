//! Process kills: the test re-runs its own binary as a writer child that opens
//! the engine on a temp dir (4 KiB segments, so it rotates all the time) and
//! writes from several threads — single puts, puts each followed by a delete,
//! and batches of [`BATCH_KEYS`] puts — printing each acknowledged write. The
//! parent SIGKILLs it after a random number of acknowledgements, reopens the
//! directory and checks that every acknowledged write is there with its value
//! (and every acknowledged delete is not), and that no batch is partially
//! there. Two kills per directory, in every sync mode: an acknowledged write
//! has reached the OS, so a process kill never loses it.
//! Also: when each sync mode fsyncs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kvstore::engine::{Batch, Engine, Options, SyncMode};

use super::support::{random_u64, rerun_self, sealed_segments, spawn};

/// Set in the child: the data directory to write to.
const DIR_ENV: &str = "KVSTORE_TEST_CRASH_DIR";
/// Set in the child: which kill round this is (keys are namespaced by it).
const ROUND_ENV: &str = "KVSTORE_TEST_CRASH_ROUND";

const PUT_THREADS: usize = 3;
const BATCH_THREADS: usize = 2;
const BATCH_KEYS: usize = 6;
const ROUNDS: u32 = 2;

fn options(sync: SyncMode) -> Options {
    Options::default()
        .with_segment_bytes(4096)
        .with_sync(sync)
        .with_background_compaction(false)
}

/// The value written under `key`: derived from it, so the parent can check it.
fn value_of(key: &str) -> Vec<u8> {
    format!("{key}|{key}|{key}").into_bytes()
}

fn put_key(round: u32, thread: usize, i: u64) -> String {
    format!("r{round}/p{thread}/{i:08}")
}

fn delete_key(round: u32, i: u64) -> String {
    format!("r{round}/d/{i:08}")
}

fn batch_id(round: u32, thread: usize, n: u64) -> String {
    format!("r{round}/b{thread}/{n:08}")
}

fn batch_key(id: &str, j: usize) -> String {
    format!("{id}/{j}")
}

/// The child: writes until killed, printing `ACK P <key>` or `ACK B <batch id>`
/// once the write is acknowledged.
fn write_until_killed(dir: &Path, round: u32, sync: SyncMode) -> ! {
    let (db, _) = Engine::open(dir, options(sync)).unwrap();
    let ack = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {line}").unwrap();
        out.flush().unwrap();
    };
    std::thread::scope(|s| {
        for t in 0..PUT_THREADS {
            let db = db.clone();
            s.spawn(move || {
                for i in 0.. {
                    let key = put_key(round, t, i);
                    db.put(key.as_bytes(), &value_of(&key)).unwrap();
                    ack(format!("P {key}"));
                }
            });
        }
        {
            let db = db.clone();
            s.spawn(move || {
                for i in 0.. {
                    let key = delete_key(round, i);
                    db.put(key.as_bytes(), &value_of(&key)).unwrap();
                    db.delete(key.as_bytes()).unwrap();
                    ack(format!("D {key}"));
                }
            });
        }
        for t in 0..BATCH_THREADS {
            let db = db.clone();
            s.spawn(move || {
                for n in 0.. {
                    let id = batch_id(round, t, n);
                    let mut b = Batch::new();
                    for j in 0..BATCH_KEYS {
                        let key = batch_key(&id, j);
                        b.put(key.as_bytes(), &value_of(&key));
                    }
                    db.apply(b).unwrap();
                    ack(format!("B {id}"));
                }
            });
        }
    });
    unreachable!("writer threads never finish")
}

/// What the children acknowledged, over all rounds.
#[derive(Default)]
struct Acked {
    puts: Vec<String>,
    deletes: Vec<String>,
    batches: Vec<String>,
}

fn sync_name(sync: SyncMode) -> &'static str {
    match sync {
        SyncMode::Always => "always",
        SyncMode::Periodic(_) => "periodic",
        SyncMode::Never => "never",
    }
}

/// Runs one writer child (the test `test_name`) and kills it after `target` acks.
fn run_and_kill(test_name: &str, dir: &Path, round: u32, target: usize, acked: &mut Acked) {
    let mut child = spawn(
        rerun_self(test_name)
            .env(DIR_ENV, dir)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0usize;
    let mut killed = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if out.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        // A line cut by the kill was never fully printed: not counted.
        let Some(text) = line.strip_suffix(b"\n") else {
            break;
        };
        let text = String::from_utf8_lossy(text);
        let Some(ack) = text.strip_prefix("ACK ") else {
            continue;
        };
        if let Some(key) = ack.strip_prefix("P ") {
            acked.puts.push(key.to_string());
        } else if let Some(key) = ack.strip_prefix("D ") {
            acked.deletes.push(key.to_string());
        } else if let Some(id) = ack.strip_prefix("B ") {
            acked.batches.push(id.to_string());
        }
        seen += 1;
        if seen >= target && !killed {
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "writer child stopped after {seen} of {target} acks: {status}"
    );
}

/// Every acknowledged write is present with its value; every batch is whole.
fn check(db: &Engine, acked: &Acked, context: &str) {
    for key in &acked.puts {
        let got = db.get(key.as_bytes()).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value_of(key).as_slice()),
            "acknowledged put {key} ({context})"
        );
    }
    for id in &acked.batches {
        for j in 0..BATCH_KEYS {
            let key = batch_key(id, j);
            let got = db.get(key.as_bytes()).unwrap();
            assert_eq!(
                got.as_deref(),
                Some(value_of(&key).as_slice()),
                "key {key} of acknowledged batch ({context})"
            );
        }
    }
    for key in &acked.deletes {
        assert_eq!(
            db.get(key.as_bytes()).unwrap(),
            None,
            "acknowledged delete of {key} ({context})"
        );
    }
    // Batches in flight at the kill: all of their keys or none.
    let mut per_batch: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..ROUNDS {
        for key in db.scan_prefix(format!("r{round}/b").as_bytes(), None, usize::MAX) {
            let key = String::from_utf8(key).unwrap();
            let (id, _) = key.rsplit_once('/').unwrap();
            per_batch.entry(id.to_string()).or_default().insert(key);
        }
    }
    for (id, keys) in &per_batch {
        assert_eq!(
            keys.len(),
            BATCH_KEYS,
            "batch {id} is partially present: {keys:?} ({context})"
        );
    }
}

/// The parent side of one sync mode's test, or the child when the env says so.
fn kill_twice_and_check(test_name: &str, sync: SyncMode) {
    if let Ok(dir) = std::env::var(DIR_ENV) {
        let round = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
        write_until_killed(Path::new(&dir), round, sync);
    }
    let seed = random_u64();
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Acked::default();
    for round in 0..ROUNDS {
        let target = 200 + ((seed >> (round * 16)) % 1800) as usize;
        let context = format!(
            "sync {}, round {round}, kill after {target} acks, seed {seed:#x}",
            sync_name(sync)
        );
        run_and_kill(test_name, dir.path(), round, target, &mut acked);
        let (db, report) = Engine::open(dir.path(), options(sync)).unwrap();
        check(&db, &acked, &context);
        assert!(
            report.live_keys >= (acked.puts.len() + BATCH_KEYS * acked.batches.len()) as u64,
            "{report:?} ({context})"
        );
        db.close().unwrap();
    }
    assert!(
        sealed_segments(dir.path()).len() > 2,
        "the writers should have rotated wal.log several times"
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_with_sync_always() {
    kill_twice_and_check(
        "crash::acknowledged_writes_survive_sigkill_with_sync_always",
        SyncMode::Always,
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_with_sync_periodic() {
    kill_twice_and_check(
        "crash::acknowledged_writes_survive_sigkill_with_sync_periodic",
        SyncMode::Periodic(Duration::from_millis(50)),
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_with_sync_never() {
    kill_twice_and_check(
        "crash::acknowledged_writes_survive_sigkill_with_sync_never",
        SyncMode::Never,
    );
}

#[test]
fn periodic_sync_fsyncs_a_lone_write_soon_after_it() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Engine::open(
        d.path(),
        options(SyncMode::Periodic(Duration::from_millis(20))),
    )
    .unwrap();
    db.put(b"k", b"v").unwrap();
    // Nothing else is written: the background thread must sync on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db.stats().fsyncs == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no fsync within 10 s of a write with a 20 ms interval"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sync_never_fsyncs_only_when_asked() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Engine::open(
        d.path(),
        options(SyncMode::Never).with_segment_bytes(64 << 20),
    )
    .unwrap();
    for i in 0..50u32 {
        db.put(&i.to_le_bytes(), b"v").unwrap();
    }
    assert_eq!(db.stats().fsyncs, 0);
    db.sync().unwrap();
    assert_eq!(db.stats().fsyncs, 1);
    db.sync().unwrap();
    assert_eq!(db.stats().fsyncs, 1, "nothing new to sync");
}
