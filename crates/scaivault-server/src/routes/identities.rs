use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_core::identity::IdentityType;
use scaivault_core::scope::ScopeSet;
use scaivault_engine::CreateIdentity;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    identity_type: Option<String>,
}

pub async fn list(auth: Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let kind = q
        .identity_type
        .as_deref()
        .map(IdentityType::parse)
        .transpose()?;
    Ok(Json(
        json!({ "identities": auth.engine.list_identities(&auth.caller, kind)? }),
    ))
}

pub async fn create(
    auth: Auth,
    ApiJson(req): ApiJson<CreateIdentity>,
) -> Result<Response, ApiError> {
    let v = auth.engine.create_identity(&auth.caller, req).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn get(auth: Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(auth.engine.get_identity(&auth.caller, &id)?).into_response())
}

pub async fn delete(auth: Auth, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    auth.engine.delete_identity(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    member_id: String,
}

pub async fn add_member(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MemberRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(
        auth.engine
            .set_membership(&auth.caller, &id, &req.member_id, true)
            .await?,
    )
    .into_response())
}

pub async fn remove_member(
    auth: Auth,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(
        auth.engine
            .set_membership(&auth.caller, &id, &member, false)
            .await?,
    )
    .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    scopes: Vec<String>,
}

pub async fn create_credential(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CredentialRequest>,
) -> Result<Response, ApiError> {
    let scopes = ScopeSet::parse_list(&req.scopes)?;
    let out = auth
        .engine
        .create_client_credential(&auth.caller, &id, scopes)
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn list_credentials(
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<scaivault_engine::CredentialList>, ApiError> {
    Ok(Json(
        auth.engine.list_client_credentials(&auth.caller, &id)?,
    ))
}

pub async fn revoke_credential(
    auth: Auth,
    Path((id, credential)): Path<(String, String)>,
) -> Result<Json<scaivault_engine::CredentialRevoked>, ApiError> {
    Ok(Json(
        auth.engine
            .revoke_client_credential(&auth.caller, &id, &credential)
            .await?,
    ))
}

pub async fn roles(auth: Auth) -> Json<scaivault_engine::RoleList> {
    Json(auth.engine.assignable_roles())
}

pub async fn user_roles(
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<scaivault_engine::UserRoles>, ApiError> {
    Ok(Json(auth.engine.user_roles(&auth.caller, &id)?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesRequest {
    roles: Vec<String>,
}

pub async fn set_user_roles(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RolesRequest>,
) -> Result<Json<scaivault_engine::UserRoles>, ApiError> {
    Ok(Json(
        auth.engine
            .set_user_roles(&auth.caller, &id, req.roles)
            .await?,
    ))
}

pub async fn resolve(
    auth: Auth,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<scaivault_engine::ResolvedIdentity>, ApiError> {
    Ok(Json(auth.engine.resolve_identity(
        &auth.caller,
        &kind,
        &id,
    )?))
}
