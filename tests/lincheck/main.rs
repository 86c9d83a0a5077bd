//! The linearizability checker on its own: hand-made histories that are and
//! are not linearizable, generated linearizable histories, and a cross-check
//! against brute force over every order of small random histories.
//!
//! The checker (`checker.rs`) and the history recorder (`recorder.rs`) are
//! shared with tests/cli (single-node server) and tests/cluster.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod checker;

use checker::{Call, Op, Ret, check};

fn op(client: usize, key: &str, call: Call, ret: Ret, invoke: u64, complete: u64) -> Op {
    Op {
        client,
        key: key.to_string(),
        call,
        ret,
        invoke,
        complete,
    }
}

fn put(c: usize, v: u64, t0: u64, t1: u64) -> Op {
    op(c, "k", Call::Put(v), Ret::Ok, t0, t1)
}
fn get(c: usize, seen: Option<u64>, t0: u64, t1: u64) -> Op {
    op(c, "k", Call::Get, Ret::Read(seen), t0, t1)
}
fn del(c: usize, existed: bool, t0: u64, t1: u64) -> Op {
    op(c, "k", Call::Delete, Ret::Deleted(existed), t0, t1)
}
fn lost(c: usize, call: Call, t0: u64) -> Op {
    op(c, "k", call, Ret::Unknown, t0, 0)
}

fn ok(h: &[Op]) -> bool {
    check(h).violations.is_empty()
}

#[test]
fn sequential_histories() {
    assert!(ok(&[]));
    assert!(ok(&[get(0, None, 0, 1)]));
    assert!(
        !ok(&[get(0, Some(1), 0, 1)]),
        "read of a never-written value"
    );
    assert!(ok(&[put(0, 1, 0, 1), get(0, Some(1), 2, 3)]));
    assert!(!ok(&[put(0, 1, 0, 1), get(0, None, 2, 3)]), "lost write");
    assert!(
        !ok(&[put(0, 1, 0, 1), put(1, 2, 2, 3), get(0, Some(1), 4, 5)]),
        "stale read"
    );
    assert!(ok(&[
        put(0, 1, 0, 1),
        del(1, true, 2, 3),
        del(0, false, 4, 5),
        get(1, None, 6, 7)
    ]));
    assert!(
        !ok(&[put(0, 1, 0, 1), del(1, true, 2, 3), del(0, true, 4, 5)]),
        "deleted twice"
    );
    assert!(!ok(&[del(0, true, 0, 1)]), "deleted a key never written");
}

#[test]
fn concurrent_histories() {
    // A read overlapping a write may see either side of it.
    assert!(ok(&[put(0, 1, 0, 10), get(1, None, 2, 3)]));
    assert!(ok(&[put(0, 1, 0, 10), get(1, Some(1), 2, 3)]));
    // ...but once one read saw the new value, a later read must too.
    assert!(!ok(&[
        put(0, 1, 0, 100),
        get(1, Some(1), 10, 20),
        get(2, None, 30, 40)
    ]));
    // Two overlapping writes, read in the one order that explains both reads.
    assert!(ok(&[
        put(0, 1, 0, 100),
        put(1, 2, 0, 100),
        get(2, Some(1), 10, 20),
        get(2, Some(2), 30, 40),
    ]));
    // Flip-flopping between two overlapping writes cannot be explained.
    assert!(!ok(&[
        put(0, 1, 0, 100),
        put(1, 2, 0, 100),
        get(2, Some(1), 10, 20),
        get(2, Some(2), 30, 40),
        get(2, Some(1), 50, 60),
    ]));
    // Touching intervals (complete == invoke) count as overlapping.
    assert!(ok(&[put(0, 1, 0, 5), get(1, None, 5, 6)]));
}

#[test]
fn unknown_outcomes_are_maybe_applied() {
    // A lost put may show up later, or never.
    assert!(ok(&[lost(0, Call::Put(1), 0), get(1, Some(1), 50, 60)]));
    assert!(ok(&[lost(0, Call::Put(1), 0), get(1, None, 50, 60)]));
    // Not before it was sent.
    assert!(!ok(&[get(1, Some(1), 0, 1), lost(0, Call::Put(1), 5)]));
    // Once seen it stays (nothing else writes).
    assert!(!ok(&[
        lost(0, Call::Put(1), 0),
        get(1, Some(1), 50, 60),
        get(1, None, 70, 80)
    ]));
    // A lost delete explains a vanished value, whatever it answered.
    assert!(ok(&[
        put(0, 1, 0, 1),
        lost(1, Call::Delete, 2),
        get(0, Some(1), 10, 11),
        get(0, None, 20, 21)
    ]));
    // A get that failed constrains nothing.
    assert!(ok(&[put(0, 1, 0, 1), lost(1, Call::Get, 2)]));
}

