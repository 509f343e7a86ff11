//! `.env` import, export and `scaivault run` against the real binary.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use common::*;
use scaivault_cli::dotenv;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn vars(text: &str) -> Vec<(String, String)> {
    dotenv::parse(text)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

#[test]
fn golden_files_import_and_export_back_identical() {
    let dev = Dev::start();
    for name in ["basic.env", "multiline.env", "crlf-duplicates.env"] {
        let prefix = format!("golden/{}", name.trim_end_matches(".env").replace('-', "_"));
        let file = fixture(&format!("dotenv/{name}"));
        let out = dev.cli(&["import", "dotenv", &file, "--prefix", &prefix, "--json"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["new_version"], 0);
        assert!(plan["create"].as_u64().unwrap() > 0);

        let out = dev.cli(&["export", "dotenv", "--prefix", &prefix]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let original = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            vars(&stdout(&out)),
            vars(&original),
            "{name}: export differs from the original"
        );

        // Re-running an unchanged import writes nothing.
        let out = dev.cli(&["import", "dotenv", &file, "--prefix", &prefix, "--json"]);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (
                plan["create"].as_u64(),
                plan["new_version"].as_u64(),
                plan["written"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{plan}"
        );
    }
    // Duplicates were reported.
    let out = dev.cli(&[
        "import",
        "dotenv",
        &fixture("dotenv/crlf-duplicates.env"),
        "--prefix",
        "dup",
        "--dry-run",
    ]);
    assert!(
        stderr(&out).contains("A is set on line 1 and again on line 6"),
        "{}",
        stderr(&out)
    );
    let (s, _) = dev.get("/v1/secrets/dup/a", &dev.token);
    assert_eq!(s, 404, "a dry run wrote something");
}

#[test]
fn a_changed_variable_becomes_a_new_version_and_bad_files_write_nothing() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".env");
    std::fs::write(&f, "API_KEY=one\nOTHER=same\n").unwrap();
    assert!(
        dev.cli(&["import", "dotenv", f.to_str().unwrap(), "--prefix", "svc"])
            .status
            .success()
    );
    std::fs::write(&f, "API_KEY=two\nOTHER=same\n").unwrap();
    let out = dev.cli(&[
        "import",
        "dotenv",
        f.to_str().unwrap(),
        "--prefix",
        "svc",
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (plan["new_version"].as_u64(), plan["unchanged"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, b) = dev.get("/v1/secrets/svc/api_key", &dev.token);
    assert_eq!(
        (b["version"].as_u64(), b["data"]["value"].as_str()),
        (Some(2), Some("two"))
    );

    std::fs::write(&f, "GOOD=1\nBROKEN=\"never closed\nMORE=2\n").unwrap();
    let out = dev.cli(&["import", "dotenv", f.to_str().unwrap(), "--prefix", "bad"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let (s, _) = dev.get("/v1/secrets/bad/good", &dev.token);
    assert_eq!(s, 404, "a file with a syntax error wrote something");

    // A name no shell can set would import but never come back out: refused, nothing written.
    std::fs::write(&f, "GOOD=1\nspring.datasource.url=jdbc:pg://db\n").unwrap();
    let out = dev.cli(&["import", "dotenv", f.to_str().unwrap(), "--prefix", "dots"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spring.datasource.url (line 2)") && !stderr(&out).contains("jdbc"),
        "{}",
        stderr(&out)
    );
    let (s, _) = dev.get("/v1/secrets/dots/good", &dev.token);
    assert_eq!(s, 404, "a refused file wrote something");
}

#[test]
fn a_fleet_imports_with_a_mapping() {
    let dev = Dev::start();
    let import = || {
        dev.cli(&[
            "import",
            "dotenv",
            "--fleet",
            &fixture("fleet"),
            "--mapping",
            &fixture("fleet/mapping.json"),
            "--json",
        ])
    };
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["create"], 4, "{plan:#}");
    assert_eq!(
        plan["skipped"].as_array().unwrap().len(),
        3,
        "LOG_LEVEL stays in the environment"
    );
    let (_, sf) = dev.get(
        "/v1/secrets/environments/production/billing/salesforce",
        &dev.token,
    );
    assert_eq!(sf["data"]["client_id"], "sf-client-123");
    assert_eq!(sf["data"]["client_secret"], "sf-secret-456");
    let (_, st) = dev.get(
        "/v1/secrets/environments/staging/billing/stripe_secret_key",
        &dev.token,
    );
    assert_eq!(st["data"]["value"], "sk_test_fleet");
    assert_eq!(
        st["metadata"]["tags"],
        serde_json::json!(["billing", "staging"]),
        "a fleet's secrets are tagged with their service and environment"
    );
    // The same fleet again: nothing changes.
    let again = import();
    assert!(again.status.success(), "{}", stderr(&again));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["written"], 0, "{again:#}");
    let (s, _) = dev.get(
        "/v1/secrets/environments/production/billing/log_level",
        &dev.token,
    );
    assert_eq!(s, 404);
    let out = dev.cli(&[
        "export",
        "dotenv",
        "--prefix",
        "environments/production/billing/",
    ]);
    assert_eq!(
        vars(&stdout(&out)),
        vec![
            ("STRIPE_SECRET_KEY".into(), "sk_live_fleet".into()),
            ("SALESFORCE_CLIENT_ID".into(), "sf-client-123".into()),
            ("SALESFORCE_CLIENT_SECRET".into(), "sf-secret-456".into()),
        ]
    );
}

#[test]
fn local_mode_import_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.db");
    let v = v.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", "local import pw")];
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
    let out = cli_env(
        &[
            "import",
            "dotenv",
            &fixture("dotenv/basic.env"),
            "--prefix",
            "local/billing",
            "--vault",
            v,
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_env(
        &[
            "export",
            "dotenv",
            "--prefix",
            "local/billing",
            "--vault",
            v,
        ],
        &env,
        None,
    );
    assert_eq!(
        vars(&stdout(&out)),
        vars(&std::fs::read_to_string(fixture("dotenv/basic.env")).unwrap())
    );
}

/// Issue #18: an import is one request and one transaction in both modes, so one secret the
/// caller may not write leaves the vault as it was (before, a server got N separate writes
/// that could fail half-way).
#[test]
fn an_import_refused_for_one_secret_writes_none() {
    let dev = Dev::start();
    let token = service_account(
        &dev,
        "sa:importer",
        "importer",
        "half/**",
        &["read", "list"],
        &["secrets:read", "secrets:list", "secrets:write"],
    );
    // Writes are allowed on one of the two paths only.
    let (s, p) = dev.post(
        "/v1/policies",
        &dev.token,
        serde_json::json!({ "name": "importer-write", "rules": [{ "path_pattern": "half/api_key", "permissions": ["write"] }] }),
    );
    assert_eq!(s, 201, "{p}");
    let (s, _) = dev.post(
        &format!("/v1/policies/{}/bindings", p["id"].as_str().unwrap()),
        &dev.token,
        serde_json::json!({ "identity_type": "service_account", "identity_id": "sa:importer" }),
    );
    assert_eq!(s, 201);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".env");
    std::fs::write(&f, "API_KEY=k1\nDB_PASSWORD=p1\n").unwrap();
    let out = dev.cli_as(
        &token,
        &["import", "dotenv", f.to_str().unwrap(), "--prefix", "half"],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("half/db_password"),
        "{}",
        stderr(&out)
    );
    let (s, b) = dev.get("/v1/secrets/half/api_key", &dev.token);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("secret_not_found")),
        "{b}"
    );
    // With both paths writable the same import lands whole, each write audited on its own.
    let out = dev.cli(&["import", "dotenv", f.to_str().unwrap(), "--prefix", "half"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, logs) = dev.get(
        "/v1/audit/logs?action=write&secret_path=half/db_password",
        &dev.token,
    );
    assert_eq!(logs["logs"][0]["extra_data"]["batch"], true, "{logs}");
    assert_eq!(logs["logs"][0]["success"], true, "{logs}");
}

/// An import larger than one batch (1,000 secrets) goes in several requests, each one
/// transaction; planning it records no failed read for the secrets that are new, and running
/// it again finds everything unchanged.
#[test]
fn a_large_import_goes_in_batches_and_plans_without_failed_reads() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.env");
    let text: String = (0..2500)
        .map(|i| format!("VAR_{i:05}=value-{i}\n"))
        .collect();
    std::fs::write(&f, text).unwrap();
    let import = || {
        dev.cli(&[
            "import",
            "dotenv",
            f.to_str().unwrap(),
            "--prefix",
            "big",
            "--json",
        ])
    };
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (res["create"].as_u64(), res["written"].as_u64()),
        (Some(2500), Some(2500))
    );
    let (_, failed) = dev.get("/v1/audit/logs?action=read&success=false", &dev.token);
    assert_eq!(failed["logs"].as_array().unwrap().len(), 0, "{failed}");
    let (_, writes) = dev.get("/v1/audit/logs?action=write&limit=1000", &dev.token);
    assert_eq!(
        writes["logs"].as_array().unwrap().len(),
        1000,
        "one entry per secret written"
    );
    let out = import();
    assert!(out.status.success(), "{}", stderr(&out));
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (res["unchanged"].as_u64(), res["written"].as_u64()),
        (Some(2500), Some(0))
    );
    // The query does find failed reads when there are some.
    dev.get("/v1/secrets/big/missing", &dev.token);
    let (_, failed) = dev.get("/v1/audit/logs?action=read&success=false", &dev.token);
    assert_eq!(failed["logs"].as_array().unwrap().len(), 1, "{failed}");
}

/// Batch writes are charged per secret against the identity's bulk-write budget (a batch is
/// one request but many writes), and a refused batch shows in every named path's history.
#[test]
fn batch_writes_are_charged_per_secret_and_refusals_are_in_each_history() {
    // 10,000 secrets a minute × 0.05: a budget of 500 (and of 5 batch requests).
    let dev = Dev::start_with(&["--rate-limit-multiplier", "0.05"]);
    let batch = |from: usize, n: usize| {
        let writes: Vec<serde_json::Value> = (from..from + n)
            .map(|i| serde_json::json!({"path": format!("bulk/s{i}"), "data": {"v": "x"}}))
            .collect();
        dev.post(
            "/v1/secrets/batch/write",
            &dev.token,
            serde_json::json!({ "writes": writes }),
        )
    };
    let (s, b) = batch(0, 300);
    assert_eq!(s, 200, "{b}");
    let (s, b) = batch(300, 300);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{b}"
    );
    assert_eq!(b["error"]["details"]["category"], "bulk_write");
    assert!(b["error"]["details"]["retry_after"].as_u64().unwrap() >= 1);
    let (s, _) = dev.get("/v1/secrets/bulk/s300", &dev.token);
    assert_eq!(s, 404, "a refused batch writes nothing");
    let (s, b) = dev.post(
        "/v1/secrets/batch/write",
        &dev.token,
        serde_json::json!({"writes": []}),
    );
    assert_eq!(s, 400, "{b}");

    let dev = Dev::start();
    let token = service_account(
        &dev,
        "sa:narrow",
        "narrow",
        "ok/**",
        &["read", "write"],
        &["secrets:read", "secrets:write"],
    );
    let (s, b) = dev.post(
        "/v1/secrets/batch/write",
        &token,
        serde_json::json!({"writes": [
            {"path": "ok/one", "data": {"v": "1"}},
            {"path": "no/two", "data": {"v": "2"}},
        ]}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("access_denied")),
        "{b}"
    );
    for path in ["ok/one", "no/two"] {
        let (_, h) = dev.get(&format!("/v1/audit/secrets/{path}"), &dev.token);
        let e = &h["logs"][0];
        assert_eq!(
            (
                e["action"].as_str(),
                e["success"].as_bool(),
                e["identity_id"].as_str()
            ),
            (Some("write"), Some(false), Some("sa:narrow")),
            "{path}: {h}"
        );
        assert_eq!(e["extra_data"]["error_code"], "access_denied");
    }
}

