//! kvstore, through its public engine API: `SyncMode::Never` for buffered
//! phases (each write still reaches the OS before it returns), `SyncMode::Always`
//! for durable ones (concurrent writers share an fsync: group commit).

use std::path::Path;

use kvstore::engine::{Engine, Options, SyncMode};

use crate::error::Result;
use crate::peer::{Durability, Peer, Reader};

/// An open kvstore engine.
pub struct Kvstore(Engine);

impl Peer for Kvstore {
    const NAME: &'static str = "kvstore";
    type Reader<'a> = &'a Kvstore;

    fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let sync = match durability {
            Durability::Buffered => SyncMode::Never,
            Durability::Synced => SyncMode::Always,
        };
        let options = Options::default().with_sync(sync);
        let (engine, _report) = Engine::open(dir, options)?;
        Ok(Kvstore(engine))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.0.put(key, value)?;
        Ok(())
    }

    fn reader(&self) -> Result<&Kvstore> {
        Ok(self)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.0.sync()?)
    }

    fn close(self) -> Result<()> {
        Ok(self.0.close()?)
    }
}

impl Reader for &Kvstore {
    fn get(&self, key: &[u8], mut seen: impl FnMut(&[u8])) -> Result<bool> {
        // Borrowed from the mapping, as redb's guard borrows its page.
        match self.0.get_pair(key)? {
            Some(pair) => {
                seen(pair.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan_prefix(&self, prefix: &[u8], visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        kvstore_scan_prefix(&self.0, prefix, visit)
    }
}

/// Every live key under `prefix` with its value, in key order: the engine's
/// `prefix` iterator, each pair lent from the segment mappings (checksum
/// verified, no copy, no reference count) until the next.
pub fn kvstore_scan_prefix(
    db: &Engine,
    prefix: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]),
) -> Result<()> {
    let mut pairs = db.prefix(prefix);
    while let Some(pair) = pairs.next_ref() {
        let (key, value) = pair?;
        visit(key, value);
    }
    Ok(())
}
