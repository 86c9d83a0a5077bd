//! Starting the binary, a minimal blocking HTTP/1.1 client, and signals.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kvstore");

/// A free port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `kvstore` server; killed on drop if still running.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// Starts `kvstore --port <free>` with `DATA_DIR=dir`, extra `args` and `env`,
/// and waits until `/health` answers.
pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log = dir.with_extension(format!("{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--port")
        .arg(port.to_string())
        .args(args)
        .env("DATA_DIR", dir)
        .env_remove("PORT")
        .env_remove("KVSTORE_AUTH_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let mut server = Server { child, port, log };
    server.wait_ready();
    server
}

impl Server {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited early ({status}): {}", self.log_text());
            }
            if let Ok(r) = try_request(self.port, "GET", "/health", None, &[])
                && r.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become ready: {}", self.log_text());
    }

    /// What the server has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request with a JSON body (or none).
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        request(self.port, method, path, body, &[])
    }

    /// Sends `sig` to the server by PID.
    #[allow(unsafe_code, reason = "audited: see the SAFETY comments")]
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's PID has no memory-safety effects.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits up to `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, and asserts a clean exit within 5 s.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| s.success()),
            "exit {status:?}: {}",
            self.log_text()
        );
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts `{"error": <string>}` with `status` and a JSON content type.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        assert_eq!(v.as_object().unwrap().len(), 1, "{}", self.body);
        v["error"].as_str().unwrap().to_string()
    }
}

/// A request that must get a response.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    try_request(port, method, path, body, headers)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One request on a new connection (`Connection: close`).
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    try_request_within(port, method, path, body, headers, Duration::from_secs(10))
}

/// [`try_request`] that gives up after `limit` of silence from the server
/// (connecting, sending, or waiting for the answer), so a client of a paused
/// process (SIGSTOP: the kernel still accepts its connections) is not stuck.
pub fn try_request_within(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    limit: Duration,
) -> std::io::Result<Resp> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or("").as_bytes());
    exchange_within(port, &bytes, limit)
}

/// Sends `request` exactly as given on a new connection (it should say
/// `Connection: close`) and parses the response.
pub fn exchange(port: u16, request: &[u8]) -> std::io::Result<Resp> {
    exchange_within(port, request, Duration::from_secs(10))
}

/// [`exchange`] with `limit` on connecting and on each read and write.
pub fn exchange_within(port: u16, request: &[u8], limit: Duration) -> std::io::Result<Resp> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    s.write_all(request)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| std::io::Error::other("malformed response"))
}

/// A response head: status, headers, and the offset its body starts at.
pub type Head = (u16, Vec<(String, String)>, usize);

/// The head of the response at the start of `raw`; `None` until it is
/// complete (or if it is malformed).
pub fn parse_head(raw: &[u8]) -> Option<Head> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((status, headers, split + 4))
}

fn parse(raw: &[u8]) -> Option<Resp> {
    let (status, headers, body_at) = parse_head(raw)?;
    let mut body = raw[body_at..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Resp {
        status,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Runs the binary to completion with `args`, returning (status, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATA_DIR")
        .env_remove("PORT")
        .env_remove("KVSTORE_AUTH_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Client commands (`kvstore get`, `shell`, …) of the real binary, with a
// clean environment, optional stdin, and their exit code.

/// What a client command did.
#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Done {
    /// Asserts exit code `code`, and (for failures) one line on stderr
    /// that starts with `kvstore: ` and contains `needle`.
    pub fn assert(&self, code: i32, needle: &str) -> &Done {
        assert_eq!(self.code, code, "{self:?}");
        if code != 0 {
            assert_eq!(self.err.lines().count(), 1, "{self:?}");
            assert!(self.err.starts_with("kvstore: "), "{self:?}");
            assert!(self.err.contains(needle), "{needle:?} not in {self:?}");
        }
        self
    }
}

/// `kvstore args...` with `env` and `stdin`, none of the store's variables
/// inherited.
pub fn kv(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Done {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATA_DIR")
        .env_remove("PORT")
        .env_remove("KVSTORE_AUTH_TOKEN")
        .env_remove("KVSTORE_URL")
        .env_remove("KVSTORE_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Done {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--url http://127.0.0.1:port`.
pub fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}
