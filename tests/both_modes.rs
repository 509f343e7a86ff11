//! Every CLI command is written once, against one client interface with two transports: a
//! server over HTTP, or the same API served inside the CLI over a vault file (`--vault`).
//! This test runs one scenario, command by command, in both modes and checks that they
//! behave the same: the same exit codes, answers of the same shape, the same exported
//! bytes, and the same audit entries (action, path, outcome) in the same order.

#![allow(clippy::disallowed_methods)] // fixture files

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

const HOOK_SECRET: &str = "whsec_both_modes_0123456789";

/// A secret type that accepts anything: `sv_call` answers with an empty output.
const NOOP_PLUGIN: &str = r#"(module
  (import "scaivault" "output" (func (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "scaivault_abi_v1") (result i32) (i32.const 0))
  (func (export "sv_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sv_call") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"#;

/// Whether two answers have the same shape: the same keys, holding values of the same
/// kinds (ids and times differ between two vaults; what they are must not). A null matches
/// any single value: the local operator has no token, so `whoami` shows no token id.
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => match (x.first(), y.first()) {
            (Some(p), Some(q)) => same_shape(p, q),
            (None, None) => true,
            _ => false,
        },
        (Value::Null, v) | (v, Value::Null) => !v.is_object() && !v.is_array(),
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => true,
        _ => false,
    }
}

/// One mode's run: how to call the CLI, and what each step answered.
struct Mode {
    env: Vec<(String, String)>,
    seen: BTreeMap<String, String>,
}

impl Mode {
    fn run(&mut self, args: &[&str], stdin: Option<&str>) -> (Option<i32>, String) {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                let mut a = a.to_string();
                for (k, v) in &self.seen {
                    a = a.replace(&format!("{{{k}}}"), v);
                }
                a
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = cli_env(&args, &env, stdin);
        let text = stdout(&out);
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            for key in ["token_id", "id", "credential_id", "client_id"] {
                if let Some(s) = v[key].as_str() {
                    self.seen.insert(key.into(), s.into());
                }
            }
        }
        (out.status.code(), text)
    }

    /// The CLI's own audit entries, oldest first: (action, path, success).
    fn audit(&mut self) -> Vec<(String, String, bool)> {
        let (code, text) = self.run(&["audit", "query", "--json", "--limit", "1000"], None);
        assert_eq!(code, Some(0), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut entries: Vec<(String, String, bool)> = v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["user_agent"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("scaivault-cli/"))
            })
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["secret_path"].as_str().unwrap_or("").to_owned(),
                    e["success"].as_bool().unwrap(),
                )
            })
            .collect();
        entries.reverse();
        entries
    }
}

