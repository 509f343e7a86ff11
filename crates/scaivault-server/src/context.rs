//! The middleware every request passes, in two layers.
//!
//! [`request_context`] wraps the whole router: it assigns the request id, renders every error
//! as the spec's envelope, and records metrics and the access line. [`guard`] wraps each
//! route of the table (`routes/table.rs`) and knows which route it guards: it applies the
//! pre-authentication budget, authenticates, applies the caller's rate limit, checks the
//! route's scope **before the handler runs** (so no body is read for a caller that may not
//! call the route), and makes the request's audit entry durable before the response leaves.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{AuditAction, AuditInput, Caller, Engine};

use crate::error::{ApiError, PendingError, envelope};
use crate::in_process::LocalOperator;
use crate::preauth::Record;
use crate::ratelimit::Category;
use crate::routes::table::{Access, Audited, RouteSpec};
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
        // A client's own id is kept for tracing, but never one of the forms the vault mints
        // (`req_…` for requests, so a client cannot pass its request off as another's in the
        // audit log and events; `agg_…` failure counts, `local_…` CLI entries).
        .filter(|s| {
            let lower = s.to_ascii_lowercase();
            !s.is_empty()
                && !["agg_", "local_", "req_"]
                    .iter()
                    .any(|p| lower.starts_with(p))
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // Request ids are not secrets: the thread-local generator saves a syscall per request.
            let b: [u8; 12] = scaivault_crypto::unique_id_bytes();
            let mut id = String::with_capacity(28);
            id.push_str("req_");
            id.push_str(&hex::encode(b));
            id
        })
}

/// Extra facts a handler adds to its request's audit entry (the version read, …).
#[derive(Clone, Default)]
pub(crate) struct AuditNote(pub serde_json::Map<String, serde_json::Value>);

/// What the middleware knows of a request before its handler runs, for handlers that record
/// their own audit entries: a secret write commits its entry in the write's own transaction,
/// and a batch read records one entry per path it read.
#[derive(Clone)]
pub(crate) struct HandlerAudit {
    pub secret_path: Option<String>,
    pub request_id: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub started: Instant,
}

impl HandlerAudit {
    /// The entry the middleware would have made for a successful write.
    pub(crate) fn write_input(
        &self,
        caller: &Caller,
        status: StatusCode,
        mut extra: serde_json::Map<String, serde_json::Value>,
    ) -> AuditInput {
        extra.insert("status".into(), status.as_u16().into());
        self.input(
            caller,
            "write",
            self.secret_path.clone(),
            status.as_u16() < 400,
            extra,
        )
    }

