//! The one interface the CLI talks to a vault through.
//!
//! [`VaultClient`] is what every command is written against. Under it a [`Transport`] carries
//! each call, implemented twice: [`http::Http`] sends it to a server with reqwest, and
//! [`in_process::Local`] hands it to the same router inside this process, over a vault file
//! opened with its passphrase (`--vault FILE`). Both answer with an HTTP response from the
//! same handlers, so a command behaves the same way in either mode: same validation, same
//! answers and errors, and the same audit entries, made durable before a value is returned.
//!
//! Everything above the transport (error envelopes, JSON, pagination, streaming a backup to
//! a file) is written once, here.

#![forbid(unsafe_code)]

pub mod http;
pub mod in_process;
mod typed;

pub use typed::secret_path;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use scaivault_core::{Error, ErrorCode};
use serde_json::{Value, json};

pub use axum::http::Method;

/// An error from the vault, with the request id when there was one.
#[derive(Debug)]
pub struct ClientError {
    pub error: Error,
    pub request_id: Option<String>,
}

impl From<Error> for ClientError {
    fn from(error: Error) -> Self {
        ClientError {
            error,
            request_id: None,
        }
    }
}

impl From<scaivault_store::StoreError> for ClientError {
    fn from(e: scaivault_store::StoreError) -> Self {
        ClientError::from(Error::from(e))
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// What a call sends.
pub enum Payload {
    Empty,
    /// A JSON document, already encoded.
    Json(Vec<u8>),
    /// A file streamed as the body (a backup to restore from).
    File {
        file: tokio::fs::File,
        len: u64,
    },
}

/// One request: `path` is the route with its query string.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub payload: Payload,
    /// A transfer that may take long (a backup): no 30-second deadline.
    pub long: bool,
}

/// A transport's answer: status, headers and a body still to be read.
pub type Answer = axum::http::Response<Body>;

/// Carries a call to a vault and brings back its answer. Everything else is [`VaultClient`].
pub trait Transport: Send + Sync {
    fn send(&self, call: Call) -> Pin<Box<dyn Future<Output = Result<Answer>> + Send + '_>>;

    /// Ends the session: what the vault keeps in memory is persisted (a file opened in this
    /// process is closed). A server over HTTP has nothing to end.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// How long one call may wait in all for a rate limit to let it through before the `429` is
/// the answer, unless [`VaultClient::with_rate_limit_patience`] says otherwise.
pub const RATE_LIMIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers larger than this are refused (a listing of every secret fits many times over).
const MAX_ANSWER: usize = 512 * 1024 * 1024;

/// Told how long a call will wait for a rate limit before it is sent again.
pub type WaitNotice = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// A vault, wherever it is.
#[derive(Clone)]
pub struct VaultClient {
    transport: Arc<dyn Transport>,
    local: bool,
    on_wait: Option<WaitNotice>,
    patience: std::time::Duration,
}

impl VaultClient {
    /// A server at `base_url`, called with `token`, its certificate checked as `trust` says.
    pub fn http(
        base_url: String,
        token: Option<String>,
        trust: &http::Trust,
    ) -> Result<VaultClient> {
        Ok(VaultClient {
            transport: Arc::new(http::Http::new(base_url, token, trust)?),
            local: false,
            on_wait: None,
            patience: RATE_LIMIT_PATIENCE,
        })
    }

    /// A vault file opened in this process (`--vault FILE`); calls run as its operator.
    pub fn in_process(local: in_process::Local) -> VaultClient {
        VaultClient {
            transport: Arc::new(local),
            local: true,
            on_wait: None,
            patience: RATE_LIMIT_PATIENCE,
        }
    }

    /// How long a call may wait in all for rate limits (zero: a `429` is the answer at once,
    /// for a script that would rather fail fast).
    pub fn with_rate_limit_patience(mut self, patience: std::time::Duration) -> VaultClient {
        self.patience = patience;
        self
    }

