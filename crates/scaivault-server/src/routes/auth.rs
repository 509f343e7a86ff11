use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_core::Error;
use scaivault_engine::CreateToken;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::context::Auth;
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};

pub async fn whoami(auth: Auth) -> Json<scaivault_engine::Whoami> {
    Json(auth.engine.whoami(&auth.caller))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    #[schemars(with = "String")]
    token: Zeroizing<String>,
}

pub async fn introspect(
    auth: Auth,
    ApiJson(req): ApiJson<IntrospectRequest>,
) -> Result<Json<scaivault_engine::Introspection>, ApiError> {
    Ok(Json(auth.engine.introspect(&auth.caller, &req.token)?))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsRequest {
    #[serde(default)]
    grant_type: Option<String>,
    client_id: String,
    #[schemars(with = "String")]
    client_secret: Zeroizing<String>,
}

/// The client-credentials grant for service accounts; no bearer token needed.
pub async fn client_credentials(
    state: axum::extract::State<std::sync::Arc<crate::state::AppState>>,
    ApiJson(req): ApiJson<ClientCredentialsRequest>,
) -> Result<Json<scaivault_engine::TokenGrant>, ApiError> {
    if req
        .grant_type
        .as_deref()
        .is_some_and(|g| g != "client_credentials")
    {
        return Err(Error::invalid_request("grant_type must be client_credentials").into());
    }
    Ok(Json(
        grant(&state, &req.client_id, &req.client_secret).await?,
    ))
}

/// A token for a client credential (the grant above, and Vault's AppRole login).
pub(crate) async fn grant(
    state: &crate::state::AppState,
    client_id: &str,
    client_secret: &str,
) -> Result<scaivault_engine::TokenGrant, Error> {
    if client_id.len() > 256 {
        return Err(Error::invalid_request("client_id is at most 256 bytes"));
    }
    let engine = state.engine()?;
    // Each grant mints and stores a token: a client may ask for a few a minute (a service
    // needs one an hour), not thousands. Counted only once the secret is verified, so nobody
    // without it can spend the client's allowance; failed attempts count against the
    // caller's address instead (the route's guard).
    let admit = || match state.limiter.check(
        &format!("grant:{client_id}"),
        crate::ratelimit::Category::Grant,
    ) {
        Some(v) if !v.allowed => Err(Error::new(
            scaivault_core::ErrorCode::RateLimited,
            format!(
                "too many token grants for this client; retry in {}s",
                v.retry_after
            ),
        )
        .with("category", "grant")
        .with("retry_after", v.retry_after)),
        _ => Ok(()),
    };
    engine
        .client_credentials(client_id, client_secret, admit)
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenListQuery {
    #[serde(default)]
    identity_id: Option<String>,
}

pub async fn list_tokens(
    auth: Auth,
    ApiQuery(q): ApiQuery<TokenListQuery>,
) -> Result<Json<scaivault_engine::TokenList>, ApiError> {
    Ok(Json(
        auth.engine
            .list_tokens(&auth.caller, q.identity_id.as_deref())?,
    ))
}

pub async fn create_token(
    auth: Auth,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    let issued = auth.engine.create_token(&auth.caller, req).await?;
    Ok((StatusCode::CREATED, Json(&issued)).into_response())
}

pub async fn revoke_token(
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<scaivault_engine::TokenRevoked>, ApiError> {
    let token = auth.engine.revoke_token(&auth.caller, &id).await?;
    Ok(Json(scaivault_engine::TokenRevoked {
        revoked: true,
        token,
    }))
}
