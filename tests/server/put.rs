//! docs/API.md "PUT /kv/{key}".

use actix_web::http::Method;
use actix_web::test::TestRequest;

use crate::common::start;

#[actix_web::test]
async fn a_first_put_is_created_and_echoes_the_value() {
    let s = start().await;
    s.put("/kv/a", r#"{ "value" : { "x" : [1, 2] } }"#)
        .await
        .assert_ok(r#"{"success":true,"key":"a","value":{"x":[1,2]},"created":true}"#);
}

#[actix_web::test]
async fn a_second_put_is_not_created() {
    let s = start().await;
    s.set("a", "1").await;
    s.put("/kv/a", r#"{"value": 2}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"a","value":2,"created":false}"#);
    s.get("/kv/a").await.assert_ok(r#"{"key":"a","value":2}"#);
}

#[actix_web::test]
async fn a_put_over_an_expired_value_is_created() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "ttl": 1}"#).await;
    s.clock.advance(1000);
    let r = s.put("/kv/a", r#"{"value": 2}"#).await;
    assert_eq!(r.json()["created"], true);
}

#[actix_web::test]
async fn a_null_value_is_a_value() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": null}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"a","value":null,"created":true}"#);
    s.get("/kv/a")
        .await
        .assert_ok(r#"{"key":"a","value":null}"#);
}

#[actix_web::test]
async fn fractional_ttl_counts_to_the_millisecond() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "ttl": 1.5}"#).await;
    s.clock.advance(1499);
    assert_eq!(s.get("/kv/a").await.status, 200);
    s.clock.advance(1);
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn a_put_without_ttl_removes_an_earlier_ttl() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "ttl": 1}"#).await;
    s.put("/kv/a", r#"{"value": 2}"#).await;
    s.clock.advance(10_000);
    s.get("/kv/a").await.assert_ok(r#"{"key":"a","value":2}"#);
}

#[actix_web::test]
async fn a_null_ttl_means_never() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "ttl": 1}"#).await;
    s.put("/kv/a", r#"{"value": 2, "ttl": null}"#).await;
    s.clock.advance(10_000_000);
    assert_eq!(s.get("/kv/a").await.status, 200);
}

#[actix_web::test]
async fn a_put_with_ttl_replaces_the_earlier_ttl() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "ttl": 100}"#).await;
    s.put("/kv/a", r#"{"value": 2, "ttl": 1}"#).await;
    s.clock.advance(1000);
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn ttl_zero_or_negative_is_already_expired_and_drops_the_old_value() {
    let s = start().await;
    for ttl in ["0", "-5", "-0.001"] {
        s.set("a", "\"old\"").await;
        let r = s
            .put("/kv/a", &format!(r#"{{"value": 1, "ttl": {ttl}}}"#))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(s.get("/kv/a").await.status, 404, "ttl {ttl}");
        let keys = s.get("/kv").await;
        keys.assert_ok(r#"{"keys":[]}"#);
    }
}

#[actix_web::test]
async fn a_ttl_that_is_not_a_number_is_400_and_stores_nothing() {
    let s = start().await;
    for ttl in [r#""5""#, "true", "[]", "{}"] {
        let r = s
            .put("/kv/a", &format!(r#"{{"value": 1, "ttl": {ttl}}}"#))
            .await;
        assert!(r.assert_error(400).contains("ttl"), "{}", r.body);
    }
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn a_missing_value_is_400() {
    let s = start().await;
    let msg = s.put("/kv/a", r#"{"ttl": 5}"#).await.assert_error(400);
    assert!(msg.contains("value"), "{msg}");
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn a_body_that_is_not_an_object_is_400() {
    let s = start().await;
    for body in ["[1]", "\"value\"", "1", "null"] {
        s.put("/kv/a", body).await.assert_error(400);
    }
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn invalid_json_is_400() {
    let s = start().await;
    for body in ["{", r#"{"value": }"#, r#"{"value": 1} x"#, "{'value': 1}"] {
        let msg = s.put("/kv/a", body).await.assert_error(400);
        assert!(msg.starts_with("invalid JSON"), "{body}: {msg}");
    }
}

#[actix_web::test]
async fn an_empty_body_is_400() {
    let s = start().await;
    let r = s
        .send(
            TestRequest::put()
                .uri("/kv/a")
                .insert_header(("content-type", "application/json")),
        )
        .await;
    r.assert_error(400);
}

#[actix_web::test]
async fn a_body_without_content_type_is_accepted_as_json() {
    let s = start().await;
    let r = s
        .send(
            TestRequest::put()
                .uri("/kv/a")
                .set_payload(r#"{"value": 7}"#),
        )
        .await;
    r.assert_ok(r#"{"success":true,"key":"a","value":7,"created":true}"#);
}

#[actix_web::test]
async fn json_with_charset_or_a_json_suffix_is_accepted() {
    let s = start().await;
    for ct in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let r = s
            .send(
                TestRequest::put()
                    .uri("/kv/a")
                    .insert_header(("content-type", ct))
                    .set_payload(r#"{"value": 7}"#),
            )
            .await;
        assert_eq!(r.status, 200, "{ct}");
    }
}

#[actix_web::test]
async fn a_non_json_content_type_is_415_and_stores_nothing() {
    let s = start().await;
    for ct in ["text/plain", "application/x-www-form-urlencoded", "bogus"] {
        let r = s
            .send(
                TestRequest::default()
                    .method(Method::PUT)
                    .uri("/kv/a")
                    .insert_header(("content-type", ct))
                    .set_payload(r#"{"value": 7}"#),
            )
            .await;
        r.assert_error(415);
    }
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn a_duplicate_value_field_is_400() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "value": 2}"#)
        .await
        .assert_error(400);
}

#[actix_web::test]
async fn unknown_fields_are_ignored() {
    let s = start().await;
    let r = s.put("/kv/a", r#"{"value": 1, "extra": {"x": 2}}"#).await;
    r.assert_ok(r#"{"success":true,"key":"a","value":1,"created":true}"#);
}
