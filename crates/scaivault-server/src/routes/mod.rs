//! The `/v1` router. Every endpoint is listed here, so one grep finds it.

mod audit;
mod auth;
mod identities;
mod plugins;
mod policies;
mod rotation;
mod secret_policies;
mod secrets;
mod sys;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use scaivault_core::ErrorCode;

use crate::context::request_context;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/health", get(sys::health))
        .route("/v1/health/ready", get(sys::ready))
        .route("/v1/version", get(sys::version))
        .route("/v1/metrics", get(sys::metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        .route("/v1/sys/status", get(sys::status))
        .route("/v1/sys/unseal", post(sys::unseal))
        .route("/v1/sys/seal", post(sys::seal))
        .route("/v1/sys/rotate-key", post(sys::rotate_key))
        .route("/v1/sys/backup", get(sys::backup))
        .route("/v1/sys/restore", post(sys::restore))
        .route("/v1/sys/verify", post(sys::verify))
        .route("/v1/sys/test/clock", post(sys::advance_test_clock))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{*path}",
            get(secrets::read)
                .put(secrets::write)
                .delete(secrets::delete)
                .post(secrets::post),
        )
        .route(
            "/v1/metadata/{*path}",
            get(secrets::metadata).patch(secrets::update_metadata),
        )
        .route("/v1/versions/{*path}", get(secrets::versions))
        .route("/v1/restore/{*path}", post(secrets::restore))
        .route("/v1/policies", get(policies::list).post(policies::create))
        .route("/v1/policies/test", post(policies::test))
        .route(
            "/v1/policies/{id}",
            get(policies::get)
                .put(policies::replace)
                .patch(policies::patch)
                .delete(policies::delete),
        )
        .route(
            "/v1/policies/{id}/bindings",
            get(policies::bindings).post(policies::bind),
        )
        .route(
            "/v1/policies/{id}/bindings/{binding}",
            delete(policies::unbind),
        )
        .route("/v1/audit/logs", get(audit::logs))
        .route("/v1/audit/secrets/{*path}", get(audit::for_secret))
        .route("/v1/audit/identities/{id}", get(audit::for_identity))
        .route("/v1/audit/summary", get(audit::summary))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/prune", post(audit::prune))
        .route(
            "/v1/rotation/policies",
            get(rotation::list).post(rotation::create),
        )
        .route(
            "/v1/rotation/policies/{id}",
            get(rotation::get)
                .patch(rotation::patch)
                .delete(rotation::delete),
        )
        .route("/v1/rotation/policies/{id}/enable", post(rotation::enable))
        .route(
            "/v1/rotation/policies/{id}/disable",
            post(rotation::disable),
        )
        .route("/v1/rotation/policies/{id}/secrets", post(rotation::assign))
        .route(
            "/v1/rotation/policies/{id}/secrets/{*path}",
            delete(rotation::unassign),
        )
        .route("/v1/rotation/policies/{id}/rotate", post(rotation::rotate))
        .route("/v1/rotation/status", get(rotation::status))
        .route(
            "/v1/secret-policies",
            get(secret_policies::list).post(secret_policies::create),
        )
        .route(
            "/v1/secret-policies/{id}",
            get(secret_policies::get)
                .patch(secret_policies::patch)
                .delete(secret_policies::delete),
        )
        .route(
            "/v1/secret-policies/{id}/generate",
            post(secret_policies::generate),
        )
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::patch)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/plugins",
            get(plugins::list)
                .post(plugins::install)
                .layer(DefaultBodyLimit::max(plugins::MAX_INSTALL_BODY)),
        )
        .route("/v1/plugins/verify", post(plugins::verify))
        .route(
            "/v1/plugins/{name}",
            get(plugins::get).delete(plugins::remove),
        )
        .route("/v1/generators/{name}/generate", post(plugins::generate))
        .route("/v1/auth/whoami", get(auth::whoami))
        .route("/v1/auth/introspect", post(auth::introspect))
        .route("/v1/auth/token", post(auth::client_credentials))
        .route(
            "/v1/auth/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route("/v1/auth/tokens/{id}", delete(auth::revoke_token))
        .route(
            "/v1/identities",
            get(identities::list).post(identities::create),
        )
        .route(
            "/v1/identities/{id}",
            get(identities::get).delete(identities::delete),
        )
        .route("/v1/identities/{id}/members", post(identities::add_member))
        .route(
            "/v1/identities/{id}/members/{member}",
            delete(identities::remove_member),
        )
        .route(
            "/v1/identities/{id}/credentials",
            post(identities::create_credential),
        )
        .fallback(|| async { ApiError::from(ErrorCode::RouteNotFound) })
        .method_not_allowed_fallback(|| async { ApiError::from(ErrorCode::MethodNotAllowed) })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

/// The raw (still percent-encoded) path after `prefix`: secret paths are matched on the
/// bytes the client sent, so `%2F` or `%2e%2e` can never turn into `/` or `..`.
pub(crate) fn raw_tail<'a>(uri: &'a axum::http::Uri, prefix: &str) -> &'a str {
    uri.path().strip_prefix(prefix).unwrap_or("")
}
