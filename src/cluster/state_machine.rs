//! The state machine is the data engine itself. Applying an entry is ONE
//! engine batch: the client's operations plus, under reserved keys, the
//! applied log id (and for membership entries the membership), so after a
//! crash the engine's own all-or-nothing batches say exactly which entries it
//! holds and openraft replays the rest from the log: nothing twice, nothing
//! skipped.
//!
//! Reserved keys start with 0xFF, which no UTF-8 key can (HTTP keys must be
//! UTF-8): listings and stats of a cluster node hide them.
//!
//! Retries: a command with a request id leaves `0xFF r <id>` → its reply in
//! the same batch, and the id in a ring slot `0xFF s <index % RING>`; the
//! entry that reuses a slot deletes the id it held. A request id is so
//! remembered for the next [`RING`] log entries on every node alike (no
//! clock involved), and a retry within them gets the first reply and writes
//! nothing.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use super::snapshot;
use super::types::{
    Action, Command, NodeId, Reply, TypeConfig, WireOp, WireResult, batch_of, wire_result,
};
use crate::engine::{Batch, Engine, Expiry, OpResult};
use crate::server::state::EngineSlot;

/// The first byte of every reserved key.
pub const RESERVED: u8 = 0xFF;
/// The applied log id (JSON).
pub const APPLIED: &[u8] = b"\xFFapplied";
/// The last applied membership (JSON).
pub const MEMBERSHIP: &[u8] = b"\xFFmembership";
const REQUEST: &[u8] = b"\xFFr";
const SLOT: &[u8] = b"\xFFs";
/// Log entries a request id is remembered for.
pub const RING: u64 = 1024;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io<E: std::error::Error + 'static>(e: &E) -> AnyError {
    AnyError::new(e)
}

fn key_with(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// The state machine over the engine in `slot` (the one the HTTP server reads).
#[derive(Debug, Clone)]
pub struct StateMachine {
    slot: EngineSlot,
    applied_index: Arc<AtomicU64>,
    snapshots: Arc<snapshot::Store>,
}

impl StateMachine {
    /// The state machine over `slot`; snapshots kept by `snapshots`.
    pub fn new(slot: EngineSlot, snapshots: Arc<snapshot::Store>) -> StorageResult<StateMachine> {
        let sm = StateMachine {
            slot,
            applied_index: Arc::new(AtomicU64::new(0)),
            snapshots,
        };
        let applied: Option<LogId<NodeId>> = sm.read_json(APPLIED)?;
        sm.applied_index
            .store(applied.map_or(0, |l| l.index), Ordering::Relaxed);
        Ok(sm)
    }

    /// The index of the last applied entry (0 before any).
    pub fn applied_index(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.applied_index)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        read_json(&self.slot.current(), key)
    }

    /// Applies one entry's command as one batch; returns its reply.
    fn apply_command(
        engine: &Engine,
        log_id: &LogId<NodeId>,
        cmd: &Command,
        batch: &mut Batch,
    ) -> StorageResult<(Reply, Option<usize>)> {
        if let Some(id) = &cmd.request_id
            && let Some(reply) = read_json::<Reply>(engine, &key_with(REQUEST, id.as_bytes()))?
        {
            return Ok((reply, None));
        }
        let read = |key: &str| {
            engine
                .get(key.as_bytes())
                .map_err(|e| StorageError::from(StorageIOError::read_state_machine(io(&e))))
        };
        let (reply, ops) = match &cmd.action {
            Action::Conditional {
                key,
                value,
                expiry,
                if_live,
            } => {
                let live = read(key)?.is_some();
                let holds = live == *if_live;
                if holds {
                    batch.put_with_expiry(
                        key.as_bytes(),
                        value.as_bytes(),
                        Expiry::from_raw(*expiry),
                    );
                }
                (Reply::Conditional(holds), None)
            }
            Action::Batch(ops) => {
                *batch = batch_of(ops);
                // With a request id the reply is stored in this same batch,
                // so it is worked out before the batch is written: each op
                // against the engine and the batch's own earlier writes.
                let reply = match cmd.request_id {
                    Some(_) => Some(Reply::Results(predict(ops, engine.now_ms(), read)?)),
                    None => None,
                };
                (reply.unwrap_or_default(), Some(ops.len()))
            }
        };
        if let Some(id) = &cmd.request_id {
            let slot = key_with(SLOT, &(log_id.index % RING).to_be_bytes());
            if let Some(old) = engine
                .get(&slot)
                .map_err(|e| StorageIOError::read_state_machine(io(&e)))?
            {
                batch.delete(&key_with(REQUEST, &old));
            }
            batch.put(&slot, id.as_bytes());
            let json =
                serde_json::to_vec(&reply).map_err(|e| StorageIOError::apply(*log_id, io(&e)))?;
            batch.put(&key_with(REQUEST, id.as_bytes()), &json);
        }
        Ok((reply, ops))
    }
}

