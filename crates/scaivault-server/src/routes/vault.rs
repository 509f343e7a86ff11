//! The Vault-compatible surface (issue #22): KV version 2 at the mount `secret/`, and enough
//! of `sys` and `auth/token` for Vault and OpenBao clients (the `vault`/`bao` CLI, hvac) to
//! find the mount and check their token.
//!
//! Every route here is declared in the route table like any other, so it passes the same
//! guard: the same token (also accepted as `X-Vault-Token`), scope, rate limit and audit
//! entry as its ScaiVault equivalent, and the handlers call the same engine methods, which
//! check the caller's path policy. Only the shapes differ: Vault's JSON answers here, and
//! Vault's error shape (`{"errors": [...]}`) for every path of this surface ([`is_vault_path`],
//! rendered by the outer middleware).
//!
//! A ScaiVault secret at `environments/production/billing/stripe` is the KV secret
//! `secret/environments/production/billing/stripe`: the same record, the same versions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use scaivault_core::scope::{Permission, Scope};
use scaivault_core::time::Timestamp;
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{SecretData, WriteOptions, WriteRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::raw_tail;
use crate::context::{AuditNote, AuditRecorded, Auth, HandlerAudit, RequestMeta, unrecorded};
use crate::error::ApiError;
use crate::json::{ApiQuery, VaultJson};
use crate::state::AppState;

/// The one mount this server has: KV version 2, where ScaiVault's secrets are.
pub(crate) const KV_MOUNT: &str = "secret/";

/// Whether a request path belongs to the Vault-compatible surface (its errors take Vault's
/// shape).
pub(crate) fn is_vault_path(path: &str) -> bool {
    path.starts_with("/v1/secret/")
        || path.starts_with("/v1/auth/token/")
        || path.starts_with("/v1/auth/approle/")
        || matches!(
            path,
            "/v1/sys/health" | "/v1/sys/seal-status" | "/v1/sys/mounts"
        )
        || path.starts_with("/v1/sys/internal/ui/mounts")
}

/// What a Vault client's request needs before routing: refused if it asks for what this
/// server does not do, and a listing made a route of its own. Vault's clients list with the
/// `LIST` method (hvac), or `GET …?list=true` (the Go client turns `LIST` into that). Either becomes `GET /v1/secret/list/{path}`, a route of its own,
/// so that a listing needs `secrets:list` and is audited as `list`, as `GET /v1/secrets` is.
/// Applied before routing (the router matches on the method).
pub(crate) async fn vault_request(mut req: Request) -> Result<Request, Response> {
    // What this server does not do must not be silently skipped: a client that asked for a
    // wrapped answer would get the secret itself, one that named a namespace another's.
    if is_vault_path(req.uri().path()) {
        let asked = |h: &str| {
            req.headers()
                .get(h)
                .is_some_and(|v| !matches!(v.to_str().map(str::trim), Ok("" | "root" | "/")))
        };
        let refused = if asked("x-vault-wrap-ttl") {
            Some(
                "response wrapping is not supported: ScaiVault does not answer with wrapping tokens",
            )
        } else if asked("x-vault-namespace") {
            Some("namespaces are not supported: ScaiVault has one namespace")
        } else {
            None
        };
        if let Some(why) = refused {
            return Err(vault_error(
                StatusCode::BAD_REQUEST,
                &Error::new(ErrorCode::InvalidRequest, why),
            ));
        }
    }
    let path = req.uri().path();
    let Some(tail) = path.strip_prefix("/v1/secret/metadata") else {
        return Ok(req);
    };
    let query = req.uri().query().unwrap_or("");
    let listed_by_query = query.split('&').any(|p| p == "list=true");
    let list_method = req.method().as_str() == "LIST";
    if !(list_method || (req.method() == Method::GET && listed_by_query)) {
        return Ok(req);
    }
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| *p != "list=true" && !p.is_empty())
        .collect();
    // The mount's root lists at a route of its own (a `{*path}` tail is never empty).
    let tail = tail.trim_end_matches('/');
    let mut uri = match tail {
        "" => "/v1/secret/list".to_owned(),
        t => format!("/v1/secret/list{t}"),
    };
    if !rest.is_empty() {
        uri.push('?');
        uri.push_str(&rest.join("&"));
    }
    if let Ok(u) = uri.parse::<Uri>() {
        *req.uri_mut() = u;
        *req.method_mut() = Method::GET;
    }
    Ok(req)
}

