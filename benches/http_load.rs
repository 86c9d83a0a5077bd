//! HTTP load: how many requests per second does the kvstore server answer
//! over keep-alive connections, at what latency, and how close does it come
//! to a null handler on the same actix stack?
//!
//! Each server is started in-process on 127.0.0.1 (free port, temp data dir,
//! default `ServerConfig`: one actix worker per core). The load generator
//! (`http_load/client.rs`) runs on the main thread: a current-thread tokio
//! runtime with one HTTP/1.1 keep-alive connection per task, one request in
//! flight per connection; the connection is the minimal `http_load/raw.rs`
//! (default) or hyper's `client::conn::http1` (`KVSTORE_BENCH_CLIENT=hyper`). Scenarios, each at 1, 16 and 64
//! connections, with 100-byte values (a JSON string of 98 characters):
//! - the null handler (`http_load/targets.rs`): PUT, GET, 90/10 GET/PUT;
//! - kvstore, sync `always`: PUT, then every key filled, GET and 90/10;
//! - kvstore, sync `periodic` (1 s) and `never`: PUT.
//!
//! Every response's status is checked; a run with any error fails the bench
//! after the table is printed. Each run is bounded in requests and in time
//! (0.5 s warm-up, then `KVSTORE_BENCH_SECS`, default 3 s, measured) and
//! reports req/s, p50 and p99 latency, the ratio to the null handler and
//! where the CPU went (client vs actix workers vs engine threads).
//!
//! `cargo bench --bench http_load [-- FILTER]` (FILTER: a substring of the
//! scenario, e.g. `GET` or `never`). `KVSTORE_BENCH_DIR` picks the disk of the
//! data dirs (default the system temp dir; not tmpfs, or fsync is free).
//! `KVSTORE_BENCH_CONNS=1,64` picks the connection counts.
//! `KVSTORE_BENCH_CLIENT_THREADS=N` runs the client on a multi-threaded
//! runtime of N threads instead (to compare). Under `cargo test --benches`
//! every scenario runs 50 requests at 1 and 4 connections, errors still fatal.

#![allow(clippy::unwrap_used, reason = "a bench should fail loudly")]

#[path = "http_load/client.rs"]
mod client;
mod common;
#[path = "http_load/cpu.rs"]
mod cpu;
#[path = "http_load/raw.rs"]
mod raw;
#[path = "http_load/targets.rs"]
mod targets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvstore::engine::SyncMode;
use tokio::runtime::Runtime;

use client::{ClientKind, Keys, Load, Outcome, Workload};
use targets::Target;

/// How big the runs are: full under `cargo bench`, tiny in test mode.
#[derive(Debug, Clone)]
struct Plan {
    conns: Vec<usize>,
    keyspace: u64,
    max_requests: u64,
    warm_up: Duration,
    measure: Duration,
    client: ClientKind,
    filter: Option<String>,
}

impl Plan {
    fn from_args() -> Plan {
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let client = match std::env::var("KVSTORE_BENCH_CLIENT").as_deref() {
            Ok("hyper") => ClientKind::Hyper,
            Ok("raw") | Err(_) => ClientKind::Raw,
            Ok(other) => panic!("KVSTORE_BENCH_CLIENT={other}: expected raw or hyper"),
        };
        if common::bench_mode() {
            let secs = std::env::var("KVSTORE_BENCH_SECS")
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| *s > 0.0 && *s <= 60.0)
                .unwrap_or(3.0);
            let conns = std::env::var("KVSTORE_BENCH_CONNS")
                .ok()
                .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
                .filter(|c: &Vec<usize>| {
                    !c.is_empty() && c.iter().all(|&n| (1..=1024).contains(&n))
                })
                .unwrap_or_else(|| vec![1, 16, 64]);
            Plan {
                conns,
                keyspace: 100_000,
                max_requests: 5_000_000,
                warm_up: Duration::from_millis(500),
                measure: Duration::from_secs_f64(secs),
                client,
                filter,
            }
        } else {
            Plan {
                conns: vec![1, 4],
                keyspace: 50,
                max_requests: 50,
                warm_up: Duration::ZERO,
                measure: Duration::from_secs(10),
                client,
                filter,
            }
        }
    }

    fn wants(&self, label: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| label.contains(f))
    }
}

/// One line of the report.
#[derive(Debug)]
struct Row {
    target: String,
    workload: Workload,
    conns: usize,
    outcome: Outcome,
    cpu: String,
}

impl Row {
    fn label(&self) -> String {
        format!("{} {}", self.target, self.workload.label())
    }
}

