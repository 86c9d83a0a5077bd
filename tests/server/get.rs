//! docs/API.md "GET /kv/{key}".

use crate::common::start;

#[actix_web::test]
async fn a_stored_value_reads_back_exactly_as_written() {
    let s = start().await;
    s.set(
        "k",
        r#"{"n": 1.50, "big": 12345678901234567890, "a": [true, null, "x y"]}"#,
    )
    .await;
    s.get("/kv/k").await.assert_ok(
        r#"{"key":"k","value":{"n":1.50,"big":12345678901234567890,"a":[true,null,"x y"]}}"#,
    );
}

#[actix_web::test]
async fn every_kind_of_json_value_round_trips() {
    let s = start().await;
    for (i, v) in [
        "\"\"",
        "[]",
        "{}",
        "null",
        "false",
        "0",
        "-1e-7",
        "\"\\u00e9\\n\"",
        "[[[]]]",
    ]
    .iter()
    .enumerate()
    {
        s.set(&format!("v{i}"), v).await;
        s.get(&format!("/kv/v{i}"))
            .await
            .assert_ok(&format!("{{\"key\":\"v{i}\",\"value\":{v}}}"));
    }
}

#[actix_web::test]
async fn a_missing_key_is_404_key_not_found() {
    let s = start().await;
    let msg = s.get("/kv/nope").await.assert_error(404);
    assert_eq!(msg, "key not found");
}

#[actix_web::test]
async fn a_deleted_key_is_404() {
    let s = start().await;
    s.set("k", "1").await;
    assert_eq!(s.delete("/kv/k").await.status, 200);
    assert_eq!(s.get("/kv/k").await.assert_error(404), "key not found");
}

#[actix_web::test]
async fn an_expired_key_is_404() {
    let s = start().await;
    assert_eq!(
        s.put("/kv/k", r#"{"value": 1, "ttl": 2}"#).await.status,
        200
    );
    s.clock.advance(1999);
    assert_eq!(s.get("/kv/k").await.status, 200);
    s.clock.advance(1);
    assert_eq!(s.get("/kv/k").await.assert_error(404), "key not found");
}

#[actix_web::test]
async fn keys_are_case_sensitive() {
    let s = start().await;
    s.set("Key", "1").await;
    assert_eq!(s.get("/kv/key").await.status, 404);
    assert_eq!(s.get("/kv/Key").await.status, 200);
}