    /// Calls `notice` before each wait for a rate limit (a CLI says so rather than going
    /// silent for up to [`RATE_LIMIT_PATIENCE`]).
    pub fn with_wait_notice(mut self, notice: WaitNotice) -> VaultClient {
        self.on_wait = Some(notice);
        self
    }

    /// Whether calls reach a file opened in this process rather than a server.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Ends the session (see [`Transport::close`]); calls after it fail.
    pub async fn close(&self) {
        self.transport.close().await;
    }

    /// Sends one call; a non-2xx answer becomes the vault's error with its code. A `429`
    /// whose `Retry-After` is short is waited out and the call sent again (a refused call did
    /// nothing, so sending it again is safe), up to [`RATE_LIMIT_PATIENCE`] in all.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let bytes = match body {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|_| Error::internal("serialization failed"))?)
            }
            None => None,
        };
        let mut waited = std::time::Duration::ZERO;
        loop {
            let answer = self
                .transport
                .send(Call {
                    method: method.clone(),
                    path: path.to_owned(),
                    payload: bytes.clone().map_or(Payload::Empty, Payload::Json),
                    long: false,
                })
                .await?;
            match json_of(answer).await {
                Err(e) if e.error.code == ErrorCode::RateLimited => {
                    let wait = e
                        .error
                        .details
                        .get("retry_after")
                        .and_then(Value::as_u64)
                        .map(std::time::Duration::from_secs);
                    match wait {
                        Some(w) if waited + w <= self.patience => {
                            if let Some(notice) = &self.on_wait {
                                notice(w);
                            }
                            tokio::time::sleep(w).await;
                            waited += w;
                        }
                        _ => return Err(e),
                    }
                }
                other => return other,
            }
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Every item of a paginated collection, following cursors: `path` is the endpoint with
    /// its query (if any), `key` the array the pages hold.
    pub async fn all_pages(&self, path: &str, key: &str) -> Result<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{sep}limit=1000");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", q(c)));
            }
            let page = self.get(&url).await?;
            if let Some(a) = page[key].as_array() {
                items.extend(a.iter().cloned());
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if !page["has_more"].as_bool().unwrap_or(false) || cursor.is_none() {
                break;
            }
        }
        Ok(json!({ key: items, "cursor": null, "has_more": false }))
    }

    /// Streams a binary answer (a backup) into `out`, which must not exist; returns the
    /// `X-ScaiVault-Backup` facts. The file takes its name only once its trailer checks out.
    pub async fn download(&self, path: &str, out: &Path) -> Result<Value> {
        use tokio::io::AsyncWriteExt;
        if out.exists() {
            return Err(Error::invalid_request(format!(
                "{} exists; refusing to overwrite",
                out.display()
            ))
            .into());
        }
        let answer = self
            .transport
            .send(Call {
                method: Method::GET,
                path: path.to_owned(),
                payload: Payload::Empty,
                long: true,
            })
            .await?;
        if !answer.status().is_success() {
            return Err(json_of(answer).await.err().unwrap_or_else(|| {
                ClientError::from(Error::internal("the download failed without an error"))
            }));
        }
        let facts: Value = answer
            .headers()
            .get("x-scaivault-backup")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let tmp: PathBuf = out.with_extension("partial");
        let io =
            |e: std::io::Error| Error::internal(format!("cannot write {}: {e}", tmp.display()));
        let mut f =
            tokio::fs::File::from_std(scaivault_store::private_fs::create(&tmp).map_err(io)?);
        let mut body = answer.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                Error::new(ErrorCode::ServiceUnavailable, "the download was cut off")
            })?;
            if let Ok(chunk) = frame.into_data() {
                f.write_all(&chunk).await.map_err(io)?;
            }
        }
        f.sync_all().await.map_err(io)?;
        drop(f);
        scaivault_store::inspect_backup(&tmp).map_err(Error::from)?;
        tokio::fs::rename(&tmp, out)
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(facts)
    }

    /// Sends a file as the request body (a backup to restore from).
    pub async fn upload(&self, path: &str, file: &Path) -> Result<Value> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::invalid_request(format!("cannot read {}: {e}", file.display())))?;
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let answer = self
            .transport
            .send(Call {
                method: Method::POST,
                path: path.to_owned(),
                payload: Payload::File { file: f, len },
                long: true,
            })
            .await?;
        json_of(answer).await
    }
}

