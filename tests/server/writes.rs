//! The write path as HTTP sees it: handlers await the engine's writer, so
//! concurrent requests share an fsync (group commit); an I/O fault latches
//! the engine read-only and writes answer 503.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvstore::engine::fs::{AppendFile, FaultyFs, Fs, FsOp, MmapRaw, StdFs};
use kvstore::engine::{Options, SyncMode};
use kvstore::server::ServerConfig;

use crate::common::start_on;

/// The real file system with an fsync that takes 20 ms, like a slow disk.
#[derive(Debug)]
struct SlowSync;

#[derive(Debug)]
struct SlowFile(Box<dyn AppendFile>);

impl AppendFile for SlowFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(20));
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

impl Fs for SlowSync {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(SlowFile(StdFs.open_append(path)?)))
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

#[actix_web::test]
async fn sixty_four_concurrent_puts_share_a_few_fsyncs() {
    let s = start_on(
        ServerConfig::default(),
        Options::default()
            .with_sync(SyncMode::Always)
            .with_fs(Arc::new(SlowSync)),
    )
    .await;
    let before = s.state.engine().stats().fsyncs;
    let puts = (0..64).map(|i| {
        let s = &s;
        async move { s.put(&format!("/kv/k{i}"), r#"{"value": 1}"#).await.status }
    });
    // One thread drives all 64: a handler that blocked on its fsync would
    // serialize them into 64 fsyncs.
    let statuses = futures::future::join_all(puts).await;
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
    let fsyncs = s.state.engine().stats().fsyncs - before;
    assert!(fsyncs <= 8, "64 PUTs took {fsyncs} fsyncs");
    assert_eq!(s.get("/stats").await.json()["keys"], 64);
}

#[actix_web::test]
async fn after_a_failed_fsync_writes_are_503_and_reads_still_work() {
    let fs = FaultyFs::new();
    let s = start_on(
        ServerConfig::default(),
        Options::default()
            .with_sync(SyncMode::Always)
            .with_fs(Arc::new(fs.clone())),
    )
    .await;
    s.set("a", "1").await;
    fs.fail_from(FsOp::Sync, 1);
    let r = s.put("/kv/b", r#"{"value": 2}"#).await;
    assert!(r.status == 500 || r.status == 503, "{r:?}");
    let msg = s.put("/kv/c", r#"{"value": 3}"#).await.assert_error(503);
    assert!(msg.contains("read-only"), "{msg}");
    s.post(
        "/kv/batch",
        r#"{"operations":[{"op":"set","key":"d","value":1}]}"#,
    )
    .await
    .assert_error(503);
    s.delete("/kv/a").await.assert_error(503);
    s.get("/kv/a").await.assert_ok(r#"{"key":"a","value":1}"#);
    assert_eq!(s.get("/stats").await.json()["read_only"], true);
}
