//! The HTTP [`Target`]: each operation is one request of the API contract
//! (`GET/PUT/DELETE /kv/{key}`, `GET /kv`, `POST /kv/batch`, `GET /stats`)
//! on a blocking keep-alive connection (ureq).
//!
//! Invariants: keys are percent-encoded (every byte but the unreserved ones),
//! so `/`, `%`, `?`, spaces and non-ASCII keys reach the server as typed;
//! values are spliced from and into bodies as raw JSON text, never re-encoded.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BatchOp, ClientError, Page, Target, TargetArgs, Write};
use crate::cli::CliError;

/// A server at a base URL, with an optional bearer token.
#[derive(Debug)]
pub struct Http {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// What a request got back: status and body text.
struct Answer {
    status: u16,
    body: String,
    url: String,
}

impl Http {
    /// A client for `args.url`; only `http://` URLs (this build has no TLS).
    pub fn new(args: &TargetArgs) -> Result<Http, CliError> {
        let base = args.url.trim_end_matches('/').to_string();
        let invalid = |reason: &str| CliError::Invalid {
            flag: "--url",
            reason: format!("{:?}: {reason}", args.url),
        };
        let Some(host) = base.strip_prefix("http://") else {
            return Err(invalid(if base.starts_with("https://") {
                "https is not supported; put a TLS proxy's plain side or the server's own http address"
            } else {
                "must start with http://"
            }));
        };
        if host.is_empty() {
            return Err(invalid("has no host"));
        }
        let config = ureq::Agent::config_builder()
            // The API's error statuses carry a JSON body we report ourselves.
            .http_status_as_error(false)
            .timeout_global(Some(args.timeout))
            .build();
        Ok(Http {
            agent: ureq::Agent::new_with_config(config),
            base,
            token: args.auth_token.clone().filter(|t| !t.is_empty()),
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let sent = match body {
            Some(b) => {
                let req = req
                    .header("Content-Type", "application/json")
                    .body(b)
                    .map_err(|e| bad(&url, &e.to_string()))?;
                self.agent.run(req)
            }
            None => {
                let req = req.body(()).map_err(|e| bad(&url, &e.to_string()))?;
                self.agent.run(req)
            }
        };
        let mut resp = sent.map_err(|e| match e {
            ureq::Error::Timeout(_) => ClientError::Unreachable {
                url: self.base.clone(),
                reason: "timed out (see --timeout)".into(),
            },
            other => ClientError::Unreachable {
                url: self.base.clone(),
                reason: other.to_string(),
            },
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            // Values may be as large as the server's body limit allows.
            .limit(u64::MAX)
            .read_to_string()
            .map_err(|e| bad(&url, &e.to_string()))?;
        Ok(Answer { status, body, url })
    }

    /// `POST /admin/backup {"to": to}` (`kvstore backup --url`): the report
    /// as the server's JSON text.
    pub fn backup(&self, to: &str) -> Result<String, ClientError> {
        let body = format!("{{\"to\":{}}}", json_string(to));
        let answer = Self::ok(self.request("POST", "/admin/backup", Some(body))?)?;
        Ok(answer.body)
    }

    /// The answer when it is a success, `None` when 404, else the server's error.
    fn found(answer: Answer) -> Result<Option<Answer>, ClientError> {
        if answer.status == 404 {
            return Ok(None);
        }
        Self::ok(answer).map(Some)
    }

    /// The answer when it is a success, else the server's error.
    fn ok(answer: Answer) -> Result<Answer, ClientError> {
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = match serde_json::from_str::<ErrorBody>(&answer.body) {
            Ok(e) => e.error,
            Err(_) => answer.body.chars().take(200).collect(),
        };
        Err(ClientError::Server {
            status: answer.status,
            message,
        })
    }
}

fn bad(url: &str, reason: &str) -> ClientError {
    ClientError::BadResponse {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn parse<'a, T: Deserialize<'a>>(answer: &'a Answer) -> Result<T, ClientError> {
    serde_json::from_str(&answer.body).map_err(|e| bad(&answer.url, &e.to_string()))
}

/// `text` with every byte outside `A-Z a-z 0-9 - . _ ~` as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `"ttl": n` for a body, or nothing.
fn ttl_field(ttl: Option<f64>) -> String {
    match ttl {
        Some(s) if s.is_finite() => format!(",\"ttl\":{s}"),
        _ => String::new(),
    }
}

impl Target for Http {
    fn get(&self, key: &str) -> Result<Option<String>, ClientError> {
        #[derive(Deserialize)]
        struct Got<'a> {
            #[serde(borrow)]
            value: &'a RawValue,
        }
        let answer = self.request("GET", &format!("/kv/{}", percent_encode(key)), None)?;
        let Some(answer) = Self::found(answer)? else {
            return Ok(None);
        };
        let got: Got<'_> = parse(&answer)?;
        Ok(Some(got.value.get().to_string()))
    }

    fn put(&self, key: &str, write: &Write) -> Result<bool, ClientError> {
        #[derive(Deserialize)]
        struct Put {
            created: bool,
        }
        let body = format!("{{\"value\":{}{}}}", write.value, ttl_field(write.ttl));
        let answer = self.request("PUT", &format!("/kv/{}", percent_encode(key)), Some(body))?;
        let answer = Self::ok(answer)?;
        Ok(parse::<Put>(&answer)?.created)
    }

    fn delete(&self, key: &str) -> Result<bool, ClientError> {
        let answer = self.request("DELETE", &format!("/kv/{}", percent_encode(key)), None)?;
        Ok(Self::found(answer)?.is_some())
    }

    fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Page, ClientError> {
        #[derive(Deserialize)]
        struct Listed {
            keys: Vec<String>,
            #[serde(default)]
            next: Option<String>,
        }
        let mut path = format!("/kv?prefix={}&limit={limit}", percent_encode(prefix));
        if let Some(a) = after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        let answer = self.request("GET", &path, None)?;
        let answer = Self::ok(answer)?;
        let listed: Listed = parse(&answer)?;
        Ok(Page {
            more: listed.next.is_some(),
            keys: listed.keys,
        })
    }

    fn batch(&self, ops: &[BatchOp]) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Results<'a> {
            #[serde(borrow)]
            results: Vec<&'a RawValue>,
        }
        let mut body = String::from("{\"operations\":[");
        for (i, op) in ops.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            match op {
                BatchOp::Set { key, write } => body.push_str(&format!(
                    "{{\"op\":\"set\",\"key\":{},\"value\":{}{}}}",
                    json_string(key),
                    write.value,
                    ttl_field(write.ttl)
                )),
                BatchOp::Get { key } => {
                    body.push_str(&format!("{{\"op\":\"get\",\"key\":{}}}", json_string(key)));
                }
                BatchOp::Delete { key } => {
                    body.push_str(&format!(
                        "{{\"op\":\"delete\",\"key\":{}}}",
                        json_string(key)
                    ));
                }
            }
        }
        body.push_str("]}");
        let answer = self.request("POST", "/kv/batch", Some(body))?;
        let answer = Self::ok(answer)?;
        let results: Results<'_> = parse(&answer)?;
        Ok(results
            .results
            .iter()
            .map(|r| r.get().to_string())
            .collect())
    }

    fn stats(&self) -> Result<String, ClientError> {
        let answer = self.request("GET", "/stats", None)?;
        let answer = Self::ok(answer)?;
        // Re-emitted compact on one line, whatever the server's spacing.
        let raw: &RawValue = parse(&answer)?;
        Ok(String::from_utf8_lossy(&crate::server::minify(raw.get())).into_owned())
    }

    fn close(self: Box<Self>) -> Result<(), ClientError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn reserved_bytes_and_non_ascii_are_escaped() {
        assert_eq!(percent_encode("a/b c%?"), "a%2Fb%20c%25%3F");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("user:1"), "user%3A1");
        assert_eq!(percent_encode("A-z.0_~"), "A-z.0_~");
    }
}