/// Vault's envelope around what a route answers. Serialized straight into the answer's
/// bytes: a secret's fields are never copied into an intermediate JSON tree.
#[derive(Serialize)]
pub struct Envelope<T> {
    request_id: String,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: T,
    wrap_info: Option<()>,
    warnings: Option<Vec<String>>,
    auth: Option<()>,
}

fn wrapped<T: Serialize>(request_id: &str, data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        request_id: request_id.to_owned(),
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data,
        wrap_info: None,
        warnings: None,
        auth: None,
    })
}

fn request_id(meta: &Option<Extension<RequestMeta>>) -> String {
    meta.as_ref()
        .map(|m| m.request_id.clone())
        .unwrap_or_default()
}

fn kv_path(uri: &Uri, prefix: &str) -> String {
    raw_tail(uri, prefix).trim_end_matches('/').to_owned()
}

/// A version's metadata as KV v2 shows it. ScaiVault keeps a secret's metadata (and tags)
/// per secret, not per version: it is `custom_metadata`.
#[derive(Serialize)]
struct VersionMetadata {
    created_time: Timestamp,
    custom_metadata: Option<Map<String, Value>>,
    deletion_time: &'static str,
    destroyed: bool,
    version: u64,
}

#[derive(Serialize)]
struct KvSecret {
    data: SecretData,
    metadata: VersionMetadata,
}

#[derive(Deserialize)]
pub struct KvReadQuery {
    #[serde(default)]
    version: Option<u64>,
}

fn custom(metadata: Map<String, Value>) -> Option<Map<String, Value>> {
    (!metadata.is_empty()).then_some(metadata)
}

