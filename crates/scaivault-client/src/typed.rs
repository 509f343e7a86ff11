//! Typed calls: the request types the server parses and the result types it answers with,
//! shared with the engine (one definition of each shape). Commands use these where a typed
//! result exists; the rest of the API is reached with [`VaultClient::call`].

use scaivault_core::path::SecretPath;
use scaivault_engine::{
    DamagedDestroyed, Deletion, ListPage, SecretSummary, SecretView, VersionHistory, Whoami,
    WriteOutcome, WriteRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::{ClientError, Method, Result, VaultClient, q};

/// A secret path, checked before it goes into a URL: a `?`, `#`, space or `%` in it would
/// otherwise change which secret, or which request, the URL names.
pub fn secret_path(p: &str) -> std::result::Result<&str, scaivault_core::Error> {
    SecretPath::parse(p)?;
    Ok(p)
}

impl VaultClient {
    /// Sends `body` and reads the answer as `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|_| scaivault_core::Error::internal("serialization failed"))?;
        let v = self.call(method, path, body.as_ref()).await?;
        // serde's message may quote a value from the answer (a secret): it is not shown.
        serde_json::from_value(v).map_err(|_| {
            ClientError::from(scaivault_core::Error::internal(
                "the vault answered in a shape this client does not know (a newer server?)",
            ))
        })
    }

    pub async fn write_secret(&self, path: &str, req: &WriteRequest) -> Result<WriteOutcome> {
        let url = format!("/v1/secrets/{}", secret_path(path)?);
        self.call_as(Method::PUT, &url, Some(req)).await
    }

    pub async fn read_secret(&self, path: &str, version: Option<u64>) -> Result<SecretView> {
        let v = version.map(|v| format!("?version={v}")).unwrap_or_default();
        let url = format!("/v1/secrets/{}{v}", secret_path(path)?);
        self.call_as(Method::GET, &url, None::<&()>).await
    }

    /// One page of the secrets under `prefix`.
    pub async fn list_secrets(
        &self,
        prefix: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<ListPage> {
        let mut url = format!("/v1/secrets?prefix={}", q(prefix));
        if let Some(l) = limit {
            url.push_str(&format!("&limit={l}"));
        }
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={}", q(c)));
        }
        self.call_as(Method::GET, &url, None::<&()>).await
    }

    pub async fn secret_metadata(&self, path: &str) -> Result<SecretSummary> {
        let url = format!("/v1/metadata/{}", secret_path(path)?);
        self.call_as(Method::GET, &url, None::<&()>).await
    }

    /// Merges `patch` into the secret's metadata (a `null` removes a key); no new version.
    pub async fn update_metadata(
        &self,
        path: &str,
        patch: Map<String, Value>,
    ) -> Result<SecretSummary> {
        let url = format!("/v1/metadata/{}", secret_path(path)?);
        self.call_as(Method::PATCH, &url, Some(&json!({ "metadata": patch })))
            .await
    }

    pub async fn secret_versions(&self, path: &str) -> Result<VersionHistory> {
        let url = format!("/v1/versions/{}", secret_path(path)?);
        self.call_as(Method::GET, &url, None::<&()>).await
    }

    pub async fn delete_secret(&self, path: &str, permanent: bool) -> Result<Deletion> {
        let hard = if permanent { "?permanent=true" } else { "" };
        let url = format!("/v1/secrets/{}{hard}", secret_path(path)?);
        self.call_as(Method::DELETE, &url, None::<&()>).await
    }

    /// Destroys what is left of a damaged secret (an admin's repair).
    pub async fn destroy_damaged(&self, path: &str) -> Result<DamagedDestroyed> {
        let url = format!("/v1/sys/damaged/{}", secret_path(path)?);
        self.call_as(Method::DELETE, &url, None::<&()>).await
    }

    pub async fn restore_secret(&self, path: &str) -> Result<SecretSummary> {
        let url = format!("/v1/restore/{}", secret_path(path)?);
        self.call_as(Method::POST, &url, None::<&()>).await
    }

    /// Rotates one secret now by its rotation policy (`secrets:rotate`).
    pub async fn rotate_secret(&self, path: &str) -> Result<scaivault_engine::RotateResult> {
        let url = format!("/v1/rotate/{}", secret_path(path)?);
        self.call_as(Method::POST, &url, None::<&()>).await
    }

    /// Secrets under `prefix` expiring within `days`, soonest first.
    pub async fn expiring_secrets(
        &self,
        prefix: &str,
        days: u32,
        limit: Option<usize>,
    ) -> Result<scaivault_engine::ExpiringSecrets> {
        let mut url = format!("/v1/expiring?prefix={}&days={days}", q(prefix));
        if let Some(l) = limit {
            url.push_str(&format!("&limit={l}"));
        }
        self.call_as(Method::GET, &url, None::<&()>).await
    }

    pub async fn whoami(&self) -> Result<Whoami> {
        self.call_as(Method::GET, "/v1/auth/whoami", None::<&()>)
            .await
    }
}
