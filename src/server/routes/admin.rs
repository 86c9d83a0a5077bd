//! The routes about the store rather than a key: `/stats`, `/health`,
//! `/metrics`, `POST /admin/compact`, `POST /admin/backup`.

use actix_web::HttpResponse;
use actix_web::web::{self, Data};
use serde::Deserialize;

use crate::server::body::{JsonBody, parse_object};
use crate::server::error::{ApiError, BodyProblem, fault_message};
use crate::server::state::AppState;

/// `GET /stats`: the union of both specification variants plus engine figures, O(1).
pub async fn stats(state: Data<AppState>) -> HttpResponse {
    let engine = state.engine();
    let s = engine.stats();
    let (mut keys, mut size) = (s.live_keys, s.live_value_bytes);
    if state.is_cluster() {
        // A cluster node's reserved keys (applied log id, membership, the
        // bounded request-id ring) are not the client's data.
        for pair in engine.prefix(&[0xFF]).flatten() {
            keys = keys.saturating_sub(1);
            size = size.saturating_sub(pair.value().len() as u64);
        }
    }
    let mut body = serde_json::json!({
        "keys": keys,
        "size_bytes": size,
        "total_keys": keys,
        "total_operations": state.operations(),
        "uptime_seconds": state.uptime_seconds(),
        "segments": s.segments,
        "disk_bytes": s.disk_bytes,
        "dead_bytes": s.dead_bytes,
        "fsyncs": s.fsyncs,
        "writes": s.writes,
        "compactions": s.compactions,
        "reclaimed_bytes": s.reclaimed_bytes,
        "last_compaction_ms": s.last_compaction_ms,
        "read_only": s.read_only,
    });
    #[cfg(feature = "cluster")]
    if let Some(node) = &state.cluster
        && let Ok(figures) = serde_json::to_value(node.figures())
    {
        body["raft"] = figures;
    }
    #[cfg(not(feature = "cluster"))]
    let _ = &mut body;
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}

/// `GET /health` → `{"status": "ok"}`, never behind auth; once a fault has
/// latched the engine read-only, 503 `{"status": "read-only", "error": <cause>}`
/// (the cause without paths), so a load balancer stops sending it writes.
pub async fn health(state: Data<AppState>) -> HttpResponse {
    match state.engine().fault() {
        None => HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"status":"ok"}"#),
        Some(cause) => {
            let body = serde_json::json!({
                "status": "read-only",
                "error": fault_message(&cause),
            });
            HttpResponse::ServiceUnavailable()
                .content_type("application/json")
                .body(body.to_string())
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: Data<AppState>) -> HttpResponse {
    #[allow(unused_mut, reason = "only a cluster node adds to it")]
    let mut text = state.metrics.encode(&state.engine().stats());
    #[cfg(feature = "cluster")]
    if let Some(node) = &state.cluster {
        // OpenMetrics ends with "# EOF": the Raft figures go before it.
        let eof = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(eof, &node.figures().prometheus());
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

/// `POST /admin/compact`: compacts now on a blocking thread and says what it reclaimed.
pub async fn compact(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let engine = state.engine();
    let report = web::block(move || engine.compact())
        .await
        .map_err(|e| ApiError::Internal(format!("compaction task failed: {e}")))??;
    let body = serde_json::json!({
        "success": true,
        "reclaimed_bytes": report.reclaimed_bytes,
        "segments_before": report.segments_before,
        "segments_after": report.segments_after,
        "live_bytes_rewritten": report.live_bytes_rewritten,
        "duration_ms": report.duration_ms,
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

#[derive(Deserialize)]
struct BackupBody {
    #[serde(default)]
    to: Option<String>,
}

/// `POST /admin/backup {"to": "<dir>"}`: a point-in-time copy of the store in
/// `to` (a path on the server's machine), made on a blocking thread.
pub async fn backup(state: Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let parsed: BackupBody = parse_object(body.text()?, BodyProblem::BackupNotObject)?;
    let to = match parsed.to {
        Some(to) if !to.is_empty() => to,
        _ => return Err(ApiError::InvalidBody(BodyProblem::BackupNotObject)),
    };
    let engine = state.engine();
    let report = web::block(move || engine.backup(to))
        .await
        .map_err(|e| ApiError::Internal(format!("backup task failed: {e}")))??;
    let body = serde_json::json!({
        "success": true,
        "files": report.files,
        "bytes": report.bytes,
        "linked": report.linked,
        "copied": report.copied,
        "live_keys": report.live_keys,
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}
