//! The HTTP JSON API (../shared/API.md) over the engine. STUB: being written.

use std::net::SocketAddr;

use crate::engine::Engine;

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
        }
    }
}

/// Binds the server and returns it (not yet running: `.await` it) with the
/// addresses it is bound to. The server stops on SIGTERM/SIGINT after finishing
/// in-flight requests; the caller then closes the engine.
pub fn build(
    engine: Engine,
    config: &ServerConfig,
) -> std::io::Result<(actix_web::dev::Server, Vec<SocketAddr>)> {
    let _ = (engine, config);
    Err(std::io::Error::other("server not implemented yet"))
}
