//! I/O failures through `FaultyFs`: a failed write, fsync, rename or directory
//! fsync fails the write that met it, latches the engine read-only (later
//! writes fail with `Error::ReadOnly`, reads go on, `stats().read_only`), and
//! everything acknowledged before is there after a reopen on a healthy disk.
//! Concurrent writers caught by a fault all get an error; none hangs. A failed
//! hint write costs only a scan; a failed truncation at open fails the open.

use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use kvstore::engine::fs::{AppendFile, FaultyFs, Fs, FsOp, MmapRaw, StdFs};
use kvstore::engine::{Batch, Engine, Error, Options, SyncMode};

fn key(i: usize) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value_of(i: usize) -> Vec<u8> {
    format!("value {i:05} {}", "x".repeat(80)).into_bytes()
}

fn faulty(dir: &Path, sync: SyncMode, segment_bytes: u64) -> (Engine, FaultyFs) {
    let opts = Options::default()
        .with_sync(sync)
        .with_segment_bytes(segment_bytes)
        .with_background_compaction(false);
    super::support::open_faulty(dir, opts)
}

/// Reopens on the real file system and checks every acknowledged key.
fn assert_acked_survive(dir: &Path, acked: &[usize]) -> Engine {
    let opts = Options::default()
        .with_segment_bytes(4096)
        .with_sync(SyncMode::Never)
        .with_background_compaction(false);
    let (db, _) = Engine::open(dir, opts).unwrap();
    for &i in acked {
        assert_eq!(
            db.get(&key(i)).unwrap(),
            Some(value_of(i)),
            "acknowledged key {i} after reopen"
        );
    }
    assert!(!db.stats().read_only);
    db.put(b"healthy again", b"yes").unwrap();
    db
}

/// Every kind of write is refused with `ReadOnly` and reads still work.
fn assert_read_only(db: &Engine, acked: &[usize]) {
    assert!(db.stats().read_only);
    let refused = [
        db.put(b"later", b"x"),
        db.delete(&key(acked[0])),
        db.put_with_ttl(b"later", b"x", Duration::from_secs(5)),
    ];
    for r in refused {
        assert!(matches!(r, Err(Error::ReadOnly { .. })), "{r:?}");
    }
    let mut b = Batch::new();
    b.put(b"later", b"x").put(b"later 2", b"y");
    assert!(matches!(db.apply(b.clone()), Err(Error::ReadOnly { .. })));
    assert!(matches!(db.submit(b).wait(), Err(Error::ReadOnly { .. })));
    for &i in acked {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value_of(i)), "read of {i}");
    }
    assert_eq!(db.get(b"later").unwrap(), None);
    assert_eq!(
        db.scan_prefix(b"key", None, usize::MAX).len(),
        acked.len(),
        "scan while read-only"
    );
}

/// Issue 9.5: a full disk used to latch the engine for good. wal.log is written
/// through a preallocated mapping, so the disk can only be full when a segment
/// is allocated: nothing is half-written, so only the writes that needed the
/// segment fail, and writing resumes once there is space, without a restart.
#[test]
fn a_full_disk_fails_only_the_writes_that_need_a_segment_and_writing_resumes_with_space() {
    let d = tempfile::tempdir().unwrap();
    let (db, fs) = faulty(d.path(), SyncMode::Always, 4096);
    let mut acked: Vec<usize> = (0..10).collect();
    for &i in &acked {
        db.put(&key(i), &value_of(i)).unwrap();
    }
    fs.fill_disk_from(FsOp::Allocate, 1);
    let (more, err) = put_until_refused_from(&db, acked.len());
    acked.extend(more);
    assert!(err.is_disk_full(), "{err:?}");
    assert!(err.to_string().contains("No space left"), "{err}");
    // Refused, not latched: reads go on and the next try meets the same disk.
    assert!(!db.stats().read_only);
    let refused = acked.len();
    assert!(
        db.put(&key(refused), &value_of(refused))
            .unwrap_err()
            .is_disk_full()
    );
    fs.heal(FsOp::Allocate);
    for i in refused..refused + 200 {
        db.put(&key(i), &value_of(i)).unwrap();
        acked.push(i);
    }
    assert!(!db.stats().read_only);
    drop(db);
    assert_acked_survive(d.path(), &acked);
}

