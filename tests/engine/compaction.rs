//! Compaction: space is reclaimed, nothing is lost, nothing deleted comes back —
//! across restarts, concurrent writes, injected failures at every step, and kills.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::support::{self, open, tiny};
use kvstore::engine::clock::ManualClock;
use kvstore::engine::fs::{FaultyFs, FsOp};
use kvstore::engine::{Engine, Expiry};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// Names of files in `dir` that only an unfinished write or compaction leaves.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n == "COMPACTION" || n.ends_with(".migrating"))
        .collect()
}

fn assert_matches_model(db: &Engine, model: &BTreeMap<Vec<u8>, Vec<u8>>, universe: u32) {
    for i in 0..universe {
        let k = key(i);
        assert_eq!(db.get(&k).unwrap().as_ref(), model.get(&k), "key {i}");
    }
    assert_eq!(db.stats().live_keys, model.len() as u64);
}

#[test]
fn deleted_keys_stay_deleted_after_compaction_and_restart() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    let mut model = BTreeMap::new();
    // Several generations of each key spread over many segments.
    for round in 0..3u32 {
        for i in 0..300 {
            let v = format!("v{round}-{i}").into_bytes();
            db.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    for i in (0..300).step_by(2) {
        db.delete(&key(i)).unwrap();
        model.remove(&key(i));
    }
    let before = db.stats();
    let report = db.compact().unwrap();
    assert!(report.reclaimed_bytes > 0, "{report:?}");
    assert!(db.stats().disk_bytes < before.disk_bytes);
    assert_matches_model(&db, &model, 300);
    db.close().unwrap();
    let (db, _) = open(d.path(), tiny());
    assert_matches_model(&db, &model, 300);
    // A second compaction and restart drop the tombstones too; still nothing back.
    db.compact().unwrap();
    drop(db);
    let (db, _) = open(d.path(), tiny());
    assert_matches_model(&db, &model, 300);
    assert!(leftovers(d.path()).is_empty());
}

#[test]
fn expired_records_are_dropped_and_never_return() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let opts = || tiny().with_clock(Arc::new(clock.clone()));
    let (db, _) = open(d.path(), opts());
    for i in 0..200 {
        db.put(&key(i), b"forever").unwrap();
        db.put_with_expiry(&key(i), b"short", Expiry::At(1_000_500))
            .unwrap();
    }
    clock.advance(1000);
    db.compact().unwrap();
    assert_eq!(db.stats().live_keys, 0);
    drop(db);
    let (db, _) = open(d.path(), opts());
    for i in 0..200 {
        assert_eq!(db.get(&key(i)).unwrap(), None, "key {i} came back");
    }
    // Even if the clock went backwards, the dropped keys have no record left
    // to come back from: the older "forever" values were dropped with them.
    clock.set(0);
    drop(db);
    let (db, _) = open(d.path(), opts());
    assert_eq!(db.stats().live_keys, 0);
}

#[test]
fn writes_during_compaction_keep_their_newer_values() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    for i in 0..2000 {
        db.put(&key(i), b"old").unwrap();
    }
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for round in 0..5u32 {
                for i in (0..2000).step_by(7) {
                    db.put(&key(i), format!("new{round}").as_bytes()).unwrap();
                }
            }
        })
    };
    for _ in 0..5 {
        db.compact().unwrap();
    }
    writer.join().unwrap();
    db.compact().unwrap();
    let check = |db: &Engine| {
        for i in 0..2000 {
            let want: &[u8] = if i % 7 == 0 { b"new4" } else { b"old" };
            assert_eq!(db.get(&key(i)).unwrap().unwrap(), want, "key {i}");
        }
    };
    check(&db);
    drop(db);
    let (db, _) = open(d.path(), tiny());
    check(&db);
}

#[test]
fn compaction_brings_disk_bytes_near_live_bytes_after_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let opts = tiny().with_segment_bytes(256 << 10);
    let (db, _) = open(d.path(), opts.clone());
    let value = [7u8; 100];
    for _ in 0..3 {
        for i in 0..10_000u32 {
            db.put(format!("{i:016}").as_bytes(), &value).unwrap();
        }
    }
    db.compact().unwrap();
    let s = db.stats();
    let live = s.live_keys * (16 + 100);
    let ratio = s.disk_bytes as f64 / live as f64;
    assert!(
        ratio <= 1.1,
        "disk {} vs live {live}: {ratio:.3}",
        s.disk_bytes
    );
    assert_eq!(s.compactions, 1);
    assert!(s.reclaimed_bytes > 2 * live);
}

