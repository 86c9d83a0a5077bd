//! Online backup (`Engine::backup`): a consistent point-in-time copy that opens
//! as a store of its own — under concurrent writers and compaction, with links
//! that fail, with a bad target, and killed at every file-system step.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::support::{self, open, open_faulty, rerun_self, spawn, tiny};
use kvstore::engine::fs::{AppendFile, Fs, FsOp, MmapRaw, StdFs};
use kvstore::engine::{BackupReport, Batch, Engine, Error, Options};

type Keyspace = BTreeMap<Vec<u8>, Vec<u8>>;

fn keyspace(db: &Engine) -> Keyspace {
    db.range::<&[u8]>(..)
        .map(|p| p.unwrap().into_parts())
        .collect()
}

/// Opens the backup at `dir` (as `kvstore --data-dir` would) and reads it whole.
fn backup_keyspace(dir: &Path) -> Keyspace {
    let (db, _) = open(dir, tiny());
    let all = keyspace(&db);
    db.close().unwrap();
    all
}

/// Names in `dir` that only an unfinished backup leaves.
fn tmp_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// Fills a store over many segments: overwrites, deletes, a compaction (so
/// there are compaction outputs with hints), and fresh writes in `wal.log`.
fn populate(db: &Engine) {
    for round in 0..3u32 {
        for i in 0..200u32 {
            db.put(
                format!("k{i:04}").as_bytes(),
                format!("v{round}-{i}").as_bytes(),
            )
            .unwrap();
        }
    }
    for i in (0..200u32).step_by(3) {
        db.delete(format!("k{i:04}").as_bytes()).unwrap();
    }
    db.compact().unwrap();
    for i in 0..50u32 {
        db.put(format!("fresh{i:03}").as_bytes(), b"new").unwrap();
    }
}

#[test]
fn backup_of_an_empty_store_opens_empty() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    let to = out.path().join("b");
    let r = db.backup(&to).unwrap();
    assert_eq!(r.live_keys, 0);
    assert!(r.files >= 1, "{r:?}");
    assert_eq!(r.files, r.linked + r.copied);
    assert!(to.join("wal.log").is_file());
    assert!(backup_keyspace(&to).is_empty());
    assert!(tmp_dirs(out.path()).is_empty());
}

#[test]
fn backup_holds_the_keyspace_and_not_later_writes() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    populate(&db);
    let before = keyspace(&db);
    assert!(before.len() > 100);
    let to = out.path().join("b");
    let r: BackupReport = db.backup(&to).unwrap();
    assert_eq!(r.live_keys, before.len() as u64);
    assert!(
        r.linked > 0,
        "sealed segments are linked on one file system: {r:?}"
    );
    assert_eq!(r.files, r.linked + r.copied);
    let on_disk: u64 = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(r.bytes, on_disk);

    db.put(b"after", b"x").unwrap();
    db.delete(b"fresh000").unwrap();
    db.compact().unwrap();
    assert_eq!(backup_keyspace(&to), before);
    // The original is untouched by the backup's open (it cuts nothing shared).
    db.close().unwrap();
    let (db, _) = open(d.path(), tiny());
    assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(db.get(b"fresh000").unwrap(), None);
    assert_eq!(keyspace(&db).len(), before.len());
}

#[test]
fn backup_copies_what_it_cannot_link() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (db, fs) = open_faulty(d.path(), tiny());
    populate(&db);
    let before = keyspace(&db);
    fs.fail_links(true);
    let to = out.path().join("b");
    let r = db.backup(&to).unwrap();
    assert_eq!(r.linked, 0, "{r:?}");
    assert_eq!(r.copied, r.files);
    assert!(r.files >= 3, "segments, hints and wal.log: {r:?}");
    assert_eq!(backup_keyspace(&to), before);
}

#[test]
fn backup_to_another_file_system_copies() {
    use std::os::unix::fs::MetadataExt;
    let d = support::mem_tempdir();
    let out = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    populate(&db);
    let before = keyspace(&db);
    let to = out.path().join("b");
    let r = db.backup(&to).unwrap();
    assert_eq!(backup_keyspace(&to), before);
    let across =
        std::fs::metadata(d.path()).unwrap().dev() != std::fs::metadata(out.path()).unwrap().dev();
    if across {
        assert_eq!(r.linked, 0, "links across file systems fail (EXDEV): {r:?}");
    }
}

