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

/// How the server's TLS certificate is checked.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// A CA certificate (PEM) trusted besides the system's store.
    pub ca_cert: Option<std::path::PathBuf>,
    /// No check at all (a throwaway test only).
    pub skip_verify: bool,
}

impl Http {
    pub fn new(base_url: String, token: Option<String>, trust: &Trust) -> Result<Http> {
        // A URL that is no URL is a mistake to fix, not a server that is down.
        if !reqwest::Url::parse(&base_url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        {
            return Err(Error::invalid_request(format!(
                "{base_url:?} is not the URL of a vault (http://host:port or https://…)"
            ))
            .into());
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("scaivault-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &trust.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot read the CA certificate {}: {e}", path.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("{} holds no PEM certificate", path.display()),
                )
            })?;
            if certs.is_empty() {
                return Err(Error::new(
                    ErrorCode::InvalidConfig,
                    format!("{} holds no PEM certificate", path.display()),
                )
                .into());
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if trust.skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| Error::internal(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Http {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.map(zeroize::Zeroizing::new),
            client,
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        // A certificate the client does not trust is not a server that is down: say so, and
        // how to trust it.
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = source {
            let text = s.to_string();
            if text.contains("certificate") || text.contains("UnknownIssuer") {
                let hint = if text.contains("CaUsedAsEndEntity") {
                    "the server presents a CA certificate as its own; make its certificate with basicConstraints CA:FALSE, or sign it with a CA and give that CA with --ca-cert"
                } else {
                    "give its CA with --ca-cert, SCAIVAULT_CACERT or `scaivault config set ca_cert FILE`"
                };
                return ClientError::from(Error::new(
                    ErrorCode::ServiceUnavailable,
                    format!(
                        "the TLS certificate of {} is not trusted ({text}); {hint}",
                        self.base_url
                    ),
                ));
            }
            source = s.source();
        }
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
