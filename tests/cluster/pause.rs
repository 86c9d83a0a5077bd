//! SIGSTOP: a paused minority catches up when resumed; a paused majority
//! leaves the rest unable to write or read linearizably, which they say with
//! a 503 "no quorum" within the quorum timeout, and no write of that time
//! is acknowledged.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, PATIENCE, QUORUM_TIMEOUT};
use crate::load::{Load, Shape};

/// What a client of the remaining side may wait beyond the quorum timeout:
/// forwarding, scheduling on 2 busy cores.
const MARGIN: Duration = Duration::from_millis(2500);

#[test]
fn paused_minority_catches_up() {
    let mut c = Cluster::start(3, &[]);
    for pause_leader in [false, true] {
        let leader = c.wait_leader();
        let victim = if pause_leader {
            leader
        } else {
            *c.ids().iter().find(|&&id| id != leader).unwrap()
        };
        c.pause(victim);
        let shape = Shape {
            prefix: if pause_leader { "l-" } else { "f-" },
            keys_per_thread: Some(40),
            timeout: Duration::from_secs(10),
        };
        let load = Load::start(&c.ports(&c.live()), shape);
        load.wait_progress(150, PATIENCE);
        let model = load.finish();
        c.resume(victim);
        if pause_leader {
            // The old leader learns of the new term and follows.
            let new = c.wait_new_leader(victim);
            assert_ne!(new, victim);
        }
        let dump = c.wait_identical(&c.ids());
        let bad = model.check(&dump);
        assert!(
            bad.is_empty(),
            "{} problems:\n{}",
            bad.len(),
            bad[..bad.len().min(30)].join("\n")
        );
    }
}

/// One write to node `id` while it has no quorum: 503 "no quorum" in time.
fn refused_in_time(c: &Cluster, id: u64, method: &str, path: &str, body: Option<&str>) {
    let t = Instant::now();
    let r = c.must(id, method, path, body);
    let took = t.elapsed();
    let e = r.assert_error(503);
    assert!(
        e.starts_with("no quorum"),
        "{method} {path} on node {id}: {e}"
    );
    assert!(
        took < QUORUM_TIMEOUT + MARGIN,
        "{method} {path} on node {id} took {took:?}"
    );
}

#[test]
fn paused_majority_leaves_no_quorum() {
    let mut c = Cluster::start(3, &[]);
    // First the two followers (the leader is left alone), then the leader
    // and a follower (a follower is left alone).
    for leave_leader in [true, false] {
        let leader = c.wait_leader();
        let alone = if leave_leader {
            leader
        } else {
            *c.ids().iter().find(|&&id| id != leader).unwrap()
        };
        let paused: Vec<u64> = c.ids().into_iter().filter(|&id| id != alone).collect();
        // Again each round: the last round's refused DELETE may have landed.
        let r = c.must(alone, "PUT", "/kv/before", Some(r#"{"value": 1}"#));
        assert_eq!(r.status, 200, "{}", r.body);
        // A follower relays the leader's answer before it has applied the
        // write itself; the local read below needs it applied here.
        c.wait_caught_up(&[alone]);
        for &id in &paused {
            c.pause(id);
        }
        let tag = if leave_leader { "l" } else { "f" };
        std::thread::scope(|s| {
            let c = &c;
            // Concurrent, so the outage costs one timeout, not one per request.
            let writes: Vec<_> = (0..4)
                .map(|i| {
                    s.spawn(move || {
                        let path = format!("/kv/minority-{tag}{i}");
                        refused_in_time(c, alone, "PUT", &path, Some(r#"{"value": 2}"#));
                    })
                })
                .collect();
            s.spawn(move || {
                let body = format!(
                    r#"{{"operations":[{{"op":"set","key":"minority-{tag}b1","value":3}},{{"op":"set","key":"minority-{tag}b2","value":3}}]}}"#
                );
                refused_in_time(c, alone, "POST", "/kv/batch", Some(&body));
            });
            s.spawn(move || refused_in_time(c, alone, "DELETE", "/kv/before", None));
            s.spawn(move || refused_in_time(c, alone, "GET", "/kv/before", None));
            for w in writes {
                w.join().unwrap();
            }
        });
        // Its own state still serves reads that ask for no more.
        let r = c.must(alone, "GET", "/kv/before?consistency=local", None);
        assert_eq!(r.status, 200, "{}", r.body);
        for &id in &paused {
            c.resume(id);
        }
        c.wait_leader();
        let dump = c.wait_identical(&c.ids());
        // The refused writes may have reached a log and commit after the
        // heal (a 503 does not say "not applied"), but the batch is whole
        // or absent, and nothing else changed.
        let b1 = dump.get(&format!("minority-{tag}b1"));
        let b2 = dump.get(&format!("minority-{tag}b2"));
        assert_eq!(
            b1.is_some(),
            b2.is_some(),
            "batch half applied: {b1:?} {b2:?}"
        );
        let landed: Vec<&String> = dump.keys().filter(|k| k.starts_with("minority-")).collect();
        eprintln!("refused writes present after healing ({tag}): {landed:?}");
        for (k, v) in &dump {
            assert!(
                k == "before" || k.starts_with("minority-") || k.starts_with("after-"),
                "unexpected key {k}: {v}"
            );
        }
        // Writes work again, through the node that was alone too.
        let r = c.must(
            alone,
            "PUT",
            &format!("/kv/after-{tag}"),
            Some(r#"{"value": 4}"#),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
}
