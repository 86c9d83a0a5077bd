//! The leader is SIGKILLed while eight clients write through every node:
//! a new leader is elected, writes go on, and every surviving node holds
//! every acknowledged write and no batch in part.

use std::time::Duration;

use crate::harness::{Cluster, PATIENCE};
use crate::load::{Load, Shape};

const SHAPE: Shape = Shape {
    prefix: "",
    keys_per_thread: None,
    timeout: Duration::from_secs(10),
};

/// Kills the leader `kills` times in a row (each time the current one),
/// under load, then checks the survivors.
fn leader_kill(n: usize, kills: usize) {
    let mut c = Cluster::start(n, &[]);
    let load = Load::start(&c.ports(&c.ids()), SHAPE);
    load.wait_progress(100, PATIENCE);
    let mut dead = Vec::new();
    for _ in 0..kills {
        let old = c.wait_leader();
        c.kill(old);
        dead.push(old);
        let new = c.wait_new_leader(old);
        assert!(!dead.contains(&new));
        // The new leader takes writes (also those sent to the dead node's
        // clients, which moved on).
        load.wait_progress(100, PATIENCE);
    }
    let model = load.finish();
    let survivors = c.live();
    assert_eq!(survivors.len(), n - kills);
    eprintln!(
        "{n} nodes, {kills} leader kills: {} acknowledged, {} unknown, statuses {:?}",
        model.acked(),
        model.unknown(),
        model.statuses
    );
    let dump = c.wait_identical(&survivors);
    let bad = model.check(&dump);
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
    // Linearizable reads (the default) agree on every survivor.
    for id in &survivors {
        for (key, v) in model.sample_acked(30) {
            let r = c.must(*id, "GET", &format!("/kv/{key}"), None);
            assert_eq!(r.status, 200, "{key} on node {id}: {}", r.body);
            assert_eq!(r.json()["value"].as_u64(), Some(v), "{key} on node {id}");
        }
    }
}

#[test]
fn leader_sigkill_under_load_three_nodes() {
    leader_kill(3, 1);
}

#[test]
fn leader_sigkill_twice_under_load_five_nodes() {
    leader_kill(5, 2);
}
