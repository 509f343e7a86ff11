//! Token scopes and policy permissions. A request needs both: the scope on its token and a
//! policy rule granting the permission on the path (spec §1.3, §2.12).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    SecretsRead,
    SecretsWrite,
    SecretsDelete,
    SecretsList,
    SecretsRotate,
    PoliciesRead,
    PoliciesWrite,
    AuditRead,
    AuditExport,
    IdentityRead,
    IdentityAdmin,
    SubscriptionsRead,
    SubscriptionsWrite,
    Admin,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::SecretsRead,
        Scope::SecretsWrite,
        Scope::SecretsDelete,
        Scope::SecretsList,
        Scope::SecretsRotate,
        Scope::PoliciesRead,
        Scope::PoliciesWrite,
        Scope::AuditRead,
        Scope::AuditExport,
        Scope::IdentityRead,
        Scope::IdentityAdmin,
        Scope::SubscriptionsRead,
        Scope::SubscriptionsWrite,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SecretsRead => "secrets:read",
            Scope::SecretsWrite => "secrets:write",
            Scope::SecretsDelete => "secrets:delete",
            Scope::SecretsList => "secrets:list",
            Scope::SecretsRotate => "secrets:rotate",
            Scope::PoliciesRead => "policies:read",
            Scope::PoliciesWrite => "policies:write",
            Scope::AuditRead => "audit:read",
            Scope::AuditExport => "audit:export",
            Scope::IdentityRead => "identity:read",
            Scope::IdentityAdmin => "identity:admin",
            Scope::SubscriptionsRead => "subscriptions:read",
            Scope::SubscriptionsWrite => "subscriptions:write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, Error> {
        Scope::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                Error::new(ErrorCode::InvalidRequest, format!("unknown scope {s:?}")).with(
                    "known",
                    Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// A set of scopes as carried by a token. `admin` implies every other scope (single-node
/// decision, spec §1.3 marks it inferred).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn new(mut scopes: Vec<Scope>) -> ScopeSet {
        scopes.sort();
        scopes.dedup();
        ScopeSet(scopes)
    }

    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<ScopeSet, Error> {
        let scopes = items
            .iter()
            .map(|s| Scope::parse(s.as_ref().trim()))
            .collect::<Result<_, _>>()?;
        Ok(ScopeSet::new(scopes))
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&needed)
    }

    pub fn is_admin(&self) -> bool {
        self.0.contains(&Scope::Admin)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.as_str()).collect()
    }

    /// The names as owned strings, for answers that carry them.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    Write,
    Delete,
    List,
    Rotate,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::List => "list",
            Permission::Rotate => "rotate",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Permission, Error> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "delete" => Ok(Permission::Delete),
            "list" => Ok(Permission::List),
            "rotate" => Ok(Permission::Rotate),
            "admin" => Ok(Permission::Admin),
            _ => Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("unknown permission {s:?} (read, write, delete, list, rotate, admin)"),
            )),
        }
    }

    /// `admin` grants every permission.
    pub fn grants(self, needed: Permission) -> bool {
        self == Permission::Admin || self == needed
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_every_scope() {
        let s = ScopeSet::parse_list(&["admin"]).unwrap();
        assert!(Scope::ALL.iter().all(|sc| s.allows(*sc)));
        let r = ScopeSet::parse_list(&["secrets:read", "secrets:read"]).unwrap();
        assert!(r.allows(Scope::SecretsRead));
        assert!(!r.allows(Scope::SecretsWrite));
        assert_eq!(r.names(), vec!["secrets:read"]);
        assert!(ScopeSet::parse_list(&["secrets:steal"]).is_err());
    }

    #[test]
    fn admin_permission_grants_all() {
        assert!(Permission::Admin.grants(Permission::Delete));
        assert!(!Permission::Read.grants(Permission::Write));
    }
}
