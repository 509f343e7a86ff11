//! The audit log through the real binary: who read what, when; denials; verification.

mod common;

use common::*;

const BILLING: &str = "environments/production/billing";

/// Writes `names` under BILLING (each `{"k": value}`) and returns a token of `identity`, a
/// service account that may read them (policy `<name>-reader`, scope secrets:read).
fn billing_reader(dev: &Dev, names: &[&str], value: &str, identity: &str) -> String {
    for name in names {
        let (s, _) = dev.put(
            &format!("/v1/secrets/{BILLING}/{name}"),
            &dev.token,
            serde_json::json!({"data": {"k": value}}),
        );
        assert_eq!(s, 201);
    }
    let policy = format!("{}-reader", identity.trim_start_matches("sa:"));
    service_account(
        dev,
        identity,
        &policy,
        &format!("{BILLING}/**"),
        &["read"],
        &["secrets:read"],
    )
}

#[test]
fn a_service_accounts_reads_show_in_the_audit_log() {
    let dev = Dev::start();
    let sa = billing_reader(
        &dev,
        &["stripe", "database", "sendgrid"],
        "v",
        "sa:billing-prod",
    );
    for name in ["stripe", "database", "sendgrid"] {
        let (s, _) = dev.get(&format!("/v1/secrets/{BILLING}/{name}"), &sa);
        assert_eq!(s, 200);
    }
    let (s, _) = dev.get(
        "/v1/secrets/environments/production/reporting/database",
        &sa,
    );
    assert_eq!(s, 403);

    let out = dev.cli(&[
        "audit",
        "query",
        "--identity-id",
        "sa:billing-prod",
        "--start",
        "1 hour ago",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let logs = v["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 4, "{v:#}");
    let ok: Vec<&str> = logs
        .iter()
        .filter(|e| e["success"] == true)
        .map(|e| e["secret_path"].as_str().unwrap())
        .collect();
    assert_eq!(
        ok,
        vec![
            format!("{BILLING}/sendgrid"),
            format!("{BILLING}/database"),
            format!("{BILLING}/stripe")
        ],
        "newest first"
    );
    for e in logs {
        assert_eq!(e["action"], "read");
        assert_eq!(e["identity_type"], "service_account");
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(e["request_id"].as_str().unwrap().starts_with("req_"));
    }
    let denied = &logs[0];
    assert_eq!(denied["success"], false);
    assert_eq!(
        denied["secret_path"],
        "environments/production/reporting/database"
    );
    assert_eq!(denied["extra_data"]["error_code"], "access_denied");
    assert_eq!(logs[1]["extra_data"]["version"], 1);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"k\": \"v\""),
        "a value reached the audit log"
    );

    // Nothing older than the window, and nothing for a time in the future.
    let out = dev.cli(&[
        "audit",
        "query",
        "--identity-id",
        "sa:billing-prod",
        "--start",
        "2099-01-01T00:00:00Z",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["logs"].as_array().unwrap().len(), 0);

    // Nothing is old enough to prune; the route and command answer all the same.
    let out = dev.cli(&["audit", "prune", "--older-than", "1d", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["removed"], 0);

    let out = dev.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("ok:"));
    let out = dev.cli(&["audit", "query", "--start", "yesterday"]);
    assert!(stdout(&out).contains("sa:billing-prod"));

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("audit.csv");
    let out = dev.cli(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--identity-id",
        "sa:billing-prod",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.starts_with("id,timestamp,action"));

    // The service account may not read the audit log itself.
    let (s, b) = dev.get("/v1/audit/logs", &sa);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // Policy dry-runs are not audited.
    dev.post("/v1/policies/test", &dev.token, serde_json::json!({"identity_id": "sa:billing-prod", "path": format!("{BILLING}/stripe"), "permission": "read"}));
    let (_, b) = dev.get("/v1/audit/logs?action=request", &dev.token);
    assert_eq!(b["logs"].as_array().unwrap().len(), 0);
}

#[test]
fn local_mode_is_audited_too() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.db");
    let v = v.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", "pw for local audit")];
    assert!(
        cli_env(
            &[
                "init",
                "--vault",
                v,
                "--kdf-memory-mib",
                "19",
                "--kdf-passes",
                "2"
            ],
            &env,
            None
        )
        .status
        .success()
    );
    assert!(
        cli_env(
            &["secrets", "write", "a/b", "k=v", "--vault", v],
            &env,
            None
        )
        .status
        .success()
    );
    assert_eq!(
        cli_env(&["secrets", "read", "a/missing", "--vault", v], &env, None)
            .status
            .code(),
        Some(4)
    );
    let out = cli_env(&["audit", "query", "--json", "--vault", v], &env, None);
    let logs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(
        (logs[0]["action"].as_str(), logs[0]["success"].as_bool()),
        (Some("read"), Some(false))
    );
    assert_eq!(
        (logs[1]["action"].as_str(), logs[1]["secret_path"].as_str()),
        (Some("write"), Some("a/b"))
    );
    assert_eq!(logs[1]["identity_id"], "user:root");
}

/// A batch read is recorded path by path, like the reads it stands for: what was read (with
/// its version) and what was refused, each under the reader's identity and one request id.
#[test]
fn a_batch_read_is_audited_per_path() {
    let dev = Dev::start();
    let sa = billing_reader(
        &dev,
        &["stripe", "database"],
        "batch-value",
        "sa:billing-batch",
    );
    let paths = [
        format!("{BILLING}/stripe"),
        format!("{BILLING}/database"),
        "environments/production/reporting/database".to_owned(),
        format!("{BILLING}/stripe"),
    ];
    let (s, out) = dev.post(
        "/v1/secrets/batch",
        &sa,
        serde_json::json!({ "paths": paths }),
    );
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["secrets"].as_object().unwrap().len(), 2);

    let (s, v) = dev.get("/v1/audit/logs?identity_id=sa:billing-batch", &dev.token);
    assert_eq!(s, 200, "{v}");
    let logs = v["logs"].as_array().unwrap();
    let mut seen: Vec<(&str, bool, &serde_json::Value)> = logs
        .iter()
        .map(|e| {
            (
                e["secret_path"].as_str().unwrap(),
                e["success"].as_bool().unwrap(),
                &e["extra_data"],
            )
        })
        .collect();
    seen.sort_by_key(|e| e.0);
    assert_eq!(seen.len(), 3, "one entry per distinct path: {v:#}");
    assert_eq!(seen[0].0, format!("{BILLING}/database"));
    assert_eq!(seen[1].0, format!("{BILLING}/stripe"));
    assert!(seen[0].1 && seen[1].1);
    assert_eq!(seen[1].2["version"], 1);
    assert_eq!(seen[1].2["batch"], true);
    assert_eq!(
        (seen[2].0, seen[2].1),
        ("environments/production/reporting/database", false)
    );
    assert_eq!(seen[2].2["error_code"], "access_denied");
    let rid = logs[0]["request_id"].as_str().unwrap();
    assert!(
        logs.iter()
            .all(|e| e["request_id"] == rid && e["action"] == "read")
    );
    assert!(
        !v.to_string().contains("batch-value"),
        "a value reached the audit log"
    );
}

#[test]
fn summaries_answer_what_an_identity_read_and_when() {
    let dev = Dev::start();
    let sa = billing_reader(&dev, &["stripe", "database"], "v", "sa:billing-prod");
    for name in ["stripe", "stripe", "stripe", "database"] {
        let (s, _) = dev.get(&format!("/v1/secrets/{BILLING}/{name}"), &sa);
        assert_eq!(s, 200);
    }
    let (s, _) = dev.get("/v1/secrets/environments/production/reporting/db", &sa);
    assert_eq!(s, 403);

    let out = dev.cli(&[
        "audit",
        "summary",
        "--identity-id",
        "sa:billing-prod",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_events"], 5, "{v:#}");
    assert_eq!(
        (v["failures"].as_u64(), v["successful_events"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(v["complete"], true);
    assert_eq!(v["by_identity"], serde_json::json!({"sa:billing-prod": 5}));
    assert_eq!(v["by_action"], serde_json::json!({"read": 5}));
    assert_eq!(v["by_path"][format!("{BILLING}/stripe")], 3);
    assert_eq!(v["by_path"][format!("{BILLING}/database")], 1);
    assert_eq!(v["by_path"]["environments/production/reporting/db"], 1);
    // One hour bucket (or two, across an hour boundary), holding every event.
    let hours = v["by_hour"].as_object().unwrap();
    assert!(!hours.is_empty() && hours.len() <= 2, "{hours:?}");
    assert_eq!(hours.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 5);
    assert!(hours.keys().all(|h| h.contains(":00:00")), "{hours:?}");
    assert!(v["first_at"].as_str() <= v["last_at"].as_str());

    // The table form names the paths, largest first.
    let out = dev.cli(&["audit", "summary", "--identity-id", "sa:billing-prod"]);
    let text = stdout(&out);
    assert!(text.starts_with("5 events, 1 failed"), "{text}");
    let (stripe, database) = (
        text.find(&format!("{BILLING}/stripe")).unwrap(),
        text.find(&format!("{BILLING}/database")).unwrap(),
    );
    assert!(stripe < database, "{text}");

    // The trail of one secret and of one identity come with their 30-day summary.
    let (s, trail) = dev.get(&format!("/v1/audit/secrets/{BILLING}/stripe"), &dev.token);
    assert_eq!(s, 200);
    assert_eq!(trail["logs"].as_array().unwrap().len(), 4, "{trail:#}");
    assert_eq!(
        trail["summary"]["total_events"], 4,
        "the write and three reads"
    );
    assert_eq!(trail["summary"]["by_identity"]["sa:billing-prod"], 3);
    assert_eq!(trail["summary"]["secret_path"], format!("{BILLING}/stripe"));
    let (s, trail) = dev.get("/v1/audit/identities/sa:billing-prod", &dev.token);
    assert_eq!(s, 200);
    assert_eq!(trail["summary"]["total_events"], 5, "{trail:#}");

    // The whole log's summary counts everyone; nothing in the future.
    let (_, all) = dev.get("/v1/audit/summary", &dev.token);
    assert!(all["total_events"].as_u64().unwrap() > 5, "{all:#}");
    assert!(all["by_identity"]["user:root"].as_u64().unwrap() > 0);
    let (_, none) = dev.get("/v1/audit/summary?from=2099-01-01T00:00:00Z", &dev.token);
    assert_eq!(none["total_events"], 0);
    assert!(none["first_at"].is_null());
    let (s, bad) = dev.get("/v1/audit/summary?colour=red", &dev.token);
    assert_eq!(s, 400, "{bad:#}");
    // A summary needs audit:read like the log itself.
    let (s, _) = dev.get("/v1/audit/summary", &sa);
    assert_eq!(s, 403);
}

/// Issue #17, item 7 and #18: local mode records what the server records, under the same
/// action names (it goes through the same router in the CLI's process).
#[test]
fn local_mode_audits_with_the_servers_action_names() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = init(dir.path());
    let v = vault.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", PASS), ("SCAIVAULT_VAULT", v)];
    for args in [
        vec!["secrets", "write", "app/db", "password=pw"],
        vec!["secrets", "read", "app/db", "--field", "password"],
        vec!["identity", "create", "sa:svc"],
        vec!["policies", "create", "svc", "--rule", "app/**:read"],
        vec!["policies", "bind", "svc", "--identity-id", "sa:svc"],
        vec![
            "tokens",
            "create",
            "--identity",
            "sa:svc",
            "--scope",
            "secrets:read",
        ],
        vec!["export", "dotenv", "--prefix", "app/"],
        vec!["audit", "verify"],
    ] {
        let out = cli_env(&args, &env, None);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = cli_env(&["audit", "query", "--json", "--limit", "100"], &env, None);
    let logs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "write",
        "read",
        "identity_create",
        "policy_create",
        "policy_bind",
        "token_create",
        "audit_query",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    assert!(
        !actions
            .iter()
            .any(|a| a.starts_with("policies_") || a.starts_with("tokens_")),
        "{actions:?}"
    );
    // One entry per read: the `secrets read`, then the export's batch read of the same path.
    let reads: Vec<&serde_json::Value> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "read")
        .collect();
    assert_eq!(reads.len(), 2, "one entry per read: {reads:?}");
    assert!(reads.iter().all(|r| r["secret_path"] == "app/db"));
    assert_eq!(reads[0]["extra_data"]["batch"], true, "{:?}", reads[0]);
}
