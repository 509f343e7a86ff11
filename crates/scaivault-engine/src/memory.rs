//! The engine's in-memory indexes, as one handle that can reload them from the vault without
//! an `Engine`: at load, and when another node sharing the database changed them (the vault
//! calls back with the tables that moved; see `scaivault_store::Vault::follow`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use scaivault_core::policy::{CompiledPolicy, Policy};
use scaivault_core::{ErrorCode, Result};
use scaivault_store::{Follower, StoreError, Table, Vault};

use crate::identities::IdentityIndex;
use crate::outbox::WebhookState;
use crate::records::{IdentityRecord, PathRecord, TokenRecord};
use crate::rotation_state::{RotationRecord, RotationState};
use crate::webhook_records::{DeliveryStatus, WebhookItem};
use crate::{
    HeadCache, PathEntry, decode, identities, load_all, outbox, rotation_state, unpack, write,
};

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

    pub(crate) fn reload_identities(&self, vault: &scaivault_store::Vault) -> Result<()> {
        let all = load_all(vault, Table::Identities, |b| {
            decode::<IdentityRecord>(Table::Identities, b)
        })?;
        *write(&self.identities) = IdentityIndex::new(all);
        Ok(())
    }

    pub(crate) fn reload_policies(&self, vault: &scaivault_store::Vault) -> Result<()> {
        let mut all = load_all(vault, Table::Policies, |b| {
            decode::<Policy>(Table::Policies, b).and_then(CompiledPolicy::compile)
        })?;
        all.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
        *write(&self.policies) = Arc::new(all);
        Ok(())
    }

    pub(crate) fn reload_rotation(&self, vault: &scaivault_store::Vault) -> Result<()> {
        let mut state = RotationState::default();
        for r in load_all(vault, Table::Rotation, |b| {
            decode::<RotationRecord>(Table::Rotation, b)
        })? {
            match r {
                RotationRecord::Policy(p) => {
                    state.policies.insert(p.id.clone(), p);
                }
                RotationRecord::Assignment {
                    policy_id,
                    secret_path,
                } => {
                    state.assigned.insert(secret_path, policy_id);
                }
                RotationRecord::Job(j) => {
                    state.jobs.insert(j.secret_path.clone(), j);
                }
                RotationRecord::Notices {
                    secret_path,
                    cycle,
                    sent,
                } => {
                    state.notices.insert(secret_path, (cycle, sent));
                }
                RotationRecord::SecretPolicy(sp) => {
                    state.secret_policies.insert(sp.id.clone(), sp);
                }
                RotationRecord::ExpiryNotices {
                    secret_path,
                    expires_at,
                    sent,
                } => {
                    state.expiry.insert(secret_path, (expires_at, sent));
                }
            }
        }
        *write(&self.rotation) = state;
        Ok(())
    }

    pub(crate) fn reload_tokens(&self, vault: &scaivault_store::Vault) -> Result<()> {
        let all = load_all(vault, Table::Tokens, |b| {
            decode::<TokenRecord>(Table::Tokens, b)
        })?
        .into_iter()
        .map(|r| (r.hash, r))
        .collect();
        *write(&self.tokens) = all;
        Ok(())
    }

    pub(crate) fn reload_webhooks(&self, vault: &scaivault_store::Vault) -> Result<()> {
        let mut state = WebhookState::default();
        let mut max_seq = 0;
        let mut deliveries = Vec::new();
        for item in load_all(vault, Table::Webhooks, |b| {
            decode::<WebhookItem>(Table::Webhooks, b)
        })? {
            match item {
                WebhookItem::Hook(mut h) => {
                    if let Some(sub) = h.subscription.as_mut() {
                        // Validated when stored; a record that no longer compiles matches
                        // nothing rather than stopping the vault.
                        if sub.compile().is_err() {
                            tracing::warn!(id = %h.id, "a subscription's paths do not compile; it receives nothing");
                        }
                    }
                    state.hooks.insert(h.id.clone(), h);
                }
                WebhookItem::Delivery(d) => deliveries.push(d),
            }
        }
        // (Deliveries sort before their webhooks in the table: sorted once all are known.)
        for d in deliveries {
            max_seq = max_seq.max(d.seq);
            if let Some(size) = state.polled(&d.webhook_id) {
                state.buffer(d, size);
            } else if d.status == DeliveryStatus::Pending {
                state.add_pending(d);
            } else {
                state
                    .finished
                    .entry(d.webhook_id.clone())
                    .or_default()
                    .insert(d.seq);
            }
        }
        *write(&self.events.state) = state;
        self.events.seq.store(max_seq + 1, Ordering::SeqCst);
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
