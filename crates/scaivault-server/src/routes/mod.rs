//! The `/v1` router, built from the route table ([`table::ROUTES`]): one grep of `table.rs`
//! finds any endpoint, its scope, its rate-limit bucket and its audit action.

mod audit;
mod auth;
mod identities;
mod plugins;
mod policies;
mod rotation;
mod secret_policies;
mod secrets;
mod subscriptions;
mod sys;
pub mod table;
mod vault;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use scaivault_core::ErrorCode;

use crate::context::{guard, request_context};
use crate::error::ApiError;
use crate::state::AppState;
use axum::handler::Handler as _;
use table::{ROUTES, UNROUTED};

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for spec in ROUTES {
        if spec.test_only && state.config.test_clock.is_none() {
            continue;
        }
        let mut route = (spec.handler)(spec.filter()).layer(axum::middleware::from_fn_with_state(
            (state.clone(), spec),
            guard,
        ));
        if spec.large_body {
            route = route.layer(DefaultBodyLimit::max(plugins::MAX_INSTALL_BODY));
        }
        router = router.route(spec.path, route);
    }
    let unrouted = || axum::middleware::from_fn_with_state((state.clone(), &UNROUTED), guard);
    let router = router
        .fallback((|| async { ApiError::from(ErrorCode::RouteNotFound) }).layer(unrouted()))
        .method_not_allowed_fallback(
            (|| async { ApiError::from(ErrorCode::MethodNotAllowed) }).layer(unrouted()),
        )
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state);
    // Before routing: a Vault client's listing becomes a route of its own, and what this
    // server does not do is refused (see `vault`).
    Router::new().fallback_service(tower::Layer::layer(
        &axum::middleware::map_request(vault::vault_request),
        router,
    ))
}

pub(crate) use vault::{is_vault_path, vault_error};

/// The raw (still percent-encoded) path after `prefix`: secret paths are matched on the
/// bytes the client sent, so `%2F` or `%2e%2e` can never turn into `/` or `..`.
pub(crate) fn raw_tail<'a>(uri: &'a axum::http::Uri, prefix: &str) -> &'a str {
    uri.path().strip_prefix(prefix).unwrap_or("")
}
