//! The Raft log in an engine of its own (`<data-dir>/raft/`), opened with
//! `SyncMode::Always`, so its group commit makes every append durable before
//! openraft hears of it. Only the committed log id is saved without waiting
//! for its fsync (see `save_committed`).
//!
//! Keys: `L` + the big-endian index for entries (so the engine's key order is
//! log order), and reserved keys starting with 0xFF for the vote, the
//! committed log id and the last purged log id. Values are the JSON of each.
//! Truncation and purge are one atomic engine batch each (deletes, plus the
//! new purged id), so a crash leaves the log before or after, never a hole.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};

use super::types::{NodeId, TypeConfig};
use crate::engine::{Batch, Engine};

const ENTRY: u8 = b'L';
const VOTE: &[u8] = b"\xFFvote";
const COMMITTED: &[u8] = b"\xFFcommitted";
const PURGED: &[u8] = b"\xFFpurged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ENTRY;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn index_of(key: &[u8]) -> Option<u64> {
    match key {
        [ENTRY, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

fn io<E: std::error::Error + 'static>(e: &E) -> AnyError {
    AnyError::new(e)
}

/// What the store keeps in memory: the ends of the log.
#[derive(Debug, Default)]
struct Ends {
    last: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
}

/// The log store; clones share the engine and are the log readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    engine: Engine,
    ends: Arc<Mutex<Ends>>,
    committed_index: Arc<AtomicU64>,
}

impl LogStore {
    /// The store over the open log engine, its ends read back from it.
    pub fn new(engine: Engine) -> StorageResult<LogStore> {
        let purged: Option<LogId<NodeId>> = read_json(&engine, PURGED)?;
        let mut last = None;
        let mut iter = engine.range::<&[u8]>((
            Bound::Included(&[ENTRY][..]),
            Bound::Excluded(&[ENTRY + 1][..]),
        ));
        // The last entry is the greatest key of the `L` range; the log is
        // bounded by snapshots and purges, so one pass at open is cheap.
        for pair in &mut iter {
            let pair = pair.map_err(|e| StorageIOError::read_logs(io(&e)))?;
            last = Some(pair.value().to_vec());
        }
        let last = match last {
            Some(v) => Some(decode_entry(&v)?.log_id),
            None => purged,
        };
        let committed: Option<LogId<NodeId>> = read_json(&engine, COMMITTED)?;
        Ok(LogStore {
            engine,
            ends: Arc::new(Mutex::new(Ends { last, purged })),
            committed_index: Arc::new(AtomicU64::new(committed.map_or(0, |c| c.index))),
        })
    }

    /// The last committed index openraft saved (0 before any).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed_index)
    }

    /// The log's engine (closed by the node at shutdown).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn ends(&self) -> std::sync::MutexGuard<'_, Ends> {
        self.ends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn write(&self, batch: Batch) -> Result<(), crate::engine::Error> {
        self.engine.submit(batch).await.map(|_| ())
    }

    /// Indexes present from `from` on (ascending).
    fn indexes_from(&self, from: u64) -> StorageResult<Vec<u64>> {
        let start = entry_key(from);
        let mut out = Vec::new();
        for pair in self.engine.range::<&[u8]>((
            Bound::Included(&start[..]),
            Bound::Excluded(&[ENTRY + 1][..]),
        )) {
            let pair = pair.map_err(|e| StorageIOError::read_logs(io(&e)))?;
            if let Some(i) = index_of(pair.key()) {
                out.push(i);
            }
        }
        Ok(out)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    key: &[u8],
) -> StorageResult<Option<T>> {
    match engine.get(key).map_err(|e| StorageIOError::read(io(&e)))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| StorageIOError::read(io(&e)).into()),
    }
}

