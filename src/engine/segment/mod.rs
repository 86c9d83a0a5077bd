//! Segments: the append-only files records live in.
//!
//! - [`active`]: `wal.log`, the one segment being appended to, and its sealing.
//! - [`sealed`]: immutable segments, read through memmap2.
//! - [`scan`]: walking a segment's records, with batch framing and damage handling.
//!
//! [`SegmentSet`] is what readers consult to turn a keydir entry into bytes. It
//! changes only under its write lock and only in ways that keep every published
//! keydir entry readable: a rotated-out memtable stays in `sealing` until its
//! sealed segment is inserted in its place, and compaction removes a segment only
//! after the keydir stopped pointing at it.

pub(crate) mod active;
pub(crate) mod scan;
pub(crate) mod sealed;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::error::{Error, Result};
use super::format::{DecodeError, record};
use super::memtable::Memtable;
use sealed::SealedSegment;

/// Identifies a segment. Segments are ordered by id: a record in a higher id is
/// newer. Rotation moves to the next generation (`id >> 16` + 1); compaction
/// outputs take ids between their newest input and the next generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

impl SegmentId {
    /// The first id of a fresh directory.
    pub const FIRST: SegmentId = SegmentId(1 << 16);

    /// The id rotation gives the segment after this one.
    pub fn next_generation(self) -> SegmentId {
        SegmentId(((self.0 >> 16) + 1) << 16)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where a reader finds the bytes of a segment.
#[derive(Debug, Clone)]
pub enum SegmentRef {
    /// The active segment's in-memory image.
    Active(Arc<Memtable>),
    /// A sealed, mapped segment.
    Sealed(Arc<SealedSegment>),
}

/// The active memtable and all sealed segments, by id.
#[derive(Debug)]
pub struct SegmentSet {
    /// The memtable of `wal.log`.
    pub active: Arc<Memtable>,
    /// Memtables rotated out of `wal.log` whose sealing has not finished; they
    /// serve reads until their sealed segment replaces them.
    pub sealing: BTreeMap<SegmentId, Arc<Memtable>>,
    /// Sealed segments in id order (oldest first).
    pub sealed: BTreeMap<SegmentId, Arc<SealedSegment>>,
}

impl SegmentRef {
    /// The segment, borrowed.
    pub fn view(&self) -> SegmentView<'_> {
        match self {
            SegmentRef::Active(m) => SegmentView::Active(m),
            SegmentRef::Sealed(s) => SegmentView::Sealed(s),
        }
    }
}

/// A segment borrowed from its [`SegmentSet`]: its bytes are read without
/// touching its reference count (a scan looks a segment up per record).
#[derive(Debug, Clone, Copy)]
pub enum SegmentView<'a> {
    /// The active segment's in-memory image.
    Active(&'a Arc<Memtable>),
    /// A sealed, mapped segment.
    Sealed(&'a Arc<SealedSegment>),
}

impl<'a> SegmentView<'a> {
    /// The segment's bytes, for as long as the set is borrowed.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            SegmentView::Active(m) => m.bytes(),
            SegmentView::Sealed(s) => s.bytes(),
        }
    }

    /// A reference that keeps the segment alive on its own.
    pub fn to_ref(self) -> SegmentRef {
        match self {
            SegmentView::Active(m) => SegmentRef::Active(Arc::clone(m)),
            SegmentView::Sealed(s) => SegmentRef::Sealed(Arc::clone(s)),
        }
    }
}

impl SegmentSet {
    /// The segment with this id, if it is still live.
    pub fn get(&self, id: SegmentId) -> Option<SegmentRef> {
        self.view(id).map(SegmentView::to_ref)
    }

    /// The segment with this id, borrowed, if it is still live.
    pub fn view(&self, id: SegmentId) -> Option<SegmentView<'_>> {
        if self.active.id() == id {
            return Some(SegmentView::Active(&self.active));
        }
        if let Some(s) = self.sealed.get(&id) {
            return Some(SegmentView::Sealed(s));
        }
        self.sealing.get(&id).map(SegmentView::Active)
    }
}

/// Copies out the value of the put record of `key` at `offset` in `bytes`,
/// verifying its checksum and key: a damaged record is an error, never wrong data.
pub fn read_value(segment: SegmentId, bytes: &[u8], offset: u32, key: &[u8]) -> Result<Vec<u8>> {
    put_record_at(segment, bytes, offset, key).map(|rec| rec.value.to_vec())
}

/// The put record of `key` at `offset` in `bytes`, checksum, key and kind
/// verified (what a keydir entry names).
pub fn put_record_at<'a>(
    segment: SegmentId,
    bytes: &'a [u8],
    offset: u32,
    key: &[u8],
) -> Result<record::RecordRef<'a>> {
    let rec = record_at(segment, bytes, offset)?;
    if !crate::engine::key::same_key(rec.key, key) || rec.kind != record::RecordKind::Put {
        return Err(corrupt(
            segment,
            offset,
            DecodeError::Invalid {
                field: "record key",
                value: rec.key.len() as u64,
            },
        ));
    }
    Ok(rec)
}

/// The record at `offset` in `bytes` of `segment`, checksum verified; damage
/// is [`Error::Corrupt`] naming where.
pub fn record_at(segment: SegmentId, bytes: &[u8], offset: u32) -> Result<record::RecordRef<'_>> {
    record::decode(bytes.get(offset as usize..).unwrap_or(&[]))
        .map_err(|reason| corrupt(segment, offset, reason))
}

/// [`Error::Corrupt`] for the record at `offset` of `segment`.
pub fn corrupt(segment: SegmentId, offset: u32, reason: DecodeError) -> Error {
    Error::Corrupt {
        segment,
        offset: u64::from(offset),
        reason,
    }
}
