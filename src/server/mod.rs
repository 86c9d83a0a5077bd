//! The HTTP JSON API of the repository's `docs/API.md` (described for tools by
//! `docs/openapi.json`, served at `GET /openapi.json`) over the
//! [`engine`](crate::engine): the current API and the two older ones it serves
//! beside it on the same keys (`/store`, the body-keyed `/kv`).
//!
//! - [`build`] binds the server ([`listen`]: actix's HTTP/1 service over
//!   actix-server, with the connection cap of [`conn`] and the
//!   `Expect: 100-continue` check) running [`app`] on every worker;
//! - [`app`] is the whole application (routes + middleware), shared by
//!   `build` and the in-process tests; [`routes::configure`] mounts the routes
//!   of one table, [`routes::table`], which the tests hold against the OpenAPI
//!   document;
//! - [`error::ApiError`] is the one error type and its status table;
//! - values are stored as their minified JSON text ([`minify`])
//!   and spliced into responses ([`body::Out`]) without being re-parsed;
//! - writes are `engine.submit(batch).await`ed, so no worker blocks on an
//!   fsync and concurrent requests share one (group commit).

pub mod body;
pub mod conn;
pub mod errlog;
pub mod error;
pub mod intake;
pub mod key;
pub mod listen;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use actix_web::App;
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::web::Data;

pub use crate::json::minify;
pub use error::ApiError;
pub use listen::{build, build_with};
pub use metrics::FsyncObserver;
pub use routes::configure;
pub use state::AppState;

/// Seconds in-flight requests get to finish after SIGTERM/SIGINT, leaving
/// time within 5 s to close the engine.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 3;

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind (default 127.0.0.1).
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// actix worker threads (default: number of cores).
    pub workers: usize,
    /// Largest request body accepted (default 16 MiB). The largest key is
    /// the engine's `Options::max_key_bytes`.
    pub max_body_bytes: usize,
    /// Bytes all request bodies being read may hold together (default 256
    /// MiB; never below `max_body_bytes`). Past it a request gets 503.
    pub max_inflight_body_bytes: usize,
    /// Longest a request body may take to arrive in full (default 30 s); past it, 408.
    pub body_timeout: Duration,
    /// Longest a request body may go without sending anything (default 10 s); past it, 408.
    pub body_idle_timeout: Duration,
    /// Most connections open at once; more are answered 503 and closed.
    /// `None`: the open-file limit less [`conn::FD_HEADROOM`].
    pub max_connections: Option<usize>,
    /// Longest wait for a request's headers (default 5 s); past it, 408.
    pub head_timeout: Duration,
    /// Most operations in one batch (default 10,000).
    pub max_batch_ops: usize,
    /// When set, every route but /health needs `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// The fsync observer given to the engine as `Options::observer`, so
    /// `/metrics` shows fsync latency (default: none, the histogram stays empty).
    pub fsync: Option<Arc<FsyncObserver>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_body_bytes: 16 << 20,
            max_inflight_body_bytes: 256 << 20,
            body_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(10),
            max_connections: None,
            head_timeout: Duration::from_secs(5),
            max_batch_ops: 10_000,
            auth_token: None,
            fsync: None,
        }
    }
}

/// The whole application over `state`: routes, auth, metrics, JSON errors.
pub fn app(
    state: Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cluster = state.is_cluster();
    App::new()
        .app_data(state)
        .configure(move |cfg| {
            #[cfg(feature = "cluster")]
            if cluster {
                routes::configure_cluster(cfg);
            }
            #[cfg(not(feature = "cluster"))]
            let _ = cluster;
            configure(cfg);
        })
        .wrap(from_fn(middleware::cluster_gate))
        .wrap(from_fn(middleware::json_errors))
        .wrap(from_fn(middleware::auth))
        .wrap(from_fn(middleware::track))
}

/// Resolves on the first SIGTERM or SIGINT: both stop the server gracefully
/// (actix's own handling would drop in-flight requests on SIGINT).
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
                }
            }
            _ => {
                tracing::warn!("cannot listen for signals; stop the server another way");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
