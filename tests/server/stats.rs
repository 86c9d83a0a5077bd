//! docs/API.md "GET /stats".

use crate::common::start;

#[actix_web::test]
async fn stats_has_every_field_of_both_spec_variants_and_engine_figures() {
    let s = start().await;
    let r = s.get("/stats").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let v = r.json();
    for field in [
        "keys",
        "size_bytes",
        "total_keys",
        "total_operations",
        "uptime_seconds",
        "segments",
        "disk_bytes",
        "dead_bytes",
        "compactions",
        "reclaimed_bytes",
        "last_compaction_ms",
        "fsyncs",
        "writes",
    ] {
        assert!(v[field].is_u64(), "{field} in {}", r.body);
    }
    assert_eq!(v["read_only"], false);
}

#[actix_web::test]
async fn keys_and_size_bytes_count_live_values_as_stored() {
    let s = start().await;
    s.set("a", "[1, 2]").await; // stored as [1,2]: 5 bytes
    s.set("b", "\"xy\"").await; // 4 bytes
    s.set("c", "1").await;
    s.delete("/kv/c").await;
    s.put("/kv/d", r#"{"value": 12, "ttl": 1}"#).await;
    s.clock.advance(1000);
    let v = s.get("/stats").await.json();
    assert_eq!(v["keys"], 2);
    assert_eq!(v["total_keys"], 2);
    assert_eq!(v["size_bytes"], 9);
}

#[actix_web::test]
async fn total_operations_counts_gets_puts_deletes_lists_and_batch_operations() {
    let s = start().await;
    s.set("a", "1").await; // 1
    s.get("/kv/a").await; // 2
    s.get("/kv/missing").await; // 3
    s.delete("/kv/a").await; // 4
    s.get("/kv").await; // 5
    s.post(
        "/kv/batch",
        r#"{"operations":[{"op":"set","key":"b","value":1},{"op":"get","key":"b"},{"op":"delete","key":"b"}]}"#,
    )
    .await; // 8
    s.get("/health").await; // not a key operation
    let v = s.get("/stats").await.json();
    assert_eq!(v["total_operations"], 8);
}
