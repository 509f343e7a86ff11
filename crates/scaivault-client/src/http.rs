//! Calls over HTTP to a running server, with reqwest.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use scaivault_core::{Error, ErrorCode};

use crate::{Answer, Call, ClientError, Payload, Result, Transport};

/// A server at a base URL, called with a bearer token.
pub struct Http {
    base_url: String,
    token: Option<zeroize::Zeroizing<String>>,
    client: reqwest::Client,
}

impl Http {
    pub fn new(base_url: String, token: Option<String>) -> Http {
        let client = reqwest::Client::builder()
            .user_agent(concat!("scaivault-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds");
        Http {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.map(zeroize::Zeroizing::new),
            client,
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let why = if e.is_connect() {
            "connection refused"
        } else if e.is_timeout() {
            "timed out"
        } else {
            "request failed"
        };
        ClientError::from(Error::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "cannot reach the vault at {} ({why}); is it running? (set SCAIVAULT_URL)",
                self.base_url
            ),
        ))
    }
}

impl Transport for Http {
    fn send(&self, call: Call) -> Pin<Box<dyn Future<Output = Result<Answer>> + Send + '_>> {
        Box::pin(async move {
            let url = format!("{}{}", self.base_url, call.path);
            let timeout = if call.long {
                Duration::from_secs(3600)
            } else {
                Duration::from_secs(30)
            };
            let mut req = self.client.request(call.method, &url).timeout(timeout);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.as_str());
            }
            req = match call.payload {
                Payload::Empty => req,
                Payload::Json(bytes) => req.header("content-type", "application/json").body(bytes),
                Payload::File { file, len } => req
                    .header("content-type", "application/octet-stream")
                    .header("content-length", len)
                    .body(reqwest::Body::wrap_stream(
                        tokio_util::io::ReaderStream::new(file),
                    )),
            };
            let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
            let resp: axum::http::Response<reqwest::Body> = resp.into();
            Ok(resp.map(Body::new))
        })
    }
}