#[test]
fn any_number_of_compaction_threads_keeps_every_value_and_no_deleted_one() {
    for threads in [1, 3, 8] {
        let d = tempfile::tempdir().unwrap();
        // Steps of 8 segments, so a step has several outputs to share out.
        let opts = || {
            tiny()
                .with_compaction_threads(threads)
                .with_compaction_step_segments(8)
        };
        let (db, _) = open(d.path(), opts());
        let mut model = BTreeMap::new();
        for round in 0..3u32 {
            for i in 0..400 {
                let v = format!("{round}-{i}").into_bytes();
                db.put(&key(i), &v).unwrap();
                model.insert(key(i), v);
            }
        }
        for i in (0..400).step_by(5) {
            db.delete(&key(i)).unwrap();
            model.remove(&key(i));
        }
        let r = db.compact().unwrap();
        assert!(r.segments_after < r.segments_before, "{threads}: {r:?}");
        assert_matches_model(&db, &model, 400);
        drop(db);
        let (db, _) = open(d.path(), opts());
        assert_matches_model(&db, &model, 400);
        assert!(leftovers(d.path()).is_empty());
    }
}

#[test]
fn open_files_and_mappings_stay_flat_across_100_compactions() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    let count = |what: &str| -> usize {
        match what {
            "fd" => std::fs::read_dir("/proc/self/fd").unwrap().count(),
            _ => std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .filter(|l| l.contains(d.path().to_str().unwrap()))
                .count(),
        }
    };
    for i in 0..50 {
        db.put(&key(i), &[1; 200]).unwrap();
    }
    db.compact().unwrap();
    let (fds, maps) = (count("fd"), count("maps"));
    for round in 0..100u32 {
        for i in 0..50 {
            db.put(&key(i), &round.to_le_bytes()).unwrap();
        }
        db.compact().unwrap();
    }
    // Other tests in this process open files too: allow a little slack, far
    // below the 100+ a leak of one descriptor per compaction would add.
    assert!(
        count("fd") <= fds + 8,
        "fds grew from {fds} to {}",
        count("fd")
    );
    assert!(
        count("maps") <= maps + 2,
        "mappings grew from {maps} to {}",
        count("maps")
    );
    assert_eq!(db.stats().compactions, 101);
}

/// Opens `dir` with tiny segments through a file system that fails on demand.
fn open_faulty(dir: &Path) -> (Engine, FaultyFs) {
    support::open_faulty(dir, tiny())
}

/// Runs one compaction with the N-th call of `op` failing, then checks that a
/// reopen with a healthy file system loses nothing and resurrects nothing.
fn compaction_survives_failure_of(op: FsOp) {
    let mut failed = 0;
    for nth in 1..=6u64 {
        let d = tempfile::tempdir().unwrap();
        let (db, fs) = open_faulty(d.path());
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
        fs.fail_from(op, nth);
        let result = db.compact();
        failed += usize::from(result.is_err());
        // Whatever happened, what the engine still serves is the model...
        if !db.stats().read_only {
            assert_matches_model(&db, &model, 150);
        }
        drop(db);
        fs.heal(op);
        // ... and so is what a reopen recovers, from a clean directory.
        let (db, _) = open(d.path(), tiny());
        assert_matches_model(&db, &model, 150);
        assert!(
            leftovers(d.path()).is_empty(),
            "{op:?} #{nth} ({result:?}) left {:?}",
            leftovers(d.path())
        );
    }
    assert!(failed > 0, "no injected {op:?} failure reached compaction");
}

#[test]
fn a_failed_write_during_compaction_loses_and_resurrects_nothing() {
    compaction_survives_failure_of(FsOp::Write);
}

#[test]
fn a_failed_sync_during_compaction_loses_and_resurrects_nothing() {
    compaction_survives_failure_of(FsOp::Sync);
}

#[test]
fn a_failed_rename_during_compaction_loses_and_resurrects_nothing() {
    compaction_survives_failure_of(FsOp::Rename);
}

#[test]
fn a_failed_remove_during_compaction_loses_and_resurrects_nothing() {
    compaction_survives_failure_of(FsOp::Remove);
}

#[test]
fn a_failed_directory_sync_during_compaction_loses_and_resurrects_nothing() {
    compaction_survives_failure_of(FsOp::SyncDir);
}

