//! Cluster write load: what does Raft replication cost? A 3-node cluster and
//! a single node, each node a real `kvstore` process on this machine with
//! sync `always` (the default), get the same closed-loop PUT load from
//! `http_load/client.rs` (64 keep-alive connections by default, 100-byte
//! values, keys uniform over 100,000). The cluster's load goes to its leader
//! (a follower would forward, adding a hop); `KVSTORE_BENCH_TARGET=spread`
//! spreads the connections over all three nodes instead. One run each:
//! req/s, p50 and p99 latency, and the cluster-to-single ratio.
//!
//! `cargo bench --bench cluster_load`. `KVSTORE_BENCH_SECS` (default 5) is the
//! measured time after a 1 s warm-up, `KVSTORE_BENCH_CONNS` the connection
//! count, `KVSTORE_BENCH_DIR` the disk of the data dirs (default the system
//! temp dir; not tmpfs, or fsync is free). The nodes share the machine with
//! the client, so on 2 cores the figures bound what replication costs from
//! above. Under `cargo test --benches` each target gets 50 requests on 4
//! connections, errors still fatal.

#![allow(clippy::unwrap_used, reason = "a bench should fail loudly")]

#[path = "http_load/client.rs"]
#[allow(dead_code, reason = "shared with http_load; this bench only PUTs")]
mod client;
mod common;
#[path = "http_load/raw.rs"]
mod raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{ClientKind, Keys, Load, Outcome, Workload};

const BIN: &str = env!("CARGO_BIN_EXE_kvstore");

/// 100 bytes as stored: a JSON string of 98 characters.
const VALUE: &str = "\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\"";

/// The processes of one target; killed on drop.
struct Procs {
    children: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `port`: (status, body), or `None` without an answer in 2 s.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn data_root() -> tempfile::TempDir {
    match std::env::var_os("KVSTORE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn spawn(args: &[String], log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .args(args)
        .env_remove("PORT")
        .env_remove("DATA_DIR")
        .env_remove("KVSTORE_AUTH_TOKEN")
        .env_remove("KVSTORE_NODE_ID")
        .env_remove("KVSTORE_PEERS")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Waits up to 60 s for `ready` to say yes.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} not ready in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One plain server.
fn single() -> Procs {
    let dir = data_root();
    let port = free_port();
    let args = [
        "--port".to_string(),
        port.to_string(),
        "--data-dir".into(),
        dir.path().join("single").display().to_string(),
        "--sync".into(),
        "always".into(),
    ];
    let child = spawn(&args, &dir.path().join("single.log"));
    wait_for("single node", || {
        get(port, "/health").is_some_and(|(s, _)| s == 200)
    });
    Procs {
        children: vec![child],
        ports: vec![port],
        _dir: dir,
    }
}

/// Three nodes that form a cluster; returns them with the leader's port first.
fn cluster() -> Procs {
    let dir = data_root();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let children = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = i + 1;
            let args = [
                "--node-id".to_string(),
                id.to_string(),
                "--port".into(),
                p.to_string(),
                "--data-dir".into(),
                dir.path().join(format!("node{id}")).display().to_string(),
                "--peers".into(),
                peers.clone(),
                "--sync".into(),
                "always".into(),
            ];
            spawn(&args, &dir.path().join(format!("node{id}.log")))
        })
        .collect();
    let mut procs = Procs {
        children,
        ports: ports.clone(),
        _dir: dir,
    };
    let mut leader = None;
    wait_for("a cluster leader", || {
        let seen: Vec<Option<u64>> = ports
            .iter()
            .map(|&p| {
                let (s, body) = get(p, "/cluster")?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                (s == 200).then(|| v["leader"].as_u64()).flatten()
            })
            .collect();
        leader = seen[0].filter(|l| seen.iter().all(|s| *s == Some(*l)));
        leader.is_some()
    });
    let l = usize::try_from(leader.unwrap() - 1).unwrap();
    procs.ports.swap(0, l);
    procs
}

fn main() {
    let bench = common::bench_mode();
    let secs = std::env::var("KVSTORE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s <= 120.0)
        .unwrap_or(5.0);
    let conns = std::env::var("KVSTORE_BENCH_CONNS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|c| (1..=1024).contains(c))
        .unwrap_or(64);
    let spread = std::env::var("KVSTORE_BENCH_TARGET").as_deref() == Ok("spread");
    let (conns, load) = if bench {
        (
            conns,
            Load {
                workload: Workload::Put,
                conns,
                max_requests: 50_000_000,
                warm_up: Duration::from_secs(1),
                measure: Duration::from_secs_f64(secs),
                client: ClientKind::Raw,
            },
        )
    } else {
        let load = Load {
            workload: Workload::Put,
            conns: 4,
            max_requests: 50,
            warm_up: Duration::ZERO,
            measure: Duration::from_secs(30),
            client: ClientKind::Raw,
        };
        (4, load)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = Arc::new(Keys::new(100_000, VALUE));
    println!(
        "cluster_load: PUT, sync always, {conns} connections, {}-byte values, warm-up {:?} + {:?}",
        VALUE.len(),
        load.warm_up,
        load.measure
    );

    let one = single();
    let single_out = client::run(&rt, addr(one.ports[0]), &keys, load, 1);
    drop(one);

    let three = cluster();
    let cluster_out = if spread {
        // One run per node with a third of the connections each, at once.
        let per = Load {
            conns: conns.div_ceil(3),
            ..load
        };
        let outs: Vec<Outcome> = std::thread::scope(|s| {
            let hs: Vec<_> = three
                .ports
                .iter()
                .map(|&p| {
                    let keys = keys.clone();
                    s.spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        client::run(&rt, addr(p), &keys, per, u64::from(p))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, o) in outs.iter().enumerate() {
            print_row(&format!("3-node, node {}", i + 1), o, None);
        }
        let errors: u64 = outs.iter().map(|o| o.errors).sum();
        assert_eq!(
            errors,
            0,
            "spread run: {:?}",
            outs.iter().find_map(|o| o.first_error.clone())
        );
        let rps: f64 = outs.iter().map(Outcome::rps).sum();
        println!(
            "3-node spread total: {rps:.0} req/s ({:.2}x single)",
            rps / single_out.rps().max(1e-9)
        );
        None
    } else {
        Some(client::run(&rt, addr(three.ports[0]), &keys, load, 2))
    };
    drop(three);

    print_row("single node", &single_out, None);
    if let Some(c) = &cluster_out {
        print_row("3-node cluster (leader)", c, Some(&single_out));
    }
    for (name, o) in [
        ("single", Some(&single_out)),
        ("cluster", cluster_out.as_ref()),
    ] {
        if let Some(o) = o {
            assert_eq!(o.errors, 0, "{name}: first error {:?}", o.first_error);
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn print_row(name: &str, o: &Outcome, base: Option<&Outcome>) {
    let ratio = base.map_or(String::new(), |b| {
        format!("  {:.2}x single", o.rps() / b.rps().max(1e-9))
    });
    println!(
        "{name:<26} {:>9} requests {:>4} errors {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs{ratio}",
        o.requests,
        o.errors,
        o.rps(),
        o.percentile(50.0).as_secs_f64() * 1e6,
        o.percentile(99.0).as_secs_f64() * 1e6,
    );
}
