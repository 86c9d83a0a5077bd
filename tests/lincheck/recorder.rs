//! Records a history for the checker: client threads doing random puts, gets
//! and deletes on a few keys against a set of server ports, each op timed
//! from just before its connection opens to just after its answer is read.
//!
//! How an answer becomes a result (`checker::Ret`):
//! - a write answered 200 (or a delete 404) is definite;
//! - a refused connection never reached a server: the op is dropped;
//! - a timeout, a reset after sending, any 5xx: the write may or may not
//!   have been applied (a 503 "no quorum" too: the entry may already be in a
//!   leader's log and commit later), so it is `Unknown`;
//! - a read without a 200/404 answer tells nothing and is dropped.
//!
//! Needs the test binary's `support` module (the HTTP client) at the crate root.

#![allow(
    dead_code,
    reason = "shared by several test binaries, each uses a part"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checker::{Call, Op, Ret};
use crate::support::try_request_within;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Concurrent client threads.
    pub clients: usize,
    /// Keys `{prefix}0`, `{prefix}1`, …: few, so ops on one key overlap a lot.
    pub keys: usize,
    /// Names the keys; the checker assumes they start absent, so each
    /// recording against the same store needs its own.
    pub prefix: String,
    /// Each request waits at most this long for its answer.
    pub timeout: Duration,
    /// Seed of the op and node choices.
    pub seed: u64,
    /// Extra query string of reads (e.g. `consistency=local`), or empty.
    pub read_query: String,
    /// Whether clients delete too (else only puts and gets).
    pub deletes: bool,
}

/// A recording in progress; [`Recording::finish`] stops it.
pub struct Recording {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(Vec<Op>, Tally)>>,
}

/// How the ops went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Writes with a definite answer.
    pub acked: u64,
    /// Reads answered 200/404.
    pub reads: u64,
    /// Writes recorded with unknown outcome.
    pub unknown: u64,
    /// Ops dropped: refused connections and unanswered reads.
    pub dropped: u64,
    /// Answers no rule explains (4xx other than a delete's 404): a test
    /// should assert there are none.
    pub unexpected: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.acked += o.acked;
        self.reads += o.reads;
        self.unknown += o.unknown;
        self.dropped += o.dropped;
        self.unexpected += o.unexpected;
    }
}

/// Starts `plan.clients` threads against `ports` (each op goes to a random one).
pub fn start(plan: &Plan, ports: &[u16]) -> Recording {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let threads = (0..plan.clients)
        .map(|c| {
            let stop = stop.clone();
            let plan = plan.clone();
            let ports = ports.to_vec();
            std::thread::spawn(move || client(c, &plan, &ports, t0, &stop))
        })
        .collect();
    Recording { stop, threads }
}

impl Recording {
    /// Stops the clients (each finishes its op in flight) and returns the
    /// history, sorted by invocation, with its tally.
    pub fn finish(self) -> (Vec<Op>, Tally) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ops = Vec::new();
        let mut tally = Tally::default();
        for t in self.threads {
            let (o, s) = t.join().unwrap();
            ops.extend(o);
            tally.add(&s);
        }
        ops.sort_by_key(|o| o.invoke);
        (ops, tally)
    }
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn nanos(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn client(
    c: usize,
    plan: &Plan,
    ports: &[u16],
    t0: Instant,
    stop: &AtomicBool,
) -> (Vec<Op>, Tally) {
    let mut rng = Rng(plan.seed ^ (0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(c as u64 + 1)) | 1);
    let mut ops = Vec::new();
    let mut tally = Tally::default();
    // Unique per client and op, and below 2^53 so JSON keeps it exact.
    let base = (c as u64 + 1) << 40;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{}{}", plan.prefix, rng.below(plan.keys as u64));
        let port = ports[usize::try_from(rng.below(ports.len() as u64)).unwrap()];
        let call = match rng.below(if plan.deletes { 20 } else { 17 }) {
            0..=7 => {
                seq += 1;
                Call::Put(base + seq)
            }
            8..=16 => Call::Get,
            _ => Call::Delete,
        };
        let (method, path, body) = match call {
            Call::Put(v) => (
                "PUT",
                format!("/kv/{key}"),
                Some(format!("{{\"value\":{v}}}")),
            ),
            Call::Get if plan.read_query.is_empty() => ("GET", format!("/kv/{key}"), None),
            Call::Get => ("GET", format!("/kv/{key}?{}", plan.read_query), None),
            Call::Delete => ("DELETE", format!("/kv/{key}"), None),
        };
        let invoke = nanos(t0);
        let answer = try_request_within(port, method, &path, body.as_deref(), &[], plan.timeout);
        let complete = nanos(t0);
        let ret = match (&answer, call) {
            (Err(e), _) if e.kind() == std::io::ErrorKind::ConnectionRefused => None,
            (Err(_), Call::Get) => None,
            (Err(_), _) => Some(Ret::Unknown),
            (Ok(r), Call::Put(_)) if r.status == 200 => Some(Ret::Ok),
            (Ok(r), Call::Delete) if r.status == 200 => Some(Ret::Deleted(true)),
            (Ok(r), Call::Delete) if r.status == 404 => Some(Ret::Deleted(false)),
            (Ok(r), Call::Get) if r.status == 200 => {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                let got = v["value"].as_u64();
                assert!(got.is_some(), "GET {path}: {}", r.body);
                Some(Ret::Read(got))
            }
            (Ok(r), Call::Get) if r.status == 404 => Some(Ret::Read(None)),
            (Ok(r), Call::Get) if r.status >= 500 => None,
            (Ok(r), _) if r.status >= 500 => Some(Ret::Unknown),
            (Ok(r), _) => {
                tally.unexpected += 1;
                eprintln!("recorder: {method} {path}: {} {}", r.status, r.body);
                None
            }
        };
        match ret {
            None => tally.dropped += 1,
            Some(Ret::Unknown) => tally.unknown += 1,
            Some(Ret::Read(_)) => tally.reads += 1,
            Some(_) => tally.acked += 1,
        }
        if let Some(ret) = ret {
            ops.push(Op {
                client: c,
                key,
                call,
                ret,
                invoke,
                complete,
            });
        }
        if matches!(&answer, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused) {
            // A dead node: do not spin on it.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (ops, tally)
}
