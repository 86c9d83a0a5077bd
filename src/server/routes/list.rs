//! `GET /kv`: the sorted listing of keys by prefix, paged with `limit`/`after`,
//! and with `values=true` the same listing of pairs,
//! `{"pairs": {"k1": v1, ...}}` (the older body-keyed store's "every pair as
//! one object", which a bare `GET /kv` no longer is).
//!
//! The body is streamed: the keydir is scanned a chunk of keys at a time
//! (each scan holds its read lock only for that chunk) and each chunk is sent
//! as it is written, so a listing of millions of keys is never built whole.
//! A listing is not a snapshot: keys written while it streams may or may not
//! appear, but every key appears at most once and in order. Pairs come from
//! the engine's (key, value) iterator (`pairs_page`), so a listed key always
//! comes with the value it had when its chunk was read.

use actix_web::web::{Bytes, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
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
    values: Option<String>,
}

/// What a listing lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"keys": [k, ...]}`.
    Keys,
    /// `{"pairs": {k: v, ...}}`.
    Pairs,
}

/// `GET /kv?prefix=&limit=&after=&values=` → `{"keys": [...], "next"?: k}`,
/// or with `values=true` `{"pairs": {...}, "next"?: k}`.
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
    let shape = match q.values.as_deref() {
        None | Some("false") => Shape::Keys,
        Some("true") => Shape::Pairs,
        Some(text) => {
            return Err(ApiError::InvalidQuery {
                name: "values",
                reason: format!("{text:?} is neither true nor false"),
            });
        }
    };
    state.count(1);
    let mut listing = Listing {
        shape,
        engine: state.engine(),
        prefix: q.prefix.unwrap_or_default().into_bytes(),
        after: q.after.map(String::into_bytes),
        remaining: limit,
        started: false,
        wrote_entry: false,
        done: false,
    };
    // The first chunk is read before answering, so a failure there is a JSON
    // error; a later one can only cut the body short (the status is sent).
    let first = listing.next_chunk().transpose()?;
    let rest = futures_util::stream::unfold(listing, |mut l| async move {
        l.next_chunk().map(|chunk| (chunk, l))
    });
    let stream = futures_util::stream::iter(first.map(Ok)).chain(rest);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(stream))
}

/// The state of one streamed listing.
struct Listing {
    shape: Shape,
    engine: Engine,
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    remaining: usize,
    started: bool,
    /// Whether any key or pair has been written (the next one needs a comma).
    wrote_entry: bool,
    done: bool,
}

impl Listing {
    /// The next piece of the body, `None` after the closing brace (or after
    /// an error, which ends the body).
    fn next_chunk(&mut self) -> Option<Result<Bytes, ApiError>> {
        if self.done {
            return None;
        }
        let (open, close) = match self.shape {
            Shape::Keys => (&b"{\"keys\":["[..], b']'),
            Shape::Pairs => (&b"{\"pairs\":{"[..], b'}'),
        };
        let mut out = Out::with_capacity(CHUNK * 24);
        if !self.started {
            out.raw(open);
            self.started = true;
        }
        // Kept across chunks, not derived from `started`: a chunk of pairs
        // whose keys all went before their values were read writes nothing.
        let mut first = !self.wrote_entry;
        let want = self.remaining.min(CHUNK);
        let mut last: Vec<u8> = Vec::new();
        let mut seen = 0usize;
        // Keys starting with 0xFF are a cluster node's reserved keys; no
        // UTF-8 key (every key a client can write) starts with that byte,
        // so they sort after every listed key and end the listing.
        let mut reserved = false;
        let mut comma = |out: &mut Out| {
            if !first {
                out.raw(b",");
            }
            first = false;
        };
        let end = match self.shape {
            Shape::Keys => {
                self.engine
                    .scan_prefix_with(&self.prefix, self.after.as_deref(), want, |k| {
                        if reserved || k.first() == Some(&RESERVED) {
                            reserved = true;
                            return;
                        }
                        comma(&mut out);
                        out.key(k);
                        last.clear();
                        last.extend_from_slice(k);
                        seen += 1;
                    })
            }
            Shape::Pairs => {
                let (pairs, end) =
                    match pairs_page(&self.engine, &self.prefix, self.after.as_deref(), want) {
                        Ok(page) => page,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    };
                for (k, v) in &pairs {
                    if let Some(v) = v {
                        comma(&mut out);
                        out.key(k).raw(b":").raw(v);
                    }
                }
                seen = pairs.len();
                if let Some((k, _)) = pairs.into_iter().next_back() {
                    last = k;
                }
                end
            }
        };
        self.wrote_entry = !first;
        self.remaining -= seen;
        let end = if reserved { ScanEnd::Exhausted } else { end };
        match end {
            ScanEnd::Exhausted => {
                out.raw(&[close, b'}']);
                self.done = true;
            }
            ScanEnd::More if self.remaining == 0 => {
                out.raw(&[close]).raw(b",\"next\":").key(&last).raw(b"}");
                self.done = true;
            }
            ScanEnd::More => self.after = Some(last),
        }
        Some(Ok(Bytes::from(out.into_bytes())))
    }
}

