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

    /// Starts a batch's turn to write: its reads see every commit made so far, by any node,
    /// and no other writer commits until it ends. A file has one writer (the pipeline's
    /// thread), so its turn is [`SoleWriter`]; a database several nodes share locks.
    fn turn(&self) -> Result<Box<dyn Turn + '_>, StoreError>;

    /// Where the committed state stands, on a database several nodes share (`None`: only
    /// this process writes, so there is nothing to follow).
    fn commits(&self) -> Result<Option<Commits>, StoreError> {
        Ok(None)
    }

    /// Whether this node leads: runs the work that must happen once however many nodes
    /// serve the vault (rotation schedule, expiry passes, webhook deliveries). A file's one
    /// process always does.
    fn leads(&self) -> bool {
        true
    }

    /// Connections and the time spent waiting for the database, on a database (metrics).
    fn database_stats(&self) -> Option<DatabaseStats> {
        None
    }
}

/// What a node's use of its database looks like now (see [`Backend::database_stats`]).
#[derive(Clone, Debug, Default)]
pub struct DatabaseStats {
    /// Pooled connections checked out now, and the most there may be.
    pub connections_in_use: usize,
    pub connections_max: usize,
    /// Calls made (statements, transactions' steps, connects) and the seconds spent waiting
    /// for their answers, since the node started.
    pub calls: u64,
    pub call_seconds: f64,
}

/// The commit sequence of a shared database: how many batches anyone has committed, and for
/// each table (indexed like [`Table::ALL`]) the one that last changed it. A node compares them
/// with what its in-memory indexes have followed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commits {
    pub head: u64,
    pub tables: Vec<u64>,
}

impl Commits {
    pub fn of(&self, t: Table) -> u64 {
        self.tables.get(t.index()).copied().unwrap_or(0)
    }
}

/// A batch's turn to write (see [`Backend::turn`]): reads through it see the latest commit.
/// Dropped without [`Turn::commit`], it ends and changes nothing.
pub trait Turn: Snapshot {
    /// Where the committed state stood when the turn began (`None`: a file's sole writer).
    fn commits(&self) -> Option<&Commits>;

    /// Applies every mutation atomically and ends the turn; returns once durable.
    fn commit(self: Box<Self>, batch: &[Mutation]) -> Result<(), StoreError>;
}

/// The turn of a backend with one writer: reads and commits go straight to it.
pub struct SoleWriter<'a>(pub &'a dyn Backend);

impl Snapshot for SoleWriter<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.0.scan(table, visit)
    }
}

impl Turn for SoleWriter<'_> {
    fn commits(&self) -> Option<&Commits> {
        None
    }

    fn commit(self: Box<Self>, batch: &[Mutation]) -> Result<(), StoreError> {
        self.0.commit(batch)
    }
}

/// Reads from one consistent view of the store.
pub trait Snapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Several records at once, in the order asked (a database answers them in one round
    /// trip: the ledger reads every record a batch replaces).
    fn get_many(&self, keys: &[(Table, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|(t, k)| self.get(*t, k)).collect()
    }

    /// Visits every record of `table` in key order until `visit` returns `false`.
    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
}
