use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_core::Error;
use scaivault_core::scope::Scope;
use scaivault_engine::Engine;
use scaivault_store::{Unlock, Vault};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::metrics::EngineGauges;
use crate::state::AppState;

pub async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "status": "healthy", "timestamp": state.clock.now() }))
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.is_sealed() {
        let body = json!({
            "status": "not_ready",
            "checks": { "database": "ok", "encryption": "error" },
            "errors": { "encryption": "the vault is sealed" },
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    // Every request that reaches the vault writes an audit entry: a vault that cannot write
    // can answer nothing but errors, so it is not ready.
    if let Ok(engine) = state.engine()
        && let Some(why) = engine.vault().write_blocked()
    {
        let body = json!({
            "status": "not_ready",
            "checks": { "database": "error", "encryption": "ok" },
            "errors": { "database": why },
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({ "status": "ready", "checks": { "database": "ok", "encryption": "ok" } }))
        .into_response()
}

/// The reference's detailed health for operators: what `ready` says, with the time a read
/// of the vault took and the data keys. Checks that exist only in a hosted deployment (redis,
/// s3) are absent; the time of the last data-key rotation is not kept (`null`).
pub async fn health_detailed(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Json<serde_json::Value> {
    let vault = auth.engine.vault();
    let started = std::time::Instant::now();
    let read = vault.header();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let problem = match (&read, vault.write_blocked()) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), blocked) => blocked,
    };
    let (data_keys, active) = vault.data_keys();
    let mut database = json!({
        "status": if problem.is_none() { "ok" } else { "error" },
        "latency_ms": (latency_ms * 1000.0).round() / 1000.0,
        "engine": if scaivault_store::database_url(vault.path()).is_some() { "postgresql" } else { "redb" },
        "leader": auth.engine.leads(),
    });
    if let Some(why) = problem.as_ref() {
        database["error"] = json!(why);
    }
    Json(json!({
        "status": if problem.is_none() { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "checks": {
            "database": database,
            "encryption": {
                "status": "ok",
                "key_status": "active",
                "data_keys": data_keys,
                "active_data_key": active,
                "last_rotation": null,
            },
        },
    }))
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

pub async fn version() -> Json<serde_json::Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "api": "v1",
        "file_format_version": scaivault_store::FORMAT_VERSION,
    }))
}

pub async fn metrics(
    State(state): State<Arc<AppState>>,
    auth: Result<Auth, ApiError>,
) -> Result<Response, ApiError> {
    if !state.config.public_metrics {
        let auth = auth?;
        auth.engine.authorize(&auth.caller, Scope::Admin, None)?;
    }
    let gauges = state.engine().ok().map(|e| EngineGauges {
        secrets: e.secrets_total(),
        deliveries_pending: e.deliveries_pending(),
        polls_waiting: e.polls_waiting(),
        leads: e.leads(),
        database: e.vault().database_stats(),
        deliveries_not_queued: e.deliveries_not_queued(),
        deliveries_in_flight: e.deliveries_in_flight(),
        rotations: e.rotations_finished(),
    });
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(gauges),
    )
        .into_response())
}

