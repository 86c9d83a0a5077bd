//! Engine integration tests, one themed module per file, linked into one binary.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod basic;
mod common;
mod model;
mod crash;
mod support;
mod recovery;
mod faults;
mod ttl;
mod concurrency;
