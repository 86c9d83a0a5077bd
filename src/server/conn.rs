//! The cap on open connections.
//!
//! Every open connection holds a file descriptor. Without a cap, clients that
//! connect and stall (1,100 of them were enough) take every descriptor of the
//! process: then no client can connect and the engine cannot open a data
//! file. So the server counts its open connections ([`Gate`]) and answers a
//! connection over the cap at once with a 503 `{"error": ...}` and closes it
//! ([`refuse`]), instead of letting it wait in the accept queue or hold a
//! descriptor. The default cap ([`default_cap`]) is the process's open-file
//! limit (`RLIMIT_NOFILE`) less [`FD_HEADROOM`] descriptors for data files,
//! listeners and the runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::rt::net::TcpStream;

use super::errlog;

/// Descriptors left to everything but connections: segments and hint files
/// the engine opens, compaction outputs, listeners, the runtime's own, and the
/// refused connections still being closed.
pub const FD_HEADROOM: usize = 256;

/// The smallest cap [`default_cap`] picks, even under a tiny fd limit.
const MIN_CAP: usize = 16;

/// How long a refused connection may take to send what it already had in
/// flight: reading it before closing lets the client read the 503 instead of
/// a reset.
const REFUSE_DRAIN: Duration = Duration::from_millis(500);

/// Counts open connections against a cap.
#[derive(Debug)]
pub struct Gate {
    open: AtomicUsize,
    cap: usize,
}

/// One admitted connection; dropping it (when the connection ends) frees its place.
#[derive(Debug)]
pub struct Ticket(Arc<Gate>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate admitting at most `cap` connections at once.
    pub fn new(cap: usize) -> Arc<Gate> {
        Arc::new(Gate {
            open: AtomicUsize::new(0),
            cap: cap.max(1),
        })
    }

    /// Admits one more connection, or `None` when `cap` are open.
    pub fn enter(self: &Arc<Self>) -> Option<Ticket> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.cap {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket(Arc::clone(self)))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// The soft `RLIMIT_NOFILE` of this process, when it can be read.
pub fn fd_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        #[allow(unsafe_code, reason = "getrlimit(2) has no safe wrapper in std")]
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY {
            return Some(lim.rlim_cur);
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The cap for an fd limit of `limit` (`None`: unknown, taken as 1024).
pub fn default_cap(limit: Option<u64>) -> usize {
    let limit = usize::try_from(limit.unwrap_or(1024)).unwrap_or(usize::MAX);
    limit.saturating_sub(FD_HEADROOM).max(MIN_CAP)
}

/// The cap to use: `requested` when given (it must leave [`FD_HEADROOM`]
/// descriptors under the fd limit), else [`default_cap`].
pub fn resolve_cap(requested: Option<usize>, limit: Option<u64>) -> Result<usize, String> {
    match requested {
        None | Some(0) => Ok(default_cap(limit)),
        Some(n) => match limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)) {
            Some(l) if n > l.saturating_sub(FD_HEADROOM) => Err(format!(
                "{n} connections would leave fewer than {FD_HEADROOM} of the {l} open files \
                 this process may have (ulimit -n) to data files; raise the limit or lower the cap"
            )),
            _ => Ok(n),
        },
    }
}

/// The whole answer to a connection over the cap.
fn refusal(cap: usize) -> Vec<u8> {
    closing_answer(
        "503 Service Unavailable",
        "retry-after: 1\r\n",
        &format!("server busy: all {cap} connections are in use; retry shortly"),
    )
}

