//! Batches: ordered operations applied as one atomic step.
//!
//! A batch's writes are framed on disk behind a batch marker, published to the
//! keydir under one lock and acknowledged together, so no reader and no restart
//! ever sees part of one. Its gets see the batch's own earlier writes.

use std::time::Duration;

use super::Shared;
use super::error::{Error, Result};
use super::options::MAX_SEGMENT_BYTES;

/// When a value stops being readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// The value never expires.
    #[default]
    Never,
    /// The value is absent from this instant on, in ms since the Unix epoch.
    /// An instant at or before now makes the put delete the key.
    At(u64),
}

impl Expiry {
    /// The instant `ttl` after `now_ms`.
    pub fn after(now_ms: u64, ttl: Duration) -> Expiry {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Expiry::At(now_ms.saturating_add(ttl_ms).max(1))
    }

    /// The on-disk form: 0 = never.
    pub fn to_raw(self) -> u64 {
        match self {
            Expiry::Never => 0,
            Expiry::At(ms) => ms.max(1),
        }
    }

    /// From the on-disk form.
    pub fn from_raw(raw: u64) -> Expiry {
        if raw == 0 {
            Expiry::Never
        } else {
            Expiry::At(raw)
        }
    }
}

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`, replacing any earlier value and expiry.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// When it expires.
        expiry: Expiry,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Reads `key` as it stands at this point of the batch.
    Get {
        /// The key.
        key: Vec<u8>,
    },
}

impl Op {
    /// The key the operation is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }

    pub(crate) fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }
}

/// Whether a live value existed before a put or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// No live value: a put created the key; a delete found nothing.
    Absent,
    /// A live value existed: a put replaced it; a delete removed it.
    Live,
}

impl Prior {
    /// True when a live value existed.
    pub fn existed(self) -> bool {
        self == Prior::Live
    }
}

/// The outcome of one operation, at the same index as the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A put: whether it replaced a live value.
    Put(Prior),
    /// A delete: whether it removed a live value.
    Delete(Prior),
    /// A get: the value, or `None` when absent.
    Get(Option<Vec<u8>>),
}

/// An ordered list of operations applied atomically by
/// [`Engine::apply`](super::Engine::apply).
///
/// ```
/// use kvstore::engine::{Batch, Expiry};
/// let mut batch = Batch::new();
/// batch.put(b"a", b"1").delete(b"b").get(b"a");
/// assert_eq!(batch.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put that never expires.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Batch {
        self.put_with_expiry(key, value, Expiry::Never)
    }

    /// Adds a put with an expiry.
    pub fn put_with_expiry(&mut self, key: &[u8], value: &[u8], expiry: Expiry) -> &mut Batch {
        self.push(Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            expiry,
        })
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: &[u8]) -> &mut Batch {
        self.push(Op::Delete { key: key.to_vec() })
    }

    /// Adds a get.
    pub fn get(&mut self, key: &[u8]) -> &mut Batch {
        self.push(Op::Get { key: key.to_vec() })
    }

    /// Adds any operation.
    pub fn push(&mut self, op: Op) -> &mut Batch {
        self.ops.push(op);
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Batch {
        Batch { ops }
    }
}

impl Shared {
    /// Checks every operation of `batch` and that it fits one segment.
    pub(crate) fn validate(&self, batch: &Batch) -> Result<()> {
        for op in &batch.ops {
            let value = match op {
                Op::Put { value, .. } => Some(value.as_slice()),
                _ => None,
            };
            self.validate_op(op.key(), value)?;
        }
        let size = super::writer::planned_size(&batch.ops) as u64;
        if size > MAX_SEGMENT_BYTES {
            return Err(Error::BatchTooLarge {
                len: size,
                max: MAX_SEGMENT_BYTES,
            });
        }
        Ok(())
    }

    /// Checks one key (and value, for a put) against the configured limits.
    pub(crate) fn validate_op(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let max_key = self.opts.max_key_bytes;
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > max_key {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: max_key,
            });
        }
        if let Some(value) = value
            && value.len() > self.opts.max_value_bytes
        {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.opts.max_value_bytes,
            });
        }
        Ok(())
    }
}
