//! kvstore: a Bitcask-style log-structured key-value store.
//!
//! - [`engine`]: the embeddable storage engine — append-only, CRC-checked segment
//!   files, an in-memory ordered keydir, group commit, crash recovery, TTL,
//!   atomic batches, prefix scans, compaction. No HTTP, no async runtime needed.
//! - `legacy` (feature `json-lines`, on by default): the decoder that migrates the
//!   reference implementations' JSON-lines `wal.log`; the only JSON outside the server.
//! - `server` (feature `server`, on by default): the HTTP JSON API over actix-web.
//!   The `kvstore` command line (serve, inspect, verify, compact, export, import)
//!   is the binary's own and no part of the library.
//!
//! With `default-features = false` the library is the engine alone: no JSON, no
//! HTTP, no async runtime.
//!
//! ```
//! # fn main() -> Result<(), kvstore::engine::Error> {
//! use kvstore::engine::{Batch, Engine, OpResult, SyncMode};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let (db, _report) = Engine::builder(dir.path()).sync(SyncMode::Always).open()?;
//! db.put(b"user:1", b"ada")?;
//! let mut batch = Batch::new();
//! batch.put(b"user:2", b"grace").get(b"user:2");
//! let results = db.apply(batch)?;
//! assert_eq!(results[1], OpResult::Get(Some(b"grace".to_vec())));
//! assert_eq!(db.scan_prefix(b"user:", None, 10).len(), 2);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "unit tests fail loudly"))]

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod engine;
#[cfg(any(feature = "server", feature = "json-lines"))]
mod json;
#[cfg(feature = "json-lines")]
pub mod legacy;
#[cfg(feature = "server")]
pub mod server;
