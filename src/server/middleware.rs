//! Cross-cutting concerns, applied once around every route:
//! - [`track`]: per-route request counts and latency;
//! - [`auth`]: the bearer token, when one is configured (not for `/health`);
//! - [`json_errors`]: any error response not already JSON (actix's own 404,
//!   405, extractor failures) gets the API's `{"error": ...}` body.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, ResponseError};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// Records the request in the metrics once it is answered.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = req.app_data::<Data<AppState>>().cloned();
    let method = req.method().to_string();
    let started = Instant::now();
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => return Err(e),
    };
    if let Some(state) = state {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        state
            .metrics
            .observe(&route, &method, res.status().as_u16(), started.elapsed());
    }
    Ok(res)
}

/// Refuses requests without the configured bearer token (compared in constant
/// time); `/health` is always open.
pub async fn auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let token = req
        .app_data::<Data<AppState>>()
        .and_then(|s| s.auth_token.clone());
    if let Some(token) = token
        && req.path() != "/health"
        && !bearer_matches(req.headers().get(header::AUTHORIZATION), &token)
    {
        return Ok(req.into_response(ApiError::Unauthorized.error_response()));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// Whether an `Authorization` header carries `token` with the `Bearer`
/// scheme. The scheme name is case-insensitive (RFC 9110 §11.1), so `bearer`
/// and `BEARER` work too; the token itself is compared exactly, in constant time.
pub fn bearer_matches(value: Option<&header::HeaderValue>, token: &str) -> bool {
    let Some(value) = value else { return false };
    let bytes = value.as_bytes();
    let Some(space) = bytes.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = bytes.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let given = rest.trim_ascii();
    bool::from(given.ct_eq(token.as_bytes()))
}

/// Cluster mode: [`crate::cluster::routes::gate`] (forwarding to the
/// leader, linearizable reads). A single node passes every request through.
pub async fn cluster_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    #[cfg(feature = "cluster")]
    if let Some(node) = req
        .app_data::<Data<AppState>>()
        .and_then(|s| s.cluster.clone())
    {
        return crate::cluster::routes::gate(node, req, next).await;
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// Gives every error response the API's JSON body.
pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            // An error raised by a middleware rather than answered: still JSON.
            let status = e.as_response_error().status_code();
            let api = ApiError::Http {
                status,
                reason: e.to_string(),
            };
            return Err(
                actix_web::error::InternalError::from_response(e, api.error_response()).into(),
            );
        }
    };
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(res);
    }
    let (req, old) = res.into_parts();
    let reason = match old.error() {
        Some(e) => e.to_string(),
        None => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let api = ApiError::Http { status, reason };
    Ok(ServiceResponse::new(req, api.error_response()))
}
