//! `/v1/webhooks` (spec §2.8).

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_engine::{
    DeliveryPage, WebhookDetail, WebhookList, WebhookRequest, WebhookTested, WebhookView,
};
use serde::Deserialize;

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};

pub async fn list(auth: Auth) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(auth.engine.list_webhooks(&auth.caller)?))
}

pub async fn create(
    auth: Auth,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> Result<Response, ApiError> {
    let w = auth.engine.create_webhook(&auth.caller, req).await?;
    Ok((StatusCode::CREATED, Json(w)).into_response())
}

pub async fn get(auth: Auth, Path(id): Path<String>) -> Result<Json<WebhookDetail>, ApiError> {
    Ok(Json(auth.engine.get_webhook(&auth.caller, &id)?))
}

pub async fn patch(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(
        auth.engine.update_webhook(&auth.caller, &id, req).await?,
    ))
}

pub async fn delete(auth: Auth, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    auth.engine.delete_webhook(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn test(auth: Auth, Path(id): Path<String>) -> Result<Json<WebhookTested>, ApiError> {
    Ok(Json(auth.engine.test_webhook(&auth.caller, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn deliveries(
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    Ok(Json(auth.engine.list_deliveries(
        &auth.caller,
        &id,
        q.status.as_deref(),
        q.limit,
        q.cursor.as_deref(),
    )?))
}
