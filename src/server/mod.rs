//! The HTTP JSON API of the repository's `docs/API.md` (described for tools by
//! `docs/openapi.json`, served at `GET /openapi.json`) over the
//! [`engine`](crate::engine): the current API and the two older ones it serves
//! beside it on the same keys (`/store`, the body-keyed `/kv`).
//!
//! - [`build`] binds an actix `HttpServer` running [`app`] on every worker;
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
pub mod error;
pub mod key;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::web::Data;
use actix_web::{App, HttpServer};

use crate::engine::Engine;

pub use crate::json::minify;
pub use error::ApiError;
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
    /// Largest request body accepted (default 16 MiB).
    pub max_body_bytes: usize,
    /// Largest key accepted (default 1024).
    pub max_key_bytes: usize,
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
            max_key_bytes: 1024,
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
    App::new()
        .app_data(state)
        .configure(configure)
        .wrap(from_fn(middleware::json_errors))
        .wrap(from_fn(middleware::auth))
        .wrap(from_fn(middleware::track))
}

/// Binds the server and returns it (not yet running: `.await` it) with the
/// addresses it is bound to. The server stops on SIGTERM/SIGINT after finishing
/// in-flight requests; the caller then closes the engine.
pub fn build(
    engine: Engine,
    config: &ServerConfig,
) -> std::io::Result<(actix_web::dev::Server, Vec<SocketAddr>)> {
    let state = Data::new(AppState::new(engine, config));
    let server = HttpServer::new(move || app(state.clone()))
        .workers(config.workers.max(1))
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .shutdown_signal(stop_signal())
        .bind((config.host.as_str(), config.port))?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// Resolves on the first SIGTERM or SIGINT: both stop the server gracefully
/// (actix's own handling would drop in-flight requests on SIGINT).
async fn stop_signal() {
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
