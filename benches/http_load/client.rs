//! The load generator: `conns` keep-alive HTTP/1.1 connections to one server,
//! each a task that sends one request, reads the whole response, checks it and
//! sends the next (closed loop, no pipelining). A connection is either hyper's
//! low-level `client::conn::http1` or the leaner [`RawConn`] (`raw.rs`).
//!
//! Every run is bounded twice: by a request budget shared by all connections
//! and by a deadline; whichever comes first stops it. Requests started during
//! the warm-up are sent and checked but not measured. Every response is
//! checked (status 200 and a JSON object body); anything else, or a transport
//! error, is counted as an error with the first one kept for the report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

use crate::common::Rng;
use crate::raw::RawConn;

/// What each request of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `PUT /kv/{key}`, keys uniform over the keyspace.
    Put,
    /// `GET /kv/{key}`, keys uniform over the (filled) keyspace.
    Get,
    /// 90 % `GET`, 10 % `PUT`, keys uniform.
    Mixed,
    /// `PUT` of every key of the keyspace once, in order (set-up for reads).
    Fill,
}

impl Workload {
    /// The label used in the report.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Put => "PUT",
            Workload::Get => "GET",
            Workload::Mixed => "90/10 GET/PUT",
            Workload::Fill => "fill",
        }
    }
}

/// The requests a run draws from: one URI per key and the one PUT body.
#[derive(Debug)]
pub struct Keys {
    uris: Vec<Uri>,
    put_body: Bytes,
}

impl Keys {
    /// `n` keys `bench00000000`, `bench00000001`, …; every PUT stores `value`
    /// (a JSON text).
    pub fn new(n: u64, value: &str) -> Keys {
        let uris = (0..n)
            .map(|i| Uri::try_from(format!("/kv/bench{i:08}")).unwrap())
            .collect();
        Keys {
            uris,
            put_body: Bytes::from(format!("{{\"value\":{value}}}")),
        }
    }

    fn len(&self) -> u64 {
        self.uris.len() as u64
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "i < len(), which came from a usize"
    )]
    fn path(&self, i: u64) -> &str {
        self.uris[i as usize].path()
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "i < len(), which came from a usize"
    )]
    fn request(&self, put: bool, i: u64) -> Request<Full<Bytes>> {
        let uri = self.uris[i as usize].clone();
        let builder = Request::builder()
            .uri(uri)
            .header(header::HOST, "127.0.0.1");
        if put {
            builder
                .method(Method::PUT)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(self.put_body.clone()))
        } else {
            builder.method(Method::GET).body(Full::new(Bytes::new()))
        }
        .unwrap()
    }
}

/// How long and how hard one run drives the server.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// What the requests are.
    pub workload: Workload,
    /// Concurrent keep-alive connections, one request in flight on each.
    pub conns: usize,
    /// Most requests sent in the whole run, warm-up included.
    pub max_requests: u64,
    /// Requests started before this much time has passed are not measured.
    pub warm_up: Duration,
    /// Measured time after the warm-up; no request starts after it.
    pub measure: Duration,
    /// Which HTTP client the connections use.
    pub client: ClientKind,
}

/// The HTTP/1.1 client implementation of a run's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// hyper 1's `client::conn::http1`: general, one driver task per connection.
    Hyper,
    /// [`RawConn`]: one write and one read per request, strict framing.
    Raw,
}

impl ClientKind {
    /// The label used in the report.
    pub fn label(self) -> &'static str {
        match self {
            ClientKind::Hyper => "hyper",
            ClientKind::Raw => "raw",
        }
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Measured requests answered correctly.
    pub requests: u64,
    /// Requests answered wrongly or failed, warm-up included.
    pub errors: u64,
    /// What went wrong first, if anything did.
    pub first_error: Option<String>,
    /// From the end of the warm-up to the last measured answer.
    pub elapsed: Duration,
    /// Latency of every measured request, in nanoseconds, sorted.
    latencies_ns: Vec<u32>,
}

impl Outcome {
    /// Measured requests per second.
    pub fn rps(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.requests as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// The `p`-th percentile latency (0 < p < 100).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank within 0..len"
    )]
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies_ns.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies_ns.len() - 1) as f64 * p / 100.0).round() as usize;
        Duration::from_nanos(u64::from(self.latencies_ns[rank]))
    }
}

