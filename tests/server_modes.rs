//! `scaivault init` + `scaivault server`: sealed start, unseal, wrong passphrase, graceful
//! shutdown, and a SIGKILL in the middle of a stream of writes.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::json;

#[test]
fn sealed_server_unseals_and_wrong_passphrase_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let before = file_bytes(&vault);
    let (mut child, url) = server(&vault, &["--sealed"], &[]);
    let c = http();
    let r = c
        .get(format!("{url}/v1/secrets/a/b"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["error"]["code"],
        "vault_sealed"
    );
    let r = c.get(format!("{url}/v1/health")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c.get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let s: serde_json::Value = c
        .get(format!("{url}/v1/sys/status"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(s["sealed"], true);

    let r = c
        .post(format!("{url}/v1/sys/unseal"))
        .json(&json!({"passphrase": "wrong"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "invalid_passphrase");
    assert_eq!(
        file_bytes(&vault),
        before,
        "a wrong passphrase changed the file"
    );

    // `scaivault operator unseal` with the right one.
    let out = cli_env(
        &["operator", "unseal"],
        &[("SCAIVAULT_URL", &url), ("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = c
        .put(format!("{url}/v1/secrets/a/b"))
        .bearer_auth(&root)
        .json(&json!({"data": {"k": "v"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // Seal through the API, then unseal again: the file is released and reopened.
    let r = c
        .post(format!("{url}/v1/sys/seal"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .get(format!("{url}/v1/secrets/a/b"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let out = cli_env(
        &["operator", "unseal"],
        &[("SCAIVAULT_URL", &url), ("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = c
        .get(format!("{url}/v1/secrets/a/b"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_finishes_and_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let (child, url) = server(&vault, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    let c = http();
    for i in 0..20 {
        let r = c
            .put(format!("{url}/v1/secrets/svc/s{i}"))
            .bearer_auth(&root)
            .json(&json!({"data": {"i": i}}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    unsafe_free_kill(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "server did not exit cleanly: {:?}",
        out.status
    );
    // The file is closed: local mode opens it (it would be locked otherwise) and sees every write.
    let out = cli_env(
        &[
            "secrets",
            "list",
            "--prefix",
            "svc/",
            "--json",
            "--vault",
            vault.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["secrets"].as_array().unwrap().len(), 20);
}

/// Sends a signal with the `kill` command (no unsafe code in tests).
fn unsafe_free_kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sigkill_mid_stream_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let (mut child, url) = server(
        &vault,
        &["--no-rate-limit"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
    );
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (url, root, acked, stop) = (url.clone(), root.clone(), acked.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let c = reqwest::blocking::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("stream/w{w}/s{}", i % 5);
                let r = c
                    .put(format!("{url}/v1/secrets/{path}"))
                    .bearer_auth(&root)
                    .json(&json!({"data": {"n": i}}))
                    .send();
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: serde_json::Value = r.json().unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push((path, v["version"].as_u64().unwrap()));
                    }
                    _ => break,
                }
                i += 1;
            }
        }));
    }
    // Kill it mid-stream, once a good number of writes were acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().unwrap().len() < 100 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "too few writes before the kill: {}",
        acked.len()
    );
    // Reopen (redb recovers) and check that each acknowledged version is readable.
    let (mut child, url) = server(&vault, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    let c = http();
    let mut latest = std::collections::HashMap::new();
    for (p, v) in &acked {
        let e = latest.entry(p.clone()).or_insert(0u64);
        *e = (*e).max(*v);
    }
    for (p, v) in &latest {
        let r: serde_json::Value = c
            .get(format!("{url}/v1/versions/{p}"))
            .bearer_auth(&root)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let current = r["current_version"].as_u64().unwrap_or(0);
        assert!(
            current >= *v,
            "{p}: acknowledged version {v}, found {current}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn non_loopback_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = init(dir.path());
    let out = cli_env(
        &[
            "server",
            "--vault",
            vault.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--sealed",
        ],
        &[],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--insecure-listen"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tls_and_key_file_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let (cert, key) = self_signed(dir.path(), &[]);
    // A key file, set up in local mode, unseals the server without the passphrase.
    let kf = dir.path().join("vault.key");
    let out = cli_env(
        &[
            "operator",
            "key-file",
            kf.to_str().unwrap(),
            "--vault",
            vault.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (mut child, url) = server(
        &vault,
        &[
            "--key-file",
            kf.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(url.starts_with("https://"), "{url}");
    let c = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = c
        .get(format!("{url}/v1/auth/whoami"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let plain = url.replace("https://", "http://");
    assert!(
        reqwest::blocking::get(format!("{plain}/v1/health"))
            .map(|r| !r.status().is_success())
            .unwrap_or(true),
        "plain HTTP answered on the TLS port"
    );
    let _ = child.kill();
    let _ = child.wait();
    // A wrong key file is refused like a wrong passphrase.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, [7u8; 32]).unwrap();
    let out = cli_env(
        &[
            "server",
            "--vault",
            vault.to_str().unwrap(),
            "--key-file",
            bad.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid_passphrase"));
}

#[test]
fn a_toml_config_file_sets_the_server_up() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let pass = dir.path().join("pass");
    std::fs::write(&pass, format!("{PASS}\n")).unwrap();
    let cfg = dir.path().join("scaivault.toml");
    std::fs::write(
        &cfg,
        format!(
            "vault = {:?}\npassphrase_file = {:?}\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 2048\naudit_retention = \"365d\"\n",
            vault.to_str().unwrap(),
            pass.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["server", "--config", cfg.to_str().unwrap()])
        .env_remove("SCAIVAULT_PASSPHRASE")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    while !line.contains("listening on") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
            "server exited"
        );
    }
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let r = http()
        .get(format!("{url}/v1/auth/whoami"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "unsealed from the passphrase file named in the config"
    );
    let big = "x".repeat(4000);
    let r = http()
        .put(format!("{url}/v1/secrets/a/b"))
        .bearer_auth(&root)
        .json(&json!({"data": {"k": big}}))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        413,
        "max_body_bytes from the config applies"
    );
    let _ = child.kill();
    let _ = child.wait();
    std::fs::write(&cfg, "vault = \"x\"\nunknown_setting = true\n").unwrap();
    let out = cli_env(&["server", "--config", cfg.to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("unknown"), "{}", stderr(&out));
}

#[test]
fn dev_mode_deletes_its_temporary_vault_on_shutdown() {
    let mut dev = Dev::start();
    let dir = dev.vault.parent().unwrap().to_owned();
    assert!(dev.vault.exists());
    let st = Command::new("kill")
        .args(["-TERM", &dev.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = dev.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "the temporary vault outlived the dev server");
}

/// Issue #17, item 1: after `kill -9`, the file needs a repair before it can be read, and a
/// repair writes. A wrong passphrase (or key file, or recovery key) must still leave it
/// byte-for-byte as it was: the key is checked against a repaired private copy, and only a
/// right key lets the file itself be repaired.
#[test]
fn a_wrong_key_never_touches_a_file_left_open_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let (mut child, url) = server(&vault, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    for i in 0..20 {
        let r = http()
            .put(format!("{url}/v1/secrets/crash/s{i}"))
            .bearer_auth(&root)
            .json(&json!({ "data": { "v": format!("value-{i}") } }))
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }
    child.kill().unwrap(); // SIGKILL: the file is left as a crash leaves it
    child.wait().unwrap();
    let crashed = file_bytes(&vault);
    let v = vault.to_str().unwrap();
    for (args, env) in [
        (
            vec!["secrets", "read", "--vault", v, "crash/s1"],
            ("SCAIVAULT_PASSPHRASE", "wrong"),
        ),
        (
            vec!["audit", "verify", "--vault", v],
            ("SCAIVAULT_PASSPHRASE", "also wrong"),
        ),
    ] {
        let out = cli_env(&args, &[env], None);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid_passphrase"),
            "{}",
            stderr(&out)
        );
        assert!(
            file_bytes(&vault) == crashed,
            "a wrong passphrase changed a file left open by a crash"
        );
    }
    // A server with a wrong key file refuses and changes nothing either.
    let key = dir.path().join("wrong.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--vault",
            v,
            "--listen",
            "127.0.0.1:0",
            "--key-file",
        ])
        .arg(&key)
        .env_remove("SCAIVAULT_PASSPHRASE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        file_bytes(&vault) == crashed,
        "a wrong key file changed the file"
    );
    // No private copy is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".check-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The right passphrase repairs the file and every acknowledged write is there.
    let out = cli_env(
        &["secrets", "read", "--vault", v, "crash/s19", "--field", "v"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "value-19");
}

/// `--cache-mib` bounds the vault file's page cache (docs/RELIABILITY.md, Memory): a server
/// with a 1 MiB cache unseals and serves; 0 on the command line, or 5000 in a config file, is
/// refused before the file is opened.
#[test]
fn a_server_with_a_small_page_cache_serves_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let (mut child, url) = server(
        &vault,
        &["--cache-mib", "1"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
    );
    let r = http()
        .put(format!("{url}/v1/secrets/a/b"))
        .bearer_auth(&root)
        .json(&json!({"data": {"k": "v"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let _ = child.kill();
    let _ = child.wait();
    let v = vault.to_str().unwrap();
    let out = cli_env(&["server", "--vault", v, "--cache-mib", "0"], &[], None);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let cfg = dir.path().join("scaivault.toml");
    std::fs::write(&cfg, format!("vault = {v:?}\ncache_mib = 5000\n")).unwrap();
    let out = cli_env(
        &["server", "--config", cfg.to_str().unwrap()],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("cache_mib"), "{}", stderr(&out));
}

/// Issue #19: against a server with a self-signed certificate, the CLI says the certificate
/// is not trusted (not "connection refused"), trusts it when given its CA with `--ca-cert`,
/// and skips the check only when told to, with a warning.
#[test]
fn the_cli_trusts_the_ca_it_is_given_and_says_when_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    // A self-signed server certificate must not claim to be a CA (rustls, like every WebPKI
    // client, refuses a CA certificate as a server's own).
    let (cert, key) = self_signed(
        dir.path(),
        &[
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    let (mut child, url) = server(
        &vault,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
    );
    let env = [
        ("SCAIVAULT_URL", url.as_str()),
        ("SCAIVAULT_TOKEN", root.as_str()),
    ];
    let out = cli_env(&["auth", "whoami"], &env, None);
    assert_eq!(
        out.status.code(),
        Some(7),
        "an untrusted server is unavailable"
    );
    let err = stderr(&out);
    assert!(
        err.contains("certificate") && err.contains("--ca-cert"),
        "{err}"
    );
    let out = cli_env(
        &["auth", "whoami", "--ca-cert", cert.to_str().unwrap()],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("user:root"));
    let with_env: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .chain([("SCAIVAULT_CACERT", cert.to_str().unwrap())])
        .collect();
    assert!(
        cli_env(&["auth", "whoami"], &with_env, None)
            .status
            .success()
    );
    let skip: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .chain([("SCAIVAULT_TLS_SKIP_VERIFY", "1")])
        .collect();
    assert!(cli_env(&["auth", "whoami"], &skip, None).status.success());
    let out = cli_env(&["auth", "whoami", "--tls-skip-verify"], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not checked"), "{}", stderr(&out));
    let _ = child.kill();
    let _ = child.wait();
}

/// A self-signed P-256 certificate and its key in `dir`, for the server's TLS; `extra` adds
/// `-addext` extensions.
fn self_signed(dir: &std::path::Path, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]);
    for e in extra {
        cmd.args(["-addext", e]);
    }
    let st = cmd
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is needed for the TLS tests");
    assert!(st.success());
    (cert, key)
}

/// Logs written to a pipe (a file, journald) are plain text: no terminal colour codes.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    use std::io::{BufRead as _, Read as _};
    let mut child = Command::new(bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--json"])
        .env("SCAIVAULT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("root_token"), "{line}");
    // Stopped as an operator would: it logs its shutdown, then stderr ends.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.wait();
    assert!(logs.contains("shutting down"), "{logs:?}");
    assert!(
        !logs.contains('\u{1b}'),
        "colour codes in piped logs: {logs:?}"
    );
}