    /// An entry of this request's for `action` on `secret_path`.
    pub(crate) fn input(
        &self,
        caller: &Caller,
        action: &str,
        secret_path: Option<String>,
        success: bool,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> AuditInput {
        AuditInput {
            action: action.to_owned(),
            identity_type: Some(caller.identity_type),
            identity_id: Some(caller.identity_id.to_string()),
            secret_path,
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            success,
            duration_ms: self.started.elapsed().as_millis() as u64,
            request_id: self.request_id.clone(),
            extra_data: extra,
        }
    }
}

/// Marks a response whose audit entry is already durable, committed with the change it
/// records; the middleware does not record it again.
#[derive(Clone, Copy)]
pub(crate) struct AuditRecorded;

/// What a request whose audit entry could not be made durable answers instead.
pub(crate) fn unrecorded(request_id: &str, e: &Error) -> Error {
    tracing::error!(request_id = %request_id, code = e.code.as_str(), "audit entry could not be made durable; request failed");
    // A full disk and an unreachable database say so (the second is retryable); anything
    // else is ours.
    const WHAT: &str = "the request could not be recorded in the audit log, so it returns nothing";
    match e.code {
        // The store's reason (a full disk, a database out of reach, keys changed on another
        // node) is what the operator acts on; it names no secret.
        ErrorCode::StorageFull | ErrorCode::ServiceUnavailable => {
            Error::new(e.code, format!("{WHAT}: {}", e.message))
        }
        _ => Error::new(ErrorCode::InternalError, WHAT),
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let missing = || {
        Error::new(
            ErrorCode::AuthenticationRequired,
            "send Authorization: Bearer <token>",
        )
    };
    // Vault's clients send their token in a header of their own.
    let Some(v) = headers.get("authorization") else {
        return match headers.get("x-vault-token").map(|v| v.to_str()) {
            Some(Ok(t)) if !t.trim().is_empty() => Ok(t.trim()),
            _ => Err(missing()),
        };
    };
    let v = v.to_str().map_err(|_| missing())?;
    let (scheme, token) = v.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// What the outer layer learnt of a request, for the guard and the handlers.
#[derive(Clone)]
pub(crate) struct RequestMeta {
    pub request_id: String,
    pub started: Instant,
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// The rate-limit bucket a routed request was counted in, for the metrics label.
#[derive(Clone, Copy)]
struct Routed(Category);

pub(crate) async fn request_context(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    state.metrics.begin();
    let local = req.extensions().get::<LocalOperator>().is_some();
    let rid = if local {
        // The id local entries have always had: a client over HTTP cannot send one like it.
        let b: [u8; 8] = scaivault_crypto::unique_id_bytes();
        format!("local_{}", hex::encode(b))
    } else {
        request_id(req.headers())
    };
    let method = req.method().clone();
    let vault_shaped = crate::routes::is_vault_path(req.uri().path());
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    req.extensions_mut().insert(RequestMeta {
        request_id: rid.clone(),
        started,
        source_ip,
        user_agent,
    });
    let mut resp = next.run(req).await;
    let cat = resp
        .extensions()
        .get::<Routed>()
        .map_or(Category::Public, |r| r.0);
    let mut error_code = None;
    if let Some(PendingError(e)) = resp.extensions_mut().remove::<PendingError>() {
        error_code = Some(e.code);
        let status = resp.status();
        let mut rendered = if vault_shaped {
            crate::routes::vault_error(status, &e)
        } else {
            (status, axum::Json(envelope(&e, &rid))).into_response()
        };
        std::mem::swap(rendered.headers_mut(), resp.headers_mut());
        rendered
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        resp = rendered;
    }
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status();
    let elapsed = started.elapsed();
    state.metrics.end(
        method.as_str(),
        cat.name(),
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    // An access line without any value; the audit entry is the record.
    tracing::debug!(
        target: "scaivault::access",
        request_id = %rid, method = %method, category = cat.name(), status = status.as_u16(),
        error = error_code.map(|c| c.as_str()).unwrap_or("-"),
        micros = elapsed.as_micros() as u64, "request"
    );
    // A local command reports its own failure; the server's log line is for a server.
    if status == StatusCode::INTERNAL_SERVER_ERROR && !local {
        tracing::error!(request_id = %rid, code = error_code.map(|c| c.as_str()).unwrap_or("-"), "request failed");
    }
    resp
}

/// The scope a route needs of this request's token, with the action its entry records;
/// `None` scope for routes any valid token may call.
fn required(
    spec: &RouteSpec,
    uri: &axum::http::Uri,
    public_metrics: bool,
) -> Result<(Option<scaivault_core::scope::Scope>, Option<AuditAction>), Error> {
    let action = match spec.audit {
        Audited::No => None,
        Audited::Action(a) | Audited::Secret(a) | Audited::ByHandler(a) => Some(a),
    };
    Ok(match spec.access {
        Access::Public => (None, action),
        Access::Metrics if public_metrics => (None, action),
        Access::Metrics => (Some(scaivault_core::scope::Scope::Admin), action),
        Access::Token => (None, action),
        Access::Scope(s) | Access::Both(s, _) => (Some(s), action),
        Access::Tail(tails) => {
            let tail = spec
                .tail_prefix()
                .and_then(|p| uri.path().strip_prefix(p))
                .unwrap_or("");
            let (_, scope, a) = tails
                .iter()
                .find(|(t, _, _)| *t == tail.trim_end_matches('/'))
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::MethodNotAllowed,
                        "method not allowed on this endpoint",
                    )
                })?;
            (Some(*scope), Some(*a))
        }
    })
}

/// Whether a route is called without a token.
fn is_public(spec: &RouteSpec, public_metrics: bool) -> bool {
    matches!(spec.access, Access::Public) || (spec.access == Access::Metrics && public_metrics)
}

pub(crate) async fn guard(
    State((state, spec)): State<(Arc<AppState>, &'static RouteSpec)>,
    mut req: Request,
    next: Next,
) -> Response {
    let meta = req
        .extensions()
        .get::<RequestMeta>()
        .cloned()
        .unwrap_or_else(|| RequestMeta {
            request_id: request_id(req.headers()),
            started: Instant::now(),
            source_ip: None,
            user_agent: None,
        });
    let public = is_public(spec, state.config.public_metrics);
    // Routes that check a credential of their own (unseal, the client-credentials grant).
    let checks_credential = public && spec.audit != Audited::No;
    let mut limit_headers = None;
    let mut caller_seen: Option<Caller> = None;
    let mut action = None;
    let mut record_failure = true;
    let mut refused_unchecked = false;
    let audited_path = match spec.audit {
        Audited::Secret(_) | Audited::ByHandler(_) => secret_path(spec, req.uri()),
        _ => None,
    };
    let outcome: Result<Response, Error> = async {
        if public {
            action = required(spec, req.uri(), state.config.public_metrics)?.1;
            if checks_credential && let Some(wait) = state.preauth.blocked(meta.source_ip) {
                record_failure =
                    state.preauth.failed(meta.source_ip, "rate_limited", 0) == Record::Individually;
                refused_unchecked = true;
                return Err(too_many_failures(wait));
            }
            // A credential route's body must arrive in full within the header timeout: a
            // client without a token cannot hold a connection by sending it slowly.
            if checks_credential {
                let deadline = tokio::time::Instant::now() + state.config.header_timeout;
                req = req.map(|b| {
                    axum::body::Body::new(crate::body::TimedBody::with_deadline(
                        b,
                        state.config.header_timeout,
                        deadline,
                    ))
                });
            }
            return Ok(next.run(req).await);
        }
        action = match spec.audit {
            Audited::No => None,
            Audited::Action(a) | Audited::Secret(a) | Audited::ByHandler(a) => Some(a),
        };
        if let Some(wait) = state.preauth.blocked(meta.source_ip) {
            record_failure =
                state.preauth.failed(meta.source_ip, "rate_limited", 0) == Record::Individually;
            return Err(too_many_failures(wait));
        }
        let engine = state.engine()?;
        let caller = if req.extensions().get::<LocalOperator>().is_some() {
            // The CLI's `--vault FILE` mode: the file was opened with its passphrase, so the
            // caller is its operator (see `in_process`). Never set on a request from a socket.
            Caller::local_operator()
        } else {
            match bearer(req.headers()).and_then(|t| engine.authenticate(t, meta.source_ip)) {
                Ok(c) => c,
                Err(e) => {
                    // A missing token costs the server nothing to refuse: it is counted, not
                    // charged (a health check pointed at the wrong path must not lock out
                    // its address). A wrong one is charged.
                    let cost = u32::from(e.code != ErrorCode::AuthenticationRequired);
                    record_failure = state.preauth.failed(meta.source_ip, e.code.as_str(), cost)
                        == Record::Individually;
                    return Err(e);
                }
            }
        };
        let mut caller = caller;
        caller.request_id = Some(meta.request_id.clone());
        caller_seen = Some(caller.clone());
        // Only an authenticated caller learns how the route reads its path (a 405 for a
        // `POST /v1/secrets/…` that is not a batch).
        let (scope, a) = required(spec, req.uri(), state.config.public_metrics)?;
        action = a;
        if let Some(v) = state
            .limiter
            .check(caller.identity_id.as_str(), spec.category)
        {
            let (allowed, retry) = (v.allowed, v.retry_after);
            limit_headers = Some(v);
            if !allowed {
                state.metrics.rate_limited(spec.category.name());
                return Err(Error::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many {} requests; retry in {retry}s",
                        spec.category.name()
                    ),
                )
                .with("category", spec.category.name())
                .with("retry_after", retry));
            }
        }
        let second = match spec.access {
            Access::Both(_, b) => Some(b),
            _ => None,
        };
        if let Some(needed) = scope
            .filter(|s| !caller.scopes.allows(*s))
            .or(second.filter(|s| !caller.scopes.allows(*s)))
        {
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                format!("the token lacks the scope {needed}"),
            )
            .with("required_scope", needed.as_str())
            .with("token_scopes", caller.scopes.names()));
        }
        if matches!(spec.audit, Audited::ByHandler(_)) || matches!(spec.access, Access::Tail(_)) {
            req.extensions_mut().insert(HandlerAudit {
                secret_path: audited_path.clone(),
                request_id: meta.request_id.clone(),
                source_ip: meta.source_ip.map(|ip| ip.to_string()),
                user_agent: meta.user_agent.clone(),
                started: meta.started,
            });
        }
        req.extensions_mut().insert(Auth { engine, caller });
        Ok(next.run(req).await)
    }
    .await;

    let mut resp = match outcome {
        Ok(r) => r,
        Err(e) => ApiError(e).into_response(),
    };
    // At a credential-checking public route (unseal, the token grant) every failure — a wrong
    // key, a malformed body, a refusal — goes through the address's budget like a bad token
    // (a wrong unseal key costs six: five a minute): the first few per reason a minute are
    // audited one by one, the rest as one count, so what a client without a credential can
    // add to the audit log stays bounded. (A request refused for the address's budget was
    // counted already.)
    let mut public_failure = false;
    if checks_credential && resp.status().as_u16() >= 400 && !refused_unchecked {
        public_failure = true;
        let code = resp
            .extensions()
            .get::<PendingError>()
            .map_or("request_failed", |p| p.0.code.as_str());
        let cost = match code {
            "invalid_passphrase" => 6,
            "invalid_credentials" => 1,
            _ => 0,
        };
        record_failure = state.preauth.failed(meta.source_ip, code, cost) == Record::Individually;
    }
    let failed_auth = public_failure
        || refused_unchecked
        || (caller_seen.is_none()
            && matches!(
                resp.status(),
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ));
    // Fail closed: a request whose audit entry cannot be made durable returns nothing. A flood
    // of failed authentications is counted, not written entry by entry (see `preauth`).
    if resp.extensions().get::<AuditRecorded>().is_none()
        && let Some(action) = action
        && (record_failure || !failed_auth)
        && let Ok(engine) = state.engine()
    {
        let mut extra = resp
            .extensions_mut()
            .remove::<AuditNote>()
            .unwrap_or_default()
            .0;
        if let Some(PendingError(e)) = resp.extensions().get::<PendingError>() {
            extra.insert("error_code".into(), e.code.as_str().into());
        }
        extra.insert("status".into(), resp.status().as_u16().into());
        let input = AuditInput {
            action: action.into(),
            identity_type: caller_seen.as_ref().map(|c| c.identity_type),
            identity_id: caller_seen.as_ref().map(|c| c.identity_id.to_string()),
            secret_path: audited_path,
            source_ip: meta.source_ip.map(|ip| ip.to_string()),
            user_agent: meta.user_agent.clone(),
            success: resp.status().as_u16() < 400,
            duration_ms: meta.started.elapsed().as_millis() as u64,
            request_id: meta.request_id.clone(),
            extra_data: extra,
        };
        if let Err(e) = engine.record_audit(input).await {
            resp = ApiError(unrecorded(&meta.request_id, &e)).into_response();
        }
    }
    resp.extensions_mut().insert(Routed(spec.category));
    if let Some(v) = limit_headers {
        let now = state.clock.now().unix_seconds() as u64;
        let headers = resp.headers_mut();
        headers.insert("x-ratelimit-limit", v.limit.into());
        headers.insert("x-ratelimit-remaining", v.remaining.into());
        headers.insert("x-ratelimit-reset", (now + v.reset_in).into());
        if v.retry_after > 0 {
            headers.insert("retry-after", v.retry_after.into());
        }
    }
    if let Some(PendingError(e)) = resp.extensions().get::<PendingError>()
        && e.code == ErrorCode::RateLimited
        && let Some(wait) = e.details.get("retry_after").and_then(|v| v.as_u64())
        && !resp.headers().contains_key("retry-after")
    {
        resp.headers_mut().insert("retry-after", wait.into());
    }
    resp
}

