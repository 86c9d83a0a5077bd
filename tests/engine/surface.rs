//! The engine as a library: the builder and the `with_*` setters open what
//! they say, and the errors of rare failures name what happened.

use std::sync::Arc;

use super::support::{open, tiny};
use kvstore::engine::clock::ManualClock;
use kvstore::engine::{Engine, Error, Expiry, Options, SyncMode};

#[test]
fn the_builder_opens_with_the_settings_and_seams_it_was_given() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let (db, report) = Engine::builder(d.path())
        .sync(SyncMode::Never)
        .segment_bytes(8192)
        .max_key_bytes(8)
        .background_compaction(false)
        .clock(Arc::new(clock.clone()))
        .open()
        .unwrap();
    assert_eq!(report.records, 0);
    let opts = db.options();
    assert_eq!(opts.sync, SyncMode::Never);
    assert_eq!(opts.segment_bytes, 8192);
    assert!(!opts.background_compaction);
    assert_eq!(db.now_ms(), 1_000_000, "the clock seam is the one given");
    assert!(matches!(
        db.put(b"123456789", b"v"),
        Err(Error::KeyTooLarge { len: 9, max: 8 })
    ));
    db.put_with_expiry(b"k", b"v", Expiry::At(1_000_500))
        .unwrap();
    clock.advance(1000);
    assert_eq!(db.get(b"k").unwrap(), None);
    db.close().unwrap();

    let (db, _) = Engine::builder(d.path())
        .options(tiny())
        .open_read_only()
        .unwrap();
    assert!(db.is_read_only_open());
    assert_eq!(db.options().segment_bytes, 4096);
}

#[test]
fn the_builder_refuses_an_out_of_range_setting_by_name() {
    let d = tempfile::tempdir().unwrap();
    let err = Engine::builder(d.path())
        .compaction_threads(0)
        .open()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                name: "compaction_threads",
                ..
            }
        ),
        "{err:?}"
    );
    let err = Engine::open(d.path(), Options::default().with_segment_bytes(1)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                name: "segment_bytes",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_damaged_compaction_manifest_fails_the_open_as_a_manifest_error() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let manifest = d.path().join("COMPACTION");
    std::fs::write(&manifest, "kvstore compaction manifest v1\ninput zz\nend\n").unwrap();
    let err = Engine::open(d.path(), tiny()).unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
    assert!(err.to_string().contains("COMPACTION"), "{err}");
    assert!(
        manifest.exists(),
        "a manifest that cannot be read is left for a person"
    );
}

#[test]
fn a_wal_log_that_is_no_segment_is_refused_without_a_decoder_and_left_untouched() {
    let d = tempfile::tempdir().unwrap();
    let wal = d.path().join("wal.log");
    let text = b"set a 1\nset b 2\n";
    std::fs::write(&wal, text).unwrap();
    let err = Engine::open(d.path(), tiny().with_legacy_decoder(None)).unwrap_err();
    assert!(matches!(err, Error::LegacyWithoutDecoder { .. }), "{err:?}");
    assert_eq!(std::fs::read(&wal).unwrap(), text);
}

#[test]
fn a_torn_segment_header_is_treated_alike_with_or_without_a_decoder() {
    let with = tempfile::tempdir().unwrap();
    let (db, _) = open(with.path(), tiny());
    db.close().unwrap();
    // A crash while `wal.log` was created: its header is a prefix of the magic.
    std::fs::write(with.path().join("wal.log"), b"KVST").unwrap();
    let without = tempfile::tempdir().unwrap();
    super::support::copy_dir(with.path(), without.path());
    let outcome = |r: Result<(Engine, _), Error>| r.map(|_| ()).map_err(|e| e.to_string());
    let by_default = outcome(Engine::open(with.path(), tiny()));
    let no_decoder = outcome(Engine::open(
        without.path(),
        tiny().with_legacy_decoder(None),
    ));
    assert_eq!(no_decoder, by_default, "a torn segment is no legacy log");
}
