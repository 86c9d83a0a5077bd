//! kvstore: a Bitcask-style log-structured key-value store.
//!
//! - [`engine`]: the embeddable storage engine — append-only, CRC-checked segment
//!   files, an in-memory ordered keydir, group commit, crash recovery, TTL,
//!   atomic batches, prefix scans, compaction. No HTTP, no async runtime needed.
//! - `server` (feature `server`, on by default): the HTTP JSON API over actix-web;
//!   `cli`: the `kvstore` command line (serve, inspect, verify, compact, export, import).
//!
//! ```
//! # fn main() -> Result<(), kvstore::engine::Error> {
//! use kvstore::engine::{Batch, Engine, OpResult, Options};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let (db, _report) = Engine::open(dir.path(), Options::default())?;
//! db.put(b"user:1", b"ada")?;
//! let mut batch = Batch::new();
//! batch.put(b"user:2", b"grace").get(b"user:2");
//! let results = db.apply(batch)?;
//! assert_eq!(results[1], OpResult::Get(Some(b"grace".to_vec())));
//! assert_eq!(db.scan_prefix(b"user:", None, 10).len(), 2);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, reason = "unit tests fail loudly"))]

#[cfg(feature = "server")]
pub mod cli;
pub mod engine;
pub mod json;
pub mod legacy;
#[cfg(feature = "server")]
pub mod server;
