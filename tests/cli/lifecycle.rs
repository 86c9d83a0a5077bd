//! Start, stop, restart: persistence, TTL across restart, SIGTERM/SIGINT.

use std::time::{Duration, Instant};

use crate::support::{request, start};

#[test]
fn acknowledged_writes_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = start(&dir, &[], &[]);
    assert_eq!(
        s.req("PUT", "/kv/a", Some(r#"{"value": {"x": 1.50}}"#))
            .status,
        200
    );
    assert_eq!(
        s.req("PUT", "/kv/b%2Fc", Some(r#"{"value": [true]}"#))
            .status,
        200
    );
    assert_eq!(
        s.req("PUT", "/kv/gone", Some(r#"{"value": 1}"#)).status,
        200
    );
    assert_eq!(s.req("DELETE", "/kv/gone", None).status, 200);
    let batch = r#"{"operations":[{"op":"set","key":"c","value":"z"},{"op":"delete","key":"a"},{"op":"set","key":"a","value":2}]}"#;
    assert_eq!(s.req("POST", "/kv/batch", Some(batch)).status, 200);
    s.stop();
    assert!(dir.join("wal.log").exists());

    let s = start(&dir, &[], &[]);
    assert_eq!(s.req("GET", "/kv/a", None).body, r#"{"key":"a","value":2}"#);
    assert_eq!(
        s.req("GET", "/kv/b%2Fc", None).body,
        r#"{"key":"b/c","value":[true]}"#
    );
    let listing = s.req("GET", "/kv", None);
    assert_eq!(listing.body, r#"{"keys":["a","b/c","c"]}"#);
    // Streamed, not built whole first.
    assert_eq!(listing.header("transfer-encoding"), Some("chunked"));
    assert_eq!(s.req("GET", "/kv/gone", None).status, 404);
    s.stop();
}

#[test]
fn a_ttl_keeps_counting_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = start(&dir, &[], &[]);
    assert_eq!(
        s.req("PUT", "/kv/short", Some(r#"{"value": 1, "ttl": 1}"#))
            .status,
        200
    );
    assert_eq!(
        s.req("PUT", "/kv/long", Some(r#"{"value": 1, "ttl": 3600}"#))
            .status,
        200
    );
    assert_eq!(
        s.req("PUT", "/kv/dead", Some(r#"{"value": 1, "ttl": 0}"#))
            .status,
        200
    );
    s.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let s = start(&dir, &[], &[]);
    assert_eq!(s.req("GET", "/kv/short", None).status, 404);
    assert_eq!(s.req("GET", "/kv/dead", None).status, 404);
    assert_eq!(s.req("GET", "/kv/long", None).status, 200);
    assert_eq!(s.req("GET", "/kv", None).body, r#"{"keys":["long"]}"#);
    s.stop();
}

#[test]
fn sigterm_exits_zero_within_five_seconds_and_logs_the_recovery_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = start(&dir, &[], &[]);
    assert_eq!(s.req("PUT", "/kv/a", Some(r#"{"value": 1}"#)).status, 200);
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(5));
    assert!(status.is_some_and(|st| st.success()), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let log = s.log_text();
    let summaries = log.lines().filter(|l| l.contains("recovered:")).count();
    assert_eq!(summaries, 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sigint_also_stops_gracefully_and_keeps_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = start(&dir, &["--sync", "never"], &[]);
    assert_eq!(s.req("PUT", "/kv/a", Some(r#"{"value": 1}"#)).status, 200);
    s.signal(libc::SIGINT);
    let status = s.wait_exit(Duration::from_secs(5));
    assert!(status.is_some_and(|st| st.success()), "{status:?}");
    let s = start(&dir, &[], &[]);
    assert_eq!(s.req("GET", "/kv/a", None).status, 200);
    s.stop();
}

#[test]
fn sigterm_with_requests_in_flight_answers_them_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = start(&dir, &[], &[]);
    let port = s.port;
    // Writers keep going until the server stops answering.
    let writers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..100_000 {
                    let path = format!("/kv/t{t}-{i}");
                    match crate::support::try_request(
                        port,
                        "PUT",
                        &path,
                        Some(r#"{"value": 1}"#),
                        &[],
                    ) {
                        Ok(r) if r.status == 200 => acked.push(path),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|st| st.success()),
        "{status:?}: {}",
        s.log_text()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(!acked.is_empty());
    let s = start(&dir, &[], &[]);
    for path in &acked {
        assert_eq!(
            request(s.port, "GET", path, None, &[]).status,
            200,
            "{path}"
        );
    }
    s.stop();
}
