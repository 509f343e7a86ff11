//! Secrets: versioned writes, reads, listing, metadata, soft and hard delete, restore, batch.
//!
//! Decisions where the spec is silent (documented in the README):
//! - an expired secret (`expires_at` passed) answers reads with 410 `secret_expired`; its
//!   metadata stays readable and writing a new version revives it;
//! - default `max_versions` is 10; the oldest versions are pruned beyond it;
//! - soft-deleted secrets stay restorable for 30 days; writing to one answers `secret_exists`;
//! - `cas` is the version the writer expects to be current (`0`: the secret must not exist).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use scaivault_core::duration::parse_duration;
use scaivault_core::path::{SecretPath, validate_prefix};
use scaivault_core::scope::{Permission, Scope};
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use std::sync::Arc;

use scaivault_store::{ReadView, Table, WriteTx};

use crate::events::Event;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::records::{PathRecord, SecretData, SecretHead, VersionInfo, VersionRecord};
use crate::{
    Caller, Engine, HeadCache, PathEntry, cursor, limits, pack, read, store_err, unpack, write,
};

#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
}

impl WriteOptions {
    fn is_empty(&self) -> bool {
        self.max_versions.is_none()
            && self.expires_in.is_none()
            && self.rotation_policy_id.is_none()
            && self.cas.is_none()
    }
}

/// The body of `PUT /v1/secrets/{path}` (and of each write of a batch). Clients build it too:
/// it serialises to exactly what the server parses.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    pub data: SecretData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "WriteOptions::is_empty")]
    pub options: WriteOptions,
    /// Accepted at the top level too, for clients that send it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WriteOutcome {
    pub path: String,
    pub version: u64,
    pub secret_type: String,
    pub created: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// One secret of a batch read.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchItem {
    pub data: SecretData,
    pub version: u64,
    pub secret_type: String,
    /// With `options.include_metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// Why one path of a batch has no answer.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchError {
    pub code: String,
    pub message: String,
}

impl From<&Error> for BatchError {
    fn from(e: &Error) -> Self {
        BatchError {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
        }
    }
}

/// `POST /v1/secrets/batch`: each path's secret, or why there is none.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchRead {
    pub secrets: BTreeMap<String, BatchItem>,
    pub errors: BTreeMap<String, BatchError>,
}

/// `POST /v1/secrets/batch/metadata`: what describes each path (or each secret a pattern
/// matched), or why there is nothing.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchMetadata {
    pub secrets: BTreeMap<String, SecretSummary>,
    pub errors: BTreeMap<String, BatchError>,
}

/// Secrets one batch write may hold: one request holds the writer for a fraction of a second
/// (the request body limit bounds it too). The CLI's import sends larger imports in batches.
pub const MAX_BATCH_WRITES: usize = 1000;

/// A secret as read: the value and what describes it.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretView {
    pub path: String,
    pub secret_type: String,
    pub version: u64,
    pub data: SecretData,
    pub metadata: Map<String, Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version_created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_accessed_at: Option<Timestamp>,
    pub rotation_policy_id: Option<String>,
    pub secret_policy_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretSummary {
    pub path: String,
    pub secret_type: String,
    pub version: u64,
    pub version_count: usize,
    pub metadata: Map<String, Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_accessed_at: Option<Timestamp>,
    pub rotation_policy_id: Option<String>,
    pub deleted: bool,
    /// When a soft-deleted secret was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recoverable_until: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<VersionInfo>>,
}

/// A secret's version history (`GET /v1/versions/{path}`).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionHistory {
    pub path: String,
    pub current_version: u64,
    pub versions: Vec<VersionInfo>,
}

/// What a delete did (`DELETE /v1/secrets/{path}`).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Deletion {
    pub path: String,
    pub deleted: bool,
    pub permanent: bool,
    pub version_count: usize,
    /// Until when `restore` brings it back (a soft delete only).
    pub recoverable_until: Option<Timestamp>,
}

/// What a batch write wrote, in the order given (`POST /v1/secrets/batch/write`).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchWritten {
    pub written: Vec<WriteOutcome>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListPage {
    pub secrets: Vec<SecretSummary>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchReadRequest {
    pub paths: Vec<String>,
    #[serde(default)]
    pub options: BatchOptions,
}

/// `POST /v1/secrets/batch/metadata`: what describes many secrets, never their values.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchMetadataRequest {
    /// At most 100 paths; with `expand_wildcards`, also patterns (`*`, `?`, `**`) that the
    /// server expands to the secrets the caller may list.
    pub paths: Vec<String>,
    #[serde(default)]
    pub expand_wildcards: bool,
}

/// Secrets one batch-metadata call may return in all, patterns expanded.
pub const MAX_BATCH_METADATA_RESULTS: usize = limits::MAX_LIST_LIMIT;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOptions {
    #[serde(default)]
    pub include_metadata: bool,
    #[serde(default)]
    pub fail_fast: bool,
    #[serde(default)]
    pub version: Option<u64>,
}

pub(crate) type PathIndex = Arc<std::sync::RwLock<std::collections::BTreeMap<String, PathEntry>>>;

/// Records a path in the listing index (new, deleted or restored); the in-memory index
/// follows once the batch is durable.
pub(crate) fn set_path_state(
    tx: &mut WriteTx<'_, '_>,
    paths: &PathIndex,
    path: &str,
    deleted: bool,
) {
    tx.put(
        Table::Paths,
        path.as_bytes(),
        &pack(&PathRecord {
            path: path.to_owned(),
            deleted,
        }),
    );
    let (paths, key) = (paths.clone(), path.to_owned());
    tx.on_commit(move || {
        write(&paths)
            .entry(key)
            .and_modify(|e| e.deleted = deleted)
            .or_insert_with(|| PathEntry {
                deleted,
                last_accessed: AtomicI64::new(0),
            });
    });
}

/// The type a write that names none is checked and stored as: the secret's own, except
/// that a new secret, or a `kv` one, is `kv` only while every field is a string and `json`
/// otherwise. The reference calls the type a hint: a write without one accepts any JSON
/// object, and a typed secret (a certificate, say) keeps being checked as what it is.
pub(crate) fn implied_type(stored: Option<&str>, data: &SecretData) -> String {
    match stored {
        Some(t) if t != "kv" => t.to_owned(),
        _ if data.all_strings() => "kv".into(),
        _ => "json".into(),
    }
}

