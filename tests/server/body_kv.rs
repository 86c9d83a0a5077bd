//! docs/API.md "Body-keyed /kv": `PUT /kv` and `DELETE /kv` with the key in
//! the body, `GET /kv?key=`, and the pairs listing `GET /kv?values=true`
//! that replaces the older store's "every pair as one object" (a bare
//! `GET /kv` stays the key listing).

use actix_web::http::Method;

use crate::common::start;

#[actix_web::test]
async fn put_with_the_key_in_the_body_answers_as_put_kv_key() {
    let s = start().await;
    s.put("/kv", r#"{"key": "user:1", "value": {"a": [1, 2.50]}}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"user:1","value":{"a":[1,2.50]},"created":true}"#);
    s.put("/kv", r#"{"key": "user:1", "value": null}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"user:1","value":null,"created":false}"#);
    s.get("/kv/user:1")
        .await
        .assert_ok(r#"{"key":"user:1","value":null}"#);
}

#[actix_web::test]
async fn put_with_ttl_expires() {
    let s = start().await;
    s.put("/kv", r#"{"key": "t", "value": 1, "ttl": 2}"#)
        .await
        .assert_ok(r#"{"success":true,"key":"t","value":1,"created":true}"#);
    s.clock.advance(1999);
    assert_eq!(s.get("/kv?key=t").await.status, 200);
    s.clock.advance(1);
    assert_eq!(s.get("/kv?key=t").await.assert_error(404), "key not found");
}

#[actix_web::test]
async fn get_with_a_key_parameter_reads_one_key() {
    let s = start().await;
    s.set("a%2Fb", "[true]").await;
    s.get("/kv?key=a%2Fb")
        .await
        .assert_ok(r#"{"key":"a/b","value":[true]}"#);
    assert_eq!(
        s.get("/kv?key=nope").await.assert_error(404),
        "key not found"
    );
    assert_eq!(
        s.get("/kv?key=").await.assert_error(400),
        "invalid key: key must not be empty"
    );
}

#[actix_web::test]
async fn a_key_parameter_wins_over_the_listing_parameters() {
    let s = start().await;
    s.set("a", "1").await;
    s.set("b", "2").await;
    s.get("/kv?prefix=b&key=a&values=true")
        .await
        .assert_ok(r#"{"key":"a","value":1}"#);
}

#[actix_web::test]
async fn delete_with_the_key_in_the_body_answers_as_delete_kv_key() {
    let s = start().await;
    s.set("k", "1").await;
    let del = |body: &'static str| s.call(Method::DELETE, "/kv", body);
    del(r#"{"key": "k"}"#)
        .await
        .assert_ok(r#"{"success":true,"deleted":true}"#);
    assert_eq!(s.get("/kv/k").await.status, 404);
    assert_eq!(
        del(r#"{"key": "k"}"#).await.assert_error(404),
        "key not found"
    );
}

#[actix_web::test]
async fn bodies_of_the_wrong_shape_are_400_and_change_nothing() {
    let s = start().await;
    s.set("k", "1").await;
    let puts = [
        ("", "invalid JSON body"),
        ("[]", "body must be a JSON object like {\"key\""),
        (r#"{"value": 1}"#, "body must have a \"key\" field"),
        (
            r#"{"key": null, "value": 1}"#,
            "invalid key: key must be a string",
        ),
        (r#"{"key": "k"}"#, "body must have a \"value\" field"),
        (
            r#"{"key": "k", "value": 2, "ttl": [1]}"#,
            "ttl must be a number",
        ),
    ];
    for (body, want) in puts {
        let msg = s.put("/kv", body).await.assert_error(400);
        assert!(msg.starts_with(want), "PUT {body}: {msg}");
    }
    let deletes = [
        ("", "invalid JSON body"),
        ("1", "body must be a JSON object like {\"key\": \"k\"}"),
        ("{}", "body must have a \"key\" field"),
        (r#"{"key": ["k"]}"#, "invalid key: key must be a string"),
    ];
    for (body, want) in deletes {
        let msg = s.call(Method::DELETE, "/kv", body).await.assert_error(400);
        assert!(msg.starts_with(want), "DELETE {body}: {msg}");
    }
    s.get("/kv/k").await.assert_ok(r#"{"key":"k","value":1}"#);
}

#[actix_web::test]
async fn a_bare_get_kv_is_still_the_key_listing() {
    let s = start().await;
    s.put("/kv", r#"{"key": "b", "value": 2}"#).await;
    s.put("/kv", r#"{"key": "a", "value": 1}"#).await;
    s.get("/kv").await.assert_ok(r#"{"keys":["a","b"]}"#);
    s.get("/kv?values=false")
        .await
        .assert_ok(r#"{"keys":["a","b"]}"#);
}

#[actix_web::test]
async fn values_true_lists_every_pair_as_one_object_in_key_order() {
    let s = start().await;
    s.get("/kv?values=true").await.assert_ok(r#"{"pairs":{}}"#);
    s.set("b", r#"[2, {"x": 1.0}]"#).await;
    s.set("a", "1").await;
    s.set("q%22", r#""quoted""#).await;
    s.get("/kv?values=true")
        .await
        .assert_ok(r#"{"pairs":{"a":1,"b":[2,{"x":1.0}],"q\"":"quoted"}}"#);
}

#[actix_web::test]
async fn the_pairs_listing_takes_prefix_limit_and_after_like_the_keys() {
    let s = start().await;
    for (k, v) in [("p1", "1"), ("p2", "2"), ("p3", "3"), ("q1", "4")] {
        s.set(k, v).await;
    }
    s.get("/kv?values=true&prefix=p&limit=2")
        .await
        .assert_ok(r#"{"pairs":{"p1":1,"p2":2},"next":"p2"}"#);
    s.get("/kv?values=true&prefix=p&limit=2&after=p2")
        .await
        .assert_ok(r#"{"pairs":{"p3":3}}"#);
    s.get("/kv?values=true&after=p3")
        .await
        .assert_ok(r#"{"pairs":{"q1":4}}"#);
}

#[actix_web::test]
async fn expired_and_deleted_pairs_never_appear() {
    let s = start().await;
    s.set("a", "1").await;
    s.set("b", "2").await;
    s.put("/kv/c", r#"{"value": 3, "ttl": 1}"#).await;
    s.delete("/kv/b").await;
    s.clock.advance(1000);
    s.get("/kv?values=true")
        .await
        .assert_ok(r#"{"pairs":{"a":1}}"#);
}

#[actix_web::test]
async fn a_pairs_listing_longer_than_one_chunk_is_streamed_whole_and_in_order() {
    let s = start().await;
    let n = 2500; // more than two scan chunks
    let ops: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"op":"set","key":"k{i:05}","value":{i}}}"#))
        .collect();
    let batch = format!(r#"{{"operations":[{}]}}"#, ops.join(","));
    assert_eq!(s.post("/kv/batch", &batch).await.status, 200);
    let r = s.get("/kv?values=true").await;
    assert_eq!(r.status, 200);
    let want: String = (0..n)
        .map(|i| format!(r#""k{i:05}":{i}"#))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(r.body, format!(r#"{{"pairs":{{{want}}}}}"#));
    let v = s.get("/kv?values=true&limit=2049").await.json();
    assert_eq!(v["pairs"].as_object().unwrap().len(), 2049);
    assert_eq!(v["pairs"]["k02048"], 2048);
    assert_eq!(v["next"], "k02048");
}

#[actix_web::test]
async fn a_values_parameter_other_than_true_or_false_is_400() {
    let s = start().await;
    for q in ["values=1", "values=yes", "values="] {
        let msg = s.get(&format!("/kv?{q}")).await.assert_error(400);
        assert!(
            msg.starts_with("invalid query parameter values"),
            "{q}: {msg}"
        );
    }
}
