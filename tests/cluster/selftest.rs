//! The harness, the load model and the recorder on one plain server (no
//! cluster flags), so a failure in the cluster tests is the cluster's: paged
//! dumps are complete, SIGKILL/restart and SIGSTOP/SIGCONT do what they say,
//! the model accepts what a correct store keeps and rejects lost or partial
//! writes, and a crash-restart history checks linearizable.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::checker;
use crate::harness::{Cluster, PATIENCE, form_encode};
use crate::load::{Load, Shape};
use crate::recorder::{self, Plan};

#[test]
fn harness_dumps_pages_and_signals_on_a_single_server() {
    let mut c = Cluster::single(&[]);
    // 2500 keys, a few with characters a query string must escape.
    for b in 0..5 {
        let ops: Vec<String> = (0..500)
            .map(|i| format!(r#"{{"op":"set","key":"k{b}-{i:03}","value":{i}}}"#))
            .collect();
        let body = format!(r#"{{"operations":[{}]}}"#, ops.join(","));
        assert_eq!(c.must(1, "POST", "/kv/batch", Some(&body)).status, 200);
    }
    for k in ["a+b", "a b", "a&c=d", "zé%"] {
        let path = format!("/kv/{}", form_encode(k));
        let r = c.must(1, "PUT", &path, Some(r#"{"value": "odd"}"#));
        assert_eq!(r.status, 200, "{k}: {}", r.body);
    }
    let d = c.dump(1);
    assert_eq!(d.len(), 2504);
    assert_eq!(d["k4-499"], json!(499));
    assert_eq!(d["a&c=d"], json!("odd"));
    assert_eq!(d["zé%"], json!("odd"));

    c.kill(1);
    assert!(c.req(1, "GET", "/health", None).is_err());
    c.restart(1);
    assert_eq!(c.dump(1), d, "sync always: all there after SIGKILL");

    c.pause(1);
    let t = Instant::now();
    let r = c.req_within(1, "GET", "/health", None, Duration::from_secs(1));
    assert!(r.is_err(), "a paused server answered: {r:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    c.resume(1);
    assert_eq!(c.must(1, "GET", "/health", None).status, 200);
}

#[test]
fn load_model_accepts_a_crash_and_rejects_lost_or_partial_writes() {
    let mut c = Cluster::single(&[]);
    let load = Load::start(
        &c.ports(&[1]),
        Shape {
            prefix: "",
            keys_per_thread: Some(10),
            timeout: Duration::from_secs(10),
        },
    );
    load.wait_progress(200, PATIENCE);
    c.kill(1);
    std::thread::sleep(Duration::from_millis(300));
    c.restart(1);
    load.wait_progress(100, PATIENCE);
    let model = load.finish();
    let mut dump = c.dump(1);
    let bad = model.check(&dump);
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    // The same dump with one acked put lost, one batch part gone and a
    // stranger key: each is reported.
    let (key, _) = model.sample_acked(1).pop().unwrap();
    dump.remove(&key);
    let part = dump.keys().find(|k| k.starts_with('b')).unwrap().clone();
    dump.remove(&part);
    dump.insert("stranger".into(), json!(1));
    let bad = model.check(&dump).join("\n");
    assert!(bad.contains(&format!("{key}: has None")), "{bad}");
    assert!(bad.contains("partly applied"), "{bad}");
    assert!(bad.contains("stranger: never written"), "{bad}");
}

#[test]
fn recorder_history_across_a_single_server_crash_is_linearizable() {
    let mut c = Cluster::single(&[]);
    let plan = Plan {
        clients: 6,
        keys: 3,
        prefix: "lin".into(),
        timeout: Duration::from_secs(5),
        seed: 7,
        read_query: String::new(),
        // Single-node DELETEs under sync always are not linearizable
        // (tests/cli/linearizable.rs shows it); puts and gets are.
        deletes: false,
    };
    let rec = recorder::start(&plan, &c.ports(&[1]));
    std::thread::sleep(Duration::from_millis(700));
    c.kill(1);
    std::thread::sleep(Duration::from_millis(300));
    c.restart(1);
    std::thread::sleep(Duration::from_millis(700));
    let (ops, tally) = rec.finish();
    assert_eq!(tally.unexpected, 0, "{tally:?}");
    assert!(tally.acked > 50, "{tally:?}");
    let report = checker::check(&ops);
    assert!(report.violations.is_empty(), "{}", report.violations[0]);
}
