//! A Raft cluster of real `kvstore` processes on 127.0.0.1 under faults:
//! leaders and followers killed (SIGKILL), restarted, paused (SIGSTOP) and
//! resumed, members added under load; afterwards every node's keyspace is
//! compared with what the clients were told, and recorded histories are
//! checked for linearizability (tests/lincheck).
//!
//! Each node is its own process with its own data dir and a free port, killed
//! by PID when its test ends (`harness::Cluster`'s Drop).
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod api;
#[path = "../lincheck/checker.rs"]
mod checker;
mod churn;
mod failover;
mod harness;
mod linearizable;
mod load;
mod membership;
mod pause;
#[path = "../lincheck/recorder.rs"]
mod recorder;
mod selftest;
#[path = "../cli/support.rs"]
#[allow(dead_code, reason = "the CLI tests' helpers; this binary uses a few")]
mod support;
