use crate::error::StoreError;
use crate::table::Table;

/// One change in a durable batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
}

/// The storage a vault needs: opaque keys and values in named tables, point reads, ordered
/// scans, and atomic durable batches. Nothing here knows about encryption or secrets, so a
/// second backend is a small, testable piece of work.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// A consistent read view: several reads that must agree (a secret's head and its
    /// version) see the same commit.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StoreError>;

    /// Visits every record of `table` in key order until `visit` returns `false`.
    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Visits records in descending key order, starting below `before` (or at the end).
    fn scan_rev(
        &self,
        table: Table,
        before: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Applies every mutation atomically; returns only when the batch is durable.
    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError>;

    /// Writes a consistent copy of the whole store to `out` (used by backups and tests).
    fn copy_to(&self, out: &std::path::Path) -> Result<(), StoreError>;

    /// Why writes (and so audited requests) cannot succeed now, if they cannot: readiness
    /// reports it instead of answering "ready" to a server that can only fail.
    fn write_blocked(&self) -> Option<String> {
        None
    }
}

/// Reads from one consistent view of the store.
pub trait Snapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits every record of `table` in key order until `visit` returns `false`.
    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
}
