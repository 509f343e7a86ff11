//! `/v1/secret-policies` (spec §1.7): value-generation recipes.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_engine::{Generated, SecretPolicy, SecretPolicyList, SecretPolicyRequest};

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::ApiJson;

pub async fn list(auth: Auth) -> Result<Json<SecretPolicyList>, ApiError> {
    Ok(Json(auth.engine.list_secret_policies(&auth.caller)?))
}

pub async fn create(
    auth: Auth,
    ApiJson(req): ApiJson<SecretPolicyRequest>,
) -> Result<Response, ApiError> {
    let p = auth.engine.create_secret_policy(&auth.caller, req).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

pub async fn get(auth: Auth, Path(id): Path<String>) -> Result<Json<SecretPolicy>, ApiError> {
    Ok(Json(auth.engine.get_secret_policy(&auth.caller, &id)?))
}

pub async fn patch(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SecretPolicyRequest>,
) -> Result<Json<SecretPolicy>, ApiError> {
    Ok(Json(
        auth.engine
            .update_secret_policy(&auth.caller, &id, req)
            .await?,
    ))
}

pub async fn delete(auth: Auth, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    auth.engine.delete_secret_policy(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn generate(auth: Auth, Path(id): Path<String>) -> Result<Json<Generated>, ApiError> {
    Ok(Json(
        auth.engine
            .generate_with_secret_policy(&auth.caller, &id)
            .await?,
    ))
}