#[test]
fn a_failed_fsync_fails_that_put_and_latches_the_engine_read_only() {
    let d = tempfile::tempdir().unwrap();
    let (db, fs) = faulty(d.path(), SyncMode::Always, 64 << 20);
    let acked: Vec<usize> = (0..10).collect();
    for &i in &acked {
        db.put(&key(i), &value_of(i)).unwrap();
    }
    fs.fail_from(FsOp::Sync, 1);
    let err = db.put(b"unsynced", b"x").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    // Written but not durable: never acknowledged, so never readable.
    assert_eq!(db.get(b"unsynced").unwrap(), None);
    assert_read_only(&db, &acked);
    drop(db);
    assert_acked_survive(d.path(), &acked);
}

#[test]
fn a_failed_periodic_fsync_latches_the_engine_read_only() {
    let d = tempfile::tempdir().unwrap();
    let (db, fs) = faulty(
        d.path(),
        SyncMode::Periodic(Duration::from_millis(20)),
        64 << 20,
    );
    db.put(&key(0), &value_of(0)).unwrap();
    let mut acked = vec![0];
    fs.fail_from(FsOp::Sync, 1);
    // The background thread (or the next write after the interval) syncs, fails
    // and latches; keep writing until a write is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        let i = acked.len();
        match db.put(&key(i), &value_of(i)) {
            Ok(_) => acked.push(i),
            Err(e) => break e,
        }
        assert!(Instant::now() < deadline, "the failed fsync never latched");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        matches!(err, Error::ReadOnly { .. } | Error::Io { .. }),
        "{err:?}"
    );
    assert_read_only(&db, &acked);
    drop(db);
    assert_acked_survive(d.path(), &acked);
}

/// Puts with 4 KiB segments until one fails; returns the acknowledged keys.
fn put_until_refused(db: &Engine) -> (Vec<usize>, Error) {
    put_until_refused_from(db, 0)
}

/// [`put_until_refused`] from key `first` on.
fn put_until_refused_from(db: &Engine, first: usize) -> (Vec<usize>, Error) {
    let mut acked = Vec::new();
    for i in first..first + 10_000 {
        match db.put(&key(i), &value_of(i)) {
            Ok(_) => acked.push(i),
            Err(e) => return (acked, e),
        }
    }
    panic!("10000 puts never met the fault");
}

#[test]
fn a_failed_rename_while_sealing_latches_read_only_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (db, fs) = faulty(d.path(), SyncMode::Never, 4096);
    fs.fail_from(FsOp::Rename, 1);
    let (acked, err) = put_until_refused(&db);
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(acked.len() > 10, "rotation came after {} puts", acked.len());
    assert!(
        err.to_string().contains("sealing"),
        "the cause should name the step: {err}"
    );
    assert_read_only(&db, &acked);
    assert!(super::support::sealed_segments(d.path()).is_empty());
    drop(db);
    let db = assert_acked_survive(d.path(), &acked);
    // Rotation works again on a healthy disk.
    for i in acked.len()..acked.len() + 200 {
        db.put(&key(i), &value_of(i)).unwrap();
    }
    assert!(!super::support::sealed_segments(d.path()).is_empty());
}

#[test]
fn a_failed_directory_fsync_at_any_step_of_rotation_latches_read_only_and_loses_nothing() {
    // Rotation syncs the directory after sealing (1), after the hint (2) and
    // after creating the next wal.log (3); a hint failure alone is tolerated,
    // but `fail_from` keeps failing, so every step ends in the latch.
    for nth in 1..=3 {
        let d = tempfile::tempdir().unwrap();
        let (db, fs) = faulty(d.path(), SyncMode::Always, 4096);
        fs.fail_from(FsOp::SyncDir, nth);
        let (acked, err) = put_until_refused(&db);
        // The write whose own sync met the failure gets the I/O error; one
        // after a failure on the sealer thread finds the latch.
        assert!(
            matches!(err, Error::ReadOnly { .. } | Error::Io { .. }),
            "step {nth}: {err:?}"
        );
        assert_read_only(&db, &acked);
        drop(db);
        assert_acked_survive(d.path(), &acked);
    }
}

