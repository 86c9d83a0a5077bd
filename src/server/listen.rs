//! Binding and serving: what actix-web's `HttpServer` does, assembled from
//! its parts so the server can act where `HttpServer` gives no hook:
//! - each accepted TCP stream passes the connection cap ([`conn::Gate`])
//!   before the HTTP service sees it; one over the cap is answered 503 and
//!   closed ([`conn::refuse`]);
//! - a request with `Expect: 100-continue` is checked before the client is
//!   told to send its body: a declared `Content-Length` over the limit gets
//!   413 and a missing or wrong token 401, without `100 Continue`
//!   ([`expect_check`]), so neither ever sends (or holds) its body;
//! - the request-head timeout is set ([`ServerConfig::head_timeout`]).
//!
//! The rest is as `HttpServer` has it: one app per worker, graceful shutdown
//! on SIGTERM/SIGINT that closes idle keep-alive connections, in-flight
//! requests given [`SHUTDOWN_TIMEOUT_SECS`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Request};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, map_config};
use actix_web::Error;
use actix_web::dev::{AppConfig, Server, Service, ServiceFactory, fn_factory, fn_service};
use actix_web::http::header;
use actix_web::rt::net::TcpStream;
use actix_web::web::Data;

use super::conn::{self, Gate};
use super::error::ApiError;
use super::middleware;
use super::state::AppState;
use super::{SHUTDOWN_TIMEOUT_SECS, ServerConfig, app, stop_signal};
use crate::engine::Engine;

/// How long a closed connection's client gets to read the last response
/// before the socket is dropped (as `HttpServer` has it).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections a worker may hold beyond its share of the cap: the refused
/// ones still being closed. Past it, actix stops accepting for that worker.
const REFUSING_SLACK: usize = conn::FD_HEADROOM / 4;

/// Binds the server and returns it (not yet running: `.await` it) with the
/// addresses it is bound to. The server stops on SIGTERM/SIGINT after finishing
/// in-flight requests; the caller then closes the engine.
pub fn build(engine: Engine, config: &ServerConfig) -> io::Result<(Server, Vec<SocketAddr>)> {
    build_with(AppState::new(engine, config), config)
}

/// [`build`] over a prepared state (a cluster node's).
pub fn build_with(state: AppState, config: &ServerConfig) -> io::Result<(Server, Vec<SocketAddr>)> {
    let cap = conn::resolve_cap(config.max_connections, conn::fd_limit())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let gate = Gate::new(cap);
    let state = Data::new(state);
    let workers = config.workers.clamp(1, 512);
    let mut builder = Server::build()
        .workers(workers)
        .max_concurrent_connections((cap + REFUSING_SLACK).div_ceil(workers))
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .shutdown_signal(stop_signal());
    let shutdown = builder.graceful_shutdown_signal();
    let head_timeout = config.head_timeout;
    let mut addrs = Vec::new();
    let mut failed = None;
    for addr in (config.host.as_str(), config.port).to_socket_addrs()? {
        let lst = match std::net::TcpListener::bind(addr) {
            Ok(lst) => lst,
            Err(e) => {
                failed = Some(e);
                continue;
            }
        };
        widen_backlog(&lst);
        lst.set_nonblocking(true)?;
        let local = lst.local_addr()?;
        addrs.push(local);
        let (state, gate, shutdown) = (state.clone(), Arc::clone(&gate), shutdown.clone());
        builder = builder.listen(format!("kvstore-{local}"), lst, move || {
            let shutdown = shutdown.clone();
            let app = app(state.clone())
                .into_factory()
                .map_err(|e: Error| e.error_response());
            let http = HttpService::build()
                .client_request_timeout(head_timeout)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .local_addr(local)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .expect(expect_service(state.clone()))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp();
            gated(http, Arc::clone(&gate), head_timeout)
        })?;
    }
    if addrs.is_empty() {
        return Err(failed.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind")
        }));
    }
    Ok((builder.run(), addrs))
}

/// Pending connections the kernel queues for accept, as `HttpServer` has it
/// (std listens with 128): a burst of clients waits instead of being dropped.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const BACKLOG: i32 = 1024;

/// Raises `lst`'s accept queue to [`BACKLOG`]: on Linux a second listen(2)
/// on a listening socket only changes its backlog.
#[cfg(target_os = "linux")]
fn widen_backlog(lst: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a descriptor `lst` owns and keeps open; a failure
    // leaves the old backlog, which still works.
    #[allow(
        unsafe_code,
        reason = "listen(2) again to widen the backlog; std has no setter"
    )]
    let _ = unsafe { libc::listen(lst.as_raw_fd(), BACKLOG) };
}

#[cfg(not(target_os = "linux"))]
fn widen_backlog(_lst: &std::net::TcpListener) {}

/// The service run on every accepted stream: `inner` for a stream the gate
/// admits (its place held until the connection ends), a 503 otherwise; a
/// first request head actix would refuse gets its JSON 400/431 here.
fn gated<F>(
    inner: F,
    gate: Arc<Gate>,
    head_timeout: Duration,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = F::Error, InitError = F::InitError>
where
    F: ServiceFactory<TcpStream, Config = (), Response = ()>,
    F::Service: 'static,
{
    fn_factory(move || {
        let made = inner.new_service(());
        let gate = Arc::clone(&gate);
        async move {
            let svc = Rc::new(made.await?);
            Ok::<_, F::InitError>(fn_service(move |io: TcpStream| {
                let svc = Rc::clone(&svc);
                let gate = Arc::clone(&gate);
                async move {
                    match gate.enter() {
                        Some(ticket) => {
                            if let Some(answer) = conn::precheck(&io, head_timeout).await {
                                conn::answer_and_close(io, &answer).await;
                                drop(ticket);
                                return Ok(());
                            }
                            let served = svc.call(io).await;
                            drop(ticket);
                            served
                        }
                        None => {
                            conn::refuse(io, &gate).await;
                            Ok(())
                        }
                    }
                }
            }))
        }
    })
}

/// The `Expect: 100-continue` hook: [`expect_check`] before `100 Continue`.
fn expect_service(
    state: Data<AppState>,
) -> impl ServiceFactory<Request, Config = (), Response = Request, Error = Error, InitError = ()> + Clone
{
    fn_service(move |req: Request| {
        let checked = expect_check(&state, &req);
        std::future::ready(checked.map(|()| req).map_err(Error::from))
    })
}

/// Whether a request that waits for `100 Continue` may send its body: not
/// when its token is missing or wrong (401), nor when its declared length is
/// over the body limit (413). Either way its connection is then closed, as
/// its body is never read.
pub fn expect_check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let head = req.head();
    if let Some(token) = &state.auth_token
        && head.uri.path() != "/health"
        && !middleware::bearer_matches(head.headers.get(header::AUTHORIZATION), token)
    {
        return Err(ApiError::Unauthorized);
    }
    let limit = state.limits.max_body_bytes;
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    Ok(())
}
