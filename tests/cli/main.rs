//! The real `kvstore` binary: started on 127.0.0.1 with a free port, driven
//! over HTTP, signalled and killed by PID, restarted on the same data dir.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod api_errors;
mod auth;
mod backup;
#[path = "../lincheck/checker.rs"]
mod checker;
mod client;
mod cluster_smoke;
mod config;
mod crash;
mod group_commit;
mod hostile;
mod legacy;
mod lifecycle;
mod linearizable;
mod offline;
mod progress;
#[path = "../lincheck/recorder.rs"]
mod recorder;
mod shell;
mod shell_pty;
mod startup;
mod support;
