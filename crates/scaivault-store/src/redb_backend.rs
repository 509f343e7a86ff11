//! The embedded backend: one redb file.

use std::path::Path;
use std::sync::Mutex;

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
    TableError,
};

use crate::backend::{Backend, Mutation, Snapshot};
use crate::error::{StoreError, io_error};
use crate::table::Table;

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;
type RawTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

fn def(t: Table) -> Def {
    TableDefinition::new(t.name())
}

/// Read-write or read-only: a vault is opened read-only until it is unsealed, so a wrong
/// passphrase leaves the file byte-for-byte as it was.
enum Db {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

pub struct RedbBackend {
    db: Db,
    /// redb allows one write transaction at a time; the pipeline is the only writer, but
    /// `copy_to` and tests may also write, so serialise explicitly.
    write_lock: Mutex<()>,
    /// Set once a write failed for lack of space: redb then refuses every later write with
    /// "previous I/O error" until the file is reopened, which callers should hear as what it is.
    disk_full: std::sync::atomic::AtomicBool,
    /// A repaired copy this read-only view reads instead of a file that was not closed
    /// cleanly; deleted with the view.
    _scratch: Option<ScratchCopy>,
}

/// A private copy of a vault file, removed when dropped.
struct ScratchCopy(std::path::PathBuf);

impl Drop for ScratchCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl ScratchCopy {
    /// Copies `path` to an owner-only file beside it (or in the temp dir when its directory
    /// is not writable).
    fn of(path: &Path) -> Result<ScratchCopy, StoreError> {
        let name = format!(
            ".{}.check-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "vault".into()),
            std::process::id()
        );
        let beside = path.parent().map(|d| d.join(&name));
        let mut last = None;
        for dst in beside.into_iter().chain([std::env::temp_dir().join(&name)]) {
            let _ = std::fs::remove_file(&dst);
            let mut src = std::fs::File::open(path).map_err(|e| io_error(&e))?;
            let mut out = match crate::private_fs::create_new(&dst) {
                Ok(f) => f,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let copy = ScratchCopy(dst);
            // A full disk beside the vault: try the temp dir instead (the partial copy goes).
            match std::io::copy(&mut src, &mut out) {
                Ok(_) => return Ok(copy),
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(io_error(&e));
        }
        Err(StoreError::Io(
            "no place to make a private copy of the vault file to check it".into(),
        ))
    }
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    let s = e.to_string();
    if s.contains("No space left") || s.contains("os error 28") {
        return StoreError::StorageFull;
    }
    StoreError::Io(s)
}

fn db_error(e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            use std::io::ErrorKind::*;
            match io.kind() {
                UnexpectedEof => StoreError::Corrupt("file is truncated".into()),
                InvalidData | InvalidInput => StoreError::Corrupt(io.to_string()),
                _ => io_error(&io),
            }
        }
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// redb may panic on a structurally damaged file; a damaged file must give a clean error.
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(StoreError::Corrupt(format!(
            "{what}: the file structure is damaged"
        ))),
    }
}

/// The page cache redb keeps per open file unless told otherwise, in MiB.
pub const DEFAULT_CACHE_MIB: usize = 64;

/// The page cache of every file this process opens from now on, in bytes: with the path index,
/// the largest part of a server's RSS that its configuration decides (docs/RELIABILITY.md).
/// Process-wide because a process serves one vault and every open of it (start-up, unseal,
/// restore) must agree; set once at start-up from `--cache-mib`.
static CACHE_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(DEFAULT_CACHE_MIB * 1024 * 1024);

/// Sets the page cache of files opened from now on (see [`DEFAULT_CACHE_MIB`]).
pub fn set_cache_mib(mib: usize) {
    CACHE_BYTES.store(
        mib.saturating_mul(1024 * 1024),
        std::sync::atomic::Ordering::Relaxed,
    );
}

impl RedbBackend {
    fn builder() -> redb::Builder {
        let mut b = Database::builder();
        // A modest cache: the OS page cache does the heavy lifting, and RSS is a target.
        b.set_cache_size(CACHE_BYTES.load(std::sync::atomic::Ordering::Relaxed));
        b
    }