/// An import the server's rate limit holds back waits as the server says (`Retry-After`)
/// and goes on, instead of failing part-way.
#[test]
fn an_import_waits_out_the_rate_limit() {
    // 10,000 secrets a minute × 0.06: 600 a minute, 10 a second. The first import empties
    // the bucket; the second needs 60, which takes 6 s to come back: it is held back unless
    // it starts more than 6 s after the first ends (not on a loaded machine either).
    let dev = Dev::start_with(&["--rate-limit-multiplier", "0.06"]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, n: usize| {
        let f = dir.path().join(name);
        let text: String = (0..n).map(|i| format!("V_{i:05}=v{i}\n")).collect();
        std::fs::write(&f, text).unwrap();
        f
    };
    let (a, b) = (write("a.env", 600), write("b.env", 60));
    for (f, prefix) in [(&a, "first"), (&b, "second")] {
        let out = dev.cli(&[
            "import",
            "dotenv",
            f.to_str().unwrap(),
            "--prefix",
            prefix,
            "--json",
        ]);
        assert!(out.status.success(), "{prefix}: {}", stderr(&out));
    }
    let (_, listed) = dev.get("/v1/secrets?prefix=second/&limit=100", &dev.token);
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 60);
    let (_, limited) = dev.get("/v1/audit/logs?action=write&success=false", &dev.token);
    assert!(
        !limited["logs"].as_array().unwrap().is_empty(),
        "the second import was held back at least once: {limited}"
    );
}

