//! Three real cluster nodes on 127.0.0.1: a leader is elected, writes sent
//! to any node are readable on every node, conditional writes are decided
//! once, a retried request id is applied once, a minority answers 503 in
//! bounded time, and restarted nodes rejoin from their data dirs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, Server, free_port, request, try_request};

fn start_node(dir: &Path, id: u64, port: u16, peers: &str) -> Server {
    start_node_with(dir, id, port, peers, &[])
}

fn start_node_with(dir: &Path, id: u64, port: u16, peers: &str, extra: &[&str]) -> Server {
    let log = dir.with_extension(format!("{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .args(["--node-id", &id.to_string(), "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .args(["--peers", peers, "--quorum-timeout", "1s"])
        .args(extra)
        .env_remove("PORT")
        .env_remove("KVSTORE_AUTH_TOKEN")
        .env_remove("KVSTORE_NODE_ID")
        .env_remove("KVSTORE_PEERS")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let server = Server { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if try_request(port, "GET", "/health", None, &[]).is_ok_and(|r| r.status == 200) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("node {id} did not start: {}", server.log_text());
}

/// Polls `f` until it returns `Some`, for up to 20 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leader_of(port: u16) -> Option<u64> {
    let r = try_request(port, "GET", "/cluster", None, &[]).ok()?;
    (r.status == 200)
        .then(|| r.json()["leader"].as_u64())
        .flatten()
}

#[test]
fn three_nodes_replicate_forward_and_refuse_without_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let dirs: Vec<_> = (1..=3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let mut nodes: Vec<Option<Server>> = (0..3)
        .map(|i| Some(start_node(&dirs[i], i as u64 + 1, ports[i], &peers)))
        .collect();

    let leader = eventually("a leader", || {
        let seen: Vec<Option<u64>> = ports.iter().map(|p| leader_of(*p)).collect();
        seen[0].filter(|l| seen.iter().all(|s| *s == Some(*l)))
    });
    let cluster = request(ports[0], "GET", "/cluster", None, &[]).json();
    assert_eq!(cluster["members"], serde_json::json!([1, 2, 3]));
    assert_eq!(cluster["node_id"], 1);
    assert_eq!(cluster["nodes"].as_array().unwrap().len(), 3);
    let follower = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();

    // A write on a follower is forwarded; every node reads it (linearizable
    // by default; local once applied there).
    let put = request(
        ports[follower],
        "PUT",
        "/kv/k",
        Some(r#"{"value": {"a": 1}}"#),
        &[],
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["created"], true);
    for p in &ports {
        let got = request(*p, "GET", "/kv/k", None, &[]);
        assert_eq!(got.body, r#"{"key":"k","value":{"a":1}}"#);
        eventually("a local read", || {
            let r = request(*p, "GET", "/kv/k?consistency=local", None, &[]);
            (r.status == 200).then_some(())
        });
    }
    let bad = request(ports[0], "GET", "/kv/k?consistency=sometimes", None, &[]);
    bad.assert_error(400);

    // Create-if-absent is decided once, whichever nodes get it.
    let first = request(
        ports[0],
        "POST",
        "/store",
        Some(r#"{"key":"c","value":1}"#),
        &[],
    );
    let second = request(
        ports[1],
        "POST",
        "/store",
        Some(r#"{"key":"c","value":2}"#),
        &[],
    );
    assert_eq!(
        (first.status, second.status),
        (201, 409),
        "{} {}",
        first.body,
        second.body
    );

    // A retried request id is applied once: the retry gets the first answer.
    let h = [("X-Request-Id", "smoke-1")];
    let a = request(ports[follower], "PUT", "/kv/r", Some(r#"{"value":1}"#), &h);
    let b = request(ports[follower], "PUT", "/kv/r", Some(r#"{"value":1}"#), &h);
    assert_eq!(a.json()["created"], true);
    assert_eq!(b.json()["created"], true, "the retry was applied again");

    // Listings and stats hide the reserved keys.
    let keys = request(ports[0], "GET", "/kv", None, &[]).json();
    assert_eq!(keys["keys"], serde_json::json!(["c", "k", "r"]));
    let stats = request(ports[0], "GET", "/stats", None, &[]).json();
    assert_eq!(stats["keys"], 3, "{stats}");
    assert!(stats["raft"]["term"].as_u64().unwrap() >= 1);

    // Kill the two others: the survivor answers 503 within a bounded time.
    let survivor = 0;
    for node in nodes.iter_mut().skip(1) {
        node.take().unwrap().kill();
    }
    let started = Instant::now();
    let r = request(ports[survivor], "PUT", "/kv/q", Some(r#"{"value":1}"#), &[]);
    let msg = r.assert_error(503);
    assert!(msg.starts_with("no quorum"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    request(ports[survivor], "GET", "/kv/k", None, &[]).assert_error(503);
    let local = request(ports[survivor], "GET", "/kv/k?consistency=local", None, &[]);
    assert_eq!(local.status, 200);

    // Restarted from their data dirs, the nodes rejoin and serve the data.
    for i in 1..3 {
        nodes[i] = Some(start_node(&dirs[i], i as u64 + 1, ports[i], &peers));
    }
    eventually("a leader after restart", || leader_of(ports[2]));
    let got = eventually("a read after restart", || {
        let r = request(ports[2], "GET", "/kv/k", None, &[]);
        (r.status == 200).then_some(r)
    });
    assert_eq!(got.body, r#"{"key":"k","value":{"a":1}}"#);
    let w = eventually("a write after restart", || {
        let r = request(ports[1], "PUT", "/kv/z", Some(r#"{"value":2}"#), &[]);
        (r.status == 200).then_some(r)
    });
    assert_eq!(w.json()["created"], true);
    for n in nodes.into_iter().flatten() {
        n.stop();
    }
}

#[test]
fn a_single_node_has_no_cluster_routes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = crate::support::start(&tmp.path().join("d"), &[], &[]);
    s.req("GET", "/cluster", None).assert_error(404);
    s.req("POST", "/raft/vote", Some("{}")).assert_error(404);
    s.stop();
}

#[test]
fn a_joining_node_is_caught_up_by_snapshot_then_removed_with_auth_on() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let peers = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let extra = ["--auth-token", "s3cret", "--snapshot-logs", "10"];
    let auth = [("Authorization", "Bearer s3cret")];
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("n{}", i + 1));
            start_node_with(&dir, i as u64 + 1, ports[i], &peers, &extra)
        })
        .collect();
    let leader_of_auth = |port: u16| {
        let r = try_request(port, "GET", "/cluster", None, &auth).ok()?;
        (r.status == 200)
            .then(|| r.json()["leader"].as_u64())
            .flatten()
    };
    eventually("a leader all three know", || {
        let seen: Vec<Option<u64>> = ports[..3].iter().map(|p| leader_of_auth(*p)).collect();
        seen[0].filter(|l| seen.iter().all(|s| *s == Some(*l)))
    });
    request(ports[0], "GET", "/cluster", None, &[]).assert_error(401);
    for k in 0..40 {
        let r = request(
            ports[k % 3],
            "PUT",
            &format!("/kv/k{k}"),
            Some(r#"{"value":1}"#),
            &auth,
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The log behind the leader's snapshot is purged: the new node can only
    // be caught up by a snapshot.
    let joiner_peers = format!("4=127.0.0.1:{}", ports[3]);
    let joiner = start_node_with(
        &tmp.path().join("n4"),
        4,
        ports[3],
        &joiner_peers,
        &[&extra[..], &["--join"]].concat(),
    );
    let body = format!(r#"{{"id":4,"addr":"127.0.0.1:{}"}}"#, ports[3]);
    let added = request(ports[1], "POST", "/cluster/members", Some(&body), &auth);
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.json()["members"], serde_json::json!([1, 2, 3, 4]));
    let stats = eventually("the new node to have all the data", || {
        let stats = request(ports[3], "GET", "/stats", None, &auth).json();
        (stats["keys"] == 40).then_some(stats)
    });
    let r = request(ports[3], "GET", "/kv/k0?consistency=local", None, &auth);
    assert_eq!(r.body, r#"{"key":"k0","value":1}"#);
    assert!(
        stats["raft"]["snapshots_installed"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // A write through the new node, then its removal.
    let w = request(ports[3], "PUT", "/kv/new", Some(r#"{"value":2}"#), &auth);
    assert_eq!(w.status, 200, "{}", w.body);
    let removed = request(ports[0], "DELETE", "/cluster/members/4", None, &auth);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json()["members"], serde_json::json!([1, 2, 3]));
    request(ports[0], "DELETE", "/cluster/members/9", None, &auth).assert_error(404);
    let got = request(ports[2], "GET", "/kv/new", None, &auth);
    assert_eq!(got.body, r#"{"key":"new","value":2}"#);
    nodes.push(joiner);
    for n in nodes {
        n.stop();
    }
}
