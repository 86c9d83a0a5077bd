//! `kvstore [serve]`: validate the flags into engine [`Options`] and a
//! [`ServerConfig`], open the data directory, serve until SIGTERM/SIGINT,
//! then close the engine so every acknowledged write is durable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{CliError, SyncArg, summary, units};
use crate::engine::{Engine, Options, SyncMode};
use crate::server::{self, FsyncObserver, ServerConfig};

/// Flags of the server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Data directory (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// When acknowledged writes are fsynced.
    #[arg(long, value_enum, default_value_t = SyncArg::Always)]
    pub sync: SyncArg,
    /// fsync interval of `--sync periodic` (`500ms`, `2s`; plain numbers are ms).
    #[arg(long, visible_alias = "sync-interval", default_value = "1000", value_parser = units::millis)]
    pub sync_interval_ms: u64,
    /// Size at which wal.log is sealed into a segment (`64MiB`; plain numbers are bytes).
    #[arg(long, default_value = "64MiB", value_parser = units::size)]
    pub segment_bytes: u64,
    /// Largest request body (`16MiB`; plain numbers are bytes).
    #[arg(long, default_value = "16MiB", value_parser = units::size_usize)]
    pub max_body_bytes: usize,
    /// Largest key (plain numbers are bytes).
    #[arg(long, default_value = "1024", value_parser = units::size_usize)]
    pub max_key_bytes: usize,
    /// Most operations in one batch.
    #[arg(long, default_value_t = 10_000)]
    pub max_batch_ops: usize,
    /// Bytes all request bodies being received may hold together; past it
    /// requests get 503 (`256MiB`; plain numbers are bytes; at least --max-body-bytes).
    #[arg(long, default_value = "256MiB", value_parser = units::size_usize)]
    pub max_inflight_body_bytes: usize,
    /// Longest a request body may take to arrive in full before 408 (`30s`, `500ms`; plain numbers are seconds).
    #[arg(long, default_value = "30s", value_parser = units::seconds)]
    pub body_timeout: Duration,
    /// Longest a request body may go without sending anything before 408 (`10s`; plain numbers are seconds).
    #[arg(long, default_value = "10s", value_parser = units::seconds)]
    pub body_idle_timeout: Duration,
    /// Longest wait for a request's headers before 408 (`5s`; plain numbers are seconds).
    #[arg(long, default_value = "5s", value_parser = units::seconds)]
    pub head_timeout: Duration,
    /// Most connections open at once; more are answered 503 and closed
    /// (0: the open-file limit, ulimit -n, less 256 for data files).
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,
    /// Bearer token required on every route but /health.
    #[arg(long, env = "KVSTORE_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Background compaction starts when dead bytes exceed this share of disk bytes.
    #[arg(long, default_value_t = 0.5)]
    pub compaction_ratio: f64,
    /// ... and exceed this size (`64MiB`; plain numbers are bytes).
    #[arg(long, default_value = "64MiB", value_parser = units::size)]
    pub compaction_min_bytes: u64,
    /// Threads a compaction copies with (fewer leave more CPU to requests).
    #[arg(long, default_value_t = Options::default().compaction_threads)]
    pub compaction_threads: usize,
    /// Cluster mode: this node's id among --peers.
    #[cfg(feature = "cluster")]
    #[arg(long, env = "KVSTORE_NODE_ID", requires = "peers")]
    pub node_id: Option<u64>,
    /// Cluster mode: every member as id=host:port (their HTTP ports), comma-separated,
    /// this node included.
    #[cfg(feature = "cluster")]
    #[arg(long, env = "KVSTORE_PEERS", requires = "node_id")]
    pub peers: Option<String>,
    /// Cluster mode: longest a write or linearizable read waits for a quorum
    /// before 503 (`5s`, `500ms`; plain numbers are seconds).
    #[cfg(feature = "cluster")]
    #[arg(long, default_value = "5s", value_parser = units::seconds)]
    pub quorum_timeout: Duration,
    /// Cluster mode: start without forming a cluster, to be added to a running
    /// one with `POST /cluster/members` (--peers then names at least this node).
    #[cfg(feature = "cluster")]
    #[arg(long, env = "KVSTORE_JOIN", requires = "node_id")]
    pub join: bool,
    /// Cluster mode: log entries between snapshots of the state (0: never).
    #[cfg(feature = "cluster")]
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_logs: u64,
}

