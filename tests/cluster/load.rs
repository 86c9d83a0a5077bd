//! Write load for the fault tests, and the model it is checked against.
//!
//! Eight client threads, spread over the given nodes: six PUT threads and two
//! batch threads. Each PUT thread owns its keys (`{prefix}p{t}-{n}`) and writes them
//! in order with growing values; each batch sets three fresh keys
//! (`{prefix}b{t}-{i}-x/y/z`) to `i`. A client whose request fails moves on to the next
//! node. Every attempt is remembered with its outcome:
//! - 200: acknowledged, it must be there (or be overwritten by a later write
//!   of the same thread);
//! - a refused connection: never sent, it must not be there;
//! - anything else (timeout, reset, 5xx): unknown, it may or may not be there,
//!   and may even land after later writes of the same key (an unknown op
//!   linearizes anywhere after its call).
//!
//! A batch must be there in full or not at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::support::try_request_within;

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered 200.
    Acked,
    /// Never reached a server.
    NotSent,
    /// Anything else.
    Unknown,
}

/// One client's attempts.
#[derive(Debug, Default)]
struct Attempts {
    /// key -> values written to it, in order, with their outcomes.
    puts: BTreeMap<String, Vec<(u64, Outcome)>>,
    /// batch number -> outcome (keys `b{t}-{i}-x/y/z`, value i).
    batches: Vec<(String, u64, Outcome)>,
    /// Statuses other than 200 seen (for reports).
    statuses: BTreeMap<u16, u64>,
}

/// How the load runs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Every key starts with it, so loads of one test do not mix.
    pub prefix: &'static str,
    /// Keys per PUT thread: `None` writes a fresh key each time, `Some(k)`
    /// cycles over k keys (overwrites).
    pub keys_per_thread: Option<u64>,
    /// Each request waits at most this long.
    pub timeout: Duration,
}

/// A running load; [`Load::finish`] stops it.
pub struct Load {
    prefix: &'static str,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Attempts>>,
}

/// Everything the clients tried.
#[derive(Debug, Default)]
pub struct Model {
    prefix: &'static str,
    puts: BTreeMap<String, Vec<(u64, Outcome)>>,
    batches: Vec<(String, u64, Outcome)>,
    /// Statuses other than 200, over all clients.
    pub statuses: BTreeMap<u16, u64>,
}

impl Load {
    /// Starts the eight clients; client `t` begins on `ports[t % len]`.
    pub fn start(ports: &[u16], shape: Shape) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let threads = (0..8)
            .map(|t| {
                let (stop, acked, ports) = (stop.clone(), acked.clone(), ports.to_vec());
                std::thread::spawn(move || client(t, &ports, shape, &stop, &acked))
            })
            .collect();
        Load {
            prefix: shape.prefix,
            stop,
            acked,
            threads,
        }
    }

    /// Writes acknowledged so far, over all clients.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more writes than now are acknowledged (the cluster
    /// makes progress); panics after `limit`.
    pub fn wait_progress(&self, n: u64, limit: Duration) {
        let from = self.acked();
        let deadline = std::time::Instant::now() + limit;
        while self.acked() < from + n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} more writes acknowledged in {limit:?}",
                self.acked() - from
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the clients (each finishes its request in flight).
    pub fn finish(self) -> Model {
        self.stop.store(true, Ordering::Relaxed);
        let mut m = Model {
            prefix: self.prefix,
            ..Model::default()
        };
        for t in self.threads {
            let a = t.join().unwrap();
            m.puts.extend(a.puts);
            m.batches.extend(a.batches);
            for (s, n) in a.statuses {
                *m.statuses.entry(s).or_default() += n;
            }
        }
        m
    }
}

