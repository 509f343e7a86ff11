//! Authorization (token scope ∧ policy) and the access-policy use cases.

use std::sync::Arc;

use scaivault_core::identity::{IdentityId, IdentityType};
use scaivault_core::path::SecretPath;
use scaivault_core::policy::{
    Binding, CompiledPolicy, Context, Decision, Policy, Rule, Subject, evaluate, validate_name,
    validate_rules,
};
use scaivault_core::scope::{Permission, Scope};
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_store::Table;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::Event;
use crate::records::new_id;
use crate::{Caller, Engine, encode, read, write};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// What a saved policy announces (spec §1.9).
enum PolicyChange {
    Created,
    Updated,
    Bound(Binding),
    Unbound(Vec<Binding>),
}

impl PolicyChange {
    fn events(&self, p: &Policy, actor: &str, now: Timestamp) -> Vec<Event> {
        let policy = json!({ "policy_id": p.id, "name": p.name });
        let binding = |kind: &str, b: &Binding| {
            let mut data = policy.clone();
            data["binding_id"] = json!(b.id);
            data["identity_id"] = json!(b.identity_id);
            data["identity_type"] = json!(b.identity_type);
            data["expires_at"] = json!(b.expires_at);
            Event::new(kind, actor, None, data, now)
        };
        match self {
            PolicyChange::Created => vec![Event::new("policy.created", actor, None, policy, now)],
            PolicyChange::Updated => vec![Event::new("policy.updated", actor, None, policy, now)],
            PolicyChange::Bound(b) => vec![binding("policy.binding.created", b)],
            PolicyChange::Unbound(bs) => bs
                .iter()
                .map(|b| binding("policy.binding.deleted", b))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    #[serde(default)]
    pub identity_type: Option<String>,
    pub identity_id: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestRequest {
    pub identity_id: String,
    pub path: String,
    pub permission: String,
    #[serde(default)]
    pub context: TestContext,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestContext {
    #[serde(default)]
    pub source_ip: Option<String>,
    #[serde(default)]
    pub mfa_verified: Option<bool>,
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
}

fn policy_not_found(id: &str) -> Error {
    Error::new(ErrorCode::PolicyNotFound, format!("no policy {id}")).with("policy_id", id)
}

fn check_scope_field(scope: &str) -> Result<()> {
    match scope {
        "tenant" => Ok(()),
        "partner" => Err(Error::new(
            ErrorCode::InvalidPolicy,
            "partner-scoped policies do not exist in a single-node vault",
        )),
        other => Err(Error::new(
            ErrorCode::InvalidPolicy,
            format!("unknown policy scope {other:?}"),
        )),
    }
}

/// `GET /v1/policies`: a page of policies by name, without their rules.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicySummary>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// One policy in a list: what it is and how big, not its rules or bindings.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicySummary {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rule_count: usize,
    pub binding_count: usize,
    pub is_active: bool,
    pub scope: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Engine {
    fn subject(&self, caller: &Caller) -> Subject {
        Subject {
            identity_id: caller.identity_id.clone(),
            groups: caller.groups.clone(),
        }
    }

    /// A checker for many paths with one caller (listings): the policy set, subject and
    /// context are taken once, not per path.
    pub(crate) fn checker(
        &self,
        caller: &Caller,
        permission: Permission,
    ) -> impl Fn(&str) -> bool + use<> {
        let policies = read(&self.policies).clone();
        let subject = self.subject(caller);
        let ctx = Context {
            source_ip: caller.source_ip,
            mfa_verified: false,
            now: self.now(),
        };
        let root = caller.root;
        move |path: &str| root || evaluate(&policies, &subject, path, permission, &ctx).allowed
    }

    /// Token scope first (`insufficient_scope`), then, for path operations, a policy rule
    /// (`access_denied` or a condition's code). The root identity skips the policy check.
    pub fn authorize(
        &self,
        caller: &Caller,
        scope: Scope,
        target: Option<(&str, Permission)>,
    ) -> Result<()> {
        if !caller.scopes.allows(scope) {
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                format!("the token lacks the scope {scope}"),
            )
            .with("required_scope", scope.as_str())
            .with("token_scopes", caller.scopes.names()));
        }
        let Some((path, permission)) = target else {
            return Ok(());
        };
        if caller.root {
            return Ok(());
        }
        let policies = read(&self.policies).clone();
        let ctx = Context {
            source_ip: caller.source_ip,
            mfa_verified: false,
            now: self.now(),
        };
        let d = evaluate(&policies, &self.subject(caller), path, permission, &ctx);
        if d.allowed {
            return Ok(());
        }
        let code = d.error_code().unwrap_or(ErrorCode::AccessDenied);
        Err(Error::new(
            code,
            format!("{} may not {permission} {path}", caller.identity_id),
        )
        .with("path", path)
        .with("permission", permission.as_str()))
    }

    /// Creating, changing, deleting, binding and unbinding policies: `policies:write` **and**
    /// `admin`. A policy can grant anything on any path, so a token that could write policies
    /// without being admin could grant itself every secret (bind `**` to its own identity);
    /// the no-escalation rule of docs/SECURITY.md is that only an admin changes who may do
    /// what.
    fn may_change_policies(&self, caller: &Caller) -> Result<()> {
        self.authorize(caller, Scope::PoliciesWrite, None)?;
        if !caller.scopes.is_admin() {
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                "changing policies or their bindings needs an admin token: a policy can grant any path, so policies:write alone would let a token grant itself everything",
            )
            .with("required_scope", Scope::Admin.as_str())
            .with("token_scopes", caller.scopes.names()));
        }
        Ok(())
    }

