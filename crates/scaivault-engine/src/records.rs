//! The records sealed into the vault file, one per table. Their JSON form is private to the
//! file format; API shapes are built from them in the use-case modules.

use std::fmt;

use scaivault_core::identity::{IdentityId, IdentityType};
use scaivault_core::scope::ScopeSet;
use scaivault_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Table `paths`: what the listing index needs. Like the secret heads and versions (the
/// records on the hot path and the ones unseal decodes by the million) it is stored with
/// postcard; identities, tokens and policies, read once at unseal, are JSON.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PathRecord {
    pub path: String,
    pub deleted: bool,
}

/// One version's place in a secret's history.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionInfo {
    pub version: u64,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// Table `secrets`: everything about a secret except its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretHead {
    pub path: String,
    pub secret_type: String,
    #[serde(with = "json_text")]
    pub metadata: Map<String, Value>,
    pub current_version: u64,
    /// Retained versions, oldest first.
    pub versions: Vec<VersionInfo>,
    pub max_versions: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_accessed_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub recoverable_until: Option<Timestamp>,
    pub rotation_policy_id: Option<String>,
    pub secret_policy_id: Option<String>,
    /// Rotation: when the current value was last rotated (or written, once attached).
    pub last_rotated_at: Option<Timestamp>,
    /// Rotation: the version replaced by the last rotation, readable until `grace_until`.
    pub previous_version: Option<u64>,
    pub grace_until: Option<Timestamp>,
}

impl SecretHead {
    /// The head of a secret about to get its first version (`kv` until the write says).
    pub(crate) fn new(path: &str, now: Timestamp) -> SecretHead {
        SecretHead {
            path: path.to_owned(),
            secret_type: "kv".into(),
            metadata: Map::new(),
            current_version: 0,
            versions: Vec::new(),
            max_versions: crate::limits::DEFAULT_MAX_VERSIONS,
            created_at: now,
            updated_at: now,
            expires_at: None,
            last_accessed_at: None,
            deleted_at: None,
            recoverable_until: None,
            rotation_policy_id: None,
            secret_policy_id: None,
            last_rotated_at: None,
            previous_version: None,
            grace_until: None,
        }
    }
}

/// The JSON text of a secret's `data` object, wiped from memory on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretData(Zeroizing<String>);

/// On the wire `data` is a JSON object of the secret's fields.
impl schemars::JsonSchema for SecretData {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretData".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "The secret's fields: names to values (strings, or any JSON a type plugin accepts)",
            "additionalProperties": true
        })
    }
}

impl SecretData {
    pub fn from_json_text(text: String) -> SecretData {
        SecretData(Zeroizing::new(text))
    }

    pub fn as_json_text(&self) -> &str {
        &self.0
    }

    /// Whether every field is a string (the `kv` shape), read without copying a value.
    pub fn all_strings(&self) -> bool {
        serde_json::from_str::<std::collections::HashMap<String, &serde_json::value::RawValue>>(
            &self.0,
        )
        .is_ok_and(|m| m.values().all(|v| v.get().starts_with('"')))
    }

    /// Parses the data (a transient copy, for callers that need fields).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretData([redacted])")
    }
}

impl Serialize for SecretData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_str(&self.0);
        }
        // Borrowed raw JSON: serialized without an intermediate copy of the values.
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return String::deserialize(d).map(|s| SecretData(Zeroizing::new(s)));
        }
        let raw: Box<serde_json::value::RawValue> = Deserialize::deserialize(d)?;
        let text: Box<str> = raw.into();
        Ok(SecretData(Zeroizing::new(String::from(text))))
    }
}

/// Metadata is free-form JSON; binary record formats cannot hold `serde_json::Value`
/// (it needs a self-describing format), so there it travels as JSON text.
pub(crate) mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(m: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            m.serialize(s)
        } else {
            s.serialize_str(&serde_json::to_string(m).map_err(serde::ser::Error::custom)?)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        if d.is_human_readable() {
            Map::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(serde::de::Error::custom)
        }
    }
}

/// Table `versions`: the data of one version.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VersionRecord {
    pub data: SecretData,
}

/// A service account's client credential (for the client-credentials grant).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientCredential {
    pub id: String,
    #[serde(with = "hex_bytes")]
    pub secret_hash: [u8; 32],
    pub scopes: ScopeSet,
    pub created_at: Timestamp,
}

