//! SIGKILL during concurrent PUTs and batches: after a restart every
//! acknowledged write is present, and no batch is present in part.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{Server, request, start, try_request};

struct Load {
    acked_puts: Vec<(String, u64)>,
    acked_batches: Vec<u64>,
    tried_batches: u64,
}

/// 6 PUT threads and 2 batch threads until `stop`.
fn drive(port: u16, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Load>> {
    (0..8)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut load = Load {
                    acked_puts: Vec::new(),
                    acked_batches: Vec::new(),
                    tried_batches: 0,
                };
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if t < 6 {
                        let key = format!("p{t}-{}", i % 50);
                        let body = format!(r#"{{"value": {i}}}"#);
                        match try_request(port, "PUT", &format!("/kv/{key}"), Some(&body), &[]) {
                            Ok(r) if r.status == 200 => load.acked_puts.push((key, i)),
                            _ => break,
                        }
                    } else {
                        let body = format!(
                            r#"{{"operations":[{{"op":"set","key":"b{t}-{i}-x","value":{i}}},{{"op":"set","key":"b{t}-{i}-y","value":{i}}},{{"op":"set","key":"b{t}-{i}-z","value":{i}}}]}}"#
                        );
                        load.tried_batches = i + 1;
                        match try_request(port, "POST", "/kv/batch", Some(&body), &[]) {
                            Ok(r) if r.status == 200 => load.acked_batches.push(i),
                            _ => break,
                        }
                    }
                }
                load
            })
        })
        .collect()
}

fn crash_and_check(sync: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = start(&dir, &["--sync", sync, "--segment-bytes", "65536"], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = drive(s.port, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    s.kill();
    stop.store(true, Ordering::Relaxed);
    let loads: Vec<Load> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let s: Server = start(&dir, &[], &[]);
    // The last acknowledged value of each key is present (a later one may
    // have landed without its acknowledgement; values only grow per key).
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for l in &loads {
        for (k, v) in &l.acked_puts {
            last.insert(k, *v);
        }
    }
    assert!(!last.is_empty(), "no PUT was acknowledged");
    for (k, v) in &last {
        let r = request(s.port, "GET", &format!("/kv/{k}"), None, &[]);
        assert_eq!(r.status, 200, "{k} lost");
        let got = r.json()["value"].as_u64().unwrap();
        assert!(got >= *v, "{k}: acknowledged {v}, found {got}");
    }
    for (t, l) in loads.iter().enumerate().skip(6) {
        assert!(!l.acked_batches.is_empty(), "no batch was acknowledged");
        for i in 0..l.tried_batches {
            let present: Vec<bool> = ["x", "y", "z"]
                .iter()
                .map(|p| {
                    request(s.port, "GET", &format!("/kv/b{t}-{i}-{p}"), None, &[]).status == 200
                })
                .collect();
            let acked = l.acked_batches.contains(&i);
            if acked {
                assert_eq!(present, [true; 3], "acknowledged batch {t}/{i} lost");
            } else {
                assert!(
                    present == [true; 3] || present == [false; 3],
                    "partial batch {t}/{i}: {present:?}"
                );
            }
        }
    }
    s.stop();
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write_with_sync_always() {
    crash_and_check("always");
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write_with_sync_never() {
    crash_and_check("never");
}
