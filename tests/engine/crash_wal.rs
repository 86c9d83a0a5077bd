//! Crash tests of the preallocated, mapped write path (issue 8, "must not
//! regress"): `wal.log` is allocated whole and written through a shared
//! mapping, rotation renames a prepared spare into place, and a sealer thread
//! finishes the old segment. A process kill must never lose an acknowledged
//! write, resurrect an acknowledged delete, or leave a directory that does not
//! open cleanly.
//!
//! 1. Writer children (one or several threads; puts, deletes and batches with
//!    values from 0 bytes to three pages) are SIGKILLed at random moments, in
//!    every sync mode, several rounds per directory.
//! 2. Torn groups are crafted by hand at the end of a preallocated `wal.log`.
//! 3. A `wal.log` that was never filled (header only, zeros, a zero header),
//!    and a kill right after open.
//! 4. A child whose [`Fs`] kills the process at its k-th call, for every k of
//!    a rotation (spare, renames, seal, hint) and of a compaction.
//!
//! Each round checks the reopened directory against a model of the
//! acknowledged operations: a single-threaded writer has at most one operation
//! in flight at the kill, so each writer's keys must read exactly as after its
//! acknowledged operations, or as after those and the one in flight.
//!
//! `KVSTORE_CRASH_SOAK=<rounds>` runs more rounds (and every step of the
//! compaction sweep) for a long hunt.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use kvstore::engine::__test_support::FILE_HEADER_LEN;
use kvstore::engine::__test_support::header;
use kvstore::engine::__test_support::record::{self, RecordKind};
use kvstore::engine::fs::{AppendFile, Fs, MmapRaw, StdFs};
use kvstore::engine::{Batch, Engine, Options, RecoveryReport, SegmentId, SyncMode};

use super::support::{copy_dir, data_len, mem_tempdir, overwrite, random_u64, rerun_self};

// ---------------------------------------------------------------------------
// Plumbing: child processes, randomness, the model, directory checks.

/// Set in a child: which role to play (the test's name for it).
const ROLE_ENV: &str = "KVSTORE_CRASHWAL_ROLE";
/// Set in a child: the data directory.
const DIR_ENV: &str = "KVSTORE_CRASHWAL_DIR";
/// Set in a child: space-separated numbers whose meaning the role defines.
const ARGS_ENV: &str = "KVSTORE_CRASHWAL_ARGS";
/// A child that has not died by then is killed and the test fails: no test
/// may hang on a child that stopped writing.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// Rounds to run: `default`, or `KVSTORE_CRASH_SOAK` for a long hunt.
fn rounds(default: u32) -> u32 {
    soak().unwrap_or(default)
}

fn soak() -> Option<u32> {
    std::env::var("KVSTORE_CRASH_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
}

/// splitmix64: a small deterministic generator, so the parent can recompute
/// every operation a child made from the seed alone.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn below_usize(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
    /// `len` bytes no two values share, made cheaply (large values would
    /// spend the child's time generating them instead of writing them).
    fn cheap_bytes(&mut self, len: usize) -> Vec<u8> {
        let base = self.next();
        let mut out = vec![0u8; len];
        for (j, chunk) in out.chunks_mut(8).enumerate() {
            let word = (base ^ (j as u64).wrapping_mul(0x9e37_79b9)).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        if len > 4096 {
            return self.cheap_bytes(len);
        }
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a ^ b.wrapping_mul(0x2545_f491_4f6c_dd1d)).next()
}

/// How long the values of a workload are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sizes {
    /// Mostly small, some spanning a page, some several pages (more than a
    /// whole 4 KiB segment, so rotation makes an oversized one).
    Mixed,
    /// [`Sizes::Mixed`], at most this long.
    UpTo(usize),
    /// 256 KiB to 2 MiB: a copy into the mapping takes long enough (page
    /// faults on fresh pages) that a kill often lands in the middle of one.
    Large,
}

impl Sizes {
    fn code(self) -> u64 {
        u64::from(self == Sizes::Large)
    }
    fn of(code: u64) -> Sizes {
        if code == 1 {
            Sizes::Large
        } else {
            Sizes::Mixed
        }
    }
}

fn value_len(rng: &mut Rng, sizes: Sizes) -> usize {
    let mixed = |rng: &mut Rng| match rng.below(10) {
        0..=3 => rng.below_usize(64),
        4..=6 => 64 + rng.below_usize(1000),
        7..=8 => 1000 + rng.below_usize(4000),
        _ => 5000 + rng.below_usize(7300),
    };
    match sizes {
        Sizes::Mixed => mixed(rng),
        Sizes::UpTo(max) => mixed(rng).min(max),
        Sizes::Large => (256 << 10) + rng.below_usize(7 << 18),
    }
}

/// One write a child makes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WOp {
    Put(u32, Vec<u8>),
    Delete(u32),
    /// Distinct keys; `None` deletes.
    Batch(Vec<(u32, Option<Vec<u8>>)>),
}

fn key_of(thread: usize, idx: u32) -> Vec<u8> {
    format!("t{thread}/k{idx:03}").into_bytes()
}

fn prefix_of(thread: usize) -> Vec<u8> {
    format!("t{thread}/").into_bytes()
}

