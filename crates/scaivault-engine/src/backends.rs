//! The host side of the capabilities rotation backends use: HTTP and a narrow set of
//! PostgreSQL operations, each only towards hosts on the operator's allow-list, with the
//! engine's clock. The PostgreSQL admin credential is read from the vault by the engine and
//! handed to these services, never to the plugin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use scaivault_plugin_host::{HostCallError, HostServices};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Clock;

const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A credential the engine resolved from a vault path for one backend call.
pub(crate) struct AdminCredential {
    pub(crate) user: String,
    pub(crate) password: Zeroizing<String>,
}

pub(crate) struct BackendServices {
    pub(crate) clock: Arc<dyn Clock>,
    /// `host` or `host:port` entries; see [`host_allowed`].
    pub(crate) allow_hosts: Arc<Vec<String>>,
    /// Vault path → credential, only the paths the policy's config names.
    pub(crate) admin: BTreeMap<String, AdminCredential>,
    pub(crate) runtime: tokio::runtime::Handle,
}

fn refused(msg: impl Into<String>) -> HostCallError {
    HostCallError::new("host_not_allowed", msg, false)
}

/// `entry` is `host` (any port) or `host:port`. Names compare case-insensitively; no
/// wildcard, no DNS resolution: what the operator wrote is what is allowed.
pub(crate) fn host_allowed(allow: &[String], host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    allow.iter().any(|entry| {
        let e = entry.trim().to_ascii_lowercase();
        match e.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                h.trim_start_matches('[').trim_end_matches(']') == host && p.parse() == Ok(port)
            }
            _ => e.trim_start_matches('[').trim_end_matches(']') == host,
        }
    })
}

impl HostServices for BackendServices {
    fn now_ms(&self) -> i64 {
        self.clock.now().0 / 1000
    }

    fn http(&self, _plugin: &str, req: Value) -> Result<Value, HostCallError> {
        let url = req["url"].as_str().unwrap_or_default();
        let url = reqwest::Url::parse(url)
            .map_err(|_| HostCallError::new("invalid_request", "the URL does not parse", false))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused("only http and https URLs are allowed"));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(0);
        if !host_allowed(&self.allow_hosts, &host, port) {
            return Err(refused(format!(
                "{host}:{port} is not on the operator's outbound allow-list (--allow-host)"
            )));
        }
        let method =
            reqwest::Method::from_bytes(req["method"].as_str().unwrap_or("POST").as_bytes())
                .map_err(|_| HostCallError::new("invalid_request", "bad HTTP method", false))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(h) = req["headers"].as_object() {
            for (k, v) in h {
                let (Ok(name), Some(Ok(value))) = (
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                    v.as_str().map(reqwest::header::HeaderValue::from_str),
                ) else {
                    return Err(HostCallError::new(
                        "invalid_request",
                        format!("bad header {k}"),
                        false,
                    ));
                };
                headers.insert(name, value);
            }
        }
        let body = req["body"].as_str().unwrap_or_default().to_owned();
        self.runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                // A redirect could lead anywhere: the allow-list applies to the URL given.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| HostCallError::new("http_failed", e.to_string(), true))?;
            let resp = client
                .request(method, url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    HostCallError::new(
                        "http_failed",
                        format!("request failed: {}", without_url(&e)),
                        true,
                    )
                })?;
            let status = resp.status().as_u16();
            let headers: serde_json::Map<String, Value> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), json!(v))))
                .collect();
            let bytes = resp.bytes().await.unwrap_or_default();
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into_owned();
            Ok(json!({ "status": status, "headers": headers, "body": body }))
        })
    }

    fn postgres(&self, _plugin: &str, req: Value) -> Result<Value, HostCallError> {
        let server = &req["server"];
        let host = server["host"].as_str().unwrap_or_default().to_owned();
        let port = server["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(5432);
        let dbname = server["dbname"].as_str().unwrap_or("postgres").to_owned();
        if host.is_empty() {
            return Err(HostCallError::new(
                "invalid_request",
                "server.host is required",
                false,
            ));
        }
        if !host_allowed(&self.allow_hosts, &host, port) {
            return Err(refused(format!(
                "{host}:{port} is not on the operator's outbound allow-list (--allow-host)"
            )));
        }
        match req["op"].as_str() {
            Some("set_password") => {
                let path = req["admin_secret_path"].as_str().unwrap_or_default();
                let admin = self.admin.get(path).ok_or_else(|| {
                    HostCallError::new(
                        "invalid_request",
                        "admin_secret_path is not the credential this rotation policy names",
                        false,
                    )
                })?;
                let role = req["role"].as_str().unwrap_or_default();
                let password =
                    Zeroizing::new(req["password"].as_str().unwrap_or_default().to_owned());
                if role.is_empty() || password.is_empty() {
                    return Err(HostCallError::new(
                        "invalid_request",
                        "role and password are required",
                        false,
                    ));
                }
                let statement = Zeroizing::new(format!(
                    "ALTER ROLE {} WITH PASSWORD {}",
                    quote_ident(role)?,
                    password_literal(&password)?
                ));
                let (user, pw) = (admin.user.clone(), admin.password.clone());
                self.runtime.block_on(async move {
                    let client = pg_connect(&host, port, &dbname, &user, &pw).await?;
                    client.batch_execute(&statement).await.map_err(pg_error)?;
                    Ok(json!({ "role": role_name(&statement) }))
                })
            }
            Some("login") => {
                let user = req["user"].as_str().unwrap_or_default().to_owned();
                let password =
                    Zeroizing::new(req["password"].as_str().unwrap_or_default().to_owned());
                self.runtime.block_on(async move {
                    let client = pg_connect(&host, port, &dbname, &user, &password).await?;
                    client.simple_query("SELECT 1").await.map_err(pg_error)?;
                    Ok(json!({ "login": "ok" }))
                })
            }
            _ => Err(HostCallError::new(
                "invalid_request",
                "postgres op must be set_password or login",
                false,
            )),
        }
    }
}

