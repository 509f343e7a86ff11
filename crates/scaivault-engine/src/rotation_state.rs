//! What table `rotation` holds and the state loaded from it: the lowest layer of rotation.
//!
//! The table stores six kinds of record ([`RotationRecord`]): rotation policies, which secret
//! is attached to which policy, rotation jobs in progress, the rotation notices sent in a
//! secret's current cycle, secret (generation) policies, and the expiry notices sent for a
//! secret's current `expires_at`. [`RotationState`] is their in-memory copy, kept in step with
//! the file by `on_commit` hooks.
//!
//! Everything that touches rotation builds on this module and it builds on none of them:
//! `secrets` (attaching on a write, grace-period reads), `expiry`, `secret_policies`,
//! `rotation_job` (one rotation's state machine) and `rotation` (the API and the scheduler).

use std::collections::BTreeMap;
use std::time::Duration;

use scaivault_core::scope::Scope;
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_store::Table;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::records::SecretData;
use crate::{Caller, Engine, encode, read, write};

#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RotationPolicy {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub interval: String,
    pub interval_seconds: u64,
    pub grace_period: String,
    pub grace_period_seconds: u64,
    #[serde(default)]
    pub warn_before: Option<String>,
    pub auto_generate: bool,
    /// Data fields to regenerate; `None`: the string fields whose names say they are secret
    /// (`password`, `secret`, `token`, `key`, `value`, … or ending so), not `user` or `host`.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// The rotation backend plugin that applies each new value to the real system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub backend_config: Map<String, Value>,
    /// Webhooks that receive this policy's rotation events, whatever they subscribed to.
    #[serde(default)]
    pub webhook_ids: Vec<String>,
    /// The recipe new values are made with (`sp_…`); without one, random strings.
    #[serde(default)]
    pub secret_policy_id: Option<String>,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `backend_config` may hold a webhook's signing secret: `Debug` shows only its keys.