#[test]
fn concurrent_writers_caught_by_a_fault_all_get_an_error_and_none_hangs() {
    // Appends are copies into a mapping: the only call a write can meet is its fsync.
    for op in [FsOp::Sync] {
        let d = tempfile::tempdir().unwrap();
        let (db, fs) = faulty(d.path(), SyncMode::Always, 64 << 20);
        fs.fail_from(op, 40);
        let threads = 8;
        let (tx, rx) = mpsc::channel();
        for t in 0..threads {
            let db = db.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let err = loop {
                    let i = t * 100_000 + acked.len();
                    // Half the threads go through submit, as async callers do.
                    let r = if t % 2 == 0 {
                        db.put(&key(i), &value_of(i)).map(|_| ())
                    } else {
                        let mut b = Batch::new();
                        b.put(&key(i), &value_of(i));
                        db.submit(b).wait().map(|_| ())
                    };
                    match r {
                        Ok(()) => acked.push(i),
                        Err(e) => break e,
                    }
                };
                // The directory unlocks when the last clone goes: before reporting.
                drop(db);
                tx.send((acked, err)).unwrap();
            });
        }
        drop(tx);
        let mut acked = Vec::new();
        for _ in 0..threads {
            let (a, err) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a writer hung after the fault");
            assert!(
                matches!(err, Error::Io { .. } | Error::ReadOnly { .. }),
                "{op:?}: {err:?}"
            );
            acked.extend(a);
        }
        assert!(db.stats().read_only);
        drop(db);
        assert_acked_survive(d.path(), &acked);
    }
}

/// A file system whose next fsync can be held until released, and whose
/// fsyncs can be made to fail from some point on.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    hold_next_sync: bool,
    holding: bool,
    /// Every sync after the held one fails.
    fail_after_held: bool,
    held_done: bool,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap()
    }

    /// Waits until a sync is being held.
    fn wait_holding(&self) {
        let mut s = self.lock();
        while !s.holding {
            s = self.cv.wait(s).unwrap();
        }
    }

    fn release(&self) {
        self.lock().holding = false;
        self.cv.notify_all();
    }
}

#[derive(Debug)]
struct GateFs(Arc<Gate>);

#[derive(Debug)]
struct GateFile(Box<dyn AppendFile>, Arc<Gate>);

impl AppendFile for GateFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.1.lock();
        if s.held_done && s.fail_after_held {
            return Err(io::Error::other(
                "injected failure of a sync after the held one",
            ));
        }
        if s.hold_next_sync {
            s.hold_next_sync = false;
            s.holding = true;
            self.1.cv.notify_all();
            while s.holding {
                s = self.1.cv.wait(s).unwrap();
            }
            s.held_done = true;
            drop(s);
            return self.0.sync();
        }
        drop(s);
        self.0.sync()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.0.allocate(len)
    }
    fn map(&mut self, len: usize) -> io::Result<MmapRaw> {
        self.0.map(len)
    }
    fn link_count(&mut self) -> io::Result<u64> {
        self.0.link_count()
    }
}

impl Fs for GateFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(GateFile(
            StdFs.open_append(path)?,
            Arc::clone(&self.0),
        )))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