/// The JSON of a successful answer (`null` for an empty one), or the error its envelope
/// carries.
async fn json_of(answer: Answer) -> Result<Value> {
    let (parts, body) = answer.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ANSWER).await.map_err(|_| {
        ClientError::from(Error::new(
            ErrorCode::ServiceUnavailable,
            "the answer was cut off or too large",
        ))
    })?;
    if parts.status.is_success() {
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&bytes).map_err(|_| {
            ClientError::from(Error::internal("the vault answered with invalid JSON"))
        });
    }
    Err(error_of(parts.status, &parts.headers, &bytes))
}

/// The error an answer's envelope (`{"error": {code, message, details, request_id}}`)
/// carries, or one made from its status.
fn error_of(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ClientError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &parsed["error"];
    let code = e["code"]
        .as_str()
        .and_then(ErrorCode::parse)
        .unwrap_or(match status.as_u16() {
            401 => ErrorCode::AuthenticationRequired,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::RouteNotFound,
            413 => ErrorCode::PayloadTooLarge,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::ServiceUnavailable,
            _ => ErrorCode::InternalError,
        });
    let mut error = Error::new(
        code,
        e["message"].as_str().unwrap_or("request failed").to_owned(),
    );
    if !e["details"].is_null() {
        error.details = e["details"].clone();
    }
    let request_id = e["request_id"].as_str().map(str::to_owned).or_else(|| {
        headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    ClientError { error, request_id }
}

/// Percent-encodes a query value or a path segment (`/` is kept: secret paths use it).
pub fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_envelope_keeps_its_code_details_and_request_id() {
        let body = br#"{"error":{"code":"secret_not_found","message":"no such secret","details":{"path":"a/b"},"request_id":"req_1"}}"#;
        let e = error_of(StatusCode::NOT_FOUND, &HeaderMap::new(), body);
        assert_eq!(e.error.code, ErrorCode::SecretNotFound);
        assert_eq!(e.error.details["path"], "a/b");
        assert_eq!(e.request_id.as_deref(), Some("req_1"));
    }

    #[test]
    fn an_answer_without_an_envelope_gets_a_code_from_its_status() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "req_2".parse().unwrap());
        let e = error_of(StatusCode::TOO_MANY_REQUESTS, &h, b"slow down");
        assert_eq!(e.error.code, ErrorCode::RateLimited);
        assert_eq!(e.request_id.as_deref(), Some("req_2"));
    }

    /// Answers 429 (retry at once) `limited` times, then 200.
    struct Limited(std::sync::atomic::AtomicUsize);

    impl Transport for Limited {
        fn send(&self, _: Call) -> Pin<Box<dyn Future<Output = Result<Answer>> + Send + '_>> {
            let left = self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                let (status, body) = if left > 0 {
                    (
                        429,
                        r#"{"error":{"code":"rate_limited","message":"slow down","details":{"retry_after":0}}}"#,
                    )
                } else {
                    (200, r#"{"ok":true}"#)
                };
                Ok(axum::http::Response::builder()
                    .status(status)
                    .body(Body::from(body))
                    .unwrap())
            })
        }
    }

    #[test]
    fn a_rate_limited_call_waits_says_so_and_is_sent_again() {
        let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = VaultClient {
            transport: Arc::new(Limited(2.into())),
            local: false,
            on_wait: None,
            patience: RATE_LIMIT_PATIENCE,
        }
        .with_wait_notice({
            let told = told.clone();
            Arc::new(move |_| {
                told.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let v = rt.block_on(client.get("/v1/anything")).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(q("a b&c=d/é"), "a%20b%26c%3Dd/%C3%A9");
    }
}