impl std::fmt::Debug for RotationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationPolicy")
            .field("id", &self.id)
            .field("interval", &self.interval)
            .field("backend", &self.backend)
            .field(
                "backend_config_keys",
                &self.backend_config.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Table `rotation` holds every kind of rotation record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RotationRecord {
    Policy(RotationPolicy),
    Assignment {
        policy_id: String,
        secret_path: String,
    },
    /// A rotation in progress or failed (see `rotation_job`).
    Job(RotationJob),
    /// Which `rotation.due` / `rotation.overdue` notices were sent for a secret's current
    /// cycle (the cycle starts at its last rotation).
    Notices {
        secret_path: String,
        cycle: Timestamp,
        sent: Vec<String>,
    },
    SecretPolicy(SecretPolicy),
    /// Which `secret.expiring` / `secret.expired` notices were sent for a secret's current
    /// `expires_at` (see `expiry`).
    ExpiryNotices {
        secret_path: String,
        expires_at: Timestamp,
        sent: Vec<String>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct RotationState {
    pub(crate) policies: BTreeMap<String, RotationPolicy>,
    /// secret path → policy id.
    pub(crate) assigned: BTreeMap<String, String>,
    /// secret path → its rotation in progress (or failed).
    pub(crate) jobs: BTreeMap<String, RotationJob>,
    /// secret path → (cycle, notices sent in it).
    pub(crate) notices: BTreeMap<String, (Timestamp, Vec<String>)>,
    pub(crate) secret_policies: BTreeMap<String, SecretPolicy>,
    /// secret path → (the `expires_at` its notices are for, notices sent).
    pub(crate) expiry: BTreeMap<String, (Timestamp, Vec<String>)>,
}

impl RotationState {
    pub(crate) fn grace_for(&self, policy_id: &str) -> Option<Duration> {
        self.policies
            .get(policy_id)
            .map(|p| Duration::from_secs(p.grace_period_seconds))
    }
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::new(
        ErrorCode::RotationPolicyNotFound,
        format!("no rotation policy {id}"),
    )
    .with("policy_id", id)
}

pub(crate) fn assignment_key(path: &str) -> Vec<u8> {
    let mut k = b"assign/".to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

pub(crate) fn job_key(path: &str) -> Vec<u8> {
    let mut k = b"job/".to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

/// The secret's data with every rotated field replaced by a new random value.
pub(crate) fn regenerate(p: &RotationPolicy, path: &str, old: &Value) -> Result<Value> {
    let mut data = old.as_object().cloned().unwrap_or_default();
    let mut changed = 0;
    for (k, v) in data.iter_mut() {
        let wanted = match &p.fields {
            Some(f) => f.contains(k),
            None => v.is_string() && looks_secret(k),
        };
        if wanted {
            *v = Value::String(generate_value());
            changed += 1;
        }
    }
    if changed == 0 {
        return Err(Error::new(
            ErrorCode::ValidationError,
            format!("{path} has no field for {} to generate", p.id),
        ));
    }
    Ok(Value::Object(data))
}

pub(crate) fn looks_secret(field: &str) -> bool {
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "key",
        "value",
        "credential",
        "pin",
    ];
    let f = field.to_ascii_lowercase();
    WORDS
        .iter()
        .any(|w| f == *w || f.ends_with(&format!("_{w}")) || f.ends_with(&format!("-{w}")))
}

/// A strong random value: 32 characters from a 62-letter alphabet (190 bits).
pub(crate) fn generate_value() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[scaivault_crypto::random_below(ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn notice_key(path: &str) -> Vec<u8> {
    let mut k = b"notice/".to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

/// Proof that a caller may attach secrets to rotation policies: the check of
/// `POST /v1/rotation/policies/{id}/secrets`. [`attach_in`] takes one, so no other way of
/// attaching (a write's `options.rotation_policy_id`, an import) can skip that check. An
/// attached policy's backend later writes the secret's value to a live system, so attaching
/// is an admin's act, whatever the caller may do to the secret itself.
#[derive(Debug)]
pub(crate) struct AttachGrant(());

impl Engine {
    pub(crate) fn may_attach_rotation(&self, caller: &Caller) -> Result<AttachGrant> {
        self.authorize(caller, Scope::Admin, None)?;
        Ok(AttachGrant(()))
    }
}

/// Attaches `head` to policy `pid` inside a write job (assign, or a write's
/// `options.rotation_policy_id`); the in-memory state follows once the batch is durable.
pub(crate) fn attach_in(
    tx: &mut scaivault_store::WriteTx<'_, '_>,
    _grant: &AttachGrant,
    state: &std::sync::Arc<std::sync::RwLock<RotationState>>,
    head: &mut crate::records::SecretHead,
    pid: &str,
    path: &str,
    now: Timestamp,
) -> Result<()> {
    if !read(state).policies.contains_key(pid) {
        return Err(not_found(pid));
    }
    head.rotation_policy_id = Some(pid.to_owned());
    head.last_rotated_at = Some(head.last_rotated_at.unwrap_or(now));
    let record = RotationRecord::Assignment {
        policy_id: pid.to_owned(),
        secret_path: path.to_owned(),
    };
    tx.put(Table::Rotation, &assignment_key(path), &encode(&record));
    let (state, path, pid) = (state.clone(), path.to_owned(), pid.to_owned());
    tx.on_commit(move || {
        write(&state).assigned.insert(path, pid);
    });
    Ok(())
}

/// Called by a write to an attached secret (in the write job): the version it replaces stays
/// readable for the policy's grace period.
pub(crate) fn on_write(
    head: &mut crate::records::SecretHead,
    grace: Option<Duration>,
    replaced: u64,
    now: Timestamp,
) {
    if head.rotation_policy_id.is_some() && replaced > 0 {
        head.previous_version = Some(replaced);
        head.grace_until = Some(now.plus(grace.unwrap_or(Duration::from_secs(48 * 3600))));
        head.last_rotated_at = Some(now);
    }
}

/// Whether `version` of a secret may be read: for an attached secret, only the current one
/// and, during the grace period, the one the last rotation replaced.
pub(crate) fn readable(head: &crate::records::SecretHead, version: u64, now: Timestamp) -> bool {
    if head.rotation_policy_id.is_none() || version == head.current_version {
        return true;
    }
    head.previous_version == Some(version) && head.grace_until.is_some_and(|g| now < g)
}

/// The last step that completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Created,
    Applied,
    Tested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationJob {
    pub policy_id: String,
    pub secret_path: String,
    /// The version current when the job was created; finishing requires it still is.
    pub from_version: u64,
    pub secret_type: String,
    pub step: Step,
    pub status: JobStatus,
    /// The new value. Never shown by status or logs (`SecretData` prints redacted).
    #[serde(with = "pending_text")]
    pub pending: SecretData,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// After a failure past `set`: whether the backend restored the current value.
    pub reverted: Option<bool>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The pending value as a JSON string inside the record: the record is an internally tagged
/// enum, whose buffering cannot carry the raw JSON that `SecretData` otherwise uses.
mod pending_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    use crate::records::SecretData;

    pub fn serialize<S: Serializer>(d: &SecretData, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_json_text())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretData, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Ok(SecretData::from_json_text(text.to_string()))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecipeField {
    pub name: String,
    pub generator: String,
    #[serde(default)]
    pub config: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretPolicy {
    pub id: String,
    pub name: String,
    pub policy_type: String,
    pub fields: Vec<RecipeField>,
    pub is_active: bool,
    #[serde(default)]
    pub description: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
