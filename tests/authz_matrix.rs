//! The authorization matrix, generated from the route table: every route × {no token, a token
//! with each single scope, a token with every non-admin scope, admin} × {the policy allows
//! the path, the policy denies it}, against the real binary. A route added to the table is
//! in the matrix without anyone writing a line here; a route whose handler or engine asks
//! for more (or less) than its declared scope fails it.

mod common;

use common::*;
use reqwest::Method;
use scaivault_core::scope::Scope;
use scaivault_server::route_table::{Access, ROUTES, RouteSpec};
use serde_json::{Value, json};

/// Secret routes whose path is checked against the caller's policies.
const POLICY_CHECKED: &[&str] = &[
    "/v1/secrets/",
    "/v1/metadata/",
    "/v1/versions/",
    "/v1/restore/",
    "/v1/rotate/",
    "/v1/secret/data/",
    "/v1/secret/metadata/",
    "/v1/secret/delete/",
    "/v1/secret/undelete/",
    "/v1/secret/destroy/",
];

/// The stable error code of an answer: ScaiVault's `error.code`, or on the Vault-compatible
/// routes the code that starts Vault's `errors[0]`.
fn error_code(b: &Value) -> String {
    match b["error"]["code"].as_str() {
        Some(c) => c.to_owned(),
        None => b["errors"][0]
            .as_str()
            .and_then(|m| m.split_once(':'))
            .map_or(String::new(), |(c, _)| c.to_owned()),
    }
}

/// Whether an answer refuses a request for its missing token: `401`, or `403` in Vault's
/// shape on the Vault-compatible routes (Vault answers "permission denied").
fn no_token_refusal(status: u16, code: &str) -> bool {
    status == 401 || (status == 403 && code == "authentication_required")
}

struct Caller {
    name: String,
    token: Option<String>,
    scopes: Vec<Scope>,
}

impl Caller {
    fn holds(&self, s: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&s)
    }
}

/// One concrete request for a route: its URL (placeholders filled) and a body.
fn request(spec: &RouteSpec, tail: Option<&str>, allowed: bool) -> (String, Option<Value>) {
    let secret = if allowed {
        "matrix/allowed/s"
    } else {
        "matrix/denied/s"
    };
    let mut url = String::new();
    for seg in spec.path.split('/').skip(1) {
        url.push('/');
        url.push_str(match seg {
            "{*path}" => tail.unwrap_or(secret),
            s if s.starts_with('{') => "matrix-none",
            s => s,
        });
    }
    if spec.path == "/v1/sys/restore" {
        url.push_str("?path=matrix/allowed/s");
    }
    let body = match (spec.method, tail) {
        ("GET" | "DELETE", _) => None,
        (_, Some("batch")) => Some(json!({ "paths": [secret] })),
        (_, Some("batch/metadata")) => Some(json!({ "paths": [secret] })),
        ("PUT", _) if spec.path.starts_with("/v1/secrets/") => {
            Some(json!({ "data": { "k": "v" } }))
        }
        ("PUT" | "POST", _) if spec.path.starts_with("/v1/secret/data/") => {
            Some(json!({ "data": { "k": "v" } }))
        }
        ("PATCH", _) if spec.path.starts_with("/v1/metadata/") => {
            Some(json!({ "metadata": { "owner": "matrix" } }))
        }
        _ => Some(json!({})),
    };
    (url, body)
}

/// The scopes a route (with this tail) needs (none: any valid token will do).
fn needed(spec: &RouteSpec, tail: Option<&str>) -> Vec<Scope> {
    match spec.access {
        Access::Scope(s) => vec![s],
        Access::Both(a, b) => vec![a, b],
        Access::Tail(t) => t
            .iter()
            .filter(|(x, _, _)| Some(*x) == tail)
            .map(|(_, s, _)| *s)
            .collect(),
        _ => vec![],
    }
}

