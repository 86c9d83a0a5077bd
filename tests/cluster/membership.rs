//! Membership at run time: a new, empty node added under load with
//! `POST /cluster/members` catches up (far behind: by snapshot, or by the
//! log) and serves; `DELETE /cluster/members/{id}` takes it out again.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, PATIENCE};
use crate::load::{Load, Shape};

fn members(c: &Cluster, id: u64) -> Vec<u64> {
    let info = c.info(id).unwrap();
    let mut m: Vec<u64> = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    m.sort_unstable();
    m
}

#[test]
fn node_added_under_load_catches_up_serves_and_can_be_removed() {
    // Snapshots every 100 entries: with openraft keeping 1000 entries past
    // the last one, the 1500+ entries below leave the new node too far
    // behind for the log alone.
    let mut c = Cluster::start(3, &["--snapshot-logs", "100"]);
    // A head start the new node has to catch up on: a few thousand keys.
    for b in 0..20 {
        let ops: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"op":"set","key":"pre-{b}-{i}","value":{i}}}"#))
            .collect();
        let body = format!(r#"{{"operations":[{}]}}"#, ops.join(","));
        let r = c.must(1 + b % 3, "POST", "/kv/batch", Some(&body));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let load = Load::start(
        &c.ports(&c.ids()),
        Shape {
            prefix: "m-",
            keys_per_thread: Some(50),
            timeout: Duration::from_secs(10),
        },
    );
    load.wait_progress(1500, PATIENCE);
    let new = c.spawn_joiner();
    let addr = format!("127.0.0.1:{}", c.port(new));
    let body = format!(r#"{{"id": {new}, "addr": "{addr}"}}"#);
    // Any node takes it (a write: forwarded to the leader).
    let r = c.must(2, "POST", "/cluster/members", Some(&body));
    assert_eq!(r.status, 200, "{}\n{}", r.body, c.logs_tail());
    let deadline = Instant::now() + PATIENCE;
    while members(&c, c.wait_leader()) != vec![1, 2, 3, new] {
        assert!(Instant::now() < deadline, "{new} never became a voter");
        std::thread::sleep(Duration::from_millis(200));
    }
    // It is a voter that takes part in the writes still going on.
    load.wait_progress(100, PATIENCE);
    let model = load.finish();
    let dump = c.wait_identical(&c.ids());
    assert!(dump.len() >= 2000, "{}", dump.len());
    let bad = model.check(&dump);
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
    // The new node serves: a linearizable read, a write readable elsewhere.
    let r = c.must(new, "GET", "/kv/pre-19-99", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["value"], 99);
    let r = c.must(new, "PUT", "/kv/from-new", Some(r#"{"value": "hi"}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c.must(1, "GET", "/kv/from-new", None);
    assert_eq!(r.json()["value"], "hi");
    // It caught up by snapshot: the log it needed was purged already.
    let stats = c.must(new, "GET", "/stats", None).json();
    assert!(
        stats["raft"]["snapshots_installed"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{}",
        stats["raft"]
    );
    let info = c.info(new).unwrap();
    assert_eq!(info["node_id"].as_u64(), Some(new));
    let nodes = info["nodes"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n["id"].as_u64() == Some(new) && n["addr"] == addr.as_str()),
        "{info}"
    );

    // Removed again: the others go on as three.
    let r = c.must(1, "DELETE", &format!("/cluster/members/{new}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = Instant::now() + PATIENCE;
    while members(&c, 1) != vec![1, 2, 3] {
        assert!(
            Instant::now() < deadline,
            "{new} never left: {:?}",
            members(&c, 1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.kill(new);
    let r = c.must(3, "PUT", "/kv/after-removal", Some(r#"{"value": 1}"#));
    assert_eq!(r.status, 200, "{}", r.body);
}
