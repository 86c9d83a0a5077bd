//! Recovery from damaged and foreign directories, with the fixtures made in code:
//! a torn `wal.log` tail, a flipped byte in a sealed segment (scanned, or read
//! through its hint), an incomplete batch, a legacy JSON-lines `wal.log` (and
//! its interrupted migrations), an unsupported format version, leftover
//! `*.tmp` files, a hint that does not match its segment, and random damage
//! anywhere, which must never panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvstore::engine::__test_support::record::{self, RecordKind};
use kvstore::engine::__test_support::{DecodeError, FILE_HEADER_LEN, MAGIC};
use kvstore::engine::clock::ManualClock;
use kvstore::engine::{Batch, Engine, Error, Options, SegmentId, SyncMode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::support::tiny;
use super::support::{
    append, copy_dir, data_files, find, flip, hint_of, overwrite, sealed_segments, truncate,
};

fn key(i: usize) -> Vec<u8> {
    format!("key{i:04}").into_bytes()
}

/// Every value is derived from its key, so a read can be checked for wrong data.
fn value_of(key: &[u8]) -> Vec<u8> {
    let mut v = b"value of ".to_vec();
    v.extend_from_slice(key);
    v.extend_from_slice(&[b'.'; 40]);
    v
}

fn wal(dir: &Path) -> PathBuf {
    dir.join("wal.log")
}

/// Writes `n` keys with 4 KiB segments and closes: several sealed segments with
/// their hints, and a `wal.log`.
fn sealed_fixture(dir: &Path, n: usize) {
    let (db, _) = Engine::open(dir, tiny()).unwrap();
    for i in 0..n {
        db.put(&key(i), &value_of(&key(i))).unwrap();
    }
    db.close().unwrap();
    assert!(sealed_segments(dir).len() >= 3, "fixture should rotate");
}

/// The records of a segment file that holds only puts: (offset, key, length).
fn records(path: &Path) -> Vec<(usize, Vec<u8>, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = FILE_HEADER_LEN;
    while let Ok(r) = record::decode(&bytes[at..]) {
        assert_eq!(r.kind, RecordKind::Put, "fixture holds only puts");
        out.push((at, r.key.to_vec(), r.encoded_len()));
        at += r.encoded_len();
    }
    assert_eq!(at, bytes.len(), "every record of {path:?} decodes");
    out
}

fn assert_keys_intact(db: &Engine, keys: impl IntoIterator<Item = usize>) {
    for i in keys {
        assert_eq!(
            db.get(&key(i)).unwrap(),
            Some(value_of(&key(i))),
            "key {i} should be intact"
        );
    }
}

#[test]
fn a_torn_wal_tail_is_truncated_to_the_last_good_record_and_writing_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Engine::open(d.path(), Options::default()).unwrap();
    for i in 0..10 {
        db.put(&key(i), &value_of(&key(i))).unwrap();
    }
    db.close().unwrap();
    let len = std::fs::metadata(wal(d.path())).unwrap().len();
    let last = record::encoded_len(key(9).len(), value_of(&key(9)).len(), 0) as u64;
    truncate(&wal(d.path()), len - 5);

    let (db, report) = Engine::open(d.path(), Options::default()).unwrap();
    assert_eq!(report.bytes_truncated, last - 5, "{report:?}");
    // The file stays preallocated while open: its records end at the tear.
    assert_eq!(super::support::data_len(&wal(d.path())), len - last);
    assert_keys_intact(&db, 0..9);
    assert_eq!(db.get(&key(9)).unwrap(), None);
    db.put(b"after", b"the tear").unwrap();
    db.close().unwrap();

    let (db, report) = Engine::open(d.path(), Options::default()).unwrap();
    assert_eq!(report.bytes_truncated, 0, "{report:?}");
    assert_keys_intact(&db, 0..9);
    assert_eq!(db.get(b"after").unwrap().unwrap(), b"the tear");
}

#[test]
fn a_wal_torn_inside_its_header_holds_nothing_and_is_recreated() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(wal(d.path()), &MAGIC[..5]).unwrap();
    let (db, report) = Engine::open(d.path(), Options::default()).unwrap();
    assert_eq!(report.bytes_truncated, 5);
    assert_eq!(report.live_keys, 0);
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let (db, _) = Engine::open(d.path(), Options::default()).unwrap();
    assert_eq!(db.get(b"k").unwrap().unwrap(), b"v");
}