/// The head of `path` as this write job sees it.
///
/// A head that is missing while the path index lists the path, or that fails to
/// authenticate, is damage, not absence: it answers `integrity_error` naming the path, so a
/// write can never start a new history over a damaged one.
pub(crate) fn head_in(tx: &WriteTx<'_, '_>, path: &str) -> Result<Option<SecretHead>> {
    match tx
        .get(Table::Secrets, path.as_bytes())
        .map_err(|e| store_err(e).with("path", path))?
    {
        Some(b) => unpack(Table::Secrets, b.as_bytes())
            .map(Some)
            .map_err(|e| e.with("path", path)),
        None => match tx.get(Table::Paths, path.as_bytes()).map_err(store_err)? {
            Some(_) => Err(damaged(path)),
            None => Ok(None),
        },
    }
}

/// The error for a secret whose record is damaged or missing although it is listed.
pub(crate) fn damaged(path: &str) -> Error {
    Error::new(
        ErrorCode::IntegrityError,
        format!(
            "the record of {path} is missing or failed to authenticate although the vault lists it; nothing was changed. Run `scaivault operator verify`, and restore the vault from a backup"
        ),
    )
    .with("path", path)
}

/// Writes a head and drops any cached copy once the batch is durable.
pub(crate) fn put_head(tx: &mut WriteTx<'_, '_>, heads: &Arc<HeadCache>, head: &SecretHead) {
    tx.put(Table::Secrets, head.path.as_bytes(), &pack(head));
    let (c, key) = (heads.clone(), head.path.clone());
    tx.on_commit(move || c.invalidate(&key));
}

/// A write that passed validation and authorization.
struct PreparedWrite {
    path: String,
    req: WriteRequest,
    secret_type: Option<String>,
    /// The type whose plugin accepted the data. Without `secret_type` that is the stored
    /// type at validation time, which a concurrent write may have changed since.
    validated_type: String,
    expires_at: Option<Timestamp>,
    cas: Option<u64>,
    now: Timestamp,
    actor: String,
    /// The request the write serves, for its event.
    request_id: Option<String>,
    accessed: Option<Timestamp>,
    /// Present when the write asks to attach a rotation policy and the caller may.
    attach: Option<crate::rotation_state::AttachGrant>,
    paths: PathIndex,
    heads: Arc<HeadCache>,
    rotation: Arc<std::sync::RwLock<crate::rotation_state::RotationState>>,
}

/// The `data` of `secret.created` / `secret.updated`.
fn secret_written_event(
    out: &WriteOutcome,
    actor: &str,
    tags: Option<&Value>,
    is_rotation: bool,
    now: Timestamp,
) -> Event {
    let data = if out.created {
        json!({ "version": out.version, "secret_type": out.secret_type, "created_by": actor,
                "tags": tags.cloned().unwrap_or(json!([])), "expires_at": out.expires_at })
    } else {
        json!({ "old_version": out.version.saturating_sub(1), "new_version": out.version,
                "updated_by": actor, "is_rotation": is_rotation, "secret_type": out.secret_type,
                "tags": tags.cloned().unwrap_or(json!([])) })
    };
    let t = if out.created {
        "secret.created"
    } else {
        "secret.updated"
    };
    Event::new(t, actor, Some(&out.path), data, now)
}

/// [`apply_write`], and the `secret.created` / `secret.updated` event queued in the same
/// transaction for the webhooks that want it.
fn apply_and_announce(
    tx: &mut WriteTx<'_, '_>,
    w: PreparedWrite,
    sink: &crate::outbox::EventSink,
    is_rotation: bool,
) -> Result<WriteOutcome> {
    let (actor, now, request_id) = (w.actor.clone(), w.now, w.request_id.clone());
    let tags = w.req.metadata.as_ref().and_then(|m| m.get("tags")).cloned();
    let rotation = w.rotation.clone();
    let (out, rotated) = apply_write(tx, w)?;
    // A client's write to an attached secret is its rotation: `secret.rotated` too, to the
    // policy's webhooks as the scheduler's would go. (The scheduler raises its own.)
    let manual = rotated.filter(|_| !is_rotation);
    let written = secret_written_event(
        &out,
        &actor,
        tags.as_ref(),
        is_rotation || manual.is_some(),
        now,
    )
    .in_request(request_id.as_deref());
    sink.enqueue_in(tx, vec![written], &[], now);
    if let Some(r) = manual {
        let state = read(&rotation);
        let policy = state.policies.get(&r.policy_id);
        let hooks = policy.map(|p| p.webhook_ids.clone()).unwrap_or_default();
        let data = json!({
            "old_version": r.old_version, "new_version": out.version,
            "rotation_policy_id": r.policy_id,
            "rotation_policy_name": policy.map(|p| p.name.clone()),
            "grace_period_ends": r.grace_until, "auto_generated": false,
        });
        let event = Event::new("secret.rotated", &actor, Some(&out.path), data, now)
            .in_request(request_id.as_deref());
        drop(state);
        sink.enqueue_in(tx, vec![event], &hooks, now);
    }
    Ok(out)
}

/// The in-memory state a destroyed secret leaves behind.
pub(crate) struct Indexes {
    pub(crate) paths: PathIndex,
    pub(crate) heads: Arc<HeadCache>,
    pub(crate) rotation: Arc<std::sync::RwLock<crate::rotation_state::RotationState>>,
}

/// Removes every trace of a secret inside a write job: its versions, its head, its listing
/// entry and its expiry-notice record (the in-memory indexes follow once the batch is durable).
fn destroy_in(tx: &mut WriteTx<'_, '_>, head: &SecretHead, ix: &Indexes) {
    let p = head.path.as_str();
    for v in &head.versions {
        tx.delete(Table::Versions, &version_key(p, v.version));
    }
    forget_in(tx, p, ix);
}

/// Removes a secret's head, listing entry and expiry-notice record, and (once the batch is
/// durable) its cached head, index entry and expiry state: what destroying it and repairing a
/// damaged one share. Its versions are the caller's to remove.
pub(crate) fn forget_in(tx: &mut WriteTx<'_, '_>, p: &str, ix: &Indexes) {
    tx.delete(Table::Secrets, p.as_bytes());
    tx.delete(Table::Paths, p.as_bytes());
    tx.delete(Table::Rotation, &crate::expiry::expiry_key(p));
    let (heads, paths, rotation, key) = (
        ix.heads.clone(),
        ix.paths.clone(),
        ix.rotation.clone(),
        p.to_owned(),
    );
    tx.on_commit(move || {
        heads.invalidate(&key);
        write(&paths).remove(&key);
        write(&rotation).expiry.remove(&key);
    });
}

