//! `GET /kv`: the sorted listing of keys by prefix, paged with `limit`/`after`.
//!
//! The body is streamed: the keydir is scanned a chunk of keys at a time
//! (each scan holds its read lock only for that chunk) and each chunk is sent
//! as it is written, so a listing of millions of keys is never built whole.
//! A listing is not a snapshot: keys written while it streams may or may not
//! appear, but every key appears at most once and in order.

use std::convert::Infallible;

use actix_web::web::{Bytes, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::engine::{Engine, ScanEnd};
use crate::server::body::Out;
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Keys per keydir scan and per body chunk.
const CHUNK: usize = 1024;

#[derive(Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /kv?prefix=&limit=&after=` → `{"keys": [...], "next"?: k}`.
pub async fn list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::InvalidQuery {
            name: "query",
            reason: e.to_string(),
        })?
        .into_inner();
    let limit = match q.limit.as_deref() {
        None => usize::MAX,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::InvalidQuery {
                    name: "limit",
                    reason: format!("{text:?} is not a positive integer"),
                });
            }
        },
    };
    state.count(1);
    let listing = Listing {
        engine: state.engine.clone(),
        prefix: q.prefix.unwrap_or_default().into_bytes(),
        after: q.after.map(String::into_bytes),
        remaining: limit,
        started: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(listing, |mut l| async move {
        l.next_chunk().map(|b| (Ok::<_, Infallible>(b), l))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(stream))
}

/// The state of one streamed listing.
struct Listing {
    engine: Engine,
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    remaining: usize,
    started: bool,
    done: bool,
}

impl Listing {
    /// The next piece of the body, `None` after the closing brace.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = Out::with_capacity(CHUNK * 24);
        // True until the listing's first key is written: a chunk after the
        // first always follows at least one key (it only exists after `More`).
        let mut first = !self.started;
        if first {
            out.raw(b"{\"keys\":[");
            self.started = true;
        }
        let want = self.remaining.min(CHUNK);
        let mut last: Vec<u8> = Vec::new();
        let mut seen = 0usize;
        let end = self
            .engine
            .scan_prefix_with(&self.prefix, self.after.as_deref(), want, |k| {
                if !first {
                    out.raw(b",");
                }
                first = false;
                out.key(k);
                last.clear();
                last.extend_from_slice(k);
                seen += 1;
            });
        self.remaining -= seen;
        match end {
            ScanEnd::Exhausted => {
                out.raw(b"]}");
                self.done = true;
            }
            ScanEnd::More if self.remaining == 0 => {
                out.raw(b"],\"next\":").key(&last).raw(b"}");
                self.done = true;
            }
            ScanEnd::More => self.after = Some(last),
        }
        Some(Bytes::from(out.into_bytes()))
    }
}
