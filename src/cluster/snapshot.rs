//! Snapshots of the state engine: its point-in-time file set
//! ([`Engine::backup`]) sent as one framed byte stream, installed by
//! swapping directories.
//!
//! Stream: per file `name len (u16 BE) | name | len (u64 BE) | crc32 (u32 BE)
//! | bytes`. The snapshot's log id and membership are read from the backup
//! itself (the reserved keys every applied batch updates), so they match
//! its contents exactly even while entries keep being applied.
//!
//! Install: the files are written to `<data-dir>/state.incoming` and
//! fsynced; the running engine is closed; `state` is renamed to `state.old`,
//! `state.incoming` to `state`, the directory fsynced; the new engine is
//! opened and swapped into the server's slot; `state.old` is removed. At
//! startup ([`recover_layout`]) a missing `state` beside a complete
//! `state.incoming` (it is only complete before `state` is moved away)
//! finishes the swap, and leftovers are removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{
    AnyError, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use tokio::sync::Mutex;

use super::Counters;
use super::state_machine::{APPLIED, MEMBERSHIP};
use super::types::{NodeId, TypeConfig};
use crate::engine::{Engine, Options};
use crate::server::state::EngineSlot;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// A snapshot kept: its meta and its bytes.
type Held = (SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>);

fn err(what: &str, e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::error(format!("{what}: {e}"))).into()
}

/// Where a node keeps its snapshots.
#[derive(Debug)]
pub struct Store {
    data_dir: PathBuf,
    options: Options,
    counters: Arc<Counters>,
    seq: AtomicU64,
    current: Mutex<Option<Held>>,
}

/// Finishes or rolls back a snapshot install cut short by a crash (see the
/// module docs). Called before the state engine is opened.
pub fn recover_layout(data_dir: &Path) -> std::io::Result<()> {
    let state = data_dir.join("state");
    let incoming = data_dir.join("state.incoming");
    let old = data_dir.join("state.old");
    if !state.exists() && incoming.exists() {
        std::fs::rename(&incoming, &state)?;
        sync_dir(data_dir)?;
    }
    for leftover in [incoming, old, data_dir.join("snapshot.build")] {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Store {
    /// The store of the node whose data directory is `data_dir`; `options`
    /// reopen the state engine after an install.
    pub fn new(data_dir: PathBuf, options: Options, counters: Arc<Counters>) -> Store {
        Store {
            data_dir,
            options,
            counters,
            seq: AtomicU64::new(0),
            current: Mutex::new(None),
        }
    }

    /// Builds a snapshot of `engine` and keeps it as the current one.
    pub async fn build(&self, engine: &Engine) -> StorageResult<Snapshot<TypeConfig>> {
        let dir = self.data_dir.join("snapshot.build");
        let engine = engine.clone();
        let options = self.options.clone();
        let built = tokio::task::spawn_blocking(move || frame_backup(&engine, &dir, options))
            .await
            .map_err(|e| err("snapshot task", e))??;
        let (data, last, membership) = built;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}-{seq}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index)
            ),
        };
        *self.current.lock().await = Some((meta.clone(), data.clone()));
        self.counters
            .snapshots_built
            .fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(std::io::Cursor::new(data)),
        })
    }

    /// Installs the snapshot `data` as the engine of `slot`.
    pub async fn install(
        &self,
        slot: &EngineSlot,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        data: Vec<u8>,
    ) -> StorageResult<()> {
        let data_dir = self.data_dir.clone();
        let options = self.options.clone();
        let slot2 = slot.clone();
        let bytes = data.clone();
        tokio::task::spawn_blocking(move || swap_in(&data_dir, &slot2, options, &bytes))
            .await
            .map_err(|e| err("install task", e))??;
        *self.current.lock().await = Some((meta.clone(), data));
        self.counters
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The last snapshot built or installed since this node started.
    pub async fn current(&self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let held = self.current.lock().await;
        Ok(held.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(std::io::Cursor::new(data.clone())),
        }))
    }
}

