//! The HTTP API over real HTTP against the real binary: the migration story and bad input.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

const BILLING: &str = "environments/production/billing";

#[test]
fn migration_story_over_http() {
    let dev = Dev::start();
    for (name, data) in [
        (
            "stripe",
            json!({"secret_key": "sk_live_51Habc", "publishable_key": "pk_live_51Habc"}),
        ),
        (
            "database",
            json!({"url": "postgres://billing:pw@db:5432/billing"}),
        ),
        ("sendgrid", json!({"api_key": "SG.xyz"})),
    ] {
        let (s, b) = dev.put(
            &format!("/v1/secrets/{BILLING}/{name}"),
            &dev.token,
            json!({"data": data, "secret_type": "kv", "metadata": {"tags": ["billing", "production"]}}),
        );
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["version"], 1);
    }
    let (s, _) = dev.put(
        "/v1/secrets/environments/production/reporting/database",
        &dev.token,
        json!({"data": {"url": "x"}}),
    );
    assert_eq!(s, 201);
    let (s, b) = dev.put(
        &format!("/v1/secrets/{BILLING}/stripe"),
        &dev.token,
        json!({"data": {"secret_key": "sk_live_rotated"}}),
    );
    assert_eq!((s, b["version"].as_u64()), (200, Some(2)));

    let (s, list) = dev.get(&format!("/v1/secrets?prefix={BILLING}/"), &dev.token);
    assert_eq!(s, 200);
    let paths: Vec<&str> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "environments/production/billing/database",
            "environments/production/billing/sendgrid",
            "environments/production/billing/stripe"
        ]
    );
    assert_eq!(list["has_more"], false);

    let reader = service_account(
        &dev,
        "sa:billing-prod",
        "billing-prod-reader",
        &format!("{BILLING}/**"),
        &["read"],
        &["secrets:read", "secrets:write"],
    );
    let (s, b) = dev.get(&format!("/v1/secrets/{BILLING}/stripe"), &reader);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["secret_key"], "sk_live_rotated");
    let (s, b) = dev.get(&format!("/v1/secrets/{BILLING}/stripe?version=1"), &reader);
    assert_eq!(
        (s, b["data"]["secret_key"].as_str()),
        (200, Some("sk_live_51Habc"))
    );
    let (s, b) = dev.get(
        "/v1/secrets/environments/production/reporting/database",
        &reader,
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("access_denied"))
    );
    assert!(
        b["error"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    let (s, b) = dev.put(
        &format!("/v1/secrets/{BILLING}/stripe"),
        &reader,
        json!({"data": {"secret_key": "evil"}}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("access_denied")),
        "write needs the write permission"
    );

    // whoami of the service account.
    let (s, who) = dev.get("/v1/auth/whoami", &reader);
    assert_eq!(s, 200);
    assert_eq!(who["identity_id"], "sa:billing-prod");
    assert_eq!(who["identity_type"], "service_account");

    // policies test explains an allow and a deny.
    let (s, allow) = dev.post(
        "/v1/policies/test",
        &dev.token,
        json!({"identity_id": "sa:billing-prod", "path": format!("{BILLING}/stripe"), "permission": "read"}),
    );
    assert_eq!(s, 200);
    assert_eq!(allow["allowed"], true);
    assert_eq!(allow["policy_name"], "billing-prod-reader");
    assert_eq!(allow["rule_index"], 0);
    assert_eq!(allow["path_pattern"], format!("{BILLING}/**"));
    let (_, deny) = dev.post(
        "/v1/policies/test",
        &dev.token,
        json!({"identity_id": "sa:billing-prod", "path": "environments/production/reporting/database", "permission": "read"}),
    );
    assert_eq!(deny["allowed"], false);
    assert_eq!(deny["code"], "access_denied");
    assert!(
        deny["reason"]
            .as_str()
            .unwrap()
            .contains("none of the 1 policies"),
        "{deny}"
    );

    // Batch read: partial results.
    let (s, batch) = dev.post(
        "/v1/secrets/batch",
        &reader,
        json!({"paths": [format!("{BILLING}/stripe"), format!("{BILLING}/missing"), "environments/production/reporting/database"]}),
    );
    assert_eq!(s, 200, "{batch}");
    assert_eq!(batch["secrets"][format!("{BILLING}/stripe")]["version"], 2);
    assert_eq!(
        batch["errors"][format!("{BILLING}/missing")]["code"],
        "secret_not_found"
    );
    assert_eq!(
        batch["errors"]["environments/production/reporting/database"]["code"],
        "access_denied"
    );
}

#[test]
fn scopes_tokens_and_revocation() {
    let dev = Dev::start();
    dev.put(
        &format!("/v1/secrets/{BILLING}/stripe"),
        &dev.token,
        json!({"data": {"k": "v"}}),
    );
    let read_only = service_account(
        &dev,
        "sa:ro",
        "ro",
        &format!("{BILLING}/**"),
        &["read", "write"],
        &["secrets:read"],
    );
    let (s, b) = dev.put(
        &format!("/v1/secrets/{BILLING}/stripe"),
        &read_only,
        json!({"data": {"k": "x"}}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );

    for (header, code) in [
        (None, "authentication_required"),
        (Some("Basic abc"), "authentication_required"),
        (Some("Bearer "), "authentication_required"),
        (Some("Bearer not-a-token"), "token_invalid"),
        (
            Some("Bearer skt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "token_invalid",
        ),
    ] {
        let mut r = dev
            .http
            .get(format!("{}/v1/secrets/{BILLING}/stripe", dev.url));
        if let Some(h) = header {
            r = r.header("authorization", h);
        }
        let resp = r.send().unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let b: serde_json::Value = resp.json().unwrap();
        assert_eq!(b["error"]["code"], code, "{header:?}");
    }

    // Revocation is effective at once.
    let (_, tokens) = dev.get("/v1/auth/tokens?identity_id=sa:ro", &dev.token);
    let id = tokens["tokens"][0]["token_id"].as_str().unwrap().to_owned();
    assert!(
        tokens.to_string().find("skt_").is_none(),
        "token listings never show token values"
    );
    let (s, _) = dev.req(
        Method::DELETE,
        &format!("/v1/auth/tokens/{id}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 200);
    let (s, b) = dev.get(&format!("/v1/secrets/{BILLING}/stripe"), &read_only);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("token_revoked"))
    );

    // Introspection: active and inactive.
    let (s, b) = dev.post(
        "/v1/auth/introspect",
        &dev.token,
        json!({"token": dev.token}),
    );
    assert_eq!((s, b["active"].as_bool()), (200, Some(true)));
    let (_, b) = dev.post(
        "/v1/auth/introspect",
        &dev.token,
        json!({"token": read_only}),
    );
    assert_eq!(b["active"], false);

    // Client credentials for a service account: a 1-hour token.
    let (s, cred) = dev.post(
        "/v1/identities/sa:ro/credentials",
        &dev.token,
        json!({"scopes": ["secrets:read"]}),
    );
    assert_eq!(s, 201, "{cred}");
    let (s, tok) = dev.req(
        Method::POST,
        "/v1/auth/token",
        None,
        Some(json!({"grant_type": "client_credentials", "client_id": "sa:ro", "client_secret": cred["client_secret"]})),
    );
    assert_eq!(s, 200, "{tok}");
    assert_eq!(tok["expires_in"], 3600);
    let (s, b) = dev.get(
        &format!("/v1/secrets/{BILLING}/stripe"),
        tok["access_token"].as_str().unwrap(),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = dev.req(
        Method::POST,
        "/v1/auth/token",
        None,
        Some(json!({"client_id": "sa:ro", "client_secret": "scs_wrong"})),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );

    // The root token can be revoked too.
    let (_, all) = dev.get("/v1/auth/tokens?identity_id=user:root", &dev.token);
    let root_id = all["tokens"][0]["token_id"].as_str().unwrap().to_owned();
    dev.req(
        Method::DELETE,
        &format!("/v1/auth/tokens/{root_id}"),
        Some(&dev.token),
        None,
    );
    let (s, _) = dev.get("/v1/auth/whoami", &dev.token);
    assert_eq!(s, 401);
}

#[test]
fn policy_crud_and_bindings() {
    let dev = Dev::start();
    dev.post(
        "/v1/identities",
        &dev.token,
        json!({"identity_id": "group:sre"}),
    );
    let (s, p) = dev.post(
        "/v1/policies",
        &dev.token,
        json!({"name": "sre", "rules": [{"path_pattern": "infra/**", "permissions": ["admin"]}]}),
    );
    assert_eq!(s, 201);
    let id = p["id"].as_str().unwrap();
    assert!(id.starts_with("pol_"));
    let (s, b) = dev.post(
        "/v1/policies",
        &dev.token,
        json!({"name": "sre", "rules": [{"path_pattern": "x", "permissions": ["read"]}]}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("policy_exists"))
    );
    let (s, bnd) = dev.post(
        &format!("/v1/policies/{id}/bindings"),
        &dev.token,
        json!({"identity_type": "group", "identity_id": "group:sre"}),
    );
    assert_eq!(s, 201);
    let (s, b) = dev.req(
        Method::DELETE,
        &format!("/v1/policies/{id}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("policy_in_use"))
    );
    let (s, b) = dev.req(
        Method::PATCH,
        &format!("/v1/policies/{id}"),
        Some(&dev.token),
        Some(json!({"description": "on-call"})),
    );
    assert_eq!(
        (
            s,
            b["description"].as_str(),
            b["bindings"].as_array().map(|a| a.len())
        ),
        (200, Some("on-call"), Some(1))
    );
    let (s, _) = dev.req(
        Method::DELETE,
        &format!("/v1/policies/{id}/bindings/{}", bnd["id"].as_str().unwrap()),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 204);
    let (s, _) = dev.req(
        Method::DELETE,
        &format!("/v1/policies/{id}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 204);
    let (s, b) = dev.get(&format!("/v1/policies/{id}"), &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("policy_not_found"))
    );
}

#[test]
fn secret_lifecycle_endpoints() {
    let dev = Dev::start();
    let p = "shared/smtp/password";
    dev.put(
        &format!("/v1/secrets/{p}"),
        &dev.token,
        json!({"data": {"password": "one"}, "metadata": {"owner": "team:mail"}}),
    );
    dev.put(
        &format!("/v1/secrets/{p}"),
        &dev.token,
        json!({"data": {"password": "two"}}),
    );
    let (s, m) = dev.get(&format!("/v1/metadata/{p}"), &dev.token);
    assert_eq!(
        (s, m["version"].as_u64(), m["version_count"].as_u64()),
        (200, Some(2), Some(2))
    );
    assert!(m.get("data").is_none(), "metadata never carries the value");
    assert_eq!(m["secret_type"], "kv");
    // The type is a hint: without one, any JSON object is taken (nested data makes it `json`),
    // and it reads back as written.
    let nested = json!({"host": "db", "port": 5432, "replicas": ["a", "b"], "tls": {"on": true}});
    let (s, w) = dev.put(
        "/v1/secrets/shared/typed/config",
        &dev.token,
        json!({ "data": nested }),
    );
    assert_eq!((s, w["secret_type"].as_str()), (201, Some("json")), "{w}");
    let (_, r) = dev.get("/v1/secrets/shared/typed/config", &dev.token);
    assert_eq!(r["data"], nested);
    let (s, _) = dev.put(
        "/v1/secrets/shared/typed/config",
        &dev.token,
        json!({"data": {"password": "two"}}),
    );
    assert_eq!(s, 200, "a json secret stays json for string data");
    let (_, m) = dev.get("/v1/metadata/shared/typed/config", &dev.token);
    assert_eq!(
        (m["secret_type"].as_str(), m["version"].as_u64()),
        (Some("json"), Some(2))
    );
    let (s, m) = dev.req(
        Method::PATCH,
        &format!("/v1/metadata/{p}"),
        Some(&dev.token),
        Some(json!({"metadata": {"tags": ["mail"]}})),
    );
    assert_eq!((s, m["version"].as_u64()), (200, Some(2)));
    assert_eq!(m["metadata"]["owner"], "team:mail");
    let (s, v) = dev.get(&format!("/v1/versions/{p}"), &dev.token);
    assert_eq!((s, v["versions"].as_array().unwrap().len()), (200, 2));
    let (s, b) = dev.put(
        &format!("/v1/secrets/{p}"),
        &dev.token,
        json!({"data": {"password": "x"}, "options": {"cas": 1}}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("version_conflict"))
    );
    let (s, d) = dev.req(
        Method::DELETE,
        &format!("/v1/secrets/{p}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 200);
    assert!(d["recoverable_until"].is_string());
    let (s, b) = dev.get(&format!("/v1/secrets/{p}"), &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("secret_not_found"))
    );
    let (s, b) = dev.put(
        &format!("/v1/secrets/{p}"),
        &dev.token,
        json!({"data": {"password": "x"}}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("secret_exists"))
    );
    let (s, _) = dev.req(
        Method::POST,
        &format!("/v1/restore/{p}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 200);
    let (_, b) = dev.get(&format!("/v1/secrets/{p}"), &dev.token);
    assert_eq!(b["data"]["password"], "two");
    let (s, _) = dev.req(
        Method::DELETE,
        &format!("/v1/secrets/{p}?permanent=true"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 200);
    let (s, _) = dev.req(
        Method::POST,
        &format!("/v1/restore/{p}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 404);
    let (s, b) = dev.get(&format!("/v1/secrets/{p}?version=1"), &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("secret_not_found"))
    );
}

#[test]
fn system_endpoints() {
    let dev = Dev::start();
    let (s, h) = dev.req(Method::GET, "/v1/health", None, None);
    assert_eq!((s, h["status"].as_str()), (200, Some("healthy")));
    let (s, r) = dev.req(Method::GET, "/v1/health/ready", None, None);
    assert_eq!((s, r["checks"]["encryption"].as_str()), (200, Some("ok")));
    let (s, d) = dev.get("/v1/health/detailed", &dev.token);
    assert_eq!(
        (
            s,
            d["status"].as_str(),
            d["checks"]["database"]["status"].as_str(),
            d["checks"]["encryption"]["data_keys"].as_u64()
        ),
        (200, Some("healthy"), Some("ok"), Some(1)),
        "{d}"
    );
    assert!(d["checks"]["database"]["latency_ms"].is_number() && d["uptime_seconds"].is_u64());
    let (s, _) = dev.req(Method::GET, "/v1/health/detailed", None, None);
    assert_eq!(s, 401, "the detailed health is for admins");
    let (s, doc) = dev.req(Method::GET, "/v1/openapi.json", None, None);
    assert_eq!((s, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/v1/secrets/{path}"]["get"].is_object());
    let (s, v) = dev.req(Method::GET, "/v1/version", None, None);
    assert_eq!(
        (s, v["version"].as_str()),
        (200, Some(env!("CARGO_PKG_VERSION")))
    );
    dev.put("/v1/secrets/a/b", &dev.token, json!({"data": {"k": "v"}}));
    dev.get("/v1/secrets/a/b", &dev.token);
    let resp = dev
        .http
        .get(format!("{}/v1/metrics", dev.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().unwrap();
    for series in [
        "scaivault_requests_total{",
        "scaivault_request_duration_seconds_bucket",
        "scaivault_secrets_total{tenant=\"local\"} 1",
        "scaivault_secret_reads_total{tenant=\"local\",secret_type=\"kv\"} 1",
        "scaivault_secret_writes_total{tenant=\"local\"} 1",
        "scaivault_secret_rotations_total{status=\"completed\"} 0",
        "scaivault_secret_rotations_total{status=\"failed\"} 0",
    ] {
        assert!(text.contains(series), "metrics lack {series}:\n{text}");
    }
    let resp = dev
        .http
        .get(format!("{}/v1/health", dev.url))
        .header("x-request-id", "trace-123")
        .send()
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    // Policy operations allow 50/min; × 0.02 → 1 per minute for this test.
    let dev = Dev::start_with(&["--rate-limit-multiplier", "0.02"]);
    let (s, _) = dev.get("/v1/policies", &dev.token);
    assert_eq!(s, 200);
    let resp = dev
        .http
        .get(format!("{}/v1/policies", dev.url))
        .bearer_auth(&dev.token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(resp.headers().contains_key("x-ratelimit-reset"));
    let b: serde_json::Value = resp.json().unwrap();
    assert_eq!(b["error"]["code"], "rate_limited");
}

/// Every bad request gets its code and changes nothing in the vault but its own audit entry.
#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let dev = Dev::start_with(&["--max-body-bytes", "4096"]);
    let (s, _) = dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"password": "original"}}),
    );
    assert_eq!(s, 201);
    let _ = service_account(
        &dev,
        "sa:app",
        "app",
        "app/**",
        &["read", "write"],
        &["secrets:read", "secrets:write"],
    );
    // What a rejected request must not change: every secret, policy, identity and token.
    let state = || {
        let mut all = Vec::new();
        for p in [
            "/v1/secrets?prefix=",
            "/v1/policies?include_inactive=true",
            "/v1/identities",
            "/v1/auth/tokens",
        ] {
            all.push(dev.get(p, &dev.token).1);
        }
        all
    };
    let failures = || {
        let (_, b) = dev.get("/v1/audit/logs?success=false&limit=1000", &dev.token);
        b["logs"].as_array().unwrap().len()
    };
    let before = state();
    let failures_before = failures();
    let t = dev.token.clone();

    let raw =
        |method: Method, path: &str, body: Option<(&str, &str)>| -> (u16, serde_json::Value) {
            let mut r = dev
                .http
                .request(method, format!("{}{}", dev.url, path))
                .bearer_auth(&t);
            if let Some((ct, b)) = body {
                r = r.header("content-type", ct).body(b.to_owned());
            }
            let resp = r.send().unwrap();
            let s = resp.status().as_u16();
            (s, resp.json().unwrap_or(serde_json::Value::Null))
        };
    let good = r#"{"data":{"password":"changed"}}"#;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_body = format!(r#"{{"data":{{"k":{deep}}}}}"#);
    let huge = format!(r#"{{"data":{{"k":"{}"}}}}"#, "x".repeat(5000));
    // HTTP clients normalise `..` and `%2e%2e` away, so these go over a raw socket.
    for target in [
        "/v1/secrets/app/../db",
        "/v1/secrets/app/%2e%2e/db",
        "/v1/secrets/%2E%2E/app/db",
        "/v1/secrets/app/./db",
    ] {
        let (s, b) = raw_http(&dev.url, "PUT", target, &t, good);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_path")),
            "{target}: {b}"
        );
    }
    type Case<'a> = (Method, String, Option<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::PUT,
            "/v1/secrets/app%2Fdb".into(),
            Some(("application/json", good)),
            400,
            "invalid_path",
        ),
        (
            Method::PUT,
            "/v1/secrets/App/DB".into(),
            Some(("application/json", good)),
            400,
            "invalid_path",
        ),
        (
            Method::PUT,
            "/v1/secrets/app//db".into(),
            Some(("application/json", good)),
            400,
            "invalid_path",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db/".into(),
            Some(("application/json", good)),
            400,
            "invalid_path",
        ),
        (
            Method::GET,
            "/v1/secrets?prefix=../".into(),
            None,
            400,
            "invalid_path",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some(("application/json", "{not json")),
            400,
            "invalid_request",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some((
                "application/json",
                r#"{"data":{"password":"x"},"cas":"hunter2"}"#,
            )),
            400,
            "invalid_request",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some(("application/json", r#"{"dta":{}}"#)),
            400,
            "invalid_request",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some(("text/plain", good)),
            415,
            "unsupported_media_type",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some(("application/json", &huge)),
            413,
            "payload_too_large",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some(("application/json", &deep_body)),
            400,
            "invalid_request",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some((
                "application/json",
                r#"{"data":{"k":"v"},"secret_type":"pgp"}"#,
            )),
            400,
            "invalid_secret_type",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some((
                "application/json",
                r#"{"data":{"k":"v"},"options":{"expires_in":"forever"}}"#,
            )),
            400,
            "invalid_duration",
        ),
        (
            Method::PUT,
            "/v1/secrets/app/db".into(),
            Some(("application/json", r#"{"data":"just a string"}"#)),
            422,
            "validation_error",
        ),
        (
            Method::POST,
            "/v1/policies".into(),
            Some((
                "application/json",
                r#"{"name":"p","rules":[{"path_pattern":"app/**x","permissions":["read"]}]}"#,
            )),
            400,
            "invalid_glob",
        ),
        (
            Method::POST,
            "/v1/policies".into(),
            Some((
                "application/json",
                r#"{"name":"p","rules":[{"path_pattern":"/app","permissions":["read"]}]}"#,
            )),
            400,
            "invalid_glob",
        ),
        (
            Method::POST,
            "/v1/policies".into(),
            Some(("application/json", r#"{"name":"p","rules":[]}"#)),
            400,
            "invalid_policy",
        ),
        (
            Method::POST,
            "/v1/policies".into(),
            Some((
                "application/json",
                r#"{"name":"p","rules":[{"path_pattern":"app/**","permissions":["fly"]}]}"#,
            )),
            400,
            "invalid_policy",
        ),
        (
            Method::POST,
            "/v1/policies".into(),
            Some((
                "application/json",
                r#"{"name":"p","rules":[{"path_pattern":"app/**","permissions":["read"],"effect":"deny"}]}"#,
            )),
            400,
            "invalid_policy",
        ),
        (
            Method::POST,
            "/v1/policies/pol_none/bindings".into(),
            Some(("application/json", r#"{"identity_id":7}"#)),
            400,
            "invalid_policy",
        ),
        (
            Method::GET,
            "/v1/secrets?cursor=bogus".into(),
            None,
            400,
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/v1/secrets/app/db?version=abc".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v1/no/such/route".into(),
            None,
            404,
            "not_found",
        ),
        (
            Method::DELETE,
            "/v1/policies".into(),
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/v1/auth/tokens".into(),
            Some((
                "application/json",
                r#"{"identity_id":"sa:ghost","scopes":["secrets:read"]}"#,
            )),
            404,
            "identity_not_found",
        ),
        (
            Method::POST,
            "/v1/secrets/batch".into(),
            Some(("application/json", r#"{"paths":[]}"#)),
            422,
            "validation_error",
        ),
    ];
    let n_cases = cases.len();
    for (method, path, body, status, code) in cases {
        let (s, b) = raw(method.clone(), &path, body);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {b}"
        );
        assert!(b["error"]["request_id"].is_string());
        assert!(
            !b.to_string().contains("hunter2"),
            "an error echoed a value: {b}"
        );
    }
    assert_eq!(state(), before, "a rejected request changed the vault");
    assert_eq!(
        failures() - failures_before,
        4 + n_cases,
        "each rejected request left one audit entry"
    );
    let (_, b) = dev.get("/v1/secrets/app/db", &dev.token);
    assert_eq!(b["data"]["password"], "original");
}

/// One HTTP/1.1 request written byte for byte, for request targets clients would rewrite.
fn raw_http(
    url: &str,
    method: &str,
    target: &str,
    token: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

/// Policy and rotation-policy lists page like every collection: by name, `limit` and an
/// opaque `cursor`; a malformed cursor is `invalid_cursor`.
#[test]
fn policy_lists_are_paginated() {
    let dev = Dev::start();
    for name in ["p-c", "p-a", "p-e", "p-b", "p-d"] {
        let (s, b) = dev.post(
            "/v1/policies",
            &dev.token,
            json!({"name": name, "rules": [{"path_pattern": "x/**", "permissions": ["read"]}]}),
        );
        assert_eq!(s, 201, "{b}");
    }
    let mut names = Vec::new();
    let mut url = "/v1/policies?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (s, b) = dev.get(&url, &dev.token);
        assert_eq!(s, 200, "{b}");
        pages += 1;
        let items = b["policies"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|p| p["name"].as_str().unwrap().to_owned()));
        if b["has_more"] == false {
            assert!(b["cursor"].is_null());
            break;
        }
        url = format!(
            "/v1/policies?limit=2&cursor={}",
            b["cursor"].as_str().unwrap()
        );
    }
    assert_eq!(names, ["p-a", "p-b", "p-c", "p-d", "p-e"]);
    assert_eq!(pages, 3);
    let (s, b) = dev.get("/v1/policies?cursor=not-a-cursor", &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
    let (s, _) = dev.get("/v1/policies?limit=0", &dev.token);
    assert_eq!(s, 400);

    for name in ["r-b", "r-a"] {
        let (s, b) = dev.post(
            "/v1/rotation/policies",
            &dev.token,
            json!({"name": name, "interval": "30d"}),
        );
        assert_eq!(s, 201, "{b}");
    }
    let (_, b) = dev.get("/v1/rotation/policies?limit=1", &dev.token);
    assert_eq!(b["data"][0]["name"], "r-a");
    assert_eq!(b["has_more"], true);
    let next = format!(
        "/v1/rotation/policies?limit=1&cursor={}",
        b["cursor"].as_str().unwrap()
    );
    let (_, b) = dev.get(&next, &dev.token);
    assert_eq!(b["data"][0]["name"], "r-b");
    assert_eq!(b["has_more"], false);

    // The CLI follows the pages.
    let out = dev.cli(&["policies", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["policies"].as_array().unwrap().len(), 5);
}

/// Batch metadata: listing rights are enough, values never appear, patterns expand only on
/// request and only to what the caller may list, and each bad entry is reported on its own.
#[test]
fn batch_metadata_answers_what_the_caller_may_list() {
    let dev = Dev::start();
    for p in ["billing/stripe", "billing/db", "billing/eu/vat", "other/y"] {
        let (s, _) = dev.put(
            &format!("/v1/secrets/{p}"),
            &dev.token,
            json!({"data": {"value": "v4lue-never-shown"}, "metadata": {"tags": ["t"]}}),
        );
        assert_eq!(s, 201);
    }
    let sa = service_account(
        &dev,
        "sa:lister",
        "lister",
        "billing/*",
        &["list"],
        &["secrets:list"],
    );
    let (s, b) = dev.post(
        "/v1/secrets/batch/metadata",
        &sa,
        json!({"paths": ["billing/stripe", "other/y", "billing/missing", "Bad Path", "billing/*"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert!(
        !b.to_string().contains("v4lue"),
        "a value in a metadata answer"
    );
    assert_eq!(b["secrets"]["billing/stripe"]["version"], 1);
    assert_eq!(
        b["secrets"]["billing/stripe"]["metadata"]["tags"],
        json!(["t"])
    );
    assert_eq!(b["secrets"].as_object().unwrap().len(), 1, "{b}");
    let code = |p: &str| b["errors"][p]["code"].as_str().unwrap().to_owned();
    assert_eq!(code("other/y"), "access_denied");
    assert_eq!(code("billing/missing"), "secret_not_found");
    assert_eq!(code("Bad Path"), "invalid_path");
    assert_eq!(code("billing/*"), "validation_error");

    let (s, b) = dev.post(
        "/v1/secrets/batch/metadata",
        &sa,
        json!({"paths": ["billing/**", "nothing/*"], "expand_wildcards": true}),
    );
    assert_eq!(s, 200, "{b}");
    let mut got: Vec<&str> = b["secrets"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["billing/db", "billing/stripe"],
        "only what the policy lists"
    );
    assert_eq!(b["errors"], json!({}));

    let too_many: Vec<String> = (0..101).map(|i| format!("billing/s{i}")).collect();
    let (s, b) = dev.post(
        "/v1/secrets/batch/metadata",
        &sa,
        json!({"paths": too_many}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("validation_error"))
    );
    let (s, b) = dev.post(
        "/v1/secrets/batch/metadata",
        &sa,
        json!({"paths": ["billing/db"], "surprise": 1}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // One entry per path (or refused pattern) of each answered call, one per refused call.
    let (_, logs) = dev.get(
        "/v1/audit/logs?action=metadata_read&identity_id=sa:lister",
        &dev.token,
    );
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 5 + 2 + 1 + 1, "{logs:#?}");
    let entry = |path: &str| {
        logs.iter()
            .filter(|e| e["secret_path"] == path)
            .map(|e| {
                (
                    e["success"].as_bool().unwrap(),
                    e["extra_data"]["error_code"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        entry("billing/stripe"),
        [
            (true, serde_json::Value::Null),
            (true, serde_json::Value::Null)
        ]
    );
    assert_eq!(entry("billing/db"), [(true, serde_json::Value::Null)]);
    assert_eq!(entry("other/y"), [(false, json!("access_denied"))]);
    assert_eq!(entry("billing/*"), [(false, json!("validation_error"))]);
    assert_eq!(
        logs.iter().filter(|e| e["secret_path"].is_null()).count(),
        2,
        "the two refused calls"
    );
}

/// `Idempotency-Key` on a write: a repeat (a client retrying after a lost answer) gets the first
/// answer and writes nothing; the same key for another body is refused; a caller no longer
/// allowed to write gets no replay; the audit log shows the repeat as a replay.
#[test]
fn a_repeated_idempotency_key_writes_once() {
    let dev = Dev::start();
    let sa = common::service_account(
        &dev,
        "sa:idem",
        "idem",
        "idem/**",
        &["read", "write"],
        &["secrets:read", "secrets:write"],
    );
    let put = |key: &str, value: &str, token: &str| {
        let resp = common::http()
            .put(format!("{}/v1/secrets/idem/db", dev.url))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"data": {"password": value}}))
            .send()
            .unwrap();
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let status = resp.status().as_u16();
        (status, replayed, resp.json::<serde_json::Value>().unwrap())
    };
    let (s, replayed, first) = put("retry-1", "pw-1", &sa);
    assert_eq!((s, replayed), (201, false), "{first}");
    for _ in 0..3 {
        let (s, replayed, again) = put("retry-1", "pw-1", &sa);
        assert_eq!((s, replayed), (201, true), "{again}");
        assert_eq!(again, first, "a replay answers as the first write did");
    }
    let (_, history) = dev.get("/v1/versions/idem/db", &dev.token);
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        1,
        "{history}"
    );

    // Another body under the same key is refused and writes nothing.
    let (s, _, b) = put("retry-1", "pw-2", &sa);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // The same key from another identity is that identity's own.
    let (s, replayed, _) = put("retry-1", "pw-1", &dev.token);
    assert_eq!((s, replayed), (200, false));
    let (_, cur) = dev.get("/v1/secrets/idem/db", &dev.token);
    assert_eq!(cur["version"], 2);
    // A malformed key is refused, and so are two keys.
    let (s, _, b) = put("has space", "pw-3", &sa);
    assert_eq!(s, 400, "{b}");
    let two = common::http()
        .put(format!("{}/v1/secrets/idem/db", dev.url))
        .bearer_auth(&sa)
        .header("Idempotency-Key", "retry-1")
        .header("Idempotency-Key", "retry-2")
        .json(&json!({"data": {"password": "pw-1"}}))
        .send()
        .unwrap();
    assert_eq!(two.status().as_u16(), 400);

    // Once the policy no longer lets the caller write, no replay is answered.
    let (s, _) = dev.req(
        reqwest::Method::DELETE,
        "/v1/policies/idem?force=true",
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 204);
    let (s, replayed, b) = put("retry-1", "pw-1", &sa);
    assert_eq!((s, replayed), (403, false), "{b}");

    // The audit log: one write, three replays (marked), refusals.
    let (_, logs) = dev.get(
        "/v1/audit/logs?action=write&identity_id=sa:idem",
        &dev.token,
    );
    let entries = logs["logs"].as_array().unwrap();
    let replays = entries
        .iter()
        .filter(|e| e["extra_data"]["replayed"] == true)
        .count();
    let wrote = entries
        .iter()
        .filter(|e| e["success"] == true && e["extra_data"].get("replayed").is_none())
        .count();
    assert_eq!((wrote, replays), (1, 3), "{logs}");
}

/// The reference's admin roles and identity resolution: who may change roles (a super_admin
/// or partner_admin; super_admin only by a super_admin; nobody raises their own), and an
/// identity with its groups and roles.
#[test]
fn roles_follow_the_reference_rules_and_identities_resolve() {
    let dev = Dev::start();
    for id in ["user:alice", "user:bob", "group:sre"] {
        let (s, b) = dev.post("/v1/identities", &dev.token, json!({ "identity_id": id }));
        assert_eq!(s, 201, "{b}");
    }
    dev.post(
        "/v1/identities/group:sre/members",
        &dev.token,
        json!({"member_id": "user:alice"}),
    );
    let token = |id: &str| {
        let (s, t) = dev.post(
            "/v1/auth/tokens",
            &dev.token,
            json!({"identity_id": id, "scopes": ["identity:admin", "identity:read"], "ttl": "1h"}),
        );
        assert_eq!(s, 201, "{t}");
        t["token"].as_str().unwrap().to_owned()
    };
    let (alice, bob) = (token("user:alice"), token("user:bob"));
    let set = |who: &str, target: &str, roles: serde_json::Value| {
        dev.req(
            Method::PUT,
            &format!("/v1/identity/users/{target}/roles"),
            Some(who),
            Some(json!({ "roles": roles })),
        )
    };

    let (s, r) = dev.get("/v1/identity/roles", &bob);
    let names: Vec<&str> = r["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        (s, names),
        (200, vec!["super_admin", "partner_admin", "tenant_admin"])
    );

    // The root (a super_admin) makes alice a partner_admin.
    let (s, b) = set(&dev.token, "alice", json!(["partner_admin"]));
    assert_eq!((s, &b["roles"]), (200, &json!(["partner_admin"])), "{b}");
    let (_, me) = dev.get("/v1/auth/whoami", &alice);
    assert_eq!(me["roles"], json!(["partner_admin"]));
    // A partner_admin may give roles, but not super_admin, and not raise her own.
    let (s, b) = set(&alice, "user:bob", json!(["tenant_admin"]));
    assert_eq!(s, 200, "{b}");
    let (s, b) = set(&alice, "bob", json!(["super_admin"]));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    let (s, b) = set(&alice, "alice", json!(["partner_admin", "tenant_admin"]));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    // A tenant_admin may not change roles at all; an unknown role is invalid_role.
    let (s, b) = set(&bob, "alice", json!([]));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    let (s, b) = set(&dev.token, "bob", json!(["root"]));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_role")),
        "{b}"
    );
    let (_, b) = dev.get("/v1/identity/users/user:bob/roles", &alice);
    assert_eq!(
        b["roles"],
        json!(["tenant_admin"]),
        "nothing refused was kept"
    );
    // Only a super_admin takes super_admin away.
    let (s, _) = set(&dev.token, "bob", json!(["super_admin"]));
    assert_eq!(s, 200);
    let (s, b) = set(&alice, "bob", json!([]));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    let (s, _) = set(&dev.token, "bob", json!(["tenant_admin"]));
    assert_eq!(s, 200);
    // Lowering one's own roles is allowed.
    let (s, b) = set(&alice, "alice", json!([]));
    assert_eq!((s, &b["roles"]), (200, &json!([])), "{b}");

    let (s, r) = dev.get("/v1/identity/resolve/user/alice", &bob);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (&r["identity_id"], &r["groups"], &r["tenant_id"]),
        (
            &json!("user:alice"),
            &json!(["group:sre"]),
            &json!("tnt_local")
        )
    );
    let (_, r) = dev.get("/v1/identity/resolve/user/user:bob", &bob);
    assert_eq!(r["roles"], json!(["tenant_admin"]));
    for missing in [
        "/v1/identity/resolve/service_account/none",
        "/v1/identity/resolve/service_account/alice",
    ] {
        let (s, b) = dev.get(missing, &bob);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (404, Some("identity_not_found")),
            "{b}"
        );
    }
}