#[test]
fn every_command_behaves_the_same_over_http_and_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "DATABASE_URL=postgres://app:pw@db/app\nSTRIPE_KEY=sk_test_123\n",
    )
    .unwrap();
    let env_file = env_file.to_str().unwrap().to_owned();
    let backup_dir = tempfile::tempdir().unwrap();

    // A webhook receiver both modes may reach, and a plugin both install.
    let hooks = common::receiver::Receiver::start(HOOK_SECRET);
    let allow = format!("127.0.0.1:{}", hooks.port);
    let wasm = wat::parse_str(NOOP_PLUGIN).unwrap();
    let files = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for d in &files {
        std::fs::write(d.path().join("noop.wasm"), &wasm).unwrap();
        let manifest = serde_json::json!({"name": "noop", "version": "0.1.0", "kind": "secret_types",
            "abi": "1.0", "wasm_sha256": sha256_of(&d.path().join("noop.wasm")),
            "provides": {"secret_types": ["noop"]}});
        std::fs::write(d.path().join("noop.json"), manifest.to_string()).unwrap();
        std::fs::write(
            d.path().join("app.tpl"),
            "stripe: {{ scaivault://svc/stripe_key }}\nother: {{ .Values.x }}\n",
        )
        .unwrap();
    }
    let seen = |d: &tempfile::TempDir| {
        BTreeMap::from([
            ("dir".to_owned(), d.path().to_str().unwrap().to_owned()),
            ("hook_url".to_owned(), hooks.url.clone()),
        ])
    };

    let dev = Dev::start_with(&["--allow-host", &allow]);
    let mut remote = Mode {
        env: vec![
            ("SCAIVAULT_URL".into(), dev.url.clone()),
            ("SCAIVAULT_TOKEN".into(), dev.token.clone()),
            ("SCAIVAULT_WEBHOOK_SECRET".into(), HOOK_SECRET.into()),
        ],
        seen: seen(&files[0]),
    };
    let (vault, _) = init(dir.path());
    let mut local = Mode {
        env: vec![
            ("SCAIVAULT_PASSPHRASE".into(), PASS.into()),
            ("SCAIVAULT_VAULT".into(), vault.to_str().unwrap().into()),
            ("SCAIVAULT_WEBHOOK_SECRET".into(), HOOK_SECRET.into()),
            ("SCAIVAULT_ALLOW_HOSTS".into(), allow.clone()),
        ],
        seen: seen(&files[1]),
    };

    let steps: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec!["secrets", "write", "app/db", "password=pw1", "--tag", "db"],
            None,
        ),
        (
            vec!["secrets", "write", "app/db", "password=-"],
            Some("pw2"),
        ),
        (vec!["secrets", "read", "app/db"], None),
        (vec!["secrets", "read", "app/missing"], None),
        // A path that would change the URL is refused as a path, in both modes.
        (vec!["secrets", "write", "app/q?x=1", "v=1"], None),
        (vec!["secrets", "read", ""], None),
        (vec!["secrets", "list", "--prefix", "app/"], None),
        (vec!["secrets", "versions", "app/db"], None),
        (
            vec!["secrets", "metadata", "app/db", "--set", "owner=team-a"],
            None,
        ),
        (vec!["secrets", "metadata", "app/db"], None),
        (vec!["secrets", "delete", "app/db"], None),
        (vec!["secrets", "restore", "app/db"], None),
        (
            vec!["secrets", "write", "app/db", "x=1", "--cas", "1"],
            None,
        ),
        (vec!["import", "dotenv", &env_file, "--prefix", "svc"], None),
        (vec!["import", "dotenv", &env_file, "--prefix", "svc"], None),
        (vec!["export", "dotenv", "--prefix", "svc/"], None),
        (vec!["identity", "create", "sa:svc"], None),
        (vec!["identity", "list"], None),
        (
            vec![
                "identity",
                "credentials",
                "sa:svc",
                "--scope",
                "secrets:read",
            ],
            None,
        ),
        (vec!["identity", "list-credentials", "sa:svc"], None),
        (
            vec!["policies", "create", "svc", "--rule", "svc/**:read"],
            None,
        ),
        (
            vec!["policies", "bind", "svc", "--identity-id", "sa:svc"],
            None,
        ),
        (vec!["policies", "list"], None),
        (vec!["policies", "get", "svc"], None),
        (
            vec![
                "policies",
                "test",
                "svc/stripe_key",
                "read",
                "--identity",
                "sa:svc",
            ],
            None,
        ),
        (
            vec![
                "tokens",
                "create",
                "--identity",
                "sa:svc",
                "--scope",
                "secrets:read",
            ],
            None,
        ),
        (vec!["tokens", "list", "--identity", "sa:svc"], None),
        (vec!["tokens", "revoke", "{token_id}"], None),
        (
            vec![
                "tokens",
                "create",
                "--identity",
                "sa:nobody",
                "--scope",
                "secrets:read",
            ],
            None,
        ),
        (vec!["policies", "delete", "svc"], None),
        (vec!["policies", "delete", "svc", "--force"], None),
        (vec!["identity", "create", "group:ops"], None),
        (vec!["identity", "add-member", "group:ops", "sa:svc"], None),
        (
            vec!["identity", "remove-member", "group:ops", "sa:svc"],
            None,
        ),
        (
            vec![
                "identity",
                "credentials",
                "sa:svc",
                "--scope",
                "secrets:list",
            ],
            None,
        ),
        (
            vec!["identity", "revoke-credential", "sa:svc", "{credential_id}"],
            None,
        ),
        (
            vec!["policies", "create", "extra", "--rule", "app/**:list"],
            None,
        ),
        (
            vec!["policies", "bind", "extra", "--identity-id", "sa:svc"],
            None,
        ),
        (vec!["policies", "unbind", "extra", "{id}"], None),
        (vec!["identity", "delete", "group:ops"], None),
        (vec!["secrets", "write", "tmp/gone", "k=v"], None),
        (vec!["secrets", "delete", "tmp/gone", "--hard"], None),
        (vec!["secrets", "read", "tmp/gone"], None),
        (
            vec![
                "run",
                "--prefix",
                "svc/",
                "--",
                "sh",
                "-c",
                "echo $STRIPE_KEY",
            ],
            None,
        ),
        (
            vec!["run", "--prefix", "nothing/", "--", "sh", "-c", "exit 3"],
            None,
        ),
        (vec!["inject", "-i", "{dir}/app.tpl"], None),
        // An intact secret is not destroyed as a damaged one, in either mode.
        (vec!["operator", "destroy-damaged", "app/db"], None),
        (vec!["plugins", "list"], None),
        (
            vec![
                "plugins",
                "install",
                "{dir}/noop.wasm",
                "--manifest",
                "{dir}/noop.json",
            ],
            None,
        ),
        (vec!["plugins", "verify"], None),
        (vec!["plugins", "remove", "noop"], None),
        (vec!["plugins", "generate", "random", "length=24"], None),
        (
            vec![
                "webhooks",
                "create",
                "--name",
                "hook1",
                "--endpoint",
                "{hook_url}",
                "--events",
                "rotation.failed",
            ],
            None,
        ),
        (vec!["webhooks", "list"], None),
        (vec!["webhooks", "get", "hook1"], None),
        (
            vec![
                "webhooks",
                "update",
                "hook1",
                "--events",
                "rotation.failed,rotation.completed",
            ],
            None,
        ),
        (vec!["webhooks", "test", "hook1"], None),
        (vec!["webhooks", "deliveries", "hook1"], None),
        (vec!["webhooks", "delete", "hook1"], None),
        (vec!["webhooks", "get", "hook1"], None),
        (
            vec![
                "rotation",
                "create",
                "--name",
                "r1",
                "--interval",
                "7d",
                "--auto-generate",
            ],
            None,
        ),
        (vec!["rotation", "list"], None),
        (vec!["rotation", "assign", "rot_r1", "app/db"], None),
        (vec!["rotation", "get", "rot_r1"], None),
        (vec!["rotation", "disable", "rot_r1"], None),
        (vec!["rotation", "enable", "rot_r1"], None),
        (vec!["rotation", "rotate", "rot_r1"], None),
        (vec!["rotation", "status"], None),
        (vec!["rotation", "unassign", "rot_r1", "app/db"], None),
        (vec!["rotation", "delete", "rot_r1"], None),
        (vec!["audit", "query", "--action", "rotate"], None),
        (vec!["audit", "export", "--out", "{dir}/audit.jsonl"], None),
        (vec!["audit", "prune", "--older-than", "365d"], None),
        (vec!["operator", "rotate-key"], None),
        (vec!["auth", "whoami"], None),
        (vec!["operator", "verify"], None),
        (vec!["audit", "verify"], None),
        (vec!["audit", "summary"], None),
    ];
    for (args, stdin) in &steps {
        let raw = matches!(args[0], "export" | "run");
        let mut with_json = args.clone();
        if !raw {
            with_json.push("--json");
        }
        let (rc, r) = remote.run(&with_json, *stdin);
        let (lc, l) = local.run(&with_json, *stdin);
        let expected = match args[..] {
            ["secrets", "read", "app/missing" | "tmp/gone"] => 4,
            ["secrets", "read", ""] | ["secrets", "write", "app/q?x=1", ..] => 5,
            ["secrets", "write", "app/db", "x=1", "--cas", "1"] => 1,
            ["tokens", "create", "--identity", "sa:nobody", ..] => 4,
            ["policies", "delete", "svc"] => 1,
            ["operator", "destroy-damaged", "app/db"] => 5,
            ["run", "--prefix", "nothing/", ..] => 3,
            ["webhooks", "get", "hook1"] if remote.seen.contains_key("deleted_hook") => 4,
            _ => 0,
        };
        assert_eq!(rc, Some(expected), "{args:?}\nremote: {r}");
        if args[..] == ["webhooks", "delete", "hook1"] {
            remote.seen.insert("deleted_hook".into(), String::new());
        }
        assert_eq!(
            rc, lc,
            "{args:?}: exit codes differ\nremote: {r}\nlocal: {l}"
        );
        if raw {
            assert_eq!(r, l, "{args:?}: the outputs differ");
            continue;
        }
        match (
            serde_json::from_str::<Value>(&r),
            serde_json::from_str::<Value>(&l),
        ) {
            (Ok(r), Ok(l)) => {
                assert!(
                    same_shape(&r, &l),
                    "{args:?}: answers differ in shape\nremote: {r:#}\nlocal: {l:#}"
                )
            }
            _ => assert_eq!(
                r.is_empty(),
                l.is_empty(),
                "{args:?}\nremote: {r}\nlocal: {l}"
            ),
        }
    }
    // A backup and a restore of one secret from it, each way.
    for (name, mode) in [("remote", &mut remote), ("local", &mut local)] {
        let file = backup_dir.path().join(format!("{name}.svb"));
        let file = file.to_str().unwrap();
        let (code, text) = mode.run(&["operator", "backup", file, "--json"], None);
        assert_eq!(code, Some(0), "{text}");
        let (code, text) = mode.run(
            &[
                "operator",
                "restore",
                "--backup",
                file,
                "--path",
                "svc/stripe_key",
                "--json",
            ],
            None,
        );
        assert_eq!(code, Some(0), "{text}");
    }

    let (r, l) = (remote.audit(), local.audit());
    assert_eq!(r, l, "the audit logs differ");
    // The scenario's reads, refusals and writes are all there, under the server's names.
    // Every route a command used is in both logs (the comparison above is entry by entry).
    for want in [
        ("webhook_test", "", true),
        ("plugin_install", "", true),
        ("rotate", "", true),
        ("audit_prune", "", true),
        ("key_rotate", "", true),
        ("credential_revoke", "", true),
        ("identity_member_add", "", true),
        ("policy_unbind", "", true),
        ("write", "app/db", true),
        ("read", "app/db", true),
        ("read", "app/missing", false),
        ("write", "svc/database_url", true),
        ("read", "svc/stripe_key", true),
        ("token_create", "", false),
        ("backup", "", true),
        ("restore_from_backup", "svc/stripe_key", true),
    ] {
        let want = (want.0.to_owned(), want.1.to_owned(), want.2);
        assert!(l.contains(&want), "{want:?} missing from {l:#?}");
    }
}
