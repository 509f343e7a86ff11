//! For tests only (feature `test-hooks`): a backend whose durable commits can be made to
//! fail, like a dying disk, to show what a failed commit leaves behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::backend::{Backend, Mutation, Snapshot, SoleWriter, Turn};
use crate::error::StoreError;
use crate::redb_backend::RedbBackend;
use crate::table::Table;

/// A redb backend with a switch: while `fail` is set, every commit fails and writes nothing.
pub struct FaultyBackend {
    inner: RedbBackend,
    /// Set to make commits fail.
    pub fail: Arc<AtomicBool>,
    /// Commits that succeeded.
    pub commits: Arc<AtomicUsize>,
}

impl FaultyBackend {
    pub fn new(inner: RedbBackend) -> FaultyBackend {
        FaultyBackend {
            inner,
            fail: Arc::default(),
            commits: Arc::default(),
        }
    }
}

impl Backend for FaultyBackend {
    fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(t, k)
    }
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StoreError> {
        self.inner.snapshot()
    }
    fn scan(&self, t: Table, v: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.inner.scan(t, v)
    }
    fn scan_rev(
        &self,
        t: Table,
        b: Option<&[u8]>,
        v: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.scan_rev(t, b, v)
    }
    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io(
                "injected: the disk refused the write".into(),
            ));
        }
        self.inner.commit(batch)?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn copy_to(&self, out: &Path) -> Result<(), StoreError> {
        self.inner.copy_to(out)
    }
    fn turn(&self) -> Result<Box<dyn Turn + '_>, StoreError> {
        Ok(Box::new(SoleWriter(self)))
    }
}
