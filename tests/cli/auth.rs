//! `--auth-token` / `KVSTORE_AUTH_TOKEN`: on, every route but /health needs
//! `Authorization: Bearer`; off, nothing does.

use crate::support::{request, start};

#[test]
fn with_a_token_from_the_environment_requests_need_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(
        &tmp.path().join("data"),
        &[],
        &[("KVSTORE_AUTH_TOKEN", "tok")],
    );
    assert_eq!(s.req("GET", "/health", None).status, 200);
    s.req("GET", "/stats", None).assert_error(401);
    s.req("PUT", "/kv/a", Some(r#"{"value": 1}"#))
        .assert_error(401);
    let bad = [("Authorization", "Bearer nope")];
    request(s.port, "GET", "/kv", None, &bad).assert_error(401);
    let good = [("Authorization", "Bearer tok")];
    assert_eq!(
        request(s.port, "PUT", "/kv/a", Some(r#"{"value": 1}"#), &good).status,
        200
    );
    assert_eq!(
        request(s.port, "GET", "/kv/a", None, &good).body,
        r#"{"key":"a","value":1}"#
    );
    s.stop();
}

#[test]
fn the_flag_overrides_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(
        &tmp.path().join("data"),
        &["--auth-token", "flag"],
        &[("KVSTORE_AUTH_TOKEN", "env")],
    );
    request(
        s.port,
        "GET",
        "/stats",
        None,
        &[("Authorization", "Bearer env")],
    )
    .assert_error(401);
    assert_eq!(
        request(
            s.port,
            "GET",
            "/stats",
            None,
            &[("Authorization", "Bearer flag")]
        )
        .status,
        200
    );
    s.stop();
}

#[test]
fn without_a_token_no_route_needs_one() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &[], &[]);
    assert_eq!(s.req("GET", "/stats", None).status, 200);
    assert_eq!(s.req("PUT", "/kv/a", Some(r#"{"value": 1}"#)).status, 200);
    assert_eq!(s.req("GET", "/metrics", None).status, 200);
    s.stop();
}