/// The results `ops` will have when applied now, read through `read`.
fn predict(
    ops: &[WireOp],
    now_ms: u64,
    read: impl Fn(&str) -> StorageResult<Option<Vec<u8>>>,
) -> StorageResult<Vec<WireResult>> {
    let mut overlay: HashMap<&str, Option<&str>> = HashMap::new();
    let mut out = Vec::with_capacity(ops.len());
    let current =
        |key: &str, overlay: &HashMap<&str, Option<&str>>| -> StorageResult<Option<String>> {
            match overlay.get(key) {
                Some(v) => Ok(v.map(str::to_string)),
                None => Ok(read(key)?.map(|v| String::from_utf8_lossy(&v).into_owned())),
            }
        };
    for op in ops {
        match op {
            WireOp::Put { key, value, expiry } => {
                let live = current(key, &overlay)?.is_some();
                out.push(WireResult::Put(live));
                let expired = *expiry != 0 && *expiry <= now_ms;
                overlay.insert(key, (!expired).then_some(value.as_str()));
            }
            WireOp::Delete { key } => {
                let live = current(key, &overlay)?.is_some();
                out.push(WireResult::Delete(live));
                overlay.insert(key, None);
            }
            WireOp::Get { key } => out.push(WireResult::Get(current(key, &overlay)?)),
        }
    }
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    key: &[u8],
) -> StorageResult<Option<T>> {
    match engine
        .get(key)
        .map_err(|e| StorageIOError::read_state_machine(io(&e)))?
    {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| StorageIOError::read_state_machine(io(&e)).into()),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let engine = self.slot.current();
        self.snapshots.build(&engine).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, openraft::BasicNode>,
    )> {
        let applied = self.read_json(APPLIED)?;
        let membership = self.read_json(MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Reply>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let engine = self.slot.current();
        let mut replies = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let mut batch = Batch::new();
            let (reply, user_ops) = match &entry.payload {
                EntryPayload::Blank => (Reply::None, None),
                EntryPayload::Normal(cmd) => {
                    Self::apply_command(&engine, &log_id, cmd, &mut batch)?
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(log_id), m.clone());
                    let json = serde_json::to_vec(&stored)
                        .map_err(|e| StorageIOError::apply(log_id, io(&e)))?;
                    batch.put(MEMBERSHIP, &json);
                    (Reply::None, None)
                }
            };
            let json =
                serde_json::to_vec(&log_id).map_err(|e| StorageIOError::apply(log_id, io(&e)))?;
            batch.put(APPLIED, &json);
            // The state engine is not fsynced per entry: the Raft log is, on a
            // majority, before the entry is applied; after a crash the engine
            // holds a prefix of its batches and the log replays the rest.
            let results: Vec<OpResult> = engine
                .apply(batch)
                .map_err(|e| StorageIOError::apply(log_id, io(&e)))?;
            let reply = match (reply, user_ops) {
                (Reply::None, Some(n)) => {
                    Reply::Results(results.iter().take(n).map(wire_result).collect())
                }
                (reply, _) => reply,
            };
            self.applied_index.store(log_id.index, Ordering::Relaxed);
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        self.snapshots
            .install(&self.slot, meta, snapshot.into_inner())
            .await?;
        let applied: Option<LogId<NodeId>> = self.read_json(APPLIED)?;
        self.applied_index
            .store(applied.map_or(0, |l| l.index), Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.snapshots.current().await
    }
}