impl ServeArgs {
    /// The engine options and server settings these flags ask for.
    pub fn settings(&self) -> Result<(Options, ServerConfig), CliError> {
        let invalid = |flag, reason: &str| CliError::Invalid {
            flag,
            reason: reason.to_string(),
        };
        let sync = match self.sync {
            SyncArg::Always => SyncMode::Always,
            SyncArg::Never => SyncMode::Never,
            SyncArg::Periodic if self.sync_interval_ms == 0 => {
                return Err(invalid("--sync-interval-ms", "must be positive"));
            }
            SyncArg::Periodic => SyncMode::Periodic(Duration::from_millis(self.sync_interval_ms)),
        };
        if self.max_body_bytes == 0 {
            return Err(invalid("--max-body-bytes", "must be positive"));
        }
        if self.workers == Some(0) {
            return Err(invalid("--workers", "must be positive"));
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            return Err(invalid(
                "--max-inflight-body-bytes",
                "must be at least --max-body-bytes (else a body the limit allows could never be read)",
            ));
        }
        for (flag, d) in [
            ("--body-timeout", self.body_timeout),
            ("--body-idle-timeout", self.body_idle_timeout),
            ("--head-timeout", self.head_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(flag, "must be positive"));
            }
        }
        let max_connections = server::conn::resolve_cap(
            Some(self.max_connections).filter(|&n| n > 0),
            server::conn::fd_limit(),
        )
        .map_err(|reason| invalid("--max-connections", &reason))?;
        let fsync = Arc::new(FsyncObserver::default());
        let opts = Options::default()
            .with_sync(sync)
            .with_segment_bytes(self.segment_bytes)
            .with_max_key_bytes(self.max_key_bytes)
            .with_max_value_bytes(self.max_body_bytes.max(16 << 20))
            .with_compaction_ratio(self.compaction_ratio)
            .with_compaction_min_bytes(self.compaction_min_bytes)
            .with_compaction_threads(self.compaction_threads)
            .with_observer(fsync.clone());
        opts.validate().map_err(|e| CliError::Invalid {
            flag: "option",
            reason: e.to_string(),
        })?;
        let defaults = ServerConfig::default();
        let config = ServerConfig {
            host: self.host.clone(),
            port: self.port,
            workers: self.workers.unwrap_or(defaults.workers),
            max_body_bytes: self.max_body_bytes,
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            body_timeout: self.body_timeout,
            body_idle_timeout: self.body_idle_timeout,
            head_timeout: self.head_timeout,
            max_connections: Some(max_connections),
            max_batch_ops: self.max_batch_ops,
            auth_token: self.auth_token.clone().filter(|t| !t.is_empty()),
            fsync: Some(fsync),
        };
        Ok((opts, config))
    }
}

/// Serves until stopped.
pub fn run(args: ServeArgs) -> Result<ExitCode, CliError> {
    #[cfg(feature = "cluster")]
    if let (Some(node_id), Some(peers)) = (args.node_id, args.peers.clone()) {
        return run_cluster(&args, node_id, &peers);
    }
    let (opts, config) = args.settings()?;
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        action: "creating data directory",
        path: dir.clone(),
        source,
    })?;
    let (engine, report) = Engine::open(dir, opts).map_err(super::engine_err(dir))?;
    tracing::info!(data_dir = %dir.display(), "recovered: {}", summary(&report));
    let addr = format!("{}:{}", config.host, config.port);
    let served = actix_web::rt::System::new().block_on({
        let engine = engine.clone();
        async move {
            let (server, addrs) =
                server::build(engine, &config).map_err(|source| CliError::Bind { addr, source })?;
            for a in &addrs {
                tracing::info!(
                    "listening on http://{a} (sync {:?}, at most {} connections, auth {})",
                    args.sync,
                    config.max_connections.unwrap_or_default(),
                    if config.auth_token.is_some() {
                        "on"
                    } else {
                        "off"
                    }
                );
            }
            server.await.map_err(|source| CliError::Io {
                action: "serving on",
                path: PathBuf::from(format!("{}:{}", config.host, config.port)),
                source,
            })
        }
    });
    // Close even when serving failed: every acknowledged write is made durable.
    let closed = engine.close().map_err(super::engine_err(dir));
    served?;
    closed?;
    tracing::info!("stopped; every acknowledged write is durable");
    Ok(ExitCode::SUCCESS)
}

/// Serves as a cluster node until stopped.
#[cfg(feature = "cluster")]
fn run_cluster(args: &ServeArgs, node_id: u64, peers: &str) -> Result<ExitCode, CliError> {
    use crate::cluster;
    let (opts, config) = args.settings()?;
    let peers = cluster::parse_peers(peers).map_err(|reason| CliError::Invalid {
        flag: "--peers",
        reason,
    })?;
    if args.quorum_timeout.is_zero() {
        return Err(CliError::Invalid {
            flag: "--quorum-timeout",
            reason: "must be positive".into(),
        });
    }
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        action: "creating data directory",
        path: dir.clone(),
        source,
    })?;
    let started = cluster::node::start(cluster::node::ClusterConfig {
        node_id,
        peers,
        data_dir: dir.clone(),
        quorum_timeout: args.quorum_timeout,
        engine: opts,
        auth_token: config.auth_token.clone(),
        max_body_bytes: config.max_body_bytes,
        snapshot_logs: args.snapshot_logs,
        join: args.join,
    })
    .map_err(|reason| CliError::Invalid {
        flag: "--data-dir",
        reason,
    })?;
    let mut state = server::AppState::with_slot(started.slot.clone(), &config);
    state.cluster = Some(started.node.clone());
    let addr = format!("{}:{}", config.host, config.port);
    let served = actix_web::rt::System::new().block_on(async move {
        let (server, addrs) =
            server::build_with(state, &config).map_err(|source| CliError::Bind { addr, source })?;
        for a in &addrs {
            tracing::info!("node {node_id} listening on http://{a}");
        }
        server.await.map_err(|source| CliError::Io {
            action: "serving on",
            path: PathBuf::from(format!("{}:{}", config.host, config.port)),
            source,
        })
    });
    let closed = started.shutdown().map_err(|reason| CliError::Invalid {
        flag: "--data-dir",
        reason,
    });
    served?;
    closed?;
    tracing::info!("stopped; every applied write is durable");
    Ok(ExitCode::SUCCESS)
}
