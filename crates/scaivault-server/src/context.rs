//! The request-context middleware: the one place every request passes. It assigns the
//! request id, authenticates, applies rate limits, renders errors as the spec's envelope,
//! records metrics, and is where the audit log will record each request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{Caller, Engine};

use crate::error::{ApiError, PendingError, envelope};
use crate::ratelimit::Category;
use crate::state::AppState;

/// The authenticated caller of this request, with the engine it was authenticated against.
#[derive(Clone)]
pub(crate) struct Auth {
    pub engine: Arc<Engine>,
    pub caller: Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Auth>().cloned().ok_or_else(|| {
            ApiError(Error::new(
                ErrorCode::AuthenticationRequired,
                "this endpoint needs a token",
            ))
        })
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let b: [u8; 12] = scaivault_crypto::random_bytes();
            format!(
                "req_{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        })
}

/// Which rate-limit bucket (and metrics label) a request belongs to; `Public` needs no token.
pub(crate) fn category(method: &Method, path: &str, public_metrics: bool) -> Category {
    let p = path.trim_end_matches('/');
    match p {
        "/v1/health" | "/v1/health/ready" | "/v1/version" | "/v1/sys/status" | "/v1/sys/unseal"
        | "/v1/auth/token" => {
            return Category::Public;
        }
        "/v1/metrics" if public_metrics => return Category::Public,
        "/v1/secrets" => return Category::List,
        "/v1/secrets/batch" if method == Method::POST => return Category::Batch,
        "/v1/policies/test" => return Category::PolicyTest,
        "/v1/auth/whoami" | "/v1/auth/introspect" => return Category::Auth,
        _ => {}
    }
    if p.starts_with("/v1/secrets/") {
        return match *method {
            Method::GET | Method::HEAD => Category::Read,
            Method::DELETE => Category::Delete,
            _ => Category::Write,
        };
    }
    if p.starts_with("/v1/metadata/") || p.starts_with("/v1/versions/") {
        return if method == Method::PATCH {
            Category::Write
        } else {
            Category::List
        };
    }
    if p.starts_with("/v1/restore/") {
        return Category::Delete;
    }
    if p.starts_with("/v1/policies") {
        return Category::Policy;
    }
    Category::Admin
}

fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let missing = || {
        Error::new(
            ErrorCode::AuthenticationRequired,
            "send Authorization: Bearer <token>",
        )
    };
    let v = headers
        .get("authorization")
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = v.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

pub(crate) async fn request_context(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    state.metrics.begin();
    let rid = request_id(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let cat = category(&method, &path, state.config.public_metrics);
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());

    let mut limit_headers = None;
    let mut identity = None;
    let outcome: Result<Response, Error> = async {
        if cat != Category::Public {
            let engine = state.engine()?;
            let caller = engine.authenticate(bearer(req.headers())?, source_ip)?;
            identity = Some(caller.identity_id.to_string());
            if let Some(v) = state.limiter.check(caller.identity_id.as_str(), cat) {
                let (allowed, retry) = (v.allowed, v.retry_after);
                limit_headers = Some(v);
                if !allowed {
                    state.metrics.rate_limited(cat.name());
                    return Err(Error::new(
                        ErrorCode::RateLimited,
                        format!("too many {} requests; retry in {retry}s", cat.name()),
                    )
                    .with("category", cat.name())
                    .with("retry_after", retry));
                }
            }
            req.extensions_mut().insert(Auth { engine, caller });
        }
        Ok(next.run(req).await)
    }
    .await;

    let mut resp = match outcome {
        Ok(r) => r,
        Err(e) => ApiError(e).into_response(),
    };
    let mut error_code = None;
    if let Some(PendingError(e)) = resp.extensions_mut().remove::<PendingError>() {
        error_code = Some(e.code);
        let status = resp.status();
        let body = envelope(&e, &rid);
        let mut rendered = (status, axum::Json(body)).into_response();
        std::mem::swap(rendered.headers_mut(), resp.headers_mut());
        rendered
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        resp = rendered;
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        headers.insert("x-request-id", v);
    }
    if let Some(v) = limit_headers {
        let now = state.clock.now().unix_seconds() as u64;
        headers.insert("x-ratelimit-limit", v.limit.into());
        headers.insert("x-ratelimit-remaining", v.remaining.into());
        headers.insert("x-ratelimit-reset", (now + v.reset_in).into());
        if v.retry_after > 0 {
            headers.insert("retry-after", v.retry_after.into());
        }
    }
    let status = resp.status();
    let elapsed = started.elapsed();
    state.metrics.end(
        method.as_str(),
        cat.name(),
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    // The audit log records here. Until it exists, an access line without any value.
    tracing::debug!(
        target: "scaivault::access",
        request_id = %rid, method = %method, category = cat.name(), status = status.as_u16(),
        identity = identity.as_deref().unwrap_or("-"), error = error_code.map(|c| c.as_str()).unwrap_or("-"),
        micros = elapsed.as_micros() as u64, "request"
    );
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(request_id = %rid, code = error_code.map(|c| c.as_str()).unwrap_or("-"), "request failed");
    }
    resp
}