pub async fn status(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "initialized": true,
        "sealed": state.is_sealed(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "file_format_version": scaivault_store::FORMAT_VERSION,
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    passphrase: Option<Zeroizing<String>>,
    /// Base64 of a key file's bytes.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    key: Option<Zeroizing<String>>,
    /// The offline recovery key, `svrk_…`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    recovery_key: Option<Zeroizing<String>>,
}

/// Unseals. Each attempt derives a key with Argon2id (64 MiB, a quarter of a second by
/// default), so at most `unseal_concurrency` run at once and a further attempt answers 429 at
/// once rather than queueing; the guard refuses an address that has spent its allowance of
/// failures; every failure is logged with its address and counted in
/// `scaivault_unseal_failures_total` (a sealed vault has no audit log to write to).
pub async fn unseal(
    State(state): State<Arc<AppState>>,
    meta: Option<axum::Extension<crate::context::RequestMeta>>,
    ApiJson(req): ApiJson<UnsealRequest>,
) -> Result<Response, ApiError> {
    if !state.is_sealed() {
        // Nothing to do, and nothing to record: a flood of these adds no audit entries.
        let mut resp = Json(json!({ "sealed": false })).into_response();
        resp.extensions_mut().insert(crate::context::AuditRecorded);
        return Ok(resp);
    }
    // Attempts take their turn (the semaphore is first come, first served), so an operator's
    // attempt waits behind at most `UNSEAL_QUEUE` others however many an attacker sends; a
    // wrong key also costs its address six of its thirty failures a minute (the guard).
    const UNSEAL_QUEUE: usize = 8;
    let busy = || -> ApiError {
        Error::new(
            scaivault_core::ErrorCode::RateLimited,
            "too many unseal attempts are waiting; retry in a few seconds",
        )
        .with("retry_after", 2)
        .into()
    };
    /// One place in the queue, given back however the wait ends (a client that disconnects
    /// while waiting included).
    struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let waiting = Waiting(&state.unseal_waiting);
    if waiting.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= UNSEAL_QUEUE {
        return Err(busy());
    }
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        state.unseal_permits.clone().acquire_owned(),
    )
    .await;
    drop(waiting);
    let Ok(Ok(_permit)) = permit else {
        return Err(busy());
    };
    if !state.is_sealed() {
        return Ok(Json(json!({ "sealed": false })).into_response());
    }
    let material: Zeroizing<Vec<u8>> = match (&req.passphrase, &req.key) {
        (None, None) if req.recovery_key.is_some() => {
            let text = req
                .recovery_key
                .as_ref()
                .map(|r| r.trim().to_owned())
                .unwrap_or_default();
            let hex = Zeroizing::new(text.strip_prefix("svrk_").unwrap_or("").replace('-', ""));
            let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            match bytes {
                Some(b) if b.len() == 32 => Zeroizing::new(b),
                _ => {
                    return Err(Error::invalid_request(
                        "recovery_key must be svrk_ followed by 64 hex digits",
                    )
                    .into());
                }
            }
        }
        (Some(p), None) => Zeroizing::new(p.as_bytes().to_vec()),
        (None, Some(k)) => {
            use base64::Engine as _;
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(k.as_bytes())
                    .map_err(|_| Error::invalid_request("key must be base64"))?,
            )
        }
        _ => return Err(Error::invalid_request("send exactly one of passphrase or key").into()),
    };
    if [
        req.passphrase.is_some(),
        req.key.is_some(),
        req.recovery_key.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
        != 1
    {
        return Err(
            Error::invalid_request("send exactly one of passphrase, key or recovery_key").into(),
        );
    }
    let kind = if req.key.is_some() {
        1
    } else if req.recovery_key.is_some() {
        2
    } else {
        0
    };
    let path = state.vault_path.clone();
    let clock = state.clock.clone();
    let settings = state.config.plugins.clone();
    // Argon2id takes a quarter of a second by design: keep it off the async workers.
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine, Error> {
        let unlock = match kind {
            1 => Unlock::KeyFile(&material),
            2 => Unlock::RecoveryKey(&material),
            _ => Unlock::Passphrase(&material),
        };
        // Just after a seal, a background task (a plugin compile, a delivery pass) may still
        // hold the engine it sealed, and with it the file: wait for it to let go. The key is
        // checked (Argon2id run) once, not once per try.
        let vault = Vault::open_waiting(&path, unlock, std::time::Duration::from_secs(5))?;
        Engine::load_with(Arc::new(vault), clock, settings)
    })
    .await
    .map_err(|_| Error::internal("unseal task failed"))?;
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            if e.code == scaivault_core::ErrorCode::InvalidPassphrase {
                state
                    .metrics
                    .unseal_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let from = meta.and_then(|m| m.0.source_ip);
                tracing::warn!(source_ip = ?from, "unseal attempt with a wrong key refused");
            }
            return Err(e.into());
        }
    };
    if state.is_sealed() {
        state.set_engine(Some(Arc::new(engine)));
    }
    tracing::info!("vault unsealed");
    Ok(Json(json!({ "sealed": false })).into_response())
}

/// Seals. The entry recording it is made durable first, while there is still an audit log to
/// write to; a seal whose entry cannot be written does not happen.
pub async fn seal(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    audit: Option<axum::Extension<crate::context::HandlerAudit>>,
) -> Result<Response, ApiError> {
    auth.engine.authorize(&auth.caller, Scope::Admin, None)?;
    if let Some(axum::Extension(a)) = audit {
        let mut extra = serde_json::Map::new();
        extra.insert("status".into(), 200.into());
        let entry = a.input(
            &auth.caller,
            scaivault_engine::AuditAction::Seal.as_str(),
            None,
            true,
            extra,
        );
        auth.engine
            .record_audit(entry)
            .await
            .map_err(|e| ApiError(crate::context::unrecorded(&a.request_id, &e)))?;
    }
    drop(auth);
    state.close().await;
    tracing::info!("vault sealed");
    let mut resp = Json(json!({ "sealed": true })).into_response();
    resp.extensions_mut().insert(crate::context::AuditRecorded);
    Ok(resp)
}

pub async fn rotate_key(auth: Auth) -> Result<Json<serde_json::Value>, ApiError> {
    auth.engine.authorize(&auth.caller, Scope::Admin, None)?;
    let change = auth
        .engine
        .vault()
        .rotate_data_key()
        .await
        .map_err(Error::from)?;
    Ok(Json(serde_json::to_value(change).expect("serializes")))
}

