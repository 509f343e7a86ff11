//! API tokens: `skt_` + 256 random bits, shown once, stored only as a keyed hash.

use std::time::Duration;

use scaivault_core::duration::parse_duration;
use scaivault_core::identity::{IdentityId, IdentityType};
use scaivault_core::scope::{Scope, ScopeSet};
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode, Result};
use scaivault_crypto::{constant_time_eq, random_token_body};
use scaivault_store::Table;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::caller::{LOCAL_PARTNER, LOCAL_TENANT, ROOT_IDENTITY};
use crate::identities::identity_not_found;
use crate::records::{TokenKind, TokenRecord, new_id};
use crate::{Caller, Engine, encode, read, write};

pub const TOKEN_PREFIX: &str = "skt_";
const DEFAULT_TTL: Duration = Duration::from_secs(90 * 86_400);
const CLIENT_CREDENTIALS_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub identity_id: String,
    pub scopes: Vec<String>,
    /// Duration such as `90d`; `"never"` for no expiry (not recommended).
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A token just created: the only time its value exists outside the caller.
#[derive(Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub token_id: String,
    pub identity_id: IdentityId,
    pub identity_type: IdentityType,
    pub scopes: ScopeSet,
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IssuedToken {{ token_id: {}, identity_id: {}, token: [redacted] }}",
            self.token_id, self.identity_id
        )
    }
}

impl Drop for IssuedToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

fn auth_error(code: ErrorCode, msg: &str) -> Error {
    Error::new(code, msg)
}

/// A token as listed: never its value or its hash.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenView {
    pub token_id: String,
    pub name: Option<String>,
    /// `root`, `personal` or `client_credentials`.
    pub kind: String,
    pub identity_id: String,
    pub identity_type: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_by: String,
}

/// `GET /v1/auth/tokens`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `DELETE /v1/auth/tokens/{id}`: the token as it now is.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenRevoked {
    pub revoked: bool,
    pub token: TokenView,
}

/// The wire name of an enum that serialises to a string (`service_account`).
fn wire_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn view(t: &TokenRecord) -> TokenView {
    TokenView {
        token_id: t.id.clone(),
        name: t.name.clone(),
        kind: wire_name(&t.kind),
        identity_id: t.identity_id.to_string(),
        identity_type: wire_name(&t.identity_type),
        scopes: t.scopes.to_strings(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        created_by: t.created_by.clone(),
    }
}

/// `POST /v1/auth/introspect`: whether a token is live, and if so whose and what it may do.
/// An inactive one says only that (not whether it expired, was revoked or never existed).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub token: Option<ActiveToken>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActiveToken {
    pub identity_id: String,
    pub identity_type: IdentityType,
    pub tenant_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub token_id: Option<String>,
}

/// `POST /v1/auth/token`: the client-credentials grant's answer (RFC 6749 §4.4.3).
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenGrant {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The token's scopes, space-separated.
    pub scope: String,
    pub token_id: String,
}

/// The token is the secret: wiped from memory when the answer has been sent.
impl Drop for TokenGrant {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.access_token);
    }
}