#[test]
fn every_route_enforces_its_scope_and_the_path_policy() {
    // Rate limits off: the matrix sends hundreds of failing requests from one address.
    let dev = Dev::start_with(&["--no-rate-limit"]);
    let (s, _) = dev.put(
        "/v1/secrets/matrix/allowed/s",
        &dev.token,
        json!({ "data": { "k": "v" } }),
    );
    assert_eq!(s, 201);
    dev.put(
        "/v1/secrets/matrix/denied/s",
        &dev.token,
        json!({ "data": { "k": "v" } }),
    );
    let all_perms = ["read", "write", "delete", "list", "rotate", "admin"];
    let mut callers = vec![Caller {
        name: "no token".into(),
        token: None,
        scopes: vec![],
    }];
    let non_admin: Vec<Scope> = Scope::ALL
        .iter()
        .copied()
        .filter(|s| *s != Scope::Admin)
        .collect();
    let mut sets: Vec<(String, Vec<Scope>)> = Scope::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), vec![*s]))
        .collect();
    sets.push(("every non-admin scope".into(), non_admin));
    for (i, (name, scopes)) in sets.into_iter().enumerate() {
        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let token = service_account(
            &dev,
            &format!("sa:matrix-{i}"),
            &format!("matrix-{i}"),
            "matrix/allowed/**",
            &all_perms,
            &names,
        );
        callers.push(Caller {
            name,
            token: Some(token),
            scopes,
        });
    }
    callers.push(Caller {
        name: "root (admin)".into(),
        token: Some(dev.token.clone()),
        scopes: vec![Scope::Admin],
    });

    let mut failures = Vec::new();
    let mut checked = 0;
    // Sealing is checked last: it ends the run.
    let (seal, rest): (Vec<&RouteSpec>, Vec<&RouteSpec>) = ROUTES
        .iter()
        .filter(|r| !r.test_only)
        .partition(|r| r.path == "/v1/sys/seal");
    for spec in rest.into_iter().chain(seal) {
        let tails: Vec<Option<&str>> = match spec.access {
            Access::Tail(t) => t.iter().map(|(x, _, _)| Some(*x)).collect(),
            _ => vec![None],
        };
        let policy_checked = !matches!(spec.access, Access::Tail(_))
            && spec
                .tail_prefix()
                .is_some_and(|p| POLICY_CHECKED.contains(&p));
        for tail in tails {
            for allowed in [true, false] {
                if !allowed && !policy_checked {
                    continue;
                }
                let (url, body) = request(spec, tail, allowed);
                for c in &callers {
                    if spec.path == "/v1/sys/seal" && c.holds(Scope::Admin) {
                        continue; // would seal the vault for the callers after it
                    }
                    let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
                    // Revoking oneself would end the caller for the routes after it: the
                    // route is called with a child of the caller's token (same scopes).
                    let token = match (&c.token, spec.path == "/v1/auth/token/revoke-self") {
                        (Some(t), true) => {
                            let (s, made) = dev.req(
                                Method::POST,
                                "/v1/auth/token/create",
                                Some(t),
                                Some(json!({})),
                            );
                            assert_eq!(s, 200, "{made}");
                            made["auth"]["client_token"].as_str().map(str::to_owned)
                        }
                        (t, _) => t.clone(),
                    };
                    let (status, b) = dev.req(method, &url, token.as_deref(), body.clone());
                    let code = error_code(&b);
                    checked += 1;
                    let want: Result<(), String> = match (spec.access, &c.token) {
                        (Access::Public | Access::Metrics, _) => {
                            if no_token_refusal(status, &code) || code == "insufficient_scope" {
                                Err("a public route asked for a token".into())
                            } else {
                                Ok(())
                            }
                        }
                        (_, None) => no_token_refusal(status, &code)
                            .then_some(())
                            .ok_or_else(|| "401 without a token".into()),
                        _ => match needed(spec, tail).into_iter().find(|s| !c.holds(*s)) {
                            Some(s) => (status == 403 && code == "insufficient_scope")
                                .then_some(())
                                .ok_or_else(|| format!("403 insufficient_scope (needs {s})")),
                            _ if no_token_refusal(status, &code)
                                || code == "insufficient_scope" =>
                            {
                                Err("the scope it holds should suffice".into())
                            }
                            _ if policy_checked && !allowed && !c.holds(Scope::Admin) => {
                                (status == 403 && code == "access_denied")
                                    .then_some(())
                                    .ok_or_else(|| {
                                        "403 access_denied (the policy denies the path)".into()
                                    })
                            }
                            _ if policy_checked && allowed && code == "access_denied" => {
                                Err("the policy allows the path".into())
                            }
                            _ => Ok(()),
                        },
                    };
                    if let Err(expected) = want {
                        failures.push(format!(
                            "{} {url} as {}: got {status} {code}, expected {expected}",
                            spec.method, c.name
                        ));
                    }
                    // A write's `Idempotency-Key` changes nothing about who may write: the
                    // first request and its replay answer as the plain write did.
                    if spec.method == "PUT" && spec.path == "/v1/secrets/{*path}" {
                        let key: String = format!("matrix-{}-{allowed}", c.name)
                            .chars()
                            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                            .collect();
                        for attempt in ["first", "replay"] {
                            let mut r = http()
                                .put(format!("{}{url}", dev.url))
                                .header("Idempotency-Key", &key);
                            if let Some(t) = &c.token {
                                r = r.bearer_auth(t);
                            }
                            if let Some(b) = &body {
                                r = r.json(b);
                            }
                            let got = r.send().unwrap().status().as_u16();
                            checked += 1;
                            if got != status {
                                failures.push(format!(
                                    "PUT {url} as {} with Idempotency-Key ({attempt}): got {got}, without it {status}",
                                    c.name
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} combinations");
    assert!(
        failures.is_empty(),
        "{} of {checked} combinations wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every request field that acts on another resource is checked with that resource's own
/// permission (docs/SECURITY.md lists them): a write's `options.rotation_policy_id` needs what
/// attaching through `/v1/rotation/policies/{id}/secrets` needs.
#[test]
fn fields_acting_on_other_resources_need_that_resources_permission() {
    let dev = Dev::start();
    dev.post(
        "/v1/rotation/policies",
        &dev.token,
        json!({ "name": "p", "interval": "7d", "auto_generate": true }),
    );
    let writer = service_account(
        &dev,
        "sa:writer",
        "writer",
        "w/**",
        &["read", "write", "admin"],
        &["secrets:read", "secrets:write", "secrets:rotate"],
    );
    let (attach, _) = dev.post(
        "/v1/rotation/policies/rot_p/secrets",
        &writer,
        json!({ "secret_path": "w/x" }),
    );
    let (write, b) = dev.put(
        "/v1/secrets/w/x",
        &writer,
        json!({ "data": { "k": "v" }, "options": { "rotation_policy_id": "rot_p" } }),
    );
    assert_eq!(attach, 403);
    assert_eq!(write, attach, "{b}");

    // A subscription's `paths` name secrets: its events are those its owner may read.
    let watcher = service_account(
        &dev,
        "sa:watcher",
        "watcher",
        "w/**",
        &["read"],
        &["subscriptions:read", "subscriptions:write"],
    );
    let (s, sub) = dev.post(
        "/v1/subscriptions",
        &watcher,
        json!({"name": "all", "paths": ["**"], "events": ["*"], "delivery": {"type": "polling"}}),
    );
    assert_eq!(s, 201, "{sub}");
    for path in ["w/y", "elsewhere/y"] {
        let (s, _) = dev.put(
            &format!("/v1/secrets/{path}"),
            &dev.token,
            json!({"data": {"k": "v"}}),
        );
        assert_eq!(s, 201);
    }
    let (_, polled) = dev.get(
        &format!(
            "/v1/subscriptions/{}/poll?timeout=0",
            sub["id"].as_str().unwrap()
        ),
        &watcher,
    );
    let paths: Vec<&str> = polled["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, ["w/y"], "{polled}");
}