/// A fixture with a flipped byte in the value of one record of the second
/// sealed segment; returns the damaged key's index and the segment.
fn flipped_fixture(dir: &Path) -> (usize, PathBuf) {
    sealed_fixture(dir, 200);
    let seg = sealed_segments(dir)[1].clone();
    let recs = records(&seg);
    let (offset, damaged, len) = recs[recs.len() / 2].clone();
    flip(&seg, offset + len - 1);
    let i = String::from_utf8(damaged[3..].to_vec())
        .unwrap()
        .parse()
        .unwrap();
    (i, seg)
}

#[test]
fn a_flipped_byte_in_a_scanned_sealed_segment_loses_only_that_record() {
    let d = tempfile::tempdir().unwrap();
    let (damaged, seg) = flipped_fixture(d.path());
    std::fs::remove_file(hint_of(&seg)).unwrap();

    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.corrupt_records, 1, "{report:?}");
    assert_eq!(report.hints_used, report.segments - 1, "{report:?}");
    assert_eq!(db.get(&key(damaged)).unwrap(), None);
    assert_keys_intact(&db, (0..200).filter(|&i| i != damaged));
    assert_eq!(db.stats().live_keys, 199);
}

#[test]
fn a_flipped_byte_read_through_a_hint_is_a_corrupt_error_not_wrong_data() {
    let d = tempfile::tempdir().unwrap();
    let (damaged, seg) = flipped_fixture(d.path());

    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments, "{report:?}");
    let err = db.get(&key(damaged)).unwrap_err();
    let Error::Corrupt { segment, .. } = err else {
        panic!("expected Error::Corrupt, got {err:?}");
    };
    assert_eq!(segment, segment_id(&seg));
    assert!(err_text(&db, damaged).contains("corrupt record"));
    assert_keys_intact(&db, (0..200).filter(|&i| i != damaged));
}

#[test]
fn a_damaged_live_record_fails_compaction_which_then_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (damaged, seg) = flipped_fixture(d.path());
    let files_before = data_files(d.path());
    // A dead record beside the damaged one, so compaction must copy it (a
    // segment that is wholly live is left as it is, damaged or not).
    let bytes = std::fs::read(&seg).unwrap();
    let first = record::decode(&bytes[FILE_HEADER_LEN..]).unwrap();
    let dead: usize = String::from_utf8(first.key[3..].to_vec())
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(dead, damaged);
    let intact = move || (0..200).filter(move |&i| i != damaged && i != dead);

    let (db, _) = Engine::open(d.path(), tiny()).unwrap();
    db.delete(&key(dead)).unwrap();
    let err = db.compact().unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    // Dropping the record would turn "corrupt" into "absent" for good; instead
    // every key reads as before and no output is left behind.
    assert!(err_text(&db, damaged).contains("corrupt record"));
    assert_keys_intact(&db, intact());
    db.close().unwrap();
    let after = data_files(d.path());
    for f in files_before.iter().filter(|f| !f.ends_with("wal.log")) {
        assert!(after.contains(f), "{f:?} was removed: {after:?}");
    }
    let names: Vec<_> = after
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".tmp") && !n.ends_with("COMPACTION")),
        "{names:?}"
    );

    let (db, _) = Engine::open(d.path(), tiny()).unwrap();
    assert!(err_text(&db, damaged).contains("corrupt record"));
    assert_keys_intact(&db, intact());
}

/// The id a segment file is named after.
fn segment_id(seg: &Path) -> SegmentId {
    let stem = seg.file_stem().and_then(|s| s.to_str()).unwrap();
    SegmentId(u64::from_str_radix(stem, 16).unwrap())
}

/// Writes keys 250..400 on `db` (holding 0..250), closes, and checks a reopen
/// has all 400.
fn write_on_and_reopen(dir: &Path, db: Engine) {
    for i in 250..400 {
        db.put(&key(i), &value_of(&key(i))).unwrap();
    }
    db.close().unwrap();
    let (db, _) = Engine::open(dir, tiny()).unwrap();
    assert_keys_intact(&db, 0..400);
}

fn err_text(db: &Engine, i: usize) -> String {
    db.get(&key(i)).unwrap_err().to_string()
}

/// `a`, `b`, then one batch of five puts `c0..c4`, all in `wal.log`.
fn batch_fixture(dir: &Path) -> Vec<Vec<u8>> {
    let (db, _) = Engine::open(dir, Options::default()).unwrap();
    db.put(b"a", b"1").unwrap();
    db.put(b"b", b"2").unwrap();
    let keys: Vec<Vec<u8>> = (0..5).map(|i| format!("c{i}").into_bytes()).collect();
    let mut batch = Batch::new();
    for k in &keys {
        batch.put(k, &value_of(k));
    }
    db.apply(batch).unwrap();
    db.close().unwrap();
    keys
}

