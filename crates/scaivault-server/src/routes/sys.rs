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
    Json(json!({ "status": "ready", "checks": { "database": "ok", "encryption": "ok" } }))
        .into_response()
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
    let total = state.engine().ok().map(|e| e.secrets_total());
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(total),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    #[serde(default)]
    passphrase: Option<Zeroizing<String>>,
    /// Base64 of a key file's bytes.
    #[serde(default)]
    key: Option<Zeroizing<String>>,
}

pub async fn unseal(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<UnsealRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.is_sealed() {
        return Ok(Json(json!({ "sealed": false })));
    }
    let material: Zeroizing<Vec<u8>> = match (&req.passphrase, &req.key) {
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
    let is_key = req.key.is_some();
    let path = state.vault_path.clone();
    let clock = state.clock.clone();
    // Argon2id takes a quarter of a second by design: keep it off the async workers.
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine, Error> {
        let unlock = if is_key {
            Unlock::KeyFile(&material)
        } else {
            Unlock::Passphrase(&material)
        };
        let vault = Vault::open(&path, unlock)?;
        Engine::load(Arc::new(vault), clock)
    })
    .await
    .map_err(|_| Error::internal("unseal task failed"))??;
    if state.is_sealed() {
        state.set_engine(Some(Arc::new(engine)));
    }
    tracing::info!("vault unsealed");
    Ok(Json(json!({ "sealed": false })))
}

pub async fn seal(
    State(state): State<Arc<AppState>>,
    auth: Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.engine.authorize(&auth.caller, Scope::Admin, None)?;
    drop(auth);
    state.close().await;
    tracing::info!("vault sealed");
    Ok(Json(json!({ "sealed": true })))
}

pub async fn rotate_key(auth: Auth) -> Result<Json<serde_json::Value>, ApiError> {
    auth.engine.authorize(&auth.caller, Scope::Admin, None)?;
    let id = auth
        .engine
        .vault()
        .rotate_data_key()
        .await
        .map_err(Error::from)?;
    Ok(Json(json!({ "active_data_key": id })))
}
