//! The direct [`Target`]: the engine opened on a data directory no server
//! holds (`--data-dir`). Answers exactly what the server would: values are
//! the stored JSON bytes, a TTL counts from the engine's clock as a `PUT`'s
//! would, batch results are the `/kv/batch` result objects.
//!
//! Invariant: the engine's lock file makes a directory held by a server
//! refuse to open ([`ClientError::Held`]), so the CLI never writes under a
//! running server.

use std::path::{Path, PathBuf};

use super::{BatchOp, ClientError, Page, Target, Write};
use crate::cli::CliError;
use crate::engine::{self, Batch, Engine, OpResult, Options, Prior};
use crate::server::body::Out;
use crate::server::state::expiry_after;

/// An open engine.
#[derive(Debug)]
pub struct Direct {
    engine: Engine,
    dir: PathBuf,
}

impl Direct {
    /// Opens an existing data directory.
    pub fn open(dir: &Path) -> Result<Direct, CliError> {
        if !dir.is_dir() {
            return Err(CliError::Io {
                action: "opening data directory",
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            });
        }
        let opts = Options::default().with_background_compaction(false);
        match Engine::open(dir, opts) {
            Ok((engine, _report)) => Ok(Direct {
                engine,
                dir: dir.to_path_buf(),
            }),
            Err(engine::Error::Locked { path }) => Err(ClientError::Held { path }.into()),
            Err(source) => Err(CliError::Engine {
                path: dir.to_path_buf(),
                source,
            }),
        }
    }

    fn err(&self, source: engine::Error) -> ClientError {
        ClientError::Engine {
            path: self.dir.clone(),
            source,
        }
    }

    fn text(key: &str, bytes: Vec<u8>) -> Result<String, ClientError> {
        String::from_utf8(bytes).map_err(|_| ClientError::NotJson {
            key: key.to_string(),
        })
    }
}

impl Target for Direct {
    fn get(&self, key: &str) -> Result<Option<String>, ClientError> {
        match self.engine.get(key.as_bytes()).map_err(|e| self.err(e))? {
            Some(bytes) => Self::text(key, bytes).map(Some),
            None => Ok(None),
        }
    }

    fn put(&self, key: &str, write: &Write) -> Result<bool, ClientError> {
        let expiry = expiry_after(self.engine.now_ms(), write.ttl);
        let prior = self
            .engine
            .put_with_expiry(key.as_bytes(), write.value.as_bytes(), expiry)
            .map_err(|e| self.err(e))?;
        Ok(prior == Prior::Absent)
    }

    fn delete(&self, key: &str) -> Result<bool, ClientError> {
        let prior = self
            .engine
            .delete(key.as_bytes())
            .map_err(|e| self.err(e))?;
        Ok(prior == Prior::Live)
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page, ClientError> {
        // One more than asked says whether keys remain.
        let mut raw = self.engine.scan_prefix(
            prefix.as_bytes(),
            after.map(str::as_bytes),
            limit.saturating_add(1),
        );
        let more = raw.len() > limit;
        raw.truncate(limit);
        let keys = raw
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect();
        Ok(Page { keys, more })
    }

    fn batch(&self, ops: &[BatchOp]) -> Result<Vec<String>, ClientError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.engine.now_ms();
        let mut batch = Batch::new();
        for op in ops {
            match op {
                BatchOp::Set { key, write } => {
                    batch.put_with_expiry(
                        key.as_bytes(),
                        write.value.as_bytes(),
                        expiry_after(now, write.ttl),
                    );
                }
                BatchOp::Get { key } => {
                    batch.get(key.as_bytes());
                }
                BatchOp::Delete { key } => {
                    batch.delete(key.as_bytes());
                }
            }
        }
        let results = self.engine.apply(batch).map_err(|e| self.err(e))?;
        ops.iter()
            .zip(&results)
            .map(|(op, result)| {
                let key = match op {
                    BatchOp::Set { key, .. } | BatchOp::Get { key } | BatchOp::Delete { key } => {
                        key
                    }
                };
                result_json(key, result)
            })
            .collect()
    }

    fn stats(&self) -> Result<String, ClientError> {
        let s = self.engine.stats();
        // The server's `/stats` fields that mean something without a server.
        Ok(serde_json::json!({
            "keys": s.live_keys,
            "size_bytes": s.live_value_bytes,
            "total_keys": s.live_keys,
            "segments": s.segments,
            "disk_bytes": s.disk_bytes,
            "dead_bytes": s.dead_bytes,
            "fsyncs": s.fsyncs,
            "writes": s.writes,
            "compactions": s.compactions,
            "reclaimed_bytes": s.reclaimed_bytes,
            "last_compaction_ms": s.last_compaction_ms,
            "read_only": s.read_only,
        })
        .to_string())
    }

    fn close(self: Box<Self>) -> Result<(), ClientError> {
        let dir = self.dir;
        self.engine
            .close()
            .map_err(|source| ClientError::Engine { path: dir, source })
    }
}

/// One `/kv/batch` result object, as the server writes it.
fn result_json(key: &str, result: &OpResult) -> Result<String, ClientError> {
    let mut out = Out::with_capacity(64);
    match result {
        OpResult::Put(Prior::Absent) => out.raw(b"{\"success\":true,\"created\":true}"),
        OpResult::Put(Prior::Live) => out.raw(b"{\"success\":true,\"created\":false}"),
        OpResult::Delete(Prior::Live) => out.raw(b"{\"success\":true,\"deleted\":true}"),
        OpResult::Get(Some(value)) => out.key_value(key.as_bytes(), value),
        OpResult::Delete(Prior::Absent) | OpResult::Get(None) => {
            out.raw(b"{\"error\":\"key not found\"}")
        }
    };
    Direct::text(key, out.into_bytes())
}