/// What a write to a secret attached to a rotation policy did: it counts as the secret's
/// rotation (README, "Decisions").
struct Rotated {
    policy_id: String,
    old_version: u64,
    grace_until: Option<Timestamp>,
}

/// The writer-thread half of a write: check-and-set, versioning, pruning, index updates.
fn apply_write(
    tx: &mut WriteTx<'_, '_>,
    w: PreparedWrite,
) -> Result<(WriteOutcome, Option<Rotated>)> {
    let PreparedWrite {
        path,
        req,
        secret_type,
        validated_type,
        expires_at,
        cas,
        now,
        actor,
        request_id: _,
        accessed,
        attach,
        paths,
        heads,
        rotation,
    } = w;

    let mut existing = head_in(tx, &path)?;
    // A soft delete past its retention is purged by the write that reuses the path.
    if let Some(h) = &existing
        && let Some(until) = h.recoverable_until.filter(|_| h.deleted_at.is_some())
    {
        if until > now {
            return Err(Error::new(
                ErrorCode::SecretExists,
                format!(
                    "{path} is soft-deleted; restore it or delete it permanently before writing"
                ),
            )
            .with("path", path.as_str())
            .with("recoverable_until", until.to_rfc3339()));
        }
        for v in &h.versions {
            tx.delete(Table::Versions, &version_key(&path, v.version));
        }
        existing = None;
    }
    let implied = implied_type(existing.as_ref().map(|h| h.secret_type.as_str()), &req.data);
    if secret_type.is_none() && implied != validated_type {
        return Err(Error::new(
            ErrorCode::VersionConflict,
            format!(
                "{path} became a {implied} secret while this write was checked as {validated_type}; send it again"
            ),
        )
        .with("path", path.as_str())
        .with("secret_type", implied.as_str()));
    }
    let current = existing.as_ref().map_or(0, |h| h.current_version);
    if let Some(expected) = cas
        && expected != current
    {
        return Err(Error::new(
            ErrorCode::VersionConflict,
            format!("check-and-set failed: expected version {expected}, current is {current}"),
        )
        .with("path", path.as_str())
        .with("expected_version", expected)
        .with("current_version", current));
    }
    let created = existing.is_none();
    let mut head = existing.unwrap_or_else(|| SecretHead::new(&path, now));
    let version = head
        .versions
        .last()
        .map_or(0, |v| v.version)
        .max(head.current_version)
        + 1;
    // Without a type, the one it was checked as: a `kv` secret given nested data becomes
    // `json` (see `implied_type`).
    head.secret_type = secret_type.unwrap_or(validated_type);
    if let Some(m) = req.metadata {
        head.metadata = m;
    }
    if let Some(n) = req.options.max_versions {
        head.max_versions = n;
    }
    if let Some(pid) = req.options.rotation_policy_id {
        let grant = attach.as_ref().ok_or_else(|| {
            Error::internal("a write attached a rotation policy without the caller's grant")
        })?;
        crate::rotation_state::attach_in(tx, grant, &rotation, &mut head, &pid, &path, now)?;
    }
    let grace = head
        .rotation_policy_id
        .as_ref()
        .and_then(|id| read(&rotation).grace_for(id));
    let replaced = head.current_version;
    crate::rotation_state::on_write(&mut head, grace, replaced, now);
    head.expires_at = expires_at;
    head.current_version = version;
    head.updated_at = now;
    head.last_accessed_at = accessed.or(head.last_accessed_at);
    head.versions.push(VersionInfo {
        version,
        created_at: now,
        created_by: actor,
    });
    while head.versions.len() > head.max_versions as usize {
        let old = head.versions.remove(0);
        tx.delete(Table::Versions, &version_key(&path, old.version));
    }
    tx.put(
        Table::Versions,
        &version_key(&path, version),
        &pack(&VersionRecord { data: req.data }),
    );
    put_head(tx, &heads, &head);
    if created {
        set_path_state(tx, &paths, &path, false);
    }
    let rotated = match &head.rotation_policy_id {
        Some(policy_id) if replaced > 0 => Some(Rotated {
            policy_id: policy_id.clone(),
            old_version: replaced,
            grace_until: head.grace_until,
        }),
        _ => None,
    };
    Ok((
        WriteOutcome {
            path,
            version,
            secret_type: head.secret_type,
            created,
            created_at: head.created_at,
            updated_at: now,
            expires_at: head.expires_at,
        },
        rotated,
    ))
}

fn not_found(path: &str) -> Error {
    Error::new(ErrorCode::SecretNotFound, format!("no secret at {path}")).with("path", path)
}

pub(crate) fn version_key(path: &str, version: u64) -> Vec<u8> {
    let mut k = path.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn validation(field: &str, problem: impl Into<String>) -> Error {
    let problem = problem.into();
    Error::new(ErrorCode::ValidationError, format!("{field}: {problem}"))
        .with("fields", json!({ field: problem }))
}

/// Checks the shape every type shares; what each type needs on top is its plugin's
/// `validate`, run by [`Engine::validate_types`].
fn check_data(data: &SecretData) -> Result<()> {
    let text = data.as_json_text();
    if text.len() > limits::MAX_DATA_BYTES {
        return Err(Error::new(
            ErrorCode::ValidationError,
            format!(
                "data is {} bytes; the limit is {} bytes",
                text.len(),
                limits::MAX_DATA_BYTES
            ),
        )
        .with("fields", json!({ "data": "too large" }))
        .with("limit", limits::MAX_DATA_BYTES));
    }
    // The raw value was not parsed when the request was read; serde_json's recursion limit
    // (128 levels) applies here.
    let value: Value = serde_json::from_str(text).map_err(|_| {
        Error::invalid_request("data is not valid JSON or is nested more than 128 levels deep")
    })?;
    let Value::Object(map) = &value else {
        return Err(validation("data", "must be a JSON object"));
    };
    if map.is_empty() {
        return Err(validation("data", "must have at least one field"));
    }
    Ok(())
}

fn check_metadata(meta: &Map<String, Value>) -> Result<()> {
    let size = serde_json::to_vec(meta)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limits::MAX_METADATA_BYTES {
        return Err(validation(
            "metadata",
            format!("larger than {} bytes", limits::MAX_METADATA_BYTES),
        ));
    }
    if let Some(tags) = meta.get("tags") {
        let ok = tags.as_array().is_some_and(|a| {
            a.iter()
                .all(|t| t.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 128))
        });
        if !ok {
            return Err(validation(
                "metadata.tags",
                "must be an array of non-empty strings of at most 128 characters",
            ));
        }
    }
    for key in ["description", "owner"] {
        if meta.get(key).is_some_and(|v| !v.is_string()) {
            return Err(validation(&format!("metadata.{key}"), "must be a string"));
        }
    }
    if let Some(v) = meta.get("notify_before") {
        crate::expiry::check_notify_before(v)
            .map_err(|why| validation("metadata.notify_before", why))?;
    }
    Ok(())
}

