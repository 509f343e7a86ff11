//! `GET /v1/openapi.json`: the API described for tools. A test parses the router's source and
//! checks that every route it serves is listed here, and nothing else.

use serde_json::{Map, Value, json};

/// (method, path, summary, scope). `scope` is `None` for endpoints without a token.
pub(crate) const OPERATIONS: &[(&str, &str, &str, Option<&str>)] = &[
    ("get", "/v1/health", "Liveness", None),
    (
        "get",
        "/v1/health/ready",
        "Readiness (503 while sealed)",
        None,
    ),
    (
        "get",
        "/v1/version",
        "Version and file-format version",
        None,
    ),
    ("get", "/v1/metrics", "Prometheus metrics", None),
    ("get", "/v1/openapi.json", "This document", None),
    ("get", "/v1/sys/status", "Seal state", None),
    (
        "post",
        "/v1/sys/unseal",
        "Unseal with a passphrase, key file or recovery key",
        None,
    ),
    ("post", "/v1/sys/seal", "Seal", Some("admin")),
    (
        "post",
        "/v1/sys/rotate-key",
        "Add a data key; new writes use it",
        Some("admin"),
    ),
    (
        "get",
        "/v1/sys/backup",
        "Stream a consistent, encrypted backup",
        Some("admin"),
    ),
    (
        "post",
        "/v1/sys/restore",
        "Write one secret back from an uploaded backup",
        Some("admin"),
    ),
    (
        "post",
        "/v1/sys/verify",
        "Check every record, the indexes and the audit chain",
        Some("admin"),
    ),
    (
        "get",
        "/v1/secrets",
        "List secrets by prefix (cursor pagination)",
        Some("secrets:list"),
    ),
    (
        "get",
        "/v1/secrets/{path}",
        "Read a secret (current or ?version=N)",
        Some("secrets:read"),
    ),
    (
        "put",
        "/v1/secrets/{path}",
        "Write a new version",
        Some("secrets:write"),
    ),
    (
        "delete",
        "/v1/secrets/{path}",
        "Soft delete, or ?permanent=true",
        Some("secrets:delete"),
    ),
    (
        "post",
        "/v1/secrets/{path}",
        "Batch read when {path} is `batch`; metadata of many paths when it is `batch/metadata`",
        Some("secrets:read"),
    ),
    (
        "get",
        "/v1/metadata/{path}",
        "Metadata without the value",
        Some("secrets:list"),
    ),
    (
        "patch",
        "/v1/metadata/{path}",
        "Merge metadata; no new version",
        Some("secrets:write"),
    ),
    (
        "get",
        "/v1/versions/{path}",
        "Version history",
        Some("secrets:list"),
    ),
    (
        "post",
        "/v1/restore/{path}",
        "Undo a soft delete",
        Some("secrets:delete"),
    ),
    (
        "get",
        "/v1/policies",
        "List access policies",
        Some("policies:read"),
    ),
    (
        "post",
        "/v1/policies",
        "Create an access policy",
        Some("policies:write"),
    ),
    (
        "post",
        "/v1/policies/test",
        "Dry-run an access decision (not audited)",
        Some("policies:read"),
    ),
    (
        "get",
        "/v1/policies/{id}",
        "Get a policy",
        Some("policies:read"),
    ),
    (
        "put",
        "/v1/policies/{id}",
        "Replace a policy (bindings kept)",
        Some("policies:write"),
    ),
    (
        "patch",
        "/v1/policies/{id}",
        "Update part of a policy",
        Some("policies:write"),
    ),
    (
        "delete",
        "/v1/policies/{id}",
        "Delete a policy (?force=true with bindings)",
        Some("policies:write"),
    ),
    (
        "get",
        "/v1/policies/{id}/bindings",
        "List bindings",
        Some("policies:read"),
    ),
    (
        "post",
        "/v1/policies/{id}/bindings",
        "Bind an identity",
        Some("policies:write"),
    ),
    (
        "delete",
        "/v1/policies/{id}/bindings/{binding}",
        "Remove a binding",
        Some("policies:write"),
    ),
    (
        "get",
        "/v1/audit/logs",
        "Query the audit log",
        Some("audit:read"),
    ),
    (
        "get",
        "/v1/audit/secrets/{path}",
        "Audit entries of one secret, with its 30-day summary",
        Some("audit:read"),
    ),
    (
        "get",
        "/v1/audit/identities/{id}",
        "Audit entries of one identity, with its 30-day summary",
        Some("audit:read"),
    ),
    (
        "get",
        "/v1/audit/summary",
        "Counts by action, identity, path and hour (from, to, identity_id, secret_path)",
        Some("audit:read"),
    ),
    (
        "get",
        "/v1/audit/verify",
        "Verify the hash chain",
        Some("audit:read"),
    ),
    (
        "post",
        "/v1/audit/prune",
        "Prune entries older than a duration",
        Some("admin"),
    ),
    (
        "get",
        "/v1/rotation/policies",
        "List rotation policies (`data`)",
        Some("admin"),
    ),
    (
        "post",
        "/v1/rotation/policies",
        "Create a rotation policy (`rot_<name>`)",
        Some("admin"),
    ),
    (
        "get",
        "/v1/rotation/policies/{id}",
        "Get a rotation policy and its secrets",
        Some("admin"),
    ),
    (
        "patch",
        "/v1/rotation/policies/{id}",
        "Update a rotation policy",
        Some("admin"),
    ),
    (
        "delete",
        "/v1/rotation/policies/{id}",
        "Delete a rotation policy (detaches its secrets)",
        Some("admin"),
    ),
    (
        "post",
        "/v1/rotation/policies/{id}/enable",
        "Resume a paused policy",
        Some("admin"),
    ),
    (
        "post",
        "/v1/rotation/policies/{id}/disable",
        "Pause a policy",
        Some("admin"),
    ),
    (
        "post",
        "/v1/rotation/policies/{id}/secrets",
        "Attach a secret",
        Some("admin"),
    ),
    (
        "delete",
        "/v1/rotation/policies/{id}/secrets/{path}",
        "Detach a secret",
        Some("admin"),
    ),
    (
        "post",
        "/v1/rotation/policies/{id}/rotate",
        "Rotate now (all, or `secret_path`)",
        Some("admin"),
    ),
    (
        "get",
        "/v1/rotation/status",
        "Per-secret rotation state",
        Some("admin"),
    ),
    ("get", "/v1/auth/whoami", "The caller", Some("any")),
    (
        "post",
        "/v1/auth/introspect",
        "Inspect another token",
        Some("admin"),
    ),
    ("post", "/v1/auth/token", "Client-credentials grant", None),
    (
        "get",
        "/v1/auth/tokens",
        "List tokens (never their values)",
        Some("admin"),
    ),
    (
        "post",
        "/v1/auth/tokens",
        "Create a token (shown once)",
        Some("admin"),
    ),
    (
        "delete",
        "/v1/auth/tokens/{id}",
        "Revoke a token",
        Some("admin"),
    ),
    (
        "get",
        "/v1/identities",
        "List identities",
        Some("identity:read"),
    ),
    (
        "post",
        "/v1/identities",
        "Create a user, service account or group",
        Some("admin"),
    ),
    (
        "get",
        "/v1/identities/{id}",
        "Get an identity",
        Some("identity:read"),
    ),
    (
        "delete",
        "/v1/identities/{id}",
        "Delete an identity and revoke its tokens",
        Some("admin"),
    ),
    (
        "post",
        "/v1/identities/{id}/members",
        "Add a group member",
        Some("admin"),
    ),
    (
        "delete",
        "/v1/identities/{id}/members/{member}",
        "Remove a group member",
        Some("admin"),
    ),
    (
        "post",
        "/v1/identities/{id}/credentials",
        "Issue a client credential",
        Some("admin"),
    ),
    (
        "post",
        "/v1/sys/test/clock",
        "Move the test clock forward and run the rotation scheduler (dev --test-clock only)",
        Some("admin"),
    ),
    (
        "get",
        "/v1/secret-policies",
        "List secret (generation) policies",
        Some("admin"),
    ),
    (
        "post",
        "/v1/secret-policies",
        "Create a recipe of {name, generator, config} fields",
        Some("admin"),
    ),
    (
        "get",
        "/v1/secret-policies/{id}",
        "Get a secret policy",
        Some("admin"),
    ),
    (
        "patch",
        "/v1/secret-policies/{id}",
        "Update a secret policy",
        Some("admin"),
    ),
    (
        "delete",
        "/v1/secret-policies/{id}",
        "Delete a secret policy no rotation policy uses",
        Some("admin"),
    ),
    (
        "post",
        "/v1/secret-policies/{id}/generate",
        "Generate a data object with the recipe, storing nothing",
        Some("secrets:write"),
    ),
    ("get", "/v1/webhooks", "List webhooks", Some("admin")),
    (
        "post",
        "/v1/webhooks",
        "Create a webhook (events, filters, signing secret)",
        Some("admin"),
    ),
    (
        "get",
        "/v1/webhooks/{id}",
        "Get a webhook with delivery statistics",
        Some("admin"),
    ),
    (
        "patch",
        "/v1/webhooks/{id}",
        "Update a webhook; a new secret with previous_secret_ttl keeps the old one signing too",
        Some("admin"),
    ),
    (
        "delete",
        "/v1/webhooks/{id}",
        "Delete a webhook",
        Some("admin"),
    ),
    (
        "post",
        "/v1/webhooks/{id}/test",
        "Send a webhook.test event now",
        Some("admin"),
    ),
    (
        "get",
        "/v1/webhooks/{id}/deliveries",
        "The delivery log, newest first",
        Some("admin"),
    ),
    ("get", "/v1/plugins", "List plugins", Some("admin")),
    (
        "post",
        "/v1/plugins",
        "Install an external plugin (manifest + base64 wasm); pins its SHA-256",
        Some("admin"),
    ),
    (
        "post",
        "/v1/plugins/verify",
        "Check every plugin's bytes against its pinned SHA-256",
        Some("admin"),
    ),
    ("get", "/v1/plugins/{name}", "Get a plugin", Some("admin")),
    (
        "delete",
        "/v1/plugins/{name}",
        "Remove an external plugin",
        Some("admin"),
    ),
    (
        "post",
        "/v1/generators/{name}/generate",
        "Run a value generator without storing anything",
        Some("secrets:write"),
    ),
];

