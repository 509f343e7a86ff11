//! Secret (value-generation) policies (spec §1.7): named recipes of `{name, generator,
//! config}` fields, run by the generator plugins. A rotation policy with `secret_policy_id`
//! makes its new values with the recipe instead of the default random string.

use scaivault_core::scope::Scope;
use scaivault_store::Table;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use crate::rotation_state::RecipeField;
use crate::rotation_state::{RotationRecord, SecretPolicy};
use crate::{Caller, Engine, Error, ErrorCode, Result, encode, read, write};

const POLICY_TYPES: &[&str] = &["password", "api_key", "oauth_client", "ssh_key", "custom"];

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretPolicyRequest {
    pub name: Option<String>,
    pub policy_type: Option<String>,
    pub fields: Option<Vec<RecipeField>>,
    pub is_active: Option<bool>,
    pub description: Option<String>,
}

fn not_found(id: &str) -> Error {
    Error::new(
        ErrorCode::SecretPolicyNotFound,
        format!("no secret policy {id}"),
    )
    .with("secret_policy_id", id)
}

fn validation(field: &str, problem: &str) -> Error {
    Error::new(ErrorCode::ValidationError, format!("{field}: {problem}"))
        .with("fields", json!({ field: problem }))
}

pub(crate) fn key(id: &str) -> Vec<u8> {
    let mut k = b"sp/".to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// `GET /v1/secret-policies`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretPolicyList {
    pub secret_policies: Vec<SecretPolicy>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// Values a recipe made, stored nowhere (`POST /v1/secret-policies/{id}/generate`). `Debug`
/// shows only the field names.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Generated {
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("fields", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn find_secret_policy(&self, id: &str) -> Result<SecretPolicy> {
        let s = read(&self.rotation);
        s.secret_policies
            .get(id)
            .or_else(|| s.secret_policies.values().find(|p| p.name == id))
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Checks a recipe by running it once: every generator exists and accepts its config.
    async fn check_recipe(&self, fields: &[RecipeField]) -> Result<()> {
        if fields.is_empty() {
            return Err(validation("fields", "must hold at least one field"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in fields {
            if f.name.is_empty() || !seen.insert(f.name.clone()) {
                return Err(validation(
                    "fields",
                    "each field needs a unique, non-empty name",
                ));
            }
        }
        self.run_recipe(fields).await.map(|_| ())
    }

    /// Runs every field's generator in the sandbox and assembles the data object. A key-pair
    /// generator's values (`private_key`, `public_key`) go under their own names.
    pub(crate) async fn run_recipe(&self, fields: &[RecipeField]) -> Result<Map<String, Value>> {
        let host = self.plugins.clone();
        let services = self.services();
        let fields = fields.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut data = Map::new();
            for f in &fields {
                let out = host
                    .generate(
                        &f.generator,
                        &Value::Object(f.config.clone()),
                        services.clone(),
                    )
                    .map_err(|e| e.with("field", f.name.as_str()))?;
                // A key-pair generator's outputs have fixed names: two such fields, or one
                // and a field of the same name, would silently overwrite each other.
                let taken = |data: &Map<String, Value>, key: &str| {
                    data.contains_key(key).then(|| {
                        validation(
                            "fields",
                            &format!(
                                "field {:?} ({}) makes {key:?}, which an earlier field makes too: one secret holds one value per name",
                                f.name, f.generator
                            ),
                        )
                    })
                };
                match (
                    out.get("value"),
                    out.get("values").and_then(Value::as_object),
                ) {
                    (Some(v), _) => {
                        if let Some(e) = taken(&data, &f.name) {
                            return Err(e);
                        }
                        data.insert(f.name.clone(), v.clone());
                    }
                    (None, Some(values)) => {
                        if let Some(e) = values.keys().find_map(|k| taken(&data, k)) {
                            return Err(e);
                        }
                        data.extend(values.clone());
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorCode::PluginFailed,
                            format!("generator {} returned nothing", f.generator),
                        ));
                    }
                }
            }
            Ok(data)
        })
        .await
        .map_err(|_| Error::internal("generator task panicked"))?
    }

    async fn save_secret_policy(&self, p: SecretPolicy) -> Result<SecretPolicy> {
        let state = self.rotation.clone();
        let view = p.clone();
        self.vault
            .write(move |tx| {
                tx.put(
                    Table::Rotation,
                    &key(&p.id),
                    &encode(&RotationRecord::SecretPolicy(p.clone())),
                );
                tx.on_commit(move || {
                    write(&state).secret_policies.insert(p.id.clone(), p);
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(view)
    }

    pub fn list_secret_policies(&self, caller: &Caller) -> Result<SecretPolicyList> {
        self.authorize(caller, Scope::Admin, None)?;
        let list: Vec<SecretPolicy> = read(&self.rotation)
            .secret_policies
            .values()
            .cloned()
            .collect();
        Ok(SecretPolicyList {
            secret_policies: list,
            cursor: None,
            has_more: false,
        })
    }

    pub fn get_secret_policy(&self, caller: &Caller, id: &str) -> Result<SecretPolicy> {
        self.authorize(caller, Scope::Admin, None)?;
        self.find_secret_policy(id)
    }

    pub async fn create_secret_policy(
        &self,
        caller: &Caller,
        req: SecretPolicyRequest,
    ) -> Result<SecretPolicy> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let name = req.name.ok_or_else(|| validation("name", "is required"))?;
        scaivault_core::policy::validate_name(&name).map_err(|e| validation("name", &e.message))?;
        let id = format!("sp_{}", name.replace('-', "_"));
        if read(&self.rotation).secret_policies.contains_key(&id) {
            return Err(Error::new(
                ErrorCode::PolicyExists,
                format!("a secret policy named {name} exists"),
            ));
        }
        let policy_type = req.policy_type.unwrap_or_else(|| "custom".into());
        if !POLICY_TYPES.contains(&policy_type.as_str()) {
            return Err(validation(
                "policy_type",
                "must be password, api_key, oauth_client, ssh_key or custom",
            ));
        }
        let fields = req
            .fields
            .ok_or_else(|| validation("fields", "is required"))?;
        self.check_recipe(&fields).await?;
        let now = self.now();
        self.save_secret_policy(SecretPolicy {
            id,
            name,
            policy_type,
            fields,
            is_active: req.is_active.unwrap_or(true),
            description: req.description.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        })
        .await
    }

    pub async fn update_secret_policy(
        &self,
        caller: &Caller,
        id: &str,
        req: SecretPolicyRequest,
    ) -> Result<SecretPolicy> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let mut p = self.find_secret_policy(id)?;
        if req.name.as_ref().is_some_and(|n| *n != p.name) {
            return Err(validation(
                "name",
                "a secret policy's name is part of its id and cannot change",
            ));
        }
        if let Some(t) = req.policy_type {
            if !POLICY_TYPES.contains(&t.as_str()) {
                return Err(validation(
                    "policy_type",
                    "must be password, api_key, oauth_client, ssh_key or custom",
                ));
            }
            p.policy_type = t;
        }
        if let Some(f) = req.fields {
            self.check_recipe(&f).await?;
            p.fields = f;
        }
        if let Some(a) = req.is_active {
            p.is_active = a;
        }
        if let Some(d) = req.description {
            p.description = d;
        }
        p.updated_at = self.now();
        self.save_secret_policy(p).await
    }

    pub async fn delete_secret_policy(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, Scope::Admin, None)?;
        let _change = self.config_change().await;
        let p = self.find_secret_policy(id)?;
        let users: Vec<String> = read(&self.rotation)
            .policies
            .values()
            .filter(|r| r.secret_policy_id.as_deref() == Some(p.id.as_str()))
            .map(|r| r.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(Error::new(
                ErrorCode::PolicyInUse,
                format!("{} is used by rotation policies {}", p.id, users.join(", ")),
            ));
        }
        let state = self.rotation.clone();
        let pid = p.id.clone();
        self.vault
            .write(move |tx| {
                tx.delete(Table::Rotation, &key(&pid));
                tx.on_commit(move || {
                    write(&state).secret_policies.remove(&pid);
                });
                Ok::<_, Error>(())
            })
            .await
    }

    /// Makes a value with the recipe and stores nothing.
    pub async fn generate_with_secret_policy(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Generated> {
        self.authorize(caller, Scope::SecretsWrite, None)?;
        let p = self.find_secret_policy(id)?;
        if !p.is_active {
            return Err(Error::invalid_request(format!("{} is not active", p.id)));
        }
        Ok(Generated {
            data: self.run_recipe(&p.fields).await?,
        })
    }
}