impl Engine {
    pub(crate) fn load_head(&self, path: &str) -> Result<Option<SecretHead>> {
        // A head that does not open names its path, so a list or write it stops says which.
        match self
            .vault
            .get(Table::Secrets, path.as_bytes())
            .map_err(|e| store_err(e).with("path", path))?
        {
            Some(p) => unpack(Table::Secrets, p.as_bytes())
                .map(Some)
                .map_err(|e| e.with("path", path)),
            None => Ok(None),
        }
    }

    /// Validates a path and authorizes one operation on it: every secret use case starts so.
    pub(crate) fn authorize_path(
        &self,
        caller: &Caller,
        path: &str,
        scope: Scope,
        permission: Permission,
    ) -> Result<SecretPath> {
        let path = SecretPath::parse(path)?;
        self.authorize(caller, scope, Some((path.as_str(), permission)))?;
        Ok(path)
    }

    /// The head of a live (not soft-deleted) secret: from the cache, or from `view` (and then
    /// cached, unless a head changed while it was being read).
    fn live_head(&self, view: &ReadView<'_>, path: &str) -> Result<Arc<SecretHead>> {
        let head = match self.heads.get(path) {
            Some(h) => h,
            None => {
                let seq = self.heads.seq();
                let head: Arc<SecretHead> = match view
                    .get(Table::Secrets, path.as_bytes())
                    .map_err(|e| store_err(e).with("path", path))?
                {
                    Some(p) => Arc::new(
                        unpack(Table::Secrets, p.as_bytes()).map_err(|e| e.with("path", path))?,
                    ),
                    // Listed in the same snapshot but without a head: damage, not absence.
                    None if view
                        .get(Table::Paths, path.as_bytes())
                        .map_err(store_err)?
                        .is_some() =>
                    {
                        return Err(damaged(path));
                    }
                    None => return Err(not_found(path)),
                };
                self.heads.insert_if_unchanged(seq, path, head.clone());
                head
            }
        };
        if head.deleted_at.is_some() {
            return Err(not_found(path)
                .with("deleted", true)
                .with("hint", "the secret is soft-deleted; restore it to read it"));
        }
        Ok(head)
    }

    fn touch(&self, path: &str, now: Timestamp) {
        if let Some(e) = read(&self.paths).get(path) {
            e.last_accessed.store(now.0, Ordering::Relaxed);
        }
    }

    fn last_accessed(&self, head: &SecretHead) -> Option<Timestamp> {
        let mem = read(&self.paths)
            .get(&head.path)
            .map(|e| e.last_accessed.load(Ordering::Relaxed))
            .unwrap_or(0);
        match (mem, head.last_accessed_at) {
            (0, stored) => stored,
            (m, Some(s)) if s.0 > m => Some(s),
            (m, _) => Some(Timestamp(m)),
        }
    }

    pub fn read_secret(
        &self,
        caller: &Caller,
        path: &str,
        version: Option<u64>,
    ) -> Result<SecretView> {
        let path = self.authorize_path(caller, path, Scope::SecretsRead, Permission::Read)?;
        self.read_authorized(path.as_str(), version)
    }

