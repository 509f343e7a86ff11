use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_engine::{BindingRequest, PolicyRequest, PolicyTestRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery, PolicyJson};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    include_inactive: Option<bool>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn list(
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<scaivault_engine::PolicyList>, ApiError> {
    // `scope` (tenant/partner) names the managed service's tenancy; a single-node vault has
    // one tenant, so every policy is in either scope.
    let _ = &q.scope;
    Ok(Json(auth.engine.list_policies(
        &auth.caller,
        q.include_inactive.unwrap_or(false),
        q.limit,
        q.cursor.as_deref(),
    )?))
}

pub async fn create(
    auth: Auth,
    PolicyJson(req): PolicyJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    let p = auth.engine.create_policy(&auth.caller, req).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

pub async fn get(auth: Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(auth.engine.get_policy(&auth.caller, &id)?).into_response())
}

pub async fn replace(
    auth: Auth,
    Path(id): Path<String>,
    PolicyJson(req): PolicyJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(
        auth.engine
            .update_policy(&auth.caller, &id, req, true)
            .await?,
    )
    .into_response())
}

pub async fn patch(
    auth: Auth,
    Path(id): Path<String>,
    PolicyJson(req): PolicyJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(
        auth.engine
            .update_policy(&auth.caller, &id, req, false)
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    force: Option<bool>,
}

pub async fn delete(
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    auth.engine
        .delete_policy(&auth.caller, &id, q.force.unwrap_or(false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn bindings(auth: Auth, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "bindings": auth.engine.list_bindings(&auth.caller, &id)? }),
    ))
}

pub async fn bind(
    auth: Auth,
    Path(id): Path<String>,
    PolicyJson(req): PolicyJson<BindingRequest>,
) -> Result<Response, ApiError> {
    let b = auth.engine.create_binding(&auth.caller, &id, req).await?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

pub async fn unbind(
    auth: Auth,
    Path((id, binding)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    auth.engine
        .delete_binding(&auth.caller, &id, &binding)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Dry run; not audited (spec §1.8).
pub async fn test(
    auth: Auth,
    ApiJson(req): ApiJson<PolicyTestRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(auth.engine.test_policy(&auth.caller, req)?).into_response())
}