/// Operation `i` of a writer whose operations are seeded by `seed`, over
/// `keys` keys.
fn op_at(seed: u64, i: u64, keys: u32, sizes: Sizes) -> WOp {
    let mut rng = Rng::new(mix(seed, i));
    let len = |rng: &mut Rng| value_len(rng, sizes);
    let idx = u32::try_from(rng.below(u64::from(keys))).unwrap_or(0);
    match rng.below(100) {
        0..=69 => {
            let l = len(&mut rng);
            WOp::Put(idx, rng.bytes(l))
        }
        70..=84 => WOp::Delete(idx),
        _ => {
            let n = 2 + rng.below(4);
            let mut seen = BTreeSet::new();
            let mut ops = Vec::new();
            for j in 0..n {
                let idx = (idx + u32::try_from(j * 7).unwrap_or(0)) % keys;
                if !seen.insert(idx) {
                    continue;
                }
                if rng.below(5) == 0 {
                    ops.push((idx, None));
                } else {
                    let l = len(&mut rng);
                    ops.push((idx, Some(rng.bytes(l))));
                }
            }
            WOp::Batch(ops)
        }
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn apply_op(model: &mut Model, thread: usize, op: &WOp) {
    match op {
        WOp::Put(idx, v) => {
            model.insert(key_of(thread, *idx), v.clone());
        }
        WOp::Delete(idx) => {
            model.remove(&key_of(thread, *idx));
        }
        WOp::Batch(ops) => {
            for (idx, v) in ops {
                match v {
                    Some(v) => model.insert(key_of(thread, *idx), v.clone()),
                    None => model.remove(&key_of(thread, *idx)),
                };
            }
        }
    }
}

/// The child side of an operation; an engine error panics the child, which
/// the parent sees as an exit that was not its SIGKILL.
fn perform(db: &Engine, thread: usize, op: &WOp) {
    match op {
        WOp::Put(idx, v) => {
            db.put(&key_of(thread, *idx), v).unwrap();
        }
        WOp::Delete(idx) => {
            db.delete(&key_of(thread, *idx)).unwrap();
        }
        WOp::Batch(ops) => {
            let mut b = Batch::new();
            for (idx, v) in ops {
                match v {
                    Some(v) => b.put(&key_of(thread, *idx), v),
                    None => b.delete(&key_of(thread, *idx)),
                };
            }
            db.apply(b).unwrap();
        }
    }
}

/// Prints one whole line to the parent; a parent gone away ends the child.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// The child's role, if this process is one.
fn child_role() -> Option<(String, std::path::PathBuf, Vec<u64>)> {
    let role = std::env::var(ROLE_ENV).ok()?;
    // The harness has printed `test <name> ... ` with no newline: end that
    // line, so the child's first line reads alone.
    say("");
    let dir = std::env::var(DIR_ENV).ok()?.into();
    let args = std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(|a| a.parse().unwrap())
        .collect();
    Some((role, dir, args))
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) only reads its integer arguments. The pid is a child
    // this process has not reaped yet, so it cannot name another process.
    #[allow(unsafe_code, reason = "kill(2) has no std wrapper for a raw pid")]
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// When the parent kills a child.
#[derive(Debug, Clone, Copy)]
enum KillWhen {
    /// Only if it outlives [`CHILD_DEADLINE`] (the child is expected to end itself).
    Never,
    /// Right after reading the n-th acknowledgement.
    AfterAcks(usize),
    /// This long after the child printed `READY`.
    AfterReady(Duration),
    /// Right after reading this line.
    OnLine(&'static str),
}

/// What a child printed, and how it ended.
#[derive(Debug)]
struct ChildRun {
    lines: Vec<String>,
    status: ExitStatus,
    timed_out: bool,
}

impl ChildRun {
    fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }
    /// The highest acknowledged operation index of each writer thread.
    fn last_acks(&self) -> BTreeMap<usize, u64> {
        let mut last = BTreeMap::new();
        for l in &self.lines {
            let mut w = l.split(' ');
            if w.next() != Some("ACK") {
                continue;
            }
            let (Some(t), Some(i)) = (w.next(), w.next()) else {
                continue;
            };
            let (t, i): (usize, u64) = (t.parse().unwrap(), i.parse().unwrap());
            let e = last.entry(t).or_insert(i);
            *e = (*e).max(i);
        }
        last
    }
    fn acks(&self) -> usize {
        self.lines.iter().filter(|l| l.starts_with("ACK ")).count()
    }
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

/// Kills the child if the parent leaves early (a failed assertion while
/// reading), so no writer outlives its test.
struct Reaper(Option<std::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

enum Signal {
    Ready,
    Done,
}

/// Runs the test `test` of this binary as a child in role `role`.
fn run_child(test: &str, role: &str, dir: &Path, args: &[u64], when: KillWhen) -> ChildRun {
    run_child_env(test, role, dir, args, when, &[])
}

/// [`run_child`] with more environment for the child.
fn run_child_env(
    test: &str,
    role: &str,
    dir: &Path,
    args: &[u64],
    when: KillWhen,
    env: &[(&str, &str)],
) -> ChildRun {
    let args: Vec<String> = args.iter().map(u64::to_string).collect();
    let mut child = rerun_self(test)
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .env(ARGS_ENV, args.join(" "))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut reaper = Reaper(Some(child));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Signal>();
    let watchdog = {
        let timed_out = Arc::clone(&timed_out);
        let delay = match when {
            KillWhen::AfterReady(d) => Some(d),
            _ => None,
        };
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let left =
                |started: std::time::Instant| CHILD_DEADLINE.saturating_sub(started.elapsed());
            let mut ready = false;
            loop {
                let wait = match (ready, delay) {
                    (true, Some(d)) => d,
                    _ => left(started),
                };
                match rx.recv_timeout(wait) {
                    Ok(Signal::Ready) => ready = true,
                    Ok(Signal::Done) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if !(ready && delay.is_some()) {
                            timed_out.store(true, Ordering::SeqCst);
                        }
                        // The parent reaps the child only after this thread
                        // ends, so the pid is still the child's.
                        sigkill(pid);
                        return;
                    }
                }
            }
        })
    };
    let mut lines = Vec::new();
    let mut acks = 0usize;
    let mut out = out;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match out.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A line cut by the kill was never completely printed: it does not count.
        let Some(line) = buf.strip_suffix(b"\n") else {
            break;
        };
        let line = String::from_utf8_lossy(line).into_owned();
        if line == "READY" {
            let _ = tx.send(Signal::Ready);
        }
        let is_ack = line.starts_with("ACK ");
        if is_ack {
            acks += 1;
        }
        match when {
            KillWhen::AfterAcks(n) if is_ack && acks == n => sigkill(pid),
            KillWhen::OnLine(want) if line == want => sigkill(pid),
            _ => {}
        }
        lines.push(line);
    }
    let _ = tx.send(Signal::Done);
    watchdog.join().unwrap();
    let status = reaper.0.take().unwrap().wait().unwrap();
    ChildRun {
        lines,
        status,
        timed_out: timed_out.load(Ordering::SeqCst),
    }
}

/// Every key of the engine with its value; a key that cannot be read (a
/// corrupt record) fails the test.
fn contents(db: &Engine, prefix: &[u8], context: &str) -> Model {
    db.prefix(prefix)
        .map(|p| {
            p.unwrap_or_else(|e| panic!("unreadable key after recovery: {e} ({context})"))
                .into_parts()
        })
        .collect()
}

/// Checks thread `t`'s keys after a kill: as after its acknowledged
/// operations, or as after those and the one that was in flight. Updates
/// `model` (the state before this run) to what was found.
fn resolve(
    db: &Engine,
    model: &mut Model,
    thread: usize,
    last_ack: Option<u64>,
    op: impl Fn(u64) -> WOp,
    context: &str,
) {
    let mut acked = model.clone();
    let next = match last_ack {
        Some(last) => {
            for i in 0..=last {
                apply_op(&mut acked, thread, &op(i));
            }
            last + 1
        }
        None => 0,
    };
    let mut in_flight = acked.clone();
    apply_op(&mut in_flight, thread, &op(next));
    let found = contents(db, &prefix_of(thread), context);
    if found != acked && found != in_flight {
        let lost: Vec<_> = acked
            .iter()
            .filter(|(k, v)| found.get(*k) != Some(*v))
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.len()))
            .collect();
        let extra: Vec<_> = found
            .keys()
            .filter(|k| !acked.contains_key(*k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        panic!(
            "thread {thread}: state after recovery is neither the acknowledged one nor that \
             plus op {next} ({:?}); keys missing or different (with expected length): {lost:?}; \
             keys not acknowledged: {extra:?} ({context})",
            op(next)
        );
    }
    *model = found;
}

/// Files of `dir` by name.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn segment_id_of(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?;
    (stem.len() == 16)
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

