//! docs/API.md "The /store API": POST creates (409 on a live key), PUT
//! updates (404 on an absent one), GET and DELETE take `?key=`; same engine
//! and keys as `/kv/{key}`.

use actix_web::test::TestRequest;
use kvstore::engine::{Options, SyncMode};
use kvstore::server::ServerConfig;

use crate::common::{start, start_on};

#[actix_web::test]
async fn post_creates_a_key_with_201_and_the_current_api_reads_it() {
    let s = start().await;
    let r = s
        .post(
            "/store",
            r#"{"key": "user:1", "value": {"name": "ada", "n": 1.50}}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        r.body,
        r#"{"success":true,"key":"user:1","value":{"name":"ada","n":1.50}}"#
    );
    s.get("/kv/user:1")
        .await
        .assert_ok(r#"{"key":"user:1","value":{"name":"ada","n":1.50}}"#);
}

#[actix_web::test]
async fn post_of_a_live_key_is_409_and_changes_nothing() {
    let s = start().await;
    s.set("k", "1").await;
    let msg = s
        .post("/store", r#"{"key": "k", "value": 2}"#)
        .await
        .assert_error(409);
    assert_eq!(msg, "key already exists");
    s.get("/store?key=k")
        .await
        .assert_ok(r#"{"key":"k","value":1}"#);
}

#[actix_web::test]
async fn post_of_a_deleted_or_expired_key_creates_it_again() {
    let s = start().await;
    s.set("gone", "1").await;
    s.delete("/kv/gone").await;
    let r = s.post("/store", r#"{"key": "gone", "value": 2}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.put("/kv/old", r#"{"value": 1, "ttl": 1}"#).await;
    s.clock.advance(1000);
    let r = s.post("/store", r#"{"key": "old", "value": 3}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.get("/kv/old")
        .await
        .assert_ok(r#"{"key":"old","value":3}"#);
}

#[actix_web::test]
async fn post_with_ttl_expires_like_the_current_api() {
    let s = start().await;
    let r = s
        .post("/store", r#"{"key": "t", "value": "v", "ttl": 1.5}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.clock.advance(1499);
    assert_eq!(s.get("/store?key=t").await.status, 200);
    s.clock.advance(1);
    assert_eq!(
        s.get("/store?key=t").await.assert_error(404),
        "key not found"
    );
}

#[actix_web::test]
async fn concurrent_creates_of_one_key_let_exactly_one_win() {
    // fsync before publishing holds each write unpublished for a while: the
    // window in which an unlocked check would still see the key absent.
    let s = start_on(
        ServerConfig::default(),
        Options::default().with_sync(SyncMode::Always),
    )
    .await;
    let bodies: Vec<String> = (0..16)
        .map(|i| format!(r#"{{"key": "race", "value": {i}}}"#))
        .collect();
    let replies = futures::future::join_all(bodies.iter().map(|b| s.post("/store", b))).await;
    let winners: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == 201)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &replies {
        if r.status != 201 {
            assert_eq!(r.assert_error(409), "key already exists");
        }
    }
    s.get("/kv/race")
        .await
        .assert_ok(&format!(r#"{{"key":"race","value":{}}}"#, winners[0]));
}

#[actix_web::test]
async fn put_updates_a_live_key_with_200() {
    let s = start().await;
    s.set("k", "1").await;
    s.put("/store", r#"{"key": "k", "value": [2, 3]}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"k","value":[2,3]}"#);
    s.get("/kv/k")
        .await
        .assert_ok(r#"{"key":"k","value":[2,3]}"#);
}

#[actix_web::test]
async fn put_of_an_absent_key_is_404_and_creates_nothing() {
    let s = start().await;
    let msg = s
        .put("/store", r#"{"key": "nope", "value": 1}"#)
        .await
        .assert_error(404);
    assert_eq!(msg, "key not found");
    assert_eq!(s.get("/kv/nope").await.status, 404);
    s.put("/kv/exp", r#"{"value": 1, "ttl": 1}"#).await;
    s.clock.advance(1000);
    s.put("/store", r#"{"key": "exp", "value": 2}"#)
        .await
        .assert_error(404);
    assert_eq!(s.get("/kv/exp").await.status, 404);
}

#[actix_web::test]
async fn put_without_ttl_removes_an_earlier_ttl_and_with_ttl_sets_one() {
    let s = start().await;
    s.post("/store", r#"{"key": "k", "value": 1, "ttl": 1}"#)
        .await;
    s.put("/store", r#"{"key": "k", "value": 2}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"k","value":2}"#);
    s.clock.advance(5000);
    s.get("/store?key=k")
        .await
        .assert_ok(r#"{"key":"k","value":2}"#);
    s.put("/store", r#"{"key": "k", "value": 3, "ttl": 2}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"k","value":3}"#);
    s.clock.advance(2000);
    assert_eq!(s.get("/store?key=k").await.status, 404);
}

#[actix_web::test]
async fn get_reads_a_key_written_by_any_api() {
    let s = start().await;
    s.set("a%2Fb", r#""slash""#).await;
    s.get("/store?key=a%2Fb")
        .await
        .assert_ok(r#"{"key":"a/b","value":"slash"}"#);
    s.set("a%20b", "1").await;
    s.get("/store?key=a+b")
        .await
        .assert_ok(r#"{"key":"a b","value":1}"#);
    s.get("/store?key=a%20b")
        .await
        .assert_ok(r#"{"key":"a b","value":1}"#);
}

#[actix_web::test]
async fn get_of_an_absent_key_is_404() {
    let s = start().await;
    assert_eq!(
        s.get("/store?key=nope").await.assert_error(404),
        "key not found"
    );
}

#[actix_web::test]
async fn get_and_delete_without_a_key_parameter_are_400_saying_how() {
    let s = start().await;
    for r in [
        s.get("/store").await,
        s.get("/store?prefix=a").await,
        s.delete("/store").await,
    ] {
        let msg = r.assert_error(400);
        assert_eq!(msg, "missing query parameter key: send /store?key=<key>");
    }
    let msg = s.get("/store?key=").await.assert_error(400);
    assert_eq!(msg, "invalid key: key must not be empty");
}

#[actix_web::test]
async fn delete_removes_a_live_key_then_404s() {
    let s = start().await;
    s.set("k", "1").await;
    s.delete("/store?key=k")
        .await
        .assert_ok(r#"{"success":true,"deleted":true}"#);
    assert_eq!(s.get("/kv/k").await.status, 404);
    assert_eq!(
        s.delete("/store?key=k").await.assert_error(404),
        "key not found"
    );
}

#[actix_web::test]
async fn bodies_of_the_wrong_shape_are_400_and_store_nothing() {
    let s = start().await;
    let cases = [
        ("", "invalid JSON body"),
        ("{", "invalid JSON body"),
        ("[1]", "body must be a JSON object like"),
        (r#""k""#, "body must be a JSON object like"),
        (r#"{"value": 1}"#, "body must have a \"key\" field"),
        (
            r#"{"key": 7, "value": 1}"#,
            "invalid key: key must be a string",
        ),
        (
            r#"{"key": "", "value": 1}"#,
            "invalid key: key must not be empty",
        ),
        (r#"{"key": "k"}"#, "body must have a \"value\" field"),
        (
            r#"{"key": "k", "value": 1, "ttl": "soon"}"#,
            "ttl must be a number",
        ),
    ];
    for (body, want) in cases {
        for method in ["POST", "PUT"] {
            let r = match method {
                "POST" => s.post("/store", body).await,
                _ => s.put("/store", body).await,
            };
            let msg = r.assert_error(400);
            assert!(msg.starts_with(want), "{method} {body}: {msg}");
        }
    }
    assert_eq!(s.get("/kv").await.body, r#"{"keys":[]}"#);
}

#[actix_web::test]
async fn a_key_over_the_limit_is_400() {
    // The key limit is the engine's: the server reads it from its options.
    let s = start_on(
        ServerConfig::default(),
        Options::default()
            .with_max_key_bytes(4)
            .with_sync(SyncMode::Never),
    )
    .await;
    let msg = s
        .post("/store", r#"{"key": "12345", "value": 1}"#)
        .await
        .assert_error(400);
    assert_eq!(msg, "invalid key: key is 5 bytes; the limit is 4");
    s.get("/store?key=12345").await.assert_error(400);
    assert_eq!(
        s.post("/store", r#"{"key": "1234", "value": 1}"#)
            .await
            .status,
        201
    );
}

#[actix_web::test]
async fn a_body_that_is_not_json_by_content_type_is_415() {
    let s = start().await;
    let r = s
        .send(
            TestRequest::post()
                .uri("/store")
                .insert_header(("content-type", "text/plain"))
                .set_payload(r#"{"key": "k", "value": 1}"#),
        )
        .await;
    r.assert_error(415);
    assert_eq!(s.get("/kv/k").await.status, 404);
}
