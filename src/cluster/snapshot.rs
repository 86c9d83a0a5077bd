//! Snapshots of the state engine.

use std::path::PathBuf;
use std::sync::Arc;

use super::Counters;
use openraft::{AnyError, Snapshot, SnapshotMeta, StorageError, StorageIOError};
use tokio::sync::Mutex;

use super::types::{NodeId, TypeConfig};
use crate::engine::Engine;
use crate::server::state::EngineSlot;

/// A snapshot kept: its meta and its bytes.
type Held = (SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>);

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Where a node keeps its snapshots.
#[derive(Debug)]
pub struct Store {
    #[allow(dead_code, reason = "snapshots land with Engine::backup")]
    data_dir: PathBuf,
    #[allow(dead_code, reason = "snapshots land with Engine::backup")]
    counters: Arc<Counters>,
    current: Mutex<Option<Held>>,
}

impl Store {
    /// The store of the node whose data directory is `data_dir`.
    pub fn new(data_dir: PathBuf, counters: Arc<Counters>) -> Store {
        Store {
            data_dir,
            counters,
            current: Mutex::new(None),
        }
    }

    /// Builds a snapshot of `engine`.
    pub async fn build(&self, _engine: &Engine) -> StorageResult<Snapshot<TypeConfig>> {
        Err(
            StorageIOError::read_state_machine(AnyError::error("snapshots are not built yet"))
                .into(),
        )
    }

    /// Installs the snapshot `data` into the engine of `slot`.
    pub async fn install(
        &self,
        _slot: &EngineSlot,
        _meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        _data: Vec<u8>,
    ) -> StorageResult<()> {
        Err(
            StorageIOError::write_state_machine(AnyError::error("snapshots are not installed yet"))
                .into(),
        )
    }

    /// The last snapshot built or installed.
    pub async fn current(&self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let held = self.current.lock().await;
        Ok(held.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(std::io::Cursor::new(data.clone())),
        }))
    }
}
