//! docs/API.md "Beyond the original specification": /health, /metrics,
//! POST /admin/compact, bearer-token auth.

use actix_web::test::TestRequest;
use kvstore::server::ServerConfig;

use crate::common::{start, start_with};

#[actix_web::test]
async fn health_is_ok() {
    let s = start().await;
    s.get("/health").await.assert_ok(r#"{"status":"ok"}"#);
}

#[actix_web::test]
async fn metrics_are_prometheus_text_with_routes_engine_gauges_and_fsyncs() {
    let s = start().await;
    s.set("a", "[1]").await;
    s.get("/kv/a").await;
    s.get("/kv/missing").await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("application/openmetrics-text"),
        "{}",
        r.content_type
    );
    let m = &r.body;
    for line in [
        r#"kvstore_http_requests_total{route="/kv/{key:.*}",method="PUT",status="200"} 1"#,
        r#"kvstore_http_requests_total{route="/kv/{key:.*}",method="GET",status="200"} 1"#,
        r#"kvstore_http_requests_total{route="/kv/{key:.*}",method="GET",status="404"} 1"#,
        r#"kvstore_http_request_duration_seconds_count{route="/kv/{key:.*}",method="GET"} 2"#,
        "kvstore_keys 1",
        "kvstore_live_bytes 3",
        "# TYPE kvstore_disk_bytes gauge",
        "# TYPE kvstore_dead_bytes gauge",
        "# TYPE kvstore_segments gauge",
        "kvstore_compactions_total 0",
        "# TYPE kvstore_fsync_duration_seconds histogram",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    assert!(m.ends_with("# EOF\n"));
}

#[actix_web::test]
async fn compact_reports_what_it_reclaimed_and_keeps_every_value() {
    let s = start().await;
    for i in 0..50 {
        s.set("a", &i.to_string()).await;
        s.set(&format!("k{i}"), "\"v\"").await;
    }
    let r = s.post("/admin/compact", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["success"], true);
    for f in [
        "reclaimed_bytes",
        "segments_before",
        "segments_after",
        "duration_ms",
    ] {
        assert!(v[f].is_u64(), "{f}: {}", r.body);
    }
    assert!(v["reclaimed_bytes"].as_u64().unwrap() > 0, "{}", r.body);
    s.get("/kv/a").await.assert_ok(r#"{"key":"a","value":49}"#);
    assert_eq!(
        s.get("/kv").await.json()["keys"].as_array().unwrap().len(),
        51
    );
    assert_eq!(s.get("/stats").await.json()["compactions"], 1);
}

fn authed() -> ServerConfig {
    ServerConfig {
        auth_token: Some("s3cret".into()),
        ..ServerConfig::default()
    }
}

#[actix_web::test]
async fn with_auth_every_route_but_health_needs_the_token() {
    let s = start_with(authed()).await;
    s.get("/health").await.assert_ok(r#"{"status":"ok"}"#);
    for path in ["/kv/a", "/kv", "/stats", "/metrics", "/nope"] {
        let r = s.get(path).await;
        assert_eq!(
            r.assert_error(401),
            "missing or invalid bearer token",
            "{path}"
        );
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    s.put("/kv/a", r#"{"value": 1}"#).await.assert_error(401);
    s.post("/kv/batch", r#"{"operations":[]}"#)
        .await
        .assert_error(401);
    s.post("/admin/compact", "").await.assert_error(401);
}

#[actix_web::test]
async fn with_auth_a_wrong_token_is_401_and_changes_nothing() {
    let s = start_with(authed()).await;
    for header in [
        "Bearer wrong",
        "Bearer s3cre",
        "Bearer s3cret2",
        "s3cret",
        "Basic s3cret",
        "bearer",
    ] {
        let r = s
            .send(
                TestRequest::put()
                    .uri("/kv/a")
                    .insert_header(("authorization", header))
                    .set_payload(r#"{"value": 1}"#),
            )
            .await;
        r.assert_error(401);
    }
    let r = s
        .send(
            TestRequest::get()
                .uri("/kv")
                .insert_header(("authorization", "Bearer s3cret")),
        )
        .await;
    r.assert_ok(r#"{"keys":[]}"#);
}

#[actix_web::test]
async fn with_auth_the_right_token_passes_everywhere() {
    let s = start_with(authed()).await;
    let auth = ("authorization", "Bearer s3cret");
    let r = s
        .send(
            TestRequest::put()
                .uri("/kv/a")
                .insert_header(auth)
                .set_payload(r#"{"value": 1}"#),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .send(TestRequest::get().uri("/kv/a").insert_header(auth))
        .await;
    r.assert_ok(r#"{"key":"a","value":1}"#);
    let r = s
        .send(TestRequest::get().uri("/stats").insert_header(auth))
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .send(TestRequest::get().uri("/nope").insert_header(auth))
        .await;
    r.assert_error(404);
}

#[actix_web::test]
async fn without_auth_no_token_is_needed() {
    let s = start().await;
    assert_eq!(s.get("/stats").await.status, 200);
    assert_eq!(s.get("/metrics").await.status, 200);
}