#[test]
fn run_injects_passes_the_exit_code_and_masks() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(".env");
    std::fs::write(
        &f,
        "STRIPE_SECRET_KEY=sk_live_runtest\nDB_PASSWORD=hunter2hunter2\n",
    )
    .unwrap();
    assert!(
        dev.cli(&[
            "import",
            "dotenv",
            f.to_str().unwrap(),
            "--prefix",
            "run/billing"
        ])
        .status
        .success()
    );

    let out = dev.cli(&[
        "run",
        "--prefix",
        "run/billing",
        "--",
        "sh",
        "-c",
        "echo key=$STRIPE_SECRET_KEY; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "key=sk_live_runtest");

    let out = dev.cli(&[
        "run",
        "--prefix",
        "run/billing",
        "--mask",
        "--",
        "sh",
        "-c",
        "echo pw=$DB_PASSWORD; echo err=$STRIPE_SECRET_KEY >&2",
    ]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "pw=******");
    assert!(stderr(&out).contains("err=******") && !stderr(&out).contains("sk_live_runtest"));

    let refs = dir.path().join("refs.env");
    // References and plain values mix: only scaivault:// makes a value a reference.
    std::fs::write(
        &refs,
        "PAYMENTS_KEY=scaivault://run/billing/stripe_secret_key#value\nPW=scaivault://run/billing/db_password\nLOG_LEVEL=debug\nOLD=run/billing/db_password#value\n",
    )
    .unwrap();
    let out = dev.cli(&[
        "run",
        "--env-file",
        refs.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo $PAYMENTS_KEY $PW $LOG_LEVEL $OLD",
    ]);
    assert_eq!(
        stdout(&out).trim(),
        "sk_live_runtest hunter2hunter2 debug run/billing/db_password#value"
    );
    // The old form is passed as it is, with a warning that names the line, not the value.
    assert!(
        stderr(&out).contains("line 4 (OLD) looks like a secret reference without scaivault://"),
        "{}",
        stderr(&out)
    );
    // A reference to a missing field names the file and line, and nothing runs.
    std::fs::write(&refs, "A=1\nB=scaivault://run/billing/db_password#nope\n").unwrap();
    let out = dev.cli(&[
        "run",
        "--env-file",
        refs.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo ran",
    ]);
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("ran"));
    assert!(stderr(&out).contains("line 2 (B)") && stderr(&out).contains("no field nope"));

    // inject: a template's references rendered into a file created owner-only; other braces
    // stay; an existing file is replaced only with --force; a bad reference writes nothing.
    let template = dir.path().join("app.yaml.tpl");
    std::fs::write(
        &template,
        "db:\n  password: {{ scaivault://run/billing/db_password }}\n  key: {{ scaivault \"run/billing/stripe_secret_key#value\" }}\n  other: {{ .Values.keep }}\n",
    )
    .unwrap();
    let rendered = dir.path().join("app.yaml");
    let inject = |extra: &[&str]| {
        let mut args = vec![
            "inject",
            "-i",
            template.to_str().unwrap(),
            "-o",
            rendered.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dev.cli(&args)
    };
    let out = inject(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&rendered).unwrap(),
        "db:\n  password: hunter2hunter2\n  key: sk_live_runtest\n  other: {{ .Values.keep }}\n"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&rendered).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = inject(&[]);
    assert!(!out.status.success() && stderr(&out).contains("--force"));
    std::fs::write(&template, "ok: {{ scaivault://run/billing/missing }}\n").unwrap();
    let out = inject(&["--force"]);
    assert!(!out.status.success() && stderr(&out).contains("line 1"));
    assert!(
        std::fs::read_to_string(&rendered)
            .unwrap()
            .contains("hunter2hunter2"),
        "a failed inject leaves the previous file as it was"
    );
    std::fs::write(&template, "pw={{ scaivault://run/billing/db_password }}\n").unwrap();
    assert!(inject(&["--force"]).status.success());
    assert_eq!(
        std::fs::read_to_string(&rendered).unwrap(),
        "pw=hunter2hunter2\n"
    );

    // An unreachable vault: fail, or with --fallback-env keep the environment and say so.
    let env = [
        ("SCAIVAULT_URL", "http://127.0.0.1:9"),
        ("SCAIVAULT_TOKEN", "skt_x"),
        ("STRIPE_SECRET_KEY", "from-env"),
    ];
    let out = cli_env(
        &[
            "run",
            "--prefix",
            "run/billing",
            "--",
            "sh",
            "-c",
            "echo $STRIPE_SECRET_KEY",
        ],
        &env,
        None,
    );
    assert_eq!(out.status.code(), Some(7), "unavailable");
    let out = cli_env(
        &[
            "run",
            "--prefix",
            "run/billing",
            "--fallback-env",
            "--",
            "sh",
            "-c",
            "echo $STRIPE_SECRET_KEY",
        ],
        &env,
        None,
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "from-env");
    assert!(stderr(&out).contains("unreachable"));
}

