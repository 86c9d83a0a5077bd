//! docs/API.md "POST /kv/batch": validation first, atomic, in order.

use kvstore::server::ServerConfig;

use crate::common::{start, start_with};

#[actix_web::test]
async fn each_operation_gets_its_result_at_its_index() {
    let s = start().await;
    s.set("old", "\"x\"").await;
    let r = s
        .post(
            "/kv/batch",
            r#"{"operations": [
                {"op": "set", "key": "a", "value": {"n": 1}},
                {"op": "set", "key": "old", "value": 2},
                {"op": "get", "key": "a"},
                {"op": "get", "key": "missing"},
                {"op": "delete", "key": "old"},
                {"op": "delete", "key": "missing"}
            ]}"#,
        )
        .await;
    r.assert_ok(concat!(
        r#"{"success":true,"results":["#,
        r#"{"success":true,"created":true},"#,
        r#"{"success":true,"created":false},"#,
        r#"{"key":"a","value":{"n":1}},"#,
        r#"{"error":"key not found"},"#,
        r#"{"success":true,"deleted":true},"#,
        r#"{"error":"key not found"}"#,
        "]}"
    ));
    s.get("/kv").await.assert_ok(r#"{"keys":["a"]}"#);
}

#[actix_web::test]
async fn a_get_sees_earlier_operations_of_the_same_batch() {
    let s = start().await;
    s.set("a", "1").await;
    let r = s
        .post(
            "/kv/batch",
            r#"{"operations": [{"op":"delete","key":"a"},{"op":"get","key":"a"},
                {"op":"set","key":"a","value":3},{"op":"get","key":"a"}]}"#,
        )
        .await;
    r.assert_ok(concat!(
        r#"{"success":true,"results":[{"success":true,"deleted":true},"#,
        r#"{"error":"key not found"},{"success":true,"created":true},"#,
        r#"{"key":"a","value":3}]}"#
    ));
}

#[actix_web::test]
async fn an_empty_batch_succeeds_with_no_results() {
    let s = start().await;
    s.post("/kv/batch", r#"{"operations": []}"#)
        .await
        .assert_ok(r#"{"success":true,"results":[]}"#);
}

#[actix_web::test]
async fn a_set_with_ttl_expires() {
    let s = start().await;
    s.post(
        "/kv/batch",
        r#"{"operations":[{"op":"set","key":"a","value":1,"ttl":0.5},{"op":"set","key":"b","value":1,"ttl":null}]}"#,
    )
    .await;
    s.clock.advance(500);
    s.get("/kv").await.assert_ok(r#"{"keys":["b"]}"#);
}

/// Each invalid batch, with the message it must produce; none may apply anything.
const INVALID: &[(&str, &str)] = &[
    (
        r#"[{"op":"set","key":"a","value":1},{"op":"frob","key":"a"}]"#,
        "operation 1: unknown op",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"key":"a"}]"#,
        "operation 1: missing \"op\"",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"op":"get"}]"#,
        "operation 1: missing \"key\"",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"op":"get","key":7}]"#,
        "operation 1: key must be a string",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"op":"get","key":""}]"#,
        "operation 1: key must not be empty",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"op":"set","key":"b"}]"#,
        "operation 1: set needs a \"value\"",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"op":"set","key":"b","value":1,"ttl":"9"}]"#,
        "operation 1: ttl",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},5]"#,
        "operation 1: must be an object",
    ),
    (
        r#"[{"op":"set","key":"a","value":1},{"op":1,"key":"a"}]"#,
        "operation 1: unknown op",
    ),
    (
        r#"[{"op":"delete","key":"x"},{"op":"set","key":"a","value":1},{"op":"set","key":"a","value":1,"value":2}]"#,
        "operation 2: ",
    ),
];

#[actix_web::test]
async fn an_invalid_operation_anywhere_is_400_naming_it_and_applies_nothing() {
    let s = start().await;
    s.set("x", "1").await;
    for (ops, want) in INVALID {
        let r = s
            .post("/kv/batch", &format!(r#"{{"operations": {ops}}}"#))
            .await;
        let msg = r.assert_error(400);
        assert!(msg.starts_with(want), "{ops}: got {msg:?}, want {want:?}");
        s.get("/kv").await.assert_ok(r#"{"keys":["x"]}"#);
    }
}

#[actix_web::test]
async fn a_key_over_the_limit_in_a_batch_is_400() {
    let s = start().await;
    let long = "k".repeat(1025);
    let r = s
        .post(
            "/kv/batch",
            &format!(r#"{{"operations":[{{"op":"get","key":"{long}"}}]}}"#),
        )
        .await;
    assert_eq!(
        r.assert_error(400),
        "operation 0: key is 1025 bytes; the limit is 1024"
    );
}

#[actix_web::test]
async fn operations_that_is_not_an_array_is_400() {
    let s = start().await;
    for body in [
        r#"{"operations": {}}"#,
        r#"{"operations": "x"}"#,
        r#"{"operations": null}"#,
        "{}",
    ] {
        let msg = s.post("/kv/batch", body).await.assert_error(400);
        assert!(msg.contains("operations"), "{body}: {msg}");
    }
    for body in ["[]", "\"x\"", "{", ""] {
        s.post("/kv/batch", body).await.assert_error(400);
    }
}

#[actix_web::test]
async fn more_operations_than_the_maximum_is_413_and_applies_nothing() {
    let s = start_with(ServerConfig {
        max_batch_ops: 3,
        ..ServerConfig::default()
    })
    .await;
    let op = r#"{"op":"set","key":"a","value":1}"#;
    let r = s
        .post(
            "/kv/batch",
            &format!(r#"{{"operations":[{op},{op},{op},{op}]}}"#),
        )
        .await;
    assert_eq!(
        r.assert_error(413),
        "batch has 4 operations; the limit is 3"
    );
    assert_eq!(s.get("/kv/a").await.status, 404);
    let ok = s
        .post(
            "/kv/batch",
            &format!(r#"{{"operations":[{op},{op},{op}]}}"#),
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[actix_web::test]
async fn the_default_maximum_is_ten_thousand() {
    let s = start().await;
    let ops = vec![r#"{"op":"get","key":"a"}"#; 10_001].join(",");
    let r = s
        .post("/kv/batch", &format!(r#"{{"operations":[{ops}]}}"#))
        .await;
    r.assert_error(413);
}

#[actix_web::test]
async fn concurrent_readers_never_see_part_of_a_batch() {
    let s = std::rc::Rc::new(start().await);
    // Each batch sets a and b to the same number; a reader's batch of two gets
    // must always see them equal.
    let writer = {
        let s = s.clone();
        async move {
            for i in 0..50 {
                let body = format!(
                    r#"{{"operations":[{{"op":"set","key":"a","value":{i}}},{{"op":"set","key":"b","value":{i}}}]}}"#
                );
                assert_eq!(s.post("/kv/batch", &body).await.status, 200);
            }
        }
    };
    let reader = {
        let s = s.clone();
        async move {
            for _ in 0..50 {
                let r = s
                    .post(
                        "/kv/batch",
                        r#"{"operations":[{"op":"get","key":"a"},{"op":"get","key":"b"}]}"#,
                    )
                    .await;
                let v = r.json();
                assert_eq!(
                    v["results"][0].get("value"),
                    v["results"][1].get("value"),
                    "{}",
                    r.body
                );
            }
        }
    };
    futures::future::join(writer, reader).await;
}
