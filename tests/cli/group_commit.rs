//! With the default sync mode `always`, 64 concurrent PUT connections on 2
//! HTTP workers are all acknowledged and durable, and the engine's fsyncs
//! reach `/metrics`. That the handlers await the writer instead of blocking a
//! worker through an fsync is shown deterministically in the engine tests
//! (`concurrency::many_submits_awaited_at_once_complete_and_are_durable`,
//! over a slow fsync): here, how many writes share an fsync depends on the
//! disk's fsync latency against the cost of a request, so it is only printed.

use crate::support::{request, start};

/// Writes and fsyncs so far, from `/stats`.
fn counts(s: &crate::support::Server) -> (u64, u64) {
    let stats = s.req("GET", "/stats", None).json();
    let n = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {stats}"))
    };
    (n("writes"), n("fsyncs"))
}

#[test]
fn sixty_four_concurrent_put_connections_are_acknowledged_durably_and_fsyncs_reach_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &["--workers", "2"], &[]);
    let port = s.port;
    let mut seen = Vec::new();
    for round in 0..2 {
        let (w0, f0) = counts(&s);
        let threads: Vec<_> = (0..64)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let r = request(
                            port,
                            "PUT",
                            &format!("/kv/r{round}-t{t}-{i}"),
                            Some(r#"{"value": 1}"#),
                            &[],
                        );
                        assert_eq!(r.status, 200);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (w1, f1) = counts(&s);
        let (writes, fsyncs) = (w1 - w0, f1 - f0);
        assert!(writes >= 640, "round {round}: {writes} writes");
        assert!(
            fsyncs >= 1 && fsyncs <= writes,
            "round {round}: {fsyncs} fsyncs for {writes} writes"
        );
        eprintln!("round {round}: {writes} writes, {fsyncs} fsyncs");
        seen.push((writes, fsyncs));
    }
    let keys = s.req("GET", "/stats", None).json()["keys"].as_u64();
    assert_eq!(keys, Some(640 * seen.len() as u64));
    // The engine's fsync timings reach /metrics.
    let metrics = s.req("GET", "/metrics", None).body;
    let observed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kvstore_fsync_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fsync histogram in\n{metrics}"));
    let (_, fsyncs) = counts(&s);
    assert!(observed > 0, "no fsync observed ({fsyncs} counted)");
    s.stop();
}