fn assert_batch_discarded(dir: &Path, keys: &[Vec<u8>], truncated: u64) {
    let (db, report) = Engine::open(dir, Options::default()).unwrap();
    assert_eq!(report.batches_discarded, 1, "{report:?}");
    assert_eq!(report.bytes_truncated, truncated, "{report:?}");
    for k in keys {
        assert_eq!(db.get(k).unwrap(), None, "batch key {k:?}");
    }
    assert_eq!(db.get(b"a").unwrap().unwrap(), b"1");
    assert_eq!(db.get(b"b").unwrap().unwrap(), b"2");
    db.put(b"d", b"4").unwrap();
    db.close().unwrap();
    let (db, report) = Engine::open(dir, Options::default()).unwrap();
    assert_eq!(report.batches_discarded, 0, "{report:?}");
    assert_eq!(db.get(b"d").unwrap().unwrap(), b"4");
    assert_eq!(db.stats().live_keys, 3);
}

fn batch_bytes(keys: &[Vec<u8>]) -> u64 {
    let records: usize = keys
        .iter()
        .map(|k| record::encoded_len(k.len(), value_of(k).len(), 0))
        .sum();
    (record::BATCH_MARKER_LEN + records) as u64
}

#[test]
fn a_batch_missing_its_last_record_is_discarded_whole() {
    let d = tempfile::tempdir().unwrap();
    let keys = batch_fixture(d.path());
    let len = std::fs::metadata(wal(d.path())).unwrap().len();
    let last = record::encoded_len(keys[4].len(), value_of(&keys[4]).len(), 0) as u64;
    // Cut exactly at a record boundary: every remaining record is whole.
    truncate(&wal(d.path()), len - last);
    assert_batch_discarded(d.path(), &keys, batch_bytes(&keys) - last);
}

#[test]
fn a_batch_with_a_damaged_record_at_the_tail_is_discarded_whole() {
    let d = tempfile::tempdir().unwrap();
    let keys = batch_fixture(d.path());
    let bytes = std::fs::read(wal(d.path())).unwrap();
    let at = find(&bytes, &value_of(&keys[2])).unwrap();
    flip(&wal(d.path()), at + 3);
    assert_batch_discarded(d.path(), &keys, batch_bytes(&keys));
}

const NOW: u64 = 1_700_000_100_000;

/// A legacy log as the reference implementations wrote it: sets, deletes, ttls
/// counted from the line's timestamp, in seconds, fractional seconds and ms.
const LEGACY: &str = r#"{"op":"set","key":"plain","value":{"x": [1, 2.50]},"timestamp":1700000000}
{"op":"set","key":"expired","value":"gone","ttl":10,"timestamp":1700000000}
{"op":"set","key":"fraction","value":"soon","ttl":200,"timestamp":1699999999.5}
{"op":"set","key":"millis","value":3,"ttl":50,"timestamp":1700000080000}
{"op":"set","key":"deleted","value":true,"timestamp":1700000001}
{"op":"delete","key":"deleted","timestamp":1700000002}
{"op":"set","key":"reset","value":1,"ttl":5,"timestamp":1700000000}
{"op":"set","key":"reset","value":2,"timestamp":1700000050}
{"op":"set","key":"fracttl","value":"f","ttl":100.25,"timestamp":1700000000}
"#;

fn legacy_options(clock: &ManualClock) -> Options {
    Options::default().with_clock(Arc::new(clock.clone()))
}