type Framed = (
    Vec<u8>,
    Option<LogId<NodeId>>,
    StoredMembership<NodeId, openraft::BasicNode>,
);

fn frame_backup(engine: &Engine, dir: &Path, options: Options) -> StorageResult<Framed> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| err("clearing the snapshot dir", e))?;
    }
    // The state engine is not synced per entry; the log is purged only up
    // to a snapshot, so what the snapshot covers is made durable in the
    // engine itself first: a power loss never leaves it behind a purge.
    engine
        .sync()
        .map_err(|e| err("syncing the state engine", e))?;
    engine.backup(dir).map_err(|e| err("backup", e))?;
    let framed = (|| {
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for ent in std::fs::read_dir(dir).map_err(|e| err("listing the backup", e))? {
            let ent = ent.map_err(|e| err("listing the backup", e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name != "LOCK" && ent.file_type().is_ok_and(|t| t.is_file()) {
                names.push((name, ent.path()));
            }
        }
        names.sort();
        let mut out = Vec::new();
        for (name, path) in names {
            let bytes = std::fs::read(&path).map_err(|e| err("reading the backup", e))?;
            let name_len = u16::try_from(name.len()).map_err(|e| err("file name", e))?;
            out.extend_from_slice(&name_len.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(&crc32fast::hash(&bytes).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        let (copy, _) =
            Engine::open_read_only(dir, options).map_err(|e| err("opening the backup", e))?;
        let last = read_json(&copy, APPLIED)?;
        let membership = read_json(&copy, MEMBERSHIP)?.unwrap_or_default();
        drop(copy);
        Ok((out, last, membership))
    })();
    let _ = std::fs::remove_dir_all(dir);
    framed
}

fn read_json<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    key: &[u8],
) -> StorageResult<Option<T>> {
    match engine.get(key).map_err(|e| err("reading the backup", e))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| err("decoding the backup", e)),
    }
}

/// Writes the framed files into `into` (created), each fsynced.
fn unframe(mut data: &[u8], into: &Path) -> StorageResult<()> {
    std::fs::create_dir_all(into).map_err(|e| err("creating the staging dir", e))?;
    let bad = || err("snapshot stream", "truncated or damaged");
    while !data.is_empty() {
        let (len, rest) = data.split_first_chunk::<2>().ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (name, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
        let name = std::str::from_utf8(name).map_err(|_| bad())?;
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(bad());
        }
        let (size, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
        let size = usize::try_from(u64::from_be_bytes(*size)).map_err(|_| bad())?;
        let (crc, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let (bytes, rest) = rest.split_at_checked(size).ok_or_else(bad)?;
        if crc32fast::hash(bytes) != u32::from_be_bytes(*crc) {
            return Err(err("snapshot stream", format!("{name}: checksum mismatch")));
        }
        let mut f =
            std::fs::File::create(into.join(name)).map_err(|e| err("writing the snapshot", e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| err("writing the snapshot", e))?;
        data = rest;
    }
    sync_dir(into).map_err(|e| err("syncing the staging dir", e))
}

fn swap_in(data_dir: &Path, slot: &EngineSlot, options: Options, data: &[u8]) -> StorageResult<()> {
    let state = data_dir.join("state");
    let incoming = data_dir.join("state.incoming");
    let old = data_dir.join("state.old");
    for stale in [&incoming, &old] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| err("clearing the staging dir", e))?;
        }
    }
    unframe(data, &incoming)?;
    // Requests holding the old engine see it closed (503) until the swap.
    slot.current()
        .close()
        .map_err(|e| err("closing the state engine", e))?;
    std::fs::rename(&state, &old).map_err(|e| err("moving the old state", e))?;
    std::fs::rename(&incoming, &state).map_err(|e| err("moving the new state in", e))?;
    sync_dir(data_dir).map_err(|e| err("syncing the data dir", e))?;
    let (engine, _) = Engine::open(&state, options).map_err(|e| err("opening the new state", e))?;
    slot.swap(engine);
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
