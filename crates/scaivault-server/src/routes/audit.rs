use axum::Json;
use axum::extract::Path;
use axum::http::Uri;
use scaivault_engine::{
    AuditPage, AuditPruned, AuditQuery, AuditSummary, AuditTrail, SummaryQuery, VerifyReport,
};
use serde::Deserialize;

use super::raw_tail;
use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};

pub async fn logs(
    auth: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(auth.engine.query_audit(&auth.caller, &q)?))
}

pub async fn for_secret(
    auth: Auth,
    uri: Uri,
    ApiQuery(mut q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditTrail>, ApiError> {
    let path = raw_tail(&uri, "/v1/audit/secrets/").to_owned();
    q.secret_path = Some(path.clone());
    Ok(Json(AuditTrail {
        page: auth.engine.query_audit(&auth.caller, &q)?,
        summary: auth.engine.trail_summary(&auth.caller, None, Some(path))?,
    }))
}

pub async fn for_identity(
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(mut q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditTrail>, ApiError> {
    q.identity_id = Some(id.clone());
    Ok(Json(AuditTrail {
        page: auth.engine.query_audit(&auth.caller, &q)?,
        summary: auth.engine.trail_summary(&auth.caller, Some(id), None)?,
    }))
}

pub async fn summary(
    auth: Auth,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Json<AuditSummary>, ApiError> {
    Ok(Json(auth.engine.audit_summary(&auth.caller, &q)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    #[serde(default)]
    fast: Option<bool>,
}

pub async fn verify(
    auth: Auth,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Result<Json<VerifyReport>, ApiError> {
    Ok(Json(
        auth.engine
            .verify_audit(&auth.caller, q.fast.unwrap_or(false))?,
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    older_than: String,
}

/// Removes entries older than `older_than` (whole checkpoint spans only).
pub async fn prune(
    auth: Auth,
    ApiJson(req): ApiJson<PruneRequest>,
) -> Result<Json<AuditPruned>, ApiError> {
    let age = scaivault_core::duration::parse_duration(&req.older_than)?;
    let before = auth.engine.now().minus(age);
    Ok(Json(auth.engine.prune_audit(&auth.caller, before).await?))
}