/// Prefixes of features not built yet: every method answers 501 `not_implemented`.
pub(crate) const NOT_BUILT: &[&str] = &[];

pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, scope) in OPERATIONS {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "2XX": { "description": "success" },
                "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        match scope {
            None => op["security"] = json!([]),
            Some(s) => op["x-scaivault-scope"] = json!(s),
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ScaiVault", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "x-not-implemented": NOT_BUILT,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "skt_… token" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message", "details", "request_id"],
                        "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" },
                            "details": { "type": "object" }, "request_id": { "type": "string" },
                        } } },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `.route(…)` in the router's source, as (method, path) pairs.
    fn served() -> (BTreeSet<(String, String)>, BTreeSet<String>) {
        let src = include_str!("routes/mod.rs");
        let body = &src[src.find("Router::new()").unwrap()..src.find(".fallback(").unwrap()];
        let mut routes = BTreeSet::new();
        let mut any = BTreeSet::new();
        for chunk in body.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).unwrap().replace("{*", "{");
            let mut depth = 0i32;
            let mut end = chunk.len();
            for (i, c) in chunk.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let call = &chunk[..end];
            for m in ["get", "post", "put", "patch", "delete"] {
                if call.contains(&format!("{m}(")) {
                    routes.insert((m.to_owned(), path.clone()));
                }
            }
            if call.contains("any(") {
                any.insert(path.split("/{").next().unwrap().to_owned());
            }
        }
        (routes, any)
    }

    #[test]
    fn the_document_lists_exactly_the_routes_served() {
        let (served, any) = served();
        let documented: BTreeSet<(String, String)> = super::OPERATIONS
            .iter()
            .map(|(m, p, _, _)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(served, documented, "router and OpenAPI document disagree");
        let not_built: BTreeSet<String> =
            super::NOT_BUILT.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(any, not_built);
        let doc = super::document();
        assert_eq!(
            doc["paths"]["/v1/secrets/{path}"]["put"]["parameters"][0]["name"],
            "path"
        );
    }
}
