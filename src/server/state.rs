//! What every handler shares: the engine handle, the limits, the metrics and
//! the counters behind `/stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use crate::engine::{Engine, Expiry};

use super::ServerConfig;
use super::intake::{BodyLimits, Intake};
use super::metrics::Metrics;
use super::routes::store::KeyLocks;

/// Request limits of the server's own, from [`ServerConfig`]. Limits the
/// engine enforces (the key size) are read from its options
/// ([`AppState::max_key_bytes`]), so the two can never disagree.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most operations in one batch.
    pub max_batch_ops: usize,
}

/// The engine a server serves, behind a handle that can be pointed at
/// another one: a cluster node installing a snapshot swaps in the engine of
/// the snapshot's directory. A single node never swaps.
#[derive(Debug, Clone)]
pub struct EngineSlot(Arc<RwLock<Engine>>);

impl EngineSlot {
    /// A slot holding `engine`.
    pub fn new(engine: Engine) -> EngineSlot {
        EngineSlot(Arc::new(RwLock::new(engine)))
    }

    /// The engine now in the slot (a clone of the handle: requests that got
    /// it before a swap finish on it).
    pub fn current(&self) -> Engine {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `engine` in the slot and returns the one it replaces.
    pub fn swap(&self, engine: Engine) -> Engine {
        let mut held = self.0.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *held, engine)
    }
}

/// The state of one server, shared by all workers (wrapped in `web::Data`).
#[derive(Debug)]
pub struct AppState {
    engine: EngineSlot,
    /// Cluster mode: this node's Raft handle and peers (`None`: single node).
    #[cfg(feature = "cluster")]
    pub cluster: Option<Arc<crate::cluster::ClusterNode>>,
    /// Request limits.
    pub limits: Limits,
    /// When set, the bearer token every route but /health needs.
    pub auth_token: Option<String>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The per-key locks of `/store`'s check-then-write (see [`KeyLocks`]).
    pub key_locks: KeyLocks,
    /// The budget and clocks request bodies are read under.
    pub intake: Intake,
    started: Instant,
    operations: AtomicU64,
}

impl AppState {
    /// State for `engine` under `config`.
    pub fn new(engine: Engine, config: &ServerConfig) -> AppState {
        AppState::with_slot(EngineSlot::new(engine), config)
    }

    /// State for the engine in `slot` under `config`.
    pub fn with_slot(engine: EngineSlot, config: &ServerConfig) -> AppState {
        AppState {
            engine,
            #[cfg(feature = "cluster")]
            cluster: None,
            limits: Limits {
                max_body_bytes: config.max_body_bytes,
                max_batch_ops: config.max_batch_ops,
            },
            intake: Intake::new(
                config.max_inflight_body_bytes,
                config.max_body_bytes,
                BodyLimits {
                    whole: config.body_timeout,
                    idle: config.body_idle_timeout,
                },
            ),
            auth_token: config.auth_token.clone().filter(|t| !t.is_empty()),
            metrics: Metrics::new(config.fsync.clone()),
            key_locks: KeyLocks::default(),
            started: Instant::now(),
            operations: AtomicU64::new(0),
        }
    }

    /// The engine served now.
    pub fn engine(&self) -> Engine {
        self.engine.current()
    }

    /// Whether this server is a cluster node (reserved keys are hidden).
    pub fn is_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        {
            self.cluster.is_some()
        }
        #[cfg(not(feature = "cluster"))]
        {
            false
        }
    }

    /// Applies `batch`: on a single node through the engine's group commit,
    /// on a cluster node through Raft (acknowledged once a majority has it
    /// on disk and this node applied it).
    pub async fn submit(
        &self,
        batch: crate::engine::Batch,
    ) -> Result<Vec<crate::engine::OpResult>, super::ApiError> {
        #[cfg(feature = "cluster")]
        if let Some(node) = &self.cluster {
            return node.submit(&batch).await;
        }
        Ok(self.engine().submit(batch).await?)
    }

    /// Largest key, in bytes: the engine's own limit.
    pub fn max_key_bytes(&self) -> usize {
        self.engine().options().max_key_bytes
    }

    /// Counts `n` key operations served (for `total_operations`).
    pub fn count(&self, n: usize) {
        self.operations
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Key operations served since start.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Whole seconds since the server state was made.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The expiry of a write with `ttl` seconds (`None`: never), from now.
    pub fn expiry(&self, ttl: Option<f64>) -> Expiry {
        expiry_after(self.engine().now_ms(), ttl)
    }
}

/// The expiry of a write made at `now_ms` with `ttl` seconds (`None`: never).
/// `ttl <= 0` is already expired; fractions count to the millisecond.
pub fn expiry_after(now_ms: u64, ttl: Option<f64>) -> Expiry {
    let now = now_ms.max(1);
    match ttl {
        None => Expiry::Never,
        Some(s) if s.is_nan() || s <= 0.0 => Expiry::At(now),
        Some(s) => {
            let ms = (s * 1000.0).round().max(1.0);
            // An f64 at or past 2^64 saturates; below it the cast is exact
            // to the millisecond for any TTL a client can mean.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "ms is positive and saturates at u64::MAX"
            )]
            let ms = if ms >= 18_446_744_073_709_551_615.0 {
                u64::MAX
            } else {
                ms as u64
            };
            Expiry::At(now.saturating_add(ms))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::expiry_after;
    use crate::engine::Expiry;

    #[test]
    fn fractions_round_to_the_millisecond() {
        assert_eq!(expiry_after(1000, Some(1.1)), Expiry::At(2100));
        assert_eq!(expiry_after(1000, Some(1.5)), Expiry::At(2500));
    }

    #[test]
    fn a_tiny_positive_ttl_is_still_in_the_future() {
        assert_eq!(expiry_after(1000, Some(0.0001)), Expiry::At(1001));
    }

    #[test]
    fn zero_or_negative_is_now_and_huge_saturates() {
        assert_eq!(expiry_after(1000, Some(0.0)), Expiry::At(1000));
        assert_eq!(expiry_after(1000, Some(-3.0)), Expiry::At(1000));
        assert_eq!(expiry_after(1000, Some(1e300)), Expiry::At(u64::MAX));
        assert_eq!(expiry_after(1000, None), Expiry::Never);
    }
}