/// The directory of an engine just opened: recovery removed every leftover,
/// finished or undid any compaction, every hint has its segment, `wal.log` is
/// newer than every sealed segment and holds records then zeros only.
fn check_dir(dir: &Path, context: &str) {
    let files = names(dir);
    for f in &files {
        assert!(
            !f.ends_with(".tmp"),
            "leftover {f} after open: {files:?} ({context})"
        );
        assert_ne!(f, "COMPACTION", "manifest left after open ({context})");
    }
    let segs: BTreeSet<u64> = files
        .iter()
        .filter_map(|f| segment_id_of(f, ".seg"))
        .collect();
    for f in &files {
        if let Some(id) = segment_id_of(f, ".hint") {
            assert!(
                segs.contains(&id),
                "hint {f} without its segment: {files:?} ({context})"
            );
        }
    }
    let wal = dir.join("wal.log");
    let bytes = std::fs::read(&wal).unwrap();
    assert!(
        bytes.len() >= FILE_HEADER_LEN,
        "wal.log has no header ({context})"
    );
    let id = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    if let Some(&newest) = segs.last() {
        assert!(
            id > newest,
            "wal.log (segment {id:#x}) is not newer than sealed {newest:#x} ({context})"
        );
    }
    let good = usize::try_from(data_len(&wal)).unwrap();
    assert!(
        bytes[good..].iter().all(|&b| b == 0),
        "wal.log holds non-zero bytes after its last record at {good} ({context})"
    );
}

/// What a kill may leave: at most one torn group, at the end of `wal.log`.
fn check_report_after_kill(report: &RecoveryReport, max_torn: u64, context: &str) {
    assert!(
        report.corrupt_records <= 1 && report.batches_discarded <= 1,
        "a kill tears at most one group, at the tail: {report:?} ({context})"
    );
    assert!(
        report.bytes_truncated <= max_torn,
        "more torn bytes than one group holds: {report:?} ({context})"
    );
}

/// A clean close leaves nothing to repair.
fn check_clean_report(report: &RecoveryReport, context: &str) {
    assert_eq!(
        (
            report.bytes_truncated,
            report.corrupt_records,
            report.batches_discarded,
            report.leftovers_removed
        ),
        (0, 0, 0, 0),
        "reopen after a clean close found damage: {report:?} ({context})"
    );
}

fn sync_of(code: u64) -> SyncMode {
    match code {
        0 => SyncMode::Never,
        1 => SyncMode::Periodic(Duration::from_millis(20)),
        _ => SyncMode::Always,
    }
}

fn options(sync: SyncMode, segment_bytes: u64) -> Options {
    Options::default()
        .with_segment_bytes(segment_bytes)
        .with_sync(sync)
        .with_background_compaction(false)
}

// ---------------------------------------------------------------------------
// 1. SIGKILL while the mapping is being written.

const KEYS_PER_THREAD: u32 = 24;

fn round_seed(seed: u64, round: u64, thread: usize) -> u64 {
    mix(mix(seed, round), thread as u64)
}

/// The child: `threads` writers, each making its seeded operations and
/// printing `ACK <thread> <i>` after each returns, until killed.
fn sigkill_child(dir: &Path, args: &[u64]) -> ! {
    let [seed, round, threads, sync, segment, sizes] = args[..] else {
        panic!("bad child args {args:?}")
    };
    let (db, _) = Engine::open(dir, options(sync_of(sync), segment)).unwrap();
    say("READY");
    std::thread::scope(|s| {
        for t in 0..usize::try_from(threads).unwrap() {
            let db = db.clone();
            s.spawn(move || {
                let seed = round_seed(seed, round, t);
                for i in 0.. {
                    perform(&db, t, &op_at(seed, i, KEYS_PER_THREAD, Sizes::of(sizes)));
                    say(&format!("ACK {t} {i}"));
                }
            });
        }
    });
    unreachable!("writers never finish")
}

fn sigkill_rounds(test: &str, sync_code: u64, threads: usize, sizes: Sizes) {
    if let Some((_, dir, args)) = child_role() {
        sigkill_child(&dir, &args);
    }
    let seed = random_u64();
    let mut rng = Rng::new(seed);
    // Large values in memory: they would only load the shared disk.
    let dir = match sizes {
        Sizes::Large => mem_tempdir(),
        _ => tempfile::tempdir().unwrap(),
    };
    let mut models: Vec<Model> = vec![Model::new(); threads];
    let mut records_seen = 0u64;
    let mut torn_rounds = 0;
    // A torn group is at most a few batches of the largest values.
    let max_torn = match sizes {
        Sizes::Large => threads as u64 * (16 << 20),
        _ => 1 << 20,
    };
    for round in 0..u64::from(rounds(3)) {
        let segment = match (sizes, rng.below(2)) {
            (Sizes::Large, _) => 4 << 20,
            (_, 0) => 4096,
            _ => 64 << 10,
        };
        let when = if sizes != Sizes::Large && rng.below(2) == 0 {
            KillWhen::AfterAcks(1 + rng.below_usize(150 * threads))
        } else {
            // Large values: the first put takes tens of milliseconds.
            let min = if sizes == Sizes::Large { 60 } else { 5 };
            KillWhen::AfterReady(Duration::from_millis(min + rng.below(250)))
        };
        let context = format!(
            "sync {sync_code}, {threads} threads, round {round}, segments {segment}, \
             kill {when:?}, seed {seed:#x}"
        );
        let run = run_child(
            test,
            "writer",
            dir.path(),
            &[
                seed,
                round,
                threads as u64,
                sync_code,
                segment,
                sizes.code(),
            ],
            when,
        );
        assert!(
            run.killed() && !run.timed_out,
            "writer child ended by itself or hung: {:?}, last lines {:?} ({context})",
            run.status,
            run.lines.iter().rev().take(5).collect::<Vec<_>>()
        );
        let last = run.last_acks();
        let (db, report) = Engine::open(dir.path(), options(sync_of(sync_code), segment))
            .unwrap_or_else(|e| panic!("open after kill: {e} ({context})"));
        check_report_after_kill(&report, max_torn, &context);
        check_dir(dir.path(), &context);
        if report.bytes_truncated > 0 {
            torn_rounds += 1;
        }
        eprintln!(
            "{context}: {} acks; recovery: {} segments, {} records, {} torn bytes, \
             {} corrupt, {} batches discarded",
            run.acks(),
            report.segments,
            report.records,
            report.bytes_truncated,
            report.corrupt_records,
            report.batches_discarded
        );
        for (t, model) in models.iter_mut().enumerate() {
            let s = round_seed(seed, round, t);
            resolve(
                &db,
                model,
                t,
                last.get(&t).copied(),
                |i| op_at(s, i, KEYS_PER_THREAD, sizes),
                &format!("{context}, {} acks", run.acks()),
            );
        }
        let total: usize = models.iter().map(Model::len).sum();
        assert_eq!(db.stats().live_keys, total as u64, "{context}");
        db.close().unwrap();
        let (db, report) = Engine::open(dir.path(), options(sync_of(sync_code), segment)).unwrap();
        check_clean_report(&report, &context);
        for (t, model) in models.iter().enumerate() {
            assert_eq!(
                &contents(&db, &prefix_of(t), &context),
                model,
                "thread {t} after a clean reopen ({context})"
            );
        }
        records_seen = records_seen.max(report.records);
        // Compacting what recovery rebuilt changes nothing a reader sees (and
        // keeps the directory small for the next round). Rounds alternate
        // segment sizes, which can leave a step no free output id: that known
        // refusal (`a_segment_between_two_kept_neighbours_with_adjacent_ids_can_be_compacted`,
        // ignored until fixed) changes nothing either, and is checked below.
        match db.compact() {
            Ok(_) => {}
            Err(e) => panic!("compacting the recovered directory: {e} ({context})"),
        }
        for (t, model) in models.iter().enumerate() {
            assert_eq!(
                &contents(&db, &prefix_of(t), &context),
                model,
                "thread {t} after compacting the recovered directory ({context})"
            );
        }
        db.close().unwrap();
    }
    eprintln!("{test}: {torn_rounds} rounds found a torn tail (seed {seed:#x})");
    assert!(
        records_seen > 0,
        "the writers wrote nothing before any kill (seed {seed:#x})"
    );
}

