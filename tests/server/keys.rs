//! docs/API.md "General rules" on keys: the path segment after `/kv/`,
//! percent-decoded, `%2F` part of the key, 1..=1024 bytes of UTF-8.

use kvstore::engine::{Options, SyncMode};
use kvstore::server::ServerConfig;

use crate::common::{start, start_on};

#[actix_web::test]
async fn an_encoded_slash_is_part_of_the_key() {
    let s = start().await;
    s.set("a%2Fb", "1").await;
    s.get("/kv/a%2Fb")
        .await
        .assert_ok(r#"{"key":"a/b","value":1}"#);
    s.get("/kv").await.assert_ok(r#"{"keys":["a/b"]}"#);
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn an_encoded_percent_is_decoded_once() {
    let s = start().await;
    s.set("100%25", "1").await;
    s.get("/kv/100%25")
        .await
        .assert_ok(r#"{"key":"100%","value":1}"#);
    s.set("a%252Fb", "2").await;
    s.get("/kv").await.assert_ok(r#"{"keys":["100%","a%2Fb"]}"#);
    s.get("/kv/a%252Fb")
        .await
        .assert_ok(r#"{"key":"a%2Fb","value":2}"#);
}

#[actix_web::test]
async fn an_unencoded_slash_also_reaches_the_key() {
    let s = start().await;
    s.set("a/b", "1").await;
    s.get("/kv/a%2Fb")
        .await
        .assert_ok(r#"{"key":"a/b","value":1}"#);
}

#[actix_web::test]
async fn unicode_and_spaces_are_keys_like_any_other() {
    let s = start().await;
    s.set("caf%C3%A9%20%E2%9C%93", "1").await;
    s.get("/kv/caf%C3%A9%20%E2%9C%93")
        .await
        .assert_ok(r#"{"key":"café ✓","value":1}"#);
}

#[actix_web::test]
async fn batch_is_an_ordinary_key_for_get_put_delete() {
    let s = start().await;
    s.set("batch", "1").await;
    s.get("/kv/batch")
        .await
        .assert_ok(r#"{"key":"batch","value":1}"#);
    assert_eq!(s.delete("/kv/batch").await.status, 200);
}

#[actix_web::test]
async fn a_key_of_exactly_the_limit_is_accepted() {
    let s = start().await;
    let key = "k".repeat(1024);
    s.set(&key, "1").await;
    assert_eq!(s.get(&format!("/kv/{key}")).await.status, 200);
}

#[actix_web::test]
async fn a_key_over_the_limit_is_400_and_stores_nothing() {
    let s = start().await;
    let key = "k".repeat(1025);
    let r = s.put(&format!("/kv/{key}"), r#"{"value": 1}"#).await;
    assert_eq!(
        r.assert_error(400),
        "invalid key: key is 1025 bytes; the limit is 1024"
    );
    s.get(&format!("/kv/{key}")).await.assert_error(400);
    s.delete(&format!("/kv/{key}")).await.assert_error(400);
    s.get("/kv").await.assert_ok(r#"{"keys":[]}"#);
}

#[actix_web::test]
async fn the_key_limit_is_configurable() {
    // The key limit is the engine's: the server reads it from its options.
    let s = start_on(
        ServerConfig::default(),
        Options::default()
            .with_max_key_bytes(4)
            .with_sync(SyncMode::Never),
    )
    .await;
    s.set("abcd", "1").await;
    s.put("/kv/abcde", r#"{"value": 1}"#)
        .await
        .assert_error(400);
}

#[actix_web::test]
async fn an_empty_key_is_400() {
    let s = start().await;
    let msg = s.put("/kv/", r#"{"value": 1}"#).await.assert_error(400);
    assert_eq!(msg, "invalid key: key must not be empty");
    s.get("/kv/").await.assert_error(400);
}

#[actix_web::test]
async fn a_key_that_decodes_to_invalid_utf8_is_400() {
    let s = start().await;
    let msg = s
        .put("/kv/%FF%FE", r#"{"value": 1}"#)
        .await
        .assert_error(400);
    assert_eq!(msg, "invalid key: key must be UTF-8");
}