/// Pipelined group commit: groups append while an earlier group's fsync runs,
/// but none is acknowledged before an fsync that covers it — and when that
/// fsync fails, every one of them fails and none is ever readable.
#[test]
fn groups_appended_during_an_fsync_wait_for_their_own_and_fail_with_it() {
    let d = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let opts = Options::default()
        .with_fs(Arc::new(GateFs(Arc::clone(&gate))))
        .with_sync(SyncMode::Always)
        .with_background_compaction(false);
    let (db, _) = Engine::open(d.path(), opts).unwrap();
    db.put(&key(0), &value_of(0)).unwrap();
    {
        let mut s = gate.lock();
        s.hold_next_sync = true;
        s.fail_after_held = true;
    }
    let first = {
        let db = db.clone();
        std::thread::spawn(move || db.put(&key(1), &value_of(1)).map(|_| ()))
    };
    gate.wait_holding();
    let before = db.stats().disk_bytes;
    let mut queued: Vec<_> = (2..120)
        .map(|i| {
            let mut b = Batch::new();
            b.put(&key(i), &value_of(i));
            (i, db.submit(b))
        })
        .collect();
    // They are appended behind the held fsync (pipelining)...
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().disk_bytes < before + 118 * 100 {
        assert!(
            Instant::now() < deadline,
            "groups did not append during the fsync"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // ...but not acknowledged, nor readable.
    for (i, p) in &mut queued {
        assert!(
            futures::FutureExt::now_or_never(p).is_none(),
            "key {i} acknowledged early"
        );
        assert_eq!(db.get(&key(*i)).unwrap(), None);
    }
    gate.release();
    first.join().unwrap().unwrap();
    for (i, p) in queued {
        assert!(
            p.wait().is_err(),
            "key {i} acknowledged without a good fsync"
        );
        assert_eq!(db.get(&key(i)).unwrap(), None);
    }
    assert!(db.stats().read_only);
    drop(db);
    assert_acked_survive(d.path(), &[0, 1]);
}

/// Fails every write to a file whose name ends with `suffix`.
#[derive(Debug)]
struct FailWritesTo(&'static str);

#[derive(Debug)]
struct MaybeFailing(Box<dyn AppendFile>, bool);

impl AppendFile for MaybeFailing {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.1 {
            return Err(io::Error::other("injected failure of this file's writes"));
        }
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.0.allocate(len)
    }
    fn map(&mut self, len: usize) -> io::Result<MmapRaw> {
        self.0.map(len)
    }
    fn link_count(&mut self) -> io::Result<u64> {
        self.0.link_count()
    }
}

impl Fs for FailWritesTo {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let fail = path.to_str().is_some_and(|p| p.ends_with(self.0));
        Ok(Box::new(MaybeFailing(StdFs.open_append(path)?, fail)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

#[test]
fn a_failed_hint_write_costs_only_a_scan_at_the_next_open() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_fs(Arc::new(FailWritesTo(".hint.tmp")))
        .with_sync(SyncMode::Never)
        .with_segment_bytes(4096)
        .with_background_compaction(false);
    let (db, _) = Engine::open(d.path(), opts).unwrap();
    let acked: Vec<usize> = (0..300).collect();
    for &i in &acked {
        db.put(&key(i), &value_of(i)).unwrap();
    }
    assert!(!db.stats().read_only, "a hint is an optimisation");
    assert!(db.stats().segments > 3);
    drop(db);
    assert!(super::support::files_ending(d.path(), ".hint").is_empty());
    assert!(super::support::files_ending(d.path(), ".tmp").is_empty());
    let (db, report) = Engine::open(d.path(), Options::default()).unwrap();
    assert_eq!(report.hints_used, 0, "{report:?}");
    assert!(report.segments > 2, "{report:?}");
    drop(db);
    assert_acked_survive(d.path(), &acked);
}

#[test]
fn a_failed_fsync_while_sealing_latches_read_only_and_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    // With sync never, sealing's fsync of wal.log is the first one.
    let (db, fs) = faulty(d.path(), SyncMode::Never, 4096);
    fs.fail_from(FsOp::Sync, 1);
    let (acked, err) = put_until_refused(&db);
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(acked.len() > 10);
    assert_read_only(&db, &acked);
    drop(db);
    assert_acked_survive(d.path(), &acked);
}

#[test]
fn a_failed_truncation_of_a_torn_tail_fails_the_open_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (db, _) = Engine::open(d.path(), Options::default()).unwrap();
    for i in 0..5 {
        db.put(&key(i), &value_of(i)).unwrap();
    }
    db.close().unwrap();
    let wal = d.path().join("wal.log");
    let len = std::fs::metadata(&wal).unwrap().len();
    super::support::truncate(&wal, len - 3);
    let torn = std::fs::read(&wal).unwrap();

    let fs = FaultyFs::new();
    fs.fail_from(FsOp::SetLen, 1);
    let opts = Options::default().with_fs(Arc::new(fs));
    let err = Engine::open(d.path(), opts).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(std::fs::read(&wal).unwrap(), torn);
    // A failed open leaves the directory unlocked and recoverable.
    let (db, report) = Engine::open(d.path(), Options::default()).unwrap();
    assert!(report.bytes_truncated > 0);
    for i in 0..4 {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value_of(i)));
    }
}

