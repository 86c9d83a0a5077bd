//! `/store`, the API of an older standard-library Python store that clients
//! migrate from (docs/API.md "The /store API"): `POST` creates, `PUT`
//! updates, `GET` and `DELETE` take `?key=K`. Same engine, same keys and the
//! same helpers as `/kv/{key}` ([`kv`]).
//!
//! Invariant: every write of `/store` (create, update, delete) runs under
//! its key's lock in [`KeyLocks`], so a create's or an update's check and its
//! write are one step among `/store`'s writes of that key: of concurrent
//! creates exactly one gets 201 and the others 409, and an update never
//! revives a key a concurrent delete removed. The engine has no
//! compare-and-set (a batch cannot be conditional), so the lock is the
//! server's: writes through `/kv` and `/kv/batch` do not take it, and one of
//! them landing between a check and its write is overwritten by that write.
//! An engine `PutIfAbsent` / `PutIfPresent` operation would close that gap.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::{Mutex, MutexGuard};

use crate::server::body::{JsonBody, parse_object};
use crate::server::error::{ApiError, BodyProblem};
use crate::server::routes::body_kv::{body_key, query_key};
use crate::server::routes::kv::{self, WriteBody};
use crate::server::state::AppState;

/// Locks per server: enough that unrelated keys rarely share one.
const STRIPES: usize = 256;

/// `GET /store?key=K` → `{"key": K, "value": v}` or 404.
pub async fn get(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let key = required_key(&req, &state)?;
    kv::read(&state, &key)
}

/// `DELETE /store?key=K` → `{"success": true, "deleted": true}` or 404.
pub async fn delete(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let key = required_key(&req, &state)?;
    let _locked = state.key_locks.lock(key.as_bytes()).await;
    kv::remove(&state, &key).await
}

/// `POST /store` with `{"key": k, "value": v, "ttl": s?}` → 201
/// `{"success": true, "key": k, "value": v}`, or 409 when `k` is live.
pub async fn create(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    conditional_write(&state, &body, Expect::Absent).await
}

/// `PUT /store` with `{"key": k, "value": v, "ttl": s?}` → 200
/// `{"success": true, "key": k, "value": v}`, or 404 when `k` is not live.
pub async fn update(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    conditional_write(&state, &body, Expect::Live).await
}

/// What a conditional write needs to find before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// No live value (a create).
    Absent,
    /// A live value (an update).
    Live,
}

async fn conditional_write(
    state: &AppState,
    body: &JsonBody,
    expect: Expect,
) -> Result<HttpResponse, ApiError> {
    let parsed: WriteBody<'_> = parse_object(body.text()?, BodyProblem::KeyedNotObject)?;
    let key = body_key(&parsed, state.max_key_bytes())?;
    let (value, ttl) = parsed.value_and_ttl()?;
    // A cluster decides the condition in the state machine, where every
    // node applies it at the same point of the log; a lock here would only
    // order this node's own requests.
    #[cfg(feature = "cluster")]
    if let Some(node) = &state.cluster {
        state.count(1);
        let applied = node
            .conditional(&key, &value, state.expiry(ttl), expect == Expect::Live)
            .await?;
        return match (applied, expect) {
            (false, Expect::Absent) => Err(ApiError::KeyExists),
            (false, Expect::Live) => Err(ApiError::KeyNotFound),
            (true, _) => {
                let mut out = kv::written(&key, &value);
                out.raw(b"}");
                Ok(match expect {
                    Expect::Absent => out.created(),
                    Expect::Live => out.ok(),
                })
            }
        };
    }
    let _locked = state.key_locks.lock(key.as_bytes()).await;
    let live = state.engine().get(key.as_bytes())?.is_some();
    match (expect, live) {
        (Expect::Absent, true) => {
            state.count(1);
            Err(ApiError::KeyExists)
        }
        (Expect::Live, false) => {
            state.count(1);
            Err(ApiError::KeyNotFound)
        }
        _ => {
            kv::write(state, &key, &value, ttl).await?;
            let mut out = kv::written(&key, &value);
            out.raw(b"}");
            Ok(match expect {
                Expect::Absent => out.created(),
                Expect::Live => out.ok(),
            })
        }
    }
}

/// The `key` query parameter `GET` and `DELETE /store` need.
fn required_key(req: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    query_key(req, state.max_key_bytes())?.ok_or(ApiError::MissingQuery {
        name: "key",
        example: "/store?key=<key>",
    })
}

/// Per-key async locks for check-then-write sequences, striped: a key maps to
/// one of a fixed set of locks, so memory stays bounded whatever the keys.
#[derive(Debug)]
pub struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl KeyLocks {
    /// Waits for `key`'s lock (without blocking the worker thread) and holds
    /// it until the guard is dropped.
    pub async fn lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)].lock().await
    }

    fn stripe(&self, key: &[u8]) -> usize {
        let len = self.stripes.len() as u64;
        // The remainder is below STRIPES, so it fits any usize.
        usize::try_from(self.hasher.hash_one(key) % len).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyLocks;

    #[actix_web::test]
    async fn a_key_lock_is_held_until_its_guard_drops() {
        let locks = KeyLocks::default();
        let held = locks.lock(b"k").await;
        let i = locks.stripe(b"k");
        assert!(locks.stripes[i].try_lock().is_err());
        drop(held);
        assert!(locks.stripes[i].try_lock().is_ok());
    }
}
