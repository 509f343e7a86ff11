//! The engine's in-memory indexes, as one handle that can reload them from the vault without
//! an `Engine`: at load, and when another node sharing the database changed them (the vault
//! calls back with the tables that moved; see `scaivault_store::Vault::follow`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock, Weak};

use scaivault_core::policy::CompiledPolicy;
use scaivault_core::{ErrorCode, Result};
use scaivault_store::{Follower, StoreError, Table, Vault};

use crate::records::{PathRecord, TokenRecord};
use crate::{HeadCache, PathEntry, identities, load_all, outbox, rotation_state, unpack, write};

#[derive(Clone)]
pub(crate) struct Memory {
    pub(crate) paths: Arc<RwLock<BTreeMap<String, PathEntry>>>,
    pub(crate) heads: Arc<HeadCache>,
    pub(crate) policies: Arc<RwLock<Arc<Vec<CompiledPolicy>>>>,
    pub(crate) identities: Arc<RwLock<identities::IdentityIndex>>,
    pub(crate) tokens: Arc<RwLock<HashMap<[u8; 32], TokenRecord>>>,
    pub(crate) rotation: Arc<RwLock<rotation_state::RotationState>>,
    pub(crate) events: outbox::EventSink,
    pub(crate) plugins: Arc<scaivault_plugin_host::PluginHost>,
    pub(crate) plugin_dir: std::path::PathBuf,
}

impl Memory {
    /// Everything, from the vault as it is (at load).
    pub(crate) fn reload_all(&self, vault: &Vault) -> Result<()> {
        self.reload(vault, Table::ALL)
    }

    /// The indexes kept of `tables`.
    pub(crate) fn reload(&self, vault: &Vault, tables: &[Table]) -> Result<()> {
        for t in tables {
            match t {
                Table::Paths => self.reload_paths(vault)?,
                Table::Secrets => self.heads.clear(),
                Table::Policies => self.reload_policies(vault)?,
                Table::Identities => self.reload_identities(vault)?,
                Table::Tokens => self.reload_tokens(vault)?,
                Table::Rotation => self.reload_rotation(vault)?,
                Table::Webhooks => {
                    self.reload_webhooks(vault)?;
                    // Deliveries another node queued are this node's to send if it leads.
                    self.events.notify.notify_one();
                }
                Table::Plugins => {
                    crate::plugins::load_catalogue(vault, &self.plugins, &self.plugin_dir)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn reload_paths(&self, vault: &Vault) -> Result<()> {
        let fresh: BTreeMap<String, PathEntry> = load_all(vault, Table::Paths, |b| {
            unpack::<PathRecord>(Table::Paths, b)
        })?
        .into_iter()
        .map(|r| {
            (
                r.path,
                PathEntry {
                    deleted: r.deleted,
                    last_accessed: AtomicI64::new(0),
                },
            )
        })
        .collect();
        let mut paths = write(&self.paths);
        // Last-access times not yet written are this node's own: they carry over.
        for (path, entry) in paths.iter() {
            if let Some(e) = fresh.get(path) {
                let at = entry
                    .last_accessed
                    .load(std::sync::atomic::Ordering::Relaxed);
                e.last_accessed
                    .store(at, std::sync::atomic::Ordering::Relaxed);
            }
        }
        *paths = fresh;
        Ok(())
    }

    /// The callback the vault runs when other nodes changed `tables`. It holds the vault
    /// weakly: the vault holds the callback.
    pub(crate) fn follower(&self, vault: Weak<Vault>) -> Arc<Follower> {
        let memory = self.clone();
        Arc::new(move |tables: &[Table]| {
            let Some(vault) = vault.upgrade() else {
                return Ok(());
            };
            tracing::debug!(?tables, "following another node's commits");
            memory.reload(&vault, tables).map_err(|e| match e.code {
                ErrorCode::IntegrityError => StoreError::Integrity {
                    table: "indexes",
                    detail: e.message,
                },
                _ => StoreError::Unavailable(format!(
                    "could not follow another node's changes: {}",
                    e.message
                )),
            })
        })
    }
}
