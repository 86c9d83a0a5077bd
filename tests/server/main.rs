//! The HTTP API in-process (actix `test` service over a temp data dir), one
//! module per section of API.md, checking status, headers and exact bodies.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod batch;
mod beyond;
mod body_kv;
mod common;
mod delete;
mod errors;
mod get;
mod keys;
mod list;
mod openapi;
mod put;
mod stats;
mod store;
mod writes;