/// `GET /v1/secret/data/{path}`: the current version, or `?version=N` (0 is the current one,
/// as in Vault).
pub async fn kv_read(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    meta: Option<Extension<RequestMeta>>,
    uri: Uri,
    ApiQuery(q): ApiQuery<KvReadQuery>,
) -> Result<Response, ApiError> {
    let path = kv_path(&uri, "/v1/secret/data/");
    let version = q.version.filter(|v| *v > 0);
    let view = auth.engine.read_secret(&auth.caller, &path, version)?;
    state.metrics.secret_read(&view.secret_type, 1);
    let note = AuditNote(Map::from_iter([("version".into(), view.version.into())]));
    let body = KvSecret {
        metadata: VersionMetadata {
            created_time: view.version_created_at,
            custom_metadata: custom(view.metadata),
            deletion_time: "",
            destroyed: false,
            version: view.version,
        },
        data: view.data,
    };
    let mut resp = wrapped(&request_id(&meta), body).into_response();
    resp.extensions_mut().insert(note);
    Ok(resp)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct KvWrite {
    /// The secret's fields.
    data: SecretData,
    #[serde(default)]
    options: KvWriteOptions,
}

#[derive(Default, Deserialize, schemars::JsonSchema)]
pub struct KvWriteOptions {
    /// Write only if the current version is this one (0: only if the secret does not exist).
    #[serde(default)]
    cas: Option<u64>,
}

/// `POST`/`PUT /v1/secret/data/{path}`: a new version, as `PUT /v1/secrets/{path}` writes
/// it (the audit entry committed with it).
pub async fn kv_write(
    auth: Auth,
    audit: Option<Extension<HandlerAudit>>,
    meta: Option<Extension<RequestMeta>>,
    uri: Uri,
    VaultJson(body): VaultJson<KvWrite>,
) -> Result<Response, ApiError> {
    let path = kv_path(&uri, "/v1/secret/data/");
    let req = WriteRequest {
        data: body.data,
        secret_type: None,
        metadata: None,
        options: WriteOptions {
            cas: body.options.cas,
            ..Default::default()
        },
        cas: None,
    };
    write_answer(auth, audit, meta, &path, req).await
}

/// Writes `req` as the next version of `path` with its audit entry, answered in Vault's shape.
async fn write_answer(
    auth: Auth,
    audit: Option<Extension<HandlerAudit>>,
    meta: Option<Extension<RequestMeta>>,
    path: &str,
    req: WriteRequest,
) -> Result<Response, ApiError> {
    let recorded = audit.is_some();
    let out = match audit {
        Some(Extension(audit)) => {
            let caller = auth.caller.clone();
            auth.engine
                .write_secret_audited(&auth.caller, path, req, move |out| {
                    // Vault answers a write with 200, new secret or not.
                    let status = StatusCode::OK;
                    let extra = Map::from_iter([
                        ("version".into(), out.version.into()),
                        ("created".into(), out.created.into()),
                    ]);
                    audit.write_input(&caller, status, extra)
                })
                .await
        }
        None => auth.engine.write_secret(&auth.caller, path, req).await,
    }
    .map_err(|e| match e.code {
        // The audit entry went with the write; a commit that failed lost both.
        ErrorCode::StorageFull | ErrorCode::ServiceUnavailable if recorded => {
            unrecorded(&request_id(&meta), &e)
        }
        _ => e,
    })?;
    let body = VersionMetadata {
        created_time: out.updated_at,
        custom_metadata: None,
        deletion_time: "",
        destroyed: false,
        version: out.version,
    };
    let mut resp = wrapped(&request_id(&meta), body).into_response();
    if recorded {
        resp.extensions_mut().insert(AuditRecorded);
    }
    Ok(resp)
}

/// `GET /v1/secret/metadata/{path}`: the secret's versions and metadata.
pub async fn kv_metadata(
    auth: Auth,
    meta: Option<Extension<RequestMeta>>,
    uri: Uri,
) -> Result<Json<Envelope<Value>>, ApiError> {
    let path = kv_path(&uri, "/v1/secret/metadata/");
    let summary = auth.engine.secret_metadata(&auth.caller, &path)?;
    let versions = auth.engine.secret_versions(&auth.caller, &path)?;
    let oldest = versions.iter().map(|v| v.version).min().unwrap_or(0);
    // A soft-deleted secret's versions are all deleted (restorable together).
    let deleted = summary.deleted_at.map_or(Value::from(""), |t| json!(t));
    let listed: Map<String, Value> = versions
        .iter()
        .map(|v| {
            (
                v.version.to_string(),
                json!({ "created_time": v.created_at, "deletion_time": deleted, "destroyed": false }),
            )
        })
        .collect();
    Ok(wrapped(
        &request_id(&meta),
        json!({
            "cas_required": false,
            "created_time": summary.created_at,
            "current_version": summary.version,
            "custom_metadata": custom(summary.metadata),
            "delete_version_after": "0s",
            "max_versions": 0,
            "oldest_version": oldest,
            "updated_time": summary.updated_at,
            "versions": listed,
        }),
    ))
}

/// The most secrets a listing looks through (ten of ScaiVault's pages): a listing cut there
/// says so in Vault's `warnings`.
const LIST_MAX: usize = 10_000;

/// `LIST /v1/secret/metadata/{prefix}` (routed here by [`vault_request`]): the names
/// directly under the prefix, folders ending in `/`, as Vault lists them; only secrets the
/// caller may list are looked at.
pub async fn kv_list(
    auth: Auth,
    meta: Option<Extension<RequestMeta>>,
    uri: Uri,
) -> Result<Json<Envelope<Value>>, ApiError> {
    let mut prefix = kv_path(&uri, "/v1/secret/list/");
    if !prefix.is_empty() {
        prefix.push('/');
    }
    let mut keys = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let page = auth
            .engine
            .list_secrets(&auth.caller, &prefix, None, cursor.as_deref())?;
        for s in &page.secrets {
            seen += 1;
            let Some(rest) = s.path.strip_prefix(&prefix) else {
                continue;
            };
            let key = match rest.split_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => rest.to_owned(),
            };
            keys.insert(key);
        }
        if !page.has_more || page.cursor.is_none() || seen >= LIST_MAX {
            break;
        }
        cursor = page.cursor;
    }
    if keys.is_empty() {
        // Vault answers an empty listing as "not found".
        return Err(Error::new(
            ErrorCode::SecretNotFound,
            "no secret the caller may list is under this prefix",
        )
        .into());
    }
    let mut body = wrapped(&request_id(&meta), json!({ "keys": keys }));
    if seen >= LIST_MAX {
        body.warnings = Some(vec![format!(
            "the listing stopped after {LIST_MAX} secrets: list a narrower prefix, or page through GET /v1/secrets?prefix="
        )]);
    }
    Ok(body)
}

