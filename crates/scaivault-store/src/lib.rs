//! The single encrypted vault file.
//!
//! Layers, bottom up: a [`Backend`] is a dumb key-value store of opaque bytes with atomic,
//! durable batches (redb is the one we ship; the trait is narrow so that another, such as
//! PostgreSQL, can be added without touching anything above); the [`pipeline`] batches
//! concurrent writes into one durable commit (group commit); the [`Vault`] blinds every table
//! key with a keyed hash and seals every value with XChaCha20-Poly1305 under an AAD naming the
//! table and the blinded key, so nothing readable reaches the file; the [`ledger`] binds every
//! table's records together, so none can be rolled back, removed or added undetected.

#![forbid(unsafe_code)]

mod backend;
mod backup;
mod error;
mod follow;
mod header;
mod ledger;
mod pg_backend;
mod pipeline;
pub mod private_fs;
mod redb_backend;
mod table;
#[cfg(any(test, feature = "test-hooks"))]
pub mod testing;
mod vault;

pub use backend::{Backend, Commits, DatabaseStats, Mutation, Snapshot, SoleWriter, Turn};
pub use backup::{BackupTrailer, extract_backup, inspect_backup};
pub use error::StoreError;
pub use follow::Follower;
pub use header::{FORMAT_VERSION, Header};
pub use ledger::CHECKED_AT_OPEN;
pub use pg_backend::{PgBackend, redacted as redacted_location};
pub use redb_backend::{DEFAULT_CACHE_MIB, RedbBackend, set_cache_mib};
pub use table::Table;
pub use vault::{
    ReadView, RecordKey, RootChange, Unlock, Vault, VaultStats, WriteTx, database_url,
    shown_location,
};
