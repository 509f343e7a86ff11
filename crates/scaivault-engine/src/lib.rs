//! The use cases of ScaiVault, written once: the HTTP handlers and the CLI's local mode both
//! call this engine, so every rule (validation, authorization, versioning, deletion) has one
//! home.
//!
//! State kept in memory after unseal, each rebuilt from the file and updated only after the
//! batch that changed it is durable: the path index (listings without decrypting every
//! record), compiled policies, identities with group membership, and token hashes.

#![forbid(unsafe_code)]

mod audit;
mod audit_action;
mod backends;
mod caller;
mod clock;
mod cursor;
mod events;
mod expiry;
pub use expiry::{ExpiringSecret, ExpiringSecrets, MAX_EXPIRING_DAYS};
mod identities;
mod memory;
mod operations;
mod outbox;
mod path_locks;
mod plugins;
mod policies;
mod records;
mod repair;
mod roles;
mod rotation;
mod rotation_job;
mod rotation_state;
mod rotation_views;
mod secret_policies;
mod secrets;
mod subscriptions;
mod tokens;
mod webhook_records;
mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};

pub use audit::{
    AuditEntry, AuditInput, AuditPage, AuditPruned, AuditQuery, AuditSummary, AuditTrail, Hash32,
    SummaryQuery, VerifyReport, input_for,
};
pub use audit_action::AuditAction;
pub use caller::Caller;
pub use clock::{Clock, ManualClock, SystemClock};
pub use events::{EVENT_TYPES, Event};
pub use identities::{
    CreateIdentity, CredentialList, CredentialRevoked, CredentialView, IdentityView,
    IssuedCredential,
};
pub use operations::{AuditHead, VaultReport};
pub use plugins::{PluginCheck, PluginList, PluginSettings, PluginVerification};
pub use policies::{BindingRequest, PolicyList, PolicyRequest, PolicySummary, PolicyTestRequest};
pub use records::{IdentityRecord, SecretHead, TokenRecord};
pub use records::{SecretData, VersionInfo};
pub use repair::DamagedDestroyed;
pub use roles::{ROLES, ResolvedIdentity, RoleInfo, RoleList, UserRoles};
pub use rotation::RotationPolicyRequest;
pub use rotation_job::MAX_ATTEMPTS;
pub use rotation_state::{JobStatus, RecipeField, RotationJob, RotationPolicy, SecretPolicy, Step};
pub use rotation_views::{
    JobState, JobView, OutcomeError, RotateResult, RotationAssignment, RotationOutcome,
    RotationPolicyList, RotationPolicyView, RotationStatus, SecretRotation,
};
pub use scaivault_core::{Error, ErrorCode, Result};
pub use scaivault_plugin_host::{Capability, PluginInfo};
pub use secret_policies::{Generated, SecretPolicyList, SecretPolicyRequest};
pub use secrets::{
    BatchError, BatchItem, BatchMetadata, BatchMetadataRequest, BatchRead, BatchReadRequest,
    BatchWritten, Deletion, ListPage, MAX_BATCH_METADATA_RESULTS, SecretSummary, SecretView,
    VersionHistory, WriteOptions, WriteOutcome, WriteRequest,
};
pub use subscriptions::{
    AckRequest, Acknowledged, DeliveryRequest, PollQuery, PollResult, SubscriptionDeliveryView,
    SubscriptionList, SubscriptionRequest, SubscriptionView,
};
pub use tokens::{
    ActiveToken, CreateToken, Introspection, IssuedToken, TokenGrant, TokenList, TokenRevoked,
    TokenView, Whoami,
};
pub use webhook_records::{
    DELIVERY_ATTEMPTS, DeliveryPage, DeliveryStatus, DeliveryView, LastDelivery, WebhookDetail,
    WebhookFilters, WebhookList, WebhookStatistics, WebhookTested, WebhookView,
};
pub use webhooks::WebhookRequest;

use scaivault_core::policy::CompiledPolicy;
use scaivault_store::{StoreError, Table, Vault};

/// What the path index knows of a secret without decrypting it.
#[derive(Debug)]
pub(crate) struct PathEntry {
    deleted: bool,
    /// Microseconds; kept in memory and written with the secret's next change or flush, so
    /// reads do not each cost a durable write.
    last_accessed: AtomicI64,
}

