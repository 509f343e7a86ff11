//! `/v1/plugins`: the operator's view of the plugin catalogue.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{PluginInfo, PluginList, PluginVerification};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::ApiJson;

/// Largest install request: a plugin up to 12 MiB, base64-encoded.
pub const MAX_INSTALL_BODY: usize = 16 * 1024 * 1024;

pub async fn list(auth: Auth) -> Result<Json<PluginList>, ApiError> {
    Ok(Json(PluginList {
        data: auth.engine.list_plugins(&auth.caller)?,
    }))
}

pub async fn get(auth: Auth, Path(name): Path<String>) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(auth.engine.get_plugin(&auth.caller, &name)?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// The manifest as a JSON object.
    manifest: Value,
    /// The `.wasm` file, standard base64.
    wasm_base64: String,
}

pub async fn install(
    auth: Auth,
    ApiJson(req): ApiJson<InstallRequest>,
) -> Result<Response, ApiError> {
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(req.wasm_base64.as_bytes())
        .map_err(|_| Error::new(ErrorCode::InvalidRequest, "wasm_base64 is not valid base64"))?;
    let manifest = serde_json::to_vec(&req.manifest)
        .map_err(|_| Error::invalid_request("manifest does not serialize"))?;
    let info = auth
        .engine
        .install_plugin(&auth.caller, &manifest, wasm)
        .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub async fn remove(auth: Auth, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    auth.engine.remove_plugin(&auth.caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn verify(auth: Auth) -> Result<Json<PluginVerification>, ApiError> {
    let plugins = auth.engine.verify_plugins(&auth.caller)?;
    Ok(Json(PluginVerification {
        ok: plugins.iter().all(|c| c.ok),
        plugins,
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    #[serde(default)]
    config: Value,
}

/// Runs a generator without storing anything.
pub async fn generate(
    auth: Auth,
    Path(generator): Path<String>,
    ApiJson(req): ApiJson<GenerateRequest>,
) -> Result<Json<Value>, ApiError> {
    let config = if req.config.is_null() {
        json!({})
    } else {
        req.config
    };
    Ok(Json(
        auth.engine
            .generate_value(&auth.caller, &generator, config)
            .await?,
    ))
}
