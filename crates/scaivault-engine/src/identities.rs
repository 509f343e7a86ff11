//! The local identity registry: users, service accounts and groups with membership. It
//! replaces the external identity provider of the hosted product.

use std::collections::HashMap;

use scaivault_core::identity::{IdentityId, IdentityType};
use scaivault_core::scope::{Scope, ScopeSet};
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_store::Table;
use serde::{Deserialize, Serialize};

use crate::caller::ROOT_IDENTITY;
use crate::records::{ClientCredential, IdentityRecord, new_id};
use crate::{Caller, Engine, encode, read, write};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentity {
    pub identity_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// An identity as the API shows it (never a credential hash).
#[derive(Debug, Serialize)]
pub struct IdentityView {
    pub identity_id: IdentityId,
    pub identity_type: IdentityType,
    pub display_name: String,
    pub created_at: scaivault_core::time::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<IdentityId>>,
    pub groups: Vec<IdentityId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<serde_json::Value>>,
}

pub(crate) fn identity_not_found(id: &str) -> Error {
    Error::new(ErrorCode::IdentityNotFound, format!("no identity {id}"))
        .with("identity_id", id)
        .with(
            "hint",
            "create it with `scaivault identity create` or POST /v1/identities",
        )
}

/// Identities by id, and the groups each identity belongs to. Authentication asks for a
/// caller's groups on every request; membership changes are rare, so the reverse map is
/// rebuilt on each change rather than searched on each request.
#[derive(Default)]
pub(crate) struct IdentityIndex {
    pub(crate) by_id: HashMap<String, IdentityRecord>,
    groups_of: HashMap<String, Vec<IdentityId>>,
}

impl IdentityIndex {
    /// The groups `id` is a direct member of.
    pub(crate) fn groups(&self, id: &str) -> Vec<IdentityId> {
        self.groups_of.get(id).cloned().unwrap_or_default()
    }

    pub(crate) fn new(all: Vec<IdentityRecord>) -> IdentityIndex {
        let mut idx = IdentityIndex {
            by_id: all.into_iter().map(|r| (r.id.to_string(), r)).collect(),
            groups_of: HashMap::new(),
        };
        idx.rebuild();
        idx
    }

    fn rebuild(&mut self) {
        let mut groups_of: HashMap<String, Vec<IdentityId>> = HashMap::new();
        for g in self
            .by_id
            .values()
            .filter(|r| r.identity_type == IdentityType::Group)
        {
            for m in &g.members {
                groups_of
                    .entry(m.to_string())
                    .or_default()
                    .push(g.id.clone());
            }
        }
        groups_of.values_mut().for_each(|v| v.sort());
        self.groups_of = groups_of;
    }

    fn insert(&mut self, r: IdentityRecord) {
        self.by_id.insert(r.id.to_string(), r);
        self.rebuild();
    }

    fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
        self.rebuild();
    }
}

/// A client credential just issued: the only time its secret exists outside the caller.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct IssuedCredential {
    pub client_id: String,
    #[schemars(with = "String")]
    pub client_secret: zeroize::Zeroizing<String>,
    pub credential_id: String,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IssuedCredential {{ client_id: {}, credential_id: {}, client_secret: [redacted] }}",
            self.client_id, self.credential_id
        )
    }
}

/// A client credential as listed: never its secret.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialView {
    pub credential_id: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
}

/// `GET /v1/identities/{id}/credentials`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialList {
    pub client_id: String,
    pub credentials: Vec<CredentialView>,
}

/// `DELETE /v1/identities/{id}/credentials/{credential}`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialRevoked {
    pub client_id: String,
    pub credential_id: String,
    pub revoked: bool,
    pub tokens_revoked: usize,
}