fn get_str(db: &Engine, k: &str) -> Option<String> {
    db.get(k.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn assert_legacy_state(db: &Engine) {
    assert_eq!(get_str(db, "plain").as_deref(), Some(r#"{"x":[1,2.50]}"#));
    assert_eq!(get_str(db, "expired"), None, "ttl ran out before now");
    // 1699999999.5 s + 200 s = 1700000199500 ms, after NOW.
    assert_eq!(get_str(db, "fraction").as_deref(), Some(r#""soon""#));
    // 1700000080000 ms + 50 s = 1700000130000 ms, after NOW.
    assert_eq!(get_str(db, "millis").as_deref(), Some("3"));
    assert_eq!(get_str(db, "deleted"), None);
    assert_eq!(
        get_str(db, "reset").as_deref(),
        Some("2"),
        "a set without ttl"
    );
    // 1700000000 s + 100.25 s = 1700000100250 ms, 250 ms after NOW.
    assert_eq!(get_str(db, "fracttl").as_deref(), Some(r#""f""#));
}

#[test]
#[cfg_attr(not(feature = "json-lines"), ignore = "needs the json-lines decoder")]
fn a_legacy_json_lines_wal_is_migrated_once_and_kept_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(wal(d.path()), LEGACY).unwrap();
    let clock = ManualClock::new(NOW);

    let (db, report) = Engine::open(d.path(), legacy_options(&clock)).unwrap();
    let backup = d.path().join("wal.log.legacy.bak");
    assert_eq!(
        report.migrated_legacy_backup.as_deref(),
        Some(backup.as_path())
    );
    assert_eq!(report.legacy_operations, 9);
    assert_eq!(std::fs::read(&backup).unwrap(), LEGACY.as_bytes());
    assert!(std::fs::read(wal(d.path())).unwrap().starts_with(&MAGIC));
    assert_legacy_state(&db);
    assert_eq!(db.stats().live_keys, 5);
    clock.advance(250);
    assert_eq!(get_str(&db, "fracttl"), None, "expired at its own ttl");
    clock.advance(30_000);
    assert_eq!(get_str(&db, "millis"), None);
    assert_eq!(get_str(&db, "fraction").as_deref(), Some(r#""soon""#));
    db.close().unwrap();

    let (db, report) = Engine::open(d.path(), legacy_options(&clock)).unwrap();
    assert_eq!(report.migrated_legacy_backup, None, "migrated twice");
    assert_eq!(report.legacy_operations, 0);
    assert_eq!(std::fs::read(&backup).unwrap(), LEGACY.as_bytes());
    assert!(!d.path().join("wal.log.legacy.1.bak").exists());
    assert_eq!(get_str(&db, "plain").as_deref(), Some(r#"{"x":[1,2.50]}"#));
    assert_eq!(get_str(&db, "reset").as_deref(), Some("2"));
    assert_eq!(db.stats().live_keys, 3);
}

#[test]
#[cfg_attr(not(feature = "json-lines"), ignore = "needs the json-lines decoder")]
fn a_migration_interrupted_before_the_backup_starts_over() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(wal(d.path()), LEGACY).unwrap();
    std::fs::write(d.path().join("wal.log.migrating"), b"KVSTORE\0half a segm").unwrap();
    let clock = ManualClock::new(NOW);
    let (db, report) = Engine::open(d.path(), legacy_options(&clock)).unwrap();
    assert!(report.migrated_legacy_backup.is_some(), "{report:?}");
    assert!(!d.path().join("wal.log.migrating").exists());
    assert_eq!(
        std::fs::read(d.path().join("wal.log.legacy.bak")).unwrap(),
        LEGACY.as_bytes()
    );
    assert_legacy_state(&db);
}

#[test]
#[cfg_attr(not(feature = "json-lines"), ignore = "needs the json-lines decoder")]
fn a_migration_interrupted_after_the_backup_is_finished() {
    // A finished migration elsewhere gives the converted file.
    let done = tempfile::tempdir().unwrap();
    std::fs::write(wal(done.path()), LEGACY).unwrap();
    let clock = ManualClock::new(NOW);
    drop(Engine::open(done.path(), legacy_options(&clock)).unwrap());

    let d = tempfile::tempdir().unwrap();
    std::fs::copy(wal(done.path()), d.path().join("wal.log.migrating")).unwrap();
    std::fs::write(d.path().join("wal.log.legacy.bak"), LEGACY).unwrap();
    let (db, _) = Engine::open(d.path(), legacy_options(&clock)).unwrap();
    assert!(!d.path().join("wal.log.migrating").exists());
    assert!(std::fs::read(wal(d.path())).unwrap().starts_with(&MAGIC));
    assert_eq!(
        std::fs::read(d.path().join("wal.log.legacy.bak")).unwrap(),
        LEGACY.as_bytes()
    );
    assert_legacy_state(&db);
}

#[test]
#[cfg_attr(not(feature = "json-lines"), ignore = "needs the json-lines decoder")]
fn a_legacy_wal_whose_last_line_is_torn_migrates_the_lines_before_it() {
    let d = tempfile::tempdir().unwrap();
    let text = concat!(
        "{\"op\":\"set\",\"key\":\"kept\",\"value\":[1],\"timestamp\":1700000000}\n",
        "{\"op\":\"set\",\"key\":\"zero ttl\",\"value\":1,\"ttl\":0,\"timestamp\":1700000099}\n",
        "{\"op\":\"set\",\"key\":\"torn\",\"val"
    );
    std::fs::write(wal(d.path()), text).unwrap();
    let clock = ManualClock::new(NOW);
    let (db, report) = Engine::open(d.path(), legacy_options(&clock)).unwrap();
    assert_eq!(report.legacy_operations, 2, "{report:?}");
    assert_eq!(get_str(&db, "kept").as_deref(), Some("[1]"));
    assert_eq!(get_str(&db, "zero ttl"), None, "a ttl of 0 has expired");
    assert_eq!(get_str(&db, "torn"), None);
    assert_eq!(
        std::fs::read(d.path().join("wal.log.legacy.bak")).unwrap(),
        text.as_bytes(),
        "the torn line is kept in the backup"
    );
}

#[test]
#[cfg_attr(not(feature = "json-lines"), ignore = "needs the json-lines decoder")]
fn a_legacy_wal_with_a_bad_middle_line_is_refused_and_left_untouched() {
    let d = tempfile::tempdir().unwrap();
    let text =
        "{\"op\":\"set\",\"key\":\"a\",\"value\":1}\nnot json\n{\"op\":\"delete\",\"key\":\"a\"}\n";
    std::fs::write(wal(d.path()), text).unwrap();
    let err = Engine::open(d.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Legacy { line: 2, .. }), "{err:?}");
    assert_eq!(std::fs::read(wal(d.path())).unwrap(), text.as_bytes());
    assert!(!d.path().join("wal.log.legacy.bak").exists());
}

#[test]
fn a_legacy_wal_without_a_decoder_is_refused_and_left_untouched() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(wal(d.path()), LEGACY).unwrap();
    let opts = Options::default().with_legacy_decoder(None);
    let err = Engine::open(d.path(), opts).unwrap_err();
    assert!(matches!(err, Error::LegacyWithoutDecoder { .. }), "{err:?}");
    assert_eq!(std::fs::read(wal(d.path())).unwrap(), LEGACY.as_bytes());
}

fn assert_unsupported_version(dir: &Path, file: &Path) {
    let before = std::fs::read(file).unwrap();
    let err = Engine::open(dir, tiny()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, Error::Format { path, reason: DecodeError::UnsupportedVersion { found: 9 } } if path == file),
        "{err:?}"
    );
    assert!(
        message.contains("format version 9 is not supported")
            && message.contains(file.file_name().unwrap().to_str().unwrap()),
        "{message}"
    );
    assert_eq!(
        std::fs::read(file).unwrap(),
        before,
        "refusal changed the file"
    );
}

#[test]
fn a_sealed_segment_of_an_unsupported_format_version_is_refused_clearly() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 250);
    let seg = sealed_segments(d.path())[0].clone();
    overwrite(&seg, 8, &9u16.to_le_bytes());
    assert_unsupported_version(d.path(), &seg);
}

#[test]
fn a_wal_of_an_unsupported_format_version_is_refused_clearly() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 250);
    overwrite(&wal(d.path()), 8, &9u16.to_le_bytes());
    assert_unsupported_version(d.path(), &wal(d.path()));
}

#[test]
fn leftover_tmp_files_are_removed_at_open() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 250);
    let seg = sealed_segments(d.path())[0].clone();
    let hint_tmp = PathBuf::from(format!("{}.tmp", hint_of(&seg).display()));
    let other_tmp = d.path().join("00000000000f0000.seg.tmp");
    std::fs::write(&hint_tmp, b"half a hint").unwrap();
    std::fs::write(&other_tmp, b"half a segment").unwrap();
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.leftovers_removed, 2, "{report:?}");
    assert!(!hint_tmp.exists() && !other_tmp.exists());
    assert_eq!(report.hints_used, report.segments, "real hints still used");
    assert_keys_intact(&db, 0..250);
}

