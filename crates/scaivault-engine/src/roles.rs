//! Admin roles and identity resolution (reference §1.2, §2.10).
//!
//! The reference's roles — `super_admin`, `partner_admin`, `tenant_admin` — are held by users.
//! In this vault they are recorded on the identity and reported (`whoami`, `resolve`), and
//! they decide who may change roles: only a `super_admin` or `partner_admin`, only a
//! `super_admin` grants or takes away `super_admin`, and nobody raises their own. What a caller may do with
//! secrets is still its token's scopes and its policies; the bootstrap root is `super_admin`.

use scaivault_core::identity::{IdentityId, IdentityType};
use scaivault_core::scope::Scope;
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};

use crate::identities::identity_not_found;
use crate::{Caller, Engine};

/// The roles there are, with what each is for.
pub const ROLES: &[(&str, &str)] = &[
    (
        "super_admin",
        "runs the vault: may change anyone's roles, grant super_admin included",
    ),
    (
        "partner_admin",
        "may change roles, except grant super_admin",
    ),
    (
        "tenant_admin",
        "administers the tenant's secrets and identities",
    ),
];

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RoleInfo {
    pub name: String,
    pub description: String,
}

/// `GET /v1/identity/roles`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RoleList {
    pub roles: Vec<RoleInfo>,
}

/// A user's roles: `GET`/`PUT /v1/identity/users/{user_id}/roles`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UserRoles {
    #[schemars(with = "String")]
    pub user_id: IdentityId,
    pub roles: Vec<String>,
}

/// `GET /v1/identity/resolve/{identity_type}/{identity_id}`: who an identity is, its groups
/// and roles.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResolvedIdentity {
    #[schemars(with = "String")]
    pub identity_id: IdentityId,
    #[schemars(with = "String")]
    pub identity_type: IdentityType,
    pub display_name: String,
    pub tenant_id: String,
    pub partner_id: String,
    #[schemars(with = "Vec<String>")]
    pub groups: Vec<IdentityId>,
    pub roles: Vec<String>,
    pub created_at: Timestamp,
}

/// `identity_id` with its type's prefix, whether or not it was given (`alice` or `user:alice`).
fn full_id(kind: IdentityType, id: &str) -> Result<IdentityId> {
    let prefix = match kind {
        IdentityType::User => "user:",
        IdentityType::ServiceAccount => "sa:",
        IdentityType::Group => "group:",
    };
    let full = if id.starts_with(prefix) {
        id.to_owned()
    } else {
        format!("{prefix}{id}")
    };
    IdentityId::parse(&full)
}

impl Engine {
    /// The roles `caller` holds: the bootstrap root is `super_admin`.
    pub fn roles_of(&self, caller: &Caller) -> Vec<String> {
        if caller.root {
            return vec!["super_admin".into()];
        }
        self.identity(caller.identity_id.as_str())
            .map(|r| r.roles)
            .unwrap_or_default()
    }

    /// The roles there are (any authenticated caller may ask).
    pub fn assignable_roles(&self) -> RoleList {
        RoleList {
            roles: ROLES
                .iter()
                .map(|(name, description)| RoleInfo {
                    name: (*name).into(),
                    description: (*description).into(),
                })
                .collect(),
        }
    }

    pub fn user_roles(&self, caller: &Caller, user_id: &str) -> Result<UserRoles> {
        self.authorize(caller, Scope::IdentityRead, None)?;
        let id = full_id(IdentityType::User, user_id)?;
        let r = self
            .identity(id.as_str())
            .ok_or_else(|| identity_not_found(id.as_str()))?;
        Ok(UserRoles {
            user_id: r.id,
            roles: r.roles,
        })
    }

    /// Replaces a user's roles under the reference's rules (see the module's doc).
    pub async fn set_user_roles(
        &self,
        caller: &Caller,
        user_id: &str,
        roles: Vec<String>,
    ) -> Result<UserRoles> {
        self.authorize(caller, Scope::IdentityAdmin, None)?;
        let id = full_id(IdentityType::User, user_id)?;
        let mut wanted: Vec<String> = Vec::new();
        for role in roles {
            if !ROLES.iter().any(|(r, _)| *r == role) {
                let known: Vec<&str> = ROLES.iter().map(|(r, _)| *r).collect();
                return Err(Error::new(
                    ErrorCode::InvalidRole,
                    format!("no role {role:?} (there are {})", known.join(", ")),
                ));
            }
            if !wanted.contains(&role) {
                wanted.push(role);
            }
        }
        let mine = self.roles_of(caller);
        let has = |r: &str| mine.iter().any(|m| m == r);
        if !has("super_admin") && !has("partner_admin") {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "only a super_admin or partner_admin may change roles",
            ));
        }
        let _change = self.config_change().await;
        let mut record = self
            .identity(id.as_str())
            .ok_or_else(|| identity_not_found(id.as_str()))?;
        let adds = |r: &str| wanted.iter().any(|w| w == r) && !record.roles.iter().any(|h| h == r);
        let removes =
            |r: &str| record.roles.iter().any(|h| h == r) && !wanted.iter().any(|w| w == r);
        if (adds("super_admin") || removes("super_admin")) && !has("super_admin") {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "only a super_admin may grant or take away super_admin",
            ));
        }
        if record.id == caller.identity_id && wanted.iter().any(|w| adds(w)) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                "nobody may raise their own roles",
            ));
        }
        record.roles = wanted;
        let saved = self.save_identity(record).await?;
        Ok(UserRoles {
            user_id: saved.id,
            roles: saved.roles,
        })
    }

    /// Who `identity_id` of `identity_type` is, with its groups and roles.
    pub fn resolve_identity(
        &self,
        caller: &Caller,
        identity_type: &str,
        identity_id: &str,
    ) -> Result<ResolvedIdentity> {
        self.authorize(caller, Scope::IdentityRead, None)?;
        let kind = IdentityType::parse(identity_type)?;
        let id = full_id(kind, identity_id).map_err(|_| identity_not_found(identity_id))?;
        let r = self
            .identity(id.as_str())
            .filter(|r| r.identity_type == kind)
            .ok_or_else(|| identity_not_found(id.as_str()))?;
        Ok(ResolvedIdentity {
            groups: self.groups_of(&r.id),
            identity_id: r.id,
            identity_type: r.identity_type,
            display_name: r.display_name,
            tenant_id: crate::caller::LOCAL_TENANT.into(),
            partner_id: crate::caller::LOCAL_PARTNER.into(),
            roles: r.roles,
            created_at: r.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_take_their_types_prefix() {
        assert_eq!(
            full_id(IdentityType::User, "alice").unwrap().as_str(),
            "user:alice"
        );
        assert_eq!(
            full_id(IdentityType::User, "user:alice").unwrap().as_str(),
            "user:alice"
        );
        assert_eq!(
            full_id(IdentityType::Group, "sre").unwrap().as_str(),
            "group:sre"
        );
    }
}