#[test]
fn sigkill_mid_write_one_thread_sync_never() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_write_one_thread_sync_never",
        0,
        1,
        Sizes::Mixed,
    );
}

#[test]
fn sigkill_mid_write_one_thread_sync_periodic() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_write_one_thread_sync_periodic",
        1,
        1,
        Sizes::Mixed,
    );
}

#[test]
fn sigkill_mid_write_one_thread_sync_always() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_write_one_thread_sync_always",
        2,
        1,
        Sizes::Mixed,
    );
}

#[test]
fn sigkill_mid_write_four_threads_sync_never() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_write_four_threads_sync_never",
        0,
        4,
        Sizes::Mixed,
    );
}

#[test]
fn sigkill_mid_write_four_threads_sync_periodic() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_write_four_threads_sync_periodic",
        1,
        4,
        Sizes::Mixed,
    );
}

#[test]
fn sigkill_mid_write_four_threads_sync_always() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_write_four_threads_sync_always",
        2,
        4,
        Sizes::Mixed,
    );
}

// ---------------------------------------------------------------------------
// 2. A torn group at the end of a preallocated `wal.log`.

/// Segment size of the hand-made tails: large enough that the fixture never
/// rotates, so all of it is in `wal.log`.
const TAIL_SEGMENT: u64 = 1 << 20;
const FIXTURE_OPS: u64 = 40;
const FIXTURE_SEED: u64 = 0x7a11_5eed;

fn fixture_op(i: u64) -> WOp {
    op_at(FIXTURE_SEED, i, 40, Sizes::UpTo(3000))
}

/// The child: writes the fixture, syncs, says `DONE` and waits to be killed,
/// leaving `wal.log` preallocated as only a crash leaves it.
fn fixture_child(dir: &Path) -> ! {
    let (db, _) = Engine::open(dir, options(SyncMode::Never, TAIL_SEGMENT)).unwrap();
    for i in 0..FIXTURE_OPS {
        perform(&db, 0, &fixture_op(i));
        say(&format!("ACK 0 {i}"));
    }
    db.sync().unwrap();
    say("DONE");
    loop {
        std::thread::park();
    }
}

/// A killed fixture directory, its model and where its records end.
fn killed_fixture(test: &str) -> (tempfile::TempDir, Model, u64) {
    let dir = tempfile::tempdir().unwrap();
    let run = run_child(test, "fixture", dir.path(), &[], KillWhen::OnLine("DONE"));
    assert!(
        run.killed() && run.has("DONE"),
        "fixture child: {:?}",
        run.status
    );
    let mut model = Model::new();
    for i in 0..FIXTURE_OPS {
        apply_op(&mut model, 0, &fixture_op(i));
    }
    let wal = dir.path().join("wal.log");
    let len = std::fs::metadata(&wal).unwrap().len();
    let good = data_len(&wal);
    assert!(
        len >= TAIL_SEGMENT && good < len,
        "a killed engine leaves wal.log preallocated: {good} of {len} bytes used"
    );
    (dir, model, good)
}

fn rec(key: &str, value_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let value: Vec<u8> = (0..value_len)
        .map(|i| u8::try_from(i % 251 + 1).unwrap_or(1))
        .collect();
    record::encode(&mut out, RecordKind::Put, 0, key.as_bytes(), &value);
    out
}

fn nonzero_garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut g = Rng::new(seed).bytes(len);
    if let Some(b) = g.first_mut() {
        *b |= 1;
    }
    if let Some(b) = g.last_mut() {
        *b |= 1;
    }
    g
}

/// A crafted tail: `bytes` written `gap` zero bytes after the last record.
struct Tail {
    name: &'static str,
    gap: u64,
    bytes: Vec<u8>,
    /// Of `bytes`, how many at the start are whole records that must be kept.
    kept: usize,
    /// Keys those kept records hold.
    kept_keys: Vec<&'static str>,
}

fn tails() -> Vec<Tail> {
    let tail = |name, bytes| Tail {
        name,
        gap: 0,
        bytes,
        kept: 0,
        kept_keys: vec![],
    };
    let whole = rec("torn/half", 700);
    let mut bad_crc = rec("torn/crc", 300);
    bad_crc[0] ^= 0x5a;
    // memcpy may store the end of a group before its start: the first bytes
    // of the record still read as zeros.
    let mut zero_head = rec("torn/zero-head", 5000);
    zero_head[..12].fill(0);
    let mut batch_short = Vec::new();
    record::encode_batch_marker(&mut batch_short, 3);
    batch_short.extend(rec("torn/batch-a", 100));
    batch_short.extend(rec("torn/batch-b", 5000));
    let mut batch_bad = Vec::new();
    record::encode_batch_marker(&mut batch_bad, 2);
    batch_bad.extend(rec("torn/batch-c", 100));
    let mut second = rec("torn/batch-d", 100);
    let last = second.len() - 1;
    second[last] ^= 0xff;
    batch_bad.extend(second);
    // A record whose value length runs past the end of the file.
    let mut long = vec![0u8; 4];
    long.push(RecordKind::Put as u8);
    long.push(9);
    long.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    long.extend_from_slice(b"torn/long");
    let crc = crc32fast::hash(&long[4..]);
    long[..4].copy_from_slice(&crc.to_le_bytes());
    let mut ghosts_after_garbage = nonzero_garbage(1, 64);
    ghosts_after_garbage.extend(rec("ghost/a", 50));
    ghosts_after_garbage.extend(rec("ghost/b", 4500));
    let mut kept_then_garbage = rec("kept/ok", 200);
    let kept = kept_then_garbage.len();
    kept_then_garbage.extend(nonzero_garbage(2, 33));
    kept_then_garbage.extend(rec("ghost/c", 10));
    vec![
        tail("half a record", whole[..whole.len() / 2].to_vec()),
        tail("a record with a bad crc", bad_crc),
        tail("a record whose head is still zeros", zero_head),
        tail("a batch missing its last record", batch_short),
        tail("a batch with a damaged record", batch_bad),
        tail("a length past the end of the file", long),
        tail("garbage", nonzero_garbage(3, 300)),
        tail("garbage, then valid records", ghosts_after_garbage),
        Tail {
            name: "zeros, then valid records",
            gap: 256,
            bytes: [rec("ghost/d", 80), rec("ghost/e", 9000)].concat(),
            kept: 0,
            kept_keys: vec![],
        },
        Tail {
            name: "a whole record, garbage, a valid record",
            gap: 0,
            bytes: kept_then_garbage,
            kept,
            kept_keys: vec!["kept/ok"],
        },
    ]
}