#[test]
fn a_hint_naming_another_segment_is_ignored_and_the_segment_scanned() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 200);
    let segs = sealed_segments(d.path());
    std::fs::copy(hint_of(&segs[1]), hint_of(&segs[0])).unwrap();
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments - 1, "{report:?}");
    assert_eq!(report.corrupt_records, 0, "{report:?}");
    assert_keys_intact(&db, 0..200);
    assert_eq!(db.stats().live_keys, 200);
}

#[test]
fn a_hint_of_an_unsupported_format_version_is_ignored_and_the_segment_scanned() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 200);
    let segs = sealed_segments(d.path());
    overwrite(&hint_of(&segs[1]), 8, &9u16.to_le_bytes());
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments - 1, "{report:?}");
    assert_keys_intact(&db, 0..200);
}

#[test]
fn a_hint_of_a_segment_that_grew_is_ignored_and_the_segment_scanned() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 200);
    let segs = sealed_segments(d.path());
    append(&segs[1], &[0xa5; 37]);
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments - 1, "{report:?}");
    assert_keys_intact(&db, 0..200);
    assert_eq!(db.stats().live_keys, 200);
}

#[test]
fn a_wal_whose_header_names_a_sealed_segment_does_not_shadow_it() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 250);
    let first = sealed_segments(d.path())[0].clone();
    let in_first: Vec<usize> = records(&first)
        .iter()
        .map(|(_, k, _)| String::from_utf8(k[3..].to_vec()).unwrap().parse().unwrap())
        .collect();
    // The segment id field of wal.log's header (bytes 12..20) now names the
    // oldest sealed segment, as a damaged header might.
    overwrite(&wal(d.path()), 12, &segment_id(&first).0.to_le_bytes());

    let (db, _) = Engine::open(d.path(), tiny()).unwrap();
    assert_keys_intact(&db, in_first.iter().copied());
    // Rotating that wal.log must not replace the sealed segment it named.
    write_on_and_reopen(d.path(), db);
}

