//! Followers and leaders are SIGKILLed and restarted on their data dirs,
//! cycle after cycle, while clients overwrite a fixed set of keys; in the end
//! every node's keyspace is identical and what the clients were told.

use std::time::Duration;

use crate::harness::{Cluster, PATIENCE};
use crate::load::{Load, Shape};

#[test]
fn kill_and_restart_followers_and_leaders_repeatedly() {
    let mut c = Cluster::start(3, &[]);
    let load = Load::start(
        &c.ports(&c.ids()),
        Shape {
            prefix: "",
            keys_per_thread: Some(25),
            timeout: Duration::from_secs(10),
        },
    );
    load.wait_progress(50, PATIENCE);
    for cycle in 0..6 {
        let leader = c.wait_leader();
        // Even cycles a follower, odd cycles the leader.
        let victim = if cycle % 2 == 0 {
            *c.ids().iter().find(|&&id| id != leader).unwrap()
        } else {
            leader
        };
        c.kill(victim);
        if victim == leader {
            c.wait_new_leader(leader);
        }
        // Writes go on without it...
        load.wait_progress(30, PATIENCE);
        c.restart(victim);
        // ...and with it back.
        c.wait_leader();
        load.wait_progress(30, PATIENCE);
    }
    let model = load.finish();
    eprintln!(
        "churn: {} acknowledged, {} unknown, statuses {:?}",
        model.acked(),
        model.unknown(),
        model.statuses
    );
    let dump = c.wait_identical(&c.ids());
    let bad = model.check(&dump);
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad[..bad.len().min(30)].join("\n")
    );
}