    /// Creates a new file; fails if one exists.
    pub fn create(path: &Path) -> Result<RedbBackend, StoreError> {
        let file = crate::private_fs::create_new(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                StoreError::AlreadyExists(path.display().to_string())
            }
            _ => io_error(&e),
        })?;
        drop(file);
        let db = guard("create", || Self::builder().create(path).map_err(db_error))?;
        let backend = RedbBackend {
            db: Db::ReadWrite(db),
            write_lock: Mutex::new(()),
            disk_full: Default::default(),
            _scratch: None,
        };
        backend.with_write(|txn| {
            for t in Table::ALL {
                txn.open_table(def(*t)).map_err(storage)?;
            }
            Ok(())
        })?;
        Ok(backend)
    }

    pub fn open(path: &Path) -> Result<RedbBackend, StoreError> {
        Self::check_exists(path)?;
        let db = guard("open", || Self::builder().open(path).map_err(db_error))?;
        Ok(RedbBackend {
            db: Db::ReadWrite(db),
            write_lock: Mutex::new(()),
            disk_full: Default::default(),
            _scratch: None,
        })
    }

    /// Opens without ever writing to the file. After a crash, a file that needs recovery is
    /// copied (owner-only, beside it or in the temp dir) and the copy is repaired and read;
    /// that costs a copy of the file, once, on the first open after a crash.
    pub fn open_read_only(path: &Path) -> Result<RedbBackend, StoreError> {
        Self::check_exists(path)?;
        let first = guard("open", || match Self::builder().open_read_only(path) {
            Ok(db) => Ok(Some(db)),
            Err(redb::DatabaseError::RepairAborted) => Ok(None),
            Err(e) => Err(db_error(e)),
        })?;
        // A file that was not closed cleanly needs a repair before redb reads it, and a
        // repair writes. A read-only view must never change the file (it is how a passphrase
        // is checked before anything may write), so it repairs and reads a private copy; the
        // file itself is repaired only by the read-write open that follows a right key.
        let (db, scratch) = match first {
            Some(db) => (db, None),
            None => {
                let copy = ScratchCopy::of(path)?;
                let rw = guard("recover", || {
                    Self::builder().open(&copy.0).map_err(db_error)
                })?;
                drop(rw);
                let db = guard("open", || {
                    Self::builder().open_read_only(&copy.0).map_err(db_error)
                })?;
                (db, Some(copy))
            }
        };
        Ok(RedbBackend {
            db: Db::ReadOnly(db),
            write_lock: Mutex::new(()),
            disk_full: Default::default(),
            _scratch: scratch,
        })
    }

    fn check_exists(path: &Path) -> Result<(), StoreError> {
        match std::fs::metadata(path) {
            Ok(m) if m.len() == 0 => Err(StoreError::Corrupt("file is empty".into())),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(path.display().to_string()))
            }
            Err(e) => Err(io_error(&e)),
        }
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        match &self.db {
            Db::ReadWrite(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
        }
        .map_err(storage)
    }

    fn with_write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Db::ReadWrite(db) = &self.db else {
            return Err(StoreError::Sealed);
        };
        let _lock = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = guard("write", || {
            let mut txn = db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            txn.set_quick_repair(true);
            let out = f(&txn)?;
            txn.commit().map_err(storage)?;
            Ok(out)
        });
        use std::sync::atomic::Ordering;
        match result {
            Err(StoreError::StorageFull) => {
                self.disk_full.store(true, Ordering::SeqCst);
                Err(StoreError::StorageFull)
            }
            Err(StoreError::Io(m))
                if m.contains("Previous I/O error") && self.disk_full.load(Ordering::SeqCst) =>
            {
                Err(StoreError::StorageFull)
            }
            other => other,
        }
    }
}

struct RedbSnapshot(redb::ReadTransaction);

impl Snapshot for RedbSnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        guard("read", || get_in(&self.0, table, key))
    }

    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        guard("scan", || scan_in(&self.0, table, visit))
    }
}

fn get_in(
    txn: &redb::ReadTransaction,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let t = match txn.open_table(def(table)) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(storage(e)),
    };
    Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
}

impl Backend for RedbBackend {
    fn turn(&self) -> Result<Box<dyn crate::backend::Turn + '_>, StoreError> {
        Ok(Box::new(crate::backend::SoleWriter(self)))
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        guard("read", || get_in(&self.begin_read()?, table, key))
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StoreError> {
        Ok(Box::new(RedbSnapshot(guard("read", || self.begin_read())?)))
    }

    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        guard("scan", || scan_in(&self.begin_read()?, table, visit))
    }

    fn scan_rev(
        &self,
        table: Table,
        before: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        guard("scan", || {
            let txn = self.begin_read()?;
            let t = match txn.open_table(def(table)) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(storage(e)),
            };
            let range = match before {
                Some(b) => t.range::<&[u8]>(..b).map_err(storage)?,
                None => t.iter().map_err(storage)?,
            };
            for item in range.rev() {
                let (k, v) = item.map_err(storage)?;
                if !visit(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        self.with_write(|txn| {
            // Each table is opened once per run of mutations to it (the pipeline sends them
            // sorted by table): opening one costs a lookup in redb's table tree.
            let mut open: Option<(Table, RawTable<'_>)> = None;
            for m in batch {
                let (Mutation::Put { table, .. } | Mutation::Delete { table, .. }) = m;
                let t = match &mut open {
                    Some((current, t)) if current == table => t,
                    slot => {
                        *slot = None;
                        let t = txn.open_table(def(*table)).map_err(storage)?;
                        &mut slot.insert((*table, t)).1
                    }
                };
                match m {
                    Mutation::Put { key, value, .. } => {
                        t.insert(key.as_slice(), value.as_slice())
                            .map_err(storage)?;
                    }
                    Mutation::Delete { key, .. } => {
                        t.remove(key.as_slice()).map_err(storage)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn write_blocked(&self) -> Option<String> {
        self.disk_full.load(std::sync::atomic::Ordering::SeqCst).then(|| {
            "the disk is full: writes and audited requests fail until space is freed and the server restarted".to_owned()
        })
    }

    fn copy_to(&self, out: &Path) -> Result<(), StoreError> {
        // One read transaction for every table: the copy is a consistent snapshot.
        let mut batch = Vec::new();
        guard("copy", || {
            let txn = self.begin_read()?;
            for t in Table::ALL {
                scan_in(&txn, *t, &mut |k, v| {
                    batch.push(Mutation::Put {
                        table: *t,
                        key: k.to_vec(),
                        value: v.to_vec(),
                    });
                    true
                })?;
            }
            Ok(())
        })?;
        RedbBackend::create(out)?.commit(&batch)
    }
}

fn scan_in(
    txn: &redb::ReadTransaction,
    table: Table,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    let t = match txn.open_table(def(table)) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(storage(e)),
    };
    for item in t.iter().map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        if !visit(k.value(), v.value()) {
            break;
        }
    }
    Ok(())
}