#[test]
fn a_crash_between_sealing_and_the_next_wal_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    sealed_fixture(d.path(), 250);
    // As if killed right after renaming wal.log to its segment name: no hint,
    // no wal.log.
    let last = sealed_segments(d.path()).last().unwrap().clone();
    let next = segment_id(&last).next_generation();
    let sealed = d.path().join(format!("{:016x}.seg", next.0));
    std::fs::rename(wal(d.path()), &sealed).unwrap();

    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments - 1, "{report:?}");
    assert!(wal(d.path()).exists());
    assert_keys_intact(&db, 0..250);
    write_on_and_reopen(d.path(), db);
}

#[test]
fn a_value_larger_than_a_segment_is_written_whole_and_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| i.to_le_bytes()[0]).collect();
    let (db, _) = Engine::open(d.path(), tiny()).unwrap();
    db.put(b"before", b"1").unwrap();
    db.put(b"big", &big).unwrap();
    let mut b = Batch::new();
    b.put(b"big 2", &big).put(b"after", b"2");
    db.apply(b).unwrap();
    assert_eq!(db.get(b"big").unwrap().unwrap(), big);
    db.close().unwrap();
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.live_keys, 4, "{report:?}");
    assert_eq!(db.get(b"big").unwrap().unwrap(), big);
    assert_eq!(db.get(b"big 2").unwrap().unwrap(), big);
    assert_eq!(db.get(b"before").unwrap().unwrap(), b"1");
    assert_eq!(db.get(b"after").unwrap().unwrap(), b"2");
}

/// One change to one file of a closed directory.
#[derive(Debug, Clone)]
enum Damage {
    Overwrite { at: u64, bytes: Vec<u8> },
    Append { bytes: Vec<u8> },
    Truncate { at: u64 },
}