/// A whole response `{"error": message}` with `status` (code and reason) and
/// `extra` header lines, saying the connection closes after it.
fn closing_answer(status: &str, extra: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the cap with 503 and closes it, without reading
/// a request from it (so nothing it sends is acted on).
pub async fn refuse(io: TcpStream, gate: &Gate) {
    errlog::warn(&format!(
        "refusing connections: all {} are in use (--max-connections)",
        gate.cap()
    ));
    answer_and_close(io, &refusal(gate.cap())).await;
}

/// Writes `answer` (a whole response) and closes `io` without acting on
/// anything the client sends.
pub async fn answer_and_close(io: TcpStream, answer: &[u8]) {
    // A fresh socket's send buffer takes the whole short answer; a client
    // that does not let it in gets the close alone, which also says "refused".
    let write = async {
        let mut rest = answer;
        while !rest.is_empty() {
            if io.writable().await.is_err() {
                return;
            }
            match io.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_DRAIN, write).await;
    let _ = shutdown_write(&io);
    // Read (and drop) what the client sends until it closes, briefly: closing
    // with unread data would reset the connection and could destroy the
    // answer before the client reads it.
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        loop {
            if io.readable().await.is_err() {
                return;
            }
            match io.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => {
                    left = left.saturating_sub(n);
                    if left == 0 {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_DRAIN, drain).await;
}

/// Most headers actix-http's decoder takes; more is 431 there.
const MAX_HEADERS: usize = 96;
/// An unfinished head this long is 431 in actix-http's decoder.
const MAX_HEAD_BYTES: usize = 131_072;

/// A JSON error answer that closes the connection.
fn protocol_error(status: u16, reason: &str, message: &str) -> Vec<u8> {
    closing_answer(&format!("{status} {reason}"), "", message)
}

/// What the first request head of a connection gets, if actix-http's decoder
/// would refuse it: that decoder answers its own parse errors with an empty
/// body and offers no hook, so the head is read ahead here (peeked, not
/// consumed) and a JSON 400 or 431 given in its place. `None`: hand the
/// connection to actix as it is (a good head, or none complete by `wait`, so
/// actix's own head timeout answers 408). Later heads on a kept-alive
/// connection are actix's alone.
pub async fn precheck(io: &TcpStream, wait: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(wait, precheck_head(io))
        .await
        .ok()
        .flatten()
}

async fn precheck_head(io: &TcpStream) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    let mut seen = 0;
    let mut pause = Duration::from_millis(2);
    loop {
        let n = match io.peek(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        match judge_head(&buf[..n]) {
            Head::Good => return None,
            Head::Bad(answer) => return Some(answer),
            Head::Partial if n >= MAX_HEAD_BYTES => {
                return Some(protocol_error(
                    431,
                    "Request Header Fields Too Large",
                    "request head too large",
                ));
            }
            Head::Partial if n == buf.len() => buf.resize(buf.len() * 2, 0),
            Head::Partial => {
                // peek does not wait for more bytes than it saw: back off.
                if n == seen {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                seen = n;
            }
        }
    }
}

enum Head {
    Good,
    Partial,
    Bad(Vec<u8>),
}

/// The checks of actix-http's request decoder whose failures it answers with
/// an empty 400 or 431.
fn judge_head(bytes: &[u8]) -> Head {
    let bad = |m: &str| Head::Bad(protocol_error(400, "Bad Request", m));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::Bad(protocol_error(
            431,
            "Request Header Fields Too Large",
            &format!("more than {MAX_HEADERS} request headers"),
        )),
        Err(e) => bad(&format!("malformed request: {e}")),
        Ok(httparse::Status::Complete(_)) => {
            let method = req.method.unwrap_or_default();
            if actix_web::http::Method::from_bytes(method.as_bytes()).is_err() {
                return bad("malformed request: invalid method");
            }
            let path = req.path.unwrap_or_default();
            if actix_web::http::Uri::try_from(path).is_err() {
                return bad("malformed request: invalid request target");
            }
            let has = |name: &str| {
                req.headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(name))
            };
            if req.version == Some(1) && !has("host") {
                return bad("malformed request: HTTP/1.1 without a Host header");
            }
            let bad_length = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("content-length")
                    && std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .is_none()
            });
            if bad_length {
                return bad("malformed request: invalid Content-Length header");
            }
            Head::Good
        }
    }
}

#[cfg(unix)]
fn shutdown_write(io: &TcpStream) -> std::io::Result<()> {
    use std::mem::ManuallyDrop;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: the descriptor stays owned by `io` (ManuallyDrop never closes
    // it); the std stream only borrows it for one shutdown(2).
    #[allow(
        unsafe_code,
        reason = "a half-close of a descriptor tokio owns; std has no borrowed form"
    )]
    let std = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(io.as_raw_fd()) });
    std.shutdown(std::net::Shutdown::Write)
}

#[cfg(not(unix))]
fn shutdown_write(_io: &TcpStream) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_cap_and_frees_places_on_drop() {
        let gate = Gate::new(2);
        let a = gate.enter();
        let b = gate.enter();
        assert!(a.is_some() && b.is_some());
        assert!(gate.enter().is_none());
        assert_eq!(gate.open(), 2);
        drop(a);
        assert!(gate.enter().is_some());
        assert_eq!(gate.open(), 1);
    }

    #[test]
    fn the_default_cap_leaves_headroom_under_the_fd_limit() {
        assert_eq!(default_cap(Some(1024)), 1024 - FD_HEADROOM);
        assert_eq!(default_cap(Some(100)), MIN_CAP);
        assert!(resolve_cap(Some(1000), Some(1024)).is_err());
        assert_eq!(resolve_cap(Some(500), Some(1024)), Ok(500));
        assert_eq!(resolve_cap(None, Some(4096)), Ok(4096 - FD_HEADROOM));
        assert_eq!(resolve_cap(Some(10), None), Ok(10));
    }

    #[test]
    fn the_refusal_is_a_complete_json_503() {
        let text = String::from_utf8(refusal(7)).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert!(v["error"].as_str().unwrap_or("").contains("7 connections"));
    }
}
