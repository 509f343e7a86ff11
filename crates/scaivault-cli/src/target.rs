//! Where a command goes: a server over HTTP, or a vault file opened in this process. Both
//! answer with the same JSON shapes, so output code is written once.

use std::sync::Arc;

use scaivault_core::{Error, ErrorCode};
use scaivault_engine::{Caller, Engine};
use serde_json::Value;

pub enum Target {
    Remote(Remote),
    Local(Arc<Engine>),
}

#[derive(Clone)]
pub struct Remote {
    pub base_url: String,
    token: Option<zeroize::Zeroizing<String>>,
    http: reqwest::Client,
}

/// An error from the server or the engine, with the request id when there was one.
#[derive(Debug)]
pub struct CliError {
    pub error: Error,
    pub request_id: Option<String>,
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        CliError {
            error,
            request_id: None,
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;

impl Remote {
    pub fn new(base_url: String, token: Option<String>) -> Remote {
        let http = reqwest::Client::builder()
            .user_agent(concat!("scaivault-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("HTTP client builds");
        Remote {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.map(zeroize::Zeroizing::new),
            http,
        }
    }

    /// Sends one request; non-2xx answers become the server's error with its code.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> CliResult<Value> {
        let url = format!("{}{}", self.base_url, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.as_str());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_connect() {
                "connection refused"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            CliError::from(Error::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "cannot reach the vault at {} ({why}); is it running? (set SCAIVAULT_URL)",
                    self.base_url
                ),
            ))
        })?;
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|_| {
                CliError::from(Error::internal("the server answered with invalid JSON"))
            });
        }
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let e = &parsed["error"];
        let code = e["code"]
            .as_str()
            .and_then(ErrorCode::parse)
            .unwrap_or(match status.as_u16() {
                401 => ErrorCode::AuthenticationRequired,
                403 => ErrorCode::Forbidden,
                404 => ErrorCode::RouteNotFound,
                429 => ErrorCode::RateLimited,
                503 => ErrorCode::ServiceUnavailable,
                _ => ErrorCode::InternalError,
            });
        let mut error = Error::new(
            code,
            e["message"].as_str().unwrap_or("request failed").to_owned(),
        );
        error.details = e["details"].clone();
        Err(CliError {
            error,
            request_id: e["request_id"].as_str().map(str::to_owned).or(request_id),
        })
    }
}

impl Remote {
    /// Streams a binary answer (a backup) into `out`; returns the `X-ScaiVault-Backup` facts.
    pub async fn download(&self, path: &str, out: &std::path::Path) -> CliResult<Value> {
        use tokio::io::AsyncWriteExt;
        if out.exists() {
            return Err(Error::invalid_request(format!(
                "{} exists; refusing to overwrite",
                out.display()
            ))
            .into());
        }
        let mut req = self
            .http
            .get(format!("{}{}", self.base_url, path))
            .timeout(std::time::Duration::from_secs(3600));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.as_str());
        }
        let mut resp = req.send().await.map_err(|_| {
            CliError::from(Error::new(
                ErrorCode::ServiceUnavailable,
                format!("cannot reach the vault at {}", self.base_url),
            ))
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"]
                .as_str()
                .and_then(ErrorCode::parse)
                .unwrap_or(ErrorCode::InternalError);
            let _ = status;
            return Err(CliError {
                error: Error::new(
                    code,
                    body["error"]["message"]
                        .as_str()
                        .unwrap_or("download failed")
                        .to_owned(),
                ),
                request_id: body["error"]["request_id"].as_str().map(str::to_owned),
            });
        }
        let facts: Value = resp
            .headers()
            .get("x-scaivault-backup")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let tmp = out.with_extension("partial");
        let mut f = tokio::fs::File::from_std(
            scaivault_store::private_fs::create(&tmp)
                .map_err(|e| Error::internal(format!("cannot write {}: {e}", tmp.display())))?,
        );
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| Error::new(ErrorCode::ServiceUnavailable, "the download was cut off"))?
        {
            f.write_all(&chunk)
                .await
                .map_err(|e| Error::internal(format!("cannot write {}: {e}", tmp.display())))?;
        }
        f.sync_all()
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        drop(f);
        // The trailer's checksum is checked before the file takes its final name.
        scaivault_store::inspect_backup(&tmp).map_err(Error::from)?;
        tokio::fs::rename(&tmp, out)
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(facts)
    }

    /// Sends a file as the request body (a backup to restore from).
    pub async fn upload(&self, path: &str, file: &std::path::Path) -> CliResult<Value> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::invalid_request(format!("cannot read {}: {e}", file.display())))?;
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        let mut req = self
            .http
            .post(format!("{}{}", self.base_url, path))
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .timeout(std::time::Duration::from_secs(3600))
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.as_str());
        }
        let resp = req.send().await.map_err(|_| {
            CliError::from(Error::new(
                ErrorCode::ServiceUnavailable,
                format!("cannot reach the vault at {}", self.base_url),
            ))
        })?;
        let ok = resp.status().is_success();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if ok {
            return Ok(body);
        }
        let code = body["error"]["code"]
            .as_str()
            .and_then(ErrorCode::parse)
            .unwrap_or(ErrorCode::InternalError);
        Err(CliError {
            error: Error::new(
                code,
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("upload failed")
                    .to_owned(),
            ),
            request_id: body["error"]["request_id"].as_str().map(str::to_owned),
        })
    }
}

impl Target {
    /// Every item of a paginated collection, following cursors: `path` is the endpoint with
    /// its query (or `?` alone), `key` the array the pages hold, `local` the engine's page.
    pub async fn all_pages(
        &self,
        path: &str,
        key: &str,
        local: impl Fn(&Engine, Option<&str>) -> Result<Value, Error>,
    ) -> CliResult<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match self {
                Target::Remote(r) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    let mut url = format!("{path}{sep}limit=1000");
                    if let Some(c) = &cursor {
                        url.push_str(&format!("&cursor={}", q(c)));
                    }
                    r.call(reqwest::Method::GET, &url, None).await?
                }
                Target::Local(e) => local(e, cursor.as_deref())?,
            };
            if let Some(a) = page[key].as_array() {
                items.extend(a.iter().cloned());
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if !page["has_more"].as_bool().unwrap_or(false) || cursor.is_none() {
                break;
            }
        }
        Ok(serde_json::json!({ key: items, "cursor": null, "has_more": false }))
    }
}

/// Percent-encodes a query value.
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

pub fn local_caller() -> Caller {
    Caller::local_operator()
}

pub fn to_value<T: serde::Serialize>(v: T) -> CliResult<Value> {
    serde_json::to_value(v).map_err(|_| CliError::from(Error::internal("serialization failed")))
}

impl From<scaivault_store::StoreError> for CliError {
    fn from(e: scaivault_store::StoreError) -> Self {
        CliError::from(Error::from(e))
    }
}