impl Engine {
    /// The groups `id` is a direct member of.
    pub fn groups_of(&self, id: &IdentityId) -> Vec<IdentityId> {
        read(&self.identities)
            .groups_of
            .get(id.as_str())
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn identity(&self, id: &str) -> Option<IdentityRecord> {
        read(&self.identities).by_id.get(id).cloned()
    }

    fn view(&self, r: &IdentityRecord) -> IdentityView {
        IdentityView {
            identity_id: r.id.clone(),
            identity_type: r.identity_type,
            display_name: r.display_name.clone(),
            created_at: r.created_at,
            members: (r.identity_type == IdentityType::Group).then(|| r.members.clone()),
            groups: self.groups_of(&r.id),
            credentials: (r.identity_type == IdentityType::ServiceAccount).then(|| {
                r.credentials
                    .iter()
                    .map(|c| serde_json::json!({"id": c.id, "scopes": c.scopes, "created_at": c.created_at}))
                    .collect()
            }),
        }
    }

    pub(crate) async fn save_identity(&self, record: IdentityRecord) -> Result<IdentityRecord> {
        let cache = self.identities.clone();
        self.vault
            .write(move |tx| {
                tx.put(
                    Table::Identities,
                    record.id.as_str().as_bytes(),
                    &encode(&record),
                );
                let r = record.clone();
                tx.on_commit(move || {
                    write(&cache).insert(r);
                });
                Ok::<_, Error>(record)
            })
            .await
    }

    pub async fn create_identity(
        &self,
        caller: &Caller,
        req: CreateIdentity,
    ) -> Result<IdentityView> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let id = IdentityId::parse(&req.identity_id)?;
        if id.as_str() == ROOT_IDENTITY {
            return Err(Error::new(
                ErrorCode::InvalidIdentity,
                "user:root is reserved for the root token",
            ));
        }
        if self.identity(id.as_str()).is_some() {
            return Err(
                Error::new(ErrorCode::IdentityExists, format!("{id} exists"))
                    .with("identity_id", id.as_str()),
            );
        }
        let record = IdentityRecord {
            identity_type: id.identity_type(),
            display_name: req.display_name.unwrap_or_else(|| {
                id.as_str()
                    .split_once(':')
                    .map(|x| x.1)
                    .unwrap_or("")
                    .to_owned()
            }),
            created_at: self.now(),
            members: Vec::new(),
            credentials: Vec::new(),
            roles: Vec::new(),
            id,
        };
        let r = self.save_identity(record).await?;
        Ok(self.view(&r))
    }