fn keys_under(db: &Engine, prefix: &str) -> Vec<String> {
    db.scan_prefix(prefix.as_bytes(), None, usize::MAX)
        .into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

fn assert_no_torn_keys(db: &Engine, kept: &[&str], context: &str) {
    assert!(
        keys_under(db, "torn/").is_empty(),
        "torn record read back ({context})"
    );
    assert!(
        keys_under(db, "ghost/").is_empty(),
        "a record after the cut was resurrected ({context})"
    );
    assert_eq!(keys_under(db, "kept/"), kept, "{context}");
}

#[test]
fn a_torn_group_at_the_end_of_a_preallocated_wal_is_cut_and_never_resurrected() {
    const TEST: &str =
        "crash_wal::a_torn_group_at_the_end_of_a_preallocated_wal_is_cut_and_never_resurrected";
    if let Some((_, dir, _)) = child_role() {
        fixture_child(&dir);
    }
    let (fixture, model, good) = killed_fixture(TEST);
    for t in tails() {
        let context = format!("tail: {}", t.name);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(fixture.path(), dir.path());
        let wal = dir.path().join("wal.log");
        overwrite(&wal, good + t.gap, &t.bytes);
        let last_nonzero = t.bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        let torn = t.gap + (last_nonzero - t.kept) as u64;

        let opts = || options(SyncMode::Never, TAIL_SEGMENT);
        let (db, report) = Engine::open(dir.path(), opts()).unwrap();
        assert_eq!(report.bytes_truncated, torn, "{report:?} ({context})");
        assert!(report.corrupt_records <= 1, "{report:?} ({context})");
        assert_eq!(contents(&db, b"t0/", &context), model, "{context}");
        assert_no_torn_keys(&db, &t.kept_keys, &context);
        // The cut zeroed the file after the records: no stale bytes can line up
        // behind the next write.
        check_dir(dir.path(), &context);
        let bytes = std::fs::read(&wal).unwrap();
        assert!(
            super::support::find(&bytes, b"ghost/").is_none(),
            "the cut left the records after it in the file ({context})"
        );

        // Writing goes on, over the cut, and all of it survives a reopen.
        let mut model = model.clone();
        for (i, len) in [0usize, 10, 5000, 9000, 100].into_iter().enumerate() {
            let k = format!("t0/after{i}").into_bytes();
            let v = Rng::new(i as u64).bytes(len);
            db.put(&k, &v).unwrap();
            model.insert(k, v);
        }
        let gone = model.keys().next().unwrap().clone();
        db.delete(&gone).unwrap();
        model.remove(&gone);
        db.close().unwrap();
        let (db, report) = Engine::open(dir.path(), opts()).unwrap();
        check_clean_report(&report, &context);
        assert_eq!(contents(&db, b"t0/", &context), model, "{context}");
        assert_no_torn_keys(&db, &t.kept_keys, &context);
        db.close().unwrap();
    }
}

// ---------------------------------------------------------------------------
// 3. A preallocated `wal.log` that was never filled.

/// The child: opens, says `READY`, and waits to be killed.
fn idle_child(dir: &Path) -> ! {
    let (_db, _) = Engine::open(dir, options(SyncMode::Always, 64 << 10)).unwrap();
    say("READY");
    loop {
        std::thread::park();
    }
}

/// Writes a few keys (one spanning three pages), closes, reopens: they are there.
fn writes_work(dir: &Path, opts: impl Fn() -> Options, model: &mut Model, context: &str) {
    let (db, _) = Engine::open(dir, opts()).unwrap();
    for (i, len) in [1usize, 300, 9000].into_iter().enumerate() {
        let k = format!("t0/w{}-{i}", model.len()).into_bytes();
        let v = Rng::new(model.len() as u64).bytes(len);
        db.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    db.close().unwrap();
    let (db, report) = Engine::open(dir, opts()).unwrap();
    check_clean_report(&report, context);
    assert_eq!(&contents(&db, b"", context), model, "{context}");
    db.close().unwrap();
}

#[test]
fn a_wal_that_was_never_filled_opens_empty_and_takes_writes() {
    let segment = 64 << 10;
    let head = header(SegmentId::FIRST);
    let zeros = |n: usize| vec![0u8; n];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", vec![]),
        ("header only", head.clone()),
        (
            "header and zeros to a page",
            [head.clone(), zeros(4096 - 20)].concat(),
        ),
        (
            "header and zeros to the segment size",
            [head.clone(), zeros(65536 - 20)].concat(),
        ),
        ("a zero header", zeros(FILE_HEADER_LEN)),
        ("a zero header and zeros to the segment size", zeros(65536)),
    ];
    for (name, bytes) in cases {
        let context = format!("wal.log: {name}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wal.log"), &bytes).unwrap();
        let opts = || options(SyncMode::Always, segment);
        let (db, report) = Engine::open(dir.path(), opts()).unwrap();
        assert_eq!(
            (report.live_keys, report.records, report.bytes_truncated),
            (0, 0, 0),
            "{report:?} ({context})"
        );
        check_dir(dir.path(), &context);
        db.close().unwrap();
        let mut model = Model::new();
        writes_work(dir.path(), opts, &mut model, &context);
        let wal = std::fs::read(dir.path().join("wal.log")).unwrap();
        assert_eq!(&wal[..FILE_HEADER_LEN], &head[..], "{context}");
    }
}

#[test]
fn a_zeroed_wal_beside_sealed_segments_takes_a_newer_id() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || options(SyncMode::Never, 4096);
    let (db, _) = Engine::open(dir.path(), opts()).unwrap();
    let mut model = Model::new();
    for i in 0..60u64 {
        let k = format!("t0/old{:02}", i % 40).into_bytes();
        let v = Rng::new(i).bytes(50 + usize::try_from(i).unwrap() * 7);
        db.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    // Seals wal.log: every record is then in a sealed segment.
    db.compact().unwrap();
    db.close().unwrap();
    let wal = dir.path().join("wal.log");
    assert_eq!(
        data_len(&wal),
        FILE_HEADER_LEN as u64,
        "wal.log holds records"
    );
    for (name, bytes) in [("zero header", vec![0u8; 20]), ("zeros", vec![0u8; 4096])] {
        assert_eq!(
            data_len(&wal),
            FILE_HEADER_LEN as u64,
            "wal.log holds records"
        );
        std::fs::write(&wal, bytes).unwrap();
        let (db, report) = Engine::open(dir.path(), opts()).unwrap();
        assert!(report.segments > 0, "{report:?}");
        check_dir(dir.path(), name);
        assert_eq!(contents(&db, b"", name), model, "{name}");
        // A newer write of an old key must win over the sealed one, now and
        // after a reopen: the new wal.log is newer than every segment.
        let k = b"t0/old00".to_vec();
        let v = format!("new after {name}").into_bytes();
        db.put(&k, &v).unwrap();
        model.insert(k, v);
        db.close().unwrap();
        let (db, report) = Engine::open(dir.path(), opts()).unwrap();
        check_clean_report(&report, name);
        assert_eq!(contents(&db, b"", name), model, "{name}");
        // Seal it again, so the next case zeroes a wal.log without records.
        db.compact().unwrap();
        db.close().unwrap();
    }
}

