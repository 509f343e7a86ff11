//! Operations against the real binary: backup under write load, whole and per-secret restore,
//! verification, and the recovery key.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::json;

#[test]
fn backup_under_load_restores_every_acknowledged_write_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let (mut child, url) = server(
        &vault,
        &["--no-rate-limit"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
    );
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, root, acked, stop) = (url.clone(), root.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = http();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("load/w{w}/s{}", i % 7);
                    let r = c
                        .put(format!("{url}/v1/secrets/{path}"))
                        .bearer_auth(&root)
                        .json(&json!({"data": {"n": i}}))
                        .send()
                        .unwrap();
                    assert!(r.status().is_success());
                    let v: serde_json::Value = r.json().unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .push((path, v["version"].as_u64().unwrap()));
                    i += 1;
                }
            })
        })
        .collect();
    // Back up while writes are in flight: once some have been acknowledged (the first waits
    // for the server to compile its type plugin).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().unwrap().len() < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before_snapshot = acked.lock().unwrap().clone();
    let backup = dir.path().join("vault.svbak");
    let out = cli_env(
        &["operator", "backup", backup.to_str().unwrap(), "--json"],
        &[("SCAIVAULT_URL", &url), ("SCAIVAULT_TOKEN", &root)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(facts["audit_head_seq"].as_u64().unwrap() > 0);
    // Writes go on after the backup (they must not be in it).
    let after_backup = acked.lock().unwrap().len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().unwrap().len() < after_backup + 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        before_snapshot.len() >= 20,
        "too little load: {}",
        before_snapshot.len()
    );

    // Whole-file restore into a new vault, which then verifies.
    let restored = dir.path().join("restored.db");
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--backup",
            backup.to_str().unwrap(),
            "--into",
            restored.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = restored.to_str().unwrap();
    let out = cli_env(
        &["operator", "verify", "--vault", r, "--json"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let out = cli_env(
        &[
            "secrets", "list", "--prefix", "load/", "--json", "--vault", r,
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let versions: std::collections::HashMap<String, u64> = listed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect();
    for (path, version) in &before_snapshot {
        assert!(
            versions.get(path).copied().unwrap_or(0) >= *version,
            "{path} v{version} acknowledged before the snapshot is missing"
        );
    }

    // A damaged backup is refused before anything is restored.
    let mut bytes = std::fs::read(&backup).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = dir.path().join("bad.svbak");
    std::fs::write(&bad, &bytes).unwrap();
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--from",
            bad.to_str().unwrap(),
            "--to",
            dir.path().join("x.db").to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
    assert!(!dir.path().join("x.db").exists());

    // A trailer changed where the checksum does not reach (its date) is refused by the
    // trailer's MAC, checked with the vault's passphrase, and nothing is kept (#17).
    let mut bytes = std::fs::read(&backup).unwrap();
    let key = b"\"created_at\":\"";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    bytes[at + 3] = if bytes[at + 3] == b'5' { b'4' } else { b'5' };
    std::fs::write(&bad, &bytes).unwrap();
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--from",
            bad.to_str().unwrap(),
            "--to",
            dir.path().join("y.db").to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("failed to authenticate"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("y.db").exists());

    // A backup in the format made before trailers were authenticated still restores whole,
    // with a warning, but never per secret.
    let good = std::fs::read(&backup).unwrap();
    let n = good.len();
    let tlen = u64::from_le_bytes(good[n - 16..n - 8].try_into().unwrap()) as usize;
    let mut trailer: serde_json::Value =
        serde_json::from_slice(&good[n - 16 - tlen..n - 16]).unwrap();
    trailer["backup_format"] = json!(1);
    trailer.as_object_mut().unwrap().remove("mac");
    let t = serde_json::to_vec(&trailer).unwrap();
    let mut old = good[..n - 16 - tlen].to_vec();
    old.extend_from_slice(&t);
    old.extend_from_slice(&(t.len() as u64).to_le_bytes());
    old.extend_from_slice(b"SVBAK001");
    let old_backup = dir.path().join("old.svbak");
    std::fs::write(&old_backup, &old).unwrap();
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--from",
            old_backup.to_str().unwrap(),
            "--to",
            dir.path().join("z.db").to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only its checksum"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn per_secret_restore_brings_back_an_old_version_and_is_audited() {
    let dev = Dev::start();
    dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"password": "first"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("b.svbak");
    assert!(
        dev.cli(&["operator", "backup", backup.to_str().unwrap()])
            .status
            .success()
    );
    dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"password": "second"}}),
    );
    dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"password": "third"}}),
    );
    let out = dev.cli(&[
        "operator",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--path",
        "app/db",
        "--version",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(w["version"], 4);
    let (_, b) = dev.get("/v1/secrets/app/db", &dev.token);
    assert_eq!(
        (b["version"].as_u64(), b["data"]["password"].as_str()),
        (Some(4), Some("first"))
    );
    let (_, logs) = dev.get("/v1/audit/logs?action=restore_from_backup", &dev.token);
    assert_eq!(logs["logs"].as_array().unwrap().len(), 1, "{logs}");
    assert_eq!(logs["logs"][0]["success"], true);
    // The entry names the secret and both versions, so a query by path finds it (#17).
    let (_, logs) = dev.get("/v1/audit/logs?path_prefix=app/", &dev.token);
    let restore = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "restore_from_backup")
        .unwrap_or_else(|| panic!("a query by path misses the restore: {logs}"));
    assert_eq!(restore["secret_path"], "app/db");
    assert_eq!(restore["extra_data"]["restored_version"], 1);
    assert_eq!(restore["extra_data"]["version"], 4);
    // Exactly one entry for the request: the write and its record commit together.
    let (_, all) = dev.get("/v1/audit/logs?action=write&path_prefix=app/db", &dev.token);
    assert_eq!(all["logs"].as_array().unwrap().len(), 3, "{all}");
    let (s, report) = dev.post("/v1/sys/verify", &dev.token, json!({}));
    assert_eq!((s, report["ok"].as_bool()), (200, Some(true)), "{report}");
}

