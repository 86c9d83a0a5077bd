//! The body-keyed `/kv` of an older sharded store that clients migrate from:
//! `PUT /kv` with `{"key", "value", "ttl"?}`, `GET /kv?key=K`, `DELETE /kv`
//! with `{"key"}` (docs/API.md "Body-keyed /kv").
//!
//! Same engine, same keys and same answers as `/kv/{key}` ([`kv`]): only the
//! key's place differs. Where the shapes collide the current API wins: a
//! `GET /kv` without `key` is the key listing ([`list`]), and the older "every
//! pair as one object" is `GET /kv?values=true`.

use actix_web::web::{Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::server::body::{JsonBody, parse_object};
use crate::server::error::{ApiError, BodyProblem, KeyProblem};
use crate::server::key;
use crate::server::routes::kv::{self, WriteBody};
use crate::server::routes::list;
use crate::server::state::AppState;

/// `GET /kv?key=K` → as `GET /kv/K`; without `key`, the listing of `GET /kv`.
pub async fn get(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    match query_key(&req, state.max_key_bytes())? {
        Some(key) => kv::read(&state, &key),
        None => list::list(req, state).await,
    }
}

/// `PUT /kv` with `{"key": k, "value": v, "ttl": s?}` → as `PUT /kv/k`.
pub async fn put(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let parsed: WriteBody<'_> = parse_object(body.text()?, BodyProblem::KeyedNotObject)?;
    let key = body_key(&parsed, state.max_key_bytes())?;
    let (value, ttl) = parsed.value_and_ttl()?;
    let prior = kv::write(&state, &key, &value, ttl).await?;
    Ok(kv::written_with_created(&key, &value, prior))
}

/// `DELETE /kv` with `{"key": k}` → as `DELETE /kv/k`.
pub async fn delete(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let parsed: WriteBody<'_> = parse_object(body.text()?, BodyProblem::DeleteNotObject)?;
    let key = body_key(&parsed, state.max_key_bytes())?;
    kv::remove(&state, &key).await
}

/// The `key` of a body-keyed request: present, a string, 1..=`max` bytes.
pub fn body_key(body: &WriteBody<'_>, max: usize) -> Result<String, ApiError> {
    let raw = body
        .key
        .ok_or(ApiError::InvalidBody(BodyProblem::MissingKey))?;
    let key: String =
        serde_json::from_str(raw.get()).map_err(|_| ApiError::InvalidKey(KeyProblem::NotString))?;
    key::check(&key, max).map_err(ApiError::InvalidKey)?;
    Ok(key)
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// The `key` query parameter (percent-decoded, `+` read as a space), checked
/// against `max` bytes; `None` when absent.
pub fn query_key(req: &HttpRequest, max: usize) -> Result<Option<String>, ApiError> {
    let q =
        Query::<KeyQuery>::from_query(req.query_string()).map_err(|e| ApiError::InvalidQuery {
            name: "key",
            reason: e.to_string(),
        })?;
    match q.into_inner().key {
        None => Ok(None),
        Some(key) => {
            key::check(&key, max).map_err(ApiError::InvalidKey)?;
            Ok(Some(key))
        }
    }
}
