//! The CLI against a running `scaivault dev`, and in `--vault FILE` mode with no server.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use common::*;

const BILLING: &str = "environments/production/billing";

#[test]
fn documented_commands_against_dev() {
    let dev = Dev::start_with(&["--test-clock"]);
    let key = "sk_live_51HxyzCLItest";
    let out = cli_env(
        &[
            "secrets",
            "write",
            &format!("{BILLING}/stripe"),
            &format!("secret_key={key}"),
            "--type",
            "api_key",
            "--tag",
            "billing,stripe,production",
        ],
        &[
            ("SCAIVAULT_URL", &dev.url),
            ("SCAIVAULT_TOKEN", &dev.token),
            ("STRIPE_SECRET_KEY", key),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, b) = dev.get(&format!("/v1/secrets/{BILLING}/stripe"), &dev.token);
    assert_eq!(b["data"]["secret_key"], key);
    assert_eq!(b["secret_type"], "api_key");
    assert_eq!(
        b["metadata"]["tags"],
        serde_json::json!(["billing", "stripe", "production"])
    );

    let heredoc = r#"{"host": "db.internal", "port": 5432, "password": "pg-secret"}"#;
    let out = dev.cli_as(
        &dev.token,
        &[
            "secrets",
            "write",
            &format!("{BILLING}/database"),
            "--type",
            "json",
            "--json-file",
            "-",
        ],
        Some(heredoc),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, b) = dev.get(&format!("/v1/secrets/{BILLING}/database"), &dev.token);
    assert_eq!(b["data"]["port"], 5432);

    let out = dev.cli(&[
        "secrets",
        "list",
        "--prefix",
        &format!("{BILLING}/"),
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![format!("{BILLING}/database"), format!("{BILLING}/stripe")]
    );
    let human = stdout(&dev.cli(&["secrets", "list", "--prefix", &format!("{BILLING}/")]));
    assert!(
        human.contains(&format!("{BILLING}/stripe")) && human.contains("api_key"),
        "{human}"
    );

    let out = dev.cli(&[
        "secrets",
        "read",
        &format!("{BILLING}/stripe"),
        "--field",
        "secret_key",
    ]);
    assert_eq!(stdout(&out).trim(), key);

    // Identity, policy, binding, token — then `policies test` explains.
    assert!(
        dev.cli(&["identity", "create", "sa:billing-prod"])
            .status
            .success()
    );
    let out = dev.cli(&[
        "policies",
        "create",
        "billing-prod-reader",
        "--rule",
        &format!("{BILLING}/**:read"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = dev.cli(&[
        "policies",
        "bind",
        "billing-prod-reader",
        "--identity-id",
        "sa:billing-prod",
        "--identity-type",
        "service_account",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = dev.cli(&[
        "policies",
        "test",
        &format!("{BILLING}/stripe"),
        "read",
        "--identity",
        "sa:billing-prod",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("allowed") && text.contains("billing-prod-reader"),
        "{text}"
    );
    let out = dev.cli(&[
        "policies",
        "test",
        "environments/production/reporting/db",
        "read",
        "--identity",
        "sa:billing-prod",
    ]);
    assert!(
        stdout(&out).starts_with("denied (access_denied)"),
        "{}",
        stdout(&out)
    );

    let out = dev.cli(&[
        "tokens",
        "create",
        "--identity",
        "sa:billing-prod",
        "--scope",
        "secrets:read,secrets:list",
        "--ttl",
        "1h",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sa_token = stdout(&out).trim().to_owned();
    assert!(sa_token.starts_with("skt_"));
    let out = dev.cli_as(&sa_token, &["auth", "whoami"], None);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("sa:billing-prod (service_account)"),
        "{}",
        stdout(&out)
    );
    let out = dev.cli_as(&sa_token, &["auth", "whoami", "--json"], None);
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        who["scopes"],
        serde_json::json!(["secrets:read", "secrets:list"])
    );

    // Exit codes: 3 denied, 4 not found, 2 bad token.
    let out = dev.cli_as(
        &sa_token,
        &["secrets", "read", "environments/production/reporting/db"],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("access_denied") && stderr(&out).contains("request req_"));
    assert_eq!(
        dev.cli(&["secrets", "read", "no/such/secret"])
            .status
            .code(),
        Some(4)
    );
    let out = dev.cli(&[
        "tokens",
        "create",
        "--identity",
        "sa:billing-prod",
        "--scope",
        "secrets:read",
        "--ttl",
        "1s",
    ]);
    let short = stdout(&out).trim().to_owned();
    // The token's second passes on the server's clock, not the test's.
    let (s, b) = dev.post(
        "/v1/sys/test/clock",
        &dev.token,
        serde_json::json!({"advance": "2s"}),
    );
    assert_eq!(s, 200, "{b}");
    let out = dev.cli_as(
        &short,
        &["secrets", "read", &format!("{BILLING}/stripe")],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "an expired token exits 2");
    assert!(stderr(&out).contains("token_expired"), "{}", stderr(&out));
    assert_eq!(
        dev.cli_as("skt_invalid", &["secrets", "read", "a/b"], None)
            .status
            .code(),
        Some(2)
    );
    let out = dev.cli(&[
        "tokens",
        "create",
        "--identity",
        "sa:ghost",
        "--scope",
        "secrets:read",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("scaivault identity create sa:ghost"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exit_codes_tell_usage_invalid_and_unavailable_apart() {
    let dev = Dev::start();
    // A command line that does not parse: 64, and with --json the API's envelope on stderr.
    for args in [
        vec!["secrets", "write", "a/b", "--no-such-flag"],
        vec!["secrets", "read"],
        vec!["--json", "secrets", "read"],
    ] {
        let out = dev.cli_as(&dev.token, &args, None);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        if args[0] == "--json" {
            let e: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
            assert_eq!(e["error"]["code"], "invalid_request", "{e}");
            assert!(
                e["error"]["message"].as_str().unwrap().contains("<PATH>"),
                "{e}"
            );
        }
    }
    // A request the vault (or the CLI before it) refuses as invalid: 5.
    for args in [
        vec!["secrets", "write", "a/b", "novalue"],
        vec!["secrets", "write", "a/b", "--json-file", "-"],
        vec!["secrets", "write", "Bad/Path", "k=v"],
        vec!["policies", "create", "p", "--rule", "a/**:steal"],
    ] {
        let out = dev.cli_as(&dev.token, &args, Some("{not json"));
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", stderr(&out));
    }
    let out = cli_env(
        &["secrets", "list"],
        &[
            ("SCAIVAULT_URL", "http://127.0.0.1:9"),
            ("SCAIVAULT_TOKEN", "skt_x"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(7), "unavailable");
    // Rate limited: past its budget of failed authentications an address is answered 429;
    // told not to wait (SCAIVAULT_RATE_LIMIT_WAIT=0), the CLI exits 6 at once.
    let limited = Dev::start_with(&["--auth-failures-per-minute", "3"]);
    let bad = |wait: Option<&str>| {
        let mut env = vec![
            ("SCAIVAULT_URL", limited.url.as_str()),
            ("SCAIVAULT_TOKEN", "skt_not_a_real_token"),
        ];
        env.extend(wait.map(|w| ("SCAIVAULT_RATE_LIMIT_WAIT", w)));
        cli_env(&["secrets", "list"], &env, None)
    };
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(bad(Some("0")).status.code());
        if codes.last() == Some(&Some(6)) {
            break;
        }
    }
    assert_eq!(codes.first(), Some(&Some(2)), "unauthenticated: {codes:?}");
    assert_eq!(codes.last(), Some(&Some(6)), "then rate limited: {codes:?}");
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the vault") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn local_mode_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("laptop.db");
    let v = vault.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", "laptop passphrase")];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--vault", v]);
        cli_env(&all, &env, None)
    };
    let out = cli_env(
        &[
            "init",
            "--vault",
            v,
            "--kdf-memory-mib",
            "19",
            "--kdf-passes",
            "2",
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Root token: skt_"));
    assert_eq!(
        cli_env(&["init", "--vault", v], &env, None).status.code(),
        Some(1),
        "init refuses to overwrite"
    );

    assert!(
        run(&["secrets", "write", "app/db", "password=one", "--tag", "db"])
            .status
            .success()
    );
    assert!(
        run(&["secrets", "write", "app/db", "password=two"])
            .status
            .success()
    );
    assert_eq!(
        stdout(&run(&["secrets", "read", "app/db", "--field", "password"])).trim(),
        "two"
    );
    assert_eq!(
        stdout(&run(&[
            "secrets",
            "read",
            "app/db",
            "--version",
            "1",
            "--field",
            "password"
        ]))
        .trim(),
        "one"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&run(&["secrets", "list", "--json"]).stdout).unwrap();
    assert_eq!(list["secrets"][0]["path"], "app/db");
    assert!(stdout(&run(&["secrets", "versions", "app/db"])).contains("current"));
    assert!(run(&["secrets", "delete", "app/db"]).status.success());
    assert_eq!(run(&["secrets", "read", "app/db"]).status.code(), Some(4));
    assert!(run(&["secrets", "restore", "app/db"]).status.success());
    assert!(run(&["operator", "rotate-key"]).status.success());
    assert!(
        run(&["secrets", "write", "app/db", "password=three"])
            .status
            .success()
    );

    let new_pass = dir.path().join("new-pass");
    std::fs::write(&new_pass, "a brand new passphrase\n").unwrap();
    let out = run(&[
        "operator",
        "passphrase",
        "--new-passphrase-file",
        new_pass.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["secrets", "read", "app/db"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the old passphrase no longer opens the vault"
    );
    assert!(stderr(&out).contains("invalid_passphrase"));
    let out = cli_env(
        &[
            "secrets",
            "read",
            "app/db",
            "--field",
            "password",
            "--vault",
            v,
            "--passphrase-file",
            new_pass.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(stdout(&out).trim(), "three", "{}", stderr(&out));
    let out = cli_env(
        &[
            "secrets",
            "read",
            "app/db",
            "--version",
            "1",
            "--field",
            "password",
            "--vault",
            v,
            "--passphrase-file",
            new_pass.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(
        stdout(&out).trim(),
        "one",
        "records sealed under the first data key still open"
    );
}

#[test]
fn config_metadata_policy_files_and_membership() {
    let dev = Dev::start();
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    // `config set` and `auth login` persist what the env vars would give.
    let run_home = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .env("HOME", h)
            .env_remove("SCAIVAULT_URL")
            .env_remove("SCAIVAULT_TOKEN")
            .output()
            .unwrap()
    };
    assert!(
        run_home(&["config", "set", "base_url", &dev.url])
            .status
            .success()
    );
    assert!(
        run_home(&["auth", "login", "--token", &dev.token])
            .status
            .success()
    );
    let out = run_home(&["auth", "whoami"]);
    assert!(stdout(&out).contains("user:root"), "{}", stderr(&out));
    let cfg = home.path().join(".scaivault/config.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o077,
            0,
            "the config holds a token: owner only"
        );
    }
    // One name per setting: `base_url` was saved as `url`, the flag's name.
    let out = run_home(&["config", "get", "url"]);
    assert_eq!(stdout(&out).trim(), dev.url);
    let out = run_home(&["config", "list"]);
    assert!(
        stdout(&out).contains(&format!("url\t{}", dev.url)),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains(&dev.token),
        "config list shows the token whole"
    );
    assert!(stdout(&out).contains("token\tskt_"), "{}", stdout(&out));
    assert_eq!(
        run_home(&["config", "get", "colour"]).status.code(),
        Some(5)
    );
    // `auth logout` forgets the token: the next command has none.
    assert!(run_home(&["auth", "logout"]).status.success());
    let out = run_home(&["auth", "whoami"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        run_home(&["auth", "login", "--token", &dev.token])
            .status
            .success()
    );
    assert!(run_home(&["config", "unset", "url"]).status.success());
    assert_eq!(run_home(&["config", "get", "url"]).status.code(), Some(5));
    assert!(
        run_home(&["config", "set", "url", &dev.url])
            .status
            .success()
    );

    assert!(
        dev.cli(&[
            "secrets",
            "write",
            "app/db",
            "password=x",
            "--description",
            "db"
        ])
        .status
        .success()
    );
    let out = dev.cli(&[
        "secrets",
        "metadata",
        "app/db",
        "--set",
        "owner=team:data",
        "--set",
        "tags=a,b",
        "--set",
        "description=",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        m["metadata"],
        serde_json::json!({"owner": "team:data", "tags": ["a", "b"]})
    );
    assert_eq!(m["version"], 1);

    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("policy.json");
    std::fs::write(&pf, r#"{"name": "from-file", "rules": [{"path_pattern": "app/**", "permissions": ["read", "list"]}]}"#).unwrap();
    assert!(
        dev.cli(&["policies", "create", "--file", pf.to_str().unwrap()])
            .status
            .success()
    );
    for id in ["group:data", "user:ann@example.org"] {
        assert!(dev.cli(&["identity", "create", id]).status.success());
    }
    assert!(
        dev.cli(&[
            "identity",
            "add-member",
            "group:data",
            "user:ann@example.org"
        ])
        .status
        .success()
    );
    let out = dev.cli(&[
        "policies",
        "bind",
        "from-file",
        "--identity-id",
        "group:data",
        "--json",
    ]);
    let binding: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = dev.cli(&[
        "policies",
        "test",
        "app/db",
        "read",
        "--identity",
        "user:ann@example.org",
    ]);
    assert!(stdout(&out).starts_with("allowed"), "{}", stdout(&out));
    assert!(
        dev.cli(&[
            "identity",
            "remove-member",
            "group:data",
            "user:ann@example.org"
        ])
        .status
        .success()
    );
    let out = dev.cli(&[
        "policies",
        "test",
        "app/db",
        "read",
        "--identity",
        "user:ann@example.org",
    ]);
    assert!(stdout(&out).starts_with("denied"), "{}", stdout(&out));
    assert!(
        dev.cli(&[
            "policies",
            "unbind",
            "from-file",
            binding["id"].as_str().unwrap()
        ])
        .status
        .success()
    );
    assert!(
        dev.cli(&["policies", "delete", "from-file"])
            .status
            .success()
    );
    let out = dev.cli(&["policies", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["policies"].as_array().unwrap().is_empty());
}

#[test]
fn a_bare_value_is_never_echoed() {
    let dev = Dev::start();
    let out = dev.cli(&["secrets", "write", "a/b", "sk_live_typed_without_a_key"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        !stderr(&out).contains("sk_live_typed_without_a_key"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("argument 1 after the path is not key=value"));
}

/// Issue #19: shell completions and man pages, generated from the same clap tree as `--help`.
#[test]
fn completions_and_man_pages_come_from_the_command_tree() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_env(&["completions", "bash"], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = dir.path().join("scaivault.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // bash itself completes `scaivault sec` and `scaivault secrets wr`.
    let complete = |words: &str, cword: usize| {
        // As bash calls a completion function: the command, the word being completed, the
        // word before it.
        let w: Vec<&str> = words.split(' ').collect();
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _scaivault scaivault {} {}; echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            w[cword],
            w[cword - 1]
        );
        let o = std::process::Command::new("bash")
            .args(["-c", &probe])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        complete("scaivault sec", 1)
            .split_whitespace()
            .any(|w| w == "secrets")
    );
    assert!(
        complete("scaivault secrets wr", 2)
            .split_whitespace()
            .any(|w| w == "write")
    );
    for shell in ["zsh", "fish"] {
        let out = cli_env(&["completions", shell], &[], None);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    let man = dir.path().join("man");
    let out = cli_env(&["man", "--out-dir", man.to_str().unwrap()], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(man.join("scaivault-secrets-write.1")).unwrap();
    assert!(
        page.contains("max\\-versions") || page.contains("max-versions"),
        "{page}"
    );
    assert!(man.join("scaivault.1").exists());
    assert!(man.join("scaivault-operator-backup.1").exists());
}

/// Issue #19: `secrets list --limit` caps what is listed, `audit query --action a,b` finds
/// either, a bare date is a time, and a denied `policies test` exits non-zero.
#[test]
fn daily_flags_do_what_they_say() {
    let dev = Dev::start();
    for i in 0..5 {
        dev.put(
            &format!("/v1/secrets/daily/s{i}"),
            &dev.token,
            serde_json::json!({"data": {"k": "v"}}),
        );
    }
    dev.get("/v1/secrets/daily/s0", &dev.token);
    // --format: yaml (every string quoted, so `no` stays a string), env (the variables run
    // would give), json (as --json); env elsewhere is refused, --json with --format too.
    dev.put(
        "/v1/secrets/fmt/db",
        &dev.token,
        serde_json::json!({"data": {"user": "no", "password": "two words"}}),
    );
    let out = dev.cli(&["secrets", "read", "fmt/db", "--format", "yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    assert!(
        yaml.contains("\"data\":\n  \"password\": \"two words\"\n  \"user\": \"no\"\n"),
        "{yaml}"
    );
    let out = dev.cli(&["secrets", "read", "fmt/db", "--format", "env"]);
    assert_eq!(stdout(&out), "DB_PASSWORD='two words'\nDB_USER=no\n");
    let out = dev.cli(&["secrets", "read", "fmt/db", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["user"], "no");
    let out = dev.cli(&["secrets", "list", "--format", "env"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = dev.cli(&["secrets", "list", "--format", "yaml", "--json"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let listed = |args: &[&str]| -> serde_json::Value {
        let out = dev.cli(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = listed(&[
        "secrets", "list", "--prefix", "daily/", "--limit", "2", "--json",
    ]);
    assert_eq!(v["secrets"].as_array().unwrap().len(), 2);
    let v = listed(&["secrets", "list", "--prefix", "daily/", "--json"]);
    assert_eq!(v["secrets"].as_array().unwrap().len(), 5);
    let v = listed(&[
        "audit",
        "query",
        "--action",
        "read,write",
        "--json",
        "--limit",
        "100",
    ]);
    let actions: std::collections::BTreeSet<&str> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["read", "write"].into_iter().collect());
    let v = listed(&[
        "audit",
        "query",
        "--from",
        "2020-01-01",
        "--action",
        "read",
        "--json",
    ]);
    assert!(!v["logs"].as_array().unwrap().is_empty());
    let v = listed(&["audit", "query", "--from", "2999-01-01", "--json"]);
    assert!(v["logs"].as_array().unwrap().is_empty());

    // With --json an error is JSON too: the API's envelope, on stderr.
    let out = dev.cli(&["secrets", "read", "daily/missing", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let e: serde_json::Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(e["error"]["code"], "secret_not_found", "{e}");
    assert!(
        e["error"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );

    let out = dev.cli(&[
        "policies",
        "test",
        "daily/s0",
        "read",
        "--identity",
        "sa:nobody",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("denied"), "{}", stdout(&out));
}

/// Issue #19: `run` answers a missing or non-executable command as a shell does.
#[test]
fn run_exits_127_for_a_missing_command_and_126_for_one_that_cannot_run() {
    let dev = Dev::start();
    dev.put(
        "/v1/secrets/runx/key",
        &dev.token,
        serde_json::json!({"data": {"value": "v"}}),
    );
    let out = dev.cli(&[
        "run",
        "--prefix",
        "runx/",
        "--",
        "no-such-command-scaivault",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let out = dev.cli(&["run", "--prefix", "runx/", "--", script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

/// After review: a value's control characters are shown escaped on a terminal, never acted
/// on (they could clear the screen, write the clipboard, or forge a line), but `--field` into
/// a pipe gives the exact bytes; a reader that closes the pipe early ends the command quietly.
#[test]
fn hostile_values_are_shown_not_obeyed_and_a_closed_pipe_is_not_a_crash() {
    let dev = Dev::start();
    let evil = "pwn\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}\nadmin_password: hunter2";
    dev.put(
        "/v1/secrets/evil/one",
        &dev.token,
        serde_json::json!({"data": {"note": evil}}),
    );
    for i in 0..50 {
        dev.put(
            &format!("/v1/secrets/many/s{i:02}"),
            &dev.token,
            serde_json::json!({"data": {"k": "v"}}),
        );
    }
    // On a terminal (script gives the command a pty).
    let shown = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} secrets read evil/one", bin()),
            "/dev/null",
        ])
        .env("SCAIVAULT_URL", &dev.url)
        .env("SCAIVAULT_TOKEN", &dev.token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("note: pwn\\u{1b}[2J"), "{text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "an escape reached the terminal: {text:?}"
    );
    assert!(
        !text.contains("\nadmin_password"),
        "a forged line: {text:?}"
    );
    // Into a pipe, `--field` is the exact value.
    let out = dev.cli(&["secrets", "read", "evil/one", "--field", "note"]);
    assert_eq!(stdout(&out), format!("{evil}\n"));
    // `| head -1`: exit 141 as a process stopped by SIGPIPE, no panic, no backtrace.
    let piped = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "{} secrets list --prefix many/ | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
                bin()
            ),
        ])
        .env("SCAIVAULT_URL", &dev.url)
        .env("SCAIVAULT_TOKEN", &dev.token)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&piped.stdout).trim().to_owned();
    assert!(status == "141" || status == "0", "{status}");
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    // A limited list says it was cut.
    let out = dev.cli(&[
        "secrets", "list", "--prefix", "many/", "--limit", "3", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["has_more"], true);
    let out = dev.cli(&["secrets", "list", "--prefix", "many/", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["secrets"].as_array().unwrap().len(), &v["has_more"]),
        (50, &serde_json::json!(false))
    );
    // `--to` a bare date includes that day.
    let today = stdout(
        &std::process::Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .unwrap(),
    )
    .trim()
    .to_owned();
    let out = dev.cli(&["audit", "query", "--from", &today, "--to", &today, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["logs"].as_array().unwrap().is_empty(), "{v}");
}
