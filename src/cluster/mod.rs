//! Cluster mode (feature `cluster`): every write replicated through Raft
//! with the openraft crate; the single-node server is unchanged without
//! `--node-id`.
//!
//! - [`types`]: the Raft type configuration, the [`types::Command`] a write
//!   becomes and the [`types::Reply`] it yields;
//! - [`group`]: concurrent client batches gathered into one log entry;
//! - [`log_store`]: the Raft log in a second engine (`<data-dir>/raft/`);
//! - [`state_machine`]: the data engine (`<data-dir>/state/`), one engine
//!   batch per entry with the applied log id under a reserved key;
//! - [`snapshot`]: snapshots of the data engine;
//! - [`network`]: Raft RPCs over HTTP to the peers' `/raft/*`;
//! - [`node`]: startup from the flags;
//! - [`routes`]: `/raft/*`, `/cluster`, `/cluster/members` and the gate that
//!   forwards a follower's requests to the leader and makes reads linearizable.
//!
//! DESIGN.md "Cluster" has the why of each.

// openraft's storage traits fix the error type (`StorageError`, > 200 bytes);
// the helpers return what the traits must.
#![allow(
    clippy::result_large_err,
    reason = "openraft's StorageError is the traits' error type"
)]

pub mod group;
pub mod log_store;
pub mod network;
pub mod node;
pub mod routes;
pub mod snapshot;
pub mod state_machine;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};

use crate::engine::{Batch, Engine, Expiry, OpResult};
use crate::server::ApiError;
use types::{Action, Command, NodeId, Raft, Reply, op_result, ops_of};

tokio::task_local! {
    /// The request id of the write being handled (set by the gate from the
    /// forwarding follower's header or the client's own).
    pub static REQUEST_ID: Option<String>;
}

/// Parses `--peers`: `id=host:port` separated by commas.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a node id (an unsigned integer)"))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("{addr:?} is not host:port"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers named".into());
    }
    Ok(peers)
}

/// Raft figures for `/metrics` and `/stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Times this node saw the leader change.
    pub leader_changes: AtomicU64,
    /// Snapshots this node built.
    pub snapshots_built: AtomicU64,
    /// Snapshots this node installed from a leader.
    pub snapshots_installed: AtomicU64,
    /// Requests this node forwarded to the leader.
    pub forwarded: AtomicU64,
}

/// Raft figures of one node, as `/stats` shows them under `"raft"`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    /// This node.
    pub node_id: NodeId,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Whether that is this node.
    pub is_leader: bool,
    /// Leader changes this node saw since it started.
    pub leader_changes: u64,
    /// Index of the last entry in this node's log.
    pub last_log_index: u64,
    /// Last committed index.
    pub commit_index: u64,
    /// Last applied index.
    pub applied_index: u64,
    /// Entries committed but not yet applied here.
    pub apply_lag: u64,
    /// On the leader: entries each follower lacks (by node id).
    pub replication_lag: BTreeMap<NodeId, u64>,
    /// Last log index covered by this node's snapshot.
    pub snapshot_index: Option<u64>,
    /// Snapshots built here.
    pub snapshots_built: u64,
    /// Snapshots installed here from a leader.
    pub snapshots_installed: u64,
    /// Requests forwarded to the leader.
    pub forwarded: u64,
}