#[test]
fn sigkill_right_after_open_loses_nothing() {
    const TEST: &str = "crash_wal::sigkill_right_after_open_loses_nothing";
    if let Some((_, dir, _)) = child_role() {
        idle_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = || options(SyncMode::Always, 64 << 10);
    let mut model = Model::new();
    // A fresh directory, then one with data; twice each, so a preallocated,
    // never-filled wal.log left by one kill is recovered and killed again.
    for round in 0..4 {
        let context = format!("kill right after open, round {round}");
        let run = run_child(TEST, "idle", dir.path(), &[], KillWhen::OnLine("READY"));
        assert!(
            run.killed() && !run.timed_out,
            "{:?} ({context})",
            run.status
        );
        let wal = dir.path().join("wal.log");
        assert!(
            std::fs::metadata(&wal).unwrap().len() >= 64 << 10,
            "the killed engine left wal.log preallocated ({context})"
        );
        let (db, report) = Engine::open(dir.path(), opts()).unwrap();
        assert_eq!(
            (report.bytes_truncated, report.corrupt_records),
            (0, 0),
            "{report:?} ({context})"
        );
        check_dir(dir.path(), &context);
        assert_eq!(contents(&db, b"", &context), model, "{context}");
        db.close().unwrap();
        if round % 2 == 1 {
            writes_work(dir.path(), opts, &mut model, &context);
        }
    }
    assert!(!model.is_empty());
}

// ---------------------------------------------------------------------------
// 4. Rotation, sealing, hint writing and compaction killed at each Fs step.

/// Shared by a [`KillFs`] and its files: once armed, counts each kind of
/// call (a call and the kind of file it is on, e.g. `rename spare`) and kills
/// the process at the chosen occurrence of the chosen kind, before making it.
/// Counting per kind, not overall, makes the target the same step in every
/// run although the writer, syncer and sealer threads interleave differently.
#[derive(Debug)]
struct KillState {
    armed: AtomicBool,
    calls: AtomicU64,
    seen: std::sync::Mutex<BTreeMap<String, u64>>,
    /// (kind, 1-based occurrence); `None` only counts.
    target: Option<(String, u64)>,
}

impl KillState {
    /// Prints `OP <n> <call> <class> <occurrence> <file>` and, at the target, dies.
    fn step(&self, call: &str, name: &str) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let kind = format!("{call} {}", class_of(name));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let occurrence = {
            let c = seen.entry(kind.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "OP {n} {kind} {occurrence} {name}").and_then(|()| out.flush());
        if self
            .target
            .as_ref()
            .is_some_and(|(k, o)| *k == kind && *o == occurrence)
        {
            // SAFETY: kill(2) and getpid(2) only read integers; SIGKILL ends
            // this process here, with the stdout lock held so no thread
            // prints past the kill.
            #[allow(unsafe_code, reason = "kill(2) of this very process, at once")]
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            loop {
                std::thread::park();
            }
        }
        drop(seen);
    }
}

/// The real file system, dying at a chosen call.
#[derive(Debug)]
struct KillFs(Arc<KillState>);

#[derive(Debug)]
struct KillFile {
    inner: Box<dyn AppendFile>,
    /// The name the file was opened by (a rename does not change it).
    name: String,
    state: Arc<KillState>,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned())
}

impl AppendFile for KillFile {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.state.step("write", &self.name);
        self.inner.write_all(buf)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.state.step("sync", &self.name);
        self.inner.sync()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.state.step("set_len", &self.name);
        self.inner.set_len(len)
    }
    fn start_sync(&mut self, offset: u64, len: u64) {
        self.inner.start_sync(offset, len);
    }
    fn allocate(&mut self, len: u64) -> std::io::Result<()> {
        self.state.step("allocate", &self.name);
        self.inner.allocate(len)
    }
    fn map(&mut self, len: usize) -> std::io::Result<MmapRaw> {
        self.inner.map(len)
    }
    fn link_count(&mut self) -> std::io::Result<u64> {
        self.inner.link_count()
    }
}