    pub fn list_identities(
        &self,
        caller: &Caller,
        kind: Option<IdentityType>,
    ) -> Result<Vec<IdentityView>> {
        self.authorize(caller, Scope::IdentityRead, None)?;
        let mut all: Vec<IdentityRecord> = read(&self.identities)
            .by_id
            .values()
            .filter(|r| kind.is_none_or(|k| r.identity_type == k))
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all.iter().map(|r| self.view(r)).collect())
    }

    pub fn get_identity(&self, caller: &Caller, id: &str) -> Result<IdentityView> {
        self.authorize(caller, Scope::IdentityRead, None)?;
        let r = self.identity(id).ok_or_else(|| identity_not_found(id))?;
        Ok(self.view(&r))
    }

    /// Deletes an identity, revokes its tokens, and removes it from groups and bindings.
    pub async fn delete_identity(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let r = self.identity(id).ok_or_else(|| identity_not_found(id))?;
        self.revoke_tokens_of(&r.id).await?;
        let groups: Vec<IdentityRecord> = read(&self.identities)
            .by_id
            .values()
            .filter(|g| g.members.contains(&r.id))
            .cloned()
            .collect();
        for mut g in groups {
            g.members.retain(|m| m != &r.id);
            self.save_identity(g).await?;
        }
        self.unbind_everywhere(&r.id).await?;
        // Its subscriptions go with it: a new identity given the same id later is someone else.
        for sub in self.subscriptions_of(r.id.as_str()) {
            self.remove_consumer(&sub).await?;
        }
        let cache = self.identities.clone();
        let key = r.id.to_string();
        let (tokens, now, gone) = (self.tokens.clone(), self.now(), r.id.clone());
        self.vault
            .write(move |tx| {
                tx.delete(Table::Identities, key.as_bytes());
                // Again, with the record: a token another node minted after the first
                // revocation (it still found the identity) goes with it, and no later token
                // can be minted for it (the mint checks the identity in its own turn).
                crate::records::revoke_tokens_in(tx, &tokens, now, |t| t.identity_id == gone);
                tx.on_commit(move || {
                    write(&cache).remove(&key);
                });
                Ok::<_, Error>(())
            })
            .await
    }

    pub async fn set_membership(
        &self,
        caller: &Caller,
        group: &str,
        member: &str,
        add: bool,
    ) -> Result<IdentityView> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let mut g = self
            .identity(group)
            .ok_or_else(|| identity_not_found(group))?;
        if g.identity_type != IdentityType::Group {
            return Err(Error::new(
                ErrorCode::InvalidIdentity,
                format!("{group} is not a group"),
            ));
        }
        let m = IdentityId::parse(member)?;
        if m.identity_type() == IdentityType::Group {
            return Err(Error::new(
                ErrorCode::InvalidIdentity,
                "groups cannot contain groups",
            ));
        }
        if self.identity(m.as_str()).is_none() {
            return Err(identity_not_found(m.as_str()));
        }
        if add {
            if !g.members.contains(&m) {
                g.members.push(m);
                g.members.sort();
            }
        } else {
            let before = g.members.len();
            g.members.retain(|x| x != &m);
            if before == g.members.len() {
                return Err(Error::new(
                    ErrorCode::IdentityNotFound,
                    format!("{m} is not a member of {group}"),
                ));
            }
        }
        let g = self.save_identity(g).await?;
        Ok(self.view(&g))
    }

    /// Issues a client credential for a service account; the secret is shown once.
    pub async fn create_client_credential(
        &self,
        caller: &Caller,
        sa: &str,
        scopes: ScopeSet,
    ) -> Result<IssuedCredential> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let mut r = self.identity(sa).ok_or_else(|| identity_not_found(sa))?;
        if r.identity_type != IdentityType::ServiceAccount {
            return Err(Error::new(
                ErrorCode::InvalidIdentity,
                "client credentials are for service accounts",
            ));
        }
        let secret =
            zeroize::Zeroizing::new(format!("scs_{}", scaivault_crypto::random_token_body()));
        let cred = ClientCredential {
            id: new_id("cred"),
            secret_hash: self.vault.token_hasher().hash(&secret),
            scopes: scopes.clone(),
            created_at: self.now(),
        };
        let cred_id = cred.id.clone();
        r.credentials.push(cred);
        self.save_identity(r).await?;
        Ok(IssuedCredential {
            client_id: sa.to_owned(),
            client_secret: secret,
            credential_id: cred_id,
            scopes: scopes.to_strings(),
        })
    }

    /// A service account's client credentials: ids, scopes and creation times, never the
    /// secrets (only their keyed hashes are stored).
    pub fn list_client_credentials(&self, caller: &Caller, sa: &str) -> Result<CredentialList> {
        self.authorize(caller, Scope::Admin, None)?;
        let r = self.identity(sa).ok_or_else(|| identity_not_found(sa))?;
        Ok(CredentialList {
            client_id: sa.to_owned(),
            credentials: r
                .credentials
                .iter()
                .map(|c| CredentialView {
                    credential_id: c.id.clone(),
                    scopes: c.scopes.to_strings(),
                    created_at: c.created_at,
                })
                .collect(),
        })
    }

    /// Revokes one client credential: its secret stops working at once, and the tokens it
    /// minted are revoked with it (the identity and its other credentials stay).
    pub async fn revoke_client_credential(
        &self,
        caller: &Caller,
        sa: &str,
        credential_id: &str,
    ) -> Result<CredentialRevoked> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let mut r = self.identity(sa).ok_or_else(|| identity_not_found(sa))?;
        let before = r.credentials.len();
        r.credentials.retain(|c| c.id != credential_id);
        if r.credentials.len() == before {
            return Err(Error::new(
                ErrorCode::IdentityNotFound,
                format!("{sa} has no client credential {credential_id}"),
            )
            .with("credential_id", credential_id));
        }
        let id = r.id.clone();
        self.save_identity(r).await?;
        let revoked = self.revoke_tokens_minted_by(&id, credential_id).await?;
        Ok(CredentialRevoked {
            client_id: sa.to_owned(),
            credential_id: credential_id.to_owned(),
            revoked: true,
            tokens_revoked: revoked,
        })
    }
}
