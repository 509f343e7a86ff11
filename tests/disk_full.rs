//! A full disk: writes fail with `storage_full`, nothing acknowledged is lost, and after space
//! is freed and the server restarted the vault verifies and serves again.
//!
//! Needs root (it mounts a 16 MiB tmpfs); as any other user it says so and does nothing.
#![allow(clippy::disallowed_methods)] // tests make their fixture files as they please

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_writes_cleanly_and_loses_nothing() {
    if !is_root() {
        eprintln!("disk_full: skipped, mounting a small tmpfs needs root (CI runs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "mounting a tmpfs failed although running as root"
    );
    let _guard = Mount(mnt.clone());

    let (vault, root) = init(&mnt);
    // Room to free later, so the vault can be brought back.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let (mut child, url) = server(
        &vault,
        &["--no-rate-limit"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
    );
    let c = reqwest::blocking::Client::new();
    let value = "v".repeat(60_000);
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..2000 {
        let r = c
            .put(format!("{url}/v1/secrets/fill/s{i}"))
            .bearer_auth(&root)
            .json(&json!({"data": {"v": value}}))
            .send()
            .unwrap();
        if r.status().is_success() {
            acked.push(format!("fill/s{i}"));
        } else {
            let status = r.status().as_u16();
            failure = Some((status, r.json::<serde_json::Value>().unwrap()));
            break;
        }
    }
    let (status, body) = failure.expect("16 MiB never filled up");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (507, Some("storage_full")),
        "{body}"
    );
    assert!(!body.to_string().contains(&value[..100]));
    assert!(acked.len() > 10);
    // Reads fail too (their audit entries cannot be written), so the server is not ready.
    let r = c.get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let ready: serde_json::Value = r.json().unwrap();
    assert_eq!(ready["checks"]["database"], "error", "{ready}");
    assert!(
        ready["errors"]["database"]
            .as_str()
            .unwrap()
            .contains("disk is full")
    );
    let _ = child.kill();
    let _ = child.wait();

    std::fs::remove_file(&filler).unwrap();
    let v = vault.to_str().unwrap();
    let out = cli_env(
        &["operator", "verify", "--vault", v, "--json"],
        &[("SCAIVAULT_PASSPHRASE", PASS)],
        None,
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let (mut child, url) = server(&vault, &[], &[("SCAIVAULT_PASSPHRASE", PASS)]);
    for p in &acked {
        let r = c
            .get(format!("{url}/v1/secrets/{p}"))
            .bearer_auth(&root)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{p} was acknowledged and is gone");
    }
    let _ = child.kill();
    let _ = child.wait();
}