#[test]
fn bad_targets_are_refused_and_nothing_is_created() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    db.put(b"a", b"1").unwrap();
    let refused = |to: &Path, why: &str| match db.backup(to) {
        Err(Error::BackupTarget { path, reason }) => {
            assert_eq!(path, to);
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("{to:?}: expected a refused target, got {other:?}"),
    };
    let full = out.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    refused(&full, "not an empty directory");
    let file = out.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    refused(&file, "not an empty directory");
    refused(&d.path().join("inside"), "inside the data directory");
    refused(
        &out.path().join("no/such/parent"),
        "parent directory does not exist",
    );
    assert!(tmp_dirs(out.path()).is_empty());
    assert!(tmp_dirs(d.path()).is_empty());
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);

    // `..` is resolved; and an empty directory is a fine target.
    std::fs::create_dir(out.path().join("sub")).unwrap();
    let dotted = out.path().join("sub/../dotted");
    db.backup(&dotted).unwrap();
    assert_eq!(backup_keyspace(&out.path().join("dotted")).len(), 1);
    refused(&d.path().join("x/.."), "names no directory");
    refused(
        &d.path()
            .join("../")
            .join(d.path().file_name().unwrap())
            .join("in"),
        "inside the data directory",
    );

    let empty = out.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    db.backup(&empty).unwrap();
    assert_eq!(backup_keyspace(&empty).len(), 1);
    // ... but not twice.
    refused(&empty, "not an empty directory");
}

#[test]
fn a_backup_of_a_closed_engine_fails() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (db, _) = open(d.path(), tiny());
    let other = db.clone();
    db.close().unwrap();
    assert!(matches!(
        other.backup(out.path().join("b")),
        Err(Error::Closed)
    ));
    assert!(!out.path().join("b").exists());
}

#[test]
fn a_failed_step_leaves_no_target_behind() {
    for op in [FsOp::Write, FsOp::Sync, FsOp::SyncDir, FsOp::Rename] {
        let d = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (db, fs) = open_faulty(d.path(), tiny());
        populate(&db);
        let before = keyspace(&db);
        let to = out.path().join("b");
        fs.fail_from(op, 1);
        let failed = db.backup(&to);
        fs.heal(op);
        assert!(failed.is_err(), "{op:?}: {failed:?}");
        assert!(!to.exists(), "{op:?}: a failed backup left its target");
        assert!(
            tmp_dirs(out.path()).is_empty(),
            "{op:?}: temporary directory left"
        );
        // Nothing of the failure stays: the next backup works.
        db.backup(&to).unwrap();
        assert_eq!(backup_keyspace(&to), before, "{op:?}");
    }
}