impl Fs for KillFs {
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn AppendFile>> {
        let name = file_name(path);
        self.0.step("open_append", &name);
        Ok(Box::new(KillFile {
            inner: StdFs.open_append(path)?,
            name,
            state: Arc::clone(&self.0),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.step("rename", &file_name(from));
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.0.step("remove_file", &file_name(path));
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.0.step("sync_dir", "dir");
        StdFs.sync_dir(dir)
    }
}

/// What kind of file a call was made on, for coverage.
fn class_of(name: &str) -> &'static str {
    if name == "wal.log" {
        "wal"
    } else if name.ends_with(".wal.tmp") {
        "spare"
    } else if name.ends_with(".seg.tmp") {
        "seg.tmp"
    } else if name.ends_with(".hint.tmp") {
        "hint.tmp"
    } else if name.ends_with(".seg") {
        "seg"
    } else if name.ends_with(".hint") {
        "hint"
    } else if name.starts_with("COMPACTION") {
        "manifest"
    } else {
        "dir"
    }
}

/// One OP line: the kind of call and its occurrence.
fn parse_op(line: &str) -> Option<(String, u64)> {
    let mut w = line.split(' ');
    if w.next() != Some("OP") {
        return None;
    }
    let _n: u64 = w.next()?.parse().ok()?;
    let kind = format!("{} {}", w.next()?, w.next()?);
    Some((kind, w.next()?.parse().ok()?))
}

/// Set in a `steps` child: the kind of call and the occurrence to die at.
const TARGET_ENV: &str = "KVSTORE_CRASHWAL_TARGET";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// About one and a half segments: a spare, one rotation with its seal and
    /// hint, an oversized value (a spare too small, discarded and made anew),
    /// the next spare, and close.
    Rotation,
    /// Dead data over several segments, then `compact` (which seals
    /// `wal.log` first), a few more writes, and close.
    Compaction,
    /// Open (counted) of a directory a compaction was killed in, with a torn
    /// `wal.log` tail and a leftover spare: rolling the step forward, removing
    /// leftovers, cutting the tail; then the last writes of `Compaction`.
    Recovery,
    /// Open (counted) of a directory a rotation was killed in between its two
    /// renames: no `wal.log`, a spare left behind, a sealed segment whose
    /// preallocated tail was never cut. Nothing is written after the open.
    RecoveryNoWal,
}

impl Workload {
    fn code(self) -> u64 {
        match self {
            Workload::Rotation => 0,
            Workload::Compaction => 1,
            Workload::Recovery => 2,
            Workload::RecoveryNoWal => 3,
        }
    }
    fn of(code: u64) -> Workload {
        match code {
            0 => Workload::Rotation,
            1 => Workload::Compaction,
            2 => Workload::Recovery,
            _ => Workload::RecoveryNoWal,
        }
    }
    fn recovers(self) -> bool {
        matches!(self, Workload::Recovery | Workload::RecoveryNoWal)
    }
    /// Operations before the calls are counted, and in all.
    fn split(self) -> (u64, u64) {
        match self {
            Workload::Rotation => (5, 45),
            Workload::RecoveryNoWal => (45, 45),
            Workload::Compaction | Workload::Recovery => (150, 156),
        }
    }
    fn keys(self) -> u32 {
        match self {
            Workload::Rotation | Workload::RecoveryNoWal => 16,
            Workload::Compaction | Workload::Recovery => 30,
        }
    }
    fn op(self, i: u64) -> WOp {
        // A recovery continues the fixture another workload made.
        let seed = match self {
            Workload::Recovery => Workload::Compaction.code(),
            Workload::RecoveryNoWal => Workload::Rotation.code(),
            w => w.code(),
        };
        let this = match self {
            Workload::RecoveryNoWal => Workload::Rotation,
            w => w,
        };
        let mut rng = Rng::new(mix(0x5eed_0000 + seed, i));
        let idx = u32::try_from(rng.below(u64::from(self.keys()))).unwrap_or(0);
        if this == Workload::Rotation && i == 30 {
            return WOp::Put(idx, rng.bytes(5000));
        }
        if i % 6 == 5 {
            return WOp::Delete(idx);
        }
        let len = 60 + rng.below_usize(190);
        WOp::Put(idx, rng.bytes(len))
    }
}

/// The child: setup unarmed, then the counted part, killed at the target.
fn steps_child(dir: &Path, args: &[u64]) -> ! {
    let [workload, sync] = args[..] else {
        panic!("bad child args {args:?}")
    };
    let workload = Workload::of(workload);
    let target = std::env::var(TARGET_ENV).ok().and_then(|t| {
        let (kind, occurrence) = t.rsplit_once(' ')?;
        Some((kind.to_string(), occurrence.parse().ok()?))
    });
    let state = Arc::new(KillState {
        armed: AtomicBool::new(false),
        calls: AtomicU64::new(0),
        seen: std::sync::Mutex::new(BTreeMap::new()),
        target,
    });
    let opts = options(sync_of(sync), 4096).with_fs(Arc::new(KillFs(Arc::clone(&state))));
    let run = |db: &Engine, range: std::ops::Range<u64>| {
        for i in range {
            perform(db, 0, &workload.op(i));
            say(&format!("ACK 0 {i}"));
        }
    };
    let (setup, all) = workload.split();
    if workload.recovers() {
        state.armed.store(true, Ordering::SeqCst);
        let (db, _) = Engine::open(dir, opts).unwrap();
        say("OPENED");
        run(&db, setup..all);
        db.close().unwrap();
        say("DONE");
        std::process::exit(0)
    }
    let (mut db, _) = Engine::open(dir, opts.clone()).unwrap();
    run(&db, 0..setup);
    if workload == Workload::Compaction {
        // Close (which waits for the sealer) and reopen, so the counted calls
        // are the compaction's, in an order that does not vary from run to run.
        db.close().unwrap();
        db = Engine::open(dir, opts).unwrap().0;
    }
    state.armed.store(true, Ordering::SeqCst);
    if workload == Workload::Compaction {
        db.compact().unwrap();
        say("COMPACTED");
    }
    run(&db, setup..all);
    db.close().unwrap();
    say("DONE");
    std::process::exit(0)
}

/// The calls the dry run must make and the sweep must kill at.
fn required(workload: Workload) -> &'static [&'static str] {
    match workload {
        Workload::Rotation => &[
            // the spare
            "open_append spare",
            "set_len spare",
            "write spare",
            "allocate spare",
            "sync spare",
            // rotation
            "rename wal",
            "rename spare",
            // sealing: fsync, cut the zero tail, sync the directory
            "sync wal",
            "set_len wal",
            "sync_dir dir",
            // the hint
            "open_append hint.tmp",
            "write hint.tmp",
            "sync hint.tmp",
            "rename hint.tmp",
        ],
        Workload::RecoveryNoWal => &[
            "remove_file spare",
            // cutting the sealed segment's unused tail
            "open_append seg",
            "set_len seg",
            "sync seg",
            // creating wal.log
            "open_append wal",
            "write wal",
            "allocate wal",
            "sync wal",
            "sync_dir dir",
        ],
        Workload::Recovery => &[
            // rolling the compaction forward
            "remove_file seg",
            "remove_file hint",
            "remove_file manifest",
            // leftovers
            "remove_file spare",
            // cutting the torn tail of wal.log and allocating it again
            "open_append wal",
            "set_len wal",
            "allocate wal",
            "sync wal",
        ],
        Workload::Compaction => &[
            "open_append seg.tmp",
            "write seg.tmp",
            "sync seg.tmp",
            "rename seg.tmp",
            "write hint.tmp",
            "rename hint.tmp",
            "write manifest",
            "rename manifest",
            "remove_file seg",
            "remove_file hint",
            "remove_file manifest",
            "sync_dir dir",
        ],
    }
}

/// Every run starts from a copy of `fixture` (or an empty directory), whose
/// operations up to `acked_before` were acknowledged.
fn kill_at_each_step(
    test: &str,
    workload: Workload,
    sync_code: u64,
    fixture: Option<(&Path, u64)>,
) {
    let acked_before = fixture.map(|(_, a)| a);
    let fixture = fixture.map(|(f, _)| f);
    let code = workload.code();
    let fresh = || {
        let d = mem_tempdir();
        if let Some(f) = fixture {
            copy_dir(f, d.path());
        }
        d
    };
    let dry_dir = fresh();
    let dry = run_child(
        test,
        "steps",
        dry_dir.path(),
        &[code, sync_code],
        KillWhen::Never,
    );
    assert!(
        dry.status.success() && dry.has("DONE"),
        "dry run: {:?}, last lines {:?}",
        dry.status,
        dry.lines.iter().rev().take(5).collect::<Vec<_>>()
    );
    let steps: Vec<(String, u64)> = dry.lines.iter().filter_map(|l| parse_op(l)).collect();
    let made: BTreeSet<&str> = steps.iter().map(|(k, _)| k.as_str()).collect();
    for want in required(workload) {
        assert!(made.contains(want), "the dry run made no {want}: {steps:?}");
    }
    // Every step by default; the soak repeats the sweep (thread interleavings
    // differ from run to run).
    let sweeps = soak().unwrap_or(1);
    let mut killed_at: BTreeSet<String> = BTreeSet::new();
    let mut finished = 0u64;
    let mut unreached: BTreeMap<String, u64> = BTreeMap::new();
    for sweep in 0..sweeps {
        for (kind, occurrence) in &steps {
            let target = format!("{kind} {occurrence}");
            let context = format!(
                "{workload:?}, sync {sync_code}, killed before {kind} #{occurrence} \
                 ({} steps), sweep {sweep}",
                steps.len()
            );
            let dir = fresh();
            let run = run_child_env(
                test,
                "steps",
                dir.path(),
                &[code, sync_code],
                KillWhen::Never,
                &[(TARGET_ENV, &target)],
            );
            assert!(!run.timed_out, "child hung ({context})");
            let reached = run
                .lines
                .iter()
                .filter_map(|l| parse_op(l))
                .any(|(k, o)| k == *kind && o == *occurrence);
            if reached {
                assert!(run.killed(), "{:?} ({context})", run.status);
                killed_at.insert(kind.clone());
            } else {
                // This run made fewer calls of the kind than the dry run (a
                // periodic or background call that did not come this time).
                assert!(
                    run.status.success() && run.has("DONE"),
                    "child ended without reaching its target: {:?} ({context})",
                    run.status
                );
                finished += 1;
                *unreached.entry(target.clone()).or_insert(0) += 1;
            }
            let opts = || options(SyncMode::Never, 4096);
            let (db, report) = Engine::open(dir.path(), opts())
                .unwrap_or_else(|e| panic!("open after kill: {e} ({context})"));
            check_report_after_kill(&report, 1 << 20, &context);
            check_dir(dir.path(), &context);
            let mut model = Model::new();
            resolve(
                &db,
                &mut model,
                0,
                run.last_acks().get(&0).copied().max(acked_before),
                |i| workload.op(i),
                &context,
            );
            assert_eq!(db.stats().live_keys, model.len() as u64, "{context}");
            db.close().unwrap();
            let (db, report) = Engine::open(dir.path(), opts()).unwrap();
            check_clean_report(&report, &context);
            assert_eq!(contents(&db, b"", &context), model, "{context}");
            db.close().unwrap();
        }
    }
    let total = steps.len() as u64 * u64::from(sweeps);
    eprintln!(
        "{workload:?}, sync {sync_code}: {total} runs, {finished} ended before their target \
         ({unreached:?}), killed before {killed_at:?}"
    );
    // A call the background threads make or not depending on timing (say, a
    // spare asked for just before close) may not come in a run: tolerated,
    // as long as most targets are reached and every kind is killed at.
    assert!(
        finished <= total / 4,
        "{finished} of {total} runs ended before their target: {unreached:?}"
    );
    for want in required(workload) {
        assert!(
            killed_at.contains(*want),
            "no run was killed before {want}; killed before {killed_at:?}"
        );
    }
}

