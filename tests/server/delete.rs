//! docs/API.md "DELETE /kv/{key}".

use crate::common::start;

#[actix_web::test]
async fn deleting_a_live_key_answers_success_deleted() {
    let s = start().await;
    s.set("a", "1").await;
    s.delete("/kv/a")
        .await
        .assert_ok(r#"{"success":true,"deleted":true}"#);
    assert_eq!(s.get("/kv/a").await.status, 404);
}

#[actix_web::test]
async fn deleting_a_missing_key_is_404() {
    let s = start().await;
    assert_eq!(s.delete("/kv/a").await.assert_error(404), "key not found");
}

#[actix_web::test]
async fn deleting_twice_is_404_the_second_time() {
    let s = start().await;
    s.set("a", "1").await;
    assert_eq!(s.delete("/kv/a").await.status, 200);
    assert_eq!(s.delete("/kv/a").await.assert_error(404), "key not found");
}

#[actix_web::test]
async fn deleting_an_expired_key_is_404() {
    let s = start().await;
    s.put("/kv/a", r#"{"value": 1, "ttl": 1}"#).await;
    s.clock.advance(1000);
    assert_eq!(s.delete("/kv/a").await.assert_error(404), "key not found");
}
