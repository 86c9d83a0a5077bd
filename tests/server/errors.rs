//! docs/API.md "General rules": every error is `{"error": ...}` with a fitting
//! status, actix's own failures included; rejected input changes nothing.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use kvstore::server::ServerConfig;

use crate::common::{start, start_with};

#[actix_web::test]
async fn an_unknown_route_is_404_json() {
    let s = start().await;
    for path in ["/", "/nope", "/kvx", "/admin", "/kv_batch"] {
        s.get(path).await.assert_error(404);
    }
}

#[actix_web::test]
async fn a_wrong_method_is_405_json() {
    let s = start().await;
    let cases = [
        (Method::POST, "/kv/a"),
        (Method::PATCH, "/kv/a"),
        // PUT and DELETE /kv are the body-keyed API (docs/API.md).
        (Method::POST, "/kv"),
        (Method::PATCH, "/kv"),
        (Method::PATCH, "/store"),
        (Method::POST, "/stats"),
        (Method::DELETE, "/health"),
        (Method::POST, "/metrics"),
        (Method::GET, "/admin/compact"),
        (Method::GET, "/admin/backup"),
    ];
    for (m, path) in cases {
        let msg = s.call(m.clone(), path, "").await.assert_error(405);
        assert!(msg.contains(m.as_str()), "{m} {path}: {msg}");
    }
}

#[actix_web::test]
async fn a_body_over_the_limit_is_413_and_stores_nothing() {
    let s = start_with(ServerConfig {
        max_body_bytes: 100,
        ..ServerConfig::default()
    })
    .await;
    let body = format!(r#"{{"value": "{}"}}"#, "x".repeat(100));
    let msg = s.put("/kv/a", &body).await.assert_error(413);
    assert!(msg.contains("100 bytes"), "{msg}");
    assert_eq!(s.get("/kv/a").await.status, 404);
    let batch = format!(
        r#"{{"operations":[{{"op":"set","key":"a","value":"{}"}}]}}"#,
        "x".repeat(100)
    );
    s.post("/kv/batch", &batch).await.assert_error(413);
    assert_eq!(s.get("/kv/a").await.status, 404);
    s.put("/kv/a", r#"{"value": "small"}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"a","value":"small","created":true}"#);
}

#[actix_web::test]
async fn a_body_over_the_limit_without_content_length_is_413() {
    let s = start_with(ServerConfig {
        max_body_bytes: 10,
        ..ServerConfig::default()
    })
    .await;
    // TestRequest sets no Content-Length for a streamed payload: the limit is
    // enforced while reading.
    let r = s
        .send(
            TestRequest::put()
                .uri("/kv/a")
                .set_payload(actix_web::web::Bytes::from_static(
                    br#"{"value": "0123456789"}"#,
                )),
        )
        .await;
    r.assert_error(413);
}

#[actix_web::test]
async fn a_415_on_batch_applies_nothing() {
    let s = start().await;
    let r = s
        .send(
            TestRequest::post()
                .uri("/kv/batch")
                .insert_header(("content-type", "text/plain"))
                .set_payload(r#"{"operations":[{"op":"set","key":"a","value":1}]}"#),
        )
        .await;
    r.assert_error(415);
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn a_body_that_is_not_utf8_is_400() {
    let s = start().await;
    let r = s
        .send(
            TestRequest::put()
                .uri("/kv/a")
                .set_payload(actix_web::web::Bytes::from_static(b"{\"value\": \"\xff\"}")),
        )
        .await;
    r.assert_error(400);
}

#[actix_web::test]
async fn deeply_nested_json_is_stored_without_a_crash() {
    let s = start().await;
    let value = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = s.put("/kv/a", &format!("{{\"value\": {value}}}")).await;
    assert_eq!(r.status, 200);
    let r = s.get("/kv/a").await;
    assert!(r.body == format!("{{\"key\":\"a\",\"value\":{value}}}"));
}

#[actix_web::test]
async fn after_close_writes_and_reads_are_503() {
    let s = start().await;
    s.set("a", "1").await;
    s.state.engine().close().unwrap();
    s.put("/kv/a", r#"{"value": 2}"#).await.assert_error(503);
    s.get("/kv/a").await.assert_error(503);
    s.post("/kv/batch", r#"{"operations":[{"op":"get","key":"a"}]}"#)
        .await
        .assert_error(503);
}

#[actix_web::test]
async fn every_json_response_says_application_json() {
    let s = start().await;
    s.set("a", "1").await;
    for path in ["/kv/a", "/kv", "/stats", "/health", "/kv/zz", "/nope"] {
        assert_eq!(s.get(path).await.content_type, "application/json", "{path}");
    }
}

/// Bodies made of JSON-ish fragments, from a fixed seed.
fn garbage(seed: &mut u64) -> String {
    const PARTS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"value\"",
        "\"ttl\"",
        "\"operations\"",
        "\"op\"",
        "\"key\"",
        "\"set\"",
        "\"get\"",
        "\"delete\"",
        "\"k\"",
        "1",
        "-1e400",
        "0.5",
        "null",
        "true",
        "\"\\u0000\"",
        "\"\\ud800\"",
        " ",
        "\"",
        "\\",
        "1e99999",
        "\u{1F600}",
    ];
    let mut out = String::new();
    let n = usize::try_from(*seed % 24).unwrap();
    for _ in 0..n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.push_str(PARTS[usize::try_from(*seed % PARTS.len() as u64).unwrap()]);
    }
    out
}

#[actix_web::test]
async fn random_bodies_never_crash_and_answer_json_with_a_client_status() {
    let s = start().await;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..1500 {
        let body = garbage(&mut seed);
        for (method, path) in [(Method::PUT, "/kv/a"), (Method::POST, "/kv/batch")] {
            let r = s.call(method, path, &body).await;
            assert!(
                r.status == 200 || r.status == 400,
                "{path} {body:?} → {} {}",
                r.status,
                r.body
            );
            assert_eq!(r.content_type, "application/json");
            let _ = r.json();
        }
    }
    assert_eq!(s.get("/health").await.status, 200);
}
