//! Every error case of docs/API.md against the real binary: status, JSON body,
//! and nothing stored afterwards.

use crate::support::{exchange, request, start};

#[test]
fn every_error_case_answers_json_with_its_status_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &["--max-body-bytes", "2048"], &[]);
    let p = s.port;
    let long_key = "k".repeat(1025);
    let big = format!(r#"{{"value": "{}"}}"#, "x".repeat(3000));
    let many = format!(
        r#"{{"operations":[{}]}}"#,
        vec![r#"{"op":"get","key":"a"}"#; 10_001].join(",")
    );
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        ("GET", "/kv/missing".into(), None, 404),
        ("DELETE", "/kv/missing".into(), None, 404),
        ("PUT", "/kv/a".into(), Some("{".into()), 400),
        ("PUT", "/kv/a".into(), Some("[1]".into()), 400),
        ("PUT", "/kv/a".into(), Some(r#"{"ttl": 1}"#.into()), 400),
        (
            "PUT",
            "/kv/a".into(),
            Some(r#"{"value": 1, "ttl": "1"}"#.into()),
            400,
        ),
        (
            "PUT",
            format!("/kv/{long_key}"),
            Some(r#"{"value": 1}"#.into()),
            400,
        ),
        ("PUT", "/kv/a".into(), Some(big), 413),
        ("GET", "/kv?limit=0".into(), None, 400),
        (
            "POST",
            "/kv/batch".into(),
            Some(r#"{"operations": 5}"#.into()),
            400,
        ),
        (
            "POST",
            "/kv/batch".into(),
            Some(
                r#"{"operations":[{"op":"set","key":"a","value":1},{"op":"nope","key":"a"}]}"#
                    .into(),
            ),
            400,
        ),
        ("POST", "/kv/batch".into(), Some(many), 413),
        ("POST", "/kv/a".into(), None, 405),
        ("PATCH", "/kv".into(), None, 405),
        ("GET", "/nowhere".into(), None, 404),
    ];
    // The oversized batch is over the body limit too: both are 413.
    for (method, path, body, status) in &cases {
        let r = request(p, method, path, body.as_deref(), &[]);
        r.assert_error(*status);
    }
    let r = request(
        p,
        "PUT",
        "/kv/a",
        Some(r#"{"value": 1}"#),
        &[("Content-Type", "text/plain")],
    );
    r.assert_error(415);
    assert_eq!(s.req("GET", "/kv", None).body, r#"{"keys":[]}"#);
    assert_eq!(s.req("GET", "/kv/a", None).status, 404);
    s.stop();
}

#[test]
fn a_body_without_content_type_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &[], &[]);
    // The support client adds a JSON content type unless one is given: send
    // the request as written instead.
    let body = r#"{"value": 5}"#;
    let raw = format!(
        "PUT /kv/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = exchange(s.port, raw.as_bytes()).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.body,
        r#"{"success":true,"key":"a","value":5,"created":true}"#
    );
    s.stop();
}