fn damage() -> impl Strategy<Value = (usize, Damage)> {
    let what = prop_oneof![
        3 => (prop_oneof![0u64..64, any::<u64>()], prop::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        1 => prop::collection::vec(any::<u8>(), 1..200).prop_map(|bytes| Damage::Append { bytes }),
        1 => any::<u64>().prop_map(|at| Damage::Truncate { at }),
    ];
    (any::<usize>(), what)
}

fn apply_damage(path: &Path, d: &Damage) {
    let len = std::fs::metadata(path).unwrap().len();
    // Positions are taken modulo the length: anywhere in the file.
    let at = |n: u64| n % len.max(1);
    match d {
        Damage::Overwrite { at: f, bytes } => overwrite(path, at(*f), bytes),
        Damage::Append { bytes } => append(path, bytes),
        Damage::Truncate { at: f } => truncate(path, at(*f)),
    }
}

#[test]
fn random_damage_to_any_file_never_panics_or_returns_wrong_data() {
    let pristine = tempfile::tempdir().unwrap();
    let opts = || tiny().with_sync(SyncMode::Never);
    {
        let (db, _) = Engine::open(pristine.path(), opts()).unwrap();
        for i in 0..150 {
            db.put(&key(i), &value_of(&key(i))).unwrap();
        }
        for i in (0..150).step_by(7) {
            db.delete(&key(i)).unwrap();
        }
        for n in 150..180 {
            let mut b = Batch::new();
            b.put(&key(n), &value_of(&key(n))).delete(&key(n - 100));
            db.apply(b).unwrap();
        }
        db.close().unwrap();
    }
    let files: Vec<String> = data_files(pristine.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let config = Config {
        cases: super::support::cases(96),
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
        .run(&damage(), |(which, d)| {
            let dir = super::support::mem_tempdir();
            copy_dir(pristine.path(), dir.path());
            let file = dir.path().join(&files[which % files.len()]);
            apply_damage(&file, &d);
            // Refusing to open (e.g. a damaged version field) is allowed; a
            // panic or a value that was never written is not.
            let Ok((db, _)) = Engine::open(dir.path(), opts()) else {
                return Ok(());
            };
            for i in 0..180 {
                match db.get(&key(i)) {
                    Ok(Some(v)) => prop_assert_eq!(v, value_of(&key(i)), "key {}", i),
                    Ok(None) | Err(Error::Corrupt { .. }) => {}
                    Err(e) => prop_assert!(false, "get of key {} failed with {:?}", i, e),
                }
            }
            let _ = db.scan_prefix(b"key", None, usize::MAX);
            let _ = db.stats();
            let _ = db.put(b"after damage", b"x");
            let _ = db.close();
            Ok(())
        })
        .unwrap();
}

/// Sealed segments whose keys are overwritten, deleted and written again
/// across and within segments, in an order unlike key order; returns what
/// every live key must read.
fn history_fixture(dir: &Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let (db, _) = Engine::open(dir, tiny()).unwrap();
    let mut model = std::collections::BTreeMap::new();
    for round in 0..4u8 {
        for i in (0..150).rev() {
            let k = key(i);
            if (i + usize::from(round)) % 5 == 0 {
                db.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let mut v = value_of(&k);
                v.push(b'0' + round);
                db.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            if i % 10 == 0 {
                // The same key twice in a row: both records in one segment.
                let hot = key(1000 + i / 10);
                for n in 0..2u8 {
                    let mut v = value_of(&hot);
                    v.extend_from_slice(&[round, n]);
                    db.put(&hot, &v).unwrap();
                    model.insert(hot.clone(), v);
                }
            }
        }
    }
    db.close().unwrap();
    assert!(sealed_segments(dir).len() >= 6, "fixture should rotate");
    model
}

fn assert_reads(db: &Engine, model: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
    for i in (0..150).chain(1000..1015) {
        assert_eq!(
            db.get(&key(i)).unwrap().as_ref(),
            model.get(&key(i)),
            "key {i}"
        );
    }
    let listed = db.scan_prefix(b"", None, usize::MAX);
    assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
    assert_eq!(db.stats().live_keys, model.len() as u64);
}

/// Rewrites `hint` as a build without SORTED would have: entries unflagged,
/// in reverse order; `flag` then sets the flags byte anyway (a lie).
fn rewrite_hint_unsorted(hint: &Path, flag: u8) {
    use kvstore::engine::__test_support::hint::{Hint, HintWriter};
    let bytes = std::fs::read(hint).unwrap();
    let parsed = Hint::parse(&bytes).unwrap();
    let mut entries = Vec::new();
    parsed.for_each(|e| entries.push(e)).unwrap();
    let mut w = HintWriter::new(parsed.segment, parsed.segment_len);
    for e in entries.iter().rev() {
        w.push(e);
    }
    let mut out = w.finish();
    out[11] = flag;
    let end = out.len() - 4;
    let crc = crc32fast::hash(&out[..end]);
    out[end..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(hint, out).unwrap();
}

#[test]
fn sealed_hints_are_key_sorted_and_open_merges_them_newest_first() {
    use kvstore::engine::__test_support::hint::Hint;
    let d = tempfile::tempdir().unwrap();
    let model = history_fixture(d.path());
    for seg in sealed_segments(d.path()) {
        let bytes = std::fs::read(hint_of(&seg)).unwrap();
        assert!(
            Hint::parse(&bytes).unwrap().is_sorted(),
            "{}",
            seg.display()
        );
    }
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments, "{report:?}");
    assert_reads(&db, &model);
    db.close().unwrap();
    // The same state when every segment is scanned instead.
    let scanned = tempfile::tempdir().unwrap();
    copy_dir(d.path(), scanned.path());
    for seg in sealed_segments(scanned.path()) {
        std::fs::remove_file(hint_of(&seg)).unwrap();
    }
    let (db, report) = Engine::open(scanned.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, 0, "{report:?}");
    assert_reads(&db, &model);
}

#[test]
fn compaction_outputs_hold_records_in_key_order_with_sorted_hints_that_open_uses() {
    use kvstore::engine::__test_support::hint::Hint;
    let d = tempfile::tempdir().unwrap();
    let model = history_fixture(d.path());
    let (db, _) = Engine::open(d.path(), tiny()).unwrap();
    let before = sealed_segments(d.path());
    let compacted = db.compact().unwrap();
    assert!(compacted.segments_after > 0, "{compacted:?}");
    db.close().unwrap();
    let after = sealed_segments(d.path());
    let outputs: Vec<_> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(!outputs.is_empty(), "compaction should write outputs");
    for seg in &outputs {
        let bytes = std::fs::read(hint_of(seg)).unwrap();
        let hint = Hint::parse(&bytes).unwrap();
        assert!(hint.is_sorted(), "{}", seg.display());
        let mut keys = Vec::new();
        hint.for_each(|e| keys.push((e.key.to_vec(), e.offset)))
            .unwrap();
        assert!(
            keys.windows(2).all(|w| w[0].0 < w[1].0),
            "{}",
            seg.display()
        );
        // The records themselves are in key order: a scan reads them in turn.
        assert!(
            keys.windows(2).all(|w| w[0].1 < w[1].1),
            "{}",
            seg.display()
        );
    }
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments, "{report:?}");
    assert_reads(&db, &model);
}

#[test]
fn a_close_seals_a_large_wal_so_the_next_open_reads_only_hints() {
    use kvstore::engine::__test_support::hint::Hint;
    let d = tempfile::tempdir().unwrap();
    // 8 MiB segments: a close seals a wal.log of 4 MiB or more (the floor
    // above an eighth of a segment), and leaves a smaller one as it is.
    let opts = || Options::default().with_segment_bytes(8 << 20);
    let value = vec![b'v'; 1000];
    let (db, _) = Engine::open(d.path(), opts()).unwrap();
    for i in 0..1000u32 {
        db.put(format!("small{i:05}").as_bytes(), &value).unwrap();
    }
    db.close().unwrap();
    assert!(
        sealed_segments(d.path()).is_empty(),
        "1 MB of wal.log stays"
    );
    let (db, report) = Engine::open(d.path(), opts()).unwrap();
    assert_eq!(report.records, 1000, "{report:?}");
    for i in 0..5000u32 {
        db.put(format!("large{i:05}").as_bytes(), &value).unwrap();
    }
    db.close().unwrap();
    let sealed = sealed_segments(d.path());
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let hint = std::fs::read(hint_of(&sealed[0])).unwrap();
    assert!(Hint::parse(&hint).unwrap().is_sorted());
    let wal = std::fs::read(d.path().join("wal.log")).unwrap();
    assert_eq!(wal.len(), FILE_HEADER_LEN, "wal.log holds only its header");
    let (db, report) = Engine::open(d.path(), opts()).unwrap();
    assert_eq!((report.segments, report.hints_used), (1, 1), "{report:?}");
    assert_eq!(report.live_keys, 6000, "{report:?}");
    for key in ["small00000", "small00999", "large00000", "large04999"] {
        assert_eq!(
            db.get(key.as_bytes()).unwrap().as_deref(),
            Some(&value[..]),
            "{key}"
        );
    }
}

#[test]
fn hints_of_an_older_build_in_segment_order_are_still_used() {
    let d = tempfile::tempdir().unwrap();
    let model = history_fixture(d.path());
    for seg in sealed_segments(d.path()) {
        rewrite_hint_unsorted(&hint_of(&seg), 0);
    }
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments, "{report:?}");
    assert_reads(&db, &model);
}

#[test]
fn a_hint_flagged_sorted_whose_keys_are_not_is_ignored_and_the_segment_scanned() {
    let d = tempfile::tempdir().unwrap();
    let model = history_fixture(d.path());
    let segs = sealed_segments(d.path());
    rewrite_hint_unsorted(&hint_of(&segs[2]), 1);
    let (db, report) = Engine::open(d.path(), tiny()).unwrap();
    assert_eq!(report.hints_used, report.segments - 1, "{report:?}");
    assert_reads(&db, &model);
}
