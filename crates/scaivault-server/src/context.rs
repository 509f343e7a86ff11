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
use scaivault_engine::{AuditInput, Caller, Engine};

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
            // Request ids are not secrets: the thread-local generator saves a syscall per request.
            let b: [u8; 12] = rand::random();
            let mut id = String::with_capacity(28);
            id.push_str("req_");
            id.push_str(&hex::encode(b));
            id
        })
}

/// Which rate-limit bucket (and metrics label) a request belongs to; `Public` needs no token.
pub(crate) fn category(method: &Method, path: &str, public_metrics: bool) -> Category {
    let p = path.trim_end_matches('/');
    match p {
        "/v1/health" | "/v1/health/ready" | "/v1/version" | "/v1/openapi.json"
        | "/v1/sys/status" | "/v1/sys/unseal" | "/v1/auth/token" => {
            return Category::Public;
        }
        "/v1/metrics" if public_metrics => return Category::Public,
        "/v1/secrets" => return Category::List,
        "/v1/secrets/batch" | "/v1/secrets/batch/metadata" if method == Method::POST => {
            return Category::Batch;
        }
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
    if p.starts_with("/v1/audit") {
        return Category::Audit;
    }
    Category::Admin
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

/// The audit action for a request, and the secret path it names; `None` for requests that
/// are not audited (health, version, metrics, status and policy dry-runs).
pub(crate) fn audit_action(method: &Method, path: &str) -> Option<(&'static str, Option<String>)> {
    let p = path.trim_end_matches('/');
    let tail = |prefix: &str| {
        p.strip_prefix(prefix)
            .map(|t| t.chars().take(512).collect::<String>())
    };
    if let Some(t) = tail("/v1/secrets/") {
        if method == Method::POST && t == "batch" {
            return Some(("read", None));
        }
        if method == Method::POST && t == "batch/metadata" {
            return Some(("metadata_read", None));
        }
        let action = match *method {
            Method::GET | Method::HEAD => "read",
            Method::DELETE => "delete",
            _ => "write",
        };
        return Some((action, Some(t)));
    }
    if let Some(t) = tail("/v1/metadata/") {
        return Some((
            if method == Method::PATCH {
                "metadata_update"
            } else {
                "metadata_read"
            },
            Some(t),
        ));
    }
    if let Some(t) = tail("/v1/versions/") {
        return Some(("versions", Some(t)));
    }
    if let Some(t) = tail("/v1/restore/") {
        return Some(("restore", Some(t)));
    }
    let action = match (method.as_str(), p) {
        (
            _,
            "/v1/health" | "/v1/health/ready" | "/v1/version" | "/v1/openapi.json" | "/v1/metrics"
            | "/v1/sys/status",
        ) => return None,
        (_, "/v1/policies/test") => return None,
        ("GET", "/v1/secrets") => "list",
        ("POST", "/v1/policies") => "policy_create",
        ("PUT" | "PATCH", p) if p.starts_with("/v1/policies/") => "policy_update",
        ("POST", p) if p.starts_with("/v1/policies/") && p.ends_with("/bindings") => "policy_bind",
        ("DELETE", p) if p.starts_with("/v1/policies/") && p.contains("/bindings/") => {
            "policy_unbind"
        }
        ("DELETE", p) if p.starts_with("/v1/policies/") => "policy_delete",
        ("GET", p) if p.starts_with("/v1/policies") => "policy_read",
        ("POST", "/v1/audit/prune") => "audit_prune",
        ("POST", p) if p.starts_with("/v1/rotation/policies/") && p.ends_with("/rotate") => {
            "rotate"
        }
        (_, p) if p.starts_with("/v1/rotation") => "rotation_policy",
        ("GET", p) if p.starts_with("/v1/audit") => "audit_query",
        ("POST", "/v1/auth/token") => "token_issue",
        ("POST", "/v1/auth/tokens") => "token_create",
        ("DELETE", p) if p.starts_with("/v1/auth/tokens/") => "token_revoke",
        ("GET", "/v1/auth/tokens") => "token_list",
        ("GET", "/v1/auth/whoami") => "whoami",
        ("POST", "/v1/auth/introspect") => "introspect",
        ("POST", "/v1/identities") => "identity_create",
        ("DELETE", p) if p.starts_with("/v1/identities/") && p.contains("/members/") => {
            "identity_member_remove"
        }
        ("POST", p) if p.starts_with("/v1/identities/") && p.ends_with("/members") => {
            "identity_member_add"
        }
        ("POST", p) if p.starts_with("/v1/identities/") && p.ends_with("/credentials") => {
            "credential_create"
        }
        ("DELETE", p) if p.starts_with("/v1/identities/") => "identity_delete",
        ("GET", p) if p.starts_with("/v1/identities") => "identity_read",
        ("POST", "/v1/sys/unseal") => "unseal",
        ("POST", "/v1/sys/seal") => "seal",
        ("POST", "/v1/sys/rotate-key") => "key_rotate",
        ("GET", "/v1/sys/backup") => "backup",
        ("POST", "/v1/sys/restore") => "restore_from_backup",
        ("POST", "/v1/sys/verify") => "verify",
        ("POST", "/v1/sys/test/clock") => "test_clock_advance",
        ("POST", p) if p.starts_with("/v1/secret-policies/") && p.ends_with("/generate") => {
            "generate"
        }
        ("POST", "/v1/secret-policies") => "secret_policy_create",
        ("PATCH", p) if p.starts_with("/v1/secret-policies/") => "secret_policy_update",
        ("DELETE", p) if p.starts_with("/v1/secret-policies/") => "secret_policy_delete",
        ("GET", p) if p.starts_with("/v1/secret-policies") => "secret_policy_read",
        ("POST", "/v1/webhooks") => "webhook_create",
        ("POST", p) if p.starts_with("/v1/webhooks/") && p.ends_with("/test") => "webhook_test",
        ("PATCH", p) if p.starts_with("/v1/webhooks/") => "webhook_update",
        ("DELETE", p) if p.starts_with("/v1/webhooks/") => "webhook_delete",
        ("GET", p) if p.starts_with("/v1/webhooks") => "webhook_read",
        ("POST", "/v1/plugins") => "plugin_install",
        ("POST", "/v1/plugins/verify") => "plugin_verify",
        ("DELETE", p) if p.starts_with("/v1/plugins/") => "plugin_remove",
        ("GET", p) if p.starts_with("/v1/plugins") => "plugin_read",
        ("POST", p) if p.starts_with("/v1/generators/") => "generate",
        _ => "request",
    };
    Some((action, None))
}

/// What a request whose audit entry could not be made durable answers instead.
pub(crate) fn unrecorded(request_id: &str, e: &Error) -> Error {
    tracing::error!(request_id = %request_id, code = e.code.as_str(), "audit entry could not be made durable; request failed");
    let code = if e.code == ErrorCode::StorageFull {
        ErrorCode::StorageFull
    } else {
        ErrorCode::InternalError
    };
    Error::new(
        code,
        "the request could not be recorded in the audit log, so it returns nothing",
    )
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
    let audit = audit_action(&method, &path);
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());

    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut limit_headers = None;
    let mut identity = None;
    let mut caller_seen: Option<Caller> = None;
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
            caller_seen = Some(caller.clone());
            req.extensions_mut().insert(Auth { engine, caller });
            // Writes, and batch reads of values or metadata (the reads that name no path).
            if let Some(("write", secret_path) | ("read" | "metadata_read", secret_path @ None)) =
                &audit
            {
                req.extensions_mut().insert(HandlerAudit {
                    secret_path: secret_path.clone(),
                    request_id: rid.clone(),
                    source_ip: source_ip.map(|ip| ip.to_string()),
                    user_agent: user_agent.clone(),
                    started,
                });
            }
        }
        Ok(next.run(req).await)
    }
    .await;

    let mut resp = match outcome {
        Ok(r) => r,
        Err(e) => ApiError(e).into_response(),
    };
    // Fail closed: a request whose audit entry cannot be made durable returns nothing.
    if resp.extensions().get::<AuditRecorded>().is_none()
        && let Some((action, secret_path)) = audit
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
            action: action.to_owned(),
            identity_type: caller_seen.as_ref().map(|c| c.identity_type),
            identity_id: caller_seen.as_ref().map(|c| c.identity_id.to_string()),
            secret_path,
            source_ip: source_ip.map(|ip| ip.to_string()),
            user_agent,
            success: resp.status().as_u16() < 400,
            duration_ms: started.elapsed().as_millis() as u64,
            request_id: rid.clone(),
            extra_data: extra,
        };
        if let Err(e) = engine.record_audit(input).await {
            resp = ApiError(unrecorded(&rid, &e)).into_response();
        }
    }
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
    // An access line without any value; the audit entry above is the record.
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