/// The first byte of the reserved keys a cluster node keeps beside the data.
const RESERVED: u8 = 0xFF;

/// A listed key and its value, `None` when it went before it was read.
type Pair = (Vec<u8>, Option<Vec<u8>>);

/// Up to `limit` live keys starting with `prefix`, after `after`, each with
/// its value, and whether more remain.
fn pairs_page(
    engine: &Engine,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Pair>, ScanEnd), ApiError> {
    use std::ops::Bound;
    // Keys and values come from one engine iterator, which holds the keydir's
    // read lock only per chunk, never across these copies.
    let from = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let mut pairs = Vec::with_capacity(limit.min(CHUNK));
    for pair in engine.range::<&[u8]>((from, Bound::Unbounded)) {
        let pair = pair?;
        if !pair.key().starts_with(prefix) || pair.key().first() == Some(&RESERVED) {
            return Ok((pairs, ScanEnd::Exhausted));
        }
        if pairs.len() == limit {
            return Ok((pairs, ScanEnd::More));
        }
        let (key, value) = pair.into_parts();
        pairs.push((key, Some(value)));
    }
    Ok((pairs, ScanEnd::Exhausted))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::{Listing, Shape};
    use crate::engine::clock::Clock;
    use crate::engine::{Batch, Engine, Expiry, Options, SyncMode};

    /// A clock one second later at every reading: a key expiring between two
    /// readings is live for the scan that lists it and gone for the read after.
    #[derive(Debug)]
    struct Ticking(AtomicU64);

    impl Clock for Ticking {
        fn now_ms(&self) -> u64 {
            self.0.fetch_add(1000, Ordering::SeqCst)
        }
    }

    #[test]
    fn pairs_listed_while_their_keys_expire_still_form_one_json_object() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(Ticking(AtomicU64::new(1_700_000_000_000)));
        let opts = Options {
            clock: clock.clone(),
            sync: SyncMode::Never,
            // No background reading of the clock while the listing runs.
            expiry_sweep_interval: Duration::from_secs(3600),
            ..Options::default()
        };
        let (engine, _) = Engine::open(dir.path(), opts).unwrap();
        let expiry = 1_800_000_000_000;
        let mut batch = Batch::new();
        for i in 0..super::CHUNK {
            batch.put_with_expiry(format!("a{i:05}").as_bytes(), b"0", Expiry::At(expiry));
        }
        batch.put(b"b", b"1");
        engine.apply(batch).unwrap();
        // The first chunk's scan reads `expiry - 500`, its first read `expiry + 500`.
        clock.0.store(expiry - 500, Ordering::SeqCst);
        let mut listing = Listing {
            shape: Shape::Pairs,
            engine,
            prefix: Vec::new(),
            after: None,
            remaining: usize::MAX,
            started: false,
            wrote_entry: false,
            done: false,
        };
        let mut chunks = Vec::new();
        while let Some(chunk) = listing.next_chunk() {
            chunks.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
        }
        // Whatever expired while the listing streamed, the body is one JSON
        // object with no stray comma, and the key that never expires is in it.
        let body: serde_json::Value = serde_json::from_str(&chunks.concat())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {chunks:?}"));
        let pairs = body["pairs"].as_object().expect("a pairs object");
        assert_eq!(pairs.get("b"), Some(&serde_json::json!(1)));
        assert!(pairs.keys().all(|k| k == "b" || k.starts_with('a')));
    }
}
