//! The Raft type configuration and what travels in the log: a [`Command`]
//! per client write, a [`Reply`] per applied entry.
//!
//! Keys and values are strings on the wire and in the log: every key a client
//! can name is UTF-8 (the HTTP layer checks it) and every stored value is
//! minified JSON text, so JSON carries them at their own size instead of as
//! arrays of byte numbers.

use std::io::Cursor;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::engine::{Batch, Expiry, Op, OpResult, Prior};

/// A node's id in the cluster (`--node-id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// kvstore's Raft types: [`Command`] in, [`Reply`] out, nodes addressed by
    /// their HTTP `host:port`, snapshots as one framed byte stream.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// One client write, applied on every node as one engine batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Command {
    /// The id the state machine de-duplicates retries by (see
    /// `state_machine`); `None` for writes that carry none.
    pub request_id: Option<String>,
    /// What to do.
    pub action: Action,
}

/// What a [`Command`] does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Action {
    /// An atomic batch (a single put or delete is a batch of one).
    Batch(Vec<WireOp>),
    /// A put decided in the state machine: applied only if the key is live
    /// (`if_live`) or absent (`!if_live`) when the entry is applied.
    Conditional {
        /// The key.
        key: String,
        /// The stored-form value.
        value: String,
        /// Absolute expiry in ms since the epoch (0: never), fixed by the
        /// leader so every node applies the same one.
        expiry: u64,
        /// true: update-if-present; false: create-if-absent.
        if_live: bool,
    },
}

/// One operation of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum WireOp {
    /// Set a key; `expiry` as in [`Action::Conditional`].
    Put {
        /// The key.
        key: String,
        /// The stored-form value.
        value: String,
        /// Absolute expiry (0: never).
        expiry: u64,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Read a key as of this point of the batch.
    Get {
        /// The key.
        key: String,
    },
}

/// What applying one entry produced, relayed to the client that proposed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Reply {
    /// Blank and membership entries.
    #[default]
    None,
    /// A batch's results, one per operation.
    Results(Vec<WireResult>),
    /// A conditional put: whether its condition held (and so it was written).
    Conditional(bool),
}

/// One operation's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum WireResult {
    /// A put; whether a live value existed before.
    Put(bool),
    /// A delete; whether a live value existed before.
    Delete(bool),
    /// A get's value, if live.
    Get(Option<String>),
}

/// Why a batch cannot be carried in the log: a key or value that is not UTF-8
/// (the HTTP layer never builds one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("keys and values of a replicated write must be UTF-8")]
pub struct NotUtf8;

fn text(bytes: &[u8]) -> Result<String, NotUtf8> {
    String::from_utf8(bytes.to_vec()).map_err(|_| NotUtf8)
}

/// The wire form of an engine batch.
pub fn ops_of(batch: &Batch) -> Result<Vec<WireOp>, NotUtf8> {
    batch
        .ops()
        .iter()
        .map(|op| {
            Ok(match op {
                Op::Put { key, value, expiry } => WireOp::Put {
                    key: text(key)?,
                    value: text(value)?,
                    expiry: expiry.to_raw(),
                },
                Op::Delete { key } => WireOp::Delete { key: text(key)? },
                Op::Get { key } => WireOp::Get { key: text(key)? },
            })
        })
        .collect()
}

/// The engine batch of wire operations.
pub fn batch_of(ops: &[WireOp]) -> Batch {
    let mut batch = Batch::new();
    for op in ops {
        match op {
            WireOp::Put { key, value, expiry } => {
                batch.put_with_expiry(key.as_bytes(), value.as_bytes(), Expiry::from_raw(*expiry));
            }
            WireOp::Delete { key } => {
                batch.delete(key.as_bytes());
            }
            WireOp::Get { key } => {
                batch.get(key.as_bytes());
            }
        }
    }
    batch
}

/// The wire form of an engine result.
pub fn wire_result(result: &OpResult) -> WireResult {
    match result {
        OpResult::Put(prior) => WireResult::Put(*prior == Prior::Live),
        OpResult::Delete(prior) => WireResult::Delete(*prior == Prior::Live),
        OpResult::Get(value) => WireResult::Get(
            value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        ),
    }
}

/// The engine result of a wire result.
pub fn op_result(result: &WireResult) -> OpResult {
    let prior = |live: bool| if live { Prior::Live } else { Prior::Absent };
    match result {
        WireResult::Put(live) => OpResult::Put(prior(*live)),
        WireResult::Delete(live) => OpResult::Delete(prior(*live)),
        WireResult::Get(value) => OpResult::Get(value.as_ref().map(|v| v.as_bytes().to_vec())),
    }
}