fn client(t: usize, ports: &[u16], shape: Shape, stop: &AtomicBool, acked: &AtomicU64) -> Attempts {
    let mut a = Attempts::default();
    let mut node = t % ports.len();
    for i in 1u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let port = ports[node];
        let (key, path, body) = if t < 6 {
            let key = match shape.keys_per_thread {
                None => format!("{}p{t}-{i}", shape.prefix),
                Some(k) => format!("{}p{t}-{}", shape.prefix, i % k),
            };
            (
                key.clone(),
                format!("/kv/{key}"),
                format!(r#"{{"value":{i}}}"#),
            )
        } else {
            let key = format!("{}b{t}-{i}", shape.prefix);
            let ops = ["x", "y", "z"]
                .map(|s| format!(r#"{{"op":"set","key":"{key}-{s}","value":{i}}}"#))
                .join(",");
            (
                key,
                "/kv/batch".to_string(),
                format!(r#"{{"operations":[{ops}]}}"#),
            )
        };
        let method = if t < 6 { "PUT" } else { "POST" };
        let answer = try_request_within(port, method, &path, Some(&body), &[], shape.timeout);
        let outcome = match &answer {
            Ok(r) if r.status == 200 => Outcome::Acked,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::NotSent,
            _ => Outcome::Unknown,
        };
        if let Ok(r) = &answer
            && r.status != 200
        {
            *a.statuses.entry(r.status).or_default() += 1;
            // A definite refusal (4xx) would mean the load itself is wrong.
            assert!(r.status >= 500, "{method} {path}: {} {}", r.status, r.body);
        }
        if t < 6 {
            a.puts.entry(key).or_default().push((i, outcome));
        } else {
            a.batches.push((key, i, outcome));
        }
        if outcome == Outcome::Acked {
            acked.fetch_add(1, Ordering::Relaxed);
        } else {
            // Next node, after a pause so a dead one is not hammered.
            node = (node + 1) % ports.len();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    a
}

impl Model {
    /// Acknowledged writes (puts and batches).
    pub fn acked(&self) -> usize {
        let puts = self
            .puts
            .values()
            .flatten()
            .filter(|(_, o)| *o == Outcome::Acked);
        let batches = self.batches.iter().filter(|(_, _, o)| *o == Outcome::Acked);
        puts.count() + batches.count()
    }

    /// Attempts with an unknown outcome.
    pub fn unknown(&self) -> usize {
        let puts = self
            .puts
            .values()
            .flatten()
            .filter(|(_, o)| *o == Outcome::Unknown);
        let batches = self
            .batches
            .iter()
            .filter(|(_, _, o)| *o == Outcome::Unknown);
        puts.count() + batches.count()
    }

    /// Some acknowledged PUTs as (key, value): the final value of keys whose
    /// last attempt was acknowledged, so nothing may have overwritten them.
    pub fn sample_acked(&self, n: usize) -> Vec<(String, u64)> {
        self.puts
            .iter()
            .filter_map(|(k, w)| match w.last() {
                // An unknown write could still land over it.
                Some(&(v, Outcome::Acked)) if w.iter().all(|(_, o)| *o != Outcome::Unknown) => {
                    Some((k.clone(), v))
                }
                _ => None,
            })
            .take(n)
            .collect()
    }

    /// Checks a node's whole keyspace against the model (keys outside the
    /// load's prefix are not its business); returns the problems found
    /// (empty when it matches).
    pub fn check(&self, dump: &BTreeMap<String, Value>) -> Vec<String> {
        let mut bad = Vec::new();
        for (key, writes) in &self.puts {
            let got = dump.get(key).map(|v| v.as_u64().unwrap_or(0));
            let last_acked = writes.iter().rev().find(|(_, o)| *o == Outcome::Acked);
            // Acked writes are present unless something later replaced them;
            // an unknown write may have landed at any time after its call.
            let ok = match got {
                None => last_acked.is_none(),
                Some(v) => {
                    last_acked.is_some_and(|(a, _)| *a == v)
                        || writes.iter().any(|&(w, o)| w == v && o == Outcome::Unknown)
                }
            };
            if !ok {
                bad.push(format!(
                    "{key}: has {got:?}, last acknowledged {last_acked:?}, attempts {writes:?}"
                ));
            }
        }
        for (key, i, outcome) in &self.batches {
            let parts: Vec<Option<&Value>> = ["x", "y", "z"]
                .iter()
                .map(|s| dump.get(&format!("{key}-{s}")))
                .collect();
            let present = parts.iter().filter(|p| p.is_some()).count();
            if present != 0 && present != 3 {
                bad.push(format!("batch {key} partly applied: {parts:?}"));
            } else if present == 3 && parts.iter().any(|p| p.and_then(Value::as_u64) != Some(*i)) {
                bad.push(format!("batch {key} has wrong values: {parts:?}"));
            } else if present == 0 && *outcome == Outcome::Acked {
                bad.push(format!("acknowledged batch {key} lost"));
            } else if present == 3 && *outcome == Outcome::NotSent {
                bad.push(format!("batch {key} was never sent but is there"));
            }
        }
        // Nothing the clients never wrote.
        for key in dump.keys().filter(|k| k.starts_with(self.prefix)) {
            let known = self.puts.contains_key(key)
                || key
                    .rsplit_once('-')
                    .is_some_and(|(b, _)| self.batches.iter().any(|(k, _, _)| k == b));
            if !known {
                bad.push(format!("{key}: never written"));
            }
        }
        bad
    }
}