fn main() {
    let plan = Plan::from_args();
    let (rt, client_kind) = client_runtime();
    let keys = Arc::new(Keys::new(plan.keyspace, &targets::VALUE));
    println!(
        "http_load: {} actix workers per server, {} client on {client_kind}, {} keys, \
         {}-byte values, warm-up {:?} + {:?} per run, at most {} requests per run",
        targets::workers(),
        plan.client.label(),
        plan.keyspace,
        targets::VALUE.len(),
        plan.warm_up,
        plan.measure,
        plan.max_requests,
    );
    println!("{HEADER}");
    let mut rows = Vec::new();

    let all = [Workload::Put, Workload::Get, Workload::Mixed];
    let null = targets::null();
    drive(&rt, &null, "null", &all, &plan, &keys, &mut rows);
    null.stop(&rt);

    let modes = [
        (SyncMode::Always, "always"),
        (SyncMode::Periodic(Duration::from_secs(1)), "periodic"),
        (SyncMode::Never, "never"),
    ];
    for (sync, mode) in modes {
        let name = format!("kvstore sync={mode}");
        let workloads: &[Workload] = if sync == SyncMode::Always {
            &all
        } else {
            &[Workload::Put]
        };
        if !workloads
            .iter()
            .any(|w| plan.wants(&format!("{name} {}", w.label())))
        {
            continue;
        }
        let target = targets::kvstore(sync);
        drive(&rt, &target, &name, workloads, &plan, &keys, &mut rows);
        target.stop(&rt);
    }

    print_table(&rows);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome.errors > 0)
        .map(|r| {
            format!(
                "{} x{}: {} errors, first: {}",
                r.label(),
                r.conns,
                r.outcome.errors,
                r.outcome.first_error.as_deref().unwrap_or("?")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "http_load: requests failed:\n{}",
        failed.join("\n")
    );
    println!("http_load: {} runs, 0 errors", rows.len());
}

/// The client runtime: current-thread unless `KVSTORE_BENCH_CLIENT_THREADS`
/// asks for a multi-threaded one.
fn client_runtime() -> (Runtime, String) {
    let threads = std::env::var("KVSTORE_BENCH_CLIENT_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    if threads == 0 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (rt, "a current-thread runtime".into())
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        (rt, format!("a multi-thread runtime ({threads} threads)"))
    }
}

/// Runs `workloads` × the plan's connection counts against `target`. Reads
/// are preceded by filling every key once (unmeasured), so every GET finds
/// its key.
fn drive(
    rt: &Runtime,
    target: &Target,
    name: &str,
    workloads: &[Workload],
    plan: &Plan,
    keys: &Arc<Keys>,
    rows: &mut Vec<Row>,
) {
    let mut filled = false;
    for &workload in workloads {
        if !plan.wants(&format!("{name} {}", workload.label())) {
            continue;
        }
        if workload != Workload::Put && !filled {
            fill(rt, target, name, plan, keys);
            filled = true;
        }
        for &conns in &plan.conns {
            let load = Load {
                workload,
                conns,
                max_requests: plan.max_requests,
                warm_up: plan.warm_up,
                measure: plan.measure,
                client: plan.client,
            };
            let before = cpu::snapshot();
            let fsyncs_before = target.fsyncs.as_ref().map(|p| p.read());
            let stats_before = target.engine.as_ref().map(|e| e.stats());
            let t0 = Instant::now();
            let outcome = client::run(rt, target.addr, keys, load, rows.len() as u64);
            let wall = t0.elapsed();
            // CPU ticks are 10 ms: meaningless for the few ms of a test-mode run.
            let mut cpu = if common::bench_mode() {
                cpu::shares(&before, &cpu::snapshot(), wall)
            } else {
                String::new()
            };
            if let (Some(p), Some(b), Some(e), Some(s)) =
                (&target.fsyncs, fsyncs_before, &target.engine, stats_before)
            {
                let writes = e.stats().writes - s.writes;
                cpu.push_str(&fsync_note(writes, b, p.read(), wall));
            }
            let row = Row {
                target: name.into(),
                workload,
                conns,
                outcome,
                cpu,
            };
            print_row(&row, None);
            rows.push(row);
        }
    }
}

/// PUTs every key once, 64 connections, no time pressure; errors are fatal
/// like any run's.
fn fill(rt: &Runtime, target: &Target, name: &str, plan: &Plan, keys: &Arc<Keys>) {
    let load = Load {
        workload: Workload::Fill,
        conns: plan.conns.iter().copied().max().unwrap_or(1),
        max_requests: plan.keyspace,
        warm_up: Duration::ZERO,
        measure: Duration::from_secs(120),
        client: plan.client,
    };
    let outcome = client::run(rt, target.addr, keys, load, 0);
    assert_eq!(
        (outcome.errors, outcome.requests),
        (0, plan.keyspace),
        "filling {name}: first error {:?}",
        outcome.first_error
    );
}

/// `; 3.1 writes/fsync, fsync 420 µs, 48% of the time` for a run with fsyncs
/// (`writes`: the engine's writes during the run).
fn fsync_note(
    writes: u64,
    before: targets::FsyncFigures,
    after: targets::FsyncFigures,
    wall: Duration,
) -> String {
    let n = after.fsyncs - before.fsyncs;
    if n == 0 {
        return String::new();
    }
    let time = after.time - before.time;
    format!(
        "; {:.1} writes/fsync, fsync {:.0} µs, {:.0}% of the time",
        common::ratio(writes, n),
        time.as_secs_f64() * 1e6 / n as f64,
        time.as_secs_f64() / wall.as_secs_f64() * 100.0
    )
}

const HEADER: &str = "scenario                        conns   requests  errors      req/s   p50 µs   p99 µs  vs null";

fn print_row(row: &Row, null: Option<&Row>) {
    let o = &row.outcome;
    let ratio = null.map_or("      -".into(), |n| {
        format!("{:>6.2}x", o.rps() / n.outcome.rps().max(1e-9))
    });
    println!(
        "{:<30} {:>6} {:>10} {:>7} {:>10.0} {:>8.0} {:>8.0} {ratio}   {}",
        row.label(),
        row.conns,
        o.requests,
        o.errors,
        o.rps(),
        o.percentile(50.0).as_secs_f64() * 1e6,
        o.percentile(99.0).as_secs_f64() * 1e6,
        row.cpu,
    );
}

fn print_table(rows: &[Row]) {
    println!("\n{HEADER}");
    for row in rows {
        let null = rows.iter().find(|n| {
            n.target == "null"
                && row.target != "null"
                && n.workload == row.workload
                && n.conns == row.conns
        });
        print_row(row, null);
    }
}
