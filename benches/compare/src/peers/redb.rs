//! redb (a copy-on-write B-tree), one table, one write transaction per put:
//! `Durability::None` for buffered phases (committed to the OS's page cache,
//! not synced), `Durability::Immediate` for durable ones. Reads of a phase run
//! in ONE read transaction, redb's cheapest way (as its own benchmark reads).

use std::path::Path;

use redb::{
    Database, Durability as RedbDurability, ReadOnlyTable, ReadableDatabase, TableDefinition,
};

use crate::error::{Result, redb_err};
use crate::peer::{Durability, Peer, Reader};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// An open redb database.
pub struct Redb {
    db: Database,
    durability: RedbDurability,
}

/// A read transaction's view of the table.
pub struct RedbReader(ReadOnlyTable<&'static [u8], &'static [u8]>);

impl Peer for Redb {
    const NAME: &'static str = "redb";
    type Reader<'a> = RedbReader;

    fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let db = Database::create(dir.join("data.redb")).map_err(redb_err)?;
        // Create the table up front so a reader never finds it missing.
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(TABLE).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        let durability = match durability {
            Durability::Buffered => RedbDurability::None,
            Durability::Synced => RedbDurability::Immediate,
        };
        Ok(Redb { db, durability })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(self.durability).map_err(redb_err)?;
        {
            let mut table = txn.open_table(TABLE).map_err(redb_err)?;
            table.insert(key, value).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        Ok(())
    }

    fn reader(&self) -> Result<RedbReader> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        Ok(RedbReader(txn.open_table(TABLE).map_err(redb_err)?))
    }

    fn sync(&self) -> Result<()> {
        // An empty durable commit makes every earlier non-durable commit durable.
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(RedbDurability::Immediate)
            .map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        Ok(())
    }

    fn close(self) -> Result<()> {
        self.sync()?;
        drop(self.db);
        Ok(())
    }
}

impl Reader for RedbReader {
    fn get(&self, key: &[u8], mut seen: impl FnMut(&[u8])) -> Result<bool> {
        match self.0.get(key).map_err(redb_err)? {
            Some(v) => {
                seen(v.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan_prefix(&self, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let range = match successor(prefix) {
            Some(end) => self.0.range::<&[u8]>(prefix..end.as_slice()),
            None => self.0.range::<&[u8]>(prefix..),
        }
        .map_err(redb_err)?;
        for item in range {
            let (k, v) = item.map_err(redb_err)?;
            visit(k.value(), v.value());
        }
        Ok(())
    }
}

/// The smallest byte string greater than every string starting with `prefix`
/// (`None` when there is none: the prefix is all 0xff).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
