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
            .any(|e| e["identity_id"] == "system:rotation-scheduler")
    );
    let metrics = dev
        .http
        .get(format!("{}/v1/metrics", dev.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("scaivault_secret_rotations_total{status=\"completed\"} 1"),
        "{metrics}"
    );
    // The new version (and its secret.updated event, which takes the same author) names the
    // scheduler as the audit log does.
    let (_, history) = dev.get(&format!("/v1/versions/{path}"), &dev.token);
    assert_eq!(
        history["versions"][1]["created_by"], "system:rotation-scheduler",
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