/// The token is the secret: `Debug` never shows it.
impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("token_id", &self.token_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The caller as the vault sees it (`GET /v1/auth/whoami`).
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Whoami {
    pub identity_id: String,
    /// `user`, `service_account` or `group`.
    pub identity_type: String,
    pub display_name: String,
    pub tenant_id: String,
    pub partner_id: String,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    pub mfa_verified_at: Option<Timestamp>,
    pub token_expires_at: Option<Timestamp>,
    /// None for the local operator (`--vault FILE`), who has no token.
    pub token_id: Option<String>,
}

impl Engine {
    async fn store_token(&self, record: TokenRecord) -> Result<()> {
        let cache = self.tokens.clone();
        let identities = self.identities.clone();
        self.vault
            .write(move |tx| {
                // Checked again in the writer's turn, where memory holds every node's commits:
                // an identity deleted, or a credential revoked, on another node after this
                // request checked it would otherwise get a token its revocation never saw.
                if record.kind != TokenKind::Root {
                    let ix = read(&identities);
                    let who = ix
                        .by_id
                        .get(record.identity_id.as_str())
                        .ok_or_else(|| identity_not_found(record.identity_id.as_str()))?;
                    let credential = match record.kind {
                        TokenKind::ClientCredentials => record
                            .name
                            .as_deref()
                            .and_then(|n| n.strip_prefix(MINTED_PREFIX)),
                        _ => None,
                    };
                    if let Some(c) = credential
                        && !who.credentials.iter().any(|x| x.id == c)
                    {
                        return Err(Error::new(
                            ErrorCode::InvalidCredentials,
                            "invalid client_id or client_secret",
                        ));
                    }
                }
                // A child token whose parent was revoked meanwhile (here or on another node)
                // would outlive the revocation that was to take it along.
                if let Some(parent) = crate::records::parent_of(&record)
                    && !read(&cache)
                        .values()
                        .any(|t| t.id == parent && t.revoked_at.is_none())
                {
                    return Err(Error::new(ErrorCode::TokenInvalid, "the token was revoked"));
                }
                tx.put(Table::Tokens, record.id.as_bytes(), &encode(&record));
                tx.on_commit(move || {
                    write(&cache).insert(record.hash, record);
                });
                Ok::<_, Error>(())
            })
            .await
    }

    async fn mint(
        &self,
        kind: TokenKind,
        identity_id: IdentityId,
        scopes: ScopeSet,
        ttl: Option<Duration>,
        name: Option<String>,
        created_by: String,
    ) -> Result<IssuedToken> {
        let token = format!(
            "{TOKEN_PREFIX}{}",
            Zeroizing::new(random_token_body()).as_str()
        );
        let now = self.now();
        let record = TokenRecord {
            id: new_id("tok"),
            hash: self.vault.token_hasher().hash(&token),
            kind,
            name,
            identity_type: identity_id.identity_type(),
            identity_id: identity_id.clone(),
            scopes: scopes.clone(),
            created_at: now,
            expires_at: ttl.map(|d| now.plus(d)),
            revoked_at: None,
            created_by,
        };
        let issued = IssuedToken {
            token,
            token_id: record.id.clone(),
            identity_type: record.identity_type,
            identity_id,
            scopes,
            expires_at: record.expires_at,
        };
        self.store_token(record).await?;
        Ok(issued)
    }

    /// The bootstrap root token (scope `admin`, no policy check), from `init` and `dev`.
    pub async fn create_root_token(&self, ttl: Option<Duration>) -> Result<IssuedToken> {
        let id = IdentityId::parse(ROOT_IDENTITY).expect("valid");
        self.mint(
            TokenKind::Root,
            id,
            ScopeSet::new(vec![Scope::Admin]),
            ttl,
            Some("root".into()),
            "system:init".into(),
        )
        .await
    }

    pub async fn create_token(&self, caller: &Caller, req: CreateToken) -> Result<IssuedToken> {
        self.authorize(caller, Scope::Admin, None)?;
        // In turn with identity deletion, which revokes the identity's tokens: a token minted
        // meanwhile would outlive its identity, and come back to life if the id is reused.
        let _change = self.config_change().await;
        let id = IdentityId::parse(&req.identity_id)?;
        if id.identity_type() == IdentityType::Group {
            return Err(Error::new(
                ErrorCode::InvalidIdentity,
                "tokens are issued to users and service accounts, not groups",
            ));
        }
        if self.identity(id.as_str()).is_none() {
            return Err(identity_not_found(id.as_str()));
        }
        let scopes = ScopeSet::parse_list(&req.scopes)?;
        if scopes.iter().next().is_none() {
            return Err(Error::invalid_request("a token needs at least one scope"));
        }
        let ttl = match req.ttl.as_deref() {
            None => Some(DEFAULT_TTL),
            Some("never") => None,
            Some(d) => Some(parse_duration(d)?),
        };
        self.mint(
            TokenKind::Personal,
            id,
            scopes,
            ttl,
            req.name,
            caller.identity_id.to_string(),
        )
        .await
    }

    /// Resolves a bearer token to a caller, or answers with the spec's 401 codes.
    /// Whether the token `caller` came with still stands — not revoked, not expired, its
    /// identity not deleted — for a request that waits (a long-poll) before it answers.
    pub(crate) fn still_authenticated(&self, caller: &Caller) -> bool {
        let Some(id) = &caller.token_id else {
            return true; // the local operator holds the file, not a token
        };
        let record = read(&self.tokens).values().find(|r| &r.id == id).cloned();
        let Some(r) = record else {
            return false;
        };
        r.revoked_at.is_none()
            && r.expires_at.is_none_or(|e| e > self.now())
            && (r.kind == TokenKind::Root || self.identity(r.identity_id.as_str()).is_some())
    }

    pub fn authenticate(&self, token: &str, source_ip: Option<std::net::IpAddr>) -> Result<Caller> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Err(auth_error(
                ErrorCode::TokenInvalid,
                "the token is not a ScaiVault token",
            ));
        }
        // Another node may have revoked it, or changed what it may do, a moment ago.
        self.follow()?;
        let hash = self.vault.token_hasher().hash(token);
        let record = {
            let tokens = read(&self.tokens);
            // The map is keyed by a keyed hash the caller cannot compute, so the lookup leaks
            // nothing useful; the final comparison is constant-time all the same.
            match tokens.get(&hash) {
                Some(r) if constant_time_eq(&r.hash, &hash) => r.clone(),
                _ => {
                    return Err(auth_error(
                        ErrorCode::TokenInvalid,
                        "the token is not valid",
                    ));
                }
            }
        };
        if record.revoked_at.is_some() {
            return Err(auth_error(
                ErrorCode::TokenRevoked,
                "the token has been revoked",
            ));
        }
        if record.expires_at.is_some_and(|e| e <= self.now()) {
            return Err(auth_error(ErrorCode::TokenExpired, "the token has expired"));
        }
        let root = record.kind == TokenKind::Root;
        if !root && self.identity(record.identity_id.as_str()).is_none() {
            return Err(auth_error(
                ErrorCode::TokenRevoked,
                "the token's identity no longer exists",
            ));
        }
        Ok(Caller {
            groups: self.groups_of(&record.identity_id),
            identity_id: record.identity_id,
            identity_type: record.identity_type,
            scopes: record.scopes,
            root,
            token_id: Some(record.id),
            request_id: None,
            token_expires_at: record.expires_at,
            source_ip,
        })
    }

    pub fn whoami(&self, caller: &Caller) -> Whoami {
        let display = self
            .identity(caller.identity_id.as_str())
            .map(|r| r.display_name)
            .unwrap_or_else(|| "root".to_owned());
        Whoami {
            identity_id: caller.identity_id.to_string(),
            identity_type: wire_name(&caller.identity_type),
            display_name: display,
            tenant_id: LOCAL_TENANT.into(),
            partner_id: LOCAL_PARTNER.into(),
            scopes: caller.scopes.to_strings(),
            groups: caller.groups.iter().map(|g| g.to_string()).collect(),
            roles: self.roles_of(caller),
            mfa_verified_at: None,
            token_expires_at: caller.token_expires_at,
            token_id: caller.token_id.clone(),
        }
    }

    pub fn introspect(&self, caller: &Caller, token: &str) -> Result<Introspection> {
        self.authorize(caller, Scope::Admin, None)?;
        Ok(match self.authenticate(token, None) {
            Ok(c) => Introspection {
                active: true,
                token: Some(ActiveToken {
                    issued_at: read(&self.tokens)
                        .get(&self.vault.token_hasher().hash(token))
                        .map(|r| r.created_at),
                    identity_id: c.identity_id.to_string(),
                    identity_type: c.identity_type,
                    tenant_id: LOCAL_TENANT.into(),
                    scopes: c.scopes.to_strings(),
                    expires_at: c.token_expires_at,
                    token_id: c.token_id,
                }),
            },
            Err(_) => Introspection {
                active: false,
                token: None,
            },
        })
    }

    pub fn list_tokens(&self, caller: &Caller, identity: Option<&str>) -> Result<TokenList> {
        self.authorize(caller, Scope::Admin, None)?;
        let mut all: Vec<TokenRecord> = read(&self.tokens)
            .values()
            .filter(|t| identity.is_none_or(|i| t.identity_id.as_str() == i))
            .cloned()
            .collect();
        all.sort_by_key(|t| t.created_at);
        Ok(TokenList {
            tokens: all.iter().map(view).collect(),
        })
    }

    /// Revokes a token by id, and the tokens made with it; takes effect for the next request.
    pub async fn revoke_token(&self, caller: &Caller, token_id: &str) -> Result<TokenView> {
        self.authorize(caller, Scope::Admin, None)?;
        self.revoke_with_children(token_id).await
    }

    /// Vault's `auth/token/revoke-self`: the caller's own token, and the tokens made with it.
    pub async fn revoke_own_token(&self, caller: &Caller) -> Result<TokenView> {
        let Some(id) = caller.token_id.clone() else {
            return Err(Error::invalid_request(
                "the local operator holds the vault file, not a token",
            ));
        };
        self.revoke_with_children(&id).await
    }

    async fn revoke_with_children(&self, token_id: &str) -> Result<TokenView> {
        let mut record = read(&self.tokens)
            .values()
            .find(|t| t.id == token_id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::TokenNotFound, format!("no token {token_id}")))?;
        let id = record.id.clone();
        self.revoke_live_tokens(move |t| t.id == id).await?;
        record.revoked_at = record.revoked_at.or(Some(self.now()));
        Ok(view(&record))
    }

    /// Vault's `auth/token/create`: a token for the caller's own identity made with the
    /// caller's token, never more than it: its scopes among the parent's (all of them when
    /// none are asked), its life within the parent's, and revoked with the parent.
    pub async fn create_child_token(
        &self,
        caller: &Caller,
        scopes: Option<Vec<String>>,
        ttl: Option<Duration>,
        name: Option<String>,
    ) -> Result<IssuedToken> {
        let Some(parent_id) = caller.token_id.clone() else {
            return Err(Error::invalid_request(
                "a child token is made with a token; the local operator has none",
            ));
        };
        let _change = self.config_change().await;
        let parent = read(&self.tokens)
            .values()
            .find(|t| t.id == parent_id && t.revoked_at.is_none())
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::TokenInvalid, "the token was revoked"))?;
        let scopes = match scopes {
            None => parent.scopes.clone(),
            Some(asked) => {
                let asked = ScopeSet::parse_list(&asked)?;
                if let Some(more) = asked.iter().find(|s| !parent.scopes.allows(*s)) {
                    return Err(Error::new(
                        ErrorCode::InsufficientScope,
                        format!("a child token cannot have the scope {more}: its parent lacks it"),
                    )
                    .with("required_scope", more.as_str()));
                }
                asked
            }
        };
        if scopes.iter().next().is_none() {
            return Err(Error::invalid_request("a token needs at least one scope"));
        }
        let now = self.now();
        let left = parent.expires_at.map(|e| {
            Duration::from_secs(u64::try_from(e.unix_seconds() - now.unix_seconds()).unwrap_or(0))
        });
        let ttl = match (ttl.unwrap_or(DEFAULT_TTL), left) {
            (_, Some(left)) if left.is_zero() => {
                return Err(Error::new(ErrorCode::TokenExpired, "the token has expired"));
            }
            (asked, Some(left)) => asked.min(left),
            (asked, None) => asked,
        };
        let kind = match parent.kind {
            TokenKind::Root => TokenKind::Root,
            _ => TokenKind::Personal,
        };
        let name = name.map(|n| n.chars().take(64).collect());
        self.mint(
            kind,
            parent.identity_id.clone(),
            scopes,
            Some(ttl),
            name,
            format!("{}{}", crate::records::MADE_WITH, parent.id),
        )
        .await
    }

    /// Revokes the live tokens the client credential `credential_id` minted.
    pub(crate) async fn revoke_tokens_minted_by(
        &self,
        identity: &IdentityId,
        credential_id: &str,
    ) -> Result<usize> {
        let name = minted_name(credential_id);
        let identity = identity.clone();
        self.revoke_live_tokens(move |t| {
            t.identity_id == identity && t.name.as_deref() == Some(name.as_str())
        })
        .await
    }

    /// Revokes the live tokens `which` picks, in one commit: a crash or a full disk half-way
    /// can never leave some of an identity's tokens live after the caller was told they were
    /// revoked. They are picked in the writer's turn, where memory holds every node's
    /// commits, so a token another node minted a moment before is among them.
    async fn revoke_live_tokens(
        &self,
        which: impl Fn(&TokenRecord) -> bool + Send + 'static,
    ) -> Result<usize> {
        let (now, cache) = (self.now(), self.tokens.clone());
        self.vault
            .write(move |tx| {
                Ok::<_, Error>(crate::records::revoke_tokens_in(tx, &cache, now, which))
            })
            .await
    }

    /// Deletes the records of tokens that expired more than a day ago: they can never be used
    /// again, and the audit log keeps who used them. Without this, a client-credentials
    /// service minting a token an hour grows the tokens table (and the in-memory map read
    /// at every unseal) forever. Returns how many went.
    pub async fn prune_expired_tokens(&self) -> Result<usize> {
        let cut = self.now().minus(Duration::from_secs(24 * 3600));
        let gone: Vec<TokenRecord> = read(&self.tokens)
            .values()
            .filter(|t| t.expires_at.is_some_and(|e| e <= cut))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let n = gone.len();
        let cache = self.tokens.clone();
        self.vault
            .write(move |tx| {
                for t in &gone {
                    tx.delete(Table::Tokens, t.id.as_bytes());
                }
                tx.on_commit(move || {
                    let mut map = write(&cache);
                    for t in gone {
                        map.remove(&t.hash);
                    }
                });
                Ok::<_, Error>(())
            })
            .await?;
        Ok(n)
    }

    pub(crate) async fn revoke_tokens_of(&self, identity: &IdentityId) -> Result<()> {
        let identity = identity.clone();
        self.revoke_live_tokens(move |t| t.identity_id == identity)
            .await
            .map(drop)
    }

    /// The client-credentials grant: a service account's id and secret → a 1-hour token.
    ///
    /// `admit` runs once the secret is verified and before a token is minted: the transport's
    /// rate limit per client, which must not be spendable by someone who does not hold the
    /// secret (else anyone could lock a service out by sending its id with wrong secrets).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
        admit: impl FnOnce() -> Result<()>,
    ) -> Result<TokenGrant> {
        let bad = || {
            Error::new(
                ErrorCode::InvalidCredentials,
                "invalid client_id or client_secret",
            )
        };
        // The secret is hashed whether or not the id exists, so the time taken does not tell
        // which service accounts exist.
        let presented = self.vault.token_hasher().hash(client_secret);
        // In turn with identity deletion and credential changes (see `create_token`).
        let _change = self.config_change().await;
        // A credential revoked on another node fails here from the next request on.
        self.follow()?;
        let r = self.identity(client_id).ok_or_else(bad)?;
        let cred = r
            .credentials
            .iter()
            .find(|c| constant_time_eq(&c.secret_hash, &presented))
            .ok_or_else(bad)?
            .clone();
        admit()?;
        let issued = self
            .mint(
                TokenKind::ClientCredentials,
                r.id.clone(),
                cred.scopes.clone(),
                Some(CLIENT_CREDENTIALS_TTL),
                Some(minted_name(&cred.id)),
                r.id.to_string(),
            )
            .await?;
        Ok(TokenGrant {
            access_token: issued.token.clone(),
            token_type: "Bearer".into(),
            expires_in: CLIENT_CREDENTIALS_TTL.as_secs(),
            scope: issued.scopes.names().join(" "),
            token_id: issued.token_id.clone(),
        })
    }
}

/// The name of a token minted by the client credential `credential_id`.
/// The name of a token a client credential minted: the prefix, then the credential's id.
const MINTED_PREFIX: &str = "client-credentials ";

fn minted_name(credential_id: &str) -> String {
    format!("{MINTED_PREFIX}{credential_id}")
}
