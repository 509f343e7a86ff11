//! A JSON extractor whose rejections carry our error codes and never echo a value.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use scaivault_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        body(req, state, ErrorCode::InvalidRequest)
            .await
            .map(ApiJson)
    }
}

/// [`ApiJson`] for policy bodies: a rule or binding of the wrong shape (an unknown
/// permission, a pattern that is not a string) is `400 invalid_policy`, as the reference
/// says for bad rules and bindings.
pub struct PolicyJson<T>(pub T);

impl<S, T> FromRequest<S> for PolicyJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        body(req, state, ErrorCode::InvalidPolicy)
            .await
            .map(PolicyJson)
    }
}

/// [`ApiJson`] for the Vault-compatible routes: Vault's clients send JSON without saying so
/// (no `Content-Type`), as Vault reads every body as JSON.
pub struct VaultJson<T>(pub T);

impl<S, T> FromRequest<S> for VaultJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(mut req: Request, state: &S) -> Result<Self, ApiError> {
        if !req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            req.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
        }
        body(req, state, ErrorCode::InvalidRequest)
            .await
            .map(VaultJson)
    }
}

/// The body as `T`; `shape` is the code when it is JSON of another shape.
async fn body<S, T>(req: Request, state: &S, shape: ErrorCode) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    axum::Json::<T>::from_request(req, state)
        .await
        .map(|axum::Json(v)| v)
        .map_err(|rejection| ApiError(map_rejection(rejection, shape)))
}

/// `shape` is the code for a body that is JSON but not of the expected shape.
fn map_rejection(r: JsonRejection, shape: ErrorCode) -> Error {
    match r {
        JsonRejection::MissingJsonContentType(_) => Error::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => Error::new(
            ErrorCode::InvalidRequest,
            "the request body is not valid JSON",
        ),
        JsonRejection::JsonDataError(e) => Error::new(
            shape,
            format!(
                "the request body has the wrong shape: {}",
                redact_values(&e.body_text())
            ),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Error::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the server accepts",
            )
        }
        other => Error::new(
            ErrorCode::InvalidRequest,
            format!("unreadable request body: {}", other.status()),
        ),
    }
}

/// serde quotes offending values in its messages: strings in double quotes (`invalid type:
/// string "…"`, escapes included), numbers and other scalars in backticks (`invalid type:
/// integer `…``, `unknown variant `…``). A value may be a secret, so both are dropped;
/// field names, which serde also puts in backticks (`missing field `cas``), stay.
pub(crate) fn redact_values(msg: &str) -> String {
    /// What serde writes before a backticked value (not before a field name).
    const VALUE_KINDS: &[&str] = &[
        "integer ",
        "floating point ",
        "boolean ",
        "character ",
        "string ",
        "unknown variant ",
        "byte array ",
    ];
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push_str("\"…\"");
                // To the closing quote; a backslash escapes the next character.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '`' if VALUE_KINDS.iter().any(|k| out.ends_with(k)) => {
                out.push_str("`…`");
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Query strings, with rejections as `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError(Error::new(
                ErrorCode::InvalidRequest,
                format!("invalid query string: {}", redact_values(&e.body_text())),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_redacted_names_kept() {
        let m = super::redact_values(
            "data.cas: invalid type: string \"hunter2\", expected u64 at `cas`",
        );
        assert!(!m.contains("hunter2"));
        assert!(m.contains("`cas`"));
        // An escaped quote does not end the value; scalars in backticks are values too.
        let m = super::redact_values(
            r#"options.cas: invalid type: string "hunter2\"TAIL-LEAKED", expected u64"#,
        );
        assert!(!m.contains("TAIL") && !m.contains("hunter2"), "{m}");
        let m = super::redact_values(
            "secret_id: invalid type: integer `1234567890123`, expected a string; missing field `role_id`",
        );
        assert!(!m.contains("1234567890123"), "{m}");
        assert!(m.contains("`role_id`"), "{m}");
        let m = super::redact_values("unknown variant `s3cr3t`, expected `rsa` or `ec`");
        assert!(!m.contains("s3cr3t") && m.contains("`rsa`"), "{m}");
    }
}