impl Figures {
    /// The figures in the Prometheus text format (appended to `/metrics`).
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP kvstore_raft_{name} {help}");
            let _ = writeln!(out, "# TYPE kvstore_raft_{name} {kind}");
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "kvstore_raft_{name}{suffix} {value}");
        };
        gauge("term", "Current Raft term.", "gauge", self.term);
        gauge(
            "is_leader",
            "1 when this node is the leader.",
            "gauge",
            u64::from(self.is_leader),
        );
        gauge(
            "leader_changes",
            "Leader changes seen.",
            "counter",
            self.leader_changes,
        );
        gauge(
            "last_log_index",
            "Index of the last log entry.",
            "gauge",
            self.last_log_index,
        );
        gauge(
            "commit_index",
            "Last committed index.",
            "gauge",
            self.commit_index,
        );
        gauge(
            "applied_index",
            "Last applied index.",
            "gauge",
            self.applied_index,
        );
        gauge(
            "apply_lag",
            "Entries committed but not applied.",
            "gauge",
            self.apply_lag,
        );
        gauge(
            "snapshots_built",
            "Snapshots built.",
            "counter",
            self.snapshots_built,
        );
        gauge(
            "snapshots_installed",
            "Snapshots installed.",
            "counter",
            self.snapshots_installed,
        );
        gauge(
            "forwarded",
            "Requests forwarded to the leader.",
            "counter",
            self.forwarded,
        );
        let _ = writeln!(
            out,
            "# HELP kvstore_raft_replication_lag Entries a follower lacks (leader only)."
        );
        let _ = writeln!(out, "# TYPE kvstore_raft_replication_lag gauge");
        for (id, lag) in &self.replication_lag {
            let _ = writeln!(
                out,
                "kvstore_raft_replication_lag{{follower=\"{id}\"}} {lag}"
            );
        }
        out
    }
}

/// The answer to a write Raft refused.
fn write_error(e: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::NoQuorum(format!(
            "this node is no longer the leader (leader: {}); retry",
            f.leader_id.map_or("unknown".to_string(), |l| l.to_string())
        )),
        e => ApiError::NoQuorum(e.to_string()),
    }
}

/// One cluster node as the HTTP server sees it.
pub struct ClusterNode {
    /// This node's id.
    pub id: NodeId,
    /// The Raft handle.
    pub raft: Raft,
    /// The runtime Raft (and the HTTP client) runs on.
    pub runtime: tokio::runtime::Handle,
    /// The HTTP client for forwarding to the leader.
    pub client: reqwest::Client,
    /// Longest a write or a linearizable read waits for a quorum.
    pub quorum_timeout: Duration,
    /// Largest request body the gate forwards.
    pub max_body_bytes: usize,
    /// The bearer token peers expect, if any.
    pub auth_token: Option<String>,
    /// Last committed index saved by the log store.
    pub committed: Arc<AtomicU64>,
    /// Last applied index of the state machine.
    pub applied: Arc<AtomicU64>,
    /// The Raft log's engine.
    pub log_engine: Engine,
    /// Raft event counts.
    pub counters: Arc<Counters>,
    /// Where plain batches wait to share a log entry.
    pub grouper: group::Grouper,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("id", &self.id)
            .field("quorum_timeout", &self.quorum_timeout)
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The HTTP address of node `id` in the current membership.
    pub fn addr_of(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .nodes()
            .find(|(nid, _)| **nid == id)
            .map(|(_, n): (&NodeId, &BasicNode)| n.addr.clone())
    }

    /// Waits (up to the quorum timeout) until some leader is known.
    pub async fn await_leader(&self) -> Option<NodeId> {
        let mut rx = self.raft.metrics();
        let waited = tokio::time::timeout(
            self.quorum_timeout,
            rx.wait_for(|m| m.current_leader.is_some()),
        )
        .await;
        match waited {
            Ok(Ok(m)) => m.current_leader,
            _ => None,
        }
    }

    /// The answer to a write that the quorum timeout cut short.
    fn not_committed_in_time(&self) -> ApiError {
        ApiError::NoQuorum(format!(
            "the write was not committed by a majority within {:?}",
            self.quorum_timeout
        ))
    }

    /// Proposes `cmd` and waits for its reply (bounded by the quorum timeout).
    pub async fn propose(&self, action: Action) -> Result<Reply, ApiError> {
        let request_id = REQUEST_ID.try_with(Clone::clone).ok().flatten();
        let cmd = Command { request_id, action };
        let raft = self.raft.clone();
        // On Raft's runtime: the answer comes from its core task whatever
        // worker awaits it, and a timeout here leaves the entry to Raft (it
        // commits everywhere or nowhere, never in part).
        let write = self
            .runtime
            .spawn(async move { raft.client_write(cmd).await });
        match tokio::time::timeout(self.quorum_timeout, write).await {
            Err(_) => Err(self.not_committed_in_time()),
            Ok(Err(e)) => Err(ApiError::Internal(format!("raft task failed: {e}"))),
            Ok(Ok(Ok(resp))) => Ok(resp.data),
            Ok(Ok(Err(e))) => Err(write_error(&e)),
        }
    }