fn steps_test(test: &str, workload: Workload, sync_code: u64) {
    if let Some((_, dir, args)) = child_role() {
        steps_child(&dir, &args);
    }
    kill_at_each_step(test, workload, sync_code, None);
}

#[test]
fn rotation_killed_at_each_fs_step_sync_never() {
    steps_test(
        "crash_wal::rotation_killed_at_each_fs_step_sync_never",
        Workload::Rotation,
        0,
    );
}

#[test]
fn rotation_killed_at_each_fs_step_sync_always() {
    steps_test(
        "crash_wal::rotation_killed_at_each_fs_step_sync_always",
        Workload::Rotation,
        2,
    );
}

#[test]
fn compaction_killed_at_each_fs_step() {
    steps_test(
        "crash_wal::compaction_killed_at_each_fs_step",
        Workload::Compaction,
        0,
    );
}

/// Recovery is itself a sequence of changes to the directory: a kill in the
/// middle of one must leave a directory the next open still recovers.
#[test]
fn recovery_killed_at_each_fs_step() {
    const TEST: &str = "crash_wal::recovery_killed_at_each_fs_step";
    if let Some((_, dir, args)) = child_role() {
        steps_child(&dir, &args);
    }
    // A compaction killed after its outputs were installed and one input
    // retired: the next open must roll it forward.
    let fixture = mem_tempdir();
    let run = run_child_env(
        TEST,
        "steps",
        fixture.path(),
        &[Workload::Compaction.code(), 0],
        KillWhen::Never,
        &[(TARGET_ENV, "remove_file seg 2")],
    );
    assert!(run.killed(), "fixture child: {:?}", run.status);
    let files = names(fixture.path());
    assert!(files.iter().any(|f| f == "COMPACTION"), "{files:?}");
    // A torn group at the end of wal.log, and a spare left behind.
    let wal = fixture.path().join("wal.log");
    overwrite(&wal, data_len(&wal), &nonzero_garbage(9, 100));
    std::fs::write(fixture.path().join("00000000ffff0000.wal.tmp"), [1u8; 64]).unwrap();
    let acked = Workload::Compaction.split().0 - 1;
    kill_at_each_step(TEST, Workload::Recovery, 0, Some((fixture.path(), acked)));

    // A rotation killed between its renames.
    let fixture = mem_tempdir();
    let run = run_child_env(
        TEST,
        "steps",
        fixture.path(),
        &[Workload::Rotation.code(), 0],
        KillWhen::Never,
        &[(TARGET_ENV, "rename spare 1")],
    );
    assert!(run.killed(), "fixture child: {:?}", run.status);
    let files = names(fixture.path());
    assert!(
        !files.iter().any(|f| f == "wal.log") && files.iter().any(|f| f.ends_with(".wal.tmp")),
        "{files:?}"
    );
    let acked = run.last_acks().get(&0).copied().unwrap();
    kill_at_each_step(
        TEST,
        Workload::RecoveryNoWal,
        0,
        Some((fixture.path(), acked)),
    );
}

#[test]
fn sigkill_mid_copy_of_large_values_one_thread_sync_never() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_copy_of_large_values_one_thread_sync_never",
        0,
        1,
        Sizes::Large,
    );
}

#[test]
fn sigkill_mid_copy_of_large_values_two_threads_sync_always() {
    sigkill_rounds(
        "crash_wal::sigkill_mid_copy_of_large_values_two_threads_sync_always",
        2,
        2,
        Sizes::Large,
    );
}

// ---------------------------------------------------------------------------
// Found while compacting recovered directories (see `sigkill_rounds`).

/// The keys of the records of a segment file.
fn keys_in_segment(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = FILE_HEADER_LEN;
    let mut keys = Vec::new();
    while let Some(r) = bytes.get(at..).and_then(|b| record::decode(b).ok()) {
        if r.kind == RecordKind::Put {
            keys.push(r.key.to_vec());
        }
        at += r.encoded_len();
    }
    keys
}

#[test]
fn a_segment_between_two_kept_neighbours_with_adjacent_ids_can_be_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(SyncMode::Never, 4096).with_compaction_step_segments(16);
    let (db, _) = Engine::open(dir.path(), opts).unwrap();
    let mut model = Model::new();
    for i in 0..240u32 {
        let k = key_of(0, i);
        let v = vec![b'a'; 100];
        db.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    for i in (0..240u32).step_by(2) {
        db.delete(&key_of(0, i)).unwrap();
        model.remove(&key_of(0, i));
    }
    // Every segment is half dead: the outputs, full and wholly live but the
    // last, take consecutive ids above the newest input.
    db.compact().unwrap();
    let ids: BTreeSet<u64> = names(dir.path())
        .iter()
        .filter_map(|f| segment_id_of(f, ".seg"))
        .collect();
    let middle = *ids
        .iter()
        .find(|&&id| ids.contains(&(id - 1)) && ids.contains(&(id + 1)))
        .unwrap_or_else(|| panic!("no three consecutive outputs: {ids:x?}"));
    // Dead bytes in the middle one: a step of it alone, whose neighbours are
    // kept and whose ids leave no room for its output.
    let path = dir.path().join(format!("{middle:016x}.seg"));
    for k in keys_in_segment(&path).into_iter().take(3) {
        let v = b"newer".to_vec();
        db.put(&k, &v).unwrap();
        model.insert(k, v);
    }
    // The step of the middle segment alone is skipped, not the whole run.
    let compacted = db.compact();
    assert_eq!(contents(&db, b"", "after the second compaction"), model);
    assert!(
        compacted.is_ok(),
        "{compacted:?} (segments before: {ids:x?}, compacting {middle:#x})"
    );
}