    /// Policies by name, a page at a time (`limit`, `cursor`).
    pub fn list_policies(
        &self,
        caller: &Caller,
        include_inactive: bool,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<PolicyList> {
        self.authorize(caller, Scope::PoliciesRead, None)?;
        let policies = read(&self.policies).clone();
        let keyed: Vec<(String, PolicySummary)> = policies
            .iter()
            .filter(|p| include_inactive || p.policy.is_active)
            .map(|p| {
                let p = &p.policy;
                let view = PolicySummary {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    description: p.description.clone(),
                    rule_count: p.rules.len(),
                    binding_count: p.bindings.len(),
                    is_active: p.is_active,
                    scope: p.scope.clone(),
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                };
                (p.name.clone(), view)
            })
            .collect();
        let page = crate::cursor::page(keyed, limit, cursor)?;
        Ok(PolicyList {
            policies: page.items,
            cursor: page.cursor,
            has_more: page.has_more,
        })
    }

    /// Finds a policy by id (`pol_…`) or, for convenience, by name.
    fn find_policy(&self, id_or_name: &str) -> Result<Policy> {
        read(&self.policies)
            .iter()
            .find(|p| p.policy.id == id_or_name || p.policy.name == id_or_name)
            .map(|p| p.policy.clone())
            .ok_or_else(|| policy_not_found(id_or_name))
    }

    pub fn get_policy(&self, caller: &Caller, id: &str) -> Result<Policy> {
        self.authorize(caller, Scope::PoliciesRead, None)?;
        self.find_policy(id)
    }

    pub async fn create_policy(&self, caller: &Caller, req: PolicyRequest) -> Result<Policy> {
        self.may_change_policies(caller)?;
        let _change = self.config_change().await;
        let name = req
            .name
            .ok_or_else(|| Error::new(ErrorCode::InvalidPolicy, "name is required"))?;
        validate_name(&name)?;
        let rules = req
            .rules
            .ok_or_else(|| Error::new(ErrorCode::InvalidPolicy, "rules are required"))?;
        validate_rules(&rules)?;
        let scope = req.scope.unwrap_or_else(|| "tenant".into());
        check_scope_field(&scope)?;
        if read(&self.policies).iter().any(|p| p.policy.name == name) {
            return Err(Error::new(
                ErrorCode::PolicyExists,
                format!("a policy named {name} exists"),
            )
            .with("name", name));
        }
        let now = self.now();
        let policy = Policy {
            id: new_id("pol"),
            name,
            description: req.description.unwrap_or_default(),
            scope,
            is_active: req.is_active.unwrap_or(true),
            rules,
            bindings: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.save_policy(
            policy,
            PolicyChange::Created,
            &caller.identity_id.to_string(),
            caller.request_id.clone(),
        )
        .await
    }

    /// Writes a policy and swaps the compiled set once the batch is durable; the change's
    /// events commit with it.
    async fn save_policy(
        &self,
        policy: Policy,
        change: PolicyChange,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<Policy> {
        let must_be_new_name = matches!(change, PolicyChange::Created);
        let compiled = CompiledPolicy::compile(policy.clone())?;
        let cache = self.policies.clone();
        let (sink, actor, now) = (self.events.clone(), actor.to_owned(), self.now());
        self.vault
            .write(move |tx| {
                if must_be_new_name && read(&cache).iter().any(|p| p.policy.name == policy.name) {
                    return Err(Error::new(
                        ErrorCode::PolicyExists,
                        format!("a policy named {} exists", policy.name),
                    ));
                }
                tx.put(Table::Policies, policy.id.as_bytes(), &encode(&policy));
                let events = change
                    .events(&policy, &actor, now)
                    .into_iter()
                    .map(|e| e.in_request(request_id.as_deref()))
                    .collect();
                sink.enqueue_in(tx, events, &[], now);
                tx.on_commit(move || {
                    let mut guard = write(&cache);
                    let mut next: Vec<CompiledPolicy> = guard
                        .iter()
                        .filter(|p| p.policy.id != compiled.policy.id)
                        .cloned()
                        .collect();
                    next.push(compiled);
                    next.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
                    *guard = Arc::new(next);
                });
                Ok(policy)
            })
            .await
    }

    /// PUT (replace rules and metadata, keep bindings) or PATCH (any subset).
    pub async fn update_policy(
        &self,
        caller: &Caller,
        id: &str,
        req: PolicyRequest,
        replace: bool,
    ) -> Result<Policy> {
        self.may_change_policies(caller)?;
        let _change = self.config_change().await;
        let mut p = self.find_policy(id)?;
        if replace && (req.name.is_none() || req.rules.is_none()) {
            return Err(Error::new(
                ErrorCode::InvalidPolicy,
                "PUT replaces the policy: name and rules are required",
            ));
        }
        if let Some(name) = req.name {
            validate_name(&name)?;
            if name != p.name && read(&self.policies).iter().any(|o| o.policy.name == name) {
                return Err(Error::new(
                    ErrorCode::PolicyExists,
                    format!("a policy named {name} exists"),
                ));
            }
            p.name = name;
        }
        if let Some(rules) = req.rules {
            validate_rules(&rules)?;
            p.rules = rules;
        }
        if let Some(scope) = req.scope {
            check_scope_field(&scope)?;
            p.scope = scope;
        }
        if replace {
            p.description = req.description.unwrap_or_default();
            p.is_active = req.is_active.unwrap_or(true);
        } else {
            if let Some(d) = req.description {
                p.description = d;
            }
            if let Some(a) = req.is_active {
                p.is_active = a;
            }
        }
        p.updated_at = self.now();
        self.save_policy(
            p,
            PolicyChange::Updated,
            &caller.identity_id.to_string(),
            caller.request_id.clone(),
        )
        .await
    }

    pub async fn delete_policy(&self, caller: &Caller, id: &str, force: bool) -> Result<()> {
        self.may_change_policies(caller)?;
        let _change = self.config_change().await;
        let p = self.find_policy(id)?;
        if !p.bindings.is_empty() && !force {
            return Err(Error::new(
                ErrorCode::PolicyInUse,
                format!(
                    "policy {} has {} binding(s); pass force=true to delete them too",
                    p.name,
                    p.bindings.len()
                ),
            )
            .with("binding_count", p.bindings.len()));
        }
        let cache = self.policies.clone();
        let pid = p.id.clone();
        let now = self.now();
        let event = crate::events::Event::new(
            "policy.deleted",
            &caller.identity_id.to_string(),
            None,
            serde_json::json!({ "policy_id": p.id, "name": p.name }),
            now,
        )
        .in_request(caller.request_id.as_deref());
        let sink = self.events.clone();
        self.vault
            .write(move |tx| {
                tx.delete(Table::Policies, pid.as_bytes());
                sink.enqueue_in(tx, vec![event], &[], now);
                tx.on_commit(move || {
                    let mut guard = write(&cache);
                    *guard = Arc::new(
                        guard
                            .iter()
                            .filter(|c| c.policy.id != pid)
                            .cloned()
                            .collect(),
                    );
                });
                Ok::<_, Error>(())
            })
            .await
    }

    pub fn list_bindings(&self, caller: &Caller, id: &str) -> Result<Vec<Binding>> {
        self.authorize(caller, Scope::PoliciesRead, None)?;
        Ok(self.find_policy(id)?.bindings)
    }

    pub async fn create_binding(
        &self,
        caller: &Caller,
        id: &str,
        req: BindingRequest,
    ) -> Result<Binding> {
        self.may_change_policies(caller)?;
        let _change = self.config_change().await;
        let identity_id = IdentityId::parse(&req.identity_id)?;
        let identity_type = match req.identity_type.as_deref() {
            Some(t) => IdentityType::parse(t)?,
            None => identity_id.identity_type(),
        };
        if identity_type != identity_id.identity_type() {
            return Err(Error::new(
                ErrorCode::InvalidPolicy,
                format!("identity_type {identity_type} does not match {identity_id}"),
            ));
        }
        let now = self.now();
        if req.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::new(
                ErrorCode::InvalidPolicy,
                "expires_at is in the past",
            ));
        }
        let mut p = self.find_policy(id)?;
        if let Some(existing) = p.bindings.iter().find(|b| b.identity_id == identity_id) {
            return Ok(existing.clone());
        }
        let binding = Binding {
            id: new_id("bnd"),
            identity_type,
            identity_id,
            expires_at: req.expires_at,
            created_at: now,
        };
        p.bindings.push(binding.clone());
        p.updated_at = now;
        self.save_policy(
            p,
            PolicyChange::Bound(binding.clone()),
            &caller.identity_id.to_string(),
            caller.request_id.clone(),
        )
        .await?;
        Ok(binding)
    }

    pub async fn delete_binding(&self, caller: &Caller, id: &str, binding: &str) -> Result<()> {
        self.may_change_policies(caller)?;
        let _change = self.config_change().await;
        let mut p = self.find_policy(id)?;
        // A binding can be named by its id or by the identity it binds.
        let (gone, kept) = std::mem::take(&mut p.bindings)
            .into_iter()
            .partition(|b| b.id == binding || b.identity_id.as_str() == binding);
        p.bindings = kept;
        if gone.is_empty() {
            return Err(Error::new(
                ErrorCode::BindingNotFound,
                format!("policy {} has no binding {binding}", p.name),
            ));
        }
        p.updated_at = self.now();
        self.save_policy(
            p,
            PolicyChange::Unbound(gone),
            &caller.identity_id.to_string(),
            caller.request_id.clone(),
        )
        .await
        .map(|_| ())
    }

    /// Dry-run: would `identity_id` get `permission` on `path`? Explains the answer.
    pub fn test_policy(&self, caller: &Caller, req: PolicyTestRequest) -> Result<Decision> {
        self.authorize(caller, Scope::PoliciesRead, None)?;
        let identity_id = IdentityId::parse(&req.identity_id)?;
        let path = SecretPath::parse(&req.path)?;
        let permission = Permission::parse(&req.permission)?;
        let source_ip = match req.context.source_ip {
            Some(ip) => Some(ip.parse().map_err(|_| {
                Error::invalid_request(format!("invalid context.source_ip {ip:?}"))
            })?),
            None => None,
        };
        let ctx = Context {
            source_ip,
            mfa_verified: req.context.mfa_verified.unwrap_or(false),
            now: req.context.timestamp.unwrap_or_else(|| self.now()),
        };
        let subject = Subject {
            groups: self.groups_of(&identity_id),
            identity_id,
        };
        let policies = read(&self.policies).clone();
        Ok(evaluate(
            &policies,
            &subject,
            path.as_str(),
            permission,
            &ctx,
        ))
    }

    /// Removes every binding naming `identity` (when the identity is deleted).
    pub(crate) async fn unbind_everywhere(&self, identity: &IdentityId) -> Result<()> {
        let affected: Vec<Policy> = read(&self.policies)
            .iter()
            .filter(|p| p.policy.bindings.iter().any(|b| &b.identity_id == identity))
            .map(|p| p.policy.clone())
            .collect();
        for mut p in affected {
            let (gone, kept) = std::mem::take(&mut p.bindings)
                .into_iter()
                .partition(|b| &b.identity_id == identity);
            p.bindings = kept;
            p.updated_at = self.now();
            self.save_policy(p, PolicyChange::Unbound(gone), "system", None)
                .await?;
        }
        Ok(())
    }
}