/// The role as it appears in the statement, for the reply (never the password).
fn role_name(statement: &str) -> String {
    statement
        .strip_prefix("ALTER ROLE ")
        .and_then(|s| s.split(" WITH PASSWORD").next())
        .unwrap_or_default()
        .to_owned()
}

/// reqwest's error text includes the URL, which may carry credentials in its query.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

async fn pg_connect(
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, HostCallError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .dbname(dbname)
        .user(user)
        .password(password)
        .application_name("scaivault-rotation")
        .connect_timeout(PG_CONNECT_TIMEOUT);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(pg_error)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Authentication failures and SQL errors are final; anything on the way (refused
/// connection, timeout, server shutting down) may pass.
fn pg_error(e: tokio_postgres::Error) -> HostCallError {
    match e.code() {
        Some(code) => {
            let sqlstate = code.code();
            let retryable =
                sqlstate.starts_with("08") || sqlstate.starts_with("57") || sqlstate == "40001";
            let what = if sqlstate == "28P01" || sqlstate == "28000" {
                "login failed".to_owned()
            } else {
                format!("PostgreSQL error {sqlstate}")
            };
            HostCallError::new("postgres_failed", what, retryable)
        }
        None => HostCallError::new("postgres_failed", format!("connection failed: {e}"), true),
    }
}

/// A safely quoted identifier: `"` doubled inside double quotes.
pub(crate) fn quote_ident(name: &str) -> Result<String, HostCallError> {
    if name.contains('\0') || name.len() > 63 {
        return Err(HostCallError::new(
            "invalid_request",
            "bad role name",
            false,
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// The password as PostgreSQL should receive it: a SCRAM-SHA-256 verifier computed here, so
/// the plaintext never reaches the server's logs (as psql's `\password` does). Non-ASCII
/// passwords, which SCRAM would first normalise with SASLprep, go as an escaped literal.
pub(crate) fn password_literal(password: &str) -> Result<String, HostCallError> {
    if password.contains('\0') {
        return Err(HostCallError::new(
            "invalid_request",
            "password contains NUL",
            false,
        ));
    }
    if password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let salt: [u8; 16] = scaivault_crypto::random_bytes();
        return Ok(format!("'{}'", scram_verifier(password, &salt, 4096)));
    }
    Ok(format!(
        "E'{}'",
        password.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802, RFC 7677).
pub(crate) fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let keys = scaivault_crypto::scram_sha256_keys(password.as_bytes(), salt, iterations);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(keys.stored_key),
        b64.encode(keys.server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_host_and_optional_port_exactly() {
        let allow = vec![
            "127.0.0.1:5432".to_owned(),
            "hooks.example.com".to_owned(),
            "[::1]:8443".to_owned(),
        ];
        assert!(host_allowed(&allow, "127.0.0.1", 5432));
        assert!(!host_allowed(&allow, "127.0.0.1", 5433));
        assert!(host_allowed(&allow, "HOOKS.example.com", 443));
        assert!(!host_allowed(&allow, "evil.hooks.example.com", 443));
        assert!(host_allowed(&allow, "[::1]", 8443));
        assert!(!host_allowed(&[], "127.0.0.1", 80));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(
            quote_ident(r#"app"; DROP ROLE x; --"#).unwrap(),
            r#""app""; DROP ROLE x; --""#
        );
        assert!(quote_ident("a\0b").is_err());
        assert_eq!(password_literal("p'é\\").unwrap(), r"E'p''é\\'");
        let lit = password_literal("ascii-only").unwrap();
        assert!(
            lit.starts_with("'SCRAM-SHA-256$4096:") && lit.ends_with('\''),
            "{lit}"
        );
    }

    #[test]
    fn scram_verifier_has_postgres_shape_and_a_fresh_salt() {
        // Its correctness is proven end to end: the PostgreSQL rotation test logs in with the
        // password after the server stored this verifier.
        let a = password_literal("same").unwrap();
        let b = password_literal("same").unwrap();
        assert_ne!(a, b, "each verifier has its own salt");
        let v = scram_verifier("pencil", b"0123456789abcdef", 4096);
        let (head, keys) = v.split_once('$').unwrap().1.split_once('$').unwrap();
        assert_eq!(head, "4096:MDEyMzQ1Njc4OWFiY2RlZg==");
        let (stored, server) = keys.split_once(':').unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            (
                b64.decode(stored).unwrap().len(),
                b64.decode(server).unwrap().len()
            ),
            (32, 32)
        );
    }
}
