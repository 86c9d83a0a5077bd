//! Linearizability of the cluster under faults: client threads do random
//! puts, gets and deletes on a few keys through every node while the leader
//! is killed and restarted and nodes are paused and resumed; the recorded
//! history must admit a linearization (tests/lincheck/checker.rs), run after
//! run.

use std::time::Duration;

use crate::checker;
use crate::harness::Cluster;
use crate::recorder::{self, Plan};

/// Lets the clients run a while between faults.
fn run_for(d: Duration) {
    std::thread::sleep(d);
}

#[test]
fn histories_under_leader_kills_and_pauses_are_linearizable() {
    let mut c = Cluster::start(3, &[]);
    let mut total_ops = 0;
    for run in 0..3u64 {
        let plan = Plan {
            clients: 6,
            keys: 4,
            prefix: format!("lin{run}-"),
            timeout: Duration::from_secs(8),
            seed: 1000 + run,
            read_query: String::new(),
            deletes: true,
        };
        let rec = recorder::start(&plan, &c.ports(&c.ids()));
        run_for(Duration::from_millis(800));
        let leader = c.wait_leader();
        c.kill(leader);
        c.wait_new_leader(leader);
        run_for(Duration::from_millis(800));
        c.restart(leader);
        let leader = c.wait_leader();
        let follower = *c.ids().iter().find(|&&id| id != leader).unwrap();
        c.pause(follower);
        run_for(Duration::from_millis(800));
        c.resume(follower);
        let leader = c.wait_leader();
        c.pause(leader);
        run_for(Duration::from_millis(1500));
        c.resume(leader);
        c.wait_leader();
        run_for(Duration::from_millis(800));
        let (ops, tally) = rec.finish();
        assert_eq!(tally.unexpected, 0, "{tally:?}");
        assert!(
            tally.acked > 20 && tally.reads > 20,
            "too little done: {tally:?}"
        );
        let report = checker::check(&ops);
        eprintln!(
            "run {run}: {} ops on {} keys, {tally:?}, {} violations",
            report.ops,
            report.keys,
            report.violations.len()
        );
        assert!(
            report.violations.is_empty(),
            "run {run}: {}",
            report.violations[0]
        );
        total_ops += report.ops;
    }
    assert!(total_ops > 300, "{total_ops}");
}