#[test]
fn inputs_a_failed_retirement_left_behind_never_resurrect() {
    let d = tempfile::tempdir().unwrap();
    let (db, fs) = open_faulty(d.path());
    for round in 0..2u32 {
        for i in 0..150 {
            db.put(&key(i), format!("{round}:{i}").as_bytes()).unwrap();
        }
    }
    // The outputs are in place, but deleting the inputs fails: they stay on
    // disk, holding old values of every key. Were this process to go on, delete
    // the keys and compact again, that compaction would drop the tombstones and
    // replace the manifest naming those inputs, and a restart would bring the
    // old values back. So the engine stops writing instead.
    fs.fail_from(FsOp::Remove, 1);
    assert!(db.compact().is_err());
    assert!(db.stats().read_only);
    assert!(db.delete(&key(0)).is_err());
    assert_eq!(db.get(&key(7)).unwrap(), Some(b"1:7".to_vec()));
    drop(db);
    fs.heal(FsOp::Remove);

    // The next open finishes the deletions; now the sequence is safe.
    let (db, _) = open(d.path(), tiny());
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
    for i in 0..150 {
        db.delete(&key(i)).unwrap();
    }
    db.compact().unwrap();
    drop(db);
    let (db, _) = open(d.path(), tiny());
    for i in 0..150 {
        assert_eq!(db.get(&key(i)).unwrap(), None, "key {i} came back");
    }
    assert_eq!(db.stats().live_keys, 0);
}

#[test]
fn background_compaction_runs_when_dead_bytes_pass_the_thresholds() {
    let d = tempfile::tempdir().unwrap();
    let opts = tiny()
        .with_background_compaction(true)
        .with_compaction_ratio(0.5)
        .with_compaction_min_bytes(64 << 10);
    let (db, _) = open(d.path(), opts);
    for _ in 0..10 {
        for i in 0..500 {
            db.put(&key(i), &[3; 100]).unwrap();
        }
    }
    // The engine's background thread checks every 250 ms; give it ample time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.stats().compactions == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(db.stats().compactions >= 1);
    for i in 0..500 {
        assert_eq!(db.get(&key(i)).unwrap().unwrap(), [3; 100]);
    }
}

const CHILD_ENV: &str = "KVSTORE_TEST_COMPACTION_CHILD";
const KEYS: u64 = 400;

/// The deterministic operation number `i` of the killed child: (key, value or delete).
fn child_op(i: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    let k = format!("key{:06}", (i * 7919) % KEYS).into_bytes();
    if i % 5 == 4 {
        (k, None)
    } else {
        (k, Some(i.to_le_bytes().to_vec()))
    }
}

/// In the child: write forever while another thread compacts forever.
fn run_child(dir: &str) -> ! {
    use std::io::Write;
    let (db, _) = Engine::open(dir, tiny()).unwrap();
    let compactor = db.clone();
    std::thread::spawn(move || {
        loop {
            compactor.compact().unwrap();
        }
    });
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        match child_op(i) {
            (k, Some(v)) => drop(db.put(&k, &v).unwrap()),
            (k, None) => drop(db.delete(&k).unwrap()),
        }
        writeln!(out, "{i}").unwrap();
        out.flush().unwrap();
    }
    unreachable!("the parent kills this process")
}

#[test]
fn a_process_killed_mid_compaction_loses_and_resurrects_nothing() {
    use std::io::BufRead;
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(&dir);
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for round in 0..4u64 {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "compaction::a_process_killed_mid_compaction_loses_and_resurrects_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, d.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 2_000 + (seed.wrapping_mul(round + 1) % 6_000);
        let mut last_acked = None;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let Ok(n) = line.unwrap().trim().parse::<u64>() else {
                continue;
            };
            last_acked = Some(n);
            if n >= kill_after {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // The child ran on until the kill: its later acknowledgements are still
        // in the pipe, and they count too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Ok(n) = line.trim().parse::<u64>() {
                last_acked = Some(n);
            }
        }
        let last = last_acked.expect("child acknowledged nothing");
        // The model: every acknowledged op applied in order; op last+1 was in
        // flight and may or may not have landed.
        let mut model = BTreeMap::new();
        for i in 0..=last {
            match child_op(i) {
                (k, Some(v)) => model.insert(k, v),
                (k, None) => model.remove(&k),
            };
        }
        let (in_flight_key, in_flight_value) = child_op(last + 1);
        let (db, report) = open(d.path(), tiny());
        eprintln!("round {round}: killed after op {last}; recovery: {report:?}");
        for k in 0..KEYS {
            let k = format!("key{k:06}").into_bytes();
            let got = db.get(&k).unwrap();
            if k == in_flight_key && got == in_flight_value {
                continue;
            }
            assert_eq!(
                got.as_ref(),
                model.get(&k),
                "round {round}, key {:?}",
                String::from_utf8_lossy(&k)
            );
        }
        assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
    }
}
