//! A linearizability checker for histories of single-key registers (put, get,
//! delete), after Wing & Gong's search with Lowe's memoization, as Porcupine
//! does it: the history is split per key (linearizability is compositional,
//! so each key's register is checked on its own), each key's calls and
//! returns form a doubly linked list in time order, and a depth-first search
//! linearizes one call at a time, backtracking when the next event is a return
//! whose call could not be placed. A (set of linearized ops, register state)
//! pair already explored is never explored again, which keeps the search
//! polynomial in practice for the handful of concurrent clients a test runs.
//!
//! An op whose outcome the client could not learn (a timeout, a dropped
//! connection, a 5xx that does not prove the write failed) is kept as a
//! possibly-applied write whose return is at the end of time: the search may
//! place it anywhere after its call, including after every other op, where it
//! has no effect anyone observed, which is exactly "may or may not have
//! happened".

#![allow(
    dead_code,
    reason = "shared by several test binaries, each uses a part"
)]

use std::collections::{BTreeMap, HashSet};

/// A register value: tests write unique integers, so equality is identity.
pub type Value = u64;

/// What a client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Store a value.
    Put(Value),
    /// Read the value.
    Get,
    /// Remove the value.
    Delete,
}

/// What the client learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// A put was acknowledged.
    Ok,
    /// A get answered this (None: key not found).
    Read(Option<Value>),
    /// A delete answered whether the key existed (200 vs 404).
    Deleted(bool),
    /// No answer that decides the outcome: the write may or may not have
    /// taken effect, at any time after its call.
    Unknown,
}

/// One operation on one key, with times in nanoseconds since a common start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which client issued it (for reports only).
    pub client: usize,
    /// The key it touched.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub ret: Ret,
    /// Taken just before the request was sent.
    pub invoke: u64,
    /// Taken just after the answer was read; ignored for `Ret::Unknown`.
    pub complete: u64,
}

/// A key whose ops admit no linearization.
#[derive(Debug)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Its ops, in invocation order.
    pub ops: Vec<Op>,
    /// Most ops the search managed to linearize (a hint where it broke).
    pub longest_prefix: usize,
    /// When the op completed that the deepest search could not get past.
    pub stuck_at: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "key {:?}: {} ops, no linearization (at most {} placed, stuck at the op \
             completed at {:.3}ms); ops by invocation around there:",
            self.key,
            self.ops.len(),
            self.longest_prefix,
            self.stuck_at as f64 / 1e6
        )?;
        // Enough to find the spot by hand without drowning the log.
        let at = self
            .ops
            .iter()
            .position(|o| o.invoke > self.stuck_at)
            .unwrap_or(self.ops.len());
        for op in &self.ops[at.saturating_sub(40)..(at + 10).min(self.ops.len())] {
            let done = if op.ret == Ret::Unknown {
                "open".to_string()
            } else {
                format!("{:.3}ms", op.complete as f64 / 1e6)
            };
            writeln!(
                f,
                "  c{} {:>10.3}ms..{:>10} {:?} -> {:?}",
                op.client,
                op.invoke as f64 / 1e6,
                done,
                op.call,
                op.ret
            )?;
        }
        Ok(())
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Keys checked.
    pub keys: usize,
    /// Ops checked.
    pub ops: usize,
    /// Ops with an unknown outcome among them.
    pub unknown: usize,
    /// Keys that admit no linearization.
    pub violations: Vec<Violation>,
}

/// Checks a whole history; each key is checked on its own.
pub fn check(history: &[Op]) -> Report {
    let mut per_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in history {
        per_key.entry(&op.key).or_default().push(op.clone());
    }
    let mut report = Report {
        keys: per_key.len(),
        ops: history.len(),
        unknown: history.iter().filter(|o| o.ret == Ret::Unknown).count(),
        violations: Vec::new(),
    };
    for (key, mut ops) in per_key {
        ops.sort_by_key(|o| o.invoke);
        if let Err((longest_prefix, stuck_at)) = check_key(&ops) {
            report.violations.push(Violation {
                key: key.to_string(),
                ops,
                longest_prefix,
                stuck_at,
            });
        }
    }
    report
}

/// The register: `None` is an absent key.
type State = Option<Value>;

/// Whether `op` may take effect in `state`, and the state after it.
fn step(state: State, op: &Op) -> Option<State> {
    match (op.call, op.ret) {
        (Call::Put(v), Ret::Ok | Ret::Unknown) => Some(Some(v)),
        (Call::Get, Ret::Read(seen)) => (seen == state).then_some(state),
        // An unanswered read constrains nothing; callers normally drop it.
        (Call::Get, Ret::Unknown) => Some(state),
        (Call::Delete, Ret::Deleted(existed)) => (existed == state.is_some()).then_some(None),
        (Call::Delete, Ret::Unknown) => Some(None),
        // A mismatched call and return is a recorder bug: nothing explains it.
        _ => None,
    }
}

/// A set of op indices.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// `Ok` when `ops` (one key, any order) linearize; otherwise the most ops the
/// search placed and the completion time of the op it could not get past.
fn check_key(ops: &[Op]) -> Result<(), (usize, u64)> {
    let n = ops.len();
    if n == 0 {
        return Ok(());
    }
    // Events: node 0 is the list head; op i's call is node 2i+1, its return
    // node 2i+2. In time order; at equal times calls come first, which counts
    // touching ops as overlapping (the permissive reading: a clock tie never
    // makes a violation).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        let end = if op.ret == Ret::Unknown {
            u64::MAX
        } else {
            op.complete.max(op.invoke)
        };
        events.push((op.invoke, false, 2 * i + 1));
        events.push((end, true, 2 * i + 2));
    }
    events.sort_unstable();
    let nodes = 2 * n + 1;
    let end = nodes; // sentinel "null"
    let mut next = vec![end; nodes];
    let mut prev = vec![0; nodes];
    let mut last = 0;
    for &(_, _, node) in &events {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    next[last] = end;

    // Dancing links: a removed node keeps its own links, so putting nodes
    // back in the reverse order of their removal restores the list exactly.
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, q) = (prev[x], next[x]);
        next[p] = q;
        if q != end {
            prev[q] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, q) = (prev[x], next[x]);
        next[p] = x;
        if q != end {
            prev[q] = x;
        }
    };

    let mut linearized = Bits::new(n);
    let mut placed = 0usize;
    let mut longest = 0usize;
    let mut stuck_at = 0u64;
    let mut state: State = None;
    let mut cache: HashSet<(Bits, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut entry = next[0];
    while next[0] != end {
        if entry == end {
            // Only reachable if every remaining event is a call, which the
            // list order forbids (each call precedes its return); treat as a
            // dead end all the same.
            return Err((longest, stuck_at));
        }
        if entry % 2 == 1 {
            let i = (entry - 1) / 2;
            if let Some(after) = step(state, &ops[i]) {
                let mut with = linearized.clone();
                with.set(i);
                if cache.insert((with.clone(), after)) {
                    stack.push((entry, state));
                    state = after;
                    linearized = with;
                    placed += 1;
                    longest = longest.max(placed);
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, entry + 1);
                    entry = next[0];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return whose call is still unplaced: this branch is dead.
            if placed == longest {
                stuck_at = ops[(entry - 2) / 2].complete;
            }
            let Some((call, before)) = stack.pop() else {
                return Err((longest, stuck_at));
            };
            let i = (call - 1) / 2;
            state = before;
            linearized.clear(i);
            placed -= 1;
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}