/// Table `identities`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub id: IdentityId,
    pub identity_type: IdentityType,
    pub display_name: String,
    pub created_at: Timestamp,
    /// Groups only: the member identity ids.
    #[serde(default)]
    pub members: Vec<IdentityId>,
    /// Service accounts only.
    #[serde(default)]
    pub credentials: Vec<ClientCredential>,
    /// Users only: admin roles (`roles.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Root,
    Personal,
    ClientCredentials,
}

/// Table `tokens`: never the token itself, only its keyed hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
    pub kind: TokenKind,
    pub name: Option<String>,
    pub identity_id: IdentityId,
    pub identity_type: IdentityType,
    pub scopes: ScopeSet,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_by: String,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(&s).map_err(|_| serde::de::Error::custom("bad hex"))?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("bad length"))
    }
}

/// A short random id with a prefix, e.g. `pol_3f9a1c…`.
pub(crate) fn new_id(prefix: &str) -> String {
    let bytes: [u8; 8] = scaivault_crypto::random_bytes();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// How a token made with another names its maker in `created_by`.
pub(crate) const MADE_WITH: &str = "token:";

/// The id of the token `t` was made with (Vault's `auth/token/create`), if it was.
pub(crate) fn parent_of(t: &TokenRecord) -> Option<&str> {
    t.created_by.strip_prefix(MADE_WITH)
}

/// Revokes, inside a write job, the live tokens `which` picks from `cache` (which the
/// writer has brought up to every node's commits), and the tokens made with them; the map
/// follows once durable.
pub(crate) fn revoke_tokens_in(
    tx: &mut scaivault_store::WriteTx<'_, '_>,
    cache: &std::sync::Arc<std::sync::RwLock<std::collections::HashMap<[u8; 32], TokenRecord>>>,
    now: Timestamp,
    which: impl Fn(&TokenRecord) -> bool,
) -> usize {
    let live: Vec<TokenRecord> = crate::read(cache)
        .values()
        .filter(|t| t.revoked_at.is_none())
        .cloned()
        .collect();
    // A token made with another (Vault's `auth/token/create`) goes with it, and its own
    // children with it: picked until no live token names a picked one as its maker.
    let mut picked: std::collections::HashSet<String> = live
        .iter()
        .filter(|t| which(t))
        .map(|t| t.id.clone())
        .collect();
    loop {
        let more: Vec<String> = live
            .iter()
            .filter(|t| !picked.contains(&t.id))
            .filter(|t| parent_of(t).is_some_and(|p| picked.contains(p)))
            .map(|t| t.id.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        picked.extend(more);
    }
    let revoked: Vec<TokenRecord> = live
        .into_iter()
        .filter(|t| picked.contains(&t.id))
        .map(|mut t| {
            t.revoked_at = Some(now);
            tx.put(
                scaivault_store::Table::Tokens,
                t.id.as_bytes(),
                &crate::encode(&t),
            );
            t
        })
        .collect();
    let n = revoked.len();
    let cache = cache.clone();
    tx.on_commit(move || {
        let mut map = crate::write(&cache);
        for t in revoked {
            map.insert(t.hash, t);
        }
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_records_round_trip_in_postcard() {
        let head = SecretHead {
            path: "a/b".into(),
            secret_type: "kv".into(),
            metadata: serde_json::from_str(r#"{"tags":["x"],"nested":{"k":1}}"#).unwrap(),
            current_version: 2,
            versions: vec![VersionInfo {
                version: 2,
                created_at: Timestamp(7),
                created_by: "user:root".into(),
            }],
            max_versions: 10,
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
            expires_at: None,
            last_accessed_at: Some(Timestamp(3)),
            deleted_at: None,
            recoverable_until: None,
            rotation_policy_id: None,
            secret_policy_id: None,
            last_rotated_at: None,
            previous_version: None,
            grace_until: None,
        };
        let bytes = postcard::to_allocvec(&head).unwrap();
        let back: SecretHead = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.metadata, head.metadata);
        assert_eq!(back.versions[0].created_at, Timestamp(7));
        let v = VersionRecord {
            data: SecretData::from_json_text(r#"{"password":"p"}"#.into()),
        };
        let back: VersionRecord =
            postcard::from_bytes(&postcard::to_allocvec(&v).unwrap()).unwrap();
        assert_eq!(back.data.as_json_text(), r#"{"password":"p"}"#);
    }

    #[test]
    fn secret_data_never_prints() {
        let d = SecretData::from_json_text(r#"{"password":"hunter2"}"#.into());
        assert!(!format!("{d:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"password":"hunter2"}"#
        );
    }
}