    fn read_authorized(&self, path: &str, version: Option<u64>) -> Result<SecretView> {
        // Head and version from one snapshot, so a concurrent write cannot pair them wrongly.
        let view = self.vault.read_view().map_err(store_err)?;
        let head = self.live_head(&view, path)?;
        let now = self.now();
        if let Some(exp) = head.expires_at.filter(|e| *e <= now) {
            return Err(Error::new(
                ErrorCode::SecretExpired,
                format!("the secret at {path} expired"),
            )
            .with("path", path)
            .with("expires_at", exp.to_rfc3339()));
        }
        let v = version.unwrap_or(head.current_version);
        let info = head
            .versions
            .iter()
            .find(|i| i.version == v)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::VersionNotFound,
                    format!("version {v} of {path} does not exist or was pruned"),
                )
                .with("path", path)
                .with("version", v)
            })?;
        if !crate::rotation_state::readable(&head, v, now) {
            return Err(Error::new(
                ErrorCode::VersionNotFound,
                format!(
                    "version {v} of {path} is no longer readable: a secret under rotation keeps only its current version and, until its grace period ends, the one the last rotation replaced"
                ),
            )
            .with("path", path)
            .with("version", v));
        }
        // A cached head may name a version that a write pruned a moment ago; a head of this
        // very snapshot that names a missing version is damage.
        let plain = match view
            .get(Table::Versions, &version_key(path, v))
            .map_err(|e| store_err(e).with("path", path).with("version", v))?
        {
            Some(p) => p,
            None => {
                let listed = match view.get(Table::Secrets, path.as_bytes()) {
                    Ok(Some(h)) => unpack::<SecretHead>(Table::Secrets, h.as_bytes())
                        .map(|h| h.versions.iter().any(|i| i.version == v))
                        .unwrap_or(true),
                    _ => true,
                };
                return Err(if listed {
                    damaged(path).with("version", v)
                } else {
                    Error::new(
                        ErrorCode::VersionNotFound,
                        format!("version {v} of {path} does not exist or was pruned"),
                    )
                    .with("path", path)
                    .with("version", v)
                });
            }
        };
        let record: VersionRecord = unpack(Table::Versions, plain.as_bytes())?;
        self.touch(path, now);
        Ok(SecretView {
            path: path.to_owned(),
            secret_type: head.secret_type.clone(),
            version: v,
            data: record.data,
            metadata: head.metadata.clone(),
            created_at: head.created_at,
            updated_at: head.updated_at,
            version_created_at: info.created_at,
            expires_at: head.expires_at,
            last_accessed_at: Some(now),
            rotation_policy_id: head.rotation_policy_id.clone(),
            secret_policy_id: head.secret_policy_id.clone(),
        })
    }

    /// Validates and authorizes a write outside the writer thread; what is left is the
    /// read-modify-write against the current head, done in the commit pipeline.
    fn prepare_write(
        &self,
        caller: &Caller,
        path: &str,
        req: WriteRequest,
    ) -> Result<PreparedWrite> {
        let path = self.authorize_path(caller, path, Scope::SecretsWrite, Permission::Write)?;
        let secret_type = req.secret_type.clone();
        if let Some(t) = &secret_type
            && !self.plugins.has_secret_type(t)
        {
            return Err(Error::new(
                ErrorCode::InvalidSecretType,
                format!("unknown secret_type {t:?}"),
            )
            .with("allowed", self.plugins.secret_types()));
        }
        check_data(&req.data)?;
        if let Some(m) = &req.metadata {
            check_metadata(m)?;
        }
        let expires_at = match &req.options.expires_in {
            Some(d) => Some(self.now().plus(parse_duration(d)?)),
            None => None,
        };
        if let Some(n) = req.options.max_versions
            && (n == 0 || n > limits::MAX_MAX_VERSIONS)
        {
            return Err(validation(
                "options.max_versions",
                format!("must be between 1 and {}", limits::MAX_MAX_VERSIONS),
            ));
        }
        let cas = req.options.cas.or(req.cas);
        // `options.rotation_policy_id` acts on the rotation policy, so it needs that
        // resource's own permission, not just write access to the secret.
        let attach = match &req.options.rotation_policy_id {
            Some(_) => Some(self.may_attach_rotation(caller)?),
            None => None,
        };
        let path = path.as_str().to_owned();
        Ok(PreparedWrite {
            attach,
            accessed: self.last_accessed_hint(&path),
            path,
            req,
            secret_type,
            validated_type: String::new(),
            expires_at,
            cas,
            now: self.now(),
            actor: caller.identity_id.to_string(),
            request_id: caller.request_id.clone(),
            paths: self.paths.clone(),
            heads: self.heads.clone(),
            rotation: self.rotation.clone(),
        })
    }

    pub async fn write_secret(
        &self,
        caller: &Caller,
        path: &str,
        req: WriteRequest,
    ) -> Result<WriteOutcome> {
        let mut w = self.prepare_write(caller, path, req)?;
        self.validate_prepared(std::slice::from_mut(&mut w)).await?;
        let sink = self.events.clone();
        self.vault
            .write(move |tx| apply_and_announce(tx, w, &sink, false))
            .await
    }

    /// A request's write whose audit entry commits in the same transaction: the change and
    /// the record of who made it are durable together or not at all (no crash can leave one
    /// without the other), and the request waits for one commit instead of two. `audit` is
    /// called on the writer thread with the outcome, to fill in what only it knows.
    pub async fn write_secret_audited<A>(
        &self,
        caller: &Caller,
        path: &str,
        req: WriteRequest,
        audit: A,
    ) -> Result<WriteOutcome>
    where
        A: FnOnce(&WriteOutcome) -> crate::AuditInput + Send + 'static,
    {
        let clock = self.clock.clone();
        self.write_one(caller, None, path, req, false, move |tx, out| {
            crate::audit::append(tx, audit(out), &*clock).map(drop)
        })
        .await
    }

    /// A write that commits in the same transaction as `extra` (a rotation's finish: the
    /// job's removal and its audit entry), so the two can never be seen apart.
    pub(crate) async fn write_secret_with<F>(
        &self,
        caller: &Caller,
        actor: &str,
        path: &str,
        req: WriteRequest,
        extra: F,
    ) -> Result<WriteOutcome>
    where
        F: FnOnce(&mut WriteTx<'_, '_>, &WriteOutcome) -> Result<()> + Send + 'static,
    {
        self.write_one(caller, Some(actor), path, req, true, extra)
            .await
    }

    /// One write and what commits with it. `actor`, when given, names the version's author
    /// and the event's actor instead of the caller (a rotation's finish names who started it).
    async fn write_one<F>(
        &self,
        caller: &Caller,
        actor: Option<&str>,
        path: &str,
        req: WriteRequest,
        is_rotation: bool,
        extra: F,
    ) -> Result<WriteOutcome>
    where
        F: FnOnce(&mut WriteTx<'_, '_>, &WriteOutcome) -> Result<()> + Send + 'static,
    {
        let mut w = self.prepare_write(caller, path, req)?;
        if let Some(actor) = actor {
            w.actor = actor.to_owned();
        }
        self.validate_prepared(std::slice::from_mut(&mut w)).await?;
        let sink = self.events.clone();
        self.vault
            .write(move |tx| {
                let out = apply_and_announce(tx, w, &sink, is_rotation)?;
                extra(tx, &out)?;
                Ok(out)
            })
            .await
    }

    /// Writes several secrets in one atomic, durable transaction (bulk imports): all or none.
    pub async fn write_secrets(
        &self,
        caller: &Caller,
        writes: Vec<(String, WriteRequest)>,
    ) -> Result<Vec<WriteOutcome>> {
        self.write_secrets_audited(caller, writes, |_| None).await
    }

    /// [`Engine::write_secrets`] with an audit entry per write (what `audit` makes of its
    /// outcome) committed in the same transaction: the import and the record of who made it
    /// are durable together or not at all.
    pub async fn write_secrets_audited<A>(
        &self,
        caller: &Caller,
        writes: Vec<(String, WriteRequest)>,
        audit: A,
    ) -> Result<Vec<WriteOutcome>>
    where
        A: Fn(&WriteOutcome) -> Option<crate::AuditInput> + Send + 'static,
    {
        if writes.len() > MAX_BATCH_WRITES {
            return Err(Error::new(
                ErrorCode::ValidationError,
                format!("at most {MAX_BATCH_WRITES} secrets can be written at once"),
            )
            .with("max", MAX_BATCH_WRITES));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some((p, _)) = writes.iter().find(|(p, _)| !seen.insert(p.as_str())) {
            return Err(Error::new(
                ErrorCode::ValidationError,
                "a path is written twice in one batch",
            )
            .with("path", p.as_str()));
        }
        let mut prepared = writes
            .into_iter()
            .map(|(p, r)| {
                self.prepare_write(caller, &p, r)
                    .map_err(|e| e.with("path", p.as_str()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.validate_prepared(&mut prepared).await?;
        let sink = self.events.clone();
        let clock = self.clock.clone();
        self.vault
            .write(move |tx| {
                let mut outs = Vec::with_capacity(prepared.len());
                for w in prepared {
                    let out = apply_and_announce(tx, w, &sink, false)?;
                    if let Some(entry) = audit(&out) {
                        crate::audit::append(tx, entry, &*clock)?;
                    }
                    outs.push(out);
                }
                Ok(outs)
            })
            .await
    }

    /// Runs each write's type plugin on its data; a type that implies an expiry (a
    /// certificate's notAfter) sets `expires_at` unless the request gave one.
    async fn validate_prepared(&self, writes: &mut [PreparedWrite]) -> Result<()> {
        let mut items = Vec::with_capacity(writes.len());
        for w in writes.iter_mut() {
            // A soft-deleted head is no type to keep: the write either fails on it or, past
            // its retention, starts the secret afresh as `kv` (see `apply_write`).
            w.validated_type = match &w.secret_type {
                Some(t) => t.clone(),
                None => {
                    let stored = self
                        .load_head(&w.path)?
                        .filter(|h| h.deleted_at.is_none())
                        .map(|h| h.secret_type);
                    implied_type(stored.as_deref(), &w.req.data)
                }
            };
            items.push((w.path.clone(), w.validated_type.clone(), w.req.data.clone()));
        }
        let expiries = self.validate_types(items).await?;
        for (w, exp) in writes.iter_mut().zip(expiries) {
            if w.expires_at.is_none() {
                w.expires_at = exp;
            }
        }
        Ok(())
    }

    fn last_accessed_hint(&self, path: &str) -> Option<Timestamp> {
        let m = read(&self.paths)
            .get(path)
            .map(|e| e.last_accessed.load(Ordering::Relaxed))
            .unwrap_or(0);
        (m != 0).then_some(Timestamp(m))
    }

    pub fn list_secrets(
        &self,
        caller: &Caller,
        prefix: &str,
        limit: Option<usize>,
        cursor_in: Option<&str>,
    ) -> Result<ListPage> {
        self.authorize(caller, Scope::SecretsList, None)?;
        validate_prefix(prefix)?;
        let limit = limit.unwrap_or(limits::DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > limits::MAX_LIST_LIMIT {
            return Err(Error::invalid_request(format!(
                "limit must be between 1 and {}",
                limits::MAX_LIST_LIMIT
            )));
        }
        let after = cursor_in.map(cursor::decode).transpose()?;
        let may_list = self.checker(caller, Permission::List);
        let mut page = Vec::with_capacity(limit);
        let mut has_more = false;
        {
            let paths = read(&self.paths);
            let start = after.as_deref().unwrap_or(prefix);
            let range = paths
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded));
            for (p, entry) in range {
                if !p.starts_with(prefix) {
                    break;
                }
                if after.as_deref() == Some(p.as_str()) || entry.deleted {
                    continue;
                }
                if !may_list(p) {
                    continue;
                }
                if page.len() == limit {
                    has_more = true;
                    break;
                }
                page.push(p.clone());
            }
        }
        let mut secrets = Vec::with_capacity(page.len());
        for p in &page {
            if let Some(head) = self.load_head(p)? {
                secrets.push(self.summary(&head, false));
            }
        }
        let cursor = if has_more {
            page.last().map(|p| cursor::encode(p))
        } else {
            None
        };
        Ok(ListPage {
            secrets,
            cursor,
            has_more,
        })
    }

    fn summary(&self, head: &SecretHead, with_versions: bool) -> SecretSummary {
        SecretSummary {
            path: head.path.clone(),
            secret_type: head.secret_type.clone(),
            version: head.current_version,
            version_count: head.versions.len(),
            metadata: head.metadata.clone(),
            created_at: head.created_at,
            updated_at: head.updated_at,
            expires_at: head.expires_at,
            last_accessed_at: self.last_accessed(head),
            rotation_policy_id: head.rotation_policy_id.clone(),
            deleted: head.deleted_at.is_some(),
            deleted_at: head.deleted_at,
            recoverable_until: head.recoverable_until.filter(|_| head.deleted_at.is_some()),
            versions: with_versions.then(|| head.versions.clone()),
        }
    }

    /// Metadata without the value; needs only `secrets:list` / `list`.
    pub fn secret_metadata(&self, caller: &Caller, path: &str) -> Result<SecretSummary> {
        let path = self.authorize_path(caller, path, Scope::SecretsList, Permission::List)?;
        let head = self
            .load_head(path.as_str())?
            .ok_or_else(|| not_found(path.as_str()))?;
        Ok(self.summary(&head, true))
    }

    pub fn secret_versions(&self, caller: &Caller, path: &str) -> Result<Vec<VersionInfo>> {
        Ok(self
            .secret_metadata(caller, path)?
            .versions
            .unwrap_or_default())
    }

    /// Merges `patch` into the metadata (a `null` value removes a key); no new version.
    pub async fn update_metadata(
        &self,
        caller: &Caller,
        path: &str,
        patch: Map<String, Value>,
    ) -> Result<SecretSummary> {
        let path = self.authorize_path(caller, path, Scope::SecretsWrite, Permission::Write)?;
        let now = self.now();
        let p = path.as_str().to_owned();
        let heads = self.heads.clone();
        let head = self
            .vault
            .write(move |tx| {
                let mut head = head_in(tx, &p)?.ok_or_else(|| not_found(&p))?;
                if head.deleted_at.is_some() {
                    return Err(not_found(&p).with("deleted", true));
                }
                for (k, v) in patch {
                    if v.is_null() {
                        head.metadata.remove(&k);
                    } else {
                        head.metadata.insert(k, v);
                    }
                }
                check_metadata(&head.metadata)?;
                head.updated_at = now;
                put_head(tx, &heads, &head);
                Ok(head)
            })
            .await?;
        Ok(self.summary(&head, false))
    }

    /// Soft delete (restorable for 30 days) or, with `permanent`, destroy every version.
    pub async fn delete_secret(
        &self,
        caller: &Caller,
        path: &str,
        permanent: bool,
    ) -> Result<SecretSummary> {
        let path = self.authorize_path(caller, path, Scope::SecretsDelete, Permission::Delete)?;
        let now = self.now();
        let p = path.as_str().to_owned();
        let ix = self.indexes();
        let (sink, actor) = (self.events.clone(), caller.identity_id.to_string());
        let request_id = caller.request_id.clone();
        let head = self
            .vault
            .write(move |tx| {
                let mut head = head_in(tx, &p)?.ok_or_else(|| not_found(&p))?;
                if permanent {
                    destroy_in(tx, &head, &ix);
                } else {
                    if head.deleted_at.is_some() {
                        return Err(not_found(&p).with("deleted", true));
                    }
                    head.deleted_at = Some(now);
                    head.recoverable_until =
                        Some(now.plus(Duration::from_secs(limits::SOFT_DELETE_RETENTION_SECS)));
                    put_head(tx, &ix.heads, &head);
                    set_path_state(tx, &ix.paths, &p, true);
                }
                // Queued in the same transaction: the delete and its event stand or fall together.
                let mut data = json!({
                    "version_count": head.versions.len(), "deleted_by": actor,
                    "permanent": permanent, "secret_type": head.secret_type,
                });
                if !permanent {
                    data["recoverable_until"] = json!(head.recoverable_until);
                }
                let event = Event::new("secret.deleted", &actor, Some(p.as_str()), data, now)
                    .in_request(request_id.as_deref());
                sink.enqueue_in(tx, vec![event], &[], now);
                Ok(head)
            })
            .await?;
        let mut s = self.summary(&head, false);
        s.deleted = true;
        if permanent {
            s.recoverable_until = None;
        }
        Ok(s)
    }

    pub async fn restore_secret(&self, caller: &Caller, path: &str) -> Result<SecretSummary> {
        // Restoring undoes a delete, so it takes the delete permission.
        let path = self.authorize_path(caller, path, Scope::SecretsDelete, Permission::Delete)?;
        let now = self.now();
        let p = path.as_str().to_owned();
        let paths = self.paths.clone();
        let heads = self.heads.clone();
        let head = self
            .vault
            .write(move |tx| {
                let mut head = head_in(tx, &p)?.ok_or_else(|| not_found(&p))?;
                match head.recoverable_until {
                    _ if head.deleted_at.is_none() => {
                        return Err(Error::invalid_request(format!("{p} is not deleted"))
                            .with("path", p.as_str()));
                    }
                    Some(until) if until <= now => {
                        return Err(not_found(&p).with("reason", "the restore window has passed"));
                    }
                    _ => {}
                }
                head.deleted_at = None;
                head.recoverable_until = None;
                head.updated_at = now;
                put_head(tx, &heads, &head);
                set_path_state(tx, &paths, &p, false);
                Ok(head)
            })
            .await?;
        Ok(self.summary(&head, false))
    }

    pub(crate) fn indexes(&self) -> Indexes {
        Indexes {
            paths: self.paths.clone(),
            heads: self.heads.clone(),
            rotation: self.rotation.clone(),
        }
    }

    /// Destroys the soft-deleted secrets whose restore window has passed — versions, head and
    /// listing entry, as a permanent delete does — each with an audit entry (`purge`, by
    /// `system:scheduler`) in the same transaction. Returns how many. The server runs it
    /// hourly: deleted data does not linger in the file past the window it was promised for.
    pub async fn purge_deleted(&self) -> Result<usize> {
        let now = self.now();
        let deleted: Vec<String> = read(&self.paths)
            .iter()
            .filter(|(_, e)| e.deleted)
            .map(|(p, _)| p.clone())
            .collect();
        let mut purged = 0;
        for chunk in deleted.chunks(256) {
            let chunk = chunk.to_vec();
            let (ix, clock) = (self.indexes(), self.clock.clone());
            purged += self
                .vault
                .write(move |tx| {
                    let mut n = 0;
                    for p in chunk {
                        let Some(head) = head_in(tx, &p)? else {
                            continue;
                        };
                        let due = head.deleted_at.is_some()
                            && head.recoverable_until.is_some_and(|until| until <= now);
                        if !due {
                            continue;
                        }
                        destroy_in(tx, &head, &ix);
                        let mut extra = Map::new();
                        extra.insert("version_count".into(), head.versions.len().into());
                        extra.insert("deleted_at".into(), json!(head.deleted_at));
                        crate::audit::append(
                            tx,
                            crate::AuditInput {
                                action: "purge".into(),
                                identity_id: Some("system:scheduler".into()),
                                secret_path: Some(p),
                                success: true,
                                request_id: format!("purge:{}", now.0),
                                extra_data: extra,
                                ..Default::default()
                            },
                            &*clock,
                        )?;
                        n += 1;
                    }
                    Ok::<_, Error>(n)
                })
                .await?;
        }
        Ok(purged)
    }

    /// Reads up to 100 paths; each is authorized on its own and failures go to `errors`.
    pub fn batch_read(&self, caller: &Caller, req: BatchReadRequest) -> Result<BatchRead> {
        self.authorize(caller, Scope::SecretsRead, None)?;
        if req.paths.is_empty() || req.paths.len() > limits::MAX_BATCH_PATHS {
            return Err(validation(
                "paths",
                format!("must hold 1 to {} paths", limits::MAX_BATCH_PATHS),
            ));
        }
        let mut secrets = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for p in &req.paths {
            let result = SecretPath::parse(p)
                .and_then(|sp| {
                    self.authorize(
                        caller,
                        Scope::SecretsRead,
                        Some((sp.as_str(), Permission::Read)),
                    )
                    .map(|_| sp)
                })
                .and_then(|sp| self.read_authorized(sp.as_str(), req.options.version));
            match result {
                Ok(view) => {
                    let item = BatchItem {
                        data: view.data,
                        version: view.version,
                        secret_type: view.secret_type,
                        metadata: req.options.include_metadata.then_some(view.metadata),
                    };
                    secrets.insert(p.clone(), item);
                }
                Err(e) if req.options.fail_fast => return Err(e.with("failed_path", p.as_str())),
                Err(e) => {
                    errors.insert(p.clone(), BatchError::from(&e));
                }
            }
        }
        Ok(BatchRead { secrets, errors })
    }

    /// Metadata of many secrets: listing rights suffice (`secrets:list` and the `list`
    /// permission on each path), as for `GET /v1/secrets`. Partial success: a path that is
    /// missing, denied or malformed goes to `errors`; a pattern expands to the matching paths
    /// the caller may list (none is not an error), in path order.
    pub fn batch_metadata(
        &self,
        caller: &Caller,
        req: BatchMetadataRequest,
    ) -> Result<BatchMetadata> {
        self.authorize(caller, Scope::SecretsList, None)?;
        if req.paths.is_empty() || req.paths.len() > limits::MAX_BATCH_PATHS {
            return Err(validation(
                "paths",
                format!("must hold 1 to {} paths", limits::MAX_BATCH_PATHS),
            ));
        }
        let may_list = self.checker(caller, Permission::List);
        let mut secrets = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let error = |e: Error| BatchError::from(&e);
        for entry in &req.paths {
            let is_pattern = entry.contains(['*', '?']);
            let found: Result<Vec<String>> = if is_pattern {
                if !req.expand_wildcards {
                    Err(validation(
                        "paths",
                        "a pattern needs \"expand_wildcards\": true",
                    ))
                } else {
                    self.expand(entry, &may_list, MAX_BATCH_METADATA_RESULTS - secrets.len())
                }
            } else {
                SecretPath::parse(entry).and_then(|sp| {
                    if !may_list(sp.as_str()) {
                        return Err(Error::new(
                            ErrorCode::AccessDenied,
                            "no policy lets this identity list this path",
                        ));
                    }
                    Ok(vec![sp.as_str().to_owned()])
                })
            };
            let paths = match found {
                Ok(p) => p,
                Err(e) => {
                    errors.insert(entry.clone(), error(e));
                    continue;
                }
            };
            for p in paths {
                match self.load_head(&p)? {
                    Some(head) if head.deleted_at.is_none() => {
                        secrets.insert(p, self.summary(&head, false));
                    }
                    _ if is_pattern => {}
                    _ => {
                        errors.insert(entry.clone(), error(not_found(&p)));
                    }
                }
            }
        }
        Ok(BatchMetadata { secrets, errors })
    }

    /// The live paths matching `pattern` that `may_list` allows; more than `room` is an
    /// error rather than a silently cut answer.
    fn expand(
        &self,
        pattern: &str,
        may_list: &impl Fn(&str) -> bool,
        room: usize,
    ) -> Result<Vec<String>> {
        let glob = scaivault_core::glob::Glob::parse(pattern)?;
        // Only paths under the pattern's literal directory can match: start the walk there.
        let literal = &pattern[..pattern.find(['*', '?']).unwrap_or(pattern.len())];
        let base = &literal[..literal.rfind('/').map_or(0, |i| i + 1)];
        let index = read(&self.paths);
        let mut out = Vec::new();
        for (p, entry) in
            index.range::<str, _>((std::ops::Bound::Included(base), std::ops::Bound::Unbounded))
        {
            if !p.starts_with(base) {
                break;
            }
            if entry.deleted || !glob.matches(p) || !may_list(p) {
                continue;
            }
            if out.len() == room {
                return Err(validation(
                    "paths",
                    format!(
                        "the patterns match more than {MAX_BATCH_METADATA_RESULTS} secrets; narrow them"
                    ),
                ));
            }
            out.push(p.clone());
        }
        Ok(out)
    }

    /// Writes remembered last-access times into the heads (one batch); called periodically
    /// and at shutdown.
    pub async fn flush_access_times(&self) -> Result<usize> {
        let dirty: Vec<(String, i64)> = read(&self.paths)
            .iter()
            .filter_map(|(p, e)| {
                // Taken, not copied: a path is flushed once per access burst, not every tick.
                let t = e.last_accessed.swap(0, Ordering::Relaxed);
                (t != 0).then(|| (p.clone(), t))
            })
            .collect();
        if dirty.is_empty() {
            return Ok(0);
        }
        let heads = self.heads.clone();
        self.vault
            .write(move |tx| {
                let mut n = 0;
                for (p, t) in dirty {
                    let Some(mut head) = head_in(tx, &p)? else {
                        continue;
                    };
                    if head.last_accessed_at.is_none_or(|s| s.0 < t) {
                        head.last_accessed_at = Some(Timestamp(t));
                        put_head(tx, &heads, &head);
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use scaivault_crypto::KdfParams;
    use scaivault_store::Vault;
    use serde_json::json;

    use super::*;
    use crate::{Caller, ManualClock};

    fn req(v: Value) -> WriteRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_write_without_a_type_takes_any_json_object() {
        let d = |v: Value| SecretData::from_json_text(v.to_string());
        assert_eq!(implied_type(None, &d(json!({"a": "1", "b": "2"}))), "kv");
        assert_eq!(implied_type(None, &d(json!({"port": 5432}))), "json");
        assert_eq!(
            implied_type(Some("kv"), &d(json!({"a": {"b": ["c"]}}))),
            "json"
        );
        assert_eq!(implied_type(Some("json"), &d(json!({"a": "1"}))), "json");
        assert_eq!(
            implied_type(Some("certificate"), &d(json!({"n": 1}))),
            "certificate",
            "a typed secret is still checked as its type"
        );
    }

    /// A write that sends no type is checked against the stored one; if another write changes
    /// the type before this one reaches the writer, it is refused instead of storing data the
    /// new type's plugin never saw.
    #[test]
    fn a_type_change_between_validation_and_commit_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let vault =
            Arc::new(Vault::create(&dir.path().join("v.db"), b"pw", KdfParams::FLOOR).unwrap());
        let e = Engine::load(vault, Arc::new(ManualClock::new(Timestamp::now()))).unwrap();
        let root = Caller::local_operator();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            e.write_secret(&root, "app/a", req(json!({"data": {"v": "1"}})))
                .await
                .unwrap();
            let mut late = e
                .prepare_write(&root, "app/a", req(json!({"data": {"v": "2"}})))
                .unwrap();
            e.validate_prepared(std::slice::from_mut(&mut late))
                .await
                .unwrap();
            assert_eq!(late.validated_type, "kv");
            e.write_secret(
                &root,
                "app/a",
                req(json!({"data": {"v": {"nested": true}}, "secret_type": "json"})),
            )
            .await
            .unwrap();
            let sink = e.events.clone();
            let err = e
                .vault
                .write(move |tx| apply_and_announce(tx, late, &sink, false))
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::VersionConflict, "{err:?}");
            assert!(err.message.contains("json"), "{}", err.message);
            // Written again, it is checked against `json` and lands.
            let out = e
                .write_secret(&root, "app/a", req(json!({"data": {"v": "2"}})))
                .await
                .unwrap();
            assert_eq!((out.version, out.secret_type.as_str()), (3, "json"));
        });
    }
}
