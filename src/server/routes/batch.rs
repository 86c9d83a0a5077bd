//! `POST /kv/batch`: many operations as one atomic engine [`Batch`].
//!
//! The whole request is validated into a `Batch` before anything is
//! submitted, so a bad operation anywhere leaves the store untouched; the
//! engine then applies it as one step (one batch marker, one keydir publish).

use actix_web::HttpResponse;
use actix_web::web::Data;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::{Batch, Expiry, OpResult, Prior};
use crate::json::minify;
use crate::server::body::{JsonBody, Out, parse_object, present, ttl_seconds};
use crate::server::error::{ApiError, BodyProblem, KeyProblem, OpProblem};
use crate::server::key;
use crate::server::state::AppState;

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow, default)]
    operations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OpBody<'a> {
    #[serde(borrow, default)]
    op: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttl: Option<&'a RawValue>,
}

/// `POST /kv/batch` → `{"success": true, "results": [...]}`.
pub async fn apply(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let text = body.text()?;
    let parsed: BatchBody<'_> = parse_object(text, BodyProblem::BatchNotObject)?;
    let ops: Vec<&RawValue> = parsed
        .operations
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .ok_or(ApiError::InvalidBody(BodyProblem::OperationsNotArray))?;
    let max = state.limits.max_batch_ops;
    if ops.len() > max {
        return Err(ApiError::TooManyOperations {
            count: ops.len(),
            max,
        });
    }
    let mut batch = Batch::new();
    for (index, raw) in ops.iter().enumerate() {
        add_op(&state, &mut batch, raw)
            .map_err(|problem| ApiError::InvalidOperation { index, problem })?;
    }
    let mut out = Out::with_capacity(64 + 32 * batch.len());
    out.raw(b"{\"success\":true,\"results\":[");
    if !batch.is_empty() {
        state.count(batch.len());
        let keys: Vec<Vec<u8>> = batch.ops().iter().map(|op| op.key().to_vec()).collect();
        let results = state.submit(batch).await?;
        for (i, (key, result)) in keys.iter().zip(&results).enumerate() {
            if i > 0 {
                out.raw(b",");
            }
            write_result(&mut out, key, result);
        }
    }
    out.raw(b"]}");
    Ok(out.ok())
}

/// Validates one operation and adds it to `batch`.
fn add_op(state: &AppState, batch: &mut Batch, raw: &RawValue) -> Result<(), OpProblem> {
    if !raw.get().starts_with('{') {
        return Err(OpProblem::NotObject);
    }
    let op: OpBody<'_> =
        serde_json::from_str(raw.get()).map_err(|e| OpProblem::Malformed(e.to_string()))?;
    let name = op.op.ok_or(OpProblem::MissingOp)?;
    let name = match serde_json::from_str::<&str>(name.get()) {
        Ok(n @ ("set" | "get" | "delete")) => n,
        _ => return Err(OpProblem::UnknownOp(name.get().to_string())),
    };
    let key_raw = op.key.ok_or(OpProblem::MissingKey)?;
    let key: String =
        serde_json::from_str(key_raw.get()).map_err(|_| OpProblem::Key(KeyProblem::NotString))?;
    key::check(&key, state.max_key_bytes()).map_err(OpProblem::Key)?;
    match name {
        "set" => {
            let value = minify(op.value.ok_or(OpProblem::MissingValue)?.get());
            let ttl = ttl_seconds(op.ttl).map_err(|_| OpProblem::BadTtl)?;
            let expiry: Expiry = state.expiry(ttl);
            batch.put_with_expiry(key.as_bytes(), &value, expiry);
        }
        "get" => {
            batch.get(key.as_bytes());
        }
        _ => {
            batch.delete(key.as_bytes());
        }
    }
    Ok(())
}

fn write_result(out: &mut Out, key: &[u8], result: &OpResult) {
    match result {
        OpResult::Put(Prior::Absent) => out.raw(b"{\"success\":true,\"created\":true}"),
        OpResult::Put(Prior::Live) => out.raw(b"{\"success\":true,\"created\":false}"),
        OpResult::Delete(Prior::Live) => out.raw(b"{\"success\":true,\"deleted\":true}"),
        OpResult::Get(Some(value)) => out.key_value(key, value),
        OpResult::Delete(Prior::Absent) | OpResult::Get(None) => {
            out.raw(b"{\"error\":\"key not found\"}")
        }
    };
}
