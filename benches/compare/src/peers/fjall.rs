//! fjall (an LSM tree), one keyspace in one database with its default
//! settings. Each `insert` writes its journal entry to the OS before returning
//! (fjall's default, kill-safe like kvstore's `SyncMode::Never`); a durable put
//! adds `persist(PersistMode::SyncData)`, fdatasync of the journal.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::error::Result;
use crate::peer::{Durability, Peer, Reader};

/// An open fjall database and its one keyspace.
pub struct Fjall {
    db: Database,
    items: Keyspace,
    durability: Durability,
}

impl Peer for Fjall {
    const NAME: &'static str = "fjall";
    type Reader<'a> = &'a Fjall;

    fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let db = Database::builder(dir).open()?;
        let items = db.keyspace("items", KeyspaceCreateOptions::default)?;
        Ok(Fjall {
            db,
            items,
            durability,
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.items.insert(key, value)?;
        if self.durability == Durability::Synced {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn reader(&self) -> Result<&Fjall> {
        Ok(self)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    fn close(self) -> Result<()> {
        // Dropping the database persists its journal (SyncAll) and stops its workers.
        self.sync()?;
        drop(self.items);
        drop(self.db);
        Ok(())
    }
}

impl Reader for &Fjall {
    fn get(&self, key: &[u8], mut seen: impl FnMut(&[u8])) -> Result<bool> {
        match self.items.get(key)? {
            Some(v) => {
                seen(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan_prefix(&self, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        for item in self.items.prefix(prefix) {
            let (k, v) = item.into_inner()?;
            visit(&k, &v);
        }
        Ok(())
    }
}