fn decode_entry(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
    serde_json::from_slice(bytes).map_err(|e| StorageIOError::read_logs(io(&e)).into())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let from = entry_key(start);
        for pair in self.engine.range::<&[u8]>((
            Bound::Included(&from[..]),
            Bound::Excluded(&[ENTRY + 1][..]),
        )) {
            let pair = pair.map_err(|e| StorageIOError::read_logs(io(&e)))?;
            let Some(index) = index_of(pair.key()) else {
                continue;
            };
            if !range.contains(&index) {
                break;
            }
            out.push(decode_entry(pair.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let ends = self.ends();
        Ok(LogState {
            last_purged_log_id: ends.purged,
            last_log_id: ends.last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let json = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(io(&e)))?;
        let mut batch = Batch::new();
        batch.put(VOTE, &json);
        // Always-synced engine: the vote is on disk when this returns.
        self.write(batch)
            .await
            .map_err(|e| StorageIOError::write_vote(io(&e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        read_json(&self.engine, VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let json = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(io(&e)))?;
        let mut batch = Batch::new();
        batch.put(COMMITTED, &json);
        // Queued, not awaited: openraft 0.9 runs this inside its core task
        // before each apply, so an awaited fsync here stalled every proposal
        // behind it. The saved value only lets a restarted node re-apply
        // sooner; it is never needed for safety:
        // - lost or stale after a crash, the node reads an older value and
        //   learns the commit index from the leader again; a state machine
        //   that applied further is fine too (openraft's start-up takes
        //   `max(committed, last_applied)`);
        // - never ahead of the log on disk: it names entries whose append was
        //   durable before openraft could count them committed here, and the
        //   engine makes batches durable in the order submitted;
        // - a failed write latches the engine read-only, so the next append or
        //   vote fails and openraft stops; the task below only logs it.
        // The queued batch shares the next append's fsync (group commit).
        let pending = self.engine.submit(batch);
        tokio::spawn(async move {
            if let Err(e) = pending.await {
                tracing::error!("saving the committed log id: {e}");
            }
        });
        self.committed_index
            .store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        read_json(&self.engine, COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Batch::new();
        let mut last = None;
        for entry in entries {
            let json =
                serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(io(&e)))?;
            batch.put(&entry_key(entry.log_id.index), &json);
            last = Some(entry.log_id);
        }
        if batch.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // One batch per append: the entries of concurrent client writes that
        // openraft gathered share one fsync, and the engine's group commit
        // shares it further with a concurrent vote or commit save. Awaited
        // here, so the entries are readable (and durable) on return. Handing
        // the fsync to a task and returning at once would buy nothing on
        // openraft 0.9: `RaftCore::append_to_log` awaits `callback` as soon
        // as this returns, before it takes the next proposal.
        match self.write(batch).await {
            Ok(()) => {
                self.ends().last = last;
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(msg)));
                Err(StorageIOError::write_logs(io(&e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = Batch::new();
        for index in self.indexes_from(log_id.index)? {
            batch.delete(&entry_key(index));
        }
        if !batch.is_empty() {
            self.write(batch)
                .await
                .map_err(|e| StorageIOError::write_logs(io(&e)))?;
        }
        let prev = if log_id.index == 0 {
            None
        } else {
            self.try_get_log_entries(log_id.index - 1..log_id.index)
                .await?
                .first()
                .map(|e| e.log_id)
        };
        let mut ends = self.ends();
        ends.last = prev.or(ends.purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let json =
            serde_json::to_vec(&Some(log_id)).map_err(|e| StorageIOError::write_logs(io(&e)))?;
        let mut batch = Batch::new();
        batch.put(PURGED, &json);
        for pair in self.engine.range::<&[u8]>((
            Bound::Included(&[ENTRY][..]),
            Bound::Included(&entry_key(log_id.index)[..]),
        )) {
            let pair = pair.map_err(|e| StorageIOError::read_logs(io(&e)))?;
            batch.delete(pair.key());
        }
        self.write(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(io(&e)))?;
        let mut ends = self.ends();
        ends.purged = Some(log_id);
        if ends.last.is_none_or(|l| l.index < log_id.index) {
            ends.last = Some(log_id);
        }
        Ok(())
    }
}