pub struct Engine {
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    paths: Arc<RwLock<BTreeMap<String, PathEntry>>>,
    policies: Arc<RwLock<Arc<Vec<CompiledPolicy>>>>,
    identities: Arc<RwLock<identities::IdentityIndex>>,
    tokens: Arc<RwLock<HashMap<[u8; 32], TokenRecord>>>,
    heads: Arc<HeadCache>,
    rotation: Arc<RwLock<rotation_state::RotationState>>,
    plugins: Arc<scaivault_plugin_host::PluginHost>,
    plugin_dir: std::path::PathBuf,
    /// Hosts rotation backends and webhooks may reach (`host` or `host:port`).
    allow_hosts: Arc<Vec<String>>,
    events: outbox::EventSink,
    /// For webhook deliveries: no redirects (the allow-list applies to the URL given).
    http: reqwest::Client,
    /// Held by every change to a configuration record (policy and its bindings, identity,
    /// webhook, rotation or secret policy, plugin). Such a change reads the record, edits it
    /// and writes it back whole, and checks names against the others: two at once would lose
    /// one edit or both take the same name (or leave the plugin host running one version of
    /// a plugin while the file pins another). Admin changes are rare; queueing them costs
    /// nothing, and secret writes and reads never take it.
    config: tokio::sync::Mutex<()>,
    /// Held per secret while its rotation job is created or driven: the scheduler and `rotate`
    /// on the same secret would otherwise both create a job (two pending values), both call
    /// the backend and race to finish, the loser marking a completed rotation failed. Other
    /// secrets rotate meanwhile.
    rotation_locks: path_locks::PathLocks,
    /// Webhooks with deliveries being sent (see `webhooks`): each is served by one task at a
    /// time, so its deliveries arrive in order.
    delivering: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Long-polls of subscriptions held open, per owner (bounded: each holds a connection).
    poll_slots: subscriptions::PollSlots,
    /// Set at shutdown: long-polls answer with what they have.
    polls_ending: std::sync::atomic::AtomicBool,
    /// Rotations finished since the vault was opened, by outcome: `[completed, failed]`
    /// (the `scaivault_secret_rotations_total{status}` metric).
    rotations: [std::sync::atomic::AtomicU64; 2],
}

/// Decrypted secret heads (metadata, never values) of recently read secrets, so a read
/// decrypts one record instead of two. Bounded; emptied when full.
///
/// Readers insert only if no head changed since they took their snapshot (`seq`), so a
/// reader racing a write can never cache the head that write replaced.
#[derive(Default)]
pub(crate) struct HeadCache {
    seq: std::sync::atomic::AtomicU64,
    map: RwLock<HashMap<String, Arc<SecretHead>>>,
}

impl HeadCache {
    const CAPACITY: usize = 16_384;

    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn get(&self, path: &str) -> Option<Arc<SecretHead>> {
        read(&self.map).get(path).cloned()
    }

    pub(crate) fn insert_if_unchanged(&self, seq: u64, path: &str, head: Arc<SecretHead>) {
        let mut map = write(&self.map);
        if self.seq() != seq {
            return;
        }
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(path.to_owned(), head);
    }

    /// Forgets every head (another node changed secrets): readers that took their snapshot
    /// before this do not cache what they read.
    pub(crate) fn clear(&self) {
        let mut map = write(&self.map);
        self.seq.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        map.clear();
    }

    /// Called after a durable commit that changed `path`'s head.
    pub(crate) fn invalidate(&self, path: &str) {
        let mut map = write(&self.map);
        self.seq.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        map.remove(path);
    }
}

/// Limits that are part of the API contract.
pub mod limits {
    /// Serialized `data` of one version.
    pub const MAX_DATA_BYTES: usize = 64 * 1024;
    /// Serialized `metadata` of a secret.
    pub const MAX_METADATA_BYTES: usize = 16 * 1024;
    pub const DEFAULT_MAX_VERSIONS: u32 = 10;
    pub const MAX_MAX_VERSIONS: u32 = 1000;
    pub const MAX_LIST_LIMIT: usize = 1000;
    pub const DEFAULT_LIST_LIMIT: usize = 100;
    pub const MAX_BATCH_PATHS: usize = 100;
    /// How long a soft-deleted secret stays restorable.
    pub const SOFT_DELETE_RETENTION_SECS: u64 = 30 * 86_400;
}

pub(crate) fn store_err(e: StoreError) -> Error {
    Error::from(e)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(table: Table, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|_| {
        Error::new(
            ErrorCode::IntegrityError,
            format!("a record in table '{}' does not decode", table.name()),
        )
    })
}