/// The `secret/` mount as `sys/mounts` describes it.
fn kv_mount() -> Value {
    json!({
        "accessor": "kv_scaivault",
        "config": { "default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0 },
        "description": "ScaiVault's secrets, as key/value version 2",
        "external_entropy_access": false,
        "local": false,
        "options": { "version": "2" },
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "seal_wrap": false,
        "type": "kv",
        "uuid": "00000000-0000-0000-0000-00000000005c",
    })
}

/// `GET /v1/sys/mounts`: the one mount.
pub async fn mounts(meta: Option<Extension<RequestMeta>>, _auth: Auth) -> Json<Value> {
    let mounts = json!({ KV_MOUNT: kv_mount() });
    let mut body =
        serde_json::to_value(wrapped(&request_id(&meta), mounts.clone()).0).unwrap_or_default();
    // Vault answers the mounts at the top level too (older clients read them there).
    if let (Value::Object(b), Value::Object(m)) = (&mut body, mounts) {
        b.extend(m);
    }
    Json(body)
}

/// `GET /v1/sys/internal/ui/mounts/{path}`: which mount a path is in (the CLI asks before each
/// `kv` command, to learn the KV version).
pub async fn mount_of(
    meta: Option<Extension<RequestMeta>>,
    _auth: Auth,
    uri: Uri,
) -> Result<Json<Envelope<Value>>, ApiError> {
    let path = raw_tail(&uri, "/v1/sys/internal/ui/mounts/");
    if !(path == "secret" || path.starts_with(KV_MOUNT)) {
        return Err(Error::new(
            ErrorCode::RouteNotFound,
            "this server has one mount, secret/ (key/value version 2)",
        )
        .into());
    }
    let mut mount = kv_mount();
    mount["path"] = KV_MOUNT.into();
    Ok(wrapped(&request_id(&meta), mount))
}

/// `GET /v1/sys/health` in Vault's shape: 200 unsealed and active, 503 sealed.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let sealed = state.is_sealed();
    let body = json!({
        "initialized": true,
        "sealed": sealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": state.clock.now().unix_seconds(),
        "version": env!("CARGO_PKG_VERSION"),
        "cluster_name": "scaivault",
        "cluster_id": "",
    });
    let status = if sealed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// `GET /v1/sys/seal-status` in Vault's shape. ScaiVault unseals with one key (a
/// passphrase, key file or recovery key), so the threshold is 1 of 1.
pub async fn seal_status(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "type": "scaivault",
        "initialized": true,
        "sealed": state.is_sealed(),
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": env!("CARGO_PKG_VERSION"),
        "build_date": "",
        "migration": false,
        "recovery_seal": false,
        "storage_type": "scaivault",
    }))
}

/// `GET /v1/auth/token/lookup-self`: the caller's token as Vault describes one. As in Vault,
/// `id` is the token the caller sent (Vault Agent's token-file login takes it from there);
/// `accessor` is its public id, what the audit log names.
pub async fn lookup_self(
    State(state): State<Arc<AppState>>,
    meta: Option<Extension<RequestMeta>>,
    auth: Auth,
    headers: axum::http::HeaderMap,
) -> Json<Envelope<Value>> {
    let me = auth.engine.whoami(&auth.caller);
    let now = state.clock.now().unix_seconds();
    let ttl = me
        .token_expires_at
        .map_or(0, |t| (t.unix_seconds() - now).max(0));
    let accessor = me.token_id.clone().unwrap_or_default();
    let id = crate::context::bearer(&headers)
        .unwrap_or_default()
        .to_owned();
    wrapped(
        &request_id(&meta),
        json!({
            "accessor": accessor,
            "creation_time": 0,
            "creation_ttl": ttl,
            "display_name": me.display_name,
            "entity_id": me.identity_id,
            "expire_time": me.token_expires_at,
            "explicit_max_ttl": 0,
            "id": id,
            "identity_policies": [],
            "meta": { "identity_type": me.identity_type, "tenant_id": me.tenant_id },
            "num_uses": 0,
            "orphan": true,
            "path": "auth/token/create",
            "policies": me.scopes,
            "renewable": false,
            "ttl": ttl,
            "type": "service",
        }),
    )
}

