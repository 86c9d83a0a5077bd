//! With the default sync mode `always`, concurrent PUTs share fsyncs: the
//! handlers await the writer instead of blocking the 2 HTTP workers (which
//! would cap a group at 2 writes).

use crate::support::{request, start};

#[test]
fn sixty_four_concurrent_put_connections_share_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &["--workers", "2"], &[]);
    let port = s.port;
    let threads: Vec<_> = (0..64)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..10 {
                    let r = request(
                        port,
                        "PUT",
                        &format!("/kv/t{t}-{i}"),
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
    let stats = s.req("GET", "/stats", None).json();
    let writes = stats["writes"].as_u64().unwrap();
    let fsyncs = stats["fsyncs"].as_u64().unwrap();
    assert_eq!(stats["keys"], 640);
    assert!(writes >= 640, "{stats}");
    eprintln!("{writes} writes, {fsyncs} fsyncs");
    assert!(
        fsyncs * 2 < writes,
        "{writes} writes took {fsyncs} fsyncs: at most 2 writes per fsync, what 2 blocked workers would give"
    );
    // The engine's fsync timings reach /metrics.
    let metrics = s.req("GET", "/metrics", None).body;
    let observed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kvstore_fsync_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fsync histogram in\n{metrics}"));
    assert!(observed > 0, "no fsync observed ({fsyncs} counted)");
    s.stop();
}