#[test]
fn keys_are_checked_apart() {
    let mut h = vec![
        op(0, "a", Call::Put(1), Ret::Ok, 0, 1),
        op(1, "b", Call::Get, Ret::Read(None), 2, 3),
        op(1, "a", Call::Get, Ret::Read(Some(1)), 4, 5),
    ];
    let r = check(&h);
    assert_eq!((r.keys, r.ops, r.violations.len()), (2, 3, 0));
    // The value of key a read at key b is a violation of b only.
    h.push(op(2, "b", Call::Get, Ret::Read(Some(1)), 6, 7));
    let r = check(&h);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0].key, "b");
    assert!(r.violations[0].to_string().contains("key \"b\""));
}

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A history of `clients` clients doing `per_client` ops each on one
/// atomic register: each op takes effect at a point inside its interval, and
/// its result is what the register held then. Linearizable by construction.
fn atomic_history(rng: &mut Rng, clients: usize, per_client: usize, unknown_pct: u64) -> Vec<Op> {
    // (point, client, call, invoke, complete); points are distinct.
    let mut planned = Vec::new();
    for c in 0..clients {
        let mut t = rng.below(20);
        for _ in 0..per_client {
            let invoke = t;
            let point = invoke + 1 + rng.below(30);
            let complete = point + 1 + rng.below(30);
            let call = match rng.below(5) {
                0 | 1 => Call::Put(rng.next() >> 16),
                2 | 3 => Call::Get,
                _ => Call::Delete,
            };
            planned.push((point * 64 + c as u64, c, call, invoke * 64, complete * 64));
            t = complete + 1 + rng.below(10);
        }
    }
    planned.sort_unstable_by_key(|p| p.0);
    let mut reg: Option<u64> = None;
    planned
        .into_iter()
        .map(|(_, c, call, invoke, complete)| {
            let mut ret = match call {
                Call::Put(v) => {
                    reg = Some(v);
                    Ret::Ok
                }
                Call::Get => Ret::Read(reg),
                Call::Delete => Ret::Deleted(reg.take().is_some()),
            };
            if call != Call::Get && rng.below(100) < unknown_pct {
                ret = Ret::Unknown;
            }
            op(c, "k", call, ret, invoke, complete)
        })
        .collect()
}

#[test]
fn generated_atomic_histories_pass() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..200 {
        let h = atomic_history(&mut rng, 2 + round % 7, 40, 5);
        let r = check(&h);
        assert!(
            r.violations.is_empty(),
            "round {round}: {}",
            r.violations[0]
        );
    }
    // A big one stays fast thanks to the memoization.
    let h = atomic_history(&mut rng, 8, 400, 2);
    let t = std::time::Instant::now();
    assert!(ok(&h));
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn corrupted_atomic_histories_fail() {
    // A read that returns a value nobody ever wrote can never linearize;
    // planting one anywhere in a long valid history must be caught.
    let mut rng = Rng(42);
    for round in 0..100 {
        let mut h = atomic_history(&mut rng, 2 + round % 5, 30, 0);
        let reads: Vec<usize> = (0..h.len()).filter(|&i| h[i].call == Call::Get).collect();
        let i = reads[usize::try_from(rng.below(reads.len() as u64)).unwrap()];
        h[i].ret = Ret::Read(Some(u64::MAX));
        assert!(!ok(&h), "round {round}: planted bad read not caught");
    }
}

/// Brute force: some order of all ops that respects real time (an op that
/// completed before another was invoked comes first; unknown ones never
/// complete) and in which every result is what the register held.
fn brute(ops: &[Op]) -> bool {
    fn go(ops: &[Op], used: &mut Vec<bool>, reg: Option<u64>) -> bool {
        if used.iter().all(|u| *u) {
            return true;
        }
        for i in 0..ops.len() {
            if used[i] {
                continue;
            }
            // i may go next only if no unused op finished before i began.
            let blocked = (0..ops.len()).any(|j| {
                !used[j] && j != i && ops[j].ret != Ret::Unknown && ops[j].complete < ops[i].invoke
            });
            if blocked {
                continue;
            }
            let after = match (ops[i].call, ops[i].ret) {
                (Call::Put(v), _) => Some(Some(v)),
                (Call::Get, Ret::Read(s)) => (s == reg).then_some(reg),
                (Call::Get, _) => Some(reg),
                (Call::Delete, Ret::Deleted(e)) => (e == reg.is_some()).then_some(None),
                (Call::Delete, _) => Some(None),
            };
            if let Some(next) = after {
                used[i] = true;
                if go(ops, used, next) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], None)
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(7);
    let (mut yes, mut no) = (0, 0);
    for _ in 0..3000 {
        let n = 1 + usize::try_from(rng.below(6)).unwrap();
        let h: Vec<Op> = (0..n)
            .map(|c| {
                let invoke = rng.below(20);
                let complete = invoke + rng.below(10);
                let v = 1 + rng.below(2);
                let (call, ret) = match rng.below(7) {
                    0 | 1 => (Call::Put(v), Ret::Ok),
                    2 => (Call::Put(v), Ret::Unknown),
                    3 => (Call::Get, Ret::Read((rng.below(3) > 0).then_some(v))),
                    4 => (Call::Get, Ret::Read(None)),
                    5 => (Call::Delete, Ret::Deleted(rng.below(2) == 0)),
                    _ => (Call::Delete, Ret::Unknown),
                };
                op(c, "k", call, ret, invoke, complete)
            })
            .collect();
        let expected = brute(&h);
        assert_eq!(ok(&h), expected, "{h:#?}");
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    // Both answers were exercised, or the cross-check proves little.
    assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not");
}