#[test]
fn verify_names_a_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = init(dir.path());
    let v = vault.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", PASS)];
    for i in 0..5 {
        assert!(
            cli_env(
                &[
                    "secrets",
                    "write",
                    &format!("app/s{i}"),
                    &format!("k=value-{i}-{}", "z".repeat(300))
                ],
                &[env[0], ("SCAIVAULT_VAULT", v)],
                None
            )
            .status
            .success()
        );
    }
    assert!(
        cli_env(&["operator", "verify", "--vault", v], &env, None)
            .status
            .success()
    );
    // Find the sealed record of one secret's head (with the key, as only a test can) and
    // flip a byte in every copy of it in the file: the live one among them.
    let sealed = {
        let vault = scaivault_store::Vault::open(
            &vault,
            scaivault_store::Unlock::Passphrase(PASS.as_bytes()),
        )
        .unwrap();
        vault
            .raw_record(scaivault_store::Table::Secrets, b"app/s3")
            .unwrap()
            .unwrap()
    };
    let mut bytes = std::fs::read(&vault).unwrap();
    let mut hits = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..]
        .windows(sealed.len())
        .position(|w| w == sealed.as_slice())
    {
        bytes[i + at + sealed.len() / 2] ^= 0x01;
        i += at + sealed.len();
        hits += 1;
    }
    assert!(hits > 0);
    std::fs::write(&vault, &bytes).unwrap();
    let out = cli_env(&["operator", "verify", "--vault", v, "--json"], &env, None);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(json!({"ok": false, "raw": stderr(&out)}));
    assert_eq!(
        report["ok"], false,
        "a flipped byte went unnoticed: {report}"
    );
    assert!(
        report["problems"].to_string().contains("secrets"),
        "{report}"
    );
    assert!(!out.status.success());
}

