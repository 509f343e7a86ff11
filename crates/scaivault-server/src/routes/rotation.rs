use axum::Json;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{
    RotateResult, RotationPolicyList, RotationPolicyRequest, RotationPolicyView, RotationStatus,
};
use serde::Deserialize;

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    active_only: Option<bool>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn list(
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RotationPolicyList>, ApiError> {
    Ok(Json(auth.engine.list_rotation_policies(
        &auth.caller,
        q.active_only.unwrap_or(false),
        q.limit,
        q.cursor.as_deref(),
    )?))
}

pub async fn create(
    auth: Auth,
    ApiJson(req): ApiJson<RotationPolicyRequest>,
) -> Result<Response, ApiError> {
    let p = auth
        .engine
        .create_rotation_policy(&auth.caller, req)
        .await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

pub async fn get(auth: Auth, Path(id): Path<String>) -> Result<Json<RotationPolicyView>, ApiError> {
    Ok(Json(auth.engine.get_rotation_policy(&auth.caller, &id)?))
}

pub async fn patch(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotationPolicyRequest>,
) -> Result<Json<RotationPolicyView>, ApiError> {
    Ok(Json(
        auth.engine
            .update_rotation_policy(&auth.caller, &id, req)
            .await?,
    ))
}

pub async fn delete(auth: Auth, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    auth.engine
        .delete_rotation_policy(&auth.caller, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn enable(
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<RotationPolicyView>, ApiError> {
    Ok(Json(
        auth.engine
            .set_rotation_active(&auth.caller, &id, true)
            .await?,
    ))
}

pub async fn disable(
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<RotationPolicyView>, ApiError> {
    Ok(Json(
        auth.engine
            .set_rotation_active(&auth.caller, &id, false)
            .await?,
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    secret_path: String,
}

pub async fn assign(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> Result<Response, ApiError> {
    let a = auth
        .engine
        .assign_rotation(&auth.caller, &id, &req.secret_path)
        .await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// `DELETE /v1/rotation/policies/{id}/secrets/{path}`: the path is taken raw, like secrets'.
pub async fn unassign(
    auth: Auth,
    Path((id, _)): Path<(String, String)>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let prefix = format!("/v1/rotation/policies/{id}/secrets/");
    // The secret may come as one URL-encoded segment (`rot%2Fauto`), as the reference shows.
    let raw = uri.path().strip_prefix(&prefix).unwrap_or("");
    let path = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::new(ErrorCode::InvalidPath, "the path is not UTF-8 once decoded"))?
        .into_owned();
    auth.engine
        .unassign_rotation(&auth.caller, &id, &path)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    secret_path: Option<String>,
}

/// The body is optional: none rotates every attached secret.
pub async fn rotate(
    auth: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RotateResult>, ApiError> {
    let req: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            scaivault_core::Error::invalid_request("the body is {\"secret_path\": \"…\"} or empty")
        })?
    };
    Ok(Json(
        auth.engine
            .rotate_now(&auth.caller, &id, req.secret_path.as_deref())
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    #[serde(default)]
    path: Option<String>,
}

pub async fn status(
    auth: Auth,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<RotationStatus>, ApiError> {
    Ok(Json(
        auth.engine
            .rotation_status(&auth.caller, q.path.as_deref())?,
    ))
}
