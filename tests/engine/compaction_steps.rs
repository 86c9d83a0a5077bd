//! Compaction in bounded steps: a run needs about one segment of free disk
//! whatever the live data, and no step drops a tombstone that still hides a
//! value an earlier step copied.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::support::copy_dir;
use super::support::{open, tiny};
use kvstore::engine::fs::FaultyFs;
use kvstore::engine::{Engine, Error, Options};

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn total_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn assert_model(db: &Engine, model: &BTreeMap<Vec<u8>, Vec<u8>>, universe: u32) {
    for i in 0..universe {
        let k = key(i);
        assert_eq!(db.get(&k).unwrap().as_ref(), model.get(&k), "key {i}");
    }
    assert_eq!(db.stats().live_keys, model.len() as u64);
}

const SEGMENT: u64 = 64 << 10;
const KEYS: u32 = 2000;

fn spread_options(fs: &FaultyFs, step_segments: u32) -> Options {
    tiny()
        .with_segment_bytes(SEGMENT)
        .with_compaction_step_segments(step_segments)
        .with_fs(Arc::new(fs.clone()))
}

/// About 6.5 segments of live data spread over about 15 segments, every
/// older segment part live, part dead.
fn spread_fixture(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let (db, _) = open(dir, spread_options(&FaultyFs::new(), 1));
    let mut model = BTreeMap::new();
    for round in 0..3u32 {
        for i in (0..KEYS).filter(|i| round == 0 || i % 3 >= round) {
            let v = format!("{round}:{i}:{}", "x".repeat(200)).into_bytes();
            db.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    let s = db.stats();
    assert!(s.disk_bytes - s.dead_bytes > 6 * SEGMENT, "{s:?}");
    db.close().unwrap();
    model
}

#[test]
fn several_segments_of_live_data_compact_with_one_segment_of_free_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let model = spread_fixture(&source);

    // The disk is nearly full: one and a half segments free (beside the new
    // wal.log's allocation, below). One step copying
    // all the live data at once runs out of space, and changes nothing...
    let whole = tmp.path().join("whole");
    copy_dir(&source, &whole);
    let fs = FaultyFs::new();
    let (db, _) = open(&whole, spread_options(&fs, 1024));
    fs.limit_space(total_bytes(&whole) + SEGMENT * 5 / 2);
    let err = db.compact().unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
        "{err:?}"
    );
    assert_model(&db, &model, KEYS);

    // ... while steps of one segment each, installed and their inputs deleted
    // before the next starts, get through.
    let stepped = tmp.path().join("stepped");
    copy_dir(&source, &stepped);
    let fs = FaultyFs::new();
    let (db, _) = open(&stepped, spread_options(&fs, 1));
    let before = total_bytes(&stepped);
    // Plus one segment for the wal.log that replaces the one compaction seals:
    // a segment is allocated whole up front.
    fs.limit_space(before + SEGMENT * 5 / 2);
    let report = db.compact().unwrap();
    assert!(report.steps >= 3, "{report:?}");
    assert!(total_bytes(&stepped) < before * 3 / 5, "{report:?}");
    assert!(db.stats().dead_bytes < 1024, "{:?}", db.stats());
    assert_model(&db, &model, KEYS);
    drop(db);
    let (db, _) = open(&stepped, spread_options(&FaultyFs::new(), 1));
    assert_model(&db, &model, KEYS);
}

#[test]
fn a_delete_made_between_steps_keeps_hiding_the_value_an_earlier_step_copied() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let opts = || tiny().with_fs(Arc::new(fs.clone()));
    let (db, _) = open(d.path(), opts());
    let mut model = BTreeMap::new();
    // Odd keys stay live in the oldest segments, beside dead even ones, so
    // the first step copies key 1 into its output.
    for round in 0..2u32 {
        for i in (0..300).filter(|i| round == 0 || i % 2 == 0) {
            let v = format!("{round}:{i}").into_bytes();
            db.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    // After the first step is installed (its manifest is being removed), key 1
    // is deleted and its tombstone sealed into a new segment. A later step of
    // this run must not take that segment and drop the tombstone while the
    // first step's output still holds key 1.
    let fillers = Arc::new(AtomicU32::new(0));
    {
        let (db, fillers) = (db.clone(), Arc::clone(&fillers));
        fs.before_remove_of("COMPACTION", move || {
            assert_eq!(db.get(&key(1)).unwrap(), Some(b"0:1".to_vec()));
            db.delete(&key(1)).unwrap();
            let segments = db.stats().segments;
            let mut n = 0u32;
            while db.stats().segments == segments {
                db.put(format!("filler{n:06}").as_bytes(), &[0; 64])
                    .unwrap();
                n += 1;
            }
            fillers.store(n, Ordering::SeqCst);
        });
    }
    model.remove(&key(1));
    let report = db.compact().unwrap();
    let n = fillers.load(Ordering::SeqCst);
    assert!(n > 0, "the hook never ran: {report:?}");
    for i in 0..n {
        model.insert(format!("filler{i:06}").into_bytes(), vec![0; 64]);
    }
    assert!(report.steps >= 2, "{report:?}");
    assert_eq!(db.get(&key(1)).unwrap(), None);
    drop(db);

    let (db, _) = open(d.path(), opts());
    assert_model(&db, &model, 300);
    // The next run (taking the new segment) drops the tombstone and the copy.
    db.compact().unwrap();
    drop(db);
    let (db, _) = open(d.path(), opts());
    assert_model(&db, &model, 300);
}

#[test]
fn a_wholly_live_segment_is_left_as_it_is() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    for i in 0..300 {
        db.put(&key(i), format!("v{i}").as_bytes()).unwrap();
    }
    db.compact().unwrap();
    let segs = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    };
    let before = segs(d.path());
    // Nothing is dead: a second run rewrites nothing.
    let report = db.compact().unwrap();
    assert_eq!(report.live_bytes_rewritten, 0, "{report:?}");
    assert_eq!(segs(d.path()), before);
    for i in 0..300 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(format!("v{i}").into_bytes()));
    }
}