#[test]
fn the_recovery_key_unseals_without_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("vault.db");
    let rk = dir.path().join("recovery.key");
    let out = cli_env(
        &[
            "init",
            "--vault",
            vault.to_str().unwrap(),
            "--kdf-memory-mib",
            "19",
            "--kdf-passes",
            "2",
            "--recovery-key-file",
            rk.to_str().unwrap(),
            "--json",
        ],
        &[("SCAIVAULT_PASSPHRASE", "a passphrase nobody remembers")],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        init["recovery_key"].is_null(),
        "written to the file, not printed"
    );
    let root = init["root_token"].as_str().unwrap().to_owned();
    let key_text = std::fs::read_to_string(&rk).unwrap();
    assert!(key_text.starts_with("svrk_"));

    // At start-up, from the file, no passphrase anywhere.
    let (mut child, url) = server(&vault, &["--recovery-key-file", rk.to_str().unwrap()], &[]);
    let r = http()
        .get(format!("{url}/v1/auth/whoami"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();

    // Through the unseal endpoint of a sealed server.
    let (mut child, url) = server(&vault, &["--sealed"], &[]);
    let r = http()
        .post(format!("{url}/v1/sys/unseal"))
        .json(&json!({"recovery_key": "svrk_".to_owned() + &"0".repeat(64)}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a wrong recovery key is refused");
    let r = http()
        .post(format!("{url}/v1/sys/unseal"))
        .json(&json!({"recovery_key": key_text.trim()}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();

    // `operator rekey` replaces it; the old one stops working.
    let out = cli_env(
        &[
            "operator",
            "rekey",
            "--vault",
            vault.to_str().unwrap(),
            "--json",
        ],
        &[("SCAIVAULT_PASSPHRASE", "a passphrase nobody remembers")],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let new: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(new["recovery_key"].as_str().unwrap().starts_with("svrk_"));
    let out = cli_env(
        &[
            "server",
            "--vault",
            vault.to_str().unwrap(),
            "--recovery-key-file",
            rk.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "the replaced key still unseals: {}",
        stderr(&out)
    );
    // Given the file, `rekey --out` replaces the key in it: the file opens the vault again
    // (and the key printed above does not). A file beside it is left alone.
    let neighbour = rk.with_extension("new");
    std::fs::write(&neighbour, "unrelated").unwrap();
    let out = cli_env(
        &[
            "operator",
            "rekey",
            "--out",
            rk.to_str().unwrap(),
            "--vault",
            vault.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", "a passphrase nobody remembers")],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(std::fs::read_to_string(&rk).unwrap(), key_text);
    assert!(!std::path::PathBuf::from(format!("{}.new", rk.display())).exists());
    assert_eq!(std::fs::read_to_string(&neighbour).unwrap(), "unrelated");
    let (mut child, url) = server(&vault, &["--recovery-key-file", rk.to_str().unwrap()], &[]);
    assert!(url.starts_with("http"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn scheduled_backups_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = init(dir.path());
    let backups = dir.path().join("backups");
    let (mut child, _url) = server(
        &vault,
        &[
            "--backup-dir",
            backups.to_str().unwrap(),
            "--backup-interval",
            "1s",
            "--backup-keep",
            "2",
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
    );
    // Wait until a third backup was made and the oldest pruned: two kept, three ever seen.
    let list = || -> Vec<std::path::PathBuf> {
        let mut names: Vec<_> = std::fs::read_dir(&backups)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        names.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "svbak"));
        names.sort();
        names
    };
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let now = list();
        seen.extend(now.iter().cloned());
        if seen.len() >= 3 && now.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let names = list();
    assert!(
        seen.len() >= 3,
        "fewer than three backups were made: {seen:?}"
    );
    assert_eq!(names.len(), 2, "{names:?}");
    let to = dir.path().join("from-scheduled.db");
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--from",
            names[1].to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Issue #17, item 5: a secret whose head record is damaged or gone (while the vault still
/// lists it) answers `500 integrity_error` naming the path — never `404`, which would let the
/// next write start a new history at version 1 over the old one — and writes to it are
/// refused.
#[test]
fn a_damaged_or_missing_head_is_an_integrity_error_not_a_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, root) = init(dir.path());
    let v = vault.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", PASS), ("SCAIVAULT_VAULT", v)];
    for p in ["app/gone", "app/flipped", "app/fine"] {
        for n in 1..=2 {
            let out = cli_env(&["secrets", "write", p, &format!("k=v{n}")], &env, None);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let backup = dir.path().join("before.svbak");
    let out = cli_env(
        &["operator", "backup", backup.to_str().unwrap()],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    {
        use scaivault_store::{Mutation, Table, Unlock, Vault};
        let (gone_key, flipped) = {
            let vault = Vault::open(&vault, Unlock::Passphrase(PASS.as_bytes())).unwrap();
            (
                vault.blinded_key_for_tests(Table::Secrets, b"app/gone"),
                vault
                    .raw_record(Table::Secrets, b"app/flipped")
                    .unwrap()
                    .unwrap(),
            )
        };
        // One head deleted outright, as a small redb tool would.
        let backend = scaivault_store::RedbBackend::open(&vault).unwrap();
        use scaivault_store::Backend as _;
        backend
            .commit(&[Mutation::Delete {
                table: Table::Secrets,
                key: gone_key,
            }])
            .unwrap();
        drop(backend);
        // One flipped in every copy the file holds.
        let mut bytes = std::fs::read(&vault).unwrap();
        let mut i = 0;
        while let Some(at) = bytes[i..]
            .windows(flipped.len())
            .position(|w| w == flipped.as_slice())
        {
            bytes[i + at + flipped.len() / 2] ^= 0x01;
            i += at + flipped.len();
        }
        std::fs::write(&vault, &bytes).unwrap();
    }
    let (child, url) = server(&vault, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    let _guard = KillOnDrop(child);
    let c = http();
    for p in ["app/gone", "app/flipped"] {
        let r = c
            .get(format!("{url}/v1/secrets/{p}"))
            .bearer_auth(&root)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let b: serde_json::Value = r.json().unwrap();
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (500, Some("integrity_error")),
            "{p}: {b}"
        );
        assert_eq!(b["error"]["details"]["path"], p, "{b}");
        let r = c
            .put(format!("{url}/v1/secrets/{p}"))
            .bearer_auth(&root)
            .json(&json!({ "data": { "k": "new" } }))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let b: serde_json::Value = r.json().unwrap();
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (500, Some("integrity_error")),
            "a write over a damaged {p} must be refused: {b}"
        );
    }
    // The rest of the vault is served as before.
    let r = c
        .get(format!("{url}/v1/secrets/app/fine"))
        .bearer_auth(&root)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // The operator repairs each damaged secret on its own, while the vault serves.
    let remote = [("SCAIVAULT_URL", url.as_str()), ("SCAIVAULT_TOKEN", &root)];
    let verify = || cli_env(&["--json", "operator", "verify"], &remote, None);
    assert!(!verify().status.success(), "the damage is a verify problem");
    let out = cli_env(&["operator", "destroy-damaged", "app/fine"], &remote, None);
    assert!(
        !out.status.success(),
        "an intact secret is not destroyed so"
    );
    assert!(stderr(&out).contains("not damaged"), "{}", stderr(&out));
    let out = cli_env(
        &["--json", "operator", "destroy-damaged", "app/gone"],
        &remote,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let gone: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            gone["path"].as_str(),
            gone["versions_removed"].as_u64(),
            gone["other_unreferenced"].as_u64()
        ),
        (Some("app/gone"), Some(2), Some(2)),
        "app/gone's two versions go; app/flipped's (its head is damaged too) stay: {gone}"
    );
    // A version the backup lacks, or a file that is no backup, is refused before anything is
    // put back: the secret is still damaged after either.
    let junk = dir.path().join("junk.svbak");
    std::fs::write(&junk, b"not a backup at all").unwrap();
    for (from, version, says) in [
        (&backup, Some("99"), "version_not_found"),
        (&junk, None, "the backup cannot be used"),
    ] {
        let mut args = vec![
            "--json",
            "operator",
            "restore",
            "--from",
            from.to_str().unwrap(),
            "--path",
            "app/flipped",
        ];
        args.extend(version.iter().flat_map(|v| ["--version", v]));
        let out = cli_env(&args, &remote, None);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        let r = c
            .get(format!("{url}/v1/secrets/app/flipped"))
            .bearer_auth(&root)
            .send()
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            500,
            "still damaged after a refused restore"
        );
    }
    // The other one gets its whole history back from the backup.
    let out = cli_env(
        &[
            "--json",
            "operator",
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--path",
            "app/flipped",
        ],
        &remote,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restored["version"], 2, "{restored}");
    for (version, want) in [(1, "v1"), (2, "v2")] {
        let b: serde_json::Value = c
            .get(format!("{url}/v1/secrets/app/flipped?version={version}"))
            .bearer_auth(&root)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(b["data"]["k"], want, "{b}");
    }
    // Nothing is left over: every version record belongs to a secret again.
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The destroyed path starts a new history; both repairs are in the audit log by path.
    let r = c
        .put(format!("{url}/v1/secrets/app/gone"))
        .bearer_auth(&root)
        .json(&json!({ "data": { "k": "fresh" } }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    let audit: serde_json::Value = c
        .get(format!("{url}/v1/audit/logs?path_prefix=app/"))
        .bearer_auth(&root)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entries = audit["logs"].as_array().unwrap();
    let find = |action: &str, path: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["secret_path"] == path && e["success"] == true)
            .cloned()
    };
    assert!(find("destroy_damaged", "app/gone").is_some(), "{audit}");
    let repair = find("restore_from_backup", "app/flipped").expect("the restore's entry");
    assert_eq!(repair["extra_data"]["repaired_damage"], true, "{repair}");
    let refused = entries
        .iter()
        .filter(|e| {
            e["action"] == "restore_from_backup"
                && e["secret_path"] == "app/flipped"
                && e["success"] == false
        })
        .count();
    assert_eq!(
        refused, 2,
        "refused restores are found by their path too: {audit}"
    );
}

/// Issue #17, item 4: a backup whose trailer was changed — here its `created_at`, which the
/// checksum does not cover — is refused by both kinds of restore, and nothing is kept.
#[test]
fn a_changed_backup_trailer_is_refused_by_every_restore() {
    let dev = Dev::start();
    dev.put(
        "/v1/secrets/app/db",
        &dev.token,
        json!({"data": {"password": "first"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("b.svbak");
    assert!(
        dev.cli(&["operator", "backup", backup.to_str().unwrap()])
            .status
            .success()
    );
    let mut bytes = std::fs::read(&backup).unwrap();
    let at = bytes
        .windows(b"\"created_at\":\"".len())
        .position(|w| w == b"\"created_at\":\"")
        .expect("a trailer with created_at")
        + b"\"created_at\":\"".len();
    // 2026 → 2025: still a well-formed trailer, with the same checksum.
    bytes[at + 3] = if bytes[at + 3] == b'5' { b'4' } else { b'5' };
    let forged = dir.path().join("forged.svbak");
    std::fs::write(&forged, &bytes).unwrap();
    let out = dev.cli(&[
        "operator",
        "restore",
        "--from",
        forged.to_str().unwrap(),
        "--path",
        "app/db",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("trailer"), "{}", stderr(&out));
    let (_, s) = dev.get("/v1/secrets/app/db", &dev.token);
    assert_eq!(s["version"], 1, "nothing was restored");
    // The whole-file restore needs the vault's key to check the trailer; a dev vault's is
    // random, so a wrong one is refused, and so is any forged trailer: nothing is kept.
    let to = dir.path().join("restored.db");
    let out = cli_env(
        &[
            "operator",
            "restore",
            "--from",
            forged.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert!(!out.status.success());
    assert!(!to.exists(), "a refused restore left its file");
}

/// Issue #17, item 3, end to end: the tokens table of an older copy of the file put back
/// (bringing a revoked token back to life, as a small redb tool would) is refused: the server
/// does not unseal, and says which table.
#[test]
fn a_revoked_token_brought_back_in_the_file_stops_the_unseal() {
    use scaivault_store::{Backend as _, Mutation, RedbBackend, Table};
    let dir = tempfile::tempdir().unwrap();
    let (vault, _root) = init(dir.path());
    let v = vault.to_str().unwrap();
    let env = [("SCAIVAULT_PASSPHRASE", PASS), ("SCAIVAULT_VAULT", v)];
    let out = cli_env(&["identity", "create", "sa:ci"], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_env(
        &[
            "tokens",
            "create",
            "--identity",
            "sa:ci",
            "--scope",
            "secrets:read",
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_env(
        &["tokens", "list", "--identity", "sa:ci", "--json"],
        &env,
        None,
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = listed["tokens"][0]["token_id"].as_str().unwrap().to_owned();
    let mut old_tokens = Vec::new();
    RedbBackend::open_read_only(&vault)
        .unwrap()
        .scan(Table::Tokens, &mut |k, v| {
            old_tokens.push(Mutation::Put {
                table: Table::Tokens,
                key: k.to_vec(),
                value: v.to_vec(),
            });
            true
        })
        .unwrap();
    let out = cli_env(&["tokens", "revoke", &id], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        cli_env(&["operator", "verify", "--vault", v], &env, None)
            .status
            .success()
    );
    RedbBackend::open(&vault)
        .unwrap()
        .commit(&old_tokens)
        .unwrap();
    let out = cli_env(
        &["server", "--vault", v, "--listen", "127.0.0.1:0"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("integrity") && err.contains("'tokens'"),
        "the rolled-back token table went unnoticed: {err}"
    );
    let out = cli_env(&["operator", "verify", "--vault", v], &env, None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("'tokens'"), "{}", stderr(&out));
}
