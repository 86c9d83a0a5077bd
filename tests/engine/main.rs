//! Engine integration tests, one themed module per file, linked into one binary.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod backup;
mod basic;
mod compaction;
mod compaction_steps;
mod concurrency;
mod crash;
mod crash_wal;
mod faults;
mod model;
mod power_loss;
mod readonly;
mod recovery;
mod scan;
mod support;
mod surface;
mod ttl;