/// Decodes every record of `table`; the first record that fails ends the load with its error
/// (a vault that cannot load its indexes must not start half-blind).
pub(crate) fn load_all<T>(
    vault: &Vault,
    table: Table,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut failure = None;
    vault
        .scan(table, &mut |plain| match decode(plain.as_bytes()) {
            Ok(v) => {
                out.push(v);
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        })
        .map_err(store_err)?;
    failure.map_or(Ok(out), Err)
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// The compact binary form of the hot records (paths, secret heads, versions).
pub(crate) fn pack<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialize")
}

pub(crate) fn unpack<T: serde::de::DeserializeOwned>(table: Table, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|_| {
        Error::new(
            ErrorCode::IntegrityError,
            format!("a record in table '{}' does not decode", table.name()),
        )
    })
}

impl Engine {
    /// Loads the in-memory indexes from an unsealed vault, with the default plugin settings.
    pub fn load(vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Result<Engine> {
        Self::load_with(vault, clock, PluginSettings::default())
    }

    /// Loads the in-memory indexes and the plugin catalogue from an unsealed vault.
    pub fn load_with(
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        settings: PluginSettings,
    ) -> Result<Engine> {
        let plugins = Arc::new(scaivault_plugin_host::PluginHost::new(
            settings.allow.clone(),
        )?);
        let plugin_dir = plugins::plugin_dir(&vault, &settings);
        // The outbox checks subscription owners against the same policies and identities.
        let readers = outbox::Readers {
            policies: Arc::default(),
            identities: Arc::default(),
        };
        let engine = Engine {
            vault,
            clock,
            paths: Arc::default(),
            policies: readers.policies.clone(),
            identities: readers.identities.clone(),
            tokens: Arc::default(),
            heads: Arc::default(),
            rotation: Arc::default(),
            plugins,
            plugin_dir,
            allow_hosts: Arc::new(settings.allow_hosts.clone()),
            events: outbox::EventSink {
                state: Arc::default(),
                seq: Arc::default(),
                notify: Arc::default(),
                polled: Arc::default(),
                readers,
                not_queued: Arc::default(),
            },
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::internal(format!("HTTP client: {e}")))?,
            config: tokio::sync::Mutex::new(()),
            rotation_locks: Default::default(),
            delivering: Default::default(),
            poll_slots: Default::default(),
            polls_ending: Default::default(),
            rotations: Default::default(),
        };
        let memory = engine.memory();
        memory.reload_all(&engine.vault)?;
        engine
            .vault
            .set_follower(memory.follower(Arc::downgrade(&engine.vault)));
        engine.check_audit_tail()?;
        Ok(engine)
    }

    /// The in-memory indexes, as a handle that reloads them.
    pub(crate) fn memory(&self) -> memory::Memory {
        memory::Memory {
            paths: self.paths.clone(),
            heads: self.heads.clone(),
            policies: self.policies.clone(),
            identities: self.identities.clone(),
            tokens: self.tokens.clone(),
            rotation: self.rotation.clone(),
            events: self.events.clone(),
            plugins: self.plugins.clone(),
            plugin_dir: self.plugin_dir.clone(),
        }
    }

    /// Brings the in-memory indexes up to other nodes' commits (a vault on a database several
    /// nodes share; nothing on a file). Every authenticated request starts with it.
    pub fn follow(&self) -> Result<()> {
        self.vault.follow().map_err(store_err)
    }

    /// Whether this node runs the once-per-vault work — rotation schedule, expiry passes,
    /// purges, webhook deliveries (always, on a file).
    pub fn leads(&self) -> bool {
        self.vault.leads()
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Waits for its turn to change configuration records (see `Engine::config`).
    pub(crate) async fn config_change(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.config.lock().await
    }

    /// Waits for the turn to create or drive the rotation job of `path` (see
    /// `Engine::rotation_locks`).
    pub(crate) async fn rotation_turn(&self, path: &str) -> path_locks::PathGuard<'_> {
        self.rotation_locks.lock(path).await
    }

    pub fn now(&self) -> scaivault_core::time::Timestamp {
        self.clock.now()
    }

    /// Number of live (not deleted) secrets, for metrics.
    pub fn secrets_total(&self) -> usize {
        read(&self.paths).values().filter(|e| !e.deleted).count()
    }
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
