//! Plugins end to end: an external plugin built in the test from `examples/plugin`, installed
//! with the CLI, used in writes over HTTP, then its file swapped and refused; the built-in
//! certificate type; a hostile plugin while the server keeps serving.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// Copies `examples/plugin` and the guest SDK into `dir` and builds them there with the
/// project's wasm toolchain script. Returns (wasm, manifest).
fn build_example(dir: &Path) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = |from: &Path, to: &Path| {
        let st = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    };
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    copy(&root.join("examples/plugin"), &dir.join("examples/plugin"));
    copy(&root.join("plugins/sdk"), &dir.join("plugins/sdk"));
    copy(
        &root.join("plugins/wasm-build.sh"),
        &dir.join("plugins/wasm-build.sh"),
    );
    let _ = std::fs::remove_dir_all(dir.join("examples/plugin/dist"));
    let out = Command::new("bash")
        .arg(dir.join("examples/plugin/build.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building examples/plugin failed (a wasm toolchain is needed: run plugins/build.sh with \
         SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN=1 once, as .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dist = dir.join("examples/plugin/dist");
    (dist.join("acme-token.wasm"), dist.join("acme-token.json"))
}

fn req(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

const GOOD_TOKEN: &str = "acme_live_0123456789abcdef0123456789abcdef";

#[test]
fn an_external_plugin_is_installed_used_and_refused_once_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (wasm, manifest) = build_example(&dir.path().join("build"));
    let (vault, root) = init(dir.path());
    let env = [("SCAIVAULT_PASSPHRASE", PASS)];
    let (child, url) = server(&vault, &["--no-rate-limit"], &env);
    let child = KillOnDrop(child);
    let cli = |args: &[&str]| {
        cli_env(
            args,
            &[("SCAIVAULT_URL", &url), ("SCAIVAULT_TOKEN", &root)],
            None,
        )
    };

    let out = cli(&[
        "plugins",
        "install",
        wasm.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sha = common::sha256_of(&wasm);
    assert!(stdout(&out).contains(&sha), "{}", stdout(&out));

    // The new type works, and validates.
    let path = "/v1/secrets/environments/production/billing/acme";
    let (s, b) = req(
        &url,
        &root,
        reqwest::Method::PUT,
        path,
        Some(
            json!({"secret_type": "acme_token", "data": {"token": GOOD_TOKEN, "account_id": "acct_1"}}),
        ),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = req(
        &url,
        &root,
        reqwest::Method::PUT,
        "/v1/secrets/environments/production/billing/bad",
        Some(json!({"secret_type": "acme_token", "data": {"token": "sk_live_nope"}})),
    );
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "validation_error");
    assert!(b["error"]["details"]["fields"]["token"].is_string(), "{b}");
    let (s, _) = req(
        &url,
        &root,
        reqwest::Method::GET,
        "/v1/secrets/environments/production/billing/bad",
        None,
    );
    assert_eq!(s, 404, "a rejected write stores nothing");

    let out = cli(&["plugins", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let acme = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "acme-token")
        .unwrap()
        .clone();
    assert_eq!(acme["wasm_sha256"], sha);
    assert_eq!(acme["origin"], "external");
    assert_eq!(acme["status"], "ok");
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "types" && p["origin"] == "builtin")
    );
    assert!(cli(&["plugins", "verify"]).status.success());

    // Swap the installed file for another (valid) plugin's bytes.
    let installed = PathBuf::from(format!("{}.plugins", vault.display()))
        .join(format!("acme-token-{}.wasm", &sha[..16]));
    assert!(installed.exists(), "{}", installed.display());
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/dist/types.wasm");
    std::fs::copy(&other, &installed).unwrap();
    let out = cli(&["plugins", "verify"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("does not match its pinned SHA-256"),
        "{}",
        stdout(&out)
    );

    // After a restart the plugin is refused: listed with the reason, and its type unusable.
    drop(child);
    let (child, url) = server(&vault, &["--no-rate-limit"], &env);
    let _child = KillOnDrop(child);
    let (s, b) = req(
        &url,
        &root,
        reqwest::Method::GET,
        "/v1/plugins/acme-token",
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(b["status"], "refused", "{b}");
    assert!(
        b["problem"]
            .as_str()
            .unwrap()
            .contains("does not match the pinned SHA-256"),
        "{b}"
    );
    let (s, b) = req(
        &url,
        &root,
        reqwest::Method::PUT,
        path,
        Some(json!({"secret_type": "acme_token", "data": {"token": GOOD_TOKEN}})),
    );
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"]["code"], "plugin_unavailable");
    // What was stored stays readable: reads never run the type plugin.
    let (s, b) = req(&url, &root, reqwest::Method::GET, path, None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["token"], GOOD_TOKEN);
    // Reinstalling the right file repairs it.
    let out = cli_env(
        &[
            "plugins",
            "install",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        &[("SCAIVAULT_URL", &url), ("SCAIVAULT_TOKEN", &root)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (s, b) = req(
        &url,
        &root,
        reqwest::Method::PUT,
        path,
        Some(json!({"secret_type": "acme_token", "data": {"token": GOOD_TOKEN}})),
    );
    assert_eq!(s, 200, "{b}");
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn certificates_are_validated_and_get_their_expiry_from_the_leaf() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        openssl(
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "45",
                "-subj",
                &format!("/CN={name}.example"),
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ],
            dir.path(),
        );
    }
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let out = Command::new("openssl")
        .args([
            "x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in", "a.crt",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let not_after = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("notAfter=")
        .replace(' ', "T");

    let path = "/v1/secrets/infra/tls/api";
    let (s, b) = dev.put(
        path,
        &dev.token,
        json!({"secret_type": "certificate",
        "data": {"cert_pem": read("a.crt"), "key_pem": read("b.key")}}),
    );
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "validation_error");
    assert!(
        b["error"]["details"]["fields"]["key_pem"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{b}"
    );
    let (s, b) = dev.put(
        path,
        &dev.token,
        json!({"secret_type": "certificate", "data": {"cert_pem": "garbage"}}),
    );
    assert_eq!(s, 422, "{b}");
    assert!(
        b["error"]["details"]["fields"]["cert_pem"].is_string(),
        "{b}"
    );
    let (s, _) = dev.get(path, &dev.token);
    assert_eq!(s, 404);
    // The error names the type (it is not a value to redact); the value stays out.
    let (s, b) = dev.put(
        path,
        &dev.token,
        json!({"secret_type": "certificate", "data": {"key_pem": "not-a-key-at-all"}}),
    );
    assert_eq!(s, 422, "{b}");
    let said = b["error"].to_string();
    assert!(said.contains("certificate secret"), "{said}");
    assert!(!said.contains("not-a-key-at-all"), "{said}");

    let (s, b) = dev.put(
        path,
        &dev.token,
        json!({"secret_type": "certificate",
        "data": {"cert_pem": read("a.crt"), "key_pem": read("a.key")}}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = dev.get(path, &dev.token);
    assert_eq!(s, 200, "{b}");
    let expires = b["expires_at"]
        .as_str()
        .or(b["metadata"]["expires_at"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        expires.starts_with(not_after.trim_end_matches('Z')),
        "expires_at {expires:?} vs notAfter {not_after:?}"
    );
    // An explicit expiry wins over the certificate's.
    let (s, b) = dev.put(path, &dev.token, json!({"secret_type": "certificate",
        "data": {"cert_pem": read("b.crt"), "key_pem": read("b.key")}, "options": {"expires_in": "1d"}}));
    assert_eq!(s, 200, "{b}");
    let (_, b) = dev.get(path, &dev.token);
    let e2 = b["expires_at"]
        .as_str()
        .or(b["metadata"]["expires_at"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        e2 < expires,
        "{e2} should be a day from now, before {expires}"
    );
}

#[test]
fn a_hostile_plugin_fails_its_own_calls_while_the_server_keeps_serving() {
    let dev = Dev::start();
    // An infinite loop, with fuel enough that only the deadline stops it.
    let wasm = wat_spinner();
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("spin.wasm");
    std::fs::write(&wasm_path, &wasm).unwrap();
    let manifest = json!({"name": "spin", "version": "0.1.0", "kind": "secret_types", "abi": "1.0",
        "wasm_sha256": common::sha256_of(&wasm_path),
        "limits": {"fuel": 10_000_000_000u64, "timeout_ms": 3000},
        "provides": {"secret_types": ["spin"]}});
    let manifest_path = dir.path().join("spin.json");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = dev.cli(&[
        "plugins",
        "install",
        wasm_path.to_str().unwrap(),
        "--manifest",
        manifest_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hostile: Vec<_> = (0..3)
        .map(|i| {
            let (url, token, done) = (dev.url.clone(), dev.token.clone(), done.clone());
            std::thread::spawn(move || {
                let r = req(
                    &url,
                    &token,
                    reqwest::Method::PUT,
                    &format!("/v1/secrets/spin/{i}"),
                    Some(json!({"secret_type": "spin", "data": {"x": "y"}})),
                );
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r
            })
        })
        .collect();
    // Ordinary traffic keeps being served while the hostile calls spin (each until its 3 s
    // deadline, at most one core's worth at a time): count what completes in that window.
    let mut served = 0;
    while done.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        let (s, b) = dev.put(
            &format!("/v1/secrets/ok/{served}"),
            &dev.token,
            json!({"data": {"v": served}}),
        );
        assert_eq!(s, 201, "{b}");
        let (s, _) = dev.get("/v1/health", &dev.token);
        assert_eq!(s, 200);
        served += 1;
    }
    assert!(
        served >= 10,
        "only {served} ordinary requests were served while the hostile plugin ran"
    );
    for h in hostile {
        let (s, b) = h.join().unwrap();
        // Each hostile call either spins to its deadline or, while another holds the plugin's
        // slot, gives up as busy: never succeeds, never hangs.
        match s {
            500 => assert_eq!(b["error"]["details"]["reason"], "deadline_exceeded", "{b}"),
            503 => assert_eq!(b["error"]["code"], "service_unavailable", "{b}"),
            _ => panic!("unexpected {s} {b}"),
        }
    }
    let (s, _) = dev.get("/v1/secrets/spin/0", &dev.token);
    assert_eq!(s, 404, "a failed validation stores nothing");
    let (s, _) = dev.put(
        "/v1/secrets/ok/after",
        &dev.token,
        json!({"data": {"v": 1}}),
    );
    assert_eq!(s, 201);
}

/// A well-formed ABI v1 module whose `sv_call` never returns.
fn wat_spinner() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "scaivault" "output" (func (param i32 i32)))
          (memory (export "memory") 1)
          (func (export "scaivault_abi_v1") (result i32) (i32.const 0))
          (func (export "sv_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "sv_call") (param i32 i32 i32 i32) (result i32)
            (loop $l (br $l))
            (i32.const 0)))"#,
    )
    .unwrap()
}