#[test]
fn small_outputs_of_successive_runs_are_merged_so_segments_stay_few() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    for cycle in 0..60u32 {
        // Each run leaves a small output of this cycle's live records.
        for round in 0..2u32 {
            for i in cycle * 30..(cycle + 1) * 30 {
                db.put(&key(i), format!("{round}:{i}").as_bytes()).unwrap();
            }
        }
        db.compact().unwrap();
    }
    let s = db.stats();
    let live = s.disk_bytes - s.dead_bytes;
    // Without merging there would be one output per run: 60 or more.
    assert!(s.segments <= 2 * live / 4096 + 4, "{s:?}");
    for i in 0..1800 {
        assert_eq!(
            db.get(&key(i)).unwrap(),
            Some(format!("1:{i}").into_bytes())
        );
    }
}

/// Segment ids in `dir`, oldest first.
fn segment_ids(dir: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            (
                u64::from_str_radix(&stem, 16).unwrap(),
                std::fs::metadata(&p).unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn an_output_takes_an_id_below_its_input_when_the_ids_above_are_taken() {
    let d = tempfile::tempdir().unwrap();
    let opts = || tiny().with_compaction_step_segments(2);
    let (db, _) = open(d.path(), opts());
    let mut model = BTreeMap::new();
    for round in 0..3u32 {
        for i in (0..300).filter(|i| round < 2 || i % 2 == 0) {
            let v = format!("{round}:{i}:{}", "v".repeat(24)).into_bytes();
            db.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    db.compact().unwrap();
    // One step wrote two outputs with consecutive ids: the odd keys.
    let ids = segment_ids(d.path());
    let (first, second) = (ids[0], ids[1]);
    assert_eq!(first.0 + 1, second.0, "{ids:x?}");
    assert!(
        2 * second.1 >= 4096,
        "second output should be kept: {ids:x?}"
    );
    // Make the first one part dead: the next run compacts it alone, and the
    // id just above it is the second's.
    let v = b"new".to_vec();
    db.put(&key(1), &v).unwrap();
    model.insert(key(1), v);
    db.compact().unwrap();
    let after = segment_ids(d.path());
    assert!(!after.iter().any(|s| s.0 == first.0), "{after:x?}");
    assert!(after[0].0 < first.0, "{after:x?}");
    assert_eq!(after[1], second, "{after:x?}");
    assert_model(&db, &model, 300);
    drop(db);
    let (db, _) = open(d.path(), opts());
    assert_model(&db, &model, 300);
}

/// Issue 9.3: a panic between a step's install and the retiring of its inputs
/// (here: as the first input is being removed) latches the engine read-only
/// with the cause, instead of going on with inputs whose tombstones a later
/// step could drop; reads go on, and the next open finishes the step from
/// its manifest with nothing lost or resurrected.
#[test]
fn a_panic_between_install_and_retire_latches_and_the_next_open_finishes_the_step() {
    let d = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let opts = || tiny().with_fs(Arc::new(fs.clone()));
    let (db, _) = open(d.path(), opts());
    let mut model = BTreeMap::new();
    for round in 0..3u32 {
        for i in 0..200 {
            let v = format!("{round}:{i}").into_bytes();
            db.put(&key(i), &v).unwrap();
            model.insert(key(i), v);
        }
    }
    for i in (0..200).step_by(3) {
        db.delete(&key(i)).unwrap();
        model.remove(&key(i));
    }
    db.sync().unwrap();
    let oldest = super::support::sealed_segments(d.path())
        .into_iter()
        .min()
        .expect("sealed segments");
    let name = oldest.file_name().unwrap().to_string_lossy().into_owned();
    fs.before_remove_of(&name, || panic!("injected compaction bug"));

    match db.compact() {
        Err(Error::ReadOnly { cause }) => {
            assert!(
                cause.to_string().contains("injected compaction bug"),
                "{cause}"
            )
        }
        other => panic!("expected a read-only latch, got {other:?}"),
    }
    assert!(db.fault().is_some());
    assert!(matches!(
        db.put(b"after", b"x"),
        Err(Error::ReadOnly { .. })
    ));
    assert_model(&db, &model, 200);
    drop(db);

    let (db, _) = open(d.path(), opts());
    assert_model(&db, &model, 200);
    assert!(!d.path().join("COMPACTION").exists());
    db.put(b"after", b"x").unwrap();
}