    /// Applies `batch` through the log; its results as the engine gives them.
    /// Without a request id the batch may share its entry with concurrent
    /// ones (see [`group`]).
    pub async fn submit(&self, batch: &Batch) -> Result<Vec<OpResult>, ApiError> {
        let ops = ops_of(batch).map_err(|e| ApiError::Internal(e.to_string()))?;
        let has_id = REQUEST_ID.try_with(Option::is_some).unwrap_or(false);
        let reply = if has_id {
            self.propose(Action::Batch(ops)).await?
        } else {
            let rx = self
                .grouper
                .propose(ops)
                .ok_or_else(|| ApiError::Internal("raft stopped".into()))?;
            match tokio::time::timeout(self.quorum_timeout, rx).await {
                Err(_) => return Err(self.not_committed_in_time()),
                Ok(Err(_)) => return Err(ApiError::Internal("raft stopped".into())),
                Ok(Ok(reply)) => reply?,
            }
        };
        match reply {
            Reply::Results(r) => Ok(r.iter().map(op_result).collect()),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Puts `key` only if it is live (`if_live`) or absent when applied;
    /// says whether it did.
    pub async fn conditional(
        &self,
        key: &str,
        value: &[u8],
        expiry: Expiry,
        if_live: bool,
    ) -> Result<bool, ApiError> {
        let value = String::from_utf8(value.to_vec())
            .map_err(|_| ApiError::Internal("value is not UTF-8".into()))?;
        let action = Action::Conditional {
            key: key.to_string(),
            value,
            expiry: expiry.to_raw(),
            if_live,
        };
        match self.propose(action).await? {
            Reply::Conditional(applied) => Ok(applied),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Waits until this node, as leader, may serve a linearizable read
    /// (openraft's ReadIndex: a quorum confirmed the leadership and the state
    /// machine caught up with the commit index read). `Err(Some(leader))`:
    /// another node leads; `Err(None)`: no quorum in time.
    pub async fn read_barrier(&self) -> Result<(), Option<NodeId>> {
        let raft = self.raft.clone();
        let read = self
            .runtime
            .spawn(async move { raft.ensure_linearizable().await });
        match tokio::time::timeout(self.quorum_timeout, read).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(RaftError::APIError(
                openraft::error::CheckIsLeaderError::ForwardToLeader(f),
            )))) => Err(f.leader_id.filter(|l| *l != self.id)),
            _ => Err(None),
        }
    }

    /// Raft figures for `/stats` (`"raft"`) and `/metrics`.
    pub fn figures(&self) -> Figures {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let replication_lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
                    .collect()
            })
            .unwrap_or_default();
        let applied = self.applied.load(Ordering::Relaxed);
        // An installed snapshot commits without a save_committed call.
        let commit = self.committed.load(Ordering::Relaxed).max(applied);
        Figures {
            node_id: self.id,
            term: m.current_term,
            leader: m.current_leader,
            is_leader: m.current_leader == Some(self.id),
            leader_changes: self.counters.leader_changes.load(Ordering::Relaxed),
            last_log_index: last,
            commit_index: commit,
            applied_index: applied,
            apply_lag: commit.saturating_sub(applied),
            replication_lag,
            snapshot_index: m.snapshot.map(|s| s.index),
            snapshots_built: self.counters.snapshots_built.load(Ordering::Relaxed),
            snapshots_installed: self.counters.snapshots_installed.load(Ordering::Relaxed),
            forwarded: self.counters.forwarded.load(Ordering::Relaxed),
        }
    }

    /// Counts a change of leader seen by the watcher.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