#[test]
fn run_forwards_signals_to_the_child() {
    let dev = Dev::start();
    dev.put(
        "/v1/secrets/sig/x",
        &dev.token,
        serde_json::json!({"data": {"value": "v"}}),
    );
    let mut child = std::process::Command::new(bin())
        .args([
            "run",
            "--prefix",
            "sig",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .env("SCAIVAULT_URL", &dev.url)
        .env("SCAIVAULT_TOKEN", &dev.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert_eq!(rest.trim(), "got-term");
    assert_eq!(status.code(), Some(42));
}

#[test]
fn run_in_local_mode_is_audited_and_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.db");
    let v = v.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", "run local pw")];
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
            &[
                "secrets",
                "write",
                "svc/api_key",
                "value=k-123",
                "--vault",
                v
            ],
            &env,
            None
        )
        .status
        .success()
    );
    // The child opens the same vault file: the runner must have let go of it. (The child gets
    // the passphrase only because it is passed on by name.)
    let script = format!(
        "echo key=$API_KEY; {} secrets list --vault {v} --json >/dev/null && echo child-opened-vault",
        bin()
    );
    let out = cli_env(
        &[
            "run",
            "--vault",
            v,
            "--prefix",
            "svc/",
            "--pass-credential",
            "SCAIVAULT_PASSPHRASE",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "key=k-123\nchild-opened-vault\n");
    let out = cli_env(
        &["audit", "query", "--action", "read", "--json", "--vault", v],
        &env,
        None,
    );
    // Each value the child got was read through the API, and audited as a read.
    let logs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(logs["logs"][0]["secret_path"], "svc/api_key");
    assert_eq!(logs["logs"][0]["extra_data"]["batch"], true);
}

/// A vault that accepts the connection and then says nothing (hung) costs `run` no more than
/// its `--timeout`: without `--fallback-env` it fails as unavailable (7), with it the command
/// runs with the environment it has, and says so.
#[test]
fn run_gives_a_hung_vault_only_its_timeout() {
    // Connections complete in the kernel's backlog; nothing ever answers them.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    let env = [
        ("SCAIVAULT_URL", url.as_str()),
        ("SCAIVAULT_TOKEN", "skt_x"),
        ("STRIPE_SECRET_KEY", "from-env"),
    ];
    let args = |fallback: bool| {
        let mut a = vec!["run", "--prefix", "svc", "--timeout", "1s"];
        if fallback {
            a.push("--fallback-env");
        }
        a.extend(["--", "sh", "-c", "echo $STRIPE_SECRET_KEY"]);
        a
    };
    let out = cli_env(&args(false), &env, None);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no answer within 1s"),
        "{}",
        stderr(&out)
    );
    let out = cli_env(&args(true), &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "from-env");
    assert!(stderr(&out).contains("--fallback-env"), "{}", stderr(&out));
    drop(hung);
}