/// Issue 9.2: after `rm -rf` of the data directory, writes used to be
/// acknowledged into the unlinked wal.log and lost. The link count of wal.log
/// is checked with every group's fsync: the first write after the removal fails
/// and the engine latches, naming the cause; close does not claim durability.
#[test]
fn a_removed_data_directory_fails_the_next_write_instead_of_swallowing_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data");
    let (db, _) = Engine::open(&dir, Options::default()).unwrap();
    db.put(b"before", b"1").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let err = db.put(b"after", b"2").unwrap_err();
    assert!(err.to_string().contains("removed"), "{err}");
    assert!(db.stats().read_only);
    assert!(matches!(
        db.fault(),
        Some(kvstore::engine::Fault::Removed { .. })
    ));
    assert!(matches!(
        db.put(b"later", b"3"),
        Err(Error::ReadOnly { .. })
    ));
    assert!(db.close().is_err(), "close must not report success");
}

/// The same under sync never, where no write has an fsync: the syncer thread
/// checks every second, so the engine latches within a few seconds.
#[test]
fn a_removed_data_directory_latches_within_seconds_under_sync_never() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data");
    let opts = Options::default().with_sync(SyncMode::Never);
    let (db, _) = Engine::open(&dir, opts).unwrap();
    db.put(b"before", b"1").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !db.stats().read_only {
        assert!(Instant::now() < deadline, "never noticed the removal");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(matches!(
        db.put(b"after", b"2"),
        Err(Error::ReadOnly { .. })
    ));
}

#[derive(Debug)]
struct PanickingObserver;

impl kvstore::engine::Observer for PanickingObserver {
    fn fsync(&self, _: Duration, _: usize) {
        panic!("observer bug");
    }
}

/// Issue 9.3: a panic on an engine path (here the embedder's observer, which
/// now runs outside every engine lock) latches the engine read-only with the
/// panic as its cause; no later write hangs, reads go on.
#[test]
fn a_panic_in_the_observer_latches_with_its_cause_and_nothing_hangs() {
    let d = tempfile::tempdir().unwrap();
    let opts = Options::default().with_observer(Arc::new(PanickingObserver));
    let (db, _) = Engine::open(d.path(), opts).unwrap();
    // The write itself was synced and published before the observer ran.
    let _ = db.put(b"k", b"v");
    assert!(db.stats().read_only);
    match db.fault() {
        Some(kvstore::engine::Fault::Panic { message, .. }) => {
            assert!(message.contains("observer bug"))
        }
        other => panic!("{other:?}"),
    }
    let (tx, rx) = mpsc::channel();
    let db2 = db.clone();
    std::thread::spawn(move || {
        let mut b = Batch::new();
        b.put(b"x", b"1").put(b"y", b"2");
        tx.send((db2.put(b"z", b"1").is_err(), db2.submit(b).wait().is_err()))
            .unwrap();
    });
    let (put_failed, batch_failed) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a write hung");
    assert!(put_failed && batch_failed);
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
}