/// Streams a fresh backup. The snapshot is taken from one read transaction while the vault
/// keeps serving; its facts (checksum, audit head) travel in `X-ScaiVault-Backup`.
pub async fn backup(auth: Auth) -> Result<Response, ApiError> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal(format!("no temp dir: {e}")))?;
    let file = dir.path().join("vault.svbak");
    let (engine, caller, f) = (auth.engine.clone(), auth.caller.clone(), file.clone());
    let facts = tokio::task::spawn_blocking(move || engine.backup(&caller, &f))
        .await
        .map_err(|_| Error::internal("backup task failed"))??;
    let handle = tokio::fs::File::open(&file)
        .await
        .map_err(|e| Error::internal(format!("backup unreadable: {e}")))?;
    let len = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
    // The open handle keeps the data; the directory may go once the stream ends.
    let stream = tokio_util::io::ReaderStream::new(handle);
    let body = axum::body::Body::from_stream(futures_keep(stream, dir));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("content-length", len.into());
    let facts = serde_json::to_string(&facts).unwrap_or_default();
    if let Ok(v) = axum::http::HeaderValue::from_str(&facts) {
        h.insert("x-scaivault-backup", v);
    }
    Ok(resp)
}

/// Keeps `guard` alive as long as the stream is.
fn futures_keep<S: Send + 'static, G: Send + 'static>(stream: S, guard: G) -> KeepAlive<S, G> {
    KeepAlive {
        stream,
        _guard: guard,
    }
}

struct KeepAlive<S, G> {
    stream: S,
    _guard: G,
}

impl<S: futures_core::Stream + Unpin, G: Unpin> futures_core::Stream for KeepAlive<S, G> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        std::pin::Pin::new(&mut self.stream).poll_next(cx)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreQuery {
    path: String,
    #[serde(default)]
    version: Option<u64>,
}

/// Per-secret point-in-time restore: the body is a backup file; the secret at `path` (and
/// `version`) in it is written back as a new version.
pub async fn restore(
    auth: Auth,
    audit: Option<axum::Extension<crate::context::HandlerAudit>>,
    crate::json::ApiQuery(q): crate::json::ApiQuery<RestoreQuery>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    use tokio::io::AsyncWriteExt;
    const MAX_UPLOAD: u64 = 64 * 1024 * 1024 * 1024;
    let dir = tempfile::tempdir().map_err(|e| Error::internal(format!("no temp dir: {e}")))?;
    let file = dir.path().join("upload.svbak");
    let mut out = tokio::fs::File::from_std(
        scaivault_store::private_fs::create_new(&file)
            .map_err(|e| Error::internal(e.to_string()))?,
    );
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    use futures_core::Stream as _;
    while let Some(chunk) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
    {
        let chunk = chunk.map_err(|_| Error::invalid_request("the upload was cut off"))?;
        written += chunk.len() as u64;
        if written > MAX_UPLOAD {
            return Err(Error::new(
                scaivault_core::ErrorCode::PayloadTooLarge,
                "the backup is larger than 64 GiB",
            )
            .into());
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    out.flush()
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    drop(out);
    let Some(axum::Extension(audit)) = audit else {
        return Err(Error::internal("the restore route lost its audit context").into());
    };
    let entry = audit.input(
        &auth.caller,
        scaivault_engine::AuditAction::RestoreFromBackup.as_str(),
        Some(q.path.clone()),
        true,
        serde_json::Map::new(),
    );
    let w = auth
        .engine
        .restore_from_backup(&auth.caller, &file, &q.path, q.version, entry)
        .await?;
    let mut resp = Json(serde_json::to_value(w).unwrap_or_default()).into_response();
    resp.extensions_mut().insert(crate::context::AuditRecorded);
    Ok(resp)
}

/// `DELETE /v1/sys/damaged/{path}`: the path is taken raw, like secrets'.
pub async fn destroy_damaged(
    auth: Auth,
    uri: axum::http::Uri,
) -> Result<Json<scaivault_engine::DamagedDestroyed>, ApiError> {
    let path = crate::routes::raw_tail(&uri, "/v1/sys/damaged/");
    Ok(Json(auth.engine.destroy_damaged(&auth.caller, path).await?))
}

pub async fn verify(auth: Auth) -> Result<Json<scaivault_engine::VaultReport>, ApiError> {
    let engine = auth.engine.clone();
    let caller = auth.caller.clone();
    let report = tokio::task::spawn_blocking(move || engine.verify_vault(&caller))
        .await
        .map_err(|_| Error::internal("verify task failed"))??;
    Ok(Json(report))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// A duration such as `8d`.
    advance: String,
}

/// `dev --test-clock` only: moves the engine's clock forward, then runs one pass of the
/// rotation scheduler, of the expiry notices and of the soft-delete purge, so tests see 90
/// days pass in a second. Any other server answers 404.
pub async fn advance_test_clock(
    State(state): State<Arc<AppState>>,
    auth: Auth,
    ApiJson(req): ApiJson<AdvanceClock>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(clock) = state.config.test_clock.clone() else {
        return Err(ApiError::from(scaivault_core::ErrorCode::RouteNotFound));
    };
    auth.engine.authorize(&auth.caller, Scope::Admin, None)?;
    let d = scaivault_core::duration::parse_duration(&req.advance)?;
    clock.0.advance(d);
    let rotations = auth.engine.rotation_tick().await?;
    let expiry_notices = auth.engine.expiry_tick().await?;
    let purged = auth.engine.purge_deleted().await?;
    Ok(Json(json!({
        "now": state.clock.now(), "rotations": rotations, "expiry_notices": expiry_notices,
        "purged": purged,
    })))
}
