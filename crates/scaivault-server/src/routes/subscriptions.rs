//! `/v1/subscriptions` (spec §2.9).

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_engine::{
    AckRequest, Acknowledged, PollQuery, PollResult, SubscriptionList, SubscriptionRequest,
    SubscriptionView,
};

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};

pub async fn list(auth: Auth) -> Result<Json<SubscriptionList>, ApiError> {
    Ok(Json(auth.engine.list_subscriptions(&auth.caller)?))
}

pub async fn create(
    auth: Auth,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> Result<Response, ApiError> {
    let s = auth.engine.create_subscription(&auth.caller, req).await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

pub async fn get(auth: Auth, Path(id): Path<String>) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(auth.engine.get_subscription(&auth.caller, &id)?))
}

pub async fn patch(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SubscriptionRequest>,
) -> Result<Json<SubscriptionView>, ApiError> {
    Ok(Json(
        auth.engine
            .update_subscription(&auth.caller, &id, req)
            .await?,
    ))
}

pub async fn delete(auth: Auth, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    auth.engine.delete_subscription(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn poll(
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PollQuery>,
) -> Result<Json<PollResult>, ApiError> {
    Ok(Json(
        auth.engine.poll_subscription(&auth.caller, &id, q).await?,
    ))
}

pub async fn ack(
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AckRequest>,
) -> Result<Json<Acknowledged>, ApiError> {
    Ok(Json(
        auth.engine.ack_subscription(&auth.caller, &id, req).await?,
    ))
}
