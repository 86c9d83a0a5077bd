//! `/kv/{key}`: GET, PUT and DELETE of one key.

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
    let key = key::from_path(&req, state.limits.max_key_bytes)?;
    state.count(1);
    let value = state
        .engine
        .get(key.as_bytes())?
        .ok_or(ApiError::KeyNotFound)?;
    let mut out = Out::with_capacity(value.len() + key.len() + 32);
    out.key_value(key.as_bytes(), &value);
    Ok(out.ok())
}

#[derive(Deserialize)]
struct PutBody<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttl: Option<&'a RawValue>,
}

/// `PUT /kv/{key}` with `{"value": v, "ttl": s?}` → `{"success", "key", "value", "created"}`.
pub async fn put(
    req: HttpRequest,
    state: Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let key = key::from_path(&req, state.limits.max_key_bytes)?;
    let text = body.text()?;
    let parsed: PutBody<'_> = parse_object(text, BodyProblem::PutNotObject)?;
    let value = minify(
        parsed
            .value
            .ok_or(ApiError::InvalidBody(BodyProblem::MissingValue))?
            .get(),
    );
    let ttl = ttl_seconds(parsed.ttl).map_err(|_| ApiError::InvalidBody(BodyProblem::BadTtl))?;
    let mut batch = Batch::new();
    batch.put_with_expiry(key.as_bytes(), &value, state.expiry(ttl));
    state.count(1);
    let results = state.engine.submit(batch).await?;
    let created = !matches!(results.first(), Some(OpResult::Put(Prior::Live)));
    let mut out = Out::with_capacity(value.len() + key.len() + 64);
    out.raw(b"{\"success\":true,\"key\":")
        .key(key.as_bytes())
        .raw(b",\"value\":")
        .raw(&value)
        .raw(if created {
            b",\"created\":true}"
        } else {
            b",\"created\":false}"
        });
    Ok(out.ok())
}

/// `DELETE /kv/{key}` → `{"success": true, "deleted": true}` or 404.
pub async fn delete(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let key = key::from_path(&req, state.limits.max_key_bytes)?;
    let mut batch = Batch::new();
    batch.delete(key.as_bytes());
    state.count(1);
    let results = state.engine.submit(batch).await?;
    match results.first() {
        Some(OpResult::Delete(Prior::Live)) => {
            let mut out = Out::default();
            out.raw(b"{\"success\":true,\"deleted\":true}");
            Ok(out.ok())
        }
        _ => Err(ApiError::KeyNotFound),
    }
}
