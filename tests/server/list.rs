//! docs/API.md "GET /kv": prefix listing, paging with limit/after/next, streaming.

use crate::common::start;

#[actix_web::test]
async fn an_empty_store_lists_no_keys() {
    let s = start().await;
    s.get("/kv").await.assert_ok(r#"{"keys":[]}"#);
}

#[actix_web::test]
async fn all_keys_are_listed_sorted_byte_wise() {
    let s = start().await;
    for k in ["b", "a", "B", "ab", "a%2Fz"] {
        s.set(k, "1").await;
    }
    s.get("/kv")
        .await
        .assert_ok(r#"{"keys":["B","a","a/z","ab","b"]}"#);
    s.get("/kv?prefix=")
        .await
        .assert_ok(r#"{"keys":["B","a","a/z","ab","b"]}"#);
}

#[actix_web::test]
async fn a_prefix_selects_the_keys_starting_with_it() {
    let s = start().await;
    for k in ["user:1", "user:2", "users", "admin:1"] {
        s.set(k, "1").await;
    }
    s.get("/kv?prefix=user:")
        .await
        .assert_ok(r#"{"keys":["user:1","user:2"]}"#);
    s.get("/kv?prefix=zzz").await.assert_ok(r#"{"keys":[]}"#);
}

#[actix_web::test]
async fn a_prefix_is_percent_decoded() {
    let s = start().await;
    s.set("a%20b", "1").await;
    s.set("a%26c", "1").await;
    s.get("/kv?prefix=a%20")
        .await
        .assert_ok(r#"{"keys":["a b"]}"#);
    s.get("/kv?prefix=a%26")
        .await
        .assert_ok(r#"{"keys":["a&c"]}"#);
}

#[actix_web::test]
async fn expired_and_deleted_keys_never_appear() {
    let s = start().await;
    s.set("a", "1").await;
    s.set("b", "1").await;
    s.put("/kv/c", r#"{"value": 1, "ttl": 1}"#).await;
    s.delete("/kv/b").await;
    s.clock.advance(1000);
    s.get("/kv").await.assert_ok(r#"{"keys":["a"]}"#);
}

#[actix_web::test]
async fn paging_with_limit_and_after_walks_every_key_once() {
    let s = start().await;
    for k in ["k1", "k2", "k3", "k4", "k5"] {
        s.set(k, "1").await;
    }
    s.get("/kv?limit=2")
        .await
        .assert_ok(r#"{"keys":["k1","k2"],"next":"k2"}"#);
    s.get("/kv?limit=2&after=k2")
        .await
        .assert_ok(r#"{"keys":["k3","k4"],"next":"k4"}"#);
    s.get("/kv?limit=2&after=k4")
        .await
        .assert_ok(r#"{"keys":["k5"]}"#);
}

#[actix_web::test]
async fn next_is_absent_when_the_page_ends_exactly_at_the_last_key() {
    let s = start().await;
    for k in ["k1", "k2"] {
        s.set(k, "1").await;
    }
    s.get("/kv?limit=2")
        .await
        .assert_ok(r#"{"keys":["k1","k2"]}"#);
    s.get("/kv?limit=5")
        .await
        .assert_ok(r#"{"keys":["k1","k2"]}"#);
}

#[actix_web::test]
async fn after_alone_returns_keys_strictly_greater() {
    let s = start().await;
    for k in ["a", "b", "c"] {
        s.set(k, "1").await;
    }
    s.get("/kv?after=a")
        .await
        .assert_ok(r#"{"keys":["b","c"]}"#);
    s.get("/kv?after=bb").await.assert_ok(r#"{"keys":["c"]}"#);
}

#[actix_web::test]
async fn prefix_and_paging_combine() {
    let s = start().await;
    for k in ["p1", "p2", "p3", "q1"] {
        s.set(k, "1").await;
    }
    s.get("/kv?prefix=p&limit=2&after=p1")
        .await
        .assert_ok(r#"{"keys":["p2","p3"]}"#);
}

#[actix_web::test]
async fn a_limit_that_is_not_a_positive_integer_is_400() {
    let s = start().await;
    for q in ["limit=0", "limit=-1", "limit=abc", "limit=1.5", "limit="] {
        let msg = s.get(&format!("/kv?{q}")).await.assert_error(400);
        assert!(msg.contains("limit"), "{q}: {msg}");
    }
}

#[actix_web::test]
async fn a_listing_longer_than_one_chunk_is_streamed_whole_and_in_order() {
    let s = start().await;
    let n = 2500; // more than two scan chunks
    let mut batch = String::from(r#"{"operations":["#);
    for i in 0..n {
        if i > 0 {
            batch.push(',');
        }
        batch.push_str(&format!(r#"{{"op":"set","key":"k{i:05}","value":{i}}}"#));
    }
    batch.push_str("]}");
    assert_eq!(s.post("/kv/batch", &batch).await.status, 200);
    let r = s.get("/kv").await;
    assert_eq!(r.status, 200);
    let keys: Vec<String> = serde_json::from_value(r.json()["keys"].clone()).unwrap();
    let want: Vec<String> = (0..n).map(|i| format!("k{i:05}")).collect();
    assert_eq!(keys, want);
    assert!(r.json().get("next").is_none());
    let r = s.get("/kv?limit=2049").await;
    let v = r.json();
    assert_eq!(v["keys"].as_array().unwrap().len(), 2049);
    assert_eq!(v["next"], "k02048");
}

#[actix_web::test]
async fn keys_needing_json_escapes_are_listed_escaped() {
    let s = start().await;
    s.set("q%22uote%5C", "1").await;
    s.get("/kv").await.assert_ok(r#"{"keys":["q\"uote\\"]}"#);
}
