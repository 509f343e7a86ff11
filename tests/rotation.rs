//! Rotation through the real binary: the documented CLI commands and the API.

mod common;

use common::*;
use serde_json::json;

#[test]
fn rotation_policies_from_the_cli() {
    let dev = Dev::start();
    let path = "environments/production/billing/database";
    dev.put(
        &format!("/v1/secrets/{path}"),
        &dev.token,
        json!({"data": {"user": "billing", "password": "pw-1"}}),
    );

    let out = dev.cli(&[
        "rotation",
        "create",
        "--name",
        "db-passwords-weekly",
        "--interval",
        "7d",
        "--grace-period",
        "24h",
        "--auto-generate",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "rot_db-passwords-weekly");
    let out = dev.cli(&["rotation", "assign", "rot_db-passwords-weekly", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, p) = dev.get("/v1/rotation/policies/rot_db-passwords-weekly", &dev.token);
    assert_eq!(p["secrets"], json!([path]));
    assert_eq!(
        (
            p["interval_seconds"].as_u64(),
            p["grace_period_seconds"].as_u64()
        ),
        (Some(7 * 86_400), Some(86_400))
    );
    let (_, list) = dev.get("/v1/rotation/policies", &dev.token);
    assert_eq!(list["data"][0]["secrets_count"], 1);

    // Rotate now: a new generated password, the old one readable during the grace period.
    let out = dev.cli(&["rotation", "rotate", "rot_db-passwords-weekly", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, cur) = dev.get(&format!("/v1/secrets/{path}"), &dev.token);
    assert_eq!(cur["version"], 2);
    assert_eq!(cur["data"]["user"], "billing");
    assert_ne!(cur["data"]["password"], "pw-1");
    let (s, old) = dev.get(&format!("/v1/secrets/{path}?version=1"), &dev.token);
    assert_eq!((s, old["data"]["password"].as_str()), (200, Some("pw-1")));
    let out = dev.cli(&["rotation", "status", path, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["secrets"][0]["previous_version"], 1);
    assert!(st["secrets"][0]["grace_until"].is_string());
    let (_, logs) = dev.get("/v1/audit/logs?action=rotate", &dev.token);
    assert!(
        logs["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["identity_id"] == "user:root")
    );
    let metrics = dev.metrics();
    assert!(
        metrics.contains("scaivault_secret_rotations_total{status=\"completed\"} 1"),
        "{metrics}"
    );
    // A rotate-now is its caller's: the new version (and its events, which take the same
    // author) name who asked, as the audit log does; the scheduler's name the scheduler.
    let (_, history) = dev.get(&format!("/v1/versions/{path}"), &dev.token);
    assert_eq!(
        history["versions"][1]["created_by"], "user:root",
        "{history}"
    );

    // A backend no plugin provides is refused.
    let out = dev.cli(&[
        "rotation",
        "create",
        "--name",
        "pg",
        "--interval",
        "30d",
        "--backend",
        "ftp",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        stderr(&out).contains("validation_error"),
        "{}",
        stderr(&out)
    );
    let (s, b) = dev.post(
        "/v1/rotation/policies",
        &dev.token,
        json!({"name": "bad", "interval": "often"}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_duration"))
    );
    let (s, b) = dev.get("/v1/rotation/policies/rot_missing", &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("rotation_policy_not_found"))
    );

    // Detached with the path as one URL-encoded segment, as the reference writes it.
    let encoded = path.replace('/', "%2F");
    let (s, b) = dev.req(
        reqwest::Method::DELETE,
        &format!("/v1/rotation/policies/rot_db-passwords-weekly/secrets/{encoded}"),
        Some(&dev.token),
        None,
    );
    assert_eq!(s, 204, "{b}");
    let (_, p) = dev.get("/v1/rotation/policies/rot_db-passwords-weekly", &dev.token);
    assert_eq!(p["secrets_count"], 0, "{p}");
    assert!(
        dev.cli(&["rotation", "delete", "rot_db-passwords-weekly"])
            .status
            .success()
    );
}

#[test]
fn secret_policies_make_the_rotated_values() {
    let dev = Dev::start();
    let (s, b) = dev.post(
        "/v1/secret-policies",
        &dev.token,
        json!({"name": "db-password", "policy_type": "password", "fields": [
            {"name": "password", "generator": "random",
             "config": {"length": 40, "charset": "safe", "require_digit": true}},
            {"name": "client_id", "generator": "template", "config": {"template": "cli_{{hex:12}}"}}
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["id"], "sp_db_password");
    let (s, g) = dev.post(
        "/v1/secret-policies/sp_db_password/generate",
        &dev.token,
        json!({}),
    );
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["data"]["password"].as_str().unwrap().len(), 40);
    assert!(g["data"]["client_id"].as_str().unwrap().starts_with("cli_"));

    // A recipe that cannot run is refused when it is written, not when a rotation needs it.
    let (s, b) = dev.post(
        "/v1/secret-policies",
        &dev.token,
        json!({"name": "broken", "fields": [{"name": "p", "generator": "random", "config": {"charset": "emoji"}}]}),
    );
    assert_eq!(s, 422, "{b}");
    // Key pairs and hashes in a recipe: their outputs have fixed names, so two that would
    // overwrite each other are refused rather than one silently lost.
    let (s, b) = dev.post(
        "/v1/secret-policies",
        &dev.token,
        json!({"name": "signing", "fields": [
            {"name": "key", "generator": "ec_keypair", "config": {"curve": "P-384"}},
            {"name": "admin", "generator": "bcrypt_hash", "config": {"length": 20}}]}),
    );
    assert_eq!(s, 201, "{b}");
    let (_, g) = dev.post(
        "/v1/secret-policies/sp_signing/generate",
        &dev.token,
        json!({}),
    );
    let keys: Vec<&String> = g["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["hash", "password", "private_key", "public_key"],
        "{keys:?}"
    );
    for fields in [
        json!([{"name": "a", "generator": "ec_keypair"}, {"name": "b", "generator": "ec_keypair"}]),
        json!([{"name": "password", "generator": "random"}, {"name": "h", "generator": "bcrypt_hash"}]),
    ] {
        let (s, b) = dev.post(
            "/v1/secret-policies",
            &dev.token,
            json!({"name": "clash", "fields": fields}),
        );
        assert_eq!(s, 422, "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("an earlier field makes too"),
            "{b}"
        );
    }

    let path = "environments/production/billing/database";
    dev.put(
        &format!("/v1/secrets/{path}"),
        &dev.token,
        json!({"data": {"username": "billing", "password": "pw-1"}}),
    );
    let out = dev.cli(&[
        "rotation",
        "create",
        "--name",
        "recipe",
        "--interval",
        "30d",
        "--auto-generate",
        "--secret-policy",
        "sp_db_password",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    dev.cli(&["rotation", "assign", "rot_recipe", path]);
    let out = dev.cli(&["rotation", "rotate", "rot_recipe", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, cur) = dev.get(&format!("/v1/secrets/{path}"), &dev.token);
    let pw = cur["data"]["password"].as_str().unwrap();
    assert_eq!(pw.len(), 40);
    assert!(pw.chars().any(|c| c.is_ascii_digit()));
    assert!(
        cur["data"]["client_id"]
            .as_str()
            .unwrap()
            .starts_with("cli_")
    );
    assert_eq!(
        cur["data"]["username"], "billing",
        "fields outside the recipe stay"
    );
    // In use: cannot be deleted.
    let (s, b) = dev.req(
        reqwest::Method::DELETE,
        "/v1/secret-policies/sp_db_password",
        Some(&dev.token),
        None,
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("policy_in_use"))
    );
}

/// Rotate-now for one secret needs `secrets:rotate` and `rotate` on the path (not admin), and
/// goes by the secret's own rotation policy; the expiring query lists what runs out soonest.
#[test]
fn a_service_rotates_its_own_secret_and_asks_what_expires() {
    let dev = Dev::start_with(&["--test-clock"]);
    dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"user": "app", "password": "pw-1"}}),
    );
    dev.put(
        "/v1/secrets/app/plain",
        &dev.token,
        json!({"data": {"k": "v"}}),
    );
    let out = dev.cli(&[
        "rotation",
        "create",
        "weekly",
        "--interval",
        "7d",
        "--auto-generate",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dev.cli(&["rotation", "assign", "rot_weekly", "app/db"])
            .status
            .success()
    );
    let rotator = service_account(
        &dev,
        "sa:rotator",
        "rotator",
        "app/**",
        &["rotate", "list"],
        &["secrets:rotate", "secrets:list"],
    );
    let reader = service_account(
        &dev,
        "sa:reader",
        "reader",
        "app/**",
        &["read"],
        &["secrets:read", "secrets:rotate"],
    );

    let out = dev.cli_as(&rotator, &["secrets", "rotate", "app/db"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("app/db: version 1 → 2"),
        "{}",
        stdout(&out)
    );
    let (_, cur) = dev.get("/v1/secrets/app/db", &dev.token);
    assert_eq!(cur["version"], 2);
    assert_ne!(cur["data"]["password"], "pw-1");
    let (_, history) = dev.get("/v1/versions/app/db", &dev.token);
    assert_eq!(
        history["versions"][1]["created_by"], "sa:rotator",
        "{history}"
    );
    // No `rotate` on the path: refused, nothing rotated.
    let out = dev.cli_as(&reader, &["secrets", "rotate", "app/db", "--json"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("access_denied"), "{}", stderr(&out));
    // Not attached to a rotation policy: says how to attach one.
    let (s, b) = dev.post("/v1/rotate/app/plain", &rotator, json!({}));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rotation assign"),
        "{b}"
    );
    let (s, b) = dev.post("/v1/rotate/app/none", &rotator, json!({}));
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("secret_not_found")),
        "{b}"
    );
    let (_, cur) = dev.get("/v1/secrets/app/db", &dev.token);
    assert_eq!(cur["version"], 2);

    // Expiring: within the window, soonest first, expired ones marked; never values.
    for (path, expires) in [
        ("app/soon", "5d"),
        ("app/later", "40d"),
        ("app/sooner", "2d"),
        ("other/soonest", "1d"),
    ] {
        let (s, b) = dev.put(
            &format!("/v1/secrets/{path}"),
            &dev.token,
            json!({"data": {"k": "secret-value"}, "options": {"expires_in": expires}}),
        );
        assert!(s == 201, "{b}");
    }
    let out = dev.cli_as(
        &rotator,
        &[
            "secrets", "expiring", "--days", "30", "--prefix", "app/", "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["app/sooner", "app/soon"], "{v}");
    assert_eq!(v["secrets"][0]["days_remaining"], 2, "{v}");
    assert!(!stdout(&out).contains("secret-value"));
    // Without a prefix, only what the caller may list: never other/soonest.
    let (_, v) = dev.get("/v1/expiring?days=30", &rotator);
    assert_eq!(v["secrets"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(!v.to_string().contains("other/"), "{v}");
    let (_, all) = dev.get("/v1/expiring?days=30", &dev.token);
    assert_eq!(all["secrets"][0]["path"], "other/soonest", "{all}");
    // A caller without secrets:list does not learn what expires.
    let (s, v) = dev.get("/v1/expiring?days=30", &reader);
    assert_eq!(s, 403, "secrets:list is needed: {v}");
    let (s, b) = dev.get("/v1/expiring?days=0", &rotator);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // Three days on (the service tokens have expired by then; the root token has not).
    let (s, _) = dev.post("/v1/sys/test/clock", &dev.token, json!({"advance": "3d"}));
    assert_eq!(s, 200);
    let (_, v) = dev.get("/v1/expiring?days=1&prefix=app/", &dev.token);
    assert_eq!(v["secrets"][0]["path"], "app/sooner", "{v}");
    assert_eq!(v["secrets"][0]["expired"], true, "{v}");
    assert_eq!(v["secrets"].as_array().unwrap().len(), 1, "{v}");
}
