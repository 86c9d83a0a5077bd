//! Faults and HTTP rules in-process (docs/API.md "General rules" and
//! "Beyond the original specification"): /health after a latch, a full disk
//! as 507, error bodies without the data directory's paths, HEAD wherever
//! GET is, `Allow` on every 405, the `Bearer` scheme in any case. The raw
//! socket side (timeouts, caps, Expect) is tests/cli/hostile.rs.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::test::TestRequest;
use kvstore::engine::fs::{FaultyFs, FsOp};
use kvstore::engine::{Options, SyncMode};
use kvstore::server::ServerConfig;

use crate::common::{start, start_on, start_with};

fn faulty(fs: &FaultyFs) -> Options {
    Options::default()
        .with_sync(SyncMode::Always)
        .with_fs(Arc::new(fs.clone()))
}

#[actix_web::test]
async fn health_is_503_read_only_with_its_cause_once_the_engine_latched() {
    let fs = FaultyFs::new();
    let s = start_on(ServerConfig::default(), faulty(&fs)).await;
    s.get("/health").await.assert_ok(r#"{"status":"ok"}"#);
    fs.fail_from(FsOp::Sync, 1);
    let _ = s.put("/kv/a", r#"{"value": 1}"#).await;
    assert!(s.state.engine().fault().is_some());
    let r = s.get("/health").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    assert_eq!(v["status"], "read-only", "{}", r.body);
    let cause = v["error"].as_str().unwrap();
    assert!(cause.contains("sync"), "{cause}");
    let dir = s.state.engine().dir().to_string_lossy().into_owned();
    assert!(!r.body.contains(&dir), "a path leaked: {}", r.body);
}

#[actix_web::test]
async fn a_full_disk_is_507_and_no_error_body_names_the_data_directory() {
    let fs = FaultyFs::new();
    let s = start_on(ServerConfig::default(), faulty(&fs)).await;
    s.set("a", "1").await;
    fs.fill_disk_from(FsOp::Write, 1);
    fs.fill_disk_from(FsOp::Sync, 1);
    let dir = s.state.engine().dir().to_string_lossy().into_owned();
    for _ in 0..3 {
        let r = s.put("/kv/b", r#"{"value": 2}"#).await;
        let msg = r.assert_error(507);
        assert!(msg.starts_with("no space left on device"), "{msg}");
        assert!(!r.body.contains(&dir), "a path leaked: {}", r.body);
        assert!(!msg.contains('/'), "{msg}");
    }
    s.get("/kv/a").await.assert_ok(r#"{"key":"a","value":1}"#);
    let r = s.get("/health").await;
    if r.status == 503 {
        assert!(!r.body.contains(&dir), "a path leaked: {}", r.body);
    }
}

#[actix_web::test]
async fn head_is_answered_wherever_get_is_with_get_s_status_and_headers() {
    let s = start().await;
    s.set("k", r#"{"a": 1}"#).await;
    for path in [
        "/kv/k",
        "/health",
        "/kv",
        "/stats",
        "/store?key=k",
        "/openapi.json",
    ] {
        let get = s.get(path).await;
        let head = s
            .send(TestRequest::default().method(Method::HEAD).uri(path))
            .await;
        assert_eq!(head.status, get.status, "HEAD {path}: {}", head.body);
        assert_eq!(head.content_type, get.content_type, "HEAD {path}");
    }
    let head = s
        .send(
            TestRequest::default()
                .method(Method::HEAD)
                .uri("/kv/missing"),
        )
        .await;
    assert_eq!(head.status, 404);
}

#[actix_web::test]
async fn every_405_names_the_allowed_methods() {
    let s = start().await;
    let cases = [
        (
            Method::PATCH,
            "/kv/k",
            &["GET", "HEAD", "PUT", "DELETE"][..],
        ),
        (Method::POST, "/health", &["GET", "HEAD"][..]),
        (Method::GET, "/admin/compact", &["POST"][..]),
        (
            Method::PATCH,
            "/kv/batch",
            &["POST", "GET", "HEAD", "PUT", "DELETE"][..],
        ),
        (
            Method::PATCH,
            "/store",
            &["GET", "HEAD", "POST", "PUT", "DELETE"][..],
        ),
    ];
    for (method, path, want) in cases {
        let r = s.call(method.clone(), path, "").await;
        r.assert_error(405);
        let allow = r
            .headers
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
            .to_str()
            .unwrap()
            .to_string();
        let mut got: Vec<&str> = allow.split(", ").collect();
        let mut want = want.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}: Allow {allow}");
    }
}

#[actix_web::test]
async fn the_bearer_scheme_is_matched_in_any_case_and_the_token_exactly() {
    let s = start_with(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    for ok in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "bEaReR  s3cret",
    ] {
        let r = s
            .send(
                TestRequest::get()
                    .uri("/kv")
                    .insert_header(("authorization", ok)),
            )
            .await;
        assert_eq!(r.status, 200, "{ok:?}: {}", r.body);
    }
    for bad in [
        "bearer S3CRET",
        "Basic s3cret",
        "Bearers3cret",
        "s3cret",
        "Bearer",
    ] {
        let r = s
            .send(
                TestRequest::get()
                    .uri("/kv")
                    .insert_header(("authorization", bad)),
            )
            .await;
        r.assert_error(401);
    }
}

#[actix_web::test]
async fn the_key_limit_is_the_engine_s() {
    let s = start_on(
        ServerConfig::default(),
        Options::default()
            .with_max_key_bytes(3)
            .with_sync(SyncMode::Never),
    )
    .await;
    assert_eq!(s.state.max_key_bytes(), 3);
    s.set("abc", "1").await;
    let msg = s.put("/kv/abcd", r#"{"value": 1}"#).await.assert_error(400);
    assert!(msg.contains("limit is 3"), "{msg}");
}
