//! Starting a node: the two engines, Raft on a runtime of its own, the
//! cluster formed from `--peers` when the log is empty.
//!
//! Layout of a node's data directory:
//!
//! ```text
//! state/      the data engine: the state machine the API reads
//! raft/       the Raft log engine (entries, vote, committed, purged)
//! snapshots/  the last snapshot built or received (transient staging too)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, SnapshotPolicy};

use super::log_store::LogStore;
use super::network::{CONNECT_TIMEOUT, Network};
use super::snapshot;
use super::state_machine::StateMachine;
use super::types::{NodeId, Raft};
use super::{ClusterNode, Counters};
use crate::engine::{Engine, Options, SyncMode};
use crate::server::state::EngineSlot;

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `--node-id`.
    pub node_id: NodeId,
    /// `--peers`: every member, this node included.
    pub peers: BTreeMap<NodeId, String>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--quorum-timeout`.
    pub quorum_timeout: Duration,
    /// Options of the data engine (its sync mode is overridden, see DESIGN.md).
    pub engine: Options,
    /// `--auth-token`, sent on every RPC and forwarded request.
    pub auth_token: Option<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Log entries between snapshots (0: never).
    pub snapshot_logs: u64,
    /// `--join`: never initialize; wait to be added by the leader.
    pub join: bool,
}

/// A started node.
#[derive(Debug)]
pub struct Started {
    /// What the HTTP server holds.
    pub node: Arc<ClusterNode>,
    /// The data engine's slot.
    pub slot: EngineSlot,
    /// Raft's runtime: dropped after [`Started::shutdown`].
    pub runtime: tokio::runtime::Runtime,
}

fn open(dir: &Path, opts: Options) -> Result<Engine, String> {
    Engine::open(dir, opts)
        .map(|(engine, _)| engine)
        .map_err(|e| format!("opening {}: {e}", dir.display()))
}

/// Opens the engines, starts Raft and (on an empty log) initializes the
/// cluster with every peer as a voter.
pub fn start(cfg: ClusterConfig) -> Result<Started, String> {
    if !cfg.peers.contains_key(&cfg.node_id) {
        return Err(format!("--peers must name this node ({}) too", cfg.node_id));
    }
    snapshot::recover_layout(&cfg.data_dir)
        .map_err(|e| format!("finishing a snapshot install: {e}"))?;
    let state_opts = cfg.engine.clone().with_sync(SyncMode::Never);
    let state = open(&cfg.data_dir.join("state"), state_opts.clone())?;
    let log = open(
        &cfg.data_dir.join("raft"),
        Options::default().with_sync(SyncMode::Always),
    )?;
    let slot = EngineSlot::new(state);
    let counters = Arc::new(Counters::default());
    let snapshots = Arc::new(snapshot::Store::new(
        cfg.data_dir.clone(),
        state_opts,
        Arc::clone(&counters),
    ));
    let log_store = LogStore::new(log.clone()).map_err(|e| format!("reading the raft log: {e}"))?;
    let sm = StateMachine::new(slot.clone(), snapshots)
        .map_err(|e| format!("reading the state machine: {e}"))?;
    let committed = log_store.committed_index();
    let applied = sm.applied_index();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("raft")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the raft runtime: {e}"))?;
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("making the HTTP client: {e}"))?;
    let config = Config {
        cluster_name: "kvstore".into(),
        heartbeat_interval: 150,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 10_000,
        snapshot_policy: if cfg.snapshot_logs == 0 {
            SnapshotPolicy::Never
        } else {
            SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs)
        },
        // Entries kept behind a snapshot, for followers a little behind.
        max_in_snapshot_log_to_keep: cfg.snapshot_logs / 2,
        // Bounds an append RPC: each entry is at most one request body.
        max_payload_entries: 64,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("raft config: {e}"))?;
    let network = Network::new(client.clone(), cfg.auth_token.clone());
    let raft: Raft = runtime
        .block_on(Raft::new(
            cfg.node_id,
            Arc::new(config),
            network,
            log_store,
            sm,
        ))
        .map_err(|e| format!("starting raft: {e}"))?;
    let members: BTreeMap<NodeId, BasicNode> = cfg
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    runtime.block_on(async {
        match raft.is_initialized().await {
            Ok(true) => {
                tracing::info!("rejoining the cluster from the data directory");
                Ok(())
            }
            Ok(false) if cfg.join => {
                tracing::info!("waiting to be added to a cluster (--join)");
                Ok(())
            }
            Ok(false) => {
                // Every node of a new cluster proposes the same membership;
                // openraft accepts the same config on several nodes.
                match raft.initialize(members).await {
                    Ok(()) => Ok(()),
                    Err(openraft::error::RaftError::APIError(
                        openraft::error::InitializeError::NotAllowed(_),
                    )) => Ok(()),
                    Err(e) => Err(format!("initializing the cluster: {e}")),
                }
            }
            Err(e) => Err(format!("raft stopped: {e}")),
        }
    })?;
    runtime.spawn(watch_leader(raft.clone(), Arc::clone(&counters)));
    let grouper = {
        let _on = runtime.enter();
        super::group::Grouper::start(raft.clone(), cfg.max_body_bytes)
    };
    let node = Arc::new(ClusterNode {
        id: cfg.node_id,
        raft,
        runtime: runtime.handle().clone(),
        client,
        quorum_timeout: cfg.quorum_timeout,
        max_body_bytes: cfg.max_body_bytes,
        auth_token: cfg.auth_token,
        committed,
        applied,
        log_engine: log,
        counters,
        grouper,
    });
    Ok(Started {
        node,
        slot,
        runtime,
    })
}

/// Counts leader changes for the metrics.
async fn watch_leader(raft: Raft, counters: Arc<Counters>) {
    let mut rx = raft.metrics();
    let mut leader = rx.borrow().current_leader;
    while rx.changed().await.is_ok() {
        let now = rx.borrow().current_leader;
        if now != leader {
            if now.is_some() {
                ClusterNode::count(&counters.leader_changes);
            }
            tracing::info!(?now, "leader changed");
            leader = now;
        }
    }
}

impl Started {
    /// Stops Raft, then closes both engines (every applied write durable).
    pub fn shutdown(self) -> Result<(), String> {
        let Started {
            node,
            slot,
            runtime,
        } = self;
        let raft = node.raft.clone();
        let log = node.log_engine.clone();
        drop(node);
        let stopped = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(3), raft.shutdown()).await
        });
        if stopped.is_err() {
            tracing::warn!("raft did not stop within 3 s");
        }
        runtime.shutdown_timeout(Duration::from_secs(1));
        let state = slot
            .current()
            .close()
            .map_err(|e| format!("closing the data engine: {e}"));
        let log = log
            .close()
            .map_err(|e| format!("closing the raft log: {e}"));
        state.and(log)
    }
}