/// Drives the server at `addr` with `load` on the client runtime `rt` and
/// returns when every connection has stopped (budget spent or deadline passed).
pub fn run(rt: &Runtime, addr: SocketAddr, keys: &Arc<Keys>, load: Load, seed: u64) -> Outcome {
    assert!(
        addr.ip().is_loopback(),
        "load only goes to loopback, not {addr}"
    );
    let claimed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let window = Window {
        start: t0 + load.warm_up,
        deadline: t0 + load.warm_up + load.measure,
        max_requests: load.max_requests,
    };
    let tasks = rt.block_on(async {
        let handles: Vec<_> = (0..load.conns)
            .map(|c| {
                let keys = Arc::clone(keys);
                let claimed = Arc::clone(&claimed);
                let seed = seed.wrapping_mul(1000).wrapping_add(c as u64);
                tokio::spawn(connection(addr, keys, load, claimed, window, seed))
            })
            .collect();
        let mut tasks = Vec::with_capacity(handles.len());
        for h in handles {
            tasks.push(h.await.expect("connection task panicked"));
        }
        tasks
    });
    let mut out = Outcome {
        requests: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies_ns: Vec::new(),
    };
    let mut last = window.start;
    for t in tasks {
        out.errors += t.errors;
        if out.first_error.is_none() {
            out.first_error = t.first_error;
        }
        last = last.max(t.last_answer);
        out.latencies_ns.extend_from_slice(&t.latencies_ns);
    }
    out.requests = out.latencies_ns.len() as u64;
    out.elapsed = last - window.start;
    out.latencies_ns.sort_unstable();
    out
}

/// The time and count bounds of a run, shared by its connections.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    deadline: Instant,
    max_requests: u64,
}

/// What one connection saw.
#[derive(Debug)]
struct Task {
    errors: u64,
    first_error: Option<String>,
    latencies_ns: Vec<u32>,
    last_answer: Instant,
}

impl Task {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

async fn connection(
    addr: SocketAddr,
    keys: Arc<Keys>,
    load: Load,
    claimed: Arc<AtomicU64>,
    window: Window,
    seed: u64,
) -> Task {
    let mut task = Task {
        errors: 0,
        first_error: None,
        latencies_ns: Vec::with_capacity(1 << 16),
        last_answer: window.start,
    };
    let mut conn = match Conn::open(addr, load.client).await {
        Ok(c) => c,
        Err(e) => {
            task.error(format!("connecting to {addr}: {e}"));
            return task;
        }
    };
    let mut rng = Rng::new(seed);
    let n_keys = keys.len();
    loop {
        let n = claimed.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        if n >= window.max_requests || sent >= window.deadline {
            break;
        }
        let (put, key) = match load.workload {
            Workload::Fill => (true, n % n_keys),
            Workload::Put => (true, rng.below(n_keys)),
            Workload::Get => (false, rng.below(n_keys)),
            Workload::Mixed => (rng.below(10) == 0, rng.below(n_keys)),
        };
        match conn.exchange(&keys, put, key).await {
            Ok(None) => {
                if sent >= window.start {
                    let answered = Instant::now();
                    let ns = (answered - sent).as_nanos();
                    task.latencies_ns
                        .push(u32::try_from(ns).unwrap_or(u32::MAX));
                    task.last_answer = answered;
                }
            }
            Ok(Some(wrong)) => {
                let method = if put { "PUT" } else { "GET" };
                task.error(format!("{method} bench{key:08}: {wrong}"));
            }
            Err(e) => {
                task.error(format!("transport: {e}"));
                break;
            }
        }
    }
    task
}

/// A connection of either client kind.
enum Conn {
    Hyper(SendRequest<Full<Bytes>>),
    Raw(RawConn),
}

impl Conn {
    async fn open(addr: SocketAddr, kind: ClientKind) -> Result<Conn, BoxError> {
        Ok(match kind {
            ClientKind::Hyper => Conn::Hyper(connect(addr).await?),
            ClientKind::Raw => Conn::Raw(RawConn::connect(addr).await?),
        })
    }

    /// Sends the PUT or GET of key `i` and checks the answer: `Ok(None)` when
    /// it is right (200 and a JSON object), `Ok(Some(what))` when it is not.
    async fn exchange(
        &mut self,
        keys: &Keys,
        put: bool,
        i: u64,
    ) -> Result<Option<String>, BoxError> {
        let (status, body_ok, body) = match self {
            Conn::Hyper(sender) => {
                let (status, body) = exchange(sender, keys.request(put, i)).await?;
                let ok = body.first() == Some(&b'{');
                (status.as_u16(), ok, body)
            }
            Conn::Raw(raw) => {
                let (method, body) = if put {
                    ("PUT", Some(&keys.put_body[..]))
                } else {
                    ("GET", None)
                };
                let resp = raw.exchange(method, keys.path(i), body).await?;
                let ok = resp.body.first() == Some(&b'{');
                if resp.status == 200 && ok {
                    return Ok(None);
                }
                (resp.status, ok, Bytes::copy_from_slice(resp.body))
            }
        };
        if status == 200 && body_ok {
            Ok(None)
        } else {
            Ok(Some(format!("{status} {}", String::from_utf8_lossy(&body))))
        }
    }
}

/// Opens one keep-alive connection (Nagle off) and spawns its driver task.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; a failure
        // shows up as an error of the request in flight.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads its whole response.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), BoxError> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
