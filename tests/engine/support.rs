//! The one helper module of the engine tests: opening with test options
//! (tiny segments, a fault-injecting file system), surgery on the files of a
//! closed data directory, and re-executing this test binary as a child process.
#![allow(
    dead_code,
    reason = "each scenario module uses a subset; removed once all are in"
)]

use std::collections::hash_map::RandomState;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use kvstore::engine::fs::FaultyFs;
use kvstore::engine::{Engine, Options, RecoveryReport, SyncMode};

/// Options with tiny segments so rotation happens constantly.
pub fn tiny() -> Options {
    Options::default()
        .with_segment_bytes(4096)
        .with_sync(SyncMode::Never)
        .with_background_compaction(false)
}

/// Opens `dir` with `opts`; a test's own setup is expected to open.
pub fn open(dir: &Path, opts: Options) -> (Engine, RecoveryReport) {
    Engine::open(dir, opts).unwrap()
}

/// Opens `dir` with `opts` on a fresh [`FaultyFs`], returned to arm faults with.
pub fn open_faulty(dir: &Path, opts: Options) -> (Engine, FaultyFs) {
    let fs = FaultyFs::new();
    let (db, _) = open(dir, opts.with_fs(Arc::new(fs.clone())));
    (db, fs)
}

/// Names of the files in `dir` ending with `suffix`, sorted (segment ids sort
/// by name because they are fixed-width hex).
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    out.sort();
    out
}

/// Sealed segment files, oldest first.
pub fn sealed_segments(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, ".seg")
}

/// Every regular file of `dir` except the lock file, sorted.
pub fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "LOCK"))
        .collect();
    out.sort();
    out
}

/// The hint file beside segment `seg`.
pub fn hint_of(seg: &Path) -> PathBuf {
    seg.with_extension("hint")
}

/// Cuts `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Overwrites the bytes of `path` at `offset` with `bytes`.
pub fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Inverts every bit of the byte of `path` at `offset`.
pub fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Appends `bytes` to `path`.
pub fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Copies every file of `from` (not the lock) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in data_files(from) {
        std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
    }
}

/// A fresh random number (seeded by the OS through `RandomState`); tests print
/// it on failure so a run can be understood.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// A command that runs exactly the test `name` (its full path, e.g.
/// `crash::some_test`) of this binary, with its output uncaptured.
pub fn rerun_self(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    cmd
}

/// Spawns `cmd`.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.spawn().unwrap()
}

/// Proptest cases: `default`, or `PROPTEST_CASES` when set (for long hunts).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A temp dir in memory (`/dev/shm`) when there is one: for tests that rotate
/// constantly and need no durability, so fsyncs cost nothing and the shared
/// disk's load does not set their pace.
pub fn mem_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

/// Bytes of a segment file that hold its header and records: `wal.log` is
/// preallocated while open, so its file length says nothing about its data.
pub fn data_len(path: &Path) -> u64 {
    use kvstore::engine::__test_support::{FILE_HEADER_LEN, record};
    let bytes = std::fs::read(path).unwrap();
    if bytes.len() < FILE_HEADER_LEN {
        return bytes.len() as u64;
    }
    let mut at = FILE_HEADER_LEN;
    while let Ok(r) = record::decode(&bytes[at..]) {
        at += r.encoded_len();
    }
    at as u64
}
