//! Identity ids: `user:<email>`, `sa:<name>`, `group:<name>`. ScaiVault keeps its own registry of
//! them (the hosted product asks an external identity provider instead).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityType {
    User,
    ServiceAccount,
    Group,
}

impl IdentityType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityType::User => "user",
            IdentityType::ServiceAccount => "service_account",
            IdentityType::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Result<IdentityType, Error> {
        match s {
            "user" => Ok(IdentityType::User),
            "service_account" | "sa" => Ok(IdentityType::ServiceAccount),
            "group" => Ok(IdentityType::Group),
            _ => Err(Error::new(
                ErrorCode::InvalidIdentity,
                format!("unknown identity_type {s:?} (user, service_account, group)"),
            )),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            IdentityType::User => "user:",
            IdentityType::ServiceAccount => "sa:",
            IdentityType::Group => "group:",
        }
    }
}

impl fmt::Display for IdentityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated identity id such as `sa:billing-prod`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdentityId(String);

const MAX_ID_LEN: usize = 256;

impl IdentityId {
    pub fn parse(raw: &str) -> Result<IdentityId, Error> {
        let bad = |why: &str| {
            Error::new(
                ErrorCode::InvalidIdentity,
                format!("invalid identity id: {why}"),
            )
            .with("identity_id", raw.chars().take(80).collect::<String>())
        };
        if raw.len() > MAX_ID_LEN {
            return Err(bad("longer than 256 characters"));
        }
        let Some((kind, name)) = raw.split_once(':') else {
            return Err(bad("expected user:<email>, sa:<name> or group:<name>"));
        };
        if !matches!(kind, "user" | "sa" | "group") {
            return Err(bad("expected user:<email>, sa:<name> or group:<name>"));
        }
        if name.is_empty() {
            return Err(bad("the name after ':' is empty"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@+".contains(c);
        if !name.chars().all(allowed) {
            return Err(bad("names use letters, digits and - _ . @ +"));
        }
        Ok(IdentityId(raw.to_owned()))
    }

    pub fn identity_type(&self) -> IdentityType {
        for t in [
            IdentityType::User,
            IdentityType::ServiceAccount,
            IdentityType::Group,
        ] {
            if self.0.starts_with(t.prefix()) {
                return t;
            }
        }
        unreachable!("IdentityId is validated at construction")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdentityId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        IdentityId::parse(&s)
    }
}

impl From<IdentityId> for String {
    fn from(id: IdentityId) -> String {
        id.0
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            IdentityId::parse("user:alice@acme.example")
                .unwrap()
                .identity_type(),
            IdentityType::User
        );
        assert_eq!(
            IdentityId::parse("sa:billing-prod")
                .unwrap()
                .identity_type(),
            IdentityType::ServiceAccount
        );
        assert_eq!(
            IdentityId::parse("group:sre").unwrap().identity_type(),
            IdentityType::Group
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "alice",
            "root:x",
            "sa:",
            "sa:a b",
            "sa:a/b",
            "user:<script>",
        ] {
            assert_eq!(
                IdentityId::parse(bad).unwrap_err().code,
                ErrorCode::InvalidIdentity,
                "{bad:?}"
            );
        }
    }
}
