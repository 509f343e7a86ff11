use std::net::IpAddr;

use scaivault_core::identity::{IdentityId, IdentityType};
use scaivault_core::scope::ScopeSet;
use scaivault_core::time::Timestamp;

/// The tenant and partner every caller of a local vault belongs to (the reference is
/// multi-tenant; one vault is one tenant).
pub(crate) const LOCAL_TENANT: &str = "tnt_local";
pub(crate) const LOCAL_PARTNER: &str = "ptn_local";

/// An authenticated principal, as the engine sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity_id: IdentityId,
    pub identity_type: IdentityType,
    pub scopes: ScopeSet,
    pub groups: Vec<IdentityId>,
    /// The bootstrap root (from `init`/`dev`, or local mode): allowed everything, like Vault's
    /// root policy. Scopes are still checked (it has `admin`).
    pub root: bool,
    pub token_id: Option<String>,
    /// The request this call serves (set by the server), for the events it raises.
    pub request_id: Option<String>,
    pub token_expires_at: Option<Timestamp>,
    pub source_ip: Option<IpAddr>,
}

/// The identity the root token and local mode act as; it cannot be created through the API.
pub const ROOT_IDENTITY: &str = "user:root";

impl Caller {
    /// The operator holding the vault file and its passphrase (CLI `--vault FILE` mode).
    pub fn local_operator() -> Caller {
        Caller {
            identity_id: IdentityId::parse(ROOT_IDENTITY).expect("valid"),
            identity_type: IdentityType::User,
            scopes: ScopeSet::new(vec![scaivault_core::scope::Scope::Admin]),
            groups: Vec::new(),
            root: true,
            token_id: None,
            request_id: None,
            token_expires_at: None,
            source_ip: None,
        }
    }
}
