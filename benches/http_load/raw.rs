//! A minimal HTTP/1.1 keep-alive client connection: writes each request with
//! one `write`, parses the response head with `httparse` and reads exactly
//! `Content-Length` body bytes. It costs the client a fraction of what a
//! general client does (no driver task, no channel, no header map), which on
//! 2 shared cores is CPU the server keeps.
//!
//! It is strict rather than general: a response without `Content-Length`, with
//! `Transfer-Encoding`, with `Connection: close`, or that does not parse is an
//! error, so it can never misframe a response and count it as a success.

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most response headers accepted.
const MAX_HEADERS: usize = 32;
/// Largest response head or body accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// One keep-alive connection.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    out: Vec<u8>,
    /// Received bytes; `buf[..start]` belong to responses already returned.
    buf: Vec<u8>,
    start: usize,
}

/// A response: its status and body.
#[derive(Debug)]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// The body, exactly `Content-Length` bytes.
    pub body: &'a [u8],
}

impl RawConn {
    /// Connects to `addr` with Nagle off.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            out: Vec::with_capacity(512),
            buf: Vec::with_capacity(4096),
            start: 0,
        })
    }

    /// Sends `method path` (with a JSON `body` when given) and reads the response.
    pub async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response<'_>> {
        self.out.clear();
        for part in [method, " ", path, " HTTP/1.1\r\nhost: 127.0.0.1\r\n"] {
            self.out.extend_from_slice(part.as_bytes());
        }
        if let Some(body) = body {
            // Writing into a Vec cannot fail.
            let _ = write!(
                self.out,
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            self.out.extend_from_slice(body);
        } else {
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.out).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> std::io::Result<Response<'_>> {
        // Drop what earlier responses used (normally everything: no pipelining).
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let (head_len, status, body_len) = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            self.fill().await?;
        };
        let end = head_len + body_len;
        while self.buf.len() < end {
            self.fill().await?;
        }
        self.start = end;
        Ok(Response {
            status,
            body: &self.buf[head_len..end],
        })
    }

    /// Reads more bytes into `buf`; the peer closing is an error.
    async fn fill(&mut self) -> std::io::Result<()> {
        if self.buf.len() > MAX_RESPONSE {
            return Err(invalid("response larger than 1 MiB"));
        }
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }
}

/// `(head length, status, body length)` once the head is complete.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<(usize, u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("bad response head: {e}"))),
    };
    let status = resp.code.ok_or_else(|| invalid("no status code"))?;
    let mut body_len = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n <= MAX_RESPONSE)
                .ok_or_else(|| invalid("bad content-length"))?;
            body_len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("transfer-encoding is not supported"));
        } else if h.name.eq_ignore_ascii_case("connection")
            && h.value.eq_ignore_ascii_case(b"close")
        {
            return Err(invalid("server asked to close the connection"));
        }
    }
    let body_len = body_len.ok_or_else(|| invalid("response without content-length"))?;
    Ok(Some((head_len, status, body_len)))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}