fn too_many_failures(wait: u64) -> Error {
    Error::new(
        ErrorCode::RateLimited,
        format!("too many failed authentications from this address; retry in {wait}s"),
    )
    .with("category", "authentication_failures")
    .with("retry_after", wait)
}

/// The secret a route's `{*path}` tail names (the raw, still percent-encoded bytes, as the
/// handlers match them), or for a route without one its `path` query parameter (a
/// per-secret restore), cut to 512 characters for the audit entry. Even a refused request is
/// then found by a query by path.
fn secret_path(spec: &RouteSpec, uri: &axum::http::Uri) -> Option<String> {
    let t = match spec.tail_prefix() {
        Some(prefix) => uri
            .path()
            .strip_prefix(prefix)?
            .trim_end_matches('/')
            .to_owned(),
        None => {
            let axum::extract::Query(mut q) = axum::extract::Query::<
                std::collections::HashMap<String, String>,
            >::try_from_uri(uri)
            .ok()?;
            q.remove("path")?
        }
    };
    Some(t.chars().take(512).collect())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::request_id;

    #[test]
    fn a_client_cannot_pose_as_the_vaults_own_entries() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("trace-42"));
        assert_eq!(request_id(&h), "trace-42");
        for forged in [
            "agg_1764662400",
            "local_4242",
            "Local_4242",
            "AGG_1",
            "req_183c6a866331452c84eab5ec",
            "REQ_1",
        ] {
            h.insert("x-request-id", HeaderValue::from_static(forged));
            let got = request_id(&h);
            assert!(
                got.starts_with("req_") && got != forged,
                "{forged} was kept"
            );
        }
    }
}
