//! `/kv/{key}`: GET, PUT and DELETE of one key, and the helpers every API
//! shape uses for one key ([`read`], [`WriteBody`], [`write()`], [`written`],
//! [`remove`]), so `/kv/{key}`, `/store` and the body-keyed `/kv` read, write
//! and answer alike and differ only in where the key comes from.

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::{Batch, OpResult, Prior};
use crate::json::minify;
use crate::server::body::{JsonBody, Out, parse_object, present, ttl_seconds};
use crate::server::error::{ApiError, BodyProblem};
use crate::server::key;
use crate::server::state::AppState;

/// `GET /kv/{key}` → `{"key": k, "value": v}` or 404.
pub async fn get(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let key = key::from_path(&req, state.max_key_bytes())?;
    read(&state, &key)
}

/// `PUT /kv/{key}` with `{"value": v, "ttl": s?}` → `{"success", "key", "value", "created"}`.
pub async fn put(
    req: HttpRequest,
    state: Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let key = key::from_path(&req, state.max_key_bytes())?;
    let parsed: WriteBody<'_> = parse_object(body.text()?, BodyProblem::PutNotObject)?;
    let (value, ttl) = parsed.value_and_ttl()?;
    let prior = write(&state, &key, &value, ttl).await?;
    Ok(written_with_created(&key, &value, prior))
}

/// `DELETE /kv/{key}` → `{"success": true, "deleted": true}` or 404.
pub async fn delete(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let key = key::from_path(&req, state.max_key_bytes())?;
    remove(&state, &key).await
}

/// The answer to a read of `key`: `{"key": k, "value": v}`, or 404 when it is
/// absent, deleted or expired.
pub fn read(state: &AppState, key: &str) -> Result<HttpResponse, ApiError> {
    state.count(1);
    let value = state
        .engine()
        .get(key.as_bytes())?
        .ok_or(ApiError::KeyNotFound)?;
    let mut out = Out::with_capacity(value.len() + key.len() + 32);
    out.key_value(key.as_bytes(), &value);
    Ok(out.ok())
}

/// A write's body in any API shape: `{"key"?, "value", "ttl"?}`. Which
/// fields are required is the handler's; unknown fields are ignored.
#[derive(Deserialize)]
pub struct WriteBody<'a> {
    /// The key, in the body-keyed shapes (`/store`, `PUT`/`DELETE /kv`);
    /// a `null` key is present (and not a string), not absent.
    #[serde(borrow, default, deserialize_with = "present")]
    pub key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttl: Option<&'a RawValue>,
}

impl WriteBody<'_> {
    /// The value in its stored (minified) form and the TTL in seconds
    /// (`None`: never expires). No `value` or a `ttl` that is not a number → 400.
    pub fn value_and_ttl(&self) -> Result<(Vec<u8>, Option<f64>), ApiError> {
        let value = self
            .value
            .ok_or(ApiError::InvalidBody(BodyProblem::MissingValue))?;
        let ttl = ttl_seconds(self.ttl).map_err(|_| ApiError::InvalidBody(BodyProblem::BadTtl))?;
        Ok((minify(value.get()), ttl))
    }
}

/// Sets `key` to the stored-form `value`, expiring after `ttl` seconds;
/// says whether a live value existed.
pub async fn write(
    state: &AppState,
    key: &str,
    value: &[u8],
    ttl: Option<f64>,
) -> Result<Prior, ApiError> {
    let mut batch = Batch::new();
    batch.put_with_expiry(key.as_bytes(), value, state.expiry(ttl));
    state.count(1);
    let results = state.submit(batch).await?;
    Ok(match results.first() {
        Some(OpResult::Put(Prior::Live)) => Prior::Live,
        _ => Prior::Absent,
    })
}

/// The start of every write's answer, `{"success":true,"key":k,"value":v`;
/// the caller adds any further field and the closing brace.
pub fn written(key: &str, value: &[u8]) -> Out {
    let mut out = Out::with_capacity(value.len() + key.len() + 64);
    out.raw(b"{\"success\":true,\"key\":")
        .key(key.as_bytes())
        .raw(b",\"value\":")
        .raw(value);
    out
}

/// The answer of the current API's writes: [`written`] plus `"created"`,
/// true when no live value existed before.
pub fn written_with_created(key: &str, value: &[u8], prior: Prior) -> HttpResponse {
    let mut out = written(key, value);
    out.raw(match prior {
        Prior::Absent => b",\"created\":true}",
        Prior::Live => b",\"created\":false}",
    });
    out.ok()
}

/// Removes `key`: `{"success": true, "deleted": true}`, or 404 when no live
/// value existed.
pub async fn remove(state: &AppState, key: &str) -> Result<HttpResponse, ApiError> {
    let mut batch = Batch::new();
    batch.delete(key.as_bytes());
    state.count(1);
    let results = state.submit(batch).await?;
    match results.first() {
        Some(OpResult::Delete(Prior::Live)) => {
            let mut out = Out::default();
            out.raw(b"{\"success\":true,\"deleted\":true}");
            Ok(out.ok())
        }
        _ => Err(ApiError::KeyNotFound),
    }
}
