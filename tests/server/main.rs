//! The HTTP API in-process (actix `test` service over a temp data dir), one
//! module per section of docs/API.md, checking status, headers and exact bodies;
//! every reply is also checked against docs/openapi.json (`openapi.rs`).
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod backup;
mod batch;
mod beyond;
mod body_kv;
mod common;
mod delete;
mod errors;
mod get;
mod hardening;
mod keys;
mod list;
mod openapi;
mod put;
mod stats;
mod store;
mod writes;
