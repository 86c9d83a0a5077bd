//! The servers under load, each started in-process on 127.0.0.1 with a free
//! port and run by its own actix system thread:
//! - the kvstore server (`kvstore::server::build`) over a fresh temp data dir;
//! - the null handler: an actix `HttpServer` with the same routes, worker
//!   count and body handling (the body is read whole) that answers every
//!   request with a fixed JSON body of the same size as the real one, so
//!   the ratio between the two is what the engine and the JSON work cost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use kvstore::engine::{Engine, Observer, Options, SyncMode};
use kvstore::server::{self, ServerConfig};
use tokio::runtime::Runtime;

/// A running server and what is needed to stop it.
pub struct Target {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// The kvstore engine's fsync timings; `None` for the null handler.
    pub fsyncs: Option<Arc<FsyncProbe>>,
    /// A handle on the kvstore engine, for its write and fsync counters.
    pub engine: Option<Engine>,
    _dir: Option<tempfile::TempDir>,
}

/// Counts the engine's fsyncs and the time they took.
#[derive(Debug, Default)]
pub struct FsyncProbe {
    fsyncs: AtomicU64,
    nanos: AtomicU64,
}

/// A reading of a [`FsyncProbe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FsyncFigures {
    /// fsyncs of `wal.log`.
    pub fsyncs: u64,
    /// Time spent in them.
    pub time: Duration,
}

impl FsyncProbe {
    /// The figures so far.
    pub fn read(&self) -> FsyncFigures {
        FsyncFigures {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            time: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }
}

impl Observer for FsyncProbe {
    fn fsync(&self, elapsed: Duration, _writes: usize) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Worker threads of both servers: the server's default (one per core).
pub fn workers() -> usize {
    ServerConfig::default().workers
}

/// The kvstore server over a fresh data dir with sync mode `sync` (every
/// other option at its default).
pub fn kvstore(sync: SyncMode) -> Target {
    let dir = crate::common::tempdir();
    let probe = Arc::new(FsyncProbe::default());
    let opts = Options::default()
        .with_sync(sync)
        .with_observer(Arc::clone(&probe) as Arc<dyn Observer>);
    let (engine, _report) = Engine::open(dir.path(), opts).unwrap();
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..ServerConfig::default()
    };
    let handle = engine.clone();
    let mut target = spawn(move || server::build(engine, &config));
    target.engine = Some(handle);
    target._dir = Some(dir);
    target.fsyncs = Some(probe);
    target
}

/// The null handler on the same actix stack.
pub fn null() -> Target {
    let workers = workers();
    spawn(move || {
        let server = HttpServer::new(|| App::new().configure(null_routes))
            .workers(workers)
            .bind(("127.0.0.1", 0))?;
        let addrs = server.addrs();
        Ok((server.run(), addrs))
    })
}

impl Target {
    /// Stops the server gracefully and waits for its thread.
    pub fn stop(mut self, rt: &Runtime) {
        rt.block_on(self.handle.stop(true));
        if let Some(t) = self.thread.take() {
            t.join()
                .expect("server thread panicked")
                .expect("server failed");
        }
    }
}

/// Builds the server on a new thread inside an actix system, and runs it there.
fn spawn<F>(build: F) -> Target
where
    F: FnOnce() -> std::io::Result<(Server, Vec<SocketAddr>)> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match build() {
                    Ok((server, addrs)) => {
                        let _ = tx.send(Ok((server.handle(), addrs)));
                        server.await
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = tx.send(Err(e));
                        Err(std::io::Error::other(msg))
                    }
                }
            })
        })
        .unwrap();
    let (handle, addrs) = match rx.recv().unwrap() {
        Ok(x) => x,
        Err(e) => panic!("starting the server under load: {e}"),
    };
    let addr = addrs
        .into_iter()
        .find(|a| a.ip().is_loopback() && a.is_ipv4())
        .expect("server bound to 127.0.0.1");
    Target {
        addr,
        handle,
        thread: Some(thread),
        fsyncs: None,
        engine: None,
        _dir: None,
    }
}

/// The JSON text every PUT stores: a string of 100 bytes, quotes included.
pub static VALUE: LazyLock<String> = LazyLock::new(|| format!("\"{}\"", "v".repeat(98)));

/// What the null handler answers to a GET: the size of a real answer.
static NULL_GET: LazyLock<Bytes> =
    LazyLock::new(|| Bytes::from(format!(r#"{{"key":"bench00000000","value":{}}}"#, *VALUE)));

/// What the null handler answers to a PUT: the size of a real answer.
static NULL_PUT: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(format!(
        r#"{{"success":true,"key":"bench00000000","value":{},"created":false}}"#,
        *VALUE
    ))
});

fn null_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/kv/{key}", web::get().to(null_get))
        .route("/kv/{key}", web::put().to(null_put));
}

async fn null_get(_key: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(NULL_GET.clone())
}

async fn null_put(_key: web::Path<String>, _body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(NULL_PUT.clone())
}