/// Writers that record what was acknowledged, a compaction looping beside
/// them, and a backup in the middle: every write acknowledged before the call
/// is in it, no batch is in it in part, and nothing started after it returned.
#[test]
fn backup_is_consistent_under_writers_and_compaction() {
    const THREADS: usize = 3;
    const SLOTS: u64 = 32;
    // Per writer: bounds the store (and the test's time) if backups are slow.
    const MAX_WRITES: u64 = 20_000;
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Segments big enough that the sealer keeps up with writers going flat
    // out (tiny ones rotate faster than they can be synced and sealed).
    let (db, _) = open(d.path(), tiny().with_segment_bytes(64 << 10));
    let stop = Arc::new(AtomicBool::new(false));
    // Per thread: the last iteration acknowledged, and the last one started.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let (db, stop, acked, started) = (db.clone(), stop.clone(), acked.clone(), started.clone());
        handles.push(std::thread::spawn(move || {
            let mut i = 1u64;
            while !stop.load(Ordering::SeqCst) && i <= MAX_WRITES {
                started[t].store(i, Ordering::SeqCst);
                // A batch over two keys that are only ever written together
                // (overwritten, so compaction has dead bytes to reclaim), and
                // a key of its own per iteration.
                let mut b = Batch::new();
                let v = i.to_string().into_bytes();
                b.put(format!("{t}/x/{}", i % SLOTS).as_bytes(), &v);
                b.put(format!("{t}/y/{}", i % SLOTS).as_bytes(), &v);
                b.put(format!("{t}/s/{i:08}").as_bytes(), &v);
                db.apply(b).unwrap();
                acked[t].store(i, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    let compactor = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(Ordering::SeqCst) {
                db.compact().unwrap();
                runs += 1;
                // std's Mutex is not fair: a loop that re-takes the
                // compaction lock at once could starve the backup waiting
                // for it. Background compaction never loops like this.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            runs
        })
    };
    // Let every writer get going (generous deadline, no fixed sleep).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.iter().any(|a| a.load(Ordering::SeqCst) < 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "writers made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut backups = Vec::new();
    for n in 0..3 {
        let acked_before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let to = out.path().join(format!("b{n}"));
        db.backup(&to).unwrap();
        let started_after: Vec<u64> = started.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        if n == 0 {
            // The backup ran while writes were being made.
            assert!(
                (0..THREADS).any(|t| started_after[t] > acked_before[t] + 1),
                "{acked_before:?} {started_after:?}"
            );
        }
        backups.push((to, acked_before, started_after));
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    assert!(compactor.join().unwrap() > 0);
    db.close().unwrap();

    for (to, acked_before, started_after) in backups {
        let all = backup_keyspace(&to);
        let num = |k: &str| -> Option<u64> {
            all.get(k.as_bytes())
                .map(|v| String::from_utf8_lossy(v).parse().unwrap())
        };
        for t in 0..THREADS {
            let (a, s) = (acked_before[t], started_after[t]);
            for i in 1..=a {
                assert_eq!(
                    num(&format!("{t}/s/{i:08}")),
                    Some(i),
                    "{to:?}: acked write {t}/{i} missing"
                );
            }
            let newest = all
                .keys()
                .filter(|k| k.starts_with(format!("{t}/s/").as_bytes()))
                .count() as u64;
            assert!(
                newest <= s,
                "{to:?}: thread {t} has {newest} writes in, only {s} started before the backup returned"
            );
            for slot in 0..SLOTS {
                let (x, y) = (num(&format!("{t}/x/{slot}")), num(&format!("{t}/y/{slot}")));
                assert_eq!(
                    x, y,
                    "{to:?}: half of a batch in the backup ({t}, slot {slot})"
                );
                // The newest acknowledged write of this slot, or a newer one.
                let last_acked = (a.saturating_sub(SLOTS - 1)..=a)
                    .filter(|i| *i >= 1 && i % SLOTS == slot)
                    .max();
                if let Some(want) = last_acked {
                    assert!(
                        x.is_some_and(|x| x >= want),
                        "{to:?}: {t}/x/{slot} is {x:?}, acked {want}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Killed at every file-system step of a backup: the target either does not
// exist or is a complete backup.

const KILL_DIR_ENV: &str = "KVSTORE_TEST_BACKUP_DIR";
const KILL_AT_ENV: &str = "KVSTORE_TEST_BACKUP_KILL_AT";

/// Counts file-system calls once armed and dies (SIGKILL) before the chosen one.
#[derive(Debug)]
struct KillFs {
    armed: AtomicBool,
    calls: AtomicU64,
    kill_at: u64,
}

impl KillFs {
    fn step(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.kill_at {
            // SAFETY: kill(2) and getpid(2) only read integers; SIGKILL ends
            // this process here, as a crash would.
            #[allow(unsafe_code, reason = "kill(2) of this very process, at once")]
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

#[derive(Debug)]
struct KillFile(Box<dyn AppendFile>, Arc<KillFs>);

impl AppendFile for KillFile {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.1.step();
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.1.step();
        self.0.sync()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.1.step();
        self.0.set_len(len)
    }
    fn allocate(&mut self, len: u64) -> std::io::Result<()> {
        self.1.step();
        self.0.allocate(len)
    }
    fn map(&mut self, len: usize) -> std::io::Result<MmapRaw> {
        self.0.map(len)
    }
    fn link_count(&mut self) -> std::io::Result<u64> {
        self.0.link_count()
    }
}

#[derive(Debug)]
struct KillingFs(Arc<KillFs>);

impl Fs for KillingFs {
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn AppendFile>> {
        self.0.step();
        Ok(Box::new(KillFile(
            StdFs.open_append(path)?,
            Arc::clone(&self.0),
        )))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.step();
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.0.step();
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.0.step();
        StdFs.sync_dir(dir)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.step();
        StdFs.hard_link(from, to)
    }
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        self.0.step();
        StdFs.create_dir(path)
    }
}

/// The child: opens the prepared store, arms, backs up to `<dir>/../target`,
/// prints how many calls the backup made.
#[test]
fn backup_kill_child() {
    let Ok(dir) = std::env::var(KILL_DIR_ENV) else {
        return; // Only meaningful when run by the test below.
    };
    let kill_at = std::env::var(KILL_AT_ENV).unwrap().parse().unwrap();
    let state = Arc::new(KillFs {
        armed: AtomicBool::new(false),
        calls: AtomicU64::new(0),
        kill_at,
    });
    // Segments larger than the store: no rotation or spare is made in the
    // background while armed, so every counted call is the backup's.
    let opts: Options = tiny()
        .with_segment_bytes(1 << 20)
        .with_fs(Arc::new(KillingFs(Arc::clone(&state))));
    let dir = PathBuf::from(dir);
    let (db, _) = Engine::open(dir.join("data"), opts).unwrap();
    state.armed.store(true, Ordering::SeqCst);
    db.backup(dir.join("target")).unwrap();
    state.armed.store(false, Ordering::SeqCst);
    let mut out = std::io::stdout().lock();
    writeln!(out, "CALLS {}", state.calls.load(Ordering::SeqCst)).unwrap();
    out.flush().unwrap();
}

fn run_child(dir: &Path, kill_at: u64) -> Option<u64> {
    let mut child = spawn(
        rerun_self("backup::backup_kill_child")
            .env(KILL_DIR_ENV, dir)
            .env(KILL_AT_ENV, kill_at.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut calls = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // The harness may print the test's name on the same line first.
        let line = line.unwrap();
        if let Some((_, n)) = line.split_once("CALLS ") {
            calls = n.trim().parse().ok();
        }
    }
    child.wait().unwrap();
    calls
}

#[test]
fn backup_killed_at_any_step_leaves_no_complete_looking_target() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let expected = {
        let (db, _) = open(&data, tiny());
        populate(&db);
        let all = keyspace(&db);
        db.close().unwrap();
        all
    };
    let target = d.path().join("target");
    // A run that is never killed counts the backup's calls.
    let total = run_child(d.path(), 0).expect("the unkilled child reports its calls");
    assert!(total > 5, "{total}");
    assert_eq!(backup_keyspace(&target), expected);
    let mut complete = 0;
    for kill_at in 1..=total {
        std::fs::remove_dir_all(&target).unwrap_or(());
        for leftover in tmp_dirs(d.path()) {
            std::fs::remove_dir_all(d.path().join(leftover)).unwrap();
        }
        assert_eq!(
            run_child(d.path(), kill_at),
            None,
            "killed at call {kill_at}"
        );
        if target.exists() {
            // Only the last steps (the rename, the parent's sync) come after
            // the target got its name: it must then be whole.
            complete += 1;
            assert!(
                kill_at + 2 > total,
                "target named before the last steps: {kill_at}/{total}"
            );
            assert_eq!(
                backup_keyspace(&target),
                expected,
                "killed at call {kill_at}"
            );
        } else {
            assert!(
                !tmp_dirs(d.path()).is_empty() || kill_at == 1,
                "killed at {kill_at}"
            );
        }
    }
    assert_eq!(
        complete, 1,
        "only a kill after the rename leaves the target"
    );
    // The source is unharmed by every killed backup.
    let (db, _) = open(&data, tiny());
    assert_eq!(keyspace(&db), expected);
}

// ---------------------------------------------------------------------------
// The files that are copied rather than linked.

/// Holds the sealer in its cut of a rotated-out `wal.log` (the only
/// `set_len` to a non-zero length while the store runs), so the memtable
/// stays in the segment set's `sealing` while a backup is taken.
#[derive(Debug, Default)]
struct CutGate {
    state: std::sync::Mutex<(bool, bool)>, // (armed, holding)
    cv: std::sync::Condvar,
}

impl CutGate {
    fn wait_holding(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut s = self.state.lock().unwrap();
        while !s.1 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "the sealer never reached its cut");
            s = self.cv.wait_timeout(s, left).unwrap().0;
        }
    }

    fn release(&self) {
        self.state.lock().unwrap().0 = false;
        self.cv.notify_all();
    }
}

#[derive(Debug)]
struct CutGateFile(Box<dyn AppendFile>, Arc<CutGate>);

impl AppendFile for CutGateFile {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        if len > 0 {
            let mut s = self.1.state.lock().unwrap();
            if s.0 {
                s.1 = true;
                self.1.cv.notify_all();
                while s.0 {
                    s = self.1.cv.wait(s).unwrap();
                }
            }
        }
        self.0.set_len(len)
    }
    fn allocate(&mut self, len: u64) -> std::io::Result<()> {
        self.0.allocate(len)
    }
    fn map(&mut self, len: usize) -> std::io::Result<MmapRaw> {
        self.0.map(len)
    }
    fn link_count(&mut self) -> std::io::Result<u64> {
        self.0.link_count()
    }
}

#[derive(Debug)]
struct CutGateFs(Arc<CutGate>);

impl Fs for CutGateFs {
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(CutGateFile(
            StdFs.open_append(path)?,
            Arc::clone(&self.0),
        )))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

#[test]
fn a_segment_still_being_sealed_is_copied_with_a_built_hint() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let gate = Arc::new(CutGate::default());
    let (db, _) = open(
        d.path(),
        tiny().with_fs(Arc::new(CutGateFs(Arc::clone(&gate)))),
    );
    gate.state.lock().unwrap().0 = true;
    // Past one 4 KiB segment: one rotation, whose sealing then waits.
    for i in 0..120u32 {
        db.put(format!("key{i:04}").as_bytes(), &[b'v'; 40])
            .unwrap();
    }
    gate.wait_holding();
    let before = keyspace(&db);
    let to = out.path().join("b");
    let r = db.backup(&to);
    gate.release();
    let r = r.unwrap();
    // No segment was sealed yet: nothing to link; the sealing one's records,
    // its built hint and wal.log are written.
    assert_eq!((r.linked, r.copied), (0, 3), "{r:?}");
    assert_eq!(support::files_ending(&to, ".hint").len(), 1);
    let (copy, rep) = open(&to, tiny());
    assert_eq!(rep.hints_used, 1, "{rep:?}");
    assert_eq!(keyspace(&copy), before);
    copy.close().unwrap();
    db.close().unwrap();
}

#[test]
fn a_read_only_backup_copies_a_segment_whose_sealing_was_cut_short() {
    let d = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    {
        let (db, _) = open(d.path(), tiny());
        populate(&db);
        db.close().unwrap();
    }
    // As if killed while sealing the newest segment: a zeroed tail left on
    // it and no hint written.
    let seg = support::sealed_segments(d.path()).pop().unwrap();
    std::fs::remove_file(support::hint_of(&seg)).unwrap();
    support::append(&seg, &[0u8; 1000]);
    let len = std::fs::metadata(&seg).unwrap().len();

    let (db, _) = Engine::open_read_only(d.path(), tiny()).unwrap();
    let before = keyspace(&db);
    let to = out.path().join("b");
    let r = db.backup(&to).unwrap();
    db.close().unwrap();
    assert!(r.copied >= 2, "{r:?}");
    // The backup's read-write open cuts the tail of its own copy only.
    assert_eq!(backup_keyspace(&to), before);
    let copied = to.join(seg.file_name().unwrap());
    assert!(std::fs::metadata(&copied).unwrap().len() < len);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len,
        "the original was cut"
    );
}