/// The error a Vault client expects: `{"errors": ["..."]}`, and `403` where ScaiVault says
/// `401` (Vault answers a missing or bad token with "permission denied"; hvac's
/// `is_authenticated` reads a 403 as "no").
pub(crate) fn vault_error(status: StatusCode, e: &Error) -> Response {
    let status = match (status, e.code) {
        (StatusCode::UNAUTHORIZED, _) => StatusCode::FORBIDDEN,
        // Vault refuses a write whose `cas` does not match with 400.
        (_, ErrorCode::VersionConflict) => StatusCode::BAD_REQUEST,
        (s, _) => s,
    };
    // The stable code first, as in the ScaiVault API's errors.
    let mut message = format!("{}: {}", e.code.as_str(), e.message);
    if status == StatusCode::FORBIDDEN {
        message.push_str(" (permission denied)");
    }
    (status, Json(json!({ "errors": [message] }))).into_response()
}

/// Vault's AppRole login, over ScaiVault's client credentials: `role_id` is the client id,
/// `secret_id` the client secret (`scaivault identity create-credential`).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRoleLogin {
    role_id: String,
    #[schemars(with = "String")]
    secret_id: zeroize::Zeroizing<String>,
}

#[derive(Serialize)]
/// A login's `auth` (AppRole and token create).
struct AppRoleAuth<'a> {
    client_token: &'a str,
    accessor: &'a str,
    policies: Vec<&'a str>,
    token_policies: Vec<&'a str>,
    metadata: Value,
    lease_duration: u64,
    renewable: bool,
    entity_id: &'a str,
    token_type: &'a str,
    orphan: bool,
}

/// `POST /v1/auth/approle/login`: the client-credentials grant (the same limits: per address
/// before the secret is checked, per client after), answered as Vault answers a login.
pub async fn approle_login(
    State(state): State<Arc<AppState>>,
    meta: Option<Extension<RequestMeta>>,
    VaultJson(req): VaultJson<AppRoleLogin>,
) -> Result<Json<Value>, ApiError> {
    let grant = super::auth::grant(&state, &req.role_id, &req.secret_id).await?;
    let scopes: Vec<&str> = grant.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let auth = AppRoleAuth {
        client_token: &grant.access_token,
        accessor: &grant.token_id,
        policies: scopes.clone(),
        token_policies: scopes,
        metadata: json!({ "role_name": req.role_id }),
        lease_duration: grant.expires_in,
        renewable: false,
        entity_id: &req.role_id,
        token_type: "service",
        orphan: true,
    };
    login_answer(&meta, &auth)
}

/// A login's answer: Vault's envelope with the token under `auth`.
fn login_answer(
    meta: &Option<Extension<RequestMeta>>,
    auth: &AppRoleAuth<'_>,
) -> Result<Json<Value>, ApiError> {
    let mut body = json!({
        "request_id": request_id(meta),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": null,
        "wrap_info": null,
        "warnings": null,
    });
    body["auth"] =
        serde_json::to_value(auth).map_err(|_| Error::internal("serialization failed"))?;
    Ok(Json(body))
}

/// The versions a KV `delete`, `undelete` or `destroy` names (numbers, or numbers as strings
/// as Vault's CLI sends them).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvVersions {
    #[serde(default)]
    #[schemars(with = "Vec<Value>")]
    versions: Vec<Value>,
}

impl KvVersions {
    fn numbers(&self) -> Result<Vec<u64>, Error> {
        if self.versions.is_empty() {
            return Err(Error::invalid_request("no versions provided"));
        }
        self.versions
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| Error::invalid_request("versions are version numbers"))
    }
}

/// ScaiVault deletes and restores a secret, not one of its versions: a KV delete is taken
/// when it names the current version (the secret is soft-deleted, restorable as
/// `DELETE /v1/secrets/{path}` leaves it), and refused, saying why, when it names only older
/// ones.
fn whole_secret(versions: &[u64], current: u64) -> Result<(), Error> {
    if versions.contains(&current) {
        return Ok(());
    }
    Err(Error::invalid_request(format!(
        "ScaiVault deletes a secret with all its versions, not single older versions: name the current version ({current})"
    )))
}

