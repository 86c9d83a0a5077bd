//! Every node answers the API as a single node does (writes sent to
//! followers are forwarded), and `GET /cluster` has the contract's shape.

use serde_json::{Value, json};

use crate::harness::Cluster;

#[test]
fn every_node_answers_like_a_single_node_and_reports_the_cluster() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let followers: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    // A write through a follower, read through the other and the leader.
    let r = c.must(
        f1,
        "PUT",
        "/kv/user:1",
        Some(r#"{"value": {"name": "ada"}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"success": true, "key": "user:1", "value": {"name": "ada"}, "created": true})
    );
    for id in [f2, leader, f1] {
        let r = c.must(id, "GET", "/kv/user:1", None);
        assert_eq!(
            r.json(),
            json!({"key": "user:1", "value": {"name": "ada"}}),
            "node {id}"
        );
    }
    let r = c.must(f2, "PUT", "/kv/user:1", Some(r#"{"value": 2}"#));
    assert_eq!(r.json()["created"], json!(false));
    let r = c.must(f2, "GET", "/kv/nope", None);
    assert_eq!(r.assert_error(404), "key not found");

    // A batch through a follower: one atomic step, results as documented.
    let body = r#"{"operations": [{"op": "set", "key": "a", "value": 1},
        {"op": "get", "key": "a"}, {"op": "delete", "key": "b"}]}"#;
    let r = c.must(f2, "POST", "/kv/batch", Some(body));
    assert_eq!(
        r.json(),
        json!({"success": true, "results": [{"success": true, "created": true},
            {"key": "a", "value": 1}, {"error": "key not found"}]}),
        "{}",
        r.body
    );
    // Invalid input is refused wherever it arrives, nothing applied.
    let r = c.must(
        f1,
        "POST",
        "/kv/batch",
        Some(r#"{"operations": [{"op": "set", "key": "z", "value": 1}, {"op": "nope"}]}"#),
    );
    r.assert_error(400);
    let r = c.must(f1, "PUT", "/kv/x", Some("not json"));
    r.assert_error(400);

    // Listing on every node, linearizable and local.
    for id in c.ids() {
        let r = c.must(id, "GET", "/kv?prefix=", None);
        assert_eq!(r.json(), json!({"keys": ["a", "user:1"]}), "node {id}");
    }
    c.wait_caught_up(&c.ids());
    for id in c.ids() {
        let r = c.must(id, "GET", "/kv?prefix=u&consistency=local", None);
        assert_eq!(r.json(), json!({"keys": ["user:1"]}), "node {id}");
        let r = c.must(id, "GET", "/kv/a?consistency=local", None);
        assert_eq!(r.json(), json!({"key": "a", "value": 1}), "node {id}");
    }

    // Conditional writes are decided once, whichever node they reach.
    let r = c.must(f1, "POST", "/store", Some(r#"{"key": "s", "value": 1}"#));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = c.must(f2, "POST", "/store", Some(r#"{"key": "s", "value": 2}"#));
    assert_eq!(r.assert_error(409), "key already exists");
    let r = c.must(leader, "PUT", "/store", Some(r#"{"key": "t", "value": 1}"#));
    r.assert_error(404);

    let r = c.must(f1, "DELETE", "/kv/user:1", None);
    assert_eq!(r.json(), json!({"success": true, "deleted": true}));
    let r = c.must(f2, "DELETE", "/kv/user:1", None);
    r.assert_error(404);

    // GET /cluster: the same leader, term and members everywhere.
    let infos: Vec<Value> = c.ids().iter().map(|&id| c.info(id).unwrap()).collect();
    for (id, info) in c.ids().iter().zip(&infos) {
        assert_eq!(info["node_id"].as_u64(), Some(*id), "{info}");
        assert_eq!(info["leader"].as_u64(), Some(leader), "{info}");
        assert_eq!(info["term"], infos[0]["term"], "{info}");
        assert!(info["term"].as_u64().is_some_and(|t| t >= 1), "{info}");
        assert_eq!(info["members"], json!([1, 2, 3]), "{info}");
        let commit = info["commit_index"].as_u64().unwrap();
        let applied = info["applied_index"].as_u64().unwrap();
        assert!(commit >= 6 && applied <= commit, "{info}");
        let nodes = info["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{info}");
        for n in nodes {
            let nid = n["id"].as_u64().unwrap();
            assert_eq!(
                n["addr"],
                json!(format!("127.0.0.1:{}", c.port(nid))),
                "{info}"
            );
            let role = n["role"].as_str().unwrap();
            assert!(!role.is_empty(), "{info}");
            if *id == leader {
                // The leader knows how far each member has replicated.
                assert!(n["matched_index"].as_u64().is_some(), "{info}");
            } else {
                assert!(
                    n["matched_index"].is_null() || n["matched_index"].is_u64(),
                    "{info}"
                );
            }
        }
    }
}
