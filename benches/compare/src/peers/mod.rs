//! The engines under comparison, one file each, all behind [`crate::peer::Peer`]
//! (the bare loop is a single durable-write phase, not a store).

pub mod bare;
pub mod fjall;
pub mod kvstore;
pub mod naive;
pub mod redb;