/// The path of a `delete`, `undelete` or `destroy` (after `prefix`) and the versions it
/// names, once the caller may delete there: a caller the path's policy refuses learns that
/// before anything about its body.
fn versions_request(
    auth: &Auth,
    uri: &Uri,
    prefix: &str,
    body: &KvVersions,
) -> Result<(String, Vec<u64>), Error> {
    let path = kv_path(uri, prefix);
    auth.engine.authorize(
        &auth.caller,
        Scope::SecretsDelete,
        Some((&path, Permission::Delete)),
    )?;
    Ok((path, body.numbers()?))
}

/// `DELETE /v1/secret/data/{path}`: soft-deletes the secret (Vault deletes its latest
/// version; here the older versions go with it, restorable together).
pub async fn kv_delete(auth: Auth, uri: Uri) -> Result<StatusCode, ApiError> {
    let path = kv_path(&uri, "/v1/secret/data/");
    auth.engine
        .delete_secret(&auth.caller, &path, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/secret/delete/{path}` `{"versions": [...]}`: as [`kv_delete`], when the
/// versions name the current one.
pub async fn kv_delete_versions(
    auth: Auth,
    uri: Uri,
    VaultJson(body): VaultJson<KvVersions>,
) -> Result<StatusCode, ApiError> {
    let (path, versions) = versions_request(&auth, &uri, "/v1/secret/delete/", &body)?;
    let current = auth.engine.secret_metadata(&auth.caller, &path)?.version;
    whole_secret(&versions, current)?;
    auth.engine
        .delete_secret(&auth.caller, &path, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/secret/undelete/{path}` `{"versions": [...]}`: restores a soft-deleted secret.
pub async fn kv_undelete(
    auth: Auth,
    uri: Uri,
    VaultJson(body): VaultJson<KvVersions>,
) -> Result<StatusCode, ApiError> {
    let (path, _) = versions_request(&auth, &uri, "/v1/secret/undelete/", &body)?;
    auth.engine.restore_secret(&auth.caller, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/secret/destroy/{path}`: refused, saying why — ScaiVault destroys a secret with
/// all its versions (`DELETE /v1/secret/metadata/{path}`), never single versions.
pub async fn kv_destroy(
    auth: Auth,
    uri: Uri,
    VaultJson(body): VaultJson<KvVersions>,
) -> Result<StatusCode, ApiError> {
    versions_request(&auth, &uri, "/v1/secret/destroy/", &body)?;
    Err(Error::invalid_request(
        "ScaiVault destroys a secret with all its versions, not single versions: use `kv metadata delete` (DELETE /v1/secret/metadata/{path})",
    )
    .into())
}

/// `DELETE /v1/secret/metadata/{path}`: destroys the secret and every version, for good
/// (`DELETE /v1/secrets/{path}?permanent=true`).
pub async fn kv_destroy_all(auth: Auth, uri: Uri) -> Result<StatusCode, ApiError> {
    let path = kv_path(&uri, "/v1/secret/metadata/");
    auth.engine.delete_secret(&auth.caller, &path, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A KV patch: a JSON merge patch (RFC 7386) of the secret's fields.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct KvPatch {
    /// Defaulted, so that a caller the path's policy refuses learns that first.
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    options: KvWriteOptions,
}

/// RFC 7386: `null` removes a field, an object merges into an object, anything else replaces.
fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(p) => match target.get_mut(&k) {
                Some(Value::Object(t)) => merge_patch(t, p),
                _ => {
                    let mut fresh = Map::new();
                    merge_patch(&mut fresh, p);
                    target.insert(k, Value::Object(fresh));
                }
            },
            v => {
                target.insert(k, v);
            }
        }
    }
}

/// `PATCH /v1/secret/data/{path}`: the current version with a JSON merge patch applied,
/// written as the next version — checked-and-set against the version it read, so a write
/// from elsewhere in between is never lost (it answers 400, as a cas mismatch does).
pub async fn kv_patch(
    auth: Auth,
    audit: Option<Extension<HandlerAudit>>,
    meta: Option<Extension<RequestMeta>>,
    uri: Uri,
    VaultJson(body): VaultJson<KvPatch>,
) -> Result<Response, ApiError> {
    let path = kv_path(&uri, "/v1/secret/data/");
    let current = auth.engine.read_secret(&auth.caller, &path, None)?;
    if let Some(cas) = body.options.cas
        && cas != current.version
    {
        return Err(Error::new(
            ErrorCode::VersionConflict,
            format!(
                "check-and-set failed: expected version {cas}, current is {}",
                current.version
            ),
        )
        .into());
    }
    let mut fields: Map<String, Value> = serde_json::to_value(&current.data)
        .ok()
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .ok_or_else(|| Error::internal("the secret's fields are not an object"))?;
    merge_patch(&mut fields, body.data);
    let data: SecretData = serde_json::from_value(Value::Object(fields))
        .map_err(|_| Error::invalid_request("the patched fields are not a secret's fields"))?;
    let req = WriteRequest {
        data,
        secret_type: Some(current.secret_type.clone()),
        metadata: None,
        options: WriteOptions {
            cas: Some(current.version),
            ..Default::default()
        },
        cas: None,
    };
    write_answer(auth, audit, meta, &path, req).await
}

/// A KV metadata write. ScaiVault keeps what KV v2 calls custom metadata as the secret's
/// metadata; the per-secret settings it has no equivalent for are refused unless they ask
/// for what ScaiVault does anyway.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvMetadataWrite {
    #[serde(default)]
    max_versions: Option<u64>,
    #[serde(default)]
    cas_required: Option<bool>,
    #[serde(default)]
    delete_version_after: Option<String>,
    /// Merged into the secret's metadata; a key set to `null` is removed.
    #[serde(default)]
    custom_metadata: Option<Map<String, Value>>,
}

/// `POST`/`PUT`/`PATCH /v1/secret/metadata/{path}`: `custom_metadata` merged into the
/// secret's metadata (`PATCH /v1/metadata/{path}`); no new version.
pub async fn kv_metadata_write(
    auth: Auth,
    uri: Uri,
    VaultJson(body): VaultJson<KvMetadataWrite>,
) -> Result<StatusCode, ApiError> {
    let path = kv_path(&uri, "/v1/secret/metadata/");
    auth.engine.authorize(
        &auth.caller,
        Scope::SecretsWrite,
        Some((&path, Permission::Write)),
    )?;
    if body.cas_required == Some(true) {
        return Err(Error::invalid_request(
            "ScaiVault does not require check-and-set per secret: send options.cas with each write",
        )
        .into());
    }
    if body
        .delete_version_after
        .as_deref()
        .is_some_and(|d| !matches!(d, "" | "0" | "0s"))
    {
        return Err(Error::invalid_request(
            "ScaiVault keeps versions until the secret's max_versions (or a delete): delete_version_after is not supported",
        )
        .into());
    }
    if body.max_versions.is_some_and(|n| n != 0) {
        return Err(Error::invalid_request(
            "set a secret's max_versions with a write (options.max_versions on PUT /v1/secrets/{path})",
        )
        .into());
    }
    if let Some(custom) = body.custom_metadata {
        auth.engine
            .update_metadata(&auth.caller, &path, custom)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/secret/config`: the mount's settings, which are ScaiVault's and fixed.
pub async fn kv_config(meta: Option<Extension<RequestMeta>>, _auth: Auth) -> Json<Envelope<Value>> {
    wrapped(
        &request_id(&meta),
        json!({ "cas_required": false, "delete_version_after": "0s", "max_versions": 0 }),
    )
}

/// Vault's `auth/token/create` body: `policies` are ScaiVault scopes here.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct TokenCreate {
    /// The child's scopes (Vault's policies); the parent's when absent.
    #[serde(default)]
    policies: Option<Vec<String>>,
    /// `"1h"`, `"30m"`, or seconds.
    #[serde(default)]
    ttl: Option<Value>,
    #[serde(default)]
    display_name: Option<String>,
}

/// `POST /v1/auth/token/create`: a child of the caller's token (see
/// `Engine::create_child_token`), answered as Vault answers a login.
pub async fn token_create(
    State(state): State<Arc<AppState>>,
    meta: Option<Extension<RequestMeta>>,
    auth: Auth,
    VaultJson(req): VaultJson<TokenCreate>,
) -> Result<Json<Value>, ApiError> {
    let secs = match &req.ttl {
        None => 0,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad_ttl)?,
        Some(Value::String(s)) => go_duration(s).ok_or_else(bad_ttl)?,
        Some(_) => return Err(bad_ttl().into()),
    };
    // Vault's CLI sends "0s" when no TTL was asked for: the default (within the parent's).
    let ttl = (secs > 0).then(|| std::time::Duration::from_secs(secs));
    let issued = auth
        .engine
        .create_child_token(&auth.caller, req.policies, ttl, req.display_name)
        .await?;
    let now = state.clock.now().unix_seconds();
    let scopes = issued.scopes.to_strings();
    let names: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let auth_body = AppRoleAuth {
        client_token: &issued.token,
        accessor: &issued.token_id,
        policies: names.clone(),
        token_policies: names,
        metadata: Value::Null,
        lease_duration: issued
            .expires_at
            .map_or(0, |e| (e.unix_seconds() - now).max(0) as u64),
        renewable: false,
        entity_id: issued.identity_id.as_str(),
        token_type: "service",
        orphan: false,
    };
    login_answer(&meta, &auth_body)
}

/// `POST /v1/auth/token/revoke-self`: the caller's token, and every token made with it.
pub async fn revoke_self(auth: Auth) -> Result<StatusCode, ApiError> {
    auth.engine.revoke_own_token(&auth.caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/auth/token/renew-self`: refused, saying why — ScaiVault tokens are not
/// renewable (lookups say `renewable: false`, so Vault Agent does not ask).
pub async fn renew_self(_auth: Auth) -> Result<StatusCode, ApiError> {
    Err(Error::invalid_request(
        "ScaiVault tokens are not renewable: make a new one (auth/token/create, or log in again)",
    )
    .into())
}

fn bad_ttl() -> Error {
    Error::new(
        ErrorCode::InvalidDuration,
        "ttl is a duration such as \"1h\", \"90m\" or \"1h30m0s\", or seconds",
    )
}

/// Seconds in a TTL as Vault's clients write one: seconds (`"3600"`), or Go's duration form
/// (`"1h30m0s"`, `"10m"`), with `d` for days as ScaiVault writes them. Whole seconds only.
fn go_duration(s: &str) -> Option<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(secs);
    }
    let (mut total, mut digits, mut any) = (0u64, String::new(), false);
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_vaults_clients_write_them() {
        assert_eq!(go_duration("0s"), Some(0));
        assert_eq!(go_duration("10m0s"), Some(600));
        assert_eq!(go_duration("1h30m0s"), Some(5400));
        assert_eq!(go_duration("3600"), Some(3600));
        assert_eq!(go_duration("2d"), Some(172_800));
        for bad in ["", "1x", "h", "1h5", "1.5h", "-1h", "99999999999999999999h"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_merge_patch_removes_merges_and_replaces() {
        let mut target = json!({"a": "1", "b": {"x": "1", "y": "2"}, "c": "3"})
            .as_object()
            .cloned()
            .unwrap();
        let patch = json!({"a": null, "b": {"y": null, "z": "3"}, "c": {"n": "1"}, "d": "4"})
            .as_object()
            .cloned()
            .unwrap();
        merge_patch(&mut target, patch);
        assert_eq!(
            Value::Object(target),
            json!({"b": {"x": "1", "z": "3"}, "c": {"n": "1"}, "d": "4"})
        );
    }

    #[test]
    fn listings_become_a_route_and_nothing_else_does() {
        let rewrite = |method: &str, uri: &str| {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let out = futures_executor(vault_request(req)).unwrap();
            (out.method().to_string(), out.uri().to_string())
        };
        assert_eq!(
            rewrite("LIST", "/v1/secret/metadata/a/b/"),
            ("GET".into(), "/v1/secret/list/a/b".into())
        );
        assert_eq!(
            rewrite("GET", "/v1/secret/metadata/a?list=true&x=1"),
            ("GET".into(), "/v1/secret/list/a?x=1".into())
        );
        assert_eq!(
            rewrite("GET", "/v1/secret/metadata/?list=true"),
            ("GET".into(), "/v1/secret/list".into())
        );
        assert_eq!(
            rewrite("GET", "/v1/secret/metadata/a"),
            ("GET".into(), "/v1/secret/metadata/a".into())
        );
        assert_eq!(
            rewrite("LIST", "/v1/secrets/a"),
            ("LIST".into(), "/v1/secrets/a".into())
        );
        assert_eq!(
            rewrite("POST", "/v1/secret/metadata/a?list=true"),
            ("POST".into(), "/v1/secret/metadata/a?list=true".into())
        );
    }

    fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
