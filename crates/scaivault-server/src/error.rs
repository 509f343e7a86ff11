//! The one error → HTTP mapping. Handlers return [`ApiError`]; the request-context middleware
//! renders every error, including axum's own rejections, as the spec's envelope with the
//! request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scaivault_core::{Error, ErrorCode};

#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError(Error::new(code, default_message(code)))
    }
}

fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RouteNotFound => "no such endpoint",
        ErrorCode::MethodNotAllowed => "method not allowed on this endpoint",
        ErrorCode::PayloadTooLarge => "the request body is larger than the server accepts",
        _ => "request failed",
    }
}

/// Carried in the response's extensions until the middleware writes the body.
#[derive(Clone)]
pub(crate) struct PendingError(pub Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = status.into_response();
        resp.extensions_mut().insert(PendingError(self.0));
        resp
    }
}

/// The envelope: `{"error": {code, message, details, request_id}}`.
pub(crate) fn envelope(e: &Error, request_id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": e.code.as_str(),
            "message": e.message,
            "details": e.details,
            "request_id": request_id,
        }
    })
}