/// `--fallback-snapshot`: each successful run keeps the variables sealed to its token; when
/// the same vault is then down, the command runs with them (and says so). The file is
/// owner-only and holds no value in the clear; another token, or another command's
/// selection, does not open it.
#[test]
fn run_falls_back_on_its_last_known_good_snapshot() {
    let dev = Dev::start();
    dev.put(
        "/v1/secrets/snap/api_key",
        &dev.token,
        serde_json::json!({"data": {"value": "k-snapshot-1"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("svc.snapshot");
    let snap_s = snap.to_str().unwrap();
    let (url, token) = (dev.url.clone(), dev.token.clone());
    let run = |prefix: &str, token: &str| {
        cli_env(
            &[
                "run",
                "--prefix",
                prefix,
                "--fallback-snapshot",
                snap_s,
                "--timeout",
                "5s",
                "--",
                "sh",
                "-c",
                "echo $API_KEY",
            ],
            &[("SCAIVAULT_URL", url.as_str()), ("SCAIVAULT_TOKEN", token)],
            None,
        )
    };
    let out = run("snap", &token);
    assert_eq!(stdout(&out).trim(), "k-snapshot-1", "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&snap).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sealed = std::fs::read(&snap).unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"k-snapshot-1"));
    dev.terminate();

    let out = run("snap", &token);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "k-snapshot-1");
    assert!(
        stderr(&out).contains("running with the snapshot"),
        "{}",
        stderr(&out)
    );
    for (prefix, tok) in [("snap", "skt_another_token"), ("other", token.as_str())] {
        let out = run(prefix, tok);
        assert_eq!(out.status.code(), Some(7), "{prefix}: {}", stderr(&out));
        assert!(stderr(&out).contains("does not open"), "{}", stderr(&out));
        assert!(!stdout(&out).contains("k-snapshot-1"));
    }
}

/// What someone who can write secrets under a prefix chooses — field names, values, a
/// neighbouring folder — never becomes code: not in a shell that sources the export, not in
/// the program `run` starts, not through a symlink at `--out`.
#[test]
fn vault_data_never_steers_the_shell_or_the_runner() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let put = |path: &str, data: serde_json::Value| {
        let (s, b) = dev.put(
            &format!("/v1/secrets/{path}"),
            &dev.token,
            serde_json::json!({ "data": data }),
        );
        assert!(s < 300, "{b}");
    };
    // A field name that would be a command in `set -a; . file`.
    put("inj/db", serde_json::json!({"x;touch PWNED;y": "1"}));
    let out = dev.cli(&["export", "dotenv", "--prefix", "inj/"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("inj/db") && stderr(&out).contains("not one"));
    assert!(stdout(&out).is_empty());
    // `--prefix app` is the folder app/, never apple/.
    put("app/api_key", serde_json::json!({"value": "k-app"}));
    put("apple/api_key", serde_json::json!({"value": "k-apple"}));
    let out = dev.cli(&["run", "--prefix", "app", "--", "sh", "-c", "echo $API_KEY"]);
    assert_eq!(stdout(&out).trim(), "k-app", "{}", stderr(&out));
    // A secret that would set PATH (the command is looked up on the child's PATH).
    put("evil/path", serde_json::json!({"value": "/tmp/evil"}));
    let out = dev.cli(&["run", "--prefix", "evil", "--", "sh", "-c", "echo ran"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing to set PATH") && !stdout(&out).contains("ran"));
    // A NUL byte no environment can carry: said before anything runs.
    put("nul/api_key", serde_json::json!({"value": "a\u{0}b"}));
    let out = dev.cli(&["run", "--prefix", "nul", "--", "sh", "-c", "echo ran"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("NUL"));
    // A stored value that reads as a reference is pointed out by the export.
    put(
        "refs/api_key",
        serde_json::json!({"value": "scaivault://app/api_key"}),
    );
    let link = dir.path().join("link.env");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = dev.cli(&[
        "export",
        "dotenv",
        "--prefix",
        "refs/",
        "--out",
        link.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("API_KEY") && stderr(&out).contains("scaivault://"));
    // --out replaced the link, not the file it pointed at.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    // A URL that is no URL is a mistake to fix (5), not a vault that is down (7); a --json
    // after `--` belongs to the command, not to the CLI's error format.
    let out = cli_env(
        &["secrets", "list"],
        &[("SCAIVAULT_URL", "notaurl"), ("SCAIVAULT_TOKEN", "skt_x")],
        None,
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = dev.cli(&["secrets", "read", "a/b", "--", "--json"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        !stderr(&out).trim_start().starts_with('{'),
        "{}",
        stderr(&out)
    );
}
