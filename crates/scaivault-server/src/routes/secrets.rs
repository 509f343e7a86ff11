use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use scaivault_core::scope::{Permission, Scope};
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{
    BatchMetadataRequest, BatchReadRequest, BatchWritten, Deletion, VersionHistory, WriteOutcome,
    WriteRequest,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::raw_tail;
use crate::context::{AuditNote, AuditRecorded, Auth, HandlerAudit, unrecorded};
use crate::error::ApiError;
use crate::idempotency;
use crate::json::{ApiJson, ApiQuery, redact_values};
use crate::ratelimit::Category;
use crate::state::AppState;

fn note(items: &[(&str, Value)]) -> AuditNote {
    AuditNote(
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn list(auth: Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let page = auth.engine.list_secrets(
        &auth.caller,
        q.prefix.as_deref().unwrap_or(""),
        q.limit,
        q.cursor.as_deref(),
    )?;
    Ok(Json(
        serde_json::to_value(page).map_err(|_| Error::internal("serialization failed"))?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    #[serde(default)]
    version: Option<u64>,
}

pub async fn read(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    uri: Uri,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let view = auth
        .engine
        .read_secret(&auth.caller, raw_tail(&uri, "/v1/secrets/"), q.version)?;
    state.metrics.secret_read(&view.secret_type, 1);
    let note = note(&[("version", view.version.into())]);
    let mut resp = Json(view).into_response();
    resp.extensions_mut().insert(note);
    Ok(resp)
}

fn write_status(out: &WriteOutcome) -> StatusCode {
    if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn write_note(out: &WriteOutcome) -> AuditNote {
    note(&[
        ("version", out.version.into()),
        ("created", out.created.into()),
    ])
}

/// A successful write commits its audit entry in its own transaction (one commit, and never
/// one without the other); a refused or failed one is recorded by the middleware as usual.
/// With an `Idempotency-Key`, a repeat of an earlier write is answered as that write was
/// (`Idempotent-Replayed: true`), and the middleware records it as a replay.
pub async fn write(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    audit: Option<Extension<HandlerAudit>>,
    headers: HeaderMap,
    uri: Uri,
    ApiJson(req): ApiJson<WriteRequest>,
) -> Result<Response, ApiError> {
    let path = raw_tail(&uri, "/v1/secrets/");
    let recorded = audit.is_some();
    let run = |req: WriteRequest| async {
        match audit {
            Some(Extension(audit)) => {
                let caller = auth.caller.clone();
                auth.engine
                    .write_secret_audited(&auth.caller, path, req, move |out| {
                        audit.write_input(&caller, write_status(out), write_note(out).0)
                    })
                    .await
            }
            None => auth.engine.write_secret(&auth.caller, path, req).await,
        }
    };
    if headers.get_all("idempotency-key").iter().count() > 1 {
        return Err(Error::invalid_request("send one Idempotency-Key header, not several").into());
    }
    let (out, replayed) = match headers.get("idempotency-key") {
        None => (run(req).await?, false),
        Some(raw) => {
            let key = idempotency::parse_key(raw.as_bytes())?;
            // A repeat is answered only to a caller still allowed to make the write.
            auth.engine.authorize(
                &auth.caller,
                Scope::SecretsWrite,
                Some((path, Permission::Write)),
            )?;
            let fingerprint = state.idempotency.fingerprint(path, &req);
            let identity = auth.caller.identity_id.to_string();
            let answer = state
                .idempotency
                .write(&identity, key, fingerprint, state.clock.now(), || run(req))
                .await?;
            match answer {
                idempotency::Answer::Wrote(out) => (out, false),
                idempotency::Answer::Replayed(out) => (out, true),
            }
        }
    };
    let mut note = write_note(&out);
    if replayed {
        note.0.insert("replayed".into(), true.into());
    } else {
        state.metrics.secret_writes.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = (write_status(&out), Json(out)).into_response();
    resp.extensions_mut().insert(note);
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    } else if recorded {
        resp.extensions_mut().insert(AuditRecorded);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    permanent: Option<bool>,
    /// The CLI's word for the same thing.
    #[serde(default)]
    hard: Option<bool>,
}

pub async fn delete(
    auth: Auth,
    uri: Uri,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Json<Deletion>, ApiError> {
    let permanent = q.permanent.or(q.hard).unwrap_or(false);
    let s = auth
        .engine
        .delete_secret(&auth.caller, raw_tail(&uri, "/v1/secrets/"), permanent)
        .await?;
    Ok(Json(Deletion {
        path: s.path,
        deleted: true,
        permanent,
        version_count: s.version_count,
        recoverable_until: s.recoverable_until,
    }))
}

/// The audit entries of a batch call (`action`): one per path (or, for a refused pattern,
/// per pattern), answered or refused, in the order of `keys`; each once.
/// `outcome` says, for a path, the version answered or the code of the refusal.
fn batch_entries<'a>(
    audit: &HandlerAudit,
    caller: &scaivault_engine::Caller,
    action: &str,
    keys: impl Iterator<Item = &'a String>,
    outcome: impl Fn(&str) -> Result<u64, Option<String>>,
) -> Vec<scaivault_engine::AuditInput> {
    let mut seen = std::collections::HashSet::new();
    keys.filter(|p| seen.insert(p.as_str()))
        .map(|p| {
            let mut extra = Map::new();
            extra.insert("batch".into(), true.into());
            let found = outcome(p);
            match &found {
                Ok(version) => {
                    extra.insert("version".into(), (*version).into());
                }
                Err(code) => {
                    extra.insert("error_code".into(), code.clone().into());
                }
            }
            // A malformed path is recorded as it was sent, cut to the longest a path may be.
            let path = p.chars().take(512).collect();
            audit.input(caller, action, Some(path), found.is_ok(), extra)
        })
        .collect()
}

/// `POST /v1/secrets/batch` (batch read), `…/batch/metadata` and `…/batch/write` (an
/// atomic import). POST on any other secret path is not an operation.
pub async fn post(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    audit: Option<Extension<HandlerAudit>>,
    uri: Uri,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Response, ApiError> {
    // The body's shape depends on the path, so it is read as JSON first and shaped here, with
    // the same error (and the same care not to echo a value) as the JSON extractor.
    fn parse<T: serde::de::DeserializeOwned>(
        body: Result<ApiJson<Value>, ApiError>,
    ) -> Result<T, ApiError> {
        let ApiJson(body) = body?;
        serde_json::from_value(body).map_err(|e| {
            ApiError(Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the request body has the wrong shape: {}",
                    redact_values(&e.to_string())
                ),
            ))
        })
    }
    match raw_tail(&uri, "/v1/secrets/") {
        "batch" => {
            let req: BatchReadRequest = parse(body)?;
            let paths = req.paths.clone();
            let out = auth.engine.batch_read(&auth.caller, req)?;
            for item in out.secrets.values() {
                state.metrics.secret_read(&item.secret_type, 1);
            }
            let mut resp = Json(&out).into_response();
            if let Some(Extension(audit)) = audit {
                // One entry per path, as if each were read alone: who read what is asked of
                // the log per path. Durable before the values leave, or nothing leaves.
                let entries = batch_entries(&audit, &auth.caller, "read", paths.iter(), |p| {
                    match out.secrets.get(p) {
                        Some(item) => Ok(item.version),
                        None => Err(out.errors.get(p).map(|e| e.code.clone())),
                    }
                });
                auth.engine
                    .record_audits(entries)
                    .await
                    .map_err(|e| ApiError(unrecorded(&audit.request_id, &e)))?;
                resp.extensions_mut().insert(AuditRecorded);
            }
            Ok(resp)
        }
        "batch/metadata" => {
            let req: BatchMetadataRequest = parse(body)?;
            let out = auth.engine.batch_metadata(&auth.caller, req)?;
            let mut resp = Json(&out).into_response();
            if let Some(Extension(audit)) = audit {
                let found = out.secrets.keys();
                let refused = out.errors.keys();
                let entries = batch_entries(
                    &audit,
                    &auth.caller,
                    "metadata_read",
                    found.chain(refused),
                    |p| match out.secrets.get(p) {
                        Some(s) => Ok(s.version),
                        None => Err(out.errors.get(p).map(|e| e.code.clone())),
                    },
                );
                auth.engine
                    .record_audits(entries)
                    .await
                    .map_err(|e| ApiError(unrecorded(&audit.request_id, &e)))?;
                resp.extensions_mut().insert(AuditRecorded);
            }
            Ok(resp)
        }
        "batch/write" => {
            let req: BatchWriteRequest = parse(body)?;
            let writes = req
                .writes
                .into_iter()
                .map(|mut item| {
                    let path = match item.remove("path") {
                        Some(Value::String(p)) => p,
                        _ => return Err(shape("each write needs a `path`")),
                    };
                    let req: WriteRequest = serde_json::from_value(Value::Object(item))
                        .map_err(|e| shape(&redact_values(&e.to_string())))?;
                    Ok((path, req))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            if writes.is_empty() {
                return Err(shape("`writes` holds no write"));
            }
            let n = writes.len() as u64;
            // Charged per secret: a batch is one request but many writes for the one writer.
            if let Some(v) = state.limiter.take(
                auth.caller.identity_id.as_str(),
                Category::BulkWrite,
                n as f64,
            ) && !v.allowed
            {
                state.metrics.rate_limited(Category::BulkWrite.name());
                return Err(ApiError(
                    Error::new(
                        ErrorCode::RateLimited,
                        format!(
                            "too many secrets written in batches; retry in {}s",
                            v.retry_after
                        ),
                    )
                    .with("category", Category::BulkWrite.name())
                    .with("retry_after", v.retry_after),
                ));
            }
            let paths: Vec<String> = writes.iter().map(|(p, _)| p.clone()).collect();
            let (outs, recorded) = match audit {
                Some(Extension(audit)) => {
                    let caller = auth.caller.clone();
                    let for_entries = audit.clone();
                    let written = auth
                        .engine
                        .write_secrets_audited(&auth.caller, writes, move |out| {
                            let mut extra = write_note(out).0;
                            extra.insert("batch".into(), true.into());
                            extra.insert("status".into(), write_status(out).as_u16().into());
                            Some(for_entries.input(
                                &caller,
                                "write",
                                Some(out.path.clone()),
                                true,
                                extra,
                            ))
                        })
                        .await;
                    match written {
                        Ok(outs) => (outs, true),
                        // Nothing was written; each path's history shows who tried.
                        Err(e) => return refused_batch(&auth, &audit, &paths, e).await,
                    }
                }
                None => (
                    auth.engine.write_secrets(&auth.caller, writes).await?,
                    false,
                ),
            };
            state.metrics.secret_writes.fetch_add(n, Ordering::Relaxed);
            let mut resp = Json(BatchWritten { written: outs }).into_response();
            if recorded {
                resp.extensions_mut().insert(AuditRecorded);
            }
            Ok(resp)
        }
        _ => Err(ErrorCode::MethodNotAllowed.into()),
    }
}

/// A refused batch write: one failed `write` entry per path it named (each secret's audit
/// history shows the attempt, as a refused single write's does), then the error.
async fn refused_batch(
    auth: &Auth,
    audit: &HandlerAudit,
    paths: &[String],
    e: Error,
) -> Result<Response, ApiError> {
    let status = ApiError(e.clone()).into_response().status();
    let entries = paths
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|p| {
            let mut extra = Map::new();
            extra.insert("batch".into(), true.into());
            extra.insert("error_code".into(), e.code.as_str().into());
            extra.insert("status".into(), status.as_u16().into());
            let path = p.chars().take(512).collect();
            audit.input(&auth.caller, "write", Some(path), false, extra)
        })
        .collect();
    auth.engine
        .record_audits(entries)
        .await
        .map_err(|err| ApiError(unrecorded(&audit.request_id, &err)))?;
    let mut resp = ApiError(e).into_response();
    resp.extensions_mut().insert(AuditRecorded);
    Ok(resp)
}

/// One write of a batch, as the OpenAPI document describes it: a write's body with its path.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct BatchWriteItem {
    path: String,
    #[serde(flatten)]
    write: WriteRequest,
}

/// `POST /v1/secrets/batch/write`: `{"writes": [{"path", "data", "secret_type", "metadata",
/// "options"}, …]}`, written in one transaction (all or none), each with its own audit entry
/// committed in that transaction.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchWriteRequest {
    /// Each a write's body (`data`, `secret_type`, `metadata`, `options`) with its `path`.
    #[schemars(with = "Vec<BatchWriteItem>", length(min = 1, max = 1000))]
    writes: Vec<Map<String, Value>>,
}

/// The body of `POST /v1/secrets/{path}`, whose shape follows the path: a batch read
/// (`batch`), metadata of many paths (`batch/metadata`) or an atomic write of many secrets
/// (`batch/write`). Described for the OpenAPI document; the handler reads the one the path
/// names.
/// What `POST /v1/secrets/{path}` answers, following its path (for the OpenAPI document).
#[derive(schemars::JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum SecretsPostAnswer {
    Read(scaivault_engine::BatchRead),
    Metadata(scaivault_engine::BatchMetadata),
    Write(BatchWritten),
}

#[derive(schemars::JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum SecretsPost {
    Read(BatchReadRequest),
    Metadata(BatchMetadataRequest),
    Write(BatchWriteRequest),
}

fn shape(why: &str) -> ApiError {
    ApiError(Error::new(
        ErrorCode::InvalidRequest,
        format!("the request body has the wrong shape: {why}"),
    ))
}

pub async fn metadata(auth: Auth, uri: Uri) -> Result<Json<Value>, ApiError> {
    let s = auth
        .engine
        .secret_metadata(&auth.caller, raw_tail(&uri, "/v1/metadata/"))?;
    Ok(Json(
        serde_json::to_value(s).map_err(|_| Error::internal("serialization failed"))?,
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataPatch {
    metadata: Map<String, Value>,
}

pub async fn update_metadata(
    auth: Auth,
    uri: Uri,
    ApiJson(req): ApiJson<MetadataPatch>,
) -> Result<Json<Value>, ApiError> {
    let s = auth
        .engine
        .update_metadata(&auth.caller, raw_tail(&uri, "/v1/metadata/"), req.metadata)
        .await?;
    Ok(Json(
        serde_json::to_value(s).map_err(|_| Error::internal("serialization failed"))?,
    ))
}

pub async fn versions(auth: Auth, uri: Uri) -> Result<Json<VersionHistory>, ApiError> {
    let path = raw_tail(&uri, "/v1/versions/");
    let s = auth.engine.secret_metadata(&auth.caller, path)?;
    Ok(Json(VersionHistory {
        path: s.path,
        current_version: s.version,
        versions: s.versions.unwrap_or_default(),
    }))
}

pub async fn restore(auth: Auth, uri: Uri) -> Result<Json<Value>, ApiError> {
    let s = auth
        .engine
        .restore_secret(&auth.caller, raw_tail(&uri, "/v1/restore/"))
        .await?;
    Ok(Json(
        serde_json::to_value(s).map_err(|_| Error::internal("serialization failed"))?,
    ))
}

pub async fn rotate(
    auth: Auth,
    uri: Uri,
) -> Result<Json<scaivault_engine::RotateResult>, ApiError> {
    Ok(Json(
        auth.engine
            .rotate_secret(&auth.caller, raw_tail(&uri, "/v1/rotate/"))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiringQuery {
    #[serde(default)]
    days: Option<u32>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn expiring(
    auth: Auth,
    ApiQuery(q): ApiQuery<ExpiringQuery>,
) -> Result<Json<scaivault_engine::ExpiringSecrets>, ApiError> {
    Ok(Json(auth.engine.expiring_secrets(
        &auth.caller,
        q.prefix.as_deref().unwrap_or(""),
        q.days.unwrap_or(30),
        q.limit,
    )?))
}
